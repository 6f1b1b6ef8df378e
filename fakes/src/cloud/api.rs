//! The cloud's wire types: requests and responses of the core, WebSocket subscribers and events,
//! and the JSON bodies of the REST routes (the route table is in the [`super`] module doc).
//! Clients (the connector, the Webex App model) use the same types to build and read messages.

pub use connector::proto::webex::{
    AddUserBody, CLAIMS_PER_REQUEST_MAX, ChangeEmailBody, ClaimsBody, CreateClusterBody,
    CreateSpaceBody, EntitlementsBody, Event, HeartbeatBody, HoldReleaseBody, KeyFetchBody,
    KnownUsersBody, LoginBody, MaintenanceBody, PostActivityBody, PresenceQueryBody, RedeliverBody,
    RegisterBody, SetPresenceBody, TypingBody, Unposted,
};
use serde::{Deserialize, Serialize};

pub use crate::rest::{Method, Response};

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

/// Who receives a WebSocket event: every open socket of that principal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Subscriber {
    /// All Webex devices of a user (email).
    User(String),
    /// One connector node (id = hostname).
    Connector(String),
}
