//! The network configuration on stdin, parsed and validated into typed values before
//! the first side effect. Keys for other plugins are legal and ignored; keys the spec
//! reserves (`runtimeConfig`, `prevResult`, `cni.dev/*`) are read.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use zonewarden_profiles::{AttachMode, ZoneName};

use crate::env::is_valid_id;
use crate::error::{CniError, ErrorCode};
use crate::result::Dns;
use crate::runtime_config::RuntimeConfig;
use crate::version::{CniVersion, SUPPORTED_VERSIONS};

/// `ipam.type` of zonewarden IPAM: the enforcer leases the addresses of its node's pod
/// CIDR block, no IPAM plugin runs.
pub const ENFORCER_IPAM: &str = "zonewarden";

/// `addWaitSeconds` when the config does not say: long enough for an enforcer that
/// restarts (a service manager restarts it after a second, and it reconciles a large
/// node's table in about one more), short beside a runtime's retry of a failed ADD.
pub const DEFAULT_ADD_WAIT_SECONDS: f64 = 5.0;

/// The largest `addWaitSeconds`: a runtime gives a whole ADD about two minutes.
pub const MAX_ADD_WAIT_SECONDS: f64 = 60.0;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    #[serde(alias = "containerId")]
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    #[serde(default)]
    cni_version: String,
    #[serde(default)]
    name: String,
    #[serde(default, rename = "type")]
    plugin_type: String,
    ipam: Option<serde_json::Value>,
    dns: Option<Dns>,
    #[serde(default)]
    ip_masq: bool,
    zone: Option<String>,
    socket: Option<PathBuf>,
    mode: Option<String>,
    mtu: Option<u32>,
    add_wait_seconds: Option<serde_json::Value>,
    log_file: Option<PathBuf>,
    log_level: Option<String>,
    #[serde(default)]
    runtime_config: RuntimeConfig,
    prev_result: Option<serde_json::Value>,
    #[serde(
        default,
        rename = "cni.dev/valid-attachments",
        deserialize_with = "present_list"
    )]
    valid_attachments: Option<Vec<Attachment>>,
    #[serde(
        default,
        rename = "cni.dev/attachments",
        deserialize_with = "present_list"
    )]
    attachments: Option<Vec<Attachment>>,
}

/// A key that is present is a list, `null` included: libcni 1.2 sends a runtime's
/// empty (nil) list of attachments as `null`. Only an absent key is `None`.
fn present_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<Attachment>>, D::Error> {
    Ok(Some(
        Option::<Vec<Attachment>>::deserialize(deserializer)?.unwrap_or_default(),
    ))
}

/// A validated network configuration.
#[derive(Debug, Clone)]
pub struct NetConf {
    pub version: CniVersion,
    pub name: String,
    pub ipam_type: Option<String>,
    pub dns: Option<Dns>,
    pub zone: Option<ZoneName>,
    pub socket: PathBuf,
    pub mode: AttachMode,
    pub mtu: Option<u32>,
    /// How long ADD waits for an enforcer that does not answer (one that restarts)
    /// before it fails with code 11.
    pub add_wait: Duration,
    pub log_file: Option<PathBuf>,
    pub log_level: Option<String>,
    pub runtime_config: RuntimeConfig,
    pub prev_result: Option<serde_json::Value>,
    /// GC: the attachments to keep; `None` when the runtime sent neither key, empty
    /// when it sent `null` or `[]`.
    pub valid_attachments: Option<Vec<Attachment>>,
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let raw: RawConf = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                ErrorCode::Decode,
                format!("cannot decode the network configuration on stdin: {e}"),
            )
        })?;
        if raw.cni_version.is_empty() {
            return Err(CniError::config(
                "the network configuration has no cniVersion",
            ));
        }
        let version = CniVersion::parse(&raw.cni_version).ok_or_else(|| {
            CniError::new(
                ErrorCode::IncompatibleVersion,
                format!(
                    "cniVersion {:?} is not supported by zonewarden; supported: {}",
                    raw.cni_version,
                    SUPPORTED_VERSIONS.join(", ")
                ),
            )
        })?;
        if raw.name.is_empty() || !is_valid_id(&raw.name) {
            return Err(CniError::config(format!(
                "network name {:?} is invalid: it must start with a letter or digit and hold only letters, digits, '_', '.' and '-'",
                raw.name
            )));
        }
        if raw.plugin_type.is_empty() {
            return Err(CniError::config(
                "the network configuration has no \"type\"",
            ));
        }
        let mode = match raw.mode.as_deref() {
            None => AttachMode::Routed,
            Some(word) => AttachMode::parse(word)
                .filter(|m| *m != AttachMode::Sidecar)
                .ok_or_else(|| {
                    CniError::config(format!(
                        "mode {word:?} is not known: use \"routed\" (default) or \"chained\" \
                         (sidecar mode is zonewarden-enforcer --sidecar in the pod, not a plugin mode)"
                    ))
                })?,
        };
        if raw.ip_masq {
            return Err(CniError::new(
                ErrorCode::UnsupportedField,
                "ipMasq=true is not supported by zonewarden: masquerade with the portmap plugin's snat or the node's own rules",
            ));
        }
        let ipam_type = match (&raw.ipam, mode) {
            (Some(ipam), AttachMode::Routed) => Some(ipam_type(ipam)?),
            (None, AttachMode::Routed) => {
                return Err(CniError::config(
                    "routed mode needs an \"ipam\" section: {\"type\":\"zonewarden\"} (addresses from the enforcer's --pod-cidr block) or an IPAM plugin, e.g. {\"type\":\"host-local\",...}",
                ));
            }
            (Some(_), AttachMode::Chained) => {
                return Err(CniError::new(
                    ErrorCode::UnsupportedField,
                    "\"ipam\" is not used in chained mode: addresses come from the previous plugin; remove it",
                ));
            }
            (None, AttachMode::Chained) => None,
            (_, AttachMode::Sidecar) => {
                return Err(CniError::config(
                    "mode \"sidecar\" is not a plugin mode: use routed or chained",
                ));
            }
        };
        if let Some(mtu) = raw.mtu
            && !(68..=65535).contains(&mtu)
        {
            return Err(CniError::config(format!(
                "mtu {mtu} is out of range: use 68 to 65535"
            )));
        }
        let wait = match &raw.add_wait_seconds {
            None => DEFAULT_ADD_WAIT_SECONDS,
            Some(v) => v.as_f64().ok_or_else(|| {
                CniError::config(format!(
                    "addWaitSeconds {v} is not a number: give seconds, e.g. 5 or 0.5"
                ))
            })?,
        };
        if !(0.0..=MAX_ADD_WAIT_SECONDS).contains(&wait) {
            return Err(CniError::config(format!(
                "addWaitSeconds {wait} is out of range: use 0 (fail at once when the enforcer does not answer) to {MAX_ADD_WAIT_SECONDS}"
            )));
        }
        let zone = match raw.zone.as_deref().filter(|z| !z.is_empty()) {
            Some(z) => Some(ZoneName::parse_claim(z).map_err(|e| {
                CniError::config(format!("the network config key \"zone\" is invalid: {e}"))
            })?),
            None => None,
        };
        let socket = raw
            .socket
            .unwrap_or_else(|| zonewarden_proto::DEFAULT_SOCKET.into());
        if !socket.is_absolute() {
            return Err(CniError::config(format!(
                "socket {} must be an absolute path",
                socket.display()
            )));
        }
        Ok(Self {
            version,
            name: raw.name,
            ipam_type,
            dns: raw.dns,
            zone,
            socket,
            mode,
            mtu: raw.mtu,
            add_wait: Duration::from_secs_f64(wait),
            log_file: raw.log_file,
            log_level: raw.log_level,
            runtime_config: raw.runtime_config,
            prev_result: raw.prev_result.filter(|v| !v.is_null()),
            valid_attachments: raw.valid_attachments.or(raw.attachments),
        })
    }

    /// Where DELs wait while the enforcer is unreachable: beside its socket.
    pub fn pending_del_dir(&self) -> PathBuf {
        self.socket
            .parent()
            .map_or_else(|| PathBuf::from("/run/zonewarden"), PathBuf::from)
            .join("pending-del")
    }
}

fn ipam_type(ipam: &serde_json::Value) -> Result<String, CniError> {
    match ipam.get("type").and_then(|t| t.as_str()) {
        Some(t) if !t.is_empty() && !t.contains('/') => Ok(t.to_owned()),
        Some(t) => Err(CniError::config(format!(
            "ipam.type {t:?} is not a plugin name"
        ))),
        None => Err(CniError::config(
            "ipam has no \"type\": name the IPAM plugin, e.g. \"host-local\"",
        )),
    }
}
