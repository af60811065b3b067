//! Every Kubernetes manifest under `deploy/kubernetes` is valid against the Kubernetes
//! API's own schemas, offline: `kubernetes-validate` (from PyPI, with the schemas of
//! every Kubernetes release inside; scripts/install-deps installs it in a venv of its
//! own), strictly (an unknown or misspelt field is an error), for the oldest and the
//! newest release this project supports. A missing validator fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where scripts/install-deps installs the validator.
const VALIDATOR: &str = "/opt/zonewarden-tests/kubernetes-validate/bin/kubernetes-validate";

/// The Kubernetes releases the manifests must be valid for.
const RELEASES: [&str; 2] = ["1.28.0", "1.37.0"];

/// Every manifest under deploy/kubernetes, its subdirectories (cluster mode's
/// settings) included.
fn manifests() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let mut files = Vec::new();
    let mut dirs = vec![dir.clone()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .filter_map(Result::ok)
        {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "no manifest in {}", dir.display());
    files
}

/// Runs the validator strictly against one release; returns success and what it said.
fn validate(release: &str, files: &[PathBuf]) -> (bool, String) {
    assert!(
        Path::new(VALIDATOR).is_file(),
        "{VALIDATOR} is missing: run scripts/install-deps (as root), which installs \
         kubernetes-validate from PyPI into that venv"
    );
    let out = Command::new(VALIDATOR)
        .args(["--strict", "--kubernetes-version", release])
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {VALIDATOR}: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn every_manifest_is_valid_against_the_kubernetes_schemas() {
    let files = manifests();
    for release in RELEASES {
        let (ok, said) = validate(release, &files);
        assert!(
            ok && !said.contains("ERROR") && !said.contains("WARN"),
            "deploy/kubernetes is not valid for Kubernetes {release}:\n{said}"
        );
        for file in &files {
            let name = file.display().to_string();
            assert!(
                said.lines()
                    .any(|l| l.contains(&name) && l.contains("passed for resource")),
                "{name} was not validated for Kubernetes {release}:\n{said}"
            );
        }
    }
}

/// The validator is strict: the shipped DaemonSet with one misspelt field fails, so a
/// pass above means something.
#[test]
fn a_misspelt_field_fails_validation() {
    let daemonset =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/zonewarden.yaml");
    let text = std::fs::read_to_string(&daemonset).expect("read manifest");
    assert!(
        text.contains("hostNetwork: true"),
        "{} has no hostNetwork to misspell",
        daemonset.display()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = dir.path().join("misspelt.yaml");
    std::fs::write(
        &broken,
        text.replace("hostNetwork: true", "hostNetwrok: true"),
    )
    .expect("write manifest");
    let (ok, said) = validate(RELEASES[1], &[broken]);
    assert!(
        !ok && said.contains("hostNetwrok"),
        "the validator must reject an unknown field and name it:\n{said}"
    );
}

/// The enforcer container's start script (its `sh -c` argument), with its etcd
/// certificate directory moved to `etcd_dir`.
fn start_script(etcd_dir: &Path) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/zonewarden.yaml"),
    )
    .expect("read manifest");
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).expect("the manifest is YAML");
    let daemonset = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    let enforcer = &daemonset["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(enforcer["command"], serde_json::json!(["/bin/sh", "-c"]));
    enforcer["args"][0]
        .as_str()
        .expect("the start script")
        .replace("/etc/zonewarden/etcd", &etcd_dir.display().to_string())
}

/// Runs the start script with `env`, the enforcer replaced by a program that prints
/// the arguments it was given, one per line.
fn enforcer_args(etcd_dir: &Path, env: &[(&str, &str)]) -> Vec<String> {
    let bin = tempfile::tempdir().expect("temp dir");
    let printer = bin.path().join("zonewarden-enforcer");
    std::fs::write(&printer, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").expect("write printer");
    std::fs::set_permissions(
        &printer,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod printer");
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(start_script(etcd_dir))
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.path().display()))
        .envs(env.iter().copied())
        .output()
        .expect("run the start script");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Without the zonewarden-cluster ConfigMap the enforcer runs on the local store;
/// with it, on etcd, with the node's address and, when the Secret holds them, the
/// CA and the client certificate.
#[test]
fn the_daemonset_starts_the_enforcer_locally_or_in_cluster_mode() {
    let etcd_dir = tempfile::tempdir().expect("temp dir");
    let node = [("NODE_NAME", "worker-1"), ("NODE_IP", "10.0.0.21")];
    let local = enforcer_args(etcd_dir.path(), &node);
    assert_eq!(
        local,
        [
            "--socket",
            "/run/zonewarden/enforcer.sock",
            "--state-dir",
            "/var/lib/zonewarden",
            "--node",
            "worker-1"
        ]
    );

    let mut cluster = node.to_vec();
    cluster.push((
        "ETCD_ENDPOINTS",
        "http://10.0.0.11:2379,http://10.0.0.12:2379",
    ));
    let plain = enforcer_args(etcd_dir.path(), &cluster);
    assert_eq!(
        plain[6..],
        [
            "--store",
            "etcd",
            "--etcd-endpoints",
            "http://10.0.0.11:2379,http://10.0.0.12:2379",
            "--etcd-prefix",
            "/zonewarden",
            "--node-address",
            "10.0.0.21"
        ]
    );

    for file in ["ca.crt", "tls.crt", "tls.key"] {
        std::fs::write(etcd_dir.path().join(file), "PEM").expect("write certificate");
    }
    cluster.push(("ETCD_PREFIX", "/prod"));
    let tls = enforcer_args(etcd_dir.path(), &cluster);
    let dir = etcd_dir.path().display().to_string();
    assert_eq!(
        tls[10..],
        [
            "--etcd-prefix".to_owned(),
            "/prod".to_owned(),
            "--node-address".to_owned(),
            "10.0.0.21".to_owned(),
            "--etcd-ca".to_owned(),
            format!("{dir}/ca.crt"),
            "--etcd-cert".to_owned(),
            format!("{dir}/tls.crt"),
            "--etcd-key".to_owned(),
            format!("{dir}/tls.key"),
        ]
    );
}

/// The sidecar snippet: the injected container runs `zonewarden-enforcer --sidecar`
/// with NET_ADMIN as its only capability, in the pod's own namespaces, with the
/// pod's identity from the Downward API in the variables the enforcer reads; every
/// flag it passes is one the enforcer has (its real `--help`).
#[test]
fn the_sidecar_snippet_gives_the_pod_identity_and_net_admin_only() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/kubernetes/sidecar/web-with-sidecar.yaml"),
    )
    .expect("read the sidecar manifest");
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).expect("the manifest is YAML");
    let pod = &docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment")["spec"]["template"]["spec"];
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(pod[host].is_null(), "the pod must not use {host}");
    }
    let sidecar = pod["initContainers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "zonewarden"))
        .expect("the zonewarden initContainer");
    assert_eq!(sidecar["restartPolicy"], "Always", "a native sidecar");
    let security = &sidecar["securityContext"];
    assert_eq!(
        security["capabilities"]["add"],
        serde_json::json!(["NET_ADMIN"])
    );
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(security["privileged"].is_null() || security["privileged"] == false);
    let fields: std::collections::BTreeMap<&str, &str> = sidecar["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?,
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str()?,
            ))
        })
        .collect();
    for (var, field) in [
        ("NODE_NAME", "spec.nodeName"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_NAME", "metadata.name"),
        ("POD_IPS", "status.podIPs"),
        (
            "POD_ZONE_ANNOTATION",
            "metadata.annotations['zonewarden.io/zone']",
        ),
    ] {
        assert_eq!(fields.get(var), Some(&field), "{var} from the Downward API");
    }
    let args: Vec<&str> = sidecar["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(args.first(), Some(&"--sidecar"));
    let help = Command::new(zonewarden_tests::bin("zonewarden-enforcer"))
        .arg("--help")
        .output()
        .expect("zonewarden-enforcer --help (cargo build --workspace first)");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "the enforcer has no flag {flag}:\n{help}"
        );
    }
}
