//! The `liveness` check: every device that was ever up is up at the end and came back within
//! a bound of the last fault ending; so is every connector session that was ever open.

use crate::checks::{Check, Entry, Verdict, boxed, examples};
use crate::history::History;
use crate::scenario::Dur;
use crate::scenario::Scenario;
use reports::Status;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The `liveness` check: its bound.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Liveness {
    /// How long after the last fault ends every client must be connected again.
    pub within: Dur,
}

/// How the registry reads it.
pub const ENTRY: Entry = Entry {
    name: "liveness",
    bare: false,
    read: boxed::<Liveness>,
};

impl Check for Liveness {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn judge(&self, s: &Scenario, h: &History) -> Verdict {
        liveness(s, h, self.within.0)
    }
}

/// Every device that was ever up is up at the end, and came back within `within` of the last
/// fault ending; so is every connector session that was ever open (connector liveness).
fn liveness(s: &Scenario, out: &History, within: Duration) -> (Status, String) {
    let last_fault_end = s
        .faults
        .iter()
        .map(|f| crate::plan::faults::window(f).1)
        .max()
        .unwrap_or_default();
    let bound = last_fault_end + within;
    let (status, detail) = devices_liveness(out, within, bound);
    match crate::checks::migration::connector_liveness(out, last_fault_end, bound) {
        None => (status, detail),
        Some(Ok(c)) => (status, format!("{detail}; {c}")),
        Some(Err(c)) if status == Status::Pass => (Status::Fail, c),
        Some(Err(c)) => (status, format!("{detail}; {c}")),
    }
}

/// The Jabber half of [`liveness`]: devices up at the end, none logging in after `bound`.
fn devices_liveness(out: &History, within: Duration, bound: Duration) -> (Status, String) {
    let down = out.observer.devices_down();
    if !down.is_empty() {
        let names: Vec<String> = down.iter().map(|(u, d)| format!("{u}/{d}")).collect();
        return (
            Status::Fail,
            format!(
                "{} devices not logged in at the end (e.g. {})",
                down.len(),
                examples(&names)
            ),
        );
    }
    let late: Vec<String> = out
        .observer
        .sessions()
        .iter()
        .filter(|e| e.up && e.at > bound)
        .map(|e| format!("{}/{} at {:.0}s", e.user, e.device, e.at.as_secs_f64()))
        .collect();
    if late.is_empty() {
        (
            Status::Pass,
            format!(
                "all {} devices logged in; recovered within {} of the last fault",
                out.observer.devices_up(),
                crate::scenario::units::format_duration(within)
            ),
        )
    } else {
        (
            Status::Fail,
            format!(
                "{} logins after the bound {:.0}s (e.g. {})",
                late.len(),
                bound.as_secs_f64(),
                examples(&late)
            ),
        )
    }
}
