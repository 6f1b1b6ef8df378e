//! The `hmsim` command line: `run`, `check`.
//!
//! Exit codes: 0 every check passed, 1 a check failed (or the run could not finish),
//! 2 bad input (scenario or arguments), 3 regression against a baseline, 4 an I/O error.

use crate::record::{self, WallFacts};
use crate::runner::{self, Progress};
use crate::scenario::{self, Scenario, units::format_duration};
use clap::{Parser, Subcommand};
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

/// Exit code: all checks passed.
pub const EXIT_OK: i32 = 0;
/// Exit code: a check failed or the run did not finish.
pub const EXIT_CHECK_FAILED: i32 = 1;
/// Exit code: bad input.
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code: regression against a baseline.
pub const EXIT_REGRESSION: i32 = 3;
/// Exit code: could not write outputs.
pub const EXIT_IO: i32 = 4;

#[derive(Parser, Debug)]
#[command(
    name = "hmsim",
    version,
    about = "Deterministic simulation and load tests for Webex Hybrid Message"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a scenario and write its run record and reports.
    Run {
        /// Scenario file (YAML).
        scenario: PathBuf,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Output directory (default: target/hmsim/<scenario>/<seed>/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// No progress output.
        #[arg(long)]
        quiet: bool,
    },
    /// Validate scenario files without running them.
    Check {
        /// Scenario files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Parses arguments, runs the command, returns the exit code.
pub fn main() -> i32 {
    init_tracing();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                EXIT_BAD_INPUT
            } else {
                EXIT_OK
            };
        }
    };
    match cli.command {
        Command::Run {
            scenario,
            seed,
            out,
            quiet,
        } => cmd_run(&scenario, seed, out, quiet),
        Command::Check { files } => cmd_check(&files),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HMSIM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}

fn cmd_check(files: &[PathBuf]) -> i32 {
    let mut code = EXIT_OK;
    for f in files {
        match scenario::load(f) {
            Ok(s) => println!("{}: ok ({})", f.display(), s.name),
            Err(e) => {
                eprintln!("{e}");
                code = EXIT_BAD_INPUT;
            }
        }
    }
    code
}

/// The command line that reproduces a run.
pub fn reproduce_command(file: &Path, seed: u64) -> String {
    format!(
        "cargo run -p sim --release -- run {} --seed {seed}",
        file.display()
    )
}

fn cmd_run(file: &Path, seed: Option<u64>, out: Option<PathBuf>, quiet: bool) -> i32 {
    let s = match scenario::load(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_BAD_INPUT;
        }
    };
    let seed = seed.unwrap_or(s.seed);
    println!("scenario: {} ({})", s.name, file.display());
    println!("seed: {seed}");
    let (record, _) = run_scenario(&s, file, seed, quiet);
    let dir = out.unwrap_or_else(|| record::default_out_dir(&s, seed));
    println!("trace digest: {}", record.trace_digest);
    print_summary(&record);
    let written = match record::write_outputs(&dir, &record) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_IO;
        }
    };
    println!(
        "wrote: {}",
        written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("reproduce: {}", record.reproduce);
    if record.outcome.passed {
        EXIT_OK
    } else {
        EXIT_CHECK_FAILED
    }
}

/// Runs a loaded scenario and builds its record (used by the CLI and the test harness).
pub fn run_scenario(
    s: &Scenario,
    file: &Path,
    seed: u64,
    quiet: bool,
) -> (reports::RunRecord, runner::RunOutput) {
    let mut reporter = ProgressReporter::new(quiet, s.duration.0);
    // allow-nondeterminism: wall time is measured around the simulation, never inside it.
    let started = std::time::Instant::now();
    let out = runner::run(s, seed, &mut |p| reporter.update(p));
    let wall = WallFacts {
        wall_time_s: started.elapsed().as_secs_f64(),
        peak_rss_bytes: record::peak_rss_bytes(),
    };
    reporter.finish();
    let r = record::build(
        s,
        &file.display().to_string(),
        &out,
        reproduce_command(file, seed),
        wall,
    );
    (r, out)
}

fn print_summary(r: &reports::RunRecord) {
    let m = &r.metrics;
    println!(
        "simulated {} in {:.2}s wall ({:.0} sim-s/wall-s), {} steps, peak RSS {}",
        format_duration(std::time::Duration::from_secs_f64(
            m.extra.get("simulated_s").copied().unwrap_or(0.0)
        )),
        m.wall_time_s,
        m.sim_seconds_per_wall_second,
        m.steps,
        m.peak_rss_bytes
            .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
            .unwrap_or_else(|| "n/a".into())
    );
    println!(
        "messages: {} sent, {} delivered, {} lost, {} duplicated; latency p50 {} ms, p99 {} ms, max {} ms",
        m.sent,
        m.delivered,
        m.lost,
        m.duplicated,
        m.latency_ms.p50,
        m.latency_ms.p99,
        m.latency_ms.max
    );
    if let Some(f) = &r.outcome.failure {
        println!("RUN FAILED: {f}");
    }
    for c in &r.checks {
        let status = match c.status {
            reports::Status::Pass => "PASS",
            reports::Status::Fail => "FAIL",
        };
        println!("check {status} {}: {}", c.name, c.detail);
    }
    println!("result: {}", if r.outcome.passed { "PASS" } else { "FAIL" });
}

/// A progress bar on a terminal; periodic log lines otherwise (CI logs).
struct ProgressReporter {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    next_line_pct: u64,
}

impl ProgressReporter {
    fn new(quiet: bool, duration: std::time::Duration) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(duration.as_secs().max(1));
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} sim-s {msg}")
                    .expect("static template"),
            );
            b
        });
        Self {
            bar,
            quiet,
            next_line_pct: 0,
        }
    }

    fn update(&mut self, p: Progress) {
        if self.quiet {
            return;
        }
        let msg = format!("sent {} · devices up {}", p.sent, p.devices_up);
        if let Some(b) = &self.bar {
            b.set_position(p.elapsed.as_secs());
            b.set_message(msg);
            return;
        }
        let pct = (p.elapsed.as_secs_f64() / p.duration.as_secs_f64().max(1e-9) * 100.0) as u64;
        if pct >= self.next_line_pct {
            eprintln!(
                "[hmsim] {:>3}% sim {} · {msg}",
                pct.min(999),
                format_duration(p.elapsed)
            );
            self.next_line_pct = pct - pct % 10 + 10;
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
