//! The attachment key of every endpoint record the store saw, by record key and by
//! node: a deleted record's key holds only a hash of its attachment, and a node that
//! dies takes its endpoints with it, found without looking at anyone else's.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use zonewarden_profiles::AttachmentKey;

/// A record key or a node name, held once and shared by both indexes (and record keys
/// with the store's cache of seen keys): a node that knows a large cluster keeps one
/// entry per remote endpoint here.
pub type Text = Arc<str>;

#[derive(Debug, Default)]
pub struct EndpointKeys {
    by_key: HashMap<Text, (Text, AttachmentKey)>,
    by_node: HashMap<Text, BTreeSet<Text>>,
}

impl EndpointKeys {
    /// Notes the record `key` of `node` with its attachment (`key`: the text the
    /// store's cache of seen keys holds, shared).
    pub fn insert(&mut self, key: Text, node: String, attachment: AttachmentKey) {
        if let Some((old, _)) = self.by_key.get(&*key)
            && **old != *node
        {
            let old = old.clone();
            self.unlink(&key, &old);
        }
        let node: Text = match self.by_node.get_key_value(node.as_str()) {
            Some((shared, _)) => shared.clone(),
            None => Text::from(node),
        };
        self.by_node
            .entry(node.clone())
            .or_default()
            .insert(key.clone());
        self.by_key.insert(key, (node, attachment));
    }

    pub fn get(&self, key: &str) -> Option<&AttachmentKey> {
        self.by_key.get(key).map(|(_, a)| a)
    }

    pub fn remove(&mut self, key: &str) {
        if let Some((node, _)) = self.by_key.remove(key) {
            self.unlink(key, &node);
        }
    }

    fn unlink(&mut self, key: &str, node: &str) {
        if let Some(keys) = self.by_node.get_mut(node) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_node.remove(node);
            }
        }
    }

    /// The records of the nodes `dead` picks, each with its node and attachment.
    pub fn of_nodes(
        &self,
        mut dead: impl FnMut(&str) -> bool,
    ) -> Vec<(String, String, AttachmentKey)> {
        self.by_node
            .iter()
            .filter(|(node, _)| dead(node))
            .flat_map(|(node, keys)| {
                keys.iter().filter_map(|key| {
                    let (_, attachment) = self.by_key.get(key)?;
                    Some((key.to_string(), node.to_string(), attachment.clone()))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment(id: &str) -> AttachmentKey {
        AttachmentKey {
            container_id: id.into(),
            ifname: "eth0".into(),
            network: "net".into(),
        }
    }

    #[test]
    fn a_dead_nodes_records_are_found_without_the_others() {
        let mut keys = EndpointKeys::default();
        keys.insert("e/a/1".into(), "a".into(), attachment("1"));
        keys.insert("e/a/2".into(), "a".into(), attachment("2"));
        keys.insert("e/b/3".into(), "b".into(), attachment("3"));
        let mut asked = Vec::new();
        let dead = keys.of_nodes(|n| {
            asked.push(n.to_owned());
            n == "a"
        });
        asked.sort();
        assert_eq!(asked, ["a", "b"], "one question per node, not per record");
        let mut found: Vec<String> = dead.into_iter().map(|(k, _, _)| k).collect();
        found.sort();
        assert_eq!(found, ["e/a/1", "e/a/2"]);
        keys.remove("e/a/1");
        keys.remove("e/a/2");
        assert!(keys.of_nodes(|n| n == "a").is_empty());
        assert!(!keys.by_node.contains_key("a"), "an empty node is dropped");
        assert_eq!(keys.get("e/b/3"), Some(&attachment("3")));
    }
}
