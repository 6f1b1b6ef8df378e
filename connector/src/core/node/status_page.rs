//! The status page (spec 66-71) and the heartbeat's status body.

use super::*;

impl ConnectorNode {
    /// The status page now (spec 66-71): this Expressway cluster's counts, the same on every
    /// peer (spec 69-71).
    pub fn status_page(&self, now: Duration) -> StatusPage {
        let (page, _) = self.page_and_share(now);
        page
    }

    /// The page, and this node's own share of its counts: what its next heartbeat uploads
    /// for its peers (spec 69-71), which they show a heartbeat or two later. One computation
    /// for both, for a caller that samples both.
    pub fn page_and_share(&self, now: Duration) -> (StatusPage, Share) {
        let peers: Vec<Share> = self.peer_shares.values().cloned().collect();
        let cert: BTreeMap<&str, bool> = self
            .s
            .cluster
            .publishers
            .iter()
            .map(|p| (p.cluster.as_str(), p.certificate_validation))
            .collect();
        let nodes: Vec<(String, String, NodeStatus, bool)> = self
            .nodes
            .iter()
            .flat_map(|(cluster, ns)| {
                let c = cert.get(cluster.as_str()).copied().unwrap_or(true);
                ns.iter()
                    .map(move |n| (n.name.clone(), n.version.clone(), c))
            })
            .map(|(n, v, c)| {
                let st = self.failover.status(&n).unwrap_or(NodeStatus::Operational);
                (n, v, st, c)
            })
            .collect();
        let inputs = StatusInputs {
            cloud_fault: self.cloud_fault.as_deref(),
            directory: &self.directory,
            enabled: &self.assigned,
            last_active: &self.interop_seen,
            peers: &peers,
            homes: &self.peer_homes,
            nodes: &nodes,
            now,
        };
        let own = Share::of(&inputs);
        (StatusPage::compute_with(&inputs, &own), own)
    }

    /// The cluster peers' shares from a heartbeat answer (`peers: [{id, share}]`): replaces
    /// what was known, so a peer that went down stops counting. At most
    /// [`PEERS_MAX`] are read (a cluster has at most six nodes, spec 1). A share also carries
    /// the users whose home node its node asks for (`homes_asked`, a node whose directory
    /// lacks users the cloud assigned to it: it cannot reach their cluster's AXL publisher,
    /// spec 22), and the home nodes its node tells for its peers' asks (`homes`,
    /// `[{email, node}]`): a user counts on their home node's row (spec 69, 71).
    pub(super) fn on_peer_shares(&mut self, v: &Value) {
        let Some(peers) = v["peers"].as_array() else {
            return;
        };
        let peers = &peers[..peers.len().min(PEERS_MAX)];
        self.peer_shares = peers
            .iter()
            .filter_map(|p| Some((p["id"].as_str()?.to_string(), share_of_json(&p["share"])?)))
            .collect();
        self.peer_asks = (peers.iter())
            .flat_map(|p| emails(&p["share"]["homes_asked"]))
            .collect();
        for p in peers {
            self.learn_homes(&p["share"]["homes"]);
        }
    }

    /// Home nodes a peer told (`[{email, node}]`, at most [`HOMES_ASKED_MAX`]) of users
    /// assigned here that this node's directory lacks.
    fn learn_homes(&mut self, told: &Value) {
        let told = told
            .as_array()
            .map_or(&[][..], |a| &a[..a.len().min(HOMES_ASKED_MAX)]);
        for t in told {
            let (Some(email), Some(node)) = (t["email"].as_str(), t["node"].as_str()) else {
                continue;
            };
            if node.len() <= NAME_BYTES_MAX
                && self.assigned.contains(email)
                && self.directory.get(email).is_none()
            {
                self.peer_homes.insert(email.to_string(), node.to_string());
            }
        }
    }

    /// Assigned users whose home node this node does not know (not in its directory, not
    /// told by a peer), at most [`HOMES_ASKED_MAX`]: its heartbeat asks its peers for them.
    /// Only once its discovery is settled (done, or every cluster left failed): before, the
    /// directory is still being filled.
    fn homes_to_ask(&self) -> Vec<&str> {
        if !(self.registered && self.discovery_settled()) {
            return Vec::new();
        }
        (self.assigned.iter())
            .filter(|e| self.directory.get(e).is_none() && !self.peer_homes.contains_key(*e))
            .take(HOMES_ASKED_MAX)
            .map(String::as_str)
            .collect()
    }

    /// The home nodes this node knows of the users its peers asked for.
    fn homes_told(&self) -> Vec<Value> {
        (self.peer_asks.iter())
            .filter_map(|e| Some(json!({"email": e, "node": &*self.directory.get(e)?.home})))
            .collect()
    }

    pub(super) fn status_json(&self, now: Duration) -> Value {
        let (p, own) = self.page_and_share(now);
        let mut share = json!({
            "enabled": own.enabled,
            "active": own.active,
            "nodes": own.nodes.iter().map(|(n, (u, a))| json!({"node": n, "users": u, "active": a})).collect::<Vec<_>>(),
        });
        // Both only when there is something to ask or tell: a heartbeat is as before otherwise.
        let asked = self.homes_to_ask();
        if !asked.is_empty() {
            share["homes_asked"] = json!(asked);
        }
        let told = self.homes_told();
        if !told.is_empty() {
            share["homes"] = Value::Array(told);
        }
        json!({
            "share": share,
            "connectivity": p.connectivity,
            "users_local": p.users_local,
            "users_all": p.users_all,
            "enabled": p.enabled,
            "active": p.active,
            "inactive": p.inactive,
            "nodes": p.nodes.iter().map(|n| json!({
                "node": n.node, "version": n.version,
                "status": if n.status == NodeStatus::Operational { "Operational" } else { "Outage" },
                "certificate_validation": n.certificate_validation,
                "users": n.users, "active": n.active, "inactive": n.inactive,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Peers read from one heartbeat answer: an Expressway cluster has at most six nodes (spec 1).
pub const PEERS_MAX: usize = 6;
/// Users whose home IM&P node one heartbeat asks the peers for, and home nodes read from one
/// peer's share: the users the cloud assigned to a node that cannot discover their cluster
/// (spec 22) are few (what it knew before a restart); more are asked at later heartbeats, as
/// these are answered, and a heartbeat stays a few kilobytes.
pub const HOMES_ASKED_MAX: usize = 100;
/// Bytes of an email or an IM&P node name read from a peer's share: an address (RFC 5321:
/// 254) or a host name (RFC 1035: 255); a longer one is no user's or node's and is ignored.
pub const NAME_BYTES_MAX: usize = 255;

/// IM&P node rows read from one peer's share: 5 IM&P clusters of at most 6 nodes (spec 5).
pub const PEER_ROWS_MAX: usize = 30;

/// The emails of a JSON array, at most [`HOMES_ASKED_MAX`].
fn emails(v: &Value) -> impl Iterator<Item = String> + '_ {
    (v.as_array().into_iter().flatten())
        .take(HOMES_ASKED_MAX)
        .filter_map(|e| e.as_str().filter(|e| e.len() <= NAME_BYTES_MAX))
        .map(str::to_string)
}

/// A peer's share as uploaded (`{enabled, active, nodes: [{node, users, active}]}`), if
/// well-formed and self-consistent.
fn share_of_json(v: &Value) -> Option<Share> {
    let n = |v: &Value, k: &str| v[k].as_u64().and_then(|x| usize::try_from(x).ok());
    let mut s = Share {
        enabled: n(v, "enabled")?,
        active: n(v, "active")?,
        nodes: BTreeMap::new(),
    };
    for row in v["nodes"].as_array()?.iter().take(PEER_ROWS_MAX) {
        let (users, active) = (n(row, "users")?, n(row, "active")?);
        if active > users {
            return None;
        }
        s.nodes
            .insert(row["node"].as_str()?.to_string(), (users, active));
    }
    (s.active <= s.enabled).then_some(s)
}
