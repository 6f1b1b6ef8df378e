//! The fake Unified CM IM and Presence node.
//!
//! - [`axl`]: the AXL Web Service (SOAP on 8443): node and user discovery.
//! - [`component`]: the XEP-0114 component port (7400) and the connector's per-user sessions.
//! - [`directory`]: the user table and the database that survives restarts.
//! - [`muc`]: the XEP-0045 group chat service `conference.<domain>` (spec 42: never bridged).
//! - [`node`]: the sans-IO core (c2s streams, routing within the cluster over node-to-node
//!   links, offline storage, carbons, presence composition).
//! - [`prg`]: Presence Redundancy Groups: heartbeats, failover and fallback (spec 61-65).
//! - [`driver`]: sockets ↔ core, on any [`connector::io::net::Net`] backend.
//! - [`serve`]: `hmsim serve imp`: one node on loopback sockets, from its config file.

pub mod axl;
pub mod component;
pub mod directory;
pub mod driver;
pub mod muc;
pub mod node;
pub mod prg;
pub mod serve;

pub use directory::{Directory, NodeDb, UserRecord};
pub use node::{ImpNode, NodeConfig, NodeStats};
pub use prg::{PrgConfig, PrgState};
