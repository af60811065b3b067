//! Unit tests (no root): snapshots of the rendered transactions, the read-back of a
//! listing captured from nft 1.0.6, and the in-memory data plane. The same scenarios
//! run against a real kernel in [`super::kernel_tests`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde_json::Value;
use zonewarden_profiles::diff::RulesetDiff;
use zonewarden_profiles::edge::{Edge, Proto};
use zonewarden_profiles::policy::{NodeSettings, Policy};
use zonewarden_profiles::profile::{Mode, Profile};
use zonewarden_profiles::ruleset::{CompileInput, Ruleset, compile};
use zonewarden_profiles::{AttachMode, AttachmentKey, Endpoint, ZoneName, ZoneSource};

use super::read::LinkGroups;
use super::*;

pub(super) const OPTS: Options = Options {
    nflog_group: 7,
    seen_timeout_secs: 60,
    sidecar: None,
};

fn zone(name: &str) -> ZoneName {
    ZoneName::parse_any(name).expect("a valid zone name")
}

pub(super) fn endpoint(id: &str, zone_name: &str, node: &str, ips: &[&str]) -> Endpoint {
    Endpoint {
        key: AttachmentKey {
            network: "podnet".into(),
            container_id: id.into(),
            ifname: "eth0".into(),
        },
        zone: zone(zone_name),
        zone_source: ZoneSource::Config,
        netns: format!("/var/run/netns/{id}"),
        host_ifname: Some(format!("zw{id}")),
        ips: ips.iter().map(|ip| ip.parse().expect("a CIDR")).collect(),
        mac: None,
        node: node.into(),
        pod_namespace: Some("shop".into()),
        pod_name: Some(id.into()),
        attach_mode: AttachMode::Routed,
        created_unix_ms: 1_700_000_000_000,
        bridge: None,
    }
}

/// A cluster: web (enforce), db (learn), cache (monitor) and the edges between them.
pub(super) struct Cluster {
    pub policy: Policy,
    pub endpoints: Vec<Endpoint>,
    pub quarantined: BTreeSet<String>,
}

impl Cluster {
    pub fn new(with_cache: bool) -> Self {
        let edge = |src: &str, dst: &str, proto, port| Edge::new(zone(src), zone(dst), proto, port);
        let profile = |name: &str, mode, version, edges: Vec<Edge>| Profile {
            zone: zone(name),
            mode,
            quarantined: false,
            version,
            approved: edges.into_iter().collect(),
            rejected: Default::default(),
            response: Default::default(),
            history: Vec::new(),
        };
        let mut profiles = vec![
            profile(
                "shop/web",
                Mode::Enforce,
                3,
                vec![
                    edge("shop/web", "shop/db", Proto::Tcp, 5432),
                    edge("shop/web", "world", Proto::Tcp, 443),
                    edge("shop/web", "world", Proto::Icmp, 0),
                    edge("host", "shop/web", Proto::Tcp, 8080),
                    edge("world", "shop/web", Proto::Tcp, 80),
                    edge("shop/web", "corp-dns", Proto::Udp, 53),
                    edge("shop/web", "corp-dns", Proto::Icmp, 0),
                ],
            ),
            profile(
                "shop/db",
                Mode::Learn,
                1,
                vec![edge("shop/db", "shop/web", Proto::Icmp, 0)],
            ),
        ];
        let mut endpoints = vec![
            endpoint("web1", "shop/web", "node-1", &["10.0.0.2/32"]),
            endpoint("web2", "shop/web", "node-1", &["10.0.0.3/32"]),
            endpoint("db1", "shop/db", "node-1", &["10.0.0.4/32"]),
            endpoint("db2", "shop/db", "node-2", &["10.0.1.4/32"]),
        ];
        if with_cache {
            profiles.push(profile(
                "shop/cache",
                Mode::Monitor,
                2,
                vec![edge("shop/web", "shop/cache", Proto::Udp, 11211)],
            ));
            endpoints.push(endpoint("cache1", "shop/cache", "node-1", &["10.0.0.5/32"]));
        }
        let policy = Policy {
            profiles: profiles.into_iter().map(|p| (p.zone.clone(), p)).collect(),
            settings: NodeSettings::default(),
            cidr_zones: BTreeMap::from([(
                zone("corp-dns"),
                vec![
                    "10.250.0.0/28".parse().expect("a CIDR"),
                    "10.251.0.9/32".parse().expect("a CIDR"),
                ],
            )]),
        };
        Self {
            policy,
            endpoints,
            quarantined: BTreeSet::new(),
        }
    }

    /// Gives a local and a remote endpoint an IPv6 address too.
    pub fn dual_stack(mut self) -> Self {
        for (id, addr) in [("web1", "fd00::2/128"), ("db2", "fd00::4/128")] {
            let ep = self
                .endpoints
                .iter_mut()
                .find(|e| *e.key.container_id == *id);
            ep.expect("the endpoint")
                .ips
                .push(addr.parse().expect("a CIDR"));
        }
        self
    }

    pub fn compile(&self) -> Ruleset {
        let zone_ids: BTreeMap<ZoneName, u32> =
            [("shop/web", 1), ("shop/db", 2), ("shop/cache", 3)]
                .into_iter()
                .map(|(z, id)| (zone(z), id))
                .collect();
        compile_with_ids(self, &zone_ids)
    }

    pub fn set_mode(&mut self, zone_name: &str, mode: Mode) {
        let profile = self
            .policy
            .profiles
            .get_mut(&zone(zone_name))
            .expect("a profile");
        profile.mode = mode;
        profile.version += 1;
    }

    /// Adds a local endpoint of `zone` on node-1 with one address.
    pub fn add_endpoint(&mut self, id: &str, zone: &str, addr: &str) {
        self.endpoints
            .push(endpoint(id, zone, "node-1", &[&format!("{addr}/32")]));
    }

    pub fn remove_endpoint(&mut self, id: &str) {
        self.endpoints.retain(|e| *e.key.container_id != *id);
    }
}

/// `cluster` compiled on node-1 with the zone ids `zone_ids`.
pub(super) fn compile_with_ids(cluster: &Cluster, zone_ids: &BTreeMap<ZoneName, u32>) -> Ruleset {
    let host: Vec<IpAddr> = vec!["192.168.1.10".parse().expect("an address")];
    compile(&CompileInput {
        policy: &cluster.policy,
        endpoints: &cluster.endpoints,
        node: "node-1",
        zone_ids,
        host_addrs: &host,
        quarantined_endpoints: &cluster.quarantined,
    })
}

fn two_zones() -> Ruleset {
    Cluster::new(false).compile()
}

fn commands(value: &Value) -> &[Value] {
    value["nftables"].as_array().map_or(&[], Vec::as_slice)
}

#[test]
fn base_with_host_probes() {
    let settings = NodeSettings {
        allow_host_probes: true,
    };
    insta::assert_json_snapshot!(base_commands(&settings, &KernelView::default(), &OPTS));
}

#[test]
fn base_without_host_probes() {
    let settings = NodeSettings {
        allow_host_probes: false,
    };
    let json = base_commands(&settings, &KernelView::default(), &OPTS);
    let output: Vec<&Value> = commands(&json)
        .iter()
        .filter(|c| c["add"]["rule"]["chain"] == "output")
        .collect();
    insta::assert_json_snapshot!(output);
}

#[test]
fn base_chains_that_match_are_left_alone() {
    let settings = NodeSettings::default();
    let mut current = KernelView::default();
    for chain in names::ALL_BASE_CHAINS {
        let rules = render_base::base_chain_rules(chain, &settings, &OPTS);
        current.base_chains.insert(
            chain.to_owned(),
            rules.into_iter().map(|r| r.comment).collect(),
        );
    }
    // A stale output chain (probes were off) is the only one rewritten.
    let probes_off = NodeSettings {
        allow_host_probes: false,
    };
    let stale = render_base::base_chain_rules("output", &probes_off, &OPTS);
    current.base_chains.insert(
        "output".into(),
        stale.into_iter().map(|r| r.comment).collect(),
    );
    let json = base_commands(&settings, &current, &OPTS);
    let rewritten: BTreeSet<&str> = commands(&json)
        .iter()
        .filter_map(|c| c["flush"]["chain"]["name"].as_str())
        .collect();
    assert_eq!(
        rewritten,
        BTreeSet::from(["output"]),
        "only the stale chain is rewritten"
    );
    let text = json.to_string();
    assert!(
        !text.contains("\"delete\""),
        "base_commands never deletes: {text}"
    );
}

#[test]
fn creation_from_empty() {
    let new = two_zones();
    let diff = RulesetDiff::between(&Ruleset::default(), &new);
    insta::assert_json_snapshot!(diff_commands(&diff, &new, &OPTS));
}

#[test]
fn one_endpoint_added() {
    let mut cluster = Cluster::new(false);
    let old = cluster.compile();
    cluster
        .endpoints
        .push(endpoint("web3", "shop/web", "node-1", &["10.0.0.6/32"]));
    let new = cluster.compile();
    let json = diff_commands(&RulesetDiff::between(&old, &new), &new, &OPTS);
    assert!(
        !json.to_string().contains("\"flush\""),
        "an endpoint is element changes only: {json}"
    );
    // Its packets reach the zone's chains by its interface's group: no element of the
    // change jumps anywhere (a jump makes the kernel validate the whole table).
    let steps = render_diff::diff_steps(&RulesetDiff::between(&old, &new), &new, &OPTS);
    let jumps: Vec<&elements::SetChange> = steps
        .iter()
        .filter_map(|step| match step {
            render_diff::Step::Elements(change) => Some(change),
            render_diff::Step::Command(_) => None,
        })
        .filter(|change| {
            change
                .elems
                .iter()
                .any(|e| matches!(e.data, Some(elements::Data::Jump(_))))
        })
        .collect();
    assert!(jumps.is_empty(), "a routed endpoint adds a jump: {jumps:?}");
    insta::assert_json_snapshot!(json);
}

#[test]
fn mode_change_rewrites_the_zone_chains() {
    let mut cluster = Cluster::new(false);
    let old = cluster.compile();
    cluster.set_mode("shop/db", Mode::Enforce);
    let new = cluster.compile();
    insta::assert_json_snapshot!(diff_commands(
        &RulesetDiff::between(&old, &new),
        &new,
        &OPTS
    ));
}

#[test]
fn zone_removal_deletes_its_chains_after_the_jumps() {
    let mut cluster = Cluster::new(true);
    let old = cluster.compile();
    cluster.remove_endpoint("cache1");
    let new = cluster.compile();
    let json = diff_commands(&RulesetDiff::between(&old, &new), &new, &OPTS);
    let cmds = commands(&json);
    let position = |pred: &dyn Fn(&Value) -> bool| cmds.iter().position(pred);
    let jump_gone = position(&|c| c["delete"]["element"]["name"] == names::EGRESS_ZONES)
        .expect("the jump of the removed zone's interface group is deleted");
    let chain_gone = position(&|c| c["delete"]["chain"]["name"] == "zout_3")
        .expect("the chain of the removed zone is deleted");
    assert!(
        jump_gone < chain_gone,
        "the chain went before its jumps: {json}"
    );
    insta::assert_json_snapshot!(json);
}

#[test]
fn quarantine_touches_only_the_quarantine_set() {
    let mut cluster = Cluster::new(false);
    let old = cluster.compile();
    cluster.quarantined.insert("web2".into());
    let new = cluster.compile();
    let json = diff_commands(&RulesetDiff::between(&old, &new), &new, &OPTS);
    let touched: Vec<(String, String)> = commands(&json)
        .iter()
        .flat_map(|c| c.as_object().into_iter().flatten())
        .map(|(verb, obj)| {
            (
                verb.clone(),
                obj["element"]["name"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        touched,
        vec![("add".to_owned(), "quarantine_v4".to_owned())],
        "{json}"
    );
}

#[test]
fn no_change_is_an_empty_transaction() {
    let rs = two_zones();
    let json = diff_commands(&RulesetDiff::between(&rs, &rs), &rs, &OPTS);
    assert!(commands(&json).is_empty(), "{json}");
}

#[test]
fn pod_interfaces_go_when_their_last_address_does() {
    let mut cluster = Cluster::new(false);
    cluster.endpoints[0]
        .ips
        .push("10.0.0.9/32".parse().expect("a CIDR"));
    let old = cluster.compile();
    cluster.endpoints[0].ips.pop();
    let one_left = cluster.compile();
    let json = diff_commands(&RulesetDiff::between(&old, &one_left), &one_left, &OPTS);
    assert!(
        !json.to_string().contains("pod_ifaces"),
        "zwweb1 is still used: {json}"
    );
    cluster.remove_endpoint("web1");
    let gone = cluster.compile();
    let json = diff_commands(&RulesetDiff::between(&one_left, &gone), &gone, &OPTS);
    let deleted = commands(&json)
        .iter()
        .find(|c| c["delete"]["element"]["name"] == "pod_ifaces")
        .expect("the interface of the last address is deleted");
    assert_eq!(
        deleted["delete"]["element"]["elem"],
        serde_json::json!(["zwweb1"])
    );
}

/// `nft -j list table inet zonewarden` after applying `two_zones()` with [`OPTS`] on
/// nft 1.0.6 / Linux 6.18 (captured by `kernel_tests`, `ZW_CAPTURE_LISTING=path`).
const LISTING: &str = include_str!("testdata/two_zones_listing.json");

#[test]
fn reads_back_what_nft_listed() {
    let listing: Value = serde_json::from_str(LISTING).expect("the fixture is JSON");
    let view = read_listing(&listing, &LinkGroups::new()).expect("the fixture reads");
    let expected = representable(&two_zones());
    assert_eq!(
        RulesetDiff::between(&view.ruleset, &expected),
        RulesetDiff::default(),
        "the listing reads back as the ruleset that was applied"
    );
    assert_eq!(view.ruleset, expected);
    let base = base_commands(&expected.settings, &view, &OPTS);
    assert!(
        !base.to_string().contains("\"flush\""),
        "the base chains read back as up to date: {base}"
    );
}

/// The enforcer's own path: nft's output parsed as it streams, elements kept lean.
#[test]
fn the_streamed_listing_reads_as_the_whole_one() {
    let listing: Value = serde_json::from_str(LISTING).expect("the fixture is JSON");
    let parsed = listing::parse_listing(LISTING.as_bytes()).expect("the fixture parses");
    assert!(
        parsed
            .elements
            .iter()
            .any(|(name, e)| name == "zone_of_v4" && !e.is_empty()),
        "the fixture has members: {:?}",
        parsed.elements
    );
    let streamed =
        read::read_parsed(&parsed, &OPTS, &LinkGroups::new()).expect("the fixture reads");
    assert_eq!(
        streamed,
        read_listing_for(&listing, &OPTS, &LinkGroups::new()).expect("reads")
    );
    assert_eq!(streamed.ruleset, representable(&two_zones()));
}

#[test]
fn zones_logging_elsewhere_read_as_stale() {
    let listing: Value = serde_json::from_str(LISTING).expect("the fixture is JSON");
    let other = Options {
        nflog_group: OPTS.nflog_group + 1,
        ..OPTS
    };
    let view = read_listing_for(&listing, &other, &LinkGroups::new()).expect("the fixture reads");
    let expected = representable(&two_zones());
    let diff = RulesetDiff::between(&view.ruleset, &expected);
    let rewritten: Vec<u32> = diff.rewritten.iter().map(|z| z.id).collect();
    assert_eq!(
        rewritten,
        vec![1, 2],
        "both zones are rewritten for the new group"
    );
    let tampered = LISTING.replace(
        "shop/db: approved icmp and other protocols out",
        "someone else's rule",
    );
    let listing: Value = serde_json::from_str(&tampered).expect("still JSON");
    let view = read_listing(&listing, &LinkGroups::new()).expect("the tampered fixture reads");
    let diff = RulesetDiff::between(&view.ruleset, &expected);
    let rewritten: Vec<u32> = diff.rewritten.iter().map(|z| z.id).collect();
    assert_eq!(
        rewritten,
        vec![2],
        "the zone whose chain was changed is rewritten"
    );
}

#[test]
fn a_missing_or_empty_table_reads_as_empty() {
    let view =
        read_listing(&serde_json::json!({"nftables": []}), &LinkGroups::new()).expect("reads");
    assert_eq!(view, KernelView::default());
    let err = read_listing(&serde_json::json!({"tables": []}), &LinkGroups::new())
        .expect_err("not a listing");
    assert!(err.contains("nftables"), "{err}");
}

#[test]
fn names_the_element_it_cannot_read() {
    let listing = serde_json::json!({"nftables": [{"map": {"name": names::EGRESS_V4,
        "elem": [["10.0.0.1", {"goto": {"target": "elsewhere"}}]]}}]});
    let err = read_listing(&listing, &LinkGroups::new()).expect_err("a verdict we never write");
    assert!(
        err.contains(names::EGRESS_V4) && err.contains("elsewhere"),
        "{err}"
    );
}

#[test]
fn comments_are_cut_at_a_char_boundary() {
    let long = "é".repeat(100);
    let cut = cut_comment(&long);
    assert!(cut.len() <= MAX_COMMENT_BYTES, "{} bytes", cut.len());
    assert_eq!(cut, "é".repeat(63));
}

proptest::proptest! {
    /// Any text (pod names, namespaces, zone names the plugin passes on) becomes a
    /// comment nft accepts: a prefix of the text, at most 127 bytes, cut between
    /// characters, the whole text when it fits.
    #[test]
    fn any_text_is_cut_into_a_comment_nft_keeps(text in ".{0,200}") {
        let cut = cut_comment(&text);
        proptest::prop_assert!(cut.len() <= MAX_COMMENT_BYTES);
        proptest::prop_assert!(text.starts_with(&cut));
        if text.len() <= MAX_COMMENT_BYTES {
            proptest::prop_assert_eq!(&cut, &text);
        } else {
            let next = text[cut.len()..].chars().next().map_or(0, char::len_utf8);
            proptest::prop_assert!(cut.len() + next > MAX_COMMENT_BYTES, "cut too early");
        }
    }
}

#[test]
fn ipv6_gets_the_same_sets_as_ipv4() {
    let dual = Cluster::new(false).dual_stack().compile();
    let v4 = two_zones();
    let diff = RulesetDiff::between(&v4, &dual);
    let json = diff_commands(&diff, &dual, &OPTS);
    let touched: BTreeSet<&str> = commands(&json)
        .iter()
        .filter_map(|c| c["add"]["element"]["name"].as_str())
        .collect();
    // web1 (zone 1) and db2 (zone 2) gain an IPv6 address: membership, the local
    // endpoints' zones (their packets reach the zone chains by their interface's group,
    // as over IPv4), anti-spoofing, and the approved peers of the other zone.
    for set in [
        "zone_of_v6",
        "local_zone_v6",
        "pod_src_v6",
        "allow_in_v6_2",
        "allow_out_v6_1",
    ] {
        assert!(touched.contains(set), "{set} gets elements: {touched:?}");
    }
    assert!(
        !touched
            .iter()
            .any(|s| s.ends_with("_v4") || s.contains("_v4_")),
        "IPv4 sets are untouched: {touched:?}"
    );
    let held = representable(&dual);
    assert_eq!(held.local, dual.local, "IPv6 endpoints are local ones too");
}

#[test]
fn memory_dataplane_round_trip() {
    let dp = MemoryDataplane::new();
    let desired = Cluster::new(true).compile();
    let view = dp.ensure_base(&desired.settings).expect("base");
    dp.apply_between(&view.ruleset, &desired).expect("apply");
    let read = dp.read().expect("read");
    assert!(RulesetDiff::between(&read.ruleset, &representable(&desired)).is_empty());
    dp.fail_next(1);
    let err = dp
        .apply_between(&desired, &two_zones())
        .expect_err("injected failure");
    assert!(err.to_string().contains("injected"), "{err}");
    assert_eq!(
        dp.ruleset(),
        representable(&desired),
        "a failed apply changes nothing"
    );
    assert_eq!(dp.applies(), 1);
}

/// The rule IPv6 would need where `rule` matches IPv4: the same statements on the
/// `ip6` payload, the IPv6 sets and ICMPv6.
fn ipv6_twin(rule: &expr::Rule) -> String {
    serde_json::to_string(&rule.expr)
        .expect("JSON")
        .replace("\"protocol\":\"ip\"", "\"protocol\":\"ip6\"")
        .replace("_v4", "_v6")
        .replace("\"icmp\"", "\"ipv6-icmp\"")
}

fn matches_ipv4(rule: &expr::Rule) -> bool {
    serde_json::to_string(&rule.expr)
        .expect("JSON")
        .contains("\"protocol\":\"ip\"")
}

/// Fail closed, structurally: every rule that reads an IPv4 address has an IPv6 twin
/// in the same chain (no family is left to the chain's default), and a zone in
/// `enforce` ends both chains in an unconditional drop whatever came before.
#[test]
fn every_ipv4_rule_has_an_ipv6_twin_and_enforce_ends_in_a_drop() {
    let mut chains: Vec<(String, Vec<expr::Rule>)> = Vec::new();
    for probes in [true, false] {
        let settings = NodeSettings {
            allow_host_probes: probes,
        };
        for chain in names::BASE_CHAINS {
            let rules = render_base::base_chain_rules(chain, &settings, &OPTS);
            chains.push((format!("{chain} (probes {probes})"), rules));
        }
    }
    let mut zones = Vec::new();
    for mode in [Mode::Learn, Mode::Monitor, Mode::Enforce] {
        for cidr in [false, true] {
            let mut z = two_zones().zones[&1].clone();
            z.mode = mode;
            if cidr {
                z.cidr_out
                    .insert(("10.9.0.0/16".parse().unwrap(), Proto::Tcp, 53));
            }
            zones.push(z);
        }
    }
    for z in &zones {
        for dir in Dir::BOTH {
            let rules = render_zone::zone_chain_rules(z, dir, &OPTS);
            if z.mode == Mode::Enforce {
                let last = rules.last().expect("a chain has rules");
                assert_eq!(
                    last.expr,
                    vec![expr::drop()],
                    "an enforcing chain ends in a plain drop: {}",
                    last.comment
                );
            }
            chains.push((format!("{} {:?} {:?}", z.zone, z.mode, dir), rules));
        }
    }
    for (name, rules) in &chains {
        let all: Vec<String> = rules
            .iter()
            .map(|r| serde_json::to_string(&r.expr).expect("JSON"))
            .collect();
        let v4: Vec<&expr::Rule> = rules.iter().filter(|r| matches_ipv4(r)).collect();
        assert!(
            !v4.is_empty() || name.starts_with("output"),
            "{name} has IPv4 rules"
        );
        for rule in v4 {
            assert!(
                all.contains(&ipv6_twin(rule)),
                "{name}: the rule {:?} has no IPv6 twin",
                rule.comment
            );
        }
    }
}

/// A hung nft fails the call with an error naming the command, instead of holding the
/// registry forever.
#[test]
fn a_hung_nft_is_stopped_with_an_error_naming_the_command() {
    let hung = ["sh", "-c", "sleep 600", "nft"].map(str::to_owned).to_vec();
    let dp = NftRulesetDataplane::with_command(hung, OPTS)
        .with_timeout(std::time::Duration::from_millis(200));
    let err = dp.probe().expect_err("a hung nft is an error");
    assert!(
        matches!(err, crate::nft::NftError::TimedOut { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("sh -c sleep 600 nft -j list chains inet") && text.contains("stopped"),
        "{text}"
    );
}

/// The sidecar options of the tests: one cluster store member.
pub(super) fn sidecar_opts() -> Options {
    static SIDECAR: std::sync::LazyLock<render_sidecar::Sidecar> =
        std::sync::LazyLock::new(|| render_sidecar::Sidecar {
            store: vec!["10.0.0.1:2379".parse().expect("socket address")],
            sources: vec!["10.0.0.9".parse().expect("address")],
        });
    Options {
        sidecar: Some(&SIDECAR),
        ..OPTS
    }
}

/// The rules of `chain` in a base transaction.
fn chain_rules_of<'a>(json: &'a Value, chain: &str) -> Vec<&'a Value> {
    commands(json)
        .iter()
        .filter(|c| c["add"]["rule"]["chain"] == chain)
        .collect()
}

#[test]
fn sidecar_base_chains() {
    let json = base_commands(
        &NodeSettings {
            allow_host_probes: false,
        },
        &KernelView::default(),
        &sidecar_opts(),
    );
    insta::assert_json_snapshot!(serde_json::json!({
        "input": chain_rules_of(&json, "input"),
        "output": chain_rules_of(&json, "output"),
    }));
}

#[test]
fn sidecar_chains_fail_closed_and_forward_is_the_nodes() {
    let settings = NodeSettings {
        allow_host_probes: false,
    };
    let opts = sidecar_opts();
    let comments = |chain: &str, opts: &Options| -> Vec<String> {
        render_base::base_chain_rules(chain, &settings, opts)
            .into_iter()
            .map(|r| r.comment)
            .collect()
    };
    // A pod routes nothing of its own: its forward chain is the node's, unchanged.
    assert_eq!(comments("forward", &opts), comments("forward", &OPTS));
    let output = comments("output", &opts);
    let spoof = output
        .iter()
        .position(|c| c == "ipv4 source not the pod's own: drop")
        .expect("output drops foreign sources");
    let egress = output
        .iter()
        .position(|c| c == "from the pod over ipv4: its zone's egress chain")
        .expect("output looks up the egress map");
    assert!(spoof < egress, "the source is checked first: {output:?}");
    assert!(
        output
            .iter()
            .any(|c| c == "ipv6 source not the pod's own: drop")
    );
    assert_eq!(
        output
            .iter()
            .filter(|c| c.starts_with("cluster store "))
            .count(),
        1,
        "{output:?}"
    );
    let input = comments("input", &opts);
    assert_eq!(
        input.last().map(String::as_str),
        Some("not addressed to the pod: drop"),
        "the input chain ends in a drop: {input:?}"
    );
    let rules = render_base::base_chain_rules("input", &settings, &opts);
    let last = rules.last().expect("rules");
    assert_eq!(last.expr, vec![expr::drop()], "unconditional: {last:?}");
    // Neither chain knows pod interfaces: in the pod's namespace there is none.
    for chain in ["input", "output"] {
        let text = serde_json::to_string(
            &render_base::base_chain_rules(chain, &settings, &opts)
                .iter()
                .map(|r| r.expr.clone())
                .collect::<Vec<_>>(),
        )
        .expect("json");
        assert!(!text.contains(names::POD_IFACES), "{chain}: {text}");
    }
    // The node's chains are not the sidecar's: a table switched between them is rewritten.
    assert_ne!(comments("input", &opts), comments("input", &OPTS));
    assert_ne!(comments("output", &opts), comments("output", &OPTS));
}
