//! `zwctl response set|clear|show ZONE`: a zone's automatic response rules, which
//! quarantine one of its endpoints by itself.

use clap::{Args, Subcommand};
use serde::Serialize;
use zonewarden_profiles::response::{ViolationsRule, parse_within};
use zonewarden_proto::v1;

use crate::cli::{CreateArg, GlobalArgs};
use crate::client::Enforcer;
use crate::profile;
use crate::render;
use crate::view::{ProfileChangeResultView, ResponseView};

pub const EXAMPLES: &str = "\
Rules (per zone, opt-in, kept in the zone's profile: exported, imported and, in
cluster mode, shared by every node):
  --violations N --within T  quarantine an endpoint of the zone after N drops or
                             violations reported by the zone's own rules, the endpoint
                             as the source, within T (e.g. 60s, 5m)
  --new-port                 quarantine an endpoint on its first drop or violation to
                             a (protocol, port) that no approved or learned edge from
                             the zone uses

A rule quarantines the endpoint as `zwctl quarantine --endpoint` does (open
connections cut), once; the audit log names the rule as the author
(response:ZONE:violations or response:ZONE:new-port). Lift it with
`zwctl unquarantine --endpoint ID`; its count then starts from zero.

Examples:
  # Quarantine a shop/api pod after 5 violations within a minute
  zwctl response set shop/api --violations 5 --within 60s

  # ... and on its first drop to a port shop/api never used
  zwctl response set shop/api --violations 5 --within 60s --new-port

  # What a zone's rules are
  zwctl response show shop/api

  # Turn them off
  zwctl response clear shop/api --comment \"CHG-1234\"";

const SET_EXAMPLES: &str = "\
`set` replaces the zone's rules: name every rule the zone should have.

Examples:
  # 5 drops or violations of one endpoint within 60 seconds
  zwctl response set shop/api --violations 5 --within 60s

  # The first drop or violation to a port shop/api never used
  zwctl response set shop/api --new-port --comment \"INC-42 hardening\"

  # Both, for a zone whose pods are not deployed yet
  zwctl response set shop/payments --violations 3 --within 5m --new-port --create";

const CLEAR_EXAMPLES: &str = "\
Examples:
  # No automatic response for shop/api any more
  zwctl response clear shop/api --comment \"noisy after the v2 rollout\"";

const SHOW_EXAMPLES: &str = "\
Examples:
  zwctl response show shop/api
  zwctl response show shop/api -o json";

/// The `response` subcommands.
#[derive(Debug, Subcommand)]
pub enum ResponseCommand {
    /// Set a zone's automatic response rules (all of them: rules left out are off).
    #[command(after_help = SET_EXAMPLES)]
    Set(SetArgs),
    /// Turn every automatic response rule of a zone off.
    #[command(after_help = CLEAR_EXAMPLES)]
    Clear(ClearArgs),
    /// Show a zone's automatic response rules.
    #[command(after_help = SHOW_EXAMPLES)]
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// The zone (e.g. shop/api).
    #[arg(value_name = "ZONE")]
    pub zone: String,

    /// Quarantine an endpoint after this many drops or violations (1..10000) within
    /// --within.
    #[arg(long, value_name = "N", requires = "within")]
    pub violations: Option<u64>,

    /// The window of --violations: seconds, or a number with s, m or h (1s..24h).
    #[arg(long, value_name = "T", requires = "violations", value_parser = parse_within)]
    pub within: Option<u64>,

    /// Quarantine an endpoint on its first drop or violation to a port its zone never
    /// used (no approved or learned edge from the zone with that protocol and port).
    #[arg(long)]
    pub new_port: bool,

    /// Why: recorded in the profile's history and the audit log.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,

    #[command(flatten)]
    pub create: CreateArg,
}

#[derive(Debug, Args)]
pub struct ClearArgs {
    /// The zone (e.g. shop/api).
    #[arg(value_name = "ZONE")]
    pub zone: String,

    /// Why: recorded in the profile's history and the audit log.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The zone (e.g. shop/api).
    #[arg(value_name = "ZONE")]
    pub zone: String,
}

/// `response show` as JSON and YAML print it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ShownView {
    zone: String,
    version: u64,
    response: ResponseView,
}

/// The rules `set` asks for, validated here first (the enforcer checks them again).
fn rules_of(args: &SetArgs) -> anyhow::Result<v1::ResponseRules> {
    let mut rules = v1::ResponseRules {
        new_port: args.new_port,
        ..Default::default()
    };
    if let (Some(n), Some(t)) = (args.violations, args.within) {
        let rule = ViolationsRule::new(n, t).map_err(|err| anyhow::anyhow!("{err}"))?;
        rules.violations = rule.count;
        rules.within_seconds = rule.within_secs;
    }
    if rules.violations == 0 && !rules.new_port {
        anyhow::bail!(
            "name a rule: --violations N --within T, --new-port, or both \
             (zwctl response clear {} turns the rules off)",
            args.zone
        );
    }
    Ok(rules)
}

/// Runs one `response` command and returns what to print on stdout.
pub async fn run(command: &ResponseCommand, global: &GlobalArgs) -> anyhow::Result<String> {
    let (zone, rules, comment, create) = match command {
        ResponseCommand::Show(args) => return show(args, global).await,
        ResponseCommand::Set(args) => (
            &args.zone,
            Some(rules_of(args)?),
            &args.comment,
            args.create.create,
        ),
        ResponseCommand::Clear(args) => (&args.zone, None, &args.comment, false),
    };
    let mut enforcer = Enforcer::connect(global).await?;
    let request = v1::SetResponseRequest {
        zone: zone.clone(),
        rules,
        comment: comment.clone().unwrap_or_default(),
        create,
    };
    let result = ProfileChangeResultView::from(enforcer.set_response(request).await?);
    render::render_text_or_object(
        || {
            let unchanged = if result.changed == 0 {
                ", unchanged"
            } else {
                ""
            };
            format!(
                "zone {}: response {}{unchanged} (profile version {})\n",
                profile::zone_name(&result, zone),
                ResponseView::words(result.profile.response.as_ref()),
                result.profile.version
            )
        },
        &result,
        global.output,
    )
}

async fn show(args: &ShowArgs, global: &GlobalArgs) -> anyhow::Result<String> {
    let mut enforcer = Enforcer::connect(global).await?;
    let listed = enforcer
        .list_profiles(v1::ListProfilesRequest {
            zone: args.zone.clone(),
        })
        .await?;
    let Some(profile) = listed.profiles.into_iter().next() else {
        anyhow::bail!(
            "zone {:?} has no profile and no endpoints on this node (zwctl get profiles lists every zone that has)",
            args.zone
        );
    };
    let shown = ShownView {
        zone: profile.zone,
        version: profile.version,
        response: profile.response.map(ResponseView::from).unwrap_or_default(),
    };
    render::render_text_or_object(
        || {
            let mut out = format!(
                "zone {}: response {}\n",
                shown.zone,
                ResponseView::words(Some(&shown.response))
            );
            if let Some(v) = &shown.response.violations {
                out.push_str(&format!(
                    "  violations: quarantine an endpoint after {} drops or violations within {}s\n",
                    v.count, v.within_seconds
                ));
            }
            if shown.response.new_port {
                out.push_str(
                    "  new port:   quarantine an endpoint on its first drop or violation to a port the zone never used\n",
                );
            }
            out
        },
        &shown,
        global.output,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<ResponseCommand, clap::Error> {
        match Cli::try_parse_from(args)?.command {
            Command::Response(command) => Ok(command),
            other => panic!("expected response, got {other:?}"),
        }
    }

    fn set(args: &[&str]) -> SetArgs {
        match parse(args).unwrap() {
            ResponseCommand::Set(args) => args,
            other => panic!("expected set, got {other:?}"),
        }
    }

    #[test]
    fn set_takes_a_count_with_a_window_and_the_new_port_rule() {
        let args = set(&[
            "zwctl",
            "response",
            "set",
            "shop/api",
            "--violations",
            "5",
            "--within",
            "2m",
            "--new-port",
        ]);
        let rules = rules_of(&args).unwrap();
        assert_eq!(
            (rules.violations, rules.within_seconds, rules.new_port),
            (5, 120, true)
        );
        let port = set(&[
            "zwctl",
            "response",
            "set",
            "shop/api",
            "--new-port",
            "--create",
        ]);
        assert_eq!(rules_of(&port).unwrap().violations, 0);
        assert!(port.create.create);
    }

    #[test]
    fn bad_rules_are_refused_before_the_enforcer_is_asked() {
        for bad in [
            &["zwctl", "response", "set", "a", "--violations", "5"][..],
            &["zwctl", "response", "set", "a", "--within", "60s"],
            &[
                "zwctl",
                "response",
                "set",
                "a",
                "--violations",
                "5",
                "--within",
                "5d",
            ],
            &[
                "zwctl",
                "response",
                "set",
                "a",
                "--violations",
                "x",
                "--within",
                "5s",
            ],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let none = set(&["zwctl", "response", "set", "a"]);
        assert!(
            rules_of(&none)
                .unwrap_err()
                .to_string()
                .contains("name a rule")
        );
        let zero = set(&[
            "zwctl",
            "response",
            "set",
            "a",
            "--violations",
            "0",
            "--within",
            "5s",
        ]);
        assert!(
            rules_of(&zero)
                .unwrap_err()
                .to_string()
                .contains("at least 1")
        );
        let long = set(&[
            "zwctl",
            "response",
            "set",
            "a",
            "--violations",
            "2",
            "--within",
            "25h",
        ]);
        assert!(
            rules_of(&long)
                .unwrap_err()
                .to_string()
                .contains("at most 86400")
        );
    }

    #[test]
    fn clear_and_show_take_a_zone() {
        assert!(matches!(
            parse(&["zwctl", "response", "clear", "shop/api", "--comment", "x"]).unwrap(),
            ResponseCommand::Clear(_)
        ));
        assert!(matches!(
            parse(&["zwctl", "response", "show", "shop/api", "-o", "json"]).unwrap(),
            ResponseCommand::Show(_)
        ));
    }
}
