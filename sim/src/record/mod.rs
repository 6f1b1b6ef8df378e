//! Turning a run's output into the run record and writing the output directory.

use crate::checks::{self, Check};
use crate::history::History;
use crate::scenario::Scenario;
use reports::{FaultRecord, Metrics, Outcome, RunRecord, Series};
use std::path::{Path, PathBuf};

/// Wall-clock facts measured outside the simulation.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallFacts {
    /// Seconds the run took.
    pub wall_time_s: f64,
    /// Peak RSS, bytes.
    pub peak_rss_bytes: Option<u64>,
}

/// Builds the record of a finished run.
pub fn build(
    s: &Scenario,
    file: &str,
    out: &History,
    reproduce: String,
    wall: WallFacts,
) -> RunRecord {
    let checks = checks::build(s);
    let results = checks::evaluate(s, out);
    let metrics = metrics(s, out, wall);
    let passed = out.failure.is_none() && results.iter().all(|c| c.status == reports::Status::Pass);
    let mut record = RunRecord {
        schema_version: reports::SCHEMA_VERSION,
        scenario: s.name.clone(),
        scenario_file: file.to_string(),
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
        series: out
            .all_series()
            .iter()
            .map(|(name, points)| Series {
                unit: name.split('/').next().unwrap_or("").to_string(),
                name: name.clone(),
                // Move series hold a point per move (thousands): the record keeps the shape.
                points: if name.starts_with(crate::history::MOVES_SERIES) {
                    crate::checks::migration::thin(points, crate::history::SAMPLES_MAX as usize)
                } else {
                    points.clone()
                },
                ..Series::default()
            })
            .collect(),
        tables: tables(s, out, &checks),
        coverage: out.observer.coverage(),
        ..RunRecord::default()
    };
    // `no_secrets_in_logs` also covers the record itself (and so the reports made from it).
    for c in &checks {
        c.amend(out, &mut record);
    }
    record
}

/// The run's metrics: delivery accounting, latency, speed, and every counter of the hosts.
fn metrics(s: &Scenario, out: &History, wall: WallFacts) -> Metrics {
    let tally = crate::oracle::tally::tally(s, out);
    let latency_ms = crate::oracle::tally::percentiles(&tally.latencies_ms);
    let sim_s = out.elapsed.as_secs_f64();
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("lost_at_risk".to_string(), tally.lost_at_risk as f64);
    extra.insert(
        "digest_events".to_string(),
        out.observer.digest_events() as f64,
    );
    extra.insert("simulated_s".to_string(), sim_s);
    extra.insert("not_bridged".to_string(), tally.not_bridged as f64);
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
    t.extend(checks.iter().flat_map(|c| c.tables(s, out)));
    t
}
