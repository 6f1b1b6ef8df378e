//! Merging the run records of a seed sweep (`hmsim report merge`): per scenario, how many seeds
//! ran and failed, how to rerun each failure, and how latency spread across seeds.
//!
//! A scenario is its content, not its name: records are grouped by
//! [`RunRecord::scenario_identity`] (a hash of the scenario text in the record; the file path
//! for older records without it), so two different files that share a `name` are two rows.

use crate::document::fmt_num;
use crate::markdown::{code_span, escape_inline, push_escaped_table, push_table};
use crate::record::RunRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Minimum, median and maximum of one figure across seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Smallest value.
    pub min: f64,
    /// Median (mean of the two middle values for an even count).
    pub median: f64,
    /// Largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of the finite values, `None` when there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let (&min, &max) = (v.first()?, v.last()?);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Some(Spread { min, median, max })
    }
}

/// One failed seed and how to rerun it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedSeed {
    /// The seed.
    pub seed: u64,
    /// The command that reproduces the run.
    pub reproduce: String,
    /// Names of the failed checks, then `run: <why>` if the run did not finish.
    pub reasons: Vec<String>,
}

/// The sweep results of one scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioSummary {
    /// Scenario name.
    pub scenario: String,
    /// What the runs were grouped by: [`RunRecord::scenario_identity`].
    pub identity: String,
    /// Records merged (one per seed, unless shards overlapped).
    pub runs: usize,
    /// Runs whose outcome passed.
    pub passed: usize,
    /// Runs whose outcome failed.
    pub failed: usize,
    /// Every failed run, by seed.
    pub failures: Vec<FailedSeed>,
    /// Latency p99 (ms) across the runs that had latency samples.
    pub latency_p99_ms: Option<Spread>,
    /// Seeds that appear in more than one record (overlapping shards), sorted.
    pub duplicate_seeds: Vec<u64>,
}

/// The merged view of a seed sweep, scenarios sorted by name, then identity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MergedReport {
    /// One summary per scenario.
    pub scenarios: Vec<ScenarioSummary>,
}

/// Groups `records` by scenario content ([`RunRecord::scenario_identity`]) and summarizes
/// each group. Input order does not matter, so shards can be merged in any order with the
/// same result.
pub fn merge(records: &[RunRecord]) -> MergedReport {
    let mut by_scenario: BTreeMap<(&str, String), Vec<&RunRecord>> = BTreeMap::new();
    for r in records {
        let key = (r.scenario.as_str(), r.scenario_identity());
        by_scenario.entry(key).or_default().push(r);
    }
    let scenarios = by_scenario
        .into_iter()
        .map(|((name, identity), runs)| summarize(name, identity, runs))
        .collect();
    MergedReport { scenarios }
}

fn summarize(scenario: &str, identity: String, mut runs: Vec<&RunRecord>) -> ScenarioSummary {
    runs.sort_by_key(|r| r.seed);
    let failures: Vec<FailedSeed> = runs
        .iter()
        .filter(|r| !r.outcome.passed)
        .map(|r| failed_seed(r))
        .collect();
    let sampled = runs.iter().filter(|r| r.metrics.latency_ms.count > 0);
    let mut duplicate_seeds: Vec<u64> = runs
        .windows(2)
        .filter(|w| w[0].seed == w[1].seed)
        .map(|w| w[0].seed)
        .collect();
    duplicate_seeds.dedup();
    ScenarioSummary {
        scenario: scenario.into(),
        identity,
        runs: runs.len(),
        passed: runs.len() - failures.len(),
        failed: failures.len(),
        failures,
        latency_p99_ms: Spread::of(sampled.map(|r| r.metrics.latency_ms.p99)),
        duplicate_seeds,
    }
}

fn failed_seed(r: &RunRecord) -> FailedSeed {
    let mut reasons: Vec<String> = r.failed_checks().map(|c| c.name.clone()).collect();
    reasons.extend(r.outcome.failure.as_ref().map(|why| format!("run: {why}")));
    if reasons.is_empty() {
        reasons.push("outcome failed without a failed check".into());
    }
    FailedSeed {
        seed: r.seed,
        reproduce: r.reproduce.clone(),
        reasons,
    }
}

impl MergedReport {
    /// True when every run of every scenario passed.
    pub fn passed(&self) -> bool {
        self.scenarios.iter().all(|s| s.failed == 0)
    }

    /// The sweep as Markdown: a summary row per scenario, then every failing seed with its
    /// reproduce command.
    pub fn markdown(&self) -> String {
        let runs: usize = self.scenarios.iter().map(|s| s.runs).sum();
        let failed: usize = self.scenarios.iter().map(|s| s.failed).sum();
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        let scenarios = self.scenarios.len();
        let noun = if scenarios == 1 {
            "scenario"
        } else {
            "scenarios"
        };
        let mut out = format!(
            "# Seed sweep: {verdict}\n\n{runs} runs of {scenarios} {noun}, {failed} failed. \
             Runs are grouped by scenario content (a SHA-256 of the scenario text in run.json; \
             the file path for records without it), not by name.\n"
        );
        push_shared_names(&mut out, &self.scenarios);
        let columns = [
            "scenario",
            "content",
            "runs",
            "passed",
            "failed",
            "p99 min / median / max (ms)",
        ];
        let rows: Vec<Vec<String>> = self.scenarios.iter().map(summary_row).collect();
        push_table(&mut out, &to_strings(&columns), &rows);
        for s in self.scenarios.iter().filter(|s| s.failed > 0) {
            push_failures(&mut out, s);
        }
        for s in self
            .scenarios
            .iter()
            .filter(|s| !s.duplicate_seeds.is_empty())
        {
            let seeds: Vec<String> = s.duplicate_seeds.iter().map(u64::to_string).collect();
            let _ = write!(
                out,
                "\nNote: `{}` has seeds merged more than once (overlapping shards?): {}.\n",
                s.scenario,
                seeds.join(", ")
            );
        }
        out
    }
}

fn summary_row(s: &ScenarioSummary) -> Vec<String> {
    let spread = s.latency_p99_ms.map_or_else(
        || "n/a".into(),
        |p| {
            format!(
                "{} / {} / {}",
                fmt_num(p.min),
                fmt_num(p.median),
                fmt_num(p.max)
            )
        },
    );
    let counts = [s.runs, s.passed, s.failed].map(|n| n.to_string());
    let names = vec![s.scenario.clone(), s.identity.clone()];
    [names, counts.to_vec(), vec![spread]].concat()
}

/// A note per name that several different scenarios share, so nobody reads two rows as one.
fn push_shared_names(out: &mut String, scenarios: &[ScenarioSummary]) {
    let mut by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in scenarios {
        by_name.entry(&s.scenario).or_default().push(&s.identity);
    }
    for (name, identities) in by_name.into_iter().filter(|(_, ids)| ids.len() > 1) {
        let _ = write!(
            out,
            "\nNote: {} different scenarios are named `{name}` ({}): one row each.\n",
            identities.len(),
            identities.join(", ")
        );
    }
}

fn push_failures(out: &mut String, s: &ScenarioSummary) {
    let _ = write!(out, "\n## Failures: {} ({})\n", s.scenario, s.identity);
    let rows: Vec<Vec<String>> = s
        .failures
        .iter()
        .map(|f| {
            let reasons = escape_inline(&f.reasons.join(", "));
            vec![f.seed.to_string(), reasons, code_span(&f.reproduce)]
        })
        .collect();
    push_escaped_table(out, &to_strings(&["seed", "failed", "reproduce"]), &rows);
}

fn to_strings(columns: &[&str]) -> Vec<String> {
    columns.iter().map(|c| c.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Status;

    fn run(scenario: &str, seed: u64, passed: bool, p99: f64) -> RunRecord {
        let mut r = RunRecord::example();
        r.scenario = scenario.into();
        r.seed = seed;
        r.reproduce = format!("hmsim run scenarios/{scenario}.yaml --seed {seed}");
        r.outcome.passed = passed;
        r.metrics.latency_ms.p99 = p99;
        r.scenario_text = Some(format!("name: {scenario}\n"));
        if passed {
            r.checks.iter_mut().for_each(|c| c.status = Status::Pass);
        }
        r
    }

    fn sweep() -> Vec<RunRecord> {
        vec![
            run("steady", 3, true, 30.0),
            run("failover", 7, false, 200.0),
            run("failover", 1, true, 100.0),
            run("steady", 1, true, 10.0),
            run("failover", 2, true, 120.0),
            run("failover", 9, false, 90.0),
        ]
    }

    #[test]
    fn counts_runs_passes_and_failures_per_scenario() {
        let m = merge(&sweep());
        let names: Vec<&str> = m.scenarios.iter().map(|s| s.scenario.as_str()).collect();
        assert_eq!(names, ["failover", "steady"]);
        let f = &m.scenarios[0];
        assert_eq!((f.runs, f.passed, f.failed), (4, 2, 2));
        let seeds: Vec<u64> = f.failures.iter().map(|x| x.seed).collect();
        assert_eq!(seeds, [7, 9]);
        assert_eq!(
            f.failures[0].reproduce,
            "hmsim run scenarios/failover.yaml --seed 7"
        );
        assert_eq!(f.failures[0].reasons, ["session_liveness"]);
        let s = &m.scenarios[1];
        assert_eq!((s.runs, s.passed, s.failed), (2, 2, 0));
        assert!(!m.passed());
    }

    #[test]
    fn p99_spread_uses_min_median_max() {
        let m = merge(&sweep());
        let failover = Spread {
            min: 90.0,
            median: 110.0,
            max: 200.0,
        };
        assert_eq!(m.scenarios[0].latency_p99_ms, Some(failover));
        assert_eq!(Spread::of([3.0, 1.0, 2.0]).map(|s| s.median), Some(2.0));
        assert_eq!(Spread::of([f64::NAN]), None);
    }

    #[test]
    fn runs_without_latency_samples_are_left_out_of_the_spread() {
        let mut records = sweep();
        records[1].metrics.latency_ms.count = 0;
        let m = merge(&records);
        assert_eq!(m.scenarios[0].latency_p99_ms.map(|s| s.max), Some(120.0));
    }

    #[test]
    fn merge_is_independent_of_input_order() {
        let mut reversed = sweep();
        reversed.reverse();
        assert_eq!(merge(&sweep()), merge(&reversed));
    }

    #[test]
    fn overlapping_shards_are_reported() {
        let mut records = sweep();
        records.push(run("steady", 3, true, 30.0));
        let m = merge(&records);
        assert_eq!(m.scenarios[1].duplicate_seeds, [3]);
        assert!(
            m.markdown()
                .contains("`steady` has seeds merged more than once")
        );
    }

    #[test]
    fn markdown_lists_each_failing_seed_with_its_command() {
        let md = merge(&sweep()).markdown();
        assert!(
            md.starts_with(
                "# Seed sweep: FAIL\n\n6 runs of 2 scenarios, 2 failed. Runs are grouped"
            ),
            "{md}"
        );
        let failover = merge(&sweep()).scenarios[0].identity.clone();
        assert!(failover.starts_with("sha256:"), "{failover}");
        assert!(
            md.contains(&format!(
                "| failover | {failover} | 4 | 2 | 2 | 90 / 110 / 200 |"
            )),
            "{md}"
        );
        assert!(md.contains("| 2 | 2 | 0 | 10 / 20 / 30 |"), "{md}");
        assert!(md.contains("## Failures: failover (sha256:"));
        let row = "| 7 | session_liveness | `hmsim run scenarios/failover.yaml --seed 7` |";
        assert!(md.contains(row), "{md}");
        assert!(!md.contains("## Failures: steady"));
    }

    #[test]
    fn two_different_files_with_the_same_name_are_two_rows() {
        let mut records = sweep();
        let mut other = run("steady", 5, true, 500.0);
        other.scenario_file = "elsewhere/steady.yaml".into();
        other.scenario_text = Some("name: steady\nduration: 1h\n".into());
        records.push(other);
        let m = merge(&records);
        let steady: Vec<&ScenarioSummary> = m
            .scenarios
            .iter()
            .filter(|s| s.scenario == "steady")
            .collect();
        assert_eq!(steady.len(), 2);
        assert_eq!(steady.iter().map(|s| s.runs).sum::<usize>(), 3);
        assert!(steady.iter().all(|s| s.duplicate_seeds.is_empty()));
        let md = m.markdown();
        assert!(
            md.contains("Note: 2 different scenarios are named `steady`"),
            "{md}"
        );
        // The same text from another path is the same scenario.
        let mut copy = run("steady", 8, true, 20.0);
        copy.scenario_file = "copy/steady.yaml".into();
        let m = merge(&[run("steady", 7, true, 10.0), copy]);
        assert_eq!(m.scenarios.len(), 1);
    }

    #[test]
    fn records_without_scenario_text_group_by_file() {
        let mut a = run("x", 1, true, 1.0);
        let mut b = run("x", 2, true, 1.0);
        (a.scenario_text, b.scenario_text) = (None, None);
        b.scenario_file = "other/x.yaml".into();
        let m = merge(&[a, b]);
        let ids: Vec<&str> = m.scenarios.iter().map(|s| s.identity.as_str()).collect();
        assert_eq!(
            ids,
            [
                "file:other/x.yaml",
                "file:scenarios/failover-node-crash.yaml"
            ]
        );
    }

    #[test]
    fn an_empty_sweep_passes() {
        let m = merge(&[]);
        assert!(m.passed());
        assert!(m.markdown().contains("0 runs of 0 scenarios, 0 failed."));
    }
}
