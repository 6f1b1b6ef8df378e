//! The `offline_storage` check: offline storage as configured on the recipient's cluster
//! (spec 46-48).

use crate::checks::{Check, Entry, Verdict, boxed, examples};
use crate::history::History;
use crate::history::observer::{MessageRecord, Name, Refusal};
use crate::oracle::Oracle;
use crate::oracle::interop::{self, client_of_device};
use crate::plan::topology::UserSpec;
use crate::scenario::ImpCluster;
use crate::scenario::Scenario;
use fakes::observe::ClientKind;
use reports::Status;
use std::collections::BTreeMap;

/// The `offline_storage` check (no parameters).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineStorage {}

/// How the registry reads it.
pub const ENTRY: Entry = Entry {
    name: "offline_storage",
    bare: true,
    read: boxed::<OfflineStorage>,
};

impl Check for OfflineStorage {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn judge(&self, s: &Scenario, h: &History) -> Verdict {
        offline_storage(s, h)
    }
}

/// (delivery number, send position, id) of the replayed messages of one conversation on one
/// device.
type Replays = Vec<(u64, usize, String)>;

/// A message to a cluster with offline storage off: never replayed, never refused and
/// delivered to a Jabber device; when IM&P had it for the recipient's Jabber (`via_imp`) and
/// no Jabber device of theirs was online, discarded, and refused with the spec's text below
/// 12.5 and silently from 12.5, whatever the recipient's Webex App got through the connector
/// session (spec 46: "the sender will see a 'Message could not be delivered' error"; spec 49).
/// Returns (discarded, refused with the text as it should be).
fn storage_off(
    oracle: &Oracle<'_>,
    (id, m): (&str, &MessageRecord),
    c: &ImpCluster,
    via_imp: bool,
    bad: &mut Vec<String>,
) -> (bool, bool) {
    use fakes::imp::node::UNDELIVERABLE_TEXT;
    let pre_12_5 = crate::scenario::imp_version(&c.version).is_some_and(|v| v < (12, 5));
    if m.deliveries.iter().any(|d| d.delayed) {
        bad.push(format!(
            "{id} replayed from storage with offline storage off"
        ));
    }
    let on_jabber = m
        .deliveries
        .iter()
        .any(|d| client_of_device(&d.device) == ClientKind::Jabber);
    if !m.refused.is_empty() && on_jabber {
        bad.push(format!("{id} refused and delivered to Jabber"));
    }
    if !via_imp || on_jabber || !oracle.jabber_copy_discarded(m) {
        return (false, false);
    }
    let told = m.refused.iter().any(|r| r.text == UNDELIVERABLE_TEXT);
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
        return (true, true);
    }
    (true, false)
}

/// Whether IM&P had `m` for the recipient's Jabber: sent from Jabber, or carried by a
/// connector session ([`interop::expect`] of the Jabber side is must), whether or not the
/// recipient uses Jabber (spec 46: "If the recipient is not using Jabber").
fn via_imp(users: &BTreeMap<&str, &UserSpec>, m: &MessageRecord, out: &History) -> bool {
    let (Some(s), Some(r)) = (users.get(&*m.from), users.get(&*m.to)) else {
        return false;
    };
    // Webex use within 72 h decides only copies bound for Webex: none needed for Jabber's.
    let no_uses = crate::oracle::activity::Uses::default();
    let at = (m.sent_at, &out.bridge, &no_uses);
    interop::expect(s, m.client, r, ClientKind::Jabber, at) == interop::Expect::Must
}

/// Offline storage as configured on the recipient's cluster (spec 46-48).
///
/// Storage on: something was stored and replayed with a delay stamp; replays reach each device
/// in send order (spec 48, Jabber side); nothing was refused. Storage off: nothing is replayed;
/// every message discarded (no Jabber device of the recipient online, a connector session
/// does not count) and outside a fault's risk window was refused with "Message could not be
/// delivered" below 12.5, to a Jabber sender or through the connector to a Webex sender, and
/// silently above; a refused message never reached a Jabber device.
pub fn offline_storage(s: &Scenario, out: &History) -> (Status, String) {
    let oracle = Oracle::new(s, out);
    let users: BTreeMap<&str, &UserSpec> = out.users.iter().map(|u| (u.jid.as_str(), u)).collect();
    let mut n = Counts::default();
    let mut bad = Vec::new();
    // Per (from, to, device): (delivery number, send position, id) of replayed messages.
    let mut replays: BTreeMap<(Name, Name, Name), Replays> = BTreeMap::new();
    out.observer.with_messages(|msgs| {
        for (pos, (id, m)) in msgs.enumerate() {
            let Some(c) = oracle.cluster(&m.to) else {
                continue;
            };
            for d in m.deliveries.iter().filter(|d| d.delayed) {
                n.replayed += 1;
                replays
                    .entry((m.from.clone(), m.to.clone(), d.device.clone()))
                    .or_default()
                    .push((d.number, pos, id.to_string()));
            }
            n.hidden_away += u64::from(hidden_away(&oracle, &users, m));
            if c.offline_storage {
                if let Some(Refusal { text, .. }) = m.refused.first() {
                    bad.push(format!("{id} refused ({text}) with offline storage on"));
                }
                continue;
            }
            let imp = via_imp(&users, m, out);
            let (was_discarded, told) = storage_off(&oracle, (id, m), c, imp, &mut bad);
            n.discarded += u64::from(was_discarded);
            n.refused_ok += u64::from(told);
            let on_webex = m
                .refused
                .iter()
                .any(|r| client_of_device(&r.device) == ClientKind::Webex);
            n.refused_on_webex += u64::from(told && on_webex);
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
    verdict(s, &n, bad)
}

/// What [`offline_storage`] counted.
#[derive(Debug, Default)]
struct Counts {
    replayed: u64,
    discarded: u64,
    /// Discarded and refused with the spec's text.
    refused_ok: u64,
    /// Of those, told in Webex (the connector carried the error back).
    refused_on_webex: u64,
    /// Messages to spec 49's users (hidden status, Jabber only) sent while their Jabber was
    /// offline.
    hidden_away: u64,
}

/// Whether `m` went to a user of spec 49 (Hybrid Message, status hidden in Webex, no Webex
/// App) while no Jabber device of theirs was online.
fn hidden_away(oracle: &Oracle<'_>, users: &BTreeMap<&str, &UserSpec>, m: &MessageRecord) -> bool {
    let Some(u) = users.get(&*m.to) else {
        return false;
    };
    let around = (m.sent_at.saturating_sub(SECOND), m.sent_at + SECOND);
    interop::served(u) && u.hidden && !u.webex && !oracle.jabber_up_over(&m.to, around.0, around.1)
}

/// Around a send, as the oracle judges a device online.
const SECOND: std::time::Duration = std::time::Duration::from_secs(1);

/// The check's verdict from its counts: fails on any problem, or when the configured storage
/// was never exercised.
fn verdict(s: &Scenario, n: &Counts, mut bad: Vec<String>) -> (Status, String) {
    use fakes::imp::node::UNDELIVERABLE_TEXT;
    let any_on = s.topology.imp_clusters.iter().any(|c| c.offline_storage);
    let any_off = s.topology.imp_clusters.iter().any(|c| !c.offline_storage);
    if any_on && n.replayed == 0 {
        bad.push(
            "offline storage on, but no message was stored and replayed: nothing exercised".into(),
        );
    }
    if any_off && !any_on && n.discarded == 0 {
        bad.push("offline storage off, but no message was discarded: nothing exercised".into());
    }
    if !bad.is_empty() {
        return (
            Status::Fail,
            format!("{} problems (e.g. {})", bad.len(), examples(&bad)),
        );
    }
    (
        Status::Pass,
        format!(
            "{} replayed with delay stamps in send order; {} discarded with storage off, {} of them refused with \"{UNDELIVERABLE_TEXT}\" ({} told in Webex through the connector); {} sent to hidden-status Jabber-only users while their Jabber was offline (spec 49)",
            n.replayed, n.discarded, n.refused_ok, n.refused_on_webex, n.hidden_away
        ),
    )
}
