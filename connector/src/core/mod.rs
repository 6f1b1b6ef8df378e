//! The sans-IO connector core: no tokio, no clock, no RNG of its own. Inputs carry `now`;
//! randomness is passed in by the driver (derived from the run seed).
//!
//! - [`config`]: the Message Service configuration and its rules (spec 11-21).
//! - [`directory`]: AXL discovery requests and responses, and the user directory (spec 22-26).
//! - [`failover`]: IM&P node health, detection delay and failover/fallback moves (spec 61-65).
//! - [`limiter`]: token bucket (session creation, migration) and seeded backoff.
//! - [`node`]: one connector node, the state machine tying all of the above together.
//! - [`presence`]: Webex → Jabber presence mapping and the session-lifetime rule.
//! - [`sessions`]: per-user IM&P sessions over the component link, rate-limited, with backoff.
//! - [`sorted`]: lookups of ascending keys by walking a sorted map (status page counts).
//! - [`status`]: the Message Service status page model (spec 66-71).
//! - [`translate`]: XMPP stanzas ↔ neutral Webex activities (spec 32-45).

pub mod config;
pub mod directory;
pub mod failover;
pub mod limiter;
pub mod node;
pub mod presence;
pub mod sessions;
pub mod sorted;
pub mod status;
pub mod translate;
