//! `runtimeConfig`: the capabilities a runtime injects. Keys are accepted in the CNI
//! conventions' camelCase and in the Go field spelling containerd sends
//! (`HostPort`, `IngressRate`, `Servers`, ...).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// Go runtimes send a nil map or slice as `null`: containerd 1.6 sends
/// `"io.kubernetes.cri.pod-annotations": null` for a pod without annotations. That is
/// an empty one, not an invalid config.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(default, alias = "PortMappings", deserialize_with = "null_as_empty")]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default, alias = "Bandwidth")]
    pub bandwidth: Option<Bandwidth>,
    #[serde(default, alias = "DNS", alias = "Dns")]
    pub dns: Option<RuntimeDns>,
    /// Pod annotations (`io.kubernetes.cri.pod-annotations` capability).
    #[serde(
        default,
        rename = "io.kubernetes.cri.pod-annotations",
        deserialize_with = "null_as_empty"
    )]
    pub pod_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    #[serde(alias = "HostPort")]
    pub host_port: u16,
    #[serde(alias = "ContainerPort")]
    pub container_port: u16,
    #[serde(default, alias = "Protocol")]
    pub protocol: String,
    #[serde(default, alias = "HostIP", alias = "hostIp")]
    pub host_ip: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    #[serde(default, alias = "IngressRate")]
    pub ingress_rate: u64,
    #[serde(default, alias = "IngressBurst")]
    pub ingress_burst: u64,
    #[serde(default, alias = "EgressRate")]
    pub egress_rate: u64,
    #[serde(default, alias = "EgressBurst")]
    pub egress_burst: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeDns {
    #[serde(
        default,
        alias = "Servers",
        alias = "nameservers",
        deserialize_with = "null_as_empty"
    )]
    pub servers: Vec<String>,
    #[serde(
        default,
        alias = "Searches",
        alias = "search",
        deserialize_with = "null_as_empty"
    )]
    pub searches: Vec<String>,
    #[serde(default, alias = "Options", deserialize_with = "null_as_empty")]
    pub options: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_keys() {
        let rc: RuntimeConfig = serde_json::from_str(
            r#"{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}],
                "bandwidth":{"ingressRate":1000,"egressRate":2000},
                "dns":{"servers":["10.96.0.10"],"searches":["svc.cluster.local"]},
                "io.kubernetes.cri.pod-annotations":{"zonewarden.io/zone":"shop/payments"},
                "aliases":{"x":["y"]}}"#,
        )
        .unwrap();
        assert_eq!(rc.port_mappings[0].host_port, 8080);
        assert_eq!(rc.bandwidth.unwrap().egress_rate, 2000);
        assert_eq!(rc.dns.unwrap().servers, ["10.96.0.10"]);
        assert_eq!(rc.pod_annotations["zonewarden.io/zone"], "shop/payments");
    }

    #[test]
    fn containerd_go_spelling() {
        let rc: RuntimeConfig = serde_json::from_str(
            r#"{"portMappings":[{"HostPort":30080,"ContainerPort":80,"Protocol":"TCP","HostIP":"0.0.0.0"}],
                "bandwidth":{"IngressRate":5000,"IngressBurst":100,"EgressRate":6000,"EgressBurst":200},
                "dns":{"Servers":["1.1.1.1"],"Searches":["a.b"],"Options":["ndots:5"]}}"#,
        )
        .unwrap();
        let pm = &rc.port_mappings[0];
        assert_eq!((pm.host_port, pm.container_port), (30080, 80));
        assert_eq!(
            (pm.protocol.as_str(), pm.host_ip.as_str()),
            ("TCP", "0.0.0.0")
        );
        assert_eq!(rc.bandwidth.unwrap().ingress_rate, 5000);
        let dns = rc.dns.unwrap();
        assert_eq!((dns.servers.len(), dns.options[0].as_str()), (1, "ndots:5"));
    }

    /// containerd 1.6 sends a pod without annotations as `null` (a Go nil map), and nil
    /// slices of its DNS config the same way.
    #[test]
    fn go_nil_maps_and_slices_are_empty() {
        let rc: RuntimeConfig = serde_json::from_str(
            r#"{"io.kubernetes.cri.pod-annotations":null,"portMappings":null,
                "dns":{"Servers":null,"Searches":null,"Options":null}}"#,
        )
        .unwrap();
        assert!(rc.pod_annotations.is_empty() && rc.port_mappings.is_empty());
        let dns = rc.dns.unwrap();
        assert!(dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty());
    }
}
