//! Sans-IO 1:1 chat and presence of one device: the next message or presence change (given
//! `now`), and what a received stanza means for the observer.

use super::core::JabberCore;
use super::driver::DeviceSpec;
use crate::clients::body::body_digest;
use crate::observe::{ClientKind, Delivered, PresenceEvent, Refused, Sent};
use connector::io::net::Net;
use connector::proto::xml::Element;
use connector::proto::xmpp::{self, Jid};
use rand::RngExt as _;
use std::time::Duration;

/// Sends the next planned message (if still within the plan) and schedules the one after.
pub(super) fn send_next<N: Net>(
    now: Duration,
    d: &mut DeviceSpec<N>,
    core: &mut JabberCore,
    next_send: &mut Option<Duration>,
    seq: &mut u64,
) {
    let Some(plan) = d.plan.clone() else { return };
    if now >= plan.stop || plan.contacts.is_empty() {
        *next_send = None;
        return;
    }
    let to = plan.contacts[d.rng.random_range(0..plan.contacts.len())].clone();
    *seq += 1;
    let user = d.jid.local.clone().unwrap_or_default();
    // The resource names the device and its incarnation, so ids stay unique across restarts.
    let id = format!("{user}.{}.{seq}", d.resource);
    let body = match &plan.body {
        Some(b) => b.draw(&mut d.rng),
        None => {
            let words = d.rng.random_range(1..12);
            (0..words)
                .map(|_| WORDS[d.rng.random_range(0..WORDS.len())])
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    // The tag lets the observer follow the message across the bridge, where ids change.
    let body = format!("{body} [[{id}]]");
    let msg = xmpp::chat_message(xmpp::NS_CLIENT, &id, None, &to, &body);
    core.send(&msg);
    d.recorder.sent(
        &d.host,
        Sent {
            id,
            from: d.jid.bare(),
            to,
            client: ClientKind::Jabber,
            device: d.resource.clone(),
            body: Some(body_digest(&body)),
        },
    );
    *next_send = Some(now + crate::exp_wait(plan.mean_interval, &mut d.rng));
}

/// Shows a device presence may carry; `None` is plain available.
const DEVICE_SHOWS: [Option<&str>; 3] = [None, Some("away"), Some("xa")];
/// Shows a user may set by hand.
const MANUAL_SHOWS: [&str; 3] = ["dnd", "away", "chat"];

/// Publishes the next presence change of the device's plan and schedules the one after.
pub(super) fn publish_presence<N: Net>(
    now: Duration,
    d: &mut DeviceSpec<N>,
    core: &mut JabberCore,
) {
    let Some(p) = d.presence.as_mut() else { return };
    p.count += 1;
    let manual = p.rng.random_range(0.0..1.0) < p.manual_share;
    // One manual change in four clears the manual presence (back to automatic).
    let clear = manual && p.rng.random_range(0..4) == 0;
    let show = if manual {
        Some(MANUAL_SHOWS[p.rng.random_range(0..MANUAL_SHOWS.len())])
    } else {
        DEVICE_SHOWS[p.rng.random_range(0..DEVICE_SHOWS.len())]
    };
    let label = match show {
        None | Some("chat") => "Available",
        Some("dnd") => "Do not disturb",
        Some(_) => "Away",
    };
    let status = format!(
        "{label} @ Jabber {} #{}{}",
        d.resource,
        p.count,
        if manual { " (manual)" } else { "" }
    );
    let mut el = Element::new("presence", xmpp::NS_CLIENT);
    if clear {
        el.set_attr("type", "unavailable");
    } else {
        if let Some(s) = show {
            el = el.with_child(Element::new("show", xmpp::NS_CLIENT).with_text(s));
        }
        el = el.with_child(Element::new("status", xmpp::NS_CLIENT).with_text(status.clone()));
    }
    let kind = if manual { "manual" } else { "device" };
    el = el.with_child(
        Element::new("hm-presence", crate::imp::node::NS_HM_PRESENCE).with_attr("kind", kind),
    );
    core.send(&el);
    p.next = now + crate::exp_wait(p.mean_interval, &mut p.rng);
    d.recorder.presence_published(
        &d.host,
        PresenceEvent {
            user: d.jid.bare(),
            device: d.resource.clone(),
            from: String::new(),
            manual,
            show: (!clear).then(|| show.map(str::to_string)).flatten(),
            status: (!clear).then_some(status),
            available: !clear,
        },
    );
}

pub(super) fn record_stanza<N: Net>(d: &DeviceSpec<N>, el: &Element) {
    match el.name.as_str() {
        "presence" => record_presence(d, el),
        "message" if el.attr("type") == Some("error") => record_refused(d, el),
        "message" => record_message(d, el),
        _ => {}
    }
}

/// A contact's available or unavailable presence.
fn record_presence<N: Net>(d: &DeviceSpec<N>, el: &Element) {
    let kind = el.attr("type");
    let Some(from) = el.attr("from") else { return };
    if !matches!(kind, None | Some("unavailable")) {
        return;
    }
    let text = |name: &str| el.elements().find(|e| e.name == name).map(Element::text);
    d.recorder.presence_seen(
        &d.host,
        PresenceEvent {
            user: d.jid.bare(),
            device: d.resource.clone(),
            from: from.to_string(),
            manual: false,
            show: text("show"),
            status: text("status"),
            available: kind.is_none(),
        },
    );
}

/// One of our messages bounced (spec 46: "Message could not be delivered").
fn record_refused<N: Net>(d: &DeviceSpec<N>, el: &Element) {
    let Some(id) = el.attr("id") else { return };
    d.recorder.refused(
        &d.host,
        Refused {
            id: id.to_string(),
            user: d.jid.bare(),
            device: d.resource.clone(),
            condition: xmpp::error_condition(el).unwrap_or_default().to_string(),
            text: xmpp::error_text(el).unwrap_or_default(),
        },
    );
}

/// A chat message (or a carbon of one): delivered, or a notice counted.
fn record_message<N: Net>(d: &DeviceSpec<N>, el: &Element) {
    let (inner, carbon) = match el.child_ns(xmpp::NS_CARBONS) {
        Some(c) => match c
            .child("forwarded", xmpp::NS_FORWARD)
            .and_then(|f| f.elements().find(|e| e.name == "message"))
        {
            Some(m) => (m, true),
            None => return,
        },
        None => (el, false),
    };
    let Some(body) = xmpp::body(inner) else {
        return;
    };
    if is_notice(d, inner, &body) {
        return;
    }
    // Bridged messages carry their original id as a `[[tag]]` (the stanza id is the
    // connector's); untagged texts are followed by the stanza id.
    let tagged = crate::clients::webex::tag_of(&body).map(str::to_string);
    let (Some(id), Some(from)) = (tagged.as_deref().or(inner.attr("id")), inner.attr("from"))
    else {
        d.recorder.note("jabber: message without id or from");
        return;
    };
    let from = Jid::parse(from)
        .map(|j| j.bare())
        .unwrap_or_else(|_| from.to_string());
    // The user whose device saw it: for a `sent` carbon that is the sender itself, not the
    // inner message's recipient.
    let to = if carbon {
        d.jid.bare()
    } else {
        inner
            .attr("to")
            .and_then(|t| Jid::parse(t).ok())
            .map(|j| j.bare())
            .unwrap_or_else(|| d.jid.bare())
    };
    let delayed = inner.child("delay", xmpp::NS_DELAY).is_some();
    d.recorder.delivered(
        &d.host,
        Delivered {
            id: id.to_string(),
            from,
            to,
            device: d.resource.clone(),
            client: ClientKind::Jabber,
            delayed,
            carbon,
            body: Some(body_digest(&body)),
        },
    );
}

/// Counts the connector's notices for Webex deletes and edits (spec 39-40) and deleted files
/// (spec 43), which are not messages anyone sent, and file links; true for a notice (not to
/// be delivered).
fn is_notice<N: Net>(d: &DeviceSpec<N>, inner: &Element, body: &str) -> bool {
    if body.contains(" used Webex App to delete") {
        d.recorder.note(if body.contains("the file") {
            "jabber: file delete notice received"
        } else {
            "jabber: delete notice received"
        });
        return true;
    }
    if inner.child("x", xmpp::NS_OOB).is_some() {
        d.recorder.note("jabber: file link received");
    }
    false
}

/// Vocabulary for generated message bodies.
pub(super) const WORDS: [&str; 16] = [
    "hello", "meeting", "at", "three", "can", "you", "review", "the", "draft", "thanks", "see",
    "later", "lunch", "call", "me", "ok",
];
