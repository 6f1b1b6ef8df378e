//! Turning a run's output into the run record and writing the output directory.

use crate::checks;
use crate::runner::RunOutput;
use crate::scenario::Scenario;
use reports::{FaultRecord, Metrics, Outcome, Percentiles, RunRecord, Series};
use std::path::{Path, PathBuf};

/// Wall-clock facts measured outside the simulation.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallFacts {
    /// Seconds the run took.
    pub wall_time_s: f64,
    /// Peak RSS, bytes.
    pub peak_rss_bytes: Option<u64>,
}

/// Latency percentiles from an HDR histogram (3 significant digits, 1 ms to 1 day).
pub fn percentiles(latencies_ms: &[u64]) -> Percentiles {
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 86_400_000, 3)
        .expect("static bounds are valid");
    for &l in latencies_ms {
        h.saturating_record(l.max(1));
    }
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: h.len(),
        p50: h.value_at_quantile(0.50) as f64,
        p90: h.value_at_quantile(0.90) as f64,
        p99: h.value_at_quantile(0.99) as f64,
        p999: h.value_at_quantile(0.999) as f64,
        max: h.max() as f64,
        mean: (h.mean() * 10.0).round() / 10.0,
        ..Percentiles::default()
    }
}

/// Builds the record of a finished run.
pub fn build(
    s: &Scenario,
    file: &str,
    out: &RunOutput,
    reproduce: String,
    wall: WallFacts,
) -> RunRecord {
    let tally = checks::tally(s, out);
    let latency_ms = percentiles(&tally.latencies_ms);
    let results = checks::evaluate(s, out, &tally, latency_ms.p99, latency_ms.max);
    let sim_s = out.elapsed.as_secs_f64();
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("lost_at_risk".to_string(), tally.lost_at_risk as f64);
    extra.insert(
        "digest_events".to_string(),
        out.observer.digest_events() as f64,
    );
    extra.insert("simulated_s".to_string(), sim_s);
    extra.insert("not_bridged".to_string(), tally.not_bridged as f64);
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
    let metrics = Metrics {
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
    };
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
            .series
            .iter()
            .map(|(name, points)| Series {
                unit: name.split('/').next().unwrap_or("").to_string(),
                name: name.clone(),
                // Move series hold a point per move (thousands): the record keeps the shape.
                points: if name.starts_with(crate::migration_check::MOVES_SERIES) {
                    crate::migration_check::thin(points, crate::runner::SAMPLES_MAX as usize)
                } else {
                    points.clone()
                },
                ..Series::default()
            })
            .collect(),
        tables: tables(s, out),
        coverage: out.observer.coverage(),
        ..RunRecord::default()
    };
    // `no_secrets_in_logs` also covers the record itself (and so the reports made from it).
    crate::secrets_check::check_record(out, &mut record);
    record
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

/// Writes `trace.jsonl` ([`trace_text`]). For debugging a failing seed; large runs produce
/// large files.
pub fn write_trace(dir: &Path, out: &RunOutput) -> Result<PathBuf, crate::Error> {
    let text = trace_text(out);
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::Io(dir.display().to_string(), e))?;
    let path = dir.join("trace.jsonl");
    std::fs::write(&path, text).map_err(|e| crate::Error::Io(path.display().to_string(), e))?;
    Ok(path)
}

/// The lines of `trace.jsonl`: every session transition, send and delivery, one JSON object a
/// line, in time order per kind.
pub fn trace_text(out: &RunOutput) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    for e in out.observer.sessions() {
        let v = serde_json::json!({"t": e.at.as_secs_f64(), "kind": "session", "user": e.user,
            "device": e.device, "up": e.up, "reason": e.reason});
        let _ = writeln!(text, "{v}");
    }
    for (at, ev) in out.observer.webex_presence_log() {
        let v = serde_json::json!({"t": at.as_secs_f64(), "kind": "webex_presence_seen", "viewer": ev.user,
            "from": ev.from, "available": ev.available, "show": ev.show, "status": ev.status});
        let _ = writeln!(text, "{v}");
    }
    for (user, ev) in &out.bridge {
        for (at, up) in ev {
            let v = serde_json::json!({"t": at.as_secs_f64(), "kind": "connector_session", "user": user, "up": up});
            let _ = writeln!(text, "{v}");
        }
    }
    out.observer.with_messages(|msgs| {
        for (id, m) in msgs {
            let v = serde_json::json!({"t": m.sent_at.as_secs_f64(), "kind": "sent", "id": id,
                "from": m.from, "to": m.to});
            let _ = writeln!(text, "{v}");
            for (device, at, delayed, _) in &m.deliveries {
                let v = serde_json::json!({"t": at.as_secs_f64(), "kind": "delivered", "id": id,
                    "device": device, "delayed": delayed});
                let _ = writeln!(text, "{v}");
            }
        }
    });
    text
}

/// Result tables of the run: the interop matrix whenever the bridge runs.
fn tables(s: &Scenario, out: &RunOutput) -> Vec<reports::Table> {
    if s.topology.expressway_clusters.is_empty() {
        return Vec::new();
    }
    let mut t = vec![crate::interop::table(&crate::interop::matrix(
        out,
        &out.bridge,
    ))];
    if s.checks
        .iter()
        .any(|c| matches!(c, crate::scenario::Check::Presence(_)))
    {
        t.push(crate::presence_check::check(out).1);
    }
    if s.checks
        .iter()
        .any(|c| matches!(c, crate::scenario::Check::Migration(_)))
        && let Some(curve) = crate::migration_check::curve_table(out)
    {
        t.push(curve);
    }
    t
}
