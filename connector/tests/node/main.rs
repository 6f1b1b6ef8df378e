//! The connector node driven with no I/O through [`harness::Harness`]: registration, discovery
//! paging, assignment, session open and close, both translation directions with encryption, a
//! failover move and a hand-back. Expected requests, stanzas and bodies are written out here
//! as docs/protocols.md and the deployment guide describe them.

mod fuzz;
mod harness;

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use connector::core::node::{HttpRequest, NodeSettings, Phase, Target};
use connector::proto::http::Method;
use harness::{Harness, json_body, text_body};
use serde_json::{Value, json};
use std::time::Duration;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.com";
const SESSION_NS: &str = "urn:hmsim:hybrid-session:0";
const KEY_URI: &str = "kms://kms/keys/k-1";
const KEY: [u8; 32] = [0x42; 32];

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A SOAP response of operation `op` whose `<return>` holds `inner`.
fn soap(op: &str, inner: &str) -> String {
    format!(
        "<?xml version='1.0' encoding='UTF-8'?>\
         <soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'>\
         <soapenv:Body><ns:{op}Response xmlns:ns='http://www.cisco.com/AXL/API/14.0'>\
         <return>{inner}</return></ns:{op}Response></soapenv:Body></soapenv:Envelope>"
    )
}

/// Two IM&P nodes of cluster `imp-a`, each the other's PRG peer, with high availability.
fn two_nodes() -> String {
    let node = |name: &str, peer: &str| {
        format!(
            "<processNode><name>{name}</name><processNodeRole>CUCM IM and Presence\
             </processNodeRole><version>15.0.1</version><prgPeer>{peer}</prgPeer>\
             <prgHighAvailability>true</prgHighAvailability></processNode>"
        )
    };
    soap(
        "listProcessNode",
        &(node("imp-a-1", "imp-a-2") + &node("imp-a-2", "imp-a-1")),
    )
}

fn user_row(userid: &str, home: &str) -> String {
    format!(
        "<row><userid>{userid}</userid><mailid>{userid}@example.com</mailid>\
         <jid>{userid}@example.com</jid><homenode>{home}</homenode>\
         <intercluster>f</intercluster></row>"
    )
}

fn users_page(rows: &[String]) -> String {
    soap("executeSQLQuery", &rows.concat())
}

/// Registration answered: the event socket opens, discovery starts with `listProcessNode`.
fn registered(h: &mut Harness) {
    h.start();
    let reg = h.request("/v1/connectors/register");
    assert_eq!(reg.method, Method::Post);
    assert_eq!(reg.target, Target::Cloud);
    assert_eq!(reg.authorization.as_deref(), Some("Bearer reg-token"));
    assert_eq!(
        json_body(&reg),
        json!({"hostname": "exp-a-1", "primary": true})
    );
    h.answer(
        &reg,
        200,
        r#"{"connector_token":"conn-token","state":"registered"}"#,
    );
    assert_eq!(h.events.as_deref(), Some("conn-token"));
    assert_eq!(h.node.phase(), &Phase::Discovering);
}

/// Registered and discovered: alice and bob homed on imp-a-1, carol on imp-a-2; the users
/// reported; returns with the assignments request answered by `assigned`.
fn running(h: &mut Harness, assigned: &[&str]) {
    registered(h);
    let nodes = h.axl_request();
    h.answer(&nodes, 200, &two_nodes());
    let page = h.axl_request();
    let rows = [
        user_row("alice", "imp-a-1"),
        user_row("bob", "imp-a-1"),
        user_row("carol", "imp-a-2"),
    ];
    h.answer(&page, 200, &users_page(&rows));
    let report = h.request("/v1/connectors/users");
    h.answer(&report, 200, "{}");
    let a = h.request("/v1/connectors/assignments");
    h.answer(&a, 200, &json!({ "users": assigned }).to_string());
    h.node_up("imp-a-1");
    h.node_up("imp-a-2");
}

/// Answers the presence query of `users` with "active `ago` before now".
fn presence_answered(h: &mut Harness, users: &[&str], ago: Duration) {
    let q = h.request("/v1/presence/query");
    assert_eq!(json_body(&q), json!({ "emails": users }));
    let active_ms = (h.now.saturating_sub(ago)).as_millis() as u64;
    let states: Vec<Value> = users
        .iter()
        .map(|u| json!({"email": u, "last_active_ms": active_ms}))
        .collect();
    h.answer(&q, 200, &json!({ "states": states }).to_string());
}

/// Checks that `iq` asks `node` to `action` the session of `user`, and returns its id.
fn session_iq(iq: &connector::proto::xml::Element, node: &str, action: &str, user: &str) -> String {
    assert_eq!(iq.name, "iq");
    assert_eq!(iq.attr("type"), Some("set"));
    assert_eq!(iq.attr("from"), Some("hm.exp-a-1"));
    assert_eq!(iq.attr("to"), Some(node));
    let s = iq.child("session", SESSION_NS).expect("a session payload");
    assert_eq!(s.attr("action"), Some(action));
    assert_eq!(s.attr("jid"), Some(format!("{user}/hm-webex").as_str()));
    iq.attr("id").expect("an id").to_string()
}

/// Alice, assigned and active a minute ago, gets her session on imp-a-1 (answered).
fn alice_open(h: &mut Harness) {
    running(h, &[ALICE]);
    presence_answered(h, &[ALICE], secs(60));
    let iq = h.stanza_to("imp-a-1");
    let id = session_iq(&iq, "imp-a-1", "start", ALICE);
    h.stanza(
        "imp-a-1",
        &format!("<iq type='result' id='{id}' from='imp-a-1' to='hm.exp-a-1'/>"),
    );
}

fn settings() -> NodeSettings {
    NodeSettings::single_node(Some("reg-token".into()))
}

#[test]
fn registration_sends_the_token_and_opens_the_event_socket() {
    let mut h = Harness::new(settings());
    registered(&mut h);
    let nodes = h.axl_request();
    assert_eq!(nodes.path, "/axl/");
    assert_eq!(nodes.method, Method::Post);
    assert_eq!(
        nodes.target,
        Target::Axl {
            host: "imp-a-1".into()
        }
    );
    // axl:axl-pw in base64 (RFC 7617).
    assert_eq!(
        nodes.authorization.as_deref(),
        Some("Basic YXhsOmF4bC1wdw==")
    );
    assert!(text_body(&nodes).contains("<ns:listProcessNode>"));
    // Heartbeats start with the token, every 30 s, on the control lane.
    assert!(h.step(h.now));
    let hb = h.request("/v1/connectors/heartbeat");
    assert_eq!(hb.authorization.as_deref(), Some("Bearer conn-token"));
    assert_eq!(hb.lane, u64::MAX);
    h.answer(&hb, 200, r#"{"state":"registered"}"#);
    h.run_until(secs(29));
    assert!(h.http.iter().all(|r| r.path != "/v1/connectors/heartbeat"));
    h.run_until(secs(30));
    h.request("/v1/connectors/heartbeat");
}

#[test]
fn a_refused_registration_is_retried_after_a_backoff() {
    let mut h = Harness::new(settings());
    h.start();
    let reg = h.request("/v1/connectors/register");
    h.answer(&reg, 401, r#"{"error":"unauthorized"}"#);
    assert!(h.http.is_empty());
    assert_eq!(h.node.phase(), &Phase::Registering);
    // RETRY_MIN is 1 s, jittered to 50-150 %.
    h.run_until(secs(2));
    let again = h.request("/v1/connectors/register");
    assert!(h.now >= Duration::from_millis(500));
    assert_eq!(again.authorization.as_deref(), Some("Bearer reg-token"));
}

#[test]
fn discovery_pages_users_250_at_a_time() {
    let mut h = Harness::new(settings());
    registered(&mut h);
    let nodes = h.axl_request();
    h.answer(&nodes, 200, &two_nodes());
    let first = h.axl_request();
    assert!(
        text_body(&first).contains("SELECT SKIP 0 FIRST 250 "),
        "{}",
        text_body(&first)
    );
    let full: Vec<String> = (0..250)
        .map(|i| user_row(&format!("user{i:03}"), "imp-a-1"))
        .collect();
    h.answer(&first, 200, &users_page(&full));
    let second = h.axl_request();
    assert!(text_body(&second).contains("SELECT SKIP 250 FIRST 250 "));
    let rest: Vec<String> = (250..253)
        .map(|i| user_row(&format!("user{i:03}"), "imp-a-2"))
        .collect();
    h.answer(&second, 200, &users_page(&rest));
    // A short page ends discovery: links to both nodes, and the 253 users reported.
    assert_eq!(h.node.phase(), &Phase::Running);
    assert_eq!(
        h.links,
        Some(vec!["imp-a-1".to_string(), "imp-a-2".to_string()])
    );
    let report = h.request("/v1/connectors/users");
    let add = json_body(&report)["add"].as_array().expect("add").clone();
    assert_eq!(add.len(), 253);
    assert_eq!(
        add[0],
        json!({"email": "user000@example.com", "imp_cluster": "imp-a"})
    );
    assert_eq!(
        add[252],
        json!({"email": "user252@example.com", "imp_cluster": "imp-a"})
    );
    assert!(
        h.http
            .iter()
            .all(|r| !matches!(r.target, Target::Axl { .. }))
    );
}

#[test]
fn assigned_users_are_polled_for_presence_and_an_active_one_gets_a_session() {
    let mut h = Harness::new(settings());
    running(&mut h, &[ALICE, CAROL]);
    // Carol never used Webex: she gets a session too, for her Webex-derived device presence
    // ("HM users who never use Webex still get Webex-derived device presence", spec 55).
    let q = h.request("/v1/presence/query");
    assert_eq!(json_body(&q), json!({ "emails": [ALICE, CAROL] }));
    let now_ms = h.now.as_millis() as u64;
    let body = json!({"states": [
        {"email": ALICE, "last_active_ms": now_ms},
        {"email": CAROL},
    ]});
    h.answer(&q, 200, &body.to_string());
    let iq = h.stanza_to("imp-a-1");
    let id = session_iq(&iq, "imp-a-1", "start", ALICE);
    let iq = h.stanza_to("imp-a-2");
    session_iq(&iq, "imp-a-2", "start", CAROL);
    assert!(
        h.stanzas.is_empty(),
        "alice and carol only: {:?}",
        h.stanzas
    );
    h.stanza(
        "imp-a-1",
        &format!("<iq type='result' id='{id}' from='imp-a-1'/>"),
    );
    // Once open, her presence is published from the session: Available, status text set.
    let pres = h.stanza_to("imp-a-1");
    assert_eq!(pres.name, "presence");
    assert_eq!(pres.attr("from"), Some("alice@example.com/hm-webex"));
    assert_eq!(pres.attr("type"), None);
    // An assignment event adds bob; removing alice releases her session (handover).
    h.event(r#"{"type":"assignment","connector_id":"exp-a-1","added":["bob@example.com"],"removed":[]}"#);
    let q = h.request("/v1/presence/query");
    assert_eq!(json_body(&q), json!({ "emails": [BOB] }));
    assert!(h.node.assigned().contains(BOB));
}

#[test]
fn a_session_closes_once_the_user_is_inactive_for_72_hours() {
    let mut h = Harness::new(settings());
    alice_open(&mut h);
    h.stanzas.clear();
    // Presence is polled every 10 minutes; at the first poll after 72 h of inactivity the
    // session is stopped.
    let last_active = h.now.saturating_sub(secs(60)).as_millis() as u64;
    let mut stopped = None;
    while stopped.is_none() && h.now < secs(73 * 3600) {
        let next = h.node.poll_timeout(h.now).expect("a timer");
        h.run_until(next);
        h.answer_routine();
        while let Some(q) = h.http.iter().position(|r| r.path == "/v1/presence/query") {
            let q = h.http.remove(q).expect("present");
            let st = json!({"states": [{"email": ALICE, "last_active_ms": last_active}]});
            h.answer(&q, 200, &st.to_string());
        }
        stopped = h.stanzas.iter().position(|(_, s)| s.name == "iq");
    }
    let (node, iq) = h.stanzas.remove(stopped.expect("a stop")).expect("present");
    assert_eq!(node, "imp-a-1");
    session_iq(&iq, "imp-a-1", "stop", ALICE);
    let inactive_for = h.now - Duration::from_millis(last_active);
    assert!(inactive_for > secs(72 * 3600), "{inactive_for:?}");
    assert!(inactive_for <= secs(72 * 3600 + 600), "{inactive_for:?}");
}

/// An independent AES-256-GCM JWE (`dir`, `A256GCM`, AAD = the encoded header), written from
/// RFC 7516 and docs/protocols.md, not with the connector's codec.
fn jwe_encrypt(text: &str, iv: [u8; 12]) -> String {
    let header = B64URL.encode(format!(
        r#"{{"alg":"dir","enc":"A256GCM","kid":"{KEY_URI}"}}"#
    ));
    let cipher = Aes256Gcm::new_from_slice(&KEY).expect("32 bytes");
    let payload = Payload {
        msg: text.as_bytes(),
        aad: header.as_bytes(),
    };
    let sealed = cipher.encrypt(&Nonce::from(iv), payload).expect("encrypts");
    let (ct, tag) = sealed.split_at(sealed.len() - 16);
    format!(
        "{header}..{}.{}.{}",
        B64URL.encode(iv),
        B64URL.encode(ct),
        B64URL.encode(tag)
    )
}

fn jwe_decrypt(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 5, "{token}");
    let header: Value =
        serde_json::from_slice(&B64URL.decode(parts[0]).expect("b64")).expect("json");
    assert_eq!(
        header,
        json!({"alg": "dir", "enc": "A256GCM", "kid": KEY_URI})
    );
    assert_eq!(parts[1], "", "dir: no encrypted key");
    let iv: [u8; 12] = B64URL
        .decode(parts[2])
        .expect("iv")
        .try_into()
        .expect("96-bit IV");
    let mut sealed = B64URL.decode(parts[3]).expect("ct");
    sealed.extend(B64URL.decode(parts[4]).expect("tag"));
    let cipher = Aes256Gcm::new_from_slice(&KEY).expect("32 bytes");
    let payload = Payload {
        msg: &sealed,
        aad: parts[0].as_bytes(),
    };
    let plain = cipher
        .decrypt(&Nonce::from(iv), payload)
        .expect("authentic");
    String::from_utf8(plain).expect("UTF-8")
}

fn key_answer() -> String {
    json!({"uri": KEY_URI, "key": B64URL.encode(KEY)}).to_string()
}

#[test]
fn a_jabber_message_becomes_an_encrypted_webex_post() {
    let mut h = Harness::new(settings());
    alice_open(&mut h);
    h.stanzas.clear();
    // Bob writes from Jabber to alice; IM&P routes it to alice's connector session.
    h.stanza(
        "imp-a-1",
        "<message type='chat' id='m-1' from='bob@example.com/jabber' \
         to='alice@example.com/hm-webex'><body>hi &lt;alice&gt;</body></message>",
    );
    let space = h.request("/v1/spaces");
    assert_eq!(
        json_body(&space),
        json!({"kind": "direct", "members": [ALICE, BOB]})
    );
    let sp =
        json!({"space_id": "sp-1", "key_uri": KEY_URI, "members": [ALICE, BOB], "created": true});
    h.answer(&space, 200, &sp.to_string());
    let key = h.request("/v1/kms/keys");
    assert_eq!(json_body(&key), json!({ "uri": KEY_URI }));
    h.answer(&key, 200, &key_answer());
    let post = h.request("/v1/spaces/sp-1/activities");
    assert_eq!(post.authorization.as_deref(), Some("Bearer conn-token"));
    let body = json_body(&post);
    assert_eq!(body["verb"], "post");
    assert_eq!(body["actor"], BOB);
    assert_eq!(body["client_id"], "xmpp:bob@example.com:m-1:0");
    assert_eq!(
        jwe_decrypt(body["encrypted_text"].as_str().expect("JWE")),
        "hi <alice>"
    );
    h.answer(&post, 200, r#"{"activities":[{"id":"act-9"}]}"#);
    assert_eq!(h.node.stats().to_webex, 1);
    // A stanza written by a connector session is never bridged again.
    h.stanza(
        "imp-a-1",
        "<message type='chat' id='m-2' from='alice@example.com/hm-webex' \
         to='bob@example.com'><body>echo</body></message>",
    );
    assert!(
        h.http
            .iter()
            .all(|r| r.path != "/v1/spaces/sp-1/activities")
    );
    assert_eq!(h.node.stats().not_bridged, 1);
}

/// Bob writes `id` from Jabber to alice; IM&P routes it to alice's connector session.
fn bob_writes(h: &mut Harness, id: &str) {
    h.stanza(
        "imp-a-1",
        &format!(
            "<message type='chat' id='{id}' from='bob@example.com/jabber' \
             to='alice@example.com/hm-webex'><body>{id}</body></message>"
        ),
    );
}

/// Requests to `path` waiting, left in place.
fn count(h: &Harness, path: &str) -> usize {
    h.http.iter().filter(|r| r.path == path).count()
}

/// The space alice and bob share, as the cloud answers `POST /v1/spaces`.
fn alice_bob_space() -> String {
    json!({"space_id": "sp-1", "key_uri": KEY_URI, "members": [ALICE, BOB], "created": false})
        .to_string()
}

/// One fetch of a conversation's space at a time, whether on its way or waiting for its
/// retry: the next message of the conversation queues behind it instead of asking again. Each
/// extra request failed too and added a retry of its own, all counting failures on the one
/// backoff (explore seed 51: 14 failures in a cloud outage of 1m43s, so a backoff of a minute
/// and three retries waiting at once).
#[test]
fn a_conversation_waiting_for_its_space_asks_for_it_once_at_a_time() {
    let mut h = Harness::new(settings());
    alice_open(&mut h);
    h.stanzas.clear();
    bob_writes(&mut h, "m-1");
    let space = h.request("/v1/spaces");
    h.answer(&space, 503, r#"{"error":"unavailable"}"#);
    bob_writes(&mut h, "m-2");
    assert_eq!(count(&h, "/v1/spaces"), 0, "asked again before its retry");
    let end = h.now + secs(5);
    while count(&h, "/v1/spaces") == 0 && h.step(end) {}
    assert_eq!(count(&h, "/v1/spaces"), 1);
    let space = h.request("/v1/spaces");
    h.answer(&space, 200, &alice_bob_space());
    let key = h.request("/v1/kms/keys");
    h.answer(&key, 200, &key_answer());
    // The queued posts go in order, one on its way at a time.
    let mut posts = Vec::new();
    while let Some(at) = h
        .http
        .iter()
        .position(|r| r.path == "/v1/spaces/sp-1/activities")
    {
        let post = h.http.remove(at).expect("a post");
        assert_eq!(
            count(&h, "/v1/spaces/sp-1/activities"),
            0,
            "two on their way"
        );
        let id = json_body(&post)["client_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        posts.push(id);
        h.answer(&post, 200, "{}");
    }
    assert_eq!(
        posts,
        ["xmpp:bob@example.com:m-1:0", "xmpp:bob@example.com:m-2:0"]
    );
    assert_eq!(count(&h, "/v1/spaces"), 0);
}

/// After a cloud outage the cloud moved alice away and refused this node her conversation's
/// space ("serves no member"); when it assigns her here again, the messages this node holds
/// for the conversation go now, not after a backoff grown during the outage: meanwhile
/// another node serving the conversation posts its next message first (explore seed 51,
/// `per_conversation_order`: the backlog waited 10 s after the users came back).
#[test]
fn a_user_assigned_again_gets_the_space_asked_for_at_once() {
    let mut h = Harness::new(settings());
    alice_open(&mut h);
    h.stanzas.clear();
    bob_writes(&mut h, "m-1");
    for _ in 0..6 {
        let space = h.request("/v1/spaces");
        h.answer(&space, 503, r#"{"error":"unavailable"}"#);
        let end = h.now + secs(120);
        while count(&h, "/v1/spaces") == 0 && h.step(end) {}
        h.answer_routine();
    }
    h.event(r#"{"type":"assignment","connector_id":"exp-a-1","added":[],"removed":["alice@example.com"]}"#);
    let space = h.request("/v1/spaces");
    h.answer(
        &space,
        403,
        r#"{"error":"forbidden","detail":"forbidden: exp-a-1 serves no member"}"#,
    );
    assert_eq!(count(&h, "/v1/spaces"), 0);
    h.event(r#"{"type":"assignment","connector_id":"exp-a-1","added":["alice@example.com"],"removed":[]}"#);
    let space = h.request("/v1/spaces");
    h.answer(&space, 200, &alice_bob_space());
    let key = h.request("/v1/kms/keys");
    h.answer(&key, 200, &key_answer());
    let post = h.request("/v1/spaces/sp-1/activities");
    assert_eq!(json_body(&post)["client_id"], "xmpp:bob@example.com:m-1:0");
}

/// Fails the space fetch `times` times the way `fail` says, each retry awaited (heartbeats
/// left unanswered: the cloud is away), and returns when the last retry is due.
fn space_fails(h: &mut Harness, times: usize, fail: impl Fn(&mut Harness, &HttpRequest)) {
    for _ in 0..times {
        let space = h.request("/v1/spaces");
        fail(h, &space);
        let end = h.now + secs(300);
        while count(h, "/v1/spaces") == 0 && h.step(end) {}
    }
    let space = h.request("/v1/spaces");
    fail(h, &space);
}

/// Answers the heartbeats waiting with 200, 100 ms from now: the cloud answers again.
fn cloud_back(h: &mut Harness) {
    h.now += Duration::from_millis(100);
    let beats: Vec<HttpRequest> = h.http.drain(..).collect();
    for r in beats
        .iter()
        .filter(|r| r.path == "/v1/connectors/heartbeat")
    {
        h.answer(r, 200, r#"{"state":"registered"}"#);
    }
}

/// Explore seed 4834 (`per_conversation_order`): in a cloud outage the space fetch of bob's
/// message fails at the transport again and again, its backoff growing. The sender's node
/// serving the conversation's other member gets the space as soon as the cloud is back and
/// posts the next message; this node's backlog must be asked for then too, not after its
/// backoff (it came 57 s after the outage, behind the next message).
#[test]
fn a_space_fetch_failed_at_the_transport_is_asked_again_once_the_cloud_answers() {
    let mut h = Harness::new(settings());
    alice_open(&mut h);
    h.stanzas.clear();
    bob_writes(&mut h, "m-1");
    space_fails(&mut h, 5, |h, r| h.fail(r, "connection refused"));
    let backoff_at = h.node.poll_timeout(h.now).expect("a retry is due");
    cloud_back(&mut h);
    assert!(backoff_at > h.now + secs(1), "the retry had a backoff");
    h.step(h.now);
    assert_eq!(count(&h, "/v1/spaces"), 1, "asked again at once");
}

/// The same fetch refused by the cloud (a KMS outage's 503) keeps its backoff when the cloud
/// answers something else: the cloud did answer it.
#[test]
fn a_space_fetch_the_cloud_refused_keeps_its_backoff_when_the_cloud_answers() {
    let mut h = Harness::new(settings());
    alice_open(&mut h);
    h.stanzas.clear();
    bob_writes(&mut h, "m-1");
    space_fails(&mut h, 5, |h, r| {
        h.answer(r, 503, r#"{"error":"kms_unavailable"}"#)
    });
    cloud_back(&mut h);
    h.step(h.now);
    assert_eq!(count(&h, "/v1/spaces"), 0, "waits its backoff");
}

/// Waits (stepping timers, heartbeats answered) until a request to `path` is sent, at most
/// `within` from now.
fn await_request(h: &mut Harness, path: &str, within: Duration) -> bool {
    let end = h.now + within;
    while count(h, path) == 0 && h.step(end) {
        h.answer_routine();
    }
    count(h, path) > 0
}

/// Explore seeds 51 and 91 (`per_conversation_order`): the conversation's space cannot be had
/// (a KMS outage) while bob's message waits here, and the other member may be served by
/// another node that sees only the conversation's newer messages. Asking again, this node
/// says since when its messages wait (it holds the conversation at the cloud); once they are
/// posted it ends the hold, in their lane, after them.
#[test]
fn a_backlog_waiting_for_a_failed_space_holds_its_conversation_until_posted() {
    let mut h = Harness::new(settings());
    alice_open(&mut h);
    h.stanzas.clear();
    bob_writes(&mut h, "m-1");
    let first = h.request("/v1/spaces");
    assert_eq!(
        json_body(&first).get("held_since_ms"),
        None,
        "no failure yet"
    );
    let failed_at = h.now;
    h.answer(&first, 503, r#"{"error":"kms_unavailable"}"#);
    bob_writes(&mut h, "m-2");
    assert!(await_request(&mut h, "/v1/spaces", secs(120)));
    let again = h.request("/v1/spaces");
    assert_eq!(
        json_body(&again)["held_since_ms"],
        json!(failed_at.as_millis() as u64)
    );
    h.answer(&again, 200, &alice_bob_space());
    let key = h.request("/v1/kms/keys");
    h.answer(&key, 200, &key_answer());
    // The lane's requests go one at a time: each is answered before the next goes.
    let mut sent: Vec<(String, Value)> = Vec::new();
    while let Some(at) = h
        .http
        .iter()
        .position(|r| r.path.starts_with("/v1/spaces/sp-1/"))
    {
        let r = h.http.remove(at).expect("a request");
        sent.push((r.path.clone(), json_body(&r)));
        h.answer(&r, 200, "{}");
    }
    let paths: Vec<&str> = sent.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1/spaces/sp-1/activities",
            "/v1/spaces/sp-1/activities",
            "/v1/spaces/sp-1/hold"
        ]
    );
    assert_eq!(sent[2].1, json!({"release": true}));
}

/// Alice's session open, Bob writes her `m-1`, the cloud gives the space: the key fetch that
/// follows, not answered yet.
fn bob_writes_and_the_space_is_had() -> (Harness, HttpRequest) {
    let mut h = Harness::new(settings());
    alice_open(&mut h);
    h.stanzas.clear();
    bob_writes(&mut h, "m-1");
    let space = h.request("/v1/spaces");
    h.answer(&space, 200, &alice_bob_space());
    let key = h.request("/v1/kms/keys");
    (h, key)
}

/// A key fetch that failed claims the conversation the same way when it is asked again.
#[test]
fn a_backlog_waiting_for_a_failed_key_holds_its_conversation() {
    let (mut h, key) = bob_writes_and_the_space_is_had();
    let (failed_at, got) = (h.now, h.now.as_millis() as u64);
    h.answer(&key, 503, r#"{"error":"kms_unavailable"}"#);
    assert!(await_request(&mut h, "/v1/kms/keys", secs(120)));
    let again = h.request("/v1/kms/keys");
    let unposted = json!([{"client_id": "xmpp:bob@example.com:m-1:0", "got_ms": got}]);
    assert_eq!(
        json_body(&again)["held"],
        json!({"space_id": "sp-1", "since_ms": failed_at.as_millis() as u64,
            "unposted": unposted})
    );
}

/// The conversation's holder may lack a message that only this node has (its member's
/// session saw it; `cloud-outage-two-nodes-order-post-retry` `--seed 19`: exp-a-1 held the
/// conversation, lacked message 14 and posted 15 and 16 before exp-a-2's 14). A post carries
/// when the node got its message from IM&P, and a post refused for a hold declares, once, the
/// conversation's messages this node has not posted yet (a claim without `since_ms`), so that
/// the cloud lets this one in before the holder's newer ones.
#[test]
fn a_post_refused_for_a_hold_declares_the_messages_not_posted_yet() {
    const POSTS: &str = "/v1/spaces/sp-1/activities";
    const CLAIMS: &str = "/v1/connectors/claims";
    let (mut h, key) = bob_writes_and_the_space_is_had();
    let got1 = h.now.as_millis() as u64;
    h.answer(&key, 200, &key_answer());
    let post = h.request(POSTS);
    assert_eq!(json_body(&post)["got_ms"], json!(got1));
    h.now += secs(1);
    bob_writes(&mut h, "m-2");
    let got2 = h.now.as_millis() as u64;
    assert_eq!(count(&h, POSTS), 0, "m-2 waits its turn in the lane");
    let refused =
        r#"{"error":"conflict","detail":"conflict: earlier messages of sp-1 are held by exp-a-2"}"#;
    h.answer(&post, 409, refused);
    let claim = h.request(CLAIMS);
    let unposted = json!([
        {"client_id": "xmpp:bob@example.com:m-1:0", "got_ms": got1},
        {"client_id": "xmpp:bob@example.com:m-2:0", "got_ms": got2},
    ]);
    assert_eq!(
        json_body(&claim),
        json!({"claims": [{"space_id": "sp-1", "unposted": unposted}]})
    );
    h.answer(&claim, 200, r#"{"held":[]}"#);
    // Refused again: declared already.
    assert!(await_request(&mut h, POSTS, secs(10)));
    let post = h.request(POSTS);
    assert_eq!(json_body(&post)["client_id"], "xmpp:bob@example.com:m-1:0");
    h.answer(&post, 409, refused);
    assert!(await_request(&mut h, POSTS, secs(10)));
    assert_eq!(count(&h, CLAIMS), 0);
}

/// The cloud refuses a post (409) while another node holds earlier messages of its
/// conversation: the post waits for them, sent again every few seconds for as long as the
/// cloud's hold lasts, and is not given up after the sends a failing post gets
/// (`POST_ATTEMPTS_MAX`): that would lose the message.
#[test]
fn a_post_refused_while_another_node_holds_its_conversation_waits_and_is_not_lost() {
    let (mut h, key) = bob_writes_and_the_space_is_had();
    h.answer(&key, 200, &key_answer());
    const POSTS: &str = "/v1/spaces/sp-1/activities";
    let refused =
        r#"{"error":"conflict","detail":"conflict: earlier messages of sp-1 are held by exp-a-2"}"#;
    let start = h.now;
    for n in 0..40 {
        assert!(
            await_request(&mut h, POSTS, secs(60)),
            "refusal {n}: not sent again"
        );
        let post = h.request(POSTS);
        assert_eq!(json_body(&post)["client_id"], "xmpp:bob@example.com:m-1:0");
        h.answer(&post, 409, refused);
    }
    assert!(
        h.now - start <= secs(200),
        "40 refusals took {:?}: the waits grew like a failure's backoff",
        h.now - start
    );
    assert!(await_request(&mut h, POSTS, secs(60)));
    let post = h.request(POSTS);
    h.answer(&post, 201, r#"{"activities":[],"duplicate":false}"#);
    assert_eq!(h.node.stats().held_by_peer, 40);
}

/// An activity event as the cloud sends it to alice's connector.
fn alice_posted(id: &str, ciphertext: &str) -> String {
    json!({"type": "activity", "for_user": ALICE, "activity": {
        "id": id, "space_id": "sp-1", "seq": 1, "verb": "post", "actor": ALICE,
        "encrypted_text": ciphertext, "kid": KEY_URI, "target": null, "target_verb": null,
        "target_encrypted_text": null, "edit_of": null, "client_id": null,
        "via_connector": null, "published_ms": 0,
    }})
    .to_string()
}

/// Alice's Webex post reaches the connector; its space members are fetched.
fn alice_posts(h: &mut Harness) {
    let ct = jwe_encrypt("hello from Webex", [9; 12]);
    h.event(&alice_posted("act-1", &ct));
    let info = h.request("/v1/spaces/sp-1");
    assert_eq!(info.method, Method::Get);
    let members = json!({"key_uri": KEY_URI, "members": [ALICE, BOB]});
    h.answer(&info, 200, &members.to_string());
}

/// A drain (maintenance mode, spec 29) moves alice to another node; until it opens her
/// session there, IM&P still gives her Jabber carbons to the session handed over from here.
/// Her message to carol (served elsewhere, her Webex use unknown here) is still bridged as
/// alice's own copy: it must not wait on carol's Webex activity, which only the recipient's
/// copy does (cloud-faults seed 16 lost such a message sent 31 ms into the drain).
#[test]
fn a_carbon_reaching_a_handed_over_session_is_still_bridged() {
    let mut h = Harness::new(settings());
    alice_open(&mut h);
    h.stanzas.clear();
    h.event(r#"{"type":"assignment","connector_id":"exp-a-1","added":[],"removed":["alice@example.com"]}"#);
    assert!(!h.node.assigned().contains(ALICE));
    h.stanza(
        "imp-a-1",
        "<message from='alice@example.com' to='alice@example.com/hm-webex'>\
         <sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>\
         <message type='chat' id='c-1' from='alice@example.com/jabber' to='carol@example.com'>\
         <body>sent as the drain began</body></message></forwarded></sent></message>",
    );
    let space = h.request("/v1/spaces");
    assert_eq!(
        json_body(&space),
        json!({"kind": "direct", "members": [ALICE, CAROL]})
    );
    assert_eq!(h.node.stats().not_bridged, 0);
}

#[test]
fn a_webex_post_is_decrypted_and_sent_to_jabber_from_the_users_session() {
    let mut h = Harness::new(settings());
    alice_open(&mut h);
    h.stanzas.clear();
    alice_posts(&mut h);
    let key = h.request("/v1/kms/keys");
    h.answer(&key, 200, &key_answer());
    let msg = h.stanza_to("imp-a-1");
    assert_eq!(msg.name, "message");
    assert_eq!(msg.attr("type"), Some("chat"));
    assert_eq!(msg.attr("from"), Some("alice@example.com/hm-webex"));
    assert_eq!(msg.attr("to"), Some(BOB));
    let body = msg.elements().find(|e| e.name == "body").expect("a body");
    assert_eq!(body.text(), "hello from Webex");
    assert_eq!(h.node.stats().to_jabber, 1);
    // The same activity again (a redelivery) is not sent twice.
    let ct = jwe_encrypt("hello from Webex", [9; 12]);
    h.event(&alice_posted("act-1", &ct));
    assert!(h.stanzas.is_empty());
    assert_eq!(h.node.stats().duplicate_events, 1);
}

#[test]
fn a_lost_node_moves_its_sessions_to_the_prg_peer_within_the_detection_delay() {
    let mut h = Harness::new(settings());
    alice_open(&mut h);
    h.stanzas.clear();
    let lost_at = h.now;
    h.node_down("imp-a-1");
    // The detection delay is at most 60 s here (spec 62 allows up to 15 min by default).
    let mut moved = None;
    while moved.is_none() && h.now <= lost_at + secs(61) {
        let next = h.node.poll_timeout(h.now).expect("a timer");
        h.run_until(next);
        h.answer_routine();
        moved = h.stanzas.iter().position(|(n, _)| n == "imp-a-2");
    }
    let (_, iq) = h.stanzas.remove(moved.expect("a move")).expect("present");
    session_iq(&iq, "imp-a-2", "start", ALICE);
    assert!(h.now - lost_at <= secs(60), "{:?}", h.now - lost_at);
    let page = h.node.status_page(h.now);
    let a1 = page
        .nodes
        .iter()
        .find(|n| n.node == "imp-a-1")
        .expect("listed");
    assert_eq!(format!("{:?}", a1.status), "Outage");
}

#[test]
fn an_activity_whose_user_moved_away_is_handed_back_to_the_cloud() {
    let mut h = Harness::new(settings());
    alice_open(&mut h);
    h.stanzas.clear();
    alice_posts(&mut h);
    let key = h.request("/v1/kms/keys");
    // A drain moves alice to another node while her key is fetched.
    h.event(r#"{"type":"assignment","connector_id":"exp-a-1","added":[],"removed":["alice@example.com"]}"#);
    h.run_until(h.now + secs(61)); // the handover of her session ends
    h.answer_routine();
    h.stanzas.clear();
    h.answer(&key, 200, &key_answer());
    let back = h.request("/v1/events/redeliver");
    assert_eq!(
        json_body(&back),
        json!({"space_id": "sp-1", "activity_id": "act-1", "for_user": ALICE})
    );
    assert!(h.stanzas.iter().all(|(_, s)| s.name != "message"));
    h.answer(
        &back,
        202,
        r#"{"activity_id":"act-1","redeliveries":1,"to":"exp-a-2"}"#,
    );
    let st = h.node.stats();
    assert_eq!((st.handed_back, st.to_jabber), (1, 0));
}

#[test]
fn after_a_failover_the_peer_giving_users_back_moves_them_home() {
    let mut h = Harness::new(settings());
    alice_open(&mut h);
    h.stanzas.clear();
    h.node_down("imp-a-1");
    h.run_until(h.now + secs(61));
    h.answer_routine();
    let (_, iq) = h.stanzas.pop_front().expect("moved to the peer");
    let id = session_iq(&iq, "imp-a-2", "start", ALICE);
    h.stanza(
        "imp-a-2",
        &format!("<iq type='result' id='{id}' from='imp-a-2'/>"),
    );
    h.stanzas.clear();
    // imp-a-1 is back, but the PRG keeps its users on the peer until it gives them back.
    h.node_up("imp-a-1");
    h.run_until(h.now + secs(61));
    h.answer_routine();
    assert!(
        h.stanzas.iter().all(|(n, _)| n != "imp-a-1"),
        "{:?}",
        h.stanzas
    );
    // The peer ends her session with see-other-host (the PRG's fallback): acknowledged, and
    // within the detection delay she is opened on imp-a-1 again.
    h.stanza(
        "imp-a-2",
        "<iq type='set' id='f-1' from='imp-a-2' to='hm.exp-a-1'><session \
         xmlns='urn:hmsim:hybrid-session:0' action='stop' jid='alice@example.com/hm-webex' \
         reason='see-other-host'/></iq>",
    );
    let ack = h.stanza_to("imp-a-2");
    assert_eq!(
        (ack.attr("type"), ack.attr("id")),
        (Some("result"), Some("f-1"))
    );
    let back_at = h.now;
    h.run_until(h.now + secs(61));
    h.answer_routine();
    let home = h.stanza_to("imp-a-1");
    session_iq(&home, "imp-a-1", "start", ALICE);
    assert!(h.now - back_at <= secs(61));
}

#[test]
fn a_peers_error_body_cannot_forge_a_status_line() {
    let mut h = Harness::new(settings());
    h.start();
    let reg = h.request("/v1/connectors/register");
    let forged = "denied\n2026-12-06T12:00:00Z  INFO connector status phase=running\r\x1b[2K";
    h.answer(&reg, 401, forged);
    let shown = h.node.status_page(h.now).connectivity;
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    assert!(
        shown.starts_with("HTTP 401: denied\\n2026-12-06"),
        "{shown}"
    );
}

/// The host an AXL request goes to.
fn axl_host(r: &connector::core::node::HttpRequest) -> String {
    match &r.target {
        Target::Axl { host } => host.clone(),
        other => panic!("not an AXL request: {other:?}"),
    }
}

/// Cluster imp-b's publisher is down (spec 22: "The Message Connector cannot discover IM and
/// Presence nodes when the AXL service is not running on the nodes"): cluster imp-a's nodes
/// and users are discovered and reported all the same (explore seed 289: nobody was, for
/// good), and imp-b's join when its publisher answers again.
#[test]
fn a_cluster_whose_publisher_is_down_does_not_hold_back_the_others() {
    let mut s = settings();
    let mut b = s.cluster.publishers[0].clone();
    b.cluster = "imp-b".into();
    b.host = "imp-b-1".into();
    s.cluster.publishers.push(b);
    let mut h = Harness::new(s);
    registered(&mut h);
    let (first, second) = (h.axl_request(), h.axl_request());
    let (a, b) = if axl_host(&first) == "imp-a-1" {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(axl_host(&b), "imp-b-1");
    h.answer(&b, 503, "<html>503 Service Unavailable</html>");
    h.answer(&a, 200, &two_nodes());
    let page = h.axl_request();
    h.answer(&page, 200, &users_page(&[user_row("alice", "imp-a-1")]));
    let report = h.request("/v1/connectors/users");
    let add = |r: &connector::core::node::HttpRequest| json_body(r)["add"].clone();
    assert_eq!(
        add(&report),
        json!([{"email": ALICE, "imp_cluster": "imp-a"}])
    );
    h.answer(&report, 200, "{}");
    assert_eq!(h.node.phase(), &Phase::Running);
    // Only imp-b is asked again; its users join the report.
    h.run_until(h.now + secs(300));
    let again = h.axl_request();
    assert_eq!(axl_host(&again), "imp-b-1");
    let node_b = "<processNode><name>imp-b-1</name><processNodeRole>CUCM IM and Presence\
                  </processNodeRole><version>15.0.1</version></processNode>";
    h.answer(&again, 200, &soap("listProcessNode", node_b));
    let page = h.axl_request();
    h.answer(&page, 200, &users_page(&[user_row("bob", "imp-b-1")]));
    assert!(
        !h.http
            .iter()
            .any(|r| matches!(r.target, Target::Axl { .. })),
        "imp-a is not discovered again"
    );
    let report = h.request("/v1/connectors/users");
    let reported = add(&report).to_string();
    assert!(
        reported.contains(BOB) && reported.contains("imp-b"),
        "{reported}"
    );
}

#[test]
fn a_refused_axl_login_is_not_shown_as_a_cloud_fault() {
    let mut h = Harness::new(settings());
    registered(&mut h);
    let nodes = h.axl_request();
    h.answer(&nodes, 401, "<html>401 Unauthorized</html>");
    assert_eq!(h.node.status_page(h.now).connectivity, "Operational");
    let fault = h.node.axl_fault().expect("the AXL fault is kept");
    assert!(
        fault.contains("imp-a-1") && fault.contains("HTTP 401"),
        "{fault}"
    );
    // Discovery answered again: the fault is cleared.
    h.run_until(h.now + secs(2));
    let again = h.axl_request();
    h.answer(&again, 200, &two_nodes());
    assert_eq!(h.node.axl_fault(), None);
}

#[test]
fn a_jwe_with_a_bad_tag_is_counted_and_not_delivered() {
    let mut h = Harness::new(settings());
    alice_open(&mut h);
    h.stanzas.clear();
    let good = jwe_encrypt("hello", [3; 12]);
    let (rest, tag) = good.rsplit_once('.').expect("five segments");
    let mut tag = B64URL.decode(tag).expect("b64");
    tag[0] ^= 1;
    let bad = format!("{rest}.{}", B64URL.encode(tag));
    h.event(&alice_posted("act-7", &bad));
    let info = h.request("/v1/spaces/sp-1");
    let members = json!({"key_uri": KEY_URI, "members": [ALICE, BOB]});
    h.answer(&info, 200, &members.to_string());
    let key = h.request("/v1/kms/keys");
    h.answer(&key, 200, &key_answer());
    assert!(h.stanzas.is_empty(), "{:?}", h.stanzas);
    assert_eq!(h.node.stats().undecryptable, 1);
}

/// Found by `fuzz::no_cloud_or_axl_answer_panics_the_node`: a 200 whose body held no
/// connector token left the node registering forever, with no request out and no timer.
#[test]
fn a_registration_answer_without_a_token_is_retried() {
    let mut h = Harness::new(settings());
    h.start();
    let reg = h.request("/v1/connectors/register");
    h.answer(&reg, 200, "<html>captive portal</html>");
    assert_eq!(h.node.phase(), &Phase::Registering);
    assert!(h.node.cloud_fault().is_some_and(|f| f.contains("token")));
    h.run_until(secs(2));
    h.request("/v1/connectors/register");
}

/// Disabling closes every session (spec 21); enabling again must bring back the sessions of
/// the users still assigned to the node, and the node must be running again, not left
/// registering: it keeps its connector token, so no registration answer ever comes (found by
/// `hmsim explore`: liveness failed after a `connector_disable`).
#[test]
fn enabled_again_the_node_runs_and_reopens_the_sessions_of_its_assigned_users() {
    let mut h = Harness::new(settings());
    alice_open(&mut h);
    h.stanzas.clear();
    h.node.set_enabled(false, h.now);
    h.drain();
    assert_eq!(h.node.phase(), &Phase::Disabled);
    let stop = h.stanza_to("imp-a-1");
    let id = session_iq(&stop, "imp-a-1", "stop", ALICE);
    h.stanza(
        "imp-a-1",
        &format!("<iq type='result' id='{id}' from='imp-a-1' to='hm.exp-a-1'/>"),
    );
    assert!(h.node.assigned().contains(ALICE), "still assigned here");

    h.run_until(h.now + secs(20));
    h.answer_routine();
    h.http.retain(|r| r.path != "/v1/presence/query");
    h.node.set_enabled(true, h.now);
    h.drain();
    assert_eq!(h.node.phase(), &Phase::Running);
    assert!(
        h.http.iter().all(|r| r.path != "/v1/connectors/register"),
        "no second registration: {:?}",
        h.http
    );
    // Her presence is asked for again, and as she is active her session is opened again.
    let next = h.node.poll_timeout(h.now).expect("a timer");
    h.run_until(next);
    h.answer_routine();
    presence_answered(&mut h, &[ALICE], secs(60));
    let start = h.stanza_to("imp-a-1");
    let id = session_iq(&start, "imp-a-1", "start", ALICE);
    h.stanza(
        "imp-a-1",
        &format!("<iq type='result' id='{id}' from='imp-a-1' to='hm.exp-a-1'/>"),
    );
    // Open again, her presence is published again from the session.
    let pres = h.stanza_to("imp-a-1");
    assert_eq!(pres.name, "presence");
    assert_eq!(pres.attr("from"), Some("alice@example.com/hm-webex"));
}

/// The status page counts a user active when they used Webex App with Jabber within 72 h
/// (spec 70; the guide: "Users are considered Active if, within the 72 hours leading up to
/// now, they have used Webex App to read or write messages to or from Cisco Jabber"). A
/// node that restarts, or is newly given the user, never saw that use: the cloud, which
/// bridged it, answers it on the presence query (`last_interop_ms`), and the node counts it
/// (explore seed 66: after a restart an active user counted as not active for 72 h).
#[test]
fn a_node_given_a_user_learns_their_last_use_with_jabber_from_the_presence_answer() {
    let mut h = Harness::new(settings());
    running(&mut h, &[ALICE, BOB, CAROL]);
    let q = h.request("/v1/presence/query");
    let now_ms = h.now.as_millis() as u64;
    let body = json!({"states": [
        // Used Webex with Jabber a minute before the node was given her: active.
        {"email": ALICE, "last_active_ms": now_ms, "last_interop_ms": now_ms.saturating_sub(60_000)},
        // Active on Webex, never with Jabber: not active on the page.
        {"email": BOB, "last_active_ms": now_ms},
        {"email": CAROL},
    ]});
    h.answer(&q, 200, &body.to_string());
    let page = h.node.status_page(h.now);
    assert_eq!((page.enabled, page.active, page.inactive), (3, 1, 2));
}

/// Explore seed 26232: exp-a-2 was cut off from the cloud when Control Hub put it in
/// maintenance mode, so it never heard that its users moved to exp-a-1; exp-a-1's sessions took
/// them over on IM&P (exp-a-2's ended `taken-over`). When maintenance mode ended the cloud gave
/// four of them back to exp-a-2, still cut off; its resync after the partition found them
/// assigned as before, changed nothing, and they had no session until its next presence poll
/// (10 minutes). A resync now asks again for every user still assigned whose session was
/// taken over, as an assignment would.
#[test]
fn a_resync_reopens_a_session_taken_over_while_the_user_stayed_assigned_here() {
    let mut h = Harness::new(settings());
    alice_open(&mut h);
    h.stanzas.clear();
    // Another connector node opened her session: IM&P ended this one.
    h.stanza(
        "imp-a-1",
        "<iq type='set' id='t-1' from='imp-a-1' to='hm.exp-a-1'><session \
         xmlns='urn:hmsim:hybrid-session:0' action='stop' jid='alice@example.com/hm-webex' \
         reason='taken-over'/></iq>",
    );
    let ack = h.stanza_to("imp-a-1");
    assert_eq!(ack.attr("id"), Some("t-1"));
    h.run_until(h.now + secs(30));
    h.answer_routine();
    assert!(h.stanzas.is_empty(), "{:?}", h.stanzas);
    // The event stream came back: the cloud gives her to this node still.
    h.node.resync(h.now);
    h.drain();
    let a = h.request("/v1/connectors/assignments");
    h.answer(&a, 200, &json!({ "users": [ALICE] }).to_string());
    h.run_until(h.now + secs(1));
    let iq = h.stanza_to("imp-a-1");
    session_iq(&iq, "imp-a-1", "start", ALICE);
}
