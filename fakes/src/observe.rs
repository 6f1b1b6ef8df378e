//! The recording interface between client models and the simulation's observer.
//!
//! Client models report what their users sent and received; the observer (in `sim`) keeps the
//! history and the trace digest. Recording never influences behaviour (DESIGN.md section 1).

/// Which client a user acted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClientKind {
    /// Cisco Jabber (XMPP c2s).
    Jabber,
    /// Webex App.
    Webex,
}

/// A message a user sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Globally unique message id (the stanza or activity id).
    pub id: String,
    /// Sender, bare JID / email.
    pub from: String,
    /// Recipient, bare JID / email.
    pub to: String,
    /// The client it was sent from.
    pub client: ClientKind,
    /// The device (resource) it was sent from.
    pub device: String,
}

/// A message a device received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Message id as carried on the wire.
    pub id: String,
    /// Sender.
    pub from: String,
    /// The user whose device received it.
    pub to: String,
    /// That device.
    pub device: String,
    /// The client of that device.
    pub client: ClientKind,
    /// Delivered late from offline storage (has a delay stamp).
    pub delayed: bool,
    /// A carbon copy of the user's own or another device's conversation.
    pub carbon: bool,
}

/// A sent message that came back to its sender's device as an error stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The id of the message that was refused.
    pub id: String,
    /// The user whose device got the error (the sender).
    pub user: String,
    /// That device.
    pub device: String,
    /// The RFC 6120 stanza error condition (`service-unavailable`, ...).
    pub condition: String,
    /// The error's text, such as "Message could not be delivered" (spec 46).
    pub text: String,
}

/// A presence as a device published it, or as a device saw a contact's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEvent {
    /// Publisher (bare JID) when published; the viewing user when seen.
    pub user: String,
    /// The publishing device, or the viewing device.
    pub device: String,
    /// When seen: the full JID it came from (the composed presence's resource); when
    /// published: empty.
    pub from: String,
    /// A manual (user-set) presence rather than device presence (spec 53).
    pub manual: bool,
    /// `<show>`, absent for plain available.
    pub show: Option<String>,
    /// `<status>` text.
    pub status: Option<String>,
    /// False for `type='unavailable'` (when published manual: the manual presence is cleared).
    pub available: bool,
}

/// Where client models report. Implemented by the simulation's observer.
pub trait Recorder {
    /// A user sent a message.
    fn sent(&self, host: &str, ev: Sent);
    /// A device received a message.
    fn delivered(&self, host: &str, ev: Delivered);
    /// A device's session came up or went down.
    fn session(&self, host: &str, user: &str, device: &str, up: bool, reason: &str);
    /// A rare condition was reached ("sometimes" coverage).
    fn note(&self, what: &str);
    /// A message the user sent came back as an error. The default only notes it, for
    /// recorders that do not keep refusals.
    fn refused(&self, host: &str, ev: Refused) {
        let _ = host;
        self.note(&format!("message refused: {}", ev.condition));
    }
    /// A device published a presence. Ignored by default.
    fn presence_published(&self, host: &str, ev: PresenceEvent) {
        let _ = (host, ev);
    }
    /// A device received a contact's presence. Ignored by default.
    fn presence_seen(&self, host: &str, ev: PresenceEvent) {
        let _ = (host, ev);
    }
}
