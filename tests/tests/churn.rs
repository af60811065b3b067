//! Pod churn as a busy node sees it: 1,000 ADD/DEL cycles of dual-stack pods, 20 at a
//! time, in two zones, beside a pod that stays. Afterwards the node holds exactly what
//! it held before (veths, leases, endpoints, every set and map element, chains), the
//! enforcer's open files and memory have not grown with the cycles, the staying pod
//! still has its rules, and the audit trail verifies. As root.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde_json::{Value, json};
use zonewarden_tests::attach::zonewarden_like;
use zonewarden_tests::cni::{Attachment, Conflist, all_ips};
use zonewarden_tests::netns::Netns;
use zonewarden_tests::node::{NODE_ADDR, Node};
use zonewarden_tests::require_root;

const NET: &str = "zw-churn";
const WORKERS: usize = 20;
const CYCLES: usize = 50;
/// Cycles before the enforcer's files and memory are measured: its caches, thread
/// pools and allocator arenas have reached their working size by then.
const WARM_UP: usize = 3;
/// Open files the enforcer may gain over the churn: none is tied to a pod, so any
/// growth beyond a few (a connection being set up as the count is taken) is a leak.
const MAX_FD_GROWTH: usize = 4;
/// Memory the enforcer may gain over 1,000 cycles (allocator noise, the audit's
/// recent-entries ring); a pod's state left behind would be far more over 950 cycles.
const MAX_RSS_GROWTH_KIB: u64 = 16 * 1024;

#[test]
fn a_thousand_pod_cycles_leave_the_node_as_they_found_it() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed_ranges(&node, NET, &["10.134.0.0/20", "fd7b:134::/64"]);

    // The pod that stays through the churn.
    let stay_ns = Netns::new("stay");
    let stay = Attachment::new("stays", &stay_ns).with_args(&pod_args("churn/a", "stays"));
    let stay_res = list
        .add(&node, &stay, &json!({}))
        .expect("ADD of the staying pod");
    let stay_veth = node.host_veths();
    assert_eq!(
        stay_veth.len(),
        1,
        "the staying pod has one host veth: {stay_veth:?}"
    );
    // DEL leaves the host veth to the enforcer, which deletes it in the background.
    let wait_churn_veths_gone = |what: &str| {
        zonewarden_tests::wait::until(what, std::time::Duration::from_secs(30), || {
            node.host_veths() == stay_veth
        })
    };

    let pods: Vec<Netns> = (0..WORKERS)
        .map(|i| Netns::new(&format!("cr{i}")))
        .collect();
    let failures = Mutex::new(Vec::new());
    let run = |cycles: std::ops::Range<usize>| {
        std::thread::scope(|scope| {
            for (worker, pod) in pods.iter().enumerate() {
                let (node, list, failures, cycles) = (&node, &list, &failures, cycles.clone());
                scope.spawn(move || {
                    let fail = |what: String| failures.lock().unwrap().push(what);
                    for cycle in cycles {
                        let zone = if (worker + cycle) % 2 == 0 {
                            "churn/a"
                        } else {
                            "churn/b"
                        };
                        let name = format!("churn-{worker}-{cycle}");
                        let at = Attachment::new(&name, pod).with_args(&pod_args(zone, &name));
                        if let Err(out) = list.add(node, &at, &json!({})) {
                            fail(format!("ADD {name}: code {:?}: {}", out.code(), out.stdout));
                            continue;
                        }
                        if let Err(out) = list.del(node, &at, &json!({}), None) {
                            fail(format!("DEL {name}: {}", out.stdout));
                        }
                    }
                });
            }
        });
    };

    run(0..WARM_UP);
    wait_churn_veths_gone("the warm-up's veths to go");
    let pid = node.enforcer_pid().expect("enforcer running");
    let before = NodeState::of(&node);
    let (fds_before, rss_before) = (open_files(pid), rss_kib(pid));

    run(WARM_UP..CYCLES);
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} cycles went wrong:\n{}",
        failures.len(),
        WORKERS * CYCLES,
        failures.join("\n")
    );
    wait_churn_veths_gone("the churn's veths to go");

    let after = NodeState::of(&node);
    assert_eq!(before, after, "the churn left something on the node");
    let (fds_after, rss_after) = (open_files(pid), rss_kib(pid));
    eprintln!(
        "churn: {} measured cycles; enforcer open files {} -> {}, RSS {rss_before} -> {rss_after} KiB",
        WORKERS * (CYCLES - WARM_UP),
        fds_before.len(),
        fds_after.len()
    );
    assert!(
        fds_after.len() <= fds_before.len() + MAX_FD_GROWTH,
        "the enforcer's open files grew from {} to {} over {} cycles; new: {:?}",
        fds_before.len(),
        fds_after.len(),
        WORKERS * (CYCLES - WARM_UP),
        fds_after.difference(&fds_before).collect::<Vec<_>>()
    );
    assert!(
        rss_after <= rss_before + MAX_RSS_GROWTH_KIB,
        "the enforcer's resident memory grew from {rss_before} KiB to {rss_after} KiB over {} cycles",
        WORKERS * (CYCLES - WARM_UP)
    );
    for pod in &pods {
        assert_eq!(
            pod.links(),
            vec!["lo".to_owned()],
            "{} keeps only lo",
            pod.name
        );
    }

    // The staying pod kept its endpoint, addresses and route through it all.
    let endpoints = node.endpoints();
    assert_eq!(endpoints.len(), 1, "{endpoints:?}");
    assert_eq!(endpoints[0]["key"]["containerId"], "stays");
    for ip in all_ips(&stay_res) {
        let ip = ip.split('/').next().unwrap().to_owned();
        assert!(
            node.netns.nft_map_keys(zone_map_of(&ip)).contains(&ip),
            "{ip} of the staying pod lost its zone membership"
        );
    }
    assert!(
        stay_ns.ping(NODE_ADDR),
        "the staying pod lost its way to the node"
    );

    let verify = node.zwctl_output(&["audit", "verify"]);
    assert!(
        verify.status.success(),
        "audit verify after the churn: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    list.del(&node, &stay, &json!({}), None)
        .expect("DEL of the staying pod");
}

/// CNI_ARGS of a pod of zone `zone` (in the CNI_ARGS form a runtime passes).
fn pod_args(zone: &str, pod: &str) -> String {
    format!("IgnoreUnknown=1;ZONEWARDEN_ZONE={zone};K8S_POD_NAME={pod}")
}

fn zone_map_of(ip: &str) -> &'static str {
    if ip.contains(':') {
        "zone_of_v6"
    } else {
        "zone_of_v4"
    }
}

/// Everything one attachment could leave behind on the node.
#[derive(Debug, PartialEq, Eq)]
struct NodeState {
    veths: BTreeSet<String>,
    leases: Vec<String>,
    endpoints: Vec<String>,
    state_files: BTreeSet<String>,
    /// Every set and map of the zonewarden tables without timeouts, with its
    /// elements (the sets whose elements time out are learning's, not a pod's).
    elements: BTreeMap<String, BTreeSet<String>>,
    chains: BTreeSet<String>,
    routes: BTreeSet<String>,
}

impl NodeState {
    fn of(node: &Node) -> Self {
        let mut elements = BTreeMap::new();
        let mut chains = BTreeSet::new();
        for family in ["inet", "bridge"] {
            let out = node
                .netns
                .nft(&["-j", "list", "table", family, "zonewarden"]);
            let v: Value = serde_json::from_str(&out).expect("nft JSON");
            for item in v["nftables"].as_array().into_iter().flatten() {
                if let Some(chain) = item.get("chain") {
                    chains.insert(format!("{family} {}", chain["name"]));
                }
                let Some(set) = item.get("set").or_else(|| item.get("map")) else {
                    continue;
                };
                let flags = set["flags"].to_string();
                // The seen sets fill and empty themselves; the enforcer's seal names
                // the nftables generation of its last write.
                if set.get("timeout").is_some()
                    || flags.contains("timeout")
                    || set["name"] == "ruleset_digest"
                {
                    continue;
                }
                let elems = set["elem"].as_array().into_iter().flatten();
                elements.insert(
                    format!("{family} {}", set["name"]),
                    elems.map(ToString::to_string).collect(),
                );
            }
        }
        let mut endpoints: Vec<String> = node
            .endpoints()
            .iter()
            .map(|e| e["key"]["containerId"].to_string())
            .collect();
        endpoints.sort();
        Self {
            veths: node
                .host_veths()
                .into_iter()
                .filter(|l| zonewarden_like(l))
                .collect(),
            leases: node.leases(NET),
            endpoints,
            state_files: files_under(&node.state_dir()),
            elements,
            chains,
            routes: ["-4", "-6"]
                .iter()
                .flat_map(|f| {
                    node.netns
                        .ip(&[f, "route", "show", "table", "all"])
                        .lines()
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .collect(),
        }
    }
}

/// The state directory's files, by path only: the audit log and the store's index
/// change with every change, by design; a file per pod left behind shows as a name.
fn files_under(dir: &std::path::Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out
}

fn open_files(pid: u32) -> BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the enforcer's fds")
        .flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                target.display()
            )
        })
        .collect()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}
