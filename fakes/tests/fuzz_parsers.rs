//! Issue 14, fuzzing: every parser of the fakes that network input reaches, fed random input
//! up to and past its size limits. Random input never panics, and each answer is a clean
//! refusal or a well-formed reply. (The connector's parsers are fuzzed in the connector.)
//!
//! - SASL PLAIN on c2s: random payloads, valid base64 of random bytes, and oversized ones.
//! - The cloud core: random methods, paths (segments, percent escapes, queries), tokens and
//!   JSON bodies on every route, and bodies past [`fakes::cloud::BODY_BYTES_MAX`].
//! - The cloud's HTTP request line and headers: random bytes on a real loopback socket.
//! - MUC stanzas: random presences and messages to the conference service.
//! - AXL SOAP: random envelopes, operations and SQL, and bodies past the limit.

use base64::Engine as _;
use connector::proto::xml::{Element, parse_document};
use connector::proto::xmpp::{self, Jid};
use fakes::cloud::api::{Method, Request};
use fakes::cloud::{Cloud, CloudConfig};
use fakes::imp::axl::{AXL_BODY_BYTES_MAX, AxlAccount, AxlNode, AxlRequest, AxlService};
use fakes::imp::muc::{Muc, MucHost};
use fakes::imp::node::{ConnId, Transmit};
use fakes::imp::{Directory, ImpNode, NodeConfig, UserRecord};
use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use rand::SeedableRng as _;
use std::rc::Rc;
use std::time::Duration;

fn users() -> Rc<Directory> {
    Rc::new(Directory::new(["alice", "bob"].map(|u| UserRecord {
        userid: u.into(),
        jid: format!("{u}@example.com"),
        email: Some(format!("{u}@example.com")),
        password: format!("pw-{u}"),
        home: "imp-a-1".into(),
    })))
}

fn node() -> ImpNode {
    let cfg = NodeConfig {
        host: "imp-a-1".into(),
        domain: "example.com".into(),
        version: (14, 0),
        offline_storage: true,
        mdm: true,
    };
    ImpNode::new(cfg, users(), Rc::default())
}

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

/// Sends `auth` as the SASL payload on a fresh c2s stream; returns what the node sent.
fn sasl(n: &mut ImpNode, mechanism: &str, payload: &str) -> String {
    let conn: ConnId = n.open();
    let auth = format!(
        "{HEADER}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{payload}</auth>"
    );
    n.input(Duration::ZERO, conn, auth.as_bytes());
    let mut out = String::new();
    while let Some((to, t)) = n.poll_transmit() {
        if let (true, Transmit::Bytes(b)) = (to == conn, t) {
            out.push_str(&b);
        }
    }
    n.closed(Duration::ZERO, conn);
    out
}

fn cloud() -> Cloud {
    let cfg = CloudConfig {
        domain: "example.com".into(),
        admin_token: "admin".into(),
        kms_host: "kms".into(),
    };
    Cloud::new(cfg, rand_chacha::ChaCha8Rng::seed_from_u64(3))
}

/// A random JSON value, nested a few levels, with long strings now and then.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        ".{0,40}".prop_map(serde_json::Value::from),
        (0usize..70_000).prop_map(|n| serde_json::Value::from("x".repeat(n))),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(
                "(email|password|members|kind|verb|hostname|primary|uri|users|space_id|x)",
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A path of the cloud's routes or near them, with random segments and percent escapes.
fn path() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        "(v1|admin|users|clusters|connectors|register|heartbeat|spaces|activities|typing|kms|keys|me|presence|query|login|events|redeliver|assignments|maintenance)",
        "[a-z0-9%.~-]{0,12}",
        "(%|%2|%zz|%00|%2F|%ff%fe|%C3%A9)",
        ".{0,8}",
    ];
    (
        proptest::collection::vec(seg, 0..7),
        "(|\\?after=[0-9a-z%]{0,6}|\\?&&=|\\?a=%)",
    )
        .prop_map(|(segs, q)| format!("/{}{q}", segs.join("/")))
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Get),
        Just(Method::Post),
        Just(Method::Put),
        Just(Method::Delete),
    ]
}

struct Host;

impl MucHost for Host {
    fn on_webex(&self, bare: &str) -> bool {
        bare.starts_with('w')
    }
    fn is_user(&self, bare: &str) -> bool {
        bare.ends_with("@example.com")
    }
}

fn axl() -> AxlService {
    AxlService::new(
        vec![AxlAccount {
            username: "axl".into(),
            password: "pw".into(),
            axl_role: true,
        }],
        vec![AxlNode {
            name: "imp-a-1".into(),
            description: "pub".into(),
            version: "14.0".into(),
            prg_peer: None,
            prg_high_availability: false,
        }],
        users(),
        Vec::new(),
    )
}

fn axl_post(svc: &mut AxlService, body: &[u8]) -> u16 {
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("axl:pw")
    );
    let headers = vec![("authorization".to_string(), auth)];
    svc.handle(AxlRequest {
        method: "POST",
        path: "/axl/",
        headers: &headers,
        body,
    })
    .status
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sasl_plain_random_payloads_never_panic(
        raw in proptest::collection::vec(any::<u8>(), 0..3_000),
        text in ".{0,64}",
        mechanism in "(PLAIN|plain|SCRAM-SHA-1|)",
    ) {
        let mut n = node();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
        for payload in [b64.as_str(), text.as_str(), "=", "AGFsaWNlAA==", "AGFsaWNlAHB3LWFsaWNl"] {
            let out = sasl(&mut n, &mechanism, &xmpp_escape(payload));
            prop_assert!(out.contains("stream:stream"), "{out}");
        }
        prop_assert!(n.stats().logins <= 1);
    }

    #[test]
    fn cloud_random_requests_never_panic(
        method in method(),
        path in path(),
        token in "(|admin|usr-[0-9a-f]{4}|con-x|.{0,8})",
        body in json_value(),
        raw in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut c = cloud();
        let token = (!token.is_empty()).then_some(token);
        for body in [body.to_string().into_bytes(), raw] {
            let r = c.handle_request(Duration::ZERO, Request {
                method,
                path: path.clone(),
                token: token.clone(),
                body,
            });
            prop_assert!((200..600).contains(&r.status));
            if r.status >= 400 {
                prop_assert!(r.body["error"].is_string(), "{}", r.body);
            }
        }
    }

    #[test]
    fn muc_random_stanzas_never_panic(
        name in "(presence|message|iq)",
        kind in "(|groupchat|chat|error|unavailable|get|set|x)",
        room in "(|g-1|g-2|[a-z]{1,8}|.{0,6}|x{120,140})",
        nick in "(|alice|bob|[a-z]{1,6}|.{0,6}|n{120,140})",
        child in "(|<x xmlns='http://jabber.org/protocol/muc'/>|<x xmlns='http://jabber.org/protocol/muc#user'><invite to='bob@example.com'/></x>|<body>hi</body>|<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query>)",
        body_len in 0usize..20_000,
        from in "(alice|bob|wendy|eve)",
    ) {
        let mut m = Muc::new("example.com");
        let jid = Jid::parse(&format!("{from}@example.com/d")).expect("jid");
        let to = format!("{}@conference.example.com/{}", xmpp_escape(&room), xmpp_escape(&nick));
        let body = if body_len > 0 { format!("<body>{}</body>", "y".repeat(body_len)) } else { String::new() };
        let xml = format!(
            "<{name} xmlns='jabber:client' type='{kind}' id='f1' to='{to}'>{child}{body}</{name}>"
        );
        if let Ok(el) = parse_document(xml.as_bytes()) {
            let join = parse_document(format!(
                "<presence xmlns='jabber:client' to='g-1@conference.example.com/{from}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
            ).as_bytes()).expect("join");
            m.handle(&jid, &join, &Host);
            for out in m.handle(&jid, &el, &Host) {
                prop_assert!(out.attr("to").is_some(), "{}", out.to_xml());
            }
        }
    }

    #[test]
    fn axl_random_soap_never_panics(
        op in "(listProcessNode|executeSQLQuery|getUser|[a-zA-Z]{0,12})",
        sql in "(SELECT|select|SKIP|FIRST|\\*|,|=|'[a-z']{0,6}'|userid|mailid|FROM|enduser|WHERE|AND|IS|NOT|NULL|ORDER|BY|;|[a-z.]{1,8}|[0-9]{1,3}| ){0,24}",
        junk in proptest::collection::vec(any::<u8>(), 0..400),
        big in prop_oneof![Just(0usize), Just(AXL_BODY_BYTES_MAX - 200), Just(AXL_BODY_BYTES_MAX + 1)],
    ) {
        let mut svc = axl();
        let env = |inner: &str| format!(
            "<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/' \
             xmlns:ns='http://www.cisco.com/AXL/API/14.0'><soapenv:Body><ns:{op}>{inner}</ns:{op}>\
             </soapenv:Body></soapenv:Envelope>"
        );
        let padded = format!("<sql>{}</sql><pad>{}</pad>", xmpp_escape(&sql), "p".repeat(big));
        for body in [env(&format!("<sql>{}</sql>", xmpp_escape(&sql))).into_bytes(), env(&padded).into_bytes(), junk.clone()] {
            let status = axl_post(&mut svc, &body);
            prop_assert!(matches!(status, 200 | 413 | 500), "status {status}");
        }
    }
}

/// Escapes text for XML character data and attribute values.
fn xmpp_escape(s: &str) -> String {
    connector::proto::xml::escape(s)
}

#[test]
fn cloud_bodies_past_the_limit_are_refused() {
    let mut c = cloud();
    let body = vec![b'{'; fakes::cloud::BODY_BYTES_MAX + 1];
    let r = c.handle_request(
        Duration::ZERO,
        Request {
            method: Method::Post,
            path: "/v1/admin/users".into(),
            token: Some("admin".into()),
            body,
        },
    );
    assert_eq!(r.status, 413, "{}", r.body);
}

#[test]
fn cloud_http_random_request_lines_never_end_the_server() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let net = connector::io::net::TokioNet::new(std::net::Ipv4Addr::LOCALHOST.into());
        let listener = connector::io::net::Net::bind(&net, 0).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cloud = Rc::new(std::cell::RefCell::new(cloud()));
        let server = tokio::task::spawn_local(fakes::cloud::http::serve_listener(
            net, cloud, listener,
        ));
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
        let lines = (
            "(GET|POST|PUT|DELETE|BREW|get|)",
            "(/v1/health|/v1/login|/|\\*|/%|/%zz/../|[ -~]{0,40})",
            "(HTTP/1.1|HTTP/1.0|HTTP/2|HTTP/9|)",
            proptest::collection::vec("([A-Za-z-]{0,12}: [ -~]{0,30}|content-length: [0-9a-z-]{0,12}|transfer-encoding: (chunked|gzip|x)|[^\r\n]{0,20})", 0..8),
            proptest::collection::vec(any::<u8>(), 0..256),
        );
        let mut cases = Vec::new();
        for _ in 0..48 {
            let tree = lines.new_tree(&mut runner).expect("case");
            cases.push(tree.current());
        }
        for (m, target, version, headers, junk) in cases {
            let mut req = format!("{m} {target} {version}\r\n").into_bytes();
            for h in headers {
                req.extend(h.as_bytes());
                req.extend(b"\r\n");
            }
            req.extend(b"\r\n");
            req.extend(junk);
            let exchange = async {
                let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
                s.write_all(&req).await.ok()?;
                let mut buf = vec![0u8; 256];
                let _ = s.read(&mut buf).await;
                Some(())
            };
            let _ = tokio::time::timeout(Duration::from_millis(300), exchange).await;
            assert!(!server.is_finished(), "the cloud server ended on {req:?}");
        }
        // A well-formed request is still answered.
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        s.write_all(b"GET /v1/me HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
        let mut buf = vec![0u8; 64];
        let n = s.read(&mut buf).await.expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 401"), "{:?}", String::from_utf8_lossy(&buf[..n]));
        server.abort();
    });
}

#[test]
fn parse_helpers_round_trip() {
    // The helpers above build what they mean to: a PLAIN payload for alice logs in.
    let mut n = node();
    let ok = base64::engine::general_purpose::STANDARD.encode(b"\0alice\0pw-alice");
    assert!(sasl(&mut n, "PLAIN", &ok).contains("<success"));
    let el: Element = parse_document(b"<a xmlns='x'/>").expect("xml");
    assert_eq!(el.name, "a");
    assert!(xmpp::NS_CLIENT.starts_with("jabber"));
}
