//! The fault timeline: scenario faults turned into timed actions on the turmoil world.
//!
//! A fault with `for` becomes two actions, the fault and its undoing (crash → restart,
//! partition → repair, hold → release, latency/loss → restore). Actions are sorted by time,
//! then by scenario order, so the timeline is the same on every run.

use crate::scenario::{Fault, Hosts};
use std::time::Duration;

/// Base one-way latency of every link; faults restore it. Equal to the tick, so delivery is
/// deterministic and one tick late, as on turmoil's default zero-latency link.
#[derive(Debug, Clone, Copy)]
pub struct BaseLatency(pub Duration);

/// One thing to do to the world.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Stop hosts.
    Crash(Vec<String>),
    /// (Re)start hosts' software.
    Bounce(Vec<String>),
    /// Cut both directions between two groups.
    Partition(Vec<String>, Vec<String>),
    /// Restore both directions.
    Repair(Vec<String>, Vec<String>),
    /// Cut one direction.
    PartitionOneway(Vec<String>, Vec<String>),
    /// Restore one direction.
    RepairOneway(Vec<String>, Vec<String>),
    /// Hold messages between two groups.
    Hold(Vec<String>, Vec<String>),
    /// Release held messages.
    Release(Vec<String>, Vec<String>),
    /// Set link latency (restored to the base at the end).
    Latency(Vec<String>, Vec<String>, Duration),
    /// Set link loss rate (0 at the end).
    Loss(Vec<String>, Vec<String>, f64),
    /// Manual PRG failover of an IM&P node: applied by the runner through the node core
    /// ([`crate::inject`]), not by turmoil.
    ImpFailover(String),
    /// PRG fallback to an IM&P node, applied like [`Action::ImpFailover`].
    ImpFallback(String),
    /// A change to a service's own state (cloud, KMS, connector, AXL), applied by the runner
    /// through the service ([`crate::inject`]), like the administrator or a failure would.
    Service(Service),
}

/// Service-level faults.
#[derive(Debug, Clone, PartialEq)]
pub enum Service {
    /// The cloud is unreachable from every other host (on) or reachable again (off).
    CloudOutage(bool),
    /// The KMS fails every request (spec 56-60).
    KmsOutage(bool),
    /// The cloud answers this share of requests with `status` (0: off).
    HttpErrors(f64, u16),
    /// The message connector of an Expressway node is disabled (false) or enabled (spec 21).
    ConnectorEnabled(String, bool),
    /// Control Hub maintenance mode of a connector node (spec 29).
    Maintenance(String, bool),
    /// The AXL service of an IM&P node stops (true) or starts (spec 22).
    AxlStopped(String, bool),
    /// Control Hub "Reactivate User" for every user in Error (spec 25).
    Reactivate,
    /// The PRG high availability of every node of an IM&P cluster is switched on or off
    /// (spec 61): on the nodes and in AXL's `listProcessNode` at once; connectors see it only
    /// when they rediscover (restart).
    PrgHighAvailability(String, bool),
}

/// A timed action with a description for the record.
#[derive(Debug, Clone, PartialEq)]
pub struct Timed {
    /// When.
    pub at: Duration,
    /// Kind for the record (`crash`, `crash/end`, ...).
    pub kind: String,
    /// What.
    pub action: Action,
}

impl Timed {
    /// Human-readable targets.
    pub fn detail(&self) -> String {
        let j = |v: &Vec<String>| v.join(",");
        match &self.action {
            Action::Crash(h) | Action::Bounce(h) => j(h),
            Action::Partition(a, b)
            | Action::Repair(a, b)
            | Action::Hold(a, b)
            | Action::Release(a, b) => format!("{} <-> {}", j(a), j(b)),
            Action::PartitionOneway(a, b) | Action::RepairOneway(a, b) => {
                format!("{} -> {}", j(a), j(b))
            }
            Action::Latency(a, b, d) => format!("{} <-> {} {}ms", j(a), j(b), d.as_millis()),
            Action::Loss(a, b, r) => format!("{} <-> {} {:.1}%", j(a), j(b), r * 100.0),
            Action::ImpFailover(h) | Action::ImpFallback(h) => h.clone(),
            Action::Service(s) => format!("{s:?}"),
        }
    }
}

/// A fault's active window `[start, end)`; instantaneous faults have `end == start`.
pub fn window(f: &Fault) -> (Duration, Duration) {
    let start = f.at.0;
    (start, start + f.for_.map(|d| d.0).unwrap_or_default())
}

/// Whether a fault can swallow messages in flight: it breaks TCP streams (crash, partition,
/// cloud outage, ...) or delays them past what clients wait for. Service faults that keep every
/// stream up (`kms_outage`, `http_errors`, `maintenance_mode`, `axl_stop`) do not: requests
/// fail with a status the connector and clients retry with backoff, and maintenance moves
/// users gracefully, so a loss during them is a bug, not a risk. Administrative changes
/// (`reactivate`, `prg_high_availability`) touch no stream: a PRG setting only decides what a
/// later failure does, and that failure opens its own window.
pub fn breaks_streams(f: &Fault) -> bool {
    let keeps_streams = f.kms_outage.is_some()
        || f.http_errors.is_some()
        || f.maintenance_mode.is_some()
        || f.axl_stop.is_some()
        || f.reactivate.is_some()
        || f.prg_high_availability.is_some();
    !keeps_streams
}

/// Whether a fault stops a connector node abruptly, losing what it holds in memory: a crash or
/// bounce of its Expressway, the Expressway's own maintenance mode (the guide: "Cisco Webex does
/// not recognize the Expressway's own maintenance mode. If you take an Expressway out of service
/// in this way, it looks like an uncontrolled outage of that connector"), or a restart of the
/// connector. The guide: "The service is not robust to other uncontrolled outages, including
/// [...] Unexpected failure of an Expressway. Unexpected failure of Message Connector."
pub fn stops_connector(f: &Fault) -> bool {
    f.crash.as_ref().is_some_and(names_expressway)
        || f.bounce.as_ref().is_some_and(names_expressway)
        || f.expressway_maintenance.is_some()
        || f.connector_restart.is_some()
}

/// Whether a fault keeps connector nodes from passing on what they took: the KMS or the cloud
/// down or refusing, or a network fault on an Expressway's links. Messages then wait in the
/// node's memory for as long as the fault lasts.
pub fn holds_at_connector(f: &Fault) -> bool {
    let between = |b: &crate::scenario::Between| names_expressway(&b.a) || names_expressway(&b.b);
    f.kms_outage.is_some()
        || f.cloud_outage.is_some()
        || f.http_errors.is_some()
        || f.partition.as_ref().is_some_and(between)
        || f.hold.as_ref().is_some_and(between)
        || f.partition_oneway
            .as_ref()
            .is_some_and(|o| names_expressway(&o.from) || names_expressway(&o.to))
        || f.packet_loss
            .as_ref()
            .is_some_and(|p| names_expressway(&p.a) || names_expressway(&p.b))
        || f.link_latency
            .as_ref()
            .is_some_and(|l| names_expressway(&l.a) || names_expressway(&l.b))
}

fn names_expressway(h: &crate::scenario::Hosts) -> bool {
    h.0.iter().any(|h| h.starts_with("exp-"))
}

/// Builds the sorted action timeline. Only kinds validation lets through appear here.
pub fn timeline(faults: &[Fault], base: BaseLatency) -> Vec<Timed> {
    let mut out: Vec<(Duration, usize, Timed)> = Vec::new();
    for (i, f) in faults.iter().enumerate() {
        let (start, end) = window(f);
        let mut push = |at: Duration, kind: &str, action: Action| {
            // Sort key: time, then scenario order, a fault's start before its end.
            out.push((
                at,
                i * 2 + usize::from(at > start),
                Timed {
                    at,
                    kind: kind.into(),
                    action,
                },
            ));
        };
        let timed = f.for_.is_some();
        host_faults(f, (start, end, base), timed, &mut push);
        prg_faults(f, start, end, timed, &mut push);
        service_faults(f, start, end, timed, &mut push);
        link_loss(f, start, end, timed, &mut push);
    }
    out.sort_by_key(|(at, order, _)| (*at, *order));
    out.into_iter().map(|(_, _, t)| t).collect()
}

/// Host and link faults: crash, bounce, partitions, hold, latency.
fn host_faults(
    f: &Fault,
    (start, end, base): (Duration, Duration, BaseLatency),
    timed: bool,
    push: &mut impl FnMut(Duration, &str, Action),
) {
    let h = |x: &Hosts| x.0.clone();
    // A fault with its undoing at `end` when it has a duration (`<kind>/end`).
    let mut pair = |kind: &str, on: Action, off: Action| {
        push(start, kind, on);
        if timed {
            push(end, &format!("{kind}/end"), off);
        }
    };
    if let Some(x) = &f.crash {
        pair("crash", Action::Crash(h(x)), Action::Bounce(h(x)));
    }
    if let Some(p) = &f.partition {
        let (a, b) = (h(&p.a), h(&p.b));
        pair(
            "partition",
            Action::Partition(a.clone(), b.clone()),
            Action::Repair(a, b),
        );
    }
    if let Some(p) = &f.partition_oneway {
        let (a, b) = (h(&p.from), h(&p.to));
        let on = Action::PartitionOneway(a.clone(), b.clone());
        pair("partition_oneway", on, Action::RepairOneway(a, b));
    }
    if let Some(p) = &f.hold {
        let (a, b) = (h(&p.a), h(&p.b));
        pair(
            "hold",
            Action::Hold(a.clone(), b.clone()),
            Action::Release(a, b),
        );
    }
    if let Some(l) = &f.link_latency {
        let (a, b) = (h(&l.a), h(&l.b));
        let on = Action::Latency(a.clone(), b.clone(), l.latency.0);
        pair("link_latency", on, Action::Latency(a, b, base.0));
    }
    if let Some(x) = &f.bounce {
        push(start, "bounce", Action::Bounce(h(x)));
    }
}

/// PRG faults: a manual failover or fallback, or an automatic failover.
fn prg_faults(
    f: &Fault,
    start: Duration,
    end: Duration,
    timed: bool,
    push: &mut impl FnMut(Duration, &str, Action),
) {
    // A manual failover is the administrator's action on the node (with `for`: fallback at
    // the end); an automatic one is a crash of the node's host that its PRG peer detects
    // by heartbeat timeout (with `for`: the host restarts at the end).
    if let Some(fo) = &f.imp_failover {
        let node = vec![fo.node.clone()];
        match fo.mode {
            crate::scenario::FailoverMode::Manual => {
                push(start, "imp_failover", Action::ImpFailover(fo.node.clone()));
                if timed {
                    push(
                        end,
                        "imp_failover/end",
                        Action::ImpFallback(fo.node.clone()),
                    );
                }
            }
            crate::scenario::FailoverMode::Automatic => {
                push(start, "imp_failover", Action::Crash(node.clone()));
                if timed {
                    push(end, "imp_failover/end", Action::Bounce(node));
                }
            }
        }
    }
    if let Some(n) = &f.imp_fallback {
        push(start, "imp_fallback", Action::ImpFallback(n.node.clone()));
    }
}

/// Packet loss on links, 0 again at the end of `for`.
fn link_loss(
    f: &Fault,
    start: Duration,
    end: Duration,
    timed: bool,
    push: &mut impl FnMut(Duration, &str, Action),
) {
    let h = |x: &Hosts| x.0.clone();
    if let Some(l) = &f.packet_loss {
        push(
            start,
            "packet_loss",
            Action::Loss(h(&l.a), h(&l.b), l.rate.fraction()),
        );
        if timed {
            push(end, "packet_loss/end", Action::Loss(h(&l.a), h(&l.b), 0.0));
        }
    }
}

/// The faults on one node's or the organisation's settings: connector enable/disable and
/// restart, maintenance modes, AXL, reactivation, PRG high availability.
fn node_faults(
    f: &Fault,
    start: Duration,
    end: Duration,
    timed: bool,
    push: &mut impl FnMut(Duration, &str, Action),
) {
    let mut pair = |kind: &str, on: Service, off: Option<Service>| {
        push(start, kind, Action::Service(on));
        if let (true, Some(off)) = (timed, off) {
            push(end, &format!("{kind}/end"), Action::Service(off));
        }
    };
    if let Some(n) = &f.connector_disable {
        let on = Service::ConnectorEnabled(n.node.clone(), true);
        pair(
            "connector_disable",
            Service::ConnectorEnabled(n.node.clone(), false),
            Some(on),
        );
    }
    if let Some(n) = &f.connector_enable {
        pair(
            "connector_enable",
            Service::ConnectorEnabled(n.node.clone(), true),
            None,
        );
    }
    if let Some(n) = &f.maintenance_mode {
        let off = Service::Maintenance(n.node.clone(), false);
        pair(
            "maintenance_mode",
            Service::Maintenance(n.node.clone(), true),
            Some(off),
        );
    }
    if let Some(n) = &f.axl_stop {
        let off = Service::AxlStopped(n.node.clone(), false);
        pair(
            "axl_stop",
            Service::AxlStopped(n.node.clone(), true),
            Some(off),
        );
    }
    if f.reactivate.is_some() {
        pair("reactivate", Service::Reactivate, None);
    }
    if let Some(ha) = &f.prg_high_availability {
        let on = Service::PrgHighAvailability(ha.cluster.clone(), ha.enabled);
        pair("prg_high_availability", on, None);
    }
    expressway_faults(f, start, end, timed, push);
}

/// The Expressway's own host-level faults: a connector restart, the Expressway maintenance
/// mode.
fn expressway_faults(
    f: &Fault,
    start: Duration,
    end: Duration,
    timed: bool,
    push: &mut impl FnMut(Duration, &str, Action),
) {
    // A restart rediscovers (spec 22); the Expressway's own maintenance mode looks like an
    // outage to the cloud (spec 29): both are host-level.
    if let Some(n) = &f.connector_restart {
        push(
            start,
            "connector_restart",
            Action::Bounce(vec![n.node.clone()]),
        );
    }
    if let Some(n) = &f.expressway_maintenance {
        push(
            start,
            "expressway_maintenance",
            Action::Crash(vec![n.node.clone()]),
        );
        if timed {
            push(
                end,
                "expressway_maintenance/end",
                Action::Bounce(vec![n.node.clone()]),
            );
        }
    }
}

/// The service faults of one entry: each with its undoing at the end of `for`.
fn service_faults(
    f: &Fault,
    start: Duration,
    end: Duration,
    timed: bool,
    push: &mut impl FnMut(Duration, &str, Action),
) {
    let mut pair = |kind: &str, on: Service, off: Option<Service>| {
        push(start, kind, Action::Service(on));
        if let (true, Some(off)) = (timed, off) {
            push(end, &format!("{kind}/end"), Action::Service(off));
        }
    };
    if f.cloud_outage.is_some() {
        pair(
            "cloud_outage",
            Service::CloudOutage(true),
            Some(Service::CloudOutage(false)),
        );
    }
    if f.kms_outage.is_some() {
        pair(
            "kms_outage",
            Service::KmsOutage(true),
            Some(Service::KmsOutage(false)),
        );
    }
    if let Some(e) = &f.http_errors {
        pair(
            "http_errors",
            Service::HttpErrors(e.rate.fraction(), e.status),
            Some(Service::HttpErrors(0.0, e.status)),
        );
    }
    node_faults(f, start, end, timed, push);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `prg_high_availability` is one service action at its time, with no undoing, and opens
    /// no at-risk window (spec 61: the setting moves nobody by itself).
    #[test]
    fn prg_high_availability_is_one_service_action_that_keeps_streams() {
        let yaml = "name: t\nseed: 1\nduration: 10m\ntopology:\n  imp_clusters: [{ name: a, nodes: 2 }]\nusers: { count: 2 }\nfaults:\n  - { at: 5m, prg_high_availability: { cluster: a, enabled: true } }\n  - { at: 6m, crash: imp-a-1 }\n";
        let s = crate::parse("t.yaml", yaml).expect("valid");
        let t = timeline(&s.faults, BaseLatency(Duration::from_millis(10)));
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].at, Duration::from_secs(300));
        assert_eq!(t[0].kind, "prg_high_availability");
        assert_eq!(
            t[0].action,
            Action::Service(Service::PrgHighAvailability("a".into(), true))
        );
        assert!(!breaks_streams(&s.faults[0]));
        assert!(breaks_streams(&s.faults[1]));
    }
}
