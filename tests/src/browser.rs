//! The zone-map page in headless Chromium (Debian's `chromium`), run inside the node
//! namespace: the DOM after the page drew, screenshots kept as test artefacts, and
//! the geometry the page drew, read back from the DOM.

use std::path::{Path, PathBuf};

use crate::node::Node;

/// Runs headless Chromium in the node namespace with `args` on `http://LISTEN/QUERY`.
pub fn chromium(node: &Node, listen: &str, profile: &Path, args: &[&str], query: &str) -> String {
    let url = format!("http://{listen}/{query}");
    let out = node
        .netns
        .exec(
            "timeout",
            &[
                "120",
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--virtual-time-budget=5000",
                &format!("--user-data-dir={}", profile.display()),
            ],
        )
        .args(args)
        .arg(&url)
        .output()
        .expect("run chromium (apt-get install chromium)");
    assert!(
        out.status.success(),
        "chromium {args:?} {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The DOM once the page has drawn `query`.
pub fn dump_dom(node: &Node, listen: &str, profile: &Path, query: &str) -> String {
    let dom = chromium(node, listen, profile, &["--dump-dom"], query);
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page did not finish drawing {query:?}:\n{dom}"
    );
    dom
}

/// A screenshot of `query`, kept as `target/NAME` (or under `CARGO_TARGET_DIR`) for
/// people to look at; returns where.
pub fn screenshot(node: &Node, listen: &str, profile: &Path, query: &str, name: &str) -> PathBuf {
    let shot = node.dir.path().join(name);
    chromium(
        node,
        listen,
        profile,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,900",
        ],
        query,
    );
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real PNG"
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join(name);
    std::fs::copy(&shot, &target).expect("copy the screenshot to target/");
    eprintln!("screenshot: {}", target.display());
    target
}

/// The value of attribute `name` in the tag that starts `tag` (after its `<`).
pub fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let tag = tag.split('>').next()?;
    let needle = format!("{name}=\"");
    let (at, _) = tag
        .match_indices(&needle)
        .find(|(i, _)| *i == 0 || tag.as_bytes()[i - 1] == b' ')?;
    tag[at + needle.len()..].split('"').next()
}

/// A circle (center, radius) or a label box (x, y, width, height) as drawn.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    Circle { x: f64, y: f64, r: f64 },
    Label { x: f64, y: f64, w: f64, h: f64 },
}

fn num(tag: &str, name: &str) -> f64 {
    attr(tag, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {name} in <{tag}"))
}

/// The zone and namespace circles (`circle.body`) and the label boxes the page
/// measured (`data-bbox`, the browser's own text boxes).
pub fn drawn_shapes(dom: &str) -> Vec<Shape> {
    let mut shapes = Vec::new();
    for tag in dom.split('<').skip(1) {
        if tag.starts_with("circle class=\"body\"") {
            shapes.push(Shape::Circle {
                x: num(tag, "cx"),
                y: num(tag, "cy"),
                r: num(tag, "r"),
            });
        } else if let Some(bbox) = attr(tag, "data-bbox") {
            let v: Vec<f64> = bbox.split(' ').filter_map(|n| n.parse().ok()).collect();
            assert_eq!(v.len(), 4, "a label box: {bbox}");
            shapes.push(Shape::Label {
                x: v[0],
                y: v[1],
                w: v[2],
                h: v[3],
            });
        }
    }
    shapes
}

fn overlap(a: &Shape, b: &Shape) -> bool {
    match (*a, *b) {
        (
            Shape::Circle { x, y, r },
            Shape::Circle {
                x: x2,
                y: y2,
                r: r2,
            },
        ) => (x - x2).hypot(y - y2) < r + r2,
        (
            Shape::Label { x, y, w, h },
            Shape::Label {
                x: x2,
                y: y2,
                w: w2,
                h: h2,
            },
        ) => x < x2 + w2 && x2 < x + w && y < y2 + h2 && y2 < y + h,
        (Shape::Circle { x, y, r }, Shape::Label { x: lx, y: ly, w, h })
        | (Shape::Label { x: lx, y: ly, w, h }, Shape::Circle { x, y, r }) => {
            let nx = x.clamp(lx, lx + w);
            let ny = y.clamp(ly, ly + h);
            (x - nx).hypot(y - ny) < r
        }
    }
}

/// Panics, naming the first two, when any two circles or labels overlap.
pub fn assert_nothing_overlaps(shapes: &[Shape], what: &str) {
    for (i, a) in shapes.iter().enumerate() {
        for b in &shapes[i + 1..] {
            assert!(!overlap(a, b), "{what}: {a:?} overlaps {b:?}");
        }
    }
}
