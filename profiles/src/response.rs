//! Automatic response: per zone, opt-in rules that quarantine one endpoint of the zone
//! when what it does as a source is reported often enough, or to a port the zone never
//! used. They live in the zone's profile (stored, replicated, exported and imported with
//! it); the enforcer of the endpoint's node counts its reports and quarantines it.
//!
//! - `violations`: `count` reports (violations while the zone monitors, drops while it
//!   enforces) of one endpoint, reported by its zone's own rules, within
//!   `within_secs` seconds.
//! - `new_port`: one such report whose (protocol, port) no edge from the zone uses,
//!   approved or learned.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::edge::{Edge, Proto};
use crate::zone::ZoneName;

/// The most reports a `violations` rule may count (each endpoint keeps at most this
/// many timestamps).
pub const MAX_COUNT: u32 = 10_000;
/// The longest window of a `violations` rule: one day.
pub const MAX_WITHIN_SECS: u32 = 86_400;

/// "Quarantine after `count` reports within `within_secs` seconds".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViolationsRule {
    pub count: u32,
    pub within_secs: u32,
}

/// A zone's response rules; the default (no rule) does nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violations: Option<ViolationsRule>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new_port: bool,
}

/// Which rule fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    Violations,
    NewPort,
}

impl Rule {
    pub const ALL: [Rule; 2] = [Rule::Violations, Rule::NewPort];

    /// The rule's name in audit authors and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Violations => "violations",
            Self::NewPort => "new-port",
        }
    }

    /// The author of the quarantines this rule makes in `zone`:
    /// `response:shop/api:violations`.
    pub fn author(self, zone: &ZoneName) -> String {
        format!("response:{zone}:{}", self.as_str())
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("violations must be at least 1 (got {0}); clear the rule to turn it off")]
    CountZero(u64),
    #[error("violations must be at most {MAX_COUNT} (got {0})")]
    CountTooHigh(u64),
    #[error("the window must be at least 1 second (got {0}s)")]
    WithinZero(u64),
    #[error("the window must be at most {MAX_WITHIN_SECS} seconds, one day (got {0}s)")]
    WithinTooLong(u64),
}

impl ViolationsRule {
    /// A rule, validated: 1 ≤ count ≤ [`MAX_COUNT`], 1 s ≤ within ≤ [`MAX_WITHIN_SECS`].
    pub fn new(count: u64, within_secs: u64) -> Result<Self, RuleError> {
        let count = match count {
            0 => return Err(RuleError::CountZero(count)),
            n if n > u64::from(MAX_COUNT) => return Err(RuleError::CountTooHigh(n)),
            n => n as u32,
        };
        let within_secs = match within_secs {
            0 => return Err(RuleError::WithinZero(within_secs)),
            n if n > u64::from(MAX_WITHIN_SECS) => return Err(RuleError::WithinTooLong(n)),
            n => n as u32,
        };
        Ok(Self { count, within_secs })
    }
}

impl ResponseRules {
    pub fn is_empty(&self) -> bool {
        self.violations.is_none() && !self.new_port
    }

    /// Checks rules that did not come through [`ViolationsRule::new`] (the API).
    pub fn validate(&self) -> Result<(), RuleError> {
        if let Some(v) = self.violations {
            ViolationsRule::new(u64::from(v.count), u64::from(v.within_secs))?;
        }
        Ok(())
    }
}

impl fmt::Display for ResponseRules {
    /// `5 violations within 60s, new port`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(v) = self.violations {
            parts.push(format!("{} violations within {}s", v.count, v.within_secs));
        }
        if self.new_port {
            parts.push("new port".to_owned());
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Reads a window as operators type it: `90`, `90s`, `5m`, `1h`.
pub fn parse_within(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        _ => {
            return Err(format!(
                "window {text:?} is not a number of seconds with an optional unit s, m or h (e.g. 60s, 5m)"
            ));
        }
    };
    let n: u64 = digits.parse().map_err(|_| {
        format!("window {text:?} is not a number of seconds with an optional unit s, m or h (e.g. 60s, 5m)")
    })?;
    Ok(n.saturating_mul(scale))
}

/// One endpoint's recent reports, for a `violations` rule: at most `count` timestamps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    times: VecDeque<i64>,
}

impl Window {
    /// Counts a report at `now_ms`; returns how many reports fell within the rule's
    /// window when that reaches the rule's count (the rule fires), `None` otherwise.
    /// Reports older than the window are forgotten; a firing empties the window.
    pub fn record(&mut self, rule: ViolationsRule, now_ms: i64) -> Option<u32> {
        let within_ms = i64::from(rule.within_secs) * 1_000;
        while self
            .times
            .front()
            .is_some_and(|&t| now_ms.saturating_sub(t) >= within_ms)
        {
            self.times.pop_front();
        }
        self.times.push_back(now_ms);
        while self.times.len() > rule.count as usize {
            self.times.pop_front();
        }
        if self.times.len() >= rule.count as usize {
            let n = self.times.len() as u32;
            self.times.clear();
            return Some(n);
        }
        None
    }

    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }
}

/// Whether `(proto, port)` is one `zone` has used as a source: an edge from `zone`
/// among `edges` (approved or learned) with that protocol and port.
pub fn port_known<'a>(
    zone: &ZoneName,
    proto: Proto,
    port: u16,
    edges: impl IntoIterator<Item = &'a Edge>,
) -> bool {
    edges
        .into_iter()
        .any(|e| &e.src == zone && e.proto == proto && e.port == port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_validated_with_clear_errors() {
        assert_eq!(
            ViolationsRule::new(5, 60),
            Ok(ViolationsRule {
                count: 5,
                within_secs: 60
            })
        );
        assert_eq!(ViolationsRule::new(0, 60), Err(RuleError::CountZero(0)));
        assert_eq!(
            ViolationsRule::new(10_001, 60),
            Err(RuleError::CountTooHigh(10_001))
        );
        assert_eq!(ViolationsRule::new(1, 0), Err(RuleError::WithinZero(0)));
        assert_eq!(
            ViolationsRule::new(1, 86_401),
            Err(RuleError::WithinTooLong(86_401))
        );
        assert!(ViolationsRule::new(1, 86_400).is_ok());
        assert!(
            RuleError::CountZero(0)
                .to_string()
                .contains("clear the rule")
        );
        let bad = ResponseRules {
            violations: Some(ViolationsRule {
                count: 0,
                within_secs: 1,
            }),
            new_port: false,
        };
        assert_eq!(bad.validate(), Err(RuleError::CountZero(0)));
    }

    #[test]
    fn windows_parse_with_units() {
        assert_eq!(parse_within("90"), Ok(90));
        assert_eq!(parse_within("60s"), Ok(60));
        assert_eq!(parse_within("5m"), Ok(300));
        assert_eq!(parse_within("1h"), Ok(3_600));
        for bad in ["", "s", "5d", "-1", "1.5m", "m5"] {
            assert!(parse_within(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rules_print_in_words() {
        assert_eq!(ResponseRules::default().to_string(), "none");
        let both = ResponseRules {
            violations: Some(ViolationsRule {
                count: 5,
                within_secs: 60,
            }),
            new_port: true,
        };
        assert_eq!(both.to_string(), "5 violations within 60s, new port");
        assert_eq!(
            Rule::NewPort.author(&ZoneName::parse("shop/api").unwrap()),
            "response:shop/api:new-port"
        );
    }

    #[test]
    fn the_window_fires_at_the_count_within_the_window_and_starts_again() {
        let rule = ViolationsRule {
            count: 3,
            within_secs: 10,
        };
        let mut w = Window::default();
        assert_eq!(w.record(rule, 0), None);
        assert_eq!(w.record(rule, 5_000), None);
        // The first report is 10 s old: out of the window.
        assert_eq!(w.record(rule, 10_000), None);
        assert_eq!(w.len(), 2);
        assert_eq!(w.record(rule, 14_999), Some(3), "three within 10 s");
        assert!(w.is_empty(), "a firing starts the count from zero");
        assert_eq!(w.record(rule, 15_000), None);
        assert_eq!(w.record(rule, 16_000), None);
        assert_eq!(w.record(rule, 40_000), None, "both older ones forgotten");
        assert_eq!(w.len(), 1);
        let once = ViolationsRule {
            count: 1,
            within_secs: 1,
        };
        assert_eq!(Window::default().record(once, 7), Some(1));
    }

    #[test]
    fn a_window_never_holds_more_than_the_count() {
        let rule = ViolationsRule {
            count: 2,
            within_secs: 1,
        };
        let mut w = Window::default();
        for t in 0..100 {
            w.record(rule, t * 1_000);
            assert!(w.len() <= 2);
        }
    }

    #[test]
    fn a_port_is_known_from_the_zones_own_edges_only() {
        let zone = ZoneName::parse("shop/api").unwrap();
        let edges: Vec<Edge> = ["shop/api->shop/db:5432/tcp", "shop/web->shop/api:8080/tcp"]
            .iter()
            .map(|e| e.parse().unwrap())
            .collect();
        assert!(port_known(&zone, Proto::Tcp, 5432, &edges));
        assert!(!port_known(&zone, Proto::Udp, 5432, &edges), "protocol");
        assert!(
            !port_known(&zone, Proto::Tcp, 8080, &edges),
            "a port the zone serves is not one it uses"
        );
    }
}
