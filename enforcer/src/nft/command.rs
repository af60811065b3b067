//! Running the `nft` binary: JSON transactions on stdin, listings on stdout, and
//! stderr captured into every error so an operator sees what nft said.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::schema::Batch;
use super::{FAMILY, TABLE};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run {binary}: {source}; is the nftables package installed and on PATH?")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("nft failed to {action} ({status}): {stderr}")]
    Failed {
        action: String,
        status: String,
        stderr: String,
    },
    #[error("cannot parse the output of nft {action}: {detail}")]
    Parse { action: String, detail: String },
}

/// The `nft` command line tool.
#[derive(Debug, Clone)]
pub struct NftCli {
    binary: PathBuf,
}

impl Default for NftCli {
    fn default() -> Self {
        Self {
            binary: PathBuf::from("nft"),
        }
    }
}

impl NftCli {
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
        }
    }

    /// Applies one transaction atomically with `nft -j -f -`.
    pub fn apply(&self, batch: &Batch, action: &str) -> Result<(), NftError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.run(&["-j", "-f", "-"], Some(batch.to_json()), action)
            .map(drop)
    }

    /// Lists our table as JSON; `None` when the table does not exist yet.
    pub fn list_table(&self) -> Result<Option<serde_json::Value>, NftError> {
        let action = format!("list table {FAMILY} {TABLE}");
        match self.run(&["-j", "list", "table", FAMILY, TABLE], None, &action) {
            Ok(stdout) => serde_json::from_str(&stdout)
                .map(Some)
                .map_err(|err| NftError::Parse {
                    action,
                    detail: err.to_string(),
                }),
            Err(NftError::Failed { stderr, .. })
                if stderr.contains("No such file or directory") =>
            {
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    fn run(&self, args: &[&str], stdin: Option<String>, action: &str) -> Result<String, NftError> {
        let spawn_error = |source| NftError::Spawn {
            binary: self.binary.clone(),
            source,
        };
        let mut child = Command::new(&self.binary)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A write error means nft exited early; its stderr below says why.
            let _ = pipe.write_all(input.as_bytes());
        }
        let output = child.wait_with_output().map_err(spawn_error)?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(NftError::Failed {
                action: action.to_owned(),
                status: output.status.to_string(),
                stderr: stderr.trim().replace('\n', " | "),
            });
        }
        String::from_utf8(output.stdout).map_err(|err| NftError::Parse {
            action: action.to_owned(),
            detail: err.to_string(),
        })
    }
}
