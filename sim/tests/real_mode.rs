//! Goal: the real connector binary bridges real sockets end to end, on loopback.
//!
//! Starts `hmsim serve kms`, `hmsim serve cloud` and `hmsim serve imp` on free loopback ports,
//! then the `connector` binary (built from the test with `cargo build -p connector --bin
//! connector --message-format=json`, so it is never stale) with a config pointing at them.
//! Then, over real sockets:
//! - Bob (Jabber, not Hybrid Message) logs in to the fake IM&P over XMPP c2s
//!   ([`fakes::clients::jabber::JabberCore`] on a tokio socket);
//! - Alice (Webex, Hybrid Message) logs in to the cloud's REST API and event WebSocket
//!   ([`connector::io::http`]), waits until Control Hub shows her assigned to the connector,
//!   creates the 1:1 space, fetches its key (relayed to the KMS process) and posts an encrypted
//!   message;
//! - the connector decrypts it and sends it from Alice's session: Bob's Jabber shows it; Bob
//!   answers; the connector encrypts the answer with the space key and posts it: Alice's
//!   WebSocket delivers it and she decrypts it.
//!
//! Finally the connector's log (stderr, debug level for the `connector` crate) must hold none
//! of the run's secrets ([`sim::checks::secrets::scan`]).
//!
//! The cloud's seed is chosen by replaying the cloud's setup in-process so that the
//! registration delay it draws (up to 5 minutes, spec 12) is under [`REGISTRATION_DELAY_MAX`]:
//! the test takes seconds, not minutes. Every wait is bounded and says what it waited for;
//! every child process is killed however the test ends ([`KillOnDrop`]).
//!
//! A second test runs the binary on a config that breaks four rules (spec 11, 14, 17, 21): it
//! exits 2 naming each, located (`file:line:column: error at `hostname`: …`).
//!
//! Run alone: `cargo test -p sim --test real_mode -- --nocapture`.

mod common;

use common::{KillOnDrop, connector_binary, free_ports};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use connector::io::http::{HttpClient, ws_connect};
use connector::proto::http::Method;
use connector::proto::jwe::{self, SpaceKey};
use connector::proto::webex::Event;
use connector::proto::xmpp::{self, Jid};
use fakes::clients::jabber::{ClientEvent, JabberCore};
use fakes::cloud::api::Request;
use fakes::cloud::serve::CloudServeConfig;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng as _;
use serde_json::{Value, json};
use sim::checks::secrets::scan;
use sim::history::{Secret, key_encodings};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Registration delays the chosen cloud seed may draw.
const REGISTRATION_DELAY_MAX: Duration = Duration::from_millis(1_500);
/// From the connector's start until Control Hub shows Alice assigned to it: registration,
/// the registration event or the next heartbeat (30 s), AXL discovery, the user report.
const ASSIGNED_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on each message crossing the bridge.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one login or request.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

const ADMIN: &str = "admin-Secret-9";
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const ALICE_PW: &str = "alice-Secret-3";
const BOB_PW: &str = "bob-Secret-4";
const COMPONENT_SECRET: &str = "component-Secret-5";
const AXL_PASSWORD: &str = "axl-Secret-6";
const IMP_HOST: &str = "imp-1";

/// Starts `hmsim serve <what> --config <config>` and waits for its last `listening` line
/// (`last_kind`); returns the process and every line it printed up to then.
fn serve(what: &'static str, config: &Path, last_kind: &str) -> (KillOnDrop, Vec<String>) {
    let done = format!("listening {last_kind} ");
    common::serve(what, config, &format!("`{done}…`"), |l| {
        l.starts_with(&done)
    })
}

fn cloud_config(seed: u64, cloud_port: u16, kms_port: u16) -> String {
    format!(
        "domain: example.com\n\
         admin_token: {ADMIN}\n\
         seed: {seed}\n\
         listen: {{ ip: 127.0.0.1, port: {cloud_port} }}\n\
         kms: {{ name: kms, address: 127.0.0.1, port: {kms_port} }}\n\
         users:\n\
         \x20 - {{ email: {ALICE}, password: {ALICE_PW}, entitlements: [paid_licence, hybrid_message] }}\n\
         \x20 - {{ email: {BOB}, password: {BOB_PW}, entitlements: [paid_licence] }}\n\
         clusters:\n\
         \x20 - {{ name: exp-a, size: large, hostnames: [exp-a-1] }}\n"
    )
}

/// The first cloud seed whose registration delay, drawn after the setup and Alice's login
/// (the order of this test), is under [`REGISTRATION_DELAY_MAX`]: the served cloud is replayed
/// in-process with the same requests.
fn quick_registration_seed() -> u64 {
    let request = |path: &str, token: Option<String>, body: Value| Request {
        method: Method::Post,
        path: path.into(),
        token,
        body: body.to_string().into_bytes(),
    };
    for seed in 1..20_000 {
        let cfg: CloudServeConfig =
            serde_yaml::from_str(&cloud_config(seed, 1, 2)).expect("cloud config parses");
        let (mut cloud, lines) = fakes::cloud::serve::build_cloud(&cfg).expect("cloud setup");
        let token = lines[0]
            .rsplit(' ')
            .next()
            .expect("registration token line")
            .to_string();
        let login = request(
            "/v1/login",
            None,
            json!({"email": ALICE, "password": ALICE_PW}),
        );
        assert_eq!(cloud.handle_request(Duration::ZERO, login).status, 200);
        let reg = request(
            "/v1/connectors/register",
            Some(token),
            json!({"hostname": "exp-a-1", "primary": true}),
        );
        let r = cloud.handle_request(Duration::ZERO, reg);
        assert_eq!(r.status, 202, "{}", r.body);
        let delay = r.body["ready_at_ms"].as_u64().expect("ready_at_ms");
        if Duration::from_millis(delay) <= REGISTRATION_DELAY_MAX {
            return seed;
        }
    }
    panic!("no cloud seed below 20,000 draws a registration delay under {REGISTRATION_DELAY_MAX:?}")
}

/// Runs `fut` with a bound, panicking with what it waited for.
async fn bounded<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// One REST call on a fresh connection; the status and JSON body.
async fn call(
    cloud: u16,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let stream = TcpStream::connect(("127.0.0.1", cloud))
        .await
        .expect("connect to the cloud");
    let mut c = HttpClient::handshake(stream).await.expect("HTTP handshake");
    c.request(method, path, Some(token), body)
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Bob's Jabber client: logged in over c2s.
struct Jabber {
    core: JabberCore,
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Jabber {
    async fn login(c2s: u16, jid: &str, password: &str) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", c2s))
            .await
            .expect("connect to c2s");
        let core = JabberCore::new(&Jid::parse(jid).expect("jid"), password, "desk");
        let mut j = Jabber {
            core,
            stream,
            buf: vec![0; 16 * 1024],
        };
        loop {
            if j.next_events()
                .await
                .iter()
                .any(|e| matches!(e, ClientEvent::Ready(_)))
            {
                return j;
            }
        }
    }

    /// Writes what the client owes, then reads once; the events that came of it.
    async fn next_events(&mut self) -> Vec<ClientEvent> {
        if let Some(out) = self.core.take_output() {
            self.stream
                .write_all(out.as_bytes())
                .await
                .expect("write to c2s");
        }
        let n = self.stream.read(&mut self.buf).await.expect("read c2s");
        assert!(n > 0, "IM&P closed the Jabber stream");
        let events = self.core.input(&self.buf[..n]);
        if let Some(ClientEvent::Failed(why)) =
            events.iter().find(|e| matches!(e, ClientEvent::Failed(_)))
        {
            panic!("Jabber session failed: {why}");
        }
        events
    }

    /// The next chat message with a body: (from, body).
    async fn next_message(&mut self) -> (String, String) {
        loop {
            for ev in self.next_events().await {
                if let ClientEvent::Stanza(el) = ev
                    && el.name == "message"
                    && let Some(body) = xmpp::body(&el)
                {
                    return (el.attr("from").unwrap_or_default().to_string(), body);
                }
            }
        }
    }

    async fn send(&mut self, el: &connector::proto::xml::Element) {
        self.core.send(el);
        if let Some(out) = self.core.take_output() {
            self.stream
                .write_all(out.as_bytes())
                .await
                .expect("write to c2s");
        }
    }
}

/// The connector's config: the cloud, the token, the IM&P node's ports through `hosts`.
fn connector_config(cloud: u16, token: &str, component: u16, axl: u16) -> String {
    format!(
        "hostname: exp-a-1\n\
         seed: 5\n\
         cloud: {{ host: 127.0.0.1, port: {cloud} }}\n\
         registration_token: {token}\n\
         component_secret: {COMPONENT_SECRET}\n\
         hosts:\n\
         \x20 {IMP_HOST}: {{ address: 127.0.0.1, component: {component}, axl: {axl} }}\n\
         message_service:\n\
         \x20 cluster: exp-a\n\
         \x20 nodes: [exp-a-1]\n\
         \x20 publishers:\n\
         \x20   - {{ cluster: imp-a, host: {IMP_HOST}, axl_username: hmsim-axl, axl_password: {AXL_PASSWORD} }}\n"
    )
}

#[test]
fn webex_and_jabber_talk_through_the_real_connector_binary() {
    let connector_exe = connector_binary();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("real-mode");
    std::fs::create_dir_all(&dir).expect("create tmp dir");
    let pid = std::process::id();
    let [kms_port, cloud_port, c2s, component, axl] = free_ports::<5>();

    let kms_config = dir.join(format!("kms-{pid}.yaml"));
    std::fs::write(
        &kms_config,
        format!("name: kms\nseed: 2\nlisten: {{ ip: 127.0.0.1, port: {kms_port} }}\n"),
    )
    .expect("write kms config");
    let seed = quick_registration_seed();
    eprintln!("cloud seed {seed} draws a registration delay under {REGISTRATION_DELAY_MAX:?}");
    let cloud_config_path = dir.join(format!("cloud-{pid}.yaml"));
    std::fs::write(&cloud_config_path, cloud_config(seed, cloud_port, kms_port))
        .expect("write cloud config");
    let imp_config = dir.join(format!("imp-{pid}.yaml"));
    std::fs::write(
        &imp_config,
        format!(
            "domain: example.com\n\
             host: {IMP_HOST}\n\
             listen: {{ ip: 127.0.0.1, c2s: {c2s}, component: {component}, axl: {axl} }}\n\
             component: {{ secret: {COMPONENT_SECRET} }}\n\
             axl: {{ username: hmsim-axl, password: {AXL_PASSWORD} }}\n\
             users:\n\
             \x20 - {{ userid: alice, password: {ALICE_PW}, email: {ALICE} }}\n\
             \x20 - {{ userid: bob, password: {BOB_PW}, email: {BOB} }}\n"
        ),
    )
    .expect("write imp config");

    let (mut kms, _) = serve("kms", &kms_config, "http");
    let (mut cloud, lines) = serve("cloud", &cloud_config_path, "http");
    let (mut imp, _) = serve("imp", &imp_config, "axl");
    let reg_token = lines
        .iter()
        .find_map(|l| l.strip_prefix("registration_token exp-a "))
        .unwrap_or_else(|| panic!("no registration token for exp-a in {lines:?}"))
        .to_string();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    // The connector starts inside the async part, right after Alice's login (the order the
    // seed was chosen for); its log goes to a file that is checked for secrets at the end.
    let log_path = dir.join(format!("connector-{pid}.log"));
    let connector_config_path = dir.join(format!("connector-{pid}.yaml"));
    std::fs::write(
        &connector_config_path,
        connector_config(cloud_port, &reg_token, component, axl),
    )
    .expect("write connector config");
    let mut connector: Option<KillOnDrop> = None;
    let key = local.block_on(&rt, async {
        // Bob logs in to Jabber; Alice to Webex.
        let mut bob = bounded(
            "Bob's Jabber login over c2s",
            STEP_TIMEOUT,
            Jabber::login(c2s, BOB, BOB_PW),
        )
        .await;
        let stream = TcpStream::connect(("127.0.0.1", cloud_port))
            .await
            .expect("connect to the cloud");
        let mut c = HttpClient::handshake(stream).await.expect("HTTP handshake");
        let (status, login) = bounded(
            "Alice's Webex login",
            STEP_TIMEOUT,
            c.request(
                Method::Post,
                "/v1/login",
                None,
                Some(&json!({"email": ALICE, "password": ALICE_PW})),
            ),
        )
        .await
        .expect("login request");
        assert_eq!(status, 200, "{login}");
        let token = login["token"].as_str().expect("token").to_string();

        let log = std::fs::File::create(&log_path).expect("create the connector log");
        connector = Some(KillOnDrop(
            Command::new(&connector_exe)
                .arg("--config")
                .arg(&connector_config_path)
                .env("CONNECTOR_LOG", "connector=debug,info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start the connector binary"),
            "connector",
        ));

        let mut ws = ws_connect(
            TcpStream::connect(("127.0.0.1", cloud_port))
                .await
                .expect("connect to the cloud"),
            &token,
            &mut ChaCha8Rng::seed_from_u64(3),
        )
        .await
        .expect("Alice's event WebSocket");

        // Control Hub shows Alice served by the connector (registration, discovery, report).
        let started = Instant::now();
        loop {
            let path = format!("/v1/admin/users/{ALICE}");
            let (_, v) = call(cloud_port, Method::Get, &path, ADMIN, None).await;
            if v["assigned_to"] == "exp-a-1" {
                eprintln!("Alice assigned to exp-a-1 after {:?}", started.elapsed());
                break;
            }
            if started.elapsed() > ASSIGNED_TIMEOUT {
                panic!(
                    "timed out after {ASSIGNED_TIMEOUT:?} waiting for Control Hub to assign \
                     Alice to connector exp-a-1 (last view {v}); connector log:\n{}",
                    tail(&log_path)
                );
            }
            if let Some(c) = connector.as_mut() {
                c.assert_running();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // Alice posts, encrypted with the space key (relayed to the KMS process).
        let body = json!({"kind": "direct", "members": [ALICE, BOB]});
        let (status, space) =
            call(cloud_port, Method::Post, "/v1/spaces", &token, Some(&body)).await;
        assert!(status == 200 || status == 201, "{space}");
        let space_id = space["space_id"].as_str().expect("space_id").to_string();
        let uri = space["key_uri"].as_str().expect("key_uri").to_string();
        let (status, k) = call(
            cloud_port,
            Method::Post,
            "/v1/kms/keys",
            &token,
            Some(&json!({"uri": uri})),
        )
        .await;
        assert_eq!(status, 200, "{k}");
        let bytes: [u8; 32] = URL_SAFE_NO_PAD
            .decode(k["key"].as_str().expect("key"))
            .expect("base64url key")
            .try_into()
            .expect("32 bytes");
        let key = SpaceKey { uri, bytes };
        let text = jwe::encrypt(&key, [9; jwe::IV_BYTES], b"ping from webex over loopback");
        let (status, posted) = call(
            cloud_port,
            Method::Post,
            &format!("/v1/spaces/{space_id}/activities"),
            &token,
            Some(&json!({"verb": "post", "encrypted_text": text})),
        )
        .await;
        assert_eq!(status, 201, "{posted}");

        // Bob's Jabber shows it, from Alice's connector session.
        let (from, body) = bounded(
            "Alice's Webex message to reach Bob's Jabber through the connector",
            MESSAGE_TIMEOUT,
            bob.next_message(),
        )
        .await;
        assert_eq!(from, "alice@example.com/hm-webex");
        assert_eq!(body, "ping from webex over loopback");

        // Bob answers from Jabber; Alice's Webex shows it, decrypted with the space key.
        let reply = xmpp::chat_message(xmpp::NS_CLIENT, "bob-1", None, ALICE, "pong from jabber");
        bob.send(&reply).await;
        let got = bounded(
            "Bob's Jabber reply to reach Alice's Webex WebSocket through the connector",
            MESSAGE_TIMEOUT,
            async {
                loop {
                    let ev = ws.next_event().await.expect("Alice's WebSocket");
                    if let Event::Activity { activity, .. } = ev
                        && activity.actor == BOB
                        && let Some(ct) = activity.encrypted_text.as_deref()
                    {
                        let plain = jwe::decrypt(&key, ct).expect("decrypt with the space key");
                        return String::from_utf8(plain).expect("UTF-8");
                    }
                }
            },
        )
        .await;
        assert_eq!(got, "pong from jabber");
        key
    });
    for server in [&mut kms, &mut cloud, &mut imp] {
        server.assert_running();
    }
    let mut connector = connector.expect("the connector was started");
    connector.assert_running();
    drop(connector);
    let restart_log = restart_keeps_the_registration(&connector_exe, &connector_config_path);

    // The connector's log: it logged its progress, and no secret (the scan of the
    // `no_secrets_in_logs` check: these values, any token by its shape, the key's encodings).
    let log = std::fs::read_to_string(&log_path).expect("read the connector log");
    assert!(log.contains("connector starting"), "{log}");
    assert!(log.contains("phase=running"), "{log}");
    let mut secrets = vec![
        Secret::new("registration token", reg_token.as_str()),
        Secret::new("component secret", COMPONENT_SECRET),
        Secret::new("AXL password", AXL_PASSWORD),
        Secret::new("password of alice", ALICE_PW),
        Secret::new("password of bob", BOB_PW),
    ];
    for (encoding, text) in key_encodings(&key.bytes) {
        secrets.push(Secret::new(format!("space key ({encoding})"), text));
    }
    let found = scan(&secrets, "the connector's log", &log);
    assert!(
        found.is_empty(),
        "secrets in the connector's log: {found:?}"
    );
    for f in [
        kms_config,
        cloud_config_path,
        imp_config,
        connector_config_path,
        log_path,
        restart_log,
    ] {
        let _ = std::fs::remove_file(f);
    }
}

/// Issue 14 item 8: the connector saved what registration gave it next to its config (mode
/// 0600); restarted, it resumes with it and runs again, without using its single-use
/// registration token a second time (the cloud would refuse it: HTTP 403). Returns the
/// restarted connector's log file.
fn restart_keeps_the_registration(exe: &Path, config: &Path) -> PathBuf {
    let state = connector::io::state::path_for(config);
    let saved = connector::io::state::load(&state)
        .expect("a readable state file")
        .unwrap_or_else(|| panic!("no state file at {}", state.display()));
    assert_eq!(saved.connector_id, "exp-a-1");
    assert!(saved.connector_token.starts_with("con-"), "{saved:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&state)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let log_path = config.with_extension("restart.log");
    let log = std::fs::File::create(&log_path).expect("create the restarted connector's log");
    let mut again = KillOnDrop(
        Command::new(exe)
            .arg("--config")
            .arg(config)
            .env("CONNECTOR_LOG", "connector=debug,info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("restart the connector binary"),
        "restarted connector",
    );
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains("phase=running") {
            assert!(
                text.contains("resuming with the saved connector token"),
                "{text}"
            );
            assert!(!text.contains("HTTP 403"), "{text}");
            break;
        }
        assert!(
            started.elapsed() < ASSIGNED_TIMEOUT,
            "the restarted connector did not run again within {ASSIGNED_TIMEOUT:?}:\n{}",
            tail(&log_path)
        );
        again.assert_running();
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(again);
    let _ = std::fs::remove_file(&state);
    log_path
}

/// The last lines of a log file, for failure messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[test]
fn the_connector_binary_refuses_a_config_that_breaks_rules() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("real-mode");
    std::fs::create_dir_all(&dir).expect("create tmp dir");
    let config = dir.join(format!("bad-{}.yaml", std::process::id()));
    // Capital letters in the hostname (spec 11), the platform administrator as the AXL user
    // (spec 17), an NTLM proxy (spec 14), and the connector not enabled (spec 21).
    let text = connector_config(1, "reg-x", 2, 3)
        .replace("exp-a-1", "Exp-A-1")
        .replace("axl_username: hmsim-axl", "axl_username: admin")
        .replace(
            "  publishers:",
            "  enabled: false\n  proxy: { host: proxy, port: 3128, auth: NTLM }\n  publishers:",
        );
    std::fs::write(&config, text).expect("write config");
    let out = Command::new(connector_binary())
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run the connector binary");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for rule in [
        "lowercase-hostname",
        "axl-not-admin",
        "proxy-basic-only",
        "connector-enabled",
    ] {
        assert!(err.contains(rule), "rule {rule} not named:\n{err}");
    }
    assert!(!err.contains(AXL_PASSWORD), "{err}");
    // Located like scenario errors: this node's own hostname (line 1) under the lowercase
    // rule, with what to write instead.
    let at = format!(
        "{}:1:1: error at `hostname`: rule `lowercase-hostname` (spec 11)",
        config.display()
    );
    assert!(err.contains(&at), "{at} missing:\n{err}");
    assert!(
        err.contains("help: write it in lowercase: `exp-a-1`"),
        "{err}"
    );
    let _ = std::fs::remove_file(&config);
}
