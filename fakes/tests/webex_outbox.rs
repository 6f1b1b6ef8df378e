//! The Webex App model's outbox over turmoil, against the fake cloud.
//!
//! - `a_kept_post_is_resent_when_catch_up_fails`: a post the cloud answered 503 waits in the
//!   outbox; every later session logs in and then fails in catch-up (a space created while
//!   the app was away holds a post whose key the KMS, in an outage, cannot give). A real app
//!   sends what it holds once it is connected, whatever its catch-up does: the post must land
//!   (explore seed 5779: the outbox waited through a dozen such sessions until a farm bounce
//!   wiped it).

use connector::io::net::TurmoilNet;
use connector::proto::jwe::{self, SpaceKey};
use fakes::clients::webex::{Mix, WebexPlan, WebexSpec, run_webex};
use fakes::cloud::api::{Method, Request};
use fakes::cloud::http::{self, CLOUD_HOST, CLOUD_PORT};
use fakes::cloud::{Cloud, CloudConfig};
use fakes::observe::{Delivered, Recorder, Sent};
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

const ADMIN: &str = "admin-token";
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.com";

/// One REST request on the cloud's core, as `token`: the answer's body (2xx expected).
fn call(
    cloud: &Rc<RefCell<Cloud>>,
    m: Method,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Value {
    let now = turmoil::sim_elapsed().unwrap_or_default();
    let req = Request {
        method: m,
        path: path.into(),
        token: token.map(str::to_string),
        body: if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        },
    };
    let r = cloud.borrow_mut().handle_request(now, req);
    assert!(r.status < 300, "{m:?} {path}: {} {}", r.status, r.body);
    r.body
}

/// Drives the faults from what Alice's app reports: her first post is answered 503; once
/// that session is over, Bob posts in a new group space with her and the KMS goes down, so
/// every later catch-up of hers fails on that post's key.
struct Faults {
    cloud: Rc<RefCell<Cloud>>,
    sent: RefCell<Vec<String>>,
    sessions_down: RefCell<u32>,
}

impl Recorder for Faults {
    fn sent(&self, _host: &str, ev: Sent) {
        self.sent.borrow_mut().push(ev.id);
        if self.sent.borrow().len() == 1 {
            let rng = ChaCha8Rng::seed_from_u64(3);
            self.cloud.borrow_mut().set_http_errors(1.0, 503, rng);
        }
    }
    fn delivered(&self, _host: &str, _ev: Delivered) {}
    fn session(&self, _host: &str, _user: &str, _device: &str, up: bool, _reason: &str) {
        if up {
            return;
        }
        *self.sessions_down.borrow_mut() += 1;
        if *self.sessions_down.borrow() != 1 || self.sent.borrow().is_empty() {
            return;
        }
        let c = &self.cloud;
        c.borrow_mut()
            .set_http_errors(0.0, 503, ChaCha8Rng::seed_from_u64(3));
        let login = json!({"email": BOB, "password": "pw"});
        let v = call(c, Method::Post, "/v1/login", None, login);
        let bob = v["token"].as_str().unwrap().to_string();
        let body = json!({"kind": "group", "members": [BOB, ALICE, CAROL]});
        let v = call(c, Method::Post, "/v1/spaces", Some(&bob), body);
        let (space, uri) = (
            v["space_id"].as_str().unwrap(),
            v["key_uri"].as_str().unwrap(),
        );
        let k = call(
            c,
            Method::Post,
            "/v1/kms/keys",
            Some(&bob),
            json!({"uri": uri}),
        );
        let bytes = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            k["key"].as_str().unwrap(),
        )
        .unwrap();
        let key = SpaceKey {
            uri: uri.to_string(),
            bytes: bytes.try_into().unwrap(),
        };
        let text = jwe::encrypt(&key, [7; 12], b"hello all");
        let post = json!({"verb": "post", "encrypted_text": text, "client_id": "b-1"});
        call(
            c,
            Method::Post,
            &format!("/v1/spaces/{space}/activities"),
            Some(&bob),
            post,
        );
        c.borrow_mut().kms_mut().unwrap().set_outage(true);
    }
    fn note(&self, _what: &str) {}
}

#[test]
fn a_kept_post_is_resent_when_catch_up_fails() {
    let cfg = CloudConfig {
        domain: "example.com".into(),
        admin_token: ADMIN.into(),
        kms_host: fakes::kms::CLOUD_HOST.into(),
    };
    let cloud = Rc::new(RefCell::new(Cloud::new(cfg, ChaCha8Rng::seed_from_u64(11))));
    for email in [ALICE, BOB, CAROL] {
        let body = json!({"email": email, "password": "pw", "entitlements": ["paid_licence"]});
        call(&cloud, Method::Post, "/v1/admin/users", Some(ADMIN), body);
    }
    let faults = Rc::new(Faults {
        cloud: cloud.clone(),
        sent: RefCell::default(),
        sessions_down: RefCell::new(0),
    });
    let mut sim = turmoil::Builder::new()
        .rng_seed(1)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .tick_duration(Duration::from_millis(10))
        .simulation_duration(Duration::from_secs(400))
        .build();
    let served = cloud.clone();
    sim.host(CLOUD_HOST, move || {
        let cloud = served.clone();
        async move {
            http::serve(TurmoilNet, cloud, CLOUD_PORT).await?;
            Ok(())
        }
    });
    let recorder = faults.clone();
    sim.client("webex-1", async move {
        let mix = Mix {
            text: 1.0,
            edit: 0.0,
            delete: 0.0,
            file: 0.0,
            typing: 0.0,
            read: 0.0,
        };
        let plan = WebexPlan {
            contacts: vec![BOB.into()],
            mean_interval: Duration::from_secs(10),
            start: Duration::from_secs(5),
            stop: Duration::from_secs(3600),
            mix,
            body: None,
        };
        let spec = WebexSpec {
            net: TurmoilNet,
            host: "webex-1".into(),
            cloud: (CLOUD_HOST.into(), CLOUD_PORT),
            email: ALICE.into(),
            password: "pw".into(),
            plan: Some(plan),
            presence: Default::default(),
            login_at: Duration::ZERO,
            device: "webex.0".into(),
            rng: ChaCha8Rng::seed_from_u64(9),
            recorder,
        };
        let _ = tokio::time::timeout(Duration::from_secs(300), run_webex(spec)).await;
        Ok(())
    });
    sim.run().unwrap();
    assert_eq!(faults.sent.borrow().len(), 1, "one post, answered 503");
    assert!(*faults.sessions_down.borrow() >= 3, "catch-up kept failing");
    let c = cloud.borrow();
    let direct = c
        .messaging()
        .direct_space(ALICE, BOB)
        .expect("the direct space");
    assert_eq!(direct.last_seq(), 1, "the kept post was re-sent and taken");
}
