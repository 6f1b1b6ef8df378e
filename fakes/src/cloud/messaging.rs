//! Spaces and activities: the messaging service, storing ciphertext only.
//!
//! ## Model
//!
//! - A space is direct (1:1, exactly two members, at most one per pair) or a group. Group spaces
//!   exist for Webex users but are never bridged to Jabber (spec 42): the cloud routes only
//!   direct-space activities to connectors.
//! - Each space gets its key from the KMS at creation; its URI (`kms://…/keys/<uuid>`) is the
//!   `kid` every encrypted activity in the space must carry.
//! - Activities ([`Verb`]): `post` (text), `share` (a file link), `delete`, `read`; an edit is a
//!   new `post` carrying `edit_of` followed by a `delete` of the original (spec 40, and design
//!   section 9: new text first, then the delete notice). Deleting a shared file says so
//!   (`target_verb: share`, spec 43). Typing is ephemeral: no sequence number, it stops by itself
//!   after [`TYPING_EXPIRY`] (spec 37).
//! - Every activity has a unique, deterministic id (`act-<n>`) and a per-space sequence number
//!   (1, 2, …) giving the space's order. A client may name its post with a `client_id`; posting
//!   the same `client_id` again returns the original activities marked duplicate and stores
//!   nothing (idempotent retry after a lost response).
//! - The cloud never sees plaintext: text and file links arrive as JWE compact tokens whose `kid`
//!   must be the space's key; anything else is refused ([`check_ciphertext`]). The cloud does
//!   not look inside; by convention a `share` encrypts the JSON `{"url": …, "name": …}`. A
//!   delete carries the deleted activity's ciphertext (`target_encrypted_text`).
//! - Read state: each member's last read sequence number; unread = posts and shares by others
//!   after it, not deleted.
//!
//! Memory is bounded: a space keeps its last [`ACTIVITIES_PER_SPACE_MAX`] activities, compactly
//! ([`super::stored`]).

use super::error::CloudError;
use super::stored::{Names, Stored, activity_number};
use connector::proto::jwe;
pub use connector::proto::webex::{Activity, RequestVerb, SpaceKind, Verb};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// Activities kept per space: a long 1:1 conversation's worth; older ones are dropped (clients
/// catching up further back get what is left).
pub const ACTIVITIES_PER_SPACE_MAX: usize = 10_000;
/// Longest encrypted text or link accepted, in bytes (one definition with the wire types, so
/// that the connector refuses to its Jabber sender what the cloud would refuse).
pub use connector::proto::webex::ENCRYPTED_TEXT_BYTES_MAX;
/// Members of a group space. The simulation's workloads use small groups.
pub const MEMBERS_PER_SPACE_MAX: usize = 100;
// A key for the largest space names every member and a connector per member: the KMS host
// must accept that many principals.
const _: () = assert!(2 * MEMBERS_PER_SPACE_MAX <= crate::kms::service::KMS_PRINCIPALS_MAX);
/// Longest client-chosen activity id, in bytes.
pub const CLIENT_ID_BYTES_MAX: usize = 128;
/// Activities returned by one catch-up read.
pub const ACTIVITIES_PER_READ_MAX: usize = 500;
/// How long a typing indicator lasts without a stop (spec 37).
pub const TYPING_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// A request to add activities to a space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewActivity {
    /// What to do.
    pub verb: RequestVerb,
    /// On whose behalf (a member's email).
    pub actor: String,
    /// The JWE for post, edit and share.
    pub encrypted_text: Option<String>,
    /// The activity to edit, delete or read up to.
    pub target: Option<String>,
    /// Idempotency key chosen by the client.
    pub client_id: Option<String>,
    /// The posting connector, if any.
    pub via_connector: Option<String>,
}

/// The result of a post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The activities stored (two for an edit), or found again for a duplicate.
    pub activities: Vec<Activity>,
    /// The `client_id` was seen before: nothing new was stored.
    pub duplicate: bool,
}

/// One space.
#[derive(Debug, Clone)]
pub struct Space {
    /// `space-<n>`.
    pub id: String,
    /// Direct or group.
    pub kind: SpaceKind,
    /// Member emails, sorted.
    pub members: Vec<String>,
    /// The space key's URI at the KMS.
    pub key_uri: String,
    activities: VecDeque<Stored>,
    next_seq: u64,
    last_read: BTreeMap<String, u64>,
    /// Numbers of the deleted activities.
    deleted: BTreeSet<u64>,
    /// (actor, client id) → numbers of the activities it made.
    client_ids: BTreeMap<(Arc<str>, Box<str>), Vec<u64>>,
}

impl Space {
    /// Unread activities (posts and shares by others, not deleted) for `member`.
    pub fn unread(&self, member: &str) -> u32 {
        let read = self.last_read.get(member).copied().unwrap_or(0);
        let n = self
            .activities
            .iter()
            .filter(|a| a.seq > read && *a.actor != *member)
            .filter(|a| matches!(a.verb, Verb::Post | Verb::Share))
            .filter(|a| !self.deleted.contains(&a.number))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Whether a member's post with this `client_id` is stored (a connector posts a Jabber
    /// message with its sender as the actor, whichever node posts it).
    pub fn has_client_id(&self, client_id: &str) -> bool {
        self.members.iter().any(|m| {
            self.client_ids
                .contains_key(&(Arc::from(m.as_str()), Box::from(client_id)))
        })
    }

    /// The last sequence number used (0: empty).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// The activity with this id, if the space still holds it.
    pub fn find(&self, id: &str) -> Option<Activity> {
        self.stored(id).map(|a| self.activity(a))
    }

    /// The stored activity with this id.
    fn stored(&self, id: &str) -> Option<&Stored> {
        let n = activity_number(id)?;
        self.stored_numbered(n)
    }

    /// The stored activity numbered `n`.
    fn stored_numbered(&self, n: u64) -> Option<&Stored> {
        self.activities.iter().find(|a| a.number == n)
    }

    /// A stored activity as clients receive it.
    fn activity(&self, a: &Stored) -> Activity {
        a.activity(&self.id, &self.key_uri)
    }
}

/// Checks that `token` is a JWE compact token made with the space key `key_uri`: the cloud
/// stores ciphertext only (docs/protocols.md, KMS).
///
/// # Errors
/// [`CloudError::Invalid`] for anything else (plaintext, another key, too long).
pub fn check_ciphertext(token: &str, key_uri: &str) -> Result<(), CloudError> {
    if token.len() > ENCRYPTED_TEXT_BYTES_MAX {
        return Err(CloudError::Invalid(format!(
            "encrypted_text longer than {ENCRYPTED_TEXT_BYTES_MAX} bytes"
        )));
    }
    let kid = jwe::key_id(token)
        .map_err(|e| CloudError::Invalid(format!("encrypted_text is not a JWE: {e}")))?;
    if kid != key_uri {
        return Err(CloudError::Invalid(format!(
            "encrypted_text kid {kid} is not the space key {key_uri}"
        )));
    }
    Ok(())
}

/// All spaces.
#[derive(Debug, Clone, Default)]
pub struct Messaging {
    spaces: BTreeMap<String, Space>,
    /// Sorted member pair → direct space id.
    direct: BTreeMap<(String, String), String>,
    member_spaces: BTreeMap<String, BTreeSet<String>>,
    next_space: u64,
    next_activity: u64,
    /// (space, member) → typing until.
    typing: BTreeMap<(String, String), Duration>,
    typing_timers: BTreeSet<(Duration, String, String)>,
    /// Actors and connectors named by stored activities, each kept once.
    names: Names,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

impl Messaging {
    /// No spaces.
    pub fn new() -> Self {
        Self::default()
    }

    /// The space with this id.
    pub fn space(&self, id: &str) -> Option<&Space> {
        self.spaces.get(id)
    }

    /// The direct space of two users, if it exists.
    pub fn direct_space(&self, a: &str, b: &str) -> Option<&Space> {
        self.direct
            .get(&pair(a, b))
            .and_then(|id| self.spaces.get(id))
    }

    /// Ids of the spaces `email` is a member of.
    pub fn spaces_of(&self, email: &str) -> Vec<String> {
        self.member_spaces
            .get(email)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of spaces.
    pub fn space_count(&self) -> usize {
        self.spaces.len()
    }

    /// Checks a member list; returns it sorted and deduplicated.
    ///
    /// # Errors
    /// [`CloudError::Invalid`] for a direct space without exactly two distinct members or a
    /// group outside 2..=[`MEMBERS_PER_SPACE_MAX`].
    pub fn check_members(kind: SpaceKind, members: &[String]) -> Result<Vec<String>, CloudError> {
        let set: BTreeSet<String> = members.iter().cloned().collect();
        let ok = match kind {
            SpaceKind::Direct => set.len() == 2,
            SpaceKind::Group => (2..=MEMBERS_PER_SPACE_MAX).contains(&set.len()),
        };
        if !ok {
            return Err(CloudError::Invalid(format!(
                "a {kind:?} space needs {} distinct members, got {}",
                if kind == SpaceKind::Direct {
                    "2"
                } else {
                    "2 to 100"
                },
                set.len()
            )));
        }
        Ok(set.into_iter().collect())
    }

    /// The id the next space will get (the KMS key is created for it before
    /// [`Messaging::create_space`]).
    pub fn next_space_id(&self) -> String {
        format!("space-{}", self.next_space + 1)
    }

    /// Creates a space with the id from [`Messaging::next_space_id`], members checked by
    /// [`Messaging::check_members`].
    pub fn create_space(
        &mut self,
        kind: SpaceKind,
        members: Vec<String>,
        key_uri: String,
    ) -> &Space {
        let id = self.next_space_id();
        self.next_space += 1;
        if kind == SpaceKind::Direct && members.len() == 2 {
            self.direct
                .insert(pair(&members[0], &members[1]), id.clone());
        }
        for m in &members {
            self.member_spaces
                .entry(m.clone())
                .or_default()
                .insert(id.clone());
        }
        let space = Space {
            id: id.clone(),
            kind,
            members,
            key_uri,
            activities: VecDeque::new(),
            next_seq: 1,
            last_read: BTreeMap::new(),
            deleted: BTreeSet::new(),
            client_ids: BTreeMap::new(),
        };
        self.spaces.entry(id).or_insert(space)
    }

    /// Renames a member everywhere (email change). Direct-space lookups follow.
    pub fn rename_member(&mut self, old: &str, new: &str) {
        let Some(ids) = self.member_spaces.remove(old) else {
            return;
        };
        for id in &ids {
            let Some(space) = self.spaces.get_mut(id) else {
                continue;
            };
            for m in &mut space.members {
                if m == old {
                    *m = new.to_owned();
                }
            }
            space.members.sort();
            if let Some(read) = space.last_read.remove(old) {
                space.last_read.insert(new.to_owned(), read);
            }
            if space.kind == SpaceKind::Direct
                && let [a, b] = space.members.as_slice()
            {
                self.direct.retain(|_, v| v != id);
                self.direct.insert(pair(a, b), id.clone());
            }
        }
        self.member_spaces.insert(new.to_owned(), ids);
    }

    /// Adds activities to a space.
    ///
    /// # Errors
    /// [`CloudError::NotFound`] for an unknown space or target; [`CloudError::Forbidden`] for a
    /// non-member actor or an edit/delete of someone else's activity; [`CloudError::Invalid`]
    /// for missing or non-JWE text, a bad target or client id; [`CloudError::Conflict`] for an
    /// edit/delete of a deleted activity.
    pub fn post(
        &mut self,
        now: Duration,
        space_id: &str,
        new: NewActivity,
    ) -> Result<Posted, CloudError> {
        let space = self
            .spaces
            .get(space_id)
            .ok_or_else(|| CloudError::NotFound(format!("space {space_id}")))?;
        if !space.members.contains(&new.actor) {
            return Err(CloudError::Forbidden(format!(
                "{} is not a member of {space_id}",
                new.actor
            )));
        }
        if let Some(cid) = &new.client_id {
            if cid.is_empty() || cid.len() > CLIENT_ID_BYTES_MAX {
                return Err(CloudError::Invalid(
                    "client_id must be 1 to 128 bytes".into(),
                ));
            }
            let key = (Arc::from(new.actor.as_str()), Box::from(cid.as_str()));
            if let Some(ids) = space.client_ids.get(&key) {
                let activities = ids
                    .iter()
                    .filter_map(|&n| space.stored_numbered(n))
                    .map(|a| space.activity(a))
                    .collect();
                return Ok(Posted {
                    activities,
                    duplicate: true,
                });
            }
        }
        let planned = plan(space, &new)?;
        let activities = self.store(now, space_id, &new, planned);
        Ok(Posted {
            activities,
            duplicate: false,
        })
    }

    fn store(
        &mut self,
        now: Duration,
        space_id: &str,
        new: &NewActivity,
        planned: Vec<Planned>,
    ) -> Vec<Activity> {
        let mut stored = Vec::new();
        let mut numbers = Vec::new();
        let actor = self.names.get(&new.actor);
        let via = new.via_connector.as_deref().map(|c| self.names.get(c));
        for p in planned {
            self.next_activity += 1;
            let Some(space) = self.spaces.get_mut(space_id) else {
                break;
            };
            let a = Stored {
                number: self.next_activity,
                seq: space.next_seq,
                verb: p.verb,
                actor: actor.clone(),
                text: p.text.map(Arc::from),
                target: p.target,
                target_verb: p.target_verb,
                target_text: p.target_text,
                edit_of: p.edit_of,
                client_id: new.client_id.as_deref().map(Box::from),
                via_connector: via.clone(),
                published_ms: ms(now),
            };
            space.next_seq += 1;
            apply(space, &a);
            stored.push(space.activity(&a));
            numbers.push(a.number);
            if space.activities.len() == ACTIVITIES_PER_SPACE_MAX {
                space.activities.pop_front();
            }
            space.activities.push_back(a);
        }
        if let (Some(cid), Some(space)) = (&new.client_id, self.spaces.get_mut(space_id)) {
            space
                .client_ids
                .insert((actor, Box::from(cid.as_str())), numbers);
            if space.client_ids.len() > ACTIVITIES_PER_SPACE_MAX {
                space.client_ids.pop_first();
            }
        }
        stored
    }

    /// Activities of a space after sequence number `after`, oldest first, at most
    /// [`ACTIVITIES_PER_READ_MAX`].
    ///
    /// # Errors
    /// [`CloudError::NotFound`] for an unknown space.
    pub fn activities_after(
        &self,
        space_id: &str,
        after: u64,
    ) -> Result<Vec<Activity>, CloudError> {
        let space = self
            .spaces
            .get(space_id)
            .ok_or_else(|| CloudError::NotFound(format!("space {space_id}")))?;
        Ok(space
            .activities
            .iter()
            .filter(|a| a.seq > after)
            .take(ACTIVITIES_PER_READ_MAX)
            .map(|a| space.activity(a))
            .collect())
    }

    /// Typing starts (`on`) or stops in a space. Returns whether the state changed (a repeated
    /// start only extends the expiry).
    ///
    /// # Errors
    /// [`CloudError::NotFound`] for an unknown space, [`CloudError::Forbidden`] for a non-member.
    pub fn typing(
        &mut self,
        now: Duration,
        space_id: &str,
        actor: &str,
        on: bool,
    ) -> Result<bool, CloudError> {
        let space = self
            .spaces
            .get(space_id)
            .ok_or_else(|| CloudError::NotFound(format!("space {space_id}")))?;
        if !space.members.iter().any(|m| m == actor) {
            return Err(CloudError::Forbidden(format!(
                "{actor} is not a member of {space_id}"
            )));
        }
        let key = (space_id.to_owned(), actor.to_owned());
        if on {
            let until = now + TYPING_EXPIRY;
            let was = self.typing.insert(key, until);
            self.typing_timers
                .insert((until, space_id.to_owned(), actor.to_owned()));
            Ok(was.is_none())
        } else {
            Ok(self.typing.remove(&key).is_some())
        }
    }

    /// Whether `actor` is typing in the space at `now`.
    pub fn is_typing(&self, now: Duration, space_id: &str, actor: &str) -> bool {
        self.typing
            .get(&(space_id.to_owned(), actor.to_owned()))
            .is_some_and(|&until| until > now)
    }

    /// When the next typing indicator expires.
    pub fn next_due(&self) -> Option<Duration> {
        self.typing_timers.first().map(|(t, _, _)| *t)
    }

    /// Expires typing indicators (spec 37): returns the (space, actor) pairs that stopped.
    pub fn tick(&mut self, now: Duration) -> Vec<(String, String)> {
        let mut stopped = Vec::new();
        while let Some((due, _, _)) = self.typing_timers.first()
            && *due <= now
        {
            let Some((due, space, actor)) = self.typing_timers.pop_first() else {
                break;
            };
            let key = (space, actor);
            if self.typing.get(&key) == Some(&due) {
                self.typing.remove(&key);
                stopped.push(key);
            }
        }
        stopped
    }
}

/// One activity to store.
struct Planned {
    verb: Verb,
    text: Option<String>,
    /// Activity numbers, as [`Stored`] keeps them.
    target: Option<u64>,
    target_verb: Option<Verb>,
    target_text: Option<Arc<str>>,
    edit_of: Option<u64>,
}

impl Planned {
    /// The same, about `target` (its id and verb).
    fn targeting(mut self, target: &Stored) -> Self {
        self.target = Some(target.number);
        self.target_verb = Some(target.verb);
        self
    }

    fn new(verb: Verb) -> Self {
        Planned {
            verb,
            text: None,
            target: None,
            target_verb: None,
            target_text: None,
            edit_of: None,
        }
    }
}

/// Validates a request against the space and says what to store.
fn plan(space: &Space, new: &NewActivity) -> Result<Vec<Planned>, CloudError> {
    let text = || -> Result<String, CloudError> {
        let t = new
            .encrypted_text
            .clone()
            .ok_or_else(|| CloudError::Invalid("encrypted_text is required".into()))?;
        check_ciphertext(&t, &space.key_uri)?;
        Ok(t)
    };
    match new.verb {
        RequestVerb::Post | RequestVerb::Share => {
            let verb = if new.verb == RequestVerb::Post {
                Verb::Post
            } else {
                Verb::Share
            };
            Ok(vec![Planned {
                text: Some(text()?),
                ..Planned::new(verb)
            }])
        }
        RequestVerb::Delete => Ok(vec![delete_of(own_target(space, new)?)]),
        RequestVerb::Undelivered => {
            let target = own_target(space, new)?;
            Ok(vec![
                Planned {
                    text: Some(text()?),
                    target_text: target.text.clone(),
                    ..Planned::new(Verb::Undelivered)
                }
                .targeting(target),
            ])
        }
        RequestVerb::Edit => {
            let target = own_target(space, new)?;
            if target.verb != Verb::Post {
                return Err(CloudError::Invalid("only text posts can be edited".into()));
            }
            let post = Planned {
                text: Some(text()?),
                edit_of: Some(target.number),
                ..Planned::new(Verb::Post)
            };
            Ok(vec![post, delete_of(target)])
        }
        RequestVerb::Read => {
            let target = match &new.target {
                Some(id) => {
                    space
                        .stored(id)
                        .ok_or_else(|| CloudError::NotFound(format!("activity {id}")))?
                        .number
                }
                None => space
                    .activities
                    .back()
                    .map(|a| a.number)
                    .ok_or_else(|| CloudError::Conflict("nothing to read".into()))?,
            };
            Ok(vec![Planned {
                target: Some(target),
                ..Planned::new(Verb::Read)
            }])
        }
    }
}

/// The target of an edit or delete: an undeleted post or share by the actor.
fn own_target<'a>(space: &'a Space, new: &NewActivity) -> Result<&'a Stored, CloudError> {
    let id = new
        .target
        .as_deref()
        .ok_or_else(|| CloudError::Invalid("target is required".into()))?;
    let target = space
        .stored(id)
        .ok_or_else(|| CloudError::NotFound(format!("activity {id}")))?;
    if !matches!(target.verb, Verb::Post | Verb::Share) {
        return Err(CloudError::Invalid(format!("{id} is not a post or share")));
    }
    if *target.actor != *new.actor {
        return Err(CloudError::Forbidden(format!(
            "{id} was posted by someone else"
        )));
    }
    if space.deleted.contains(&target.number) {
        return Err(CloudError::Conflict(format!("{id} is deleted")));
    }
    Ok(target)
}

fn delete_of(target: &Stored) -> Planned {
    Planned {
        target: Some(target.number),
        target_verb: Some(target.verb),
        target_text: target.text.clone(),
        ..Planned::new(Verb::Delete)
    }
}

/// Updates the space's derived state for a stored activity.
fn apply(space: &mut Space, a: &Stored) {
    match a.verb {
        Verb::Delete => {
            if let Some(t) = a.target {
                space.deleted.insert(t);
            }
        }
        Verb::Read => {
            let upto = a
                .target
                .and_then(|t| space.stored_numbered(t))
                .map_or(0, |t| t.seq);
            let entry = space.last_read.entry(a.actor.to_string()).or_insert(0);
            *entry = (*entry).max(upto);
        }
        // A failure notice changes nothing the space derives.
        Verb::Undelivered => {}
        Verb::Post | Verb::Share => {
            // The author has read everything up to their own post.
            space.last_read.insert(a.actor.to_string(), a.seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector::proto::jwe::SpaceKey;

    const ALICE: &str = "alice@example.com";
    const BOB: &str = "bob@example.com";
    const KEY: &str = "kms://kms/keys/00000000-0000-4000-8000-000000000001";

    fn key() -> SpaceKey {
        SpaceKey {
            uri: KEY.into(),
            bytes: [7; jwe::KEY_BYTES],
        }
    }

    fn enc(text: &str) -> String {
        jwe::encrypt(&key(), [1; jwe::IV_BYTES], text.as_bytes())
    }

    fn world() -> (Messaging, String) {
        let mut m = Messaging::new();
        let members =
            Messaging::check_members(SpaceKind::Direct, &[BOB.into(), ALICE.into()]).unwrap();
        let id = m
            .create_space(SpaceKind::Direct, members, KEY.into())
            .id
            .clone();
        (m, id)
    }

    fn req(
        verb: RequestVerb,
        actor: &str,
        text: Option<&str>,
        target: Option<&str>,
    ) -> NewActivity {
        NewActivity {
            verb,
            actor: actor.into(),
            encrypted_text: text.map(enc),
            target: target.map(str::to_owned),
            client_id: None,
            via_connector: None,
        }
    }

    fn post(m: &mut Messaging, space: &str, actor: &str, text: &str) -> Activity {
        let p = m
            .post(
                Duration::ZERO,
                space,
                req(RequestVerb::Post, actor, Some(text), None),
            )
            .unwrap();
        p.activities[0].clone()
    }

    #[test]
    fn posts_get_unique_ids_and_ordered_seqs() {
        let (mut m, s) = world();
        let a = post(&mut m, &s, ALICE, "hi");
        let b = post(&mut m, &s, BOB, "hello");
        assert_eq!((a.id.as_str(), a.seq), ("act-1", 1));
        assert_eq!((b.id.as_str(), b.seq), ("act-2", 2));
        assert_eq!(a.kid.as_deref(), Some(KEY));
        assert_eq!(m.direct_space(BOB, ALICE).unwrap().id, s);
        let all = m.activities_after(&s, 0).unwrap();
        assert_eq!(all.iter().map(|a| a.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(m.activities_after(&s, 1).unwrap().len(), 1);
    }

    #[test]
    fn plaintext_and_foreign_keys_are_refused() {
        let (mut m, s) = world();
        let mut r = req(RequestVerb::Post, ALICE, None, None);
        r.encrypted_text = Some("hello in the clear".into());
        assert_eq!(
            m.post(Duration::ZERO, &s, r.clone()).unwrap_err().status(),
            400
        );
        let other = SpaceKey {
            uri: "kms://kms/keys/other".into(),
            bytes: [7; jwe::KEY_BYTES],
        };
        r.encrypted_text = Some(jwe::encrypt(&other, [1; jwe::IV_BYTES], b"x"));
        assert!(
            m.post(Duration::ZERO, &s, r.clone())
                .unwrap_err()
                .to_string()
                .contains("kid")
        );
        r.encrypted_text = None;
        assert_eq!(m.post(Duration::ZERO, &s, r).unwrap_err().status(), 400);
    }

    #[test]
    fn edit_is_new_post_then_delete() {
        let (mut m, s) = world();
        let orig = post(&mut m, &s, ALICE, "helo");
        let p = m
            .post(
                Duration::ZERO,
                &s,
                req(RequestVerb::Edit, ALICE, Some("hello"), Some(&orig.id)),
            )
            .unwrap();
        let verbs: Vec<Verb> = p.activities.iter().map(|a| a.verb).collect();
        assert_eq!(verbs, [Verb::Post, Verb::Delete]);
        assert_eq!(p.activities[0].edit_of.as_deref(), Some(orig.id.as_str()));
        assert_eq!(p.activities[1].target.as_deref(), Some(orig.id.as_str()));
        assert_eq!(p.activities[1].target_verb, Some(Verb::Post));
        assert_eq!((p.activities[0].seq, p.activities[1].seq), (2, 3));
        // The original is gone: a second edit or delete conflicts.
        let again = m.post(
            Duration::ZERO,
            &s,
            req(RequestVerb::Delete, ALICE, None, Some(&orig.id)),
        );
        assert_eq!(again.unwrap_err().status(), 409);
    }

    #[test]
    fn file_share_delete_says_it_was_a_file() {
        let (mut m, s) = world();
        let share = m
            .post(
                Duration::ZERO,
                &s,
                req(RequestVerb::Share, BOB, Some("https://files/x.pdf"), None),
            )
            .unwrap()
            .activities[0]
            .clone();
        assert_eq!(share.verb, Verb::Share);
        let del = m
            .post(
                Duration::ZERO,
                &s,
                req(RequestVerb::Delete, BOB, None, Some(&share.id)),
            )
            .unwrap();
        assert_eq!(del.activities[0].target_verb, Some(Verb::Share));
        assert_eq!(
            del.activities[0].target_encrypted_text,
            share.encrypted_text
        );
    }

    #[test]
    fn only_the_author_edits_or_deletes_and_only_members_post() {
        let (mut m, s) = world();
        let a = post(&mut m, &s, ALICE, "mine");
        let del = m.post(
            Duration::ZERO,
            &s,
            req(RequestVerb::Delete, BOB, None, Some(&a.id)),
        );
        assert_eq!(del.unwrap_err().status(), 403);
        let stranger = m.post(
            Duration::ZERO,
            &s,
            req(RequestVerb::Post, "eve@example.com", Some("x"), None),
        );
        assert_eq!(stranger.unwrap_err().status(), 403);
        let missing = m.post(
            Duration::ZERO,
            &s,
            req(RequestVerb::Delete, ALICE, None, Some("act-99")),
        );
        assert_eq!(missing.unwrap_err().status(), 404);
        let nospace = m.post(
            Duration::ZERO,
            "space-9",
            req(RequestVerb::Post, ALICE, Some("x"), None),
        );
        assert_eq!(nospace.unwrap_err().status(), 404);
    }

    #[test]
    fn unread_counts_follow_reads_and_deletes() {
        let (mut m, s) = world();
        let a1 = post(&mut m, &s, ALICE, "one");
        post(&mut m, &s, ALICE, "two");
        let space = m.space(&s).unwrap();
        assert_eq!((space.unread(BOB), space.unread(ALICE)), (2, 0));
        m.post(
            Duration::ZERO,
            &s,
            req(RequestVerb::Read, BOB, None, Some(&a1.id)),
        )
        .unwrap();
        assert_eq!(m.space(&s).unwrap().unread(BOB), 1);
        m.post(Duration::ZERO, &s, req(RequestVerb::Read, BOB, None, None))
            .unwrap();
        assert_eq!(m.space(&s).unwrap().unread(BOB), 0);
        let a3 = post(&mut m, &s, ALICE, "three");
        m.post(
            Duration::ZERO,
            &s,
            req(RequestVerb::Delete, ALICE, None, Some(&a3.id)),
        )
        .unwrap();
        assert_eq!(
            m.space(&s).unwrap().unread(BOB),
            0,
            "deleted posts are not unread"
        );
    }

    #[test]
    fn same_client_id_is_idempotent() {
        let (mut m, s) = world();
        let mut r = req(RequestVerb::Post, ALICE, Some("once"), None);
        r.client_id = Some("c-1".into());
        let first = m.post(Duration::ZERO, &s, r.clone()).unwrap();
        let second = m.post(Duration::ZERO, &s, r.clone()).unwrap();
        assert!(!first.duplicate && second.duplicate);
        assert_eq!(first.activities, second.activities);
        assert_eq!(m.space(&s).unwrap().last_seq(), 1);
        r.client_id = Some(String::new());
        assert_eq!(m.post(Duration::ZERO, &s, r).unwrap_err().status(), 400);
    }

    #[test]
    fn typing_expires_after_five_minutes() {
        let (mut m, s) = world();
        let t0 = Duration::from_secs(10);
        assert_eq!(m.typing(t0, &s, ALICE, true), Ok(true));
        assert!(m.is_typing(t0 + Duration::from_secs(299), &s, ALICE));
        assert!(m.tick(t0 + Duration::from_secs(299)).is_empty());
        assert_eq!(
            m.tick(t0 + TYPING_EXPIRY),
            vec![(s.clone(), ALICE.to_owned())]
        );
        assert!(!m.is_typing(t0 + TYPING_EXPIRY, &s, ALICE));
        // A repeated start extends; a stop ends it early.
        m.typing(t0, &s, BOB, true).unwrap();
        assert_eq!(
            m.typing(t0 + Duration::from_secs(60), &s, BOB, true),
            Ok(false)
        );
        assert!(m.tick(t0 + TYPING_EXPIRY).is_empty(), "extended");
        assert_eq!(m.typing(t0, &s, BOB, false), Ok(true));
        assert_eq!(
            m.typing(t0, &s, "eve@example.com", true)
                .unwrap_err()
                .status(),
            403
        );
    }

    #[test]
    fn members_checked_and_renamed() {
        assert!(
            Messaging::check_members(SpaceKind::Direct, &[ALICE.into(), ALICE.into()]).is_err()
        );
        assert!(Messaging::check_members(SpaceKind::Group, &[ALICE.into()]).is_err());
        let (mut m, s) = world();
        m.rename_member(ALICE, "alice2@example.com");
        assert_eq!(m.direct_space(BOB, "alice2@example.com").unwrap().id, s);
        assert!(m.direct_space(BOB, ALICE).is_none());
        assert_eq!(m.spaces_of("alice2@example.com"), vec![s]);
    }

    /// Issue 16: a space keeps one copy of each actor's name for all their activities, and a
    /// delete shares the deleted post's ciphertext; what clients read back is unchanged.
    #[test]
    fn stored_activities_share_names_and_ciphertext() {
        let (mut m, s) = world();
        let a1 = post(&mut m, &s, ALICE, "one");
        let a2 = post(&mut m, &s, ALICE, "two");
        let del = m
            .post(
                Duration::ZERO,
                &s,
                req(RequestVerb::Delete, ALICE, None, Some(&a1.id)),
            )
            .unwrap()
            .activities[0]
            .clone();
        let space = m.space(&s).unwrap();
        let kept: Vec<&Stored> = space.activities.iter().collect();
        assert!(Arc::ptr_eq(&kept[0].actor, &kept[1].actor));
        assert!(Arc::ptr_eq(&kept[0].actor, &kept[2].actor));
        let (text, deleted) = (kept[0].text.as_ref(), kept[2].target_text.as_ref());
        assert!(Arc::ptr_eq(text.unwrap(), deleted.unwrap()));
        assert_eq!(m.names.len(), 1);
        let read = m.activities_after(&s, 0).unwrap();
        assert_eq!(read, [a1.clone(), a2.clone(), del.clone()]);
        assert_eq!(del.target_encrypted_text, a1.encrypted_text);
        assert_eq!(del.space_id, s);
        assert_eq!(space.find(&a2.id), Some(a2));
        assert_eq!(space.find("act-02"), None, "not an id the cloud writes");
    }

    #[test]
    fn activities_are_bounded_per_space() {
        let (mut m, s) = world();
        for i in 0..ACTIVITIES_PER_SPACE_MAX + 5 {
            post(&mut m, &s, ALICE, &format!("{i}"));
        }
        let all = m.activities_after(&s, 0).unwrap();
        assert_eq!(all.len(), ACTIVITIES_PER_READ_MAX);
        assert_eq!(all[0].seq, 6, "the oldest five were dropped");
    }
}
