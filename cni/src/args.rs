//! `CNI_ARGS`: `K=V;K=V`, parsed leniently. Any order, `IgnoreUnknown`, unknown keys
//! or nothing at all are fine; only the keys zonewarden uses are kept.

/// The keys of CNI_ARGS that zonewarden reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub pod_infra_container_id: Option<String>,
    pub pod_uid: Option<String>,
    /// `ZONEWARDEN_ZONE`: an explicit zone for this attachment.
    pub zone: Option<String>,
}

impl CniArgs {
    pub fn parse(raw: &str) -> Self {
        let mut args = Self::default();
        for pair in raw.split(';') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let slot = match key.trim() {
                "K8S_POD_NAMESPACE" => &mut args.pod_namespace,
                "K8S_POD_NAME" => &mut args.pod_name,
                "K8S_POD_INFRA_CONTAINER_ID" => &mut args.pod_infra_container_id,
                "K8S_POD_UID" => &mut args.pod_uid,
                "ZONEWARDEN_ZONE" => &mut args.zone,
                _ => continue,
            };
            *slot = Some(value.to_owned());
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_args_in_any_order() {
        let raw = "K8S_POD_UID=1234;IgnoreUnknown=1;K8S_POD_NAME=web-7d4b9c8f6-x2k9p;\
                   K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_NAMESPACE=shop";
        let args = CniArgs::parse(raw);
        assert_eq!(args.pod_namespace.as_deref(), Some("shop"));
        assert_eq!(args.pod_name.as_deref(), Some("web-7d4b9c8f6-x2k9p"));
        assert_eq!(args.pod_infra_container_id.as_deref(), Some("abc"));
        assert_eq!(args.pod_uid.as_deref(), Some("1234"));
        assert_eq!(args.zone, None);
    }

    #[test]
    fn lenient_with_unknown_empty_and_malformed() {
        assert_eq!(CniArgs::parse(""), CniArgs::default());
        let args = CniArgs::parse("FOO=bar;;novalue;ZONEWARDEN_ZONE=payments;K8S_POD_NAME=");
        assert_eq!(args.zone.as_deref(), Some("payments"));
        assert_eq!(args.pod_name, None);
        let podman = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=mycontainer");
        assert_eq!(podman.pod_name.as_deref(), Some("mycontainer"));
        assert_eq!(podman.pod_namespace, None);
    }
}
