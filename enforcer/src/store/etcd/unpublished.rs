//! Endpoints of this node that etcd has not seen yet: an ADD or a DEL made while etcd
//! was unreachable is enforced locally at once and its record queued here, in a file
//! under the state directory (written atomically, so a restart keeps it). The queue is
//! written with the next transaction that reaches etcd, or by the publisher task,
//! whichever comes first; a load overlays it on what etcd holds.
//!
//! Only this node's endpoint records are queued: a change that needs anything else of
//! the store (a new zone's id, a profile) is refused while etcd is away.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// The queue file's content: etcd key → the record (`None`: delete it).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    pub writes: BTreeMap<String, Option<serde_json::Value>>,
}

/// The queue and its file.
#[derive(Debug)]
pub struct Unpublished {
    path: PathBuf,
    pub queue: Queue,
}

impl Unpublished {
    /// Reads the queue at `path` (empty when the file does not exist).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let queue = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Queue::default(),
            Err(source) => {
                return Err(StoreError::Io {
                    action: "read",
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            queue,
        })
    }

    /// Adds `writes` (later writes of a key replace earlier ones) and persists the
    /// queue before returning.
    pub fn push(&mut self, writes: &[(String, Option<Vec<u8>>)]) -> Result<(), StoreError> {
        let mut queue = self.queue.clone();
        for (key, value) in writes {
            let value = match value {
                Some(bytes) => {
                    Some(
                        serde_json::from_slice(bytes).map_err(|e| StoreError::Refused {
                            action: "queue an endpoint record",
                            detail: e.to_string(),
                        })?,
                    )
                }
                None => None,
            };
            queue.writes.insert(key.clone(), value);
        }
        self.persist(&queue)?;
        self.queue = queue;
        Ok(())
    }

    /// What is queued, as the store writes it.
    pub fn writes(&self) -> Vec<(String, Option<Vec<u8>>)> {
        self.queue
            .writes
            .iter()
            .map(|(key, value)| {
                let bytes = value
                    .as_ref()
                    .map(|v| serde_json::to_vec(v).expect("JSON always encodes"));
                (key.clone(), bytes)
            })
            .collect()
    }

    /// Empties the queue once etcd holds it.
    pub fn clear(&mut self) -> Result<(), StoreError> {
        if self.queue.writes.is_empty() {
            return Ok(());
        }
        self.persist(&Queue::default())?;
        self.queue = Queue::default();
        Ok(())
    }

    fn persist(&self, queue: &Queue) -> Result<(), StoreError> {
        let io = |action: &'static str| {
            let path = self.path.clone();
            move |source| StoreError::Io {
                action,
                path,
                source,
            }
        };
        let json = serde_json::to_vec_pretty(queue).expect("the queue always encodes");
        let mut file =
            atomic_write_file::AtomicWriteFile::open(&self.path).map_err(io("open for writing"))?;
        file.write_all(&json).map_err(io("write"))?;
        file.commit().map_err(io("commit"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_survives_a_restart_and_later_writes_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unpublished.json");
        let mut queue = Unpublished::open(&path).unwrap();
        queue
            .push(&[("/zw/endpoints/n/a".into(), Some(b"{\"v\":1}".to_vec()))])
            .unwrap();
        queue.push(&[("/zw/endpoints/n/a".into(), None)]).unwrap();
        queue
            .push(&[("/zw/endpoints/n/b".into(), Some(b"{\"v\":2}".to_vec()))])
            .unwrap();
        let again = Unpublished::open(&path).unwrap();
        assert_eq!(
            again.writes(),
            [
                ("/zw/endpoints/n/a".to_owned(), None),
                ("/zw/endpoints/n/b".to_owned(), Some(b"{\"v\":2}".to_vec())),
            ]
        );
        let mut again = again;
        again.clear().unwrap();
        assert!(Unpublished::open(&path).unwrap().writes().is_empty());
        std::fs::write(&path, "{ broken").unwrap();
        let err = Unpublished::open(&path).unwrap_err().to_string();
        assert!(err.contains("unpublished.json"), "{err}");
    }
}
