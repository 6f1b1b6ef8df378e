//! The `liveness` check: every device that was ever up is up at the end and came back within
//! a bound of the last fault ending; so is every connector session that was ever open.

use crate::checks::{Check, Entry, Verdict, boxed, examples};
use crate::history::History;
use crate::scenario::Dur;
use crate::scenario::Scenario;
use reports::Status;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The `liveness` check: its bound.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Liveness {
    /// How long after the last fault ends every client must be connected again.
    pub within: Dur,
}

/// How the registry reads it.
pub const ENTRY: Entry = Entry {
    name: "liveness",
    bare: false,
    read: boxed::<Liveness>,
};

impl Check for Liveness {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn judge(&self, s: &Scenario, h: &History) -> Verdict {
        liveness(s, h, self.within.0)
    }
}

/// When the last fault ends.
fn last_fault_end(s: &Scenario) -> Duration {
    s.faults
        .iter()
        .map(|f| crate::plan::faults::window(f).1)
        .max()
        .unwrap_or_default()
}

/// For the runner, which stops as soon as no message is awaited after `duration`: whether a
/// device or a connector session the `liveness` check expects back is still down at `now`,
/// before the check's bound. Such a device had until the bound to log in again (a failover's
/// heartbeat timeout and the clients' backoff can outlast the end of `duration`); the run
/// goes on for it, within its drain (explore seed 283: a failover a minute before the end,
/// judged 2 s after the peer took over). So does a connector session, which reopens after the
/// connector's detection delay (explore seed 2072: a fallback a minute before the end,
/// [`crate::checks::migration::sessions_awaited`]).
pub fn liveness_awaited(s: &Scenario, out: &History, now: Duration) -> bool {
    let Some(spec) = s.checks.iter().find(|c| c.name == ENTRY.name) else {
        return false;
    };
    let Ok(l) = crate::checks::params::<Liveness>(&spec.params) else {
        return false;
    };
    let bound = last_fault_end(s) + l.within.0;
    if now >= bound {
        return false;
    }
    !expected_down(s, out).1.is_empty() || {
        let stranded = stranded_users(s, out);
        crate::checks::migration::sessions_awaited(out, (last_fault_end(s), bound), &stranded)
    }
}

/// The mail IDs of users homed on a [`stranded_nodes`] node: their sessions are not awaited.
fn stranded_users(s: &Scenario, out: &History) -> BTreeSet<String> {
    let stranded = stranded_nodes(s);
    out.users
        .iter()
        .filter(|u| stranded.contains(&u.home_host(s)))
        .filter_map(|u| u.email.clone())
        .collect()
}

/// Every device that was ever up is up at the end, and came back within `within` of the last
/// fault ending; so is every connector session that was ever open (connector liveness).
fn liveness(s: &Scenario, out: &History, within: Duration) -> (Status, String) {
    let last_fault_end = last_fault_end(s);
    let bound = last_fault_end + within;
    let (status, detail) = devices_liveness(s, out, within, bound);
    let stranded_users = stranded_users(s, out);
    let window = (last_fault_end, bound);
    match crate::checks::migration::connector_liveness(out, window, &stranded_users) {
        None => (status, detail),
        Some(Ok(c)) => (status, format!("{detail}; {c}")),
        Some(Err(c)) if status == Status::Pass => (Status::Fail, c),
        Some(Err(c)) => (status, format!("{detail}; {c}")),
    }
}

/// IM&P nodes down for good that no peer takes over ([`crate::plan::imp::stranded_since`]):
/// their users have no service until the node returns, which it never does here (explore seed
/// 283).
pub fn stranded_nodes(s: &Scenario) -> BTreeSet<String> {
    crate::plan::imp::stranded_since(s).into_keys().collect()
}

/// The devices down now: (those of users homed on a [`stranded_nodes`] node, not expected
/// back; the others).
type DownDevices = (Vec<(String, String)>, Vec<(String, String)>);

fn expected_down(s: &Scenario, out: &History) -> DownDevices {
    let down = out.observer.devices_down();
    if down.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let stranded = stranded_nodes(s);
    let homes: BTreeMap<&str, String> = out
        .users
        .iter()
        .flat_map(|u| {
            let home = u.home_host(s);
            let ids = std::iter::once(u.jid.as_str()).chain(u.email.as_deref());
            ids.map(move |id| (id, home.clone()))
        })
        .collect();
    down.into_iter()
        .partition(|(u, _)| homes.get(u.as_str()).is_some_and(|h| stranded.contains(h)))
}

/// The Jabber half of [`liveness`]: devices up at the end, none logging in after `bound`;
/// devices of users homed on a [`stranded_nodes`] node are not expected back.
fn devices_liveness(
    s: &Scenario,
    out: &History,
    within: Duration,
    bound: Duration,
) -> (Status, String) {
    let (excused, down) = expected_down(s, out);
    let stranded = stranded_nodes(s);
    let excused_note = if excused.is_empty() {
        String::new()
    } else {
        let nodes: Vec<&str> = stranded.iter().map(String::as_str).collect();
        format!(
            "; {} devices of users homed on {} not back, as expected: down for good with no PRG failover",
            excused.len(),
            nodes.join(", ")
        )
    };
    let (status, detail) = devices_up_in_time(out, down, within, bound);
    (status, format!("{detail}{excused_note}"))
}

/// Devices up at the end (none of `down`), none logging in after `bound`.
fn devices_up_in_time(
    out: &History,
    down: Vec<(String, String)>,
    within: Duration,
    bound: Duration,
) -> (Status, String) {
    if !down.is_empty() {
        let names: Vec<String> = down.iter().map(|(u, d)| format!("{u}/{d}")).collect();
        return (
            Status::Fail,
            format!(
                "{} devices not logged in at the end (e.g. {})",
                down.len(),
                examples(&names)
            ),
        );
    }
    let late: Vec<String> = out
        .observer
        .sessions()
        .iter()
        .filter(|e| e.up && e.at > bound)
        .map(|e| format!("{}/{} at {:.0}s", e.user, e.device, e.at.as_secs_f64()))
        .collect();
    if late.is_empty() {
        (
            Status::Pass,
            format!(
                "all {} devices logged in; recovered within {} of the last fault",
                out.observer.devices_up(),
                crate::scenario::units::format_duration(within)
            ),
        )
    } else {
        (
            Status::Fail,
            format!(
                "{} logins after the bound {:.0}s (e.g. {})",
                late.len(),
                bound.as_secs_f64(),
                examples(&late)
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(prg: &str, faults: &str) -> Scenario {
        let yaml = format!(
            "name: t\nseed: 1\nduration: 20m\ntopology:\n  imp_clusters: [{{ name: a, nodes: 2, prg: {{ {prg} }} }}]\nusers: {{ count: 2 }}\nfaults:\n{faults}"
        );
        crate::parse("t.yaml", &yaml).expect("valid test scenario")
    }

    /// A node down for good is stranded when no PRG failover takes its users: high
    /// availability off when it fails (switched off before, explore seed 283), not when it
    /// comes back or when it is taken over.
    #[test]
    fn a_node_down_for_good_without_high_availability_strands_its_users() {
        let crash = "  - { at: 6m, imp_failover: { node: imp-a-1, mode: automatic } }\n";
        let off = "  - { at: 4m, prg_high_availability: { cluster: a, enabled: false } }\n";
        let stranded = |prg: &str, faults: &str| stranded_nodes(&scenario(prg, faults));
        assert!(stranded("high_availability: true", crash).is_empty());
        assert_eq!(
            stranded("high_availability: true", &format!("{off}{crash}")),
            BTreeSet::from(["imp-a-1".to_string()])
        );
        assert_eq!(
            stranded(
                "high_availability: false",
                "  - { at: 6m, crash: [imp-a-2] }\n"
            ),
            BTreeSet::from(["imp-a-2".to_string()])
        );
        // Back after a while: not stranded (liveness waits for it).
        let timed = "  - { at: 6m, for: 2m, crash: [imp-a-2] }\n";
        assert!(stranded("high_availability: false", timed).is_empty());
    }

    /// Whether the peer takes a node down for good over depends on high availability when the
    /// heartbeat timeout has run out, or later (the peer keeps watching), not when the node
    /// failed: switched off in between, nobody takes over (explore seed 165); switched on in
    /// between or later, the peer does.
    #[test]
    fn a_takeover_depends_on_high_availability_once_the_heartbeat_timeout_ran_out() {
        let prg = |ha: bool| format!("high_availability: {ha}, heartbeat_timeout: 1m");
        let crash = "  - { at: 1m, imp_failover: { node: imp-a-2, mode: automatic } }\n";
        let ha = |at: &str, on: bool| {
            format!("  - {{ at: {at}, prg_high_availability: {{ cluster: a, enabled: {on} }} }}\n")
        };
        let stranded = |prg: &str, faults: &str| stranded_nodes(&scenario(prg, faults));
        let node = BTreeSet::from(["imp-a-2".to_string()]);
        // Off 13 s after the failure, 47 s before the takeover: stranded.
        assert_eq!(
            stranded(&prg(true), &format!("{crash}{}", ha("73s", false))),
            node
        );
        // Off after the takeover: the users moved already.
        assert!(stranded(&prg(true), &format!("{crash}{}", ha("2m30s", false))).is_empty());
        // On before the takeover, or later: the peer takes over then.
        assert!(stranded(&prg(false), &format!("{crash}{}", ha("90s", true))).is_empty());
        assert!(stranded(&prg(false), &format!("{crash}{}", ha("5m", true))).is_empty());
    }
}
