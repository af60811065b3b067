//! `nft -j list table` output, parsed as it streams in, without the elements of the
//! seen sets.
//!
//! The seen sets hold what the log rules already reported: up to 65,536 elements
//! each, refreshed by every new flow, never read by the enforcer. During a flood they
//! fill, and a listing holds them all (about 90 bytes of JSON each, ten times that
//! as a parsed `serde_json::Value`). Parsed from the pipe, with their `elem` arrays
//! skipped unparsed, a read costs the enforcer memory for what it reads (zones,
//! members, approved edges) only, whatever the seen sets hold.
//!
//! nft prints a set's `name` before its `elem`; were it the other way round, the
//! elements would be parsed and kept (correct, only not bounded).

use std::fmt;
use std::io::Read;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::names::SEEN_PREFIX;

/// The items of the listing's `nftables` array, seen sets without their elements.
pub fn parse_listing(reader: impl Read) -> Result<Vec<Value>, serde_json::Error> {
    let listing: Listing = serde_json::from_reader(std::io::BufReader::new(reader))?;
    Ok(listing.0)
}

/// `{"nftables": [...]}`; other top-level keys are ignored.
struct Listing(Vec<Value>);

/// A JSON value as `serde_json::Value`: an item of the array (`SET == false`; the
/// bodies of its `set` and `map` keys are read with `SET == true`), or the body of a
/// set or map, without its `elem` when it is a seen set.
struct Filtered<const SET: bool>(Value);

impl<'de> Deserialize<'de> for Listing {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ListingVisitor)
    }
}

impl<'de, const SET: bool> Deserialize<'de> for Filtered<SET> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FilteredVisitor::<SET>)
    }
}

struct ListingVisitor;

impl<'de> Visitor<'de> for ListingVisitor {
    type Value = Listing;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with an \"nftables\" array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Listing, A::Error> {
        let mut items = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "nftables" && items.is_none() {
                let list: Vec<Filtered<false>> = map.next_value()?;
                items = Some(list.into_iter().map(|item| item.0).collect());
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        items
            .map(Listing)
            .ok_or_else(|| de::Error::missing_field("nftables"))
    }
}

struct FilteredVisitor<const SET: bool>;

impl<'de, const SET: bool> Visitor<'de> for FilteredVisitor<SET> {
    type Value = Filtered<SET>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = if SET {
                let seen = out
                    .get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|name| name.starts_with(SEEN_PREFIX));
                if key == "elem" && seen {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                map.next_value::<Value>()?
            } else if key == "set" || key == "map" {
                map.next_value::<Filtered<true>>()?.0
            } else {
                map.next_value::<Value>()?
            };
            out.insert(key, value);
        }
        Ok(Filtered(Value::Object(out)))
    }

    // Anything else is kept as it is: the reader of the model says what it expects.
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let value = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Filtered(value))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Filtered(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Filtered(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Filtered(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Filtered(v.into()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Filtered(v.into()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Filtered(Value::Null))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A listing as nft prints it: `name` before `elem`.
    const LISTING: &str = r#"{"nftables": [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": "zonewarden", "handle": 1}},
        {"set": {"family": "inet", "name": "seen_learn_v4", "table": "zonewarden",
                 "type": ["ipv4_addr", "ipv4_addr", "inet_proto", "inet_service"],
                 "elem": [{"elem": {"val": {"concat": ["10.0.0.1", "10.0.0.2", 17, 53]},
                                    "timeout": 60, "expires": 59}}]}},
        {"set": {"family": "inet", "name": "host_v4", "table": "zonewarden",
                 "type": "ipv4_addr", "elem": ["10.123.255.1"]}},
        {"map": {"family": "inet", "name": "zone_of_v4", "table": "zonewarden",
                 "type": "ipv4_addr", "map": "mark", "elem": [["10.0.0.1", 3]]}},
        {"rule": {"family": "inet", "table": "zonewarden", "chain": "forward",
                  "handle": 4, "expr": [{"accept": null}]}}
    ]}"#;

    #[test]
    fn the_seen_sets_are_read_without_their_elements_and_the_rest_as_it_is() {
        let items = parse_listing(LISTING.as_bytes()).unwrap();
        let whole: Value = serde_json::from_str(LISTING).unwrap();
        let mut expected = whole["nftables"].as_array().unwrap().clone();
        expected[2]["set"]
            .as_object_mut()
            .unwrap()
            .remove("elem")
            .unwrap();
        assert_eq!(items, expected);
    }

    #[test]
    fn elements_before_the_name_are_kept() {
        let text = r#"{"nftables": [{"set": {"elem": [1], "name": "seen_drop_v6"}}]}"#;
        let items = parse_listing(text.as_bytes()).unwrap();
        assert_eq!(items[0]["set"]["elem"], json!([1]));
    }

    #[test]
    fn what_is_no_listing_is_an_error_not_a_panic() {
        for text in [
            "",
            "[]",
            "{}",
            r#"{"nftables": 3}"#,
            r#"{"nftables": [{"set": "#,
        ] {
            assert!(parse_listing(text.as_bytes()).is_err(), "{text:?}");
        }
        let odd = r#"{"nftables": [3, "x", null, [1], {"set": 4}, {"map": [true]}], "x": 1}"#;
        assert_eq!(parse_listing(odd.as_bytes()).unwrap().len(), 6);
    }
}
