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
//! 2. Registration with the Control Hub token (single use); heartbeats every
//!    [`HEARTBEAT_INTERVAL`] carry the status page. What registration gave the node
//!    ([`SavedRegistration`]) outlives a restart: the driver keeps it
//!    ([`ConnectorNode::saved_registration`]) and hands it to the next start
//!    ([`ConnectorNode::resume_registration`]), which then heartbeats instead of registering.
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
//! - Two nodes posting one conversation (its members assigned to different nodes): a node whose
//!   posts wait after a failed space or key fetch holds the conversation at the cloud when it
//!   asks again; the other node's posts are refused (409) and sent again until the holder has
//!   posted them and ended the hold ([`HOLD_PATH_SUFFIX`]), so the older messages go first.

use crate::core::config::{self, ConfigError, ConnectorConfig};
use crate::core::directory::{self, AxlUser, Directory, ImpNodeInfo};
use crate::core::failover::{Failover, Move, NodeStatus};
use crate::core::limiter::{Backoff, TokenBucket, backoff_delay};
use crate::core::presence::{self, JabberPresence, STATUS_TEXT, WebexPresence};
use crate::core::sessions::{SESSION_RESOURCE, SessionManager, SessionState};
use crate::core::status::{Share, StatusInputs, StatusPage};
use crate::core::translate::{self, Activity};
use crate::proto::http::Method;
use crate::proto::jwe::{self, SpaceKey};
use crate::proto::stream::STANZA_BYTES_MAX;
use crate::proto::text::{PEER_TEXT_BYTES_MAX, printable};
use crate::proto::webex::{
    CLAIMS_PER_REQUEST_MAX, DECLARED_PER_CONVERSATION_MAX, ENCRYPTED_TEXT_BYTES_MAX,
};
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
/// Webex activities waiting for the node to learn whom it serves (after a start or restart,
/// or while an assignments fetch is out): as many as wait for one space; past it an activity
/// is handed back at once, as before the wait.
pub const AWAITING_ASSIGNMENTS_MAX: usize = QUEUED_PER_SPACE_MAX;
/// Posts of one conversation waiting behind its post on its way or retried ([`LaneHold`]):
/// as many as may wait for its space or key.
pub const HELD_POSTS_PER_LANE_MAX: usize = QUEUED_PER_SPACE_MAX;
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

/// How long a post waits before it is sent again when the cloud answered 409 because another
/// connector node holds earlier messages of its conversation ([`HOLD_PATH_SUFFIX`]): the
/// holder posts them as soon as its space or key arrives, so the wait is short and not a
/// failure to back off from.
pub const HELD_BY_PEER_RETRY: Duration = Duration::from_secs(2);
/// Sends of one post refused because another node holds its conversation: the cloud bounds a
/// hold (5 minutes in the project's cloud), and this outlasts it twice over, so the post is
/// never given up for a hold alone, and a cloud that kept refusing cannot make it loop for good.
pub const HELD_BY_PEER_RETRIES_MAX: u32 = 300;
/// The end of a conversation hold's path, `/v1/spaces/{space_id}/hold`: a node that claimed
/// a conversation (its earlier messages wait here for a space or key that failed) says there
/// that it has posted them, in the conversation's lane, after its posts.
pub const HOLD_PATH_SUFFIX: &str = "/hold";
/// A post on its way this long when the cloud answers another request of the node is stuck:
/// sent into a connection that an outage cut without a FIN, it waits out `HTTP_TIMEOUT` (30 s)
/// before it fails (explore seed 4834 `--seed 28`). The cloud answers a reachable node in
/// well under a second, so a few seconds tell a stuck post from a slow one. Such a post, like
/// one that failed at the transport, claims its conversation ([`ConnectorNode::claim_held_posts`]).
pub const POST_STUCK_AFTER: Duration = Duration::from_secs(3);
/// Where a node claims conversations whose post failed at the transport or is stuck on its
/// way ([`crate::proto::webex::ClaimsBody`]).
pub const CLAIMS_PATH: &str = "/v1/connectors/claims";

/// Bytes of a transport error kept as a fault (our own messages, which may quote a peer).
pub const FAULT_TEXT_BYTES_MAX: usize = 400;

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
            publishers: vec![config::ImpPublisher {
                cluster: "imp-a".into(),
                host: "imp-a-1".into(),
                axl_username: "axl".into(),
                axl_password: "axl-pw".into(),
                certificate_validation: true,
                platform_admin: "admin".into(),
            }],
            proxy: config::Proxy::None,
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

/// What Control Hub's registration gave a node, kept across restarts as a registered
/// Expressway keeps it: its registration token is single use, so a node that lost this must be
/// registered again from Control Hub. Real mode writes it to a state file
/// (`crate::io::state`); the simulation keeps it across `connector_restart`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedRegistration {
    /// The node id Control Hub registered (this node's hostname).
    pub connector_id: String,
    /// The bearer token of every later connector request.
    pub connector_token: String,
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
    /// Posts the cloud refused (409) while another node held earlier messages of their
    /// conversation, sent again after [`HELD_BY_PEER_RETRY`].
    pub held_by_peer: u64,
    /// Webex → Jabber activities given back to the cloud (accepted) because their user moved
    /// to another node before they went out; the cloud redelivers them there.
    pub handed_back: u64,
    /// Activity events received again (after a hand-back) that this node already delivered.
    pub duplicate_events: u64,
    /// Activities whose ciphertext did not decrypt with the space key (a bad tag, a wrong
    /// key, a malformed JWE): dropped, counted here and logged.
    pub undecryptable: u64,
    /// XMPP errors IM&P returned for messages this node sent from Webex (offline storage off
    /// before 12.5, spec 46) carried back to the sender in Webex as `undelivered` activities.
    pub errors_to_webex: u64,
    /// XMPP message errors that could not be carried back: the message is no longer known
    /// (older than the id map), or its space or key is not.
    pub errors_dropped: u64,
    /// Webex messages refused because their stanza would exceed IM&P's stanza limit
    /// ([`STANZA_BYTES_MAX`]); the sender is told in Webex (`undelivered`).
    pub oversize_refused: u64,
    /// Stanzas from IM&P over [`STANZA_BYTES_MAX`], skipped on the component link (which stays
    /// up); a message's or request's sender gets a `policy-violation` error.
    pub oversize_skipped: u64,
    /// Jabber messages refused because their encrypted text would exceed the cloud's limit
    /// ([`ENCRYPTED_TEXT_BYTES_MAX`]); the Jabber sender gets a `policy-violation` error.
    pub oversize_to_webex: u64,
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
    /// `for_events`: asks for users assignment events added ([`ConnectorNode::presence_due`]).
    Presence {
        for_events: bool,
    },
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
    /// A claim on a conversation whose post failed at the transport or is stuck on its way
    /// (`POST /v1/spaces/{id}/hold` with `since_ms`): not retried, the lane's release ends it.
    Claim,
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
    /// Order of first sending, across the node: which of a lane's posts came first.
    seq: u64,
    /// Sends refused because another node holds the conversation ([`HELD_BY_PEER_RETRY`]).
    held_back: u32,
    /// The end of this node's hold on the conversation, not an activity (not counted as one).
    releases_hold: bool,
    /// Its last send failed at the cloud or on the way (not a 409 hold): it is sent again as
    /// soon as the cloud answers another request ([`ConnectorNode::cloud_answered`]).
    failed_send: bool,
    /// Its last send failed at the transport (the cloud unreachable): its conversation is
    /// claimed when the cloud answers again ([`ConnectorNode::claim_held_posts`]).
    unreached: bool,
    /// When it was first sent (the node's clock): since when its conversation's message waits
    /// here, what a claim says.
    since: Duration,
    /// When its current send went out: a send on its way past [`POST_STUCK_AFTER`] is stuck.
    sent_at: Duration,
}

/// A conversation's lane while one of its posts is on its way or being retried
/// ([`ConnectorNode::post_retried`], [`ConnectorNode::hold_lane`]): the cloud orders
/// activities as they arrive, so a later post sent while an earlier one may still fail would
/// overtake its retry (spec: a conversation's order is kept; explore seeds 374, 3741). A
/// lane's posts go one at a time, oldest first; the next when the cloud took the head or it
/// was given up. Other lanes are not held.
#[derive(Debug, Clone, Default)]
struct LaneHold {
    /// The post being retried or sent (its `seq`).
    head: u64,
    /// Posts waiting, by `seq`.
    waiting: BTreeMap<u64, Box<PostRetry>>,
}

/// A Jabber → Webex activity waiting for its space and key.
#[derive(Debug, Clone)]
struct OutPost {
    actor: String,
    activity: Activity,
    client_id: String,
    /// When the node got the Jabber message from IM&P (its clock): sent with the post, and
    /// declared with a hold or claim, so that the cloud merges the two nodes' backlogs of a
    /// conversation in send order ([`ConnectorNode::unposted`]).
    got: Duration,
    /// The Jabber message it came from, to refuse it to its sender.
    origin: Origin,
}

/// The Jabber message a post came from: who to send an error to if the cloud cannot take it.
#[derive(Debug, Clone)]
struct Origin {
    /// The sender's full JID.
    sender: String,
    /// The recipient's email (whose connector session answers).
    recipient: String,
    /// The stanza id.
    id: String,
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
    /// The token came from a [`SavedRegistration`], not from this run's registration.
    resumed: bool,
    registered: bool,
    /// When Control Hub accepted the registration (this node's clock) and the delay it
    /// announced before it completes (spec 12, up to 5 min): see [`Self::registration_delay`].
    registration_delay: Option<(Duration, Duration)>,
    cloud_fault: Option<String>,
    /// The last AXL discovery failure, naming the publisher; cleared by its next answer.
    axl_fault: Option<String>,
    retry: Backoff,
    retry_at: Option<(Duration, Pending)>,
    next_heartbeat: Duration,
    next_poll: Duration,
    /// Consecutive presence queries that failed, for the backoff of the poll brought forward.
    presence_failures: u32,
    /// Users assignment events added while a query for earlier ones was in flight, asked for
    /// together once it is answered (a subset of `assigned`): users turning Active come as
    /// an event each, hundreds in a burst, and a query each queued them all on one cloud
    /// connection, one round trip apiece (issue 16).
    presence_due: BTreeSet<String>,
    /// Presence queries for users assignment events added, waiting for their answer.
    presence_for_events_in_flight: usize,
    // discovery
    nodes: BTreeMap<String, Vec<ImpNodeInfo>>,
    users: BTreeMap<String, Vec<AxlUser>>,
    discovering: BTreeSet<String>,
    /// Clusters of `discovering` whose discovery failed and waits for its retry: the others'
    /// nodes and users are not held back for them (spec 22).
    axl_failed: BTreeSet<String>,
    directory: Directory,
    // users
    assigned: BTreeSet<String>,
    presence: BTreeMap<String, WebexPresence>,
    /// Last Jabber use seen per assigned user (spec 52): a message, chat state or marker the
    /// user sent from Jabber that crossed a session here, or the assignment (earlier use is
    /// unknown, so the 72 h window starts then, spec 55). Removed on unassignment.
    jabber_seen: BTreeMap<String, Duration>,
    /// Last use of Webex to read or write messages to or from Jabber per user (an activity
    /// the user authored in Webex that this node bridged): the status page's "active"
    /// (spec 70).
    interop_seen: BTreeMap<String, Duration>,
    /// Users an assignment event named while an assignments fetch was in flight: the event
    /// is as new as the fetch's answer or newer (the answer was written before the node read
    /// it), so the answer leaves them as the events put them (explore seed 70).
    moved_while_fetching: BTreeSet<String>,
    /// Assignments fetches waiting for their answer, counted as they are sent and answered:
    /// every assignment event asks, and walking `pending` for it was a walk per event.
    assignments_in_flight: usize,
    /// Whether the cloud told this node whom it serves since it started: an assignments
    /// answer, or an assignment event.
    assignments_heard: bool,
    /// Webex activities of users not (yet) assigned here that arrived before the node heard
    /// whom it serves, or while an assignments fetch was out, in arrival order
    /// ([`AWAITING_ASSIGNMENTS_MAX`]).
    awaiting_assignments: VecDeque<InItem>,
    /// The cluster peers' shares of the status page's counts, by node id (spec 69-71), as the
    /// last heartbeat answer gave them.
    peer_shares: BTreeMap<String, Share>,
    /// Home IM&P nodes of users assigned here that the directory lacks, as peers told them
    /// (spec 69, 71; [`StatusInputs::homes`]). Only assigned users: removed on unassignment.
    peer_homes: BTreeMap<String, String>,
    /// The users whose home node the peers asked for at the last heartbeat answer, which the
    /// next heartbeat tells where this node's directory knows it (at most
    /// [`status_page::HOMES_ASKED_MAX`] per peer).
    peer_asks: BTreeSet<String>,
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
    /// Keys asked for and not answered yet, or waiting in `deferred` to be asked again (one
    /// fetch per key at a time).
    keys_in_flight: BTreeSet<String>,
    /// Conversations with posts waiting for a key, by key URI.
    key_waiters: BTreeMap<String, BTreeSet<(String, String)>>,
    /// Conversations whose posts wait here for a space or key whose fetch failed, with when it
    /// first failed: the fetch's retries claim the conversation at the cloud, so that another
    /// node serving its other member does not post its newer messages first (explore seeds 51,
    /// 91). Bounded by `outbox` (an entry leaves when the conversation's posts go).
    held_since: BTreeMap<(String, String), Duration>,
    /// Conversations whose space is asked for and not answered yet, or waiting in `deferred`
    /// to be asked again: one fetch per conversation at a time, so that its next messages
    /// queue behind it rather than each asking (and failing, and retrying) on its own.
    spaces_in_flight: BTreeSet<(String, String)>,
    /// `client_id`s of posts already queued ([`POSTED_IDS_MAX`]).
    posted: BTreeMap<String, String>,
    posted_order: VecDeque<String>,
    /// Consecutive failures of each deferred fetch ([`fetch_id`]), for its backoff.
    fetch_failures: BTreeMap<String, u32>,
    /// Lanes with a post on its way or being retried (the others wait behind it), by lane.
    lane_holds: BTreeMap<u64, LaneHold>,
    /// The next post's [`PostRetry::seq`].
    next_post_seq: u64,
    /// Some post in `deferred` waits after a failed send ([`PostRetry::failed_send`]): the
    /// next answer from the cloud brings them forward (so answers need not scan `deferred`).
    failed_posts_waiting: bool,
    /// Space and key fetches (by [`fetch_id`]) waiting in `deferred` after their last try
    /// failed at the transport (the cloud unreachable, an outage): the next answer from the
    /// cloud brings them forward. At most one per fetch in `deferred`; emptied by that answer.
    unreached_fetches: BTreeSet<String>,
    /// The node's clock as of the last call that told it (for the times posts are sent,
    /// [`PostRetry::since`], where the caller does not pass one).
    clock: Duration,
    /// When the cloud last answered a request of the node (2xx): a silence longer than
    /// [`POST_STUCK_AFTER`] before an answer means posts may be stuck on their way.
    last_answer: Duration,
    /// A post failed at the transport since the last look for posts to claim.
    claim_look_due: bool,
    /// Lanes whose conversation this node claimed for a stuck or unreached post, until the
    /// release queued after its posts is answered or given up (at most one claim per lane;
    /// bounded by `lane_holds`).
    claimed: BTreeSet<u64>,
    stats: NodeStats,
    /// TEST ONLY: the planted defect, off unless a test plants it.
    planted: Option<PlantedDefect>,
}

/// TEST ONLY, a deliberately wrong behaviour for testing the test tools (`hmsim explore` must
/// find and shrink it): while any IM&P node is failed over, every `every_nth` Webex → Jabber
/// message is dropped. Off by default; only [`ConnectorNode::plant_defect_for_tests`] sets it
/// (the simulator calls it for the scenario field
/// `test_only_drop_every_nth_to_jabber_after_failover`, and nothing else does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlantedDefect {
    /// Drop one message in this many (at least 1).
    pub every_nth: u32,
    /// Webex → Jabber messages seen while failed over.
    seen: u64,
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
        Self {
            sessions: SessionManager::new(&format!("hm.{}", s.hostname), bucket),
            failover: Failover::new(&[], s.detection_delay_max),
            s,
            phase: Phase::Idle,
            enabled: true,
            out: VecDeque::new(),
            next_http: 0,
            pending: BTreeMap::new(),
            token: None,
            resumed: false,
            registered: false,
            registration_delay: None,
            cloud_fault: Some("not registered".into()),
            axl_fault: None,
            retry: Backoff::new(RETRY_MIN, RETRY_MAX),
            retry_at: None,
            next_heartbeat: now,
            next_poll: now,
            presence_failures: 0,
            presence_due: BTreeSet::new(),
            presence_for_events_in_flight: 0,
            nodes: BTreeMap::new(),
            users: BTreeMap::new(),
            discovering: BTreeSet::new(),
            axl_failed: BTreeSet::new(),
            directory: Directory::default(),
            assigned: BTreeSet::new(),
            presence: BTreeMap::new(),
            jabber_seen: BTreeMap::new(),
            interop_seen: BTreeMap::new(),
            moved_while_fetching: BTreeSet::new(),
            assignments_in_flight: 0,
            assignments_heard: false,
            awaiting_assignments: VecDeque::new(),
            peer_shares: BTreeMap::new(),
            peer_homes: BTreeMap::new(),
            peer_asks: BTreeSet::new(),
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
            lane_holds: BTreeMap::new(),
            failed_posts_waiting: false,
            unreached_fetches: BTreeSet::new(),
            clock: now,
            last_answer: now,
            claim_look_due: false,
            claimed: BTreeSet::new(),
            next_post_seq: 0,
            keys_in_flight: BTreeSet::new(),
            spaces_in_flight: BTreeSet::new(),
            held_since: BTreeMap::new(),
            key_waiters: BTreeMap::new(),
            posted: BTreeMap::new(),
            posted_order: VecDeque::new(),
            stats: NodeStats::default(),
            planted: None,
        }
    }

    /// TEST ONLY: plants [`PlantedDefect`] (drop every `every_nth` Webex → Jabber message
    /// while a node is failed over). Never called outside tests of the test tools.
    pub fn plant_defect_for_tests(&mut self, every_nth: u32) {
        self.planted = Some(PlantedDefect {
            every_nth: every_nth.max(1),
            seen: 0,
        });
    }

    /// Whether the planted defect (if any) drops this Webex → Jabber message.
    pub(super) fn planted_drop(&mut self) -> bool {
        let failed_over = self.failover.any_redirect();
        let Some(p) = self.planted.as_mut().filter(|_| failed_over) else {
            return false;
        };
        p.seen += 1;
        p.seen % u64::from(p.every_nth) == 0
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

    /// Why the cloud is not reachable or refuses this node (`None`: operational).
    pub fn cloud_fault(&self) -> Option<&str> {
        self.cloud_fault.as_deref()
    }

    /// Why AXL discovery failed last, naming the publisher (`None`: it answered since).
    pub fn axl_fault(&self) -> Option<&str> {
        self.axl_fault.as_deref()
    }

    /// The next output.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
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

mod answers;
mod discovery;
mod lifecycle;
mod spaces;
mod status_page;
mod timers;
mod to_jabber;
mod to_webex;
mod users;

#[cfg(test)]
mod tests;
