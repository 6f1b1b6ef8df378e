//! The status page (spec 66-71) and the heartbeat's status body.

use super::*;

impl ConnectorNode {
    /// The status page now (spec 66-71).
    pub fn status_page(&self, now: Duration) -> StatusPage {
        let last_active: BTreeMap<String, Duration> = self
            .presence
            .iter()
            .filter_map(|(e, p)| p.last_active.map(|t| (e.clone(), t)))
            .collect();
        let enabled: Vec<String> = self.assigned.iter().cloned().collect();
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
        StatusPage::compute(&StatusInputs {
            cloud_fault: self.cloud_fault.as_deref(),
            directory: &self.directory,
            enabled: &enabled,
            last_active: &last_active,
            nodes: &nodes,
            now,
        })
    }

    pub(super) fn status_json(&self, now: Duration) -> Value {
        let p = self.status_page(now);
        json!({
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
