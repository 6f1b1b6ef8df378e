//! A small but complete run record, for examples and for tests of code that consumes reports.

use crate::record::{
    CheckResult, DeliveryBucket, DeliveryTimeline, FaultRecord, Metrics, Outcome, Percentiles,
    RunRecord, SCHEMA_VERSION, Series, Status, Table,
};
use std::collections::BTreeMap;

impl RunRecord {
    /// A realistic failed run: a node crash during a failover scenario, with one failing check,
    /// faults, sampled series in two chart groups, an interop table and coverage including a
    /// condition never reached. Deterministic, so tests can assert exact content.
    pub fn example() -> RunRecord {
        RunRecord {
            schema_version: SCHEMA_VERSION,
            scenario: "failover-node-crash".into(),
            scenario_file: "scenarios/failover-node-crash.yaml".into(),
            seed: 42,
            trace_digest: "9f2c4e1ab37d5c60e8f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7".into(),
            reproduce: "hmsim run scenarios/failover-node-crash.yaml --seed 42".into(),
            git_commit: Some("3b1f0c9e2d7a".into()),
            hmsim_version: "0.1.0".into(),
            duration_s: 600.0,
            outcome: Outcome {
                passed: false,
                failure: None,
            },
            checks: example_checks(),
            metrics: example_metrics(),
            faults: example_faults(),
            series: example_series(),
            tables: vec![example_interop_table()],
            coverage: example_coverage(),
            coverage_not_applicable: BTreeMap::from([(
                "axl.soap_fault".to_string(),
                "no connector in this scenario".to_string(),
            )]),
            delivery_timeline: Some(example_timeline()),
            scenario_text: Some(
                "name: failover-node-crash\nduration: 10m\nfaults:\n  - at: 3m\n    crash: imp-a-1\n"
                    .into(),
            ),
            scenario_sha256: None,
        }
    }
}

fn check(name: &str, status: Status, detail: &str) -> CheckResult {
    CheckResult {
        name: name.into(),
        status,
        detail: detail.into(),
    }
}

fn example_checks() -> Vec<CheckResult> {
    vec![
        check(
            "no_message_loss",
            Status::Pass,
            "12840 deliverable messages, 0 lost",
        ),
        check("no_duplicates", Status::Pass, "0 duplicate deliveries"),
        check(
            "per_conversation_order",
            Status::Pass,
            "4210 conversations in order",
        ),
        check(
            "session_liveness",
            Status::Fail,
            "3 users without a session 120 s after faults stopped: alice@example.com, \
             bob@example.com, carol@example.com",
        ),
    ]
}

fn example_metrics() -> Metrics {
    Metrics {
        sent: 12_840,
        delivered: 12_840,
        lost: 0,
        duplicated: 0,
        latency_ms: Percentiles {
            count: 12_840,
            p50: 20.0,
            p90: 40.0,
            p99: 120.0,
            p999: 480.0,
            max: 2_150.0,
            mean: 27.5,
            clamped: 0,
        },
        wall_time_s: 2.5,
        sim_seconds_per_wall_second: 240.0,
        peak_rss_bytes: Some(96 * 1024 * 1024),
        steps: 60_000,
        extra: BTreeMap::from([
            ("axl.requests".to_string(), 14.0),
            ("migration.users_moved".to_string(), 2_500.0),
        ]),
    }
}

fn fault(at_ms: u64, kind: &str, detail: &str) -> FaultRecord {
    FaultRecord {
        at_ms,
        kind: kind.into(),
        detail: detail.into(),
    }
}

fn example_faults() -> Vec<FaultRecord> {
    vec![
        fault(120_000, "partition", "imp-a-1 | connector-1"),
        fault(150_000, "partition/end", "imp-a-1 | connector-1"),
        fault(180_000, "crash", "imp-a-1"),
        fault(300_000, "restart", "imp-a-1"),
    ]
}

/// One sample every 5 simulated seconds: sessions move from node 1 to node 2 at the crash.
fn example_series() -> Vec<Series> {
    let times_s: Vec<f64> = (0..=120).map(|i| f64::from(i) * 5.0).collect();
    let on_node1 = |t: f64| {
        if (180.0..300.0).contains(&t) {
            0.0
        } else {
            2_500.0
        }
    };
    let on_node2 = |t: f64| 5_000.0 - on_node1(t);
    let queue = |t: f64| {
        if (180.0..240.0).contains(&t) {
            350.0
        } else {
            3.0
        }
    };
    let series = |name: &str, unit: &str, f: &dyn Fn(f64) -> f64| Series {
        name: name.into(),
        unit: unit.into(),
        points: times_s.iter().map(|&t| (t, f(t))).collect(),
        ..Series::default()
    };
    vec![
        series("sessions/imp-a-1", "sessions", &on_node1),
        series("sessions/imp-a-2", "sessions", &on_node2),
        series("queue_depth/connector-1", "messages", &queue),
    ]
}

fn example_interop_table() -> Table {
    let row = |cells: [&str; 3]| cells.iter().map(|c| c.to_string()).collect();
    Table {
        title: "Interop matrix (sender → recipient)".into(),
        columns: vec!["sender".into(), "Jabber".into(), "Webex App".into()],
        rows: vec![
            row(["Jabber", "delivered", "delivered"]),
            row(["Webex App", "delivered", "delivered | carbon"]),
        ],
    }
}

/// One bucket a minute: steady 1284 messages; the crash at 180 s leaves 6 at risk and slows
/// delivery in that minute.
fn example_timeline() -> DeliveryTimeline {
    let bucket = |i: u32| {
        let crashed = i == 3;
        let at_risk = if crashed { 6 } else { 0 };
        DeliveryBucket {
            start_s: f64::from(i) * 60.0,
            sent: 1_284,
            delivered: 1_284 - at_risk,
            lost: 0,
            at_risk,
            latency_ms: Percentiles {
                count: 1_284 - at_risk,
                p50: if crashed { 400.0 } else { 20.0 },
                p90: if crashed { 1_200.0 } else { 38.0 },
                p99: if crashed { 2_000.0 } else { 90.0 },
                p999: if crashed { 2_150.0 } else { 110.0 },
                max: if crashed { 2_150.0 } else { 120.0 },
                mean: if crashed { 520.0 } else { 22.0 },
                clamped: 0,
            },
        }
    };
    DeliveryTimeline {
        bucket_s: 60.0,
        buckets: (0..10).map(bucket).collect(),
    }
}

fn example_coverage() -> BTreeMap<String, u64> {
    BTreeMap::from([
        ("axl.soap_fault".to_string(), 0),
        ("failover.sessions_migrated".to_string(), 2_500),
        ("kms.key_rotated".to_string(), 0),
        ("offline_replay.used".to_string(), 37),
    ])
}
