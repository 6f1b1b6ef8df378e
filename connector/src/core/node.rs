//! One connector node: the sans-IO state machine that ties configuration, registration, AXL
//! discovery, user assignment, presence polling, sessions, failover, spaces, keys and both
//! translation directions together.
//!
//! ## Grammar (as quinn-proto's `Connection`)
//! - inputs: [`ConnectorNode::start`], [`ConnectorNode::handle_http`],
//!   [`ConnectorNode::handle_http_failure`], [`ConnectorNode::handle_event`],
//!   [`ConnectorNode::handle_stanza`], [`ConnectorNode::node_up`], [`ConnectorNode::node_down`],
//!   [`ConnectorNode::handle_timeout`], [`ConnectorNode::set_enabled`];
//! - outputs: [`ConnectorNode::poll_output`] until `None` after every input;
//! - timers: [`ConnectorNode::poll_timeout`].
//!
//! Time is always an argument; randomness (IVs, backoff jitter, detection delays) comes from
//! the RNG the driver passes in, derived from the run seed.
//!
//! ## Lifecycle
//! 1. The configuration is checked (spec 11-21); a violation stops here, naming the rule.
//! 2. Registration with the Control Hub token; heartbeats every [`HEARTBEAT_INTERVAL`] carry
//!    the status page.
//! 3. Discovery over AXL: nodes, then users page by page (static until restart, spec 22).
//! 4. Known users are reported to the cloud, which assigns some to this node (spec 28).
//! 5. Presence of assigned users is polled every 10 minutes (spec 51); users active within
//!    72 h or hidden get a session on their home node (or its PRG peer after a failover).
//! 6. Messages flow: Jabber → Webex through sessions (encrypted with the space key before
//!    they leave, spec 56), Webex → Jabber from the cloud's events (decrypted, spec 57).
//!
//! ## Routing rules that prevent loops and duplicates
//! - A stanza whose sender resource is [`SESSION_RESOURCE`] came from a connector: never
//!   bridged again.
//! - Jabber → Webex posts carry `client_id = xmpp:<sender>:<stanza id>:<n>`: when both the
//!   sender's and the recipient's connector see the same message (carbon and fan-out), the
//!   cloud stores it once.
//! - The cloud never routes an activity that entered through a connector back to a connector.
//! - An activity event a node can no longer deliver (its user moved to another node while it
//!   was being decrypted) is handed back to the cloud ([`HANDBACK_PATH`]), which sends it to
//!   the user's node now, a bounded number of times; a node drops an activity it already sent.

use super::config::{self, ConfigError, ConnectorConfig};
use super::directory::{self, AxlUser, Directory, ImpNodeInfo};
use super::failover::{Failover, Move, NodeStatus};
use super::limiter::{Backoff, TokenBucket, backoff_delay};
use super::presence::{self, JabberPresence, STATUS_TEXT, WebexPresence};
use super::sessions::{SESSION_RESOURCE, SessionManager};
use super::status::{StatusInputs, StatusPage};
use super::translate::{self, Activity};
use crate::io::http::Method;
use crate::proto::jwe::{self, SpaceKey};
use crate::proto::webex::{Event, RegState, Verb};
use crate::proto::xml::Element;
use crate::proto::xmpp::{self, Jid, NS_CARBONS, NS_COMPONENT, NS_FORWARD, NS_HM_SESSION};
use base64::Engine as _;
use rand_core::Rng;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// The lane of heartbeats: its own connection, so a backlog of other requests can never
/// starve them (the cloud declares a node down after 90 s without one and moves its users).
pub const CONTROL_LANE: u64 = u64::MAX;
/// Heartbeat (and status upload) interval.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
/// Emails per presence query (the cloud's limit).
pub const PRESENCE_BATCH_MAX: usize = 1_000;
/// Emails per known-users report.
pub const KNOWN_USERS_BATCH_MAX: usize = 5_000;
/// Stanzas held per user while their session opens: an active Webex user's burst, bounded.
pub const HELD_PER_USER_MAX: usize = 256;
/// Posts queued per conversation while its space or key is fetched.
pub const QUEUED_PER_SPACE_MAX: usize = 1_000;
/// Remembered stanza-id ↔ activity-id pairs (for read markers); oldest forgotten first.
pub const ID_MAP_MAX: usize = 200_000;
/// Retry delay bounds for failed cloud or AXL requests.
pub const RETRY_MIN: Duration = Duration::from_secs(1);
/// Upper bound of the retry delay.
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// Sends of one Jabber → Webex post before it is given up: with the backoff from
/// [`RETRY_MIN`] to [`RETRY_MAX`] this outlasts a few minutes of 503s or a KMS outage, and a
/// post the cloud refuses for good (a 4xx) does not cycle forever.
pub const POST_ATTEMPTS_MAX: u32 = 10;
/// Sends of one hand-back ([`HANDBACK_PATH`]) before the activity is given up as
/// `dropped_unserved`: as [`POST_ATTEMPTS_MAX`], it outlasts minutes of 503s. How often one
/// activity may be handed back at all is the cloud's bound (it sees every node).
pub const HANDBACK_ATTEMPTS_MAX: u32 = 10;
/// Where a node gives back an activity event it cannot deliver any more: its user moved to
/// another node before the Jabber stanzas went out (a drain, spec 29). The cloud sends the
/// event again to the user's node now (at-least-once delivery).
pub const HANDBACK_PATH: &str = "/v1/events/redeliver";

/// Static settings of one connector node.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// This Expressway node's host name.
    pub hostname: String,
    /// Whether it is the cluster's primary.
    pub primary: bool,
    /// The cluster's Message Service configuration.
    pub cluster: ConnectorConfig,
    /// The other Expressway clusters of the organization (meshing rule).
    pub others: Vec<ConnectorConfig>,
    /// Control Hub registration token, if one was issued.
    pub registration_token: Option<String>,
    /// Session opens per second towards IM&P in normal operation.
    pub session_rate_per_s: f64,
    /// Migration rate after a failover: (sessions, per).
    pub migration_rate: (f64, Duration),
    /// Upper bound of the failover detection delay.
    pub detection_delay_max: Duration,
}

impl NodeSettings {
    /// The smallest valid deployment, for tests and examples: node `exp-a-1`, primary, alone
    /// in cluster `exp-a`, serving IM&P cluster `imp-a` through its publisher `imp-a-1` (AXL
    /// user `axl`, password `axl-pw`), with the default rates and a 60 s detection delay.
    pub fn single_node(registration_token: Option<String>) -> Self {
        let cluster = ConnectorConfig {
            cluster: "exp-a".into(),
            nodes: vec!["exp-a-1".into()],
            publishers: vec![super::config::ImpPublisher {
                cluster: "imp-a".into(),
                host: "imp-a-1".into(),
                axl_username: "axl".into(),
                axl_password: "axl-pw".into(),
                certificate_validation: true,
                platform_admin: "admin".into(),
            }],
            proxy: super::config::Proxy::None,
            enabled: true,
        };
        Self {
            hostname: "exp-a-1".into(),
            primary: true,
            cluster,
            others: Vec::new(),
            registration_token,
            session_rate_per_s: 50.0,
            migration_rate: (5000.0, Duration::from_secs(1800)),
            detection_delay_max: Duration::from_secs(60),
        }
    }
}

/// Where an HTTP request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The Webex cloud.
    Cloud,
    /// An IM&P publisher's AXL service.
    Axl {
        /// Publisher host.
        host: String,
    },
}

/// An HTTP request for the driver to perform; answer with [`ConnectorNode::handle_http`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Correlation id.
    pub id: u64,
    /// Destination.
    pub target: Target,
    /// Method.
    pub method: Method,
    /// Path.
    pub path: String,
    /// `Authorization` header value (`Bearer …` or `Basic …`).
    pub authorization: Option<String>,
    /// Body.
    pub body: Vec<u8>,
    /// Requests with the same lane must be performed in order (one conversation's posts).
    pub lane: u64,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Perform an HTTP request.
    Http(HttpRequest),
    /// Keep component links open to these IM&P nodes (replaces the previous set).
    Links(Vec<String>),
    /// Open the cloud event WebSocket with this bearer token.
    Events(String),
    /// Send a stanza on the component link to `node`.
    Xmpp {
        /// IM&P node host.
        node: String,
        /// The stanza (component namespace).
        stanza: Element,
    },
}

/// Where the node is in its lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Not started.
    Idle,
    /// The configuration breaks rules; nothing runs.
    Invalid(Vec<ConfigError>),
    /// Disabled by the administrator (spec 21).
    Disabled,
    /// Registering with the cloud.
    Registering,
    /// Discovering IM&P nodes and users over AXL.
    Discovering,
    /// Serving users.
    Running,
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Jabber → Webex activities posted.
    pub to_webex: u64,
    /// Webex → Jabber stanzas sent.
    pub to_jabber: u64,
    /// Stanzas not bridged (group chat, connector echoes, unknown users).
    pub not_bridged: u64,
    /// Malformed input rejected (bad JSON, bad JWE, unparsable stanzas).
    pub rejected: u64,
    /// HTTP requests that failed or answered an error status.
    pub http_errors: u64,
    /// Keys fetched from the KMS.
    pub keys_fetched: u64,
    /// Spaces created.
    pub spaces_created: u64,
    /// Stanzas dropped because a per-user or per-space queue was full.
    pub dropped_full: u64,
    /// Stanzas for Jabber that this node can no longer send: their user moved to another
    /// node (handover over) or was unassigned before they went out.
    pub dropped_unserved: u64,
    /// Jabber messages seen twice (carbon and recipient copy) and posted once.
    pub deduplicated: u64,
    /// Webex → Jabber activities given back to the cloud (accepted) because their user moved
    /// to another node before they went out; the cloud redelivers them there.
    pub handed_back: u64,
    /// Activity events received again (after a hand-back) that this node already delivered.
    pub duplicate_events: u64,
}

#[derive(Debug, Clone)]
enum Pending {
    Register,
    Heartbeat,
    Nodes {
        cluster: String,
    },
    Users {
        cluster: String,
        page: usize,
    },
    Report,
    /// `resync`: after the event stream reconnected (events may have been missed).
    Assignments {
        resync: bool,
    },
    Presence,
    Space {
        pair: (String, String),
    },
    SpaceInfo {
        space_id: String,
    },
    Key {
        uri: String,
    },
    /// A post to a space; `None` for typing (stale once repeated, never re-sent).
    Post(Option<Box<PostRetry>>),
    /// An activity event given back to the cloud ([`HANDBACK_PATH`]).
    HandBack(Box<HandBack>),
}

/// An activity event given back to the cloud, and how often it was sent so far.
#[derive(Debug, Clone)]
struct HandBack {
    body: Value,
    lane: u64,
    attempts: u32,
}

/// What a failed post needs to be sent again (the cloud dedupes by `client_id`).
#[derive(Debug, Clone)]
struct PostRetry {
    path: String,
    body: Value,
    lane: u64,
    attempts: u32,
}

/// A Jabber → Webex activity waiting for its space and key.
#[derive(Debug, Clone)]
struct OutPost {
    actor: String,
    activity: Activity,
    client_id: String,
}

/// A Webex → Jabber event waiting for its space members or key.
#[derive(Debug, Clone)]
enum InItem {
    Activity {
        a: Box<crate::proto::webex::Activity>,
        actor: String,
    },
    Typing {
        space_id: String,
        actor: String,
        on: bool,
    },
}

#[derive(Debug, Clone)]
struct SpaceInfo {
    members: Vec<String>,
    key_uri: String,
}

/// One connector node.
pub struct ConnectorNode {
    s: NodeSettings,
    phase: Phase,
    enabled: bool,
    out: VecDeque<Output>,
    next_http: u64,
    pending: BTreeMap<u64, Pending>,
    token: Option<String>,
    registered: bool,
    /// When Control Hub accepted the registration (this node's clock) and the delay it
    /// announced before it completes (spec 12, up to 5 min): see [`Self::registration_delay`].
    registration_delay: Option<(Duration, Duration)>,
    cloud_fault: Option<String>,
    retry: Backoff,
    retry_at: Option<(Duration, Pending)>,
    next_heartbeat: Duration,
    next_poll: Duration,
    // discovery
    nodes: BTreeMap<String, Vec<ImpNodeInfo>>,
    users: BTreeMap<String, Vec<AxlUser>>,
    discovering: BTreeSet<String>,
    directory: Directory,
    // users
    assigned: BTreeSet<String>,
    presence: BTreeMap<String, WebexPresence>,
    published: BTreeMap<String, JabberPresence>,
    sessions: SessionManager,
    failover: Failover,
    node_versions: BTreeMap<String, String>,
    held: BTreeMap<String, VecDeque<Element>>,
    // messaging
    spaces: BTreeMap<String, SpaceInfo>,
    pair_space: BTreeMap<(String, String), String>,
    keys: BTreeMap<String, SpaceKey>,
    outbox: BTreeMap<(String, String), VecDeque<OutPost>>,
    inbox_space: BTreeMap<String, Vec<InItem>>,
    inbox_key: BTreeMap<String, Vec<InItem>>,
    id_map: BTreeMap<String, String>,
    id_order: VecDeque<String>,
    next_stanza: u64,
    /// Whether the session bucket is the migration rate (restored when migration ends).
    sessions_bucket_is_migration: bool,
    /// Space, key and space-info requests to ask again at a time (after a failure).
    deferred: Vec<(Duration, Pending)>,
    /// Keys asked for and not answered yet (one fetch per key at a time).
    keys_in_flight: BTreeSet<String>,
    /// Conversations with posts waiting for a key, by key URI.
    key_waiters: BTreeMap<String, BTreeSet<(String, String)>>,
    /// Conversations whose space is asked for and not answered yet.
    spaces_in_flight: BTreeSet<(String, String)>,
    /// `client_id`s of posts already queued ([`POSTED_IDS_MAX`]).
    posted: BTreeMap<String, String>,
    posted_order: VecDeque<String>,
    /// Consecutive failures of each deferred fetch ([`fetch_id`]), for its backoff.
    fetch_failures: BTreeMap<String, u32>,
    stats: NodeStats,
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

/// Stanza ids of Jabber messages already posted (carbon and fan-out copies), oldest forgotten
/// first: a copy arrives within a round trip of the first, so the window is ample.
pub const POSTED_IDS_MAX: usize = 100_000;

/// Identifies a space, key or space-info fetch across its retries (for its own backoff).
fn fetch_id(what: &Pending) -> Option<String> {
    match what {
        Pending::Space { pair } => Some(format!("space {} {}", pair.0, pair.1)),
        Pending::Key { uri } => Some(format!("key {uri}")),
        Pending::SpaceInfo { space_id } => Some(format!("info {space_id}")),
        _ => None,
    }
}

fn lane_of(p: &(String, String)) -> u64 {
    fnv_bytes(p.0.bytes().chain([0]).chain(p.1.bytes()))
}

/// A stable hash of `s` (lanes, per-link seeds).
pub fn fnv(s: &str) -> u64 {
    fnv_bytes(s.bytes())
}

/// FNV-1a: a stable small hash (std's hasher is randomly seeded).
fn fnv_bytes(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

impl ConnectorNode {
    /// A node that has not started.
    pub fn new(s: NodeSettings, now: Duration) -> Self {
        let bucket = TokenBucket::new(s.session_rate_per_s, s.session_rate_per_s, now);
        let component = format!("hm.{}", s.hostname);
        let failover = Failover::new(&[], s.detection_delay_max);
        Self {
            sessions: SessionManager::new(&component, bucket),
            failover,
            s,
            phase: Phase::Idle,
            enabled: true,
            out: VecDeque::new(),
            next_http: 0,
            pending: BTreeMap::new(),
            token: None,
            registered: false,
            registration_delay: None,
            cloud_fault: Some("not registered".into()),
            retry: Backoff::new(RETRY_MIN, RETRY_MAX),
            retry_at: None,
            next_heartbeat: now,
            next_poll: now,
            nodes: BTreeMap::new(),
            users: BTreeMap::new(),
            discovering: BTreeSet::new(),
            directory: Directory::default(),
            assigned: BTreeSet::new(),
            presence: BTreeMap::new(),
            published: BTreeMap::new(),
            node_versions: BTreeMap::new(),
            held: BTreeMap::new(),
            spaces: BTreeMap::new(),
            pair_space: BTreeMap::new(),
            keys: BTreeMap::new(),
            outbox: BTreeMap::new(),
            inbox_space: BTreeMap::new(),
            inbox_key: BTreeMap::new(),
            id_map: BTreeMap::new(),
            id_order: VecDeque::new(),
            next_stanza: 0,
            sessions_bucket_is_migration: false,
            deferred: Vec::new(),
            fetch_failures: BTreeMap::new(),
            keys_in_flight: BTreeSet::new(),
            spaces_in_flight: BTreeSet::new(),
            key_waiters: BTreeMap::new(),
            posted: BTreeMap::new(),
            posted_order: VecDeque::new(),
            stats: NodeStats::default(),
        }
    }

    /// The lifecycle phase.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The last registration Control Hub accepted: when (this node's clock) and the delay it
    /// announced before the registration completes (`ready_in_ms`; spec 12: up to 5 min), so
    /// that a driver can say what the node is waiting for. `None` before any answer.
    pub fn registration_delay(&self) -> Option<(Duration, Duration)> {
        self.registration_delay
    }

    /// Counters.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// The session table (read-only).
    pub fn sessions(&self) -> &SessionManager {
        &self.sessions
    }

    /// Users whose session opened or stopped being open since the last call
    /// ([`SessionManager::take_open_changes`]): how observers follow sessions cheaply.
    pub fn take_open_changes(&mut self) -> std::collections::BTreeSet<String> {
        self.sessions.take_open_changes()
    }

    /// The directory built by discovery.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Users assigned to this node.
    pub fn assigned(&self) -> &BTreeSet<String> {
        &self.assigned
    }

    /// The next output.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    // ----- lifecycle ---------------------------------------------------------------------

    /// Starts: checks the configuration, then registers.
    pub fn start(&mut self, now: Duration) {
        let errors = config::validate(&self.s.cluster, &self.s.others);
        if !errors.is_empty() {
            self.phase = Phase::Invalid(errors);
            return;
        }
        if !self.enabled {
            self.phase = Phase::Disabled;
            return;
        }
        self.phase = Phase::Registering;
        self.register(now);
    }

    /// Enables or disables the connector (spec 21). Disabling closes every session.
    pub fn set_enabled(&mut self, on: bool, now: Duration) {
        self.enabled = on;
        if !on {
            self.sessions.unwant_all(now);
            self.drain_sessions();
            self.phase = Phase::Disabled;
        } else if self.phase == Phase::Disabled {
            self.phase = Phase::Idle;
            self.start(now);
        }
    }

    /// Control Hub maintenance mode (spec 29): a graceful drain. The cloud moves the users to
    /// the other nodes, so each session stays open until its new node takes it over
    /// ([`SessionManager::release`]) instead of closing at once as [`Self::set_enabled`]
    /// does; anything IM&P routes to it meanwhile is still bridged.
    fn set_maintenance(&mut self, on: bool, now: Duration) {
        if !on {
            self.set_enabled(true, now);
            return;
        }
        self.enabled = false;
        self.sessions.release_all(now);
        self.drain_sessions();
        self.phase = Phase::Disabled;
    }

    fn register(&mut self, _now: Duration) {
        // Without a token this is registration initiated from the Expressway UI: Control Hub
        // refuses it (spec 12), and the refusal is retried with backoff like any other.
        if self.s.registration_token.is_none() {
            self.cloud_fault = Some("no registration token from Control Hub".into());
        }
        let auth = self
            .s
            .registration_token
            .as_ref()
            .map(|t| format!("Bearer {t}"));
        let body = json!({"hostname": self.s.hostname, "primary": self.s.primary});
        let req = request(
            Target::Cloud,
            Method::Post,
            "/v1/connectors/register",
            auth,
            body,
        );
        self.http(req, Pending::Register);
    }

    /// Queues `req` (its id assigned here) and remembers what it was for.
    fn http(&mut self, mut req: HttpRequest, what: Pending) {
        self.next_http += 1;
        req.id = self.next_http;
        self.pending.insert(req.id, what);
        self.out.push_back(Output::Http(req));
    }

    fn cloud(&mut self, method: Method, path: &str, body: Value, lane: u64, what: Pending) {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut req = request(Target::Cloud, method, path, auth, body);
        req.lane = lane;
        self.http(req, what);
    }

    fn discover(&mut self) {
        self.phase = Phase::Discovering;
        let publishers = self.s.cluster.publishers.clone();
        for p in publishers {
            self.discovering.insert(p.cluster.clone());
            let auth = Some(directory::basic_auth(&p.axl_username, &p.axl_password));
            let body = directory::list_process_node_request();
            self.axl(
                &p.host,
                auth,
                body,
                Pending::Nodes {
                    cluster: p.cluster.clone(),
                },
            );
        }
    }

    fn axl(&mut self, host: &str, auth: Option<String>, body: String, what: Pending) {
        let mut req = request(
            Target::Axl {
                host: host.to_string(),
            },
            Method::Post,
            "/axl/",
            auth,
            Value::Null,
        );
        req.body = body.into_bytes();
        self.http(req, what);
    }

    // ----- HTTP answers -------------------------------------------------------------------

    /// An HTTP answer for request `id`.
    pub fn handle_http(
        &mut self,
        now: Duration,
        id: u64,
        status: u16,
        body: &[u8],
        rng: &mut impl Rng,
    ) {
        let Some(what) = self.pending.remove(&id) else {
            return;
        };
        self.answered(&what);
        if !(200..300).contains(&status) {
            self.stats.http_errors += 1;
            // Refused for good (limit reached, nobody serves the user): nothing else can
            // deliver it. A 429 or 5xx is retried like any failure.
            if matches!(what, Pending::HandBack(_)) && (400..500).contains(&status) && status != 429
            {
                self.stats.dropped_unserved += 1;
                return;
            }
            self.failed(
                now,
                what,
                &format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
                rng,
            );
            return;
        }
        let json = || serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
        let fetch = fetch_id(&what);
        let control = matches!(
            what,
            Pending::Register
                | Pending::Nodes { .. }
                | Pending::Users { .. }
                | Pending::Report
                | Pending::Assignments { .. }
        );
        match what {
            Pending::Register => self.on_registered(now, &json()),
            Pending::Heartbeat => self.on_heartbeat(now, &json()),
            Pending::Nodes { cluster } => self.on_nodes(&cluster, body, now, rng),
            Pending::Users { cluster, page } => self.on_users(&cluster, page, body, now, rng),
            Pending::Report => self.cloud(
                Method::Get,
                "/v1/connectors/assignments",
                Value::Null,
                0,
                Pending::Assignments { resync: false },
            ),
            Pending::Assignments { resync } => self.on_assignments(now, &json(), resync),
            Pending::Presence => self.on_presence(now, &json()),
            Pending::Space { pair } => self.on_space(now, pair, &json(), rng),
            Pending::SpaceInfo { space_id } => self.on_space_info(now, &space_id, &json(), rng),
            Pending::Key { uri } => self.on_key(now, &uri, &json(), rng),
            Pending::Post(p) => {
                self.stats.to_webex += 1;
                if let Some(p) = p {
                    self.on_posted(&p, &json());
                }
            }
            Pending::HandBack(h) => self.on_handed_back(&h, &json()),
        }
        if let Some(id) = fetch {
            self.fetch_failures.remove(&id);
        } else if control {
            self.retry.reset();
        }
    }

    /// A Jabber message became a Webex activity: remember which, so that a Webex read marker
    /// on it reaches Jabber as a displayed marker with the Jabber stanza id (XEP-0333).
    fn on_posted(&mut self, p: &PostRetry, answer: &Value) {
        let Some(stanza_id) = p.body["client_id"].as_str().and_then(stanza_id_of) else {
            return;
        };
        let first = answer["activities"].as_array().and_then(|a| a.first());
        if let Some(aid) = first.and_then(|a| a["id"].as_str()) {
            remember(
                &mut self.id_map,
                &mut self.id_order,
                format!("act:{aid}"),
                stanza_id.to_string(),
            );
        }
    }

    /// Forgets that `what` is in flight.
    fn answered(&mut self, what: &Pending) {
        match what {
            Pending::Key { uri } => {
                self.keys_in_flight.remove(uri);
            }
            Pending::Space { pair } => {
                self.spaces_in_flight.remove(pair);
            }
            _ => {}
        }
    }

    /// A request failed at the transport level (timeout, reset, refused).
    pub fn handle_http_failure(&mut self, now: Duration, id: u64, why: &str, rng: &mut impl Rng) {
        let Some(what) = self.pending.remove(&id) else {
            return;
        };
        self.answered(&what);
        self.stats.http_errors += 1;
        self.failed(now, what, why, rng);
    }

    /// Retries what must be retried; drops what a later step will redo.
    fn failed(&mut self, now: Duration, what: Pending, why: &str, rng: &mut impl Rng) {
        match what {
            Pending::Register
            | Pending::Nodes { .. }
            | Pending::Users { .. }
            | Pending::Report
            | Pending::Assignments { .. } => {
                self.cloud_fault = Some(why.to_string());
                let at = now + self.retry.next_delay(rng);
                self.retry_at = Some((at, what));
            }
            Pending::Heartbeat => self.cloud_fault = Some(why.to_string()),
            // What waits for a space or a key stays queued and is asked for again after a
            // seeded backoff of its own (a KMS outage or a 503 must not lose messages).
            fetch @ (Pending::Space { .. } | Pending::Key { .. } | Pending::SpaceInfo { .. }) => {
                let id = fetch_id(&fetch).expect("a fetch");
                let failures = self.fetch_failures.entry(id).or_default();
                *failures += 1;
                let at = now + backoff_delay(RETRY_MIN, RETRY_MAX, *failures, rng);
                self.deferred.push((at, fetch));
            }
            // A post the cloud did not take (503, 429) is sent again: dropping it loses the
            // message although no stream broke.
            Pending::Post(Some(p)) if p.attempts < POST_ATTEMPTS_MAX => {
                let at = now + backoff_delay(RETRY_MIN, RETRY_MAX, p.attempts, rng);
                self.deferred.push((at, Pending::Post(Some(p))));
            }
            // Giving an activity back is its last way to Jabber: retried like a post.
            Pending::HandBack(h) if h.attempts < HANDBACK_ATTEMPTS_MAX => {
                let at = now + backoff_delay(RETRY_MIN, RETRY_MAX, h.attempts, rng);
                self.deferred.push((at, Pending::HandBack(h)));
            }
            Pending::HandBack(_) => self.stats.dropped_unserved += 1,
            Pending::Presence | Pending::Post(_) => {}
        }
    }

    fn on_registered(&mut self, now: Duration, v: &Value) {
        let Some(token) = v["connector_token"].as_str() else {
            self.stats.rejected += 1;
            return;
        };
        self.token = Some(token.to_string());
        if let Some(ms) = v["ready_in_ms"].as_u64() {
            self.registration_delay = Some((now, Duration::from_millis(ms)));
        }
        self.out.push_back(Output::Events(token.to_string()));
        if v["state"].as_str() == Some("registered") {
            self.on_ready();
        }
    }

    fn on_heartbeat(&mut self, _now: Duration, v: &Value) {
        self.cloud_fault = None;
        if !self.registered && v["state"].as_str() == Some("registered") {
            self.on_ready();
        }
    }

    fn on_ready(&mut self) {
        if self.registered {
            return;
        }
        self.registered = true;
        self.cloud_fault = None;
        self.discover();
    }

    fn on_nodes(&mut self, cluster: &str, body: &[u8], now: Duration, rng: &mut impl Rng) {
        let nodes = match directory::parse_nodes(body) {
            Ok(n) => n,
            Err(e) => {
                self.stats.rejected += 1;
                return self.failed(
                    now,
                    Pending::Nodes {
                        cluster: cluster.into(),
                    },
                    &e.to_string(),
                    rng,
                );
            }
        };
        self.nodes.insert(cluster.to_string(), nodes);
        self.fetch_users(cluster, 0);
    }

    fn fetch_users(&mut self, cluster: &str, page: usize) {
        let Some(p) = self
            .s
            .cluster
            .publishers
            .iter()
            .find(|p| p.cluster == cluster)
            .cloned()
        else {
            return;
        };
        let auth = Some(directory::basic_auth(&p.axl_username, &p.axl_password));
        self.axl(
            &p.host,
            auth,
            directory::users_page_request(page),
            Pending::Users {
                cluster: cluster.into(),
                page,
            },
        );
    }

    fn on_users(
        &mut self,
        cluster: &str,
        page: usize,
        body: &[u8],
        now: Duration,
        rng: &mut impl Rng,
    ) {
        let rows = match directory::parse_users(body) {
            Ok(r) => r,
            Err(e) => {
                self.stats.rejected += 1;
                return self.failed(
                    now,
                    Pending::Users {
                        cluster: cluster.into(),
                        page,
                    },
                    &e.to_string(),
                    rng,
                );
            }
        };
        let n = rows.len();
        self.users
            .entry(cluster.to_string())
            .or_default()
            .extend(rows);
        if directory::more_pages(n, page) {
            return self.fetch_users(cluster, page + 1);
        }
        self.discovering.remove(cluster);
        if self.discovering.is_empty() {
            self.discovered(now);
        }
    }

    /// Discovery complete: build the directory, connect to nodes, report users.
    fn discovered(&mut self, now: Duration) {
        let clusters: Vec<(String, Vec<AxlUser>)> = self
            .users
            .iter()
            .map(|(c, u)| (c.clone(), u.clone()))
            .collect();
        self.directory = Directory::build(&clusters);
        let all: Vec<&ImpNodeInfo> = self.nodes.values().flatten().collect();
        let triples: Vec<(String, Option<String>, bool)> = all
            .iter()
            .map(|n| (n.name.clone(), n.prg_peer.clone(), n.high_availability))
            .collect();
        self.failover = Failover::new(&triples, self.s.detection_delay_max);
        self.node_versions = all
            .iter()
            .map(|n| (n.name.clone(), n.version.clone()))
            .collect();
        self.out
            .push_back(Output::Links(self.node_versions.keys().cloned().collect()));
        self.phase = Phase::Running;
        // Every (mail ID, home cluster) pair, duplicates included: the cloud decides.
        let emails: Vec<(String, String)> = self
            .directory
            .homes
            .iter()
            .flat_map(|(e, cs)| cs.iter().map(move |c| (e.clone(), c.clone())))
            .collect();
        for chunk in emails.chunks(KNOWN_USERS_BATCH_MAX) {
            let add: Vec<Value> = chunk
                .iter()
                .map(|(e, c)| json!({"email": e, "imp_cluster": c}))
                .collect();
            self.cloud(
                Method::Post,
                "/v1/connectors/users",
                json!({"add": add}),
                0,
                Pending::Report,
            );
        }
        if emails.is_empty() {
            self.cloud(
                Method::Get,
                "/v1/connectors/assignments",
                Value::Null,
                0,
                Pending::Assignments { resync: false },
            );
        }
        self.next_poll = now;
    }

    /// A snapshot of this node's assignments. It may be older than assignment events that
    /// arrived meanwhile on the event stream, so it only adds users, except on a resync after
    /// the stream reconnected, when missed removals must be applied too.
    fn on_assignments(&mut self, now: Duration, v: &Value, resync: bool) {
        let users: BTreeSet<String> = v["users"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if resync {
            let removed: Vec<String> = self.assigned.difference(&users).cloned().collect();
            for u in removed {
                self.unassign(&u, now);
            }
        }
        let added: Vec<String> = users.difference(&self.assigned).cloned().collect();
        self.assigned.extend(added.iter().cloned());
        self.poll_presence(&added);
    }

    fn unassign(&mut self, user: &str, now: Duration) {
        self.assigned.remove(user);
        // Moved to another node (or unassigned): make-before-break, so a message IM&P routes
        // to the session before the new node opens one is still bridged (spec 29).
        self.sessions.release(user, now);
        self.published.remove(user);
        let held = self.held.remove(user).map_or(0, |q| q.len());
        self.stats.dropped_unserved += held as u64;
        self.drain_sessions();
    }

    fn poll_presence(&mut self, emails: &[String]) {
        for chunk in emails.chunks(PRESENCE_BATCH_MAX) {
            self.cloud(
                Method::Post,
                "/v1/presence/query",
                json!({"emails": chunk}),
                0,
                Pending::Presence,
            );
        }
    }

    fn on_presence(&mut self, now: Duration, v: &Value) {
        let Some(states) = v["states"].as_array() else {
            self.stats.rejected += 1;
            return;
        };
        for st in states {
            let Some(email) = st["email"].as_str() else {
                continue;
            };
            let ms = |k: &str| st[k].as_u64().map(Duration::from_millis);
            let p = WebexPresence {
                last_active: ms("last_active_ms"),
                dnd_until: ms("dnd_until_ms"),
                out_of_office: st["out_of_office"].as_bool().unwrap_or(false),
                hidden: st["hidden"].as_bool().unwrap_or(false),
            };
            self.presence.insert(email.to_string(), p);
            self.apply_presence(email, now);
        }
        self.drain_sessions();
    }

    /// Wants or drops the user's session, and republishes presence if it changed.
    fn apply_presence(&mut self, email: &str, now: Duration) {
        if !self.assigned.contains(email) {
            return;
        }
        let p = self.presence.get(email).copied().unwrap_or_default();
        let Some(entry) = self.directory.get(email).cloned() else {
            return;
        };
        if presence::wants_session(&p, now) {
            let target = self.failover.target(&entry.home);
            self.sessions.want(email, &entry.jid, &target, now);
            self.publish_presence(email, now);
        } else {
            self.sessions.unwant(email, now);
            self.published.remove(email);
        }
    }

    fn publish_presence(&mut self, email: &str, now: Duration) {
        if !matches!(
            self.sessions.state(email),
            Some(super::sessions::SessionState::Open)
        ) {
            return;
        }
        let p = self.presence.get(email).copied().unwrap_or_default();
        let shown = presence::translate(&p, now);
        if self.published.get(email) == Some(&shown) || shown == JabberPresence::Offline {
            return;
        }
        self.published.insert(email.to_string(), shown);
        let (Some(jid), Some(node)) = (self.directory.jid_of(email), self.sessions.node_of(email))
        else {
            return;
        };
        // Undirected: IM&P composes it with the user's other devices and tells contacts.
        let mut pres = Element::new("presence", NS_COMPONENT)
            .with_attr("from", SessionManager::session_jid(jid));
        if let Some(show) = shown.show() {
            pres = pres.with_child(Element::new("show", NS_COMPONENT).with_text(show));
        }
        pres = pres.with_child(Element::new("status", NS_COMPONENT).with_text(STATUS_TEXT));
        let node = node.to_string();
        self.out.push_back(Output::Xmpp { node, stanza: pres });
    }

    fn drain_sessions(&mut self) {
        while let Some(cmd) = self.sessions.poll_command() {
            self.out.push_back(Output::Xmpp {
                node: cmd.node,
                stanza: cmd.iq,
            });
        }
    }

    // ----- spaces and keys ------------------------------------------------------------------

    fn on_space(&mut self, now: Duration, p: (String, String), v: &Value, rng: &mut impl Rng) {
        let (Some(id), Some(uri)) = (v["space_id"].as_str(), v["key_uri"].as_str()) else {
            self.stats.rejected += 1;
            return;
        };
        self.stats.spaces_created += u64::from(v["created"].as_bool().unwrap_or(false));
        let members = v["members"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        self.spaces.insert(
            id.to_string(),
            SpaceInfo {
                members,
                key_uri: uri.to_string(),
            },
        );
        self.pair_space.insert(p.clone(), id.to_string());
        self.flush_outbox(&p, now, rng);
    }

    fn on_space_info(&mut self, now: Duration, space_id: &str, v: &Value, rng: &mut impl Rng) {
        let (Some(uri), Some(members)) = (v["key_uri"].as_str(), v["members"].as_array()) else {
            self.stats.rejected += 1;
            return;
        };
        let members: Vec<String> = members
            .iter()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect();
        if members.len() == 2 {
            self.pair_space
                .insert(pair(&members[0], &members[1]), space_id.to_string());
        }
        self.spaces.insert(
            space_id.to_string(),
            SpaceInfo {
                members,
                key_uri: uri.to_string(),
            },
        );
        for item in self.inbox_space.remove(space_id).unwrap_or_default() {
            self.inbound(now, item, rng);
        }
    }

    fn on_key(&mut self, now: Duration, uri: &str, v: &Value, rng: &mut impl Rng) {
        let bytes = v["key"]
            .as_str()
            .and_then(|k| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(k)
                    .ok()
            })
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok());
        let Some(bytes) = bytes else {
            self.stats.rejected += 1;
            return;
        };
        self.stats.keys_fetched += 1;
        self.keys.insert(
            uri.to_string(),
            SpaceKey {
                uri: uri.to_string(),
                bytes,
            },
        );
        for p in self.key_waiters.remove(uri).unwrap_or_default() {
            self.flush_outbox(&p, now, rng);
        }
        for item in self.inbox_key.remove(uri).unwrap_or_default() {
            self.inbound(now, item, rng);
        }
    }

    fn fetch_key(&mut self, uri: &str) {
        if self.keys_in_flight.insert(uri.to_string()) {
            // Fetches need no order among themselves: spread them over the connections.
            self.cloud(
                Method::Post,
                "/v1/kms/keys",
                json!({"uri": uri}),
                fnv(uri),
                Pending::Key {
                    uri: uri.to_string(),
                },
            );
        }
    }

    // ----- Jabber → Webex -------------------------------------------------------------------

    /// A stanza from IM&P node `node` on the component link.
    pub fn handle_stanza(&mut self, now: Duration, node: &str, el: &Element, rng: &mut impl Rng) {
        match el.name.as_str() {
            "iq" => self.on_iq(now, node, el, rng),
            "message" => self.on_message(now, el, rng),
            _ => {}
        }
    }

    fn on_iq(&mut self, now: Duration, node: &str, el: &Element, rng: &mut impl Rng) {
        if self.sessions.handle_iq(el, now, rng) {
            self.learn_from_redirects(now, rng);
            self.after_sessions(now);
            return;
        }
        let Some(s) = el.child("session", NS_HM_SESSION) else {
            return;
        };
        if el.attr("type") == Some("set") && s.attr("action") == Some("stop") {
            // The node ended a session (a Jabber client took its resource).
            let bare = s
                .attr("jid")
                .and_then(|j| Jid::parse(j).ok())
                .map(|j| j.bare());
            if let Some(email) = bare
                .as_deref()
                .and_then(|b| self.directory.email_of(b))
                .map(str::to_string)
            {
                let reason = s.attr("reason").unwrap_or("conflict");
                self.sessions.ended_by_node(&email, reason);
                self.published.remove(&email);
                if reason == "see-other-host" {
                    self.prg_moved(now, node, &email, rng);
                }
            }
            let reply = xmpp::iq_result(el, None);
            self.out.push_back(Output::Xmpp {
                node: node.to_string(),
                stanza: reply,
            });
        }
    }

    /// Sessions opened: flush held stanzas, publish presence.
    fn after_sessions(&mut self, now: Duration) {
        self.drain_sessions();
        while let Some(email) = self.sessions.poll_opened() {
            self.publish_presence(&email, now);
            let node = self.sessions.node_of(&email).map(str::to_string);
            for stanza in self.held.remove(&email).unwrap_or_default() {
                if let Some(node) = &node {
                    self.stats.to_jabber += 1;
                    self.out.push_back(Output::Xmpp {
                        node: node.clone(),
                        stanza,
                    });
                }
            }
        }
    }

    fn on_message(&mut self, now: Duration, el: &Element, rng: &mut impl Rng) {
        if el.attr("type") == Some("error") {
            return;
        }
        // Carbons: `sent` = our user wrote from Jabber; `received` = a copy of a message to
        // another of our user's resources.
        let inner = el
            .child_ns(NS_CARBONS)
            .and_then(|c| c.child("forwarded", NS_FORWARD))
            .and_then(|f| f.elements().find(|e| e.name == "message"))
            .unwrap_or(el);
        let (Some(from), Some(to)) = (
            inner.attr("from").and_then(|f| Jid::parse(f).ok()),
            inner.attr("to").and_then(|t| Jid::parse(t).ok()),
        ) else {
            self.stats.rejected += 1;
            return;
        };
        if from.resource.as_deref() == Some(SESSION_RESOURCE) {
            self.stats.not_bridged += 1;
            return; // written by a connector: Webex already has it
        }
        let activities = match translate::from_xmpp(inner) {
            Ok(a) => a,
            Err(_) => {
                self.stats.not_bridged += 1;
                return;
            }
        };
        let (Some(actor), Some(other)) = (
            self.directory.email_of(&from.bare()).map(str::to_string),
            self.directory.email_of(&to.bare()).map(str::to_string),
        ) else {
            self.stats.not_bridged += 1;
            return;
        };
        let id = inner.attr("id").unwrap_or("noid").to_string();
        let p = pair(&actor, &other);
        let queue = self.outbox.entry(p.clone()).or_default();
        for (n, activity) in activities.into_iter().enumerate() {
            if queue.len() >= QUEUED_PER_SPACE_MAX {
                self.stats.dropped_full += 1;
                break;
            }
            if let Activity::Post { .. } = activity {
                remember(
                    &mut self.id_map,
                    &mut self.id_order,
                    format!("xmpp:{}:{id}", from.bare()),
                    String::new(),
                );
            }
            let client_id = format!("xmpp:{}:{id}:{n}", from.bare());
            // Both users on this node: the sender's carbon and the recipient's copy are the
            // same message; post it once (the cloud would drop the second by `client_id`).
            if self.posted.contains_key(&client_id) {
                self.stats.deduplicated += 1;
                continue;
            }
            remember_at_most(
                &mut self.posted,
                &mut self.posted_order,
                client_id.clone(),
                String::new(),
                POSTED_IDS_MAX,
            );
            queue.push_back(OutPost {
                actor: actor.clone(),
                activity,
                client_id,
            });
        }
        self.flush_outbox(&p, now, rng);
    }

    /// Sends queued posts of a conversation once its space and key are known; asks for
    /// whichever is missing.
    fn flush_outbox(&mut self, p: &(String, String), _now: Duration, rng: &mut impl Rng) {
        let Some(space_id) = self.pair_space.get(p).cloned() else {
            let asked = self.spaces_in_flight.contains(p);
            if !asked && self.outbox.get(p).is_some_and(|q| !q.is_empty()) {
                self.spaces_in_flight.insert(p.clone());
                let body = json!({"kind": "direct", "members": [p.0, p.1]});
                self.cloud(
                    Method::Post,
                    "/v1/spaces",
                    body,
                    lane_of(p),
                    Pending::Space { pair: p.clone() },
                );
            }
            return;
        };
        let uri = self
            .spaces
            .get(&space_id)
            .map(|s| s.key_uri.clone())
            .unwrap_or_default();
        let Some(key) = self.keys.get(&uri).cloned() else {
            self.key_waiters
                .entry(uri.clone())
                .or_default()
                .insert(p.clone());
            self.fetch_key(&uri);
            return;
        };
        let posts: Vec<OutPost> = self.outbox.remove(p).unwrap_or_default().into();
        for post in posts {
            self.post(&space_id, &key, post, lane_of(p), rng);
        }
    }

    fn post(
        &mut self,
        space_id: &str,
        key: &SpaceKey,
        post: OutPost,
        lane: u64,
        rng: &mut impl Rng,
    ) {
        let path = format!("/v1/spaces/{space_id}/activities");
        let mut enc = |text: &str| jwe::encrypt(key, jwe::draw_iv(rng), text.as_bytes());
        let body = match &post.activity {
            Activity::Post { text } => {
                json!({"verb": "post", "actor": post.actor, "encrypted_text": enc(text), "client_id": post.client_id})
            }
            Activity::FileRefused => {
                let text = enc(translate::FILE_FROM_JABBER_NOTICE);
                json!({"verb": "post", "actor": post.actor, "encrypted_text": text, "client_id": post.client_id})
            }
            Activity::Typing(on) => {
                let body = json!({"typing": on, "actor": post.actor});
                return self.cloud(
                    Method::Post,
                    &format!("/v1/spaces/{space_id}/typing"),
                    body,
                    lane,
                    Pending::Post(None),
                );
            }
            Activity::Read { up_to } => {
                let Some(target) = self.id_map.get(&format!("hm:{up_to}")).cloned() else {
                    return;
                };
                json!({"verb": "read", "actor": post.actor, "target": target, "client_id": post.client_id})
            }
            _ => return, // edits, deletes and files do not originate in Jabber
        };
        let retry = PostRetry {
            path: path.clone(),
            body: body.clone(),
            lane,
            attempts: 1,
        };
        self.cloud(
            Method::Post,
            &path,
            body,
            lane,
            Pending::Post(Some(Box::new(retry))),
        );
    }

    // ----- Webex → Jabber -------------------------------------------------------------------

    /// A cloud event from the WebSocket.
    pub fn handle_event(&mut self, now: Duration, ev: Event, rng: &mut impl Rng) {
        match ev {
            Event::Activity {
                activity,
                for_user: Some(actor),
            } => {
                self.touch(&actor, now);
                self.inbound(now, InItem::Activity { a: activity, actor }, rng);
            }
            Event::Typing {
                space_id,
                actor,
                typing,
                for_user: Some(_),
            } => {
                self.inbound(
                    now,
                    InItem::Typing {
                        space_id,
                        actor,
                        on: typing,
                    },
                    rng,
                );
            }
            Event::Assignment { added, removed, .. } => {
                for u in removed {
                    self.unassign(&u, now);
                }
                let new: Vec<String> = added
                    .into_iter()
                    .filter(|u| self.assigned.insert(u.clone()))
                    .collect();
                self.poll_presence(&new);
            }
            Event::Registration {
                state: RegState::Registered,
                ..
            } => self.on_ready(),
            Event::Maintenance { on, .. } => self.set_maintenance(on, now),
            _ => {}
        }
    }

    /// The event stream reconnected: events may have been missed, so fetch assignments again
    /// (activities missed meanwhile are the cloud's to replay, as for any client).
    pub fn resync(&mut self, _now: Duration) {
        if self.registered {
            self.cloud(
                Method::Get,
                "/v1/connectors/assignments",
                Value::Null,
                0,
                Pending::Assignments { resync: true },
            );
        }
    }

    /// The actor just used Webex: they are active now; make sure their session is wanted.
    fn touch(&mut self, email: &str, now: Duration) {
        let p = self.presence.entry(email.to_string()).or_default();
        p.last_active = Some(now);
        self.apply_presence(email, now);
        self.drain_sessions();
    }

    fn inbound(&mut self, now: Duration, item: InItem, rng: &mut impl Rng) {
        if let InItem::Activity { a, actor } = &item {
            if self.id_map.contains_key(&format!("act:{}", a.id)) {
                // Redelivered after a hand-back, but this node sent it already.
                self.stats.duplicate_events += 1;
                return;
            }
            if !self.can_send_as(actor) {
                return self.hand_back(a, actor);
            }
        }
        let space_id = match &item {
            InItem::Activity { a, .. } => a.space_id.clone(),
            InItem::Typing { space_id, .. } => space_id.clone(),
        };
        let Some(space) = self.spaces.get(&space_id).cloned() else {
            let first = !self.inbox_space.contains_key(&space_id);
            self.inbox_space
                .entry(space_id.clone())
                .or_default()
                .push(item);
            if first {
                self.cloud(
                    Method::Get,
                    &format!("/v1/spaces/{space_id}"),
                    Value::Null,
                    fnv(&space_id),
                    Pending::SpaceInfo { space_id },
                );
            }
            return;
        };
        let needs_key = matches!(&item, InItem::Activity { a, .. } if a.encrypted_text.is_some() || a.target_encrypted_text.is_some());
        if needs_key && !self.keys.contains_key(&space.key_uri) {
            self.inbox_key
                .entry(space.key_uri.clone())
                .or_default()
                .push(item);
            self.fetch_key(&space.key_uri);
            return;
        }
        let key = self.keys.get(&space.key_uri).cloned();
        match item {
            InItem::Typing { actor, on, .. } => {
                self.deliver(now, &space, &actor, Activity::Typing(on), None)
            }
            InItem::Activity { a, actor } => {
                let Some(activity) = self.decode(&a, key.as_ref()) else {
                    self.stats.rejected += 1;
                    return;
                };
                self.deliver(now, &space, &actor, activity, Some(&a.id));
            }
        }
        let _ = rng;
    }

    /// Turns a stored activity into the neutral model, decrypting what it carries.
    fn decode(
        &self,
        a: &crate::proto::webex::Activity,
        key: Option<&SpaceKey>,
    ) -> Option<Activity> {
        let open = |ct: &Option<String>| -> Option<String> {
            let ct = ct.as_ref()?;
            let plain = jwe::decrypt(key?, ct).ok()?;
            String::from_utf8(plain).ok()
        };
        Some(match a.verb {
            Verb::Post => match &a.edit_of {
                Some(orig) => Activity::Edit {
                    replaces: orig.clone(),
                    text: open(&a.encrypted_text)?,
                },
                None => Activity::Post {
                    text: open(&a.encrypted_text)?,
                },
            },
            Verb::Share => {
                let file: Value = serde_json::from_str(&open(&a.encrypted_text)?).ok()?;
                Activity::File {
                    url: file["url"].as_str()?.to_string(),
                    name: file["name"].as_str().unwrap_or("file").to_string(),
                }
            }
            Verb::Delete => match a.target_verb {
                Some(Verb::Share) => {
                    let name = open(&a.target_encrypted_text)
                        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                        .and_then(|f| f["name"].as_str().map(str::to_string))
                        .unwrap_or_else(|| "file".into());
                    Activity::FileDeleted {
                        target: a.target.clone().unwrap_or_default(),
                        name,
                    }
                }
                // An edit arrives as the new post (with `edit_of`) and this delete: the notice
                // is sent once, with the edit.
                _ if a.edit_of.is_some() => return None,
                _ => Activity::Delete {
                    target: a.target.clone().unwrap_or_default(),
                },
            },
            Verb::Read => {
                let target = a.target.clone()?;
                let up_to = self
                    .id_map
                    .get(&format!("act:{target}"))
                    .cloned()
                    .unwrap_or(target);
                Activity::Read { up_to }
            }
        })
    }

    /// Sends `activity` from `actor`'s session to the other member of the space.
    fn deliver(
        &mut self,
        now: Duration,
        space: &SpaceInfo,
        actor: &str,
        activity: Activity,
        activity_id: Option<&str>,
    ) {
        // Group spaces are never bridged (spec 42); the cloud does not route them here, and a
        // stray one is dropped rather than sent to one member picked out of many.
        if space.members.len() != 2 {
            self.stats.not_bridged += 1;
            return;
        }
        let Some(other) = space.members.iter().find(|m| *m != actor).cloned() else {
            return;
        };
        let (Some(from), Some(to)) = (
            self.directory.jid_of(actor).map(str::to_string),
            self.directory.jid_of(&other).map(str::to_string),
        ) else {
            self.stats.not_bridged += 1;
            return;
        };
        let name = actor.split('@').next().unwrap_or(actor).to_string();
        let from_full = SessionManager::session_jid(&from);
        let mut next = self.next_stanza;
        let host = self.s.hostname.clone();
        let stanzas = translate::to_xmpp(&activity, &from_full, &to, &name, &mut || {
            next += 1;
            format!("hm-{host}-{next}")
        });
        self.next_stanza = next;
        for mut st in stanzas {
            st.ns = NS_COMPONENT.to_string();
            for c in st.children.iter_mut() {
                if let crate::proto::xml::Node::Element(e) = c
                    && e.ns == xmpp::NS_CLIENT
                {
                    e.ns = NS_COMPONENT.to_string();
                }
            }
            if let (Some(aid), Some(sid), true) =
                (activity_id, st.attr("id"), xmpp::body(&st).is_some())
            {
                let (aid, sid) = (aid.to_string(), sid.to_string());
                remember(
                    &mut self.id_map,
                    &mut self.id_order,
                    format!("hm:{sid}"),
                    aid.clone(),
                );
                remember(
                    &mut self.id_map,
                    &mut self.id_order,
                    format!("act:{aid}"),
                    sid,
                );
            }
            self.send_as(now, actor, st);
        }
    }

    /// The IM&P node of the session that carries stanzas sent as `email` now: their open
    /// session, or for a user moved to another node whose session is still handed over from
    /// here, that one (what was in flight for them goes out on it rather than waiting for a
    /// session that never opens).
    fn sending_node(&self, email: &str) -> Option<&str> {
        let open = matches!(
            self.sessions.state(email),
            Some(super::sessions::SessionState::Open)
        );
        match open {
            true => self.sessions.node_of(email),
            false => self.sessions.handover_node(email),
        }
    }

    /// Whether a stanza sent as `email` can still go out from this node (now, or once their
    /// session opens).
    fn can_send_as(&self, email: &str) -> bool {
        self.sending_node(email).is_some() || self.assigned.contains(email)
    }

    /// Gives an activity event this node can no longer deliver back to the cloud, which sends
    /// it to the user's node now: without it a message that arrived just before its user moved
    /// (a drain, spec 29) would be lost here.
    fn hand_back(&mut self, a: &crate::proto::webex::Activity, actor: &str) {
        let body = json!({"space_id": a.space_id, "activity_id": a.id, "for_user": actor});
        let lane = fnv(&a.space_id);
        let h = HandBack {
            body: body.clone(),
            lane,
            attempts: 1,
        };
        self.cloud(
            Method::Post,
            HANDBACK_PATH,
            body,
            lane,
            Pending::HandBack(Box::new(h)),
        );
    }

    /// The cloud took an activity back and sent it to the user's node now (`to`). That being
    /// this node means it serves the user although no assignment event said so (one was lost
    /// with a dropped event socket and the resync has not answered yet): the user is taken on
    /// now, so that the redelivered event goes out instead of bouncing until the cloud's bound.
    fn on_handed_back(&mut self, h: &HandBack, answer: &Value) {
        self.stats.handed_back += 1;
        let Some(user) = h.body["for_user"].as_str() else {
            return;
        };
        if answer["to"].as_str() == Some(self.s.hostname.as_str())
            && self.assigned.insert(user.to_string())
        {
            self.poll_presence(&[user.to_string()]);
        }
    }

    /// Sends a stanza as the user's session, holding it until the session is open.
    fn send_as(&mut self, _now: Duration, email: &str, stanza: Element) {
        match self.sending_node(email).map(str::to_string) {
            Some(node) => {
                self.stats.to_jabber += 1;
                self.out.push_back(Output::Xmpp { node, stanza });
            }
            // Not assigned here any more: no session will open to carry it.
            None if !self.assigned.contains(email) => {
                self.stats.dropped_unserved += 1;
            }
            None => {
                let q = self.held.entry(email.to_string()).or_default();
                if q.len() >= HELD_PER_USER_MAX {
                    self.stats.dropped_full += 1;
                    return;
                }
                q.push_back(stanza);
            }
        }
    }

    // ----- links and timers -------------------------------------------------------------------

    /// The component link to `node` is established.
    pub fn node_up(&mut self, now: Duration, node: &str, rng: &mut impl Rng) {
        self.failover.link_back(node, now, rng);
        self.sessions.node_up(node, now);
        self.drain_sessions();
    }

    /// The component link to `node` was lost.
    pub fn node_down(&mut self, now: Duration, node: &str, rng: &mut impl Rng) {
        self.failover.node_lost(node, now, rng);
        self.sessions.node_down(node, now);
        for (email, _) in self.published.clone() {
            if self.sessions.node_of(&email) == Some(node) {
                self.published.remove(&email);
            }
        }
        self.drain_sessions();
    }

    /// The next time [`Self::handle_timeout`] must run.
    pub fn poll_timeout(&mut self, now: Duration) -> Option<Duration> {
        let mut t = [
            (self.token.is_some()).then_some(self.next_heartbeat),
            (self.phase == Phase::Running).then_some(self.next_poll),
            self.retry_at.as_ref().map(|(at, _)| *at),
            self.sessions.poll_timeout(now),
            self.deferred.iter().map(|(at, _)| *at).min(),
            self.failover.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(x) = t.as_mut() {
            *x = (*x).max(now);
        }
        t
    }

    /// Runs timers due at `now`.
    pub fn handle_timeout(&mut self, now: Duration, rng: &mut impl Rng) {
        if let Some((at, _)) = &self.retry_at
            && *at <= now
        {
            let (_, what) = self.retry_at.take().expect("checked");
            self.retry_request(what);
        }
        if self.token.is_some() && now >= self.next_heartbeat {
            self.next_heartbeat = now + HEARTBEAT_INTERVAL;
            let status = self.status_json(now);
            self.cloud(
                Method::Post,
                "/v1/connectors/heartbeat",
                json!({"status": status}),
                CONTROL_LANE,
                Pending::Heartbeat,
            );
        }
        if self.phase == Phase::Running && now >= self.next_poll {
            self.next_poll = now + presence::POLL_INTERVAL;
            let users: Vec<String> = self.assigned.iter().cloned().collect();
            self.poll_presence(&users);
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.deferred = later;
        for (_, what) in due {
            self.retry_fetch(what, now, rng);
        }
        for m in self.failover.due(now) {
            self.migrate(&m, now);
        }
        // (The flag first: counting pending opens walks every user.)
        if self.sessions_bucket_is_migration && self.sessions.pending_opens() == 0 {
            let normal =
                TokenBucket::new(self.s.session_rate_per_s, self.s.session_rate_per_s, now);
            self.sessions.set_bucket(normal);
            self.sessions_bucket_is_migration = false;
        }
        self.sessions.handle_timeout(now);
        self.after_sessions(now);
        let _ = rng;
    }

    /// Asks again for a space, a key or a space's members after a failure.
    fn retry_fetch(&mut self, what: Pending, now: Duration, rng: &mut impl Rng) {
        match what {
            Pending::Space { pair } => self.flush_outbox(&pair, now, rng),
            Pending::Key { uri } => self.fetch_key(&uri),
            Pending::SpaceInfo { space_id } => {
                let path = format!("/v1/spaces/{space_id}");
                self.cloud(
                    Method::Get,
                    &path,
                    Value::Null,
                    fnv(&space_id),
                    Pending::SpaceInfo { space_id },
                );
            }
            Pending::Post(Some(mut p)) => {
                p.attempts += 1;
                let (path, body, lane) = (p.path.clone(), p.body.clone(), p.lane);
                self.cloud(Method::Post, &path, body, lane, Pending::Post(Some(p)));
            }
            Pending::HandBack(mut h) => {
                h.attempts += 1;
                let (body, lane) = (h.body.clone(), h.lane);
                self.cloud(
                    Method::Post,
                    HANDBACK_PATH,
                    body,
                    lane,
                    Pending::HandBack(h),
                );
            }
            _ => {}
        }
    }

    fn retry_request(&mut self, what: Pending) {
        match what {
            Pending::Register => self.register(Duration::ZERO),
            Pending::Nodes { .. } | Pending::Users { .. } => {
                self.nodes.clear();
                self.users.clear();
                self.discovering.clear();
                self.discover();
            }
            Pending::Report | Pending::Assignments { .. } => self.cloud(
                Method::Get,
                "/v1/connectors/assignments",
                Value::Null,
                0,
                Pending::Assignments { resync: false },
            ),
            _ => {}
        }
    }

    /// A node ended `email`'s session with `see-other-host`: its PRG moved the user's home
    /// away. The home node itself doing so is a (manual) failover of that node; its peer doing
    /// so gives the users back (fallback). Either is noticed like a lost stream, with the
    /// detection delay (spec 62).
    fn prg_moved(&mut self, now: Duration, node: &str, email: &str, rng: &mut impl Rng) {
        let Some(home) = self.directory.get(email).map(|e| e.home.clone()) else {
            return;
        };
        if home == node {
            self.failover.node_lost(&home, now, rng);
        } else {
            self.failover.node_back(&home, now, rng);
        }
    }

    /// Opens a node refused with a `redirect` naming the node that serves the user now (the
    /// sessions followed them): what they tell about the PRG. The home node's peer serving
    /// its users is a failover the connector did not see (it started while the node was
    /// failed over): the node's other users not open anywhere go to the peer as well. The
    /// home node serving them again is a fallback it did not see.
    fn learn_from_redirects(&mut self, now: Duration, rng: &mut impl Rng) {
        while let Some(r) = self.sessions.poll_redirected() {
            let Some(home) = self.directory.get(&r.user).map(|e| e.home.clone()) else {
                continue;
            };
            if r.to != home {
                if self.failover.learned_failed_over(&home, &r.to, now) {
                    // Re-creating the node's sessions on the peer loads it like any failover
                    // does: at the migration rate (spec 62), not the normal open rate.
                    let m = Move {
                        from: home,
                        to: r.to,
                        at: now,
                        fallback: false,
                    };
                    self.migrate(&m, now);
                }
            } else if self.failover.target(&home) != home {
                self.failover.node_back(&home, now, rng);
            }
        }
    }

    /// Moves the sessions of the users homed on the failed node (failover: from it to its
    /// peer; fallback: from the peer back to it), paced by the migration rate. The peer's own
    /// users stay where they are.
    fn migrate(&mut self, m: &Move, now: Duration) {
        let (count, per) = self.s.migration_rate;
        self.sessions.set_bucket(TokenBucket::per(count, per, now));
        self.sessions_bucket_is_migration = true;
        let home = if m.fallback { &m.to } else { &m.from };
        let movers: Vec<String> = self
            .sessions
            .users()
            .filter(|u| self.sessions.node_of(u) == Some(m.from.as_str()))
            .filter(|u| self.directory.get(u).is_some_and(|e| &e.home == home))
            .cloned()
            .collect();
        for u in movers {
            self.sessions.retarget(&u, &m.to, now);
        }
        self.drain_sessions();
    }

    /// The status page now (spec 66-71).
    pub fn status_page(&self, now: Duration) -> StatusPage {
        let last_active: BTreeMap<String, Duration> = self
            .presence
            .iter()
            .filter_map(|(e, p)| p.last_active.map(|t| (e.clone(), t)))
            .collect();
        let enabled: Vec<String> = self.assigned.iter().cloned().collect();
        let cert: BTreeMap<&str, bool> = self
            .s
            .cluster
            .publishers
            .iter()
            .map(|p| (p.cluster.as_str(), p.certificate_validation))
            .collect();
        let nodes: Vec<(String, String, NodeStatus, bool)> = self
            .nodes
            .iter()
            .flat_map(|(cluster, ns)| {
                let c = cert.get(cluster.as_str()).copied().unwrap_or(true);
                ns.iter()
                    .map(move |n| (n.name.clone(), n.version.clone(), c))
            })
            .map(|(n, v, c)| {
                let st = self.failover.status(&n).unwrap_or(NodeStatus::Operational);
                (n, v, st, c)
            })
            .collect();
        StatusPage::compute(&StatusInputs {
            cloud_fault: self.cloud_fault.as_deref(),
            directory: &self.directory,
            enabled: &enabled,
            last_active: &last_active,
            nodes: &nodes,
            now,
        })
    }

    fn status_json(&self, now: Duration) -> Value {
        let p = self.status_page(now);
        json!({
            "connectivity": p.connectivity,
            "users_local": p.users_local,
            "users_all": p.users_all,
            "enabled": p.enabled,
            "active": p.active,
            "inactive": p.inactive,
            "nodes": p.nodes.iter().map(|n| json!({
                "node": n.node, "version": n.version,
                "status": if n.status == NodeStatus::Operational { "Operational" } else { "Outage" },
                "certificate_validation": n.certificate_validation,
                "users": n.users, "active": n.active, "inactive": n.inactive,
            })).collect::<Vec<_>>(),
        })
    }
}

/// A request with no id yet (assigned by [`ConnectorNode::http`]) on lane 0.
fn request(
    target: Target,
    method: Method,
    path: &str,
    authorization: Option<String>,
    body: Value,
) -> HttpRequest {
    HttpRequest {
        id: 0,
        target,
        method,
        path: path.to_string(),
        authorization,
        body: if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        },
        lane: 0,
    }
}

/// Remembers `key → value` in a bounded map, forgetting the oldest entries first.
/// The Jabber stanza id in a post's `client_id` (`xmpp:<sender>:<stanza id>:<n>`), for its
/// first activity only (`n` = 0: a message's text, not a notice that came with it).
fn stanza_id_of(client_id: &str) -> Option<&str> {
    let (_sender, rest) = client_id.strip_prefix("xmpp:")?.split_once(':')?;
    let (id, n) = rest.rsplit_once(':')?;
    (n == "0").then_some(id)
}

fn remember(
    map: &mut BTreeMap<String, String>,
    order: &mut VecDeque<String>,
    key: String,
    value: String,
) {
    remember_at_most(map, order, key, value, ID_MAP_MAX);
}

fn remember_at_most(
    map: &mut BTreeMap<String, String>,
    order: &mut VecDeque<String>,
    key: String,
    value: String,
    max: usize,
) {
    if map.insert(key.clone(), value).is_none() {
        order.push_back(key);
    }
    while order.len() > max {
        if let Some(old) = order.pop_front() {
            map.remove(&old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stanza_id_of_a_post_is_read_back_from_its_client_id() {
        assert_eq!(stanza_id_of("xmpp:alice@example.com:a-1:0"), Some("a-1"));
        // Ids may hold colons; the sender never does.
        assert_eq!(stanza_id_of("xmpp:bob@example.com:x:y:0"), Some("x:y"));
        // A notice that came with the message is not what a read marker points at.
        assert_eq!(stanza_id_of("xmpp:alice@example.com:a-1:1"), None);
        assert_eq!(stanza_id_of("webex:whatever"), None);
    }

    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::SeedableRng as _;

    const ALICE: &str = "alice@example.com";
    const BOB: &str = "bob@example.com";

    fn node() -> ConnectorNode {
        let s = NodeSettings::single_node(Some("reg".into()));
        ConnectorNode::new(s, Duration::ZERO)
    }

    /// Alice's post, as the cloud sends it to her connector.
    fn alice_posted(id: &str) -> Event {
        let a = crate::proto::webex::Activity {
            id: id.into(),
            space_id: "space-1".into(),
            seq: 1,
            verb: Verb::Post,
            actor: ALICE.into(),
            encrypted_text: Some("ciphertext".into()),
            kid: Some("kms://kms/keys/1".into()),
            target: None,
            target_verb: None,
            target_encrypted_text: None,
            edit_of: None,
            client_id: None,
            via_connector: None,
            published_ms: 0,
        };
        Event::Activity {
            activity: Box::new(a),
            for_user: Some(ALICE.into()),
        }
    }

    fn assignment(added: &[&str], removed: &[&str]) -> Event {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Event::Assignment {
            connector_id: "exp-a-1".into(),
            added: v(added),
            removed: v(removed),
        }
    }

    /// Every output so far; panics on a stanza (nothing may reach Jabber in these tests).
    fn requests(n: &mut ConnectorNode) -> Vec<HttpRequest> {
        std::iter::from_fn(|| n.poll_output())
            .map(|o| match o {
                Output::Http(r) => r,
                other => panic!("unexpected output {other:?}"),
            })
            .collect()
    }

    fn only(reqs: Vec<HttpRequest>, path: &str) -> HttpRequest {
        assert_eq!(reqs.len(), 1, "{reqs:?}");
        assert_eq!(reqs[0].path, path, "{reqs:?}");
        reqs.into_iter().next().expect("one")
    }

    /// Alice's activity arrives while she is assigned here; the drain moves her away while
    /// her space and key are fetched: the activity is handed back (retried after a 503).
    fn moved_while_decrypting(n: &mut ConnectorNode, rng: &mut ChaCha8Rng) -> HttpRequest {
        let t = Duration::from_secs(600);
        n.handle_event(t, assignment(&[ALICE], &[]), rng);
        requests(n);
        n.handle_event(t, alice_posted("act-1"), rng);
        let info = only(requests(n), "/v1/spaces/space-1");
        let members = json!({"key_uri": "kms://kms/keys/1", "members": [ALICE, BOB]});
        n.handle_http(t, info.id, 200, members.to_string().as_bytes(), rng);
        let key = only(requests(n), "/v1/kms/keys");
        n.handle_event(t, assignment(&[], &[ALICE]), rng);
        requests(n);
        let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
        let answer = json!({"uri": "kms://kms/keys/1", "key": k});
        n.handle_http(t, key.id, 200, answer.to_string().as_bytes(), rng);
        let back = only(requests(n), HANDBACK_PATH);
        assert_eq!(back.method, Method::Post);
        let body: Value = serde_json::from_slice(&back.body).expect("JSON");
        let want = json!({"space_id": "space-1", "activity_id": "act-1", "for_user": ALICE});
        assert_eq!(body, want);
        // A 503 is retried after a backoff, with the same body.
        n.handle_http(t, back.id, 503, b"{}", rng);
        assert!(requests(n).is_empty());
        let at = n.poll_timeout(t).expect("a retry is due");
        n.handle_timeout(at, rng);
        let again = only(requests(n), HANDBACK_PATH);
        assert_eq!(again.body, back.body);
        again
    }

    /// The delay Control Hub announces (spec 12) is kept with the time it was answered, so
    /// that the real-mode driver can say until when the node waits.
    #[test]
    fn the_announced_registration_delay_is_kept() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut n = node();
        n.start(Duration::from_secs(2));
        assert_eq!(n.phase(), &Phase::Registering);
        let reg = only(requests(&mut n), "/v1/connectors/register");
        assert_eq!(n.registration_delay(), None);
        let answer = json!({"connector_id": "exp-a-1", "connector_token": "con-1",
            "state": "registering", "ready_at_ms": 190_000, "ready_in_ms": 177_000});
        let t = Duration::from_secs(3);
        n.handle_http(t, reg.id, 202, answer.to_string().as_bytes(), &mut rng);
        assert_eq!(
            n.registration_delay(),
            Some((t, Duration::from_millis(177_000)))
        );
        assert_eq!(n.phase(), &Phase::Registering);
    }

    #[test]
    fn an_activity_whose_user_moved_away_is_handed_back() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut n = node();
        let back = moved_while_decrypting(&mut n, &mut rng);
        let accepted = json!({"activity_id": "act-1", "redeliveries": 1, "to": "exp-a-2"});
        let t = Duration::from_secs(700);
        n.handle_http(t, back.id, 202, accepted.to_string().as_bytes(), &mut rng);
        assert!(requests(&mut n).is_empty());
        assert!(!n.assigned().contains(ALICE));
        let st = n.stats();
        assert_eq!(
            (st.handed_back, st.dropped_unserved, st.to_jabber),
            (1, 0, 0)
        );
    }

    /// The cloud sent the handed-back activity to this very node: it serves the user although
    /// no assignment event said so, and takes them on (the redelivery then goes out).
    #[test]
    fn a_hand_back_sent_back_here_means_the_user_is_served_here() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut n = node();
        let back = moved_while_decrypting(&mut n, &mut rng);
        let here = json!({"activity_id": "act-1", "redeliveries": 1, "to": "exp-a-1"});
        let t = Duration::from_secs(700);
        n.handle_http(t, back.id, 202, here.to_string().as_bytes(), &mut rng);
        assert!(n.assigned().contains(ALICE));
        only(requests(&mut n), "/v1/presence/query");
        assert_eq!(n.stats().handed_back, 1);
    }

    #[test]
    fn a_hand_back_the_cloud_refuses_is_counted_as_unserved() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut n = node();
        let back = moved_while_decrypting(&mut n, &mut rng);
        let refused = json!({"error": "conflict", "detail": "handed back 3 times already"});
        let t = Duration::from_secs(700);
        n.handle_http(t, back.id, 409, refused.to_string().as_bytes(), &mut rng);
        assert!(requests(&mut n).is_empty());
        let st = n.stats();
        assert_eq!((st.handed_back, st.dropped_unserved), (0, 1));
    }

    #[test]
    fn a_redelivered_activity_already_sent_here_is_dropped() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut n = node();
        let t = Duration::from_secs(600);
        n.handle_event(t, assignment(&[ALICE], &[]), &mut rng);
        requests(&mut n);
        // What `deliver` remembers once the activity went out as a stanza.
        remember(
            &mut n.id_map,
            &mut n.id_order,
            "act:act-1".into(),
            "hm-exp-a-1-1".into(),
        );
        n.handle_event(t, alice_posted("act-1"), &mut rng);
        assert!(requests(&mut n).is_empty());
        assert_eq!(n.stats().duplicate_events, 1);
    }
}
