//! What the runner reads from the world while it runs: connector sessions (the interop
//! oracle's input), session moves, status pages, the cloud's view, PRG states, devices up.
//!
//! Status pages, moves and PRG states are kept typed in the history
//! ([`crate::history::History::all_series`] makes plot series of them).

use crate::history::{CloudShare, History, SessionMove};
use crate::world::World;
use crate::world::hybrid::HybridHandles;
use crate::world::imp::{ImpHandles, NodeSlot};
use connector::core::node::ConnectorNode;
use fakes::imp::PrgState;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// Connector sessions are sampled this often for the interop oracle.
pub const BRIDGE_SAMPLE: Duration = Duration::from_secs(1);

/// Devices up, messages sent, and sessions per IM&P node.
pub fn clients(out: &mut History, imp: &ImpHandles, now: Duration) {
    let t = now.as_secs_f64();
    let mut push = |name: String, v: f64| out.series.entry(name).or_default().push((t, v));
    push(
        "clients/devices_up".into(),
        out.observer.devices_up() as f64,
    );
    push("messages/sent".into(), out.observer.sent_count() as f64);
    for (host, h) in &imp.nodes {
        let sessions = h
            .slot
            .borrow()
            .as_ref()
            .map(|n| n.borrow().session_count())
            .unwrap_or(0);
        push(format!("sessions/{host}"), sessions as f64);
    }
}

/// Records which users' connector sessions are open now (changes only). Reads the users whose
/// session opened or closed since the last sample ([`ConnectorNode::take_open_changes`]), not
/// every session: a Large node has 15,000, sampled every second. A connector that restarted
/// or went away since the last sample makes it look at every user once.
pub fn bridge(h: &HybridHandles, out: &mut History, now: Duration) {
    if h.connectors.is_empty() {
        return;
    }
    collect_moves(h, out);
    let cores: BTreeMap<String, Rc<RefCell<ConnectorNode>>> = h
        .connectors
        .iter()
        .filter_map(|(host, slot)| Some((host.clone(), slot.borrow().as_ref().cloned()?)))
        .collect();
    let mut changed = std::collections::BTreeSet::new();
    for core in cores.values() {
        changed.append(&mut core.borrow_mut().take_open_changes());
    }
    let same_cores = {
        let last = h.bridge_cores.borrow();
        last.len() == cores.len()
            && last
                .iter()
                .zip(&cores)
                .all(|((h1, c1), (h2, c2))| h1 == h2 && Rc::ptr_eq(c1, c2))
    };
    if !same_cores {
        // Everyone who was or may be open: the old cores' sessions are gone.
        changed.extend(out.bridge.keys().cloned());
        for core in cores.values() {
            changed.extend(core.borrow().sessions().users().cloned());
        }
        *h.bridge_cores.borrow_mut() = cores.clone();
    }
    for user in changed {
        let on = cores.values().find_map(|c| {
            let core = c.borrow();
            let open = matches!(
                core.sessions().state(&user),
                Some(connector::core::sessions::SessionState::Open)
            );
            open.then(|| core.sessions().node_of(&user).map(str::to_string))?
        });
        record_node(out, &user, on.clone(), now);
        record_bridge(out, user, on.is_some(), now);
    }
}

/// Appends the node `user`'s session is open on (`None`: not open) at `now`, if it changed.
fn record_node(out: &mut History, user: &str, on: Option<String>, now: Duration) {
    let last = out.session_nodes.get(user).and_then(|ev| ev.last());
    if last.map(|(_, n)| n) == Some(&on) || (last.is_none() && on.is_none()) {
        return;
    }
    let ev = out.session_nodes.entry(user.to_string()).or_default();
    ev.push((now, on));
}

/// Appends `user`'s session going up or down at `now` to the bridge record, if it changed.
fn record_bridge(out: &mut History, user: String, open: bool, now: Duration) {
    let was_open = out
        .bridge
        .get(&user)
        .and_then(|ev| ev.last())
        .is_some_and(|(_, up)| *up);
    if open == was_open {
        return;
    }
    let ev = out.bridge.entry(user).or_default();
    if open && !ev.is_empty() {
        out.observer.hit("connector: session reopened");
    }
    if !open {
        out.observer.hit("connector: session closed");
    }
    ev.push((now, open));
}

/// Appends the session moves (failover, fallback) the connectors made since the last call to
/// the series `connector_moves/<host>/<from>/<to>`: one point per move, at its exact time,
/// valued with the number of such moves so far (the migration check's input).
pub fn collect_moves(h: &HybridHandles, out: &mut History) {
    let mut seen = h.moves_seen.borrow_mut();
    for (host, slot) in &h.connectors {
        let Some(core) = slot.borrow().as_ref().cloned() else {
            continue;
        };
        let read = match seen.get(host) {
            Some((c, n)) if Rc::ptr_eq(c, &core) => *n,
            _ => 0,
        };
        let node = core.borrow();
        let (moves, total) = node.sessions().moves();
        let fresh = (total.saturating_sub(read) as usize).min(moves.len());
        let list = out.moves.entry(host.clone()).or_default();
        for m in moves.iter().skip(moves.len() - fresh) {
            list.push(SessionMove {
                user: m.user.clone(),
                at: m.at,
                from: m.from.clone(),
                to: m.to.clone(),
            });
        }
        drop(node);
        seen.insert(host.clone(), (core, total));
    }
}

/// Time series of the connectors: open sessions per IM&P node, and every field of the status
/// page (spec 66-71) as `status/<host>/<field>` and `status/<host>/<imp node>/<field>`;
/// text fields as numbers: connectivity 1 = Operational, node status 1 = Operational,
/// certificate validation 1 = on, the version as a number (`14.0`).
///
/// Each connector's share as the cloud's records give it ([`cloud_share`]), the
/// `status_page` check's expectation.
///
/// Also what `within_capacity` reads: per connector node the users the cloud assigned to it
/// (`connector_assigned/<host>`) and its open sessions (`connector_open_sessions/<host>`), and
/// the cloud's own view ([`sample_cloud`]).
pub fn series(h: &HybridHandles, out: &mut History, now: Duration) {
    let t = now.as_secs_f64();
    sample_cloud(h, out, t);
    let cloud = h.cloud.as_ref().map(|c| c.borrow());
    let leaving = cloud
        .as_ref()
        .map(|c| moved_off(c, now))
        .unwrap_or_default();
    for (host, slot) in &h.connectors {
        let Some(core) = slot.borrow().as_ref().cloned() else {
            continue;
        };
        let core = core.borrow();
        // One walk of the sessions for both series (it visits every user).
        let per_node = core.sessions().open_per_node();
        connector_sessions(out, host, &per_node, t);
        let mut push = |name: String, n: usize| {
            out.series.entry(name).or_default().push((t, n as f64));
        };
        push(format!("connector_assigned/{host}"), core.assigned().len());
        let open: usize = per_node.values().sum();
        push(format!("connector_open_sessions/{host}"), open);
        let (page, share) = core.page_and_share(now);
        out.status_pages
            .entry(host.clone())
            .or_default()
            .push((now, page));
        out.status_shares
            .entry(host.clone())
            .or_default()
            .push((now, share));
        if let Some(cloud) = &cloud {
            let share = cloud_share(cloud, host, now, &leaving);
            out.cloud_shares
                .entry(host.clone())
                .or_default()
                .push((now, share));
        }
    }
}

/// How long a user stays "active" on the status page after using Webex to read or write
/// messages to or from Jabber (spec 70; the guide: "within the 72 hours leading up to now").
pub const ACTIVE_WINDOW: Duration = Duration::from_secs(72 * 3600);

/// How long an event the cloud queued on a connector's socket may take to be handled there:
/// the network's latency and a few ticks, with room for a queue loaded by a busy workload.
/// A count the cloud changed more recently may or may not be on the connector's page yet.
pub const EVENT_IN_FLIGHT: Duration = Duration::from_secs(5);

/// Users the cloud moved off each node within [`EVENT_IN_FLIGHT`] before `now`: the node may
/// not have heard yet and still count them.
fn moved_off(cloud: &fakes::cloud::Cloud, now: Duration) -> BTreeMap<String, usize> {
    let mut away: BTreeMap<String, usize> = BTreeMap::new();
    for (_, p) in cloud.bridge_log().placements() {
        if p.at + EVENT_IN_FLIGHT > now
            && let Some(from) = &p.from
            && p.node.as_ref() != Some(from)
        {
            *away.entry(from.clone()).or_default() += 1;
        }
    }
    away
}

/// Connector node `node`'s share as the cloud's records give it at `now` ([`CloudShare`]):
/// the users the cloud assigned to it (spec 69: "users ... that Webex has assigned to this
/// particular Expressway cluster", split by node) and, of those, the ones who used Webex
/// with Jabber within [`ACTIVE_WINDOW`] (spec 70: "Users are considered Active if, within
/// the 72 hours leading up to now, they have used Webex App to read or write messages to or
/// from Cisco Jabber") as far as the node can know it: an activity event delivered to the
/// node since they were placed there, or a presence answer that told the node their last
/// such use since then (a restarted node, or one newly given the user; explore seed 66).
/// Counted from the cloud, never from the connector; what changed within
/// [`EVENT_IN_FLIGHT`], or what the node has not heard of yet (its assignment or activity
/// event not shown read: queued on a socket a cloud outage cut, after the cut or on its way
/// at it, with no assignments or presence answer since), widens the range.
fn cloud_share(
    cloud: &fakes::cloud::Cloud,
    node: &str,
    now: Duration,
    leaving: &BTreeMap<String, usize>,
) -> CloudShare {
    // `users_on` is in email order, as the log is: walked alongside.
    let mut log = cloud.bridge_log().cursor();
    let settled = |t: Duration| t + EVENT_IN_FLIGHT <= now;
    let within = |t: Duration| now.saturating_sub(t) <= ACTIVE_WINDOW;
    let mut s = CloudShare::default();
    for email in cloud.assignment().users_on(node) {
        let rec = log.user(email);
        // Counted for sure once the node heard of the placement: an assignment event it was
        // shown to read (it answered a ping sent after it), or its assignments answer since.
        // An event queued on a socket a cloud outage cut, or on its way at the cut, is lost
        // with it; the node learns from the resync after it reconnects (explore seed 4507:
        // 27 s after the placement).
        let placed = rec.placement().is_none() || rec.placement_heard(node).is_some_and(settled);
        s.enabled.1 += 1;
        s.enabled.0 += usize::from(placed);
        let told = rec.told_since_placed(node);
        let told = told.filter(|&(_, used)| within(used));
        let told_sure = told.is_some_and(|(at, _)| settled(at));
        let Some((_, last)) = rec.delivered_since_placed(node) else {
            // Taken off this node and put back on it: the node forgot the user's use only if
            // it received the removal (explore seed 75: a cloud crash, no socket for it), be
            // that use an event delivered to it or one a presence answer told it (explore seed
            // 26600: told at 239 s, moved off unheard after a cloud outage, back at 390 s).
            let back = rec
                .last_delivery()
                .is_some_and(|(to, at)| to == node && within(at))
                || rec.last_told(node).is_some_and(|(_, used)| within(used));
            s.active.1 += usize::from(back || told.is_some());
            s.active.0 += usize::from(told_sure && placed);
            continue;
        };
        if !within(last) {
            continue;
        }
        // The node has the events it was shown to read (it answered a ping sent after them):
        // one queued on a socket a cloud outage cut, or on its way at the cut, is lost with it
        // (explore seed 4779; `cloud-outage-15k-two-lost-heartbeats` seeds 3 and 5), and the
        // node learns that use from its next presence answer.
        let heard = rec.heard_since_placed(node);
        let read =
            heard.is_some_and(|(first, last)| settled(last) || (settled(first) && within(first)));
        let sure = read || told_sure;
        s.active.1 += 1;
        s.active.0 += usize::from(sure && placed);
    }
    let away = leaving.get(node).copied().unwrap_or(0);
    s.enabled.1 += away;
    s.active.1 += away;
    s
}

/// Open sessions per IM&P node of connector `host` at `t`: a node the connector had sessions
/// on and has none now gets a 0 (a gap would say the connector could not be read).
fn connector_sessions(out: &mut History, host: &str, open: &BTreeMap<String, usize>, t: f64) {
    let prefix = format!("connector_sessions/{host}/");
    let emptied: Vec<String> = out
        .series
        .range(prefix.clone()..)
        .take_while(|(name, _)| name.starts_with(&prefix))
        .map(|(name, _)| name.clone())
        .filter(|name| !open.contains_key(&name[prefix.len()..]))
        .collect();
    for name in emptied {
        out.series.entry(name).or_default().push((t, 0.0));
    }
    for (node, n) in open {
        out.series
            .entry(format!("{prefix}{node}"))
            .or_default()
            .push((t, *n as f64));
    }
}

/// The cloud's view at `t`: users assigned per connector node and whether the node takes users
/// (`cloud_assigned/<node>`, `cloud_eligible/<node>`), and how many users are in each Hybrid
/// Message state (`cloud_users/<state>`, spec 25-27).
fn sample_cloud(h: &HybridHandles, out: &mut History, t: f64) {
    let Some(cloud) = &h.cloud else { return };
    let cloud = cloud.borrow();
    let mut push = |name: String, v: f64| out.series.entry(name).or_default().push((t, v));
    let a = cloud.assignment();
    for cluster in a.clusters() {
        let Some(st) = a.cluster_status(cluster) else {
            continue;
        };
        for n in st.nodes {
            push(format!("cloud_assigned/{}", n.node), f64::from(n.assigned));
            let eligible = n.up && !n.maintenance;
            push(
                format!("cloud_eligible/{}", n.node),
                f64::from(u8::from(eligible)),
            );
        }
    }
    // Counted by state, named once per state: a name formatted per user cost 75,000
    // formats per sample at the largest cluster.
    let mut states: BTreeMap<fakes::cloud::org::HmState, f64> = BTreeMap::new();
    for u in cloud.org().users() {
        *states.entry(u.state).or_default() += 1.0;
    }
    for (state, n) in states {
        push(format!("cloud_users/{state:?}"), n);
    }
    deactivations(cloud.org(), out, Duration::from_secs_f64(t));
    activation_errors(cloud.org(), out);
}

/// Records the users the cloud holds in Error without ever having had them Active
/// ([`History::cloud_activation_errors`]), with the org's own time and reason of the error;
/// forgets those that left Error.
fn activation_errors(org: &fakes::cloud::org::Org, out: &mut History) {
    use fakes::cloud::org::{HistoryEntry, HmState};
    for u in org.users() {
        if u.state != HmState::Error {
            out.cloud_activation_errors.remove(&u.email);
            continue;
        }
        if u.history.iter().any(|e| e.state == HmState::Active) {
            continue;
        }
        let Some(last) = u.history.back() else {
            continue;
        };
        let entry = HistoryEntry {
            at_ms: last.at_ms,
            state: u.state,
            reason: u.reason.clone(),
        };
        out.cloud_activation_errors.insert(u.email.clone(), entry);
    }
}

/// Records each change of state of the users the cloud took out of Hybrid Message service
/// after having had them Active ([`History::cloud_deactivations`]), from the org's own
/// records: the time of the org's latest history entry when it names the state, else `now`.
/// Each user's record keeps the org's bound on a history ([`HISTORY_ENTRIES_MAX`], the oldest
/// dropped first); the last change is what `liveness` reads.
///
/// [`HISTORY_ENTRIES_MAX`]: fakes::cloud::org::HISTORY_ENTRIES_MAX
fn deactivations(org: &fakes::cloud::org::Org, out: &mut History, now: Duration) {
    use fakes::cloud::org::{HISTORY_ENTRIES_MAX, HistoryEntry, HmState};
    for u in org.users() {
        // Most runs record none: no lookup per user then.
        let recorded = (!out.cloud_deactivations.is_empty())
            .then(|| out.cloud_deactivations.get(&u.email))
            .flatten();
        let last = recorded.and_then(|r| r.last()).map(|e| e.state);
        let was_active = || u.history.iter().any(|e| e.state == HmState::Active);
        let record = match last {
            Some(state) => state != u.state,
            None => u.state != HmState::Active && was_active(),
        };
        if !record {
            continue;
        }
        let at_ms = (u.history.back())
            .filter(|e| e.state == u.state)
            .map_or(now.as_millis() as u64, |e| e.at_ms);
        let entry = HistoryEntry {
            at_ms,
            state: u.state,
            reason: u.reason.clone(),
        };
        let changes = out.cloud_deactivations.entry(u.email.clone()).or_default();
        if changes.len() == HISTORY_ENTRIES_MAX {
            changes.remove(0);
        }
        changes.push(entry);
    }
}

/// Follows every node's PRG state, step by step.
#[derive(Debug, Default)]
pub struct Watch {
    last: BTreeMap<String, PrgState>,
}

impl Watch {
    /// Reads each node's state (Unknown when its host is down) and records changes in the
    /// trace digest and coverage. Called once per step: states like Taking Over last about a
    /// second, far less than a sample interval.
    pub fn step(&mut self, world: &mut World<'_>, now: Duration) {
        for (host, h) in &world.imp.nodes {
            let state = current(&mut world.sim, host, &h.slot);
            let Some(state) = state else { continue };
            let before = self.last.insert(host.clone(), state);
            if let Some(b) = before
                && b != state
            {
                world.observer.fault(
                    now,
                    &format!("prg {host}: {} -> {}", b.name(), state.name()),
                );
                world.observer.hit(&format!("prg state {}", state.name()));
            }
        }
    }

    /// Appends one `prg_state/<host>` point per node (module docs for the encoding).
    pub fn sample(&self, out: &mut History, now: Duration) {
        for (host, state) in &self.last {
            out.prg_states
                .entry(host.clone())
                .or_default()
                .push((now, *state));
        }
    }
}

fn current(sim: &mut turmoil::Sim<'_>, host: &str, slot: &NodeSlot) -> Option<PrgState> {
    let node = slot.borrow().clone()?;
    if !sim.is_host_running(host) {
        return Some(PrgState::Unknown);
    }
    node.borrow().prg_state()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::observer::Observer;
    use fakes::cloud::org::{Entitlement, HmState, Lookup, Org, REASON_DUPLICATE};
    use std::collections::BTreeSet;

    const ALICE: &str = "alice@example.com";
    const BOB: &str = "bob@example.com";

    fn at(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// The record of the cloud's deactivations (explore seeds 5383, 5267): Alice, Active at
    /// 5 s, is made a duplicate at 200 s by a late cluster's report, then reactivated; Bob,
    /// Active throughout, and users never Active (Pending) are not recorded. Each change
    /// carries the org's own time and reason, not the sample's.
    #[test]
    fn a_user_the_cloud_takes_out_of_service_is_recorded_with_its_times() {
        let mut org = Org::new("example.com");
        let hm = BTreeSet::from([Entitlement::PaidLicence, Entitlement::HybridMessage]);
        for u in [ALICE, BOB, "carol@example.com"] {
            org.add_user(u, "pw").expect("a new user");
        }
        for u in [ALICE, BOB] {
            org.set_entitlements(at(0), u, hm.clone())
                .expect("licensed");
        }
        org.tick(at(5), |_| Lookup::Unique);
        let mut out = History::from_history(1, Rc::new(Observer::new()), Vec::new());
        deactivations(&org, &mut out, at(10));
        assert!(out.cloud_deactivations.is_empty());
        org.became_duplicate(at(200), ALICE);
        deactivations(&org, &mut out, at(202));
        deactivations(&org, &mut out, at(204));
        let alice = &out.cloud_deactivations[ALICE];
        assert_eq!(alice.len(), 1, "{alice:?}");
        assert_eq!((alice[0].at_ms, alice[0].state), (200_000, HmState::Error));
        assert_eq!(alice[0].reason.as_deref(), Some(REASON_DUPLICATE));
        assert_eq!(
            out.out_of_service().keys().copied().collect::<Vec<_>>(),
            [ALICE]
        );
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        org.reactivate(at(300), ALICE, &mut rng).expect("enabled");
        deactivations(&org, &mut out, at(302));
        org.tick(at(1000), |_| Lookup::Unique);
        deactivations(&org, &mut out, at(1002));
        let states: Vec<HmState> = out.cloud_deactivations[ALICE]
            .iter()
            .map(|e| e.state)
            .collect();
        assert_eq!(states, [HmState::Error, HmState::Pending, HmState::Active]);
        assert!(out.out_of_service().is_empty());
        assert_eq!(out.cloud_deactivations.len(), 1, "only Alice");
    }

    /// The record of activations that failed (`liveness`'s first sessions): Alice, looked up
    /// while no connector knew her, goes from Pending to Error "no matching IM&P user" and is
    /// recorded with the org's time; reactivated, she leaves the record. Bob, Active, is not
    /// recorded; nor is a user made a duplicate after having been Active (a deactivation).
    #[test]
    fn a_user_whose_activation_failed_is_recorded_until_reactivated() {
        use fakes::cloud::org::REASON_NO_IMP_USER;
        let mut org = Org::new("example.com");
        let hm = BTreeSet::from([Entitlement::PaidLicence, Entitlement::HybridMessage]);
        for u in [ALICE, BOB] {
            org.add_user(u, "pw").expect("a new user");
            org.set_entitlements(at(0), u, hm.clone())
                .expect("licensed");
        }
        org.tick(at(5), |u| {
            if u == ALICE {
                Lookup::NotFound
            } else {
                Lookup::Unique
            }
        });
        let mut out = History::from_history(1, Rc::new(Observer::new()), Vec::new());
        activation_errors(&org, &mut out);
        let alice = &out.cloud_activation_errors[ALICE];
        assert_eq!((alice.at_ms, alice.state), (5_000, HmState::Error));
        assert_eq!(alice.reason.as_deref(), Some(REASON_NO_IMP_USER));
        assert_eq!(out.cloud_activation_errors.len(), 1, "only Alice");
        org.became_duplicate(at(200), BOB);
        activation_errors(&org, &mut out);
        assert!(
            !out.cloud_activation_errors.contains_key(BOB),
            "Bob was Active"
        );
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        org.reactivate(at(300), ALICE, &mut rng).expect("enabled");
        activation_errors(&org, &mut out);
        assert!(out.cloud_activation_errors.is_empty());
    }
}
