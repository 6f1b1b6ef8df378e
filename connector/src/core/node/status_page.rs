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
            nodes: &nodes,
            now,
        };
        let own = Share::of(&inputs);
        (StatusPage::compute_with(&inputs, &own), own)
    }

    /// The cluster peers' shares from a heartbeat answer (`peers: [{id, share}]`): replaces
    /// what was known, so a peer that went down stops counting. At most
    /// [`PEERS_MAX`] are read (a cluster has at most six nodes, spec 1).
    pub(super) fn on_peer_shares(&mut self, v: &Value) {
        let Some(peers) = v["peers"].as_array() else {
            return;
        };
        self.peer_shares = peers
            .iter()
            .take(PEERS_MAX)
            .filter_map(|p| Some((p["id"].as_str()?.to_string(), share_of_json(&p["share"])?)))
            .collect();
    }

    pub(super) fn status_json(&self, now: Duration) -> Value {
        let (p, own) = self.page_and_share(now);
        json!({
            "share": {
                "enabled": own.enabled,
                "active": own.active,
                "nodes": own.nodes.iter().map(|(n, (u, a))| json!({"node": n, "users": u, "active": a})).collect::<Vec<_>>(),
            },
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
/// IM&P node rows read from one peer's share: 5 IM&P clusters of at most 6 nodes (spec 5).
pub const PEER_ROWS_MAX: usize = 30;

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
