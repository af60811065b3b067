//! `zwctl audit log` and `zwctl audit verify`: the enforcer's append-only,
//! hash-chained record of every change, and its check.
//!
//! The enforcer owns the file (root-only); both commands ask it over the
//! `zonewarden.v1.Audit` service, so zwctl never reads `audit.log` itself.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;
use tonic::transport::Channel;
use zonewarden_proto::v1;
use zonewarden_proto::v1::audit_client::AuditClient;

use crate::CommandOutput;
use crate::cli::GlobalArgs;
use crate::client::{rpc_error, unreachable_error};
use crate::render::{self, RenderContext, TableRow};
use crate::view::named_word;

pub const EXAMPLES: &str = "\
Every approval, rejection, removal, import, mode change, quarantine and endpoint add
or remove is appended to <state-dir>/audit.log (default /var/lib/zonewarden/audit.log)
before the request returns: who (the unix user behind the request), when, what, the
zone's profile version before and after, and the request's comment. Each line holds
the SHA-256 of the line before it, so an edited, dropped or reordered entry shows.

Examples:
  # Who changed what, oldest first
  zwctl audit log

  # One zone's changes over the last week
  zwctl audit log --zone shop/db --since 7d

  # Check the chain (exit status 1 when anything was edited, dropped or reordered)
  zwctl audit verify";

const LOG_EXAMPLES: &str = "\
Columns:
  SEQ       the entry's number in the log
  AGE       how long ago the change was made
  WHO       the unix user behind the request (root for the CNI plugin); in the
            cluster-wide trail, followed by the node that made the change
  ACTION    approve, reject, remove, import, mode, quarantine, unquarantine,
            endpoint-add, endpoint-del; reverted (the kernel refused the change
            of the entry before: it never took effect); table-restored (someone
            else changed or removed the enforcer's nftables table and the enforcer
            restored it); or chain-restart (the enforcer found the log corrupt and
            continued on a new chain segment)
  TARGET    the edges, mode, zone or container id acted on
  VERSIONS  the zone's profile version before -> after
  REASON    the request's --comment

In cluster mode (--store etcd) the log is the cluster-wide trail: every node's
policy changes (approvals, rejections, imports, modes, quarantines, deletions) in
one order, hash-chained. --node-log shows this node's own log instead, with its
endpoint changes.

Examples:
  # The whole log
  zwctl audit log

  # The last 20 changes of one zone
  zwctl audit log --zone shop/frontend --limit 20

  # Today's changes, as JSON (with each entry's hashes and line)
  zwctl audit log --since 24h -o json | jq -r '.items[] | \"\\(.who) \\(.action) \\(.zone)\"'";

const VERIFY_EXAMPLES: &str = "\
Checks every line of the log: that it is what the enforcer wrote (its hash), that it
follows the entry before it (the chain), and that the log ends where the enforcer last
wrote. Record the chain head it prints somewhere else (a ticket, a log collector): a
log rewritten from scratch is only caught by comparing heads.

Exit status: 0 when the log is intact, 1 when an entry was edited, dropped,
reordered or truncated (each is named with its line and seq) or cannot be checked.

In cluster mode (--store etcd) it checks the cluster-wide trail in etcd, and that
it ends at the head etcd records; --node-log checks this node's own log.

Examples:
  # Check the log
  zwctl audit verify

  # The findings for a script
  zwctl audit verify -o json | jq '.problems[]'";

/// The `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List the audit log's entries, oldest first.
    #[command(after_help = LOG_EXAMPLES)]
    Log(LogArgs),

    /// Check that no entry of the audit log was edited, dropped or reordered.
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Only entries about this zone (e.g. shop/db).
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,

    /// Only entries newer than this: 90s, 15m, 2h, 7d, 1w, or combined (1h30m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<Duration>,

    /// Only the newest N entries (after --zone and --since).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,

    /// In cluster mode (--store etcd): this node's own log (with its endpoint
    /// changes) instead of the cluster-wide trail of policy changes.
    #[arg(long)]
    pub node_log: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// In cluster mode (--store etcd): verify this node's own log instead of the
    /// cluster-wide trail of policy changes.
    #[arg(long)]
    pub node_log: bool,
}

/// `90s`, `15m`, `2h`, `7d`, `1w`, or several of them (`1h30m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is no duration: use e.g. 90s, 15m, 2h, 7d or 1h30m");
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// One entry (`AuditEntry`), as JSON and YAML print it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntryView {
    pub seq: u64,
    pub at_unix_ms: i64,
    pub who: String,
    pub action: String,
    pub zone: String,
    pub target: String,
    pub detail: String,
    pub version_before: Option<u64>,
    pub version_after: Option<u64>,
    pub reason: String,
    pub prev: String,
    pub hash: String,
    pub line: u64,
    /// The node that made the change (the cluster-wide trail only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
}

impl From<v1::AuditEntry> for AuditEntryView {
    fn from(e: v1::AuditEntry) -> Self {
        Self {
            seq: e.seq,
            at_unix_ms: e.at_unix_ms,
            who: e.who,
            action: named_word(
                e.action,
                |a: v1::AuditAction| a.as_str_name(),
                "AUDIT_ACTION_",
            ),
            zone: e.zone,
            target: e.target,
            detail: e.detail,
            version_before: e.version_before,
            version_after: e.version_after,
            reason: e.reason,
            prev: e.prev,
            hash: e.hash,
            line: e.line,
            node: e.node,
        }
    }
}

/// `3→4`, or just `4` when the action left the version alone.
fn versions(before: Option<u64>, after: Option<u64>) -> String {
    match (before, after) {
        (Some(b), Some(a)) if b == a => a.to_string(),
        (Some(b), Some(a)) => format!("{b}→{a}"),
        (None, Some(a)) => a.to_string(),
        (Some(b), None) => b.to_string(),
        (None, None) => String::new(),
    }
}

/// Long edge lists are cut in the table (not with `-o wide`); JSON and YAML have them whole.
fn cut(text: &str, max: usize) -> String {
    if render::is_wide() || text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}…", render::truncate_chars(text, max - 1))
    }
}

impl TableRow for AuditEntryView {
    const HEADERS: &'static [&'static str] = &[
        "SEQ", "AGE", "WHO", "ACTION", "ZONE", "TARGET", "VERSIONS", "DETAIL", "REASON",
    ];
    const WIDE_ONLY: &'static [&'static str] = &["DETAIL"];

    fn cells(&self, ctx: &RenderContext) -> Vec<String> {
        vec![
            self.seq.to_string(),
            render::format_age(self.at_unix_ms, ctx.now_unix_ms),
            if self.node.is_empty() {
                self.who.clone()
            } else {
                format!("{} ({})", self.who, self.node)
            },
            self.action.clone(),
            self.zone.clone(),
            cut(&self.target, 48),
            versions(self.version_before, self.version_after),
            self.detail.clone(),
            cut(&self.reason, 48),
        ]
    }
}

/// One finding of `verify` (`AuditProblem`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditProblemView {
    pub line: u64,
    pub seq: u64,
    pub kind: String,
    pub message: String,
}

/// The outcome of `verify` (`VerifyAuditResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyView {
    pub intact: bool,
    pub entries: u64,
    pub lines: u64,
    pub head_seq: u64,
    pub head_hash: String,
    pub path: String,
    pub problems: Vec<AuditProblemView>,
}

impl From<v1::VerifyAuditResponse> for VerifyView {
    fn from(r: v1::VerifyAuditResponse) -> Self {
        Self {
            intact: r.intact,
            entries: r.entries,
            lines: r.lines,
            head_seq: r.head_seq,
            head_hash: r.head_hash,
            path: r.path,
            problems: r
                .problems
                .into_iter()
                .map(|p| AuditProblemView {
                    line: p.line,
                    seq: p.seq,
                    kind: named_word(
                        p.kind,
                        |k: v1::AuditProblemKind| k.as_str_name(),
                        "AUDIT_PROBLEM_KIND_",
                    ),
                    message: p.message,
                })
                .collect(),
        }
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// `audit log intact: 7 entries, chain head 3f2a9c1e0b7d`, or the findings.
fn verify_text(v: &VerifyView) -> String {
    if v.intact {
        let head = if v.head_hash.is_empty() {
            "none (the log is empty)".to_owned()
        } else {
            short(&v.head_hash).to_owned()
        };
        return format!(
            "audit log intact: {} entries, chain head {head}\n",
            v.entries
        );
    }
    let mut text = format!(
        "audit log NOT intact: {} problem(s) in {} line(s) of {}\n",
        v.problems.len(),
        v.lines,
        v.path
    );
    for p in &v.problems {
        text.push_str(&format!("  {}: {}\n", p.kind, p.message));
    }
    text
}

/// The failure `verify` exits 1 with: the first finding, and how many more.
fn verify_failure(v: &VerifyView) -> Option<anyhow::Error> {
    let first = v.problems.first()?;
    let more = match v.problems.len() - 1 {
        0 => String::new(),
        n => format!(" (and {n} more problem(s))"),
    };
    Some(anyhow::anyhow!(
        "the audit log {} is not intact: {}{more}",
        v.path,
        first.message
    ))
}

async fn connect(global: &GlobalArgs) -> anyhow::Result<AuditClient<Channel>> {
    let channel = zonewarden_proto::connect(&global.socket, global.timeout())
        .await
        .map_err(|err| {
            let why = std::os::unix::net::UnixStream::connect(&global.socket)
                .err()
                .unwrap_or_else(|| std::io::Error::other(err.cause));
            unreachable_error(&global.socket, global.timeout(), &why)
        })?;
    Ok(AuditClient::new(channel))
}

/// Runs one `audit` command: what to print, and the failure to exit 1 with.
pub async fn run(command: &AuditCommand, global: &GlobalArgs) -> anyhow::Result<CommandOutput> {
    let mut client = connect(global).await?;
    let ctx = RenderContext::now();
    match command {
        AuditCommand::Log(args) => {
            let request = v1::ListAuditRequest {
                zone: args.zone.clone().unwrap_or_default(),
                since_unix_ms: args.since.map_or(0, |d| {
                    ctx.now_unix_ms
                        .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                }),
                limit: args.limit.unwrap_or(0),
                node_log: args.node_log,
            };
            let response = client
                .list(request)
                .await
                .map_err(|status| rpc_error(&global.socket, "Audit/List", &status))?
                .into_inner();
            if response.unreadable_lines > 0 {
                eprintln!(
                    "warning: {} line(s) of {} are no readable entry; run zwctl audit verify",
                    response.unreadable_lines, response.path
                );
            }
            let entries: Vec<AuditEntryView> = response
                .entries
                .into_iter()
                .map(AuditEntryView::from)
                .collect();
            if entries.is_empty() && global.output.is_table() {
                eprintln!("No audit entries found.");
            }
            render::render_list("AuditEntryList", &entries, global.output, &ctx)
                .map(CommandOutput::from)
        }
        AuditCommand::Verify(VerifyArgs { node_log }) => {
            let response = client
                .verify(v1::VerifyAuditRequest {
                    node_log: *node_log,
                })
                .await
                .map_err(|status| rpc_error(&global.socket, "Audit/Verify", &status))?
                .into_inner();
            let view = VerifyView::from(response);
            Ok(CommandOutput {
                stdout: render::render_text_or_object(|| verify_text(&view), &view, global.output)?,
                failure: verify_failure(&view),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, OutputFormat};
    use clap::Parser;

    fn parse(args: &[&str]) -> AuditCommand {
        match Cli::try_parse_from(args).unwrap().command {
            Command::Audit(command) => command,
            other => panic!("expected audit, got {other:?}"),
        }
    }

    #[test]
    fn durations_parse_like_kubectl_and_reject_nonsense() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "10", "h", "5y", "0s", "-1h", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn log_takes_zone_since_and_limit() {
        match parse(&[
            "zwctl", "audit", "log", "--zone", "shop/db", "--since", "2h", "--limit", "5",
        ]) {
            AuditCommand::Log(args) => {
                assert_eq!(args.zone.as_deref(), Some("shop/db"));
                assert_eq!(args.since, Some(Duration::from_secs(7200)));
                assert_eq!(args.limit, Some(5));
            }
            other => panic!("expected audit log, got {other:?}"),
        }
        assert!(matches!(
            parse(&["zwctl", "audit", "verify"]),
            AuditCommand::Verify(_)
        ));
        assert!(Cli::try_parse_from(["zwctl", "audit", "log", "--since", "soon"]).is_err());
        assert!(Cli::try_parse_from(["zwctl", "audit", "log", "--limit", "0"]).is_err());
    }

    fn entry() -> AuditEntryView {
        AuditEntryView::from(v1::AuditEntry {
            seq: 7,
            at_unix_ms: 1_000_000 - 120_000,
            who: "alice".into(),
            action: v1::AuditAction::Mode.into(),
            zone: "shop/db".into(),
            target: "enforce".into(),
            detail: "mode monitor -> enforce".into(),
            version_before: Some(3),
            version_after: Some(4),
            reason: "CHG-1234".into(),
            prev: "0".repeat(64),
            hash: "a".repeat(64),
            line: 7,
            node: String::new(),
        })
    }

    #[test]
    fn the_table_shows_versions_as_before_to_after() {
        let ctx = RenderContext {
            now_unix_ms: 1_000_000,
        };
        let text =
            render::render_list("AuditEntryList", &[entry()], OutputFormat::Table, &ctx).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "SEQ", "AGE", "WHO", "ACTION", "ZONE", "TARGET", "VERSIONS", "REASON"
            ]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "7", "2m", "alice", "mode", "shop/db", "enforce", "3→4", "CHG-1234"
            ]
        );
        assert_eq!(versions(Some(4), Some(4)), "4");
        assert_eq!(versions(None, None), "");
    }

    #[test]
    fn json_is_a_list_with_hashes_and_lines() {
        let ctx = RenderContext { now_unix_ms: 0 };
        let text =
            render::render_list("AuditEntryList", &[entry()], OutputFormat::Json, &ctx).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["kind"], "AuditEntryList");
        let item = &v["items"][0];
        assert_eq!(
            (&item["seq"], &item["versionBefore"], &item["line"]),
            (
                &serde_json::json!(7),
                &serde_json::json!(3),
                &serde_json::json!(7)
            )
        );
        assert_eq!(item["hash"], "a".repeat(64));
        let yaml =
            render::render_list("AuditEntryList", &[entry()], OutputFormat::Yaml, &ctx).unwrap();
        assert!(yaml.contains("kind: AuditEntryList"), "{yaml}");
    }

    /// Scripts read these words; they are audit.log's own.
    #[test]
    fn actions_and_problems_print_the_words_of_the_log() {
        for (action, word) in [
            (v1::AuditAction::Approve, "approve"),
            (v1::AuditAction::Unquarantine, "unquarantine"),
            (v1::AuditAction::EndpointAdd, "endpoint-add"),
            (v1::AuditAction::EndpointDel, "endpoint-del"),
            (v1::AuditAction::TableRestored, "table-restored"),
            (v1::AuditAction::StoreAccepted, "store-accepted"),
            (v1::AuditAction::StoreMigrated, "store-migrated"),
            (v1::AuditAction::ChainRestart, "chain-restart"),
        ] {
            let view = AuditEntryView::from(v1::AuditEntry {
                action: action.into(),
                ..Default::default()
            });
            let json = serde_json::to_value(&view).unwrap();
            assert_eq!(json["action"], word);
        }
        let verified = VerifyView::from(v1::VerifyAuditResponse {
            problems: vec![
                v1::AuditProblem {
                    kind: v1::AuditProblemKind::Edited.into(),
                    ..Default::default()
                },
                v1::AuditProblem {
                    kind: v1::AuditProblemKind::Unwritten.into(),
                    ..Default::default()
                },
                v1::AuditProblem {
                    kind: 99,
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        let kinds: Vec<&str> = verified.problems.iter().map(|p| p.kind.as_str()).collect();
        assert_eq!(kinds, ["edited", "unwritten", "unknown (99)"]);
    }

    #[test]
    fn verify_says_intact_with_the_head_or_names_each_problem() {
        let intact = VerifyView {
            intact: true,
            entries: 7,
            lines: 7,
            head_seq: 7,
            head_hash: "3f2a9c1e0b7d4e8f".into(),
            path: "/var/lib/zonewarden/audit.log".into(),
            problems: vec![],
        };
        assert_eq!(
            verify_text(&intact),
            "audit log intact: 7 entries, chain head 3f2a9c1e0b7d\n"
        );
        assert!(verify_failure(&intact).is_none());
        let broken = VerifyView {
            intact: false,
            problems: vec![AuditProblemView {
                line: 3,
                seq: 3,
                kind: "edited".into(),
                message: "entry seq 3 (line 3) was edited: its fields hash to 1, not to 2".into(),
            }],
            ..intact
        };
        let text = verify_text(&broken);
        assert!(
            text.starts_with("audit log NOT intact: 1 problem(s)"),
            "{text}"
        );
        assert!(
            text.contains("edited: entry seq 3 (line 3) was edited"),
            "{text}"
        );
        let failure = verify_failure(&broken).unwrap().to_string();
        assert!(
            failure.contains("entry seq 3 (line 3) was edited"),
            "{failure}"
        );
    }
}
