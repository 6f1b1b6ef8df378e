//! The `within_capacity` check (spec 2-9, 28): no connector node ever held more users than its
//! capacity, and the cloud kept its nodes balanced.
//!
//! Inputs are the time series the runner samples (`crate::run::sample::series`):
//! - `cloud_assigned/<node>` and `cloud_eligible/<node>`: the cloud's assignment view;
//! - `connector_assigned/<host>` and `connector_open_sessions/<host>`: what each connector was
//!   told to serve and how many IM&P sessions it holds.
//!
//! Capacities come from the scenario through the cloud's own capacity functions
//! (`fakes::cloud::assignment::{node_capacity, cluster_capacity}`): U(1) per node, U(N) per
//! cluster, with coresidency and MRA reductions. Judged at every sample:
//! - every node's assigned users, the connector's assigned users and its open sessions are at
//!   most U(1); the cluster's assigned users at most U(N);
//! - balance: the cloud places each user on the least-loaded eligible node and rebalances until
//!   eligible nodes differ by at most one user, so no eligible node holds more than
//!   ⌈total ÷ eligible nodes⌉ + [`BALANCE_TOLERANCE`]. The cloud's state changes atomically,
//!   so every sample of it is settled.

use crate::checks::{Check, Entry, Needs, Verdict, boxed};
use crate::history::History;
use crate::scenario::Scenario;
use fakes::cloud::assignment::{cluster_capacity, node_capacity};
use reports::Status;
use std::collections::BTreeMap;

/// Users a node may hold above ⌈total ÷ eligible nodes⌉. Zero: the cloud's rebalancing promises
/// loads within one user of each other, which already gives max ≤ ⌈total ÷ nodes⌉.
pub const BALANCE_TOLERANCE: u32 = 0;
/// Violations quoted in the detail.
const EXAMPLES_MAX: usize = 5;

/// The sampled series, by name.
pub type Series = BTreeMap<String, Vec<(f64, f64)>>;

/// One Expressway cluster's capacity and the names its nodes have in the series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterLimits {
    /// Cluster name.
    pub name: String,
    /// (cloud node id, Expressway host) per node.
    pub nodes: Vec<(String, String)>,
    /// U(1).
    pub node_capacity: u32,
    /// U(N).
    pub capacity: u32,
}

/// The capacity of every Expressway cluster of the scenario (validation refuses shapes the
/// cloud has no figure for; such a cluster gets capacity 0, so any user on it fails).
pub fn limits(s: &Scenario) -> Vec<ClusterLimits> {
    s.topology
        .expressway_clusters
        .iter()
        .map(|e| {
            let (size, coresidency) = crate::plan::connector::capacity_shape(e);
            let n = e.nodes as usize;
            let ids = crate::plan::connector::connector_config(s, e).nodes;
            ClusterLimits {
                name: e.name.clone(),
                nodes: ids
                    .into_iter()
                    .enumerate()
                    .map(|(k, id)| (id, crate::plan::topology::exp_host(&e.name, k as u32 + 1)))
                    .collect(),
                node_capacity: node_capacity(size, coresidency, n).unwrap_or(0),
                capacity: cluster_capacity(size, coresidency, n).unwrap_or(0),
            }
        })
        .collect()
}

/// The check on a run.
pub fn check(s: &Scenario, out: &crate::history::History) -> (Status, String) {
    judge(&limits(s), &out.series, &out.unassigned_at_end)
}

/// One sample of one node: (cloud assigned, eligible, connector assigned, open sessions).
type NodeSample = (u32, bool, u32, u32);

/// Per sample time (ms), per node id.
fn samples(c: &ClusterLimits, series: &Series) -> BTreeMap<u64, BTreeMap<String, NodeSample>> {
    let mut out: BTreeMap<u64, BTreeMap<String, NodeSample>> = BTreeMap::new();
    let count = |v: f64| v.max(0.0).round() as u32;
    for (id, host) in &c.nodes {
        let mut put = |name: String, set: &dyn Fn(&mut NodeSample, f64)| {
            for &(t, v) in series.get(&name).map(Vec::as_slice).unwrap_or(&[]) {
                let at = (t * 1000.0).round() as u64;
                set(out.entry(at).or_default().entry(id.clone()).or_default(), v);
            }
        };
        put(format!("cloud_assigned/{id}"), &|n, v| n.0 = count(v));
        put(format!("cloud_eligible/{id}"), &|n, v| n.1 = v > 0.5);
        put(format!("connector_assigned/{host}"), &|n, v| n.2 = count(v));
        put(format!("connector_open_sessions/{host}"), &|n, v| {
            n.3 = count(v)
        });
    }
    out
}

/// Judges the series against the limits; `unassigned` are the users the cloud could place
/// nowhere at the end (named in the detail).
pub fn judge(limits: &[ClusterLimits], series: &Series, unassigned: &[String]) -> (Status, String) {
    let mut bad: Vec<String> = Vec::new();
    let mut summary = Vec::new();
    let (mut judged, mut peak_total) = (0usize, 0u32);
    for c in limits {
        let mut peak: BTreeMap<String, u32> = BTreeMap::new();
        let mut last = String::new();
        for (at_ms, nodes) in samples(c, series) {
            judged += 1;
            peak_total = peak_total.max(nodes.values().map(|n| n.0).sum());
            sample_violations(c, at_ms, &nodes, &mut peak, &mut bad);
            last = balance(&nodes);
        }
        let peaks: Vec<String> = peak.iter().map(|(n, p)| format!("{n} {p}")).collect();
        summary.push(format!(
            "{}: U(1) {}, U(N) {}; peak per node {}; at the end {last}",
            c.name,
            c.node_capacity,
            c.capacity,
            peaks.join(", ")
        ));
    }
    if judged == 0 {
        return (
            Status::Fail,
            "no assignment samples: the check exercised nothing".into(),
        );
    }
    if peak_total == 0 {
        return (
            Status::Fail,
            format!(
                "0 users assigned in all {judged} samples: the check exercised nothing; {}; {}",
                summary.join("; "),
                beyond(unassigned)
            ),
        );
    }
    summary.push(beyond(unassigned));
    if bad.is_empty() {
        return (
            Status::Pass,
            format!(
                "{judged} samples within capacity and balanced; {}",
                summary.join("; ")
            ),
        );
    }
    let n = bad.len();
    bad.truncate(EXAMPLES_MAX);
    (
        Status::Fail,
        format!(
            "{n} violations (e.g. {}); {}",
            bad.join("; "),
            summary.join("; ")
        ),
    )
}

/// The users beyond capacity, by count and name: "none" when every enabled user was placed.
fn beyond(unassigned: &[String]) -> String {
    if unassigned.is_empty() {
        return "users beyond capacity (unassigned) at the end: none".into();
    }
    format!(
        "users beyond capacity (unassigned) at the end: {} ({}{})",
        unassigned.len(),
        unassigned[..unassigned.len().min(EXAMPLES_MAX)].join(", "),
        if unassigned.len() > EXAMPLES_MAX {
            ", ..."
        } else {
            ""
        }
    )
}

/// Eligible nodes' loads: (max, min, total, count).
fn eligible_loads(nodes: &BTreeMap<String, NodeSample>) -> Option<(u32, u32, u32, u32)> {
    let loads: Vec<u32> = nodes.values().filter(|n| n.1).map(|n| n.0).collect();
    let max = *loads.iter().max()?;
    let min = *loads.iter().min()?;
    let count = u32::try_from(loads.len()).unwrap_or(u32::MAX);
    Some((max, min, loads.iter().sum(), count))
}

/// Why a sample is unbalanced, if it is.
fn imbalance(nodes: &BTreeMap<String, NodeSample>) -> Option<String> {
    let (max, _, total, count) = eligible_loads(nodes)?;
    let bound = total.div_ceil(count) + BALANCE_TOLERANCE;
    (max > bound).then(|| {
        format!("a node holds {max} users > ⌈{total}/{count}⌉ + {BALANCE_TOLERANCE} = {bound}")
    })
}

/// "max/min per node" over the eligible nodes.
fn balance(nodes: &BTreeMap<String, NodeSample>) -> String {
    match eligible_loads(nodes) {
        Some((max, min, total, count)) => {
            format!("max/min {max}/{min} over {count} eligible nodes ({total} users)")
        }
        None => "no eligible node".into(),
    }
}

/// The violations of one sample of cluster `c` at `at_ms`; raises each node's peak load.
fn sample_violations(
    c: &ClusterLimits,
    at_ms: u64,
    nodes: &BTreeMap<String, NodeSample>,
    peak: &mut BTreeMap<String, u32>,
    bad: &mut Vec<String>,
) {
    let t = at_ms as f64 / 1000.0;
    let total: u32 = nodes.values().map(|n| n.0).sum();
    if total > c.capacity {
        bad.push(format!(
            "{} at {t:.0}s: {total} users > U(N) {}",
            c.name, c.capacity
        ));
    }
    for (id, n) in nodes {
        let p = peak.entry(id.clone()).or_default();
        *p = (*p).max(n.0).max(n.2).max(n.3);
        for (what, v) in [
            ("assigned", n.0),
            ("connector-assigned", n.2),
            ("sessions", n.3),
        ] {
            if v > c.node_capacity {
                bad.push(format!(
                    "{id} at {t:.0}s: {v} {what} > U(1) {}",
                    c.node_capacity
                ));
            }
        }
    }
    if let Some(b) = imbalance(nodes) {
        bad.push(format!("{} at {t:.0}s: {b}", c.name));
    }
}

/// The `within_capacity` check (no parameters).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithinCapacity {}

/// How the registry reads it.
pub const ENTRY: Entry = Entry {
    name: "within_capacity",
    bare: true,
    read: boxed::<WithinCapacity>,
};

impl Check for WithinCapacity {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn needs(&self) -> Needs {
        Needs::CONNECTOR
    }
    fn judge(&self, s: &Scenario, h: &History) -> Verdict {
        check(s, h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Vec<ClusterLimits> {
        vec![ClusterLimits {
            name: "a".into(),
            nodes: (1..=3)
                .map(|k| (format!("exp-a-{k}"), format!("exp-a-{k}")))
                .collect(),
            node_capacity: 100,
            capacity: 200,
        }]
    }

    /// Series with one sample per row: per node (cloud assigned, eligible).
    fn series(rows: &[[(f64, f64); 3]]) -> Series {
        let mut s = Series::new();
        for (i, row) in rows.iter().enumerate() {
            for (k, (assigned, eligible)) in row.iter().enumerate() {
                let t = i as f64 * 5.0;
                let id = format!("exp-a-{}", k + 1);
                for (name, v) in [
                    (format!("cloud_assigned/{id}"), *assigned),
                    (format!("cloud_eligible/{id}"), *eligible),
                    (format!("connector_assigned/{id}"), *assigned),
                    (format!("connector_open_sessions/{id}"), *assigned),
                ] {
                    s.entry(name).or_default().push((t, v));
                }
            }
        }
        s
    }

    #[test]
    fn a_balanced_run_within_capacity_passes() {
        let s = series(&[
            [(67.0, 1.0), (67.0, 1.0), (66.0, 1.0)],
            [(100.0, 1.0), (0.0, 0.0), (100.0, 1.0)],
            [(67.0, 1.0), (66.0, 1.0), (67.0, 1.0)],
        ]);
        let (status, detail) = judge(&limits(), &s, &[]);
        assert_eq!(status, Status::Pass, "{detail}");
        assert!(detail.contains("peak per node exp-a-1 100"), "{detail}");
        assert!(
            detail.contains("max/min 67/66 over 3 eligible nodes"),
            "{detail}"
        );
    }

    #[test]
    fn an_over_capacity_node_fails() {
        let s = series(&[
            [(67.0, 1.0), (67.0, 1.0), (66.0, 1.0)],
            [(101.0, 1.0), (0.0, 0.0), (99.0, 1.0)],
        ]);
        let (status, detail) = judge(&limits(), &s, &[]);
        assert_eq!(status, Status::Fail);
        assert!(
            detail.contains("exp-a-1 at 5s: 101 assigned > U(1) 100"),
            "{detail}"
        );
        assert!(detail.contains("101 users > ⌈200/2⌉ + 0 = 100"), "{detail}");
    }

    #[test]
    fn over_the_cluster_capacity_or_unbalanced_fails() {
        let s = series(&[[(90.0, 1.0), (90.0, 1.0), (30.0, 1.0)]]);
        let (status, detail) = judge(&limits(), &s, &[]);
        assert_eq!(status, Status::Fail);
        assert!(detail.contains("210 users > U(N) 200"), "{detail}");
        assert!(detail.contains("90 users > ⌈210/3⌉ + 0 = 70"), "{detail}");
    }

    #[test]
    fn no_samples_fail() {
        assert_eq!(judge(&limits(), &Series::new(), &[]).0, Status::Fail);
    }

    #[test]
    fn samples_with_no_user_assigned_exercised_nothing() {
        let s = series(&[[(0.0, 1.0), (0.0, 1.0), (0.0, 1.0)]; 3]);
        let (status, detail) = judge(&limits(), &s, &[]);
        assert_eq!(status, Status::Fail, "{detail}");
        assert!(
            detail.contains("0 users assigned in all 3 samples: the check exercised nothing"),
            "{detail}"
        );
    }

    #[test]
    fn users_beyond_capacity_are_named_and_counted() {
        let s = series(&[[(100.0, 1.0), (100.0, 1.0), (0.0, 0.0)]]);
        let left: Vec<String> = (0..7).map(|i| format!("u{i}@x")).collect();
        let (status, detail) = judge(&limits(), &s, &left);
        assert_eq!(status, Status::Pass, "{detail}");
        assert!(
            detail.contains("users beyond capacity (unassigned) at the end: 7 (u0@x, u1@x, u2@x, u3@x, u4@x, ...)"),
            "{detail}"
        );
        let (_, detail) = judge(&limits(), &s, &[]);
        assert!(detail.contains("unassigned) at the end: none"), "{detail}");
    }
}
