//! A blocking client of the enforcer for the one-shot plugin process. Every RPC error
//! maps to a CNI error: unreachable is 11 (try again later) and names the socket.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use zonewarden_proto::v1::enforcer_client::EnforcerClient;

use crate::error::{CniError, ErrorCode};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a waiting ADD tries the socket again.
const RETRY_EVERY: Duration = Duration::from_millis(100);
/// Well inside the runtime's own deadline (kubelet's default is 2 minutes).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Enforcer {
    runtime: tokio::runtime::Runtime,
    client: EnforcerClient<Channel>,
    socket: PathBuf,
}

impl Enforcer {
    /// Connects to the enforcer; fails with code 11 when nothing answers.
    pub fn connect(socket: &Path) -> Result<Self, CniError> {
        Self::connect_waiting(socket, Duration::ZERO)
    }

    /// [`Self::connect`], trying again for up to `wait` while nothing answers (no
    /// socket, a socket nobody listens on, no answer in time): an ADD that comes while
    /// the enforcer restarts waits for it instead of failing. Fails with code 11 once
    /// `wait` has passed; nothing is touched before it returns.
    pub fn connect_waiting(socket: &Path, wait: Duration) -> Result<Self, CniError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CniError::io(format!("cannot start the plugin's runtime: {e}")))?;
        let until = Instant::now() + wait;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            // The channel's own request deadline is the call's: a busy enforcer may
            // take seconds to commit an endpoint, which is no reason to fail the ADD.
            let connected = runtime.block_on(zonewarden_proto::connect_with(
                socket,
                CONNECT_TIMEOUT,
                CALL_TIMEOUT,
            ));
            match connected {
                Ok(channel) => {
                    return Ok(Self {
                        runtime,
                        client: EnforcerClient::new(channel),
                        socket: socket.to_path_buf(),
                    });
                }
                Err(e) if Instant::now() + RETRY_EVERY < until => {
                    if attempts == 1 {
                        tracing::debug!(
                            socket = %socket.display(),
                            err = %e,
                            wait_s = wait.as_secs_f64(),
                            "the enforcer does not answer; waiting for it (addWaitSeconds)"
                        );
                    }
                    std::thread::sleep(RETRY_EVERY)
                }
                Err(e) if wait.is_zero() => {
                    return Err(CniError::new(ErrorCode::TryAgainLater, e.to_string()));
                }
                Err(e) => {
                    return Err(CniError::new(
                        ErrorCode::TryAgainLater,
                        format!(
                            "{e} (waited {:.1}s for it: addWaitSeconds)",
                            wait.as_secs_f64()
                        ),
                    ));
                }
            }
        }
    }

    /// Runs one RPC with the call deadline and maps its failure.
    pub fn call<T, F, Fut>(&mut self, what: &str, f: F) -> Result<T, CniError>
    where
        F: FnOnce(EnforcerClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.client.clone();
        let result = self
            .runtime
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, f(client)).await });
        match result {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(map_status(&self.socket, what, &status)),
            Err(_) => Err(CniError::new(
                ErrorCode::TryAgainLater,
                format!(
                    "the enforcer at {} did not answer {what} within {}s; try again later",
                    self.socket.display(),
                    CALL_TIMEOUT.as_secs()
                ),
            )),
        }
    }
}

fn map_status(socket: &Path, what: &str, status: &tonic::Status) -> CniError {
    use tonic::Code;
    let socket = socket.display();
    let msg = status.message();
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            CniError::new(
                ErrorCode::TryAgainLater,
                format!(
                    "the enforcer at {socket} is unreachable for {what}: {msg}; try again later"
                ),
            )
        }
        Code::InvalidArgument => CniError::config(format!("the enforcer refused {what}: {msg}")),
        _ => CniError::new(
            ErrorCode::EnforcerRejected,
            format!("the enforcer at {socket} failed {what}: {msg}"),
        ),
    }
}
