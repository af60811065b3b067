//! One invocation from end to end: environment and stdin in, the protocol's stdout
//! and exit status out. This is the only place where a failure becomes error JSON.

use std::collections::HashMap;

use crate::args::CniArgs;
use crate::cmd::{self, Invocation};
use crate::config::NetConf;
use crate::env::{CniEnv, Command};
use crate::error::CniError;
use crate::version::{CniVersion, version_reply};

/// What to print on stdout and whether the invocation succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub success: bool,
}

/// Runs one CNI invocation. `vars` is the process environment, `stdin` the config.
pub fn run(vars: &HashMap<String, String>, stdin: &[u8]) -> Outcome {
    let requested = serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().and_then(CniVersion::parse))
        .unwrap_or(CniVersion::V1_1_0);
    match dispatch(vars, stdin) {
        Ok(stdout) => Outcome {
            stdout,
            success: true,
        },
        Err(err) => {
            tracing::error!(code = err.code as u32, msg = %err.msg, "CNI operation failed");
            Outcome {
                stdout: err.to_json(requested.as_str()),
                success: false,
            }
        }
    }
}

fn dispatch(vars: &HashMap<String, String>, stdin: &[u8]) -> Result<String, CniError> {
    let env = CniEnv::from_vars(vars)?;
    if env.command == Command::Version {
        return Ok(version_reply(stdin));
    }
    let conf = NetConf::parse(stdin)?;
    crate::logging::init(
        conf.log_level
            .as_deref()
            .or(vars.get("ZONEWARDEN_LOG_LEVEL").map(String::as_str)),
        conf.log_file.as_deref(),
    );
    let span = tracing::info_span!(
        "cni",
        command = env.command.as_str(),
        network = %conf.name,
        container = %env.container_id,
        ifname = %env.ifname,
    );
    let _enter = span.enter();
    let inv = Invocation {
        env: &env,
        conf: &conf,
        stdin,
        args: CniArgs::parse(&env.args),
    };
    match env.command {
        Command::Add => cmd::add(&inv).map(|v| v.to_string()),
        Command::Del => cmd::del(&inv).map(|()| String::new()),
        Command::Check => cmd::check(&inv).map(|()| String::new()),
        Command::Gc => cmd::gc(&inv).map(|()| String::new()),
        Command::Status => cmd::status(&inv).map(|()| String::new()),
        Command::Version => Ok(version_reply(stdin)),
    }
}
