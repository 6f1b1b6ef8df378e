//! The node's handling of every cloud and AXL answer, fuzzed: whatever status and body come
//! back, in whatever order, it never panics, keeps its timers at or after now, and goes on
//! asking (a refused step is retried, not abandoned).

use super::harness::Harness;
use super::settings;
use proptest::prelude::*;
use std::time::Duration;

/// Answers a fuzzed run plays, one per pending request (or a timer jump when none is).
const ANSWERS_MAX: usize = 60;

/// Bodies that reach each parser: garbage, truncated and wrong-typed JSON, and fragments of
/// the real answers (tokens, users, keys, SOAP) with the wrong shapes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..3_000),
        "\\PC{0,200}".prop_map(String::into_bytes),
        prop_oneof![
            Just(r#"{"connector_token":7,"state":"registered"}"#),
            Just(r#"{"connector_token":"t","state":"registered"}"#),
            Just(r#"{"users":["alice@example.com",3,null]}"#),
            Just(r#"{"users":"everyone"}"#),
            Just(r#"{"states":[{"email":"alice@example.com","last_active_ms":-1}]}"#),
            Just(r#"{"states":[{"email":"alice@example.com","last_active_ms":18446744073709551615,"dnd_until_ms":1e300}]}"#),
            Just(r#"{"space_id":"s","key_uri":"k","members":["a","b","c"]}"#),
            Just(r#"{"key":"AAAA","uri":"k"}"#),
            Just(r#"{"activities":[{"id":null}]}"#),
            Just(r#"{"to":"exp-a-1"}"#),
            Just("<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'><soapenv:Body><r><return><processNode><name>imp-a-1</name></processNode></return></r></soapenv:Body></soapenv:Envelope>"),
            Just("<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'><soapenv:Body><soapenv:Fault><faultstring>no\nrole</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"),
            Just("<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'><soapenv:Body><r><return><row><userid>u</userid><mailid>U@X</mailid><jid/><homenode>nowhere</homenode></row></return></r></soapenv:Body></soapenv:Envelope>"),
            Just("[]"),
            Just("null"),
        ]
        .prop_map(|s| s.as_bytes().to_vec()),
    ]
}

fn answer() -> impl Strategy<Value = (u16, Vec<u8>)> {
    (
        prop_oneof![Just(200u16), Just(202), Just(401), Just(503), 0u16..1000],
        body(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn no_cloud_or_axl_answer_panics_the_node(
        answers in proptest::collection::vec(answer(), 1..ANSWERS_MAX),
    ) {
        let mut h = Harness::new(settings());
        h.start();
        for (status, body) in answers {
            let Some(req) = h.http.pop_front() else {
                let Some(next) = h.node.poll_timeout(h.now) else { break };
                prop_assert!(next >= h.now, "a timer in the past: {next:?} < {:?}", h.now);
                h.run_until(next);
                continue;
            };
            let body = String::from_utf8_lossy(&body).into_owned();
            h.answer(&req, status, &body);
        }
        if let Some(next) = h.node.poll_timeout(h.now) {
            prop_assert!(next >= h.now);
        }
        // Whatever came back, the node still has something to do: a request out or a timer.
        prop_assert!(!h.http.is_empty() || h.node.poll_timeout(h.now).is_some());
        let _ = h.node.status_page(h.now + Duration::from_secs(1));
    }
}

/// Events as the cloud pushes them to a running node, with fuzzed fields.
fn event() -> impl Strategy<Value = String> {
    let activity = (
        "[a-z0-9-]{0,12}",
        prop_oneof![Just("post"), Just("share"), Just("delete"), Just("read")],
        "[A-Za-z0-9_.-]{0,300}",
        proptest::option::of("[a-z0-9-]{0,8}"),
    )
        .prop_map(|(id, verb, ct, target)| {
            serde_json::json!({"type": "activity", "for_user": "alice@example.com", "activity": {
                "id": id, "space_id": "sp-1", "seq": 1, "verb": verb,
                "actor": "alice@example.com", "encrypted_text": ct, "kid": "k",
                "target": target, "target_verb": "share", "target_encrypted_text": ct,
                "edit_of": null, "client_id": null, "via_connector": null, "published_ms": 0,
            }})
            .to_string()
        });
    let assignment = proptest::collection::vec("[a-z]{1,6}@example\\.com", 0..4).prop_map(|u| {
        serde_json::json!({"type": "assignment", "connector_id": "exp-a-1",
            "added": u, "removed": ["alice@example.com"]})
        .to_string()
    });
    prop_oneof![
        activity,
        assignment,
        Just(r#"{"type":"maintenance","connector_id":"exp-a-1","on":true}"#.to_string()),
        Just(r#"{"type":"maintenance","connector_id":"exp-a-1","on":false}"#.to_string()),
        Just(r#"{"type":"typing","space_id":"sp-1","actor":"alice@example.com","typing":true,"for_user":"alice@example.com"}"#.to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_running_node_survives_any_event_and_answer(
        steps in proptest::collection::vec((event(), answer()), 1..30),
    ) {
        let mut h = Harness::new(settings());
        super::alice_open(&mut h);
        for (ev, (status, body)) in steps {
            h.event(&ev);
            while let Some(req) = h.http.pop_front() {
                h.answer(&req, status, &String::from_utf8_lossy(&body));
            }
            if let Some(next) = h.node.poll_timeout(h.now) {
                prop_assert!(next >= h.now);
                h.run_until(next.min(h.now + Duration::from_secs(120)));
            }
        }
        let _ = h.node.status_page(h.now);
    }
}
