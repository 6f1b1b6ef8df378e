//! The run record: everything a run produced, as written to `<out>/run.json`.
//!
//! This is the contract between `hmsim run` (which fills it) and every renderer and CI gate
//! (which only read it). Fields are added, never renamed; `schema_version` bumps on a change
//! that an old reader would misread.

use crate::error::ReportError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Current version of the run-record format.
pub const SCHEMA_VERSION: u32 = 1;

/// One run of one scenario with one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Format version, [`SCHEMA_VERSION`] when written by this build.
    pub schema_version: u32,
    /// The scenario's `name`.
    pub scenario: String,
    /// Path of the scenario file as given on the command line.
    pub scenario_file: String,
    /// The seed that drove every random choice of the run.
    pub seed: u64,
    /// Hex SHA-256 over every delivered message and fault, in simulated-time order.
    pub trace_digest: String,
    /// The exact command line that reproduces this run.
    pub reproduce: String,
    /// `git rev-parse HEAD` of the tree that ran, when known.
    pub git_commit: Option<String>,
    /// Version of the hmsim binary.
    pub hmsim_version: String,
    /// Simulated duration of the scenario (without the drain margin), seconds.
    pub duration_s: f64,
    /// Overall verdict.
    pub outcome: Outcome,
    /// One entry per check of the scenario, in scenario order.
    pub checks: Vec<CheckResult>,
    /// Headline numbers.
    pub metrics: Metrics,
    /// Faults as applied, in time order.
    pub faults: Vec<FaultRecord>,
    /// Time series sampled during the run (sessions per node, queue depths, ...).
    pub series: Vec<Series>,
    /// Result tables a scenario wants shown (interop matrix, migration curve, ...).
    pub tables: Vec<Table>,
    /// "Sometimes" coverage: how often each interesting condition was reached.
    pub coverage: BTreeMap<String, u64>,
}

/// Overall verdict of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// True when every check passed and the run finished within its bound.
    pub passed: bool,
    /// Set when the run could not finish (liveness failure, host panic): what it was waiting for.
    pub failure: Option<String>,
}

/// Whether a check passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The property held.
    Pass,
    /// The property was violated; `detail` says how.
    Fail,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Check name as written in the scenario (`no_message_loss`, `migration`, ...).
    pub name: String,
    /// Verdict.
    pub status: Status,
    /// One line a human can act on: counts on success, the first violations on failure.
    pub detail: String,
}

/// Headline numbers of a run. Counters are totals over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Messages clients sent.
    pub sent: u64,
    /// Messages that reached at least one device of their recipient.
    pub delivered: u64,
    /// Deliverable messages that never arrived.
    pub lost: u64,
    /// Extra copies beyond the first on a device.
    pub duplicated: u64,
    /// Send-to-first-delivery latency in simulated milliseconds.
    pub latency_ms: Percentiles,
    /// Wall-clock seconds the simulation took (measured outside the simulation).
    pub wall_time_s: f64,
    /// Simulated seconds per wall-clock second.
    pub sim_seconds_per_wall_second: f64,
    /// Peak resident set size of the process, bytes (Linux `VmHWM`), when known.
    pub peak_rss_bytes: Option<u64>,
    /// Simulation steps (ticks) executed.
    pub steps: u64,
    /// Any further named figures (per-component counters), sorted by name.
    pub extra: BTreeMap<String, f64>,
}

/// Latency distribution summary from an HDR histogram.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// A fault as the runner applied it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// Simulated time, milliseconds since the start.
    pub at_ms: u64,
    /// Fault kind (`crash`, `partition`, ...), or `<kind>/end` when a `for:` window closes.
    pub kind: String,
    /// Targets and parameters, human readable.
    pub detail: String,
}

/// A sampled time series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Name, e.g. `sessions/imp-a-1`.
    pub name: String,
    /// Unit of the values, e.g. `sessions`.
    pub unit: String,
    /// `(simulated seconds, value)` points in time order.
    pub points: Vec<(f64, f64)>,
}

/// A table for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Caption.
    pub title: String,
    /// Column headers.
    pub columns: Vec<String>,
    /// Rows of cells, each as long as `columns`.
    pub rows: Vec<Vec<String>>,
}

impl RunRecord {
    /// Parses a `run.json`, refusing records from a newer schema that this build would misread.
    pub fn from_json(text: &str) -> Result<Self, ReportError> {
        let record: Self = serde_json::from_str(text)?;
        if record.schema_version > SCHEMA_VERSION {
            return Err(ReportError::UnsupportedSchema {
                found: record.schema_version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(record)
    }

    /// Serializes the record as pretty JSON, the `run.json` format.
    pub fn to_json(&self) -> Result<String, ReportError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Checks whose status is [`Status::Fail`], in scenario order.
    pub fn failed_checks(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }
}

impl Outcome {
    /// `PASS` or `FAIL`, as shown in report titles.
    pub fn label(&self) -> &'static str {
        if self.passed { "PASS" } else { "FAIL" }
    }
}

impl Status {
    /// `PASS` or `FAIL`, as shown in report tables.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl Metrics {
    /// Peak RSS in MiB, when known.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        // u64 -> f64 loses precision only above 2^53 bytes, far beyond any real RSS.
        self.peak_rss_bytes.map(|b| b as f64 / (1024.0 * 1024.0))
    }
}

impl Percentiles {
    /// The reported quantiles with their display names, lowest first: p50, p90, p99, p99.9, max.
    pub fn quantiles(&self) -> [(&'static str, f64); 5] {
        [
            ("p50", self.p50),
            ("p90", self.p90),
            ("p99", self.p99),
            ("p99.9", self.p999),
            ("max", self.max),
        ]
    }
}

impl Series {
    /// The chart this series belongs to: its name up to the first `/` (the whole name if none),
    /// so `sessions/imp-a-1` and `sessions/imp-a-2` are drawn together.
    pub fn group(&self) -> &str {
        self.name
            .split_once('/')
            .map_or(&self.name, |(group, _)| group)
    }

    /// At most `points_max` (at least 2) evenly spaced points, always keeping the first and the
    /// last, so a summary shows the start, the end and the shape without thousands of rows.
    pub fn downsampled(&self, points_max: usize) -> Vec<(f64, f64)> {
        let m = points_max.max(2);
        let n = self.points.len();
        if n <= m {
            return self.points.clone();
        }
        (0..m)
            // Rounded index i*(n-1)/(m-1): 0 and n-1 at the ends, strictly increasing for n > m.
            .map(|i| self.points[(i * (n - 1) + (m - 1) / 2) / (m - 1)])
            .collect()
    }
}
