//! Sans-IO XEP-0045 group chat of one device (spec 42): creating rooms, inviting, joining on
//! invitation, sending and recording `groupchat` messages, given `now`.

use super::chat::WORDS;
use super::core::JabberCore;
use super::driver::DeviceSpec;
use super::plan::GroupPlan;
use crate::imp::muc::{self, NS_DATA, NS_MUC, NS_MUC_OWNER, NS_MUC_USER};
use crate::observe::{GroupEvent, GroupEventKind};
use connector::io::net::Net;
use connector::proto::xml::Element;
use connector::proto::xmpp::{self, Jid};
use rand::RngExt as _;
use std::collections::BTreeSet;
use std::time::Duration;

/// What a device's group chat has done so far; rooms created survive reconnects, rooms joined
/// do not.
#[derive(Debug, Default)]
pub(super) struct GroupState {
    /// Rooms whose creation was sent (by local part).
    pub(super) created: BTreeSet<String>,
    /// Rooms (bare JIDs) this device is an occupant of now.
    pub(super) joined: BTreeSet<String>,
    /// When the next groupchat message is due.
    pub(super) next_send: Option<Duration>,
    /// Groupchat messages sent.
    pub(super) seq: u64,
}

/// When the device's next group chat action is due: a room to create, or a message to send
/// while it is in a room.
pub(super) fn group_due(g: &GroupPlan, st: &GroupState) -> Option<Duration> {
    let create = g
        .rooms
        .iter()
        .filter(|r| !st.created.contains(&r.name))
        .map(|r| r.at)
        .min();
    let send = st
        .next_send
        .filter(|t| !st.joined.is_empty() && *t < g.stop);
    create.into_iter().chain(send).min()
}

fn group_event<N: Net>(d: &DeviceSpec<N>, room: &str, kind: GroupEventKind) {
    d.recorder.group(
        &d.host,
        GroupEvent {
            room: room.to_string(),
            user: d.jid.bare(),
            device: d.resource.clone(),
            kind,
        },
    );
}

/// The device's nickname in every room: the user's local part.
fn nick<N: Net>(d: &DeviceSpec<N>) -> String {
    d.jid.local.clone().unwrap_or_default()
}

/// Joins `room` (bare JID) as an occupant (XEP-0045 7.2.2).
fn join_room<N: Net>(d: &DeviceSpec<N>, core: &mut JabberCore, room: &str) {
    let p = Element::new("presence", xmpp::NS_CLIENT)
        .with_attr("to", format!("{room}/{}", nick(d)))
        .with_child(Element::new("x", NS_MUC));
    core.send(&p);
}

/// Creates due rooms, and sends the next groupchat message if it is due.
pub(super) fn group_tick<N: Net>(
    now: Duration,
    d: &mut DeviceSpec<N>,
    core: &mut JabberCore,
    st: &mut GroupState,
) {
    let Some(g) = d.group.clone() else { return };
    for r in g.rooms.iter().filter(|r| r.at <= now) {
        if st.created.insert(r.name.clone()) {
            join_room(d, core, &format!("{}@{}", r.name, g.service));
        }
    }
    if st.next_send.is_some_and(|t| t <= now) && now < g.stop && !st.joined.is_empty() {
        send_groupchat(now, d, core, st, &g);
    }
}

fn send_groupchat<N: Net>(
    now: Duration,
    d: &mut DeviceSpec<N>,
    core: &mut JabberCore,
    st: &mut GroupState,
    g: &GroupPlan,
) {
    let rooms: Vec<String> = st.joined.iter().cloned().collect();
    let room = rooms[d.rng.random_range(0..rooms.len())].clone();
    st.seq += 1;
    let id = format!("{}.{}.g{}", nick(d), d.resource, st.seq);
    let words = d.rng.random_range(1..8);
    let body = (0..words)
        .map(|_| WORDS[d.rng.random_range(0..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ");
    let msg = Element::new("message", xmpp::NS_CLIENT)
        .with_attr("type", "groupchat")
        .with_attr("id", id.clone())
        .with_attr("to", room.clone())
        .with_child(Element::new("body", xmpp::NS_CLIENT).with_text(format!("{body} [[{id}]]")));
    core.send(&msg);
    group_event(d, &room, GroupEventKind::Sent { id });
    st.next_send = Some(now + crate::exp_wait(g.mean_interval, &mut d.rng));
}

/// Handles a stanza from the conference service; false when it is not one (or the device
/// has no group plan), for the 1:1 recording to take.
pub(super) fn group_stanza<N: Net>(
    now: Duration,
    d: &mut DeviceSpec<N>,
    core: &mut JabberCore,
    st: &mut GroupState,
    el: &Element,
) -> bool {
    let Some(g) = d.group.clone() else {
        return false;
    };
    let Some(from) = el.attr("from").and_then(|f| Jid::parse(f).ok()) else {
        return false;
    };
    if from.domain != g.service {
        return false;
    }
    let room = from.bare();
    if el.attr("type") == Some("error") {
        let condition = xmpp::error_condition(el).unwrap_or_default().to_string();
        let id = el.attr("id").map(str::to_string);
        let stanza = el.name.clone();
        group_event(
            d,
            &room,
            GroupEventKind::Error {
                stanza,
                id,
                condition,
            },
        );
        return true;
    }
    match el.name.as_str() {
        "presence" => room_presence(now, d, core, st, &g, &room, el),
        "message" => room_message(now, d, core, st, &g, &room, el),
        _ => {} // configuration results
    }
    true
}

fn room_presence<N: Net>(
    now: Duration,
    d: &mut DeviceSpec<N>,
    core: &mut JabberCore,
    st: &mut GroupState,
    g: &GroupPlan,
    room: &str,
    el: &Element,
) {
    let codes = muc::status_codes(el);
    let available = el.attr("type").is_none();
    if !codes.contains(&muc::STATUS_SELF) {
        let text = |name: &str| el.elements().find(|e| e.name == name).map(Element::text);
        let occupant = muc::item_jid(el)
            .and_then(|j| Jid::parse(j).ok())
            .map(|j| j.bare())
            .unwrap_or_default();
        let kind = GroupEventKind::Presence {
            occupant,
            available,
            show: text("show"),
            status: text("status"),
            codes,
        };
        return group_event(d, room, kind);
    }
    if !available {
        st.joined.remove(room);
        return group_event(d, room, GroupEventKind::Left { codes });
    }
    if !st.joined.insert(room.to_string()) {
        return; // our own presence update reflected
    }
    group_event(d, room, GroupEventKind::Joined);
    if st.next_send.is_none_or(|t| t < now) {
        st.next_send = Some(now + crate::exp_wait(g.mean_interval, &mut d.rng));
    }
    let local = room.split('@').next().unwrap_or_default();
    let Some(plan) = g.rooms.iter().find(|r| r.name == local) else {
        return;
    };
    if !codes.contains(&muc::STATUS_CREATED) {
        return;
    }
    configure_created(d, core, room, plan);
}

/// A room this device created: made persistent if planned, and its invitations sent.
fn configure_created<N: Net>(
    d: &DeviceSpec<N>,
    core: &mut JabberCore,
    room: &str,
    plan: &super::plan::RoomPlan,
) {
    if plan.persistent {
        let form = Element::new("x", NS_DATA)
            .with_attr("type", "submit")
            .with_child(
                Element::new("field", NS_DATA)
                    .with_attr("var", muc::FIELD_PERSISTENT)
                    .with_child(Element::new("value", NS_DATA).with_text("1")),
            );
        let iq = Element::new("iq", xmpp::NS_CLIENT)
            .with_attr("type", "set")
            .with_attr("id", core.next_id())
            .with_attr("to", room)
            .with_child(Element::new("query", NS_MUC_OWNER).with_child(form));
        core.send(&iq);
    }
    let persistent = plan.persistent;
    group_event(d, room, GroupEventKind::Created { persistent });
    for invitee in &plan.invitees {
        let m =
            Element::new("message", xmpp::NS_CLIENT)
                .with_attr("id", core.next_id())
                .with_attr("to", room)
                .with_child(Element::new("x", NS_MUC_USER).with_child(
                    Element::new("invite", NS_MUC_USER).with_attr("to", invitee.clone()),
                ));
        core.send(&m);
        let invitee = invitee.clone();
        group_event(d, room, GroupEventKind::Invited { invitee });
    }
}

fn room_message<N: Net>(
    now: Duration,
    d: &mut DeviceSpec<N>,
    core: &mut JabberCore,
    st: &mut GroupState,
    g: &GroupPlan,
    room: &str,
    el: &Element,
) {
    if let Some(inv) = el
        .child("x", NS_MUC_USER)
        .and_then(|x| x.child("invite", NS_MUC_USER))
    {
        let from = inv.attr("from").unwrap_or_default().to_string();
        group_event(d, room, GroupEventKind::InviteReceived { from });
        if now < g.stop && !st.joined.contains(room) {
            join_room(d, core, room);
        }
        return;
    }
    if el.attr("type") != Some("groupchat") {
        return;
    }
    let Some(body) = xmpp::body(el) else { return };
    let from = Jid::parse(el.attr("from").unwrap_or_default())
        .ok()
        .and_then(|j| j.resource)
        .unwrap_or_default();
    let id = crate::clients::webex::tag_of(&body)
        .map(str::to_string)
        .or_else(|| el.attr("id").map(str::to_string))
        .unwrap_or_default();
    group_event(d, room, GroupEventKind::Received { id, from });
}
