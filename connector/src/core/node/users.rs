//! Assignments from the cloud, presence polling and publishing, and wanted sessions.

use super::*;

impl ConnectorNode {
    /// A snapshot of this node's assignments. It may be older than assignment events that
    /// arrived meanwhile on the event stream, so it only adds users, except on a resync after
    /// the stream reconnected, when missed removals must be applied too.
    pub(super) fn on_assignments(
        &mut self,
        now: Duration,
        v: &Value,
        resync: bool,
        rng: &mut impl Rng,
    ) {
        let users: BTreeSet<String> = v["users"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        // Events about a user read while this answer was on its way are as new as it or
        // newer (a user's events come in order and end at the cloud's state): they stand.
        let moved = std::mem::take(&mut self.moved_while_fetching);
        if self.fetching_assignments() {
            self.moved_while_fetching = moved.clone();
        }
        if resync {
            let removed: Vec<String> = (self.assigned.difference(&users))
                .filter(|u| !moved.contains(*u))
                .cloned()
                .collect();
            for u in removed {
                self.unassign(&u, now);
            }
        }
        let added: Vec<String> = (users.difference(&self.assigned))
            .filter(|u| !moved.contains(*u))
            .cloned()
            .collect();
        self.assigned.extend(added.iter().cloned());
        for u in &added {
            self.jabber_seen.entry(u.clone()).or_insert(now);
        }
        if resync {
            self.reopen_taken_over(&users, &moved, now);
        }
        self.poll_presence(&added);
        self.ask_again_for(&added, now, rng);
        self.after_assignments(now, rng);
    }

    /// After a resync, the users still assigned here whose session another connector node
    /// took over are asked for again, as an assignment would: the node missed their moves
    /// away and back while its event stream was down, and nothing else would reopen them
    /// before the next presence poll (explore seed 26232: exp-a-2 cut off from the cloud
    /// through its own maintenance mode, four users without a session for 10 minutes).
    fn reopen_taken_over(
        &mut self,
        users: &BTreeSet<String>,
        moved: &BTreeSet<String>,
        now: Duration,
    ) {
        let taken: Vec<String> = (users.iter())
            .filter(|u| !moved.contains(*u) && self.sessions.taken_over(u))
            .cloned()
            .collect();
        for u in &taken {
            self.apply_presence(u, now);
        }
        if !taken.is_empty() {
            self.drain_sessions();
        }
    }

    /// Whether an assignments fetch is waiting for its answer.
    pub(super) fn fetching_assignments(&self) -> bool {
        self.assignments_in_flight > 0
    }

    pub(super) fn unassign(&mut self, user: &str, now: Duration) {
        self.assigned.remove(user);
        self.jabber_seen.remove(user);
        self.interop_seen.remove(user);
        self.peer_homes.remove(user);
        // Moved to another node (or unassigned): make-before-break, so a message IM&P routes
        // to the session before the new node opens one is still bridged (spec 29).
        self.sessions.release(user, now);
        self.published.remove(user);
        self.presence_due.remove(user);
        let held = self.held.remove(user).map_or(0, |q| q.len());
        self.stats.dropped_unserved += held as u64;
        self.drain_sessions();
    }

    pub(super) fn poll_presence(&mut self, emails: &[String]) {
        self.query_presence(emails, false);
    }

    /// Presence queries of [`PRESENCE_BATCH_MAX`] users each; `for_events` marks those asked
    /// for users assignment events added ([`Self::poll_presence_of_new`]).
    fn query_presence(&mut self, emails: &[String], for_events: bool) {
        for chunk in emails.chunks(PRESENCE_BATCH_MAX) {
            self.cloud(
                Method::Post,
                "/v1/presence/query",
                json!({"emails": chunk}),
                0,
                Pending::Presence { for_events },
            );
        }
    }

    /// Asks presence for users assignment events just added: now if no such query is in
    /// flight, else together with the others added meanwhile once it is answered.
    pub(super) fn poll_presence_of_new(&mut self, emails: &[String]) {
        self.presence_due.extend(emails.iter().cloned());
        if self.presence_for_events_in_flight == 0 {
            self.ask_presence_due();
        }
    }

    /// Asks presence for the users of `presence_due`, in queries of [`PRESENCE_BATCH_MAX`].
    pub(super) fn ask_presence_due(&mut self) {
        let due: Vec<String> = std::mem::take(&mut self.presence_due).into_iter().collect();
        self.query_presence(&due, true);
    }

    pub(super) fn on_presence(&mut self, now: Duration, v: &Value) {
        let Some(states) = v["states"].as_array() else {
            self.stats.rejected += 1;
            return;
        };
        for st in states {
            let Some(email) = st["email"].as_str() else {
                continue;
            };
            let ms = |k: &str| st[k].as_u64().map(Duration::from_millis);
            // An answer written before a post this node has since carried is older than what
            // it knows: the user stays active since that post ([`Self::touch`]).
            let known = self.presence.get(email).and_then(|p| p.last_active);
            let p = WebexPresence {
                last_active: ms("last_active_ms").max(known),
                dnd_until: ms("dnd_until_ms"),
                out_of_office: st["out_of_office"].as_bool().unwrap_or(false),
                hidden: st["hidden"].as_bool().unwrap_or(false),
            };
            self.presence.insert(email.to_string(), p);
            self.learn_interop(email, ms("last_interop_ms"), now);
            self.apply_presence(email, now);
        }
        self.drain_sessions();
    }

    /// The cloud's last use of Webex with Jabber of a user assigned here (spec 70): what a
    /// node that restarted, or was just given the user, never saw itself. Never later than
    /// `now` (a time ahead would keep the user active beyond 72 h), never earlier than a use
    /// this node carried.
    fn learn_interop(&mut self, email: &str, used: Option<Duration>, now: Duration) {
        let Some(used) = used.map(|t| t.min(now)) else {
            return;
        };
        if self.assigned.contains(email) {
            let seen = self.interop_seen.entry(email.to_string()).or_insert(used);
            *seen = (*seen).max(used);
        }
    }

    /// Wants or drops the user's session, and republishes presence if it changed.
    pub(super) fn apply_presence(&mut self, email: &str, now: Duration) {
        if !self.assigned.contains(email) {
            return;
        }
        let p = self.presence.get(email).copied().unwrap_or_default();
        let Some(entry) = self.directory.get(email).cloned() else {
            return;
        };
        let jabber = self.jabber_seen.get(email).copied();
        if presence::wants_session(&p, jabber, now) {
            let target = self.failover.target(&entry.home);
            self.sessions.want(email, &entry.jid, &target, now);
            self.publish_presence(email, now);
        } else {
            self.sessions.unwant(email, now);
            self.published.remove(email);
        }
    }

    pub(super) fn publish_presence(&mut self, email: &str, now: Duration) {
        if !matches!(self.sessions.state(email), Some(SessionState::Open)) {
            return;
        }
        let p = self.presence.get(email).copied().unwrap_or_default();
        let shown = presence::translate(&p, self.jabber_seen.get(email).copied(), now);
        if self.published.get(email) == Some(&shown) || shown == JabberPresence::Offline {
            return;
        }
        self.published.insert(email.to_string(), shown);
        let (Some(jid), Some(node)) = (self.directory.jid_of(email), self.sessions.node_of(email))
        else {
            return;
        };
        // Undirected: IM&P composes it with the user's other devices and tells contacts.
        let mut pres = Element::new("presence", NS_COMPONENT)
            .with_attr("from", SessionManager::session_jid(jid));
        if let Some(show) = shown.show() {
            pres = pres.with_child(Element::new("show", NS_COMPONENT).with_text(show));
        }
        pres = pres.with_child(Element::new("status", NS_COMPONENT).with_text(STATUS_TEXT));
        if shown == JabberPresence::Dnd {
            // Webex DND is user level: it holds on every device of the user and Jabber cannot
            // clear it until it ends in Webex (spec 54).
            pres = pres.with_child(
                Element::new("hm-presence", crate::proto::xmpp::NS_HM_PRESENCE)
                    .with_attr("kind", "user"),
            );
        }
        let node = node.to_string();
        self.out.push_back(Output::Xmpp { node, stanza: pres });
    }

    pub(super) fn drain_sessions(&mut self) {
        while let Some(cmd) = self.sessions.poll_command() {
            self.out.push_back(Output::Xmpp {
                node: cmd.node,
                stanza: cmd.iq,
            });
        }
    }
}
