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

    fn listing(&self) -> Value {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.0,
                "nft",
                "-j",
                "list",
                "table",
                "inet",
                "zonewarden",
            ])
            .output()
            .expect("run nft");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("nft prints JSON")
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
    dp.apply(&view.ruleset, &r1).expect("apply empty -> R1");
    assert_holds(&dp, &r1, "after empty -> R1");

    let counts = ns.rule_counts();
    let again = dp.ensure_base(&r1.settings).expect("ensure_base again");
    assert!(RulesetDiff::between(&again.ruleset, &r1).is_empty());
    assert_eq!(
        ns.rule_counts(),
        counts,
        "a second ensure_base adds no rules"
    );
    dp.apply(&again.ruleset, &r1)
        .expect("reconcile with nothing to do");
    assert_eq!(ns.rule_counts(), counts, "a no-op reconcile adds no rules");

    cluster.remove_endpoint("web2");
    cluster.set_mode("shop/db", Mode::Enforce);
    cluster.remove_endpoint("cache1");
    cluster.quarantined.insert("web1".into());
    let r2 = cluster.compile();
    assert_eq!(r2.zones.len(), 2);
    dp.apply(&r1, &r2).expect("apply R1 -> R2");
    assert_holds(&dp, &r2, "after R1 -> R2");
    let counts = ns.rule_counts();
    assert!(
        !counts.contains_key("zout_3") && !counts.contains_key("zin_3"),
        "{counts:?}"
    );

    // A stale `old` makes the first transaction fail (it deletes what is gone); the
    // retry from what the kernel holds succeeds.
    dp.apply(&r1, &r2).expect("apply from a stale old state");
    assert_holds(&dp, &r2, "after the retry");

    // Back to R1 (a zone created again, a mode changed back), and a restart's
    // reconcile (read, diff) finds nothing to do.
    dp.apply(&r2, &r1).expect("apply R2 -> R1");
    assert_holds(&dp, &r1, "after R2 -> R1");
}

#[test]
fn ipv6_members_read_back_and_reconcile_to_nothing() {
    require_root!();
    let ns = Netns::new();
    let dp = ns.dataplane();
    let rs = Cluster::new(true).dual_stack().compile();
    let view = dp.ensure_base(&rs.settings).expect("ensure_base");
    dp.apply(&view.ruleset, &rs)
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
    dp.apply(&view.ruleset, &r1).expect("apply");
    let before = ns.rule_counts();
    let mut r2 = r1.clone();
    r2.settings.allow_host_probes = false;
    dp.apply(&r1, &r2).expect("turn host probes off");
    assert_holds(&dp, &r2, "after turning probes off");
    let after = ns.rule_counts();
    assert_eq!(
        after["output"] + 1,
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
    dp.apply(&view.ruleset, &rs).expect("apply");
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
