//! `nft -j list table` output, parsed as it streams in: set elements as compact
//! [`Lean`] values beside the other items, without the elements of the seen sets.
//!
//! The seen sets hold what the log rules already reported: up to 65,536 elements
//! each, refreshed by every new flow, never read by the enforcer. During a flood they
//! fill, and a listing holds them all (about 90 bytes of JSON each, ten times that
//! as a parsed `serde_json::Value`). Parsed from the pipe, with their `elem` arrays
//! skipped unparsed, a read costs the enforcer memory for what it reads (zones,
//! members, approved edges) only, whatever the seen sets hold; and what it reads of
//! the other sets, one element per endpoint of the cluster and more per approved
//! edge, is kept as [`Lean`] (see there why).
//!
//! nft prints a set's `name` before its `elem`; were it the other way round, the
//! elements would be parsed and kept (correct, only not bounded).

use std::fmt;
use std::io::Read;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::lean::Lean;
use super::names::SEEN_PREFIX;

/// A listing as the enforcer keeps it: the items of its `nftables` array without
/// their `elem` arrays, and those elements by set name.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ParsedListing {
    pub items: Vec<Value>,
    pub elements: Vec<(String, Vec<Lean>)>,
}

impl ParsedListing {
    /// Another table's listing added to this one (their objects have distinct names).
    pub fn extend(&mut self, other: ParsedListing) {
        self.items.extend(other.items);
        self.elements.extend(other.elements);
    }
}

/// The listing's items and their sets' elements, seen sets without their elements.
pub fn parse_listing(reader: impl Read) -> Result<ParsedListing, serde_json::Error> {
    let listing: Listing = serde_json::from_reader(std::io::BufReader::new(reader))?;
    Ok(listing.0)
}

/// `{"nftables": [...]}`; other top-level keys are ignored.
struct Listing(ParsedListing);

/// A JSON value as `serde_json::Value`: an item of the array (`SET == false`; the
/// bodies of its `set` and `map` keys are read with `SET == true`), or the body of a
/// set or map without its `elem`, which comes apart (named by the set) unless the
/// set is a seen set.
struct Filtered<const SET: bool>(Value, Option<(String, Vec<Lean>)>);

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
                let mut parsed = ParsedListing::default();
                for Filtered(item, elements) in list {
                    parsed.items.push(item);
                    parsed.elements.extend(elements);
                }
                items = Some(parsed);
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
        // This set's own elements (SET), or those of the set this item holds.
        let mut own: Option<Vec<Lean>> = None;
        let mut inner: Option<(String, Vec<Lean>)> = None;
        while let Some(key) = map.next_key::<String>()? {
            let value = if SET && key == "elem" {
                let seen = out
                    .get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|name| name.starts_with(SEEN_PREFIX));
                if seen {
                    map.next_value::<IgnoredAny>()?;
                } else {
                    // Not an array: no elements, as the reader takes it.
                    own = Some(match map.next_value::<Lean>()? {
                        Lean::Array(elements) => elements.into_vec(),
                        _ => Vec::new(),
                    });
                }
                continue;
            } else if !SET && key == "rule" {
                map.next_value::<RuleBody>()?.0
            } else if !SET && (key == "set" || key == "map") {
                let Filtered(body, set_elements) = map.next_value::<Filtered<true>>()?;
                inner = inner.or(set_elements);
                body
            } else {
                map.next_value::<Value>()?
            };
            out.insert(key, value);
        }
        // A set's elements go with its name (nameless, it is refused as a whole later).
        let named = match own {
            Some(elements) => out
                .get("name")
                .and_then(Value::as_str)
                .map(|name| (name.to_owned(), elements)),
            None => inner,
        };
        Ok(Filtered(Value::Object(out), named))
    }

    // Anything else is kept as it is: the reader of the model says what it expects.
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let value = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Filtered(value, None))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Filtered(Value::Bool(v), None))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Filtered(v.into(), None))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Filtered(v.into(), None))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Filtered(v.into(), None))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Filtered(v.into(), None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Filtered(Value::Null, None))
    }
}

/// A rule's body with only the `log` statements of its `expr`: the reader takes a
/// rule's comment and where it logs, and a table of many zones has thousands of rules
/// whose matches, kept as `Value`s, would cost tens of megabytes for a moment. Each
/// rule is parsed whole and cut at once, so one rule is the most it holds extra.
struct RuleBody(Value);

impl<'de> Deserialize<'de> for RuleBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut body = Value::deserialize(deserializer)?;
        if let Some(statements) = body.get_mut("expr").and_then(Value::as_array_mut) {
            statements.retain(|stmt| stmt.get("log").is_some());
            statements.shrink_to_fit();
        }
        Ok(RuleBody(body))
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
    fn elements_come_apart_seen_sets_without_them_and_rules_without_matches() {
        let parsed = parse_listing(LISTING.as_bytes()).unwrap();
        let whole: Value = serde_json::from_str(LISTING).unwrap();
        let mut expected = whole["nftables"].as_array().unwrap().clone();
        for (i, kind) in [(2, "set"), (3, "set"), (4, "map")] {
            expected[i][kind]
                .as_object_mut()
                .unwrap()
                .remove("elem")
                .unwrap();
        }
        // Rules keep their log statements only.
        expected[5]["rule"]["expr"] = json!([]);
        assert_eq!(parsed.items, expected);
        let lean = |v: Value| v.as_array().unwrap().iter().map(Lean::from).collect();
        assert_eq!(
            parsed.elements,
            vec![
                ("host_v4".to_owned(), lean(json!(["10.123.255.1"]))),
                ("zone_of_v4".to_owned(), lean(json!([["10.0.0.1", 3]]))),
            ]
        );
    }

    #[test]
    fn rules_keep_their_comment_and_log_statements_only() {
        let text = r#"{"nftables": [{"rule": {"chain": "zout_3", "comment": "c",
            "expr": [{"match": {"op": "==", "left": 1, "right": 1}},
                     {"log": {"prefix": "zw E z3 v1 out", "group": 7}}, {"drop": null}]}},
            {"rule": {"chain": "x", "expr": 5}}]}"#;
        let parsed = parse_listing(text.as_bytes()).unwrap();
        assert_eq!(
            parsed.items,
            vec![
                json!({"rule": {"chain": "zout_3", "comment": "c",
                                "expr": [{"log": {"prefix": "zw E z3 v1 out", "group": 7}}]}}),
                json!({"rule": {"chain": "x", "expr": 5}}),
            ]
        );
    }

    #[test]
    fn elements_before_the_name_are_kept() {
        let text = r#"{"nftables": [{"set": {"elem": [1], "name": "seen_drop_v6"}}]}"#;
        let parsed = parse_listing(text.as_bytes()).unwrap();
        assert_eq!(parsed.items[0], json!({"set": {"name": "seen_drop_v6"}}));
        assert_eq!(
            parsed.elements,
            vec![("seen_drop_v6".to_owned(), vec![Lean::Unsigned(1)])]
        );
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
        assert_eq!(parse_listing(odd.as_bytes()).unwrap().items.len(), 6);
    }
}
