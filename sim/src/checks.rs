//! The oracle: each scenario check evaluated over the run's history.
//!
//! Safety checks look at every message: a message that the rules say must arrive and did not
//! is a loss, a second copy on one device is a duplicate. A message sent while a fault could
//! legitimately swallow it (XMPP without stream management loses what is in flight on a dead
//! TCP stream) is *at risk*: its loss is reported, not failed. The window is the fault plus
//! [`RISK_MARGIN`], the time a client needs to notice a dead stream and log in again.

use crate::observer::MessageRecord;
use crate::runner::RunOutput;
use crate::scenario::{Check, Scenario, validate::check_name};
use reports::{CheckResult, Status};
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
/// Violations quoted in a check's detail.
const EXAMPLES_MAX: usize = 5;

/// Delivery expectation for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Must reach at least one device of the recipient, and each device at most once.
    Must,
    /// May be lost (sent inside a fault's risk window).
    AtRisk,
    /// Legitimately discarded: the recipient's cluster has offline storage off and the
    /// recipient had no session (spec 46).
    Discarded,
}

/// Delivery accounting over the whole history.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Messages sent.
    pub sent: u64,
    /// Messages delivered to at least one recipient device.
    pub delivered: u64,
    /// Must-deliver messages never delivered.
    pub lost: Vec<String>,
    /// At-risk messages never delivered (reported, allowed).
    pub lost_at_risk: u64,
    /// Messages discarded because offline storage is off (allowed, spec 46).
    pub discarded: u64,
    /// Messages that crossed the bridge where spec 33 says nothing carries them (or before
    /// the bridge was up) and arrived nowhere: expected, counted.
    pub not_bridged: u64,
    /// (message, device) pairs delivered more than once.
    pub duplicated: Vec<String>,
    /// Send-to-first-delivery latencies, ms.
    pub latencies_ms: Vec<u64>,
    /// Conversations whose messages arrived out of send order (excluding offline replay).
    pub reordered: Vec<String>,
}

/// Counts deliveries, losses, duplicates and reorderings.
pub fn tally(s: &Scenario, out: &RunOutput) -> Tally {
    let mut t = Tally::default();
    let oracle = Oracle::new(s, out);
    // Per (conversation, device): arrivals, to detect reordering once all are known.
    let mut arrivals = Arrivals::new();
    let mut position = 0usize;
    let hybrid = crate::topology::uses_cloud(s);
    let by_jid: BTreeMap<&str, &crate::topology::UserSpec> =
        out.users.iter().map(|u| (u.jid.as_str(), u)).collect();
    out.observer.with_messages(|msgs| {
        for (id, m) in msgs {
            t.sent += 1;
            if hybrid {
                // Across the bridge, each recipient client is judged (interop oracle).
                let missing = crate::interop::missing(&by_jid, m, &out.bridge);
                if !missing.is_empty() {
                    if oracle.at_risk(m) {
                        t.lost_at_risk += 1;
                    } else {
                        let on: Vec<&str> = missing
                            .iter()
                            .map(|c| match c {
                                fakes::observe::ClientKind::Jabber => "Jabber",
                                fakes::observe::ClientKind::Webex => "Webex",
                            })
                            .collect();
                        t.lost
                            .push(format!("{id} ({}→{} on {})", m.from, m.to, on.join("+")));
                    }
                }
                if m.deliveries.is_empty() {
                    t.not_bridged += u64::from(missing.is_empty());
                    continue;
                }
            } else if m.deliveries.is_empty() {
                match oracle.expect(m) {
                    Expect::Must => t.lost.push(format!("{id} ({}→{})", m.from, m.to)),
                    Expect::AtRisk => t.lost_at_risk += 1,
                    Expect::Discarded => t.discarded += 1,
                }
                continue;
            }
            t.delivered += 1;
            let first = m.deliveries.iter().map(|d| d.1).min().unwrap_or(m.sent_at);
            t.latencies_ms.push((first - m.sent_at).as_millis() as u64);
            let mut devices: Vec<&str> = m.deliveries.iter().map(|d| d.0.as_str()).collect();
            devices.sort_unstable();
            if devices.windows(2).any(|w| w[0] == w[1]) {
                t.duplicated.push(id.to_string());
            }
            position += 1;
            for (device, _, delayed, number) in &m.deliveries {
                let key = (m.from.clone(), m.to.clone(), device.clone());
                let arrival = (*number, position, *delayed, id.to_string());
                arrivals.entry(key).or_default().push(arrival);
            }
        }
    });
    t.reordered = reordered(arrivals);
    t
}

/// (delivery number, send position, delayed, id) per (from, to, device).
type Arrivals =
    std::collections::BTreeMap<(String, String, String), Vec<(u64, usize, bool, String)>>;

/// Messages that arrived on a device after a message sent later in the same conversation.
/// Offline replays (delayed) are exempt: IM&P replays stored messages at login (spec 48).
fn reordered(arrivals: Arrivals) -> Vec<String> {
    let mut out = Vec::new();
    for (_, mut list) in arrivals {
        list.sort_unstable();
        let mut latest_sent = 0usize;
        for (_, sent_pos, delayed, id) in list {
            if delayed {
                continue;
            }
            if sent_pos < latest_sent {
                out.push(id);
            }
            latest_sent = latest_sent.max(sent_pos);
        }
    }
    out
}

/// Evaluates every check of the scenario.
pub fn evaluate(
    s: &Scenario,
    out: &RunOutput,
    t: &Tally,
    p99_ms: f64,
    max_ms: f64,
) -> Vec<CheckResult> {
    s.checks
        .iter()
        .map(|c| {
            let (status, detail) = match c {
                Check::NoMessageLoss => no_message_loss(t, out),
                Check::PerConversationOrder => order(t),
                Check::DeliveryLatency(b) => latency(b, p99_ms, max_ms),
                Check::Liveness(b) => liveness(s, out, b.within.0),
                Check::MdmCopies => mdm_copies(s, out),
                Check::OfflineStorage => offline_storage(s, out),
                Check::PresenceComposition => presence_composition(s, out),
                Check::PrgFailover(e) => crate::prg::check(s, out, e),
                Check::Reached(points) => reached(out, points),
                Check::Presence(_) => crate::presence_check::check(out).0,
                Check::NoSecretsInLogs => crate::secrets_check::check(out),
                Check::WithinCapacity => crate::capacity_check::check(s, out),
                Check::GroupChat => crate::group_chat_check::check(out),
                Check::Migration(e) => crate::migration_check::migration(s, out, e),
                Check::StatusPage(_) => crate::migration_check::status_page(s, out),
                Check::NoPlaintextAtCloud => match &out.plaintext {
                    Some(log) => crate::hybrid::plaintext_check(log),
                    None => (Status::Fail, "the run has no cloud".into()),
                },
                Check::InteropMatrix(e) => {
                    let m = crate::interop::matrix(out, &out.bridge);
                    crate::interop::check(&m, &e.expect)
                }
            };
            CheckResult {
                name: check_name(c).to_string(),
                status,
                detail,
            }
        })
        .collect()
}

fn examples(v: &[String]) -> String {
    v.iter()
        .take(EXAMPLES_MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ")
}

fn no_message_loss(t: &Tally, out: &RunOutput) -> (Status, String) {
    let mut phantom = out.observer.phantom();
    phantom.extend(
        out.observer
            .reused_ids()
            .into_iter()
            .map(|id| format!("{id} (id sent twice)")),
    );
    if t.sent == 0 {
        return (
            Status::Fail,
            "no message was sent: the check exercised nothing".into(),
        );
    }
    if t.lost.is_empty() && t.duplicated.is_empty() && phantom.is_empty() {
        return (
            Status::Pass,
            format!(
                "{} sent, {} delivered, 0 lost, 0 duplicated ({} at risk during faults not delivered, {} discarded with offline storage off)",
                t.sent, t.delivered, t.lost_at_risk, t.discarded
            ),
        );
    }
    let mut parts = Vec::new();
    if !t.lost.is_empty() {
        parts.push(format!(
            "{} lost (e.g. {})",
            t.lost.len(),
            examples(&t.lost)
        ));
    }
    if !t.duplicated.is_empty() {
        parts.push(format!(
            "{} duplicated (e.g. {})",
            t.duplicated.len(),
            examples(&t.duplicated)
        ));
    }
    if !phantom.is_empty() {
        parts.push(format!(
            "{} delivered but never sent (e.g. {})",
            phantom.len(),
            examples(&phantom)
        ));
    }
    (
        Status::Fail,
        format!("{} of {} sent: {}", parts.len(), t.sent, parts.join("; ")),
    )
}

fn order(t: &Tally) -> (Status, String) {
    if t.reordered.is_empty() {
        (
            Status::Pass,
            format!(
                "{} messages, all in send order per conversation and device",
                t.delivered
            ),
        )
    } else {
        (
            Status::Fail,
            format!(
                "{} out of order (e.g. {})",
                t.reordered.len(),
                examples(&t.reordered)
            ),
        )
    }
}

fn latency(b: &crate::scenario::LatencyBound, p99_ms: f64, max_ms: f64) -> (Status, String) {
    let mut bad = Vec::new();
    if let Some(lim) = b.p99_max
        && p99_ms > lim.ms() as f64
    {
        bad.push(format!("p99 {p99_ms} ms > {} ms", lim.ms()));
    }
    if let Some(lim) = b.max
        && max_ms > lim.ms() as f64
    {
        bad.push(format!("max {max_ms} ms > {} ms", lim.ms()));
    }
    if bad.is_empty() {
        (Status::Pass, format!("p99 {p99_ms} ms, max {max_ms} ms"))
    } else {
        (Status::Fail, bad.join("; "))
    }
}

/// Every device that was ever up is up at the end, and came back within `within` of the last
/// fault ending; so is every connector session that was ever open (connector liveness).
fn liveness(s: &Scenario, out: &RunOutput, within: Duration) -> (Status, String) {
    let last_fault_end = s
        .faults
        .iter()
        .map(|f| crate::faults::window(f).1)
        .max()
        .unwrap_or_default();
    let bound = last_fault_end + within;
    let (status, detail) = devices_liveness(out, within, bound);
    match crate::migration_check::connector_liveness(out, last_fault_end, bound) {
        None => (status, detail),
        Some(Ok(c)) => (status, format!("{detail}; {c}")),
        Some(Err(c)) if status == Status::Pass => (Status::Fail, c),
        Some(Err(c)) => (status, format!("{detail}; {c}")),
    }
}

/// The Jabber half of [`liveness`]: devices up at the end, none logging in after `bound`.
fn devices_liveness(out: &RunOutput, within: Duration, bound: Duration) -> (Status, String) {
    let down = out.observer.devices_down();
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

/// Messages in flight when a client farm crashes may be lost: those its users sent just before,
/// and those the node was writing to its users' streams until it saw them close (one tick, a
/// few at most). After that the node knows the users are gone and stores (or refuses).
pub const FARM_CRASH_RISK: Duration = Duration::from_secs(2);
/// A device counts as logged in around a send when its session covers this much on both sides
/// of the send: login completes in a few ticks, carbons are enabled right after binding.
pub const SESSION_SETTLE: Duration = Duration::from_secs(2);

/// What the oracle knows about users and sessions, built once per evaluation.
pub struct Oracle<'a> {
    s: &'a Scenario,
    /// Bare JID → (client-farm host, IM&P cluster index).
    users: BTreeMap<String, (String, usize)>,
    /// (user, device) → session transitions in time order.
    sessions: BTreeMap<(String, String), Vec<(Duration, bool)>>,
    /// When a PRG changed state on its own (an automatic fallback long after its fault).
    prg_changes: Vec<Duration>,
}

impl<'a> Oracle<'a> {
    /// Indexes the population and the session history of `out`.
    pub fn new(s: &'a Scenario, out: &RunOutput) -> Self {
        let users = out
            .users
            .iter()
            .map(|u| {
                (
                    u.jid.clone(),
                    (crate::topology::jabber_farm(u.farm), u.cluster),
                )
            })
            .collect();
        let mut sessions: BTreeMap<(String, String), Vec<(Duration, bool)>> = BTreeMap::new();
        for e in out.observer.sessions() {
            sessions
                .entry((e.user, e.device))
                .or_default()
                .push((e.at, e.up));
        }
        Self {
            s,
            users,
            sessions,
            prg_changes: prg_changes(out),
        }
    }

    /// The IM&P cluster settings of a user's home cluster.
    fn cluster(&self, user: &str) -> Option<&'a crate::scenario::ImpCluster> {
        let (_, c) = self.users.get(user)?;
        self.s.topology.imp_clusters.get(*c)
    }

    /// Whether `user/device` was logged in over the whole of `[from, to]`.
    pub fn device_up_over(&self, user: &str, device: &str, from: Duration, to: Duration) -> bool {
        let Some(events) = self.sessions.get(&(user.to_string(), device.to_string())) else {
            return false;
        };
        // Up at `from` (its last transition by then was a login) and no logout until `to`.
        let up_at_start = events
            .iter()
            .rfind(|(at, _)| *at <= from)
            .is_some_and(|(_, u)| *u);
        let down_inside = events.iter().any(|(at, u)| !*u && *at >= from && *at <= to);
        up_at_start && !down_inside
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
    /// ([`crate::faults::breaks_streams`]). Every other fault puts at risk everything sent
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
        if self.at_risk(m) {
            Expect::AtRisk
        } else {
            Expect::Must
        }
    }

    /// Whether a fault could have swallowed `m` (see [`Oracle::expect`]).
    pub fn at_risk(&self, m: &MessageRecord) -> bool {
        // A PRG moving users (failover or fallback, manual or automatic) ends their streams
        // with `see-other-host`: what is in flight then is lost, as with any broken stream.
        let moved = self
            .prg_changes
            .iter()
            .any(|&t| m.sent_at + PRG_SAMPLE_SLACK >= t && m.sent_at <= t + RISK_MARGIN);
        if moved {
            return true;
        }
        let farm = |u: &str| self.users.get(u).map(|(f, _)| f.as_str());
        let mut risky = self
            .s
            .faults
            .iter()
            .filter(|f| crate::faults::breaks_streams(f));
        risky.any(|f| {
            let (start, end) = crate::faults::window(f);
            let farms_only = f.partition.is_none()
                && match (&f.crash, &f.bounce) {
                    (Some(h), None) | (None, Some(h)) => {
                        h.0.iter().all(|h| h.starts_with("jabber-"))
                    }
                    _ => false,
                };
            if farms_only {
                let hosts = f.crash.as_ref().or(f.bounce.as_ref()).map(|h| &h.0);
                let involved = hosts.is_some_and(|hs| {
                    hs.iter()
                        .any(|h| farm(&m.from) == Some(h.as_str()) || farm(&m.to) == Some(h))
                });
                involved
                    && m.sent_at + Duration::from_secs(1) >= start
                    && m.sent_at <= start + FARM_CRASH_RISK
            } else {
                m.sent_at + IN_FLIGHT_SLACK >= start && m.sent_at <= end + RISK_MARGIN
            }
        })
    }
}

/// PRG states are sampled, so a change is seen up to this long after it happened.
const PRG_SAMPLE_SLACK: Duration = Duration::from_secs(5);

/// The times at which a `prg_state/<host>` series changes value.
fn prg_changes(out: &RunOutput) -> Vec<Duration> {
    let mut at: Vec<Duration> = out
        .series
        .iter()
        .filter(|(name, _)| name.starts_with("prg_state/"))
        .flat_map(|(_, points)| {
            points
                .windows(2)
                .filter(|w| w[0].1 != w[1].1)
                .map(|w| Duration::from_secs_f64(w[1].0))
        })
        .collect();
    at.sort();
    at.dedup();
    at
}

/// (delivery number, send position, id) of the replayed messages of one conversation on one
/// device.
type Replays = Vec<(u64, usize, String)>;

/// MDM (XEP-0280): for every message that must arrive, each of the sender's other devices and
/// each of the recipient's devices that was logged in around the send saw it, directly or as
/// a carbon. Clusters with MDM off are not judged.
fn mdm_copies(s: &Scenario, out: &RunOutput) -> (Status, String) {
    let oracle = Oracle::new(s, out);
    let mdm = |u: &str| oracle.cluster(u).is_some_and(|c| c.mdm);
    let (mut checked, mut carbons_checked) = (0u64, 0u64);
    let mut missing = Vec::new();
    out.observer.with_messages(|msgs| {
        for (id, m) in msgs {
            if oracle.expect(m) != Expect::Must || !mdm(&m.from) || !mdm(&m.to) {
                continue;
            }
            let (from, to) = (
                m.sent_at.saturating_sub(SESSION_SETTLE),
                m.sent_at + SESSION_SETTLE,
            );
            for d in oracle.devices_of(&m.from) {
                if d == m.sender_device || !oracle.device_up_over(&m.from, d, from, to) {
                    continue;
                }
                checked += 1;
                carbons_checked += 1;
                if !m.carbon_seen.iter().any(|(u, dd)| *u == m.from && dd == d) {
                    missing.push(format!("{id}: sender's {}/{d} got no sent carbon", m.from));
                }
            }
            for d in oracle.devices_of(&m.to) {
                if !oracle.device_up_over(&m.to, d, from, to) {
                    continue;
                }
                checked += 1;
                let direct = m.deliveries.iter().any(|x| x.0 == d);
                let carbon = m.carbon_seen.iter().any(|(u, dd)| *u == m.to && dd == d);
                if !direct && !carbon {
                    missing.push(format!("{id}: recipient's {}/{d} never saw it", m.to));
                }
            }
        }
    });
    if checked == 0 {
        return (
            Status::Fail,
            "no (message, device) pair to judge: the check exercised nothing".into(),
        );
    }
    if missing.is_empty() {
        (
            Status::Pass,
            format!(
                "{checked} (message, logged-in device) pairs all saw the message, {carbons_checked} of them through the sender's carbons"
            ),
        )
    } else {
        (
            Status::Fail,
            format!(
                "{} of {checked} (message, device) pairs missing (e.g. {})",
                missing.len(),
                examples(&missing)
            ),
        )
    }
}

/// Offline storage as configured on the recipient's cluster (spec 46-48).
///
/// Storage on: something was stored and replayed with a delay stamp; replays reach each device
/// in send order (spec 48, Jabber side); nothing was refused. Storage off: nothing is replayed;
/// every message discarded (recipient without a session) and outside a fault's risk window was
/// refused with "Message could not be delivered" below 12.5 and silently above; a refused
/// message was never delivered.
fn offline_storage(s: &Scenario, out: &RunOutput) -> (Status, String) {
    use fakes::imp::node::UNDELIVERABLE_TEXT;
    let oracle = Oracle::new(s, out);
    let (mut replayed, mut discarded, mut refused_ok) = (0u64, 0u64, 0u64);
    let mut bad = Vec::new();
    // Per (from, to, device): (delivery number, send position, id) of replayed messages.
    let mut replays: BTreeMap<(String, String, String), Replays> = BTreeMap::new();
    out.observer.with_messages(|msgs| {
        for (pos, (id, m)) in msgs.enumerate() {
            let Some(c) = oracle.cluster(&m.to) else {
                continue;
            };
            let pre_12_5 =
                crate::scenario::validate::imp_version(&c.version).is_some_and(|v| v < (12, 5));
            for (device, _, delayed, number) in &m.deliveries {
                if *delayed {
                    replayed += 1;
                    replays
                        .entry((m.from.clone(), m.to.clone(), device.clone()))
                        .or_default()
                        .push((*number, pos, id.to_string()));
                }
            }
            if c.offline_storage {
                if let Some((_, _, text)) = m.refused.first() {
                    bad.push(format!("{id} refused ({text}) with offline storage on"));
                }
                continue;
            }
            if m.deliveries.iter().any(|d| d.2) {
                bad.push(format!(
                    "{id} replayed from storage with offline storage off"
                ));
            }
            if !m.refused.is_empty() && !m.deliveries.is_empty() {
                bad.push(format!("{id} refused and delivered"));
            }
            if !m.deliveries.is_empty() || oracle.expect(m) != Expect::Discarded {
                continue;
            }
            discarded += 1;
            let told = m.refused.iter().any(|r| r.2 == UNDELIVERABLE_TEXT);
            // Judge the error only when no fault could have cut the sender off.
            let sender_safe = !oracle.at_risk(m);
            if pre_12_5 && !told && sender_safe {
                bad.push(format!(
                    "{id} discarded without \"{UNDELIVERABLE_TEXT}\" to the sender (IM&P {})",
                    c.version
                ));
            } else if !pre_12_5 && !m.refused.is_empty() {
                bad.push(format!(
                    "{id} refused by IM&P {} (>= 12.5 discards silently)",
                    c.version
                ));
            } else if told {
                refused_ok += 1;
            }
        }
    });
    for ((from, to, device), mut list) in replays {
        list.sort_unstable();
        if list.windows(2).any(|w| w[0].1 > w[1].1) {
            bad.push(format!(
                "replay to {to}/{device} of {from}'s messages out of send order"
            ));
        }
    }
    let any_on = s.topology.imp_clusters.iter().any(|c| c.offline_storage);
    let any_off = s.topology.imp_clusters.iter().any(|c| !c.offline_storage);
    if any_on && replayed == 0 {
        bad.push(
            "offline storage on, but no message was stored and replayed: nothing exercised".into(),
        );
    }
    if any_off && !any_on && discarded == 0 {
        bad.push("offline storage off, but no message was discarded: nothing exercised".into());
    }
    if bad.is_empty() {
        (
            Status::Pass,
            format!(
                "{replayed} replayed with delay stamps in send order; {discarded} discarded with storage off, {refused_ok} of them refused with \"{UNDELIVERABLE_TEXT}\""
            ),
        )
    } else {
        (
            Status::Fail,
            format!("{} problems (e.g. {})", bad.len(), examples(&bad)),
        )
    }
}

/// Two device presences of one user published this close together may reach the node in
/// either order (separate connections): either may legitimately be "the most recent".
pub const PRESENCE_RACE: Duration = Duration::from_millis(100);

/// What a contact should see of a user: (resource, show, status), or unavailable.
type Shown = Option<(String, Option<String>, Option<String>)>;

/// Presence composition (spec 53), judged on the final state: for every device logged in at
/// the end and every contact of its user, the last presence it received from that contact is
/// the contact's composed presence: the manual presence if one is set (by a device still
/// logged in), otherwise the latest device presence among the contact's logged-in devices
/// (either of two published within [`PRESENCE_RACE`]), otherwise unavailable.
fn presence_composition(s: &Scenario, out: &RunOutput) -> (Status, String) {
    let oracle = Oracle::new(s, out);
    let up_at_end = |user: &str, device: &str| {
        oracle
            .sessions
            .get(&(user.to_string(), device.to_string()))
            .and_then(|e| e.last())
            .is_some_and(|(_, up)| *up)
    };
    // Per user: the manual presence (device, show, status) and, per device, its latest device
    // presence with its time.
    type Latest = (Duration, Option<String>, Option<String>);
    let mut manual: BTreeMap<String, Shown> = BTreeMap::new();
    let mut device: BTreeMap<String, BTreeMap<String, Latest>> = BTreeMap::new();
    let mut manual_changes = 0u64;
    for (at, p) in out.observer.published_presences() {
        if p.manual {
            manual_changes += 1;
            let v = p.available.then(|| (p.device.clone(), p.show, p.status));
            manual.insert(p.user, v);
        } else {
            device
                .entry(p.user)
                .or_default()
                .insert(p.device, (at, p.show, p.status));
        }
    }
    // Every presence a contact may show for `user` now.
    let candidates = |user: &str| -> (Vec<Shown>, bool) {
        let devs: Vec<(&String, &Latest)> = device
            .get(user)
            .map(|m| m.iter().filter(|(d, _)| up_at_end(user, d)).collect())
            .unwrap_or_default();
        let latest = devs.iter().map(|(_, l)| l.0).max();
        let device_shown: Vec<Shown> = devs
            .iter()
            .filter(|(_, l)| latest.is_some_and(|t| t.saturating_sub(l.0) <= PRESENCE_RACE))
            .map(|(d, l)| Some(((*d).clone(), l.1.clone(), l.2.clone())))
            .collect();
        match manual.get(user).cloned().flatten() {
            Some(m) if up_at_end(user, &m.0) => (vec![Some(m)], !device_shown.is_empty()),
            _ if device_shown.is_empty() => (vec![None], false),
            _ => (device_shown, false),
        }
    };
    let seen = out.observer.seen_presences();
    let (mut judged, mut manual_won, mut with_text) = (0u64, 0u64, 0u64);
    let mut bad = Vec::new();
    for ((viewer, vdev), up) in oracle
        .sessions
        .iter()
        .map(|(k, e)| (k, e.last().is_some_and(|(_, u)| *u)))
    {
        if !up {
            continue;
        }
        for contact in out.contacts.get(viewer).map(Vec::as_slice).unwrap_or(&[]) {
            let (want, manual_over_device) = candidates(contact);
            judged += 1;
            let got = seen.get(&(viewer.clone(), vdev.clone(), contact.clone()));
            let got_shown: Option<Shown> = got.map(|g| {
                g.available.then(|| {
                    let res = g.from.split_once('/').map(|x| x.1).unwrap_or_default();
                    (res.to_string(), g.show.clone(), g.status.clone())
                })
            });
            match got_shown {
                Some(g) if want.contains(&g) => {
                    if manual_over_device {
                        manual_won += 1;
                    }
                    if g.as_ref().is_some_and(|x| x.2.is_some()) {
                        with_text += 1;
                    }
                }
                other => bad.push(format!(
                    "{viewer}/{vdev} shows {contact} as {} instead of {}",
                    describe(other.flatten()),
                    describe(want.first().cloned().flatten())
                )),
            }
        }
    }
    if judged == 0 || manual_changes == 0 {
        return (
            Status::Fail,
            "no contact presence or no manual presence to judge: the check exercised nothing"
                .into(),
        );
    }
    if bad.is_empty() {
        (
            Status::Pass,
            format!(
                "{judged} (device, contact) pairs show the composed presence; {with_text} with status text, {manual_won} where a manual presence beats logged-in devices"
            ),
        )
    } else {
        (
            Status::Fail,
            format!(
                "{} of {judged} (device, contact) pairs wrong (e.g. {})",
                bad.len(),
                examples(&bad)
            ),
        )
    }
}

fn describe(s: Shown) -> String {
    match s {
        None => "unavailable".into(),
        Some((res, show, status)) => format!(
            "{}/{res} {:?}",
            show.as_deref().unwrap_or("available"),
            status.unwrap_or_default()
        ),
    }
}

/// "Sometimes" assertions: every listed coverage point was hit at least once.
fn reached(out: &RunOutput, points: &[String]) -> (Status, String) {
    let cov = out.observer.coverage();
    let count = |p: &String| cov.get(p).copied().unwrap_or(0);
    let counts: Vec<String> = points
        .iter()
        .map(|p| format!("{p}: {}", count(p)))
        .collect();
    let never: Vec<&str> = points
        .iter()
        .filter(|p| count(p) == 0)
        .map(String::as_str)
        .collect();
    if never.is_empty() {
        (Status::Pass, counts.join(", "))
    } else {
        (
            Status::Fail,
            format!(
                "never reached: {} ({})",
                never.join(", "),
                counts.join(", ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    //! Each check judged on hand-written histories: it passes on the right behaviour and fails
    //! on the wrong one. Outside turmoil every event happens at time 0.
    use super::*;
    use crate::observer::Observer;
    use crate::rng::RngFactory;
    use fakes::observe::{ClientKind, Delivered, PresenceEvent, Recorder as _, Refused, Sent};
    use std::rc::Rc;

    const ALICE: &str = "user00000@example.com";
    const BOB: &str = "user00001@example.com";

    fn scenario(storage: bool, version: &str, devices: u32) -> Scenario {
        let yaml = format!(
            "name: t\nseed: 1\nduration: 1m\ntopology:\n  imp_clusters: [{{ name: a, nodes: 1, version: \"{version}\", offline_storage: {storage} }}]\nusers: {{ count: 2, jabber: 100%, jabber_devices: {devices} }}\n"
        );
        crate::scenario::parse("t.yaml", &yaml).expect("valid test scenario")
    }

    fn output(s: &Scenario, obs: Rc<Observer>) -> RunOutput {
        let users = crate::topology::population(s, &RngFactory::new(1));
        RunOutput::from_history(1, obs, users)
    }

    fn up(o: &Observer, user: &str, device: &str) {
        o.session("jabber-1", user, device, true, "logged in");
    }

    fn send(o: &Observer, id: &str, device: &str) {
        o.sent(
            "jabber-1",
            Sent {
                id: id.into(),
                from: ALICE.into(),
                to: BOB.into(),
                client: ClientKind::Jabber,
                device: device.into(),
            },
        );
    }

    fn seen(o: &Observer, id: &str, user: &str, device: &str, delayed: bool, carbon: bool) {
        o.delivered(
            "jabber-1",
            Delivered {
                id: id.into(),
                from: ALICE.into(),
                to: user.into(),
                device: device.into(),
                client: ClientKind::Jabber,
                delayed,
                carbon,
            },
        );
    }

    fn refuse(o: &Observer, id: &str) {
        o.refused(
            "jabber-1",
            Refused {
                id: id.into(),
                user: ALICE.into(),
                device: "d1".into(),
                condition: "service-unavailable".into(),
                text: fakes::imp::node::UNDELIVERABLE_TEXT.into(),
            },
        );
    }

    fn publish(o: &Observer, device: &str, manual: bool, show: &str, status: &str) {
        o.presence_published(
            "jabber-1",
            PresenceEvent {
                user: ALICE.into(),
                device: device.into(),
                from: String::new(),
                manual,
                show: Some(show.into()),
                status: Some(status.into()),
                available: true,
            },
        );
    }

    #[test]
    fn presence_composition_fails_when_a_device_presence_beats_a_manual_one() {
        let s = scenario(true, "14.0", 2);
        let history = |shown_device: &str, shown_status: &str| {
            let o = Rc::new(Observer::new());
            for (u, d) in [(ALICE, "d1"), (ALICE, "d2"), (BOB, "d1")] {
                up(&o, u, d);
            }
            publish(&o, "d1", true, "dnd", "In a meeting");
            publish(&o, "d2", false, "away", "Away @ Webex");
            o.presence_seen(
                "jabber-1",
                PresenceEvent {
                    user: BOB.into(),
                    device: "d1".into(),
                    from: format!("{ALICE}/{shown_device}"),
                    manual: false,
                    show: Some(if shown_device == "d1" { "dnd" } else { "away" }.into()),
                    status: Some(shown_status.into()),
                    available: true,
                },
            );
            let mut out = output(&s, o);
            out.contacts.insert(BOB.into(), vec![ALICE.into()]);
            out
        };
        let (status, detail) = presence_composition(&s, &history("d1", "In a meeting"));
        assert_eq!(status, Status::Pass, "{detail}");
        let (status, detail) = presence_composition(&s, &history("d2", "Away @ Webex"));
        assert_eq!(status, Status::Fail, "{detail}");
        assert!(detail.contains("instead of dnd/d1"), "{detail}");
    }

    #[test]
    fn mdm_copies_fails_when_a_device_misses_its_copy() {
        let s = scenario(true, "14.0", 2);
        let history = |sender_carbon: bool| {
            let o = Rc::new(Observer::new());
            for (u, d) in [(ALICE, "d1"), (ALICE, "d2"), (BOB, "d1"), (BOB, "d2")] {
                up(&o, u, d);
            }
            send(&o, "m1", "d1");
            seen(&o, "m1", BOB, "d1", false, false);
            seen(&o, "m1", BOB, "d2", false, false);
            if sender_carbon {
                seen(&o, "m1", ALICE, "d2", false, true);
            }
            output(&s, o)
        };
        let (status, detail) = mdm_copies(&s, &history(true));
        assert_eq!(status, Status::Pass, "{detail}");
        let (status, detail) = mdm_copies(&s, &history(false));
        assert_eq!(status, Status::Fail, "{detail}");
        assert!(detail.contains("sent carbon"), "{detail}");
    }

    #[test]
    fn discard_with_storage_off_is_allowed_but_a_loss_with_storage_on() {
        // bob has no session; IM&P 12.0 refuses with the spec's text.
        let history = |s: &Scenario, refused: bool| {
            let o = Rc::new(Observer::new());
            up(&o, ALICE, "d1");
            send(&o, "m1", "d1");
            if refused {
                refuse(&o, "m1");
            }
            output(s, o)
        };
        let off = scenario(false, "12.0", 1);
        let out = history(&off, true);
        let t = tally(&off, &out);
        assert_eq!((t.lost.len(), t.discarded), (0, 1));
        assert_eq!(no_message_loss(&t, &out).0, Status::Pass);
        assert_eq!(offline_storage(&off, &out).0, Status::Pass);
        // Pre-12.5 without the error text: offline_storage fails.
        let (status, detail) = offline_storage(&off, &history(&off, false));
        assert_eq!(status, Status::Fail, "{detail}");
        assert!(
            detail.contains("Message could not be delivered"),
            "{detail}"
        );
        // 12.5 and later discard silently: an error is wrong there.
        let off_new = scenario(false, "12.5", 1);
        assert_eq!(
            offline_storage(&off_new, &history(&off_new, false)).0,
            Status::Pass
        );
        assert_eq!(
            offline_storage(&off_new, &history(&off_new, true)).0,
            Status::Fail
        );
        // A refusal while bob had a session is a loss, storage off or not.
        let o = Rc::new(Observer::new());
        up(&o, ALICE, "d1");
        up(&o, BOB, "d1");
        send(&o, "m1", "d1");
        refuse(&o, "m1");
        let out = output(&off, o);
        let t = tally(&off, &out);
        assert_eq!(no_message_loss(&t, &out).0, Status::Fail);
        // The same history with storage on is a loss.
        let on = scenario(true, "14.0", 1);
        let out = history(&on, true);
        let t = tally(&on, &out);
        assert_eq!(t.lost.len(), 1);
        assert_eq!(no_message_loss(&t, &out).0, Status::Fail);
        assert_eq!(offline_storage(&on, &out).0, Status::Fail);
    }

    #[test]
    fn offline_storage_fails_on_a_replay_out_of_order_or_nothing_replayed() {
        let s = scenario(true, "14.0", 1);
        let history = |in_order: bool| {
            let o = Rc::new(Observer::new());
            up(&o, ALICE, "d1");
            send(&o, "m1", "d1");
            send(&o, "m2", "d1");
            up(&o, BOB, "d1");
            let ids = if in_order { ["m1", "m2"] } else { ["m2", "m1"] };
            for id in ids {
                seen(&o, id, BOB, "d1", true, false);
            }
            output(&s, o)
        };
        let (status, detail) = offline_storage(&s, &history(true));
        assert_eq!(status, Status::Pass, "{detail}");
        let (status, detail) = offline_storage(&s, &history(false));
        assert_eq!(status, Status::Fail, "{detail}");
        assert!(detail.contains("out of send order"), "{detail}");
        // Nothing stored at all: the check exercised nothing, which is a failure.
        let o = Rc::new(Observer::new());
        up(&o, ALICE, "d1");
        up(&o, BOB, "d1");
        send(&o, "m1", "d1");
        seen(&o, "m1", BOB, "d1", false, false);
        assert_eq!(offline_storage(&s, &output(&s, o)).0, Status::Fail);
    }

    /// A message still on its way when a stream-breaking fault hits is at risk: sent up to
    /// `IN_FLIGHT_SLACK` before it, during it, or up to `RISK_MARGIN` after it; not earlier
    /// or later.
    #[test]
    fn at_risk_from_just_before_a_fault_to_its_margin_after() {
        let yaml = "name: t\nseed: 1\nduration: 10m\ntopology:\n  imp_clusters: [{ name: a, nodes: 1 }]\nusers: { count: 2, jabber: 100% }\nfaults:\n  - { at: 100s, for: 10s, crash: imp-a-1 }\n";
        let s = crate::scenario::parse("t.yaml", yaml).expect("valid test scenario");
        let out = output(&s, Rc::new(Observer::new()));
        let oracle = Oracle::new(&s, &out);
        let sent_at = |secs: u64| MessageRecord {
            from: ALICE.into(),
            to: BOB.into(),
            client: ClientKind::Jabber,
            sent_at: Duration::from_secs(secs),
            deliveries: Vec::new(),
            carbons: 0,
            sender_device: "d1".into(),
            carbon_seen: Vec::new(),
            refused: Vec::new(),
        };
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
}
