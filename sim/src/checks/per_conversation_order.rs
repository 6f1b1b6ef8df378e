//! The `per_conversation_order` check: messages of a conversation reach each device in send
//! order (offline replay excepted, spec 48).

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
    if t.reordered.is_empty() {
        (
            Status::Pass,
            format!(
                "{} messages, all in send order per conversation and device",
                t.delivered
            ),
        )
    } else {
        (
            Status::Fail,
            format!(
                "{} out of order (e.g. {})",
                t.reordered.len(),
                examples(&t.reordered)
            ),
        )
    }
}
