//! Map elements: one element per endpoint address in `zone_of_v4` / `zone_of_v6`,
//! valued with the zone id and commented with the zone and the attachment.
//!
//! Every change goes through the [`Dataplane`] trait, the seam that lets the
//! registry be tested without root.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::command::{NftCli, NftError};
use super::listing::{ListedElement, TableListing};
use super::schema::{
    AnnotatedKey, Batch, Command, ElementEntry, ElementsDef, KeyWithComment, Object,
};
use super::structure::missing_structure;
use super::{FAMILY, TABLE, zone_map_for};

/// nft keeps at most 128 bytes of a comment, including its terminating NUL.
/// Comments longer than this are cut at a character boundary.
const MAX_COMMENT_BYTES: usize = 127;

/// The element one endpoint address should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub addr: IpAddr,
    pub zone_id: u32,
    pub comment: String,
}

/// One transaction of element changes: deletes first, then adds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElementChange {
    pub delete: Vec<IpAddr>,
    pub add: Vec<Element>,
}

impl ElementChange {
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.add.is_empty()
    }

    pub fn to_batch(&self) -> Batch {
        let delete = self.delete.iter().map(|addr| {
            Command::Delete(element_object(*addr, ElementEntry::Key(addr.to_string())))
        });
        let add = self.add.iter().map(|e| {
            let key = KeyWithComment {
                val: e.addr.to_string(),
                comment: truncated(&e.comment),
            };
            Command::Add(element_object(
                e.addr,
                ElementEntry::Mapping(AnnotatedKey { elem: key }, e.zone_id),
            ))
        });
        Batch {
            nftables: delete.chain(add).collect(),
        }
    }

    /// The same change made valid against what the kernel holds: deletes only what
    /// exists, and replaces (delete + add) elements whose address already exists.
    pub fn against(&self, kernel: &BTreeMap<IpAddr, ListedElement>) -> Self {
        let mut delete: Vec<IpAddr> = self
            .delete
            .iter()
            .copied()
            .filter(|a| kernel.contains_key(a))
            .collect();
        for element in &self.add {
            if kernel.contains_key(&element.addr) && !delete.contains(&element.addr) {
                delete.push(element.addr);
            }
        }
        Self {
            delete,
            add: self.add.clone(),
        }
    }
}

fn element_object(addr: IpAddr, entry: ElementEntry) -> Object {
    Object::Element(ElementsDef {
        family: FAMILY,
        table: TABLE,
        name: zone_map_for(addr),
        elem: vec![entry],
    })
}

pub fn truncated(comment: &str) -> String {
    let mut end = comment.len().min(MAX_COMMENT_BYTES);
    while !comment.is_char_boundary(end) {
        end -= 1;
    }
    comment[..end].to_owned()
}

/// The kernel side of the registry.
pub trait Dataplane: Send + Sync + 'static {
    /// Adds whatever the table's structure lacks; returns how many parts were added.
    fn ensure_structure(&self) -> Result<usize, NftError>;
    /// Applies one change atomically.
    fn apply(&self, change: &ElementChange) -> Result<(), NftError>;
    /// Every element of the zone maps.
    fn list_elements(&self) -> Result<BTreeMap<IpAddr, ListedElement>, NftError>;
}

/// The data plane through the `nft` binary: one process per change.
///
/// A later issue replaces element changes with netlink batches
/// (netlink-packet-netfilter, ~15 µs per change instead of ~3.5 ms per process).
#[derive(Debug, Clone, Default)]
pub struct NftDataplane {
    nft: NftCli,
}

impl NftDataplane {
    pub fn new(nft: NftCli) -> Self {
        Self { nft }
    }

    fn listing(&self) -> Result<Option<TableListing>, NftError> {
        let Some(json) = self.nft.list_table()? else {
            return Ok(None);
        };
        TableListing::parse(&json)
            .map(Some)
            .map_err(|detail| NftError::Parse {
                action: format!("list table {FAMILY} {TABLE}"),
                detail,
            })
    }
}

impl Dataplane for NftDataplane {
    fn ensure_structure(&self) -> Result<usize, NftError> {
        let batch = missing_structure(self.listing()?.as_ref());
        self.nft
            .apply(&batch, "add the missing parts of table inet zonewarden")?;
        Ok(batch.nftables.len())
    }

    /// Tries the change as computed; when the kernel disagrees with the registry
    /// (an element deleted or added by hand), rebuilds it against the kernel's
    /// elements and tries once more.
    fn apply(&self, change: &ElementChange) -> Result<(), NftError> {
        let action = "change zone map elements";
        if self.nft.apply(&change.to_batch(), action).is_ok() {
            return Ok(());
        }
        let repaired = change.against(&self.list_elements()?);
        self.nft.apply(&repaired.to_batch(), action)
    }

    fn list_elements(&self) -> Result<BTreeMap<IpAddr, ListedElement>, NftError> {
        Ok(self.listing()?.map(|t| t.elements()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(addr: &str, zone_id: u32) -> Element {
        Element {
            addr: addr.parse().unwrap(),
            zone_id,
            comment: format!("zone {zone_id}"),
        }
    }

    #[test]
    fn a_change_as_nft_json() {
        let change = ElementChange {
            delete: vec!["10.0.0.9".parse().unwrap()],
            add: vec![element("10.0.0.5", 7), element("fd00::5", 7)],
        };
        insta::assert_json_snapshot!(change.to_batch());
    }

    #[test]
    fn comments_are_cut_to_what_nft_keeps() {
        let long = "é".repeat(100);
        let cut = truncated(&long);
        assert!(
            cut.len() <= MAX_COMMENT_BYTES && long.starts_with(&cut),
            "{} bytes",
            cut.len()
        );
    }

    #[test]
    fn against_the_kernel_deletes_only_what_exists_and_replaces_the_rest() {
        let listed = |zone_id| ListedElement {
            zone_id,
            comment: None,
        };
        let kernel = BTreeMap::from([("10.0.0.5".parse().unwrap(), listed(3))]);
        let change = ElementChange {
            delete: vec!["10.0.0.9".parse().unwrap()],
            add: vec![element("10.0.0.5", 7), element("10.0.0.6", 7)],
        };
        let repaired = change.against(&kernel);
        assert_eq!(repaired.delete, vec!["10.0.0.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(repaired.add, change.add);
    }
}
