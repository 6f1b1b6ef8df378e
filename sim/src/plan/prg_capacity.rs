//! Whether each PRG peer can take its failed node's sessions (spec 10, 61-62). A failover
//! hands the failed node's users to its peer, which must then hold the JSM sessions of both
//! nodes' users: with Multiple Device Messaging every client device is one (each Jabber device
//! and each connector session), without it every user with one. Beyond its JSM session limit,
//! 1.5 × its OVA's user capacity, IM&P refuses the moves with `resource-constraint` and the
//! failover stalls there. That is a property of the scenario, so it is a warning (in
//! `hmsim check` and in the report), not a check of the run; a run that does stall counts the
//! refusals (`prg_failover` fails on them).

use crate::plan::imp::{jsm_sessions_max, node_config};
use crate::plan::topology::UserSpec;
use crate::scenario::{ImpCluster, Scenario};

/// The JSM sessions a set of users holds on one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Load {
    /// Jabber devices.
    jabber: usize,
    /// Connector sessions (one per Hybrid Message user the connector can match, spec 24-25).
    connector: usize,
    /// JSM sessions: devices with MDM, users with any device without it.
    jsm: usize,
}

/// The load of `users` on a node of cluster `c`; `served`: a connector serves the cluster.
fn load(c: &ImpCluster, users: &[&UserSpec], served: bool) -> Load {
    let session =
        |u: &UserSpec| served && u.hybrid && u.email.is_some() && u.duplicate_in.is_none();
    let devices = |u: &UserSpec| if u.jabber { u.devices as usize } else { 0 };
    let jabber = users.iter().map(|u| devices(u)).sum();
    let connector = users.iter().filter(|u| session(u)).count();
    let jsm = if c.mdm {
        jabber + connector
    } else {
        users
            .iter()
            .filter(|u| devices(u) > 0 || session(u))
            .count()
    };
    Load {
        jabber,
        connector,
        jsm,
    }
}

/// The warnings of scenario `s` whose population is `users`: one per failover (crash or
/// `imp_failover` of a node in a PRG with high availability) whose peer cannot hold the
/// sessions of both nodes' users, within its JSM session limit or the connector-session cap
/// `sessions.max`.
pub fn warnings(s: &Scenario, users: &[UserSpec]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, c) in s.topology.imp_clusters.iter().enumerate() {
        // Only a cluster a connector serves has connector sessions.
        let served = s
            .topology
            .expressway_clusters
            .iter()
            .any(|e| e.imp_clusters.contains(&c.name));
        let prg = node_config(c);
        for f in &s.faults {
            for (node, _, _) in crate::plan::imp::failures(f) {
                let Some(peer) = prg.peer_of(node) else {
                    continue;
                };
                if !crate::plan::imp::high_availability_at(s, c, f.at.0) {
                    continue;
                }
                let pair: Vec<&UserSpec> = users
                    .iter()
                    .filter(|u| {
                        let home = u.home_host(s);
                        home == *node || home == peer
                    })
                    .collect();
                let l = load(c, &pair, served);
                let at = format!(
                    "topology.imp_clusters[{i}]: after the failover of {node} at {}, {peer}",
                    crate::scenario::units::format_duration(f.at.0)
                );
                out.extend(limit_warnings(c, &at, l));
            }
        }
    }
    out
}

/// What `l` on one node breaks of `c`'s limits; `at` says which node and when.
fn limit_warnings(c: &ImpCluster, at: &str, l: Load) -> Vec<String> {
    let mut out = Vec::new();
    let max = jsm_sessions_max(c);
    if l.jsm > max {
        let counted = if c.mdm {
            "every device counted, MDM on"
        } else {
            "one per user, MDM off"
        };
        out.push(format!(
            "{at} must hold up to {} JSM sessions ({} Jabber devices and {} connector sessions of both nodes' users, {counted}) but its JSM session limit is {max} (1.5 × its OVA of {} users): the failover stalls at the limit and {} sessions cannot move (spec 10); choose a larger `ova`",
            l.jsm,
            l.jabber,
            l.connector,
            c.ova.users,
            l.jsm - max
        ));
    }
    if let Some(cap) = c.sessions.max.map(|m| m as usize)
        && l.connector > cap
    {
        out.push(format!(
            "{at} must hold up to {} connector sessions (the Hybrid Message users of both nodes) but its session limit is {cap}: the failover stalls at the limit (spec 10); raise `sessions.max`",
            l.connector
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::topology::population;

    const YAML: &str = "name: t\nseed: 1\nduration: 30m\ntopology:\n  imp_clusters: [{ name: a, nodes: 2, prg: { high_availability: true }LIMIT }]\n  expressway_clusters: [{ name: a, size: large, imp_clusters: [a] }]\nusers: { count: 100, hybrid_message: 100%, webex: 100%, jabber: 100% }\nfaults:\n  - { at: 5m, crash: imp-a-1 }\nchecks:\n  - no_message_loss\n";

    fn warned(limit: &str) -> Vec<String> {
        let s = crate::parse("t.yaml", &YAML.replace("LIMIT", limit)).expect("valid");
        at_own_seed(&s)
    }

    /// The warnings of `s` at its own seed's population.
    fn at_own_seed(s: &Scenario) -> Vec<String> {
        warnings(
            s,
            &population(s, &crate::plan::rng::RngFactory::new(s.seed)),
        )
    }

    #[test]
    fn a_peer_whose_ova_cannot_take_both_nodes_devices_is_warned() {
        // 100 users, each with a Jabber device and a connector session: 200 JSM sessions on
        // the peer after the failover. An OVA of 120 users holds 180; the default 15k, or an
        // OVA of 150 users (225), holds them. The users homed on the peer alone (100) fit.
        let w = warned(", ova: 120");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("after the failover of imp-a-1 at 5m, imp-a-2 must hold up to 200 JSM sessions (100 Jabber devices and 100 connector sessions of both nodes' users, every device counted, MDM on) but its JSM session limit is 180 (1.5 × its OVA of 120 users): the failover stalls at the limit and 20 sessions cannot move"),
            "{}",
            w[0]
        );
        assert!(warned("").is_empty(), "{:?}", warned(""));
        assert!(warned(", ova: 150").is_empty());
        // Without MDM a user would be one JSM session, but Hybrid Message requires MDM (spec
        // 20): validation refuses a connector on such a cluster before any warning.
        let no_mdm = YAML.replace("LIMIT", ", ova: 120, mdm: false");
        assert!(crate::parse("t.yaml", &no_mdm).is_err());
    }

    #[test]
    fn a_connector_session_cap_is_warned_on_its_own() {
        let w = warned(", sessions: { max: 75 }");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("must hold up to 100 connector sessions"),
            "{}",
            w[0]
        );
        assert!(w[0].contains("its session limit is 75"), "{}", w[0]);
        assert!(warned(", sessions: { max: 100 }").is_empty());
    }

    #[test]
    fn without_high_availability_nothing_moves_and_nothing_is_warned() {
        let s = YAML
            .replace("LIMIT", ", ova: 10")
            .replace("high_availability: true", "high_availability: false");
        let s = crate::parse("t.yaml", &s).expect("valid");
        assert!(at_own_seed(&s).is_empty());
    }

    #[test]
    fn ova_sizes_parse_and_unknown_ones_are_refused() {
        let s = crate::parse("t.yaml", &YAML.replace("LIMIT", ", ova: 25k")).expect("valid");
        assert_eq!(jsm_sessions_max(&s.topology.imp_clusters[0]), 37_500);
        let s = crate::parse("t.yaml", &YAML.replace("LIMIT", ", ova: 5k")).expect("valid");
        assert_eq!(jsm_sessions_max(&s.topology.imp_clusters[0]), 7_500);
        let s = crate::parse("t.yaml", &YAML.replace("LIMIT", "")).expect("valid");
        assert_eq!(jsm_sessions_max(&s.topology.imp_clusters[0]), 22_500);
        let e = crate::parse("t.yaml", &YAML.replace("LIMIT", ", ova: 7k")).unwrap_err();
        assert!(format!("{e:?}").contains("5k, 15k and 25k"), "{e:?}");
    }
}
