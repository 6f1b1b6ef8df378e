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
use connector::core::status::{Share, StatusPage};
use fakes::cloud::org::{HistoryEntry, HmState};
use fakes::imp::PrgState;
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
    /// Judgements of [`crate::run::Options::self_check_quiescence`] made (0 without it).
    pub quiescence_self_checks: u64,
    /// Faults as applied.
    pub applied: Vec<Timed>,
    /// Sampled series of counts: name → points (plots; status pages, moves and PRG states
    /// are kept typed below and joined in by [`History::all_series`]).
    pub series: BTreeMap<String, Vec<(f64, f64)>>,
    /// Every sampled status page (spec 66-71), by Expressway host, in time order.
    pub status_pages: BTreeMap<String, Vec<(Duration, StatusPage)>>,
    /// Each connector's own share of its page's counts, sampled with `status_pages`: what its
    /// peers' pages show of it a heartbeat or two later (spec 69).
    pub status_shares: BTreeMap<String, Vec<(Duration, Share)>>,
    /// Each connector's share as the fake cloud's records give it ([`CloudShare`]), sampled
    /// with `status_pages`: what the `status_page` check expects of the pages, independent of
    /// the connector's own counts.
    pub cloud_shares: BTreeMap<String, Vec<(Duration, CloudShare)>>,
    /// Every session move the connectors made, by Expressway host, in order.
    pub moves: BTreeMap<String, Vec<SessionMove>>,
    /// Every IM&P node's PRG state, sampled, by host.
    pub prg_states: BTreeMap<String, Vec<(Duration, PrgState)>>,
    /// Final node statistics by host.
    pub node_stats: BTreeMap<String, fakes::imp::NodeStats>,
    /// The population.
    pub users: Vec<UserSpec>,
    /// Each user's contacts (bare JIDs, both ways), as the IM&P directories hold them.
    pub contacts: BTreeMap<String, Vec<String>>,
    /// Connector session history per user, sampled each second (the interop oracle's input).
    pub bridge: Bridge,
    /// The IM&P node each user's connector session was open on, sampled with `bridge` (a
    /// session that moved in between is seen on its new node): (time, node), `None` once it
    /// is no longer open (the `migration` check's "sessions the node held at the fault").
    pub session_nodes: SessionNodes,
    /// Final connector counters by Expressway host.
    pub connector_stats: BTreeMap<String, BTreeMap<String, f64>>,
    /// Enabled Hybrid Message users the cloud had placed on no connector node at the end (no
    /// room: beyond capacity), by email.
    pub unassigned_at_end: Vec<String>,
    /// The connector node the cloud had each user with a mail ID on at the end, by mail ID
    /// (the key of `bridge`): whose connector `liveness` expects to serve them. Empty until
    /// the run ends.
    pub assigned_at_end: BTreeMap<String, String>,
    /// Users the fake cloud took out of Hybrid Message service after having had them Active,
    /// by Webex email, sampled with the series during the run: each change of their state in
    /// Control Hub from then on, as the cloud recorded it (when, state, reason), oldest first.
    /// A user a late IM&P cluster's report made a duplicate goes to Error "duplicate Mail ID"
    /// and off her connector node (spec 25), which closes her session: `liveness` reads this
    /// so as not to await it ([`History::out_of_service`]).
    pub cloud_deactivations: BTreeMap<String, Vec<HistoryEntry>>,
    /// Users the fake cloud holds in Error without ever having had them Active (their
    /// activation failed, spec 27: "If the user status is Error, review the message"), by
    /// Webex email, sampled with the series: when and why, as the cloud recorded it. Removed
    /// when the user leaves Error (a reactivation). `liveness` excuses such a user's missing
    /// session only where the plan explains the error (`checks::first_session`).
    pub cloud_activation_errors: BTreeMap<String, HistoryEntry>,
    /// What the cloud's plaintext tap found (`None` when the run has no cloud).
    pub plaintext: Option<LeakLog>,
    /// Every user's Webex presence facts at the end, from the cloud (bare JID = email).
    pub webex_presence: BTreeMap<String, connector::core::presence::WebexPresence>,
    /// Every time the cloud counted a user active on Webex (any request with their token:
    /// sends, space keys, logins), by bare JID = email, in order: the oracle's Webex uses.
    pub webex_activity: BTreeMap<String, Vec<Duration>>,
    /// Times [`History::webex_activity`] changed: the runner reads the cloud's record at each
    /// quiescence judgement and at the end, and a change (a new use, or the last one moved
    /// forward) must be judged again.
    pub webex_activity_changes: u64,
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
            quiescence_self_checks: 0,
            applied: Vec::new(),
            series: BTreeMap::new(),
            status_pages: BTreeMap::new(),
            status_shares: BTreeMap::new(),
            cloud_shares: BTreeMap::new(),
            moves: BTreeMap::new(),
            prg_states: BTreeMap::new(),
            node_stats: BTreeMap::new(),
            users,
            contacts: BTreeMap::new(),
            bridge: BTreeMap::new(),
            session_nodes: BTreeMap::new(),
            connector_stats: BTreeMap::new(),
            unassigned_at_end: Vec::new(),
            assigned_at_end: BTreeMap::new(),
            cloud_deactivations: BTreeMap::new(),
            cloud_activation_errors: BTreeMap::new(),
            plaintext: None,
            webex_presence: BTreeMap::new(),
            webex_activity: BTreeMap::new(),
            webex_activity_changes: 0,
            group: Default::default(),
            secrets: None,
        }
    }
}

impl History {
    /// The users the cloud holds out of Hybrid Message service at the last sample after having
    /// had them Active ([`History::cloud_deactivations`]), by Webex email, with the state and
    /// reason it gave them: a connector closing their session did right.
    pub fn out_of_service(&self) -> BTreeMap<&str, &HistoryEntry> {
        (self.cloud_deactivations.iter())
            .filter_map(|(email, changes)| Some((email.as_str(), changes.last()?)))
            .filter(|(_, last)| last.state != HmState::Active)
            .collect()
    }
}

/// A connector node's share of the status page's counts as the fake cloud's records give it
/// at a sample: the users the cloud assigned to the node (spec 69) and, of those, the ones
/// whose activity events it delivered to the node since placing them there, within 72 h
/// (spec 70). Each count is a range `(at least, at most)`: a placement or an event the cloud
/// sent in the last moments may not have reached the connector yet (the runner's
/// `EVENT_IN_FLIGHT`), so the connector may count it or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloudShare {
    /// Users assigned to the node: (at least, at most).
    pub enabled: (usize, usize),
    /// Of those, active within 72 h: (at least, at most).
    pub active: (usize, usize),
}

impl CloudShare {
    /// A share known exactly: `enabled` users, `active` of them active.
    pub fn exact(enabled: usize, active: usize) -> Self {
        Self {
            enabled: (enabled, enabled),
            active: (active, active),
        }
    }
}

/// Time-series samples per run (bounded so records stay small).
pub const SAMPLES_MAX: u64 = 240;

/// How often the runner samples the series: [`SAMPLES_MAX`] samples over the duration, never
/// more often than a tick.
pub fn sample_every(s: &crate::scenario::Scenario) -> Duration {
    (s.duration.0 / SAMPLES_MAX as u32).max(s.tick.0)
}
/// The captured log is kept up to this size; the check says when it was cut.
pub const LOG_BYTES_MAX: usize = 256 * 1024 * 1024;

/// A connector session that opened on another IM&P node than the one it was last open on
/// (a failover or a fallback, spec 62), at the exact time it opened there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMove {
    /// Whose session (the connector's key: the user's email).
    pub user: String,
    /// When it opened on `to`.
    pub at: Duration,
    /// The IM&P node it was last open on.
    pub from: String,
    /// The IM&P node it opened on.
    pub to: String,
}

/// Series of session moves: `connector_moves/<exp host>/<from>/<to>`, one point per move
/// valued with the number of such moves so far.
pub const MOVES_SERIES: &str = "connector_moves/";
/// Series of status page fields: `status/<exp host>/<field>` and
/// `status/<exp host>/<imp node>/<field>` ([`page_fields`]).
pub const STATUS_SERIES: &str = "status/";
/// Series of PRG states: `prg_state/<imp host>`, valued with [`PrgState::code`] (0 Unknown,
/// 1 Normal, 2 Failing Over, 3 Taking Over, 4 Idle, 5 Running in Backup Mode, 6 Failed Over,
/// 7 Failed Over with Critical Services Not Running, 8 Falling Back, 9 Taking Back, 10 Running
/// in Failed Mode); a node whose host is down reads 0.
pub const PRG_STATE_SERIES: &str = "prg_state/";

impl History {
    /// Every series for plots: the sampled counts, and the typed samples as numbers (status
    /// page fields, moves so far, PRG state codes).
    pub fn all_series(&self) -> BTreeMap<String, Vec<(f64, f64)>> {
        let mut all = self.series.clone();
        for (host, pages) in &self.status_pages {
            for (at, page) in pages {
                for (k, v) in page_fields(page) {
                    let name = format!("{STATUS_SERIES}{host}/{k}");
                    all.entry(name).or_default().push((at.as_secs_f64(), v));
                }
            }
        }
        for (host, moves) in &self.moves {
            for m in moves {
                let name = format!("{MOVES_SERIES}{host}/{}/{}", m.from, m.to);
                let series = all.entry(name).or_default();
                let so_far = series.last().map_or(0.0, |p| p.1);
                series.push((m.at.as_secs_f64(), so_far + 1.0));
            }
        }
        for (host, states) in &self.prg_states {
            let points = states
                .iter()
                .map(|(at, st)| (at.as_secs_f64(), f64::from(st.code())))
                .collect();
            all.insert(format!("{PRG_STATE_SERIES}{host}"), points);
        }
        all
    }
}

/// Connector session history per user (email), from the runner's sampling: (time, open).
pub type Bridge = BTreeMap<String, Vec<(Duration, bool)>>;

/// Connector session nodes per user (email), from the runner's sampling: (time, node open on).
pub type SessionNodes = BTreeMap<String, Vec<(Duration, Option<String>)>>;

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
