//! Goal: a real HTTP client (curl) talks to the fake Webex cloud served on loopback, which
//! relays to the fake KMS served on loopback as its own process.
//!
//! Starts `hmsim serve kms --config <tmp>` and `hmsim serve cloud --config <tmp>` on free
//! ports, then with curl: logs in, creates a space, fetches its key (relayed to the KMS), posts
//! an activity whose text is a JWE made by `connector::proto::jwe::encrypt`, reads it back with
//! `GET /v1/spaces/{id}/activities` and decrypts it; and checks the JSON error bodies
//! `{"error", "detail"}` of malformed JSON (400), an unknown route (404), an oversized body
//! (413) and a bad token (401). curl (Debian package `curl`) must be installed: the test fails
//! with a clear message otherwise.
//!
//! Run alone: `cargo test -p sim --test interop_curl -- --nocapture`.

mod common;

use common::{KillOnDrop, free_ports};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use connector::proto::jwe::{self, SpaceKey};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Bound on one curl call.
const CURL_TIMEOUT_SECS: &str = "20";
const ADMIN: &str = "admin-Secret-1";
/// The cloud's body limit (`fakes::cloud::BODY_BYTES_MAX`).
const BODY_BYTES_MAX: usize = fakes::cloud::BODY_BYTES_MAX;

/// Starts `hmsim serve <what> --config <config>` and waits for its `listening` line; returns
/// the process and every line it printed up to then.
fn serve(what: &'static str, config: &Path) -> (KillOnDrop, Vec<String>) {
    common::serve(what, config, "its listening line", |l| {
        l.starts_with("listening ")
    })
}

/// One curl call: returns the status and the JSON body. `body` is sent from a file (so that a
/// 2 MiB body does not hit the argument length limit).
fn curl(
    base: &str,
    dir: &Path,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", CURL_TIMEOUT_SECS, "-X", method])
        .args(["-w", "\n%{http_code}"])
        .args(["-H", "Content-Type: application/json"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        let file = dir.join(format!("body-{}.json", std::process::id()));
        std::fs::write(&file, b).expect("write body file");
        cmd.arg("--data-binary").arg(format!("@{}", file.display()));
    }
    cmd.arg(format!("{base}{path}"));
    let out = cmd.output().expect("run curl");
    assert!(
        out.status.success(),
        "curl {method} {path} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (json, status) = text.rsplit_once('\n').expect("curl printed the status");
    let status: u16 = status.trim().parse().expect("numeric status");
    let json = if json.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {json}"))
    };
    (status, json)
}

fn expect(got: (u16, Value), status: u16) -> Value {
    assert_eq!(got.0, status, "{}", got.1);
    got.1
}

fn assert_error(got: (u16, Value), status: u16, kind: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"], kind, "{}", got.1);
    assert!(
        got.1["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{}",
        got.1
    );
}

#[test]
fn curl_against_hmsim_serve_cloud_and_kms() {
    let curl_ok = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        curl_ok,
        "curl is not installed: this test needs it (apt-get install curl)"
    );
    let [cloud_port, kms_port] = free_ports();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("interop-curl");
    std::fs::create_dir_all(&dir).expect("create tmp dir");
    let kms_config = dir.join(format!("kms-{}.yaml", std::process::id()));
    std::fs::write(
        &kms_config,
        format!("name: kms\nseed: 2\nlisten: {{ ip: 127.0.0.1, port: {kms_port} }}\n"),
    )
    .expect("write kms config");
    let cloud_config = dir.join(format!("cloud-{}.yaml", std::process::id()));
    std::fs::write(
        &cloud_config,
        format!(
            "domain: example.com\n\
             admin_token: {ADMIN}\n\
             listen: {{ ip: 127.0.0.1, port: {cloud_port} }}\n\
             kms: {{ name: kms, address: 127.0.0.1, port: {kms_port} }}\n\
             users:\n\
             \x20 - {{ email: alice@example.com, password: alice-pw, entitlements: [paid_licence] }}\n\
             \x20 - {{ email: bob@example.com, password: bob-pw, entitlements: [paid_licence] }}\n\
             clusters:\n\
             \x20 - {{ name: exp-a, size: large, hostnames: [exp-a-1] }}\n"
        ),
    )
    .expect("write cloud config");
    let (_kms, _) = serve("kms", &kms_config);
    let (_cloud, lines) = serve("cloud", &cloud_config);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("registration_token exp-a reg-")),
        "{lines:?}"
    );
    let base = format!("http://127.0.0.1:{cloud_port}");
    let call = |method: &str, path: &str, token: Option<&str>, body: Option<Value>| {
        let body = body.map(|b| b.to_string().into_bytes());
        curl(&base, &dir, method, path, token, body.as_deref())
    };

    // Login, space, key (relayed to the KMS process), encrypted post, read back.
    let login = |email: &str, password: &str| {
        let r = expect(
            call(
                "POST",
                "/v1/login",
                None,
                Some(json!({"email": email, "password": password})),
            ),
            200,
        );
        r["token"].as_str().expect("token").to_owned()
    };
    let alice = login("alice@example.com", "alice-pw");
    let bob = login("bob@example.com", "bob-pw");
    let body = json!({"kind": "direct", "members": ["alice@example.com", "bob@example.com"]});
    let space = expect(call("POST", "/v1/spaces", Some(&alice), Some(body)), 201);
    let space_id = space["space_id"].as_str().expect("space_id").to_owned();
    let uri = space["key_uri"].as_str().expect("key_uri").to_owned();
    assert!(uri.starts_with("kms://kms/keys/"), "{uri}");
    let fetch = |token: &str| {
        let r = expect(
            call(
                "POST",
                "/v1/kms/keys",
                Some(token),
                Some(json!({"uri": uri})),
            ),
            200,
        );
        let bytes = URL_SAFE_NO_PAD
            .decode(r["key"].as_str().expect("key"))
            .expect("base64url key");
        SpaceKey {
            uri: uri.clone(),
            bytes: bytes.try_into().expect("32 bytes"),
        }
    };
    let key = fetch(&alice);
    let text = jwe::encrypt(&key, [7; jwe::IV_BYTES], b"hello over curl");
    let path = format!("/v1/spaces/{space_id}/activities");
    let body = json!({"verb": "post", "encrypted_text": text, "client_id": "curl-1"});
    let posted = expect(call("POST", &path, Some(&alice), Some(body)), 201);
    assert_eq!(posted["duplicate"], false, "{posted}");
    let read = expect(
        call("GET", &format!("{path}?after=0"), Some(&bob), None),
        200,
    );
    let activities = read["activities"].as_array().expect("activities");
    assert_eq!(activities.len(), 1, "{read}");
    let got = activities[0]["encrypted_text"]
        .as_str()
        .expect("encrypted_text");
    assert_eq!(got, text);
    let plain = jwe::decrypt(&fetch(&bob), got).expect("Bob decrypts");
    assert_eq!(plain, b"hello over curl");

    // Error bodies.
    let r = curl(
        &base,
        &dir,
        "POST",
        "/v1/spaces",
        Some(&alice),
        Some(b"{\"kind\": "),
    );
    assert_error(r, 400, "bad_json");
    assert_error(
        call("GET", "/v1/nothing/here", Some(&alice), None),
        404,
        "no_route",
    );
    let big = vec![b' '; BODY_BYTES_MAX + 1];
    let r = curl(&base, &dir, "POST", "/v1/spaces", Some(&alice), Some(&big));
    assert_error(r, 413, "too_large");
    assert_error(
        call("GET", "/v1/me", Some("usr-forged"), None),
        401,
        "unauthorized",
    );
    assert_error(call("GET", "/v1/me", None, None), 401, "unauthorized");
    let r = call(
        "POST",
        "/v1/kms/keys",
        Some(&alice),
        Some(json!({"uri": "kms://kms/keys/00000000-0000-4000-8000-000000000000"})),
    );
    assert_error(r, 404, "kms_not_found");
}
