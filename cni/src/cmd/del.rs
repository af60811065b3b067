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
    if inv.conf.mode != Mode::Routed {
        return deregister(inv);
    }
    // Deleting the host side removes its peer and its routes, wherever the netns is.
    // The kernel makes that wait for RCU grace periods (about as long as the rest of
    // DEL together), so it runs beside the lease release and the deregistration,
    // which do not depend on it.
    let host_ifname = inv.host_ifname();
    let (veth, ipam, enforcer) = std::thread::scope(|scope| {
        let veth = scope.spawn(|| link::teardown_routed(&host_ifname));
        let ipam = match inv.ipam() {
            Some(ipam) => ipam.run("DEL", &Target::default()).map(drop),
            None => Ok(()),
        };
        let enforcer = deregister(inv);
        let veth = veth
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (veth, ipam, enforcer)
    });
    let mut first_error = None;
    if let Err(e) = ipam {
        tracing::error!(err = %e, "releasing the IPAM lease failed");
        first_error = Some(e);
    }
    match veth {
        Ok(removed) => tracing::debug!(removed, "host veth"),
        Err(e) => {
            tracing::error!(err = %e, "deleting the veth failed");
            first_error.get_or_insert(from_link(e));
        }
    }
    enforcer?;
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
