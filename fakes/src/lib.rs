//! # fakes — the world around the connector
//!
//! Each fake is a sans-IO core plus a driver over [`connector::io::net::Net`], so it runs in
//! turmoil and on real loopback sockets (`hmsim serve`).
//!
//! ## Module map
//! - [`imp`]: fake IM&P node (XMPP c2s, routing, offline storage, carbons).
//! - [`jabber`]: the Jabber client model used by workloads.
//! - [`kms`]: fake Key Management Service core.
//! - [`observe`]: how client models report to the simulation's observer.

pub mod imp;
pub mod jabber;
pub mod kms;
pub mod observe;
