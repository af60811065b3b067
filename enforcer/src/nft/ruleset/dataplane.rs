//! The [`RulesetDataplane`] seam: the registry hands it rulesets, it makes the kernel
//! hold them. [`NftRulesetDataplane`] sends element changes and zone structure as
//! netlink batches and the rest (the base chains, interval sets) through `nft`; [`MemoryDataplane`] is a fake for tests without root.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tracing::{debug, warn};
use zonewarden_profiles::diff::RulesetDiff;
use zonewarden_profiles::policy::NodeSettings;
use zonewarden_profiles::ruleset::{LocalAddr, Ruleset};

use super::elements::{Elem, Part, SetChange, Verb, routed_ifname};
use super::listing::ParsedListing;
use super::names::{ALL_BASE_CHAINS, ZONE_IN_PREFIX, ZONE_OUT_PREFIX};
use super::read::{LinkGroups, read_parsed, representable};
use super::render_base::{base_chain_rules, base_commands, base_is_complete, global_set_names};
use super::render_diff::{Step, diff_commands, diff_steps};
use super::{BRIDGE_FAMILY, KernelView, Options, seal};
use super::{expr, listing};
use crate::hostlink::LinkGroupSocket;
use crate::nft::netlink::{BatchItem, ElementSocket, expressible};
use crate::nft::process::{DEFAULT_TIMEOUT, Deadline};
use crate::nft::{FAMILY, NftError, TABLE};
use crate::nft::{objects, table_read};

/// An nft process's deadline and the thread that reads its stderr.
struct Running {
    deadline: Deadline,
    stderr: std::thread::JoinHandle<Vec<u8>>,
}

/// The seam between the registry and the kernel's table.
pub trait RulesetDataplane: Send + Sync {
    /// Creates what is missing and rewrites stale base chains; returns the kernel view after it.
    fn ensure_base(&self, settings: &NodeSettings) -> Result<KernelView, NftError>;
    /// [`Self::ensure_base`], treating the chains in `stale` as changed by someone
    /// else whatever their comments say: base chains among them are rewritten here,
    /// and zones whose chains are among them read as stale (the next diff rewrites
    /// them).
    fn ensure_base_stale(
        &self,
        settings: &NodeSettings,
        stale: &BTreeSet<String>,
    ) -> Result<KernelView, NftError>;
    /// Applies `diff` (from the ruleset the kernel holds to `new`) in one transaction;
    /// on failure re-reads the kernel and retries once with the diff from what it holds.
    fn apply(&self, diff: &RulesetDiff, new: &Ruleset) -> Result<(), NftError>;
    /// Applies `old -> new` (computing the whole diff: for full resyncs and tests).
    fn apply_between(&self, old: &Ruleset, new: &Ruleset) -> Result<(), NftError> {
        self.apply(&RulesetDiff::between(old, new), new)
    }
    fn read(&self) -> Result<KernelView, NftError>;
    /// Checks that the kernel's table can be reached, at a cost that does not grow
    /// with the table's contents (a health check: it must stay quick while a flood
    /// fills the seen sets).
    fn probe(&self) -> Result<(), NftError> {
        self.read().map(drop)
    }
    /// Whether the table is sealed with `ruleset` and nothing at all was committed in
    /// the namespace since (see [`super::seal`]): then it holds `ruleset` and
    /// needs neither a read nor a write. `false` whenever that cannot be confirmed.
    fn confirms(&self, ruleset: &Ruleset) -> bool;
    /// Seals the table as holding `ruleset` (which it must hold); `Ok(false)` when
    /// this data plane cannot, or someone committed a change meanwhile.
    fn seal(&self, ruleset: &Ruleset) -> Result<bool, NftError>;
    /// Deletes chains that are not ours, then sets and maps that nothing of ours uses
    /// (left by an older version, or added by someone else); called once the chains
    /// that used them are rewritten.
    fn remove_objects(&self, chains: &[String], sets: &[String]) -> Result<(), NftError>;
    /// Whether each (host interface, zone id) of `routed` has the zone id as the
    /// interface's group (or is gone: it carries no packets). `true` for a data plane
    /// without interfaces.
    fn groups_hold(&self, routed: &[(String, u32)]) -> bool {
        let _ = routed;
        true
    }
}

/// The (host interface, zone id) of every local address of `ruleset` with a routed
/// interface of its own.
pub fn routed_groups(ruleset: &Ruleset) -> Vec<(String, u32)> {
    routed_of(ruleset.local.values())
        .map(|(ifname, id)| (ifname.to_owned(), id))
        .collect()
}

/// (routed host interface, zone id) of each of `locals` that has one.
fn routed_of<'a>(
    locals: impl IntoIterator<Item = &'a LocalAddr>,
) -> impl Iterator<Item = (&'a str, u32)> {
    locals
        .into_iter()
        .filter_map(|local| Some((routed_ifname(local)?, local.zone_id)))
}

/// The data plane of a real kernel: element changes as netlink batches (when it has
/// an [`ElementSocket`]), everything else through the `nft` command.
#[derive(Debug, Clone)]
pub struct NftRulesetDataplane {
    /// The command that runs nft: `["nft"]`, or e.g. `["ip", "netns", "exec", NS, "nft"]`.
    command: Vec<String>,
    opts: Options,
    /// A netfilter socket of the same network namespace as `command`'s nft.
    elements: Option<Arc<ElementSocket>>,
    /// The interface groups of that namespace: a routed endpoint's host interface
    /// carries its zone id (without it, routed endpoints cannot be enforced).
    links: Option<Arc<LinkGroupSocket>>,
    /// The base chains' rewrite, held back until the next apply, which runs it with the
    /// whole change in one transaction: the table never has base chains that dispatch
    /// to nothing (every pod open) in between.
    pending_base: Arc<Mutex<Option<Vec<Value>>>>,
    /// How long one nft process may take before it is stopped.
    timeout: Duration,
    /// Whether reads go through the socket (nft only when that fails).
    netlink_reads: bool,
    /// What the table holds and the seal it carries, as far as this data plane knows.
    journal: Arc<Mutex<Journal>>,
    /// A read of the table begun early (see [`Self::prefetch`]).
    prefetched: Arc<Mutex<Option<Prefetch>>>,
}

/// The thread of an early read: what it read, with the namespace's nftables
/// generation from before the read began (`None`: nothing read).
type Prefetch = std::thread::JoinHandle<Option<(u32, KernelView)>>;

/// The digest of what the table holds (while known: it is forgotten when a change
/// fails) and the seal element the table carries (while known). With both, every
/// netlink batch carries the seal of the table it leaves (see [`seal::SealDigest`]):
/// the table is sealed after each of the enforcer's changes, not only once it is
/// quiet, and a restart right after a change confirms it without reading it.
#[derive(Debug, Default)]
struct Journal {
    digest: Option<seal::SealDigest>,
    seal: Option<[u8; 16]>,
}

impl NftRulesetDataplane {
    /// Runs `nft` from `PATH` in the caller's network namespace.
    pub fn new(opts: Options) -> Self {
        Self::with_command(vec!["nft".to_owned()], opts)
    }

    /// Runs nft through `command` (its first word is the program); an empty command
    /// means `nft`.
    pub fn with_command(command: Vec<String>, opts: Options) -> Self {
        let command = if command.is_empty() {
            vec!["nft".to_owned()]
        } else {
            command
        };
        Self {
            command,
            opts,
            elements: None,
            links: None,
            pending_base: Arc::default(),
            timeout: DEFAULT_TIMEOUT,
            netlink_reads: true,
            journal: Arc::default(),
            prefetched: Arc::default(),
        }
    }

    /// Stops an nft process that takes longer than `timeout` (the change fails with
    /// an error naming the command).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends element-only changes through `socket`, which must belong to the network
    /// namespace that `nft` runs in.
    pub fn with_element_socket(mut self, socket: ElementSocket) -> Self {
        self.elements = Some(Arc::new(socket));
        self
    }

    /// Reads and sets interface groups through `socket`, which must belong to the
    /// network namespace that `nft` runs in.
    pub fn with_link_socket(mut self, socket: LinkGroupSocket) -> Self {
        self.links = Some(Arc::new(socket));
        self
    }

    /// The group of every interface of the namespace (none without a link socket:
    /// then every routed endpoint reads as its map element says, and the next apply
    /// that adds one fails, naming the missing socket).
    fn link_groups(&self) -> Result<LinkGroups, NftError> {
        let Some(links) = &self.links else {
            return Ok(LinkGroups::new());
        };
        links.groups().map_err(|source| NftError::Kernel {
            action: "read the groups of the network interfaces".to_owned(),
            source,
        })
    }

    /// Gives the routed host interface of every address `diff` adds its zone id as its
    /// group, before any element names the interface (until then, or if this fails,
    /// the interface's packets meet the drop for interfaces without a zone). Returns
    /// what to put back if the change then fails: (interface, its zone id before).
    fn set_groups(&self, diff: &RulesetDiff) -> Result<Vec<(String, u32)>, NftError> {
        let wanted: BTreeMap<&str, u32> =
            routed_of(diff.local.add.iter().map(|(_, l)| l)).collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let before: BTreeMap<&str, u32> =
            routed_of(diff.local.del.iter().map(|(_, l)| l)).collect();
        let Some(links) = &self.links else {
            return Err(NftError::Kernel {
                action: "give the host interfaces of routed endpoints their zone's group"
                    .to_owned(),
                source: std::io::Error::other(
                    "the enforcer has no route netlink socket in the node's network namespace",
                ),
            });
        };
        let mut set = Vec::new();
        for (ifname, group) in wanted {
            match links.set_group(ifname, group) {
                Ok(true) => set.push((ifname.to_owned(), before.get(ifname).copied().unwrap_or(0))),
                // The pod's interface is gone (its DEL is on the way): nothing to enforce.
                Ok(false) => debug!(ifname, "no such interface; its group is not set"),
                Err(source) => {
                    self.put_groups_back(&set);
                    return Err(NftError::Kernel {
                        action: format!("set the group of interface {ifname} to zone id {group}"),
                        source,
                    });
                }
            }
        }
        Ok(set)
    }

    /// Puts back the groups [`Self::set_groups`] changed for a change that failed.
    fn put_groups_back(&self, set: &[(String, u32)]) {
        let Some(links) = &self.links else { return };
        for (ifname, group) in set {
            if let Err(err) = links.set_group(ifname, *group) {
                warn!(ifname, group, %err, "cannot put the interface's group back after a failed change; the next start reads it and corrects it");
            }
        }
    }

    /// Reads the table through `nft` even with a socket (tests that prove that a
    /// step reads nothing give the data plane an nft that cannot run).
    pub fn with_reads_through_nft(mut self) -> Self {
        self.netlink_reads = false;
        self
    }

    /// Begins reading the table on a thread of its own, so that a restart reads it
    /// while it loads its state (at 100,000 remote endpoints, each takes seconds).
    /// Nothing is read when the table's seal names the current generation: the table
    /// is as the enforcer left it, and [`RulesetDataplane::confirms`] decides without
    /// a read. The next [`RulesetDataplane::read`] takes what this read only if nothing
    /// was committed to the namespace's nftables since it began (the generation is
    /// the same); otherwise that read reads the table again.
    pub fn prefetch(&self) {
        let Some(socket) = self.elements.clone() else {
            return;
        };
        if !self.netlink_reads {
            return;
        }
        let this = self.clone();
        let thread = std::thread::Builder::new()
            .name("zw-table-read".to_owned())
            .spawn(move || {
                let generation = socket.generation().ok()?;
                if matches!(this.current_seal(&socket), Ok(Some(_))) {
                    return None;
                }
                match this.read_now() {
                    Ok(view) => Some((generation, view)),
                    Err(err) => {
                        debug!(%err, "cannot read the table early; it is read when needed");
                        None
                    }
                }
            });
        match thread {
            Ok(thread) => *self.prefetch_slot() = Some(thread),
            Err(err) => debug!(%err, "cannot start the early read of the table"),
        }
    }

    /// What the early read read (waiting for it to end), if the table is still what
    /// it read: the namespace's generation has not moved since the read began.
    pub fn take_prefetched(&self) -> Option<KernelView> {
        let thread = self.prefetch_slot().take()?;
        let (generation, view) = thread.join().ok()??;
        let now = self.elements.as_ref()?.generation().ok()?;
        if now != generation {
            debug!(
                generation,
                now, "the table changed after it was read early; reading it again"
            );
            return None;
        }
        debug!(generation, "took the table as read while the state loaded");
        Some(view)
    }

    /// Whether the early read has ended (or none was begun).
    #[cfg(test)]
    pub fn prefetch_finished(&self) -> bool {
        self.prefetch_slot()
            .as_ref()
            .is_none_or(std::thread::JoinHandle::is_finished)
    }

    fn prefetch_slot(&self) -> MutexGuard<'_, Option<Prefetch>> {
        self.prefetched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The table's seal element, if it names the namespace's current generation
    /// (nothing was committed since the enforcer sealed the table).
    fn current_seal(&self, socket: &ElementSocket) -> Result<Option<[u8; 16]>, NftError> {
        let generation = socket.generation()?;
        let keys = socket.set_keys(seal::DIGEST_SET)?.unwrap_or_default();
        Ok(match keys.as_slice() {
            [key] => seal::read_seal_key(key)
                .filter(|(_, sealed)| *sealed == generation)
                .and_then(|_| seal_bytes_of(key)),
            _ => None,
        })
    }

    /// Reads both tables now (through netlink, or through nft without a socket).
    fn read_now(&self) -> Result<KernelView, NftError> {
        let action = format!("list table {FAMILY} {TABLE}");
        let parse_error = |detail: String| NftError::Parse {
            action: action.clone(),
            detail,
        };
        // Both tables as one listing: their objects have distinct names. A missing
        // table lists as nothing (the base transaction creates it).
        let started = std::time::Instant::now();
        let mut listing = ParsedListing::default();
        let through_netlink = match &self.elements {
            Some(socket) if self.netlink_reads => match table_read::read_tables(socket) {
                Ok(read) => Some(read.unwrap_or_default()),
                Err(err) => {
                    warn!(%err, "cannot read the table through netlink; reading it through nft");
                    None
                }
            },
            _ => None,
        };
        match through_netlink {
            Some(read) => listing = read,
            None => {
                for family in [FAMILY, BRIDGE_FAMILY] {
                    if let Some(table) = self.list_table(family)? {
                        listing.extend(table);
                    }
                }
            }
        }
        if listing.items.is_empty() {
            return Ok(KernelView::default());
        }
        let listed = started.elapsed();
        let view = read_parsed(&listing, &self.opts, &self.link_groups()?).map_err(parse_error);
        debug!(
            netlink = self.netlink_reads && self.elements.is_some(),
            listed_ms = listed.as_millis(),
            read_ms = (started.elapsed() - listed).as_millis(),
            "read the table"
        );
        view
    }

    /// [`RulesetDataplane::apply`] once the interface groups are set: the pending
    /// base chains with the change through nft, or the change as one netlink batch (nft
    /// when it cannot go so), and after a failure once more from what the kernel holds.
    fn apply_elements(&self, diff: &RulesetDiff, new: &Ruleset) -> Result<(), NftError> {
        let action = "apply the ruleset to the table inet zonewarden";
        let pending = self
            .pending_base
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(base) = pending {
            let mut cmds = base.clone();
            if let Some(Value::Array(rest)) = diff_commands(diff, new, &self.opts).get("nftables") {
                cmds.extend(rest.iter().cloned());
            }
            let created = self.run_transaction(
                &expr::transaction(cmds),
                "create the tables inet and bridge zonewarden with every zone and endpoint",
            );
            if created.is_err() {
                *self.pending_base.lock().unwrap_or_else(|p| p.into_inner()) = Some(base);
            }
            self.journal().digest = None;
            return created;
        }
        let result = match self.apply_netlink(diff, new) {
            Ok(true) => return Ok(()),
            Ok(false) => {
                self.run_resealed(&diff_commands(diff, new, &self.opts), action, diff, new)
            }
            Err(err) => Err(err),
        };
        let Err(err) = result else {
            return Ok(());
        };
        self.journal().digest = None;
        warn!(
            ?err,
            "applying the ruleset failed; retrying from what the kernel holds"
        );
        let held = self.read()?;
        let diff = RulesetDiff::between(&held.ruleset, new);
        let groups = self.set_groups(&diff)?;
        let retried = self.run_transaction(&diff_commands(&diff, new, &self.opts), action);
        if retried.is_err() {
            self.put_groups_back(&groups);
        }
        retried
    }

    /// The whole change as one netlink batch: element changes, and the sets, chains
    /// and rules of created, rewritten and removed zones. `Ok(false)` when it must go
    /// through nft (no socket, a node setting changed, interval sets, anything
    /// [`objects::command_message`] does not encode, too large).
    fn apply_netlink(&self, diff: &RulesetDiff, new: &Ruleset) -> Result<bool, NftError> {
        let Some(socket) = &self.elements else {
            return Ok(false);
        };
        if diff.settings_changed {
            return Ok(false);
        }
        let steps = diff_steps(diff, new, &self.opts);
        let resealed = self.reseal(socket, diff, new)?;
        let mut set_id = 0;
        let mut items = Vec::with_capacity(steps.len() + 2);
        for step in &steps {
            items.push(match step {
                Step::Elements(change) if expressible(std::slice::from_ref(change)) => {
                    BatchItem::Elements(change)
                }
                Step::Elements(_) => return Ok(false),
                Step::Command(command) => match objects::command_message(command, &mut set_id) {
                    Some(message) => BatchItem::Object(message),
                    None => return Ok(false),
                },
            });
        }
        let Some((removed, added, next)) = &resealed else {
            let applied = socket.commit_items(&items)?;
            if applied {
                self.follow(diff, new);
            }
            return Ok(applied);
        };
        let changes = items.len();
        items.extend([BatchItem::Elements(removed), BatchItem::Elements(added)]);
        match socket.commit_items(&items) {
            Ok(true) => {
                debug_assert_eq!(next, &seal::SealDigest::of(new, &self.opts));
                let mut journal = self.journal();
                journal.digest = Some(next.clone());
                journal.seal = added.elems.first().and_then(seal_bytes);
                Ok(true)
            }
            // The seal element is not where we left it (deleted by someone, or the
            // set): the change goes without it, and the table is sealed when quiet.
            Err(err) => {
                debug!(%err, "the batch with the table's seal failed; sending it without");
                self.journal().seal = None;
                items.truncate(changes);
                let applied = socket.commit_items(&items)?;
                if applied {
                    self.follow(diff, new);
                }
                Ok(applied)
            }
            Ok(false) => Ok(false),
        }
    }

    /// Replaces the table's seal with `digest` and the generation after this batch,
    /// if the namespace's generation is still `generation`; `Ok(false)` when it is
    /// not (someone committed meanwhile).
    fn write_seal(
        &self,
        socket: &ElementSocket,
        digest: &seal::SealDigest,
        generation: u32,
    ) -> Result<bool, NftError> {
        let old = socket.set_keys(seal::DIGEST_SET)?;
        let next = generation.wrapping_add(1).max(1);
        let mut removed = seal_change(Verb::Delete, std::net::Ipv6Addr::UNSPECIFIED);
        removed.elems = old
            .iter()
            .flatten()
            .filter_map(|k| seal_bytes_of(k))
            .map(|k| seal_elem(k.into()))
            .collect();
        let added = seal_change(Verb::Add, seal::seal_key(&digest.digest(), next));
        let mut items = Vec::new();
        let mut set_id = 0;
        if old.is_none() {
            let create = expr::add_set(seal::DIGEST_SET, &["ipv6_addr"], None);
            match objects::command_message(&create, &mut set_id) {
                Some(message) => items.push(BatchItem::Object(message)),
                None => return Ok(false),
            }
        }
        if !removed.elems.is_empty() {
            items.push(BatchItem::Elements(&removed));
        }
        items.push(BatchItem::Elements(&added));
        match socket.commit_items_at(&items, generation) {
            Ok(sealed) => {
                if sealed {
                    self.journal().seal = added.elems.first().and_then(seal_bytes);
                }
                Ok(sealed)
            }
            // Someone committed between the read of the generation and the batch.
            Err(NftError::Kernel { source, .. })
                if source.raw_os_error() == Some(nix::libc::ERESTART) =>
            {
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }

    /// Applies a transaction through nft and, when the table was sealed right before
    /// it, seals it again after it: nft's commit moves the generation by one, so a
    /// seal written only while the generation is the one after it (checked by the
    /// kernel) vouches for nothing but this change. Otherwise the table stays
    /// unsealed until it is read.
    fn run_resealed(
        &self,
        commands: &Value,
        action: &str,
        diff: &RulesetDiff,
        new: &Ruleset,
    ) -> Result<(), NftError> {
        let sealed_before = match &self.elements {
            Some(socket) => {
                let journal_generation = {
                    let journal = self.journal();
                    journal
                        .seal
                        .filter(|_| journal.digest.is_some())
                        .and_then(|key| seal::read_seal_key(&key))
                        .map(|(_, g)| g)
                };
                let now = socket.generation()?;
                journal_generation.filter(|g| *g == now)
            }
            None => None,
        };
        self.run_transaction(commands, action)?;
        self.follow(diff, new);
        let (Some(before), Some(socket)) = (sealed_before, &self.elements) else {
            return Ok(());
        };
        let after = before.wrapping_add(1).max(1);
        let now = socket.generation()?;
        if now == before {
            // Nothing was committed (an empty transaction): the seal still holds.
            return Ok(());
        }
        let digest = self.journal().digest.clone();
        let resealed = match digest {
            Some(digest) if now == after => self.write_seal(socket, &digest, after)?,
            _ => false,
        };
        if !resealed {
            debug!(
                "the table changed beside a change through nft: it stays unsealed until it is read"
            );
            self.journal().seal = None;
        }
        Ok(())
    }

    /// The seal's change for a batch that applies `diff`: the element to delete, the
    /// one to add (the digest of `new`, and the generation after the batch) and the
    /// digest; `None` while the journal does not know the table's digest and seal, or
    /// when anything was committed since the seal. Someone else's commit between the
    /// read of the generation and the batch makes the batch's generation one more
    /// than the seal says: the seal is then broken, and the next start reads the
    /// table, as it must.
    #[allow(clippy::type_complexity)]
    fn reseal(
        &self,
        socket: &ElementSocket,
        diff: &RulesetDiff,
        new: &Ruleset,
    ) -> Result<Option<(SetChange, SetChange, seal::SealDigest)>, NftError> {
        let (mut next, old) = {
            let journal = self.journal();
            match (&journal.digest, journal.seal) {
                (Some(digest), Some(old)) => (digest.clone(), old),
                _ => return Ok(None),
            }
        };
        // Only over a table that nobody changed since it was sealed: someone else's
        // commit (or one of ours through nft) moved the generation past the seal, and
        // what it changed is not in the digest.
        let now = socket.generation()?;
        if let Some((_, sealed)) = seal::read_seal_key(&old).filter(|(_, g)| *g != now) {
            debug!(
                sealed,
                now, "the table changed since its seal: it stays unsealed until it is read"
            );
            self.journal().seal = None;
            return Ok(None);
        }
        next.update(diff, new, &self.opts);
        let key = seal::seal_key(&next.digest(), now.wrapping_add(1).max(1));
        Ok(Some((
            seal_change(Verb::Delete, old.into()),
            seal_change(Verb::Add, key),
            next,
        )))
    }

    /// The journal's digest after `diff` took the table to `new` (the seal it carries
    /// is then out of date: the next start reads the table).
    fn follow(&self, diff: &RulesetDiff, new: &Ruleset) {
        if let Some(digest) = &mut self.journal().digest {
            digest.update(diff, new, &self.opts);
            debug_assert_eq!(digest, &seal::SealDigest::of(new, &self.opts));
        }
    }

    fn journal(&self) -> MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the base transaction waits for the next apply (the table is missing).
    fn base_pending(&self) -> bool {
        self.pending_base
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Applies one transaction with `nft -j -f -`; an empty one is not run.
    fn run_transaction(&self, commands: &Value, action: &str) -> Result<(), NftError> {
        let empty = commands
            .get("nftables")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if empty {
            return Ok(());
        }
        debug!(action, "applying an nft transaction");
        self.run(&["-j", "-f", "-"], Some(commands.to_string()), action)
            .map(drop)
    }

    fn run(&self, args: &[&str], stdin: Option<String>, action: &str) -> Result<String, NftError> {
        let (mut child, running) = self.spawn(args, stdin.is_some())?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A write error means nft exited early (or was stopped); its stderr and
            // status below say why.
            let _ = pipe.write_all(input.as_bytes());
        }
        let mut stdout = Vec::new();
        if let Some(mut pipe) = child.stdout.take() {
            // A read error ends the output early; the status below says what happened.
            let _ = pipe.read_to_end(&mut stdout);
        }
        self.finish(child, running, args, action)?;
        String::from_utf8(stdout).map_err(|err| NftError::Parse {
            action: action.to_owned(),
            detail: err.to_string(),
        })
    }

    /// Starts nft in a process group of its own, with a [`Deadline`] of
    /// [`Self::with_timeout`] on it and its stderr read on a thread of its own (so
    /// that nft never waits on a full stderr pipe while we read its stdout).
    fn spawn(&self, args: &[&str], with_stdin: bool) -> Result<(Child, Running), NftError> {
        let (program, prefix) = match self.command.split_first() {
            Some((program, prefix)) => (program.as_str(), prefix),
            None => ("nft", &[][..]),
        };
        let mut child = Command::new(program)
            .args(prefix)
            .args(args)
            .stdin(if with_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|source| self.spawn_error(source))?;
        crate::guard::note_own_process(child.id());
        let deadline = Deadline::start(&child, self.timeout);
        let mut pipe = child.stderr.take();
        let stderr = std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(pipe) = &mut pipe {
                // A read error ends the text early; the status says what happened.
                let _ = pipe.read_to_end(&mut text);
            }
            text
        });
        Ok((child, Running { deadline, stderr }))
    }

    fn spawn_error(&self, source: std::io::Error) -> NftError {
        NftError::Spawn {
            binary: PathBuf::from(self.command.first().map_or("nft", String::as_str)),
            source,
        }
    }

    /// Waits for nft to exit (its stdout must be read or taken already); an error
    /// when it failed or ran out of time.
    fn finish(
        &self,
        mut child: Child,
        running: Running,
        args: &[&str],
        action: &str,
    ) -> Result<(), NftError> {
        drop(child.stdout.take());
        let finished = running.deadline.finish(&mut child);
        let stderr = running.stderr.join().unwrap_or_default();
        let status = match finished {
            Ok(Ok(status)) => status,
            Ok(Err(())) => {
                return Err(NftError::TimedOut {
                    action: action.to_owned(),
                    command: [
                        self.command.as_slice(),
                        &args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>(),
                    ]
                    .concat()
                    .join(" "),
                    secs: self.timeout.as_secs_f64(),
                });
            }
            Err(source) => return Err(self.spawn_error(source)),
        };
        if !status.success() {
            let stderr = String::from_utf8_lossy(&stderr);
            return Err(NftError::Failed {
                action: action.to_owned(),
                status: status.to_string(),
                stderr: stderr.trim().replace('\n', " | "),
            });
        }
        Ok(())
    }

    /// The items of `nft -j -p list table FAMILY zonewarden`, parsed as nft prints
    /// them and without the seen sets' elements (see [`listing`]); `None` when the
    /// table does not exist.
    fn list_table(&self, family: &str) -> Result<Option<ParsedListing>, NftError> {
        let action = format!("list table {family} {TABLE}");
        let args = ["-j", "-p", "list", "table", family, TABLE];
        let (mut child, running) = self.spawn(&args, false)?;
        // Parsing takes the pipe and closes it when done, so that nft never waits on
        // a reader that stopped (after a parse error).
        let parsed = child.stdout.take().map(listing::parse_listing);
        match self.finish(child, running, &args, &action) {
            Err(NftError::Failed { stderr, .. })
                if stderr.contains("No such file or directory") =>
            {
                Ok(None)
            }
            Err(err) => Err(err),
            Ok(()) => match parsed {
                Some(Ok(items)) => Ok(Some(items)),
                Some(Err(err)) => Err(NftError::Parse {
                    action,
                    detail: err.to_string(),
                }),
                None => Ok(Some(ParsedListing::default())),
            },
        }
    }
}

impl RulesetDataplane for NftRulesetDataplane {
    fn ensure_base(&self, settings: &NodeSettings) -> Result<KernelView, NftError> {
        self.ensure_base_stale(settings, &BTreeSet::new())
    }

    fn confirms(&self, ruleset: &Ruleset) -> bool {
        let Some(socket) = &self.elements else {
            return false;
        };
        if self.base_pending() {
            return false;
        }
        match self.current_seal(socket) {
            Ok(Some(key)) => {
                let digest = seal::SealDigest::of(ruleset, &self.opts);
                let confirmed = seal::read_seal_key(&key)
                    .is_some_and(|(sealed, _)| sealed == digest.digest())
                    && self.groups_hold(&routed_groups(ruleset));
                if confirmed {
                    // An early read, if one ran, is not needed.
                    drop(self.prefetch_slot().take());
                    *self.journal() = Journal {
                        digest: Some(digest),
                        seal: Some(key),
                    };
                }
                confirmed
            }
            Ok(None) => false,
            Err(err) => {
                debug!(?err, "cannot read the table's seal; reading the table");
                false
            }
        }
    }

    fn seal(&self, ruleset: &Ruleset) -> Result<bool, NftError> {
        let Some(socket) = &self.elements else {
            return Ok(false);
        };
        if self.base_pending() {
            return Ok(false);
        }
        let generation = socket.generation()?;
        let digest = seal::SealDigest::of(ruleset, &self.opts);
        // The table holds `ruleset` (the caller says so), sealed or not.
        {
            let mut journal = self.journal();
            journal.digest = Some(digest.clone());
            journal.seal = None;
        }
        self.write_seal(socket, &digest, generation)
    }

    fn apply(&self, diff: &RulesetDiff, new: &Ruleset) -> Result<(), NftError> {
        let groups = self.set_groups(diff)?;
        let applied = self.apply_elements(diff, new);
        if applied.is_err() {
            self.put_groups_back(&groups);
        }
        applied
    }

    /// The kernel answers nftables requests: the generation read through the element
    /// socket (one netlink request, no process: Status probes on every call, and a
    /// monitor may call it many times a second), or without a socket
    /// `nft list chains inet` (nft runs and the kernel answers). Anything that lists
    /// rules or sets would make nft fetch every element of the table first, the seen
    /// sets' tens of thousands included (seconds during a flood).
    fn probe(&self) -> Result<(), NftError> {
        if let Some(socket) = &self.elements {
            return socket.generation().map(drop);
        }
        let action = format!("list chains {FAMILY}");
        self.run(&["-j", "list", "chains", FAMILY], None, &action)
            .map(drop)
    }

    fn read(&self) -> Result<KernelView, NftError> {
        match self.take_prefetched() {
            Some(view) => Ok(view),
            None => self.read_now(),
        }
    }

    fn remove_objects(&self, chains: &[String], sets: &[String]) -> Result<(), NftError> {
        let mut cmds: Vec<Value> = chains.iter().map(|c| expr::flush_chain(c)).collect();
        cmds.extend(chains.iter().map(|c| expr::delete_chain(c)));
        cmds.extend(sets.iter().map(|n| expr::delete_set(n)));
        self.run_transaction(
            &expr::transaction(cmds),
            "delete chains and sets of the table inet zonewarden that are not the enforcer's",
        )
    }

    fn groups_hold(&self, routed: &[(String, u32)]) -> bool {
        let groups = match self.link_groups() {
            Ok(groups) => groups,
            Err(err) => {
                debug!(%err, "cannot read the interface groups; taking them as changed");
                return false;
            }
        };
        // As a read reads it: an interface that is gone carries no packets.
        routed
            .iter()
            .all(|(ifname, zone_id)| groups.get(ifname).is_none_or(|group| group == zone_id))
    }

    fn ensure_base_stale(
        &self,
        settings: &NodeSettings,
        stale: &BTreeSet<String>,
    ) -> Result<KernelView, NftError> {
        // What the table holds is read now, and what follows is relative to that: the
        // journal's digest is made again when the table is sealed.
        self.journal().digest = None;
        let mut current = self.read()?;
        mark_stale(&mut current, stale);
        if base_is_complete(settings, &current, &self.opts) {
            return Ok(current);
        }
        let commands = base_commands(settings, &current, &self.opts);
        let unchanged = commands
            .get("nftables")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if unchanged {
            return Ok(current);
        }
        // The tables and sets now (they change no traffic), the base chains with every
        // zone and endpoint in the next apply, in one transaction: the table never has
        // base chains that dispatch to nothing (every pod open), nor, after an upgrade,
        // chains that dispatch on what the next apply only writes (interface groups,
        // maps of another name). (Sets are created before the rules that add to them, as
        // a running table has them: nft would mark a set created with such a rule
        // dynamic, and a later `add set` of it would fail.)
        let (chains, objects): (Vec<Value>, Vec<Value>) = commands
            .get("nftables")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .partition(is_chain_command);
        self.run_transaction(
            &expr::transaction(objects),
            "create the tables inet and bridge zonewarden and their sets",
        )?;
        *self.pending_base.lock().unwrap_or_else(|p| p.into_inner()) = Some(chains);
        // The view as the table now is: every base set (with its elements), and the base
        // chains as the next apply writes them.
        current.base_sets = global_set_names().into_iter().collect();
        current.port_protos_complete = true;
        for chain in ALL_BASE_CHAINS {
            let comments = base_chain_rules(chain, settings, &self.opts)
                .into_iter()
                .map(|r| r.comment)
                .collect();
            current.base_chains.insert(chain.to_owned(), comments);
        }
        current.ruleset.settings = *settings;
        Ok(current)
    }
}

/// A change of the seal's set: one element, `key`.
fn seal_change(verb: Verb, key: std::net::Ipv6Addr) -> SetChange {
    SetChange {
        verb,
        set: seal::DIGEST_SET.to_owned(),
        elems: vec![seal_elem(key)],
    }
}

fn seal_elem(key: std::net::Ipv6Addr) -> Elem {
    Elem {
        key: vec![Part::Addr(key.into())],
        data: None,
        comment: "the enforcer's seal: ruleset digest and nftables generation".to_owned(),
    }
}

/// The 16 bytes of a seal element's key.
fn seal_bytes(elem: &Elem) -> Option<[u8; 16]> {
    match elem.key.as_slice() {
        [Part::Addr(std::net::IpAddr::V6(addr))] => Some(addr.octets()),
        _ => None,
    }
}

fn seal_bytes_of(key: &[u8]) -> Option<[u8; 16]> {
    key.try_into().ok()
}

/// Whether a command of a transaction adds, flushes or fills a chain.
fn is_chain_command(command: &Value) -> bool {
    ["add", "flush"].iter().any(|verb| {
        command
            .get(verb)
            .is_some_and(|o| o.get("chain").is_some() || o.get("rule").is_some())
    })
}

/// Forgets what `view` says of the chains in `stale`: base chains read as missing
/// (rewritten), zones whose chains are named read as stale (rewritten by the diff).
fn mark_stale(view: &mut KernelView, stale: &BTreeSet<String>) {
    for chain in stale {
        view.base_chains.remove(chain);
        let id = chain
            .strip_prefix(ZONE_OUT_PREFIX)
            .or_else(|| chain.strip_prefix(ZONE_IN_PREFIX))
            .and_then(|id| id.parse::<u32>().ok());
        if let Some(zone) = id.and_then(|id| view.ruleset.zones.get_mut(&id)) {
            zone.zone = zonewarden_profiles::ZoneName::host();
        }
    }
}

/// An in-memory data plane for tests: it holds what a kernel would read back, and can
/// be told to fail its next calls.
#[derive(Debug, Default)]
pub struct MemoryDataplane {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    view: KernelView,
    fail_next: usize,
    applies: usize,
    apply_delay: std::time::Duration,
}

impl MemoryDataplane {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `n` calls of `ensure_base` or `apply` fail (and change nothing).
    pub fn fail_next(&self, n: usize) {
        self.lock().fail_next = n;
    }

    /// Every later `apply` takes `delay` (a slow kernel).
    pub fn slow_down(&self, delay: std::time::Duration) {
        self.lock().apply_delay = delay;
    }

    /// What the "kernel" holds.
    pub fn ruleset(&self) -> Ruleset {
        self.lock().view.ruleset.clone()
    }

    /// Changes what the "kernel" holds behind the registry's back (as an operator
    /// with `nft` could).
    pub fn tamper(&self, change: impl FnOnce(&mut Ruleset)) {
        change(&mut self.lock().view.ruleset);
    }

    /// How many `apply` calls changed the state.
    pub fn applies(&self) -> usize {
        self.lock().applies
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        // A test that panicked while holding the lock left consistent data behind.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn injected_failure(state: &mut MemoryState, action: &str) -> Result<(), NftError> {
        if state.fail_next == 0 {
            return Ok(());
        }
        state.fail_next -= 1;
        Err(NftError::Failed {
            action: action.to_owned(),
            status: "exit status: 1".to_owned(),
            stderr: "injected failure (MemoryDataplane)".to_owned(),
        })
    }
}

impl RulesetDataplane for MemoryDataplane {
    /// Never: the fake keeps no generation, so every start reads it.
    fn confirms(&self, _ruleset: &Ruleset) -> bool {
        false
    }

    fn seal(&self, _ruleset: &Ruleset) -> Result<bool, NftError> {
        Ok(false)
    }

    fn ensure_base(&self, settings: &NodeSettings) -> Result<KernelView, NftError> {
        let mut state = self.lock();
        Self::injected_failure(&mut state, "create the base chains")?;
        let opts = Options::default();
        for chain in ALL_BASE_CHAINS {
            let comments = base_chain_rules(chain, settings, &opts)
                .into_iter()
                .map(|r| r.comment)
                .collect();
            state.view.base_chains.insert(chain.to_owned(), comments);
        }
        state.view.ruleset.settings = *settings;
        Ok(state.view.clone())
    }

    fn apply(&self, _diff: &RulesetDiff, new: &Ruleset) -> Result<(), NftError> {
        let mut state = self.lock();
        Self::injected_failure(&mut state, "apply the ruleset")?;
        std::thread::sleep(state.apply_delay);
        state.view.ruleset = representable(new);
        state.applies += 1;
        Ok(())
    }

    fn read(&self) -> Result<KernelView, NftError> {
        Ok(self.lock().view.clone())
    }

    fn ensure_base_stale(
        &self,
        settings: &NodeSettings,
        stale: &BTreeSet<String>,
    ) -> Result<KernelView, NftError> {
        let mut view = self.ensure_base(settings)?;
        mark_stale(&mut view, stale);
        Ok(view)
    }

    fn remove_objects(&self, _chains: &[String], _sets: &[String]) -> Result<(), NftError> {
        Ok(())
    }
}
