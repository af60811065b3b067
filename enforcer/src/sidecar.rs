//! `zonewarden-enforcer --sidecar`: the enforcer as a container of one pod, in the
//! pod's own network namespace, for clusters whose CNI is not zonewarden.
//!
//! The sidecar is its own "node" towards the store: it registers its pod as the one
//! local endpoint (attach mode `sidecar`) under the name `NODE:NAMESPACE:POD`, so its
//! endpoint record, its node record (on a lease, without a pod block), its learned
//! edges and its reports sit beside the nodes' and never mix with the node's own. The
//! zone is derived as for a CNI-attached pod: the pod's `zonewarden.io/zone`
//! annotation (subject to the operator's zone claims), else the workload of the pod
//! name.
//!
//! Everything here is decided before the first side effect: the identity comes from
//! flags, then the Downward API's environment (read through a seam), then the pod's
//! own interfaces for its addresses.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use ipnet::IpNet;
use zonewarden_profiles::derive::ZONE_ANNOTATION;
use zonewarden_profiles::{AttachMode, AttachmentKey, Endpoint, ZoneHints};

use crate::registry::AddRequest;

/// The network name of a sidecar's attachment key.
pub const NETWORK: &str = "sidecar";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SidecarError {
    #[error(
        "--sidecar needs the pod's {what}: pass {flag} or set {env} (Downward API: fieldRef {field})"
    )]
    Missing {
        what: &'static str,
        flag: &'static str,
        env: &'static str,
        field: &'static str,
    },
    #[error(
        "{flag} {value:?} cannot name a pod's {what}: it must be 1-253 characters without /, :, spaces or control characters"
    )]
    Invalid {
        what: &'static str,
        flag: &'static str,
        value: String,
    },
    #[error(
        "{env}={value:?}: {problem}; give the pod's addresses separated by commas (Downward API: fieldRef status.podIPs)"
    )]
    BadAddresses {
        env: &'static str,
        value: String,
        problem: String,
    },
    #[error(
        "--pod-ip {0} is not an address a pod can own (loopback, link-local, multicast or unspecified)"
    )]
    NotAPodAddress(IpAddr),
    #[error(
        "the pod's network namespace has no address to enforce (only loopback and link-local ones): pass --pod-ip or set POD_IPS (Downward API: fieldRef status.podIPs)"
    )]
    NoAddress,
    #[error("--sidecar {what}: {why}")]
    Conflict { what: String, why: &'static str },
    #[error(
        "--etcd-endpoints {url:?}: {problem}; the sidecar must know each member's address to let its own connections out of the pod"
    )]
    Store { url: String, problem: String },
}

/// Who the sidecar enforces, from flags and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The Kubernetes node the pod runs on.
    pub node: String,
    pub namespace: String,
    pub pod: String,
    /// The pod's `zonewarden.io/zone` annotation, when it has one.
    pub zone_annotation: Option<String>,
    /// The pod's addresses.
    pub ips: Vec<IpAddr>,
    /// The pod's interface holding its first address.
    pub ifname: String,
}

/// The identity flags as given on the command line (`None`/empty: not given).
#[derive(Debug, Clone, Default)]
pub struct IdentityFlags {
    pub node: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub zone_annotation: Option<String>,
    pub ips: Vec<IpAddr>,
}

/// A pod's own interface address: interface name and address.
pub type InterfaceAddr = (String, IpAddr);

/// Whether a pod can own `addr` (it is routed to the pod, not the link's or the host's).
fn is_pod_address(addr: IpAddr) -> bool {
    let link_local = match addr {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.is_unicast_link_local(),
    };
    !(addr.is_loopback() || addr.is_multicast() || addr.is_unspecified() || link_local)
}

fn part(
    given: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    (what, flag, var, field): (&'static str, &'static str, &'static str, &'static str),
) -> Result<String, SidecarError> {
    let value = given
        .filter(|v| !v.is_empty())
        .or_else(|| env(var).filter(|v| !v.is_empty()))
        .ok_or(SidecarError::Missing {
            what,
            flag,
            env: var,
            field,
        })?;
    let bad = value.len() > 253
        || value
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_control() || c.is_whitespace());
    if bad {
        return Err(SidecarError::Invalid { what, flag, value });
    }
    Ok(value)
}

impl Identity {
    /// The identity from `flags`, else the environment `env` (the Downward API's
    /// variables), else, for the addresses, the pod's own `interfaces`.
    pub fn resolve(
        flags: IdentityFlags,
        env: &dyn Fn(&str) -> Option<String>,
        interfaces: &[InterfaceAddr],
    ) -> Result<Self, SidecarError> {
        let node = part(
            flags.node,
            env,
            ("node name", "--node", "NODE_NAME", "spec.nodeName"),
        )?;
        let namespace = part(
            flags.namespace,
            env,
            (
                "namespace",
                "--pod-namespace",
                "POD_NAMESPACE",
                "metadata.namespace",
            ),
        )?;
        let pod = part(
            flags.pod,
            env,
            ("name", "--pod-name", "POD_NAME", "metadata.name"),
        )?;
        let zone_annotation = flags
            .zone_annotation
            .or_else(|| env("POD_ZONE_ANNOTATION"))
            .filter(|v| !v.is_empty());
        let mut ips = flags.ips;
        if ips.is_empty()
            && let Some(value) = env("POD_IPS").filter(|v| !v.trim().is_empty())
        {
            for word in value.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                let addr: IpAddr = word.parse().map_err(|err| SidecarError::BadAddresses {
                    env: "POD_IPS",
                    value: value.clone(),
                    problem: format!("{word:?} is not an address: {err}"),
                })?;
                ips.push(addr);
            }
        }
        if let Some(bad) = ips.iter().find(|a| !is_pod_address(**a)) {
            return Err(SidecarError::NotAPodAddress(*bad));
        }
        if ips.is_empty() {
            ips = interfaces
                .iter()
                .map(|(_, a)| *a)
                .filter(|a| is_pod_address(*a))
                .collect();
        }
        ips.sort();
        ips.dedup();
        let first = ips.first().copied().ok_or(SidecarError::NoAddress)?;
        let ifname = interfaces
            .iter()
            .find(|(_, a)| *a == first)
            .map_or_else(|| "eth0".to_owned(), |(name, _)| name.clone());
        Ok(Self {
            node,
            namespace,
            pod,
            zone_annotation,
            ips,
            ifname,
        })
    }

    /// The sidecar's name towards the store: `NODE:NAMESPACE:POD`, one key segment of
    /// its own beside the nodes' (its endpoint, node record, learned edges, reports).
    pub fn store_node(&self) -> String {
        format!("{}:{}:{}", self.node, self.namespace, self.pod)
    }

    /// The pod's attachment key: `sidecar/NAMESPACE/POD/IFNAME` (the container id,
    /// `NAMESPACE/POD`, is what `zwctl quarantine --endpoint` takes).
    pub fn key(&self) -> AttachmentKey {
        AttachmentKey {
            network: NETWORK.into(),
            container_id: format!("{}/{}", self.namespace, self.pod).into(),
            ifname: self.ifname.as_str().into(),
        }
    }

    /// The pod's registration, zone hints as the plugin would send them.
    pub fn request(&self) -> AddRequest {
        let mut annotations = BTreeMap::new();
        if let Some(zone) = &self.zone_annotation {
            annotations.insert(ZONE_ANNOTATION.to_owned(), zone.clone());
        }
        AddRequest {
            key: self.key(),
            hints: ZoneHints {
                pod_namespace: Some(self.namespace.clone()),
                pod_name: Some(self.pod.clone()),
                pod_annotations: annotations,
                ..ZoneHints::default()
            },
            netns: format!("sidecar of {}/{}", self.namespace, self.pod),
            host_ifname: None,
            ips: self.ips.iter().map(|a| IpNet::from(*a)).collect(),
            mac: None,
            attach_mode: AttachMode::Sidecar,
            bridge: None,
        }
    }

    /// Whether `endpoint` (found in the store at a restart) already is this pod's
    /// registration: then it is kept as it is.
    pub fn is_registered_as(&self, endpoint: &Endpoint) -> bool {
        let mut have: Vec<IpAddr> = endpoint.addrs().collect();
        have.sort();
        endpoint.key == self.key()
            && endpoint.attach_mode == AttachMode::Sidecar
            && have == self.ips
            && endpoint.pod_namespace.as_deref() == Some(self.namespace.as_str())
            && endpoint.pod_name.as_deref() == Some(self.pod.as_str())
    }
}

/// The addresses of the caller's network namespace, with their interfaces.
pub fn interface_addrs() -> Vec<InterfaceAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|ifa| {
            let a = ifa.address?;
            let ip = a
                .as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))?;
            Some((ifa.interface_name, ip))
        })
        .collect()
}

/// The cluster store's members as addresses (names resolved once, at start): the
/// sidecar's own connections to them leave the pod whatever its zone allows.
pub fn store_members(urls: &[String]) -> Result<Vec<SocketAddr>, SidecarError> {
    let mut members = Vec::new();
    for url in urls {
        let problem = |problem: &str| SidecarError::Store {
            url: url.clone(),
            problem: problem.to_owned(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| problem("not http://HOST:PORT or https://HOST:PORT"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let default_port = if scheme == "https" { 443 } else { 80 };
        let with_port = if authority.rsplit_once(':').is_some_and(|(host, port)| {
            !host.ends_with(':') && port.chars().all(|c| c.is_ascii_digit()) && !port.is_empty()
        }) {
            authority.to_owned()
        } else {
            format!("{authority}:{default_port}")
        };
        let resolved = with_port
            .to_socket_addrs()
            .map_err(|err| problem(&format!("cannot resolve it: {err}")))?;
        members.extend(resolved);
    }
    members.sort();
    members.dedup();
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| vars.get(k).cloned()
    }

    fn eth0() -> Vec<InterfaceAddr> {
        vec![
            ("lo".into(), "127.0.0.1".parse().unwrap()),
            ("lo".into(), "::1".parse().unwrap()),
            ("eth0".into(), "10.1.2.3".parse().unwrap()),
            ("eth0".into(), "fe80::1".parse().unwrap()),
            ("eth0".into(), "fd00::3".parse().unwrap()),
        ]
    }

    #[test]
    fn identity_from_the_downward_api_and_the_interfaces() {
        let id = Identity::resolve(
            IdentityFlags::default(),
            &env(&[
                ("NODE_NAME", "node-1"),
                ("POD_NAMESPACE", "shop"),
                ("POD_NAME", "web-7d4b9c8f6-x2k9p"),
                ("POD_ZONE_ANNOTATION", ""),
            ]),
            &eth0(),
        )
        .expect("identity");
        assert_eq!(id.store_node(), "node-1:shop:web-7d4b9c8f6-x2k9p");
        assert_eq!(
            id.ips,
            ["10.1.2.3", "fd00::3"].map(|a| a.parse::<IpAddr>().unwrap())
        );
        assert_eq!(id.ifname, "eth0");
        assert_eq!(id.zone_annotation, None, "an empty annotation is none");
        assert!(crate::store::etcd::keys::valid_node(&id.store_node()).is_ok());
        let request = id.request();
        assert_eq!(request.attach_mode, AttachMode::Sidecar);
        assert_eq!(&*request.key.container_id, "shop/web-7d4b9c8f6-x2k9p");
        let (zone, _) = zonewarden_profiles::derive_zone(
            &request.hints,
            &zonewarden_profiles::ZoneClaims::default(),
        )
        .expect("zone");
        assert_eq!(zone.as_str(), "shop/web", "the workload of the pod name");
    }

    #[test]
    fn flags_win_over_the_environment_and_addresses_over_the_interfaces() {
        let flags = IdentityFlags {
            node: Some("n2".into()),
            namespace: Some("bank".into()),
            pod: Some("api-0".into()),
            zone_annotation: Some("bank/payments".into()),
            ips: vec!["10.9.9.9".parse().unwrap()],
        };
        let id = Identity::resolve(
            flags,
            &env(&[("NODE_NAME", "n1"), ("POD_IPS", "10.1.1.1")]),
            &eth0(),
        )
        .expect("identity");
        assert_eq!(id.store_node(), "n2:bank:api-0");
        assert_eq!(id.ips, ["10.9.9.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(id.ifname, "eth0", "no interface holds it: the default");
        let (zone, source) = zonewarden_profiles::derive_zone(
            &id.request().hints,
            &zonewarden_profiles::ZoneClaims::default(),
        )
        .expect("zone");
        assert_eq!(
            (zone.as_str(), source),
            ("bank/payments", zonewarden_profiles::ZoneSource::Annotation)
        );
        let ips = Identity::resolve(
            IdentityFlags::default(),
            &env(&[
                ("NODE_NAME", "n1"),
                ("POD_NAMESPACE", "a"),
                ("POD_NAME", "b"),
                ("POD_IPS", "10.1.1.1, fd00::1"),
            ]),
            &[],
        )
        .expect("POD_IPS");
        assert_eq!(ips.ips.len(), 2);
    }

    #[test]
    fn another_namespaces_zone_is_refused_without_a_claim() {
        let id = Identity::resolve(
            IdentityFlags {
                zone_annotation: Some("bank/payments".into()),
                ..IdentityFlags::default()
            },
            &env(&[
                ("NODE_NAME", "n1"),
                ("POD_NAMESPACE", "shop"),
                ("POD_NAME", "web-0"),
            ]),
            &eth0(),
        )
        .expect("identity");
        assert!(
            zonewarden_profiles::derive_zone(
                &id.request().hints,
                &zonewarden_profiles::ZoneClaims::default()
            )
            .is_err(),
            "a pod names a zone of its own namespace only"
        );
    }

    #[test]
    fn missing_or_bad_identity_says_what_to_give() {
        let missing = Identity::resolve(
            IdentityFlags::default(),
            &env(&[("NODE_NAME", "n1"), ("POD_NAME", "web-0")]),
            &eth0(),
        )
        .unwrap_err();
        let text = missing.to_string();
        assert!(
            text.contains("--pod-namespace")
                && text.contains("POD_NAMESPACE")
                && text.contains("metadata.namespace"),
            "{text}"
        );
        let no_node = Identity::resolve(IdentityFlags::default(), &env(&[]), &eth0()).unwrap_err();
        assert!(no_node.to_string().contains("NODE_NAME"), "{no_node}");
        let bad = Identity::resolve(
            IdentityFlags::default(),
            &env(&[
                ("NODE_NAME", "n1"),
                ("POD_NAMESPACE", "shop"),
                ("POD_NAME", "a:b"),
            ]),
            &eth0(),
        )
        .unwrap_err();
        assert!(matches!(bad, SidecarError::Invalid { .. }), "{bad}");
        let base = [
            ("NODE_NAME", "n1"),
            ("POD_NAMESPACE", "shop"),
            ("POD_NAME", "web-0"),
        ];
        let no_address = Identity::resolve(
            IdentityFlags::default(),
            &env(&base),
            &[("lo".into(), "127.0.0.1".parse().unwrap())],
        )
        .unwrap_err();
        assert_eq!(no_address, SidecarError::NoAddress);
        let mut with_bad_ips = base.to_vec();
        with_bad_ips.push(("POD_IPS", "10.1.1.1,nonsense"));
        let bad_ips =
            Identity::resolve(IdentityFlags::default(), &env(&with_bad_ips), &eth0()).unwrap_err();
        assert!(bad_ips.to_string().contains("nonsense"), "{bad_ips}");
        let loopback = Identity::resolve(
            IdentityFlags {
                ips: vec!["127.0.0.1".parse().unwrap()],
                ..IdentityFlags::default()
            },
            &env(&base),
            &eth0(),
        )
        .unwrap_err();
        assert!(
            matches!(loopback, SidecarError::NotAPodAddress(_)),
            "{loopback}"
        );
    }

    #[test]
    fn store_members_are_addresses_with_ports() {
        let members = store_members(&[
            "http://10.0.0.1:2379".into(),
            "https://[fd00::1]:2379".into(),
            "http://127.0.0.1".into(),
        ])
        .expect("members");
        assert_eq!(
            members,
            ["10.0.0.1:2379", "127.0.0.1:80", "[fd00::1]:2379"]
                .map(|a| a.parse::<SocketAddr>().unwrap())
        );
        assert!(store_members(&["10.0.0.1:2379".into()]).is_err());
    }
}
