//! zonewarden IPAM (`"ipam": {"type": "zonewarden"}`): the addresses of a node's pod
//! CIDR blocks (one IPv4 and/or one IPv6 block), leased per attachment.
//!
//! A lease holds one address of every block. The block's first address (the network),
//! the one after it (the gateway by host-local's convention, kept free so the node
//! may use it) and, for IPv4, the last (broadcast) are never handed out. Addresses
//! are handed out round-robin from the last one leased, as host-local does, so a
//! released address is reused last (open connections of its old owner have aged out
//! by then). A lease is idempotent: the same attachment asking again gets the same
//! addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::AttachmentKey;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error(
        "zonewarden IPAM: this enforcer has no pod CIDR block to lease addresses from; start it with --pod-cidr CIDR (one IPv4 and/or one IPv6 block), or use another IPAM plugin such as host-local"
    )]
    NoBlock,
    #[error(
        "zonewarden IPAM: pod CIDR block {block} has no free address ({leased} leased, {usable} usable); delete pods that are gone (their DEL or a CNI GC releases their addresses) or give the node a larger block with --pod-cidr"
    )]
    Exhausted {
        block: IpNet,
        leased: usize,
        usable: u128,
    },
    #[error(
        "zonewarden IPAM: pod CIDR block {block} is too small: it has no address to lease besides its network, gateway and broadcast addresses; use a /29 or larger (IPv6: /126 or larger)"
    )]
    TooSmall { block: IpNet },
}

/// The leases of a node's pod blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pool {
    blocks: Vec<IpNet>,
    leases: BTreeMap<AttachmentKey, Vec<IpNet>>,
    /// Every leased address (of any lease), for the free-address search.
    taken: BTreeSet<IpAddr>,
    /// Per block, the address leased last (the search starts after it).
    cursor: BTreeMap<IpNet, IpAddr>,
}

impl Pool {
    /// A pool of `blocks` (host bits cleared); refuses a block without a usable address.
    pub fn new(blocks: &[IpNet]) -> Result<Self, IpamError> {
        let blocks: Vec<IpNet> = blocks.iter().map(IpNet::trunc).collect();
        if let Some(block) = blocks.iter().find(|b| usable(b) == 0) {
            return Err(IpamError::TooSmall { block: *block });
        }
        Ok(Self {
            blocks,
            ..Self::default()
        })
    }

    pub fn blocks(&self) -> &[IpNet] {
        &self.blocks
    }

    /// Whether `addr` lies in one of the pool's blocks.
    pub fn covers(&self, addr: IpAddr) -> bool {
        self.blocks.iter().any(|b| b.contains(&addr))
    }

    /// Takes in an existing attachment's addresses (at start, from the stored
    /// endpoints): those in the pool's blocks are leased to `key` and never handed
    /// out to another attachment. Addresses outside the blocks are ignored.
    pub fn adopt(&mut self, key: &AttachmentKey, addrs: impl IntoIterator<Item = IpAddr>) {
        let mine: Vec<IpNet> = addrs
            .into_iter()
            .filter_map(|addr| self.block_of(addr).map(|b| lease_net(addr, &b)))
            .collect();
        if mine.is_empty() {
            return;
        }
        for net in &mine {
            self.taken.insert(net.addr());
        }
        let lease = self.leases.entry(key.clone()).or_default();
        for net in mine {
            if !lease.contains(&net) {
                lease.push(net);
            }
        }
    }

    /// The addresses leased to `key`, leasing one of every block when it has none.
    /// Each address carries its block's prefix length. Nothing changes on an error.
    pub fn allocate(&mut self, key: &AttachmentKey) -> Result<Vec<IpNet>, IpamError> {
        if let Some(lease) = self.leases.get(key) {
            return Ok(lease.clone());
        }
        if self.blocks.is_empty() {
            return Err(IpamError::NoBlock);
        }
        let mut lease = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let addr = self
                .free_address(block)
                .ok_or_else(|| IpamError::Exhausted {
                    block: *block,
                    leased: self.taken.iter().filter(|a| block.contains(*a)).count(),
                    usable: usable(block),
                })?;
            lease.push(lease_net(addr, block));
        }
        for net in &lease {
            self.taken.insert(net.addr());
            let block = self.block_of(net.addr()).expect("leased from a block");
            self.cursor.insert(block, net.addr());
        }
        self.leases.insert(key.clone(), lease.clone());
        Ok(lease)
    }

    /// Releases the lease of `key`; what it held (empty when it held nothing).
    pub fn release(&mut self, key: &AttachmentKey) -> Vec<IpNet> {
        let lease = self.leases.remove(key).unwrap_or_default();
        for net in &lease {
            self.taken.remove(&net.addr());
        }
        lease
    }

    /// The lease of `key`, if any.
    pub fn lease(&self, key: &AttachmentKey) -> Option<&[IpNet]> {
        self.leases.get(key).map(Vec::as_slice)
    }

    /// Every lease.
    pub fn leases(&self) -> impl Iterator<Item = (&AttachmentKey, &[IpNet])> {
        self.leases.iter().map(|(k, v)| (k, v.as_slice()))
    }

    fn block_of(&self, addr: IpAddr) -> Option<IpNet> {
        self.blocks.iter().find(|b| b.contains(&addr)).copied()
    }

    /// The first free usable address after the block's cursor, wrapping around.
    fn free_address(&self, block: &IpNet) -> Option<IpAddr> {
        let (first, last) = usable_range(block)?;
        let span = last - first + 1;
        let taken_here = self.taken.iter().filter(|a| block.contains(*a)).count();
        if u128::try_from(taken_here).unwrap_or(u128::MAX) >= span {
            return None;
        }
        let start = self
            .cursor
            .get(block)
            .map(|a| to_u128(*a))
            .filter(|c| (first..last).contains(c))
            .map_or(first, |c| c + 1);
        // Fewer addresses are taken than the block holds: a free one is found within
        // `taken_here + 1` steps.
        (0..span)
            .map(|step| first + (start - first + step) % span)
            .map(|n| from_u128(n, block))
            .find(|addr| !self.taken.contains(addr))
    }
}

/// How many addresses of `block` may be leased.
pub fn usable(block: &IpNet) -> u128 {
    usable_range(block).map_or(0, |(first, last)| last - first + 1)
}

/// The first and last leasable address of `block` as numbers: after the network and
/// gateway addresses, before IPv4's broadcast address.
fn usable_range(block: &IpNet) -> Option<(u128, u128)> {
    let network = to_u128(block.network());
    let broadcast = to_u128(block.broadcast());
    let first = network.checked_add(2)?;
    let last = match block {
        IpNet::V4(_) => broadcast.checked_sub(1)?,
        IpNet::V6(_) => broadcast,
    };
    (first <= last).then_some((first, last))
}

fn lease_net(addr: IpAddr, block: &IpNet) -> IpNet {
    IpNet::new(addr, block.prefix_len()).expect("the block's own prefix length")
}

fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(n: u128, block: &IpNet) -> IpAddr {
    match block {
        IpNet::V4(_) => IpAddr::V4(u32::try_from(n).expect("inside an IPv4 block").into()),
        IpNet::V6(_) => IpAddr::V6(n.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(id: &str) -> AttachmentKey {
        AttachmentKey {
            network: "net".into(),
            container_id: id.into(),
            ifname: "eth0".into(),
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn a_slash_30_leases_one_address_and_then_says_which_block_is_full() {
        let mut pool = Pool::new(&[net("10.9.0.0/30")]).unwrap();
        assert_eq!(pool.allocate(&key("a")).unwrap(), vec![net("10.9.0.2/30")]);
        let err = pool.allocate(&key("b")).unwrap_err();
        assert_eq!(
            err,
            IpamError::Exhausted {
                block: net("10.9.0.0/30"),
                leased: 1,
                usable: 1
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("10.9.0.0/30") && text.contains("--pod-cidr"),
            "{text}"
        );
        assert_eq!(pool.lease(&key("b")), None, "a failed lease holds nothing");
    }

    #[test]
    fn blocks_without_a_usable_address_and_no_block_are_refused_clearly() {
        for tiny in ["10.0.0.0/31", "10.0.0.4/32", "fd00::/127", "fd00::1/128"] {
            let err = Pool::new(&[net(tiny)]).unwrap_err();
            assert!(matches!(err, IpamError::TooSmall { .. }), "{tiny}: {err}");
        }
        let err = Pool::new(&[]).unwrap().allocate(&key("a")).unwrap_err();
        assert_eq!(err, IpamError::NoBlock);
        assert!(err.to_string().contains("--pod-cidr"));
    }

    #[test]
    fn dual_stack_leases_one_of_each_and_a_repeat_gets_the_same() {
        let mut pool = Pool::new(&[net("10.9.0.0/24"), net("fd00:9::/64")]).unwrap();
        let first = pool.allocate(&key("a")).unwrap();
        assert_eq!(first, vec![net("10.9.0.2/24"), net("fd00:9::2/64")]);
        assert_eq!(pool.allocate(&key("a")).unwrap(), first);
        assert_eq!(
            pool.allocate(&key("b")).unwrap(),
            vec![net("10.9.0.3/24"), net("fd00:9::3/64")]
        );
    }

    #[test]
    fn a_full_ipv6_block_fails_without_taking_the_ipv4_address() {
        let mut pool = Pool::new(&[net("10.9.0.0/24"), net("fd00:9::/126")]).unwrap();
        pool.allocate(&key("a")).unwrap();
        pool.allocate(&key("b")).unwrap();
        let err = pool.allocate(&key("c")).unwrap_err();
        assert!(matches!(err, IpamError::Exhausted { block, .. } if block == net("fd00:9::/126")));
        assert_eq!(pool.taken.len(), 4, "nothing of c's lease is kept");
    }

    #[test]
    fn adopted_addresses_are_never_handed_out_again() {
        let mut pool = Pool::new(&[net("10.9.0.0/29")]).unwrap();
        pool.adopt(
            &key("old"),
            ["10.9.0.2".parse().unwrap(), "192.0.2.1".parse().unwrap()],
        );
        assert_eq!(pool.lease(&key("old")), Some(&[net("10.9.0.2/29")][..]));
        assert_eq!(
            pool.allocate(&key("new")).unwrap(),
            vec![net("10.9.0.3/29")]
        );
        assert_eq!(
            pool.allocate(&key("old")).unwrap(),
            vec![net("10.9.0.2/29")]
        );
    }

    proptest! {
        /// Any sequence of allocations and releases: an address is never leased to two
        /// attachments, always lies in its block and is never the network, gateway or
        /// broadcast address; a release makes it available again; the pool fails only
        /// when every usable address is leased.
        #[test]
        fn never_twice_never_outside_and_released_addresses_come_back(
            ops in proptest::collection::vec((any::<bool>(), 0u8..12), 1..200),
            v6 in any::<bool>(),
        ) {
            let block = if v6 { net("fd00:9::/125") } else { net("10.9.0.0/29") };
            let mut pool = Pool::new(&[block]).unwrap();
            let mut held: BTreeMap<AttachmentKey, IpAddr> = BTreeMap::new();
            for (alloc, id) in ops {
                let k = key(&id.to_string());
                if alloc {
                    match pool.allocate(&k) {
                        Ok(lease) => {
                            prop_assert_eq!(lease.len(), 1);
                            let addr = lease[0].addr();
                            prop_assert!(block.contains(&addr));
                            prop_assert_ne!(addr, block.network());
                            prop_assert_ne!(addr, from_u128(to_u128(block.network()) + 1, &block));
                            if !v6 {
                                prop_assert_ne!(addr, block.broadcast());
                            }
                            if let Some(before) = held.get(&k) {
                                prop_assert_eq!(*before, addr, "a repeat gets the same address");
                            }
                            prop_assert!(
                                held.iter().all(|(other, a)| other == &k || *a != addr),
                                "{} handed out twice", addr
                            );
                            held.insert(k, addr);
                        }
                        Err(IpamError::Exhausted { .. }) => {
                            prop_assert!(!held.contains_key(&k));
                            prop_assert_eq!(u128::try_from(held.len()).unwrap(), usable(&block));
                        }
                        Err(other) => prop_assert!(false, "unexpected {}", other),
                    }
                } else {
                    let released = pool.release(&k);
                    prop_assert_eq!(released.first().map(IpNet::addr), held.remove(&k));
                }
            }
        }
    }
}
