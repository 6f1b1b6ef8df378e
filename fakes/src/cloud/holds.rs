//! Conversation holds: which connector node holds earlier messages of a direct conversation
//! that it could not post yet, so that the other member's node waits for them.
//!
//! Two connector nodes serve one direct conversation when its members are assigned to
//! different nodes: each gets the conversation's messages through its own user's IM&P session
//! (carbons and deliveries, spec 34), and both post them, deduplicated by `client_id`. The
//! cloud orders a space's activities as they arrive. When a space or key fetch fails (a KMS or
//! cloud outage) each node waits out a backoff of its own, and a node that holds only the
//! newest messages (its user's session opened late, or the user just moved there) could post
//! them before the other posts the earlier ones (explore seeds 51, 91).
//!
//! So a node asking again for a space or key after a failure says since when its messages of
//! the conversation wait (`held_since_ms`, `held`): it holds the conversation. While the hold
//! lives, another node's posts to the space are refused with 409 and sent again shortly; the
//! holder ends it after its posts (`POST /v1/spaces/{id}/hold`). The node that has waited
//! longest holds it (its messages are the oldest); a hold ends after
//! [`CONVERSATION_HOLD_MAX`] whatever happens, and counts only while its node serves a member.
//!
//! A node whose post of the conversation failed at the transport, or is stuck on its way (a
//! cloud outage), claims it too (`POST /v1/spaces/{id}/hold` with `since_ms`) as soon as the
//! cloud answers it again. A node learns that the cloud is back only from an answer, so after a
//! cloud outage the cloud lets the claims settle ([`Settle`]): a node's post to a conversation
//! whose other member another node serves is refused (409) until that node has been heard
//! since the outage and its claims had time to arrive ([`CLAIM_SETTLE`]), at most
//! [`OUTAGE_SETTLE_MAX`] after the outage (explore seed 4834 `--seed 37`: the later node's
//! retry reached the cloud 0.25 s after it came back, before the other node knew).
//!
//! The holder may lack a message that only the other node has (its member's session saw it):
//! so each node declares the conversation's messages it has not posted, with when it got each
//! from IM&P ([`Holds::declare`]), and its posts carry that time. A post newer than another
//! node's declared message not stored yet waits for it ([`Holds::earlier_elsewhere`]); a post
//! older than all the holder declared passes the hold ([`Holds::before_holder`])
//! (`cloud-outage-two-nodes-order-post-retry` `--seed 19`: the holder lacked message 14 and
//! posted 15 and 16 first). The project's own agreement between nodes: Webex orders a
//! space's activities as they arrive.

use std::collections::BTreeMap;

pub use connector::proto::webex::DECLARED_PER_CONVERSATION_MAX;
use std::time::Duration;

/// How long a hold can make other nodes wait: a holder that never posts (its user moved away,
/// it crashed) delays the conversation at most this long. A KMS outage in the scenarios lasts
/// up to a few minutes, and the holder posts as soon as its retry gets the space and key.
pub const CONVERSATION_HOLD_MAX: Duration = Duration::from_secs(300);

/// How long after the cloud comes back from an outage it may refuse posts for a conversation
/// settling: every node that is up heartbeats within 30 s (the connector's interval) and so
/// learns that the cloud is back; 5 s more for its claims to arrive. A node that stays silent
/// (crashed, cut off) delays the conversation this long, never stops it.
pub const OUTAGE_SETTLE_MAX: Duration = Duration::from_secs(35);
/// How long after the cloud first hears a node following an outage that node's claims may
/// still be on their way: it sends them as soon as that request's answer reaches it, a round
/// trip (well under a second) plus a lost segment's slack.
pub const CLAIM_SETTLE: Duration = Duration::from_secs(2);

/// The cloud's view of the connector nodes after its last outage: which it heard since, and
/// when first. At most one entry per connector node; cleared at the next outage's end.
#[derive(Debug, Default)]
pub struct Settle {
    /// When the cloud came back from its last outage.
    back_at: Option<Duration>,
    /// Connector nodes heard since then, with when first.
    heard: BTreeMap<String, Duration>,
}

impl Settle {
    /// The cloud is back from an outage at `now`: no node has been heard since.
    pub fn outage_over(&mut self, now: Duration) {
        self.back_at = Some(now);
        self.heard.clear();
    }

    /// Whether the cloud still lets claims settle at `now`.
    pub fn active(&self, now: Duration) -> bool {
        self.back_at.is_some_and(|b| now < b + OUTAGE_SETTLE_MAX)
    }

    /// The cloud got a request of connector node `node` at `now`.
    pub fn heard(&mut self, now: Duration, node: &str) {
        if self.active(now) && !self.heard.contains_key(node) {
            self.heard.insert(node.to_string(), now);
        }
    }

    /// Whether `node`'s claims made when it heard the cloud is back have had time to arrive:
    /// no outage, its settling over, or heard [`CLAIM_SETTLE`] ago.
    pub fn settled(&self, now: Duration, node: &str) -> bool {
        !self.active(now)
            || self
                .heard
                .get(node)
                .is_some_and(|h| now >= *h + CLAIM_SETTLE)
    }
}

/// One node's hold on a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The connector node holding the conversation's earlier messages.
    pub node: String,
    /// Since when they wait there (the node's clock).
    pub since: Duration,
    /// When the hold ends if the node has not ended it.
    pub until: Duration,
}

/// The holds, by the conversation's members (sorted pair). At most one per direct space, and
/// expired holds are dropped whenever one is taken, so the map is bounded by the spaces.
#[derive(Debug, Default)]
pub struct Holds {
    by_pair: BTreeMap<(String, String), Hold>,
    /// (node, space id) → (the `client_id` of the node's post refused for a hold, until when):
    /// the node's later posts to the space are refused too until that one comes again. A node
    /// sends a conversation's posts one after the other without waiting for answers; without
    /// this, a hold ending between two of them let the later one in before the refused one
    /// (explore seed 51 as drawn with the fault bursts). One per (node, space), dropped when the
    /// post comes again or after [`CONVERSATION_HOLD_MAX`].
    fences: BTreeMap<(String, String), (String, Duration)>,
    /// (the conversation's members, node) → the messages of the conversation the node
    /// declared it has not posted yet ([`Holds::declare`]), until the bound. One per
    /// (conversation, node), dropped at the node's release or after [`CONVERSATION_HOLD_MAX`].
    declared: BTreeMap<((String, String), String), Declared>,
}

/// One node's declared unposted messages of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Declared {
    /// (`client_id`, when the node got it from IM&P, its clock), oldest first; a message
    /// leaves once any node's copy is stored.
    unposted: Vec<(String, Duration)>,
    /// When the declaration ends if the node has not ended it (its first declaration's bound).
    until: Duration,
}

impl Holds {
    /// `node` holds messages of the conversation `pair` since `since`: it holds the
    /// conversation unless another node's live hold is older (its messages came first). A
    /// node's own hold keeps its first bound.
    pub fn take(&mut self, now: Duration, node: &str, pair: (String, String), since: Duration) {
        self.by_pair.retain(|_, h| now < h.until);
        let keep = self
            .by_pair
            .get(&pair)
            .is_some_and(|h| h.node == node || h.since <= since);
        if keep {
            return;
        }
        let hold = Hold {
            node: node.to_string(),
            since,
            until: now + CONVERSATION_HOLD_MAX,
        };
        self.by_pair.insert(pair, hold);
    }

    /// The live hold on `pair`, if any.
    pub fn of(&self, now: Duration, pair: &(String, String)) -> Option<&Hold> {
        self.by_pair.get(pair).filter(|h| now < h.until)
    }

    /// `node` posted what it held: its hold ends. True if it held the conversation.
    pub fn release(&mut self, node: &str, pair: &(String, String)) -> bool {
        if self.by_pair.get(pair).is_some_and(|h| h.node == node) {
            self.by_pair.remove(pair);
            return true;
        }
        false
    }

    /// `node`'s post `client_id` to `space_id` was refused for a hold: its later posts to the
    /// space wait behind it ([`Holds::passes_fence`]).
    pub fn fence(&mut self, now: Duration, node: &str, space_id: &str, client_id: &str) {
        self.fences.retain(|_, (_, until)| now < *until);
        let key = (node.to_string(), space_id.to_string());
        let until = now + CONVERSATION_HOLD_MAX;
        self.fences
            .entry(key)
            .or_insert_with(|| (client_id.to_string(), until));
    }

    /// Whether `node`'s post `client_id` to `space_id` may be taken: not while an earlier post
    /// of the node to the space was refused and has not come again. The refused post itself
    /// passes (and lifts the fence).
    pub fn passes_fence(
        &mut self,
        now: Duration,
        node: &str,
        space_id: &str,
        client_id: Option<&str>,
    ) -> bool {
        let key = (node.to_string(), space_id.to_string());
        let Some((fenced, until)) = self.fences.get(&key) else {
            return true;
        };
        if now >= *until || client_id == Some(fenced.as_str()) {
            self.fences.remove(&key);
            return true;
        }
        false
    }

    /// `node` declares the messages of the conversation `pair` it has not posted yet,
    /// `(client_id, got)`, the ones already stored left out: its earlier declaration is
    /// replaced, keeping its bound. At most [`DECLARED_PER_CONVERSATION_MAX`] of the oldest.
    pub fn declare(
        &mut self,
        now: Duration,
        node: &str,
        pair: &(String, String),
        mut unposted: Vec<(String, Duration)>,
    ) {
        self.declared.retain(|_, d| now < d.until);
        let key = (pair.clone(), node.to_string());
        unposted.sort_by_key(|(_, got)| *got);
        unposted.truncate(DECLARED_PER_CONVERSATION_MAX);
        if unposted.is_empty() {
            self.declared.remove(&key);
            return;
        }
        let until = self
            .declared
            .get(&key)
            .map_or(now + CONVERSATION_HOLD_MAX, |d| d.until);
        self.declared.insert(key, Declared { unposted, until });
    }

    /// A copy of `client_id` was stored in the conversation `pair` (from any node): no node
    /// waits to post it any more.
    pub fn stored(&mut self, pair: &(String, String), client_id: &str) {
        let from = (pair.clone(), String::new());
        for (_, d) in self
            .declared
            .range_mut(from..)
            .take_while(|((p, _), _)| p == pair)
        {
            d.unposted.retain(|(c, _)| c != client_id);
        }
    }

    /// `node`'s declaration of the conversation `pair` ends (it released its hold: it posted
    /// them).
    pub fn end_declaration(&mut self, node: &str, pair: &(String, String)) {
        self.declared.remove(&(pair.clone(), node.to_string()));
    }

    /// The oldest message of the conversation `pair` that `node` declared and nobody stored,
    /// other than `client_id`, as (its `client_id`, when the node got it).
    fn oldest(
        &self,
        now: Duration,
        pair: &(String, String),
        node: &str,
        client_id: &str,
    ) -> Option<(&str, Duration)> {
        let d = self
            .declared
            .get(&(pair.clone(), node.to_string()))
            .filter(|d| now < d.until)?;
        d.unposted
            .iter()
            .find(|(c, _)| c != client_id)
            .map(|(c, got)| (c.as_str(), *got))
    }

    /// Another node, among those `may_post` accepts, that declared a message of the
    /// conversation `pair` older than `node`'s post `client_id` (got at `got`) and not stored
    /// yet: that post must wait for it. The same message's copy at another node (same
    /// `client_id`) never makes it wait.
    pub fn earlier_elsewhere(
        &self,
        now: Duration,
        (pair, node): (&(String, String), &str),
        (client_id, got): (&str, Duration),
        may_post: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let from = (pair.clone(), String::new());
        self.declared
            .range(from..)
            .take_while(|((p, _), _)| p == pair)
            .map(|((_, n), _)| n)
            .filter(|n| *n != node && may_post(n))
            .find(|n| {
                self.oldest(now, pair, n, client_id)
                    .is_some_and(|(_, theirs)| theirs < got)
            })
            .cloned()
    }

    /// Whether `holder`'s hold lets `node`'s post `client_id` (got at `got`) in: the holder
    /// declared what it has not posted, and the oldest of it not stored is not older than
    /// this post (or is this very message), so this post goes before all of it. The holder's
    /// undeclared messages came after its declaration, so after this one too.
    pub fn before_holder(
        &self,
        now: Duration,
        (pair, holder): (&(String, String), &str),
        (client_id, got): (&str, Duration),
    ) -> bool {
        self.oldest(now, pair, holder, client_id)
            .is_some_and(|(_, theirs)| got <= theirs)
    }

    /// Holds kept (live or not yet dropped).
    pub fn len(&self) -> usize {
        self.by_pair.len()
    }

    /// Whether no hold is kept.
    pub fn is_empty(&self) -> bool {
        self.by_pair.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (String, String) {
        ("a@x".to_string(), "b@x".to_string())
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn the_node_waiting_longest_holds_until_it_releases_or_the_bound() {
        let mut h = Holds::default();
        h.take(s(140), "exp-a-2", pair(), s(130));
        // A node whose messages wait since later does not take it over; an older one does.
        h.take(s(200), "exp-a-1", pair(), s(200));
        assert_eq!(
            h.of(s(200), &pair()).map(|h| h.node.as_str()),
            Some("exp-a-2")
        );
        h.take(s(210), "exp-a-1", pair(), s(100));
        assert_eq!(
            h.of(s(210), &pair()).map(|h| h.node.as_str()),
            Some("exp-a-1")
        );
        // Only the holder ends it.
        assert!(!h.release("exp-a-2", &pair()));
        assert!(h.release("exp-a-1", &pair()));
        assert!(h.of(s(211), &pair()).is_none());
        // A hold nobody ends lasts CONVERSATION_HOLD_MAX, and is dropped at the next take.
        h.take(s(300), "exp-a-1", pair(), s(290));
        assert!(h.of(s(300) + CONVERSATION_HOLD_MAX, &pair()).is_none());
        h.take(
            s(300) + CONVERSATION_HOLD_MAX,
            "exp-a-2",
            ("c@x".into(), "d@x".into()),
            s(1),
        );
        assert_eq!(h.len(), 1);
    }

    /// After an outage a node is settled once heard and [`CLAIM_SETTLE`] later, or when the
    /// settling's bound passes; before any outage every node is.
    #[test]
    fn after_an_outage_a_node_settles_once_heard_and_its_claims_had_time() {
        let mut st = Settle::default();
        assert!(st.settled(s(5), "exp-a-1"));
        st.outage_over(s(180));
        assert!(!st.settled(s(180), "exp-a-1"));
        st.heard(s(181), "exp-a-1");
        st.heard(s(190), "exp-a-1");
        assert!(!st.settled(s(181) + CLAIM_SETTLE - Duration::from_millis(1), "exp-a-1"));
        assert!(st.settled(s(181) + CLAIM_SETTLE, "exp-a-1"));
        assert!(!st.settled(s(200), "exp-a-2"));
        assert!(st.settled(s(180) + OUTAGE_SETTLE_MAX, "exp-a-2"));
        // The next outage starts afresh.
        st.outage_over(s(400));
        assert!(!st.settled(s(400), "exp-a-1"));
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Each node's declared unposted messages: a post waits for an older one another node
    /// declared until a copy is stored (the same message at both nodes, its times a little
    /// apart, never makes either wait), and passes a hold when it is older than all the
    /// holder declared; a declaration ends at release or after its first bound.
    #[test]
    fn declared_messages_merge_two_backlogs_in_send_order() {
        let mut h = Holds::default();
        let p = pair();
        let any = |_: &str| true;
        h.declare(
            s(10),
            "exp-a-1",
            &p,
            vec![("m-15".into(), ms(315_000)), ("m-4".into(), ms(304_000))],
        );
        h.declare(
            s(10),
            "exp-a-2",
            &p,
            vec![("m-4".into(), ms(304_020)), ("m-14".into(), ms(313_600))],
        );
        // exp-a-1's m-4: exp-a-2's copy is the same message; its m-14 is newer.
        assert_eq!(
            h.earlier_elsewhere(s(11), (&p, "exp-a-1"), ("m-4", ms(304_000)), any),
            None
        );
        assert_eq!(
            h.earlier_elsewhere(s(11), (&p, "exp-a-2"), ("m-4", ms(304_020)), any),
            None
        );
        h.stored(&p, "m-4");
        // exp-a-1's m-15 waits for exp-a-2's m-14, unless exp-a-2 may no longer post.
        let waits = h.earlier_elsewhere(s(11), (&p, "exp-a-1"), ("m-15", ms(315_000)), any);
        assert_eq!(waits.as_deref(), Some("exp-a-2"));
        let gone = |n: &str| n != "exp-a-2";
        assert_eq!(
            h.earlier_elsewhere(s(11), (&p, "exp-a-1"), ("m-15", ms(315_000)), gone),
            None
        );
        // exp-a-1 holds: exp-a-2's m-14 is older than all exp-a-1 has left, so it passes.
        assert!(h.before_holder(s(11), (&p, "exp-a-1"), ("m-14", ms(313_600))));
        assert!(!h.before_holder(s(11), (&p, "exp-a-1"), ("m-16", ms(316_000))));
        assert!(
            !h.before_holder(s(11), (&p, "exp-a-3"), ("m-14", ms(313_600))),
            "declared nothing"
        );
        h.stored(&p, "m-14");
        assert_eq!(
            h.earlier_elsewhere(s(11), (&p, "exp-a-1"), ("m-15", ms(315_000)), any),
            None
        );
        // A release ends the node's declaration; a declaration renewed keeps its first bound.
        h.end_declaration("exp-a-1", &p);
        assert!(!h.before_holder(s(12), (&p, "exp-a-1"), ("m-14", ms(313_600))));
        h.declare(s(200), "exp-a-2", &p, vec![("m-20".into(), ms(320_000))]);
        let newer = ("m-21", ms(321_000));
        assert!(
            h.earlier_elsewhere(s(200), (&p, "exp-a-1"), newer, any)
                .is_some()
        );
        assert!(
            h.earlier_elsewhere(s(10) + CONVERSATION_HOLD_MAX, (&p, "exp-a-1"), newer, any)
                .is_none()
        );
    }

    /// A node's two posts on their way when the hold ends between them: the second must not
    /// be taken before the first, refused, comes again.
    #[test]
    fn a_nodes_later_post_waits_behind_its_refused_one() {
        let mut h = Holds::default();
        h.fence(s(10), "exp-a-1", "space-1", "m-10");
        assert!(!h.passes_fence(s(10), "exp-a-1", "space-1", Some("m-13")));
        assert!(h.passes_fence(s(10), "exp-a-2", "space-1", Some("m-13")));
        assert!(h.passes_fence(s(10), "exp-a-1", "space-2", Some("m-13")));
        assert!(h.passes_fence(s(12), "exp-a-1", "space-1", Some("m-10")));
        assert!(h.passes_fence(s(12), "exp-a-1", "space-1", Some("m-13")));
        // A refused post that never comes again fences for the bound only.
        h.fence(s(20), "exp-a-1", "space-1", "m-20");
        assert!(!h.passes_fence(s(21), "exp-a-1", "space-1", None));
        assert!(h.passes_fence(s(20) + CONVERSATION_HOLD_MAX, "exp-a-1", "space-1", None));
    }
}
