//! What the kernel holds in our table, read back from `nft -j list table`.
//!
//! The parser is tolerant: it reads the fields it needs and ignores the rest, so a
//! newer nft that adds fields does not break the enforcer.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::Value;

/// A map element as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedElement {
    pub zone_id: u32,
    pub comment: Option<String>,
}

/// The parts of our table the enforcer reconciles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableListing {
    /// Map name → its elements by address.
    pub maps: BTreeMap<String, BTreeMap<IpAddr, ListedElement>>,
    /// Chain name → the comments of its rules, in order.
    pub chains: BTreeMap<String, Vec<String>>,
}

impl TableListing {
    /// Parses the output of `nft -j list table inet zonewarden`.
    pub fn parse(listing: &Value) -> Result<Self, String> {
        let items = listing
            .get("nftables")
            .and_then(Value::as_array)
            .ok_or("the listing has no \"nftables\" array")?;
        let mut table = Self::default();
        for item in items {
            if let Some(map) = item.get("map") {
                let name = str_field(map, "name")?;
                table
                    .maps
                    .insert(name.to_owned(), parse_elements(name, map)?);
            } else if let Some(chain) = item.get("chain") {
                let name = str_field(chain, "name")?;
                table.chains.entry(name.to_owned()).or_default();
            } else if let Some(rule) = item.get("rule") {
                let chain = str_field(rule, "chain")?;
                let comment = rule.get("comment").and_then(Value::as_str).unwrap_or("");
                table
                    .chains
                    .entry(chain.to_owned())
                    .or_default()
                    .push(comment.to_owned());
            }
        }
        Ok(table)
    }

    /// Every element of every map, keyed by address.
    pub fn elements(&self) -> BTreeMap<IpAddr, ListedElement> {
        self.maps
            .values()
            .flat_map(|m| m.iter().map(|(a, e)| (*a, e.clone())))
            .collect()
    }
}

fn str_field<'a>(object: &'a Value, field: &str) -> Result<&'a str, String> {
    object
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("an object has no string field {field:?}: {object}"))
}

/// Elements are `[key, value]` pairs; the key is a bare address, or
/// `{"elem": {"val": address, "comment": ...}}` when it carries a comment.
fn parse_elements(map: &str, object: &Value) -> Result<BTreeMap<IpAddr, ListedElement>, String> {
    let mut elements = BTreeMap::new();
    let Some(entries) = object.get("elem").and_then(Value::as_array) else {
        return Ok(elements);
    };
    for entry in entries {
        let bad = || format!("map {map} has an element nft listed as {entry}");
        let [key, value] = entry.as_array().map(Vec::as_slice).ok_or_else(bad)? else {
            return Err(bad());
        };
        let (addr, comment) = match key.get("elem") {
            Some(annotated) => (
                annotated.get("val").and_then(Value::as_str),
                annotated
                    .get("comment")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            ),
            None => (key.as_str(), None),
        };
        let addr: IpAddr = addr.and_then(|a| a.parse().ok()).ok_or_else(bad)?;
        let zone_id = value
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(bad)?;
        elements.insert(addr, ListedElement { zone_id, comment });
    }
    Ok(elements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_nft_1_0_6_prints() {
        let listing: Value = serde_json::from_str(
            r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "inet", "name": "zonewarden", "handle": 1}},
            {"map": {"family": "inet", "name": "zone_of_v4", "table": "zonewarden",
              "type": "ipv4_addr", "handle": 1, "map": "mark",
              "elem": [[{"elem": {"val": "10.0.0.5", "comment": "shop/web"}}, 7], ["10.0.0.6", 8]]}},
            {"map": {"family": "inet", "name": "zone_of_v6", "table": "zonewarden",
              "type": "ipv6_addr", "handle": 2, "map": "mark"}},
            {"chain": {"family": "inet", "table": "zonewarden", "name": "forward", "handle": 3}},
            {"rule": {"family": "inet", "table": "zonewarden", "chain": "forward",
              "handle": 4, "comment": "known", "expr": []}}]}"#,
        )
        .unwrap();
        let table = TableListing::parse(&listing).unwrap();
        let v4 = &table.maps["zone_of_v4"];
        let addr: IpAddr = "10.0.0.5".parse().unwrap();
        assert_eq!(
            v4[&addr],
            ListedElement {
                zone_id: 7,
                comment: Some("shop/web".into())
            }
        );
        assert_eq!(v4[&"10.0.0.6".parse::<IpAddr>().unwrap()].zone_id, 8);
        assert!(table.maps["zone_of_v6"].is_empty());
        assert_eq!(table.chains["forward"], vec!["known".to_owned()]);
        assert_eq!(table.elements().len(), 2);
    }

    #[test]
    fn names_the_element_it_cannot_read() {
        let listing = serde_json::json!({"nftables": [{"map": {"name": "zone_of_v4",
            "elem": [["not-an-address", 1]]}}]});
        let err = TableListing::parse(&listing).unwrap_err();
        assert!(err.contains("not-an-address"), "{err}");
    }
}
