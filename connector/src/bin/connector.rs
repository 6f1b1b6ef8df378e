//! `connector`: the Hybrid Message connector in real mode, on real sockets.
//!
//! ```sh
//! connector --config connector.yaml
//! ```
//!
//! Reads the YAML config (format: [`connector::io::real`], also printed by `--help`), checks
//! it against the Message Service rules (spec 11-21), then runs the same core and driver as the
//! simulation over tokio sockets until killed. What Control Hub's registration gave it (its
//! connector token) is kept in `<config stem>.state.json` next to the config (mode 0600,
//! [`connector::io::state`]), so a restart does not need a new registration token. Logs go to stderr (`CONNECTOR_LOG`, default
//! `info`; e.g. `CONNECTOR_LOG=connector=debug`).
//!
//! Exit codes: 2 for a config that cannot be read, parsed or run (every problem, located at
//! `file:line:column` with its field path and a `help:` line, naming the rule broken), 4 when the runtime cannot start.

use clap::Parser;
use connector::io::real;
use std::path::PathBuf;

/// Exit code: the config cannot be run.
const EXIT_BAD_INPUT: i32 = 2;
/// Exit code: the runtime cannot start.
const EXIT_IO: i32 = 4;

#[derive(Parser, Debug)]
#[command(
    name = "connector",
    version,
    about = "The Webex Hybrid Message connector on real sockets (hmsim's real mode)",
    after_long_help = concat!(
        "The config file (YAML), with every key:\n\n",
        include_str!("../io/real-config.yaml"),
        "\nLogs go to stderr; CONNECTOR_LOG sets the filter (default info).\n",
        "Exit codes: 2 bad config (every problem is printed, located at file:line:column with its\n",
        "field path and a help line), 4 the runtime cannot start."
    )
)]
struct Cli {
    /// The config file (YAML; `--help` shows the format).
    #[arg(long)]
    config: PathBuf,
}

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_BAD_INPUT } else { 0 };
        }
    };
    init_tracing();
    let cfg = match real::load(&cli.config) {
        Ok(c) => c,
        Err(problems) => {
            // Located like hmsim's scenario errors: `file:line:column: error at `path`: …`.
            eprintln!("{problems}");
            return EXIT_BAD_INPUT;
        }
    };
    // What registration gave the connector survives a restart in a file next to the config.
    let state_file = connector::io::state::path_for(&cli.config);
    match connector::io::net::run_local(real::run(&cfg, Some(state_file))) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            EXIT_IO
        }
    }
}

fn init_tracing() {
    let filter = real::log_filter(std::env::var("CONNECTOR_LOG").ok().as_deref());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
