//! The cloud's wire types: requests and responses of the core, WebSocket subscribers and events,
//! and the JSON bodies of the REST routes (the route table is in the [`super`] module doc).
//! Clients (the connector, the Webex App model) use the same types to build and read messages.

use super::assignment::{Coresidency, KnownUser, NodeSize};
use super::control_hub::RegState;
use super::messaging::{Activity, RequestVerb, SpaceKind};
use super::org::Entitlement;
use serde::{Deserialize, Serialize};

/// An HTTP method the cloud serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
}

impl Method {
    /// The method of an HTTP request line, if the cloud serves it.
    pub fn parse(s: &str) -> Option<Method> {
        match s {
            "GET" => Some(Method::Get),
            "POST" => Some(Method::Post),
            "PUT" => Some(Method::Put),
            "DELETE" => Some(Method::Delete),
            _ => None,
        }
    }

    /// The method's name as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// One REST request, as the driver hands it to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// Path and optional query (`/v1/spaces/space-1/activities?after=3`).
    pub path: String,
    /// The bearer token of the `Authorization` header.
    pub token: Option<String>,
    /// The body (JSON or empty).
    pub body: Vec<u8>,
}

/// The core's answer: a status and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// JSON body (`{"error", "detail"}` for errors).
    pub body: serde_json::Value,
}

/// Who receives a WebSocket event: every open socket of that principal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Subscriber {
    /// All Webex devices of a user (email).
    User(String),
    /// One connector node (id = hostname).
    Connector(String),
}

/// A WebSocket push, sent as one JSON text frame tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An activity was stored. To users: every member's devices. To a connector: the activity of
    /// a Hybrid Message actor it serves, `for_user` naming that actor.
    Activity {
        /// The activity (ciphertext only).
        activity: Activity,
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

/// `POST /v1/kms/keys`: fetch a space key through the cloud (spec 56-57).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFetchBody {
    /// The key URI (an activity's `kid`).
    pub uri: String,
}
