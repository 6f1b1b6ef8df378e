//! The `per_conversation_order` check: messages of a conversation reach each device in send
//! order (offline replay excepted, spec 48). A message that crossed the bridge and arrived
//! behind later ones because a hold or partition of a link on its way kept it (the IM&P router
//! link between the two home nodes, or a connector node's link to the cloud) is counted apart
//! and shown, not failed: the guide says the service is not robust to such outages (spec 64;
//! `crate::oracle::cuts`).

use crate::checks::{Check, Entry, Verdict, boxed, examples};
use crate::history::History;
use crate::oracle::tally::{Tally, tally};
use crate::scenario::Scenario;
use reports::Status;

/// The `per_conversation_order` check (no parameters).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerConversationOrder {}

/// How the registry reads it.
pub const ENTRY: Entry = Entry {
    name: "per_conversation_order",
    bare: true,
    read: boxed::<PerConversationOrder>,
};

impl Check for PerConversationOrder {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn judge(&self, s: &Scenario, h: &History) -> Verdict {
        order(&tally(s, h))
    }
}

fn order(t: &Tally) -> (Status, String) {
    let across = if t.reordered_across_cuts.is_empty() {
        String::new()
    } else {
        format!(
            "; {} crossed the bridge behind later messages, held on a link the faults cut, \
             excused (spec 64: not robust to uncontrolled outages; e.g. {})",
            t.reordered_across_cuts.len(),
            examples(&t.reordered_across_cuts)
        )
    };
    if t.reordered.is_empty() {
        let all = if across.is_empty() {
            "all in send order per conversation and device"
        } else {
            "in send order per conversation and device"
        };
        (
            Status::Pass,
            format!("{} messages, {all}{across}", t.delivered),
        )
    } else {
        (
            Status::Fail,
            format!(
                "{} out of order (e.g. {}){across}",
                t.reordered.len(),
                examples(&t.reordered)
            ),
        )
    }
}
