//! What a sweep writes and reads back: one [`SeedRecord`] per seed (`<out>/seeds/<seed>.json`),
//! and the [`Summary`] of one or more output directories (`summary.json`, `summary.md`): every
//! failing seed with its minimal scenario, and the coverage: which fault kinds met which
//! checks, which "sometimes" points were reached and which never were.

use super::Profile;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// How a seed ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every check passed.
    Pass,
    /// A check failed, or the run could not finish.
    Fail,
    /// The run took longer than its wall-time budget.
    Timeout,
    /// The run process died without a run record (a panic, a signal).
    Crash,
}

/// Why a seed failed: the failing check (or `run`, `timeout`, `crash`) and its detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The check's name, or `run` (the run did not finish), `timeout`, `crash`.
    pub check: String,
    /// What it saw.
    pub detail: String,
}

impl Failure {
    /// The failure's reason with the numbers and examples taken out (`1 of 40 sent: 3 lost
    /// (e.g. a.b.7)` → `of sent: lost`): two runs fail "for the same reason" when the check
    /// and this agree.
    pub fn reason(&self) -> String {
        let mut depth = 0u32;
        let kept: String = self
            .detail
            .chars()
            .filter(|c| {
                match c {
                    '(' => depth += 1,
                    ')' => depth = depth.saturating_sub(1),
                    _ => return depth == 0 && !c.is_ascii_digit(),
                }
                false
            })
            .collect();
        let words: Vec<&str> = kept.split_whitespace().collect();
        format!("{}: {}", self.check, words.join(" "))
    }

    /// The check and what it saw, numbers kept, cut at [`BRIEF_CHARS_MAX`] characters: for a
    /// console line (the reason drops the numbers a reader needs, "budget of s").
    pub fn brief(&self) -> String {
        let mut out = format!("{}: {}", self.check, self.detail);
        if let Some((cut, _)) = out.char_indices().nth(BRIEF_CHARS_MAX) {
            out.truncate(cut);
            out.push('…');
        }
        out
    }
}

/// The longest failure detail a console line shows: one line of a wide terminal.
pub const BRIEF_CHARS_MAX: usize = 160;

/// One seed's result, `<out>/seeds/<seed>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedRecord {
    /// The seed.
    pub seed: u64,
    /// The generator profile.
    pub profile: Profile,
    /// How it ended.
    pub verdict: Verdict,
    /// What failed (empty when it passed).
    pub failures: Vec<Failure>,
    /// Fault kinds present in the scenario.
    pub fault_kinds: Vec<String>,
    /// Checks the scenario has.
    pub checks: Vec<String>,
    /// "Sometimes" coverage of the run (point → hits).
    pub coverage: BTreeMap<String, u64>,
    /// Wall time of the run, seconds.
    pub wall_s: f64,
    /// The run's trace digest, when it finished.
    pub trace_digest: Option<String>,
    /// The command that replays the seed.
    pub reproduce: String,
    /// The minimal scenario, relative to the output directory, when it was shrunk.
    pub minimal: Option<String>,
}

/// The summary of one or more sweeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// Seeds per verdict.
    pub verdicts: BTreeMap<String, u64>,
    /// Seeds that appeared in more than one input (counted once).
    pub duplicate_seeds: Vec<u64>,
    /// Every failing seed.
    pub failures: Vec<FailingSeed>,
    /// Sum of the runs' wall time, seconds.
    pub run_wall_s: f64,
    /// Fault kind → check → seeds where both were in the scenario.
    pub fault_kinds_by_check: BTreeMap<String, BTreeMap<String, u64>>,
    /// Fault kinds the generator knows that no seed drew.
    pub fault_kinds_never: Vec<String>,
    /// "Sometimes" point → total hits across seeds.
    pub sometimes: BTreeMap<String, u64>,
    /// Points some run knew but none reached.
    pub sometimes_never: Vec<String>,
}

/// A failing seed in the summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailingSeed {
    /// The seed.
    pub seed: u64,
    /// Its verdict.
    pub verdict: Verdict,
    /// What failed.
    pub failures: Vec<Failure>,
    /// Its minimal scenario (path as written by the shard that ran it).
    pub minimal: Option<String>,
    /// The command that replays it.
    pub reproduce: String,
}

/// Reads every seed record under `<dir>/seeds/`.
pub fn read_dir(dir: &Path) -> Result<Vec<SeedRecord>, String> {
    let seeds = dir.join("seeds");
    let entries = std::fs::read_dir(&seeds).map_err(|e| format!("{}: {e}", seeds.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect()
}

/// The summary of seed records gathered from one or more sweeps (`dirs` names where each
/// came from, for the minimal scenarios' paths).
pub fn summarize(records: &[(PathBuf, SeedRecord)]) -> Summary {
    let mut s = Summary::default();
    let mut seen = BTreeSet::new();
    let mut drawn = BTreeSet::new();
    for (dir, r) in records {
        if !seen.insert(r.seed) {
            s.duplicate_seeds.push(r.seed);
            continue;
        }
        s.seeds += 1;
        s.run_wall_s += r.wall_s;
        let v = serde_json::to_value(r.verdict).expect("a verdict serializes");
        *s.verdicts
            .entry(v.as_str().unwrap_or("?").into())
            .or_default() += 1;
        for k in &r.fault_kinds {
            drawn.insert(k.clone());
            let row = s.fault_kinds_by_check.entry(k.clone()).or_default();
            for c in &r.checks {
                *row.entry(c.clone()).or_default() += 1;
            }
        }
        for (p, n) in &r.coverage {
            *s.sometimes.entry(p.clone()).or_default() += n;
        }
        if r.verdict != Verdict::Pass {
            s.failures.push(FailingSeed {
                seed: r.seed,
                verdict: r.verdict,
                failures: r.failures.clone(),
                minimal: r
                    .minimal
                    .as_ref()
                    .map(|m| dir.join(m).display().to_string()),
                reproduce: r.reproduce.clone(),
            });
        }
    }
    s.fault_kinds_never = super::generator::FAULT_KINDS
        .iter()
        .filter(|k| !drawn.contains(**k))
        .map(|k| k.to_string())
        .collect();
    s.sometimes_never = s
        .sometimes
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(p, _)| p.clone())
        .collect();
    s
}

impl Summary {
    /// Whether every seed passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The summary as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = format!("# hmsim explore: {} seeds\n\n", self.seeds);
        let verdicts: Vec<String> = self
            .verdicts
            .iter()
            .map(|(v, n)| format!("{n} {v}"))
            .collect();
        out.push_str(&format!(
            "{} ({:.0} s of run wall time)\n\n",
            verdicts.join(", "),
            self.run_wall_s
        ));
        if !self.duplicate_seeds.is_empty() {
            out.push_str(&format!(
                "Seeds run by more than one shard (counted once): {:?}\n\n",
                self.duplicate_seeds
            ));
        }
        out.push_str(&self.failures_md());
        out.push_str(&self.coverage_md());
        out
    }

    fn failures_md(&self) -> String {
        if self.failures.is_empty() {
            return "## Failures\n\nNone.\n\n".into();
        }
        let mut out = String::from(
            "## Failures\n\n| seed | verdict | check | detail | minimal scenario |\n|---|---|---|---|---|\n",
        );
        for f in &self.failures {
            let first = f.failures.first();
            out.push_str(&format!(
                "| {} | {:?} | {} | {} | {} |\n",
                f.seed,
                f.verdict,
                first.map(|x| x.check.as_str()).unwrap_or("-"),
                first.map(|x| cell(&x.detail)).unwrap_or_default(),
                f.minimal.as_deref().unwrap_or("(not shrunk)")
            ));
        }
        out.push('\n');
        for f in &self.failures {
            out.push_str(&format!("- seed {}: `{}`\n", f.seed, f.reproduce));
        }
        out.push('\n');
        out
    }

    fn coverage_md(&self) -> String {
        let checks: BTreeSet<&String> = self
            .fault_kinds_by_check
            .values()
            .flat_map(|row| row.keys())
            .collect();
        let mut out =
            String::from("## Coverage\n\nSeeds where a fault kind met a check:\n\n| fault kind |");
        for c in &checks {
            out.push_str(&format!(" {c} |"));
        }
        out.push_str(&format!("\n|---|{}\n", "---|".repeat(checks.len())));
        for (k, row) in &self.fault_kinds_by_check {
            out.push_str(&format!("| {k} |"));
            for c in &checks {
                out.push_str(&format!(" {} |", row.get(*c).copied().unwrap_or(0)));
            }
            out.push('\n');
        }
        out.push_str(&format!(
            "\nFault kinds never drawn: {}\n\n",
            list(&self.fault_kinds_never)
        ));
        out.push_str("\"Sometimes\" points reached (hits over all seeds):\n\n");
        for (p, n) in self.sometimes.iter().filter(|(_, n)| **n > 0) {
            out.push_str(&format!("- {p}: {n}\n"));
        }
        out.push_str(&format!(
            "\n\"Sometimes\" points never reached: {}\n",
            list(&self.sometimes_never)
        ));
        out
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// A table cell: one line, no pipes, at most 160 characters.
fn cell(s: &str) -> String {
    let one: String = s.replace(['|', '\n'], " ");
    match one.char_indices().nth(160) {
        Some((i, _)) => format!("{}…", &one[..i]),
        None => one,
    }
}

/// Writes `summary.json` and `summary.md` into `dir`.
pub fn write(dir: &Path, s: &Summary) -> Result<(), String> {
    let json = serde_json::to_string_pretty(s).expect("a summary serializes");
    for (name, text) in [("summary.json", json), ("summary.md", s.markdown())] {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

/// Merges the sweeps in `dirs` (each with a `seeds/` folder) into one summary.
pub fn merge(dirs: &[PathBuf]) -> Result<Summary, String> {
    let mut all = Vec::new();
    for d in dirs {
        all.extend(read_dir(d)?.into_iter().map(|r| (d.clone(), r)));
    }
    all.sort_by_key(|(_, r)| r.seed);
    Ok(summarize(&all))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seed: u64, verdict: Verdict, kinds: &[&str]) -> SeedRecord {
        SeedRecord {
            seed,
            profile: Profile::Small,
            verdict,
            failures: match verdict {
                Verdict::Pass => Vec::new(),
                _ => vec![Failure {
                    check: "no_message_loss".into(),
                    detail: "1 of 40 sent: 3 lost (e.g. a.b.7)".into(),
                }],
            },
            fault_kinds: kinds.iter().map(|k| k.to_string()).collect(),
            checks: vec!["no_message_loss".into()],
            coverage: BTreeMap::from([("a".into(), seed), ("b".into(), 0)]),
            wall_s: 1.0,
            trace_digest: None,
            reproduce: format!("hmsim run s/{seed}.yaml"),
            minimal: None,
        }
    }

    /// The verbose line keeps the numbers the reason drops, and stays one line.
    #[test]
    fn a_brief_keeps_the_numbers_and_is_cut() {
        let f = Failure {
            check: "timeout".into(),
            detail: "no result within the budget of 5400 s".into(),
        };
        assert_eq!(f.brief(), "timeout: no result within the budget of 5400 s");
        assert_eq!(f.reason(), "timeout: no result within the budget of s");
        let long = Failure {
            check: "c".into(),
            detail: "é".repeat(500),
        };
        assert_eq!(long.brief().chars().count(), BRIEF_CHARS_MAX + 1);
    }

    #[test]
    fn the_reason_leaves_out_numbers_and_examples() {
        let f = &record(1, Verdict::Fail, &[]).failures[0];
        assert_eq!(f.reason(), "no_message_loss: of sent: lost");
    }

    #[test]
    fn a_summary_counts_each_seed_once_and_lists_what_was_never_reached() {
        let d = PathBuf::from("shard-0");
        let rs = vec![
            (d.clone(), record(1, Verdict::Pass, &["crash"])),
            (d.clone(), record(2, Verdict::Fail, &["crash", "hold"])),
            (d.clone(), record(2, Verdict::Fail, &["crash", "hold"])),
        ];
        let s = summarize(&rs);
        assert_eq!(s.seeds, 2);
        assert_eq!(s.duplicate_seeds, vec![2]);
        assert_eq!(s.failures.len(), 1);
        assert_eq!(s.fault_kinds_by_check["crash"]["no_message_loss"], 2);
        assert!(s.fault_kinds_never.contains(&"kms_outage".to_string()));
        assert_eq!(s.sometimes["a"], 3);
        assert_eq!(s.sometimes_never, vec!["b".to_string()]);
        assert!(s.markdown().contains("| 2 | Fail | no_message_loss |"));
    }
}
