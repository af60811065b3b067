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
