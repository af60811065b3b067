//! Which zone a workload belongs to.
//!
//! In order of precedence:
//! 1. the pod annotation `zonewarden.io/zone` (received through the
//!    `io.kubernetes.cri.pod-annotations` capability), confined to the pod's own
//!    namespace unless the operator allowed more ([`crate::claim`]);
//! 2. an explicit zone in CNI_ARGS (`ZONEWARDEN_ZONE=...`), set by the runtime;
//! 3. an explicit zone in the network config (`"zone": "..."`), set by the operator;
//! 4. the Kubernetes workload: `namespace/owner`, with the owner derived from the pod
//!    name (Deployment, StatefulSet, DaemonSet, Job and CronJob naming patterns);
//! 5. the pod name alone when no namespace is known (podman passes the container name);
//! 6. the zone `default`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::claim::{ClaimError, ClaimRefused, ZoneClaims};
use crate::zone::{ZoneError, ZoneName};

/// The pod annotation that names a pod's zone.
pub const ZONE_ANNOTATION: &str = "zonewarden.io/zone";

/// Everything the runtime told the plugin about a workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneHints {
    pub cni_args_zone: Option<String>,
    pub config_zone: Option<String>,
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub pod_annotations: BTreeMap<String, String>,
}

/// Where a zone came from, shown to operators next to every endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ZoneSource {
    Annotation,
    CniArgs,
    Config,
    Workload,
    Pod,
    Default,
}

impl ZoneSource {
    /// Every source, in order of precedence.
    pub const ALL: [ZoneSource; 6] = [
        ZoneSource::Annotation,
        ZoneSource::CniArgs,
        ZoneSource::Config,
        ZoneSource::Workload,
        ZoneSource::Pod,
        ZoneSource::Default,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Annotation => "annotation",
            Self::CniArgs => "cni-args",
            Self::Config => "config",
            Self::Workload => "workload",
            Self::Pod => "pod",
            Self::Default => "default",
        }
    }
}

impl fmt::Display for ZoneSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeriveError {
    #[error("{origin} names an invalid zone: {source}")]
    Invalid {
        origin: &'static str,
        #[source]
        source: ZoneError,
    },
    /// The pod annotation names a zone the pod may not claim.
    #[error(transparent)]
    Refused(#[from] ClaimRefused),
}

/// Derives the zone of a workload from what the runtime passed; `claims` are the
/// operator's exceptions to the namespace rule of annotations.
pub fn derive_zone(
    hints: &ZoneHints,
    claims: &ZoneClaims,
) -> Result<(ZoneName, ZoneSource), DeriveError> {
    let namespace = hints.pod_namespace.as_deref().filter(|n| !n.is_empty());
    let invalid = |origin| move |source| DeriveError::Invalid { origin, source };
    if let Some(value) = hints
        .pod_annotations
        .get(ZONE_ANNOTATION)
        .filter(|v| !v.is_empty())
    {
        let zone = claims.resolve(value, namespace).map_err(|err| match err {
            ClaimError::Invalid(source) => invalid("the pod annotation zonewarden.io/zone")(source),
            ClaimError::Refused(refused) => DeriveError::Refused(refused),
        })?;
        return Ok((zone, ZoneSource::Annotation));
    }
    let explicit = [
        (
            hints.cni_args_zone.as_ref(),
            ZoneSource::CniArgs,
            "CNI_ARGS ZONEWARDEN_ZONE",
        ),
        (
            hints.config_zone.as_ref(),
            ZoneSource::Config,
            "the network config key \"zone\"",
        ),
    ];
    for (value, source, origin) in explicit {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            let zone = ZoneName::parse_claim(value).map_err(invalid(origin))?;
            return Ok((zone, source));
        }
    }
    let pod = hints.pod_name.as_deref().filter(|p| !p.is_empty());
    let origin = "the pod name";
    match (namespace, pod) {
        (Some(ns), Some(pod)) => {
            let zone =
                ZoneName::workload(ns, workload_from_pod_name(pod)).map_err(invalid(origin))?;
            Ok((zone, ZoneSource::Workload))
        }
        (None, Some(pod)) => {
            let zone = ZoneName::parse(&workload_from_pod_name(pod).to_lowercase())
                .map_err(invalid(origin))?;
            Ok((zone, ZoneSource::Pod))
        }
        _ => Ok((ZoneName::default_zone(), ZoneSource::Default)),
    }
}

/// The characters Kubernetes uses for generated name suffixes and pod-template hashes
/// (`k8s.io/apimachinery/pkg/util/rand`: no vowels, no 0/1/3 that read as letters).
fn is_generated(c: char) -> bool {
    "bcdfghjklmnpqrstvwxz2456789".contains(c)
}

fn is_generated_run(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.chars().all(is_generated)
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

/// The owning workload's name, from the naming patterns of Kubernetes controllers.
///
/// - Deployment: `name-<pod-template-hash>-<5>` → `name`
/// - CronJob: `name-<scheduled minutes>-<5>` → `name`
/// - Indexed Job: `name-<index>-<5>` → `name`
/// - DaemonSet, Job, ReplicaSet: `name-<5>` → `name`
/// - StatefulSet: `name-<ordinal>` → `name`
/// - anything else: the pod name itself.
pub fn workload_from_pod_name(pod: &str) -> &str {
    let parts: Vec<&str> = pod.rsplitn(3, '-').collect();
    // parts = [last, middle, rest] (reversed order), when present.
    if let [suffix, middle, rest] = parts.as_slice()
        && !rest.is_empty()
        && is_generated_run(suffix, 5, 5)
        && (is_generated_run(middle, 6, 10) || is_digits(middle))
    {
        return rest;
    }
    if let Some((rest, suffix)) = pod.rsplit_once('-')
        && !rest.is_empty()
        && (is_generated_run(suffix, 5, 5) || is_digits(suffix))
    {
        return rest;
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pod_names_of_each_controller() {
        let cases = [
            ("frontend-7d4b9c8f6-x2k9p", "frontend"),
            ("api-server-5c7f8d9b4d-qwz7t", "api-server"),
            ("db-0", "db"),
            ("web-12", "web"),
            ("node-exporter-h7x2c", "node-exporter"),
            ("migrate-t9q4z", "migrate"),
            ("backup-28940160-v6d8k", "backup"),
            ("indexed-job-3-fk7lp", "indexed-job"),
            ("standalone", "standalone"),
            ("my-pod", "my-pod"),
            ("x-aeiou", "x-aeiou"),
        ];
        for (pod, want) in cases {
            assert_eq!(workload_from_pod_name(pod), want, "pod {pod}");
        }
    }

    fn none() -> ZoneClaims {
        ZoneClaims::default()
    }

    fn hints(ns: &str, pod: &str) -> ZoneHints {
        ZoneHints {
            pod_namespace: Some(ns.into()),
            pod_name: Some(pod.into()),
            ..ZoneHints::default()
        }
    }

    #[test]
    fn kubernetes_workload_zone() {
        let (zone, source) =
            derive_zone(&hints("shop", "frontend-7d4b9c8f6-x2k9p"), &none()).unwrap();
        assert_eq!(zone.as_str(), "shop/frontend");
        assert_eq!(source, ZoneSource::Workload);
    }

    #[test]
    fn precedence_annotation_then_args_then_config() {
        let mut h = hints("shop", "frontend-7d4b9c8f6-x2k9p");
        h.config_zone = Some("from-config".into());
        assert_eq!(
            derive_zone(&h, &none()).unwrap(),
            (ZoneName::parse("from-config").unwrap(), ZoneSource::Config)
        );
        h.cni_args_zone = Some("from-args".into());
        assert_eq!(
            derive_zone(&h, &none()).unwrap(),
            (ZoneName::parse("from-args").unwrap(), ZoneSource::CniArgs)
        );
        h.pod_annotations
            .insert(ZONE_ANNOTATION.into(), "shop/payments".into());
        assert_eq!(
            derive_zone(&h, &none()).unwrap(),
            (
                ZoneName::parse("shop/payments").unwrap(),
                ZoneSource::Annotation
            )
        );
    }

    #[test]
    fn invalid_explicit_zone_names_its_origin() {
        let mut h = ZoneHints::default();
        h.pod_annotations
            .insert(ZONE_ANNOTATION.into(), "Not Valid".into());
        let err = derive_zone(&h, &none()).unwrap_err();
        assert!(err.to_string().contains("zonewarden.io/zone"), "{err}");
        let h = ZoneHints {
            cni_args_zone: Some("host".into()),
            ..ZoneHints::default()
        };
        let err = derive_zone(&h, &none()).unwrap_err();
        assert!(err.to_string().contains("reserved"), "{err}");
    }

    #[test]
    fn annotations_stay_in_the_pods_namespace() {
        let mut h = hints("tenant-a", "web-0");
        h.cni_args_zone = Some("from-args".into());
        for (value, want) in [
            ("cache", "tenant-a/cache"),
            ("tenant-a/cache", "tenant-a/cache"),
        ] {
            h.pod_annotations
                .insert(ZONE_ANNOTATION.into(), value.into());
            assert_eq!(
                derive_zone(&h, &none()).unwrap(),
                (ZoneName::parse(want).unwrap(), ZoneSource::Annotation),
                "{value}"
            );
        }
        for value in ["tenant-b/db", "host", "host/x", "world/y"] {
            h.pod_annotations
                .insert(ZONE_ANNOTATION.into(), value.into());
            let err = derive_zone(&h, &none()).unwrap_err();
            assert!(matches!(err, DeriveError::Refused(_)), "{value}: {err:?}");
            assert!(err.to_string().contains(value), "{value}: {err}");
        }
        let allowed = ZoneClaims::new(vec!["tenant-a=tenant-b/db".parse().unwrap()]);
        h.pod_annotations
            .insert(ZONE_ANNOTATION.into(), "tenant-b/db".into());
        assert_eq!(
            derive_zone(&h, &allowed).unwrap(),
            (
                ZoneName::parse("tenant-b/db").unwrap(),
                ZoneSource::Annotation
            )
        );
    }

    #[test]
    fn runtime_and_config_zones_are_not_confined_but_never_built_in() {
        let mut h = hints("tenant-a", "web-0");
        h.cni_args_zone = Some("tenant-b/batch".into());
        assert_eq!(
            derive_zone(&h, &none()).unwrap(),
            (
                ZoneName::parse("tenant-b/batch").unwrap(),
                ZoneSource::CniArgs
            )
        );
        for value in ["host/x", "world"] {
            h.cni_args_zone = Some(value.into());
            let err = derive_zone(&h, &none()).unwrap_err();
            assert!(err.to_string().contains("reserved"), "{value}: {err}");
        }
        let h = ZoneHints {
            config_zone: Some("world/y".into()),
            ..ZoneHints::default()
        };
        assert!(derive_zone(&h, &none()).is_err());
    }

    #[test]
    fn podman_and_bare_cases() {
        let h = ZoneHints {
            pod_name: Some("Web-1".into()),
            ..ZoneHints::default()
        };
        assert_eq!(
            derive_zone(&h, &none()).unwrap(),
            (ZoneName::parse("web").unwrap(), ZoneSource::Pod)
        );
        assert_eq!(
            derive_zone(&ZoneHints::default(), &none()).unwrap(),
            (ZoneName::default_zone(), ZoneSource::Default)
        );
    }

    proptest! {
        #[test]
        fn deployment_pods_map_to_their_deployment(
            name in "[a-z][a-z0-9]{0,8}(-[a-z][a-z0-9]{0,8}){0,2}",
            hash in "[bcdfghjklmnpqrstvwxz2456789]{6,10}",
            suffix in "[bcdfghjklmnpqrstvwxz2456789]{5}",
        ) {
            let pod = format!("{name}-{hash}-{suffix}");
            prop_assert_eq!(workload_from_pod_name(&pod), name.as_str());
        }

        #[test]
        fn statefulset_pods_map_to_their_set(
            name in "[a-z][a-z0-9]{0,8}(-[a-z][a-z0-9]{0,8}){0,2}",
            ordinal in 0u32..1000,
        ) {
            let pod = format!("{name}-{ordinal}");
            prop_assert_eq!(workload_from_pod_name(&pod), name.as_str());
        }

        #[test]
        fn derivation_never_panics(ns in ".{0,20}", pod in ".{0,40}") {
            let _ = derive_zone(&hints(&ns, &pod), &none());
        }
    }
}
