//! The `presence` check: Webex presence as Jabber contacts see it (spec 50-55).
//!
//! Subjects are Hybrid Message users who use only the Webex App: their composed IM&P presence
//! is exactly the device presence their connector session publishes. Two judgements:
//! - **final**: after the run, every Jabber contact's last view of each subject equals
//!   `translate(subject's Webex state at the end)` (the scenario leaves the last poll time to
//!   settle: states must be stable for the last 20 minutes);
//! - **rows**: each row of spec 52 was produced and observed by some contact during the run:
//!   Available (active ≤ 10 min), Away (10 min–72 h), out of office → Away, DND, hidden →
//!   Away with the session kept, and, in runs longer than 72 h, Offline (session destroyed).

use crate::checks::{Check, Entry, Needs, Verdict, boxed};
use crate::history::History;
use crate::plan::topology::UserSpec;
use crate::scenario::Scenario;
use connector::core::presence::{self, JabberPresence};
use reports::{Status, Table};
use std::collections::BTreeMap;
use std::time::Duration;

/// A row of spec 52.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Row {
    Available,
    Away,
    OutOfOffice,
    Dnd,
    Hidden,
    Offline,
}

impl Row {
    fn label(self) -> &'static str {
        match self {
            Row::Available => "active ≤ 10 min → Available @ Webex",
            Row::Away => "active 10 min–72 h → Away @ Webex",
            Row::OutOfOffice => "out of office → Away @ Webex",
            Row::Dnd => "DND → Do Not Disturb",
            Row::Hidden => "hidden → Away, session kept",
            Row::Offline => "inactive > 72 h → Offline, session destroyed",
        }
    }
}

fn shown(p: JabberPresence) -> (bool, Option<&'static str>) {
    (p != JabberPresence::Offline, p.show())
}

/// Evaluates the check and builds its table.
pub fn check(out: &History) -> ((Status, String), Table) {
    let subjects: BTreeMap<&str, &UserSpec> = out
        .users
        .iter()
        .filter(|u| u.hybrid && u.webex && !u.jabber)
        .map(|u| (u.jid.as_str(), u))
        .collect();
    let mut problems = Vec::new();
    let mut rows: BTreeMap<Row, u64> = BTreeMap::new();
    let observed_subjects = final_views(out, &subjects, &mut rows, &mut problems);
    rows_seen(out, &subjects, &mut rows);
    (
        verdict(out.elapsed, &rows, observed_subjects, &problems),
        table(&rows),
    )
}

/// Judges every contact's final view of each subject against the translation of the
/// subject's final Webex state; counts the Offline rows. Returns the subjects observed.
fn final_views(
    out: &History,
    subjects: &BTreeMap<&str, &UserSpec>,
    rows: &mut BTreeMap<Row, u64>,
    problems: &mut Vec<String>,
) -> usize {
    let end = out.elapsed;
    let seen = out.observer.seen_presences();
    let mut observed_subjects = 0;
    for (jid, u) in subjects {
        let state = out.webex_presence.get(*jid).copied().unwrap_or_default();
        let want = presence::translate(&state, end);
        let views: Vec<_> = seen
            .iter()
            .filter(|((_, _, c), _)| c == jid)
            .map(|(_, e)| e)
            .collect();
        if views.is_empty() {
            continue;
        }
        observed_subjects += 1;
        for v in views {
            let got = (v.available, v.show.as_deref());
            if got != shown(want) {
                problems.push(format!("{} sees {jid} as {got:?}, want {want:?}", v.user));
            }
        }
        if want == JabberPresence::Offline {
            *rows.entry(Row::Offline).or_default() += 1;
        }
        if u.hidden
            && out
                .bridge
                .get(crate::oracle::interop::session_key(u).unwrap_or(*jid))
                .is_some_and(|ev| ev.iter().skip(1).any(|(_, up)| !*up))
        {
            problems.push(format!("{jid} is hidden but its session was destroyed"));
        }
    }
    observed_subjects
}

/// Counts the rows of spec 52 seen during the run.
fn rows_seen(out: &History, subjects: &BTreeMap<&str, &UserSpec>, rows: &mut BTreeMap<Row, u64>) {
    // Rows seen during the run: any Hybrid Message Webex user counts, since an event from the
    // `hm-webex` resource is the connector's device presence whatever other devices exist.
    let webex_users: BTreeMap<&str, &UserSpec> = out
        .users
        .iter()
        .filter(|u| u.hybrid && u.webex)
        .map(|u| (u.jid.as_str(), u))
        .collect();
    for (at, ev) in out.observer.webex_presence_log() {
        let subject = ev.from.split('/').next().unwrap_or_default();
        let Some(u) = webex_users.get(subject) else {
            continue;
        };
        let row = match (ev.available, ev.show.as_deref()) {
            (true, None) => Row::Available,
            (true, Some("dnd")) if u.dnd => Row::Dnd,
            (true, Some("away")) if u.hidden => Row::Hidden,
            (true, Some("away")) if u.ooo => Row::OutOfOffice,
            (true, Some("away")) => Row::Away,
            // The session went away: a Webex-only user's presence goes unavailable.
            (false, _)
                if !u.hidden && subjects.contains_key(subject) && at > presence::ACTIVE_WINDOW =>
            {
                Row::Offline
            }
            _ => continue,
        };
        *rows.entry(row).or_default() += 1;
    }
}

/// The table of rows observed.
fn table(rows: &BTreeMap<Row, u64>) -> Table {
    Table {
        title: "Presence translation (spec 52)".into(),
        columns: vec!["row".into(), "observations".into()],
        rows: [
            Row::Available,
            Row::Away,
            Row::OutOfOffice,
            Row::Dnd,
            Row::Hidden,
            Row::Offline,
        ]
        .iter()
        .map(|r| {
            vec![
                r.label().to_string(),
                rows.get(r).copied().unwrap_or(0).to_string(),
            ]
        })
        .collect(),
    }
}

/// The verdict: every view right, every row observed.
fn verdict(
    end: Duration,
    rows: &BTreeMap<Row, u64>,
    observed_subjects: usize,
    problems: &[String],
) -> (Status, String) {
    let long_run = end > presence::ACTIVE_WINDOW;
    let wanted = [
        Row::Available,
        Row::Away,
        Row::OutOfOffice,
        Row::Dnd,
        Row::Hidden,
    ]
    .into_iter()
    .chain(long_run.then_some(Row::Offline));
    let missing: Vec<&str> = wanted
        .filter(|r| !rows.contains_key(r))
        .map(Row::label)
        .collect();
    if observed_subjects == 0 {
        (
            Status::Fail,
            "no Jabber contact saw any Webex-only Hybrid Message user".into(),
        )
    } else if !problems.is_empty() {
        (
            Status::Fail,
            format!(
                "{} wrong views (e.g. {})",
                problems.len(),
                problems
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )
    } else if !missing.is_empty() {
        (
            Status::Fail,
            format!("rows never observed: {}", missing.join(", ")),
        )
    } else {
        (
            Status::Pass,
            format!(
                "{observed_subjects} users' final presence as spec 52 for every contact; all rows observed"
            ),
        )
    }
}

/// The `presence` check (no parameters).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Presence {}

/// How the registry reads it.
pub const ENTRY: Entry = Entry {
    name: "presence",
    bare: true,
    read: boxed::<Presence>,
};

impl Check for Presence {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn needs(&self) -> Needs {
        Needs::CONNECTOR
    }
    fn judge(&self, _s: &Scenario, h: &History) -> Verdict {
        check(h).0
    }
    fn tables(&self, _s: &Scenario, h: &History) -> Vec<Table> {
        vec![check(h).1]
    }
}
