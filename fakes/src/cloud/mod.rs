//! The fake Webex cloud: identity, Control Hub, connector management, user assignment,
//! messaging, presence, and the relay to the KMS. [`Cloud`] is a sans-IO core
//! (`handle_request(now, request) -> response`, `tick(now)`, `poll_event()`); [`http`] serves it
//! over HTTP/1.1 and WebSocket on any [`connector::io::net::Net`].
//!
//! ## Modules
//! - [`org`]: users by email, entitlements, Hybrid Message activation states.
//! - [`control_hub`]: registration tokens, connector registration, heartbeats, maintenance.
//! - [`assignment`]: capacity (spec 2-3, 6-7, 9) and balanced user assignment (spec 28).
//! - [`bridge_log`]: whom the cloud placed where, and whose activity events it delivered to
//!   which node (what the status page's counts are judged against).
//! - [`messaging`]: spaces and encrypted activities.
//! - [`holds`]: which connector node holds a direct conversation's earlier messages, so that
//!   the other member's node waits for them (409 on its posts meanwhile).
//! - [`presence`]: last active, DND, out-of-office, hidden; the batch query.
//! - [`api`]: wire types (request bodies, subscribers, events).
//! - [`error`]: [`CloudError`], the one error of the boundary.
//! - [`http`]: the HTTP/1.1 + WebSocket driver and the client helpers.
//! - [`serve`]: real-mode configs and setup (`hmsim serve cloud`, `hmsim serve kms`).
//!
//! ## Authentication
//!
//! Every route but login and registration takes `Authorization: Bearer <token>`:
//! - the **admin token** (from [`CloudConfig`]) for `/v1/admin/...` (Control Hub);
//! - a **registration token** (one per Expressway cluster, from `POST /v1/admin/clusters`) for
//!   `POST /v1/connectors/register` only;
//! - a **connector token** (from registration) for `/v1/connectors/...` and the shared routes;
//! - a **user token** (from `POST /v1/login`) for `/v1/me`, `/v1/presence/me` and the shared
//!   routes. Any user request marks the user active on Webex now (presence).
//!
//! ## REST routes (JSON bodies; types in [`api`])
//!
//! | Route | Who | Body → answer |
//! |---|---|---|
//! | `POST /v1/login` | anyone | `{email, password}` → `{token, email}` |
//! | `GET /v1/me` | user | → `{email, state, spaces: [{space_id, unread}]}` |
//! | `POST /v1/admin/users` | admin | `{email, password, entitlements?}` → 201 user view |
//! | `GET /v1/admin/users/{email}` | admin | → `{email, entitlements, state, reason, history, assigned_to}` |
//! | `PUT /v1/admin/users/{email}/entitlements` | admin | `{entitlements: ["paid_licence", "message_free", "hybrid_message"]}` → user view |
//! | `POST /v1/admin/users/{email}/reactivate` | admin | → user view |
//! | `POST /v1/admin/users/{email}/email` | admin | `{new_email}` → `{pickup_at_ms}` |
//! | `POST /v1/admin/clusters` | admin | `{name, size, coresidency?, hostnames}` → `{cluster, registration_token}` (a new token each time; single use per hostname) |
//! | `GET /v1/admin/clusters/{name}` | admin | → capacity, percent, colour, nodes |
//! | `GET /v1/admin/connectors/{id}` | admin | → `{connector_id, cluster, primary, state, up, maintenance, status}` |
//! | `PUT /v1/admin/connectors/{id}/maintenance` | admin | `{on}` → `{connector_id, maintenance}` |
//! | `POST /v1/connectors/register` | registration token | `{hostname, primary}` → 202 `{connector_id, connector_token, state, ready_at_ms, ready_in_ms}` (`ready_in_ms`: the registration delay still to wait, spec 12) |
//! | `POST /v1/connectors/heartbeat` | connector | `{status?}` → `{connector_id, state, up, maintenance}` |
//! | `POST /v1/connectors/users` | connector (registered) | `{add: [{email, imp_cluster}], remove: [...]}` (≤ 10,000) → `{moves: <count>}` |
//! | `GET /v1/connectors/assignments` | connector (registered) | → `{connector_id, users}` |
//! | `POST /v1/presence/query` | user, connector | `{emails}` (≤ 1,000) → `{states: [{email, last_active_ms, last_interop_ms, dnd_until_ms, out_of_office, hidden}]}` (`last_interop_ms`: last use of Webex with Jabber, spec 70) |
//! | `PUT /v1/presence/me` | user | `{dnd_minutes?, out_of_office?, hidden?}` → own state |
//! | `POST /v1/spaces` | user, connector | `{kind: "direct"\|"group", members, held_since_ms?, unposted?}` → 201 (or 200 for an existing direct space) `{space_id, kind, members, key_uri, created}` |
//! | `GET /v1/spaces/{id}` | member, serving connector | → `{space_id, kind, members, key_uri, last_seq, unread}` (unread: a number for a user, per member for a connector) |
//! | `POST /v1/spaces/{id}/activities` | member, serving connector | `{verb: post\|edit\|delete\|share\|read, actor?, encrypted_text?, target?, client_id?, got_ms?}` → 201 `{activities, duplicate}` (200 if duplicate); 409 to a connector while another node holds the conversation or declared an older unposted message ([`holds`]) |
//! | `GET /v1/spaces/{id}/activities?after=N` | member, serving connector | → `{activities}` (≤ 500, seq > N) |
//! | `POST /v1/spaces/{id}/typing` | member, serving connector | `{typing, actor?}` → `{changed}` |
//! | `POST /v1/kms/keys` | member, serving connector | `{uri, held?}` → `{uri, key}` (key: base64url of the 32 bytes) |
//! | `POST /v1/spaces/{id}/hold` | serving connector | `{release: true}` → `{released}`: the node posted the messages it held ([`holds`]) |
//! | `GET /v1/events` | user, connector | WebSocket upgrade ([`http`]) |
//! | `POST /v1/events/redeliver` | connector (registered, serving or just released the user) | `{space_id, activity_id, for_user}` → 202 `{activity_id, redeliveries, to}` (`to`: the node it went to; 409 once [`REDELIVERIES_PER_ACTIVITY_MAX`] is reached or no node serves the user) |
//!
//! Emails are case-insensitive: the cloud lowercases them in bodies and paths (path segments
//! are percent-decoded, so `alice%40example.com` works).
//!
//! A connector acts for users it serves: `actor` names the member on whose behalf it posts;
//! the space must have a member assigned to that connector ("serving connector"). A connector
//! must have completed registration (409 otherwise) for everything but heartbeats.
//!
//! Errors: 4xx (503 for a KMS outage) with `{"error": kind, "detail": text}`; kinds in
//! [`CloudError::kind`]: malformed JSON or unknown fields 400 `bad_json`, bad values 400
//! `invalid`, missing/unknown token 401, not allowed 403, unknown route or thing 404, wrong
//! method 405, state conflict 409, body over [`BODY_BYTES_MAX`] 413.
//!
//! ## WebSocket events ([`api::Event`], one JSON text frame each, tagged by `type`)
//!
//! - `activity {activity, for_user?}`: to every member's devices; to a connector when the actor
//!   is an Active Hybrid Message user assigned to it, the space is direct (group spaces are
//!   never bridged, spec 42) and the connector did not post it itself; `for_user` = the actor.
//!   So W+ → J works through the sender's connector, W− → J+ does not reach Jabber (spec 33).
//! - `typing {space_id, actor, typing, for_user?}`: same routing; expiry after 5 min (spec 37)
//!   sends `typing: false`.
//! - `space_created {space_id, kind, members, key_uri}`: to members.
//! - `assignment {connector_id, added, removed}`: to a connector when users move (spec 28),
//!   at most [`ASSIGNMENT_EVENT_EMAILS_MAX`] emails per event.
//! - `registration {connector_id, state}`: to a connector whose registration completed.
//! - `maintenance {connector_id, on}`: to a connector put in or out of maintenance mode.
//!
//! A connector node that received an `activity` event but can no longer deliver it (the user
//! moved to another node before it went out, spec 29) hands it back with
//! `POST /v1/events/redeliver`; the cloud sends the same `activity` event to the node serving
//! the user now, at most [`REDELIVERIES_PER_ACTIVITY_MAX`] times per activity, so two nodes
//! cannot pass one back and forth forever. Delivery to connectors is at least once: a node
//! drops an activity id it has already delivered.
//!
//! Events for a subscriber with no open socket are dropped by the driver (counted); clients
//! catch up with `GET /v1/spaces/{id}/activities?after=N` and `GET /v1/connectors/assignments`.
//!
//! ## KMS
//!
//! The cloud relays key requests to the KMS (spec 56-57). A space's key is created with the
//! space, authorized to its members and to the connectors serving them (principal
//! `connector:<id>`); when a user moves between connectors the new one is authorized at once and
//! the old one revoked after [`RELEASE_GRACE`] (unless it serves a member again by then), so
//! that what it still had in flight for the user can be encrypted or decrypted. A user moved
//! while the KMS makes a new space's key is moved without that space (it does not exist yet):
//! once the key exists, its access is brought up to date with the assignments the same way.
//!
//! Two modes: [`Cloud::new`] holds a KMS in-process ([`crate::kms::Kms`]; unit tests, simple
//! runs); [`Cloud::with_remote_kms`] reaches a KMS host ([`crate::kms::http`]) over the network.
//! The core stays sans-IO either way: [`Cloud::handle`] answers a request that needs the KMS
//! with [`Outcome::Kms`] (a [`KmsCall`] and a [`Continuation`]); the driver sends the call to
//! the KMS and feeds its answer to [`Cloud::complete`]. Authorization changes that follow
//! assignment moves are queued ([`Cloud::poll_kms_change`]); the driver sends them in order,
//! retrying while the KMS is down. In-process, [`Cloud::handle_request`] does both at once.
//!
//! ## Faults
//!
//! - [`Cloud::set_http_errors`]: a seeded share of requests is answered 429 or 5xx with
//!   `{"error": "injected", "detail"}` before reaching the routes (counted in
//!   [`CloudStats::injected_errors`]); the administrator's requests are exempt.
//! - [`Cloud::drop_event_sockets`]: the driver closes every open WebSocket at its next
//!   dispatch (within [`http::TICK_INTERVAL`]); clients reconnect and catch up over REST.
//!
//! ## Plaintext check
//!
//! The cloud keeps the last [`BODY_LOG_ENTRIES_MAX`] request bodies ([`Cloud::received_bodies`])
//! and can hand every body to a tap ([`Cloud::set_body_tap`]) so a check can scan all of them
//! for plaintext ([`plaintext_leaks`]). It also refuses activity text that is not a JWE of the
//! space's key.

pub mod api;
pub mod assignment;
pub mod bridge_log;
pub mod control_hub;
pub mod error;
pub mod holds;
pub mod http;
pub mod messaging;
pub mod org;
mod plaintext;
pub mod presence;
mod routes;
pub mod serve;
pub mod stored;

pub use error::CloudError;
pub use plaintext::{Leak, plaintext_leaks};

use crate::kms::{Kms, KmsError};
use crate::kms::{KmsCall, KmsReply};
use api::{Event, Subscriber};
use assignment::{Assignment, Move};
use bridge_log::BridgeLog;
use control_hub::{ControlHub, HubEvent};
use messaging::{Activity, Messaging, SpaceKind};
use org::{Org, OrgEvent};
use presence::Presence;
use rand::RngExt as _;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Largest request body, in bytes. The biggest legitimate body is a chunk of a known-users
/// report ([`KNOWN_USERS_PER_REQUEST_MAX`] entries of about 80 bytes); 2 MiB leaves room while
/// bounding what one request can make the cloud buffer.
pub const BODY_BYTES_MAX: usize = 2 * 1024 * 1024;
/// How long a connector node may still post for a user the cloud just moved away from it: a
/// Jabber message that reached its session before the move is in flight there (the new node
/// never sees it), and a graceful drain must not lose it (spec 29).
pub const RELEASE_GRACE: Duration = Duration::from_secs(120);
/// Known users per report request: a 75,000-user cluster reports in 8 requests.
pub const KNOWN_USERS_PER_REQUEST_MAX: usize = 10_000;
/// Request bodies kept for the plaintext check: the recent past of a run; the tap sees all.
pub const BODY_LOG_ENTRIES_MAX: usize = 4_096;
/// Bytes of request bodies kept in all: 4,096 bodies of up to [`BODY_BYTES_MAX`] (tripled by
/// the UTF-8 conversion of invalid bytes) would be 24 GiB; the oldest go first beyond this.
pub const BODY_LOG_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Emails per assignment event, so one WebSocket frame stays small (about 40 KiB).
pub const ASSIGNMENT_EVENT_EMAILS_MAX: usize = 1_000;
/// Hand-backs of one activity the cloud redelivers (`POST /v1/events/redeliver`). A drain
/// moves a user once; a few more moves while an event is in flight are possible (a node lost
/// during the drain), but an activity handed back more often is ping-ponging between nodes
/// that cannot deliver it, and is refused (409) so the loop ends.
pub const REDELIVERIES_PER_ACTIVITY_MAX: u32 = 3;
/// Activities whose hand-back count is remembered, oldest forgotten first: hand-backs follow
/// within seconds of the delivery, so a window of this many is ample.
pub const REDELIVERIES_TRACKED_MAX: usize = 100_000;
/// Events waiting for the driver. The driver drains after every request and tick; the bound
/// only guards against a driver that stopped draining.
pub const EVENT_QUEUE_MAX: usize = 1_000_000;

/// Authorization changes waiting for the driver to send them to a remote KMS. A move of
/// 15,000 users with a few spaces each queues tens of thousands; the bound only guards against
/// a driver that stopped draining (overflow is counted in
/// [`CloudStats::kms_changes_dropped`]).
pub const KMS_CHANGES_QUEUE_MAX: usize = 1_000_000;
/// Key-access revocations waiting out [`RELEASE_GRACE`]. One per (space, node) a move leaves
/// without a served member, so about as many as the KMS changes of the moves of the last two
/// minutes; past the bound a revocation runs at once (counted in
/// [`CloudStats::revocations_not_deferred`]), as before there was a grace.
pub const REVOCATIONS_PENDING_MAX: usize = 1_000_000;

/// Static configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudConfig {
    /// The organization's domain.
    pub domain: String,
    /// The Control Hub administrator's bearer token.
    pub admin_token: String,
    /// The KMS host name in key URIs ([`crate::kms::CLOUD_HOST`]).
    pub kms_host: String,
}

/// Counters for the run record and the checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloudStats {
    /// Requests handled.
    pub requests: u64,
    /// Answers 2xx.
    pub responses_ok: u64,
    /// Answers 4xx.
    pub responses_client_error: u64,
    /// Answers 5xx (KMS outage, injected errors).
    pub responses_server_error: u64,
    /// Malformed JSON bodies.
    pub bad_json: u64,
    /// Requests to unknown routes (or with a wrong method).
    pub unknown_routes: u64,
    /// Bodies over [`BODY_BYTES_MAX`].
    pub too_large: u64,
    /// Missing or unknown tokens.
    pub unauthorized: u64,
    /// Successful logins.
    pub logins: u64,
    /// Registrations accepted.
    pub registrations: u64,
    /// Registrations completed.
    pub registrations_completed: u64,
    /// Heartbeats received.
    pub heartbeats: u64,
    /// Connectors marked down (heartbeats lost).
    pub connectors_down: u64,
    /// Spaces created.
    pub spaces_created: u64,
    /// Activities stored.
    pub activities_stored: u64,
    /// Posts recognized as duplicates by client id.
    pub duplicate_posts: u64,
    /// Connector posts refused (409) while another node held earlier messages of their
    /// direct conversation ([`holds`]).
    pub posts_held_back: u64,
    /// Activities posted by connectors.
    pub activities_from_connectors: u64,
    /// Activity and typing events addressed to connectors.
    pub events_to_connectors: u64,
    /// Events addressed to users' devices.
    pub events_to_users: u64,
    /// Typing changes (including expiries).
    pub typing_changes: u64,
    /// Presence batch queries.
    pub presence_queries: u64,
    /// Emails looked up by presence queries.
    pub presence_emails: u64,
    /// Assignment moves.
    pub assignment_moves: u64,
    /// Key fetches relayed to the KMS (granted or not).
    pub key_fetches: u64,
    /// KMS authorization changes that failed (KMS down during a move).
    pub kms_authorization_failures: u64,
    /// Key-access revocations run at once because [`REVOCATIONS_PENDING_MAX`] was reached.
    pub revocations_not_deferred: u64,
    /// Authorization changes dropped because [`KMS_CHANGES_QUEUE_MAX`] was reached.
    pub kms_changes_dropped: u64,
    /// Authorization changes sent again by a relay started after a restart of the cloud
    /// ([`Cloud::kms_relay_restarted`]).
    pub kms_changes_resent: u64,
    /// Sends of queued authorization changes the KMS refused with 503 (retried).
    pub kms_change_retries: u64,
    /// Requests answered with an injected error ([`Cloud::set_http_errors`]).
    pub injected_errors: u64,
    /// WebSockets closed by [`Cloud::drop_event_sockets`].
    pub sockets_dropped_by_fault: u64,
    /// Bodies dropped from the bounded log (the tap still saw them).
    pub bodies_dropped_from_log: u64,
    /// Activity events sent again to the user's current node after a hand-back.
    pub redelivered: u64,
    /// Hand-backs refused (limit reached, or no node serves the user).
    pub redeliveries_refused: u64,
    /// Events dropped because the queue was full.
    pub events_dropped: u64,
    /// Event frames queued on open WebSockets by the driver.
    pub events_delivered: u64,
    /// Events for a subscriber with no open WebSocket (dropped by the driver).
    pub events_without_socket: u64,
    /// WebSockets dropped because their queue was full (slow subscribers).
    pub slow_sockets_dropped: u64,
    /// Most KMS jobs the relay ran at once (at most its width, [`Cloud::kms_relay_nodes`]).
    pub kms_calls_in_flight_peak: u64,
}

/// One request body the cloud received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedBody {
    /// When, ms since the start of the run.
    pub at_ms: u64,
    /// Method and path.
    pub route: String,
    /// The body (UTF-8, lossy).
    pub body: String,
}

/// Called with every request body the cloud receives.
pub type BodyTap = Box<dyn FnMut(&ReceivedBody)>;

/// Where the KMS is.
#[derive(Debug)]
enum KmsLink {
    /// In this process.
    Local(Kms),
    /// A KMS host, reached by the driver.
    Remote { host: String, port: u16 },
}

/// The answer of [`Cloud::handle`].
#[derive(Debug)]
pub enum Outcome {
    /// The response, now.
    Now(api::Response),
    /// The request needs the KMS: send the call to the KMS, then hand its answer and the
    /// continuation to [`Cloud::complete`], which gives the response.
    Kms(KmsCall, Continuation),
}

/// What a request waiting for the KMS will do with its answer (opaque to drivers).
#[derive(Debug)]
pub struct Continuation(Pending);

#[derive(Debug)]
pub(crate) enum Pending {
    CreateSpace {
        kind: SpaceKind,
        members: Vec<String>,
        /// The connector nodes the key is made for: those serving a member when the space was
        /// asked for, and the creating connector if it serves none any more but is within its
        /// [`RELEASE_GRACE`]. Checked against the assignments once the key exists
        /// (`settle_key_access`).
        granted: Vec<String>,
    },
    FetchKey,
}

/// What a route gives: an answer, or a KMS call to make first.
pub(crate) enum Step {
    Done(u16, serde_json::Value),
    Kms(KmsCall, Pending),
}

/// The HTTP error fault: the share of requests answered with `status`.
#[derive(Debug)]
struct HttpErrors {
    rate: f64,
    status: u16,
    rng: ChaCha8Rng,
}

/// How many of `moves` place their user on a node, and how many leave it unassigned.
pub(crate) fn split_moves(moves: &[Move]) -> (usize, usize) {
    let placed = moves.iter().filter(|m| m.to.is_some()).count();
    (placed, moves.len() - placed)
}

/// The cloud core.
pub struct Cloud {
    /// The latest `now` the cloud was called with.
    clock: Duration,
    /// Users just moved off connector nodes: user → (node → when it was moved off). Each such
    /// node may still post what it had in flight for the user for [`RELEASE_GRACE`], whatever
    /// moves follow (a user taken off both nodes of a cluster in one tick, explore seed 10851).
    /// At most one entry per (user, connector node); dropped once the grace is over.
    released: BTreeMap<String, BTreeMap<String, Duration>>,
    /// (due, space id, node): key access of a node that a move left serving no member of the
    /// space, revoked at `due` ([`RELEASE_GRACE`] after the move) unless it serves one again.
    /// Sorted by due time, so the front is the next one.
    revocations: VecDeque<(Duration, String, String)>,
    cfg: CloudConfig,
    rng: ChaCha8Rng,
    org: Org,
    hub: ControlHub,
    assign: Assignment,
    /// Placements and delivered activity events per user (read by hmsim only).
    bridge_log: BridgeLog,
    msg: Messaging,
    /// Direct conversations whose earlier messages a connector node holds ([`holds`]).
    holds: holds::Holds,
    /// Which connector nodes the cloud heard since its last outage ([`holds::Settle`]).
    settle: holds::Settle,
    presence: Presence,
    kms: KmsLink,
    kms_changes: VecDeque<KmsCall>,
    /// Changes the driver took ([`Cloud::poll_kms_change`]) and the KMS has not settled yet
    /// (taken or refused for good), oldest first: what a restarted driver sends again
    /// ([`Cloud::kms_relay_restarted`]).
    kms_changes_sent: VecDeque<KmsCall>,
    http_errors: Option<HttpErrors>,
    drop_sockets: bool,
    /// user token → email, and email → its token (one token per user).
    user_tokens: BTreeMap<String, String>,
    token_of_user: BTreeMap<String, String>,
    events: VecDeque<(Subscriber, Event)>,
    /// Hand-backs per activity id ([`REDELIVERIES_TRACKED_MAX`], oldest first in the order).
    redeliveries: BTreeMap<String, u32>,
    redelivery_order: VecDeque<String>,
    stats: CloudStats,
    bodies: VecDeque<ReceivedBody>,
    /// Bytes of the bodies in `bodies` (at most [`BODY_LOG_BYTES_MAX`]).
    body_bytes: usize,
    tap: Option<BodyTap>,
    /// Rare events, counted where they happen ("sometimes" coverage for the simulation).
    coverage: BTreeMap<&'static str, u64>,
    /// Connector nodes the relay to a remote KMS is sized for ([`Cloud::set_kms_relay_nodes`]).
    kms_relay_nodes: usize,
}

impl std::fmt::Debug for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloud")
            .field("domain", &self.cfg.domain)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    User(String),
    Connector(String),
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The KMS principal of a connector node.
pub fn connector_principal(id: &str) -> String {
    format!("connector:{id}")
}

impl Cloud {
    /// A cloud with an empty organization and an in-process KMS named `cfg.kms_host`. `rng`
    /// (seeded by the caller from the run's seed) draws every token, registration delay and
    /// KMS key.
    pub fn new(cfg: CloudConfig, rng: ChaCha8Rng) -> Self {
        let kms = KmsLink::Local(Kms::new(cfg.kms_host.clone()));
        Self::with_link(cfg, rng, kms)
    }

    /// A cloud that relays to the KMS host at `kms_host:kms_port` ([`crate::kms::http`]);
    /// `cfg.kms_host` should name the same host. `rng` draws tokens and registration delays
    /// (the KMS host draws the keys).
    pub fn with_remote_kms(
        cfg: CloudConfig,
        rng: ChaCha8Rng,
        kms_host: impl Into<String>,
        kms_port: u16,
    ) -> Self {
        let kms = KmsLink::Remote {
            host: kms_host.into(),
            port: kms_port,
        };
        Self::with_link(cfg, rng, kms)
    }

    fn with_link(cfg: CloudConfig, rng: ChaCha8Rng, kms: KmsLink) -> Self {
        Cloud {
            clock: Duration::ZERO,
            released: BTreeMap::new(),
            revocations: VecDeque::new(),
            org: Org::new(cfg.domain.clone()),
            kms,
            kms_changes: VecDeque::new(),
            kms_changes_sent: VecDeque::new(),
            http_errors: None,
            drop_sockets: false,
            cfg,
            rng,
            hub: ControlHub::new(),
            assign: Assignment::new(),
            bridge_log: BridgeLog::default(),
            msg: Messaging::new(),
            holds: holds::Holds::default(),
            settle: holds::Settle::default(),
            presence: Presence::new(),
            user_tokens: BTreeMap::new(),
            token_of_user: BTreeMap::new(),
            events: VecDeque::new(),
            redeliveries: BTreeMap::new(),
            redelivery_order: VecDeque::new(),
            stats: CloudStats::default(),
            bodies: VecDeque::new(),
            body_bytes: 0,
            tap: None,
            coverage: BTreeMap::new(),
            kms_relay_nodes: 1,
        }
    }

    /// Sizes the relay to a remote KMS for `nodes` connector nodes (at least one). Webex's KMS
    /// relay is a cloud service that scales with the connectors it fronts; one sized for a
    /// single node made a six-node cluster's key fetches queue behind each other.
    pub fn set_kms_relay_nodes(&mut self, nodes: usize) {
        self.kms_relay_nodes = nodes.max(1);
    }

    /// Connector nodes the relay to a remote KMS is sized for (1 unless set).
    pub fn kms_relay_nodes(&self) -> usize {
        self.kms_relay_nodes
    }

    /// The driver reports how many KMS jobs its relay runs at once (kept as a peak).
    pub fn note_kms_calls_in_flight(&mut self, n: usize) {
        let n = n as u64;
        self.stats.kms_calls_in_flight_peak = self.stats.kms_calls_in_flight_peak.max(n);
    }

    /// Rare events reached so far and how often: reassignment after a node loss, rebalancing,
    /// maintenance drains, refused registrations, reactivations.
    pub fn coverage(&self) -> &BTreeMap<&'static str, u64> {
        &self.coverage
    }

    /// Counts `n` occurrences of a coverage point (nothing for 0).
    pub(crate) fn note(&mut self, what: &'static str, n: usize) {
        if n > 0 {
            *self.coverage.entry(what).or_default() += n as u64;
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> CloudStats {
        self.stats
    }

    /// The organization.
    pub fn org(&self) -> &Org {
        &self.org
    }

    /// Control Hub's connector registry.
    pub fn control_hub(&self) -> &ControlHub {
        &self.hub
    }

    /// User assignment and capacity.
    pub fn assignment(&self) -> &Assignment {
        &self.assign
    }

    /// Whom the cloud placed on which connector node, and whose activity events it delivered
    /// where.
    pub fn bridge_log(&self) -> &BridgeLog {
        &self.bridge_log
    }

    /// Spaces and activities.
    pub fn messaging(&self) -> &Messaging {
        &self.msg
    }

    /// Presence.
    pub fn presence(&self) -> &Presence {
        &self.presence
    }

    /// The presence service, to provision what is not a client's doing: calendar
    /// out-of-office comes from the calendar integration, used or not (spec 55).
    pub fn presence_mut(&mut self) -> &mut Presence {
        &mut self.presence
    }

    /// The in-process KMS (read-only view); `None` with a remote KMS.
    pub fn kms(&self) -> Option<&Kms> {
        match &self.kms {
            KmsLink::Local(k) => Some(k),
            KmsLink::Remote { .. } => None,
        }
    }

    /// The in-process KMS, for faults ([`Kms::set_outage`]); `None` with a remote KMS (use
    /// [`crate::kms::KmsService::set_outage`] on the KMS host).
    pub fn kms_mut(&mut self) -> Option<&mut Kms> {
        match &mut self.kms {
            KmsLink::Local(k) => Some(k),
            KmsLink::Remote { .. } => None,
        }
    }

    /// The remote KMS's host and port; `None` with an in-process KMS.
    pub fn kms_addr(&self) -> Option<(&str, u16)> {
        match &self.kms {
            KmsLink::Local(_) => None,
            KmsLink::Remote { host, port } => Some((host, *port)),
        }
    }

    /// The next authorization change to send to the remote KMS, oldest first. The driver sends
    /// them in order and retries one the KMS refuses with 503; it reports each one the KMS
    /// settled ([`Cloud::count_kms_change`]). Until then the cloud keeps it, as Webex keeps
    /// what it owes the KMS in its own store rather than in one relay process's memory.
    pub fn poll_kms_change(&mut self) -> Option<KmsCall> {
        let call = self.kms_changes.pop_front()?;
        self.kms_changes_sent.push_back(call.clone());
        Some(call)
    }

    /// The driver reports the KMS's answer to a change it took: a 503 (the driver retries it)
    /// or a final failure (an unknown key) are counted; a change the KMS settled, taken or
    /// refused for good, is no longer owed.
    pub fn count_kms_change(&mut self, call: &KmsCall, result: &Result<KmsReply, KmsError>) {
        match result {
            Ok(_) => {}
            Err(KmsError::Unavailable) => {
                self.stats.kms_change_retries += 1;
                return;
            }
            Err(_) => self.stats.kms_authorization_failures += 1,
        }
        // Settled in about the order taken: the search ends near the front.
        if let Some(i) = self.kms_changes_sent.iter().position(|c| c == call) {
            self.kms_changes_sent.remove(i);
        }
    }

    /// The driver (its relay task) started again, after the cloud restarted: the changes the
    /// old relay took and the KMS never settled go first again, in their order. Without this a
    /// bounce of the cloud during a KMS outage lost the authorizations that outage held back,
    /// and a connector node was refused its users' keys for good (explore seed 6719).
    pub fn kms_relay_restarted(&mut self) {
        let sent = std::mem::take(&mut self.kms_changes_sent);
        self.stats.kms_changes_resent += sent.len() as u64;
        for call in sent.into_iter().rev() {
            self.kms_changes.push_front(call);
        }
    }

    /// The cloud is back from an outage (fault): the connector nodes' claims settle
    /// ([`holds::Settle`]) before another node's posts to their conversations are taken.
    pub fn outage_over(&mut self, now: Duration) {
        self.clock = self.clock.max(now);
        self.settle.outage_over(self.clock);
    }

    /// Answers a seeded share `rate` (0..=1) of later requests with `status` (429 or 5xx;
    /// anything else becomes 503) and `{"error": "injected", "detail"}`. `rng` (seeded from the
    /// run's seed) decides which: the same seed and requests fail the same requests. A rate of
    /// 0 turns the fault off.
    pub fn set_http_errors(&mut self, rate: f64, status: u16, rng: ChaCha8Rng) {
        let status = match status {
            429 | 500..=599 => status,
            _ => 503,
        };
        self.http_errors = (rate > 0.0).then_some(HttpErrors {
            rate: rate.min(1.0),
            status,
            rng,
        });
    }

    /// Asks the driver to close every open event WebSocket (fault); it does so at its next
    /// dispatch, within [`http::TICK_INTERVAL`].
    pub fn drop_event_sockets(&mut self) {
        self.drop_sockets = true;
    }

    /// For the driver: whether [`Cloud::drop_event_sockets`] was called since the last call.
    pub fn take_socket_drop(&mut self) -> bool {
        std::mem::take(&mut self.drop_sockets)
    }

    /// The driver reports how many WebSockets it closed for [`Cloud::drop_event_sockets`].
    pub fn count_socket_drops(&mut self, n: u64) {
        self.stats.sockets_dropped_by_fault += n;
    }

    /// The most recent request bodies, oldest first (at most [`BODY_LOG_ENTRIES_MAX`]).
    pub fn received_bodies(&self) -> impl Iterator<Item = &ReceivedBody> {
        self.bodies.iter()
    }

    /// Hands every later request body to `tap` (for the plaintext check).
    pub fn set_body_tap(&mut self, tap: BodyTap) {
        self.tap = Some(tap);
    }

    /// The next pending WebSocket event.
    pub fn poll_event(&mut self) -> Option<(Subscriber, Event)> {
        self.events.pop_front()
    }

    /// The subscriber a WebSocket bearer token stands for (users and connectors only).
    pub fn subscriber_for_token(&self, token: &str) -> Option<Subscriber> {
        if let Some(email) = self.user_tokens.get(token) {
            return Some(Subscriber::User(email.clone()));
        }
        self.hub
            .connector_by_token(token)
            .map(|c| Subscriber::Connector(c.id.clone()))
    }

    /// When [`Cloud::tick`] next has something to do (besides heartbeat timeouts, which the
    /// driver's periodic tick covers).
    pub fn next_due(&self) -> Option<Duration> {
        [
            self.org.next_due(),
            self.hub.next_due(),
            self.msg.next_due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Handles one REST request, with the in-process KMS if it needs one (with a remote KMS,
    /// such a request is answered 503: drivers of a remote-KMS cloud use [`Cloud::handle`]).
    /// Never panics on any input.
    pub fn handle_request(&mut self, now: Duration, req: api::Request) -> api::Response {
        match self.handle(now, req) {
            Outcome::Now(r) => r,
            Outcome::Kms(call, cont) => {
                let result = self.local_kms_call(&call);
                self.complete(now, cont, result)
            }
        }
    }

    /// Runs a KMS call on the in-process KMS ([`KmsError::Unavailable`] with a remote one).
    pub fn local_kms_call(&mut self, call: &KmsCall) -> Result<KmsReply, KmsError> {
        match &mut self.kms {
            KmsLink::Local(kms) => call.run_local(kms, &mut self.rng),
            KmsLink::Remote { .. } => Err(KmsError::Unavailable),
        }
    }

    /// Handles one REST request: the response, or a KMS call to make first ([`Outcome`]).
    /// Never panics on any input.
    pub fn handle(&mut self, now: Duration, req: api::Request) -> Outcome {
        self.clock = self.clock.max(now);
        self.stats.requests += 1;
        self.log_body(now, &req);
        // Control Hub's own changes (setup, an administrator's maintenance mode) are not
        // part of the API the fault models, and an administrator retries until they take.
        let admin = req.token.as_deref() == Some(self.cfg.admin_token.as_str());
        if self.settle.active(now)
            && let Ok(node) = self.connector_principal(req.token.as_deref())
        {
            self.settle.heard(now, &node);
        }
        if let Some(f) = self.http_errors.as_mut()
            && !admin
            && f.rng.random::<f64>() < f.rate
        {
            self.stats.injected_errors += 1;
            if f.status < 500 {
                self.stats.responses_client_error += 1;
            } else {
                self.stats.responses_server_error += 1;
            }
            let detail = format!(
                "injected {} for {} {}",
                f.status,
                req.method.as_str(),
                req.path
            );
            tracing::debug!(%detail, "cloud injected an error");
            return Outcome::Now(api::Response {
                status: f.status,
                body: serde_json::json!({ "error": "injected", "detail": detail }),
            });
        }
        let result = if req.body.len() > BODY_BYTES_MAX {
            Err(CloudError::TooLarge {
                bytes: req.body.len(),
                limit: BODY_BYTES_MAX,
            })
        } else {
            self.route(now, &req)
        };
        let outcome = match result {
            Ok(Step::Done(status, body)) => Outcome::Now(self.finish(now, Ok((status, body)))),
            Ok(Step::Kms(call, pending)) => Outcome::Kms(call, Continuation(pending)),
            Err(e) => Outcome::Now(self.finish(now, Err(e))),
        };
        // One line per request (HMSIM_LOG=debug); no body, no token: bodies carry passwords.
        let status = match &outcome {
            Outcome::Now(r) => r.status,
            Outcome::Kms(..) => 0,
        };
        let (method, path) = (req.method.as_str(), &req.path);
        tracing::debug!(method, %path, status, "cloud request (status 0: waits for the KMS)");
        outcome
    }

    /// Completes a request that waited for the KMS with the KMS's answer (a transport failure
    /// is [`KmsError::Unavailable`]).
    pub fn complete(
        &mut self,
        now: Duration,
        cont: Continuation,
        result: Result<KmsReply, KmsError>,
    ) -> api::Response {
        let answer = self.resume(cont.0, result);
        self.finish(now, answer)
    }

    /// Counts the answer, runs due timers, and makes the response.
    fn finish(
        &mut self,
        now: Duration,
        result: Result<(u16, serde_json::Value), CloudError>,
    ) -> api::Response {
        let response = match result {
            Ok((status, body)) => api::Response { status, body },
            Err(e) => {
                self.count_error(&e);
                api::Response {
                    status: e.status(),
                    body: e.body(),
                }
            }
        };
        match response.status {
            200..=299 => self.stats.responses_ok += 1,
            400..=499 => self.stats.responses_client_error += 1,
            _ => self.stats.responses_server_error += 1,
        }
        self.tick(now);
        response
    }

    /// Answers a request the driver refused before it reached the core (oversized body,
    /// unsupported method, bad WebSocket upgrade), counted like any other.
    pub fn refuse(&mut self, error: CloudError) -> api::Response {
        self.stats.requests += 1;
        self.stats.responses_client_error += 1;
        self.count_error(&error);
        api::Response {
            status: error.status(),
            body: error.body(),
        }
    }

    /// The driver reports what became of one event: (frames queued on sockets, 1 if the
    /// subscriber had no socket, sockets dropped for a full queue).
    pub fn count_delivery(&mut self, (delivered, without_socket, dropped): (u64, u64, u64)) {
        self.stats.events_delivered += delivered;
        self.stats.events_without_socket += without_socket;
        self.stats.slow_sockets_dropped += dropped;
    }

    /// The driver queued `event` on sockets of `to`, `on` (socket id, its place in that
    /// socket's stream), logged in the [`BridgeLog`] (the status page check's expectation,
    /// spec 69-70) when `to` is a connector node, which reads it for sure once it answers a
    /// ping sent after it ([`Self::note_read_through`]): an assignment event, or an activity
    /// event for a user the node serves, which is also the user's latest use of Webex with
    /// Jabber, what the presence query answers (spec 70).
    pub fn note_delivered(&mut self, to: &Subscriber, event: &Event, on: &[(u64, u64)]) {
        let Subscriber::Connector(node) = to else {
            return;
        };
        match event {
            Event::Activity {
                for_user: Some(user),
                ..
            } => {
                self.bridge_log.delivered(user, node, self.clock, on);
                self.presence.used_with_jabber(self.clock, user);
            }
            Event::Assignment { added, removed, .. } => {
                for email in added.iter().chain(removed) {
                    self.bridge_log
                        .assignment_queued(email, node, self.clock, on);
                }
            }
            _ => {}
        }
    }

    /// The peer of WebSocket `socket` answered a ping sent after the first `sent` events
    /// queued there: it read them ([`BridgeLog`]).
    pub fn note_read_through(&mut self, socket: u64, sent: u64) {
        self.bridge_log.read_through(socket, sent);
    }

    /// WebSocket `socket` closed: what the [`BridgeLog`] waited to see read there never will be.
    pub fn note_socket_closed(&mut self, socket: u64) {
        self.bridge_log.socket_closed(socket);
    }

    fn count_error(&mut self, e: &CloudError) {
        match e {
            CloudError::BadJson(_) => self.stats.bad_json += 1,
            CloudError::NoRoute { .. } | CloudError::MethodNotAllowed { .. } => {
                self.stats.unknown_routes += 1;
            }
            CloudError::TooLarge { .. } => self.stats.too_large += 1,
            CloudError::Unauthorized | CloudError::WrongPassword => self.stats.unauthorized += 1,
            _ => {}
        }
    }

    /// Shows the body to the tap (the simulation's observer), and keeps it only for a request
    /// with a token the cloud issued: anyone can send bodies without one, and a store of
    /// those would be memory any peer could fill. The store is bounded in entries and bytes.
    fn log_body(&mut self, now: Duration, req: &api::Request) {
        let authenticated = self.issued_token(req.token.as_deref());
        if req.body.is_empty() || (self.tap.is_none() && !authenticated) {
            return;
        }
        let entry = ReceivedBody {
            at_ms: ms(now),
            route: format!("{} {}", req.method.as_str(), req.path),
            body: String::from_utf8_lossy(&req.body).into_owned(),
        };
        if let Some(tap) = self.tap.as_mut() {
            tap(&entry);
        }
        if !authenticated {
            return;
        }
        let bytes = entry.body.len() + entry.route.len();
        while !self.bodies.is_empty()
            && (self.bodies.len() >= BODY_LOG_ENTRIES_MAX
                || self.body_bytes + bytes > BODY_LOG_BYTES_MAX)
        {
            if let Some(old) = self.bodies.pop_front() {
                self.body_bytes -= old.body.len() + old.route.len();
            }
            self.stats.bodies_dropped_from_log += 1;
        }
        self.body_bytes += bytes;
        self.bodies.push_back(entry);
    }

    /// Whether `token` is one the cloud issued: the admin token, a user's or a connector's.
    fn issued_token(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| {
            t == self.cfg.admin_token
                || self.user_tokens.contains_key(t)
                || self.hub.connector_by_token(t).is_some()
        })
    }

    /// Runs the timers due at `now`: registrations, activations, email pickups, heartbeat
    /// timeouts, typing expiry. Drivers call it periodically; requests call it too.
    pub fn tick(&mut self, now: Duration) {
        self.clock = self.clock.max(now);
        let clock = self.clock;
        for nodes in self.released.values_mut() {
            nodes.retain(|_, at| clock < *at + RELEASE_GRACE);
        }
        self.released.retain(|_, nodes| !nodes.is_empty());
        self.revoke_due();
        for e in self.hub.tick(now) {
            self.on_hub_event(e);
        }
        let assign = &self.assign;
        let events = self.org.tick(now, |email| assign.lookup(email));
        for e in events {
            self.on_org_event(e);
        }
        for (space_id, actor) in self.msg.tick(now) {
            self.stats.typing_changes += 1;
            self.route_typing(&space_id, &actor, false, None);
        }
    }

    fn on_hub_event(&mut self, e: HubEvent) {
        let moves = match e {
            HubEvent::Registered { node, cluster } => {
                self.stats.registrations_completed += 1;
                self.push(
                    Subscriber::Connector(node.clone()),
                    Event::Registration {
                        connector_id: node.clone(),
                        state: control_hub::RegState::Registered,
                    },
                );
                let moves = self.assign.add_node(&cluster, &node).unwrap_or_default();
                let maintenance = self.hub.connector(&node).is_some_and(|c| c.maintenance);
                let mut more = self.assign.set_maintenance(&node, maintenance);
                let mut all = moves;
                all.append(&mut more);
                all
            }
            HubEvent::Down(node) => {
                self.stats.connectors_down += 1;
                let moves = self.assign.set_up(&node, false);
                let (placed, stranded) = split_moves(&moves);
                self.note("cloud: users reassigned after node loss", placed);
                self.note(
                    "cloud: users unassigned after node loss (no room)",
                    stranded,
                );
                moves
            }
            HubEvent::Up(node) => {
                let moves = self.assign.set_up(&node, true);
                self.note("cloud: rebalanced after recovery", moves.len());
                moves
            }
        };
        self.apply_moves(moves);
    }

    fn on_org_event(&mut self, e: OrgEvent) {
        match e {
            OrgEvent::Activated(email) => {
                let moves = self.assign.enable(&email);
                self.apply_moves(moves);
            }
            OrgEvent::Deactivated(email) => {
                let moves = self.assign.disable(&email);
                self.apply_moves(moves);
            }
            OrgEvent::EmailChanged { old, new } => self.rename_user(&old, &new),
        }
    }

    fn rename_user(&mut self, old: &str, new: &str) {
        self.msg.rename_member(old, new);
        self.presence.rename(old, new);
        self.bridge_log.rename(old, new);
        if let Some(token) = self.token_of_user.remove(old) {
            self.user_tokens.insert(token.clone(), new.to_owned());
            self.token_of_user.insert(new.to_owned(), token);
        }
        for space_id in self.msg.spaces_of(new) {
            let Some(uri) = self.msg.space(&space_id).map(|s| s.key_uri.clone()) else {
                continue;
            };
            self.kms_change(KmsCall::Authorize {
                uri,
                principal: new.to_owned(),
            });
        }
    }

    /// Tells connectors about moves and moves KMS authorizations with the users.
    pub(crate) fn apply_moves(&mut self, moves: Vec<Move>) {
        self.stats.assignment_moves += moves.len() as u64;
        let mut per_node: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
        for m in &moves {
            if let Some(from) = &m.from {
                self.released
                    .entry(m.email.clone())
                    .or_default()
                    .insert(from.clone(), self.clock);
            }
            self.bridge_log
                .moved(&m.email, m.from.as_deref(), m.to.as_deref(), self.clock);
            if let Some(to) = &m.to {
                per_node
                    .entry(to.clone())
                    .or_default()
                    .0
                    .push(m.email.clone());
            }
            if let Some(from) = &m.from {
                per_node
                    .entry(from.clone())
                    .or_default()
                    .1
                    .push(m.email.clone());
            }
            self.move_key_access(m);
        }
        for (node, (added, removed)) in per_node {
            self.push_assignment(&node, &added, &removed);
        }
    }

    fn push_assignment(&mut self, node: &str, added: &[String], removed: &[String]) {
        for chunk in removed.chunks(ASSIGNMENT_EVENT_EMAILS_MAX) {
            self.push(
                Subscriber::Connector(node.to_owned()),
                Event::Assignment {
                    connector_id: node.to_owned(),
                    added: Vec::new(),
                    removed: chunk.to_vec(),
                },
            );
        }
        for chunk in added.chunks(ASSIGNMENT_EVENT_EMAILS_MAX) {
            self.push(
                Subscriber::Connector(node.to_owned()),
                Event::Assignment {
                    connector_id: node.to_owned(),
                    added: chunk.to_vec(),
                    removed: Vec::new(),
                },
            );
        }
    }

    /// Authorizes the user's new connector for the keys of the user's spaces; revokes the old
    /// one where it serves no other member, once [`RELEASE_GRACE`] has passed.
    fn move_key_access(&mut self, m: &Move) {
        for space_id in self.msg.spaces_of(&m.email) {
            let Some(space) = self.msg.space(&space_id) else {
                continue;
            };
            let uri = space.key_uri.clone();
            let old_still_serves = m.from.as_ref().is_some_and(|from| {
                space
                    .members
                    .iter()
                    .any(|o| o != &m.email && self.assign.node_of(o) == Some(from.as_str()))
            });
            if let Some(to) = &m.to {
                self.kms_change(KmsCall::Authorize {
                    uri: uri.clone(),
                    principal: connector_principal(to),
                });
            }
            if let Some(from) = &m.from
                && !old_still_serves
                && m.to.as_ref() != Some(from)
            {
                self.defer_revocation(space_id, from.clone());
            }
        }
    }

    /// The old node keeps the space's key for [`RELEASE_GRACE`]: what it had in flight for
    /// the moved user (a post to encrypt, an activity to decrypt) must not die on a 403 from
    /// the KMS while the cloud still accepts its posts (spec 29: a drain is graceful).
    fn defer_revocation(&mut self, space_id: String, node: String) {
        let due = self.clock + RELEASE_GRACE;
        self.defer_revocation_until(space_id, node, due);
    }

    /// Revokes `node`'s access to the space's key at `due` unless it serves a member by then.
    /// Kept in order of due time (a grace that began before now ends before the others).
    fn defer_revocation_until(&mut self, space_id: String, node: String, due: Duration) {
        if self.revocations.len() >= REVOCATIONS_PENDING_MAX {
            self.stats.revocations_not_deferred += 1;
            self.revoke_unless_served(&space_id, &node);
            return;
        }
        let at = self.revocations.partition_point(|(d, _, _)| *d <= due);
        self.revocations.insert(at, (due, space_id, node));
    }

    /// Runs the revocations whose grace is over.
    fn revoke_due(&mut self) {
        while self
            .revocations
            .front()
            .is_some_and(|(due, _, _)| *due <= self.clock)
        {
            let (_, space_id, node) = self.revocations.pop_front().expect("checked");
            self.revoke_unless_served(&space_id, &node);
        }
    }

    /// Revokes `node`'s access to the space's key unless it serves a member again (the user
    /// moved back, or another member moved there) or still may post for one.
    fn revoke_unless_served(&mut self, space_id: &str, node: &str) {
        let Some(space) = self.msg.space(space_id) else {
            return;
        };
        if self.serves_a_member(node, &space.members) {
            return;
        }
        let uri = space.key_uri.clone();
        self.kms_change(KmsCall::Revoke {
            uri,
            principal: connector_principal(node),
        });
    }

    /// Applies an authorization change in-process, or queues it for the driver.
    fn kms_change(&mut self, call: KmsCall) {
        match &mut self.kms {
            KmsLink::Local(kms) => {
                if call.run_local(kms, &mut self.rng).is_err() {
                    self.stats.kms_authorization_failures += 1;
                }
            }
            KmsLink::Remote { .. } => {
                let owed = self.kms_changes.len() + self.kms_changes_sent.len();
                if owed >= KMS_CHANGES_QUEUE_MAX {
                    self.stats.kms_changes_dropped += 1;
                } else {
                    self.kms_changes.push_back(call);
                }
            }
        }
    }

    pub(crate) fn push(&mut self, to: Subscriber, event: Event) {
        if self.events.len() >= EVENT_QUEUE_MAX {
            self.stats.events_dropped += 1;
            return;
        }
        match to {
            Subscriber::User(_) => self.stats.events_to_users += 1,
            Subscriber::Connector(_) => self.stats.events_to_connectors += 1,
        }
        self.events.push_back((to, event));
    }

    /// The connector that should act for `actor` in `space_id`, unless it is `origin`: the
    /// actor's node if the actor is an Active Hybrid Message user and the space is direct.
    fn bridge_for(&self, space_id: &str, actor: &str, origin: Option<&str>) -> Option<String> {
        let space = self.msg.space(space_id)?;
        if space.kind != SpaceKind::Direct || !self.org.is_hm_active(actor) {
            return None;
        }
        // Anything that entered through a connector came from Jabber, which already has it:
        // bridging it back, even through another connector, would echo it into IM&P.
        if origin.is_some() {
            return None;
        }
        self.assign.node_of(actor).map(str::to_owned)
    }

    /// Sends a stored activity to the members' devices and, if bridged, to a connector.
    pub(crate) fn route_activity(&mut self, activity: &Activity) {
        let members = self
            .msg
            .space(&activity.space_id)
            .map(|s| s.members.clone())
            .unwrap_or_default();
        for m in members {
            self.push(
                Subscriber::User(m),
                Event::Activity {
                    activity: Box::new(activity.clone()),
                    for_user: None,
                },
            );
        }
        let origin = activity.via_connector.as_deref();
        if let Some(node) = self.bridge_for(&activity.space_id, &activity.actor, origin) {
            self.push(
                Subscriber::Connector(node),
                Event::Activity {
                    activity: Box::new(activity.clone()),
                    for_user: Some(activity.actor.clone()),
                },
            );
        }
    }

    /// `POST /v1/events/redeliver` from connector node `node`: sends the activity event again
    /// to the node serving `b.for_user` now. Only a node that serves the user, or did until
    /// the last move ([`RELEASE_GRACE`]), may hand an event back; an activity is redelivered at
    /// most [`REDELIVERIES_PER_ACTIVITY_MAX`] times.
    pub(crate) fn redeliver(
        &mut self,
        node: &str,
        b: &api::RedeliverBody,
    ) -> Result<(u16, serde_json::Value), CloudError> {
        let user = b.for_user.to_lowercase();
        let space = self
            .msg
            .space(&b.space_id)
            .ok_or_else(|| CloudError::NotFound(format!("space {}", b.space_id)))?;
        let activity = space.find(&b.activity_id).ok_or_else(|| {
            CloudError::NotFound(format!("activity {} in {}", b.activity_id, b.space_id))
        })?;
        // A connector gets an activity's event for its actor only.
        if activity.actor != user {
            return Err(CloudError::Invalid(format!(
                "activity {} is not an event for {user}",
                activity.id
            )));
        }
        if !self.serves_a_member(node, std::slice::from_ref(&user)) {
            return Err(CloudError::Forbidden(format!(
                "{node} does not serve {user}"
            )));
        }
        let done = self.redeliveries.get(&activity.id).copied().unwrap_or(0);
        if done >= REDELIVERIES_PER_ACTIVITY_MAX {
            self.stats.redeliveries_refused += 1;
            return Err(CloudError::Conflict(format!(
                "activity {} was handed back {done} times already",
                activity.id
            )));
        }
        let origin = activity.via_connector.as_deref();
        let Some(to) = self.bridge_for(&activity.space_id, &activity.actor, origin) else {
            self.stats.redeliveries_refused += 1;
            return Err(CloudError::Conflict(format!(
                "no connector node serves {user}"
            )));
        };
        self.count_redelivery(&activity.id);
        self.stats.redelivered += 1;
        self.note("cloud: activity events redelivered after a hand-back", 1);
        let answer = serde_json::json!({
            "activity_id": activity.id,
            "redeliveries": done + 1,
            "to": to,
        });
        self.push(
            Subscriber::Connector(to),
            Event::Activity {
                activity: Box::new(activity),
                for_user: Some(user),
            },
        );
        Ok((202, answer))
    }

    /// Counts one hand-back of `activity_id`, forgetting the oldest counts past
    /// [`REDELIVERIES_TRACKED_MAX`].
    fn count_redelivery(&mut self, activity_id: &str) {
        let n = self.redeliveries.entry(activity_id.to_owned()).or_default();
        *n += 1;
        if *n == 1 {
            self.redelivery_order.push_back(activity_id.to_owned());
        }
        while self.redelivery_order.len() > REDELIVERIES_TRACKED_MAX {
            if let Some(old) = self.redelivery_order.pop_front() {
                self.redeliveries.remove(&old);
            }
        }
    }

    /// Sends a typing change like an activity.
    pub(crate) fn route_typing(
        &mut self,
        space_id: &str,
        actor: &str,
        typing: bool,
        origin: Option<&str>,
    ) {
        let members = self
            .msg
            .space(space_id)
            .map(|s| s.members.clone())
            .unwrap_or_default();
        let event = |for_user: Option<String>| Event::Typing {
            space_id: space_id.to_owned(),
            actor: actor.to_owned(),
            typing,
            for_user,
        };
        for m in members.into_iter().filter(|m| m != actor) {
            self.push(Subscriber::User(m), event(None));
        }
        if let Some(node) = self.bridge_for(space_id, actor, origin) {
            self.push(Subscriber::Connector(node), event(Some(actor.to_owned())));
        }
    }
}

#[cfg(test)]
mod tests;
