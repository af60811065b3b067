//! `runtimeConfig`: the capabilities a runtime injects. Keys are accepted in the CNI
//! conventions' camelCase and in the Go field spelling containerd sends
//! (`HostPort`, `IngressRate`, `Servers`, ...).

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(default, alias = "PortMappings")]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default, alias = "Bandwidth")]
    pub bandwidth: Option<Bandwidth>,
    #[serde(default, alias = "DNS", alias = "Dns")]
    pub dns: Option<RuntimeDns>,
    /// Pod annotations (`io.kubernetes.cri.pod-annotations` capability).
    #[serde(default, rename = "io.kubernetes.cri.pod-annotations")]
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
    #[serde(default, alias = "Servers", alias = "nameservers")]
    pub servers: Vec<String>,
    #[serde(default, alias = "Searches", alias = "search")]
    pub searches: Vec<String>,
    #[serde(default, alias = "Options")]
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
}
