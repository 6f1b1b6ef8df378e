//! Bad input on the c2s port of the fake IM&P node: malformed XML, unknown stanzas, oversized
//! stanzas, stanzas before authentication, random bytes and random valid-but-wrong stanzas.
//! Each gets a stream or stanza error (counted), never a panic, and a logged-in session on the
//! same node keeps working.

use connector::proto::stream::STANZA_BYTES_MAX;
use connector::proto::xmpp::{self, Jid};
use fakes::clients::jabber::{ClientEvent, JabberCore};
use fakes::imp::node::{ConnId, Transmit};
use fakes::imp::{Directory, ImpNode, NodeConfig, UserRecord};
use proptest::prelude::*;
use std::rc::Rc;
use std::time::Duration;

fn node() -> ImpNode {
    let users = ["alice", "bob"].map(|u| UserRecord {
        userid: u.into(),
        jid: format!("{u}@example.com"),
        email: Some(format!("{u}@example.com")),
        password: format!("pw-{u}"),
        home: "imp-a-1".into(),
    });
    let cfg = NodeConfig {
        host: "imp-a-1".into(),
        domain: "example.com".into(),
        version: (14, 0),
        offline_storage: true,
        mdm: true,
    };
    ImpNode::new(cfg, Rc::new(Directory::new(users)), Rc::default())
}

/// Moves bytes between the node and a client core until neither has output; returns the
/// client's events and whether the node closed the connection.
fn pump(n: &mut ImpNode, conn: ConnId, c: &mut JabberCore) -> (Vec<ClientEvent>, bool) {
    let mut events = Vec::new();
    let mut closed = false;
    // Bounded: a login is a handful of round trips.
    for _ in 0..32 {
        let mut progressed = false;
        if let Some(out) = c.take_output() {
            n.input(Duration::ZERO, conn, out.as_bytes());
            progressed = true;
        }
        while let Some((to, t)) = n.poll_transmit() {
            match (to == conn, t) {
                (true, Transmit::Bytes(b)) => {
                    events.extend(c.input(b.as_bytes()));
                    progressed = true;
                }
                (true, Transmit::Close) => closed = true,
                _ => {}
            }
        }
        if !progressed {
            break;
        }
    }
    (events, closed)
}

/// A node with Alice logged in and available; returns her connection.
fn with_alice() -> (ImpNode, ConnId, JabberCore) {
    let mut n = node();
    let conn = n.open();
    let mut alice = JabberCore::new(
        &Jid::parse("alice@example.com").unwrap(),
        "pw-alice",
        "desk",
    );
    let (ev, closed) = pump(&mut n, conn, &mut alice);
    assert!(
        !closed && ev.iter().any(|e| matches!(e, ClientEvent::Ready(_))),
        "{ev:?}"
    );
    (n, conn, alice)
}

/// Alice still chats: a message to herself comes back on her connection. She announces
/// herself available first (a random `<presence type='unavailable'/>` may have made her
/// unavailable, which correctly sends her messages to offline storage).
fn alice_still_chats(n: &mut ImpNode, conn: ConnId, alice: &mut JabberCore) {
    alice.send(&connector::proto::xml::Element::new(
        "presence",
        xmpp::NS_CLIENT,
    ));
    let m = xmpp::chat_message(
        xmpp::NS_CLIENT,
        "probe-1",
        None,
        "alice@example.com",
        "still here",
    );
    alice.send(&m);
    let (ev, closed) = pump(n, conn, alice);
    assert!(!closed);
    assert!(
        ev.iter().any(|e| matches!(e, ClientEvent::Stanza(s) if xmpp::body(s).as_deref() == Some("still here"))),
        "{ev:?}"
    );
}

/// Feeds `bytes` on a fresh connection; returns whether the node closed it.
fn feed_bad(n: &mut ImpNode, bytes: &[u8]) -> bool {
    let bad = n.open();
    n.input(Duration::ZERO, bad, bytes);
    let mut closed = false;
    while let Some((to, t)) = n.poll_transmit() {
        if to == bad && t == Transmit::Close {
            closed = true;
        }
    }
    n.closed(Duration::ZERO, bad);
    closed
}

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

#[test]
fn each_kind_of_bad_input_is_a_counted_error_and_others_keep_working() {
    let (mut n, conn, mut alice) = with_alice();
    let before = n.stats().stream_errors;
    let cases: Vec<Vec<u8>> = vec![
        format!("{HEADER}<message><body></message>").into_bytes(), // not well-formed
        format!("{HEADER}<message to='bob@example.com'/>").into_bytes(), // before auth
        format!("{HEADER}<iq type='get' id='1'/>").into_bytes(),   // before auth
        format!(
            "{HEADER}<message><body>{}</body></message>",
            "x".repeat(STANZA_BYTES_MAX + 1)
        )
        .into_bytes(),
        b"<?xml version='1.0'?><not-a-stream/>".to_vec(),
        b"<<<>>> garbage".to_vec(),
    ];
    for (i, bytes) in cases.iter().enumerate() {
        assert!(feed_bad(&mut n, bytes), "case {i} did not end the stream");
    }
    assert_eq!(n.stats().stream_errors - before, cases.len() as u64);
    alice_still_chats(&mut n, conn, &mut alice);
}

#[test]
fn unknown_stanzas_after_login_get_errors_not_disconnects() {
    let (mut n, conn, mut alice) = with_alice();
    let unknown_iq = "<iq type='get' id='u1'><query xmlns='urn:example:nothing'/></iq>";
    n.input(Duration::ZERO, conn, unknown_iq.as_bytes());
    let mut got_error = false;
    while let Some((to, t)) = n.poll_transmit() {
        if let (true, Transmit::Bytes(b)) = (to == conn, t) {
            got_error |= b.contains("service-unavailable");
        }
    }
    assert!(got_error, "unknown IQ must get service-unavailable");
    alice_still_chats(&mut n, conn, &mut alice);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_and_spare_other_sessions(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let (mut n, conn, mut alice) = with_alice();
        let mut input = HEADER.as_bytes().to_vec();
        input.extend(&bytes);
        feed_bad(&mut n, &input);
        feed_bad(&mut n, &bytes);
        alice_still_chats(&mut n, conn, &mut alice);
    }

    #[test]
    fn random_wrong_stanzas_after_login_never_panic(
        name in "(message|presence|iq|foo)",
        kind in "(chat|groupchat|error|get|set|result|headline|unavailable|x)",
        to in "(|alice@example\\.com|bob@example\\.com/desk|nobody@example\\.com|@@|example\\.com)",
        child in "(|<body>hi</body>|<ping xmlns='urn:xmpp:ping'/>|<enable xmlns='urn:xmpp:carbons:2'/>|<x/>)",
    ) {
        let (mut n, conn, mut alice) = with_alice();
        let to_attr = if to.is_empty() { String::new() } else { format!(" to='{to}'") };
        let stanza = format!("<{name} type='{kind}' id='w1'{to_attr}>{child}</{name}>");
        n.input(Duration::ZERO, conn, stanza.as_bytes());
        while n.poll_transmit().is_some() {}
        // `foo` is not a stanza: the stream ends (unsupported-stanza-type) but nothing panics.
        if name != "foo" {
            alice_still_chats(&mut n, conn, &mut alice);
        }
    }
}

#[test]
fn bind_refuses_resources_rfc_7622_does_not_allow() {
    let mut n = node();
    let long = "x".repeat(3000);
    for resource in [long.as_str(), "   ", "evil\u{202e}txt.exe", "tab\there"] {
        let conn = n.open();
        let mut c = JabberCore::new(&Jid::parse("bob@example.com").unwrap(), "pw-bob", resource);
        let (ev, _) = pump(&mut n, conn, &mut c);
        assert!(
            !ev.iter().any(|e| matches!(e, ClientEvent::Ready(_))),
            "{resource:?} was bound: {ev:?}"
        );
        n.closed(Duration::ZERO, conn);
    }
    assert_eq!(n.stats().bad_resources, 4);
    let conn = n.open();
    let mut c = JabberCore::new(
        &Jid::parse("bob@example.com").unwrap(),
        "pw-bob",
        "laptop-2",
    );
    let (ev, _) = pump(&mut n, conn, &mut c);
    assert!(
        ev.iter().any(|e| matches!(e, ClientEvent::Ready(_))),
        "{ev:?}"
    );
}
