//! Who used which client when, from the history alone (spec 52): the 72-hour rule's input,
//! computed without the connector's own view.
//!
//! A user's *use* is what Webex or IM&P can see of it: the start of the run (the population is
//! taken as active then: nothing before it is known, and the connector counts from the
//! assignment, a few minutes later), a Webex App login (all within [`WEBEX_LOGIN_SPREAD`] of
//! the start), a message sent from either client, and the first message a Webex App receives
//! in a conversation it did not know (it asks for the space's key: a request, which Webex
//! counts as activity). Receiving otherwise is not use: a pushed message needs no request, and
//! in Jabber it is not the user's doing. On top of these, every request the fake cloud counted
//! as the user's Webex activity ([`History::webex_activity`]): the cloud's record, not the
//! connector's view, so the oracle sees every use the connector's presence poll can see.

use crate::history::History;
use crate::history::observer::{MessageRecord, Name};
use crate::oracle::interop::client_of_device;
use crate::plan::connector::WEBEX_LOGIN_SPREAD;
use fakes::observe::ClientKind;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Spec 52, from the guide: "not used Webex or Jabber for more than 72 hours".
pub const ACTIVE_WINDOW: Duration = Duration::from_secs(72 * 3600);

/// Spec 51, from the guide: the connector polls Webex presence every 10 minutes, so a use of
/// Webex it did not carry itself reaches it up to this late.
pub const POLL_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// A session closed this much earlier than 72 h after the last use the history shows is not
/// the 72 h rule's doing: the sampling of sessions (each second) and a send's own latency.
pub const CLOSE_SLACK: Duration = Duration::from_secs(5);

/// Every use per user (bare JID), in time order: (when, of Webex).
#[derive(Debug, Clone, Default)]
pub struct Uses {
    uses: BTreeMap<String, Vec<(Duration, bool)>>,
}

impl Uses {
    /// The uses of every user over the whole history.
    pub fn of(out: &History) -> Self {
        let mut l = Self::default();
        for u in &out.users {
            l.used(&u.jid, Duration::ZERO, false);
            if u.webex {
                l.used(&u.jid, WEBEX_LOGIN_SPREAD, true);
            }
        }
        // Webex conversations (receiver, other party) a user's Webex App already knows.
        let mut known: BTreeSet<(Name, Name)> = BTreeSet::new();
        out.observer.with_messages(|msgs| {
            for (_, rec) in msgs {
                let webex = rec.client == ClientKind::Webex;
                l.used(&rec.from, rec.sent_at, webex);
                if webex {
                    known.insert((rec.from.clone(), rec.to.clone()));
                }
                if let Some(at) = first_webex_delivery(rec)
                    && known.insert((rec.to.clone(), rec.from.clone()))
                {
                    l.used(&rec.to, at, true);
                }
            }
        });
        for (jid, at) in out
            .webex_activity
            .iter()
            .flat_map(|(j, v)| v.iter().map(move |t| (j, t)))
        {
            l.used(jid, *at, true);
        }
        for v in l.uses.values_mut() {
            v.sort();
        }
        l
    }

    fn used(&mut self, user: &str, at: Duration, webex: bool) {
        self.uses
            .entry(user.to_string())
            .or_default()
            .push((at, webex));
    }

    /// Every user's uses, leaving out users with none: for self-checks comparing two ways of
    /// reaching them.
    pub fn by_user(&self) -> BTreeMap<&str, &[(Duration, bool)]> {
        (self.uses.iter())
            .filter(|(_, v)| !v.is_empty())
            .map(|(u, v)| (u.as_str(), v.as_slice()))
            .collect()
    }

    /// Adds a use, keeping `user`'s uses in time order.
    fn insert(&mut self, user: &str, at: Duration, webex: bool) {
        let v = self.uses.entry(user.to_string()).or_default();
        let pos = v.partition_point(|u| *u <= (at, webex));
        v.insert(pos, (at, webex));
    }

    /// Removes one use (one that [`Uses::insert`] added).
    fn remove(&mut self, user: &str, at: Duration, webex: bool) {
        let Some(v) = self.uses.get_mut(user) else {
            return;
        };
        if let Ok(pos) = v.binary_search(&(at, webex)) {
            v.remove(pos);
        }
    }

    /// The last use of `user` at or before `at` (of Webex only, if `webex`).
    pub fn last_before(&self, user: &str, at: Duration, webex: bool) -> Option<Duration> {
        self.uses
            .get(user)?
            .iter()
            .filter(|(t, w)| *t <= at && (*w || !webex))
            .map(|(t, _)| *t)
            .next_back()
    }

    /// Whether a connector session of `user` that closed at `at` was closed on purpose by the
    /// 72 h rule: no use of either client in the 72 h before (spec 52).
    pub fn closed_by_72h_rule(&self, user: &str, at: Duration) -> bool {
        self.last_before(user, at, false)
            .is_some_and(|last| at + CLOSE_SLACK >= last + ACTIVE_WINDOW)
    }

    /// Whether `user` used Webex within the 72 h before `at` as the connector sees it:
    /// `Some(true)` certainly, `Some(false)` certainly not, `None` too close to call. The
    /// connector learns of a use by its next presence poll (spec 51), so a use counts as
    /// certainly known only [`POLL_INTERVAL`] after it: a Webex login at the start is not yet
    /// Webex activity to a connector that polled just before it (cloud-assignment-balance
    /// seed 14: a J- -> W+ message 7 min after the receiver's login was rightly not bridged).
    /// Likewise its view of an expiry lags by up to a poll.
    pub fn webex_active(&self, user: &str, at: Duration) -> Option<bool> {
        let margin = POLL_INTERVAL + CLOSE_SLACK;
        let known = self.last_before(user, at.saturating_sub(margin), true);
        if known.is_some_and(|t| at + CLOSE_SLACK <= t + ACTIVE_WINDOW) {
            return Some(true);
        }
        match self.last_before(user, at, true) {
            Some(t) if at > t + ACTIVE_WINDOW + margin => Some(false),
            Some(_) => None,
            None => Some(false),
        }
    }
}

/// [`Uses::of`] kept up to date as the history grows, for the runner's quiescence judgement
/// (issue 16: rebuilding it walked every message once per simulated second of the drain). It
/// folds in each message once when sent and again at each delivery, and reaches the same uses
/// as [`Uses::of`] over the same history.
#[derive(Debug, Clone, Default)]
pub struct LiveUses {
    uses: Uses,
    /// Per Webex conversation (user, other party), the event [`Uses::of`] would find first to
    /// make it known to the user's Webex App: (the message's place in send order, 0 for the
    /// user's own Webex send and 1 for a Webex delivery to the user, the use that delivery
    /// counted). A message delivered late may come before the one that counted so far.
    known: BTreeMap<(Name, Name), (usize, u8, Option<Duration>)>,
    /// The entries of [`History::webex_activity`] folded in so far, per user.
    activity: BTreeMap<String, Vec<Duration>>,
}

impl LiveUses {
    /// The uses of the population before anything is sent.
    pub fn new(out: &History) -> Self {
        let mut l = Self::default();
        for u in &out.users {
            l.uses.used(&u.jid, Duration::ZERO, false);
            if u.webex {
                l.uses.used(&u.jid, WEBEX_LOGIN_SPREAD, true);
            }
        }
        for v in l.uses.uses.values_mut() {
            v.sort();
        }
        l
    }

    /// The uses so far.
    pub fn uses(&self) -> &Uses {
        &self.uses
    }

    /// A message sent, the `index`-th in send order.
    pub fn sent(&mut self, index: usize, rec: &MessageRecord) {
        let webex = rec.client == ClientKind::Webex;
        self.uses.insert(&rec.from, rec.sent_at, webex);
        if webex {
            self.know((rec.from.clone(), rec.to.clone()), (index, 0), None);
        }
    }

    /// A delivery of the `index`-th message sent (any client: only the first Webex one counts).
    pub fn delivered(&mut self, index: usize, rec: &MessageRecord) {
        if let Some(at) = first_webex_delivery(rec) {
            self.know((rec.to.clone(), rec.from.clone()), (index, 1), Some(at));
        }
    }

    /// Folds in what changed in the cloud's activity record since the last call: new uses, and
    /// a last use the cloud moved forward (a later touch within its grain), or the oldest ones
    /// it dropped at its bound. The runner reads the record at each judgement, so it changes
    /// in place, not only at the end.
    pub fn activity(&mut self, out: &History) {
        for (jid, v) in &out.webex_activity {
            let folded = self.activity.entry(jid.clone()).or_default();
            if folded == v {
                continue;
            }
            let (gone, new) = sorted_difference(folded, v);
            for at in gone {
                self.uses.remove(jid, at, true);
            }
            for at in new {
                self.uses.insert(jid, at, true);
            }
            folded.clone_from(v);
        }
    }

    /// Conversation `key` known by `event`, counting `used` as a use, unless an earlier event
    /// made it known.
    fn know(&mut self, key: (Name, Name), event: (usize, u8), used: Option<Duration>) {
        if let Some(&(i, sub, was)) = self.known.get(&key)
            && ((i, sub) < event || ((i, sub) == event && was == used))
        {
            return;
        }
        let user = key.0.clone();
        if let Some((_, _, Some(at))) = self.known.insert(key, (event.0, event.1, used)) {
            self.uses.remove(&user, at, true);
        }
        if let Some(at) = used {
            self.uses.insert(&user, at, true);
        }
    }
}

/// The entries of sorted `old` not in sorted `new`, and those of `new` not in `old` (as
/// multisets).
fn sorted_difference(old: &[Duration], new: &[Duration]) -> (Vec<Duration>, Vec<Duration>) {
    let (mut gone, mut added) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < old.len() && j < new.len() {
        if old[i] == new[j] {
            (i, j) = (i + 1, j + 1);
        } else if old[i] < new[j] {
            gone.push(old[i]);
            i += 1;
        } else {
            added.push(new[j]);
            j += 1;
        }
    }
    gone.extend_from_slice(&old[i..]);
    added.extend_from_slice(&new[j..]);
    (gone, added)
}

/// When `rec` first reached one of its recipient's Webex App devices: the recipient's use of
/// Webex for the 72 h rule, in both the full and the kept uses.
fn first_webex_delivery(rec: &MessageRecord) -> Option<Duration> {
    (rec.deliveries.iter())
        .filter(|d| client_of_device(&d.device) == ClientKind::Webex)
        .map(|d| d.at)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uses(of: &[(Duration, bool)]) -> Uses {
        let mut u = Uses::default();
        for (at, webex) in of {
            u.used("a@x", *at, *webex);
        }
        u
    }

    #[test]
    fn a_webex_use_is_certain_only_a_poll_after_it() {
        let s = Duration::from_secs;
        let u = uses(&[(s(0), false), (s(30), true)]);
        assert_eq!(u.webex_active("a@x", s(499)), None, "before the next poll");
        assert_eq!(u.webex_active("a@x", s(30 + 605)), Some(true));
        assert_eq!(
            u.webex_active("a@x", s(10)),
            Some(false),
            "no Webex use yet"
        );
        let expired = s(30) + ACTIVE_WINDOW + s(605) + s(1);
        assert_eq!(u.webex_active("a@x", expired), Some(false));
        assert_eq!(u.webex_active("a@x", s(30) + ACTIVE_WINDOW), None);
    }

    /// A request the cloud counted as Webex use (presence-poll seed 11: a delivery at 6161 s
    /// in a conversation the Webex App already knew) is a use, though no message shows it.
    #[test]
    fn every_use_the_cloud_counted_is_a_webex_use() {
        use crate::history::observer::Observer;
        use std::rc::Rc;
        let s = Duration::from_secs;
        let mut h = History::from_history(1, Rc::new(Observer::new()), Vec::new());
        h.webex_activity.insert("a@x".into(), vec![s(100), s(6161)]);
        let u = Uses::of(&h);
        assert_eq!(u.last_before("a@x", s(7000), true), Some(s(6161)));
        assert_eq!(u.last_before("a@x", s(6000), true), Some(s(100)));
        assert_eq!(u.last_before("a@x", s(7000), false), Some(s(6161)));
    }

    /// The runner reads the cloud's record during the run (explore seed 5484), and the cloud
    /// moves a user's last use forward in place (a later touch within its grain) or drops the
    /// oldest at its bound: the kept uses follow every change and agree with a rebuild.
    #[test]
    fn the_kept_uses_follow_a_record_that_changes_in_place() {
        use crate::history::observer::Observer;
        use std::rc::Rc;
        let s = Duration::from_secs;
        let mut h = History::from_history(1, Rc::new(Observer::new()), Vec::new());
        let mut live = LiveUses::default();
        for record in [
            vec![s(100)],
            vec![s(100), s(400)],
            vec![s(100), s(410)], // the last use moved forward
            vec![s(410), s(900)], // the oldest dropped, a new one
        ] {
            h.webex_activity.insert("a@x".into(), record);
            live.activity(&h);
            assert_eq!(live.uses().by_user(), Uses::of(&h).by_user());
        }
        assert_eq!(live.uses().last_before("a@x", s(899), true), Some(s(410)));
    }

    #[test]
    fn an_earlier_known_use_keeps_a_user_active_across_a_new_one() {
        let s = Duration::from_secs;
        let u = uses(&[(s(30), true), (s(5000), true)]);
        assert_eq!(u.webex_active("a@x", s(5100)), Some(true));
    }
}
