//! Helpers shared by the tests that start `hmsim serve` (and the connector) as processes.
// Each test crate that includes this module uses a subset of it.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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
