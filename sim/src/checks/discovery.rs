//! What a connector node can discover and when (spec 22), judged from the scenario's fault
//! schedule alone: whether an IM&P cluster's AXL publisher answers at a moment, and for how
//! long a connector node that (re)started without it cannot count the cluster's users.
//!
//! The guide: "The Message Connector cannot discover IM and Presence nodes when the AXL
//! service is not running on the nodes. So, if there has been some kind of failure in your
//! deployment, the nodes may not be back up before the Message Connector starts."

use crate::history::History;
use crate::plan::faults::{Action, BaseLatency, Service, Timed};
use crate::scenario::Scenario;
use std::time::Duration;

/// How long after an AXL publisher answers again a connector node that (re)started without it
/// may still not count the cluster's users: the connector asks again after a backoff that
/// doubles up to 60 s, jittered to 150 % (docs/behaviour.md, spec 22), then pages through the
/// users (seconds at the sizes explore draws). Explore seed 18786 counted them 12.8 s after.
const REDISCOVERY_LAG_MS: u64 = 90_000 + 15_000;

/// When `publisher` (an IM&P host) answers AXL at or after `at`: `at` itself if its host is
/// up and its AXL service running then, else the end of the outage it is in
/// ([`publisher_outages`]); `None` if it never answers again.
pub(crate) fn publisher_answers_from(
    actions: &[Timed],
    publisher: &str,
    at: Duration,
) -> Option<Duration> {
    let outages = publisher_outages(actions, publisher);
    match (outages.iter()).find(|(from, until)| *from <= at && until.is_none_or(|u| at < u)) {
        Some((_, until)) => *until,
        None => Some(at),
    }
}

/// Every span in which `publisher` did not answer AXL: (from, until it answers again; `None`
/// if it never does), in order.
fn publisher_outages(actions: &[Timed], publisher: &str) -> Vec<(Duration, Option<Duration>)> {
    let names = |h: &[String]| h.iter().any(|x| x == publisher);
    let (mut host_up, mut axl_up) = (true, true);
    let mut spans: Vec<(Duration, Option<Duration>)> = Vec::new();
    for a in actions {
        match &a.action {
            Action::Crash(h) if names(h) => host_up = false,
            Action::Bounce(h) if names(h) => host_up = true,
            Action::Service(Service::AxlStopped(n, stopped)) if n == publisher => {
                axl_up = !stopped;
            }
            _ => continue,
        }
        let open = spans.last().is_some_and(|(_, until)| until.is_none());
        match (host_up && axl_up, open) {
            (false, false) => spans.push((a.at, None)),
            (true, true) => spans.last_mut().expect("open").1 = Some(a.at),
            _ => {}
        }
    }
    spans
}

/// When `publisher` stopped answering AXL for good (`None`: it answers at the end).
pub(crate) fn lost_for_good_from(actions: &[Timed], publisher: &str) -> Option<Duration> {
    match publisher_outages(actions, publisher).last() {
        Some((from, None)) => Some(*from),
        _ => None,
    }
}

/// Whether a node of Expressway cluster `e` may not have known the users of IM&P cluster
/// `cluster` at `t`: the cluster's AXL publisher did not answer at some moment between the
/// node's latest (re)start and `t`, and `t` is no later than [`REDISCOVERY_LAG_MS`] after it
/// answered again. A node discovers once after it starts, at a moment the plan does not fix
/// (after its registration, up to minutes), so any such outage may have been its discovery's.
/// The cloud looks a user up when the Expressway clusters have reported their users once
/// (spec 28), so a lookup then may find no IM&P user (spec 27).
/// `actions` are the scenario's fault timeline.
pub(crate) fn cluster_unknown_at(
    s: &Scenario,
    actions: &[Timed],
    e: &crate::scenario::ExpresswayCluster,
    cluster: usize,
    t: Duration,
) -> bool {
    let publisher = crate::plan::topology::imp_host(&s.topology.imp_clusters[cluster].name, 1);
    let outages = publisher_outages(actions, &publisher);
    let lag = Duration::from_millis(REDISCOVERY_LAG_MS);
    (1..=e.nodes).any(|n| {
        let host = crate::plan::topology::exp_host(&e.name, n);
        let started = (starts(actions, &host).into_iter())
            .rfind(|r| *r <= t)
            .unwrap_or_default();
        (outages.iter()).any(|(from, until)| {
            *from <= t && until.is_none_or(|back| back >= started && t <= back + lag)
        })
    })
}

/// When connector host `host` last (re)started: its latest bounce (a `connector_restart`, a
/// `bounce`, the end of a timed crash or of maintenance mode), or the start of the run.
pub(crate) fn latest_start(actions: &[Timed], host: &str) -> Duration {
    starts(actions, host).last().copied().unwrap_or_default()
}

/// When connector host `host` (re)started: the start of the run, then each bounce (a
/// `connector_restart`, a `bounce`, the end of a timed crash or of maintenance mode).
fn starts(actions: &[Timed], host: &str) -> Vec<Duration> {
    let bounces = (actions.iter())
        .filter(|a| matches!(&a.action, Action::Bounce(h) if h.iter().any(|x| x == host)))
        .map(|a| a.at);
    std::iter::once(Duration::ZERO).chain(bounces).collect()
}

/// How many of the users the cloud had on connector node `host` at the end it may not have
/// counted at some moment of `[from, to]`: homed on an IM&P cluster whose AXL publisher did
/// not answer at one of the node's (re)starts (nor, for a user with a duplicate account on a
/// second cluster, spec 25, that cluster's publisher), from that start until
/// [`REDISCOVERY_LAG_MS`] after one of them answers again, or until the node's next start.
/// A peer's page carries such a node's lower count (explore seed 18786: exp-a-2 restarted
/// while imp-a-1's AXL was stopped and uploaded 7 of its 8 users until it discovered
/// cluster a).
pub(crate) fn blind_between(
    s: &Scenario,
    out: &History,
    host: &str,
    from: Duration,
    to: Duration,
) -> usize {
    let actions = crate::plan::faults::timeline(&s.faults, BaseLatency(s.tick.0));
    let starts = starts(&actions, host);
    let lag = Duration::from_millis(REDISCOVERY_LAG_MS);
    let publisher = |c: usize| crate::plan::topology::imp_host(&s.topology.imp_clusters[c].name, 1);
    let blind = |cluster: usize, duplicate: Option<usize>| {
        starts.iter().enumerate().any(|(i, &start)| {
            let next = starts.get(i + 1).copied().unwrap_or(Duration::MAX);
            let answers = |c: usize| publisher_answers_from(&actions, &publisher(c), start);
            let back = std::iter::once(cluster)
                .chain(duplicate)
                .map(|c| answers(c).unwrap_or(Duration::MAX))
                .min()
                .unwrap_or(Duration::MAX);
            if back == start {
                return false;
            }
            let until = back.saturating_add(lag).min(next);
            start <= to && from <= until
        })
    };
    (out.users.iter())
        .filter(|u| {
            let email = u.email.as_ref();
            email
                .and_then(|e| out.assigned_at_end.get(e))
                .map(String::as_str)
                == Some(host)
        })
        .filter(|u| blind(u.cluster, u.duplicate_in))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::observer::Observer;
    use std::rc::Rc;

    /// Explore seed 18786's shape: two IM&P clusters on one two-node Expressway cluster,
    /// cluster a's AXL stopped from 126 s to 236 s, then `faults`; every user on exp-a-2 at
    /// the end.
    fn judged(faults: &str) -> (Scenario, History) {
        let yaml = format!(
            "name: t\nseed: 1\nduration: 8m\ntopology:\n  imp_clusters: [{{ name: a, nodes: 2 }}, {{ name: b, nodes: 2 }}]\n  expressway_clusters: [{{ name: a, size: medium, nodes: 2, imp_clusters: [a, b] }}]\nusers: {{ count: 6, hybrid_message: 100%, without_email: 0% }}\nfaults:\n  - {{ at: 126s, for: 110s, axl_stop: {{ node: imp-a-1 }} }}\n{faults}"
        );
        let s = crate::parse("t.yaml", &yaml).expect("valid test scenario");
        let users = crate::plan::topology::population(&s, &crate::plan::rng::RngFactory::new(1));
        let mut out = History::from_history(1, Rc::new(Observer::new()), users);
        for u in out.users.clone() {
            out.assigned_at_end
                .insert(u.email.expect("a mail ID"), "exp-a-2".into());
        }
        (s, out)
    }

    /// A node that restarts while a cluster's publisher does not answer may not count that
    /// cluster's users from its restart until [`REDISCOVERY_LAG_MS`] after the publisher is
    /// back (explore seed 18786); never before the restart, never after that lag, never a
    /// node that did not restart, never when the restart came before the publisher stopped or
    /// after it was back, and never a user of the other cluster.
    #[test]
    fn a_node_restarted_without_a_publisher_may_not_count_its_cluster_until_it_is_back() {
        let restart =
            |at: &str| format!("  - {{ at: {at}, connector_restart: {{ node: exp-a-2 }} }}\n");
        let (s, out) = judged(&restart("182s"));
        let of_a = out.users.iter().filter(|u| u.cluster == 0).count();
        assert!(
            of_a > 0 && of_a < out.users.len(),
            "both clusters have users"
        );
        let blind = |s: &Scenario, host: &str, from: u64, to: u64| {
            blind_between(s, &out, host, at(from), at(to))
        };
        assert_eq!(blind(&s, "exp-a-2", 225, 300), of_a);
        assert_eq!(blind(&s, "exp-a-2", 182, 182), of_a);
        assert_eq!(
            blind(&s, "exp-a-2", 300, 341),
            of_a,
            "until 105 s after 236 s"
        );
        assert_eq!(blind(&s, "exp-a-2", 342, 400), 0);
        assert_eq!(blind(&s, "exp-a-2", 100, 181), 0, "before the restart");
        assert_eq!(
            blind(&s, "exp-a-1", 225, 300),
            0,
            "exp-a-1 has none of them"
        );
        for other in [restart("100s"), restart("240s"), String::new()] {
            let (s, _) = judged(&other);
            assert_eq!(blind(&s, "exp-a-2", 225, 300), 0, "{other}");
        }
        // Restarted again once the publisher answers: counted from then.
        let (s, _) = judged(&format!("{}{}", restart("182s"), restart("250s")));
        assert_eq!(blind(&s, "exp-a-2", 200, 249), of_a);
        assert_eq!(blind(&s, "exp-a-2", 251, 300), 0);
    }

    fn at(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn timed(s: u64, action: Action) -> Timed {
        Timed {
            at: at(s),
            kind: "test".into(),
            action,
        }
    }

    #[test]
    fn a_publisher_answers_once_both_its_host_and_its_axl_service_are_back() {
        let p = "imp-a-1".to_string();
        let actions = vec![
            timed(10, Action::Service(Service::AxlStopped(p.clone(), true))),
            timed(20, Action::Crash(vec![p.clone()])),
            timed(30, Action::Service(Service::AxlStopped(p.clone(), false))),
            timed(40, Action::Bounce(vec![p.clone()])),
        ];
        assert_eq!(publisher_answers_from(&actions, &p, at(5)), Some(at(5)));
        assert_eq!(publisher_answers_from(&actions, &p, at(10)), Some(at(40)));
        assert_eq!(publisher_answers_from(&actions, &p, at(35)), Some(at(40)));
        assert_eq!(publisher_answers_from(&actions, &p, at(40)), Some(at(40)));
        assert_eq!(
            publisher_answers_from(&actions, "imp-b-1", at(10)),
            Some(at(10))
        );
        let never = &actions[..2];
        assert_eq!(publisher_answers_from(never, &p, at(25)), None);
    }
}
