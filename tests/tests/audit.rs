//! The audit trail end to end, as root: changes made with zwctl (and the plugin's
//! ADD) are logged in order with who made them, `zwctl audit verify` passes, and
//! one edited byte of `audit.log` makes it fail naming the entry.

use std::process::Command;

use serde_json::Value;
use zonewarden_tests::cni::Conflist;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::add_pod;
use zonewarden_tests::{bin, require_root};

const NET: &str = "zw-audit";

fn items(v: Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

/// The stdout of a `zwctl` that must succeed, in its default output format.
fn zwctl_text(node: &Node, args: &[&str]) -> String {
    let out = node.zwctl_output(args);
    assert!(
        out.status.success(),
        "zwctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `zwctl audit verify` with the given output flags: (exit code, stdout, stderr).
fn verify(node: &Node, output: &str) -> (Option<i32>, String, String) {
    let out = Command::new(bin("zwctl"))
        .arg("--socket")
        .arg(node.socket())
        .args(["-o", output, "audit", "verify"])
        .output()
        .expect("run zwctl audit verify");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn changes_are_audited_in_order_and_an_edited_byte_is_named() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed(&node, NET, "10.147.0.0/24");
    let pod = add_pod(&node, &list, "web", "shop/web");

    node.zwctl(&[
        "profile",
        "approve",
        "shop/web",
        "--edge",
        "shop/web->shop/db:5432/tcp",
        "--comment",
        "CHG-1",
    ]);
    node.zwctl(&["mode", "set", "shop/web", "enforce", "--comment", "CHG-2"]);
    node.zwctl(&["quarantine", "--zone", "shop/web", "--comment", "INC-42"]);
    // Remove the approved edge, then put it back from an export (GitOps).
    let exported = zwctl_text(&node, &["profile", "export", "shop/web"]);
    let file = node.dir.path().join("shop-web.yaml");
    std::fs::write(&file, exported).expect("write the export");
    node.zwctl(&["profile", "remove", "shop/web", "--all"]);
    let file = file.to_str().expect("utf-8 path");
    node.zwctl(&["profile", "import", "-f", file, "--comment", "restore"]);

    let log = items(node.zwctl(&["audit", "log"]));
    let summary: Vec<String> = log
        .iter()
        .map(|e| {
            format!(
                "{} {} {}->{} {}",
                e["action"].as_str().unwrap_or_default(),
                e["zone"].as_str().unwrap_or_default(),
                e["versionBefore"],
                e["versionAfter"],
                e["reason"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "endpoint-add shop/web 0->0 ",
            "approve shop/web 0->1 CHG-1",
            "mode shop/web 1->2 CHG-2",
            "quarantine shop/web 2->3 INC-42",
            "remove shop/web 3->4 ",
            "import shop/web 4->5 restore",
        ],
        "the audit log holds every change in order: {log:#?}"
    );
    assert!(
        log.iter().all(|e| e["who"] == "root"),
        "who comes from the socket's peer credentials: {log:#?}"
    );
    assert_eq!(log[0]["target"], pod.at.container_id.as_str(), "{log:#?}");
    assert_eq!(log[1]["target"], "shop/web->shop/db:5432/tcp", "{log:#?}");
    let seqs: Vec<u64> = log.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    let last_two = items(node.zwctl(&["audit", "log", "--zone", "shop/web", "--limit", "2"]));
    assert_eq!(
        last_two
            .iter()
            .map(|e| e["seq"].clone())
            .collect::<Vec<_>>(),
        [Value::from(5), Value::from(6)]
    );
    assert!(items(node.zwctl(&["audit", "log", "--zone", "shop/other"])).is_empty());

    let (code, stdout, stderr) = verify(&node, "table");
    assert_eq!(
        code,
        Some(0),
        "verify of an untouched log: {stdout}{stderr}"
    );
    let head = log[5]["hash"].as_str().expect("hash");
    assert_eq!(
        stdout,
        format!("audit log intact: 6 entries, chain head {}\n", &head[..12])
    );

    // One byte of the mode change's reason: CHG-2 becomes CHG-3.
    let path = node.state_dir().join("audit.log");
    let mut bytes = std::fs::read(&path).expect("read audit.log");
    let at = bytes
        .windows(5)
        .position(|w| w == b"CHG-2")
        .expect("the reason is in the log")
        + 4;
    bytes[at] = b'3';
    std::fs::write(&path, &bytes).expect("edit audit.log");

    let (code, stdout, stderr) = verify(&node, "table");
    assert_eq!(
        code,
        Some(1),
        "verify must fail after an edit: {stdout}{stderr}"
    );
    assert!(
        stderr.contains("entry seq 3 (line 3) was edited"),
        "the failure names the edited entry: {stderr}"
    );
    assert!(stdout.contains("audit log NOT intact"), "{stdout}");
    let (code, stdout, _) = verify(&node, "json");
    assert_eq!(code, Some(1));
    let v: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(v["intact"], false);
    let problems = v["problems"].as_array().cloned().unwrap_or_default();
    assert_eq!(problems.len(), 1, "{v:#}");
    assert_eq!(
        (
            &problems[0]["line"],
            &problems[0]["seq"],
            &problems[0]["kind"]
        ),
        (&Value::from(3), &Value::from(3), &Value::from("edited")),
        "{v:#}"
    );
}
