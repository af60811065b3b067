//! CNI spec versions: which ones zonewarden speaks and what each allows.

use serde::Serialize;

/// Every version zonewarden reads and writes, oldest first.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CniVersion {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl CniVersion {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "0.3.0" => Self::V0_3_0,
            "0.3.1" => Self::V0_3_1,
            "0.4.0" => Self::V0_4_0,
            "1.0.0" => Self::V1_0_0,
            "1.1.0" => Self::V1_1_0,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V0_3_0 => "0.3.0",
            Self::V0_3_1 => "0.3.1",
            Self::V0_4_0 => "0.4.0",
            Self::V1_0_0 => "1.0.0",
            Self::V1_1_0 => "1.1.0",
        }
    }

    /// CHECK exists from 0.4.0 on.
    pub fn allows_check(self) -> bool {
        self >= Self::V0_4_0
    }

    /// GC and STATUS exist from 1.1.0 on.
    pub fn allows_gc_and_status(self) -> bool {
        self >= Self::V1_1_0
    }

    /// 0.3.x and 0.4.0 results carry `ips[].version`; 1.x results do not.
    pub fn has_ip_version_field(self) -> bool {
        self < Self::V1_0_0
    }

    /// Interface `mtu`/`socketPath`/`pciID` and route `mtu`/`advmss`/... are 1.1 fields.
    pub fn has_1_1_fields(self) -> bool {
        self >= Self::V1_1_0
    }
}

/// The VERSION reply: the request's version (if any) and every version supported.
pub fn version_reply(stdin: &[u8]) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Reply<'a> {
        cni_version: &'a str,
        supported_versions: &'a [&'a str],
    }
    // stdin is ignored except to echo a supported cniVersion back, as libcni expects.
    let requested = serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().and_then(CniVersion::parse))
        .unwrap_or(CniVersion::V1_1_0);
    serde_json::to_string(&Reply {
        cni_version: requested.as_str(),
        supported_versions: &SUPPORTED_VERSIONS,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_reply_ignores_stdin() {
        for stdin in [&b""[..], b"garbage", b"{\"cniVersion\":\"9.9.9\"}"] {
            let v: serde_json::Value = serde_json::from_str(&version_reply(stdin)).unwrap();
            assert_eq!(v["cniVersion"], "1.1.0");
            assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 5);
        }
        let v: serde_json::Value =
            serde_json::from_str(&version_reply(b"{\"cniVersion\":\"0.4.0\"}")).unwrap();
        assert_eq!(v["cniVersion"], "0.4.0");
    }

    #[test]
    fn capabilities_by_version() {
        assert!(!CniVersion::V0_3_1.allows_check());
        assert!(CniVersion::V0_4_0.allows_check());
        assert!(!CniVersion::V1_0_0.allows_gc_and_status());
        assert!(CniVersion::V1_1_0.allows_gc_and_status());
        assert!(CniVersion::V0_4_0.has_ip_version_field());
        assert!(!CniVersion::V1_0_0.has_ip_version_field());
    }
}
