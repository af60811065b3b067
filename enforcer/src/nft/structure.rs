//! The structure of our table (maps, base chains, their rules) and the transaction
//! that adds whatever of it the kernel lacks.
//!
//! `add table|map|chain` is idempotent in nft, but `add rule` appends a duplicate,
//! so the enforcer reads the table back and adds only the missing parts: it never
//! flushes, and a restart leaves enforcement in place. Rules are identified by their
//! comment, unique per chain.

use super::listing::TableListing;
use super::schema::{
    Batch, ChainDef, Command, CtKey, MapDef, Match, Object, Operand, RuleDef, Statement, TableRef,
};
use super::{FAMILY, TABLE, ZONE_OF_V4, ZONE_OF_V6};

/// The `filter` priority of `nft list` output.
const PRIORITY_FILTER: i32 = 0;

const ESTABLISHED_COMMENT: &str = "packets of known connections pay for no lookup";

/// The maps from endpoint address to zone id.
pub fn zone_maps() -> [MapDef; 2] {
    let map = |name, key_type, comment| MapDef {
        family: FAMILY,
        table: TABLE,
        name,
        key_type,
        map: "mark",
        comment,
    };
    [
        map(ZONE_OF_V4, "ipv4_addr", "endpoint address -> zone id"),
        map(ZONE_OF_V6, "ipv6_addr", "endpoint address -> zone id"),
    ]
}

/// The base chains, each with its rules in order.
pub fn base_chains() -> Vec<(ChainDef, Vec<RuleDef>)> {
    ["forward", "input", "output"]
        .into_iter()
        .map(|hook| {
            let chain = ChainDef {
                family: FAMILY,
                table: TABLE,
                name: hook,
                chain_type: "filter",
                hook,
                prio: PRIORITY_FILTER,
                policy: "accept",
            };
            (chain, vec![accept_established(hook)])
        })
        .collect()
}

fn accept_established(chain: &'static str) -> RuleDef {
    RuleDef {
        family: FAMILY,
        table: TABLE,
        chain,
        comment: ESTABLISHED_COMMENT,
        expr: vec![
            Statement::Match(Match {
                op: "in",
                left: Operand::Ct {
                    ct: CtKey { key: "state" },
                },
                right: Operand::Words(vec!["established", "related"]),
            }),
            Statement::Accept(()),
        ],
    }
}

/// The transaction that adds what `current` lacks (everything when the table is
/// absent). An empty batch means the structure is complete.
///
/// A missing rule is appended to its chain; while each chain holds one rule this
/// keeps the intended order.
pub fn missing_structure(current: Option<&TableListing>) -> Batch {
    let empty = TableListing::default();
    let listing = current.unwrap_or(&empty);
    let mut commands = Vec::new();
    if current.is_none() {
        commands.push(Command::Add(Object::Table(TableRef::ours())));
    }
    for map in zone_maps() {
        if !listing.maps.contains_key(map.name) {
            commands.push(Command::Add(Object::Map(map)));
        }
    }
    for (chain, rules) in base_chains() {
        let present = listing.chains.get(chain.name);
        if present.is_none() {
            commands.push(Command::Add(Object::Chain(chain)));
        }
        for rule in rules {
            if !present.is_some_and(|comments| comments.iter().any(|c| c == rule.comment)) {
                commands.push(Command::Add(Object::Rule(rule)));
            }
        }
    }
    Batch { nftables: commands }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_structure_as_nft_json() {
        insta::assert_json_snapshot!(missing_structure(None));
    }

    #[test]
    fn a_complete_table_needs_nothing() {
        let mut listing = TableListing::default();
        for map in zone_maps() {
            listing.maps.insert(map.name.to_owned(), Default::default());
        }
        for (chain, rules) in base_chains() {
            let comments = rules.iter().map(|r| r.comment.to_owned()).collect();
            listing.chains.insert(chain.name.to_owned(), comments);
        }
        assert!(missing_structure(Some(&listing)).is_empty());
    }

    #[test]
    fn only_missing_parts_are_added() {
        let mut listing = TableListing::default();
        listing
            .maps
            .insert(ZONE_OF_V4.to_owned(), Default::default());
        listing
            .chains
            .insert("forward".to_owned(), vec![ESTABLISHED_COMMENT.to_owned()]);
        listing.chains.insert("input".to_owned(), vec![]);
        let batch = missing_structure(Some(&listing));
        let json = batch.to_json();
        assert!(
            !json.contains("\"table\":{\"family\""),
            "table re-added: {json}"
        );
        assert!(!json.contains(ZONE_OF_V4), "existing map re-added: {json}");
        assert!(json.contains(ZONE_OF_V6), "missing map not added: {json}");
        let rules: Vec<_> = batch
            .nftables
            .iter()
            .filter_map(|c| match c {
                Command::Add(Object::Rule(r)) => Some(r.chain),
                _ => None,
            })
            .collect();
        assert_eq!(
            rules,
            ["input", "output"],
            "rules added to the wrong chains"
        );
        let chains = batch
            .nftables
            .iter()
            .filter(|c| matches!(c, Command::Add(Object::Chain(_))));
        assert_eq!(chains.count(), 1, "only the output chain is missing");
    }
}
