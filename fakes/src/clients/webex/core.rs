//! The sans-IO half of the Webex App model: what a user knows (spaces, keys, catch-up marks,
//! its last posts, the outbox) and every decision: the next action drawn from the plan's mix,
//! the bodies of posts and shares, and what a received activity means for the observer. The
//! driver ([`super::driver`]) makes the REST calls these decisions name.

use super::{Mix, WebexPlan};
use crate::clients::body::{BodyPlan, body_digest};
use crate::observe::{ClientKind, Delivered, PostFate, Refused, Sent};
use connector::proto::jwe::{self, SpaceKey};
use connector::proto::webex::{Activity, Verb};
use rand::RngExt as _;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Posts kept for re-sending at most; a user offline for longer than this loses the oldest,
/// as a real client's bounded outbox would.
pub const OUTBOX_MAX: usize = 256;

/// Vocabulary for generated texts.
const WORDS: [&str; 12] = [
    "sure", "sounds", "good", "see", "the", "deck", "before", "noon", "thanks", "on", "my", "way",
];

/// The `[[id]]` tag of a text, if any.
pub fn tag_of(text: &str) -> Option<&str> {
    let start = text.find("[[")? + 2;
    let end = start + text[start..].find("]]")?;
    Some(&text[start..end])
}

/// The notice that `me`'s post `a.target` could not be delivered to Jabber: which message
/// (the tag of the post's text, from `target_encrypted_text`) and the XMPP error IM&P gave
/// (`encrypted_text`, `{condition, text}`). `None` when it does not decrypt.
fn read_undelivered(
    me: &str,
    device: &str,
    a: &Activity,
    key: Option<&SpaceKey>,
) -> Option<Observation> {
    let open = |ct: &Option<String>| -> Option<String> {
        let plain = jwe::decrypt(key?, ct.as_deref()?).ok()?;
        String::from_utf8(plain).ok()
    };
    let post = open(&a.target_encrypted_text)?;
    let id = tag_of(&post)?.to_string();
    let error: Value = serde_json::from_str(&open(&a.encrypted_text)?).ok()?;
    Some(Observation::Refused(Refused {
        id,
        user: me.to_string(),
        device: device.to_string(),
        condition: error["condition"].as_str().unwrap_or_default().to_string(),
        text: error["text"].as_str().unwrap_or_default().to_string(),
    }))
}

/// One scheduled action, as drawn from the plan's [`Mix`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A new text post, or (with `edit_of`) an edit of the last own post.
    Text {
        /// The post edited, if this is an edit.
        edit_of: Option<String>,
    },
    /// Delete the last own post `target` in the contact's space.
    Delete {
        /// The activity deleted.
        target: String,
    },
    /// Share a file.
    Share,
    /// A typing indication (on, then off after [`super::TYPING_FOR`]).
    Typing,
    /// A read marker for activity `target` of space `space`.
    Read {
        /// The space.
        space: String,
        /// The activity marked read.
        target: String,
    },
    /// Nothing to do (a read marker with nothing received yet).
    Idle,
}

/// What a received activity means for the observer, in the order to report it.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// A counted note.
    Note(&'static str),
    /// A message delivered to this user.
    Delivered(Delivered),
    /// A message this user sent could not be delivered to the other member's Jabber (spec 46).
    Refused(Refused),
}

/// Everything one Webex user knows across sessions.
#[derive(Debug, Default)]
pub struct WebexCore {
    /// The session's bearer token, while logged in.
    pub token: Option<String>,
    /// Contact email → (space id, key).
    spaces: BTreeMap<String, (String, SpaceKey)>,
    /// Space id → key, for every space seen.
    keys: BTreeMap<String, SpaceKey>,
    /// Space id → last activity sequence seen (for catch-up).
    seen: BTreeMap<String, u64>,
    /// Last own post per contact (activity id).
    last_post: BTreeMap<String, String>,
    /// Last activity received per contact, for read markers: (space, activity).
    last_received: BTreeMap<String, (String, String)>,
    /// Messages sent (makes ids unique).
    seq: u64,
    /// Posts the cloud did not take (outage, 5xx, dropped connection): re-sent in order after
    /// the next login. The `client_id` makes a re-send of a post that did land harmless.
    outbox: VecDeque<Unsent>,
}

/// A post the cloud did not take, kept for re-sending after the next login.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsent {
    /// The contact of the direct space: a re-sent post or edit is the one to edit next.
    pub contact: String,
    /// The activities path of the space.
    pub path: String,
    /// The request body (with its `client_id`).
    pub body: Value,
}

/// What the cloud's answer to a post means for the client.
#[derive(Debug, Clone, PartialEq)]
pub enum PostAnswer {
    /// Taken (2xx): the answer's body.
    Taken(Value),
    /// Refused for good: a 4xx that sending again cannot change (a 409 for an edit of a post
    /// deleted meanwhile, a 400, 403, 404, 413). A real Webex App shows the post as failed
    /// rather than send it again forever; the client drops it. The error, as text.
    Refused(String),
    /// Not taken this time (5xx, 401, 408, 429, a transport failure): kept for re-sending.
    Failed(String),
}

impl PostAnswer {
    /// Reads a request's outcome: (status, body), or the transport failure.
    pub fn of(path: &str, answer: Result<(u16, Value), String>) -> Self {
        match answer {
            Ok((status, v)) if status < 300 => PostAnswer::Taken(v),
            Ok((status, v)) if refused_for_good(status) => {
                PostAnswer::Refused(format!("{path}: HTTP {status} {v}"))
            }
            Ok((status, v)) => PostAnswer::Failed(format!("{path}: HTTP {status} {v}")),
            Err(e) => PostAnswer::Failed(e),
        }
    }
}

/// Whether an HTTP `status` refuses a request for good: a 4xx but 401 (log in again), 408
/// (timed out) and 429 (slow down), which a later attempt can pass.
pub fn refused_for_good(status: u16) -> bool {
    (400..500).contains(&status) && !matches!(status, 401 | 408 | 429)
}

/// What the cloud's answer to a post (status and body, or the transport failure) means for
/// its message, for the observer: an error status is an answer (the fake cloud stores nothing
/// for a request it answers so); without an answer the cloud may have taken it.
pub fn fate_of(answer: &Result<(u16, Value), String>) -> PostFate {
    match answer {
        Ok((status, _)) if *status < 300 => PostFate::Taken,
        Ok((status, _)) if refused_for_good(*status) => PostFate::Dropped,
        Ok(_) => PostFate::Kept,
        Err(_) => PostFate::Unanswered,
    }
}

impl WebexCore {
    /// The cached key of `space`.
    pub fn key(&self, space: &str) -> Option<&SpaceKey> {
        self.keys.get(space)
    }

    /// Caches the key of `space`.
    pub fn add_key(&mut self, space: &str, key: SpaceKey) {
        self.keys.insert(space.to_string(), key);
    }

    /// The direct space with `contact`, if created.
    pub fn space_with(&self, contact: &str) -> Option<&(String, SpaceKey)> {
        self.spaces.get(contact)
    }

    /// Records the direct space with `contact` (created by the driver).
    pub fn add_space(&mut self, contact: &str, space: &str, key: SpaceKey) {
        self.seen.entry(space.to_string()).or_insert(0);
        self.spaces
            .insert(contact.to_string(), (space.to_string(), key));
    }

    /// Notes a space the user is a member of, for catch-up.
    pub fn know_space(&mut self, space: &str) {
        self.seen.entry(space.to_string()).or_insert(0);
    }

    /// The catch-up fetches: every known space and the last sequence seen in it.
    pub fn catch_up_marks(&self) -> Vec<(String, u64)> {
        self.seen.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Whether `a` is news (not already seen in a catch-up overlap).
    pub fn is_new(&self, a: &Activity) -> bool {
        let seen = self.seen.get(&a.space_id).copied().unwrap_or(0);
        !(a.seq <= seen && a.seq != 0)
    }

    /// Advances the catch-up mark past `a`, once it is handled: if a key fetch fails first,
    /// the session ends and the catch-up after re-login fetches it again.
    pub fn mark_seen(&mut self, a: &Activity) {
        let mark = self.seen.entry(a.space_id.clone()).or_insert(0);
        *mark = a.seq.max(*mark);
    }

    /// Whether reading `a` needs its space key: someone else's post or share.
    pub fn needs_key(me: &str, a: &Activity) -> bool {
        (a.actor != me && matches!(a.verb, Verb::Post | Verb::Share))
            || (a.actor == me && a.verb == Verb::Undelivered)
    }

    /// What activity `a` means for user `me` on `device` (its key if [`Self::needs_key`]).
    /// Our own echoes mean nothing.
    pub fn read(
        &mut self,
        me: &str,
        device: &str,
        a: &Activity,
        key: Option<&SpaceKey>,
    ) -> Vec<Observation> {
        if a.verb == Verb::Undelivered {
            // Only the author of the failed post is told (the other member sees nothing).
            return match a.actor == me {
                true => read_undelivered(me, device, a, key).into_iter().collect(),
                false => Vec::new(),
            };
        }
        if a.actor == me {
            return Vec::new();
        }
        match a.verb {
            Verb::Post | Verb::Share => self.read_post(me, device, a, key),
            Verb::Read => vec![Observation::Note("webex: read marker received")],
            Verb::Delete => vec![Observation::Note("webex: delete received")],
            Verb::Undelivered => Vec::new(),
        }
    }

    fn read_post(
        &mut self,
        me: &str,
        device: &str,
        a: &Activity,
        key: Option<&SpaceKey>,
    ) -> Vec<Observation> {
        let (Some(key), Some(ct)) = (key, a.encrypted_text.as_deref()) else {
            return Vec::new();
        };
        let Ok(plain) = jwe::decrypt(key, ct) else {
            return vec![Observation::Note("webex: undecryptable activity")];
        };
        let plain = String::from_utf8_lossy(&plain);
        let id = tag_of(&plain).map_or_else(|| a.id.clone(), str::to_string);
        let mut out = Vec::new();
        if a.verb == Verb::Share {
            out.push(Observation::Note("webex: file received"));
        }
        if a.edit_of.is_some() {
            out.push(Observation::Note("webex: edit received"));
        }
        self.last_received
            .insert(a.actor.clone(), (a.space_id.clone(), a.id.clone()));
        out.push(Observation::Delivered(Delivered {
            id,
            from: a.actor.clone(),
            to: me.to_string(),
            device: device.to_string(),
            client: ClientKind::Webex,
            delayed: false,
            carbon: false,
            body: (a.verb != Verb::Share).then(|| body_digest(&plain)),
        }));
        out
    }

    /// Schedules the action after the one due now and draws its contact: `None` (and no more
    /// actions) once the plan is over. Returns (next action time, contact).
    pub fn schedule(
        now: Duration,
        plan: &WebexPlan,
        rng: &mut ChaCha8Rng,
    ) -> Option<(Duration, String)> {
        if now >= plan.stop || plan.contacts.is_empty() {
            return None;
        }
        let next = now + crate::exp_wait(plan.mean_interval, rng);
        let contact = plan.contacts[rng.random_range(0..plan.contacts.len())].clone();
        Some((next, contact))
    }

    /// Draws the action towards `contact` from `mix`. Edits and deletes need a last own post;
    /// without one they become text posts.
    pub fn choose(&mut self, contact: &str, mix: Mix, rng: &mut ChaCha8Rng) -> Action {
        let x: f64 = rng.random_range(0.0..1.0);
        let shares = [mix.text, mix.edit, mix.delete, mix.file, mix.typing];
        let edge = |k: usize| shares.iter().take(k).sum::<f64>();
        let last = self.last_post.get(contact).cloned();
        match last {
            _ if x < edge(1) => Action::Text { edit_of: None },
            None if x < edge(3) => Action::Text { edit_of: None },
            Some(_) if x < edge(2) => Action::Text { edit_of: last },
            Some(target) if x < edge(3) => {
                self.last_post.remove(contact);
                Action::Delete { target }
            }
            _ if x < edge(4) => Action::Share,
            _ if x < edge(5) => Action::Typing,
            _ => self.read_marker(contact),
        }
    }

    /// A read marker for the conversation with `contact`, or else the latest one with news.
    fn read_marker(&self, contact: &str) -> Action {
        let last = self
            .last_received
            .get(contact)
            .or_else(|| self.last_received.values().next_back());
        match last.cloned() {
            Some((space, target)) => Action::Read { space, target },
            None => Action::Idle,
        }
    }

    /// A fresh message id (unique per user, device and incarnation) sent by `me` to
    /// `contact`: the observer follows it by its `[[id]]` tag.
    pub fn new_message(&mut self, me: &str, device: &str, contact: &str) -> Sent {
        self.seq += 1;
        let user = me.split('@').next().unwrap_or("w");
        Sent {
            id: format!("{user}.{device}.{}", self.seq),
            from: me.to_string(),
            to: contact.to_string(),
            client: ClientKind::Webex,
            device: device.to_string(),
            body: None,
        }
    }

    /// The body of a text post (or an edit of `edit_of`) tagged `id`, encrypted with `key`
    /// (a text drawn from `plan`, or a few words), and the digest of its text.
    pub fn text_body(
        id: &str,
        key: &SpaceKey,
        edit_of: Option<&str>,
        plan: Option<&BodyPlan>,
        rng: &mut ChaCha8Rng,
    ) -> (Value, u64) {
        let text = match plan {
            Some(p) => p.draw(rng),
            None => {
                let words = rng.random_range(1..10);
                (0..words)
                    .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        let text = format!("{text} [[{id}]]");
        let mut iv = [0u8; 12];
        rng.fill(&mut iv);
        let ct = jwe::encrypt(key, iv, text.as_bytes());
        let verb = if edit_of.is_some() { "edit" } else { "post" };
        let mut body = json!({"verb": verb, "encrypted_text": ct, "client_id": id});
        if let Some(t) = edit_of {
            body["target"] = json!(t);
        }
        (body, body_digest(&text))
    }

    /// The body of a file share tagged `id`, encrypted with `key`.
    pub fn share_body(&self, id: &str, key: &SpaceKey, rng: &mut ChaCha8Rng) -> Value {
        let file = json!({"url": format!("https://files.webex.example/f/{}", self.seq), "name": format!("notes [[{id}]].pdf")});
        let mut iv = [0u8; 12];
        rng.fill(&mut iv);
        let ct = jwe::encrypt(key, iv, file.to_string().as_bytes());
        json!({"verb": "share", "encrypted_text": ct, "client_id": id})
    }

    /// The cloud's answer to a post or edit towards `contact`: an edit answers the new post and
    /// the delete; the post is the one to edit next time.
    pub fn posted(&mut self, contact: &str, answer: &Value) {
        let new_id = answer["activities"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["verb"] == "post"))
            .and_then(|x| x["id"].as_str())
            .map(str::to_string);
        if let Some(new_id) = new_id {
            self.last_post.insert(contact.to_string(), new_id);
        }
    }

    /// Keeps a post the cloud did not take, for re-sending after the next login; drops the
    /// oldest beyond [`OUTBOX_MAX`].
    pub fn keep_unsent(&mut self, unsent: Unsent) {
        if self.outbox.len() >= OUTBOX_MAX {
            self.outbox.pop_front();
        }
        self.outbox.push_back(unsent);
    }

    /// The oldest unsent post, if any.
    pub fn next_unsent(&self) -> Option<Unsent> {
        self.outbox.front().cloned()
    }

    /// The cloud's answer to the re-send of the oldest unsent post: taken, it leaves the
    /// outbox and (a post or an edit) is the post to edit next; refused for good, it leaves
    /// the outbox too. Returns the answer for the driver (which ends the session on a
    /// failure and re-sends after the next login).
    pub fn resent(&mut self, answer: PostAnswer) -> PostAnswer {
        match &answer {
            PostAnswer::Taken(v) => {
                // The seed: "When a Message Service user edits a message in Webex App, the
                // original version of the message is deleted": the next edit is of the new one.
                if let Some(u) = self.outbox.pop_front() {
                    self.posted(&u.contact, v);
                }
            }
            PostAnswer::Refused(_) => {
                if let Some(u) = self.outbox.pop_front() {
                    self.refused(&u.contact, &u.body);
                }
            }
            PostAnswer::Failed(_) => {}
        }
        answer
    }

    /// A post or edit towards `contact` was refused for good: an edit's target is not to be
    /// edited again (the cloud refuses an edit of a deleted post).
    pub fn refused(&mut self, contact: &str, body: &Value) {
        let target = body["target"].as_str();
        if target.is_some() && self.last_post.get(contact).map(String::as_str) == target {
            self.last_post.remove(contact);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    #[test]
    fn tags_are_found_anywhere() {
        assert_eq!(tag_of("hello [[alice.w.3]] there"), Some("alice.w.3"));
        assert_eq!(tag_of("notes [[a.1]].pdf: https://x/f/1"), Some("a.1"));
        assert_eq!(tag_of("no tag"), None);
        assert_eq!(tag_of("[[unclosed"), None);
    }

    #[test]
    fn edits_and_deletes_without_a_last_post_are_text_posts() {
        let mix = Mix {
            text: 0.0,
            edit: 0.5,
            delete: 0.5,
            file: 0.0,
            typing: 0.0,
            read: 0.0,
        };
        let mut core = WebexCore::default();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..20 {
            assert_eq!(
                core.choose("bob@x", mix, &mut rng),
                Action::Text { edit_of: None }
            );
        }
        core.posted(
            "bob@x",
            &json!({"activities": [{"verb": "post", "id": "a1"}]}),
        );
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            match core.choose("bob@x", mix, &mut rng) {
                Action::Text { edit_of: Some(t) } | Action::Delete { target: t } => {
                    assert_eq!(t, "a1");
                    seen.insert(core.last_post.contains_key("bob@x"));
                    core.posted(
                        "bob@x",
                        &json!({"activities": [{"verb": "post", "id": "a1"}]}),
                    );
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(seen.contains(&false), "a delete forgets the last post");
    }

    fn unsent(contact: &str, path: &str, body: Value) -> Unsent {
        Unsent {
            contact: contact.to_string(),
            path: path.to_string(),
            body,
        }
    }

    #[test]
    fn the_outbox_keeps_the_newest_posts() {
        let mut core = WebexCore::default();
        for i in 0..OUTBOX_MAX + 3 {
            core.keep_unsent(unsent("bob@x", &format!("/p/{i}"), Value::Null));
        }
        assert_eq!(core.next_unsent().map(|p| p.path), Some("/p/3".to_string()));
        core.resent(PostAnswer::Taken(json!({})));
        assert_eq!(core.next_unsent().map(|p| p.path), Some("/p/4".to_string()));
    }

    /// Only edits: the action drawn towards a contact with a last post is an edit of it.
    const EDITS: Mix = Mix {
        text: 0.0,
        edit: 1.0,
        delete: 0.0,
        file: 0.0,
        typing: 0.0,
        read: 0.0,
    };

    /// Explore 4396: an edit of act-1 the cloud did not take waits in the outbox; re-sent
    /// after the next login, it lands as act-2 (and the delete of act-1). The next edit is of
    /// act-2: an edit of act-1 is refused ("act-1 is deleted") and its message never arrives.
    #[test]
    fn a_resent_edit_is_the_post_to_edit_next() {
        let mut core = WebexCore::default();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        core.posted(
            "bob@x",
            &json!({"activities": [{"verb": "post", "id": "act-1"}]}),
        );
        let edit = json!({"verb": "edit", "target": "act-1", "client_id": "a.w.2"});
        core.keep_unsent(unsent("bob@x", "/v1/spaces/s/activities", edit));
        let answer = json!({"activities": [
            {"verb": "post", "id": "act-2"}, {"verb": "delete", "id": "act-3"}]});
        core.resent(PostAnswer::Taken(answer));
        assert_eq!(core.next_unsent(), None);
        assert_eq!(
            core.choose("bob@x", EDITS, &mut rng),
            Action::Text {
                edit_of: Some("act-2".into())
            }
        );
    }

    /// The observer tells a post the client held unsent from one the bridge lost by these
    /// fates: only an error status says the cloud did not take it.
    #[test]
    fn a_post_is_kept_only_on_an_error_status() {
        let fate = |s: u16| fate_of(&Ok((s, json!({}))));
        assert_eq!(fate(201), PostFate::Taken);
        for s in [500, 503, 401, 408, 429] {
            assert_eq!(fate(s), PostFate::Kept, "{s}");
        }
        assert_eq!(fate(409), PostFate::Dropped);
        let reset = fate_of(&Err("connection closed before message completed".into()));
        assert_eq!(reset, PostFate::Unanswered);
    }

    /// A post refused for good leaves the outbox (the next one is sent), and a refused edit's
    /// target is not edited again; a failure keeps it for the next login.
    #[test]
    fn a_post_refused_for_good_is_dropped_and_a_failed_one_kept() {
        let mut core = WebexCore::default();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        core.posted(
            "bob@x",
            &json!({"activities": [{"verb": "post", "id": "act-1"}]}),
        );
        let edit = json!({"verb": "edit", "target": "act-1", "client_id": "a.w.2"});
        core.keep_unsent(unsent("bob@x", "/p/1", edit));
        core.keep_unsent(unsent("bob@x", "/p/2", json!({"verb": "post"})));
        let status = |s: u16| PostAnswer::of("/p/1", Ok((s, json!({"error": "x"}))));
        for s in [500, 503, 401, 408, 429] {
            assert!(
                matches!(core.resent(status(s)), PostAnswer::Failed(_)),
                "{s}"
            );
            assert_eq!(core.next_unsent().map(|u| u.path), Some("/p/1".into()));
        }
        let gone = PostAnswer::of("/p/1", Err("connection reset".into()));
        assert!(matches!(core.resent(gone), PostAnswer::Failed(_)));
        assert!(matches!(core.resent(status(409)), PostAnswer::Refused(_)));
        assert_eq!(core.next_unsent().map(|u| u.path), Some("/p/2".into()));
        assert_eq!(
            core.choose("bob@x", EDITS, &mut rng),
            Action::Text { edit_of: None },
            "act-1 is not edited again"
        );
        for s in [400, 403, 404, 409, 413] {
            assert!(refused_for_good(s), "{s}");
        }
        for s in [200, 201, 401, 408, 429, 500, 502, 503] {
            assert!(!refused_for_good(s), "{s}");
        }
    }
}
