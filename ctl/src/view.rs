//! Plain serde views of the enforcer's messages: what `-o json|yaml` prints.
//!
//! They mirror the proto messages field by field, with the proto3 JSON names
//! (lowerCamelCase), so a script sees the same shape the API documents. The
//! generated prost types stay free of serde; every view converts `From` its message.

use serde::Serialize;
use zonewarden_proto::v1;

/// The identity of one attachment (`AttachmentKey`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentKeyView {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
}

impl From<v1::AttachmentKey> for AttachmentKeyView {
    fn from(key: v1::AttachmentKey) -> Self {
        Self {
            network: key.network,
            container_id: key.container_id,
            ifname: key.ifname,
        }
    }
}

/// One container attachment (`Endpoint`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    pub key: AttachmentKeyView,
    pub zone: String,
    pub zone_source: String,
    pub netns: String,
    pub host_ifname: String,
    pub ips: Vec<String>,
    pub mac: String,
    pub node: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub attach_mode: String,
    pub created_unix_ms: i64,
}

impl From<v1::Endpoint> for EndpointView {
    fn from(ep: v1::Endpoint) -> Self {
        Self {
            key: ep.key.map(AttachmentKeyView::from).unwrap_or_default(),
            zone: ep.zone,
            zone_source: ep.zone_source,
            netns: ep.netns,
            host_ifname: ep.host_ifname,
            ips: ep.ips,
            mac: ep.mac,
            node: ep.node,
            pod_namespace: ep.pod_namespace,
            pod_name: ep.pod_name,
            attach_mode: ep.attach_mode,
            created_unix_ms: ep.created_unix_ms,
        }
    }
}

impl EndpointView {
    /// `namespace/name`, or just the name when the namespace is unknown; empty when
    /// the attachment is not a Kubernetes pod.
    pub fn pod(&self) -> String {
        match (self.pod_namespace.as_str(), self.pod_name.as_str()) {
            (_, "") => String::new(),
            ("", name) => name.to_owned(),
            (ns, name) => format!("{ns}/{name}"),
        }
    }
}

/// One zone and its members (`Zone`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneView {
    pub name: String,
    pub id: u32,
    pub kind: String,
    pub endpoint_count: u32,
    pub members: Vec<String>,
}

impl From<v1::Zone> for ZoneView {
    fn from(zone: v1::Zone) -> Self {
        Self {
            name: zone.name,
            id: zone.id,
            kind: zone.kind,
            endpoint_count: zone.endpoint_count,
            members: zone.members,
        }
    }
}

/// Whether the enforcer can serve ADD now (`StatusResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub ready: bool,
    pub message: String,
    pub node: String,
    pub endpoint_count: u32,
    pub version: String,
}

impl From<v1::StatusResponse> for StatusView {
    fn from(status: v1::StatusResponse) -> Self {
        Self {
            ready: status.ready,
            message: status.message,
            node: status.node,
            endpoint_count: status.endpoint_count,
            version: status.version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_without_key_converts_to_an_empty_key() {
        let view = EndpointView::from(v1::Endpoint {
            zone: "z".into(),
            ..Default::default()
        });
        assert_eq!(view.key, AttachmentKeyView::default());
        assert_eq!(view.zone, "z");
    }

    #[test]
    fn pod_is_namespace_slash_name_or_what_is_known() {
        let mut ep = EndpointView {
            pod_namespace: "shop".into(),
            pod_name: "web-0".into(),
            ..Default::default()
        };
        assert_eq!(ep.pod(), "shop/web-0");
        ep.pod_namespace.clear();
        assert_eq!(ep.pod(), "web-0");
        ep.pod_name.clear();
        ep.pod_namespace = "shop".into();
        assert_eq!(ep.pod(), "", "a namespace without a pod name is no pod");
    }
}
