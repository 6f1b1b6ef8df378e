//! The `hmsim` command line: `run`, `check`.
//!
//! Exit codes: 0 every check passed, 1 a check failed (or the run could not finish),
//! 2 bad input (scenario or arguments), 3 regression against a baseline, 4 an I/O error.

mod explore;

use crate::record::{self, WallFacts};
use crate::run::{self, Progress};
use crate::scenario::{Scenario, units::format_duration};
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
        /// A progress line every this much simulated time (`1m`, `30s`), with the wall and
        /// CPU seconds of the run so far and the machine's uptime (to cut a
        /// `perf record -k boottime` profile); default a line every 10 % of the duration.
        #[arg(long, value_parser = parse_progress_every)]
        progress_every: Option<std::time::Duration>,
        /// Also write trace.jsonl (sessions, sends, deliveries) for debugging.
        #[arg(long)]
        trace: bool,
        /// Also write every chart of the report as a PNG into <out>/plots/ (for chat tools
        /// and issue trackers that do not show SVG).
        #[arg(long)]
        plot_png: bool,
        /// Write run.json only (no HTML, Markdown or JUnit): what `hmsim explore` reads.
        #[arg(long, hide = true)]
        record_only: bool,
    },
    /// Swarm testing: generate a scenario per seed, run each as its own process, shrink every
    /// failure to a minimal scenario (`explore merge` merges shards).
    #[command(args_conflicts_with_subcommands = true)]
    Explore {
        #[command(subcommand)]
        op: Option<explore::ExploreOp>,
        #[command(flatten)]
        args: explore::ExploreArgs,
    },
    /// Validate scenario files without running them.
    Check {
        /// Scenario files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Compare a run record against a baseline (CI regression gate; exit 3 on regression).
    Compare {
        /// Baseline run.json.
        baseline: PathBuf,
        /// Current run.json.
        current: PathBuf,
        /// Thresholds as JSON (fields of `reports::Thresholds`; missing ones keep defaults).
        #[arg(long, long_help = reports::Thresholds::help())]
        thresholds: Option<PathBuf>,
    },
    /// Operations on run records.
    Report {
        #[command(subcommand)]
        op: ReportOp,
    },
    /// Serve a fake on real loopback sockets so that real clients can talk to it.
    Serve {
        #[command(subcommand)]
        target: ServeTarget,
    },
}

/// Parses arguments, runs the command, returns the exit code.
pub fn main() -> i32 {
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
    // A served fake is a long-running server: its INFO lines (such as the registration
    // delay the cloud drew) are its output. A run logs warnings only unless asked.
    init_tracing(if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    });
    match cli.command {
        Command::Run {
            scenario,
            seed,
            out,
            quiet,
            progress_every,
            trace,
            plot_png,
            record_only,
        } => cmd_run(
            &scenario,
            RunFlags {
                seed,
                out,
                quiet,
                progress_every,
                trace,
                plot_png,
                record_only,
            },
        ),
        Command::Explore { op, args } => explore::cmd_explore(op, args),
        Command::Check { files } => cmd_check(&files),
        Command::Compare {
            baseline,
            current,
            thresholds,
        } => cmd_compare(&baseline, &current, thresholds.as_deref()),
        Command::Report {
            op: ReportOp::Merge { records },
        } => cmd_merge(&records),
        Command::Serve { target } => cmd_serve(target),
    }
}

#[derive(Subcommand, Debug)]
enum ReportOp {
    /// Summarize a seed sweep: run records from several seeds or shards.
    Merge {
        /// run.json files.
        #[arg(required = true)]
        records: Vec<PathBuf>,
    },
}

fn read_record(path: &Path) -> Result<reports::RunRecord, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    reports::RunRecord::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn cmd_compare(baseline: &Path, current: &Path, thresholds: Option<&Path>) -> i32 {
    let (b, c) = match (read_record(baseline), read_record(current)) {
        (Ok(b), Ok(c)) => (b, c),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return EXIT_BAD_INPUT;
        }
    };
    let t = match thresholds {
        None => reports::Thresholds::default(),
        Some(p) => match std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|s| {
                serde_json::from_str::<reports::Thresholds>(&s).map_err(|e| e.to_string())
            }) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{}: {e}", p.display());
                return EXIT_BAD_INPUT;
            }
        },
    };
    let cmp = reports::compare(&b, &c, &t);
    println!("{}", cmp.markdown());
    if cmp.regressed() {
        EXIT_REGRESSION
    } else {
        EXIT_OK
    }
}

fn cmd_merge(paths: &[PathBuf]) -> i32 {
    let mut records = Vec::new();
    for p in paths {
        match read_record(p) {
            Ok(r) => records.push(r),
            Err(e) => {
                eprintln!("{e}");
                return EXIT_BAD_INPUT;
            }
        }
    }
    let merged = reports::merge(&records);
    println!("{}", merged.markdown());
    if merged.passed() {
        EXIT_OK
    } else {
        EXIT_CHECK_FAILED
    }
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HMSIM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_timer(SimTime)
        .try_init();
}

/// Stamps each `HMSIM_LOG` line with the simulated time (`t=12.345s`), never the wall clock:
/// a trace read beside `trace.jsonl` lines up with it, and the same seed logs the same stamps.
/// Outside a simulation (setup, checks) the stamp is `t=-`.
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match turmoil::sim_elapsed() {
            Some(t) => write!(w, "t={:.3}s", t.as_secs_f64()),
            None => write!(w, "t=-"),
        }
    }
}

fn cmd_check(files: &[PathBuf]) -> i32 {
    let mut code = EXIT_OK;
    for f in files {
        match crate::load(f) {
            Ok(s) => {
                println!("{}: ok ({})", f.display(), s.name);
                for w in crate::checks::scenario_warnings(&s) {
                    println!("{}: warning: {w}", f.display());
                }
            }
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

/// The options of `hmsim run`.
struct RunFlags {
    seed: Option<u64>,
    out: Option<PathBuf>,
    quiet: bool,
    progress_every: Option<std::time::Duration>,
    trace: bool,
    plot_png: bool,
    record_only: bool,
}

fn cmd_run(file: &Path, flags: RunFlags) -> i32 {
    let s = match crate::load(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_BAD_INPUT;
        }
    };
    let seed = flags.seed.unwrap_or(s.seed);
    if s.topology.expressway_clusters.iter().any(|e| {
        e.test_only_drop_every_nth_to_jabber_after_failover
            .is_some()
    }) {
        println!(
            "TEST ONLY: this scenario plants a connector defect (test_only_drop_every_nth_to_jabber_after_failover)"
        );
    }
    println!("scenario: {} ({})", s.name, file.display());
    println!("seed: {seed}");
    let lines = ProgressLines {
        quiet: flags.quiet,
        every: flags.progress_every,
    };
    let (record, output) = run_scenario_with(&s, file, seed, lines);
    let dir = flags
        .out
        .unwrap_or_else(|| record::default_out_dir(&s, seed));
    if flags.trace
        && let Err(e) = record::write_trace(&dir, &output)
    {
        eprintln!("{e}");
        return EXIT_IO;
    }
    println!("trace digest: {}", record.trace_digest);
    print_summary(&record);
    if flags.record_only {
        return write_record_only(&dir, &record);
    }
    let mut written = match record::write_outputs(&dir, &record) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_IO;
        }
    };
    if flags.plot_png {
        match record::write_plots(&dir.join("plots"), &record, reports::PlotFormat::Png) {
            Ok(w) => written.extend(w),
            Err(e) => {
                eprintln!("{e}");
                return EXIT_IO;
            }
        }
    }
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

/// Writes `run.json` alone (`--record-only`); the exit code says whether the run passed.
fn write_record_only(dir: &Path, r: &reports::RunRecord) -> i32 {
    let json = serde_json::to_string_pretty(r).expect("a record serializes");
    let path = dir.join("run.json");
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&path, json)) {
        eprintln!("{}: {e}", path.display());
        return EXIT_IO;
    }
    if r.outcome.passed {
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
) -> (reports::RunRecord, crate::history::History) {
    let lines = ProgressLines { quiet, every: None };
    run_scenario_with(s, file, seed, lines)
}

/// What progress `hmsim run` prints.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProgressLines {
    /// None at all.
    pub quiet: bool,
    /// A line every this much simulated time (`--progress-every`) instead of every 10 %.
    pub every: Option<std::time::Duration>,
}

/// [`run_scenario`] with its progress lines chosen.
pub fn run_scenario_with(
    s: &Scenario,
    file: &Path,
    seed: u64,
    lines: ProgressLines,
) -> (reports::RunRecord, crate::history::History) {
    let mut reporter = ProgressReporter::new(lines, s.duration.0);
    let started = std::time::Instant::now(); // allow-nondeterminism: wall time around the run

    let opts = run::Options {
        capture_log: crate::checks::needs(s).log,
        awaits: Some(crate::checks::liveness::liveness_awaited),
        progress_every: lines.every,
        self_check_quiescence: false,
    };
    let out = run::run(s, seed, opts, &mut |p| reporter.update(p));
    let wall = WallFacts {
        wall_time_s: started.elapsed().as_secs_f64(),
        peak_rss_bytes: record::peak_rss_bytes(),
    };
    reporter.finish();
    let file_name = file.display().to_string();
    let text = std::fs::read_to_string(file).ok();
    let source = record::Source {
        file: &file_name,
        text: text.as_deref(),
    };
    let r = record::build(s, source, &out, reproduce_command(file, seed), wall);
    (r, out)
}

fn print_summary(r: &reports::RunRecord) {
    let m = &r.metrics;
    if !r.outcome.passed {
        for line in r.failure_lines() {
            println!("FAIL {line}");
        }
    }
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
    println!("{}", messages_line(r));
    println!(
        "latency p50 {} ms, p99 {} ms, max {} ms; {} duplicated",
        m.latency_ms.p50, m.latency_ms.p99, m.latency_ms.max, m.duplicated
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

/// Every message in one category, so the counts add up to `sent`:
/// `messages: 1799 sent = 1684 delivered + 0 lost + 115 at risk undelivered + …`.
pub fn messages_line(r: &reports::RunRecord) -> String {
    // What a crashed client held unsent is shown only when there was some (explore 5779).
    let parts: Vec<String> = message_categories(r)
        .iter()
        .filter(|(label, n)| *n > 0 || *label != HELD_UNSENT)
        .map(|(label, n)| format!("{n} {label}"))
        .collect();
    format!("messages: {} sent = {}", r.metrics.sent, parts.join(" + "))
}

/// The console's label of the messages a client held unsent when its host went down: the one
/// category the console line leaves out at zero.
pub const HELD_UNSENT: &str = "held unsent at a client crash";

/// The message categories of a record with their counts ([`record::CATEGORY_METRICS`]).
pub fn message_categories(r: &reports::RunRecord) -> Vec<(&'static str, u64)> {
    let labels = [
        "delivered",
        "lost",
        "at risk undelivered",
        "not bridged by design",
        "discarded by offline policy",
        HELD_UNSENT,
    ];
    labels
        .into_iter()
        .zip(record::CATEGORY_METRICS)
        .map(|(label, metric)| {
            let n = if metric == "lost" {
                r.metrics.lost
            } else {
                r.metrics.extra.get(metric).copied().unwrap_or(0.0) as u64
            };
            (label, n)
        })
        .collect()
}

/// A progress bar on a terminal; periodic log lines otherwise (CI logs), or with
/// `--progress-every`.
struct ProgressReporter {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    next_line_pct: u64,
    /// `--progress-every`, and the simulated time of the next line.
    every: Option<(std::time::Duration, std::time::Duration)>,
    /// Wall and CPU time when the run started, for the `--progress-every` lines.
    started: (std::time::Instant, Option<std::time::Duration>),
}

impl ProgressReporter {
    fn new(lines: ProgressLines, duration: std::time::Duration) -> Self {
        let bar =
            (!lines.quiet && lines.every.is_none() && std::io::stderr().is_terminal()).then(|| {
                let b = indicatif::ProgressBar::new(duration.as_secs().max(1));
                b.set_style(
                    indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} sim-s {msg}")
                        .expect("static template"),
                );
                b
            });
        let started = (std::time::Instant::now(), process_cpu_time()); // allow-nondeterminism: wall time around the run, printed only
        Self {
            bar,
            quiet: lines.quiet,
            next_line_pct: 0,
            every: lines.every.map(|e| (e, std::time::Duration::ZERO)),
            started,
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
        if self.every.is_some() {
            if self.line_due(p.elapsed) {
                eprintln!(
                    "[hmsim] {:>3}% sim {} · {msg} · {}",
                    pct.min(999),
                    format_duration(p.elapsed),
                    self.clocks()
                );
            }
            return;
        }
        if pct >= self.next_line_pct {
            eprintln!(
                "[hmsim] {:>3}% sim {} · {msg}",
                pct.min(999),
                format_duration(p.elapsed)
            );
            self.next_line_pct = pct - pct % 10 + 10;
        }
    }

    /// Whether a `--progress-every` line is due at simulated time `elapsed`: the first report
    /// at or after each multiple of the interval gets one (and only one).
    fn line_due(&mut self, elapsed: std::time::Duration) -> bool {
        let Some((every, next)) = self.every.as_mut() else {
            return false;
        };
        if elapsed < *next {
            return false;
        }
        let every_ms = every.as_millis().max(1);
        let passed = elapsed.as_millis() / every_ms + 1;
        *next = std::time::Duration::from_millis((passed * every_ms) as u64);
        true
    }

    /// Wall and CPU seconds since the run started, and the machine's uptime (the clock of
    /// `perf record -k boottime`).
    fn clocks(&self) -> String {
        let wall = self.started.0.elapsed().as_secs_f64();
        let cpu = process_cpu_time()
            .zip(self.started.1)
            .map_or("-".into(), |(now, at)| {
                format!("{:.2}", now.saturating_sub(at).as_secs_f64())
            });
        let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
        let uptime = uptime.split_whitespace().next().unwrap_or("-").to_string();
        format!("wall {wall:.2} s · cpu {cpu} s · uptime {uptime}")
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// CPU time this process has run so far (Linux `/proc/self/schedstat`), if known: what a busy
/// shared machine does not inflate, unlike wall time.
fn process_cpu_time() -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(std::time::Duration::from_nanos(ns))
}

/// `--progress-every`: a scenario duration, above zero.
fn parse_progress_every(v: &str) -> Result<std::time::Duration, String> {
    match crate::scenario::units::parse_duration(v)? {
        d if d.is_zero() => Err("--progress-every must be above zero".into()),
        d => Ok(d),
    }
}

/// Runs a server future on a local runtime; a runtime that cannot start is reported like the
/// server's own failure.
fn run_local<E: std::fmt::Display>(
    fut: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), String> {
    match connector::io::net::run_local(fut) {
        Ok(served) => served.map_err(|e| e.to_string()),
        Err(e) => Err(format!("cannot start the runtime: {e}")),
    }
}

/// What `hmsim serve` serves.
#[derive(Subcommand, Debug)]
enum ServeTarget {
    /// One fake IM&P node on loopback: c2s XMPP, the XEP-0114 component port and AXL. The
    /// config (YAML) has `users` [{userid, password, email}], `component` {secret,
    /// sessions_max, create_rate}, `axl` {username, password, axl_role}, and optionally
    /// `domain`, `host`, `version`, `offline_storage`, `mdm`, `listen` {ip, c2s, component,
    /// axl}. Prints `listening <port kind> <ip>:<port>` lines once serving.
    Imp {
        /// Config file (YAML).
        #[arg(long)]
        config: PathBuf,
    },
    /// The fake Webex cloud on loopback (REST + event WebSocket), relaying to a KMS served by
    /// `hmsim serve kms`. The config (YAML) has `admin_token`, `listen` {ip, port}, `kms`
    /// {name, address, port}, and optionally `domain`, `seed`, `users` [{email, password,
    /// entitlements}], `clusters` [{name, size, hostnames}] (format: `fakes::cloud::serve`; example:
    /// `examples/real-mode/cloud.yaml`). Entitlements: `paid_licence`, `message_free`,
    /// `hybrid_message` (Hybrid Message; needs `paid_licence` too). Cluster sizes: `small`,
    /// `medium`, `large`; a cluster's registration token registers its `hostnames`, each
    /// once. Prints `registration_token <cluster> <token>` lines, then `listening
    /// http <ip>:<port>`; logs each connector registration (INFO, stderr) with the delay
    /// Control Hub drew (up to 5 min) and the time it completes.
    Cloud {
        /// Config file (YAML).
        #[arg(long)]
        config: PathBuf,
    },
    /// The fake KMS (or HDS) host on loopback. The config (YAML) has `listen` {ip, port} and
    /// optionally `name` (kms or hds) and `seed`. Prints `listening http <ip>:<port>`.
    Kms {
        /// Config file (YAML).
        #[arg(long)]
        config: PathBuf,
    },
}

fn cmd_serve(target: ServeTarget) -> i32 {
    match target {
        ServeTarget::Imp { config } => serve_imp(&config),
        ServeTarget::Cloud { config } => serve_cloud_or_kms(&config, true),
        ServeTarget::Kms { config } => serve_cloud_or_kms(&config, false),
    }
}

fn load_serve_imp_config(path: &Path) -> Result<fakes::imp::serve::ServeImpConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the file: {e}", path.display()))?;
    // Located like scenario errors: file:line:column, field path, help, "did you mean".
    let cfg: fakes::imp::serve::ServeImpConfig =
        connector::io::located::deserialize(&path.display().to_string(), &text)
            .map_err(|e| e.to_string())?;
    cfg.validate()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(cfg)
}

/// Serves one IM&P node until killed (`fakes::imp::serve`); exit code 2 for a bad config, 4
/// when a port cannot be bound.
fn serve_imp(path: &Path) -> i32 {
    let cfg = match load_serve_imp_config(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_BAD_INPUT;
        }
    };
    let print = |lines: Vec<String>| lines.iter().for_each(|l| println!("{l}"));
    match run_local(fakes::imp::serve::serve(&cfg, print)) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("hmsim serve imp: {e}");
            EXIT_IO
        }
    }
}

/// Serves the fake cloud (`cloud`) or the fake KMS on loopback until killed; exit code 2 for
/// a bad config, 4 when the port cannot be bound.
fn serve_cloud_or_kms(path: &Path, cloud: bool) -> i32 {
    use fakes::cloud::serve::{CloudServeConfig, KmsServeConfig};
    fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the file: {e}", path.display()))?;
        connector::io::located::deserialize(&path.display().to_string(), &text)
            .map_err(|e| e.to_string())
    }
    let what = if cloud { "cloud" } else { "kms" };
    let print = |lines: Vec<String>| {
        for l in lines {
            println!("{l}");
        }
    };
    let served = if cloud {
        let cfg: CloudServeConfig = match load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return EXIT_BAD_INPUT;
            }
        };
        if let Err(e) = fakes::cloud::serve::build_cloud(&cfg) {
            eprintln!("{}: {e}", path.display());
            return EXIT_BAD_INPUT;
        }
        run_local(fakes::cloud::serve::serve_cloud(&cfg, print))
    } else {
        let cfg: KmsServeConfig = match load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return EXIT_BAD_INPUT;
            }
        };
        run_local(fakes::cloud::serve::serve_kms(&cfg, print))
    };
    match served {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("hmsim serve {what}: {e}");
            EXIT_IO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn reporter(every: Option<Duration>) -> ProgressReporter {
        let lines = ProgressLines {
            quiet: false,
            every,
        };
        ProgressReporter::new(lines, Duration::from_secs(3600))
    }

    /// Reports come every 72 s in an hour (2 % of it) unless the run is asked for more; a line
    /// per simulated minute is then due at the first report of each minute, and only there.
    /// Log lines carry the simulated time inside a run and `t=-` outside one.
    #[test]
    fn log_lines_are_stamped_with_the_simulated_time() {
        use tracing_subscriber::fmt::{format::Writer, time::FormatTime};
        let stamp = || {
            let mut out = String::new();
            SimTime.format_time(&mut Writer::new(&mut out)).unwrap();
            out
        };
        assert_eq!(stamp(), "t=-");
        let mut sim = turmoil::Builder::new().build();
        sim.client("c", async move {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            let s = stamp();
            assert!(s.starts_with("t=1.5") && s.ends_with('s'), "{s}");
            Ok(())
        });
        sim.run().unwrap();
    }

    #[test]
    fn progress_every_gives_one_line_per_interval() {
        let mut r = reporter(Some(Duration::from_secs(60)));
        let due: Vec<u64> = (0..=300)
            .map(|s| Duration::from_millis(s * 1_000 + 250))
            .filter(|t| r.line_due(*t))
            .map(|t| t.as_secs())
            .collect();
        assert_eq!(due, [0, 60, 120, 180, 240, 300]);
        // Reports further apart than the interval: one line each, none owed.
        let mut r = reporter(Some(Duration::from_secs(60)));
        let due: Vec<bool> = [0, 150, 151, 180, 400]
            .map(|s| r.line_due(Duration::from_secs(s)))
            .to_vec();
        assert_eq!(due, [true, true, false, true, true]);
        // Without the option no line is due this way (the 10 % lines are).
        assert!(!reporter(None).line_due(Duration::from_secs(60)));
    }

    #[test]
    fn progress_every_is_a_positive_duration() {
        assert_eq!(parse_progress_every("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(
            parse_progress_every("250ms"),
            Ok(Duration::from_millis(250))
        );
        assert!(parse_progress_every("0s").is_err());
        assert!(parse_progress_every("60").is_err());
        let cli = Cli::try_parse_from(["hmsim", "run", "x.yaml", "--progress-every", "2m"])
            .expect("parses");
        assert!(matches!(
            cli.command,
            Command::Run { progress_every: Some(d), .. } if d == Duration::from_secs(120)
        ));
    }
}
