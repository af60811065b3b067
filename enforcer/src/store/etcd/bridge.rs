//! The blocking [`crate::store::Store`] calls and the async etcd client meet here.
//!
//! The client lives on a runtime of its own (one worker thread, `zw-etcd`): its
//! connections, the watch and the lease keep-alive run there whatever the enforcer's
//! runtime is doing. A blocking call hands its future to that runtime and waits on a
//! plain channel, so it never calls `block_on` and works from any thread: a blocking
//! thread of the registry, a test, or (briefly, at start) a tokio worker.

use std::future::Future;
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};

/// The dedicated runtime of the etcd client.
pub struct Bridge {
    /// `Some` until drop (a runtime dropped inside another one must be shut down in
    /// the background).
    runtime: Option<Runtime>,
    handle: Handle,
}

impl Bridge {
    pub fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .thread_name("zw-etcd")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        Ok(Self {
            runtime: Some(runtime),
            handle,
        })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `work` on the client's runtime and waits for it, at most `limit`; `None`
    /// when it did not finish in time (or the runtime is gone).
    pub fn wait<T: Send + 'static>(
        &self,
        limit: Duration,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            if let Ok(done) = tokio::time::timeout(limit, work).await {
                let _ = tx.send(done);
            }
        });
        rx.recv().ok()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_from_inside_another_runtime_and_gives_up_on_time() {
        let bridge = Bridge::start().unwrap();
        assert_eq!(bridge.wait(Duration::from_secs(60), async { 7 }), Some(7));
        let never = bridge.wait(Duration::from_millis(1), std::future::pending::<()>());
        assert_eq!(never, None);
        drop(bridge);
    }
}
