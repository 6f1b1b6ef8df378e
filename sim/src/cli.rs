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
        /// Also write trace.jsonl (sessions, sends, deliveries) for debugging.
        #[arg(long)]
        trace: bool,
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
        #[arg(long)]
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
            trace,
        } => cmd_run(&scenario, seed, out, quiet, trace),
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

fn cmd_run(file: &Path, seed: Option<u64>, out: Option<PathBuf>, quiet: bool, trace: bool) -> i32 {
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
    let (record, output) = run_scenario(&s, file, seed, quiet);
    let dir = out.unwrap_or_else(|| record::default_out_dir(&s, seed));
    if trace && let Err(e) = record::write_trace(&dir, &output) {
        eprintln!("{e}");
        return EXIT_IO;
    }
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
    let started = std::time::Instant::now(); // allow-nondeterminism: wall time around the run

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
    /// entitlements}], `clusters` [{name, size}] (format: `fakes::cloud::serve`; example:
    /// `examples/real-mode/cloud.yaml`). Entitlements: `paid_licence`, `message_free`,
    /// `hybrid_message` (Hybrid Message; needs `paid_licence` too). Cluster sizes: `small`,
    /// `medium`, `large`. Prints `registration_token <cluster> <token>` lines, then `listening
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

/// The config file of `hmsim serve imp`: one IM&P node (the publisher of a one-node cluster)
/// on real sockets. Example:
///
/// ```yaml
/// domain: example.com            # XMPP domain (default example.com)
/// host: imp-1                    # node host name, as AXL reports it (default imp-1)
/// version: "14.0"                # IM&P version (default 14.0)
/// offline_storage: true          # spec 46 (default true)
/// mdm: true                      # carbons (default true)
/// listen: { ip: 127.0.0.1, c2s: 5222, component: 7400, axl: 8443 }   # these are the defaults
/// component: { secret: s3cret, sessions_max: 100, create_rate: 10/1s }  # limits optional
/// axl: { username: hmsim-axl, password: axl-Secret-0, axl_role: true }
/// users:
///   - { userid: alice, password: alice-pw, email: alice@example.com }
///   - { userid: nomail, password: pw }   # no email: no mailid in AXL
/// ```
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeImpConfig {
    #[serde(default = "serve_default_domain")]
    domain: String,
    #[serde(default = "serve_default_host")]
    host: String,
    #[serde(default = "serve_default_version")]
    version: String,
    #[serde(default = "serve_yes")]
    offline_storage: bool,
    #[serde(default = "serve_yes")]
    mdm: bool,
    #[serde(default)]
    listen: ServeListen,
    component: ServeComponent,
    axl: ServeAxl,
    users: Vec<ServeUser>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeListen {
    #[serde(default = "serve_default_ip")]
    ip: std::net::IpAddr,
    #[serde(default = "serve_default_c2s")]
    c2s: u16,
    #[serde(default = "serve_default_component")]
    component: u16,
    #[serde(default = "serve_default_axl")]
    axl: u16,
}

impl Default for ServeListen {
    fn default() -> Self {
        Self {
            ip: serve_default_ip(),
            c2s: serve_default_c2s(),
            component: serve_default_component(),
            axl: serve_default_axl(),
        }
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeComponent {
    secret: String,
    #[serde(default)]
    sessions_max: Option<usize>,
    #[serde(default)]
    create_rate: Option<scenario::units::Rate>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeAxl {
    username: String,
    password: String,
    #[serde(default = "serve_yes")]
    axl_role: bool,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeUser {
    userid: String,
    password: String,
    #[serde(default)]
    email: Option<String>,
}

fn serve_default_domain() -> String {
    "example.com".into()
}
fn serve_default_host() -> String {
    "imp-1".into()
}
fn serve_default_version() -> String {
    "14.0".into()
}
fn serve_yes() -> bool {
    true
}
fn serve_default_ip() -> std::net::IpAddr {
    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
}
fn serve_default_c2s() -> u16 {
    fakes::imp::driver::C2S_PORT
}
fn serve_default_component() -> u16 {
    fakes::imp::component::COMPONENT_PORT
}
fn serve_default_axl() -> u16 {
    fakes::imp::axl::AXL_PORT
}

fn cmd_serve(target: ServeTarget) -> i32 {
    match target {
        ServeTarget::Imp { config } => serve_imp(&config),
        ServeTarget::Cloud { config } => serve_cloud_or_kms(&config, true),
        ServeTarget::Kms { config } => serve_cloud_or_kms(&config, false),
    }
}

fn load_serve_imp_config(path: &Path) -> Result<ServeImpConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the file: {e}", path.display()))?;
    // Located like scenario errors: file:line:column, field path, help, "did you mean".
    let cfg: ServeImpConfig =
        connector::io::located::deserialize(&path.display().to_string(), &text)
            .map_err(|e| e.to_string())?;
    if crate::scenario::validate::imp_version(&cfg.version).is_none() {
        return Err(format!(
            "{}: version: `{}` is not a version such as `14.0`",
            path.display(),
            cfg.version
        ));
    }
    Ok(cfg)
}

/// Serves one IM&P node until killed; exit code 2 for a bad config, 4 when a port cannot be
/// bound.
fn serve_imp(path: &Path) -> i32 {
    use fakes::imp::{axl, component, driver};
    use std::cell::RefCell;
    use std::rc::Rc;
    let cfg = match load_serve_imp_config(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_BAD_INPUT;
        }
    };
    let version = crate::scenario::validate::imp_version(&cfg.version).unwrap_or((14, 0));
    let dir = Rc::new(fakes::imp::Directory::new(cfg.users.iter().map(|u| {
        fakes::imp::UserRecord {
            userid: u.userid.clone(),
            jid: format!("{}@{}", u.userid.to_ascii_lowercase(), cfg.domain),
            email: u.email.clone(),
            password: u.password.clone(),
            home: cfg.host.clone(),
        }
    })));
    let node_cfg = fakes::imp::NodeConfig {
        host: cfg.host.clone(),
        domain: cfg.domain.clone(),
        version,
        offline_storage: cfg.offline_storage,
        mdm: cfg.mdm,
    };
    let create_rate = cfg.component.create_rate.map(|r| component::CreateRate {
        sessions: r.count.round().clamp(0.0, f64::from(u32::MAX)) as u32,
        per: r.per,
    });
    let comp = component::ComponentService::new(
        component::ComponentConfig {
            secret: cfg.component.secret.clone(),
            sessions_max: cfg.component.sessions_max,
            create_rate,
        },
        &node_cfg,
        dir.clone(),
    );
    let axl_svc = axl::AxlService::new(
        vec![axl::AxlAccount {
            username: cfg.axl.username.clone(),
            password: cfg.axl.password.clone(),
            axl_role: cfg.axl.axl_role,
        }],
        vec![axl::AxlNode {
            name: cfg.host.clone(),
            description: "hmsim IM and Presence publisher".into(),
            version: format!("{}.{}", version.0, version.1),
            prg_peer: None,
            prg_high_availability: false,
        }],
        dir.clone(),
        Vec::new(),
    );
    let node = Rc::new(RefCell::new(fakes::imp::ImpNode::new(
        node_cfg,
        dir,
        Rc::default(),
    )));
    let ports = driver::NodePorts {
        c2s: cfg.listen.c2s,
        component: cfg.listen.component,
        axl: cfg.listen.axl,
        router: None,
    };
    let ip = cfg.listen.ip;
    let net = connector::io::net::TokioNet::new(ip);
    let served = run_local(driver::serve_node(
        net,
        node,
        Rc::new(RefCell::new(comp)),
        Rc::new(RefCell::new(axl_svc)),
        ports,
        || {
            println!("hmsim serve imp: node {} domain {}", cfg.host, cfg.domain);
            println!("listening c2s {ip}:{}", ports.c2s);
            println!("listening component {ip}:{}", ports.component);
            println!("listening axl {ip}:{}", ports.axl);
        },
    ));
    match served {
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
