//! Everything the benchmark makes outside its own process — network namespaces and
//! child processes — is registered here, so that it is removed on drop, on failure and
//! on Ctrl-C (SIGINT/SIGTERM), never by a broad name.

use std::process::Command;
use std::sync::Mutex;

/// Namespaces and child pids alive right now.
static LIVE: Mutex<Live> = Mutex::new(Live {
    netns: Vec::new(),
    pids: Vec::new(),
});

struct Live {
    netns: Vec<String>,
    pids: Vec<u32>,
}

fn live() -> std::sync::MutexGuard<'static, Live> {
    LIVE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn register_netns(name: &str) {
    live().netns.push(name.to_owned());
}

pub fn forget_netns(name: &str) {
    live().netns.retain(|n| n != name);
}

pub fn register_pid(pid: u32) {
    live().pids.push(pid);
}

pub fn forget_pid(pid: u32) {
    live().pids.retain(|p| *p != pid);
}

/// Kills every registered child (by its own pid) and deletes every registered namespace.
pub fn remove_all() {
    let (pids, netns) = {
        let mut live = live();
        (
            std::mem::take(&mut live.pids),
            std::mem::take(&mut live.netns),
        )
    };
    for pid in pids {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .output();
    }
    for name in netns.iter().rev() {
        let _ = Command::new("ip").args(["netns", "delete", name]).output();
    }
}

/// On SIGINT or SIGTERM: remove everything, then exit 130.
pub fn install_signal_handler() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            eprintln!("zw-bench: interrupted; removing the namespaces and processes it made");
            remove_all();
            std::process::exit(130);
        });
    });
}

/// Deletes namespaces left by an earlier run that was killed with SIGKILL: their
/// names carry the pid of a process that no longer exists.
pub fn remove_stale_netns() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix("zwb")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "delete", name]).output();
        }
    }
}
