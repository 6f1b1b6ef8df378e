//! Part of `liveness`: every user the plan serves gets a connector session at some point.
//!
//! The guide (spec 55): Hybrid Message users "who never use Webex still get Webex-derived
//! device presence", which only their connector session can publish; hmsim opens it from the
//! assignment on ([`crate::oracle::interop`] makes a bridged delivery *must* only while that
//! session is open, so without this check a connector that never opened a session passed
//! every message check: `http-errors-at-maintenance-mode-end` did, with 2 of its 4 users never
//! bridged).
//!
//! Judged from the plan, not from what the connector or the fake cloud did: a user is served
//! when enabled for Hybrid Message with a mail ID and one home cluster (spec 24-25) on an IM&P
//! cluster an Expressway cluster serves. Not awaited: a cluster Control Hub refuses to register
//! (spec 11-12), one with no node serving at the end, users none of its nodes can discover
//! (spec 22), the sessions `liveness` does not await, and users beyond the cluster's capacity
//! U(N) (spec 3), counted. Awaited until [`due`].

use crate::checks::capacity::{ASSIGNMENT_WINDOW, limits};
use crate::history::History;
use crate::plan::faults::{Action, BaseLatency, Service, Timed};
use crate::plan::topology::UserSpec;
use crate::scenario::{ExpresswayCluster, Scenario};
use fakes::cloud::control_hub::REGISTRATION_DELAY_MAX;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Users named in a failure's detail.
const EXAMPLES_MAX: usize = 5;

/// What [`judge`] found for the served users who never had a connector session.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct FirstSessions {
    /// Served users awaited (their session opened or not), less those beyond their
    /// cluster's capacity.
    pub expected: usize,
    /// Of them, those with no session ever, beyond their cluster's capacity slack: (mail ID,
    /// Expressway cluster).
    pub missing: Vec<(String, String)>,
    /// Served users not awaited, with why (one line per reason).
    pub excused: BTreeMap<String, usize>,
    /// When the last of them was due.
    pub due: Duration,
}

/// Whether Control Hub registers Expressway cluster `e`: it refuses a registration initiated
/// without its token (spec 12) and an upper-case hostname (spec 11).
fn registers(e: &ExpresswayCluster) -> bool {
    e.registration_token
        && !(e.hostname.as_ref()).is_some_and(|h| h.chars().any(|c| c.is_ascii_uppercase()))
}

/// Why the cloud holds `u` in Error without having activated them, when the plan explains
/// it: "no matching IM&P user" looked up while no node of `e` may have known the user's IM&P
/// cluster, its AXL publisher not answering ([`crate::checks::discovery::cluster_unknown_at`]).
/// The guide leaves such a user to the administrator: "Did the user activation fail the first
/// time? Open the user in Control Hub, open the Hybrid Message Service, and click Reactivate
/// User." Any other error, or one the plan does not explain, is not excused.
fn activation_failed(
    (s, actions): (&Scenario, &[Timed]),
    out: &History,
    e: &ExpresswayCluster,
    u: &UserSpec,
) -> Option<String> {
    use fakes::cloud::org::REASON_NO_IMP_USER;
    let error = out
        .cloud_activation_errors
        .get(&crate::plan::connector::webex_email(u, s))?;
    let at = Duration::from_millis(error.at_ms);
    let explained = error.reason.as_deref() == Some(REASON_NO_IMP_USER)
        && crate::checks::discovery::cluster_unknown_at(s, actions, e, u.cluster, at);
    explained.then(|| {
        format!(
            "in Error \"{REASON_NO_IMP_USER}\": looked up while their IM&P cluster's AXL publisher did not answer (spec 22, 27; the administrator must reactivate them)"
        )
    })
}

impl FirstSessions {
    /// The users not awaited, by reason: `15 no node of Expressway cluster a can discover them
    /// (spec 22); ...`.
    pub(crate) fn excused_text(&self) -> String {
        let why: Vec<String> = (self.excused.iter())
            .map(|(w, n)| format!("{n} {w}"))
            .collect();
        why.join("; ")
    }
}

/// Why an Expressway cluster serves none of its users, from the plan (`None`: it may).
fn never_serves(actions: &[Timed], e: &ExpresswayCluster) -> Option<String> {
    if !registers(e) {
        return Some(format!(
            "Control Hub refuses to register Expressway cluster {} (no registration token, spec 12, or capitals in its hostname, spec 11)",
            e.name
        ));
    }
    let serving =
        (1..=e.nodes).any(|n| serves_at_end(actions, &crate::plan::topology::exp_host(&e.name, n)));
    (!serving).then(|| format!("no node of Expressway cluster {} serves at the end", e.name))
}

/// Whether connector host `host` is up, enabled and out of maintenance mode at the end of
/// the schedule.
fn serves_at_end(actions: &[Timed], host: &str) -> bool {
    let names = |h: &[String]| h.iter().any(|x| x == host);
    let (mut up, mut enabled, mut maintenance) = (true, true, false);
    for a in actions {
        match &a.action {
            Action::Crash(h) if names(h) => up = false,
            Action::Bounce(h) if names(h) => up = true,
            Action::Service(Service::ConnectorEnabled(n, on)) if n == host => enabled = *on,
            Action::Service(Service::Maintenance(n, on)) if n == host => maintenance = *on,
            _ => {}
        }
    }
    up && enabled && !maintenance
}

/// Whether no node of an Expressway cluster can discover `u` (spec 22): the AXL publisher of
/// the user's cluster (and of their duplicate account's, spec 25) stopped answering for good
/// (`lost_at`, by IM&P cluster) no later than `discovery_by`, when the last of the cluster's
/// nodes could be sure to have discovered ([`discovery_by`]).
fn undiscoverable(lost_at: &[Option<Duration>], discovery_by: Duration, u: &UserSpec) -> bool {
    let lost = |c: usize| lost_at[c].is_some_and(|at| at <= discovery_by);
    lost(u.cluster) && u.duplicate_in.is_none_or(lost)
}

/// When every node of `e` could be sure to have run its discovery: [`DISCOVERY_BY`] after the
/// earliest of their latest (re)starts (a node discovers after Control Hub completes its
/// registration, at a moment the plan does not fix; explore seed 83: imp-a-1 failed for good
/// at 103 s, before it).
fn discovery_by(actions: &[Timed], e: &ExpresswayCluster) -> Duration {
    let started = (1..=e.nodes)
        .map(|n| {
            let host = crate::plan::topology::exp_host(&e.name, n);
            crate::checks::discovery::latest_start(actions, &host)
        })
        .min()
        .unwrap_or_default();
    started + DISCOVERY_BY
}

/// How long after a connector node (re)starts its discovery may still be to come: Control
/// Hub completes a registration within [`REGISTRATION_DELAY_MAX`] (spec 12), and a restart
/// asks the publisher at once; with room for the cloud's retries under faults.
const DISCOVERY_BY: Duration = Duration::from_secs(REGISTRATION_DELAY_MAX.as_secs() + 60);

/// When a served user's first session is due: Control Hub completes a registration within
/// [`REGISTRATION_DELAY_MAX`] (spec 12), discovery and assignment within
/// [`ASSIGNMENT_WINDOW`], then the sessions open at the connector's rate (50 a second per
/// node, spread over `nodes`); and no earlier than `liveness`'s own bound after the faults.
pub(crate) fn due(users: usize, nodes: u32, liveness_bound: Duration) -> Duration {
    let rate = crate::plan::connector::SESSION_RATE_PER_S * f64::from(nodes.max(1));
    let opens = Duration::from_secs_f64(users as f64 / rate);
    (REGISTRATION_DELAY_MAX + ASSIGNMENT_WINDOW + opens).max(liveness_bound)
}

/// The served users of each Expressway cluster (by its index) that may be awaited, and the
/// excused ones by reason.
fn served_by_cluster<'u>(
    s: &Scenario,
    out: &'u History,
    not_awaited: &BTreeSet<String>,
) -> (BTreeMap<usize, Vec<&'u UserSpec>>, BTreeMap<String, usize>) {
    let actions = crate::plan::faults::timeline(&s.faults, BaseLatency(s.tick.0));
    let clusters = &s.topology.expressway_clusters;
    let refused: Vec<Option<String>> = clusters.iter().map(|e| never_serves(&actions, e)).collect();
    // The cloud looks users up once every declared Expressway cluster has reported its users
    // (spec 28): one Control Hub never registers keeps every user Pending.
    let unregistered = (clusters.iter())
        .find(|e| !registers(e))
        .map(|e| format!("Pending: the cloud waits for the report of Expressway cluster {}, which Control Hub never registers (spec 12, 28)", e.name));
    let lost_at: Vec<Option<Duration>> = (s.topology.imp_clusters.iter())
        .map(|c| {
            let publisher = crate::plan::topology::imp_host(&c.name, 1);
            crate::checks::discovery::lost_for_good_from(&actions, &publisher)
        })
        .collect();
    let discovered_by: Vec<Duration> = clusters.iter().map(|e| discovery_by(&actions, e)).collect();
    let (mut awaited, mut excused) = (BTreeMap::new(), BTreeMap::new());
    for u in out
        .users
        .iter()
        .filter(|u| crate::oracle::interop::served(u))
    {
        let home = &s.topology.imp_clusters[u.cluster].name;
        let Some(i) = clusters.iter().position(|e| e.imp_clusters.contains(home)) else {
            continue; // no Expressway cluster serves the user's IM&P cluster: not bridged
        };
        let email = u.email.as_deref().unwrap_or_default();
        let why = if let Some(why) = refused[i].as_ref().or(unregistered.as_ref()) {
            why.clone()
        } else if let Some(why) = activation_failed((s, &actions), out, &clusters[i], u) {
            why
        } else if not_awaited.contains(email) {
            "not awaited by liveness (stranded, undiscoverable at the serving node, out of service, or an unseen takeover)".to_string()
        } else if undiscoverable(&lost_at, discovered_by[i], u) {
            format!(
                "no node of Expressway cluster {} can discover them (spec 22)",
                clusters[i].name
            )
        } else {
            awaited.entry(i).or_insert_with(Vec::new).push(u);
            continue;
        };
        *excused.entry(why).or_default() += 1;
    }
    (awaited, excused)
}

/// Every served user who never had a connector session, beyond their cluster's capacity.
pub(crate) fn judge(
    s: &Scenario,
    out: &History,
    not_awaited: &BTreeSet<String>,
    liveness_bound: Duration,
) -> FirstSessions {
    let (awaited, mut excused) = served_by_cluster(s, out, not_awaited);
    let caps = limits(s);
    let mut found = FirstSessions::default();
    for (i, users) in awaited {
        let e = &s.topology.expressway_clusters[i];

        found.due = found.due.max(due(users.len(), e.nodes, liveness_bound));
        let never: Vec<&UserSpec> = (users.iter().copied())
            .filter(|u| !opened_once(out, u))
            .collect();
        let capacity = caps.get(i).map_or(0, |c| c.capacity as usize);
        let slack = users.len().saturating_sub(capacity).min(never.len());
        if slack > 0 {
            let why = format!(
                "beyond Expressway cluster {}'s capacity U(N) = {capacity} (spec 3)",
                e.name
            );
            *excused.entry(why).or_default() += slack;
        }
        found.expected += users.len() - slack;
        let beyond = never.len() - slack;
        found.missing.extend(
            (never.iter().take(beyond))
                .map(|u| (u.email.clone().unwrap_or_default(), e.name.clone())),
        );
    }
    found.excused = excused;
    found
}

/// Whether the runner saw `u`'s connector session open at least once.
fn opened_once(out: &History, u: &UserSpec) -> bool {
    let email = u.email.as_deref().unwrap_or_default();
    out.bridge
        .get(email)
        .is_some_and(|ev| ev.iter().any(|(_, up)| *up))
}

/// For the runner: whether a served user is still without a first session at `now`, before
/// it is due. Cheap first: most runs have every served user's session by the end.
pub(crate) fn awaited(
    s: &Scenario,
    out: &History,
    now: Duration,
    not_awaited: impl FnOnce() -> BTreeSet<String>,
    liveness_bound: Duration,
) -> bool {
    let none_missing = (out.users.iter())
        .filter(|u| crate::oracle::interop::served(u))
        .all(|u| opened_once(out, u));
    if none_missing {
        return false;
    }
    let found = judge(s, out, &not_awaited(), liveness_bound);
    !found.missing.is_empty() && now < found.due
}

/// The verdict's words: `Ok` with a note (empty when nothing was expected), or `Err` naming
/// the users; `ended` is when the run ended.
pub(crate) fn verdict(found: &FirstSessions, ended: Duration) -> Result<String, String> {
    let excused = if found.excused.is_empty() {
        String::new()
    } else {
        format!(" (not awaited: {})", found.excused_text())
    };
    if found.missing.is_empty() {
        if found.expected == 0 && found.excused.is_empty() {
            return Ok(String::new());
        }
        if found.expected == 0 {
            return Ok(format!(
                "; spec 55: no served user's session awaited{excused}"
            ));
        }
        return Ok(format!(
            "; spec 55: all {} served users had a connector session{excused}",
            found.expected - found.missing.len()
        ));
    }
    let names: Vec<String> = (found.missing.iter())
        .take(EXAMPLES_MAX)
        .map(|(u, e)| format!("{u} (Expressway cluster {e})"))
        .collect();
    let judged = if ended >= found.due {
        format!(
            "due by {:.0}s, the run ended at {:.0}s",
            found.due.as_secs_f64(),
            ended.as_secs_f64()
        )
    } else {
        format!(
            "due by {:.0}s but the run ended at {:.0}s: give it a longer drain",
            found.due.as_secs_f64(),
            ended.as_secs_f64()
        )
    };
    Err(format!(
        "spec 55: {} of {} served users never had a connector session ({judged}): {}{excused}",
        found.missing.len(),
        found.expected,
        names.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::observer::Observer;
    use fakes::cloud::org::{HistoryEntry, HmState, REASON_NO_IMP_USER};
    use std::rc::Rc;

    fn scenario(exp: &str, faults: &str) -> Scenario {
        let yaml = format!(
            "name: t\nseed: 1\nduration: 20m\ntopology:\n  imp_clusters: [{{ name: a, nodes: 2 }}]\n  expressway_clusters: [{{ name: a, size: medium, nodes: 2, imp_clusters: [a]{exp} }}]\nusers: {{ count: 4, hybrid_message: 100%, without_email: 0% }}\nfaults:\n{faults}"
        );
        crate::parse("t.yaml", &yaml).expect("valid test scenario")
    }

    /// The users' history with a session opened at 400 s for those in `opened`.
    fn history(s: &Scenario, opened: &[usize]) -> History {
        let users = crate::plan::topology::population(s, &crate::plan::rng::RngFactory::new(1));
        let mut out = History::from_history(1, Rc::new(Observer::new()), users);
        for i in opened {
            let email = out.users[*i].email.clone().expect("a mail ID");
            out.bridge
                .insert(email, vec![(Duration::from_secs(400), true)]);
        }
        out.elapsed = Duration::from_secs(1500);
        out
    }

    fn judged(s: &Scenario, out: &History) -> (FirstSessions, Result<String, String>) {
        let found = judge(s, out, &BTreeSet::new(), Duration::from_secs(60));
        let v = verdict(&found, out.elapsed);
        (found, v)
    }

    /// `http-errors-at-maintenance-mode-end` before its fix: 2 of 4 served users never had a
    /// session and every other check passed. The check names them; with every session
    /// opened it passes and counts them.
    #[test]
    fn a_served_user_who_never_had_a_session_fails() {
        let s = scenario("", "  []\n");
        let out = history(&s, &[0, 1]);
        let (found, v) = judged(&s, &out);
        assert_eq!((found.expected, found.missing.len()), (4, 2));
        let why = v.expect_err("two never had a session");
        let email2 = out.users[2].email.clone().expect("a mail ID");
        assert!(
            why.contains("2 of 4 served users never had a connector session"),
            "{why}"
        );
        assert!(why.contains(&email2), "{why}");
        assert!(why.contains("due by 600s, the run ended at 1500s"), "{why}");
        let out = history(&s, &[0, 1, 2, 3]);
        let (_, v) = judged(&s, &out);
        assert_eq!(
            v,
            Ok("; spec 55: all 4 served users had a connector session".into())
        );
    }

    /// Not awaited: a cluster Control Hub refuses to register (spec 11-12), users beyond its
    /// capacity (spec 3, counted, not named), and one with no node serving at the end.
    #[test]
    fn refused_registrations_capacity_and_clusters_down_are_not_awaited() {
        let s = scenario(", registration_token: false", "  []\n");
        let (found, v) = judged(&s, &history(&s, &[]));
        assert_eq!((found.expected, found.missing.len()), (0, 0));
        assert!(
            v.expect("excused")
                .contains("4 Control Hub refuses to register")
        );
        let down = "  - { at: 10s, crash: [exp-a-1, exp-a-2] }\n";
        let s = scenario("", down);
        let (_, v) = judged(&s, &history(&s, &[]));
        assert!(
            v.expect("excused")
                .contains("4 no node of Expressway cluster a serves at the end")
        );
        let mut s = scenario(", mra: true", "  []\n");
        let cap = limits(&s)[0].capacity as usize;
        assert_eq!(
            cap, 100,
            "two medium nodes with MRA: U(1) = 100 in reserve (spec 3, 7)"
        );
        s.users.count = 150;
        let out = history(&s, &(0..100).collect::<Vec<_>>());
        let (found, v) = judged(&s, &out);
        assert_eq!((found.expected, found.missing.len()), (100, 0));
        let note = v.expect("within capacity");
        assert!(
            note.contains("50 beyond Expressway cluster a's capacity U(N) = 100"),
            "{note}"
        );
        let out = history(&s, &(0..99).collect::<Vec<_>>());
        assert_eq!(
            judged(&s, &out).0.missing.len(),
            1,
            "one fewer than capacity fails"
        );
    }

    /// A user the cloud holds in Error "no matching IM&P user" is excused only when the plan
    /// explains it: looked up while the AXL publisher of their cluster did not answer
    /// (`liveness-late-duplicate-mail-id`: cluster a's AXL stopped from 94 s to 213 s). The
    /// same error with the publisher answering, or another reason, fails.
    #[test]
    fn an_activation_error_is_excused_only_where_the_publisher_did_not_answer() {
        let stopped = "  - { at: 94s, for: 119s, axl_stop: { node: imp-a-1 } }\n";
        let error = |s: &Scenario, out: &mut History, at_s: u64, reason: &str| {
            let email = crate::plan::connector::webex_email(&out.users[3], s);
            let e = HistoryEntry {
                at_ms: at_s * 1000,
                state: HmState::Error,
                reason: Some(reason.into()),
            };
            out.cloud_activation_errors.insert(email, e);
        };
        for (faults, at_s, reason, excused) in [
            (stopped, 186, REASON_NO_IMP_USER, true),
            (stopped, 300, REASON_NO_IMP_USER, true), // 87 s after it answers again
            (stopped, 330, REASON_NO_IMP_USER, false), // 117 s after
            ("  []\n", 186, REASON_NO_IMP_USER, false),
            (stopped, 186, "duplicate Mail ID", false),
        ] {
            let s = scenario("", faults);
            let mut out = history(&s, &[0, 1, 2]);
            error(&s, &mut out, at_s, reason);
            let (found, v) = judged(&s, &out);
            assert_eq!(
                found.missing.is_empty(),
                excused,
                "{faults} {at_s} {reason}: {v:?}"
            );
        }
    }

    /// The runner keeps a run going for a served user without a session until it is due,
    /// never after, and not at all once every served user had one.
    #[test]
    fn the_runner_awaits_a_first_session_until_it_is_due() {
        let s = scenario("", "  []\n");
        let bound = Duration::from_secs(60);
        let out = history(&s, &[0, 1, 2]);
        let at = |secs: u64| awaited(&s, &out, Duration::from_secs(secs), BTreeSet::new, bound);
        assert!(at(500));
        assert!(!at(603), "due at 5 + 5 minutes and 4 users at 100 a second");
        let out = history(&s, &[0, 1, 2, 3]);
        assert!(!awaited(
            &s,
            &out,
            Duration::from_secs(500),
            BTreeSet::new,
            bound
        ));
    }

    /// Explore seed 83: imp-a-1, cluster a's AXL publisher, failed for good at 103 s, before
    /// the nodes' first discovery could be sure to have run; no node can discover the users.
    /// Lost later than that after every node's latest start, they are awaited; a restart after
    /// the loss makes them undiscoverable again.
    #[test]
    fn users_whose_publisher_was_lost_before_discovery_are_not_awaited() {
        let lost = |at: &str| {
            format!("  - {{ at: {at}, imp_failover: {{ node: imp-a-1, mode: automatic }} }}\n")
        };
        let s = scenario("", &lost("103s"));
        let (found, v) = judged(&s, &history(&s, &[]));
        assert_eq!((found.expected, found.missing.len()), (0, 0), "{v:?}");
        assert!(
            v.expect("excused")
                .contains("4 no node of Expressway cluster a can discover them")
        );
        let s = scenario("", &lost("700s"));
        assert_eq!(judged(&s, &history(&s, &[])).0.missing.len(), 4);
        let restarts = "  - { at: 800s, connector_restart: { node: exp-a-1 } }\n  - { at: 800s, connector_restart: { node: exp-a-2 } }\n";
        let s = scenario("", &format!("{}{restarts}", lost("700s")));
        assert_eq!(judged(&s, &history(&s, &[])).0.missing.len(), 0);
    }
}
