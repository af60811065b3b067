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

fn manifests() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
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
    let files = manifests();
    let text = std::fs::read_to_string(&files[0]).expect("read manifest");
    assert!(
        text.contains("hostNetwork: true"),
        "{} has no hostNetwork to misspell",
        files[0].display()
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
