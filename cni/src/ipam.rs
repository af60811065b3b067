//! IPAM delegation, as the spec says: the plugin named in `ipam.type` is found in
//! `CNI_PATH` and executed with the same environment and the same stdin.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::error::{CniError, ErrorCode};
use crate::result::CniResult;
use crate::version::CniVersion;

/// One run of a delegated plugin.
pub struct Delegate<'a> {
    pub plugin: &'a str,
    pub search_path: &'a [PathBuf],
    /// The network configuration exactly as the runtime passed it.
    pub stdin: &'a [u8],
    /// This invocation's CNI_ARGS (from the validated environment).
    pub cni_args: &'a str,
}

/// Who the delegated call is for (defaults to this invocation's own environment).
#[derive(Debug, Clone, Default)]
pub struct Target<'a> {
    pub container_id: Option<&'a str>,
    pub ifname: Option<&'a str>,
    /// `Some("")` clears CNI_NETNS (GC of an attachment whose netns is gone).
    pub netns: Option<&'a str>,
}

#[derive(Deserialize)]
struct DelegateError {
    #[serde(default)]
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

impl Delegate<'_> {
    fn binary(&self) -> Result<PathBuf, CniError> {
        self.search_path
            .iter()
            .map(|dir| dir.join(self.plugin))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                CniError::config(format!(
                    "IPAM plugin {:?} was not found in CNI_PATH ({}): install it or fix ipam.type",
                    self.plugin,
                    join_paths(self.search_path)
                ))
            })
    }

    /// Runs `command`; returns the result of ADD (None for DEL/CHECK/GC/STATUS).
    ///
    /// A delegate that does not speak the request's cniVersion (Debian's host-local
    /// 1.1.1 stops at 1.0.0) is asked again in the newest version it does speak; its
    /// result is read in any version.
    pub fn run(&self, command: &str, target: &Target<'_>) -> Result<Option<CniResult>, CniError> {
        match self.run_with(command, target, self.stdin) {
            Err(e) if e.code == ErrorCode::IncompatibleVersion => {
                let Some(stdin) = self.downgraded_stdin()? else {
                    return Err(e);
                };
                tracing::debug!(
                    plugin = self.plugin,
                    "delegate asked again in an older cniVersion"
                );
                self.run_with(command, target, &stdin)
            }
            other => other,
        }
    }

    /// The request with `cniVersion` lowered to the newest one the delegate speaks.
    fn downgraded_stdin(&self) -> Result<Option<Vec<u8>>, CniError> {
        let mut conf: serde_json::Value = serde_json::from_slice(self.stdin).map_err(|e| {
            CniError::new(
                ErrorCode::Decode,
                format!("cannot decode the network configuration: {e}"),
            )
        })?;
        let requested = conf["cniVersion"].as_str().and_then(CniVersion::parse);
        let best = self
            .supported_versions()?
            .into_iter()
            .filter(|v| Some(*v) < requested)
            .max();
        let Some(best) = best else { return Ok(None) };
        conf["cniVersion"] = best.as_str().into();
        Ok(serde_json::to_vec(&conf).ok())
    }

    fn run_with(
        &self,
        command: &str,
        target: &Target<'_>,
        stdin: &[u8],
    ) -> Result<Option<CniResult>, CniError> {
        let binary = self.binary()?;
        let mut cmd = Command::new(&binary);
        cmd.env("CNI_COMMAND", command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // CNI_ARGS carries keys for zonewarden (ZONEWARDEN_ZONE) and the runtime's
        // K8S_* keys; Go IPAM plugins refuse unknown keys unless told to ignore them.
        let args = self.cni_args;
        if !args.is_empty() && !args.split(';').any(|kv| kv.starts_with("IgnoreUnknown=")) {
            cmd.env("CNI_ARGS", format!("IgnoreUnknown=1;{args}"));
        }
        if let Some(id) = target.container_id {
            cmd.env("CNI_CONTAINERID", id);
        }
        if let Some(ifname) = target.ifname {
            cmd.env("CNI_IFNAME", ifname);
        }
        if let Some(netns) = target.netns {
            cmd.env("CNI_NETNS", netns);
        }
        let fail = |what: &str, e: std::io::Error| {
            CniError::io(format!(
                "cannot {what} IPAM plugin {}: {e}",
                binary.display()
            ))
        };
        let mut child = cmd.spawn().map_err(|e| fail("run", e))?;
        let stdin_bytes = stdin;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(stdin_bytes)
                .map_err(|e| fail("write to", e))?;
        }
        let out = child.wait_with_output().map_err(|e| fail("wait for", e))?;
        if !out.status.success() {
            return Err(self.error_of(command, &out.stdout, &out.stderr));
        }
        if command != "ADD" {
            return Ok(None);
        }
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            CniError::new(
                ErrorCode::Decode,
                format!("IPAM plugin {} returned no valid result: {e}", self.plugin),
            )
        })?;
        let what = format!("result of IPAM plugin {}", self.plugin);
        CniResult::from_value(&value, &what).map(Some)
    }

    /// Whether the plugin speaks `version` (asked with VERSION).
    pub fn supports(&self, version: &str) -> Result<bool, CniError> {
        Ok(self
            .supported_versions()?
            .iter()
            .any(|v| v.as_str() == version))
    }

    fn supported_versions(&self) -> Result<Vec<CniVersion>, CniError> {
        let binary = self.binary()?;
        let out = Command::new(&binary)
            .env("CNI_COMMAND", "VERSION")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                CniError::io(format!("cannot run IPAM plugin {}: {e}", binary.display()))
            })?;
        let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        Ok(reply["supportedVersions"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|s| s.as_str().and_then(CniVersion::parse))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// STATUS, forwarded when the plugin speaks 1.1.0; otherwise its presence is enough.
    pub fn status(&self) -> Result<(), CniError> {
        if self.supports("1.1.0")? {
            self.run("STATUS", &Target::default())?;
        }
        Ok(())
    }

    fn error_of(&self, command: &str, stdout: &[u8], stderr: &[u8]) -> CniError {
        let parsed: Option<DelegateError> = serde_json::from_slice(stdout).ok();
        let (code, msg, details) = match parsed {
            Some(e) => (e.code, e.msg, e.details),
            None => (
                0,
                String::from_utf8_lossy(stderr).trim().to_owned(),
                String::new(),
            ),
        };
        let code = match code {
            1 => ErrorCode::IncompatibleVersion,
            2 => ErrorCode::UnsupportedField,
            4 => ErrorCode::InvalidEnv,
            6 => ErrorCode::Decode,
            7 => ErrorCode::InvalidConfig,
            11 => ErrorCode::TryAgainLater,
            _ => ErrorCode::Io,
        };
        CniError::new(
            code,
            format!("IPAM plugin {} failed on {command}: {msg}", self.plugin),
        )
        .with_details(details)
    }
}

fn join_paths(paths: &[PathBuf]) -> String {
    let joined: Vec<_> = paths
        .iter()
        .map(|p: &PathBuf| Path::display(p).to_string())
        .collect();
    if joined.is_empty() {
        "empty".into()
    } else {
        joined.join(":")
    }
}
