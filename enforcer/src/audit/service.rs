//! The `zonewarden.v1.Audit` gRPC service: listing and verifying the log. In cluster
//! mode it reads the cluster-wide trail of policy changes unless asked for the node's
//! own log.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use zonewarden_proto::v1;
use zonewarden_proto::v1::audit_server::Audit;

use super::chain;
use super::entry::AuditEntry;
use super::log::{AuditError, AuditLog};

/// The cluster-wide trail, read whole: its lines as `audit.log`'s bytes, the head
/// it records (seq, entry hash), and where it is. A blocking call.
pub type ClusterTrail = Arc<dyn Fn() -> Result<TrailBytes, String> + Send + Sync>;

/// What a [`ClusterTrail`] read.
#[derive(Debug, Clone, Default)]
pub struct TrailBytes {
    pub bytes: Vec<u8>,
    pub head: Option<(u64, String)>,
    pub source: String,
}

pub struct AuditService {
    log: AuditLog,
    cluster: Option<ClusterTrail>,
}

impl AuditService {
    pub fn new(log: AuditLog) -> Self {
        Self { log, cluster: None }
    }

    /// Cluster mode: List and Verify read `trail` unless asked for the node's log.
    pub fn with_cluster_trail(mut self, trail: ClusterTrail) -> Self {
        self.cluster = Some(trail);
        self
    }

    /// The cluster trail, when this enforcer has one and the request wants it.
    async fn trail(&self, node_log: bool) -> Result<Option<TrailBytes>, Status> {
        let Some(read) = self.cluster.clone().filter(|_| !node_log) else {
            return Ok(None);
        };
        let trail = tokio::task::spawn_blocking(move || read())
            .await
            .map_err(|err| Status::internal(format!("the audit trail task failed: {err}")))?
            .map_err(|err| {
                Status::unavailable(format!(
                    "cannot read the cluster-wide audit trail: {err}; \
                     `zwctl audit log --node-log` shows this node's own log"
                ))
            })?;
        Ok(Some(trail))
    }

    pub fn into_server(self) -> v1::audit_server::AuditServer<Self> {
        v1::audit_server::AuditServer::new(self)
    }
}

fn status_of(err: AuditError) -> Status {
    match err {
        AuditError::Disabled => Status::failed_precondition(err.to_string()),
        _ => Status::unavailable(err.to_string()),
    }
}

fn entry_to_proto(line: usize, e: AuditEntry) -> v1::AuditEntry {
    v1::AuditEntry {
        seq: e.seq,
        at_unix_ms: e.at_unix_ms,
        who: e.who,
        action: crate::convert::audit_action_to_proto(e.action).into(),
        zone: e.zone.unwrap_or_default(),
        target: e.target.unwrap_or_default(),
        detail: e.detail,
        version_before: e.version_before,
        version_after: e.version_after,
        reason: e.reason.unwrap_or_default(),
        prev: e.prev,
        hash: e.hash,
        line: line as u64,
        node: e.node.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn list(
        &self,
        request: Request<v1::ListAuditRequest>,
    ) -> Result<Response<v1::ListAuditResponse>, Status> {
        let request = request.into_inner();
        let (bytes, path) = match self.trail(request.node_log).await? {
            Some(trail) => (trail.bytes, trail.source),
            None => {
                let (bytes, path) = self.log.read().await.map_err(status_of)?;
                (bytes, path.display().to_string())
            }
        };
        let (entries, unreadable) = chain::entries(&bytes);
        let mut entries: Vec<v1::AuditEntry> = entries
            .into_iter()
            .filter(|(_, e)| request.zone.is_empty() || e.zone.as_deref() == Some(&request.zone))
            .filter(|(_, e)| e.at_unix_ms >= request.since_unix_ms)
            .map(|(line, e)| entry_to_proto(line, e))
            .collect();
        if request.limit > 0 {
            let keep = request.limit as usize;
            entries.drain(..entries.len().saturating_sub(keep));
        }
        Ok(Response::new(v1::ListAuditResponse {
            entries,
            unreadable_lines: u32::try_from(unreadable).unwrap_or(u32::MAX),
            path,
        }))
    }

    async fn verify(
        &self,
        request: Request<v1::VerifyAuditRequest>,
    ) -> Result<Response<v1::VerifyAuditResponse>, Status> {
        let (verified, path) = match self.trail(request.into_inner().node_log).await? {
            Some(trail) => {
                let written = trail.head.as_ref().map(|(seq, hash)| (*seq, hash.as_str()));
                let verified = super::log::Verified {
                    chain: chain::verify(&trail.bytes, written),
                    failures: 0,
                    last_error: None,
                };
                (verified, trail.source)
            }
            None => {
                let (verified, path) = self.log.verify().await.map_err(status_of)?;
                (verified, path.display().to_string())
            }
        };
        let v = verified.chain;
        let mut problems: Vec<v1::AuditProblem> = v
            .problems
            .iter()
            .map(|p| v1::AuditProblem {
                line: p.line as u64,
                seq: p.seq,
                kind: crate::convert::problem_kind_to_proto(p.kind).into(),
                message: p.message.clone(),
            })
            .collect();
        if verified.failures > 0 {
            problems.push(v1::AuditProblem {
                line: 0,
                seq: 0,
                kind: v1::AuditProblemKind::Unwritten.into(),
                message: format!(
                    "{} change(s) since the enforcer started have no audit entry: the append failed ({}); see the enforcer's log",
                    verified.failures,
                    verified.last_error.unwrap_or_default()
                ),
            });
        }
        let (head_seq, head_hash) = v.head.unwrap_or_default();
        Ok(Response::new(v1::VerifyAuditResponse {
            intact: problems.is_empty(),
            entries: v.entries as u64,
            lines: v.lines as u64,
            head_seq,
            head_hash,
            problems,
            path,
        }))
    }
}
