//! # fakes — the world around the connector
//!
//! Each fake is a sans-IO core plus a driver over [`connector::io::net::Net`], so it runs in
//! turmoil and on real loopback sockets (`hmsim serve`).
//!
//! ## Module map
//! - [`cloud`]: fake Webex cloud (identity, Control Hub, assignment, messaging, presence, KMS
//!   relay) and its HTTP/1.1 + WebSocket driver.
//! - [`imp`]: fake IM&P node (XMPP c2s, routing, offline storage, carbons).
//! - [`jabber`]: the Jabber client model used by workloads.
//! - [`kms`]: fake Key Management Service core.
//! - [`kms_http`]: the KMS as its own host (`kms`, or `hds`): HTTP routes, driver, client.
//! - [`webex`]: the Webex App client model (REST + event WebSocket, seeded actions).
//! - [`observe`]: how client models report to the simulation's observer.

pub mod cloud;
pub mod imp;
pub mod jabber;
pub mod kms;
pub mod kms_http;
pub mod observe;
pub mod webex;
