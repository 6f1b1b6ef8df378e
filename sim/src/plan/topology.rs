//! Host naming (see `docs/architecture.md`) and the user population derived from a scenario.
//!
//! Host names: `imp-<cluster>-<n>` (node 1 is the publisher), `exp-<cluster>-<n>`, `cloud`,
//! `kms` or `hds`, and client farms `jabber-<k>` / `webex-<k>`. A cluster named `imp-a` or `a`
//! both give hosts `imp-a-1`, ... so scenario files may write either.

use crate::plan::rng::RngFactory;
use crate::scenario::{ImpCluster, KmsKind, Scenario};
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

/// The IM&P cluster whose nodes include host `host`, if any.
pub fn imp_cluster_of<'s>(s: &'s Scenario, host: &str) -> Option<&'s ImpCluster> {
    (s.topology.imp_clusters.iter()).find(|c| (1..=c.nodes).any(|k| imp_host(&c.name, k) == host))
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
    let mut users = base_population(s, rngs);
    differing_mail_ids(s, rngs, &mut users);
    users
}

/// The local part of the mail ID of user `index` when it is not the JID's (spec 24): the
/// `first.last` shape a directory's `mail` field has, sharing nothing with the user id, so a
/// connector deriving one from the other cannot pass by luck.
pub fn differing_mail_local(index: u32) -> String {
    format!("first.last{index:05}")
}

/// Gives a share `users.jid.differs_from_email` of the users who have a mail ID one that is
/// not their JID. The draws come from their own stream, `population.jid`, one per user, so
/// the other population draws (and every scenario without the option) stay as they were.
fn differing_mail_ids(s: &Scenario, rngs: &RngFactory, users: &mut [UserSpec]) {
    let scheme = &s.users.jid;
    let mut rng = rngs.named("population.jid");
    let domain = scheme.email_domain.as_deref().unwrap_or(&s.topology.domain);
    for u in users {
        let differs = rng.random_range(0..10_000u32) < scheme.differs_from_email.0;
        if differs && u.email.is_some() {
            u.email = Some(format!("{}@{domain}", differing_mail_local(u.index)));
        }
    }
}

/// The population with every mail ID equal to the JID (or none).
fn base_population(s: &Scenario, rngs: &RngFactory) -> Vec<UserSpec> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::connector::webex_email;

    fn scenario(jid: &str) -> Scenario {
        let text = format!(
            "name: t\nseed: 1\nduration: 1m\ntopology:\n  imp_clusters: [{{ name: a, nodes: 2 }}]\n\
             users:\n  count: 400\n  without_email: 10%\n  hidden_status: 30%\n{jid}"
        );
        crate::parse("t.yaml", &text).unwrap()
    }

    /// Spec 24: a share of users get a mail ID that is not their JID, and their Webex email is
    /// that mail ID; the draws come from their own stream, so every other fact of every user
    /// is what it is without the option.
    #[test]
    fn a_share_of_mail_ids_differ_from_jids_and_nothing_else_moves() {
        let rngs = RngFactory::new(5);
        let plain = population(&scenario(""), &rngs);
        let s = scenario("  jid: { differs_from_email: 50% }\n");
        let mixed = population(&s, &rngs);
        let mut differ = 0;
        for (a, b) in plain.iter().zip(&mixed) {
            assert_eq!(a.jid, b.jid);
            assert_eq!(a.jid, format!("{}@example.com", a.userid));
            assert_eq!(a.email.is_some(), b.email.is_some(), "{}", a.userid);
            assert_eq!(webex_email(b, &s), b.email.clone().unwrap_or(b.jid.clone()));
            if b.email != a.email {
                differ += 1;
                let email = b.email.as_deref().unwrap();
                assert_eq!(email, format!("first.last{:05}@example.com", b.index));
                assert!(
                    !email.contains(&b.userid),
                    "{email} shares nothing with the JID"
                );
            }
            let b_as_plain = UserSpec {
                email: a.email.clone(),
                ..b.clone()
            };
            assert_eq!(a, &b_as_plain, "only the mail ID changes");
        }
        // 400 users, 90% with a mail ID, half of those: about 180.
        assert!((140..=220).contains(&differ), "{differ} of 400 differ");
    }

    #[test]
    fn mail_ids_may_differ_in_domain_too_and_all_may_differ() {
        let s = scenario("  jid: { differs_from_email: 100%, email_domain: corp.example.net }\n");
        let users = population(&s, &RngFactory::new(9));
        for u in &users {
            if let Some(email) = &u.email {
                assert_eq!(*email, format!("first.last{:05}@corp.example.net", u.index));
                assert_eq!(u.jid, format!("{}@example.com", u.userid));
            }
        }
        assert!(
            users.iter().any(|u| u.email.is_none()),
            "without_email kept"
        );
    }
}
