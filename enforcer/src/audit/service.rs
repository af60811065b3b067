//! The `zonewarden.v1.Audit` gRPC service: listing and verifying the log.

use tonic::{Request, Response, Status};
use zonewarden_proto::v1;
use zonewarden_proto::v1::audit_server::Audit;

use super::chain;
use super::entry::AuditEntry;
use super::log::{AuditError, AuditLog};

pub struct AuditService {
    log: AuditLog,
}

impl AuditService {
    pub fn new(log: AuditLog) -> Self {
        Self { log }
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
    }
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn list(
        &self,
        request: Request<v1::ListAuditRequest>,
    ) -> Result<Response<v1::ListAuditResponse>, Status> {
        let request = request.into_inner();
        let (bytes, path) = self.log.read().await.map_err(status_of)?;
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
            path: path.display().to_string(),
        }))
    }

    async fn verify(
        &self,
        _: Request<v1::VerifyAuditRequest>,
    ) -> Result<Response<v1::VerifyAuditResponse>, Status> {
        let (verified, path) = self.log.verify().await.map_err(status_of)?;
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
            path: path.display().to_string(),
        }))
    }
}
