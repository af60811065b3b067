//! One attachment of a container to a network: what the registry stores and the data
//! plane enforces.

use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::derive::ZoneSource;
use crate::zone::ZoneName;

/// The key of an attachment, as the CNI spec identifies it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AttachmentKey {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
}

impl fmt::Display for AttachmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.network, self.container_id, self.ifname)
    }
}

/// How the plugin attached the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachMode {
    /// zonewarden made the veth pair and the routes.
    Routed,
    /// Another plugin made the interface; zonewarden only registered it.
    Chained,
    /// `zonewarden-enforcer --sidecar` registered its own pod and enforces it inside
    /// the pod's network namespace (the cluster's CNI is not zonewarden).
    Sidecar,
}

impl AttachMode {
    pub const ALL: [AttachMode; 3] = [AttachMode::Routed, AttachMode::Chained, AttachMode::Sidecar];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Routed => "routed",
            Self::Chained => "chained",
            Self::Sidecar => "sidecar",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "routed" => Some(Self::Routed),
            "chained" => Some(Self::Chained),
            "sidecar" => Some(Self::Sidecar),
            _ => None,
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A registered endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub key: AttachmentKey,
    pub zone: ZoneName,
    pub zone_source: ZoneSource,
    pub netns: String,
    /// The host-side interface, when there is one: the routed mode's veth, or in
    /// chained mode the host end of the pod's veth pair (a bridge port after `bridge`).
    pub host_ifname: Option<String>,
    /// In chained mode after a bridge: the bridge `host_ifname` is a port of. Its
    /// traffic is bridged, so anti-spoofing happens in the bridge family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    pub ips: Vec<IpNet>,
    pub mac: Option<String>,
    pub node: String,
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub attach_mode: AttachMode,
    pub created_unix_ms: i64,
}

impl Endpoint {
    /// The bare addresses of this endpoint, as the data plane matches them.
    pub fn addrs(&self) -> impl Iterator<Item = std::net::IpAddr> + '_ {
        self.ips.iter().map(IpNet::addr)
    }
}
