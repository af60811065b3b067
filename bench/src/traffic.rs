//! The traffic tools, run inside pod namespaces as `zw-bench serve` and
//! `zw-bench connect-loop`, and the helpers that start them there.
//!
//! - `serve PORT|FROM-TO ...`: accepts TCP connections and closes each at once (the
//!   server closes first, so the client's ports never sit in TIME_WAIT).
//! - `connect-loop --target ADDR:PORT[-PORT] ...`: opens new connections one after
//!   another (cycling through the ports) and prints `{attempts, ok}` as JSON.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::cleanup;
use crate::netns::Netns;
use crate::node::bin;

/// `"7000-7099"` or `"5202"` as an inclusive range.
pub fn port_range(text: &str) -> anyhow::Result<(u16, u16)> {
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    Ok((a.parse()?, b.parse()?))
}

/// Listens on every port given and closes each accepted connection at once.
pub fn serve(specs: &[String]) -> anyhow::Result<()> {
    let mut threads = Vec::new();
    for spec in specs {
        let (from, to) = port_range(spec)?;
        for port in from..=to {
            // `::` takes IPv4 too (the scale pods are dual-stack).
            let listener = TcpListener::bind(("::", port))
                .or_else(|_| TcpListener::bind(("0.0.0.0", port)))
                .with_context(|| format!("bind tcp port {port}"))?;
            threads.push(std::thread::spawn(move || {
                for stream in listener.incoming() {
                    drop(stream);
                }
            }));
        }
    }
    println!("ready");
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoopResult {
    pub attempts: u64,
    /// Connections that were established.
    pub ok: u64,
    pub seconds: f64,
    /// The connections that failed, by what `connect` said (timed out, refused, ...).
    #[serde(default)]
    pub failures: std::collections::BTreeMap<String, u64>,
}

pub struct LoopArgs {
    pub addr: std::net::IpAddr,
    pub ports: (u16, u16),
    pub seconds: f64,
    pub timeout: Duration,
    /// Stop as soon as this file exists (instead of after `seconds`).
    pub until_file: Option<PathBuf>,
}

/// New connections one after another: connect, wait for the server's close, close.
pub fn connect_loop(args: &LoopArgs) -> LoopResult {
    let start = Instant::now();
    let mut r = LoopResult::default();
    let mut port = args.ports.0;
    // At least one attempt: `--seconds 0` is a single probe.
    loop {
        r.attempts += 1;
        match TcpStream::connect_timeout(&SocketAddr::new(args.addr, port), args.timeout) {
            Ok(mut s) => {
                r.ok += 1;
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 1];
                let _ = s.read(&mut buf);
            }
            Err(e) => *r.failures.entry(e.kind().to_string()).or_default() += 1,
        }
        port = if port >= args.ports.1 {
            args.ports.0
        } else {
            port + 1
        };
        let elapsed = start.elapsed().as_secs_f64();
        let done = match &args.until_file {
            Some(f) => f.exists(),
            None => elapsed >= args.seconds,
        };
        if done {
            r.seconds = elapsed;
            return r;
        }
    }
}

/// A process started in a namespace, killed on drop.
pub struct Process {
    pub child: Child,
}

impl Process {
    fn track(child: Child) -> Self {
        cleanup::register_pid(child.id());
        Self { child }
    }

    /// Waits for its exit and returns its stdout.
    pub fn output(mut self) -> anyhow::Result<String> {
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            stdout.read_to_string(&mut out)?;
        }
        let status = self.child.wait()?;
        cleanup::forget_pid(self.child.id());
        if !status.success() {
            bail!("process exited with {status}");
        }
        Ok(out)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        cleanup::forget_pid(self.child.id());
    }
}

/// `zw-bench serve SPECS` in `ns`, once it listens.
pub fn start_server(ns: &Netns, specs: &[&str]) -> anyhow::Result<Process> {
    let mut child = ns
        .exec(bin("zw-bench")?.to_str().context("utf-8")?)
        .arg("serve")
        .args(specs)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    let p = Process::track(child);
    if line.trim() != "ready" {
        bail!("servers {specs:?} in {} did not start", ns.name);
    }
    Ok(p)
}

/// Starts `zw-bench connect-loop` in `ns` (collect with [`finish_loop`]).
pub fn spawn_loop(
    ns: &Netns,
    target: &str,
    seconds: f64,
    timeout_ms: u64,
    until_file: Option<&std::path::Path>,
) -> anyhow::Result<Process> {
    let mut cmd = ns.exec(bin("zw-bench")?.to_str().context("utf-8")?);
    cmd.args([
        "connect-loop",
        "--target",
        target,
        "--seconds",
        &seconds.to_string(),
        "--timeout-ms",
        &timeout_ms.to_string(),
    ]);
    if let Some(f) = until_file {
        cmd.arg("--until-file").arg(f);
    }
    Ok(Process::track(cmd.stdout(Stdio::piped()).spawn()?))
}

pub fn finish_loop(p: Process) -> anyhow::Result<LoopResult> {
    let out = p.output()?;
    serde_json::from_str(out.trim()).with_context(|| format!("connect-loop printed {out:?}"))
}

/// One connect loop in `ns` to `target` for `seconds`: new connections per second.
pub fn conn_rate(ns: &Netns, target: &str, seconds: f64) -> anyhow::Result<LoopResult> {
    finish_loop(spawn_loop(ns, target, seconds, 1000, None)?)
}

/// [`conn_rate`] to an approved port, where every connection must succeed.
pub fn approved_conn_rate(ns: &Netns, target: &str, seconds: f64) -> anyhow::Result<LoopResult> {
    let r = conn_rate(ns, target, seconds)?;
    anyhow::ensure!(
        r.ok == r.attempts,
        "{} of {} connections to an approved port failed in {:.1} s ({})",
        r.attempts - r.ok,
        r.attempts,
        r.seconds,
        r.failures
            .iter()
            .map(|(why, n)| format!("{n}× {why}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(r)
}

/// One iperf3 run from `ns` to `server:port`: received bits per second.
pub fn iperf(ns: &Netns, server: &str, port: u16, seconds: u32) -> anyhow::Result<f64> {
    let out = crate::netns::run(ns.exec("iperf3").args([
        "-c",
        server,
        "-p",
        &port.to_string(),
        "-t",
        &seconds.to_string(),
        "-J",
    ]))?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| {
            format!(
                "iperf3 printed no throughput: {}",
                &out[..out.len().min(400)]
            )
        })
}

/// `iperf3 -s` in `ns`.
pub fn start_iperf_server(ns: &Netns, port: u16) -> anyhow::Result<Process> {
    let child = ns
        .exec("iperf3")
        .args(["-s", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let p = Process::track(child);
    // iperf3 has no readiness line on stdout; wait until the port listens.
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        let out = ns
            .exec("ss")
            .args(["-Hltn", &format!("sport = :{port}")])
            .output()?;
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return Ok(p);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("iperf3 -s did not listen on {port} in {}", ns.name)
}
