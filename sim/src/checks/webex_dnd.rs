//! The `webex_dnd` check (spec 54): Webex Do Not Disturb is user level in Jabber. While a
//! user's Webex DND lasts, every Jabber contact sees them as Do Not Disturb, whatever their
//! Jabber devices publish meanwhile, manual or device presence: "This status persists in both
//! clients until the period expires in Webex App, or until the user changes it in Webex App. A
//! user who is using both clients cannot reset their Do Not Disturb status by changing their
//! presence in Jabber" (the deployment guide, presence table).
//!
//! Subjects: Hybrid Message users of both clients with DND set in Webex and still in force at
//! the end (the cloud's facts). Judged on each contact's final view; exercised only if some
//! subject's Jabber device published a presence after the connector's first poll could have
//! shown the DND (so that Jabber had the chance to override it).

use crate::checks::{Check, Entry, Needs, Verdict, boxed, examples};
use crate::history::History;
use crate::scenario::Scenario;
use connector::core::presence::POLL_INTERVAL;
use reports::Status;
use std::collections::BTreeSet;

/// The `webex_dnd` check (no parameters).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebexDnd {}

/// How the registry reads it.
pub const ENTRY: Entry = Entry {
    name: "webex_dnd",
    bare: true,
    read: boxed::<WebexDnd>,
};

impl Check for WebexDnd {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn needs(&self) -> Needs {
        Needs::CONNECTOR
    }
    fn judge(&self, _s: &Scenario, h: &History) -> Verdict {
        webex_dnd(h)
    }
}

/// Judges every contact's final view of every subject.
pub fn webex_dnd(out: &History) -> (Status, String) {
    let end = out.elapsed;
    let subjects: BTreeSet<&str> = out
        .users
        .iter()
        .filter(|u| u.hybrid && u.jabber && u.webex && u.dnd)
        .filter(|u| {
            out.webex_presence
                .get(&u.jid)
                .and_then(|p| p.dnd_until)
                .is_some_and(|until| until > end)
        })
        .map(|u| u.jid.as_str())
        .collect();
    // Jabber presence published by a subject after DND had time to show (login, first poll).
    let challenged: BTreeSet<String> = out
        .observer
        .published_presences()
        .into_iter()
        .filter(|(at, e)| *at > POLL_INTERVAL && subjects.contains(e.user.as_str()))
        .map(|(_, e)| e.user)
        .collect();
    let (mut views, mut wrong) = (0usize, Vec::new());
    out.observer.with_seen_presences(|seen| {
        for ((viewer, device, contact), e) in seen.iter() {
            if !subjects.contains(contact) {
                continue;
            }
            views += 1;
            if !(e.available && e.show.as_deref() == Some("dnd")) {
                let show =
                    e.show
                        .as_deref()
                        .unwrap_or(if e.available { "available" } else { "offline" });
                wrong.push(format!("{viewer}/{device} sees {contact} as {show}"));
            }
        }
    });
    if !wrong.is_empty() {
        return (
            Status::Fail,
            format!(
                "{} of {views} final views of users in Webex DND are not Do Not Disturb (e.g. {})",
                wrong.len(),
                examples(&wrong)
            ),
        );
    }
    if views == 0 || challenged.is_empty() {
        return (
            Status::Fail,
            format!(
                "not exercised: {} users in Webex DND at the end, {views} contact views, {} of them changed presence in Jabber",
                subjects.len(),
                challenged.len()
            ),
        );
    }
    (
        Status::Pass,
        format!(
            "{} users in Webex DND shown Do Not Disturb in all {views} contact views; {} of them changed presence in Jabber meanwhile",
            subjects.len(),
            challenged.len()
        ),
    )
}
