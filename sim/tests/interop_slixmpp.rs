//! Goal: a real XMPP library talks to the fake IM&P served on loopback.
//!
//! Starts `hmsim serve imp --config <tmp>` on free ports, then runs
//! `tests/interop/slixmpp_check.py` (slixmpp 1.x): plaintext c2s logins, messages with
//! receipts and chat states, carbons, ping, the XEP-0114 component port with the hybrid
//! session IQs, and AXL (SOAP over HTTP, Python's urllib). When slixmpp is missing the test
//! is skipped visibly ([`common::skip`]: a `SKIPPED` line in `cargo test` output and in
//! `target/skipped.txt`), except under CI (env `CI` set) where it fails: CI must
//! `pip install slixmpp`.
//!
//! Run alone: `cargo test -p sim --test interop_slixmpp -- --nocapture`.

mod common;

use common::{KillOnDrop, free_ports, serve, wait_with_timeout};

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Upper bound on the Python check (it caps itself at 60 s; this is the backstop).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);
const SECRET: &str = "interop-Secret-1";

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn slixmpp_client_and_component_against_hmsim_serve_imp() {
    if !common::python_has(&python(), "slixmpp") {
        let reason = format!(
            "`{} -c 'import slixmpp'` failed: pip install slixmpp",
            python()
        );
        return common::skip("interop_slixmpp", &reason);
    }
    let [c2s, component, axl] = free_ports();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("interop-slixmpp");
    std::fs::create_dir_all(&dir).expect("create tmp dir");
    let config = dir.join(format!("imp-{}.yaml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "domain: example.com\n\
             host: imp-1\n\
             listen: {{ ip: 127.0.0.1, c2s: {c2s}, component: {component}, axl: {axl} }}\n\
             component: {{ secret: {SECRET} }}\n\
             axl: {{ username: hmsim-axl, password: axl-Secret-0 }}\n\
             users:\n\
             \x20 - {{ userid: alice, password: alice-pw, email: alice@example.com }}\n\
             \x20 - {{ userid: bob, password: bob-pw, email: bob@example.com }}\n\
             \x20 - {{ userid: nomail, password: pw }}\n"
        ),
    )
    .expect("write config");

    let mut seen = 0;
    let (mut server, lines) = serve("imp", &config, "its 3 listening lines", |l| {
        seen += usize::from(l.starts_with("listening "));
        seen == 3
    });
    let listening: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("listening "))
        .collect();
    assert!(listening.iter().any(|l| l.ends_with(&format!(":{c2s}"))));
    // Belt and braces: each port accepts before the client starts.
    for port in [c2s, component, axl] {
        let ok = (0..100).any(|_| {
            let c = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if !c {
                std::thread::sleep(Duration::from_millis(50));
            }
            c
        });
        assert!(ok, "port {port} does not accept connections");
    }

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/slixmpp_check.py");
    let mut check = KillOnDrop(
        Command::new(python())
            .arg(&script)
            .args(["--c2s-port", &c2s.to_string()])
            .args(["--component-port", &component.to_string()])
            .args(["--axl-port", &axl.to_string()])
            .args(["--secret", SECRET])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the slixmpp check"),
        "slixmpp check",
    );
    let (out_t, err_t) = common::read_outputs(&mut check.0);
    let status = wait_with_timeout(&mut check.0, SCRIPT_TIMEOUT);
    if status.is_none() {
        let _ = check.0.kill();
    }
    let out = out_t.join().unwrap_or_default();
    let err = err_t.join().unwrap_or_default();
    eprintln!("--- slixmpp_check.py stdout ---\n{out}--- stderr ---\n{err}");
    let status = status.unwrap_or_else(|| panic!("slixmpp check hung past {SCRIPT_TIMEOUT:?}"));
    assert!(
        server.0.try_wait().expect("poll server").is_none(),
        "hmsim serve imp exited during the check"
    );
    assert!(
        status.success(),
        "slixmpp check failed ({status}):\n{out}\n{err}"
    );
    assert!(out.contains("INTEROP OK"), "{out}");
    for step in [
        "AXL listProcessNode",
        "AXL executeSQLQuery",
        "AXL bad credentials refused with 401",
        "wrong password refused",
        "reached both of alice's resources",
        "XEP-0184 receipt",
        "XEP-0085 composing",
        "sent carbon",
        "received carbon",
        "XEP-0045 room created",
        "component with a wrong secret refused",
        "component handshake accepted",
        "hybrid session started",
        "item-not-found",
        "left the group chat when her hybrid session opened (status 333)",
        "invitation to alice on Webex dropped silently",
        "reached the hybrid session",
        "hybrid session stopped",
    ] {
        assert!(out.contains(step), "step `{step}` missing:\n{out}");
    }
    let _ = std::fs::remove_file(&config);
}

#[test]
fn serve_imp_rejects_a_bad_config_with_the_field_path() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("interop-slixmpp");
    std::fs::create_dir_all(&dir).expect("create tmp dir");
    let config = dir.join(format!("bad-{}.yaml", std::process::id()));
    std::fs::write(
        &config,
        "component: { secret: s, colour: blue }\n\
         axl: { username: a, password: b }\n\
         users: []\n",
    )
    .expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_hmsim"))
        .args(["serve", "imp", "--config"])
        .arg(&config)
        .output()
        .expect("run hmsim");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("component") && err.contains("colour"), "{err}");
    // Located like scenario errors, with the valid keys.
    let at = format!("{}:1:", config.display());
    assert!(err.starts_with(&at), "{err}");
    assert!(err.contains("help: "), "{err}");
    let _ = std::fs::remove_file(&config);
}
