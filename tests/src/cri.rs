//! A small CRI client: the calls the kubelet makes to run, inspect, stop and remove a
//! pod sandbox, over a runtime's unix socket, through our own subset of the CRI's
//! `runtime.v1` (`tests/proto/cri_runtime_v1.proto`). Blocking, for plain `#[test]`s.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use tonic::transport::Channel;

/// The generated messages and client.
#[allow(clippy::all)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}

use v1::runtime_service_client::RuntimeServiceClient;

/// How long one CRI call may take (RunPodSandbox includes the CNI ADD).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

pub struct CriClient {
    runtime: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
}

impl CriClient {
    /// Connects to the runtime's socket.
    pub fn connect(socket: &Path) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let channel = runtime
            .block_on(zonewarden_proto::connect(socket, CALL_TIMEOUT))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            runtime,
            client: RuntimeServiceClient::new(channel),
        })
    }

    pub fn version(&mut self) -> Result<v1::VersionResponse, tonic::Status> {
        let request = v1::VersionRequest {
            version: "v1".into(),
        };
        self.runtime
            .block_on(self.client.version(request))
            .map(tonic::Response::into_inner)
    }

    /// Runs a pod sandbox: the runtime makes its network namespace and calls CNI ADD.
    pub fn run_pod_sandbox(
        &mut self,
        config: v1::PodSandboxConfig,
    ) -> Result<String, tonic::Status> {
        let request = v1::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        self.runtime
            .block_on(self.client.run_pod_sandbox(request))
            .map(|r| r.into_inner().pod_sandbox_id)
    }

    /// Stops a sandbox: the runtime calls CNI DEL with the netns, then removes the netns.
    pub fn stop_pod_sandbox(&mut self, id: &str) -> Result<(), tonic::Status> {
        let request = v1::StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.runtime
            .block_on(self.client.stop_pod_sandbox(request))
            .map(|_| ())
    }

    /// Removes a stopped sandbox (containerd calls CNI DEL once more, without a netns).
    pub fn remove_pod_sandbox(&mut self, id: &str) -> Result<(), tonic::Status> {
        let request = v1::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.runtime
            .block_on(self.client.remove_pod_sandbox(request))
            .map(|_| ())
    }

    /// The sandbox's status and, verbose, the runtime's details of it.
    pub fn pod_sandbox_status(
        &mut self,
        id: &str,
    ) -> Result<v1::PodSandboxStatusResponse, tonic::Status> {
        let request = v1::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: true,
        };
        self.runtime
            .block_on(self.client.pod_sandbox_status(request))
            .map(tonic::Response::into_inner)
    }

    /// The ids of every sandbox the runtime knows.
    pub fn list_pod_sandboxes(&mut self) -> Result<Vec<String>, tonic::Status> {
        self.runtime
            .block_on(self.client.list_pod_sandbox(v1::ListPodSandboxRequest {}))
            .map(|r| r.into_inner().items.into_iter().map(|s| s.id).collect())
    }
}

/// What the kubelet sends for a pod: its metadata and annotations, a hostname, a log
/// directory and a cgroup parent.
pub fn pod_config(
    namespace: &str,
    name: &str,
    annotations: &[(&str, &str)],
    log_directory: &Path,
    cgroup_parent: &str,
) -> v1::PodSandboxConfig {
    let uid = format!("{namespace}-{name}-{}", std::process::id());
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.to_owned(),
            uid,
            namespace: namespace.to_owned(),
            attempt: 0,
        }),
        hostname: name.chars().take(63).collect(),
        log_directory: log_directory.display().to_string(),
        labels: HashMap::from([("app".to_owned(), name.to_owned())]),
        annotations: annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        linux: Some(v1::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.to_owned(),
        }),
    }
}
