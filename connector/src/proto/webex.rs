//! The Webex cloud's wire types: JSON bodies of the REST routes, the shared data types they
//! carry, and the WebSocket events (`{"type": ...}` text frames). One definition for both
//! sides: the fake cloud (`fakes::cloud`) serves these and the connector reads and writes them,
//! as with the XMPP codec. The route table is in `fakes::cloud`'s module doc and
//! `docs/protocols.md`. Independent clients (curl in the interop test) check the JSON itself.

use serde::{Deserialize, Serialize};

/// Longest encrypted text (a JWE compact token) the cloud accepts in an activity, in bytes.
/// Webex caps a message at a few thousand characters; its JWE is about 4/3 of that plus a
/// header. 64 KiB is ample and keeps one post from costing much: about 48 KB of text.
pub const ENCRYPTED_TEXT_BYTES_MAX: usize = 64 * 1024;

/// Expressway VM size (spec 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeSize {
    /// Small OVA.
    Small,
    /// Medium OVA.
    Medium,
    /// Large OVA.
    Large,
}

/// Other services sharing the connector nodes (spec 6-7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coresidency {
    /// Dedicated to Message.
    #[default]
    None,
    /// Hybrid Calendar and Message.
    CalendarMessage,
    /// Hybrid Calendar, Call and Message.
    CalendarCallMessage,
    /// Mobile and Remote Access on the same Expressway.
    Mra,
}

/// A user a connector knows: its email and the IM&P cluster homing it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KnownUser {
    /// The user's mailid (= Webex email, spec 24).
    pub email: String,
    /// The IM&P cluster that homes the user (two different ones: spec 25).
    pub imp_cluster: String,
}

/// Registration progress of a connector node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegState {
    /// Accepted; completes at `ready_at`.
    Registering,
    /// Registered: the connector may serve users.
    Registered,
}

/// Kind of space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpaceKind {
    /// 1:1, the only kind bridged to Jabber.
    Direct,
    /// Group space (never bridged, spec 42).
    Group,
}

/// What a stored activity is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verb {
    /// A text message (`edit_of` set when it replaces an edited one).
    Post,
    /// A file link.
    Share,
    /// Deletion of `target`.
    Delete,
    /// The actor read up to `target`.
    Read,
    /// The actor's post `target` could not be delivered to the other member's Jabber: IM&P
    /// answered the message the connector sent for it with an XMPP error (spec 46, "Message
    /// could not be delivered" before 12.5). `encrypted_text` holds `{condition, text}` as
    /// JSON; `target_encrypted_text` the post's ciphertext, so the sender's client can say
    /// which message failed. The connector posts it; the project's wire, the guide is silent.
    Undelivered,
}

/// What a client asks for (an edit becomes a post and a delete).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestVerb {
    /// Post text.
    Post,
    /// Edit `target` to new text.
    Edit,
    /// Delete `target`.
    Delete,
    /// Share a file link.
    Share,
    /// Mark read up to `target` (or everything).
    Read,
    /// The actor's own post `target` could not be delivered to Jabber (connectors only).
    Undelivered,
}

/// One stored activity, as clients and connectors receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// Unique id, `act-<n>`.
    pub id: String,
    /// The space.
    pub space_id: String,
    /// Position in the space (from 1).
    pub seq: u64,
    /// What it is.
    pub verb: Verb,
    /// Who did it (email).
    pub actor: String,
    /// JWE compact token (text or file link), for post and share.
    pub encrypted_text: Option<String>,
    /// The key URI of `encrypted_text` (the space's key).
    pub kid: Option<String>,
    /// The activity deleted or read up to.
    pub target: Option<String>,
    /// For a delete: the verb of what was deleted (`share`: a file was deleted, spec 43).
    pub target_verb: Option<Verb>,
    /// For a delete: the deleted activity's ciphertext, so that a receiver can name the deleted
    /// file (spec 43) without having kept it; for `undelivered`, the failed post's.
    pub target_encrypted_text: Option<String>,
    /// For a post made by an edit: the activity it replaces (spec 40).
    pub edit_of: Option<String>,
    /// The client's own id for the request that made it.
    pub client_id: Option<String>,
    /// The connector that posted it on the actor's behalf, if any.
    pub via_connector: Option<String>,
    /// When the cloud accepted it, ms since the start of the run.
    pub published_ms: u64,
}

/// A licence or service a user is entitled to (spec 27).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entitlement {
    /// Some paid licensed service (required before Hybrid Message).
    PaidLicence,
    /// The free messaging tier (not a paid licence).
    MessageFree,
    /// The Hybrid Message service toggle.
    HybridMessage,
}

/// A WebSocket push, sent as one JSON text frame tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An activity was stored. To users: every member's devices. To a connector: the activity of
    /// a Hybrid Message actor it serves, `for_user` naming that actor.
    Activity {
        /// The activity (ciphertext only; boxed: it is the large variant).
        activity: Box<Activity>,
        /// For a connector: the served user on whose behalf to act.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        for_user: Option<String>,
    },
    /// Typing started or stopped (an expired indicator stops by itself, spec 37).
    Typing {
        /// The space.
        space_id: String,
        /// Who types.
        actor: String,
        /// Started (true) or stopped.
        typing: bool,
        /// For a connector: the served user on whose behalf to act.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        for_user: Option<String>,
    },
    /// A space the subscriber is a member of was created.
    SpaceCreated {
        /// The space.
        space_id: String,
        /// Direct or group.
        kind: SpaceKind,
        /// Member emails.
        members: Vec<String>,
        /// The space key's URI.
        key_uri: String,
    },
    /// Users assigned to (`added`) or taken from (`removed`) this connector (spec 28).
    Assignment {
        /// The connector.
        connector_id: String,
        /// Newly assigned users.
        added: Vec<String>,
        /// Users no longer assigned here.
        removed: Vec<String>,
    },
    /// The connector's registration completed.
    Registration {
        /// The connector.
        connector_id: String,
        /// Its state.
        state: RegState,
    },
    /// Control Hub maintenance mode changed for this connector (spec 29).
    Maintenance {
        /// The connector.
        connector_id: String,
        /// On or off.
        on: bool,
    },
}

/// `POST /v1/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// The user's email.
    pub email: String,
    /// The user's password.
    pub password: String,
}

/// `POST /v1/admin/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddUserBody {
    /// The new user's email.
    pub email: String,
    /// Password.
    pub password: String,
    /// Initial entitlements (Hybrid Message here starts activation).
    #[serde(default)]
    pub entitlements: Vec<Entitlement>,
}

/// `PUT /v1/admin/users/{email}/entitlements`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntitlementsBody {
    /// The complete new set.
    pub entitlements: Vec<Entitlement>,
}

/// `POST /v1/admin/users/{email}/email`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeEmailBody {
    /// The new email.
    pub new_email: String,
}

/// `POST /v1/admin/clusters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateClusterBody {
    /// Cluster name (lowercase FQDN).
    pub name: String,
    /// VM size of its nodes.
    pub size: NodeSize,
    /// Coresident services.
    #[serde(default)]
    pub coresidency: Coresidency,
    /// The hostnames of its Expressway nodes (lowercase FQDNs, 1 to 6): the registration token
    /// registers these and no other, each once.
    #[serde(default)]
    pub hostnames: Vec<String>,
}

/// `PUT /v1/admin/connectors/{id}/maintenance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceBody {
    /// On or off.
    pub on: bool,
}

/// `POST /v1/connectors/register` (bearer: the cluster's registration token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// The node's hostname (lowercase, spec 11).
    pub hostname: String,
    /// Whether this is the cluster's primary.
    pub primary: bool,
}

/// `POST /v1/connectors/heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    /// Status upload: the connector's status page model, any JSON.
    #[serde(default)]
    pub status: Option<serde_json::Value>,
}

/// `POST /v1/connectors/users`: incremental report of known users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct KnownUsersBody {
    /// Users now known.
    #[serde(default)]
    pub add: Vec<KnownUser>,
    /// Users no longer known.
    #[serde(default)]
    pub remove: Vec<KnownUser>,
}

/// `POST /v1/presence/query`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceQueryBody {
    /// Emails to look up.
    pub emails: Vec<String>,
}

/// `PUT /v1/presence/me`: fields left out are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SetPresenceBody {
    /// Start DND for this many minutes (30–1,440); 0 ends DND.
    #[serde(default)]
    pub dnd_minutes: Option<u64>,
    /// Calendar out-of-office.
    #[serde(default)]
    pub out_of_office: Option<bool>,
    /// Hide status.
    #[serde(default)]
    pub hidden: Option<bool>,
}

/// `POST /v1/spaces`: find or create a space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSpaceBody {
    /// Direct (1:1) or group.
    pub kind: SpaceKind,
    /// Member emails (the caller, or the connector's served user, must be one).
    pub members: Vec<String>,
    /// From a connector node asking again after a failure: its messages of this direct
    /// conversation wait for the space since this time (ms): it claims the conversation, so
    /// that another node's newer posts wait for them ([`HeldConversation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_since_ms: Option<u64>,
    /// With `held_since_ms`: the messages of the conversation the node has not posted yet
    /// ([`Unposted`]), so that the cloud can merge both nodes' backlogs in send order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unposted: Vec<Unposted>,
}

/// A message of a direct conversation that a connector node has not posted yet: what a
/// node declares with a hold or claim ([`HeldConversation::unposted`]), so that the other
/// node serving the conversation's other member does not post a newer one first. The
/// project's own agreement between nodes: the cloud orders a space's activities as they
/// arrive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unposted {
    /// The post's idempotency key (the same at both nodes for the same Jabber message).
    pub client_id: String,
    /// When the node got the message from IM&P (ms, the node's clock).
    pub got_ms: u64,
}

/// Unposted messages a node declares per conversation, at most (the oldest): only the oldest
/// not yet stored decides whether another node's post waits, and a node whose declared ones
/// are all stored declares again with its next retry or claim. A KMS outage's backlog of one
/// conversation is a few dozen messages.
pub const DECLARED_PER_CONVERSATION_MAX: usize = 64;

/// A connector node's claim on a direct conversation whose earlier messages wait on that node
/// for a space or key that failed (a KMS or cloud outage): until the node has posted them
/// (`POST /v1/spaces/{id}/hold` with [`HoldReleaseBody`]), or the cloud's bound passes, the
/// cloud refuses other nodes' posts to the space with 409, so the conversation keeps its order
/// when its two members are served by different nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldConversation {
    /// The conversation's space.
    pub space_id: String,
    /// Since when its messages wait on the claiming node (ms). Without it the node only
    /// declares its unposted messages (a post of it refused for another node's hold) and
    /// claims nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// The messages of the conversation the node has not posted yet, oldest first, at most
    /// [`DECLARED_PER_CONVERSATION_MAX`]: another node's post of a newer message waits until
    /// a copy of each is stored, or the node releases the conversation, or the cloud's bound.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unposted: Vec<Unposted>,
}

/// `POST /v1/spaces/{id}/hold`: the claiming node posted what it held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldReleaseBody {
    /// Always true: the hold ends.
    pub release: bool,
}

/// Conversations claimed in one [`ClaimsBody`], at most: a node claims every conversation
/// whose post failed or is stuck at once, when the cloud answers it again after an outage; a
/// node's conversations with posts on their way are a few hundred at most.
pub const CLAIMS_PER_REQUEST_MAX: usize = 500;

/// `POST /v1/connectors/claims`: the node claims conversations whose post failed at the
/// transport or is stuck on its way (a cloud outage), each since that post's first send, as a
/// failed space or key fetch claims one ([`HeldConversation`]); released like those
/// (`POST /v1/spaces/{id}/hold`). All in one request, so that each arrives within a round trip
/// of the node hearing the cloud again (one request each queued them a round trip apart on
/// the node's control connection). At most [`CLAIMS_PER_REQUEST_MAX`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsBody {
    /// The conversations claimed.
    pub claims: Vec<HeldConversation>,
}

/// `POST /v1/spaces/{id}/activities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostActivityBody {
    /// What to do.
    pub verb: RequestVerb,
    /// On whose behalf; required from a connector, optional (= the caller) from a user.
    #[serde(default)]
    pub actor: Option<String>,
    /// JWE compact token, for post, edit and share.
    #[serde(default)]
    pub encrypted_text: Option<String>,
    /// Activity to edit, delete or read up to.
    #[serde(default)]
    pub target: Option<String>,
    /// Idempotency key.
    #[serde(default)]
    pub client_id: Option<String>,
    /// From a connector: when it got the Jabber message from IM&P (ms, its clock), which the
    /// cloud compares with the other node's declared unposted messages ([`Unposted`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub got_ms: Option<u64>,
}

/// `POST /v1/spaces/{id}/typing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypingBody {
    /// Started (true) or stopped.
    pub typing: bool,
    /// On whose behalf; required from a connector.
    #[serde(default)]
    pub actor: Option<String>,
}

/// `POST /v1/events/redeliver`: a connector node gives back an activity event it can no
/// longer deliver (the user moved to another node before it went out); the cloud sends the
/// event again to the node serving the user now (at-least-once delivery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeliverBody {
    /// The activity's space.
    pub space_id: String,
    /// The activity handed back.
    pub activity_id: String,
    /// The served user the event was for (`for_user` of the event: the actor).
    pub for_user: String,
}

/// `POST /v1/kms/keys`: fetch a space key through the cloud (spec 56-57).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFetchBody {
    /// The key URI (an activity's `kid`).
    pub uri: String,
    /// From a connector node asking again after a failure: the conversation whose messages
    /// wait for this key, claimed as by [`CreateSpaceBody::held_since_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldConversation>,
}
