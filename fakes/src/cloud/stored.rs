//! How a space keeps its activities: compactly, as the cloud keeps every activity of a run
//! (up to [`super::messaging::ACTIVITIES_PER_SPACE_MAX`] a space), which makes them the
//! largest thing a long run holds per message (issue 16, targets 2 and 3).
//!
//! A [`Stored`] activity leaves out what its space already holds (the space id, and the key URI
//! that is the `kid` of every encrypted activity in it), keeps activity ids as their number
//! (every id is `act-<n>`, made by the cloud), names actors and connectors through one shared
//! string each ([`Names`]), and shares a deleted post's ciphertext with the delete that
//! carries it. [`Stored::activity`] gives back the [`Activity`] exactly as it was stored.

use connector::proto::webex::{Activity, Verb};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The id of the activity numbered `n`.
pub fn activity_id(n: u64) -> String {
    format!("act-{n}")
}

/// The number of an activity id as the cloud writes it (`act-<n>`, no sign, no leading
/// zero), or `None` for anything else: no activity has that id.
pub fn activity_number(id: &str) -> Option<u64> {
    let digits = id.strip_prefix("act-")?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return None;
    }
    digits.parse().ok()
}

/// One shared copy of each name (actor email, connector id) the activities carry: a few per
/// user, against one per activity.
#[derive(Debug, Clone, Default)]
pub struct Names(BTreeSet<Arc<str>>);

impl Names {
    /// The shared copy of `name`, made on first use.
    pub fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.0.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        self.0.insert(n.clone());
        n
    }

    /// The shared copy of `name` if one is kept; makes none.
    pub fn find(&self, name: &str) -> Option<&Arc<str>> {
        self.0.get(name)
    }

    /// Distinct names kept.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no name is kept.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An activity as its space keeps it (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The id's number (`act-<number>`).
    pub number: u64,
    /// Position in the space.
    pub seq: u64,
    /// What it is.
    pub verb: Verb,
    /// Who did it.
    pub actor: Arc<str>,
    /// The JWE, whose `kid` is the space's key.
    pub text: Option<Arc<str>>,
    /// The number of the activity deleted or read up to.
    pub target: Option<u64>,
    /// For a delete: the verb of what was deleted.
    pub target_verb: Option<Verb>,
    /// For a delete or `undelivered`: the target's ciphertext, shared with it.
    pub target_text: Option<Arc<str>>,
    /// The number of the activity an edit replaces.
    pub edit_of: Option<u64>,
    /// The client's own id for the request.
    pub client_id: Option<Box<str>>,
    /// The posting connector.
    pub via_connector: Option<Arc<str>>,
    /// When the cloud accepted it, ms since the start of the run.
    pub published_ms: u64,
}

impl Stored {
    /// The activity as clients receive it, in the space `space_id` whose key is `key_uri`.
    pub fn activity(&self, space_id: &str, key_uri: &str) -> Activity {
        Activity {
            id: activity_id(self.number),
            space_id: space_id.to_owned(),
            seq: self.seq,
            verb: self.verb,
            actor: self.actor.to_string(),
            encrypted_text: self.text.as_deref().map(str::to_owned),
            kid: self.text.as_ref().map(|_| key_uri.to_owned()),
            target: self.target.map(activity_id),
            target_verb: self.target_verb,
            target_encrypted_text: self.target_text.as_deref().map(str::to_owned),
            edit_of: self.edit_of.map(activity_id),
            client_id: self.client_id.as_deref().map(str::to_owned),
            via_connector: self.via_connector.as_deref().map(str::to_owned),
            published_ms: self.published_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_ids_the_cloud_writes_have_a_number() {
        assert_eq!(activity_number("act-1"), Some(1));
        assert_eq!(activity_number("act-0"), Some(0));
        assert_eq!(activity_number("act-18446744073709551615"), Some(u64::MAX));
        for id in [
            "act-",
            "act-01",
            "act-+1",
            "act--1",
            "act-1x",
            "act-1 ",
            "ACT-1",
            "1",
            "",
            "act-18446744073709551616",
        ] {
            assert_eq!(activity_number(id), None, "{id:?}");
        }
        for n in [0, 7, 10, 12_345, u64::MAX] {
            assert_eq!(activity_number(&activity_id(n)), Some(n));
        }
    }

    #[test]
    fn a_name_is_kept_once_and_shared() {
        let mut names = Names::default();
        assert!(names.is_empty());
        let a = names.get("alice@example.com");
        let b = names.get("bob@example.com");
        let a2 = names.get("alice@example.com");
        assert!(Arc::ptr_eq(&a, &a2), "the same name is the same copy");
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(
            (&*a, &*b, names.len()),
            ("alice@example.com", "bob@example.com", 2)
        );
        assert!(Arc::ptr_eq(names.find("alice@example.com").unwrap(), &a));
        assert!(
            names.find("carol@example.com").is_none(),
            "find makes no name"
        );
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn a_stored_activity_gives_back_every_field() {
        let text: Arc<str> = Arc::from("eyJhbGciOiJkaXIifQ..iv.ct.tag");
        let s = Stored {
            number: 42,
            seq: 3,
            verb: Verb::Delete,
            actor: Arc::from("alice@example.com"),
            text: None,
            target: Some(41),
            target_verb: Some(Verb::Share),
            target_text: Some(text.clone()),
            edit_of: None,
            client_id: Some("c-9".into()),
            via_connector: Some(Arc::from("conn-1")),
            published_ms: 1_500,
        };
        let a = s.activity("space-7", "kms://kms/keys/k");
        assert_eq!(
            a,
            Activity {
                id: "act-42".into(),
                space_id: "space-7".into(),
                seq: 3,
                verb: Verb::Delete,
                actor: "alice@example.com".into(),
                encrypted_text: None,
                kid: None,
                target: Some("act-41".into()),
                target_verb: Some(Verb::Share),
                target_encrypted_text: Some(text.to_string()),
                edit_of: None,
                client_id: Some("c-9".into()),
                via_connector: Some("conn-1".into()),
                published_ms: 1_500,
            }
        );
        // An encrypted activity's kid is its space's key; an edit names what it replaces.
        let post = Stored {
            verb: Verb::Post,
            text: Some(text.clone()),
            target: None,
            target_verb: None,
            target_text: None,
            edit_of: Some(40),
            client_id: None,
            via_connector: None,
            ..s
        };
        let a = post.activity("space-7", "kms://kms/keys/k");
        assert_eq!(a.kid.as_deref(), Some("kms://kms/keys/k"));
        assert_eq!(a.encrypted_text.as_deref(), Some(&*text));
        assert_eq!(a.edit_of.as_deref(), Some("act-40"));
        assert_eq!((a.client_id, a.via_connector, a.target), (None, None, None));
    }
}
