//! Runs CNI plugins exactly as a runtime does: environment variables plus the network
//! config on stdin, inside the node namespace, from the node's CNI bin dir. A small
//! conflist runner (like libcni) chains plugins with `prevResult` and injects
//! `runtimeConfig` for the capabilities each plugin declares.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::node::Node;

/// Who the call is for.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub container_id: String,
    /// Empty: no CNI_NETNS (as containerd's second DEL sends).
    pub netns: String,
    pub ifname: String,
    pub args: String,
}

impl Attachment {
    pub fn new(container_id: &str, netns: &crate::netns::Netns) -> Self {
        Self {
            container_id: container_id.to_owned(),
            netns: netns.path().display().to_string(),
            ifname: "eth0".into(),
            args: String::new(),
        }
    }

    pub fn with_args(mut self, args: &str) -> Self {
        self.args = args.to_owned();
        self
    }
}

/// What a plugin printed and whether it succeeded.
#[derive(Debug, Clone)]
pub struct CniOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl CniOutput {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or(Value::Null)
    }

    /// The CNI error code of a failure.
    pub fn code(&self) -> Option<u64> {
        self.json()["code"].as_u64()
    }

    /// Panics with everything the plugin said unless it succeeded.
    pub fn ok(self, what: &str) -> Self {
        assert!(
            self.success,
            "{what} failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// The first address of a result, without its prefix length.
pub fn first_ip(result: &Value) -> String {
    all_ips(result)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no address in the result {result}"))
}

/// Every address of a result, without prefix lengths, in order.
pub fn all_ips(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .map(|cidr| cidr.split('/').next().unwrap_or(cidr).to_owned())
        .collect()
}

/// Runs one plugin binary from the node's bin dir.
pub fn exec(node: &Node, plugin: &str, command: &str, at: &Attachment, conf: &Value) -> CniOutput {
    spawn(node, plugin, command, at, conf).finish()
}

/// A plugin call started by [`spawn`] and not yet waited for (killed if dropped so,
/// e.g. when a test fails before it waits).
pub struct Running {
    child: Option<std::process::Child>,
}

impl Running {
    /// Whether the plugin has exited.
    pub fn exited(&mut self) -> bool {
        let child = self.child.as_mut().expect("running");
        child.try_wait().expect("poll the plugin").is_some()
    }

    /// Waits for the plugin and returns what it printed.
    pub fn finish(mut self) -> CniOutput {
        let child = self.child.take().expect("running");
        let out = child.wait_with_output().expect("wait for plugin");
        CniOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `plugin` with `command` as a runtime does and returns without waiting.
pub fn spawn(node: &Node, plugin: &str, command: &str, at: &Attachment, conf: &Value) -> Running {
    let binary = node.bin_dir().join(plugin);
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &node.netns.name])
        .arg(&binary)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &at.container_id)
        .env("CNI_NETNS", &at.netns)
        .env("CNI_IFNAME", &at.ifname)
        .env("CNI_ARGS", &at.args)
        .env("CNI_PATH", node.bin_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {plugin}: {e}"));
    let stdin = serde_json::to_vec(conf).expect("config JSON");
    // Dropped at the end of the statement: the plugin reads its whole config first.
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&stdin)
        .expect("write config");
    Running { child: Some(child) }
}

/// An example conflist shipped in `deploy/cni/`, as a runtime would read it, with only
/// the plugin's socket and host-local's lease directory pointed at `node`.
pub fn example_conflist(node: &Node, file: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/cni")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut list: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"));
    for plugin in list["plugins"].as_array_mut().expect("plugins") {
        if plugin["type"] == "zonewarden" {
            plugin["socket"] = json!(node.socket());
        }
        if plugin.get("ipam").is_some() {
            plugin["ipam"]["dataDir"] = json!(node.ipam_dir());
        }
    }
    list
}

/// A network configuration list, as a runtime reads it from /etc/cni/net.d.
#[derive(Debug, Clone)]
pub struct Conflist {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<Value>,
}

impl Conflist {
    /// A conflist as a runtime reads it from its JSON.
    pub fn from_json(list: &Value) -> Self {
        Self {
            name: list["name"].as_str().expect("conflist name").to_owned(),
            cni_version: list["cniVersion"]
                .as_str()
                .expect("conflist cniVersion")
                .to_owned(),
            plugins: list["plugins"]
                .as_array()
                .expect("conflist plugins")
                .clone(),
        }
    }

    /// The zonewarden routed network with host-local IPAM keeping its leases in the node's dir.
    pub fn routed(node: &Node, name: &str, subnet: &str) -> Self {
        Self::routed_ranges(node, name, &[subnet])
    }

    /// The routed network with one host-local range per subnet: an IPv4 and an IPv6
    /// subnet give dual-stack pods, an IPv6 subnet alone IPv6-only pods.
    pub fn routed_ranges(node: &Node, name: &str, subnets: &[&str]) -> Self {
        let ranges: Vec<Value> = subnets.iter().map(|s| json!([{"subnet": s}])).collect();
        Self::routed_with(
            node,
            name,
            "1.0.0",
            json!({"type": "host-local", "ranges": ranges, "dataDir": node.ipam_dir()}),
        )
    }

    /// The zonewarden routed network with zonewarden IPAM: the enforcer leases the
    /// addresses of its `--pod-cidr` blocks.
    pub fn enforcer_ipam(node: &Node, name: &str) -> Self {
        Self::routed_with(node, name, "1.1.0", json!({"type": "zonewarden"}))
    }

    fn routed_with(node: &Node, name: &str, cni_version: &str, ipam: Value) -> Self {
        Self {
            name: name.to_owned(),
            cni_version: cni_version.into(),
            plugins: vec![json!({
                "type": "zonewarden",
                "socket": node.socket(),
                "logLevel": "debug",
                "capabilities": {"io.kubernetes.cri.pod-annotations": true},
                "ipam": ipam
            })],
        }
    }

    /// The request each plugin of the list receives.
    fn request(&self, plugin: &Value, prev: Option<&Value>, runtime: &Value) -> Value {
        let mut conf = plugin.clone();
        let obj = conf.as_object_mut().expect("plugin object");
        obj.insert("name".into(), json!(self.name));
        obj.insert("cniVersion".into(), json!(self.cni_version));
        let caps = obj.remove("capabilities").unwrap_or(Value::Null);
        let injected: serde_json::Map<String, Value> = runtime
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| caps[k.as_str()] == json!(true))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !injected.is_empty() {
            obj.insert("runtimeConfig".into(), Value::Object(injected));
        }
        if let Some(prev) = prev {
            obj.insert("prevResult".into(), prev.clone());
        }
        conf
    }

    /// ADD through every plugin in order; on failure, DEL through all (as runtimes do).
    pub fn add(&self, node: &Node, at: &Attachment, runtime: &Value) -> Result<Value, CniOutput> {
        let mut prev: Option<Value> = None;
        for plugin in &self.plugins {
            let kind = plugin["type"].as_str().expect("plugin type");
            let out = exec(
                node,
                kind,
                "ADD",
                at,
                &self.request(plugin, prev.as_ref(), runtime),
            );
            if !out.success {
                // The ADD failure is what the caller needs; the clean-up DEL is best effort.
                let _ = self.del(node, at, runtime, None);
                return Err(out);
            }
            prev = Some(out.json());
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// DEL through every plugin in reverse order; returns the first failure.
    pub fn del(
        &self,
        node: &Node,
        at: &Attachment,
        runtime: &Value,
        prev: Option<&Value>,
    ) -> Result<(), CniOutput> {
        let mut first = Ok(());
        for plugin in self.plugins.iter().rev() {
            let kind = plugin["type"].as_str().expect("plugin type");
            let out = exec(node, kind, "DEL", at, &self.request(plugin, prev, runtime));
            if !out.success && first.is_ok() {
                first = Err(out);
            }
        }
        first
    }

    /// CHECK through every plugin in order with the final ADD result.
    pub fn check(
        &self,
        node: &Node,
        at: &Attachment,
        runtime: &Value,
        prev: &Value,
    ) -> Result<(), CniOutput> {
        for plugin in &self.plugins {
            let kind = plugin["type"].as_str().expect("plugin type");
            let out = exec(
                node,
                kind,
                "CHECK",
                at,
                &self.request(plugin, Some(prev), runtime),
            );
            if !out.success {
                return Err(out);
            }
        }
        Ok(())
    }

    /// One plugin's request for commands without an attachment (GC, STATUS).
    pub fn single(&self, index: usize, extra: Value) -> Value {
        let mut conf = self.request(&self.plugins[index], None, &Value::Null);
        for (k, v) in extra.as_object().into_iter().flatten() {
            conf[k] = v.clone();
        }
        conf
    }
}
