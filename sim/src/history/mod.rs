//! Stage 6, the history: what a run produced, as plain data. The run writes it; the oracle,
//! the checks and the record read it. It names no later stage.
//!
//! - [`observer`]: what clients sent and received, sessions, presence, group events, coverage,
//!   and the trace digest.
//! - [`trace`]: the `trace.jsonl` lines of a history.

pub mod observer;
pub mod trace;

use crate::plan::faults::Timed;
use crate::plan::topology::UserSpec;
use connector::core::failover::NodeStatus;
use connector::core::status::StatusPage;
use fakes::imp::muc::MucStats;
use observer::Observer;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

/// What a run produced, before checks: everything a check may judge.
pub struct History {
    /// The seed used.
    pub seed: u64,
    /// The history.
    pub observer: Rc<Observer>,
    /// Set when the run could not finish: what it was waiting for, or a host error.
    pub failure: Option<String>,
    /// Simulated time at the end.
    pub elapsed: Duration,
    /// Steps executed.
    pub steps: u64,
    /// Faults as applied.
    pub applied: Vec<Timed>,
    /// Sampled series: name → points.
    pub series: BTreeMap<String, Vec<(f64, f64)>>,
    /// Final node statistics by host.
    pub node_stats: BTreeMap<String, fakes::imp::NodeStats>,
    /// The population.
    pub users: Vec<UserSpec>,
    /// Each user's contacts (bare JIDs, both ways), as the IM&P directories hold them.
    pub contacts: BTreeMap<String, Vec<String>>,
    /// Connector session history per user, sampled each second (the interop oracle's input).
    pub bridge: Bridge,
    /// Final connector counters by Expressway host.
    pub connector_stats: BTreeMap<String, BTreeMap<String, f64>>,
    /// What the cloud's plaintext tap found (`None` when the run has no cloud).
    pub plaintext: Option<LeakLog>,
    /// Every user's Webex presence facts at the end, from the cloud (bare JID = email).
    pub webex_presence: BTreeMap<String, connector::core::presence::WebexPresence>,
    /// Group chat counters of the IM&P nodes and the cloud's group spaces (spec 42).
    pub group: GroupFacts,
    /// The run's secrets and captured log, when the scenario lists `no_secrets_in_logs`.
    pub secrets: Option<Evidence>,
}

impl History {
    /// An output holding only a history and its population, as a finished run would: for
    /// judging hand-written histories (the checks' own tests).
    pub fn from_history(seed: u64, observer: Rc<Observer>, users: Vec<UserSpec>) -> Self {
        Self {
            seed,
            observer,
            failure: None,
            elapsed: Duration::ZERO,
            steps: 0,
            applied: Vec::new(),
            series: BTreeMap::new(),
            node_stats: BTreeMap::new(),
            users,
            contacts: BTreeMap::new(),
            bridge: BTreeMap::new(),
            connector_stats: BTreeMap::new(),
            plaintext: None,
            webex_presence: BTreeMap::new(),
            group: Default::default(),
            secrets: None,
        }
    }
}

/// Time-series samples per run (bounded so records stay small).
pub const SAMPLES_MAX: u64 = 240;
/// The captured log is kept up to this size; the check says when it was cut.
pub const LOG_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Connector session history per user (email), from the runner's sampling: (time, open).
pub type Bridge = BTreeMap<String, Vec<(Duration, bool)>>;

/// What the cloud's body tap found: every request body is scanned for a message tag
/// (`[[id]]`), which only plaintext can contain (JWE compact is base64url and dots).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeakLog {
    /// Bodies scanned.
    pub scanned: u64,
    /// Leaks: "route at time: excerpt", bounded by [`LEAKS_KEPT_MAX`].
    pub leaks: Vec<String>,
    /// Leaks in all (including those not kept).
    pub leaks_total: u64,
}

/// What a Webex group space looks like at the end of the run (from the cloud).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpaceFacts {
    /// Space id.
    pub id: String,
    /// Member emails.
    pub members: Vec<String>,
    /// Posts stored.
    pub posts: u64,
    /// Read receipts by member.
    pub reads_by: BTreeMap<String, u64>,
    /// Activities a connector posted.
    pub via_connector: u64,
}

/// What the run leaves behind for the check besides the observer's history.
#[derive(Debug, Clone, Default)]
pub struct GroupFacts {
    /// The group chat service's counters by IM&P node.
    pub muc: BTreeMap<String, MucStats>,
    /// Every Webex group space.
    pub spaces: Vec<SpaceFacts>,
}

/// One secret the run knows. Its value is never shown (`Debug` redacts it).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// What it is, e.g. "AXL password (cluster a)".
    pub kind: String,
    value: String,
}

impl Secret {
    /// A secret of `kind`.
    pub fn new(kind: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            value: value.into(),
        }
    }

    /// The secret itself (never print it).
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("kind", &self.kind)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// What a run gathered for the check: the secrets it knows and what it logged.
#[derive(Clone, Default)]
pub struct Evidence {
    /// Every secret known at the end of the run.
    pub secrets: Vec<Secret>,
    /// Everything the run logged (DEBUG and up, crates `connector`, `fakes`, `sim`).
    pub log: String,
    /// Whether the log outgrew [`LOG_BYTES_MAX`] and was cut.
    pub log_cut: bool,
}

impl fmt::Debug for Evidence {
    /// The secrets redacted, the log by size only (it may hold secrets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evidence")
            .field("secrets", &self.secrets)
            .field("log_bytes", &self.log.len())
            .field("log_cut", &self.log_cut)
            .finish()
    }
}

/// The encodings a space key's 32 bytes may take: base64url without padding (the KMS's and
/// the cloud's wire form), standard base64, lowercase hex, and Rust's debug form of the array.
pub fn key_encodings(bytes: &[u8]) -> [(&'static str, String); 4] {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    [
        ("base64url", URL_SAFE_NO_PAD.encode(bytes)),
        ("base64", STANDARD.encode(bytes)),
        ("hex", hex),
        ("debug", format!("{bytes:?}")),
    ]
}

/// Every field of a status page as `(name, number)`: totals by field name, IM&P nodes as
/// `<node>/<field>`. Text becomes numbers: connectivity and node status 1 = Operational,
/// certificate validation 1 = on; the version is written as a number (`14.0`) and left out
/// if it is not one.
pub fn page_fields(p: &StatusPage) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = [
        ("connectivity", f64::from(p.connectivity == "Operational")),
        ("users_local", p.users_local as f64),
        ("users_all", p.users_all as f64),
        ("enabled", p.enabled as f64),
        ("active", p.active as f64),
        ("inactive", p.inactive as f64),
        ("active_pct", p.active_pct()),
        ("inactive_pct", p.inactive_pct()),
    ]
    .into_iter()
    .map(|(k, x)| (k.to_string(), x))
    .collect();
    for n in &p.nodes {
        if let Ok(version) = n.version.parse::<f64>() {
            v.push((format!("{}/version", n.node), version));
        }
        for (k, x) in [
            ("status", f64::from(n.status == NodeStatus::Operational)),
            (
                "certificate_validation",
                f64::from(n.certificate_validation),
            ),
            ("users", n.users as f64),
            ("active", n.active as f64),
            ("inactive", n.inactive as f64),
        ] {
            v.push((format!("{}/{k}", n.node), x));
        }
    }
    v
}
