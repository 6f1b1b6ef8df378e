//! The `per_conversation_order` check: messages of a conversation reach each device in send
//! order (offline replay excepted, spec 48). A message that crossed the bridge and arrived
//! behind later ones because a hold or partition of a link on its way kept it (the IM&P router
//! link between the two home nodes, or a connector node's link to the cloud) is counted apart
//! and shown, not failed: the guide says the service is not robust to such outages (spec 64;
//! `crate::oracle::cuts`). Offline replays that came out of sequence are allowed and shown
//! too.

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
    let replayed = if t.replayed_out_of_sequence.is_empty() {
        String::new()
    } else {
        format!(
            "; {} offline replays arrived behind later messages, allowed (spec 48: \"stored \
             messages are replayed in Webex but they may be out of sequence\"; e.g. {})",
            t.replayed_out_of_sequence.len(),
            examples(&t.replayed_out_of_sequence)
        )
    };
    let across = format!("{across}{replayed}");
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An allowed reorder still shows in the detail: a pass that excused something says what.
    #[test]
    fn an_offline_replay_out_of_sequence_passes_and_is_shown() {
        let t = Tally {
            delivered: 2,
            replayed_out_of_sequence: vec!["m1".into()],
            ..Tally::default()
        };
        let (status, detail) = order(&t);
        assert_eq!(status, Status::Pass);
        assert!(
            detail.contains("1 offline replays arrived behind later messages"),
            "{detail}"
        );
        assert!(detail.contains("m1"), "{detail}");
        assert!(!detail.contains("all in send order"), "{detail}");
        let clean = order(&Tally {
            delivered: 2,
            ..Tally::default()
        });
        assert_eq!(
            clean,
            (
                Status::Pass,
                "2 messages, all in send order per conversation and device".into()
            )
        );
    }
}
