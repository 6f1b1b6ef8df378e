//! Jabber → Webex: stanzas from IM&P on the component link become encrypted Webex posts.

use super::*;

impl ConnectorNode {
    /// A stanza from IM&P node `node` on the component link.
    pub fn handle_stanza(&mut self, now: Duration, node: &str, el: &Element, rng: &mut impl Rng) {
        self.clock = self.clock.max(now);
        match el.name.as_str() {
            "iq" => self.on_iq(now, node, el, rng),
            "message" => self.on_message(now, el, rng),
            _ => {}
        }
    }

    pub(super) fn on_iq(&mut self, now: Duration, node: &str, el: &Element, rng: &mut impl Rng) {
        if self.sessions.handle_iq(el, now, rng) {
            self.learn_from_redirects(now, rng);
            self.after_sessions(now);
            return;
        }
        let Some(s) = el.child("session", NS_HM_SESSION) else {
            return;
        };
        if el.attr("type") == Some("set") && s.attr("action") == Some("stop") {
            // The node ended a session (a Jabber client took its resource).
            let bare = s
                .attr("jid")
                .and_then(|j| Jid::parse(j).ok())
                .map(|j| j.bare());
            if let Some(email) = bare
                .as_deref()
                .and_then(|b| self.directory.email_of(b))
                .map(str::to_string)
            {
                let reason = s.attr("reason").unwrap_or("conflict");
                self.sessions.ended_by_node(&email, reason);
                self.published.remove(&email);
                if reason == "see-other-host" {
                    self.prg_moved(now, node, &email, rng);
                }
            }
            let reply = xmpp::iq_result(el, None);
            self.out.push_back(Output::Xmpp {
                node: node.to_string(),
                stanza: reply,
            });
        }
    }

    /// Sessions opened: flush held stanzas, publish presence.
    pub(super) fn after_sessions(&mut self, now: Duration) {
        self.drain_sessions();
        while let Some(email) = self.sessions.poll_opened() {
            self.publish_presence(&email, now);
            let node = self.sessions.node_of(&email).map(str::to_string);
            for stanza in self.held.remove(&email).unwrap_or_default() {
                if let Some(node) = &node {
                    self.stats.to_jabber += 1;
                    self.out.push_back(Output::Xmpp {
                        node: node.clone(),
                        stanza,
                    });
                }
            }
        }
    }

    pub(super) fn on_message(&mut self, now: Duration, el: &Element, rng: &mut impl Rng) {
        if el.attr("type") == Some("error") {
            return self.carry_error_back(el, rng);
        }
        // Carbons: `sent` = our user wrote from Jabber; `received` = a copy of a message to
        // another of our user's resources.
        let inner = el
            .child_ns(NS_CARBONS)
            .and_then(|c| c.child("forwarded", NS_FORWARD))
            .and_then(|f| f.elements().find(|e| e.name == "message"))
            .unwrap_or(el);
        let (Some(from), Some(to)) = (
            inner.attr("from").and_then(|f| Jid::parse(f).ok()),
            inner.attr("to").and_then(|t| Jid::parse(t).ok()),
        ) else {
            self.stats.rejected += 1;
            return;
        };
        if from.resource.as_deref() == Some(SESSION_RESOURCE) {
            self.stats.not_bridged += 1;
            return; // written by a connector: Webex already has it
        }
        // Whatever becomes of it, the sender used Jabber now (spec 52).
        if let Some(actor) = self.directory.email_of(&from.bare())
            && self.assigned.contains(actor)
        {
            self.jabber_seen.insert(actor.to_string(), now);
        }
        let activities = match translate::from_xmpp(inner) {
            Ok(a) => a,
            Err(_) => {
                self.stats.not_bridged += 1;
                return;
            }
        };
        let (Some(actor), Some(other)) = (
            self.directory.email_of(&from.bare()).map(str::to_string),
            self.directory.email_of(&to.bare()).map(str::to_string),
        ) else {
            self.stats.not_bridged += 1;
            return;
        };
        if !self.wanted_in_webex(now, &actor, &other) {
            self.stats.not_bridged += 1;
            return;
        }
        let id = inner.attr("id").unwrap_or("noid").to_string();
        let p = pair(&actor, &other);
        let origin = Origin {
            sender: from.to_string(),
            recipient: other,
            id,
        };
        self.queue_posts(&p, &actor, origin, activities);
        self.flush_outbox(&p, now, rng);
    }

    /// IM&P answered a message this node sent for a Webex post with an error (offline storage
    /// off before 12.5: "Message could not be delivered", spec 46): the sender sees it in
    /// Webex as an `undelivered` activity on their post, with the error's condition and text
    /// (the project's wire: the guide says only that the sender sees the error). An error
    /// for anything else (typing, read markers, a message no longer remembered) is counted.
    pub(super) fn carry_error_back(&mut self, el: &Element, rng: &mut impl Rng) {
        let sid = el.attr("id").unwrap_or_default();
        let found = (
            self.id_map.get(&format!("hm:{sid}")).cloned(),
            self.id_map.get(&format!("hmspace:{sid}")).cloned(),
        );
        let sender = el
            .attr("to")
            .and_then(|t| Jid::parse(t).ok())
            .and_then(|j| self.directory.email_of(&j.bare()).map(str::to_string));
        let (Some(target), Some(space_id), Some(sender)) = (found.0, found.1, sender) else {
            self.stats.errors_dropped += 1;
            return;
        };
        let error = (
            xmpp::error_condition(el).unwrap_or("undefined-condition"),
            xmpp::error_text(el).unwrap_or_default(),
        );
        let post = (sender.as_str(), target.as_str(), space_id.as_str());
        if self.post_undelivered(post, error, &format!("xmpp-error:{sid}"), rng) {
            self.stats.errors_to_webex += 1;
        } else {
            self.stats.errors_dropped += 1;
        }
    }

    /// Posts an `undelivered` activity on `sender`'s post `target` in `space_id`, with the
    /// XMPP error `(condition, text)` encrypted with the space key. False when the key is
    /// not known (nothing posted).
    pub(super) fn post_undelivered(
        &mut self,
        (sender, target, space_id): (&str, &str, &str),
        (condition, text): (&str, String),
        client_id: &str,
        rng: &mut impl Rng,
    ) -> bool {
        let key_uri = self.spaces.get(space_id).map(|s| s.key_uri.clone());
        let Some(key) = key_uri.and_then(|u| self.keys.get(&u).cloned()) else {
            return false;
        };
        let error = json!({"condition": condition, "text": text});
        let ct = jwe::encrypt(&key, jwe::draw_iv(rng), error.to_string().as_bytes());
        let body = json!({"verb": "undelivered", "actor": sender, "target": target,
            "encrypted_text": ct, "client_id": client_id});
        let path = format!("/v1/spaces/{space_id}/activities");
        self.post_retried(path, body, fnv(space_id));
        true
    }

    /// Whether `actor`'s Jabber message to `other` goes to Webex. IM&P gives the connector a message for a recipient only while the recipient used
    /// Webex within 72 h ("we assume that the user will not answer in Webex App if they have
    /// not been active for more than 72 hours", spec 33, 56): a message reaching the
    /// recipient's session while the recipient has not is dropped here. The sender's own copy
    /// (their session here) goes unless both parties are served here and neither used Webex
    /// within 72 h: nobody would read it there. A user moved away whose session is still
    /// handed over from here (a drain, spec 29) is still served here: IM&P gives their
    /// carbons to that session until the new node opens one.
    fn wanted_in_webex(&self, now: Duration, actor: &str, other: &str) -> bool {
        let webex = |me: &Self, u: &str| {
            let p = me.presence.get(u).copied().unwrap_or_default();
            presence::webex_active(&p, now)
        };
        let here =
            |me: &Self, u: &str| me.assigned.contains(u) || me.sessions.handover_node(u).is_some();
        if !here(self, actor) {
            return webex(self, other);
        }
        !here(self, other) || webex(self, actor) || webex(self, other)
    }

    /// Queues a Jabber message's activities on its conversation, once per `client_id` (the
    /// sender's carbon and the recipient's copy are the same message), at most
    /// [`QUEUED_PER_SPACE_MAX`] per conversation.
    pub(super) fn queue_posts(
        &mut self,
        p: &(String, String),
        actor: &str,
        origin: Origin,
        activities: Vec<Activity>,
    ) {
        let (sender, id) = (Jid::parse(&origin.sender).map(|j| j.bare()), &origin.id);
        let sender = sender.unwrap_or_else(|_| origin.sender.clone());
        let queue = self.outbox.entry(p.clone()).or_default();
        for (n, activity) in activities.into_iter().enumerate() {
            if queue.len() >= QUEUED_PER_SPACE_MAX {
                self.stats.dropped_full += 1;
                break;
            }
            if let Activity::Post { .. } = activity {
                remember(
                    &mut self.id_map,
                    &mut self.id_order,
                    format!("xmpp:{sender}:{id}"),
                    String::new(),
                );
            }
            let client_id = format!("xmpp:{sender}:{id}:{n}");
            // Both users on this node: the sender's carbon and the recipient's copy are the
            // same message; post it once (the cloud would drop the second by `client_id`).
            if self.posted.contains_key(&client_id) {
                self.stats.deduplicated += 1;
                continue;
            }
            remember_at_most(
                &mut self.posted,
                &mut self.posted_order,
                client_id.clone(),
                String::new(),
                POSTED_IDS_MAX,
            );
            queue.push_back(OutPost {
                actor: actor.to_string(),
                activity,
                client_id,
                got: self.clock,
                origin: origin.clone(),
            });
        }
    }

    /// Sends queued posts of a conversation once its space and key are known; asks for
    /// whichever is missing.
    pub(super) fn flush_outbox(
        &mut self,
        p: &(String, String),
        _now: Duration,
        rng: &mut impl Rng,
    ) {
        let Some(space_id) = self.pair_space.get(p).cloned() else {
            let asked = self.spaces_in_flight.contains(p);
            if !asked && self.outbox.get(p).is_some_and(|q| !q.is_empty()) {
                self.spaces_in_flight.insert(p.clone());
                let mut body = json!({"kind": "direct", "members": [p.0, p.1]});
                if let Some(since) = self.held_since.get(p) {
                    body["held_since_ms"] = json!(since.as_millis() as u64);
                    body["unposted"] = self.unposted(p, None);
                }
                self.cloud(
                    Method::Post,
                    "/v1/spaces",
                    body,
                    lane_of(p),
                    Pending::Space { pair: p.clone() },
                );
            }
            return;
        };
        let uri = self
            .spaces
            .get(&space_id)
            .map(|s| s.key_uri.clone())
            .unwrap_or_default();
        let Some(key) = self.keys.get(&uri).cloned() else {
            self.key_waiters
                .entry(uri.clone())
                .or_default()
                .insert(p.clone());
            self.fetch_key(&uri);
            return;
        };
        let posts: Vec<OutPost> = self.outbox.remove(p).unwrap_or_default().into();
        for post in posts {
            self.post(&space_id, &key, post, lane_of(p), rng);
        }
        if self.held_since.remove(p).is_some() {
            self.release_hold(&space_id, lane_of(p));
        }
    }

    /// The messages of conversation `p` this node has not posted yet, as it declares them
    /// with a hold or claim (`[{client_id, got_ms}]`, oldest first, at most
    /// [`DECLARED_PER_CONVERSATION_MAX`]): those queued for its space or key, and those of
    /// its lane to `space_id` on their way, refused or waiting their turn. The cloud lets
    /// another node's newer post wait until a copy of each is stored (docs/behaviour.md, "One
    /// conversation, two connector nodes").
    pub(super) fn unposted(&self, p: &(String, String), space_id: Option<&str>) -> Value {
        // Only posts become activities stored with their `client_id`: a typing notice or read
        // marker declared would hold the other node's posts until the cloud's bound.
        let queued = self.outbox.get(p).into_iter().flatten();
        let queued =
            queued.filter(|o| matches!(o.activity, Activity::Post { .. } | Activity::FileRefused));
        let mut all: Vec<(u64, String)> = queued
            .map(|o| (o.got.as_millis() as u64, o.client_id.clone()))
            .collect();
        if let Some(space_id) = space_id {
            let lane = lane_of(p);
            let on_way = self.pending.values();
            let deferred = self.deferred.iter().map(|(_, w)| w);
            let waiting = self.lane_holds.get(&lane).into_iter();
            let waiting = waiting.flat_map(|h| h.waiting.values());
            let sent = on_way.chain(deferred).filter_map(|w| match w {
                Pending::Post(Some(r)) => Some(r),
                _ => None,
            });
            let path = format!("/v1/spaces/{space_id}/activities");
            for r in sent
                .chain(waiting)
                .filter(|r| r.lane == lane && r.path == path)
            {
                if let (Some(cid), Some(got)) =
                    (r.body["client_id"].as_str(), r.body["got_ms"].as_u64())
                {
                    all.push((got, cid.to_string()));
                }
            }
        }
        all.sort();
        all.dedup_by(|a, b| a.1 == b.1);
        all.truncate(DECLARED_PER_CONVERSATION_MAX);
        let list: Vec<Value> = all
            .into_iter()
            .map(|(got, cid)| json!({"client_id": cid, "got_ms": got}))
            .collect();
        Value::Array(list)
    }

    /// Ends this node's hold on a conversation whose earlier messages it has now sent: in
    /// their lane, after them (retried like them), so the cloud lets the other node's posts
    /// in only once this node's are in.
    pub(super) fn release_hold(&mut self, space_id: &str, lane: u64) {
        let path = format!("/v1/spaces/{space_id}{HOLD_PATH_SUFFIX}");
        self.next_post_seq += 1;
        let retry = Box::new(PostRetry {
            path,
            body: json!({"release": true}),
            lane,
            attempts: 1,
            seq: self.next_post_seq,
            held_back: 0,
            releases_hold: true,
            failed_send: false,
            unreached: false,
            since: self.clock,
            sent_at: self.clock,
        });
        self.send_in_lane(retry);
    }

    pub(super) fn post(
        &mut self,
        space_id: &str,
        key: &SpaceKey,
        post: OutPost,
        lane: u64,
        rng: &mut impl Rng,
    ) {
        let path = format!("/v1/spaces/{space_id}/activities");
        let mut enc = |text: &str| jwe::encrypt(key, jwe::draw_iv(rng), text.as_bytes());
        let body = match &post.activity {
            Activity::Post { text } => {
                let ct = enc(text);
                if ct.len() > ENCRYPTED_TEXT_BYTES_MAX {
                    return self.refuse_to_jabber(&post.origin, ct.len());
                }
                json!({"verb": "post", "actor": post.actor, "encrypted_text": ct,
                    "client_id": post.client_id, "got_ms": post.got.as_millis() as u64})
            }
            Activity::FileRefused => {
                let text = enc(translate::FILE_FROM_JABBER_NOTICE);
                json!({"verb": "post", "actor": post.actor, "encrypted_text": text,
                    "client_id": post.client_id, "got_ms": post.got.as_millis() as u64})
            }
            Activity::Typing(on) => {
                let body = json!({"typing": on, "actor": post.actor});
                return self.cloud(
                    Method::Post,
                    &format!("/v1/spaces/{space_id}/typing"),
                    body,
                    lane,
                    Pending::Post(None),
                );
            }
            Activity::Read { up_to } => {
                let Some(target) = self.id_map.get(&format!("hm:{up_to}")).cloned() else {
                    return;
                };
                json!({"verb": "read", "actor": post.actor, "target": target, "client_id": post.client_id})
            }
            _ => return, // edits, deletes and files do not originate in Jabber
        };
        self.post_retried(path, body, lane);
    }

    /// Posts an activity that is retried on failure (its first attempt); while an earlier
    /// post of its lane is on its way or being retried it waits its turn ([`LaneHold`]).
    pub(super) fn post_retried(&mut self, path: String, body: serde_json::Value, lane: u64) {
        self.next_post_seq += 1;
        let retry = Box::new(PostRetry {
            path,
            body,
            lane,
            attempts: 1,
            seq: self.next_post_seq,
            held_back: 0,
            releases_hold: false,
            failed_send: false,
            unreached: false,
            since: self.clock,
            sent_at: self.clock,
        });
        self.send_in_lane(retry);
    }

    /// Sends a post now, or queues it behind its lane's post on its way or retried ([`LaneHold`]).
    fn send_in_lane(&mut self, retry: Box<PostRetry>) {
        let lane = retry.lane;
        match self.lane_holds.get_mut(&lane) {
            Some(hold) if hold.waiting.len() >= HELD_POSTS_PER_LANE_MAX => {
                self.stats.dropped_full += 1;
            }
            Some(_) => self.wait_in_lane(retry),
            None => {
                let hold = LaneHold {
                    head: retry.seq,
                    waiting: BTreeMap::new(),
                };
                self.lane_holds.insert(lane, hold);
                self.send_post(retry);
            }
        }
    }

    /// Queues a post behind its lane's head. A hold's release not sent yet goes behind it:
    /// sent before it, the release would let the other node's newer posts in while this one
    /// still waits (explore seed 23245).
    fn wait_in_lane(&mut self, retry: Box<PostRetry>) {
        let lane = retry.lane;
        let Some(hold) = self.lane_holds.get_mut(&lane) else {
            return;
        };
        let release = (!retry.releases_hold)
            .then(|| hold.waiting.iter().find(|(_, w)| w.releases_hold))
            .flatten()
            .map(|(seq, _)| *seq);
        // Only a post queued behind a release is declared: its space is read then.
        let space = release
            .and_then(|_| super::answers::space_of_post(&retry.path))
            .map(str::to_string);
        hold.waiting.insert(retry.seq, retry);
        let Some(mut r) = release.and_then(|seq| hold.waiting.remove(&seq)) else {
            return;
        };
        self.next_post_seq += 1;
        r.seq = self.next_post_seq;
        hold.waiting.insert(r.seq, r);
        // Declared at the cloud with the rest: the other node may lack it, and must not post
        // its newer messages first (seed 16 of
        // `cloud-outage-two-nodes-order-release-behind-late-posts`).
        if let Some(space) = space.filter(|_| self.another_node_may_serve()) {
            self.declare_unposted(lane, &space);
        }
    }

    /// Sends a post (again).
    pub(super) fn send_post(&mut self, mut p: Box<PostRetry>) {
        p.sent_at = self.clock;
        let (path, body, lane) = (p.path.clone(), p.body.clone(), p.lane);
        self.cloud(Method::Post, &path, body, lane, Pending::Post(Some(p)));
    }

    /// A post failed: it is retried after `at`, still holding its lane (it is the lane's
    /// head: one post of a lane is on its way at a time). A post that is not the head (none
    /// should be) waits in order behind it rather than draw a backoff of its own.
    pub(super) fn hold_lane(&mut self, at: Duration, p: Box<PostRetry>) {
        match self.lane_holds.get_mut(&p.lane) {
            Some(hold) if hold.head != p.seq => {
                hold.waiting.insert(p.seq, p);
            }
            Some(_) => self.deferred.push((at, Pending::Post(Some(p)))),
            None => {
                let hold = LaneHold {
                    head: p.seq,
                    waiting: BTreeMap::new(),
                };
                self.lane_holds.insert(p.lane, hold);
                self.deferred.push((at, Pending::Post(Some(p))));
            }
        }
    }

    /// A post was taken or given up: if it held its lane, the next waiting post goes out (the
    /// lane is free again once none waits).
    pub(super) fn release_lane(&mut self, lane: u64, seq: u64) {
        let Some(hold) = self.lane_holds.get_mut(&lane) else {
            return;
        };
        if hold.head != seq {
            return;
        }
        match hold.waiting.pop_first() {
            Some((next, p)) => {
                hold.head = next;
                self.send_post(p);
            }
            None => {
                self.lane_holds.remove(&lane);
            }
        }
    }

    /// A Jabber message whose encrypted text the cloud would refuse (over
    /// [`ENCRYPTED_TEXT_BYTES_MAX`]: about 48 KB of text): posting it would fail, silently
    /// for the sender, so it is not posted; the Jabber sender gets a `policy-violation` error
    /// from the recipient's session, counted and logged at WARN.
    fn refuse_to_jabber(&mut self, origin: &Origin, size: usize) {
        self.stats.oversize_to_webex += 1;
        tracing::warn!(
            sender = %origin.sender,
            bytes = size,
            limit = ENCRYPTED_TEXT_BYTES_MAX,
            "a Jabber message is too large for Webex: refused to its sender, not posted"
        );
        let Some(jid) = self.directory.jid_of(&origin.recipient) else {
            return;
        };
        let text = format!(
            "Message too large for Webex: {size} bytes encrypted, at most {ENCRYPTED_TEXT_BYTES_MAX}"
        );
        // The message as it came (from its sender to the recipient's session): the reply
        // goes back the other way.
        let msg = Element::new("message", NS_COMPONENT)
            .with_attr("id", origin.id.clone())
            .with_attr("from", origin.sender.clone())
            .with_attr("to", SessionManager::session_jid(jid));
        let err = xmpp::error_reply(&msg, "modify", "policy-violation", Some(&text));
        let recipient = origin.recipient.clone();
        self.send_as(Duration::ZERO, &recipient, err);
    }

    /// A stanza from IM&P over [`STANZA_BYTES_MAX`], skipped by the component link (which
    /// stays up for every other session on it): counted, logged at WARN, and a message's or
    /// request's sender gets a `policy-violation` error, from the addressee, on the same link.
    pub fn handle_oversize(&mut self, node: &str, head: &Element, bytes: usize) {
        self.stats.oversize_skipped += 1;
        let from = head.attr("from").unwrap_or_default();
        tracing::warn!(
            node = %node,
            from = %printable(from.as_bytes(), PEER_TEXT_BYTES_MAX),
            bytes,
            limit = STANZA_BYTES_MAX,
            "a stanza from IM&P is over the stanza limit: skipped, its sender told"
        );
        let answered = match (head.name.as_str(), head.attr("type")) {
            ("message", t) => t != Some("error"),
            ("iq", t) => matches!(t, Some("get" | "set")),
            _ => false,
        };
        if !answered || head.attr("from").is_none() {
            return;
        }
        let text = format!("Stanza too large: {bytes} bytes, at most {STANZA_BYTES_MAX}");
        let err = xmpp::error_reply(head, "modify", "policy-violation", Some(&text));
        self.out.push_back(Output::Xmpp {
            node: node.to_string(),
            stanza: err,
        });
    }
}
