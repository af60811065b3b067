//! STATUS: succeed when ADD can be served; otherwise 50 (unavailable). Fails only
//! when ADD truly cannot work, since a failing STATUS marks the node NotReady.

use zonewarden_proto::v1;

use super::Invocation;
use crate::client::Enforcer;
use crate::env::Command;
use crate::error::{CniError, ErrorCode};

pub fn status(inv: &Invocation<'_>) -> Result<(), CniError> {
    inv.require_version(Command::Status)?;
    let unavailable = |msg: String| CniError::new(ErrorCode::Unavailable, msg);
    let mut enforcer = Enforcer::connect(&inv.conf.socket).map_err(|e| unavailable(e.msg))?;
    let resp = enforcer
        .call("Status", |mut c| async move {
            c.status(v1::StatusRequest {}).await
        })
        .map_err(|e| unavailable(e.msg))?;
    if !resp.ready {
        return Err(unavailable(format!(
            "the enforcer at {} is not ready: {}",
            inv.conf.socket.display(),
            resp.message
        )));
    }
    if let Some(ipam) = inv.ipam()
        && !inv.env.path.is_empty()
    {
        ipam.status().map_err(|e| unavailable(e.msg))?;
    }
    Ok(())
}
