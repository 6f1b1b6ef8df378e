//! The Jabber client model: one task and one real XMPP c2s connection per device.
//!
//! [`JabberCore`] is the sans-IO protocol half (login sequence, receipts, pings); [`run_device`]
//! is the driver that connects, logs in, generates the user's chat workload from its seeded
//! RNG, keeps the stream alive with XEP-0199 pings (turmoil's TCP never retransmits, so a dead
//! stream must be noticed by the application, as in real life) and reconnects with seeded
//! backoff, moving along its server list (home node, then its PRG peer) when a node refuses it
//! or sends it elsewhere. A device may also follow a [`PresencePlan`] (manual and device
//! presence changes, spec 53) and reports the presences it publishes and receives, and the
//! error stanzas its messages come back as (spec 46), to the [`Recorder`].
//!
//! With a [`GroupPlan`] the device also takes part in XEP-0045 group chat (spec 42): it creates
//! its rooms (persistent ones through the room configuration form), invites their members,
//! joins rooms it is invited to, sends `groupchat` messages tagged `[[id]]` like 1:1 ones, and
//! reports what it did and saw as [`GroupEvent`]s. Rooms are not rejoined after a reconnect
//! (the server took the device out when its connection closed).

use crate::imp::muc::{self, NS_DATA, NS_MUC, NS_MUC_OWNER, NS_MUC_USER};
use crate::observe::{
    ClientKind, Delivered, GroupEvent, GroupEventKind, PresenceEvent, Recorder, Refused, Sent,
};
use connector::io::net::Net;
use connector::proto::stream::{StreamEvent, StreamParser};
use connector::proto::xml::{Element, NS_STREAM};
use connector::proto::xmpp::{self, Jid};
use rand::RngExt as _;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Connect attempts give up after this long (a connect to a crashed host hangs, PITFALLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The whole login sequence must finish within this.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Keepalive ping interval (Jabber's default is in this range).
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// A stream silent for this long is dead: three missed pings.
pub const SILENCE_MAX: Duration = Duration::from_secs(90);
/// A ping unanswered for this long means the stream is dead even if bytes still arrive: a
/// half-open stream (one direction wedged) keeps delivering inbound messages while every send
/// is lost, and only an answered ping proves the server hears us (XEP-0199).
pub const PING_TIMEOUT: Duration = Duration::from_secs(30);
/// Reconnect backoff bounds.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Upper bound of the reconnect backoff.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Read buffer per device; small because a farm hosts thousands of devices.
pub const READ_BUF_BYTES: usize = 4 * 1024;

/// Where the login sequence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    PreAuthFeatures,
    Authing,
    PostAuthFeatures,
    Binding,
    Ready,
    Closed,
}

/// What the core tells its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// Logged in and available; the bound full JID.
    Ready(String),
    /// A stanza arrived after login.
    Stanza(Element),
    /// The session ended; why.
    Failed(String),
}

/// Sans-IO XMPP client: the login sequence and automatic replies.
pub struct JabberCore {
    user: String,
    domain: String,
    password: String,
    resource: String,
    parser: StreamParser,
    phase: Phase,
    out: String,
    next_id: u64,
}

impl JabberCore {
    /// A client for `user@domain/resource`.
    pub fn new(bare: &Jid, password: &str, resource: &str) -> Self {
        Self {
            user: bare.local.clone().unwrap_or_default(),
            domain: bare.domain.clone(),
            password: password.into(),
            resource: resource.into(),
            parser: StreamParser::new(),
            phase: Phase::PreAuthFeatures,
            out: xmpp::stream_header(xmpp::NS_CLIENT, None, Some(&bare.domain), None),
            next_id: 0,
        }
    }

    /// True once logged in.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// Bytes to write, if any.
    pub fn take_output(&mut self) -> Option<String> {
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out))
    }

    /// Queues a stanza.
    pub fn send(&mut self, el: &Element) {
        el.write_into(&mut self.out, xmpp::NS_CLIENT);
    }

    /// A fresh stanza id (deterministic).
    pub fn next_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}-{}-{}", self.user, self.resource, self.next_id)
    }

    /// Bytes from the server; returns what happened.
    pub fn input(&mut self, bytes: &[u8]) -> Vec<ClientEvent> {
        self.parser.feed(bytes);
        let mut events = Vec::new();
        while self.phase != Phase::Closed {
            match self.parser.next_event() {
                Ok(None) => break,
                Ok(Some(StreamEvent::Open(_))) => {}
                Ok(Some(StreamEvent::Close)) => self.fail(&mut events, "server closed the stream"),
                Ok(Some(StreamEvent::Stanza(el))) => self.on_element(el, &mut events),
                Err(e) => self.fail(&mut events, &format!("bad XML from server: {e}")),
            }
        }
        events
    }

    fn fail(&mut self, events: &mut Vec<ClientEvent>, why: &str) {
        self.phase = Phase::Closed;
        events.push(ClientEvent::Failed(why.to_string()));
    }

    fn on_element(&mut self, el: Element, events: &mut Vec<ClientEvent>) {
        if el.is("error", NS_STREAM) {
            let cond = el
                .elements()
                .find(|e| e.ns == xmpp::NS_STREAMS_ERR && e.name != "text")
                .map(|e| e.name.clone())
                .unwrap_or_default();
            return self.fail(events, &format!("stream error: {cond}"));
        }
        match self.phase {
            Phase::PreAuthFeatures if el.is("features", NS_STREAM) => {
                let auth = Element::new("auth", xmpp::NS_SASL)
                    .with_attr("mechanism", "PLAIN")
                    .with_text(xmpp::sasl_plain_response(&self.user, &self.password));
                self.send(&auth);
                self.phase = Phase::Authing;
            }
            Phase::Authing if el.is("success", xmpp::NS_SASL) => {
                self.parser.restart();
                self.out.push_str(&xmpp::stream_header(
                    xmpp::NS_CLIENT,
                    None,
                    Some(&self.domain),
                    None,
                ));
                self.phase = Phase::PostAuthFeatures;
            }
            Phase::Authing if el.is("failure", xmpp::NS_SASL) => {
                let cond = el
                    .elements()
                    .next()
                    .map(|e| e.name.clone())
                    .unwrap_or_default();
                self.fail(events, &format!("authentication failed: {cond}"));
            }
            Phase::PostAuthFeatures if el.is("features", NS_STREAM) => {
                let id = self.next_id();
                let bind = Element::new("iq", xmpp::NS_CLIENT)
                    .with_attr("type", "set")
                    .with_attr("id", id)
                    .with_child(Element::new("bind", xmpp::NS_BIND).with_child(
                        Element::new("resource", xmpp::NS_BIND).with_text(self.resource.clone()),
                    ));
                self.send(&bind);
                self.phase = Phase::Binding;
            }
            Phase::Binding if el.name == "iq" => self.on_bound(&el, events),
            Phase::Ready => self.on_ready_stanza(el, events),
            _ => self.fail(events, &format!("unexpected <{}> during login", el.name)),
        }
    }

    fn on_bound(&mut self, el: &Element, events: &mut Vec<ClientEvent>) {
        let jid = el
            .child("bind", xmpp::NS_BIND)
            .and_then(|b| b.child("jid", xmpp::NS_BIND))
            .map(Element::text);
        let Some(jid) = jid.filter(|_| el.attr("type") == Some("result")) else {
            return self.fail(events, "resource binding refused");
        };
        let id = self.next_id();
        let carbons = Element::new("iq", xmpp::NS_CLIENT)
            .with_attr("type", "set")
            .with_attr("id", id)
            .with_child(Element::new("enable", xmpp::NS_CARBONS));
        self.send(&carbons);
        self.send(&Element::new("presence", xmpp::NS_CLIENT));
        self.phase = Phase::Ready;
        events.push(ClientEvent::Ready(jid));
    }

    fn on_ready_stanza(&mut self, el: Element, events: &mut Vec<ClientEvent>) {
        if el.name == "iq" && el.attr("type") == Some("get") {
            // Answer pings (and refuse anything else politely, RFC 6120 8.4).
            let reply = if el.child("ping", xmpp::NS_PING).is_some() {
                xmpp::iq_result(&el, None)
            } else {
                xmpp::error_reply(&el, "cancel", "service-unavailable", None)
            };
            self.send(&reply);
            return;
        }
        if el.name == "message"
            && el.child("request", xmpp::NS_RECEIPTS).is_some()
            && let (Some(id), Some(from)) = (el.attr("id"), el.attr("from"))
        {
            let ack = Element::new("message", xmpp::NS_CLIENT)
                .with_attr("to", from)
                .with_attr("id", format!("rcpt-{id}"))
                .with_child(Element::new("received", xmpp::NS_RECEIPTS).with_attr("id", id));
            self.send(&ack);
        }
        events.push(ClientEvent::Stanza(el));
    }
}

/// The chat traffic one user generates.
#[derive(Debug, Clone)]
pub struct ChatPlan {
    /// Bare JIDs the user writes to.
    pub contacts: Vec<String>,
    /// Mean time between messages (exponentially distributed).
    pub mean_interval: Duration,
    /// Simulated time at which sending starts.
    pub start: Duration,
    /// Simulated time at which sending stops.
    pub stop: Duration,
}

/// One room a user creates (spec 42).
#[derive(Debug, Clone)]
pub struct RoomPlan {
    /// The room's local part (`g-…`); the room is `name@<service>`.
    pub name: String,
    /// Made persistent with the room configuration form after creation.
    pub persistent: bool,
    /// Bare JIDs invited once the room exists.
    pub invitees: Vec<String>,
    /// When the room is created.
    pub at: Duration,
}

/// The group chat one Jabber user takes part in (spec 42); only the user's first device has
/// one.
#[derive(Debug, Clone)]
pub struct GroupPlan {
    /// The conference service (`conference.<domain>`).
    pub service: String,
    /// Rooms this user creates.
    pub rooms: Vec<RoomPlan>,
    /// Mean time between this user's groupchat messages, over all rooms it is in
    /// (exponential).
    pub mean_interval: Duration,
    /// No messages are sent, and no invitations accepted, from this time on.
    pub stop: Duration,
}

/// What a device's group chat has done so far; rooms created survive reconnects, rooms joined
/// do not.
#[derive(Debug, Default)]
struct GroupState {
    /// Rooms whose creation was sent (by local part).
    created: BTreeSet<String>,
    /// Rooms (bare JIDs) this device is an occupant of now.
    joined: BTreeSet<String>,
    /// When the next groupchat message is due.
    next_send: Option<Duration>,
    /// Groupchat messages sent.
    seq: u64,
}

/// The presence changes one device publishes (spec 53): manual (user-set) or device presence,
/// marked with the project's `urn:hmsim:presence:0` payload (see `imp::node`).
#[derive(Debug, Clone)]
pub struct PresencePlan {
    /// Mean time between changes (exponentially distributed).
    pub mean_interval: Duration,
    /// Probability that a change is manual.
    pub manual_share: f64,
    /// Simulated time at which changes stop.
    pub stop: Duration,
    /// Its own RNG, so that presence never shifts the chat workload's draws.
    pub rng: ChaCha8Rng,
    /// When the next change is due.
    pub next: Duration,
    /// Changes published so far (makes every status text distinct).
    pub count: u64,
}

/// One device of one user.
pub struct DeviceSpec<N: Net> {
    /// Network backend.
    pub net: N,
    /// Farm host name (for records).
    pub host: String,
    /// User's bare JID.
    pub jid: Jid,
    /// Password.
    pub password: String,
    /// Resource of this device.
    pub resource: String,
    /// Home IM&P node host.
    pub server: String,
    /// Further servers tried in order after `server`, like Jabber's high-availability login
    /// (the home node, then its PRG peer, spec 65). See [`run_device`].
    pub servers: Vec<String>,
    /// Chat plan; only the device that sends has one.
    pub plan: Option<ChatPlan>,
    /// This device's RNG (workload and backoff), derived from the seed by name.
    pub rng: ChaCha8Rng,
    /// Where to report.
    pub recorder: Rc<dyn Recorder>,
    /// Presence changes this device publishes, if any.
    pub presence: Option<PresencePlan>,
    /// Group chat this device takes part in, if any (spec 42).
    pub group: Option<GroupPlan>,
}

/// Runs a device forever: connect, log in, chat, and reconnect after any failure.
///
/// Server choice (Jabber's high-availability login): the device starts with `server`. An
/// attempt that never logged in (connect failed, or the node refused the login, as a node
/// does for users it does not serve) moves on to the next server of the list, wrapping
/// around; so does a session the server ended with `see-other-host` (the node's users moved
/// to its PRG peer, or back). A logged-in session lost otherwise is retried on the same
/// server first. Every retry waits the seeded backoff.
pub async fn run_device<N: Net>(mut d: DeviceSpec<N>) {
    let mut backoff = BACKOFF_MIN;
    let mut next_send = d
        .plan
        .as_ref()
        .map(|p| crate::first_action_at(p.start, p.mean_interval, &mut d.rng));
    let mut seq: u64 = 0;
    let list: Vec<String> = std::iter::once(d.server.clone())
        .chain(d.servers.iter().cloned())
        .collect();
    let mut at = 0usize;
    let mut group = GroupState::default();
    loop {
        let server = list[at % list.len()].clone();
        let mut logged_in = false;
        group.joined.clear();
        let reason = match connect(&d, &server).await {
            Ok(stream) => {
                let ctx = Ctx {
                    server: &server,
                    logged_in: &mut logged_in,
                    group: &mut group,
                };
                session(&mut d, stream, &mut next_send, &mut seq, &mut backoff, ctx).await
            }
            Err(e) => format!("connect failed: {e}"),
        };
        if !logged_in || reason.contains("see-other-host") {
            at = (at + 1) % list.len();
        }
        d.recorder
            .session(&d.host, &d.jid.bare(), &d.resource, false, &reason);
        let jitter = d.rng.random_range(0.5..1.5);
        tokio::time::sleep(backoff.mul_f64(jitter)).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Where one session attempt goes, and whether it logged in.
struct Ctx<'a> {
    server: &'a str,
    logged_in: &'a mut bool,
    group: &'a mut GroupState,
}

async fn connect<N: Net>(d: &DeviceSpec<N>, server: &str) -> std::io::Result<N::Stream> {
    match tokio::time::timeout(CONNECT_TIMEOUT, d.net.connect(server, 5222)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        )),
    }
}

/// One connected session; returns why it ended.
async fn session<N: Net>(
    d: &mut DeviceSpec<N>,
    stream: N::Stream,
    next_send: &mut Option<Duration>,
    seq: &mut u64,
    backoff: &mut Duration,
    ctx: Ctx<'_>,
) -> String {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut core = JabberCore::new(&d.jid, &d.password, &d.resource);
    let mut buf = vec![0u8; READ_BUF_BYTES];
    let login_deadline = d.net.now() + LOGIN_TIMEOUT;
    let mut last_rx = d.net.now();
    // The outstanding keepalive ping: (stanza id, sent at).
    let mut pending_ping: Option<(String, Duration)> = None;
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if let Some(out) = core.take_output()
            && wr.write_all(out.as_bytes()).await.is_err()
        {
            return "write failed".into();
        }
        let now = d.net.now();
        if !core.is_ready() && now >= login_deadline {
            return "login timed out".into();
        }
        let send_in = match (core.is_ready(), *next_send) {
            (true, Some(t)) => t.saturating_sub(now),
            _ => Duration::from_secs(3600),
        };
        let presence_in = match (&d.presence, core.is_ready()) {
            (Some(p), true) if now < p.stop => Some(p.next.saturating_sub(now)),
            _ => None,
        };
        let group_in = match (&d.group, core.is_ready()) {
            (Some(g), true) => group_due(g, ctx.group).map(|t| t.saturating_sub(now)),
            _ => None,
        };
        tokio::select! {
            biased;
            r = rd.read(&mut buf) => {
                let n = match r {
                    Ok(0) => return "server closed the connection".into(),
                    Err(e) => return format!("read failed: {e}"),
                    Ok(n) => n,
                };
                last_rx = d.net.now();
                for ev in core.input(&buf[..n]) {
                    match ev {
                        ClientEvent::Ready(_) => {
                            *backoff = BACKOFF_MIN;
                            *ctx.logged_in = true;
                            let why = format!("logged in to {}", ctx.server);
                            d.recorder.session(&d.host, &d.jid.bare(), &d.resource, true, &why);
                            // The initial `<presence/>` is this device's first device presence.
                            d.recorder.presence_published(&d.host, PresenceEvent {
                                user: d.jid.bare(),
                                device: d.resource.clone(),
                                from: String::new(),
                                manual: false,
                                show: None,
                                status: None,
                                available: true,
                            });
                        }
                        ClientEvent::Stanza(el) => {
                            if pending_ping.as_ref().is_some_and(|(id, _)| el.name == "iq" && el.attr("id") == Some(id.as_str())) {
                                pending_ping = None;
                            }
                            if !group_stanza(d, &mut core, ctx.group, &el) {
                                record_stanza(d, &el);
                            }
                        }
                        ClientEvent::Failed(why) => return why,
                    }
                }
            }
            _ = tokio::time::sleep(send_in) => {
                send_next(d, &mut core, next_send, seq);
            }
            _ = tokio::time::sleep(presence_in.unwrap_or_default()), if presence_in.is_some() => {
                publish_presence(d, &mut core);
            }
            _ = tokio::time::sleep(group_in.unwrap_or_default()), if group_in.is_some() => {
                group_tick(d, &mut core, ctx.group);
            }
            _ = ping.tick() => {
                let now = d.net.now();
                if now.saturating_sub(last_rx) > SILENCE_MAX {
                    return "stream silent: keepalive timed out".into();
                }
                if pending_ping.as_ref().is_some_and(|(_, at)| now.saturating_sub(*at) > PING_TIMEOUT) {
                    return "keepalive ping unanswered: stream is half-open".into();
                }
                if core.is_ready() && pending_ping.is_none() {
                    let id = core.next_id();
                    pending_ping = Some((id.clone(), now));
                    let p = Element::new("iq", xmpp::NS_CLIENT)
                        .with_attr("type", "get")
                        .with_attr("id", id)
                        .with_child(Element::new("ping", xmpp::NS_PING));
                    core.send(&p);
                }
            }
            _ = tokio::time::sleep(login_deadline.saturating_sub(d.net.now())), if !core.is_ready() => {
                return "login timed out".into();
            }
        }
    }
}

/// Sends the next planned message (if still within the plan) and schedules the one after.
fn send_next<N: Net>(
    d: &mut DeviceSpec<N>,
    core: &mut JabberCore,
    next_send: &mut Option<Duration>,
    seq: &mut u64,
) {
    let Some(plan) = d.plan.clone() else { return };
    let now = d.net.now();
    if now >= plan.stop || plan.contacts.is_empty() {
        *next_send = None;
        return;
    }
    let to = plan.contacts[d.rng.random_range(0..plan.contacts.len())].clone();
    *seq += 1;
    let user = d.jid.local.clone().unwrap_or_default();
    // The resource names the device and its incarnation, so ids stay unique across restarts.
    let id = format!("{user}.{}.{seq}", d.resource);
    let words = d.rng.random_range(1..12);
    let body = (0..words)
        .map(|_| WORDS[d.rng.random_range(0..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ");
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
        },
    );
    *next_send = Some(now + crate::exp_wait(plan.mean_interval, &mut d.rng));
}

/// Shows a device presence may carry; `None` is plain available.
const DEVICE_SHOWS: [Option<&str>; 3] = [None, Some("away"), Some("xa")];
/// Shows a user may set by hand.
const MANUAL_SHOWS: [&str; 3] = ["dnd", "away", "chat"];

/// Publishes the next presence change of the device's plan and schedules the one after.
fn publish_presence<N: Net>(d: &mut DeviceSpec<N>, core: &mut JabberCore) {
    let now = d.net.now();
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

fn record_stanza<N: Net>(d: &DeviceSpec<N>, el: &Element) {
    if el.name == "presence" {
        let kind = el.attr("type");
        if matches!(kind, None | Some("unavailable"))
            && let Some(from) = el.attr("from")
        {
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
        return;
    }
    if el.name != "message" {
        return;
    }
    if el.attr("type") == Some("error") {
        // One of our messages bounced (spec 46: "Message could not be delivered").
        if let Some(id) = el.attr("id") {
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
        return;
    }
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
    // The connector's notices for Webex deletes and edits (spec 39-40) and deleted files
    // (spec 43) are not messages anyone sent: count them, do not deliver them.
    if body.contains(" used Webex App to delete") {
        d.recorder.note(if body.contains("the file") {
            "jabber: file delete notice received"
        } else {
            "jabber: delete notice received"
        });
        return;
    }
    if inner.child("x", xmpp::NS_OOB).is_some() {
        d.recorder.note("jabber: file link received");
    }
    // Bridged messages carry their original id as a `[[tag]]` (the stanza id is the
    // connector's); untagged texts are followed by the stanza id.
    let tagged = crate::webex::tag_of(&body).map(str::to_string);
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
        },
    );
}

/// When the device's next group chat action is due: a room to create, or a message to send
/// while it is in a room.
fn group_due(g: &GroupPlan, st: &GroupState) -> Option<Duration> {
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
fn group_tick<N: Net>(d: &mut DeviceSpec<N>, core: &mut JabberCore, st: &mut GroupState) {
    let Some(g) = d.group.clone() else { return };
    let now = d.net.now();
    for r in g.rooms.iter().filter(|r| r.at <= now) {
        if st.created.insert(r.name.clone()) {
            join_room(d, core, &format!("{}@{}", r.name, g.service));
        }
    }
    if st.next_send.is_some_and(|t| t <= now) && now < g.stop && !st.joined.is_empty() {
        send_groupchat(d, core, st, &g);
    }
}

fn send_groupchat<N: Net>(
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
    st.next_send = Some(d.net.now() + crate::exp_wait(g.mean_interval, &mut d.rng));
}

/// Handles a stanza from the conference service; false when it is not one (or the device
/// has no group plan), for the 1:1 recording to take.
fn group_stanza<N: Net>(
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
        "presence" => room_presence(d, core, st, &g, &room, el),
        "message" => room_message(d, core, st, &g, &room, el),
        _ => {} // configuration results
    }
    true
}

fn room_presence<N: Net>(
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
    if st.next_send.is_none_or(|t| t < d.net.now()) {
        st.next_send = Some(d.net.now() + crate::exp_wait(g.mean_interval, &mut d.rng));
    }
    let local = room.split('@').next().unwrap_or_default();
    let Some(plan) = g.rooms.iter().find(|r| r.name == local) else {
        return;
    };
    if !codes.contains(&muc::STATUS_CREATED) {
        return;
    }
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
        if d.net.now() < g.stop && !st.joined.contains(room) {
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
    let id = crate::webex::tag_of(&body)
        .map(str::to_string)
        .or_else(|| el.attr("id").map(str::to_string))
        .unwrap_or_default();
    group_event(d, room, GroupEventKind::Received { id, from });
}

/// Vocabulary for generated message bodies.
const WORDS: [&str; 16] = [
    "hello", "meeting", "at", "three", "can", "you", "review", "the", "draft", "thanks", "see",
    "later", "lunch", "call", "me", "ok",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_sequence_emits_auth_bind_and_presence() {
        let jid = Jid::parse("alice@example.com").unwrap();
        let mut c = JabberCore::new(&jid, "pw", "desk");
        assert!(c.take_output().unwrap().contains("<stream:stream"));
        let h = xmpp::stream_header(xmpp::NS_CLIENT, Some("example.com"), None, Some("1"));
        let ev = c.input(format!("{h}<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>").as_bytes());
        assert!(ev.is_empty());
        assert!(c.take_output().unwrap().contains("mechanism='PLAIN'"));
        c.input(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
        assert!(c.take_output().unwrap().starts_with("<?xml"));
        c.input(format!("{h}<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>").as_bytes());
        assert!(
            c.take_output()
                .unwrap()
                .contains("<resource>desk</resource>")
        );
        let ev = c.input(b"<iq type='result' id='alice-desk-1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@example.com/desk</jid></bind></iq>");
        assert_eq!(
            ev,
            vec![ClientEvent::Ready("alice@example.com/desk".into())]
        );
        let out = c.take_output().unwrap();
        assert!(out.contains("urn:xmpp:carbons:2") && out.ends_with("<presence/>"));
    }

    #[test]
    fn failed_auth_is_reported() {
        let jid = Jid::parse("alice@example.com").unwrap();
        let mut c = JabberCore::new(&jid, "bad", "desk");
        let h = xmpp::stream_header(xmpp::NS_CLIENT, Some("example.com"), None, Some("1"));
        c.input(format!("{h}<stream:features/>").as_bytes());
        let ev = c.input(
            b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>",
        );
        assert_eq!(
            ev,
            vec![ClientEvent::Failed(
                "authentication failed: not-authorized".into()
            )]
        );
    }
}
