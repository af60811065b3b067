//! DELs that could not reach the enforcer wait on disk beside its socket
//! (`<socket dir>/pending-del/*.json`); the enforcer replays them when it is back.

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::CniError;

#[derive(Serialize)]
struct PendingDel<'a> {
    network: &'a str,
    container_id: &'a str,
    ifname: &'a str,
}

/// Writes one pending DEL atomically (temp file, fsync, rename, dir fsync).
pub fn enqueue(
    dir: &Path,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> Result<(), CniError> {
    let fail = |e: std::io::Error| {
        CniError::io(format!(
            "cannot queue the DEL of {container_id}/{ifname} in {}: {e}",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let digest = Sha256::digest(format!("{network}/{container_id}/{ifname}"));
    let name: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    let body = serde_json::to_vec(&PendingDel {
        network,
        container_id,
        ifname,
    })
    .map_err(|e| CniError::io(format!("cannot encode a pending DEL: {e}")))?;
    let mut file =
        atomic_write_file::AtomicWriteFile::open(dir.join(format!("{name}.json"))).map_err(fail)?;
    file.write_all(&body).map_err(fail)?;
    file.commit().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_file_per_attachment() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("pending-del");
        enqueue(&q, "net", "c1", "eth0").unwrap();
        enqueue(&q, "net", "c1", "eth0").unwrap();
        enqueue(&q, "net", "c2", "eth0").unwrap();
        let files: Vec<_> = std::fs::read_dir(&q).unwrap().collect();
        assert_eq!(files.len(), 2, "a repeated DEL replaces its own entry");
        let body = std::fs::read(files[0].as_ref().unwrap().path()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["network"], "net");
        assert_eq!(v["ifname"], "eth0");
    }
}
