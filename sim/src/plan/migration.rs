//! Which faults make sessions move between two IM&P nodes of a PRG pair: read by validation
//! (a `migration` check needs one) and by the `migration` check (it times the moves from it).

use crate::scenario::{Fault, Scenario};
use std::time::Duration;

/// Faults that make sessions move `from → to`, in time order: `from` failing (crash, PRG
/// failover) or the PRG giving `to` its users back (`imp_fallback` of `to`, or the end of a
/// crash of `to` for an automatic fallback), as [`Trigger`]s.
pub fn triggers(s: &Scenario, from: &str, to: &str) -> Vec<Trigger> {
    let mut v = Vec::new();
    let crashed = |f: &Fault, n: &str| f.crash.as_ref().is_some_and(|h| h.0.iter().any(|x| x == n));
    for f in &s.faults {
        if crashed(f, from) {
            v.push(Trigger::new(f.at.0, format!("crash of {from}"), from));
        }
        if f.imp_failover.as_ref().is_some_and(|x| x.node == from) {
            v.push(Trigger::new(
                f.at.0,
                format!("imp_failover of {from}"),
                from,
            ));
        }
        if f.imp_fallback.as_ref().is_some_and(|x| x.node == to) {
            v.push(Trigger::new(f.at.0, format!("imp_fallback to {to}"), to));
        }
        if crashed(f, to)
            && let Some(d) = f.for_
        {
            v.push(Trigger::new(f.at.0 + d.0, format!("restart of {to}"), to));
        }
    }
    v.sort_by(|a, b| (a.at, &a.what).cmp(&(b.at, &b.what)));
    v
}

/// A fault that moves sessions between a PRG pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// When.
    pub at: Duration,
    /// What, e.g. "crash of imp-a-1".
    pub what: String,
    /// Whose users it hands over: the failed node's for a failure, the node falling back's
    /// for a fallback.
    pub users_of: String,
}

impl Trigger {
    fn new(at: Duration, what: String, users_of: &str) -> Self {
        Self {
            at,
            what,
            users_of: users_of.to_string(),
        }
    }
}
