//! Who may put a pod into which zone by the pod annotation `zonewarden.io/zone`.
//!
//! Whoever may create a pod in a Kubernetes namespace controls its annotations (and
//! its name), so an annotation names a zone only inside the pod's own namespace:
//! `cache` on a pod in `tenant-a` means `tenant-a/cache`, and `tenant-a/cache` is
//! accepted as written. A zone of another namespace (`tenant-b/db`) is refused unless
//! the operator allowed it with a [`ClaimException`] (the enforcer's
//! `--allow-zone-claim NAMESPACE=ZONE` or `NAMESPACE=PREFIX/*`). The built-in zones
//! `host` and `world`, and names under them, are refused whatever the exceptions say.
//!
//! Zones from CNI_ARGS and the network config are set by the runtime or the operator,
//! not by the pod's author; [`crate::derive`] does not confine them to a namespace.

use std::fmt;
use std::str::FromStr;

use crate::zone::{ZoneError, ZoneName};

/// One operator-allowed crossing: pods of `namespace` (any namespace for `*`) may
/// claim `zone` by annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimException {
    /// `None`: pods of every namespace.
    namespace: Option<String>,
    zone: ZonePattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ZonePattern {
    /// Exactly this zone.
    Zone(ZoneName),
    /// Every zone `PREFIX/...`.
    Under(String),
}

impl ClaimException {
    fn matches(&self, pod_namespace: &str, zone: &ZoneName) -> bool {
        let namespace_ok = self
            .namespace
            .as_deref()
            .is_none_or(|ns| ns == pod_namespace);
        let zone_ok = match &self.zone {
            ZonePattern::Zone(allowed) => allowed == zone,
            ZonePattern::Under(prefix) => zone.namespace() == Some(prefix.as_str()),
        };
        namespace_ok && zone_ok
    }
}

impl FromStr for ClaimException {
    type Err = String;

    /// `NAMESPACE=ZONE` or `NAMESPACE=PREFIX/*`; `NAMESPACE` may be `*`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = "use NAMESPACE=NS/ZONE or NAMESPACE=NS/* (NAMESPACE may be *), \
                     e.g. tenant-a=shared/cache";
        let (namespace, zone) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?} is not NAMESPACE=ZONE: {usage}"))?;
        let namespace = match namespace {
            "*" => None,
            ns => {
                // A namespace is a zone segment: the same characters, no '/'.
                let valid = !ns.contains('/') && ZoneName::parse_any(ns).is_ok();
                if !valid {
                    return Err(format!(
                        "{ns:?} in {text:?} is not a namespace name: {usage}"
                    ));
                }
                Some(ns.to_owned())
            }
        };
        let refuse = |err: ZoneError| format!("{zone:?} in {text:?}: {err}");
        let zone = match zone.strip_suffix("/*") {
            Some(prefix) => {
                // Checked as a zone `PREFIX/x`, so built-in prefixes are refused too.
                ZoneName::parse_claim(&format!("{prefix}/x")).map_err(refuse)?;
                ZonePattern::Under(prefix.to_owned())
            }
            None => {
                let zone = ZoneName::parse_claim(zone).map_err(refuse)?;
                if zone.namespace().is_none() {
                    return Err(format!(
                        "{zone:?} in {text:?} has no namespace: an annotation without one \
                         already names a zone of the pod's own namespace; {usage}"
                    ));
                }
                ZonePattern::Zone(zone)
            }
        };
        Ok(Self { namespace, zone })
    }
}

impl fmt::Display for ClaimException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.namespace.as_deref().unwrap_or("*"))?;
        match &self.zone {
            ZonePattern::Zone(zone) => write!(f, "={zone}"),
            ZonePattern::Under(prefix) => write!(f, "={prefix}/*"),
        }
    }
}

/// The operator's exceptions to the namespace rule; empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneClaims {
    exceptions: Vec<ClaimException>,
}

/// Why an annotation's zone was refused. The messages say what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimRefused {
    #[error(
        "the pod annotation zonewarden.io/zone={value:?} names the built-in zone {builtin} \
         (or a zone under it), which no pod may claim; remove the annotation or name a zone \
         of the pod's own namespace"
    )]
    Builtin { value: String, builtin: String },
    #[error(
        "the pod annotation zonewarden.io/zone={value:?} of a pod in namespace {pod_namespace:?} \
         names a zone of namespace {zone_namespace:?}: an annotation may only name a zone of \
         the pod's own namespace (e.g. {suggestion:?}); an operator may allow this one with \
         the enforcer flag --allow-zone-claim {pod_namespace}={value}"
    )]
    OtherNamespace {
        value: String,
        pod_namespace: String,
        zone_namespace: String,
        suggestion: String,
    },
    #[error(
        "the pod annotation zonewarden.io/zone={value:?} names a zone of namespace \
         {zone_namespace:?} but the pod's namespace is unknown (no K8S_POD_NAMESPACE in \
         CNI_ARGS): without one, name a zone without a namespace"
    )]
    NoNamespace {
        value: String,
        zone_namespace: String,
    },
}

/// An annotation that names no zone at all, or one the pod may not claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error(transparent)]
    Invalid(#[from] ZoneError),
    #[error(transparent)]
    Refused(#[from] ClaimRefused),
}

impl ZoneClaims {
    pub fn new(exceptions: Vec<ClaimException>) -> Self {
        Self { exceptions }
    }

    pub fn exceptions(&self) -> &[ClaimException] {
        &self.exceptions
    }

    /// The zone the annotation `value` puts a pod of `pod_namespace` into, or why not.
    pub fn resolve(
        &self,
        value: &str,
        pod_namespace: Option<&str>,
    ) -> Result<ZoneName, ClaimError> {
        let written = ZoneName::parse_any(value)?;
        let builtin = |name: &str| ClaimRefused::Builtin {
            value: value.to_owned(),
            builtin: name.to_owned(),
        };
        if written.is_builtin() {
            return Err(builtin(written.as_str()).into());
        }
        let Some(pod_namespace) = pod_namespace else {
            return match written.namespace() {
                None => Ok(written),
                Some(ns) if written.is_reserved() => Err(builtin(ns).into()),
                Some(ns) => Err(ClaimRefused::NoNamespace {
                    value: value.to_owned(),
                    zone_namespace: ns.to_owned(),
                }
                .into()),
            };
        };
        let zone = match written.namespace() {
            // A plain name is a zone of the pod's own namespace.
            None => return Ok(ZoneName::workload(pod_namespace, value)?),
            Some(ns) if ns == pod_namespace.to_lowercase() => return Ok(written),
            Some(_) => written,
        };
        let zone_namespace = zone.namespace().unwrap_or_default().to_owned();
        if zone.is_reserved() {
            return Err(builtin(&zone_namespace).into());
        }
        if self
            .exceptions
            .iter()
            .any(|e| e.matches(pod_namespace, &zone))
        {
            return Ok(zone);
        }
        let name = value.rsplit('/').next().unwrap_or(value);
        Err(ClaimRefused::OtherNamespace {
            value: value.to_owned(),
            pod_namespace: pod_namespace.to_owned(),
            zone_namespace,
            suggestion: format!("{}/{name}", pod_namespace.to_lowercase()),
        }
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str) -> ZoneName {
        ZoneName::parse_any(name).unwrap()
    }

    fn refused(claims: &ZoneClaims, value: &str, namespace: Option<&str>) -> ClaimRefused {
        match claims.resolve(value, namespace) {
            Err(ClaimError::Refused(refused)) => refused,
            other => panic!("{value:?} in {namespace:?} must be refused, got {other:?}"),
        }
    }

    fn claims(exceptions: &[&str]) -> ZoneClaims {
        ZoneClaims::new(exceptions.iter().map(|e| e.parse().unwrap()).collect())
    }

    #[test]
    fn an_annotation_names_a_zone_of_its_own_namespace() {
        let none = ZoneClaims::default();
        assert_eq!(
            none.resolve("cache", Some("tenant-a")),
            Ok(zone("tenant-a/cache"))
        );
        assert_eq!(
            none.resolve("tenant-a/cache", Some("tenant-a")),
            Ok(zone("tenant-a/cache"))
        );
        // A Kubernetes namespace named like a built-in zone is still the pod's own.
        assert_eq!(none.resolve("web", Some("host")), Ok(zone("host/web")));
    }

    #[test]
    fn other_namespaces_are_refused_with_what_to_do() {
        let err = refused(&ZoneClaims::default(), "tenant-b/db", Some("tenant-a"));
        assert!(
            matches!(&err, ClaimRefused::OtherNamespace { zone_namespace, .. } if zone_namespace == "tenant-b"),
            "{err:?}"
        );
        let msg = err.to_string();
        for part in [
            "tenant-b/db",
            "namespace \"tenant-a\"",
            "tenant-a/db",
            "--allow-zone-claim tenant-a=tenant-b/db",
        ] {
            assert!(msg.contains(part), "{msg:?} should contain {part:?}");
        }
    }

    #[test]
    fn built_in_zones_are_refused_whatever_the_exceptions() {
        let open = claims(&["*=shared/*", "tenant-a=tenant-b/*"]);
        for value in ["host", "world", "host/x", "world/db"] {
            let err = refused(&open, value, Some("tenant-a"));
            assert!(
                matches!(err, ClaimRefused::Builtin { .. }),
                "{value}: {err:?}"
            );
            assert!(err.to_string().contains("built-in"), "{err}");
            let err = refused(&open, value, None);
            assert!(
                matches!(err, ClaimRefused::Builtin { .. }),
                "{value}: {err:?}"
            );
        }
        for bad in ["tenant-a=host/*", "*=world/x", "tenant-a=host", "x=world/*"] {
            assert!(
                bad.parse::<ClaimException>().is_err(),
                "{bad} must be refused"
            );
        }
    }

    #[test]
    fn exceptions_allow_exactly_what_they_name() {
        let c = claims(&["tenant-a=tenant-b/db", "*=shared/*"]);
        assert_eq!(
            c.resolve("tenant-b/db", Some("tenant-a")),
            Ok(zone("tenant-b/db"))
        );
        assert!(c.resolve("tenant-b/db", Some("tenant-c")).is_err());
        assert!(c.resolve("tenant-b/cache", Some("tenant-a")).is_err());
        assert_eq!(
            c.resolve("shared/cache", Some("tenant-c")),
            Ok(zone("shared/cache"))
        );
        assert!(c.resolve("sharedx/cache", Some("tenant-c")).is_err());
    }

    #[test]
    fn without_a_namespace_only_plain_names() {
        let none = ZoneClaims::default();
        assert_eq!(none.resolve("cache", None), Ok(zone("cache")));
        let err = refused(&none, "tenant-b/db", None);
        assert!(matches!(err, ClaimRefused::NoNamespace { .. }), "{err:?}");
    }

    #[test]
    fn invalid_names_are_no_refusal_but_an_invalid_zone() {
        assert!(matches!(
            ZoneClaims::default().resolve("Not A Zone", Some("a")),
            Err(ClaimError::Invalid(ZoneError::Invalid { .. }))
        ));
    }

    #[test]
    fn exception_syntax() {
        for (text, shown) in [
            ("tenant-a=tenant-b/db", "tenant-a=tenant-b/db"),
            ("*=shared/*", "*=shared/*"),
        ] {
            let e: ClaimException = text.parse().unwrap();
            assert_eq!(e.to_string(), shown);
        }
        for bad in [
            "tenant-a",
            "tenant-a=db",
            "a/b=c/d",
            "Tenant=a/b",
            "a=B/c",
            "a=/*",
            "a=b/c/d",
        ] {
            let err = bad.parse::<ClaimException>().unwrap_err();
            assert!(err.contains(bad), "{bad}: the error names the input: {err}");
        }
    }
}
