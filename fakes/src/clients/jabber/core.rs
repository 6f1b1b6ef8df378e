//! The sans-IO half of the Jabber client: the login sequence (SASL PLAIN, bind, initial
//! presence), receipts and stanza ids. Bytes in, events and bytes out.

use connector::proto::stream::{StreamEvent, StreamParser};
use connector::proto::xml::{Element, NS_STREAM};
use connector::proto::xmpp::{self, Jid};

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
                // A client's parser closes on an oversize stanza: it never skips one.
                Ok(Some(StreamEvent::Skipped { .. })) => {}
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
