//! The IM&P user directory (the `enduser` table) and node database that survives restarts.

use connector::proto::xml::Element;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// One end user as IM&P knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// `userid`.
    pub userid: String,
    /// Bare JID (lowercase).
    pub jid: String,
    /// `mailid`, absent for users without one.
    pub email: Option<String>,
    /// Password for SASL PLAIN.
    pub password: String,
    /// Host name of the node the user is homed on.
    pub home: String,
}

/// Every user of a cluster, by bare JID, and who sees whose presence.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    users: BTreeMap<String, UserRecord>,
    /// Roster: bare JID → contacts (bare JIDs), symmetric, sorted, without duplicates.
    contacts: BTreeMap<String, Vec<String>>,
}

/// Most contacts per user kept in the roster: bounds the presence fan-out of one update.
/// Jabber deployments cap rosters in the hundreds; the chat workload uses a handful.
pub const CONTACTS_PER_USER_MAX: usize = 500;

impl Directory {
    /// Builds the directory from records.
    pub fn new(users: impl IntoIterator<Item = UserRecord>) -> Self {
        Self {
            users: users.into_iter().map(|u| (u.jid.clone(), u)).collect(),
            contacts: BTreeMap::new(),
        }
    }
    /// Adds roster entries: each pair makes both users contacts of each other (presence is
    /// shared both ways, like a mutual subscription). Pairs naming unknown users are ignored;
    /// rosters stop growing at [`CONTACTS_PER_USER_MAX`].
    #[must_use]
    pub fn with_contacts(mut self, pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        for (a, b) in pairs {
            if a == b || !self.users.contains_key(&a) || !self.users.contains_key(&b) {
                continue;
            }
            for (x, y) in [(&a, &b), (&b, &a)] {
                let list = self.contacts.entry(x.clone()).or_default();
                if let Err(pos) = list.binary_search(y)
                    && list.len() < CONTACTS_PER_USER_MAX
                {
                    list.insert(pos, y.clone());
                }
            }
        }
        self
    }
    /// The contacts of a user (who see its presence, and whose presence it sees).
    pub fn contacts(&self, bare: &str) -> &[String] {
        self.contacts.get(bare).map(Vec::as_slice).unwrap_or(&[])
    }
    /// Looks up a user by bare JID.
    pub fn get(&self, bare: &str) -> Option<&UserRecord> {
        self.users.get(bare)
    }
    /// Looks up a user by SASL authentication id (the userid or the JID local part).
    pub fn by_authcid(&self, authcid: &str, domain: &str) -> Option<&UserRecord> {
        self.users
            .get(&format!("{}@{domain}", authcid.to_ascii_lowercase()))
    }
    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
    /// All users in JID order.
    pub fn iter(&self) -> impl Iterator<Item = &UserRecord> {
        self.users.values()
    }
}

/// A message held for a user with no session (offline storage, spec 46-48).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The stanza as it arrived (with `from` stamped).
    pub stanza: Element,
    /// When it was stored, for the XEP-0203 delay stamp.
    pub at: Duration,
}

/// Per-user offline queues bound: a user away for days does not grow memory without limit.
/// IM&P's own default is far lower per user; 1,000 covers a 72 h absence at realistic rates.
pub const OFFLINE_PER_USER_MAX: usize = 1_000;

/// What a node keeps across a restart (turmoil `bounce` drops everything else).
#[derive(Debug, Default)]
pub struct NodeDb {
    /// Offline messages per bare JID, oldest first.
    pub offline: BTreeMap<String, VecDeque<StoredMessage>>,
    /// Offline messages refused because a queue was full.
    pub offline_dropped: u64,
    /// A node with PRG settings ran on this database before: after a restart it waits for its
    /// peer to say who serves its users (`prg.rs`).
    pub prg_started: bool,
    /// The PRG's high availability as last changed by the administrator (spec 61), which a
    /// restarted node keeps; `None`: as configured at start.
    pub prg_high_availability: Option<bool>,
    /// The PRG serving view as last known (home → serving node, epoch). Who serves whom lives
    /// in the database, so a restarted node resumes from it at the epochs the other nodes and
    /// clusters learned, rather than from the configuration at epoch 0 (`prg.rs`).
    pub prg_view: Option<BTreeMap<String, (String, u64)>>,
}

impl NodeDb {
    /// Stores a message; returns false (and counts) when the user's queue is full.
    pub fn store(&mut self, bare: &str, msg: StoredMessage) -> bool {
        let q = self.offline.entry(bare.to_string()).or_default();
        if q.len() >= OFFLINE_PER_USER_MAX {
            self.offline_dropped += 1;
            return false;
        }
        q.push_back(msg);
        true
    }
    /// Takes every stored message of a user, oldest first.
    pub fn take(&mut self, bare: &str) -> VecDeque<StoredMessage> {
        self.offline.remove(bare).unwrap_or_default()
    }
}
