//! Helpers shared by the tests that start `hmsim serve` (and the connector) as processes.

use std::io::{BufRead as _, BufReader};
use std::process::Child;
use std::sync::mpsc;

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
