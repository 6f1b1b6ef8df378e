//! Turning a run's output into the run record and writing the output directory.

use crate::checks::{self, Check};
use crate::history::History;
use crate::oracle::tally::Tally;
use crate::scenario::Scenario;
use reports::{
    DeliveryTimeline, FaultRecord, Metrics, Outcome, RunRecord, Sampling, Series, ValueLabel,
};
use std::path::{Path, PathBuf};

/// Wall-clock facts measured outside the simulation.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallFacts {
    /// Seconds the run took.
    pub wall_time_s: f64,
    /// Peak RSS, bytes.
    pub peak_rss_bytes: Option<u64>,
}

/// Where a run's scenario came from: its path as given and its text.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The path as given on the command line.
    pub file: &'a str,
    /// The file's text, when it could be read again after the run.
    pub text: Option<&'a str>,
}

/// Builds the record of a finished run.
pub fn build(
    s: &Scenario,
    source: Source<'_>,
    out: &History,
    reproduce: String,
    wall: WallFacts,
) -> RunRecord {
    let checks = checks::build(s);
    let results = checks::evaluate(s, out);
    let tally = crate::oracle::tally::tally(s, out);
    let metrics = metrics(&tally, out, wall);
    let passed = out.failure.is_none() && results.iter().all(|c| c.status == reports::Status::Pass);
    let mut record = RunRecord {
        schema_version: reports::SCHEMA_VERSION,
        scenario: s.name.clone(),
        scenario_file: source.file.to_string(),
        seed: out.seed,
        trace_digest: out.observer.trace_digest(),
        reproduce,
        git_commit: git_commit(),
        hmsim_version: env!("CARGO_PKG_VERSION").to_string(),
        duration_s: s.duration.0.as_secs_f64(),
        outcome: Outcome {
            passed,
            failure: out.failure.clone(),
        },
        checks: results,
        metrics,
        faults: out
            .applied
            .iter()
            .map(|t| FaultRecord {
                at_ms: t.at.as_millis() as u64,
                kind: t.kind.clone(),
                detail: t.detail(),
            })
            .collect(),
        series: series(s, out),
        tables: tables(s, out, &checks),
        coverage: out.observer.coverage(),
        coverage_not_applicable: not_applicable(s, &out.observer.coverage()),
        delivery_timeline: Some(DeliveryTimeline::from_messages(
            out.elapsed.as_secs_f64(),
            tally.verdicts.iter().map(|(t, v)| (*t, v.fate())),
        )),
        ..RunRecord::default()
    };
    scenario_source(s, source.text, &mut record);
    // `no_secrets_in_logs` also covers the record itself (and so the reports made from it).
    for c in &checks {
        c.amend(out, &mut record);
    }
    record
}

/// The metric names of the message categories ([`Tally::breakdown`]), in its order: every
/// message is in exactly one, so they add up to `sent`.
pub const CATEGORY_METRICS: [&str; 6] = [
    "messages_delivered_everywhere",
    "lost",
    "lost_at_risk",
    "messages_not_bridged_by_design",
    "messages_discarded_by_offline_policy",
    "messages_held_unsent_at_client_crash",
];

/// The run's metrics: delivery accounting, latency, speed, and every counter of the hosts.
fn metrics(tally: &Tally, out: &History, wall: WallFacts) -> Metrics {
    let latency_ms = crate::oracle::tally::percentiles(&tally.latencies_ms);
    let sim_s = out.elapsed.as_secs_f64();
    let mut extra = std::collections::BTreeMap::new();
    for (name, (_, n)) in CATEGORY_METRICS.iter().zip(tally.breakdown()) {
        // `lost` is a field of its own.
        if *name != "lost" {
            extra.insert(name.to_string(), n as f64);
        }
    }
    extra.insert(
        "digest_events".to_string(),
        out.observer.digest_events() as f64,
    );
    extra.insert("simulated_s".to_string(), sim_s);
    host_counters(out, &mut extra);
    Metrics {
        sent: tally.sent,
        delivered: tally.delivered,
        lost: tally.lost.len() as u64,
        duplicated: tally.duplicated.len() as u64,
        latency_ms,
        wall_time_s: wall.wall_time_s,
        sim_seconds_per_wall_second: if wall.wall_time_s > 0.0 {
            sim_s / wall.wall_time_s
        } else {
            0.0
        },
        peak_rss_bytes: wall.peak_rss_bytes,
        steps: out.steps,
        extra,
    }
}

/// Every series of the history with its unit, how it is drawn and how it was sampled.
fn series(s: &Scenario, out: &History) -> Vec<Series> {
    let interval_s = crate::history::sample_every(s).as_secs_f64();
    out.all_series()
        .into_iter()
        .map(|(name, points)| {
            let moves = name.starts_with(crate::history::MOVES_SERIES);
            let mut series = Series {
                // Move series hold a point per move (thousands): the record keeps the shape.
                points: if moves {
                    crate::checks::migration::thin(&points, crate::history::SAMPLES_MAX as usize)
                } else {
                    points
                },
                name,
                ..Series::default()
            };
            series.unit = series.unit_or_inferred();
            series.kind = Some(series.kind_or_inferred());
            // Moves are cumulative counts written per move; everything else is sampled.
            series.sampling = Some(if moves {
                Sampling::OnChange
            } else {
                Sampling::Periodic { interval_s }
            });
            series.value_labels = value_labels(&series);
            series
        })
        .collect()
}

/// Every PRG state, for the names of `prg_state` codes.
const PRG_STATES: [fakes::imp::PrgState; 11] = {
    use fakes::imp::PrgState as P;
    [
        P::Unknown,
        P::Normal,
        P::FailingOver,
        P::TakingOver,
        P::Idle,
        P::RunningInBackupMode,
        P::FailedOver,
        P::FailedOverCriticalServicesNotRunning,
        P::FallingBack,
        P::TakingBack,
        P::RunningInFailedMode,
    ]
};

/// Names of the enumerations the history records as numbers: PRG states by their code, the
/// status page's flags.
fn value_labels(series: &Series) -> Vec<ValueLabel> {
    if series.name.starts_with(crate::history::PRG_STATE_SERIES) {
        return PRG_STATES
            .iter()
            .map(|st| ValueLabel {
                value: f64::from(st.code()),
                label: st.name().to_string(),
            })
            .collect();
    }
    series.value_labels_or_inferred()
}

/// Coverage points the scenario cannot reach, with the reason: the connector's points without
/// an Expressway cluster, the AXL points without a connector.
fn not_applicable(
    s: &Scenario,
    coverage: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    if !s.topology.expressway_clusters.is_empty() {
        return out;
    }
    for (point, hits) in coverage {
        let needs_connector = ["axl", "cloud", "connector"]
            .iter()
            .any(|w| point.to_ascii_lowercase().contains(w));
        if *hits == 0 && needs_connector {
            out.insert(
                point.clone(),
                "needs a connector: the scenario has no Expressway cluster".to_string(),
            );
        }
    }
    out
}

/// Puts the scenario's text in the record, unless the text holds one of its own AXL passwords
/// (a secret `no_secrets_in_logs` looks for in `run.json`): then only its SHA-256, which still
/// identifies the content. The hash is always kept.
fn scenario_source(s: &Scenario, text: Option<&str>, r: &mut RunRecord) {
    use sha2::{Digest, Sha256};
    let Some(text) = text else { return };
    let hex: String = Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    r.scenario_sha256 = Some(hex);
    let holds_secret = s
        .topology
        .imp_clusters
        .iter()
        .any(|c| !c.axl.password.is_empty() && text.contains(&c.axl.password));
    if !holds_secret {
        r.scenario_text = Some(text.to_string());
    }
}

/// Every connector and IM&P node counter, as `<host>/<counter>`.
fn host_counters(out: &History, extra: &mut std::collections::BTreeMap<String, f64>) {
    for (host, m) in &out.connector_stats {
        for (k, v) in m {
            extra.insert(format!("{host}/{k}"), *v);
        }
    }
    for (host, st) in &out.node_stats {
        for (k, v) in [
            ("logins", st.logins),
            ("auth_failures", st.auth_failures),
            ("messages_routed", st.messages_routed),
            ("offline_stored", st.offline_stored),
            ("offline_delivered", st.offline_delivered),
            ("discarded", st.discarded),
            ("carbons", st.carbons),
            ("stream_errors", st.stream_errors),
            ("stanza_errors", st.stanza_errors),
        ] {
            extra.insert(format!("{host}/{k}"), v as f64);
        }
    }
}

/// The commit of the working tree, when run from a git checkout.
fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| s.len() == 40)
}

/// Peak resident set size of this process (Linux `VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Default output directory: `target/hmsim/<scenario>/<seed>/`.
pub fn default_out_dir(s: &Scenario, seed: u64) -> PathBuf {
    PathBuf::from("target")
        .join("hmsim")
        .join(&s.name)
        .join(seed.to_string())
}

/// Writes `run.json`, `report.md`, `report.html` and `junit.xml` into `dir`.
pub fn write_outputs(dir: &Path, r: &RunRecord) -> Result<Vec<PathBuf>, crate::Error> {
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::Io(dir.display().to_string(), e))?;
    let json = serde_json::to_string_pretty(r).map_err(|e| crate::Error::Render(e.to_string()))?;
    let files = [
        ("run.json", json),
        ("report.md", reports::markdown(r)),
        (
            "report.html",
            reports::html(r).map_err(|e| crate::Error::Render(e.to_string()))?,
        ),
        (
            "junit.xml",
            reports::junit(r).map_err(|e| crate::Error::Render(e.to_string()))?,
        ),
    ];
    let mut written = Vec::new();
    for (name, body) in files {
        let path = dir.join(name);
        std::fs::write(&path, body).map_err(|e| crate::Error::Io(path.display().to_string(), e))?;
        written.push(path);
    }
    Ok(written)
}

/// Writes every chart of the report as a file of `format` into `dir` (`hmsim run --plot-png`).
pub fn write_plots(
    dir: &Path,
    r: &RunRecord,
    format: reports::PlotFormat,
) -> Result<Vec<PathBuf>, crate::Error> {
    let files = reports::plot_files(r, format).map_err(|e| crate::Error::Render(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::Io(dir.display().to_string(), e))?;
    let mut written = Vec::with_capacity(files.len());
    for f in files {
        let path = dir.join(&f.name);
        std::fs::write(&path, &f.bytes)
            .map_err(|e| crate::Error::Io(path.display().to_string(), e))?;
        written.push(path);
    }
    Ok(written)
}

/// Writes `trace.jsonl` ([`crate::history::trace::trace_text`]). For debugging a failing seed; large runs produce
/// large files.
pub fn write_trace(dir: &Path, out: &History) -> Result<PathBuf, crate::Error> {
    let text = crate::history::trace::trace_text(out);
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::Io(dir.display().to_string(), e))?;
    let path = dir.join("trace.jsonl");
    std::fs::write(&path, text).map_err(|e| crate::Error::Io(path.display().to_string(), e))?;
    Ok(path)
}

/// Result tables of the run: the interop matrix whenever the bridge runs, then each check's.
fn tables(s: &Scenario, out: &History, checks: &[Box<dyn Check>]) -> Vec<reports::Table> {
    if s.topology.expressway_clusters.is_empty() {
        return Vec::new();
    }
    let mut t = vec![crate::oracle::interop::table(
        &crate::oracle::interop::matrix(out, &out.bridge),
    )];
    let warnings = crate::checks::warnings(s, &out.users);
    if !warnings.is_empty() {
        t.push(reports::Table {
            title: "Scenario warnings".into(),
            columns: vec!["warning".into()],
            rows: warnings.into_iter().map(|w| vec![w]).collect(),
        });
    }
    for table in checks.iter().flat_map(|c| c.tables(s, out)) {
        // A repeated check (a failover and its fallback) adds the same table once.
        if !t.contains(&table) {
            t.push(table);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name: t\nseed: 1\nduration: 1m\ntopology: { imp_clusters: [{ name: a }] }\nusers: { count: 2 }\n";

    #[test]
    fn the_record_keeps_the_scenario_text_and_its_hash() {
        let s = crate::parse("t.yaml", TEXT).expect("valid scenario");
        let mut r = RunRecord::default();
        scenario_source(&s, Some(TEXT), &mut r);
        assert_eq!(r.scenario_text.as_deref(), Some(TEXT));
        assert_eq!(r.scenario_sha256.as_ref().map(String::len), Some(64));
    }

    #[test]
    fn a_scenario_holding_its_axl_password_keeps_only_the_hash() {
        let text = TEXT.replace(
            "{ name: a }",
            "{ name: a, axl: { password: hunter2-secret } }",
        );
        let s = crate::parse("t.yaml", &text).expect("valid scenario");
        let mut r = RunRecord::default();
        scenario_source(&s, Some(&text), &mut r);
        assert_eq!(r.scenario_text, None);
        assert!(r.scenario_sha256.is_some());
    }

    #[test]
    fn axl_points_without_a_connector_are_not_applicable() {
        let s = crate::parse("t.yaml", TEXT).expect("valid scenario");
        let coverage = [
            ("axl: bad credentials".to_string(), 0),
            ("offline: stored".to_string(), 0),
        ]
        .into_iter()
        .collect();
        let na = not_applicable(&s, &coverage);
        assert!(na["axl: bad credentials"].contains("no Expressway cluster"));
        assert!(!na.contains_key("offline: stored"));
    }
}
