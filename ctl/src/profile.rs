//! `zwctl profile diff|approve|reject|remove|delete`: review a zone's learned edges
//! and decide which of them its profile approves; delete the profile of a zone that
//! is gone.
//!
//! Every change answers with the zone's new profile: a one-line summary for
//! people ([`change_summary`]), the `ProfileChangeResponse` for scripts.

use clap::{Args, Subcommand};
use zonewarden_proto::v1;

use crate::cli::{CreateArg, GlobalArgs};
use crate::client::Enforcer;
use crate::edge;
use crate::get;
use crate::render::{self, RenderContext};
use crate::view::{EdgeView, ProfileChangeResultView, ProfileDeleteView, ProfileDiffView};

pub const EXAMPLES: &str = "\
A zone's profile lists the edges (SRC->DST:PORT/PROTO, e.g. shop/frontend->shop/api:8080/tcp,
or SRC->DST:icmp) it approves. One approval allows an edge at both ends. A zone moves
through three modes:
  learn    everything passes; the enforcer records every edge it sees
  monitor  everything passes; edges nobody approved are reported as violations
  enforce  connections over edges nobody approved are dropped (and reported)

Examples:
  # The workflow for one zone.
  # 1. Let the zone run in learn mode for a while, then review what it did
  zwctl get profiles shop/frontend          # NEW/WINDOW \"0 in 1h\": no new edges lately
  zwctl profile diff shop/frontend

  # 2. Approve what it learned (all, or edge by edge), saying why
  zwctl profile approve shop/frontend --all --comment \"reviewed with the shop team\"
  zwctl profile approve shop/frontend --edge 'shop/frontend->shop/api:8080/tcp'

  # 3. Reject learned edges that should not be allowed (remembered: seen again, they
  #    are listed as rejected and never approved by --all)
  zwctl profile reject shop/frontend --edge 'shop/frontend->world:6667/tcp'

  # 4. Watch for violations without dropping anything, then enforce
  zwctl mode set shop/frontend monitor
  zwctl get violations --zone shop/frontend --verdict violation
  zwctl mode set shop/frontend enforce

  # Withdraw an approval later
  zwctl profile remove shop/frontend --edge 'shop/frontend->shop/api:8080/tcp'

Quote edges in the shell: '>' would otherwise redirect output.";

const DIFF_EXAMPLES: &str = "\
Sections:
  Learned, not approved  edges seen in traffic that no profile approves or rejects:
                         what `zwctl profile approve ZONE --all` would add
  Rejected, seen again   edges an operator rejected that traffic used again since:
                         approved only when named with --edge
  Approved and seen      approved edges that traffic still uses
  Approved, not seen     approved edges without (recent) traffic: candidates for
                         `zwctl profile remove`

Columns:
  EDGE         the edge
  APPROVED-IN  the zones whose profiles approve it
  COUNT        how many new connections were seen (<none>: never seen)
  FIRST-SEEN   how long ago the first connection was seen
  LAST-SEEN    how long ago the last connection was seen
  NODES        the nodes that saw it
  SAMPLE       one connection: source address:port -> destination address:port/protocol

Examples:
  # What would approving shop/frontend's profile change?
  zwctl profile diff shop/frontend

  # The edges still to review, one per line, for scripts
  zwctl profile diff shop/frontend -o json | jq -r '.unapproved[].edge'";

const APPROVE_EXAMPLES: &str = "\
Examples:
  # Approve every edge shop/frontend learned and nobody approved yet
  zwctl profile approve shop/frontend --all --comment \"CHG-1234: reviewed\"

  # Approve two edges only (quote them: '>' is a shell redirection)
  zwctl profile approve shop/frontend \\
      --edge 'shop/frontend->shop/api:8080/tcp' --edge 'shop/frontend->kube-system/coredns:53/udp'

  # Approve what the diff lists, then check the new profile
  zwctl profile diff shop/frontend
  zwctl profile approve shop/frontend --all -o yaml

  # Approve into a zone whose pods are not deployed yet (no endpoints, no profile:
  # without --create it is refused as a likely typo, naming the nearest zone)
  zwctl profile approve shop/payments --create --edge 'shop/payments->shop/db:5432/tcp'";

const REJECT_EXAMPLES: &str = "\
Rejecting records the decision in the zone's profile (a new version, in the audit log
and in exports) and forgets the edge's learned evidence. If the traffic is seen again,
`zwctl profile diff` lists the edge under \"Rejected, seen again\" and
`zwctl profile approve ZONE --all` leaves it out; approving it by name with --edge
lifts the rejection, and so does `zwctl profile remove ZONE --edge EDGE`. An approved
edge is removed first, then rejected.

Examples:
  # Reject one learned edge (e.g. a test connection during learning)
  zwctl profile reject shop/frontend --edge 'shop/frontend->world:22/tcp'

  # Reject everything shop/frontend learned and nobody approved
  zwctl profile reject shop/frontend --all --comment \"only the reviewed edges stay\"";

const REMOVE_EXAMPLES: &str = "\
Removing withdraws approvals (and forgets rejections of the edges named): in enforce
mode, connections over the edge are then dropped unless the other end's profile
approves it.

Examples:
  # Withdraw one approval
  zwctl profile remove shop/frontend --edge 'shop/frontend->shop/legacy:8080/tcp' \\
      --comment \"legacy API retired\"

  # Withdraw every approval of the zone (start over)
  zwctl profile remove shop/frontend --all";

const DELETE_EXAMPLES: &str = "\
Deleting removes a zone's profile (mode, approved and rejected edges, history) and
what this node learned of the zone: the zone is then gone from get zones, get
profiles, zones map and profile export. Its history stays in the audit log
(action profile-delete). Refused (exit status 1, nothing changed):
  - a zone that does not exist (the nearest existing zone is named: a typo)
  - a zone that still has endpoints, on this node or (cluster store) any other
  - built-in zones (host, world) and CIDR zones of --cidr-zone
  - a zone whose edges other zones' profiles approve or reject, unless --force:
    then those edges are removed from those profiles in the same change (each gets
    a new version and a remove entry in the audit log)

Examples:
  # A workload was retired: its pods are gone, its profile goes too
  zwctl profile delete shop/legacy --comment \"retired in CHG-1234\"

  # shop/frontend still approves shop/frontend->shop/legacy:8080/tcp: remove it too
  zwctl profile delete shop/legacy --force

  # A zone made by mistake (mode set ... --create with a typo)
  zwctl profile delete shop/apii";

/// The `profile` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Show a zone's learned edges against its approved ones.
    #[command(after_help = DIFF_EXAMPLES)]
    Diff(DiffArgs),

    /// Approve learned edges into a zone's profile (all, or the ones named).
    #[command(
        after_help = APPROVE_EXAMPLES,
        mut_arg("all", |arg| arg.help("Approve every learned edge of the zone that no profile approves yet"))
    )]
    Approve(ProfileEdgeArgs),

    /// Reject edges of a zone (all learned, unapproved ones, or the ones named).
    #[command(
        after_help = REJECT_EXAMPLES,
        mut_arg("all", |arg| arg.help("Reject every learned edge of the zone that no profile approves"))
    )]
    Reject(ProfileEdgeArgs),

    /// Remove approved edges from a zone's profile (all, or the ones named).
    #[command(
        after_help = REMOVE_EXAMPLES,
        mut_arg("all", |arg| arg.help("Remove every edge the zone's profile approves"))
    )]
    Remove(ProfileEdgeArgs),

    /// Delete a zone's profile (a zone without endpoints); --force also removes its
    /// edges from other zones' profiles.
    #[command(after_help = DELETE_EXAMPLES)]
    Delete(DeleteArgs),

    /// Export profiles as YAML (for git) or as Kubernetes NetworkPolicies.
    #[command(after_help = crate::profile_io::EXPORT_EXAMPLES)]
    Export(crate::profile_io::ExportArgs),

    /// Import exported profiles: validated first, then applied to every zone at once.
    #[command(after_help = crate::profile_io::IMPORT_EXAMPLES)]
    Import(crate::profile_io::ImportArgs),
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The zone (e.g. shop/frontend).
    #[arg(value_name = "ZONE")]
    pub zone: String,

    /// Compare with a profile exported elsewhere (zwctl profile export, e.g. on
    /// staging): what this cluster observed that FILE lacks, what FILE approves that
    /// was never observed here, and the mode; exit status 1 when anything differs.
    #[arg(long, value_name = "FILE", long_help = crate::profile_against::AGAINST_HELP)]
    pub against: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The zone whose profile is deleted (e.g. shop/legacy).
    #[arg(value_name = "ZONE")]
    pub zone: String,

    /// Also remove the zone's edges from other zones' profiles that approve or reject
    /// them (otherwise such a zone is refused, naming them).
    #[arg(long)]
    pub force: bool,

    /// Why: recorded in the audit log (and in the history of profiles --force changes).
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
}

/// Which edges of which zone a change applies to: exactly one of `--edge` and `--all`.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("selection")
        .args(["edges", "all"])
        .required(true)
        .multiple(false)
))]
pub struct EdgeChangeArgs {
    /// The zone whose profile changes (e.g. shop/frontend).
    #[arg(value_name = "ZONE")]
    pub zone: String,

    /// An edge, SRC->DST:PORT/PROTO or SRC->DST:icmp (repeat for more).
    #[arg(long = "edge", value_name = "EDGE", value_parser = edge::parse_edge)]
    pub edges: Vec<String>,

    /// Every edge the command applies to.
    #[arg(long)]
    pub all: bool,

    /// Why: recorded in the profile's history and the audit log.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
}

impl EdgeChangeArgs {
    fn request(&self, create: CreateArg) -> v1::EdgesRequest {
        v1::EdgesRequest {
            zone: self.zone.clone(),
            edges: self.edges.clone(),
            all: self.all,
            comment: self.comment.clone().unwrap_or_default(),
            create: create.create,
        }
    }
}

/// A change of a zone's profile (approve, reject, remove): its edges, and `--create`.
#[derive(Debug, Args)]
pub struct ProfileEdgeArgs {
    #[command(flatten)]
    pub selection: EdgeChangeArgs,

    #[command(flatten)]
    pub create: CreateArg,
}

/// Runs one `profile` command and returns what to print on stdout.
pub async fn run(command: &ProfileCommand, global: &GlobalArgs) -> anyhow::Result<String> {
    match command {
        ProfileCommand::Export(args) => return crate::profile_io::export(args, global).await,
        ProfileCommand::Import(args) => return crate::profile_io::import(args, global).await,
        _ => {}
    }
    let mut enforcer = Enforcer::connect(global).await?;
    match command {
        ProfileCommand::Diff(args) => {
            let request = v1::DiffProfileRequest {
                zone: args.zone.clone(),
            };
            let diff = ProfileDiffView::new(&args.zone, enforcer.diff_profile(request).await?);
            let ctx = RenderContext::now();
            render::render_text_or_object(|| diff_text(&diff, &ctx), &diff, global.output)
        }
        ProfileCommand::Approve(ProfileEdgeArgs {
            selection: args,
            create,
        }) => {
            let request = v1::ApproveEdgesRequest {
                zone: args.zone.clone(),
                edges: args.edges.clone(),
                all: args.all,
                comment: args.comment.clone().unwrap_or_default(),
                create: create.create,
            };
            let result = ProfileChangeResultView::from(enforcer.approve_edges(request).await?);
            render_change(&result, &args.zone, "approved", "", global)
        }
        ProfileCommand::Reject(ProfileEdgeArgs {
            selection: args,
            create,
        }) => {
            let request = args.request(*create);
            let result = ProfileChangeResultView::from(enforcer.reject_edges(request).await?);
            render_change(&result, &args.zone, "rejected", "", global)
        }
        ProfileCommand::Remove(ProfileEdgeArgs {
            selection: args,
            create,
        }) => {
            let request = args.request(*create);
            let result = ProfileChangeResultView::from(enforcer.remove_edges(request).await?);
            render_change(&result, &args.zone, "removed", " approved", global)
        }
        ProfileCommand::Delete(args) => {
            let request = v1::DeleteProfileRequest {
                zone: args.zone.clone(),
                force: args.force,
                comment: args.comment.clone().unwrap_or_default(),
            };
            let result = ProfileDeleteView::from(enforcer.delete_profile(request).await?);
            render::render_text_or_object(|| delete_summary(&result), &result, global.output)
        }
        ProfileCommand::Export(_) | ProfileCommand::Import(_) => {
            unreachable!("handled above")
        }
    }
}

fn render_change(
    result: &ProfileChangeResultView,
    zone: &str,
    verb: &str,
    which: &str,
    global: &GlobalArgs,
) -> anyhow::Result<String> {
    render::render_text_or_object(
        || {
            change_summary(
                result,
                zone,
                &format!("{verb} {}{which} edge(s)", result.changed),
            )
        },
        result,
        global.output,
    )
}

/// `zone shop/legacy: profile deleted (was version 4)`, then one line per other
/// zone that --force changed.
fn delete_summary(result: &ProfileDeleteView) -> String {
    let mut out = format!(
        "zone {}: profile deleted (was version {}), {} learned edge(s) forgotten\n",
        result.zone, result.version, result.forgotten_edges
    );
    for profile in &result.changed_profiles {
        let edges: Vec<&str> = result
            .removed_edges
            .iter()
            .filter(|e| {
                e.parse::<zonewarden_profiles::Edge>()
                    .is_ok_and(|e| e.src.as_str() == profile.zone || e.dst.as_str() == profile.zone)
            })
            .map(String::as_str)
            .collect();
        out.push_str(&format!(
            "zone {}: removed {}, profile version {}\n",
            profile.zone,
            if edges.is_empty() {
                "edges of the deleted zone".to_owned()
            } else {
                edges.join(", ")
            },
            profile.version
        ));
    }
    out
}

/// `zone shop/frontend: approved 3 edge(s), profile version 4`, one line.
/// The zone is the one the enforcer answered for, else the one asked for.
pub fn change_summary(result: &ProfileChangeResultView, zone: &str, what: &str) -> String {
    format!(
        "zone {}: {what}, profile version {}\n",
        zone_name(result, zone),
        result.profile.version
    )
}

/// The zone the enforcer answered for, else the one asked for.
pub fn zone_name<'a>(result: &'a ProfileChangeResultView, asked: &'a str) -> &'a str {
    if result.profile.zone.is_empty() {
        asked
    } else {
        &result.profile.zone
    }
}

/// The four sections of `profile diff`, each titled, as aligned tables.
fn diff_text(diff: &ProfileDiffView, ctx: &RenderContext) -> String {
    let sections = [
        (
            format!(
                "Learned, not approved (approve with zwctl profile approve {} --all, or --edge EDGE)",
                diff.zone
            ),
            &diff.unapproved,
            false,
        ),
        (
            format!(
                "Rejected, seen again (approve only by name: zwctl profile approve {} --edge EDGE)",
                diff.zone
            ),
            &diff.rejected_seen,
            false,
        ),
        ("Approved and seen".to_owned(), &diff.approved_seen, true),
        ("Approved, not seen".to_owned(), &diff.approved_unseen, true),
    ];
    let mut out = String::new();
    for (index, (title, edges, with_approved_in)) in sections.into_iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{title}: {}\n", edges.len()));
        if edges.is_empty() {
            out.push_str(&format!("  {}\n", render::NONE));
            continue;
        }
        for line in edges_table(edges, with_approved_in, ctx).lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Edges with their evidence; APPROVED-IN only where edges are approved.
fn edges_table(edges: &[EdgeView], with_approved_in: bool, ctx: &RenderContext) -> String {
    const EVIDENCE: [&str; 5] = ["COUNT", "FIRST-SEEN", "LAST-SEEN", "NODES", "SAMPLE"];
    let mut headers = vec!["EDGE"];
    if with_approved_in {
        headers.push("APPROVED-IN");
    }
    headers.extend(EVIDENCE);
    let rows = edges.iter().map(|edge| {
        let mut cells = vec![edge.edge.clone()];
        if with_approved_in {
            cells.push(edge.approved_in.join(","));
        }
        cells.extend(get::evidence_cells(edge, ctx));
        cells
    });
    render::nested_table(&headers, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, OutputFormat};
    use crate::view;
    use clap::Parser;

    const NOW: i64 = 1_800_000_000_000;
    const CTX: RenderContext = RenderContext { now_unix_ms: NOW };

    fn parse(args: &[&str]) -> Result<ProfileCommand, clap::Error> {
        match Cli::try_parse_from(args)?.command {
            Command::Profile(command) => Ok(command),
            other => panic!("expected profile, got {other:?}"),
        }
    }

    fn learned(text: &str, approved_in: &[&str], first_secs: i64, last_secs: i64) -> v1::EdgeInfo {
        v1::EdgeInfo {
            edge: text.into(),
            learned: true,
            approved: !approved_in.is_empty(),
            evidence: Some(v1::Evidence {
                first_seen_unix_ms: NOW - first_secs * 1000,
                last_seen_unix_ms: NOW - last_secs * 1000,
                count: 42,
                nodes: vec!["node-a".into()],
                sample: "10.0.0.1:40312 -> 10.0.0.2:8080/tcp".into(),
            }),
            approved_in: approved_in.iter().map(ToString::to_string).collect(),
            ..Default::default()
        }
    }

    fn diff() -> ProfileDiffView {
        ProfileDiffView::new(
            "shop/frontend",
            v1::DiffProfileResponse {
                unapproved: vec![learned("shop/frontend->shop/api:8080/tcp", &[], 3600, 300)],
                approved_seen: vec![learned(
                    "shop/frontend->kube-system/coredns:53/udp",
                    &["shop/frontend"],
                    86_400,
                    5,
                )],
                approved_unseen: vec![],
                rejected_seen: vec![learned("shop/frontend->world:22/tcp", &[], 1800, 60)],
            },
        )
    }

    #[test]
    fn approve_takes_edges_or_all_and_a_comment() {
        let command = parse(&[
            "zwctl",
            "profile",
            "approve",
            "shop/frontend",
            "--edge",
            "shop/frontend->shop/api:8080/tcp",
            "--edge",
            "host->shop/frontend:icmp",
            "--comment",
            "reviewed",
        ])
        .unwrap();
        let ProfileCommand::Approve(ProfileEdgeArgs {
            selection: args,
            create,
        }) = command
        else {
            panic!("expected approve, got {command:?}")
        };
        assert!(!create.create);
        assert_eq!(args.zone, "shop/frontend");
        assert_eq!(
            args.edges,
            [
                "shop/frontend->shop/api:8080/tcp",
                "host->shop/frontend:icmp"
            ]
        );
        assert!(!args.all);
        assert_eq!(args.comment.as_deref(), Some("reviewed"));

        let command = parse(&["zwctl", "profile", "approve", "z", "--all", "--create"]).unwrap();
        assert!(matches!(
            command,
            ProfileCommand::Approve(ProfileEdgeArgs {
                selection: EdgeChangeArgs { all: true, .. },
                create: CreateArg { create: true },
            })
        ));
    }

    #[test]
    fn reject_and_remove_take_the_same_arguments_and_create() {
        for (name, want_reject) in [("reject", true), ("remove", false)] {
            let command =
                parse(&["zwctl", "profile", name, "z", "--all", "--comment", "x"]).unwrap();
            let request = match command {
                ProfileCommand::Reject(args) if want_reject => args.selection.request(args.create),
                ProfileCommand::Remove(args) if !want_reject => args.selection.request(args.create),
                other => panic!("{name}: got {other:?}"),
            };
            assert_eq!(
                request,
                v1::EdgesRequest {
                    zone: "z".into(),
                    edges: vec![],
                    all: true,
                    comment: "x".into(),
                    create: false,
                }
            );
        }
        let command = parse(&["zwctl", "profile", "remove", "z", "--all", "--create"]).unwrap();
        let ProfileCommand::Remove(args) = command else {
            panic!("expected remove, got {command:?}")
        };
        assert!(args.selection.request(args.create).create);
        let command = parse(&["zwctl", "profile", "reject", "z", "--all", "--create"]).unwrap();
        let ProfileCommand::Reject(args) = command else {
            panic!("expected reject, got {command:?}")
        };
        assert!(args.selection.request(args.create).create);
    }

    #[test]
    fn edge_changes_need_exactly_one_of_edge_and_all() {
        for command in ["approve", "reject", "remove"] {
            let err = parse(&["zwctl", "profile", command, "z"]).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::MissingRequiredArgument,
                "{command}"
            );
            assert!(err.to_string().contains("--edge <EDGE>|--all"), "{err}");

            let err = parse(&[
                "zwctl",
                "profile",
                command,
                "z",
                "--all",
                "--edge",
                "a->b:80/tcp",
            ])
            .unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{command}"
            );

            let err = parse(&["zwctl", "profile", command, "--all"]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        }
    }

    #[test]
    fn bad_edges_are_refused_before_anything_is_sent() {
        let err = parse(&["zwctl", "profile", "approve", "z", "--edge", "a->b:80"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        let text = err.to_string();
        assert!(
            text.contains("a->b:80") && text.contains("no protocol"),
            "{text}"
        );
        assert!(text.contains("shop/frontend->shop/api:8080/tcp"), "{text}");
    }

    #[test]
    fn delete_takes_a_zone_force_and_a_comment() {
        let command = parse(&[
            "zwctl",
            "profile",
            "delete",
            "shop/old",
            "--force",
            "--comment",
            "gone",
        ])
        .unwrap();
        let ProfileCommand::Delete(args) = command else {
            panic!("expected delete, got {command:?}")
        };
        assert_eq!(
            (args.zone.as_str(), args.force, args.comment.as_deref()),
            ("shop/old", true, Some("gone"))
        );
        let command = parse(&["zwctl", "profile", "delete", "shop/old"]).unwrap();
        assert!(matches!(
            command,
            ProfileCommand::Delete(DeleteArgs { force: false, .. })
        ));
        let err = parse(&["zwctl", "profile", "delete"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn a_deletion_names_the_zone_and_every_other_profile_it_changed() {
        let result = ProfileDeleteView::from(v1::DeleteProfileResponse {
            zone: "shop/old".into(),
            version: 4,
            changed_profiles: vec![v1::Profile {
                zone: "shop/web".into(),
                version: 7,
                ..Default::default()
            }],
            removed_edges: vec!["shop/web->shop/old:80/tcp".into()],
            forgotten_edges: 2,
        });
        assert_eq!(
            delete_summary(&result),
            "zone shop/old: profile deleted (was version 4), 2 learned edge(s) forgotten\n\
             zone shop/web: removed shop/web->shop/old:80/tcp, profile version 7\n"
        );
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(json["removedEdges"][0], "shop/web->shop/old:80/tcp");
        assert_eq!(json["changedProfiles"][0]["zone"], "shop/web");
        assert_eq!(json["forgottenEdges"], 2);
    }

    #[test]
    fn diff_takes_a_zone() {
        let command = parse(&["zwctl", "profile", "diff", "shop/db"]).unwrap();
        assert!(
            matches!(command, ProfileCommand::Diff(DiffArgs { zone, against: None }) if zone == "shop/db")
        );
        assert!(parse(&["zwctl", "profile", "diff"]).is_err());
    }

    #[test]
    fn diff_shows_four_titled_sections_with_evidence() {
        let text = diff_text(&diff(), &CTX);
        let expected = "\
Learned, not approved (approve with zwctl profile approve shop/frontend --all, or --edge EDGE): 1
  EDGE                               COUNT   FIRST-SEEN   LAST-SEEN   NODES    SAMPLE
  shop/frontend->shop/api:8080/tcp   42      1h           5m          node-a   10.0.0.1:40312 -> 10.0.0.2:8080/tcp

Rejected, seen again (approve only by name: zwctl profile approve shop/frontend --edge EDGE): 1
  EDGE                          COUNT   FIRST-SEEN   LAST-SEEN   NODES    SAMPLE
  shop/frontend->world:22/tcp   42      30m          1m          node-a   10.0.0.1:40312 -> 10.0.0.2:8080/tcp

Approved and seen: 1
  EDGE                                        APPROVED-IN     COUNT   FIRST-SEEN   LAST-SEEN   NODES    SAMPLE
  shop/frontend->kube-system/coredns:53/udp   shop/frontend   42      1d           5s          node-a   10.0.0.1:40312 …

Approved, not seen: 0
  <none>
";
        assert_eq!(text, expected);
    }

    #[test]
    fn approved_edges_never_seen_show_none_for_their_evidence() {
        let unseen = view::edge_views(vec![v1::EdgeInfo {
            edge: "shop/frontend->shop/legacy:8080/tcp".into(),
            approved: true,
            approved_in: vec!["shop/frontend".into(), "shop/legacy".into()],
            ..Default::default()
        }]);
        assert_eq!(
            edges_table(&unseen, true, &CTX),
            "\
EDGE                                  APPROVED-IN                 COUNT    FIRST-SEEN   LAST-SEEN   NODES    SAMPLE
shop/frontend->shop/legacy:8080/tcp   shop/frontend,shop/legacy   <none>   <none>       <none>      <none>   <none>
"
        );
    }

    #[test]
    fn diff_json_is_one_object_with_three_lists() {
        let text = render::render_text_or_object(String::new, &diff(), OutputFormat::Json).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["zone"], "shop/frontend");
        assert_eq!(
            json["unapproved"][0]["edge"],
            "shop/frontend->shop/api:8080/tcp"
        );
        assert_eq!(json["unapproved"][0]["evidence"]["count"], 42);
        assert_eq!(
            json["unapproved"][0]["evidence"]["firstSeenUnixMs"],
            NOW - 3_600_000
        );
        assert_eq!(json["approvedSeen"][0]["approvedIn"][0], "shop/frontend");
        assert_eq!(json["approvedUnseen"], serde_json::json!([]));
        let yaml = render::render_text_or_object(String::new, &diff(), OutputFormat::Yaml).unwrap();
        assert!(
            yaml.starts_with("zone: shop/frontend\nunapproved:\n"),
            "{yaml}"
        );
        assert!(yaml.contains("approvedSeen:\n"), "{yaml}");
        assert!(yaml.contains("approvedUnseen: []\n"), "{yaml}");
    }

    fn change(zone: &str, version: u64, changed: u32) -> ProfileChangeResultView {
        ProfileChangeResultView::from(v1::ProfileChangeResponse {
            profile: Some(v1::Profile {
                zone: zone.into(),
                mode: v1::Mode::Learn.into(),
                version,
                approved: vec!["shop/frontend->shop/api:8080/tcp".into()],
                ..Default::default()
            }),
            changed,
        })
    }

    #[test]
    fn changes_are_summarised_in_one_line() {
        let global = Cli::parse_from(["zwctl", "status"]).global;
        let text =
            render_change(&change("shop/frontend", 4, 3), "x", "approved", "", &global).unwrap();
        assert_eq!(
            text,
            "zone shop/frontend: approved 3 edge(s), profile version 4\n"
        );
        let text = render_change(
            &change("", 4, 0),
            "shop/db",
            "rejected",
            " learned",
            &global,
        )
        .unwrap();
        assert_eq!(
            text,
            "zone shop/db: rejected 0 learned edge(s), profile version 4\n"
        );
    }

    #[test]
    fn changes_as_json_are_the_count_and_the_new_profile() {
        let global = Cli::parse_from(["zwctl", "-o", "json", "status"]).global;
        let text =
            render_change(&change("shop/frontend", 4, 3), "x", "approved", "", &global).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["changed"], 3);
        assert_eq!(json["profile"]["zone"], "shop/frontend");
        assert_eq!(json["profile"]["version"], 4);
        assert_eq!(
            json["profile"]["approvedEdges"],
            serde_json::json!(["shop/frontend->shop/api:8080/tcp"])
        );
        assert_eq!(json["profile"]["history"], serde_json::json!([]));
        assert_eq!(json["profile"]["endpointCount"], 0);
    }
}
