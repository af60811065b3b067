//! `zwctl quarantine` and `zwctl unquarantine`: cut a zone or one endpoint off
//! from everything but the host zone, and let it back.

use clap::Args;
use zonewarden_proto::v1;

use crate::cli::GlobalArgs;
use crate::client::Enforcer;
use crate::profile;
use crate::render;
use crate::view::ProfileChangeResultView;

pub const QUARANTINE_EXAMPLES: &str = "\
A quarantined zone or endpoint can talk to nothing but the host zone (kubelet probes
keep working), whatever its profile approves and whatever its mode. Its attempts are
reported with verdict quarantine.

Examples:
  # Cut off every container of a compromised workload
  zwctl quarantine --zone shop/frontend --comment \"INC-42: suspicious outbound traffic\"

  # Cut off one container only: its id as zwctl get endpoints prints it (any prefix
  # that no other container's id shares), or the whole id
  zwctl quarantine --endpoint 3f2a9c1e0b7d

  # Which endpoints are cut off (QUARANTINED: endpoint, zone or both)
  zwctl get endpoints

  # What it tried to reach since
  zwctl get violations --zone shop/frontend --verdict quarantine

  # Let it back
  zwctl unquarantine --zone shop/frontend

A zone that does not exist (no endpoints, no profile) is refused with the nearest
existing zone's name, and nothing changes: a typo never quarantines nothing and exits 0.
Pass --create to quarantine a zone before its workloads run.";

pub const UNQUARANTINE_EXAMPLES: &str = "\
Examples:
  # Let a zone talk again, as its profile and mode allow
  zwctl unquarantine --zone shop/frontend --comment \"INC-42 closed\"

  # Release one container
  zwctl unquarantine --endpoint 3f2a9c1e0b7d";

/// A quarantine target: exactly one of `--zone` and `--endpoint`.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("target")
        .args(["zone", "endpoint"])
        .required(true)
        .multiple(false)
))]
pub struct QuarantineArgs {
    /// Every endpoint of this zone (e.g. shop/frontend), now and later.
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,

    /// One endpoint, by its container (sandbox) id or a prefix only it has (e.g. the
    /// 12 characters zwctl get endpoints prints).
    #[arg(long, value_name = "CONTAINER_ID")]
    pub endpoint: Option<String>,

    /// Why: recorded in the profile's history and the audit log.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,

    /// With --zone: make the zone's profile even if the zone does not exist yet (no
    /// endpoints, no profile); without it such a zone is refused as a likely typo.
    #[arg(long, conflicts_with = "endpoint")]
    pub create: bool,
}

impl QuarantineArgs {
    fn request(&self, on: bool) -> v1::QuarantineRequest {
        v1::QuarantineRequest {
            zone: self.zone.clone().unwrap_or_default(),
            container_id: self.endpoint.clone().unwrap_or_default(),
            on,
            comment: self.comment.clone().unwrap_or_default(),
            create: self.create,
        }
    }
}

/// Quarantines (`on`) or releases the target and returns what to print on stdout.
pub async fn run(args: &QuarantineArgs, on: bool, global: &GlobalArgs) -> anyhow::Result<String> {
    let mut enforcer = Enforcer::connect(global).await?;
    let result = ProfileChangeResultView::from(enforcer.quarantine(args.request(on)).await?);
    render::render_text_or_object(|| summary(&result, args, on), &result, global.output)
}

/// `zone shop/db: quarantined (profile version 6)`, or for one endpoint
/// `endpoint 3f2a9c1e0b7d (zone shop/db): quarantined`.
fn summary(result: &ProfileChangeResultView, args: &QuarantineArgs, on: bool) -> String {
    let what = match (on, result.changed > 0) {
        (true, true) => "quarantined",
        (true, false) => "already quarantined",
        (false, true) => "quarantine lifted",
        (false, false) => "was not quarantined",
    };
    match (&args.endpoint, &args.zone) {
        (Some(container_id), _) => {
            let id = render::truncate_chars(container_id, 12);
            if result.profile.zone.is_empty() {
                format!("endpoint {id}: {what}\n")
            } else {
                format!("endpoint {id} (zone {}): {what}\n", result.profile.zone)
            }
        }
        (None, zone) => format!(
            "zone {}: {what} (profile version {})\n",
            profile::zone_name(result, zone.as_deref().unwrap_or_default()),
            result.profile.version
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<(QuarantineArgs, bool), clap::Error> {
        match Cli::try_parse_from(args)?.command {
            Command::Quarantine(args) => Ok((args, true)),
            Command::Unquarantine(args) => Ok((args, false)),
            other => panic!("expected (un)quarantine, got {other:?}"),
        }
    }

    fn result(zone: &str, changed: u32) -> ProfileChangeResultView {
        ProfileChangeResultView::from(v1::ProfileChangeResponse {
            profile: Some(v1::Profile {
                zone: zone.into(),
                quarantined: true,
                version: 6,
                ..Default::default()
            }),
            changed,
        })
    }

    #[test]
    fn quarantine_takes_a_zone_or_an_endpoint() {
        let (args, on) = parse(&[
            "zwctl",
            "quarantine",
            "--zone",
            "shop/db",
            "--comment",
            "INC-42",
        ])
        .unwrap();
        assert!(on);
        assert_eq!(
            args.request(on),
            v1::QuarantineRequest {
                zone: "shop/db".into(),
                container_id: String::new(),
                on: true,
                comment: "INC-42".into(),
                create: false,
            }
        );
        let (args, on) = parse(&["zwctl", "quarantine", "--zone", "shop/new", "--create"]).unwrap();
        assert!(args.request(on).create);
        let (args, on) = parse(&["zwctl", "unquarantine", "--endpoint", "abc"]).unwrap();
        assert!(!on);
        assert_eq!(
            args.request(on),
            v1::QuarantineRequest {
                zone: String::new(),
                container_id: "abc".into(),
                on: false,
                comment: String::new(),
                create: false,
            }
        );
    }

    #[test]
    fn quarantine_needs_exactly_one_target() {
        for command in ["quarantine", "unquarantine"] {
            let err = parse(&["zwctl", command]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
            assert!(
                err.to_string()
                    .contains("--zone <ZONE>|--endpoint <CONTAINER_ID>"),
                "{err}"
            );
            let err = parse(&["zwctl", command, "--zone", "z", "--endpoint", "abc"]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
            let err = parse(&["zwctl", command, "--endpoint", "abc", "--create"]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        }
    }

    #[test]
    fn summary_says_what_changed() {
        let (zone, _) = parse(&["zwctl", "quarantine", "--zone", "shop/db"]).unwrap();
        assert_eq!(
            summary(&result("shop/db", 1), &zone, true),
            "zone shop/db: quarantined (profile version 6)\n"
        );
        assert_eq!(
            summary(&result("", 0), &zone, true),
            "zone shop/db: already quarantined (profile version 6)\n"
        );
        assert_eq!(
            summary(&result("shop/db", 1), &zone, false),
            "zone shop/db: quarantine lifted (profile version 6)\n"
        );
        let (endpoint, _) =
            parse(&["zwctl", "quarantine", "--endpoint", "3f2a9c1e0b7d4e8f9a6b"]).unwrap();
        assert_eq!(
            summary(&result("shop/db", 1), &endpoint, true),
            "endpoint 3f2a9c1e0b7d (zone shop/db): quarantined\n"
        );
        assert_eq!(
            summary(&result("", 0), &endpoint, false),
            "endpoint 3f2a9c1e0b7d: was not quarantined\n"
        );
    }
}
