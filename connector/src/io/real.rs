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
//! errors, each reported as file:line:column, field path and what is wrong) and checks it:
//! every rule of [`crate::core::config::validate`] (spec 11-21), plus that `hostname` is one of
//! the cluster's nodes. [`run`] then runs until the process is killed.
//!
//! The core's clock is the time since this process started ([`TokioNet`]): times the cloud
//! reports (last activity, DND) are on the cloud's own clock, so the connector and the cloud
//! should start close together (a connector started after the cloud sees activity as more
//! recent than it was, never older).

use super::driver::{self, Peers};
use super::net::{Net as _, TokioNet};
use super::ranges;
use crate::core::config::{self, ConnectorConfig, ImpPublisher, Proxy};
use crate::core::node::{ConnectorNode, NodeSettings, Phase};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
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

/// Why a config file cannot be run. Each problem is one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblems(pub Vec<String>);

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

/// Reads and checks the config file at `path`.
///
/// # Errors
/// The file cannot be read or parsed (one problem, with its location and field path), or it
/// breaks rules (one problem per rule broken, each naming its rule and spec item).
pub fn load(path: &Path) -> Result<RealConfig, ConfigProblems> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigProblems(vec![format!(
            "{}: cannot read the file: {e}",
            path.display()
        )])
    })?;
    // A located error starts with `line:column:`, which joins the path as `file:line:column:`.
    let cfg = parse(&text).map_err(|e| {
        let sep = if e.starts_with(|c: char| c.is_ascii_digit()) {
            ":"
        } else {
            ": "
        };
        ConfigProblems(vec![format!("{}{sep}{e}", path.display())])
    })?;
    let problems = cfg.problems();
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigProblems(
            problems
                .into_iter()
                .map(|p| format!("{}: {p}", path.display()))
                .collect(),
        ))
    }
}

/// Parses a config file's text (no rule checks: see [`RealConfig::problems`]).
///
/// # Errors
/// The YAML error as `line:column: at `field.path`: what is wrong` (a number out of range
/// names its valid range, [`ranges`]); without the location if the parser has none.
pub fn parse(text: &str) -> Result<RealConfig, String> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        match inner.location() {
            Some(l) => {
                let suffix = format!(" at line {} column {}", l.line(), l.column());
                let msg = msg.strip_suffix(&suffix).unwrap_or(&msg);
                let msg = msg.strip_prefix(&format!("{at}: ")).unwrap_or(msg);
                format!("{}:{}: at `{at}`: {msg}", l.line(), l.column())
            }
            None => format!("at `{at}`: {msg}"),
        }
    })
}

impl RealConfig {
    /// Every rule the configuration breaks: the Message Service rules (spec 11-21) and that
    /// this node is one of its cluster's nodes.
    pub fn problems(&self) -> Vec<String> {
        let cluster = self.message_service.to_core();
        let others: Vec<ConnectorConfig> = self
            .other_clusters
            .iter()
            .map(MessageService::to_core)
            .collect();
        let mut out: Vec<String> = config::validate(&cluster, &others)
            .iter()
            .map(ToString::to_string)
            .collect();
        if !cluster.nodes.contains(&self.hostname) {
            out.push(format!(
                "`hostname` `{}` is not one of `message_service.nodes` {:?}",
                self.hostname, cluster.nodes
            ));
        }
        out
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
/// current-thread runtime (the driver shares its core through `Rc`).
pub async fn run(cfg: &RealConfig) {
    let mut net = TokioNet::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    net.hosts = Rc::new(cfg.host_table());
    let core = Rc::new(RefCell::new(ConnectorNode::new(cfg.settings(), net.now())));
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

/// Logs the core's phase, users, sessions and traffic when they change. Reads the core only.
async fn log_progress(net: TokioNet, core: Rc<RefCell<ConnectorNode>>) {
    let mut last: Option<Progress> = None;
    let mut faults = Faults::default();
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    loop {
        tick.tick().await;
        faults.log_changes(&core.borrow());
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
    fn a_good_file_gives_settings_peers_and_hosts() {
        let cfg = parse(GOOD).unwrap();
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
        let cfg = parse(EXAMPLE_CONFIG).unwrap();
        assert_eq!(cfg.problems(), Vec::<String>::new());
        assert_eq!(cfg.seed, 42);
        assert_eq!(cfg.tuning.migration_per_s, 1800);
    }

    #[test]
    fn debug_output_has_no_secrets() {
        let cfg = parse(GOOD).unwrap();
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
        let cfg = parse(&text).unwrap();
        let problems = cfg.problems().join("\n");
        for rule in [
            "lowercase-hostname",
            "axl-not-admin",
            "proxy-basic-only",
            "connector-enabled",
        ] {
            assert!(problems.contains(rule), "{rule} missing in {problems}");
        }
        let cfg = parse(&GOOD.replace("hostname: exp-a-1", "hostname: exp-b-1")).unwrap();
        assert!(
            cfg.problems()
                .iter()
                .any(|p| p.contains("not one of `message_service.nodes`"))
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_located() {
        let e = parse(&GOOD.replace("seed: 7", "sed: 7")).err().unwrap();
        assert!(e.contains("unknown field `sed`"), "{e}");
        let e = parse(&GOOD.replace("port: 18443", "port: many"))
            .err()
            .unwrap();
        assert!(e.contains("cloud.port"), "{e}");
        assert!(e.starts_with("4:33: at `cloud.port`: invalid type"), "{e}");
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
            let e = parse(&format!("{GOOD}{line}\n"))
                .err()
                .unwrap_or_else(|| panic!("{line} accepted"));
            assert!(e.contains(field), "{e}");
            assert!(e.contains(range), "{e}");
            // Located: the last line of the file, at the value.
            let at = GOOD.lines().count() + 1;
            assert!(e.starts_with(&format!("{at}:")), "{e}");
        }
        let e = parse(&GOOD.replace("port: 18443", "port: 0")).expect_err("port 0");
        assert!(
            e.contains("cloud.port") && e.contains("from 1 to 65535"),
            "{e}"
        );
        let e = parse(&GOOD.replace("component: 17400", "component: 0")).expect_err("port 0");
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
        let e = load(&path).expect_err("refused").0.join("\n");
        let at = format!("{}:{}:", path.display(), GOOD.lines().count() + 1);
        assert!(e.starts_with(&at), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
