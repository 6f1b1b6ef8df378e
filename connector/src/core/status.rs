//! The Message Service status page (spec 66-71), computed from the connector's state.
//!
//! Totals: connectivity to Webex; users from connected IM&P clusters (local); users from all
//! clusters (local + ICSA); users enabled for the service (assigned to this Expressway
//! cluster); active (used Webex to read or write messages to or from Jabber within 72 h) and
//! not active, as counts and percentages of enabled. Per IM&P node: version, status,
//! certificate validation, users, active, not active. During a failover, users stay counted on
//! their home node while it shows "Outage" (spec 63). Per-node values sum to the totals;
//! [`StatusPage::consistent`] checks it.
//!
//! The users and activity counts are per Expressway *cluster*, the same on every peer
//! (spec 69-71): each node counts its own assigned users ([`Share::of`]) and adds its peers'
//! shares, which they upload with their heartbeats and the cloud hands back to the others
//! (hmsim's path for what Expressway peers replicate among themselves). A user the cloud
//! assigned to a node whose directory lacks them (it cannot reach their cluster's AXL
//! publisher, spec 22) counts on the home node a peer that discovered them told
//! ([`StatusInputs::homes`]).

use super::directory::Directory;
use super::failover::NodeStatus;
use super::presence::ACTIVE_WINDOW;
use super::sorted::SortedCursor;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One IM&P node's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// Host name.
    pub node: String,
    /// Version as discovered (may be stale until a restart, spec 22).
    pub version: String,
    /// Operational or Outage.
    pub status: NodeStatus,
    /// Certificate validation on or off.
    pub certificate_validation: bool,
    /// Enabled users homed on this node.
    pub users: usize,
    /// Of those, active within 72 h.
    pub active: usize,
    /// Of those, not active for 72 h.
    pub inactive: usize,
}

impl NodeRow {
    /// A row for a node a peer reported users on but this node has not discovered yet: no
    /// version known, shown Operational (a peer holds sessions there) with certificate
    /// validation at its default, Enabled (spec 16), until discovery fills it in.
    fn known_from_a_peer(node: &str) -> Self {
        NodeRow {
            node: node.to_string(),
            version: String::new(),
            status: NodeStatus::Operational,
            certificate_validation: true,
            users: 0,
            active: 0,
            inactive: 0,
        }
    }
}

/// The whole page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPage {
    /// "Operational" when the cloud link is up, otherwise the fault.
    pub connectivity: String,
    /// Users from connected IM&P clusters (spec 67).
    pub users_local: usize,
    /// Users from all IM&P clusters, ICSA included (spec 68).
    pub users_all: usize,
    /// Users enabled for Hybrid Message on this Expressway cluster (spec 69).
    pub enabled: usize,
    /// Enabled users active within 72 h (spec 70).
    pub active: usize,
    /// Enabled users not active for 72 h.
    pub inactive: usize,
    /// One row per discovered node.
    pub nodes: Vec<NodeRow>,
}

/// Inputs of the page.
pub struct StatusInputs<'a> {
    /// Cloud link state: `None` when operational, else the fault text.
    pub cloud_fault: Option<&'a str>,
    /// The directory.
    pub directory: &'a Directory,
    /// Assigned users (emails): the node's own set, borrowed (sampled every few seconds, a
    /// copy of 12,500 emails each time was a large share of a 75,000-user start, issue 16).
    pub enabled: &'a BTreeSet<String>,
    /// Last use of Webex to read or write messages to or from Jabber, per email.
    pub last_active: &'a BTreeMap<String, Duration>,
    /// The shares of the cluster's other nodes, as they last uploaded them.
    pub peers: &'a [Share],
    /// Home IM&P nodes of assigned users this node's directory lacks, as a peer that
    /// discovered them told (a node that cannot reach their cluster's AXL publisher, spec 22):
    /// the user still counts, in their home node's row (spec 69, 71).
    pub homes: &'a BTreeMap<String, String>,
    /// Discovered nodes: (name, version, status, certificate validation).
    pub nodes: &'a [(String, String, NodeStatus, bool)],
    /// Now.
    pub now: Duration,
}

/// One connector node's own share of the cluster's counts: its assigned users, how many are
/// active, and both per IM&P home node `(users, active)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Share {
    /// Users assigned to the node (and in its directory).
    pub enabled: usize,
    /// Of those, active within 72 h.
    pub active: usize,
    /// Per IM&P home node: (users, active).
    pub nodes: BTreeMap<String, (usize, usize)>,
}

impl Share {
    /// This node's share from its inputs.
    pub fn of(i: &StatusInputs<'_>) -> Self {
        // Counted under borrowed node names, owned once per node at the end.
        let mut nodes: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        let mut s = Share::default();
        // Both maps are in email order, as is `enabled`: walked alongside it.
        let (mut directory, mut last_active) =
            (i.directory.cursor(), SortedCursor::new(i.last_active));
        for email in i.enabled {
            let home = match directory.get(email) {
                Some(entry) => &entry.home,
                None => match i.homes.get(email) {
                    Some(home) => home.as_str(),
                    None => continue,
                },
            };
            let is_active = last_active
                .get(email)
                .is_some_and(|t| i.now.saturating_sub(*t) <= ACTIVE_WINDOW);
            s.enabled += 1;
            s.active += usize::from(is_active);
            let n = nodes.entry(home).or_default();
            n.0 += 1;
            n.1 += usize::from(is_active);
        }
        s.nodes = nodes.into_iter().map(|(n, c)| (n.to_string(), c)).collect();
        s
    }
}

impl StatusPage {
    /// Computes the page: this node's share plus its peers'.
    pub fn compute(i: &StatusInputs<'_>) -> Self {
        Self::compute_with(i, &Share::of(i))
    }

    /// Computes the page from this node's share `own` (which is [`Share::of`] the inputs),
    /// for a caller that needs the share too and would otherwise count it twice.
    pub fn compute_with(i: &StatusInputs<'_>, own: &Share) -> Self {
        let mut rows: BTreeMap<&str, NodeRow> = i
            .nodes
            .iter()
            .map(|(n, v, s, c)| {
                let row = NodeRow {
                    node: n.clone(),
                    version: v.clone(),
                    status: *s,
                    certificate_validation: *c,
                    users: 0,
                    active: 0,
                    inactive: 0,
                };
                (n.as_str(), row)
            })
            .collect();
        let (mut active, mut enabled) = (0, 0);
        for share in std::iter::once(own).chain(i.peers) {
            enabled += share.enabled;
            active += share.active;
            for (node, (users, act)) in &share.nodes {
                // A node only a peer has discovered yet still gets its row: the page's
                // node rows sum to its totals (spec 71).
                let row = rows
                    .entry(node.as_str())
                    .or_insert_with(|| NodeRow::known_from_a_peer(node));
                row.users += users;
                row.active += act;
                row.inactive += users - act;
            }
        }
        StatusPage {
            connectivity: i.cloud_fault.unwrap_or("Operational").to_string(),
            users_local: i.directory.local_users,
            users_all: i.directory.all_users,
            enabled,
            active,
            inactive: enabled - active,
            nodes: rows.into_values().collect(),
        }
    }

    /// Active users as a percentage of enabled ones.
    pub fn active_pct(&self) -> f64 {
        pct(self.active, self.enabled)
    }

    /// Inactive users as a percentage of enabled ones.
    pub fn inactive_pct(&self) -> f64 {
        pct(self.inactive, self.enabled)
    }

    /// Per-node values sum to the totals, and the totals to each other (spec 70-71). Returns
    /// the first inconsistency.
    pub fn consistent(&self) -> Result<(), String> {
        let users: usize = self.nodes.iter().map(|n| n.users).sum();
        let active: usize = self.nodes.iter().map(|n| n.active).sum();
        let inactive: usize = self.nodes.iter().map(|n| n.inactive).sum();
        if self.active + self.inactive != self.enabled {
            return Err(format!(
                "active {} + inactive {} != enabled {}",
                self.active, self.inactive, self.enabled
            ));
        }
        if users != self.enabled || active != self.active || inactive != self.inactive {
            return Err(format!(
                "node sums users {users}/active {active}/inactive {inactive} != totals {}/{}/{}",
                self.enabled, self.active, self.inactive
            ));
        }
        if let Some(n) = self.nodes.iter().find(|n| n.active + n.inactive != n.users) {
            return Err(format!(
                "node {}: active {} + inactive {} != users {}",
                n.node, n.active, n.inactive, n.users
            ));
        }
        if self.users_all < self.users_local {
            return Err(format!(
                "users from all clusters {} < local {}",
                self.users_all, self.users_local
            ));
        }
        Ok(())
    }
}

fn pct(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 1000.0 / whole as f64).round() / 10.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::directory::AxlUser;

    /// Spec 69-71: the counts are the Expressway cluster's, the same on every peer: a node
    /// adds its peers' shares to its own.
    #[test]
    fn totals_are_per_expressway_cluster() {
        let users: Vec<AxlUser> = (0..4)
            .map(|i| AxlUser {
                userid: format!("u{i}"),
                email: Some(format!("u{i}@x").into()),
                jid: format!("u{i}@x").into(),
                home: format!("imp-a-{}", i % 2 + 1).into(),
                intercluster: false,
            })
            .collect();
        let dir = Directory::build(&[("a".into(), users)]);
        let now = Duration::from_secs(100 * 3600);
        let nodes = vec![
            (
                "imp-a-1".to_string(),
                "14.0".to_string(),
                NodeStatus::Operational,
                true,
            ),
            (
                "imp-a-2".to_string(),
                "14.0".to_string(),
                NodeStatus::Operational,
                true,
            ),
        ];
        let active: BTreeMap<String, Duration> = [("u1@x".to_string(), now)].into_iter().collect();
        let page_of = |mine: &[&str], peers: &[Share]| {
            let enabled: BTreeSet<String> = mine.iter().map(|s| s.to_string()).collect();
            let i = StatusInputs {
                cloud_fault: None,
                directory: &dir,
                enabled: &enabled,
                last_active: &active,
                peers,
                homes: &BTreeMap::new(),
                nodes: &nodes,
                now,
            };
            (Share::of(&i), StatusPage::compute(&i))
        };
        let (share_1, _) = page_of(&["u0@x", "u1@x"], &[]);
        let (share_2, _) = page_of(&["u2@x", "u3@x"], &[]);
        let (_, page_1) = page_of(&["u0@x", "u1@x"], std::slice::from_ref(&share_2));
        let (_, page_2) = page_of(&["u2@x", "u3@x"], std::slice::from_ref(&share_1));
        assert_eq!(page_1, page_2, "every peer shows the cluster's counts");
        assert_eq!((page_1.enabled, page_1.active, page_1.inactive), (4, 1, 3));
        assert_eq!((page_1.nodes[0].users, page_1.nodes[1].users), (2, 2));
        assert!(page_1.consistent().is_ok());
        // A node that has not discovered the IM&P nodes yet (explore seeds 47, 77: its AXL
        // paging still under way) shows its peers' users on rows of the nodes they name.
        let i = StatusInputs {
            cloud_fault: None,
            directory: &dir,
            enabled: &BTreeSet::new(),
            last_active: &active,
            peers: std::slice::from_ref(&share_1),
            homes: &BTreeMap::new(),
            nodes: &[],
            now,
        };
        let page_3 = StatusPage::compute(&i);
        assert!(page_3.consistent().is_ok(), "{page_3:?}");
        assert_eq!(page_3.nodes.len(), 2, "{page_3:?}");
    }

    #[test]
    fn sums_hold_and_outage_keeps_users_on_the_source_node() {
        let users: Vec<AxlUser> = (0..4)
            .map(|i| AxlUser {
                userid: format!("u{i}"),
                email: Some(format!("u{i}@x").into()),
                jid: format!("u{i}@x").into(),
                home: format!("imp-a-{}", i % 2 + 1).into(),
                intercluster: false,
            })
            .collect();
        let dir = Directory::build(&[("a".into(), users)]);
        let enabled: BTreeSet<String> = (0..3).map(|i| format!("u{i}@x")).collect();
        let now = Duration::from_secs(100 * 3600);
        let last_active: BTreeMap<String, Duration> =
            [("u0@x".to_string(), now - Duration::from_secs(60))]
                .into_iter()
                .collect();
        let nodes = vec![
            (
                "imp-a-1".to_string(),
                "14.0".to_string(),
                NodeStatus::Outage,
                true,
            ),
            (
                "imp-a-2".to_string(),
                "14.0".to_string(),
                NodeStatus::Operational,
                true,
            ),
        ];
        let page = StatusPage::compute(&StatusInputs {
            cloud_fault: None,
            directory: &dir,
            enabled: &enabled,
            last_active: &last_active,
            peers: &[],
            homes: &BTreeMap::new(),
            nodes: &nodes,
            now,
        });
        assert_eq!((page.enabled, page.active, page.inactive), (3, 1, 2));
        assert_eq!(
            page.nodes[0].users, 2,
            "users still counted on the node in outage"
        );
        assert_eq!(page.nodes[0].status, NodeStatus::Outage);
        assert_eq!(page.active_pct(), 33.3);
        assert!(page.consistent().is_ok());
        let mut broken = page.clone();
        broken.nodes[1].users += 1;
        assert!(broken.consistent().is_err());
        let mut broken = page.clone();
        broken.nodes[0].users += 1;
        broken.nodes[1].users -= 1;
        let err = broken.consistent().unwrap_err();
        assert!(
            err.contains("node imp-a-1: active 1 + inactive 1 != users 3"),
            "{err}"
        );
    }
}
