//! Webex → Jabber presence translation (spec 50-55) and the session-lifetime rule
//! ([`wants_session`]). Never Jabber → Webex (spec 50).
//!
//! | what the connector knows (spec 52, 55) | Jabber device presence | session |
//! |---|---|---|
//! | hidden ("Show statuses" off) | away, "@ Webex" | kept, never destroyed |
//! | no use of Webex **or** Jabber for more than 72 h | offline | destroyed |
//! | DND (30 min – 24 h, not expired) | dnd, "@ Webex" (user level, spec 54) | kept |
//! | out of office (calendar) | away, "@ Webex" | kept |
//! | active in Webex within 10 min | available, "@ Webex" | kept |
//! | otherwise (Webex 10 min – 72 h ago, never, or only Jabber in use) | away, "@ Webex" | kept |
//!
//! "Jabber use" is what the connector can see: messages, chat states and markers the user
//! sends from Jabber that cross its session, and the moment the user was assigned to it (it
//! cannot know earlier use, so a user who never uses Webex gets a session and Webex-derived
//! presence, spec 55). Hidden is checked first because a hidden user's activity must not leak
//! through presence; the 72 h rule next because an offline user has no session to publish
//! from; DND then, because it is an explicit user choice that persists until it expires.

use std::time::Duration;

/// The Available/Away boundary (spec 52, timers table).
pub const AVAILABLE_WITHIN: Duration = Duration::from_secs(10 * 60);
/// The activity window after which the connector destroys a user's session (spec 52).
pub const ACTIVE_WINDOW: Duration = Duration::from_secs(72 * 3600);
/// The presence poll interval (spec 51).
pub const POLL_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// The status text that marks Webex-derived presence in Jabber.
pub const STATUS_TEXT: &str = "@ Webex";

/// What the cloud's presence service reports for one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WebexPresence {
    /// Last activity in Webex, if ever.
    pub last_active: Option<Duration>,
    /// DND until this time, if set.
    pub dnd_until: Option<Duration>,
    /// Out of office (calendar).
    pub out_of_office: bool,
    /// "Show statuses" off.
    pub hidden: bool,
}

/// The XMPP presence the connector publishes as the user's Webex device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JabberPresence {
    /// `<presence>` with no `<show>`.
    Available,
    /// `<show>away</show>`.
    Away,
    /// `<show>dnd</show>`.
    Dnd,
    /// No session: the device is gone (unavailable).
    Offline,
}

impl JabberPresence {
    /// The `<show>` value, if any.
    pub fn show(self) -> Option<&'static str> {
        match self {
            JabberPresence::Available | JabberPresence::Offline => None,
            JabberPresence::Away => Some("away"),
            JabberPresence::Dnd => Some("dnd"),
        }
    }
}

/// Whether `at` (if any) lies within `window` before `now`.
fn within(at: Option<Duration>, window: Duration, now: Duration) -> bool {
    at.is_some_and(|t| now.saturating_sub(t) <= window)
}

/// Whether the user used Webex within 72 h: IM&P sends a Jabber message to the connector for
/// this user only then (spec 33, 56).
pub fn webex_active(p: &WebexPresence, now: Duration) -> bool {
    within(p.last_active, ACTIVE_WINDOW, now)
}

/// Maps what the connector knows of a user (Webex facts, and `jabber_last`, the last Jabber
/// use it saw) to the Jabber device presence at time `now` (spec 52-55).
pub fn translate(
    p: &WebexPresence,
    jabber_last: Option<Duration>,
    now: Duration,
) -> JabberPresence {
    if p.hidden {
        return JabberPresence::Away;
    }
    if !wants_session(p, jabber_last, now) {
        return JabberPresence::Offline;
    }
    if p.dnd_until.is_some_and(|until| until > now) {
        return JabberPresence::Dnd;
    }
    if !p.out_of_office && within(p.last_active, AVAILABLE_WITHIN, now) {
        JabberPresence::Available
    } else {
        JabberPresence::Away
    }
}

/// Whether the user should have a connector session at `now`: used Webex or Jabber within
/// 72 h, or hidden (whose session is never destroyed, spec 52).
pub fn wants_session(p: &WebexPresence, jabber_last: Option<Duration>, now: Duration) -> bool {
    p.hidden || webex_active(p, now) || within(jabber_last, ACTIVE_WINDOW, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3600;

    fn at(now_s: u64, last_active_s: Option<u64>) -> WebexPresence {
        WebexPresence {
            last_active: last_active_s.map(|s| Duration::from_secs(now_s - s)),
            ..Default::default()
        }
    }

    #[test]
    fn every_row_of_spec_52() {
        let now = Duration::from_secs(100 * H);
        let n = 100 * H;
        assert_eq!(
            translate(&at(n, Some(60)), None, now),
            JabberPresence::Available
        );
        assert_eq!(
            translate(&at(n, Some(600)), None, now),
            JabberPresence::Available
        );
        assert_eq!(
            translate(&at(n, Some(601)), None, now),
            JabberPresence::Away
        );
        assert_eq!(
            translate(&at(n, Some(72 * H)), None, now),
            JabberPresence::Away
        );
        assert_eq!(
            translate(&at(n, Some(72 * H + 1)), None, now),
            JabberPresence::Offline
        );
        assert_eq!(translate(&at(n, None), None, now), JabberPresence::Offline);
        let ooo = WebexPresence {
            out_of_office: true,
            ..at(n, Some(60))
        };
        assert_eq!(translate(&ooo, None, now), JabberPresence::Away);
        let dnd = WebexPresence {
            dnd_until: Some(now + Duration::from_secs(1800)),
            ..at(n, Some(60))
        };
        assert_eq!(translate(&dnd, None, now), JabberPresence::Dnd);
        let expired = WebexPresence {
            dnd_until: Some(now - Duration::from_secs(1)),
            ..dnd
        };
        assert_eq!(translate(&expired, None, now), JabberPresence::Available);
        let hidden = WebexPresence {
            hidden: true,
            ..at(n, None)
        };
        assert_eq!(translate(&hidden, None, now), JabberPresence::Away);
    }

    #[test]
    fn sessions_follow_the_72_hour_window_except_hidden() {
        let now = Duration::from_secs(100 * H);
        assert!(wants_session(&at(100 * H, Some(72 * H)), None, now));
        assert!(!wants_session(&at(100 * H, Some(72 * H + 1)), None, now));
        assert!(!wants_session(&at(100 * H, None), None, now));
        let hidden = WebexPresence {
            hidden: true,
            ..at(100 * H, None)
        };
        assert!(wants_session(&hidden, None, now));
    }
}
