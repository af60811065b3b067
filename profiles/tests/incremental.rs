//! The incremental compiler against the full one: after every change (and every
//! batch of changes) its ruleset equals what compile makes of the whole state, its
//! diff equals `RulesetDiff::between` the rulesets before and after, and the inverse
//! changes bring the previous ruleset back exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use proptest::prelude::*;
use zonewarden_profiles::diff::RulesetDiff;
use zonewarden_profiles::incremental::{Change, Incremental, State};
use zonewarden_profiles::policy::NodeSettings;
use zonewarden_profiles::profile::{Mode, Profile};
use zonewarden_profiles::ruleset::{CompileInput, Ruleset, SetKinds, compile};
use zonewarden_profiles::{
    AttachMode, AttachmentKey, Edge, Endpoint, Endpoints, Policy, Proto, ZoneName, ZoneSource,
};

const NODE: &str = "node";
const SERVICES: [(Proto, u16); 3] = [(Proto::Tcp, 80), (Proto::Udp, 53), (Proto::Icmp, 0)];
/// Endpoint addresses: few, so that endpoints claim the same ones; the last is also a
/// host address.
const ADDRS: [&str; 6] = [
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "10.0.0.4",
    "fd00::1",
    "10.255.0.1",
];
const HOST_ADDRS: [&str; 3] = ["10.255.0.1", "10.255.0.2", "fd00::ff"];
/// Workload zones `ns/z0`..`ns/z4`, with profiles; `ns/z4` has no id.
const ZONES: usize = 5;
/// Zone indexes past the endpoint zones: `host`, the CIDR zone, `world`.
const ENDS: usize = ZONES + 3;

fn zone(i: usize) -> ZoneName {
    match i.checked_sub(ZONES) {
        None => ZoneName::parse(&format!("ns/z{i}")).unwrap(),
        Some(0) => ZoneName::host(),
        Some(1) => corp(),
        Some(_) => ZoneName::world(),
    }
}

fn corp() -> ZoneName {
    ZoneName::parse("ext/corp").unwrap()
}

/// Every zone has an id but `ns/z4`. Endpoints may be in `host`, `world` or the CIDR
/// zone too (the registry refuses those names, a store may still hold them).
fn zone_ids() -> BTreeMap<ZoneName, u32> {
    (0..ENDS)
        .filter(|i| *i != ZONES - 1)
        .map(|i| (zone(i), i as u32 + 1))
        .collect()
}

/// Two prefixes of one network, one with host bits: compile truncates them into one.
fn corp_nets() -> Vec<ipnet::IpNet> {
    vec![
        "10.250.0.5/28".parse().unwrap(),
        "10.250.0.0/28".parse().unwrap(),
    ]
}

fn addr(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Eight attachments: four containers with two interfaces each.
fn key(i: usize) -> AttachmentKey {
    AttachmentKey {
        network: "n".into(),
        container_id: format!("c{}", i / 2).into(),
        ifname: format!("eth{}", i % 2).into(),
    }
}

#[derive(Debug, Clone)]
struct EndpointSpec {
    key: usize,
    zone: usize,
    local: bool,
    addrs: Vec<usize>,
    created: i64,
    pod: bool,
}

fn endpoint(spec: &EndpointSpec) -> Endpoint {
    let key = key(spec.key);
    Endpoint {
        host_ifname: spec.local.then(|| format!("zw{}", key.container_id)),
        zone: zone(spec.zone),
        zone_source: ZoneSource::Config,
        netns: String::new(),
        ips: spec
            .addrs
            .iter()
            .map(|i| {
                let a = addr(ADDRS[*i]);
                ipnet::IpNet::new(a, if a.is_ipv4() { 32 } else { 128 }).unwrap()
            })
            .collect(),
        mac: None,
        node: if spec.local { NODE } else { "other" }.into(),
        pod_namespace: spec.pod.then(|| "ns".into()),
        pod_name: spec.pod.then(|| format!("pod-{}", spec.key)),
        attach_mode: AttachMode::Routed,
        created_unix_ms: spec.created,
        bridge: None,
        key,
    }
}

fn endpoint_spec() -> impl Strategy<Value = EndpointSpec> {
    (
        0..8usize,
        prop_oneof![8 => 0..ZONES, 1 => ZONES..ENDS],
        prop::bool::weighted(0.7),
        prop::collection::vec(0..ADDRS.len(), 0..3),
        0..4i64,
        any::<bool>(),
    )
        .prop_map(|(key, zone, local, addrs, created, pod)| EndpointSpec {
            key,
            zone,
            local,
            addrs,
            created,
            pod,
        })
}

/// An edge between zone `z` (an endpoint zone) and `other` (any end).
fn edge(z: usize, other: usize, outgoing: bool, service: usize) -> Edge {
    let (src, dst) = if outgoing { (z, other) } else { (other, z) };
    let (proto, port) = SERVICES[service];
    Edge::new(zone(src), zone(dst), proto, port)
}

fn edge_spec() -> impl Strategy<Value = (usize, bool, usize)> {
    (0..ENDS, any::<bool>(), 0..SERVICES.len())
}

#[derive(Debug, Clone)]
struct Model {
    policy: Policy,
    endpoints: Endpoints,
    zone_ids: BTreeMap<ZoneName, u32>,
    host_addrs: Vec<IpAddr>,
    quarantined: BTreeSet<String>,
}

impl Model {
    fn with_state<R>(&self, f: impl FnOnce(&State<'_>) -> R) -> R {
        let zone_id = |z: &ZoneName| self.zone_ids.get(z).copied();
        f(&State {
            node: NODE,
            policy: &self.policy,
            endpoints: &self.endpoints,
            zone_id: &zone_id,
            host_addrs: &self.host_addrs,
            quarantined_endpoints: &self.quarantined,
        })
    }

    /// The reference: the whole state compiled as the enforcer does it.
    fn compiled(&self) -> Ruleset {
        let mut endpoints: Vec<Endpoint> = self.endpoints.values().cloned().collect();
        endpoints.sort_by_key(|e| e.created_unix_ms);
        compile(&CompileInput {
            policy: &self.policy,
            endpoints: &endpoints,
            node: NODE,
            zone_ids: &self.zone_ids,
            host_addrs: &self.host_addrs,
            quarantined_endpoints: &self.quarantined,
        })
    }

    fn profile(&mut self, z: usize) -> &mut Profile {
        let zone = zone(z);
        self.policy
            .profiles
            .entry(zone.clone())
            .or_insert_with(|| Profile::new(zone))
    }

    /// Makes the change; returns what `update` hears of it (a replacement is a removal
    /// and an addition).
    fn apply(&mut self, change: &ChangeSpec) -> Vec<Applied> {
        let applied = match change {
            ChangeSpec::Put(spec) => {
                let new = endpoint(spec);
                let old = self.endpoints.insert(new.clone());
                return old
                    .map(Applied::Removed)
                    .into_iter()
                    .chain([Applied::Added(new)])
                    .collect();
            }
            ChangeSpec::Remove(i) => {
                let Some(k) = self.endpoints.keys().nth(i % self.endpoints.len().max(1)) else {
                    return Vec::new();
                };
                let k = k.clone();
                Applied::Removed(self.endpoints.remove(&k).unwrap())
            }
            ChangeSpec::Profile(z, what) => {
                let old = self.policy.profiles.get(&zone(*z)).cloned();
                match what {
                    ProfileSpec::Toggle(other, outgoing, service) => {
                        let e = edge(*z, *other, *outgoing, *service);
                        let approved = &mut self.profile(*z).approved;
                        if !approved.remove(&e) {
                            approved.insert(e);
                        }
                    }
                    ProfileSpec::Mode(m) => self.profile(*z).mode = *m,
                    ProfileSpec::Quarantine => {
                        let p = self.profile(*z);
                        p.quarantined = !p.quarantined;
                    }
                    ProfileSpec::Drop => {
                        self.policy.profiles.remove(&zone(*z));
                    }
                }
                Applied::Profile {
                    zone: zone(*z),
                    old,
                }
            }
            ChangeSpec::QuarantineEndpoint(c) => {
                let id = format!("c{c}");
                if !self.quarantined.remove(&id) {
                    self.quarantined.insert(id.clone());
                }
                Applied::Quarantine(id)
            }
            ChangeSpec::Host(mask) => {
                let old = std::mem::replace(&mut self.host_addrs, host_addrs(*mask));
                Applied::Host { old }
            }
        };
        vec![applied]
    }
}

fn host_addrs(mask: u8) -> Vec<IpAddr> {
    HOST_ADDRS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, a)| addr(a))
        .collect()
}

#[derive(Debug, Clone)]
enum ProfileSpec {
    Toggle(usize, bool, usize),
    Mode(Mode),
    Quarantine,
    Drop,
}

#[derive(Debug, Clone)]
enum ChangeSpec {
    /// Add an endpoint, or replace the one under its key.
    Put(EndpointSpec),
    /// Remove the i-th endpoint (modulo their number).
    Remove(usize),
    Profile(usize, ProfileSpec),
    QuarantineEndpoint(usize),
    Host(u8),
}

fn change_spec() -> impl Strategy<Value = ChangeSpec> {
    let mode = prop_oneof![Just(Mode::Learn), Just(Mode::Monitor), Just(Mode::Enforce)];
    let profile = prop_oneof![
        4 => edge_spec().prop_map(|(o, out, s)| ProfileSpec::Toggle(o, out, s)),
        1 => mode.prop_map(ProfileSpec::Mode),
        1 => Just(ProfileSpec::Quarantine),
        1 => Just(ProfileSpec::Drop),
    ];
    prop_oneof![
        3 => endpoint_spec().prop_map(ChangeSpec::Put),
        2 => any::<usize>().prop_map(ChangeSpec::Remove),
        3 => (0..ZONES, profile).prop_map(|(z, p)| ChangeSpec::Profile(z, p)),
        1 => (0..4usize).prop_map(ChangeSpec::QuarantineEndpoint),
        1 => (0..8u8).prop_map(ChangeSpec::Host),
    ]
}

/// A change applied to the model, with what `update` needs to hear about it.
#[derive(Debug, Clone)]
enum Applied {
    Added(Endpoint),
    Removed(Endpoint),
    Profile {
        zone: ZoneName,
        old: Option<Profile>,
    },
    Quarantine(String),
    Host {
        old: Vec<IpAddr>,
    },
}

impl Applied {
    fn change(&self) -> Change<'_> {
        match self {
            Self::Added(e) => Change::EndpointAdded(e),
            Self::Removed(e) => Change::EndpointRemoved(e),
            Self::Profile { zone, old } => Change::ProfileChanged {
                zone,
                old: old.as_ref(),
            },
            Self::Quarantine(id) => Change::EndpointQuarantine(id),
            Self::Host { old } => Change::HostAddrs { old },
        }
    }

    /// The change that undoes this one, given the model right after it.
    fn inverse(&self, after: &Model) -> Self {
        match self {
            Self::Added(e) => Self::Removed(e.clone()),
            Self::Removed(e) => Self::Added(e.clone()),
            Self::Profile { zone, .. } => Self::Profile {
                zone: zone.clone(),
                old: after.policy.profiles.get(zone).cloned(),
            },
            Self::Quarantine(id) => Self::Quarantine(id.clone()),
            Self::Host { .. } => Self::Host {
                old: after.host_addrs.clone(),
            },
        }
    }
}

fn all_changes(applied: &[Applied]) -> Vec<Change<'_>> {
    applied.iter().map(Applied::change).collect()
}

fn model_strategy() -> impl Strategy<Value = Model> {
    (
        prop::collection::vec(endpoint_spec(), 0..10),
        prop::collection::vec((0..ZONES, edge_spec()), 0..16),
        prop::collection::vec((0..3usize, any::<bool>()), ZONES),
        0..8u8,
        prop::collection::vec(any::<bool>(), 4),
        any::<bool>(),
    )
        .prop_map(|(endpoints, edges, profiles, host, quarantined, probes)| {
            let mut model = Model {
                policy: Policy {
                    settings: NodeSettings {
                        allow_host_probes: probes,
                    },
                    ..Policy::default()
                },
                endpoints: Endpoints::new(),
                zone_ids: zone_ids(),
                host_addrs: host_addrs(host),
                quarantined: (0..4)
                    .filter(|c| quarantined[*c])
                    .map(|c| format!("c{c}"))
                    .collect(),
            };
            model.policy.cidr_zones.insert(corp(), corp_nets());
            for (z, (mode, q)) in profiles.iter().enumerate() {
                let p = model.profile(z);
                p.mode = [Mode::Learn, Mode::Monitor, Mode::Enforce][*mode];
                p.quarantined = *q;
            }
            // The same edge may be approved at both ends: it counts twice.
            for (z, (other, outgoing, service)) in edges {
                let e = edge(z, other, outgoing, service);
                model.profile(z).approved.insert(e);
            }
            for spec in &endpoints {
                let e = endpoint(spec);
                model.endpoints.insert(e);
            }
            model
        })
}

/// Applies `batch` to the model and to `inc`, checks the result, then undoes and redoes
/// it the way the enforcer does when the kernel refuses a transaction.
fn step(
    model: &mut Model,
    inc: &mut Incremental,
    batch: &[ChangeSpec],
) -> Result<(), TestCaseError> {
    let before_model = model.clone();
    let before = inc.ruleset().clone();
    prop_assert_eq!(&before, &before_model.compiled());
    let mut applied = Vec::new();
    let mut inverse = Vec::new();
    for spec in batch {
        let made = model.apply(spec);
        inverse.extend(made.iter().map(|a| a.inverse(model)));
        applied.extend(made);
    }
    inverse.reverse();
    let after = model.compiled();
    let after_model = model.clone();

    let diff = model.with_state(|s| inc.update(s, &all_changes(&applied)));
    prop_assert_eq!(inc.ruleset(), &after, "after {:?}", batch);
    prop_assert_eq!(
        &diff,
        &RulesetDiff::between(&before, &after),
        "diff of {:?}",
        batch
    );

    *model = before_model;
    let back = model.with_state(|s| inc.update(s, &all_changes(&inverse)));
    prop_assert_eq!(inc.ruleset(), &before, "undoing {:?}", batch);
    prop_assert_eq!(
        &back,
        &RulesetDiff::between(&after, &before),
        "diff undoing {:?}",
        batch
    );

    *model = after_model;
    let again = model.with_state(|s| inc.update(s, &all_changes(&applied)));
    prop_assert_eq!(inc.ruleset(), &after, "redoing {:?}", batch);
    prop_assert_eq!(&again, &diff, "diff redoing {:?}", batch);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_change_matches_a_full_compile(
        mut model in model_strategy(),
        changes in prop::collection::vec(change_spec(), 1..30),
    ) {
        let mut inc = model.with_state(Incremental::new);
        prop_assert_eq!(inc.ruleset(), &model.compiled(), "initial build");
        for change in &changes {
            step(&mut model, &mut inc, std::slice::from_ref(change))?;
        }
        let rebuilt = model.with_state(Incremental::new);
        prop_assert_eq!(inc.ruleset(), rebuilt.ruleset());
    }

    #[test]
    fn every_batch_matches_a_full_compile(
        mut model in model_strategy(),
        batches in prop::collection::vec(prop::collection::vec(change_spec(), 1..5), 1..10),
    ) {
        let mut inc = model.with_state(Incremental::new);
        for batch in &batches {
            step(&mut model, &mut inc, batch)?;
        }
    }
}

// Named corner cases of compile, each checked against compile and by what it means.

fn model() -> Model {
    let mut model = Model {
        policy: Policy::default(),
        endpoints: Endpoints::new(),
        zone_ids: zone_ids(),
        host_addrs: vec![addr(HOST_ADDRS[0])],
        quarantined: BTreeSet::new(),
    };
    model.policy.cidr_zones.insert(corp(), corp_nets());
    for z in 0..ZONES {
        model.profile(z);
    }
    model
}

fn spec(key: usize, zone: usize, local: bool, addrs: &[usize], created: i64) -> EndpointSpec {
    EndpointSpec {
        key,
        zone,
        local,
        addrs: addrs.to_vec(),
        created,
        pod: true,
    }
}

/// Applies one batch, checks it against compile and returns the diff.
fn apply(model: &mut Model, inc: &mut Incremental, batch: &[ChangeSpec]) -> RulesetDiff {
    let before = inc.ruleset().clone();
    let applied: Vec<Applied> = batch.iter().flat_map(|c| model.apply(c)).collect();
    let diff = model.with_state(|s| inc.update(s, &all_changes(&applied)));
    let after = model.compiled();
    assert_eq!(inc.ruleset(), &after, "the ruleset after {batch:?}");
    assert_eq!(
        diff,
        RulesetDiff::between(&before, &after),
        "the diff of {batch:?}"
    );
    diff
}

fn approve(z: usize, other: usize, outgoing: bool, service: usize) -> ChangeSpec {
    ChangeSpec::Profile(z, ProfileSpec::Toggle(other, outgoing, service))
}

#[test]
fn the_newest_claimant_owns_members_and_the_newest_local_one_local() {
    let mut model = model();
    let mut inc = model.with_state(Incremental::new);
    let x = addr(ADDRS[0]);
    apply(
        &mut model,
        &mut inc,
        &[ChangeSpec::Put(spec(0, 0, true, &[0], 1))],
    );
    apply(
        &mut model,
        &mut inc,
        &[ChangeSpec::Put(spec(2, 1, false, &[0], 2))],
    );
    let rs = inc.ruleset();
    assert_eq!(
        rs.members[&x].0, 2,
        "the newer remote endpoint of ns/z1 owns the address"
    );
    assert_eq!(
        rs.local[&x].zone_id, 1,
        "the older local endpoint of ns/z0 keeps local"
    );
    let diff = apply(&mut model, &mut inc, &[ChangeSpec::Remove(1)]);
    assert_eq!(
        inc.ruleset().members[&x].0,
        1,
        "back to ns/z0 once the remote one left"
    );
    assert_eq!((diff.members.del.len(), diff.members.add.len()), (1, 1));
    assert!(
        diff.local.is_empty(),
        "local did not change: {:?}",
        diff.local
    );
}

#[test]
fn a_zone_whose_addresses_were_all_taken_over_keeps_its_rules() {
    let mut model = model();
    let mut inc = model.with_state(Incremental::new);
    apply(
        &mut model,
        &mut inc,
        &[ChangeSpec::Put(spec(0, 0, true, &[0, 4], 1))],
    );
    let diff = apply(
        &mut model,
        &mut inc,
        &[ChangeSpec::Put(spec(2, 1, true, &[0, 4], 2))],
    );
    let rs = inc.ruleset();
    assert!(
        rs.local.values().all(|l| l.zone_id == 2),
        "ns/z1 owns both addresses"
    );
    assert!(
        rs.zones.contains_key(&1),
        "ns/z0 still has its chains and sets"
    );
    assert!(diff.removed.is_empty(), "no zone went: {:?}", diff.removed);
    assert_eq!(diff.created.iter().map(|z| z.id).collect::<Vec<_>>(), [2]);
}

#[test]
fn a_self_edge_allows_the_zone_to_itself_in_both_directions() {
    let mut model = model();
    let mut inc = model.with_state(Incremental::new);
    apply(
        &mut model,
        &mut inc,
        &[
            approve(0, 0, true, 0),
            ChangeSpec::Put(spec(0, 0, true, &[0], 1)),
        ],
    );
    let diff = apply(
        &mut model,
        &mut inc,
        &[ChangeSpec::Put(spec(2, 0, false, &[1], 1))],
    );
    let peer = (addr(ADDRS[1]), Proto::Tcp, 80);
    let delta = &diff.zones[&1];
    assert_eq!(
        delta.allow_out.add,
        [peer],
        "ns/z0 may reach its new remote member"
    );
    assert_eq!(delta.allow_in.add, [peer], "and be reached by it");
    let rules = &inc.ruleset().zones[&1];
    assert!(rules.allow_out.contains(&(addr(ADDRS[0]), Proto::Tcp, 80)));
    apply(&mut model, &mut inc, &[approve(0, 0, true, 0)]);
    assert!(
        inc.ruleset().zones[&1].allow_out.is_empty(),
        "the self-edge is gone"
    );
}

#[test]
fn host_edges_follow_the_node_addresses() {
    let mut model = model();
    let mut inc = model.with_state(Incremental::new);
    // host -> ns/z0:80/tcp and ns/z0 -> host:53/udp
    apply(
        &mut model,
        &mut inc,
        &[
            approve(0, ZONES, false, 0),
            approve(0, ZONES, true, 1),
            ChangeSpec::Put(spec(0, 0, true, &[0], 1)),
        ],
    );
    let (h0, h1) = (addr(HOST_ADDRS[0]), addr(HOST_ADDRS[1]));
    assert!(
        inc.ruleset().zones[&1]
            .allow_in
            .contains(&(h0, Proto::Tcp, 80))
    );
    // HOST_ADDRS[1] only.
    let diff = apply(&mut model, &mut inc, &[ChangeSpec::Host(0b010)]);
    assert_eq!(
        (diff.host.del.as_slice(), diff.host.add.as_slice()),
        ([h0].as_slice(), [h1].as_slice())
    );
    let delta = &diff.zones[&1];
    assert_eq!(delta.allow_in.del, [(h0, Proto::Tcp, 80)]);
    assert_eq!(delta.allow_in.add, [(h1, Proto::Tcp, 80)]);
    assert_eq!(delta.allow_out.del, [(h0, Proto::Udp, 53)]);
    assert_eq!(delta.allow_out.add, [(h1, Proto::Udp, 53)]);
    // An endpoint in zone `host` is no host address for edges.
    let diff = apply(
        &mut model,
        &mut inc,
        &[ChangeSpec::Put(spec(2, ZONES, false, &[2], 1))],
    );
    assert!(
        diff.zones.is_empty(),
        "edges with host allow the node's addresses only"
    );
}

#[test]
fn replacing_the_only_endpoint_of_a_zone_changes_elements_not_the_zone() {
    let mut model = model();
    let mut inc = model.with_state(Incremental::new);
    apply(
        &mut model,
        &mut inc,
        &[
            approve(0, 0, true, 0),
            ChangeSpec::Put(spec(0, 0, true, &[0], 1)),
        ],
    );
    let diff = apply(
        &mut model,
        &mut inc,
        &[ChangeSpec::Put(spec(0, 0, true, &[1], 2))],
    );
    assert!(
        diff.created.is_empty() && diff.removed.is_empty(),
        "{diff:?}"
    );
    assert_eq!(
        diff.zones[&1].allow_in.del,
        [(addr(ADDRS[0]), Proto::Tcp, 80)]
    );
    let diff = apply(&mut model, &mut inc, &[ChangeSpec::Remove(0)]);
    assert_eq!(
        diff.removed.iter().map(|z| z.id).collect::<Vec<_>>(),
        [1],
        "its last member left"
    );
}

#[test]
fn profile_changes_rewrite_and_quarantine() {
    let mut model = model();
    let mut inc = model.with_state(Incremental::new);
    apply(
        &mut model,
        &mut inc,
        &[ChangeSpec::Put(spec(0, 0, true, &[0, 4], 1))],
    );
    let diff = apply(
        &mut model,
        &mut inc,
        &[ChangeSpec::Profile(0, ProfileSpec::Mode(Mode::Enforce))],
    );
    assert_eq!(
        diff.rewritten.len(),
        1,
        "a mode change rewrites the zone's chains"
    );
    assert_eq!(diff.rewritten[0].mode, Mode::Enforce);
    let diff = apply(
        &mut model,
        &mut inc,
        &[ChangeSpec::Profile(0, ProfileSpec::Quarantine)],
    );
    assert_eq!(diff.local.add.len(), 2, "both addresses are quarantined");
    assert!(diff.local.add.iter().all(|(_, l)| l.quarantined));
    // ns/z0 -> ext/corp:53/udp brings CIDR sets, and its removal drops them.
    let diff = apply(&mut model, &mut inc, &[approve(0, ZONES + 1, true, 1)]);
    assert_eq!(diff.rewritten.len(), 1, "the first CIDR edge adds rules");
    let diff = apply(&mut model, &mut inc, &[approve(0, ZONES + 1, true, 1)]);
    assert_eq!(diff.cidr_sets_dropped, [1]);
}

#[test]
fn a_zone_has_the_sets_of_its_approved_edges_and_endpoints_never_change_them() {
    let mut model = model();
    let mut inc = model.with_state(Incremental::new);
    let diff = apply(
        &mut model,
        &mut inc,
        &[ChangeSpec::Put(spec(0, 0, true, &[0], 1))],
    );
    assert_eq!(
        diff.created[0].sets,
        SetKinds::NONE,
        "no approved edge, no set"
    );
    // ns/z0 -> ns/z1:80/tcp while ns/z1 has no member: the sets come with the edge.
    let diff = apply(&mut model, &mut inc, &[approve(0, 1, true, 0)]);
    assert_eq!(
        diff.rewritten.len(),
        1,
        "the first edge of a kind adds its rule"
    );
    assert_eq!(diff.rewritten[0].sets, SetKinds::PEERS_OUT);
    // A member of ns/z1 (on another node) is an element, not a chain change.
    let diff = apply(
        &mut model,
        &mut inc,
        &[ChangeSpec::Put(spec(1, 1, false, &[1], 2))],
    );
    assert!(diff.rewritten.is_empty() && diff.created.is_empty());
    assert_eq!(diff.zones[&1].allow_out.add.len(), 1);
    // ICMP from world: another kind, another rewrite.
    let diff = apply(&mut model, &mut inc, &[approve(0, ZONES + 2, false, 2)]);
    assert_eq!(
        diff.rewritten[0].sets,
        SetKinds::PEERS_OUT.union(SetKinds::WORLD_PROTO_IN)
    );
    // The last edge of a kind takes its sets along, after the rewrite.
    let diff = apply(&mut model, &mut inc, &[approve(0, 1, true, 0)]);
    assert_eq!(diff.rewritten[0].sets, SetKinds::WORLD_PROTO_IN);
    assert_eq!(diff.sets_dropped, [(1, SetKinds::PEERS_OUT)]);
}

#[test]
fn endpoints_of_zones_without_an_id_are_skipped() {
    let mut model = model();
    let mut inc = model.with_state(Incremental::new);
    let diff = apply(
        &mut model,
        &mut inc,
        &[ChangeSpec::Put(spec(0, ZONES - 1, true, &[0], 1))],
    );
    assert!(diff.is_empty(), "ns/z4 has no id: {diff:?}");
}
