//! The image the Kubernetes manifest names, as root: built offline by
//! `deploy/image/build-image` (a debootstrapped Debian root imported with podman, plus
//! the binaries of this build) and run by podman exactly as the DaemonSet in
//! `deploy/kubernetes/zonewarden.yaml` says (read from the manifest: host network of a
//! node namespace, privileged, its hostPath and ConfigMap mounts, its commands, its
//! readiness probe). The install-cni init container puts the plugin and the conflist
//! into the node's CNI dirs, the enforcer container serves, and pods attach through
//! what was installed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use zonewarden_tests::attach::endpoint_of;
use zonewarden_tests::cni::{Attachment, Conflist, first_ip};
use zonewarden_tests::netns::{Netns, run_ok};
use zonewarden_tests::node::Node;
use zonewarden_tests::podman::Podman;
use zonewarden_tests::{bin, require_root, wait};

/// The Debian root scripts/install-deps makes with deploy/image/make-rootfs.
const ROOTFS: &str = "/var/cache/zonewarden-tests/debian-bookworm-rootfs.tar";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The manifest's objects of `kind`.
fn objects(kind: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("deploy/kubernetes/zonewarden.yaml"))
        .expect("read the manifest");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("the manifest is YAML");
    docs.into_iter().filter(|d| d["kind"] == kind).collect()
}

/// Where each of the DaemonSet's volumes is on this test's node: hostPaths in the
/// node's directory, the ConfigMap as files.
fn volumes(node: &Node, pod: &Value, config_map: &Value) -> BTreeMap<String, PathBuf> {
    let host_paths = BTreeMap::from([
        ("/run/zonewarden", node.dir.path().join("run")),
        ("/var/lib/zonewarden", node.state_dir()),
        ("/opt/cni/bin", node.dir.path().join("host/opt/cni/bin")),
        ("/etc/cni/net.d", node.dir.path().join("host/etc/cni/net.d")),
    ]);
    let mut found = BTreeMap::new();
    for volume in pod["volumes"].as_array().expect("volumes") {
        let name = volume["name"].as_str().expect("volume name").to_owned();
        let dir = if let Some(path) = volume["hostPath"]["path"].as_str() {
            host_paths
                .get(path)
                .unwrap_or_else(|| panic!("the test does not know the hostPath {path}: add it"))
                .clone()
        } else if volume["configMap"]["name"] == config_map["metadata"]["name"] {
            let dir = node.dir.path().join("configmap").join(&name);
            std::fs::create_dir_all(&dir).expect("configmap dir");
            for (file, content) in config_map["data"].as_object().expect("ConfigMap data") {
                std::fs::write(dir.join(file), content.as_str().expect("text"))
                    .expect("write ConfigMap file");
            }
            dir
        } else if volume["secret"]["optional"] == true {
            // An optional Secret this single node does not have (cluster mode's
            // etcd certificates): the kubelet mounts it empty.
            node.dir.path().join("secret").join(&name)
        } else {
            panic!("the test does not know the volume {volume}: add it");
        };
        std::fs::create_dir_all(&dir).expect("volume dir");
        found.insert(name, dir);
    }
    found
}

/// `podman run` arguments for one container of the pod, as the kubelet would run it.
fn run_args(
    pod: &Value,
    container: &Value,
    volumes: &BTreeMap<String, PathBuf>,
    node_name: &str,
) -> Vec<String> {
    assert_eq!(
        pod["hostNetwork"], true,
        "the enforcer uses the host network"
    );
    assert_eq!(
        container["securityContext"]["privileged"], true,
        "{}",
        container["name"]
    );
    let mut args: Vec<String> = vec!["--network".into(), "host".into(), "--privileged".into()];
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let name = mount["name"].as_str().expect("mount name");
        let mut spec = format!(
            "{}:{}",
            volumes[name].display(),
            mount["mountPath"].as_str().expect("mountPath")
        );
        if mount["readOnly"] == true {
            spec.push_str(":ro");
        }
        args.extend(["--volume".into(), spec]);
    }
    let mut env = BTreeMap::new();
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().expect("env name");
        let from = &var["valueFrom"];
        let value = if from["fieldRef"]["fieldPath"] == "spec.nodeName" {
            node_name.to_owned()
        } else if from["fieldRef"]["fieldPath"] == "status.hostIP" {
            // The node's address (the host network of this test's node namespace).
            "127.0.0.1".to_owned()
        } else if from["configMapKeyRef"]["optional"] == true {
            // An optional key of a ConfigMap this single node does not have (cluster
            // mode): the kubelet leaves the variable unset.
            continue;
        } else {
            var["value"].as_str().expect("a plain env value").to_owned()
        };
        args.extend(["--env".into(), format!("{name}={value}")]);
        env.insert(format!("$({name})"), value);
    }
    // The kubelet expands $(VAR) in command and args.
    let expand = |s: &Value| -> String {
        let mut s = s.as_str().expect("a string").to_owned();
        for (k, v) in &env {
            s = s.replace(k, v);
        }
        s
    };
    let command: Vec<String> = container["command"]
        .as_array()
        .expect("command")
        .iter()
        .map(expand)
        .collect();
    let (entrypoint, rest) = command.split_first().expect("a command");
    args.extend(["--entrypoint".into(), entrypoint.clone()]);
    args.push(container["image"].as_str().expect("image").to_owned());
    args.extend(rest.iter().cloned());
    args.extend(
        container["args"]
            .as_array()
            .into_iter()
            .flatten()
            .map(expand),
    );
    args
}

/// The pod's `terminationGracePeriodSeconds`.
fn enforcer_grace(daemonset: &Value) -> Duration {
    let seconds = daemonset["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    Duration::from_secs(seconds)
}

#[test]
fn the_image_runs_as_the_daemonset_says_and_pods_attach() {
    require_root!();
    assert!(
        Path::new(ROOTFS).is_file(),
        "{ROOTFS} is missing: scripts/install-deps makes it (deploy/image/make-rootfs)"
    );
    let mut node = Node::new();
    let daemonset = objects("DaemonSet").pop().expect("the DaemonSet");
    let config_map = objects("ConfigMap").pop().expect("the ConfigMap");
    let pod = &daemonset["spec"]["template"]["spec"];
    let volumes = volumes(&node, pod, &config_map);

    // Build the image with this podman's storage.
    let conf_name = config_map["data"]
        .as_object()
        .and_then(|d| d.keys().next().cloned())
        .expect("a conflist in the ConfigMap");
    let shipped: Value = serde_json::from_str(
        config_map["data"][&conf_name]
            .as_str()
            .expect("conflist text"),
    )
    .expect("the ConfigMap's conflist is JSON");
    let mut podman = Podman::new(&node, &shipped);
    let target = bin("zonewarden");
    let bin_dir = target.parent().expect("target dir");
    let image = pod["containers"][0]["image"].as_str().expect("image");
    let started = std::time::Instant::now();
    let build = repo().join("deploy/image/build-image");
    run_ok(
        zonewarden_tests::podman::without_host_cache(build.to_str().expect("utf-8 path"))
            .args(["--rootfs", ROOTFS, "--tag", image, "--bin-dir"])
            .arg(bin_dir)
            .envs(podman.env()),
    );
    eprintln!("image built in {:?}", started.elapsed());

    // The init container installs the plugin and the conflist into the node's dirs.
    let init = &pod["initContainers"][0];
    let mut args: Vec<String> = vec!["run".into(), "--rm".into()];
    args.extend(run_args(pod, init, &volumes, &node.netns.name));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let said = podman.run_ok(&refs);
    assert!(said.contains("installed"), "install-cni said: {said}");
    let host_bin = node.dir.path().join("host/opt/cni/bin");
    let host_net_d = node.dir.path().join("host/etc/cni/net.d");
    let installed: Vec<String> = std::fs::read_dir(&host_net_d)
        .expect("net.d")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        installed,
        std::slice::from_ref(&conf_name),
        "only the conflist, no temp file"
    );
    let conf_text = std::fs::read_to_string(host_net_d.join(&conf_name)).expect("conflist");
    assert_eq!(
        conf_text, config_map["data"][&conf_name],
        "the installed conflist is the ConfigMap's"
    );
    assert_eq!(
        std::fs::read(host_bin.join("zonewarden"))
            .expect("the installed plugin")
            .len(),
        {
            let out = run_ok(
                podman
                    .command(&[
                        "run",
                        "--rm",
                        "--network",
                        "none",
                        "--entrypoint",
                        "stat",
                        image,
                    ])
                    .args(["-c", "%s", "/opt/zonewarden/bin/zonewarden"]),
            );
            out.trim().parse::<usize>().expect("size")
        },
        "the installed plugin is the image's"
    );

    // The enforcer container serves; its readiness probe passes.
    let enforcer = &pod["containers"][0];
    let mut args: Vec<String> = vec![
        "run".into(),
        "--detach".into(),
        "--name".into(),
        "enforcer".into(),
    ];
    args.extend(run_args(pod, enforcer, &volumes, &node.netns.name));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    podman.run_ok(&refs);
    podman.track("enforcer", None);
    let probe: Vec<&str> = enforcer["readinessProbe"]["exec"]["command"]
        .as_array()
        .expect("readiness probe")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut exec = vec!["exec", "enforcer"];
    exec.extend(&probe);
    wait::until(
        "the enforcer container's readiness probe to pass",
        Duration::from_secs(30),
        || podman.output(&exec).status.success(),
    );

    // Pods attach through the installed plugin and conflist (only the socket and the
    // lease dir point at this node's directories, as the hostPaths do).
    std::fs::remove_file(node.bin_dir().join("zonewarden")).expect("unlink plugin");
    std::os::unix::fs::symlink(
        host_bin.join("zonewarden"),
        node.bin_dir().join("zonewarden"),
    )
    .expect("use the installed plugin");
    let mut list: Value = serde_json::from_str(&conf_text).expect("conflist JSON");
    for plugin in list["plugins"].as_array_mut().expect("plugins") {
        if plugin["type"] == "zonewarden" {
            plugin["socket"] = json!(node.socket());
            plugin["ipam"]["dataDir"] = json!(node.ipam_dir());
        }
    }
    let list = Conflist::from_json(&list);
    let (a, b) = (Netns::new("ia"), Netns::new("ib"));
    let rt = json!({"io.kubernetes.cri.pod-annotations": {}});
    let at_a = Attachment::new("image-a", &a)
        .with_args("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-7d4b9c8f6-x2k9p");
    let at_b = Attachment::new("image-b", &b)
        .with_args("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=postgres-0");
    let res_a = list
        .add(&node, &at_a, &rt)
        .unwrap_or_else(|o| panic!("ADD a through the installed plugin: {o:?}"));
    let res_b = list
        .add(&node, &at_b, &rt)
        .unwrap_or_else(|o| panic!("ADD b: {o:?}"));
    assert!(a.ping(&first_ip(&res_b)), "the pods reach each other");
    let ep = endpoint_of(&node, "image-b").expect("b registered with the enforcer in the image");
    assert_eq!(ep["zone"], "shop/postgres", "{ep}");
    for (at, res) in [(&at_a, &res_a), (&at_b, &res_b)] {
        list.del(&node, at, &rt, Some(res))
            .unwrap_or_else(|o| panic!("DEL: {o:?}"));
    }
    assert!(node.endpoints().is_empty(), "{:?}", node.endpoints());
    node.wait_veths_gone("the pods' host veths to go");

    // The pod goes: SIGTERM, as the kubelet stops it.
    let grace = enforcer_grace(&daemonset);
    let stopping = std::time::Instant::now();
    podman.run_ok(&["stop", "--time", &grace.as_secs().to_string(), "enforcer"]);
    let took = stopping.elapsed();
    let exit = podman.run_ok(&["inspect", "--format", "{{.State.ExitCode}}", "enforcer"]);
    assert!(
        took < grace && exit.trim() == "0",
        "the enforcer ends by itself on SIGTERM (took {took:?}, exit code {exit}), \
         before the kubelet's grace period of {grace:?} would kill it"
    );
    podman.run_ok(&["rm", "enforcer"]);
    node.stop_enforcer(true);
    let left = podman.leftovers();
    assert!(left.is_empty(), "left behind: {left:?}");
}
