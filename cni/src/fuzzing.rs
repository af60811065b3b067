//! The fuzz targets of the plugin's input parsers, shared by `fuzz/` (cargo-fuzz) and
//! the corpus replay of the normal test suite. Each takes arbitrary bytes and must
//! never panic: bad input is a [`crate::error::CniError`], never a crash. Where a
//! printer exists, the round trip is checked too.

use std::collections::HashMap;

use crate::args::CniArgs;
use crate::config::NetConf;
use crate::env::CniEnv;
use crate::result::CniResult;
use crate::version::{CniVersion, SUPPORTED_VERSIONS};

pub use zonewarden_profiles::fuzzing::Target;

pub const TARGETS: [Target; 4] = [
    ("cni_config", config),
    ("cni_env", env),
    ("cni_args", args),
    ("cni_prev_result", prev_result),
];

/// The network configuration on stdin, as every command reads it; its prevResult
/// and its CNI_ARGS-like fields through their own readers.
pub fn config(data: &[u8]) {
    if let Ok(conf) = NetConf::parse(data)
        && let Some(prev) = &conf.prev_result
        && let Ok(result) = CniResult::from_value(prev, "prevResult")
    {
        check_result(&result);
    }
}

/// The environment, one `NAME=VALUE` per line, as a runtime sets it.
pub fn env(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let vars: HashMap<String, String> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    if let Ok(env) = CniEnv::from_vars(&vars) {
        CniArgs::parse(&env.args);
    }
}

/// `CNI_ARGS`: lenient, so anything parses; a key given once is read back.
pub fn args(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    let args = CniArgs::parse(&raw);
    if let Some(zone) = &args.zone {
        let again = CniArgs::parse(&format!("ZONEWARDEN_ZONE={zone}"));
        assert_eq!(again.zone.as_ref(), Some(zone), "{raw:?}");
    }
}

/// A prevResult (or an IPAM plugin's result) as JSON.
pub fn prev_result(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(result) = CniResult::from_value(&value, "prevResult") {
        check_result(&result);
    }
}

/// Written in every version, a result reads back as itself (less the 1.1 fields in
/// older versions).
fn check_result(result: &CniResult) {
    for version in SUPPORTED_VERSIONS
        .iter()
        .filter_map(|v| CniVersion::parse(v))
    {
        let written = result.to_value(version);
        let read = CniResult::from_value(&written, "result")
            .unwrap_or_else(|err| panic!("{written} does not read back: {err}"));
        if version.has_1_1_fields() {
            assert_eq!(&read, result, "the {} result {written}", version.as_str());
        } else {
            assert_eq!(
                read.ips,
                result.ips,
                "the {} result {written}",
                version.as_str()
            );
        }
        if let Some(first) = result.interfaces.first() {
            let index = result.container_interface(&first.name);
            result.ips_of(index);
        }
    }
}
