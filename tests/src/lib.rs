//! End-to-end harness for zonewarden: real network namespaces as nodes and pods, the
//! real enforcer and plugin binaries, Debian's reference CNI plugins, real traffic.
//!
//! Every test makes its own namespaces with unique names and removes them on drop,
//! even when it fails. Nothing here touches the machine's own network namespace.
//!
//! # Layout
//! - [`netns`]: a named network namespace that is deleted on drop, and `ip`/`nft` in it.
//! - [`node`]: a "node": a namespace with an address and its own enforcer process.
//! - [`cni`]: runs the plugin (or a whole conflist) exactly as a runtime does.
//! - [`pods`]: pods attached through the real plugin, with their zones.
//! - [`traffic`]: echo servers and new or long-lived connections between pods.
//! - [`flows`]: a running `zwctl flows watch` and the lines it prints.
//! - [`wait`]: waiting on a condition with a deadline instead of sleeping.
//! - [`web`]: the enforcer's `/metrics` and zone-map endpoint, through curl.
//! - [`browser`]: the zone-map page in headless Chromium, its DOM and geometry.
//! - [`attach`]: what one attachment left on a node, and checks that nothing was left.
//! - [`cluster`]: many nodes on one underlay, a real etcd cluster, host-gateway routes.
//! - [`oci`]: the runtime tests' image (Debian's static busybox), built without a registry.
//! - [`cri`]: a small CRI client (our own subset of `runtime.v1`).
//! - [`containerd`]: a real containerd of one test, in a node namespace, driven by CRI.
//! - [`podman`]: a real podman of one test, with the CNI network backend.
//! - [`runtime_host`]: what such a runtime leaves on the machine, and its clean-up.

pub mod attach;
pub mod browser;
pub mod cluster;
pub mod cni;
pub mod containerd;
pub mod cri;
pub mod flows;
pub mod netns;
pub mod node;
pub mod oci;
pub mod podman;
pub mod pods;
pub mod runtime_host;
pub mod traffic;
pub mod wait;
pub mod web;

use std::path::PathBuf;

/// Where `cargo build --workspace` put the project's binaries.
pub fn bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("debug").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` before the end-to-end tests",
        path.display()
    );
    path
}

/// Debian's reference plugins.
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// Whether this process may create namespaces; root tests skip loudly otherwise.
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Skips a root test when not root, unless `CI` is set (then it fails: CI runs as root).
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the end-to-end tests as root"
            );
            eprintln!("skipped: this test needs root (network namespaces)");
            return;
        }
    };
}
