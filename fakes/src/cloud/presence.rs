//! The presence service (spec 51-55): what the cloud knows about each user's Webex presence,
//! and the batch query the connector polls every [`POLL_INTERVAL`] for its assigned users.
//!
//! The cloud reports raw facts: last-active time, Do Not Disturb with its expiry (30 min–24 h),
//! calendar out-of-office, and hidden status ("Show statuses" off). Mapping them to XMPP device
//! presence (Available ≤ 10 min, Away up to 72 h, Offline beyond, spec 52) is the connector's
//! job. An expired DND is reported as no DND; nothing needs a timer.

use super::error::CloudError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The connector's presence poll period (spec 51).
pub const POLL_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// Shortest Webex DND (spec 52).
pub const DND_MIN: Duration = Duration::from_secs(30 * 60);
/// Longest Webex DND (spec 52).
pub const DND_MAX: Duration = Duration::from_secs(24 * 60 * 60);
/// Emails per batch query: a Large node polls 15,000 users in 15 requests, and one request's
/// JSON stays well under the body limit.
pub const QUERY_EMAILS_MAX: usize = 1_000;

/// One user's presence facts at query time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceState {
    /// The user.
    pub email: String,
    /// Last time the user was active on Webex, ms since the start of the run (`None`: never).
    pub last_active_ms: Option<u64>,
    /// Last time the user used Webex App to read or write messages to or from Jabber (the
    /// status page's "active", spec 70), ms since the start of the run (`None`: never): the
    /// last time the cloud bridged one of their Webex activities to their connector. A
    /// connector node that restarts or is newly given the user learns it here, since the
    /// use happened whichever node carried it.
    #[serde(default)]
    pub last_interop_ms: Option<u64>,
    /// End of an active DND, ms since the start of the run (`None`: no DND now).
    pub dnd_until_ms: Option<u64>,
    /// Calendar out-of-office (spec 52, 55).
    pub out_of_office: bool,
    /// Status hidden (spec 52).
    pub hidden: bool,
}

/// Touches closer than this to the previous one extend it rather than add one: a client's
/// burst of requests (space, key, post) is one use, and the log stays small.
pub const ACTIVITY_GRAIN: Duration = Duration::from_secs(1);
/// Uses kept per user, the oldest dropped beyond: 83 hours of one a second, more than any
/// run's 72 h rule looks back over.
pub const ACTIVITY_PER_USER_MAX: usize = 300_000;

#[derive(Debug, Clone, Default)]
struct Record {
    last_active: Option<Duration>,
    /// Last use of Webex with Jabber ([`Presence::used_with_jabber`]).
    interop: Option<Duration>,
    /// Every use, in time order, one per [`ACTIVITY_GRAIN`] burst (its last touch).
    activity: Vec<Duration>,
    dnd_until: Option<Duration>,
    ooo: bool,
    hidden: bool,
}

/// Presence of all users, by email.
#[derive(Debug, Clone, Default)]
pub struct Presence {
    records: BTreeMap<String, Record>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Presence {
    /// Nobody has been active.
    pub fn new() -> Self {
        Self::default()
    }

    /// The user was active on Webex at `now` (any client request does this).
    pub fn touch(&mut self, now: Duration, email: &str) {
        let r = self.records.entry(email.to_owned()).or_default();
        r.last_active = Some(r.last_active.map_or(now, |t| t.max(now)));
        match r.activity.last_mut() {
            Some(last) if now <= *last + ACTIVITY_GRAIN => *last = now.max(*last),
            _ => {
                if r.activity.len() >= ACTIVITY_PER_USER_MAX {
                    // Rare (a user busy every second for 83 h): drop the oldest tenth at once.
                    r.activity.drain(..ACTIVITY_PER_USER_MAX / 10);
                }
                r.activity.push(now);
            }
        }
    }

    /// The cloud bridged an activity of the user's to Jabber at `now` (it delivered it to the
    /// connector serving them): they used Webex App to write to Jabber (spec 70).
    pub fn used_with_jabber(&mut self, now: Duration, email: &str) {
        let r = self.records.entry(email.to_owned()).or_default();
        r.interop = Some(r.interop.map_or(now, |t| t.max(now)));
    }

    /// Every time the user was active on Webex (what [`Self::touch`] counted), in order, the
    /// bursts of one [`ACTIVITY_GRAIN`] merged into their last touch.
    pub fn activity(&self, email: &str) -> &[Duration] {
        self.records
            .get(email)
            .map_or(&[][..], |r| r.activity.as_slice())
    }

    /// Sets Webex DND for `duration` (30 min–24 h, spec 52).
    ///
    /// # Errors
    /// [`CloudError::Invalid`] for a duration outside 30 min–24 h.
    pub fn set_dnd(
        &mut self,
        now: Duration,
        email: &str,
        duration: Duration,
    ) -> Result<(), CloudError> {
        if !(DND_MIN..=DND_MAX).contains(&duration) {
            return Err(CloudError::Invalid(format!(
                "DND lasts 30 min to 24 h (spec 52), not {} s",
                duration.as_secs()
            )));
        }
        self.records.entry(email.to_owned()).or_default().dnd_until = Some(now + duration);
        Ok(())
    }

    /// Ends DND (only from Webex, spec 54).
    pub fn clear_dnd(&mut self, email: &str) {
        if let Some(r) = self.records.get_mut(email) {
            r.dnd_until = None;
        }
    }

    /// Sets or clears calendar out-of-office.
    pub fn set_out_of_office(&mut self, email: &str, on: bool) {
        self.records.entry(email.to_owned()).or_default().ooo = on;
    }

    /// Hides or shows the user's status.
    pub fn set_hidden(&mut self, email: &str, on: bool) {
        self.records.entry(email.to_owned()).or_default().hidden = on;
    }

    /// Moves a user's presence to a new email.
    pub fn rename(&mut self, old: &str, new: &str) {
        if let Some(r) = self.records.remove(old) {
            self.records.insert(new.to_owned(), r);
        }
    }

    /// The user's facts at `now`.
    pub fn state(&self, now: Duration, email: &str) -> PresenceState {
        let r = self.records.get(email).cloned().unwrap_or_default();
        PresenceState {
            email: email.to_owned(),
            last_active_ms: r.last_active.map(ms),
            last_interop_ms: r.interop.map(ms),
            dnd_until_ms: r.dnd_until.filter(|&until| until > now).map(ms),
            out_of_office: r.ooo,
            hidden: r.hidden,
        }
    }

    /// The batch query: the facts of each email, in the order asked.
    ///
    /// # Errors
    /// [`CloudError::Invalid`] for more than [`QUERY_EMAILS_MAX`] emails.
    pub fn query(
        &self,
        now: Duration,
        emails: &[String],
    ) -> Result<Vec<PresenceState>, CloudError> {
        if emails.len() > QUERY_EMAILS_MAX {
            return Err(CloudError::Invalid(format!(
                "{} emails in one presence query; at most {QUERY_EMAILS_MAX}",
                emails.len()
            )));
        }
        Ok(emails.iter().map(|e| self.state(now, e)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "alice@example.com";

    fn mins(m: u64) -> Duration {
        Duration::from_secs(m * 60)
    }

    #[test]
    fn last_active_is_kept() {
        let mut p = Presence::new();
        assert_eq!(p.state(mins(0), ALICE).last_active_ms, None);
        p.touch(mins(5), ALICE);
        p.touch(mins(3), ALICE);
        assert_eq!(p.state(mins(6), ALICE).last_active_ms, Some(300_000));
    }

    /// The last use of Webex with Jabber is its own fact, not any Webex use: a connector
    /// that lost its memory (a restart) reads it back from the query (spec 70).
    #[test]
    fn the_last_use_with_jabber_is_kept_apart_from_any_use() {
        let mut p = Presence::new();
        p.touch(mins(1), ALICE);
        assert_eq!(p.state(mins(2), ALICE).last_interop_ms, None);
        p.used_with_jabber(mins(4), ALICE);
        p.used_with_jabber(mins(3), ALICE);
        p.touch(mins(6), ALICE);
        let st = p.state(mins(7), ALICE);
        assert_eq!(st.last_interop_ms, Some(240_000));
        assert_eq!(st.last_active_ms, Some(360_000));
        p.rename(ALICE, "a2@example.com");
        assert_eq!(
            p.state(mins(7), "a2@example.com").last_interop_ms,
            Some(240_000)
        );
    }

    /// Every request the cloud counts as Webex use is kept, one per burst of a second, so
    /// that a run's history holds them all (the oracle's uses, spec 52), not only the last.
    #[test]
    fn every_activity_is_kept_one_per_second() {
        let mut p = Presence::new();
        assert!(p.activity(ALICE).is_empty());
        let ms = Duration::from_millis;
        p.touch(ms(1_000), ALICE);
        p.touch(ms(1_400), ALICE);
        p.touch(ms(9_000), ALICE);
        assert_eq!(p.activity(ALICE), &[ms(1_400), ms(9_000)]);
        p.rename(ALICE, "a2@example.com");
        assert_eq!(p.activity("a2@example.com"), &[ms(1_400), ms(9_000)]);
    }

    #[test]
    fn dnd_between_30_minutes_and_24_hours_and_expires() {
        let mut p = Presence::new();
        assert_eq!(
            p.set_dnd(mins(0), ALICE, mins(29)).unwrap_err().status(),
            400
        );
        assert_eq!(
            p.set_dnd(mins(0), ALICE, mins(24 * 60 + 1))
                .unwrap_err()
                .status(),
            400
        );
        p.set_dnd(mins(0), ALICE, mins(30)).unwrap();
        assert_eq!(p.state(mins(29), ALICE).dnd_until_ms, Some(1_800_000));
        assert_eq!(p.state(mins(30), ALICE).dnd_until_ms, None, "expired");
        p.set_dnd(mins(0), ALICE, mins(24 * 60)).unwrap();
        p.clear_dnd(ALICE);
        assert_eq!(p.state(mins(1), ALICE).dnd_until_ms, None);
    }

    #[test]
    fn ooo_hidden_and_batch_query() {
        let mut p = Presence::new();
        p.set_out_of_office(ALICE, true);
        p.set_hidden("bob@example.com", true);
        let emails = vec![ALICE.to_owned(), "bob@example.com".to_owned()];
        let states = p.query(mins(0), &emails).unwrap();
        assert!(states[0].out_of_office && !states[0].hidden);
        assert!(states[1].hidden && !states[1].out_of_office);
        assert_eq!(states[1].email, "bob@example.com");
        let many = vec![ALICE.to_owned(); QUERY_EMAILS_MAX + 1];
        assert_eq!(p.query(mins(0), &many).unwrap_err().status(), 400);
        p.rename(ALICE, "a2@example.com");
        assert!(p.state(mins(0), "a2@example.com").out_of_office);
        assert!(!p.state(mins(0), ALICE).out_of_office);
    }
}
