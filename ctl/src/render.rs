//! Turning views into text: aligned tables for people, JSON and YAML for scripts.
//!
//! A command converts the enforcer's reply into serde views (`crate::view`), says
//! how one view looks as a table row ([`TableRow`]) and calls [`render_list`] or
//! [`render_object`]. Nothing here prints: the text goes back to `main`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde::Serialize;

use crate::cli::OutputFormat;

/// What a table cell shows when its value is empty, as kubectl does.
pub const NONE: &str = "<none>";

/// Columns are separated by this much space, as kubectl does.
const COLUMN_GAP: usize = 3;

/// The widest line a table has by default (`-o wide` lifts the limit).
pub const TABLE_WIDTH: usize = 120;

/// A column is never cut narrower than this (nor than its title).
const MIN_COLUMN: usize = 8;

/// What ends a cell that was cut to fit [`TABLE_WIDTH`].
const ELLIPSIS: char = '…';

/// Whether tables show every column in full (`-o wide`): set once by `main`.
static WIDE: AtomicBool = AtomicBool::new(false);

/// Whether tables show every column in full (`-o wide`).
pub fn is_wide() -> bool {
    WIDE.load(Ordering::Relaxed)
}

/// Makes every table of this run wide (`-o wide`) or fitted to [`TABLE_WIDTH`].
pub fn set_wide(wide: bool) {
    WIDE.store(wide, Ordering::Relaxed);
}

/// Facts a row needs that do not come from the enforcer.
#[derive(Debug, Clone, Copy)]
pub struct RenderContext {
    /// "Now" for AGE columns, in milliseconds since the Unix epoch.
    pub now_unix_ms: i64,
}

impl RenderContext {
    pub fn now() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            now_unix_ms: i64::try_from(now.as_millis()).unwrap_or(i64::MAX),
        }
    }
}

/// A list of one kind of item, shaped like a kubectl list: `.items[]` in jq.
#[derive(Serialize)]
struct ListView<'a, T> {
    kind: &'static str,
    items: &'a [T],
}

/// How one view is shown as a table row.
pub trait TableRow {
    /// Column titles, in capitals.
    const HEADERS: &'static [&'static str];

    /// Columns shown only with `-o wide` (as `kubectl get -o wide` adds some).
    const WIDE_ONLY: &'static [&'static str] = &[];

    /// One cell per header; an empty cell is shown as [`NONE`].
    fn cells(&self, ctx: &RenderContext) -> Vec<String>;
}

/// The table of `items`: every column with `-o wide`, else without the
/// [`TableRow::WIDE_ONLY`] ones (and fitted to [`TABLE_WIDTH`] by [`table`]).
pub fn rows_table<'a, T: TableRow + 'a>(
    items: impl IntoIterator<Item = &'a T>,
    ctx: &RenderContext,
) -> String {
    let (headers, rows) = without_wide_only(
        T::HEADERS,
        T::WIDE_ONLY,
        items.into_iter().map(|item| item.cells(ctx)),
    );
    table(&headers, rows)
}

/// `headers` and `rows` without the `wide_only` columns, unless `-o wide`.
pub fn without_wide_only<'h>(
    headers: &[&'h str],
    wide_only: &[&str],
    rows: impl IntoIterator<Item = Vec<String>>,
) -> (Vec<&'h str>, Vec<Vec<String>>) {
    let keep: Vec<bool> = headers
        .iter()
        .map(|h| is_wide() || !wide_only.contains(h))
        .collect();
    let rows = rows
        .into_iter()
        .map(|cells| {
            cells
                .into_iter()
                .zip(&keep)
                .filter_map(|(cell, keep)| keep.then_some(cell))
                .collect()
        })
        .collect();
    let headers = headers
        .iter()
        .zip(&keep)
        .filter_map(|(h, keep)| keep.then_some(*h))
        .collect();
    (headers, rows)
}

/// Renders many views of one kind. JSON and YAML wrap them as `{kind, items}`.
/// An empty table renders as the empty string (the caller says "no ... found").
pub fn render_list<T: TableRow + Serialize>(
    kind: &'static str,
    items: &[T],
    format: OutputFormat,
    ctx: &RenderContext,
) -> anyhow::Result<String> {
    match format {
        OutputFormat::Table | OutputFormat::Wide if items.is_empty() => Ok(String::new()),
        OutputFormat::Table | OutputFormat::Wide => Ok(rows_table(items, ctx)),
        OutputFormat::Json | OutputFormat::Yaml => serialize(&ListView { kind, items }, format),
        OutputFormat::Dot | OutputFormat::Mermaid => Err(graph_only(format)),
    }
}

/// Renders one view: a one-row table, or the plain object in JSON or YAML.
pub fn render_object<T: TableRow + Serialize>(
    item: &T,
    format: OutputFormat,
    ctx: &RenderContext,
) -> anyhow::Result<String> {
    match format {
        OutputFormat::Table | OutputFormat::Wide => Ok(rows_table([item], ctx)),
        OutputFormat::Json | OutputFormat::Yaml => serialize(item, format),
        OutputFormat::Dot | OutputFormat::Mermaid => Err(graph_only(format)),
    }
}

/// Renders a result people read as text (a sentence, titled sections of tables)
/// and scripts read as one JSON or YAML object.
pub fn render_text_or_object<T: Serialize>(
    text: impl FnOnce() -> String,
    value: &T,
    format: OutputFormat,
) -> anyhow::Result<String> {
    match format {
        OutputFormat::Table | OutputFormat::Wide => Ok(text()),
        OutputFormat::Json | OutputFormat::Yaml => serialize(value, format),
        OutputFormat::Dot | OutputFormat::Mermaid => Err(graph_only(format)),
    }
}

/// Graph formats draw the zone map; nothing else can be written as one.
pub fn graph_only(format: OutputFormat) -> anyhow::Error {
    let name = if format == OutputFormat::Dot {
        "dot"
    } else {
        "mermaid"
    };
    anyhow::anyhow!(
        "-o {name} draws a graph: only `zwctl zones map` writes it; use -o table, json or yaml here"
    )
}

fn serialize<T: Serialize>(value: &T, format: OutputFormat) -> anyhow::Result<String> {
    match format {
        OutputFormat::Json => {
            let mut text = serde_json::to_string_pretty(value)
                .context("failed to encode the output as JSON")?;
            text.push('\n');
            Ok(text)
        }
        OutputFormat::Yaml => {
            serde_saphyr::to_string(value).context("failed to encode the output as YAML")
        }
        OutputFormat::Table | OutputFormat::Wide | OutputFormat::Dot | OutputFormat::Mermaid => {
            unreachable!("tables and graphs are rendered, not serialized")
        }
    }
}

/// Left-aligned columns, each as wide as its widest cell, no trailing spaces; at
/// most [`TABLE_WIDTH`] characters a line unless `-o wide` (see [`fit_table`]).
pub fn table(headers: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let max = if is_wide() { None } else { Some(TABLE_WIDTH) };
    fit_table(headers, rows, max)
}

/// A table shown indented by two spaces under a section title (`describe`,
/// `profile diff`): [`table`], fitted so that the indented lines fit [`TABLE_WIDTH`].
pub fn nested_table(headers: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let max = if is_wide() {
        None
    } else {
        Some(TABLE_WIDTH - 2)
    };
    fit_table(headers, rows, max)
}

/// [`table`] with an explicit limit: when the columns would make a line longer than
/// `max`, the widest columns are narrowed first (never below [`MIN_COLUMN`] or their
/// title) and a cell cut short ends in `…`.
pub fn fit_table(
    headers: &[&str],
    rows: impl IntoIterator<Item = Vec<String>>,
    max: Option<usize>,
) -> String {
    let mut lines: Vec<Vec<String>> = vec![headers.iter().map(|h| h.to_uppercase()).collect()];
    for row in rows {
        debug_assert_eq!(row.len(), headers.len(), "a row needs one cell per column");
        lines.push(
            row.into_iter()
                .map(|cell| {
                    if cell.is_empty() {
                        NONE.to_owned()
                    } else {
                        printable(&cell)
                    }
                })
                .collect(),
        );
    }
    let mut widths = vec![0; headers.len()];
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    if let Some(max) = max {
        narrow_columns(&mut widths, headers, max);
        for line in lines.iter_mut().skip(1) {
            for (cell, width) in line.iter_mut().zip(&widths) {
                if cell.chars().count() > *width {
                    let mut cut: String = cell.chars().take(width.saturating_sub(1)).collect();
                    cut.push(ELLIPSIS);
                    *cell = cut;
                }
            }
        }
    }
    let mut out = String::new();
    for line in &lines {
        let mut text = String::new();
        for (cell, width) in line.iter().zip(&widths) {
            text.push_str(cell);
            let pad = width - cell.chars().count() + COLUMN_GAP;
            text.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// Narrows columns until a line (columns and gaps) fits in `max`: the last column
/// first, then the one before it, each down to [`MIN_COLUMN`] or its title (the
/// columns on the left say what a row is: a zone, an edge); gives up when no column
/// can give more.
fn narrow_columns(widths: &mut [usize], headers: &[&str], max: usize) {
    let gaps = COLUMN_GAP * widths.len().saturating_sub(1);
    let mut excess = (widths.iter().sum::<usize>() + gaps).saturating_sub(max);
    for (width, header) in widths.iter_mut().zip(headers).rev() {
        if excess == 0 {
            break;
        }
        let floor = header.chars().count().max(MIN_COLUMN);
        let give = width.saturating_sub(floor).min(excess);
        *width -= give;
        excess -= give;
    }
}

/// `text` safe to print on a terminal: control characters (ANSI escapes, carriage
/// returns, newlines in a comment) are shown escaped (`\u{1b}`), never interpreted. A
/// comment, a pod name or a zone's history is anyone's text.
pub fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Text output with every control character but newline and tab shown escaped.
pub fn terminal_safe(text: &str) -> String {
    text.split('\n')
        .map(|line| {
            line.split('\t')
                .map(printable)
                .collect::<Vec<_>>()
                .join("\t")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The age of something created at `created_unix_ms`, as kubectl shows it:
/// `45s`, `3m`, `2h`, `4d`, `1y`. `<unknown>` when the time was never set.
pub fn format_age(created_unix_ms: i64, now_unix_ms: i64) -> String {
    if created_unix_ms <= 0 {
        return "<unknown>".to_owned();
    }
    // A clock a little behind the enforcer's should not print a negative age.
    format_duration_ms(now_unix_ms.saturating_sub(created_unix_ms))
}

/// Like [`format_age`], but empty (shown as [`NONE`]) when the time was never set:
/// for evidence that may be absent, e.g. an approved edge never seen.
pub fn age_or_none(at_unix_ms: i64, now_unix_ms: i64) -> String {
    if at_unix_ms <= 0 {
        String::new()
    } else {
        format_age(at_unix_ms, now_unix_ms)
    }
}

/// A duration in the largest whole unit, as kubectl shows ages: `45s`, `3m`,
/// `2h`, `4d`, `1y`. Negative durations show as `0s`.
pub fn format_duration_ms(ms: i64) -> String {
    let seconds = ms.max(0) / 1000;
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    if seconds < 60 {
        format!("{seconds}s")
    } else if minutes < 60 {
        format!("{minutes}m")
    } else if hours < 24 {
        format!("{hours}h")
    } else if days < 365 {
        format!("{days}d")
    } else {
        format!("{}y", days / 365)
    }
}

/// A configured window exactly, in the largest unit that divides it:
/// `600` is `10m`, `90` stays `90s`, `7200` is `2h`.
pub fn format_window(seconds: u32) -> String {
    match seconds {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `yes` or `no`, for flag columns.
pub fn yes_no(flag: bool) -> String {
    if flag { "yes" } else { "no" }.to_owned()
}

/// The first `max` items comma-joined, then `+N more` for the rest.
pub fn abbreviate_list(items: &[String], max: usize) -> String {
    let shown = items
        .iter()
        .take(max)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",");
    match items.len().saturating_sub(max) {
        0 => shown,
        rest => format!("{shown} +{rest} more"),
    }
}

/// At most `max` characters of `text` (container ids are shown as 12, like docker).
pub fn truncate_chars(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Pet {
        name: String,
        leg_count: u32,
    }

    impl TableRow for Pet {
        const HEADERS: &'static [&'static str] = &["NAME", "LEGS"];
        fn cells(&self, _: &RenderContext) -> Vec<String> {
            vec![self.name.clone(), self.leg_count.to_string()]
        }
    }

    const CTX: RenderContext = RenderContext {
        now_unix_ms: 1_000_000_000,
    };

    #[test]
    fn tables_fit_120_columns_cutting_from_the_right_and_wide_keeps_everything() {
        let edge = format!("{}->shop/db:5432/tcp", "z".repeat(60));
        let sample = "10.244.0.5:40312 -> 10.244.1.7:8080/tcp".to_owned();
        let rows = || {
            vec![vec![
                edge.clone(),
                "approved".to_owned(),
                "x".repeat(30),
                sample.clone(),
            ]]
        };
        let headers = ["EDGE", "STATUS", "APPROVED-IN", "SAMPLE"];
        let fitted = fit_table(&headers, rows(), Some(TABLE_WIDTH));
        for line in fitted.lines() {
            assert!(line.chars().count() <= TABLE_WIDTH, "{line}");
        }
        let row = fitted.lines().nth(1).unwrap();
        assert!(
            row.starts_with(&edge),
            "the first column is kept whole: {row}"
        );
        assert!(row.ends_with('…'), "the last column is cut: {row}");
        let wide = fit_table(&headers, rows(), None);
        assert!(
            wide.contains(&sample) && wide.contains(&"x".repeat(30)),
            "{wide}"
        );
    }

    fn pets() -> Vec<Pet> {
        vec![
            Pet {
                name: "centipede".into(),
                leg_count: 100,
            },
            Pet {
                name: String::new(),
                leg_count: 4,
            },
        ]
    }

    #[test]
    fn table_aligns_columns_under_capital_headers() {
        let text = table(
            &["name", "legs", "note"],
            [
                vec!["centipede".into(), "100".into(), "long".into()],
                vec!["cat".into(), "4".into(), "x".into()],
            ],
        );
        assert_eq!(
            text,
            "NAME        LEGS   NOTE\ncentipede   100    long\ncat         4      x\n"
        );
    }

    #[test]
    fn table_shows_none_for_empty_cells_and_counts_characters_not_bytes() {
        let text = table(
            &["A", "B"],
            [
                vec![String::new(), "1".into()],
                vec!["zoné".into(), String::new()],
            ],
        );
        assert_eq!(text, "A        B\n<none>   1\nzoné     <none>\n");
    }

    #[test]
    fn empty_list_renders_nothing_as_a_table_and_an_empty_list_otherwise() {
        let none: Vec<Pet> = Vec::new();
        assert_eq!(
            render_list("PetList", &none, OutputFormat::Table, &CTX).unwrap(),
            ""
        );
        let json: serde_json::Value =
            serde_json::from_str(&render_list("PetList", &none, OutputFormat::Json, &CTX).unwrap())
                .unwrap();
        assert_eq!(json, serde_json::json!({"kind": "PetList", "items": []}));
    }

    #[test]
    fn list_json_is_kind_and_items_with_camel_case_fields() {
        let text = render_list("PetList", &pets(), OutputFormat::Json, &CTX).unwrap();
        assert!(
            text.ends_with("}\n"),
            "JSON output should end with a newline: {text:?}"
        );
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "PetList", "items": [
                {"name": "centipede", "legCount": 100},
                {"name": "", "legCount": 4},
            ]})
        );
    }

    #[test]
    fn list_yaml_has_the_same_shape_as_json() {
        let text = render_list("PetList", &pets(), OutputFormat::Yaml, &CTX).unwrap();
        assert!(
            text.starts_with("kind: PetList\nitems:\n"),
            "unexpected YAML: {text}"
        );
        assert!(
            text.contains("- name: centipede\n"),
            "unexpected YAML: {text}"
        );
        assert!(text.contains("legCount: 100"), "unexpected YAML: {text}");
        assert!(text.contains("legCount: 4"), "unexpected YAML: {text}");
    }

    #[test]
    fn object_is_one_row_table_or_plain_object() {
        let pet = Pet {
            name: "cat".into(),
            leg_count: 4,
        };
        assert_eq!(
            render_object(&pet, OutputFormat::Table, &CTX).unwrap(),
            "NAME   LEGS\ncat    4\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render_object(&pet, OutputFormat::Json, &CTX).unwrap()).unwrap();
        assert_eq!(json, serde_json::json!({"name": "cat", "legCount": 4}));
        assert_eq!(
            render_object(&pet, OutputFormat::Yaml, &CTX).unwrap(),
            "name: cat\nlegCount: 4\n"
        );
    }

    #[test]
    fn age_is_shown_in_the_largest_whole_unit_like_kubectl() {
        let now = 1_800_000_000_000_i64;
        let ago = |secs: i64| format_age(now - secs * 1000, now);
        assert_eq!(ago(0), "0s");
        assert_eq!(ago(5), "5s");
        assert_eq!(ago(59), "59s");
        assert_eq!(ago(60), "1m");
        assert_eq!(ago(3 * 60 + 59), "3m");
        assert_eq!(ago(3600 - 1), "59m");
        assert_eq!(ago(2 * 3600), "2h");
        assert_eq!(ago(24 * 3600 - 1), "23h");
        assert_eq!(ago(4 * 86400 + 3600), "4d");
        assert_eq!(ago(364 * 86400), "364d");
        assert_eq!(ago(2 * 365 * 86400), "2y");
    }

    #[test]
    fn age_of_unset_or_future_times_is_not_negative() {
        assert_eq!(format_age(0, 5_000), "<unknown>");
        assert_eq!(
            format_age(10_000, 5_000),
            "0s",
            "clock skew must not print a negative age"
        );
        assert_eq!(format_age(999, 1_998), "0s", "a partial second rounds down");
    }

    #[test]
    fn optional_ages_are_empty_when_unset_and_windows_are_exact() {
        assert_eq!(age_or_none(0, 5_000), "");
        assert_eq!(age_or_none(-1, 5_000), "");
        assert_eq!(age_or_none(2_000, 302_000), "5m");
        assert_eq!(format_duration_ms(-5), "0s");
        assert_eq!(format_duration_ms(90_000), "1m");
        assert_eq!(format_window(600), "10m");
        assert_eq!(format_window(90), "90s");
        assert_eq!(format_window(7200), "2h");
        assert_eq!(format_window(86_400), "1d");
        assert_eq!(format_window(0), "0s");
        assert_eq!(yes_no(true), "yes");
        assert_eq!(yes_no(false), "no");
    }

    #[test]
    fn text_or_object_is_the_text_for_tables_and_the_object_otherwise() {
        let pet = Pet {
            name: "cat".into(),
            leg_count: 4,
        };
        let text = || "a cat\n".to_owned();
        assert_eq!(
            render_text_or_object(text, &pet, OutputFormat::Table).unwrap(),
            "a cat\n"
        );
        assert_eq!(
            render_text_or_object(text, &pet, OutputFormat::Yaml).unwrap(),
            "name: cat\nlegCount: 4\n"
        );
    }

    #[test]
    fn lists_are_abbreviated_after_max_items() {
        let items: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        assert_eq!(abbreviate_list(&items, 3), "a,b,c +2 more");
        assert_eq!(abbreviate_list(&items[..3], 3), "a,b,c");
        assert_eq!(abbreviate_list(&[], 3), "");
    }

    #[test]
    fn control_characters_are_shown_escaped_in_tables() {
        let text = table(
            &["reason"],
            [vec!["ok\u{1b}[2J\u{1b}]0;owned\u{7}\r\nx".to_owned()]],
        );
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
        assert!(text.contains("ok\\u{1b}[2J"), "{text:?}");
        assert_eq!(text.lines().count(), 2, "one line per row: {text:?}");
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("0123456789abcdef", 12), "0123456789ab");
        assert_eq!(truncate_chars("short", 12), "short");
        assert_eq!(truncate_chars("ééé", 2), "éé");
    }
}
