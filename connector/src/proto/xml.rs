//! A small, owned XML element tree with a namespace-correct serializer.
//!
//! Parsing is done by [`rxml`] (see [`super::stream`]); this module only holds the result and
//! writes it back. Namespaces are stored resolved (every element knows its namespace URI), and
//! the serializer emits an `xmlns` declaration only where an element's namespace differs from its
//! parent's, which is exactly how XMPP stanzas look on the wire.

/// The namespace of XMPP stream-level elements (`<stream:features>`, `<stream:error>`).
pub const NS_STREAM: &str = "http://etherx.jabber.org/streams";
/// The namespace of the `xml:` prefix.
pub const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

/// One child of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A nested element.
    Element(Element),
    /// Character data, unescaped.
    Text(String),
}

/// An XML element with a resolved namespace, attributes in document order and children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Local name, such as `message`.
    pub name: String,
    /// Namespace URI, such as `jabber:client`; empty for no namespace.
    pub ns: String,
    /// Unprefixed attributes, plus `xml:lang` stored as `xml:lang`.
    pub attrs: Vec<(String, String)>,
    /// Child elements and text.
    pub children: Vec<Node>,
}

impl Element {
    /// An empty element.
    pub fn new(name: impl Into<String>, ns: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ns: ns.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder: sets an attribute (replacing an existing one of the same name).
    #[must_use]
    pub fn with_attr(mut self, name: &str, value: impl Into<String>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Builder: appends a child element.
    #[must_use]
    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder: appends text.
    #[must_use]
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.children.push(Node::Text(text.into()));
        self
    }

    /// Sets an attribute (replacing an existing one of the same name).
    pub fn set_attr(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((name.to_string(), value)),
        }
    }

    /// Removes an attribute, returning its value.
    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let pos = self.attrs.iter().position(|(k, _)| k == name)?;
        Some(self.attrs.remove(pos).1)
    }

    /// The value of an attribute.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether this element has the given local name and namespace.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    /// Child elements in order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element with this name and namespace.
    pub fn child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(name, ns))
    }

    /// The first child element in this namespace, whatever its name.
    pub fn child_ns(&self, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.ns == ns)
    }

    /// Mutable access to the first child element with this name and namespace.
    pub fn child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.children.iter_mut().find_map(|n| match n {
            Node::Element(e) if e.is(name, ns) => Some(e),
            _ => None,
        })
    }

    /// Removes every child element with this name and namespace.
    pub fn remove_children(&mut self, name: &str, ns: &str) {
        self.children
            .retain(|n| !matches!(n, Node::Element(e) if e.is(name, ns)));
    }

    /// The concatenated text children of this element (not of its descendants).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                out.push_str(t);
            }
        }
        out
    }

    /// Serializes this element as a stanza inside a stream whose default namespace is
    /// `stream_ns` (so `jabber:client` stanzas carry no `xmlns`).
    pub fn to_xml_in(&self, stream_ns: &str) -> String {
        let mut out = String::with_capacity(256);
        self.write_into(&mut out, stream_ns);
        out
    }

    /// Serializes this element as a standalone document fragment (its namespace declared).
    pub fn to_xml(&self) -> String {
        self.to_xml_in("")
    }

    /// Serializes this element as [`Self::to_xml_in`] does with attribute `name` set to
    /// `value` (in its place when the element has it, else last, as [`Self::set_attr`] puts
    /// it), without cloning the element: how a router stamps `to` or `from` on a stanza it
    /// passes on. A deep copy of every routed stanza (each name, attribute and text its own
    /// allocation) only to change one attribute was a large part of routing's cost.
    pub fn to_xml_in_with_attr(&self, stream_ns: &str, name: &str, value: &str) -> String {
        let mut out = String::with_capacity(256);
        self.write_stamped(&mut out, stream_ns, Some((name, value)));
        out
    }

    /// Appends the serialization to `out`; `parent_ns` is the namespace in scope.
    pub fn write_into(&self, out: &mut String, parent_ns: &str) {
        self.write_stamped(out, parent_ns, None);
    }

    /// [`Self::write_into`], with `stamp` (an attribute name and value) set on this element
    /// only, not on its children.
    fn write_stamped(&self, out: &mut String, parent_ns: &str, stamp: Option<(&str, &str)>) {
        // Stream-level elements use the `stream:` prefix declared on the stream header, as every
        // XMPP implementation writes them; some clients look for the prefixed form.
        let prefixed = self.ns == NS_STREAM;
        out.push('<');
        if prefixed {
            out.push_str("stream:");
        }
        out.push_str(&self.name);
        let scope = if prefixed { parent_ns } else { &self.ns };
        if !prefixed && self.ns != parent_ns {
            out.push_str(" xmlns=");
            escape_attr_into(out, &self.ns);
        }
        let mut stamp = stamp;
        for (k, v) in &self.attrs {
            let v = match stamp {
                Some((name, value)) if name == k => {
                    stamp = None;
                    value
                }
                _ => v.as_str(),
            };
            write_attr(out, k, v);
        }
        if let Some((name, value)) = stamp {
            write_attr(out, name, value);
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for child in &self.children {
            match child {
                Node::Element(e) => e.write_into(out, scope),
                Node::Text(t) => escape_text_into(out, t),
            }
        }
        out.push_str("</");
        if prefixed {
            out.push_str("stream:");
        }
        out.push_str(&self.name);
        out.push('>');
    }
}

/// ` name='value'`, the value escaped.
fn write_attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push('=');
    escape_attr_into(out, value);
}

/// Escapes text for both attribute values (in either quote) and character data: for text
/// written into templates by hand. The serializer escapes only what each context needs
/// ([`escape_text_into`], [`escape_attr_into`]).
pub fn escape_into(out: &mut String, s: &str) {
    let special = |b: u8| matches!(b, b'&' | b'<' | b'>' | b'\'' | b'"') || may_be_forbidden(b);
    escape_runs(out, s, special, |out, c| match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '\'' => out.push_str("&apos;"),
        '"' => out.push_str("&quot;"),
        // Characters XML 1.0 cannot carry at all are dropped rather than producing a
        // document every peer would reject.
        c if is_forbidden_xml_char(c) => {}
        c => out.push(c),
    });
}

/// Character data as XML requires it and no more (XML 1.0 section 2.4): `&` and `<` always,
/// `>` only where it would close `]]>`, and a carriage return as `&#13;` (a raw one would be
/// read back as a line feed). Quotes stay as they are: escaping them made a stanza of quotes
/// several times its size on the way out, past the peer's stanza limit.
pub fn escape_text_into(out: &mut String, s: &str) {
    let special = |b: u8| matches!(b, b'&' | b'<' | b'>') || may_be_forbidden(b);
    escape_runs(out, s, special, |out, c| match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' if out.ends_with("]]") => out.push_str("&gt;"),
        '\r' => out.push_str("&#13;"),
        c if is_forbidden_xml_char(c) => {}
        c => out.push(c),
    });
}

/// An attribute value with its quotes, escaped as XML requires (section 2.3, 3.3.3): quoted
/// with whichever quote it holds fewer of, that quote, `&` and `<` escaped, and tab, line feed
/// and carriage return as character references (raw ones would be read back as spaces).
pub fn escape_attr_into(out: &mut String, s: &str) {
    let singles = s.bytes().filter(|&b| b == b'\'').count();
    let doubles = s.bytes().filter(|&b| b == b'"').count();
    let (quote, escaped) = if singles <= doubles {
        ('\'', "&apos;")
    } else {
        ('"', "&quot;")
    };
    out.push(quote);
    let special = |b: u8| matches!(b, b'&' | b'<') || b == quote as u8 || may_be_forbidden(b);
    escape_runs(out, s, special, |out, c| match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '\t' => out.push_str("&#9;"),
        '\n' => out.push_str("&#10;"),
        '\r' => out.push_str("&#13;"),
        c if c == quote => out.push_str(escaped),
        c if is_forbidden_xml_char(c) => {}
        c => out.push(c),
    });
    out.push(quote);
}

/// Appends `s` to `out`, copying the runs of bytes for which `special` is false whole and
/// handing each character that starts with a special byte to `each`. The escapers wrote every
/// character one at a time; most text (names, ids, bodies) needs no escaping at all, and the
/// per-character push was most of the serializer's cost. `special` must be true for the first
/// byte of every character `each` changes; the bytes of a run are ASCII or whole UTF-8
/// sequences (a special byte is either ASCII or a lead byte), so every run is a `str` slice.
fn escape_runs(
    out: &mut String,
    s: &str,
    special: impl Fn(u8) -> bool,
    mut each: impl FnMut(&mut String, char),
) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !special(bytes[i]) {
            i += 1;
            continue;
        }
        out.push_str(&s[start..i]);
        let c = s[i..].chars().next().unwrap_or_default();
        each(out, c);
        i += c.len_utf8();
        start = i;
    }
    out.push_str(&s[start..]);
}

/// Whether `b` may begin a character [`is_forbidden_xml_char`] refuses: an ASCII control
/// character (tab, line feed and carriage return included: some contexts escape them), or
/// 0xEF, the lead byte of U+FFFE and U+FFFF (and of other characters, handed to the escaper
/// whole, which keeps them).
fn may_be_forbidden(b: u8) -> bool {
    b < 0x20 || b == 0xEF
}

/// Escapes a string into a new `String`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

fn is_forbidden_xml_char(c: char) -> bool {
    let u = c as u32;
    (u < 0x20 && c != '\t' && c != '\n' && c != '\r') || u == 0xFFFE || u == 0xFFFF
}

/// Parses one complete XML document (such as a SOAP envelope) into its root element, with the
/// same rxml-based parser and limits as XMPP streams ([`super::stream::StreamParser`]): no
/// DTDs or entities, each child of the root at most
/// [`STANZA_BYTES_MAX`](super::stream::STANZA_BYTES_MAX) bytes. Text directly inside the root
/// is dropped (in SOAP and XMPP it is only whitespace); a truncated document is an error.
pub fn parse_document(bytes: &[u8]) -> Result<Element, super::stream::StreamError> {
    use super::stream::{StreamError, StreamEvent, StreamParser};
    let mut p = StreamParser::new();
    p.feed(bytes);
    let mut root: Option<Element> = None;
    loop {
        match p.next_event()? {
            Some(StreamEvent::Open(el)) => root = Some(el),
            Some(StreamEvent::Stanza(el)) => match root.as_mut() {
                Some(r) => r.children.push(Node::Element(el)),
                None => return Err(StreamError::BadHeader("element before root".into())),
            },
            Some(StreamEvent::Close) => {
                return root.ok_or_else(|| StreamError::NotWellFormed("no root element".into()));
            }
            None => return Err(StreamError::NotWellFormed("truncated document".into())),
            // A parser that closes on an oversize stanza never skips one.
            Some(StreamEvent::Skipped { .. }) => return Err(StreamError::StanzaTooLarge),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_namespaces_only_where_they_change() {
        let msg = Element::new("message", "jabber:client")
            .with_attr("to", "bob@example.com")
            .with_child(Element::new("body", "jabber:client").with_text("a<b & 'c'"))
            .with_child(Element::new(
                "composing",
                "http://jabber.org/protocol/chatstates",
            ));
        assert_eq!(
            msg.to_xml_in("jabber:client"),
            "<message to='bob@example.com'><body>a&lt;b &amp; 'c'</body>\
             <composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
        );
    }

    #[test]
    fn stream_elements_use_the_stream_prefix() {
        let f = Element::new("features", NS_STREAM)
            .with_child(Element::new("bind", "urn:ietf:params:xml:ns:xmpp-bind"));
        assert_eq!(
            f.to_xml_in("jabber:client"),
            "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
        );
    }

    #[test]
    fn parse_document_reads_a_whole_document() {
        let doc = "<?xml version='1.0'?><e:Envelope xmlns:e='urn:env'><e:Body>\
                   <op xmlns='urn:x'><sql>SELECT 1 &lt; 2</sql></op></e:Body></e:Envelope>";
        let root = parse_document(doc.as_bytes()).unwrap();
        assert!(root.is("Envelope", "urn:env"));
        let body = root.child("Body", "urn:env").unwrap();
        let op = body.child("op", "urn:x").unwrap();
        assert_eq!(op.child("sql", "urn:x").unwrap().text(), "SELECT 1 < 2");
        assert!(parse_document(b"<a><b></a>").is_err());
        assert!(parse_document(b"<a><b/>").is_err());
        assert!(parse_document(b"").is_err());
        assert!(parse_document(b"<a/>").is_ok());
    }

    #[test]
    fn only_what_xml_requires_is_escaped_in_each_context() {
        let msg = Element::new("message", "jabber:client")
            .with_attr("id", "it's")
            .with_attr("note", "a \"b\" & <c>")
            .with_child(
                Element::new("body", "jabber:client").with_text("\"quotes\" 'and' >, <, &"),
            );
        assert_eq!(
            msg.to_xml_in("jabber:client"),
            "<message id=\"it's\" note='a \"b\" &amp; &lt;c>'><body>\"quotes\" 'and' >, &lt;, \
             &amp;</body></message>"
        );
    }

    #[test]
    fn a_stamped_attribute_is_written_where_set_attr_puts_it() {
        let msg = Element::new("message", "jabber:client")
            .with_attr("from", "a@x/r")
            .with_attr("to", "b@x")
            .with_attr("type", "chat")
            .with_child(
                Element::new("body", "jabber:client")
                    .with_attr("to", "not-me")
                    .with_text("hi"),
            );
        for (name, value) in [("to", "b@x/hm-1"), ("id", "it's \"new\""), ("from", "")] {
            let mut copy = msg.clone();
            copy.set_attr(name, value);
            assert_eq!(
                msg.to_xml_in_with_attr("jabber:client", name, value),
                copy.to_xml_in("jabber:client"),
                "{name}"
            );
        }
    }

    /// The escapers as they were, one character at a time: what the run-copying ones must
    /// write for every input.
    fn escape_text_reference(out: &mut String, s: &str) {
        for c in s.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' if out.ends_with("]]") => out.push_str("&gt;"),
                '\r' => out.push_str("&#13;"),
                c if is_forbidden_xml_char(c) => {}
                c => out.push(c),
            }
        }
    }

    fn escape_attr_reference(out: &mut String, s: &str) {
        let singles = s.matches('\'').count();
        let doubles = s.matches('"').count();
        let (quote, escaped) = if singles <= doubles {
            ('\'', "&apos;")
        } else {
            ('"', "&quot;")
        };
        out.push(quote);
        for c in s.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '\t' => out.push_str("&#9;"),
                '\n' => out.push_str("&#10;"),
                '\r' => out.push_str("&#13;"),
                c if c == quote => out.push_str(escaped),
                c if is_forbidden_xml_char(c) => {}
                c => out.push(c),
            }
        }
        out.push(quote);
    }

    fn escape_all_reference(s: &str) -> String {
        let mut out = String::new();
        for c in s.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '\'' => out.push_str("&apos;"),
                '"' => out.push_str("&quot;"),
                c if is_forbidden_xml_char(c) => {}
                c => out.push(c),
            }
        }
        out
    }

    /// Characters every escaper treats specially, their neighbours, and multi-byte characters
    /// that share 0xEF as their lead byte with the two XML forbids (U+FFFE, U+FFFF).
    const TRICKY: &str = "[a-z \\]&<>'\"\t\n\r\u{0}-\u{1f}\u{7f}\u{e9}\u{20ac}\u{f000}\u{fffd}\u{fffe}\u{ffff}\u{1f600}]{0,24}";

    proptest::proptest! {
        #[test]
        fn run_copying_escapers_write_what_the_per_character_ones_did(
            prefix in "[a-z\\]]{0,3}",
            s in TRICKY,
        ) {
            let (mut fast, mut slow) = (prefix.clone(), prefix.clone());
            escape_text_into(&mut fast, &s);
            escape_text_reference(&mut slow, &s);
            proptest::prop_assert_eq!(&fast, &slow);
            let (mut fast, mut slow) = (prefix.clone(), prefix);
            escape_attr_into(&mut fast, &s);
            escape_attr_reference(&mut slow, &s);
            proptest::prop_assert_eq!(&fast, &slow);
            proptest::prop_assert_eq!(escape(&s), escape_all_reference(&s));
        }
    }

    #[test]
    fn a_stanza_of_quotes_re_serializes_to_its_own_size() {
        let text = "\"'>".repeat(3_000);
        let wire = format!("<message xmlns='jabber:client'><body>{text}</body></message>");
        let el = parse_document(wire.as_bytes()).expect("well-formed");
        assert_eq!(
            el.to_xml_in("jabber:client").len(),
            wire.len() - " xmlns='jabber:client'".len()
        );
    }
}
