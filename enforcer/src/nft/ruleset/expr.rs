//! Builders for the nft JSON (`libnftables-json(5)`) we write: expressions,
//! statements and the commands of a transaction. Only our own table is ever named.

use serde_json::{Value, json};

use crate::nft::{FAMILY, TABLE};

/// `ip saddr`, `th dport`, ...
pub fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

/// `meta l4proto`, `meta iifname`, ...
pub fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

/// `a . b . c`
pub fn concat(items: Vec<Value>) -> Value {
    json!({"concat": items})
}

/// `@name`
pub fn set_ref(name: &str) -> Value {
    Value::String(format!("@{name}"))
}

/// An anonymous set such as `{ tcp, udp, sctp }`.
pub fn anon_set(items: &[&str]) -> Value {
    json!({"set": items})
}

/// `left == right` (or `left right` in nft's text).
pub fn eq(left: Value, right: Value) -> Value {
    matches("==", left, right)
}

/// `left != right`
pub fn ne(left: Value, right: Value) -> Value {
    matches("!=", left, right)
}

fn matches(op: &str, left: Value, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

/// `ct state established,related`
pub fn ct_state_established() -> Value {
    json!({"match": {"op": "in", "left": {"ct": {"key": "state"}},
        "right": ["established", "related"]}})
}

/// The protocols with ports, the elements of `@port_protos`.
pub const PORT_PROTOS: [&str; 3] = ["tcp", "udp", "sctp"];

/// `meta l4proto @port_protos`: a protocol with ports (one named set for the table,
/// not an anonymous set per rule, which would double the sets every nft transaction
/// reads).
pub fn l4proto_with_ports() -> Value {
    eq(
        meta("l4proto"),
        set_ref(crate::nft::ruleset::names::PORT_PROTOS),
    )
}

/// `ip <field> vmap @map`
pub fn vmap(key: Value, map: &str) -> Value {
    json!({"vmap": {"key": key, "data": set_ref(map)}})
}

/// `add @set { elem }` from the packet path.
pub fn set_add(set: &str, elem: Value) -> Value {
    json!({"set": {"op": "add", "elem": elem, "set": set_ref(set)}})
}

/// `limit rate <rate>/second`
pub fn limit_per_second(rate: u32) -> Value {
    json!({"limit": {"rate": rate, "per": "second"}})
}

/// `log group <group> prefix "<prefix>"`
pub fn log(prefix: &str, group: u16) -> Value {
    json!({"log": {"prefix": prefix, "group": group}})
}

pub fn accept() -> Value {
    json!({"accept": null})
}

pub fn drop() -> Value {
    json!({"drop": null})
}

pub fn verdict_return() -> Value {
    json!({"return": null})
}

/// `jump <chain>`, as a statement or as a verdict-map value.
pub fn jump(chain: &str) -> Value {
    json!({"jump": {"target": chain}})
}

/// A rule of one of our chains: its comment (its identity) and its statements.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub comment: String,
    pub expr: Vec<Value>,
}

impl Rule {
    pub fn new(comment: &str, expr: Vec<Value>) -> Self {
        Self {
            comment: super::cut_comment(comment),
            expr,
        }
    }
}

/// The fields naming an object of our tables (the family follows from its name).
fn object(name: &str) -> serde_json::Map<String, Value> {
    let mut map = serde_json::Map::new();
    map.insert("family".into(), super::names::family_of(name).into());
    map.insert("table".into(), TABLE.into());
    map.insert("name".into(), name.into());
    map
}

/// `add table inet zonewarden`
pub fn add_table() -> Value {
    json!({"add": {"table": {"family": FAMILY, "name": TABLE}}})
}

/// `add table bridge zonewarden`
pub fn add_bridge_table() -> Value {
    json!({"add": {"table": {"family": super::BRIDGE_FAMILY, "name": TABLE}}})
}

/// `add set` (or `add map` when `value_type` is given); `key_type` is one type name
/// or several for a concatenation.
pub fn add_set(name: &str, key_type: &[&str], value_type: Option<&str>) -> Value {
    let mut def = object(name);
    let key: Value = match key_type {
        [one] => (*one).into(),
        many => many.to_vec().into(),
    };
    def.insert("type".into(), key);
    match value_type {
        Some(value) => {
            def.insert("map".into(), value.into());
            json!({"add": {"map": def}})
        }
        None => json!({"add": {"set": def}}),
    }
}

/// `add set` of prefixes (`flags interval`): CIDR zones.
pub fn add_interval_set(name: &str, key_type: &[&str]) -> Value {
    let mut cmd = add_set(name, key_type, None);
    cmd["add"]["set"]["flags"] = json!(["interval"]);
    cmd
}

/// A prefix as the right side of a match: `ip6 saddr fe80::/10`.
pub fn prefix_value(addr: &str, len: u8) -> Value {
    json!({"prefix": {"addr": addr, "len": len}})
}

/// A prefix as an element key: `{"prefix": {"addr": .., "len": ..}}`.
pub fn prefix(net: &ipnet::IpNet) -> Value {
    json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}})
}

/// A "seen" set: elements added from the packet path, expiring after `timeout`.
pub fn add_seen_set(name: &str, key_type: &[&str], timeout_secs: u32) -> Value {
    let mut def = object(name);
    def.insert("type".into(), key_type.to_vec().into());
    def.insert("size".into(), 65536.into());
    def.insert("flags".into(), json!(["timeout"]));
    def.insert("timeout".into(), timeout_secs.into());
    json!({"add": {"set": def}})
}

/// `delete set` (also for maps: nft accepts either).
pub fn delete_set(name: &str) -> Value {
    json!({"delete": {"set": object(name)}})
}

/// `add chain` of a base chain: `type filter hook <hook> priority filter; policy accept`
/// (priority 0 in the inet family, -200 in the bridge family).
pub fn add_base_chain(hook: &str) -> Value {
    let mut def = object(hook);
    let prio = if def["family"] == super::BRIDGE_FAMILY {
        -200
    } else {
        0
    };
    def.insert("type".into(), "filter".into());
    def.insert("hook".into(), hook.into());
    def.insert("prio".into(), prio.into());
    def.insert("policy".into(), "accept".into());
    json!({"add": {"chain": def}})
}

/// `add chain` of a regular chain (the target of jumps).
pub fn add_chain(name: &str) -> Value {
    json!({"add": {"chain": object(name)}})
}

pub fn flush_chain(name: &str) -> Value {
    json!({"flush": {"chain": object(name)}})
}

pub fn delete_chain(name: &str) -> Value {
    json!({"delete": {"chain": object(name)}})
}

/// `add rule` at the end of `chain`.
pub fn add_rule(chain: &str, rule: &Rule) -> Value {
    json!({"add": {"rule": {"family": super::names::family_of(chain), "table": TABLE,
        "chain": chain, "comment": rule.comment, "expr": rule.expr}}})
}

/// `add element` (`add`) or `delete element` (`delete`) in one set or map.
pub fn elements(verb: &str, set: &str, elem: Vec<Value>) -> Value {
    let mut def = object(set);
    def.insert("elem".into(), elem.into());
    json!({ verb: {"element": def} })
}

/// A key with a comment, as an element of a set or the key of a map element.
pub fn commented(key: Value, comment: &str) -> Value {
    if comment.is_empty() {
        return key;
    }
    json!({"elem": {"val": key, "comment": super::cut_comment(comment)}})
}

/// A transaction: `{"nftables": [...]}`. The commands move in: `json!` would copy
/// them, and the read-back of a large table is hundreds of megabytes of them.
pub fn transaction(commands: Vec<Value>) -> Value {
    let mut body = serde_json::Map::new();
    body.insert("nftables".into(), Value::Array(commands));
    Value::Object(body)
}
