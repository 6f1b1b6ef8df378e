//! A minimal XEP-0045 Multi-User Chat service (`conference.<domain>`), sans-IO like the node.
//!
//! The node hands this module every stanza its users address to the conference service and
//! routes whatever comes back ([`Muc::handle`] and friends return stanzas with `to` set). It has
//! no clock, no RNG and no I/O.
//!
//! ## What is served (XEP-0045)
//! - Rooms are created by joining them (`<presence to='room@conference.<domain>/nick'>` with
//!   `<x xmlns='http://jabber.org/protocol/muc'/>`). A new room is an *instant room* (10.1.2):
//!   usable at once, with the creator as owner; its self-presence carries status 201. Rooms are
//!   non-anonymous (status 100): every occupant presence names the real JID, as Cisco group chat
//!   shows who is in a room.
//! - Occupant presence is broadcast to every occupant (self-presence with status 110); a joiner
//!   first gets the presence of everyone already there (7.2.3), and the (empty) room subject
//!   after its own presence, which ends the join (7.2.15). `type='unavailable'` leaves.
//! - `type='groupchat'` messages from an occupant are reflected to every occupant, the sender
//!   included, from `room@service/nick` (7.4).
//! - Mediated invitations (7.8.2): `<message to='room@service'><x xmlns='…muc#user'><invite
//!   to='bob@domain'/></x></message>` from an occupant becomes a message from the room to the
//!   invitee with `<invite from='inviter'/>`. Invitations carry no `<body>`, so they are never
//!   stored offline: an invitation to a user with no session is lost, as a real client's is
//!   when the invitee is offline.
//! - The owner may make a room persistent with the room configuration form (10.2):
//!   `muc#roomconfig_persistentroom` = `1`. A persistent room outlives its last occupant.
//! - `disco#info` on the service and on rooms.
//!
//! Anything malformed or not served gets an XMPP stanza error and is counted
//! ([`MucStats::errors`]); nothing here panics on input.
//!
//! ## Hybrid Message (spec 42): group chats are never bridged
//! - (a) An invitation to a user who is on Webex (the node reports an open connector session,
//!   [`MucHost::on_webex`]) is dropped silently: the inviter gets no error, the invitee never
//!   hears of it ([`MucStats::invites_dropped_hm`]). Invitations to Jabber users are delivered.
//!   A user with a connector session *and* a Jabber device still counts as on Webex: IM&P took
//!   them out of every room when the session opened (b), so it does not add them back.
//! - (b) When a user's connector session opens ([`Muc::hm_session_opened`], the user switched to
//!   Webex), every occupant of theirs is removed from every ad-hoc (non-persistent) room at
//!   once. The remaining occupants get `type='unavailable'` with status code **333**, the
//!   removed device gets the same plus 110. 333 is XEP-0045's code for an occupant the
//!   *service* removed for a technical reason, not by a moderator; 307 (kicked) would claim a
//!   moderator acted, 321/322 an affiliation or configuration change, neither of which
//!   happened.
//! - (d) In persistent rooms (Cisco's persistent chat) the user stays an occupant, and their
//!   occupant presence follows the user's composed presence from then on
//!   ([`Muc::user_presence`]): the connector publishes "available @ Webex" for a user Active in
//!   Webex, so the room shows them Available although they may never read it.
//! - (c) is on the cloud side: Webex group spaces never reach a connector (`fakes::cloud`).
//!
//! ## Scope
//! One service per node: rooms live on the node that hosts them, and only users that node
//! serves can be occupants or receive invitations (an invitation to a user served by another
//! node is forwarded like any stanza, and that node drops it: the room is not its user). The
//! simulation's group-chat scenario uses a single-node cluster.

use connector::proto::xml::Element;
use connector::proto::xmpp::{self, Jid};
use std::collections::{BTreeMap, BTreeSet};

/// XEP-0045 join payload namespace.
pub const NS_MUC: &str = "http://jabber.org/protocol/muc";
/// XEP-0045 occupant payload namespace (items, status codes, invitations).
pub const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
/// XEP-0045 owner namespace (room configuration).
pub const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
/// XEP-0004 data forms.
pub const NS_DATA: &str = "jabber:x:data";
/// The room configuration field that makes a room persistent (XEP-0045 15.5.3).
pub const FIELD_PERSISTENT: &str = "muc#roomconfig_persistentroom";

/// Rooms per service: a node's worth of ad-hoc group chats and persistent rooms; past this a
/// new room is refused (`resource-constraint`) so a client cannot grow the table without end.
pub const ROOMS_MAX: usize = 10_000;
/// Rooms one user may own (create) at once: a busy user has a few dozen chats open; without a
/// per-user bound one user could take all [`ROOMS_MAX`] rooms from everyone else.
pub const ROOMS_PER_USER_MAX: usize = 100;
/// Occupants per room: Cisco's default maximum room occupancy is in the hundreds; past this a
/// join is refused (`service-unavailable`, XEP-0045 7.2.10).
pub const OCCUPANTS_PER_ROOM_MAX: usize = 500;
/// Largest groupchat `<body>` in bytes: IM&P caps messages at a few thousand characters;
/// 16 KiB is ample and bounds what one message costs times the occupants it reaches.
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024;
/// Longest room name (local part) or nickname in bytes; enough for any real name.
pub const NAME_BYTES_MAX: usize = 128;
/// Invitations in one message: a group-chat dialog invites a handful at a time.
pub const INVITES_PER_MESSAGE_MAX: usize = 50;

/// Status code: this presence is about you (XEP-0045 7.2.2).
pub const STATUS_SELF: u16 = 110;
/// Status code: the room is non-anonymous.
pub const STATUS_NON_ANONYMOUS: u16 = 100;
/// Status code: a new room was created.
pub const STATUS_CREATED: u16 = 201;
/// Status code: removed by the service for a technical reason (here: the user switched to
/// Webex, spec 42 (b)); see the module docs for why not 307.
pub const STATUS_REMOVED_BY_SERVICE: u16 = 333;

/// Counters the run reports and the `group_chat` check reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MucStats {
    /// Rooms created.
    pub rooms_created: u64,
    /// Ad-hoc rooms destroyed when their last occupant left.
    pub rooms_destroyed: u64,
    /// Joins accepted.
    pub joins: u64,
    /// Occupants that left on their own (or whose connection closed).
    pub leaves: u64,
    /// Groupchat messages accepted and reflected.
    pub messages: u64,
    /// Copies of those sent to occupants.
    pub message_copies: u64,
    /// Invitations delivered to Jabber users.
    pub invites_delivered: u64,
    /// Invitations dropped silently because the invitee is on Webex (spec 42 (a)).
    pub invites_dropped_hm: u64,
    /// Invitations to JIDs that are not users of this node (dropped, as XEP-0045 allows).
    pub invites_unknown: u64,
    /// Occupants removed from ad-hoc rooms because their connector session opened (42 (b)).
    pub removed_hm: u64,
    /// Persistent-room occupants whose presence now follows their composed presence (42 (d)).
    pub followed_hm: u64,
    /// Occupant presences broadcast because a followed user's composed presence changed.
    pub followed_presence: u64,
    /// Rooms made persistent by their owner.
    pub made_persistent: u64,
    /// Stanza errors returned (malformed or refused stanzas).
    pub errors: u64,
}

/// What the service needs to know about users from the node.
pub trait MucHost {
    /// The user has an open connector (Hybrid Message) session: they are on Webex.
    fn on_webex(&self, bare: &str) -> bool;
    /// The bare JID is a user this node serves.
    fn is_user(&self, bare: &str) -> bool;
}

/// One occupant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupant {
    /// The occupant's real full JID.
    pub jid: Jid,
    /// `type` of the presence shown (`None`: available; `unavailable`).
    pub kind: Option<String>,
    /// `<show>`, if any.
    pub show: Option<String>,
    /// `<status>`, if any.
    pub status: Option<String>,
    /// The user's composed presence is shown instead of the device's (42 (d)).
    pub follows_user: bool,
}

/// One room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Room {
    /// Survives its last occupant.
    pub persistent: bool,
    /// Bare JID of the owner (the creator).
    pub owner: String,
    /// Occupants by nickname.
    pub occupants: BTreeMap<String, Occupant>,
}

impl Room {
    fn nick_of(&self, full: &Jid) -> Option<String> {
        self.occupants
            .iter()
            .find(|(_, o)| &o.jid == full)
            .map(|(n, _)| n.clone())
    }
}

/// The conference service of one node.
#[derive(Debug, Clone)]
pub struct Muc {
    service: String,
    rooms: BTreeMap<String, Room>,
    stats: MucStats,
    /// Users followed in some persistent room (a superset: entries stay after they leave), so
    /// that the node's every presence change costs a lookup, not a scan of all rooms.
    followed: BTreeSet<String>,
}

/// The `<show>`/`<status>`/`type` of a presence.
fn presence_fields(el: &Element) -> (Option<String>, Option<String>, Option<String>) {
    let text = |name: &str| {
        el.elements()
            .find(|e| e.name == name && e.ns == el.ns)
            .map(Element::text)
    };
    let kind = el.attr("type").map(str::to_string);
    (kind, text("show"), text("status"))
}

impl Muc {
    /// The service `conference.<domain>`.
    pub fn new(domain: &str) -> Self {
        Self {
            service: format!("conference.{domain}"),
            rooms: BTreeMap::new(),
            stats: MucStats::default(),
            followed: BTreeSet::new(),
        }
    }

    /// The service's domain.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Whether a JID (string) is addressed to this service or one of its rooms.
    pub fn serves(&self, to: &str) -> bool {
        Jid::parse(to).is_ok_and(|j| j.domain == self.service)
    }

    /// Counters so far.
    pub fn stats(&self) -> &MucStats {
        &self.stats
    }

    /// A room by name (local part).
    pub fn room(&self, name: &str) -> Option<&Room> {
        self.rooms.get(name)
    }

    /// Every room, by name.
    pub fn rooms(&self) -> &BTreeMap<String, Room> {
        &self.rooms
    }

    /// A stanza from the user `from` (full JID) addressed to the service; returns what to
    /// route, each with `to` set.
    pub fn handle(&mut self, from: &Jid, el: &Element, host: &dyn MucHost) -> Vec<Element> {
        let mut el = el.clone();
        el.set_attr("from", from.to_string());
        let Some(to) = el.attr("to").and_then(|t| Jid::parse(t).ok()) else {
            return self.error(&el, "modify", "jid-malformed", None);
        };
        match el.name.as_str() {
            "presence" => self.on_presence(from, &to, &el),
            "message" => self.on_message(from, &to, &el, host),
            "iq" => self.on_iq(from, &to, &el),
            _ => Vec::new(),
        }
    }

    fn error(&mut self, el: &Element, kind: &str, cond: &str, text: Option<&str>) -> Vec<Element> {
        if el.attr("type") == Some("error") {
            return Vec::new(); // never answer an error with an error (RFC 6120 8.3.1)
        }
        self.stats.errors += 1;
        vec![xmpp::error_reply(el, kind, cond, text)]
    }

    fn room_jid(&self, room: &str) -> String {
        format!("{room}@{}", self.service)
    }

    /// The presence of occupant `nick` of `room` as `to` sees it, with extra status codes.
    fn occupant_presence(&self, room: &str, nick: &str, to: &Jid, codes: &[u16]) -> Element {
        let r = &self.rooms[room];
        let o = &r.occupants[nick];
        let ns = xmpp::NS_CLIENT;
        let mut p = Element::new("presence", ns)
            .with_attr("from", format!("{}/{nick}", self.room_jid(room)))
            .with_attr("to", to.to_string());
        if let Some(k) = &o.kind {
            p.set_attr("type", k.clone());
        }
        if let Some(s) = &o.show {
            p = p.with_child(Element::new("show", ns).with_text(s.clone()));
        }
        if let Some(s) = &o.status {
            p = p.with_child(Element::new("status", ns).with_text(s.clone()));
        }
        let gone = o.kind.as_deref() == Some("unavailable");
        let (affiliation, role) = match (gone, o.jid.bare() == r.owner, r.persistent) {
            (true, true, _) => ("owner", "none"),
            (true, false, true) => ("member", "none"),
            (true, false, false) => ("none", "none"),
            (false, true, _) => ("owner", "moderator"),
            (false, false, true) => ("member", "participant"),
            (false, false, false) => ("none", "participant"),
        };
        let mut x = Element::new("x", NS_MUC_USER).with_child(
            Element::new("item", NS_MUC_USER)
                .with_attr("affiliation", affiliation)
                .with_attr("role", role)
                .with_attr("jid", o.jid.to_string()),
        );
        for c in codes {
            x = x.with_child(Element::new("status", NS_MUC_USER).with_attr("code", c.to_string()));
        }
        p.with_child(x)
    }

    /// Occupant `nick`'s presence to every occupant; `self_codes` go to the occupant itself
    /// (110 is added), `codes` to everyone.
    fn broadcast(&self, room: &str, nick: &str, codes: &[u16], self_codes: &[u16]) -> Vec<Element> {
        let r = &self.rooms[room];
        let me = &r.occupants[nick].jid;
        r.occupants
            .values()
            .map(|o| {
                if &o.jid == me {
                    let mut all = vec![STATUS_SELF];
                    all.extend_from_slice(codes);
                    all.extend_from_slice(self_codes);
                    self.occupant_presence(room, nick, &o.jid, &all)
                } else {
                    self.occupant_presence(room, nick, &o.jid, codes)
                }
            })
            .collect()
    }

    /// Removes `nick` from `room` after telling everyone (it included) it is gone; an ad-hoc
    /// room left empty is destroyed.
    fn remove(&mut self, room: &str, nick: &str, codes: &[u16]) -> Vec<Element> {
        let Some(o) = self
            .rooms
            .get_mut(room)
            .and_then(|r| r.occupants.get_mut(nick))
        else {
            return Vec::new();
        };
        o.kind = Some("unavailable".into());
        o.show = None;
        o.status = None;
        let out = self.broadcast(room, nick, codes, &[]);
        let r = self.rooms.get_mut(room).expect("checked above");
        r.occupants.remove(nick);
        if r.occupants.is_empty() && !r.persistent {
            self.rooms.remove(room);
            self.stats.rooms_destroyed += 1;
        }
        out
    }

    fn on_presence(&mut self, from: &Jid, to: &Jid, el: &Element) -> Vec<Element> {
        let kind = el.attr("type");
        if kind == Some("error") {
            return Vec::new();
        }
        let (Some(room), Some(nick)) = (to.local.clone(), to.resource.clone()) else {
            // XEP-0045 7.2.1: a join without a nickname is `jid-malformed`.
            return self.error(el, "modify", "jid-malformed", Some("room@service/nick"));
        };
        if room.len() > NAME_BYTES_MAX || nick.len() > NAME_BYTES_MAX {
            return self.error(el, "modify", "not-acceptable", Some("name too long"));
        }
        match kind {
            None => self.join_or_update(from, &room, &nick, el),
            Some("unavailable") => {
                let mine = self.rooms.get(&room).and_then(|r| r.nick_of(from));
                match mine {
                    Some(n) => {
                        self.stats.leaves += 1;
                        self.remove(&room, &n, &[])
                    }
                    None => Vec::new(),
                }
            }
            Some(_) => self.error(el, "modify", "bad-request", Some("not a room presence")),
        }
    }

    fn join_or_update(&mut self, from: &Jid, room: &str, nick: &str, el: &Element) -> Vec<Element> {
        let (_, show, status) = presence_fields(el);
        let occupant = Occupant {
            jid: from.clone(),
            kind: None,
            show,
            status,
            follows_user: false,
        };
        let created = !self.rooms.contains_key(room);
        if created && self.rooms.len() >= ROOMS_MAX {
            return self.error(el, "wait", "resource-constraint", Some("too many rooms"));
        }
        if created && self.rooms_owned_by(&from.bare()) >= ROOMS_PER_USER_MAX {
            let text = Some("too many rooms of this user");
            return self.error(el, "wait", "resource-constraint", text);
        }
        let r = self.rooms.get(room);
        if let Some(r) = r {
            // An occupant's presence update (same device, same nick) is broadcast as is.
            if r.occupants.get(nick).is_some_and(|o| &o.jid == from) {
                let r = self.rooms.get_mut(room).expect("present");
                r.occupants.insert(nick.to_string(), occupant);
                return self.broadcast(room, nick, &[], &[]);
            }
            if let Some(refusal) = self.join_refusal(room, from, nick, el) {
                return refusal;
            }
        }
        let owner = from.bare();
        let r = self.rooms.entry(room.to_string()).or_insert_with(|| Room {
            persistent: false,
            owner,
            occupants: BTreeMap::new(),
        });
        r.occupants.insert(nick.to_string(), occupant);
        if created {
            self.stats.rooms_created += 1;
        }
        self.stats.joins += 1;
        self.join_presences(room, nick, from, created)
    }

    /// Rooms `owner` (a bare JID) created that still exist.
    fn rooms_owned_by(&self, owner: &str) -> usize {
        self.rooms.values().filter(|r| r.owner == owner).count()
    }

    /// Why `from` may not join `room` (which exists) as `nick`, as the error to send.
    fn join_refusal(
        &mut self,
        room: &str,
        from: &Jid,
        nick: &str,
        el: &Element,
    ) -> Option<Vec<Element>> {
        let r = self.rooms.get(room)?;
        if r.nick_of(from).is_some() {
            let text = Some("nick changes are not served");
            return Some(self.error(el, "cancel", "not-acceptable", text));
        }
        // The same user may take their nickname over from a stale device (for example
        // after a reconnect, or when a followed persistent-room occupant rejoins).
        let taken = r
            .occupants
            .get(nick)
            .is_some_and(|o| o.jid.bare() != from.bare());
        if taken {
            return Some(self.error(el, "cancel", "conflict", None));
        }
        if !r.occupants.contains_key(nick) && r.occupants.len() >= OCCUPANTS_PER_ROOM_MAX {
            return Some(self.error(el, "wait", "service-unavailable", Some("room is full")));
        }
        None
    }

    /// What a join sends: the joiner first learns who is there (7.2.3), then everyone sees the
    /// joiner, then the joiner gets the (empty) subject.
    fn join_presences(
        &mut self,
        room: &str,
        nick: &str,
        from: &Jid,
        created: bool,
    ) -> Vec<Element> {
        let others: Vec<String> = self
            .rooms
            .get(room)
            .map(|r| r.occupants.keys().filter(|n| *n != nick).cloned().collect())
            .unwrap_or_default();
        let mut out: Vec<Element> = others
            .iter()
            .map(|n| self.occupant_presence(room, n, from, &[]))
            .collect();
        let mut self_codes = vec![STATUS_NON_ANONYMOUS];
        if created {
            self_codes.push(STATUS_CREATED);
        }
        out.extend(self.broadcast(room, nick, &[], &self_codes));
        // The subject ends the join (7.2.15); clients wait for it. Rooms here have none.
        out.push(
            Element::new("message", xmpp::NS_CLIENT)
                .with_attr("type", "groupchat")
                .with_attr("from", self.room_jid(room))
                .with_attr("to", from.to_string())
                .with_child(Element::new("subject", xmpp::NS_CLIENT)),
        );
        out
    }

    fn on_message(
        &mut self,
        from: &Jid,
        to: &Jid,
        el: &Element,
        host: &dyn MucHost,
    ) -> Vec<Element> {
        let kind = el.attr("type").unwrap_or("normal");
        if kind == "error" {
            return Vec::new();
        }
        let Some(room) = to.local.clone() else {
            return self.error(el, "cancel", "service-unavailable", None);
        };
        if to.resource.is_some() {
            // Private messages between occupants are not served.
            return self.error(el, "cancel", "feature-not-implemented", None);
        }
        let Some(nick) = self.rooms.get(&room).and_then(|r| r.nick_of(from)) else {
            // XEP-0045 7.4: only occupants may speak or invite.
            let cond = if self.rooms.contains_key(&room) {
                "not-acceptable"
            } else {
                "item-not-found"
            };
            return self.error(el, "cancel", cond, None);
        };
        if kind == "groupchat" {
            return self.groupchat(&room, &nick, el);
        }
        match el.child("x", NS_MUC_USER) {
            Some(x) if x.child("invite", NS_MUC_USER).is_some() => {
                let x = x.clone();
                self.invite(&room, from, &x, el, host)
            }
            _ => self.error(
                el,
                "modify",
                "bad-request",
                Some("expected groupchat or an invitation"),
            ),
        }
    }

    fn groupchat(&mut self, room: &str, nick: &str, el: &Element) -> Vec<Element> {
        let body = xmpp::body(el);
        if body.as_ref().is_some_and(|b| b.len() > MESSAGE_BYTES_MAX) {
            return self.error(el, "modify", "policy-violation", Some("message too large"));
        }
        self.stats.messages += 1;
        let from = format!("{}/{nick}", self.room_jid(room));
        let r = &self.rooms[room];
        let out: Vec<Element> = r
            .occupants
            .values()
            .filter(|o| o.kind.is_none())
            .map(|o| {
                let mut m = el.clone();
                m.set_attr("from", from.clone());
                m.set_attr("to", o.jid.to_string());
                m
            })
            .collect();
        self.stats.message_copies += out.len() as u64;
        out
    }

    fn invite(
        &mut self,
        room: &str,
        from: &Jid,
        x: &Element,
        el: &Element,
        host: &dyn MucHost,
    ) -> Vec<Element> {
        let invites: Vec<&Element> = x
            .elements()
            .filter(|e| e.is("invite", NS_MUC_USER))
            .collect();
        if invites.len() > INVITES_PER_MESSAGE_MAX {
            return self.error(el, "modify", "bad-request", Some("too many invitations"));
        }
        let mut targets = Vec::new();
        for i in &invites {
            match i.attr("to").map(Jid::parse) {
                Some(Ok(j)) if j.local.is_some() => {
                    targets.push((j.bare(), i.child("reason", NS_MUC_USER).map(Element::text)))
                }
                _ => {
                    return self.error(
                        el,
                        "modify",
                        "jid-malformed",
                        Some("invite needs to='user@domain'"),
                    );
                }
            }
        }
        let mut out = Vec::new();
        for (invitee, reason) in targets {
            if host.on_webex(&invitee) {
                // Spec 42 (a): silently not added; the inviter is not told.
                self.stats.invites_dropped_hm += 1;
                continue;
            }
            if !host.is_user(&invitee) {
                self.stats.invites_unknown += 1;
                continue;
            }
            self.stats.invites_delivered += 1;
            let mut inv = Element::new("invite", NS_MUC_USER).with_attr("from", from.to_string());
            if let Some(r) = reason {
                inv = inv.with_child(Element::new("reason", NS_MUC_USER).with_text(r));
            }
            let mut m = Element::new("message", xmpp::NS_CLIENT)
                .with_attr("from", self.room_jid(room))
                .with_attr("to", invitee)
                .with_child(Element::new("x", NS_MUC_USER).with_child(inv));
            if let Some(id) = el.attr("id") {
                m.set_attr("id", id);
            }
            out.push(m);
        }
        out
    }

    fn on_iq(&mut self, from: &Jid, to: &Jid, el: &Element) -> Vec<Element> {
        let kind = el.attr("type").unwrap_or("");
        if !matches!(kind, "get" | "set") {
            return Vec::new();
        }
        let payload = el.elements().next();
        let (name, ns) = payload.map_or(("", ""), |p| (p.name.as_str(), p.ns.as_str()));
        match (to.local.as_deref(), name, ns, kind) {
            (None, "query", xmpp::NS_DISCO_INFO, "get") => {
                let q = disco("conference", "text", "hmsim group chat", &[NS_MUC]);
                vec![xmpp::iq_result(el, Some(q))]
            }
            (Some(room), "query", xmpp::NS_DISCO_INFO, "get") => match self.rooms.get(room) {
                Some(r) => {
                    let life = if r.persistent {
                        "muc_persistent"
                    } else {
                        "muc_temporary"
                    };
                    let q = disco(
                        "conference",
                        "text",
                        room,
                        &[NS_MUC, life, "muc_nonanonymous"],
                    );
                    vec![xmpp::iq_result(el, Some(q))]
                }
                None => self.error(el, "cancel", "item-not-found", None),
            },
            (Some(room), "query", NS_MUC_OWNER, _) => {
                let q = payload.expect("matched a payload").clone();
                self.owner_query(room, from, el, &q)
            }
            _ => self.error(el, "cancel", "service-unavailable", None),
        }
    }

    /// Room configuration (XEP-0045 10.2): only the persistence field is served.
    fn owner_query(&mut self, room: &str, from: &Jid, el: &Element, q: &Element) -> Vec<Element> {
        let Some(r) = self.rooms.get(room) else {
            return self.error(el, "cancel", "item-not-found", None);
        };
        if r.owner != from.bare() {
            return self.error(el, "auth", "forbidden", None);
        }
        if el.attr("type") == Some("get") {
            let form = Element::new("x", NS_DATA)
                .with_attr("type", "form")
                .with_child(field(r.persistent));
            return vec![xmpp::iq_result(
                el,
                Some(Element::new("query", NS_MUC_OWNER).with_child(form)),
            )];
        }
        let Some(x) = q
            .child("x", NS_DATA)
            .filter(|x| x.attr("type") == Some("submit"))
        else {
            return self.error(
                el,
                "modify",
                "bad-request",
                Some("expected a submitted data form"),
            );
        };
        let value = x
            .elements()
            .find(|f| f.name == "field" && f.attr("var") == Some(FIELD_PERSISTENT))
            .and_then(|f| f.child("value", NS_DATA))
            .map(Element::text);
        if let Some(v) = value {
            let on = matches!(v.trim(), "1" | "true");
            let r = self.rooms.get_mut(room).expect("checked above");
            if on && !r.persistent {
                self.stats.made_persistent += 1;
            }
            r.persistent = on;
        }
        vec![xmpp::iq_result(el, None)]
    }

    /// The user `bare` switched to Webex (their connector session opened): out of every
    /// ad-hoc room at once (42 (b)); in persistent rooms their presence follows `composed`,
    /// their composed presence, from now on (42 (d)).
    pub fn hm_session_opened(&mut self, bare: &str, composed: &Element) -> Vec<Element> {
        let mut out = Vec::new();
        let mut removals = Vec::new();
        let mut followed = Vec::new();
        for (name, r) in &self.rooms {
            for (nick, o) in r.occupants.iter().filter(|(_, o)| o.jid.bare() == bare) {
                if r.persistent {
                    if !o.follows_user {
                        followed.push((name.clone(), nick.clone()));
                    }
                } else {
                    removals.push((name.clone(), nick.clone()));
                }
            }
        }
        for (room, nick) in removals {
            self.stats.removed_hm += 1;
            out.extend(self.remove(&room, &nick, &[STATUS_REMOVED_BY_SERVICE]));
        }
        if !followed.is_empty() {
            self.followed.insert(bare.to_string());
        }
        for (room, nick) in &followed {
            self.stats.followed_hm += 1;
            if let Some(o) = self
                .rooms
                .get_mut(room)
                .and_then(|r| r.occupants.get_mut(nick))
            {
                o.follows_user = true;
            }
        }
        out.extend(self.user_presence(bare, composed));
        out
    }

    /// The composed presence of `bare` changed: occupants that follow it (persistent rooms,
    /// 42 (d)) show it to their rooms. A followed user gone unavailable leaves.
    pub fn user_presence(&mut self, bare: &str, composed: &Element) -> Vec<Element> {
        if !self.followed.contains(bare) {
            return Vec::new();
        }
        let (kind, show, status) = presence_fields(composed);
        let targets: Vec<(String, String)> = self
            .rooms
            .iter()
            .flat_map(|(name, r)| {
                r.occupants
                    .iter()
                    .filter(|(_, o)| o.follows_user && o.jid.bare() == bare)
                    .map(|(nick, _)| (name.clone(), nick.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut out = Vec::new();
        for (room, nick) in targets {
            if kind.as_deref() == Some("unavailable") {
                self.stats.leaves += 1;
                out.extend(self.remove(&room, &nick, &[]));
                continue;
            }
            let o = self
                .rooms
                .get_mut(&room)
                .and_then(|r| r.occupants.get_mut(&nick))
                .expect("collected above");
            if (&o.show, &o.status) == (&show, &status) {
                continue;
            }
            o.show.clone_from(&show);
            o.status.clone_from(&status);
            self.stats.followed_presence += 1;
            out.extend(self.broadcast(&room, &nick, &[], &[]));
        }
        out
    }

    /// The device `full` went away (its connection closed): it leaves every room, except
    /// where it stands for a followed user (42 (d): the room keeps showing the user).
    pub fn resource_gone(&mut self, full: &Jid) -> Vec<Element> {
        let targets: Vec<(String, String)> = self
            .rooms
            .iter()
            .filter_map(|(name, r)| {
                let nick = r.nick_of(full)?;
                (!r.occupants[&nick].follows_user).then(|| (name.clone(), nick))
            })
            .collect();
        let mut out = Vec::new();
        for (room, nick) in targets {
            self.stats.leaves += 1;
            out.extend(self.remove(&room, &nick, &[]));
        }
        out
    }
}

fn disco(category: &str, kind: &str, name: &str, features: &[&str]) -> Element {
    let mut q = Element::new("query", xmpp::NS_DISCO_INFO).with_child(
        Element::new("identity", xmpp::NS_DISCO_INFO)
            .with_attr("category", category)
            .with_attr("type", kind)
            .with_attr("name", name),
    );
    for f in features {
        q = q.with_child(Element::new("feature", xmpp::NS_DISCO_INFO).with_attr("var", *f));
    }
    q
}

fn field(persistent: bool) -> Element {
    Element::new("field", NS_DATA)
        .with_attr("var", FIELD_PERSISTENT)
        .with_attr("type", "boolean")
        .with_child(Element::new("value", NS_DATA).with_text(if persistent { "1" } else { "0" }))
}

/// Status codes of a MUC presence (`<x xmlns='…muc#user'><status code='…'/>`).
pub fn status_codes(p: &Element) -> Vec<u16> {
    p.child("x", NS_MUC_USER)
        .map(|x| {
            x.elements()
                .filter(|e| e.is("status", NS_MUC_USER))
                .filter_map(|e| e.attr("code")?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The real JID an occupant presence names (non-anonymous rooms), if any.
pub fn item_jid(p: &Element) -> Option<&str> {
    p.child("x", NS_MUC_USER)?
        .child("item", NS_MUC_USER)?
        .attr("jid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector::proto::xml::parse_document;

    struct Host {
        webex: Vec<&'static str>,
    }

    impl MucHost for Host {
        fn on_webex(&self, bare: &str) -> bool {
            self.webex.contains(&bare)
        }
        fn is_user(&self, bare: &str) -> bool {
            bare.ends_with("@example.com")
        }
    }

    const HOST: Host = Host { webex: Vec::new() };

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    fn stanza(xml: &str) -> Element {
        parse_document(xml.as_bytes()).unwrap()
    }

    fn join(m: &mut Muc, who: &str, room: &str, nick: &str) -> Vec<Element> {
        let p = stanza(&format!(
            "<presence xmlns='jabber:client' to='{room}@conference.example.com/{nick}'><x xmlns='{NS_MUC}'/></presence>"
        ));
        m.handle(&jid(who), &p, &HOST)
    }

    fn to_of(out: &[Element]) -> Vec<String> {
        out.iter()
            .map(|e| e.attr("to").unwrap().to_string())
            .collect()
    }

    #[test]
    fn join_broadcasts_presence_and_groupchat_reaches_every_occupant() {
        let mut m = Muc::new("example.com");
        let out = join(&mut m, "alice@example.com/d", "r1", "alice");
        assert_eq!(out.len(), 2);
        assert_eq!(status_codes(&out[0]), vec![110, 100, 201]);
        assert!(out[1].child("subject", xmpp::NS_CLIENT).is_some());
        let out = join(&mut m, "bob@example.com/d", "r1", "bob");
        // Bob learns of Alice, then both see Bob, then Bob gets the subject.
        assert_eq!(
            to_of(&out),
            vec![
                "bob@example.com/d",
                "alice@example.com/d",
                "bob@example.com/d",
                "bob@example.com/d"
            ]
        );
        assert_eq!(item_jid(&out[0]), Some("alice@example.com/d"));
        let msg = stanza(
            "<message xmlns='jabber:client' type='groupchat' id='m1' to='r1@conference.example.com'><body>hi</body></message>",
        );
        let out = m.handle(&jid("bob@example.com/d"), &msg, &HOST);
        assert_eq!(
            to_of(&out),
            vec!["alice@example.com/d", "bob@example.com/d"]
        );
        assert!(
            out.iter()
                .all(|e| e.attr("from") == Some("r1@conference.example.com/bob"))
        );
        let leave = stanza(
            "<presence xmlns='jabber:client' type='unavailable' to='r1@conference.example.com/bob'/>",
        );
        let out = m.handle(&jid("bob@example.com/d"), &leave, &HOST);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|e| e.attr("type") == Some("unavailable")));
        assert_eq!(m.room("r1").unwrap().occupants.len(), 1);
        let out = m.handle(&jid("alice@example.com/d"), &stanza("<presence xmlns='jabber:client' type='unavailable' to='r1@conference.example.com/alice'/>"), &HOST);
        assert_eq!(out.len(), 1);
        assert!(m.room("r1").is_none(), "an empty ad-hoc room is destroyed");
        assert_eq!(
            (
                m.stats().joins,
                m.stats().messages,
                m.stats().message_copies
            ),
            (2, 1, 2)
        );
    }

    #[test]
    fn invitations_reach_jabber_users_and_silently_skip_webex_users() {
        let mut m = Muc::new("example.com");
        join(&mut m, "alice@example.com/d", "r1", "alice");
        let host = Host {
            webex: vec!["wes@example.com"],
        };
        let inv = stanza(&format!(
            "<message xmlns='jabber:client' id='i1' to='r1@conference.example.com'><x xmlns='{NS_MUC_USER}'><invite to='bob@example.com'><reason>hi</reason></invite><invite to='wes@example.com'/><invite to='x@elsewhere.org'/></x></message>"
        ));
        let out = m.handle(&jid("alice@example.com/d"), &inv, &host);
        assert_eq!(
            to_of(&out),
            vec!["bob@example.com"],
            "no error to the inviter either"
        );
        let i = out[0]
            .child("x", NS_MUC_USER)
            .unwrap()
            .child("invite", NS_MUC_USER)
            .unwrap();
        assert_eq!(i.attr("from"), Some("alice@example.com/d"));
        assert_eq!(out[0].attr("from"), Some("r1@conference.example.com"));
        let s = m.stats();
        assert_eq!(
            (s.invites_delivered, s.invites_dropped_hm, s.invites_unknown),
            (1, 1, 1)
        );
    }

    #[test]
    fn switching_to_webex_leaves_ad_hoc_rooms_with_333_and_is_followed_in_persistent_ones() {
        let mut m = Muc::new("example.com");
        join(&mut m, "alice@example.com/d", "adhoc", "alice");
        join(&mut m, "bob@example.com/j", "adhoc", "bob");
        join(&mut m, "alice@example.com/d", "pers", "alice");
        join(&mut m, "bob@example.com/j", "pers", "bob");
        let form = stanza(&format!(
            "<iq xmlns='jabber:client' type='set' id='c1' to='pers@conference.example.com'><query xmlns='{NS_MUC_OWNER}'><x xmlns='{NS_DATA}' type='submit'><field var='{FIELD_PERSISTENT}'><value>1</value></field></x></query></iq>"
        ));
        let out = m.handle(&jid("alice@example.com/d"), &form, &HOST);
        assert_eq!(out[0].attr("type"), Some("result"));
        assert!(m.room("pers").unwrap().persistent);
        let webex = stanza(
            "<presence xmlns='jabber:client' from='bob@example.com/hm-webex'><status>Available @ Webex</status></presence>",
        );
        let out = m.hm_session_opened("bob@example.com", &webex);
        let removed: Vec<&Element> = out
            .iter()
            .filter(|e| e.attr("type") == Some("unavailable"))
            .collect();
        assert_eq!(
            removed.len(),
            2,
            "alice and bob's device hear of the removal"
        );
        for r in &removed {
            assert!(status_codes(r).contains(&STATUS_REMOVED_BY_SERVICE));
        }
        assert!(!m.room("adhoc").unwrap().occupants.contains_key("bob"));
        let shown: Vec<&Element> = out
            .iter()
            .filter(|e| e.attr("from") == Some("pers@conference.example.com/bob"))
            .collect();
        assert_eq!(shown.len(), 2);
        assert!(shown.iter().all(|e| {
            e.attr("type").is_none()
                && e.elements()
                    .any(|c| c.name == "status" && c.text() == "Available @ Webex")
        }));
        // The Jabber device going away does not take the followed user out of the room.
        assert!(m.resource_gone(&jid("bob@example.com/j")).is_empty());
        assert!(m.room("pers").unwrap().occupants.contains_key("bob"));
        let s = m.stats();
        assert_eq!(
            (s.removed_hm, s.followed_hm, s.followed_presence),
            (1, 1, 1)
        );
    }

    #[test]
    fn malformed_and_refused_stanzas_get_errors_and_are_counted() {
        let mut m = Muc::new("example.com");
        let cases = [
            "<presence xmlns='jabber:client' to='r@conference.example.com'/>".to_string(),
            "<message xmlns='jabber:client' type='groupchat' to='r@conference.example.com'><body>x</body></message>".into(),
            "<iq xmlns='jabber:client' type='get' id='q' to='conference.example.com'><query xmlns='jabber:iq:version'/></iq>".into(),
            format!("<presence xmlns='jabber:client' to='r@conference.example.com/{}'/>", "n".repeat(NAME_BYTES_MAX + 1)),
        ];
        for c in &cases {
            let out = m.handle(&jid("alice@example.com/d"), &stanza(c), &HOST);
            assert_eq!(out.len(), 1, "{c}");
            assert_eq!(out[0].attr("type"), Some("error"), "{c}");
        }
        join(&mut m, "alice@example.com/d", "r", "alice");
        let big = format!(
            "<message xmlns='jabber:client' type='groupchat' to='r@conference.example.com'><body>{}</body></message>",
            "x".repeat(MESSAGE_BYTES_MAX + 1)
        );
        let out = m.handle(&jid("alice@example.com/d"), &stanza(&big), &HOST);
        assert_eq!(xmpp::error_condition(&out[0]), Some("policy-violation"));
        let out = join(&mut m, "eve@example.com/d", "r", "alice");
        assert_eq!(xmpp::error_condition(&out[0]), Some("conflict"));
        let bad = format!(
            "<message xmlns='jabber:client' to='r@conference.example.com'><x xmlns='{NS_MUC_USER}'><invite/></x></message>"
        );
        let out = m.handle(&jid("alice@example.com/d"), &stanza(&bad), &HOST);
        assert_eq!(xmpp::error_condition(&out[0]), Some("jid-malformed"));
        assert_eq!(m.stats().errors, 7);
    }

    #[test]
    fn rooms_and_occupants_are_bounded() {
        let mut m = Muc::new("example.com");
        for i in 0..OCCUPANTS_PER_ROOM_MAX {
            join(
                &mut m,
                &format!("u{i}@example.com/d"),
                "big",
                &format!("u{i}"),
            );
        }
        let out = join(&mut m, "late@example.com/d", "big", "late");
        assert_eq!(
            xmpp::error_condition(out.last().unwrap()),
            Some("service-unavailable")
        );
        for i in 1..ROOMS_MAX {
            m.rooms.insert(format!("r{i}"), Room::default());
        }
        let out = join(&mut m, "x@example.com/d", "one-more", "x");
        assert_eq!(xmpp::error_condition(&out[0]), Some("resource-constraint"));
    }

    #[test]
    fn one_user_cannot_take_every_room() {
        let mut m = Muc::new("example.com");
        for i in 0..ROOMS_PER_USER_MAX {
            let out = join(&mut m, "greedy@example.com/d", &format!("g{i}"), "greedy");
            assert_eq!(xmpp::error_condition(&out[0]), None, "room {i}");
        }
        let out = join(&mut m, "greedy@example.com/d", "one-more", "greedy");
        assert_eq!(xmpp::error_condition(&out[0]), Some("resource-constraint"));
        let out = join(&mut m, "other@example.com/d", "mine", "other");
        assert_eq!(
            xmpp::error_condition(&out[0]),
            None,
            "another user still creates rooms"
        );
    }
}
