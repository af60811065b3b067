//! CNI errors: the well-known codes of the spec and the plugin's own, and the JSON
//! the runtime reads from stdout when the plugin fails.

use serde::Serialize;

/// Error codes of the CNI spec, plus zonewarden's own (100 and up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnv = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    InvalidNetns = 8,
    TryAgainLater = 11,
    Unavailable = 50,
    /// The enforcer refused or failed the request for a reason other than being down.
    EnforcerRejected = 100,
    /// CHECK found the attachment different from what ADD made.
    CheckFailed = 101,
    /// A repeated ADD found its attachment registered but not as the first ADD made
    /// it (another netns, another mode, a missing interface or address): nothing was
    /// changed; DEL the attachment, then ADD it again.
    AttachmentConflict = 102,
}

/// A failure of one CNI operation, as the runtime will see it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    pub code: ErrorCode,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    pub fn env(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidEnv, msg)
    }

    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidConfig, msg)
    }

    pub fn io(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::Io, msg)
    }

    /// The error JSON of the spec, in the version of the request (or the newest).
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        serde_json::to_string(&Wire {
            cni_version,
            code: self.code as u32,
            msg: &self.msg,
            details: &self.details,
        })
        .unwrap_or_else(|_| format!("{{\"code\":{},\"msg\":\"error\"}}", self.code as u32))
    }
}

/// The message of an error and all its causes, for an operator reading it once.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = cause.source();
    }
    msg
}

/// The CNI code of a link-layer failure.
pub fn from_link(err: crate::link::LinkError) -> CniError {
    use crate::link::LinkError;
    let code = match &err {
        LinkError::Netns(crate::netns::NetnsError::NotFound { .. }) => ErrorCode::InvalidEnv,
        LinkError::Netns(crate::netns::NetnsError::NotNetns { .. }) => ErrorCode::InvalidNetns,
        LinkError::PodInterfaceExists { .. }
        | LinkError::LeftoverExists { .. }
        | LinkError::InvalidName { .. } => ErrorCode::InvalidConfig,
        LinkError::Ipv6Unavailable { .. } => ErrorCode::UnsupportedField,
        LinkError::Ipv6Forwarding { .. } | LinkError::Chained { .. } => ErrorCode::InvalidConfig,
        _ => ErrorCode::Io,
    };
    CniError::new(code, chain(&err))
}

/// The CNI code of a failure to use the netns named by `var`.
pub fn from_netns(err: crate::netns::NetnsError, var: &str) -> CniError {
    let code = match &err {
        crate::netns::NetnsError::NotFound { .. } => ErrorCode::InvalidEnv,
        crate::netns::NetnsError::NotNetns { .. } => ErrorCode::InvalidNetns,
        _ => ErrorCode::Io,
    };
    CniError::new(code, format!("{var}: {}", chain(&err)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_the_spec_fields() {
        let err = CniError::env("CNI_NETNS is not set").with_details("set it");
        let v: serde_json::Value = serde_json::from_str(&err.to_json("1.0.0")).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["code"], 4);
        assert_eq!(v["msg"], "CNI_NETNS is not set");
        assert_eq!(v["details"], "set it");
        let bare: serde_json::Value =
            serde_json::from_str(&CniError::io("x").to_json("1.1.0")).unwrap();
        assert!(bare.get("details").is_none());
    }
}
