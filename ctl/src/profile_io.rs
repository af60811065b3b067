//! `zwctl profile export|import`: profiles as YAML for GitOps, and as Kubernetes
//! NetworkPolicies.
//!
//! Export is composed here from `ListProfiles` with the document model of
//! `zonewarden_profiles::export`, the same one the enforcer validates imports with,
//! so an exported file imports as it is and exports again byte for byte.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde::Serialize;
use zonewarden_profiles::export::netpol::{self, NetpolInput};
use zonewarden_profiles::export::{self, ProfileDocument};
use zonewarden_profiles::response::{ResponseRules, ViolationsRule};
use zonewarden_profiles::{Edge, Mode, ZoneName};
use zonewarden_proto::v1;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::client::Enforcer;
use crate::render;
use crate::view::mode_word;

pub const EXPORT_EXAMPLES: &str = "\
The export is a multi-document YAML stream, one `kind: ZoneProfile` document per zone
(sorted by zone, approved edges sorted), each starting with `---`:

  ---
  apiVersion: zonewarden.io/v1
  kind: ZoneProfile
  zone: \"shop/api\"
  mode: enforce
  comment: \"optional\"   # recorded in the history when an import changes the zone
  approvedEdges:
    - \"shop/frontend->shop/api:8080/tcp\"
  rejectedEdges:        # only when the zone rejected some
    - \"shop/api->world:25/tcp\"

No profile version is written (every import bumps it): an export imported and
exported again is the same. Files with the earlier `approved:`/`rejected:` lists and
`version:` lines still import.

Examples:
  # One zone's profile, to review and keep in git
  zwctl profile export shop/api > profiles/shop-api.yaml

  # Every profile of this node in one file
  zwctl profile export --all > profiles.yaml

  # The same profiles as Kubernetes NetworkPolicies (one per zone)
  zwctl profile export --all --format networkpolicy > networkpolicies.yaml";

pub const IMPORT_EXAMPLES: &str = "\
An import sets each listed zone's profile exactly: its mode, and its approved edges
(edges not in the file are removed). Zones not in the file are left alone. The whole
file is validated first; an invalid file is refused with the line and the reason, and
nothing changes. All zones are applied in one step: when one fails, none changes.

Examples:
  # What would importing this file change?
  zwctl profile import -f profiles.yaml --dry-run

  # Apply it, saying why (recorded in each changed profile's history)
  zwctl profile import -f profiles.yaml --comment \"PR #42: api may reach redis\"

  # From a pipe
  git show main:profiles.yaml | zwctl profile import -f -";

/// What `profile export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// zonewarden's own YAML documents (`zwctl profile import` reads them back).
    Yaml,
    /// Kubernetes NetworkPolicies (networking.k8s.io/v1), one per zone.
    Networkpolicy,
}

#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("which")
        .args(["zones", "all"])
        .required(true)
        .multiple(false)
))]
pub struct ExportArgs {
    /// The zones to export (e.g. shop/api).
    #[arg(value_name = "ZONE")]
    pub zones: Vec<String>,

    /// Every zone with a profile or endpoints on this node.
    #[arg(long)]
    pub all: bool,

    /// What to write.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = ExportFormat::Yaml)]
    pub format: ExportFormat,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file to import (`-` reads stdin).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,

    /// Validate and show what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Why: recorded in the history of every changed profile (a document's own
    /// `comment` wins).
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,

    /// Put every imported zone in MODE instead of the file's own: `monitor` applies a
    /// development profile (its edges approved as in the file) that drops nothing and
    /// reports every connection outside it as a violation.
    #[arg(long, value_name = "MODE", value_parser = crate::choice::parser(&Mode::ALL, Mode::as_str, crate::mode::mode_help))]
    pub mode: Option<Mode>,
}

/// One exported document as JSON shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DocumentView {
    api_version: &'static str,
    kind: &'static str,
    zone: String,
    mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
    approved_edges: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rejected_edges: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<crate::view::ResponseView>,
}

impl From<&ProfileDocument> for DocumentView {
    fn from(doc: &ProfileDocument) -> Self {
        Self {
            api_version: export::API_VERSION,
            kind: export::KIND,
            zone: doc.zone.to_string(),
            mode: doc.mode.to_string(),
            comment: doc.comment.clone(),
            approved_edges: doc.approved.iter().map(ToString::to_string).collect(),
            rejected_edges: doc.rejected.iter().map(ToString::to_string).collect(),
            response: (!doc.response.is_empty()).then(|| crate::view::ResponseView {
                violations: doc
                    .response
                    .violations
                    .map(|v| crate::view::ViolationsRuleView {
                        count: v.count,
                        within_seconds: v.within_secs,
                    }),
                new_port: doc.response.new_port,
            }),
        }
    }
}

#[derive(Serialize)]
struct DocumentList {
    kind: &'static str,
    items: Vec<DocumentView>,
}

fn document_of(profile: &v1::Profile) -> anyhow::Result<ProfileDocument> {
    let zone = ZoneName::parse_any(&profile.zone)
        .with_context(|| format!("the enforcer sent an invalid zone {:?}", profile.zone))?;
    let mode = zonewarden_proto::model::mode("mode", profile.mode)
        .with_context(|| format!("zone {zone}: the enforcer sent no valid mode"))?;
    let edges = |texts: &[String]| {
        texts
            .iter()
            .map(|e| e.parse::<Edge>())
            .collect::<Result<BTreeSet<_>, _>>()
            .with_context(|| format!("zone {zone}: the enforcer sent an invalid edge"))
    };
    let approved = edges(&profile.approved)?;
    let rejected = edges(&profile.rejected)?;
    let response = match &profile.response {
        None => ResponseRules::default(),
        Some(r) => ResponseRules {
            violations: (r.violations > 0)
                .then(|| ViolationsRule::new(u64::from(r.violations), u64::from(r.within_seconds)))
                .transpose()
                .with_context(|| {
                    format!("zone {zone}: the enforcer sent invalid response rules")
                })?,
            new_port: r.new_port,
        },
    };
    Ok(ProfileDocument {
        zone,
        mode,
        version: profile.version,
        approved,
        rejected,
        response,
        comment: None,
    })
}

pub async fn export(args: &ExportArgs, global: &GlobalArgs) -> anyhow::Result<String> {
    let mut enforcer = Enforcer::connect(global).await?;
    let all = enforcer
        .list_profiles(v1::ListProfilesRequest::default())
        .await?;
    let documents = all
        .profiles
        .iter()
        .map(document_of)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let known: BTreeSet<&str> = documents.iter().map(|d| d.zone.as_str()).collect();
    if let Some(unknown) = args.zones.iter().find(|z| !known.contains(z.as_str())) {
        anyhow::bail!(
            "zone {unknown:?} has no profile and no endpoints on this node \
             (zwctl get profiles lists every zone that has)"
        );
    }
    let wanted = |d: &&ProfileDocument| args.all || args.zones.iter().any(|z| z == d.zone.as_str());
    match args.format {
        ExportFormat::Yaml => {
            let selected: Vec<ProfileDocument> = documents.iter().filter(wanted).cloned().collect();
            match global.output {
                OutputFormat::Json => {
                    let list = DocumentList {
                        kind: "ZoneProfileList",
                        items: selected.iter().map(DocumentView::from).collect(),
                    };
                    render::render_text_or_object(String::new, &list, OutputFormat::Json)
                }
                _ => Ok(export::render(&selected)),
            }
        }
        ExportFormat::Networkpolicy => {
            if global.output == OutputFormat::Json {
                anyhow::bail!(
                    "--format networkpolicy writes YAML (with comments where a profile cannot be \
                     expressed); leave out -o json"
                );
            }
            let zones: BTreeSet<ZoneName> = documents
                .iter()
                .filter(wanted)
                .map(|d| d.zone.clone())
                .collect();
            // CIDR zones become ipBlocks: ask the enforcer for their prefixes.
            let mut cidr_zones = BTreeMap::new();
            for zone in enforcer.list_zones().await?.zones {
                let nets = zone
                    .cidrs
                    .iter()
                    .filter_map(|c| c.parse().ok())
                    .collect::<Vec<_>>();
                if let (false, Ok(name)) = (nets.is_empty(), ZoneName::parse(&zone.name)) {
                    cidr_zones.insert(name, nets);
                }
            }
            Ok(netpol::render(&NetpolInput {
                documents: &documents,
                zones: &zones,
                cidr_zones: &cidr_zones,
            }))
        }
    }
}

/// What an import changed in one zone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneImportView {
    pub zone: String,
    #[serde(rename = "addedEdges")]
    pub added: Vec<String>,
    #[serde(rename = "removedEdges")]
    pub removed: Vec<String>,
    pub mode_before: String,
    pub mode_after: String,
    pub version_before: u64,
    pub version_after: u64,
    /// The response rules in words, before and after; left out when they stay.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub response_before: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub response_after: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportResultView {
    pub dry_run: bool,
    pub changed_zones: u32,
    pub zones: Vec<ZoneImportView>,
}

impl From<v1::ImportProfilesResponse> for ImportResultView {
    fn from(r: v1::ImportProfilesResponse) -> Self {
        Self {
            dry_run: r.dry_run,
            changed_zones: r.changed_zones,
            zones: r
                .zones
                .into_iter()
                .map(|z| ZoneImportView {
                    zone: z.zone,
                    added: z.added,
                    removed: z.removed,
                    mode_before: mode_word(z.mode_before),
                    mode_after: mode_word(z.mode_after),
                    version_before: z.version_before,
                    version_after: z.version_after,
                    response_before: z.response_before,
                    response_after: z.response_after,
                })
                .collect(),
        }
    }
}

pub async fn import(args: &ImportArgs, global: &GlobalArgs) -> anyhow::Result<String> {
    let name = args.file.display().to_string();
    let text = if name == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the profiles from stdin")?;
        text
    } else {
        std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {name}"))?
    };
    let (text, comment) = match args.mode {
        None => (text, args.comment.clone().unwrap_or_default()),
        Some(mode) => with_mode(&text, mode, args.comment.as_deref())
            .with_context(|| format!("{name} is no profile export"))?,
    };
    let mut enforcer = Enforcer::connect(global).await?;
    let response = enforcer
        .import_profiles(v1::ImportProfilesRequest {
            documents_yaml: text,
            dry_run: args.dry_run,
            comment,
        })
        .await
        .with_context(|| name.clone())?;
    let result = ImportResultView::from(response);
    render::render_text_or_object(|| import_text(&result), &result, global.output)
}

/// `--mode`: the documents with every zone in `mode`, and the comment that says so
/// (recorded in each changed profile's history and the audit log). The file is
/// validated here as the enforcer would, so a bad file is refused before anything is
/// sent.
fn with_mode(text: &str, mode: Mode, comment: Option<&str>) -> anyhow::Result<(String, String)> {
    let mut documents = export::parse(text)?;
    for doc in &mut documents {
        doc.mode = mode;
    }
    let said = format!("imported with --mode {mode}");
    let comment = match comment {
        Some(c) if !c.is_empty() => format!("{c} ({said})"),
        _ => said,
    };
    Ok((export::render(&documents), comment))
}

/// One paragraph per zone with its added and removed edges, then a summary line.
pub fn import_text(result: &ImportResultView) -> String {
    let mut out = String::new();
    for z in &result.zones {
        let changes = z.added.len()
            + z.removed.len()
            + usize::from(!z.mode_after.is_empty())
            + usize::from(!z.response_after.is_empty());
        if changes == 0 {
            out.push_str(&format!(
                "zone {}: unchanged (version {})\n",
                z.zone, z.version_before
            ));
            continue;
        }
        let mut line = format!(
            "zone {}: +{} -{} edge(s)",
            z.zone,
            z.added.len(),
            z.removed.len()
        );
        if !z.mode_after.is_empty() {
            line.push_str(&format!(", mode {} -> {}", z.mode_before, z.mode_after));
        }
        if !z.response_after.is_empty() {
            line.push_str(&format!(
                ", response {} -> {}",
                z.response_before, z.response_after
            ));
        }
        if result.dry_run {
            line.push_str(&format!(", version {}", z.version_before));
        } else {
            line.push_str(&format!(
                ", version {} -> {}",
                z.version_before, z.version_after
            ));
        }
        out.push_str(&line);
        out.push('\n');
        for edge in &z.added {
            out.push_str(&format!("  + {edge}\n"));
        }
        for edge in &z.removed {
            out.push_str(&format!("  - {edge}\n"));
        }
    }
    let total = result.zones.len();
    if result.dry_run {
        out.push_str(&format!(
            "dry run: {} of {total} zone(s) would change; nothing was applied\n",
            result.changed_zones
        ));
    } else {
        out.push_str(&format!(
            "imported: {} of {total} zone(s) changed\n",
            result.changed_zones
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::profile::ProfileCommand;
    use clap::Parser;

    const TWO_ZONES: &str = "---\napiVersion: zonewarden.io/v1\nkind: ZoneProfile\nzone: shop/db\n\
        mode: enforce\nversion: 3\napproved:\n  - \"shop/web->shop/db:5432/tcp\"\n---\n\
        apiVersion: zonewarden.io/v1\nkind: ZoneProfile\nzone: shop/web\nmode: learn\n\
        version: 1\napproved: []\n";

    #[test]
    fn mode_puts_every_zone_in_it_and_keeps_the_edges() {
        let (text, comment) = with_mode(TWO_ZONES, Mode::Monitor, None).unwrap();
        let docs = export::parse(&text).unwrap();
        assert_eq!(docs.len(), 2);
        assert!(docs.iter().all(|d| d.mode == Mode::Monitor), "{text}");
        assert_eq!(docs[0].approved.len(), 1);
        assert_eq!(comment, "imported with --mode monitor");
        let (_, comment) = with_mode(TWO_ZONES, Mode::Monitor, Some("dev profile")).unwrap();
        assert_eq!(comment, "dev profile (imported with --mode monitor)");
        assert!(with_mode("zone: [", Mode::Monitor, None).is_err());
    }

    #[test]
    fn import_mode_takes_the_model_words_only() {
        let parse = |mode: &str| {
            Cli::try_parse_from(["zwctl", "profile", "import", "-f", "p.yaml", "--mode", mode])
        };
        match parse("monitor").unwrap().command {
            Command::Profile(ProfileCommand::Import(args)) => {
                assert_eq!(args.mode, Some(Mode::Monitor))
            }
            other => panic!("expected profile import, got {other:?}"),
        }
        let err = parse("observe").unwrap_err().to_string();
        assert!(
            err.contains("observe") && err.contains("learn, monitor, enforce"),
            "{err}"
        );
    }

    #[test]
    fn import_text_shows_the_diff_per_zone() {
        let result = ImportResultView {
            dry_run: true,
            changed_zones: 1,
            zones: vec![
                ZoneImportView {
                    zone: "shop/api".into(),
                    added: vec!["shop/api->shop/redis:6379/tcp".into()],
                    removed: vec!["shop/api->world:443/tcp".into()],
                    mode_before: "monitor".into(),
                    mode_after: "enforce".into(),
                    version_before: 3,
                    version_after: 3,
                    ..Default::default()
                },
                ZoneImportView {
                    zone: "shop/cache".into(),
                    version_before: 1,
                    version_after: 1,
                    response_before: "none".into(),
                    response_after: "new port".into(),
                    ..Default::default()
                },
                ZoneImportView {
                    zone: "shop/db".into(),
                    version_before: 2,
                    version_after: 2,
                    ..Default::default()
                },
            ],
        };
        assert_eq!(
            import_text(&result),
            "\
zone shop/api: +1 -1 edge(s), mode monitor -> enforce, version 3
  + shop/api->shop/redis:6379/tcp
  - shop/api->world:443/tcp
zone shop/cache: +0 -0 edge(s), response none -> new port, version 1
zone shop/db: unchanged (version 2)
dry run: 1 of 3 zone(s) would change; nothing was applied
"
        );
    }

    #[test]
    fn import_results_print_modes_as_words_and_nothing_when_the_mode_stays() {
        let result = ImportResultView::from(v1::ImportProfilesResponse {
            zones: vec![
                v1::ZoneImport {
                    zone: "shop/api".into(),
                    mode_before: v1::Mode::Monitor.into(),
                    mode_after: v1::Mode::Enforce.into(),
                    ..Default::default()
                },
                v1::ZoneImport {
                    zone: "shop/db".into(),
                    ..Default::default()
                },
            ],
            dry_run: true,
            changed_zones: 1,
        });
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(
            (
                &json["zones"][0]["modeBefore"],
                &json["zones"][0]["modeAfter"]
            ),
            (&serde_json::json!("monitor"), &serde_json::json!("enforce"))
        );
        assert_eq!(
            (
                &json["zones"][1]["modeBefore"],
                &json["zones"][1]["modeAfter"]
            ),
            (&serde_json::json!(""), &serde_json::json!(""))
        );
    }

    #[test]
    fn exported_json_items_carry_api_version_and_kind() {
        let doc = document_of(&v1::Profile {
            zone: "a".into(),
            mode: v1::Mode::Monitor.into(),
            version: 2,
            approved: vec!["a->b:80/tcp".into()],
            ..Default::default()
        })
        .unwrap();
        let json = serde_json::to_value(DocumentView::from(&doc)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"apiVersion": "zonewarden.io/v1", "kind": "ZoneProfile",
                "zone": "a", "mode": "monitor", "approvedEdges": ["a->b:80/tcp"]})
        );
    }
}
