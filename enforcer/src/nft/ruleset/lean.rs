//! Set elements as the read-back keeps them: JSON in exactly sized boxes.
//!
//! A table's elements are nearly all of what a listing holds: one per endpoint of the
//! cluster in the membership maps, and more for every approved edge. As a
//! `serde_json::Value`, each object of an element (`{"elem": {"val": {"concat": ...},
//! "comment": ...}}` has three) is a B-tree node of eleven slots, about 600 bytes: an
//! enforcer reading back 50,000 remote endpoints held hundreds of megabytes for a
//! moment. [`Lean`] holds the same JSON with one allocation per object, array and
//! string, each of its exact size.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A JSON value of a set element.
#[derive(Debug, Clone, PartialEq)]
pub enum Lean {
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Str(Box<str>),
    Array(Box<[Lean]>),
    Object(Box<[(Box<str>, Lean)]>),
}

impl Lean {
    /// The field `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Lean> {
        match self {
            Lean::Object(fields) => fields.iter().find(|(k, _)| &**k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value at the end of a path of object fields.
    pub fn at(&self, path: &[&str]) -> Option<&Lean> {
        path.iter().try_fold(self, |value, key| value.get(key))
    }

    pub fn as_array(&self) -> Option<&[Lean]> {
        match self {
            Lean::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Lean::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Lean::Unsigned(n) => Some(n),
            Lean::Signed(n) => u64::try_from(n).ok(),
            _ => None,
        }
    }

    /// The same JSON as a `serde_json::Value` (for messages).
    pub fn to_value(&self) -> Value {
        match self {
            Lean::Null => Value::Null,
            Lean::Bool(b) => Value::Bool(*b),
            Lean::Unsigned(n) => (*n).into(),
            Lean::Signed(n) => (*n).into(),
            Lean::Float(f) => (*f).into(),
            Lean::Str(s) => Value::String(s.to_string()),
            Lean::Array(items) => Value::Array(items.iter().map(Lean::to_value).collect()),
            Lean::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_value()))
                    .collect(),
            ),
        }
    }
}

impl From<&Value> for Lean {
    fn from(value: &Value) -> Self {
        match value {
            Value::Null => Lean::Null,
            Value::Bool(b) => Lean::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Lean::Unsigned(u),
                (None, Some(i)) => Lean::Signed(i),
                _ => Lean::Float(n.as_f64().unwrap_or_default()),
            },
            Value::String(s) => Lean::Str(s.as_str().into()),
            Value::Array(items) => Lean::Array(items.iter().map(Lean::from).collect()),
            Value::Object(fields) => Lean::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.as_str().into(), Lean::from(v)))
                    .collect(),
            ),
        }
    }
}

impl fmt::Display for Lean {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_value().fmt(f)
    }
}

impl<'de> Deserialize<'de> for Lean {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LeanVisitor)
    }
}

struct LeanVisitor;

impl<'de> Visitor<'de> for LeanVisitor {
    type Value = Lean;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Lean, E> {
        Ok(Lean::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Lean, E> {
        Ok(Lean::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Lean, E> {
        Ok(Lean::Unsigned(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Lean, E> {
        Ok(match u64::try_from(v) {
            Ok(u) => Lean::Unsigned(u),
            Err(_) => Lean::Signed(v),
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Lean, E> {
        Ok(Lean::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Lean, E> {
        Ok(Lean::Str(v.into()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Lean, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Lean::Array(items.into_boxed_slice()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Lean, A::Error> {
        let mut fields: Vec<(Box<str>, Lean)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value()?;
            // A repeated key keeps its last value, as serde_json's own map does.
            match fields.iter_mut().find(|(k, _)| **k == *key) {
                Some(field) => field.1 = value,
                None => fields.push((key.into_boxed_str(), value)),
            }
        }
        Ok(Lean::Object(fields.into_boxed_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parsed_or_converted_it_is_the_same_json() {
        let value = json!([
            {"elem": {"val": {"concat": ["10.0.0.1", 6, 80]}, "comment": "shop/web"}},
            ["10.0.0.2", {"jump": {"target": "zout_3"}}],
            {"prefix": {"addr": "10.1.0.0", "len": 16}},
            null, true, -3, 1.5, "x"
        ]);
        let parsed: Lean = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(parsed, Lean::from(&value));
        assert_eq!(parsed.to_value(), value);
        let first = &parsed.as_array().unwrap()[0];
        assert_eq!(
            first.at(&["elem", "comment"]).and_then(Lean::as_str),
            Some("shop/web")
        );
        let parts = first
            .at(&["elem", "val", "concat"])
            .unwrap()
            .as_array()
            .unwrap();
        assert_eq!(parts[2].as_u64(), Some(80));
        assert_eq!(first.get("val"), None);
        assert_eq!(parsed.to_string(), value.to_string());
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value() {
        let lean: Lean = serde_json::from_str(r#"{"a": 1, "b": 2, "a": 3}"#).unwrap();
        assert_eq!(lean.get("a").and_then(Lean::as_u64), Some(3));
        assert_eq!(lean.to_value(), json!({"a": 3, "b": 2}));
    }
}
