//! The XEP-0114 component port of an IM&P node (TCP 7400): where the message connector
//! connects and opens one session per Hybrid Message user (docs/protocols.md).
//!
//! ## The link
//!
//! A component stream in `jabber:component:accept` (the header may omit `version`, as Prosody
//! and slixmpp send it). The node answers with its own header carrying a deterministic stream
//! id (`<host>-c<link>`), the component proves the shared secret with `<handshake>` = lowercase
//! hex SHA-1 of stream id + secret, and the node confirms with an empty `<handshake/>`. A wrong
//! digest, or any other element first, ends the link with `<stream:error><not-authorized/>`.
//!
//! ## Sessions: `urn:hmsim:hybrid-session:0`
//!
//! ```xml
//! <iq type='set' id='s1' to='example.com'>
//!   <session xmlns='urn:hmsim:hybrid-session:0' action='start' jid='alice@example.com/hm-webex'/>
//! </iq>
//! ```
//!
//! `action='start'` opens a session for the full JID (the resource is the connector's choice),
//! `action='stop'` closes it (stopping an unknown session succeeds: stop is idempotent). The
//! answer is an IQ `result`, or an IQ error:
//!
//! | condition | type | when |
//! |---|---|---|
//! | `bad-request` | modify | not `type='set'`, or `action` missing or unknown |
//! | `jid-malformed` | modify | `jid` missing, unparsable, or not a full JID |
//! | `item-not-found` | cancel | no such user in the directory (or another domain) |
//! | `redirect` | modify | another node serves the user (its home node, or the home node's PRG peer after a failover); the character data of `<redirect/>` is that node's host name |
//! | `resource-constraint` | wait | the node's JSM session limit (1.5 × its OVA's user capacity, every device counted with MDM, spec 10), the port's own `sessions_max`, or the session creation rate is exceeded; or the node restarted in its PRG and does not know yet whom it serves (state Unknown, spec 65) |
//! | `conflict` | cancel | a Jabber client has bound that very resource |
//!
//! Starting a session that already exists (on this link or another) takes it over and is not
//! counted against the limits; a link that loses its session to another link is told with a
//! `stop` notice (reason `taken-over`), and a `stop` from a link that no longer holds the
//! session changes nothing. While open, the session is a device of its user (see
//! [`ImpNode::component_session_start`]): the node sends the connector inbound 1:1 messages and
//! carbons with `to` = the session's full JID, and the connector sends messages, presence and
//! IQs with `from` = that full JID. Stanzas from a JID with no session here get a
//! `not-allowed` error. When a session ends on the node's side (a Jabber client bound the same
//! resource), the node sends `<iq type='set'><session action='stop' jid=… reason=…/></iq>`.
//! Closing the link ends all of its sessions. XEP-0199 pings addressed to the node are
//! answered.
//!
//! [`ComponentService`] is sans-IO: link bytes in, output queued on the node (so that it stays
//! ordered with everything else the node sends), drained with [`ImpNode::poll_transmit`].

use super::directory::Directory;
use super::node::{ConnId, ImpNode, NodeConfig, Transmit};

mod session;
use connector::proto::stream::{Oversize, STANZA_BYTES_MAX, StreamEvent, StreamParser};
use connector::proto::xml::{Element, NS_STREAM, Node, escape};
use connector::proto::xmpp::{self, Jid};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// The component port (IM&P's XCP router listener, spec K).
pub const COMPONENT_PORT: u16 = 7400;

/// Component links open at once on one node. A connector cluster has at most 6 nodes with
/// "one or a few" links each to every IM&P node; 64 leaves room for reconnect overlap while
/// a peer cannot make the node hold unbounded parsers.
pub const COMPONENT_LINKS_MAX: usize = 64;
/// Links that have not completed the handshake, counted apart from [`COMPONENT_LINKS_MAX`]: a
/// peer without the secret can hold at most this many, and never a slot of the connector's.
/// A connector cluster opens a handful of links at once when it starts.
pub const COMPONENT_PENDING_LINKS_MAX: usize = 16;
/// How long a link may take from connect to a confirmed handshake: a connector sends its
/// header and handshake at once; a link silent this long is closed by the driver.
pub const COMPONENT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// How fast a node accepts new sessions: `sessions` per `per`, with bursts of up to
/// `sessions` at once (a token bucket, implemented as GCRA on simulated time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateRate {
    /// Sessions per period (0 refuses every new session).
    pub sessions: u32,
    /// The period.
    pub per: Duration,
}

/// Configuration of the component port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentConfig {
    /// The shared secret of the handshake.
    pub secret: String,
    /// Most open connector sessions, a cap of the scenario's own on top of the node's JSM
    /// session limit ([`ImpNode::with_jsm_sessions_max`], spec 10); `None`: only that limit.
    pub sessions_max: Option<usize>,
    /// Session creation rate; `None` = unlimited.
    pub create_rate: Option<CreateRate>,
}

/// Counters of the component port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentStats {
    /// Links accepted.
    pub links: u64,
    /// Handshakes accepted.
    pub handshakes_ok: u64,
    /// Handshakes refused (wrong secret, or no handshake first).
    pub handshakes_failed: u64,
    /// Sessions started (takeovers included).
    pub sessions_started: u64,
    /// Sessions stopped by the connector.
    pub sessions_stopped: u64,
    /// Starts refused with `resource-constraint` because of the rate.
    pub refused_rate: u64,
    /// Starts refused with `resource-constraint` because of a session limit (the node's JSM
    /// limit, also counted in the node's `jsm_refused_sessions`, or `sessions_max`).
    pub refused_capacity: u64,
    /// Session requests refused for any other reason.
    pub refused_other: u64,
    /// Stream errors sent.
    pub stream_errors: u64,
    /// Links closed for not completing the handshake in [`COMPONENT_HANDSHAKE_TIMEOUT`].
    pub handshake_timeouts: u64,
    /// Authenticated links closed for silence (`IDLE_TIMEOUT_COMPONENT` in the driver).
    pub idle_timeouts: u64,
    /// Stanzas over the stanza limit skipped on a link (which stays up); a message's or
    /// request's sender got a `policy-violation` error.
    pub oversize_skipped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    Header,
    Handshake,
    Ready,
    Closed,
}

#[derive(Debug)]
struct Link {
    parser: StreamParser,
    state: LinkState,
    stream_id: String,
}

/// The component port of one node: its links, the session gate and counters.
#[derive(Debug)]
pub struct ComponentService {
    cfg: ComponentConfig,
    host: String,
    domain: String,
    dir: Rc<Directory>,
    sessions_max: usize,
    links: BTreeMap<ConnId, Link>,
    /// GCRA theoretical arrival time of the next session creation.
    tat: Duration,
    stats: ComponentStats,
}

impl ComponentService {
    /// The component port of the node configured by `node`, whose users are in `dir`.
    pub fn new(cfg: ComponentConfig, node: &NodeConfig, dir: Rc<Directory>) -> Self {
        let sessions_max = cfg.sessions_max.unwrap_or(usize::MAX);
        Self {
            cfg,
            host: node.host.clone(),
            domain: node.domain.clone(),
            dir,
            sessions_max,
            links: BTreeMap::new(),
            tat: Duration::ZERO,
            stats: ComponentStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &ComponentStats {
        &self.stats
    }

    /// The session limit in force.
    pub fn sessions_max(&self) -> usize {
        self.sessions_max
    }

    /// Open links.
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// Links that completed the handshake and are open.
    fn ready_links(&self) -> usize {
        self.links
            .values()
            .filter(|l| l.state == LinkState::Ready)
            .count()
    }

    /// Whether `link` completed the handshake (the driver's handshake timeout spares it).
    pub fn is_authenticated(&self, link: ConnId) -> bool {
        self.links
            .get(&link)
            .is_some_and(|l| l.state == LinkState::Ready)
    }

    /// The handshake timeout of `link` expired: closes it unless it completed the handshake.
    pub fn handshake_timed_out(&mut self, node: &mut ImpNode, link: ConnId) {
        let pending = self
            .links
            .get(&link)
            .is_some_and(|l| matches!(l.state, LinkState::Header | LinkState::Handshake));
        if pending {
            self.stats.handshake_timeouts += 1;
            tracing::warn!(node = %self.host, link, "component link without a handshake: closing");
            self.stream_error(node, link, "connection-timeout", "no handshake in time");
        }
    }

    /// The authenticated `link` was silent for too long (the driver's idle timeout): ends it
    /// with `<connection-timeout/>` (RFC 6120 4.9.3.4); its sessions end with it.
    pub fn idle_timed_out(&mut self, node: &mut ImpNode, link: ConnId) {
        if !self.is_authenticated(link) {
            return;
        }
        self.stats.idle_timeouts += 1;
        tracing::warn!(
            node = %self.host,
            link,
            idle_timeouts = self.stats.idle_timeouts,
            "component link silent (no keepalive): closing"
        );
        self.stream_error(node, link, "connection-timeout", "no traffic in time");
    }

    /// Registers a new component connection. Beyond [`COMPONENT_PENDING_LINKS_MAX`] links
    /// still without a handshake, the link is refused at once (stream error
    /// `policy-violation`); [`COMPONENT_LINKS_MAX`] bounds the authenticated ones.
    pub fn open(&mut self, node: &mut ImpNode) -> ConnId {
        let id = node.component_link_open();
        self.stats.links += 1;
        self.links.insert(
            id,
            Link {
                // Shared by every session of a connector node: an oversize stanza is
                // skipped, never a reason to end the link.
                parser: StreamParser::with_oversize(Oversize::Skip),
                state: LinkState::Header,
                stream_id: format!("{}-c{id}", self.host),
            },
        );
        let pending = self
            .links
            .values()
            .filter(|l| matches!(l.state, LinkState::Header | LinkState::Handshake))
            .count();
        if pending > COMPONENT_PENDING_LINKS_MAX {
            let text = "too many component links without a handshake";
            self.stream_error(node, id, "policy-violation", text);
        }
        id
    }

    /// The transport of `link` is gone: its sessions end.
    pub fn closed(&mut self, now: Duration, node: &mut ImpNode, link: ConnId) {
        self.links.remove(&link);
        node.component_link_closed(now, link);
    }

    /// Bytes received on `link`; output is queued on `node`.
    pub fn input(&mut self, now: Duration, node: &mut ImpNode, link: ConnId, bytes: &[u8]) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.parser.feed(bytes);
        loop {
            let Some(l) = self.links.get_mut(&link) else {
                return;
            };
            if l.state == LinkState::Closed {
                return;
            }
            match l.parser.next_event() {
                Ok(None) => return,
                Ok(Some(StreamEvent::Open(header))) => self.on_header(node, link, &header),
                Ok(Some(StreamEvent::Stanza(el))) => self.on_element(now, node, link, el),
                Ok(Some(StreamEvent::Skipped { head, bytes })) => {
                    self.on_oversize(node, link, &head, bytes);
                }
                Ok(Some(StreamEvent::Close)) => {
                    send_raw(node, link, xmpp::STREAM_CLOSE.to_string());
                    self.close(now, node, link);
                }
                Err(e) => {
                    let text = e.to_string();
                    self.stream_error(node, link, e.condition(), &text);
                }
            }
        }
    }

    /// A stanza over the limit, skipped: the link carries every session of the connector
    /// node, so one stanza never ends it. Counted, logged at WARN; a message's or request's
    /// sender gets a `policy-violation` error.
    fn on_oversize(&mut self, node: &mut ImpNode, link: ConnId, head: &Element, bytes: usize) {
        self.stats.oversize_skipped += 1;
        tracing::warn!(node = %self.host, link, bytes, "oversize stanza on a component link: skipped");
        let answered = match (head.name.as_str(), head.attr("type")) {
            ("message", t) => t != Some("error"),
            ("iq", t) => matches!(t, Some("get" | "set")),
            _ => false,
        };
        if answered && head.attr("from").is_some() {
            let text = format!("Stanza too large: {bytes} bytes, at most {STANZA_BYTES_MAX}");
            let err = xmpp::error_reply(head, "modify", "policy-violation", Some(&text));
            send(node, link, &err);
        }
    }

    fn close(&mut self, now: Duration, node: &mut ImpNode, link: ConnId) {
        if let Some(l) = self.links.get_mut(&link) {
            l.state = LinkState::Closed;
        }
        node.component_link_closed(now, link);
        node.component_transmit(link, Transmit::Close);
    }

    fn stream_error(&mut self, node: &mut ImpNode, link: ConnId, condition: &str, text: &str) {
        self.stats.stream_errors += 1;
        tracing::debug!(node = %self.host, link, condition, text, "component stream error");
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.state == LinkState::Header {
            // A header is owed before the error (RFC 6120 4.9.1.2).
            let h = self.header(link);
            send_raw(node, link, h);
        }
        if let Some(l) = self.links.get_mut(&link) {
            l.state = LinkState::Closed;
        }
        let err = xmpp::stream_error(condition, Some(text));
        send_raw(node, link, err.to_xml_in(xmpp::NS_COMPONENT));
        send_raw(node, link, xmpp::STREAM_CLOSE.to_string());
        node.component_link_closed(Duration::ZERO, link);
        node.component_transmit(link, Transmit::Close);
    }

    /// The node's stream header for `link` (XEP-0114: no `version`).
    fn header(&self, link: ConnId) -> String {
        let id = self
            .links
            .get(&link)
            .map(|l| l.stream_id.clone())
            .unwrap_or_default();
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{NS_STREAM}' \
             from='{}' id='{}'>",
            xmpp::NS_COMPONENT,
            escape(&self.domain),
            escape(&id)
        )
    }

    fn on_header(&mut self, node: &mut ImpNode, link: ConnId, header: &Element) {
        if self.links.get(&link).map(|l| l.state) != Some(LinkState::Header) {
            self.stream_error(node, link, "invalid-xml", "unexpected stream header");
            return;
        }
        if header.name != "stream" || header.ns != NS_STREAM {
            self.stream_error(node, link, "invalid-namespace", "expected stream:stream");
            return;
        }
        let h = self.header(link);
        send_raw(node, link, h);
        if let Some(l) = self.links.get_mut(&link) {
            l.state = LinkState::Handshake;
        }
    }

    fn on_element(&mut self, now: Duration, node: &mut ImpNode, link: ConnId, el: Element) {
        let Some(state) = self.links.get(&link).map(|l| l.state) else {
            return;
        };
        match state {
            LinkState::Handshake => self.on_handshake(node, link, &el),
            LinkState::Ready => self.on_stanza(now, node, link, el),
            LinkState::Header | LinkState::Closed => {}
        }
    }

    fn on_handshake(&mut self, node: &mut ImpNode, link: ConnId, el: &Element) {
        if !el.is("handshake", xmpp::NS_COMPONENT) {
            self.stats.handshakes_failed += 1;
            let (cond, text) = if el.name == "handshake" {
                ("invalid-namespace", "expected jabber:component:accept")
            } else {
                ("not-authorized", "handshake first")
            };
            self.stream_error(node, link, cond, text);
            return;
        }
        let id = self
            .links
            .get(&link)
            .map(|l| l.stream_id.clone())
            .unwrap_or_default();
        let expected = xmpp::component_handshake(&id, &self.cfg.secret);
        if !el.text().trim().eq_ignore_ascii_case(&expected) {
            self.stats.handshakes_failed += 1;
            self.stream_error(node, link, "not-authorized", "wrong handshake");
            return;
        }
        if self.ready_links() >= COMPONENT_LINKS_MAX {
            self.stream_error(node, link, "policy-violation", "too many component links");
            return;
        }
        self.stats.handshakes_ok += 1;
        send_raw(node, link, "<handshake/>".into());
        if let Some(l) = self.links.get_mut(&link) {
            l.state = LinkState::Ready;
        }
    }

    fn on_stanza(&mut self, now: Duration, node: &mut ImpNode, link: ConnId, el: Element) {
        if !matches!(el.name.as_str(), "message" | "presence" | "iq") {
            if el.name == "handshake" {
                return; // a repeated handshake is harmless
            }
            self.stream_error(
                node,
                link,
                "unsupported-stanza-type",
                "expected message, presence or iq",
            );
            return;
        }
        let kind = el.attr("type").unwrap_or_default().to_string();
        if el.name == "iq"
            && let Some(s) = el.child("session", xmpp::NS_HM_SESSION)
        {
            let s = s.clone();
            let reply = match self.on_session(now, node, link, &el, &s) {
                Ok(()) => xmpp::iq_result(&el, None),
                Err(e) => e,
            };
            send(node, link, &reply);
            return;
        }
        let from = el.attr("from").and_then(|f| Jid::parse(f).ok());
        let session = from.as_ref().and_then(|f| node.component_session(f));
        if let Some((session, _)) = session {
            let stanza = renamespace(el, xmpp::NS_COMPONENT, xmpp::NS_CLIENT);
            node.component_input(now, session, stanza);
            return;
        }
        // Addressed to the node itself (or to nobody): pings, and answers to its own IQs.
        if el.name == "iq" {
            match kind.as_str() {
                "result" | "error" => return,
                "get" if el.child("ping", xmpp::NS_PING).is_some() => {
                    send(node, link, &xmpp::iq_result(&el, None));
                    return;
                }
                _ => {}
            }
        }
        if kind == "error" || (el.name == "presence" && kind == "unavailable") {
            return; // never answer an error; a late unavailable presence needs no answer
        }
        let reply = xmpp::error_reply(
            &el,
            "cancel",
            "not-allowed",
            Some("no session for this JID on this node"),
        );
        send(node, link, &reply);
    }
}

fn send(node: &mut ImpNode, link: ConnId, el: &Element) {
    node.component_transmit(link, Transmit::Bytes(el.to_xml_in(xmpp::NS_COMPONENT)));
}

fn send_raw(node: &mut ImpNode, link: ConnId, s: String) {
    node.component_transmit(link, Transmit::Bytes(s));
}

/// Sets the character data of the condition element of an error stanza.
fn set_condition_text(reply: &mut Element, text: &str) {
    for n in &mut reply.children {
        if let Node::Element(err) = n
            && err.name == "error"
        {
            for c in &mut err.children {
                if let Node::Element(cond) = c
                    && cond.ns == xmpp::NS_STANZAS
                    && cond.name != "text"
                {
                    cond.children = vec![Node::Text(text.to_string())];
                }
            }
        }
    }
}

/// `el` with every element in namespace `from` moved to `to`: component stanzas become
/// `jabber:client` stanzas inside the node (RFC 6120 4.8.3).
fn renamespace(mut el: Element, from: &str, to: &str) -> Element {
    if el.ns == from {
        el.ns = to.to_string();
    }
    for child in &mut el.children {
        if let Node::Element(e) = child {
            let inner = std::mem::replace(e, Element::new("", ""));
            *e = renamespace(inner, from, to);
        }
    }
    el
}

#[cfg(test)]
mod tests;
