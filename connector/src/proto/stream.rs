//! Sans-IO XMPP stream parser: bytes in, stream events out.
//!
//! An XMPP stream is one XML document whose root (`<stream:stream>`) never closes until the
//! session ends; the interesting units are the root's children, the stanzas. [`StreamParser`]
//! feeds bytes to [`rxml`]'s incremental, namespace-aware parser (which enforces
//! well-formedness: no DTDs, no entities, no processing instructions, as RFC 6120 section 11
//! requires) and assembles each depth-1 subtree into an [`Element`].
//!
//! Limits are named and enforced here so that every driver gets them: a stanza larger than
//! [`STANZA_BYTES_MAX`] or nested deeper than [`DEPTH_MAX`] is never an unbounded allocation.
//! What an oversize stanza does to the stream is the driver's choice ([`Oversize`]): on a
//! stream of one client it is a stream error (RFC 6120 section 13.12: `policy-violation`);
//! on a link shared by many users' sessions (the XEP-0114 component link) the stanza alone is
//! skipped ([`StreamEvent::Skipped`]): the parser keeps reading it without building it, and
//! resynchronises at the next top-level stanza. A single token over the limit (a start tag
//! with endless attributes, which rxml holds whole) cannot be skipped and stays a stream error.

use super::xml::{Element, NS_XML, Node};
use rxml::Parse as _;
use rxml::error::EndOrError;

/// The largest stanza accepted, in wire bytes. Jabber's largest legitimate stanzas here are
/// chat messages with a body of a few KiB; 64 KiB is RFC 6120's suggested minimum a server must
/// accept ("at least 10,000 bytes") with generous headroom, and bounds memory per connection.
pub const STANZA_BYTES_MAX: usize = 64 * 1024;

/// Namespace bytes one stanza may hold, summed over its elements. Every element keeps its
/// namespace as a string, and a prefix declared once (`xmlns:p='…8 KiB…'`) makes each 6-byte
/// `<p:a/>` hold all of it: 50 KB on the wire became 57 MB in memory (and as much re-serialized,
/// where each element declares its namespace). Four times the wire limit leaves room for the
/// largest legitimate stanza (3,000 roster items at about 15 namespace bytes each is 45 KB).
pub const NAMESPACE_BYTES_MAX: usize = 4 * STANZA_BYTES_MAX;

/// The deepest element nesting accepted inside a stanza. Real stanzas nest 4 or 5 deep; a bound
/// stops a peer from growing the builder stack without limit.
pub const DEPTH_MAX: usize = 32;

/// What the parser does with a stanza over [`STANZA_BYTES_MAX`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Oversize {
    /// A stream error ([`StreamError::StanzaTooLarge`]): for a stream that belongs to one
    /// client, whose sender alone is refused when it closes.
    #[default]
    Close,
    /// The stanza alone is skipped ([`StreamEvent::Skipped`]) and the stream goes on: for a
    /// link shared by many sessions, which one message must never take down.
    Skip,
}

/// What the parser found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The stream header; its attributes (`to`, `from`, `id`, `version`) are on the element.
    Open(Element),
    /// A complete depth-1 element: a stanza or a stream-level element such as `<auth>`.
    Stanza(Element),
    /// The peer closed the stream (`</stream:stream>`).
    Close,
    /// A stanza over [`STANZA_BYTES_MAX`] was read to its end and dropped ([`Oversize::Skip`]):
    /// `head` is its top-level element with its attributes and no children (who sent it, to
    /// whom, its id: enough to refuse it to its sender), `bytes` its wire size.
    Skipped {
        /// The stanza's top-level element, attributes only.
        head: Element,
        /// Its wire bytes.
        bytes: usize,
    },
}

/// Why the stream cannot continue. Each maps to an RFC 6120 stream error condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The bytes are not well-formed (namespace-)XML.
    #[error("not well-formed XML: {0}")]
    NotWellFormed(String),
    /// A stanza exceeded [`STANZA_BYTES_MAX`].
    #[error("stanza larger than {STANZA_BYTES_MAX} bytes")]
    StanzaTooLarge,
    /// Elements nested deeper than [`DEPTH_MAX`].
    #[error("elements nested deeper than {DEPTH_MAX}")]
    TooDeep,
    /// Text or a second root where the stream header was expected.
    #[error("expected a stream header, got {0}")]
    BadHeader(String),
}

impl StreamError {
    /// The RFC 6120 section 4.9.3 condition to send before closing.
    pub fn condition(&self) -> &'static str {
        match self {
            StreamError::NotWellFormed(_) => "not-well-formed",
            StreamError::StanzaTooLarge => "policy-violation",
            StreamError::TooDeep => "policy-violation",
            StreamError::BadHeader(_) => "invalid-namespace",
        }
    }
}

/// Incremental parser for one direction of an XMPP stream.
#[derive(Debug)]
pub struct StreamParser {
    parser: rxml::Parser,
    /// Bytes received; those from `offset` on are not yet given to rxml.
    pending: Vec<u8>,
    /// Where the bytes not yet given to rxml start in `pending`. Events advance it; the bytes
    /// before it are dropped once per [`Self::feed`], not once per event (moving the rest of
    /// a read after every event made parsing n stanzas of one read cost O(n^2)).
    offset: usize,
    /// Elements of the stanza being built; empty between stanzas.
    stack: Vec<Element>,
    /// True once the stream header was seen.
    opened: bool,
    /// Wire bytes of the events of the stanza being built (from the first byte of its start
    /// tag); zero between stanzas.
    stanza_bytes: usize,
    /// Bytes rxml consumed that no event has accounted for yet: an unfinished token (a start
    /// tag still receiving attributes, a stream header) lives here until its event comes out.
    unaccounted: usize,
    /// Namespace bytes held by the elements of the stanza being built ([`NAMESPACE_BYTES_MAX`]).
    namespace_bytes: usize,
    /// Set after a fatal error: nothing more is parsed.
    failed: bool,
    /// What an oversize stanza does.
    oversize: Oversize,
    /// The oversize stanza being skipped: its head and how deep the parser is inside it.
    skipping: Option<(Element, usize)>,
}

impl Default for StreamParser {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamParser {
    /// A parser waiting for a stream header; an oversize stanza is a stream error.
    pub fn new() -> Self {
        Self::with_oversize(Oversize::Close)
    }

    /// A parser waiting for a stream header, doing `oversize` with an oversize stanza.
    pub fn with_oversize(oversize: Oversize) -> Self {
        Self {
            parser: rxml::Parser::new(),
            pending: Vec::new(),
            offset: 0,
            stack: Vec::new(),
            opened: false,
            stanza_bytes: 0,
            unaccounted: 0,
            namespace_bytes: 0,
            failed: false,
            oversize,
            skipping: None,
        }
    }

    /// Appends received bytes; call [`Self::next_event`] until it returns `Ok(None)`.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.pending.drain(..self.offset);
        self.offset = 0;
        self.pending.extend_from_slice(bytes);
    }

    /// Restarts the stream (RFC 6120 4.3.3, after SASL success): a new XML document begins.
    /// Bytes already received but not consumed are kept.
    pub fn restart(&mut self) {
        self.parser = rxml::Parser::new();
        self.stack.clear();
        self.opened = false;
        self.stanza_bytes = 0;
        self.unaccounted = 0;
        self.namespace_bytes = 0;
        self.skipping = None;
    }

    /// Bytes buffered and not yet parsed.
    pub fn buffered(&self) -> usize {
        self.pending.len() - self.offset
    }

    /// The next complete event, `Ok(None)` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, StreamError> {
        if self.failed {
            return Ok(None);
        }
        loop {
            let mut input: &[u8] = &self.pending[self.offset..];
            let before = input.len();
            let res = self.parser.parse(&mut input, false);
            let consumed = before - input.len();
            self.offset += consumed;
            self.unaccounted += consumed;
            let ev = match res {
                Ok(Some(ev)) => ev,
                Ok(None) => return Ok(Some(StreamEvent::Close)),
                Err(EndOrError::NeedMoreData) => return self.need_more(),
                Err(EndOrError::Error(e)) => {
                    return self.fail(StreamError::NotWellFormed(e.to_string()));
                }
            };
            match self.handle(ev) {
                Ok(Some(out)) => return Ok(Some(out)),
                Ok(None) => continue,
                Err(e) => return self.fail(e),
            }
        }
    }

    /// The parser needs more bytes: what it holds of an unfinished token counts towards the
    /// stanza it belongs to (or, between stanzas, towards the next one or the stream header),
    /// so that no token grows without limit before its event comes out.
    /// Past the limit inside a stanza, skipping begins here (with [`Oversize::Skip`]); one
    /// token past it (rxml holds a token whole) is a stream error whatever the mode.
    fn need_more(&mut self) -> Result<Option<StreamEvent>, StreamError> {
        if self.unaccounted > STANZA_BYTES_MAX {
            return self.fail(StreamError::StanzaTooLarge);
        }
        if self.skipping.is_none() && self.stanza_bytes + self.unaccounted > STANZA_BYTES_MAX {
            if self.oversize == Oversize::Close || self.stack.is_empty() {
                return self.fail(StreamError::StanzaTooLarge);
            }
            let depth = self.stack.len();
            self.begin_skip(None, depth);
        }
        self.release_idle();
        Ok(None)
    }

    /// Gives back what a stream waiting for bytes need not hold: the bytes rxml has consumed
    /// and rxml's token scratchpads. rxml reserves its full token limit (8 KiB) for the first
    /// token and keeps it, twice, for the life of the parser; with a parser for each direction
    /// of every client stream that was the largest owner of a run's heap (17 % at 5,000 users,
    /// heaptrack). Between reads most streams are idle, so the buffers are taken again only by
    /// the streams that read; what rxml holds of an unfinished token is kept.
    fn release_idle(&mut self) {
        if self.offset == self.pending.len() {
            self.pending = Vec::new();
            self.offset = 0;
        }
        self.parser.release_temporaries();
    }

    /// The bytes this parser holds for input not yet parsed (its own buffer's capacity).
    pub fn pending_capacity(&self) -> usize {
        self.pending.capacity()
    }

    /// Starts skipping the stanza being built, `depth` elements deep once the current event is
    /// taken into account; `start` is its top-level element when that is the current event.
    fn begin_skip(&mut self, start: Option<Element>, depth: usize) {
        let head = match self.stack.first_mut() {
            Some(top) => {
                top.children.clear();
                std::mem::replace(top, Element::new("", ""))
            }
            None => start.unwrap_or_else(|| Element::new("", "")),
        };
        self.stack.clear();
        self.namespace_bytes = 0;
        self.skipping = Some((head, depth));
    }

    /// One event of a stanza being skipped: only its depth is followed. The stanza's end
    /// resynchronises the stream.
    fn skip_event(&mut self, ev: &rxml::Event) -> Result<Option<StreamEvent>, StreamError> {
        let Some((_, depth)) = self.skipping.as_mut() else {
            return Ok(None);
        };
        match ev {
            rxml::Event::StartElement(..) => {
                *depth += 1;
                if *depth > DEPTH_MAX {
                    return Err(StreamError::TooDeep);
                }
            }
            rxml::Event::EndElement(_) => *depth = depth.saturating_sub(1),
            rxml::Event::Text(..) | rxml::Event::XmlDeclaration(..) => {}
        }
        Ok(self.skip_done())
    }

    /// The skipped stanza, once the parser is back between stanzas.
    fn skip_done(&mut self) -> Option<StreamEvent> {
        if self.skipping.as_ref().is_none_or(|(_, depth)| *depth > 0) {
            return None;
        }
        let (head, _) = self.skipping.take()?;
        let bytes = std::mem::take(&mut self.stanza_bytes);
        Some(StreamEvent::Skipped { head, bytes })
    }

    /// The stanza being built went past the limit with event `ev`: a stream error, or (with
    /// [`Oversize::Skip`]) the start of skipping it.
    fn over_limit(&mut self, ev: &rxml::Event) -> Result<Option<StreamEvent>, StreamError> {
        if self.oversize == Oversize::Close {
            return Err(StreamError::StanzaTooLarge);
        }
        let (start, depth) = match ev {
            rxml::Event::StartElement(_, (ns, name), attrs) => (
                Some(element_of(ns, name, attrs.clone())),
                self.stack.len() + 1,
            ),
            rxml::Event::EndElement(_) => (None, self.stack.len().saturating_sub(1)),
            _ => (None, self.stack.len()),
        };
        self.begin_skip(start, depth);
        Ok(self.skip_done())
    }

    fn fail(&mut self, e: StreamError) -> Result<Option<StreamEvent>, StreamError> {
        self.failed = true;
        self.pending.clear();
        self.offset = 0;
        self.stack.clear();
        Err(e)
    }

    /// A start tag: the stream header, or an element of the stanza being built.
    fn start_element(
        &mut self,
        ns: &str,
        name: &str,
        attrs: rxml::AttrMap,
    ) -> Result<Option<StreamEvent>, StreamError> {
        if self.opened {
            self.namespace_bytes += ns.len();
            if self.namespace_bytes > NAMESPACE_BYTES_MAX {
                if self.oversize == Oversize::Close || self.stack.is_empty() {
                    return Err(StreamError::StanzaTooLarge);
                }
                let depth = self.stack.len() + 1;
                self.begin_skip(None, depth);
                return Ok(None);
            }
        }
        let el = element_of(ns, name, attrs);
        if !self.opened {
            self.opened = true;
            return Ok(Some(StreamEvent::Open(el)));
        }
        if self.stack.len() >= DEPTH_MAX {
            return Err(StreamError::TooDeep);
        }
        self.stack.push(el);
        Ok(None)
    }

    fn handle(&mut self, ev: rxml::Event) -> Result<Option<StreamEvent>, StreamError> {
        // Each wire byte is counted once: when its event comes out it moves from `unaccounted`
        // to the stanza (if it belongs to one).
        let len = ev.metrics().len();
        self.unaccounted = self.unaccounted.saturating_sub(len);
        // One token over the limit is refused however it arrived (in pieces, `need_more`
        // refuses it before its event comes out).
        if len > STANZA_BYTES_MAX {
            return Err(StreamError::StanzaTooLarge);
        }
        if self.skipping.is_some() {
            self.stanza_bytes += len;
            return self.skip_event(&ev);
        }
        if !self.stack.is_empty() || matches!(ev, rxml::Event::StartElement(..)) && self.opened {
            self.stanza_bytes += len;
            if self.stanza_bytes + self.unaccounted > STANZA_BYTES_MAX {
                return self.over_limit(&ev);
            }
        }
        match ev {
            rxml::Event::XmlDeclaration(..) => Ok(None),
            rxml::Event::StartElement(_, (ns, name), attrs) => {
                self.start_element(&ns, &name, attrs)
            }
            rxml::Event::EndElement(_) => {
                let Some(el) = self.stack.pop() else {
                    return Ok(Some(StreamEvent::Close));
                };
                match self.stack.last_mut() {
                    Some(parent) => {
                        parent.children.push(Node::Element(el));
                        Ok(None)
                    }
                    None => {
                        self.stanza_bytes = 0;
                        self.namespace_bytes = 0;
                        Ok(Some(StreamEvent::Stanza(el)))
                    }
                }
            }
            rxml::Event::Text(_, text) => {
                match self.stack.last_mut() {
                    Some(top) => match top.children.last_mut() {
                        Some(Node::Text(t)) => t.push_str(&text),
                        _ => top.children.push(Node::Text(text)),
                    },
                    // Whitespace between stanzas is legal keepalive; other text at depth 1 is
                    // not meaningful and RFC 6120 lets us ignore it.
                    None if !self.opened && !text.trim().is_empty() => {
                        return Err(StreamError::BadHeader("text".into()));
                    }
                    None => {}
                }
                Ok(None)
            }
        }
    }
}

/// An element from a start tag: its name, namespace and attributes (unprefixed and `xml:`).
fn element_of(ns: &str, name: &str, attrs: rxml::AttrMap) -> Element {
    let mut el = Element::new(name, ns);
    for ((ans, aname), value) in attrs {
        if ans.is_empty() {
            el.attrs.push((aname.to_string(), value));
        } else if ans.as_str() == NS_XML {
            el.attrs.push((format!("xml:{aname}"), value));
        }
        // Other namespaced attributes carry nothing XMPP needs here; dropping them keeps the
        // stanza model simple.
    }
    el
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

    fn events(p: &mut StreamParser) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        while let Some(ev) = p.next_event().unwrap() {
            out.push(ev);
        }
        out
    }

    #[test]
    fn an_idle_stream_keeps_no_buffer_after_a_large_stanza() {
        let mut p = StreamParser::new();
        p.feed(HEADER.as_bytes());
        assert!(matches!(events(&mut p)[..], [StreamEvent::Open(_)]));
        let body = "x".repeat(10_000);
        let stanza = format!("<message to='b@example.com'><body>{body}</body></message>");
        p.feed(stanza.as_bytes());
        match &events(&mut p)[..] {
            [StreamEvent::Stanza(m)] => {
                assert_eq!(m.child("body", "jabber:client").unwrap().text(), body)
            }
            other => panic!("expected the message, got {other:?}"),
        }
        assert_eq!(p.buffered(), 0);
        assert_eq!(
            p.pending_capacity(),
            0,
            "the read's 10 KB stay held while idle"
        );
        // Half a stanza is kept whole across reads.
        p.feed(&stanza.as_bytes()[..5_000]);
        assert!(events(&mut p).is_empty());
        p.feed(&stanza.as_bytes()[5_000..]);
        assert!(matches!(events(&mut p)[..], [StreamEvent::Stanza(_)]));
    }

    #[test]
    fn parses_header_and_stanzas_split_at_every_byte() {
        let doc = format!(
            "{HEADER}<message to='b@x' type='chat' id='1'><body>hi &amp; bye</body>\
             <active xmlns='http://jabber.org/protocol/chatstates'/></message> \
             <presence/></stream:stream>"
        );
        let mut p = StreamParser::new();
        let mut got = Vec::new();
        for b in doc.as_bytes() {
            p.feed(std::slice::from_ref(b));
            got.extend(events(&mut p));
        }
        assert_eq!(got.len(), 4, "{got:?}");
        let StreamEvent::Open(h) = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(h.attr("to"), Some("example.com"));
        let StreamEvent::Stanza(m) = &got[1] else {
            panic!()
        };
        assert!(m.is("message", "jabber:client"));
        assert_eq!(m.child("body", "jabber:client").unwrap().text(), "hi & bye");
        assert!(
            m.child("active", "http://jabber.org/protocol/chatstates")
                .is_some()
        );
        assert_eq!(got[3], StreamEvent::Close);
    }

    #[test]
    fn roundtrips_through_the_serializer() {
        let mut p = StreamParser::new();
        let stanza = "<message to='b@x' type='chat'><body>a&lt;b</body>\
                      <request xmlns='urn:xmpp:receipts'/></message>";
        p.feed(format!("{HEADER}{stanza}").as_bytes());
        let evs = events(&mut p);
        let StreamEvent::Stanza(m) = &evs[1] else {
            panic!()
        };
        assert_eq!(m.to_xml_in("jabber:client"), stanza);
    }

    #[test]
    fn rejects_malformed_xml_and_oversized_stanzas() {
        let mut p = StreamParser::new();
        p.feed(format!("{HEADER}<message><body></message>").as_bytes());
        assert!(matches!(
            (0..3).find_map(|_| p.next_event().err()),
            Some(StreamError::NotWellFormed(_))
        ));

        let mut p = StreamParser::new();
        p.feed(HEADER.as_bytes());
        p.feed(b"<message><body>");
        let big = "x".repeat(STANZA_BYTES_MAX + 10);
        p.feed(big.as_bytes());
        let err = loop {
            match p.next_event() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("oversized stanza accepted"),
                Err(e) => break e,
            }
        };
        assert_eq!(err, StreamError::StanzaTooLarge);
    }

    #[test]
    fn restart_begins_a_new_document() {
        let mut p = StreamParser::new();
        p.feed(format!("{HEADER}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>").as_bytes());
        assert_eq!(events(&mut p).len(), 2);
        p.restart();
        p.feed(HEADER.as_bytes());
        p.feed(b"<iq type='get' id='a'/>");
        let evs = events(&mut p);
        assert!(matches!(evs[0], StreamEvent::Open(_)));
        assert!(matches!(&evs[1], StreamEvent::Stanza(e) if e.name == "iq"));
    }

    /// Feeds `bytes` in `chunk`-byte pieces and reads events after each: the events, or the
    /// first error.
    fn feed_in_chunks(bytes: &[u8], chunk: usize) -> Result<Vec<StreamEvent>, StreamError> {
        parse_in_chunks(StreamParser::new(), bytes, chunk)
    }

    /// Feeds `bytes` to `p` in `chunk`-byte pieces, reading events after each.
    fn parse_in_chunks(
        mut p: StreamParser,
        bytes: &[u8],
        chunk: usize,
    ) -> Result<Vec<StreamEvent>, StreamError> {
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk) {
            p.feed(piece);
            while let Some(ev) = p.next_event()? {
                out.push(ev);
            }
        }
        Ok(out)
    }

    /// A `<message>` stanza of exactly `len` wire bytes (a body of letters).
    fn stanza_of(len: usize) -> String {
        let frame = "<message to='b@x'><body></body></message>";
        format!(
            "<message to='b@x'><body>{}</body></message>",
            "q".repeat(len - frame.len())
        )
    }

    #[test]
    fn a_stanza_in_pieces_is_counted_once_up_to_the_limit() {
        for chunk in [1000, 4096, 16 * 1024] {
            let doc = format!("{HEADER}{}<presence/>", stanza_of(STANZA_BYTES_MAX));
            let evs = feed_in_chunks(doc.as_bytes(), chunk).expect("64 KiB is accepted");
            assert_eq!(evs.len(), 3, "chunk {chunk}");
            let doc = format!("{HEADER}{}", stanza_of(STANZA_BYTES_MAX + 1));
            let err = feed_in_chunks(doc.as_bytes(), chunk).expect_err("one byte over");
            assert_eq!(err, StreamError::StanzaTooLarge, "chunk {chunk}");
        }
    }

    #[test]
    fn attributes_of_an_unfinished_start_tag_are_bounded() {
        let attrs: String = (0..20_000).map(|i| format!(" a{i}='x'")).collect();
        assert!(attrs.len() > 2 * STANZA_BYTES_MAX);
        let doc = format!("{HEADER}<message{attrs}");
        let err = feed_in_chunks(doc.as_bytes(), 4096).expect_err("refused before the end");
        assert_eq!(err, StreamError::StanzaTooLarge);
        // A stream header is bounded the same way.
        let doc = format!("<stream:stream xmlns='jabber:client'{attrs}");
        let err = feed_in_chunks(doc.as_bytes(), 4096).expect_err("refused before the end");
        assert_eq!(err, StreamError::StanzaTooLarge);
    }

    /// A thousand stanzas in one read, then one split over two reads: every one comes out, in
    /// order (the parser keeps an offset into its buffer instead of moving the rest of the
    /// read after every event).
    #[test]
    fn many_stanzas_in_one_read_then_a_split_one() {
        let mut p = StreamParser::new();
        p.feed(HEADER.as_bytes());
        assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
        let read: String = (0..1000).map(|i| format!("<message id='m{i}'/>")).collect();
        p.feed(read.as_bytes());
        let mut ids = Vec::new();
        while let Some(StreamEvent::Stanza(el)) = p.next_event().expect("well-formed") {
            ids.push(el.attr("id").unwrap_or_default().to_string());
        }
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().enumerate().all(|(i, id)| *id == format!("m{i}")));
        assert_eq!(p.buffered(), 0, "everything given to rxml");
        p.feed(b"<message id='last'><bo");
        assert_eq!(p.next_event(), Ok(None));
        p.feed(b"dy>x</body></message>");
        let Ok(Some(StreamEvent::Stanza(el))) = p.next_event() else {
            panic!("the split stanza")
        };
        assert_eq!(el.attr("id"), Some("last"));
    }

    #[test]
    fn whitespace_keepalives_between_stanzas_never_add_up() {
        let mut p = StreamParser::new();
        p.feed(HEADER.as_bytes());
        assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
        for _ in 0..(2 * STANZA_BYTES_MAX / 64) {
            p.feed(&[b' '; 64]);
            while p.next_event().expect("whitespace is fine").is_some() {}
        }
        p.feed(b"<presence/>");
        assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Stanza(_)))));
    }

    #[test]
    fn a_namespace_declared_once_cannot_be_held_by_every_element() {
        let long_ns = format!("urn:{}", "n".repeat(8_000));
        let children = "<p:a/>".repeat(7_000);
        let st = format!("<message><x xmlns:p='{long_ns}'>{children}</x></message>");
        assert!(st.len() < STANZA_BYTES_MAX);
        // (Not printed when accepted: the tree holds 57 MB of namespace strings.)
        let res = feed_in_chunks(format!("{HEADER}{st}").as_bytes(), 4096);
        assert!(
            matches!(res, Err(StreamError::StanzaTooLarge)),
            "not refused"
        );
        // Many elements in an ordinary namespace are fine: 3,000 roster items.
        let items = "<item jid='a@b'/>".repeat(3_000);
        let roster =
            format!("<iq type='result'><query xmlns='jabber:iq:roster'>{items}</query></iq>");
        assert!(roster.len() < STANZA_BYTES_MAX);
        let evs = feed_in_chunks(format!("{HEADER}{roster}").as_bytes(), 4096).expect("accepted");
        assert_eq!(evs.len(), 2);
    }

    /// Feeds `bytes` to a skipping parser in `chunk`-byte pieces: the events, or the first error.
    fn skip_in_chunks(bytes: &[u8], chunk: usize) -> Result<Vec<StreamEvent>, StreamError> {
        parse_in_chunks(StreamParser::with_oversize(Oversize::Skip), bytes, chunk)
    }

    #[test]
    fn a_shared_link_skips_an_oversize_stanza_and_reads_the_next() {
        let big = stanza_of(STANZA_BYTES_MAX + 5_000).replace("<message ", "<message id='big' ");
        for chunk in [1, 700, 4096, 16 * 1024, 1 << 20] {
            let doc = format!("{HEADER}<presence/>{big}<iq id='after'/>");
            let evs = skip_in_chunks(doc.as_bytes(), chunk).expect("the link stays up");
            assert_eq!(evs.len(), 4, "chunk {chunk}: {evs:?}");
            let StreamEvent::Skipped { head, bytes } = &evs[2] else {
                panic!("chunk {chunk}: {:?}", evs[2])
            };
            assert_eq!(
                (head.name.as_str(), head.attr("id")),
                ("message", Some("big"))
            );
            assert_eq!(head.attr("to"), Some("b@x"));
            assert!(head.children.is_empty());
            assert_eq!(*bytes, big.len(), "chunk {chunk}");
            assert!(matches!(&evs[3], StreamEvent::Stanza(e) if e.attr("id") == Some("after")));
        }
        // The same stream on a parser of one client's stream is closed.
        let doc = format!("{HEADER}{big}<iq/>");
        assert_eq!(
            feed_in_chunks(doc.as_bytes(), 4096),
            Err(StreamError::StanzaTooLarge)
        );
    }

    #[test]
    fn a_shared_link_still_refuses_a_token_it_cannot_skip() {
        let attrs: String = (0..20_000).map(|i| format!(" a{i}='x'")).collect();
        let doc = format!("{HEADER}<message><x{attrs}/></message>");
        for chunk in [4096, 1 << 20] {
            let err = skip_in_chunks(doc.as_bytes(), chunk).expect_err("one start tag");
            assert_eq!(err, StreamError::StanzaTooLarge, "chunk {chunk}");
        }
        // Nesting stays bounded while skipping.
        let deep = format!("<message>{}", "<a>".repeat(DEPTH_MAX + 1));
        let doc = format!("{HEADER}{}{deep}", stanza_of(STANZA_BYTES_MAX + 1));
        let doc = doc.replacen("</body></message>", &format!("</body>{deep}"), 1);
        let err = skip_in_chunks(doc.as_bytes(), 4096).expect_err("too deep");
        assert_eq!(err, StreamError::TooDeep);
    }

    #[test]
    fn a_shared_link_skips_a_stanza_holding_too_many_namespace_bytes() {
        let long_ns = format!("urn:{}", "n".repeat(8_000));
        let children = "<p:a/>".repeat(7_000);
        let st = format!("<message id='ns'><x xmlns:p='{long_ns}'>{children}</x></message>");
        let doc = format!("{HEADER}{st}<presence/>");
        let evs = skip_in_chunks(doc.as_bytes(), 4096).expect("skipped");
        assert!(
            matches!(&evs[1], StreamEvent::Skipped { head, .. } if head.attr("id") == Some("ns"))
        );
        assert!(matches!(&evs[2], StreamEvent::Stanza(_)));
    }
}
