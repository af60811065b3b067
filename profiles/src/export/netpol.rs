//! Profiles as Kubernetes NetworkPolicies (`networking.k8s.io/v1`), one per zone.
//!
//! A zone `ns/name` becomes the policy `zonewarden-name` in namespace `ns`, selecting
//! the pods labelled `zonewarden.io/zone: name`. Its ingress rules come from the
//! approved edges into the zone, its egress rules from the edges out of it, in every
//! profile (one approval allows an edge at both ends). Wherever NetworkPolicy cannot
//! say what the profile says (the `host` zone, ICMP, `world` as "no endpoint", modes
//! that do not drop), the YAML carries a `# zonewarden: ...` comment.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use ipnet::IpNet;

use super::ProfileDocument;
use crate::edge::{Edge, Proto};
use crate::profile::Mode;
use crate::zone::{HOST_ZONE, WORLD_ZONE, ZoneName};

/// The label pods must carry for a zone's policy to select them.
pub const ZONE_LABEL: &str = "zonewarden.io/zone";

/// What the policies are rendered from.
#[derive(Debug, Clone, Copy)]
pub struct NetpolInput<'a> {
    /// Every profile: edges approved at the other end count too.
    pub documents: &'a [ProfileDocument],
    /// The zones to render a policy for.
    pub zones: &'a BTreeSet<ZoneName>,
    /// Operator-defined CIDR zones and their networks.
    pub cidr_zones: &'a BTreeMap<ZoneName, Vec<IpNet>>,
}

/// The other end of an edge, as a NetworkPolicy peer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Peer {
    Pods {
        namespace: Option<String>,
        name: String,
    },
    Cidrs(Vec<IpNet>),
    World,
    Host,
}

fn split(zone: &ZoneName) -> (Option<&str>, &str) {
    match zone.as_str().split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, zone.as_str()),
    }
}

fn peer_of(zone: &ZoneName, cidr_zones: &BTreeMap<ZoneName, Vec<IpNet>>) -> Peer {
    match zone.as_str() {
        HOST_ZONE => Peer::Host,
        WORLD_ZONE => Peer::World,
        _ => match cidr_zones.get(zone) {
            Some(nets) => Peer::Cidrs(nets.clone()),
            None => {
                let (namespace, name) = split(zone);
                Peer::Pods {
                    namespace: namespace.map(str::to_owned),
                    name: name.to_owned(),
                }
            }
        },
    }
}

/// Renders one NetworkPolicy document per zone, sorted by zone.
pub fn render(input: &NetpolInput<'_>) -> String {
    let modes: BTreeMap<&ZoneName, (Mode, u64)> = input
        .documents
        .iter()
        .map(|d| (&d.zone, (d.mode, d.version)))
        .collect();
    let approved: BTreeSet<&Edge> = input
        .documents
        .iter()
        .flat_map(|d| d.approved.iter())
        .collect();
    let mut out = String::new();
    for zone in input.zones {
        let (mode, version) = modes.get(zone).copied().unwrap_or_default();
        out.push_str("---\n");
        if zone.is_builtin() || input.cidr_zones.contains_key(zone) {
            let _ = writeln!(
                out,
                "# zonewarden: zone {zone} holds no pods, so it has no NetworkPolicy of its own; \
                 the policies of the zones it talks to cover its edges"
            );
            continue;
        }
        let edges: Vec<&Edge> = approved
            .iter()
            .copied()
            .filter(|e| e.touches(zone))
            .collect();
        render_zone(&mut out, zone, mode, version, &edges, input.cidr_zones);
    }
    out
}

fn render_zone(
    out: &mut String,
    zone: &ZoneName,
    mode: Mode,
    version: u64,
    edges: &[&Edge],
    cidr_zones: &BTreeMap<ZoneName, Vec<IpNet>>,
) {
    let (namespace, name) = split(zone);
    let _ = writeln!(
        out,
        "# zonewarden: zone {zone}, profile version {version}, mode {mode}"
    );
    let _ = writeln!(
        out,
        "# zonewarden: the zone's pods must carry the label {ZONE_LABEL}: {name}, or adapt the podSelectors"
    );
    if mode != Mode::Enforce {
        let _ = writeln!(
            out,
            "# zonewarden: the zone is in {mode} mode, so zonewarden drops nothing for it; \
             this policy drops every connection that is not approved"
        );
    }
    if namespace.is_none() {
        let _ = writeln!(
            out,
            "# zonewarden: zone {zone} has no namespace; the policy is put in namespace default"
        );
    }
    if name.len() > 63 {
        let _ = writeln!(
            out,
            "# zonewarden: {name:?} is longer than a label value may be (63); shorten it in the selectors"
        );
    }
    let _ = writeln!(out, "apiVersion: networking.k8s.io/v1");
    let _ = writeln!(out, "kind: NetworkPolicy");
    let _ = writeln!(out, "metadata:");
    let _ = writeln!(out, "  name: zonewarden-{name}");
    let _ = writeln!(out, "  namespace: {}", namespace.unwrap_or("default"));
    let _ = writeln!(out, "  labels:");
    let _ = writeln!(out, "    app.kubernetes.io/managed-by: zonewarden");
    let _ = writeln!(out, "spec:");
    let _ = writeln!(out, "  podSelector:");
    let _ = writeln!(out, "    matchLabels:");
    let _ = writeln!(out, "      {ZONE_LABEL}: {name}");
    let _ = writeln!(out, "  policyTypes:");
    let _ = writeln!(out, "    - Ingress");
    let _ = writeln!(out, "    - Egress");
    let ingress = edges
        .iter()
        .filter(|e| &e.dst == zone)
        .map(|e| (&e.src, *e));
    let egress = edges
        .iter()
        .filter(|e| &e.src == zone)
        .map(|e| (&e.dst, *e));
    render_direction(out, "ingress", "from", namespace, ingress, cidr_zones);
    render_direction(out, "egress", "to", namespace, egress, cidr_zones);
}

/// One direction's rules, one rule per peer with its ports.
fn render_direction<'a>(
    out: &mut String,
    section: &str,
    peers_key: &str,
    own_namespace: Option<&str>,
    edges: impl Iterator<Item = (&'a ZoneName, &'a Edge)>,
    cidr_zones: &BTreeMap<ZoneName, Vec<IpNet>>,
) {
    let mut by_peer: BTreeMap<Peer, Vec<&Edge>> = BTreeMap::new();
    for (other, edge) in edges {
        by_peer
            .entry(peer_of(other, cidr_zones))
            .or_default()
            .push(edge);
    }
    let mut rules = String::new();
    let mut notes = String::new();
    for (peer, edges) in &by_peer {
        let (ported, portless): (Vec<&Edge>, Vec<&Edge>) =
            edges.iter().partition(|e| e.proto.has_ports());
        for edge in &portless {
            let _ = writeln!(
                notes,
                "    # zonewarden: {edge} cannot be expressed: NetworkPolicy has only TCP, UDP and SCTP"
            );
        }
        if *peer == Peer::Host {
            for edge in &ported {
                let _ = writeln!(
                    notes,
                    "    # zonewarden: {edge} cannot be expressed: NetworkPolicy cannot select the node \
                     itself (most CNI plugins let the node's own traffic, e.g. kubelet probes, pass)"
                );
            }
            continue;
        }
        if ported.is_empty() {
            continue;
        }
        for edge in &ported {
            let _ = writeln!(rules, "    # {edge}");
        }
        let _ = writeln!(rules, "    - {peers_key}:");
        render_peer(&mut rules, peer, own_namespace);
        let _ = writeln!(rules, "      ports:");
        let ports: BTreeSet<(Proto, u16)> = ported.iter().map(|e| (e.proto, e.port)).collect();
        for (proto, port) in ports {
            let _ = writeln!(
                rules,
                "        - protocol: {}",
                proto.name().to_ascii_uppercase()
            );
            let _ = writeln!(rules, "          port: {port}");
        }
    }
    if rules.is_empty() {
        let _ = writeln!(out, "  {section}: []");
        out.push_str(&notes);
    } else {
        let _ = writeln!(out, "  {section}:");
        out.push_str(&notes);
        out.push_str(&rules);
    }
}

fn render_peer(out: &mut String, peer: &Peer, own_namespace: Option<&str>) {
    match peer {
        Peer::Pods { namespace, name } => {
            match (namespace.as_deref(), own_namespace) {
                (Some(ns), Some(own)) if ns == own => {
                    let _ = writeln!(out, "        - podSelector:");
                }
                (Some(ns), _) => {
                    let _ = writeln!(out, "        - namespaceSelector:");
                    let _ = writeln!(out, "            matchLabels:");
                    let _ = writeln!(out, "              kubernetes.io/metadata.name: {ns}");
                    let _ = writeln!(out, "          podSelector:");
                }
                (None, _) => {
                    let _ = writeln!(
                        out,
                        "        # zonewarden: zone {name} has no namespace: its pods are matched in every namespace"
                    );
                    let _ = writeln!(out, "        - namespaceSelector: {{}}");
                    let _ = writeln!(out, "          podSelector:");
                }
            }
            let _ = writeln!(out, "            matchLabels:");
            let _ = writeln!(out, "              {ZONE_LABEL}: {name}");
        }
        Peer::Cidrs(nets) => {
            for net in nets {
                let _ = writeln!(out, "        - ipBlock:");
                let _ = writeln!(out, "            cidr: {net}");
            }
        }
        Peer::World => {
            let _ = writeln!(
                out,
                "        # zonewarden: world is every address that is no endpoint; ipBlock cannot \
                 leave the pods out, so these blocks may also match pods"
            );
            for net in ["0.0.0.0/0", "::/0"] {
                let _ = writeln!(out, "        - ipBlock:");
                let _ = writeln!(out, "            cidr: {net}");
            }
        }
        Peer::Host => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(zone: &str, mode: Mode, version: u64, edges: &[&str]) -> ProfileDocument {
        ProfileDocument {
            zone: ZoneName::parse(zone).unwrap(),
            mode,
            version,
            approved: edges.iter().map(|e| e.parse().unwrap()).collect(),
            rejected: Default::default(),
            response: Default::default(),
            comment: None,
        }
    }

    #[test]
    fn policies_for_a_shop() {
        let documents = vec![
            doc(
                "shop/api",
                Mode::Enforce,
                4,
                &[
                    "shop/frontend->shop/api:8080/tcp",
                    "shop/frontend->shop/api:8443/tcp",
                    "shop/api->shop/db:5432/tcp",
                    "shop/api->kube-system/coredns:53/udp",
                    "shop/api->world:443/tcp",
                    "shop/api->corp-dns:53/udp",
                    "host->shop/api:8080/tcp",
                    "shop/api->shop/api:icmp",
                ],
            ),
            doc("shop/db", Mode::Monitor, 2, &[]),
            doc("batch", Mode::Enforce, 1, &["batch->shop/api:8080/tcp"]),
        ];
        let zones: BTreeSet<ZoneName> = ["shop/api", "shop/db", "batch", "corp-dns"]
            .into_iter()
            .map(|z| ZoneName::parse(z).unwrap())
            .collect();
        let cidr_zones = BTreeMap::from([(
            ZoneName::parse("corp-dns").unwrap(),
            vec!["10.1.2.0/24".parse().unwrap()],
        )]);
        let text = render(&NetpolInput {
            documents: &documents,
            zones: &zones,
            cidr_zones: &cidr_zones,
        });
        insta::assert_snapshot!(text);
        // Every document is valid YAML.
        let parsed: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&text).expect("valid YAML");
        assert_eq!(parsed.len(), 3, "corp-dns renders as a comment only");
        assert_eq!(parsed[2]["spec"]["ingress"][0]["ports"][0]["port"], 5432);
    }
}
