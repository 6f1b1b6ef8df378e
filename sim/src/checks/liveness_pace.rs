//! Whether a scenario's `liveness` bound leaves the connector the time the guide gives it to
//! move a failed IM&P node's sessions (spec 62): "The connector could take up to 15 minutes to
//! start transitioning users to the other node, and then progresses at a rate that does not
//! overwhelm the target node. For example, with 5,000 user sessions failing over, you can
//! expect to wait approximately 30 minutes". The rate is each connector node's, and the cloud's
//! balanced assignment may put every user of one IM&P node on one connector node (it places
//! users in the order they are reported, which can follow the order they were spread over the
//! IM&P nodes: `cluster-75k` put all 6,250 users of imp-a-1 on exp-a-1). A bound shorter than
//! that worst case fails a correctly paced migration, so it is a warning (in `hmsim check` and
//! in the report), not a check of the run.

use crate::plan::imp::{failures, high_availability_at, node_config};
use crate::plan::topology::UserSpec;
use crate::scenario::units::format_duration;
use crate::scenario::{Fault, ImpCluster, Scenario};
use std::time::Duration;

/// One move of a node's connector sessions: when it starts and what starts it.
struct Move<'a> {
    at: Duration,
    what: String,
    /// The IM&P node whose users move (the failed node, or the node falling back).
    users_of: &'a str,
}

/// The moves a fault starts in cluster `c`: a failure (crash or `imp_failover`) of a node with
/// a PRG peer under high availability, or an `imp_fallback` to a node.
fn moves<'a>(s: &Scenario, c: &ImpCluster, f: &'a Fault) -> Vec<Move<'a>> {
    let prg = node_config(c);
    let mut out: Vec<Move<'a>> = failures(f)
        .filter(|(n, _, _)| prg.peer_of(n).is_some() && high_availability_at(s, c, f.at.0))
        .map(|(n, kind, _)| Move {
            at: f.at.0,
            what: format!("the {kind} of {n}"),
            users_of: n,
        })
        .collect();
    out.extend(
        (f.imp_fallback.iter())
            .filter(|x| prg.peer_of(&x.node).is_some())
            .map(|x| Move {
                at: f.at.0,
                what: format!("the imp_fallback to {}", x.node),
                users_of: x.node.as_str(),
            }),
    );
    out
}

/// The warnings of scenario `s` whose population is `users`: one per move of a node's
/// connector sessions (see the module docs) that, at its Expressway cluster's detection delay
/// bound and migration rate, with every session on one connector node, may end after the
/// `liveness` check's bound.
pub fn warnings(s: &Scenario, users: &[UserSpec]) -> Vec<String> {
    let Some(within) = crate::checks::liveness::within(s) else {
        return Vec::new();
    };
    let last_fault_end = crate::checks::liveness::last_fault_end(s);
    let bound = last_fault_end + within;
    let mut out = Vec::new();
    for c in &s.topology.imp_clusters {
        let Some(e) =
            (s.topology.expressway_clusters.iter()).find(|e| e.imp_clusters.contains(&c.name))
        else {
            continue; // no connector serves it: no connector sessions
        };
        let (delay_max, rate) = (e.migration.detection_delay_max.0, &e.migration.rate);
        for m in s.faults.iter().flat_map(|f| moves(s, c, f)) {
            let sessions = (users.iter())
                .filter(|u| u.home_host(s) == m.users_of)
                .filter(|u| crate::oracle::interop::served(u))
                .count();
            if sessions == 0 || rate.count <= 0.0 {
                continue;
            }
            let moving = rate.per.mul_f64(sessions as f64 / rate.count);
            let end = m.at + delay_max + moving;
            if end > bound {
                out.push(warning(
                    &m,
                    sessions,
                    (delay_max, moving),
                    (bound, within, end - last_fault_end),
                ));
            }
        }
    }
    out
}

/// The text of one warning: the move, the guide's worst case, the bound, and the `within`
/// that would cover it (whole minutes, rounded up).
fn warning(
    m: &Move,
    sessions: usize,
    (delay_max, moving): (Duration, Duration),
    (bound, within, needed): (Duration, Duration, Duration),
) -> String {
    let needed_min = needed.as_secs().div_ceil(60);
    format!(
        "checks.liveness: after {} at {}, a connector node may wait up to {} before it moves the {sessions} connector sessions of {}'s users, then take {} at the migration rate (spec 62), if the cloud assigned them all to it: until {}, after the bound {} (the last fault's end + `within: {}`); a correctly paced migration would fail `liveness`: make `within` at least {needed_min}m (and the drain long enough)",
        m.what,
        format_duration(m.at),
        format_duration(delay_max),
        m.users_of,
        format_duration(moving),
        format_duration(m.at + delay_max + moving),
        format_duration(bound),
        format_duration(within),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 200 Hybrid Message users over a PRG pair, 100 homed on each node; a connector node may
    /// wait up to 5 minutes, then moves 10 sessions a minute: 100 sessions take 10 minutes.
    fn scenario(ha: bool, faults: &str, within: &str) -> Scenario {
        let yaml = format!(
            "name: t\nseed: 1\nduration: 40m\ndrain: 30m\ntopology:\n  imp_clusters: [{{ name: a, nodes: 2, prg: {{ high_availability: {ha} }} }}]\n  expressway_clusters: [{{ name: a, size: large, imp_clusters: [a], migration: {{ detection_delay_max: 5m, rate: 10/1m }} }}]\nusers: {{ count: 200, hybrid_message: 100%, without_email: 0% }}\nfaults:\n{faults}checks:\n  - liveness: {{ within: {within} }}\n"
        );
        crate::parse("t.yaml", &yaml).expect("valid test scenario")
    }

    fn warned(ha: bool, faults: &str, within: &str) -> Vec<String> {
        crate::checks::scenario_warnings(&scenario(ha, faults, within))
    }

    #[test]
    fn a_bound_shorter_than_the_delay_and_the_rate_for_one_node_is_warned() {
        // The crash at 5m (for good: the last fault ends at 5m) may move imp-a-1's 100
        // sessions from 10m to 20m; `within: 10m` ends at 15m.
        let crash = "  - { at: 5m, crash: imp-a-1 }\n";
        let w = warned(true, crash, "10m");
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(
            w[0],
            "checks.liveness: after the crash of imp-a-1 at 5m, a connector node may wait up to 5m before it moves the 100 connector sessions of imp-a-1's users, then take 10m at the migration rate (spec 62), if the cloud assigned them all to it: until 20m, after the bound 15m (the last fault's end + `within: 10m`); a correctly paced migration would fail `liveness`: make `within` at least 15m (and the drain long enough)"
        );
        assert!(warned(true, crash, "15m").is_empty());
        // Without high availability nothing moves (the node's users wait for it).
        assert!(warned(false, crash, "10m").is_empty());
    }

    #[test]
    fn a_manual_failover_and_its_fallback_are_each_paced() {
        let faults = "  - { at: 5m, imp_failover: { node: imp-a-2, mode: manual } }\n  - { at: 20m, imp_fallback: { node: imp-a-2 } }\n";
        // The fallback at 20m may end at 35m; the bound is 20m + 14m.
        let w = warned(true, faults, "14m");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("checks.liveness: after the imp_fallback to imp-a-2 at 20m,"),
            "{w:?}"
        );
        assert!(w[0].contains("make `within` at least 15m"), "{w:?}");
        assert!(warned(true, faults, "15m").is_empty());
    }

    #[test]
    fn without_a_liveness_check_or_a_connector_nothing_is_warned() {
        let s = scenario(true, "  - { at: 5m, crash: imp-a-1 }\n", "1m");
        let mut no_check = s.clone();
        no_check.checks.clear();
        let users = crate::plan::topology::population(&s, &crate::plan::rng::RngFactory::new(1));
        assert!(warnings(&no_check, &users).is_empty());
        let mut no_connector = s.clone();
        no_connector.topology.expressway_clusters.clear();
        assert!(warnings(&no_connector, &users).is_empty());
        assert_eq!(warnings(&s, &users).len(), 1);
    }
}
