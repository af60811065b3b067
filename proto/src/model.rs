//! The enums of the contract and the model's types of `zonewarden-profiles`, both
//! ways. This is the one place that pairs them: the plugin sends the model's values,
//! the enforcer reads and answers with them, zwctl prints the model's words.
//!
//! Into the contract is a plain `From`. Out of it, a received `i32` becomes the model's
//! value or an [`EnumError`] that names the field: unspecified (0) and values this
//! build does not know are refused, never guessed.

use zonewarden_profiles::event::{FlowVerdict, ReportKind};
use zonewarden_profiles::{AttachMode, EdgeStatus, Mode, ZoneKind, ZoneSource};

use crate::v1;

/// Why a received enum value is no value of the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnumError {
    #[error("{field} is unspecified: set it to one of {expected}")]
    Unspecified {
        field: &'static str,
        expected: String,
    },
    #[error(
        "{field} has the unknown value {value}: expected one of {expected} \
         (plugin, enforcer and zwctl must be of the same release)"
    )]
    Unknown {
        field: &'static str,
        value: i32,
        expected: String,
    },
}

/// Decodes `raw` as `P`, then maps it; `None` from `model` is unspecified.
fn decode<P, M>(
    field: &'static str,
    raw: i32,
    expected: impl FnOnce() -> String,
    model: impl FnOnce(P) -> Option<M>,
) -> Result<M, EnumError>
where
    P: TryFrom<i32>,
{
    match P::try_from(raw) {
        Ok(value) => model(value).ok_or_else(|| EnumError::Unspecified {
            field,
            expected: expected(),
        }),
        Err(_) => Err(EnumError::Unknown {
            field,
            value: raw,
            expected: expected(),
        }),
    }
}

fn words<T: Copy>(all: &[T], word: impl Fn(T) -> &'static str) -> String {
    all.iter().map(|v| word(*v)).collect::<Vec<_>>().join(", ")
}

impl From<Mode> for v1::Mode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Learn => Self::Learn,
            Mode::Monitor => Self::Monitor,
            Mode::Enforce => Self::Enforce,
        }
    }
}

/// A received mode.
pub fn mode(field: &'static str, raw: i32) -> Result<Mode, EnumError> {
    decode(
        field,
        raw,
        || words(&Mode::ALL, Mode::as_str),
        |mode| match mode {
            v1::Mode::Unspecified => None,
            v1::Mode::Learn => Some(Mode::Learn),
            v1::Mode::Monitor => Some(Mode::Monitor),
            v1::Mode::Enforce => Some(Mode::Enforce),
        },
    )
}

impl From<AttachMode> for v1::AttachMode {
    fn from(mode: AttachMode) -> Self {
        match mode {
            AttachMode::Routed => Self::Routed,
            AttachMode::Chained => Self::Chained,
            AttachMode::Sidecar => Self::Sidecar,
        }
    }
}

/// A received attach mode.
pub fn attach_mode(field: &'static str, raw: i32) -> Result<AttachMode, EnumError> {
    decode(
        field,
        raw,
        || words(&AttachMode::ALL, AttachMode::as_str),
        |mode| match mode {
            v1::AttachMode::Unspecified => None,
            v1::AttachMode::Routed => Some(AttachMode::Routed),
            v1::AttachMode::Chained => Some(AttachMode::Chained),
            v1::AttachMode::Sidecar => Some(AttachMode::Sidecar),
        },
    )
}

impl From<ZoneSource> for v1::ZoneSource {
    fn from(source: ZoneSource) -> Self {
        match source {
            ZoneSource::Annotation => Self::Annotation,
            ZoneSource::CniArgs => Self::CniArgs,
            ZoneSource::Config => Self::Config,
            ZoneSource::Workload => Self::Workload,
            ZoneSource::Pod => Self::Pod,
            ZoneSource::Default => Self::Default,
        }
    }
}

/// A received zone source.
pub fn zone_source(field: &'static str, raw: i32) -> Result<ZoneSource, EnumError> {
    decode(
        field,
        raw,
        || words(&ZoneSource::ALL, ZoneSource::as_str),
        |source| match source {
            v1::ZoneSource::Unspecified => None,
            v1::ZoneSource::Annotation => Some(ZoneSource::Annotation),
            v1::ZoneSource::CniArgs => Some(ZoneSource::CniArgs),
            v1::ZoneSource::Config => Some(ZoneSource::Config),
            v1::ZoneSource::Workload => Some(ZoneSource::Workload),
            v1::ZoneSource::Pod => Some(ZoneSource::Pod),
            v1::ZoneSource::Default => Some(ZoneSource::Default),
        },
    )
}

impl From<ZoneKind> for v1::ZoneKind {
    fn from(kind: ZoneKind) -> Self {
        match kind {
            ZoneKind::Source(ZoneSource::Annotation) => Self::Annotation,
            ZoneKind::Source(ZoneSource::CniArgs) => Self::CniArgs,
            ZoneKind::Source(ZoneSource::Config) => Self::Config,
            ZoneKind::Source(ZoneSource::Workload) => Self::Workload,
            ZoneKind::Source(ZoneSource::Pod) => Self::Pod,
            ZoneKind::Source(ZoneSource::Default) => Self::Default,
            ZoneKind::Mixed => Self::Mixed,
            ZoneKind::Empty => Self::Empty,
            ZoneKind::Cidr => Self::Cidr,
        }
    }
}

/// A received zone kind.
pub fn zone_kind(field: &'static str, raw: i32) -> Result<ZoneKind, EnumError> {
    decode(
        field,
        raw,
        || words(&ZoneKind::ALL, ZoneKind::as_str),
        |kind| {
            Some(match kind {
                v1::ZoneKind::Unspecified => return None,
                v1::ZoneKind::Annotation => ZoneKind::Source(ZoneSource::Annotation),
                v1::ZoneKind::CniArgs => ZoneKind::Source(ZoneSource::CniArgs),
                v1::ZoneKind::Config => ZoneKind::Source(ZoneSource::Config),
                v1::ZoneKind::Workload => ZoneKind::Source(ZoneSource::Workload),
                v1::ZoneKind::Pod => ZoneKind::Source(ZoneSource::Pod),
                v1::ZoneKind::Default => ZoneKind::Source(ZoneSource::Default),
                v1::ZoneKind::Mixed => ZoneKind::Mixed,
                v1::ZoneKind::Empty => ZoneKind::Empty,
                v1::ZoneKind::Cidr => ZoneKind::Cidr,
            })
        },
    )
}

/// The word of an enum value named `name`: the name without `prefix`, lowercase, with
/// `-` for `_` (`AUDIT_ACTION_ENDPOINT_ADD` with `AUDIT_ACTION_`: `endpoint-add`). It is
/// the word of every enum of the contract (a test below holds the model to it); the
/// audit's enums, whose model lives in the enforcer alone, are printed with it.
pub fn name_word(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_lowercase()
        .replace('_', "-")
}

impl From<EdgeStatus> for v1::EdgeStatus {
    fn from(status: EdgeStatus) -> Self {
        match status {
            EdgeStatus::Approved => Self::Approved,
            EdgeStatus::Observed => Self::Observed,
            EdgeStatus::Dropped => Self::Dropped,
        }
    }
}

/// A received edge status.
pub fn edge_status(field: &'static str, raw: i32) -> Result<EdgeStatus, EnumError> {
    decode(
        field,
        raw,
        || words(&EdgeStatus::ALL, EdgeStatus::as_str),
        |status| match status {
            v1::EdgeStatus::Unspecified => None,
            v1::EdgeStatus::Approved => Some(EdgeStatus::Approved),
            v1::EdgeStatus::Observed => Some(EdgeStatus::Observed),
            v1::EdgeStatus::Dropped => Some(EdgeStatus::Dropped),
        },
    )
}

/// The verdict of a logged connection: `None` is one a learning zone let pass and
/// recorded, `Some` a report.
pub fn verdict_to_proto(report: Option<ReportKind>) -> v1::Verdict {
    match report {
        None => v1::Verdict::Learn,
        Some(ReportKind::Violation) => v1::Verdict::Violation,
        Some(ReportKind::Drop) => v1::Verdict::Drop,
        Some(ReportKind::Quarantine) => v1::Verdict::Quarantine,
        Some(ReportKind::Spoof) => v1::Verdict::Spoof,
    }
}

/// A received verdict: `None` for learn (see [`verdict_to_proto`]).
pub fn verdict(field: &'static str, raw: i32) -> Result<Option<ReportKind>, EnumError> {
    decode(
        field,
        raw,
        || format!("learn, {}", words(&ReportKind::ALL, ReportKind::as_str)),
        |verdict| match verdict {
            v1::Verdict::Unspecified | v1::Verdict::Allow => None,
            v1::Verdict::Learn => Some(None),
            v1::Verdict::Violation => Some(Some(ReportKind::Violation)),
            v1::Verdict::Drop => Some(Some(ReportKind::Drop)),
            v1::Verdict::Quarantine => Some(Some(ReportKind::Quarantine)),
            v1::Verdict::Spoof => Some(Some(ReportKind::Spoof)),
        },
    )
}

/// The verdict of a flow `WatchFlows` streams.
pub fn flow_verdict_to_proto(verdict: FlowVerdict) -> v1::Verdict {
    match verdict {
        FlowVerdict::Allow => v1::Verdict::Allow,
        FlowVerdict::Learn => v1::Verdict::Learn,
        FlowVerdict::Reported(kind) => verdict_to_proto(Some(kind)),
    }
}

/// A received flow verdict (see [`flow_verdict_to_proto`]).
pub fn flow_verdict(field: &'static str, raw: i32) -> Result<FlowVerdict, EnumError> {
    decode(
        field,
        raw,
        || words(&FlowVerdict::ALL, FlowVerdict::as_str),
        |verdict| match verdict {
            v1::Verdict::Unspecified => None,
            v1::Verdict::Allow => Some(FlowVerdict::Allow),
            v1::Verdict::Learn => Some(FlowVerdict::Learn),
            v1::Verdict::Violation => Some(FlowVerdict::Reported(ReportKind::Violation)),
            v1::Verdict::Drop => Some(FlowVerdict::Reported(ReportKind::Drop)),
            v1::Verdict::Quarantine => Some(FlowVerdict::Reported(ReportKind::Quarantine)),
            v1::Verdict::Spoof => Some(FlowVerdict::Reported(ReportKind::Spoof)),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every model value goes into the contract and comes back as itself; the
    /// contract's values are exactly the model's plus UNSPECIFIED.
    fn round_trips<M, P>(
        all: &[M],
        into: impl Fn(M) -> P,
        back: impl Fn(&'static str, i32) -> Result<M, EnumError>,
        proto_values: usize,
    ) where
        M: Copy + PartialEq + std::fmt::Debug,
        P: Into<i32> + Copy + std::fmt::Debug,
    {
        let mut seen = std::collections::BTreeSet::new();
        for &value in all {
            let raw: i32 = into(value).into();
            assert_ne!(raw, 0, "{value:?} must not map to UNSPECIFIED");
            assert!(seen.insert(raw), "{value:?} shares its value {raw}");
            assert_eq!(back("f", raw), Ok(value), "{value:?} via {raw}");
        }
        assert_eq!(
            seen.len() + 1,
            proto_values,
            "every contract value but UNSPECIFIED is a model value"
        );
    }

    fn refuses_unspecified_and_unknown(
        back: impl Fn(&'static str, i32) -> Result<(), EnumError>,
        field: &'static str,
        expected: &str,
    ) {
        let err = back(field, 0).unwrap_err();
        assert!(matches!(err, EnumError::Unspecified { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("{field} is unspecified: set it to one of {expected}")
        );
        let err = back(field, 99).unwrap_err();
        assert!(
            matches!(err, EnumError::Unknown { value: 99, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("{field} has the unknown value 99")),
            "{err}"
        );
        let err = back(field, -1).unwrap_err();
        assert!(
            matches!(err, EnumError::Unknown { value: -1, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn modes_both_ways() {
        round_trips(&Mode::ALL, v1::Mode::from, mode, 4);
        assert_eq!(v1::Mode::from(Mode::Enforce), v1::Mode::Enforce);
        refuses_unspecified_and_unknown(
            |f, raw| mode(f, raw).map(drop),
            "mode",
            "learn, monitor, enforce",
        );
    }

    #[test]
    fn attach_modes_both_ways() {
        round_trips(&AttachMode::ALL, v1::AttachMode::from, attach_mode, 4);
        assert_eq!(
            v1::AttachMode::from(AttachMode::Chained),
            v1::AttachMode::Chained
        );
        refuses_unspecified_and_unknown(
            |f, raw| attach_mode(f, raw).map(drop),
            "attach_mode",
            "routed, chained, sidecar",
        );
    }

    #[test]
    fn zone_sources_both_ways() {
        round_trips(&ZoneSource::ALL, v1::ZoneSource::from, zone_source, 7);
        assert_eq!(
            v1::ZoneSource::from(ZoneSource::CniArgs),
            v1::ZoneSource::CniArgs
        );
        refuses_unspecified_and_unknown(
            |f, raw| zone_source(f, raw).map(drop),
            "hints.explicit_source",
            "annotation, cni-args, config, workload, pod, default",
        );
    }

    #[test]
    fn zone_kinds_both_ways() {
        round_trips(&ZoneKind::ALL, v1::ZoneKind::from, zone_kind, 10);
        assert_eq!(v1::ZoneKind::from(ZoneKind::Cidr), v1::ZoneKind::Cidr);
        assert_eq!(
            v1::ZoneKind::from(ZoneKind::Source(ZoneSource::Pod)),
            v1::ZoneKind::Pod
        );
        refuses_unspecified_and_unknown(
            |f, raw| zone_kind(f, raw).map(drop),
            "kind",
            "annotation, cni-args, config, workload, pod, default, mixed, empty, cidr",
        );
    }

    #[test]
    fn edge_statuses_both_ways() {
        round_trips(&EdgeStatus::ALL, v1::EdgeStatus::from, edge_status, 4);
        refuses_unspecified_and_unknown(
            |f, raw| edge_status(f, raw).map(drop),
            "status",
            "approved, observed, dropped",
        );
        for s in EdgeStatus::ALL {
            let name = v1::EdgeStatus::from(s).as_str_name();
            assert_eq!(name_word(name, "EDGE_STATUS_"), s.as_str());
        }
    }

    #[test]
    fn verdicts_both_ways() {
        let all: Vec<Option<ReportKind>> = std::iter::once(None)
            .chain(ReportKind::ALL.map(Some))
            .collect();
        // Seven contract values: UNSPECIFIED, ALLOW (flows only) and these.
        round_trips(&all, verdict_to_proto, verdict, 6);
        assert_eq!(verdict_to_proto(None), v1::Verdict::Learn);
        assert_eq!(
            verdict_to_proto(Some(ReportKind::Spoof)),
            v1::Verdict::Spoof
        );
        refuses_unspecified_and_unknown(
            |f, raw| verdict(f, raw).map(drop),
            "verdict",
            "learn, drop, violation, quarantine, spoof",
        );
        // A report is never an approved flow.
        assert!(verdict("verdict", v1::Verdict::Allow.into()).is_err());
    }

    #[test]
    fn flow_verdicts_both_ways() {
        round_trips(&FlowVerdict::ALL, flow_verdict_to_proto, flow_verdict, 7);
        refuses_unspecified_and_unknown(
            |f, raw| flow_verdict(f, raw).map(drop),
            "verdict",
            "allow, learn, violation, drop, quarantine, spoof",
        );
        for v in FlowVerdict::ALL {
            let name = flow_verdict_to_proto(v).as_str_name();
            assert_eq!(name_word(name, "VERDICT_"), v.as_str());
        }
    }

    #[test]
    fn the_contract_names_each_value_with_the_model_word() {
        // zwctl prints the model's words; the proto's value names say the same.
        let word = name_word;
        for m in Mode::ALL {
            assert_eq!(word(v1::Mode::from(m).as_str_name(), "MODE_"), m.as_str());
        }
        for m in AttachMode::ALL {
            let name = v1::AttachMode::from(m).as_str_name();
            assert_eq!(word(name, "ATTACH_MODE_"), m.as_str());
        }
        for s in ZoneSource::ALL {
            let name = v1::ZoneSource::from(s).as_str_name();
            assert_eq!(word(name, "ZONE_SOURCE_"), s.as_str());
        }
        for k in ZoneKind::ALL {
            let name = v1::ZoneKind::from(k).as_str_name();
            assert_eq!(word(name, "ZONE_KIND_"), k.as_str());
        }
        for r in ReportKind::ALL {
            let name = verdict_to_proto(Some(r)).as_str_name();
            assert_eq!(word(name, "VERDICT_"), r.as_str());
        }
    }
}
