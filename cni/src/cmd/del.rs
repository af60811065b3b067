//! DEL: idempotent and best effort. It succeeds twice, without CNI_NETNS or
//! prevResult, after the netns is gone, before any ADD, and while the enforcer is
//! down (then the enforcer's part waits on disk and is replayed when it is back).

use zonewarden_proto::v1;

use super::Invocation;
use crate::client::Enforcer;
use crate::delqueue;
use crate::error::{CniError, ErrorCode, from_link};
use crate::ipam::Target;
use crate::link;
use zonewarden_profiles::AttachMode;

pub fn del(inv: &Invocation<'_>) -> Result<(), CniError> {
    if inv.conf.mode != AttachMode::Routed {
        return deregister(inv, false).map(drop);
    }
    // The enforcer first: it removes the endpoint's rules and takes the host veth over
    // (the routes go at once, the link in the background), because deleting a veth
    // makes the kernel wait for RCU grace periods, longer than the rest of DEL
    // together. Meanwhile the pod end is released here (down, no address, renamed),
    // so CNI_IFNAME is free in the netns when DEL returns: a runtime may ADD another
    // sandbox into it at once. When the enforcer cannot take the veth over (it is
    // away, or the endpoint was not registered), the veth is deleted here, beside the
    // lease release. Deleting the host side removes its peer and its routes, wherever
    // the netns is.
    let enforcer = std::thread::scope(|scope| {
        scope.spawn(|| release_pod_end(inv));
        deregister(inv, true)
    });
    let retired = matches!(enforcer, Ok(true));
    let (veth, ipam) = std::thread::scope(|scope| {
        let veth = (!retired).then(|| scope.spawn(|| teardown_host_end(inv)));
        let ipam = match inv.ipam() {
            Some(ipam) => ipam.run("DEL", &Target::default()).map(drop),
            None => Ok(()),
        };
        let veth = veth.map(|thread| {
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        (veth, ipam)
    });
    let mut first_error = None;
    if let Err(e) = ipam {
        tracing::error!(err = %e, "releasing the IPAM lease failed");
        first_error = Some(e);
    }
    match veth {
        None => tracing::debug!("host veth retired by the enforcer"),
        Some(Ok(removed)) => tracing::debug!(removed, "host veth"),
        Some(Err(e)) => {
            tracing::error!(err = %e, "deleting the veth failed");
            first_error.get_or_insert(from_link(e));
        }
    }
    enforcer?;
    first_error.map_or(Ok(()), Err)
}

/// Frees CNI_IFNAME in the pod when it is this attachment's pod end. Best effort: a
/// netns that is gone (or not given, as in containerd's second DEL) has nothing to
/// free, and whatever is left is deleted with the pair.
fn release_pod_end(inv: &Invocation<'_>) {
    let Some(netns) = inv.env.netns.as_deref() else {
        return;
    };
    if !crate::netns::netns_exists(netns) {
        return;
    }
    match link::release_pod_end(netns, &inv.env.ifname, &inv.host_ifname_candidates()) {
        Ok(released) => tracing::debug!(released, "pod end"),
        Err(e) => tracing::warn!(err = %e, "cannot release the pod end; it goes with the veth"),
    }
}

/// Deletes this attachment's host end under its name or under the name earlier
/// versions gave it; whether one was there.
fn teardown_host_end(inv: &Invocation<'_>) -> Result<bool, link::LinkError> {
    for name in inv.host_ifname_candidates() {
        if link::teardown_routed(&name)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Removes the endpoint from the enforcer (or queues that when it is away); returns
/// whether the enforcer took over the host veth (`retire`: routed mode asks it to).
fn deregister(inv: &Invocation<'_>, retire: bool) -> Result<bool, CniError> {
    let key = inv.key();
    let attempt = Enforcer::connect(&inv.conf.socket).and_then(|mut enforcer| {
        let req = v1::DelEndpointRequest {
            key: Some(key.clone()),
            retire_host_link: retire,
        };
        enforcer.call(
            "DelEndpoint",
            |mut c| async move { c.del_endpoint(req).await },
        )
    });
    match attempt {
        Ok(resp) => {
            tracing::info!(
                removed = resp.removed,
                host_link_retired = resp.host_link_retired,
                "endpoint deregistered"
            );
            Ok(resp.host_link_retired)
        }
        Err(e) if e.code == ErrorCode::TryAgainLater => {
            let dir = inv.conf.pending_del_dir();
            tracing::warn!(err = %e, dir = %dir.display(), "enforcer unreachable: DEL queued for replay");
            delqueue::enqueue(&dir, &key.network, &key.container_id, &key.ifname).map(|()| false)
        }
        Err(e) => Err(e),
    }
}
