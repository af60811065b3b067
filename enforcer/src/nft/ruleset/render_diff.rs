//! The one transaction that turns the kernel's table from one ruleset into another.
//!
//! Order matters inside it: a verdict-map element may only jump to a chain that
//! exists, and a chain may only be deleted once nothing jumps to it. So: base chains
//! (when a node setting changed), then the sets and chains of created and rewritten
//! zones, then element deletions, then element additions, then the chains and sets
//! of removed zones and the sets rewritten zones no longer use.

use serde_json::Value;
use zonewarden_profiles::diff::RulesetDiff;
use zonewarden_profiles::ruleset::Ruleset;

use super::Options;
use super::elements::{SetChange, element_changes};
use super::expr;
use super::names::*;
use super::render_base::{base_chain_rules, rewrite_chain};
use super::render_zone::{drop_cidr_sets, drop_sets, remove_zone, write_zone};

/// One step of the transaction: an nft JSON command, or the elements of one set.
#[derive(Debug, Clone)]
pub enum Step {
    Command(Value),
    Elements(SetChange),
}

/// The transaction from `old` to `new`, given `diff = RulesetDiff::between(old, new)`.
/// Empty (`{"nftables": []}`) when nothing the table holds changes. Expects the
/// table's global objects and base chains to exist ([`super::base_commands`]); a
/// changed node setting rewrites the base chains within this transaction.
pub fn diff_commands(diff: &RulesetDiff, new: &Ruleset, opts: &Options) -> Value {
    let cmds = diff_steps(diff, new, opts)
        .into_iter()
        .map(|step| match step {
            Step::Command(command) => command,
            Step::Elements(change) => change.to_json(),
        })
        .collect();
    expr::transaction(cmds)
}

/// The steps of [`diff_commands`], in order, with element changes kept as such (for
/// a netlink batch).
pub fn diff_steps(diff: &RulesetDiff, new: &Ruleset, opts: &Options) -> Vec<Step> {
    let mut cmds = Vec::new();
    if diff.settings_changed {
        for chain in BASE_CHAINS {
            cmds.extend(rewrite_chain(
                chain,
                &base_chain_rules(chain, &new.settings, opts),
            ));
        }
    }
    for zone in diff.created.iter().chain(&diff.rewritten) {
        cmds.extend(write_zone(zone, opts));
    }
    let mut steps: Vec<Step> = cmds.into_iter().map(Step::Command).collect();
    steps.extend(element_changes(diff, new).into_iter().map(Step::Elements));
    let mut cmds = Vec::new();
    for zone in &diff.removed {
        cmds.extend(remove_zone(zone));
    }
    for id in &diff.cidr_sets_dropped {
        cmds.extend(drop_cidr_sets(*id));
    }
    for (id, dropped) in &diff.sets_dropped {
        cmds.extend(drop_sets(*id, *dropped));
    }
    steps.extend(cmds.into_iter().map(Step::Command));
    steps
}
