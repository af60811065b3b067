//! The enforcer's read-only HTTP endpoint (`--web-listen`), asked with `curl` from
//! inside the node namespace.

use crate::node::Node;

/// `curl -X METHOD http://LISTEN/PATH` inside the node namespace: (HTTP status, body);
/// status 0 when nothing answered.
pub fn http(node: &Node, listen: &str, method: &str, path: &str) -> (u16, String) {
    let url = format!("http://{listen}{path}");
    let out = node
        .netns
        .exec(
            "curl",
            &[
                "-sS",
                "-X",
                method,
                "-w",
                "\n%{http_code}",
                "--max-time",
                "5",
                &url,
            ],
        )
        .output()
        .expect("run curl (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// `GET /metrics`, which must answer 200.
pub fn scrape(node: &Node, listen: &str) -> String {
    let (status, body) = http(node, listen, "GET", "/metrics");
    assert_eq!(status, 200, "GET /metrics answered {status}: {body}");
    body
}

/// The value of one series (`name` or `name{labels}`) in a Prometheus text exposition.
pub fn metric(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
