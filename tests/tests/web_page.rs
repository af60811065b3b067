//! Root test: the zone-map page in headless Chromium (Debian's `chromium`), run inside
//! the node namespace against the real enforcer after real traffic: the page draws
//! the scenario's zones and edges, honours `?filter=` and `?zone=` (the detail
//! panel), and a screenshot is saved (also to `target/zone-map.png`).

use std::path::Path;
use std::time::Duration;

use zonewarden_tests::browser;
use zonewarden_tests::cni::Conflist;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::add_pod;
use zonewarden_tests::traffic::{Server, connects};
use zonewarden_tests::{require_root, wait};

const LISTEN: &str = "127.0.0.1:19918";

fn http_get(node: &Node, path: &str) -> Option<String> {
    let out = node
        .netns
        .exec(
            "curl",
            &["-sSf", "--max-time", "5", &format!("http://{LISTEN}{path}")],
        )
        .output()
        .expect("run curl (apt-get install curl)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn dump_dom(node: &Node, profile: &Path, query: &str) -> String {
    browser::dump_dom(node, LISTEN, profile, query)
}

/// `text` as Chromium serializes it in text and attribute values (`>` escaped).
fn html(text: &str) -> String {
    text.replace('>', "&gt;")
}

fn zone_drawn(dom: &str, zone: &str) -> bool {
    dom.contains(&format!("data-zone=\"{zone}\""))
}

/// The `<g class="edge ...">` drawn for (src, dst), with its class.
fn edge_class(dom: &str, src: &str, dst: &str) -> Option<String> {
    let key = format!("data-src=\"{src}\" data-dst=\"{dst}\"");
    dom.split("<g ").find(|g| g.contains(&key)).map(|g| {
        g.split("class=\"")
            .nth(1)
            .and_then(|c| c.split('"').next())
            .unwrap_or_default()
            .to_owned()
    })
}

fn has_report(node: &Node, kind: &str, edge: &str) -> bool {
    node.zwctl(&["get", "violations"])["items"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| v["verdict"] == kind && v["edge"] == edge)
}

#[test]
fn zone_map_draws_filters_and_details_in_headless_chromium() {
    require_root!();
    let mut node = Node::new();
    node.start_enforcer_with(&["--web-listen", LISTEN]);
    wait::until("the page to answer", Duration::from_secs(10), || {
        http_get(&node, "/").is_some()
    });

    // Four zones: web talks to db (approved) and cache (observed, not approved),
    // monitor talks to web; cache -> db is dropped once db enforces.
    let list = Conflist::routed(&node, "zw-webmap", "10.134.0.0/24");
    let web = add_pod(&node, &list, "web", "shop/web");
    let db = add_pod(&node, &list, "db", "shop/db");
    let cache = add_pod(&node, &list, "cache", "shop/cache");
    let monitor = add_pod(&node, &list, "prom", "ops/monitor");
    let _servers = [
        Server::start(&web.netns, &["tcp:80"]),
        Server::start(&db.netns, &["tcp:5432"]),
        Server::start(&cache.netns, &["tcp:6379"]),
    ];
    assert!(connects(&web.netns, &db.target(5432, "tcp")), "web -> db");
    assert!(
        connects(&web.netns, &cache.target(6379, "tcp")),
        "web -> cache"
    );
    assert!(
        connects(&monitor.netns, &web.target(80, "tcp")),
        "monitor -> web"
    );
    let learned = [
        "shop/web->shop/db:5432/tcp",
        "shop/web->shop/cache:6379/tcp",
        "ops/monitor->shop/web:80/tcp",
    ];
    wait::until("three edges to be learned", Duration::from_secs(10), || {
        let edges = node.zwctl(&["get", "edges", "--learned"]);
        learned.iter().all(|want| {
            edges["items"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["edge"] == *want)
        })
    });
    node.zwctl(&["profile", "approve", "shop/db", "--all"]);
    node.zwctl(&["mode", "set", "shop/db", "enforce"]);
    assert!(
        !connects(&cache.netns, &db.target(5432, "tcp")),
        "cache -> db must be dropped"
    );
    wait::until("the drop to be reported", Duration::from_secs(10), || {
        has_report(&node, "drop", "shop/cache->shop/db:5432/tcp")
    });

    // The data behind the page.
    let map: serde_json::Value =
        serde_json::from_str(&http_get(&node, "/api/map").expect("GET /api/map")).unwrap();
    let zone = |name: &str| {
        map["zones"]
            .as_array()
            .unwrap()
            .iter()
            .find(|z| z["zone"] == name)
            .unwrap_or_else(|| panic!("zone {name} missing from /api/map: {map}"))
            .clone()
    };
    assert_eq!(zone("shop/db")["mode"], "enforce");
    assert_eq!(zone("shop/web")["members"], serde_json::json!(["web"]));

    let profile = tempfile::tempdir().expect("chromium profile dir");

    // The whole map.
    let dom = dump_dom(&node, profile.path(), "");
    for z in ["shop/web", "shop/db", "shop/cache", "ops/monitor"] {
        assert!(zone_drawn(&dom, z), "zone {z} is not drawn:\n{dom}");
    }
    assert!(dom.contains("data-zone=\"shop/db\" data-mode=\"enforce\" data-members=\"1\""));
    assert_eq!(
        edge_class(&dom, "shop/web", "shop/db").as_deref(),
        Some("edge approved"),
        "web -> db is approved:\n{dom}"
    );
    assert_eq!(
        edge_class(&dom, "shop/web", "shop/cache").as_deref(),
        Some("edge observed"),
        "web -> cache is observed, not approved"
    );
    assert_eq!(
        edge_class(&dom, "shop/cache", "shop/db").as_deref(),
        Some("edge dropped"),
        "cache -> db was dropped"
    );
    for edge in learned
        .iter()
        .chain(["shop/cache->shop/db:5432/tcp"].iter())
    {
        assert!(
            dom.contains(&format!("data-edge=\"{}\"", html(edge))),
            "the edge table lists {edge}:\n{dom}"
        );
    }

    // Filtered to shop/db: db, its neighbours (faded) and its edges only.
    let filtered = dump_dom(&node, profile.path(), "?filter=shop/db");
    assert!(
        filtered.contains("class=\"zone match\" data-zone=\"shop/db\""),
        "{filtered}"
    );
    assert!(
        filtered.contains("class=\"zone context\" data-zone=\"shop/web\""),
        "{filtered}"
    );
    assert!(
        !zone_drawn(&filtered, "ops/monitor"),
        "monitor is filtered out:\n{filtered}"
    );
    assert!(
        edge_class(&filtered, "shop/web", "shop/cache").is_none(),
        "edges not touching shop/db are filtered out"
    );
    assert!(edge_class(&filtered, "shop/web", "shop/db").is_some());

    // A zone's detail: members, mode, approved edges, recent drops.
    let detail = dump_dom(&node, profile.path(), "?zone=shop/db");
    let panel = detail
        .split("<aside id=\"detail\"")
        .nth(1)
        .and_then(|rest| rest.split("</aside>").next())
        .unwrap_or_else(|| panic!("no detail panel:\n{detail}"));
    assert!(!panel.contains("hidden"), "the panel is open: {panel}");
    for want in [
        "data-zone=\"shop/db\"".to_owned(),
        "enforce".to_owned(),
        "<li class=\"member\">db</li>".to_owned(),
        format!("data-edge=\"{}\"", html("shop/web->shop/db:5432/tcp")),
        format!(
            "<li class=\"report drop\">drop: {}",
            html("shop/cache->shop/db:5432/tcp")
        ),
    ] {
        assert!(
            panel.contains(&want),
            "{want:?} missing from the panel: {panel}"
        );
    }

    // Status is the present, history is history: cache -> db, approved after its
    // drop, is drawn approved with the drop as history; a quarantined zone shows the
    // quarantine while its approved edges stay approved, during and after it.
    let before = node.items(&["get", "profiles", "shop/db"])[0]["version"]
        .as_u64()
        .unwrap();
    node.zwctl(&[
        "profile",
        "approve",
        "shop/db",
        "--edge",
        "shop/cache->shop/db:5432/tcp",
    ]);
    node.zwctl(&["quarantine", "--zone", "shop/db"]);
    assert!(
        !connects(&web.netns, &db.target(5432, "tcp")),
        "quarantined: web -> db is cut"
    );
    wait::until(
        "the quarantine drop to be reported",
        Duration::from_secs(10),
        || has_report(&node, "quarantine", "shop/web->shop/db:5432/tcp"),
    );
    let map: serde_json::Value =
        serde_json::from_str(&http_get(&node, "/api/map").expect("GET /api/map")).unwrap();
    let map_edge = |name: &str| {
        map["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["edge"] == name)
            .unwrap_or_else(|| panic!("edge {name} missing from /api/map: {map}"))
            .clone()
    };
    let healed = map_edge("shop/cache->shop/db:5432/tcp");
    assert_eq!(healed["status"], "approved", "{healed}");
    assert_eq!(
        healed["lastDrop"]["profileVersion"].as_u64(),
        Some(before),
        "the drop happened before the approval: {healed}"
    );
    let cut = map_edge("shop/web->shop/db:5432/tcp");
    assert_eq!(
        cut["status"], "approved",
        "quarantine is not the edge's: {cut}"
    );
    assert!(
        cut["lastDrop"].is_null(),
        "a quarantine drop is no edge drop: {cut}"
    );
    for unquarantined in [false, true] {
        if unquarantined {
            node.zwctl(&["unquarantine", "--zone", "shop/db"]);
            assert!(connects(&web.netns, &db.target(5432, "tcp")), "released");
        }
        let dom = dump_dom(&node, profile.path(), "");
        for src in ["shop/cache", "shop/web"] {
            assert_eq!(
                edge_class(&dom, src, "shop/db").as_deref(),
                Some("edge approved"),
                "{src} -> shop/db stays approved (released: {unquarantined}):\n{dom}"
            );
        }
        assert_eq!(
            dom.contains("data-zone=\"shop/db\" data-mode=\"enforce\" data-members=\"1\" data-quarantined=\"true\""),
            !unquarantined,
            "the zone shows its quarantine while it lasts:\n{dom}"
        );
    }

    // Screenshots, looked at by people.
    browser::screenshot(
        &node,
        LISTEN,
        profile.path(),
        "?zone=shop/db",
        "zone-map.png",
    );
}
