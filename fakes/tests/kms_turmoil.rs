//! The KMS as its own host: the cloud relays to it over turmoil's network.
//!
//! - `cloud_kms_message_survives_kms_outage` (host `kms`) and
//!   `hds_message_survives_kms_outage` (host `hds`, on-premises Hybrid Data Security): two
//!   Webex clients exchange encrypted messages; in the middle the KMS goes down (its
//!   `PUT /v1/outage` switch). Key fetches and space creation answer 503 while it is down, the
//!   clients retry with backoff, and after recovery every message is decrypted: nothing lost.
//! - `move_during_outage_reaches_the_kms`: a connector is put in maintenance while the KMS is
//!   down; the cloud's relay retries the authorization changes, so after recovery the new
//!   connector fetches the key and the old one is refused.
//! - `same_seed_same_outage_run`: the outage run twice gives the same counters.
//! - `a_kms_call_racing_the_idle_close_is_sent_again`: the KMS closes an idle keep-alive
//!   connection as the cloud's relay sends on it; the relay sends the call again on a new
//!   connection instead of answering 503 `kms_unavailable` with no fault anywhere.
//! - `faults_drop_sockets_and_inject_http_errors`: `drop_event_sockets` closes a client's event
//!   WebSocket (it reconnects and gets later events); `set_http_errors` answers 429 `injected`.

use connector::io::http::HTTP_IDLE_TIMEOUT;
use connector::io::net::{Net as _, TurmoilNet};
use connector::proto::jwe::{self, SpaceKey};
use fakes::cloud::api::{Event, Method};
use fakes::cloud::http::{self, CLOUD_HOST, CLOUD_PORT, HttpClient};
use fakes::cloud::{Cloud, CloudConfig};
use fakes::kms::{HDS_HOST, KMS_PORT, KmsCall, KmsReply, KmsService};
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

const ADMIN: &str = "admin-token";
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
/// How long the KMS stays down.
const OUTAGE: Duration = Duration::from_secs(40);

type SharedKms = Rc<RefCell<KmsService>>;
type SharedCloud = Rc<RefCell<Cloud>>;

fn sim<'a>(kms_host: &'static str) -> (turmoil::Sim<'a>, SharedKms, SharedCloud) {
    let mut sim = turmoil::Builder::new()
        .rng_seed(1)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .tick_duration(Duration::from_millis(10))
        .simulation_duration(Duration::from_secs(900))
        .build();
    let kms = Rc::new(RefCell::new(KmsService::new(
        kms_host,
        ChaCha8Rng::seed_from_u64(21),
    )));
    let cfg = CloudConfig {
        domain: "example.com".into(),
        admin_token: ADMIN.into(),
        kms_host: kms_host.into(),
    };
    let cloud = Rc::new(RefCell::new(Cloud::with_remote_kms(
        cfg,
        ChaCha8Rng::seed_from_u64(11),
        kms_host,
        KMS_PORT,
    )));
    let k = kms.clone();
    sim.host(kms_host, move || {
        let k = k.clone();
        async move {
            fakes::kms::http::serve(TurmoilNet, k, KMS_PORT).await?;
            Ok(())
        }
    });
    let c = cloud.clone();
    sim.host(CLOUD_HOST, move || {
        let c = c.clone();
        async move {
            http::serve(TurmoilNet, c, CLOUD_PORT).await?;
            Ok(())
        }
    });
    (sim, kms, cloud)
}

async fn client() -> HttpClient {
    let stream = TurmoilNet.connect(CLOUD_HOST, CLOUD_PORT).await.unwrap();
    HttpClient::handshake(stream).await.unwrap()
}

/// Sends a request, retrying 503s (and broken connections) with backoff from 1 s to 8 s, as
/// clients and the connector do. Returns the answer and how many 503s it took.
async fn retry(
    c: &mut HttpClient,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Value,
    status: u16,
) -> (Value, u32) {
    let mut backoff = Duration::from_secs(1);
    let mut refused = 0;
    let body = (!body.is_null()).then_some(body);
    for _ in 0..60 {
        if !c.is_open() {
            *c = client().await;
        }
        match c.request(method, path, token, body.as_ref()).await {
            Ok((503, json)) => {
                assert_eq!(json["error"], "kms_unavailable", "{json}");
                refused += 1;
            }
            Ok((got, json)) => {
                assert_eq!(got, status, "{method:?} {path}: {json}");
                return (json, refused);
            }
            Err(_) => *c = client().await,
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(8));
    }
    panic!("{method:?} {path}: still failing after 60 tries");
}

async fn key(c: &mut HttpClient, token: &str, uri: &str) -> (SpaceKey, u32) {
    let body = json!({"uri": uri});
    let (r, refused) = retry(c, Method::Post, "/v1/kms/keys", Some(token), body, 200).await;
    let bytes = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        r["key"].as_str().unwrap(),
    )
    .unwrap();
    let key = SpaceKey {
        uri: uri.to_owned(),
        bytes: bytes.try_into().unwrap(),
    };
    (key, refused)
}

async fn login(c: &mut HttpClient, email: &str) -> String {
    let body = json!({"email": email, "password": "pw"});
    let (r, _) = retry(c, Method::Post, "/v1/login", None, body, 200).await;
    r["token"].as_str().unwrap().to_owned()
}

async fn set_outage(kms_host: &str, on: bool) {
    let stream = TurmoilNet.connect(kms_host, KMS_PORT).await.unwrap();
    let mut c = HttpClient::handshake(stream).await.unwrap();
    let (status, body) = c
        .request(Method::Put, "/v1/outage", None, Some(&json!({"on": on})))
        .await
        .unwrap();
    assert_eq!(
        (status, body["outage"].as_bool()),
        (200, Some(on)),
        "{body}"
    );
}

/// What Bob decrypted and how many 503s the clients saw.
#[derive(Debug, Default)]
struct Outcome {
    received: Vec<String>,
    refused: u32,
}

fn exchange_across_outage(
    kms_host: &'static str,
) -> (
    Vec<String>,
    u32,
    fakes::cloud::CloudStats,
    fakes::kms::KmsStats,
) {
    let (mut sim, kms, cloud) = sim(kms_host);
    let outcome = Rc::new(RefCell::new(Outcome::default()));
    let seen = outcome.clone();
    sim.client("webex-1", async move {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut admin = client().await;
        for email in [ALICE, BOB] {
            let body = json!({"email": email, "password": "pw", "entitlements": ["paid_licence"]});
            retry(
                &mut admin,
                Method::Post,
                "/v1/admin/users",
                Some(ADMIN),
                body,
                201,
            )
            .await;
        }
        let mut alice_http = client().await;
        let mut bob_http = client().await;
        let alice = login(&mut alice_http, ALICE).await;
        let bob = login(&mut bob_http, BOB).await;
        let stream = TurmoilNet.connect(CLOUD_HOST, CLOUD_PORT).await?;
        let mut bob_events = http::ws_connect(stream, &bob, &mut rng).await?;

        // Before the outage: a direct space and a first message.
        let body = json!({"kind": "direct", "members": [ALICE, BOB]});
        let (space, _) = retry(
            &mut alice_http,
            Method::Post,
            "/v1/spaces",
            Some(&alice),
            body,
            201,
        )
        .await;
        let uri = space["key_uri"].as_str().unwrap().to_owned();
        assert!(uri.starts_with(&format!("kms://{kms_host}/keys/")), "{uri}");
        let (alice_key, _) = key(&mut alice_http, &alice, &uri).await;
        let path = format!(
            "/v1/spaces/{}/activities",
            space["space_id"].as_str().unwrap()
        );
        let text = jwe::encrypt(&alice_key, jwe::draw_iv(&mut rng), b"before the outage");
        let body = json!({"verb": "post", "encrypted_text": text, "client_id": "a-1"});
        retry(
            &mut alice_http,
            Method::Post,
            &path,
            Some(&alice),
            body,
            201,
        )
        .await;

        // The KMS goes down for OUTAGE; it comes back on its own.
        set_outage(kms_host, true).await;
        tokio::task::spawn_local(async move {
            tokio::time::sleep(OUTAGE).await;
            set_outage(kms_host, false).await;
        });

        // Bob hears of the space and the message, but cannot get the key until recovery.
        let mut messages = Vec::new();
        while messages.is_empty() {
            if let Event::Activity { activity, .. } = bob_events.next_event().await? {
                messages.push(activity);
            }
        }
        // Alice opens a group space during the outage: refused, retried, created.
        let body = json!({"kind": "group", "members": [ALICE, BOB]});
        let (group, refused_group) = retry(
            &mut alice_http,
            Method::Post,
            "/v1/spaces",
            Some(&alice),
            body,
            201,
        )
        .await;
        let (group_key, _) = key(&mut alice_http, &alice, group["key_uri"].as_str().unwrap()).await;
        let text = jwe::encrypt(&group_key, jwe::draw_iv(&mut rng), b"after the outage");
        let path = format!(
            "/v1/spaces/{}/activities",
            group["space_id"].as_str().unwrap()
        );
        let body = json!({"verb": "post", "encrypted_text": text, "client_id": "a-2"});
        retry(
            &mut alice_http,
            Method::Post,
            &path,
            Some(&alice),
            body,
            201,
        )
        .await;
        while messages.len() < 2 {
            if let Event::Activity { activity, .. } = bob_events.next_event().await? {
                messages.push(activity);
            }
        }
        let mut refused = refused_group;
        for a in messages {
            let (k, r) = key(&mut bob_http, &bob, a.kid.as_deref().unwrap()).await;
            refused += r;
            let plain = jwe::decrypt(&k, a.encrypted_text.as_deref().unwrap()).unwrap();
            seen.borrow_mut()
                .received
                .push(String::from_utf8(plain).unwrap());
        }
        seen.borrow_mut().refused = refused;
        bob_events.close().await;
        Ok(())
    });
    sim.run().unwrap();
    let outcome = outcome.take();
    assert_eq!(outcome.received, ["before the outage", "after the outage"]);
    assert!(outcome.refused > 0, "the outage was felt: {outcome:?}");
    let kms_stats = kms.borrow().kms().stats();
    assert!(kms_stats.failed_during_outage > 0, "{kms_stats:?}");
    assert_eq!(kms_stats.keys_created, 2);
    assert!(!kms.borrow().kms().outage());
    let stats = cloud.borrow().stats();
    assert_eq!(stats.spaces_created, 2, "{stats:?}");
    assert!(stats.responses_server_error > 0, "{stats:?}");
    (outcome.received, outcome.refused, stats, kms_stats)
}

#[test]
fn same_seed_same_outage_run() {
    let first = exchange_across_outage(fakes::kms::CLOUD_HOST);
    assert_eq!(first, exchange_across_outage(fakes::kms::CLOUD_HOST));
}

#[test]
fn cloud_kms_message_survives_kms_outage() {
    let _ = exchange_across_outage(fakes::kms::CLOUD_HOST);
}

#[test]
fn hds_message_survives_kms_outage() {
    let _ = exchange_across_outage(fakes::kms::HDS_HOST);
}

#[test]
fn move_during_outage_reaches_the_kms() {
    let (mut sim, kms, cloud) = sim(fakes::kms::CLOUD_HOST);
    let uri_seen = Rc::new(RefCell::new(String::new()));
    let uri_out = uri_seen.clone();
    sim.client("exp-a-1", async move {
        let mut admin = client().await;
        let body = json!({"name": "exp-a", "size": "small", "hostnames": ["exp-a-1", "exp-a-2", "exp-a-3", "exp-a-4", "exp-a-5", "exp-a-6"]});
        let (r, _) = retry(&mut admin, Method::Post, "/v1/admin/clusters", Some(ADMIN), body, 201).await;
        let token = r["registration_token"].as_str().unwrap().to_owned();
        let mut cons = Vec::new();
        for (host, primary) in [("exp-a-1", true), ("exp-a-2", false)] {
            let body = json!({"hostname": host, "primary": primary});
            let (reg, _) = retry(&mut admin, Method::Post, "/v1/connectors/register", Some(&token), body, 202).await;
            cons.push(reg["connector_token"].as_str().unwrap().to_owned());
        }
        // Heartbeats keep both connectors up while registration completes (≤ 5 min).
        let hb = cons.clone();
        tokio::task::spawn_local(async move {
            let mut c = client().await;
            loop {
                for t in &hb {
                    if !c.is_open() {
                        c = client().await;
                    }
                    let _ = c.request(Method::Post, "/v1/connectors/heartbeat", Some(t), Some(&json!({}))).await;
                }
                tokio::time::sleep(fakes::cloud::control_hub::HEARTBEAT_INTERVAL).await;
            }
        });
        tokio::time::sleep(fakes::cloud::control_hub::REGISTRATION_DELAY_MAX + Duration::from_secs(2)).await;
        let mut admin = client().await;
        let body = json!({"add": [{"email": ALICE, "imp_cluster": "imp-a"}]});
        retry(&mut admin, Method::Post, "/v1/connectors/users", Some(&cons[0]), body, 200).await;
        for email in [ALICE, BOB] {
            let body = json!({"email": email, "password": "pw", "entitlements": ["paid_licence", "hybrid_message"]});
            retry(&mut admin, Method::Post, "/v1/admin/users", Some(ADMIN), body, 201).await;
        }
        tokio::time::sleep(fakes::cloud::org::PENDING_DELAY + Duration::from_secs(2)).await;
        let mut admin = client().await;
        let (u, _) = retry(&mut admin, Method::Get, "/v1/admin/users/alice@example.com", Some(ADMIN), Value::Null, 200).await;
        let first = u["assigned_to"].as_str().unwrap().to_owned();
        let (old, new) = if first == "exp-a-1" { (0, 1) } else { (1, 0) };
        let alice = login(&mut admin, ALICE).await;
        let body = json!({"kind": "direct", "members": [ALICE, BOB]});
        let (space, _) = retry(&mut admin, Method::Post, "/v1/spaces", Some(&alice), body, 201).await;
        let uri = space["key_uri"].as_str().unwrap().to_owned();
        key(&mut admin, &cons[old], &uri).await;

        // The KMS goes down; Alice's connector goes into maintenance: she moves.
        set_outage(fakes::kms::CLOUD_HOST, true).await;
        let path = format!("/v1/admin/connectors/{first}/maintenance");
        retry(&mut admin, Method::Put, &path, Some(ADMIN), json!({"on": true}), 200).await;
        let moved = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(20)).await;
        set_outage(fakes::kms::CLOUD_HOST, false).await;
        // The relay retries within KMS_RETRY_MAX; the new connector then gets the key, and the
        // old one keeps it for RELEASE_GRACE (what it had in flight for Alice).
        let (_, _) = key(&mut admin, &cons[new], &uri).await;
        let (_, _) = key(&mut admin, &cons[old], &uri).await;
        let grace_over = moved + fakes::cloud::RELEASE_GRACE + Duration::from_secs(5);
        tokio::time::sleep_until(grace_over).await;
        let mut admin = client().await; // the idle one was closed meanwhile
        let (status, body) = admin
            .request(Method::Post, "/v1/kms/keys", Some(&cons[old]), Some(&json!({"uri": uri})))
            .await?;
        assert_eq!((status, body["error"].as_str()), (403, Some("kms_forbidden")), "{body}");
        *uri_out.borrow_mut() = uri;
        Ok(())
    });
    sim.run().unwrap();
    let uri = uri_seen.borrow().clone();
    assert!(!uri.is_empty());
    let stats = cloud.borrow().stats();
    assert!(stats.kms_change_retries > 0, "{stats:?}");
    assert_eq!(stats.kms_authorization_failures, 0, "{stats:?}");
    assert!(
        !kms.borrow().kms().is_authorized(&uri, "connector:exp-a-1")
            || !kms.borrow().kms().is_authorized(&uri, "connector:exp-a-2")
    );
}

#[test]
fn faults_drop_sockets_and_inject_http_errors() {
    let (mut sim, _kms, cloud) = sim(fakes::kms::CLOUD_HOST);
    let shared = cloud.clone();
    sim.client("webex-1", async move {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut admin = client().await;
        for email in [ALICE, BOB] {
            let body = json!({"email": email, "password": "pw", "entitlements": ["paid_licence"]});
            retry(
                &mut admin,
                Method::Post,
                "/v1/admin/users",
                Some(ADMIN),
                body,
                201,
            )
            .await;
        }
        let alice = login(&mut admin, ALICE).await;
        let bob = login(&mut admin, BOB).await;
        let stream = TurmoilNet.connect(CLOUD_HOST, CLOUD_PORT).await?;
        let mut events = http::ws_connect(stream, &bob, &mut rng).await?;
        // The driver closes every socket within a tick; Bob's client sees it close.
        shared.borrow_mut().drop_event_sockets();
        let closed = tokio::time::timeout(Duration::from_secs(5), events.next_event()).await;
        assert!(matches!(closed, Ok(Err(_))), "{closed:?}");
        // Reconnected, he gets the next event.
        let stream = TurmoilNet.connect(CLOUD_HOST, CLOUD_PORT).await?;
        let mut events = http::ws_connect(stream, &bob, &mut rng).await?;
        let body = json!({"kind": "direct", "members": [ALICE, BOB]});
        retry(
            &mut admin,
            Method::Post,
            "/v1/spaces",
            Some(&alice),
            body,
            201,
        )
        .await;
        assert!(matches!(
            events.next_event().await?,
            Event::SpaceCreated { .. }
        ));

        // Injected errors: every request answered 429 with an "injected" body, then off.
        shared
            .borrow_mut()
            .set_http_errors(1.0, 429, ChaCha8Rng::seed_from_u64(1));
        let (status, body) = admin
            .request(Method::Get, "/v1/me", Some(&alice), None)
            .await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (429, Some("injected")),
            "{body}"
        );
        shared
            .borrow_mut()
            .set_http_errors(0.0, 429, ChaCha8Rng::seed_from_u64(1));
        let (status, _) = admin
            .request(Method::Get, "/v1/me", Some(&alice), None)
            .await?;
        assert_eq!(status, 200);
        Ok(())
    });
    sim.run().unwrap();
    let stats = cloud.borrow().stats();
    assert_eq!(stats.sockets_dropped_by_fault, 1, "{stats:?}");
    assert_eq!(stats.injected_errors, 1, "{stats:?}");
}

/// A call sent on the relay's keep-alive connection just as the KMS closes it for idleness
/// gets no response. Sent at several instants around the idle timeout, on a bare connection
/// some are lost that way (so the test meets the race), while the relay's
/// [`fakes::kms::http::KmsClient`] gets every one answered (here: not found, not unavailable).
#[test]
fn a_kms_call_racing_the_idle_close_is_sent_again() {
    use connector::io::http::{ClientError, HTTP_IDLE_TIMEOUT};
    use fakes::kms::http::KmsClient;
    use fakes::kms::{KmsCall, KmsError};
    let (mut sim, _kms, _cloud) = sim("kms");
    sim.client("relay", async {
        let call = KmsCall::FetchKey {
            uri: "kms://kms/keys/none".into(),
            principal: ALICE.into(),
        };
        let mut tasks = Vec::new();
        for offset_ms in -30i64..=30 {
            let call = call.clone();
            tasks.push(tokio::task::spawn_local(async move {
                let shift = Duration::from_millis(offset_ms.unsigned_abs() * 10);
                let wait = if offset_ms < 0 {
                    HTTP_IDLE_TIMEOUT - shift
                } else {
                    HTTP_IDLE_TIMEOUT + shift
                };
                let stream = TurmoilNet.connect("kms", KMS_PORT).await.unwrap();
                let mut bare = HttpClient::handshake(stream).await.unwrap();
                let mut relay = KmsClient::new(TurmoilNet, "kms", KMS_PORT);
                assert!(health(&mut bare).await.is_ok());
                assert!(
                    relay
                        .call(&call)
                        .await
                        .is_err_and(|e| e != KmsError::Unavailable)
                );
                tokio::time::sleep(wait).await;
                let lost = bare.is_open()
                    && matches!(health(&mut bare).await, Err(ClientError::NoResponse(_)));
                let answer = relay.call(&call).await;
                assert!(
                    answer.as_ref().is_err_and(|e| *e != KmsError::Unavailable),
                    "offset {offset_ms}0 ms: {answer:?}"
                );
                lost
            }));
        }
        let mut lost = 0;
        for t in tasks {
            lost += usize::from(t.await.unwrap());
        }
        assert!(
            lost > 0,
            "no send time met the idle close: the test misses the race"
        );
        Ok(())
    });
    sim.run().unwrap();
}

async fn health(c: &mut HttpClient) -> Result<(u16, Vec<u8>), connector::io::http::ClientError> {
    c.send(Method::Get, "/v1/health", "kms", None, None, Vec::new())
        .await
}

/// The cloud's relay connection to the KMS outlives a partition between them (a
/// `cloud_outage`): the KMS closes the idle connection during it, the close never arrives, and
/// the next call on it meets a reset before any response. That call was never read, so the
/// client sends it again on a new connection (RFC 9112 section 9.3.1) instead of answering
/// "KMS unavailable": each stale connection used to cost a 503 to a waiting client, and each
/// stale authorization change a retry pause answering every call 503 meanwhile.
#[test]
fn kms_connection_closed_unseen_during_a_partition_is_replaced_not_a_503() {
    let (mut sim, kms, _cloud) = sim(fakes::kms::HDS_HOST);
    sim.client("relay", async move {
        let mut client = fakes::kms::http::KmsClient::new(TurmoilNet, HDS_HOST, KMS_PORT);
        let create = KmsCall::CreateKey {
            space_id: "space-1".into(),
            principals: vec![ALICE.into()],
        };
        let Ok(KmsReply::Key(key)) = client.call(&create).await else {
            panic!("the KMS is up: the key is created");
        };
        turmoil::partition("relay", HDS_HOST);
        // Longer than the KMS's idle timeout: it closes the connection; the FIN is lost.
        tokio::time::sleep(HTTP_IDLE_TIMEOUT + Duration::from_secs(5)).await;
        turmoil::repair("relay", HDS_HOST);
        let fetch = KmsCall::FetchKey {
            uri: key.uri.clone(),
            principal: ALICE.into(),
        };
        let answer = client.call(&fetch).await;
        assert_eq!(answer, Ok(KmsReply::Key(key)));
        Ok(())
    });
    sim.run().unwrap();
    assert_eq!(kms.borrow().stats().requests, 2);
}
