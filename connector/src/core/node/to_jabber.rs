//! Webex → Jabber: cloud events become stanzas sent as the user's session; hand-backs.

use super::*;

impl ConnectorNode {
    /// A cloud event from the WebSocket.
    pub fn handle_event(&mut self, now: Duration, ev: Event, rng: &mut impl Rng) {
        self.clock = self.clock.max(now);
        match ev {
            Event::Activity {
                activity,
                for_user: Some(actor),
            } => {
                self.touch(&actor, now);
                self.inbound(now, InItem::Activity { a: activity, actor }, rng);
            }
            Event::Typing {
                space_id,
                actor,
                typing,
                for_user: Some(_),
            } => {
                self.inbound(
                    now,
                    InItem::Typing {
                        space_id,
                        actor,
                        on: typing,
                    },
                    rng,
                );
            }
            Event::Assignment { added, removed, .. } => {
                if self.fetching_assignments() {
                    let named = added.iter().chain(&removed).cloned();
                    self.moved_while_fetching.extend(named);
                }
                for u in removed {
                    self.unassign(&u, now);
                }
                let new: Vec<String> = added
                    .into_iter()
                    .filter(|u| self.assigned.insert(u.clone()))
                    .collect();
                for u in &new {
                    self.jabber_seen.entry(u.clone()).or_insert(now);
                }
                self.poll_presence_of_new(&new);
                self.ask_again_for(&new, now, rng);
                self.after_assignments(now, rng);
            }
            Event::Registration {
                state: RegState::Registered,
                ..
            } => self.on_ready(),
            Event::Maintenance { on, .. } => self.set_maintenance(on, now),
            _ => {}
        }
    }

    /// The event stream connected for the first time since this node started. Events the
    /// cloud sent before had no socket and are lost: if the node has heard whom it serves
    /// already, or asked, it asks again as after a reconnect ([`Self::resync`]); before its
    /// first fetch (the usual start: the stream is up in a second, the fetch follows
    /// registration and discovery) that fetch covers them. Explore seed 20415: a restart
    /// during a cloud outage, the stream up 37 s after it, the users assigned meanwhile.
    pub fn events_connected(&mut self, now: Duration) {
        if self.assignments_heard || self.fetching_assignments() {
            self.resync(now);
        }
    }

    /// The event stream reconnected: events may have been missed, so fetch assignments again
    /// (activities missed meanwhile are the cloud's to replay, as for any client).
    pub fn resync(&mut self, _now: Duration) {
        if self.registered {
            self.cloud(
                Method::Get,
                "/v1/connectors/assignments",
                Value::Null,
                0,
                Pending::Assignments { resync: true },
            );
        }
    }

    /// The actor just used Webex to write or read to or from Jabber: they are active now (the
    /// status page's "active", spec 70); make sure their session is wanted.
    pub(super) fn touch(&mut self, email: &str, now: Duration) {
        let p = self.presence.entry(email.to_string()).or_default();
        p.last_active = Some(now);
        if self.assigned.contains(email) {
            self.interop_seen.insert(email.to_string(), now);
        }
        self.apply_presence(email, now);
        self.drain_sessions();
    }

    pub(super) fn inbound(&mut self, now: Duration, item: InItem, rng: &mut impl Rng) {
        if let InItem::Activity { a, .. } = &item
            && self.id_map.contains_key(&format!("act:{}", a.id))
        {
            // Redelivered after a hand-back, but this node sent it already.
            self.stats.duplicate_events += 1;
            return;
        }
        if matches!(&item, InItem::Activity { actor, .. } if !self.can_send_as(actor)) {
            return self.unserved_activity(item);
        }
        let space_id = match &item {
            InItem::Activity { a, .. } => a.space_id.clone(),
            InItem::Typing { space_id, .. } => space_id.clone(),
        };
        let Some(space) = self.spaces.get(&space_id).cloned() else {
            let first = !self.inbox_space.contains_key(&space_id);
            self.inbox_space
                .entry(space_id.clone())
                .or_default()
                .push(item);
            if first {
                self.cloud(
                    Method::Get,
                    &format!("/v1/spaces/{space_id}"),
                    Value::Null,
                    fnv(&space_id),
                    Pending::SpaceInfo { space_id },
                );
            }
            return;
        };
        let needs_key = matches!(&item, InItem::Activity { a, .. } if a.encrypted_text.is_some() || a.target_encrypted_text.is_some());
        if needs_key && !self.keys.contains_key(&space.key_uri) {
            self.inbox_key
                .entry(space.key_uri.clone())
                .or_default()
                .push(item);
            self.fetch_key(&space.key_uri);
            return;
        }
        let key = self.keys.get(&space.key_uri).cloned();
        match item {
            InItem::Typing { actor, on, .. } => {
                self.deliver(now, &space, &actor, Activity::Typing(on), None, rng)
            }
            InItem::Activity { a, actor } => {
                let Some(activity) = self.decode(&a, key.as_ref()) else {
                    self.stats.rejected += 1;
                    self.check_decryptable(&a, key.as_ref());
                    return;
                };
                self.deliver(
                    now,
                    &space,
                    &actor,
                    activity,
                    Some((&a.id, &a.space_id)),
                    rng,
                );
            }
        }
    }

    /// An activity whose actor this node does not serve, as far as it knows. Before it heard
    /// whom it serves (a restarted node, its assignments fetch not answered yet), or while a
    /// fetch is out, it cannot know: the cloud sent the event here because it assigns the
    /// actor here, most likely, and the answer will say so. The activity waits for it
    /// ([`ConnectorNode::after_assignments`]). Handed back at once instead, it went to the
    /// cloud and back while the conversation's next activity, arriving after the answer, went
    /// straight to Jabber: two Webex messages 180 ms apart reached Jabber reversed
    /// (`connector-restart-publisher-down-order`, seeds 5 and 14).
    pub(super) fn unserved_activity(&mut self, item: InItem) {
        let unsure = !self.assignments_heard || self.fetching_assignments();
        if unsure && self.awaiting_assignments.len() < AWAITING_ASSIGNMENTS_MAX {
            self.awaiting_assignments.push_back(item);
            return;
        }
        if let InItem::Activity { a, actor } = &item {
            self.hand_back(a, actor);
        }
    }

    /// The node learned whom it serves (an assignments answer or event): the activities that
    /// waited for it go on, in the order they arrived; those of users still not served here
    /// are handed back (or wait again, while another fetch is out). An actor served here is
    /// active now, as when the event is read for a user assigned here ([`Self::touch`]; a
    /// redelivery after a hand-back used to count them so).
    pub(super) fn after_assignments(&mut self, now: Duration, rng: &mut impl Rng) {
        self.assignments_heard = true;
        for item in std::mem::take(&mut self.awaiting_assignments) {
            if let InItem::Activity { actor, .. } = &item
                && self.assigned.contains(actor)
            {
                let actor = actor.clone();
                self.touch(&actor, now);
            }
            self.inbound(now, item, rng);
        }
    }

    /// Counts and logs an activity whose ciphertext does not open with its space key (a bad
    /// tag: tampered, or encrypted with another key). Logged at WARN when the count reaches
    /// 1, 2, 4, 8, …: visible at once, never a flood.
    pub(super) fn check_decryptable(
        &mut self,
        a: &crate::proto::webex::Activity,
        key: Option<&SpaceKey>,
    ) {
        let (Some(key), Some(ct)) = (key, a.encrypted_text.as_ref()) else {
            return;
        };
        let Err(e) = jwe::decrypt(key, ct) else {
            return;
        };
        self.stats.undecryptable += 1;
        let count = self.stats.undecryptable;
        if count.is_power_of_two() {
            tracing::warn!(
                activity = %printable(a.id.as_bytes(), PEER_TEXT_BYTES_MAX),
                space = %printable(a.space_id.as_bytes(), PEER_TEXT_BYTES_MAX),
                error = %e,
                count,
                "a Webex activity was dropped: its ciphertext does not decrypt with the space key"
            );
        }
    }

    /// Turns a stored activity into the neutral model, decrypting what it carries.
    pub(super) fn decode(
        &self,
        a: &crate::proto::webex::Activity,
        key: Option<&SpaceKey>,
    ) -> Option<Activity> {
        let open = |ct: &Option<String>| -> Option<String> {
            let ct = ct.as_ref()?;
            let plain = jwe::decrypt(key?, ct).ok()?;
            String::from_utf8(plain).ok()
        };
        Some(match a.verb {
            Verb::Post => match &a.edit_of {
                Some(orig) => Activity::Edit {
                    replaces: orig.clone(),
                    text: open(&a.encrypted_text)?,
                },
                None => Activity::Post {
                    text: open(&a.encrypted_text)?,
                },
            },
            Verb::Share => {
                let file: Value = serde_json::from_str(&open(&a.encrypted_text)?).ok()?;
                Activity::File {
                    url: file["url"].as_str()?.to_string(),
                    name: file["name"].as_str().unwrap_or("file").to_string(),
                }
            }
            Verb::Delete => match a.target_verb {
                Some(Verb::Share) => {
                    let name = open(&a.target_encrypted_text)
                        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                        .and_then(|f| f["name"].as_str().map(str::to_string))
                        .unwrap_or_else(|| "file".into());
                    Activity::FileDeleted {
                        target: a.target.clone().unwrap_or_default(),
                        name,
                    }
                }
                // An edit arrives as the new post (with `edit_of`) and this delete: the notice
                // is sent once, with the edit.
                _ if a.edit_of.is_some() => return None,
                _ => Activity::Delete {
                    target: a.target.clone().unwrap_or_default(),
                },
            },
            // A failure notice for a Webex author: nothing to say in Jabber.
            Verb::Undelivered => return None,
            Verb::Read => {
                let target = a.target.clone()?;
                let up_to = self
                    .id_map
                    .get(&format!("act:{target}"))
                    .cloned()
                    .unwrap_or(target);
                Activity::Read { up_to }
            }
        })
    }

    /// Sends `activity` from `actor`'s session to the other member of the space. `stored`:
    /// the (activity id, space id) it came from, remembered by stanza id for read markers and
    /// for carrying an XMPP error back to the sender.
    pub(super) fn deliver(
        &mut self,
        now: Duration,
        space: &SpaceInfo,
        actor: &str,
        activity: Activity,
        stored: Option<(&str, &str)>,
        rng: &mut impl Rng,
    ) {
        // Group spaces are never bridged (spec 42); the cloud does not route them here, and a
        // stray one is dropped rather than sent to one member picked out of many.
        if space.members.len() != 2 {
            self.stats.not_bridged += 1;
            return;
        }
        let Some(other) = space.members.iter().find(|m| *m != actor).cloned() else {
            return;
        };
        let (Some(from), Some(to)) = (
            self.directory.jid_of(actor).map(str::to_string),
            self.directory.jid_of(&other).map(str::to_string),
        ) else {
            self.stats.not_bridged += 1;
            return;
        };
        let name = actor.split('@').next().unwrap_or(actor).to_string();
        let from_full = SessionManager::session_jid(&from);
        let mut next = self.next_stanza;
        let host = self.s.hostname.clone();
        let stanzas = translate::to_xmpp(&activity, &from_full, &to, &name, &mut || {
            next += 1;
            format!("hm-{host}-{next}")
        });
        self.next_stanza = next;
        for mut st in stanzas {
            st.ns = NS_COMPONENT.to_string();
            for c in st.children.iter_mut() {
                if let crate::proto::xml::Node::Element(e) = c
                    && e.ns == xmpp::NS_CLIENT
                {
                    e.ns = NS_COMPONENT.to_string();
                }
            }
            if self.refused_as_oversize(actor, &st, stored, rng) {
                continue;
            }
            if let (Some(stored), Some(sid), true) =
                (stored, st.attr("id"), xmpp::body(&st).is_some())
            {
                self.remember_sent(stored, sid.to_string());
            }
            if xmpp::body(&st).is_some() && self.planted_drop() {
                continue;
            }
            self.send_as(now, actor, st);
        }
    }

    /// Remembers which activity (and space) the message stanza `sid` carries, both ways: for
    /// read markers, and for carrying an XMPP error back to the sender.
    fn remember_sent(&mut self, (aid, space_id): (&str, &str), sid: String) {
        let (map, order) = (&mut self.id_map, &mut self.id_order);
        remember(map, order, format!("hm:{sid}"), aid.to_string());
        remember(map, order, format!("hmspace:{sid}"), space_id.to_string());
        remember(map, order, format!("act:{aid}"), sid);
    }

    /// Whether `stanza` is too large for IM&P's component stream (its serialized size over
    /// [`STANZA_BYTES_MAX`], the limit IM&P's parser applies too): it is refused here, before
    /// a byte goes on the shared link, because a peer's parser that refuses a stanza cannot
    /// find the end of it to skip it and ends the stream, and with it every session on the
    /// link. The Webex sender is told with an `undelivered` activity (`policy-violation`), the
    /// refusal counted and logged at WARN.
    pub(super) fn refused_as_oversize(
        &mut self,
        actor: &str,
        stanza: &Element,
        stored: Option<(&str, &str)>,
        rng: &mut impl Rng,
    ) -> bool {
        let size = stanza.to_xml_in(NS_COMPONENT).len();
        if size <= STANZA_BYTES_MAX {
            return false;
        }
        self.stats.oversize_refused += 1;
        tracing::warn!(
            sender = %actor,
            bytes = size,
            limit = STANZA_BYTES_MAX,
            "a Webex message is too large for IM&P: refused to its sender, not sent"
        );
        if let Some((aid, space_id)) = stored {
            let text = format!(
                "Message too large for Jabber: {size} bytes as XML, at most {STANZA_BYTES_MAX}"
            );
            let client_id = format!("oversize:{aid}");
            let post = (actor, aid, space_id);
            self.post_undelivered(post, ("policy-violation", text), &client_id, rng);
        }
        true
    }

    /// The IM&P node of the session that carries stanzas sent as `email` now: their open
    /// session, or for a user moved to another node whose session is still handed over from
    /// here, that one (what was in flight for them goes out on it rather than waiting for a
    /// session that never opens).
    pub(super) fn sending_node(&self, email: &str) -> Option<&str> {
        let open = matches!(self.sessions.state(email), Some(SessionState::Open));
        match open {
            true => self.sessions.node_of(email),
            false => self.sessions.handover_node(email),
        }
    }

    /// Whether a stanza sent as `email` can still go out from this node (now, or once their
    /// session opens).
    pub(super) fn can_send_as(&self, email: &str) -> bool {
        self.sending_node(email).is_some() || self.assigned.contains(email)
    }

    /// Gives an activity event this node can no longer deliver back to the cloud, which sends
    /// it to the user's node now: without it a message that arrived just before its user moved
    /// (a drain, spec 29) would be lost here.
    pub(super) fn hand_back(&mut self, a: &crate::proto::webex::Activity, actor: &str) {
        let body = json!({"space_id": a.space_id, "activity_id": a.id, "for_user": actor});
        let lane = fnv(&a.space_id);
        let h = HandBack {
            body: body.clone(),
            lane,
            attempts: 1,
        };
        self.cloud(
            Method::Post,
            HANDBACK_PATH,
            body,
            lane,
            Pending::HandBack(Box::new(h)),
        );
    }

    /// The cloud took an activity back and sent it to the user's node now (`to`). That being
    /// this node means it serves the user although no assignment event said so (one was lost
    /// with a dropped event socket and the resync has not answered yet): the user is taken on
    /// now, so that the redelivered event goes out instead of bouncing until the cloud's bound.
    pub(super) fn on_handed_back(&mut self, h: &HandBack, answer: &Value) {
        self.stats.handed_back += 1;
        let Some(user) = h.body["for_user"].as_str() else {
            return;
        };
        if answer["to"].as_str() == Some(self.s.hostname.as_str())
            && self.assigned.insert(user.to_string())
        {
            self.poll_presence(&[user.to_string()]);
        }
    }

    /// Sends a stanza as the user's session, holding it until the session is open.
    pub(super) fn send_as(&mut self, _now: Duration, email: &str, stanza: Element) {
        match self.sending_node(email).map(str::to_string) {
            Some(node) => {
                self.stats.to_jabber += 1;
                self.out.push_back(Output::Xmpp { node, stanza });
            }
            // Not assigned here any more: no session will open to carry it.
            None if !self.assigned.contains(email) => {
                self.stats.dropped_unserved += 1;
            }
            None => {
                let q = self.held.entry(email.to_string()).or_default();
                if q.len() >= HELD_PER_USER_MAX {
                    self.stats.dropped_full += 1;
                    return;
                }
                q.push_back(stanza);
            }
        }
    }
}
