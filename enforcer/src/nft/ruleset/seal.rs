//! The table's seal: a restart over an intact table confirms it in two small netlink
//! requests instead of reading it back (`nft -j list table` takes seconds at 5,000
//! endpoints).
//!
//! The seal is one element of the set `ruleset_digest` (type `ipv6_addr`, 16 bytes):
//! a digest of the ruleset the table holds (12 bytes) and the nftables generation the
//! sealing transaction made (4 bytes). The kernel counts every committed nftables
//! transaction of the network namespace (any table, anyone's: `nft delete rule`, a
//! firewall reload, the enforcer's own changes), and the sealing batch is accepted
//! only if the generation is still the one read just before it, so the generation
//! after it is known exactly.
//!
//! A restart confirms the table when the namespace's generation is still the sealed
//! one (nothing at all was committed since: no rule, chain, set or element changed,
//! nothing was deleted) and the sealed digest is the digest of the ruleset compiled
//! from the store (what the enforcer would write is what was written). Anything else
//! (a later change of ours, anyone else's commit, a new version of the enforcer, a
//! changed setting) falls back to reading the table and applying the difference.
//! What a seal does not cover: elements the kernel adds and times out by itself (the
//! `seen_*` sets, which the enforcer never reads back), and a kernel that lies.
//!
//! The table is sealed when it is quiet, and, once sealed, by every change the
//! enforcer sends as a netlink batch: the batch replaces the seal with the digest of
//! the table it leaves and the generation after it ([`SealDigest`] follows a change
//! in the time the change takes), but only while the generation is still the one the
//! seal names, so a batch never vouches for a commit it did not make. An enforcer
//! killed right after a change therefore restarts over a sealed table.

use std::collections::BTreeMap;
use std::fmt::{Debug, Write};
use std::net::IpAddr;

use ipnet::IpNet;
use sha2::{Digest, Sha256};
use zonewarden_profiles::diff::{Delta, RulesetDiff, ZoneDelta};
use zonewarden_profiles::ruleset::{Comment, LocalAddr, Ruleset, ZoneRules};

use super::render_base::base_commands;
use super::render_zone::zone_chain_rules;
use super::{Dir, KernelView, Options};

/// The set that holds the seal.
pub const DIGEST_SET: &str = "ruleset_digest";

/// Bytes of the digest in the seal (the rest is the generation).
pub const DIGEST_BYTES: usize = 12;

/// The digest of what the table holds for `ruleset` as this build renders it: the
/// enforcer's version, the options, the base objects and chains, every zone's chains
/// and every element of the model.
pub fn digest(ruleset: &Ruleset, opts: &Options) -> [u8; DIGEST_BYTES] {
    SealDigest::of(ruleset, opts).digest()
}

/// The digest as a sum that follows the table change by change: the hash of the
/// base (version, options, base objects and chains) plus, per zone, the hash of its
/// chains and one hash per element of its sets, plus one hash per element of the
/// model (member, local address, host address, CIDR), added with wrapping
/// arithmetic. A sum does not depend on order, so a change's diff updates it in the
/// time the change takes: its deleted elements are taken out, its added ones put in,
/// and only a zone whose chains are rewritten has them hashed again (an endpoint
/// added to a zone that many zones may reach changes an element or two in each of
/// their sets, never their chains). That lets every netlink batch of the enforcer
/// carry the seal of the table it leaves, whatever the size of the table (see
/// [`super::dataplane`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealDigest {
    base: u128,
    /// The hash of each zone's chains.
    zones: BTreeMap<u32, u128>,
    sum: u128,
}

impl SealDigest {
    /// The digest of a whole ruleset.
    pub fn of(ruleset: &Ruleset, opts: &Options) -> Self {
        let mut out = Self {
            base: base_hash(ruleset, opts),
            zones: ruleset
                .zones
                .values()
                .map(|zone| (zone.id, chains_hash(zone, opts)))
                .collect(),
            sum: 0,
        };
        let mut sum = out.base;
        for hash in out.zones.values() {
            sum = sum.wrapping_add(*hash);
        }
        for zone in ruleset.zones.values() {
            zone_elements(zone, &mut |set, e| {
                sum = sum.wrapping_add(zone_element_hash(zone.id, set, e));
            });
        }
        let hashes = (ruleset.local.iter().map(|(a, l)| local_hash(a, l)))
            .chain(ruleset.members.iter().map(|(a, m)| member_hash(a, m)))
            .chain(ruleset.host.iter().map(host_hash))
            .chain(ruleset.cidrs.iter().map(cidr_hash));
        for hash in hashes {
            sum = sum.wrapping_add(hash);
        }
        out.sum = sum;
        out
    }

    /// The digest after `diff` took the table to `new`.
    pub fn update(&mut self, diff: &RulesetDiff, new: &Ruleset, opts: &Options) {
        let mut sum = self.sum;
        if diff.settings_changed {
            let base = base_hash(new, opts);
            sum = sum.wrapping_sub(self.base).wrapping_add(base);
            self.base = base;
        }
        let mut step = |hash: u128, add: bool| {
            sum = if add {
                sum.wrapping_add(hash)
            } else {
                sum.wrapping_sub(hash)
            };
        };
        // A removed zone goes with every element it held; a created one comes with
        // all of its own; a rewritten one keeps its elements (their changes are in
        // `diff.zones`, as for any zone that stays).
        for zone in &diff.removed {
            if let Some(old) = self.zones.remove(&zone.id) {
                step(old, false);
            }
            zone_elements(zone, &mut |set, e| {
                step(zone_element_hash(zone.id, set, e), false)
            });
        }
        for zone in diff.created.iter().chain(&diff.rewritten) {
            if let Some(old) = self.zones.remove(&zone.id) {
                step(old, false);
            }
            let hash = chains_hash(zone, opts);
            self.zones.insert(zone.id, hash);
            step(hash, true);
        }
        for zone in &diff.created {
            zone_elements(zone, &mut |set, e| {
                step(zone_element_hash(zone.id, set, e), true)
            });
        }
        for (id, delta) in &diff.zones {
            for added in [false, true] {
                delta_elements(delta, added, &mut |set, e| {
                    step(zone_element_hash(*id, set, e), added);
                });
            }
        }
        for (items, add) in [(&diff.local.del, false), (&diff.local.add, true)] {
            items.iter().for_each(|(a, l)| step(local_hash(a, l), add));
        }
        for (items, add) in [(&diff.members.del, false), (&diff.members.add, true)] {
            items.iter().for_each(|(a, m)| step(member_hash(a, m), add));
        }
        for (items, add) in [(&diff.host.del, false), (&diff.host.add, true)] {
            items.iter().for_each(|a| step(host_hash(a), add));
        }
        for (items, add) in [(&diff.cidrs.del, false), (&diff.cidrs.add, true)] {
            items.iter().for_each(|n| step(cidr_hash(n), add));
        }
        self.sum = sum;
    }

    /// The seal's digest: the sum hashed once more, with the count of zones.
    pub fn digest(&self) -> [u8; DIGEST_BYTES] {
        let mut hasher = Sha256::new();
        hasher.update(b"zonewarden ruleset seal 3\n");
        hasher.update(self.sum.to_be_bytes());
        hasher.update((self.zones.len() as u64).to_be_bytes());
        let full = hasher.finalize();
        let mut out = [0; DIGEST_BYTES];
        out.copy_from_slice(&full[..DIGEST_BYTES]);
        out
    }
}

/// The hash of what the base transaction writes for `ruleset`'s settings.
fn base_hash(ruleset: &Ruleset, opts: &Options) -> u128 {
    item(|h| {
        write!(
            h,
            "base {}\n{opts:?}\n{}\n{:?}",
            env!("CARGO_PKG_VERSION"),
            base_commands(&ruleset.settings, &KernelView::default(), opts),
            ruleset.settings
        )
    })
}

/// The hash of a zone's chains as rendered (they depend on its id, name, mode and
/// which sets it has, never on its elements).
fn chains_hash(zone: &ZoneRules, opts: &Options) -> u128 {
    item(|h| {
        for dir in Dir::BOTH {
            writeln!(h, "{:?}", zone_chain_rules(zone, dir, opts))?;
        }
        write!(
            h,
            "zone {} {} {:?} {} {:?}",
            zone.id,
            zone.zone,
            zone.mode,
            zone.has_cidr(),
            zone.sets
        )
    })
}

/// The hash of one element of a zone's set.
fn zone_element_hash(id: u32, set: &str, element: &dyn Debug) -> u128 {
    item(|h| write!(h, "zone {id} {set} {element:?}"))
}

/// Calls `each` with every element of a zone's sets, named by its set.
fn zone_elements(zone: &ZoneRules, each: &mut dyn FnMut(&str, &dyn Debug)) {
    // Destructured whole: a set added to the model and not here does not compile.
    let ZoneRules {
        id: _,
        zone: _,
        mode: _,
        allow_out,
        allow_in,
        cidr_out,
        cidr_in,
        world_out,
        world_in,
        sets: _,
    } = zone;
    zone_sets(
        ZoneSets {
            allow_out,
            allow_in,
            cidr_out,
            cidr_in,
            world_out,
            world_in,
        },
        each,
    );
}

/// Calls `each` with every element a zone's delta adds (`added`) or deletes, named
/// as [`zone_elements`] names them.
fn delta_elements(delta: &ZoneDelta, added: bool, each: &mut dyn FnMut(&str, &dyn Debug)) {
    fn side<T>(d: &Delta<T>, added: bool) -> &[T] {
        if added { &d.add } else { &d.del }
    }
    // A set missing here is caught by `zone_elements` (a zone's sets are its
    // delta's) and by the debug assertion that the followed digest is the whole one.
    zone_sets(
        ZoneSets {
            allow_out: side(&delta.allow_out, added),
            allow_in: side(&delta.allow_in, added),
            cidr_out: side(&delta.cidr_out, added),
            cidr_in: side(&delta.cidr_in, added),
            world_out: side(&delta.world_out, added),
            world_in: side(&delta.world_in, added),
        },
        each,
    );
}

/// A zone's six element sets, whole or one side of a delta.
struct ZoneSets<A, C, W> {
    allow_out: A,
    allow_in: A,
    cidr_out: C,
    cidr_in: C,
    world_out: W,
    world_in: W,
}

/// The one place that names a zone's sets for the seal.
fn zone_sets<A, C, W>(sets: ZoneSets<A, C, W>, each: &mut dyn FnMut(&str, &dyn Debug))
where
    A: IntoIterator,
    A::Item: Debug,
    C: IntoIterator,
    C::Item: Debug,
    W: IntoIterator,
    W::Item: Debug,
{
    sets.allow_out
        .into_iter()
        .for_each(|e| each("allow_out", &e));
    sets.allow_in.into_iter().for_each(|e| each("allow_in", &e));
    sets.cidr_out.into_iter().for_each(|e| each("cidr_out", &e));
    sets.cidr_in.into_iter().for_each(|e| each("cidr_in", &e));
    sets.world_out
        .into_iter()
        .for_each(|e| each("world_out", &e));
    sets.world_in.into_iter().for_each(|e| each("world_in", &e));
}

// One hash per element of the model, the same for the whole ruleset and a diff.
fn local_hash(addr: &IpAddr, local: &LocalAddr) -> u128 {
    item(|h| write!(h, "local {addr} {local:?}"))
}

fn member_hash(addr: &IpAddr, (id, comment): &(u32, Comment)) -> u128 {
    item(|h| write!(h, "member {addr} {id} {comment:?}"))
}

fn host_hash(addr: &IpAddr) -> u128 {
    item(|h| write!(h, "host {addr}"))
}

fn cidr_hash(net: &IpNet) -> u128 {
    item(|h| write!(h, "cidr {net}"))
}

/// The hash of one item as `write` prints it (through a hasher: no string is made).
fn item(write: impl FnOnce(&mut Hashing) -> std::fmt::Result) -> u128 {
    let mut hasher = Hashing(Sha256::new());
    // Writing into a hasher cannot fail.
    let _ = write(&mut hasher);
    let full = hasher.0.finalize();
    u128::from_be_bytes(full[..16].try_into().expect("16 bytes"))
}

/// The seal's element key: the digest, then the generation (big-endian).
pub fn seal_key(digest: &[u8; DIGEST_BYTES], generation: u32) -> std::net::Ipv6Addr {
    let mut key = [0u8; 16];
    key[..DIGEST_BYTES].copy_from_slice(digest);
    key[DIGEST_BYTES..].copy_from_slice(&generation.to_be_bytes());
    std::net::Ipv6Addr::from(key)
}

/// The digest and generation of a seal's key.
pub fn read_seal_key(key: &[u8]) -> Option<([u8; DIGEST_BYTES], u32)> {
    let key: [u8; 16] = key.try_into().ok()?;
    let mut digest = [0; DIGEST_BYTES];
    digest.copy_from_slice(&key[..DIGEST_BYTES]);
    let generation = u32::from_be_bytes(key[DIGEST_BYTES..].try_into().ok()?);
    Some((digest, generation))
}

/// `fmt::Write` into a hash, so that large models are hashed without a string.
struct Hashing(Sha256);

impl std::fmt::Write for Hashing {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.update(text.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::Cluster;
    use super::*;
    use zonewarden_profiles::profile::Mode;

    #[test]
    fn the_digest_follows_every_part_of_the_ruleset() {
        let opts = super::super::tests::OPTS;
        let mut cluster = Cluster::new(true);
        let base = digest(&cluster.compile(), &opts);
        assert_eq!(base, digest(&cluster.compile(), &opts), "deterministic");
        cluster.set_mode("shop/db", Mode::Enforce);
        let moded = digest(&cluster.compile(), &opts);
        assert_ne!(base, moded, "a mode");
        cluster.remove_endpoint("web2");
        assert_ne!(moded, digest(&cluster.compile(), &opts), "an endpoint");
        let other = Options {
            nflog_group: opts.nflog_group + 1,
            ..opts
        };
        assert_ne!(
            digest(&cluster.compile(), &opts),
            digest(&cluster.compile(), &other),
            "the options"
        );
        let key = seal_key(&base, 0xdead_beef);
        assert_eq!(read_seal_key(&key.octets()), Some((base, 0xdead_beef)));
        assert_eq!(read_seal_key(&[1, 2, 3]), None);
    }

    /// The digest a diff updates is the digest of the whole new ruleset, through
    /// every kind of change: endpoints (local and remote, both families) added and
    /// removed, quarantine, modes, zones created and removed, host probes, back.
    #[test]
    fn a_digest_updated_by_diffs_is_the_digest_of_the_whole_ruleset() {
        let opts = super::super::tests::OPTS;
        let mut cluster = Cluster::new(false);
        let mut old = cluster.compile();
        let mut running = SealDigest::of(&old, &opts);
        let first = running.clone();
        let mut step = |cluster: &Cluster, settings: Option<bool>, what: &str| {
            let mut new = cluster.compile();
            if let Some(probes) = settings {
                new.settings.allow_host_probes = probes;
            }
            let diff = RulesetDiff::between(&old, &new);
            running.update(&diff, &new, &opts);
            assert_eq!(running, SealDigest::of(&new, &opts), "{what}");
            old = new;
        };
        cluster = cluster.dual_stack();
        step(&cluster, None, "IPv6 addresses added");
        cluster.quarantined.insert("web1".into());
        step(&cluster, None, "an endpoint quarantined");
        cluster.set_mode("shop/db", Mode::Enforce);
        step(&cluster, None, "a mode switched");
        let with_cache = Cluster::new(true).dual_stack();
        step(&with_cache, None, "a zone created");
        cluster.remove_endpoint("db2");
        step(&cluster, None, "a zone removed, a remote endpoint gone");
        step(&cluster, Some(false), "host probes off");
        let back = Cluster::new(false);
        step(&back, None, "back to the start");
        assert_eq!(
            running.digest(),
            first.digest(),
            "the same table, the same seal"
        );
    }
}
