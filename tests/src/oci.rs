//! The runtime tests' container image, built here without any registry: Debian's
//! static busybox (`busybox-static`) as the only file of one layer, packed as an OCI
//! image layout in a tar archive that `ctr images import` and `podman load` take.
//!
//! Its default command sleeps (a pod's sandbox, "pause", does nothing but hold the
//! namespaces); `/bin/busybox` also serves as the workload's shell and tools.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::netns::run_ok;

/// Where Debian's `busybox-static` puts its binary.
pub const BUSYBOX_STATIC: &str = "/bin/busybox";

/// The name the test image is imported under.
pub const TEST_IMAGE: &str = "localhost/zonewarden-test/busybox:1";

/// Builds the test image in `dir` and returns the path of its OCI archive.
pub fn build_test_image(dir: &Path) -> PathBuf {
    let busybox = Path::new(BUSYBOX_STATIC);
    let static_binary = std::fs::read(busybox).is_ok_and(|b| is_static_elf(&b));
    assert!(
        static_binary,
        "{BUSYBOX_STATIC} is missing or not static: the runtime tests build their image \
         from Debian's busybox-static (scripts/install-deps installs it)"
    );
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("image rootfs");
    std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox into the image");
    for tool in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).expect("tool link");
    }
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("blob dir");

    // One uncompressed layer, made reproducible (names sorted, times and owners fixed).
    let layer_path = dir.join("layer.tar");
    run_ok(
        Command::new("tar")
            .args([
                "--sort=name",
                "--mtime=@0",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
            ])
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&layer_path)
            .arg("."),
    );
    let layer = std::fs::read(&layer_path).expect("read layer");
    let layer_desc = put_blob(&blobs, "application/vnd.oci.image.layer.v1.tar", &layer);
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/busybox", "sleep", "2147483647"],
            "Env": ["PATH=/bin"],
            // Nothing to shut down gracefully: stopping takes no grace period.
            "StopSignal": "SIGKILL"
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]}
    });
    let config_desc = put_blob(
        &blobs,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).expect("config JSON"),
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer_desc]
    });
    let mut manifest_desc = put_blob(
        &blobs,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).expect("manifest JSON"),
    );
    // containerd names the image after the first annotation, podman after the second.
    manifest_desc["annotations"] = json!({
        "io.containerd.image.name": TEST_IMAGE,
        "org.opencontainers.image.ref.name": TEST_IMAGE
    });
    let index = json!({"schemaVersion": 2, "manifests": [manifest_desc]});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("index JSON"),
    )
    .expect("write index.json");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("write oci-layout");
    let archive = dir.join("image.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&archive)
            .args(["oci-layout", "index.json", "blobs"]),
    );
    archive
}

/// Stores `data` as a blob named by its digest and returns its descriptor.
fn put_blob(blobs: &Path, media_type: &str, data: &[u8]) -> Value {
    let hex: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(blobs.join(&hex), data).expect("write blob");
    json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": data.len()})
}

/// Whether `elf` is an ELF executable without a program interpreter (statically linked).
fn is_static_elf(elf: &[u8]) -> bool {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 {
        return false;
    }
    let u64_at =
        |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().expect("8 bytes")) as usize;
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        elf.get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().expect("4 bytes")) != PT_INTERP)
    })
}
