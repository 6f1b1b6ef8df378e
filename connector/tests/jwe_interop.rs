//! Interop of `connector::proto::jwe` with a real JOSE implementation, Python `jwcrypto`.
//!
//! Goal: our hand-written JWE (`dir` + `A256GCM`, see the module docs) is the JWE everyone else
//! means. This test writes tokens made by our `encrypt`, with their keys as JWKs, to a temporary
//! directory, and runs `tests/jwe_interop.py`, which decrypts them with jwcrypto and writes
//! tokens of its own; this test then decrypts those with our `decrypt`. Both sides also check
//! that the other refuses tampered or out-of-profile tokens.
//!
//! Needs `python3` with `jwcrypto` (`pip install jwcrypto`). Without it the test is skipped
//! visibly (a `SKIPPED` line in `cargo test` output and in `target/skipped.txt`), unless the
//! `CI` environment variable is set: then it fails, so that CI cannot silently stop checking
//! interop.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use connector::proto::jwe::{self, JweError, SpaceKey};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng as _;
use serde_json::{Value, json};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn jwcrypto_available() -> bool {
    Command::new("python3")
        .args(["-c", "import jwcrypto"])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Skips visibly, as `sim/tests/common`'s `skip` does for the sim crate's tests: the line goes
/// to the process's stderr directly (the harness captures only `eprintln!`, so it shows in
/// `cargo test` output) and is appended to `target/skipped.txt`, which `.ci/run` prints.
fn skip(test: &str, reason: &str) {
    let line = format!("SKIPPED {test}: {reason}");
    let _ = writeln!(std::io::stderr(), "{line}");
    let list = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|target| target.join("skipped.txt"));
    if let Some(list) = list
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&list)
    {
        let _ = writeln!(f, "{line}");
    }
}

fn jwk(key: &SpaceKey) -> Value {
    json!({ "kty": "oct", "k": URL_SAFE_NO_PAD.encode(key.bytes), "kid": key.uri })
}

fn space_key_from_jwk(jwk: &Value) -> SpaceKey {
    assert_eq!(jwk["kty"], "oct", "{jwk}");
    let bytes = URL_SAFE_NO_PAD
        .decode(jwk["k"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap_or_else(|b: Vec<u8>| panic!("JWK k is {} bytes, expected 32: {jwk}", b.len()));
    SpaceKey {
        uri: jwk["kid"].as_str().unwrap().to_owned(),
        bytes,
    }
}

/// One token for the Python side to check.
fn case(name: &str, key: &SpaceKey, token: String, plaintext: &[u8], expect: &str) -> Value {
    json!({
        "name": name,
        "jwk": jwk(key),
        "token": token,
        "plaintext_b64": URL_SAFE_NO_PAD.encode(plaintext),
        "expect": expect,
    })
}

/// Our tokens: several keys (cloud KMS and HDS URIs), plaintext sizes and contents, all from
/// one seed, plus tampered and wrong-key tokens that jwcrypto must refuse.
fn rust_cases() -> Vec<Value> {
    let mut rng = ChaCha20Rng::seed_from_u64(0x1e_5eed);
    let keys: Vec<SpaceKey> = ["kms", "hds", "kms"]
        .iter()
        .enumerate()
        .map(|(i, host)| SpaceKey {
            uri: format!("kms://{host}/keys/6f1c2a9e-0d4b-4c3a-9e8f-00000000000{i}"),
            bytes: jwe::draw_key_bytes(&mut rng),
        })
        .collect();
    let plaintexts: Vec<Vec<u8>> = vec![
        b"hello from hmsim".to_vec(),
        "Gr\u{fc}\u{df}e, \u{4f60}\u{597d}, \u{1f44b}"
            .as_bytes()
            .to_vec(),
        (0..=255u8).cycle().take(1000).collect(),
        br#"{"verb":"post","object":{"objectType":"comment","displayName":"lunch?"}}"#.to_vec(),
        vec![b'x'; 20_000],
    ];
    let mut cases = Vec::new();
    for (i, plaintext) in plaintexts.iter().enumerate() {
        let key = &keys[i % keys.len()];
        let token = jwe::encrypt(key, jwe::draw_iv(&mut rng), plaintext);
        cases.push(case(&format!("rust-{i}"), key, token, plaintext, "ok"));
    }

    let plaintext = b"tamper with me";
    let token = jwe::encrypt(&keys[0], jwe::draw_iv(&mut rng), plaintext);
    let mut segments: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut tag = URL_SAFE_NO_PAD.decode(&segments[4]).unwrap();
    tag[0] ^= 0x01;
    segments[4] = URL_SAFE_NO_PAD.encode(tag);
    let tampered = segments.join(".");
    cases.push(case(
        "rust-tampered-tag",
        &keys[0],
        tampered,
        plaintext,
        "reject",
    ));

    // Same kid, different key bytes: the key the KMS would have handed out before a rotation
    // gone wrong. Authentication must fail.
    let impostor = SpaceKey {
        uri: keys[0].uri.clone(),
        bytes: jwe::draw_key_bytes(&mut rng),
    };
    cases.push(case(
        "rust-wrong-key",
        &impostor,
        token,
        plaintext,
        "reject",
    ));
    cases
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jwe_interop.py")
}

#[test]
fn jwe_interoperates_with_jwcrypto() {
    if !jwcrypto_available() {
        let hint = "python3 with jwcrypto not found: `pip install jwcrypto`";
        if std::env::var_os("CI").is_some() {
            panic!("{hint} (required when CI is set)");
        }
        return skip("jwe_interop", hint);
    }

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("jwe_interop");
    // A previous run's files must not be mistaken for this run's.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ours = rust_cases();
    std::fs::write(
        dir.join("rust_tokens.json"),
        serde_json::to_vec_pretty(&json!({ "cases": ours })).unwrap(),
    )
    .unwrap();

    let output = Command::new("python3")
        .arg(script())
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "jwe_interop.py failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    eprintln!("{}", stdout.trim_end());

    let theirs: Value =
        serde_json::from_slice(&std::fs::read(dir.join("python_tokens.json")).unwrap()).unwrap();
    let theirs = theirs["cases"].as_array().unwrap();
    let mut accepted = 0;
    for case in theirs {
        let name = case["name"].as_str().unwrap();
        let token = case["token"].as_str().unwrap();
        let key = space_key_from_jwk(&case["jwk"]);
        let plaintext = URL_SAFE_NO_PAD
            .decode(case["plaintext_b64"].as_str().unwrap())
            .unwrap();
        match case["expect"].as_str().unwrap() {
            "ok" => {
                assert_eq!(
                    jwe::key_id(token).as_deref(),
                    Ok(key.uri.as_str()),
                    "{name}"
                );
                assert_eq!(jwe::decrypt(&key, token), Ok(plaintext), "{name}");
                accepted += 1;
            }
            "reject" => {
                let error = jwe::decrypt(&key, token).unwrap_err();
                assert!(
                    matches!(error, JweError::MissingKid | JweError::UnsupportedEnc(_)),
                    "{name}: refused for the wrong reason: {error}"
                );
            }
            other => panic!("{name}: unknown expectation {other}"),
        }
    }
    assert!(
        accepted >= 5,
        "jwcrypto produced only {accepted} tokens to accept"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
