//! Lifecycle: start, enable and disable, maintenance, registration and the requests that
//! discovery sends over AXL.

use super::*;

impl ConnectorNode {
    /// Starts: checks the configuration, then registers.
    pub fn start(&mut self, now: Duration) {
        let errors = config::validate(&self.s.cluster, &self.s.others);
        if !errors.is_empty() {
            self.phase = Phase::Invalid(errors);
            return;
        }
        if !self.enabled {
            self.phase = Phase::Disabled;
            return;
        }
        self.phase = Phase::Registering;
        match self.token.clone() {
            // Registered before (a restart with a saved registration, or enabled again): the
            // registration token is single use, so the node keeps its connector token and the
            // heartbeat's answer says when registration is complete.
            Some(token) => self.out.push_back(Output::Events(token)),
            None => self.register(now),
        }
    }

    /// Hands the node what an earlier run's registration gave it, before [`Self::start`]: it
    /// then heartbeats with the saved connector token instead of registering again (its
    /// registration token is single use). Ignored, with a warning, if it names another node.
    pub fn resume_registration(&mut self, saved: SavedRegistration) {
        if saved.connector_id != self.s.hostname {
            tracing::warn!(
                saved = %printable(saved.connector_id.as_bytes(), PEER_TEXT_BYTES_MAX),
                hostname = %self.s.hostname,
                "saved registration is for another node: registering afresh"
            );
            return;
        }
        self.token = Some(saved.connector_token);
        self.resumed = true;
    }

    /// What registration gave this node, to keep across a restart; `None` before an answer.
    pub fn saved_registration(&self) -> Option<SavedRegistration> {
        self.token.as_ref().map(|t| SavedRegistration {
            connector_id: self.s.hostname.clone(),
            connector_token: t.clone(),
        })
    }

    /// A heartbeat with a saved connector token was refused (401): the cloud no longer knows
    /// it (its registration was removed, or it is another cloud). The saved token is dropped
    /// and the node registers again with its registration token.
    pub(super) fn saved_token_refused(&mut self, now: Duration) {
        tracing::warn!(
            hostname = %self.s.hostname,
            "the cloud refuses the saved connector token: registering again"
        );
        self.token = None;
        self.resumed = false;
        self.register(now);
    }

    /// Enables or disables the connector (spec 21). Disabling closes every session; the
    /// users stay assigned (the cloud still places them here), so enabling again must ask
    /// for their sessions again.
    pub fn set_enabled(&mut self, on: bool, now: Duration) {
        self.enabled = on;
        if !on {
            self.sessions.unwant_all(now);
            self.drain_sessions();
            // Closed sessions published nothing: an open again must publish again.
            self.published.clear();
            self.phase = Phase::Disabled;
        } else if self.phase == Phase::Disabled {
            if self.registered {
                self.resume_running(now);
            } else {
                self.phase = Phase::Idle;
                self.start(now);
            }
        }
    }

    /// Enabled again once registered: the cloud still knows the connector token, so no
    /// registration answer will come ([`Self::on_ready`] has run already). The node runs
    /// again (or waits for the discovery still under way, whose end makes it run) and polls
    /// the presence of every assigned user at once, which wants again the sessions the
    /// disable closed.
    fn resume_running(&mut self, now: Duration) {
        // Settled with no cluster discovered runs too, as [`Self::discovered`] does: the
        // node still serves the users the cloud keeps on it (explore seed 5301).
        self.phase = if self.discovery_settled() {
            Phase::Running
        } else {
            Phase::Discovering
        };
        self.next_poll = now;
    }

    /// Control Hub maintenance mode (spec 29): a graceful drain. The cloud moves the users to
    /// the other nodes, so each session stays open until its new node takes it over
    /// ([`SessionManager::release`]) instead of closing at once as [`Self::set_enabled`]
    /// does; anything IM&P routes to it meanwhile is still bridged.
    pub(super) fn set_maintenance(&mut self, on: bool, now: Duration) {
        if !on {
            self.set_enabled(true, now);
            return;
        }
        self.enabled = false;
        self.sessions.release_all(now);
        self.drain_sessions();
        self.published.clear();
        self.phase = Phase::Disabled;
    }

    pub(super) fn register(&mut self, _now: Duration) {
        // Without a token this is registration initiated from the Expressway UI: Control Hub
        // refuses it (spec 12), and the refusal is retried with backoff like any other.
        if self.s.registration_token.is_none() {
            self.cloud_fault = Some("no registration token from Control Hub".into());
        }
        let auth = self
            .s
            .registration_token
            .as_ref()
            .map(|t| format!("Bearer {t}"));
        let body = json!({"hostname": self.s.hostname, "primary": self.s.primary});
        let req = request(
            Target::Cloud,
            Method::Post,
            "/v1/connectors/register",
            auth,
            body,
        );
        self.http(req, Pending::Register);
    }

    /// Queues `req` (its id assigned here) and remembers what it was for.
    pub(super) fn http(&mut self, mut req: HttpRequest, what: Pending) {
        self.next_http += 1;
        req.id = self.next_http;
        match what {
            Pending::Assignments { .. } => self.assignments_in_flight += 1,
            Pending::Presence { for_events: true } => self.presence_for_events_in_flight += 1,
            _ => {}
        }
        self.pending.insert(req.id, what);
        self.out.push_back(Output::Http(req));
    }

    pub(super) fn cloud(
        &mut self,
        method: Method,
        path: &str,
        body: Value,
        lane: u64,
        what: Pending,
    ) {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut req = request(Target::Cloud, method, path, auth, body);
        req.lane = lane;
        self.http(req, what);
    }

    pub(super) fn discover(&mut self) {
        // A node disabled meanwhile (maintenance mode or the administrator, spec 21, 29)
        // discovers in the background and stays Disabled: only Disabled is enabled again
        // ([`Self::set_enabled`]), and a Discovering node never polled presence once
        // maintenance mode ended (`http-errors-at-maintenance-mode-end`).
        if self.enabled {
            self.phase = Phase::Discovering;
        }
        let clusters: Vec<String> = self
            .s
            .cluster
            .publishers
            .iter()
            .map(|p| p.cluster.clone())
            .collect();
        for c in clusters {
            self.discover_cluster(&c);
        }
    }

    /// The configured AXL publisher of IM&P cluster `cluster` (spec 16), if any.
    pub(super) fn publisher(&self, cluster: &str) -> Option<crate::core::config::ImpPublisher> {
        let publishers = &self.s.cluster.publishers;
        publishers.iter().find(|p| p.cluster == cluster).cloned()
    }

    /// Asks `cluster`'s publisher for its nodes, then (in [`Self::on_nodes`]) its users.
    pub(super) fn discover_cluster(&mut self, cluster: &str) {
        let Some(p) = self.publisher(cluster) else {
            return;
        };
        self.discovering.insert(p.cluster.clone());
        let auth = Some(directory::basic_auth(&p.axl_username, &p.axl_password));
        let body = directory::list_process_node_request();
        self.axl(
            &p.host,
            auth,
            body,
            Pending::Nodes {
                cluster: p.cluster.clone(),
            },
        );
    }

    pub(super) fn axl(&mut self, host: &str, auth: Option<String>, body: String, what: Pending) {
        let mut req = request(
            Target::Axl {
                host: host.to_string(),
            },
            Method::Post,
            "/axl/",
            auth,
            Value::Null,
        );
        req.body = body.into_bytes();
        self.http(req, what);
    }
}
