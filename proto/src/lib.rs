//! The gRPC contract between the zonewarden CNI plugin, the node enforcer and `zwctl`.
//!
//! # Layout
//! - `proto/zonewarden.proto`: the service and its messages (package `zonewarden.v1`).
//! - `proto/audit.proto`: the `Audit` service (same package, same generated module).
//! - [`v1`]: the generated prost messages and tonic client/server code.
//! - [`model`]: the enums of the contract and the model's types, both ways (the
//!   plugin, the enforcer and zwctl all map them there).
//! - [`connect`]: a client channel over the enforcer's unix socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

pub mod model;

/// The root-only unix socket the enforcer serves by default.
pub const DEFAULT_SOCKET: &str = "/run/zonewarden/enforcer.sock";

/// Generated code for `zonewarden.v1`.
#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("zonewarden.v1");
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot reach the zonewarden enforcer at {socket}: {cause}; \
     is zonewarden-enforcer running and serving this socket?"
)]
pub struct ConnectError {
    pub socket: PathBuf,
    /// The transport error with all its causes ("connection refused", ...).
    pub cause: String,
}

fn causes(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.dedup();
    parts.join(": ")
}

/// Opens a gRPC channel to the enforcer's unix socket, failing after `timeout`; every
/// request on it fails after `timeout` too.
pub async fn connect(socket: &Path, timeout: Duration) -> Result<Channel, ConnectError> {
    connect_with(socket, timeout, timeout).await
}

/// Opens a gRPC channel to the enforcer's unix socket, failing after `connect_timeout`;
/// every request on it fails after `request_timeout` (a busy enforcer may take longer
/// to commit a change than to accept a connection).
pub async fn connect_with(
    socket: &Path,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<Channel, ConnectError> {
    let path = socket.to_path_buf();
    // The URI is required by tonic but unused: every connection goes to the socket.
    Endpoint::from_static("http://enforcer.local")
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|err| ConnectError {
            socket: socket.to_path_buf(),
            cause: causes(&err),
        })
}

/// A client of the enforcer over its unix socket.
pub async fn client(
    socket: &Path,
    timeout: Duration,
) -> Result<v1::enforcer_client::EnforcerClient<Channel>, ConnectError> {
    Ok(v1::enforcer_client::EnforcerClient::new(
        connect(socket, timeout).await?,
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// The plugin connects with a short deadline and calls with a long one: a busy
    /// enforcer that accepted the connection must get the call's whole deadline.
    #[tokio::test]
    async fn a_request_has_its_own_deadline_not_the_connect_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("silent.sock");
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        // Accepts every connection and never answers, as an enforcer stuck in a commit.
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let (connect, request) = (Duration::from_millis(300), Duration::from_secs(2));
        let channel = connect_with(&socket, connect, request)
            .await
            .expect("the connection is accepted");
        let started = Instant::now();
        let status = v1::enforcer_client::EnforcerClient::new(channel)
            .status(v1::StatusRequest {})
            .await
            .expect_err("nothing answers");
        let waited = started.elapsed();
        assert!(
            waited >= request,
            "the request gave up after {waited:?}, before its own deadline of {request:?} \
             ({status})"
        );
        server.abort();
    }
}
