//! The Webex App client model: one task per user, speaking the cloud's REST API and event
//! WebSocket (the same client helpers as the connector, [`connector::io::http`]).
//!
//! A user logs in, keeps the event socket open, and acts on a seeded schedule: text posts,
//! edits and deletes of their last post, file shares, typing indications and read markers,
//! drawn from the workload's mix. Every text it sends carries a unique tag `[[id]]` (Jepsen
//! style): ids differ across the bridge (activity ids in Webex, stanza ids in Jabber), the tag
//! is how the observer follows one message from sender to every receiver. Everything is
//! encrypted with the space key before it leaves the client; the cloud never sees plaintext.
//!
//! Failures (cloud outage, KMS outage, HTTP errors, a dropped socket) are survived the way a
//! real client does: reconnect with seeded backoff, and re-fetch what was missed over REST.
//!
//! ## Module map
//! - [`core`]: the sans-IO user: what it knows and every decision ([`WebexCore`]).
//! - [`driver`]: the user's task: REST calls, the event socket, reconnects ([`run_webex`],
//!   [`run_group_space`]).

pub mod core;
pub mod driver;

pub use self::core::{
    Action, OUTBOX_MAX, PostAnswer, Unsent, WebexCore, fate_of, refused_for_good, tag_of,
};
pub use driver::{CloudConn, GroupSpaceSpec, WebexSpec, run_group_space, run_webex};

use std::time::Duration;

/// Reconnect backoff bounds.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Upper bound of the reconnect backoff.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long a typing indication lasts before the client stops it.
pub const TYPING_FOR: Duration = Duration::from_secs(5);
/// Connect attempts give up after this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Shares of each action, as fractions summing to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    /// Text posts.
    pub text: f64,
    /// Edits of the last own post.
    pub edit: f64,
    /// Deletes of the last own post.
    pub delete: f64,
    /// File shares.
    pub file: f64,
    /// Typing indications.
    pub typing: f64,
    /// Read markers.
    pub read: f64,
}

/// What one Webex user does.
#[derive(Debug, Clone)]
pub struct WebexPlan {
    /// Emails the user writes to.
    pub contacts: Vec<String>,
    /// Mean time between actions (exponential).
    pub mean_interval: Duration,
    /// When acting starts.
    pub start: Duration,
    /// When acting stops.
    pub stop: Duration,
    /// Action shares.
    pub mix: Mix,
    /// The bodies of posts and edits; `None`: a few words.
    pub body: Option<crate::clients::body::BodyPlan>,
}

/// Presence settings applied once logged in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PresenceSettings {
    /// "Show statuses" off.
    pub hidden: bool,
    /// Do not disturb for this many minutes (30..=1440), set at login.
    pub dnd_minutes: Option<u64>,
    /// Out of office.
    pub out_of_office: bool,
}
