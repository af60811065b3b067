//! The replay of DELs that the CNI plugin could not deliver.
//!
//! When the enforcer is unreachable, the plugin's DEL still succeeds and leaves a
//! file `{"network": .., "container_id": .., "ifname": ..}` ending in `.json` in
//! `<socket dir>/pending-del/`. On start and every [`REPLAY_INTERVAL`] the enforcer
//! deletes each such endpoint (idempotently) and removes the file. A file it cannot
//! read is renamed to `*.bad` and logged, so it is neither lost nor retried forever.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tracing::{error, info, warn};
use zonewarden_profiles::AttachmentKey;

use crate::audit::Note;
use crate::registry::EndpointRegistry;

pub const REPLAY_INTERVAL: Duration = Duration::from_secs(2);

/// The queue directory next to a socket.
pub fn queue_dir(socket: &Path) -> PathBuf {
    socket
        .parent()
        .unwrap_or(Path::new("/"))
        .join("pending-del")
}

/// Fields beyond these three are ignored, so the plugin may add some later.
#[derive(Debug, Deserialize)]
struct PendingDel {
    network: String,
    container_id: String,
    ifname: String,
}

/// How one replay went.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub deleted: usize,
    pub bad: usize,
    pub retry: usize,
}

fn parse(text: &str) -> Result<AttachmentKey, String> {
    let pending: PendingDel = serde_json::from_str(text).map_err(|err| err.to_string())?;
    if [&pending.network, &pending.container_id, &pending.ifname]
        .iter()
        .any(|f| f.is_empty())
    {
        return Err("network, container_id and ifname must all be non-empty".to_owned());
    }
    Ok(AttachmentKey {
        network: pending.network.into(),
        container_id: pending.container_id.into(),
        ifname: pending.ifname.into(),
    })
}

/// Replays every queued DEL once; each removal is audited as the plugin's (root).
pub async fn replay_once(registry: &EndpointRegistry, dir: &Path) -> ReplayReport {
    let mut report = ReplayReport::default();
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return report,
        Err(err) => {
            warn!(dir = %dir.display(), %err, "cannot list the pending DEL queue");
            return report;
        }
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // Temporary files of an atomic write in progress start with a dot.
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        let parsed = match tokio::fs::read_to_string(&path).await {
            Ok(text) => parse(&text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => Err(err.to_string()),
        };
        let key = match parsed {
            Ok(key) => key,
            Err(reason) => {
                let bad = path.with_extension("json.bad");
                error!(file = %path.display(), %reason, moved_to = %bad.display(), "unreadable pending DEL; set aside");
                if let Err(err) = tokio::fs::rename(&path, &bad).await {
                    error!(file = %path.display(), %err, "cannot set aside an unreadable pending DEL");
                }
                report.bad += 1;
                continue;
            }
        };
        let note = Note::new("root", "replayed a DEL queued while the enforcer was away");
        match registry.del(key.clone(), note).await {
            Ok(removed) => {
                info!(%key, removed = removed.is_some(), "replayed a pending DEL");
                if let Err(err) = tokio::fs::remove_file(&path).await {
                    warn!(file = %path.display(), %err, "cannot remove a replayed pending DEL");
                }
                report.deleted += 1;
            }
            Err(err) => {
                warn!(%key, %err, "pending DEL failed; retrying later");
                report.retry += 1;
            }
        }
    }
    report
}

/// Creates the queue directory (mode 0700), then replays it now and every
/// [`REPLAY_INTERVAL`] until the task is dropped.
pub async fn replay_forever(registry: EndpointRegistry, dir: PathBuf) {
    if let Err(err) = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
    {
        warn!(dir = %dir.display(), %err, "cannot create the pending DEL queue directory");
    }
    let mut ticks = tokio::time::interval(REPLAY_INTERVAL);
    loop {
        ticks.tick().await;
        replay_once(&registry, &dir).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::registry::AddRequest;
    use crate::store::LocalStore;
    use crate::test_support::{key, memory_registry, note};

    #[tokio::test]
    async fn replays_queued_dels_and_sets_aside_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalStore::open(&dir.path().join("state")).unwrap());
        let registry = memory_registry(store);
        let request = AddRequest {
            key: key("c1"),
            hints: Default::default(),
            netns: String::new(),
            host_ifname: None,
            ips: vec!["10.0.0.5/24".parse().unwrap()],
            mac: None,
            attach_mode: zonewarden_profiles::AttachMode::Chained,
            bridge: None,
        };
        registry.add(request, note()).await.unwrap();

        let queue = queue_dir(&dir.path().join("run/enforcer.sock"));
        std::fs::create_dir_all(&queue).unwrap();
        let pending = r#"{"network":"podnet","container_id":"c1","ifname":"eth0"}"#;
        std::fs::write(queue.join("c1.json"), pending).unwrap();
        let unknown = r#"{"network":"podnet","container_id":"gone","ifname":"eth0"}"#;
        std::fs::write(queue.join("gone.json"), unknown).unwrap();
        std::fs::write(queue.join("broken.json"), "{\"network\":").unwrap();
        std::fs::write(queue.join(".c2.json.tmp"), "partial").unwrap();

        let report = replay_once(&registry, &queue).await;
        assert_eq!(
            report,
            ReplayReport {
                deleted: 2,
                bad: 1,
                retry: 0
            }
        );
        assert!(
            registry.get(&key("c1")).is_none(),
            "the queued DEL must remove the endpoint"
        );
        let mut left: Vec<_> = std::fs::read_dir(&queue)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".c2.json.tmp", "broken.json.bad"]);
    }

    #[test]
    fn empty_fields_are_refused() {
        let err = parse(r#"{"network":"","container_id":"c","ifname":"eth0"}"#).unwrap_err();
        assert!(err.contains("non-empty"), "{err}");
    }
}
