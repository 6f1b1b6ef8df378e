//! A quinn-style harness around one [`ConnectorNode`], with no I/O: every input carries the
//! harness's clock, every output is polled into a queue the test inspects, and time only moves
//! when the test jumps it (to a given instant, or to the node's next timeout).
//!
//! The test plays the cloud, the IM&P nodes and the AXL publisher by hand: it answers each
//! request with a literal body, so what the node is checked against is written in the test,
//! never computed by the connector's own code.

use connector::core::node::{ConnectorNode, HttpRequest, NodeSettings, Output, Target};
use connector::proto::stream::{StreamEvent, StreamParser};
use connector::proto::webex::Event;
use connector::proto::xml::Element;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng as _;
use std::collections::VecDeque;
use std::time::Duration;

/// Timeouts run per [`Harness::run_until`] before it gives up: a node that keeps asking for a
/// timer at the same instant is a bug, not a reason to hang the test.
const TIMEOUTS_PER_RUN_MAX: usize = 100_000;

/// One node and what it asked for, in order.
pub struct Harness {
    pub node: ConnectorNode,
    pub now: Duration,
    rng: ChaCha8Rng,
    /// HTTP requests not answered yet.
    pub http: VecDeque<HttpRequest>,
    /// Stanzas sent on component links: (IM&P node, stanza).
    pub stanzas: VecDeque<(String, Element)>,
    /// The last set of component links asked for.
    pub links: Option<Vec<String>>,
    /// The token the event WebSocket was opened with.
    pub events: Option<String>,
}

impl Harness {
    /// A node with `settings`, at time zero, not started.
    pub fn new(settings: NodeSettings) -> Self {
        Self {
            node: ConnectorNode::new(settings, Duration::ZERO),
            now: Duration::ZERO,
            rng: ChaCha8Rng::seed_from_u64(7),
            http: VecDeque::new(),
            stanzas: VecDeque::new(),
            links: None,
            events: None,
        }
    }

    /// Polls every output into the queues.
    pub fn drain(&mut self) {
        while let Some(o) = self.node.poll_output() {
            match o {
                Output::Http(r) => self.http.push_back(r),
                Output::Xmpp { node, stanza } => self.stanzas.push_back((node, stanza)),
                Output::Links(l) => self.links = Some(l),
                Output::Events(t) => self.events = Some(t),
            }
        }
    }

    pub fn start(&mut self) {
        self.node.start(self.now);
        self.drain();
    }

    /// Removes and returns the first request to `path` (panics, listing them, if none).
    pub fn request(&mut self, path: &str) -> HttpRequest {
        let at = self.http.iter().position(|r| r.path == path);
        let Some(at) = at else {
            let paths: Vec<&str> = self.http.iter().map(|r| r.path.as_str()).collect();
            panic!("no request to {path}; pending: {paths:?}");
        };
        self.http.remove(at).expect("present")
    }

    /// Removes and returns the first AXL request.
    pub fn axl_request(&mut self) -> HttpRequest {
        let at = self
            .http
            .iter()
            .position(|r| matches!(r.target, Target::Axl { .. }));
        self.http
            .remove(at.expect("an AXL request"))
            .expect("present")
    }

    /// Answers request `req` with `status` and `body`.
    pub fn answer(&mut self, req: &HttpRequest, status: u16, body: &str) {
        self.node
            .handle_http(self.now, req.id, status, body.as_bytes(), &mut self.rng);
        self.drain();
    }

    /// Request `req` fails at the transport (`why`: timed out, refused).
    pub fn fail(&mut self, req: &HttpRequest, why: &str) {
        self.node
            .handle_http_failure(self.now, req.id, why, &mut self.rng);
        self.drain();
    }

    /// A cloud event, given as the JSON text frame the cloud sends.
    pub fn event(&mut self, json: &str) {
        let ev: Event = serde_json::from_str(json).expect("an event as the cloud sends it");
        self.node.handle_event(self.now, ev, &mut self.rng);
        self.drain();
    }

    /// A stanza from IM&P node `node`, given as its XML text (component namespace).
    pub fn stanza(&mut self, node: &str, xml: &str) {
        let el = parse_stanza(xml);
        self.node.handle_stanza(self.now, node, &el, &mut self.rng);
        self.drain();
    }

    pub fn node_up(&mut self, node: &str) {
        self.node.node_up(self.now, node, &mut self.rng);
        self.drain();
    }

    pub fn node_down(&mut self, node: &str) {
        self.node.node_down(self.now, node, &mut self.rng);
        self.drain();
    }

    /// Removes and returns the first stanza sent to `node`.
    pub fn stanza_to(&mut self, node: &str) -> Element {
        let at = self.stanzas.iter().position(|(n, _)| n == node);
        let Some(at) = at else {
            panic!("no stanza to {node}; sent: {:?}", self.stanzas);
        };
        self.stanzas.remove(at).expect("present").1
    }

    /// Jumps to the node's next timeout if it is at or before `until`, runs it, and says
    /// whether it did.
    pub fn step(&mut self, until: Duration) -> bool {
        match self.node.poll_timeout(self.now) {
            Some(t) if t <= until => {
                self.now = t;
                self.node.handle_timeout(self.now, &mut self.rng);
                self.drain();
                true
            }
            _ => false,
        }
    }

    /// Runs every timeout up to `until`, then sets the clock to `until`.
    pub fn run_until(&mut self, until: Duration) {
        for _ in 0..TIMEOUTS_PER_RUN_MAX {
            if !self.step(until) {
                self.now = self.now.max(until);
                return;
            }
        }
        panic!("more than {TIMEOUTS_PER_RUN_MAX} timeouts before {until:?}");
    }

    /// Drops the heartbeats and presence polls that timers sent (answered 200), so that a
    /// test sees only what it is about.
    pub fn answer_routine(&mut self) {
        let routine: Vec<HttpRequest> = self
            .http
            .iter()
            .filter(|r| r.path == "/v1/connectors/heartbeat")
            .cloned()
            .collect();
        for r in routine {
            self.request(&r.path);
            self.answer(&r, 200, r#"{"state":"registered"}"#);
        }
    }
}

/// Parses one stanza from its XML text, in the component namespace.
pub fn parse_stanza(xml: &str) -> Element {
    let mut p = StreamParser::new();
    let header = "<stream:stream xmlns='jabber:component:accept' \
                  xmlns:stream='http://etherx.jabber.org/streams'>";
    p.feed(header.as_bytes());
    p.feed(xml.as_bytes());
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
    match p.next_event() {
        Ok(Some(StreamEvent::Stanza(el))) => el,
        other => panic!("not one stanza: {other:?}"),
    }
}

/// The request body as JSON.
pub fn json_body(r: &HttpRequest) -> serde_json::Value {
    serde_json::from_slice(&r.body).expect("a JSON body")
}

/// The request body as text.
pub fn text_body(r: &HttpRequest) -> String {
    String::from_utf8(r.body.clone()).expect("a UTF-8 body")
}
