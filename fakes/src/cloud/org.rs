//! Organization and identity: one Control Hub organization, its users keyed by email (spec 24),
//! their entitlements (spec 27) and their Hybrid Message activation state.
//!
//! ## Activation (spec 25, 27, timers table)
//!
//! - Hybrid Message can be enabled only for a user with a paid licence ([`Entitlement::PaidLicence`]);
//!   Message Free alone is not paid.
//! - Enabling moves the user to [`HmState::Pending`]; after [`PENDING_DELAY`] ("seconds") the
//!   org looks the user up in what the connectors reported ([`Lookup`]): found once → `Active`;
//!   homed on more than one IM&P cluster → `Error` "duplicate Mail ID" (spec 25); not found →
//!   `Error` "no matching IM&P user". While no connector has reported its users yet the user stays
//!   Pending and is looked up again later (a real cloud waits for its connectors too).
//! - [`Org::reactivate`] ("Reactivate User") retries after a delay drawn up to
//!   [`REACTIVATION_DELAY_MAX`].
//! - Every state change is kept in the user's history (bounded, [`HISTORY_ENTRIES_MAX`]).
//! - An email change is picked up after a delay drawn up to [`EMAIL_PICKUP_DELAY_MAX`]; until
//!   then the user keeps the old email. A Hybrid Message user is then looked up again under the
//!   new email (mailid must equal the Webex email, spec 24).
//!
//! Sans-IO: time is an argument, randomness comes from the RNG passed in.

use super::error::CloudError;
pub use connector::proto::webex::Entitlement;
use rand::{Rng, RngExt as _};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// How long a user stays Pending before the lookup ("Control Hub Pending: seconds").
pub const PENDING_DELAY: Duration = Duration::from_secs(5);
/// Longest delay before a reactivation is looked up again (timers table: ≤ 10 min).
pub const REACTIVATION_DELAY_MAX: Duration = Duration::from_secs(10 * 60);
/// Longest delay before an email change is picked up (timers table: ≤ 10 min).
pub const EMAIL_PICKUP_DELAY_MAX: Duration = Duration::from_secs(10 * 60);
/// History entries kept per user: enough to see the last few transitions, bounded so a
/// flapping user cannot grow the cloud's memory.
pub const HISTORY_ENTRIES_MAX: usize = 32;
/// Hybrid-Message-enabled users per organization (spec 4).
pub const HM_USERS_MAX: usize = 195_000;
/// Longest email accepted, in bytes (RFC 5321 path limit).
pub const EMAIL_BYTES_MAX: usize = 254;

/// Reason shown for a user homed on more than one IM&P cluster (spec 25).
pub const REASON_DUPLICATE: &str = "duplicate Mail ID";
/// Reason shown for a user no connector knows (spec 24: mailid must equal the Webex email).
pub const REASON_NO_IMP_USER: &str = "no matching IM&P user";

/// Control Hub's Hybrid Message state of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HmState {
    /// Hybrid Message not enabled.
    NotEnabled,
    /// Enabled, being activated.
    Pending,
    /// Activated: the cloud assigns the user to a connector.
    Active,
    /// Activation failed; see the reason and history, then reactivate.
    Error,
}

/// One entry of a user's state history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When, in ms since the start of the run.
    pub at_ms: u64,
    /// The new state.
    pub state: HmState,
    /// Why (errors, email changes).
    pub reason: Option<String>,
}

/// One user of the organization.
#[derive(Debug, Clone)]
pub struct User {
    /// The Webex email, the identity key (spec 24).
    pub email: String,
    /// Login password (the sim's stand-in for SSO).
    pub password: String,
    /// Entitlements held.
    pub entitlements: BTreeSet<Entitlement>,
    /// Hybrid Message state.
    pub state: HmState,
    /// Reason of the current Error state.
    pub reason: Option<String>,
    /// State changes, oldest first, bounded by [`HISTORY_ENTRIES_MAX`].
    pub history: VecDeque<HistoryEntry>,
    /// A new email waiting to be picked up, and when.
    pub email_change: Option<(String, Duration)>,
    /// When a Pending user is next looked up.
    lookup_at: Option<Duration>,
}

/// What the connectors' reports say about an email (computed by the assignment module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// No connector has reported its users yet: try again later.
    NotYetReported,
    /// No connector knows this email.
    NotFound,
    /// Homed on exactly one IM&P cluster.
    Unique,
    /// Homed on more than one IM&P cluster (spec 25).
    Duplicate,
}

/// A change the rest of the cloud must react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgEvent {
    /// The user became Active: assign them.
    Activated(String),
    /// The user left Active (Error, disabled or being looked up again): unassign them.
    Deactivated(String),
    /// The user's email changed from `old` to `new`.
    EmailChanged {
        /// The previous email.
        old: String,
        /// The new email.
        new: String,
    },
}

/// What a timer does when it fires.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Lookup,
    EmailPickup,
}

/// The organization.
#[derive(Debug, Clone)]
pub struct Org {
    domain: String,
    users: BTreeMap<String, User>,
    /// (due, email, kind): timers; stale entries are skipped when they fire.
    timers: BTreeSet<(Duration, String, TimerKind)>,
    /// Users in any state but NotEnabled (kept, not counted, so that the spec 4 check on every
    /// enable stays O(1) with 195,000 users).
    hm_enabled: usize,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn draw_delay<R: Rng + ?Sized>(rng: &mut R, min: Duration, max: Duration) -> Duration {
    Duration::from_millis(rng.random_range(ms(min)..=ms(max)))
}

/// Checks the shape of an email: `local@domain`, lowercase, short.
pub fn validate_email(email: &str) -> Result<(), CloudError> {
    let ok = email.len() <= EMAIL_BYTES_MAX
        && email.split('@').count() == 2
        && !email.starts_with('@')
        && !email.ends_with('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_uppercase());
    if ok {
        Ok(())
    } else {
        Err(CloudError::Invalid(format!(
            "not a lowercase email: {email:?}"
        )))
    }
}

impl Org {
    /// An organization with no users whose primary domain is `domain`.
    pub fn new(domain: impl Into<String>) -> Self {
        Org {
            domain: domain.into(),
            users: BTreeMap::new(),
            timers: BTreeSet::new(),
            hm_enabled: 0,
        }
    }

    /// The organization's domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The user with this email.
    pub fn user(&self, email: &str) -> Option<&User> {
        self.users.get(email)
    }

    /// All users, by email.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// Whether `password` is the user's password.
    pub fn check_password(&self, email: &str, password: &str) -> bool {
        self.users
            .get(email)
            .is_some_and(|u| u.password == password)
    }

    /// Whether the user is an Active Hybrid Message user.
    pub fn is_hm_active(&self, email: &str) -> bool {
        self.users
            .get(email)
            .is_some_and(|u| u.state == HmState::Active)
    }

    /// How many users have Hybrid Message enabled (any state but NotEnabled).
    pub fn hm_enabled_count(&self) -> usize {
        self.hm_enabled
    }

    /// When the next timer is due, if any.
    pub fn next_due(&self) -> Option<Duration> {
        self.timers.first().map(|(due, _, _)| *due)
    }

    /// Adds a user with no entitlements.
    ///
    /// # Errors
    /// [`CloudError::Invalid`] for a malformed email, [`CloudError::Conflict`] if it exists.
    pub fn add_user(&mut self, email: &str, password: &str) -> Result<(), CloudError> {
        validate_email(email)?;
        if self.users.contains_key(email) {
            return Err(CloudError::Conflict(format!("user {email} exists")));
        }
        self.users.insert(
            email.to_owned(),
            User {
                email: email.to_owned(),
                password: password.to_owned(),
                entitlements: BTreeSet::new(),
                state: HmState::NotEnabled,
                reason: None,
                history: VecDeque::new(),
                email_change: None,
                lookup_at: None,
            },
        );
        Ok(())
    }

    fn user_mut(&mut self, email: &str) -> Result<&mut User, CloudError> {
        self.users
            .get_mut(email)
            .ok_or_else(|| CloudError::NotFound(format!("user {email}")))
    }

    /// Replaces the user's entitlements. Turning Hybrid Message on starts activation (Pending);
    /// turning it off deactivates.
    ///
    /// # Errors
    /// [`CloudError::NotFound`]; [`CloudError::Conflict`] for Hybrid Message without a paid
    /// licence (spec 27) or beyond [`HM_USERS_MAX`].
    pub fn set_entitlements(
        &mut self,
        now: Duration,
        email: &str,
        entitlements: BTreeSet<Entitlement>,
    ) -> Result<Vec<OrgEvent>, CloudError> {
        let wants_hm = entitlements.contains(&Entitlement::HybridMessage);
        if wants_hm && !entitlements.contains(&Entitlement::PaidLicence) {
            return Err(CloudError::Conflict(
                "Hybrid Message needs a paid licence (spec 27)".into(),
            ));
        }
        let enabled = self.hm_enabled_count();
        let user = self.user_mut(email)?;
        let had_hm = user.state != HmState::NotEnabled;
        if wants_hm && !had_hm && enabled >= HM_USERS_MAX {
            return Err(CloudError::Conflict(format!(
                "organization has {HM_USERS_MAX} Hybrid Message users (spec 4)"
            )));
        }
        user.entitlements = entitlements;
        let mut events = Vec::new();
        if wants_hm && !had_hm {
            self.enter_pending(now, email, now + PENDING_DELAY);
        } else if !wants_hm && had_hm {
            events.extend(self.transition(now, email, HmState::NotEnabled, None));
        }
        Ok(events)
    }

    /// "Reactivate User": looks the user up again after a drawn delay (≤ 10 min).
    ///
    /// # Errors
    /// [`CloudError::NotFound`]; [`CloudError::Conflict`] if Hybrid Message is not enabled.
    pub fn reactivate<R: Rng + ?Sized>(
        &mut self,
        now: Duration,
        email: &str,
        rng: &mut R,
    ) -> Result<Vec<OrgEvent>, CloudError> {
        if self.user_mut(email)?.state == HmState::NotEnabled {
            return Err(CloudError::Conflict(format!(
                "{email} does not have Hybrid Message enabled"
            )));
        }
        let due = now + draw_delay(rng, PENDING_DELAY, REACTIVATION_DELAY_MAX);
        Ok(self.enter_pending(now, email, due))
    }

    /// Changes a user's email; the change is picked up after a drawn delay (≤ 10 min).
    ///
    /// # Errors
    /// [`CloudError::NotFound`], [`CloudError::Invalid`] for a malformed new email,
    /// [`CloudError::Conflict`] if the new email is taken.
    pub fn change_email<R: Rng + ?Sized>(
        &mut self,
        now: Duration,
        email: &str,
        new_email: &str,
        rng: &mut R,
    ) -> Result<Duration, CloudError> {
        validate_email(new_email)?;
        let taken = self.users.contains_key(new_email)
            || self
                .users
                .values()
                .any(|u| u.email_change.as_ref().is_some_and(|(n, _)| n == new_email));
        if taken {
            return Err(CloudError::Conflict(format!("{new_email} is taken")));
        }
        let due = now + draw_delay(rng, Duration::ZERO, EMAIL_PICKUP_DELAY_MAX);
        self.user_mut(email)?.email_change = Some((new_email.to_owned(), due));
        self.timers
            .insert((due, email.to_owned(), TimerKind::EmailPickup));
        Ok(due)
    }

    /// Fires every timer due at `now`, looking users up with `lookup`.
    pub fn tick(&mut self, now: Duration, lookup: impl Fn(&str) -> Lookup) -> Vec<OrgEvent> {
        let mut events = Vec::new();
        while let Some((due, _, _)) = self.timers.first()
            && *due <= now
        {
            let Some((due, email, kind)) = self.timers.pop_first() else {
                break;
            };
            match kind {
                TimerKind::Lookup => events.extend(self.on_lookup(now, due, &email, &lookup)),
                TimerKind::EmailPickup => events.extend(self.on_email_pickup(now, due, &email)),
            }
        }
        events
    }

    fn on_lookup(
        &mut self,
        now: Duration,
        due: Duration,
        email: &str,
        lookup: &impl Fn(&str) -> Lookup,
    ) -> Vec<OrgEvent> {
        let current = self
            .users
            .get(email)
            .is_some_and(|u| u.state == HmState::Pending && u.lookup_at == Some(due));
        if !current {
            return Vec::new(); // stale: reactivated, disabled or renamed since
        }
        match lookup(email) {
            Lookup::NotYetReported => {
                self.schedule_lookup(email, now + PENDING_DELAY);
                Vec::new()
            }
            Lookup::Unique => self.transition(now, email, HmState::Active, None),
            Lookup::Duplicate => {
                self.transition(now, email, HmState::Error, Some(REASON_DUPLICATE))
            }
            Lookup::NotFound => {
                self.transition(now, email, HmState::Error, Some(REASON_NO_IMP_USER))
            }
        }
    }

    /// A users report made an Active user's Mail ID a duplicate (a second IM&P cluster
    /// discovered after the lookup found one home, spec 25): Error "duplicate Mail ID", as the
    /// lookup would have said. Pending users meet it at their lookup; others are left alone.
    pub fn became_duplicate(&mut self, now: Duration, email: &str) -> Vec<OrgEvent> {
        let active = (self.users.get(email)).is_some_and(|u| u.state == HmState::Active);
        if !active {
            return Vec::new();
        }
        self.transition(now, email, HmState::Error, Some(REASON_DUPLICATE))
    }

    fn on_email_pickup(&mut self, now: Duration, due: Duration, old: &str) -> Vec<OrgEvent> {
        let Some(user) = self.users.get(old) else {
            return Vec::new();
        };
        let Some((new, at)) = user.email_change.clone() else {
            return Vec::new();
        };
        if at != due {
            return Vec::new();
        }
        let mut events = Vec::new();
        if user.state == HmState::Active {
            events.push(OrgEvent::Deactivated(old.to_owned()));
        }
        let hm = user.state != HmState::NotEnabled;
        let Some(mut user) = self.users.remove(old) else {
            return events;
        };
        user.email = new.clone();
        user.email_change = None;
        self.users.insert(new.clone(), user);
        events.push(OrgEvent::EmailChanged {
            old: old.to_owned(),
            new: new.clone(),
        });
        if hm {
            let reason = format!("email changed from {old}");
            self.push_history(now, &new, HmState::Pending, Some(&reason));
            self.enter_pending(now, &new, now + PENDING_DELAY);
        }
        events
    }

    /// Moves a user to Pending with a lookup at `due`.
    fn enter_pending(&mut self, now: Duration, email: &str, due: Duration) -> Vec<OrgEvent> {
        let events = self.transition(now, email, HmState::Pending, None);
        self.schedule_lookup(email, due);
        events
    }

    fn schedule_lookup(&mut self, email: &str, due: Duration) {
        if let Some(user) = self.users.get_mut(email) {
            user.lookup_at = Some(due);
            self.timers
                .insert((due, email.to_owned(), TimerKind::Lookup));
        }
    }

    /// Sets the state, records history, and says whether the user left or entered Active.
    fn transition(
        &mut self,
        now: Duration,
        email: &str,
        state: HmState,
        reason: Option<&str>,
    ) -> Vec<OrgEvent> {
        let Some(user) = self.users.get_mut(email) else {
            return Vec::new();
        };
        let was = user.state;
        user.state = state;
        match (was == HmState::NotEnabled, state == HmState::NotEnabled) {
            (true, false) => self.hm_enabled += 1,
            (false, true) => self.hm_enabled -= 1,
            _ => {}
        }
        user.reason = reason.map(str::to_owned);
        if state != HmState::Pending {
            user.lookup_at = None;
        }
        self.push_history(now, email, state, reason);
        match (was == HmState::Active, state == HmState::Active) {
            (false, true) => vec![OrgEvent::Activated(email.to_owned())],
            (true, false) => vec![OrgEvent::Deactivated(email.to_owned())],
            _ => Vec::new(),
        }
    }

    fn push_history(&mut self, now: Duration, email: &str, state: HmState, reason: Option<&str>) {
        if let Some(user) = self.users.get_mut(email) {
            if user.history.len() == HISTORY_ENTRIES_MAX {
                user.history.pop_front();
            }
            user.history.push_back(HistoryEntry {
                at_ms: ms(now),
                state,
                reason: reason.map(str::to_owned),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;
    use rand_chacha::ChaCha8Rng;

    const ALICE: &str = "alice@example.com";

    fn ents(list: &[Entitlement]) -> BTreeSet<Entitlement> {
        list.iter().copied().collect()
    }

    fn hm() -> BTreeSet<Entitlement> {
        ents(&[Entitlement::PaidLicence, Entitlement::HybridMessage])
    }

    fn org_with_alice() -> Org {
        let mut org = Org::new("example.com");
        org.add_user(ALICE, "pw").unwrap();
        org
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn hybrid_message_needs_a_paid_licence() {
        let mut org = org_with_alice();
        let free = ents(&[Entitlement::MessageFree, Entitlement::HybridMessage]);
        let err = org.set_entitlements(secs(0), ALICE, free).unwrap_err();
        assert_eq!(err.status(), 409);
        assert_eq!(org.user(ALICE).unwrap().state, HmState::NotEnabled);
    }

    #[test]
    fn pending_then_active_after_seconds() {
        let mut org = org_with_alice();
        assert!(
            org.set_entitlements(secs(0), ALICE, hm())
                .unwrap()
                .is_empty()
        );
        assert_eq!(org.user(ALICE).unwrap().state, HmState::Pending);
        assert!(org.tick(secs(4), |_| Lookup::Unique).is_empty(), "not yet");
        let events = org.tick(secs(5), |_| Lookup::Unique);
        assert_eq!(events, vec![OrgEvent::Activated(ALICE.into())]);
        assert!(org.is_hm_active(ALICE));
        let states: Vec<HmState> = org
            .user(ALICE)
            .unwrap()
            .history
            .iter()
            .map(|h| h.state)
            .collect();
        assert_eq!(states, [HmState::Pending, HmState::Active]);
    }

    #[test]
    fn duplicate_mail_id_and_missing_imp_user_are_errors() {
        let mut org = org_with_alice();
        org.add_user("bob@example.com", "pw").unwrap();
        org.set_entitlements(secs(0), ALICE, hm()).unwrap();
        org.set_entitlements(secs(0), "bob@example.com", hm())
            .unwrap();
        let events = org.tick(secs(5), |e| {
            if e == ALICE {
                Lookup::Duplicate
            } else {
                Lookup::NotFound
            }
        });
        assert!(events.is_empty());
        let alice = org.user(ALICE).unwrap();
        assert_eq!(alice.state, HmState::Error);
        assert_eq!(alice.reason.as_deref(), Some(REASON_DUPLICATE));
        assert_eq!(
            alice.history.back().unwrap().reason.as_deref(),
            Some(REASON_DUPLICATE)
        );
        let bob = org.user("bob@example.com").unwrap();
        assert_eq!(bob.reason.as_deref(), Some(REASON_NO_IMP_USER));
    }

    #[test]
    fn waits_while_no_connector_reported() {
        let mut org = org_with_alice();
        org.set_entitlements(secs(0), ALICE, hm()).unwrap();
        assert!(org.tick(secs(5), |_| Lookup::NotYetReported).is_empty());
        assert_eq!(org.user(ALICE).unwrap().state, HmState::Pending);
        assert_eq!(org.next_due(), Some(secs(10)));
        assert_eq!(org.tick(secs(10), |_| Lookup::Unique).len(), 1);
    }

    #[test]
    fn reactivate_retries_within_ten_minutes() {
        let mut org = org_with_alice();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        org.set_entitlements(secs(0), ALICE, hm()).unwrap();
        org.tick(secs(5), |_| Lookup::NotFound);
        org.reactivate(secs(100), ALICE, &mut rng).unwrap();
        assert_eq!(org.user(ALICE).unwrap().state, HmState::Pending);
        let due = org.next_due().unwrap();
        assert!(
            due >= secs(105) && due <= secs(100) + REACTIVATION_DELAY_MAX,
            "{due:?}"
        );
        assert_eq!(
            org.tick(due, |_| Lookup::Unique),
            vec![OrgEvent::Activated(ALICE.into())]
        );
        // Not enabled: nothing to reactivate.
        org.add_user("carol@example.com", "pw").unwrap();
        let err = org
            .reactivate(secs(0), "carol@example.com", &mut rng)
            .unwrap_err();
        assert_eq!(err.status(), 409);
    }

    #[test]
    fn disabling_deactivates() {
        let mut org = org_with_alice();
        org.set_entitlements(secs(0), ALICE, hm()).unwrap();
        org.tick(secs(5), |_| Lookup::Unique);
        assert_eq!(org.hm_enabled_count(), 1);
        let events = org
            .set_entitlements(secs(6), ALICE, ents(&[Entitlement::PaidLicence]))
            .unwrap();
        assert_eq!(org.hm_enabled_count(), 0);
        assert_eq!(events, vec![OrgEvent::Deactivated(ALICE.into())]);
        assert_eq!(org.user(ALICE).unwrap().state, HmState::NotEnabled);
    }

    #[test]
    fn email_change_is_picked_up_within_ten_minutes() {
        let mut org = org_with_alice();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        org.set_entitlements(secs(0), ALICE, hm()).unwrap();
        org.tick(secs(5), |_| Lookup::Unique);
        let new = "alice.smith@example.com";
        let due = org.change_email(secs(10), ALICE, new, &mut rng).unwrap();
        assert!(due <= secs(10) + EMAIL_PICKUP_DELAY_MAX);
        assert!(org.user(ALICE).is_some(), "old email until pickup");
        let events = org.tick(due, |_| Lookup::Unique);
        assert_eq!(
            events,
            vec![
                OrgEvent::Deactivated(ALICE.into()),
                OrgEvent::EmailChanged {
                    old: ALICE.into(),
                    new: new.into()
                }
            ]
        );
        assert!(org.user(ALICE).is_none());
        assert_eq!(org.user(new).unwrap().state, HmState::Pending);
        let events = org.tick(due + PENDING_DELAY, |_| Lookup::Unique);
        assert_eq!(events, vec![OrgEvent::Activated(new.into())]);
        assert!(org.check_password(new, "pw"));
    }

    #[test]
    fn bad_emails_and_duplicates_are_refused() {
        let mut org = org_with_alice();
        for bad in [
            "",
            "no-at",
            "@x",
            "x@",
            "Alice@example.com",
            "a b@x",
            "a@b@c",
        ] {
            assert_eq!(org.add_user(bad, "pw").unwrap_err().status(), 400, "{bad}");
        }
        assert_eq!(org.add_user(ALICE, "pw").unwrap_err().status(), 409);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        org.add_user("bob@example.com", "pw").unwrap();
        let err = org
            .change_email(secs(0), ALICE, "bob@example.com", &mut rng)
            .unwrap_err();
        assert_eq!(err.status(), 409);
    }

    #[test]
    fn history_is_bounded() {
        let mut org = org_with_alice();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        org.set_entitlements(secs(0), ALICE, hm()).unwrap();
        for i in 0..100 {
            org.reactivate(secs(i), ALICE, &mut rng).unwrap();
        }
        assert_eq!(org.user(ALICE).unwrap().history.len(), HISTORY_ENTRIES_MAX);
    }
}
