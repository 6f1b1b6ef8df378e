//! The IM&P side's configuration: the component port's settings (spec 10) and the PRG
//! settings of every node (spec 61-65), from the scenario.

use crate::plan::connector::COMPONENT_SECRET;
use crate::plan::topology::{self, UserSpec};
use crate::scenario::{FailoverMode, Fault, ImpCluster, Scenario};
use fakes::imp::PrgConfig;
use fakes::imp::component::{ComponentConfig, CreateRate};
use std::collections::BTreeMap;
use std::time::Duration;

/// The component port settings of a cluster's nodes.
pub fn component_config(c: &ImpCluster) -> ComponentConfig {
    ComponentConfig {
        secret: COMPONENT_SECRET.into(),
        sessions_max: c.sessions.max.map(|m| m as usize),
        create_rate: c.sessions.create_rate.map(|r| CreateRate {
            sessions: r.count.round().clamp(1.0, f64::from(u32::MAX)) as u32,
            per: r.per,
        }),
    }
}

/// The JSM session limit of every node of cluster `c`: 1.5 × its OVA's user capacity
/// (spec 10).
pub fn jsm_sessions_max(c: &ImpCluster) -> usize {
    usize::try_from(c.ova.jsm_sessions_max()).unwrap_or(usize::MAX)
}

/// The client re-login window of cluster `c`'s Jabber clients after a failover or fallback:
/// the scenario's limits (spec 65: 120-537 s), the upper one doubled with Multiple Device
/// Messaging on ("MDM roughly doubles failover times", spec 65): every device of a user logs
/// in again, so the window the node spreads the logins over is twice as long.
pub fn relogin_window(c: &ImpCluster) -> (Duration, Duration) {
    let (lower, upper) = (c.prg.client_relogin.lower.0, c.prg.client_relogin.upper.0);
    let upper = if c.mdm { upper * 2 } else { upper };
    (lower, upper.max(lower))
}

/// The PRG settings of every node of cluster `c`.
pub fn node_config(c: &ImpCluster) -> PrgConfig {
    PrgConfig {
        cluster: (1..=c.nodes)
            .map(|n| topology::imp_host(&c.name, n))
            .collect(),
        high_availability: c.prg.high_availability,
        automatic_fallback: c.prg.automatic_fallback,
        heartbeat_timeout: c.prg.heartbeat_timeout.0,
        remote: Vec::new(),
    }
}

/// The PRG settings of every node of cluster `ci` of `s`, knowing the nodes of every other
/// cluster (ICSA): a failover in one cluster changes where the others route to its users.
pub fn node_config_with_remote(s: &Scenario, ci: usize) -> PrgConfig {
    let clusters = &s.topology.imp_clusters;
    PrgConfig {
        remote: clusters
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != ci)
            .map(|(_, o)| node_config(o).cluster)
            .collect(),
        ..node_config(&clusters[ci])
    }
}

/// The high availability of cluster `c` in effect at `at`: the scenario's setting, changed by
/// every `prg_high_availability` fault on `c` up to `at` (spec 61: live on IM&P at once).
pub fn high_availability_at(s: &Scenario, c: &ImpCluster, at: Duration) -> bool {
    let host = topology::imp_host(&c.name, 1);
    s.faults
        .iter()
        .filter(|f| f.at.0 <= at)
        .filter_map(|f| f.prg_high_availability.as_ref())
        .filter(|ha| topology::imp_host(&ha.cluster, 1) == host)
        .fold(c.prg.high_availability, |_, ha| ha.enabled)
}

/// Whether cluster `c` has high availability on at `at` or at any time after: the peer of a
/// silent node keeps watching it, and takes it over as soon as the heartbeat timeout has run
/// out with high availability on (spec 65).
fn high_availability_from(s: &Scenario, c: &ImpCluster, at: Duration) -> bool {
    let host = topology::imp_host(&c.name, 1);
    high_availability_at(s, c, at)
        || s.faults.iter().any(|f| {
            f.at.0 > at
                && f.prg_high_availability
                    .as_ref()
                    .is_some_and(|ha| ha.enabled && topology::imp_host(&ha.cluster, 1) == host)
        })
}

/// IM&P nodes down for good that no peer takes over, each with the time it failed (the
/// earliest, if several faults do it): a crash (or an automatic failover) without `for`, of a
/// node without a PRG peer or whose PRG has high availability off from the time the peer's
/// heartbeat timeout runs out on (a `prg_high_availability` change counts at once, spec 61;
/// switched off between the failure and the takeover, nobody takes over: explore seed 165), or
/// whose peer is down for good too (from the node's failure if the peer failed before the
/// takeover, else from the peer's). High availability is what moves a failed node's users to
/// its peer (the guide: "The Hybrid Message Service automatically
/// responds to an unexpected failure of an IM and Presence Service node" through the PRG's
/// failover, spec 64-65); without it, the node's users have no service until it returns, which
/// it never does here.
pub fn stranded_since(s: &Scenario) -> BTreeMap<String, Duration> {
    let down = down_for_good(s);
    let mut out: BTreeMap<String, Duration> = BTreeMap::new();
    for (n, (failed_at, c)) in &down {
        let takeover_at = *failed_at + c.prg.heartbeat_timeout.0;
        let peer = node_config(c).peer_of(n).map(str::to_string);
        let taken_over = high_availability_from(s, c, takeover_at) && peer.is_some();
        // The peer down for good too: before the takeover nobody takes the node over; after
        // it, the users it took over lose it in turn, with nobody left to take them back
        // (explore seed 5077).
        let peer_down = peer.and_then(|p| down.get(&p).map(|(at, _)| *at));
        let since = match peer_down {
            _ if !taken_over => Some(*failed_at),
            Some(p_at) if p_at <= takeover_at => Some(*failed_at),
            Some(p_at) => Some(p_at),
            None => None,
        };
        if let Some(at) = since {
            out.insert(n.clone(), at);
        }
    }
    out
}

/// IM&P nodes down for good that their PRG peer takes over (those failed for good and not
/// [`stranded_since`]), each with its cluster.
pub fn taken_over_for_good(s: &Scenario) -> BTreeMap<String, &ImpCluster> {
    taken_over_for_good_since(s)
        .into_iter()
        .map(|(n, (_, c))| (n, c))
        .collect()
}

/// [`taken_over_for_good`], with when each node went down. What the node held in offline
/// storage then is lost with it: a node's offline messages live in its own database, and only
/// the node hands them over (at a failover or fallback it takes part in, or once restarted),
/// which one down for good never does (explore seed 25446).
pub fn taken_over_for_good_since(s: &Scenario) -> BTreeMap<String, (Duration, &ImpCluster)> {
    let stranded = stranded_since(s);
    (down_for_good(s).into_iter())
        .filter(|(n, _)| !stranded.contains_key(n))
        .collect()
}

/// The node failures fault `f` makes (hosts not checked to be IM&P nodes): each host with the
/// fault's kind (`crash`, `imp_failover`) and whether the PRG takes the node over on its own
/// (a crash or an automatic failover, spec 65; a manual one is the administrator's), crashes
/// first.
pub fn failures(f: &Fault) -> impl Iterator<Item = (&String, &'static str, bool)> {
    let crashes = (f.crash.iter().flat_map(|h| h.0.iter())).map(|n| (n, "crash", true));
    let failovers = (f.imp_failover.iter())
        .map(|x| (&x.node, "imp_failover", x.mode == FailoverMode::Automatic));
    crashes.chain(failovers)
}

/// IM&P nodes a fault fails over while their PRG has high availability on (a crash or a
/// failover of either mode, whatever its `for`), each with its cluster and the times of those
/// faults: their PRG peer takes their users over (spec 65).
pub fn failed_over_under_ha(s: &Scenario) -> BTreeMap<String, (&ImpCluster, Vec<Duration>)> {
    let mut out: BTreeMap<String, (&ImpCluster, Vec<Duration>)> = BTreeMap::new();
    for f in &s.faults {
        for (n, _, _) in failures(f) {
            let Some(c) = topology::imp_cluster_of(s, n) else {
                continue; // not an IM&P node
            };
            if high_availability_at(s, c, f.at.0) {
                out.entry(n.clone())
                    .or_insert((c, Vec::new()))
                    .1
                    .push(f.at.0);
            }
        }
    }
    out
}

/// IM&P nodes failed for good (a crash or an automatic failover without `for`), each with the
/// earliest time a fault did it and its cluster.
fn down_for_good(s: &Scenario) -> BTreeMap<String, (Duration, &ImpCluster)> {
    let mut out: BTreeMap<String, (Duration, &ImpCluster)> = BTreeMap::new();
    for f in s.faults.iter().filter(|f| f.for_.is_none()) {
        for (n, _, _) in failures(f).filter(|(_, _, automatic)| *automatic) {
            let Some(c) = topology::imp_cluster_of(s, n) else {
                continue; // not an IM&P node
            };
            let at = out.entry(n.clone()).or_insert((f.at.0, c));
            at.0 = at.0.min(f.at.0);
        }
    }
    out
}

/// The latest time a Jabber device homed on `host` may log in again after the last fault that
/// took its session away (a crash or bounce of `host`, or a failover of it), with what that
/// fault was: the fault's start, the time a client takes to notice a silent node (three
/// keepalive intervals), and the client re-login upper limit of [`relogin_window`] (spec 65:
/// 537 s by default, "MDM roughly doubles failover times"). `None` when no such fault names
/// `host` or it has no PRG peer to log in to. A run that ends before this bound may end with
/// the device still out and messages to it in offline storage, delivered by nothing wrong.
pub fn relogin_bound(s: &Scenario, host: &str) -> Option<(Duration, String)> {
    let c = s
        .topology
        .imp_clusters
        .iter()
        .find(|c| node_config(c).cluster.iter().any(|h| h == host))?;
    node_config(c).peer_of(host)?;
    let names = |h: &Option<crate::scenario::Hosts>| {
        h.as_ref().is_some_and(|h| h.0.iter().any(|n| n == host))
    };
    let last = s.faults.iter().filter_map(|f| {
        let failover = f.imp_failover.as_ref().is_some_and(|x| x.node == host);
        let kind = if names(&f.crash) {
            "crash"
        } else if names(&f.bounce) {
            "bounce"
        } else if failover {
            "failover"
        } else {
            return None;
        };
        Some((f, kind))
    });
    let (f, kind) = last.max_by_key(|(f, _)| f.at.0)?;
    let upper = relogin_window(c).1;
    let bound = f.at.0 + s.keepalive.interval.0 * 3 + upper;
    let why = format!(
        "the {kind} of {host} at {} + 3 keepalive intervals + the client re-login upper limit {} ({}, spec 65)",
        crate::scenario::units::format_duration(f.at.0),
        crate::scenario::units::format_duration(upper),
        if c.mdm {
            "the cluster's limit doubled with MDM"
        } else {
            "the cluster's limit"
        }
    );
    Some((bound, why))
}

/// The servers a user's Jabber devices log in to, in order: the home node, then its PRG
/// peer (Jabber's high-availability login profile, spec 65).
pub fn login_servers(s: &Scenario, u: &UserSpec) -> Vec<String> {
    let home = u.home_host(s);
    let cluster = &s.topology.imp_clusters[u.cluster];
    let peer = node_config(cluster).peer_of(&home).map(str::to_string);
    std::iter::once(home).chain(peer).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::rng::RngFactory;

    fn scenario() -> Scenario {
        let yaml = "name: t\nseed: 1\nduration: 1m\ntopology:\n  imp_clusters: [{ name: a, nodes: 2 }]\nusers: { count: 2, jabber: 100% }\n";
        crate::parse("t.yaml", yaml).expect("valid test scenario")
    }

    #[test]
    fn high_availability_follows_the_changes_made_so_far() {
        let yaml = "name: t\nseed: 1\nduration: 10m\ntopology:\n  imp_clusters: [{ name: a, nodes: 2, prg: { high_availability: false } }]\nusers: { count: 2 }\nfaults:\n  - { at: 2m, prg_high_availability: { cluster: imp-a, enabled: true } }\n  - { at: 4m, prg_high_availability: { cluster: a, enabled: false } }\n";
        let s = crate::parse("t.yaml", yaml).expect("valid");
        let c = &s.topology.imp_clusters[0];
        let at = |m: u64| high_availability_at(&s, c, Duration::from_secs(m * 60));
        assert_eq!(
            (at(1), at(2), at(3), at(4), at(9)),
            (false, true, true, false, false)
        );
    }

    #[test]
    fn login_servers_are_the_home_then_its_peer() {
        let s = scenario();
        let users = topology::population(&s, &RngFactory::new(1));
        assert_eq!(login_servers(&s, &users[0]), vec!["imp-a-1", "imp-a-2"]);
        assert_eq!(login_servers(&s, &users[1]), vec!["imp-a-2", "imp-a-1"]);
    }
}
