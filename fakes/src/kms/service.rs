//! The KMS host's sans-IO request → response core ([`KmsService`]) around [`Kms`]: the routes
//! of host [`crate::kms::CLOUD_HOST`] `kms`, or [`crate::kms::HDS_HOST`] `hds` for
//! on-premises Hybrid Data Security. Its HTTP/1.1 driver and the client the cloud relays with
//! are in [`super::http`]. Clients and the connector never talk to it directly: "the connector
//! reaches the KMS through the cloud" (spec 56-57).
//!
//! ## Routes (JSON bodies; errors `{"error", "detail"}`)
//!
//! | Route | Body → answer |
//! |---|---|
//! | `POST /v1/keys` | `{space_id, principals}` → 201 `{uri, key}` (a new key, authorized to `principals`) |
//! | `POST /v1/keys/fetch` | `{uri, principal}` → `{uri, key}`; 403 `kms_forbidden`, 404 `kms_not_found` |
//! | `POST /v1/keys/authorize` | `{uri, principal}` → `{changed}`; 404 `kms_not_found` |
//! | `POST /v1/keys/revoke` | `{uri, principal}` → `{changed}`; 404 `kms_not_found` |
//! | `PUT /v1/outage` | `{on}` → `{outage}`: the outage switch (answers even during an outage) |
//! | `GET /v1/health` | → `{host, keys}` |
//!
//! `key` is the base64url (no padding) of the 32 key bytes. While the outage switch is on every
//! route but `PUT /v1/outage` answers 503 `kms_unavailable` and changes nothing. Malformed JSON
//! 400 `bad_json`, unknown route 404 `no_route`, wrong method 405, body over
//! [`KMS_BODY_BYTES_MAX`] 413 `too_large`.
//!
//! Simplification: the cloud ↔ KMS link is not authenticated (the real one is mutually
//! authenticated TLS plus ECDH-negotiated JWE requests, spec 60); the KMS trusts the principal
//! the cloud names.

use super::keys::{Kms, KmsError};
use crate::rest::{Method, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use connector::proto::jwe::{KEY_BYTES, SpaceKey};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The KMS port (HTTPS in reality; plain TCP in the simulation, which models no TLS:
/// docs/protocols.md).
pub const KMS_PORT: u16 = 443;
/// Largest request body, in bytes. The biggest body creates a key for a group space: at most
/// the cloud's `MEMBERS_PER_SPACE_MAX` (100) members and as many connectors, about 100 bytes
/// each; 64 KiB leaves room while bounding what a request can make the KMS buffer.
pub const KMS_BODY_BYTES_MAX: usize = 64 * 1024;
/// Principals in one key creation: every member of the largest space (the cloud's
/// `MEMBERS_PER_SPACE_MAX`, 100) plus a serving connector per member. The cloud asserts at
/// compile time that its space limit fits (the KMS does not import the cloud).
pub const KMS_PRINCIPALS_MAX: usize = 200;

/// Body of `POST /v1/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    /// The space the key is for.
    pub space_id: String,
    /// Who may fetch it: member emails and `connector:<id>` principals.
    pub principals: Vec<String>,
}

/// Body of `POST /v1/keys/{fetch,authorize,revoke}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPrincipalBody {
    /// The key URI.
    pub uri: String,
    /// The principal asking for (or being granted, or losing) the key.
    pub principal: String,
}

/// Body of `PUT /v1/outage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageBody {
    /// Whether the KMS is down.
    pub on: bool,
}

/// One KMS operation, as the cloud asks for it (over HTTP, or in-process with
/// [`KmsCall::run_local`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmsCall {
    /// Create a space's key, authorized to `principals`.
    CreateKey {
        /// The space.
        space_id: String,
        /// Member emails and `connector:<id>` principals.
        principals: Vec<String>,
    },
    /// Release a key to a principal.
    FetchKey {
        /// The key URI.
        uri: String,
        /// Who asks.
        principal: String,
    },
    /// Add a principal to a key's authorization list.
    Authorize {
        /// The key URI.
        uri: String,
        /// Who is granted the key.
        principal: String,
    },
    /// Remove a principal from a key's authorization list.
    Revoke {
        /// The key URI.
        uri: String,
        /// Who loses the key.
        principal: String,
    },
}

/// A successful KMS answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmsReply {
    /// A key (created or fetched).
    Key(SpaceKey),
    /// Whether an authorization change changed the list.
    Changed(bool),
}

impl KmsCall {
    /// The HTTP request for this call: method, path and JSON body.
    pub fn request(&self) -> (Method, &'static str, Value) {
        let pair = |uri: &String, principal: &String| json!({"uri": uri, "principal": principal});
        match self {
            KmsCall::CreateKey {
                space_id,
                principals,
            } => (
                Method::Post,
                "/v1/keys",
                json!({"space_id": space_id, "principals": principals}),
            ),
            KmsCall::FetchKey { uri, principal } => {
                (Method::Post, "/v1/keys/fetch", pair(uri, principal))
            }
            KmsCall::Authorize { uri, principal } => {
                (Method::Post, "/v1/keys/authorize", pair(uri, principal))
            }
            KmsCall::Revoke { uri, principal } => {
                (Method::Post, "/v1/keys/revoke", pair(uri, principal))
            }
        }
    }

    /// Runs the call on an in-process KMS (keys drawn from `rng`).
    ///
    /// # Errors
    /// The [`KmsError`] the KMS answers.
    pub fn run_local(&self, kms: &mut Kms, rng: &mut ChaCha8Rng) -> Result<KmsReply, KmsError> {
        match self {
            KmsCall::CreateKey {
                space_id,
                principals,
            } => kms.create_key(space_id, principals, rng).map(KmsReply::Key),
            KmsCall::FetchKey { uri, principal } => {
                kms.fetch_key(uri, principal).map(KmsReply::Key)
            }
            KmsCall::Authorize { uri, principal } => {
                kms.authorize(uri, principal).map(KmsReply::Changed)
            }
            KmsCall::Revoke { uri, principal } => kms.revoke(uri, principal).map(KmsReply::Changed),
        }
    }

    /// Reads the KMS's HTTP answer to this call. Anything but a well-formed 2xx, 403 or 404
    /// (5xx, garbage) counts as [`KmsError::Unavailable`]: the caller retries later.
    ///
    /// # Errors
    /// The [`KmsError`] the answer stands for.
    pub fn parse_answer(&self, status: u16, body: &Value) -> Result<KmsReply, KmsError> {
        let (uri, principal) = match self {
            KmsCall::CreateKey { .. } => (None, None),
            KmsCall::FetchKey { uri, principal }
            | KmsCall::Authorize { uri, principal }
            | KmsCall::Revoke { uri, principal } => (Some(uri), Some(principal)),
        };
        match status {
            200..=299 => match self {
                KmsCall::CreateKey { .. } | KmsCall::FetchKey { .. } => {
                    key_from_json(body).map(KmsReply::Key)
                }
                _ => body["changed"]
                    .as_bool()
                    .map(KmsReply::Changed)
                    .ok_or(KmsError::Unavailable),
            },
            403 => Err(KmsError::Forbidden {
                uri: uri.cloned().unwrap_or_default(),
                principal: principal.cloned().unwrap_or_default(),
            }),
            404 if uri.is_some() => Err(KmsError::NotFound {
                uri: uri.cloned().unwrap_or_default(),
            }),
            _ => Err(KmsError::Unavailable),
        }
    }
}

fn key_json(key: &SpaceKey) -> Value {
    json!({"uri": key.uri, "key": URL_SAFE_NO_PAD.encode(key.bytes)})
}

fn key_from_json(body: &Value) -> Result<SpaceKey, KmsError> {
    let uri = body["uri"].as_str().ok_or(KmsError::Unavailable)?;
    let bytes = body["key"]
        .as_str()
        .and_then(|k| URL_SAFE_NO_PAD.decode(k).ok())
        .and_then(|b| <[u8; KEY_BYTES]>::try_from(b).ok())
        .ok_or(KmsError::Unavailable)?;
    Ok(SpaceKey {
        uri: uri.to_owned(),
        bytes,
    })
}

pub(super) fn error_body(kind: &str, detail: impl std::fmt::Display) -> Value {
    json!({"error": kind, "detail": detail.to_string()})
}

fn kms_error(e: &KmsError) -> Response {
    let kind = match e {
        KmsError::NotFound { .. } => "kms_not_found",
        KmsError::Forbidden { .. } => "kms_forbidden",
        KmsError::Unavailable => "kms_unavailable",
    };
    Response {
        status: e.status(),
        body: error_body(kind, e),
    }
}

/// Counters of the KMS host's HTTP layer (the key counters are [`Kms::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KmsServiceStats {
    /// Requests handled.
    pub requests: u64,
    /// Requests refused as malformed, unknown or oversized (4xx other than 403/404 of keys).
    pub bad_requests: u64,
}

/// The sans-IO KMS host: routes requests to [`Kms`], draws keys from its own RNG.
#[derive(Debug)]
pub struct KmsService {
    kms: Kms,
    rng: ChaCha8Rng,
    stats: KmsServiceStats,
}

impl KmsService {
    /// A KMS host named `host` (it goes into key URIs); `rng`, seeded by the caller from the
    /// run's seed, draws every key.
    pub fn new(host: impl Into<String>, rng: ChaCha8Rng) -> Self {
        KmsService {
            kms: Kms::new(host),
            rng,
            stats: KmsServiceStats::default(),
        }
    }

    /// The KMS (observer's view for checks).
    pub fn kms(&self) -> &Kms {
        &self.kms
    }

    /// Turns the outage fault on or off (the same as `PUT /v1/outage`).
    pub fn set_outage(&mut self, on: bool) {
        self.kms.set_outage(on);
    }

    /// The HTTP layer's counters.
    pub fn stats(&self) -> KmsServiceStats {
        self.stats
    }

    /// Handles one request. Never panics on any input.
    pub fn handle(&mut self, method: Method, path: &str, body: &[u8]) -> Response {
        self.stats.requests += 1;
        let response = self.route(method, path, body);
        if matches!(response.status, 400 | 404 | 405 | 413)
            && response.body["error"] != "kms_not_found"
        {
            self.stats.bad_requests += 1;
        }
        response
    }

    fn route(&mut self, method: Method, path: &str, body: &[u8]) -> Response {
        if body.len() > KMS_BODY_BYTES_MAX {
            return Self::too_large();
        }
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let call = match (method, path) {
            (Method::Put, "/v1/outage") => return self.outage_switch(body),
            _ if self.kms.outage() => {
                // Counted in the KMS's stats like any refused request.
                let e = self.kms.check_up().err().unwrap_or(KmsError::Unavailable);
                return kms_error(&e);
            }
            (Method::Get, "/v1/health") => {
                return Response {
                    status: 200,
                    body: json!({"host": self.kms.host(), "keys": self.kms.key_count()}),
                };
            }
            (Method::Post, _) if KEY_ROUTES.contains(&path) => match key_call(path, body) {
                Ok(call) => call,
                Err(refusal) => return refusal,
            },
            _ if KEY_ROUTES.contains(&path) || ["/v1/outage", "/v1/health"].contains(&path) => {
                return Response {
                    status: 405,
                    body: error_body(
                        "method_not_allowed",
                        format!("method {} not allowed on {path}", method.as_str()),
                    ),
                };
            }
            _ => {
                return Response {
                    status: 404,
                    body: error_body("no_route", format!("no route {} {path}", method.as_str())),
                };
            }
        };
        self.run(&call)
    }

    /// `PUT /v1/outage`: answers even during an outage.
    fn outage_switch(&mut self, body: &[u8]) -> Response {
        match serde_json::from_slice::<OutageBody>(body) {
            Ok(b) => {
                self.kms.set_outage(b.on);
                Response {
                    status: 200,
                    body: json!({"outage": b.on}),
                }
            }
            Err(e) => bad_json(e),
        }
    }

    /// Runs a key call on the store and answers it.
    fn run(&mut self, call: &KmsCall) -> Response {
        match call.run_local(&mut self.kms, &mut self.rng) {
            Ok(KmsReply::Key(key)) => Response {
                status: if matches!(call, KmsCall::CreateKey { .. }) {
                    201
                } else {
                    200
                },
                body: key_json(&key),
            },
            Ok(KmsReply::Changed(changed)) => Response {
                status: 200,
                body: json!({"changed": changed}),
            },
            Err(e) => kms_error(&e),
        }
    }

    /// Counts and answers a body the driver stopped reading at [`KMS_BODY_BYTES_MAX`].
    pub fn refuse_too_large(&mut self) -> Response {
        self.stats.requests += 1;
        self.stats.bad_requests += 1;
        Self::too_large()
    }

    fn too_large() -> Response {
        Response {
            status: 413,
            body: error_body(
                "too_large",
                format!("body exceeds the limit of {KMS_BODY_BYTES_MAX} bytes"),
            ),
        }
    }
}

/// The routes that act on keys (all `POST`).
const KEY_ROUTES: [&str; 4] = [
    "/v1/keys",
    "/v1/keys/fetch",
    "/v1/keys/authorize",
    "/v1/keys/revoke",
];

/// The call a `POST` to one of [`KEY_ROUTES`] makes, or the refusal of its body.
fn key_call(path: &str, body: &[u8]) -> Result<KmsCall, Response> {
    if path == "/v1/keys" {
        let b = serde_json::from_slice::<CreateKeyBody>(body).map_err(bad_json)?;
        if b.principals.len() > KMS_PRINCIPALS_MAX {
            return Err(Response {
                status: 400,
                body: error_body(
                    "invalid",
                    format!("at most {KMS_PRINCIPALS_MAX} principals"),
                ),
            });
        }
        return Ok(KmsCall::CreateKey {
            space_id: b.space_id,
            principals: b.principals,
        });
    }
    let b = serde_json::from_slice::<KeyPrincipalBody>(body).map_err(bad_json)?;
    let (uri, principal) = (b.uri, b.principal);
    Ok(match path {
        "/v1/keys/fetch" => KmsCall::FetchKey { uri, principal },
        "/v1/keys/authorize" => KmsCall::Authorize { uri, principal },
        _ => KmsCall::Revoke { uri, principal },
    })
}

fn bad_json(e: serde_json::Error) -> Response {
    Response {
        status: 400,
        body: error_body("bad_json", format!("malformed JSON body: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    fn svc() -> KmsService {
        KmsService::new(crate::kms::CLOUD_HOST, ChaCha8Rng::seed_from_u64(1))
    }

    fn post(s: &mut KmsService, path: &str, body: Value) -> Response {
        s.handle(Method::Post, path, body.to_string().as_bytes())
    }

    #[test]
    fn create_fetch_authorize_revoke_over_routes() {
        let mut s = svc();
        let r = post(
            &mut s,
            "/v1/keys",
            json!({"space_id": "space-1", "principals": ["a@x.com"]}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let call = KmsCall::CreateKey {
            space_id: "space-1".into(),
            principals: vec![],
        };
        let Ok(KmsReply::Key(key)) = call.parse_answer(r.status, &r.body) else {
            panic!("{}", r.body)
        };
        let fetch = |s: &mut KmsService, who: &str| {
            post(
                s,
                "/v1/keys/fetch",
                json!({"uri": key.uri, "principal": who}),
            )
        };
        let r = fetch(&mut s, "a@x.com");
        assert_eq!(r.status, 200);
        assert_eq!(r.body["key"], URL_SAFE_NO_PAD.encode(key.bytes));
        let r = fetch(&mut s, "b@x.com");
        assert_eq!(
            (r.status, r.body["error"].as_str()),
            (403, Some("kms_forbidden"))
        );
        let r = post(
            &mut s,
            "/v1/keys/authorize",
            json!({"uri": key.uri, "principal": "b@x.com"}),
        );
        assert_eq!((r.status, r.body["changed"].as_bool()), (200, Some(true)));
        assert_eq!(fetch(&mut s, "b@x.com").status, 200);
        let r = post(
            &mut s,
            "/v1/keys/revoke",
            json!({"uri": key.uri, "principal": "b@x.com"}),
        );
        assert_eq!(r.status, 200);
        assert_eq!(fetch(&mut s, "b@x.com").status, 403);
        let r = post(
            &mut s,
            "/v1/keys/fetch",
            json!({"uri": "kms://kms/keys/nope", "principal": "a@x.com"}),
        );
        assert_eq!(
            (r.status, r.body["error"].as_str()),
            (404, Some("kms_not_found"))
        );
    }

    #[test]
    fn outage_switch_answers_503_then_recovers() {
        let mut s = svc();
        let r = s.handle(Method::Put, "/v1/outage", br#"{"on": true}"#);
        assert_eq!(r.status, 200);
        let r = post(
            &mut s,
            "/v1/keys",
            json!({"space_id": "space-1", "principals": []}),
        );
        assert_eq!(
            (r.status, r.body["error"].as_str()),
            (503, Some("kms_unavailable"))
        );
        assert_eq!(s.handle(Method::Get, "/v1/health", b"").status, 503);
        s.handle(Method::Put, "/v1/outage", br#"{"on": false}"#);
        assert_eq!(s.handle(Method::Get, "/v1/health", b"").status, 200);
    }

    #[test]
    fn bad_input_gets_json_errors() {
        let mut s = svc();
        let cases: [(Method, &str, Vec<u8>, u16, &str); 4] = [
            (Method::Post, "/v1/keys", b"{".to_vec(), 400, "bad_json"),
            (Method::Get, "/v1/nothing", Vec::new(), 404, "no_route"),
            (
                Method::Get,
                "/v1/keys",
                Vec::new(),
                405,
                "method_not_allowed",
            ),
            (
                Method::Post,
                "/v1/keys",
                vec![b' '; KMS_BODY_BYTES_MAX + 1],
                413,
                "too_large",
            ),
        ];
        for (m, p, body, status, kind) in cases {
            let r = s.handle(m, p, &body);
            assert_eq!((r.status, r.body["error"].as_str()), (status, Some(kind)));
            assert!(r.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        }
        assert_eq!(s.stats().bad_requests, 4);
    }

    #[test]
    fn answers_map_back_to_errors() {
        let call = KmsCall::FetchKey {
            uri: "u".into(),
            principal: "p".into(),
        };
        assert_eq!(
            call.parse_answer(403, &Value::Null),
            Err(KmsError::Forbidden {
                uri: "u".into(),
                principal: "p".into()
            })
        );
        assert_eq!(
            call.parse_answer(404, &Value::Null),
            Err(KmsError::NotFound { uri: "u".into() })
        );
        assert_eq!(
            call.parse_answer(502, &Value::Null),
            Err(KmsError::Unavailable)
        );
        assert_eq!(
            call.parse_answer(200, &json!({"uri": "u"})),
            Err(KmsError::Unavailable)
        );
    }
}
