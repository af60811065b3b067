//! The command line: global flags and the command tree.
//!
//! Each command group owns its arguments in its own module (`get`, `profile`,
//! `mode`, `quarantine`, `status`, `completion`); this file only wires them
//! together. A new group (`describe`, `audit`) is one more variant of [`Command`].

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, CommandFactory as _, Parser, Subcommand, ValueEnum};

use crate::audit::AuditCommand;
use crate::completion::CompletionArgs;
use crate::describe::DescribeCommand;
use crate::flows::FlowsCommand;
use crate::get::GetCommand;
use crate::mode::ModeCommand;
use crate::profile::ProfileCommand;
use crate::quarantine::QuarantineArgs;
use crate::response::ResponseCommand;
use crate::status::StatusArgs;
use crate::zones_map::ZonesCommand;

const ABOUT: &str = "zwctl: inspect and operate the zonewarden enforcer on this node";

const LONG_ABOUT: &str = "\
zwctl is the operator CLI of zonewarden, the network micro-segmentation for containers
and Kubernetes. It talks to the zonewarden enforcer of this node over its unix socket
(root-only: run zwctl as root, or pass --socket to reach another enforcer).";

const EXAMPLES: &str = "\
Examples:
  # Is the enforcer on this node up and ready?
  zwctl status

  # Which zones exist, and which workloads are in them?
  zwctl get zones

  # Every container attachment on this node, with its zone and addresses
  zwctl get endpoints

  # The same as JSON, for scripts
  zwctl get endpoints -o json | jq -r '.items[].zone'

  # Lock a zone down: review what it learned, approve it, monitor, then enforce
  zwctl profile diff shop/frontend
  zwctl profile approve shop/frontend --all --comment \"reviewed\"
  zwctl mode set shop/frontend monitor
  zwctl get violations --zone shop/frontend
  zwctl mode set shop/frontend enforce

  # Cut off a compromised workload, and let it back
  zwctl quarantine --zone shop/frontend
  zwctl unquarantine --zone shop/frontend

  # Let the enforcer cut off a shop/frontend pod after 5 violations within a minute
  zwctl response set shop/frontend --violations 5 --within 60s

  # Talk to an enforcer serving a non-default socket
  zwctl --socket /tmp/zw/enforcer.sock status
  ZONEWARDEN_SOCKET=/tmp/zw/enforcer.sock zwctl get zones

Output: -o table (the default; fits 120 columns, long cells end in \"…\"), -o wide
(every column in full), -o json or -o yaml (camelCase field names); `zones map`
also draws -o dot and -o mermaid. Each command's --help lists the formats it writes.

Exit status: 0 on success, 1 when the enforcer cannot be reached, refuses the
request or is not ready (or `audit verify` finds the log altered), 2 on a command
line error (an unknown command or flag, a bad value, an -o the command does not
write).";

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "zwctl",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts, before or after the command name.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Unix socket of the zonewarden enforcer.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "ZONEWARDEN_SOCKET",
        default_value = zonewarden_proto::DEFAULT_SOCKET
    )]
    pub socket: PathBuf,

    /// Output format (each command's --help lists the ones it writes).
    #[arg(short, long, global = true, value_name = "FORMAT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Give up on the enforcer after this many seconds (connect and each request).
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub timeout: u64,
}

impl GlobalArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}

/// `--create`, for the commands that change one zone's profile (`mode set`,
/// `quarantine --zone`, `profile approve|remove`).
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct CreateArg {
    /// Make the zone's profile even if the zone does not exist yet (no endpoints, no
    /// profile); without it such a zone is refused as a likely typo.
    #[arg(long)]
    pub create: bool,
}

/// How results are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people, at most 120 characters a line.
    Table,
    /// The table with every column in full, however wide.
    Wide,
    /// Pretty-printed JSON for scripts.
    Json,
    /// YAML for scripts and GitOps.
    Yaml,
    /// Graphviz dot (`zwctl zones map` only).
    Dot,
    /// A Mermaid `graph LR` (`zwctl zones map` only).
    Mermaid,
}

impl OutputFormat {
    /// Whether this is JSON or YAML (which escape control characters themselves).
    pub fn is_structured(self) -> bool {
        matches!(self, Self::Json | Self::Yaml)
    }

    /// Whether this is text for people (a table, narrow or wide).
    pub fn is_table(self) -> bool {
        matches!(self, Self::Table | Self::Wide)
    }

    /// The word `-o` takes for this format.
    pub fn word(self) -> &'static str {
        match self {
            Self::Table => "table",
            Self::Wide => "wide",
            Self::Json => "json",
            Self::Yaml => "yaml",
            Self::Dot => "dot",
            Self::Mermaid => "mermaid",
        }
    }
}

/// The formats a command writes, by its path (`["get", "zones"]`): what its
/// `--help` lists and what `-o` accepts for it.
pub fn formats_for(path: &[&str]) -> &'static [OutputFormat] {
    use OutputFormat::{Dot, Json, Mermaid, Table, Wide, Yaml};
    match path {
        ["zones", ..] => &[Table, Wide, Json, Yaml, Dot, Mermaid],
        ["get", ..] | ["describe", ..] | ["audit", "log"] | ["profile", "diff"] => {
            &[Table, Wide, Json, Yaml]
        }
        ["completion", ..] => &[Table],
        _ => &[Table, Json, Yaml],
    }
}

/// The command tree with a `-o` on every command that lists only the formats that
/// command writes (the global `-o` before the command name accepts every format;
/// [`check_output`] refuses the ones the command does not write).
pub fn command() -> clap::Command {
    fn restrict(cmd: clap::Command, path: &mut Vec<String>) -> clap::Command {
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|sub| sub.get_name().to_owned())
            .collect();
        if names.is_empty() {
            let words: Vec<&str> = path.iter().map(String::as_str).collect();
            return cmd.arg(output_arg(formats_for(&words), words == ["completion"]));
        }
        names.into_iter().fold(cmd, |cmd, name| {
            path.push(name.clone());
            let cmd = cmd.mut_subcommand(&name, |sub| restrict(sub, path));
            path.pop();
            cmd
        })
    }
    restrict(Cli::command(), &mut Vec::new())
}

fn output_arg(formats: &'static [OutputFormat], hidden: bool) -> clap::Arg {
    let values = formats.iter().map(|f| {
        f.to_possible_value()
            .expect("every output format has a name")
    });
    clap::Arg::new("output")
        .short('o')
        .long("output")
        .global(true)
        .hide(hidden)
        .value_name("FORMAT")
        .help("Output format")
        .default_value("table")
        .value_parser(
            clap::builder::PossibleValuesParser::new(values)
                .map(|word| OutputFormat::from_str(&word, false).expect("a listed value")),
        )
}

/// The path of the command `matches` ran (`["get", "zones"]`).
pub fn command_path(matches: &clap::ArgMatches) -> Vec<String> {
    let mut path = Vec::new();
    let mut at = matches;
    while let Some((name, sub)) = at.subcommand() {
        path.push(name.to_owned());
        at = sub;
    }
    path
}

/// Refuses an `-o` (given before the command name) that the command does not write,
/// as a command line error (exit 2).
pub fn check_output(path: &[String], output: OutputFormat) -> Result<(), clap::Error> {
    let words: Vec<&str> = path.iter().map(String::as_str).collect();
    let formats = formats_for(&words);
    if formats.contains(&output) {
        return Ok(());
    }
    let listed: Vec<&str> = formats.iter().map(|f| f.word()).collect();
    Err(command().error(
        clap::error::ErrorKind::InvalidValue,
        format!(
            "`zwctl {}` does not write -o {}; it writes: {}",
            words.join(" "),
            output.word(),
            listed.join(", ")
        ),
    ))
}

/// The command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List resources known to the enforcer (endpoints, zones, edges, profiles, violations).
    #[command(subcommand, after_help = crate::get::EXAMPLES)]
    Get(GetCommand),

    /// Review a zone's learned edges and approve, reject or remove them; delete a profile.
    #[command(subcommand, after_help = crate::profile::EXAMPLES)]
    Profile(ProfileCommand),

    /// Switch a zone between learn, monitor and enforce.
    #[command(subcommand, after_help = crate::mode::EXAMPLES)]
    Mode(ModeCommand),

    /// Cut a zone or one endpoint off from everything but the host zone.
    #[command(after_help = crate::quarantine::QUARANTINE_EXAMPLES)]
    Quarantine(QuarantineArgs),

    /// Lift the quarantine of a zone or one endpoint.
    #[command(after_help = crate::quarantine::UNQUARANTINE_EXAMPLES)]
    Unquarantine(QuarantineArgs),

    /// Automatic response: quarantine a zone's endpoint after N violations within T,
    /// or on its first drop to a port the zone never used.
    #[command(subcommand, after_help = crate::response::EXAMPLES)]
    Response(ResponseCommand),

    /// Show whether the enforcer is ready to serve container attachments.
    #[command(after_help = crate::status::EXAMPLES)]
    Status(StatusArgs),

    /// Read and verify the hash-chained log of every change (who, what, when, why).
    #[command(subcommand, after_help = crate::audit::EXAMPLES)]
    Audit(AuditCommand),

    /// Show one resource in detail (describe zone Z).
    #[command(subcommand, after_help = crate::describe::EXAMPLES)]
    Describe(DescribeCommand),

    /// The zone map: zones, approved and learned edges (table, json, yaml, dot, mermaid).
    #[command(subcommand, after_help = crate::zones_map::EXAMPLES)]
    Zones(ZonesCommand),

    /// Watch reported connections live (allow, violation, drop, quarantine, spoof).
    #[command(subcommand, after_help = crate::flows::EXAMPLES)]
    Flows(FlowsCommand),

    /// Print a shell completion script.
    #[command(after_help = crate::completion::EXAMPLES)]
    Completion(CompletionArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::get::GetCommand;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap_or_else(|err| panic!("{args:?} should parse: {err}"))
    }

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_have_documented_defaults() {
        let cli = parse(&["zwctl", "status"]);
        // The env var may be set where the tests run; only check the default when it is not.
        if std::env::var_os("ZONEWARDEN_SOCKET").is_none() {
            assert_eq!(
                cli.global.socket,
                PathBuf::from(zonewarden_proto::DEFAULT_SOCKET)
            );
        }
        assert_eq!(cli.global.output, OutputFormat::Table);
        assert_eq!(cli.global.timeout(), Duration::from_secs(5));
    }

    #[test]
    fn global_flags_are_accepted_after_the_command() {
        let cli = parse(&[
            "zwctl",
            "get",
            "endpoints",
            "-o",
            "yaml",
            "--socket",
            "/tmp/x.sock",
            "--timeout",
            "2",
        ]);
        assert_eq!(cli.global.output, OutputFormat::Yaml);
        assert_eq!(cli.global.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(cli.global.timeout, 2);
    }

    #[test]
    fn get_endpoints_takes_filters() {
        let cli = parse(&[
            "zwctl",
            "-o",
            "json",
            "get",
            "endpoints",
            "--network",
            "k8s",
            "--zone",
            "shop/web",
        ]);
        assert_eq!(cli.global.output, OutputFormat::Json);
        match cli.command {
            Command::Get(GetCommand::Endpoints(args)) => {
                assert_eq!(args.network.as_deref(), Some("k8s"));
                assert_eq!(args.zone.as_deref(), Some("shop/web"));
            }
            other => panic!("expected get endpoints, got {other:?}"),
        }
    }

    #[test]
    fn aliases_resolve_to_their_commands() {
        assert!(matches!(
            parse(&["zwctl", "get", "ep"]).command,
            Command::Get(GetCommand::Endpoints(_))
        ));
        assert!(matches!(
            parse(&["zwctl", "get", "zone"]).command,
            Command::Get(GetCommand::Zones(_))
        ));
    }

    #[test]
    fn get_edges_filters_by_zone_and_learned_or_approved() {
        match parse(&["zwctl", "get", "edges", "--zone", "shop/web", "--learned"]).command {
            Command::Get(GetCommand::Edges(args)) => {
                assert_eq!(args.zone.as_deref(), Some("shop/web"));
                assert!(args.learned && !args.approved);
            }
            other => panic!("expected get edges, got {other:?}"),
        }
        match parse(&["zwctl", "get", "edge", "--approved"]).command {
            Command::Get(GetCommand::Edges(args)) => {
                assert!(args.zone.is_none() && !args.learned && args.approved);
            }
            other => panic!("expected get edges, got {other:?}"),
        }
        let err =
            Cli::try_parse_from(["zwctl", "get", "edges", "--learned", "--approved"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn get_profiles_takes_an_optional_zone() {
        match parse(&["zwctl", "get", "profiles", "shop/web"]).command {
            Command::Get(GetCommand::Profiles(args)) => {
                assert_eq!(args.zone.as_deref(), Some("shop/web"));
            }
            other => panic!("expected get profiles, got {other:?}"),
        }
        match parse(&["zwctl", "get", "profile"]).command {
            Command::Get(GetCommand::Profiles(args)) => assert!(args.zone.is_none()),
            other => panic!("expected get profiles, got {other:?}"),
        }
    }

    #[test]
    fn get_violations_takes_zone_verdict_and_limit() {
        match parse(&[
            "zwctl",
            "get",
            "violations",
            "--zone",
            "shop/db",
            "--verdict",
            "spoof",
            "--limit",
            "10",
        ])
        .command
        {
            Command::Get(GetCommand::Violations(args)) => {
                assert_eq!(args.zone.as_deref(), Some("shop/db"));
                assert_eq!(
                    args.verdict,
                    Some(zonewarden_profiles::event::ReportKind::Spoof)
                );
                assert_eq!(args.limit, Some(10));
            }
            other => panic!("expected get violations, got {other:?}"),
        }
        match parse(&["zwctl", "get", "vio"]).command {
            Command::Get(GetCommand::Violations(args)) => {
                assert!(args.zone.is_none() && args.verdict.is_none() && args.limit.is_none());
            }
            other => panic!("expected get violations, got {other:?}"),
        }
        for verdict in ["drop", "violation", "quarantine", "spoof"] {
            parse(&["zwctl", "get", "violations", "--verdict", verdict]);
        }
        for bad in [
            &["zwctl", "get", "violations", "--verdict", "accept"][..],
            &["zwctl", "get", "violations", "--limit", "0"],
            &["zwctl", "get", "violations", "--limit", "-3"],
        ] {
            assert!(
                Cli::try_parse_from(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn invalid_values_are_rejected() {
        for args in [
            &["zwctl", "-o", "xml", "status"][..],
            &["zwctl", "--timeout", "0", "status"],
            &["zwctl", "completion", "powershell"],
            &["zwctl", "get", "flows"],
            &["zwctl"],
        ] {
            assert!(
                Cli::try_parse_from(args).is_err(),
                "{args:?} should be rejected"
            );
        }
    }

    #[test]
    fn each_command_takes_only_the_formats_it_writes() {
        command().debug_assert();
        let output = |args: &[&str]| -> Result<OutputFormat, clap::Error> {
            let matches = command().try_get_matches_from(args)?;
            let cli = Cli::from_arg_matches(&matches)?;
            check_output(&command_path(&matches), cli.global.output)?;
            Ok(cli.global.output)
        };
        use clap::FromArgMatches as _;
        assert_eq!(
            output(&["zwctl", "-o", "json", "get", "zones"]).unwrap(),
            OutputFormat::Json,
            "-o before the command reaches it"
        );
        assert_eq!(
            output(&["zwctl", "get", "zones", "-o", "wide"]).unwrap(),
            OutputFormat::Wide
        );
        assert_eq!(
            output(&["zwctl", "zones", "map", "-o", "mermaid"]).unwrap(),
            OutputFormat::Mermaid
        );
        assert_eq!(output(&["zwctl", "status"]).unwrap(), OutputFormat::Table);
        for bad in [
            &["zwctl", "get", "zones", "-o", "dot"][..],
            &["zwctl", "-o", "dot", "get", "zones"],
            &["zwctl", "status", "-o", "wide"],
            &["zwctl", "-o", "mermaid", "describe", "zone", "a"],
        ] {
            let err = output(bad).expect_err("refused");
            assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue, "{bad:?}");
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn every_command_has_examples_in_its_help() {
        fn walk(cmd: &clap::Command, path: &str) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_name() != "help" {
                let after = cmd
                    .get_after_help()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                assert!(
                    after.contains("Examples:"),
                    "`{path} --help` has no examples"
                );
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path);
            }
        }
        walk(&Cli::command(), "");
    }
}
