//! Whether each PRG peer can take its failed node's connector sessions (spec 10, 61-62). A
//! failover hands the failed node's users to its peer, which must then hold the connector
//! sessions of both nodes' users; beyond its session limit IM&P refuses the moves with
//! `resource-constraint` and the failover stalls there. That is a property of the scenario,
//! so it is a warning (in `hmsim check` and in the report), not a check of the run.

use crate::plan::imp::{component_config, node_config};
use crate::plan::topology::{UserSpec, population};
use crate::scenario::Scenario;
use fakes::imp::component::SESSIONS_PER_HOMED_USER_TENTHS;

/// The warnings of scenario `s` whose population is `users`: one per failover (crash or
/// `imp_failover` of a node in a PRG with high availability) whose peer cannot hold the
/// connector sessions of both nodes' Hybrid Message users.
pub fn warnings(s: &Scenario, users: &[UserSpec]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, c) in s.topology.imp_clusters.iter().enumerate() {
        // Only a cluster a connector serves has connector sessions.
        let served = s
            .topology
            .expressway_clusters
            .iter()
            .any(|e| e.imp_clusters.contains(&c.name));
        if !served {
            continue;
        }
        let prg = node_config(c);
        let limit_of = |node: &str| {
            let homed = users.iter().filter(|u| u.home_host(s) == node).count();
            component_config(c)
                .sessions_max
                .unwrap_or(homed * SESSIONS_PER_HOMED_USER_TENTHS / 10)
        };
        for f in &s.faults {
            let mut failed: Vec<&String> = f.crash.iter().flat_map(|h| h.0.iter()).collect();
            failed.extend(f.imp_failover.iter().map(|x| &x.node));
            for node in failed {
                let Some(peer) = prg.peer_of(node) else {
                    continue;
                };
                if !crate::plan::imp::high_availability_at(s, c, f.at.0) {
                    continue;
                }
                let sessions = users
                    .iter()
                    // A connector session per Hybrid Message user it can match (spec 24-25).
                    .filter(|u| u.hybrid && u.email.is_some() && u.duplicate_in.is_none())
                    .filter(|u| {
                        let home = u.home_host(s);
                        home == *node || home == peer
                    })
                    .count();
                let limit = limit_of(peer);
                if sessions > limit {
                    out.push(format!(
                        "topology.imp_clusters[{i}]: after the failover of {node} at {}, {peer} must hold up to {sessions} connector sessions (the Hybrid Message users of both nodes) but its session limit is {limit}: the failover stalls at the limit (spec 10); raise `sessions.max`",
                        crate::scenario::units::format_duration(f.at.0)
                    ));
                }
            }
        }
    }
    out
}

/// The warnings of `s` at its own seed.
pub fn scenario_warnings(s: &Scenario) -> Vec<String> {
    warnings(
        s,
        &population(s, &crate::plan::rng::RngFactory::new(s.seed)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "name: t\nseed: 1\nduration: 30m\ntopology:\n  imp_clusters: [{ name: a, nodes: 2, prg: { high_availability: true }LIMIT }]\n  expressway_clusters: [{ name: a, size: large, imp_clusters: [a] }]\nusers: { count: 100, hybrid_message: 100%, webex: 100% }\nfaults:\n  - { at: 5m, crash: imp-a-1 }\nchecks:\n  - no_message_loss\n";

    fn warned(limit: &str) -> Vec<String> {
        let s = crate::parse("t.yaml", &YAML.replace("LIMIT", limit)).expect("valid");
        scenario_warnings(&s)
    }

    #[test]
    fn a_peer_that_cannot_take_both_nodes_sessions_is_warned() {
        // 50 users per node: the default limit (1.5 × the 50 homed on imp-a-2 = 75) cannot
        // hold the 100 sessions after the failover.
        let w = warned("");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("after the failover of imp-a-1 at 5m, imp-a-2 must hold up to 100 connector sessions (the Hybrid Message users of both nodes) but its session limit is 75"),
            "{}",
            w[0]
        );
        assert!(warned(", sessions: { max: 100 }").is_empty());
    }

    #[test]
    fn without_high_availability_nothing_moves_and_nothing_is_warned() {
        let s = YAML
            .replace("LIMIT", "")
            .replace("high_availability: true", "high_availability: false");
        let s = crate::parse("t.yaml", &s).expect("valid");
        assert!(scenario_warnings(&s).is_empty());
    }
}
