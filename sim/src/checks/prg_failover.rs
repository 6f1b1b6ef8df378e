//! Presence Redundancy Groups in the simulation (spec 61-65): the nodes' PRG settings from the
//! scenario, the Jabber clients' server lists, the `imp_failover` / `imp_fallback` faults, the
//! `prg_state/<host>` time series, and the `prg_failover` check.
//!
//! The PRG logic itself lives in the node core (`fakes::imp::prg`); heartbeats and takeovers
//! travel over the router links between IM&P hosts like any other stanza.
//!
//! ## Fault injection writes into a host
//!
//! The runner keeps read-only handles on node cores (`runner::NodeSlots`) for sampling. A manual
//! failover or a fallback is an administrator's action on one node: [`apply`] calls
//! [`ImpNode::prg_failover`] / [`ImpNode::prg_fallback`] on the running core. This is the one
//! deliberate write into a host from outside, like turmoil's `crash`: it models the
//! administration page, not a network input. What the call queues leaves at the node's next
//! PRG timer tick (`driver::PRG_TICK`). An automatic failover (`mode: automatic`) is a crash
//! of the node's host, detected by its peer's heartbeat timeout (see `faults::timeline`).
//!
//! ## `prg_state/<host>` series
//!
//! One point per sample: [`fakes::imp::PrgState::code`] (0 Unknown, 1 Normal, 2 Failing Over,
//! 3 Taking Over, 4 Idle, 5 Running in Backup Mode, 6 Failed Over, 7 Failed Over with Critical
//! Services Not Running, 8 Falling Back, 9 Taking Back, 10 Running in Failed Mode); a node
//! whose host is down reads 0 (Unknown). Every state change is also folded into the trace
//! digest as `fault prg <host>: <from> -> <to>` and counted in coverage.

use crate::checks::{Check, Entry, Verdict, boxed};
use crate::history::History;
use crate::plan::imp::node_config;
use crate::plan::validate::Problem;
use crate::scenario::{Dur, FailoverMode, Scenario};
use fakes::imp::PrgState;
use reports::Status;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// When the scenario fails `node` over: a manual or automatic `imp_failover`, or a crash of
/// the host (an automatic failover by heartbeat timeout).
fn failover_at(s: &Scenario, node: &str) -> Option<Duration> {
    s.faults
        .iter()
        .filter(|f| {
            f.imp_failover.as_ref().is_some_and(|x| x.node == node)
                || f.crash
                    .as_ref()
                    .is_some_and(|h| h.0.iter().any(|x| x == node))
        })
        .map(|f| f.at.0)
        .min()
}

/// When the scenario falls back to `node`: an `imp_fallback`, or the end of a manual
/// `imp_failover` with `for`.
fn fallback_at(s: &Scenario, node: &str) -> Option<Duration> {
    s.faults
        .iter()
        .filter_map(|f| {
            if f.imp_fallback.as_ref().is_some_and(|x| x.node == node) {
                return Some(f.at.0);
            }
            let manual = f
                .imp_failover
                .as_ref()
                .is_some_and(|x| x.node == node && x.mode == FailoverMode::Manual);
            if manual {
                return f.for_.map(|d| f.at.0 + d.0);
            }
            None
        })
        .min()
}

/// When automatic fallback (spec 65) should have given `node` its users back: 30 minutes after
/// it was Failed Over and healthy, read from its `prg_state` series. The sample before the
/// state was first seen is taken, so the time is never later than the real one.
fn auto_fallback_at(s: &Scenario, out: &History, node: &str, t_fail: Duration) -> Option<Duration> {
    let on = s
        .topology
        .imp_clusters
        .iter()
        .any(|c| c.prg.automatic_fallback && node_config(c).cluster.iter().any(|h| h == node));
    if !on {
        return None;
    }
    let pts = out.prg_states.get(node)?;
    let i = pts.iter().position(|(t, st)| {
        *st == PrgState::FailedOver && t.as_secs_f64() >= t_fail.as_secs_f64()
    })?;
    let before = pts[i.saturating_sub(1)].0.as_secs_f64();
    Some(Duration::from_secs_f64(before) + fakes::imp::prg::AUTO_FALLBACK_DELAY)
}

/// Re-logins of `users`' devices to `server` after `from`: device → first login time.
fn relogins(
    out: &History,
    users: &[&str],
    server: &str,
    from: Duration,
    until: Duration,
) -> BTreeMap<(String, String), Duration> {
    let reason = format!("logged in to {server}");
    let mut first = BTreeMap::new();
    for e in out.observer.sessions() {
        if e.up
            && e.at >= from
            && e.at < until
            && e.reason == reason
            && users.contains(&e.user.as_str())
        {
            first.entry((e.user, e.device)).or_insert(e.at);
        }
    }
    first
}

/// The `prg_failover` check: after the failover of `node`, at least `sessions` devices of its
/// users logged in to `peer` within `within`; after a fallback (an `imp_fallback` fault, the
/// end of a manual failover with `for`, or the cluster's automatic fallback), as many logged
/// in to `node` again within the same bound; no device of its users logged in to
/// `node` while the peer served them; and the peer ran in backup mode.
pub fn check(s: &Scenario, out: &History, e: &PrgFailover) -> (Status, String) {
    let Some(t_fail) = failover_at(s, &e.node) else {
        return (
            Status::Fail,
            format!(
                "no failover of {} in the scenario: nothing to judge",
                e.node
            ),
        );
    };
    let t_back = fallback_at(s, &e.node).or_else(|| auto_fallback_at(s, out, &e.node, t_fail));
    let end = out.elapsed.max(s.duration.0) + s.drain.0;
    let users: Vec<&str> = out
        .users
        .iter()
        .filter(|u| u.jabber && u.home_host(s) == e.node)
        .map(|u| u.jid.as_str())
        .collect();
    let mut bad = Vec::new();
    let moved = relogins(out, &users, &e.peer, t_fail, t_back.unwrap_or(end));
    let in_time: Vec<Duration> = moved
        .values()
        .map(|t| *t - t_fail)
        .filter(|d| *d <= e.within.0)
        .collect();
    let slowest = moved
        .values()
        .map(|t| *t - t_fail)
        .max()
        .unwrap_or_default();
    if (in_time.len() as u64) < u64::from(e.sessions) {
        bad.push(format!(
            "{} of {} expected devices re-logged in to {} within {} of the failover (slowest {:.0}s)",
            in_time.len(),
            e.sessions,
            e.peer,
            e.within,
            slowest.as_secs_f64()
        ));
    }
    stayed_on_node(out, e, &users, (t_fail, t_back.unwrap_or(end)), &mut bad);
    let back_detail = t_back
        .map(|t| fallback(out, e, &users, (t, end), &mut bad))
        .unwrap_or_default();
    let peer_backed_up = out.prg_states.get(&e.peer).is_some_and(|pts| {
        pts.iter()
            .any(|(_, st)| *st == PrgState::RunningInBackupMode)
    });
    if !peer_backed_up {
        bad.push(format!("{} never ran in backup mode", e.peer));
    }
    if bad.is_empty() {
        (
            Status::Pass,
            format!(
                "{} devices of {}'s users re-logged in to {} (slowest {:.0}s after the failover){back_detail}",
                moved.len(),
                e.node,
                e.peer,
                slowest.as_secs_f64()
            ),
        )
    } else {
        (Status::Fail, bad.join("; "))
    }
}

/// While the peer served them, the node must have refused its users' devices.
fn stayed_on_node(
    out: &History,
    e: &PrgFailover,
    users: &[&str],
    (t_fail, until): (Duration, Duration),
    bad: &mut Vec<String>,
) {
    let stayed = relogins(out, users, &e.node, t_fail + e.within.0, until);
    if !stayed.is_empty() {
        let (u, d) = stayed.keys().next().cloned().unwrap_or_default();
        bad.push(format!(
            "{} devices logged in to {} while its users were failed over (e.g. {u}/{d})",
            stayed.len(),
            e.node
        ));
    }
}

/// After the fallback at `t_back`: as many devices back on the node within the bound.
fn fallback(
    out: &History,
    e: &PrgFailover,
    users: &[&str],
    (t_back, end): (Duration, Duration),
    bad: &mut Vec<String>,
) -> String {
    let back = relogins(out, users, &e.node, t_back, end);
    let ok = back.values().filter(|t| **t - t_back <= e.within.0).count();
    let slowest_back = back.values().map(|t| *t - t_back).max().unwrap_or_default();
    if (ok as u64) < u64::from(e.sessions) {
        bad.push(format!(
            "{ok} of {} expected devices re-logged in to {} within {} of the fallback",
            e.sessions, e.node, e.within
        ));
    }
    format!(
        "; fallback: {ok} back on {} (slowest {:.0}s)",
        e.node,
        slowest_back.as_secs_f64()
    )
}

/// The `prg_failover` check: the expected PRG failover (spec 65).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrgFailover {
    /// The node that fails over (`imp-a-1`).
    pub node: String,
    /// Its PRG peer, which takes its users over (`imp-a-2`).
    pub peer: String,
    /// Jabber devices of the node's users expected to re-log in to the peer (and back).
    pub sessions: u32,
    /// Each of them within this long of the failover (and of the fallback).
    pub within: Dur,
}

/// How the registry reads it.
pub const ENTRY: Entry = Entry {
    name: "prg_failover",
    bare: false,
    read: boxed::<PrgFailover>,
};

impl Check for PrgFailover {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn validate(&self, s: &Scenario, at: &str) -> Vec<Problem> {
        let pair = s
            .topology
            .imp_clusters
            .iter()
            .any(|cl| node_config(cl).peer_of(&self.node) == Some(self.peer.as_str()));
        if pair {
            return Vec::new();
        }
        vec![Problem {
            path: format!("{at}.prg_failover"),
            message: format!("`{}` and `{}` are not a PRG pair", self.node, self.peer),
            help: Some("PRGs pair nodes 1+2, 3+4 and 5+6 of a cluster (spec 65)".into()),
        }]
    }
    fn judge(&self, s: &Scenario, h: &History) -> Verdict {
        check(s, h, self)
    }
}

#[cfg(test)]
mod tests {
    //! The check judged on hand-written histories: it passes when the devices moved to the peer
    //! in time and back, and fails otherwise.
    use super::*;
    use crate::history::observer::Observer;
    use crate::plan::rng::RngFactory;
    use crate::plan::topology;
    use fakes::observe::Recorder as _;
    use std::rc::Rc;

    fn scenario(fallback: bool) -> Scenario {
        let fb = if fallback {
            "\n  - { at: 30s, imp_fallback: { node: imp-a-1 } }"
        } else {
            ""
        };
        let yaml = format!(
            "name: t\nseed: 1\nduration: 1m\ntopology:\n  imp_clusters: [{{ name: a, nodes: 2 }}]\nusers: {{ count: 2, jabber: 100% }}\nfaults:\n  - {{ at: 0s, imp_failover: {{ node: imp-a-1 }} }}{fb}\nchecks:\n  - prg_failover: {{ node: imp-a-1, peer: imp-a-2, sessions: 1, within: 5m }}\n"
        );
        crate::parse("t.yaml", &yaml).expect("valid test scenario")
    }

    fn expect(s: &Scenario) -> PrgFailover {
        crate::checks::params(&s.checks[0].params).expect("check")
    }

    /// user00000 is homed on imp-a-1 (round-robin over the nodes).
    fn output(s: &Scenario, logins: &[&str], backup: bool) -> History {
        let o = Rc::new(Observer::new());
        for server in logins {
            o.session(
                "jabber-1",
                "user00000@example.com",
                "jabber-1.0",
                true,
                &format!("logged in to {server}"),
            );
        }
        let users = topology::population(s, &RngFactory::new(1));
        let mut out = History::from_history(1, o, users);
        let backup = if backup {
            PrgState::RunningInBackupMode
        } else {
            PrgState::Normal
        };
        out.prg_states.insert(
            "imp-a-2".into(),
            vec![
                (Duration::ZERO, PrgState::Normal),
                (Duration::from_secs(1), backup),
            ],
        );
        out
    }

    #[test]
    fn passes_when_devices_move_to_the_peer_and_fails_otherwise() {
        let s = scenario(false);
        let e = expect(&s);
        let (st, detail) = check(&s, &output(&s, &["imp-a-2"], true), &e);
        assert_eq!(st, Status::Pass, "{detail}");
        let (st, detail) = check(&s, &output(&s, &["imp-a-1"], true), &e);
        assert_eq!(st, Status::Fail, "{detail}");
        assert!(detail.contains("0 of 1"), "{detail}");
        let (st, detail) = check(&s, &output(&s, &["imp-a-2"], false), &e);
        assert_eq!(st, Status::Fail, "{detail}");
        assert!(detail.contains("backup mode"), "{detail}");
    }

    #[test]
    fn a_fallback_must_bring_the_devices_back() {
        let s = scenario(true);
        let e = expect(&s);
        // Outside turmoil every event is at time 0, before the fallback at 30 s.
        let (st, detail) = check(&s, &output(&s, &["imp-a-2"], true), &e);
        assert_eq!(st, Status::Fail, "{detail}");
        assert!(detail.contains("of the fallback"), "{detail}");
    }
}
