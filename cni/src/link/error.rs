//! [`LinkError`]: what went wrong with the veth, its addresses or its routes.

use std::io;
use std::path::PathBuf;

use ipnet::IpNet;
use nix::errno::Errno;

use crate::netns::NetnsError;

/// Failures of the link layer. A gone netns is always [`LinkError::Netns`] with
/// [`NetnsError::NotFound`], so that DEL can treat it as done.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("invalid interface name {ifname:?}: {reason}")]
    InvalidName {
        ifname: String,
        reason: &'static str,
    },
    #[error(
        "interface {ifname} already exists in {netns}; \
         delete it or pass another CNI_IFNAME"
    )]
    PodInterfaceExists { ifname: String, netns: PathBuf },
    #[error(
        "interface {ifname} already exists in {netns}: it is the pod end of the veth \
         {host_ifname} of another attachment; DEL that attachment or pass another CNI_IFNAME"
    )]
    LeftoverExists {
        ifname: String,
        netns: PathBuf,
        host_ifname: String,
    },
    #[error("interface {ifname} vanished while it was being configured; retry the ADD")]
    Vanished { ifname: String },
    #[error(
        "a route to {addr} already exists on another interface than {host_ifname}; \
         the address is still in use by another attachment"
    )]
    RouteExists { addr: IpNet, host_ifname: String },
    #[error("ipv6 address {addr} requested but ipv6 is disabled on this node")]
    Ipv6Unavailable { addr: IpNet },
    #[error(
        "ipv6 address {addr} requested but pods could not reach each other over ipv6: {reason}; \
         enable it (sysctl -w net.ipv6.conf.all.forwarding=1, which Kubernetes dual-stack requires; \
         set accept_ra=2 on interfaces that learn their routes from router advertisements) \
         or remove the ipv6 range from the IPAM config"
    )]
    Ipv6Forwarding { addr: IpNet, reason: String },
    #[error("chained mode: interface {ifname} in {netns} {reason}")]
    Chained {
        ifname: String,
        netns: PathBuf,
        reason: String,
    },
    #[error("failed to write sysctl {path} for {ifname}")]
    Sysctl {
        ifname: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("failed to start a netlink runtime")]
    Runtime { source: io::Error },
    #[error("failed to {op} on {ifname}: {source}")]
    Netlink {
        op: &'static str,
        ifname: String,
        source: rtnetlink::Error,
    },
}

impl LinkError {
    /// Wraps a netlink failure with what was attempted and on which interface.
    pub(crate) fn netlink(op: &'static str, ifname: &str) -> impl FnOnce(rtnetlink::Error) -> Self {
        let ifname = ifname.to_owned();
        move |source| Self::Netlink { op, ifname, source }
    }
}

/// Whether `err` is a netlink NACK carrying `errno`.
pub(crate) fn is_errno(err: &rtnetlink::Error, errno: Errno) -> bool {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg
            .code
            .is_some_and(|code| code.get().saturating_neg() == errno as i32),
        _ => false,
    }
}
