//! The read side of the registry: an immutable snapshot, swapped in whole after
//! every mutation, so readers never wait for a mutation in flight.

use std::collections::BTreeMap;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use zonewarden_profiles::response::ResponseRules;
use zonewarden_profiles::{Endpoint, Endpoints, Policy, Proto, ZoneKind, ZoneName};

use crate::store::ZoneIds;

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The registry's own map, shared (see `RegistryState::endpoints`).
    pub endpoints: Arc<Endpoints>,
    pub zone_ids: ZoneIds,
    pub policy: Policy,
    pub quarantined: BTreeSet<String>,
    pub host_addrs: Vec<IpAddr>,
    /// Addresses and zone ids to zones.
    pub resolver: Arc<Resolver>,
}

/// What naming a logged packet's zones needs: addresses and zone ids to zones, and
/// the profile versions. Much smaller than a [`Snapshot`], so the NFLOG path keeps
/// one of its own (see `EndpointRegistry::resolver`).
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    /// Endpoint address → zone id (the newest endpoint wins a shared address); the
    /// zone is in `zones_by_id`. Ids, not names: a node of a large cluster rebuilds
    /// this map of every address after each change a reader sees, as a plain copy of
    /// the compiled membership.
    pub addr_zone_ids: BTreeMap<IpAddr, u32>,
    pub host_addrs: Vec<IpAddr>,
    pub cidr_zones: BTreeMap<ZoneName, Vec<IpNet>>,
    pub zones_by_id: BTreeMap<u32, ZoneName>,
    pub versions: BTreeMap<ZoneName, u64>,
    /// Automatic response: the zones with rules, what this node acts on.
    pub response: Arc<ResponseView>,
}

/// What automatic response needs on the NFLOG path: the zones with rules, this node's
/// endpoints of those zones by address, and the (protocol, port)s the `newPort` zones
/// have approved edges for. Empty (and cheap) while no zone has rules.
#[derive(Debug, Clone, Default)]
pub struct ResponseView {
    pub rules: BTreeMap<ZoneName, ResponseRules>,
    /// This node's endpoints of zones with rules, by address.
    pub sources: BTreeMap<IpAddr, ResponseSource>,
    /// Per `newPort` zone: the (protocol, port) of every approved edge from it (in any
    /// profile: one approval allows an edge at both ends).
    pub approved_ports: BTreeMap<ZoneName, BTreeSet<(Proto, u16)>>,
}

/// One endpoint of this node in a zone with response rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseSource {
    pub container_id: String,
    pub zone: ZoneName,
    /// Already quarantined (one by one, or with its zone): never counted.
    pub quarantined: bool,
}

impl Resolver {
    /// The zone of an address: an endpoint's zone, `host` for the node's own
    /// addresses, a CIDR zone, `world` for everything else.
    pub fn zone_of(&self, addr: IpAddr) -> ZoneName {
        if self.host_addrs.contains(&addr) {
            return ZoneName::host();
        }
        if let Some(zone) = self
            .addr_zone_ids
            .get(&addr)
            .and_then(|id| self.zones_by_id.get(id))
        {
            return zone.clone();
        }
        zonewarden_profiles::policy::cidr_zone_in(&self.cidr_zones, addr)
            .cloned()
            .unwrap_or_else(ZoneName::world)
    }

    /// The zone with data-plane id `id`, if it still has one.
    pub fn zone_by_id(&self, id: u32) -> Option<ZoneName> {
        self.zones_by_id.get(&id).cloned()
    }

    /// The version of a zone's profile (0: none).
    pub fn version(&self, zone: &ZoneName) -> u64 {
        self.versions.get(zone).copied().unwrap_or(0)
    }
}

/// One zone as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSummary {
    pub name: ZoneName,
    pub id: u32,
    /// How the zone's members got it: `workload`, `config`, `annotation`, ...;
    /// `mixed` when its members disagree.
    pub kind: ZoneKind,
    /// The pod name of each member, or its container id when there is none.
    pub members: Vec<String>,
}

impl Snapshot {
    /// The zone of an address: an endpoint's zone, `host` for the node's own
    /// addresses, `world` for everything else.
    pub fn zone_of(&self, addr: IpAddr) -> ZoneName {
        self.resolver.zone_of(addr)
    }

    /// The zone with data-plane id `id`, if it still has one.
    pub fn zone_by_id(&self, id: u32) -> Option<ZoneName> {
        self.resolver.zone_by_id(id)
    }

    /// Every zone that has a profile or members, sorted.
    pub fn zone_names(&self) -> BTreeSet<ZoneName> {
        let mut zones: BTreeSet<ZoneName> = self.policy.profiles.keys().cloned().collect();
        zones.extend(self.endpoints.values().map(|e| e.zone.clone()));
        zones
    }

    /// Every zone that exists now: with members or a profile, the CIDR zones and the
    /// built-in ones.
    pub fn existing_zones(&self) -> BTreeSet<ZoneName> {
        let mut zones = self.zone_names();
        zones.extend(self.policy.cidr_zones.keys().cloned());
        zones.extend([ZoneName::host(), ZoneName::world()]);
        zones
    }

    /// Endpoints, optionally of one network and of one zone only.
    pub fn list(&self, network: Option<&str>, zone: Option<&ZoneName>) -> Vec<Endpoint> {
        self.endpoints
            .values()
            .filter(|e| network.is_none_or(|n| *e.key.network == *n))
            .filter(|e| zone.is_none_or(|z| &e.zone == z))
            .cloned()
            .collect()
    }

    /// Every zone that has an id, with its members.
    pub fn zones(&self) -> Vec<ZoneSummary> {
        let mut members: BTreeMap<&ZoneName, Vec<&Endpoint>> = BTreeMap::new();
        for endpoint in self.endpoints.values() {
            members.entry(&endpoint.zone).or_default().push(endpoint);
        }
        self.zone_ids
            .iter()
            .map(|(name, id)| {
                let endpoints = members.get(name).map(Vec::as_slice).unwrap_or_default();
                ZoneSummary {
                    name: name.clone(),
                    id,
                    kind: ZoneKind::of(endpoints.iter().map(|e| e.zone_source)),
                    members: endpoints.iter().map(|e| member_name(e)).collect(),
                }
            })
            .collect()
    }
}

/// How a zone's member is named: `namespace/pod`, the pod, or the container id.
pub fn member_name(endpoint: &Endpoint) -> String {
    match (&endpoint.pod_namespace, &endpoint.pod_name) {
        (Some(ns), Some(pod)) => format!("{ns}/{pod}"),
        (None, Some(pod)) => pod.clone(),
        _ => endpoint.key.container_id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::endpoint;
    use zonewarden_profiles::ZoneSource;

    #[test]
    fn zones_list_members_and_kind() {
        let mut snapshot = Snapshot::default();
        let mut web = endpoint("c1", "shop/web", &[]);
        web.pod_namespace = Some("shop".into());
        web.pod_name = Some("web-0".into());
        web.zone_source = ZoneSource::Workload;
        let mut other = endpoint("c2", "shop/web", &[]);
        other.zone_source = ZoneSource::Workload;
        let db = endpoint("c3", "shop/db", &[]);
        for e in [&web, &other, &db] {
            snapshot.zone_ids.allocate(&e.zone);
            Arc::make_mut(&mut snapshot.endpoints).insert(e.clone());
        }
        let zones = snapshot.zones();
        let by_name: BTreeMap<_, _> = zones.iter().map(|z| (z.name.as_str(), z)).collect();
        assert_eq!(by_name["shop/web"].members, vec!["shop/web-0", "c2"]);
        assert_eq!(
            by_name["shop/web"].kind,
            ZoneKind::Source(ZoneSource::Workload)
        );
        assert_eq!(by_name["shop/web"].id, 1);
        assert_eq!(
            by_name["shop/db"].kind,
            ZoneKind::Source(ZoneSource::Config)
        );
        assert_eq!(snapshot.list(Some("podnet"), Some(&db.zone)), vec![db]);
        assert!(snapshot.list(Some("other"), None).is_empty());
    }
}
