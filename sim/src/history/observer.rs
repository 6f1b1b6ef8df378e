//! The observer: the history of what clients sent and received (like Jepsen's history), and
//! the run's trace digest.
//!
//! It is the only memory shared between simulated hosts, and it only records: nothing in it
//! is ever read by a host. Events are appended in simulated-time order because the simulation
//! is single-threaded and hosts run in a fixed order within each tick.

use fakes::cloud::stored::Names;
use fakes::observe::{
    ClientKind, Delivered, GROUP_SPACE_TAG_PREFIX, GroupEvent, PostFate, PresenceEvent, Recorder,
    Refused, Sent,
};
use sha2::{Digest as _, Sha256};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A user, device, resource or presence text as the history keeps it: one shared copy of
/// each for the whole run (a user is named in every message, delivery and presence view of
/// theirs; a run of 5,000 users keeps some 10,000 messages and 40,000 views).
pub type Name = Arc<str>;

/// One message in the history.
#[derive(Debug, Clone)]
pub struct MessageRecord {
    /// Sender.
    pub from: Name,
    /// Recipient.
    pub to: Name,
    /// Sending client.
    pub client: ClientKind,
    /// Simulated send time.
    pub sent_at: Duration,
    /// Each delivery to a recipient device.
    pub deliveries: Vec<Delivery>,
    /// Carbon copies seen by devices (sender's or recipient's other devices).
    pub carbons: u32,
    /// The device (resource) it was sent from.
    pub sender_device: Name,
    /// Each carbon copy and the device that saw it, for the MDM check.
    pub carbon_seen: Vec<CarbonCopy>,
    /// Error stanzas the sender got back for it.
    pub refused: Vec<Refusal>,
    /// Digest of the text sent (`None`: not compared).
    pub body: Option<u64>,
    /// Its client still held it unsent when the client's host went down, the cloud having
    /// answered every attempt with an error ([`PostFate::Kept`]): it never reached the cloud,
    /// so the bridge cannot have lost it (explore seed 5779).
    pub held_at_crash: bool,
}

/// One delivery of a message to a device of its recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The device (resource).
    pub device: Name,
    /// Simulated time.
    pub at: Duration,
    /// Replayed from offline storage with a delay stamp.
    pub delayed: bool,
    /// Deliveries of the whole run are numbered in the order they happened.
    pub number: u64,
}

/// A carbon copy of a message (XEP-0280) seen by a device of its sender or recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarbonCopy {
    /// The user whose device saw it.
    pub user: Name,
    /// The device.
    pub device: Name,
}

/// An error stanza the sender got back for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The sender's device that got it.
    pub device: String,
    /// The XMPP error condition.
    pub condition: String,
    /// The error text.
    pub text: String,
}

/// A session transition of a device.
#[derive(Debug, Clone)]
pub struct SessionEvent {
    /// Time.
    pub at: Duration,
    /// User.
    pub user: String,
    /// Device.
    pub device: String,
    /// Up or down.
    pub up: bool,
    /// Why.
    pub reason: String,
}

/// The last presence a device saw from a contact ([`PresenceEvent`] as seen, less what its
/// key says: the viewer, the viewing device and the contact).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenPresence {
    /// The resource of the full JID it came from (the composed presence's resource; empty
    /// when it came from the bare JID).
    pub resource: Name,
    /// `<show>`, absent for plain available.
    pub show: Option<Name>,
    /// `<status>` text.
    pub status: Option<Name>,
    /// False for `type='unavailable'`.
    pub available: bool,
}

/// A presence a device saw, kept in the order seen ([`PresenceEvent`] as seen, by shared
/// names).
#[derive(Debug, Clone)]
struct LoggedPresence {
    at: Duration,
    viewer: Name,
    device: Name,
    /// The full JID it came from.
    from: Name,
    show: Option<Name>,
    status: Option<Name>,
    available: bool,
    manual: bool,
}

impl LoggedPresence {
    /// The presence as the device reported it.
    fn event(&self) -> (Duration, PresenceEvent) {
        let text = |t: &Option<Name>| t.as_deref().map(str::to_string);
        let ev = PresenceEvent {
            user: self.viewer.to_string(),
            device: self.device.to_string(),
            from: self.from.to_string(),
            manual: self.manual,
            show: text(&self.show),
            status: text(&self.status),
            available: self.available,
        };
        (self.at, ev)
    }
}

/// The last presence each device saw from each contact, borrowed from the history
/// ([`Observer::with_seen_presences`]).
pub struct SeenPresences<'a> {
    map: &'a BTreeMap<(Name, Name, Name), SeenPresence>,
    names: &'a Names,
}

impl<'a> SeenPresences<'a> {
    /// What `viewer`'s `device` last saw from `contact` (a bare JID), if it saw any.
    pub fn get(&self, viewer: &str, device: &str, contact: &str) -> Option<&'a SeenPresence> {
        let name = |n: &str| self.names.find(n).cloned();
        self.map
            .get(&(name(viewer)?, name(device)?, name(contact)?))
    }

    /// Every (viewer, device, contact) and what it last saw, ordered by viewer, device and
    /// contact.
    pub fn iter(&self) -> impl Iterator<Item = ((&'a str, &'a str, &'a str), &'a SeenPresence)> {
        self.map
            .iter()
            .map(|((v, d, c), seen)| ((&**v, &**d, &**c), seen))
    }
}

impl State {
    /// `host` went down: what its clients held unsent is gone with them. Those the cloud
    /// answered each time with an error never reached it; one with an unanswered attempt may
    /// have, and stays judged as sent.
    fn hold_outbox_of(&mut self, host: &str) {
        let gone: Vec<(String, bool)> = self
            .outbox
            .iter()
            .filter(|(_, (h, _))| h == host)
            .map(|(id, (_, unanswered))| (id.clone(), *unanswered))
            .collect();
        for (id, unanswered) in gone {
            self.outbox.remove(&id);
            if let Some(&i) = self.index_of.get(id.as_str()) {
                self.messages[i].1.held_at_crash |= !unanswered;
            }
        }
    }
}

#[derive(Default)]
struct State {
    /// The one copy of each name the history keeps ([`Name`]).
    names: Names,
    /// Messages in send order, with their ids.
    messages: Vec<(Name, MessageRecord)>,
    /// Each message's place in `messages`, by id (the same copy of the id).
    index_of: BTreeMap<Name, usize>,
    /// The place in `messages` of the message of each delivery to its recipient, in delivery
    /// order: what the runner's incremental quiescence judgement reads since its last look.
    delivered_log: Vec<usize>,
    /// Deliveries of ids nobody sent (a fake invented or corrupted a message).
    phantom: Vec<String>,
    /// Ids sent twice: a client bug that would make the history ambiguous.
    reused_ids: Vec<String>,
    /// Deliveries whose text differs from the text sent: `id to user/device`.
    altered: Vec<String>,
    /// Deliveries so far; numbers deliveries in the order they happened.
    delivery_count: u64,
    sessions: Vec<SessionEvent>,
    /// Devices currently up, by (user, device).
    up: BTreeMap<(String, String), bool>,
    /// The farm host each known device runs on, by (user, device).
    device_host: BTreeMap<(String, String), String>,
    /// Presences as published, in publication order, with their time.
    presence_published: Vec<(Duration, PresenceEvent)>,
    /// The last presence each device saw from each contact: (viewer, device, contact bare).
    presence_seen: BTreeMap<(Name, Name, Name), SeenPresence>,
    /// Presences Jabber devices saw from connector sessions (`…/hm-webex`), in order: the
    /// presence-translation check's history.
    webex_presence_log: Vec<LoggedPresence>,
    coverage: BTreeMap<String, u64>,
    /// Group chat and group space events (spec 42), in order, with their time.
    group: Vec<(Duration, GroupEvent)>,
    /// Deliveries of Webex group-space posts (tags [`GROUP_SPACE_TAG_PREFIX`]), by any client:
    /// not 1:1 messages, so kept apart from the message history.
    group_space_deliveries: Vec<(Duration, Delivered)>,
    /// Messages a client holds unsent after a failed post ([`PostFate`]), by id: the client's
    /// host, and whether some attempt went unanswered (then the cloud may have taken it).
    /// Bounded by the messages sent; a message leaves it once taken or dropped.
    outbox: BTreeMap<String, (String, bool)>,
    digest: Sha256,
    digest_events: u64,
}

/// The history of a run.
#[derive(Default)]
pub struct Observer {
    state: RefCell<State>,
    /// Each user's Webex email → bare JID, for users whose two differ (spec 24): Webex
    /// clients name people by email, Jabber clients by JID, and one message's record holds
    /// both sides, so the history names everyone by JID. Taken from the population, never
    /// from the connector's directory.
    jid_of_email: BTreeMap<String, String>,
}

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

impl Observer {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty history that names users by JID: `jid_of_email` maps each Webex email that
    /// is not its user's JID to that JID (spec 24).
    pub fn with_identities(jid_of_email: BTreeMap<String, String>) -> Self {
        Self {
            jid_of_email,
            ..Self::default()
        }
    }

    /// The history's name (bare JID) of a user a client named by JID or Webex email.
    fn who<'a>(&'a self, user: &'a str) -> &'a str {
        self.jid_of_email.get(user).map_or(user, String::as_str)
    }

    fn digest(&self, st: &mut State, at: Duration, host: &str, event: &str) {
        st.digest.update(at.as_millis().to_le_bytes());
        st.digest.update(host.as_bytes());
        st.digest.update([0]);
        st.digest.update(event.as_bytes());
        st.digest.update([0xff]);
        st.digest_events += 1;
    }

    /// Records a fault into the digest (the runner calls this; hosts do not).
    pub fn fault(&self, at: Duration, description: &str) {
        let mut st = self.state.borrow_mut();
        self.digest(&mut st, at, "runner", &format!("fault {description}"));
    }

    /// Hex SHA-256 of everything digested so far.
    pub fn trace_digest(&self) -> String {
        let st = self.state.borrow();
        let d = st.digest.clone().finalize();
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Events folded into the digest.
    pub fn digest_events(&self) -> u64 {
        self.state.borrow().digest_events
    }

    /// Runs `f` over the messages in send order.
    pub fn with_messages<R>(
        &self,
        f: impl FnOnce(&mut dyn Iterator<Item = (&str, &MessageRecord)>) -> R,
    ) -> R {
        let st = self.state.borrow();
        let mut it = st.messages.iter().map(|(id, m)| (&**id, m));
        f(&mut it)
    }

    /// Runs `f` over the messages sent from the `from`-th on, in send order, with their place
    /// in it; returns how many messages have been sent.
    pub fn with_sent_since(&self, from: usize, mut f: impl FnMut(usize, &MessageRecord)) -> usize {
        let st = self.state.borrow();
        let new = st.messages.get(from..).unwrap_or_default();
        for (i, (_, m)) in new.iter().enumerate() {
            f(from + i, m);
        }
        st.messages.len()
    }

    /// Runs `f` over the message of each delivery to its recipient from the `from`-th on, in
    /// delivery order (a message once per delivery), with its place in send order; returns
    /// how many deliveries there have been.
    pub fn with_delivered_since(
        &self,
        from: usize,
        mut f: impl FnMut(usize, &MessageRecord),
    ) -> usize {
        let st = self.state.borrow();
        for &i in st.delivered_log.get(from..).unwrap_or_default() {
            if let Some((_, m)) = st.messages.get(i) {
                f(i, m);
            }
        }
        st.delivered_log.len()
    }

    /// Runs `f` on the `index`-th message sent, if there is one.
    pub fn with_message_at<R>(
        &self,
        index: usize,
        f: impl FnOnce(&MessageRecord) -> R,
    ) -> Option<R> {
        let st = self.state.borrow();
        let (_, m) = st.messages.get(index)?;
        Some(f(m))
    }

    /// The session transitions from the `from`-th on.
    pub fn sessions_since(&self, from: usize) -> Vec<SessionEvent> {
        let st = self.state.borrow();
        st.sessions.get(from..).unwrap_or_default().to_vec()
    }

    /// Deliveries of messages nobody sent.
    pub fn phantom(&self) -> Vec<String> {
        self.state.borrow().phantom.clone()
    }

    /// Deliveries (and carbons) whose text differs byte for byte from the text sent.
    pub fn altered(&self) -> Vec<String> {
        self.state.borrow().altered.clone()
    }

    /// Message ids that were sent more than once.
    pub fn reused_ids(&self) -> Vec<String> {
        self.state.borrow().reused_ids.clone()
    }

    /// A client-farm host crashed or was bounced at `at`: its devices are gone for good (a
    /// restarted farm logs in with new resources), so they are forgotten by the liveness
    /// bookkeeping, those logged in recorded down. A device that was down already (trying to
    /// log in again when its farm crashed) is gone for good too: it must not count as a
    /// device never back (explore seed 178). The runner calls this; hosts do not.
    pub fn host_down(&self, at: Duration, host: &str) {
        let mut st = self.state.borrow_mut();
        st.hold_outbox_of(host);
        let gone: Vec<((String, String), bool)> = st
            .device_host
            .iter()
            .filter(|(k, h)| h.as_str() == host && st.up.contains_key(*k))
            .map(|(k, _)| (k.clone(), st.up.get(k) == Some(&true)))
            .collect();
        for ((user, device), was_up) in gone {
            st.up.remove(&(user.clone(), device.clone()));
            if !was_up {
                continue;
            }
            st.sessions.push(SessionEvent {
                at,
                user,
                device,
                up: false,
                reason: format!("host {host} went down"),
            });
        }
    }

    /// Every presence published, in order, with its time.
    pub fn published_presences(&self) -> Vec<(Duration, PresenceEvent)> {
        self.state.borrow().presence_published.clone()
    }

    /// Runs `f` over the last presence each device saw from each contact, by (viewer,
    /// device, contact).
    pub fn with_seen_presences<R>(&self, f: impl FnOnce(SeenPresences<'_>) -> R) -> R {
        let st = self.state.borrow();
        f(SeenPresences {
            map: &st.presence_seen,
            names: &st.names,
        })
    }

    /// Presences seen from connector sessions, in order.
    pub fn webex_presence_log(&self) -> Vec<(Duration, PresenceEvent)> {
        let st = self.state.borrow();
        st.webex_presence_log
            .iter()
            .map(LoggedPresence::event)
            .collect()
    }

    /// Every session transition.
    pub fn sessions(&self) -> Vec<SessionEvent> {
        self.state.borrow().sessions.clone()
    }

    /// Devices currently logged in.
    pub fn devices_up(&self) -> usize {
        self.state.borrow().up.values().filter(|u| **u).count()
    }

    /// Devices that are known and currently down, by (user, device).
    pub fn devices_down(&self) -> Vec<(String, String)> {
        self.state
            .borrow()
            .up
            .iter()
            .filter(|(_, up)| !**up)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Messages sent so far.
    pub fn sent_count(&self) -> usize {
        self.state.borrow().messages.len()
    }

    /// Sent messages not yet delivered to any device of their recipient.
    pub fn undelivered(&self) -> Vec<String> {
        let st = self.state.borrow();
        st.messages
            .iter()
            .filter(|(_, m)| m.deliveries.is_empty())
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// Group chat and group space events (spec 42), in order, with their time.
    pub fn group_events(&self) -> Vec<(Duration, GroupEvent)> {
        self.state.borrow().group.clone()
    }

    /// Deliveries of Webex group-space posts, by any client, with their time.
    pub fn group_space_deliveries(&self) -> Vec<(Duration, Delivered)> {
        self.state.borrow().group_space_deliveries.clone()
    }

    /// Coverage counters.
    pub fn coverage(&self) -> BTreeMap<String, u64> {
        self.state.borrow().coverage.clone()
    }

    /// Bumps a coverage counter.
    pub fn hit(&self, what: &str) {
        self.hit_n(what, 1);
    }

    /// Adds `n` to a coverage counter (`n = 0` still lists it, as "never reached").
    pub fn hit_n(&self, what: &str, n: u64) {
        *self
            .state
            .borrow_mut()
            .coverage
            .entry(what.to_string())
            .or_default() += n;
    }
}

impl Recorder for Observer {
    fn sent(&self, _host: &str, ev: Sent) {
        let mut st = self.state.borrow_mut();
        if st.index_of.contains_key(ev.id.as_str()) {
            st.reused_ids.push(ev.id);
            return;
        }
        // Ids are each a message's own: kept once, shared by the record and its index.
        let id: Name = Arc::from(ev.id);
        let index = st.messages.len();
        st.index_of.insert(id.clone(), index);
        let record = MessageRecord {
            from: st.names.get(self.who(&ev.from)),
            to: st.names.get(self.who(&ev.to)),
            client: ev.client,
            sent_at: now(),
            deliveries: Vec::new(),
            carbons: 0,
            sender_device: st.names.get(&ev.device),
            carbon_seen: Vec::new(),
            refused: Vec::new(),
            body: ev.body,
            held_at_crash: false,
        };
        st.messages.push((id, record));
    }

    fn delivered(&self, host: &str, ev: Delivered) {
        let at = now();
        let mut st = self.state.borrow_mut();
        let line = format!(
            "deliver {} {}->{} {}{}{}",
            ev.id,
            ev.from,
            ev.to,
            ev.device,
            if ev.delayed { " delayed" } else { "" },
            if ev.carbon { " carbon" } else { "" }
        );
        self.digest(&mut st, at, host, &line);
        if ev.id.starts_with(GROUP_SPACE_TAG_PREFIX) {
            st.group_space_deliveries.push((at, ev));
            return;
        }
        let number = st.delivery_count;
        st.delivery_count += 1;
        let (from, to) = (self.who(&ev.from), self.who(&ev.to));
        let Some(index) = st.index_of.get(ev.id.as_str()).copied() else {
            st.phantom.push(ev.id);
            return;
        };
        let st = &mut *st;
        let m = &mut st.messages[index].1;
        if *m.from != *from {
            // Shown as sent by someone else: a bridge that mixed up who is who (spec 24).
            let wrong = format!("{} (arrived as from {from}, sent by {})", ev.id, m.from);
            st.phantom.push(wrong);
            return;
        }
        if let (Some(sent), Some(got)) = (m.body, ev.body)
            && sent != got
        {
            let what = format!("{} to {}/{}", ev.id, to, ev.device);
            st.altered.push(what);
        }
        let device = st.names.get(&ev.device);
        if ev.carbon || *to != *m.to {
            let user = st.names.get(to);
            m.carbons += 1;
            push_one(&mut m.carbon_seen, CarbonCopy { user, device });
            return;
        }
        let delayed = ev.delayed;
        push_one(
            &mut m.deliveries,
            Delivery {
                device,
                at,
                delayed,
                number,
            },
        );
        st.delivered_log.push(index);
        if ev.delayed {
            *st.coverage
                .entry("offline message delivered with delay".into())
                .or_default() += 1;
        }
    }

    fn session(&self, host: &str, user: &str, device: &str, up: bool, reason: &str) {
        let at = now();
        // A Webex App device reports its user's email: the oracle finds devices by JID.
        let user = self.who(user);
        let mut st = self.state.borrow_mut();
        let line = format!(
            "session {user}/{device} {} {reason}",
            if up { "up" } else { "down" }
        );
        self.digest(&mut st, at, host, &line);
        st.device_host
            .insert((user.into(), device.into()), host.into());
        let was_up = st.up.insert((user.into(), device.into()), up);
        if !up && was_up == Some(true) {
            *st.coverage
                .entry("device lost its session".into())
                .or_default() += 1;
        }
        if up && was_up == Some(false) {
            *st.coverage.entry("device re-logged in".into()).or_default() += 1;
        }
        st.sessions.push(SessionEvent {
            at,
            user: user.into(),
            device: device.into(),
            up,
            reason: reason.into(),
        });
    }

    fn note(&self, what: &str) {
        self.hit(what);
    }

    fn post_fate(&self, host: &str, id: &str, fate: PostFate) {
        let mut st = self.state.borrow_mut();
        match fate {
            PostFate::Kept | PostFate::Unanswered => {
                let held = st.outbox.entry(id.to_string());
                let held = held.or_insert_with(|| (host.to_string(), false));
                held.1 |= fate == PostFate::Unanswered;
            }
            PostFate::Taken | PostFate::Dropped => {
                st.outbox.remove(id);
            }
        }
    }

    fn presence_published(&self, _host: &str, ev: PresenceEvent) {
        let at = now();
        self.state.borrow_mut().presence_published.push((at, ev));
    }

    fn presence_seen(&self, _host: &str, ev: PresenceEvent) {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let (contact, resource) = ev.from.split_once('/').unwrap_or((&ev.from, ""));
        let names = &mut st.names;
        let key = (
            names.get(&ev.user),
            names.get(&ev.device),
            names.get(contact),
        );
        let seen = SeenPresence {
            resource: names.get(resource),
            show: ev.show.as_deref().map(|s| names.get(s)),
            status: ev.status.as_deref().map(|s| names.get(s)),
            available: ev.available,
        };
        // Presences from connector sessions, and every unavailable one (the composed presence
        // of a user whose only device was the connector session goes unavailable).
        if ev.from.ends_with("/hm-webex") || !ev.available {
            let logged = LoggedPresence {
                at: now(),
                viewer: key.0.clone(),
                device: key.1.clone(),
                from: names.get(&ev.from),
                show: seen.show.clone(),
                status: seen.status.clone(),
                available: ev.available,
                manual: ev.manual,
            };
            st.webex_presence_log.push(logged);
        }
        st.presence_seen.insert(key, seen);
    }

    fn group(&self, host: &str, ev: GroupEvent) {
        let at = now();
        let mut st = self.state.borrow_mut();
        let line = format!("group {} {}/{} {:?}", ev.room, ev.user, ev.device, ev.kind);
        self.digest(&mut st, at, host, &line);
        st.group.push((at, ev));
    }

    fn refused(&self, host: &str, ev: Refused) {
        let at = now();
        let mut st = self.state.borrow_mut();
        let line = format!(
            "refused {} {}/{} {} {}",
            ev.id, ev.user, ev.device, ev.condition, ev.text
        );
        self.digest(&mut st, at, host, &line);
        *st.coverage
            .entry(format!("message refused: {}", ev.text))
            .or_default() += 1;
        let user = self.who(&ev.user);
        let st = &mut *st;
        let record = st
            .index_of
            .get(ev.id.as_str())
            .map(|&i| &mut st.messages[i].1);
        match record {
            Some(m) if *m.from == *user => m.refused.push(Refusal {
                device: ev.device,
                condition: ev.condition,
                text: ev.text,
            }),
            _ => st.phantom.push(format!("{} (refused, never sent)", ev.id)),
        }
    }
}

/// Pushes `x` onto `v` growing it by one place at most: a message has one or two deliveries
/// and copies, where a vector's first growth makes room for four.
fn push_one<T>(v: &mut Vec<T>, x: T) {
    v.reserve_exact(1);
    v.push(x);
}

#[cfg(test)]
mod tests {
    use super::*;
    use fakes::observe::Sent;

    fn observer() -> Observer {
        // b@x is known to Webex (and IM&P's mail ID) as first.b@y.
        Observer::with_identities([("first.b@y".to_string(), "b@x".to_string())].into())
    }

    fn delivered(id: &str, from: &str, to: &str, client: ClientKind) -> Delivered {
        Delivered {
            id: id.into(),
            from: from.into(),
            to: to.into(),
            device: if client == ClientKind::Webex {
                "webex.0"
            } else {
                "jabber-0"
            }
            .into(),
            client,
            delayed: false,
            carbon: false,
            body: None,
        }
    }

    fn records(o: &Observer) -> Vec<(String, MessageRecord)> {
        o.with_messages(|msgs| msgs.map(|(id, m)| (id.to_string(), m.clone())).collect())
    }

    fn send(o: &Observer, id: &str, from: &str, to: &str, client: ClientKind) {
        let device = "d".to_string();
        let (id, from, to) = (id.to_string(), from.to_string(), to.to_string());
        o.sent(
            "h",
            Sent {
                id,
                from,
                to,
                client,
                device,
                body: None,
            },
        );
    }

    /// Spec 24: Webex names b by email, Jabber by JID; one message's record holds both sides,
    /// so a Jabber message to b's JID delivered on b's Webex App is b's delivery, not a copy.
    #[test]
    fn a_user_named_by_email_on_webex_is_the_user_of_the_jid() {
        let o = observer();
        send(&o, "m1", "a@x", "b@x", ClientKind::Jabber);
        o.delivered("h", delivered("m1", "a@x", "first.b@y", ClientKind::Webex));
        send(&o, "m2", "first.b@y", "a@x", ClientKind::Webex);
        o.delivered("h", delivered("m2", "b@x", "a@x", ClientKind::Jabber));
        let msgs = records(&o);
        for (id, m) in &msgs {
            assert_eq!(m.deliveries.len(), 1, "{id}: {m:?}");
            assert_eq!(m.carbons, 0, "{id}");
        }
        assert_eq!(&*msgs[1].1.from, "b@x");
        assert!(o.phantom().is_empty());
    }

    /// The oracle finds a user's devices by JID (a message's recipient, say), the Webex App's
    /// too, whose sessions it reports by email.
    #[test]
    fn a_webex_app_session_is_filed_under_the_jid() {
        let o = observer();
        o.session("webex-1", "first.b@y", "webex.0", true, "logged in");
        let s = o.sessions();
        assert_eq!(
            (s[0].user.as_str(), s[0].device.as_str()),
            ("b@x", "webex.0")
        );
    }

    /// A message shown as sent by someone else (a bridge that mixed up two users) is not a
    /// delivery: the history says who it arrived as from.
    #[test]
    fn a_delivery_shown_from_the_wrong_sender_is_flagged() {
        let o = observer();
        send(&o, "m1", "first.b@y", "a@x", ClientKind::Webex);
        o.delivered("h", delivered("m1", "first.b@x", "a@x", ClientKind::Jabber));
        assert!(records(&o)[0].1.deliveries.is_empty());
        assert_eq!(
            o.phantom(),
            vec!["m1 (arrived as from first.b@x, sent by b@x)".to_string()]
        );
    }

    fn seen(viewer: &str, device: &str, from: &str, show: Option<&str>) -> PresenceEvent {
        PresenceEvent {
            user: viewer.into(),
            device: device.into(),
            from: from.into(),
            manual: false,
            show: show.map(Into::into),
            status: Some("In a meeting".into()),
            available: true,
        }
    }

    /// Each device's last view of each contact is kept under (viewer, device, contact), in
    /// that order, read in place, with one copy of each name for all views.
    #[test]
    fn seen_presences_keep_the_last_view_with_shared_names() {
        let o = Observer::new();
        o.presence_seen("h", seen("b@x", "jabber-0", "a@x/jabber-1", None));
        o.presence_seen("h", seen("b@x", "jabber-0", "a@x/hm-webex", Some("dnd")));
        o.presence_seen("h", seen("a@x", "jabber-1", "c@x", Some("away")));
        o.presence_seen("h", seen("c@x", "jabber-0", "a@x/hm-webex", Some("dnd")));
        o.with_seen_presences(|seen| {
            let keys: Vec<_> = seen.iter().map(|(k, _)| k).collect();
            assert_eq!(
                keys,
                [
                    ("a@x", "jabber-1", "c@x"),
                    ("b@x", "jabber-0", "a@x"),
                    ("c@x", "jabber-0", "a@x"),
                ]
            );
            let b = seen.get("b@x", "jabber-0", "a@x").expect("b's view of a");
            assert_eq!(
                (&*b.resource, b.show.as_deref(), b.status.as_deref()),
                ("hm-webex", Some("dnd"), Some("In a meeting")),
                "the last view wins"
            );
            let from_bare = seen.get("a@x", "jabber-1", "c@x").expect("a's view of c");
            assert_eq!(&*from_bare.resource, "");
            let c = seen.get("c@x", "jabber-0", "a@x").expect("c's view of a");
            assert!(
                Arc::ptr_eq(&b.resource, &c.resource),
                "one copy of a resource"
            );
            assert!(Arc::ptr_eq(
                b.show.as_ref().unwrap(),
                c.show.as_ref().unwrap()
            ));
            assert_eq!(seen.get("b@x", "jabber-1", "a@x"), None);
            assert_eq!(
                seen.get("d@x", "jabber-0", "a@x"),
                None,
                "a name never seen"
            );
        });
    }

    /// The log of presences seen from connector sessions (and unavailable ones) gives back
    /// each as the device reported it, in order; others are not logged.
    #[test]
    fn the_presence_log_gives_back_each_presence_as_seen() {
        let o = Observer::new();
        let mut manual = seen("b@x", "jabber-0", "a@x/hm-webex", Some("dnd"));
        manual.manual = true;
        let mut gone = seen("c@x", "jabber-1", "a@x", None);
        (gone.available, gone.status) = (false, None);
        let from_device = seen("b@x", "jabber-0", "a@x/jabber-1", Some("away"));
        for ev in [manual.clone(), from_device, gone.clone()] {
            o.presence_seen("h", ev);
        }
        let log: Vec<PresenceEvent> = o.webex_presence_log().into_iter().map(|(_, e)| e).collect();
        assert_eq!(log, [manual, gone]);
    }

    /// A message's record names its users and devices by the history's one copy of each
    /// name, and holds room for the deliveries it has, not more.
    #[test]
    fn message_records_share_names_and_hold_their_deliveries_tightly() {
        let o = Observer::new();
        send(&o, "m1", "a@x", "b@x", ClientKind::Jabber);
        send(&o, "m2", "a@x", "b@x", ClientKind::Jabber);
        o.delivered("h", delivered("m1", "a@x", "b@x", ClientKind::Jabber));
        o.delivered("h", delivered("m2", "a@x", "b@x", ClientKind::Jabber));
        let mut copy = delivered("m2", "a@x", "a@x", ClientKind::Jabber);
        copy.carbon = true;
        o.delivered("h", copy);
        let msgs = records(&o);
        let (m1, m2) = (&msgs[0].1, &msgs[1].1);
        assert_eq!((&*msgs[0].0, &*msgs[1].0), ("m1", "m2"));
        assert!(Arc::ptr_eq(&m1.from, &m2.from) && Arc::ptr_eq(&m1.to, &m2.to));
        assert!(Arc::ptr_eq(&m1.sender_device, &m2.sender_device));
        let (d1, d2) = (&m1.deliveries[0], &m2.deliveries[0]);
        assert!(Arc::ptr_eq(&d1.device, &d2.device));
        assert_eq!((d1.number, d2.number), (0, 1));
        assert_eq!(m2.carbon_seen.len(), 1);
        assert!(Arc::ptr_eq(&m2.carbon_seen[0].user, &m2.from));
        assert!(Arc::ptr_eq(&m2.carbon_seen[0].device, &d2.device));
        o.with_message_at(0, |m| assert_eq!(m.deliveries.capacity(), 1));
        assert_eq!(o.sent_count(), 2);
        assert!(o.undelivered().is_empty());
    }

    /// A farm that crashes takes its devices with it, those trying to log in again as well as
    /// those logged in: neither is a device "not logged in at the end" (explore seed 178: the
    /// devices of a failed-over IM&P node were reconnecting when their farm crashed; the farm
    /// came back with new resources that logged in, the old ones counted as never back).
    #[test]
    fn a_crashed_farm_forgets_its_devices_up_or_reconnecting() {
        let o = Observer::new();
        o.session("jabber-1", "a@example.com", "jabber-1.0", true, "logged in");
        o.session("jabber-1", "b@example.com", "jabber-1.0", true, "logged in");
        o.session(
            "jabber-1",
            "b@example.com",
            "jabber-1.0",
            false,
            "server closed",
        );
        o.session("jabber-2", "c@example.com", "jabber-1.0", true, "logged in");
        o.session(
            "jabber-2",
            "c@example.com",
            "jabber-1.0",
            false,
            "server closed",
        );
        o.host_down(Duration::from_secs(60), "jabber-1");
        let down = o.devices_down();
        assert_eq!(
            down,
            vec![("c@example.com".to_string(), "jabber-1.0".to_string())],
            "only the device of the farm still up is down"
        );
        let gone: Vec<_> = o
            .sessions()
            .into_iter()
            .filter(|e| e.reason.contains("went down"))
            .collect();
        assert_eq!(gone.len(), 1, "{gone:?}");
        assert_eq!(gone[0].user, "a@example.com");
    }

    /// Explore 5779: posts the cloud answered 503 waited in a Webex App's outbox when its farm
    /// was bounced. Held unsent at the crash, every attempt answered: never at the cloud. One
    /// with an unanswered attempt (the cloud may have it), one re-sent and taken, and one
    /// held on a farm still up are not.
    #[test]
    fn what_a_client_held_unsent_when_its_host_went_down_is_told_apart() {
        let o = Observer::new();
        for id in ["m1", "m2", "m3", "m4"] {
            send(&o, id, "a@x", "b@x", ClientKind::Webex);
        }
        o.post_fate("webex-1", "m1", PostFate::Kept);
        o.post_fate("webex-1", "m1", PostFate::Kept);
        o.post_fate("webex-1", "m2", PostFate::Unanswered);
        o.post_fate("webex-1", "m2", PostFate::Kept);
        o.post_fate("webex-1", "m3", PostFate::Kept);
        o.post_fate("webex-1", "m3", PostFate::Taken);
        o.post_fate("webex-2", "m4", PostFate::Kept);
        o.host_down(Duration::from_secs(156), "webex-1");
        let held: Vec<bool> = records(&o).iter().map(|(_, m)| m.held_at_crash).collect();
        assert_eq!(held, [true, false, false, false]);
    }
}
