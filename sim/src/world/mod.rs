//! Stage 3, the world: the plan turned into turmoil hosts, and explicit handles on what runs
//! inside them. The only module that calls `sim.host`.
//!
//! - [`imp`]: the IM&P nodes (router, c2s, component and AXL services).
//! - [`jabber`]: the Jabber client farms.
//! - [`hybrid`]: the Webex cloud and its KMS, the Expressway nodes running the real connector,
//!   the Webex App client farms.
//!
//! Hosts never read the handles: they are for sampling (read-only) and for the few faults
//! that act through a service, as an administrator would ([`crate::inject`]). Handles live in
//! the [`World`] of one run, so nothing carries over from one run to the next.

pub mod hybrid;
pub mod imp;
pub mod jabber;

use crate::history::observer::Observer;
use crate::plan::Plan;
use crate::plan::faults::BaseLatency;
use crate::scenario::Scenario;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

/// Simulated wall-clock start of every run: 2026-01-01T00:00:00Z, fixed so timestamps (delay
/// stamps, logs) are identical run to run (turmoil defaults to the real clock).
pub const EPOCH_SECS: u64 = 1_767_225_600;
/// turmoil's per-stream segment limit and listen backlog.
pub const TCP_CAPACITY: usize = 65_536;

/// One run's simulation and the handles on its hosts.
pub struct World<'a> {
    /// The turmoil simulation.
    pub sim: turmoil::Sim<'a>,
    /// The history every host records into.
    pub observer: Rc<Observer>,
    /// The IM&P nodes and their AXL services.
    pub imp: imp::ImpHandles,
    /// The cloud, the KMS and the connectors.
    pub hybrid: hybrid::HybridHandles,
}

impl<'a> World<'a> {
    /// Builds every host of the scenario from its plan. Host order is fixed (IM&P nodes, Jabber
    /// farms, KMS, cloud, Expressway nodes, Webex farms): turmoil runs hosts in that order.
    pub fn build(s: &Scenario, plan: &Plan, observer: Rc<Observer>) -> Self {
        let mut sim = simulation(s, plan);
        let imp = imp::add_hosts(&mut sim, s, plan);
        jabber::add_farms(&mut sim, s, plan, &observer);
        let hybrid = hybrid::add_hosts(&mut sim, s, plan, observer.clone());
        Self {
            sim,
            observer,
            imp,
            hybrid,
        }
    }
}

fn simulation<'a>(s: &Scenario, plan: &Plan) -> turmoil::Sim<'a> {
    let (rngs, BaseLatency(base)) = (&plan.rngs, plan.base);
    turmoil::Builder::new()
        .rng_seed(rngs.sub_seed("turmoil"))
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
        .tick_duration(s.tick.0)
        // The runner enforces its own bound (duration + drain) and reports what it waited for;
        // turmoil's must never fire first.
        .simulation_duration(s.duration.0 + s.drain.0 + Duration::from_secs(3600))
        .min_message_latency(base)
        .max_message_latency(base)
        .tcp_capacity(TCP_CAPACITY)
        .ephemeral_ports(1024..=65535)
        .build()
}
