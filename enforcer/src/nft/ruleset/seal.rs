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

use sha2::{Digest, Sha256};
use zonewarden_profiles::ruleset::Ruleset;

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
    let mut hasher = Hashing(Sha256::new());
    use std::fmt::Write;
    // Writing into a hasher cannot fail.
    let _ = write!(
        hasher,
        "zonewarden ruleset seal 1\n{}\n{opts:?}\n{}\n",
        env!("CARGO_PKG_VERSION"),
        base_commands(&ruleset.settings, &KernelView::default(), opts)
    );
    for zone in ruleset.zones.values() {
        for dir in Dir::BOTH {
            let _ = writeln!(hasher, "{:?}", zone_chain_rules(zone, dir, opts));
        }
    }
    let _ = write!(hasher, "{ruleset:?}");
    let full = hasher.0.finalize();
    let mut out = [0; DIGEST_BYTES];
    out.copy_from_slice(&full[..DIGEST_BYTES]);
    out
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
}
