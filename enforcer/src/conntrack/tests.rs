use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::process::Command;

use super::*;

#[test]
fn a_dump_ends_at_done_and_reports_the_kernels_refusal() {
    let message = |kind: u16, body: &[u8]| {
        let mut out = Vec::new();
        out.extend_from_slice(&u32::try_from(16 + body.len()).unwrap().to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(body);
        out
    };
    let addr: IpAddr = "10.0.0.1".parse().unwrap();
    let mut out = Vec::new();
    assert!(read_dump(&message(NLMSG_DONE, &[0; 4]), addr, &mut out).unwrap());
    let refused = message(NLMSG_ERROR, &(-1i32).to_ne_bytes());
    let err = read_dump(&refused, addr, &mut out).expect_err("EPERM is an error");
    assert_eq!(err.raw_os_error(), Some(1), "{err}");
    // Cut or garbage input: never a panic, never an entry, never the end.
    let whole = message(MSG_CT_NEW, &[2, 0, 0, 0, 8, 0, 1, 0x80, 0, 0, 0, 0]);
    for len in 0..whole.len() {
        assert!(!read_dump(&whole[..len], addr, &mut out).unwrap());
    }
    assert!(out.is_empty(), "{out:?}");
}

/// A network namespace with loopback up and connection tracking on (a table whose
/// output chain reads `ct state`), removed on drop.
struct TrackedNetns(String);

impl TrackedNetns {
    fn new() -> Self {
        let name = format!("zwct-{}", std::process::id());
        let run = |args: &[&str]| {
            let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["ip", "netns", "add", &name]);
        let ns = Self(name.clone());
        run(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        run(&["ip", "-n", &name, "addr", "add", "10.9.9.9/32", "dev", "lo"]);
        run(&[
            "ip",
            "-n",
            &name,
            "addr",
            "add",
            "fd00::5/128",
            "dev",
            "lo",
            "nodad",
        ]);
        run(&[
            "ip",
            "netns",
            "exec",
            &name,
            "nft",
            "add table inet cttest; add chain inet cttest out { type filter hook output priority 0; }; add rule inet cttest out ct state established accept",
        ]);
        ns
    }
}

impl Drop for TrackedNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// An open TCP connection to `dst`, a local address (so it is its source too), its
/// ends kept open.
fn connect(dst: &str) -> (TcpListener, TcpStream, TcpStream) {
    let listener = TcpListener::bind((dst.parse::<IpAddr>().unwrap(), 0)).unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"x").unwrap();
    let mut byte = [0u8; 1];
    server.read_exact(&mut byte).unwrap();
    (listener, client, server)
}

/// Open connections of one address are cut over ctnetlink, in both families; the
/// connections of other addresses stay.
#[test]
fn open_connections_of_an_address_are_deleted_in_both_families() {
    if !nix::unistd::Uid::effective().is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the conntrack test as root"
        );
        eprintln!("skipped: this test needs root (network namespaces, conntrack)");
        return;
    }
    let ns = TrackedNetns::new();
    crate::test_support::run_in_netns(&ns.0, || {
        let _cut_v4 = connect("127.0.0.1");
        let _kept_v4 = connect("10.9.9.9");
        let _cut_v6 = connect("::1");
        let _kept_v6 = connect("fd00::5");
        for (cut, kept) in [("127.0.0.1", "10.9.9.9"), ("::1", "fd00::5")] {
            let (cut, kept): (IpAddr, IpAddr) = (cut.parse().unwrap(), kept.parse().unwrap());
            let before = connections_of(cut).expect("dump");
            assert!(
                !before.is_empty(),
                "the open connection of {cut} is tracked"
            );
            let deleted = flush(cut).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
            assert_eq!(deleted, before.len(), "every entry of {cut}: {before:?}");
            let after = connections_of(cut).expect("dump");
            assert!(after.is_empty(), "{cut} still has {after:?}");
            assert!(
                !connections_of(kept).expect("dump").is_empty(),
                "the connection of {kept} was not cut"
            );
            assert_eq!(flush(cut).expect("nothing left to cut"), 0);
        }
    });
}
