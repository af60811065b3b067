//! Chained mode after a bridge: bridged traffic reaches netfilter only with the
//! `br_netfilter` module and `net.bridge.bridge-nf-call-iptables=1`
//! (`bridge-nf-call-ip6tables=1` for IPv6) in the node's network namespace. Without
//! them, pods on one bridge talk to each other past every rule of the table, so the
//! enforcer checks them when a chained endpoint of a bridge is added and while any
//! exists, sets them where it may (kube-proxy requires the same), and otherwise
//! refuses such endpoints and reports itself not ready.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, warn};

use crate::registry::EndpointRegistry;

const BRIDGE_SYSCTLS: &str = "/proc/sys/net/bridge";
const KEYS: [&str; 2] = ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables"];
/// How often the settings are checked while chained endpoints of a bridge exist.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Makes sure bridged IPv4 and IPv6 traffic reaches netfilter in this network
/// namespace: loads `br_netfilter` when its settings are missing and turns them on;
/// `Err` says what is wrong and how to fix it.
pub fn ensure() -> Result<(), String> {
    ensure_in(Path::new(BRIDGE_SYSCTLS), load_module)
}

fn ensure_in(dir: &Path, load: fn()) -> Result<(), String> {
    if !dir.join(KEYS[0]).exists() {
        load();
    }
    if !dir.join(KEYS[0]).exists() {
        return Err(
            "the br_netfilter module is not loaded and cannot be loaded here: bridged traffic \
             skips netfilter (run modprobe br_netfilter and list it in /etc/modules-load.d)"
                .to_owned(),
        );
    }
    for key in KEYS {
        let path: PathBuf = dir.join(key);
        let value = std::fs::read_to_string(&path)
            .map_err(|err| format!("cannot read net.bridge.{key}: {err}"))?;
        if value.trim() == "1" {
            continue;
        }
        match std::fs::write(&path, "1") {
            Ok(()) => info!(
                key,
                "turned on net.bridge.{key}: bridged traffic of chained endpoints reaches netfilter"
            ),
            Err(err) => {
                return Err(format!(
                    "net.bridge.{key} is 0 and cannot be set ({err}): bridged traffic skips \
                     netfilter (set it to 1, as kube-proxy requires too)"
                ));
            }
        }
    }
    Ok(())
}

/// `modprobe br_netfilter`, bounded in time; failures are only logged (the check that
/// follows says what is wrong).
fn load_module() {
    let child = std::process::Command::new("modprobe")
        .arg("br_netfilter")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        warn!("cannot run modprobe br_netfilter");
        return;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    warn!("modprobe br_netfilter did not finish within 5 s");
}

/// While chained endpoints of a bridge exist, or since one was refused, checks the
/// settings (and turns them back on when someone turned them off); keeps the readiness.
pub async fn follow_forever(registry: EndpointRegistry) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tick.tick().await;
        let bridged = registry
            .snapshot()
            .endpoints
            .values()
            .any(|e| e.bridge.is_some() && e.node == registry.node());
        // With no such endpoint and no refused one, there is nothing to check; after a
        // refusal the check goes on until it passes (the runtime keeps retrying).
        if !bridged && registry.readiness().bridge_problem().is_none() {
            continue;
        }
        let checked = tokio::task::spawn_blocking(ensure)
            .await
            .unwrap_or_else(|err| Err(err.to_string()));
        if let Err(why) = &checked {
            warn!(%why, "chained endpoints of a bridge are not enforced");
        }
        registry.readiness().set_bridge(checked.err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_are_off_are_turned_on() {
        let dir = tempfile::tempdir().unwrap();
        for key in KEYS {
            std::fs::write(dir.path().join(key), "0\n").unwrap();
        }
        ensure_in(dir.path(), || {}).unwrap();
        for key in KEYS {
            assert_eq!(
                std::fs::read_to_string(dir.path().join(key))
                    .unwrap()
                    .trim(),
                "1"
            );
        }
    }

    #[test]
    fn a_missing_module_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = ensure_in(&dir.path().join("absent"), || {}).unwrap_err();
        assert!(err.contains("br_netfilter"), "{err}");
        assert!(err.contains("modprobe"), "{err}");
    }
}
