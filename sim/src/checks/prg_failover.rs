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
use std::collections::{BTreeMap, BTreeSet};
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

/// Why a re-login moment is judged: the failover or the fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    /// The peer took the node's users; `crash`: automatically, because the node died.
    Failover { crash: bool },
    /// The node took its users back.
    Fallback,
}

/// Whether the failover of `node` is automatic (a crash of its host, or an automatic
/// `imp_failover`, which is one): its devices first have to notice the node is gone.
fn failover_is_crash(s: &Scenario, node: &str) -> bool {
    s.faults.iter().any(|f| {
        f.crash
            .as_ref()
            .is_some_and(|h| h.0.iter().any(|x| x == node))
            || f.imp_failover
                .as_ref()
                .is_some_and(|x| x.node == node && x.mode == FailoverMode::Automatic)
    })
}

/// The guide's client re-login lower limit (spec 65), when no cluster names the node.
const GUIDE_RELOGIN_LOWER: Duration = Duration::from_secs(120);
/// The guide's client re-login upper limit (spec 65).
const GUIDE_RELOGIN_UPPER: Duration = Duration::from_secs(537);
/// "MDM roughly doubles failover times" (spec 65).
const MDM_FAILOVER_FACTOR: u32 = 2;
/// A connect and an XMPP login (SASL, bind, presence) after the re-login delay: seconds at
/// most on a LAN; half a minute leaves the simulation's coarser ticks room.
const LOGIN_SLACK: Duration = Duration::from_secs(30);

/// The bounds on a device's re-login after `m`, from the guide (spec 65) and the cluster's
/// settings, never from the model's constants: not before the client re-login lower limit
/// (default 120 s), and within the upper limit (default 537 s), doubled with Multiple Device
/// Messaging ("MDM roughly doubles failover times"), plus [`LOGIN_SLACK`]; after a crash
/// also the time a client takes to notice its node is gone, three keepalive intervals
/// (90 s at Jabber's 30 s), and one more try of the dead node.
fn bounds(s: &Scenario, node: &str, m: Move) -> (Duration, Duration) {
    let c = s
        .topology
        .imp_clusters
        .iter()
        .find(|c| node_config(c).cluster.iter().any(|h| h == node));
    let (lower, upper, mdm) = c.map_or((GUIDE_RELOGIN_LOWER, GUIDE_RELOGIN_UPPER, true), |c| {
        let r = c.prg.client_relogin;
        (r.lower.0, r.upper.0, c.mdm)
    });
    let upper = if mdm {
        upper * MDM_FAILOVER_FACTOR
    } else {
        upper
    };
    let notice = match m {
        Move::Failover { crash: true } => s.keepalive.interval.0 * 3 + LOGIN_SLACK,
        _ => Duration::ZERO,
    };
    (lower, upper.max(lower) + notice + LOGIN_SLACK)
}

/// The `prg_failover` check: after the failover of `node`, at least `sessions` devices of its
/// users logged in to `peer` within the guide's bound ([`bounds`], or `within` if given) and
/// none of those logged in to `node` at the failover sooner than the re-login lower limit;
/// after a fallback (an `imp_fallback` fault, the end of a manual failover with `for`, or the
/// cluster's automatic fallback), the same back on `node`; no device of its users logged in
/// to `node` while the peer served them; the peer ran in backup mode; and the peer refused
/// nothing at its JSM session limit (a failover stalled there is named, with the limit).
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
    let m = Move::Failover {
        crash: failover_is_crash(s, &e.node),
    };
    let until = t_back.unwrap_or(end);
    let to_peer = Hop {
        from: &e.node,
        to: &e.peer,
        at: t_fail,
        until,
        m,
    };
    let (moved, detail) = judge_hop(s, out, e, &users, &to_peer, &mut bad);
    let grace = e.within.map_or_else(|| bounds(s, &e.node, m).1, |w| w.0);
    stayed_on_node(out, e, &users, (t_fail, grace, until), &mut bad);
    let back_detail = t_back
        .map(|t| {
            let back = Hop {
                from: &e.peer,
                to: &e.node,
                at: t,
                until: end,
                m: Move::Fallback,
            };
            let (_, d) = judge_hop(s, out, e, &users, &back, &mut bad);
            format!("; fallback: {d}")
        })
        .unwrap_or_default();
    peer_ran_backup(out, &e.peer, &mut bad);
    jsm_refusals(s, out, &e.peer, &mut bad);
    if bad.is_empty() {
        (
            Status::Pass,
            format!(
                "{moved} devices of {}'s users re-logged in: {detail}{back_detail}",
                e.node
            ),
        )
    } else {
        (Status::Fail, bad.join("; "))
    }
}

/// The peer must have run in backup mode.
fn peer_ran_backup(out: &History, peer: &str, bad: &mut Vec<String>) {
    let backed_up = out.prg_states.get(peer).is_some_and(|pts| {
        pts.iter()
            .any(|(_, st)| *st == PrgState::RunningInBackupMode)
    });
    if !backed_up {
        bad.push(format!("{peer} never ran in backup mode"));
    }
}

/// One move of the node's users' devices between the pair.
struct Hop<'a> {
    from: &'a str,
    to: &'a str,
    at: Duration,
    until: Duration,
    m: Move,
}

/// Judges the devices' re-logins of `h`: enough within the upper bound, none of those on
/// `h.from` at the move sooner than the lower one. Returns how many moved and a summary.
fn judge_hop(
    s: &Scenario,
    out: &History,
    e: &PrgFailover,
    users: &[&str],
    h: &Hop<'_>,
    bad: &mut Vec<String>,
) -> (usize, String) {
    let (lower, guide_upper) = bounds(s, &e.node, h.m);
    let upper = e.within.map_or(guide_upper, |w| w.0);
    let what = if h.m == Move::Fallback {
        "fallback"
    } else {
        "failover"
    };
    let moved = relogins(out, users, h.to, h.at, h.until);
    let delays: Vec<Duration> = moved.values().map(|t| *t - h.at).collect();
    let in_time = delays.iter().filter(|d| **d <= upper).count();
    let slowest = delays.iter().max().copied().unwrap_or_default();
    if (in_time as u64) < u64::from(e.sessions) {
        bad.push(format!(
            "{in_time} of {} expected devices re-logged in to {} within {:.0}s of the {what} (slowest {:.0}s)",
            e.sessions,
            h.to,
            upper.as_secs_f64(),
            slowest.as_secs_f64()
        ));
    }
    let were_on = logged_in_at(out, users, h.from, h.at);
    let early: Vec<(&(String, String), Duration)> = moved
        .iter()
        .filter(|(k, _)| were_on.contains(*k))
        .map(|(k, t)| (k, *t - h.at))
        .filter(|(_, d)| *d < lower)
        .collect();
    if let Some(((u, d), first)) = early.first() {
        bad.push(format!(
            "{} devices re-logged in to {} sooner than the client re-login lower limit ({:.0}s) after the {what} (e.g. {u}/{d} after {:.0}s)",
            early.len(),
            h.to,
            lower.as_secs_f64(),
            first.as_secs_f64()
        ));
    }
    let fastest = delays.iter().min().copied().unwrap_or_default();
    let summary = format!(
        "{} on {} {:.0}-{:.0}s after the {what} (bounds {:.0}-{:.0}s)",
        moved.len(),
        h.to,
        fastest.as_secs_f64(),
        slowest.as_secs_f64(),
        lower.as_secs_f64(),
        upper.as_secs_f64()
    );
    (moved.len(), summary)
}

/// The devices of `users` logged in to `server` at `at`: their last session event up to it
/// is a login there.
fn logged_in_at(
    out: &History,
    users: &[&str],
    server: &str,
    at: Duration,
) -> BTreeSet<(String, String)> {
    let reason = format!("logged in to {server}");
    let mut last: BTreeMap<(String, String), bool> = BTreeMap::new();
    for ev in out.observer.sessions() {
        if ev.at <= at && users.contains(&ev.user.as_str()) {
            last.insert((ev.user, ev.device), ev.up && ev.reason == reason);
        }
    }
    last.into_iter()
        .filter(|(_, up)| *up)
        .map(|(k, _)| k)
        .collect()
}

/// Sessions the peer refused at its JSM session limit (spec 10): the failover stalled there.
fn jsm_refusals(s: &Scenario, out: &History, peer: &str, bad: &mut Vec<String>) {
    let Some(st) = out.node_stats.get(peer) else {
        return;
    };
    if st.jsm_refused_logins + st.jsm_refused_sessions == 0 {
        return;
    }
    let ova = s
        .topology
        .imp_clusters
        .iter()
        .find(|c| node_config(c).cluster.iter().any(|h| h == peer))
        .map(|c| c.ova.users);
    // 1.5 × the OVA's users (spec 10), computed here from the guide's ratio.
    let limit = ova.map_or_else(
        || "its JSM session limit".to_string(),
        |u| {
            format!(
                "its JSM session limit of {} (1.5 × its OVA of {u} users)",
                u64::from(u) * 3 / 2
            )
        },
    );
    bad.push(format!(
        "the failover stalled at {peer}'s JSM session limit: {} Jabber logins and {} connector sessions refused at {limit} (spec 10)",
        st.jsm_refused_logins, st.jsm_refused_sessions
    ));
}

/// While the peer served them, the node must have refused its users' devices (from `grace`
/// after the failover, the time the move may take).
fn stayed_on_node(
    out: &History,
    e: &PrgFailover,
    users: &[&str],
    (t_fail, grace, until): (Duration, Duration, Duration),
    bad: &mut Vec<String>,
) {
    let stayed = relogins(out, users, &e.node, t_fail + grace, until);
    if !stayed.is_empty() {
        let (u, d) = stayed.keys().next().cloned().unwrap_or_default();
        bad.push(format!(
            "{} devices logged in to {} while its users were failed over (e.g. {u}/{d})",
            stayed.len(),
            e.node
        ));
    }
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
    /// Each of them within this long of the failover (and of the fallback); default: the
    /// guide's client re-login upper limit (doubled with MDM) and the time to notice a crash.
    #[serde(default)]
    pub within: Option<Dur>,
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
