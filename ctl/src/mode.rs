//! `zwctl mode set ZONE learn|monitor|enforce`: switch how a zone's profile applies.

use clap::{Args, Subcommand};
use zonewarden_profiles::Mode;
use zonewarden_proto::v1;

use crate::choice;
use crate::cli::{CreateArg, GlobalArgs};
use crate::client::Enforcer;
use crate::profile;
use crate::render;
use crate::view::{self, EdgeView, ProfileChangeResultView};

pub const EXAMPLES: &str = "\
Modes:
  learn    everything passes; the enforcer records every edge it sees
  monitor  everything passes; edges nobody approved are reported as violations
  enforce  connections over edges nobody approved are dropped (and reported)

A connection passes when no enforcing end rejects it: one approval, by either zone,
allows an edge.

Examples:
  # Dry run: report what enforce would drop, without dropping it
  zwctl mode set shop/frontend monitor
  zwctl get violations --zone shop/frontend --verdict violation

  # Enforce the approved profile
  zwctl mode set shop/frontend enforce --comment \"CHG-1234\"

  # Back to learning (e.g. after a release that adds dependencies)
  zwctl mode set shop/frontend learn --comment \"v2 rollout\"

A zone that does not exist (no endpoints, no profile) is refused, with the nearest
existing zone's name: a typo never becomes a zone. Pass --create to set the mode of a
zone before its workloads run.";

const SET_EXAMPLES: &str = "\
Examples:
  # Report unapproved edges, drop nothing
  zwctl mode set shop/frontend monitor

  # Drop unapproved edges, saying why in the profile's history
  zwctl mode set shop/db enforce --comment \"approved profile reviewed by security\"

  # The new profile as YAML
  zwctl mode set shop/db enforce -o yaml

  # A zone whose pods are not deployed yet
  zwctl mode set shop/payments enforce --create";

/// The `mode` subcommands.
#[derive(Debug, Subcommand)]
pub enum ModeCommand {
    /// Switch a zone between learn, monitor and enforce.
    #[command(after_help = SET_EXAMPLES)]
    Set(SetArgs),
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// The zone (e.g. shop/frontend).
    #[arg(value_name = "ZONE")]
    pub zone: String,

    /// The new mode.
    #[arg(value_name = "MODE", value_parser = choice::parser(&Mode::ALL, Mode::as_str, mode_help))]
    pub mode: Mode,

    /// Why: recorded in the profile's history and the audit log.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,

    #[command(flatten)]
    pub create: CreateArg,
}

/// One line of help per mode, for `--help` and shell completions.
pub(crate) fn mode_help(mode: Mode) -> &'static str {
    match mode {
        Mode::Learn => "Allow everything and record edges",
        Mode::Monitor => "Allow everything, record edges, report unapproved ones as violations",
        Mode::Enforce => "Drop and report unapproved edges",
    }
}

/// Runs one `mode` command and returns what to print on stdout.
pub async fn run(command: &ModeCommand, global: &GlobalArgs) -> anyhow::Result<String> {
    let ModeCommand::Set(args) = command;
    let mut enforcer = Enforcer::connect(global).await?;
    let request = v1::SetModeRequest {
        zone: args.zone.clone(),
        mode: v1::Mode::from(args.mode).into(),
        comment: args.comment.clone().unwrap_or_default(),
        create: args.create.create,
    };
    let result = ProfileChangeResultView::from(enforcer.set_mode(request).await?);
    if args.mode == Mode::Enforce {
        // An edge is allowed when any profile approves it: ask for the zone's edges
        // with the approvals of both ends.
        let edges = enforcer
            .list_edges(v1::ListEdgesRequest {
                zone: profile::zone_name(&result, &args.zone).to_owned(),
                learned_only: false,
                approved_only: false,
            })
            .await
            .map(|r| view::edge_views(r.edges));
        if let Some(warning) = edges
            .ok()
            .and_then(|edges| enforce_warning(&result, args, &edges))
        {
            eprintln!("zwctl: warning: {warning}");
        }
    }
    render::render_text_or_object(|| summary(&result, args), &result, global.output)
}

/// `zone shop/db: mode enforce (profile version 5)`.
fn summary(result: &ProfileChangeResultView, args: &SetArgs) -> String {
    let zone = profile::zone_name(result, &args.zone);
    let mode = if result.profile.mode.is_empty() {
        args.mode.as_str()
    } else {
        &result.profile.mode
    };
    let unchanged = if result.changed == 0 {
        ", unchanged"
    } else {
        ""
    };
    format!(
        "zone {zone}: mode {mode}{unchanged} (profile version {})\n",
        result.profile.version
    )
}

/// Enforcing a zone drops every new connection of an edge no profile approves (one
/// approval, at either end, allows an edge at both): say so when it is the case for
/// every edge of the zone, or for some it was seen using, with what to run.
fn enforce_warning(
    result: &ProfileChangeResultView,
    args: &SetArgs,
    edges: &[EdgeView],
) -> Option<String> {
    let zone = profile::zone_name(result, &args.zone);
    if args.mode != Mode::Enforce {
        return None;
    }
    if !edges.iter().any(|e| e.approved) {
        return Some(format!(
            "no profile approves an edge of zone {zone} (neither its own nor the other \
             ends'): all its new connections are dropped; review with zwctl profile diff {zone}"
        ));
    }
    let unapproved = edges.iter().filter(|e| e.learned && !e.approved).count();
    (unapproved > 0).then(|| {
        format!(
            "{unapproved} edge(s) zone {zone} was seen using are approved at neither end: \
             their new connections are dropped; review with zwctl profile diff {zone}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, OutputFormat};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<SetArgs, clap::Error> {
        match Cli::try_parse_from(args)?.command {
            Command::Mode(ModeCommand::Set(args)) => Ok(args),
            other => panic!("expected mode set, got {other:?}"),
        }
    }

    fn result(
        zone: &str,
        mode: Option<Mode>,
        version: u64,
        changed: u32,
    ) -> ProfileChangeResultView {
        ProfileChangeResultView::from(v1::ProfileChangeResponse {
            profile: Some(v1::Profile {
                zone: zone.into(),
                mode: mode.map_or(0, |m| v1::Mode::from(m).into()),
                version,
                ..Default::default()
            }),
            changed,
        })
    }

    #[test]
    fn mode_set_takes_zone_mode_and_comment() {
        let args = parse(&[
            "zwctl",
            "mode",
            "set",
            "shop/db",
            "enforce",
            "--comment",
            "go",
        ])
        .unwrap();
        assert_eq!(args.zone, "shop/db");
        assert_eq!(args.mode, Mode::Enforce);
        assert_eq!(args.comment.as_deref(), Some("go"));
        assert!(!args.create.create);
        let create = parse(&["zwctl", "mode", "set", "shop/pay", "enforce", "--create"]).unwrap();
        assert!(create.create.create);
        assert_eq!(
            parse(&["zwctl", "mode", "set", "z", "learn"]).unwrap().mode,
            Mode::Learn
        );
        assert_eq!(
            parse(&["zwctl", "mode", "set", "z", "monitor"])
                .unwrap()
                .mode
                .as_str(),
            "monitor"
        );
    }

    #[test]
    fn unknown_modes_are_refused_with_the_valid_ones() {
        let err = parse(&["zwctl", "mode", "set", "z", "block"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
        let text = err.to_string();
        assert!(text.contains("learn, monitor, enforce"), "{text}");
        assert!(text.contains("'block'"), "{text}");
        assert!(parse(&["zwctl", "mode", "set", "z"]).is_err());
        assert!(Cli::try_parse_from(["zwctl", "mode"]).is_err());
    }

    #[test]
    fn help_and_completions_list_the_modes() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        let set = cli
            .find_subcommand_mut("mode")
            .and_then(|mode| mode.find_subcommand_mut("set"))
            .expect("zwctl mode set");
        let help = set.render_long_help().to_string();
        for (mode, help_line) in [
            ("learn", "Allow everything and record edges"),
            ("monitor", "report unapproved ones as violations"),
            ("enforce", "Drop and report unapproved edges"),
        ] {
            assert!(help.contains(mode) && help.contains(help_line), "{help}");
        }
        assert!(help.contains("--create"), "{help}");
        // bash offers the words after `mode set ZONE`, zsh with their help.
        for (shell, needle) in [
            (clap_complete::Shell::Bash, "--create --socket"),
            (
                clap_complete::Shell::Bash,
                "--version learn monitor enforce\"",
            ),
            (
                clap_complete::Shell::Zsh,
                "learn\\:\"Allow everything and record edges\"",
            ),
            (
                clap_complete::Shell::Zsh,
                "enforce\\:\"Drop and report unapproved edges\"",
            ),
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "zwctl", &mut script);
            let script = String::from_utf8(script).unwrap();
            assert!(
                script.contains(needle),
                "{shell:?} completion lacks {needle}"
            );
        }
    }

    #[test]
    fn summary_names_zone_mode_and_version() {
        let args = parse(&["zwctl", "mode", "set", "shop/db", "enforce"]).unwrap();
        assert_eq!(
            summary(&result("shop/db", Some(Mode::Enforce), 5, 1), &args),
            "zone shop/db: mode enforce (profile version 5)\n"
        );
        assert_eq!(
            summary(&result("", None, 5, 0), &args),
            "zone shop/db: mode enforce, unchanged (profile version 5)\n"
        );
        let json = render::render_text_or_object(
            String::new,
            &result("shop/db", Some(Mode::Enforce), 5, 1),
            OutputFormat::Json,
        )
        .unwrap();
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(json["profile"]["mode"], "enforce");
        assert_eq!(json["changed"], 1);
    }

    #[test]
    fn enforcing_warns_only_about_edges_no_end_approves() {
        let enforce = parse(&["zwctl", "mode", "set", "shop/db", "enforce"]).unwrap();
        let monitor = parse(&["zwctl", "mode", "set", "shop/db", "monitor"]).unwrap();
        let empty = result("shop/db", Some(Mode::Enforce), 5, 1);
        let edge = |text: &str, learned: bool, approved: bool| EdgeView {
            edge: text.into(),
            learned,
            approved,
            ..Default::default()
        };
        let warning = enforce_warning(&empty, &enforce, &[]).expect("a warning");
        assert!(warning.contains("zwctl profile diff shop/db"), "{warning}");
        assert!(warning.contains("no profile approves"), "{warning}");
        assert!(enforce_warning(&empty, &monitor, &[]).is_none());
        // Its own profile approves nothing, the other end approves every edge.
        let other_end = [edge("shop/api->shop/db:5432/tcp", true, true)];
        assert!(enforce_warning(&empty, &enforce, &other_end).is_none());
        let one_left = [
            edge("shop/api->shop/db:5432/tcp", true, true),
            edge("shop/cache->shop/db:5432/tcp", true, false),
        ];
        let warning = enforce_warning(&empty, &enforce, &one_left).expect("a warning");
        assert!(warning.starts_with("1 edge(s) zone shop/db"), "{warning}");
    }
}
