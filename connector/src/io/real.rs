//! Real mode: the connector on real sockets, configured by a YAML file. This is what the
//! `connector` binary runs (`connector --config connector.yaml`). It drives the same core
//! ([`ConnectorNode`]) with the same driver ([`super::driver::run`]) as the simulation, over
//! [`TokioNet`] instead of turmoil.
//!
//! ## Config file
//!
//! An example with every key (`connector --help` prints it too):
//!
#![doc = concat!("```yaml\n", include_str!("real-config.yaml"), "```")]
//!
//! [`load`] parses the file (unknown keys and numbers out of their range, [`super::ranges`], are
//! errors, each with its location) and checks it:
//! every rule of [`crate::core::config::validate`] (spec 11-21), plus that `hostname` is
//! lowercase (spec 11) and one of the cluster's nodes. Every problem is reported in the style of
//! hmsim's scenario errors ([`super::located`]): `file:line:column: error at `path`: …`, then
//! a `help:` line with the valid values or a "did you mean". [`run`] then runs until the process is killed.
//!
//! The core's clock is the time since this process started ([`TokioNet`]): times the cloud
//! reports (last activity, DND) are on the cloud's own clock, so the connector and the cloud
//! should start close together (a connector started after the cloud sees activity as more
//! recent than it was, never older).

use super::driver::{self, Peers};
use super::located::{self, Located, PathIndex, Pos};
use super::net::{Net as _, TokioNet};
use super::ranges;
use super::state;
use crate::core::config::{self, ConfigError, ConnectorConfig, ImpPublisher, Proxy};
use crate::core::node::{ConnectorNode, NodeSettings, Phase, SavedRegistration};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// The example config of the module doc, with every key (printed by `connector --help`).
pub const EXAMPLE_CONFIG: &str = include_str!("real-config.yaml");

/// How often the run logs what changed (phase, users, sessions, traffic).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The config file (module doc).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealConfig {
    /// This node's host name.
    pub hostname: String,
    /// RNG seed.
    #[serde(default = "one")]
    pub seed: u64,
    /// The cloud.
    pub cloud: CloudAddress,
    /// The Control Hub registration token.
    #[serde(default)]
    pub registration_token: Option<String>,
    /// The XEP-0114 secret.
    pub component_secret: String,
    /// IM&P ports.
    #[serde(default)]
    pub ports: ImpPorts,
    /// Host name → address overrides.
    #[serde(default)]
    pub hosts: BTreeMap<String, HostAddress>,
    /// This cluster's Message Service configuration.
    pub message_service: MessageService,
    /// The org's other Expressway clusters.
    #[serde(default)]
    pub other_clusters: Vec<MessageService>,
    /// Rates and delays.
    #[serde(default)]
    pub tuning: Tuning,
}

impl fmt::Debug for RealConfig {
    /// Leaves out the secrets (token, component secret; publishers redact their passwords).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealConfig")
            .field("hostname", &self.hostname)
            .field("seed", &self.seed)
            .field("cloud", &self.cloud)
            .field("ports", &self.ports)
            .field("hosts", &self.hosts)
            .field("message_service", &self.message_service)
            .finish_non_exhaustive()
    }
}

/// Where the cloud is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudAddress {
    /// Host name or IP.
    pub host: String,
    /// Port.
    #[serde(default = "cloud_port", deserialize_with = "ranges::port")]
    pub port: u16,
}

/// The IM&P ports the connector asks for.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImpPorts {
    /// XEP-0114 component port.
    #[serde(default = "component_port", deserialize_with = "ranges::port")]
    pub component: u16,
    /// AXL port.
    #[serde(default = "axl_port", deserialize_with = "ranges::port")]
    pub axl: u16,
}

impl Default for ImpPorts {
    fn default() -> Self {
        Self {
            component: driver::COMPONENT_PORT,
            axl: driver::AXL_PORT,
        }
    }
}

/// Where a named host is, with optional per-host ports.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostAddress {
    /// Its IP address.
    pub address: IpAddr,
    /// Its component port, if not `ports.component`.
    #[serde(default, deserialize_with = "ranges::opt_port")]
    pub component: Option<u16>,
    /// Its AXL port, if not `ports.axl`.
    #[serde(default, deserialize_with = "ranges::opt_port")]
    pub axl: Option<u16>,
}

/// A Message Service configuration as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageService {
    /// Expressway cluster name.
    pub cluster: String,
    /// Its nodes, primary first.
    pub nodes: Vec<String>,
    /// The connector's Active setting.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Proxy towards the cloud (absent: direct).
    #[serde(default)]
    pub proxy: Option<ProxyConfig>,
    /// IM&P publishers.
    #[serde(default)]
    pub publishers: Vec<Publisher>,
}

/// One IM&P publisher as written in the file.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publisher {
    /// IM&P cluster name.
    pub cluster: String,
    /// Publisher host.
    pub host: String,
    /// AXL user.
    pub axl_username: String,
    /// AXL password.
    pub axl_password: String,
    /// Certificate validation.
    #[serde(default = "yes")]
    pub certificate_validation: bool,
    /// The IM&P main administrator account.
    #[serde(default = "platform_admin")]
    pub platform_admin: String,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_core(), f)
    }
}

impl Publisher {
    fn to_core(&self) -> ImpPublisher {
        ImpPublisher {
            cluster: self.cluster.clone(),
            host: self.host.clone(),
            axl_username: self.axl_username.clone(),
            axl_password: self.axl_password.clone(),
            certificate_validation: self.certificate_validation,
            platform_admin: self.platform_admin.clone(),
        }
    }
}

/// The proxy towards the cloud as written in the file (absent: direct).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Proxy host.
    pub host: String,
    /// Proxy port.
    #[serde(deserialize_with = "ranges::port")]
    pub port: u16,
    /// Authentication scheme: `none` or `basic` (default); any other is rejected (spec 14).
    #[serde(default = "basic")]
    pub auth: String,
    /// Basic user name.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic password.
    #[serde(default)]
    pub password: Option<String>,
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proxy({}:{}, {})", self.host, self.port, self.auth)
    }
}

impl MessageService {
    /// The core's form of this configuration.
    pub fn to_core(&self) -> ConnectorConfig {
        let proxy = match &self.proxy {
            None => Proxy::None,
            Some(p) if matches!(p.auth.to_ascii_lowercase().as_str(), "none" | "basic") => {
                Proxy::Basic {
                    host: p.host.clone(),
                    port: p.port,
                    credentials: p
                        .username
                        .clone()
                        .map(|u| (u, p.password.clone().unwrap_or_default())),
                }
            }
            Some(p) => Proxy::Other {
                scheme: p.auth.clone(),
            },
        };
        ConnectorConfig {
            cluster: self.cluster.clone(),
            nodes: self.nodes.clone(),
            publishers: self.publishers.iter().map(Publisher::to_core).collect(),
            proxy,
            enabled: self.enabled,
        }
    }
}

/// Rates and delays (module doc).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    /// Session opens per second.
    #[serde(
        default = "session_rate",
        deserialize_with = "ranges::session_rate_per_s"
    )]
    pub session_rate_per_s: f64,
    /// Migration rate: sessions …
    #[serde(
        default = "migration_sessions",
        deserialize_with = "ranges::migration_sessions"
    )]
    pub migration_sessions: f64,
    /// … per this many seconds.
    #[serde(
        default = "migration_per_s",
        deserialize_with = "ranges::migration_per_s"
    )]
    pub migration_per_s: u64,
    /// Upper bound of the failover detection delay, seconds.
    #[serde(
        default = "detection_delay_max_s",
        deserialize_with = "ranges::detection_delay_max_s"
    )]
    pub detection_delay_max_s: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            session_rate_per_s: session_rate(),
            migration_sessions: migration_sessions(),
            migration_per_s: migration_per_s(),
            detection_delay_max_s: detection_delay_max_s(),
        }
    }
}

fn one() -> u64 {
    1
}
fn yes() -> bool {
    true
}
fn cloud_port() -> u16 {
    super::http::CLOUD_PORT
}
fn component_port() -> u16 {
    driver::COMPONENT_PORT
}
fn axl_port() -> u16 {
    driver::AXL_PORT
}
fn basic() -> String {
    "basic".into()
}
fn platform_admin() -> String {
    "admin".into()
}
fn session_rate() -> f64 {
    50.0
}
fn migration_sessions() -> f64 {
    5_000.0
}
fn migration_per_s() -> u64 {
    1_800
}
fn detection_delay_max_s() -> u64 {
    900
}

/// Why a config file cannot be run: every problem found, each located in the file
/// ([`Located`]: `file:line:column: error at `path`: …` and a `help:` line), in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblems(pub Vec<Located>);

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A rule the configuration breaks, at the field to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    /// Field path, such as `message_service.publishers[0].axl_username`.
    pub path: String,
    /// The rule broken (its name and spec item) and how.
    pub message: String,
    /// What would be right.
    pub help: Option<String>,
}

impl fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at `{}`: {}", self.path, self.message)?;
        if let Some(h) = &self.help {
            write!(f, " (help: {h})")?;
        }
        Ok(())
    }
}

/// Reads and checks the config file at `path`.
///
/// # Errors
/// The file cannot be read or parsed (one problem, located, with the valid keys and a "did
/// you mean"), or it breaks rules (one problem per rule broken, each naming its rule and spec
/// item, located at the field to change).
pub fn load(path: &Path) -> Result<RealConfig, ConfigProblems> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigProblems(vec![Located {
            file: file.clone(),
            pos: Pos { line: 1, col: 1 },
            path: String::new(),
            message: format!("cannot read the file: {e}"),
            help: None,
        }])
    })?;
    let cfg = parse(&file, &text).map_err(|e| ConfigProblems(vec![e]))?;
    let problems = cfg.problems();
    if problems.is_empty() {
        return Ok(cfg);
    }
    let index = PathIndex::build(&text);
    let mut located: Vec<Located> = problems
        .into_iter()
        .map(|p| Located {
            file: file.clone(),
            pos: index.find(&p.path),
            path: p.path,
            message: p.message,
            help: p.help,
        })
        .collect();
    located.sort_by_key(|l| l.pos);
    Err(ConfigProblems(located))
}

/// Parses a config file's text (no rule checks: see [`RealConfig::problems`]); `file` names it
/// in the error.
///
/// # Errors
/// The YAML error, located, with the field path and the valid keys or values.
pub fn parse(file: &str, text: &str) -> Result<RealConfig, Located> {
    located::deserialize(file, text)
}

impl RealConfig {
    /// Every rule the configuration breaks, at the field to change: the Message Service rules
    /// (spec 11-21), the lowercase rule for this node's own `hostname` (spec 11), and that
    /// this node is one of its cluster's nodes.
    pub fn problems(&self) -> Vec<RuleProblem> {
        let cluster = self.message_service.to_core();
        let others: Vec<ConnectorConfig> = self
            .other_clusters
            .iter()
            .map(MessageService::to_core)
            .collect();
        let mut out: Vec<RuleProblem> = config::validate(&cluster, &others)
            .iter()
            .map(|e| self.rule_problem(e))
            .collect();
        out.extend(self.hostname_problem(&cluster.nodes));
        out
    }

    /// `hostname`: lowercase (spec 11), and one of the cluster's nodes.
    fn hostname_problem(&self, nodes: &[String]) -> Option<RuleProblem> {
        let lower = self.hostname.to_ascii_lowercase();
        if lower != self.hostname {
            return Some(RuleProblem {
                path: "hostname".into(),
                message: ConfigError::UppercaseHostname(self.hostname.clone()).to_string(),
                help: Some(format!("write it in lowercase: `{lower}`")),
            });
        }
        if nodes.contains(&self.hostname) {
            return None;
        }
        let valid: Vec<String> = nodes.iter().map(|n| format!("`{n}`")).collect();
        let valid = format!("valid values: {}", valid.join(", "));
        Some(RuleProblem {
            path: "hostname".into(),
            message: format!("`{}` is not one of `message_service.nodes`", self.hostname),
            help: Some(match located::did_you_mean(&self.hostname, nodes) {
                Some(s) => format!("did you mean `{s}`? {valid}"),
                None => valid,
            }),
        })
    }

    /// Where in the file rule `e` is broken, and what would be right.
    fn rule_problem(&self, e: &ConfigError) -> RuleProblem {
        let ms = &self.message_service;
        let publisher = |cluster: &str, nth: usize| {
            ms.publishers
                .iter()
                .enumerate()
                .filter(|(_, p)| p.cluster == cluster)
                .nth(nth)
                .map_or(0, |(i, _)| i)
        };
        let (path, help) = match e {
            ConfigError::UppercaseHostname(n) => {
                let i = ms.nodes.iter().position(|m| m == n).unwrap_or(0);
                let lower = n.to_ascii_lowercase();
                (
                    format!("message_service.nodes[{i}]"),
                    Some(format!("write it in lowercase: `{lower}`")),
                )
            }
            ConfigError::ClusterSize(_) => ("message_service.nodes".into(), None),
            ConfigError::NoPublisher | ConfigError::TooManyImpClusters(_) => {
                ("message_service.publishers".into(), None)
            }
            ConfigError::DuplicatePublisher(c) => (
                format!("message_service.publishers[{}].cluster", publisher(c, 1)),
                None,
            ),
            ConfigError::Meshing { imp, .. } => (
                format!("message_service.publishers[{}].cluster", publisher(imp, 0)),
                None,
            ),
            ConfigError::AxlIsAdmin { cluster, .. } => (
                format!(
                    "message_service.publishers[{}].axl_username",
                    publisher(cluster, 0)
                ),
                Some("an application user with the Standard AXL API Access role".into()),
            ),
            ConfigError::AxlCredentialsMissing(c) => (
                format!("message_service.publishers[{}]", publisher(c, 0)),
                Some("set `axl_username` and `axl_password`".into()),
            ),
            ConfigError::ProxyScheme(_) => (
                "message_service.proxy.auth".into(),
                Some("valid values: `none`, `basic`".into()),
            ),
            ConfigError::NotEnabled => (
                "message_service.enabled".into(),
                Some("`enabled: true` (the connector's Active setting)".into()),
            ),
        };
        RuleProblem {
            path,
            message: e.to_string(),
            help,
        }
    }

    /// The core's settings for this node.
    pub fn settings(&self) -> NodeSettings {
        let cluster = self.message_service.to_core();
        NodeSettings {
            hostname: self.hostname.clone(),
            primary: cluster.nodes.first() == Some(&self.hostname),
            others: self
                .other_clusters
                .iter()
                .map(MessageService::to_core)
                .collect(),
            cluster,
            registration_token: self.registration_token.clone(),
            session_rate_per_s: self.tuning.session_rate_per_s,
            migration_rate: (
                self.tuning.migration_sessions,
                Duration::from_secs(self.tuning.migration_per_s),
            ),
            detection_delay_max: Duration::from_secs(self.tuning.detection_delay_max_s),
        }
    }

    /// Where the driver connects.
    pub fn peers(&self) -> Peers {
        Peers {
            cloud: (self.cloud.host.clone(), self.cloud.port),
            component_secret: self.component_secret.clone(),
            component_port: self.ports.component,
            axl_port: self.ports.axl,
        }
    }

    /// The `hosts` table as [`TokioNet`] takes it: (name, port asked for) → address.
    pub fn host_table(&self) -> BTreeMap<(String, u16), SocketAddr> {
        let mut t = BTreeMap::new();
        for (name, h) in &self.hosts {
            for (asked, own) in [(self.ports.component, h.component), (self.ports.axl, h.axl)] {
                let addr = SocketAddr::new(h.address, own.unwrap_or(asked));
                t.insert((name.clone(), asked), addr);
            }
        }
        t
    }
}

/// Log targets held below TRACE whatever the filter asks: tungstenite's client handshake
/// logs the whole upgrade request at TRACE, `Authorization: Bearer <connector token>`
/// included, and a log is no place for a credential.
pub const CREDENTIAL_LOGGING_TARGETS: [&str; 1] = ["tungstenite::handshake::client=debug"];

/// The log filter of `directives` (`CONNECTOR_LOG`; `None` or unparsable: `info`), with
/// [`CREDENTIAL_LOGGING_TARGETS`] capped.
pub fn log_filter(directives: Option<&str>) -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::EnvFilter;
    let mut filter = directives
        .and_then(|d| EnvFilter::try_new(d).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    for cap in CREDENTIAL_LOGGING_TARGETS {
        filter = filter.add_directive(cap.parse().expect("a valid directive"));
    }
    filter
}

/// Runs the connector of `cfg` until the process is killed. Call inside a `LocalSet` on a
/// current-thread runtime (the driver shares its core through `Rc`). With `state_file`
/// ([`state::path_for`] the config file), what registration gave the connector is read from
/// it at start and written to it when it changes ([`state`]), so a restarted connector keeps
/// its registration (its registration token is single use).
pub async fn run(cfg: &RealConfig, state_file: Option<PathBuf>) {
    let mut net = TokioNet::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    net.hosts = Rc::new(cfg.host_table());
    let mut node = ConnectorNode::new(cfg.settings(), net.now());
    let mut saved = None;
    if let Some(path) = &state_file {
        saved = resume_from(&mut node, path);
    }
    let core = Rc::new(RefCell::new(node));
    if let Some(path) = state_file {
        tokio::task::spawn_local(keep_state(core.clone(), path, saved));
    }
    tracing::info!(
        hostname = %cfg.hostname,
        cluster = %cfg.message_service.cluster,
        cloud = %format!("{}:{}", cfg.cloud.host, cfg.cloud.port),
        publishers = cfg.message_service.publishers.len(),
        "connector starting"
    );
    tokio::task::spawn_local(log_progress(net.clone(), core.clone()));
    driver::run(net, core, cfg.peers(), cfg.seed).await;
}

/// How often the state file is brought up to date: registration happens once per run.
pub const STATE_SAVE_EVERY: Duration = Duration::from_secs(1);

/// Hands `node` the registration saved in `path`, if any; returns it.
fn resume_from(node: &mut ConnectorNode, path: &Path) -> Option<SavedRegistration> {
    match state::load(path) {
        Ok(Some(saved)) => {
            tracing::info!(
                file = %path.display(),
                connector_id = %saved.connector_id,
                "registered before: resuming with the saved connector token"
            );
            node.resume_registration(saved.clone());
            Some(saved)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "state file ignored: registering with the registration token");
            None
        }
    }
}

/// Writes the core's registration to `path` whenever it changes (`last`: what the file holds).
async fn keep_state(
    core: Rc<RefCell<ConnectorNode>>,
    path: PathBuf,
    mut last: Option<SavedRegistration>,
) {
    let mut tick = tokio::time::interval(STATE_SAVE_EVERY);
    loop {
        tick.tick().await;
        let now = core.borrow().saved_registration();
        if now.is_none() || now == last {
            continue;
        }
        let saved = now.expect("checked");
        match state::save(&path, &saved) {
            Ok(()) => {
                tracing::info!(file = %path.display(), "registration saved");
                last = Some(saved);
            }
            Err(e) => tracing::warn!(
                file = %path.display(),
                error = %e,
                "cannot save the registration: a restart would need a new registration token"
            ),
        }
    }
}

/// What the progress log reports; a line is logged whenever it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Progress {
    phase: String,
    connectivity: String,
    users: usize,
    assigned: usize,
    sessions_open: usize,
    to_webex: u64,
    to_jabber: u64,
}

/// The faults last logged, so that each is logged once per change, not once per retry.
#[derive(Debug, Default)]
struct Faults {
    cloud: Option<String>,
    axl: Option<String>,
}

impl Faults {
    /// Logs each fault that appeared or changed at WARN, naming the component at fault, and
    /// its clearing at INFO.
    fn log_changes(&mut self, core: &ConnectorNode) {
        // Before registration the cloud "fault" is only that: not registered yet.
        let cloud = core.cloud_fault().filter(|f| *f != "not registered");
        if cloud != self.cloud.as_deref() {
            match cloud {
                Some(f) => {
                    tracing::warn!(fault = %f, "the Webex cloud refuses or cannot be reached")
                }
                None => tracing::info!("the Webex cloud answers again"),
            }
            self.cloud = cloud.map(str::to_string);
        }
        let axl = core.axl_fault();
        if axl != self.axl.as_deref() {
            match axl {
                Some(f) => tracing::warn!(
                    fault = %f,
                    "AXL discovery failed: check the publisher's AXL user and password"
                ),
                None => tracing::info!("AXL discovery answers again"),
            }
            self.axl = axl.map(str::to_string);
        }
    }
}

/// Logs the core's phase, users, sessions and traffic when they change, and the registration
/// delay Control Hub announced ([`log_registration_delay`]). Reads the core only.
async fn log_progress(net: TokioNet, core: Rc<RefCell<ConnectorNode>>) {
    let mut last: Option<Progress> = None;
    let mut delay_logged = None;
    let mut faults = Faults::default();
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    loop {
        tick.tick().await;
        faults.log_changes(&core.borrow());
        let delay = core.borrow().registration_delay();
        if delay != delay_logged {
            log_registration_delay(&net, delay);
            delay_logged = delay;
        }
        let p = {
            let c = core.borrow();
            let page = c.status_page(net.now());
            let phase = match c.phase() {
                Phase::Invalid(errors) => format!("invalid ({} rules broken)", errors.len()),
                other => format!("{other:?}").to_lowercase(),
            };
            Progress {
                phase,
                connectivity: page.connectivity,
                users: page.users_all,
                assigned: c.assigned().len(),
                sessions_open: c.sessions().open_per_node().values().sum(),
                to_webex: c.stats().to_webex,
                to_jabber: c.stats().to_jabber,
            }
        };
        if last.as_ref() != Some(&p) {
            tracing::info!(
                phase = %p.phase,
                cloud = %p.connectivity,
                users = p.users,
                assigned = p.assigned,
                sessions = p.sessions_open,
                to_webex = p.to_webex,
                to_jabber = p.to_jabber,
                "connector status"
            );
            last = Some(p);
        }
    }
}

/// Says how long Control Hub makes the connector wait before its registration completes (spec
/// 12: up to [`REGISTRATION_DELAY_NOTE`]) and until when, in UTC: without it the connector is
/// silent after `phase=registering` for as long as the delay lasts.
fn log_registration_delay(net: &TokioNet, delay: Option<(Duration, Duration)>) {
    let Some((answered, delay)) = delay else {
        return;
    };
    let ready_at = answered + delay;
    let left = ready_at.saturating_sub(net.now());
    // Real mode only: the wall clock turns the core's "time since start" into a time of day.
    let until = std::time::SystemTime::now() + left; // allow-nondeterminism: real mode only, a log line
    tracing::info!(
        "registration accepted by Control Hub; it completes after a delay of {:.1} s (spec 12: \
         {REGISTRATION_DELAY_NOTE}): waiting for Control Hub until {} UTC",
        delay.as_secs_f64(),
        utc_time_of_day(until)
    );
}

/// How long Control Hub may take to complete a registration, as the log says it.
const REGISTRATION_DELAY_NOTE: &str = "up to 5 min";

/// `HH:MM:SS` of `t` in UTC (for the log lines that say until when a wait lasts; the served
/// cloud uses it too).
pub fn utc_time_of_day(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "
hostname: exp-a-1
seed: 7
cloud: { host: 127.0.0.1, port: 18443 }
registration_token: reg-0123456789abcdef0123456789abcdef
component_secret: comp-Secret-1
ports: { component: 7400 }
hosts:
  imp-1: { address: 127.0.0.1, component: 17400, axl: 18444 }
message_service:
  cluster: exp-a
  nodes: [exp-a-1, exp-a-2]
  proxy: { host: proxy.example.com, port: 3128, username: u, password: p }
  publishers:
    - { cluster: imp-a, host: imp-1, axl_username: hmsim-axl, axl_password: axl-Secret-0 }
";

    #[test]
    fn the_time_of_day_is_in_utc() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 3_723);
        assert_eq!(utc_time_of_day(t), "01:02:03");
    }

    #[test]
    fn a_good_file_gives_settings_peers_and_hosts() {
        let cfg = parse("c.yaml", GOOD).unwrap();
        assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
        let s = cfg.settings();
        assert!(s.primary);
        assert_eq!(s.cluster.nodes, ["exp-a-1", "exp-a-2"]);
        assert_eq!(
            s.registration_token.as_deref(),
            Some("reg-0123456789abcdef0123456789abcdef")
        );
        assert!(matches!(
            s.cluster.proxy,
            Proxy::Basic {
                port: 3128,
                credentials: Some(_),
                ..
            }
        ));
        assert_eq!(s.cluster.publishers[0].platform_admin, "admin");
        let p = cfg.peers();
        assert_eq!(p.cloud, ("127.0.0.1".to_string(), 18443));
        assert_eq!((p.component_port, p.axl_port), (7400, driver::AXL_PORT));
        let t = cfg.host_table();
        assert_eq!(
            t[&("imp-1".to_string(), 7400)],
            "127.0.0.1:17400".parse().unwrap()
        );
        assert_eq!(
            t[&("imp-1".to_string(), driver::AXL_PORT)],
            "127.0.0.1:18444".parse().unwrap()
        );
    }

    #[test]
    fn the_documented_example_is_valid() {
        let cfg = parse("example.yaml", EXAMPLE_CONFIG).unwrap();
        assert_eq!(cfg.problems(), Vec::<RuleProblem>::new());
        assert_eq!(cfg.seed, 42);
        assert_eq!(cfg.tuning.migration_per_s, 1800);
    }

    #[test]
    fn debug_output_has_no_secrets() {
        let cfg = parse("c.yaml", GOOD).unwrap();
        let shown = format!("{cfg:?}");
        for secret in ["reg-0123", "comp-Secret-1", "axl-Secret-0", "password: p"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    #[test]
    fn every_broken_rule_is_named() {
        let text = GOOD
            .replace("hostname: exp-a-1", "hostname: Exp-A-1")
            .replace("[exp-a-1, exp-a-2]", "[Exp-A-1, exp-a-2]")
            .replace("axl_username: hmsim-axl", "axl_username: admin")
            .replace("username: u, password: p", "auth: NTLM")
            + "  enabled: false\n";
        let cfg = parse("c.yaml", &text).unwrap();
        let problems: Vec<String> = cfg.problems().iter().map(ToString::to_string).collect();
        let problems = problems.join("\n");
        for rule in [
            "lowercase-hostname",
            "axl-not-admin",
            "proxy-basic-only",
            "connector-enabled",
        ] {
            assert!(problems.contains(rule), "{rule} missing in {problems}");
        }
        let cfg = parse(
            "c.yaml",
            &GOOD.replace("hostname: exp-a-1", "hostname: exp-b-1"),
        )
        .unwrap();
        let p = cfg.problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "hostname");
        assert!(p[0].message.contains("not one of `message_service.nodes`"));
        assert!(
            p[0].help
                .as_deref()
                .unwrap()
                .starts_with("did you mean `exp-a-1`?"),
            "{p:?}"
        );
    }

    /// Spec 11: a capital letter in this node's own hostname is the lowercase rule, located at
    /// `hostname`, even when the node list is lowercase (it used to be "not one of the nodes").
    #[test]
    fn a_capital_in_the_hostname_is_the_lowercase_rule_at_its_line() {
        let dir = std::env::temp_dir().join(format!("connector-real-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("upper.yaml");
        std::fs::write(
            &file,
            GOOD.replace("hostname: exp-a-1", "hostname: Exp-a-1"),
        )
        .unwrap();
        let err = load(&file).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        let shown = err.to_string();
        let want = format!(
            "{}:2:1: error at `hostname`: rule `lowercase-hostname` (spec 11)",
            file.display()
        );
        assert!(shown.starts_with(&want), "{shown}");
        assert!(
            shown.contains("help: write it in lowercase: `exp-a-1`"),
            "{shown}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_problem_is_located_at_the_field_to_change() {
        let text = GOOD
            .replace("[exp-a-1, exp-a-2]", "[exp-a-1, Exp-A-2]")
            .replace("axl_username: hmsim-axl", "axl_username: admin")
            .replace("username: u, password: p", "auth: NTLM");
        let dir = std::env::temp_dir().join(format!("connector-real-loc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.yaml");
        std::fs::write(&file, &text).unwrap();
        let err = load(&file).unwrap_err();
        let at: Vec<(&str, usize)> = err
            .0
            .iter()
            .map(|l| (l.path.as_str(), l.pos.line))
            .collect();
        assert_eq!(
            at,
            [
                ("message_service.nodes[1]", 12),
                ("message_service.proxy.auth", 13),
                ("message_service.publishers[0].axl_username", 15),
            ],
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_located() {
        let e = parse("c.yaml", &GOOD.replace("seed: 7", "sed: 7")).unwrap_err();
        let shown = e.to_string();
        assert!(shown.starts_with("c.yaml:3:1: "), "{shown}");
        assert!(shown.contains("unknown field `sed`"), "{shown}");
        assert!(shown.contains("help: did you mean `seed`?"), "{shown}");
        let e = parse("c.yaml", &GOOD.replace("port: 18443", "port: many")).unwrap_err();
        assert_eq!(e.path, "cloud.port");
        assert_eq!(e.pos.line, 4, "{e}");
    }

    #[test]
    fn numbers_out_of_range_are_located_with_their_valid_range() {
        let cases = [
            (
                "tuning: { session_rate_per_s: 0 }",
                "tuning.session_rate_per_s",
                "above 0",
            ),
            (
                "tuning: { session_rate_per_s: -5 }",
                "tuning.session_rate_per_s",
                "above 0",
            ),
            (
                "tuning: { session_rate_per_s: .nan }",
                "tuning.session_rate_per_s",
                "above 0",
            ),
            (
                "tuning: { session_rate_per_s: 20000 }",
                "tuning.session_rate_per_s",
                "at most 10000",
            ),
            (
                "tuning: { migration_sessions: 0 }",
                "tuning.migration_sessions",
                "from 1 to",
            ),
            (
                "tuning: { migration_per_s: 0 }",
                "tuning.migration_per_s",
                "from 1 to 86400",
            ),
            (
                "tuning: { detection_delay_max_s: 100000 }",
                "tuning.detection_delay_max_s",
                "from 0 to 86400",
            ),
        ];
        for (line, field, range) in cases {
            let e = parse("c.yaml", &format!("{GOOD}{line}\n"))
                .err()
                .unwrap_or_else(|| panic!("{line} accepted"));
            let line_no = e.pos.line;
            let e = e.to_string();
            assert!(e.contains(field), "{e}");
            assert!(e.contains(range), "{e}");
            // Located: the last line of the file, at the value.
            let at = GOOD.lines().count() + 1;
            assert_eq!(line_no, at, "{e}");
        }
        let e = parse("c.yaml", &GOOD.replace("port: 18443", "port: 0"))
            .expect_err("port 0")
            .to_string();
        assert!(
            e.contains("cloud.port") && e.contains("from 1 to 65535"),
            "{e}"
        );
        let e = parse("c.yaml", &GOOD.replace("component: 17400", "component: 0"))
            .expect_err("port 0")
            .to_string();
        assert!(e.contains("from 1 to 65535"), "{e}");
    }

    #[test]
    fn a_file_error_names_the_file_line_and_column() {
        let dir = std::env::temp_dir().join(format!("connector-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("bad.yaml");
        std::fs::write(
            &path,
            format!("{GOOD}tuning: {{ session_rate_per_s: 0 }}\n"),
        )
        .expect("write");
        let e = load(&path).expect_err("refused").0;
        let e: Vec<String> = e.iter().map(ToString::to_string).collect();
        let e = e.join("\n");
        let at = format!("{}:{}:", path.display(), GOOD.lines().count() + 1);
        assert!(e.starts_with(&at), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
