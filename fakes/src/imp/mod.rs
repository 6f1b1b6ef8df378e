//! The fake Unified CM IM and Presence node.
//!
//! - [`directory`]: the user table and the database that survives restarts.
//! - [`node`]: the sans-IO core (c2s streams, routing, offline storage, carbons).
//! - [`driver`]: sockets ↔ core, on any [`connector::io::net::Net`] backend.

pub mod directory;
pub mod driver;
pub mod node;

pub use directory::{Directory, NodeDb, UserRecord};
pub use node::{ImpNode, NodeConfig, NodeStats};
