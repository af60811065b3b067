//! Builders shared by the unit tests.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::nft::listing::ListedElement;
use crate::nft::{Dataplane, ElementChange, NftError};
use zonewarden_profiles::{AttachMode, AttachmentKey, Endpoint, ZoneName, ZoneSource};

pub fn key(container_id: &str) -> AttachmentKey {
    AttachmentKey {
        network: "podnet".into(),
        container_id: container_id.into(),
        ifname: "eth0".into(),
    }
}

pub fn endpoint(container_id: &str, zone: &str, ips: &[&str]) -> Endpoint {
    Endpoint {
        key: key(container_id),
        zone: ZoneName::parse(zone).unwrap(),
        zone_source: ZoneSource::Config,
        netns: format!("/var/run/netns/{container_id}"),
        host_ifname: Some(format!("zw{container_id}")),
        ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        mac: None,
        node: "node-1".into(),
        pod_namespace: None,
        pod_name: None,
        attach_mode: AttachMode::Routed,
        created_unix_ms: 1_700_000_000_000,
    }
}

/// Holds elements in memory; refuses to delete a missing element or add an existing
/// one, like a real nft transaction. `fail_next` makes the next apply fail.
#[derive(Default)]
pub struct FakeDataplane {
    pub elements: Mutex<BTreeMap<IpAddr, ListedElement>>,
    pub fail_next: AtomicBool,
}

impl Dataplane for FakeDataplane {
    fn ensure_structure(&self) -> Result<usize, NftError> {
        Ok(0)
    }

    fn apply(&self, change: &ElementChange) -> Result<(), NftError> {
        let failed = |stderr: String| NftError::Failed {
            action: "apply".into(),
            status: "exit 1".into(),
            stderr,
        };
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(failed("injected failure".into()));
        }
        let mut elements = self.elements.lock().unwrap();
        let mut next = elements.clone();
        for addr in &change.delete {
            next.remove(addr)
                .ok_or_else(|| failed(format!("delete of missing {addr}")))?;
        }
        for e in &change.add {
            let listed = ListedElement {
                zone_id: e.zone_id,
                comment: Some(e.comment.clone()),
            };
            if next.insert(e.addr, listed).is_some() {
                return Err(failed(format!("add of existing {}", e.addr)));
            }
        }
        *elements = next;
        Ok(())
    }

    fn list_elements(&self) -> Result<BTreeMap<IpAddr, ListedElement>, NftError> {
        Ok(self.elements.lock().unwrap().clone())
    }
}
