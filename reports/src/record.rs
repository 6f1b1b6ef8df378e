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
///
/// Fields marked `#[serde(default)]` were added after schema version 1 was first written: a
/// record without them still loads, and the reports fall back to what they can infer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// Coverage points this scenario cannot reach, with the reason (`no connector in this
    /// scenario`): shown as "not applicable", not as a miss.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub coverage_not_applicable: BTreeMap<String, String>,
    /// Sent, delivered, lost and at-risk messages and latency per time bucket, by send time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_timeline: Option<DeliveryTimeline>,
    /// The scenario file's text as run: `report merge` groups runs by its hash, so two
    /// different files with the same `name` stay apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario_text: Option<String>,
    /// Hex SHA-256 of the scenario file's bytes, for runs whose record must not carry the text
    /// (a scenario holding credentials); preferred over hashing `scenario_text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario_sha256: Option<String>,
}

/// Overall verdict of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// Samples larger than the histogram can hold, recorded at its largest value: when not
    /// zero, `max` (and any quantile equal to it) is a lower bound.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub clamped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A fault as the runner applied it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// Simulated time, milliseconds since the start.
    pub at_ms: u64,
    /// Fault kind (`crash`, `partition`, ...), or `<kind>/end` when a `for:` window closes.
    pub kind: String,
    /// Targets and parameters, human readable.
    pub detail: String,
}

/// A sampled time series.
///
/// `kind`, `sampling` and `value_labels` may be absent (records written before they existed):
/// [`Series::kind_or_inferred`], [`Series::sampling_or_inferred`] and
/// [`Series::value_labels_or_inferred`] then infer them from the name, as
/// [`Series::unit_or_inferred`] does for a unit that only repeats the group name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Name, e.g. `sessions/imp-a-1`: `<group>/<node...>/<member>`.
    pub name: String,
    /// Unit of the values, e.g. `sessions`. Older records repeat the group name here; the
    /// reports then infer the unit from the name ([`Series::unit_or_inferred`]).
    pub unit: String,
    /// `(simulated seconds, value)` points in time order.
    pub points: Vec<(f64, f64)>,
    /// How values between two points are drawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SeriesKind>,
    /// How the points were taken, which says what a long interval between points means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<Sampling>,
    /// Names for values of an enumeration (`prg_state`: 1 = `Normal`), shown on the y axis.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_labels: Vec<ValueLabel>,
}

/// How a series is drawn between its points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    /// A count or a state: the value holds until the next point (a staircase).
    Step,
    /// A sampled measure of something continuous (a rate, a latency): points are joined.
    Line,
}

/// How a series' points were taken.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// One point every `interval_s` while the source could be read; a longer interval means
    /// the source was missing (host down, node absent) and is drawn as a gap.
    Periodic {
        /// Sampling period, simulated seconds.
        interval_s: f64,
    },
    /// One point per change (a cumulative count): the value holds between points, never a gap.
    OnChange,
}

/// A name for one value of an enumerated series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueLabel {
    /// The value as recorded in `points`.
    pub value: f64,
    /// What it means (`Running in Backup Mode`).
    pub label: String,
}

/// Delivery over time: messages grouped by the bucket in which they were sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeliveryTimeline {
    /// Width of every bucket, simulated seconds.
    pub bucket_s: f64,
    /// Buckets in time order (empty buckets may be left out).
    pub buckets: Vec<DeliveryBucket>,
}

/// The messages sent during one bucket and what became of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeliveryBucket {
    /// Start of the bucket, simulated seconds.
    pub start_s: f64,
    /// Messages sent in the bucket.
    pub sent: u64,
    /// Of those, delivered to at least one device of the recipient.
    pub delivered: u64,
    /// Of those, deliverable but never delivered (the loss the checks fail on).
    pub lost: u64,
    /// Of those, undelivered but sent close enough to a fault that loss is allowed.
    pub at_risk: u64,
    /// Send-to-first-delivery latency of the delivered ones, simulated ms.
    pub latency_ms: Percentiles,
}

/// A table for the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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

    /// Why the run failed, one line each, for the top of a report or console summary: the run
    /// itself when it did not finish, then every failed check as `name: detail`. Empty when
    /// the run passed. Each line is at most [`FAILURE_LINE_CHARS_MAX`] characters.
    pub fn failure_lines(&self) -> Vec<String> {
        if self.outcome.passed {
            return Vec::new();
        }
        let run = self
            .outcome
            .failure
            .iter()
            .map(|f| format!("run did not finish: {f}"));
        let checks = self
            .failed_checks()
            .map(|c| format!("{}: {}", c.name, c.detail));
        let mut lines: Vec<String> = run.chain(checks).map(|l| one_line(&l)).collect();
        if lines.is_empty() {
            lines.push("the run failed without a failed check".into());
        }
        lines
    }

    /// What identifies the scenario's content: `sha256:<first 16 hex digits>` of the scenario
    /// (`scenario_sha256`, else the hash of `scenario_text`), else `file:<scenario_file>`
    /// (older records). Two different files with the same `name` have different identities.
    pub fn scenario_identity(&self) -> String {
        use sha2::{Digest, Sha256};
        /// Hex digits shown: 64 bits tell scenarios of one sweep apart.
        const SHOWN_HEX_DIGITS: usize = 16;
        let hex = match (&self.scenario_sha256, &self.scenario_text) {
            (Some(declared), _) => declared.to_ascii_lowercase(),
            (None, Some(text)) => Sha256::digest(text.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            (None, None) => return format!("file:{}", self.scenario_file),
        };
        let shown: String = hex.chars().take(SHOWN_HEX_DIGITS).collect();
        format!("sha256:{shown}")
    }

    /// The end of the time axis of every plot: the scenario's duration, or later if samples,
    /// faults or delivery buckets go on (the drain after the scenario).
    pub fn time_span_s(&self) -> f64 {
        let samples = self
            .series
            .iter()
            .filter_map(|s| s.points.last())
            .map(|p| p.0);
        // Milliseconds fit f64 exactly far beyond any simulated duration.
        let faults = self.faults.iter().map(|f| f.at_ms as f64 / 1000.0);
        let buckets = self
            .delivery_timeline
            .iter()
            .flat_map(|t| t.buckets.last().map(|b| b.start_s + t.bucket_s));
        samples
            .chain(faults)
            .chain(buckets)
            .filter(|t| t.is_finite())
            .fold(self.duration_s.max(1.0), f64::max)
    }
}

/// A failure line longer than this is cut: the report's table has the whole detail.
pub const FAILURE_LINE_CHARS_MAX: usize = 300;

/// Whitespace runs (newlines included) become one space; long text is cut with `…`.
fn one_line(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let joined = words.join(" ");
    if joined.chars().count() <= FAILURE_LINE_CHARS_MAX {
        return joined;
    }
    let mut cut: String = joined.chars().take(FAILURE_LINE_CHARS_MAX - 1).collect();
    cut.push('…');
    cut
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as hmsim wrote it before the fields of issue 15 existed still loads, and the
    /// new fields take their defaults.
    #[test]
    fn a_record_without_the_new_fields_still_loads() {
        let mut json: serde_json::Value =
            serde_json::from_str(&RunRecord::example().to_json().unwrap()).unwrap();
        let top = json.as_object_mut().unwrap();
        for field in [
            "coverage_not_applicable",
            "delivery_timeline",
            "scenario_text",
        ] {
            assert!(top.remove(field).is_some(), "{field}");
        }
        let r = RunRecord::from_json(&json.to_string()).unwrap();
        assert!(r.coverage_not_applicable.is_empty());
        assert_eq!((r.delivery_timeline, r.scenario_text), (None, None));
        assert_eq!(r.series[0].kind, None);
        assert_eq!(r.metrics.latency_ms.clamped, 0);
        let text = json.to_string();
        assert!(
            !text.contains("\"sampling\"") && !text.contains("\"clamped\""),
            "absent: not written"
        );
    }

    #[test]
    fn declared_series_fields_round_trip() {
        let mut r = RunRecord::example();
        r.series[0].kind = Some(SeriesKind::Step);
        r.series[0].sampling = Some(Sampling::Periodic { interval_s: 5.0 });
        r.series[1].sampling = Some(Sampling::OnChange);
        r.series[0].value_labels = vec![ValueLabel {
            value: 1.0,
            label: "Normal".into(),
        }];
        let json = r.to_json().unwrap();
        assert!(json.contains("\"kind\": \"step\""), "{json}");
        assert!(json.contains("\"periodic\": {\n"), "{json}");
        assert!(json.contains("\"sampling\": \"on_change\""), "{json}");
        assert_eq!(RunRecord::from_json(&json).unwrap(), r);
    }

    #[test]
    fn failure_lines_are_one_line_each_and_bounded() {
        let mut r = RunRecord::example();
        r.outcome.failure = Some("not quiescent:\n  waiting for 3 messages".into());
        r.checks[0].status = Status::Fail;
        r.checks[0].detail = "x ".repeat(400);
        let lines = r.failure_lines();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            "run did not finish: not quiescent: waiting for 3 messages"
        );
        assert_eq!(lines[1].chars().count(), FAILURE_LINE_CHARS_MAX);
        assert!(lines[1].ends_with('…'));
        assert!(lines[2].starts_with("session_liveness: 3 users"));
        r.outcome.passed = true;
        assert!(r.failure_lines().is_empty());
    }

    #[test]
    fn the_scenario_identity_is_its_content_hash() {
        let mut r = RunRecord::example();
        r.scenario_text = Some("abc".into());
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad.
        assert_eq!(r.scenario_identity(), "sha256:ba7816bf8f01cfea");
        r.scenario_sha256 = Some("BA7816BF8F01CFEA414140DE5DAE2223".into());
        assert_eq!(r.scenario_identity(), "sha256:ba7816bf8f01cfea");
        (r.scenario_text, r.scenario_sha256) = (None, None);
        assert_eq!(
            r.scenario_identity(),
            "file:scenarios/failover-node-crash.yaml"
        );
    }

    #[test]
    fn the_time_span_covers_the_drain_after_the_duration() {
        let mut r = RunRecord::example();
        assert_eq!(r.time_span_s(), 600.0);
        r.series[0].points.push((640.0, 1.0));
        assert_eq!(r.time_span_s(), 640.0);
    }
}
