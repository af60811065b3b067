//! The data plane against the oracle, as root: seeded random zones, endpoints, modes
//! and approvals on dual-stack pods; every (source pod, destination pod, family,
//! protocol, port) probed with real packets must pass exactly when `Policy::verdict`
//! of the profiles crate says so (edges know no family: one verdict holds for both).

use std::collections::BTreeMap;
use std::time::Duration;

use zonewarden_profiles::policy::End;
use zonewarden_profiles::profile::{Actor, Profile};
use zonewarden_profiles::{Edge, Mode, Policy, Proto, ZoneName};
use zonewarden_tests::cni::Conflist;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::{Pod, add_pod};
use zonewarden_tests::require_root;
use zonewarden_tests::traffic::{Server, probe};

const SERVICES: [(Proto, u16); 3] = [(Proto::Tcp, 80), (Proto::Tcp, 443), (Proto::Udp, 53)];

/// A small deterministic generator: the same seed gives the same scenario.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

struct Scenario {
    zones: usize,
    pods: usize,
    approvals: usize,
    /// How many source pods are probed (all when >= pods) and targets per source.
    sources: usize,
    targets_per_source: usize,
    seed: u64,
}

fn run(s: &Scenario, subnets: &[&str]) {
    let node = Node::with_enforcer();
    let list = Conflist::routed_ranges(&node, "zw-truth", subnets);
    let mut rng = Lcg(s.seed);
    let zone = |i: usize| format!("truth/z{i}");
    let pods: Vec<Pod> = (0..s.pods)
        .map(|i| add_pod(&node, &list, &format!("t{i}"), &zone(rng.next(s.zones))))
        .collect();
    let _servers: Vec<Server> = pods
        .iter()
        .map(|p| Server::start(&p.netns, &["tcp:80", "tcp:443", "udp:53"]))
        .collect();

    let actor = Actor {
        who: "oracle".into(),
        at_unix_ms: 0,
        comment: String::new(),
    };
    let mut policy = Policy::default();
    for z in 0..s.zones {
        let name = ZoneName::parse(&zone(z)).unwrap();
        let mode = [Mode::Learn, Mode::Monitor, Mode::Enforce][rng.next(3)];
        let mut profile = Profile::new(name.clone());
        profile.set_mode(mode, &actor);
        policy.profiles.insert(name, profile);
        // Some zones have no pod on the node: their profile is made on purpose.
        node.zwctl(&["mode", "set", &zone(z), mode.as_str(), "--create"]);
    }
    let mut by_owner: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for _ in 0..s.approvals {
        let (src, dst) = (zone(rng.next(s.zones)), zone(rng.next(s.zones)));
        let (proto, port) = SERVICES[rng.next(SERVICES.len())];
        let edge = Edge::new(
            ZoneName::parse(&src).unwrap(),
            ZoneName::parse(&dst).unwrap(),
            proto,
            port,
        );
        let owner = if rng.next(2) == 0 { src } else { dst };
        let owner_zone = ZoneName::parse(&owner).unwrap();
        policy
            .profiles
            .get_mut(&owner_zone)
            .unwrap()
            .approve([edge.clone()], &actor)
            .unwrap();
        by_owner.entry(owner).or_default().push(edge.to_string());
    }
    for (owner, edges) in &by_owner {
        for chunk in edges.chunks(200) {
            let mut args = vec!["profile", "approve", owner.as_str()];
            for e in chunk {
                args.extend(["--edge", e.as_str()]);
            }
            node.zwctl(&args);
        }
    }

    let mut checked = 0;
    let mut families = [0usize; 2];
    let mut mismatches = Vec::new();
    for src in pods.iter().take(s.sources) {
        let mut targets = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..s.targets_per_source {
            let dst = &pods[rng.next(pods.len())];
            if dst.ip == src.ip {
                continue;
            }
            let (proto, port) = SERVICES[rng.next(SERVICES.len())];
            let v6 = dst.ip6.is_some() && rng.next(2) == 1;
            let (sz, dz) = (
                ZoneName::parse(&src.zone).unwrap(),
                ZoneName::parse(&dst.zone).unwrap(),
            );
            let verdict = policy.verdict(
                End {
                    zone: &sz,
                    quarantined: false,
                },
                End {
                    zone: &dz,
                    quarantined: false,
                },
                proto,
                port,
            );
            targets.push(if v6 {
                dst.target6(port, &proto.name())
            } else {
                dst.target(port, &proto.name())
            });
            let family = if v6 { "IPv6" } else { "IPv4" };
            expected.push((
                format!("{} -> {} {port}/{proto} over {family}", src.zone, dst.zone),
                verdict,
            ));
        }
        let got = probe(&src.netns, &targets, Duration::from_millis(800));
        for ((what, verdict), passed) in expected.iter().zip(got) {
            checked += 1;
            families[usize::from(what.ends_with("IPv6"))] += 1;
            if passed != verdict.passes() {
                mismatches.push(format!(
                    "{what}: oracle {verdict:?}, packets {}",
                    if passed { "passed" } else { "dropped" }
                ));
            }
        }
    }
    assert!(checked > 0, "no pair was probed");
    assert!(
        families.iter().all(|n| *n > 0),
        "both families were probed: {families:?}"
    );
    assert!(
        mismatches.is_empty(),
        "{} of {checked} probes disagree with the oracle:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn small_truth_table_matches_the_oracle() {
    require_root!();
    run(
        &Scenario {
            zones: 5,
            pods: 10,
            approvals: 40,
            sources: 10,
            targets_per_source: 27,
            seed: 0x5eed_0001,
        },
        &["10.140.0.0/24", "fd7b:140::/64"],
    );
}

#[test]
fn truth_table_at_scale_matches_the_oracle() {
    require_root!();
    run(
        &Scenario {
            zones: 40,
            pods: 200,
            approvals: 2_000,
            sources: 25,
            targets_per_source: 24,
            seed: 0x5eed_0002,
        },
        &["10.141.0.0/23", "fd7b:141::/64"],
    );
}
