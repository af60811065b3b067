//! CNI results: one model (the 1.1 superset) read from any version a previous plugin
//! or an IPAM plugin wrote, and written in the version of the request.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{CniError, ErrorCode};
use crate::version::CniVersion;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<String>,
    #[serde(default, rename = "pciID", skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// A result in the 1.1 model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

impl CniResult {
    /// Reads a result of any supported version (0.3.x/0.4.0 `ips[].version` is ignored).
    pub fn from_value(value: &Value, what: &str) -> Result<Self, CniError> {
        serde_json::from_value(value.clone())
            .map_err(|e| CniError::new(ErrorCode::Decode, format!("cannot decode the {what}: {e}")))
    }

    /// The index of the container interface named `ifname` (the one with a sandbox).
    pub fn container_interface(&self, ifname: &str) -> Option<usize> {
        self.interfaces
            .iter()
            .position(|i| i.name == ifname && i.sandbox.as_deref().is_some_and(|s| !s.is_empty()))
            .or_else(|| self.interfaces.iter().position(|i| i.name == ifname))
    }

    /// The addresses of interface `index`; addresses without an interface belong to it too.
    pub fn ips_of(&self, index: Option<usize>) -> Vec<IpNet> {
        self.ips
            .iter()
            .filter(|ip| ip.interface.is_none() || ip.interface == index)
            .map(|ip| ip.address)
            .collect()
    }

    /// The result as JSON in `version`, with `cniVersion` set.
    pub fn to_value(&self, version: CniVersion) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        let Some(obj) = value.as_object_mut() else {
            return Value::Null;
        };
        if !version.has_1_1_fields() {
            strip(obj, "interfaces", &["mtu", "socketPath", "pciID"]);
            strip(
                obj,
                "routes",
                &["mtu", "advmss", "priority", "table", "scope"],
            );
        }
        if version.has_ip_version_field()
            && let Some(Value::Array(ips)) = obj.get_mut("ips")
        {
            for ip in ips.iter_mut().filter_map(Value::as_object_mut) {
                let v6 = ip
                    .get("address")
                    .and_then(Value::as_str)
                    .is_some_and(|a| a.contains(':'));
                ip.insert("version".into(), Value::from(if v6 { "6" } else { "4" }));
            }
        }
        let mut out = Map::new();
        out.insert("cniVersion".into(), Value::from(version.as_str()));
        out.append(obj);
        Value::Object(out)
    }
}

fn strip(obj: &mut Map<String, Value>, list: &str, keys: &[&str]) {
    if let Some(Value::Array(items)) = obj.get_mut(list) {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            for key in keys {
                item.remove(*key);
            }
        }
    }
}
