//! The `no_message_loss` check: every message the oracle says must arrive arrived, exactly once
//! per device; nothing arrived that nobody sent.

use crate::checks::{Check, Entry, Verdict, boxed, examples};
use crate::history::History;
use crate::oracle::tally::{Tally, tally};
use crate::scenario::Scenario;
use reports::Status;

/// The `no_message_loss` check (no parameters).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoMessageLoss {}

/// How the registry reads it.
pub const ENTRY: Entry = Entry {
    name: "no_message_loss",
    bare: true,
    read: boxed::<NoMessageLoss>,
};

impl Check for NoMessageLoss {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn judge(&self, s: &Scenario, h: &History) -> Verdict {
        no_message_loss(&tally(s, h), h)
    }
}

/// The verdict on a tally: no loss, no duplicate, no phantom, and something was sent.
pub fn no_message_loss(t: &Tally, out: &History) -> (Status, String) {
    let mut phantom = out.observer.phantom();
    phantom.extend(
        out.observer
            .reused_ids()
            .into_iter()
            .map(|id| format!("{id} (id sent twice)")),
    );
    if t.sent == 0 {
        return (
            Status::Fail,
            "no message was sent: the check exercised nothing".into(),
        );
    }
    let altered = out.observer.altered();
    if t.lost.is_empty() && t.duplicated.is_empty() && phantom.is_empty() && altered.is_empty() {
        return (
            Status::Pass,
            format!(
                "{} sent, {} delivered, 0 lost, 0 duplicated ({} at risk during faults not delivered, {} discarded with offline storage off{})",
                t.sent,
                t.delivered,
                t.lost_at_risk,
                t.discarded,
                held_unsent(t)
            ),
        );
    }
    let mut parts = Vec::new();
    if !t.lost.is_empty() {
        parts.push(format!(
            "{} lost (e.g. {})",
            t.lost.len(),
            examples(&t.lost)
        ));
    }
    if !t.duplicated.is_empty() {
        parts.push(format!(
            "{} duplicated (e.g. {})",
            t.duplicated.len(),
            examples(&t.duplicated)
        ));
    }
    if !phantom.is_empty() {
        parts.push(format!(
            "{} delivered but never sent (e.g. {})",
            phantom.len(),
            examples(&phantom)
        ));
    }
    if !altered.is_empty() {
        parts.push(format!(
            "{} delivered with a text not byte-identical to the one sent (e.g. {})",
            altered.len(),
            examples(&altered)
        ));
    }
    (
        Status::Fail,
        format!(
            "{} of {} sent: {}{}",
            parts.len(),
            t.sent,
            parts.join("; "),
            held_unsent(t)
        ),
    )
}

/// The messages held unsent by a client whose host went down, shown apart: never at the
/// cloud, so not the bridge's loss, but never hidden in a pass either.
fn held_unsent(t: &Tally) -> String {
    match t.held_unsent.len() {
        0 => String::new(),
        n => format!(
            ", {n} held unsent by a Webex App when its host went down (the cloud answered every attempt with an error: never reached the bridge; e.g. {})",
            examples(&t.held_unsent)
        ),
    }
}
