//! The CNI protocol without root: the error-code matrix, results per cniVersion,
//! configuration parsing and GC keys, driven through `plugin::run` exactly as the
//! binary runs it (environment map + stdin).

use std::collections::HashMap;

use serde_json::{Value, json};
use zonewarden_cni::config::NetConf;
use zonewarden_cni::plugin::run;
use zonewarden_cni::result::{CniResult, Interface, IpConfig, Route};
use zonewarden_cni::version::{CniVersion, SUPPORTED_VERSIONS};
use zonewarden_profiles::AttachMode;

fn env(command: &str) -> HashMap<String, String> {
    [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "c0ffee"),
        ("CNI_NETNS", "/run/netns/zw-test-does-not-exist"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn conf(extra: Value) -> Vec<u8> {
    let mut base = json!({
        "cniVersion": "1.0.0",
        "name": "zw-test",
        "type": "zonewarden",
        "socket": "/nonexistent/zonewarden-test/enforcer.sock",
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.77.0.0/24"}]]}
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    serde_json::to_vec(&base).unwrap()
}

/// Runs the plugin and returns (success, code, msg).
fn outcome(vars: &HashMap<String, String>, stdin: &[u8]) -> (bool, u64, String) {
    let out = run(vars, stdin);
    if out.success {
        return (true, 0, out.stdout);
    }
    let v: Value = serde_json::from_str(&out.stdout).expect("error JSON on stdout");
    assert!(
        v["cniVersion"].is_string(),
        "error JSON carries cniVersion: {v}"
    );
    (
        false,
        v["code"].as_u64().unwrap(),
        v["msg"].as_str().unwrap().to_owned(),
    )
}

/// (what, environment, stdin, expected code, a word the message must contain)
type Case = (
    &'static str,
    HashMap<String, String>,
    Vec<u8>,
    u64,
    &'static str,
);

#[test]
fn error_code_matrix() {
    let mut cases: Vec<Case> = Vec::new();
    let mut no_cmd = env("ADD");
    no_cmd.remove("CNI_COMMAND");
    cases.push(("no CNI_COMMAND", no_cmd, conf(json!({})), 4, "CNI_COMMAND"));
    let mut bad_cmd = env("ADD");
    bad_cmd.insert("CNI_COMMAND".into(), "ATTACH".into());
    cases.push(("unknown command", bad_cmd, conf(json!({})), 4, "ATTACH"));
    for var in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
        let mut e = env("ADD");
        e.remove(var);
        cases.push(("missing variable", e, conf(json!({})), 4, var));
    }
    let mut long_if = env("ADD");
    long_if.insert("CNI_IFNAME".into(), "eth0-much-too-long".into());
    cases.push((
        "long ifname",
        long_if,
        conf(json!({})),
        4,
        "eth0-much-too-long",
    ));
    let mut bad_id = env("CHECK");
    bad_id.insert("CNI_CONTAINERID".into(), "../etc".into());
    cases.push(("bad container id", bad_id, conf(json!({})), 4, "../etc"));
    cases.push(("not JSON", env("ADD"), b"{not json".to_vec(), 6, "decode"));
    cases.push((
        "wrong type",
        env("ADD"),
        br#"{"cniVersion":1}"#.to_vec(),
        6,
        "decode",
    ));
    cases.push((
        "no version",
        env("ADD"),
        conf(json!({"cniVersion": null})),
        7,
        "cniVersion",
    ));
    cases.push((
        "old version",
        env("ADD"),
        conf(json!({"cniVersion": "0.2.0"})),
        1,
        "0.2.0",
    ));
    cases.push((
        "bad name",
        env("ADD"),
        conf(json!({"name": "a/b"})),
        7,
        "a/b",
    ));
    cases.push((
        "bad mode",
        env("ADD"),
        conf(json!({"mode": "bridged"})),
        7,
        "bridged",
    ));
    cases.push((
        "sidecar is no plugin mode",
        env("ADD"),
        conf(json!({"mode": "sidecar", "ipam": null})),
        7,
        "zonewarden-enforcer --sidecar",
    ));
    cases.push((
        "routed without ipam",
        env("ADD"),
        conf(json!({"ipam": null})),
        7,
        "ipam",
    ));
    cases.push((
        "chained with ipam",
        env("ADD"),
        conf(json!({"mode": "chained"})),
        2,
        "ipam",
    ));
    cases.push((
        "ipam without type",
        env("ADD"),
        conf(json!({"ipam": {}})),
        7,
        "type",
    ));
    cases.push((
        "ipMasq",
        env("ADD"),
        conf(json!({"ipMasq": true})),
        2,
        "ipMasq",
    ));
    cases.push(("bad mtu", env("ADD"), conf(json!({"mtu": 20})), 7, "mtu"));
    cases.push((
        "negative addWaitSeconds",
        env("ADD"),
        conf(json!({"addWaitSeconds": -1})),
        7,
        "addWaitSeconds -1 is out of range",
    ));
    cases.push((
        "addWaitSeconds over a minute",
        env("ADD"),
        conf(json!({"addWaitSeconds": 61})),
        7,
        "use 0",
    ));
    cases.push((
        "addWaitSeconds not a number",
        env("ADD"),
        conf(json!({"addWaitSeconds": "5s"})),
        7,
        "addWaitSeconds \"5s\" is not a number",
    ));
    cases.push((
        "bad zone",
        env("ADD"),
        conf(json!({"zone": "Not A Zone"})),
        7,
        "zone",
    ));
    cases.push((
        "reserved zone",
        env("ADD"),
        conf(json!({"zone": "world"})),
        7,
        "reserved",
    ));
    cases.push((
        "zone under a built-in zone",
        env("ADD"),
        conf(json!({"zone": "host/x"})),
        7,
        "reserved",
    ));
    cases.push((
        "relative socket",
        env("ADD"),
        conf(json!({"socket": "x.sock"})),
        7,
        "socket",
    ));
    cases.push((
        "CHECK on 0.3.1",
        env("CHECK"),
        conf(json!({"cniVersion": "0.3.1"})),
        1,
        "CHECK",
    ));
    cases.push(("GC on 1.0.0", env("GC"), conf(json!({})), 1, "GC"));
    cases.push((
        "STATUS on 1.0.0",
        env("STATUS"),
        conf(json!({})),
        1,
        "STATUS",
    ));
    cases.push((
        "STATUS enforcer down",
        env("STATUS"),
        conf(json!({"cniVersion": "1.1.0"})),
        50,
        "/nonexistent/zonewarden-test/enforcer.sock",
    ));
    cases.push((
        "ADD missing netns",
        env("ADD"),
        conf(json!({})),
        4,
        "zw-test-does-not-exist",
    ));

    for (what, vars, stdin, code, needle) in cases {
        let (ok, got, msg) = outcome(&vars, &stdin);
        assert!(!ok, "{what}: expected failure with code {code}");
        assert_eq!(got, code, "{what}: wrong code, message: {msg}");
        assert!(
            msg.contains(needle),
            "{what}: message {msg:?} should mention {needle:?}"
        );
    }
}

#[test]
fn error_json_uses_the_request_version() {
    let out = run(
        &env("ADD"),
        &conf(json!({"cniVersion": "0.4.0", "mode": "x"})),
    );
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["cniVersion"], "0.4.0");
}

#[test]
fn version_command_ignores_dummies_and_stdin() {
    let mut vars = HashMap::new();
    for (k, v) in [
        ("CNI_COMMAND", "VERSION"),
        ("CNI_NETNS", "dummy"),
        ("CNI_IFNAME", "dummy"),
        ("CNI_PATH", "dummy"),
    ] {
        vars.insert(k.to_owned(), v.to_owned());
    }
    let out = run(&vars, br#"{"cniVersion":"1.1.0"}"#);
    assert!(out.success);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["cniVersion"], "1.1.0");
    let versions: Vec<&str> = v["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for want in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        assert!(
            versions.contains(&want),
            "VERSION must advertise {want}: {versions:?}"
        );
    }
    assert!(run(&vars, b"").success);
}

#[test]
fn chained_del_with_enforcer_down_is_queued_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("enforcer.sock");
    let stdin = conf(json!({"mode": "chained", "ipam": null, "socket": socket}));
    let mut vars = env("DEL");
    vars.insert("CNI_NETNS".into(), String::new());
    for _ in 0..2 {
        let out = run(&vars, &stdin);
        assert!(
            out.success,
            "DEL must succeed while the enforcer is down: {}",
            out.stdout
        );
        assert!(out.stdout.is_empty(), "DEL prints nothing");
    }
    let queued: Vec<_> = std::fs::read_dir(dir.path().join("pending-del"))
        .unwrap()
        .collect();
    assert_eq!(queued.len(), 1, "one pending DEL for the attachment");
}

#[test]
fn gc_keys() {
    let keep = json!([{"containerID": "a", "ifname": "eth0"}]);
    let new_key = NetConf::parse(&conf(
        json!({"cniVersion": "1.1.0", "cni.dev/valid-attachments": keep}),
    ))
    .unwrap();
    assert_eq!(new_key.valid_attachments.unwrap()[0].container_id, "a");
    let old_key = NetConf::parse(&conf(
        json!({"cniVersion": "1.1.0", "cni.dev/attachments": keep}),
    ))
    .unwrap();
    assert_eq!(old_key.valid_attachments.unwrap()[0].ifname, "eth0");
    let none = NetConf::parse(&conf(json!({"cniVersion": "1.1.0"}))).unwrap();
    assert!(
        none.valid_attachments.is_none(),
        "no key means: remove nothing"
    );
    // libcni 1.2 sends a runtime's nil list as null, under both keys (written out
    // here: conf() drops null keys).
    let with = |raw: &str| {
        let mut v: Value = serde_json::from_slice(&conf(json!({"cniVersion": "1.1.0"}))).unwrap();
        let extra: Value = serde_json::from_str(raw).unwrap();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        NetConf::parse(&serde_json::to_vec(&v).unwrap()).unwrap()
    };
    let null = with(r#"{"cni.dev/valid-attachments": null, "cni.dev/attachments": null}"#);
    assert_eq!(
        null.valid_attachments,
        Some(Vec::new()),
        "null is an empty list: nothing is valid"
    );
    let only_old_null = with(r#"{"cni.dev/attachments": null}"#);
    assert_eq!(only_old_null.valid_attachments, Some(Vec::new()));
    // GC without either key removes nothing and needs no enforcer.
    let mut vars = env("GC");
    vars.remove("CNI_CONTAINERID");
    let out = run(&vars, &conf(json!({"cniVersion": "1.1.0"})));
    assert!(out.success, "{}", out.stdout);
}

#[test]
fn config_keeps_foreign_keys_and_reads_capabilities() {
    let c = NetConf::parse(&conf(json!({
        "somethingForAnotherPlugin": {"x": 1},
        "mode": "routed",
        "mtu": 1400,
        "runtimeConfig": {"io.kubernetes.cri.pod-annotations": {"zonewarden.io/zone": "shop/db"},
                          "portMappings": [{"HostPort": 80, "ContainerPort": 8080, "Protocol": "TCP"}]},
        "prevResult": {"cniVersion": "1.0.0", "interfaces": [], "ips": []}
    })))
    .unwrap();
    assert_eq!(c.mode, AttachMode::Routed);
    assert_eq!(c.mtu, Some(1400));
    assert_eq!(
        c.add_wait,
        std::time::Duration::from_secs(5),
        "ADD waits 5 s for a restarting enforcer unless told otherwise"
    );
    assert_eq!(
        c.runtime_config.pod_annotations["zonewarden.io/zone"],
        "shop/db"
    );
    assert_eq!(c.runtime_config.port_mappings[0].container_port, 8080);
    assert!(c.prev_result.is_some());
    assert_eq!(
        c.pending_del_dir(),
        std::path::Path::new("/nonexistent/zonewarden-test/pending-del")
    );
}

fn sample_result() -> CniResult {
    CniResult {
        interfaces: vec![
            Interface {
                name: "zw0123456789a".into(),
                mac: Some("ee:ee:ee:ee:ee:ee".into()),
                ..Interface::default()
            },
            Interface {
                name: "eth0".into(),
                mac: Some("0a:58:0a:f4:00:05".into()),
                mtu: Some(1450),
                sandbox: Some("/var/run/netns/cni-1234".into()),
                ..Interface::default()
            },
        ],
        ips: vec![
            IpConfig {
                address: "10.244.0.5/32".parse().unwrap(),
                gateway: Some("169.254.1.1".parse().unwrap()),
                interface: Some(1),
            },
            IpConfig {
                address: "fd00::5/128".parse().unwrap(),
                gateway: Some("fe80::ecee:eeff:feee:eeee".parse().unwrap()),
                interface: Some(1),
            },
        ],
        routes: vec![Route {
            dst: "0.0.0.0/0".parse().unwrap(),
            gw: Some("169.254.1.1".parse().unwrap()),
            mtu: Some(1450),
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }],
        dns: Default::default(),
    }
}

#[test]
fn golden_results_per_version() {
    for v in SUPPORTED_VERSIONS {
        let version = CniVersion::parse(v).unwrap();
        insta::assert_json_snapshot!(
            format!("result_{}", v.replace('.', "_")),
            sample_result().to_value(version)
        );
    }
}

#[test]
fn results_of_older_versions_read_back() {
    for v in SUPPORTED_VERSIONS {
        let value = sample_result().to_value(CniVersion::parse(v).unwrap());
        let back = CniResult::from_value(&value, "result").unwrap();
        assert_eq!(back.ips, sample_result().ips, "{v}");
        assert_eq!(back.container_interface("eth0"), Some(1));
    }
}
