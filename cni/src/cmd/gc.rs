//! GC: remove every endpoint, veth and lease of this network that is not in
//! `cni.dev/valid-attachments` (or the older `cni.dev/attachments`). With neither key
//! (as `cnitool gc` sends) nothing is removed: absence of the list is not an empty list.
//! A key that is present but `null` (libcni's nil list) is an empty list: everything
//! of this network goes. GC goes on past errors and reports them all at the end.
//!
//! The runtime's list was made before GC ran, so an ADD still running may be missing
//! from it. GC holds the ADD/GC lock ([`crate::attach_lock`]) exclusively, so no ADD
//! runs while it looks at veths, and it keeps every endpoint that was registered (or
//! registered again) after it started: it lists the endpoints once before it takes
//! the lock and removes only those that were already there, unchanged.

use std::collections::HashSet;

use zonewarden_proto::v1;

use super::Invocation;
use crate::attach_lock::{self, Kind};
use crate::client::Enforcer;
use crate::env::Command;
use crate::error::{CniError, from_link};
use crate::ipam::Target;
use crate::link::{self, HOST_IFNAME_PREFIX, host_ifname, is_host_ifname, legacy_host_ifname};

pub fn gc(inv: &Invocation<'_>) -> Result<(), CniError> {
    inv.require_version(Command::Gc)?;
    let Some(valid) = &inv.conf.valid_attachments else {
        tracing::info!("GC without cni.dev/valid-attachments: nothing is removed");
        return Ok(());
    };
    let keep: HashSet<(&str, &str)> = valid
        .iter()
        .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
        .collect();
    let mut enforcer = Enforcer::connect(&inv.conf.socket)?;
    // Each endpoint as (network, container, ifname, registration time).
    let identity = |ep: &v1::Endpoint| {
        ep.key.as_ref().map(|k| {
            (
                k.network.clone(),
                k.container_id.clone(),
                k.ifname.clone(),
                ep.created_unix_ms,
            )
        })
    };
    let before: HashSet<_> = list_endpoints(&mut enforcer)?
        .iter()
        .filter_map(identity)
        .collect();
    tracing::debug!(
        lock = %attach_lock::lock_path(&inv.conf.socket).display(),
        "GC: taking the ADD/GC lock, waiting for running ADDs to finish"
    );
    let _lock = attach_lock::acquire(&inv.conf.socket, Kind::Exclusive, attach_lock::GC_WAIT)?;
    let all = list_endpoints(&mut enforcer)?;
    let mut failures = Vec::new();

    for ep in &all {
        let Some(key) = ep.key.as_ref().filter(|k| k.network == inv.conf.name) else {
            continue;
        };
        if keep.contains(&(key.container_id.as_str(), key.ifname.as_str())) {
            continue;
        }
        if identity(ep).is_none_or(|id| !before.contains(&id)) {
            tracing::info!(container = %key.container_id, ifname = %key.ifname, "GC: kept an attachment added while GC started");
            continue;
        }
        tracing::info!(container = %key.container_id, ifname = %key.ifname, "GC: removing stale attachment");
        if let Err(e) = collect(inv, &mut enforcer, key, &ep.host_ifname) {
            failures.push(format!("{}/{}: {}", key.container_id, key.ifname, e.msg));
        }
    }

    // Veths of ours that no endpoint and no valid attachment accounts for are leaks.
    let mut owned: HashSet<String> = all.iter().map(|ep| ep.host_ifname.clone()).collect();
    for a in valid {
        owned.insert(host_ifname(&inv.conf.name, &a.container_id, &a.ifname));
        owned.insert(legacy_host_ifname(&a.container_id, &a.ifname));
    }
    match link::list_host_links(HOST_IFNAME_PREFIX) {
        Ok(links) => {
            for name in links
                .into_iter()
                .filter(|n| is_host_ifname(n) && !owned.contains(n))
            {
                tracing::info!(veth = %name, "GC: removing orphaned veth");
                if let Err(e) = link::teardown_routed(&name) {
                    failures.push(format!("veth {name}: {e}"));
                }
            }
        }
        Err(e) => failures.push(format!("listing veths: {e}")),
    }

    // zonewarden IPAM: leases that no registered endpoint and no valid attachment
    // holds were left by ADDs that were killed (no ADD runs now: GC holds the lock).
    if inv.enforcer_ipam() {
        let req = v1::ReleaseAddressesRequest {
            key: None,
            network: inv.conf.name.clone(),
            keep: valid
                .iter()
                .map(|a| v1::AttachmentKey {
                    network: inv.conf.name.clone(),
                    container_id: a.container_id.clone(),
                    ifname: a.ifname.clone(),
                })
                .collect(),
        };
        if let Err(e) = enforcer.call("ReleaseAddresses", |mut c| async move {
            c.release_addresses(req).await
        }) {
            failures.push(e.msg);
        }
    }

    if let Some(ipam) = inv.ipam()
        && ipam.supports("1.1.0").unwrap_or(false)
        && let Err(e) = ipam.run("GC", &Target::default())
    {
        failures.push(e.msg);
    }

    if failures.is_empty() {
        return Ok(());
    }
    Err(CniError::io(format!(
        "GC could not remove everything ({} failure(s)): {}",
        failures.len(),
        failures.join("; ")
    )))
}

fn list_endpoints(enforcer: &mut Enforcer) -> Result<Vec<v1::Endpoint>, CniError> {
    let req = v1::ListEndpointsRequest::default();
    Ok(enforcer
        .call("ListEndpoints", |mut c| async move {
            c.list_endpoints(req).await
        })?
        .endpoints)
}

fn collect(
    inv: &Invocation<'_>,
    enforcer: &mut Enforcer,
    key: &v1::AttachmentKey,
    host: &str,
) -> Result<(), CniError> {
    if let Some(ipam) = inv.ipam() {
        let target = Target {
            container_id: Some(&key.container_id),
            ifname: Some(&key.ifname),
            netns: Some(""),
        };
        ipam.run("DEL", &target)?;
    }
    if !host.is_empty() {
        link::teardown_routed(host).map_err(from_link)?;
    }
    let req = v1::DelEndpointRequest {
        key: Some(key.clone()),
        retire_host_link: false,
    };
    enforcer.call(
        "DelEndpoint",
        |mut c| async move { c.del_endpoint(req).await },
    )?;
    Ok(())
}
