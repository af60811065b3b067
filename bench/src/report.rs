//! `bench/RESULTS.md`: the command, the machine, and every figure with its baseline,
//! ratio, goal and verdict — written only by the benchmark, never by hand.

use std::fmt::Write as _;
use std::process::Command;

#[derive(Default)]
pub struct Report {
    sections: Vec<String>,
}

/// One markdown table under a heading, with notes after it.
pub struct Section {
    title: String,
    rows: Vec<[String; 6]>,
    notes: Vec<String>,
}

impl Section {
    pub fn new(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// figure, zonewarden (median and spread), baseline, ratio, goal, verdict.
    pub fn row(&mut self, cells: [String; 6]) {
        self.rows.push(cells);
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    fn render(&self) -> String {
        let mut s = format!("## {}\n\n", self.title);
        if !self.rows.is_empty() {
            s.push_str("| figure | measured | baseline | ratio | goal | verdict |\n");
            s.push_str("|---|---|---|---|---|---|\n");
            for r in &self.rows {
                let _ = writeln!(s, "| {} |", r.join(" | "));
            }
            s.push('\n');
        }
        for n in &self.notes {
            let _ = writeln!(s, "- {n}");
        }
        s
    }
}

/// A row of latency percentiles in ms: p50 and p99 with the spread, and the verdict of
/// p99 against `goal` when there is one.
pub fn latency_row(what: &str, s: &crate::stats::Samples, goal: Option<f64>) -> [String; 6] {
    use crate::stats::{fmt, ratio};
    let (p50, p99) = (s.p50(), s.p99());
    let (g, v, r) = match goal {
        Some(g) => (
            format!("p99 ≤ {g} ms"),
            verdict(p99 <= g, || {
                format!("p99 {} ms is {:.1}× the goal", fmt(p99), p99 / g)
            }),
            ratio(p99, g),
        ),
        None => ("—".into(), "—".into(), "—".into()),
    };
    [
        format!("{what} (n={})", s.len()),
        format!(
            "p50 {} ms, p99 {} ms ({})",
            fmt(p50),
            fmt(p99),
            s.spread("ms")
        ),
        "the goal".into(),
        r,
        g,
        v,
    ]
}

/// "met" or "NOT met (by how much)".
pub fn verdict(met: bool, miss: impl FnOnce() -> String) -> String {
    if met {
        "met".into()
    } else {
        format!("**NOT met** ({})", miss())
    }
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

impl Report {
    pub fn add(&mut self, section: Section) {
        self.sections.push(section.render());
    }

    pub fn add_failure(&mut self, title: &str, err: &anyhow::Error) {
        self.sections.push(format!(
            "## {title}\n\n**did not run to the end**: `{err:#}`\n"
        ));
    }

    /// A partial run (`--only`) written into an earlier report: this run's sections
    /// replace those of the same number, the others stay as they were, and the header
    /// says which sections which run measured. Where two sections share a number (8:
    /// three nodes, and one enforcer knowing a large cluster), each is told apart by
    /// its title without figures ([`part_key`]): a run of one keeps the other.
    pub fn merge_into(&self, earlier: &str, command: &str, quick: bool, seconds: f64) -> String {
        let (header, old) = split_sections(earlier);
        let (_, new) = split_sections(&self.sections.concat());
        let shared = |n: &str| {
            let count =
                |sections: &[(String, String)]| sections.iter().filter(|(m, _)| m == n).count();
            count(&old) > 1 || count(&new) > 1
        };
        // How the header names a section this run measured: its number, and for a
        // section that shares its number, which one.
        let label = |(n, text): &(String, String)| match shared(n) {
            true => format!("{n} ({})", part_key(text)),
            false => n.clone(),
        };
        let mut replaced: Vec<String> = new.iter().map(label).collect();
        replaced.dedup();
        // A failure of several sections (`2–6`) and the sections it stands for (`2`,
        // `3`, ...) replace each other: the file never shows a failure beside figures
        // of a later run, or old figures beside this run's failure.
        let covered: Vec<u32> = new.iter().flat_map(|(n, _)| section_numbers(n)).collect();
        let measured = |n: &str, key: &str| {
            new.iter().any(|(m, text)| {
                section_numbers(m).contains(&section_order(n)) && part_key(text) == key
            })
        };
        let replaces = |(n, text): &(String, String)| {
            let numbers = section_numbers(n);
            if !numbers.iter().any(|k| covered.contains(k)) {
                return false;
            }
            // A section goes when this run measured it (the same title), or when this
            // run's section of its number is none of the earlier ones (a failure under
            // another title: every earlier one of the number goes). One of several
            // sections of a number measured keeps the others.
            let ours = |m: &String| section_numbers(m).iter().any(|k| numbers.contains(k));
            let known = new.iter().filter(|(m, _)| ours(m)).all(|(_, t)| {
                old.iter()
                    .any(|(o, ot)| o == n && part_key(ot) == part_key(t))
            });
            !known || measured(n, &part_key(text))
        };
        let mut sections: Vec<(String, String)> = old
            .iter()
            .filter(|s| !replaces(s))
            .cloned()
            .chain(new.iter().cloned())
            .collect();
        sections.sort_by_key(|(n, _)| section_order(n));
        // An earlier partial run's line goes once this run measured every section it
        // names again: it would date figures the file no longer holds.
        let superseded = |line: &str| {
            line.strip_prefix("- section ")
                .and_then(|rest| rest.split_once(" measured later by "))
                .is_some_and(|(named, _)| {
                    named.split(", ").all(|n| match n.trim().split_once(" (") {
                        Some((n, key)) => measured(n, key.trim_end_matches(')')),
                        // A number alone: every section of it was measured again.
                        None => {
                            let numbers = section_numbers(n.trim());
                            numbers.iter().all(|k| covered.contains(k))
                                && old
                                    .iter()
                                    .filter(|(m, _)| {
                                        section_numbers(m).iter().any(|k| numbers.contains(k))
                                    })
                                    .all(replaces)
                        }
                    })
                })
        };
        let kept: Vec<&str> = header.lines().filter(|l| !superseded(l)).collect();
        let mut s = kept.join("\n").trim_end().to_owned();
        let _ = writeln!(
            s,
            "\n- section {} measured later by `{command}`{} on {}, commit {}, in {seconds:.0} s; the others by the run above\n",
            replaced.join(", "),
            if quick { " (quick smoke run)" } else { "" },
            sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            sh("git", &["rev-parse", "--short", "HEAD"]),
        );
        for (_, text) in sections {
            s.push_str(text.trim_end());
            s.push_str("\n\n");
        }
        s.trim_end().to_owned() + "\n"
    }

    pub fn render(&self, command: &str, quick: bool, seconds: f64) -> String {
        let mut s = String::from("# zonewarden benchmark results\n\n");
        s.push_str(
            "Written by `zw-bench` (see `bench/README.md`); never edited by hand. Every \
             baseline was measured in the same run on the same machine. Medians with the \
             spread (min–max over repetitions) unless a percentile is named.\n\n",
        );
        let _ = writeln!(
            s,
            "- command: `{command}`{}",
            if quick {
                " (**quick smoke run: too few repetitions to quote**)"
            } else {
                ""
            }
        );
        let _ = writeln!(s, "- date: {}", sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]));
        let dirty = !sh("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
        let _ = writeln!(
            s,
            "- commit: {}{}",
            sh("git", &["rev-parse", "--short", "HEAD"]),
            if dirty {
                " plus uncommitted changes in the working tree (other parts are developed concurrently; the binaries were built from the tree as it was)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "- machine: {} CPUs ({}), kernel {}, {}",
            sh("nproc", &[]),
            cpu_model(),
            sh("uname", &["-r"]),
            sh("nft", &["--version"])
        );
        let _ = writeln!(s, "- duration: {seconds:.0} s");
        s.push_str("- the machine is shared and noisy (other builds ran concurrently): compare ratios, not absolute figures\n\n");
        for sec in &self.sections {
            s.push_str(sec);
            s.push('\n');
        }
        s
    }
}

/// The text before the first `## ` heading, and each section with its number (`7`
/// of `## 7. Watching flows`).
fn split_sections(text: &str) -> (String, Vec<(String, String)>) {
    let mut header = String::new();
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive('\n') {
        if let Some(title) = line.strip_prefix("## ") {
            let number = title.split(['.', ' ']).next().unwrap_or("").to_owned();
            sections.push((number, String::new()));
        }
        match sections.last_mut() {
            Some((_, body)) => body.push_str(line),
            None => header.push_str(line),
        }
    }
    (header, sections)
}

/// Which of the sections of a number `text` is: its title after the number, up to
/// its figures in parentheses, without digits (`8. Cluster mode: one enforcer knowing
/// 100000 remote endpoints (...)` is `Cluster mode: one enforcer knowing remote
/// endpoints`, whatever the scale).
fn part_key(text: &str) -> String {
    let title = text.lines().next().unwrap_or("").trim_start_matches("## ");
    let title = title.split_once(". ").map_or(title, |(_, rest)| rest);
    let title = title.split('(').next().unwrap_or("");
    title
        .split_whitespace()
        .filter(|w| !w.chars().all(|c| c.is_ascii_digit() || c == ','))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The numbers a section's title names: `2–6` names 2 to 6, `8` names 8.
fn section_numbers(number: &str) -> Vec<u32> {
    let mut ends = number
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    match (ends.next(), ends.next()) {
        (Some(first), Some(last)) if first <= last => (first..=last).collect(),
        (Some(first), _) => vec![first],
        // Not a number: it covers nothing and nothing covers it.
        (None, _) => Vec::new(),
    }
}

/// Sections in the order of their numbers (`2–6` with 2).
fn section_order(number: &str) -> u32 {
    number
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_run_replaces_only_its_own_sections() {
        let earlier = "# results\n\n- command: `sudo bench/run`\n\n## 1. CNI\n\nold one\n\n## 7. Flows\n\nold seven\n\n## 8. Later\n\neight\n";
        let mut run = Report::default();
        let mut seven = Section::new("7. Flows");
        seven.note("new seven");
        run.add(seven);
        let merged = run.merge_into(earlier, "sudo bench/run --only flows", false, 34.0);
        assert!(merged.starts_with("# results\n\n- command: `sudo bench/run`\n- section 7 measured later by `sudo bench/run --only flows` on "), "{merged}");
        let one = merged.find("## 1. CNI\n\nold one").unwrap();
        let seven = merged.find("## 7. Flows\n\n- new seven").unwrap();
        let eight = merged.find("## 8. Later\n\neight").unwrap();
        assert!(one < seven && seven < eight, "{merged}");
        assert!(!merged.contains("old seven"), "{merged}");
    }

    #[test]
    fn a_failure_of_several_sections_and_those_sections_replace_each_other() {
        let earlier = "# results\n\n- command: `sudo bench/run`\n\n## 1. CNI\n\none\n\n## 2. Data plane\n\nold two\n\n## 3. Update\n\nold three\n\n## 7. Flows\n\nseven\n";
        let mut failed = Report::default();
        failed.add_failure("2–6. Benchmarks at scale", &anyhow::anyhow!("it broke"));
        let merged = failed.merge_into(earlier, "sudo bench/run --only scale", false, 5.0);
        assert!(merged.contains("## 2–6. Benchmarks at scale"), "{merged}");
        assert!(
            !merged.contains("old two") && !merged.contains("old three"),
            "{merged}"
        );
        assert!(
            merged.contains("one") && merged.contains("seven"),
            "{merged}"
        );
        let mut run = Report::default();
        let mut two = Section::new("2. Data plane");
        two.note("new two");
        run.add(two);
        let again = run.merge_into(&merged, "sudo bench/run --only scale", false, 5.0);
        assert!(!again.contains("it broke"), "{again}");
        let (one, two, seven) = (
            again.find("## 1. CNI").unwrap(),
            again.find("new two").unwrap(),
            again.find("## 7. Flows").unwrap(),
        );
        assert!(one < two && two < seven, "{again}");
    }

    #[test]
    fn a_later_run_of_the_same_sections_replaces_the_earlier_runs_line() {
        let earlier = "# results\n\n- command: `sudo bench/run`\n- section 8, 8 measured later by `x` on then, commit a, in 3 s; the others by the run above\n- section 1 measured later by `y` on then, commit b, in 2 s; the others by the run above\n\n## 1. CNI\n\none\n\n## 8. Cluster\n\neight\n";
        let mut run = Report::default();
        let mut eight = Section::new("8. Cluster");
        eight.note("new eight");
        run.add(eight);
        let merged = run.merge_into(earlier, "sudo bench/run --only cluster", false, 5.0);
        assert!(!merged.contains("commit a,"), "{merged}");
        assert!(
            merged.contains("- section 1 measured later by `y`"),
            "{merged}"
        );
        assert_eq!(
            merged.matches("- section 8 measured later").count(),
            1,
            "{merged}"
        );
    }

    const TWO_EIGHTS: &str = "# results\n\n- command: `sudo bench/run`\n- section 8 measured later by `sudo bench/run --only cluster` on then, commit a, in 3 s; the others by the run above\n\n## 1. CNI\n\none\n\n## 8. Cluster mode: three nodes (1000 zones, 5000 endpoints)\n\nold nodes\n\n## 8. Cluster mode: one enforcer knowing 100000 remote endpoints (1000 other nodes)\n\nold membership\n";

    fn membership(scale: usize, note: &str) -> Report {
        let mut run = Report::default();
        let mut eight = Section::new(&format!(
            "8. Cluster mode: one enforcer knowing {scale} remote endpoints ({} other nodes)",
            scale / 100
        ));
        eight.note(note);
        run.add(eight);
        run
    }

    #[test]
    fn a_run_of_one_of_two_sections_of_a_number_keeps_the_other() {
        let merged = membership(50000, "new membership").merge_into(
            TWO_EIGHTS,
            "sudo bench/run --only membership",
            false,
            80.0,
        );
        let (nodes, ours) = (
            merged.find("old nodes").expect(&merged),
            merged.find("new membership").expect(&merged),
        );
        assert!(nodes < ours, "{merged}");
        assert!(!merged.contains("old membership"), "{merged}");
        // The other section's run still dates it; this run names its own section.
        assert!(merged.contains("commit a,"), "{merged}");
        assert!(
            merged.contains("- section 8 (Cluster mode: one enforcer knowing remote endpoints) measured later by `sudo bench/run --only membership`"),
            "{merged}"
        );
        // A later run of that section replaces its line, not the other's.
        let again = membership(100000, "newer membership").merge_into(
            &merged,
            "sudo bench/run --only membership",
            false,
            80.0,
        );
        assert!(
            again.contains("commit a,") && again.contains("old nodes"),
            "{again}"
        );
        assert!(!again.contains("new membership"), "{again}");
        assert_eq!(
            again
                .matches("(Cluster mode: one enforcer knowing remote endpoints) measured")
                .count(),
            1,
            "{again}"
        );
    }

    #[test]
    fn a_failure_of_one_of_two_sections_of_a_number_replaces_that_one() {
        let mut failed = Report::default();
        failed.add_failure(
            "8. Cluster mode: one enforcer knowing remote endpoints (of a large cluster)",
            &anyhow::anyhow!("it broke"),
        );
        let merged = failed.merge_into(TWO_EIGHTS, "sudo bench/run --only membership", false, 5.0);
        assert!(
            merged.contains("it broke") && merged.contains("old nodes"),
            "{merged}"
        );
        assert!(!merged.contains("old membership"), "{merged}");
        // A failure under a title that is neither: both go.
        let mut failed = Report::default();
        failed.add_failure("8. Cluster mode", &anyhow::anyhow!("it broke"));
        let merged = failed.merge_into(TWO_EIGHTS, "sudo bench/run --only cluster", false, 5.0);
        assert!(
            !merged.contains("old nodes") && !merged.contains("old membership"),
            "{merged}"
        );
        assert!(!merged.contains("commit a,"), "{merged}");
    }
}
