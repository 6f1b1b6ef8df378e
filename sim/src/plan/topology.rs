//! Host naming (see `docs/architecture.md`) and the user population derived from a scenario.
//!
//! Host names: `imp-<cluster>-<n>` (node 1 is the publisher), `exp-<cluster>-<n>`, `cloud`,
//! `kms` or `hds`, and client farms `jabber-<k>` / `webex-<k>`. A cluster named `imp-a` or `a`
//! both give hosts `imp-a-1`, ... so scenario files may write either.

use crate::plan::rng::RngFactory;
use crate::scenario::{KmsKind, Scenario};
use rand::RngExt as _;

/// Client-farm host names for Jabber clients.
pub fn jabber_farm(k: u32) -> String {
    format!("jabber-{k}")
}

/// The host name of node `n` (1-based) of IM&P cluster `cluster`.
pub fn imp_host(cluster: &str, n: u32) -> String {
    format!(
        "imp-{}-{n}",
        cluster.strip_prefix("imp-").unwrap_or(cluster)
    )
}

/// The host name of node `n` (1-based) of Expressway cluster `cluster`.
pub fn exp_host(cluster: &str, n: u32) -> String {
    format!(
        "exp-{}-{n}",
        cluster.strip_prefix("exp-").unwrap_or(cluster)
    )
}

/// Every host the scenario's topology creates, in a stable order.
pub fn all_hosts(s: &Scenario) -> Vec<String> {
    let mut hosts = Vec::new();
    for c in &s.topology.imp_clusters {
        hosts.extend((1..=c.nodes).map(|n| imp_host(&c.name, n)));
    }
    for c in &s.topology.expressway_clusters {
        hosts.extend((1..=c.nodes).map(|n| exp_host(&c.name, n)));
    }
    if uses_cloud(s) {
        hosts.push("cloud".into());
        hosts.push(
            match s.topology.kms {
                KmsKind::Cloud => "kms",
                KmsKind::Hds => "hds",
            }
            .into(),
        );
    }
    hosts.extend((1..=s.topology.client_farms.jabber).map(jabber_farm));
    if uses_cloud(s) {
        hosts.extend((1..=s.topology.client_farms.webex).map(|k| format!("webex-{k}")));
    }
    hosts
}

/// Whether the scenario needs the Webex cloud (Webex users or Expressway connectors).
pub fn uses_cloud(s: &Scenario) -> bool {
    s.users.webex.0 > 0 || !s.topology.expressway_clusters.is_empty()
}

/// One simulated person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    /// Index in the population, 0-based.
    pub index: u32,
    /// IM&P user id (`userid` in AXL), also the JID local part.
    pub userid: String,
    /// Bare JID.
    pub jid: String,
    /// Mail ID; `None` for users without one (spec 24).
    pub email: Option<String>,
    /// XMPP password.
    pub password: String,
    /// Index of the home IM&P cluster in the topology.
    pub cluster: usize,
    /// Home node number, 1-based.
    pub node: u32,
    /// Uses Jabber.
    pub jabber: bool,
    /// Uses the Webex App.
    pub webex: bool,
    /// Enabled for Hybrid Message.
    pub hybrid: bool,
    /// Hidden Webex status.
    pub hidden: bool,
    /// Sets Do Not Disturb at Webex login.
    pub dnd: bool,
    /// Out of office.
    pub ooo: bool,
    /// Another IM&P cluster also holding an account with this user's mail ID (spec 25).
    pub duplicate_in: Option<usize>,
    /// Jabber devices (resources).
    pub devices: u32,
    /// Jabber client-farm number, 1-based.
    pub farm: u32,
}

impl UserSpec {
    /// The second account of a user with a duplicate mail ID, on cluster `duplicate_in`:
    /// another user id and JID, the same mail ID, homed on that cluster's publisher.
    pub fn duplicate_record(&self, s: &Scenario) -> Option<(usize, String, String)> {
        let c = self.duplicate_in?;
        let userid = format!("{}.dup", self.userid);
        let jid = format!("{userid}@{}", s.topology.domain);
        Some((c, userid, jid))
    }

    /// The host name of the user's home IM&P node.
    pub fn home_host(&self, s: &Scenario) -> String {
        imp_host(&s.topology.imp_clusters[self.cluster].name, self.node)
    }
}

/// Builds the population: users spread round-robin over clusters, then over nodes within a
/// cluster; every per-user share (Hybrid Message, Jabber, ...) drawn from the `population`
/// RNG so that the same seed always gives the same people.
pub fn population(s: &Scenario, rngs: &RngFactory) -> Vec<UserSpec> {
    let mut rng = rngs.named("population");
    let clusters = &s.topology.imp_clusters;
    let u = &s.users;
    let mut per_cluster = vec![0u32; clusters.len()];
    (0..u.count)
        .map(|i| {
            let cluster = (i as usize) % clusters.len();
            let nth = per_cluster[cluster];
            per_cluster[cluster] += 1;
            let node = nth % clusters[cluster].nodes + 1;
            let userid = format!("user{i:05}");
            let jid = format!("{userid}@{}", s.topology.domain);
            let mut draw = |p: crate::scenario::Pct| rng.random_range(0..10_000u32) < p.0;
            let has_email = !draw(u.without_email);
            UserSpec {
                index: i,
                email: has_email.then(|| format!("{userid}@{}", s.topology.domain)),
                password: format!("pw-{userid}"),
                cluster,
                node,
                jabber: draw(u.jabber),
                webex: draw(u.webex),
                hybrid: draw(u.hybrid_message),
                hidden: draw(u.hidden_status),
                dnd: draw(u.dnd),
                ooo: draw(u.out_of_office),
                duplicate_in: (clusters.len() > 1 && draw(u.duplicate_mail_id))
                    .then_some((cluster + 1) % clusters.len()),
                devices: u.jabber_devices,
                farm: i % s.topology.client_farms.jabber + 1,
                userid,
                jid,
            }
        })
        .collect()
}
