//! Property tests of the connector's parsers, fed what the network can send: generators reach
//! past every size limit (the older ones stopped at 600 bytes). Each must accept what is within
//! its limits, refuse what is not with a clear error, and never panic.
//!
//! Not here: WebSocket frames, which the connector never parses itself (tungstenite does, under
//! `WS_MESSAGE_BYTES_MAX`); the cloud's answers, fuzzed through the node harness
//! (`tests/node/fuzz.rs`).

use connector::proto::jwe::{self, COMPACT_BYTES_MAX, HEADER_SEGMENT_BYTES_MAX, SpaceKey};
use connector::proto::stream::{
    Oversize, STANZA_BYTES_MAX, StreamError, StreamEvent, StreamParser,
};
use connector::proto::xml::{Element, Node, parse_document};
use connector::proto::xmpp::Jid;
use proptest::prelude::*;

const HEADER: &str = "<stream:stream xmlns='jabber:client' \
                      xmlns:stream='http://etherx.jabber.org/streams' to='example.com'>";

/// Pieces of a body's wire form: letters, what the old serializer blew up, entities, UTF-8.
const PIECES: [&str; 9] = ["a", "\"", "'", ">", "&amp;", "&lt;", "é", " ", "&#13;"];

/// A `<message>` of about `len` wire bytes built from `picks` (indexes into [`PIECES`]).
fn stanza(len: usize, picks: &[usize]) -> String {
    let frame = "<message to='b@x' type='chat'><body></body></message>";
    let mut body = String::new();
    let mut i = 0;
    while frame.len() + body.len() < len {
        body.push_str(PIECES[picks[i % picks.len()] % PIECES.len()]);
        i += 1;
    }
    format!("<message to='b@x' type='chat'><body>{body}</body></message>")
}

/// Feeds `doc` in pieces of the given sizes (cycled), reading events after each piece.
fn parse_in_chunks(doc: &[u8], sizes: &[usize]) -> Result<Vec<StreamEvent>, StreamError> {
    parse_with(StreamParser::new(), doc, sizes)
}

/// [`parse_in_chunks`] with a given parser.
fn parse_with(
    mut p: StreamParser,
    doc: &[u8],
    sizes: &[usize],
) -> Result<Vec<StreamEvent>, StreamError> {
    let mut out = Vec::new();
    let (mut at, mut k) = (0, 0);
    while at < doc.len() {
        let n = sizes[k % sizes.len()].clamp(1, doc.len() - at);
        p.feed(&doc[at..at + n]);
        at += n;
        k += 1;
        while let Some(ev) = p.next_event()? {
            out.push(ev);
        }
    }
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A shared link's parser: random stanzas up to the limit in random pieces are accepted,
    /// an oversize one among them is skipped (named, with its size) and the ones after it
    /// are accepted, whatever the pieces.
    #[test]
    fn a_shared_link_skips_an_oversize_stanza_among_random_ones(
        lens in proptest::collection::vec(60usize..(STANZA_BYTES_MAX - 8), 1..5),
        over in (STANZA_BYTES_MAX + 1)..(3 * STANZA_BYTES_MAX),
        at in 0usize..5,
        picks in proptest::collection::vec(0usize..9, 1..40),
        sizes in proptest::collection::vec(1usize..40_000, 1..8),
    ) {
        let mut stanzas: Vec<String> = lens.iter().map(|l| stanza(*l, &picks)).collect();
        let at = at.min(stanzas.len());
        stanzas.insert(at, stanza(over, &picks).replacen("<message ", "<message id='big' ", 1));
        let doc = format!("{HEADER}{}", stanzas.concat());
        let p = StreamParser::with_oversize(Oversize::Skip);
        let evs = parse_with(p, doc.as_bytes(), &sizes).expect("the link stays up");
        prop_assert_eq!(evs.len(), 1 + stanzas.len());
        for (k, (ev, st)) in evs[1..].iter().zip(&stanzas).enumerate() {
            match ev {
                StreamEvent::Skipped { head, bytes } => {
                    prop_assert_eq!(k, at);
                    prop_assert_eq!(head.attr("id"), Some("big"));
                    prop_assert_eq!(*bytes, st.len());
                }
                StreamEvent::Stanza(m) => {
                    prop_assert!(k != at, "the oversize one was accepted");
                    prop_assert!(st.len() <= STANZA_BYTES_MAX);
                    prop_assert_eq!(m.name.as_str(), "message");
                }
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }

    #[test]
    fn stanzas_in_random_pieces_are_accepted_to_the_limit_and_refused_past_it(
        len in (STANZA_BYTES_MAX - 3_000)..(STANZA_BYTES_MAX + 3_000),
        picks in proptest::collection::vec(0usize..9, 1..40),
        sizes in proptest::collection::vec(1usize..20_000, 1..8),
    ) {
        let st = stanza(len, &picks);
        let doc = format!("{HEADER}{st}<presence/>");
        match parse_in_chunks(doc.as_bytes(), &sizes) {
            Ok(evs) => {
                prop_assert!(st.len() <= STANZA_BYTES_MAX, "{} bytes accepted", st.len());
                prop_assert_eq!(evs.len(), 3);
                let StreamEvent::Stanza(m) = &evs[1] else { panic!("{evs:?}") };
                prop_assert!(m.to_xml_in("jabber:client").len() <= st.len());
            }
            Err(e) => {
                prop_assert!(st.len() > STANZA_BYTES_MAX, "{} bytes refused: {e}", st.len());
                prop_assert_eq!(e, StreamError::StanzaTooLarge);
            }
        }
    }

    #[test]
    fn small_stanzas_in_random_pieces_are_accepted(
        len in 60usize..3_000,
        picks in proptest::collection::vec(0usize..9, 1..40),
        sizes in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let st = stanza(len, &picks);
        let doc = format!("{HEADER}{st}{st}");
        let evs = parse_in_chunks(doc.as_bytes(), &sizes).expect("within limits");
        prop_assert_eq!(evs.len(), 3);
    }

    #[test]
    fn random_bytes_after_a_header_never_panic_nor_grow_past_the_limit(
        junk in proptest::collection::vec(any::<u8>(), 0..(3 * STANZA_BYTES_MAX)),
        sizes in proptest::collection::vec(1usize..20_000, 1..8),
    ) {
        let mut doc = HEADER.as_bytes().to_vec();
        doc.extend_from_slice(&junk);
        let mut p = StreamParser::new();
        let (mut at, mut k) = (0, 0);
        while at < doc.len() {
            let n = sizes[k % sizes.len()].clamp(1, doc.len() - at);
            p.feed(&doc[at..at + n]);
            at += n;
            k += 1;
            loop {
                match p.next_event() {
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(_) => return Ok(()),
                }
            }
            prop_assert!(p.buffered() <= n, "{} bytes left unparsed", p.buffered());
        }
    }

    #[test]
    fn an_unfinished_start_tag_is_refused_once_past_the_limit(
        attr_len in 1usize..200,
        sizes in proptest::collection::vec(1usize..20_000, 1..8),
    ) {
        let attrs: String = (0..(2 * STANZA_BYTES_MAX / (attr_len + 8)))
            .map(|i| format!(" a{i}='{}'", "v".repeat(attr_len)))
            .collect();
        let doc = format!("{HEADER}<message{attrs}");
        prop_assert_eq!(
            parse_in_chunks(doc.as_bytes(), &sizes).expect_err("refused"),
            StreamError::StanzaTooLarge
        );
    }

    #[test]
    fn any_text_and_attribute_round_trip_through_serialize_and_parse(
        text in "\\PC{0,300}|[\\x00-\\x7f]{0,300}",
        attr in "\\PC{0,100}|[\\x00-\\x7f]{0,100}",
    ) {
        let el = Element::new("message", "jabber:client")
            .with_attr("id", attr.clone())
            .with_child(Element::new("body", "jabber:client").with_text(text.clone()));
        let wire = el.to_xml();
        let back = parse_document(wire.as_bytes()).expect("what we write parses");
        // XML 1.0 cannot carry most C0 controls at all: they are dropped on the way out.
        let keep = |s: &str| -> String {
            s.chars().filter(|c| *c >= ' ' || matches!(c, '\t' | '\n' | '\r')).collect()
        };
        let want_attr = keep(&attr);
        prop_assert_eq!(back.attr("id"), Some(want_attr.as_str()));
        let body = back.elements().next().expect("a body");
        prop_assert_eq!(body.text(), keep(&text));
        // Escaping is bounded: at most 6 bytes out per byte in, plus the markup.
        let markup = "<message xmlns='jabber:client' id=''><body></body></message>".len();
        prop_assert!(wire.len() <= markup + 6 * (text.len() + attr.len()));
        // And what was read is written the same way every time (an empty body as `<body/>`).
        let again = back.to_xml();
        prop_assert!(again.len() <= wire.len());
        prop_assert_eq!(parse_document(again.as_bytes()).expect("parses").to_xml(), again);
    }

    /// Issue 12 item 2: a body's wire size is its own size plus a bounded cost for the only
    /// characters XML character data must escape (`&` 4 more bytes, `<` 3, `>` 3 at most, a
    /// carriage return 4): quotes and non-ASCII letters cost nothing, so a text that fits the
    /// stanza limit as typed still fits it as written.
    #[test]
    fn a_bodys_wire_size_is_bounded_by_what_it_must_escape(
        text in "[\"'<>&\ré a-z]{0,4000}|\\PC{0,2000}",
    ) {
        let el = Element::new("body", "jabber:client").with_text(text.clone());
        let wire = el.to_xml_in("jabber:client");
        let count = |c: char| text.chars().filter(|&x| x == c).count();
        let markup = "<body></body>".len();
        let bound = markup + text.len() + 4 * count('&') + 3 * count('<') + 3 * count('>')
            + 4 * count('\r');
        prop_assert!(wire.len() <= bound, "{} > {bound}", wire.len());
    }

    #[test]
    fn re_serializing_a_parsed_stanza_never_grows_it(
        len in 60usize..20_000,
        picks in proptest::collection::vec(0usize..9, 1..40),
    ) {
        let st = stanza(len, &picks);
        let doc = format!("<r xmlns='jabber:client'>{st}</r>");
        let root = parse_document(doc.as_bytes()).expect("well-formed");
        let Some(Node::Element(m)) = root.children.first() else { panic!("{root:?}") };
        prop_assert!(m.to_xml_in("jabber:client").len() <= st.len());
    }

    #[test]
    fn jid_parsing_never_panics_and_bare_jids_reparse(s in "\\PC{0,3100}|[@/a-z.]{0,40}") {
        if let Ok(j) = Jid::parse(&s) {
            let bare = Jid::parse(&j.bare()).expect("a bare JID of a JID parses");
            prop_assert_eq!(bare.bare(), j.bare());
        }
    }

    #[test]
    fn jwe_parsing_never_panics_at_any_size(
        header_len in 0usize..(HEADER_SEGMENT_BYTES_MAX + 2_000),
        body_len in 0usize..4_000,
        dots in 0usize..8,
        filler in "[A-Za-z0-9_\\-.=]{1,8}",
    ) {
        let key = SpaceKey { uri: "kms://kms/keys/1".into(), bytes: [1; 32] };
        let mut token = filler.repeat(header_len / filler.len() + 1);
        token.truncate(header_len);
        for _ in 0..dots {
            token.push('.');
            token.push_str(&filler.repeat(body_len / (dots * filler.len()) + 1));
        }
        let e = jwe::decrypt(&key, &token).expect_err("garbage never decrypts");
        if token.split('.').next().is_some_and(|h| h.len() > HEADER_SEGMENT_BYTES_MAX)
            && token.len() <= COMPACT_BYTES_MAX
            && token.split('.').count() == 5
        {
            prop_assert_eq!(e, jwe::JweError::HeaderTooLarge);
        }
        let _ = jwe::key_id(&token);
    }
}

#[test]
fn a_jwe_past_the_compact_limit_is_refused_as_too_large() {
    let key = SpaceKey {
        uri: "kms://kms/keys/1".into(),
        bytes: [1; 32],
    };
    let token = format!("a.b.c.{}.e", "d".repeat(COMPACT_BYTES_MAX));
    assert_eq!(jwe::decrypt(&key, &token), Err(jwe::JweError::TooLarge));
}
