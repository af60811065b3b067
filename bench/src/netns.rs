//! Named network namespaces made by the benchmark (`zwb<pid>-<n>-<role>`), deleted on drop.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

use crate::cleanup;

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A fresh namespace with loopback up.
    pub fn new(role: &str) -> anyhow::Result<Self> {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("zwb{}-{n}-{role}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        cleanup::register_netns(&name);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip -n <ns> ...`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command run inside the namespace.
    pub fn exec(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// `sysctl -w key=value` inside the namespace (best effort: a missing key is skipped).
    pub fn sysctl(&self, key: &str, value: &str) {
        let _ = self
            .exec("sysctl")
            .args(["-qw", &format!("{key}={value}")])
            .output();
    }

    /// The first IPv4 address on `dev`.
    pub fn ipv4_of(&self, dev: &str) -> anyhow::Result<String> {
        self.addr_of(dev, "-4", "inet")
    }

    /// The global IPv6 address of `dev`.
    pub fn ipv6_of(&self, dev: &str) -> anyhow::Result<String> {
        self.addr_of(dev, "-6", "inet6")
    }

    fn addr_of(&self, dev: &str, family: &str, word: &str) -> anyhow::Result<String> {
        let out = self.ip(&[family, "-o", "addr", "show", "dev", dev, "scope", "global"])?;
        out.split_whitespace()
            .skip_while(|w| *w != word)
            .nth(1)
            .and_then(|cidr| cidr.split('/').next())
            .map(str::to_owned)
            .with_context(|| format!("no {word} address on {dev} in {}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
        cleanup::forget_netns(&self.name);
    }
}

/// Runs a command that must succeed; returns its stdout.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
