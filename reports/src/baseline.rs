//! The CI regression gate: compare a run record with a baseline record of the same scenario.
//!
//! Performance figures are judged as ratios against the baseline (DEVELOPERS rule: never
//! absolute numbers from one machine); correctness counters (lost, duplicated) as absolute
//! increases, because any new loss is a bug whatever the baseline.

use crate::document::fmt_num;
use crate::markdown::push_table;
use crate::record::{RunRecord, Status};
use serde::{Deserialize, Serialize};
use std::fmt::{self, Write as _};

/// Slack for float rounding when a ratio lands exactly on its limit (120/100 vs 1.2).
const RATIO_EPSILON: f64 = 1e-9;

/// How much worse than the baseline each figure may get before the gate fails.
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
}

impl Default for Thresholds {
    /// p99 +20%, no new loss or duplicate, speed -30%, RSS +25%, wall time +30%: loose enough
    /// for timing noise on shared 2-core CI runners, tight enough to catch a real slowdown.
    fn default() -> Self {
        Thresholds {
            latency_p99_growth_max: 0.20,
            lost_increase_max: 0,
            duplicated_increase_max: 0,
            sim_speed_drop_max: 0.30,
            peak_rss_growth_max: 0.25,
            wall_time_growth_max: 0.30,
        }
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
    /// Strictly better than the baseline.
    Improved,
    /// Equal, or worse but within the allowed limit.
    Unchanged,
    /// Worse than the limit allows (fails the gate).
    Regressed,
    /// Missing on one side, no samples, or no meaningful ratio (baseline zero).
    NotComparable,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Improved => "improved",
            Verdict::Unchanged => "unchanged",
            Verdict::Regressed => "REGRESSED",
            Verdict::NotComparable => "not comparable",
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
    /// Compared figures, in a fixed order.
    pub metrics: Vec<MetricComparison>,
    /// Compared checks: baseline order, then checks new in the current run, then `run`.
    pub checks: Vec<CheckComparison>,
    /// Things a reader must know that are not regressions (different scenario, changed trace).
    pub notes: Vec<String>,
}

/// Compares `current` with `baseline` under `t`: figures, check statuses, and notes when the
/// scenarios differ or the same seed produced a different trace.
pub fn compare(baseline: &RunRecord, current: &RunRecord, t: &Thresholds) -> Comparison {
    Comparison {
        scenario: current.scenario.clone(),
        baseline_seed: baseline.seed,
        current_seed: current.seed,
        baseline_commit: baseline.git_commit.clone(),
        current_commit: current.git_commit.clone(),
        metrics: compare_metrics(baseline, current, t),
        checks: compare_checks(baseline, current),
        notes: notes(baseline, current),
    }
}

/// How a figure is read from a record; `None` when the record does not have it.
type Figure = fn(&RunRecord) -> Option<f64>;

fn compare_metrics(b: &RunRecord, c: &RunRecord, t: &Thresholds) -> Vec<MetricComparison> {
    let growth = |fraction: f64| Limit::RatioAtMost(1.0 + fraction);
    // Counts become f64 only for display and ratios; exact below 2^53.
    let increase = |count: u64| Limit::IncreaseAtMost(count as f64);
    let speed_min = Limit::RatioAtLeast(1.0 - t.sim_speed_drop_max);
    // One row per figure, kept as a table so the set of gated figures reads at a glance.
    #[rustfmt::skip]
    let figures: [(&str, Figure, Limit); 6] = [
        ("latency_p99_ms", latency_p99_ms, growth(t.latency_p99_growth_max)),
        ("lost", |r| Some(r.metrics.lost as f64), increase(t.lost_increase_max)),
        ("duplicated", |r| Some(r.metrics.duplicated as f64), increase(t.duplicated_increase_max)),
        ("sim_seconds_per_wall_second", |r| Some(r.metrics.sim_seconds_per_wall_second), speed_min),
        ("peak_rss_mib", |r| r.metrics.peak_rss_mib(), growth(t.peak_rss_growth_max)),
        ("wall_time_s", |r| Some(r.metrics.wall_time_s), growth(t.wall_time_growth_max)),
    ];
    figures
        .into_iter()
        .map(|(name, figure, allowed)| metric(name, figure(b), figure(c), allowed))
        .collect()
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

fn notes(b: &RunRecord, c: &RunRecord) -> Vec<String> {
    let mut notes = Vec::new();
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
        out.push_str("\n## Figures\n");
        push_table(
            &mut out,
            &header(&[
                "figure", "baseline", "current", "change", "allowed", "verdict",
            ]),
            &self.metric_rows(),
        );
        out.push_str("\n## Checks\n");
        push_table(
            &mut out,
            &header(&["check", "baseline", "current", "verdict"]),
            &self.check_rows(),
        );
        if !self.notes.is_empty() {
            out.push_str("\n## Notes\n\n");
            self.notes.iter().for_each(|n| {
                let _ = writeln!(out, "- {n}");
            });
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

/// `×1.50 (+50.0%)`: the ratio first, as the DEVELOPERS rules quote performance.
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

    fn with_p99(p99: f64) -> RunRecord {
        let mut r = RunRecord::example();
        r.metrics.latency_ms.p99 = p99;
        r
    }

    #[test]
    fn identical_runs_do_not_regress_and_have_no_notes() {
        let r = RunRecord::example();
        let c = compare(&r, &r, &Thresholds::default());
        assert!(!c.regressed());
        assert!(c.notes.is_empty(), "{:?}", c.notes);
        assert!(
            c.metrics.iter().all(|m| m.verdict == Verdict::Unchanged),
            "{:?}",
            c.metrics
        );
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
    fn p99_down_is_an_improvement() {
        let c = compare(&with_p99(100.0), &with_p99(60.0), &Thresholds::default());
        assert_eq!(verdict_of(&c, "latency_p99_ms"), Verdict::Improved);
    }

    #[test]
    fn one_lost_message_from_zero_regresses() {
        let baseline = RunRecord::example();
        let mut current = baseline.clone();
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
        let baseline = RunRecord::example();
        let mut slower = baseline.clone();
        slower.metrics.sim_seconds_per_wall_second = 120.0;
        let c = compare(&baseline, &slower, &Thresholds::default());
        assert_eq!(
            verdict_of(&c, "sim_seconds_per_wall_second"),
            Verdict::Regressed
        );
        let mut faster = baseline.clone();
        faster.metrics.sim_seconds_per_wall_second = 480.0;
        let c = compare(&baseline, &faster, &Thresholds::default());
        assert_eq!(
            verdict_of(&c, "sim_seconds_per_wall_second"),
            Verdict::Improved
        );
    }

    #[test]
    fn rss_and_wall_time_growth_are_gated() {
        let baseline = RunRecord::example();
        let mut current = baseline.clone();
        current.metrics.peak_rss_bytes = Some(200 * 1024 * 1024);
        current.metrics.wall_time_s = 3.0;
        let c = compare(&baseline, &current, &Thresholds::default());
        assert_eq!(verdict_of(&c, "peak_rss_mib"), Verdict::Regressed);
        assert_eq!(
            verdict_of(&c, "wall_time_s"),
            Verdict::Unchanged,
            "+20% < +30%"
        );
        current.metrics.peak_rss_bytes = None;
        let c = compare(&baseline, &current, &Thresholds::default());
        assert_eq!(verdict_of(&c, "peak_rss_mib"), Verdict::NotComparable);
    }

    #[test]
    fn latency_without_samples_is_not_comparable() {
        let baseline = RunRecord::example();
        let mut current = baseline.clone();
        current.metrics.latency_ms = Default::default();
        let c = compare(&baseline, &current, &Thresholds::default());
        assert_eq!(verdict_of(&c, "latency_p99_ms"), Verdict::NotComparable);
    }

    #[test]
    fn a_check_that_passed_and_now_fails_regresses() {
        let baseline = RunRecord::example();
        let mut current = baseline.clone();
        current.checks[0].status = Status::Fail;
        current.checks[3].status = Status::Pass;
        let c = compare(&baseline, &current, &Thresholds::default());
        assert_eq!(verdict_of(&c, "no_message_loss"), Verdict::Regressed);
        assert_eq!(verdict_of(&c, "session_liveness"), Verdict::Improved);
        assert!(c.regressed());
    }

    #[test]
    fn a_run_that_no_longer_finishes_regresses() {
        let baseline = RunRecord::example();
        let mut current = baseline.clone();
        current.outcome.failure = Some("host panicked".into());
        let c = compare(&baseline, &current, &Thresholds::default());
        assert_eq!(verdict_of(&c, "run"), Verdict::Regressed);
    }

    #[test]
    fn changed_digest_and_scenario_are_notes_not_regressions() {
        let baseline = RunRecord::example();
        let mut current = baseline.clone();
        current.trace_digest = "00ff".into();
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
            md.contains("| latency_p99_ms | 100 | 150 | ×1.50 (+50.0%) | ≤ ×1.20 | REGRESSED |"),
            "{md}"
        );
        assert!(
            md.contains("| lost | 0 | 0 | n/a | ≤ +0 | unchanged |"),
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
