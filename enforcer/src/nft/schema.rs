//! Serde types for the subset of the nftables JSON schema (`libnftables-json(5)`)
//! that the enforcer writes. Only our own table is ever named.

use serde::Serialize;

use super::{FAMILY, TABLE};

/// One `nft -j -f -` transaction: applied atomically or not at all.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Batch {
    pub nftables: Vec<Command>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.nftables.is_empty()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("nft batch types always serialize")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    Add(Object),
    Delete(Object),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Object {
    Table(TableRef),
    Map(MapDef),
    Chain(ChainDef),
    Rule(RuleDef),
    Element(ElementsDef),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableRef {
    pub family: &'static str,
    pub name: &'static str,
}

impl TableRef {
    pub fn ours() -> Self {
        Self {
            family: FAMILY,
            name: TABLE,
        }
    }
}

/// A map `name { type <key_type> : <value_type>; comment ... }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapDef {
    pub family: &'static str,
    pub table: &'static str,
    pub name: &'static str,
    #[serde(rename = "type")]
    pub key_type: &'static str,
    pub map: &'static str,
    pub comment: &'static str,
}

/// A base chain with a hook, priority and policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainDef {
    pub family: &'static str,
    pub table: &'static str,
    pub name: &'static str,
    #[serde(rename = "type")]
    pub chain_type: &'static str,
    pub hook: &'static str,
    pub prio: i32,
    pub policy: &'static str,
}

/// A rule; rules are identified by their comment, which is unique per chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleDef {
    pub family: &'static str,
    pub table: &'static str,
    pub chain: &'static str,
    pub comment: &'static str,
    pub expr: Vec<Statement>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Statement {
    Match(Match),
    /// Serializes as `{"accept": null}`.
    Accept(()),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    pub op: &'static str,
    pub left: Operand,
    pub right: Operand,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Operand {
    /// `{"ct": {"key": "state"}}`
    Ct { ct: CtKey },
    /// A set of flag words such as `["established", "related"]`.
    Words(Vec<&'static str>),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CtKey {
    pub key: &'static str,
}

/// Elements of one map. `elem` holds `[{"elem": {"val", "comment"}}, value]` pairs to
/// add, or bare keys to delete.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ElementsDef {
    pub family: &'static str,
    pub table: &'static str,
    pub name: &'static str,
    pub elem: Vec<ElementEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ElementEntry {
    Mapping(AnnotatedKey, u32),
    Key(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnnotatedKey {
    pub elem: KeyWithComment,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyWithComment {
    pub val: String,
    pub comment: String,
}
