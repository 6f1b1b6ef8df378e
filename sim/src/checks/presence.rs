//! The `presence` check: Webex presence as Jabber contacts see it (spec 50-55).
//!
//! Subjects are Hybrid Message users who use only the Webex App: their composed IM&P presence
//! is exactly the device presence their connector session publishes. The expectation is the
//! guide's table, written here from the guide and not taken from the connector
//! ([`expected`]), fed with the cloud's facts (DND, out of office, hidden, last Webex activity)
//! and the history's record of use ([`crate::oracle::activity`]). Three judgements:
//! - **final**: after the run, every Jabber contact's last view of each subject equals
//!   [`expected`] at the end (the scenario leaves the last poll time to settle: states must be
//!   stable for the last 20 minutes);
//! - **rows**: each row of spec 52 was produced and observed by some contact during the run:
//!   Available (active ≤ 10 min), Away (10 min–72 h), out of office → Away, DND, hidden →
//!   Away with the session kept, never uses Webex → Away "@ Webex" (spec 55: users of Jabber
//!   only still get Webex-derived presence and a session), and, in runs longer than 72 h,
//!   Offline (session destroyed);
//! - **poll** (spec 51): a subject going from Available to Away (10 minutes after their last
//!   Webex use) shows in Jabber at the connector's next poll: within 10 minutes and a tick,
//!   never before, and over many such changes, whose times are independent of the poll's
//!   phase, the delay is uniform on 0-10 min: its mean is 5 min within
//!   [`MEAN_SIGMAS`] standard errors (σ = 600 s / √12 ≈ 173 s per change, so ±69 s for 100
//!   changes), and at least [`POLL_CHANGES_MIN`] changes are needed to judge it.

use crate::checks::{Check, Entry, Needs, Verdict, boxed};
use crate::history::History;
use crate::history::observer::SeenPresences;
use crate::oracle::activity::{CLOSE_SLACK, Uses};
use crate::plan::topology::UserSpec;
use crate::scenario::Scenario;
use connector::core::presence::WebexPresence;
use fakes::observe::ClientKind;
use reports::{Status, Table};
use std::collections::BTreeMap;
use std::time::Duration;

/// Guide: "Active on Webex App within the last 10 minutes" ⇒ Available @ Webex.
const AVAILABLE_WITHIN: Duration = Duration::from_secs(10 * 60);
/// Guide: "not used Webex App or Jabber within the last 72 hours" ⇒ Offline.
const OFFLINE_AFTER: Duration = Duration::from_secs(72 * 3600);
/// Guide: "message connector polls Webex once every 10 minutes".
const POLL: Duration = Duration::from_secs(10 * 60);
/// Standard errors the mean poll delay may stray from 5 minutes: a false alarm about once in
/// 16,000 runs for a correct poller, while a poll period off by a fifth (4 or 6 minutes of
/// mean delay) fails with 100 changes.
pub const MEAN_SIGMAS: f64 = 4.0;
/// Fewest Available → Away changes that make the mean worth judging.
pub const POLL_CHANGES_MIN: usize = 30;

/// What a Jabber contact sees of a subject: available with a `<show>`, or unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    Available,
    Away,
    Dnd,
    Offline,
}

impl Shown {
    fn view(self) -> (bool, Option<&'static str>) {
        match self {
            Shown::Available => (true, None),
            Shown::Away => (true, Some("away")),
            Shown::Dnd => (true, Some("dnd")),
            Shown::Offline => (false, None),
        }
    }
}

/// The guide's table (spec 52-55) at `now`, for a user with the cloud's facts `p` whose last
/// use of either client was `last_use`.
fn expected(p: &WebexPresence, last_use: Duration, now: Duration) -> Shown {
    let ago = |t: Duration| now.saturating_sub(t);
    if p.hidden {
        // "A Jabber user always sees these buddies as Away" and the session persists.
        Shown::Away
    } else if ago(last_use) > OFFLINE_AFTER {
        Shown::Offline
    } else if p.dnd_until.is_some_and(|until| until > now) {
        Shown::Dnd
    } else if p.out_of_office {
        Shown::Away
    } else if p.last_active.is_some_and(|t| ago(t) <= AVAILABLE_WITHIN) {
        Shown::Available
    } else {
        Shown::Away
    }
}

/// A row of spec 52.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Row {
    Available,
    Away,
    OutOfOffice,
    Dnd,
    Hidden,
    Offline,
    NeverWebex,
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
            Row::NeverWebex => "never uses Webex → Away @ Webex (spec 55)",
        }
    }
}

/// Evaluates the check and builds its tables.
pub fn check(out: &History, tick: Duration, changes_min: usize) -> ((Status, String), Vec<Table>) {
    let subjects: BTreeMap<&str, &UserSpec> = out
        .users
        .iter()
        .filter(|u| u.hybrid && u.webex && !u.jabber)
        .map(|u| (u.jid.as_str(), u))
        .collect();
    let uses = Uses::of(out);
    let mut problems = Vec::new();
    let mut rows: BTreeMap<Row, u64> = BTreeMap::new();
    let observed_subjects = final_views(out, &subjects, &uses, &mut rows, &mut problems);
    rows_seen(out, &subjects, &mut rows);
    let delays = poll_delays(out, &subjects, &uses, tick, &mut problems);
    (
        verdict(
            out.elapsed,
            &rows,
            observed_subjects,
            (&delays, changes_min),
            &problems,
        ),
        vec![table(&rows), delay_table(&delays)],
    )
}

/// Judges every contact's final view of each subject against [`expected`] at the end;
/// counts the Offline rows. Returns the subjects observed.
fn final_views(
    out: &History,
    subjects: &BTreeMap<&str, &UserSpec>,
    uses: &Uses,
    rows: &mut BTreeMap<Row, u64>,
    problems: &mut Vec<String>,
) -> usize {
    out.observer
        .with_seen_presences(|seen| final_views_of(out, &seen, subjects, uses, rows, problems))
}

/// [`final_views`] over the presences seen.
fn final_views_of(
    out: &History,
    seen: &SeenPresences<'_>,
    subjects: &BTreeMap<&str, &UserSpec>,
    uses: &Uses,
    rows: &mut BTreeMap<Row, u64>,
    problems: &mut Vec<String>,
) -> usize {
    let end = out.elapsed;
    let mut observed_subjects = 0;
    for (jid, u) in subjects {
        let state = out.webex_presence.get(*jid).copied().unwrap_or_default();
        let last_use = state
            .last_active
            .into_iter()
            .chain(uses.last_before(jid, end, false))
            .max()
            .unwrap_or_default();
        let want = expected(&state, last_use, end);
        let views: Vec<_> = seen
            .iter()
            .filter(|((_, _, c), _)| c == jid)
            .map(|((viewer, _, _), e)| (viewer, e))
            .collect();
        if views.is_empty() {
            continue;
        }
        observed_subjects += 1;
        for (viewer, v) in views {
            let got = (v.available, v.show.as_deref());
            if got != want.view() {
                problems.push(format!("{viewer} sees {jid} as {got:?}, want {want:?}"));
            }
        }
        if want == Shown::Offline {
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

/// Spec 51: the delay from each subject's Available → Away change (10 minutes after their
/// last Webex use, which must have been a message they sent: a change after another request
/// the cloud counted is not measured, its time is the cloud's alone) to the
/// first contact seeing Away. A delay over a poll and a tick, or below zero, is a problem.
fn poll_delays(
    out: &History,
    subjects: &BTreeMap<&str, &UserSpec>,
    uses: &Uses,
    tick: Duration,
    problems: &mut Vec<String>,
) -> Vec<Duration> {
    let sends = webex_sends(out);
    let mut last: BTreeMap<&str, Option<String>> = BTreeMap::new();
    let mut delays = Vec::new();
    for (at, ev) in out.observer.webex_presence_log() {
        let subject = ev.from.split('/').next().unwrap_or_default();
        let Some((jid, u)) = subjects.get_key_value(subject) else {
            continue;
        };
        if u.hidden || u.ooo || u.dnd || !ev.available {
            continue;
        }
        let before = last.insert(jid, ev.show.clone());
        if before != Some(None) || ev.show.as_deref() != Some("away") {
            continue;
        }
        // A use in the last seconds before the Away was seen raced the poll (its answer left
        // the cloud before the use): the Away is the previous idle period's.
        let Some(used) = uses.last_before(jid, at.saturating_sub(CLOSE_SLACK), true) else {
            continue;
        };
        // The cloud counts a send when the post reaches it, a moment after the client sent
        // it: the last use was a send when one went out within CLOSE_SLACK before it.
        let sent = sends.get(*jid).is_some_and(|s| {
            s.range(used.saturating_sub(CLOSE_SLACK)..=used)
                .next()
                .is_some()
        });
        if !sent {
            continue;
        }
        let change = used + AVAILABLE_WITHIN;
        if at + CLOSE_SLACK < change || at > change + POLL + tick + CLOSE_SLACK {
            problems.push(format!(
                "{jid} shown Away at {:.0}s, {:.0}s after its change at {:.0}s (want 0-{:.0}s)",
                at.as_secs_f64(),
                at.as_secs_f64() - change.as_secs_f64(),
                change.as_secs_f64(),
                (POLL + tick).as_secs_f64()
            ));
        }
        delays.push(at.saturating_sub(change));
    }
    delays
}

/// When each user sent a message from Webex.
fn webex_sends(out: &History) -> BTreeMap<String, std::collections::BTreeSet<Duration>> {
    let mut sends: BTreeMap<String, std::collections::BTreeSet<Duration>> = BTreeMap::new();
    out.observer.with_messages(|msgs| {
        for (_, rec) in msgs {
            if rec.client == ClientKind::Webex {
                sends
                    .entry(rec.from.to_string())
                    .or_default()
                    .insert(rec.sent_at);
            }
        }
    });
    sends
}

/// The poll delays: count, mean, and the band the mean must fall in.
fn delay_stats(delays: &[Duration]) -> (usize, f64, f64) {
    let n = delays.len();
    let mean = delays.iter().map(Duration::as_secs_f64).sum::<f64>() / n.max(1) as f64;
    let sigma = POLL.as_secs_f64() / 12f64.sqrt();
    (n, mean, MEAN_SIGMAS * sigma / (n.max(1) as f64).sqrt())
}

/// The poll delays as a table.
fn delay_table(delays: &[Duration]) -> Table {
    let (n, mean, band) = delay_stats(delays);
    let max = delays.iter().max().copied().unwrap_or_default();
    Table {
        title: "Webex → Jabber presence delay (spec 51)".into(),
        columns: vec![
            "Available → Away changes".into(),
            "mean (s)".into(),
            "allowed mean (s)".into(),
            "max (s)".into(),
        ],
        rows: vec![vec![
            n.to_string(),
            format!("{mean:.0}"),
            format!("{:.0}-{:.0}", 300.0 - band, 300.0 + band),
            format!("{:.0}", max.as_secs_f64()),
        ]],
    }
}

/// Counts the rows of spec 52 seen during the run.
fn rows_seen(out: &History, subjects: &BTreeMap<&str, &UserSpec>, rows: &mut BTreeMap<Row, u64>) {
    // Rows seen during the run: any Hybrid Message user counts, since an event from the
    // `hm-webex` resource is the connector's device presence whatever other devices exist.
    let webex_users: BTreeMap<&str, &UserSpec> = out
        .users
        .iter()
        .filter(|u| u.hybrid)
        .map(|u| (u.jid.as_str(), u))
        .collect();
    for (at, ev) in out.observer.webex_presence_log() {
        let subject = ev.from.split('/').next().unwrap_or_default();
        let Some(u) = webex_users.get(subject) else {
            continue;
        };
        let row = match (ev.available, ev.show.as_deref()) {
            (true, Some("away")) if !u.webex && ev.from.ends_with("/hm-webex") => Row::NeverWebex,
            _ if !u.webex => continue,
            (true, None) => Row::Available,
            (true, Some("dnd")) if u.dnd => Row::Dnd,
            (true, Some("away")) if u.hidden => Row::Hidden,
            (true, Some("away")) if u.ooo => Row::OutOfOffice,
            (true, Some("away")) => Row::Away,
            // The session went away: a Webex-only user's presence goes unavailable.
            (false, _) if !u.hidden && subjects.contains_key(subject) && at > OFFLINE_AFTER => {
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
            Row::NeverWebex,
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

/// The verdict: every view right, every row observed, the poll's delays as spec 51.
fn verdict(
    end: Duration,
    rows: &BTreeMap<Row, u64>,
    observed_subjects: usize,
    (delays, changes_min): (&[Duration], usize),
    problems: &[String],
) -> (Status, String) {
    let long_run = end > OFFLINE_AFTER;
    let wanted = [
        Row::Available,
        Row::Away,
        Row::OutOfOffice,
        Row::Dnd,
        Row::Hidden,
        Row::NeverWebex,
    ]
    .into_iter()
    .chain(long_run.then_some(Row::Offline));
    let missing: Vec<&str> = wanted
        .filter(|r| !rows.contains_key(r))
        .map(Row::label)
        .collect();
    let (n, mean, band) = delay_stats(delays);
    let fail = |d: String| (Status::Fail, d);
    if observed_subjects == 0 {
        fail("no Jabber contact saw any Webex-only Hybrid Message user".into())
    } else if !problems.is_empty() {
        fail(format!(
            "{} wrong views (e.g. {})",
            problems.len(),
            problems
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ))
    } else if !missing.is_empty() {
        fail(format!("rows never observed: {}", missing.join(", ")))
    } else if n < changes_min {
        fail(format!(
            "only {n} Available → Away changes after a Webex send to time the 10-minute poll (need {changes_min})"
        ))
    } else if n > 0 && (mean - 300.0).abs() > band {
        fail(format!(
            "mean delay of {n} Available → Away changes {mean:.0}s, want 300 ± {band:.0}s (a 10-minute poll, spec 51)"
        ))
    } else {
        (
            Status::Pass,
            format!(
                "{observed_subjects} users' final presence as spec 52 for every contact; all rows observed; {n} changes shown within a poll, mean {mean:.0}s (300 ± {band:.0}s)"
            ),
        )
    }
}

/// The `presence` check.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Presence {
    /// Fewest Available → Away changes needed to judge the poll (default
    /// [`POLL_CHANGES_MIN`]); a scenario about something else may lower it, and its mean is
    /// then judged against the wider band its fewer changes allow.
    #[serde(default)]
    pub poll_changes_min: Option<usize>,
}

/// How the registry reads it.
pub const ENTRY: Entry = Entry {
    name: "presence",
    bare: true,
    read: boxed::<Presence>,
};

impl Presence {
    fn changes_min(&self) -> usize {
        self.poll_changes_min.unwrap_or(POLL_CHANGES_MIN)
    }
}

impl Check for Presence {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn needs(&self) -> Needs {
        Needs::CONNECTOR
    }
    fn judge(&self, s: &Scenario, h: &History) -> Verdict {
        check(h, s.tick.0, self.changes_min()).0
    }
    fn tables(&self, s: &Scenario, h: &History) -> Vec<Table> {
        check(h, s.tick.0, self.changes_min()).1
    }
}
