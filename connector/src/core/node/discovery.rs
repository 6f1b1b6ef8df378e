//! Registration answers and AXL discovery: nodes, then users page by page (spec 22).

use super::*;
use std::sync::Arc;

impl ConnectorNode {
    pub(super) fn on_registered(&mut self, now: Duration, v: &Value, rng: &mut impl Rng) {
        let Some(token) = v["connector_token"].as_str() else {
            // Retried like a refusal: dropping it left the node registering forever, with no
            // request out and no timer (a proxy's page answered 200, a truncated body).
            self.stats.rejected += 1;
            let why = "registration answered without a connector token";
            return self.failed(now, Pending::Register, why, rng);
        };
        self.token = Some(token.to_string());
        if let Some(ms) = v["ready_in_ms"].as_u64() {
            self.registration_delay = Some((now, Duration::from_millis(ms)));
        }
        self.out.push_back(Output::Events(token.to_string()));
        if v["state"].as_str() == Some("registered") {
            self.on_ready();
        }
    }

    pub(super) fn on_heartbeat(&mut self, _now: Duration, v: &Value) {
        self.cloud_fault = None;
        self.on_peer_shares(v);
        if !self.registered && v["state"].as_str() == Some("registered") {
            self.on_ready();
        }
    }

    pub(super) fn on_ready(&mut self) {
        if self.registered {
            return;
        }
        self.registered = true;
        self.cloud_fault = None;
        self.discover();
    }

    pub(super) fn on_nodes(
        &mut self,
        cluster: &str,
        body: &[u8],
        now: Duration,
        rng: &mut impl Rng,
    ) {
        let nodes = match directory::parse_nodes(body) {
            Ok(n) => n,
            Err(e) => {
                self.stats.rejected += 1;
                return self.failed(
                    now,
                    Pending::Nodes {
                        cluster: cluster.into(),
                    },
                    &e.to_string(),
                    rng,
                );
            }
        };
        self.nodes.insert(cluster.to_string(), nodes);
        self.fetch_users(cluster, 0);
    }

    pub(super) fn fetch_users(&mut self, cluster: &str, page: usize) {
        let Some(p) = self.publisher(cluster) else {
            return;
        };
        let auth = Some(directory::basic_auth(&p.axl_username, &p.axl_password));
        self.axl(
            &p.host,
            auth,
            directory::users_page_request(page),
            Pending::Users {
                cluster: cluster.into(),
                page,
            },
        );
    }

    pub(super) fn on_users(
        &mut self,
        cluster: &str,
        page: usize,
        body: &[u8],
        now: Duration,
        rng: &mut impl Rng,
    ) {
        let rows = match directory::parse_users(body) {
            Ok(r) => r,
            Err(e) => {
                self.stats.rejected += 1;
                return self.failed(
                    now,
                    Pending::Users {
                        cluster: cluster.into(),
                        page,
                    },
                    &e.to_string(),
                    rng,
                );
            }
        };
        let n = rows.len();
        self.users
            .entry(cluster.to_string())
            .or_default()
            .extend(rows);
        if directory::more_pages(n, page) {
            return self.fetch_users(cluster, page + 1);
        }
        self.discovering.remove(cluster);
        self.axl_failed.remove(cluster);
        if self.discovery_settled() {
            self.discovered(now);
        }
    }

    /// Whether every cluster still being discovered failed and waits for its retry.
    pub(super) fn discovery_settled(&self) -> bool {
        self.discovering.iter().all(|c| self.axl_failed.contains(c))
    }

    /// Discovery of `cluster` failed (its publisher's AXL is down, spec 22: "The Message
    /// Connector cannot discover IM and Presence nodes when the AXL service is not running on
    /// the nodes"): what it found is dropped and asked for again later. The first failure of
    /// the last cluster outstanding completes the discovery with the clusters that answered;
    /// that cluster's users join when it answers. With none answered it completes too, empty:
    /// the node still asks the cloud whom it serves, which after a restart may be users it
    /// discovered before (explore seed 5301: it counted none of them).
    pub(super) fn discovery_failed(&mut self, now: Duration, cluster: &str) {
        self.nodes.remove(cluster);
        self.users.remove(cluster);
        if self.axl_failed.insert(cluster.to_string()) && self.discovery_settled() {
            self.discovered(now);
        }
    }

    /// Discovery complete: build the directory, connect to nodes, report users.
    pub(super) fn discovered(&mut self, now: Duration) {
        let clusters: Vec<(String, Vec<AxlUser>)> = self
            .users
            .iter()
            .map(|(c, u)| (c.clone(), u.clone()))
            .collect();
        self.directory = Directory::build(&clusters);
        let all: Vec<&ImpNodeInfo> = self.nodes.values().flatten().collect();
        let triples: Vec<(String, Option<String>, bool)> = all
            .iter()
            .map(|n| (n.name.clone(), n.prg_peer.clone(), n.high_availability))
            .collect();
        self.failover.track(&triples);
        self.node_versions = all
            .iter()
            .map(|n| (n.name.clone(), n.version.clone()))
            .collect();
        self.out
            .push_back(Output::Links(self.node_versions.keys().cloned().collect()));
        // Disabled while discovering: it runs once enabled again ([`Self::set_enabled`]).
        if self.enabled {
            self.phase = Phase::Running;
        }
        self.report_known_users();
        self.next_poll = now;
    }

    /// Reports every known user to the cloud (`POST /v1/connectors/users`, in batches of
    /// [`KNOWN_USERS_BATCH_MAX`]); the answer leads to the assignments. Sent again whole when a
    /// batch fails: adding a known user twice changes nothing.
    pub(super) fn report_known_users(&mut self) {
        // Every (mail ID, home cluster) pair, duplicates included: the cloud decides.
        let emails: Vec<(Arc<str>, Arc<str>)> = self
            .directory
            .homes
            .iter()
            .flat_map(|(e, cs)| cs.iter().map(move |c| (e.clone(), c.clone())))
            .collect();
        for chunk in emails.chunks(KNOWN_USERS_BATCH_MAX) {
            let add: Vec<Value> = chunk
                .iter()
                .map(|(e, c)| json!({"email": &**e, "imp_cluster": &**c}))
                .collect();
            self.cloud(
                Method::Post,
                "/v1/connectors/users",
                json!({"add": add}),
                0,
                Pending::Report,
            );
        }
        if emails.is_empty() {
            self.cloud(
                Method::Get,
                "/v1/connectors/assignments",
                Value::Null,
                0,
                Pending::Assignments { resync: false },
            );
        }
    }
}
