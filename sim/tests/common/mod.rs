//! Helpers shared by the tests that start `hmsim serve` (and the connector) as processes.
// Each test crate that includes this module uses a subset of it.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long building the connector binary may take (a no-op when it is up to date).
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a server may take to print its listening lines.
pub const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A child process, named for messages, killed when the test ends however it ends.
pub struct KillOnDrop(pub Child, pub &'static str);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl KillOnDrop {
    /// Panics if the process has exited (a server must outlive the test).
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.0.try_wait() {
            panic!("{} exited early with {status}", self.1);
        }
    }
}

/// `N` loopback ports free right now (bound, read, released).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let ls: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    std::array::from_fn(|i| ls[i].local_addr().expect("local addr").port())
}

/// Waits up to `limit` for `child` to exit; `None` if it is still running then.
pub fn wait_with_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The lines `child` prints on its piped stdout, read on a thread so a test can wait for
/// "listening …" with a deadline (`recv_timeout`) instead of blocking on the pipe.
pub fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Reads both of `child`'s piped outputs to the end on threads, so that a chatty child never
/// blocks on a full pipe; join the handles (stdout, stderr) once it has exited.
pub fn read_outputs(
    child: &mut Child,
) -> (
    std::thread::JoinHandle<String>,
    std::thread::JoinHandle<String>,
) {
    use std::io::Read as _;
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    (out_t, err_t)
}

/// Starts `hmsim serve <what> --config <config>` and reads its stdout until `ready` says a
/// line is the last one awaited (`awaited` names it for the failure message); returns the
/// process and every line it printed up to then.
pub fn serve(
    what: &'static str,
    config: &Path,
    awaited: &str,
    mut ready: impl FnMut(&str) -> bool,
) -> (KillOnDrop, Vec<String>) {
    let mut server = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_hmsim"))
            .args(["serve", what, "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start hmsim serve {what}: {e}")),
        what,
    );
    let rx = stdout_lines(&mut server.0);
    let deadline = Instant::now() + SERVER_READY_TIMEOUT;
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                eprintln!("[hmsim serve {what}] {line}");
                let last = ready(&line);
                lines.push(line);
                if last {
                    return (server, lines);
                }
            }
            Err(_) => panic!(
                "hmsim serve {what} did not print {awaited} within {SERVER_READY_TIMEOUT:?} \
                 (got {lines:?}; exit status {:?})",
                server.0.try_wait()
            ),
        }
    }
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Builds the `connector` binary in the profile this test was built in and returns its path
/// (from cargo's JSON messages, like escargot).
pub fn connector_binary() -> PathBuf {
    let hmsim = Path::new(env!("CARGO_BIN_EXE_hmsim"));
    let profile_dir = hmsim
        .parent()
        .and_then(Path::file_name)
        .and_then(|d| d.to_str())
        .unwrap_or("debug");
    let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    cmd.current_dir(workspace())
        .args(["build", "-p", "connector", "--bin", "connector"])
        .args(["--message-format=json-render-diagnostics"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    match profile_dir {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    // The same target directory as this test's binaries, wherever CARGO_TARGET_DIR put it.
    if let Some(target) = hmsim.parent().and_then(Path::parent) {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    let mut child = KillOnDrop(cmd.spawn().expect("run cargo build"), "cargo build");
    let stdout = child.0.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut exe = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["reason"] == "compiler-artifact"
                && v["target"]["name"] == "connector"
                && let Some(p) = v["executable"].as_str()
            {
                exe = Some(PathBuf::from(p));
            }
        }
        exe
    });
    let status = wait_with_timeout(&mut child.0, BUILD_TIMEOUT).unwrap_or_else(|| {
        panic!("cargo build of the connector binary took over {BUILD_TIMEOUT:?}")
    });
    assert!(
        status.success(),
        "cargo build of the connector binary failed: {status}"
    );
    reader
        .join()
        .expect("reader thread")
        .expect("cargo build named no `connector` executable")
}

/// Skips the calling test for `reason` (a missing tool such as a Python package), visibly:
/// `SKIPPED <test>: <reason>` goes to the process's stderr directly (the test harness captures
/// only `eprintln!`, so it shows in `cargo test` output with or without `--nocapture`), and
/// the same line is appended to `target/skipped.txt`, which `.ci/run` prints at the end of
/// the run. Under CI (`CI` set) a skip is a failure instead: CI installs every tool.
pub fn skip(test: &str, reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{test} cannot run: {reason} (CI is set: CI must install it)");
    }
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

/// Whether `python -c "import <modules>"` works.
pub fn python_has(python: &str, modules: &str) -> bool {
    Command::new(python)
        .args(["-c", &format!("import {modules}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
