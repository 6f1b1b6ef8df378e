//! Drivers: the only code that touches sockets, clocks and tasks.
//!
//! - [`driver`]: runs a `ConnectorNode` over any backend (HTTP workers, component links, events).
//! - [`http`]: HTTP/1.1 and WebSocket clients over any stream (the cloud's REST and events).
//! - [`located`]: located errors for YAML config files (`file:line:column`, "did you mean").
//! - [`net`]: the [`net::Net`] backend trait with turmoil and tokio implementations.
//! - [`ranges`]: the valid ranges of the config file's numbers, checked while it is parsed.
//! - [`real`]: real mode (the `connector` binary): the config file and the run on tokio sockets.
//! - [`state`]: real mode's state file: the registration kept across a process restart.

pub mod driver;
pub mod http;
pub mod located;
pub mod net;
pub mod ranges;
pub mod real;
pub mod state;
