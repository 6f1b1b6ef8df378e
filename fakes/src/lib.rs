//! # fakes — the world around the connector
//!
//! Each fake is a sans-IO core plus a driver over [`connector::io::net::Net`], so it runs in
//! turmoil and on real loopback sockets (`hmsim serve`).
//!
//! ## Module map
//! - [`accept`]: the accept loop every fake server uses: survives accept errors (out of file
//!   descriptors), logs them, backs off.
//! - [`body`]: reading an HTTP request body, bounded in bytes and time.
//! - [`brake`]: per-source delays on failed authentications (password guessing).
//! - [`clients`]: the client models the workloads run: [`clients::jabber`] (a Jabber device)
//!   and [`clients::webex`] (a Webex App user), each a sans-IO core and a driver task.
//! - [`cloud`]: fake Webex cloud (identity, Control Hub, assignment, messaging, presence, KMS
//!   relay) and its HTTP/1.1 + WebSocket driver.
//! - [`config`]: range-checked numbers of the serve configs.
//! - [`imp`]: fake IM&P node (XMPP c2s, routing, offline storage, carbons, component port,
//!   AXL, `hmsim serve imp`).
//! - [`kms`]: fake Key Management Service: the key store, the host's routes (sans-IO) and its
//!   HTTP driver and client.
//! - [`observe`]: how client models report to the simulation's observer.
//! - [`read`]: one read from a stream without a buffer kept between reads.
//! - [`rest`]: the REST request/response types the cloud and the KMS host share.

pub mod accept;
pub mod body;
pub mod brake;
pub mod clients;
pub mod cloud;
pub mod config;
pub mod imp;
pub mod kms;
pub mod read;
pub mod rest;

pub mod observe;

use rand::RngExt as _;
use std::time::Duration;

/// When a client's first workload action happens: an exponential wait (the workload's mean
/// interval) after its `start`, so that every client's actions form a Poisson process from
/// `start` on and the population's rate is steady from the first second. Starting every
/// client at `start` itself would fire one action per user in the same instant (15,000 at
/// once on a Large node), a burst no real population produces.
pub fn first_action_at(
    start: Duration,
    mean_interval: Duration,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Duration {
    start + exp_wait(mean_interval, rng)
}

/// An exponential wait with mean `mean` (`-ln(U) × mean`): the gap between a Poisson
/// process's events, which is how every client model spaces its actions.
pub fn exp_wait(mean: Duration, rng: &mut rand_chacha::ChaCha8Rng) -> Duration {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    mean.mul_f64(-u.ln())
}
