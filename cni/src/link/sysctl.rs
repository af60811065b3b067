//! The host end's per-interface sysctls, written through `/proc/sys`.
//!
//! `/proc/sys/net` shows the network namespace of the thread that opens it, so these
//! are written from the calling thread: the host namespace. Global knobs (`all`,
//! `default`, `ip_forward`) are never touched; the node agent owns them.

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use tracing::warn;

use super::error::LinkError;

const PROC_SYS: &str = "/proc/sys";

/// One `/proc/sys` write and whether its failure only deserves a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SysctlWrite {
    pub(crate) key: String,
    pub(crate) value: &'static str,
    pub(crate) warn_only: bool,
}

impl SysctlWrite {
    fn new(key: String, value: &'static str, warn_only: bool) -> Self {
        Self {
            key,
            value,
            warn_only,
        }
    }
}

/// The writes for host end `host`: proxy ARP and forwarding always, the IPv6 ones
/// when the node has IPv6 (and forwarding/proxy NDP only when the pod gets IPv6).
pub(crate) fn host_sysctls(host: &str, ipv6_on_node: bool, ipv6_addr: bool) -> Vec<SysctlWrite> {
    let mut writes = vec![
        SysctlWrite::new(format!("net/ipv4/conf/{host}/proxy_arp"), "1", false),
        SysctlWrite::new(format!("net/ipv4/conf/{host}/forwarding"), "1", false),
        SysctlWrite::new(format!("net/ipv4/neigh/{host}/proxy_delay"), "0", false),
    ];
    if ipv6_on_node {
        writes.push(SysctlWrite::new(
            format!("net/ipv6/conf/{host}/accept_ra"),
            "0",
            true,
        ));
        if ipv6_addr {
            writes.push(SysctlWrite::new(
                format!("net/ipv6/conf/{host}/accept_dad"),
                "0",
                true,
            ));
            writes.push(SysctlWrite::new(
                format!("net/ipv6/conf/{host}/forwarding"),
                "1",
                false,
            ));
            writes.push(SysctlWrite::new(
                format!("net/ipv6/conf/{host}/proxy_ndp"),
                "1",
                false,
            ));
        }
    }
    writes
}

/// IPv6 forwards a packet only when `conf/all/forwarding` is on, or (Linux 6.17 and
/// later) when the interface it came in on has `force_forwarding`: the host end gets
/// it, so that pods reach each other without changing the node's global setting.
fn ipv6_forwarding_writes(host: &str) -> Result<Vec<SysctlWrite>, String> {
    let sys = Path::new(PROC_SYS);
    let force = format!("net/ipv6/conf/{host}/force_forwarding");
    if sys.join("net/ipv6/conf/default/force_forwarding").exists() {
        return Ok(vec![SysctlWrite::new(force, "1", false)]);
    }
    let all = std::fs::read_to_string(sys.join("net/ipv6/conf/all/forwarding"))
        .map_err(|e| format!("cannot read net.ipv6.conf.all.forwarding: {e}"))?;
    if all.trim() == "1" {
        return Ok(Vec::new());
    }
    Err("IPv6 forwarding is off on this node (net.ipv6.conf.all.forwarding=0) and this kernel has no per-interface force_forwarding (Linux 6.17+)".to_owned())
}

/// Applies [`host_sysctls`] for `host`, refusing IPv6 addresses on a node without IPv6
/// or without IPv6 forwarding.
pub(crate) fn configure_host(host: &str, addrs: &[IpNet]) -> Result<(), LinkError> {
    let ipv6_on_node = Path::new(PROC_SYS).join("net/ipv6").exists();
    let ipv6_addr = addrs.iter().find(|addr| matches!(addr, IpNet::V6(_)));
    if let (false, Some(addr)) = (ipv6_on_node, ipv6_addr) {
        return Err(LinkError::Ipv6Unavailable { addr: *addr });
    }
    let mut writes = host_sysctls(host, ipv6_on_node, ipv6_addr.is_some());
    if let Some(addr) = ipv6_addr {
        let forwarding =
            ipv6_forwarding_writes(host).map_err(|reason| LinkError::Ipv6Forwarding {
                addr: *addr,
                reason,
            })?;
        writes.extend(forwarding);
    }
    for write in writes {
        let path = PathBuf::from(PROC_SYS).join(&write.key);
        match std::fs::write(&path, write.value) {
            Ok(()) => {}
            Err(err) if write.warn_only => {
                warn!(?err, path = %path.display(), "sysctl write failed; continuing");
            }
            Err(source) => {
                return Err(LinkError::Sysctl {
                    ifname: host.to_owned(),
                    path,
                    source,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_per_interface_keys_are_written() {
        let writes = host_sysctls("zwabc", true, true);
        assert_eq!(
            writes.len(),
            7,
            "expected 3 ipv4 + 4 ipv6 writes: {writes:?}"
        );
        for write in &writes {
            assert!(
                write.key.contains("/zwabc/"),
                "global sysctl written: {}",
                write.key
            );
        }
    }

    #[test]
    fn ipv4_only_pod_skips_ipv6_forwarding() {
        let keys: Vec<_> = host_sysctls("zwabc", true, false)
            .into_iter()
            .map(|w| w.key)
            .collect();
        assert!(keys.contains(&"net/ipv6/conf/zwabc/accept_ra".to_owned()));
        assert!(!keys.iter().any(|k| k.ends_with("proxy_ndp")), "{keys:?}");
        assert_eq!(host_sysctls("zwabc", false, false).len(), 3);
    }
}
