//! Unit tests of the node's private helpers and of hand-backs.

use super::*;

#[test]
fn the_stanza_id_of_a_post_is_read_back_from_its_client_id() {
    assert_eq!(stanza_id_of("xmpp:alice@example.com:a-1:0"), Some("a-1"));
    // Ids may hold colons; the sender never does.
    assert_eq!(stanza_id_of("xmpp:bob@example.com:x:y:0"), Some("x:y"));
    // A notice that came with the message is not what a read marker points at.
    assert_eq!(stanza_id_of("xmpp:alice@example.com:a-1:1"), None);
    assert_eq!(stanza_id_of("webex:whatever"), None);
}

use super::status_page::{HOMES_ASKED_MAX, NAME_BYTES_MAX};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng as _;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

fn node() -> ConnectorNode {
    let s = NodeSettings::single_node(Some("reg".into()));
    ConnectorNode::new(s, Duration::ZERO)
}

/// `exp-a-1` of a two-node cluster (`exp-a-2` the other): another node may serve a member of
/// its conversations, so it claims them ([`ConnectorNode::claim_held_posts`]).
fn node_of_two() -> ConnectorNode {
    let mut s = NodeSettings::single_node(Some("reg".into()));
    s.cluster.nodes.push("exp-a-2".into());
    ConnectorNode::new(s, Duration::ZERO)
}

/// Alice's post, as the cloud sends it to her connector.
fn alice_posted(id: &str) -> Event {
    let a = crate::proto::webex::Activity {
        id: id.into(),
        space_id: "space-1".into(),
        seq: 1,
        verb: Verb::Post,
        actor: ALICE.into(),
        encrypted_text: Some("ciphertext".into()),
        kid: Some("kms://kms/keys/1".into()),
        target: None,
        target_verb: None,
        target_encrypted_text: None,
        edit_of: None,
        client_id: None,
        via_connector: None,
        published_ms: 0,
    };
    Event::Activity {
        activity: Box::new(a),
        for_user: Some(ALICE.into()),
    }
}

fn assignment(added: &[&str], removed: &[&str]) -> Event {
    let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
    Event::Assignment {
        connector_id: "exp-a-1".into(),
        added: v(added),
        removed: v(removed),
    }
}

/// Every output so far; panics on a stanza (nothing may reach Jabber in these tests).
fn requests(n: &mut ConnectorNode) -> Vec<HttpRequest> {
    std::iter::from_fn(|| n.poll_output())
        .map(|o| match o {
            Output::Http(r) => r,
            other => panic!("unexpected output {other:?}"),
        })
        .collect()
}

fn only(reqs: Vec<HttpRequest>, path: &str) -> HttpRequest {
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].path, path, "{reqs:?}");
    reqs.into_iter().next().expect("one")
}

/// Alice's activity arrives while she is assigned here; the drain moves her away while
/// her space and key are fetched: the activity is handed back (retried after a 503).
fn moved_while_decrypting(n: &mut ConnectorNode, rng: &mut ChaCha8Rng) -> HttpRequest {
    let t = Duration::from_secs(600);
    n.handle_event(t, assignment(&[ALICE], &[]), rng);
    requests(n);
    n.handle_event(t, alice_posted("act-1"), rng);
    let info = only(requests(n), "/v1/spaces/space-1");
    let members = json!({"key_uri": "kms://kms/keys/1", "members": [ALICE, BOB]});
    n.handle_http(t, info.id, 200, members.to_string().as_bytes(), rng);
    let key = only(requests(n), "/v1/kms/keys");
    n.handle_event(t, assignment(&[], &[ALICE]), rng);
    requests(n);
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
    let answer = json!({"uri": "kms://kms/keys/1", "key": k});
    n.handle_http(t, key.id, 200, answer.to_string().as_bytes(), rng);
    let back = only(requests(n), HANDBACK_PATH);
    assert_eq!(back.method, Method::Post);
    let body: Value = serde_json::from_slice(&back.body).expect("JSON");
    let want = json!({"space_id": "space-1", "activity_id": "act-1", "for_user": ALICE});
    assert_eq!(body, want);
    // A 503 is retried after a backoff, with the same body.
    n.handle_http(t, back.id, 503, b"{}", rng);
    assert!(requests(n).is_empty());
    let at = n.poll_timeout(t).expect("a retry is due");
    n.handle_timeout(at, rng);
    let again = only(requests(n), HANDBACK_PATH);
    assert_eq!(again.body, back.body);
    again
}

#[test]
fn an_activity_whose_user_moved_away_is_handed_back() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut n = node();
    let back = moved_while_decrypting(&mut n, &mut rng);
    let accepted = json!({"activity_id": "act-1", "redeliveries": 1, "to": "exp-a-2"});
    let t = Duration::from_secs(700);
    n.handle_http(t, back.id, 202, accepted.to_string().as_bytes(), &mut rng);
    assert!(requests(&mut n).is_empty());
    assert!(!n.assigned().contains(ALICE));
    let st = n.stats();
    assert_eq!(
        (st.handed_back, st.dropped_unserved, st.to_jabber),
        (1, 0, 0)
    );
}

/// The cloud sent the handed-back activity to this very node: it serves the user although
/// no assignment event said so, and takes them on (the redelivery then goes out).
#[test]
fn a_hand_back_sent_back_here_means_the_user_is_served_here() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut n = node();
    let back = moved_while_decrypting(&mut n, &mut rng);
    let here = json!({"activity_id": "act-1", "redeliveries": 1, "to": "exp-a-1"});
    let t = Duration::from_secs(700);
    n.handle_http(t, back.id, 202, here.to_string().as_bytes(), &mut rng);
    assert!(n.assigned().contains(ALICE));
    only(requests(&mut n), "/v1/presence/query");
    assert_eq!(n.stats().handed_back, 1);
}

#[test]
fn a_hand_back_the_cloud_refuses_is_counted_as_unserved() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut n = node();
    let back = moved_while_decrypting(&mut n, &mut rng);
    let refused = json!({"error": "conflict", "detail": "handed back 3 times already"});
    let t = Duration::from_secs(700);
    n.handle_http(t, back.id, 409, refused.to_string().as_bytes(), &mut rng);
    assert!(requests(&mut n).is_empty());
    let st = n.stats();
    assert_eq!((st.handed_back, st.dropped_unserved), (0, 1));
}

#[test]
fn a_redelivered_activity_already_sent_here_is_dropped() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut n = node();
    let t = Duration::from_secs(600);
    n.handle_event(t, assignment(&[ALICE], &[]), &mut rng);
    requests(&mut n);
    // What `deliver` remembers once the activity went out as a stanza.
    remember(
        &mut n.id_map,
        &mut n.id_order,
        "act:act-1".into(),
        "hm-exp-a-1-1".into(),
    );
    n.handle_event(t, alice_posted("act-1"), &mut rng);
    assert!(requests(&mut n).is_empty());
    assert_eq!(n.stats().duplicate_events, 1);
}

/// The delay Control Hub announces (spec 12) is kept with the time it was answered, so that
/// the real-mode driver can say until when the node waits.
#[test]
fn the_announced_registration_delay_is_kept() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut n = node();
    n.start(Duration::from_secs(2));
    assert_eq!(n.phase(), &Phase::Registering);
    let reg = only(requests(&mut n), "/v1/connectors/register");
    assert_eq!(n.registration_delay(), None);
    let answer = serde_json::json!({"connector_id": "exp-a-1", "connector_token": "con-1",
        "state": "registering", "ready_at_ms": 190_000, "ready_in_ms": 177_000});
    let t = Duration::from_secs(3);
    n.handle_http(t, reg.id, 202, answer.to_string().as_bytes(), &mut rng);
    assert_eq!(
        n.registration_delay(),
        Some((t, Duration::from_millis(177_000)))
    );
    assert_eq!(n.phase(), &Phase::Registering);
}

/// Issue 14 item 8: the registration token is single use, so a restarted node must not
/// register again. Given what its earlier run's registration gave it, it opens its events and
/// heartbeats with the saved connector token; the heartbeat's "registered" starts discovery.
/// Enabling it again after a disable does not register again either.
#[test]
fn a_saved_registration_is_resumed_without_registering_again() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut first = node();
    first.start(Duration::ZERO);
    let reg = only(requests(&mut first), "/v1/connectors/register");
    let answer = json!({"connector_id": "exp-a-1", "connector_token": "con-1",
        "state": "registered", "ready_at_ms": 0, "ready_in_ms": 0});
    first.handle_http(
        Duration::ZERO,
        reg.id,
        202,
        answer.to_string().as_bytes(),
        &mut rng,
    );
    let saved = first.saved_registration().expect("registered");
    assert_eq!(saved.connector_token, "con-1");
    let outputs: Vec<Output> = std::iter::from_fn(|| first.poll_output()).collect();
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, Output::Events(t) if t == "con-1"))
    );
    first.set_enabled(false, Duration::from_secs(1));
    first.set_enabled(true, Duration::from_secs(2));
    let again: Vec<Output> = std::iter::from_fn(|| first.poll_output()).collect();
    assert!(
        !again
            .iter()
            .any(|o| matches!(o, Output::Http(r) if r.path == "/v1/connectors/register")),
        "enabled again: no second registration {again:?}"
    );

    let mut n = node();
    n.resume_registration(saved.clone());
    n.start(Duration::from_secs(5));
    let out: Vec<Output> = std::iter::from_fn(|| n.poll_output()).collect();
    assert!(
        matches!(out.as_slice(), [Output::Events(t)] if t == "con-1"),
        "{out:?}"
    );
    let at = n.poll_timeout(Duration::from_secs(5)).expect("a heartbeat");
    n.handle_timeout(at, &mut rng);
    let hb = only(requests(&mut n), "/v1/connectors/heartbeat");
    assert_eq!(hb.authorization.as_deref(), Some("Bearer con-1"));
    let ok = json!({"connector_id": "exp-a-1", "state": "registered", "up": true});
    n.handle_http(at, hb.id, 200, ok.to_string().as_bytes(), &mut rng);
    assert_eq!(n.phase(), &Phase::Discovering);

    // A cloud that does not know the saved token: the node registers with its token.
    let mut m = node();
    m.resume_registration(saved);
    m.start(Duration::ZERO);
    let _ = std::iter::from_fn(|| m.poll_output()).count();
    let at = m.poll_timeout(Duration::ZERO).expect("a heartbeat");
    m.handle_timeout(at, &mut rng);
    let hb = only(requests(&mut m), "/v1/connectors/heartbeat");
    m.handle_http(at, hb.id, 401, b"{}", &mut rng);
    let reg = only(requests(&mut m), "/v1/connectors/register");
    assert_eq!(reg.authorization.as_deref(), Some("Bearer reg"));

    // A saved registration of another node is not used.
    let mut o = node();
    o.resume_registration(SavedRegistration {
        connector_id: "exp-b-1".into(),
        connector_token: "con-9".into(),
    });
    o.start(Duration::ZERO);
    only(requests(&mut o), "/v1/connectors/register");
}

const POSTS: &str = "/v1/spaces/space-1/activities";

fn client_id(r: &HttpRequest) -> String {
    let body: Value = serde_json::from_slice(&r.body).expect("JSON");
    body["client_id"].as_str().unwrap_or_default().to_string()
}

/// The cloud orders a conversation's activities as they arrive. A post it did not take (a
/// cloud outage) is retried after a backoff; a later post of the same conversation waits for
/// it instead of overtaking it (explore seed 374: a message sent during the outage reached
/// Webex after the next one). Another conversation is not held.
#[test]
fn a_later_post_waits_behind_a_failed_post_of_its_conversation() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut n = node();
    let t = Duration::from_secs(600);
    n.post_retried(POSTS.into(), json!({"client_id": "m1"}), 7);
    let first = only(requests(&mut n), POSTS);
    n.handle_http_failure(t, first.id, "timed out", &mut rng);
    n.post_retried(POSTS.into(), json!({"client_id": "m2"}), 7);
    n.post_retried(
        "/v1/spaces/other/activities".into(),
        json!({"client_id": "x"}),
        8,
    );
    let other = only(requests(&mut n), "/v1/spaces/other/activities");
    assert_eq!(client_id(&other), "x");
    let at = n.poll_timeout(t).expect("a retry is due");
    n.handle_timeout(at, &mut rng);
    let again = only(requests(&mut n), POSTS);
    assert_eq!(client_id(&again), "m1");
    n.handle_http(at, again.id, 200, b"{}", &mut rng);
    let next = only(requests(&mut n), POSTS);
    assert_eq!(client_id(&next), "m2");
    n.handle_http(at, next.id, 200, b"{}", &mut rng);
    n.post_retried(POSTS.into(), json!({"client_id": "m3"}), 7);
    assert_eq!(client_id(&only(requests(&mut n), POSTS)), "m3");
}

/// Two posts of one conversation written while the cloud is away: the second is not sent
/// while the first is on its way, so it cannot fail beside it, nor be taken before the
/// first's retry when the cloud comes back (explore seed 3741: during a 75 s `hold` of the
/// cloud, posts 4 and 5 timed out while post 6, sent on a fresh connection just as the hold
/// lifted, was taken first). Another conversation is not held.
#[test]
fn one_post_of_a_conversation_is_on_its_way_at_a_time() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut n = node();
    let t = Duration::from_secs(600);
    n.handle_timeout(t, &mut rng);
    requests(&mut n);
    n.post_retried(POSTS.into(), json!({"client_id": "m1"}), 7);
    n.post_retried(POSTS.into(), json!({"client_id": "m2"}), 7);
    n.post_retried(POSTS.into(), json!({"client_id": "m3"}), 7);
    let first = only(requests(&mut n), POSTS);
    assert_eq!(client_id(&first), "m1");
    n.post_retried(
        "/v1/spaces/other/activities".into(),
        json!({"client_id": "x"}),
        8,
    );
    let other = only(requests(&mut n), "/v1/spaces/other/activities");
    assert_eq!(client_id(&other), "x");
    n.handle_http(t, other.id, 200, b"{}", &mut rng);
    n.handle_http_failure(t, first.id, "timed out", &mut rng);
    assert!(requests(&mut n).is_empty());
    let at = n.poll_timeout(t).expect("a retry is due");
    n.handle_timeout(at, &mut rng);
    let again = only(requests(&mut n), POSTS);
    assert_eq!(client_id(&again), "m1");
    n.handle_http(at, again.id, 200, b"{}", &mut rng);
    let second = only(requests(&mut n), POSTS);
    assert_eq!(client_id(&second), "m2");
    n.handle_http(at, second.id, 200, b"{}", &mut rng);
    let third = only(requests(&mut n), POSTS);
    assert_eq!(client_id(&third), "m3");
    // Taken: the conversation's next post goes at once.
    n.handle_http(at, third.id, 200, b"{}", &mut rng);
    n.post_retried(POSTS.into(), json!({"client_id": "m4"}), 7);
    assert_eq!(client_id(&only(requests(&mut n), POSTS)), "m4");
}

/// A post given up (a 4xx-like refusal repeated to the last attempt) frees its
/// conversation: the next post goes.
#[test]
fn a_post_given_up_lets_the_next_of_its_conversation_go() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut n = node();
    let mut t = Duration::from_secs(600);
    n.post_retried(POSTS.into(), json!({"client_id": "m1"}), 7);
    n.post_retried(POSTS.into(), json!({"client_id": "m2"}), 7);
    let mut r = only(requests(&mut n), POSTS);
    for _ in 1..POST_ATTEMPTS_MAX {
        assert_eq!(client_id(&r), "m1");
        n.handle_http(t, r.id, 503, b"{}", &mut rng);
        t = n.poll_timeout(t).expect("a retry is due");
        n.handle_timeout(t, &mut rng);
        r = only(requests(&mut n), POSTS);
    }
    assert_eq!(client_id(&r), "m1");
    n.handle_http(t, r.id, 503, b"{}", &mut rng);
    assert_eq!(client_id(&only(requests(&mut n), POSTS)), "m2");
}

/// The known-users report the cloud did not take (a 429 while registering) is sent again,
/// not replaced by an assignments fetch: the users it names stayed Pending for good
/// (explore seed 2019: `within_capacity` saw nobody assigned in ten minutes).
#[test]
fn a_known_users_report_the_cloud_did_not_take_is_sent_again() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let mut n = node();
    let alice = AxlUser {
        userid: "alice".into(),
        email: Some(ALICE.into()),
        jid: ALICE.into(),
        home: "imp-a-1".into(),
        intercluster: false,
    };
    n.directory = Directory::build(&[("a".into(), vec![alice])]);
    let t = Duration::from_secs(600);
    n.report_known_users();
    let report = only(requests(&mut n), "/v1/connectors/users");
    n.handle_http(t, report.id, 429, b"{}", &mut rng);
    // A failed assignments fetch meanwhile does not take the report's retry slot.
    n.failed(
        t,
        Pending::Assignments { resync: false },
        "HTTP 429",
        &mut rng,
    );
    let at = n.poll_timeout(t).expect("a retry is due");
    n.handle_timeout(at, &mut rng);
    let again: Vec<HttpRequest> = requests(&mut n)
        .into_iter()
        .filter(|r| r.path == "/v1/connectors/users")
        .collect();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].body, report.body);
}

/// A directory of more users than one report holds goes out in several batches; the node
/// fetches its assignments once, after the last batch is answered (issue 16: a fetch after
/// each of 15 batches made a 75,000-user start quadratic: 15 whole lists per node).
#[test]
fn assignments_are_fetched_once_after_the_last_report_batch() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let mut n = node();
    let users: Vec<AxlUser> = (0..2 * KNOWN_USERS_BATCH_MAX + 1)
        .map(|i| AxlUser {
            userid: format!("u{i}"),
            email: Some(format!("u{i}@example.com").into()),
            jid: format!("u{i}@example.com").into(),
            home: "imp-a-1".into(),
            intercluster: false,
        })
        .collect();
    n.directory = Directory::build(&[("a".into(), users)]);
    let t = Duration::from_secs(600);
    n.report_known_users();
    let batches = requests(&mut n);
    assert_eq!(batches.len(), 3, "three batches");
    assert!(batches.iter().all(|r| r.path == "/v1/connectors/users"));
    let (last, first) = batches.split_last().expect("three");
    for b in first {
        n.handle_http(t, b.id, 200, br#"{"moves": 0}"#, &mut rng);
        assert!(requests(&mut n).is_empty(), "no fetch while a batch is out");
    }
    n.handle_http(t, last.id, 200, br#"{"moves": 0}"#, &mut rng);
    let fetch = only(requests(&mut n), "/v1/connectors/assignments");
    assert_eq!(fetch.method, Method::Get);
}

/// A poll answer the cloud wrote before the user's Webex post reached it arrives after the
/// connector carried that post (presence-poll seed 11: a send at 6843 s, then Away published
/// at 6848 s from the older answer). The user is active since the post: the answer's older
/// last-active time must not move it back ("Active on Webex App within the last 10 minutes"
/// ⇒ Available, spec 52).
#[test]
fn a_poll_answer_older_than_a_use_carried_here_keeps_the_use() {
    let mut n = node();
    let t = Duration::from_secs(6843);
    n.touch(ALICE, t);
    let stale = json!({"states": [{"email": ALICE, "last_active_ms": 5_421_000}]});
    n.on_presence(t + Duration::from_secs(5), &stale);
    assert_eq!(n.presence[ALICE].last_active, Some(t));
    let fresh = json!({"states": [{"email": ALICE, "last_active_ms": 6_900_000}]});
    n.on_presence(t + Duration::from_secs(600), &fresh);
    assert_eq!(
        n.presence[ALICE].last_active,
        Some(Duration::from_secs(6900))
    );
}

/// The last use of Webex with Jabber the cloud answers counts on the status page within 72 h
/// of it (spec 70), only for a user assigned here, never later than now (a time ahead of the
/// node's clock would keep the user active past the 72 h), and never earlier than a use this
/// node carried itself.
#[test]
fn a_last_use_with_jabber_from_the_cloud_counts_within_72_hours_from_no_later_than_now() {
    let mut n = node();
    let h72 = Duration::from_secs(72 * 3600);
    let t = Duration::from_secs(100 * 3600);
    let users: Vec<AxlUser> = [("alice", ALICE), ("bob", BOB)]
        .into_iter()
        .map(|(id, email)| AxlUser {
            userid: id.into(),
            email: Some(email.into()),
            jid: email.into(),
            home: "imp-a-1".into(),
            intercluster: false,
        })
        .collect();
    n.directory = Directory::build(&[("a".into(), users)]);
    n.assigned.insert(ALICE.to_string());
    let ms = |d: Duration| d.as_millis() as u64;
    let answer = |email: &str, used: Duration| json!({"states": [{"email": email, "last_interop_ms": ms(used)}]});
    n.on_presence(t, &answer(ALICE, t - h72 - Duration::from_secs(1)));
    assert_eq!(n.status_page(t).active, 0, "73 h old");
    n.on_presence(t, &answer(ALICE, t - Duration::from_secs(60)));
    assert_eq!(n.status_page(t).active, 1);
    n.touch(ALICE, t + Duration::from_secs(30));
    n.on_presence(t + Duration::from_secs(40), &answer(ALICE, t));
    assert_eq!(
        n.interop_seen[ALICE],
        t + Duration::from_secs(30),
        "kept its own"
    );
    n.on_presence(t, &answer(BOB, t));
    assert!(!n.interop_seen.contains_key(BOB), "not assigned here");
    n.assigned.insert(BOB.to_string());
    n.on_presence(t, &answer(BOB, t + h72 * 10));
    assert_eq!(n.interop_seen[BOB], t, "not ahead of now");
    let after = t + Duration::from_secs(30) + h72 + Duration::from_secs(1);
    assert_eq!(n.status_page(after).active, 0);
}

/// The presence query for users just assigned is what wants their sessions. After a restart
/// during 503s (explore seed 2299: an Expressway maintenance, then 42 % 503s), a query the
/// cloud did not answer was dropped: 25 of 27 users waited for the next poll, 10 minutes
/// later, with no session. A failed query brings the next poll forward, after a backoff.
#[test]
fn a_presence_query_the_cloud_did_not_answer_is_asked_again() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut n = node();
    let t = Duration::from_secs(375);
    n.phase = Phase::Running;
    n.next_poll = t + presence::POLL_INTERVAL;
    n.handle_event(t, assignment(&[ALICE, BOB], &[]), &mut rng);
    let query = only(requests(&mut n), "/v1/presence/query");
    n.handle_http(t, query.id, 503, b"{}", &mut rng);
    assert!(requests(&mut n).is_empty());
    let at = n.poll_timeout(t).expect("a poll is due");
    assert!(at <= t + RETRY_MAX, "asked again at {at:?}");
    n.handle_timeout(at, &mut rng);
    let again: Vec<HttpRequest> = requests(&mut n)
        .into_iter()
        .filter(|r| r.path == "/v1/presence/query")
        .collect();
    assert_eq!(again.len(), 1, "{again:?}");
    let body: Value = serde_json::from_slice(&again[0].body).expect("JSON");
    assert_eq!(body, json!({"emails": [ALICE, BOB]}));
}

/// An assignments answer written before the cloud moved Alice away, read after the event
/// that moved her: the event is newer and stands (explore seed 70: after a cloud outage a
/// node kept counting a user the rebalance had moved to its peer, its page off by one).
#[test]
fn an_assignments_answer_older_than_an_event_read_meanwhile_does_not_undo_it() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut n = node();
    let t = Duration::from_secs(600);
    n.retry_request(Pending::Assignments { resync: false });
    let fetch = only(requests(&mut n), "/v1/connectors/assignments");
    n.handle_event(t, assignment(&[ALICE], &[]), &mut rng);
    n.handle_event(t, assignment(&[], &[ALICE]), &mut rng);
    requests(&mut n);
    let answer = json!({"connector_id": "exp-a-1", "users": [ALICE, BOB]});
    n.handle_http(t, fetch.id, 200, answer.to_string().as_bytes(), &mut rng);
    let held: Vec<&String> = n.assigned.iter().collect();
    assert_eq!(held, [BOB]);
    requests(&mut n);
    // The next answer is newer than those events: it is taken whole.
    n.retry_request(Pending::Assignments { resync: false });
    let fetch = only(requests(&mut n), "/v1/connectors/assignments");
    n.handle_http(t, fetch.id, 200, answer.to_string().as_bytes(), &mut rng);
    assert!(n.assigned.contains(ALICE));
}

/// A resync whose fetch failed is retried as a resync: the removals it is for were missed
/// on the event stream and only the resync applies them.
#[test]
fn a_failed_resync_is_retried_as_a_resync() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let mut n = node();
    let t = Duration::from_secs(600);
    n.handle_event(t, assignment(&[ALICE, BOB], &[]), &mut rng);
    requests(&mut n);
    n.retry_request(Pending::Assignments { resync: true });
    let fetch = only(requests(&mut n), "/v1/connectors/assignments");
    n.handle_http(t, fetch.id, 503, b"{}", &mut rng);
    let at = n.poll_timeout(t).expect("a retry is due");
    n.handle_timeout(at, &mut rng);
    let again: Vec<HttpRequest> = requests(&mut n)
        .into_iter()
        .filter(|r| r.path == "/v1/connectors/assignments")
        .collect();
    assert_eq!(again.len(), 1, "{again:?}");
    let answer = json!({"connector_id": "exp-a-1", "users": [BOB]});
    n.handle_http(
        at,
        again[0].id,
        200,
        answer.to_string().as_bytes(),
        &mut rng,
    );
    let held: Vec<&String> = n.assigned.iter().collect();
    assert_eq!(held, [BOB]);
}

/// A restarted node reads Alice's Webex posts before its assignments answer says it serves
/// her (`connector-restart-publisher-down-order`, seeds 5 and 14: two posts 180 ms apart
/// reached Jabber reversed). The first must not go to the cloud and back while the second,
/// arriving after the answer, goes straight on: both wait for the answer and go in order.
#[test]
fn activities_read_before_the_assignments_answer_wait_for_it_in_order() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut n = node();
    let t = Duration::from_secs(314);
    n.retry_request(Pending::Assignments { resync: false });
    let fetch = only(requests(&mut n), "/v1/connectors/assignments");
    n.handle_event(t, alice_posted("act-1"), &mut rng);
    assert!(requests(&mut n).is_empty(), "not handed back");
    let answer = json!({"connector_id": "exp-a-1", "users": [ALICE]});
    n.handle_http(t, fetch.id, 200, answer.to_string().as_bytes(), &mut rng);
    let asked: Vec<String> = requests(&mut n).into_iter().map(|r| r.path).collect();
    assert!(asked.iter().any(|p| p == "/v1/spaces/space-1"), "{asked:?}");
    assert!(!asked.iter().any(|p| p == HANDBACK_PATH), "{asked:?}");
    // Her use of Webex with Jabber counts on the status page (spec 70), as when the event
    // is read for a user assigned here.
    assert_eq!(n.interop_seen.get(ALICE), Some(&t));
    n.handle_event(t, alice_posted("act-2"), &mut rng);
    assert!(
        requests(&mut n).is_empty(),
        "the space is asked for already"
    );
    let waiting: Vec<&str> = n.inbox_space["space-1"]
        .iter()
        .map(|i| match i {
            InItem::Activity { a, .. } => a.id.as_str(),
            InItem::Typing { .. } => "typing",
        })
        .collect();
    assert_eq!(waiting, ["act-1", "act-2"]);
    assert_eq!(n.stats().handed_back, 0);
}

/// Once the node knows whom it serves and no fetch is out, an activity of a user it does
/// not serve is handed back at once, as before.
#[test]
fn an_activity_of_a_user_not_served_after_the_answer_is_handed_back() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let mut n = node();
    let t = Duration::from_secs(314);
    n.retry_request(Pending::Assignments { resync: false });
    let fetch = only(requests(&mut n), "/v1/connectors/assignments");
    n.handle_event(t, alice_posted("act-1"), &mut rng);
    let answer = json!({"connector_id": "exp-a-1", "users": [BOB]});
    n.handle_http(t, fetch.id, 200, answer.to_string().as_bytes(), &mut rng);
    let asked: Vec<String> = requests(&mut n).into_iter().map(|r| r.path).collect();
    assert!(asked.iter().any(|p| p == HANDBACK_PATH), "{asked:?}");
    n.handle_event(t, alice_posted("act-2"), &mut rng);
    only(requests(&mut n), HANDBACK_PATH);
}

/// Users turning Active come as one assignment event each: hundreds in a burst (issue 16: at
/// 15,000 users a burst overflowed the event socket's 1,024 events). A presence query per
/// event queued them all on one cloud connection, one round trip each (102 s for 1,024
/// events), and the resync and the space, key and post requests on that connection waited
/// behind them. While one query for newly assigned users is in flight, later ones wait and go
/// together when it is answered.
#[test]
fn presence_queries_of_consecutive_assignment_events_go_together() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut n = node();
    let t = Duration::from_secs(300);
    n.phase = Phase::Running;
    n.next_poll = t + presence::POLL_INTERVAL;
    let users: Vec<String> = (0..200)
        .map(|i| format!("user{i:03}@example.com"))
        .collect();
    let mut queries = Vec::new();
    for u in &users {
        n.handle_event(t, assignment(&[u.as_str()], &[]), &mut rng);
        queries.extend(requests(&mut n));
    }
    let first = only(queries, "/v1/presence/query");
    let body: Value = serde_json::from_slice(&first.body).expect("JSON");
    assert_eq!(body, json!({"emails": [users[0]]}));
    // One left before the answer: it is not asked for.
    n.handle_event(t, assignment(&[], &[users[199].as_str()]), &mut rng);
    requests(&mut n);
    let answer = json!({"states": []});
    n.handle_http(t, first.id, 200, answer.to_string().as_bytes(), &mut rng);
    let second = only(requests(&mut n), "/v1/presence/query");
    let body: Value = serde_json::from_slice(&second.body).expect("JSON");
    assert_eq!(body, json!({"emails": users[1..199]}));
    // A failed query lets the next ones go too (the poll brought forward covers it).
    n.handle_event(t, assignment(&["late@example.com"], &[]), &mut rng);
    assert!(requests(&mut n).is_empty());
    n.handle_http(t, second.id, 503, b"{}", &mut rng);
    let third = only(requests(&mut n), "/v1/presence/query");
    let body: Value = serde_json::from_slice(&third.body).expect("JSON");
    assert_eq!(body, json!({"emails": ["late@example.com"]}));
}

/// A post that failed while the cloud did not answer is sent again as soon as the cloud
/// answers another request, not after its backoff: meanwhile another connector node may post
/// a later message of its conversation (explore seed 51: message 10 failed in a cloud outage
/// at 269.8 s and waited out its backoff to 374.5 s, after the other node's message 17).
#[test]
fn a_failed_post_is_sent_again_once_the_cloud_answers() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut n = node();
    let t = Duration::from_secs(600);
    n.post_retried(POSTS.into(), json!({"client_id": "m1"}), 7);
    let first = only(requests(&mut n), POSTS);
    n.handle_http_failure(t, first.id, "connection refused", &mut rng);
    let backoff_at = n.poll_timeout(t).expect("a retry is due");
    let later = t + Duration::from_millis(100);
    assert!(backoff_at > later, "the retry waits a backoff");
    n.post_retried(
        "/v1/spaces/other/activities".into(),
        json!({"client_id": "x"}),
        8,
    );
    let other = only(requests(&mut n), "/v1/spaces/other/activities");
    n.handle_http(later, other.id, 200, b"{}", &mut rng);
    assert_eq!(
        n.poll_timeout(later),
        Some(later),
        "the failed post is due at once"
    );
    n.handle_timeout(later, &mut rng);
    assert_eq!(client_id(&only(requests(&mut n), POSTS)), "m1");
}

fn body_of(r: &HttpRequest) -> Value {
    serde_json::from_slice(&r.body).expect("JSON")
}

const HOLD: &str = "/v1/spaces/space-1/hold";

/// A post that failed at the transport (a cloud outage) claims its conversation, since its
/// first send, as soon as the cloud answers the node again, on the control connection; the
/// release follows its conversation's posts in their lane. Otherwise the other member's node,
/// with only a newer message, posts it first (explore seed 4834 `--seed 37`: exp-a-1's posts
/// of 122.5-159.2 s waited for their retry while exp-a-2's 173.6 s message was taken).
#[test]
fn a_post_failed_at_the_transport_claims_its_conversation_when_the_cloud_answers() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut n = node_of_two();
    let t = Duration::from_secs(600);
    n.handle_timeout(t, &mut rng);
    requests(&mut n);
    n.post_retried(POSTS.into(), json!({"client_id": "m1"}), 7);
    let first = only(requests(&mut n), POSTS);
    let failed = t + Duration::from_secs(1);
    n.handle_http_failure(failed, first.id, "connection refused", &mut rng);
    n.post_retried(POSTS.into(), json!({"client_id": "m2"}), 7);
    assert!(requests(&mut n).is_empty(), "m2 waits behind m1");
    n.post_retried(
        "/v1/spaces/other/activities".into(),
        json!({"client_id": "x"}),
        8,
    );
    let other = only(requests(&mut n), "/v1/spaces/other/activities");
    let later = t + Duration::from_secs(60);
    n.handle_http(later, other.id, 200, b"{}", &mut rng);
    let claim = only(requests(&mut n), CLAIMS_PATH);
    assert_eq!(claim.lane, CONTROL_LANE);
    let want = json!({"claims": [{"space_id": "space-1", "since_ms": 600_000}]});
    assert_eq!(body_of(&claim), want);
    n.handle_timeout(later, &mut rng);
    let again = only(requests(&mut n), POSTS);
    assert_eq!(client_id(&again), "m1");
    n.handle_http(later, again.id, 200, b"{}", &mut rng);
    let second = only(requests(&mut n), POSTS);
    assert_eq!(client_id(&second), "m2");
    n.handle_http(later, second.id, 200, b"{}", &mut rng);
    let release = only(requests(&mut n), HOLD);
    assert_eq!(
        (release.lane, body_of(&release)),
        (7, json!({"release": true}))
    );
    n.handle_http(later, claim.id, 200, b"{}", &mut rng);
    n.handle_http(later, release.id, 200, b"{}", &mut rng);
    // Claimed once: the answers that follow claim nothing more.
    assert!(requests(&mut n).is_empty());
}

/// A post stuck on its way (sent into a connection an outage cut without a FIN, it waits out
/// `HTTP_TIMEOUT`) claims its conversation when the cloud answers the node after a silence,
/// once on its way [`POST_STUCK_AFTER`] or more (explore seed 4834 `--seed 28`: exp-a-1's
/// message 12, on its way from 156.5 s to 186.5 s, was overtaken by exp-a-2's message 18 at
/// 185.2 s). A post on its way a moment is not stuck.
#[test]
fn a_post_stuck_on_its_way_claims_its_conversation_when_the_cloud_answers() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut n = node_of_two();
    let t = Duration::from_secs(600);
    n.handle_timeout(t, &mut rng);
    requests(&mut n);
    n.post_retried(POSTS.into(), json!({"client_id": "m1"}), 7);
    let stuck = only(requests(&mut n), POSTS);
    let other = |n: &mut ConnectorNode, id: &str| {
        let path = "/v1/spaces/other/activities";
        n.post_retried(path.into(), json!({"client_id": id}), 8);
        only(requests(n), path)
    };
    let x = other(&mut n, "x");
    n.handle_http(t + Duration::from_secs(1), x.id, 200, b"{}", &mut rng);
    assert!(requests(&mut n).is_empty(), "on its way 1 s: not stuck");
    let y = other(&mut n, "y");
    let later = t + Duration::from_secs(40);
    n.handle_http(later, y.id, 200, b"{}", &mut rng);
    let claim = only(requests(&mut n), CLAIMS_PATH);
    assert_eq!(claim.lane, CONTROL_LANE);
    let want = json!({"claims": [{"space_id": "space-1", "since_ms": 600_000}]});
    assert_eq!(body_of(&claim), want);
    // The stuck post fails at last and is sent again; the release follows it in its lane.
    n.handle_http_failure(later, stuck.id, "timed out", &mut rng);
    let at = n.poll_timeout(later).expect("a retry is due");
    n.handle_timeout(at, &mut rng);
    let again = only(requests(&mut n), POSTS);
    n.handle_http(at, again.id, 200, b"{}", &mut rng);
    let release = only(requests(&mut n), HOLD);
    assert_eq!(
        (release.lane, body_of(&release)),
        (7, json!({"release": true}))
    );
}

/// A hold's release waits behind every post of its conversation queued before the release
/// is sent (explore seed 23245): after a cloud outage exp-a-1 held a conversation and queued
/// its backlog with the release behind it; messages 32 and 33 came from IM&P at 506.8 s, after
/// the flush, and were queued behind the release. The release reached the cloud after the
/// backlog, the hold ended, and exp-a-2's post of message 34 (held until then) was taken
/// before 33. A release already on its way is not recalled.
#[test]
fn a_holds_release_waits_behind_a_post_of_its_conversation_queued_after_it() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut n = node_of_two();
    let t = Duration::from_secs(600);
    n.handle_timeout(t, &mut rng);
    requests(&mut n);
    n.post_retried(POSTS.into(), json!({"client_id": "m31"}), 7);
    let first = only(requests(&mut n), POSTS);
    n.release_hold("space-1", 7);
    n.post_retried(POSTS.into(), json!({"client_id": "m32"}), 7);
    n.post_retried(POSTS.into(), json!({"client_id": "m33"}), 7);
    assert!(
        requests(&mut n).is_empty(),
        "one request of a lane at a time"
    );
    n.handle_http(t, first.id, 200, b"{}", &mut rng);
    for m in ["m32", "m33"] {
        let next = only(requests(&mut n), POSTS);
        assert_eq!(client_id(&next), m);
        n.handle_http(t, next.id, 200, b"{}", &mut rng);
    }
    let release = only(requests(&mut n), HOLD);
    assert_eq!(body_of(&release), json!({"release": true}));
    // On its way: a post queued now follows it.
    n.post_retried(POSTS.into(), json!({"client_id": "m34"}), 7);
    assert!(requests(&mut n).is_empty());
    n.handle_http(t, release.id, 200, b"{}", &mut rng);
    assert_eq!(client_id(&only(requests(&mut n), POSTS)), "m34");
}

/// A post queued while its conversation's hold or claim is still to be released is declared
/// at once (seed 16 of `cloud-outage-two-nodes-order-release-behind-late-posts`): after a
/// cloud outage exp-a-2 claimed user00030's conversation, declaring its unposted messages
/// then; message 45 reached only exp-a-2, at 511.2 s, behind its backlog. exp-a-1 lacked it,
/// and the cloud, knowing nothing of it, took exp-a-1's post of message 46 (got at 513 s)
/// before exp-a-2 posted 45.
#[test]
fn a_post_queued_before_its_conversations_release_is_declared() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut n = node_of_two();
    let t = Duration::from_secs(600);
    n.handle_timeout(t, &mut rng);
    requests(&mut n);
    let pair = (ALICE.to_string(), BOB.to_string());
    n.pair_space.insert(pair.clone(), "space-1".into());
    let lane = lane_of(&pair);
    n.post_retried(
        POSTS.into(),
        json!({"client_id": "m43", "got_ms": 500}),
        lane,
    );
    only(requests(&mut n), POSTS);
    n.release_hold("space-1", lane);
    n.post_retried(
        POSTS.into(),
        json!({"client_id": "m45", "got_ms": 511_200}),
        lane,
    );
    let declared = only(requests(&mut n), CLAIMS_PATH);
    let want = json!([
        {"client_id": "m43", "got_ms": 500},
        {"client_id": "m45", "got_ms": 511_200}
    ]);
    assert_eq!(body_of(&declared)["claims"][0]["unposted"], want);
    assert!(
        body_of(&declared)["claims"][0].get("since_ms").is_none(),
        "claims nothing"
    );
}

/// A lone node (no other node in its cluster, no other cluster) sends no claim: no other
/// node can post to its conversations, so its posts, in order in their lanes, cannot be
/// overtaken; a claim would only be a pointless request (it changed `presence-poll`'s trace).
#[test]
fn a_lone_nodes_stuck_or_failed_post_claims_nothing() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut n = node();
    let t = Duration::from_secs(600);
    n.handle_timeout(t, &mut rng);
    requests(&mut n);
    n.post_retried(POSTS.into(), json!({"client_id": "m1"}), 7);
    only(requests(&mut n), POSTS);
    let other = |n: &mut ConnectorNode, space: &str, lane: u64| {
        let path = format!("/v1/spaces/{space}/activities");
        n.post_retried(path.clone(), json!({"client_id": space}), lane);
        only(requests(n), &path)
    };
    let failed = other(&mut n, "failed", 9);
    n.handle_http_failure(t, failed.id, "connection refused", &mut rng);
    let x = other(&mut n, "x", 8);
    // m1 on its way 40 s (stuck), the other post failed at the transport: nothing claimed.
    let later = t + Duration::from_secs(40);
    n.handle_http(later, x.id, 200, b"{}", &mut rng);
    let sent = requests(&mut n);
    assert!(
        sent.iter()
            .all(|r| r.path != CLAIMS_PATH && !r.path.ends_with(HOLD_PATH_SUFFIX)),
        "a lone node claims nothing: {sent:?}"
    );
}

/// A post refused because another node holds its conversation (409) keeps its wait when
/// the cloud answers something else: the cloud did answer it.
#[test]
fn a_post_held_by_a_peer_keeps_its_wait_when_the_cloud_answers() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut n = node();
    let t = Duration::from_secs(600);
    n.post_retried(POSTS.into(), json!({"client_id": "m1"}), 7);
    let first = only(requests(&mut n), POSTS);
    n.handle_http(t, first.id, 409, b"{}", &mut rng);
    let later = t + Duration::from_millis(100);
    n.post_retried(
        "/v1/spaces/other/activities".into(),
        json!({"client_id": "x"}),
        8,
    );
    let other = only(requests(&mut n), "/v1/spaces/other/activities");
    n.handle_http(later, other.id, 200, b"{}", &mut rng);
    assert!(n.poll_timeout(later).is_some_and(|at| at > later));
}

/// A heartbeat answer carrying `from`'s share as its one peer, as the cloud hands it back.
fn answer_with_peer(from: &ConnectorNode, id: &str, now: Duration) -> Value {
    json!({"peers": [{"id": id, "share": from.status_json(now)["share"]}]})
}

/// Spec 69: "Users Enabled for Hybrid Message Service is the number of Hybrid Message-enabled
/// users that Webex has assigned to this particular Expressway cluster"; spec 71: each node's
/// row "contributes a portion to the total". Explore seed 66: exp-a-1 restarted while cluster
/// a's AXL publisher was down for good and cannot discover the cluster again (spec 22), yet
/// the cloud keeps a cluster a user exp-a-2 discovered on it. exp-a-1's page left that user
/// out of its totals, since it could place them in no node row. It asks its peers with its
/// heartbeat, a peer that discovered the user tells their home node with its own, and the
/// user counts in that row, active as the cloud told; the node keeps it once the peer stops
/// telling, and forgets it when the user is unassigned.
#[test]
fn a_user_assigned_here_that_only_a_peer_discovered_counts_on_the_home_node_it_tells() {
    let t = Duration::from_secs(400);
    let (mut one, mut two) = (node(), node());
    let alice = AxlUser {
        userid: "alice".into(),
        email: Some(ALICE.into()),
        jid: ALICE.into(),
        home: "imp-a-2".into(),
        intercluster: false,
    };
    two.directory = Directory::build(&[("a".into(), vec![alice])]);
    // exp-a-1's discovery of cluster a failed: settled with what answered (spec 22).
    one.registered = true;
    one.assigned.insert(ALICE.to_string());
    let used = json!({"states": [{"email": ALICE, "last_interop_ms": 300_000}]});
    one.on_presence(t, &used);
    // exp-a-1's heartbeat asks; exp-a-2 reads the ask at its own and tells at the next.
    two.on_heartbeat(t, &answer_with_peer(&one, "exp-a-1", t));
    one.on_heartbeat(t, &answer_with_peer(&two, "exp-a-2", t));
    let page = one.status_page(t);
    assert_eq!((page.enabled, page.active), (1, 1), "{page:?}");
    let row = page.nodes.iter().find(|r| r.node == "imp-a-2");
    assert_eq!(row.map(|r| (r.users, r.active)), Some((1, 1)), "{page:?}");
    assert!(page.consistent().is_ok(), "{page:?}");
    // exp-a-1 no longer asks, so exp-a-2 no longer tells: exp-a-1 keeps what it learned.
    two.on_heartbeat(t, &answer_with_peer(&one, "exp-a-1", t));
    assert!(two.status_json(t)["share"].get("homes").is_none());
    one.on_heartbeat(t, &answer_with_peer(&two, "exp-a-2", t));
    assert_eq!(one.status_page(t).enabled, 1);
    one.unassign(ALICE, t);
    assert!(one.peer_homes.is_empty(), "forgotten with the user");
    // A node's heartbeat with nothing to ask or tell is as before: its counts only.
    let share = two.status_json(t)["share"].clone();
    let keys: Vec<&String> = share.as_object().expect("an object").keys().collect();
    assert_eq!(keys, ["active", "enabled", "nodes"]);
}

/// A peer's share may ask for and tell any number of homes: at most [`HOMES_ASKED_MAX`] of
/// each are read, names longer than a host name are ignored, and a home told for a user not
/// assigned here is not kept.
#[test]
fn homes_asked_and_told_by_a_peer_are_bounded() {
    let t = Duration::from_secs(400);
    let mut n = node();
    n.registered = true;
    let many: Vec<String> = (0..10 * HOMES_ASKED_MAX)
        .map(|i| format!("u{i}@x"))
        .collect();
    n.assigned.extend(many.iter().cloned());
    let told: Vec<Value> = many
        .iter()
        .map(|e| json!({"email": e, "node": "imp-a-1"}))
        .chain([json!({"email": "stranger@x", "node": "imp-a-1"})])
        .collect();
    let long = "n".repeat(NAME_BYTES_MAX + 1);
    let share = json!({"enabled": 0, "active": 0, "nodes": [], "homes_asked": many, "homes": told});
    let long_home =
        json!({"enabled": 0, "active": 0, "nodes": [], "homes": [{"email": "u0@x", "node": long}]});
    let answer = json!({"peers": [{"id": "exp-a-2", "share": long_home}, {"id": "exp-a-3", "share": share}]});
    n.on_heartbeat(t, &answer);
    assert_eq!(n.peer_asks.len(), HOMES_ASKED_MAX);
    assert_eq!(n.peer_homes.len(), HOMES_ASKED_MAX);
    assert!(n.peer_homes.values().all(|h| h == "imp-a-1"));
    assert!(!n.peer_homes.contains_key("stranger@x"));
    let asked = n.status_json(t)["share"]["homes_asked"]
        .as_array()
        .map(Vec::len);
    assert_eq!(asked, Some(HOMES_ASKED_MAX), "the next ones are asked");
}

/// The HTTP requests among every output so far (component links and the event stream left out).
fn http_requests(n: &mut ConnectorNode) -> Vec<HttpRequest> {
    std::iter::from_fn(|| n.poll_output())
        .filter_map(|o| match o {
            Output::Http(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// Explore seed 5301: exp-a-1 restarted (a crash) while imp-a-1, the AXL publisher of its only
/// IM&P cluster, was down for good, so it discovered no cluster at all (spec 22: "The Message
/// Connector cannot discover IM and Presence nodes when the AXL service is not running on the
/// nodes"). Discovery completed only with some cluster discovered, so the node never asked
/// the cloud whom it serves: it counted none of the users the cloud kept on it (spec 69:
/// "Users Enabled for Hybrid Message Service is the number of Hybrid Message-enabled users
/// that Webex has assigned to this particular Expressway cluster"). Every cluster failed is a
/// settled discovery too: the node fetches its assignments, polls them, learns their home
/// nodes from a peer (seed 66), and keeps asking the publisher.
#[test]
fn a_restart_that_discovers_no_cluster_still_learns_whom_it_serves() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let t = Duration::from_secs(300);
    let mut n = node();
    n.resume_registration(SavedRegistration {
        connector_id: "exp-a-1".into(),
        connector_token: "con-1".into(),
    });
    n.start(t);
    http_requests(&mut n);
    let at = n.poll_timeout(t).expect("a heartbeat");
    n.handle_timeout(at, &mut rng);
    let hb = only(http_requests(&mut n), "/v1/connectors/heartbeat");
    let ok = json!({"connector_id": "exp-a-1", "state": "registered", "up": true});
    n.handle_http(at, hb.id, 200, ok.to_string().as_bytes(), &mut rng);
    let axl = only(http_requests(&mut n), "/axl/");
    n.handle_http_failure(at, axl.id, "connection refused", &mut rng);
    assert!(
        n.axl_fault().is_some(),
        "the status log shows the AXL fault"
    );
    let fetch = only(http_requests(&mut n), "/v1/connectors/assignments");
    let users = json!({"users": [ALICE]}).to_string();
    n.handle_http(at, fetch.id, 200, users.as_bytes(), &mut rng);
    assert!(n.assigned().contains(ALICE), "{:?}", n.assigned());
    let polls = http_requests(&mut n);
    assert!(
        polls.iter().any(|r| r.path == "/v1/presence/query"),
        "{polls:?}"
    );
    // exp-a-2 discovered alice before the publisher failed: it tells her home node.
    let mut two = node();
    let alice = AxlUser {
        userid: "alice".into(),
        email: Some(ALICE.into()),
        jid: ALICE.into(),
        home: "imp-a-2".into(),
        intercluster: false,
    };
    two.directory = Directory::build(&[("a".into(), vec![alice])]);
    two.on_heartbeat(at, &answer_with_peer(&n, "exp-a-1", at));
    n.on_heartbeat(at, &answer_with_peer(&two, "exp-a-2", at));
    let page = n.status_page(at);
    assert_eq!(page.enabled, 1, "{page:?}");
    assert!(page.consistent().is_ok(), "{page:?}");
    // The publisher is asked again after a backoff: once back, it is discovered again.
    let mut asked_again = false;
    let mut now = at;
    for _ in 0..10 {
        now = n.poll_timeout(now).expect("a timer");
        n.handle_timeout(now, &mut rng);
        asked_again |= http_requests(&mut n).iter().any(|r| r.path == "/axl/");
        if asked_again {
            break;
        }
    }
    assert!(asked_again, "the AXL publisher is asked again");
}

/// `http-errors-at-maintenance-mode-end`, caught by the check that every user the plan serves
/// gets a connector session: Control Hub put exp-a-1 in maintenance mode (spec 29) while it
/// was still registering. The registration's answer started discovery, which set the node
/// Discovering over its Disabled; maintenance mode ended with the node not Disabled, so it
/// never ran again: no presence poll, and the users who did not post from Webex never got a
/// session. The same with the administrator's disable (spec 21). A node disabled meanwhile
/// discovers in the background and runs once enabled again, polling every assigned user.
#[test]
fn a_node_that_registered_while_disabled_runs_once_enabled_again() {
    type Toggle = fn(&mut ConnectorNode, bool, Duration);
    let maintenance: Toggle = |n, enabled, t| n.set_maintenance(!enabled, t);
    let admin: Toggle = |n, enabled, t| n.set_enabled(enabled, t);
    for (what, toggle) in [("maintenance mode", maintenance), ("disable", admin)] {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        let mut n = node();
        n.start(Duration::ZERO);
        let reg = only(requests(&mut n), "/v1/connectors/register");
        toggle(&mut n, false, Duration::from_secs(1));
        let answer = json!({"connector_id": "exp-a-1", "connector_token": "con-1",
            "state": "registered", "ready_at_ms": 0, "ready_in_ms": 0});
        let t = Duration::from_secs(2);
        n.handle_http(t, reg.id, 202, answer.to_string().as_bytes(), &mut rng);
        assert_eq!(
            n.phase(),
            &Phase::Disabled,
            "{what}: disabled while it discovers"
        );
        let axl = only(http_requests(&mut n), "/axl/");
        n.handle_http_failure(t, axl.id, "connection refused", &mut rng);
        let fetch = only(http_requests(&mut n), "/v1/connectors/assignments");
        let users = json!({"users": [ALICE]}).to_string();
        n.handle_http(t, fetch.id, 200, users.as_bytes(), &mut rng);
        http_requests(&mut n);
        assert_eq!(
            n.phase(),
            &Phase::Disabled,
            "{what}: discovered, still disabled"
        );
        let end = Duration::from_secs(200);
        toggle(&mut n, true, end);
        assert_eq!(n.phase(), &Phase::Running, "{what}: runs once enabled");
        let at = n.poll_timeout(end).expect("a poll is due");
        assert_eq!(at, end, "{what}");
        n.handle_timeout(at, &mut rng);
        let polls: Vec<HttpRequest> = http_requests(&mut n)
            .into_iter()
            .filter(|r| r.path == "/v1/presence/query")
            .collect();
        assert_eq!(polls.len(), 1, "{what}: {polls:?}");
        assert_eq!(body_of(&polls[0]), json!({"emails": [ALICE]}), "{what}");
    }
}

/// Explore seed 20415, caught by `liveness`'s first sessions: exp-a-1 restarted (Expressway
/// maintenance mode ended) during a cloud outage, and its event WebSocket, backing off, came
/// up only after the node had fetched its assignments (none yet: the users were Pending) and
/// after the cloud had assigned two users to it on no socket at all. A first connection did
/// not resync, so one of them never had a session. The first connection after a fetch
/// resyncs as a reconnect does; one before any fetch (the usual start) asks nothing, the
/// fetch to come covering it.
#[test]
fn a_first_event_stream_after_the_assignments_fetch_resyncs() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let t = Duration::from_secs(300);
    let mut n = node();
    n.registered = true;
    n.events_connected(t);
    assert!(
        http_requests(&mut n).is_empty(),
        "no fetch yet: nothing to resync"
    );
    n.retry_request(Pending::Assignments { resync: false });
    let fetch = only(http_requests(&mut n), "/v1/connectors/assignments");
    let none = json!({"users": []}).to_string();
    n.handle_http(t, fetch.id, 200, none.as_bytes(), &mut rng);
    http_requests(&mut n);
    n.events_connected(t + Duration::from_secs(5));
    let again = only(http_requests(&mut n), "/v1/connectors/assignments");
    let users = json!({"users": [ALICE]}).to_string();
    n.handle_http(t, again.id, 200, users.as_bytes(), &mut rng);
    assert!(n.assigned().contains(ALICE), "{:?}", n.assigned());
}
