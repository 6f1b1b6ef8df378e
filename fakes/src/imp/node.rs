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
//!
//! ## The cluster: routing between nodes
//!
//! A user is served by their *home* node only (the [`Directory`] says which). A stanza for a
//! user homed elsewhere is forwarded over the network, never through shared memory: the node
//! emits a [`PeerTransmit`] addressed to the peer node ([`ImpNode::poll_peer`]) and the driver
//! carries it over a node-to-node link (`driver::ROUTER_PORT`, standing in for IM&P's XCP
//! router peering). A link is an RFC 6120 *server-to-server style* stream: default namespace
//! [`NS_SERVER`] (`jabber:server`), the header's `from` names the sending node, and it is
//! one-way for stanzas (as s2s streams are): node A writes to B over A's outbound link, B
//! answers over its own. Only keepalive pings are answered on the same stream. The cluster's
//! internal network is trusted (no dialback, as IM&P's intra-cluster routing); a peer may still
//! only speak for users homed on it, anything else is dropped and counted.
//!
//! The receiving node delivers as if the sender were local: to every available resource, with
//! received carbons, or into offline storage on *the recipient's home node* (spec 46-48). Node
//! generated replies (the "Message could not be delivered" error of spec 46) are routed back to
//! the sender's home node the same way.
//!
//! ## Moving users: `see-other-host` (spec 65)
//!
//! When a PRG failover or fallback moves the users of a home node, the node ends each of their
//! c2s streams with a `see-other-host` stream error and its closing tag, then keeps reading the
//! stream until the client closes its side (RFC 6120 4.4: the closing party "continue[s] to
//! process data received"): a message the client wrote before it saw the error is routed as
//! from the session it was written in ([`Transmit::Closing`], [`CLOSE_WAIT_MAX`]).
//!
//! ## Group chat (spec 42)
//!
//! Stanzas addressed to `conference.<domain>` go to the node's XEP-0045 service
//! ([`super::muc`]); rooms live on the node that hosts them. Opening a connector session takes
//! the user out of ad-hoc rooms; composed presence changes reach persistent rooms.
//!
//! ## Presence composition (spec 53-55)
//!
//! Each user's home node keeps a presence table: one *device* presence per resource and at most
//! one *manual* (user-set) presence. The composed presence is the manual one if any, otherwise
//! the most recently updated device presence, otherwise unavailable. A presence is manual when
//! it carries `<hm-presence xmlns='urn:hmsim:presence:0' kind='manual'/>` ([`NS_HM_PRESENCE`]);
//! `kind='user'` marks a *user-level* presence, which the connector uses for Webex Do Not
//! Disturb (spec 54: "a user level setting ... all the user's logged in clients/devices"): it
//! beats manual and device presence alike, so Jabber cannot clear it, and lasts until the
//! resource that set it publishes another presence (DND expired or changed in Webex) or goes
//! away; anything else (`kind='device'` or no marker) is device presence. This marker is the
//! project's: in IM&P the distinction is internal (Jabber's user-set status versus presence
//! published for a device by the Webex connector). A manual presence is dropped when the
//! resource that set it goes unavailable, or replaced by `kind='manual'` with `type='unavailable'`.
//!
//! Contacts are the users in the [`Directory`] roster (the simulation derives it from the chat
//! workload's contact lists, symmetric). Whenever a user's composed presence changes, each
//! contact's available resources receive `<presence from='user@domain/resource'>` with the
//! composed `<show>`/`<status>` (or `type='unavailable'` from the bare JID); contacts homed on
//! another node get it through their home node. At a contact's initial presence it is told the
//! current composed presence of each of its contacts: directly for local users, through a
//! `type='probe'` to the home node of remote ones (RFC 6121 4.3).

use super::directory::{Directory, NodeDb, StoredMessage};
use super::muc::{Muc, MucHost};
use super::prg::{NS_PRG, Prg, PrgAction, PrgConfig, PrgState, RemoteViews};
use connector::proto::stream::{STANZA_BYTES_MAX, StreamEvent, StreamParser};
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

/// Default namespace of node-to-node (router) streams, as on RFC 6120 server-to-server streams.
pub const NS_SERVER: &str = "jabber:server";

/// The project's namespace that marks a presence as manual (user-set) or device presence
/// (spec 53): `<hm-presence xmlns='urn:hmsim:presence:0' kind='manual'/>`.
pub const NS_HM_PRESENCE: &str = "urn:hmsim:presence:0";

/// Most device presences kept per user: a user runs a few Jabber devices plus the connector's
/// session; a peer cannot grow the table past this (further resources are not composed).
pub const DEVICE_PRESENCES_MAX: usize = 16;

/// A stanza for a peer node of the same cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTransmit {
    /// Host name of the peer node (`imp-a-2`).
    pub node: String,
    /// The serialized stanza, in the [`NS_SERVER`] stream namespace.
    pub bytes: String,
}

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
    /// Flush: the node wrote its closing tag and writes nothing more, but keeps reading until
    /// the peer closes its side (then [`Transmit::Close`] follows) or [`CLOSE_WAIT_MAX`]
    /// passes (RFC 6120 4.4: the peer may finish transmitting what it had written).
    Closing,
}

/// How long a node keeps reading a stream after writing its closing tag, waiting for the
/// client's (RFC 6120 4.4: "a reasonable amount of time"). A stanza the client wrote before it
/// saw the close arrives within one network trip, well under a second; the Jabber client
/// answers the close at once with its own. Five seconds covers a slow path many times over and
/// still frees the socket of a client that never answers.
pub const CLOSE_WAIT_MAX: Duration = Duration::from_secs(5);

/// Counters a run reports and checks read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Connections accepted.
    pub connections: u64,
    /// Successful SASL authentications.
    pub logins: u64,
    /// Failed SASL authentications.
    pub auth_failures: u64,
    /// SASL authentications refused for a wrong user or password (`not-authorized`).
    pub wrong_passwords: u64,
    /// c2s streams closed for not authenticating in time.
    pub auth_timeouts: u64,
    /// Logged-in c2s streams closed for silence (`IDLE_TIMEOUT_C2S`).
    pub idle_timeouts: u64,
    /// Bind requests refused for a malformed resource (RFC 7622).
    pub bad_resources: u64,
    /// Chat messages routed to at least one device.
    pub messages_routed: u64,
    /// Messages stored for offline users.
    pub offline_stored: u64,
    /// Stored messages delivered at login.
    pub offline_delivered: u64,
    /// Messages discarded (offline storage off or queue full).
    pub discarded: u64,
    /// Messages a connector session took for Webex while no Jabber device of the user was
    /// online: also stored for Jabber, or discarded (spec 46, 49).
    pub jabber_offline_on_webex: u64,
    /// Carbons sent.
    pub carbons: u64,
    /// Stream errors sent (malformed XML, oversized stanzas, stanzas before auth, ...).
    pub stream_errors: u64,
    /// Messages routed from a stream after the node closed it with `see-other-host`: the
    /// client wrote them before it saw the close (RFC 6120 4.4).
    pub drained_messages: u64,
    /// Stanza errors sent.
    pub stanza_errors: u64,
    /// Stanzas forwarded to a peer node (recipient homed there).
    pub forwarded: u64,
    /// Stanzas received from peer nodes.
    pub peer_received: u64,
    /// Stanzas from peers dropped: spoofed sender, or a recipient not homed here.
    pub peer_rejected: u64,
    /// Stanzas waiting for a peer that could not be reached, routed again to the node that
    /// serves their recipient now ([`ImpNode::reroute_waiting`]).
    pub rerouted: u64,
    /// Composed presence stanzas sent to contacts.
    pub presence_sent: u64,
    /// Stanzas for a connector session dropped for exceeding the component link's stanza
    /// limit (the message's sender gets a `policy-violation` error).
    pub component_oversize: u64,
    /// Jabber logins (resource binds) refused with `resource-constraint` at the node's JSM
    /// session limit ([`ImpNode::with_jsm_sessions_max`], spec 10).
    pub jsm_refused_logins: u64,
    /// Connector sessions refused with `resource-constraint` at the node's JSM session limit.
    pub jsm_refused_sessions: u64,
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
    /// Inbound node-to-node link, waiting for the peer's stream header.
    RouterHeader,
    /// Inbound node-to-node link from `peer`: stanzas flow.
    Router { peer: String },
    /// The node ended the session of `jid` and wrote its closing tag (`see-other-host`); it
    /// still reads what the client wrote before it saw the close (RFC 6120 4.4).
    Draining { jid: Jid },
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
    /// The resources bound in `resources`, kept as they are inserted and removed: the JSM
    /// limit is checked at every bind, and summing 12,500 users' maps each time made a node's
    /// login storm quadratic (issue 16).
    resources_bound: usize,
    out: VecDeque<(ConnId, Transmit)>,
    next_conn: ConnId,
    stats: NodeStats,
    /// Stanzas for peer nodes, drained by the driver after every call.
    peer_out: VecDeque<PeerTransmit>,
    /// Presence table of the users homed here, by bare JID.
    presence: BTreeMap<String, UserPresence>,
    /// Orders presence updates: "most recent" is by this counter, not by `now`, so two updates
    /// in one tick still have an order.
    presence_seq: u64,
    /// Ids of keepalive pings on outbound router links.
    next_ping: u64,
    /// RFC 6120 4.6.1 whitespace keepalives on c2s streams, every this long
    /// ([`Self::with_whitespace_keepalive`]); `None`: clients ping instead.
    whitespace_keepalive: Option<Duration>,
    /// How often the deployment's clients send a keepalive (ping or whitespace), when known:
    /// the silence after which a logged-in stream is taken for dead grows with it.
    client_keepalive: Option<Duration>,
    /// Connector sessions opened over XEP-0114 component links (`component.rs`): session
    /// connection → the component link carrying it.
    component_sessions: BTreeMap<ConnId, ConnId>,
    /// Presence Redundancy Group state (`prg.rs`); `None` for a node without PRG settings,
    /// which serves exactly the users homed on it.
    prg: Option<Prg>,
    /// Where the remote clusters' users are served (their PRG heartbeats), and who may speak
    /// for them.
    remote: RemoteViews,
    /// The XEP-0045 group chat service `conference.<domain>` (`muc.rs`, spec 42).
    muc: Muc,
    /// The authentication identity of the last SASL PLAIN attempt: the driver's brake on
    /// guessing counts failures per account ([`Self::last_auth_account`]).
    last_authcid: Option<String>,
    /// Most JSM sessions at once ([`Self::with_jsm_sessions_max`]); `None`: no limit.
    jsm_sessions_max: Option<usize>,
}

/// One presence as published by a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PresenceEntry {
    resource: String,
    show: Option<String>,
    status: Option<String>,
    seq: u64,
}

/// A user's presence table on the home node (spec 53-54).
#[derive(Debug, Clone, Default)]
struct UserPresence {
    /// A user-level presence (Webex DND, `kind='user'`), if any: it beats everything until the
    /// resource that set it publishes another presence or goes away.
    user_level: Option<PresenceEntry>,
    /// Manual (user-set) presence, if any.
    manual: Option<PresenceEntry>,
    /// Device presence by resource.
    devices: BTreeMap<String, PresenceEntry>,
    /// The composed presence last broadcast, to send only changes.
    last: Option<Element>,
}

impl UserPresence {
    /// User level beats manual, manual beats device; among devices the most recent update
    /// wins.
    fn composed(&self) -> Option<&PresenceEntry> {
        self.user_level
            .as_ref()
            .or(self.manual.as_ref())
            .or_else(|| self.devices.values().max_by_key(|e| e.seq))
    }

    /// Drops whatever `resource` set beyond its device presence (it went away).
    fn forget(&mut self, resource: &str) {
        if self.manual.as_ref().is_some_and(|m| m.resource == resource) {
            self.manual = None;
        }
        if self
            .user_level
            .as_ref()
            .is_some_and(|m| m.resource == resource)
        {
            self.user_level = None;
        }
    }
}

impl ImpNode {
    /// A node serving the users of `dir` that are homed on `cfg.host`.
    pub fn new(cfg: NodeConfig, dir: Rc<Directory>, db: Rc<RefCell<NodeDb>>) -> Self {
        let muc = Muc::new(&cfg.domain);
        Self {
            cfg,
            dir,
            db,
            conns: BTreeMap::new(),
            resources: BTreeMap::new(),
            resources_bound: 0,
            out: VecDeque::new(),
            next_conn: 1,
            stats: NodeStats::default(),
            peer_out: VecDeque::new(),
            presence: BTreeMap::new(),
            presence_seq: 0,
            next_ping: 0,
            whitespace_keepalive: None,
            client_keepalive: None,
            component_sessions: BTreeMap::new(),
            prg: None,
            remote: RemoteViews::default(),
            muc,
            last_authcid: None,
            jsm_sessions_max: None,
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

    /// Binds `bare/resource` to `conn`, keeping [`Self::session_count`]'s count.
    fn bind_resource(&mut self, bare: String, resource: String, conn: ConnId) {
        let res = self.resources.entry(bare).or_default();
        if res.insert(resource, conn).is_none() {
            self.resources_bound += 1;
        }
    }

    /// Number of bound resources (sessions).
    pub fn session_count(&self) -> usize {
        debug_assert_eq!(
            self.resources_bound,
            self.resources.values().map(BTreeMap::len).sum::<usize>()
        );
        self.resources_bound
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

    /// Registers an inbound node-to-node connection (on the router port). It is fed with
    /// [`ImpNode::input`] and closed with [`ImpNode::closed`] like a client connection.
    pub fn open_router(&mut self) -> ConnId {
        let id = self.open();
        self.stats.connections -= 1; // counts client connections only
        if let Some(c) = self.conns.get_mut(&id) {
            c.state = State::RouterHeader;
        }
        id
    }

    /// The next stanza for a peer node, in the order produced. Drain after every call, like
    /// [`ImpNode::poll_transmit`].
    #[must_use]
    pub fn poll_peer(&mut self) -> Option<PeerTransmit> {
        self.peer_out.pop_front()
    }

    /// The stream header this node opens an outbound link to `peer` with.
    pub fn router_header(&self, peer: &str) -> String {
        xmpp::stream_header(NS_SERVER, Some(&self.cfg.host), Some(peer), None)
    }

    /// A keepalive ping for the outbound link to `peer` (XEP-0199); the peer answers on the
    /// same stream, so any bytes back show the link is alive.
    pub fn router_ping(&mut self, peer: &str) -> String {
        self.next_ping += 1;
        Element::new("iq", NS_SERVER)
            .with_attr("type", "get")
            .with_attr("id", format!("{}-ping-{}", self.cfg.host, self.next_ping))
            .with_attr("from", self.cfg.host.clone())
            .with_attr("to", peer)
            .with_child(Element::new("ping", xmpp::NS_PING))
            .to_xml_in(NS_SERVER)
    }

    /// The transport of `conn` is gone (peer closed, reset, or the driver gave up on it).
    pub fn closed(&mut self, _now: Duration, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn)
            && let State::Ready { jid } = c.state
        {
            self.end_session(&jid, c.available);
        }
    }

    /// Forgets the session of `jid`: its resource, its presence (if it was available) and
    /// its rooms.
    fn end_session(&mut self, jid: &Jid, available: bool) {
        let bare = jid.bare();
        if let Some(res) = self.resources.get_mut(&bare) {
            if res
                .remove(jid.resource.as_deref().unwrap_or_default())
                .is_some()
            {
                self.resources_bound -= 1;
            }
            if res.is_empty() {
                self.resources.remove(&bare);
            }
        }
        if available {
            self.presence_gone(&bare, jid.resource.as_deref().unwrap_or_default());
        }
        let left = self.muc.resource_gone(jid);
        self.route_all(left);
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
                // A c2s stream belongs to one device: an oversize stanza closes it with
                // `policy-violation` (RFC 6120 section 13.12), refusing its sender alone.
                Ok(Some(StreamEvent::Skipped { .. })) => {}
                // Our closing tag is out already on a draining stream: the client answered it.
                Ok(Some(StreamEvent::Close)) if self.is_draining(conn) => self.close(conn),
                Ok(Some(StreamEvent::Close)) => {
                    self.send_raw(conn, xmpp::STREAM_CLOSE.to_string());
                    self.close(conn);
                }
                Err(_) if self.is_draining(conn) => self.close(conn),
                Err(e) => {
                    let text = e.to_string();
                    self.stream_error(conn, e.condition(), &text);
                }
            }
        }
    }

    fn send(&mut self, conn: ConnId, el: &Element) {
        if let Some(&link) = self.component_sessions.get(&conn) {
            return self.send_to_component(conn, link, el);
        }
        if self.is_draining(conn) {
            // Nothing follows the closing tag (RFC 6120 4.4), not even an error reply.
            return;
        }
        self.out
            .push_back((conn, Transmit::Bytes(el.to_xml_in(xmpp::NS_CLIENT))));
    }

    fn send_raw(&mut self, conn: ConnId, s: String) {
        self.out.push_back((conn, Transmit::Bytes(s)));
    }

    /// Whether `conn` is a stream this node closed and still reads ([`State::Draining`]).
    fn is_draining(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| matches!(c.state, State::Draining { .. }))
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
        if matches!(
            self.conns.get(&conn).map(|c| &c.state),
            Some(State::RouterHeader)
        ) {
            self.on_router_header(conn, header);
            return;
        }
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
                State::Router { .. } => 4,
                State::Draining { .. } => 5,
                _ => 3,
            },
            None => return,
        };
        match state {
            0 => self.on_auth(conn, &el),
            1 => self.on_bind(conn, &el),
            2 => self.on_stanza(now, conn, el),
            4 => self.on_peer_stanza(now, conn, el),
            5 => self.on_draining_stanza(now, conn, el),
            _ => {}
        }
    }

    /// A stanza on a stream this node closed with `see-other-host`: the client wrote it before
    /// it saw the close, and RFC 6120 4.4 has the closing side "continue to process data
    /// received". A message is routed as from the session it was written in; anything else
    /// acts on that session (presence, requests to the server, rooms it left) and is dropped.
    fn on_draining_stanza(&mut self, now: Duration, conn: ConnId, mut el: Element) {
        let Some(State::Draining { jid }) = self.conns.get(&conn).map(|c| &c.state) else {
            return;
        };
        let me = jid.clone();
        let to_room = el.attr("to").is_some_and(|t| self.muc.serves(t));
        if el.name != "message" || to_room {
            tracing::debug!(node = %self.cfg.host, conn, stanza = %el.name, "dropped after close");
            return;
        }
        el.set_attr("from", me.to_string());
        self.stats.drained_messages += 1;
        self.on_message(now, conn, &me, el);
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
        let plain = xmpp::sasl_plain_decode(&el.text());
        self.last_authcid = plain.as_ref().map(|(authcid, _)| authcid.clone());
        let user = plain.and_then(|(authcid, pw)| {
            let u = self.dir.by_authcid(&authcid, &self.cfg.domain)?;
            (u.password == pw).then(|| (u.jid.clone(), u.home.clone()))
        });
        // A user this node does not serve now (homed elsewhere, or moved by a PRG failover)
        // gets `temporary-auth-failure` (RFC 6120 6.5.11: try again later, elsewhere): the
        // Jabber client then tries the next server of its list.
        let user = match user {
            Some((bare, home)) if self.accepts_home(&home) => Some(bare),
            Some(_) => {
                self.stats.auth_failures += 1;
                let f = Element::new("failure", xmpp::NS_SASL)
                    .with_child(Element::new("temporary-auth-failure", xmpp::NS_SASL));
                self.send(conn, &f);
                return;
            }
            None => None,
        };
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
                self.stats.wrong_passwords += 1;
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
        if let Some(why) = requested.as_deref().and_then(resource_problem) {
            self.stats.bad_resources += 1;
            let reply = xmpp::error_reply(el, "modify", "bad-request", Some(why));
            self.send(conn, &reply);
            return;
        }
        // The node may have stopped serving the user between its SASL success and this bind
        // (a failover or fallback released its users then): send it where it is served now,
        // or the session would outlive the move on a node no longer serving it.
        let home = self
            .dir
            .get(&bare)
            .map(|u| u.home.clone())
            .unwrap_or_default();
        if !self.accepts_home(&home) {
            let server = self.server_of(&bare).unwrap_or(home);
            self.stream_error(conn, "see-other-host", &server);
            return;
        }
        let resource = requested.unwrap_or_else(|| format!("r{conn}"));
        let replaces = self
            .resources
            .get(&bare)
            .and_then(|r| r.get(&resource))
            .copied();
        // A new device beyond the JSM session limit is refused (RFC 6120 7.6.2.1: the
        // account reached a limit on connected resources); a replacement is not new.
        if replaces.is_none() && !self.jsm_admit(&bare, false) {
            let why = self.jsm_limit_text();
            let reply = xmpp::error_reply(el, "wait", "resource-constraint", Some(&why));
            self.send(conn, &reply);
            return;
        }
        // A second login with the same resource replaces the first (RFC 6120 7.7.2.2).
        if let Some(old) = replaces {
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
        self.bind_resource(bare, resource, conn);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = State::Ready { jid };
        }
    }

    /// Whether c2s connection `conn` has authenticated (SASL done), for the driver's
    /// authentication timeout. Node-to-node links count as authenticated (they have their own
    /// silence timeout).
    pub fn is_authenticated(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| match &c.state {
            State::Header { authed } => authed.is_some(),
            State::Auth => false,
            _ => true,
        })
    }

    /// The logged-in stream `conn` was silent for too long (the driver's idle timeout): ends
    /// it with `<connection-timeout/>` (RFC 6120 4.9.3.4), counted and logged.
    pub fn idle_timed_out(&mut self, conn: ConnId) {
        if !self.is_authenticated(conn) || self.is_draining(conn) {
            return;
        }
        self.stats.idle_timeouts += 1;
        let who = self.jid_of(conn).map(|j| j.to_string()).unwrap_or_default();
        tracing::info!(
            node = %self.cfg.host,
            conn,
            jid = %who,
            idle_timeouts = self.stats.idle_timeouts,
            "c2s stream silent: closing"
        );
        self.stream_error(conn, "connection-timeout", "no traffic in time");
    }

    /// The account (SASL authentication identity) of the last login attempt, right or wrong.
    pub fn last_auth_account(&self) -> Option<&str> {
        self.last_authcid.as_deref()
    }

    /// The authentication timeout of `conn` expired: ends the stream unless it logged in.
    pub fn auth_timed_out(&mut self, conn: ConnId) {
        if !self.is_authenticated(conn) {
            self.stats.auth_timeouts += 1;
            self.stream_error(conn, "connection-timeout", "no authentication in time");
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
        if el.attr("to").is_some_and(|t| self.muc.serves(t)) {
            return self.on_muc(&me, &el);
        }
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
            // Results and errors addressed to other entities are routed (to their home node if
            // need be); to us they end here.
            if el
                .attr("to")
                .and_then(|t| Jid::parse(t).ok())
                .is_some_and(|to| to.resource.is_some())
            {
                self.route_out(el);
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
            let home = self.server_of(&to.bare());
            if to.resource.is_some()
                && let Some(home) = home.filter(|h| *h != self.cfg.host)
            {
                self.forward(&home, &el);
                return;
            }
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
            // Directed presence: route to the contact's resources, on whichever node.
            if let Ok(to) = Jid::parse(to)
                && self.dir.get(&to.bare()).is_some()
            {
                self.route_out(el);
            }
            return;
        }
        // Setting or clearing a manual presence says nothing about this device's availability.
        let manual = el
            .child("hm-presence", NS_HM_PRESENCE)
            .and_then(|m| m.attr("kind"))
            == Some("manual");
        let unavailable = el.attr("type") == Some("unavailable") && !manual;
        let first = {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let first = !c.available && !unavailable;
            c.available = !unavailable;
            c.last_presence = Some(el.clone());
            first
        };
        self.presence_update(me, &el);
        if first {
            self.flush_offline(now, conn, me);
            self.send_contacts_presence(me);
        }
    }

    /// Records a broadcast presence of `me` in the table and tells contacts if the composed
    /// presence changed (spec 53).
    fn presence_update(&mut self, me: &Jid, el: &Element) {
        let bare = me.bare();
        let resource = me.resource.clone().unwrap_or_default();
        let kind = el
            .child("hm-presence", NS_HM_PRESENCE)
            .and_then(|m| m.attr("kind"));
        let manual = kind == Some("manual");
        let unavailable = el.attr("type") == Some("unavailable");
        self.presence_seq += 1;
        let entry = PresenceEntry {
            resource: resource.clone(),
            show: el.elements().find(|e| e.name == "show").map(Element::text),
            status: el
                .elements()
                .find(|e| e.name == "status")
                .map(Element::text),
            seq: self.presence_seq,
        };
        let p = self.presence.entry(bare.clone()).or_default();
        // Any other presence from the resource that set a user-level one replaces it (Webex
        // DND changed or expired, spec 54); nobody else's presence touches it.
        if p.user_level
            .as_ref()
            .is_some_and(|u| u.resource == resource)
        {
            p.user_level = None;
        }
        match (manual, unavailable) {
            (true, true) => p.manual = None,
            (true, false) => p.manual = Some(entry),
            (false, true) => {
                p.devices.remove(&resource);
                p.forget(&resource);
            }
            (false, false) if kind == Some("user") => p.user_level = Some(entry),
            (false, false) => {
                if p.devices.len() < DEVICE_PRESENCES_MAX || p.devices.contains_key(&resource) {
                    p.devices.insert(resource, entry);
                }
            }
        }
        self.presence_changed(&bare);
    }

    /// `resource` of `bare` went away without saying so (connection closed).
    fn presence_gone(&mut self, bare: &str, resource: &str) {
        let Some(p) = self.presence.get_mut(bare) else {
            return;
        };
        p.devices.remove(resource);
        p.forget(resource);
        self.presence_changed(bare);
    }

    /// The composed presence of `bare` as a stanza to `to` (unavailable when nothing is
    /// published).
    fn composed_presence(&self, bare: &str, to: &str) -> Element {
        let entry = self.presence.get(bare).and_then(UserPresence::composed);
        let mut el = Element::new("presence", xmpp::NS_CLIENT).with_attr("to", to);
        match entry {
            None => {
                el.set_attr("from", bare);
                el.set_attr("type", "unavailable");
            }
            Some(e) => {
                el.set_attr("from", format!("{bare}/{}", e.resource));
                if let Some(show) = &e.show {
                    el = el.with_child(Element::new("show", xmpp::NS_CLIENT).with_text(show));
                }
                if let Some(status) = &e.status {
                    el = el.with_child(Element::new("status", xmpp::NS_CLIENT).with_text(status));
                }
            }
        }
        el
    }

    /// Sends the composed presence of `bare` to every contact if it changed.
    fn presence_changed(&mut self, bare: &str) {
        let now = self.composed_presence(bare, "");
        let p = self.presence.entry(bare.to_string()).or_default();
        if p.last.as_ref() == Some(&now) {
            return;
        }
        p.last = Some(now.clone());
        // Persistent group chat rooms show followed users' composed presence (spec 42 (d)).
        let shown = self.muc.user_presence(bare, &now);
        self.route_all(shown);
        let contacts: Vec<String> = self.dir.contacts(bare).to_vec();
        for c in contacts {
            let el = self.composed_presence(bare, &c);
            self.stats.presence_sent += 1;
            self.route_out(el);
        }
    }

    /// At initial presence: the current presence of each of `me`'s contacts (RFC 6121 4.3).
    fn send_contacts_presence(&mut self, me: &Jid) {
        let contacts: Vec<String> = self.dir.contacts(&me.bare()).to_vec();
        for c in contacts {
            let Some(home) = self.server_of(&c) else {
                continue;
            };
            if home == self.cfg.host {
                let el = self.composed_presence(&c, &me.to_string());
                self.stats.presence_sent += 1;
                self.route_out(el);
            } else {
                let probe = Element::new("presence", xmpp::NS_CLIENT)
                    .with_attr("type", "probe")
                    .with_attr("from", me.to_string())
                    .with_attr("to", c);
                self.forward(&home, &probe);
            }
        }
    }

    /// Delivers stored messages at initial presence, in order, with delay stamps (spec 46, 48).
    fn flush_offline(&mut self, _now: Duration, conn: ConnId, me: &Jid) {
        let queued = self.db.borrow_mut().take(&me.bare());
        for m in queued {
            let mut stanza = m.stanza;
            stanza.set_attr("to", me.to_string());
            stanza = self.delay_stamped(stanza, m.at);
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
            // Group chat is for rooms of `conference.<domain>` (`muc.rs`, spec 42), not users.
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
            // An error a client sends (a connector session refusing a Jabber message that
            // Webex cannot take) goes to whom it names, and is never answered (RFC 6120
            // 8.3.1); it was dropped here, so its sender never learned why.
            self.route_out(el);
            return;
        }
        let Some(home) = self.server_of(&to.bare()) else {
            self.stanza_error(conn, &el, "cancel", "service-unavailable", None);
            return;
        };
        if kind == "chat" || kind == "normal" {
            self.send_carbons(conn, me, &el, "sent");
        }
        if home != self.cfg.host {
            // The recipient's home node delivers, stores or refuses (module docs).
            self.forward(&home, &el);
            return;
        }
        self.deliver_local(now, &to, el);
    }

    /// Delivers a message for a user homed here, from a local or a remote sender: to the
    /// addressed resource (plus received carbons) or every available resource. When no Jabber
    /// device of the user took it, it goes into offline storage for the user's Jabber, or is
    /// discarded with the pre-12.5 error routed back (spec 46), even when the user's connector
    /// session took it for Webex: the session is not a Jabber device (spec 46, 49).
    fn deliver_local(&mut self, now: Duration, to: &Jid, el: Element) {
        let to_full = to.resource.is_some() && self.route_to_full(to, &el);
        let delivered = if to_full {
            self.received_carbons(to, &el);
            1
        } else {
            self.deliver_to_bare(&to.bare(), &el, None)
        };
        if delivered > 0 {
            self.stats.messages_routed += 1;
        }
        let full_is_jabber = to_full && self.component_session(to).is_none();
        if full_is_jabber || self.jabber_available(&to.bare()) {
            return;
        }
        // No Jabber device online: offline storage, or discard (spec 46).
        if xmpp::body(&el).is_none() {
            return; // chat states and markers alone are never stored
        }
        if delivered > 0 {
            self.stats.jabber_offline_on_webex += 1;
        }
        if self.cfg.offline_storage {
            self.store_offline(now, to, el);
        } else {
            self.stats.discarded += 1;
            if self.cfg.version < (12, 5) {
                self.stats.stanza_errors += 1;
                let mut err = xmpp::error_reply(
                    &el,
                    "cancel",
                    "service-unavailable",
                    Some(UNDELIVERABLE_TEXT),
                );
                // From the recipient's bare JID, whichever resource was addressed.
                err.set_attr("from", to.bare());
                self.route_out(err);
            }
        }
    }

    /// Keeps `el` for `to`'s next Jabber login (spec 46, 48); counts it discarded when the
    /// user's store is full.
    fn store_offline(&mut self, now: Duration, to: &Jid, el: Element) {
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
    }

    /// Whether `bare` has an available Jabber device here: a resource that sent initial
    /// presence and is not a connector session (spec 46: the guide's "not using Jabber").
    fn jabber_available(&self, bare: &str) -> bool {
        self.resources.get(bare).is_some_and(|r| {
            r.values().any(|c| {
                !self.component_sessions.contains_key(c)
                    && self.conns.get(c).is_some_and(|c| c.available)
            })
        })
    }

    /// Routes a stanza this node produced or relays (`to` set) to a user of the cluster: a
    /// full JID reaches that resource, a bare JID every available resource, on this node or
    /// through the user's home node. Returns false when it reached nobody here.
    fn route_out(&mut self, el: Element) -> bool {
        let Some(to) = el.attr("to").and_then(|t| Jid::parse(t).ok()) else {
            return false;
        };
        let Some(home) = self.server_of(&to.bare()) else {
            return false;
        };
        if home != self.cfg.host {
            self.forward(&home, &el);
            return true;
        }
        if to.resource.is_some() {
            self.route_to_full(&to, &el)
        } else {
            self.deliver_to_bare(&to.bare(), &el, None) > 0
        }
    }

    /// Queues `el` for the peer node `node`, re-namespaced for the server-to-server stream.
    fn forward(&mut self, node: &str, el: &Element) {
        self.stats.forwarded += 1;
        let el = renamespace(el.clone(), xmpp::NS_CLIENT, NS_SERVER);
        self.peer_out.push_back(PeerTransmit {
            node: node.to_string(),
            bytes: el.to_xml_in(NS_SERVER),
        });
    }

    /// Where this node routes each home's users now: (home, serving node) for the homes of
    /// its PRG and of the remote clusters heard of. A link that cannot reach its peer routes
    /// what waits for it again when this changes ([`ImpNode::reroute_waiting`]).
    pub fn routes(&self) -> Vec<(String, String)> {
        let own = self.prg.iter().flat_map(|p| p.servers());
        own.chain(self.remote.servers())
            .map(|(h, s)| (h.to_string(), s.to_string()))
            .collect()
    }

    /// The stanzas `waiting` (in the order produced) for the link to `peer`, which cannot
    /// connect, routed again by this node's view now, as a router routes by its table when it
    /// sends rather than when it queued: a stanza whose recipient another node serves now (the
    /// PRG peer took `peer`'s users over, spec 65) goes to that node, or is delivered here
    /// (where the recipient's sessions are, or into offline storage). Held for `peer` instead,
    /// it would reach the recipient when `peer` came back, after everything sent to them
    /// since (explore seed 34: 3 minutes late, out of order in Webex). The rest keep waiting
    /// for `peer`: returned in order. Drain the outputs after.
    pub fn reroute_waiting(
        &mut self,
        now: Duration,
        peer: &str,
        waiting: Vec<String>,
    ) -> Vec<String> {
        let mut parser = StreamParser::new();
        parser.feed(
            xmpp::stream_header(NS_SERVER, Some(&self.cfg.host), Some(peer), None).as_bytes(),
        );
        let _ = parser.next_event();
        let mut keep = Vec::new();
        for bytes in waiting {
            parser.feed(bytes.as_bytes());
            let el = match parser.next_event() {
                Ok(Some(StreamEvent::Stanza(el))) => renamespace(el, NS_SERVER, xmpp::NS_CLIENT),
                _ => {
                    keep.push(bytes);
                    continue;
                }
            };
            let from = el.attr("from").and_then(|f| Jid::parse(f).ok());
            let to = el.attr("to").and_then(|t| Jid::parse(t).ok());
            let server = to.as_ref().and_then(|t| self.server_of(&t.bare()));
            match (from, to, server) {
                (Some(from), Some(to), Some(server)) if server != peer => {
                    self.stats.rerouted += 1;
                    if server == self.cfg.host {
                        self.take_routed(now, el, &from, &to);
                    } else {
                        self.forward(&server, &el);
                    }
                }
                _ => keep.push(bytes),
            }
        }
        keep
    }

    fn on_router_header(&mut self, conn: ConnId, header: &Element) {
        if header.name != "stream" || header.ns != NS_STREAM {
            self.stream_error(conn, "invalid-namespace", "expected stream:stream");
            return;
        }
        let peer = header.attr("from").unwrap_or_default().to_string();
        if peer.is_empty() || peer == self.cfg.host {
            self.stream_error(conn, "invalid-from", "a router link names its node");
            return;
        }
        let id = format!("{}-r{conn}", self.cfg.host);
        let h = xmpp::stream_header(NS_SERVER, Some(&self.cfg.host), Some(&peer), Some(&id));
        self.send_raw(conn, h);
        self.send_raw(conn, "<stream:features/>".into());
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = State::Router { peer };
        }
    }

    /// A peer speaks only for the users it may serve (its own, or its PRG peer's), and only
    /// to users this node may serve. Offline messages handed over at a PRG failover or
    /// fallback (delay-stamped by this domain) come from the recipient's PRG pair instead.
    /// A node of this cluster also passes on what it was sent for users it no longer serves
    /// ([`ImpNode::on_peer_stanza`]), from senders it may not speak for: that routing is
    /// trusted, except for senders this node serves itself (nobody else speaks for them).
    fn peer_may_send(&self, peer: &str, el: &Element, from: &Jid, to: &Jid) -> bool {
        let from_home = self.dir.get(&from.bare()).map(|u| u.home.clone());
        let to_home = self.dir.get(&to.bare()).map(|u| u.home.clone());
        let handover = el
            .child("delay", xmpp::NS_DELAY)
            .is_some_and(|d| d.attr("from") == Some(self.cfg.domain.as_str()))
            && to_home.as_deref().is_some_and(|h| self.may_serve(peer, h));
        let cluster_mate = self
            .prg
            .as_ref()
            .is_some_and(|p| p.config().cluster.iter().any(|h| h == peer));
        let from_ok = from_home.as_deref().is_some_and(|h| {
            self.may_serve(peer, h) || (cluster_mate && !self.may_serve(&self.cfg.host, h))
        });
        let to_ok = to_home
            .as_deref()
            .is_some_and(|h| self.may_serve(&self.cfg.host, h));
        (from_ok || handover) && to_ok
    }

    /// A stanza from a peer node: answer keepalives, then deliver to users homed here.
    fn on_peer_stanza(&mut self, now: Duration, conn: ConnId, el: Element) {
        let Some(State::Router { peer }) = self.conns.get(&conn).map(|c| &c.state) else {
            return;
        };
        let peer = peer.clone();
        let el = renamespace(el, NS_SERVER, xmpp::NS_CLIENT);
        self.stats.peer_received += 1;
        if el.name == "message"
            && el.attr("to") == Some(self.cfg.host.as_str())
            && let Some(prg) = el.child("prg", NS_PRG)
        {
            if self.remote.knows(&peer) {
                self.remote.merge(&peer, prg);
                return;
            }
            let actions = match self.prg.as_mut() {
                Some(p) => p.on_message(now, &peer, prg),
                None => Vec::new(),
            };
            self.apply_prg(now, actions);
            return;
        }
        if el.name == "iq" && el.attr("to") == Some(self.cfg.host.as_str()) {
            if el.attr("type") == Some("get") && el.child("ping", xmpp::NS_PING).is_some() {
                let pong = xmpp::iq_result(&el, None);
                self.out
                    .push_back((conn, Transmit::Bytes(pong.to_xml_in(NS_SERVER))));
            }
            return;
        }
        let from = el.attr("from").and_then(|f| Jid::parse(f).ok());
        let to = el.attr("to").and_then(|t| Jid::parse(t).ok());
        let (Some(from), Some(to)) = (from, to) else {
            self.stats.peer_rejected += 1;
            return;
        };
        if !self.peer_may_send(&peer, &el, &from, &to) {
            tracing::debug!(node = %self.cfg.host, %peer, "misrouted or spoofed stanza dropped");
            self.stats.peer_rejected += 1;
            return;
        }
        // Not served here (any more): pass it on to the serving node, unless that node is the
        // one that sent it (views differ for a moment during a failover): then this node keeps
        // it, which also bounds the hops at two.
        if let Some(server) = self.server_of(&to.bare())
            && server != self.cfg.host
            && server != peer
        {
            self.forward(&server, &el);
            return;
        }
        self.take_routed(now, el, &from, &to);
    }

    /// A routed stanza (from a peer, or routed again here) for a user this node serves.
    fn take_routed(&mut self, now: Duration, el: Element, from: &Jid, to: &Jid) {
        match (el.name.as_str(), el.attr("type")) {
            ("message", Some("error")) => {
                self.route_out(el);
            }
            ("message", Some("groupchat")) => {}
            ("message", _) => self.deliver_local(now, to, el),
            ("presence", Some("probe")) => {
                let reply = self.composed_presence(&to.bare(), &from.to_string());
                self.stats.presence_sent += 1;
                self.route_out(reply);
            }
            ("presence", _) | ("iq", _) => {
                self.route_out(el);
            }
            _ => self.stats.peer_rejected += 1,
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

/// Presence Redundancy Groups (spec 61-65, state machine in [`super::prg`]): which users this
/// node serves, the PRG timer, and the administrator's failover and fallback.
impl ImpNode {
    /// Sends RFC 6120 4.6.1 whitespace keepalives on c2s streams every `every` (`None`:
    /// none, clients ping).
    #[must_use]
    pub fn with_whitespace_keepalive(mut self, every: Option<Duration>) -> Self {
        self.whitespace_keepalive = every;
        self
    }

    /// Tells the node how often its clients send a keepalive (ping or whitespace).
    #[must_use]
    pub fn with_client_keepalive(mut self, every: Duration) -> Self {
        self.client_keepalive = Some(every);
        self
    }

    /// How long a logged-in c2s stream may stay silent: `IDLE_TIMEOUT_C2S`, or four of the
    /// clients' keepalive intervals when those are longer (a client that pings every 5
    /// minutes is silent for 5 minutes between pings, and alive).
    pub fn c2s_idle_timeout(&self) -> Duration {
        let floor = super::driver::IDLE_TIMEOUT_C2S;
        self.client_keepalive
            .map_or(floor, |every| floor.max(every * 4))
    }

    /// The interval of whitespace keepalives on c2s streams, if the node sends them: the
    /// driver writes a space on a stream it wrote nothing else to for an interval, and closes
    /// a stream its client has been silent on for three (the client sends its own whitespace,
    /// so silence means the stream or the client is gone).
    pub fn whitespace_keepalive(&self) -> Option<Duration> {
        self.whitespace_keepalive
    }

    /// Gives the node its PRG settings (ignored for a cluster of one node). The node's
    /// database remembers that it ran, so a restarted node starts `Unknown` until its peer
    /// says who serves whom.
    #[must_use]
    pub fn with_prg(mut self, mut cfg: PrgConfig) -> Self {
        self.remote = RemoteViews::new(cfg.remote.clone());
        // A node alone in its cluster has no group: nothing to heartbeat, nobody to fail to.
        if cfg.cluster.len() < 2 {
            return self;
        }
        let restarted = std::mem::replace(&mut self.db.borrow_mut().prg_started, true);
        // A high-availability change made while the node ran outlives its restart (spec 61).
        if let Some(ha) = self.db.borrow().prg_high_availability {
            cfg.high_availability = ha;
        }
        let mut prg = Prg::new(&self.cfg.host, cfg, restarted);
        if let Some(saved) = self.db.borrow().prg_view.as_ref() {
            prg.resume_view(saved);
        }
        self.prg = Some(prg);
        self
    }

    /// Gives the node a JSM session limit (IM&P's "Spark Interop JSM sessions", counter
    /// JsmHybridSessionsActive, spec 10): about 1.5 × the user capacity of its OVA. With
    /// Multiple Device Messaging every client device is a session (each Jabber device and each
    /// connector session); without it, every user with at least one.
    #[must_use]
    pub fn with_jsm_sessions_max(mut self, max: Option<usize>) -> Self {
        self.jsm_sessions_max = max;
        self
    }

    /// The JSM session limit in force, if any.
    pub fn jsm_sessions_max(&self) -> Option<usize> {
        self.jsm_sessions_max
    }

    /// JSM sessions open now: bound devices with MDM, users with a device without it.
    pub fn jsm_session_count(&self) -> usize {
        if self.cfg.mdm {
            self.session_count()
        } else {
            self.resources.len()
        }
    }

    /// Whether one more device of `bare` fits the JSM session limit; a refusal is counted
    /// (`connector`: a connector session, else a Jabber login) and logged.
    pub fn jsm_admit(&mut self, bare: &str, connector: bool) -> bool {
        let Some(max) = self.jsm_sessions_max else {
            return true;
        };
        // Without MDM a user's further devices share its one session.
        if !self.cfg.mdm && self.resources.contains_key(bare) {
            return true;
        }
        if self.jsm_session_count() < max {
            return true;
        }
        let stats = &mut self.stats;
        let refused = if connector {
            &mut stats.jsm_refused_sessions
        } else {
            &mut stats.jsm_refused_logins
        };
        *refused += 1;
        tracing::info!(
            node = %self.cfg.host,
            user = bare,
            connector,
            jsm_sessions_max = max,
            refused = *refused,
            "JSM session limit reached: session refused"
        );
        false
    }

    /// The text of a refusal at the JSM session limit.
    pub fn jsm_limit_text(&self) -> String {
        format!(
            "JSM session limit {} reached",
            self.jsm_sessions_max.unwrap_or_default()
        )
    }

    /// The administrator changes the PRG's high availability (spec 61): live on this node at
    /// once, and kept in the node's database across restarts. Returns false (and changes
    /// nothing) for a node without a PRG.
    pub fn set_prg_high_availability(&mut self, on: bool) -> bool {
        let Some(prg) = self.prg.as_mut() else {
            return false;
        };
        prg.set_high_availability(on);
        self.db.borrow_mut().prg_high_availability = Some(on);
        true
    }

    /// The PRG state (spec 65); `None` without PRG settings.
    pub fn prg_state(&self) -> Option<PrgState> {
        self.prg.as_ref().map(Prg::state)
    }

    /// The PRG half, for inspection.
    pub fn prg(&self) -> Option<&Prg> {
        self.prg.as_ref()
    }

    /// The PRG timer (heartbeats, failure detection, automatic fallback). The driver calls it
    /// about every second; drain [`ImpNode::poll_peer`] and [`ImpNode::poll_transmit`] after.
    pub fn prg_handle_timeout(&mut self, now: Duration) {
        let actions = match self.prg.as_mut() {
            Some(p) => p.handle_timeout(now),
            None => return,
        };
        self.apply_prg(now, actions);
    }

    /// Manual failover of this node (the administrator's "Failover" button): its users move
    /// to the PRG peer; this node closes their sessions once the peer has taken them over.
    /// Returns false when refused (no high availability, no peer, or not `Normal`).
    pub fn prg_failover(&mut self, now: Duration) -> bool {
        let actions = match self.prg.as_mut() {
            Some(p) => p.failover(now),
            None => return false,
        };
        let asked = !actions.is_empty();
        self.apply_prg(now, actions);
        asked
    }

    /// Fallback to this node: the peer gives its users back and closes their sessions there.
    /// Returns false when there is nothing to fall back.
    pub fn prg_fallback(&mut self, now: Duration) -> bool {
        let actions = match self.prg.as_mut() {
            Some(p) => p.fallback(now),
            None => return false,
        };
        let asked = !actions.is_empty();
        self.apply_prg(now, actions);
        asked
    }

    /// The node serving the user `bare` now, as this node sees it (its home node, or the home
    /// node's PRG peer after a failover); `None` for users not in the directory.
    pub fn serving_node(&self, bare: &str) -> Option<String> {
        self.server_of(bare)
    }

    /// Whether this node accepts logins of users homed on `home` now.
    fn accepts_home(&self, home: &str) -> bool {
        match &self.prg {
            Some(p) => p.accepts(home),
            None => home == self.cfg.host,
        }
    }

    /// Whether `node` may ever serve users homed on `home` (the home or its PRG peer).
    fn may_serve(&self, node: &str, home: &str) -> bool {
        if self.remote.knows(home) {
            return node == home || self.remote.peer_of(home) == Some(node);
        }
        match &self.prg {
            Some(p) => p.may_speak_for(node, home),
            None => node == home,
        }
    }

    /// The node serving the user `bare` now, in this node's view; `None` for unknown users.
    fn server_of(&self, bare: &str) -> Option<String> {
        let home = &self.dir.get(bare)?.home;
        if let Some(server) = self.remote.server_of(home) {
            return Some(server.to_string());
        }
        Some(match &self.prg {
            Some(p) => p.server_of(home).to_string(),
            None => home.clone(),
        })
    }

    /// `stanza` with a XEP-0203 delay stamp from this domain, unless it has one already (a
    /// message handed over at a failover keeps the time it was first stored).
    fn delay_stamped(&self, stanza: Element, at: Duration) -> Element {
        if stanza.child("delay", xmpp::NS_DELAY).is_some() {
            return stanza;
        }
        stanza.with_child(
            Element::new("delay", xmpp::NS_DELAY)
                .with_attr("from", self.cfg.domain.clone())
                .with_attr("stamp", iso8601(at))
                .with_text("Offline Storage"),
        )
    }

    fn apply_prg(&mut self, now: Duration, actions: Vec<PrgAction>) {
        // Every change of the view goes through here: keep it in the database (spec 65: a
        // restarted node resumes from it).
        if let Some(p) = &self.prg {
            let mut db = self.db.borrow_mut();
            if db.prg_view.as_ref() != Some(p.view()) {
                db.prg_view = Some(p.view().clone());
            }
        }
        for a in actions {
            match a {
                PrgAction::Send { to, stanza } => {
                    let el = renamespace(stanza, xmpp::NS_CLIENT, NS_SERVER);
                    self.peer_out.push_back(PeerTransmit {
                        node: to,
                        bytes: el.to_xml_in(NS_SERVER),
                    });
                }
                PrgAction::Release { home, server } => self.release(now, &home, &server),
            }
        }
    }

    /// This node stopped serving the users homed on `home`: their sessions end with a
    /// `see-other-host` stream error naming `server` (a connector session gets a `stop`
    /// notice), and their offline messages are handed to `server`, delay-stamped.
    fn release(&mut self, now: Duration, home: &str, server: &str) {
        let users: Vec<String> = self
            .resources
            .keys()
            .filter(|b| self.dir.get(b).is_some_and(|u| u.home == home))
            .cloned()
            .collect();
        for bare in users {
            let conns: Vec<ConnId> = self
                .resources
                .get(&bare)
                .map(|r| r.values().copied().collect())
                .unwrap_or_default();
            for c in conns {
                if self.component_sessions.contains_key(&c) {
                    let e = xmpp::stream_error("see-other-host", Some(server));
                    self.send(c, &e);
                    self.closed(now, c);
                } else {
                    self.send_away(c, server);
                }
            }
        }
        let stored: Vec<String> = self
            .db
            .borrow()
            .offline
            .keys()
            .filter(|b| self.dir.get(b).is_some_and(|u| u.home == home))
            .cloned()
            .collect();
        for bare in stored {
            let queued = self.db.borrow_mut().take(&bare);
            for m in queued {
                let el = self.delay_stamped(m.stanza, m.at);
                self.forward(server, &el);
            }
        }
    }

    /// Ends the c2s session on `conn` with a `see-other-host` stream error naming `server`:
    /// forgets the session first (resources, presence, rooms), then writes the error and the
    /// closing tag, and keeps reading the stream (RFC 6120 4.4, [`State::Draining`]): a
    /// message the client wrote before it saw the error is still routed.
    fn send_away(&mut self, conn: ConnId, server: &str) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let State::Ready { jid } = &c.state else {
            return; // only bound streams hold a session to move
        };
        let jid = jid.clone();
        let available = std::mem::take(&mut c.available);
        self.end_session(&jid, available);
        self.stats.stream_errors += 1;
        tracing::debug!(node = %self.cfg.host, conn, server, "stream error: see-other-host");
        self.send(conn, &xmpp::stream_error("see-other-host", Some(server)));
        self.send_raw(conn, xmpp::STREAM_CLOSE.to_string());
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = State::Draining { jid };
        }
        self.out.push_back((conn, Transmit::Closing));
    }
}

/// `el` with every element in namespace `from` moved to `to` (stanzas change their default
/// namespace between client and server streams, RFC 6120 4.8.3).
fn renamespace(mut el: Element, from: &str, to: &str) -> Element {
    if el.ns == from {
        el.ns = to.to_string();
    }
    for child in &mut el.children {
        if let connector::proto::xml::Node::Element(e) = child {
            let inner = std::mem::replace(e, Element::new("", ""));
            *e = renamespace(inner, from, to);
        }
    }
    el
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
    // The simulation epoch is fixed at 2026-01-01T00:00:00Z (see sim::world::EPOCH_SECS).
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

/// Connector sessions over XEP-0114 component links, driven by
/// [`super::component::ComponentService`].
///
/// A session is one more device of its user, like a Jabber client: a bound resource that is
/// available and carbon-enabled from the start, so inbound 1:1 messages fan out to it and the
/// user's own sends reach it as carbons (when MDM is on). It has no transport of its own:
/// whatever the node sends it goes to its component link with `to` set to the session's full
/// JID. Offline messages are not flushed to it (only a Jabber client's initial presence does).
impl ImpNode {
    /// Allocates a connection id for a component link. The link has no c2s state here; its
    /// output is queued with [`ImpNode::component_transmit`] and leaves through
    /// [`ImpNode::poll_transmit`] like any connection's.
    pub fn component_link_open(&mut self) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        id
    }

    /// Queues output for a component link, in order with everything else the node sends.
    pub fn component_transmit(&mut self, link: ConnId, t: Transmit) {
        self.out.push_back((link, t));
    }

    /// The (session, link) serving the full JID `full`, if it is a component session.
    pub fn component_session(&self, full: &Jid) -> Option<(ConnId, ConnId)> {
        let conn = *self
            .resources
            .get(&full.bare())?
            .get(full.resource.as_deref().unwrap_or_default())?;
        self.component_sessions.get(&conn).map(|&link| (conn, link))
    }

    /// Open component sessions on this node (IM&P's JsmHybridSessionsActive, spec 10).
    pub fn component_session_count(&self) -> usize {
        self.component_sessions.len()
    }

    /// Opens a session for the full JID `full` on `link`. An existing session with the same
    /// JID is taken over (the connector reconnected); a Jabber client bound to that resource
    /// is a conflict (`None`). The caller checks the user, home node and limits first.
    pub fn component_session_start(
        &mut self,
        now: Duration,
        link: ConnId,
        full: &Jid,
    ) -> Option<ConnId> {
        let bare = full.bare();
        let resource = full.resource.clone().unwrap_or_default();
        if let Some(old) = self
            .resources
            .get(&bare)
            .and_then(|r| r.get(&resource))
            .copied()
        {
            // A Jabber client holds that very resource: no session can take it.
            let &old_link = self.component_sessions.get(&old)?;
            if old_link != link {
                // Another connector node takes the user over (the cloud moved the user):
                // the old one must stop treating its session as open.
                let notice = self.session_end_notice(old, full, xmpp::SESSION_TAKEN_OVER);
                self.out
                    .push_back((old_link, Transmit::Bytes(notice.to_xml_in(xmpp::NS_CLIENT))));
            }
            self.component_session_stop(now, old);
        }
        let id = self.component_link_open();
        self.conns.insert(
            id,
            Conn {
                parser: StreamParser::new(),
                state: State::Ready { jid: full.clone() },
                available: true,
                carbons: true,
                last_presence: None,
            },
        );
        self.bind_resource(bare.clone(), resource, id);
        self.component_sessions.insert(id, link);
        // The user switched to Webex: out of ad-hoc group chats, followed in persistent rooms
        // (spec 42 (b), (d)).
        let composed = self.composed_presence(&bare, "");
        let out = self.muc.hm_session_opened(&bare, &composed);
        self.route_all(out);
        Some(id)
    }

    /// Ends a session, like a device going away (its presence is dropped).
    pub fn component_session_stop(&mut self, now: Duration, session: ConnId) {
        if self.component_sessions.remove(&session).is_some() {
            self.closed(now, session);
        }
    }

    /// A stanza (`message`, `presence` or `iq`, already in the `jabber:client` namespace) the
    /// connector sent as `session`: handled exactly as if that device had sent it.
    pub fn component_input(&mut self, now: Duration, session: ConnId, stanza: Element) {
        if self.component_sessions.contains_key(&session) {
            self.on_stanza(now, session, stanza);
        }
    }

    /// The component link is gone: every session it carried ends. Returns how many.
    pub fn component_link_closed(&mut self, now: Duration, link: ConnId) -> usize {
        let sessions: Vec<ConnId> = self
            .component_sessions
            .iter()
            .filter(|(_, l)| **l == link)
            .map(|(s, _)| *s)
            .collect();
        for s in &sessions {
            self.component_session_stop(now, *s);
        }
        sessions.len()
    }

    /// The `stop` notice telling a connector that the node ended its session `session`
    /// (`reason`: a stream error condition, or [`xmpp::SESSION_TAKEN_OVER`]).
    fn session_end_notice(&self, session: ConnId, full: &Jid, reason: &str) -> Element {
        Element::new("iq", xmpp::NS_CLIENT)
            .with_attr("type", "set")
            .with_attr("id", format!("{}-end-{session}", self.cfg.host))
            .with_attr("from", self.cfg.domain.clone())
            .with_attr("to", full.to_string())
            .with_child(
                Element::new("session", xmpp::NS_HM_SESSION)
                    .with_attr("action", "stop")
                    .with_attr("jid", full.to_string())
                    .with_attr("reason", reason),
            )
    }

    /// Output for a session goes to its link, addressed to the session's full JID. A stream
    /// error meant for the session (a Jabber client took its resource) becomes a session
    /// `stop` notice to the connector instead, and the session ends.
    fn send_to_component(&mut self, session: ConnId, link: ConnId, el: &Element) {
        let Some(full) = self.jid_of(session) else {
            return;
        };
        let bytes = if el.ns == NS_STREAM {
            self.component_sessions.remove(&session);
            let reason = el
                .elements()
                .find(|e| e.name != "text")
                .map(|e| e.name.clone())
                .unwrap_or_default();
            self.session_end_notice(session, &full, &reason)
                .to_xml_in(xmpp::NS_CLIENT)
        } else {
            // Addressed to the session as written, without copying the stanza.
            el.to_xml_in_with_attr(xmpp::NS_CLIENT, "to", &full.to_string())
        };
        if bytes.len() > STANZA_BYTES_MAX {
            return self.refuse_oversize(&full, el, bytes.len());
        }
        self.out.push_back((link, Transmit::Bytes(bytes)));
    }

    /// A stanza for a connector session that the connector's parser would refuse (over
    /// [`STANZA_BYTES_MAX`] as written; a c2s stanza under the limit grows when it is wrapped
    /// as a carbon or addressed to the session). The parser cannot skip a stanza it refuses,
    /// so it would end the component link and every session on it: the stanza is dropped here
    /// instead, counted and logged at WARN, and the sender of a message is told with a
    /// `policy-violation` error.
    fn refuse_oversize(&mut self, full: &Jid, el: &Element, size: usize) {
        self.stats.component_oversize += 1;
        tracing::warn!(
            session = %full,
            bytes = size,
            limit = STANZA_BYTES_MAX,
            "stanza too large for the component link: not sent, sender told"
        );
        let inner = el
            .child_ns(xmpp::NS_CARBONS)
            .and_then(|c| c.child("forwarded", xmpp::NS_FORWARD))
            .and_then(|f| f.elements().find(|e| e.name == "message"))
            .unwrap_or(el);
        if inner.name != "message"
            || inner.attr("type") == Some("error")
            || xmpp::body(inner).is_none()
        {
            return;
        }
        self.stats.stanza_errors += 1;
        let text =
            format!("Message too large for Webex: {size} bytes as XML, at most {STANZA_BYTES_MAX}");
        let err = xmpp::error_reply(inner, "modify", "policy-violation", Some(&text));
        self.route_out(err);
    }
}

/// Group chat (spec 42): stanzas for `conference.<domain>` go to the XEP-0045 service in
/// [`super::muc`]; whatever it returns is routed like any stanza this node produces.
impl ImpNode {
    /// The group chat service (rooms and counters).
    pub fn muc(&self) -> &Muc {
        &self.muc
    }

    fn on_muc(&mut self, me: &Jid, el: &Element) {
        // The service asks the node about users while it runs: take it out for the call.
        let mut muc = std::mem::replace(&mut self.muc, Muc::new(""));
        let out = muc.handle(me, el, &*self);
        self.muc = muc;
        self.route_all(out);
    }

    fn route_all(&mut self, stanzas: Vec<Element>) {
        for s in stanzas {
            self.route_out(s);
        }
    }
}

impl MucHost for ImpNode {
    fn on_webex(&self, bare: &str) -> bool {
        self.resources
            .get(bare)
            .is_some_and(|r| r.values().any(|c| self.component_sessions.contains_key(c)))
    }

    fn is_user(&self, bare: &str) -> bool {
        self.server_of(bare).is_some_and(|h| h == self.cfg.host)
    }
}

/// Longest resourcepart in bytes (RFC 7622 3.4: 1 to 1023 octets).
pub const RESOURCE_BYTES_MAX: usize = 1023;

/// Why `resource` is not a resourcepart a client may bind (RFC 7622 3.4, the PRECIS
/// OpaqueString profile): too long, only spaces, or holding control characters or the
/// invisible formatting characters (bidirectional overrides, zero-width marks) that make one
/// JID look like another.
pub fn resource_problem(resource: &str) -> Option<&'static str> {
    if resource.len() > RESOURCE_BYTES_MAX {
        return Some("resource longer than 1023 bytes (RFC 7622)");
    }
    if resource.chars().all(char::is_whitespace) {
        return Some("resource of whitespace only (RFC 7622)");
    }
    let invisible = |c: char| {
        matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}' | '\u{feff}')
    };
    if resource.chars().any(|c| c.is_control() || invisible(c)) {
        return Some("resource with control or invisible formatting characters (RFC 7622)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::imp::directory::UserRecord;

    const T: Duration = Duration::from_secs(1);

    fn user(name: &str, home: &str) -> UserRecord {
        UserRecord {
            userid: name.into(),
            jid: format!("{name}@example.com"),
            email: Some(format!("{name}@example.com")),
            password: format!("pw-{name}"),
            home: home.into(),
        }
    }

    /// alice and carol on n1, bob on n2; alice's contacts are bob and carol.
    fn cluster(storage: bool, version: (u32, u32)) -> (ImpNode, ImpNode) {
        let dir = Rc::new(
            Directory::new([user("alice", "n1"), user("bob", "n2"), user("carol", "n1")])
                .with_contacts([
                    ("alice@example.com".into(), "bob@example.com".into()),
                    ("alice@example.com".into(), "carol@example.com".into()),
                ]),
        );
        let node = |host: &str| {
            let cfg = NodeConfig {
                host: host.into(),
                domain: "example.com".into(),
                version,
                offline_storage: storage,
                mdm: true,
            };
            ImpNode::new(cfg, dir.clone(), Rc::default())
        };
        (node("n1"), node("n2"))
    }

    /// Everything written to `conn` since the last call.
    fn output(n: &mut ImpNode, conn: ConnId) -> String {
        let mut all = String::new();
        let mut keep = VecDeque::new();
        while let Some((c, t)) = n.poll_transmit() {
            match (c == conn, t) {
                (true, Transmit::Bytes(b)) => all.push_str(&b),
                (true, Transmit::Close | Transmit::Closing) => {}
                (false, t) => keep.push_back((c, t)),
            }
        }
        n.out = keep;
        all
    }

    /// Opens a stream on `n` and sends `name`'s SASL PLAIN; returns the connection.
    fn start_auth(n: &mut ImpNode, name: &str) -> ConnId {
        let c = n.open();
        let h = xmpp::stream_header(xmpp::NS_CLIENT, None, Some("example.com"), None);
        n.input(T, c, h.as_bytes());
        let auth = xmpp::sasl_plain_response(name, &format!("pw-{name}"));
        n.input(
            T,
            c,
            format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{auth}</auth>"
            )
            .as_bytes(),
        );
        c
    }

    /// Logs `name/res` in on `n` with initial presence; returns the connection.
    fn login(n: &mut ImpNode, name: &str, res: &str) -> ConnId {
        let c = start_auth(n, name);
        let h = xmpp::stream_header(xmpp::NS_CLIENT, None, Some("example.com"), None);
        n.input(T, c, h.as_bytes());
        n.input(T, c, format!("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{res}</resource></bind></iq>").as_bytes());
        n.input(
            T,
            c,
            b"<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq><presence/>",
        );
        let out = output(n, c);
        assert!(out.contains("<success"), "login of {name} failed: {out}");
        c
    }

    /// Carries `from`'s peer stanzas to `to` over a router connection; returns how many.
    fn pump(from: &mut ImpNode, to: &mut ImpNode) -> usize {
        let rc = to.open_router();
        to.input(T, rc, from.router_header(&to.cfg.host).as_bytes());
        let mut n = 0;
        while let Some(p) = from.poll_peer() {
            assert_eq!(p.node, to.cfg.host);
            assert!(p.bytes.starts_with('<'), "{}", p.bytes);
            to.input(T, rc, p.bytes.as_bytes());
            n += 1;
        }
        let _ = output(to, rc);
        n
    }

    fn say(n: &mut ImpNode, c: ConnId, to: &str, id: &str, body: &str) {
        let m = xmpp::chat_message(xmpp::NS_CLIENT, id, None, to, body);
        n.input(T, c, m.to_xml_in(xmpp::NS_CLIENT).as_bytes());
    }

    #[test]
    fn a_logged_in_stream_may_stay_silent_for_four_of_its_clients_keepalive_intervals() {
        let (node, _) = cluster(true, (15, 0));
        assert_eq!(
            node.c2s_idle_timeout(),
            super::super::driver::IDLE_TIMEOUT_C2S
        );
        let slow = node.with_client_keepalive(Duration::from_secs(300));
        assert_eq!(slow.c2s_idle_timeout(), Duration::from_secs(1200));
        let (node, _) = cluster(true, (15, 0));
        let fast = node.with_client_keepalive(Duration::from_secs(5));
        assert_eq!(
            fast.c2s_idle_timeout(),
            super::super::driver::IDLE_TIMEOUT_C2S
        );
    }

    #[test]
    fn group_chat_rooms_follow_spec_42_when_a_connector_session_opens() {
        let (mut n1, _) = cluster(true, (14, 0));
        let a = login(&mut n1, "alice", "desk");
        let c = login(&mut n1, "carol", "desk");
        let muc = super::super::muc::NS_MUC_USER;
        let join = |room: &str, nick: &str| {
            format!(
                "<presence to='{room}@conference.example.com/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
            )
        };
        let invite = |room: &str| {
            format!(
                "<message id='i-{room}' to='{room}@conference.example.com'><x xmlns='{muc}'><invite to='carol@example.com'/></x></message>"
            )
        };
        for room in ["adhoc", "pers"] {
            n1.input(T, a, join(room, "alice").as_bytes());
            n1.input(T, a, invite(room).as_bytes());
            assert!(output(&mut n1, c).contains("<invite from='alice@example.com/desk'"));
            n1.input(T, c, join(room, "carol").as_bytes());
        }
        n1.input(T, a, b"<iq type='set' id='cfg' to='pers@conference.example.com'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>");
        n1.input(T, a, b"<message type='groupchat' id='g1' to='adhoc@conference.example.com'><body>hi all</body></message>");
        assert!(output(&mut n1, c).contains("hi all"));
        let _ = output(&mut n1, a);
        // Carol switches to Webex: the connector opens her session.
        let link = n1.component_link_open();
        let full = Jid::parse("carol@example.com/hm-webex").unwrap();
        assert!(n1.component_session_start(T, link, &full).is_some());
        let seen = output(&mut n1, a);
        assert!(
            seen.contains("from='adhoc@conference.example.com/carol' to='alice@example.com/desk' type='unavailable'")
                && seen.contains("code='333'"),
            "{seen}"
        );
        assert!(output(&mut n1, c).contains("code='110'"));
        assert!(
            !n1.muc()
                .room("adhoc")
                .unwrap()
                .occupants
                .contains_key("carol")
        );
        assert!(
            n1.muc()
                .room("pers")
                .unwrap()
                .occupants
                .contains_key("carol")
        );
        // A new invitation to her is dropped silently: nothing to her, no error to alice.
        n1.input(T, a, invite("adhoc").as_bytes());
        assert!(!output(&mut n1, c).contains("<invite"));
        assert!(output(&mut n1, a).is_empty());
        assert_eq!(n1.muc().stats().invites_dropped_hm, 1);
    }

    #[test]
    fn message_to_a_user_homed_on_another_node_crosses_the_router_link() {
        let (mut n1, mut n2) = cluster(true, (14, 0));
        let a = login(&mut n1, "alice", "desk");
        let b = login(&mut n2, "bob", "desk");
        pump(&mut n2, &mut n1); // presence probes
        pump(&mut n1, &mut n2);
        let _ = (output(&mut n1, a), output(&mut n2, b));
        say(&mut n1, a, "bob@example.com", "m1", "hello");
        assert!(output(&mut n1, a).is_empty(), "no error for the sender");
        let forwarded = n1.stats().forwarded;
        let fwd: Vec<PeerTransmit> = std::iter::from_fn(|| n1.poll_peer()).collect();
        assert_eq!(fwd.len(), 1, "{fwd:?}");
        assert!(
            fwd[0].bytes.starts_with("<message") && !fwd[0].bytes.contains("xmlns='jabber:client'")
        );
        n1.peer_out.extend(fwd);
        assert_eq!(pump(&mut n1, &mut n2), 1);
        let got = output(&mut n2, b);
        assert!(got.contains("<body>hello</body>"), "{got}");
        assert!(got.contains("from='alice@example.com/desk'"), "{got}");
        assert!(
            !got.contains("jabber:server"),
            "re-namespaced for c2s: {got}"
        );
        assert_eq!(n1.stats().forwarded, forwarded);
        assert_eq!(n2.stats().messages_routed, 1);
    }

    #[test]
    fn offline_message_is_stored_on_the_recipients_home_node_and_replayed_with_delay() {
        let (mut n1, mut n2) = cluster(true, (14, 0));
        let a = login(&mut n1, "alice", "desk");
        say(&mut n1, a, "bob@example.com", "m1", "first");
        say(&mut n1, a, "bob@example.com", "m2", "second");
        pump(&mut n1, &mut n2);
        assert_eq!(n1.stats().offline_stored, 0, "not on the sender's node");
        assert_eq!(n2.stats().offline_stored, 2);
        // Replay happens at bob's initial presence (its content is checked in
        // `replay_carries_delay_stamps_in_send_order`).
        login(&mut n2, "bob", "desk");
        assert_eq!(n2.stats().offline_delivered, 2);
    }

    #[test]
    fn replay_carries_delay_stamps_in_send_order() {
        let (mut n1, _) = cluster(true, (14, 0));
        let a = login(&mut n1, "alice", "desk");
        say(&mut n1, a, "carol@example.com", "m1", "first");
        say(&mut n1, a, "carol@example.com", "m2", "second");
        let c = n1.open();
        let h = xmpp::stream_header(xmpp::NS_CLIENT, None, Some("example.com"), None);
        n1.input(T, c, h.as_bytes());
        let auth = xmpp::sasl_plain_response("carol", "pw-carol");
        n1.input(
            T,
            c,
            format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{auth}</auth>"
            )
            .as_bytes(),
        );
        n1.input(T, c, h.as_bytes());
        n1.input(T, c, b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq><presence/>");
        let out = output(&mut n1, c);
        let (first, second) = (out.find("first").unwrap(), out.find("second").unwrap());
        assert!(first < second, "{out}");
        assert_eq!(out.matches("urn:xmpp:delay").count(), 2, "{out}");
        assert!(out.contains("stamp='2026-01-01T00:00:01.000Z'"), "{out}");
    }

    /// Logs `name/res` in on `n` up to the bind; returns what the node answered.
    fn try_bind(n: &mut ImpNode, name: &str, res: &str) -> String {
        let c = start_auth(n, name);
        let h = xmpp::stream_header(xmpp::NS_CLIENT, None, Some("example.com"), None);
        n.input(T, c, h.as_bytes());
        n.input(T, c, format!("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{res}</resource></bind></iq>").as_bytes());
        output(n, c)
    }

    #[test]
    fn the_jsm_limit_counts_every_device_with_mdm_and_refuses_the_next_bind() {
        let (n1, _) = cluster(true, (14, 0));
        let mut n1 = n1.with_jsm_sessions_max(Some(2));
        assert!(try_bind(&mut n1, "alice", "desk").contains("<jid>"));
        assert!(try_bind(&mut n1, "alice", "phone").contains("<jid>"));
        assert_eq!(n1.jsm_session_count(), 2, "two devices, two JSM sessions");
        let out = try_bind(&mut n1, "carol", "desk");
        assert!(
            out.contains("resource-constraint") && out.contains("type='wait'"),
            "{out}"
        );
        assert!(out.contains("JSM session limit 2 reached"), "{out}");
        assert_eq!(n1.stats().jsm_refused_logins, 1);
        // A device logging in again with its resource replaces its session: not a new one.
        assert!(try_bind(&mut n1, "alice", "desk").contains("<jid>"));
        assert_eq!(
            (n1.jsm_session_count(), n1.stats().jsm_refused_logins),
            (2, 1)
        );
    }

    #[test]
    fn the_kept_session_count_follows_binds_replacements_and_closes() {
        // The count the JSM limit reads is kept, not summed (issue 16): it must match the
        // bound resources through every change.
        let (mut n1, _) = cluster(true, (14, 0));
        let desk = start_auth(&mut n1, "alice");
        let h = xmpp::stream_header(xmpp::NS_CLIENT, None, Some("example.com"), None);
        n1.input(T, desk, h.as_bytes());
        n1.input(T, desk, b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>desk</resource></bind></iq>");
        assert!(try_bind(&mut n1, "alice", "phone").contains("<jid>"));
        assert!(try_bind(&mut n1, "carol", "desk").contains("<jid>"));
        assert_eq!(n1.session_count(), 3);
        assert!(try_bind(&mut n1, "alice", "desk").contains("<jid>"));
        assert_eq!(
            n1.session_count(),
            3,
            "a replaced resource is still one session"
        );
        n1.closed(T, desk);
        let bound: usize = n1.resources.values().map(BTreeMap::len).sum();
        assert_eq!(n1.session_count(), bound);
    }

    #[test]
    fn without_mdm_a_user_holds_one_jsm_session_whatever_its_devices() {
        let (mut n1, _) = cluster(true, (14, 0));
        n1.cfg.mdm = false;
        let mut n1 = n1.with_jsm_sessions_max(Some(1));
        assert!(try_bind(&mut n1, "alice", "desk").contains("<jid>"));
        assert!(try_bind(&mut n1, "alice", "phone").contains("<jid>"));
        assert_eq!(n1.jsm_session_count(), 1);
        assert!(try_bind(&mut n1, "carol", "desk").contains("resource-constraint"));
    }

    #[test]
    fn storage_off_before_12_5_refuses_across_nodes_with_the_spec_text() {
        let (mut n1, mut n2) = cluster(false, (12, 0));
        let a = login(&mut n1, "alice", "desk");
        say(&mut n1, a, "bob@example.com", "m1", "anyone?");
        pump(&mut n1, &mut n2);
        assert_eq!(n2.stats().discarded, 1);
        assert!(
            pump(&mut n2, &mut n1) >= 1,
            "the error goes back to alice's node"
        );
        let got = output(&mut n1, a);
        assert!(
            got.contains("type='error'") && got.contains("id='m1'"),
            "{got}"
        );
        assert!(got.contains(UNDELIVERABLE_TEXT), "{got}");
    }

    #[test]
    fn storage_off_from_12_5_discards_silently() {
        let (mut n1, mut n2) = cluster(false, (12, 5));
        let a = login(&mut n1, "alice", "desk");
        say(&mut n1, a, "bob@example.com", "m1", "anyone?");
        pump(&mut n1, &mut n2);
        assert_eq!(n2.stats().discarded, 1);
        pump(&mut n2, &mut n1); // only bob's presence, answering alice's probe
        let got = output(&mut n1, a);
        assert!(!got.contains("type='error'"), "{got}");
    }

    /// Opens a connector session for `name` on `n`: (session, link).
    fn hm_session(n: &mut ImpNode, name: &str) -> (ConnId, ConnId) {
        let link = n.component_link_open();
        let full = Jid::parse(&format!("{name}@example.com/hm")).expect("valid");
        let s = n.component_session_start(T, link, &full).expect("opens");
        let _ = output(n, link);
        (s, link)
    }

    /// Spec 46, 49: the connector session is not a Jabber device. A message to bob, who has
    /// only a session, reaches the session and is stored for his Jabber, replayed at login.
    #[test]
    fn a_session_without_a_jabber_device_gets_the_message_and_jabber_gets_it_stored() {
        let (mut n1, mut n2) = cluster(true, (14, 0));
        let (_, link) = hm_session(&mut n2, "bob");
        let a = login(&mut n1, "alice", "desk");
        say(&mut n1, a, "bob@example.com", "m1", "while away");
        pump(&mut n1, &mut n2);
        assert!(
            output(&mut n2, link).contains("while away"),
            "Webex gets it"
        );
        assert_eq!(n2.stats().offline_stored, 1);
        assert_eq!(n2.stats().jabber_offline_on_webex, 1);
        login(&mut n2, "bob", "desk");
        assert_eq!(n2.stats().offline_delivered, 1, "replayed to Jabber");
        // With a Jabber device online nothing more is stored.
        say(&mut n1, a, "bob@example.com", "m2", "now online");
        pump(&mut n1, &mut n2);
        assert_eq!(n2.stats().offline_stored, 1);
    }

    /// Spec 46 with storage off before 12.5: the session still takes the message for Webex,
    /// and the sender is told "Message could not be delivered" (the guide's misleading error).
    #[test]
    fn storage_off_before_12_5_refuses_a_session_only_recipient_to_the_sender() {
        let (mut n1, mut n2) = cluster(false, (12, 0));
        let (_, link) = hm_session(&mut n2, "bob");
        let a = login(&mut n1, "alice", "desk");
        say(&mut n1, a, "bob@example.com", "m1", "anyone?");
        pump(&mut n1, &mut n2);
        assert!(output(&mut n2, link).contains("anyone?"));
        assert_eq!(n2.stats().discarded, 1);
        pump(&mut n2, &mut n1);
        let got = output(&mut n1, a);
        assert!(
            got.contains("id='m1'") && got.contains(UNDELIVERABLE_TEXT),
            "{got}"
        );
    }

    #[test]
    fn iq_between_full_jids_on_different_nodes_goes_both_ways() {
        let (mut n1, mut n2) = cluster(true, (14, 0));
        let a = login(&mut n1, "alice", "desk");
        let b = login(&mut n2, "bob", "desk");
        let ping =
            "<iq type='get' id='p1' to='bob@example.com/desk'><ping xmlns='urn:xmpp:ping'/></iq>";
        n1.input(T, a, ping.as_bytes());
        assert!(!output(&mut n1, a).contains("error"));
        pump(&mut n1, &mut n2);
        let got = output(&mut n2, b);
        assert!(
            got.contains("id='p1'") && got.contains("from='alice@example.com/desk'"),
            "{got}"
        );
        n2.input(
            T,
            b,
            b"<iq type='result' id='p1' to='alice@example.com/desk'/>",
        );
        pump(&mut n2, &mut n1);
        let got = output(&mut n1, a);
        assert!(
            got.contains("type='result'") && got.contains("id='p1'"),
            "{got}"
        );
    }

    #[test]
    fn groupchat_is_refused_with_a_stanza_error() {
        let (mut n1, _) = cluster(true, (14, 0));
        let a = login(&mut n1, "alice", "desk");
        n1.input(
            T,
            a,
            b"<message type='groupchat' id='g1' to='carol@example.com'><body>all</body></message>",
        );
        let got = output(&mut n1, a);
        assert!(
            got.contains("type='error'") && got.contains("id='g1'"),
            "{got}"
        );
        assert!(got.contains("<not-allowed"), "{got}");
        assert_eq!(n1.stats().messages_routed, 0);
    }

    #[test]
    fn a_peer_cannot_speak_for_users_it_does_not_home() {
        let (mut n1, mut n2) = cluster(true, (14, 0));
        let b = login(&mut n2, "bob", "desk");
        let rc = n2.open_router();
        n2.input(T, rc, n1.router_header("n2").as_bytes());
        // carol is homed on n1, so n1 may speak for her; bob's own node may not be spoofed.
        n2.input(T, rc, b"<message xmlns='jabber:server' type='chat' id='x' from='bob@example.com/evil' to='bob@example.com'><body>spoof</body></message>");
        assert_eq!(n2.stats().peer_rejected, 1);
        assert!(!output(&mut n2, b).contains("spoof"));
        n2.input(T, rc, b"<message type='chat' id='y' from='carol@example.com/r' to='bob@example.com'><body>legit</body></message>");
        assert!(output(&mut n2, b).contains("legit"));
        // Pings on the link are answered on the same stream.
        n2.input(T, rc, n1.router_ping("n2").as_bytes());
        assert!(output(&mut n2, rc).contains("type='result'"));
    }

    #[test]
    fn carbons_reach_the_senders_other_device_and_every_recipient_device_across_nodes() {
        let (mut n1, mut n2) = cluster(true, (14, 0));
        let a1 = login(&mut n1, "alice", "desk");
        let a2 = login(&mut n1, "alice", "phone");
        let b1 = login(&mut n2, "bob", "desk");
        let b2 = login(&mut n2, "bob", "phone");
        pump(&mut n1, &mut n2);
        pump(&mut n2, &mut n1);
        for c in [a1, a2] {
            let _ = output(&mut n1, c);
        }
        for c in [b1, b2] {
            let _ = output(&mut n2, c);
        }
        say(&mut n1, a1, "bob@example.com", "m1", "both");
        let sent = output(&mut n1, a2);
        assert!(
            sent.contains("<sent xmlns='urn:xmpp:carbons:2'") && sent.contains("both"),
            "{sent}"
        );
        pump(&mut n1, &mut n2);
        assert!(output(&mut n2, b1).contains("both"));
        assert!(output(&mut n2, b2).contains("both"));
        // A message to one full JID: the other device gets a received carbon.
        say(&mut n1, a1, "bob@example.com/desk", "m2", "only-desk");
        pump(&mut n1, &mut n2);
        assert!(output(&mut n2, b1).contains("only-desk"));
        let carbon = output(&mut n2, b2);
        assert!(
            carbon.contains("<received xmlns='urn:xmpp:carbons:2'") && carbon.contains("only-desk"),
            "{carbon}"
        );
    }

    /// A presence stanza marked manual or device.
    fn presence(n: &mut ImpNode, c: ConnId, show: &str, status: &str, kind: &str) {
        let p = format!(
            "<presence><show>{show}</show><status>{status}</status><hm-presence xmlns='urn:hmsim:presence:0' kind='{kind}'/></presence>"
        );
        n.input(T, c, p.as_bytes());
    }

    #[test]
    fn presence_manual_beats_device_and_latest_device_wins() {
        let (mut n1, _) = cluster(true, (14, 0));
        let c = login(&mut n1, "carol", "desk");
        let a1 = login(&mut n1, "alice", "desk");
        let a2 = login(&mut n1, "alice", "hm-webex");
        let _ = output(&mut n1, c);
        presence(&mut n1, a2, "away", "Away @ Webex", "device");
        let got = output(&mut n1, c);
        assert!(
            got.contains("from='alice@example.com/hm-webex'") && got.contains("Away @ Webex"),
            "{got}"
        );
        // Manual DND beats the device presence (spec 53) ...
        presence(&mut n1, a1, "dnd", "In a meeting", "manual");
        let got = output(&mut n1, c);
        assert!(
            got.contains("<show>dnd</show>") && got.contains("In a meeting"),
            "{got}"
        );
        // ... and a newer device presence does not change what contacts see.
        presence(&mut n1, a2, "chat", "Available @ Webex", "device");
        assert!(output(&mut n1, c).is_empty(), "composed presence unchanged");
        // Manual cleared: the most recent device presence shows.
        n1.input(T, a1, b"<presence type='unavailable'><hm-presence xmlns='urn:hmsim:presence:0' kind='manual'/></presence>");
        let got = output(&mut n1, c);
        assert!(
            got.contains("Available @ Webex") && got.contains("from='alice@example.com/hm-webex'"),
            "{got}"
        );
        // Every device gone: unavailable from the bare JID.
        n1.closed(T, a2);
        n1.closed(T, a1);
        let got = output(&mut n1, c);
        assert!(
            got.contains("type='unavailable'") && got.contains("from='alice@example.com'"),
            "{got}"
        );
    }

    /// Spec 54: Webex DND is user level: a newer Jabber presence, device or manual, does not
    /// replace it; only the connector's next presence (DND over in Webex) does.
    #[test]
    fn webex_dnd_is_user_level_until_webex_changes_it() {
        let (mut n1, _) = cluster(true, (14, 0));
        let c = login(&mut n1, "carol", "desk");
        let a1 = login(&mut n1, "alice", "desk");
        let a2 = login(&mut n1, "alice", "hm-webex");
        let _ = output(&mut n1, c);
        presence(&mut n1, a2, "dnd", "@ Webex", "user");
        let got = output(&mut n1, c);
        assert!(got.contains("<show>dnd</show>"), "{got}");
        presence(&mut n1, a1, "chat", "Available", "device");
        presence(&mut n1, a1, "chat", "Back", "manual");
        assert!(
            output(&mut n1, c).is_empty(),
            "Jabber cannot clear Webex DND"
        );
        presence(&mut n1, a2, "away", "@ Webex", "device");
        let got = output(&mut n1, c);
        assert!(
            got.contains("Back") && !got.contains("dnd"),
            "DND over in Webex: the manual presence shows: {got}"
        );
    }

    #[test]
    fn presence_reaches_contacts_on_other_nodes_and_probes_answer_at_login() {
        let (mut n1, mut n2) = cluster(true, (14, 0));
        let a = login(&mut n1, "alice", "desk");
        presence(&mut n1, a, "away", "Away @ Webex", "device");
        let _ = std::iter::from_fn(|| n1.poll_peer()).count(); // bob not online yet
        // bob logs in on n2: his node probes alice's home node, which answers.
        let b = login(&mut n2, "bob", "desk");
        assert_eq!(
            pump(&mut n2, &mut n1),
            2,
            "bob's presence to alice, and a probe"
        );
        assert!(pump(&mut n1, &mut n2) >= 1);
        let got = output(&mut n2, b);
        assert!(
            got.contains("Away @ Webex") && got.contains("from='alice@example.com/desk'"),
            "{got}"
        );
        // A later change on n1 is pushed to bob on n2.
        presence(&mut n1, a, "dnd", "Busy", "manual");
        pump(&mut n1, &mut n2);
        assert!(output(&mut n2, b).contains("<status>Busy</status>"));
        // carol is not bob's contact: she never sees his presence.
        assert!(n1.stats().presence_sent > 0);
    }

    /// The test cluster as a PRG pair.
    fn prg_pair(ha: bool) -> (ImpNode, ImpNode) {
        let (n1, n2) = cluster(true, (14, 0));
        let cfg = PrgConfig {
            cluster: vec!["n1".into(), "n2".into()],
            high_availability: ha,
            automatic_fallback: false,
            heartbeat_timeout: Duration::from_secs(60),
            remote: Vec::new(),
        };
        (n1.with_prg(cfg.clone()), n2.with_prg(cfg))
    }

    /// A high-availability PRG pair with alice logged in on n1 and bob on n2, each having
    /// seen the other's presence, their outputs read.
    fn prg_pair_with_alice_and_bob() -> (ImpNode, ImpNode, ConnId, ConnId) {
        let (mut n1, mut n2) = prg_pair(true);
        let a = login(&mut n1, "alice", "desk");
        let b = login(&mut n2, "bob", "desk");
        pump(&mut n1, &mut n2);
        pump(&mut n2, &mut n1);
        let _ = (output(&mut n1, a), output(&mut n2, b));
        (n1, n2, a, b)
    }

    /// Sends `name`'s SASL PLAIN on a new connection to `n`; returns the server's answer.
    fn try_auth(n: &mut ImpNode, name: &str) -> String {
        let c = start_auth(n, name);
        output(n, c)
    }

    #[test]
    fn a_silent_peers_users_move_only_with_high_availability() {
        for ha in [true, false] {
            let (_n1, mut n2) = prg_pair(ha);
            n2.prg_handle_timeout(Duration::ZERO);
            let refused = try_auth(&mut n2, "alice");
            assert!(refused.contains("<temporary-auth-failure"), "{refused}");
            // n1 never heartbeats: after the 60 s timeout n2 takes over only with HA.
            n2.prg_handle_timeout(Duration::from_secs(61));
            let got = try_auth(&mut n2, "alice");
            if ha {
                assert_eq!(n2.prg_state(), Some(PrgState::TakingOver));
                assert!(got.contains("<success"), "{got}");
            } else {
                assert_eq!(n2.prg_state(), Some(PrgState::Normal));
                assert!(got.contains("<temporary-auth-failure"), "spec 64: {got}");
            }
        }
    }

    /// Spec 61 on the IM&P side: the setting is live at once and survives a restart.
    #[test]
    fn a_high_availability_change_is_live_and_kept_across_a_restart() {
        let (_n1, mut n2) = prg_pair(false);
        let start_cfg = n2.prg().unwrap().config().clone();
        assert!(!start_cfg.high_availability);
        assert!(n2.set_prg_high_availability(true));
        n2.prg_handle_timeout(Duration::ZERO);
        n2.prg_handle_timeout(Duration::from_secs(61));
        assert_eq!(n2.prg_state(), Some(PrgState::TakingOver), "live at once");
        // Restarted on the same database with the start-up setting (off): the change holds.
        let (cfg, dir, db) = (n2.cfg.clone(), n2.dir.clone(), n2.db.clone());
        let restarted = ImpNode::new(cfg.clone(), dir.clone(), db).with_prg(start_cfg.clone());
        assert!(restarted.prg().unwrap().config().high_availability);
        // A new database starts from the configuration.
        let fresh = ImpNode::new(cfg, dir, Rc::default()).with_prg(start_cfg);
        assert!(!fresh.prg().unwrap().config().high_availability);
        // A node without a PRG has nothing to change.
        let (mut alone, _) = cluster(true, (14, 0));
        assert!(!alone.set_prg_high_availability(true));
    }

    /// Explore seed 6680: n2 crashed, n1 took its users over (Running in Backup Mode), and n1
    /// restarted before n2 came back. Who serves whom lives in the node's database, at the
    /// epoch the other clusters learned: the restarted pair must agree that n1 still serves
    /// bob, not both fall back to their own users at epoch 0 (the other clusters would keep
    /// routing bob's messages to n1 by the newer epoch, and n2 would drop them from n1).
    #[test]
    fn a_restarted_node_resumes_the_serving_view_of_its_database() {
        let (mut n1, n2) = prg_pair(true);
        n1.prg_handle_timeout(T);
        n1.prg_handle_timeout(T * 70);
        assert_eq!(n1.serving_node("bob@example.com").as_deref(), Some("n1"));
        let epoch_before = n1.prg().unwrap().epoch_of("n2");
        assert!(epoch_before > 0);
        let restart = |n: &ImpNode| {
            let start_cfg = n.prg().unwrap().config().clone();
            ImpNode::new(n.cfg.clone(), n.dir.clone(), n.db.clone()).with_prg(start_cfg)
        };
        let (mut n1, mut n2) = (restart(&n1), restart(&n2));
        assert_eq!(n1.prg_state(), Some(PrgState::Unknown));
        assert_eq!(n1.prg().unwrap().epoch_of("n2"), epoch_before);
        n1.prg_handle_timeout(T * 80);
        n2.prg_handle_timeout(T * 80);
        pump(&mut n1, &mut n2);
        pump(&mut n2, &mut n1);
        assert_eq!(n1.prg_state(), Some(PrgState::RunningInBackupMode));
        assert_eq!(n2.prg_state(), Some(PrgState::FailedOver));
        for n in [&n1, &n2] {
            assert_eq!(n.serving_node("bob@example.com").as_deref(), Some("n1"));
            assert_eq!(n.prg().unwrap().epoch_of("n2"), epoch_before);
        }
        // A new database starts from the configuration.
        let fresh = ImpNode::new(n1.cfg.clone(), n1.dir.clone(), Rc::default())
            .with_prg(n1.prg().unwrap().config().clone());
        assert_eq!(fresh.serving_node("bob@example.com").as_deref(), Some("n2"));
    }

    /// Explore seed 6680: a node passes on a stanza for a user it no longer serves to the
    /// node serving them, also when the sender is a user of another cluster (whose routing
    /// still named the first node). The receiving node trusts its cluster-mate's routing, and
    /// must not drop the message as spoofed: nobody else would ever deliver or store it.
    #[test]
    fn a_stanza_passed_on_by_a_cluster_mate_from_a_remote_user_is_delivered() {
        let dir = Rc::new(Directory::new([
            user("alice", "n1"),
            user("bob", "n2"),
            user("dave", "r1"),
        ]));
        let node = |host: &str| {
            let cfg = NodeConfig {
                host: host.into(),
                domain: "example.com".into(),
                version: (14, 0),
                offline_storage: true,
                mdm: true,
            };
            let prg = PrgConfig {
                cluster: vec!["n1".into(), "n2".into()],
                high_availability: true,
                automatic_fallback: false,
                heartbeat_timeout: Duration::from_secs(60),
                remote: vec![vec!["r1".into()]],
            };
            ImpNode::new(cfg, dir.clone(), Rc::default()).with_prg(prg)
        };
        let (mut n1, mut n2) = (node("n1"), node("n2"));
        let b = login(&mut n2, "bob", "desk");
        let _ = output(&mut n2, b);
        // r1 still routes bob to n1 (an older view of the pair): n1 passes it on to n2.
        let rc = n1.open_router();
        n1.input(T, rc, b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='r1' to='n1' version='1.0'>");
        n1.input(T, rc, b"<message type='chat' id='d1' from='dave@example.com/r' to='bob@example.com'><body>from afar</body></message>");
        assert_eq!(n1.stats().peer_rejected, 0);
        assert_eq!(pump(&mut n1, &mut n2), 1);
        assert_eq!(n2.stats().peer_rejected, 0);
        assert!(output(&mut n2, b).contains("from afar"));
        // Only a cluster-mate's routing is trusted: r1 cannot speak for bob.
        let rc = n2.open_router();
        n2.input(T, rc, b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='r1' to='n2' version='1.0'>");
        n2.input(T, rc, b"<message type='chat' id='x' from='bob@example.com/evil' to='bob@example.com'><body>spoof</body></message>");
        assert_eq!(n2.stats().peer_rejected, 1);
        assert!(!output(&mut n2, b).contains("spoof"));
    }

    #[test]
    fn manual_failover_closes_the_users_sessions_and_the_peer_delivers_to_them() {
        let (mut n1, mut n2, a, b) = prg_pair_with_alice_and_bob();
        assert!(n1.prg_failover(T));
        assert_eq!(n1.prg_state(), Some(PrgState::FailingOver));
        pump(&mut n1, &mut n2);
        assert_eq!(n2.prg_state(), Some(PrgState::TakingOver));
        pump(&mut n2, &mut n1);
        assert_eq!(n1.prg_state(), Some(PrgState::Idle));
        let closed = output(&mut n1, a);
        assert!(
            closed.contains("<see-other-host") && closed.contains("n2"),
            "{closed}"
        );
        assert_eq!(n1.session_count(), 0);
        // bob writes to alice while she is between nodes: n2 keeps it for her.
        say(&mut n2, b, "alice@example.com", "m1", "where are you");
        assert_eq!(n2.stats().offline_stored, 1);
        let a2 = login(&mut n2, "alice", "desk");
        let _ = a2;
        assert_eq!(n2.stats().offline_delivered, 1);
        assert!(try_auth(&mut n1, "alice").contains("<temporary-auth-failure"));
    }

    /// RFC 6120 4.4: the node that closed a stream at a failover still reads it until the
    /// client closes its side, and routes a message the client wrote before it saw the close.
    #[test]
    fn a_message_arriving_after_see_other_host_is_still_routed() {
        let (mut n1, mut n2, a, b) = prg_pair_with_alice_and_bob();
        assert!(n1.prg_failover(T));
        pump(&mut n1, &mut n2);
        pump(&mut n2, &mut n1);
        let closed = output(&mut n1, a);
        assert!(closed.contains("<see-other-host"), "{closed}");
        assert!(closed.ends_with(xmpp::STREAM_CLOSE), "{closed}");
        pump(&mut n1, &mut n2); // alice's unavailable presence, for bob
        let _ = output(&mut n2, b);
        // alice wrote this before the error reached her: it arrives after the closing tag.
        say(
            &mut n1,
            a,
            "bob@example.com",
            "late",
            "sent before the close",
        );
        assert_eq!(pump(&mut n1, &mut n2), 1);
        assert!(output(&mut n2, b).contains("sent before the close"));
        // What is not a message acts on a session that no longer exists here: dropped.
        n1.input(T, a, b"<presence><show>away</show></presence>");
        assert_eq!((n1.session_count(), pump(&mut n1, &mut n2)), (0, 0));
        // The client's closing tag ends the connection, without a second closing tag.
        n1.input(T, a, xmpp::STREAM_CLOSE.as_bytes());
        let mut ends = Vec::new();
        while let Some((c, t)) = n1.poll_transmit() {
            if c == a {
                ends.push(t);
            }
        }
        assert_eq!(ends, vec![Transmit::Close]);
    }

    #[test]
    fn a_login_the_failover_overtakes_between_auth_and_bind_is_sent_to_the_peer() {
        let (mut n1, mut n2) = prg_pair(true);
        // alice's SASL succeeds on n1, then n1 fails over before she binds.
        let c = start_auth(&mut n1, "alice");
        let _ = output(&mut n1, c);
        assert!(n1.prg_failover(T));
        pump(&mut n1, &mut n2);
        pump(&mut n2, &mut n1);
        assert_eq!(n1.prg_state(), Some(PrgState::Idle));
        let h = xmpp::stream_header(xmpp::NS_CLIENT, None, Some("example.com"), None);
        n1.input(T, c, h.as_bytes());
        n1.input(T, c, b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>desk</resource></bind></iq>");
        let out = output(&mut n1, c);
        assert!(
            out.contains("<see-other-host") && out.contains("n2") && !out.contains("<jid>"),
            "{out}"
        );
        assert_eq!(n1.session_count(), 0);
    }

    /// Explore seed 34: alice (n1) writes to bob (n2) just after n2's host crashed. The
    /// stanza waits on n1's link to n2; once n1 took n2's users over it must not wait for n2
    /// to come back (and reach bob after everything sent to him since), but be routed again:
    /// here, into offline storage until bob logs in on n1.
    #[test]
    fn a_stanza_waiting_for_a_crashed_peer_goes_where_its_recipient_is_served_after_the_takeover() {
        let (mut n1, mut n2, a, _b) = prg_pair_with_alice_and_bob();
        n1.prg_handle_timeout(T);
        n2.prg_handle_timeout(T);
        pump(&mut n2, &mut n1);
        pump(&mut n1, &mut n2);
        let routes_before = n1.routes();
        // n2 crashes: what n1 sends it from now on waits on the link, which cannot connect.
        say(&mut n1, a, "bob@example.com", "m1", "are you there");
        let waiting: Vec<String> = std::iter::from_fn(|| n1.poll_peer())
            .inspect(|p| assert_eq!(p.node, "n2"))
            .map(|p| p.bytes)
            .collect();
        assert_eq!(waiting.len(), 1, "{waiting:?}");
        // Before the takeover n2 still serves bob: the stanza keeps waiting, unchanged.
        let kept = n1.reroute_waiting(T * 30, "n2", waiting.clone());
        assert_eq!(kept, waiting);
        assert_eq!(n1.stats().offline_stored, 0);
        // The heartbeat timeout runs out: n1 takes bob over, and routes it to him here.
        n1.prg_handle_timeout(T * 70);
        assert_eq!(n1.serving_node("bob@example.com").as_deref(), Some("n1"));
        assert_ne!(n1.routes(), routes_before, "a takeover changes the routes");
        // A PRG heartbeat addressed to n2 itself is not for a user: it keeps waiting.
        let heartbeat = std::iter::from_fn(|| n1.poll_peer())
            .map(|p| p.bytes)
            .find(|b| b.contains(NS_PRG))
            .expect("n1 heartbeats its peer");
        let mut all = waiting.clone();
        all.push(heartbeat.clone());
        let kept = n1.reroute_waiting(T * 71, "n2", all);
        assert_eq!(kept, vec![heartbeat]);
        assert_eq!(n1.stats().rerouted, 1);
        assert_eq!(n1.stats().offline_stored, 1);
        assert_eq!(n1.poll_peer(), None, "nothing sent to n2 again");
        // bob logs in on n1 and gets it, delay-stamped (spec 48).
        let _ = login(&mut n1, "bob", "laptop");
        assert_eq!(n1.stats().offline_delivered, 1);
    }

    #[test]
    fn iso8601_of_epoch_and_later() {
        assert_eq!(iso8601(Duration::ZERO), "2026-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601(Duration::from_millis(86_400_000 * 59 + 3_723_004)),
            "2026-03-01T01:02:03.004Z"
        );
    }
}
