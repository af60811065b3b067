//! Incremental compilation: keeps the node's compiled [`Ruleset`] up to date from the
//! changes made to the registry's state, at a cost that follows what a change touches
//! rather than the size of the cluster.
//!
//! [`compile`](crate::ruleset::compile) then [`RulesetDiff::between`] walk every
//! endpoint, zone and approved edge: tens of milliseconds per change at 5,000
//! endpoints, 1,000 zones and 10,000 edges. [`Incremental`] keeps indexes instead:
//! - address -> its claimants in (created, key) order, all and local ones: the newest
//!   claimant owns `members[addr]`, the newest local one `local[addr]`;
//! - zone -> its endpoints' addresses, each with the number of claims: the peers that
//!   an edge to or from the zone allows (the node's addresses for `host`);
//! - zone -> the approved edges touching it, and edge -> how many profiles approve it;
//! - zone with local members -> those members, and for every element of its six sets
//!   the number of (approved edge, peer claim) pairs that put it there: an element
//!   leaves its set when that number drops to 0.
//!
//! [`Incremental::update`] applies each change to the indexes and counts, notes which
//! addresses, zones and set elements it touched, and at the end recomputes only those
//! and builds the diff from them. The ruleset's zones are left alone until that end,
//! so they are the diff's "before"; a zone whose last local member left keeps its
//! counts until then, so replacing a zone's only endpoint changes elements instead of
//! removing the zone and creating it again.
//!
//! # Cost of one change (each index lookup is O(log n))
//! - endpoint added or removed in zone Z: its addresses × the approved edges of Z, plus
//!   the size of Z's sets when Z gets its first local member (they are built then);
//! - profile of Z changed: the approved edges of its old and new version, plus the
//!   peers of the other end of every edge that became approved or unapproved, plus Z's
//!   local addresses when its quarantine flag flipped;
//! - endpoint (un)quarantined: the addresses of its container's local attachments;
//! - host addresses: the node's addresses, plus the approved edges of `host` for each
//!   address that came or went;
//! - the diff: the touched addresses and elements, plus every zone created, removed or
//!   rewritten as a whole (the diff carries those whole).
//!
//! On a synthetic cluster of that size (release build, one run), compile then diff
//! took 21 ms; adding or removing an endpoint 15-20 µs, or 1.4 ms in a zone that 700
//! local zones may reach (700 zone deltas); approving an edge or changing a mode 50 µs.
//!
//! # What the caller keeps true
//! - A zone has its id before its first endpoint is added and keeps it while it has
//!   endpoints; no two zones share an id (the registry's zone ids are allocated so).
//! - `cidr_zones` and `settings` change only with a rebuild ([`Incremental::new`]).
//! - The `old` profile of a zone's first [`Change::ProfileChanged`] in a batch is the
//!   profile the previous update saw; later changes of that zone in the same batch add
//!   nothing (the state already holds their result).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::diff::{Delta, RulesetDiff, ZoneDelta};
use crate::edge::{Edge, Proto};
use crate::endpoint::{AttachmentKey, Endpoint, Endpoints};
use crate::policy::Policy;
use crate::profile::{Mode, Profile};
use crate::ruleset::{Allow, Comment, LocalAddr, Ruleset, SetKinds, ZoneRules, member_comment};
use crate::zone::{HOST_ZONE, WORLD_ZONE, ZoneName};

/// The registry's state, borrowed: what [`compile`](crate::ruleset::compile) reads.
pub struct State<'a> {
    pub node: &'a str,
    pub policy: &'a Policy,
    pub endpoints: &'a Endpoints,
    /// The id of a zone (None: the zone has no id, and its endpoints are skipped).
    pub zone_id: &'a dyn Fn(&ZoneName) -> Option<u32>,
    pub host_addrs: &'a [IpAddr],
    /// Endpoints quarantined one by one (container ids).
    pub quarantined_endpoints: &'a BTreeSet<String>,
}

/// One change already made to the [`State`].
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// Inserted into `endpoints`. If the indexes still know an endpoint under its key,
    /// that one is removed first.
    EndpointAdded(&'a Endpoint),
    /// Removed from `endpoints`. The indexes take back what they took from the endpoint
    /// under its key when it was added. A replacement under the same key is
    /// `EndpointRemoved` of the old one, then `EndpointAdded` of the new one.
    EndpointRemoved(&'a Endpoint),
    /// `policy.profiles[zone]` is the new profile (or absent); `old` is the one before.
    /// Approvals, mode and quarantine flag may all have changed.
    ProfileChanged {
        zone: &'a ZoneName,
        old: Option<&'a Profile>,
    },
    /// The entry of this container id in `quarantined_endpoints` changed.
    EndpointQuarantine(&'a str),
    /// `host_addrs` changed. The index keeps its own copy of the node's addresses and
    /// diffs the state against it, so `old` is informative only.
    HostAddrs { old: &'a [IpAddr] },
}

/// The compiled ruleset and the indexes that keep it up to date change by change.
pub struct Incremental {
    ruleset: Ruleset,
    /// Endpoints that take part (their zone has an id and they have an address).
    /// Keyed by a shared key: the claims and the zone and container indexes hold the
    /// same `Arc`, not copies of its three strings.
    endpoints: BTreeMap<Arc<AttachmentKey>, Tracked>,
    claims: BTreeMap<IpAddr, Claims>,
    zone_addrs: BTreeMap<ZoneName, BTreeMap<IpAddr, u32>>,
    /// The node's addresses, with how many times the state lists each.
    host: BTreeMap<IpAddr, u32>,
    approvals: BTreeMap<Edge, u32>,
    edges_of: BTreeMap<ZoneName, BTreeSet<Edge>>,
    local: BTreeMap<ZoneName, LocalZone>,
    /// Local attachments by container id (a container may have several).
    by_container: BTreeMap<Arc<str>, BTreeSet<Arc<AttachmentKey>>>,
}

/// An endpoint as the indexes know it: what its addresses need when it owns them.
/// Kept small: a node that knows a large cluster holds one per remote endpoint.
struct Tracked {
    key: Arc<AttachmentKey>,
    zone: ZoneName,
    zone_id: u32,
    created_unix_ms: i64,
    /// The same text as the ruleset's member entry of each address it owns.
    comment: Comment,
    addrs: Box<[IpAddr]>,
    /// What the data plane needs of this node's own endpoints (`None`: another node's).
    local: Option<Box<LocalPart>>,
}

/// What a local endpoint's addresses need besides their zone.
struct LocalPart {
    host_ifname: Option<String>,
    bridged: bool,
    mac: Option<String>,
}

/// A claim on an address, in the order compile takes endpoints: oldest first.
type Claim = (i64, Arc<AttachmentKey>);

#[derive(Default)]
struct Claims {
    all: ClaimSet,
    local: ClaimSet,
}

/// The claims on one address, sorted. Nearly every address has one claim (two during
/// a replacement): a sorted vector holds it in one small allocation, where a B-tree
/// set takes a node of eleven slots (about 600 bytes per address at 100,000 remote
/// endpoints, the largest index of a cluster-mode node).
#[derive(Default)]
struct ClaimSet(Vec<Claim>);

impl ClaimSet {
    fn insert(&mut self, claim: Claim) {
        if let Err(at) = self.0.binary_search(&claim) {
            self.0.insert(at, claim);
            self.0.shrink_to_fit();
        }
    }

    fn remove(&mut self, claim: &Claim) {
        if let Ok(at) = self.0.binary_search(claim) {
            self.0.remove(at);
            self.0.shrink_to_fit();
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The newest claim.
    fn last(&self) -> Option<&Claim> {
        self.0.last()
    }
}

type CidrAllow = (IpNet, Proto, u16);
type Service = (Proto, u16);

/// One element of a zone's egress (`Out`) or ingress (`In`) sets.
enum Element {
    Allow(Allow),
    Cidr(CidrAllow),
    World(Service),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Out,
    In,
}

impl Side {
    /// The zone whose sets this side of the edge fills.
    fn end(self, edge: &Edge) -> &ZoneName {
        match self {
            Self::Out => &edge.src,
            Self::In => &edge.dst,
        }
    }

    /// The zone whose addresses this side of the edge allows.
    fn peer(self, edge: &Edge) -> &ZoneName {
        match self {
            Self::Out => &edge.dst,
            Self::In => &edge.src,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sign {
    Add,
    Take,
}

/// Adds or takes `n` from the count of `item`; returns whether it appeared or went.
fn bump<T: Ord + Clone>(counts: &mut BTreeMap<T, u32>, item: &T, sign: Sign, n: u32) -> bool {
    match (counts.get_mut(item), sign) {
        (Some(count), Sign::Add) => {
            *count += n;
            false
        }
        (None, Sign::Add) => {
            counts.insert(item.clone(), n);
            true
        }
        (Some(count), Sign::Take) if *count > n => {
            *count -= n;
            false
        }
        (Some(_), Sign::Take) => {
            counts.remove(item);
            true
        }
        // Nothing was counted: nothing to take back.
        (None, Sign::Take) => false,
    }
}

/// The element counts of one side of a zone.
#[derive(Default)]
struct SideCounts {
    allow: BTreeMap<Allow, u32>,
    cidr: BTreeMap<CidrAllow, u32>,
    world: BTreeMap<Service, u32>,
}

/// Elements of one side that appeared or went during a batch.
#[derive(Default)]
struct SideTouched {
    allow: BTreeSet<Allow>,
    cidr: BTreeSet<CidrAllow>,
    world: BTreeSet<Service>,
}

impl SideCounts {
    /// Counts an element in or out, noting it in `touched` when it appeared or went.
    fn bump(&mut self, element: Element, sign: Sign, n: u32, touched: Option<&mut SideTouched>) {
        fn count<T: Ord + Clone>(
            counts: &mut BTreeMap<T, u32>,
            item: T,
            (sign, n): (Sign, u32),
            touched: Option<&mut BTreeSet<T>>,
        ) {
            if bump(counts, &item, sign, n)
                && let Some(touched) = touched
            {
                touched.insert(item);
            }
        }
        match element {
            Element::Allow(e) => {
                count(&mut self.allow, e, (sign, n), touched.map(|t| &mut t.allow))
            }
            Element::Cidr(e) => count(&mut self.cidr, e, (sign, n), touched.map(|t| &mut t.cidr)),
            Element::World(e) => {
                count(&mut self.world, e, (sign, n), touched.map(|t| &mut t.world))
            }
        }
    }
}

/// A zone with local members: the counts behind its sets.
struct LocalZone {
    id: u32,
    /// Whether the ruleset holds the zone (false while a batch creates it).
    in_ruleset: bool,
    /// Local endpoints with an address; the zone goes when the last one does.
    members: BTreeSet<Arc<AttachmentKey>>,
    out: SideCounts,
    inward: SideCounts,
}

impl LocalZone {
    fn side(&mut self, side: Side) -> &mut SideCounts {
        match side {
            Side::Out => &mut self.out,
            Side::In => &mut self.inward,
        }
    }

    fn rules(&self, zone: &ZoneName, mode: Mode, sets: SetKinds) -> ZoneRules {
        ZoneRules {
            id: self.id,
            zone: zone.clone(),
            mode,
            allow_out: self.out.allow.keys().copied().collect(),
            allow_in: self.inward.allow.keys().copied().collect(),
            cidr_out: self.out.cidr.keys().copied().collect(),
            cidr_in: self.inward.cidr.keys().copied().collect(),
            world_out: self.out.world.keys().copied().collect(),
            world_in: self.inward.world.keys().copied().collect(),
            sets,
        }
    }
}

#[derive(Default)]
struct ZoneTouched {
    out: SideTouched,
    inward: SideTouched,
}

impl ZoneTouched {
    fn side(&mut self, side: Side) -> &mut SideTouched {
        match side {
            Side::Out => &mut self.out,
            Side::In => &mut self.inward,
        }
    }
}

/// What one update touched, recomputed at its end.
#[derive(Default)]
struct Batch {
    addrs: BTreeSet<IpAddr>,
    host: BTreeSet<IpAddr>,
    /// Local zones whose members, mode or elements may have changed.
    zones: BTreeMap<ZoneName, ZoneTouched>,
    /// Zones whose profile change was taken into account (the first one counts).
    profiles: BTreeSet<ZoneName>,
}

impl Batch {
    fn zone(&mut self, zone: &ZoneName) -> &mut ZoneTouched {
        if !self.zones.contains_key(zone) {
            self.zones.insert(zone.clone(), ZoneTouched::default());
        }
        self.zones.get_mut(zone).expect("inserted above")
    }
}

/// Makes `map[addr]` hold `value`, noting the change as compile's diff would.
fn set_entry<V: PartialEq + Clone>(
    map: &mut BTreeMap<IpAddr, V>,
    addr: IpAddr,
    value: Option<V>,
    delta: &mut Delta<(IpAddr, V)>,
) {
    if map.get(&addr) == value.as_ref() {
        return;
    }
    let old = match value {
        Some(value) => {
            delta.add.push((addr, value.clone()));
            map.insert(addr, value)
        }
        None => map.remove(&addr),
    };
    if let Some(old) = old {
        delta.del.push((addr, old));
    }
}

/// Brings a set in line with its counts for the touched elements (in order, as
/// [`RulesetDiff::between`] lists them).
fn sync<T: Ord + Clone>(
    counts: &BTreeMap<T, u32>,
    set: &mut BTreeSet<T>,
    touched: BTreeSet<T>,
) -> Delta<T> {
    let mut delta = Delta::default();
    for item in touched {
        if counts.contains_key(&item) {
            if set.insert(item.clone()) {
                delta.add.push(item);
            }
        } else if set.remove(&item) {
            delta.del.push(item);
        }
    }
    delta
}

impl Incremental {
    /// Builds the indexes and the ruleset of a state: equal to what compile makes of it.
    pub fn new(state: &State<'_>) -> Self {
        let policy = state.policy;
        let mut inc = Self {
            ruleset: Ruleset {
                settings: policy.settings,
                cidrs: policy
                    .cidr_zones
                    .values()
                    .flatten()
                    .map(IpNet::trunc)
                    .collect(),
                ..Ruleset::default()
            },
            endpoints: BTreeMap::new(),
            claims: BTreeMap::new(),
            zone_addrs: BTreeMap::new(),
            host: BTreeMap::new(),
            approvals: BTreeMap::new(),
            edges_of: BTreeMap::new(),
            local: BTreeMap::new(),
            by_container: BTreeMap::new(),
        };
        let mut batch = Batch::default();
        for zone in policy.profiles.keys() {
            inc.profile_changed(&mut batch, state, zone, None);
        }
        for endpoint in state.endpoints.values() {
            inc.add_endpoint(&mut batch, state, endpoint);
        }
        inc.host_changed(&mut batch, state);
        inc.finish(batch, state);
        inc
    }

    pub fn ruleset(&self) -> &Ruleset {
        &self.ruleset
    }

    /// The endpoints of this node that claim `addr`, oldest first: found in the index
    /// of the address, not by a walk of every endpoint (a node of a large cluster
    /// knows a hundred times more endpoints of other nodes than of its own). Every
    /// endpoint with an address is here once its zone has an id, which the registry
    /// gives a zone before its first endpoint is registered.
    pub fn local_claimants(&self, addr: IpAddr) -> impl Iterator<Item = &AttachmentKey> {
        self.claims
            .get(&addr)
            .into_iter()
            .flat_map(|claims| claims.local.0.iter().map(|(_, key)| &**key))
    }

    /// Takes changes already made to the state into account: updates the indexes,
    /// recomputes only the addresses and zones they touch, keeps the new ruleset and
    /// returns the diff from the previous one, equal to [`RulesetDiff::between`] them.
    /// To undo a change the kernel refused, restore the state and pass the inverse
    /// changes: the ruleset comes back exactly.
    pub fn update(&mut self, state: &State<'_>, changes: &[Change<'_>]) -> RulesetDiff {
        let mut batch = Batch::default();
        for change in changes {
            match *change {
                Change::EndpointAdded(endpoint) => self.add_endpoint(&mut batch, state, endpoint),
                Change::EndpointRemoved(endpoint) => {
                    self.remove_endpoint(&mut batch, &endpoint.key)
                }
                Change::ProfileChanged { zone, old } => {
                    self.profile_changed(&mut batch, state, zone, old)
                }
                Change::EndpointQuarantine(container_id) => {
                    for key in self.by_container.get(container_id).into_iter().flatten() {
                        batch.addrs.extend(self.endpoints[key].addrs.iter());
                    }
                }
                Change::HostAddrs { .. } => self.host_changed(&mut batch, state),
            }
        }
        self.finish(batch, state)
    }

    fn add_endpoint(&mut self, batch: &mut Batch, state: &State<'_>, endpoint: &Endpoint) {
        // A replacement that came without its removal.
        self.remove_endpoint(batch, &endpoint.key);
        let addrs: Vec<IpAddr> = endpoint.addrs().collect();
        let Some(zone_id) = (state.zone_id)(&endpoint.zone).filter(|_| !addrs.is_empty()) else {
            return;
        };
        let key = Arc::new(endpoint.key.clone());
        let local = endpoint.node == state.node;
        let claim: Claim = (endpoint.created_unix_ms, key.clone());
        for &addr in &addrs {
            let claims = self.claims.entry(addr).or_default();
            claims.all.insert(claim.clone());
            if local {
                claims.local.insert(claim.clone());
            }
            self.claim_moved(batch, &endpoint.zone, addr, Sign::Add);
        }
        batch.addrs.extend(&addrs);
        if local {
            self.by_container
                .entry(key.container_id.clone())
                .or_default()
                .insert(key.clone());
            if !self.local.contains_key(&endpoint.zone) {
                let zone = self.local_zone(state.policy, &endpoint.zone, zone_id);
                self.local.insert(endpoint.zone.clone(), zone);
            }
            let zone = self.local.get_mut(&endpoint.zone).expect("inserted above");
            zone.members.insert(key.clone());
            batch.zone(&endpoint.zone);
        }
        let tracked = Tracked {
            key: key.clone(),
            zone: endpoint.zone.clone(),
            zone_id,
            created_unix_ms: endpoint.created_unix_ms,
            comment: member_comment(endpoint).into(),
            addrs: addrs.into_boxed_slice(),
            local: local.then(|| {
                Box::new(LocalPart {
                    host_ifname: endpoint.host_ifname.clone(),
                    bridged: crate::ruleset::is_bridged(endpoint),
                    mac: crate::ruleset::bridge_mac(endpoint),
                })
            }),
        };
        self.endpoints.insert(key, tracked);
    }

    /// Removes what the indexes know of the endpoint under `key` (the state no longer
    /// holds it, so this works from the copy taken when it was added).
    fn remove_endpoint(&mut self, batch: &mut Batch, key: &AttachmentKey) {
        let Some(tracked) = self.endpoints.remove(key) else {
            return;
        };
        let claim: Claim = (tracked.created_unix_ms, tracked.key.clone());
        for &addr in tracked.addrs.iter() {
            if let Some(claims) = self.claims.get_mut(&addr) {
                claims.all.remove(&claim);
                claims.local.remove(&claim);
                if claims.all.is_empty() {
                    self.claims.remove(&addr);
                }
            }
            self.claim_moved(batch, &tracked.zone, addr, Sign::Take);
        }
        batch.addrs.extend(tracked.addrs.iter());
        if tracked.local.is_some() {
            if let Some(keys) = self.by_container.get_mut(&*tracked.key.container_id) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_container.remove(&*tracked.key.container_id);
                }
            }
            if let Some(zone) = self.local.get_mut(&tracked.zone) {
                zone.members.remove(key);
                batch.zone(&tracked.zone);
            }
        }
    }

    /// One claim of `addr` by an endpoint of `zone` came or went.
    fn claim_moved(&mut self, batch: &mut Batch, zone: &ZoneName, addr: IpAddr, sign: Sign) {
        let addrs = self.zone_addrs.entry(zone.clone()).or_default();
        bump(addrs, &addr, sign, 1);
        if addrs.is_empty() {
            self.zone_addrs.remove(zone);
        }
        // Edges with `host` allow the node's addresses, not its zone's endpoints.
        if zone.as_str() != HOST_ZONE {
            self.peer_moved(batch, zone, addr, sign, 1);
        }
    }

    /// `n` claims of `addr` by peer zone `zone` came or went: the allow sets of the
    /// local zones with approved edges to or from `zone` follow.
    fn peer_moved(&mut self, batch: &mut Batch, zone: &ZoneName, addr: IpAddr, sign: Sign, n: u32) {
        // Edges with `world` allow services, not addresses.
        if zone.as_str() == WORLD_ZONE {
            return;
        }
        for edge in self.edges_of.get(zone).into_iter().flatten() {
            for side in [Side::Out, Side::In] {
                let end = side.end(edge);
                if side.peer(edge) != zone {
                    continue;
                }
                let Some(counts) = self.local.get_mut(end) else {
                    continue;
                };
                let touched = counts.in_ruleset.then(|| batch.zone(end).side(side));
                let element = Element::Allow((addr, edge.proto, edge.port));
                counts.side(side).bump(element, sign, n, touched);
            }
        }
    }

    fn profile_changed(
        &mut self,
        batch: &mut Batch,
        state: &State<'_>,
        zone: &ZoneName,
        old: Option<&Profile>,
    ) {
        if !batch.profiles.insert(zone.clone()) {
            return;
        }
        let none = BTreeSet::new();
        let old_edges = old.map_or(&none, |p| &p.approved);
        let new_edges = state
            .policy
            .profiles
            .get(zone)
            .map_or(&none, |p| &p.approved);
        for edge in old_edges.difference(new_edges) {
            self.approval(batch, state.policy, edge, Sign::Take);
        }
        for edge in new_edges.difference(old_edges) {
            self.approval(batch, state.policy, edge, Sign::Add);
        }
        if let Some(local) = self.local.get(zone) {
            // Its mode is read again at the end.
            batch.zone(zone);
            if old.is_some_and(|p| p.quarantined) != state.policy.zone_quarantined(zone) {
                for key in &local.members {
                    batch.addrs.extend(self.endpoints[key].addrs.iter());
                }
            }
        }
    }

    /// One profile more or fewer approves `edge`; the sets of its local ends follow
    /// when it becomes approved or stops being so.
    fn approval(&mut self, batch: &mut Batch, policy: &Policy, edge: &Edge, sign: Sign) {
        if !bump(&mut self.approvals, edge, sign, 1) {
            return;
        }
        for zone in [&edge.src, &edge.dst] {
            match sign {
                Sign::Add => {
                    self.edges_of
                        .entry(zone.clone())
                        .or_default()
                        .insert(edge.clone());
                }
                Sign::Take => {
                    if let Some(edges) = self.edges_of.get_mut(zone) {
                        edges.remove(edge);
                        if edges.is_empty() {
                            self.edges_of.remove(zone);
                        }
                    }
                }
            }
        }
        for side in [Side::Out, Side::In] {
            let end = side.end(edge);
            if !self.local.contains_key(end) {
                continue;
            }
            let elements = self.elements(policy, edge, side);
            let counts = self.local.get_mut(end).expect("checked above");
            let mut touched = counts.in_ruleset.then(|| batch.zone(end).side(side));
            for (element, n) in elements {
                counts
                    .side(side)
                    .bump(element, sign, n, touched.as_deref_mut());
            }
        }
    }

    fn host_changed(&mut self, batch: &mut Batch, state: &State<'_>) {
        let mut next: BTreeMap<IpAddr, u32> = BTreeMap::new();
        for addr in state.host_addrs {
            *next.entry(*addr).or_default() += 1;
        }
        let mut moved = Vec::new();
        for (addr, &n) in &next {
            let old = self.host.get(addr).copied().unwrap_or(0);
            if n > old {
                moved.push((*addr, Sign::Add, n - old));
            } else if n < old {
                moved.push((*addr, Sign::Take, old - n));
            }
        }
        for (addr, &old) in &self.host {
            if !next.contains_key(addr) {
                moved.push((*addr, Sign::Take, old));
            }
        }
        self.host = next;
        let host = ZoneName::host();
        for (addr, sign, n) in moved {
            batch.host.insert(addr);
            self.peer_moved(batch, &host, addr, sign, n);
        }
    }

    /// What an approved edge puts into one side of the zone at that end, as compile
    /// does: `world`'s services, or the peer zone's addresses and prefixes.
    fn elements(&self, policy: &Policy, edge: &Edge, side: Side) -> Vec<(Element, u32)> {
        let (peer, proto, port) = (side.peer(edge), edge.proto, edge.port);
        if peer.as_str() == WORLD_ZONE {
            return vec![(Element::World((proto, port)), 1)];
        }
        let addrs = if peer.as_str() == HOST_ZONE {
            Some(&self.host)
        } else {
            self.zone_addrs.get(peer)
        };
        let allows = addrs
            .into_iter()
            .flatten()
            .map(|(addr, n)| (Element::Allow((*addr, proto, port)), *n));
        let nets = policy.cidr_zones.get(peer).into_iter().flatten();
        let cidrs = nets.map(|net| (Element::Cidr((net.trunc(), proto, port)), 1));
        allows.chain(cidrs).collect()
    }

    /// The counts of a zone that gets its first local member, from its approved edges.
    fn local_zone(&self, policy: &Policy, zone: &ZoneName, id: u32) -> LocalZone {
        let mut local = LocalZone {
            id,
            in_ruleset: false,
            members: BTreeSet::new(),
            out: SideCounts::default(),
            inward: SideCounts::default(),
        };
        for edge in self.edges_of.get(zone).into_iter().flatten() {
            for side in [Side::Out, Side::In] {
                if side.end(edge) == zone {
                    for (element, n) in self.elements(policy, edge, side) {
                        local.side(side).bump(element, Sign::Add, n, None);
                    }
                }
            }
        }
        local
    }

    /// Recomputes what the batch touched and returns the diff, in the order
    /// [`RulesetDiff::between`] gives.
    fn finish(&mut self, batch: Batch, state: &State<'_>) -> RulesetDiff {
        let mut diff = RulesetDiff::default();
        for addr in batch.addrs {
            let claims = self.claims.get(&addr);
            let newest = |claims: &ClaimSet| claims.last().map(|(_, key)| &self.endpoints[key]);
            let member = claims
                .and_then(|c| newest(&c.all))
                .map(|t| (t.zone_id, t.comment.clone()));
            let local = claims.and_then(|c| newest(&c.local)).and_then(|t| {
                let part = t.local.as_deref()?;
                Some(LocalAddr {
                    zone_id: t.zone_id,
                    host_ifname: part.host_ifname.clone(),
                    bridged: part.bridged,
                    mac: part.mac.clone(),
                    quarantined: state.quarantined_endpoints.contains(&*t.key.container_id)
                        || state.policy.zone_quarantined(&t.zone),
                    comment: t.comment.to_string(),
                })
            });
            set_entry(&mut self.ruleset.members, addr, member, &mut diff.members);
            set_entry(&mut self.ruleset.local, addr, local, &mut diff.local);
        }
        for addr in batch.host {
            if self.host.contains_key(&addr) {
                if self.ruleset.host.insert(addr) {
                    diff.host.add.push(addr);
                }
            } else if self.ruleset.host.remove(&addr) {
                diff.host.del.push(addr);
            }
        }
        let mut created = BTreeMap::new();
        let mut removed = BTreeMap::new();
        let mut rewritten = BTreeMap::new();
        let mut cidr_sets_dropped = BTreeSet::new();
        let mut sets_dropped = BTreeMap::new();
        for (zone, touched) in batch.zones {
            let Some(local) = self.local.get_mut(&zone) else {
                continue;
            };
            let id = local.id;
            if local.members.is_empty() {
                self.local.remove(&zone);
                if let Some(rules) = self.ruleset.zones.remove(&id) {
                    removed.insert(id, rules);
                }
                continue;
            }
            let mode = state.policy.mode(&zone);
            let sets = SetKinds::of_edges(&zone, self.edges_of.get(&zone).into_iter().flatten());
            if !local.in_ruleset {
                local.in_ruleset = true;
                let rules = local.rules(&zone, mode, sets);
                self.ruleset.zones.insert(id, rules.clone());
                created.insert(id, rules);
                continue;
            }
            let Some(rules) = self.ruleset.zones.get_mut(&id) else {
                continue;
            };
            let (chain_key, had_cidr, had_sets) = (rules.chain_key(), rules.has_cidr(), rules.sets);
            rules.mode = mode;
            rules.sets = sets;
            let ZoneTouched { out, inward } = touched;
            let delta = ZoneDelta {
                allow_out: sync(&local.out.allow, &mut rules.allow_out, out.allow),
                allow_in: sync(&local.inward.allow, &mut rules.allow_in, inward.allow),
                cidr_out: sync(&local.out.cidr, &mut rules.cidr_out, out.cidr),
                cidr_in: sync(&local.inward.cidr, &mut rules.cidr_in, inward.cidr),
                world_out: sync(&local.out.world, &mut rules.world_out, out.world),
                world_in: sync(&local.inward.world, &mut rules.world_in, inward.world),
            };
            if rules.chain_key() != chain_key {
                rewritten.insert(id, rules.clone());
            }
            if had_cidr && !rules.has_cidr() {
                cidr_sets_dropped.insert(id);
            }
            let dropped = had_sets.minus(sets);
            if !dropped.is_empty() {
                sets_dropped.insert(id, dropped);
            }
            if !delta.is_empty() {
                diff.zones.insert(id, delta);
            }
        }
        diff.created = created.into_values().collect();
        diff.removed = removed.into_values().collect();
        diff.rewritten = rewritten.into_values().collect();
        diff.cidr_sets_dropped = cidr_sets_dropped.into_iter().collect();
        diff.sets_dropped = sets_dropped.into_iter().collect();
        diff
    }
}
