//! The CI regression gate: compare a run record with a baseline record of the same scenario.
//!
//! Performance figures are judged as ratios against the baseline, never as absolute numbers
//! (they hold for one machine only); correctness counters (lost, duplicated) as absolute
//! increases, because any new loss is a bug whatever the baseline.
//!
//! The gate must not cry wolf. Two runs of the same seed with the same trace digest behaved
//! identically: the comparison says so first and compares only timing. Timing is noisy on a
//! shared machine: it is informational for runs shorter than [`Thresholds::timing_run_min_s`],
//! and a change smaller than an absolute floor is no change. A figure is "improved" only when
//! better by more than [`Thresholds::improvement_min_fraction`].

use crate::document::fmt_num;
use crate::markdown::push_table;
use crate::record::{RunRecord, Status};
use serde::{Deserialize, Serialize};
use std::fmt::{self, Write as _};

/// Slack for float rounding when a ratio lands exactly on its limit (120/100 vs 1.2).
const RATIO_EPSILON: f64 = 1e-9;

/// How much worse than the baseline each figure may get before the gate fails, and the noise
/// floors below which a change is not judged. `hmsim compare --thresholds <file.json>` reads
/// these fields; a missing field keeps its default; [`Thresholds::help`] explains each.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Largest allowed growth of latency p99, as a fraction of the baseline (0.20 = +20%).
    pub latency_p99_growth_max: f64,
    /// Largest allowed increase of lost messages (count).
    pub lost_increase_max: u64,
    /// Largest allowed increase of duplicated messages (count).
    pub duplicated_increase_max: u64,
    /// Largest allowed drop of simulated seconds per wall second, as a fraction (0.30 = -30%).
    pub sim_speed_drop_max: f64,
    /// Largest allowed growth of peak RSS, as a fraction of the baseline.
    pub peak_rss_growth_max: f64,
    /// Largest allowed growth of wall time, as a fraction of the baseline.
    pub wall_time_growth_max: f64,
    /// Timing figures (wall time, simulated speed, peak RSS) of a run shorter than this many
    /// wall seconds (either side) are informational: never regressed, never improved.
    pub timing_run_min_s: f64,
    /// Wall time changes smaller than this many seconds are no change.
    pub wall_time_change_min_s: f64,
    /// Peak RSS changes smaller than this many MiB are no change.
    pub peak_rss_change_min_mib: f64,
    /// A figure is improved only when better by more than this fraction (0.05 = 5%); smaller
    /// gains are unchanged. Counts (lost, duplicated) improve on any decrease.
    pub improvement_min_fraction: f64,
}

impl Default for Thresholds {
    /// p99 +20%, no new loss or duplicate, speed -30%, RSS +25%, wall time +30%: loose enough
    /// for timing noise on shared 2-core CI runners, tight enough to catch a real slowdown.
    /// Timing of runs under 5 s is informational; wall time within 1 s and RSS within 16 MiB
    /// is no change; improvements count from 5%.
    fn default() -> Self {
        Thresholds {
            latency_p99_growth_max: 0.20,
            lost_increase_max: 0,
            duplicated_increase_max: 0,
            sim_speed_drop_max: 0.30,
            peak_rss_growth_max: 0.25,
            wall_time_growth_max: 0.30,
            timing_run_min_s: 5.0,
            wall_time_change_min_s: 1.0,
            peak_rss_change_min_mib: 16.0,
            improvement_min_fraction: 0.05,
        }
    }
}

/// Every field of [`Thresholds`] with its meaning, in the order of the help text.
const THRESHOLD_FIELDS: [(&str, &str); 10] = [
    (
        "latency_p99_growth_max",
        "largest allowed growth of latency p99, fraction of the baseline (0.2 = +20%)",
    ),
    (
        "lost_increase_max",
        "largest allowed increase of lost messages, count",
    ),
    (
        "duplicated_increase_max",
        "largest allowed increase of duplicated messages, count",
    ),
    (
        "sim_speed_drop_max",
        "largest allowed drop of simulated s per wall s, fraction (0.3 = -30%)",
    ),
    (
        "peak_rss_growth_max",
        "largest allowed growth of peak RSS, fraction of the baseline",
    ),
    (
        "wall_time_growth_max",
        "largest allowed growth of wall time, fraction of the baseline",
    ),
    (
        "timing_run_min_s",
        "wall seconds below which (either run) timing figures are informational only",
    ),
    (
        "wall_time_change_min_s",
        "wall time changes smaller than this (s) are no change",
    ),
    (
        "peak_rss_change_min_mib",
        "peak RSS changes smaller than this (MiB) are no change",
    ),
    (
        "improvement_min_fraction",
        "a figure improves only when better by more than this fraction",
    ),
];

impl Thresholds {
    /// The `--thresholds` file format for `--help`: every field, its default and its meaning,
    /// and what identical trace digests do.
    pub fn help() -> String {
        let defaults = serde_json::to_value(Thresholds::default()).unwrap_or_default();
        let mut out = String::from(
            "Thresholds file: a JSON object with any of these fields (a missing field keeps \
             its default, an unknown field is an error):\n",
        );
        for (field, meaning) in THRESHOLD_FIELDS {
            let default = defaults
                .get(field)
                .map_or_else(String::new, |v| v.to_string());
            let _ = writeln!(out, "  {field} (default {default}): {meaning}");
        }
        out.push_str(
            "Runs of the same seed with identical trace digests behaved identically: checks, \
             latency, loss and duplicates are not compared, only timing.",
        );
        out
    }
}

/// What a figure may do relative to the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Limit {
    /// `current / baseline` may be at most this (lower is better).
    RatioAtMost(f64),
    /// `current / baseline` must be at least this (higher is better).
    RatioAtLeast(f64),
    /// `current - baseline` may be at most this (lower is better).
    IncreaseAtMost(f64),
}

impl Limit {
    fn higher_is_better(self) -> bool {
        matches!(self, Limit::RatioAtLeast(_))
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::RatioAtMost(r) => write!(f, "≤ ×{r:.2}"),
            Limit::RatioAtLeast(r) => write!(f, "≥ ×{r:.2}"),
            Limit::IncreaseAtMost(d) => write!(f, "≤ +{}", fmt_num(*d)),
        }
    }
}

/// The judgement on one figure or check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Better than the baseline by more than the improvement floor.
    Improved,
    /// Equal, within the noise floor, or worse but within the allowed limit.
    Unchanged,
    /// Worse than the limit allows (fails the gate).
    Regressed,
    /// Missing on one side, no samples, or no meaningful ratio (baseline zero).
    NotComparable,
    /// Shown but never judged: timing of a run too short to measure reliably.
    Informational,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Improved => "improved",
            Verdict::Unchanged => "unchanged",
            Verdict::Regressed => "REGRESSED",
            Verdict::NotComparable => "not comparable",
            Verdict::Informational => "informational",
        })
    }
}

/// One compared figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricComparison {
    /// Figure name with its unit last (`latency_p99_ms`).
    pub name: String,
    /// Baseline value, when the baseline has it.
    pub baseline: Option<f64>,
    /// Current value, when the current run has it.
    pub current: Option<f64>,
    /// `current / baseline`; `None` when either is missing or the baseline is zero.
    pub change_ratio: Option<f64>,
    /// What the thresholds allow.
    pub allowed: Limit,
    /// The judgement.
    pub verdict: Verdict,
    /// Why a change was not judged (noise floor, short run), when that decided the verdict.
    pub note: Option<String>,
}

/// One compared check (and the pseudo-check `run`: did the run finish).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckComparison {
    /// Check name.
    pub name: String,
    /// Status in the baseline, `None` if the baseline has no such check.
    pub baseline: Option<Status>,
    /// Status now, `None` if the check is gone.
    pub current: Option<Status>,
    /// Pass → fail regresses, fail → pass improves.
    pub verdict: Verdict,
}

/// The result of comparing a run with its baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Scenario of the current run.
    pub scenario: String,
    /// Seed of the baseline run.
    pub baseline_seed: u64,
    /// Seed of the current run.
    pub current_seed: u64,
    /// Commit of the baseline run, when known.
    pub baseline_commit: Option<String>,
    /// Commit of the current run, when known.
    pub current_commit: Option<String>,
    /// Same scenario, same seed, same trace digest: the simulated behaviour is identical, so
    /// only timing figures are compared and `checks` is empty.
    pub identical_trace: bool,
    /// Compared figures, in a fixed order.
    pub metrics: Vec<MetricComparison>,
    /// Compared checks: baseline order, then checks new in the current run, then `run`.
    pub checks: Vec<CheckComparison>,
    /// Things a reader must know that are not regressions (different scenario, changed trace).
    pub notes: Vec<String>,
}

/// Compares `current` with `baseline` under `t`: figures, check statuses, and notes when the
/// scenarios differ or the same seed produced a different trace. With identical traces only
/// the timing figures are compared.
pub fn compare(baseline: &RunRecord, current: &RunRecord, t: &Thresholds) -> Comparison {
    let identical_trace = baseline.scenario == current.scenario
        && baseline.seed == current.seed
        && !baseline.trace_digest.is_empty()
        && baseline.trace_digest == current.trace_digest;
    Comparison {
        scenario: current.scenario.clone(),
        baseline_seed: baseline.seed,
        current_seed: current.seed,
        baseline_commit: baseline.git_commit.clone(),
        current_commit: current.git_commit.clone(),
        identical_trace,
        metrics: compare_metrics(baseline, current, t, identical_trace),
        checks: if identical_trace {
            Vec::new()
        } else {
            compare_checks(baseline, current)
        },
        notes: notes(baseline, current, identical_trace),
    }
}

/// How a figure is read from a record; `None` when the record does not have it.
type Figure = fn(&RunRecord) -> Option<f64>;

/// One gated figure: how to read it, what is allowed, the absolute change below which it is
/// noise, and whether it is timing (measured on the machine, not simulated).
struct Gate {
    name: &'static str,
    figure: Figure,
    allowed: Limit,
    noise_abs: f64,
    timing: bool,
}

fn gates(t: &Thresholds) -> [Gate; 6] {
    let growth = |fraction: f64| Limit::RatioAtMost(1.0 + fraction);
    // Counts become f64 only for display and ratios; exact below 2^53.
    let increase = |count: u64| Limit::IncreaseAtMost(count as f64);
    let gate = |name, figure, allowed, noise_abs, timing| Gate {
        name,
        figure,
        allowed,
        noise_abs,
        timing,
    };
    #[rustfmt::skip]
    let gates = [
        gate("latency_p99_ms", latency_p99_ms as Figure, growth(t.latency_p99_growth_max), 0.0, false),
        gate("lost", |r| Some(r.metrics.lost as f64), increase(t.lost_increase_max), 0.0, false),
        gate("duplicated", |r| Some(r.metrics.duplicated as f64), increase(t.duplicated_increase_max), 0.0, false),
        gate("sim_seconds_per_wall_second", |r| Some(r.metrics.sim_seconds_per_wall_second),
            Limit::RatioAtLeast(1.0 - t.sim_speed_drop_max), 0.0, true),
        gate("peak_rss_mib", |r| r.metrics.peak_rss_mib(), growth(t.peak_rss_growth_max),
            t.peak_rss_change_min_mib, true),
        gate("wall_time_s", |r| Some(r.metrics.wall_time_s), growth(t.wall_time_growth_max),
            t.wall_time_change_min_s, true),
    ];
    gates
}

fn compare_metrics(
    b: &RunRecord,
    c: &RunRecord,
    t: &Thresholds,
    identical_trace: bool,
) -> Vec<MetricComparison> {
    let short_run = b.metrics.wall_time_s.min(c.metrics.wall_time_s) < t.timing_run_min_s;
    gates(t)
        .into_iter()
        .filter(|g| g.timing || !identical_trace)
        .map(|g| {
            let mut m = metric(g.name, (g.figure)(b), (g.figure)(c), g.allowed);
            let judged = matches!(m.verdict, Verdict::Improved | Verdict::Regressed);
            if g.timing && short_run && m.verdict != Verdict::NotComparable {
                m.verdict = Verdict::Informational;
                m.note = Some(format!(
                    "run shorter than {} s",
                    fmt_num(t.timing_run_min_s)
                ));
            } else if judged {
                apply_floors(&mut m, g.noise_abs, t.improvement_min_fraction);
            }
            m
        })
        .collect()
}

/// A change smaller than the absolute noise floor, or a gain smaller than the improvement
/// floor, is no change.
fn apply_floors(m: &mut MetricComparison, noise_abs: f64, improvement_min_fraction: f64) {
    let (Some(b), Some(c)) = (m.baseline, m.current) else {
        return;
    };
    if (c - b).abs() < noise_abs {
        m.verdict = Verdict::Unchanged;
        m.note = Some(format!(
            "change below the noise floor of {}",
            fmt_num(noise_abs)
        ));
        return;
    }
    let small_gain = m
        .change_ratio
        .is_some_and(|q| (q - 1.0).abs() <= improvement_min_fraction + RATIO_EPSILON);
    let is_count = matches!(m.allowed, Limit::IncreaseAtMost(_));
    if m.verdict == Verdict::Improved && small_gain && !is_count {
        m.verdict = Verdict::Unchanged;
        m.note = Some(format!(
            "gain below {}%",
            fmt_num(improvement_min_fraction * 100.0)
        ));
    }
}

/// A p99 over zero samples is not a latency: never judge it.
fn latency_p99_ms(r: &RunRecord) -> Option<f64> {
    let latency_ms = &r.metrics.latency_ms;
    (latency_ms.count > 0).then_some(latency_ms.p99)
}

fn metric(
    name: &str,
    baseline: Option<f64>,
    current: Option<f64>,
    allowed: Limit,
) -> MetricComparison {
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    let (baseline, current) = (finite(baseline), finite(current));
    let change_ratio = match (baseline, current) {
        (Some(b), Some(c)) if b != 0.0 => Some(c / b),
        _ => None,
    };
    let verdict = match (baseline, current) {
        (Some(b), Some(c)) => judge(b, c, change_ratio, allowed),
        _ => Verdict::NotComparable,
    };
    MetricComparison {
        name: name.into(),
        baseline,
        current,
        change_ratio,
        allowed,
        verdict,
        note: None,
    }
}

fn judge(baseline: f64, current: f64, ratio: Option<f64>, allowed: Limit) -> Verdict {
    if current == baseline {
        return Verdict::Unchanged;
    }
    if (current > baseline) == allowed.higher_is_better() {
        return Verdict::Improved;
    }
    let within = match (allowed, ratio) {
        (Limit::IncreaseAtMost(d), _) => current - baseline <= d,
        (Limit::RatioAtMost(max), Some(q)) => q <= max + RATIO_EPSILON,
        (Limit::RatioAtLeast(min), Some(q)) => q >= min - RATIO_EPSILON,
        // Worse than a zero baseline: a ratio says nothing (0 → 5 ms is not "×∞").
        (_, None) => return Verdict::NotComparable,
    };
    if within {
        Verdict::Unchanged
    } else {
        Verdict::Regressed
    }
}

fn compare_checks(b: &RunRecord, c: &RunRecord) -> Vec<CheckComparison> {
    let status_in = |r: &RunRecord, name: &str| {
        r.checks
            .iter()
            .find(|check| check.name == name)
            .map(|check| check.status)
    };
    let names = b
        .checks
        .iter()
        .chain(&c.checks)
        .map(|check| check.name.as_str());
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for name in names {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        out.push(check(name, status_in(b, name), status_in(c, name)));
    }
    // The run itself: a new liveness failure or host panic is a regression too.
    let finished = |r: &RunRecord| {
        Some(if r.outcome.failure.is_none() {
            Status::Pass
        } else {
            Status::Fail
        })
    };
    out.push(check("run", finished(b), finished(c)));
    out
}

fn check(name: &str, baseline: Option<Status>, current: Option<Status>) -> CheckComparison {
    let verdict = match (baseline, current) {
        (Some(Status::Pass), Some(Status::Fail)) => Verdict::Regressed,
        (Some(Status::Fail), Some(Status::Pass)) => Verdict::Improved,
        (Some(_), Some(_)) => Verdict::Unchanged,
        _ => Verdict::NotComparable,
    };
    CheckComparison {
        name: name.into(),
        baseline,
        current,
        verdict,
    }
}

fn notes(b: &RunRecord, c: &RunRecord, identical_trace: bool) -> Vec<String> {
    let mut notes = Vec::new();
    if identical_trace {
        notes.push(format!(
            "identical trace digests (seed {}, {}): the simulated behaviour is the same; \
             checks, latency, loss and duplicates are not compared, only timing",
            c.seed, c.trace_digest
        ));
    }
    if b.scenario != c.scenario {
        notes.push(format!(
            "scenarios differ: baseline `{}`, current `{}`; figures may not be comparable",
            b.scenario, c.scenario
        ));
    }
    if b.seed == c.seed && b.trace_digest != c.trace_digest {
        notes.push(format!(
            "same seed {} but the trace digest changed ({} → {}): simulated behaviour changed",
            c.seed, b.trace_digest, c.trace_digest
        ));
    }
    if b.seed != c.seed {
        notes.push(format!(
            "seeds differ ({} vs {}): traces not compared",
            b.seed, c.seed
        ));
    }
    notes
}

impl Comparison {
    /// True when any figure or check regressed: the CI gate fails.
    pub fn regressed(&self) -> bool {
        let metrics = self.metrics.iter().map(|m| m.verdict);
        let checks = self.checks.iter().map(|c| c.verdict);
        metrics.chain(checks).any(|v| v == Verdict::Regressed)
    }

    /// The comparison as Markdown: verdict, a figures table with ratios, a checks table and
    /// the notes.
    pub fn markdown(&self) -> String {
        let verdict = if self.regressed() { "REGRESSED" } else { "OK" };
        let commit = |c: &Option<String>| c.clone().unwrap_or_else(|| "unknown".into());
        let mut out = format!("# Baseline comparison: {}: {verdict}\n\n", self.scenario);
        let _ = writeln!(
            out,
            "Baseline: seed {}, commit {}. Current: seed {}, commit {}.",
            self.baseline_seed,
            commit(&self.baseline_commit),
            self.current_seed,
            commit(&self.current_commit)
        );
        if !self.notes.is_empty() {
            out.push_str("\n## Notes\n\n");
            self.notes.iter().for_each(|n| {
                let _ = writeln!(out, "- {n}");
            });
        }
        out.push_str("\n## Figures\n");
        push_table(
            &mut out,
            &header(&[
                "figure", "baseline", "current", "change", "allowed", "verdict", "note",
            ]),
            &self.metric_rows(),
        );
        out.push_str("\n## Checks\n");
        if self.identical_trace {
            out.push_str("\nNot compared: identical trace digests.\n");
        } else {
            push_table(
                &mut out,
                &header(&["check", "baseline", "current", "verdict"]),
                &self.check_rows(),
            );
        }
        out
    }

    fn metric_rows(&self) -> Vec<Vec<String>> {
        let value = |v: Option<f64>| v.map_or_else(|| "n/a".into(), fmt_num);
        self.metrics
            .iter()
            .map(|m| {
                vec![
                    m.name.clone(),
                    value(m.baseline),
                    value(m.current),
                    m.change_ratio.map_or_else(|| "n/a".into(), fmt_ratio),
                    m.allowed.to_string(),
                    m.verdict.to_string(),
                    m.note.clone().unwrap_or_default(),
                ]
            })
            .collect()
    }

    fn check_rows(&self) -> Vec<Vec<String>> {
        let status = |s: Option<Status>| s.map_or("absent", Status::label).to_string();
        self.checks
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    status(c.baseline),
                    status(c.current),
                    c.verdict.to_string(),
                ]
            })
            .collect()
    }
}

fn header(columns: &[&str]) -> Vec<String> {
    columns.iter().map(|c| c.to_string()).collect()
}

/// `×1.50 (+50.0%)`: the ratio first, the way the project quotes performance.
fn fmt_ratio(ratio: f64) -> String {
    format!("×{ratio:.2} ({:+.1}%)", (ratio - 1.0) * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict_of(c: &Comparison, name: &str) -> Verdict {
        let metric = c.metrics.iter().find(|m| m.name == name).map(|m| m.verdict);
        let check = c.checks.iter().find(|m| m.name == name).map(|m| m.verdict);
        metric.or(check).unwrap()
    }

    /// The example record as a run long enough (25 s) for timing to be judged.
    fn long_run() -> RunRecord {
        let mut r = RunRecord::example();
        r.metrics.wall_time_s = 25.0;
        r.metrics.sim_seconds_per_wall_second = 24.0;
        r
    }

    /// Same seed, different behaviour: a different trace digest.
    fn changed(r: &RunRecord) -> RunRecord {
        let mut c = r.clone();
        c.trace_digest = "0badd16e57".into();
        c
    }

    fn with_p99(p99: f64) -> RunRecord {
        let mut r = long_run();
        r.metrics.latency_ms.p99 = p99;
        r.trace_digest = format!("p99-{p99}");
        r
    }

    #[test]
    fn identical_digests_say_so_first_and_compare_only_timing() {
        // The issue's case: same binary, scenario and seed; wall time 0.10 s then 0.19 s.
        let mut baseline = RunRecord::example();
        baseline.metrics.wall_time_s = 0.10;
        let mut current = baseline.clone();
        current.metrics.wall_time_s = 0.19;
        current.metrics.sim_seconds_per_wall_second = 126.0;
        let c = compare(&baseline, &current, &Thresholds::default());
        assert!(c.identical_trace);
        assert!(!c.regressed(), "{:?}", c.metrics);
        assert!(c.checks.is_empty());
        let names: Vec<&str> = c.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["sim_seconds_per_wall_second", "peak_rss_mib", "wall_time_s"]
        );
        assert_eq!(verdict_of(&c, "wall_time_s"), Verdict::Informational);
        let md = c.markdown();
        assert!(
            md.starts_with("# Baseline comparison: failover-node-crash: OK\n"),
            "{md}"
        );
        let notes_at = md.find("## Notes").unwrap();
        assert!(
            notes_at < md.find("## Figures").unwrap(),
            "notes come first\n{md}"
        );
        assert!(md.contains("- identical trace digests (seed 42,"), "{md}");
        assert!(
            md.contains("Not compared: identical trace digests."),
            "{md}"
        );
        assert!(
            md.contains("| informational | run shorter than 5 s |"),
            "{md}"
        );
    }

    #[test]
    fn timing_below_the_noise_floor_is_unchanged_and_small_gains_are_not_improvements() {
        let baseline = long_run();
        let mut current = changed(&baseline);
        // +0.6 % speed and -0.8 s wall time: noise, not an improvement.
        current.metrics.sim_seconds_per_wall_second = 24.144;
        current.metrics.wall_time_s = 24.2;
        let c = compare(&baseline, &current, &Thresholds::default());
        assert_eq!(
            verdict_of(&c, "sim_seconds_per_wall_second"),
            Verdict::Unchanged
        );
        assert_eq!(verdict_of(&c, "wall_time_s"), Verdict::Unchanged);
        let wall = c.metrics.iter().find(|m| m.name == "wall_time_s").unwrap();
        assert_eq!(
            wall.note.as_deref(),
            Some("change below the noise floor of 1")
        );
        // A short run that doubles its wall time is informational, not a regression.
        let mut short = RunRecord::example();
        short.metrics.wall_time_s = 0.1;
        let mut slower = changed(&short);
        slower.metrics.wall_time_s = 0.2;
        let c = compare(&short, &slower, &Thresholds::default());
        assert_eq!(verdict_of(&c, "wall_time_s"), Verdict::Informational);
        assert!(!c.regressed());
    }

    #[test]
    fn help_documents_every_threshold_field_with_its_default() {
        let help = Thresholds::help();
        let defaults = serde_json::to_value(Thresholds::default()).unwrap();
        let fields = defaults.as_object().unwrap();
        assert_eq!(fields.len(), THRESHOLD_FIELDS.len());
        for (field, value) in fields {
            assert!(
                help.contains(&format!("  {field} (default {value}): ")),
                "{field}\n{help}"
            );
        }
        assert!(help.contains("identical trace digests"));
    }

    #[test]
    fn different_digests_compare_everything_without_notes_of_identity() {
        let r = long_run();
        let c = compare(&r, &changed(&r), &Thresholds::default());
        assert!(!c.identical_trace);
        assert!(!c.regressed());
        assert_eq!(c.metrics.len(), 6);
        assert!(
            c.metrics.iter().all(|m| m.verdict == Verdict::Unchanged),
            "{:?}",
            c.metrics
        );
        assert_eq!(c.notes.len(), 1, "{:?}", c.notes);
        assert!(c.notes[0].contains("trace digest changed"));
    }

    #[test]
    fn p99_up_50_percent_regresses() {
        let c = compare(&with_p99(100.0), &with_p99(150.0), &Thresholds::default());
        let p99 = &c.metrics[0];
        assert_eq!(p99.name, "latency_p99_ms");
        assert_eq!(p99.change_ratio, Some(1.5));
        assert_eq!(p99.verdict, Verdict::Regressed);
        assert!(c.regressed());
    }

    #[test]
    fn p99_up_10_percent_or_exactly_at_the_limit_passes() {
        let t = Thresholds::default();
        let c = compare(&with_p99(100.0), &with_p99(110.0), &t);
        assert_eq!(verdict_of(&c, "latency_p99_ms"), Verdict::Unchanged);
        assert!(!c.regressed());
        let at_limit = compare(&with_p99(100.0), &with_p99(120.0), &t);
        assert!(!at_limit.regressed(), "{:?}", at_limit.metrics[0]);
    }

    #[test]
    fn thresholds_are_overridable() {
        let strict = Thresholds {
            latency_p99_growth_max: 0.05,
            ..Thresholds::default()
        };
        let c = compare(&with_p99(100.0), &with_p99(110.0), &strict);
        assert_eq!(verdict_of(&c, "latency_p99_ms"), Verdict::Regressed);
    }

    #[test]
    fn p99_down_is_an_improvement_but_not_by_a_few_percent() {
        let c = compare(&with_p99(100.0), &with_p99(60.0), &Thresholds::default());
        assert_eq!(verdict_of(&c, "latency_p99_ms"), Verdict::Improved);
        let c = compare(&with_p99(100.0), &with_p99(99.4), &Thresholds::default());
        assert_eq!(verdict_of(&c, "latency_p99_ms"), Verdict::Unchanged);
    }

    #[test]
    fn one_lost_message_from_zero_regresses() {
        let baseline = long_run();
        let mut current = changed(&baseline);
        current.metrics.lost = 1;
        let c = compare(&baseline, &current, &Thresholds::default());
        let lost = c.metrics.iter().find(|m| m.name == "lost").unwrap();
        assert_eq!(
            (lost.change_ratio, lost.verdict),
            (None, Verdict::Regressed)
        );
        assert!(c.regressed());
    }

    #[test]
    fn speed_drop_beyond_30_percent_regresses_and_gain_improves() {
        let baseline = long_run();
        let mut slower = changed(&baseline);
        slower.metrics.sim_seconds_per_wall_second = 12.0;
        let c = compare(&baseline, &slower, &Thresholds::default());
        assert_eq!(
            verdict_of(&c, "sim_seconds_per_wall_second"),
            Verdict::Regressed
        );
        let mut faster = changed(&baseline);
        faster.metrics.sim_seconds_per_wall_second = 48.0;
        let c = compare(&baseline, &faster, &Thresholds::default());
        assert_eq!(
            verdict_of(&c, "sim_seconds_per_wall_second"),
            Verdict::Improved
        );
    }

    #[test]
    fn rss_and_wall_time_growth_are_gated() {
        let baseline = long_run();
        let mut current = changed(&baseline);
        current.metrics.peak_rss_bytes = Some(200 * 1024 * 1024);
        current.metrics.wall_time_s = 30.0;
        let c = compare(&baseline, &current, &Thresholds::default());
        assert_eq!(verdict_of(&c, "peak_rss_mib"), Verdict::Regressed);
        assert_eq!(
            verdict_of(&c, "wall_time_s"),
            Verdict::Unchanged,
            "+20% < +30%"
        );
        current.metrics.wall_time_s = 40.0;
        let c = compare(&baseline, &current, &Thresholds::default());
        assert_eq!(verdict_of(&c, "wall_time_s"), Verdict::Regressed, "+60%");
        current.metrics.peak_rss_bytes = None;
        let c = compare(&baseline, &current, &Thresholds::default());
        assert_eq!(verdict_of(&c, "peak_rss_mib"), Verdict::NotComparable);
    }

    #[test]
    fn latency_without_samples_is_not_comparable() {
        let baseline = long_run();
        let mut current = changed(&baseline);
        current.metrics.latency_ms = Default::default();
        let c = compare(&baseline, &current, &Thresholds::default());
        assert_eq!(verdict_of(&c, "latency_p99_ms"), Verdict::NotComparable);
    }

    #[test]
    fn a_check_that_passed_and_now_fails_regresses() {
        let baseline = long_run();
        let mut current = changed(&baseline);
        current.checks[0].status = Status::Fail;
        current.checks[3].status = Status::Pass;
        let c = compare(&baseline, &current, &Thresholds::default());
        assert_eq!(verdict_of(&c, "no_message_loss"), Verdict::Regressed);
        assert_eq!(verdict_of(&c, "session_liveness"), Verdict::Improved);
        assert!(c.regressed());
    }

    #[test]
    fn a_run_that_no_longer_finishes_regresses() {
        let baseline = long_run();
        let mut current = changed(&baseline);
        current.outcome.failure = Some("host panicked".into());
        let c = compare(&baseline, &current, &Thresholds::default());
        assert_eq!(verdict_of(&c, "run"), Verdict::Regressed);
    }

    #[test]
    fn changed_digest_and_scenario_are_notes_not_regressions() {
        let baseline = long_run();
        let mut current = changed(&baseline);
        current.scenario = "other".into();
        let c = compare(&baseline, &current, &Thresholds::default());
        assert!(!c.regressed());
        assert_eq!(c.notes.len(), 2, "{:?}", c.notes);
        assert!(c.notes[0].contains("scenarios differ"));
        assert!(c.notes[1].contains("same seed 42 but the trace digest changed"));
    }

    #[test]
    fn markdown_quotes_ratios_and_verdicts() {
        let c = compare(&with_p99(100.0), &with_p99(150.0), &Thresholds::default());
        let md = c.markdown();
        assert!(
            md.starts_with("# Baseline comparison: failover-node-crash: REGRESSED\n"),
            "{md}"
        );
        assert!(
            md.contains("| latency_p99_ms | 100 | 150 | ×1.50 (+50.0%) | ≤ ×1.20 | REGRESSED |  |"),
            "{md}"
        );
        assert!(
            md.contains("| lost | 0 | 0 | n/a | ≤ +0 | unchanged |  |"),
            "{md}"
        );
        assert!(
            md.contains("| session_liveness | FAIL | FAIL | unchanged |"),
            "{md}"
        );
    }

    #[test]
    fn thresholds_deserialize_with_defaults_for_missing_fields() {
        let t: Thresholds = serde_json::from_str(r#"{"wall_time_growth_max": 1.0}"#).unwrap();
        assert_eq!(
            t,
            Thresholds {
                wall_time_growth_max: 1.0,
                ..Thresholds::default()
            }
        );
    }
}
