#![allow(clippy::print_stdout)]
//! `zw-probe`: the traffic tool of the end-to-end tests, run inside pod namespaces.
//!
//! - `zw-probe serve tcp:8080 udp:53 udp:[fd00::5]:53 ...`: echo servers until killed
//!   (UDP on one address when one is given, so that replies come from it).
//! - `zw-probe probe --timeout-ms 500 10.0.0.2:8080/tcp 10.0.0.3:53/udp ...`: opens one
//!   new connection per target at once and prints one line per target, `ok` or `fail`.
//! - `zw-probe hold --seconds 5 10.0.0.2:8080/tcp`: one connection kept open, echoing a
//!   line every 100 ms; exits 0 only when every echo came back.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn parse_target(text: &str) -> (SocketAddr, String) {
    let (addr, proto) = text.rsplit_once('/').unwrap_or((text, "tcp"));
    let addr: SocketAddr = addr
        .parse()
        .unwrap_or_else(|e| panic!("target {text:?}: {e}"));
    (addr, proto.to_owned())
}

fn serve(specs: &[String]) -> ExitCode {
    let mut handles = Vec::new();
    for spec in specs {
        let (proto, at) = spec
            .split_once(':')
            .expect("serve takes tcp:PORT, udp:PORT or udp:ADDR:PORT");
        // `udp:[fd00::5]:53` binds one address, so that replies come from it (a UDP
        // socket bound to `::` answers from whichever address the kernel picks).
        let bound: Option<SocketAddr> = at.parse().ok();
        let port: u16 = bound.map_or_else(|| at.parse().expect("port"), |a| a.port());
        match proto {
            // `::` takes IPv4 too (as mapped addresses) where the pod has both.
            "tcp" => {
                let listener = TcpListener::bind(("::", port))
                    .or_else(|_| TcpListener::bind(("0.0.0.0", port)))
                    .expect("bind tcp");
                handles.push(std::thread::spawn(move || {
                    for stream in listener.incoming().flatten() {
                        std::thread::spawn(move || echo_tcp(stream));
                    }
                }));
            }
            "udp" => {
                let socket = match bound {
                    Some(addr) => UdpSocket::bind(addr),
                    None => UdpSocket::bind(("::", port))
                        .or_else(|_| UdpSocket::bind(("0.0.0.0", port))),
                }
                .expect("bind udp");
                handles.push(std::thread::spawn(move || {
                    let mut buf = [0u8; 1500];
                    while let Ok((n, peer)) = socket.recv_from(&mut buf) {
                        let _ = socket.send_to(&buf[..n], peer);
                    }
                }));
            }
            other => panic!("unknown protocol {other}"),
        }
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    for h in handles {
        let _ = h.join();
    }
    ExitCode::SUCCESS
}

fn echo_tcp(mut stream: TcpStream) {
    let mut buf = [0u8; 1500];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

fn probe_one(addr: SocketAddr, proto: &str, timeout: Duration) -> bool {
    match proto {
        "tcp" => TcpStream::connect_timeout(&addr, timeout).is_ok_and(|mut s| {
            let _ = s.set_read_timeout(Some(timeout));
            let mut buf = [0u8; 4];
            s.write_all(b"ping").is_ok() && s.read_exact(&mut buf).is_ok()
        }),
        "udp" => {
            let any = if addr.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let Ok(socket) = UdpSocket::bind(any) else {
                return false;
            };
            let _ = socket.set_read_timeout(Some(timeout));
            let mut buf = [0u8; 16];
            socket.send_to(b"ping", addr).is_ok()
                && socket.recv_from(&mut buf).is_ok_and(|(n, _)| n == 4)
        }
        other => panic!("unknown protocol {other}"),
    }
}

fn probe(args: &[String]) -> ExitCode {
    let mut timeout = Duration::from_millis(500);
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--timeout-ms" {
            timeout = Duration::from_millis(
                it.next()
                    .and_then(|v| v.parse().ok())
                    .expect("--timeout-ms N"),
            );
        } else {
            targets.push(a.clone());
        }
    }
    let handles: Vec<_> = targets
        .iter()
        .map(|t| {
            let (addr, proto) = parse_target(t);
            std::thread::spawn(move || probe_one(addr, &proto, timeout))
        })
        .collect();
    let mut out = std::io::stdout().lock();
    for (t, h) in targets.iter().zip(handles) {
        let ok = h.join().unwrap_or(false);
        let _ = writeln!(out, "{t} {}", if ok { "ok" } else { "fail" });
    }
    ExitCode::SUCCESS
}

fn hold(args: &[String]) -> ExitCode {
    let seconds: u64 = args
        .iter()
        .skip_while(|a| *a != "--seconds")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let target = args.last().expect("hold needs a target");
    let (addr, _) = parse_target(target);
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        eprintln!("hold: cannot connect to {addr}");
        return ExitCode::FAILURE;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut writer = stream.try_clone().expect("clone stream");
    let mut reader = BufReader::new(stream);
    println!("connected");
    let _ = std::io::stdout().flush();
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut line = String::new();
    while Instant::now() < end {
        line.clear();
        if writer.write_all(b"still here\n").is_err()
            || reader.read_line(&mut line).is_err()
            || line != "still here\n"
        {
            eprintln!("hold: the connection to {addr} broke");
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("probe") => probe(&args[1..]),
        Some("hold") => hold(&args[1..]),
        _ => {
            eprintln!(
                "usage: zw-probe serve tcp:PORT udp:PORT ... | probe [--timeout-ms N] ADDR:PORT/PROTO ... | hold --seconds N ADDR:PORT/tcp"
            );
            ExitCode::from(2)
        }
    }
}
