//! # connector — the Hybrid Message connector
//!
//! The product under test. It runs unchanged inside the turmoil simulation and on real sockets.
//!
//! ## Module map
//! - [`proto`]: wire codecs (XML, the XMPP stream layer, stanza vocabulary) shared with the
//!   fakes.
//! - [`core`]: the sans-IO connector logic (configuration rules, rate limiting, presence).
//! - [`io`]: drivers over [`io::net::Net`], one backend for turmoil and one for tokio.
//!
//! The sans-IO core (`core`) and its drivers (`io`) arrive with the connector issues; see
//! `docs/architecture.md` at the workspace root.

pub mod core;
pub mod io;
pub mod proto;
