//! CHECK: the attachment is still what ADD made: interface, addresses, routes, the
//! IPAM lease and the enforcer's record with its set elements.

use zonewarden_proto::v1;

use super::{Invocation, host_prefixes};
use crate::client::Enforcer;
use crate::env::Command;
use crate::error::{CniError, ErrorCode, from_link};
use crate::ipam::Target;
use crate::link;
use crate::result::CniResult;
use zonewarden_profiles::AttachMode;

pub fn check(inv: &Invocation<'_>) -> Result<(), CniError> {
    inv.require_version(Command::Check)?;
    inv.container_netns()?;
    let prev_value = inv.conf.prev_result.as_ref().ok_or_else(|| {
        CniError::config("CHECK needs the prevResult of the ADD; the runtime did not pass one")
    })?;
    let prev = CniResult::from_value(prev_value, "prevResult")?;
    let index = prev.container_interface(&inv.env.ifname);
    let addrs = host_prefixes(&prev.ips_of(index));
    let mut enforcer = Enforcer::connect(&inv.conf.socket)?;
    let mut problems = Vec::new();

    let req = v1::CheckEndpointRequest {
        key: Some(inv.key()),
    };
    let resp = enforcer.call("CheckEndpoint", |mut c| async move {
        c.check_endpoint(req).await
    })?;
    let recorded = resp.endpoint.filter(|_| resp.found);
    match &recorded {
        None => problems.push("the enforcer has no record of this attachment".into()),
        Some(ep) => {
            let mut want: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            let mut have = ep.ips.clone();
            want.sort();
            have.sort();
            if want != have {
                problems.push(format!(
                    "the enforcer records addresses [{}] but prevResult has [{}]",
                    have.join(", "),
                    want.join(", ")
                ));
            }
        }
    }

    match inv.conf.mode {
        AttachMode::Routed => {
            if let Some(ipam) = inv.ipam() {
                ipam.run("CHECK", &Target::default())?;
            }
            let mut spec = inv.routed_spec(addrs.clone());
            // The recorded name: an attachment made by an earlier version has its host
            // end under the name without the network.
            if let Some(host) = recorded.as_ref().map(|ep| &ep.host_ifname)
                && !host.is_empty()
            {
                spec.host_ifname = host.clone();
            }
            problems.extend(link::verify_routed(&spec).map_err(from_link)?);
        }
        AttachMode::Sidecar => problems.push(
            "mode \"sidecar\" is not a plugin mode: the pod's sidecar enforcer checks itself"
                .to_owned(),
        ),
        AttachMode::Chained => {
            let netns = inv.env.netns.clone().unwrap_or_default();
            match link::pod_interface(&netns, &inv.env.ifname).map_err(from_link)? {
                None => problems.push(format!(
                    "interface {} is missing in {}",
                    inv.env.ifname,
                    netns.display()
                )),
                Some(pod) => {
                    let have = host_prefixes(&pod.addrs);
                    for addr in addrs.iter().filter(|a| !have.contains(a)) {
                        problems.push(format!("address {addr} is missing on {}", inv.env.ifname));
                    }
                }
            }
        }
    }
    problems.extend(resp.problems);

    if problems.is_empty() {
        return Ok(());
    }
    Err(CniError::new(
        ErrorCode::CheckFailed,
        format!(
            "CHECK of {}/{} found {} problem(s): {}",
            inv.env.container_id,
            inv.env.ifname,
            problems.len(),
            problems.join("; ")
        ),
    ))
}
