//! Stage 8, the checks: each scenario check judged over the run's history, with the oracle.
//! A check never names the world or the runner.

pub mod capacity;
pub mod group_chat;
pub mod migration;
pub mod plaintext;
pub mod presence;
pub mod prg_failover;
pub mod secrets;

use crate::history::History;
use crate::oracle::tally::Tally;
use crate::oracle::{Expect, Oracle, SESSION_SETTLE};
use crate::plan::validate::check_name;
use crate::scenario::{Check, Scenario};
use reports::{CheckResult, Status};
use std::collections::BTreeMap;
use std::time::Duration;

/// Violations quoted in a check's detail.
const EXAMPLES_MAX: usize = 5;

/// Evaluates every check of the scenario.
pub fn evaluate(
    s: &Scenario,
    out: &History,
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
                Check::PrgFailover(e) => crate::checks::prg_failover::check(s, out, e),
                Check::Reached(points) => reached(out, points),
                Check::Presence(_) => crate::checks::presence::check(out).0,
                Check::NoSecretsInLogs => crate::checks::secrets::check(out),
                Check::WithinCapacity => crate::checks::capacity::check(s, out),
                Check::GroupChat => crate::checks::group_chat::check(out),
                Check::Migration(e) => crate::checks::migration::migration(s, out, e),
                Check::StatusPage(_) => crate::checks::migration::status_page(s, out),
                Check::NoPlaintextAtCloud => match &out.plaintext {
                    Some(log) => crate::checks::plaintext::check(log),
                    None => (Status::Fail, "the run has no cloud".into()),
                },
                Check::InteropMatrix(e) => {
                    let m = crate::oracle::interop::matrix(out, &out.bridge);
                    crate::oracle::interop::check(&m, &e.expect)
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

fn no_message_loss(t: &Tally, out: &History) -> (Status, String) {
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
fn liveness(s: &Scenario, out: &History, within: Duration) -> (Status, String) {
    let last_fault_end = s
        .faults
        .iter()
        .map(|f| crate::plan::faults::window(f).1)
        .max()
        .unwrap_or_default();
    let bound = last_fault_end + within;
    let (status, detail) = devices_liveness(out, within, bound);
    match crate::checks::migration::connector_liveness(out, last_fault_end, bound) {
        None => (status, detail),
        Some(Ok(c)) => (status, format!("{detail}; {c}")),
        Some(Err(c)) if status == Status::Pass => (Status::Fail, c),
        Some(Err(c)) => (status, format!("{detail}; {c}")),
    }
}

/// The Jabber half of [`liveness`]: devices up at the end, none logging in after `bound`.
fn devices_liveness(out: &History, within: Duration, bound: Duration) -> (Status, String) {
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

/// (delivery number, send position, id) of the replayed messages of one conversation on one
/// device.
type Replays = Vec<(u64, usize, String)>;

/// MDM (XEP-0280): for every message that must arrive, each of the sender's other devices and
/// each of the recipient's devices that was logged in around the send saw it, directly or as
/// a carbon. Clusters with MDM off are not judged.
fn mdm_copies(s: &Scenario, out: &History) -> (Status, String) {
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
fn offline_storage(s: &Scenario, out: &History) -> (Status, String) {
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
            let pre_12_5 = crate::scenario::imp_version(&c.version).is_some_and(|v| v < (12, 5));
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
fn presence_composition(s: &Scenario, out: &History) -> (Status, String) {
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
fn reached(out: &History, points: &[String]) -> (Status, String) {
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
    use crate::history::observer::Observer;
    use crate::oracle::tally::tally;
    use crate::plan::rng::RngFactory;
    use fakes::observe::{ClientKind, Delivered, PresenceEvent, Recorder as _, Refused, Sent};
    use std::rc::Rc;

    const ALICE: &str = "user00000@example.com";
    const BOB: &str = "user00001@example.com";

    fn scenario(storage: bool, version: &str, devices: u32) -> Scenario {
        let yaml = format!(
            "name: t\nseed: 1\nduration: 1m\ntopology:\n  imp_clusters: [{{ name: a, nodes: 1, version: \"{version}\", offline_storage: {storage} }}]\nusers: {{ count: 2, jabber: 100%, jabber_devices: {devices} }}\n"
        );
        crate::parse("t.yaml", &yaml).expect("valid test scenario")
    }

    fn output(s: &Scenario, obs: Rc<Observer>) -> History {
        let users = crate::plan::topology::population(s, &RngFactory::new(1));
        History::from_history(1, obs, users)
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
}
