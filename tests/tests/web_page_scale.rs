//! Root test: the zone-map page at scale in headless Chromium, against the real
//! enforcer with 60 zones in 6 namespaces and with 1,000 zones in 25 namespaces
//! (made by `zwctl profile import` of one generated file, as an operator restoring
//! profiles would). From the DOM: no two circles and no two labels overlap in the
//! overview and with every namespace expanded (label boxes as Chromium measured
//! them), drill-down into a namespace (`?ns=`), search (`?search=`), collapsed
//! namespaces and aggregated edges, a quarantined zone whose approved edges stay
//! approved. Screenshots are kept as `target/zone-map-<zones>-*.png`.

use std::path::Path;
use std::time::Duration;

use zonewarden_tests::browser::{self, attr, drawn_shapes};
use zonewarden_tests::node::Node;
use zonewarden_tests::{require_root, wait};

const LISTEN: &str = "127.0.0.1:19921";

fn zone(ns: usize, z: usize) -> String {
    format!("team{ns:02}/svc-{z:02}")
}

/// One `kind: ZoneProfile` document per zone: zone z approves the edge from z-1 in
/// its namespace (8080/tcp); zone 0 the edge from the previous namespace's zone 0
/// (443/tcp); zone 1 its own edge to `world`. Modes cycle learn, monitor, enforce.
fn profiles(namespaces: usize, per_ns: usize) -> String {
    let mut yaml = String::new();
    for ns in 0..namespaces {
        for z in 0..per_ns {
            let mut edges = Vec::new();
            if z > 0 {
                edges.push(format!("{}->{}:8080/tcp", zone(ns, z - 1), zone(ns, z)));
            } else if ns > 0 {
                edges.push(format!("{}->{}:443/tcp", zone(ns - 1, 0), zone(ns, 0)));
            }
            if z == 1 {
                edges.push(format!("{}->world:443/tcp", zone(ns, 1)));
            }
            let mode = ["learn", "monitor", "enforce"][z % 3];
            yaml.push_str(&format!(
                "---\napiVersion: zonewarden.io/v1\nkind: ZoneProfile\nzone: \"{}\"\nmode: {mode}\n",
                zone(ns, z)
            ));
            if edges.is_empty() {
                yaml.push_str("approvedEdges: []\n");
            } else {
                yaml.push_str("approvedEdges:\n");
                for e in edges {
                    yaml.push_str(&format!("  - \"{e}\"\n"));
                }
            }
        }
    }
    yaml
}
fn start(namespaces: usize, per_ns: usize) -> Node {
    let mut node = Node::new();
    node.start_enforcer_with(&["--web-listen", LISTEN]);
    let file = node.dir.path().join("profiles.yaml");
    std::fs::write(&file, profiles(namespaces, per_ns)).unwrap();
    // One transaction for every zone; a debug build on a shared machine may take
    // longer than zwctl's default 5 s to answer.
    let started = std::time::Instant::now();
    let out = node.zwctl_output(&[
        "--timeout",
        "120",
        "profile",
        "import",
        "--filename",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "import of {} zones: {}",
        namespaces * per_ns,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "imported {} zones in {:?}",
        namespaces * per_ns,
        started.elapsed()
    );
    node.zwctl(&["quarantine", "--zone", &zone(3, 5)]);
    wait::until("the page to answer", Duration::from_secs(10), || {
        zonewarden_tests::web::http(&node, LISTEN, "GET", "/").0 == 200
    });
    node
}

fn dom(node: &Node, profile: &Path, query: &str) -> String {
    browser::dump_dom(node, LISTEN, profile, query)
}

/// The opening tags `<g ...>` of the zones drawn (their `data-zone`s), and of the
/// collapsed namespaces.
fn tags<'a>(dom: &'a str, key: &str) -> Vec<(&'a str, &'a str)> {
    dom.split("<g ")
        .skip(1)
        .filter_map(|g| Some((attr(g, key)?, g.split('>').next()?)))
        .collect()
}
fn class_of<'a>(dom: &'a str, key: &str, value: &str) -> Option<&'a str> {
    tags(dom, key)
        .into_iter()
        .find(|(v, _)| *v == value)
        .and_then(|(_, tag)| attr(tag, "class"))
}
fn zones_drawn(dom: &str) -> usize {
    tags(dom, "data-zone").len()
}

fn no_overlaps(dom: &str, what: &str) -> usize {
    let shapes = drawn_shapes(dom);
    browser::assert_nothing_overlaps(&shapes, what);
    shapes.len()
}

fn check_scale(namespaces: usize, per_ns: usize) {
    let total = namespaces * per_ns;
    let node = start(namespaces, per_ns);
    let profile = tempfile::tempdir().expect("chromium profile dir");

    // The overview: every namespace collapsed to one node, the built-in zones shown.
    let overview = dom(&node, profile.path(), "");
    for ns in 0..namespaces {
        let name = format!("team{ns:02}");
        assert_eq!(
            class_of(&overview, "data-group", &name),
            Some("zone group collapsed"),
            "{name} is collapsed in the overview of {total} zones"
        );
    }
    assert!(overview.contains(&format!(
        "data-group=\"team03\" data-expanded=\"false\" data-mode=\"learn\" data-zones=\"{per_ns}\" data-quarantined=\"1\""
    )));
    assert_eq!(
        class_of(&overview, "data-zone", "world"),
        Some("zone match"),
        "the built-in zones are their own group, expanded"
    );
    assert_eq!(
        class_of(&overview, "data-src", "team00/*"),
        Some("edge approved"),
        "namespace-to-namespace edges are aggregated"
    );
    let shapes = no_overlaps(&overview, "overview");
    assert!(shapes >= 3 * (namespaces + 1), "{shapes} shapes drawn");

    // Every namespace expanded: every zone drawn, still nothing overlaps.
    let all = dom(&node, profile.path(), "?expand=all");
    assert_eq!(zones_drawn(&all), total + 1, "{total} zones and world");
    let shapes = no_overlaps(&all, "all expanded");
    assert_eq!(shapes, 3 * (total + 1), "a circle and two labels per zone");
    assert_eq!(
        class_of(&all, "data-src", &zone(1, 0)),
        Some("edge approved"),
        "svc-00 -> svc-01 in team01"
    );
    // Quarantine is the zone's, never the edges'.
    let q = zone(3, 5);
    assert!(all.contains(&format!(
        "data-zone=\"{q}\" data-mode=\"enforce\" data-members=\"0\" data-quarantined=\"true\""
    )));
    for (src, dst) in [(zone(3, 4), q.clone()), (q.clone(), zone(3, 6))] {
        let key = format!("data-src=\"{src}\" data-dst=\"{dst}\"");
        let g = all
            .split("<g ")
            .find(|g| g.contains(&key))
            .unwrap_or_else(|| panic!("edge {src} -> {dst} not drawn"));
        assert!(
            g.starts_with("class=\"edge approved"),
            "{src} -> {dst}: {g}"
        );
    }

    // Drill-down into one namespace: its zones, and the outside peers as context.
    let ns = dom(&node, profile.path(), "?ns=team02");
    assert_eq!(
        zones_drawn(&ns),
        per_ns + 3,
        "team02's zones, and team01/svc-00, team03/svc-00 and world as peers"
    );
    for z in 0..per_ns {
        assert_eq!(class_of(&ns, "data-zone", &zone(2, z)), Some("zone match"));
    }
    assert_eq!(
        class_of(&ns, "data-zone", &zone(1, 0)),
        Some("zone context")
    );
    assert_eq!(
        class_of(&ns, "data-zone", &zone(3, 0)),
        Some("zone context")
    );
    assert!(class_of(&ns, "data-zone", &zone(4, 0)).is_none());
    assert!(
        ns.contains(&format!(
            "data-edge=\"{}-&gt;{}:8080/tcp\"",
            zone(2, 0),
            zone(2, 1)
        )),
        "the edge table lists team02's edges"
    );
    assert!(
        !ns.contains(&format!(
            "data-edge=\"{}-&gt;{}:8080/tcp\"",
            zone(4, 0),
            zone(4, 1)
        )),
        "and only those"
    );
    no_overlaps(&ns, "drill-down");

    // Search: jumps to the zone, expands its namespace, selects and centers it.
    let target = zone(namespaces - 2, per_ns - 3);
    let found = dom(&node, profile.path(), &format!("?search={target}"));
    assert_eq!(
        class_of(&found, "data-zone", &target),
        Some("zone match selected"),
        "search selects {target}"
    );
    let group = format!("team{:02}", namespaces - 2);
    assert!(found.contains(&format!("data-group=\"{group}\" data-expanded=\"true\"")));
    assert_eq!(
        class_of(&found, "data-group", "team00"),
        Some("zone group collapsed"),
        "other namespaces stay collapsed"
    );
    let (_, tag) = tags(&found, "data-zone")
        .into_iter()
        .find(|(z, _)| *z == target)
        .unwrap();
    let (x, y): (f64, f64) = (
        attr(tag, "data-x").unwrap().parse().unwrap(),
        attr(tag, "data-y").unwrap().parse().unwrap(),
    );
    let view_tag = found.split("<svg id=\"map\"").nth(1).unwrap();
    let view: Vec<f64> = attr(view_tag, "viewBox")
        .unwrap()
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        (view[0] + view[2] / 2.0 - x).abs() < 1.0 && (view[1] + view[3] / 2.0 - y).abs() < 1.0,
        "the view {view:?} is centered on {target} at ({x}, {y})"
    );
    assert!(
        found.contains(&format!("<h2 data-zone=\"{target}\">")),
        "the detail panel shows {target}"
    );
    no_overlaps(&found, "after a search");

    for (query, name) in [
        ("", "overview"),
        ("?expand=all", "expanded"),
        ("?ns=team02", "team02"),
    ] {
        browser::screenshot(
            &node,
            LISTEN,
            profile.path(),
            query,
            &format!("zone-map-{total}-{name}.png"),
        );
    }
}

#[test]
fn sixty_zones_in_six_namespaces() {
    require_root!();
    check_scale(6, 10);
}

#[test]
fn a_thousand_zones_in_twenty_five_namespaces() {
    require_root!();
    check_scale(25, 40);
}
