//! The real connector end to end in turmoil, before any scenario machinery: one fake IM&P node
//! (c2s, component port, AXL), the fake cloud, the connector on `exp-a-1`, a Webex user
//! (Alice, Hybrid Message) and a Jabber user (Bob, not Hybrid Message).
//!
//! W+ → J−: Alice posts in Webex; her connector decrypts and sends it from her session, so
//! Bob's Jabber shows it. J− → W+: Bob answers from Jabber; IM&P copies it to Alice's session;
//! the connector encrypts it with the space key and posts it; Alice's Webex shows it.

use connector::core::config::{ConnectorConfig, ImpPublisher, Proxy};
use connector::core::node::{ConnectorNode, NodeSettings};
use connector::io::driver::{self, Peers};
use connector::io::http::{HttpClient, Method, ws_connect};
use connector::io::net::{Net as _, TurmoilNet};
use connector::proto::jwe::{self, SpaceKey};
use connector::proto::webex::Event;
use connector::proto::xmpp::{self, Jid};
use fakes::cloud::api::Request;
use fakes::cloud::http::{CLOUD_HOST, CLOUD_PORT};
use fakes::cloud::{Cloud, CloudConfig};
use fakes::imp::{axl, component, driver as imp_driver};
use fakes::jabber::{ClientEvent, JabberCore};
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

fn settings(token: String) -> NodeSettings {
    let cluster = ConnectorConfig {
        cluster: "exp-a".into(),
        nodes: vec!["exp-a-1".into()],
        publishers: vec![ImpPublisher {
            cluster: "imp-a".into(),
            host: "imp-a-1".into(),
            axl_username: "axl".into(),
            axl_password: "axl-pw".into(),
            certificate_validation: true,
            platform_admin: "admin".into(),
        }],
        proxy: Proxy::None,
        enabled: true,
    };
    NodeSettings {
        hostname: "exp-a-1".into(),
        primary: true,
        cluster,
        others: Vec::new(),
        registration_token: Some(token),
        session_rate_per_s: 50.0,
        migration_rate: (5000.0, Duration::from_secs(1800)),
        detection_delay_max: Duration::from_secs(60),
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
        let n = rd.read(&mut buf).await?;
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

/// Alice's Webex: logs in, posts to Bob after the connector has had time to register and
/// assign her, and collects what arrives on her event socket.
async fn alice_webex(got: Rc<RefCell<Vec<String>>>) -> turmoil::Result {
    let mut c = HttpClient::handshake(TurmoilNet.connect(CLOUD_HOST, CLOUD_PORT).await?).await?;
    let (_, login) = c
        .request(
            Method::Post,
            "/v1/login",
            None,
            Some(&json!({"email": ALICE, "password": "pw-alice"})),
        )
        .await?;
    let token = login["token"].as_str().ok_or("no token")?.to_string();
    // Registration takes up to 5 minutes (spec 12); then discovery, assignment, presence.
    tokio::time::sleep(Duration::from_secs(400)).await;
    let mut ws = ws_connect(
        TurmoilNet.connect(CLOUD_HOST, CLOUD_PORT).await?,
        &token,
        &mut ChaCha8Rng::seed_from_u64(3),
    )
    .await?;
    let mut c = HttpClient::handshake(TurmoilNet.connect(CLOUD_HOST, CLOUD_PORT).await?).await?;
    let (_, space) = c
        .request(
            Method::Post,
            "/v1/spaces",
            Some(&token),
            Some(&json!({"kind": "direct", "members": [ALICE, BOB]})),
        )
        .await?;
    let (space_id, uri) = (
        space["space_id"].as_str().ok_or("space")?.to_string(),
        space["key_uri"].as_str().ok_or("uri")?.to_string(),
    );
    let (_, k) = c
        .request(
            Method::Post,
            "/v1/kms/keys",
            Some(&token),
            Some(&json!({"uri": uri})),
        )
        .await?;
    let bytes: [u8; 32] = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        k["key"].as_str().ok_or("key")?,
    )?
    .try_into()
    .map_err(|_| "key length")?;
    let key = SpaceKey { uri, bytes };
    let text = jwe::encrypt(&key, [9u8; 12], b"ping from webex");
    let (status, _) = c
        .request(
            Method::Post,
            &format!("/v1/spaces/{space_id}/activities"),
            Some(&token),
            Some(&json!({"verb": "post", "encrypted_text": text})),
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

#[test]
fn webex_to_jabber_and_back_through_the_real_connector() -> turmoil::Result {
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
        json!({"name": "exp-a", "size": "large"}),
    );
    let token = reg["registration_token"].as_str().unwrap().to_string();
    admin(
        &mut cloud,
        Method::Post,
        "/v1/admin/users",
        json!({"email": ALICE, "password": "pw-alice", "entitlements": ["paid_licence", "hybrid_message"]}),
    );
    admin(
        &mut cloud,
        Method::Post,
        "/v1/admin/users",
        json!({"email": BOB, "password": "pw-bob", "entitlements": ["paid_licence"]}),
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
        let s = settings(token.clone());
        async move {
            let core = Rc::new(RefCell::new(ConnectorNode::new(s, TurmoilNet.now())));
            driver::run(TurmoilNet, core, Peers::standard(CLOUD_HOST, SECRET), 42).await;
            Ok(())
        }
    });
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
