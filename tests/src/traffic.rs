//! Real traffic between test namespaces through `zw-probe`: echo servers, batches of
//! new connections, and one long-lived connection.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::bin;
use crate::netns::Netns;

/// Echo servers in a namespace, killed on drop.
pub struct Server {
    child: Child,
}

impl Server {
    /// Starts `tcp:PORT` / `udp:PORT` echo servers in `ns` and waits until they listen.
    pub fn start(ns: &Netns, specs: &[&str]) -> Self {
        let mut child = ns
            .exec(bin("zw-probe").to_str().expect("utf-8"), &["serve"])
            .args(specs)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start zw-probe serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read ready");
        assert_eq!(
            line.trim(),
            "ready",
            "servers {specs:?} in {} did not start",
            ns.name
        );
        Self { child }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens one new connection per target from `ns` at once; true where it succeeded.
/// Targets are `ADDR:PORT/tcp` or `ADDR:PORT/udp`.
pub fn probe(ns: &Netns, targets: &[String], timeout: Duration) -> Vec<bool> {
    if targets.is_empty() {
        return Vec::new();
    }
    let out = ns
        .exec(
            bin("zw-probe").to_str().expect("utf-8"),
            &["probe", "--timeout-ms", &timeout.as_millis().to_string()],
        )
        .args(targets)
        .output()
        .expect("run zw-probe probe");
    let text = String::from_utf8_lossy(&out.stdout);
    let results: Vec<bool> = text.lines().map(|l| l.ends_with(" ok")).collect();
    assert_eq!(
        results.len(),
        targets.len(),
        "zw-probe answered {text:?} for {targets:?}"
    );
    results
}

/// Whether one new connection from `ns` to `target` succeeds.
pub fn connects(ns: &Netns, target: &str) -> bool {
    probe(ns, &[target.to_owned()], Duration::from_millis(700))[0]
}

/// A connection held open and exercised every 100 ms until `finish`.
pub struct Hold {
    child: Child,
}

impl Hold {
    pub fn start(ns: &Netns, target: &str, seconds: u64) -> Self {
        let mut child = ns
            .exec(
                bin("zw-probe").to_str().expect("utf-8"),
                &["hold", "--seconds", &seconds.to_string(), target],
            )
            .stdout(Stdio::piped())
            .spawn()
            .expect("start zw-probe hold");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        assert_eq!(
            line.trim(),
            "connected",
            "the long-lived connection to {target} did not open"
        );
        Self { child }
    }

    /// Waits for the end; true when the connection worked throughout.
    pub fn finish(mut self) -> bool {
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }
}

/// Runs a short Python program in `ns` (the attacks need raw sockets and
/// `IP_FREEBIND`, which the standard library does not offer).
fn python(ns: &Netns, program: &str) -> std::process::Output {
    ns.exec("python3", &["-c", program])
        .output()
        .expect("run python3")
}

fn family(addr: &str) -> &'static str {
    if addr.contains(':') {
        "socket.AF_INET6"
    } else {
        "socket.AF_INET"
    }
}

/// Sends one UDP datagram to `dst:port` from `src`, an address the pod does not own
/// (`IP_TRANSPARENT`, which a process with `CAP_NET_RAW` may set, lets it bind and
/// send from any address): a spoofed source. True when the kernel took it.
pub fn send_udp_spoofed(ns: &Netns, src: &str, dst: &str, port: u16) -> bool {
    let program = format!(
        "import socket\n\
         s = socket.socket({fam}, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_IP, 19, 1)\n\
         s.setsockopt(socket.IPPROTO_IPV6, 75, 1) if {fam} == socket.AF_INET6 else None\n\
         s.bind(('{src}', 0))\n\
         s.sendto(b'spoofed', ('{dst}', {port}))\n",
        fam = family(dst)
    );
    let out = python(ns, &program);
    if !out.status.success() {
        eprintln!(
            "spoofed send from {src} to {dst}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

/// Opens a TCP connection to `dst:port` from `src`, an address the pod does not own
/// (bound with `IP_TRANSPARENT`, as for [`send_udp_spoofed`]): the kernel sends SYNs
/// with the forged source. Waits at most a second; true when the connection was
/// established (the forged source got an answer back).
pub fn connect_tcp_spoofed(ns: &Netns, src: &str, dst: &str, port: u16) -> bool {
    let program = format!(
        "import socket, sys\n\
         s = socket.socket({fam}, socket.SOCK_STREAM)\n\
         s.setsockopt(socket.SOL_IP, 19, 1)\n\
         s.setsockopt(socket.IPPROTO_IPV6, 75, 1) if {fam} == socket.AF_INET6 else None\n\
         s.bind(('{src}', 0))\n\
         s.settimeout(1.0)\n\
         try:\n\
         \x20   s.connect(('{dst}', {port}))\n\
         except OSError:\n\
         \x20   sys.exit(1)\n",
        fam = family(dst)
    );
    python(ns, &program).status.success()
}

/// Sends one packet of IP protocol `proto` (no transport header of ours) to `dst`
/// from a raw socket. True when the kernel took it.
pub fn send_raw(ns: &Netns, proto: u8, dst: &str) -> bool {
    let program = format!(
        "import socket\n\
         s = socket.socket({fam}, socket.SOCK_RAW, {proto})\n\
         s.sendto(b'zonewarden raw probe', ('{dst}', 0))\n",
        fam = family(dst)
    );
    python(ns, &program).status.success()
}

/// Records the sources of what arrives in a namespace: UDP datagrams on a port, or
/// packets of one IP protocol, over both families. Killed on drop.
pub struct Catcher {
    child: Child,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Catcher {
    /// UDP datagrams to `port`.
    pub fn udp(ns: &Netns, port: u16) -> Self {
        let program = format!(
            "import socket, select\n\
             a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind(('0.0.0.0', {port}))\n\
             b = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
             b.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1); b.bind(('::', {port}))\n\
             print('ready', flush=True)\n\
             while True:\n\
             \x20   for s in select.select([a, b], [], [])[0]:\n\
             \x20       print(s.recvfrom(4096)[1][0], flush=True)\n"
        );
        Self::start(ns, &program)
    }

    /// Packets of IP protocol `proto`.
    pub fn raw(ns: &Netns, proto: u8) -> Self {
        let program = format!(
            "import socket, select\n\
             a = socket.socket(socket.AF_INET, socket.SOCK_RAW, {proto})\n\
             b = socket.socket(socket.AF_INET6, socket.SOCK_RAW, {proto})\n\
             print('ready', flush=True)\n\
             while True:\n\
             \x20   for s in select.select([a, b], [], [])[0]:\n\
             \x20       print(s.recvfrom(4096)[1][0], flush=True)\n"
        );
        Self::start(ns, &program)
    }

    fn start(ns: &Netns, program: &str) -> Self {
        let mut child = ns
            .exec("python3", &["-u", "-c", program])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        assert_eq!(first, "ready", "the catcher in {} did not start", ns.name);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        Self { child, seen }
    }

    /// Whether something from `src` arrived within `timeout`.
    pub fn got_from(&self, src: &str, timeout: Duration) -> bool {
        let end = std::time::Instant::now() + timeout;
        loop {
            let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.iter().any(|s| s == src) {
                return true;
            }
            drop(seen);
            if std::time::Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Catcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
