//! Root tests: the rendered transactions against a real kernel, in a fresh network
//! namespace per test (nft runs through `ip netns exec`, never in the machine's own
//! namespace). Skipped with a message when not root; CI (`CI` set) must run as root.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;
use zonewarden_profiles::diff::RulesetDiff;
use zonewarden_profiles::profile::Mode;
use zonewarden_profiles::ruleset::Ruleset;

use super::read::LinkGroups;
use super::tests::{Cluster, OPTS};
use super::*;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace removed on drop.
struct Netns(String);

impl Netns {
    fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("zwr-{}-{n}", std::process::id());
        let status = Command::new("ip").args(["netns", "add", &name]).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "ip netns add {name} failed"
        );
        Self(name)
    }

    /// The nft data plane of this namespace, with its interface groups (as the
    /// enforcer always has them).
    fn dataplane(&self) -> NftRulesetDataplane {
        let command = ["ip", "netns", "exec", &self.0, "nft"];
        NftRulesetDataplane::with_command(command.map(str::to_owned).to_vec(), OPTS)
            .with_link_socket(self.link_socket())
    }

    /// A route socket of this namespace, for its interface groups.
    fn link_socket(&self) -> crate::hostlink::LinkGroupSocket {
        crate::test_support::run_in_netns(&self.0, || {
            crate::hostlink::LinkGroupSocket::open().expect("open a route socket")
        })
    }

    /// The nft data plane with a netlink socket opened inside this namespace.
    fn dataplane_with_netlink(&self) -> NftRulesetDataplane {
        self.dataplane().with_element_socket(self.element_socket())
    }

    /// A data plane that sends netlink batches into this namespace and whose nft is
    /// `false`: any step that needs an nft process (a read, a base transaction) fails.
    fn netlink_only(&self) -> NftRulesetDataplane {
        NftRulesetDataplane::with_command(vec!["false".to_owned()], OPTS)
            .with_element_socket(self.element_socket())
            .with_link_socket(self.link_socket())
            .with_reads_through_nft()
    }

    /// Runs `nft ARGS` in this namespace, as an operator would by hand.
    fn nft_by_hand(&self, args: &[&str]) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft"])
            .args(args)
            .output()
            .expect("run nft");
        assert!(
            out.status.success(),
            "nft {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A netfilter socket of this namespace.
    fn element_socket(&self) -> crate::nft::netlink::ElementSocket {
        crate::test_support::run_in_netns(&self.0, || {
            crate::nft::netlink::ElementSocket::open().expect("open a netfilter socket")
        })
    }

    /// Both tables (inet and bridge) as one listing, as the data plane reads them.
    fn listing(&self) -> Value {
        let mut items = Vec::new();
        for family in ["inet", "bridge"] {
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.0,
                    "nft",
                    "-j",
                    "-p",
                    "list",
                    "table",
                    family,
                    "zonewarden",
                ])
                .output()
                .expect("run nft");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: Value = serde_json::from_slice(&out.stdout).expect("nft prints JSON");
            items.extend(v["nftables"].as_array().cloned().unwrap_or_default());
        }
        serde_json::json!({ "nftables": items })
    }

    /// The number of rules of each chain.
    fn rule_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for item in self.listing()["nftables"].as_array().into_iter().flatten() {
            if let Some(chain) = item["chain"]["name"].as_str() {
                counts.entry(chain.to_owned()).or_insert(0);
            }
            if let Some(chain) = item["rule"]["chain"].as_str() {
                *counts.entry(chain.to_owned()).or_insert(0) += 1;
            }
        }
        counts
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

macro_rules! require_root {
    () => {
        if !is_root() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the nft kernel tests as root"
            );
            eprintln!("skipped: this test needs root (network namespaces, nft)");
            return;
        }
    };
}

fn assert_holds(dp: &NftRulesetDataplane, expected: &Ruleset, what: &str) {
    let view = dp.read().expect("read the table back");
    let diff = RulesetDiff::between(&view.ruleset, expected);
    assert!(
        diff.is_empty(),
        "{what}: the kernel differs from the ruleset: {diff:#?}"
    );
}

#[test]
fn apply_and_read_back_in_a_real_kernel() {
    require_root!();
    let ns = Netns::new();
    let dp = ns.dataplane();
    let mut cluster = Cluster::new(true);
    let r1 = cluster.compile();
    assert_eq!(r1.zones.len(), 3, "the test needs three zones");

    let view = dp
        .ensure_base(&r1.settings)
        .expect("ensure_base on an empty namespace");
    dp.apply_between(&view.ruleset, &r1)
        .expect("apply empty -> R1");
    assert_holds(&dp, &r1, "after empty -> R1");

    let counts = ns.rule_counts();
    let again = dp.ensure_base(&r1.settings).expect("ensure_base again");
    assert!(RulesetDiff::between(&again.ruleset, &r1).is_empty());
    assert_eq!(
        ns.rule_counts(),
        counts,
        "a second ensure_base adds no rules"
    );
    dp.apply_between(&again.ruleset, &r1)
        .expect("reconcile with nothing to do");
    assert_eq!(ns.rule_counts(), counts, "a no-op reconcile adds no rules");

    cluster.remove_endpoint("web2");
    cluster.set_mode("shop/db", Mode::Enforce);
    cluster.remove_endpoint("cache1");
    cluster.quarantined.insert("web1".into());
    let r2 = cluster.compile();
    assert_eq!(r2.zones.len(), 2);
    dp.apply_between(&r1, &r2).expect("apply R1 -> R2");
    assert_holds(&dp, &r2, "after R1 -> R2");
    let counts = ns.rule_counts();
    assert!(
        !counts.contains_key("zout_3") && !counts.contains_key("zin_3"),
        "{counts:?}"
    );

    // A stale `old` makes the first transaction fail (it deletes what is gone); the
    // retry from what the kernel holds succeeds.
    dp.apply_between(&r1, &r2)
        .expect("apply from a stale old state");
    assert_holds(&dp, &r2, "after the retry");

    // Back to R1 (a zone created again, a mode changed back), and a restart's
    // reconcile (read, diff) finds nothing to do.
    dp.apply_between(&r2, &r1).expect("apply R2 -> R1");
    assert_holds(&dp, &r1, "after R2 -> R1");
}

#[test]
fn ipv6_members_read_back_and_reconcile_to_nothing() {
    require_root!();
    let ns = Netns::new();
    let dp = ns.dataplane();
    let rs = Cluster::new(true).dual_stack().compile();
    let view = dp.ensure_base(&rs.settings).expect("ensure_base");
    dp.apply_between(&view.ruleset, &rs)
        .expect("apply a dual-stack ruleset");
    assert_holds(&dp, &representable(&rs), "dual stack");
    let view = dp.read().expect("read");
    let diff = RulesetDiff::between(&view.ruleset, &rs);
    let json = diff_commands(&diff, &rs, &OPTS);
    assert_eq!(
        json,
        serde_json::json!({"nftables": []}),
        "a restart changes nothing"
    );
}

#[test]
fn host_probe_setting_rewrites_only_the_output_chain() {
    require_root!();
    let ns = Netns::new();
    let dp = ns.dataplane();
    let r1 = Cluster::new(false).compile();
    let view = dp.ensure_base(&r1.settings).expect("ensure_base");
    dp.apply_between(&view.ruleset, &r1).expect("apply");
    let before = ns.rule_counts();
    let mut r2 = r1.clone();
    r2.settings.allow_host_probes = false;
    dp.apply_between(&r1, &r2).expect("turn host probes off");
    assert_holds(&dp, &r2, "after turning probes off");
    let after = ns.rule_counts();
    assert_eq!(
        after["output"] + 2,
        before["output"],
        "{before:?} -> {after:?}"
    );
    assert_eq!(after["forward"], before["forward"]);
    let view = dp.ensure_base(&r2.settings).expect("ensure_base");
    assert!(RulesetDiff::between(&view.ruleset, &r2).is_empty());
}

/// Writes the listing of `two_zones()` for the unit tests' fixture when
/// `ZW_CAPTURE_LISTING` names a file; checks the fixture is still what nft lists.
#[test]
fn the_fixture_listing_is_what_nft_prints() {
    require_root!();
    let ns = Netns::new();
    let dp = ns.dataplane();
    let rs = Cluster::new(false).compile();
    let view = dp.ensure_base(&rs.settings).expect("ensure_base");
    dp.apply_between(&view.ruleset, &rs).expect("apply");
    let listing = ns.listing();
    if let Some(path) = std::env::var_os("ZW_CAPTURE_LISTING") {
        let text = serde_json::to_string_pretty(&listing).expect("JSON");
        std::fs::write(&path, text + "\n").expect("write the fixture");
    }
    let fixture: Value =
        serde_json::from_str(include_str!("testdata/two_zones_listing.json")).expect("JSON");
    let view = read_listing(&listing, &LinkGroups::new()).expect("read");
    assert_eq!(
        view,
        read_listing(&fixture, &LinkGroups::new()).expect("read the fixture")
    );
}

/// An upgrade from a version whose verdict maps held a jump per endpoint address
/// (`egress_v4`, `local_v4`, ...): the start leaves the old base chains in place until
/// the reconcile, which rewrites them in the same transaction that writes the new maps
/// and sets the pods' interface groups (so no moment has chains that dispatch on what
/// is not written yet); the old maps are then removed, and the table reads back as the
/// compiled ruleset.
#[test]
fn a_table_of_the_version_with_a_jump_per_address_is_upgraded_without_a_gap() {
    require_root!();
    let ns = Netns::new();
    let rs = Cluster::new(false).compile();
    let ifnames: Vec<String> = rs
        .local
        .values()
        .filter_map(|l| elements::routed_ifname(l).map(str::to_owned))
        .collect();
    for name in &ifnames {
        let peer = format!("{name}p");
        crate::test_support::ip(&[
            "-n", &ns.0, "link", "add", name, "type", "veth", "peer", "name", &peer,
        ]);
    }
    // As nft lists it, a map's jumps come before the chains they jump to: loaded as
    // the older version wrote it, tables, chains and sets first, then the rules in a
    // transaction of their own (nft marks a set that a rule of its own transaction
    // adds to as dynamic, which the older version's sets are not).
    let listing: Value =
        serde_json::from_str(include_str!("testdata/older_two_zones_listing.json")).expect("JSON");
    let items = listing["nftables"].as_array().cloned().unwrap_or_default();
    let rank = |item: &Value| match item.as_object().and_then(|o| o.keys().next()) {
        Some(k) if k == "table" => 0,
        Some(k) if k == "chain" => 1,
        Some(k) if k == "set" || k == "map" => 2,
        Some(k) if k == "rule" => 3,
        _ => 4,
    };
    let load = |ranks: &[usize]| {
        let mut part: Vec<Value> = items
            .iter()
            .filter(|item| ranks.contains(&rank(item)))
            .cloned()
            .collect();
        part.sort_by_key(rank);
        let file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::fs::write(
            file.path(),
            serde_json::json!({ "nftables": part }).to_string(),
        )
        .expect("write the listing");
        ns.nft_by_hand(&["-j", "-f", file.path().to_str().expect("utf-8 path")]);
    };
    load(&[0, 1, 2]);
    load(&[3]);
    let old_forward = ns.rule_counts()["forward"];

    let dp = ns.dataplane_with_netlink();
    let view = dp.ensure_base(&rs.settings).expect("ensure_base");
    assert_eq!(
        ns.rule_counts()["forward"],
        old_forward,
        "the old base chains stay until the reconcile rewrites them with the rest"
    );
    assert!(
        view.obsolete_sets.contains(&"egress_v4".to_owned()),
        "{:?}",
        view.obsolete_sets
    );
    dp.apply_between(&view.ruleset, &rs).expect("apply");
    dp.remove_objects(&view.foreign_chains, &view.obsolete_sets)
        .expect("remove the old maps");

    let after = dp.read().expect("read back");
    assert!(
        RulesetDiff::between(&after.ruleset, &representable(&rs)).is_empty(),
        "{:?}",
        RulesetDiff::between(&after.ruleset, &representable(&rs))
    );
    assert!(after.obsolete_sets.is_empty(), "{:?}", after.obsolete_sets);
    assert!(render_base::base_is_complete(&rs.settings, &after, &OPTS));
    let groups = ns.link_socket().groups().expect("groups");
    for local in rs.local.values() {
        if let Some(name) = elements::routed_ifname(local) {
            assert_eq!(groups.get(name), Some(&local.zone_id), "{name}");
        }
    }
}

/// Endpoints, approvals and quarantine as netlink batches: the kernel holds exactly
/// what nft would have written (read back through `nft -j list`, comments included),
/// and a refused batch changes nothing.
#[test]
fn element_changes_go_as_netlink_batches() {
    require_root!();
    let ns = Netns::new();
    let dp = ns.dataplane_with_netlink();
    let mut cluster = Cluster::new(true);
    let r1 = cluster.compile();
    let view = dp.ensure_base(&r1.settings).expect("ensure_base");
    dp.apply_between(&view.ruleset, &r1)
        .expect("apply R1 (nft: new zones)");
    assert_holds(&dp, &r1, "R1");

    // One more endpoint in an existing zone, one more approved edge, a quarantine.
    cluster.endpoints.push(super::tests::endpoint(
        "web3",
        "shop/web",
        "node-1",
        &["10.0.0.9/32"],
    ));
    // An edge of a kind both its zones have already (web has tcp peers out, db has
    // tcp peers in): elements only.
    let web = cluster
        .policy
        .profiles
        .get_mut(&zonewarden_profiles::ZoneName::parse("shop/web").expect("a zone"))
        .expect("a profile");
    web.approved.insert(zonewarden_profiles::Edge::new(
        web.zone.clone(),
        zonewarden_profiles::ZoneName::parse("shop/db").expect("a zone"),
        zonewarden_profiles::Proto::Tcp,
        6379,
    ));
    cluster.quarantined.insert("db1".into());
    let r2 = cluster.compile();
    let diff = RulesetDiff::between(&r1, &r2);
    assert!(!diff.changes_structure(), "elements only: {diff:#?}");
    let rules_before = ns.rule_counts();
    dp.apply(&diff, &r2)
        .expect("apply R1 -> R2 as a netlink batch");
    assert_holds(&dp, &r2, "R2");
    assert_eq!(ns.rule_counts(), rules_before, "no rule was written");
    let listing = ns.listing().to_string();
    assert!(
        listing.contains("shop/web pod shop/web3"),
        "the element comment is user data nft shows: {listing}"
    );

    // Back again: deletions of the same elements.
    dp.apply(&RulesetDiff::between(&r2, &r1), &r1)
        .expect("R2 -> R1");
    assert_holds(&dp, &r1, "R1 again");

    // A batch with one bad change (deleting an element that is not there) is refused
    // as a whole: its good change is not applied either.
    let socket = ns.element_socket();
    let good = elements::SetChange {
        verb: elements::Verb::Add,
        set: names::HOST_V4.into(),
        elems: vec![elements::Elem {
            key: vec![elements::Part::Addr("192.0.2.1".parse().unwrap())],
            data: None,
            comment: String::new(),
        }],
    };
    let bad = elements::SetChange {
        verb: elements::Verb::Delete,
        ..good.clone()
    };
    let bad = elements::SetChange {
        elems: vec![elements::Elem {
            key: vec![elements::Part::Addr("192.0.2.2".parse().unwrap())],
            ..bad.elems[0].clone()
        }],
        ..bad
    };
    let err = socket
        .commit(&[good, bad])
        .expect_err("the kernel refuses the batch");
    let text = err.to_string();
    assert!(
        text.contains("delete 1 element(s) of set host_v4") && text.contains("not applied"),
        "{text}"
    );
    assert_holds(&dp, &r1, "after the refused batch");
}

/// A batch of thousands of small changes (one watch update of a large cluster) is
/// answered and applied: every change acknowledged would be more answers than the
/// socket holds, and the batch's outcome would be lost (ENOBUFS). A refused change in
/// the middle of such a batch still refuses it as a whole, and is named.
#[test]
fn a_batch_of_thousands_of_changes_is_answered() {
    require_root!();
    let ns = Netns::new();
    let dp = ns.dataplane_with_netlink();
    let r = Cluster::new(true).compile();
    dp.ensure_base(&r.settings).expect("ensure_base");
    let socket = ns.element_socket();
    let change = |verb, i: u32| elements::SetChange {
        verb,
        set: names::HOST_V4.into(),
        elems: vec![elements::Elem {
            key: vec![elements::Part::Addr(std::net::IpAddr::from(
                (0xc633_0000u32 + i).to_be_bytes(),
            ))],
            data: None,
            comment: String::new(),
        }],
    };
    const N: u32 = 20_000;
    let adds: Vec<_> = (0..N).map(|i| change(elements::Verb::Add, i)).collect();
    assert!(
        socket.commit(&adds).expect("a batch of 20,000 messages"),
        "it fits one datagram"
    );
    let held = socket
        .set_keys(names::HOST_V4)
        .expect("list host_v4")
        .expect("host_v4 exists");
    assert_eq!(held.len(), N as usize, "every element of the batch is held");

    // 20,000 more, one of them a deletion of an element that is not there.
    let mut batch: Vec<_> = (N..2 * N).map(|i| change(elements::Verb::Add, i)).collect();
    batch[10_000] = change(elements::Verb::Delete, 3 * N);
    let err = socket
        .commit(&batch)
        .expect_err("the kernel refuses the batch");
    let text = err.to_string();
    assert!(
        text.contains("delete 1 element(s) of set host_v4") && text.contains("not applied"),
        "{text}"
    );
    let held = socket.set_keys(names::HOST_V4).unwrap().unwrap();
    assert_eq!(
        held.len(),
        N as usize,
        "nothing of the refused batch is held"
    );

    // Every change refused: each is answered, the first is named, nothing is lost.
    let deletes: Vec<_> = (2 * N..3 * N)
        .map(|i| change(elements::Verb::Delete, i))
        .collect();
    let err = socket.commit(&deletes).expect_err("all refused");
    assert!(err.to_string().contains("not applied"), "{err}");
    // The socket still serves the next batch.
    assert!(socket.commit(&adds[..1]).expect("one more batch"));
}

/// `listing` without what differs between two kernels holding the same table: object
/// handles and nft's metainfo.
fn without_handles(listing: &Value) -> Value {
    match listing {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| k.as_str() != "handle" && k.as_str() != "metainfo")
                .map(|(k, v)| (k.clone(), without_handles(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|i| i.get("metainfo").is_none())
                .map(without_handles)
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Zones created, switched and removed as netlink batches (no nft process: the data
/// plane's nft is `false`): the table lists exactly as the one nft wrote in another
/// namespace from the same rulesets, rule for rule, comments and set types included.
#[test]
fn zone_structure_goes_as_netlink_and_lists_as_nft_writes_it() {
    require_root!();
    let (by_netlink, by_nft) = (Netns::new(), Netns::new());
    let mut cluster = Cluster::new(true).dual_stack();
    let all = cluster.endpoints.clone();
    cluster.endpoints.retain(|e| e.zone.as_str() == "shop/web");
    let r0 = cluster.compile();
    for ns in [&by_netlink, &by_nft] {
        let dp = ns.dataplane();
        let view = dp.ensure_base(&r0.settings).expect("ensure_base");
        dp.apply_between(&view.ruleset, &r0).expect("apply R0");
    }
    let netlink_only = by_netlink.netlink_only();
    let nft = by_nft.dataplane();
    let mut old = r0;
    let mut step = |cluster: &Cluster, what: &str| {
        let new = cluster.compile();
        let diff = RulesetDiff::between(&old, &new);
        assert!(diff.changes_structure(), "{what}: the step changes zones");
        netlink_only
            .apply(&diff, &new)
            .unwrap_or_else(|e| panic!("{what} as a netlink batch: {e}"));
        nft.apply(&diff, &new)
            .unwrap_or_else(|e| panic!("{what} through nft: {e}"));
        assert_eq!(
            without_handles(&by_netlink.listing()),
            without_handles(&by_nft.listing()),
            "{what}: the netlink table lists as the nft one"
        );
        assert_holds(&nft, &new, what);
        let read_back = by_netlink.dataplane();
        assert_holds(&read_back, &new, what);
        old = new;
    };
    // New zones in learn and monitor mode, dual stack, with world edges.
    cluster.endpoints = all;
    step(&cluster, "two zones created");
    cluster.set_mode("shop/db", Mode::Enforce);
    step(&cluster, "a zone switched to enforce");
    cluster.set_mode("shop/db", Mode::Monitor);
    step(&cluster, "a zone switched to monitor");
    cluster.remove_endpoint("cache1");
    step(&cluster, "a zone removed");
}

/// A restart over an intact table reads it once and writes nothing: the second data
/// plane's nft refuses every transaction (`-f`), so any write would fail the start.
/// A table whose set of protocols with ports lost its elements is completed as before.
#[test]
fn an_intact_table_is_read_once_and_not_written_at_start() {
    require_root!();
    let ns = Netns::new();
    let rs = Cluster::new(false).compile();
    let first = ns.dataplane();
    let view = first.ensure_base(&rs.settings).expect("ensure_base");
    first.apply_between(&view.ruleset, &rs).expect("apply");
    let read_only = format!(
        "for a in \"$@\"; do [ \"$a\" = -f ] && exit 1; done; exec ip netns exec {} nft \"$@\"",
        ns.0
    );
    let command = ["sh", "-c", &read_only, "nft"].map(str::to_owned).to_vec();
    let restarted =
        NftRulesetDataplane::with_command(command, OPTS).with_link_socket(ns.link_socket());
    let view = restarted
        .ensure_base(&rs.settings)
        .expect("an intact table needs no transaction");
    assert!(RulesetDiff::between(&view.ruleset, &rs).is_empty());

    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "nft",
            "flush",
            "set",
            "inet",
            "zonewarden",
            "port_protos",
        ])
        .output()
        .expect("nft flush set");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        restarted.ensure_base(&rs.settings).is_err(),
        "an emptied base set needs a transaction"
    );
    let view = ns.dataplane().ensure_base(&rs.settings).expect("completed");
    assert!(view.port_protos_complete, "{view:?}");
}

/// A node of `zones` zones in learn mode, `per_zone` local endpoints each (so the
/// `local_zone_v4` holds one element per address), and an edge from each zone to the next.
fn scale_cluster(
    zones: u32,
    per_zone: u32,
) -> (Cluster, BTreeMap<zonewarden_profiles::ZoneName, u32>) {
    use zonewarden_profiles::{Edge, Proto, ZoneName};
    let mut cluster = Cluster::new(false);
    cluster.policy.profiles.clear();
    cluster.endpoints.clear();
    let name = |z: u32| ZoneName::parse(&format!("scale/z{z:04}")).expect("a zone name");
    let mut ids = BTreeMap::new();
    for z in 0..zones {
        let mut profile = zonewarden_profiles::profile::Profile::new(name(z));
        profile.mode = Mode::Learn;
        profile
            .approved
            .insert(Edge::new(name(z), name((z + 1) % zones), Proto::Tcp, 8000));
        cluster.policy.profiles.insert(name(z), profile);
        ids.insert(name(z), z + 10);
        for e in 0..per_zone {
            let n = z * per_zone + e;
            let ip = format!("10.{}.{}.{}/32", 100 + n / 65536, (n / 256) % 256, n % 256);
            cluster.endpoints.push(super::tests::endpoint(
                &format!("p{n}"),
                name(z).as_str(),
                "node-1",
                &[&ip],
            ));
        }
    }
    (cluster, ids)
}

/// A mode switch and a zone's creation on a node of a few hundred zones go as one
/// netlink batch each: the data plane's nft is `false`, so any nft process (one that
/// would read the table first) fails the step. Prints how long each batch took next
/// to an element-only batch of the same table (for the record, not asserted).
#[test]
fn a_mode_switch_and_a_new_zone_at_scale_need_no_nft_process() {
    require_root!();
    let ns = Netns::new();
    let (mut cluster, mut ids) = scale_cluster(300, 3);
    let compile = |cluster: &Cluster, ids: &BTreeMap<zonewarden_profiles::ZoneName, u32>| {
        super::tests::compile_with_ids(cluster, ids)
    };
    let r0 = compile(&cluster, &ids);
    assert_eq!(r0.zones.len(), 300, "the node has 300 zones");
    let nft = ns.dataplane();
    let view = nft.ensure_base(&r0.settings).expect("ensure_base");
    nft.apply_between(&view.ruleset, &r0)
        .expect("create 300 zones through nft");
    let netlink_only = ns.netlink_only();
    let mut old = r0;
    let mut timed =
        |cluster: &Cluster, ids: &BTreeMap<zonewarden_profiles::ZoneName, u32>, what: &str| {
            let new = compile(cluster, ids);
            let diff = RulesetDiff::between(&old, &new);
            let started = std::time::Instant::now();
            netlink_only
                .apply(&diff, &new)
                .unwrap_or_else(|e| panic!("{what} without an nft process: {e}"));
            eprintln!("{what}: {:?}", started.elapsed());
            assert_holds(&nft, &new, what);
            old = new;
        };
    cluster.set_mode("scale/z0042", Mode::Enforce);
    timed(&cluster, &ids, "a zone switched to enforce");
    cluster.set_mode("scale/z0042", Mode::Monitor);
    timed(&cluster, &ids, "a zone switched to monitor");
    let created = zonewarden_profiles::ZoneName::parse("scale/new").expect("a zone name");
    let mut profile = zonewarden_profiles::profile::Profile::new(created.clone());
    profile.mode = Mode::Enforce;
    cluster.policy.profiles.insert(created.clone(), profile);
    ids.insert(created, 5000);
    cluster.endpoints.push(super::tests::endpoint(
        "new1",
        "scale/new",
        "node-1",
        &["10.250.0.1/32"],
    ));
    timed(&cluster, &ids, "a zone created with its first endpoint");
    cluster.endpoints.push(super::tests::endpoint(
        "new2",
        "scale/new",
        "node-1",
        &["10.250.0.2/32"],
    ));
    timed(&cluster, &ids, "an endpoint added (elements only)");
    cluster.policy.settings.allow_host_probes = !cluster.policy.settings.allow_host_probes;
    let new = compile(&cluster, &ids);
    let err = netlink_only
        .apply(&RulesetDiff::between(&old, &new), &new)
        .expect_err("a changed node setting rewrites base chains through nft");
    assert!(
        matches!(err, crate::nft::NftError::Failed { .. }),
        "nft (here `false`) was needed and failed: {err}"
    );
}

/// The handle of the first rule of `chain` in the namespace's table.
fn first_rule_handle(ns: &Netns, chain: &str) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0, "nft", "-j", "-a", "list", "chain"])
        .args(["inet", "zonewarden", chain])
        .output()
        .expect("run nft");
    let listing: Value = serde_json::from_slice(&out.stdout).expect("nft prints JSON");
    listing["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|item| item["rule"]["handle"].as_u64())
        .unwrap_or_else(|| panic!("{chain} has a rule: {listing}"))
}

/// Deletes the first rule of `chain` by hand (`nft delete rule ... handle N`).
fn delete_first_rule(ns: &Netns, chain: &str) {
    let handle = first_rule_handle(ns, chain).to_string();
    ns.nft_by_hand(&[
        "delete",
        "rule",
        "inet",
        "zonewarden",
        chain,
        "handle",
        &handle,
    ]);
}

/// A sealed table is confirmed by a restarted data plane that cannot run nft at all
/// (so nothing reads the table), and only for the ruleset it was sealed with. A rule
/// deleted by hand breaks the seal; the full read finds the damage and the diff
/// repairs it.
#[test]
fn a_sealed_table_is_confirmed_without_a_read_until_anyone_changes_it() {
    require_root!();
    let ns = Netns::new();
    let rs = Cluster::new(true).compile();
    let dp = ns.dataplane_with_netlink();
    let view = dp.ensure_base(&rs.settings).expect("ensure_base");
    dp.apply_between(&view.ruleset, &rs).expect("apply");
    let no_nft = || ns.netlink_only();
    assert!(
        !no_nft().confirms(&rs),
        "an unsealed table is not confirmed"
    );
    assert!(dp.seal(&rs).expect("seal"), "the table is sealed");
    assert!(
        no_nft().confirms(&rs),
        "a sealed, untouched table is confirmed"
    );
    let mut other = Cluster::new(true);
    other.set_mode("shop/db", Mode::Enforce);
    assert!(
        !no_nft().confirms(&other.compile()),
        "the seal confirms only the ruleset it was made with"
    );
    let view = dp.read().expect("read");
    assert!(
        view.obsolete_sets.is_empty(),
        "the seal's set is the enforcer's: {:?}",
        view.obsolete_sets
    );
    assert!(RulesetDiff::between(&view.ruleset, &rs).is_empty());

    // A rule deleted by hand while the enforcer is down.
    let rules = ns.rule_counts();
    delete_first_rule(&ns, "zin_2");
    assert!(
        !no_nft().confirms(&rs),
        "a table changed since its seal is not confirmed"
    );
    let view = dp.ensure_base(&rs.settings).expect("read the table");
    let diff = RulesetDiff::between(&view.ruleset, &rs);
    assert!(!diff.is_empty(), "the read finds the deleted rule");
    dp.apply(&diff, &rs).expect("repair");
    assert_eq!(ns.rule_counts(), rules, "the deleted rule is back");
    assert!(dp.seal(&rs).expect("seal again"));
    assert!(no_nft().confirms(&rs));
}

/// A read begun early (while a restarting enforcer loads its state) is taken only
/// while the namespace's nftables generation is the one from before it began: a
/// change by anyone after it is read again, and a sealed table is not read at all.
#[test]
fn an_early_read_is_taken_only_while_nothing_changed_since() {
    require_root!();
    let ns = Netns::new();
    let rs = Cluster::new(true).compile();
    let dp = ns.dataplane_with_netlink();
    let view = dp.ensure_base(&rs.settings).expect("ensure_base");
    dp.apply_between(&view.ruleset, &rs).expect("apply");

    // Nothing changed since the early read began: it is what a read now gives.
    let restarted = ns.dataplane_with_netlink();
    restarted.prefetch();
    let early = restarted
        .take_prefetched()
        .expect("the early read is taken");
    assert_eq!(early, ns.dataplane_with_netlink().read().expect("read now"));
    assert!(RulesetDiff::between(&early.ruleset, &rs).is_empty());
    assert!(
        restarted.take_prefetched().is_none(),
        "an early read is taken once"
    );

    // A rule deleted by hand after the early read ended: the read after it reads
    // again (the deletion waits for the early read, so that it is not in what that
    // read saw).
    let restarted = ns.dataplane_with_netlink();
    restarted.prefetch();
    while !restarted.prefetch_finished() {
        std::thread::yield_now();
    }
    delete_first_rule(&ns, "zin_2");
    let view = restarted.read().expect("read");
    assert!(
        !RulesetDiff::between(&view.ruleset, &rs).is_empty(),
        "the read after the change sees the deleted rule"
    );
    assert!(restarted.take_prefetched().is_none());

    // A sealed table is not read early.
    let view = dp.ensure_base(&rs.settings).expect("read");
    dp.apply(&RulesetDiff::between(&view.ruleset, &rs), &rs)
        .expect("repair");
    assert!(dp.seal(&rs).expect("seal"));
    let restarted = ns.dataplane_with_netlink();
    restarted.prefetch();
    assert!(
        restarted.take_prefetched().is_none(),
        "a sealed table is not read early"
    );
    assert!(restarted.confirms(&rs), "the seal confirms it");
}

/// An enforcer restarting over a table it sealed is ready without reading or
/// writing it (its nft cannot run); after a rule was deleted by hand, the same start
/// with nft reads the table and repairs it.
#[test]
fn a_registry_restart_over_a_sealed_table_reads_nothing() {
    require_root!();
    use crate::registry::EndpointRegistry;
    use crate::store::{LocalStore, Store};
    let ns = Netns::new();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Arc::new(LocalStore::open(dir.path()).expect("a store"));
    let open = |dp: NftRulesetDataplane| {
        let stored = store.load().expect("load");
        EndpointRegistry::open(
            "node-1".into(),
            store.clone(),
            Arc::new(dp),
            zonewarden_profiles::policy::NodeSettings::default(),
            stored,
        )
        .expect("open")
        .with_connection_flusher(|_| Ok(0))
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let first = open(ns.dataplane_with_netlink());
        first.sync_kernel().await.expect("first start");
        for (id, zone, ip) in [
            ("a1", "shop/a", "10.0.0.2/32"),
            ("b1", "shop/b", "10.0.0.3/32"),
        ] {
            first
                .add(
                    crate::test_support::add_request(id, zone, &[ip]),
                    crate::test_support::note(),
                )
                .await
                .expect("add");
        }
        let changes = first.seal_when_quiet(u64::MAX).await;
        assert_eq!(
            first.seal_when_quiet(changes).await,
            changes,
            "sealing does not count as a change of the kernel"
        );
        let rules = ns.rule_counts();
        drop(first);

        let restarted = open(ns.netlink_only());
        assert_eq!(
            restarted
                .sync_kernel()
                .await
                .expect("a sealed table needs no nft"),
            0,
            "nothing to change"
        );
        drop(restarted);

        let zone_chain = rules
            .keys()
            .find(|c| c.starts_with("zout_"))
            .expect("a zone chain")
            .clone();
        ns.nft_by_hand(&["flush", "chain", "inet", "zonewarden", &zone_chain]);
        assert!(
            open(ns.netlink_only()).sync_kernel().await.is_err(),
            "a table changed by hand is read, which needs nft"
        );
        let repaired = open(ns.dataplane_with_netlink());
        repaired.sync_kernel().await.expect("repair");
        assert_eq!(ns.rule_counts(), rules, "the flushed chain is rewritten");
        drop(repaired);
        // A start that had to read the table seals it before it is ready: the next
        // one, however soon, needs no nft.
        open(ns.netlink_only())
            .sync_kernel()
            .await
            .expect("the repaired table was sealed at once");
    });
}

/// The sidecar's base chains go into a real kernel (input and output hooks, the store
/// member rule, the unconditional drop), read back as complete, and a node table in the
/// same namespace would have them rewritten: the comments are the chains' signature.
#[test]
fn sidecar_base_applies_and_reads_back_intact() {
    require_root!();
    let ns = Netns::new();
    let command = ["ip", "netns", "exec", &ns.0, "nft"]
        .map(str::to_owned)
        .to_vec();
    let opts = super::tests::sidecar_opts();
    let dp =
        NftRulesetDataplane::with_command(command.clone(), opts).with_link_socket(ns.link_socket());
    let mut rs = Cluster::new(false).compile();
    rs.settings.allow_host_probes = false;
    let view = dp.ensure_base(&rs.settings).expect("ensure_base (sidecar)");
    dp.apply_between(&view.ruleset, &rs).expect("apply");
    let again = dp.ensure_base(&rs.settings).expect("read back");
    assert!(
        render_base::base_is_complete(&rs.settings, &again, &opts),
        "{:?}",
        again.base_chains
    );
    assert!(RulesetDiff::between(&again.ruleset, &rs).is_empty());
    let counts = ns.rule_counts();
    let rules = |chain: &str| render_base::base_chain_rules(chain, &rs.settings, &opts).len();
    assert_eq!(counts.get("input"), Some(&rules("input")), "{counts:?}");
    assert_eq!(counts.get("output"), Some(&rules("output")), "{counts:?}");
    let node = NftRulesetDataplane::with_command(command, OPTS).with_link_socket(ns.link_socket());
    let seen_by_node = node.ensure_base(&rs.settings).expect("node ensure_base");
    assert!(
        render_base::base_is_complete(&rs.settings, &seen_by_node, &OPTS),
        "the node's options rewrite the sidecar chains"
    );
}

/// Status probes the kernel on every call: with a netlink socket that is one request,
/// never an nft process (here nft is `false`, which fails whenever it runs).
#[test]
fn the_health_probe_asks_the_kernel_without_an_nft_process() {
    require_root!();
    let ns = Netns::new();
    ns.netlink_only()
        .probe()
        .expect("the probe answers through the socket");
    let without_socket = NftRulesetDataplane::with_command(vec!["false".to_owned()], OPTS);
    assert!(
        without_socket.probe().is_err(),
        "without a socket the probe runs nft (here: false, which fails)"
    );
}

/// One element is looked up through netlink, whatever the set's size: present,
/// absent, in a concatenated set, in a map, in a set or a table that does not exist.
#[test]
fn one_element_is_looked_up_without_listing_the_table() {
    use crate::nft::netlink::key_bytes;
    use elements::Part;
    require_root!();
    let ns = Netns::new();
    let socket = ns.element_socket();
    let addr = |text: &str| Part::Addr(text.parse().unwrap());
    let service = |text: &str, port| key_bytes(&[addr(text), Part::Proto(6), Part::Port(port)]);
    assert!(
        !socket
            .has_key("m", &key_bytes(&[addr("10.0.0.1")]))
            .unwrap(),
        "no table: no element"
    );
    ns.nft_by_hand(&["add table inet zonewarden"]);
    ns.nft_by_hand(&["add map inet zonewarden m { type ipv4_addr : mark; }"]);
    ns.nft_by_hand(&["add set inet zonewarden s { type ipv4_addr . inet_proto . inet_service; }"]);
    let many: Vec<String> = (1..=250).map(|i| format!("10.0.1.{i} : {i}")).collect();
    ns.nft_by_hand(&[&format!(
        "add element inet zonewarden m {{ 10.0.0.1 : 7, {} }}",
        many.join(", ")
    )]);
    ns.nft_by_hand(&["add element inet zonewarden s { 10.0.0.2 . tcp . 80 }"]);

    assert!(
        socket
            .has_key("m", &key_bytes(&[addr("10.0.0.1")]))
            .unwrap()
    );
    assert!(
        socket
            .has_key("m", &key_bytes(&[addr("10.0.1.250")]))
            .unwrap()
    );
    assert!(
        !socket
            .has_key("m", &key_bytes(&[addr("10.0.0.2")]))
            .unwrap()
    );
    assert!(socket.has_key("s", &service("10.0.0.2", 80)).unwrap());
    assert!(
        !socket.has_key("s", &service("10.0.0.2", 81)).unwrap(),
        "another port of the same address is another element"
    );
    assert!(
        !socket
            .has_key("absent", &key_bytes(&[addr("10.0.0.1")]))
            .unwrap(),
        "no such set: no element"
    );
}

/// The table read through netlink is the table nft lists: every set's elements
/// (addresses of both families, concatenations, interval sets of CIDR zones, verdict
/// and mark maps, comments, a bridged port's MAC and interface) and the same view of
/// zones and base chains. A set of a type the netlink reader does not know makes the
/// data plane read through nft, with the same result.
#[test]
fn the_table_reads_the_same_through_netlink_as_through_nft() {
    require_root!();
    let ns = Netns::new();
    let mut cluster = Cluster::new(true).dual_stack();
    let mut bridged = super::tests::endpoint("port1", "shop/cache", "node-1", &["10.0.0.9/32"]);
    bridged.bridge = Some("cni0".into());
    bridged.mac = Some("0a:58:0a:00:00:09".into());
    bridged.attach_mode = zonewarden_profiles::endpoint::AttachMode::Chained;
    cluster.endpoints.push(bridged);
    cluster.quarantined.insert("web1".into());
    let rs = cluster.compile();
    let dp = ns.dataplane_with_netlink();
    let view = dp.ensure_base(&rs.settings).expect("ensure_base");
    dp.apply_between(&view.ruleset, &rs).expect("apply");

    let socket = ns.element_socket();
    let by_netlink = crate::nft::table_read::read_tables(&socket)
        .expect("read through netlink")
        .expect("the tables exist");
    let listing = ns.listing();
    let by_nft = listing::parse_listing(listing.to_string().as_bytes()).expect("parse");
    let elements = |parsed: &listing::ParsedListing| -> BTreeMap<String, Vec<String>> {
        parsed
            .elements
            .iter()
            // nft lists an empty set without elements; the dump gives none.
            .filter(|(name, elems)| !name.starts_with(names::SEEN_PREFIX) && !elems.is_empty())
            .map(|(name, elems)| {
                let mut printed: Vec<String> =
                    elems.iter().map(|e| e.to_value().to_string()).collect();
                printed.sort();
                (name.clone(), printed)
            })
            .collect()
    };
    let (netlink_sets, nft_sets) = (elements(&by_netlink), elements(&by_nft));
    let filled = [
        names::ZONE_OF_V4,
        names::ZONE_OF_V6,
        names::EGRESS_V4,
        names::EGRESS_ZONES,
        names::INGRESS_ZONES,
        names::LOCAL_V6,
        names::CIDR_V4,
        names::QUARANTINE_V4,
        names::POD_SRC_V4,
        names::PORT_SRC_V4,
        names::PORT_MAC,
    ];
    for set in filled {
        assert!(
            nft_sets.get(set).is_some_and(|e| !e.is_empty()),
            "the test table fills {set}: {nft_sets:#?}"
        );
    }
    for kind in [
        "cidr_out_v4_",
        "cidr_proto_out_v4_",
        "world_out_",
        "world_proto_out_",
    ] {
        assert!(
            nft_sets
                .iter()
                .any(|(name, e)| name.starts_with(kind) && !e.is_empty()),
            "a zone fills a {kind} set: {nft_sets:#?}"
        );
    }
    assert_eq!(netlink_sets, nft_sets, "every set holds the same elements");
    let from_nft =
        read::read_parsed(&by_nft, &OPTS, &LinkGroups::new()).expect("read the nft listing");
    let from_netlink = read::read_parsed(&by_netlink, &OPTS, &LinkGroups::new())
        .expect("read the netlink listing");
    assert_eq!(from_netlink, from_nft, "the same view of the table");
    assert!(RulesetDiff::between(&from_netlink.ruleset, &representable(&rs)).is_empty());
    assert_eq!(dp.read().expect("read"), from_nft);

    // A set of a type the netlink reader does not decode (interface indexes).
    ns.nft_by_hand(&[
        "add",
        "set",
        "inet",
        "zonewarden",
        "odd",
        "{ type iface_index; }",
    ]);
    assert!(crate::nft::table_read::read_tables(&socket).is_err());
    let view = dp.read().expect("read through nft");
    assert_eq!(view.obsolete_sets, vec!["odd".to_owned()]);
    assert_eq!(view.ruleset, from_nft.ruleset);

    // No table: nothing to read, not an error.
    ns.nft_by_hand(&["delete", "table", "inet", "zonewarden"]);
    ns.nft_by_hand(&["delete", "table", "bridge", "zonewarden"]);
    assert_eq!(
        crate::nft::table_read::read_tables(&socket).expect("read"),
        None
    );
}

/// Once sealed, every change of the enforcer keeps the table sealed: a netlink batch
/// carries the seal of the table it leaves, and a change through nft is sealed right
/// after it if nothing else was committed. A data plane that cannot read (its nft is
/// `false`) confirms the table after each one. Anyone else's commit breaks the seal,
/// and no later change restores it over what it did not see (a hand-added element
/// stays unconfirmed until the table is read).
#[test]
fn every_change_of_the_enforcer_keeps_the_table_sealed() {
    require_root!();
    let ns = Netns::new();
    let mut cluster = Cluster::new(false);
    let mut old = cluster.compile();
    let dp = ns.dataplane_with_netlink();
    let view = dp.ensure_base(&old.settings).expect("ensure_base");
    dp.apply_between(&view.ruleset, &old).expect("apply");
    assert!(dp.seal(&old).expect("seal"), "sealed");
    let confirmed = |rs: &Ruleset| ns.netlink_only().confirms(rs);
    assert!(confirmed(&old));
    let flipped = Some(!old.settings.allow_host_probes);
    let mut step = |cluster: &Cluster, probes: Option<bool>| {
        let mut new = cluster.compile();
        if let Some(probes) = probes {
            new.settings.allow_host_probes = probes;
        }
        dp.apply_between(&old, &new).expect("apply");
        old = new.clone();
        new
    };
    cluster.add_endpoint("web3", "shop/web", "10.0.0.7");
    let new = step(&cluster, None);
    assert!(confirmed(&new), "an endpoint added");
    cluster.set_mode("shop/db", Mode::Enforce);
    let new = step(&cluster, None);
    assert!(confirmed(&new), "a mode switched");
    let with_cache = Cluster::new(true);
    let new = step(&with_cache, None);
    assert!(confirmed(&new), "a zone created");
    cluster.quarantined.insert("web1".into());
    let new = step(&cluster, None);
    assert!(confirmed(&new), "a zone removed, an endpoint quarantined");

    // Through nft (a node setting rewrites base chains).
    let new = step(&cluster, flipped);
    assert!(confirmed(&new), "a change through nft");
    cluster.remove_endpoint("web2");
    let new = step(&cluster, flipped);
    assert!(confirmed(&new), "a batch after a change through nft");

    // Someone else's element: no later change seals over it, neither a batch nor a
    // change through nft; once read and repaired, the table is sealed again.
    for (n, probes, through) in [(1, flipped, "a batch"), (2, None, "a change through nft")] {
        let element = format!("{{ 10.9.9.{n} }}");
        ns.nft_by_hand(&["add", "element", "inet", "zonewarden", "host_v4", &element]);
        cluster.add_endpoint(&format!("db{n}0"), "shop/db", &format!("10.0.0.{}", 20 + n));
        let new = step(&cluster, probes);
        assert!(!confirmed(&new), "{through} after a hand-added element");
        cluster.remove_endpoint(&format!("db{n}0"));
        let new = step(&cluster, probes);
        assert!(!confirmed(&new), "another change after it");
        let view = dp.ensure_base(&new.settings).expect("read");
        let hand: std::net::IpAddr = format!("10.9.9.{n}").parse().expect("an address");
        assert!(view.ruleset.host.contains(&hand));
        dp.apply(&RulesetDiff::between(&view.ruleset, &new), &new)
            .expect("repair");
        assert!(
            dp.seal(&new).expect("seal"),
            "sealed once read and repaired"
        );
        assert!(confirmed(&new));
    }

    // The seal deleted by hand: the batch that would have replaced it is refused, so
    // the change goes again without it. It lands (it is never lost for a missing
    // seal), the table is unconfirmed until sealed again, and sealing works again.
    ns.nft_by_hand(&["flush", "set", "inet", "zonewarden", seal::DIGEST_SET]);
    cluster.add_endpoint("db30", "shop/db", "10.0.0.30");
    let new = step(&cluster, None);
    assert!(
        !confirmed(&new),
        "a batch after the seal was deleted by hand"
    );
    let held = dp.read().expect("read");
    let db30: std::net::IpAddr = "10.0.0.30".parse().expect("an address");
    assert!(
        held.ruleset.members.contains_key(&db30),
        "the change landed"
    );
    assert!(
        RulesetDiff::between(&held.ruleset, &new).is_empty(),
        "the table holds the whole change"
    );
    cluster.remove_endpoint("db30");
    let new = step(&cluster, None);
    assert!(
        !confirmed(&new),
        "another batch, still with no seal to replace"
    );
    assert!(dp.seal(&new).expect("seal"), "sealed again once quiet");
    assert!(confirmed(&new));
    cluster.add_endpoint("db31", "shop/db", "10.0.0.31");
    let new = step(&cluster, None);
    assert!(confirmed(&new), "every batch carries the seal again");
}

/// The names of the peer and world sets of the zones in the table.
fn zone_set_names(ns: &Netns) -> std::collections::BTreeSet<String> {
    ns.listing()["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["set"]["name"].as_str())
        .filter(|name| {
            ["allow_", "proto_", "world_"]
                .iter()
                .any(|p| name.starts_with(p))
        })
        .map(str::to_owned)
        .collect()
}

/// The peer and world sets `rs` gives its zones.
fn wanted_zone_sets(rs: &Ruleset) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for zone in rs.zones.values() {
        for dir in Dir::BOTH {
            for kind in render_zone::sets_of(zone, dir).filter(|k| !k.is_interval()) {
                names.insert(names::zone_set(kind, dir, zone.id));
            }
        }
    }
    names
}

/// A zone holds only the sets its approved edges need: the first approved edge of a
/// kind adds its sets and rule, the last one takes them away. A table written with
/// every set of every zone (as earlier versions wrote it) reads back as such and is
/// brought down to the sets in use, its chains rewritten.
#[test]
fn a_zone_holds_only_the_sets_of_its_approved_edges() {
    use zonewarden_profiles::ruleset::SetKinds;
    require_root!();
    let ns = Netns::new();
    let dp = ns.dataplane_with_netlink();
    let mut cluster = Cluster::new(true);
    let rs = cluster.compile();
    let mut every = rs.clone();
    for zone in every.zones.values_mut() {
        zone.sets = SetKinds::ALL;
    }
    let view = dp.ensure_base(&rs.settings).expect("ensure_base");
    dp.apply_between(&view.ruleset, &every)
        .expect("apply every set of every zone");
    assert_eq!(
        zone_set_names(&ns).len(),
        3 * 12,
        "three zones, twelve sets each"
    );
    let view = dp.read().expect("read the table back");
    assert!(view.ruleset.zones.values().all(|z| z.sets == SetKinds::ALL));
    let diff = RulesetDiff::between(&view.ruleset, &rs);
    assert_eq!(diff.rewritten.len(), 3, "every zone's chains lose rules");
    dp.apply(&diff, &rs).expect("down to the sets in use");
    assert_holds(&dp, &rs, "the sets in use");
    let in_use = wanted_zone_sets(&rs);
    assert_eq!(zone_set_names(&ns), in_use);
    assert!(
        !in_use.contains("world_out_3") && !in_use.contains("allow_out_v4_3"),
        "shop/cache approves no edge out: {in_use:?}"
    );

    // shop/cache -> world:443/tcp: its first edge out, and of that kind.
    let edge = zonewarden_profiles::Edge::new(
        zonewarden_profiles::ZoneName::parse("shop/cache").expect("a zone"),
        zonewarden_profiles::ZoneName::world(),
        zonewarden_profiles::Proto::Tcp,
        443,
    );
    let cache = zonewarden_profiles::ZoneName::parse("shop/cache").expect("a zone");
    let profile = cluster.policy.profiles.get_mut(&cache).expect("a profile");
    profile.approved.insert(edge.clone());
    let with_edge = cluster.compile();
    dp.apply_between(&rs, &with_edge)
        .expect("the first edge of a kind");
    assert_holds(&dp, &with_edge, "with the edge");
    assert!(zone_set_names(&ns).contains("world_out_3"));
    assert_eq!(zone_set_names(&ns), wanted_zone_sets(&with_edge));

    // And away again: the set goes with its rule.
    let profile = cluster.policy.profiles.get_mut(&cache).expect("a profile");
    profile.approved.remove(&edge);
    let without = cluster.compile();
    let diff = RulesetDiff::between(&with_edge, &without);
    assert_eq!(diff.sets_dropped, [(3, SetKinds::WORLD_OUT)]);
    dp.apply(&diff, &without).expect("the last edge of a kind");
    assert_holds(&dp, &without, "without the edge");
    assert_eq!(zone_set_names(&ns), in_use);
}
