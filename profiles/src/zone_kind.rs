//! How a zone's members got it: the kind `zwctl get zones` shows next to each zone.

use std::fmt;

use crate::derive::ZoneSource;

/// How the members of a zone got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneKind {
    /// Every member got it the same way.
    Source(ZoneSource),
    /// Its members got it in different ways.
    Mixed,
    /// It keeps its data-plane id but has no members now.
    Empty,
    /// An operator-defined CIDR zone: addresses, no members.
    Cidr,
}

impl ZoneKind {
    /// Every kind: one per zone source, then mixed, empty and cidr.
    pub const ALL: [ZoneKind; 9] = [
        ZoneKind::Source(ZoneSource::ALL[0]),
        ZoneKind::Source(ZoneSource::ALL[1]),
        ZoneKind::Source(ZoneSource::ALL[2]),
        ZoneKind::Source(ZoneSource::ALL[3]),
        ZoneKind::Source(ZoneSource::ALL[4]),
        ZoneKind::Source(ZoneSource::ALL[5]),
        ZoneKind::Mixed,
        ZoneKind::Empty,
        ZoneKind::Cidr,
    ];

    /// The kind of a zone whose members got it from `sources`.
    pub fn of(mut sources: impl Iterator<Item = ZoneSource>) -> Self {
        let Some(first) = sources.next() else {
            return Self::Empty;
        };
        if sources.all(|s| s == first) {
            Self::Source(first)
        } else {
            Self::Mixed
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source(source) => source.as_str(),
            Self::Mixed => "mixed",
            Self::Empty => "empty",
            Self::Cidr => "cidr",
        }
    }
}

impl fmt::Display for ZoneKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_names_the_kind_several_make_it_mixed_none_empty() {
        use ZoneSource::{Config, Workload};
        assert_eq!(
            ZoneKind::of([Workload, Workload].into_iter()),
            ZoneKind::Source(Workload)
        );
        assert_eq!(
            ZoneKind::of([Workload, Config].into_iter()),
            ZoneKind::Mixed
        );
        assert_eq!(ZoneKind::of(std::iter::empty()), ZoneKind::Empty);
        assert_eq!(
            ZoneKind::Source(ZoneSource::CniArgs).to_string(),
            "cni-args"
        );
    }

    #[test]
    fn every_kind_has_its_own_word() {
        let words: std::collections::BTreeSet<&str> =
            ZoneKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(words.len(), ZoneKind::ALL.len(), "{words:?}");
    }
}
