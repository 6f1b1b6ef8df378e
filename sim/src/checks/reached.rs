//! The `reached` check: "sometimes" assertions, each listed coverage point was hit at least once.

use crate::checks::{Check, Entry, Verdict, boxed};
use crate::history::History;
use crate::scenario::Scenario;
use reports::Status;

/// The `reached` check: coverage points that must each be hit at least once.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(transparent)]
pub struct Reached {
    /// The coverage points.
    pub points: Vec<String>,
}

/// How the registry reads it.
pub const ENTRY: Entry = Entry {
    name: "reached",
    bare: false,
    read: boxed::<Reached>,
};

impl Check for Reached {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn judge(&self, s: &Scenario, h: &History) -> Verdict {
        let _ = s;
        reached(h, &self.points)
    }
    fn validate(&self, _s: &Scenario, at: &str) -> Vec<crate::plan::validate::Problem> {
        if self.points.is_empty() {
            return vec![crate::plan::validate::unsupported(
                at,
                "the `reached` check",
            )];
        }
        Vec::new()
    }
}

/// "Sometimes" assertions: every listed coverage point was hit at least once.
fn reached(out: &History, points: &[String]) -> (Status, String) {
    let cov = out.observer.coverage();
    let count = |p: &String| cov.get(p).copied().unwrap_or(0);
    let counts: Vec<String> = points
        .iter()
        .map(|p| format!("{p}: {}", count(p)))
        .collect();
    let never: Vec<&str> = points
        .iter()
        .filter(|p| count(p) == 0)
        .map(String::as_str)
        .collect();
    if never.is_empty() {
        (Status::Pass, counts.join(", "))
    } else {
        (
            Status::Fail,
            format!(
                "never reached: {} ({})",
                never.join(", "),
                counts.join(", ")
            ),
        )
    }
}
