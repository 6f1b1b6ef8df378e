//! XMPP vocabulary: namespaces, JIDs, and constructors for the stanzas this project exchanges.
//!
//! Everything here is pure: ids are always supplied by the caller (never invented from OS
//! randomness), so the same inputs give the same bytes on every run.

use super::xml::{Element, NS_STREAM, escape};
use base64::Engine as _;

/// Client-to-server stanza namespace (RFC 6120).
pub const NS_CLIENT: &str = "jabber:client";
/// Component stanza namespace (XEP-0114).
pub const NS_COMPONENT: &str = "jabber:component:accept";
/// SASL negotiation (RFC 6120 section 6).
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// Resource binding.
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// Legacy session establishment (RFC 3921); Jabber clients still send it.
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// Stanza error conditions.
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// Stream error conditions.
pub const NS_STREAMS_ERR: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// XEP-0085 chat states.
pub const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
/// XEP-0184 delivery receipts.
pub const NS_RECEIPTS: &str = "urn:xmpp:receipts";
/// XEP-0333 chat markers.
pub const NS_MARKERS: &str = "urn:xmpp:chat-markers:0";
/// XEP-0280 message carbons.
pub const NS_CARBONS: &str = "urn:xmpp:carbons:2";
/// XEP-0297 stanza forwarding (the wrapper inside a carbon).
pub const NS_FORWARD: &str = "urn:xmpp:forward:0";
/// XEP-0203 delayed delivery.
pub const NS_DELAY: &str = "urn:xmpp:delay";
/// XEP-0066 out-of-band data (file links).
pub const NS_OOB: &str = "jabber:x:oob";
/// XEP-0199 ping.
pub const NS_PING: &str = "urn:xmpp:ping";
/// XEP-0030 service discovery (info).
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// RFC 6121 roster.
pub const NS_ROSTER: &str = "jabber:iq:roster";
/// The project's per-user session protocol on the component link (see `docs/protocols.md`).
pub const NS_HM_SESSION: &str = "urn:hmsim:hybrid-session:0";
/// The project's presence kind marker, `<hm-presence xmlns='urn:hmsim:presence:0' kind='…'/>`:
/// `manual` (user-set), `device`, or `user` (a user-level setting such as Webex DND, spec 54).
/// In IM&P the distinction is internal; the fake IM&P composes by it.
pub const NS_HM_PRESENCE: &str = "urn:hmsim:presence:0";
/// The `reason` of a session `stop` the node sends to a connector node whose session another
/// connector node started (the cloud moved the user between connector nodes).
pub const SESSION_TAKEN_OVER: &str = "taken-over";

/// A JID split into its parts. Comparison is on the normalized (lowercase) form of the local
/// and domain parts, which is what every server does for the ASCII JIDs used here.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Jid {
    /// The part before `@`, if any.
    pub local: Option<String>,
    /// The domain.
    pub domain: String,
    /// The part after `/`, if any.
    pub resource: Option<String>,
}

/// A JID string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JID `{0}`")]
pub struct JidError(pub String);

impl Jid {
    /// Parses `local@domain/resource` (local and resource optional).
    pub fn parse(s: &str) -> Result<Self, JidError> {
        let (rest, resource) = match s.split_once('/') {
            Some((r, res)) if !res.is_empty() => (r, Some(res.to_string())),
            Some(_) => return Err(JidError(s.into())),
            None => (s, None),
        };
        let (local, domain) = match rest.split_once('@') {
            Some((l, d)) if !l.is_empty() => (Some(l.to_ascii_lowercase()), d),
            Some(_) => return Err(JidError(s.into())),
            None => (None, rest),
        };
        if domain.is_empty() || domain.contains('@') || s.len() > 3071 {
            return Err(JidError(s.into()));
        }
        Ok(Self {
            local,
            domain: domain.to_ascii_lowercase(),
            resource,
        })
    }

    /// `local@domain` (or `domain`).
    pub fn bare(&self) -> String {
        match &self.local {
            Some(l) => format!("{l}@{}", self.domain),
            None => self.domain.clone(),
        }
    }

    /// A copy with the resource replaced.
    pub fn with_resource(&self, resource: &str) -> Self {
        Self {
            resource: Some(resource.to_string()),
            ..self.clone()
        }
    }
}

impl std::fmt::Display for Jid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(l) = &self.local {
            write!(f, "{l}@")?;
        }
        f.write_str(&self.domain)?;
        if let Some(r) = &self.resource {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

/// The stream header as it goes on the wire (it never closes, so it is not an [`Element`]).
pub fn stream_header(ns: &str, from: Option<&str>, to: Option<&str>, id: Option<&str>) -> String {
    let mut s = String::from("<?xml version='1.0'?><stream:stream xmlns='");
    s.push_str(ns);
    s.push_str("' xmlns:stream='");
    s.push_str(NS_STREAM);
    s.push('\'');
    for (k, v) in [("from", from), ("to", to), ("id", id)] {
        if let Some(v) = v {
            s.push_str(&format!(" {k}='{}'", escape(v)));
        }
    }
    s.push_str(" version='1.0' xml:lang='en'>");
    s
}

/// The closing tag of a stream.
pub const STREAM_CLOSE: &str = "</stream:stream>";

/// `<stream:error>` with a condition (RFC 6120 4.9.3), followed by nothing: the sender closes.
pub fn stream_error(condition: &str, text: Option<&str>) -> Element {
    let mut e =
        Element::new("error", NS_STREAM).with_child(Element::new(condition, NS_STREAMS_ERR));
    if let Some(t) = text {
        e = e.with_child(Element::new("text", NS_STREAMS_ERR).with_text(t));
    }
    e
}

/// A stanza error reply to `stanza` (same name, addresses swapped, `type='error'`).
pub fn error_reply(stanza: &Element, kind: &str, condition: &str, text: Option<&str>) -> Element {
    let mut reply = Element::new(stanza.name.clone(), stanza.ns.clone()).with_attr("type", "error");
    if let Some(id) = stanza.attr("id") {
        reply.set_attr("id", id);
    }
    if let Some(from) = stanza.attr("from") {
        reply.set_attr("to", from);
    }
    if let Some(to) = stanza.attr("to") {
        reply.set_attr("from", to);
    }
    let mut err = Element::new("error", stanza.ns.clone())
        .with_attr("type", kind)
        .with_child(Element::new(condition, NS_STANZAS));
    if let Some(t) = text {
        err = err.with_child(Element::new("text", NS_STANZAS).with_text(t));
    }
    reply.with_child(err)
}

/// The error condition of an error stanza, if any.
pub fn error_condition(stanza: &Element) -> Option<&str> {
    let err = stanza.elements().find(|e| e.name == "error")?;
    err.elements()
        .find(|e| e.ns == NS_STANZAS && e.name != "text")
        .map(|e| e.name.as_str())
}

/// The human-readable text of an error stanza, if any.
pub fn error_text(stanza: &Element) -> Option<String> {
    let err = stanza.elements().find(|e| e.name == "error")?;
    err.child("text", NS_STANZAS).map(Element::text)
}

/// An IQ result for `iq`, optionally with a payload.
pub fn iq_result(iq: &Element, payload: Option<Element>) -> Element {
    let mut r = Element::new("iq", iq.ns.clone()).with_attr("type", "result");
    if let Some(id) = iq.attr("id") {
        r.set_attr("id", id);
    }
    if let Some(from) = iq.attr("from") {
        r.set_attr("to", from);
    }
    if let Some(to) = iq.attr("to") {
        r.set_attr("from", to);
    }
    if let Some(p) = payload {
        r = r.with_child(p);
    }
    r
}

/// The SASL PLAIN initial response: base64 of `authzid NUL authcid NUL password`.
pub fn sasl_plain_response(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// Decodes a SASL PLAIN initial response into (authcid, password).
pub fn sasl_plain_decode(b64: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let mut parts = text.split('\0');
    let _authzid = parts.next()?;
    let user = parts.next()?;
    let pass = parts.next()?;
    if parts.next().is_some() || user.is_empty() {
        return None;
    }
    Some((user.to_string(), pass.to_string()))
}

/// XEP-0114 handshake digest: lowercase hex SHA-1 of stream id followed by the secret.
pub fn component_handshake(stream_id: &str, secret: &str) -> String {
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    h.update(stream_id.as_bytes());
    h.update(secret.as_bytes());
    let digest = h.finalize();
    let mut out = String::with_capacity(40);
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A one-to-one chat message with a body, requesting a receipt and marked as markable
/// (XEP-0184, XEP-0333), and carrying the `active` chat state (XEP-0085), as Jabber sends them.
pub fn chat_message(ns: &str, id: &str, from: Option<&str>, to: &str, body: &str) -> Element {
    let mut m = Element::new("message", ns)
        .with_attr("type", "chat")
        .with_attr("id", id)
        .with_attr("to", to);
    if let Some(f) = from {
        m.set_attr("from", f);
    }
    m.with_child(Element::new("body", ns).with_text(body))
        .with_child(Element::new("active", NS_CHATSTATES))
        .with_child(Element::new("request", NS_RECEIPTS))
        .with_child(Element::new("markable", NS_MARKERS))
}

/// The body of a message stanza, if it has one.
pub fn body(msg: &Element) -> Option<String> {
    msg.elements().find(|e| e.name == "body").map(Element::text)
}

/// The XEP-0085 chat state carried by a message, if any.
pub fn chat_state(msg: &Element) -> Option<&str> {
    msg.child_ns(NS_CHATSTATES).map(|e| e.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jid_parses_and_normalizes() {
        let j = Jid::parse("Alice@Example.com/jabber-1").unwrap();
        assert_eq!(j.bare(), "alice@example.com");
        assert_eq!(j.resource.as_deref(), Some("jabber-1"));
        assert_eq!(j.to_string(), "alice@example.com/jabber-1");
        assert!(Jid::parse("@example.com").is_err());
        assert!(Jid::parse("a@").is_err());
        assert!(Jid::parse("a@b/").is_err());
    }

    #[test]
    fn sasl_plain_roundtrips() {
        let r = sasl_plain_response("alice", "pw");
        assert_eq!(sasl_plain_decode(&r), Some(("alice".into(), "pw".into())));
        assert_eq!(sasl_plain_decode("!!"), None);
    }

    #[test]
    fn handshake_matches_xep_0114_example() {
        // Reference value from Python's hashlib: sha1(b"3BF96D32" + b"sesame").hexdigest().
        assert_eq!(
            component_handshake("3BF96D32", "sesame"),
            "7a98dc4c9e92493d7fd66a25364c862637789c45"
        );
    }
}
