//! The recording interface between client models and the simulation's observer.
//!
//! Client models report what their users sent and received; the observer (in `sim`) keeps the
//! history and the trace digest. Recording never influences behaviour: a run must give the same
//! digest whether or not anyone reads the record.

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
    /// Digest of its text ([`crate::clients::body::body_digest`]); `None` for what is not
    /// compared (file shares).
    pub body: Option<u64>,
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
    /// Digest of the text as received; `None` for what is not compared (file shares).
    pub body: Option<u64>,
}

/// What one attempt to post a message to the cloud came to, as the sending client saw it.
/// The observer keeps the last fate of each message a client still holds, so a message the
/// client held unsent when its host went down is told apart from one the bridge lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostFate {
    /// The cloud answered with an error status (5xx, 401, 408, 429): it did not take the post;
    /// the client keeps it to send again.
    Kept,
    /// No answer (the connection failed or closed): the cloud may have taken it; the client
    /// keeps it to send again.
    Unanswered,
    /// The cloud took it (2xx).
    Taken,
    /// The cloud refused it for good (a 4xx sending again cannot change); the client dropped it.
    Dropped,
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

/// Tags of Webex group-space posts start with this (`[[group-space.<user>…]]`): group spaces
/// are never bridged (spec 42), so these posts are not part of the 1:1 message history; the
/// observer keeps their deliveries apart, by client, for the `group_chat` check.
pub const GROUP_SPACE_TAG_PREFIX: &str = "group-space.";

/// What a client saw or did in a group chat (XEP-0045 room) or a Webex group space (spec 42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEvent {
    /// The room's bare JID, or the Webex space id.
    pub room: String,
    /// The user (bare JID / email) whose client reports.
    pub user: String,
    /// That client's device.
    pub device: String,
    /// What happened.
    pub kind: GroupEventKind,
}

/// The kinds of [`GroupEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEventKind {
    /// The user created the room (`persistent` once configured so).
    Created {
        /// Made persistent by its owner.
        persistent: bool,
    },
    /// The user sent an invitation to `invitee` (bare JID).
    Invited {
        /// Who was invited.
        invitee: String,
    },
    /// An invitation from `from` reached the user's device.
    InviteReceived {
        /// The inviter's JID.
        from: String,
    },
    /// The device's own presence came back from the room (status 110): it is an occupant.
    Joined,
    /// The device's own unavailable presence came back: it is out, with these status codes.
    Left {
        /// MUC status codes (333: removed by the service).
        codes: Vec<u16>,
    },
    /// The user sent a groupchat message with this id (`[[id]]` tag in the body).
    Sent {
        /// Message id.
        id: String,
    },
    /// A groupchat message reached the device.
    Received {
        /// Message id (its tag).
        id: String,
        /// The sender's nickname.
        from: String,
    },
    /// The device saw an occupant's presence in the room.
    Presence {
        /// The occupant's real bare JID.
        occupant: String,
        /// False for `type='unavailable'`.
        available: bool,
        /// `<show>`, absent for plain available.
        show: Option<String>,
        /// `<status>`.
        status: Option<String>,
        /// MUC status codes.
        codes: Vec<u16>,
    },
    /// The room answered with an error stanza.
    Error {
        /// The stanza (`message`, `presence`, `iq`).
        stanza: String,
        /// Its id, if any.
        id: Option<String>,
        /// The RFC 6120 condition.
        condition: String,
    },
    /// A Webex user created a group space with these members (emails).
    SpaceCreated {
        /// Members, the creator included.
        members: Vec<String>,
    },
    /// A Webex user posted to a group space (the post's tag id).
    SpacePosted {
        /// Message id.
        id: String,
    },
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
    /// What an attempt to post message `id` to the cloud came to ([`PostFate`]). Ignored by
    /// default.
    fn post_fate(&self, host: &str, id: &str, fate: PostFate) {
        let _ = (host, id, fate);
    }
    /// A group chat or group space event (spec 42). Ignored by default.
    fn group(&self, host: &str, ev: GroupEvent) {
        let _ = (host, ev);
    }
}
