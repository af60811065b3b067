//! Profiles: per zone, a mode, a quarantine flag and a versioned set of approved edges.
//! An edge is allowed when it is approved in the profile of either end: one approval
//! allows it at both ends. A profile also remembers the edges an operator rejected, so
//! that an edge seen again after its rejection is never approved by `approve --all`:
//! only naming it approves it (and lifts the rejection).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::edge::Edge;
use crate::response::ResponseRules;
use crate::zone::ZoneName;

/// What a zone does with edges that are not approved.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Allow and record every new edge.
    #[default]
    Learn,
    /// Allow, record, and report every unapproved edge as a violation.
    Monitor,
    /// Drop and report every unapproved edge.
    Enforce,
}

impl Mode {
    /// Every mode, from the most permissive to the strictest.
    pub const ALL: [Mode; 3] = [Mode::Learn, Mode::Monitor, Mode::Enforce];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Learn => "learn",
            Self::Monitor => "monitor",
            Self::Enforce => "enforce",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "learn" => Ok(Self::Learn),
            "monitor" => Ok(Self::Monitor),
            "enforce" => Ok(Self::Enforce),
            other => Err(format!(
                "mode {other:?} is not one of learn, monitor, enforce"
            )),
        }
    }
}

/// One change of a profile, kept in its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileChange {
    pub version: u64,
    pub who: String,
    pub at_unix_ms: i64,
    /// What changed, in words: "approved 3 edges", "mode learn -> enforce".
    pub what: String,
    #[serde(default)]
    pub comment: String,
}

/// The profile of one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub zone: ZoneName,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub quarantined: bool,
    /// 0 for a profile nobody has changed yet.
    #[serde(default)]
    pub version: u64,
    /// Approved edges, each touching this zone.
    #[serde(default)]
    pub approved: BTreeSet<Edge>,
    /// Edges an operator rejected, each touching this zone: never approved in bulk.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub rejected: BTreeSet<Edge>,
    /// Automatic response: when one of the zone's endpoints is quarantined by itself.
    #[serde(default, skip_serializing_if = "ResponseRules::is_empty")]
    pub response: ResponseRules,
    #[serde(default)]
    pub history: Vec<ProfileChange>,
}

/// Who changes a profile, when and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub who: String,
    pub at_unix_ms: i64,
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("edge {edge} does not touch zone {zone}: approve it in the profile of one of its ends")]
    Foreign { edge: Edge, zone: ZoneName },
    #[error(
        "edge {edge} is approved in zone {zone}'s profile: remove the approval first \
         (zwctl profile remove {zone} --edge '{edge}'), then reject it"
    )]
    Approved { edge: Edge, zone: ZoneName },
}

impl Profile {
    pub fn new(zone: ZoneName) -> Self {
        Self {
            zone,
            mode: Mode::Learn,
            quarantined: false,
            version: 0,
            approved: BTreeSet::new(),
            rejected: BTreeSet::new(),
            response: ResponseRules::default(),
            history: Vec::new(),
        }
    }

    fn foreign(&self, edges: &[Edge]) -> Result<(), ProfileError> {
        match edges.iter().find(|e| !e.touches(&self.zone)) {
            Some(edge) => Err(ProfileError::Foreign {
                edge: edge.clone(),
                zone: self.zone.clone(),
            }),
            None => Ok(()),
        }
    }

    fn record(&mut self, actor: &Actor, what: String) {
        self.version += 1;
        self.history.push(ProfileChange {
            version: self.version,
            who: actor.who.clone(),
            at_unix_ms: actor.at_unix_ms,
            what,
            comment: actor.comment.clone(),
        });
    }

    /// Approves `edges` (each must touch this zone), lifting their rejection; returns
    /// how many were new.
    pub fn approve(
        &mut self,
        edges: impl IntoIterator<Item = Edge>,
        actor: &Actor,
    ) -> Result<usize, ProfileError> {
        let edges: Vec<Edge> = edges.into_iter().collect();
        self.foreign(&edges)?;
        for edge in &edges {
            self.rejected.remove(edge);
        }
        let added = edges
            .into_iter()
            .filter(|e| self.approved.insert(e.clone()))
            .count();
        if added > 0 {
            self.record(actor, format!("approved {added} edge(s)"));
        }
        Ok(added)
    }

    /// Remembers `edges` (each must touch this zone, none approved here) as rejected;
    /// returns how many were new.
    pub fn reject(&mut self, edges: &[Edge], actor: &Actor) -> Result<usize, ProfileError> {
        self.foreign(edges)?;
        if let Some(edge) = edges.iter().find(|e| self.approved.contains(*e)) {
            return Err(ProfileError::Approved {
                edge: edge.clone(),
                zone: self.zone.clone(),
            });
        }
        let added = edges
            .iter()
            .filter(|e| self.rejected.insert((*e).clone()))
            .count();
        if added > 0 {
            self.record(actor, format!("rejected {added} edge(s)"));
        }
        Ok(added)
    }

    /// Removes approved edges and forgets rejections of `edges`; returns how many
    /// approvals and rejections were removed.
    pub fn remove(&mut self, edges: &[Edge], actor: &Actor) -> usize {
        let removed = edges.iter().filter(|e| self.approved.remove(e)).count();
        let unrejected = edges.iter().filter(|e| self.rejected.remove(e)).count();
        match (removed, unrejected) {
            (0, 0) => {}
            (n, 0) => self.record(actor, format!("removed {n} approved edge(s)")),
            (0, m) => self.record(actor, format!("forgot {m} rejected edge(s)")),
            (n, m) => self.record(
                actor,
                format!("removed {n} approved edge(s), forgot {m} rejected edge(s)"),
            ),
        }
        removed + unrejected
    }

    /// Sets the mode; returns whether it changed.
    pub fn set_mode(&mut self, mode: Mode, actor: &Actor) -> bool {
        if self.mode == mode {
            return false;
        }
        let what = format!("mode {} -> {mode}", self.mode);
        self.mode = mode;
        self.record(actor, what);
        true
    }

    /// Sets the automatic response rules (all of them at once); returns whether they
    /// changed.
    pub fn set_response(&mut self, rules: ResponseRules, actor: &Actor) -> bool {
        if self.response == rules {
            return false;
        }
        let what = format!("response {} -> {rules}", self.response);
        self.response = rules;
        self.record(actor, what);
        true
    }

    /// Quarantines or releases the zone; returns whether it changed.
    pub fn set_quarantine(&mut self, on: bool, actor: &Actor) -> bool {
        if self.quarantined == on {
            return false;
        }
        self.quarantined = on;
        self.record(
            actor,
            if on {
                "quarantined".into()
            } else {
                "quarantine lifted".into()
            },
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor() -> Actor {
        Actor {
            who: "ops".into(),
            at_unix_ms: 1,
            comment: String::new(),
        }
    }

    fn edges(texts: &[&str]) -> Vec<Edge> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn a_rejection_is_remembered_until_named_approval_or_removal() {
        let mut p = Profile::new(ZoneName::parse("shop/api").unwrap());
        let smtp = edges(&["shop/api->world:25/tcp"]);
        assert_eq!(p.reject(&smtp, &actor()), Ok(1));
        assert_eq!(p.reject(&smtp, &actor()), Ok(0), "already rejected");
        assert_eq!(p.version, 1);
        assert!(p.rejected.contains(&smtp[0]));
        assert_eq!(p.approve(smtp.clone(), &actor()), Ok(1));
        assert!(p.rejected.is_empty(), "naming an edge lifts its rejection");
        assert_eq!(
            p.reject(&smtp, &actor()),
            Err(ProfileError::Approved {
                edge: smtp[0].clone(),
                zone: p.zone.clone()
            }),
            "an approved edge is removed before it is rejected"
        );
        assert_eq!(p.remove(&smtp, &actor()), 1);
        assert_eq!(p.reject(&smtp, &actor()), Ok(1));
        assert_eq!(p.remove(&smtp, &actor()), 1, "remove forgets a rejection");
        assert!(p.rejected.is_empty() && p.approved.is_empty());
        assert_eq!(p.history.last().unwrap().what, "forgot 1 rejected edge(s)");
        let foreign = edges(&["a/b->c/d:1/tcp"]);
        assert!(matches!(
            p.reject(&foreign, &actor()),
            Err(ProfileError::Foreign { .. })
        ));
    }

    #[test]
    fn response_rules_are_versioned_and_round_trip_through_json() {
        use crate::response::ViolationsRule;
        let mut p = Profile::new(ZoneName::parse("shop/api").unwrap());
        let rules = ResponseRules {
            violations: Some(ViolationsRule::new(5, 60).unwrap()),
            new_port: true,
        };
        assert!(p.set_response(rules, &actor()));
        assert!(!p.set_response(rules, &actor()), "unchanged");
        assert_eq!(p.version, 1);
        assert_eq!(
            p.history.last().unwrap().what,
            "response none -> 5 violations within 60s, new port"
        );
        let json = serde_json::to_string(&p).unwrap();
        let back: Profile = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        assert!(p.set_response(ResponseRules::default(), &actor()));
        assert!(!serde_json::to_string(&p).unwrap().contains("\"response\""));
    }

    #[test]
    fn a_profile_without_rejections_serialises_as_before() {
        let p = Profile::new(ZoneName::parse("shop/api").unwrap());
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("rejected"), "{json}");
        let back: Profile = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }
}
