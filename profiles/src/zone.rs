//! Zone names: the identity of one workload (`namespace/workload` in Kubernetes,
//! an explicit name elsewhere), plus the built-in zones `host` and `world`.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The zone of the node itself: kubelet probes and host processes.
pub const HOST_ZONE: &str = "host";
/// The zone of every address that is no endpoint and in no CIDR zone.
pub const WORLD_ZONE: &str = "world";
/// The zone of an endpoint about which nothing is known.
pub const DEFAULT_ZONE: &str = "default";

const MAX_ZONE_LEN: usize = 253;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error("zone name is empty")]
    Empty,
    #[error("zone name {name:?} is longer than {MAX_ZONE_LEN} characters")]
    TooLong { name: String },
    #[error(
        "zone name {name:?} is invalid: use lowercase letters, digits, '-', '_' and '.', \
         optionally as 'namespace/name', starting and ending with a letter or digit"
    )]
    Invalid { name: String },
    #[error(
        "zone name {name:?} is reserved: the built-in zones host and world, and names \
         under them (host/..., world/...), cannot be claimed; choose another name"
    )]
    Reserved { name: String },
    #[error(
        "namespace {name:?} is invalid: a namespace is the part of a zone's name before \
         '/' (shop in shop/api): lowercase letters, digits, '-', '_' and '.', starting \
         and ending with a letter or digit"
    )]
    InvalidNamespace { name: String },
}

/// Validates a namespace as zone names hold it (`shop` of `shop/api`), e.g. a filter.
pub fn parse_namespace(name: &str) -> Result<&str, ZoneError> {
    if name.len() <= MAX_ZONE_LEN && !name.contains('/') && valid_segment(name) {
        Ok(name)
    } else {
        Err(ZoneError::InvalidNamespace {
            name: name.to_owned(),
        })
    }
}

/// A validated zone name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
/// Shared text: a zone's name is cloned into every index that names it (an endpoint,
/// the compiled ruleset, the resolver, snapshots), and a clone is a reference count.
pub struct ZoneName(Arc<str>);

impl ZoneName {
    /// Validates a zone name an operator or a workload asked for.
    /// Built-in names (`host`, `world`) are refused: no workload may claim them.
    pub fn parse(name: &str) -> Result<Self, ZoneError> {
        let zone = Self::parse_any(name)?;
        if zone.is_builtin() {
            return Err(ZoneError::Reserved {
                name: name.to_owned(),
            });
        }
        Ok(zone)
    }

    /// Validates a zone a workload is put into by an explicit name (CNI_ARGS, the
    /// network config, a pod annotation, an operator's exception): like [`Self::parse`],
    /// and names under a built-in zone (`host/x`, `world/y`) are refused too, since
    /// every listing would show them as part of the node or of the outside world.
    pub fn parse_claim(name: &str) -> Result<Self, ZoneError> {
        let zone = Self::parse(name)?;
        if zone.is_reserved() {
            return Err(ZoneError::Reserved {
                name: name.to_owned(),
            });
        }
        Ok(zone)
    }

    /// Validates a name that may also be a built-in zone.
    pub fn parse_any(name: &str) -> Result<Self, ZoneError> {
        if name.is_empty() {
            return Err(ZoneError::Empty);
        }
        if name.len() > MAX_ZONE_LEN {
            return Err(ZoneError::TooLong {
                name: name.to_owned(),
            });
        }
        let mut parts = name.split('/');
        let valid = parts.clone().count() <= 2 && parts.all(valid_segment);
        if !valid {
            return Err(ZoneError::Invalid {
                name: name.to_owned(),
            });
        }
        Ok(Self(Arc::from(name)))
    }

    /// Joins a Kubernetes namespace and workload name, lowercasing both.
    pub fn workload(namespace: &str, workload: &str) -> Result<Self, ZoneError> {
        Self::parse(&format!(
            "{}/{}",
            namespace.to_lowercase(),
            workload.to_lowercase()
        ))
    }

    pub fn host() -> Self {
        Self(Arc::from(HOST_ZONE))
    }

    pub fn world() -> Self {
        Self(Arc::from(WORLD_ZONE))
    }

    pub fn default_zone() -> Self {
        Self(Arc::from(DEFAULT_ZONE))
    }

    pub fn is_builtin(&self) -> bool {
        &*self.0 == HOST_ZONE || &*self.0 == WORLD_ZONE
    }

    /// A built-in zone or a name under one (`host/x`, `world/y`).
    pub fn is_reserved(&self) -> bool {
        self.is_builtin()
            || self
                .namespace()
                .is_some_and(|ns| ns == HOST_ZONE || ns == WORLD_ZONE)
    }

    /// The part before the `/` of a `namespace/name` zone; `None` for a plain name.
    pub fn namespace(&self) -> Option<&str> {
        self.0.split_once('/').map(|(namespace, _)| namespace)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The zone of `known` whose name is nearest to `name` by edit distance, when it is
/// close enough to be what a typo meant: at most a third of the name's length away
/// (at least 1, at most 3 edits). Ties go to the first in `known`'s order.
pub fn nearest<'a>(
    name: &str,
    known: impl IntoIterator<Item = &'a ZoneName>,
) -> Option<&'a ZoneName> {
    let limit = (name.chars().count() / 3).clamp(1, 3);
    known
        .into_iter()
        .filter(|zone| zone.as_str() != name)
        .map(|zone| (edit_distance(name, zone.as_str()), zone))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, zone)| zone)
}

/// Levenshtein distance: insertions, deletions and substitutions of characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

fn valid_segment(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let edge_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.first().is_some_and(edge_ok)
        && bytes.last().is_some_and(edge_ok)
        && bytes
            .iter()
            .all(|b| edge_ok(b) || matches!(b, b'-' | b'_' | b'.'))
}

impl fmt::Display for ZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ZoneName {
    type Error = ZoneError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse_any(&value)
    }
}

impl From<ZoneName> for String {
    fn from(value: ZoneName) -> Self {
        value.0.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_workload_and_plain_names() {
        for name in ["shop/frontend", "db", "kube-system/core-dns", "a.b_c/d-1"] {
            assert!(ZoneName::parse(name).is_ok(), "{name} should be valid");
        }
    }

    #[test]
    fn namespaces_are_one_segment() {
        assert_eq!(parse_namespace("kube-system"), Ok("kube-system"));
        for bad in ["", "shop/api", "Shop", "-a", "a b"] {
            let err = parse_namespace(bad).unwrap_err();
            assert!(
                err.to_string()
                    .contains("the part of a zone's name before '/'"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn rejects_bad_names_with_the_reason() {
        assert_eq!(ZoneName::parse(""), Err(ZoneError::Empty));
        for name in ["Shop/web", "a/b/c", "-a", "a-", "a b", "/a", "a/", "ü"] {
            assert!(
                matches!(ZoneName::parse(name), Err(ZoneError::Invalid { .. })),
                "{name} should be invalid"
            );
        }
        assert!(matches!(
            ZoneName::parse("host"),
            Err(ZoneError::Reserved { .. })
        ));
        assert!(matches!(
            ZoneName::parse("world"),
            Err(ZoneError::Reserved { .. })
        ));
        assert!(ZoneName::parse_any("host").is_ok());
        let long = "a".repeat(254);
        assert!(matches!(
            ZoneName::parse(&long),
            Err(ZoneError::TooLong { .. })
        ));
    }

    #[test]
    fn claims_refuse_names_under_built_in_zones() {
        for name in ["host", "world", "host/x", "world/db"] {
            assert!(
                matches!(ZoneName::parse_claim(name), Err(ZoneError::Reserved { .. })),
                "{name} must be refused"
            );
        }
        assert!(
            ZoneName::parse("host/x").is_ok(),
            "an existing name stays usable"
        );
        for name in ["hostile/x", "shop/host", "worlds", "cache"] {
            assert!(ZoneName::parse_claim(name).is_ok(), "{name} is no built-in");
        }
        let zone = ZoneName::parse("tenant-a/cache").unwrap();
        assert_eq!(zone.namespace(), Some("tenant-a"));
        assert_eq!(ZoneName::parse("cache").unwrap().namespace(), None);
    }

    #[test]
    fn workload_lowercases() {
        assert_eq!(
            ZoneName::workload("Shop", "Web").unwrap().as_str(),
            "shop/web"
        );
    }

    #[test]
    fn nearest_names_what_a_typo_meant_and_nothing_far() {
        let known: Vec<ZoneName> = ["shop/api", "shop/db", "shop/frontend", "bank/api"]
            .iter()
            .map(|z| ZoneName::parse(z).unwrap())
            .collect();
        let near = |name| nearest(name, &known).map(ZoneName::as_str);
        assert_eq!(near("shop/apii"), Some("shop/api"));
        assert_eq!(near("shop/frontned"), Some("shop/frontend"));
        assert_eq!(near("shop/bd"), Some("shop/db"));
        assert_eq!(near("bnak/api"), Some("bank/api"));
        assert_eq!(near("shop/ghost"), None, "too far from every zone");
        assert_eq!(near("zz"), None);
        assert_eq!(near("shop/api"), None, "a zone is no typo of itself");
        assert_eq!(nearest("shop/api", std::iter::empty()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
    }

    #[test]
    fn serde_validates() {
        let ok: ZoneName = serde_json::from_str("\"shop/web\"").unwrap();
        assert_eq!(ok.as_str(), "shop/web");
        assert!(serde_json::from_str::<ZoneName>("\"Bad Name\"").is_err());
    }
}
