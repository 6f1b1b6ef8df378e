//! Which faults make sessions move between two IM&P nodes of a PRG pair: read by validation
//! (a `migration` check needs one) and by the `migration` check (it times the moves from it).

use crate::scenario::{Fault, Scenario};
use std::time::Duration;

/// Faults that make sessions move `from → to`, in time order: `from` failing (crash, PRG
/// failover) or the PRG giving `to` its users back (`imp_fallback` of `to`, or the end of a
/// crash of `to` for an automatic fallback). As (time, description).
pub fn triggers(s: &Scenario, from: &str, to: &str) -> Vec<(Duration, String)> {
    let mut v = Vec::new();
    let crashed = |f: &Fault, n: &str| f.crash.as_ref().is_some_and(|h| h.0.iter().any(|x| x == n));
    for f in &s.faults {
        if crashed(f, from) {
            v.push((f.at.0, format!("crash of {from}")));
        }
        if f.imp_failover.as_ref().is_some_and(|x| x.node == from) {
            v.push((f.at.0, format!("imp_failover of {from}")));
        }
        if f.imp_fallback.as_ref().is_some_and(|x| x.node == to) {
            v.push((f.at.0, format!("imp_fallback to {to}")));
        }
        if crashed(f, to)
            && let Some(d) = f.for_
        {
            v.push((f.at.0 + d.0, format!("restart of {to}")));
        }
    }
    v.sort();
    v
}
