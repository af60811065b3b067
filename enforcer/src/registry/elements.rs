//! Which map elements the registry wants in the kernel, and the change from one
//! wanted state to another (or from the kernel's state to the wanted one).
//!
//! An address belongs to the newest endpoint that claims it: when a runtime reuses
//! an address before the old attachment's DEL arrived, the new pod wins, and the
//! old DEL does not remove the new pod's element.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use zonewarden_profiles::Endpoint;

use crate::nft::elements::truncated;
use crate::nft::listing::ListedElement;
use crate::nft::{Element, ElementChange};
use crate::store::ZoneIds;

/// The comment of an element: the zone and the attachment, for `nft list` readers.
pub fn element_comment(endpoint: &Endpoint) -> String {
    let key = &endpoint.key;
    let container: String = key.container_id.chars().take(12).collect();
    let attachment = format!("{}/{container}/{}", key.network, key.ifname);
    match (&endpoint.pod_namespace, &endpoint.pod_name) {
        (Some(ns), Some(pod)) => format!("{} pod {ns}/{pod} {attachment}", endpoint.zone),
        (None, Some(pod)) => format!("{} pod {pod} {attachment}", endpoint.zone),
        _ => format!("{} container {attachment}", endpoint.zone),
    }
}

/// The wanted elements of `addrs` (of every address when `addrs` is `None`).
/// Endpoints whose zone has no id yet have no element.
pub fn wanted_elements<'a>(
    endpoints: impl IntoIterator<Item = &'a Endpoint>,
    zone_ids: &ZoneIds,
    addrs: Option<&BTreeSet<IpAddr>>,
) -> BTreeMap<IpAddr, Element> {
    let mut owners: BTreeMap<IpAddr, &Endpoint> = BTreeMap::new();
    for endpoint in endpoints {
        for addr in endpoint
            .addrs()
            .filter(|a| addrs.is_none_or(|set| set.contains(a)))
        {
            let owner = owners.entry(addr).or_insert(endpoint);
            if (endpoint.created_unix_ms, &endpoint.key) > (owner.created_unix_ms, &owner.key) {
                *owner = endpoint;
            }
        }
    }
    owners
        .into_iter()
        .filter_map(|(addr, owner)| {
            let zone_id = zone_ids.get(&owner.zone)?;
            let comment = truncated(&element_comment(owner));
            Some((
                addr,
                Element {
                    addr,
                    zone_id,
                    comment,
                },
            ))
        })
        .collect()
}

/// The change that turns the `before` elements into the `after` elements.
pub fn change_between(
    before: &BTreeMap<IpAddr, Element>,
    after: &BTreeMap<IpAddr, Element>,
) -> ElementChange {
    let mut change = ElementChange::default();
    let addrs: BTreeSet<&IpAddr> = before.keys().chain(after.keys()).collect();
    for addr in addrs {
        match (before.get(addr), after.get(addr)) {
            (Some(old), Some(new)) if old == new => {}
            (old, new) => {
                if old.is_some() {
                    change.delete.push(*addr);
                }
                change.add.extend(new.cloned());
            }
        }
    }
    change
}

/// The change that turns what the kernel holds into `wanted`.
pub fn change_from_kernel(
    kernel: &BTreeMap<IpAddr, ListedElement>,
    wanted: &BTreeMap<IpAddr, Element>,
) -> ElementChange {
    let as_elements = kernel
        .iter()
        .map(|(addr, listed)| {
            let comment = listed.comment.clone().unwrap_or_default();
            (
                *addr,
                Element {
                    addr: *addr,
                    zone_id: listed.zone_id,
                    comment,
                },
            )
        })
        .collect();
    change_between(&as_elements, wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::endpoint;

    #[test]
    fn the_newest_claim_owns_an_address() {
        let old = endpoint("old", "shop/web", &["10.0.0.5/24"]);
        let mut new = endpoint("new", "shop/db", &["10.0.0.5/24", "fd00::5/64"]);
        new.created_unix_ms += 1;
        let mut ids = ZoneIds::default();
        ids.allocate(&old.zone);
        ids.allocate(&new.zone);
        let wanted = wanted_elements([&new, &old], &ids, None);
        assert_eq!(wanted.len(), 2);
        assert!(wanted.values().all(|e| e.zone_id == 2), "{wanted:?}");
        let only_old = wanted_elements([&old], &ids, None);
        let change = change_between(&wanted, &only_old);
        assert_eq!(
            change.delete.len(),
            2,
            "both addresses change or go: {change:?}"
        );
        assert_eq!(change.add.len(), 1);
        assert_eq!(change.add[0].zone_id, 1);
    }

    #[test]
    fn equal_states_need_no_change() {
        let a = endpoint("a", "shop/web", &["10.0.0.5/24"]);
        let mut ids = ZoneIds::default();
        ids.allocate(&a.zone);
        let wanted = wanted_elements([&a], &ids, None);
        assert!(change_between(&wanted, &wanted).is_empty());
        let kernel = wanted
            .iter()
            .map(|(addr, e)| {
                (
                    *addr,
                    ListedElement {
                        zone_id: e.zone_id,
                        comment: Some(e.comment.clone()),
                    },
                )
            })
            .collect();
        assert!(change_from_kernel(&kernel, &wanted).is_empty());
    }

    #[test]
    fn comments_name_the_zone_and_the_attachment() {
        let mut a = endpoint("0123456789abcdef", "shop/frontend", &[]);
        assert_eq!(
            element_comment(&a),
            "shop/frontend container podnet/0123456789ab/eth0"
        );
        a.pod_namespace = Some("shop".into());
        a.pod_name = Some("frontend-7d4b9c8f6-x2k9p".into());
        assert_eq!(
            element_comment(&a),
            "shop/frontend pod shop/frontend-7d4b9c8f6-x2k9p podnet/0123456789ab/eth0"
        );
    }
}
