//! The connection to the enforcer, and error messages an operator can act on.
//!
//! Every RPC zwctl uses has one thin method here, so each command reads as
//! "ask, convert, render" and every failure names the socket and what to do.

use std::error::Error as StdError;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::Channel;
use zonewarden_proto::v1;
use zonewarden_proto::v1::enforcer_client::EnforcerClient;

use crate::cli::GlobalArgs;

/// A connected client of one enforcer.
pub struct Enforcer {
    socket: PathBuf,
    client: EnforcerClient<Channel>,
}

impl Enforcer {
    /// Connects to the enforcer at `--socket` within `--timeout`.
    pub async fn connect(global: &GlobalArgs) -> anyhow::Result<Self> {
        let client = zonewarden_proto::client(&global.socket, global.timeout())
            .await
            .map_err(|err| {
                // The proto crate flattens the transport error to text; the socket
                // itself says why it cannot be reached (missing, root-only, stale).
                let why = std::os::unix::net::UnixStream::connect(&global.socket)
                    .err()
                    .unwrap_or_else(|| io::Error::other(err.cause));
                unreachable_error(&global.socket, global.timeout(), &why)
            })?;
        Ok(Self {
            socket: global.socket.clone(),
            client,
        })
    }

    pub async fn list_endpoints(
        &mut self,
        request: v1::ListEndpointsRequest,
    ) -> anyhow::Result<v1::ListEndpointsResponse> {
        match self.client.list_endpoints(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(rpc_error(&self.socket, "ListEndpoints", &status)),
        }
    }

    pub async fn list_zones(&mut self) -> anyhow::Result<v1::ListZonesResponse> {
        match self.client.list_zones(v1::ListZonesRequest {}).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(rpc_error(&self.socket, "ListZones", &status)),
        }
    }

    pub async fn status(&mut self) -> anyhow::Result<v1::StatusResponse> {
        match self.client.status(v1::StatusRequest {}).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(rpc_error(&self.socket, "Status", &status)),
        }
    }

    pub async fn list_edges(
        &mut self,
        request: v1::ListEdgesRequest,
    ) -> anyhow::Result<v1::ListEdgesResponse> {
        match self.client.list_edges(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(rpc_error(&self.socket, "ListEdges", &status)),
        }
    }

    pub async fn list_profiles(
        &mut self,
        request: v1::ListProfilesRequest,
    ) -> anyhow::Result<v1::ListProfilesResponse> {
        match self.client.list_profiles(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(rpc_error(&self.socket, "ListProfiles", &status)),
        }
    }

    pub async fn diff_profile(
        &mut self,
        request: v1::DiffProfileRequest,
    ) -> anyhow::Result<v1::DiffProfileResponse> {
        match self.client.diff_profile(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(rpc_error(&self.socket, "DiffProfile", &status)),
        }
    }

    pub async fn approve_edges(
        &mut self,
        request: v1::ApproveEdgesRequest,
    ) -> anyhow::Result<v1::ProfileChangeResponse> {
        match self.client.approve_edges(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(rpc_error(&self.socket, "ApproveEdges", &status)),
        }
    }

    pub async fn reject_edges(
        &mut self,
        request: v1::EdgesRequest,
    ) -> anyhow::Result<v1::ProfileChangeResponse> {
        match self.client.reject_edges(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(rpc_error(&self.socket, "RejectEdges", &status)),
        }
    }

    pub async fn remove_edges(
        &mut self,
        request: v1::EdgesRequest,
    ) -> anyhow::Result<v1::ProfileChangeResponse> {
        match self.client.remove_edges(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(rpc_error(&self.socket, "RemoveEdges", &status)),
        }
    }

    pub async fn set_mode(
        &mut self,
        request: v1::SetModeRequest,
    ) -> anyhow::Result<v1::ProfileChangeResponse> {
        match self.client.set_mode(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(rpc_error(&self.socket, "SetMode", &status)),
        }
    }

    pub async fn set_response(
        &mut self,
        request: v1::SetResponseRequest,
    ) -> anyhow::Result<v1::ProfileChangeResponse> {
        match self.client.set_response(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(rpc_error(&self.socket, "SetResponse", &status)),
        }
    }

    pub async fn quarantine(
        &mut self,
        request: v1::QuarantineRequest,
    ) -> anyhow::Result<v1::ProfileChangeResponse> {
        match self.client.quarantine(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(rpc_error(&self.socket, "Quarantine", &status)),
        }
    }

    pub async fn delete_profile(
        &mut self,
        request: v1::DeleteProfileRequest,
    ) -> anyhow::Result<v1::DeleteProfileResponse> {
        match self.client.delete_profile(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(rpc_error(&self.socket, "DeleteProfile", &status)),
        }
    }

    pub async fn list_violations(
        &mut self,
        request: v1::ListViolationsRequest,
    ) -> anyhow::Result<v1::ListViolationsResponse> {
        match self.client.list_violations(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(rpc_error(&self.socket, "ListViolations", &status)),
        }
    }

    pub async fn import_profiles(
        &mut self,
        request: v1::ImportProfilesRequest,
    ) -> anyhow::Result<v1::ImportProfilesResponse> {
        match self.client.import_profiles(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(rpc_error(&self.socket, "ImportProfiles", &status)),
        }
    }

    /// Opens the live flow stream; [`Self::next_flow`] reads it.
    pub async fn watch_flows(
        &mut self,
        request: v1::WatchFlowsRequest,
    ) -> anyhow::Result<tonic::Streaming<v1::Flow>> {
        match self.client.watch_flows(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(rpc_error(&self.socket, "WatchFlows", &status)),
        }
    }

    /// The next flow; `None` when the enforcer ended the stream.
    pub async fn next_flow(
        &self,
        flows: &mut tonic::Streaming<v1::Flow>,
    ) -> anyhow::Result<Option<v1::Flow>> {
        flows
            .message()
            .await
            .map_err(|status| rpc_error(&self.socket, "WatchFlows", &status))
    }
}

/// One line: which socket, why, and what to do about it.
pub(crate) fn unreachable_error(
    socket: &Path,
    timeout: Duration,
    err: &(dyn StdError + 'static),
) -> anyhow::Error {
    let socket = socket.display();
    let io_kind = error_chain(err)
        .find_map(|e| e.downcast_ref::<io::Error>())
        .map(io::Error::kind);
    let (why, hint) = match io_kind {
        Some(io::ErrorKind::NotFound) => (
            "the socket does not exist".to_owned(),
            "start zonewarden-enforcer on this node, or pass --socket PATH (or set ZONEWARDEN_SOCKET) \
             if it serves another socket",
        ),
        Some(io::ErrorKind::PermissionDenied) => (
            "permission denied".to_owned(),
            "the socket is root-only: run zwctl as root (e.g. with sudo)",
        ),
        Some(io::ErrorKind::ConnectionRefused) => (
            "connection refused (the socket is left over from an enforcer that is no longer running)".to_owned(),
            "start zonewarden-enforcer on this node, or pass --socket PATH (or set ZONEWARDEN_SOCKET)",
        ),
        _ if error_chain(err).any(|e| e.to_string().contains("timed out")) => (
            format!("no answer within {}s", timeout.as_secs()),
            "check that zonewarden-enforcer is healthy (its logs), or raise --timeout",
        ),
        _ => (
            root_cause(err),
            "start zonewarden-enforcer on this node, or pass --socket PATH (or set ZONEWARDEN_SOCKET)",
        ),
    };
    anyhow::anyhow!("cannot reach the zonewarden enforcer at {socket}: {why}; {hint}")
}

/// One line for a request the enforcer received but did not answer with success.
pub(crate) fn rpc_error(socket: &Path, rpc: &str, status: &tonic::Status) -> anyhow::Error {
    let socket = socket.display();
    let message = status.message();
    // The connection broke after the request was sent (the enforcer was killed or
    // restarted): a change may or may not have been made.
    let transport = std::error::Error::source(status).is_some()
        || message.contains("transport error")
        || message.contains("connection");
    // So did zwctl stop waiting (--timeout): the enforcer may still commit it.
    let gave_up = matches!(
        status.code(),
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
    );
    if (transport || gave_up) && is_change(rpc) {
        return anyhow::anyhow!(
            "the outcome of {rpc} is unknown: the zonewarden enforcer at {socket} did not answer ({message}); \
             check what happened with zwctl get profiles and zwctl audit log before retrying"
        );
    }
    match status.code() {
        tonic::Code::Unimplemented => anyhow::anyhow!(
            "the zonewarden enforcer at {socket} does not implement {rpc}; \
             upgrade it to the version of this zwctl ({})",
            env!("CARGO_PKG_VERSION")
        ),
        // The enforcer answered, with why it cannot do it now (its store or the
        // kernel is unavailable): its words are the error.
        tonic::Code::Unavailable if !transport && !message.trim().is_empty() => anyhow::anyhow!(
            "the zonewarden enforcer at {socket} cannot complete {rpc} now: {}",
            one_line(message)
        ),
        tonic::Code::Unavailable => anyhow::anyhow!(
            "the zonewarden enforcer at {socket} went away during {rpc} ({message}); \
             check that it is running (systemctl status zonewarden-enforcer, or its pod) and retry"
        ),
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => anyhow::anyhow!(
            "the zonewarden enforcer at {socket} did not answer {rpc} in time ({message}); \
             check its logs, or raise --timeout"
        ),
        // The enforcer explains what was wrong with the request (a bad edge, an
        // unknown zone, a change that does not apply now): its words are the error.
        tonic::Code::InvalidArgument | tonic::Code::NotFound | tonic::Code::FailedPrecondition
            if !message.trim().is_empty() =>
        {
            anyhow::anyhow!("{}", one_line(message))
        }
        code => {
            anyhow::anyhow!("the zonewarden enforcer at {socket} refused {rpc}: {code}: {message}")
        }
    }
}

/// Whether `rpc` changes the enforcer's state (its outcome matters when the
/// connection breaks).
fn is_change(rpc: &str) -> bool {
    [
        "Approve",
        "Reject",
        "Remove",
        "SetMode",
        "Quarantine",
        "Import",
        "Delete",
    ]
    .iter()
    .any(|prefix| rpc.starts_with(prefix))
}

/// The enforcer's message on one line, whatever it holds.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn error_chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    let mut next = Some(err);
    std::iter::from_fn(move || {
        let current = next?;
        next = current.source();
        Some(current)
    })
}

fn root_cause(err: &(dyn StdError + 'static)) -> String {
    error_chain(err)
        .last()
        .map(ToString::to_string)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(io::Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("transport error")
        }
    }
    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    fn message_for(kind: io::ErrorKind) -> String {
        let err = Wrapper(io::Error::from(kind));
        unreachable_error(Path::new("/run/zw.sock"), Duration::from_secs(5), &err).to_string()
    }

    #[test]
    fn missing_socket_names_it_and_says_to_start_the_enforcer_or_pass_socket() {
        let msg = message_for(io::ErrorKind::NotFound);
        assert!(msg.contains("/run/zw.sock"), "{msg}");
        assert!(
            msg.contains("start zonewarden-enforcer") && msg.contains("--socket"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "one line only: {msg}");
    }

    #[test]
    fn permission_denied_says_to_run_as_root() {
        let msg = message_for(io::ErrorKind::PermissionDenied);
        assert!(
            msg.contains("permission denied") && msg.contains("root"),
            "{msg}"
        );
    }

    #[test]
    fn a_broken_connection_leaves_a_change_unknown() {
        let status = tonic::Status::unavailable("transport error");
        let msg = rpc_error(Path::new("/s"), "ApproveEdges", &status).to_string();
        assert!(msg.contains("outcome of ApproveEdges is unknown"), "{msg}");
        assert!(msg.contains("zwctl audit log"), "{msg}");
        let msg = rpc_error(Path::new("/s"), "ListZones", &status).to_string();
        assert!(!msg.contains("unknown"), "a read is just retried: {msg}");
    }

    #[test]
    fn refused_connection_is_explained() {
        assert!(message_for(io::ErrorKind::ConnectionRefused).contains("connection refused"));
    }

    #[test]
    fn rpc_errors_name_the_socket_and_the_call() {
        let msg = rpc_error(
            Path::new("/s"),
            "ListZones",
            &tonic::Status::internal("store broken"),
        )
        .to_string();
        assert_eq!(
            msg,
            "the zonewarden enforcer at /s refused ListZones: Internal error: store broken"
        );
        let msg =
            rpc_error(Path::new("/s"), "Status", &tonic::Status::unimplemented("")).to_string();
        assert!(msg.contains("does not implement Status"), "{msg}");
    }

    #[test]
    fn a_change_without_an_answer_has_an_unknown_outcome() {
        for status in [
            tonic::Status::cancelled("Timeout expired"),
            tonic::Status::deadline_exceeded("deadline"),
            tonic::Status::unknown("transport error"),
        ] {
            let msg = rpc_error(Path::new("/s"), "ApproveEdges", &status).to_string();
            assert!(
                msg.starts_with("the outcome of ApproveEdges is unknown"),
                "{msg}"
            );
            assert!(msg.contains("zwctl audit log"), "{msg}");
        }
        // A read that timed out is just late.
        let msg = rpc_error(
            Path::new("/s"),
            "ListZones",
            &tonic::Status::cancelled("Timeout expired"),
        )
        .to_string();
        assert!(msg.contains("did not answer ListZones in time"), "{msg}");
    }

    #[test]
    fn request_errors_are_the_enforcers_message_on_one_line() {
        for status in [
            tonic::Status::invalid_argument("zone name \"Shop\" is invalid"),
            tonic::Status::not_found("zone name \"Shop\" is invalid"),
            tonic::Status::failed_precondition("zone name \"Shop\" is invalid\n"),
        ] {
            let msg = rpc_error(Path::new("/s"), "ApproveEdges", &status).to_string();
            assert_eq!(msg, "zone name \"Shop\" is invalid", "{:?}", status.code());
        }
        let msg = rpc_error(
            Path::new("/s"),
            "SetMode",
            &tonic::Status::failed_precondition("zone shop/db is quarantined\n  lift it first"),
        )
        .to_string();
        assert_eq!(msg, "zone shop/db is quarantined; lift it first");
        // Without a message there is nothing to show but the code.
        let msg = rpc_error(Path::new("/s"), "SetMode", &tonic::Status::not_found("")).to_string();
        assert!(
            msg.contains("refused SetMode") && msg.contains("not found"),
            "{msg}"
        );
    }
}
