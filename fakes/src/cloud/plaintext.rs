//! The plaintext check's scanner: does any request body the cloud received contain a message
//! text in clear? (Spec: the cloud only ever sees JWE-encrypted text.) A pure function over
//! the bodies the cloud logged ([`super::Cloud::received_bodies`]) or tapped
//! ([`super::Cloud::set_body_tap`]).
//!
//! A plaintext is searched for as is and as it appears inside a JSON string (escaped quotes,
//! backslashes and control characters), so a client that put the text in a JSON field is
//! caught however it was escaped by `serde_json`. Plaintexts shorter than
//! [`PLAINTEXT_CHARS_MIN`] are skipped: a two-letter text would match inside any token.

use super::ReceivedBody;

/// Shortest plaintext searched for, in characters: shorter ones ("ok", "hi") occur by chance in
/// base64url JWE segments and ids, and would give false alarms.
pub const PLAINTEXT_CHARS_MIN: usize = 4;

/// One plaintext found in one body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// Index of the body in the slice scanned.
    pub body_index: usize,
    /// When the cloud received it, ms since the start of the run.
    pub at_ms: u64,
    /// Method and path of the request.
    pub route: String,
    /// The plaintext found.
    pub plaintext: String,
}

/// Every (body, plaintext) pair where the body contains the plaintext, in body order then
/// plaintext order. Empty plaintexts and ones shorter than [`PLAINTEXT_CHARS_MIN`] are
/// ignored.
pub fn plaintext_leaks(bodies: &[ReceivedBody], plaintexts: &[String]) -> Vec<Leak> {
    let needles: Vec<(&String, String)> = plaintexts
        .iter()
        .filter(|p| p.chars().count() >= PLAINTEXT_CHARS_MIN)
        .map(|p| (p, json_escaped(p)))
        .collect();
    let mut leaks = Vec::new();
    for (i, b) in bodies.iter().enumerate() {
        for (plain, escaped) in &needles {
            if b.body.contains(plain.as_str()) || b.body.contains(escaped.as_str()) {
                leaks.push(Leak {
                    body_index: i,
                    at_ms: b.at_ms,
                    route: b.route.clone(),
                    plaintext: (*plain).clone(),
                });
            }
        }
    }
    leaks
}

/// The text as it appears between the quotes of a JSON string written by `serde_json`.
fn json_escaped(text: &str) -> String {
    let quoted = serde_json::to_string(text).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(&quoted)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector::proto::jwe::{self, SpaceKey};
    use serde_json::json;

    fn body(route: &str, body: serde_json::Value) -> ReceivedBody {
        ReceivedBody {
            at_ms: 5,
            route: route.into(),
            body: body.to_string(),
        }
    }

    #[test]
    fn finds_a_planted_plaintext_and_not_a_jwe() {
        let key = SpaceKey {
            uri: "kms://kms/keys/00000000-0000-4000-8000-000000000000".into(),
            bytes: [7; jwe::KEY_BYTES],
        };
        let secret = "meet me at \"noon\"\nby the river".to_owned();
        let token = jwe::encrypt(&key, [1; jwe::IV_BYTES], secret.as_bytes());
        let bodies = [
            body(
                "POST /v1/spaces/space-1/activities",
                json!({"verb": "post", "encrypted_text": token}),
            ),
            body(
                "POST /v1/spaces/space-1/activities",
                json!({"verb": "post", "encrypted_text": secret}),
            ),
        ];
        let leaks = plaintext_leaks(&bodies, &[secret.clone(), "hi".into(), String::new()]);
        assert_eq!(
            leaks,
            [Leak {
                body_index: 1,
                at_ms: 5,
                route: "POST /v1/spaces/space-1/activities".into(),
                plaintext: secret,
            }]
        );
    }

    #[test]
    fn raw_and_multiple_leaks_are_all_reported() {
        let bodies = [
            ReceivedBody {
                at_ms: 1,
                route: "POST /v1/x".into(),
                body: "raw hello world text".into(),
            },
            body(
                "POST /v1/y",
                json!({"a": "hello world", "b": "second secret"}),
            ),
        ];
        let plain = ["hello world".to_owned(), "second secret".to_owned()];
        let found: Vec<(usize, &str)> = plaintext_leaks(&bodies, &plain)
            .iter()
            .map(|l| {
                (
                    l.body_index,
                    if l.plaintext == plain[0] { "a" } else { "b" },
                )
            })
            .collect();
        assert_eq!(found, [(0, "a"), (1, "a"), (1, "b")]);
        assert!(plaintext_leaks(&bodies, &["absent text".into()]).is_empty());
        assert!(plaintext_leaks(&[], &plain).is_empty());
    }
}
