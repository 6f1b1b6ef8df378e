//! The client models the workloads run: each a sans-IO core (what the user knows and decides,
//! given `now`) and a driver task (sockets, timers, reconnects).
//!
//! - [`jabber`]: a Jabber device on XMPP c2s (1:1 chat, presence, XEP-0045 group chat).
//! - [`webex`]: a Webex App user on the cloud's REST API and event WebSocket.
//! - [`body`]: message bodies of a size and character set a workload asks for.

pub mod body;
pub mod jabber;
pub mod webex;
