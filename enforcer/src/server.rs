//! The `zonewarden.v1.Enforcer` gRPC service on top of the [`EndpointRegistry`].

use std::collections::BTreeSet;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};
use zonewarden_proto::v1;
use zonewarden_proto::v1::enforcer_server::Enforcer;

use crate::audit::record::edges_target;
use crate::audit::{Action, AuditLog, ChangeNote, Note};
use crate::convert::{
    add_request_from_proto, cidr_zone_to_proto, edges_arg, endpoint_to_proto, key_from_proto,
    learning_to_proto, mode_arg, profile_to_proto, report_filter, violation_to_proto, zone_arg,
    zone_filter, zone_to_proto,
};
use crate::hostlink::HostLinks;
use crate::learning::Learning;
use crate::policy_api::{actor, diff, list_edges, unapproved, who};
use crate::registry::{EndpointRegistry, IfMissing, LeaseProblem, RegistryError, Snapshot};
use zonewarden_profiles::ipam::IpamError;

pub struct EnforcerService {
    registry: EndpointRegistry,
    learning: Learning,
    audit: AuditLog,
    host_links: Option<Arc<HostLinks>>,
    allowed_flows: crate::flows::AllowedFlows,
}

impl EnforcerService {
    pub fn new(registry: EndpointRegistry, learning: Learning) -> Self {
        Self {
            allowed_flows: crate::flows::AllowedFlows {
                registry: registry.clone(),
                window: crate::flows::allowed::DEFAULT_WINDOW,
            },
            registry,
            learning,
            audit: AuditLog::disabled(),
            host_links: None,
        }
    }

    /// Shows each approved (source, destination, protocol, port) in `flows watch`
    /// once per `window`, as the table's log rules do with the connections they
    /// report (`--seen-timeout-secs`).
    pub fn with_flow_window(mut self, window: std::time::Duration) -> Self {
        self.allowed_flows.window = window;
        self
    }

    /// Records every change in `audit` before its RPC returns.
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        self.audit = audit;
        self
    }

    /// Lets DEL hand the deletion of routed endpoints' host veths to the enforcer.
    pub fn with_host_links(mut self, host_links: HostLinks) -> Self {
        self.host_links = Some(Arc::new(host_links));
        self
    }

    /// Retires the host veth of a deleted routed endpoint; whether it did.
    async fn retire_host_link(&self, endpoint: &zonewarden_profiles::Endpoint) -> bool {
        let (Some(links), Some(name)) = (self.host_links.clone(), endpoint.host_ifname.clone())
        else {
            return false;
        };
        if endpoint.attach_mode != zonewarden_profiles::AttachMode::Routed {
            return false;
        }
        let addrs: Vec<std::net::IpAddr> = endpoint.addrs().collect();
        let retired =
            tokio::task::spawn_blocking(move || links.retire(&name, &addrs).map(|_| name)).await;
        match retired {
            Ok(Ok(name)) => {
                debug!(host = %name, "host veth retired: routes removed, link deleted in the background");
                true
            }
            Ok(Err(err)) => {
                warn!(%err, "cannot retire the host veth; the plugin deletes it");
                false
            }
            Err(err) => {
                warn!(%err, "the host veth task failed; the plugin deletes it");
                false
            }
        }
    }

    fn change_response(
        &self,
        profile: &zonewarden_profiles::Profile,
        changed: usize,
    ) -> v1::ProfileChangeResponse {
        let members = self.registry.member_count(&profile.zone);
        v1::ProfileChangeResponse {
            profile: Some(
                self.learning
                    .with_learned(|learned| profile_to_proto(profile, learned, members)),
            ),
            changed: u32::try_from(changed).unwrap_or(u32::MAX),
        }
    }

    pub fn into_server(self) -> v1::enforcer_server::EnforcerServer<Self> {
        v1::enforcer_server::EnforcerServer::new(self)
    }
}

/// What a profile change does with a zone that does not exist: the request's `create`.
fn if_missing(create: bool) -> IfMissing {
    if create {
        IfMissing::Create
    } else {
        IfMissing::Refuse
    }
}

/// Store and kernel failures are `unavailable`: the plugin reports "try again later".
fn status_of(err: RegistryError) -> Status {
    match err {
        RegistryError::InvalidZone(_)
        | RegistryError::Profile(_)
        | RegistryError::UnknownZone { .. }
        | RegistryError::NoSuchZone { .. }
        | RegistryError::AddressInUse { .. } => Status::invalid_argument(err.to_string()),
        RegistryError::NotDeletable { .. } => Status::failed_precondition(err.to_string()),
        RegistryError::UnknownEndpoint(_) => Status::not_found(err.to_string()),
        RegistryError::Store(_)
        | RegistryError::Dataplane { .. }
        | RegistryError::Kernel(_)
        | RegistryError::Audit(_) => Status::unavailable(err.to_string()),
        RegistryError::BridgeNetfilter(_) => Status::failed_precondition(err.to_string()),
        RegistryError::Task(_) => Status::internal(err.to_string()),
    }
}

#[tonic::async_trait]
impl Enforcer for EnforcerService {
    async fn add_endpoint(
        &self,
        request: Request<v1::AddEndpointRequest>,
    ) -> Result<Response<v1::AddEndpointResponse>, Status> {
        let note = Note::new(who(&request), "");
        let request = request.into_inner();
        let leased = request.leased;
        let request = add_request_from_proto(request)?;
        let key = request.key.clone();
        self.registry
            .check_lease(&key, &request.ips, leased)
            .map_err(|err| {
                warn!(%key, %err, "ADD refused");
                match err {
                    LeaseProblem::NotHeld { .. } => Status::unavailable(err.to_string()),
                    LeaseProblem::LeasedToOther { .. } => Status::invalid_argument(err.to_string()),
                }
            })?;
        let ips = request.ips.clone();
        // A race with another node over a new zone's id is made again inside.
        let endpoint = self.registry.add(request, note).await.map_err(|err| {
            warn!(%key, %err, "ADD failed");
            status_of(err)
        })?;
        self.registry.hold_addresses(&key, &ips);
        info!(%key, zone = %endpoint.zone, source = %endpoint.zone_source, ips = ?endpoint.ips, "endpoint added");
        Ok(Response::new(v1::AddEndpointResponse {
            endpoint: Some(endpoint_to_proto(&endpoint)),
        }))
    }

    async fn del_endpoint(
        &self,
        request: Request<v1::DelEndpointRequest>,
    ) -> Result<Response<v1::DelEndpointResponse>, Status> {
        let note = Note::new(who(&request), "");
        let request = request.into_inner();
        let retire = request.retire_host_link;
        let key = key_from_proto(request.key)?;
        let removed = self.registry.del(key.clone(), note).await.map_err(|err| {
            warn!(%key, %err, "DEL failed");
            status_of(err)
        })?;
        info!(%key, removed = removed.is_some(), "endpoint deleted");
        let host_link_retired = match &removed {
            Some(endpoint) if retire => self.retire_host_link(endpoint).await,
            _ => false,
        };
        Ok(Response::new(v1::DelEndpointResponse {
            removed: removed.is_some(),
            endpoint: removed.as_ref().map(endpoint_to_proto),
            host_link_retired,
        }))
    }

    async fn allocate_addresses(
        &self,
        request: Request<v1::AllocateAddressesRequest>,
    ) -> Result<Response<v1::AllocateAddressesResponse>, Status> {
        let key = key_from_proto(request.into_inner().key)?;
        let lease = self.registry.allocate_addresses(&key).map_err(|err| {
            warn!(%key, %err, "zonewarden IPAM: no lease");
            match err {
                IpamError::Exhausted { .. } => Status::resource_exhausted(err.to_string()),
                IpamError::NoBlock | IpamError::TooSmall { .. } => {
                    Status::failed_precondition(err.to_string())
                }
            }
        })?;
        info!(%key, ?lease, "zonewarden IPAM: addresses leased");
        Ok(Response::new(v1::AllocateAddressesResponse {
            ips: lease.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn release_addresses(
        &self,
        request: Request<v1::ReleaseAddressesRequest>,
    ) -> Result<Response<v1::ReleaseAddressesResponse>, Status> {
        let request = request.into_inner();
        if request.key.is_none() && !request.network.is_empty() {
            let keep = request
                .keep
                .into_iter()
                .map(|k| key_from_proto(Some(k)))
                .collect::<Result<_, _>>()?;
            let released = self.registry.release_unregistered(&request.network, &keep);
            for (key, lease) in &released {
                info!(%key, ?lease, "zonewarden IPAM: lease of an attachment that is gone released");
            }
            return Ok(Response::new(v1::ReleaseAddressesResponse {
                ips: released
                    .iter()
                    .flat_map(|(_, lease)| lease.iter().map(ToString::to_string))
                    .collect(),
            }));
        }
        let key = key_from_proto(request.key)?;
        // A registered endpoint keeps its addresses: its DelEndpoint releases them.
        if self.registry.lookup(&key).is_some() {
            info!(%key, "zonewarden IPAM: lease kept, the endpoint is registered");
            return Ok(Response::new(v1::ReleaseAddressesResponse::default()));
        }
        let lease = self.registry.release_addresses(&key);
        info!(%key, ?lease, "zonewarden IPAM: lease released");
        Ok(Response::new(v1::ReleaseAddressesResponse {
            ips: lease.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn check_endpoint(
        &self,
        request: Request<v1::CheckEndpointRequest>,
    ) -> Result<Response<v1::CheckEndpointResponse>, Status> {
        let key = key_from_proto(request.into_inner().key)?;
        let checked = self.registry.check(key).await.map_err(status_of)?;
        let response = match checked {
            Some((endpoint, problems)) => v1::CheckEndpointResponse {
                found: true,
                endpoint: Some(endpoint_to_proto(&endpoint)),
                problems,
            },
            None => v1::CheckEndpointResponse::default(),
        };
        Ok(Response::new(response))
    }

    async fn get_endpoint(
        &self,
        request: Request<v1::GetEndpointRequest>,
    ) -> Result<Response<v1::GetEndpointResponse>, Status> {
        let key = key_from_proto(request.into_inner().key)?;
        let endpoint = self.registry.lookup(&key);
        Ok(Response::new(v1::GetEndpointResponse {
            found: endpoint.is_some(),
            endpoint: endpoint.as_ref().map(endpoint_to_proto),
        }))
    }

    async fn list_endpoints(
        &self,
        request: Request<v1::ListEndpointsRequest>,
    ) -> Result<Response<v1::ListEndpointsResponse>, Status> {
        let request = request.into_inner();
        let network = Some(request.network.as_str()).filter(|n| !n.is_empty());
        let zone = zone_filter(&request.zone)?;
        let node = Some(request.node.as_str()).filter(|n| !n.is_empty());
        let snapshot = self.registry.snapshot();
        let endpoints = snapshot.list(network, zone.as_ref());
        Ok(Response::new(v1::ListEndpointsResponse {
            endpoints: endpoints
                .iter()
                .filter(|e| node.is_none_or(|node| e.node == node))
                .map(|e| endpoint_with_quarantine(&snapshot, e, self.learning.responder()))
                .collect(),
        }))
    }

    async fn list_zones(
        &self,
        _: Request<v1::ListZonesRequest>,
    ) -> Result<Response<v1::ListZonesResponse>, Status> {
        let snapshot = self.registry.snapshot();
        // Zones that exist: with members or a profile. The cluster store keeps a zone's
        // id for good; a zone left with neither (e.g. after zwctl profile delete) is gone.
        let existing = snapshot.zone_names();
        let mut zones: Vec<v1::Zone> = snapshot
            .zones()
            .into_iter()
            .filter(|z| existing.contains(&z.name))
            .map(zone_to_proto)
            .collect();
        zones.extend(
            snapshot
                .policy
                .cidr_zones
                .iter()
                .map(|(name, nets)| cidr_zone_to_proto(name, nets)),
        );
        Ok(Response::new(v1::ListZonesResponse { zones }))
    }

    async fn status(
        &self,
        _: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        let health = self.registry.health().await;
        let news = self.registry.readiness().news();
        Ok(Response::new(v1::StatusResponse {
            ready: health.is_ok(),
            message: match (health, news) {
                (Err(why), _) => why,
                (Ok(()), Some(news)) => format!("ready ({news})"),
                (Ok(()), None) => "ready".to_owned(),
            },
            node: self.registry.node().to_owned(),
            endpoint_count: u32::try_from(self.registry.endpoint_count()).unwrap_or(u32::MAX),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            store: Some(crate::convert::store_status_to_proto(
                &self.registry.store_health().await,
            )),
            learning: Some(learning_to_proto(&self.learning.totals())),
            events_log: crate::events::status_to_proto(),
        }))
    }

    async fn list_edges(
        &self,
        request: Request<v1::ListEdgesRequest>,
    ) -> Result<Response<v1::ListEdgesResponse>, Status> {
        let edges = list_edges(request.get_ref(), &self.learning, &self.registry)?;
        Ok(Response::new(v1::ListEdgesResponse { edges }))
    }

    async fn list_profiles(
        &self,
        request: Request<v1::ListProfilesRequest>,
    ) -> Result<Response<v1::ListProfilesResponse>, Status> {
        let request = request.into_inner();
        let snapshot = self.registry.snapshot();
        let learned = self.learning.learned();
        let only = if request.zone.is_empty() {
            None
        } else {
            Some(zone_arg(&request.zone)?)
        };
        let mut members: std::collections::BTreeMap<&zonewarden_profiles::ZoneName, usize> =
            Default::default();
        for endpoint in snapshot.endpoints.values() {
            *members.entry(&endpoint.zone).or_default() += 1;
        }
        let profiles = snapshot
            .zone_names()
            .into_iter()
            .filter(|z| only.as_ref().is_none_or(|o| o == z))
            .map(|z| {
                let profile = snapshot.policy.profiles.get(&z).cloned();
                let count = members.get(&z).copied().unwrap_or(0);
                profile_to_proto(
                    &profile.unwrap_or_else(|| zonewarden_profiles::Profile::new(z)),
                    &learned,
                    count,
                )
            })
            .collect();
        Ok(Response::new(v1::ListProfilesResponse { profiles }))
    }

    async fn diff_profile(
        &self,
        request: Request<v1::DiffProfileRequest>,
    ) -> Result<Response<v1::DiffProfileResponse>, Status> {
        let zone = zone_arg(&request.get_ref().zone)?;
        Ok(Response::new(diff(&zone, &self.learning, &self.registry)))
    }

    async fn approve_edges(
        &self,
        request: Request<v1::ApproveEdgesRequest>,
    ) -> Result<Response<v1::ProfileChangeResponse>, Status> {
        let actor = actor(&request, &request.get_ref().comment);
        let request = request.into_inner();
        let zone = zone_arg(&request.zone)?;
        let edges = match (request.all, request.edges.is_empty()) {
            (true, true) => unapproved(&zone, &self.learning, &self.registry),
            (false, false) => edges_arg(&request.edges)?,
            _ => {
                return Err(Status::invalid_argument(
                    "name the edges to approve, or ask for all of them, not both",
                ));
            }
        };
        let noted = ChangeNote::new(Note::from(&actor), Action::Approve, edges_target(&edges));
        let (profile, changed) = self
            .registry
            .change_profile(
                zone.clone(),
                if_missing(request.create),
                move |p| p.approve(edges, &actor),
                noted,
            )
            .await
            .map_err(status_of)?;
        info!(%zone, changed, version = profile.version, "edges approved");
        Ok(Response::new(self.change_response(&profile, changed)))
    }

    async fn reject_edges(
        &self,
        request: Request<v1::EdgesRequest>,
    ) -> Result<Response<v1::ProfileChangeResponse>, Status> {
        let actor = actor(&request, &request.get_ref().comment);
        let request = request.into_inner();
        let zone = zone_arg(&request.zone)?;
        let edges = match (request.all, request.edges.is_empty()) {
            (true, true) => unapproved(&zone, &self.learning, &self.registry),
            (false, false) => edges_arg(&request.edges)?,
            _ => {
                return Err(Status::invalid_argument(
                    "name the edges to reject, or ask for all unapproved learned ones, not both",
                ));
            }
        };
        // An edge the other end approved stays allowed whatever this zone rejects:
        // say so rather than record a rejection that changes nothing.
        let snapshot = self.registry.snapshot();
        if let Some((edge, owner)) = edges.iter().find_map(|e| {
            snapshot
                .policy
                .profiles
                .values()
                .find(|p| p.zone != zone && p.approved.contains(e))
                .map(|p| (e, p.zone.clone()))
        }) {
            return Err(Status::failed_precondition(format!(
                "edge {edge} is approved in zone {owner}'s profile: remove it there first \
                 (zwctl profile remove {owner} --edge '{edge}'), then reject it"
            )));
        }
        let noted = ChangeNote::new(Note::from(&actor), Action::Reject, edges_target(&edges));
        let forget = edges.clone();
        let (profile, changed) = self
            .registry
            .change_profile(
                zone.clone(),
                if_missing(request.create),
                move |p| p.reject(&edges, &actor),
                noted,
            )
            .await
            .map_err(status_of)?;
        // The evidence goes; the rejection stays, so the edge seen again is shown as
        // rejected and is never approved by approve --all.
        let forgotten = self.learning.forget(&forget);
        info!(%zone, changed, forgotten, version = profile.version, "edges rejected");
        Ok(Response::new(self.change_response(&profile, changed)))
    }

    async fn remove_edges(
        &self,
        request: Request<v1::EdgesRequest>,
    ) -> Result<Response<v1::ProfileChangeResponse>, Status> {
        let actor = actor(&request, &request.get_ref().comment);
        let request = request.into_inner();
        let zone = zone_arg(&request.zone)?;
        let named = edges_arg(&request.edges)?;
        let all = request.all;
        let create = request.create;
        let target = if all {
            Some("all approved edges".to_owned())
        } else {
            edges_target(&named)
        };
        let noted = ChangeNote::new(Note::from(&actor), Action::Remove, target);
        let (profile, changed) = self
            .registry
            .change_profile(
                zone.clone(),
                if_missing(create),
                move |p| {
                    let edges: Vec<_> = if all {
                        p.approved.iter().cloned().collect()
                    } else {
                        named
                    };
                    Ok(p.remove(&edges, &actor))
                },
                noted,
            )
            .await
            .map_err(status_of)?;
        info!(%zone, changed, version = profile.version, "approved edges removed");
        Ok(Response::new(self.change_response(&profile, changed)))
    }

    async fn set_mode(
        &self,
        request: Request<v1::SetModeRequest>,
    ) -> Result<Response<v1::ProfileChangeResponse>, Status> {
        let actor = actor(&request, &request.get_ref().comment);
        let request = request.into_inner();
        let zone = zone_arg(&request.zone)?;
        let mode = mode_arg(request.mode)?;
        let noted = ChangeNote::new(Note::from(&actor), Action::Mode, Some(mode.to_string()));
        let (profile, changed) = self
            .registry
            .change_profile(
                zone.clone(),
                if_missing(request.create),
                move |p| Ok(usize::from(p.set_mode(mode, &actor))),
                noted,
            )
            .await
            .map_err(status_of)?;
        info!(%zone, %mode, version = profile.version, "mode set");
        Ok(Response::new(self.change_response(&profile, changed)))
    }

    async fn quarantine(
        &self,
        request: Request<v1::QuarantineRequest>,
    ) -> Result<Response<v1::ProfileChangeResponse>, Status> {
        let actor = actor(&request, &request.get_ref().comment);
        let request = request.into_inner();
        let on = request.on;
        let note = Note::from(&actor);
        let action = if on {
            Action::Quarantine
        } else {
            Action::Unquarantine
        };
        match (request.zone.is_empty(), request.container_id.is_empty()) {
            (false, true) => {
                let zone = zone_arg(&request.zone)?;
                let noted = ChangeNote::new(note, action, Some(zone.to_string()));
                let (profile, changed) = self
                    .registry
                    .change_profile(
                        zone.clone(),
                        if_missing(request.create),
                        move |p| Ok(usize::from(p.set_quarantine(on, &actor))),
                        noted,
                    )
                    .await
                    .map_err(status_of)?;
                warn!(%zone, on, "zone quarantine changed");
                Ok(Response::new(self.change_response(&profile, changed)))
            }
            (true, false) => {
                let cid = container_arg(&self.registry.snapshot(), &request.container_id)?;
                let changed = self
                    .registry
                    .quarantine_endpoint(cid.clone(), on, note)
                    .await
                    .map_err(status_of)?;
                warn!(container = %cid, on, who = %actor.who, "endpoint quarantine changed");
                if changed && let Some(responder) = self.learning.responder() {
                    // An operator's decision now: a rule's reason no longer holds, and
                    // once lifted its reports count from zero again.
                    responder.lifted(&cid);
                }
                let snapshot = self.registry.snapshot();
                let zone = snapshot
                    .endpoints
                    .values()
                    .find(|e| *e.key.container_id == *cid)
                    .map(|e| e.zone.clone());
                let profile = zone.map(|z| {
                    snapshot
                        .policy
                        .profiles
                        .get(&z)
                        .cloned()
                        .unwrap_or_else(|| zonewarden_profiles::Profile::new(z))
                });
                Ok(Response::new(v1::ProfileChangeResponse {
                    profile: profile.map(|p| {
                        let members = self.registry.member_count(&p.zone);
                        self.learning
                            .with_learned(|learned| profile_to_proto(&p, learned, members))
                    }),
                    changed: u32::from(changed),
                }))
            }
            _ => Err(Status::invalid_argument(
                "name exactly one of a zone and an endpoint (container id) to quarantine",
            )),
        }
    }

    async fn set_response(
        &self,
        request: Request<v1::SetResponseRequest>,
    ) -> Result<Response<v1::ProfileChangeResponse>, Status> {
        let actor = actor(&request, &request.get_ref().comment);
        let request = request.into_inner();
        let zone = zone_arg(&request.zone)?;
        let rules = crate::convert::response_from_proto(request.rules.as_ref()).map_err(|why| {
            Status::invalid_argument(format!(
                "the response rules of zone {zone} are invalid, nothing was changed: {why}"
            ))
        })?;
        let noted = ChangeNote::new(
            Note::from(&actor),
            Action::Response,
            Some(rules.to_string()),
        );
        let (profile, changed) = self
            .registry
            .change_profile(
                zone.clone(),
                if_missing(request.create),
                move |p| Ok(usize::from(p.set_response(rules, &actor))),
                noted,
            )
            .await
            .map_err(status_of)?;
        info!(%zone, %rules, version = profile.version, "response rules set");
        Ok(Response::new(self.change_response(&profile, changed)))
    }

    async fn delete_profile(
        &self,
        request: Request<v1::DeleteProfileRequest>,
    ) -> Result<Response<v1::DeleteProfileResponse>, Status> {
        let actor = actor(&request, &request.get_ref().comment);
        let request = request.into_inner();
        let zone = zone_arg(&request.zone)?;
        let deleted = self
            .registry
            .delete_profile(zone.clone(), request.force, actor)
            .await
            .map_err(status_of)?;
        // The zone is gone: so is what this node learned of it (its history stays in
        // the audit log and the recent reports).
        let forgotten = self.learning.forget_zone(&zone);
        warn!(%zone, version = deleted.profile.version, forgotten, removed = deleted.removed_edges.len(), "profile deleted");
        Ok(Response::new(v1::DeleteProfileResponse {
            zone: zone.to_string(),
            version: deleted.profile.version,
            changed_profiles: deleted
                .changed
                .iter()
                .map(|p| {
                    let members = self.registry.member_count(&p.zone);
                    self.learning
                        .with_learned(|learned| profile_to_proto(p, learned, members))
                })
                .collect(),
            removed_edges: deleted
                .removed_edges
                .iter()
                .map(ToString::to_string)
                .collect(),
            forgotten_edges: u32::try_from(forgotten).unwrap_or(u32::MAX),
        }))
    }

    async fn list_violations(
        &self,
        request: Request<v1::ListViolationsRequest>,
    ) -> Result<Response<v1::ListViolationsResponse>, Status> {
        let request = request.into_inner();
        let zone = if request.zone.is_empty() {
            None
        } else {
            Some(zone_arg(&request.zone)?)
        };
        let kind = report_filter(request.verdict)?;
        let limit = if request.limit == 0 {
            100
        } else {
            request.limit as usize
        };
        let violations = self
            .learning
            .reports()
            .newest()
            .filter(|r| zone.as_ref().is_none_or(|z| r.edge.touches(z)))
            .filter(|r| kind.is_none_or(|k| r.kind == k))
            .take(limit)
            .map(violation_to_proto)
            .collect();
        Ok(Response::new(v1::ListViolationsResponse { violations }))
    }

    async fn import_profiles(
        &self,
        request: Request<v1::ImportProfilesRequest>,
    ) -> Result<Response<v1::ImportProfilesResponse>, Status> {
        let actor = actor(&request, &request.get_ref().comment);
        let response =
            crate::import::import_profiles(request.get_ref(), actor, &self.registry).await?;
        Ok(Response::new(response))
    }

    type WatchFlowsStream = crate::flows::FlowStream;

    async fn watch_flows(
        &self,
        request: Request<v1::WatchFlowsRequest>,
    ) -> Result<Response<Self::WatchFlowsStream>, Status> {
        let filter = crate::flows::FlowFilter::from_request(request.get_ref())?;
        Ok(Response::new(crate::flows::stream(
            filter,
            &self.allowed_flows,
        )))
    }
}

/// An endpoint as the API lists it, with its quarantine and its zone's.
fn endpoint_with_quarantine(
    snapshot: &Snapshot,
    endpoint: &zonewarden_profiles::Endpoint,
    responder: Option<&crate::response::Responder>,
) -> v1::Endpoint {
    let quarantined = snapshot.quarantined.contains(&*endpoint.key.container_id);
    v1::Endpoint {
        quarantined,
        quarantine_reason: responder
            .filter(|_| quarantined)
            .and_then(|r| r.reason(&endpoint.key.container_id))
            .unwrap_or_default(),
        zone_quarantined: snapshot
            .policy
            .profiles
            .get(&endpoint.zone)
            .is_some_and(|p| p.quarantined),
        ..endpoint_to_proto(endpoint)
    }
}

/// The container id an operator named: the whole id, or any prefix of it that no
/// other endpoint's id shares (as `zwctl get endpoints` prints the first 12).
fn container_arg(snapshot: &Snapshot, given: &str) -> Result<String, Status> {
    let ids: BTreeSet<&str> = snapshot
        .endpoints
        .values()
        .map(|e| &*e.key.container_id)
        .collect();
    if ids.contains(given) {
        return Ok(given.to_owned());
    }
    let matching: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| id.starts_with(given))
        .collect();
    match matching.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err(Status::not_found(format!(
            "no endpoint on this node has a container id starting with {given:?}; \
             zwctl get endpoints lists them"
        ))),
        many => Err(Status::invalid_argument(format!(
            "{given:?} is the start of {} container ids ({}); give more of the id",
            many.len(),
            many.iter()
                .take(5)
                .map(|id| id.chars().take(16).collect::<String>())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio_stream::wrappers::UnixListenerStream;

    use super::*;
    use crate::learning::Learning;
    use crate::store::LocalStore;
    use crate::test_support::memory_registry;

    fn key(container_id: &str) -> Option<v1::AttachmentKey> {
        Some(v1::AttachmentKey {
            network: "podnet".into(),
            container_id: container_id.into(),
            ifname: "eth0".into(),
        })
    }

    #[tokio::test]
    async fn the_grpc_api_end_to_end_over_a_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalStore::open(&dir.path().join("state")).unwrap());
        let registry = memory_registry(store);
        let learning = Learning::new("node-1".into(), None, None, (100, 100));
        let socket = dir.path().join("enforcer.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let server = EnforcerService::new(registry, learning).into_server();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(server)
                .serve_with_incoming(UnixListenerStream::new(listener)),
        );
        let mut client = zonewarden_proto::client(&socket, Duration::from_secs(5))
            .await
            .unwrap();

        let add = v1::AddEndpointRequest {
            key: key("c1"),
            hints: Some(v1::ZoneHints {
                pod_namespace: "shop".into(),
                pod_name: "frontend-7d4b9c8f6-x2k9p".into(),
                ..Default::default()
            }),
            ips: vec!["10.0.0.5/24".into()],
            attach_mode: v1::AttachMode::Routed.into(),
            ..Default::default()
        };
        let added = client
            .add_endpoint(add.clone())
            .await
            .unwrap()
            .into_inner()
            .endpoint
            .unwrap();
        assert_eq!(
            (added.zone.as_str(), added.zone_source()),
            ("shop/frontend", v1::ZoneSource::Workload)
        );
        assert_eq!(added.node, "node-1");

        let zones = client
            .list_zones(v1::ListZonesRequest {})
            .await
            .unwrap()
            .into_inner()
            .zones;
        assert_eq!(zones.len(), 1);
        let zone = &zones[0];
        assert_eq!(
            (zone.id, zone.kind(), zone.endpoint_count),
            (1, v1::ZoneKind::Workload, 1)
        );
        assert_eq!(zone.members, ["shop/frontend-7d4b9c8f6-x2k9p"]);

        let checked = client
            .check_endpoint(v1::CheckEndpointRequest { key: key("c1") })
            .await
            .unwrap()
            .into_inner();
        assert!(checked.found && checked.problems.is_empty(), "{checked:?}");
        let got = client
            .get_endpoint(v1::GetEndpointRequest { key: key("c1") })
            .await
            .unwrap()
            .into_inner();
        assert!(got.found, "{got:?}");
        assert_eq!(
            got.endpoint.map(|e| e.ips),
            Some(vec!["10.0.0.5/24".into()])
        );
        let unknown = client
            .get_endpoint(v1::GetEndpointRequest { key: key("c2") })
            .await
            .unwrap()
            .into_inner();
        assert!(!unknown.found && unknown.endpoint.is_none(), "{unknown:?}");
        let status = client
            .status(v1::StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(status.ready, "{status:?}");
        assert_eq!(status.endpoint_count, 1);

        // Enums: unspecified or unknown values are refused naming the field.
        let set_mode = |zone: &str, mode: i32, create: bool| v1::SetModeRequest {
            zone: zone.into(),
            mode,
            comment: String::new(),
            create,
        };
        for (mode, needle) in [
            (
                0,
                "mode is unspecified: set it to one of learn, monitor, enforce",
            ),
            (9, "mode has the unknown value 9"),
        ] {
            let err = client
                .set_mode(set_mode("shop/frontend", mode, false))
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(err.message().starts_with(needle), "{err}");
        }
        let err = client
            .list_violations(v1::ListViolationsRequest {
                verdict: Some(0),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().starts_with("verdict is unspecified"), "{err}");
        // A typo of an existing zone is refused with it; --create makes the zone.
        let enforce = v1::Mode::Enforce.into();
        let err = client
            .set_mode(set_mode("shop/frontendd", enforce, false))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message()
                .contains("did you mean \"shop/frontend\"? pass --create to make it"),
            "{err}"
        );
        let created = client
            .set_mode(set_mode("shop/frontendd", enforce, true))
            .await
            .unwrap()
            .into_inner();
        let profile = created.profile.unwrap();
        assert_eq!((created.changed, profile.mode()), (1, v1::Mode::Enforce));

        let mut bad = add.clone();
        bad.hints
            .as_mut()
            .unwrap()
            .pod_annotations
            .insert("zonewarden.io/zone".into(), "Bad Zone".into());
        let err = client.add_endpoint(bad).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("zonewarden.io/zone"), "{err}");
        let mut other_namespace = add.clone();
        other_namespace
            .hints
            .as_mut()
            .unwrap()
            .pod_annotations
            .insert("zonewarden.io/zone".into(), "bank/vault".into());
        let err = client.add_endpoint(other_namespace).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("--allow-zone-claim shop=bank/vault"),
            "{err}"
        );

        let del = v1::DelEndpointRequest {
            key: key("c1"),
            retire_host_link: false,
        };
        assert!(
            client
                .del_endpoint(del.clone())
                .await
                .unwrap()
                .into_inner()
                .removed
        );
        assert!(
            !client.del_endpoint(del).await.unwrap().into_inner().removed,
            "DEL is idempotent"
        );
        let listed = client
            .list_endpoints(v1::ListEndpointsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(listed.endpoints.is_empty());
    }
}
