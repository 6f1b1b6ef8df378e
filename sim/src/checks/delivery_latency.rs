//! The `delivery_latency` check: the p99 and the largest send-to-first-delivery latency stay
//! within bounds.

use crate::checks::{Check, Entry, Verdict, boxed};
use crate::history::History;
use crate::oracle::tally::{percentiles, tally};
use crate::scenario::{Dur, Scenario};
use reports::Status;
use serde::{Deserialize, Serialize};

/// The `delivery_latency` check: latency bounds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryLatency {
    /// Largest allowed 99th percentile.
    #[serde(default)]
    pub p99_max: Option<Dur>,
    /// Largest allowed single latency.
    #[serde(default)]
    pub max: Option<Dur>,
}

/// How the registry reads it.
pub const ENTRY: Entry = Entry {
    name: "delivery_latency",
    bare: false,
    read: boxed::<DeliveryLatency>,
};

impl Check for DeliveryLatency {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn judge(&self, s: &Scenario, h: &History) -> Verdict {
        let p = percentiles(&tally(s, h).latencies_ms);
        latency(self, p.p99, p.max)
    }
}

fn latency(b: &DeliveryLatency, p99_ms: f64, max_ms: f64) -> (Status, String) {
    let mut bad = Vec::new();
    if let Some(lim) = b.p99_max
        && p99_ms > lim.ms() as f64
    {
        bad.push(format!("p99 {p99_ms} ms > {} ms", lim.ms()));
    }
    if let Some(lim) = b.max
        && max_ms > lim.ms() as f64
    {
        bad.push(format!("max {max_ms} ms > {} ms", lim.ms()));
    }
    if bad.is_empty() {
        (Status::Pass, format!("p99 {p99_ms} ms, max {max_ms} ms"))
    } else {
        (Status::Fail, bad.join("; "))
    }
}
