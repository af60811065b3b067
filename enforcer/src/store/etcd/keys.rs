//! The key layout under the cluster prefix (see the module doc of [`super`]), and the
//! parse of a key back into what it holds.

use sha2::{Digest, Sha256};
use zonewarden_profiles::{AttachmentKey, ZoneName};

/// What one key under the prefix holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// `zones/<zone>`: the zone's id, created once.
    Zone(ZoneName),
    /// `zone-ids/<id>`: the zone holding the id, created once.
    ZoneId(u32),
    /// `profiles/<zone>`.
    Profile(ZoneName),
    /// `endpoints/<node>/<hash of the attachment key>`.
    Endpoint { node: String },
    /// `quarantined/<container id>`.
    Quarantined(String),
    /// `learned/<node>`: the node's own evidence.
    Learned { node: String },
    /// `reports/<node>`.
    Reports { node: String },
    /// `nodes/<node>`: the node record, on the node's lease.
    Node(String),
    /// `pod-blocks/<block>`: a block of the pod CIDR pool and the node that claimed it.
    PodBlock,
}

/// The keys of one cluster, under one prefix such as `/zonewarden`.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The prefix with one trailing `/`.
    root: String,
}

impl Keys {
    /// `prefix` must start with `/`; a trailing `/` is optional.
    pub fn new(prefix: &str) -> Result<Self, String> {
        let trimmed = prefix.trim_end_matches('/');
        if !prefix.starts_with('/') || trimmed.is_empty() {
            return Err(format!(
                "--etcd-prefix {prefix:?} must start with / and name something (e.g. /zonewarden)"
            ));
        }
        Ok(Self {
            root: format!("{trimmed}/"),
        })
    }

    /// Every key of the cluster starts with this.
    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn zone(&self, zone: &ZoneName) -> String {
        format!("{}zones/{zone}", self.root)
    }

    pub fn zone_id(&self, id: u32) -> String {
        format!("{}zone-ids/{id}", self.root)
    }

    pub fn profile(&self, zone: &ZoneName) -> String {
        format!("{}profiles/{zone}", self.root)
    }

    /// The attachment key's parts may hold any character: the key holds their hash.
    pub fn endpoint(&self, node: &str, key: &AttachmentKey) -> String {
        let mut hash = Sha256::new();
        for part in [&key.network, &key.container_id, &key.ifname] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        let hex: String = hash.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}endpoints/{node}/{hex}", self.root)
    }

    pub fn quarantined(&self, container_id: &str) -> String {
        format!("{}quarantined/{container_id}", self.root)
    }

    pub fn learned(&self, node: &str) -> String {
        format!("{}learned/{node}", self.root)
    }

    pub fn reports(&self, node: &str) -> String {
        format!("{}reports/{node}", self.root)
    }

    pub fn node(&self, node: &str) -> String {
        format!("{}nodes/{node}", self.root)
    }

    /// The cluster-wide audit trail lives beside the prefix (`<prefix>.audit/`), not
    /// under it: the watch and the full listings of the state never read it.
    pub fn audit_root(&self) -> String {
        format!("{}.audit/", self.root.trim_end_matches('/'))
    }

    /// `<prefix>.audit/head`: the trail's last entry (seq and hashes).
    pub fn audit_head(&self) -> String {
        format!("{}head", self.audit_root())
    }

    /// `<prefix>.audit/entries/`: every entry, as its JSON line.
    pub fn audit_entries(&self) -> String {
        format!("{}entries/", self.audit_root())
    }

    /// One entry's key: the seq zero-padded, so that keys sort in the trail's order.
    pub fn audit_entry(&self, seq: u64) -> String {
        format!("{}{seq:020}", self.audit_entries())
    }

    /// What `key` holds; `Err` for a key under the prefix that is none of ours.
    pub fn parse(&self, key: &str) -> Result<KeyKind, String> {
        let rest = key
            .strip_prefix(&self.root)
            .ok_or_else(|| format!("{key} is not under {}", self.root))?;
        let (kind, name) = rest
            .split_once('/')
            .ok_or_else(|| "not a key zonewarden writes".to_owned())?;
        let zone = || ZoneName::parse_any(name).map_err(|e| e.to_string());
        let node = || {
            valid_node(name)?;
            Ok::<_, String>(name.to_owned())
        };
        Ok(match kind {
            "zones" => KeyKind::Zone(zone()?),
            "zone-ids" => KeyKind::ZoneId(
                name.parse()
                    .map_err(|_| format!("{name:?} is not a zone id"))?,
            ),
            "profiles" => KeyKind::Profile(zone()?),
            "endpoints" => {
                let (node, hash) = name
                    .split_once('/')
                    .ok_or_else(|| "an endpoint key is endpoints/<node>/<hash>".to_owned())?;
                valid_node(node)?;
                if hash.is_empty() || hash.contains('/') {
                    return Err("an endpoint key is endpoints/<node>/<hash>".to_owned());
                }
                KeyKind::Endpoint {
                    node: node.to_owned(),
                }
            }
            "quarantined" if !name.is_empty() => KeyKind::Quarantined(name.to_owned()),
            "learned" => KeyKind::Learned { node: node()? },
            "reports" => KeyKind::Reports { node: node()? },
            "nodes" => KeyKind::Node(node()?),
            "pod-blocks" if !name.is_empty() && !name.contains('/') => KeyKind::PodBlock,
            _ => return Err("not a key zonewarden writes".to_owned()),
        })
    }
}

/// A node name is one key segment: not empty, no `/`, printable.
pub fn valid_node(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 253
        || name.contains('/')
        || name.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(format!(
            "node name {name:?} cannot be a key segment: it must be 1-253 printable characters without / or spaces"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::key;

    #[test]
    fn every_key_parses_back_to_what_it_holds() {
        let keys = Keys::new("/zw/").unwrap();
        let zone = ZoneName::parse("shop/web").unwrap();
        assert_eq!(keys.zone(&zone), "/zw/zones/shop/web");
        assert_eq!(
            keys.parse(&keys.zone(&zone)),
            Ok(KeyKind::Zone(zone.clone()))
        );
        assert_eq!(keys.parse(&keys.zone_id(7)), Ok(KeyKind::ZoneId(7)));
        assert_eq!(
            keys.parse(&keys.profile(&zone)),
            Ok(KeyKind::Profile(zone.clone()))
        );
        let ep = keys.endpoint("node-a", &key("c1"));
        assert!(ep.starts_with("/zw/endpoints/node-a/"), "{ep}");
        assert_eq!(
            keys.parse(&ep),
            Ok(KeyKind::Endpoint {
                node: "node-a".into()
            })
        );
        assert_ne!(ep, keys.endpoint("node-a", &key("c2")));
        assert_eq!(
            keys.parse(&keys.quarantined("c1")),
            Ok(KeyKind::Quarantined("c1".into()))
        );
        assert_eq!(
            keys.parse(&keys.learned("n")),
            Ok(KeyKind::Learned { node: "n".into() })
        );
        assert_eq!(
            keys.parse(&keys.reports("n")),
            Ok(KeyKind::Reports { node: "n".into() })
        );
        assert_eq!(keys.parse(&keys.node("n")), Ok(KeyKind::Node("n".into())));
        assert_eq!(keys.audit_head(), "/zw.audit/head");
        assert_eq!(
            keys.audit_entry(12),
            "/zw.audit/entries/00000000000000000012"
        );
        assert!(keys.audit_entry(9) < keys.audit_entry(10));
        assert!(!keys.audit_head().starts_with(keys.root()));
    }

    #[test]
    fn foreign_and_damaged_keys_are_refused() {
        let keys = Keys::new("/zw").unwrap();
        assert!(keys.parse("/other/zones/a").is_err());
        assert!(keys.parse("/zw/unknown/a").is_err());
        assert!(keys.parse("/zw/zone-ids/x").is_err());
        assert!(keys.parse("/zw/endpoints/node-a").is_err());
        assert!(keys.parse("/zw/zones/BAD ZONE").is_err());
        assert!(Keys::new("zonewarden").is_err());
        assert!(Keys::new("/").is_err());
        assert!(valid_node("a/b").is_err());
        assert!(valid_node("").is_err());
    }
}
