//! Numeric zone ids: the value of every element in the zone maps.
//!
//! Ids are allocated from 1 upward and never reused: a zone keeps its id while it
//! has members, and an id released with a zone's last member is not handed out
//! again, so a stale element or log line can never name the wrong zone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zonewarden_profiles::ZoneName;

/// The zone-id table, persisted as `zones.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneIds {
    /// The id the next new zone gets.
    next_id: u32,
    zones: BTreeMap<ZoneName, u32>,
}

impl Default for ZoneIds {
    fn default() -> Self {
        Self {
            next_id: 1,
            zones: BTreeMap::new(),
        }
    }
}

impl ZoneIds {
    pub fn get(&self, zone: &ZoneName) -> Option<u32> {
        self.zones.get(zone).copied()
    }

    /// Gives `zone` the text of the name this table holds, if it holds the zone (a
    /// clone shares its text; endpoints decoded from the cluster store each bring a
    /// copy of their zone's name).
    pub fn share_name(&self, zone: &mut ZoneName) {
        if let Some((name, _)) = self.zones.get_key_value(zone) {
            *zone = name.clone();
        }
    }

    /// The zone's id, allocating a new one when the zone has none. The caller
    /// persists the table before the id is used.
    pub fn allocate(&mut self, zone: &ZoneName) -> u32 {
        if let Some(id) = self.get(zone) {
            return id;
        }
        let id = self.next_id;
        self.next_id = id
            .checked_add(1)
            .expect("more than 4 billion zones were allocated on this node");
        self.zones.insert(zone.clone(), id);
        id
    }

    /// The table of ids another node (or the cluster store) assigned: the next id is
    /// past the highest one.
    pub fn from_assigned(zones: BTreeMap<ZoneName, u32>) -> Result<Self, String> {
        let highest = zones.values().copied().max().unwrap_or(0);
        let next_id = highest
            .checked_add(1)
            .ok_or_else(|| format!("zone id {highest} leaves no id for the next zone"))?;
        let ids = Self { next_id, zones };
        ids.validate()?;
        Ok(ids)
    }

    /// Takes an id assigned elsewhere (by another node, through the cluster store);
    /// returns whether the table changed. An id this table gives another zone, or a
    /// zone this table knows under another id, is refused: ids are unique cluster-wide.
    pub fn adopt(&mut self, zone: &ZoneName, id: u32) -> Result<bool, String> {
        match self.get(zone) {
            Some(known) if known == id => return Ok(false),
            Some(known) => {
                return Err(format!(
                    "zone {zone} has id {known} here and {id} in the cluster store"
                ));
            }
            None => {}
        }
        if id == 0 {
            return Err(format!("zone {zone} has id 0, which is never assigned"));
        }
        if let Some((other, _)) = self.iter().find(|(_, known)| *known == id) {
            return Err(format!("zones {other} and {zone} would share id {id}"));
        }
        self.zones.insert(zone.clone(), id);
        self.next_id = self.next_id.max(id.saturating_add(1));
        Ok(true)
    }

    /// Forgets a zone that has no members left; returns whether it was known.
    pub fn release(&mut self, zone: &ZoneName) -> bool {
        self.zones.remove(zone).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ZoneName, u32)> {
        self.zones.iter().map(|(zone, id)| (zone, *id))
    }

    /// Checks the invariants a hand-edited or damaged file could break.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = BTreeMap::new();
        for (zone, id) in self.iter() {
            if id == 0 || id >= self.next_id {
                return Err(format!(
                    "zone {zone} has id {id}, outside 1..{}",
                    self.next_id
                ));
            }
            if let Some(other) = seen.insert(id, zone) {
                return Err(format!("zones {other} and {zone} share id {id}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str) -> ZoneName {
        ZoneName::parse(name).unwrap()
    }

    #[test]
    fn ids_start_at_one_and_are_stable() {
        let mut ids = ZoneIds::default();
        assert_eq!(ids.allocate(&zone("shop/web")), 1);
        assert_eq!(ids.allocate(&zone("shop/db")), 2);
        assert_eq!(ids.allocate(&zone("shop/web")), 1);
        assert_eq!(ids.get(&zone("shop/db")), Some(2));
        assert!(ids.validate().is_ok());
    }

    #[test]
    fn a_known_zone_name_takes_the_tables_text() {
        let mut ids = ZoneIds::default();
        let held = zone("shop/web");
        ids.allocate(&held);
        let mut decoded = zone("shop/web");
        ids.share_name(&mut decoded);
        assert_eq!(decoded.as_str().as_ptr(), held.as_str().as_ptr());
        let mut unknown = zone("shop/db");
        ids.share_name(&mut unknown);
        assert_eq!(unknown, zone("shop/db"), "an unknown zone keeps its name");
    }

    #[test]
    fn released_ids_are_never_reused() {
        let mut ids = ZoneIds::default();
        ids.allocate(&zone("a"));
        assert!(ids.release(&zone("a")));
        assert!(!ids.release(&zone("a")));
        assert_eq!(ids.allocate(&zone("b")), 2);
        assert_eq!(ids.allocate(&zone("a")), 3);
    }

    #[test]
    fn ids_assigned_elsewhere_are_adopted_never_shared() {
        let mut ids = ZoneIds::from_assigned(BTreeMap::from([(zone("a"), 4)])).unwrap();
        assert_eq!(ids.allocate(&zone("b")), 5);
        assert_eq!(ids.adopt(&zone("c"), 9), Ok(true));
        assert_eq!(ids.adopt(&zone("c"), 9), Ok(false));
        assert_eq!(ids.allocate(&zone("d")), 10, "past every adopted id");
        assert!(ids.adopt(&zone("e"), 4).unwrap_err().contains("share id 4"));
        assert!(
            ids.adopt(&zone("a"), 7)
                .unwrap_err()
                .contains("has id 4 here")
        );
        assert!(ZoneIds::from_assigned(BTreeMap::from([(zone("x"), 1), (zone("y"), 1)])).is_err());
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let mut ids = ZoneIds::default();
        ids.allocate(&zone("shop/web"));
        let json = serde_json::to_string(&ids).unwrap();
        assert_eq!(json, r#"{"next_id":2,"zones":{"shop/web":1}}"#);
        assert_eq!(serde_json::from_str::<ZoneIds>(&json).unwrap(), ids);
        let shared: ZoneIds =
            serde_json::from_str(r#"{"next_id":3,"zones":{"a":1,"b":1}}"#).unwrap();
        assert!(shared.validate().unwrap_err().contains("share id 1"));
        let ahead: ZoneIds = serde_json::from_str(r#"{"next_id":2,"zones":{"a":5}}"#).unwrap();
        assert!(ahead.validate().unwrap_err().contains("outside"));
    }
}
