//! Delivery accounting over the whole history: what was sent, delivered, lost (must-deliver
//! only), at risk, discarded, duplicated and reordered, and the latency percentiles.

use crate::history::{Bridge, History};
use crate::oracle::interop::{client_of_device, session_key};
use crate::oracle::{Expect, Oracle};
use crate::plan::topology::UserSpec;
use crate::scenario::Scenario;
use fakes::observe::ClientKind;
use reports::Percentiles;
use std::collections::BTreeMap;
use std::time::Duration;

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
    /// Every message in send order: when it was sent (simulated seconds) and its one verdict.
    /// The verdicts partition the messages, so their counts add up to `sent`.
    pub verdicts: Vec<(f64, Verdict)>,
}

/// What became of one message, one verdict per message (a message delivered to one client
/// and missing on another is lost or at risk, not delivered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered everywhere it had to go; latency to its first delivery, ms.
    Delivered {
        /// Send-to-first-delivery latency, simulated ms.
        latency_ms: u64,
    },
    /// Had to arrive and did not (everywhere): fails `no_message_loss`.
    Lost,
    /// Did not arrive (everywhere), sent close enough to a fault that loss is allowed (or to a
    /// user whose home node is down for good with no PRG failover).
    AtRisk,
    /// Nothing carries it by design (spec 33, or the bridge was not up yet): arrived nowhere.
    NotBridged,
    /// Discarded because offline storage is off (spec 46).
    Discarded,
}

impl Verdict {
    /// The category name the console and the record use.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Delivered { .. } => "delivered",
            Verdict::Lost => "lost",
            Verdict::AtRisk => "at risk undelivered",
            Verdict::NotBridged => "not bridged by design",
            Verdict::Discarded => "discarded by offline policy",
        }
    }

    /// The timeline's view of the verdict.
    pub fn fate(self) -> reports::Fate {
        match self {
            Verdict::Delivered { latency_ms } => reports::Fate::Delivered { latency_ms },
            Verdict::Lost => reports::Fate::Lost,
            Verdict::AtRisk => reports::Fate::AtRisk,
            Verdict::NotBridged | Verdict::Discarded => reports::Fate::NotExpected,
        }
    }
}

impl Tally {
    /// How many messages got each verdict, in the order of [`Verdict::label`]'s list; the
    /// counts add up to `sent`.
    pub fn breakdown(&self) -> [(&'static str, u64); 5] {
        let mut counts = [
            (Verdict::Delivered { latency_ms: 0 }.label(), 0),
            (Verdict::Lost.label(), 0),
            (Verdict::AtRisk.label(), 0),
            (Verdict::NotBridged.label(), 0),
            (Verdict::Discarded.label(), 0),
        ];
        for (_, v) in &self.verdicts {
            let i = match v {
                Verdict::Delivered { .. } => 0,
                Verdict::Lost => 1,
                Verdict::AtRisk => 2,
                Verdict::NotBridged => 3,
                Verdict::Discarded => 4,
            };
            counts[i].1 += 1;
        }
        counts
    }
}

/// Counts deliveries, losses, duplicates and reorderings.
pub fn tally(s: &Scenario, out: &History) -> Tally {
    let mut t = Tally::default();
    let oracle = Oracle::new(s, out);
    // Per (conversation, device): arrivals, to detect reordering once all are known.
    let mut arrivals = Arrivals::new();
    let mut position = 0usize;
    let hybrid = crate::plan::topology::uses_cloud(s);
    let by_jid: BTreeMap<&str, &UserSpec> = out.users.iter().map(|u| (u.jid.as_str(), u)).collect();
    let uses = crate::oracle::activity::Uses::of(out);
    let sessions = Sessions::of(out);
    out.observer.with_messages(|msgs| {
        for (id, m) in msgs {
            t.sent += 1;
            let sent_s = m.sent_at.as_secs_f64();
            if hybrid {
                // Across the bridge, each recipient client is judged (interop oracle).
                let (missing, discarded) = oracle.missing(&by_jid, m, &out.bridge, &uses);
                let at_risk = oracle.excused(m, &missing);
                if !t.bridged(id, m, &missing, (at_risk, discarded)) {
                    continue;
                }
            } else if m.deliveries.is_empty() {
                let verdict = t.undelivered(id, m, oracle.expect(m));
                t.verdicts.push((sent_s, verdict));
                continue;
            } else {
                t.verdicts.push((
                    sent_s,
                    Verdict::Delivered {
                        latency_ms: first_ms(m),
                    },
                ));
            }
            t.delivered += 1;
            t.latencies_ms.push(first_ms(m));
            let mut devices: Vec<&str> = m.deliveries.iter().map(|d| d.device.as_str()).collect();
            devices.sort_unstable();
            if devices.windows(2).any(|w| w[0] == w[1]) {
                t.duplicated.push(id.to_string());
            }
            position += 1;
            let stored = sessions.none_at(&by_jid, &m.to, m.sent_at);
            for d in &m.deliveries {
                let key = (m.from.clone(), m.to.clone(), d.device.clone());
                let webex = client_of_device(&d.device) == ClientKind::Webex;
                let replay = d.delayed || (webex && stored);
                let arrival = (d.number, position, replay, id.to_string());
                arrivals.entry(key).or_default().push(arrival);
            }
        }
    });
    t.reordered = reordered(arrivals);
    t
}

impl Tally {
    /// Judges a message across the bridge by the recipient clients it `missing`; false when it
    /// arrived on no client at all (nothing more to count for it). `discarded`: IM&P
    /// legitimately discarded its Jabber copy (storage off, spec 46), so arriving nowhere is
    /// the offline policy, not the bridge's design.
    fn bridged(
        &mut self,
        id: &str,
        m: &crate::history::observer::MessageRecord,
        missing: &[fakes::observe::ClientKind],
        (at_risk, discarded): (bool, bool),
    ) -> bool {
        let sent_s = m.sent_at.as_secs_f64();
        if at_risk {
            self.lost_at_risk += 1;
            self.verdicts.push((sent_s, Verdict::AtRisk));
        } else if !missing.is_empty() {
            self.verdicts.push((sent_s, Verdict::Lost));
            let on: Vec<&str> = missing
                .iter()
                .map(|c| match c {
                    fakes::observe::ClientKind::Jabber => "Jabber",
                    fakes::observe::ClientKind::Webex => "Webex",
                })
                .collect();
            self.lost
                .push(format!("{id} ({}→{} on {})", m.from, m.to, on.join("+")));
        }
        if m.deliveries.is_empty() {
            if missing.is_empty() && discarded {
                self.discarded += 1;
                self.verdicts.push((sent_s, Verdict::Discarded));
            } else if missing.is_empty() {
                self.not_bridged += 1;
                self.verdicts.push((sent_s, Verdict::NotBridged));
            }
            return false;
        }
        if missing.is_empty() {
            let latency_ms = first_ms(m);
            self.verdicts
                .push((sent_s, Verdict::Delivered { latency_ms }));
        }
        true
    }
}

impl Tally {
    /// Counts a message that arrived nowhere (without a bridge) by what the oracle expected.
    fn undelivered(
        &mut self,
        id: &str,
        m: &crate::history::observer::MessageRecord,
        expect: Expect,
    ) -> Verdict {
        match expect {
            Expect::Must => {
                self.lost.push(format!("{id} ({}→{})", m.from, m.to));
                Verdict::Lost
            }
            Expect::AtRisk => {
                self.lost_at_risk += 1;
                Verdict::AtRisk
            }
            Expect::Discarded => {
                self.discarded += 1;
                Verdict::Discarded
            }
        }
    }
}

/// Send-to-first-delivery latency of a delivered message, ms.
fn first_ms(m: &crate::history::observer::MessageRecord) -> u64 {
    let first = m.deliveries.iter().map(|d| d.at).min().unwrap_or(m.sent_at);
    (first - m.sent_at).as_millis() as u64
}

/// Who had an IM&P session when: Jabber devices logged in (bare JID → device → up/down
/// transitions, from the clients) and connector sessions open (the runner's sampling).
struct Sessions<'a> {
    jabber: BTreeMap<String, BTreeMap<String, Vec<(Duration, bool)>>>,
    bridge: &'a Bridge,
}

impl<'a> Sessions<'a> {
    fn of(out: &'a History) -> Self {
        let mut jabber: BTreeMap<String, BTreeMap<String, Vec<(Duration, bool)>>> = BTreeMap::new();
        for e in out.observer.sessions() {
            if client_of_device(&e.device) == ClientKind::Jabber {
                let devices = jabber.entry(e.user).or_default();
                devices.entry(e.device).or_default().push((e.at, e.up));
            }
        }
        Sessions {
            jabber,
            bridge: &out.bridge,
        }
    }

    /// Whether the recipient `to` (bare JID) had no session on IM&P at all at `at`: no Jabber
    /// device logged in and no connector session open. IM&P then keeps the message in offline
    /// storage (spec 46) and replays it later; a replay into Webex may come out of sequence,
    /// a known issue of the product: "When a Message Service user comes back online in Webex,
    /// stored messages are replayed in Webex but they may be out of sequence" (spec 48).
    fn none_at(&self, by_jid: &BTreeMap<&str, &UserSpec>, to: &str, at: Duration) -> bool {
        let up_at =
            |ev: &[(Duration, bool)]| ev.iter().rfind(|(t, _)| *t <= at).is_some_and(|e| e.1);
        let jabber_up = self
            .jabber
            .get(to)
            .is_some_and(|devices| devices.values().any(|ev| up_at(ev)));
        let key = by_jid.get(to).and_then(|u| session_key(u));
        let bridged = key
            .and_then(|k| self.bridge.get(k))
            .is_some_and(|ev| up_at(ev));
        !jabber_up && !bridged
    }
}

/// (delivery number, send position, replayed, id) per (from, to, device).
type Arrivals =
    std::collections::BTreeMap<(String, String, String), Vec<(u64, usize, bool, String)>>;

/// Messages that arrived on a device after a message sent later in the same conversation.
/// Offline replays are exempt: IM&P replays stored messages at login, delay-stamped in
/// Jabber, and into Webex possibly out of sequence (spec 48).
fn reordered(arrivals: Arrivals) -> Vec<String> {
    let mut out = Vec::new();
    for (_, mut list) in arrivals {
        list.sort_unstable();
        let mut latest_sent = 0usize;
        for (_, sent_pos, replay, id) in list {
            if replay {
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

/// The largest latency the histogram holds, in ms: 30 days, longer than any scenario's
/// duration plus drain (offline storage replays after 80 h of absence must not saturate).
pub const LATENCY_MS_MAX: u64 = 30 * 86_400_000;

/// Latency percentiles from an HDR histogram (3 significant digits, 1 ms to
/// [`LATENCY_MS_MAX`]); a larger sample is recorded at the bound and counted as `clamped`.
pub fn percentiles(latencies_ms: &[u64]) -> Percentiles {
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, LATENCY_MS_MAX, 3)
        .expect("static bounds are valid");
    let mut clamped = 0;
    for &l in latencies_ms {
        clamped += u64::from(l > h.high());
        h.saturating_record(l.max(1));
    }
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: h.len(),
        p50: h.value_at_quantile(0.50) as f64,
        p90: h.value_at_quantile(0.90) as f64,
        p99: h.value_at_quantile(0.99) as f64,
        p999: h.value_at_quantile(0.999) as f64,
        max: h.max() as f64,
        mean: (h.mean() * 10.0).round() / 10.0,
        clamped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::observer::Observer;
    use crate::plan::rng::RngFactory;
    use fakes::observe::{Delivered, Recorder as _, Sent};
    use std::rc::Rc;

    const ALICE: &str = "user00000@example.com";
    const BOB: &str = "user00001@example.com";

    /// Alice (Jabber) sends m1 then m2 to Bob; Bob's Webex App gets m2 first. Bob has no
    /// Jabber device; his connector session opens at `bridge_open_s`.
    fn webex_gets_m2_before_m1(bridge_open_s: u64) -> Tally {
        let yaml = "name: t\nseed: 1\nduration: 1m\ntopology:\n  imp_clusters: [{ name: a }]\n  expressway_clusters: [{ name: a, size: small, imp_clusters: [a] }]\nusers: { count: 2, hybrid_message: 100%, without_email: 0% }\n";
        let s = crate::parse("t.yaml", yaml).expect("valid test scenario");
        let o = Rc::new(Observer::new());
        o.session("jabber-1", ALICE, "jabber-1.0", true, "logged in");
        for id in ["m1", "m2"] {
            let client = ClientKind::Jabber;
            let (from, to, device, body) = (ALICE.into(), BOB.into(), "jabber-1.0".into(), None);
            o.sent(
                "jabber-1",
                Sent {
                    id: id.into(),
                    from,
                    to,
                    client,
                    device,
                    body,
                },
            );
        }
        for id in ["m2", "m1"] {
            let (from, to, device, client) = (
                ALICE.into(),
                BOB.into(),
                "webex.0".into(),
                ClientKind::Webex,
            );
            let (delayed, carbon, body) = (false, false, None);
            let d = Delivered {
                id: id.into(),
                from,
                to,
                device,
                client,
                delayed,
                carbon,
                body,
            };
            o.delivered("webex-1", d);
        }
        let users = crate::plan::topology::population(&s, &RngFactory::new(1));
        let mut out = History::from_history(1, o, users);
        out.bridge
            .insert(BOB.into(), vec![(Duration::from_secs(bridge_open_s), true)]);
        tally(&s, &out)
    }

    /// Explore seeds 3753 and 4499: messages sent while the recipient had no session on IM&P
    /// (no Jabber, connector session not open) were stored offline and replayed into Webex
    /// after a later live message at the PRG handover; the guide's known issue (spec 48).
    #[test]
    fn a_webex_replay_of_a_message_stored_offline_is_not_reordered_but_a_live_one_is() {
        let replayed = webex_gets_m2_before_m1(5);
        assert_eq!(replayed.delivered, 2);
        assert!(replayed.reordered.is_empty(), "{:?}", replayed.reordered);
        let live = webex_gets_m2_before_m1(0);
        assert_eq!(live.reordered, vec!["m1".to_string()]);
    }

    /// Explore 4396: a post the cloud refused for good is dropped by the sender's Webex App
    /// (it does not send it forever). What the user sent is judged, not what the client did
    /// with it: a new post meant for Bob's Jabber that never arrived is lost, whatever the
    /// client noted.
    #[test]
    fn a_post_the_senders_client_dropped_is_still_lost() {
        let yaml = "name: t\nseed: 1\nduration: 1m\ntopology:\n  imp_clusters: [{ name: a }]\n  expressway_clusters: [{ name: a, size: small, imp_clusters: [a] }]\nusers: { count: 2, hybrid_message: 100%, without_email: 0% }\n";
        let s = crate::parse("t.yaml", yaml).expect("valid test scenario");
        let o = Rc::new(Observer::new());
        o.session("jabber-1", BOB, "jabber-1.0", true, "logged in");
        o.session("webex-1", ALICE, "webex.0", true, "logged in");
        let sent = Sent {
            id: "user00000.webex.0.1".into(),
            from: ALICE.into(),
            to: BOB.into(),
            client: ClientKind::Webex,
            device: "webex.0".into(),
            body: None,
        };
        o.sent("webex-1", sent);
        o.note("webex: post refused for good, dropped");
        let users = crate::plan::topology::population(&s, &RngFactory::new(1));
        let mut out = History::from_history(1, o, users);
        for u in [ALICE, BOB] {
            out.bridge.insert(u.into(), vec![(Duration::ZERO, true)]);
        }
        let t = tally(&s, &out);
        assert_eq!(t.sent, 1);
        assert_eq!(t.lost.len(), 1, "{t:?}");
        assert!(
            t.lost[0].starts_with("user00000.webex.0.1 "),
            "{:?}",
            t.lost
        );
    }

    /// An 80 h offline delivery was reported as 36.6 h when the histogram stopped at a day.
    #[test]
    fn an_80_hour_latency_is_reported_as_80_hours_and_a_longer_one_than_the_bound_is_counted() {
        let h80_ms = 80 * 3_600_000;
        let p = percentiles(&[20, h80_ms]);
        assert!(
            (p.max - h80_ms as f64).abs() / (h80_ms as f64) < 0.001,
            "{p:?}"
        );
        assert_eq!(p.clamped, 0);
        let p = percentiles(&[20, 40 * 86_400_000]);
        assert_eq!(p.clamped, 1);
        assert!(p.max >= 29.9 * 86_400_000.0, "{p:?}");
    }
}
