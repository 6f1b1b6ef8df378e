//! Component links, timers, retries, and failover moves (spec 61-65).

use super::*;

impl ConnectorNode {
    /// The component link to `node` is established.
    pub fn node_up(&mut self, now: Duration, node: &str, rng: &mut impl Rng) {
        self.failover.link_back(node, now, rng);
        self.sessions.node_up(node, now);
        self.drain_sessions();
    }

    /// The component link to `node` was lost.
    pub fn node_down(&mut self, now: Duration, node: &str, rng: &mut impl Rng) {
        self.failover.link_lost(node, now, rng);
        self.sessions.node_down(node, now);
        for (email, _) in self.published.clone() {
            if self.sessions.node_of(&email) == Some(node) {
                self.published.remove(&email);
            }
        }
        self.drain_sessions();
    }

    /// The next time [`Self::handle_timeout`] must run.
    pub fn poll_timeout(&mut self, now: Duration) -> Option<Duration> {
        let mut t = [
            (self.token.is_some()).then_some(self.next_heartbeat),
            (self.phase == Phase::Running).then_some(self.next_poll),
            self.retry_at.as_ref().map(|(at, _)| *at),
            self.sessions.poll_timeout(now),
            self.deferred.iter().map(|(at, _)| *at).min(),
            self.failover.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(x) = t.as_mut() {
            *x = (*x).max(now);
        }
        t
    }

    /// Runs timers due at `now`.
    pub fn handle_timeout(&mut self, now: Duration, rng: &mut impl Rng) {
        self.clock = self.clock.max(now);
        if let Some((at, _)) = &self.retry_at
            && *at <= now
        {
            let (_, what) = self.retry_at.take().expect("checked");
            self.retry_request(what);
        }
        if self.token.is_some() && now >= self.next_heartbeat {
            self.next_heartbeat = now + HEARTBEAT_INTERVAL;
            let status = self.status_json(now);
            self.cloud(
                Method::Post,
                "/v1/connectors/heartbeat",
                json!({"status": status}),
                CONTROL_LANE,
                Pending::Heartbeat,
            );
        }
        if self.phase == Phase::Running && now >= self.next_poll {
            self.next_poll = now + presence::POLL_INTERVAL;
            let users: Vec<String> = self.assigned.iter().cloned().collect();
            self.poll_presence(&users);
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.deferred = later;
        for (_, what) in due {
            self.retry_fetch(what, now, rng);
        }
        for m in self.failover.due(now) {
            self.migrate(&m, now);
        }
        // (The flag first: counting pending opens walks every user.)
        if self.sessions_bucket_is_migration && self.sessions.pending_opens() == 0 {
            let normal =
                TokenBucket::new(self.s.session_rate_per_s, self.s.session_rate_per_s, now);
            self.sessions.set_bucket(normal);
            self.sessions_bucket_is_migration = false;
        }
        self.sessions.handle_timeout(now);
        self.after_sessions(now);
        let _ = rng;
    }

    /// Asks again for a space, a key or a space's members after a failure.
    pub(super) fn retry_fetch(&mut self, what: Pending, now: Duration, rng: &mut impl Rng) {
        match what {
            Pending::Space { pair } => {
                self.spaces_in_flight.remove(&pair);
                self.flush_outbox(&pair, now, rng);
            }
            Pending::Key { uri } => {
                self.keys_in_flight.remove(&uri);
                self.fetch_key(&uri);
            }
            Pending::SpaceInfo { space_id } => {
                let path = format!("/v1/spaces/{space_id}");
                self.cloud(
                    Method::Get,
                    &path,
                    Value::Null,
                    fnv(&space_id),
                    Pending::SpaceInfo { space_id },
                );
            }
            Pending::Post(Some(mut p)) => {
                p.attempts += 1;
                self.send_post(p);
            }
            Pending::Nodes { cluster } => self.discover_cluster(&cluster),
            Pending::HandBack(mut h) => {
                h.attempts += 1;
                let (body, lane) = (h.body.clone(), h.lane);
                self.cloud(
                    Method::Post,
                    HANDBACK_PATH,
                    body,
                    lane,
                    Pending::HandBack(h),
                );
            }
            _ => {}
        }
    }

    pub(super) fn retry_request(&mut self, what: Pending) {
        match what {
            Pending::Register => self.register(Duration::ZERO),
            // The report itself, not the assignments: a report the cloud did not take (a 429
            // at registration) left the users Pending for good (explore seed 2019).
            Pending::Report => self.report_known_users(),
            // A resync stays one: the removals it is for were missed on the stream.
            what @ Pending::Assignments { .. } => self.cloud(
                Method::Get,
                "/v1/connectors/assignments",
                Value::Null,
                0,
                what,
            ),
            _ => {}
        }
    }

    /// A node ended `email`'s session with `see-other-host`: its PRG moved the user's home
    /// away. The home node itself doing so is a (manual) failover of that node; its peer doing
    /// so gives the users back (fallback). Either is noticed like a lost stream, with the
    /// detection delay (spec 62).
    pub(super) fn prg_moved(&mut self, now: Duration, node: &str, email: &str, rng: &mut impl Rng) {
        let Some(home) = self.directory.get(email).map(|e| e.home.to_string()) else {
            return;
        };
        if home == node {
            self.failover.node_lost(&home, now, rng);
        } else {
            self.failover.node_back(&home, now, rng);
        }
    }

    /// Opens a node refused with a `redirect` naming the node that serves the user now (the
    /// sessions followed them): what they tell about the PRG. The home node's peer serving
    /// its users is a failover the connector did not see (it started while the node was
    /// failed over): the node's other users not open anywhere go to the peer as well. The
    /// home node serving them again is a fallback it did not see.
    pub(super) fn learn_from_redirects(&mut self, now: Duration, rng: &mut impl Rng) {
        while let Some(r) = self.sessions.poll_redirected() {
            let Some(home) = self.directory.get(&r.user).map(|e| e.home.to_string()) else {
                continue;
            };
            if r.to != home {
                if self.failover.learned_failed_over(&home, &r.to, now) {
                    // Re-creating the node's sessions on the peer loads it like any failover
                    // does: at the migration rate (spec 62), not the normal open rate.
                    let m = Move {
                        from: home,
                        to: r.to,
                        at: now,
                        fallback: false,
                    };
                    self.migrate(&m, now);
                }
            } else if self.failover.target(&home) != home {
                self.failover.node_back(&home, now, rng);
            }
        }
    }

    /// Moves the sessions of the users homed on the failed node (failover: from it to its
    /// peer; fallback: from the peer back to it), paced by the migration rate. The peer's own
    /// users stay where they are.
    pub(super) fn migrate(&mut self, m: &Move, now: Duration) {
        let (count, per) = self.s.migration_rate;
        self.sessions.set_bucket(TokenBucket::per(count, per, now));
        self.sessions_bucket_is_migration = true;
        let home = if m.fallback { &m.to } else { &m.from };
        let movers: Vec<String> = self
            .sessions
            .users()
            .filter(|u| self.sessions.node_of(u) == Some(m.from.as_str()))
            .filter(|u| self.directory.get(u).is_some_and(|e| *e.home == **home))
            .cloned()
            .collect();
        for u in movers {
            self.sessions.retarget(&u, &m.to, now);
        }
        self.drain_sessions();
    }
}
