//! Stage 7, the oracle: what must, may, and must not be delivered, judged over a history. The
//! runner asks it whether the run is quiescent; the checks judge with it.
//!
//! A message that the rules say must arrive and did not is a loss, a second copy on one device
//! is a duplicate. A message sent while a fault could legitimately swallow it (XMPP without
//! stream management loses what is in flight on a dead TCP stream) is *at risk*: its loss is
//! reported, not failed. The window is the fault plus [`RISK_MARGIN`], the time a client needs
//! to notice a dead stream and log in again. For a user homed on an IM&P node down for good
//! that no PRG peer takes over, the window never closes: their Jabber copies have no way to
//! arrive ([`Oracle::stranded_copy`]).
//!
//! - [`activity`]: who used which client when (the 72 h rule, spec 52), from the history.
//! - [`cuts`]: the links a hold or partition cut on a message's way to Webex (spec 64).
//! - [`interop`]: across the Jabber/Webex bridge, per recipient client (spec 32-34).
//! - [`tally`]: deliveries, losses, duplicates and reorderings over the whole history.

pub mod activity;
pub mod cuts;
pub mod interop;
pub mod tally;

use crate::history::History;
use crate::history::observer::MessageRecord;
use crate::plan::topology::UserSpec;
use crate::scenario::Scenario;
use fakes::observe::ClientKind;
use std::collections::BTreeMap;
use std::time::Duration;

/// After a fault ends, messages stay at risk until clients have noticed dead streams
/// (keepalive silence, 90 s) and logged in again (backoff up to 30 s, login).
pub const RISK_MARGIN: Duration = Duration::from_secs(150);

/// A message sent this long before a fault may still be in flight when the fault hits, and be
/// lost with the stream it is on. The longest path, Webex App → cloud → connector → IM&P →
/// Jabber, crosses four hosts and two HTTP round trips: about a second at a 100 ms tick
/// (`imp-failover-uncontrolled` lost one sent 1.3 s before the crash of the recipient's node),
/// a few at coarser ticks.
pub const IN_FLIGHT_SLACK: Duration = Duration::from_secs(5);

/// After a fault that kept a connector node from passing messages on ends, what the node holds
/// gets out at its next retry of the KMS or cloud request that failed. A connector backs off
/// between retries (hmsim's up to a minute; the guides name no figure), so a node that stops
/// within this long of the fault's end may still hold messages sent during it (explore seed
/// 4801 shrunk: a KMS outage ended at 235 s, the Expressway's own maintenance mode at 251 s
/// found a Webex message of 216 s still waiting for its key).
pub const BACKLOG_DRAIN: Duration = Duration::from_secs(60);

/// Delivery expectation for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Must reach at least one device of the recipient, and each device at most once.
    Must,
    /// May be lost (sent inside a fault's risk window, or to a user whose home node is down
    /// for good with no PRG failover).
    AtRisk,
    /// Legitimately discarded: the recipient's cluster has offline storage off and the
    /// recipient had no session (spec 46).
    Discarded,
}

/// Messages in flight when a client farm crashes may be lost: those its users sent just before,
/// and those the node was writing to its users' streams until it saw them close (one tick, a
/// few at most). After that the node knows the users are gone and stores (or refuses).
pub const FARM_CRASH_RISK: Duration = Duration::from_secs(2);

/// How long before a Jabber farm's streams break `m` may still be on its way to them. A
/// message between Jabber devices crosses IM&P alone (a few tenths of a second at a 100 ms
/// tick). One a Webex App sent crosses the cloud, a connector and IM&P before it reaches a
/// Jabber stream (1.1-1.3 s at a 100 ms tick): [`IN_FLIGHT_SLACK`], as for any path across
/// the bridge (explore seed 25816: sent 1.2 s before the recipient's farm restarted, lost).
fn farm_transit(m: &MessageRecord) -> Duration {
    match interop::client_of_device(&m.sender_device) {
        ClientKind::Webex => IN_FLIGHT_SLACK,
        ClientKind::Jabber => Duration::from_secs(1),
    }
}

/// A device counts as logged in around a send when its session covers this much on both sides
/// of the send: login completes in a few ticks, carbons are enabled right after binding.
pub const SESSION_SETTLE: Duration = Duration::from_secs(2);

/// What the oracle knows about users and sessions, built once per evaluation.
pub struct Oracle<'a> {
    s: &'a Scenario,
    /// Bare JID → (client-farm host, IM&P cluster index).
    users: BTreeMap<String, (String, usize)>,
    /// (user, device) → session transitions in time order.
    pub sessions: BTreeMap<(String, String), Vec<(Duration, bool)>>,
    /// When a PRG changed state on its own (an automatic fallback long after its fault).
    prg_changes: Vec<Duration>,
    /// Bare JID → when the user's home IM&P node went down for good with no PRG failover
    /// ([`crate::plan::imp::stranded_since`]).
    stranded: BTreeMap<String, Duration>,
    /// Bare JID → when the user's home IM&P node went down for good, its PRG peer taking the
    /// user over ([`crate::plan::imp::taken_over_for_good_since`]): the node's offline store
    /// is lost then ([`Oracle::stored_on_lost_node`]).
    lost_stores: BTreeMap<String, Duration>,
    /// Jabber farm host → the moments its streams broke ([`farm_breaks`]).
    farm_breaks: BTreeMap<String, Vec<Duration>>,
}

/// When each Jabber client farm's streams break, from the fault schedule: a crash of a farm
/// that is up, and a restart (a `bounce`, or the end of a timed crash) of a farm that is up.
/// The end of a crash breaks nothing when the farm is down then, but two crashes that overlap
/// bring it up at the first end and restart it at the second (explore seed 23254: crashes at
/// 2m for 1m14s and at 2m13s for 40s; two messages sent 0.25 s before 3m14s were lost).
fn farm_breaks(s: &Scenario) -> BTreeMap<String, Vec<Duration>> {
    use crate::plan::faults::{Action, BaseLatency};
    let mut up: BTreeMap<&str, bool> = BTreeMap::new();
    let mut breaks: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    let timeline = crate::plan::faults::timeline(&s.faults, BaseLatency(s.tick.0));
    for a in &timeline {
        let (hosts, after) = match &a.action {
            Action::Crash(h) => (h, false),
            Action::Bounce(h) => (h, true),
            _ => continue,
        };
        for h in hosts.iter().filter(|h| h.starts_with("jabber-")) {
            let was_up = up.insert(h.as_str(), after).unwrap_or(true);
            if was_up {
                breaks.entry(h.clone()).or_default().push(a.at);
            }
        }
    }
    breaks
}

impl<'a> Oracle<'a> {
    /// Indexes the population and the session history of `out`.
    pub fn new(s: &'a Scenario, out: &History) -> Self {
        let mut oracle = Self::without_sessions(s, out);
        for e in out.observer.sessions() {
            oracle.add_session(e);
        }
        oracle
    }

    /// Indexes the population of `out` and its PRG changes, not its sessions: the runner's
    /// incremental quiescence judgement adds them as they come ([`Oracle::add_session`]).
    pub fn without_sessions(s: &'a Scenario, out: &History) -> Self {
        let users = out
            .users
            .iter()
            .map(|u| {
                (
                    u.jid.clone(),
                    (crate::plan::topology::jabber_farm(u.farm), u.cluster),
                )
            })
            .collect();
        let down = crate::plan::imp::stranded_since(s);
        let stranded = out
            .users
            .iter()
            .filter_map(|u| Some((u.jid.clone(), *down.get(&u.home_host(s))?)))
            .collect();
        let lost = crate::plan::imp::taken_over_for_good_since(s);
        let lost_stores = out
            .users
            .iter()
            .filter_map(|u| Some((u.jid.clone(), lost.get(&u.home_host(s))?.0)))
            .collect();
        Self {
            s,
            users,
            sessions: BTreeMap::new(),
            prg_changes: prg_changes(out),
            stranded,
            lost_stores,
            farm_breaks: farm_breaks(s),
        }
    }

    /// Adds a session transition, the next in time order.
    pub fn add_session(&mut self, e: crate::history::observer::SessionEvent) {
        self.sessions
            .entry((e.user, e.device))
            .or_default()
            .push((e.at, e.up));
    }

    /// Reads the PRG changes of `out` again (its PRG state samples grew).
    pub fn refresh_prg(&mut self, out: &History) {
        self.prg_changes = prg_changes(out);
    }

    /// The IM&P cluster settings of a user's home cluster.
    pub fn cluster(&self, user: &str) -> Option<&'a crate::scenario::ImpCluster> {
        let (_, c) = self.users.get(user)?;
        self.s.topology.imp_clusters.get(*c)
    }

    /// Whether `user/device` was logged in over the whole of `[from, to]`.
    pub fn device_up_over(&self, user: &str, device: &str, from: Duration, to: Duration) -> bool {
        let events = self.device_sessions(user, device);
        // Up at `from` (its last transition by then was a login) and no logout until `to`.
        let down_inside = events.iter().any(|(at, u)| !*u && *at >= from && *at <= to);
        up_at(events, from) && !down_inside
    }

    /// Devices of `user` that ever had a session.
    pub fn devices_of(&self, user: &str) -> Vec<&str> {
        self.sessions
            .keys()
            .filter(|(u, _)| u == user)
            .map(|(_, d)| d.as_str())
            .collect()
    }

    /// Whether some device of `user` was logged in over the whole of `[from, to]`.
    pub fn user_up_over(&self, user: &str, from: Duration, to: Duration) -> bool {
        self.devices_of(user)
            .iter()
            .any(|d| self.device_up_over(user, d, from, to))
    }

    /// Whether `m` must be delivered.
    ///
    /// A message to a user of a cluster with offline storage off is legitimately discarded
    /// when the recipient had no session around the send (within a second). A crash or
    /// bounce of client farms puts at risk only the messages of that farm's users in flight at
    /// that moment ([`FARM_CRASH_RISK`]): the node sees the streams close and stores what comes
    /// after. Service faults that keep streams up put nothing at risk
    /// ([`crate::plan::faults::breaks_streams`]). Every other fault puts at risk everything sent
    /// during it, [`RISK_MARGIN`] after and [`IN_FLIGHT_SLACK`] before.
    pub fn expect(&self, m: &MessageRecord) -> Expect {
        let storage_off = self.cluster(&m.to).is_some_and(|c| !c.offline_storage);
        let around = (
            m.sent_at.saturating_sub(Duration::from_secs(1)),
            m.sent_at + Duration::from_secs(1),
        );
        // A refusal alone does not make a discard legitimate: IM&P refusing a message for a
        // user with a session is exactly the bug to catch.
        if storage_off && !self.user_up_over(&m.to, around.0, around.1) {
            return Expect::Discarded;
        }
        if self.at_risk(m) || self.stranded_copy(m, m.client) {
            Expect::AtRisk
        } else {
            Expect::Must
        }
    }

    /// Whether the copy of `m` for the recipient's `client` has no way to arrive: a Jabber
    /// copy to a user homed on an IM&P node down for good that no PRG peer took over, sent
    /// from [`IN_FLIGHT_SLACK`] before the failure on. IM&P delivers (and stores offline) on
    /// the node serving the recipient's home; without high availability no PRG failover moves
    /// the users to the peer (spec 64-65), so the recipient's Jabber devices never log in
    /// again and the copy stays undelivered: the fault never ends for that user (explore 2743,
    /// 2769, 2894, 3238, 3470).
    ///
    /// So is a copy the recipient's home node held in offline storage when it went down for
    /// good ([`Oracle::stored_on_lost_node`]).
    pub fn stranded_copy(&self, m: &MessageRecord, client: ClientKind) -> bool {
        client == ClientKind::Jabber
            && (self
                .stranded
                .get(&*m.to)
                .is_some_and(|&down| m.sent_at + IN_FLIGHT_SLACK >= down)
                || self.stored_on_lost_node(m))
    }

    /// Whether the Jabber copy of `m` may have been in the offline storage of the recipient's
    /// home node when the node went down for good, its PRG peer taking the recipient over:
    /// sent before the loss while no Jabber device of the recipient was logged in, and none
    /// logging in before the loss to take it. The node keeps offline messages in its own
    /// database and hands them over only itself (at a failover it takes part in, or once
    /// restarted); the guides say no more (spec 46-48). Explore seed 25446: stored at 107.8 s
    /// while the recipient's farm was down, imp-a-1 failed over automatically at 114 s for
    /// good, and the recipient logged in to imp-a-2 at 174.5 s without it.
    pub fn stored_on_lost_node(&self, m: &MessageRecord) -> bool {
        self.lost_stores.get(&*m.to).is_some_and(|&lost| {
            m.sent_at < lost && !self.jabber_logged_in_during(&m.to, m.sent_at, lost)
        })
    }

    /// Whether a Jabber device of `user` was logged in at some moment of `[from, to]`.
    fn jabber_logged_in_during(&self, user: &str, from: Duration, to: Duration) -> bool {
        self.devices_of(user).iter().any(|d| {
            let events = self.device_sessions(user, d);
            interop::client_of_device(d) == ClientKind::Jabber
                && (up_at(events, from)
                    || events
                        .iter()
                        .any(|(at, up)| *up && (from..=to).contains(at)))
        })
    }

    /// The session transitions of `user/device` in time order (none if it never had one).
    fn device_sessions(&self, user: &str, device: &str) -> &[(Duration, bool)] {
        self.sessions
            .get(&(user.to_string(), device.to_string()))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether the recipient clients still `missing` a message across the bridge may stay
    /// without it: a fault could have swallowed it ([`Oracle::at_risk`]), or every missing
    /// copy is a [`Oracle::stranded_copy`].
    pub fn excused(&self, m: &MessageRecord, missing: &[ClientKind]) -> bool {
        !missing.is_empty()
            && (self.at_risk(m) || missing.iter().all(|&c| self.stranded_copy(m, c)))
    }

    /// Whether a Jabber device of `user` was logged in over the whole of `[from, to]`; the
    /// Webex App's devices (`webex.*`) do not count, nor does a connector session.
    pub fn jabber_up_over(&self, user: &str, from: Duration, to: Duration) -> bool {
        self.devices_of(user).iter().any(|d| {
            interop::client_of_device(d) == ClientKind::Jabber
                && self.device_up_over(user, d, from, to)
        })
    }

    /// Whether IM&P legitimately discarded the copy of `m` meant for the recipient's Jabber:
    /// the guide's "not using Jabber" with storage off ("the message is discarded", spec 46;
    /// "may not ever appear in Jabber", spec 49), i.e. storage off on the recipient's cluster
    /// and no Jabber device of theirs logged in around the send, whatever the recipient's
    /// connector session or Webex App received.
    pub fn jabber_copy_discarded(&self, m: &MessageRecord) -> bool {
        let storage_off = self.cluster(&m.to).is_some_and(|c| !c.offline_storage);
        let around = (
            m.sent_at.saturating_sub(Duration::from_secs(1)),
            m.sent_at + Duration::from_secs(1),
        );
        storage_off && !self.jabber_up_over(&m.to, around.0, around.1)
    }

    /// The recipient clients that had to receive `m` across the bridge and did not:
    /// [`interop::missing`], less a Jabber copy discarded by the offline policy
    /// ([`Oracle::jabber_copy_discarded`]). With storage on a Jabber copy is always due: IM&P
    /// keeps it until a Jabber device logs in. The flag says a due Jabber copy was discarded.
    pub fn missing(
        &self,
        users: &BTreeMap<&str, &UserSpec>,
        m: &MessageRecord,
        bridge: &interop::Bridge,
        uses: &activity::Uses,
    ) -> (Vec<ClientKind>, bool) {
        self.missing_by(&|jid| users.get(jid).copied(), m, bridge, uses)
    }

    /// [`Oracle::missing`], finding users with `users` (by bare JID).
    pub fn missing_by<'u>(
        &self,
        users: &dyn Fn(&str) -> Option<&'u UserSpec>,
        m: &MessageRecord,
        bridge: &interop::Bridge,
        uses: &activity::Uses,
    ) -> (Vec<ClientKind>, bool) {
        let mut missing = interop::missing_by(users, m, bridge, uses);
        let discarded = missing.contains(&ClientKind::Jabber) && self.jabber_copy_discarded(m);
        if discarded {
            missing.retain(|c| *c != ClientKind::Jabber);
        }
        (missing, discarded)
    }

    /// Whether a fault could have swallowed `m` (see [`Oracle::expect`]).
    pub fn at_risk(&self, m: &MessageRecord) -> bool {
        // A PRG moving users (failover or fallback, manual or automatic) ends their streams
        // with `see-other-host`: what is in flight then is lost, as with any broken stream.
        let moved = self
            .prg_changes
            .iter()
            .any(|&t| m.sent_at + PRG_SAMPLE_SLACK >= t && m.sent_at <= t + RISK_MARGIN);
        if moved || self.held_at_stop(m) {
            return true;
        }
        let farm = |u: &str| self.users.get(u).map(|(f, _)| f.as_str());
        let mut risky = self
            .s
            .faults
            .iter()
            .filter(|f| crate::plan::faults::breaks_streams(f));
        risky.any(|f| {
            let (start, end) = crate::plan::faults::window(f);
            let farms_only = f.partition.is_none()
                && match (&f.crash, &f.bounce) {
                    (Some(h), None) | (None, Some(h)) => {
                        h.0.iter().all(|h| h.starts_with("jabber-"))
                    }
                    _ => false,
                };
            if farms_only {
                let hosts = f.crash.as_ref().or(f.bounce.as_ref()).map(|h| &h.0);
                let involved = hosts.into_iter().flatten().filter(|h| {
                    farm(&m.from) == Some(h.as_str()) || farm(&m.to) == Some(h.as_str())
                });
                let breaks = involved.flat_map(|h| self.farm_breaks.get(h).into_iter().flatten());
                let before = farm_transit(m);
                breaks
                    .filter(|b| (start..=end).contains(*b))
                    .any(|&b| m.sent_at + before >= b && m.sent_at <= b + FARM_CRASH_RISK)
            } else {
                m.sent_at + IN_FLIGHT_SLACK >= start && m.sent_at <= end + RISK_MARGIN
            }
        })
    }
}

/// Whether `m` never reached the cloud: its client held it unsent when the client's host went
/// down ([`crate::history::observer::MessageRecord::held_at_crash`]) and nothing delivered
/// it. Not awaited: nothing can deliver it any more.
pub fn never_at_cloud(m: &crate::history::observer::MessageRecord) -> bool {
    m.held_at_crash && m.deliveries.is_empty()
}

impl Oracle<'_> {
    /// Whether `m` may have been waiting in a connector node's memory when the node stopped
    /// ([`crate::plan::faults::stops_connector`]): sent while a fault kept the node from
    /// passing messages on ([`crate::plan::faults::holds_at_connector`]), and the node stopped
    /// after the send, during that fault or within [`BACKLOG_DRAIN`] of its end (explore
    /// seed 4801). Without a holding fault, the stream-breaking window of [`Oracle::at_risk`]
    /// covers what was in flight.
    fn held_at_stop(&self, m: &MessageRecord) -> bool {
        use crate::plan::faults::{holds_at_connector, stops_connector, window};
        let faults = &self.s.faults;
        faults.iter().filter(|f| stops_connector(f)).any(|stop| {
            let at = stop.at.0;
            faults.iter().filter(|f| holds_at_connector(f)).any(|h| {
                let (start, end) = window(h);
                let end = if h.for_.is_some() { end } else { Duration::MAX };
                m.sent_at + IN_FLIGHT_SLACK >= start
                    && m.sent_at <= at
                    && at <= end.saturating_add(BACKLOG_DRAIN)
            })
        })
    }
}

/// Whether the last of a device's session `events` at or before `t` was a login.
fn up_at(events: &[(Duration, bool)], t: Duration) -> bool {
    events
        .iter()
        .rfind(|(at, _)| *at <= t)
        .is_some_and(|(_, up)| *up)
}

/// PRG states are sampled, so a change is seen up to this long after it happened.
const PRG_SAMPLE_SLACK: Duration = Duration::from_secs(5);

/// The times at which a node's sampled PRG state changes.
fn prg_changes(out: &History) -> Vec<Duration> {
    let mut at: Vec<Duration> = out
        .prg_states
        .values()
        .flat_map(|states| {
            states
                .windows(2)
                .filter(|w| w[0].1 != w[1].1)
                // Through seconds as f64, as the plotted series holds them.
                .map(|w| Duration::from_secs_f64(w[1].0.as_secs_f64()))
        })
        .collect();
    at.sort();
    at.dedup();
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::observer::Observer;
    use crate::plan::rng::RngFactory;
    use fakes::observe::ClientKind;
    use std::rc::Rc;

    const ALICE: &str = "user00000@example.com";
    const BOB: &str = "user00001@example.com";

    fn output(s: &Scenario, obs: Rc<Observer>) -> History {
        let users = crate::plan::topology::population(s, &RngFactory::new(1));
        History::from_history(1, obs, users)
    }

    /// A message still on its way when a stream-breaking fault hits is at risk: sent up to
    /// `IN_FLIGHT_SLACK` before it, during it, or up to `RISK_MARGIN` after it; not earlier
    /// or later.
    #[test]
    fn at_risk_from_just_before_a_fault_to_its_margin_after() {
        let yaml = "name: t\nseed: 1\nduration: 10m\ntopology:\n  imp_clusters: [{ name: a, nodes: 1 }]\nusers: { count: 2, jabber: 100% }\nfaults:\n  - { at: 100s, for: 10s, crash: imp-a-1 }\n";
        let s = crate::parse("t.yaml", yaml).expect("valid test scenario");
        let out = output(&s, Rc::new(Observer::new()));
        let oracle = Oracle::new(&s, &out);
        let sent_at = |secs: u64| undelivered(ALICE, BOB, secs);
        let slack = IN_FLIGHT_SLACK.as_secs();
        let margin = RISK_MARGIN.as_secs();
        assert!(!oracle.at_risk(&sent_at(100 - slack - 1)), "long before");
        assert!(
            oracle.at_risk(&sent_at(100 - slack)),
            "in flight at the crash"
        );
        assert!(oracle.at_risk(&sent_at(105)), "during");
        assert!(
            oracle.at_risk(&sent_at(110 + margin)),
            "before clients are back"
        );
        assert!(!oracle.at_risk(&sent_at(110 + margin + 1)), "after");
    }

    /// A crash of a Jabber farm puts at risk only what is in flight when its streams break
    /// (`FARM_CRASH_RISK`). Two crashes that overlap break them twice (explore seed 23254: at
    /// 2m for 1m14s and at 2m13s for 40s): the second's end brings the farm up at 2m53s and
    /// the first's end restarts it at 3m14s, losing two messages sent 0.25 s before. With the
    /// first crash alone, the farm is down at 3m14s: nothing of it is in flight then.
    #[test]
    fn overlapping_farm_crashes_put_what_is_in_flight_at_each_break_at_risk() {
        let yaml = |faults: &str| {
            format!(
                "name: t\nseed: 1\nduration: 10m\ntopology:\n  imp_clusters: [{{ name: a, nodes: 1 }}]\n  client_farms: {{ jabber: 1 }}\nusers: {{ count: 2, jabber: 100% }}\nfaults:\n{faults}"
            )
        };
        let first = "  - { at: 120s, for: 74s, crash: jabber-1 }\n";
        let second = "  - { at: 133s, for: 40s, crash: jabber-1 }\n";
        let risky = |faults: &str, millis: u64| {
            let s = crate::parse("t.yaml", &yaml(faults)).expect("valid test scenario");
            let out = output(&s, Rc::new(Observer::new()));
            let mut m = undelivered(ALICE, BOB, 0);
            m.sent_at = Duration::from_millis(millis);
            Oracle::new(&s, &out).at_risk(&m)
        };
        let both = format!("{first}{second}");
        assert!(risky(&both, 193_750), "in flight at the restart of 3m14s");
        assert!(risky(&both, 120_000), "in flight at the first crash");
        assert!(!risky(&both, 180_000), "up since 2m53s, before the restart");
        assert!(
            !risky(&both, 133_500),
            "the farm was down at the second crash"
        );
        assert!(!risky(first, 193_750), "alone, the farm is down at 3m14s");
    }

    /// Explore 25816: a Webex App message to a Jabber user, sent 1.2 s before the recipient's
    /// farm restarted, was lost with the stream: across the bridge (cloud, connector, IM&P) it
    /// reaches the farm about 1.1-1.3 s after the send at a 100 ms tick, later than a message
    /// between two Jabber devices (a few tenths of a second). What a Webex App sent up to
    /// `IN_FLIGHT_SLACK` before the break may still be on its way; a Jabber device's message
    /// sent that long before is not.
    #[test]
    fn a_webex_message_crossing_the_bridge_is_in_flight_longer_before_a_farm_break() {
        let yaml = "name: t\nseed: 1\nduration: 10m\ntopology:\n  imp_clusters: [{ name: a, nodes: 1 }]\n  expressway_clusters: [{ name: a, size: small, nodes: 1, imp_clusters: [a] }]\n  client_farms: { jabber: 1 }\nusers: { count: 2, jabber: 100%, webex: 100%, hybrid_message: 100% }\nfaults:\n  - { at: 175s, bounce: jabber-1 }\n";
        let s = crate::parse("t.yaml", yaml).expect("valid test scenario");
        let out = output(&s, Rc::new(Observer::new()));
        let oracle = Oracle::new(&s, &out);
        let sent = |device: &str, millis: u64| {
            let mut m = undelivered(ALICE, BOB, 0);
            m.sent_at = Duration::from_millis(millis);
            m.sender_device = device.into();
            m
        };
        assert!(
            oracle.at_risk(&sent("webex.0", 173_800)),
            "on its way across the bridge"
        );
        assert!(
            !oracle.at_risk(&sent("jabber-1.0", 173_800)),
            "delivered long before"
        );
        assert!(
            oracle.at_risk(&sent("jabber-1.0", 174_500)),
            "in flight at the break"
        );
        let early = 175_000 - IN_FLIGHT_SLACK.as_millis() as u64 - 1;
        assert!(!oracle.at_risk(&sent("webex.0", early)), "delivered before");
    }

    /// A message a connector node holds when it stops is at risk (explore seed 4801: sent at
    /// 244 s during a KMS outage of 188-282 s, still in the node's backlog when the Expressway
    /// went into its own maintenance mode at 251 s). Held only while a fault kept the node from
    /// passing it on: without the KMS outage, or sent before it, the stop puts only the last
    /// `IN_FLIGHT_SLACK` at risk.
    #[test]
    fn a_message_held_by_a_connector_node_when_it_stops_is_at_risk() {
        let yaml = |faults: &str| {
            format!(
                "name: t\nseed: 1\nduration: 10m\ntopology:\n  imp_clusters: [{{ name: a, nodes: 1 }}]\n  expressway_clusters: [{{ name: a, size: small, nodes: 1, imp_clusters: [a] }}]\nusers: {{ count: 2, jabber: 100%, webex: 100%, hybrid_message: 100% }}\nfaults:\n{faults}"
            )
        };
        let kms = "  - { at: 188s, for: 94s, kms_outage: {} }\n";
        let stop = "  - { at: 251s, for: 29s, expressway_maintenance: { node: exp-a-1 } }\n";
        let risky = |faults: &str, secs: u64| {
            let s = crate::parse("t.yaml", &yaml(faults)).expect("valid test scenario");
            let out = output(&s, Rc::new(Observer::new()));
            Oracle::new(&s, &out).at_risk(&undelivered(ALICE, BOB, secs))
        };
        let both = format!("{kms}{stop}");
        assert!(risky(&both, 244), "held in the backlog at the stop");
        assert!(risky(&both, 190), "held since early in the outage");
        assert!(!risky(&both, 180), "sent before the KMS outage");
        assert!(
            !risky(stop, 244),
            "nothing held it: it was on its way long before"
        );
        assert!(risky(stop, 247), "in flight at the stop");
        let restart = "  - { at: 251s, connector_restart: { node: exp-a-1 } }\n";
        assert!(
            risky(&format!("{kms}{restart}"), 244),
            "a restart loses the backlog too"
        );
        let soon = "  - { at: 300s, for: 29s, expressway_maintenance: { node: exp-a-1 } }\n";
        assert!(
            risky(&format!("{kms}{soon}"), 244),
            "the backlog may wait for a retry"
        );
        let late = "  - { at: 343s, for: 29s, expressway_maintenance: { node: exp-a-1 } }\n";
        assert!(
            !risky(&format!("{kms}{late}"), 244),
            "the backlog was passed on before"
        );
    }

    /// Explore 25446: imp-a-1 stored a message for user00000 (whose Jabber farm had crashed)
    /// at 107.8 s; imp-a-1 failed over automatically at 114 s and never came back. The peer took
    /// the users over, but the stored message was in imp-a-1's database: nothing could hand it
    /// over (a node restarted after a timed failure does, at once). The guides do not say that
    /// IM&P keeps offline messages anywhere but on the node serving the user, so such a Jabber
    /// copy may be lost. It stays due when a Jabber device of the recipient was logged in at
    /// any moment between the send and the loss (it was delivered, or the store was flushed),
    /// when it was sent after the loss (the peer stores it), and when the node restarts.
    #[test]
    fn a_jabber_copy_stored_on_a_node_lost_for_good_may_be_lost_with_it() {
        let yaml = |fault: &str| {
            format!(
                "name: t\nseed: 1\nduration: 20m\ntopology:\n  imp_clusters: [{{ name: a, nodes: 2, prg: {{ high_availability: true }} }}]\nusers: {{ count: 2, jabber: 100% }}\nfaults:\n  - {{ at: 114s, {fault}imp_failover: {{ node: imp-a-1, mode: automatic }} }}\n"
            )
        };
        let s = crate::parse("t.yaml", &yaml("")).expect("valid test scenario");
        let obs = Rc::new(Observer::new());
        let out = output(&s, obs.clone());
        let home = |h: &str| {
            let u = out.users.iter().find(|u| u.home_host(&s) == h);
            u.expect("a user on each node").jid.clone()
        };
        let (lost, survivor) = (home("imp-a-1"), home("imp-a-2"));
        let mut oracle = Oracle::new(&s, &out);
        let session = |at: u64, up: bool| crate::history::observer::SessionEvent {
            at: Duration::from_secs(at),
            user: lost.clone(),
            device: "jabber-1.0".into(),
            up,
            reason: String::new(),
        };
        oracle.add_session(session(11, true));
        oracle.add_session(session(91, false));
        let stored = undelivered(&survivor, &lost, 107);
        assert!(!oracle.at_risk(&stored), "outside every fault's window");
        assert_eq!(oracle.expect(&stored), Expect::AtRisk);
        assert!(oracle.excused(&stored, &[ClientKind::Jabber]));
        assert!(
            !oracle.excused(&stored, &[ClientKind::Webex]),
            "the cloud still carries a Webex copy"
        );
        let delivered_then = undelivered(&survivor, &lost, 80);
        assert_eq!(
            oracle.expect(&delivered_then),
            Expect::Must,
            "logged in at the send"
        );
        let after = undelivered(&survivor, &lost, 400);
        assert_eq!(oracle.expect(&after), Expect::Must, "stored on the peer");
        assert_eq!(
            oracle.expect(&undelivered(&lost, &survivor, 107)),
            Expect::Must,
            "to a user of the surviving node"
        );
        oracle.add_session(session(100, true));
        assert_eq!(
            oracle.expect(&stored),
            Expect::Must,
            "flushed by a login before the loss"
        );

        let s = crate::parse("t.yaml", &yaml("for: 2m, ")).expect("valid test scenario");
        let out = output(&s, obs);
        let mut oracle = Oracle::new(&s, &out);
        oracle.add_session(session(11, true));
        oracle.add_session(session(91, false));
        assert_eq!(
            oracle.expect(&stored),
            Expect::Must,
            "the restarted node hands its store to the peer"
        );
    }

    /// A message sent at `secs` from one user to another, delivered nowhere.
    fn undelivered(from: &str, to: &str, secs: u64) -> MessageRecord {
        MessageRecord {
            from: from.into(),
            to: to.into(),
            client: ClientKind::Jabber,
            sent_at: Duration::from_secs(secs),
            deliveries: Vec::new(),
            carbons: 0,
            sender_device: "d1".into(),
            carbon_seen: Vec::new(),
            refused: Vec::new(),
            body: None,
            held_at_crash: false,
        }
    }

    /// Explore 2743, 2769, 2894, 3238, 3470: a node that fails for good with high
    /// availability off strands its users; the Jabber copy of a message to one of them, sent
    /// long after the failure's risk window, was awaited forever and counted lost. It is not
    /// due (at risk for good); a copy to a user of the surviving node, one sent before the
    /// failure, and the same failure with high availability on (the peer takes the users over
    /// and they log in again) stay due.
    #[test]
    fn a_jabber_copy_to_a_user_of_a_node_down_for_good_without_failover_is_not_due() {
        let yaml = |ha: bool| {
            format!(
                "name: t\nseed: 1\nduration: 20m\ntopology:\n  imp_clusters: [{{ name: a, nodes: 2, prg: {{ high_availability: {ha} }} }}]\nusers: {{ count: 2, jabber: 100% }}\nfaults:\n  - {{ at: 100s, imp_failover: {{ node: imp-a-1, mode: automatic }} }}\n"
            )
        };
        let s = crate::parse("t.yaml", &yaml(false)).expect("valid test scenario");
        let out = output(&s, Rc::new(Observer::new()));
        let home = |h: &str| {
            let u = out.users.iter().find(|u| u.home_host(&s) == h);
            u.expect("a user on each node").jid.clone()
        };
        let (stranded, survivor) = (home("imp-a-1"), home("imp-a-2"));
        let oracle = Oracle::new(&s, &out);
        let late = undelivered(&survivor, &stranded, 900);
        assert!(
            !oracle.at_risk(&late),
            "long after the failure's own window"
        );
        assert_eq!(oracle.expect(&late), Expect::AtRisk);
        assert!(oracle.excused(&late, &[ClientKind::Jabber]));
        assert!(
            !oracle.excused(&late, &[ClientKind::Webex]),
            "the cloud still carries a Webex copy"
        );
        let to_survivor = undelivered(&stranded, &survivor, 900);
        assert_eq!(oracle.expect(&to_survivor), Expect::Must);
        let before = undelivered(&survivor, &stranded, 100 - IN_FLIGHT_SLACK.as_secs() - 1);
        assert_eq!(oracle.expect(&before), Expect::Must);

        let s = crate::parse("t.yaml", &yaml(true)).expect("valid test scenario");
        let out = output(&s, Rc::new(Observer::new()));
        let oracle = Oracle::new(&s, &out);
        assert_eq!(
            oracle.expect(&late),
            Expect::Must,
            "taken over by the PRG peer: the devices log in there again"
        );
    }
}
