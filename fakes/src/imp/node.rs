//! The sans-IO core of one IM&P node: c2s streams on 5222 and stanza routing.
//!
//! Grammar (as in quinn-proto): [`ImpNode::open`] a connection, feed it with
//! [`ImpNode::input`], tell it [`ImpNode::closed`], and drain [`ImpNode::poll_transmit`] after
//! every call. `now` is always an argument; the node has no clock and no RNG.
//!
//! Behaviour follows RFC 6120 (streams, SASL PLAIN, binding), RFC 6121 (chat routing, offline
//! delivery on initial presence), XEP-0280 (carbons), XEP-0203 (delay stamps) and XEP-0199
//! (ping), and the IM&P specifics of the spec (offline storage setting and the pre-12.5 error
//! text, spec 46).

use super::directory::{Directory, NodeDb, StoredMessage};
use connector::proto::stream::{StreamEvent, StreamParser};
use connector::proto::xml::{Element, NS_STREAM};
use connector::proto::xmpp::{self, Jid};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

/// Identifies a connection within a node.
pub type ConnId = u64;

/// The text IM&P before 12.5 returns when offline storage is off (spec 46).
pub const UNDELIVERABLE_TEXT: &str = "Message could not be delivered";

/// Static configuration of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's host name (`imp-a-1`).
    pub host: String,
    /// The XMPP domain.
    pub domain: String,
    /// Software version (major, minor).
    pub version: (u32, u32),
    /// Offline storage enabled (spec 46).
    pub offline_storage: bool,
    /// Multiple Device Messaging (carbons) enabled.
    pub mdm: bool,
}

/// Bytes or a close for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// Write these bytes.
    Bytes(String),
    /// Flush and close the connection.
    Close,
}

/// Counters a run reports and checks read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Connections accepted.
    pub connections: u64,
    /// Successful SASL authentications.
    pub logins: u64,
    /// Failed SASL authentications.
    pub auth_failures: u64,
    /// Chat messages routed to at least one device.
    pub messages_routed: u64,
    /// Messages stored for offline users.
    pub offline_stored: u64,
    /// Stored messages delivered at login.
    pub offline_delivered: u64,
    /// Messages discarded (offline storage off or queue full).
    pub discarded: u64,
    /// Carbons sent.
    pub carbons: u64,
    /// Stream errors sent (malformed XML, oversized stanzas, stanzas before auth, ...).
    pub stream_errors: u64,
    /// Stanza errors sent.
    pub stanza_errors: u64,
}

#[derive(Debug)]
enum State {
    /// Waiting for the client's stream header (first, or after SASL).
    Header { authed: Option<String> },
    /// Header exchanged, waiting for `<auth>`.
    Auth,
    /// Authenticated, waiting for `<bind>`.
    Bind { bare: String },
    /// Bound: stanzas flow.
    Ready { jid: Jid },
    /// Closed after an error or `</stream:stream>`.
    Closed,
}

#[derive(Debug)]
struct Conn {
    parser: StreamParser,
    state: State,
    /// Sent initial presence: eligible for chat delivery (RFC 6121 8.5.2.1.1).
    available: bool,
    carbons: bool,
    last_presence: Option<Element>,
}

/// One IM&P node.
pub struct ImpNode {
    cfg: NodeConfig,
    dir: Rc<Directory>,
    db: Rc<RefCell<NodeDb>>,
    conns: BTreeMap<ConnId, Conn>,
    /// bare JID → resource → connection.
    resources: BTreeMap<String, BTreeMap<String, ConnId>>,
    out: VecDeque<(ConnId, Transmit)>,
    next_conn: ConnId,
    stats: NodeStats,
}

impl ImpNode {
    /// A node serving the users of `dir` that are homed on `cfg.host`.
    pub fn new(cfg: NodeConfig, dir: Rc<Directory>, db: Rc<RefCell<NodeDb>>) -> Self {
        Self {
            cfg,
            dir,
            db,
            conns: BTreeMap::new(),
            resources: BTreeMap::new(),
            out: VecDeque::new(),
            next_conn: 1,
            stats: NodeStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// Configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// Number of bound resources (sessions).
    pub fn session_count(&self) -> usize {
        self.resources.values().map(BTreeMap::len).sum()
    }

    /// Registers a new client connection.
    pub fn open(&mut self) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        self.stats.connections += 1;
        self.conns.insert(
            id,
            Conn {
                parser: StreamParser::new(),
                state: State::Header { authed: None },
                available: false,
                carbons: false,
                last_presence: None,
            },
        );
        id
    }

    /// The next output, in the order produced.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<(ConnId, Transmit)> {
        self.out.pop_front()
    }

    /// The transport of `conn` is gone (peer closed, reset, or the driver gave up on it).
    pub fn closed(&mut self, _now: Duration, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn)
            && let State::Ready { jid } = c.state
        {
            let bare = jid.bare();
            if let Some(res) = self.resources.get_mut(&bare) {
                res.remove(jid.resource.as_deref().unwrap_or_default());
                if res.is_empty() {
                    self.resources.remove(&bare);
                }
            }
        }
    }

    /// Bytes received on `conn`.
    pub fn input(&mut self, now: Duration, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.parser.feed(bytes);
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if matches!(c.state, State::Closed) {
                return;
            }
            match c.parser.next_event() {
                Ok(None) => return,
                Ok(Some(StreamEvent::Open(header))) => self.on_header(conn, &header),
                Ok(Some(StreamEvent::Stanza(el))) => self.on_element(now, conn, el),
                Ok(Some(StreamEvent::Close)) => {
                    self.send_raw(conn, xmpp::STREAM_CLOSE.to_string());
                    self.close(conn);
                }
                Err(e) => {
                    let text = e.to_string();
                    self.stream_error(conn, e.condition(), &text);
                }
            }
        }
    }

    fn send(&mut self, conn: ConnId, el: &Element) {
        self.out
            .push_back((conn, Transmit::Bytes(el.to_xml_in(xmpp::NS_CLIENT))));
    }

    fn send_raw(&mut self, conn: ConnId, s: String) {
        self.out.push_back((conn, Transmit::Bytes(s)));
    }

    fn close(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = State::Closed;
        }
        self.out.push_back((conn, Transmit::Close));
    }

    fn stream_error(&mut self, conn: ConnId, condition: &str, text: &str) {
        self.stats.stream_errors += 1;
        tracing::debug!(node = %self.cfg.host, conn, condition, text, "stream error");
        // A header is owed if the peer never got ours (RFC 6120 4.9.1.2).
        if matches!(
            self.conns.get(&conn).map(|c| &c.state),
            Some(State::Header { .. })
        ) {
            let h = xmpp::stream_header(xmpp::NS_CLIENT, Some(&self.cfg.domain), None, Some("err"));
            self.send_raw(conn, h);
        }
        let err = xmpp::stream_error(condition, Some(text));
        self.send(conn, &err);
        self.send_raw(conn, xmpp::STREAM_CLOSE.to_string());
        self.close(conn);
    }

    fn stanza_error(
        &mut self,
        conn: ConnId,
        stanza: &Element,
        kind: &str,
        cond: &str,
        text: Option<&str>,
    ) {
        self.stats.stanza_errors += 1;
        let e = xmpp::error_reply(stanza, kind, cond, text);
        self.send(conn, &e);
    }

    fn on_header(&mut self, conn: ConnId, header: &Element) {
        let authed = match self.conns.get(&conn).map(|c| &c.state) {
            Some(State::Header { authed }) => authed.clone(),
            _ => {
                self.stream_error(conn, "invalid-xml", "unexpected stream header");
                return;
            }
        };
        if header.name != "stream" || header.ns != NS_STREAM {
            self.stream_error(conn, "invalid-namespace", "expected stream:stream");
            return;
        }
        let id = format!("{}-{conn}-{}", self.cfg.host, u8::from(authed.is_some()));
        let h = xmpp::stream_header(xmpp::NS_CLIENT, Some(&self.cfg.domain), None, Some(&id));
        self.send_raw(conn, h);
        let features = match &authed {
            None => Element::new("features", NS_STREAM).with_child(
                Element::new("mechanisms", xmpp::NS_SASL)
                    .with_child(Element::new("mechanism", xmpp::NS_SASL).with_text("PLAIN")),
            ),
            Some(_) => Element::new("features", NS_STREAM)
                .with_child(Element::new("bind", xmpp::NS_BIND))
                .with_child(
                    Element::new("session", xmpp::NS_SESSION)
                        .with_child(Element::new("optional", xmpp::NS_SESSION)),
                ),
        };
        self.send(conn, &features);
        let state = match authed {
            None => State::Auth,
            Some(bare) => State::Bind { bare },
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = state;
        }
    }

    fn on_element(&mut self, now: Duration, conn: ConnId, el: Element) {
        let state = match self.conns.get(&conn) {
            Some(c) => match &c.state {
                State::Auth => 0,
                State::Bind { .. } => 1,
                State::Ready { .. } => 2,
                _ => 3,
            },
            None => return,
        };
        match state {
            0 => self.on_auth(conn, &el),
            1 => self.on_bind(conn, &el),
            2 => self.on_stanza(now, conn, el),
            _ => {}
        }
    }

    fn on_auth(&mut self, conn: ConnId, el: &Element) {
        if !el.is("auth", xmpp::NS_SASL) {
            self.stream_error(conn, "not-authorized", "authenticate first");
            return;
        }
        if el.attr("mechanism") != Some("PLAIN") {
            let f = Element::new("failure", xmpp::NS_SASL)
                .with_child(Element::new("invalid-mechanism", xmpp::NS_SASL));
            self.send(conn, &f);
            return;
        }
        let user = xmpp::sasl_plain_decode(&el.text()).and_then(|(authcid, pw)| {
            let u = self.dir.by_authcid(&authcid, &self.cfg.domain)?;
            (u.password == pw && u.home == self.cfg.host).then(|| u.jid.clone())
        });
        match user {
            Some(bare) => {
                self.stats.logins += 1;
                self.send(conn, &Element::new("success", xmpp::NS_SASL));
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.parser.restart();
                    c.state = State::Header { authed: Some(bare) };
                }
            }
            None => {
                self.stats.auth_failures += 1;
                let f = Element::new("failure", xmpp::NS_SASL)
                    .with_child(Element::new("not-authorized", xmpp::NS_SASL));
                self.send(conn, &f);
            }
        }
    }

    fn on_bind(&mut self, conn: ConnId, el: &Element) {
        let Some(bind) = el.child("bind", xmpp::NS_BIND).filter(|_| el.name == "iq") else {
            self.stream_error(conn, "not-authorized", "bind a resource first");
            return;
        };
        let bare = match self.conns.get(&conn).map(|c| &c.state) {
            Some(State::Bind { bare }) => bare.clone(),
            _ => return,
        };
        let requested = bind
            .child("resource", xmpp::NS_BIND)
            .map(Element::text)
            .filter(|r| !r.is_empty());
        let resource = requested.unwrap_or_else(|| format!("r{conn}"));
        // A second login with the same resource replaces the first (RFC 6120 7.7.2.2).
        if let Some(old) = self
            .resources
            .get(&bare)
            .and_then(|r| r.get(&resource))
            .copied()
        {
            self.stream_error(old, "conflict", "replaced by a new session");
            self.closed(Duration::ZERO, old);
        }
        let jid = Jid::parse(&bare)
            .expect("directory JIDs are valid")
            .with_resource(&resource);
        let reply = xmpp::iq_result(
            el,
            Some(
                Element::new("bind", xmpp::NS_BIND)
                    .with_child(Element::new("jid", xmpp::NS_BIND).with_text(jid.to_string())),
            ),
        );
        self.send(conn, &reply);
        self.resources
            .entry(bare)
            .or_default()
            .insert(resource, conn);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = State::Ready { jid };
        }
    }

    fn jid_of(&self, conn: ConnId) -> Option<Jid> {
        match &self.conns.get(&conn)?.state {
            State::Ready { jid } => Some(jid.clone()),
            _ => None,
        }
    }

    fn on_stanza(&mut self, now: Duration, conn: ConnId, mut el: Element) {
        let Some(me) = self.jid_of(conn) else { return };
        // The server stamps `from` with the sender's full JID (RFC 6120 8.1.2.1).
        el.set_attr("from", me.to_string());
        match el.name.as_str() {
            "message" => self.on_message(now, conn, &me, el),
            "presence" => self.on_presence(now, conn, &me, el),
            "iq" => self.on_iq(conn, &me, el),
            _ => self.stream_error(
                conn,
                "unsupported-stanza-type",
                "expected message, presence or iq",
            ),
        }
    }

    fn on_iq(&mut self, conn: ConnId, me: &Jid, el: Element) {
        let kind = el.attr("type").unwrap_or("");
        if !matches!(kind, "get" | "set") {
            // Results and errors addressed to other entities are routed; to us they end here.
            if let Some(to) = el.attr("to").and_then(|t| Jid::parse(t).ok())
                && to.resource.is_some()
            {
                self.route_to_full(&to, &el);
            }
            return;
        }
        let to = el.attr("to").map(Jid::parse);
        let to_server = match &to {
            None => true,
            Some(Ok(j)) => j.local.is_none() || (j.resource.is_none() && j.bare() == me.bare()),
            Some(Err(_)) => {
                self.stanza_error(conn, &el, "modify", "jid-malformed", None);
                return;
            }
        };
        if !to_server {
            let to = to.and_then(Result::ok).expect("checked above");
            if to.resource.is_some() && self.route_to_full(&to, &el) {
                return;
            }
            self.stanza_error(conn, &el, "cancel", "service-unavailable", None);
            return;
        }
        let payload = el.elements().next().cloned();
        let reply = match payload.as_ref().map(|p| (p.name.as_str(), p.ns.as_str())) {
            Some(("ping", xmpp::NS_PING)) | Some(("session", xmpp::NS_SESSION)) => {
                Some(xmpp::iq_result(&el, None))
            }
            Some(("query", xmpp::NS_ROSTER)) if kind == "get" => Some(xmpp::iq_result(
                &el,
                Some(Element::new("query", xmpp::NS_ROSTER)),
            )),
            Some(("enable", xmpp::NS_CARBONS)) | Some(("disable", xmpp::NS_CARBONS))
                if self.cfg.mdm =>
            {
                let on = payload.as_ref().is_some_and(|p| p.name == "enable");
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.carbons = on;
                }
                Some(xmpp::iq_result(&el, None))
            }
            Some(("query", xmpp::NS_DISCO_INFO)) if kind == "get" => {
                Some(xmpp::iq_result(&el, Some(self.disco_info())))
            }
            _ => None,
        };
        match reply {
            Some(r) => self.send(conn, &r),
            None => self.stanza_error(conn, &el, "cancel", "service-unavailable", None),
        }
    }

    fn disco_info(&self) -> Element {
        let mut q = Element::new("query", xmpp::NS_DISCO_INFO).with_child(
            Element::new("identity", xmpp::NS_DISCO_INFO)
                .with_attr("category", "server")
                .with_attr("type", "im")
                .with_attr("name", "hmsim IM and Presence"),
        );
        let mut features = vec![xmpp::NS_DISCO_INFO, xmpp::NS_PING, xmpp::NS_RECEIPTS];
        if self.cfg.mdm {
            features.push(xmpp::NS_CARBONS);
        }
        for f in features {
            q = q.with_child(Element::new("feature", xmpp::NS_DISCO_INFO).with_attr("var", f));
        }
        q
    }

    fn on_presence(&mut self, now: Duration, conn: ConnId, me: &Jid, el: Element) {
        if let Some(to) = el.attr("to") {
            // Directed presence: route to the contact's resources.
            if let Ok(to) = Jid::parse(to) {
                self.deliver_to_bare(&to.bare(), &el, None);
            }
            return;
        }
        let unavailable = el.attr("type") == Some("unavailable");
        let first = {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let first = !c.available && !unavailable;
            c.available = !unavailable;
            c.last_presence = Some(el);
            first
        };
        if first {
            self.flush_offline(now, conn, me);
        }
    }

    /// Delivers stored messages at initial presence, in order, with delay stamps (spec 46, 48).
    fn flush_offline(&mut self, _now: Duration, conn: ConnId, me: &Jid) {
        let queued = self.db.borrow_mut().take(&me.bare());
        for m in queued {
            let mut stanza = m.stanza;
            stanza.set_attr("to", me.to_string());
            let stamp = iso8601(m.at);
            stanza = stanza.with_child(
                Element::new("delay", xmpp::NS_DELAY)
                    .with_attr("from", self.cfg.domain.clone())
                    .with_attr("stamp", stamp)
                    .with_text("Offline Storage"),
            );
            self.stats.offline_delivered += 1;
            self.send(conn, &stanza);
        }
    }

    fn on_message(&mut self, now: Duration, conn: ConnId, me: &Jid, el: Element) {
        let to = match el.attr("to").map(Jid::parse) {
            None => Jid::parse(&me.bare()).expect("valid"),
            Some(Ok(j)) => j,
            Some(Err(_)) => {
                self.stanza_error(conn, &el, "modify", "jid-malformed", None);
                return;
            }
        };
        let kind = el.attr("type").unwrap_or("normal");
        if kind == "groupchat" {
            // 1:1 only here; group chat lives in persistent chat rooms (spec 42).
            self.stanza_error(
                conn,
                &el,
                "cancel",
                "not-allowed",
                Some("group chat is not served by this node"),
            );
            return;
        }
        if kind == "error" {
            return;
        }
        let Some(user) = self.dir.get(&to.bare()) else {
            self.stanza_error(conn, &el, "cancel", "service-unavailable", None);
            return;
        };
        if user.home != self.cfg.host {
            // Inter-node routing arrives with the cluster work (issue "fake IM&P cluster").
            self.stanza_error(
                conn,
                &el,
                "wait",
                "recipient-unavailable",
                Some("user homed on another node"),
            );
            return;
        }
        if kind == "chat" || kind == "normal" {
            self.send_carbons(conn, me, &el, "sent");
        }
        let delivered = if to.resource.is_some() && self.route_to_full(&to, &el) {
            self.received_carbons(&to, &el);
            1
        } else {
            self.deliver_to_bare(&to.bare(), &el, None)
        };
        if delivered > 0 {
            self.stats.messages_routed += 1;
            return;
        }
        // No available resource: offline storage, or discard (spec 46).
        if xmpp::body(&el).is_none() {
            return; // chat states and markers alone are never stored
        }
        if self.cfg.offline_storage {
            let stored = self.db.borrow_mut().store(
                &to.bare(),
                StoredMessage {
                    stanza: el,
                    at: now,
                },
            );
            if stored {
                self.stats.offline_stored += 1;
            } else {
                self.stats.discarded += 1;
            }
        } else {
            self.stats.discarded += 1;
            if self.cfg.version < (12, 5) {
                self.stanza_error(
                    conn,
                    &el,
                    "cancel",
                    "service-unavailable",
                    Some(super::node::UNDELIVERABLE_TEXT),
                );
            }
        }
    }

    /// Delivers to every available resource of `bare` (MDM: all devices); returns how many.
    fn deliver_to_bare(&mut self, bare: &str, el: &Element, except: Option<ConnId>) -> usize {
        let targets: Vec<ConnId> = self
            .resources
            .get(bare)
            .map(|r| r.values().copied().collect())
            .unwrap_or_default();
        let mut n = 0;
        for t in targets {
            if Some(t) == except || !self.conns.get(&t).is_some_and(|c| c.available) {
                continue;
            }
            self.send(t, el);
            n += 1;
        }
        n
    }

    fn route_to_full(&mut self, to: &Jid, el: &Element) -> bool {
        let target = self
            .resources
            .get(&to.bare())
            .and_then(|r| r.get(to.resource.as_deref().unwrap_or_default()))
            .copied();
        match target {
            Some(t) => {
                self.send(t, el);
                true
            }
            None => false,
        }
    }

    /// XEP-0280: the sender's other carbon-enabled resources get a copy of what it sent.
    fn send_carbons(&mut self, from_conn: ConnId, me: &Jid, el: &Element, kind: &str) {
        if !self.cfg.mdm || el.child("private", xmpp::NS_CARBONS).is_some() {
            return;
        }
        let targets: Vec<(ConnId, String)> = self
            .resources
            .get(&me.bare())
            .map(|r| {
                r.iter()
                    .filter(|(_, c)| **c != from_conn)
                    .map(|(res, c)| (*c, res.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (t, res) in targets {
            if !self.conns.get(&t).is_some_and(|c| c.carbons) {
                continue;
            }
            let wrapper = carbon(&me.bare(), &me.with_resource(&res).to_string(), kind, el);
            self.stats.carbons += 1;
            self.send(t, &wrapper);
        }
    }

    /// XEP-0280: a message to one full JID is copied to the recipient's other resources.
    fn received_carbons(&mut self, to: &Jid, el: &Element) {
        if !self.cfg.mdm {
            return;
        }
        let targets: Vec<(ConnId, String)> = self
            .resources
            .get(&to.bare())
            .map(|r| {
                r.iter()
                    .filter(|(res, _)| Some(res.as_str()) != to.resource.as_deref())
                    .map(|(res, c)| (*c, res.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (t, res) in targets {
            if !self.conns.get(&t).is_some_and(|c| c.carbons) {
                continue;
            }
            let wrapper = carbon(
                &to.bare(),
                &to.with_resource(&res).to_string(),
                "received",
                el,
            );
            self.stats.carbons += 1;
            self.send(t, &wrapper);
        }
    }
}

/// Wraps `inner` as a XEP-0280 carbon of `kind` (`sent` or `received`) for `to`.
fn carbon(bare: &str, to: &str, kind: &str, inner: &Element) -> Element {
    Element::new("message", xmpp::NS_CLIENT)
        .with_attr("from", bare)
        .with_attr("to", to)
        .with_attr("type", inner.attr("type").unwrap_or("chat"))
        .with_child(
            Element::new(kind, xmpp::NS_CARBONS)
                .with_child(Element::new("forwarded", xmpp::NS_FORWARD).with_child(inner.clone())),
        )
}

/// XEP-0082 timestamp of a simulated time, with the simulation starting at the Unix epoch
/// plus one day offset-free: deterministic and parseable by any XMPP client.
pub fn iso8601(t: Duration) -> String {
    // The simulation epoch is fixed at 2026-01-01T00:00:00Z (see sim::runner).
    const EPOCH_DAYS: u64 = 20_454; // days from 1970-01-01 to 2026-01-01
    let secs = t.as_secs();
    let ms = t.subsec_millis();
    let days = EPOCH_DAYS + secs / 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_of_epoch_and_later() {
        assert_eq!(iso8601(Duration::ZERO), "2026-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601(Duration::from_millis(86_400_000 * 59 + 3_723_004)),
            "2026-03-01T01:02:03.004Z"
        );
    }
}
