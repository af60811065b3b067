//! The tables `inet zonewarden` and `bridge zonewarden` read through netlink: their
//! sets, chains and rules (`NFT_MSG_GETSET`, `_GETCHAIN`, `_GETRULE` dumps) and the
//! elements of every set but the seen sets (`NFT_MSG_GETSETELEM`), as the same
//! [`ParsedListing`] that `nft -j -p list table` gives, so one reader reads both.
//!
//! Why: `nft list table` fetches and prints every element of the table, and the
//! enforcer then parses that JSON. On a node that knows 100,000 endpoints of a
//! cluster this took seconds and hundreds of megabytes at every start whose table
//! was not sealed (nearly every start of a busy node). A dump is the kernel's own
//! encoding, decoded as it arrives; the seen sets, which the reader never reads, are
//! not even asked for.
//!
//! Only what the reader takes is kept: a set's name, a chain's name, a rule's chain,
//! comment and `log` statements (prefix and group), and elements of the key and data
//! types our sets have. A set of another type, an element that does not decode, or a
//! table that changed while it was read is an error, and the caller reads the table
//! through `nft` instead: nothing is ever read approximately.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{Value, json};

use super::netlink::{ElementSocket, attribute, attributes, nul_terminated, push_attr};
use super::objects::NFPROTO_INET;
use super::ruleset::lean::Lean;
use super::ruleset::listing::ParsedListing;
use super::ruleset::names::SEEN_PREFIX;
use super::{NftError, TABLE};

const NFPROTO_BRIDGE: u8 = 7;
/// Requests (`enum nf_tables_msg_types`); each is answered with the type before it.
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_GETSET: u16 = 10;
const NFT_MSG_GETSETELEM: u16 = 13;
/// Attributes (linux/netfilter/nf_tables.h).
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_LOG_GROUP: u16 = 1;
const NFTA_LOG_PREFIX: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_DATA_TYPE: u16 = 6;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFT_SET_ANONYMOUS: u32 = 0x1;
const NFT_SET_INTERVAL: u32 = 0x4;
const NFT_SET_MAP: u32 = 0x8;
const NFT_SET_ELEM_INTERVAL_END: u32 = 0x1;
/// `NFT_DATA_VERDICT`: the data type of a verdict map.
const DATA_VERDICT: u32 = 0xffff_ff00;
/// libnftnl's user data: a rule's comment, an element's comment (type, length, text
/// with its NUL).
const UDATA_COMMENT: u8 = 0;
/// nft packs a concatenation's types into one number, six bits per type.
const TYPE_BITS: u32 = 6;
/// How often a read is repeated when the table changed while it was read.
const ATTEMPTS: usize = 3;

/// nft's datatypes that our sets use (nft's `enum datatypes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Ipv4,
    Ipv6,
    Ether,
    Proto,
    Service,
    Mark,
    Ifname,
}

impl Type {
    fn of(id: u32) -> Option<Self> {
        Some(match id {
            7 => Self::Ipv4,
            8 => Self::Ipv6,
            9 => Self::Ether,
            12 => Self::Proto,
            13 => Self::Service,
            // `mark` and `devgroup` (an interface group): both a u32 in host order.
            19 | 35 => Self::Mark,
            41 => Self::Ifname,
            _ => return None,
        })
    }

    /// Bytes of a value (before a concatenation's padding).
    fn len(self) -> usize {
        match self {
            Self::Ipv4 | Self::Mark => 4,
            Self::Ipv6 | Self::Ifname => 16,
            Self::Ether => 6,
            Self::Proto => 1,
            Self::Service => 2,
        }
    }

    fn is_addr(self) -> bool {
        matches!(self, Self::Ipv4 | Self::Ipv6)
    }

    /// A value as nft prints it with `-j -p` (protocols and ports as numbers).
    fn print(self, bytes: &[u8]) -> Option<Lean> {
        Some(match self {
            Self::Ipv4 | Self::Ipv6 => Lean::Str(addr(bytes)?.to_string().into()),
            Self::Proto => Lean::Unsigned(u64::from(*bytes.first()?)),
            Self::Service => Lean::Unsigned(u64::from(u16::from_be_bytes(
                bytes.get(..2)?.try_into().ok()?,
            ))),
            Self::Mark => Lean::Unsigned(u64::from(u32::from_ne_bytes(
                bytes.get(..4)?.try_into().ok()?,
            ))),
            Self::Ifname => {
                let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
                Lean::Str(std::str::from_utf8(&bytes[..end]).ok()?.into())
            }
            Self::Ether => {
                let octets = bytes.get(..6)?;
                let text: Vec<String> = octets.iter().map(|b| format!("{b:02x}")).collect();
                Lean::Str(text.join(":").into())
            }
        })
    }
}

fn addr(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).ok()?,
        ))),
        _ => None,
    }
}

/// A set of the table as its dump describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SetDef {
    name: String,
    key: Vec<Type>,
    interval: bool,
    /// The data type of a map: `None` for a set, `Some(None)` for a verdict map.
    data: Option<Option<Type>>,
}

/// Reads both tables; `Ok(None)` when neither exists. An error means the tables
/// hold something this reader does not decode, or kept changing while read: read
/// them through `nft`.
pub fn read_tables(socket: &ElementSocket) -> Result<Option<ParsedListing>, NftError> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let before = socket.generation()?;
        let mut listing = ParsedListing::default();
        let mut found = false;
        for family in [NFPROTO_INET, NFPROTO_BRIDGE] {
            found |= read_table(socket, family, &mut listing)?;
        }
        if socket.generation()? == before {
            return Ok(found.then_some(listing));
        }
        last = Some(before);
    }
    Err(NftError::Parse {
        action: format!("read the tables {TABLE} through netlink"),
        detail: format!(
            "the tables changed while they were read, {ATTEMPTS} times (generation {last:?})"
        ),
    })
}

/// Reads one family's table into `listing`; `false` when it does not exist.
fn read_table(
    socket: &ElementSocket,
    family: u8,
    listing: &mut ParsedListing,
) -> Result<bool, NftError> {
    let family_name = if family == NFPROTO_BRIDGE {
        "bridge"
    } else {
        "inet"
    };
    let table_attr = |kind: u16| {
        let mut attrs = Vec::new();
        push_attr(&mut attrs, kind, &nul_terminated(TABLE));
        attrs
    };
    let ours = |attrs: &[u8], kind: u16| attribute(attrs, kind).and_then(text) == Some(TABLE);

    let mut sets = Vec::new();
    let action = format!("list the sets of table {family_name} {TABLE}");
    let exists = socket.dump(
        NFT_MSG_GETSET,
        family,
        &table_attr(NFTA_SET_TABLE),
        &action,
        |attrs| {
            if ours(attrs, NFTA_SET_TABLE) {
                sets.extend(set_def(attrs)?);
            }
            Ok(())
        },
    )?;
    if !exists {
        return Ok(false);
    }
    let action = format!("list the chains of table {family_name} {TABLE}");
    let mut chains = Vec::new();
    let exists = socket.dump(
        NFT_MSG_GETCHAIN,
        family,
        &table_attr(NFTA_CHAIN_TABLE),
        &action,
        |attrs| {
            if ours(attrs, NFTA_CHAIN_TABLE) {
                let name = attribute(attrs, NFTA_CHAIN_NAME).and_then(text);
                chains.push(name.ok_or("a chain without a name")?.to_owned());
            }
            Ok(())
        },
    )?;
    if !exists {
        return Ok(false);
    }
    let action = format!("list the rules of table {family_name} {TABLE}");
    let mut rules = Vec::new();
    socket.dump(
        NFT_MSG_GETRULE,
        family,
        &table_attr(NFTA_RULE_TABLE),
        &action,
        |attrs| {
            if ours(attrs, NFTA_RULE_TABLE) {
                rules.push(rule(attrs, family_name)?);
            }
            Ok(())
        },
    )?;

    listing
        .items
        .push(json!({"table": {"family": family_name, "name": TABLE}}));
    for set in &sets {
        let kind = if set.data.is_some() { "map" } else { "set" };
        listing.items.push(json!({kind: {
            "family": family_name, "name": set.name, "table": TABLE,
        }}));
        if set.name.starts_with(SEEN_PREFIX) {
            continue;
        }
        let elements = read_elements(socket, family, set)?;
        listing.elements.push((set.name.clone(), elements));
    }
    for chain in chains {
        listing.items.push(json!({"chain": {
            "family": family_name, "table": TABLE, "name": chain,
        }}));
    }
    listing.items.extend(rules);
    Ok(true)
}

/// A set's definition; `None` for an anonymous set (nft does not list those).
fn set_def(attrs: &[u8]) -> Result<Option<SetDef>, String> {
    let name = attribute(attrs, NFTA_SET_NAME)
        .and_then(text)
        .ok_or("a set without a name")?;
    let flags = attribute(attrs, NFTA_SET_FLAGS).map_or(Some(0), be_u32);
    let flags = flags.ok_or_else(|| format!("set {name}: flags that do not decode"))?;
    if flags & NFT_SET_ANONYMOUS != 0 {
        return Ok(None);
    }
    let unknown =
        |what: &str, id| format!("set {name}: a {what} type ({id:#x}) this reader does not know");
    let key_id = attribute(attrs, NFTA_SET_KEY_TYPE)
        .and_then(be_u32)
        .ok_or_else(|| format!("set {name}: no key type"))?;
    let key = key_types(key_id).ok_or_else(|| unknown("key", key_id))?;
    let data = if flags & NFT_SET_MAP != 0 {
        let id = attribute(attrs, NFTA_SET_DATA_TYPE)
            .and_then(be_u32)
            .ok_or_else(|| format!("map {name}: no data type"))?;
        Some(if id == DATA_VERDICT {
            None
        } else {
            Some(Type::of(id).ok_or_else(|| unknown("data", id))?)
        })
    } else {
        None
    };
    Ok(Some(SetDef {
        name: name.to_owned(),
        key,
        interval: flags & NFT_SET_INTERVAL != 0,
        data,
    }))
}

/// The types of a key: one, or a concatenation packed six bits per type, first
/// type in the highest bits.
fn key_types(mut id: u32) -> Option<Vec<Type>> {
    let mut types = Vec::new();
    while id != 0 {
        types.push(Type::of(id & ((1 << TYPE_BITS) - 1))?);
        id >>= TYPE_BITS;
    }
    types.reverse();
    (!types.is_empty()).then_some(types)
}

/// A rule as the listing parser keeps it: its chain, comment and `log` statements.
fn rule(attrs: &[u8], family: &str) -> Result<Value, String> {
    let chain = attribute(attrs, NFTA_RULE_CHAIN)
        .and_then(text)
        .ok_or("a rule without a chain")?;
    let mut logs = Vec::new();
    for (_, expr) in attribute(attrs, NFTA_RULE_EXPRESSIONS)
        .map(attributes)
        .into_iter()
        .flatten()
    {
        if attribute(expr, NFTA_EXPR_NAME).and_then(text) != Some("log") {
            continue;
        }
        let data = attribute(expr, NFTA_EXPR_DATA).unwrap_or_default();
        let mut log = serde_json::Map::new();
        if let Some(prefix) = attribute(data, NFTA_LOG_PREFIX) {
            let prefix = text(prefix)
                .ok_or_else(|| format!("chain {chain}: a log prefix that is no text"))?;
            log.insert("prefix".into(), prefix.into());
        }
        if let Some(group) = attribute(data, NFTA_LOG_GROUP) {
            let group: [u8; 2] = group
                .try_into()
                .map_err(|_| format!("chain {chain}: a log group that does not decode"))?;
            log.insert("group".into(), u16::from_be_bytes(group).into());
        }
        logs.push(json!({"log": log}));
    }
    let mut body = json!({"family": family, "table": TABLE, "chain": chain, "expr": logs});
    let comment = attribute(attrs, NFTA_RULE_USERDATA).and_then(comment_of);
    if let Some(comment) = comment {
        body["comment"] = comment.into();
    }
    Ok(json!({ "rule": body }))
}

/// The comment in libnftnl user data (type-length-value records).
fn comment_of(mut udata: &[u8]) -> Option<&str> {
    while let [kind, len, rest @ ..] = udata {
        let value = rest.get(..usize::from(*len))?;
        if *kind == UDATA_COMMENT {
            return text(value);
        }
        udata = &rest[usize::from(*len)..];
    }
    None
}

/// A NUL-terminated (or plain) UTF-8 attribute.
fn text(bytes: &[u8]) -> Option<&str> {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    std::str::from_utf8(&bytes[..end]).ok()
}

fn be_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// One element of a dump, undecoded.
#[derive(Debug, Default, Clone, PartialEq)]
struct RawElem {
    key: Vec<u8>,
    key_end: Option<Vec<u8>>,
    interval_end: bool,
    data: Option<RawData>,
    comment: Option<String>,
}

/// An element's data: bytes, printed once the map's data type is known, or a verdict.
#[derive(Debug, Clone, PartialEq)]
enum RawData {
    Value(Vec<u8>),
    Verdict(Lean),
}

fn read_elements(socket: &ElementSocket, family: u8, set: &SetDef) -> Result<Vec<Lean>, NftError> {
    let action = format!("list the elements of set {}", set.name);
    let mut attrs = Vec::new();
    push_attr(&mut attrs, NFTA_SET_ELEM_LIST_TABLE, &nul_terminated(TABLE));
    push_attr(
        &mut attrs,
        NFTA_SET_ELEM_LIST_SET,
        &nul_terminated(&set.name),
    );
    let mut raw = Vec::new();
    socket.dump(NFT_MSG_GETSETELEM, family, &attrs, &action, |answer| {
        let list = attribute(answer, NFTA_SET_ELEM_LIST_ELEMENTS).unwrap_or_default();
        for (_, element) in attributes(list) {
            raw.push(raw_elem(element).map_err(|e| format!("set {}: {e}", set.name))?);
        }
        Ok(())
    })?;
    let bad = |detail: String| NftError::Parse {
        action: action.clone(),
        detail,
    };
    if set.interval && set.key.len() == 1 {
        return ranges(set.key[0], raw).map_err(bad);
    }
    raw.into_iter()
        .map(|elem| {
            element(set, elem)
                .ok_or_else(|| bad(format!("set {}: an element that does not decode", set.name)))
        })
        .collect()
}

fn raw_elem(element: &[u8]) -> Result<RawElem, String> {
    let value = |kind| attribute(element, kind).and_then(|v| attribute(v, NFTA_DATA_VALUE));
    let key = value(NFTA_SET_ELEM_KEY).ok_or("an element without a key")?;
    let flags = attribute(element, NFTA_SET_ELEM_FLAGS).map_or(Some(0), be_u32);
    let data = match attribute(element, NFTA_SET_ELEM_DATA) {
        None => None,
        Some(data) => Some(match attribute(data, NFTA_DATA_VERDICT) {
            Some(verdict) => {
                RawData::Verdict(verdict_of(verdict).ok_or("a verdict that does not decode")?)
            }
            None => RawData::Value(
                attribute(data, NFTA_DATA_VALUE)
                    .unwrap_or_default()
                    .to_vec(),
            ),
        }),
    };
    Ok(RawElem {
        key: key.to_vec(),
        key_end: value(NFTA_SET_ELEM_KEY_END).map(<[u8]>::to_vec),
        interval_end: flags.ok_or("element flags that do not decode")? & NFT_SET_ELEM_INTERVAL_END
            != 0,
        data,
        comment: attribute(element, NFTA_SET_ELEM_USERDATA)
            .and_then(comment_of)
            .map(str::to_owned),
    })
}

/// A verdict as nft prints it: `{"jump": {"target": chain}}`, `{"accept": null}`.
fn verdict_of(verdict: &[u8]) -> Option<Lean> {
    let code = i32::from_be_bytes(attribute(verdict, NFTA_VERDICT_CODE)?.try_into().ok()?);
    let object = |key: &str, value: Lean| Lean::Object(Box::new([(key.into(), value)]));
    let target = || -> Option<Lean> {
        let chain = text(attribute(verdict, NFTA_VERDICT_CHAIN)?)?;
        Some(object("target", Lean::Str(chain.into())))
    };
    Some(match code {
        0 => object("drop", Lean::Null),
        1 => object("accept", Lean::Null),
        -1 => object("continue", Lean::Null),
        -3 => object("jump", target()?),
        -4 => object("goto", target()?),
        -5 => object("return", Lean::Null),
        _ => return None,
    })
}

/// An element of a set that is not a one-field interval set, as nft prints it.
fn element(set: &SetDef, raw: RawElem) -> Option<Lean> {
    let concat = set.key.len() > 1;
    let mut fields = Vec::with_capacity(set.key.len());
    let mut offset = 0;
    for &kind in &set.key {
        let start = raw.key.get(offset..offset + kind.len())?;
        let end = match &raw.key_end {
            Some(end) => end.get(offset..offset + kind.len())?,
            None => start,
        };
        fields.push(if start == end {
            kind.print(start)?
        } else {
            span(kind, start, Some(end))?
        });
        offset += if concat {
            kind.len().next_multiple_of(4)
        } else {
            kind.len()
        };
    }
    if offset != raw.key.len() {
        return None;
    }
    let key = if concat {
        Lean::Object(Box::new([("concat".into(), Lean::Array(fields.into()))]))
    } else {
        fields.pop()?
    };
    let key = annotated(key, raw.comment);
    Some(match set.data {
        None => key,
        Some(kind) => {
            let data = match (kind, raw.data?) {
                (Some(kind), RawData::Value(bytes)) if bytes.len() == kind.len() => {
                    kind.print(&bytes)?
                }
                (None, RawData::Verdict(verdict)) => verdict,
                _ => return None,
            };
            Lean::Array(Box::new([key, data]))
        }
    })
}

/// `{"elem": {"val": key, "comment": comment}}`, or the key alone.
fn annotated(key: Lean, comment: Option<String>) -> Lean {
    match comment {
        None => key,
        Some(comment) => Lean::Object(Box::new([(
            "elem".into(),
            Lean::Object(Box::new([
                ("val".into(), key),
                ("comment".into(), Lean::Str(comment.into())),
            ])),
        )])),
    }
}

/// The addresses from `start` to `last` (inclusive; `None`: to the highest address)
/// as nft prints them: one address, a prefix, or a range.
fn span(kind: Type, start: &[u8], last: Option<&[u8]>) -> Option<Lean> {
    if !kind.is_addr() {
        return None;
    }
    let (first, bits) = (number(start)?, 8 * start.len() as u32);
    let top = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    let last = match last {
        Some(last) => number(last)?,
        None => top,
    };
    if last < first {
        return None;
    }
    let size = (last - first).checked_add(1);
    let prefix_len = match size {
        // The whole address space.
        None => Some(0),
        Some(size) if size.is_power_of_two() && first % size == 0 => {
            Some(bits - size.trailing_zeros())
        }
        Some(_) => None,
    };
    let print = |n: u128| kind.print(&n.to_be_bytes()[16 - start.len()..]);
    Some(match prefix_len {
        Some(len) if len == bits => print(first)?,
        Some(len) => Lean::Object(Box::new([(
            "prefix".into(),
            Lean::Object(Box::new([
                ("addr".into(), print(first)?),
                ("len".into(), Lean::Unsigned(u64::from(len))),
            ])),
        )])),
        None => Lean::Object(Box::new([(
            "range".into(),
            Lean::Array(Box::new([print(first)?, print(last)?])),
        )])),
    })
}

fn number(bytes: &[u8]) -> Option<u128> {
    if bytes.len() > 16 {
        return None;
    }
    let mut padded = [0u8; 16];
    padded[16 - bytes.len()..].copy_from_slice(bytes);
    Some(u128::from_be_bytes(padded))
}

/// The elements of a one-field interval set: the kernel holds each interval as its
/// start and, flagged as an interval end, the first address after it (none when it
/// runs to the highest address). Sorted, each start is followed by its end; an end
/// without a start before it is nft's marker of where nothing begins.
fn ranges(kind: Type, mut raw: Vec<RawElem>) -> Result<Vec<Lean>, String> {
    raw.sort_by(|a, b| a.key.cmp(&b.key).then(b.interval_end.cmp(&a.interval_end)));
    let mut out = Vec::new();
    let mut iter = raw.into_iter().peekable();
    while let Some(elem) = iter.next() {
        if elem.interval_end {
            continue;
        }
        let last = match iter.peek() {
            Some(end) if end.interval_end => {
                let end = number(&end.key).ok_or("an interval end that does not decode")?;
                let last = end
                    .checked_sub(1)
                    .ok_or("an interval that ends before it starts")?;
                Some(last.to_be_bytes()[16 - elem.key.len()..].to_vec())
            }
            Some(_) => return Err("an interval without an end".into()),
            None => None,
        };
        let value =
            span(kind, &elem.key, last.as_deref()).ok_or("an interval that does not decode")?;
        out.push(annotated(value, elem.comment));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(lean: &Lean) -> String {
        lean.to_value().to_string()
    }

    #[test]
    fn concatenated_types_unpack_first_type_first() {
        let packed = ((7 << 6 | 12) << 6) | 13;
        assert_eq!(
            key_types(packed),
            Some(vec![Type::Ipv4, Type::Proto, Type::Service])
        );
        assert_eq!(key_types(41 << 6 | 8), Some(vec![Type::Ifname, Type::Ipv6]));
        assert_eq!(key_types(0), None);
        assert_eq!(key_types(5), None, "a string key is not ours");
    }

    #[test]
    fn elements_print_as_nft_prints_them() {
        let set = SetDef {
            name: "s".into(),
            key: vec![Type::Ipv4, Type::Proto, Type::Service],
            interval: false,
            data: None,
        };
        let raw = RawElem {
            key: vec![10, 0, 0, 2, 6, 0, 0, 0, 0, 80, 0, 0],
            ..RawElem::default()
        };
        assert_eq!(
            json(&element(&set, raw.clone()).unwrap()),
            r#"{"concat":["10.0.0.2",6,80]}"#
        );
        let short = RawElem {
            key: vec![10, 0, 0, 2, 6],
            ..raw
        };
        assert_eq!(element(&set, short), None, "a key cut short");
        let map = SetDef {
            name: "m".into(),
            key: vec![Type::Ipv4],
            interval: false,
            data: Some(Some(Type::Mark)),
        };
        let raw = RawElem {
            key: vec![10, 0, 0, 2],
            data: Some(RawData::Value(7u32.to_ne_bytes().to_vec())),
            comment: Some("shop/web".into()),
            ..RawElem::default()
        };
        assert_eq!(
            json(&element(&map, raw).unwrap()),
            r#"[{"elem":{"comment":"shop/web","val":"10.0.0.2"}},7]"#
        );
        let mac = Type::Ether.print(&[0x0a, 0, 0xff, 1, 2, 3]).unwrap();
        assert_eq!(json(&mac), r#""0a:00:ff:01:02:03""#);
        let name = Type::Ifname.print(b"zw1234\0\0\0\0\0\0\0\0\0\0").unwrap();
        assert_eq!(json(&name), r#""zw1234""#);
    }

    #[test]
    fn intervals_print_as_prefixes_addresses_or_ranges() {
        let start = |key: &[u8]| RawElem {
            key: key.to_vec(),
            ..RawElem::default()
        };
        let end = |key: &[u8]| RawElem {
            key: key.to_vec(),
            interval_end: true,
            ..RawElem::default()
        };
        // As the kernel dumps them: highest first, with nft's marker at 0.0.0.0.
        let raw = vec![
            start(&[224, 0, 0, 0]),
            end(&[192, 169, 0, 0]),
            start(&[192, 168, 0, 0]),
            end(&[11, 0, 0, 0]),
            start(&[10, 0, 0, 0]),
            end(&[10, 0, 0, 0]),
            end(&[1, 2, 3, 5]),
            start(&[1, 2, 3, 4]),
            end(&[0, 0, 0, 0]),
        ];
        let printed: Vec<String> = ranges(Type::Ipv4, raw).unwrap().iter().map(json).collect();
        assert_eq!(
            printed,
            [
                r#""1.2.3.4""#,
                r#"{"prefix":{"addr":"10.0.0.0","len":8}}"#,
                r#"{"prefix":{"addr":"192.168.0.0","len":16}}"#,
                // No end: to the highest address.
                r#"{"prefix":{"addr":"224.0.0.0","len":3}}"#,
            ]
        );
        let odd = vec![start(&[10, 0, 0, 1]), end(&[10, 0, 0, 4])];
        assert_eq!(
            json(&ranges(Type::Ipv4, odd).unwrap()[0]),
            r#"{"range":["10.0.0.1","10.0.0.3"]}"#
        );
        let all = vec![start(&[0; 16])];
        assert_eq!(
            json(&ranges(Type::Ipv6, all).unwrap()[0]),
            r#"{"prefix":{"addr":"::","len":0}}"#
        );
        let two_starts = vec![start(&[10, 0, 0, 1]), start(&[10, 0, 0, 4])];
        assert!(ranges(Type::Ipv4, two_starts).is_err());
    }

    #[test]
    fn what_does_not_decode_is_an_error_not_a_panic() {
        assert!(raw_elem(&[]).is_err());
        assert!(raw_elem(&[4, 0]).is_err());
        assert_eq!(comment_of(&[0, 200, b'a']), None);
        assert_eq!(comment_of(&[1, 1, b'x', 0, 2, b'c', 0]), Some("c"));
        assert!(set_def(&[]).is_err());
        assert_eq!(verdict_of(&[]), None);
        assert_eq!(span(Type::Proto, &[6], Some(&[17])), None);
        assert_eq!(span(Type::Ipv4, &[10, 0, 0, 9], Some(&[10, 0, 0, 1])), None);
    }
}
