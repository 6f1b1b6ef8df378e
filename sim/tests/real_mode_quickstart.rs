//! Goal: the real-mode quick-start of `docs/real-mode.md` works as written.
//!
//! - `examples/real-mode/run.sh` runs end to end: it starts `hmsim serve kms|cloud|imp` and
//!   the connector from the config files beside it, and `talk.py` makes Bob (Jabber, slixmpp)
//!   and Alice (Webex, REST + WebSocket + jwcrypto) talk through the connector. It runs with
//!   this build's binaries (`HMSIM`, `CONNECTOR`) and `PYTHON` (default `python3`). Without
//!   slixmpp or jwcrypto the test is skipped visibly ([`common::skip`]), or fails under CI.
//! - Both the cloud and the connector print the registration delay and "waiting for Control
//!   Hub until …" (the connector used to sit silent for minutes after `phase=registering`).
//! - The example cloud's seed draws a short registration delay for the order run.sh uses
//!   (the connector registers before anyone logs in), so the quick-start takes seconds.
//! - The example configs are valid as they are (the connector's, once the token is in).
//! - `hmsim serve cloud --help` names the entitlements.
//!
//! Run alone: `cargo test -p sim --test real_mode_quickstart -- --nocapture`.

mod common;

use common::{KillOnDrop, connector_binary, python_has, skip, wait_with_timeout, workspace};

use fakes::cloud::api::{Method, Request};
use fakes::cloud::serve::CloudServeConfig;
use serde_json::json;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Bound on the whole script: its own bounds (the conversation's 480 s) plus the start-ups.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(600);
/// The registration delay the example cloud's seed may draw for the quick-start to stay quick.
const QUICK_DELAY_MAX: Duration = Duration::from_secs(10);

fn example(file: &str) -> PathBuf {
    workspace().join("examples/real-mode").join(file)
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn the_quickstart_script_runs_end_to_end() {
    if !python_has(&python(), "slixmpp, jwcrypto") {
        let reason = format!(
            "`{} -c 'import slixmpp, jwcrypto'` failed: pip install slixmpp jwcrypto",
            python()
        );
        return skip("real_mode_quickstart", &reason);
    }
    let mut run = KillOnDrop(
        Command::new("bash")
            .arg(example("run.sh"))
            .env("HMSIM", env!("CARGO_BIN_EXE_hmsim"))
            .env("CONNECTOR", connector_binary())
            .env("PYTHON", python())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start run.sh"),
        "run.sh",
    );
    let (out_t, err_t) = common::read_outputs(&mut run.0);
    let status = wait_with_timeout(&mut run.0, SCRIPT_TIMEOUT);
    if status.is_none() {
        // run.sh stops its children on TERM (its trap); kill() would leave them running.
        let _ = Command::new("kill").arg(run.0.id().to_string()).status();
        let _ = wait_with_timeout(&mut run.0, Duration::from_secs(10));
    }
    let out = out_t.join().unwrap_or_default();
    let err = err_t.join().unwrap_or_default();
    eprintln!("--- run.sh stdout ---\n{out}--- stderr ---\n{err}");
    let status = status.unwrap_or_else(|| panic!("run.sh ran past {SCRIPT_TIMEOUT:?}"));
    assert!(status.success(), "run.sh failed ({status}):\n{out}\n{err}");
    for line in [
        "[cloud] listening http 127.0.0.1:18443",
        "[imp] listening axl 127.0.0.1:18445",
        "phase=registering",
        "[connector]",
        "registration accepted by Control Hub; it completes after a delay of",
        "[cloud]",
        "waiting for Control Hub until",
        "bob@example.com got from alice@example.com/hm-webex: 'Hi Bob, Alice here on Webex'",
        "alice@example.com got from bob@example.com: 'Hi Alice, Bob here on Jabber'",
        "REAL MODE OK",
        "phase=running",
        "to_webex=1 to_jabber=1",
    ] {
        assert!(
            out.contains(line),
            "`{line}` missing in run.sh's output:\n{out}"
        );
    }
    let waits = out
        .lines()
        .filter(|l| l.contains("waiting for Control Hub until"))
        .collect::<Vec<_>>();
    assert!(
        waits.iter().any(|l| l.contains("[cloud]"))
            && waits.iter().any(|l| l.contains("[connector]")),
        "both sides say until when they wait: {waits:?}"
    );
}

#[test]
fn the_example_cloud_draws_a_short_registration_delay() {
    let text = std::fs::read_to_string(example("cloud.yaml")).expect("read cloud.yaml");
    let cfg: CloudServeConfig = serde_yaml::from_str(&text).expect("cloud.yaml parses");
    let (mut cloud, lines) = fakes::cloud::serve::build_cloud(&cfg).expect("cloud setup");
    let token = lines
        .iter()
        .find_map(|l| l.strip_prefix("registration_token exp-a "))
        .expect("a registration token for exp-a");
    // run.sh starts the connector before anyone logs in: its registration is the first draw.
    let reg = Request {
        method: Method::Post,
        path: "/v1/connectors/register".into(),
        token: Some(token.to_string()),
        body: json!({"hostname": "exp-a-1", "primary": true})
            .to_string()
            .into_bytes(),
    };
    let r = cloud.handle_request(Duration::ZERO, reg);
    assert_eq!(r.status, 202, "{}", r.body);
    let delay = Duration::from_millis(r.body["ready_in_ms"].as_u64().expect("ready_in_ms"));
    assert!(
        delay <= QUICK_DELAY_MAX,
        "seed {} of examples/real-mode/cloud.yaml draws a registration delay of {delay:?} \
         (over {QUICK_DELAY_MAX:?}): the quick-start would wait that long; pick a seed that \
         draws a short one and update the comment there",
        cfg.seed
    );
}

#[test]
fn the_example_connector_config_is_valid_once_the_token_is_in() {
    let text = std::fs::read_to_string(example("connector.yaml")).expect("read connector.yaml");
    let cfg = connector::io::real::parse("connector.yaml", &text).expect("connector.yaml parses");
    assert_eq!(cfg.problems(), Vec::new());
    // The placeholder run.sh replaces is the line it looks for.
    assert!(text.contains("\nregistration_token: "), "{text}");
}

#[test]
fn serve_cloud_help_names_the_entitlements() {
    let out = Command::new(env!("CARGO_BIN_EXE_hmsim"))
        .args(["serve", "cloud", "--help"])
        .output()
        .expect("run hmsim serve cloud --help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    for name in [
        "paid_licence",
        "message_free",
        "hybrid_message",
        "small",
        "large",
    ] {
        assert!(
            help.contains(name),
            "`{name}` missing in serve cloud --help:\n{help}"
        );
    }
}
