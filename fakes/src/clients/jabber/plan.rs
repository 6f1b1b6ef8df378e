//! The workload plans one Jabber device follows (built by the simulation from the scenario).

use crate::clients::body::BodyPlan;
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// The chat traffic one user generates.
#[derive(Debug, Clone)]
pub struct ChatPlan {
    /// Bare JIDs the user writes to.
    pub contacts: Vec<String>,
    /// Mean time between messages (exponentially distributed).
    pub mean_interval: Duration,
    /// Simulated time at which sending starts.
    pub start: Duration,
    /// Simulated time at which sending stops.
    pub stop: Duration,
    /// The bodies to send; `None`: a few words.
    pub body: Option<BodyPlan>,
}

/// One room a user creates (spec 42).
#[derive(Debug, Clone)]
pub struct RoomPlan {
    /// The room's local part (`g-…`); the room is `name@<service>`.
    pub name: String,
    /// Made persistent with the room configuration form after creation.
    pub persistent: bool,
    /// Bare JIDs invited once the room exists.
    pub invitees: Vec<String>,
    /// When the room is created.
    pub at: Duration,
}

/// The group chat one Jabber user takes part in (spec 42); only the user's first device has
/// one.
#[derive(Debug, Clone)]
pub struct GroupPlan {
    /// The conference service (`conference.<domain>`).
    pub service: String,
    /// Rooms this user creates.
    pub rooms: Vec<RoomPlan>,
    /// Mean time between this user's groupchat messages, over all rooms it is in
    /// (exponential).
    pub mean_interval: Duration,
    /// No messages are sent, and no invitations accepted, from this time on.
    pub stop: Duration,
}

/// The presence changes one device publishes (spec 53): manual (user-set) or device presence,
/// marked with the project's `urn:hmsim:presence:0` payload (see `imp::node`).
#[derive(Debug, Clone)]
pub struct PresencePlan {
    /// Mean time between changes (exponentially distributed).
    pub mean_interval: Duration,
    /// Probability that a change is manual.
    pub manual_share: f64,
    /// Simulated time at which changes stop.
    pub stop: Duration,
    /// Its own RNG, so that presence never shifts the chat workload's draws.
    pub rng: ChaCha8Rng,
    /// When the next change is due.
    pub next: Duration,
    /// Changes published so far (makes every status text distinct).
    pub count: u64,
}
