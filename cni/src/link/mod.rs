//! The routed-veth link layer of the CNI plugin (Calico-style, see CNI-NOTES §4).
//!
//! A pod gets one veth pair: the host end (`zw…`, MAC `ee:ee:ee:ee:ee:ee`, proxy ARP)
//! in the caller's network namespace and the pod end (`CNI_IFNAME`) created directly in
//! the pod's. The pod reaches everything through the link-local gateway `169.254.1.1`
//! (IPv6: `fe80::ecee:eeff:feee:eeee`), which is the host end; the host routes each pod
//! address as a /32 or /128 to the host end.
//!
//! Every function is blocking: it opens its own netlink socket on a thread of its own in
//! the right namespace, so it may be called from any thread that is not a tokio worker.
//!
//! # Layout
//! - `error`: [`LinkError`].
//! - `netlink`: the per-call runtime and connection, link lookups.
//! - `veth`: [`setup_routed`] and [`teardown_routed`].
//! - `release`: [`release_pod_end`], which frees `CNI_IFNAME` when DEL returns.
//! - `routes`: addresses, routes and neighbours on both ends.
//! - `sysctl`: the host end's per-interface sysctls.
//! - `inspect`: [`verify_routed`], [`pod_interface`], [`list_host_links`].
//! - `table`: the main routing table read back.

mod error;
mod inspect;
mod netlink;
mod release;
mod routes;
mod sysctl;
mod table;
mod veth;

#[cfg(test)]
mod test_netns;
#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

pub use error::LinkError;
pub use inspect::{HostPeer, chained_interface, list_host_links, pod_interface, verify_routed};
pub use release::{RELEASED_PREFIX, release_pod_end};
pub use veth::{
    HostEnd, configure_routed, create_routed, replace_leftover, setup_routed, teardown_routed,
};

/// The pod's IPv4 gateway: the host end of the veth, answered by a permanent neighbour.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The pod's IPv6 gateway: the EUI-64 link-local address of [`HOST_MAC`].
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);
/// The MAC address of every host end.
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// The prefix of every host end's name.
pub const HOST_IFNAME_PREFIX: &str = "zw";

/// What [`setup_routed`] builds and [`verify_routed`] checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedSpec {
    /// The pod's netns file (`CNI_NETNS`).
    pub netns: PathBuf,
    /// The pod end's name (`CNI_IFNAME`).
    pub ifname: String,
    /// The host end's name, normally [`host_ifname`].
    pub host_ifname: String,
    /// The pod's addresses; each is used as a host prefix (/32 or /128) whatever its length.
    pub addrs: Vec<IpNet>,
    /// The MTU of both ends; the kernel default when `None`.
    pub mtu: Option<u32>,
}

/// The MACs of a freshly built pair, lowercase `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedLinks {
    pub host_mac: String,
    pub pod_mac: String,
}

/// An interface as seen inside a pod's netns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInterface {
    pub mac: String,
    /// Every address on it, link-local ones included, with their prefix lengths.
    pub addrs: Vec<IpNet>,
    /// Administratively up.
    pub up: bool,
    pub index: u32,
}

/// The host end's name for one attachment: `zw` + 11 hex digits of
/// sha256(`"{network}:{container_id}:{ifname}"`), 13 characters. The network is part
/// of it: two networks attaching the same container (each with its own eth0 in its
/// own namespace, or eth0 and eth1) never share a name. None of the three may hold a
/// `:` (CNI validates them), so distinct attachments hash distinct strings.
pub fn host_ifname(network: &str, container_id: &str, ifname: &str) -> String {
    hashed_ifname(&format!("{network}:{container_id}:{ifname}"))
}

/// The name earlier versions gave the host end, without the network
/// (sha256(`"{container_id}:{ifname}"`)): DEL, CHECK and GC still find those.
pub fn legacy_host_ifname(container_id: &str, ifname: &str) -> String {
    hashed_ifname(&format!("{container_id}:{ifname}"))
}

fn hashed_ifname(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{HOST_IFNAME_PREFIX}{}", &hex[..11])
}

/// Whether `name` has the shape of a name [`host_ifname`] makes (`zw` + 11 hex digits),
/// so that GC never mistakes another link that merely starts with `zw` for one of ours.
pub fn is_host_ifname(name: &str) -> bool {
    name.strip_prefix(HOST_IFNAME_PREFIX).is_some_and(|rest| {
        rest.len() == 11
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Formats a hardware address as lowercase colon-separated hex.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The address as a host prefix: /32 for IPv4, /128 for IPv6.
pub(crate) fn host_prefix(net: &IpNet) -> IpNet {
    IpNet::from(net.addr())
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn host_ifname_is_zw_and_11_hex_digits() {
        let name = host_ifname("net-a", "0123abcd", "eth0");
        assert_eq!(name.len(), 13, "{name}");
        assert!(is_host_ifname(&name), "{name}");
        // sha256("net-a:0123abcd:eth0") starts with these digits.
        let digest = Sha256::digest(b"net-a:0123abcd:eth0");
        assert_eq!(&name[2..], &format_mac(&digest[..6]).replace(':', "")[..11]);
        assert_eq!(
            name,
            host_ifname("net-a", "0123abcd", "eth0"),
            "the name must be stable"
        );
        for other in [
            host_ifname("net-a", "0123abcd", "eth1"),
            host_ifname("net-b", "0123abcd", "eth0"),
            host_ifname("net-a", "0123abce", "eth0"),
        ] {
            assert_ne!(
                name, other,
                "network, container and ifname are all part of it"
            );
        }
        let legacy = legacy_host_ifname("0123abcd", "eth0");
        let digest = Sha256::digest(b"0123abcd:eth0");
        assert_eq!(
            &legacy[2..],
            &format_mac(&digest[..6]).replace(':', "")[..11]
        );
        assert!(is_host_ifname(&legacy) && legacy != name, "{legacy}");
    }

    #[test]
    fn macs_are_lowercase_colon_hex() {
        assert_eq!(format_mac(&HOST_MAC), "ee:ee:ee:ee:ee:ee");
        assert_eq!(
            format_mac(&[0x0a, 0xBC, 0, 1, 0xff, 0x10]),
            "0a:bc:00:01:ff:10"
        );
        assert_eq!(format_mac(&[]), "");
    }

    #[test]
    fn addresses_become_host_prefixes() {
        let v4: IpNet = "10.1.2.3/24".parse().expect("v4");
        let v6: IpNet = "fd00::5/64".parse().expect("v6");
        assert_eq!(host_prefix(&v4).to_string(), "10.1.2.3/32");
        assert_eq!(host_prefix(&v6).to_string(), "fd00::5/128");
    }
}
