//! Learned edges and their evidence: first seen, last seen, count, the nodes that saw
//! the edge and one sample connection. Bounded: past the limit the edge seen longest
//! ago is forgotten first, in O(log n) (an index by last-seen time), so that a flood
//! of new edges costs the same per edge at the limit as below it.
//!
//! Memory: an edge holds two zone names (at most 253 bytes each), twice (the map and
//! the index), and its evidence (one sample, the nodes that saw it): under 2 KiB at
//! the longest names, a few hundred bytes for usual ones. `limit` edges bound it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::edge::{Edge, Proto};
use crate::zone::ZoneName;

/// One connection, as the data plane logged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub src: IpAddr,
    pub src_port: u16,
    pub dst: IpAddr,
    pub dst_port: u16,
    pub proto: Proto,
}

impl std::fmt::Display for Sample {
    /// `10.0.0.5:40312 -> 10.0.0.7:8080/tcp`, `[fd00::5]:40312 -> [fd00::7]:8080/tcp`,
    /// `fd00::5 -> fd00::7/icmp` for protocols without ports.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::net::SocketAddr;
        if self.proto.has_ports() {
            let src = SocketAddr::new(self.src, self.src_port);
            let dst = SocketAddr::new(self.dst, self.dst_port);
            write!(f, "{src} -> {dst}/{}", self.proto)
        } else {
            write!(f, "{} -> {}/{}", self.src, self.dst, self.proto)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    pub first_seen_unix_ms: i64,
    pub last_seen_unix_ms: i64,
    /// Logged connections (the data plane logs a repeated connection once per window).
    pub count: u64,
    pub nodes: BTreeSet<String>,
    pub sample: Sample,
}

impl Evidence {
    /// Widens the sightings by `other`'s: the earliest first, the latest last (with its
    /// sample), every node. The count is the caller's to combine.
    pub fn widen(&mut self, other: &Evidence) {
        self.first_seen_unix_ms = self.first_seen_unix_ms.min(other.first_seen_unix_ms);
        if other.last_seen_unix_ms > self.last_seen_unix_ms {
            self.last_seen_unix_ms = other.last_seen_unix_ms;
            self.sample = other.sample.clone();
        }
        self.nodes.extend(other.nodes.iter().cloned());
    }
}

/// Every learned edge with its evidence. Change it through its methods only: they
/// keep the eviction index in step with `edges`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnedEdges {
    pub limit: usize,
    pub edges: BTreeMap<Edge, Evidence>,
    /// Every edge of `edges` by its last-seen time, stalest first. Not stored: rebuilt
    /// from `edges` when it does not match (after loading).
    #[serde(skip)]
    by_last_seen: BTreeSet<(i64, Edge)>,
}

impl PartialEq for LearnedEdges {
    /// The index follows from the edges.
    fn eq(&self, other: &Self) -> bool {
        self.limit == other.limit && self.edges == other.edges
    }
}

impl Eq for LearnedEdges {}

/// What [`LearnedEdges::record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The edge was known: its evidence was updated.
    Again,
    /// A new edge.
    New,
    /// A new edge; this many of the stalest were forgotten to stay within the limit.
    NewEvicting(usize),
}

impl Recorded {
    pub fn is_new(self) -> bool {
        self != Self::Again
    }

    /// How many edges were forgotten to make room.
    pub fn evicted(self) -> usize {
        match self {
            Self::NewEvicting(n) => n,
            Self::Again | Self::New => 0,
        }
    }
}

/// How complete learning is for one zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completeness {
    /// Milliseconds since the zone's newest edge was first seen; `None` without edges.
    pub since_last_new_edge_ms: Option<i64>,
    /// Edges of the zone first seen within the window.
    pub new_in_window: usize,
    /// Edges of the zone seen (first or again) within the window.
    pub seen_in_window: usize,
}

impl LearnedEdges {
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            edges: BTreeMap::new(),
            by_last_seen: BTreeSet::new(),
        }
    }

    /// Records one logged connection.
    pub fn record(&mut self, edge: Edge, sample: Sample, node: &str, now_unix_ms: i64) -> Recorded {
        self.sync_index();
        if let Some(ev) = self.edges.get_mut(&edge) {
            if now_unix_ms > ev.last_seen_unix_ms {
                self.by_last_seen
                    .remove(&(ev.last_seen_unix_ms, edge.clone()));
                self.by_last_seen.insert((now_unix_ms, edge));
                ev.last_seen_unix_ms = now_unix_ms;
            }
            ev.count += 1;
            if !ev.nodes.contains(node) {
                ev.nodes.insert(node.to_owned());
            }
            return Recorded::Again;
        }
        let mut evicted = 0;
        while self.edges.len() >= self.limit && self.evict_stalest() {
            evicted += 1;
        }
        self.by_last_seen.insert((now_unix_ms, edge.clone()));
        let evidence = Evidence {
            first_seen_unix_ms: now_unix_ms,
            last_seen_unix_ms: now_unix_ms,
            count: 1,
            nodes: BTreeSet::from([node.to_owned()]),
            sample,
        };
        self.edges.insert(edge, evidence);
        match evicted {
            0 => Recorded::New,
            n => Recorded::NewEvicting(n),
        }
    }

    /// Forgets the edge seen longest ago; false when there is none.
    fn evict_stalest(&mut self) -> bool {
        match self.by_last_seen.pop_first() {
            Some((_, edge)) => self.edges.remove(&edge).is_some(),
            None => false,
        }
    }

    /// Rebuilds the index when it does not describe `edges` (after loading).
    fn sync_index(&mut self) {
        if self.by_last_seen.len() != self.edges.len() {
            self.by_last_seen = self
                .edges
                .iter()
                .map(|(edge, ev)| (ev.last_seen_unix_ms, edge.clone()))
                .collect();
        }
    }

    /// Takes in another record of the same node's learning (its local store moved into
    /// the cluster store): an edge known to both keeps the larger count, the earliest
    /// first sighting and the latest last one, so taking the same record in twice
    /// changes nothing. Past the limit the stalest edges go, as in [`Self::record`].
    pub fn absorb(&mut self, other: &LearnedEdges) {
        for (edge, theirs) in &other.edges {
            match self.edges.get_mut(edge) {
                Some(ours) => {
                    ours.count = ours.count.max(theirs.count);
                    ours.widen(theirs);
                }
                None => {
                    self.edges.insert(edge.clone(), theirs.clone());
                }
            }
        }
        self.by_last_seen.clear();
        self.sync_index();
        while self.edges.len() > self.limit && self.evict_stalest() {}
    }

    /// Forgets learned edges (rejected by an operator); returns how many were known.
    pub fn forget(&mut self, edges: &[Edge]) -> usize {
        self.sync_index();
        let mut known = 0;
        for edge in edges {
            if let Some(ev) = self.edges.remove(edge) {
                self.by_last_seen
                    .remove(&(ev.last_seen_unix_ms, edge.clone()));
                known += 1;
            }
        }
        known
    }

    /// The learned edges touching `zone`.
    pub fn of_zone<'a>(
        &'a self,
        zone: &'a ZoneName,
    ) -> impl Iterator<Item = (&'a Edge, &'a Evidence)> + 'a {
        self.edges.iter().filter(move |(e, _)| e.touches(zone))
    }

    pub fn completeness(
        &self,
        zone: &ZoneName,
        now_unix_ms: i64,
        window: Duration,
    ) -> Completeness {
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let start = now_unix_ms.saturating_sub(window_ms);
        let mut newest: Option<i64> = None;
        let (mut new_in_window, mut seen_in_window) = (0, 0);
        for (_, ev) in self.of_zone(zone) {
            newest = Some(newest.map_or(ev.first_seen_unix_ms, |n| n.max(ev.first_seen_unix_ms)));
            new_in_window += usize::from(ev.first_seen_unix_ms >= start);
            seen_in_window += usize::from(ev.last_seen_unix_ms >= start);
        }
        Completeness {
            since_last_new_edge_ms: newest.map(|n| now_unix_ms.saturating_sub(n)),
            new_in_window,
            seen_in_window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(port: u16) -> Edge {
        format!("a->b:{port}/tcp").parse().unwrap()
    }

    fn sample(port: u16) -> Sample {
        Sample {
            src: "10.0.0.1".parse().unwrap(),
            src_port: 40000,
            dst: "10.0.0.2".parse().unwrap(),
            dst_port: port,
            proto: Proto::Tcp,
        }
    }

    #[test]
    fn samples_print_ipv6_in_brackets_and_no_ports_without_ports() {
        let tcp = Sample {
            src: "fd00::5".parse().unwrap(),
            src_port: 40312,
            dst: "fd00::7".parse().unwrap(),
            dst_port: 8080,
            proto: Proto::Tcp,
        };
        assert_eq!(tcp.to_string(), "[fd00::5]:40312 -> [fd00::7]:8080/tcp");
        let icmp = Sample {
            proto: Proto::Icmp,
            src_port: 0,
            dst_port: 0,
            ..tcp.clone()
        };
        assert_eq!(icmp.to_string(), "fd00::5 -> fd00::7/icmp");
        let v4 = Sample {
            src: "10.0.0.5".parse().unwrap(),
            dst: "10.0.0.7".parse().unwrap(),
            ..tcp
        };
        assert_eq!(v4.to_string(), "10.0.0.5:40312 -> 10.0.0.7:8080/tcp");
    }

    #[test]
    fn records_evidence_and_counts() {
        let mut l = LearnedEdges::new(10);
        assert_eq!(l.record(edge(80), sample(80), "n1", 1000), Recorded::New);
        assert_eq!(l.record(edge(80), sample(80), "n2", 2000), Recorded::Again);
        let ev = &l.edges[&edge(80)];
        assert_eq!(
            (ev.first_seen_unix_ms, ev.last_seen_unix_ms, ev.count),
            (1000, 2000, 2)
        );
        assert_eq!(ev.nodes.len(), 2);
    }

    #[test]
    fn bounded_forgets_the_stalest() {
        let mut l = LearnedEdges::new(2);
        l.record(edge(1), sample(1), "n", 1);
        l.record(edge(2), sample(2), "n", 2);
        l.record(edge(1), sample(1), "n", 3);
        assert_eq!(
            l.record(edge(3), sample(3), "n", 4),
            Recorded::NewEvicting(1)
        );
        assert_eq!(l.edges.len(), 2);
        assert!(l.edges.contains_key(&edge(1)) && l.edges.contains_key(&edge(3)));
    }

    #[test]
    fn a_loaded_set_evicts_by_last_seen_and_down_to_a_lowered_limit() {
        let mut l = LearnedEdges::new(10);
        for port in 1..=5 {
            l.record(edge(port), sample(port), "n", i64::from(10 - port));
        }
        let mut loaded: LearnedEdges =
            serde_json::from_str(&serde_json::to_string(&l).unwrap()).unwrap();
        assert_eq!(loaded, l, "the index is not stored");
        loaded.limit = 3;
        assert_eq!(
            loaded.record(edge(9), sample(9), "n", 100),
            Recorded::NewEvicting(3)
        );
        let ports: Vec<u16> = loaded.edges.keys().map(|e| e.port).collect();
        assert_eq!(ports, [1, 2, 9], "5, 4 and 3 were seen longest ago");
        assert_eq!(loaded.forget(&[edge(1), edge(7)]), 1);
        loaded.record(edge(10), sample(10), "n", 101);
        loaded.record(edge(11), sample(11), "n", 102);
        let ports: Vec<u16> = loaded.edges.keys().map(|e| e.port).collect();
        assert_eq!(ports, [9, 10, 11], "the forgotten edge left the index too");
    }

    #[test]
    fn completeness_of_a_zone() {
        let mut l = LearnedEdges::new(10);
        l.record(edge(1), sample(1), "n", 1_000);
        l.record(edge(2), sample(2), "n", 50_000);
        let a = ZoneName::parse("a").unwrap();
        let c = l.completeness(&a, 60_000, Duration::from_secs(30));
        assert_eq!(c.since_last_new_edge_ms, Some(10_000));
        assert_eq!((c.new_in_window, c.seen_in_window), (1, 1));
        let none = l.completeness(
            &ZoneName::parse("z").unwrap(),
            60_000,
            Duration::from_secs(30),
        );
        assert_eq!(none.since_last_new_edge_ms, None);
    }

    #[test]
    fn absorbing_a_record_twice_changes_nothing_more() {
        let mut ours = LearnedEdges::new(10);
        ours.record(edge(80), sample(80), "n1", 1_000);
        ours.record(edge(80), sample(80), "n1", 5_000);
        let mut theirs = LearnedEdges::new(10);
        theirs.record(edge(80), sample(80), "n1", 500);
        theirs.record(edge(443), sample(443), "n1", 700);
        ours.absorb(&theirs);
        let once = ours.clone();
        ours.absorb(&theirs);
        assert_eq!(ours, once);
        let web = &ours.edges[&edge(80)];
        assert_eq!(
            (web.count, web.first_seen_unix_ms, web.last_seen_unix_ms),
            (2, 500, 5_000)
        );
        assert_eq!(ours.edges[&edge(443)].count, 1);
        // Past the limit the stalest edge goes.
        let mut small = LearnedEdges::new(1);
        small.absorb(&once);
        assert_eq!(small.edges.keys().collect::<Vec<_>>(), vec![&edge(80)]);
    }
}
