//! Compile invariants without root: the compiled ruleset, run through its reference
//! semantics, agrees with the policy oracle for every pair of endpoints and every
//! service; a ruleset diff turns the old ruleset into the new one exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use proptest::prelude::*;
use zonewarden_profiles::diff::RulesetDiff;
use zonewarden_profiles::policy::{End, NodeSettings};
use zonewarden_profiles::profile::{Actor, Mode, Profile};
use zonewarden_profiles::ruleset::{CompileInput, Hook, Ruleset, compile};
use zonewarden_profiles::{
    AttachMode, AttachmentKey, Edge, Endpoint, Policy, Proto, Verdict, ZoneName,
};

const SERVICES: [(Proto, u16); 4] = [
    (Proto::Tcp, 80),
    (Proto::Tcp, 5432),
    (Proto::Udp, 53),
    (Proto::Icmp, 0),
];

fn corp() -> ZoneName {
    ZoneName::parse("ext/corp").unwrap()
}

fn zone(i: usize) -> ZoneName {
    ZoneName::parse(&format!("ns/z{i}")).unwrap()
}

fn endpoint(i: usize, zone_index: usize) -> Endpoint {
    Endpoint {
        key: AttachmentKey {
            network: "n".into(),
            container_id: format!("c{i}").into(),
            ifname: "eth0".into(),
        },
        zone: zone(zone_index),
        zone_source: zonewarden_profiles::ZoneSource::Config,
        netns: String::new(),
        host_ifname: Some(format!("zw{i:011}")),
        ips: vec![
            format!("10.0.{}.{}/32", i / 200, i % 200 + 1)
                .parse()
                .unwrap(),
        ],
        mac: None,
        node: "node".into(),
        pod_namespace: None,
        pod_name: None,
        attach_mode: AttachMode::Routed,
        created_unix_ms: 0,
        bridge: None,
    }
}

#[derive(Debug)]
struct World {
    policy: Policy,
    endpoints: Vec<Endpoint>,
    zone_ids: BTreeMap<ZoneName, u32>,
    quarantined: BTreeSet<String>,
}

fn actor() -> Actor {
    Actor {
        who: "test".into(),
        at_unix_ms: 0,
        comment: String::new(),
    }
}

fn world_strategy() -> impl Strategy<Value = World> {
    let zones = 1usize..6;
    zones.prop_flat_map(|nz| {
        (
            proptest::collection::vec(0..nz, 1..12),
            proptest::collection::vec(0u8..3, nz),
            proptest::collection::vec((0..nz + 3, 0..nz + 3, 0..SERVICES.len()), 0..24),
            proptest::collection::vec(any::<bool>(), nz),
            proptest::collection::vec(any::<bool>(), 12),
            any::<bool>(),
        )
            .prop_map(move |(members, modes, edges, zq, eq, probes)| {
                let mut policy = Policy {
                    settings: NodeSettings {
                        allow_host_probes: probes,
                    },
                    ..Policy::default()
                };
                let host = ZoneName::host();
                policy
                    .cidr_zones
                    .insert(corp(), vec!["10.250.0.0/28".parse().unwrap()]);
                for (i, m) in modes.iter().enumerate() {
                    let mut p = Profile::new(zone(i));
                    p.set_mode(
                        [Mode::Learn, Mode::Monitor, Mode::Enforce][*m as usize],
                        &actor(),
                    );
                    p.quarantined = zq[i];
                    policy.profiles.insert(zone(i), p);
                }
                for (s, d, svc) in edges {
                    let (proto, port) = SERVICES[svc];
                    let special = |i: usize| match i - nz {
                        0 => host.clone(),
                        1 => corp(),
                        _ => ZoneName::world(),
                    };
                    let src = if s >= nz { special(s) } else { zone(s) };
                    let dst = if d >= nz { special(d) } else { zone(d) };
                    let is_endpoint_zone = |z: &ZoneName| !z.is_builtin() && z != &corp();
                    let owner = if is_endpoint_zone(&src) {
                        src.clone()
                    } else {
                        dst.clone()
                    };
                    if !is_endpoint_zone(&owner) {
                        continue;
                    }
                    let edge = Edge::new(src, dst, proto, port);
                    policy
                        .profiles
                        .get_mut(&owner)
                        .unwrap()
                        .approve([edge], &actor())
                        .unwrap();
                }
                let endpoints: Vec<Endpoint> = members
                    .iter()
                    .enumerate()
                    .map(|(i, z)| endpoint(i, *z))
                    .collect();
                let zone_ids = (0..nz).map(|i| (zone(i), i as u32 + 1)).collect();
                let quarantined = endpoints
                    .iter()
                    .zip(&eq)
                    .filter(|(_, q)| **q)
                    .map(|(e, _)| e.key.container_id.to_string())
                    .collect();
                World {
                    policy,
                    endpoints,
                    zone_ids,
                    quarantined,
                }
            })
    })
}

const HOST: &str = "10.255.0.1";

fn end<'a>(w: &World, ep: &'a Endpoint) -> End<'a> {
    End {
        zone: &ep.zone,
        quarantined: w.quarantined.contains(&*ep.key.container_id),
    }
}

fn compiled(w: &World) -> Ruleset {
    let host: IpAddr = HOST.parse().unwrap();
    compile(&CompileInput {
        policy: &w.policy,
        endpoints: &w.endpoints,
        node: "node",
        zone_ids: &w.zone_ids,
        host_addrs: &[host],
        quarantined_endpoints: &w.quarantined,
    })
}

proptest! {
    #[test]
    fn compiled_ruleset_agrees_with_the_oracle(w in world_strategy()) {
        let rs = compiled(&w);
        let host_zone = ZoneName::host();
        let host: IpAddr = HOST.parse().unwrap();
        let host_end = End { zone: &host_zone, quarantined: false };
        for a in &w.endpoints {
            for (proto, port) in SERVICES {
                let (sa, _) = (a.ips[0].addr(), 0);
                for b in &w.endpoints {
                    let want = w.policy.verdict(end(&w, a), end(&w, b), proto, port);
                    let got = rs.simulate(Hook::Forward, sa, b.ips[0].addr(), proto, port);
                    prop_assert_eq!(got, want, "{} -> {} {}/{}", a.zone, b.zone, port, proto);
                }
                for (addr, zone) in [("10.250.0.5", corp()), ("10.251.0.1", ZoneName::world())] {
                    let other = End { zone: &zone, quarantined: false };
                    let addr: IpAddr = addr.parse().unwrap();
                    let want = w.policy.verdict(end(&w, a), other, proto, port);
                    prop_assert_eq!(rs.simulate(Hook::Forward, sa, addr, proto, port), want, "{} -> {}", a.zone, zone);
                    let want = w.policy.verdict(other, end(&w, a), proto, port);
                    prop_assert_eq!(rs.simulate(Hook::Forward, addr, sa, proto, port), want, "{} -> {}", zone, a.zone);
                }
                let want = w.policy.verdict(host_end, end(&w, a), proto, port);
                prop_assert_eq!(rs.simulate(Hook::Output, host, sa, proto, port), want, "host -> {}", a.zone);
                let want = w.policy.verdict(end(&w, a), host_end, proto, port);
                prop_assert_eq!(rs.simulate(Hook::Input, sa, host, proto, port), want, "{} -> host", a.zone);
            }
        }
    }

    #[test]
    fn diff_turns_old_into_new(a in world_strategy(), b in world_strategy()) {
        let (old, new) = (compiled(&a), compiled(&b));
        let diff = RulesetDiff::between(&old, &new);
        prop_assert_eq!(diff.is_empty(), old == new);
        let mut local = old.local.clone();
        for (k, _) in &diff.local.del { local.remove(k); }
        for (k, v) in &diff.local.add { local.insert(*k, v.clone()); }
        prop_assert_eq!(&local, &new.local);
        let mut zones = old.zones.clone();
        for z in &diff.removed { zones.remove(&z.id); }
        for z in &diff.created { zones.insert(z.id, z.clone()); }
        for (id, delta) in &diff.zones {
            let z = zones.get_mut(id).unwrap();
            for e in &delta.allow_out.del { z.allow_out.remove(e); }
            for e in &delta.allow_out.add { z.allow_out.insert(*e); }
            for e in &delta.allow_in.del { z.allow_in.remove(e); }
            for e in &delta.allow_in.add { z.allow_in.insert(*e); }
            for e in &delta.cidr_out.del { z.cidr_out.remove(e); }
            for e in &delta.cidr_out.add { z.cidr_out.insert(*e); }
            for e in &delta.cidr_in.del { z.cidr_in.remove(e); }
            for e in &delta.cidr_in.add { z.cidr_in.insert(*e); }
            for e in &delta.world_out.del { z.world_out.remove(e); }
            for e in &delta.world_out.add { z.world_out.insert(*e); }
            for e in &delta.world_in.del { z.world_in.remove(e); }
            for e in &delta.world_in.add { z.world_in.insert(*e); }
        }
        for z in &diff.rewritten { let cur = zones.get_mut(&z.id).unwrap(); cur.mode = z.mode; cur.zone = z.zone.clone(); cur.sets = z.sets; }
        for (id, dropped) in &diff.sets_dropped {
            // Only sets the new ruleset does not have, of a zone whose chains were rewritten.
            prop_assert!(diff.rewritten.iter().any(|z| z.id == *id));
            prop_assert!(new.zones[id].sets.minus(*dropped) == new.zones[id].sets);
        }
        prop_assert_eq!(&zones, &new.zones);
    }
}

#[test]
fn three_tier_example() {
    let mut policy = Policy::default();
    let (fe, api, db) = (zone(0), zone(1), zone(2));
    for z in [&fe, &api, &db] {
        policy.profiles.insert(z.clone(), Profile::new(z.clone()));
    }
    let approve = |p: &mut Policy, z: &ZoneName, e: &str| {
        p.profiles
            .get_mut(z)
            .unwrap()
            .approve([e.parse::<Edge>().unwrap()], &actor())
            .unwrap();
    };
    approve(&mut policy, &fe, "ns/z0->ns/z1:8080/tcp");
    approve(&mut policy, &api, "ns/z1->ns/z2:5432/tcp");
    let e = |z| End {
        zone: z,
        quarantined: false,
    };
    assert_eq!(
        policy.verdict(e(&fe), e(&api), Proto::Tcp, 8080),
        Verdict::Allow
    );
    assert_eq!(
        policy.verdict(e(&fe), e(&db), Proto::Tcp, 5432),
        Verdict::Learn
    );
    policy
        .profiles
        .get_mut(&db)
        .unwrap()
        .set_mode(Mode::Enforce, &actor());
    assert_eq!(
        policy.verdict(e(&fe), e(&db), Proto::Tcp, 5432),
        Verdict::Drop
    );
    assert_eq!(
        policy.verdict(e(&api), e(&db), Proto::Tcp, 5432),
        Verdict::Allow,
        "approved at the other end"
    );
    policy
        .profiles
        .get_mut(&fe)
        .unwrap()
        .set_mode(Mode::Monitor, &actor());
    assert_eq!(
        policy.verdict(e(&fe), e(&api), Proto::Tcp, 9999),
        Verdict::Violation
    );
    assert_eq!(
        policy.verdict(e(&ZoneName::host()), e(&db), Proto::Tcp, 1),
        Verdict::Allow,
        "host probes"
    );
}
