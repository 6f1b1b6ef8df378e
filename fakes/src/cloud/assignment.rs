//! User assignment (spec 28) and capacity (spec 2-3, 6-7, 9).
//!
//! ## Capacity
//!
//! - Per dedicated node: Small 5,000, Medium 6,500, Large 15,000 ([`dedicated_node_capacity`]).
//! - Per cluster, the failover model: U(N) = (N−1)·U(1) for N ≥ 2, U(1) for N = 1
//!   ([`failover_capacity`]): one node's worth is held back so that the cluster survives the loss
//!   of any node. 1–6 nodes per cluster (spec 1).
//! - Coresidency ([`Coresidency`], spec 6-7): Calendar+Message on a Medium node 4,000;
//!   Calendar+Call+Message 1,300 / 2,300 / 3,000 (Small / Medium / Large; the two-node table,
//!   which also gives the one-Medium-node 2,300 through U(1) = U(2)); both only up to two nodes;
//!   MRA at most 100 per node and 500 per cluster. Combinations the sources do not give
//!   (Calendar+Message on Small or Large, coresidency beyond two nodes) have no capacity
//!   ([`node_capacity`] is `None`): scenario validation must refuse them.
//! - Control Hub's bar: percent = ⌈assigned·100 ÷ U(N)⌉ (so any user shows at least 1 %), Green up
//!   to 60 %, Amber 61–90 %, Red from 91 % ([`Colour`]).
//!
//! ## Assignment
//!
//! Connectors report which users they know ([`KnownUser`]: email and the IM&P cluster homing it);
//! knowledge is kept per Expressway cluster (all peers of a cluster know the same users, spec 67).
//! Enabled (Active) users are placed on the least-loaded eligible node (up, not in maintenance,
//! below its node capacity, cluster below U(N)) of a cluster that knows them; ties go to the
//! smallest node id. A node going down or into maintenance has its users re-placed on the
//! others; users that fit nowhere stay unassigned and are counted. A node coming back (or
//! leaving maintenance) first takes unassigned users, then the cluster is rebalanced until the
//! loads of its eligible nodes differ by at most one. Every change is a [`Move`].
//!
//! Deterministic: `BTreeMap`/`BTreeSet` only, ties broken by names.

use super::error::CloudError;
use super::org::Lookup;
pub use connector::proto::webex::{Coresidency, KnownUser, NodeSize};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Nodes per Expressway connector cluster, primary included (spec 1).
pub const NODES_PER_CLUSTER_MAX: usize = 6;
/// MRA coresidency: Message users per node (spec 7).
pub const MRA_USERS_PER_NODE_MAX: u32 = 100;
/// MRA coresidency: Message users per cluster (spec 7).
pub const MRA_USERS_PER_CLUSTER_MAX: u32 = 500;
/// Nodes per cluster for which Calendar/Call coresidency is documented (spec 6).
pub const CORESIDENT_NODES_MAX: usize = 2;

/// Control Hub's capacity colour (spec 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Colour {
    /// Up to 60 %.
    Green,
    /// 61–90 %.
    Amber,
    /// 91 % and above.
    Red,
}

/// One assignment change: `from` → `to` (`None`: unassigned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// The user.
    pub email: String,
    /// The node it was on.
    pub from: Option<String>,
    /// The node it is on now.
    pub to: Option<String>,
}

/// Users on a Message-dedicated node of this size (spec 2).
pub fn dedicated_node_capacity(size: NodeSize) -> u32 {
    match size {
        NodeSize::Small => 5_000,
        NodeSize::Medium => 6_500,
        NodeSize::Large => 15_000,
    }
}

/// U(N) from U(1) (spec 3): one node's worth is held back for failover.
pub fn failover_capacity(per_node: u32, nodes: usize) -> u32 {
    let counted = u32::try_from(nodes.saturating_sub(1).max(1)).unwrap_or(u32::MAX);
    per_node.saturating_mul(counted)
}

/// U(1) for this size and coresidency in a cluster of `nodes`, or `None` where the sources give
/// no figure (or `nodes` is outside 1..=6).
pub fn node_capacity(size: NodeSize, coresidency: Coresidency, nodes: usize) -> Option<u32> {
    if nodes == 0 || nodes > NODES_PER_CLUSTER_MAX {
        return None;
    }
    let coresident = nodes <= CORESIDENT_NODES_MAX;
    match (coresidency, size) {
        (Coresidency::None, _) => Some(dedicated_node_capacity(size)),
        (Coresidency::CalendarMessage, NodeSize::Medium) if coresident => Some(4_000),
        (Coresidency::CalendarMessage, _) => None,
        (Coresidency::CalendarCallMessage, NodeSize::Small) if coresident => Some(1_300),
        (Coresidency::CalendarCallMessage, NodeSize::Medium) if coresident => Some(2_300),
        (Coresidency::CalendarCallMessage, NodeSize::Large) if coresident => Some(3_000),
        (Coresidency::CalendarCallMessage, _) => None,
        (Coresidency::Mra, _) => Some(MRA_USERS_PER_NODE_MAX.min(dedicated_node_capacity(size))),
    }
}

/// U(N) for a cluster of `nodes`, or `None` where the sources give no figure.
pub fn cluster_capacity(size: NodeSize, coresidency: Coresidency, nodes: usize) -> Option<u32> {
    let per_node = node_capacity(size, coresidency, nodes)?;
    let total = failover_capacity(per_node, nodes);
    Some(match coresidency {
        Coresidency::Mra => total.min(MRA_USERS_PER_CLUSTER_MAX),
        _ => total,
    })
}

/// Control Hub's percentage: ⌈assigned·100 ÷ capacity⌉ (0 for an empty or capacity-less
/// cluster).
pub fn capacity_percent(assigned: u32, capacity: u32) -> u32 {
    if capacity == 0 {
        return 0;
    }
    let pct = (u64::from(assigned) * 100).div_ceil(u64::from(capacity));
    u32::try_from(pct).unwrap_or(u32::MAX)
}

/// The colour of a percentage (spec 9).
pub fn colour(percent: u32) -> Colour {
    match percent {
        0..=60 => Colour::Green,
        61..=90 => Colour::Amber,
        _ => Colour::Red,
    }
}

#[derive(Debug, Clone, Default)]
struct NodeState {
    up: bool,
    maintenance: bool,
    users: BTreeSet<String>,
}

impl NodeState {
    fn eligible(&self) -> bool {
        self.up && !self.maintenance
    }
}

#[derive(Debug, Clone)]
struct ClusterState {
    size: NodeSize,
    coresidency: Coresidency,
    nodes: BTreeMap<String, NodeState>,
    /// email → IM&P clusters homing it, as reported by this cluster's connectors.
    known: BTreeMap<String, BTreeSet<String>>,
    reported: bool,
}

impl ClusterState {
    fn node_cap(&self) -> u32 {
        node_capacity(self.size, self.coresidency, self.nodes.len()).unwrap_or(0)
    }
    fn cluster_cap(&self) -> u32 {
        cluster_capacity(self.size, self.coresidency, self.nodes.len()).unwrap_or(0)
    }
    fn assigned(&self) -> u32 {
        let n: usize = self.nodes.values().map(|n| n.users.len()).sum();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
    fn len_u32(n: &NodeState) -> u32 {
        u32::try_from(n.users.len()).unwrap_or(u32::MAX)
    }
    /// The least-loaded eligible node with room, if the cluster has room.
    fn best_node(&self) -> Option<(u32, &String)> {
        if self.assigned() >= self.cluster_cap() {
            return None;
        }
        let cap = self.node_cap();
        self.nodes
            .iter()
            .filter(|(_, n)| n.eligible() && Self::len_u32(n) < cap)
            .map(|(id, n)| (Self::len_u32(n), id))
            .min()
    }
}

/// One node's line in a [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The connector node id (its hostname).
    pub node: String,
    /// Heartbeating.
    pub up: bool,
    /// In Control Hub maintenance mode.
    pub maintenance: bool,
    /// Users assigned to it.
    pub assigned: u32,
}

/// A cluster's capacity as Control Hub shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Cluster name.
    pub cluster: String,
    /// U(1).
    pub node_capacity: u32,
    /// U(N).
    pub capacity: u32,
    /// Users assigned to the cluster's nodes.
    pub assigned: u32,
    /// ⌈assigned·100 ÷ U(N)⌉.
    pub percent: u32,
    /// The bar colour.
    pub colour: Colour,
    /// The nodes.
    pub nodes: Vec<NodeStatus>,
}

/// The assignment state of the whole organization.
#[derive(Debug, Clone, Default)]
pub struct Assignment {
    clusters: BTreeMap<String, ClusterState>,
    node_cluster: BTreeMap<String, String>,
    enabled: BTreeSet<String>,
    assigned: BTreeMap<String, String>,
    unassigned: BTreeSet<String>,
}

impl Assignment {
    /// No clusters, no users.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a cluster (at registration-token time).
    ///
    /// # Errors
    /// [`CloudError::Conflict`] if it exists.
    pub fn add_cluster(
        &mut self,
        name: &str,
        size: NodeSize,
        coresidency: Coresidency,
    ) -> Result<(), CloudError> {
        if self.clusters.contains_key(name) {
            return Err(CloudError::Conflict(format!("cluster {name} exists")));
        }
        self.clusters.insert(
            name.to_owned(),
            ClusterState {
                size,
                coresidency,
                nodes: BTreeMap::new(),
                known: BTreeMap::new(),
                reported: false,
            },
        );
        Ok(())
    }

    /// Adds a registered node, up, to its cluster; rebalances.
    ///
    /// # Errors
    /// [`CloudError::NotFound`] for an unknown cluster, [`CloudError::Conflict`] beyond
    /// [`NODES_PER_CLUSTER_MAX`] or for a node already added.
    pub fn add_node(&mut self, cluster: &str, node: &str) -> Result<Vec<Move>, CloudError> {
        let c = self
            .clusters
            .get_mut(cluster)
            .ok_or_else(|| CloudError::NotFound(format!("cluster {cluster}")))?;
        if self.node_cluster.contains_key(node) {
            return Err(CloudError::Conflict(format!("node {node} exists")));
        }
        if c.nodes.len() >= NODES_PER_CLUSTER_MAX {
            return Err(CloudError::Conflict(format!(
                "cluster {cluster} has {NODES_PER_CLUSTER_MAX} nodes (spec 1)"
            )));
        }
        let state = NodeState {
            up: true,
            ..NodeState::default()
        };
        c.nodes.insert(node.to_owned(), state);
        self.node_cluster
            .insert(node.to_owned(), cluster.to_owned());
        Ok(self.refill_and_rebalance(cluster))
    }

    /// The clusters, by name.
    pub fn clusters(&self) -> impl Iterator<Item = &String> {
        self.clusters.keys()
    }

    /// The cluster of a node.
    pub fn cluster_of(&self, node: &str) -> Option<&str> {
        self.node_cluster.get(node).map(String::as_str)
    }

    /// The node a user is assigned to.
    pub fn node_of(&self, email: &str) -> Option<&str> {
        self.assigned.get(email).map(String::as_str)
    }

    /// The users assigned to a node.
    pub fn users_of(&self, node: &str) -> Vec<String> {
        self.node_state(node)
            .map(|n| n.users.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The users assigned to a node, sorted by email, borrowed (sampled every few seconds at
    /// up to 15,000 users a node).
    pub fn users_on(&self, node: &str) -> impl Iterator<Item = &String> {
        self.node_state(node)
            .into_iter()
            .flat_map(|n| n.users.iter())
    }

    /// Enabled users that fit nowhere (or that no connector knows).
    pub fn unassigned_count(&self) -> usize {
        self.unassigned.len()
    }

    /// Enabled users that fit nowhere (or that no connector knows), sorted by email.
    pub fn unassigned_users(&self) -> impl Iterator<Item = &String> {
        self.unassigned.iter()
    }

    /// Users assigned in total.
    pub fn assigned_count(&self) -> usize {
        self.assigned.len()
    }

    fn node_state(&self, node: &str) -> Option<&NodeState> {
        let cluster = self.node_cluster.get(node)?;
        self.clusters.get(cluster)?.nodes.get(node)
    }

    /// What the connectors' reports say about `email` (spec 24-25). The cloud "asks
    /// connectors which know the user" (spec 28): until every declared cluster's connectors
    /// have reported once, one still discovering may home the user (or hold a duplicate), so
    /// the answer waits (`org-195k`: three clusters finish discovering minutes apart, and the
    /// first report used to put the other clusters' 135,000 users in Error "no matching IM&P
    /// user").
    pub fn lookup(&self, email: &str) -> Lookup {
        if self.clusters.is_empty() || self.clusters.values().any(|c| !c.reported) {
            return Lookup::NotYetReported;
        }
        let homes: BTreeSet<&String> = self
            .clusters
            .values()
            .filter_map(|c| c.known.get(email))
            .flatten()
            .collect();
        match homes.len() {
            0 => Lookup::NotFound,
            1 => Lookup::Unique,
            _ => Lookup::Duplicate,
        }
    }

    /// A connector of `cluster` reports users it knows (`add`) and no longer knows (`remove`).
    /// Users that become unknown lose their assignment; enabled users that become known are
    /// placed.
    ///
    /// # Errors
    /// [`CloudError::NotFound`] for an unknown cluster.
    pub fn report_users(
        &mut self,
        cluster: &str,
        add: &[KnownUser],
        remove: &[KnownUser],
    ) -> Result<Vec<Move>, CloudError> {
        let c = self
            .clusters
            .get_mut(cluster)
            .ok_or_else(|| CloudError::NotFound(format!("cluster {cluster}")))?;
        c.reported = true;
        let mut touched = BTreeSet::new();
        for u in remove {
            if let Some(homes) = c.known.get_mut(&u.email) {
                homes.remove(&u.imp_cluster);
                if homes.is_empty() {
                    c.known.remove(&u.email);
                }
                touched.insert(u.email.clone());
            }
        }
        for u in add {
            c.known
                .entry(u.email.clone())
                .or_default()
                .insert(u.imp_cluster.clone());
            touched.insert(u.email.clone());
        }
        let mut moves = Vec::new();
        let enabled: Vec<String> = touched
            .into_iter()
            .filter(|e| self.enabled.contains(e))
            .collect();
        for email in enabled {
            let still_known = self.knows(self.assigned.get(&email), &email);
            if !still_known {
                moves.extend(self.unplace(&email));
                self.unassigned.insert(email.clone());
            }
            if !self.assigned.contains_key(&email) {
                moves.extend(self.place(&email));
            }
        }
        Ok(moves)
    }

    /// Whether the cluster of `node` (if any) still knows `email`.
    fn knows(&self, node: Option<&String>, email: &str) -> bool {
        let Some(node) = node else { return true };
        self.node_cluster
            .get(node)
            .and_then(|c| self.clusters.get(c))
            .is_some_and(|c| c.known.contains_key(email))
    }

    /// An Active user: place it.
    pub fn enable(&mut self, email: &str) -> Vec<Move> {
        if !self.enabled.insert(email.to_owned()) {
            return Vec::new();
        }
        self.place(email).into_iter().collect()
    }

    /// A user left Active: unassign it.
    pub fn disable(&mut self, email: &str) -> Vec<Move> {
        self.enabled.remove(email);
        self.unassigned.remove(email);
        self.unplace(email).into_iter().collect()
    }

    /// A node stopped (`up = false`, heartbeats lost) or came back.
    pub fn set_up(&mut self, node: &str, up: bool) -> Vec<Move> {
        self.set_flag(node, |n| n.up = up)
    }

    /// Control Hub maintenance mode on a node (spec 29): drains it; off: rebalances.
    pub fn set_maintenance(&mut self, node: &str, maintenance: bool) -> Vec<Move> {
        self.set_flag(node, |n| n.maintenance = maintenance)
    }

    fn set_flag(&mut self, node: &str, change: impl FnOnce(&mut NodeState)) -> Vec<Move> {
        let Some(cluster) = self.node_cluster.get(node).cloned() else {
            return Vec::new();
        };
        let Some(n) = self
            .clusters
            .get_mut(&cluster)
            .and_then(|c| c.nodes.get_mut(node))
        else {
            return Vec::new();
        };
        let was = n.eligible();
        change(n);
        match (was, n.eligible()) {
            (true, false) => self.drain(node),
            (false, true) => self.refill_and_rebalance(&cluster),
            _ => Vec::new(),
        }
    }

    /// Re-places every user of a node that is no longer eligible.
    fn drain(&mut self, node: &str) -> Vec<Move> {
        let mut moves = Vec::new();
        for email in self.users_of(node) {
            self.remove_from_node(&email);
            match self.best_for(&email) {
                Some((cluster, to)) => {
                    self.add_to_node(&cluster, &to, &email);
                    moves.push(mv(&email, Some(node), Some(&to)));
                }
                None => {
                    self.unassigned.insert(email.clone());
                    moves.push(mv(&email, Some(node), None));
                }
            }
        }
        moves
    }

    /// Places unassigned users, then evens out the cluster's eligible nodes.
    fn refill_and_rebalance(&mut self, cluster: &str) -> Vec<Move> {
        let mut moves = Vec::new();
        let waiting: Vec<String> = self.unassigned.iter().cloned().collect();
        for email in waiting {
            moves.extend(self.place(&email));
        }
        while let Some((email, from, to)) = self.rebalance_step(cluster) {
            self.remove_from_node(&email);
            self.add_to_node(cluster, &to, &email);
            moves.push(mv(&email, Some(&from), Some(&to)));
        }
        moves
    }

    /// One move from the most to the least loaded eligible node, if they differ by more than one.
    fn rebalance_step(&self, cluster: &str) -> Option<(String, String, String)> {
        let c = self.clusters.get(cluster)?;
        let eligible = || c.nodes.iter().filter(|(_, n)| n.eligible());
        // Most loaded: ties to the smallest id, so that moves are reproducible.
        let (max_id, max) = eligible().max_by(|a, b| {
            a.1.users
                .len()
                .cmp(&b.1.users.len())
                .then_with(|| b.0.cmp(a.0))
        })?;
        let (min_id, min) = eligible().min_by_key(|(id, n)| (n.users.len(), *id))?;
        if max.users.len() <= min.users.len() + 1 {
            return None;
        }
        let email = max.users.last()?.clone();
        Some((email, max_id.clone(), min_id.clone()))
    }

    /// The best (cluster, node) for a user among the clusters that know it.
    fn best_for(&self, email: &str) -> Option<(String, String)> {
        if self.lookup(email) != Lookup::Unique {
            return None;
        }
        self.clusters
            .iter()
            .filter(|(_, c)| c.known.contains_key(email))
            .filter_map(|(name, c)| c.best_node().map(|(load, node)| (load, name, node)))
            .min()
            .map(|(_, cluster, node)| (cluster.clone(), node.clone()))
    }

    /// Places an enabled, unassigned user if possible; otherwise counts it unassigned.
    fn place(&mut self, email: &str) -> Option<Move> {
        if self.assigned.contains_key(email) {
            return None;
        }
        match self.best_for(email) {
            Some((cluster, node)) => {
                self.unassigned.remove(email);
                self.add_to_node(&cluster, &node, email);
                Some(mv(email, None, Some(&node)))
            }
            None => {
                self.unassigned.insert(email.to_owned());
                None
            }
        }
    }

    fn unplace(&mut self, email: &str) -> Option<Move> {
        let from = self.remove_from_node(email)?;
        Some(mv(email, Some(&from), None))
    }

    fn add_to_node(&mut self, cluster: &str, node: &str, email: &str) {
        if let Some(n) = self
            .clusters
            .get_mut(cluster)
            .and_then(|c| c.nodes.get_mut(node))
        {
            n.users.insert(email.to_owned());
            self.assigned.insert(email.to_owned(), node.to_owned());
        }
    }

    fn remove_from_node(&mut self, email: &str) -> Option<String> {
        let node = self.assigned.remove(email)?;
        let cluster = self.node_cluster.get(&node)?;
        if let Some(n) = self
            .clusters
            .get_mut(cluster)
            .and_then(|c| c.nodes.get_mut(&node))
        {
            n.users.remove(email);
        }
        Some(node)
    }

    /// Control Hub's view of a cluster.
    pub fn cluster_status(&self, cluster: &str) -> Option<ClusterStatus> {
        let c = self.clusters.get(cluster)?;
        let assigned = c.assigned();
        let capacity = c.cluster_cap();
        let percent = capacity_percent(assigned, capacity);
        Some(ClusterStatus {
            cluster: cluster.to_owned(),
            node_capacity: c.node_cap(),
            capacity,
            assigned,
            percent,
            colour: colour(percent),
            nodes: c
                .nodes
                .iter()
                .map(|(id, n)| NodeStatus {
                    node: id.clone(),
                    up: n.up,
                    maintenance: n.maintenance,
                    assigned: ClusterState::len_u32(n),
                })
                .collect(),
        })
    }
}

fn mv(email: &str, from: Option<&str>, to: Option<&str>) -> Move {
    Move {
        email: email.to_owned(),
        from: from.map(str::to_owned),
        to: to.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NodeSize::{Large, Medium, Small};

    #[test]
    fn dedicated_capacities_from_the_spec() {
        assert_eq!(dedicated_node_capacity(Small), 5_000);
        assert_eq!(dedicated_node_capacity(Medium), 6_500);
        assert_eq!(dedicated_node_capacity(Large), 15_000);
        let u = |size, n| cluster_capacity(size, Coresidency::None, n).unwrap();
        assert_eq!(u(Large, 6), 75_000, "6 Large (spec 3)");
        assert_eq!(
            [u(Medium, 1), u(Medium, 2), u(Medium, 3)],
            [6_500, 6_500, 13_000]
        );
        assert_eq!(u(Small, 6), 25_000);
        assert_eq!(u(Medium, 6), 32_500);
        assert_eq!(u(Large, 1), u(Large, 2), "N = 2 equals N = 1");
        assert_eq!(cluster_capacity(Large, Coresidency::None, 0), None);
        assert_eq!(
            cluster_capacity(Large, Coresidency::None, 7),
            None,
            "spec 1: ≤ 6"
        );
    }

    #[test]
    fn coresident_capacities_from_the_spec() {
        use Coresidency::{CalendarCallMessage as Ccm, CalendarMessage as Cm, Mra};
        assert_eq!(cluster_capacity(Medium, Cm, 1), Some(4_000));
        assert_eq!(cluster_capacity(Medium, Ccm, 1), Some(2_300));
        assert_eq!(cluster_capacity(Small, Ccm, 2), Some(1_300));
        assert_eq!(cluster_capacity(Medium, Ccm, 2), Some(2_300));
        assert_eq!(cluster_capacity(Large, Ccm, 2), Some(3_000));
        assert_eq!(
            cluster_capacity(Large, Ccm, 3),
            None,
            "only up to two nodes"
        );
        assert_eq!(cluster_capacity(Small, Cm, 1), None, "not documented");
        assert_eq!(node_capacity(Large, Mra, 1), Some(100));
        assert_eq!(cluster_capacity(Large, Mra, 3), Some(200));
        assert_eq!(cluster_capacity(Large, Mra, 6), Some(500));
    }

    #[test]
    fn colours_from_the_spec() {
        assert_eq!(capacity_percent(0, 15_000), 0);
        assert_eq!(capacity_percent(1, 15_000), 1, "any user shows 1 %");
        assert_eq!(capacity_percent(9_000, 15_000), 60);
        assert_eq!(capacity_percent(9_001, 15_000), 61);
        assert_eq!(capacity_percent(75_000, 75_000), 100);
        assert_eq!(colour(1), Colour::Green);
        assert_eq!(colour(60), Colour::Green);
        assert_eq!(colour(61), Colour::Amber);
        assert_eq!(colour(90), Colour::Amber);
        assert_eq!(colour(91), Colour::Red);
        assert_eq!(capacity_percent(5, 0), 0);
    }

    fn known(n: usize) -> Vec<KnownUser> {
        (0..n)
            .map(|i| KnownUser {
                email: format!("u{i:06}@example.com"),
                imp_cluster: "imp-a".into(),
            })
            .collect()
    }

    /// A cluster of `nodes` nodes `exp-1..` knowing `users` users, all enabled.
    fn world(size: NodeSize, nodes: usize, users: usize) -> Assignment {
        let mut a = Assignment::new();
        a.add_cluster("exp", size, Coresidency::None).unwrap();
        for i in 1..=nodes {
            a.add_node("exp", &format!("exp-{i}")).unwrap();
        }
        let users = known(users);
        a.report_users("exp", &users, &[]).unwrap();
        for u in &users {
            a.enable(&u.email);
        }
        a
    }

    fn loads(a: &Assignment) -> Vec<u32> {
        let s = a.cluster_status("exp").unwrap();
        s.nodes.iter().map(|n| n.assigned).collect()
    }

    #[test]
    fn balanced_and_never_beyond_capacity() {
        let a = world(Medium, 3, 14_000);
        assert_eq!(loads(&a), [4_334, 4_333, 4_333]);
        assert_eq!(a.assigned_count(), 13_000, "U(3) Medium");
        assert_eq!(a.unassigned_count(), 1_000);
        let s = a.cluster_status("exp").unwrap();
        assert_eq!(
            (s.capacity, s.percent, s.colour),
            (13_000, 100, Colour::Red)
        );
    }

    #[test]
    fn six_large_nodes_take_75000() {
        let a = world(Large, 6, 75_000);
        assert_eq!(loads(&a), [12_500; 6]);
        assert_eq!(a.unassigned_count(), 0);
    }

    #[test]
    fn node_loss_reassigns_within_capacity_and_recovery_rebalances() {
        let mut a = world(Large, 2, 15_000);
        assert_eq!(loads(&a), [7_500, 7_500]);
        let moves = a.set_up("exp-1", false);
        assert_eq!(moves.len(), 7_500);
        assert!(moves.iter().all(|m| m.to.as_deref() == Some("exp-2")));
        assert_eq!(loads(&a), [0, 15_000]);
        assert_eq!(a.unassigned_count(), 0);
        let moves = a.set_up("exp-1", true);
        assert_eq!(moves.len(), 7_500);
        assert_eq!(loads(&a), [7_500, 7_500]);
    }

    #[test]
    fn users_beyond_capacity_stay_unassigned_then_return() {
        let mut a = world(Medium, 3, 13_000);
        let moves = a.set_up("exp-3", false);
        assert_eq!(moves.len(), 4_333);
        assert_eq!(loads(&a), [6_500, 6_500, 0]);
        assert_eq!(a.unassigned_count(), 0);
        // A second loss exceeds what the last node can take.
        a.set_up("exp-2", false);
        assert_eq!(loads(&a), [6_500, 0, 0]);
        assert_eq!(a.unassigned_count(), 6_500);
        a.set_up("exp-2", true);
        a.set_up("exp-3", true);
        assert_eq!(a.unassigned_count(), 0);
        let l = loads(&a);
        assert_eq!(l.iter().sum::<u32>(), 13_000);
        assert!(
            l.iter().max().unwrap() - l.iter().min().unwrap() <= 1,
            "{l:?}"
        );
    }

    #[test]
    fn maintenance_drains_a_node() {
        let mut a = world(Small, 3, 3_000);
        a.set_maintenance("exp-2", true);
        assert_eq!(loads(&a), [1_500, 0, 1_500]);
        a.set_maintenance("exp-2", false);
        assert_eq!(loads(&a), [1_000, 1_000, 1_000]);
    }

    #[test]
    fn only_clusters_that_know_the_user_are_candidates() {
        let mut a = world(Small, 1, 0);
        a.add_cluster("other", Small, Coresidency::None).unwrap();
        a.add_node("other", "other-1").unwrap();
        let alice = KnownUser {
            email: "alice@example.com".into(),
            imp_cluster: "imp-b".into(),
        };
        a.enable(&alice.email);
        assert_eq!(a.node_of(&alice.email), None, "unknown: unassigned");
        assert_eq!(a.unassigned_count(), 1);
        let moves = a
            .report_users("other", std::slice::from_ref(&alice), &[])
            .unwrap();
        assert_eq!(moves, vec![mv("alice@example.com", None, Some("other-1"))]);
        assert_eq!(a.lookup(&alice.email), Lookup::Unique);
        // Also homed on another IM&P cluster: duplicate Mail ID (spec 25).
        let dup = KnownUser {
            imp_cluster: "imp-a".into(),
            ..alice.clone()
        };
        a.report_users("exp", &[dup], &[]).unwrap();
        assert_eq!(a.lookup(&alice.email), Lookup::Duplicate);
        // No longer known: unassigned.
        let moves = a.report_users("other", &[], &[alice]).unwrap();
        assert_eq!(moves[0].to, None);
        assert_eq!(a.lookup("nobody@example.com"), Lookup::NotFound);
    }

    #[test]
    fn lookup_waits_for_the_first_report_and_disable_unassigns() {
        let mut a = Assignment::new();
        assert_eq!(a.lookup("x@example.com"), Lookup::NotYetReported);
        a.add_cluster("exp", Large, Coresidency::None).unwrap();
        assert_eq!(
            a.add_cluster("exp", Large, Coresidency::None)
                .unwrap_err()
                .status(),
            409
        );
        a.add_node("exp", "exp-1").unwrap();
        a.report_users("exp", &known(1), &[]).unwrap();
        let email = known(1)[0].email.clone();
        assert_eq!(a.enable(&email).len(), 1);
        assert!(a.enable(&email).is_empty(), "idempotent");
        assert_eq!(a.disable(&email), vec![mv(&email, Some("exp-1"), None)]);
        assert_eq!(a.assigned_count(), 0);
    }

    /// `org-195k`: three Expressway clusters finish discovering minutes apart. A user of a
    /// cluster that has not reported yet is not "no matching IM&P user" because another
    /// cluster reported first: the lookup waits for every declared cluster.
    #[test]
    fn lookup_waits_for_every_declared_cluster() {
        let mut a = Assignment::new();
        a.add_cluster("exp-a", Large, Coresidency::None).unwrap();
        a.add_cluster("exp-b", Large, Coresidency::None).unwrap();
        a.add_node("exp-a", "exp-a-1").unwrap();
        a.add_node("exp-b", "exp-b-1").unwrap();
        let users = known(2);
        a.report_users("exp-a", &users[..1], &[]).unwrap();
        assert_eq!(
            a.lookup(&users[0].email),
            Lookup::NotYetReported,
            "b may hold a duplicate"
        );
        assert_eq!(
            a.lookup(&users[1].email),
            Lookup::NotYetReported,
            "b may home it"
        );
        a.report_users("exp-b", &users[1..], &[]).unwrap();
        assert_eq!(a.lookup(&users[0].email), Lookup::Unique);
        assert_eq!(a.lookup(&users[1].email), Lookup::Unique);
        assert_eq!(a.lookup("nobody@example.com"), Lookup::NotFound);
    }

    #[test]
    fn at_most_six_nodes() {
        let mut a = world(Small, 6, 0);
        assert_eq!(a.add_node("exp", "exp-7").unwrap_err().status(), 409);
        assert_eq!(a.add_node("exp", "exp-1").unwrap_err().status(), 409);
        assert_eq!(a.add_node("nope", "x").unwrap_err().status(), 404);
    }

    #[test]
    fn mra_limits_per_node_and_cluster() {
        let mut a = Assignment::new();
        a.add_cluster("exp", Large, Coresidency::Mra).unwrap();
        for i in 1..=6 {
            a.add_node("exp", &format!("exp-{i}")).unwrap();
        }
        let users = known(1_000);
        a.report_users("exp", &users, &[]).unwrap();
        for u in &users {
            a.enable(&u.email);
        }
        assert_eq!(loads(&a), [84, 84, 83, 83, 83, 83]);
        assert_eq!(a.assigned_count(), 500);
        a.set_up("exp-1", false);
        assert!(loads(&a).iter().all(|&l| l <= 100));
        assert_eq!(a.assigned_count(), 500);
    }
}
