//! Running CNI plugins exactly as a runtime does (environment + config on stdin), from a
//! driver process that lives inside the node namespace (`zw-bench cni-driver`), so
//! that each timed call is the plugin's own fork/exec/run and not `ip netns exec`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::node::{Node, bin};

/// One attachment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Call {
    pub container_id: String,
    pub netns: String,
    pub args: String,
}

/// What the driver runs: `calls` with `command`, `concurrency` at once (all of a wave
/// released together by a barrier).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Batch {
    pub bin_dir: PathBuf,
    pub plugin: String,
    pub command: String,
    pub conf: Value,
    pub calls: Vec<Call>,
    pub concurrency: usize,
}

/// Per call: its latency in milliseconds, or the plugin's output on failure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub ms: f64,
    pub error: Option<String>,
    pub stdout: String,
}

fn run_one(batch: &Batch, call: &Call) -> Outcome {
    let start = Instant::now();
    let child = Command::new(batch.bin_dir.join(&batch.plugin))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", &batch.command)
        .env("CNI_CONTAINERID", &call.container_id)
        .env("CNI_NETNS", &call.netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", &call.args)
        .env("CNI_PATH", &batch.bin_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let result = child.and_then(|mut child| {
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(batch.conf.to_string().as_bytes())?;
        }
        child.wait_with_output()
    });
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(out) if out.status.success() => Outcome {
            ms,
            error: None,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        },
        Ok(out) => Outcome {
            ms,
            error: Some(format!(
                "{}: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            stdout: String::new(),
        },
        Err(err) => Outcome {
            ms,
            error: Some(err.to_string()),
            stdout: String::new(),
        },
    }
}

/// `zw-bench cni-driver`: a [`Batch`] on stdin, one [`Outcome`] per call on stdout.
pub fn driver() -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let batch: Arc<Batch> = Arc::new(serde_json::from_str(&input)?);
    let mut outcomes = Vec::with_capacity(batch.calls.len());
    for wave in batch.calls.chunks(batch.concurrency.max(1)) {
        let barrier = Arc::new(Barrier::new(wave.len()));
        let threads: Vec<_> = wave
            .iter()
            .cloned()
            .map(|call| {
                let (batch, barrier) = (batch.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    run_one(&batch, &call)
                })
            })
            .collect();
        for t in threads {
            outcomes.push(
                t.join()
                    .map_err(|_| anyhow::anyhow!("a driver thread panicked"))?,
            );
        }
    }
    serde_json::to_writer(std::io::stdout().lock(), &outcomes)?;
    Ok(())
}

/// Runs `batch` through a driver inside the node namespace.
pub fn run_batch(node: &Node, batch: &Batch) -> anyhow::Result<Vec<Outcome>> {
    let mut child = node
        .netns
        .exec(bin("zw-bench")?.to_str().context("utf-8")?)
        .arg("cni-driver")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    crate::cleanup::register_pid(child.id());
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(serde_json::to_string(batch)?.as_bytes())?;
    let pid = child.id();
    let out = child.wait_with_output()?;
    crate::cleanup::forget_pid(pid);
    if !out.status.success() {
        bail!("the CNI driver failed ({})", out.status);
    }
    let outcomes: Vec<Outcome> = serde_json::from_slice(&out.stdout)?;
    if let Some(err) = outcomes.iter().find_map(|o| o.error.as_ref()) {
        bail!("{} {} failed: {err}", batch.plugin, batch.command);
    }
    Ok(outcomes)
}

/// The zonewarden routed network with host-local IPAM (no other plugin in the list).
pub fn zonewarden_conf(node: &Node, name: &str, subnet: &str) -> Value {
    zonewarden_conf_ranges(node, name, &[subnet])
}

/// The zonewarden network with one host-local range per subnet (an IPv4 and an IPv6
/// subnet: dual-stack pods).
pub fn zonewarden_conf_ranges(node: &Node, name: &str, subnets: &[&str]) -> Value {
    let ranges: Vec<Value> = subnets
        .iter()
        .map(|s| serde_json::json!([{"subnet": s}]))
        .collect();
    serde_json::json!({
        "cniVersion": "1.0.0", "name": name, "type": "zonewarden",
        "socket": node.socket(),
        "ipam": {"type": "host-local", "ranges": ranges, "dataDir": node.ipam_dir()}
    })
}

/// The zonewarden network with zonewarden IPAM: the enforcer leases the addresses
/// from its `--pod-cidr` block, and no IPAM program runs.
pub fn zonewarden_ipam_conf(node: &Node, name: &str) -> Value {
    serde_json::json!({
        "cniVersion": "1.0.0", "name": name, "type": "zonewarden",
        "socket": node.socket(),
        "ipam": {"type": "zonewarden"}
    })
}

/// Debian's bridge with host-local IPAM: the reference.
pub fn bridge_conf(node: &Node, name: &str, subnet: &str) -> Value {
    serde_json::json!({
        "cniVersion": "1.0.0", "name": name, "type": "bridge",
        "bridge": "zwb-br0", "isGateway": true,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": node.ipam_dir()}
    })
}

/// Attaches one pod through the zonewarden plugin in zone `zone`; returns its IPv4
/// address.
pub fn attach(
    node: &Node,
    pod: &crate::netns::Netns,
    conf: &Value,
    zone: &str,
) -> anyhow::Result<String> {
    let batch = Batch {
        bin_dir: node.bin_dir(),
        plugin: "zonewarden".into(),
        command: "ADD".into(),
        conf: conf.clone(),
        calls: vec![Call {
            container_id: format!("{}-ctr", pod.name),
            netns: pod.path().display().to_string(),
            args: format!("IgnoreUnknown=1;ZONEWARDEN_ZONE={zone}"),
        }],
        concurrency: 1,
    };
    run_batch(node, &batch)?;
    pod.ipv4_of("eth0")
}
