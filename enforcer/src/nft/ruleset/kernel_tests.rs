//! Root tests: the rendered transactions against a real kernel, in a fresh network
//! namespace per test (nft runs through `ip netns exec`, never in the machine's own
//! namespace). Skipped with a message when not root; CI (`CI` set) must run as root.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;
use zonewarden_profiles::diff::RulesetDiff;
use zonewarden_profiles::profile::Mode;
use zonewarden_profiles::ruleset::Ruleset;

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

    fn dataplane(&self) -> NftRulesetDataplane {
        let command = ["ip", "netns", "exec", &self.0, "nft"];
        NftRulesetDataplane::with_command(command.map(str::to_owned).to_vec(), OPTS)
    }

    /// The nft data plane with a netlink socket opened inside this namespace.
    fn dataplane_with_netlink(&self) -> NftRulesetDataplane {
        self.dataplane().with_element_socket(self.element_socket())
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
    let view = read_listing(&listing).expect("read");
    assert_eq!(view, read_listing(&fixture).expect("read the fixture"));
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
    let web = cluster
        .policy
        .profiles
        .values_mut()
        .next()
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
    let netlink_only = NftRulesetDataplane::with_command(vec!["false".to_owned()], OPTS)
        .with_element_socket(by_netlink.element_socket());
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
    let restarted = NftRulesetDataplane::with_command(command, OPTS);
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
    let dp = NftRulesetDataplane::with_command(command.clone(), opts);
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
    let node = NftRulesetDataplane::with_command(command, OPTS);
    let seen_by_node = node.ensure_base(&rs.settings).expect("node ensure_base");
    assert!(
        render_base::base_is_complete(&rs.settings, &seen_by_node, &OPTS),
        "the node's options rewrite the sidecar chains"
    );
}
