//! The real connector end to end in turmoil, before any scenario machinery: one fake IM&P node
//! (c2s, component port, AXL), the fake cloud, the connector on `exp-a-1`, and the two users of
//! the acceptance test of spec 35 ("Test Hybrid Message" in the deployment guide), Alice and
//! Bob, who are each other's contacts.
//!
//! First half (`webex_to_jabber_and_back_through_the_real_connector`): Alice (Hybrid Message)
//! on Webex, Bob (not Hybrid Message) on Jabber. W+ → J−: Alice posts in Webex; her connector
//! decrypts it and sends it from her session, so Bob's Jabber shows it, and Alice shows
//! "Available @ Webex" there. J− → W+: Bob types and answers from Jabber; IM&P copies it to
//! Alice's session; the connector encrypts it with the space key and posts it; Alice's Webex
//! shows Bob typing, then his answer.
//!
//! Second half (`jabber_to_webex_and_back_with_the_clients_swapped`), the guide's step 7:
//! "Repeat the test, starting from Alice's Jabber client and Bob's Webex App client". The guide
//! wants two Hybrid Message users, and Bob must be one for his Webex answer to reach Jabber
//! (W− → J fails, spec 33); Alice has used Webex a moment ago (the first round). Mirrored
//! assertions: Bob shows "Available @ Webex" in Alice's Jabber, and Alice is Available in
//! Bob's Webex (her Webex presence: Jabber presence never reaches Webex, spec 50); Alice's
//! message reaches Bob's Webex once; Bob types and answers, and Alice's Jabber shows Bob
//! typing, then his answer.

use connector::core::node::{ConnectorNode, NodeSettings};
use connector::core::presence;
use connector::io::driver::{self, Peers};
use connector::io::http::{EventClient, HttpClient, ws_connect};
use connector::io::net::{Net as _, TurmoilNet};
use connector::proto::http::Method;
use connector::proto::jwe::{self, SpaceKey};
use connector::proto::webex::Event;
use connector::proto::xmpp::{self, Jid};
use fakes::clients::jabber::{ClientEvent, JabberCore};
use fakes::cloud::api::Request;
use fakes::cloud::http::{CLOUD_HOST, CLOUD_PORT};
use fakes::cloud::{Cloud, CloudConfig};
use fakes::imp::{axl, component, driver as imp_driver};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng as _;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ADMIN: &str = "admin";
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const SECRET: &str = "component-secret";

fn admin(cloud: &mut Cloud, method: Method, path: &str, body: Value) -> Value {
    let r = cloud.handle_request(
        Duration::ZERO,
        Request {
            method,
            path: path.into(),
            token: Some(ADMIN.into()),
            body: body.to_string().into_bytes(),
        },
    );
    assert!(r.status < 300, "{path}: {}", r.body);
    r.body
}

fn imp_host(sim: &mut turmoil::Sim<'_>) {
    sim.host("imp-a-1", || async {
        let users = [("alice", ALICE), ("bob", BOB)];
        let dir = Rc::new(
            fakes::imp::Directory::new(users.iter().map(|(u, e)| fakes::imp::UserRecord {
                userid: u.to_string(),
                jid: format!("{u}@example.com"),
                email: Some(e.to_string()),
                password: format!("pw-{u}"),
                home: "imp-a-1".into(),
            }))
            // Alice and Bob are each other's contacts (rosters), so presence flows between them.
            .with_contacts([(
                "alice@example.com".to_string(),
                "bob@example.com".to_string(),
            )]),
        );
        let cfg = fakes::imp::NodeConfig {
            host: "imp-a-1".into(),
            domain: "example.com".into(),
            version: (14, 0),
            offline_storage: true,
            mdm: true,
        };
        let comp = component::ComponentService::new(
            component::ComponentConfig {
                secret: SECRET.into(),
                sessions_max: None,
                create_rate: None,
            },
            &cfg,
            dir.clone(),
        );
        let axl = axl::AxlService::new(
            vec![axl::AxlAccount {
                username: "axl".into(),
                password: "axl-pw".into(),
                axl_role: true,
            }],
            vec![axl::AxlNode {
                name: "imp-a-1".into(),
                description: "publisher".into(),
                version: "14.0".into(),
                prg_peer: None,
                prg_high_availability: false,
            }],
            dir.clone(),
            Vec::new(),
        );
        let node = Rc::new(RefCell::new(fakes::imp::ImpNode::new(
            cfg,
            dir,
            Rc::default(),
        )));
        let ports = imp_driver::NodePorts {
            router: None,
            ..Default::default()
        };
        imp_driver::serve_node(
            TurmoilNet,
            node,
            Rc::new(RefCell::new(comp)),
            Rc::new(RefCell::new(axl)),
            ports,
            || {},
        )
        .await?;
        Ok(())
    });
}

/// Reads what IM&P sends, pinging it (XEP-0199) after every 30 s of silence as Jabber does:
/// IM&P closes a logged-in stream silent for `IDLE_TIMEOUT_C2S`, and these clients wait for
/// the connector's registration (up to 5 min) with nothing to say.
async fn read_pinging<R, W>(
    rd: &mut R,
    wr: &mut W,
    core: &mut JabberCore,
    buf: &mut [u8],
) -> std::io::Result<usize>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    loop {
        if let Ok(read) = tokio::time::timeout(Duration::from_secs(30), rd.read(buf)).await {
            return read;
        }
        if core.is_ready() {
            let ping = connector::proto::xml::Element::new("iq", xmpp::NS_CLIENT)
                .with_attr("type", "get")
                .with_attr("id", core.next_id())
                .with_child(connector::proto::xml::Element::new("ping", xmpp::NS_PING));
            core.send(&ping);
        }
        while let Some(out) = core.take_output() {
            wr.write_all(out.as_bytes()).await?;
        }
    }
}

/// Bob's Jabber: logs in, waits for Alice's message, answers "pong from jabber".
async fn bob_jabber(got: Rc<RefCell<Vec<String>>>) -> turmoil::Result {
    let stream = TurmoilNet.connect("imp-a-1", 5222).await?;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut core = JabberCore::new(&Jid::parse("bob@example.com")?, "pw-bob", "desk");
    let mut buf = vec![0u8; 8192];
    loop {
        if let Some(out) = core.take_output() {
            wr.write_all(out.as_bytes()).await?;
        }
        let n = read_pinging(&mut rd, &mut wr, &mut core, &mut buf).await?;
        if n == 0 {
            return Err("IM&P closed bob's stream".into());
        }
        for ev in core.input(&buf[..n]) {
            let ClientEvent::Stanza(el) = ev else {
                continue;
            };
            if el.name == "presence" && el.attr("from") == Some("alice@example.com/hm-webex") {
                // Spec 35: Alice shows "Available" in Bob's Jabber, marked as Webex presence.
                let show = el.elements().find(|e| e.name == "show").map(|e| e.text());
                let status = el.elements().find(|e| e.name == "status").map(|e| e.text());
                got.borrow_mut()
                    .push(format!("presence {show:?} {status:?}"));
                continue;
            }
            let Some(body) = xmpp::body(&el) else {
                continue;
            };
            got.borrow_mut()
                .push(format!("{} {body}", el.attr("from").unwrap_or("?")));
            // Bob types first (spec 35: Alice's Webex shows Bob typing), then answers.
            let typing = connector::proto::xml::Element::new("message", xmpp::NS_CLIENT)
                .with_attr("type", "chat")
                .with_attr("to", "alice@example.com")
                .with_child(connector::proto::xml::Element::new(
                    "composing",
                    xmpp::NS_CHATSTATES,
                ));
            core.send(&typing);
            let reply = xmpp::chat_message(
                xmpp::NS_CLIENT,
                "bob-1",
                None,
                "alice@example.com",
                "pong from jabber",
            );
            core.send(&reply);
        }
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// A fresh HTTP connection to the cloud (an idle one is closed after 75 s).
async fn cloud_http() -> Res<HttpClient> {
    Ok(HttpClient::handshake(TurmoilNet.connect(CLOUD_HOST, CLOUD_PORT).await?).await?)
}

/// Logs `email` in to Webex; the user's bearer token.
async fn webex_login(email: &str, password: &str) -> Res<String> {
    let (_, login) = cloud_http()
        .await?
        .request(
            Method::Post,
            "/v1/login",
            None,
            Some(&json!({"email": email, "password": password})),
        )
        .await?;
    Ok(login["token"].as_str().ok_or("no token")?.to_string())
}

/// Opens the Webex App after login: it loads the user's spaces (`GET /v1/me`), which makes
/// the user active on Webex (a login alone does not).
async fn webex_open(token: &str) -> Res<()> {
    let (status, _) = cloud_http()
        .await?
        .request(Method::Get, "/v1/me", Some(token), None)
        .await?;
    assert_eq!(status, 200);
    Ok(())
}

/// The user's event WebSocket.
async fn webex_events(token: &str, seed: u64) -> Res<EventClient<turmoil::net::TcpStream>> {
    let stream = TurmoilNet.connect(CLOUD_HOST, CLOUD_PORT).await?;
    Ok(ws_connect(stream, token, &mut ChaCha8Rng::seed_from_u64(seed)).await?)
}

/// Space key `uri`, fetched as a member (the cloud relays to the KMS).
async fn fetch_key(c: &mut HttpClient, token: &str, uri: &str) -> Res<SpaceKey> {
    let (_, k) = c
        .request(
            Method::Post,
            "/v1/kms/keys",
            Some(token),
            Some(&json!({"uri": uri})),
        )
        .await?;
    let bytes: [u8; 32] = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        k["key"].as_str().ok_or("key")?,
    )?
    .try_into()
    .map_err(|_| "key length")?;
    Ok(SpaceKey {
        uri: uri.to_string(),
        bytes,
    })
}

/// Posts `activity` (JSON) to `space_id`; the status.
async fn post(c: &mut HttpClient, token: &str, space_id: &str, activity: Value) -> Res<u16> {
    let path = format!("/v1/spaces/{space_id}/activities");
    Ok(c.request(Method::Post, &path, Some(token), Some(&activity))
        .await?
        .0)
}

/// Alice's Webex: logs in, posts to Bob after the connector has had time to register and
/// assign her, and collects what arrives on her event socket.
async fn alice_webex(got: Rc<RefCell<Vec<String>>>) -> turmoil::Result {
    let token = webex_login(ALICE, "pw-alice").await?;
    // Registration takes up to 5 minutes (spec 12); then discovery, assignment, presence.
    tokio::time::sleep(Duration::from_secs(400)).await;
    let mut ws = webex_events(&token, 3).await?;
    let mut c = cloud_http().await?;
    let (_, space) = c
        .request(
            Method::Post,
            "/v1/spaces",
            Some(&token),
            Some(&json!({"kind": "direct", "members": [ALICE, BOB]})),
        )
        .await?;
    let space_id = space["space_id"].as_str().ok_or("space")?.to_string();
    let key = fetch_key(&mut c, &token, space["key_uri"].as_str().ok_or("uri")?).await?;
    let text = jwe::encrypt(&key, [9u8; 12], b"ping from webex");
    let status = post(
        &mut c,
        &token,
        &space_id,
        json!({"verb": "post", "encrypted_text": text}),
    )
    .await?;
    assert_eq!(status, 201);
    loop {
        let ev = ws.next_event().await?;
        if let Event::Typing {
            actor,
            typing: true,
            ..
        } = &ev
        {
            got.borrow_mut().push(format!("{actor} typing"));
        }
        if let Event::Activity { activity, .. } = ev {
            if activity.actor == ALICE {
                continue;
            }
            let Some(ct) = activity.encrypted_text.as_deref() else {
                // Bob's Jabber receipt for Alice's message, bridged as a Webex read (spec 38).
                got.borrow_mut()
                    .push(format!("{} {:?}", activity.actor, activity.verb));
                continue;
            };
            let plain = jwe::decrypt(&key, ct)?;
            got.borrow_mut()
                .push(format!("{} {}", activity.actor, String::from_utf8(plain)?));
            return Ok(());
        }
    }
}

/// Swapped half: how long Bob's Webex keeps listening after his answer (a second copy of
/// Alice's message would show up here).
const LISTEN_AFTER_ANSWER: Duration = Duration::from_secs(60);

/// Swapped half, Alice's Jabber: logs in; once Bob shows Available @ Webex (his connector
/// session is open), messages him; records Bob's presence, typing and answer.
async fn alice_jabber(got: Rc<RefCell<Vec<String>>>) -> turmoil::Result {
    let stream = TurmoilNet.connect("imp-a-1", 5222).await?;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut core = JabberCore::new(&Jid::parse(ALICE)?, "pw-alice", "desk");
    let mut buf = vec![0u8; 8192];
    let mut sent = false;
    loop {
        if let Some(out) = core.take_output() {
            wr.write_all(out.as_bytes()).await?;
        }
        let n = read_pinging(&mut rd, &mut wr, &mut core, &mut buf).await?;
        if n == 0 {
            return Err("IM&P closed alice's stream".into());
        }
        for ev in core.input(&buf[..n]) {
            let ClientEvent::Stanza(el) = ev else {
                continue;
            };
            let from = el.attr("from").unwrap_or("?").to_string();
            if !from.starts_with("bob@example.com/") {
                continue;
            }
            if el.name == "presence" {
                let show = el.elements().find(|e| e.name == "show").map(|e| e.text());
                let status = el.elements().find(|e| e.name == "status").map(|e| e.text());
                got.borrow_mut()
                    .push(format!("{from} presence {show:?} {status:?}"));
                if !sent {
                    sent = true;
                    core.send(&xmpp::chat_message(
                        xmpp::NS_CLIENT,
                        "alice-1",
                        None,
                        BOB,
                        "ping from jabber",
                    ));
                }
                continue;
            }
            if el.child("composing", xmpp::NS_CHATSTATES).is_some() {
                got.borrow_mut().push(format!("{from} typing"));
            }
            if let Some(body) = xmpp::body(&el) {
                got.borrow_mut().push(format!("{from} {body}"));
                return Ok(());
            }
        }
    }
}

/// Swapped half, Bob's Webex: logs in and waits for Alice's message; then records how Alice
/// shows in his Webex, types, answers, and keeps listening.
async fn bob_webex(got: Rc<RefCell<Vec<String>>>) -> turmoil::Result {
    let token = webex_login(BOB, "pw-bob").await?;
    webex_open(&token).await?;
    let mut ws = webex_events(&token, 4).await?;
    let mut key: Option<SpaceKey> = None;
    let mut answered: Option<Duration> = None;
    loop {
        let left = match answered {
            Some(at) => (at + LISTEN_AFTER_ANSWER).saturating_sub(TurmoilNet.now()),
            None => Duration::from_secs(3600),
        };
        let Ok(ev) = tokio::time::timeout(left, ws.next_event()).await else {
            return Ok(());
        };
        let Event::Activity { activity, .. } = ev? else {
            continue;
        };
        let (Some(ct), Some(kid)) = (&activity.encrypted_text, &activity.kid) else {
            continue;
        };
        if activity.actor != ALICE {
            continue;
        }
        let mut c = cloud_http().await?;
        if key.is_none() {
            key = Some(fetch_key(&mut c, &token, kid).await?);
        }
        let plain = String::from_utf8(jwe::decrypt(key.as_ref().ok_or("key")?, ct)?)?;
        got.borrow_mut().push(format!("{} {plain}", activity.actor));
        if answered.is_some() {
            continue;
        }
        // Spec 35, step 4 mirrored: Alice's status as Bob's Webex shows it.
        let (_, p) = c
            .request(
                Method::Post,
                "/v1/presence/query",
                Some(&token),
                Some(&json!({"emails": [ALICE]})),
            )
            .await?;
        let st = &p["states"][0];
        let seen = sim::run::collect::from_cloud(
            st["last_active_ms"].as_u64(),
            st["dnd_until_ms"].as_u64(),
            st["out_of_office"].as_bool().unwrap_or(false),
            st["hidden"].as_bool().unwrap_or(false),
        );
        // Alice just used Webex: her session stands on that alone (no Jabber use needed).
        let shown = presence::translate(&seen, None, TurmoilNet.now());
        got.borrow_mut().push(format!("{ALICE} shows {shown:?}"));
        // Bob types, then answers (steps 5 and 6 mirrored).
        let space = activity.space_id.clone();
        let path = format!("/v1/spaces/{space}/typing");
        c.request(
            Method::Post,
            &path,
            Some(&token),
            Some(&json!({"typing": true})),
        )
        .await?;
        let text = jwe::encrypt(key.as_ref().ok_or("key")?, [5u8; 12], b"pong from webex");
        let answer = json!({"verb": "post", "encrypted_text": text});
        assert_eq!(post(&mut c, &token, &space, answer).await?, 201);
        answered = Some(TurmoilNet.now());
    }
}

/// Swapped half, Alice's Webex: she used it a moment ago (the first round of the test), so
/// Webex shows her Available; she does nothing else there.
async fn alice_webex_idle() -> turmoil::Result {
    let token = webex_login(ALICE, "pw-alice").await?;
    webex_open(&token).await?;
    Ok(())
}

/// The world of both halves: the cloud (Alice with Hybrid Message; Bob too when `bob_hm`),
/// the IM&P node and the connector. Clients are added by each test.
fn world<'a>(bob_hm: bool) -> turmoil::Sim<'a> {
    let mut sim = turmoil::Builder::new()
        .rng_seed(7)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
        .tick_duration(Duration::from_millis(10))
        .simulation_duration(Duration::from_secs(900))
        .build();
    let mut cloud = Cloud::new(
        CloudConfig {
            domain: "example.com".into(),
            admin_token: ADMIN.into(),
            kms_host: "kms".into(),
        },
        ChaCha8Rng::seed_from_u64(11),
    );
    let reg = admin(
        &mut cloud,
        Method::Post,
        "/v1/admin/clusters",
        json!({"name": "exp-a", "size": "large", "hostnames": ["exp-a-1", "exp-a-2", "exp-a-3", "exp-a-4", "exp-a-5", "exp-a-6"]}),
    );
    let token = reg["registration_token"].as_str().unwrap().to_string();
    admin(
        &mut cloud,
        Method::Post,
        "/v1/admin/users",
        json!({"email": ALICE, "password": "pw-alice", "entitlements": ["paid_licence", "hybrid_message"]}),
    );
    let bob_entitlements = if bob_hm {
        json!(["paid_licence", "hybrid_message"])
    } else {
        json!(["paid_licence"])
    };
    admin(
        &mut cloud,
        Method::Post,
        "/v1/admin/users",
        json!({"email": BOB, "password": "pw-bob", "entitlements": bob_entitlements}),
    );
    let cloud = Rc::new(RefCell::new(cloud));
    sim.host(CLOUD_HOST, move || {
        let cloud = cloud.clone();
        async move {
            fakes::cloud::http::serve(TurmoilNet, cloud, CLOUD_PORT).await?;
            Ok(())
        }
    });
    imp_host(&mut sim);
    sim.host("exp-a-1", move || {
        let s = NodeSettings::single_node(Some(token.clone()));
        async move {
            let core = Rc::new(RefCell::new(ConnectorNode::new(s, TurmoilNet.now())));
            driver::run(TurmoilNet, core, Peers::standard(CLOUD_HOST, SECRET), 42).await;
            Ok(())
        }
    });
    sim
}

#[test]
fn webex_to_jabber_and_back_through_the_real_connector() -> turmoil::Result {
    let mut sim = world(false);
    let jabber_got: Rc<RefCell<Vec<String>>> = Rc::default();
    let webex_got: Rc<RefCell<Vec<String>>> = Rc::default();
    let (j, w) = (jabber_got.clone(), webex_got.clone());
    sim.host("jabber-1", move || {
        let j = j.clone();
        async move { bob_jabber(j).await }
    });
    sim.client("webex-1", alice_webex(w));
    sim.run()?;
    let jabber = jabber_got.borrow();
    assert!(
        jabber
            .iter()
            .any(|l| l == "presence None Some(\"@ Webex\")"),
        "Bob never saw Alice Available @ Webex: {jabber:?}"
    );
    let texts: Vec<&String> = jabber
        .iter()
        .filter(|l| !l.starts_with("presence"))
        .collect();
    assert_eq!(texts, ["alice@example.com/hm-webex ping from webex"]);
    assert_eq!(
        webex_got.borrow().as_slice(),
        [
            "bob@example.com Read",
            "bob@example.com typing",
            "bob@example.com pong from jabber"
        ]
    );
    Ok(())
}

#[test]
fn jabber_to_webex_and_back_with_the_clients_swapped() -> turmoil::Result {
    let mut sim = world(true);
    let jabber_got: Rc<RefCell<Vec<String>>> = Rc::default();
    let webex_got: Rc<RefCell<Vec<String>>> = Rc::default();
    let (j, w) = (jabber_got.clone(), webex_got.clone());
    sim.host("jabber-1", move || {
        let j = j.clone();
        async move { alice_jabber(j).await }
    });
    sim.client("webex-1", bob_webex(w));
    sim.client("webex-2", alice_webex_idle());
    let ran = sim.run();
    let jabber = jabber_got.borrow();
    ran.map_err(|e| {
        format!(
            "{e}; Alice's Jabber saw {jabber:?}, Bob's Webex {:?}",
            webex_got.borrow()
        )
    })?;
    // Bob shows Available @ Webex in Alice's Jabber (his connector session's presence).
    assert_eq!(
        jabber.first().map(String::as_str),
        Some("bob@example.com/hm-webex presence None Some(\"@ Webex\")"),
        "{jabber:?}"
    );
    let rest: Vec<&String> = jabber
        .iter()
        .filter(|l| !l.contains(" presence "))
        .collect();
    assert_eq!(
        rest,
        [
            "bob@example.com/hm-webex typing",
            "bob@example.com/hm-webex pong from webex"
        ]
    );
    // Alice's message reached Bob's Webex once (both sessions saw it: hers as a carbon, his
    // as a recipient; the cloud keeps one), and Alice shows Available there.
    assert_eq!(
        webex_got.borrow().as_slice(),
        [
            "alice@example.com ping from jabber",
            "alice@example.com shows Available"
        ]
    );
    Ok(())
}

/// Issue 12 item 2: a text of `bytes` bytes of quotes, apostrophes and non-ASCII letters, with
/// a `<`, `&` and `>` every hundred bytes: what the old serializer grew several times over.
fn awkward_text(bytes: usize) -> String {
    let unit = format!("{}{}{}<&>", "\"".repeat(40), "é".repeat(25), "'".repeat(8));
    let mut s = unit.repeat(bytes / unit.len() + 1);
    let mut end = bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

/// Bytes of Bob's long Jabber answer: as a c2s stanza it stays under IM&P's 64 KiB limit, and
/// encrypted it stays under the cloud's limit for a post.
const LONG_FROM_JABBER_BYTES: usize = 45_000;
/// Bytes of Alice's long Webex post, near the cloud's limit for its ciphertext.
const LONG_FROM_WEBEX_BYTES: usize = 46_000;
/// Alice's post of `&` only: each is 5 bytes as XML, so its stanza would be over 64 KiB.
const OVERSIZE_AMPERSANDS: usize = 30_000;

/// Bob's Jabber for the long-message test: records each body's length and tail, answers the
/// first with [`LONG_FROM_JABBER_BYTES`] of awkward text, the others with "pong".
async fn bob_jabber_long(got: Rc<RefCell<Vec<String>>>) -> turmoil::Result {
    let stream = TurmoilNet.connect("imp-a-1", 5222).await?;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut core = JabberCore::new(&Jid::parse(BOB)?, "pw-bob", "desk");
    let mut buf = vec![0u8; 8192];
    let mut answered = 0;
    loop {
        if let Some(out) = core.take_output() {
            wr.write_all(out.as_bytes()).await?;
        }
        let n = read_pinging(&mut rd, &mut wr, &mut core, &mut buf).await?;
        if n == 0 {
            return Err("IM&P closed bob's stream".into());
        }
        for ev in core.input(&buf[..n]) {
            let ClientEvent::Stanza(el) = ev else {
                continue;
            };
            let Some(body) = xmpp::body(&el) else {
                continue;
            };
            let tail: String = body
                .chars()
                .rev()
                .take(8)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            got.borrow_mut().push(format!("{} {tail}", body.len()));
            answered += 1;
            let text = match answered {
                1 => awkward_text(LONG_FROM_JABBER_BYTES),
                _ => "pong".to_string(),
            };
            let reply = xmpp::chat_message(
                xmpp::NS_CLIENT,
                &format!("bob-{answered}"),
                None,
                ALICE,
                &text,
            );
            core.send(&reply);
        }
    }
}

/// Alice's Webex for the long-message test: posts a long text that fits, one whose stanza
/// would not, and a short one; records Bob's answers (length) and any `undelivered` notice.
async fn alice_webex_long(got: Rc<RefCell<Vec<String>>>) -> turmoil::Result {
    let token = webex_login(ALICE, "pw-alice").await?;
    tokio::time::sleep(Duration::from_secs(400)).await;
    let mut ws = webex_events(&token, 3).await?;
    let mut c = cloud_http().await?;
    let body = json!({"kind": "direct", "members": [ALICE, BOB]});
    let (_, space) = c
        .request(Method::Post, "/v1/spaces", Some(&token), Some(&body))
        .await?;
    let space_id = space["space_id"].as_str().ok_or("space")?.to_string();
    let key = fetch_key(&mut c, &token, space["key_uri"].as_str().ok_or("uri")?).await?;
    let texts = [
        awkward_text(LONG_FROM_WEBEX_BYTES),
        "&".repeat(OVERSIZE_AMPERSANDS),
        "ping after".to_string(),
    ];
    for (i, t) in texts.iter().enumerate() {
        let ct = jwe::encrypt(&key, [i as u8; 12], t.as_bytes());
        let status = post(
            &mut c,
            &token,
            &space_id,
            json!({"verb": "post", "encrypted_text": ct}),
        )
        .await?;
        assert_eq!(status, 201, "post {i}");
    }
    let mut texts_seen = 0;
    loop {
        let Event::Activity { activity, .. } = ws.next_event().await? else {
            continue;
        };
        let Some(ct) = activity.encrypted_text.as_deref() else {
            continue;
        };
        let plain = String::from_utf8(jwe::decrypt(&key, ct)?)?;
        match (activity.actor.as_str(), activity.verb) {
            (ALICE, connector::proto::webex::Verb::Undelivered) => {
                let e: Value = serde_json::from_str(&plain)?;
                got.borrow_mut()
                    .push(format!("undelivered {}", e["condition"]));
            }
            (BOB, _) => {
                got.borrow_mut().push(format!("bob {}", plain.len()));
                texts_seen += 1;
            }
            _ => continue,
        }
        if texts_seen == 2 && got.borrow().iter().any(|l| l.starts_with("undelivered")) {
            return Ok(());
        }
    }
}

/// Issue 12 item 2: long messages cross the component link both ways, and a Webex post whose
/// stanza would exceed IM&P's 64 KiB limit is refused to its sender alone (an `undelivered`
/// notice in Webex) without closing the link: the short post after it still crosses.
#[test]
fn long_messages_cross_both_ways_and_an_oversize_one_is_refused_to_its_sender_alone()
-> turmoil::Result {
    let mut sim = world(false);
    let jabber_got: Rc<RefCell<Vec<String>>> = Rc::default();
    let webex_got: Rc<RefCell<Vec<String>>> = Rc::default();
    let (j, w) = (jabber_got.clone(), webex_got.clone());
    sim.host("jabber-1", move || {
        let j = j.clone();
        async move { bob_jabber_long(j).await }
    });
    sim.client("webex-1", alice_webex_long(w));
    let ran = sim.run();
    let (jabber, webex) = (jabber_got.borrow(), webex_got.borrow());
    ran.map_err(|e| format!("{e}; Bob's Jabber saw {jabber:?}, Alice's Webex {webex:?}"))?;
    let long = awkward_text(LONG_FROM_WEBEX_BYTES);
    let tail: String = long
        .chars()
        .rev()
        .take(8)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert_eq!(
        jabber.as_slice(),
        [format!("{} {tail}", long.len()), "10 ng after".to_string()],
        "the long post crossed whole, the oversize one never reached Jabber, the link stayed"
    );
    assert!(
        webex.contains(&"undelivered \"policy-violation\"".to_string()),
        "{webex:?}"
    );
    let answer = awkward_text(LONG_FROM_JABBER_BYTES).len();
    assert!(webex.contains(&format!("bob {answer}")), "{webex:?}");
    Ok(())
}

/// Bob's text too large for Webex: 50,000 letters encrypt to about 66,700 bytes, over the
/// cloud's 64 KiB limit on encrypted text, while its stanza (about 50 KB) is within IM&P's.
const TOO_LARGE_FOR_WEBEX_BYTES: usize = 50_000;

/// Bob's Jabber for the too-large test: answers Alice's first message with a text too large
/// for Webex (`bob-big`), then a short one (`bob-after`); records every error stanza.
async fn bob_jabber_too_large(got: Rc<RefCell<Vec<String>>>) -> turmoil::Result {
    let stream = TurmoilNet.connect("imp-a-1", 5222).await?;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut core = JabberCore::new(&Jid::parse(BOB)?, "pw-bob", "desk");
    let mut buf = vec![0u8; 8192];
    let mut answered = false;
    loop {
        if let Some(out) = core.take_output() {
            wr.write_all(out.as_bytes()).await?;
        }
        let n = read_pinging(&mut rd, &mut wr, &mut core, &mut buf).await?;
        if n == 0 {
            return Err("IM&P closed bob's stream".into());
        }
        for ev in core.input(&buf[..n]) {
            let ClientEvent::Stanza(el) = ev else {
                continue;
            };
            if el.name == "message" && el.attr("type") == Some("error") {
                let condition = xmpp::error_condition(&el).unwrap_or_default();
                let id = el.attr("id").unwrap_or_default();
                got.borrow_mut().push(format!("error {id} {condition}"));
                continue;
            }
            if xmpp::body(&el).is_none() || answered {
                continue;
            }
            answered = true;
            let big = "b".repeat(TOO_LARGE_FOR_WEBEX_BYTES);
            for (id, text) in [("bob-big", big.as_str()), ("bob-after", "after")] {
                core.send(&xmpp::chat_message(xmpp::NS_CLIENT, id, None, ALICE, text));
            }
        }
    }
}

/// Alice's Webex for the too-large test: says hello, records what Bob's posts say (or their
/// length when long), and ends a little after Bob's short answer arrived.
async fn alice_webex_hello(got: Rc<RefCell<Vec<String>>>) -> turmoil::Result {
    let token = webex_login(ALICE, "pw-alice").await?;
    tokio::time::sleep(Duration::from_secs(400)).await;
    let mut ws = webex_events(&token, 3).await?;
    let mut c = cloud_http().await?;
    let body = json!({"kind": "direct", "members": [ALICE, BOB]});
    let (_, space) = c
        .request(Method::Post, "/v1/spaces", Some(&token), Some(&body))
        .await?;
    let space_id = space["space_id"].as_str().ok_or("space")?.to_string();
    let key = fetch_key(&mut c, &token, space["key_uri"].as_str().ok_or("uri")?).await?;
    let ct = jwe::encrypt(&key, [7; 12], b"hello");
    let hello = json!({"verb": "post", "encrypted_text": ct});
    assert_eq!(post(&mut c, &token, &space_id, hello).await?, 201);
    loop {
        let Event::Activity { activity, .. } = ws.next_event().await? else {
            continue;
        };
        let Some(ct) = activity.encrypted_text.as_deref() else {
            continue;
        };
        if activity.actor != BOB {
            continue;
        }
        let plain = String::from_utf8(jwe::decrypt(&key, ct)?)?;
        let seen = match plain.len() {
            n if n > 100 => format!("{n} bytes"),
            _ => plain.clone(),
        };
        got.borrow_mut().push(seen);
        if plain == "after" {
            tokio::time::sleep(Duration::from_secs(10)).await;
            return Ok(());
        }
    }
}

/// Issue 12 item 3: a Jabber message whose encrypted text exceeds the cloud's limit (about
/// 48 KB of text) was posted, refused by the cloud, and lost without a word to its sender.
/// Its Jabber sender now gets a `policy-violation` error for it; the next message crosses.
#[test]
fn a_jabber_message_too_large_for_webex_is_refused_to_its_sender_with_an_error() -> turmoil::Result
{
    let mut sim = world(false);
    let jabber_got: Rc<RefCell<Vec<String>>> = Rc::default();
    let webex_got: Rc<RefCell<Vec<String>>> = Rc::default();
    let (j, w) = (jabber_got.clone(), webex_got.clone());
    sim.host("jabber-1", move || {
        let j = j.clone();
        async move { bob_jabber_too_large(j).await }
    });
    sim.client("webex-1", alice_webex_hello(w));
    let ran = sim.run();
    let (jabber, webex) = (jabber_got.borrow(), webex_got.borrow());
    ran.map_err(|e| format!("{e}; Bob's Jabber saw {jabber:?}, Alice's Webex {webex:?}"))?;
    assert_eq!(
        webex.as_slice(),
        ["after"],
        "the large one never reached Webex"
    );
    assert_eq!(
        jabber.as_slice(),
        ["error bob-big policy-violation"],
        "Bob was told, once"
    );
    Ok(())
}
