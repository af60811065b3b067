//! A repeated ADD. Runtimes retry ADD with the same container id, ifname and network
//! after a timeout or a failure further down the list; the attachment the first ADD
//! made must survive that. When the enforcer already holds the attachment, ADD checks
//! it against the record (netns, mode, host veth, addresses, routes, MAC) and either
//! answers with the same result again, touching nothing (no new veth, no second
//! lease, no new registration), or fails with error 102 and leaves it as it is; the
//! runtime's DEL then removes it, and the next ADD starts afresh.

use std::path::Path;

use ipnet::IpNet;
use serde_json::Value;
use zonewarden_profiles::AttachMode;
use zonewarden_proto::v1;

use super::Invocation;
use super::add::routed_result;
use crate::client::Enforcer;
use crate::error::{CniError, ErrorCode, from_link};
use crate::link::{self, HOST_MAC, RoutedSpec, format_mac};

/// The enforcer's record of this attachment, if it holds one.
pub(super) fn registered(
    inv: &Invocation<'_>,
    enforcer: &mut Enforcer,
) -> Result<Option<v1::Endpoint>, CniError> {
    let req = v1::GetEndpointRequest {
        key: Some(inv.key()),
    };
    let resp = enforcer.call(
        "GetEndpoint",
        |mut c| async move { c.get_endpoint(req).await },
    )?;
    Ok(resp.endpoint.filter(|_| resp.found))
}

/// Answers a repeated routed ADD from the record, once the pod and the node are
/// seen to hold what it says. The result's DNS is the network config's: what the IPAM
/// plugin answered on the first ADD is not kept (host-local answers none unless told).
pub(super) fn routed(inv: &Invocation<'_>, ep: &v1::Endpoint) -> Result<Value, CniError> {
    let addrs = recorded_addrs(inv, ep)?;
    if let Some(reason) = other_sandbox(inv, ep, AttachMode::Routed) {
        return Err(conflict(inv, &[reason]));
    }
    let spec = RoutedSpec {
        netns: inv.env.netns.clone().unwrap_or_default(),
        ifname: inv.env.ifname.clone(),
        host_ifname: ep.host_ifname.clone(),
        addrs: addrs.clone(),
        mtu: inv.conf.mtu,
    };
    let mut problems = link::verify_routed(&spec).map_err(from_link)?;
    if problems.is_empty() {
        problems.extend(mac_problem(inv, &ep.mac)?);
    }
    if !problems.is_empty() {
        return Err(conflict(inv, &problems));
    }
    tracing::info!(host = %spec.host_ifname, "repeated ADD: the attachment is intact, answering it again");
    Ok(routed_result(
        inv,
        &spec.host_ifname,
        &format_mac(&HOST_MAC),
        &ep.mac,
        &addrs,
        None,
    ))
}

/// Whether a repeated chained ADD may pass `prevResult` on without registering again:
/// `Ok(true)` when the record holds exactly `addrs` and `mac` and the interface is
/// there with them, `Ok(false)` when the previous plugin now reports other addresses
/// (the record is replaced), an error when the record belongs to another sandbox or
/// the interface lacks them.
pub(super) fn chained_unchanged(
    inv: &Invocation<'_>,
    ep: &v1::Endpoint,
    addrs: &[IpNet],
    mac: &str,
    host: &link::HostPeer,
) -> Result<bool, CniError> {
    if let Some(reason) = other_sandbox(inv, ep, AttachMode::Chained) {
        return Err(conflict(inv, &[reason]));
    }
    let mut recorded = recorded_addrs(inv, ep)?;
    let mut wanted = addrs.to_vec();
    recorded.sort();
    wanted.sort();
    let same_host =
        ep.host_ifname == host.name && ep.bridge == host.bridge.clone().unwrap_or_default();
    if recorded != wanted || (!mac.is_empty() && !ep.mac.eq_ignore_ascii_case(mac)) || !same_host {
        return Ok(false);
    }
    let netns = inv.env.netns.clone().unwrap_or_default();
    let ifname = &inv.env.ifname;
    let problems: Vec<String> = match link::pod_interface(&netns, ifname).map_err(from_link)? {
        None => vec![format!(
            "interface {ifname} is missing in {}",
            netns.display()
        )],
        Some(pod) => addrs
            .iter()
            .filter(|a| !pod.addrs.iter().any(|have| have.addr() == a.addr()))
            .map(|a| format!("address {a} is missing on {ifname}"))
            .collect(),
    };
    if !problems.is_empty() {
        return Err(conflict(inv, &problems));
    }
    Ok(true)
}

fn recorded_addrs(inv: &Invocation<'_>, ep: &v1::Endpoint) -> Result<Vec<IpNet>, CniError> {
    ep.ips
        .iter()
        .map(|ip| {
            ip.parse::<IpNet>().map_err(|e| {
                conflict(
                    inv,
                    &[format!("its recorded address {ip:?} is unreadable: {e}")],
                )
            })
        })
        .collect()
}

/// Why the record is of another sandbox or another mode than this ADD, if it is.
fn other_sandbox(inv: &Invocation<'_>, ep: &v1::Endpoint, mode: AttachMode) -> Option<String> {
    let netns = inv.env.netns.as_deref().unwrap_or(Path::new(""));
    if !crate::netns::same_netns(Path::new(&ep.netns), netns) {
        return Some(format!(
            "it is registered in network namespace {}, not in {}",
            ep.netns,
            netns.display()
        ));
    }
    let registered = zonewarden_proto::model::attach_mode("attach_mode", ep.attach_mode);
    (registered != Ok(mode)).then(|| match registered {
        Ok(registered) => {
            format!("it is registered in {registered} mode, and this network is in {mode} mode")
        }
        Err(err) => format!("its record is unreadable ({err}), and this network is in {mode} mode"),
    })
}

fn mac_problem(inv: &Invocation<'_>, recorded: &str) -> Result<Option<String>, CniError> {
    let netns = inv.env.netns.clone().unwrap_or_default();
    let ifname = &inv.env.ifname;
    let pod = link::pod_interface(&netns, ifname).map_err(from_link)?;
    Ok(match pod {
        Some(pod) if pod.mac.eq_ignore_ascii_case(recorded) => None,
        Some(pod) => Some(format!(
            "pod interface {ifname} has MAC {} but {recorded} is recorded",
            pod.mac
        )),
        None => Some(format!(
            "pod interface {ifname} is missing in {}",
            netns.display()
        )),
    })
}

fn conflict(inv: &Invocation<'_>, problems: &[String]) -> CniError {
    CniError::new(
        ErrorCode::AttachmentConflict,
        format!(
            "ADD of {}/{} on network {}: the attachment is already registered, but {}; \
             nothing was changed: DEL the attachment, then ADD it again",
            inv.env.container_id,
            inv.env.ifname,
            inv.conf.name,
            problems.join("; ")
        ),
    )
}
