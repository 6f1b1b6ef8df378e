//! HTTP answers and failures: what each answered request leads to, and what is retried.

use super::*;

impl ConnectorNode {
    /// An HTTP answer for request `id`.
    pub fn handle_http(
        &mut self,
        now: Duration,
        id: u64,
        status: u16,
        body: &[u8],
        rng: &mut impl Rng,
    ) {
        self.clock = self.clock.max(now);
        let Some(what) = self.pending.remove(&id) else {
            return;
        };
        self.answered(&what);
        // The cloud answered this fetch: a retry after an error keeps its backoff.
        if let Some(id) = fetch_id(&what) {
            self.unreached_fetches.remove(&id);
        }
        if !(200..300).contains(&status) {
            return self.on_error_status(now, what, status, body, rng);
        }
        let fetch = fetch_id(&what);
        let axl = matches!(what, Pending::Nodes { .. } | Pending::Users { .. });
        let control = matches!(
            what,
            Pending::Register
                | Pending::Nodes { .. }
                | Pending::Users { .. }
                | Pending::Report
                | Pending::Assignments { .. }
        );
        if !axl {
            self.cloud_answered(now);
        }
        self.dispatch(now, what, body, rng);
        if let Some(id) = fetch {
            self.fetch_failures.remove(&id);
        } else if control {
            self.retry.reset();
        }
        if axl {
            self.axl_fault = None;
        }
    }

    /// What the status log shows for a failed AXL request to `cluster`'s publisher.
    fn axl_fault_text(&self, cluster: &str, why: &str) -> String {
        let publisher = self
            .s
            .cluster
            .publishers
            .iter()
            .find(|p| p.cluster == cluster);
        match publisher {
            Some(p) => format!("AXL publisher {} (IM&P cluster {cluster}): {why}", p.host),
            None => format!("AXL (IM&P cluster {cluster}): {why}"),
        }
    }

    /// An error status: a hand-back refused for good is given up; anything else fails.
    pub(super) fn on_error_status(
        &mut self,
        now: Duration,
        what: Pending,
        status: u16,
        body: &[u8],
        rng: &mut impl Rng,
    ) {
        self.stats.http_errors += 1;
        // Refused for good (limit reached, nobody serves the user): nothing else can
        // deliver it. A 429 or 5xx is retried like any failure.
        if matches!(what, Pending::HandBack(_)) && (400..500).contains(&status) && status != 429 {
            self.stats.dropped_unserved += 1;
            return;
        }
        if matches!(what, Pending::Heartbeat) && status == 401 && self.resumed && !self.registered {
            return self.saved_token_refused(now);
        }
        // Another node holds earlier messages of the conversation: not a failure, the post
        // waits for them (bounded by the cloud's hold and HELD_BY_PEER_RETRIES_MAX).
        let what = match what {
            Pending::Post(Some(p))
                if status == 409 && !p.releases_hold && p.held_back < HELD_BY_PEER_RETRIES_MAX =>
            {
                return self.wait_for_holder(now, p);
            }
            other => other,
        };
        // The body is the peer's: escaped, so it can never forge a log or status line.
        let why = format!("HTTP {status}: {}", printable(body, PEER_TEXT_BYTES_MAX));
        self.failed(now, what, &why, rng);
    }

    /// The cloud refused a post (409) because another connector node holds earlier messages
    /// of its conversation: it is sent again after [`HELD_BY_PEER_RETRY`], holding its lane
    /// meanwhile, and the refusal does not count as one of its [`POST_ATTEMPTS_MAX`] sends.
    ///
    /// At its first refusal the node declares the conversation's messages it has not posted
    /// (a claim without `since_ms`, [`ConnectorNode::unposted`]): the holder may lack one of
    /// them, which only this node has, and must then not post its newer ones first (the
    /// holder that lacks a message only the other node has, `cloud-outage-two-nodes-order-
    /// post-retry` `--seed 19`).
    fn wait_for_holder(&mut self, now: Duration, mut p: Box<PostRetry>) {
        self.stats.held_by_peer += 1;
        let first = p.held_back == 0;
        p.held_back += 1;
        p.failed_send = false;
        // The retry counts a send again (`retry_fetch`): this one did not fail.
        p.attempts = p.attempts.saturating_sub(1);
        let (lane, space_id) = (p.lane, space_of_post(&p.path).map(str::to_string));
        self.hold_lane(now + HELD_BY_PEER_RETRY, p);
        if let (true, Some(space_id)) = (first, space_id) {
            self.declare_unposted(lane, &space_id);
        }
    }

    /// Declares this node's unposted messages of the conversation of `lane` and `space_id`
    /// at the cloud, on the control connection, claiming nothing.
    pub(super) fn declare_unposted(&mut self, lane: u64, space_id: &str) {
        let Some(p) = self
            .pair_space
            .iter()
            .find(|(p, s)| s.as_str() == space_id && lane_of(p) == lane)
            .map(|(p, _)| p.clone())
        else {
            return;
        };
        let unposted = self.unposted(&p, Some(space_id));
        let body = json!({"claims": [{"space_id": space_id, "unposted": unposted}]});
        self.post_claims(body);
    }

    /// Sends claims (`POST /v1/connectors/claims`) on the control connection.
    fn post_claims(&mut self, body: Value) {
        self.cloud(
            Method::Post,
            CLAIMS_PATH,
            body,
            CONTROL_LANE,
            Pending::Claim,
        );
    }

    /// A successful answer, to the step that asked for it.
    pub(super) fn dispatch(
        &mut self,
        now: Duration,
        what: Pending,
        body: &[u8],
        rng: &mut impl Rng,
    ) {
        let json = || serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
        match what {
            Pending::Register => self.on_registered(now, &json(), rng),
            Pending::Heartbeat => self.on_heartbeat(now, &json()),
            Pending::Nodes { cluster } => self.on_nodes(&cluster, body, now, rng),
            Pending::Users { cluster, page } => self.on_users(&cluster, page, body, now, rng),
            // Once, after the last batch of the report: a fetch after each batch sent the
            // node's whole growing list once per batch, quadratic in users (issue 16).
            Pending::Report if !self.reporting() => self.cloud(
                Method::Get,
                "/v1/connectors/assignments",
                Value::Null,
                0,
                Pending::Assignments { resync: false },
            ),
            Pending::Report => {}
            Pending::Assignments { resync } => {
                self.on_assignments(now, &json(), resync, rng);
            }
            Pending::Presence { .. } => {
                self.presence_failures = 0;
                self.on_presence(now, &json());
            }
            Pending::Space { pair } => self.on_space(now, pair, &json(), rng),
            Pending::SpaceInfo { space_id } => self.on_space_info(now, &space_id, &json(), rng),
            Pending::Key { uri } => self.on_key(now, &uri, &json(), rng),
            Pending::Post(p) => {
                self.stats.to_webex += u64::from(!p.as_ref().is_some_and(|p| p.releases_hold));
                if let Some(p) = p {
                    if p.releases_hold {
                        self.claimed.remove(&p.lane);
                    }
                    self.on_posted(&p, &json());
                    self.release_lane(p.lane, p.seq);
                }
            }
            Pending::HandBack(h) => self.on_handed_back(&h, &json()),
            Pending::Claim => {}
        }
    }

    /// A Jabber message became a Webex activity: remember which, so that a Webex read marker
    /// on it reaches Jabber as a displayed marker with the Jabber stanza id (XEP-0333).
    pub(super) fn on_posted(&mut self, p: &PostRetry, answer: &Value) {
        let Some(stanza_id) = p.body["client_id"].as_str().and_then(stanza_id_of) else {
            return;
        };
        let first = answer["activities"].as_array().and_then(|a| a.first());
        if let Some(aid) = first.and_then(|a| a["id"].as_str()) {
            remember(
                &mut self.id_map,
                &mut self.id_order,
                format!("act:{aid}"),
                stanza_id.to_string(),
            );
        }
    }

    /// Whether a batch of the known-users report is still unanswered.
    fn reporting(&self) -> bool {
        self.pending.values().any(|p| matches!(p, Pending::Report))
    }

    /// Forgets that `what` is in flight.
    pub(super) fn answered(&mut self, what: &Pending) {
        match what {
            Pending::Assignments { .. } => {
                self.assignments_in_flight -= 1;
            }
            Pending::Key { uri } => {
                self.keys_in_flight.remove(uri);
            }
            Pending::Space { pair } => {
                self.spaces_in_flight.remove(pair);
            }
            // The users added meanwhile go now, answered or not: a failure brings the poll
            // of every assigned user forward, and they are asked for again then.
            Pending::Presence { for_events: true } => {
                self.presence_for_events_in_flight -= 1;
                if self.presence_for_events_in_flight == 0 {
                    self.ask_presence_due();
                }
            }
            _ => {}
        }
    }

    /// A request failed at the transport level (timeout, reset, refused).
    pub fn handle_http_failure(&mut self, now: Duration, id: u64, why: &str, rng: &mut impl Rng) {
        self.clock = self.clock.max(now);
        let Some(what) = self.pending.remove(&id) else {
            return;
        };
        // A post that did not reach the cloud claims its conversation once the cloud answers
        // again (`claim_held_posts`).
        let what = match what {
            Pending::Post(Some(mut p)) if !p.releases_hold => {
                p.unreached = true;
                self.claim_look_due = true;
                Pending::Post(Some(p))
            }
            other => other,
        };
        self.answered(&what);
        self.stats.http_errors += 1;
        // Transport errors may quote what the peer sent (a bad status line): escaped too.
        let why = printable(why.as_bytes(), FAULT_TEXT_BYTES_MAX);
        if let Some(id) = fetch_id(&what) {
            self.unreached_fetches.insert(id);
        }
        self.failed(now, what, &why, rng);
    }

    /// Retries what must be retried; drops what a later step will redo.
    pub(super) fn failed(&mut self, now: Duration, what: Pending, why: &str, rng: &mut impl Rng) {
        match what {
            // Discovery failed at an AXL publisher: its fault, not the cloud's.
            // Only that cluster is asked again (one retry each, in `deferred`); the others are
            // not held back for it (explore seed 289).
            Pending::Nodes { ref cluster } | Pending::Users { ref cluster, .. } => {
                self.axl_fault = Some(self.axl_fault_text(cluster, why));
                let at = now + self.retry.next_delay(rng);
                let cluster = cluster.clone();
                self.discovery_failed(now, &cluster);
                self.deferred.push((at, Pending::Nodes { cluster }));
            }
            Pending::Register | Pending::Report | Pending::Assignments { .. } => {
                self.control_failed(now, what, why, rng);
            }
            Pending::Heartbeat => self.cloud_fault = Some(why.to_string()),
            // What waits for a space or a key stays queued and is asked for again after a
            // seeded backoff of its own (a KMS outage or a 503 must not lose messages). Until
            // then the fetch counts as in flight: later messages wait for this retry.
            fetch @ (Pending::Space { .. } | Pending::Key { .. } | Pending::SpaceInfo { .. }) => {
                match &fetch {
                    Pending::Space { pair } => self.spaces_in_flight.insert(pair.clone()),
                    Pending::Key { uri } => self.keys_in_flight.insert(uri.clone()),
                    _ => false,
                };
                self.note_held(&fetch, now);
                let id = fetch_id(&fetch).expect("a fetch");
                let failures = self.fetch_failures.entry(id).or_default();
                *failures += 1;
                let at = now + backoff_delay(RETRY_MIN, RETRY_MAX, *failures, rng);
                self.deferred.push((at, fetch));
            }
            // A post the cloud did not take (503, 429) is sent again: dropping it loses the
            // message although no stream broke. Its conversation's later posts wait for it.
            Pending::Post(Some(mut p)) if p.attempts < POST_ATTEMPTS_MAX => {
                let at = now + backoff_delay(RETRY_MIN, RETRY_MAX, p.attempts, rng);
                p.failed_send = true;
                self.failed_posts_waiting = true;
                self.hold_lane(at, p);
            }
            // Given up: the next post of its conversation goes.
            Pending::Post(Some(p)) => {
                if p.releases_hold {
                    self.claimed.remove(&p.lane);
                }
                self.release_lane(p.lane, p.seq);
            }
            // Giving an activity back is its last way to Jabber: retried like a post.
            Pending::HandBack(h) if h.attempts < HANDBACK_ATTEMPTS_MAX => {
                let at = now + backoff_delay(RETRY_MIN, RETRY_MAX, h.attempts, rng);
                self.deferred.push((at, Pending::HandBack(h)));
            }
            Pending::HandBack(_) => self.stats.dropped_unserved += 1,
            // The answer is what wants the sessions of users just assigned: a query the cloud
            // did not answer brings the next poll (of every assigned user) forward, after a
            // seeded backoff, instead of leaving them without a session for a whole interval.
            Pending::Presence { .. } => {
                self.presence_failures = self.presence_failures.saturating_add(1);
                let at = now + backoff_delay(RETRY_MIN, RETRY_MAX, self.presence_failures, rng);
                self.next_poll = self.next_poll.min(at);
            }
            // A claim not taken: the conversation is not held, as before claims.
            Pending::Post(_) | Pending::Claim => {}
        }
    }

    /// The cloud answered a request (2xx): posts waiting out a backoff after a failed send
    /// are due now. While one waits its conversation's lane is held on this node, and another
    /// node serving the conversation's other member may post its newer messages meanwhile
    /// (explore seed 51: a post failed in a cloud outage waited a minute after it ended, and
    /// the other node's later message went first). A post refused by a hold (409) keeps its
    /// wait: the cloud did answer it.
    ///
    /// So are space and key fetches that failed at the transport (explore seed 4834: both
    /// nodes' space fetches failed in a cloud outage; the sender's node got the space when
    /// the cloud came back and posted the conversation's next message at 226.7 s, while the
    /// recipient's node, the only one with message 9, waited out its grown backoff until
    /// 237 s). A fetch the cloud answered with an error (a KMS outage's 503) keeps its
    /// backoff: the cloud did answer it.
    pub(super) fn cloud_answered(&mut self, now: Duration) {
        let silence = now.saturating_sub(self.last_answer);
        self.last_answer = now;
        if silence >= POST_STUCK_AFTER || std::mem::take(&mut self.claim_look_due) {
            self.claim_held_posts(now);
        }
        let posts = std::mem::take(&mut self.failed_posts_waiting);
        let fetches = std::mem::take(&mut self.unreached_fetches);
        if !posts && fetches.is_empty() {
            return;
        }
        for (at, what) in &mut self.deferred {
            match what {
                Pending::Post(Some(p)) if p.failed_send => {
                    p.failed_send = false;
                    *at = (*at).min(now);
                }
                fetch if fetch_id(fetch).is_some_and(|id| fetches.contains(&id)) => {
                    *at = (*at).min(now);
                }
                _ => {}
            }
        }
    }

    /// The cloud answers again after a silence of [`POST_STUCK_AFTER`] or more, or after a
    /// post failed at the transport: a conversation whose post failed so, or has been on its
    /// way past [`POST_STUCK_AFTER`] (stuck on a connection an outage cut), is claimed at the
    /// cloud since that post's first send, as a failed space or key fetch claims it, all in one
    /// request ([`CLAIMS_PATH`], at most [`CLAIMS_PER_REQUEST_MAX`] each). Otherwise
    /// the other member's node, whose session came back late with only a newer message, could
    /// post it first (explore seed 4834: `--seed 37`, posts refused in a cloud outage waited
    /// for their retry while the other node's newer one was taken as the cloud came back;
    /// `--seed 28`, a post stuck 30 s on a cut connection). The claim goes on the control
    /// connection (the lane's own may be the stuck one), the release in the lane after its
    /// posts (`release_hold`); one claim per lane until that release is answered.
    pub(super) fn claim_held_posts(&mut self, now: Duration) {
        if !self.another_node_may_serve() {
            return;
        }
        let mut claims: BTreeMap<u64, (String, Duration)> = BTreeMap::new();
        let on_way = self.pending.values().map(|w| (w, true));
        let waiting = self.deferred.iter().map(|(_, w)| (w, false));
        for (what, sent) in on_way.chain(waiting) {
            let Pending::Post(Some(p)) = what else {
                continue;
            };
            let stuck = sent && now.saturating_sub(p.sent_at) >= POST_STUCK_AFTER;
            if p.releases_hold || self.claimed.contains(&p.lane) || !(stuck || p.unreached) {
                continue;
            }
            let Some(space_id) = space_of_post(&p.path) else {
                continue;
            };
            let claim = claims
                .entry(p.lane)
                .or_insert((space_id.to_string(), p.since));
            claim.1 = claim.1.min(p.since);
        }
        let mut batch = Vec::new();
        for (lane, (space_id, since)) in claims {
            self.claimed.insert(lane);
            let pair = self
                .pair_space
                .iter()
                .find(|(p, s)| **s == space_id && lane_of(p) == lane);
            let unposted = pair.map(|(p, _)| self.unposted(p, Some(&space_id)));
            let mut claim = json!({"space_id": space_id, "since_ms": since.as_millis() as u64});
            if let Some(u) = unposted.filter(|u| u.as_array().is_some_and(|a| !a.is_empty())) {
                claim["unposted"] = u;
            }
            batch.push(claim);
            self.release_hold(&space_id, lane);
        }
        for chunk in batch.chunks(CLAIMS_PER_REQUEST_MAX) {
            self.post_claims(json!({ "claims": chunk }));
        }
    }

    /// Whether another connector node may serve a member of this node's conversations: its
    /// Expressway cluster has another node, or the organization another cluster. A claim only
    /// keeps another node's newer posts from overtaking this node's older ones; a lone node's
    /// conversations are in order in its lanes, and its claims would be pointless requests.
    pub(super) fn another_node_may_serve(&self) -> bool {
        self.s.cluster.nodes.len() > 1 || !self.s.others.is_empty()
    }

    /// A registration, known-users report or assignments fetch failed: one retry slot, after
    /// a seeded backoff.
    fn control_failed(&mut self, now: Duration, what: Pending, why: &str, rng: &mut impl Rng) {
        if !self.fetching_assignments() {
            // The retry's answer is newer than every event read so far.
            self.moved_while_fetching.clear();
        }
        self.cloud_fault = Some(why.to_string());
        let at = now + self.retry.next_delay(rng);
        // One retry slot: a registration or report waiting for its retry is kept over
        // an assignments fetch (whose answer follows the report anyway).
        let kept = matches!(what, Pending::Assignments { .. })
            && matches!(
                self.retry_at,
                Some((_, Pending::Register | Pending::Report))
            );
        if !kept {
            self.retry_at = Some((at, what));
        }
    }
}

/// The space of an activity post's path (`/v1/spaces/{id}/activities`).
pub(super) fn space_of_post(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/spaces/")?
        .strip_suffix("/activities")
}
