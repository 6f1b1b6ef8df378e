//! Stage 4, injection: one [`apply`] for every action of the fault timeline, whatever it acts
//! on: turmoil's network and hosts (crash, partition, latency, ...), an IM&P node core (a PRG
//! failover or fallback, the administrator's action), or a service (cloud, KMS, connector, AXL,
//! Control Hub).
//!
//! Adding a fault: its schema field (`scenario::schema::Fault`), its actions in
//! `plan::faults::timeline`, and its arm here.

use crate::plan::faults::{Action, Service};
use crate::world::World;
use crate::world::hybrid::admin;
use connector::proto::http::Method;
use fakes::cloud::http::CLOUD_HOST;
use serde_json::{Value, json};
use std::time::Duration;

/// Applies one action to the world at `now`.
pub fn apply(world: &mut World<'_>, action: &Action, now: Duration) {
    match action {
        Action::ImpFailover(host) => prg(world, host, true, now),
        Action::ImpFallback(host) => prg(world, host, false, now),
        Action::Service(svc) => service(world, svc, now),
        _ => network(&mut world.sim, action),
    }
    // A client farm's devices do not survive a restart: the restarted farm logs in with new
    // resources, so the old ones are recorded down.
    if let Action::Crash(hosts) | Action::Bounce(hosts) = action {
        for h in hosts.iter().filter(|h| is_client_farm(h)) {
            world.observer.host_down(now, h);
        }
    }
}

/// Client-farm hosts (their devices do not survive a restart: new resources log in).
fn is_client_farm(host: &str) -> bool {
    host.starts_with("jabber-") || host.starts_with("webex-")
}

/// The actions turmoil applies: hosts and links.
fn network(sim: &mut turmoil::Sim<'_>, action: &Action) {
    let pairs = |a: &Vec<String>, b: &Vec<String>| -> Vec<(String, String)> {
        a.iter()
            .flat_map(|x| b.iter().map(move |y| (x.clone(), y.clone())))
            .collect()
    };
    match action {
        Action::Crash(hs) => hs.iter().for_each(|h| sim.crash(h.as_str())),
        Action::Bounce(hs) => hs.iter().for_each(|h| sim.bounce(h.as_str())),
        Action::Partition(a, b) => pairs(a, b)
            .iter()
            .for_each(|(x, y)| sim.partition(x.as_str(), y.as_str())),
        Action::Repair(a, b) => pairs(a, b)
            .iter()
            .for_each(|(x, y)| sim.repair(x.as_str(), y.as_str())),
        Action::PartitionOneway(a, b) => pairs(a, b)
            .iter()
            .for_each(|(x, y)| sim.partition_oneway(x.as_str(), y.as_str())),
        Action::RepairOneway(a, b) => pairs(a, b)
            .iter()
            .for_each(|(x, y)| sim.repair_oneway(x.as_str(), y.as_str())),
        Action::Hold(a, b) => pairs(a, b)
            .iter()
            .for_each(|(x, y)| sim.hold(x.as_str(), y.as_str())),
        Action::Release(a, b) => pairs(a, b)
            .iter()
            .for_each(|(x, y)| sim.release(x.as_str(), y.as_str())),
        Action::Latency(a, b, d) => pairs(a, b)
            .iter()
            .for_each(|(x, y)| sim.set_link_latency(x.as_str(), y.as_str(), *d)),
        Action::Loss(a, b, r) => {
            for (x, y) in pairs(a, b) {
                sim.set_link_fail_rate(x.as_str(), y.as_str(), *r);
            }
        }
        // Applied through the node core or the service ([`apply`]).
        Action::ImpFailover(_) | Action::ImpFallback(_) | Action::Service(_) => {}
    }
}

/// Applies a PRG failover or fallback through the node core. A fault on a node whose host is down, or that the node refuses (no high
/// availability, nothing to fall back), is counted in coverage and otherwise ignored, as the
/// administration page would refuse it.
fn prg(world: &mut World<'_>, host: &str, failover: bool, now: Duration) {
    let node = world.imp.core(host);
    let done = match node {
        Some(n) if world.sim.is_host_running(host) => {
            let mut n = n.borrow_mut();
            if failover {
                n.prg_failover(now)
            } else {
                n.prg_fallback(now)
            }
        }
        _ => false,
    };
    if !done {
        let what = if failover { "failover" } else { "fallback" };
        world
            .observer
            .hit(&format!("prg: {what} refused by the node"));
    }
}

/// Applies a service fault (cloud, KMS, connector, AXL) through the service itself.
fn service(world: &mut World<'_>, svc: &Service, now: Duration) {
    let (sim, h) = (&mut world.sim, &world.hybrid);
    match svc {
        Service::CloudOutage(on) => {
            for other in h.hosts.iter().filter(|x| x.as_str() != CLOUD_HOST) {
                if *on {
                    sim.partition(CLOUD_HOST, other.as_str());
                } else {
                    sim.repair(CLOUD_HOST, other.as_str());
                }
            }
            // The cloud knows it was down: the connector nodes' claims settle.
            if let (false, Some(c)) = (*on, &h.cloud) {
                c.borrow_mut().outage_over(now);
            }
        }
        Service::KmsOutage(on) => {
            if let Some(k) = &h.kms {
                k.borrow_mut().set_outage(*on);
            }
        }
        Service::HttpErrors(rate, status) => {
            if let (Some(c), Some(r)) = (&h.cloud, &h.rngs) {
                c.borrow_mut()
                    .set_http_errors(*rate, *status, r.named("http-errors"));
            }
        }
        Service::ConnectorEnabled(node, on) => {
            if let Some(core) = h.connectors.get(node).and_then(|s| s.borrow().clone()) {
                core.borrow_mut().set_enabled(*on, now);
            }
        }
        Service::Maintenance(node, on) => {
            if let Some(c) = &h.cloud {
                let path = format!("/v1/admin/connectors/{node}/maintenance");
                admin(
                    &mut c.borrow_mut(),
                    now,
                    Method::Put,
                    &path,
                    json!({"on": on}),
                );
            }
        }
        Service::AxlStopped(node, stopped) => {
            world.imp.set_axl_stopped(node, *stopped);
        }
        Service::PrgHighAvailability(cluster, on) => {
            world.imp.set_prg_high_availability(cluster, *on);
        }
        Service::Reactivate => {
            if let Some(c) = &h.cloud {
                let mut c = c.borrow_mut();
                let errors: Vec<String> = c
                    .org()
                    .users()
                    .filter(|u| u.state == fakes::cloud::org::HmState::Error)
                    .map(|u| u.email.clone())
                    .collect();
                for email in errors {
                    let path = format!("/v1/admin/users/{email}/reactivate");
                    admin(&mut c, now, Method::Post, &path, Value::Null);
                }
            }
        }
    }
}
