//! The Jabber client model: one task and one real XMPP c2s connection per device.
//!
//! [`JabberCore`] is the sans-IO protocol half (login sequence, receipts, pings); [`run_device`]
//! is the driver that connects, logs in, generates the user's chat workload from its seeded
//! RNG, keeps the stream alive with XEP-0199 pings (turmoil's TCP never retransmits, so a dead
//! stream must be noticed by the application, as in real life) and reconnects with seeded
//! backoff, moving along its server list (home node, then its PRG peer) when a node refuses it
//! or sends it elsewhere; a device that lost its server that way logs in again within the
//! PRG's client re-login window ([`Relogin`]). A device may also follow a [`PresencePlan`] (manual and device
//! presence changes, spec 53) and reports the presences it publishes and receives, and the
//! error stanzas its messages come back as (spec 46), to the [`crate::observe::Recorder`].
//!
//! With a [`GroupPlan`] the device also takes part in XEP-0045 group chat (spec 42): it creates
//! its rooms (persistent ones through the room configuration form), invites their members,
//! joins rooms it is invited to, sends `groupchat` messages tagged `[[id]]` like 1:1 ones, and
//! reports what it did and saw as [`crate::observe::GroupEvent`]s. Rooms are not rejoined after a reconnect
//! (the server took the device out when its connection closed).
//!
//! ## Module map
//! - [`core`]: the sans-IO XMPP client protocol ([`JabberCore`]).
//! - [`plan`]: the workload plans a device follows.
//! - [`chat`]: sans-IO 1:1 chat and presence: what to send next, what a received stanza means.
//! - [`group`]: sans-IO XEP-0045 group chat.
//! - [`driver`]: the device task: connection, timers, reconnects ([`run_device`]).

pub mod chat;
pub mod core;
pub mod driver;
pub mod group;
pub mod plan;

pub use self::core::{ClientEvent, JabberCore};
pub use driver::{DeviceSpec, run_device};
pub use plan::{ChatPlan, GroupPlan, PresencePlan, RoomPlan};

use std::time::Duration;

/// Connect attempts give up after this long: a connect to a crashed host is never refused,
/// it hangs (the simulated network drops its packets, as a real one does).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The whole login sequence must finish within this.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Keepalive ping interval (Jabber's default is in this range).
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// A stream silent for this long is dead: three missed pings.
pub const SILENCE_MAX: Duration = Duration::from_secs(90);
/// A ping unanswered for this long means the stream is dead even if bytes still arrive: a
/// half-open stream (one direction wedged) keeps delivering inbound messages while every send
/// is lost, and only an answered ping proves the server hears us (XEP-0199).
pub const PING_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest keepalive interval a scenario may set: below it keepalives are the traffic.
pub const KEEPALIVE_INTERVAL_MIN: Duration = Duration::from_secs(5);
/// The longest keepalive interval a scenario may set: a dead stream is noticed only after
/// three intervals of silence, and ten minutes already makes that half an hour.
pub const KEEPALIVE_INTERVAL_MAX: Duration = Duration::from_secs(600);

/// How c2s streams are kept alive, by the device and (with whitespace) by the IM&P node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeepaliveKind {
    /// An XEP-0199 ping IQ from the device every interval, answered by the server: two
    /// stanzas to parse and route per device per interval.
    #[default]
    Ping,
    /// RFC 6120 section 4.6.1 whitespace keepalives, sent both ways as XEP-0304 describes
    /// (client and server each send one when they sent nothing else for an interval): no
    /// stanza, no answer. A device probes with an XEP-0199 ping only a stream the server has
    /// been silent on for two intervals, and the server closes a stream its client has been
    /// silent on for three, so a dead or half-open stream is still noticed.
    Whitespace,
}

/// A device's keepalive setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Pings or whitespace.
    pub kind: KeepaliveKind,
    /// How often.
    pub interval: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        Self {
            kind: KeepaliveKind::Ping,
            interval: PING_INTERVAL,
        }
    }
}

impl Keepalive {
    /// A stream silent this long is dead: three intervals ([`SILENCE_MAX`] at the default).
    pub fn silence_max(&self) -> Duration {
        SILENCE_MAX.max(self.interval * 3)
    }
}

/// When a device logs in again after losing its server to a PRG failover or fallback: a
/// delay drawn uniformly between IM&P's client re-login lower and upper limits (the Server
/// Recovery Manager's "Client Re-Login Lower Limit" and "Upper Limit", spec 65), so that the
/// node taking the users over is not hit by all of them at once.
#[derive(Debug, Clone)]
pub struct Relogin {
    /// The shortest wait.
    pub lower: Duration,
    /// The longest wait.
    pub upper: Duration,
    /// The draws, from an RNG of their own derived from the seed by name: drawing them
    /// changes no other stream of the device.
    pub rng: rand_chacha::ChaCha8Rng,
}

impl Relogin {
    /// The next wait, uniform in `[lower, upper]`.
    pub fn draw(&mut self) -> Duration {
        use rand::RngExt as _;
        let (lo, hi) = (self.lower.as_secs_f64(), self.upper.as_secs_f64());
        if hi <= lo {
            return self.lower;
        }
        Duration::from_secs_f64(self.rng.random_range(lo..=hi))
    }
}

/// Reconnect backoff bounds.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Upper bound of the reconnect backoff.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
