//! The mapping between the gRPC messages and the model: every field is validated
//! here, and bad input becomes `invalid_argument` naming the field and its value.

use ipnet::IpNet;
use tonic::Status;
use zonewarden_profiles::{AttachMode, AttachmentKey, Endpoint, ZoneHints, ZoneName};
use zonewarden_proto::v1;

use crate::registry::{AddRequest, ZoneSummary};

fn non_empty(field: &str, value: String) -> Result<String, Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field} is empty; the runtime must pass it"
        )));
    }
    Ok(value)
}

fn optional(value: String) -> Option<String> {
    Some(value).filter(|v| !v.is_empty())
}

pub fn key_from_proto(key: Option<v1::AttachmentKey>) -> Result<AttachmentKey, Status> {
    let key = key.ok_or_else(|| Status::invalid_argument("key is missing"))?;
    Ok(AttachmentKey {
        network: non_empty("key.network", key.network)?,
        container_id: non_empty("key.container_id", key.container_id)?,
        ifname: non_empty("key.ifname", key.ifname)?,
    })
}

pub fn hints_from_proto(hints: v1::ZoneHints) -> Result<ZoneHints, Status> {
    let mut model = ZoneHints {
        pod_namespace: optional(hints.pod_namespace),
        pod_name: optional(hints.pod_name),
        pod_annotations: hints.pod_annotations.into_iter().collect(),
        ..ZoneHints::default()
    };
    if !hints.explicit_zone.is_empty() {
        match hints.explicit_source.as_str() {
            "cni-args" => model.cni_args_zone = Some(hints.explicit_zone),
            "config" => model.config_zone = Some(hints.explicit_zone),
            other => {
                return Err(Status::invalid_argument(format!(
                    "hints.explicit_source {other:?} is neither \"cni-args\" nor \"config\""
                )));
            }
        }
    }
    Ok(model)
}

pub fn add_request_from_proto(request: v1::AddEndpointRequest) -> Result<AddRequest, Status> {
    let ips = request
        .ips
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            ip.parse::<IpNet>().map_err(|err| {
                Status::invalid_argument(format!(
                    "ips[{i}] {ip:?} is not an address in CIDR notation: {err}"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let attach_mode = AttachMode::parse(&request.attach_mode).ok_or_else(|| {
        Status::invalid_argument(format!(
            "attach_mode {:?} is neither \"routed\" nor \"chained\"",
            request.attach_mode
        ))
    })?;
    let bridge = optional(request.bridge);
    let host_ifname = optional(request.host_ifname);
    let mac = optional(request.mac);
    if let Some(bridge) = &bridge {
        let problem = if attach_mode != AttachMode::Chained {
            Some("a bridge port is only registered in chained mode")
        } else if host_ifname.is_none() {
            Some("a bridge port needs its host_ifname")
        } else if !mac.as_deref().is_some_and(is_mac) {
            Some("a bridge port needs the pod's MAC address (aa:bb:cc:dd:ee:ff)")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(Status::invalid_argument(format!(
                "bridge {bridge:?}: {problem}"
            )));
        }
    }
    for (what, name) in [("host_ifname", &host_ifname), ("bridge", &bridge)] {
        if let Some(name) = name
            && !is_ifname(name)
        {
            return Err(Status::invalid_argument(format!(
                "{what} {name:?} is not an interface name (1-15 characters, no '/', ':' or spaces)"
            )));
        }
    }
    Ok(AddRequest {
        key: key_from_proto(request.key)?,
        hints: hints_from_proto(request.hints.unwrap_or_default())?,
        netns: request.netns,
        host_ifname,
        ips,
        mac,
        attach_mode,
        bridge,
    })
}

/// `aa:bb:cc:dd:ee:ff` in lowercase or uppercase hex.
fn is_mac(text: &str) -> bool {
    let parts: Vec<&str> = text.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A Linux interface name: 1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
fn is_ifname(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && !name.contains(['/', ':'])
        && !name.contains(char::is_whitespace)
}

/// An optional filter: empty means none.
pub fn zone_filter(zone: &str) -> Result<Option<ZoneName>, Status> {
    if zone.is_empty() {
        return Ok(None);
    }
    ZoneName::parse_any(zone)
        .map(Some)
        .map_err(|err| Status::invalid_argument(format!("zone filter: {err}")))
}

pub fn key_to_proto(key: &AttachmentKey) -> v1::AttachmentKey {
    v1::AttachmentKey {
        network: key.network.clone(),
        container_id: key.container_id.clone(),
        ifname: key.ifname.clone(),
    }
}

pub fn endpoint_to_proto(endpoint: &Endpoint) -> v1::Endpoint {
    v1::Endpoint {
        key: Some(key_to_proto(&endpoint.key)),
        zone: endpoint.zone.to_string(),
        zone_source: endpoint.zone_source.as_str().to_owned(),
        netns: endpoint.netns.clone(),
        host_ifname: endpoint.host_ifname.clone().unwrap_or_default(),
        ips: endpoint.ips.iter().map(ToString::to_string).collect(),
        mac: endpoint.mac.clone().unwrap_or_default(),
        node: endpoint.node.clone(),
        pod_namespace: endpoint.pod_namespace.clone().unwrap_or_default(),
        pod_name: endpoint.pod_name.clone().unwrap_or_default(),
        attach_mode: endpoint.attach_mode.as_str().to_owned(),
        created_unix_ms: endpoint.created_unix_ms,
        bridge: endpoint.bridge.clone().unwrap_or_default(),
    }
}

pub fn zone_to_proto(zone: ZoneSummary) -> v1::Zone {
    v1::Zone {
        name: zone.name.to_string(),
        id: zone.id,
        kind: zone.kind,
        endpoint_count: u32::try_from(zone.members.len()).unwrap_or(u32::MAX),
        members: zone.members,
        cidrs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(ips: &[&str], source: &str) -> v1::AddEndpointRequest {
        v1::AddEndpointRequest {
            key: Some(v1::AttachmentKey {
                network: "n".into(),
                container_id: "c".into(),
                ifname: "eth0".into(),
            }),
            hints: Some(v1::ZoneHints {
                explicit_zone: "shop/web".into(),
                explicit_source: source.into(),
                ..Default::default()
            }),
            ips: ips.iter().map(|s| (*s).to_owned()).collect(),
            attach_mode: "routed".into(),
            ..Default::default()
        }
    }

    #[test]
    fn explicit_zones_go_where_their_source_says() {
        let request = add_request_from_proto(add(&["10.0.0.5/24"], "cni-args")).unwrap();
        assert_eq!(request.hints.cni_args_zone.as_deref(), Some("shop/web"));
        let request = add_request_from_proto(add(&[], "config")).unwrap();
        assert_eq!(request.hints.config_zone.as_deref(), Some("shop/web"));
        let err = add_request_from_proto(add(&[], "env")).unwrap_err();
        assert!(
            err.message().contains("hints.explicit_source \"env\""),
            "{err}"
        );
    }

    #[test]
    fn bad_input_names_the_field_and_value() {
        let err =
            add_request_from_proto(add(&["10.0.0.5/24", "10.0.0.300/24"], "config")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().starts_with("ips[1] \"10.0.0.300/24\""),
            "{err}"
        );
        let mut request = add(&[], "config");
        request.key.as_mut().unwrap().container_id.clear();
        let err = add_request_from_proto(request).unwrap_err();
        assert!(err.message().contains("key.container_id is empty"), "{err}");
        let mut request = add(&[], "config");
        request.attach_mode = "bridged".into();
        assert!(
            add_request_from_proto(request)
                .unwrap_err()
                .message()
                .contains("\"bridged\"")
        );
    }
}
