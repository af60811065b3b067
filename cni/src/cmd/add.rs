//! ADD: attach a container and return only once the enforcer holds its endpoint in
//! the kernel. A failed ADD leaves nothing behind: no veth, no lease, no record, and
//! never touches an attachment the enforcer already holds: a repeated ADD is answered
//! from the record ([`super::repeat`]).

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;
use zonewarden_proto::v1;

use super::{Invocation, host_prefixes, repeat};
use crate::attach_lock::{self, Kind};
use crate::client::Enforcer;
use crate::error::{CniError, from_link};
use crate::ipam::{Delegate, Target};
use crate::link::{self, GATEWAY_V4, GATEWAY_V6};
use crate::result::{CniResult, Dns, Interface, IpConfig, Route};
use zonewarden_profiles::AttachMode;

pub fn add(inv: &Invocation<'_>) -> Result<Value, CniError> {
    inv.container_netns()?;
    // Reach the enforcer before touching anything: when it is down, ADD leaves nothing.
    // One that restarts is waited for, briefly (`addWaitSeconds`).
    let mut enforcer = Enforcer::connect_waiting(&inv.conf.socket, inv.conf.add_wait)?;
    // Held until ADD returns: a GC waits for it, so it never takes this ADD's veth for
    // a leak between its creation and its registration.
    let _lock = attach_lock::acquire(&inv.conf.socket, Kind::Shared, attach_lock::ADD_WAIT)?;
    let registered = repeat::registered(inv, &mut enforcer)?;
    match (inv.conf.mode, registered) {
        (AttachMode::Routed, Some(ep)) => repeat::routed(inv, &ep),
        (AttachMode::Routed, None) => add_routed(inv, &mut enforcer),
        (AttachMode::Chained, registered) => add_chained(inv, &mut enforcer, registered.as_ref()),
        (AttachMode::Sidecar, _) => Err(CniError::config(
            "mode \"sidecar\" is not a plugin mode: use routed or chained",
        )),
    }
}

/// Where the addresses of a failing ADD go back to.
enum Lease<'a> {
    /// The IPAM plugin's lease: its DEL.
    Delegate(Delegate<'a>),
    /// zonewarden IPAM: the enforcer's ReleaseAddresses.
    Enforcer(v1::AttachmentKey),
}

/// Undoes what a failing ADD made, in reverse order.
struct Rollback<'a> {
    ipam: Option<Lease<'a>>,
    host_ifname: Option<String>,
    registered: Option<v1::AttachmentKey>,
}

impl Rollback<'_> {
    fn run(self, enforcer: &mut Enforcer) {
        if let Some(key) = self.registered {
            let req = v1::DelEndpointRequest {
                key: Some(key),
                retire_host_link: false,
            };
            if let Err(e) =
                enforcer.call(
                    "DelEndpoint",
                    |mut c| async move { c.del_endpoint(req).await },
                )
            {
                tracing::warn!(err = %e, "rollback: deregistering the endpoint failed");
            }
        }
        if let Some(host) = self.host_ifname
            && let Err(e) = link::teardown_routed(&host)
        {
            tracing::warn!(err = %e, host, "rollback: deleting the veth failed");
        }
        let released = match self.ipam {
            None => Ok(()),
            Some(Lease::Delegate(ipam)) => ipam.run("DEL", &Target::default()).map(drop),
            Some(Lease::Enforcer(key)) => {
                let req = v1::ReleaseAddressesRequest {
                    key: Some(key),
                    ..Default::default()
                };
                enforcer
                    .call("ReleaseAddresses", |mut c| async move {
                        c.release_addresses(req).await
                    })
                    .map(drop)
            }
        };
        if let Err(e) = released {
            tracing::warn!(err = %e, "rollback: releasing the IPAM lease failed");
        }
    }
}

fn add_routed(inv: &Invocation<'_>, enforcer: &mut Enforcer) -> Result<Value, CniError> {
    let ipam = inv.ipam();
    if ipam.is_none() && !inv.enforcer_ipam() {
        return Err(CniError::config("routed mode needs an ipam section"));
    }
    // The pair needs no address: it is made while the IPAM plugin (a process of its
    // own) or the enforcer allocates one.
    let spec = inv.routed_spec(Vec::new());
    let (host_end, leased) = std::thread::scope(|scope| {
        let pair = scope.spawn(|| link::create_routed(&spec));
        let leased = match &ipam {
            Some(ipam) => ipam
                .run("ADD", &Target::default())
                .map(Option::unwrap_or_default),
            None => lease_from_enforcer(inv, enforcer),
        };
        let pair = pair
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (pair, leased)
    });
    // CNI_IFNAME is the pod end of another pair of ours: a leftover (an older DEL, an
    // ADD that was killed) goes, but an attachment the enforcer holds stays, and this
    // ADD fails naming it.
    let host_end = match host_end {
        Err(link::LinkError::LeftoverExists {
            ifname,
            netns,
            host_ifname,
        }) if leased.is_ok() => match is_registered_host(enforcer, &host_ifname) {
            Ok(false) => link::replace_leftover(&spec, &host_ifname).map_err(from_link),
            Ok(true) => Err(from_link(link::LinkError::LeftoverExists {
                ifname,
                netns,
                host_ifname,
            })),
            Err(e) => Err(e),
        },
        other => other.map_err(from_link),
    };
    let mut rollback = Rollback {
        ipam: leased
            .is_ok()
            .then(|| ipam.map_or_else(|| Lease::Enforcer(inv.key()), Lease::Delegate)),
        host_ifname: host_end.is_ok().then(|| spec.host_ifname.clone()),
        registered: None,
    };
    let result = match (host_end, leased) {
        (Ok(host_end), Ok(leased)) => {
            attach_routed(inv, enforcer, &host_end, &leased, &mut rollback)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    if result.is_err() {
        rollback.run(enforcer);
    }
    result
}

/// zonewarden IPAM: the addresses the enforcer leases to this attachment (the same
/// ones again for a repeated ADD), as an IPAM result without gateway or DNS.
fn lease_from_enforcer(
    inv: &Invocation<'_>,
    enforcer: &mut Enforcer,
) -> Result<CniResult, CniError> {
    let req = v1::AllocateAddressesRequest {
        key: Some(inv.key()),
    };
    let resp = enforcer.call("AllocateAddresses", |mut c| async move {
        c.allocate_addresses(req).await
    })?;
    let mut result = CniResult::default();
    for ip in resp.ips {
        let address: IpNet = ip.parse().map_err(|e| {
            CniError::io(format!(
                "the enforcer leased {ip:?}, which is not an address in CIDR notation: {e}"
            ))
        })?;
        result.ips.push(IpConfig {
            address,
            gateway: None,
            interface: None,
        });
    }
    tracing::info!(ips = ?result.ips.iter().map(|ip| ip.address).collect::<Vec<_>>(), "zonewarden IPAM: addresses leased");
    Ok(result)
}

/// Whether `host_ifname` is the host end of an attachment the enforcer holds.
fn is_registered_host(enforcer: &mut Enforcer, host_ifname: &str) -> Result<bool, CniError> {
    let req = v1::ListEndpointsRequest::default();
    let endpoints = enforcer
        .call("ListEndpoints", |mut c| async move {
            c.list_endpoints(req).await
        })?
        .endpoints;
    Ok(endpoints.iter().any(|ep| ep.host_ifname == host_ifname))
}

fn attach_routed(
    inv: &Invocation<'_>,
    enforcer: &mut Enforcer,
    host_end: &link::HostEnd,
    leased: &CniResult,
    rollback: &mut Rollback<'_>,
) -> Result<Value, CniError> {
    let addrs = host_prefixes(&leased.ips.iter().map(|ip| ip.address).collect::<Vec<_>>());
    if addrs.is_empty() {
        return Err(CniError::config(format!(
            "IPAM plugin {} returned no address",
            inv.conf.ipam_type.as_deref().unwrap_or("?")
        )));
    }
    let spec = inv.routed_spec(addrs.clone());
    let links = link::configure_routed(&spec, host_end).map_err(from_link)?;
    register(
        inv,
        enforcer,
        HostSide {
            ifname: &spec.host_ifname,
            bridge: None,
        },
        &addrs,
        &links.pod_mac,
        AttachMode::Routed,
        Some(rollback),
    )?;
    Ok(routed_result(
        inv,
        &spec.host_ifname,
        &links.host_mac,
        &links.pod_mac,
        &addrs,
        Some(&leased.dns).filter(|dns| !dns.is_empty()),
    ))
}

/// The result of a routed attachment: the host end, the pod end with `addrs` (host
/// prefixes) through the link-local gateways, and the IPAM plugin's DNS or the
/// config's.
pub(super) fn routed_result(
    inv: &Invocation<'_>,
    host_ifname: &str,
    host_mac: &str,
    pod_mac: &str,
    addrs: &[IpNet],
    leased_dns: Option<&Dns>,
) -> Value {
    let mut result = CniResult {
        interfaces: vec![
            Interface {
                name: host_ifname.to_owned(),
                mac: Some(host_mac.to_owned()),
                ..Interface::default()
            },
            Interface {
                name: inv.env.ifname.clone(),
                mac: Some(pod_mac.to_owned()),
                mtu: inv.conf.mtu,
                sandbox: Some(inv.netns_str()),
                ..Interface::default()
            },
        ],
        dns: leased_dns
            .cloned()
            .unwrap_or_else(|| inv.conf.dns.clone().unwrap_or_default()),
        ..CniResult::default()
    };
    for addr in addrs {
        let gw: IpAddr = if addr.addr().is_ipv4() {
            GATEWAY_V4.into()
        } else {
            GATEWAY_V6.into()
        };
        result.ips.push(IpConfig {
            address: *addr,
            gateway: Some(gw),
            interface: Some(1),
        });
        let dst = if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
        if !result.routes.iter().any(|r| r.gw == Some(gw)) {
            result.routes.push(Route {
                dst: dst.parse().expect("default route literal"),
                gw: Some(gw),
                mtu: None,
                advmss: None,
                priority: None,
                table: None,
                scope: None,
            });
        }
    }
    result.to_value(inv.conf.version)
}

/// Registers the attachment. With `rollback` (a new attachment) a failure undoes the
/// registration too, in case the enforcer made it before the answer was lost; without
/// (a record is being replaced) the record is left to the runtime's DEL.
/// Where the endpoint meets the node: its host interface, and in chained mode after a
/// bridge the bridge that interface is a port of.
struct HostSide<'a> {
    ifname: &'a str,
    bridge: Option<&'a str>,
}

fn register(
    inv: &Invocation<'_>,
    enforcer: &mut Enforcer,
    host: HostSide<'_>,
    addrs: &[IpNet],
    mac: &str,
    mode: AttachMode,
    rollback: Option<&mut Rollback<'_>>,
) -> Result<(), CniError> {
    let req = v1::AddEndpointRequest {
        key: Some(inv.key()),
        hints: Some(inv.hints()),
        netns: inv.netns_str(),
        host_ifname: host.ifname.to_owned(),
        ips: addrs.iter().map(ToString::to_string).collect(),
        mac: mac.to_owned(),
        attach_mode: v1::AttachMode::from(mode).into(),
        bridge: host.bridge.unwrap_or_default().to_owned(),
        leased: inv.enforcer_ipam(),
    };
    if let Some(rollback) = rollback {
        rollback.registered = Some(inv.key());
    }
    let resp = enforcer.call(
        "AddEndpoint",
        |mut c| async move { c.add_endpoint(req).await },
    )?;
    if let Some(ep) = resp.endpoint {
        tracing::info!(zone = %ep.zone, source = ep.zone_source().as_str_name(), "endpoint registered");
    }
    Ok(())
}

fn add_chained(
    inv: &Invocation<'_>,
    enforcer: &mut Enforcer,
    registered: Option<&v1::Endpoint>,
) -> Result<Value, CniError> {
    let prev_value = inv.conf.prev_result.as_ref().ok_or_else(|| {
        CniError::config(
            "chained mode needs a prevResult: put zonewarden after the plugin that creates the interface (e.g. bridge) in the conflist",
        )
    })?;
    let prev = CniResult::from_value(prev_value, "prevResult")?;
    let index = prev.container_interface(&inv.env.ifname).ok_or_else(|| {
        CniError::config(format!(
            "prevResult has no interface named {} (CNI_IFNAME): the previous plugin must create it",
            inv.env.ifname
        ))
    })?;
    let ips = prev.ips_of(Some(index));
    if ips.is_empty() {
        return Err(CniError::config(format!(
            "prevResult has no address for interface {}",
            inv.env.ifname
        )));
    }
    // prevResult is only a claim: the interface, its addresses and its MAC are read
    // from the container, and its host end from the node.
    let netns = inv.container_netns()?;
    let (pod, host) = link::chained_interface(netns, &inv.env.ifname).map_err(from_link)?;
    for ip in &ips {
        if !pod.addrs.iter().any(|have| have.addr() == ip.addr()) {
            return Err(CniError::config(format!(
                "prevResult gives {} the address {ip}, but {} in {} does not have it: the previous plugin's result does not match the container",
                inv.env.ifname,
                inv.env.ifname,
                netns.display()
            )));
        }
    }
    let mac = pod.mac.clone();
    let addrs = host_prefixes(&ips);
    let side = || HostSide {
        ifname: &host.name,
        bridge: host.bridge.as_deref(),
    };
    match registered {
        // A repeated ADD: the record already says this; register nothing again.
        Some(ep) if repeat::chained_unchanged(inv, ep, &addrs, &mac, &host)? => {
            tracing::info!("repeated ADD: the attachment is registered as it is");
        }
        // The previous plugin reports other addresses now: the record is replaced,
        // and on failure left as it was.
        Some(_) => register(
            inv,
            enforcer,
            side(),
            &addrs,
            &mac,
            AttachMode::Chained,
            None,
        )?,
        None => {
            let mut rollback = Rollback {
                ipam: None,
                host_ifname: None,
                registered: None,
            };
            if let Err(e) = register(
                inv,
                enforcer,
                side(),
                &addrs,
                &mac,
                AttachMode::Chained,
                Some(&mut rollback),
            ) {
                rollback.run(enforcer);
                return Err(e);
            }
        }
    }
    // Pass prevResult on exactly as received, in the request's version.
    let mut out = prev_value.clone();
    if let Some(obj) = out.as_object_mut() {
        obj.insert("cniVersion".into(), Value::from(inv.conf.version.as_str()));
    }
    Ok(out)
}
