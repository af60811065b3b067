//! `zwctl profile diff ZONE --against FILE`: a zone as this cluster runs it, measured
//! against a profile exported elsewhere (e.g. from staging by `zwctl profile export`).
//!
//! Three findings: the edges this cluster learned (observed) that the file approves
//! nowhere, the edges the file approves (in any of its documents, since one approval
//! allows an edge at both ends) that this cluster never observed, and the zone's mode
//! here against the file's. The comparison itself is [`compare`], pure; exit status 1
//! when anything differs, like `diff`.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;
use zonewarden_profiles::export::{self, ProfileDocument};
use zonewarden_profiles::{Edge, Mode, ZoneName};
use zonewarden_proto::v1;

use crate::CommandOutput;
use crate::cli::GlobalArgs;
use crate::client::Enforcer;
use crate::get;
use crate::render::{self, RenderContext};
use crate::view::{EdgeView, ProfileDiffView};

pub const AGAINST_HELP: &str = "\
With --against FILE, the zone as this cluster runs it is measured against a profile
exported elsewhere (zwctl profile export, e.g. on staging):
  Observed here, not in FILE    edges this cluster learned that FILE approves nowhere
  In FILE, never observed here  edges FILE approves (in any of its documents) that
                                this cluster never learned
  Mode                          the zone's mode here and in FILE
Exit status with --against: 0 when nothing differs, 1 when something differs (or on an
error; stderr says which), 2 on a command line error.

  # Production against the staging profile
  zwctl profile diff shop/api --against staging-profiles.yaml
  zwctl profile diff shop/api --against staging-profiles.yaml -o json | jq .observedNotInFile";

/// What differs, for one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgainstView {
    pub zone: String,
    pub file: String,
    /// The zone's mode on this cluster (`learn` when it has no profile).
    pub mode: String,
    pub file_mode: String,
    pub mode_differs: bool,
    /// Learned here, approved nowhere in the file, with this cluster's evidence.
    pub observed_not_in_file: Vec<EdgeView>,
    /// Approved in the file, never learned here.
    pub in_file_never_observed: Vec<String>,
    /// How many findings: the two lists, plus one for the mode.
    pub differences: usize,
}

/// Compares what this cluster learned of `zone` and its mode with `documents`.
pub fn compare(
    zone: &ZoneName,
    file: &str,
    documents: &[ProfileDocument],
    mode: Mode,
    learned: Vec<EdgeView>,
) -> anyhow::Result<AgainstView> {
    let doc = documents.iter().find(|d| &d.zone == zone).ok_or_else(|| {
        let zones: Vec<&str> = documents.iter().map(|d| d.zone.as_str()).collect();
        anyhow::anyhow!(
            "{file} has no profile of zone {zone} (it has: {}); export it with \
             `zwctl profile export {zone}` where it runs",
            zones.join(", ")
        )
    })?;
    let in_file: BTreeSet<&Edge> = documents
        .iter()
        .flat_map(|d| &d.approved)
        .filter(|e| e.touches(zone))
        .collect();
    let seen: BTreeSet<Edge> = learned.iter().filter_map(|e| e.edge.parse().ok()).collect();
    let observed_not_in_file: Vec<EdgeView> = learned
        .into_iter()
        .filter(|e| {
            e.edge
                .parse::<Edge>()
                .is_ok_and(|edge| !in_file.contains(&edge))
        })
        .collect();
    let in_file_never_observed: Vec<String> = in_file
        .iter()
        .filter(|e| !seen.contains(**e))
        .map(ToString::to_string)
        .collect();
    let mode_differs = mode != doc.mode;
    Ok(AgainstView {
        zone: zone.to_string(),
        file: file.to_owned(),
        mode: mode.to_string(),
        file_mode: doc.mode.to_string(),
        mode_differs,
        differences: observed_not_in_file.len()
            + in_file_never_observed.len()
            + usize::from(mode_differs),
        observed_not_in_file,
        in_file_never_observed,
    })
}

/// Reads and validates FILE as `zwctl profile import` would.
fn read_documents(path: &Path) -> anyhow::Result<(String, Vec<ProfileDocument>)> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
    let documents = export::parse(&text).with_context(|| format!("{name} is no profile export"))?;
    Ok((name, documents))
}

/// Runs `profile diff ZONE --against FILE`: the findings, and exit status 1 when
/// there are any.
pub async fn run(zone: &str, file: &Path, global: &GlobalArgs) -> anyhow::Result<CommandOutput> {
    let zone_name = ZoneName::parse_any(zone).with_context(|| format!("zone {zone:?}"))?;
    // The file first: a bad file is refused before the enforcer is asked anything.
    let (name, documents) = read_documents(file)?;
    let mut enforcer = Enforcer::connect(global).await?;
    let diff = ProfileDiffView::new(
        zone,
        enforcer
            .diff_profile(v1::DiffProfileRequest {
                zone: zone.to_owned(),
            })
            .await?,
    );
    let profiles = enforcer
        .list_profiles(v1::ListProfilesRequest::default())
        .await?;
    let mode = match profiles.profiles.iter().find(|p| p.zone == zone) {
        Some(p) => zonewarden_proto::model::mode("mode", p.mode)
            .with_context(|| format!("zone {zone}: the enforcer sent no valid mode"))?,
        None => Mode::default(),
    };
    let learned: Vec<EdgeView> = [diff.unapproved, diff.rejected_seen, diff.approved_seen]
        .into_iter()
        .flatten()
        .collect();
    let view = compare(&zone_name, &name, &documents, mode, learned)?;
    let ctx = RenderContext::now();
    let stdout = render::render_text_or_object(|| against_text(&view, &ctx), &view, global.output)?;
    let failure = (view.differences > 0).then(|| {
        anyhow::anyhow!(
            "zone {zone} differs from {name}: {} finding(s)",
            view.differences
        )
    });
    Ok(CommandOutput { stdout, failure })
}

fn against_text(view: &AgainstView, ctx: &RenderContext) -> String {
    let mut out = format!(
        "Mode: {} here, {} in {}{}\n",
        view.mode,
        view.file_mode,
        view.file,
        if view.mode_differs { " (differs)" } else { "" }
    );
    out.push_str(&format!(
        "\nObserved here, not in {}: {}\n",
        view.file,
        view.observed_not_in_file.len()
    ));
    let rows = view.observed_not_in_file.iter().map(|edge| {
        let mut cells = vec![edge.edge.clone()];
        cells.extend(get::evidence_cells(edge, ctx));
        cells
    });
    let headers = [
        "EDGE",
        "COUNT",
        "FIRST-SEEN",
        "LAST-SEEN",
        "NODES",
        "SAMPLE",
    ];
    section(
        &mut out,
        render::table(&headers, rows),
        view.observed_not_in_file.is_empty(),
    );
    out.push_str(&format!(
        "\nIn {}, never observed here: {}\n",
        view.file,
        view.in_file_never_observed.len()
    ));
    let rows = view.in_file_never_observed.iter().map(|e| vec![e.clone()]);
    section(
        &mut out,
        render::table(&["EDGE"], rows),
        view.in_file_never_observed.is_empty(),
    );
    out
}

/// An indented table, or `<none>`.
fn section(out: &mut String, table: String, empty: bool) {
    if empty {
        out.push_str(&format!("  {}\n", render::NONE));
        return;
    }
    for line in table.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learned(edge: &str) -> EdgeView {
        EdgeView {
            edge: edge.into(),
            learned: true,
            ..Default::default()
        }
    }

    fn documents() -> Vec<ProfileDocument> {
        export::parse(
            "---\napiVersion: zonewarden.io/v1\nkind: ZoneProfile\nzone: shop/db\nmode: enforce\n\
             version: 3\napproved:\n  - \"shop/web->shop/db:5432/tcp\"\n  - \"shop/batch->shop/db:5432/tcp\"\n\
             ---\napiVersion: zonewarden.io/v1\nkind: ZoneProfile\nzone: shop/web\nmode: enforce\n\
             version: 1\napproved:\n  - \"shop/web->shop/db:6379/tcp\"\n",
        )
        .unwrap()
    }

    #[test]
    fn an_extra_edge_an_unused_approval_and_the_mode_are_found() {
        let zone = ZoneName::parse_any("shop/db").unwrap();
        let view = compare(
            &zone,
            "staging.yaml",
            &documents(),
            Mode::Monitor,
            vec![
                learned("shop/web->shop/db:5432/tcp"),
                learned("shop/web->shop/db:6379/tcp"),
                learned("shop/web->shop/db:22/tcp"),
            ],
        )
        .unwrap();
        let extra: Vec<&str> = view
            .observed_not_in_file
            .iter()
            .map(|e| e.edge.as_str())
            .collect();
        // 6379 is approved by shop/web's document: one approval allows both ends.
        assert_eq!(extra, ["shop/web->shop/db:22/tcp"]);
        assert_eq!(
            view.in_file_never_observed,
            ["shop/batch->shop/db:5432/tcp"]
        );
        assert!(view.mode_differs);
        assert_eq!(
            (view.mode.as_str(), view.file_mode.as_str()),
            ("monitor", "enforce")
        );
        assert_eq!(view.differences, 3);
    }

    #[test]
    fn the_same_zone_has_no_difference() {
        let zone = ZoneName::parse_any("shop/db").unwrap();
        let view = compare(
            &zone,
            "f",
            &documents(),
            Mode::Enforce,
            vec![
                learned("shop/web->shop/db:5432/tcp"),
                learned("shop/batch->shop/db:5432/tcp"),
                learned("shop/web->shop/db:6379/tcp"),
            ],
        )
        .unwrap();
        assert_eq!(view.differences, 0, "{view:?}");
        let text = against_text(&view, &RenderContext { now_unix_ms: 0 });
        assert!(
            text.contains("Mode: enforce here, enforce in f\n"),
            "{text}"
        );
    }

    #[test]
    fn a_zone_the_file_lacks_is_refused_naming_the_zones_it_has() {
        let zone = ZoneName::parse_any("shop/api").unwrap();
        let err = compare(&zone, "f.yaml", &documents(), Mode::Learn, vec![]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("f.yaml has no profile of zone shop/api")
                && text.contains("shop/db, shop/web"),
            "{text}"
        );
    }
}
