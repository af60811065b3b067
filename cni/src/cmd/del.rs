//! DEL: idempotent and best effort. It succeeds twice, without CNI_NETNS or
//! prevResult, after the netns is gone, before any ADD, and while the enforcer is
//! down (then the enforcer's part waits on disk and is replayed when it is back).

use zonewarden_proto::v1;

use super::Invocation;
use crate::client::Enforcer;
use crate::config::Mode;
use crate::delqueue;
use crate::error::{CniError, ErrorCode, from_link};
use crate::ipam::Target;
use crate::link;

pub fn del(inv: &Invocation<'_>) -> Result<(), CniError> {
    let mut first_error = None;
    if inv.conf.mode == Mode::Routed {
        // Release the lease before anything else (it needs no netns).
        if let Some(ipam) = inv.ipam()
            && let Err(e) = ipam.run("DEL", &Target::default())
        {
            tracing::error!(err = %e, "releasing the IPAM lease failed");
            first_error = Some(e);
        }
        // Deleting the host side removes its peer and its routes, wherever the netns is.
        match link::teardown_routed(&inv.host_ifname()) {
            Ok(removed) => tracing::debug!(removed, "host veth"),
            Err(e) => {
                tracing::error!(err = %e, "deleting the veth failed");
                first_error.get_or_insert(from_link(e));
            }
        }
    }
    deregister(inv)?;
    first_error.map_or(Ok(()), Err)
}

fn deregister(inv: &Invocation<'_>) -> Result<(), CniError> {
    let key = inv.key();
    let attempt = Enforcer::connect(&inv.conf.socket).and_then(|mut enforcer| {
        let req = v1::DelEndpointRequest {
            key: Some(key.clone()),
        };
        enforcer.call(
            "DelEndpoint",
            |mut c| async move { c.del_endpoint(req).await },
        )
    });
    match attempt {
        Ok(resp) => {
            tracing::info!(removed = resp.removed, "endpoint deregistered");
            Ok(())
        }
        Err(e) if e.code == ErrorCode::TryAgainLater => {
            let dir = inv.conf.pending_del_dir();
            tracing::warn!(err = %e, dir = %dir.display(), "enforcer unreachable: DEL queued for replay");
            delqueue::enqueue(&dir, &key.network, &key.container_id, &key.ifname)
        }
        Err(e) => Err(e),
    }
}
