//! Stage 2, the plan: every decision the run makes before it starts, as pure functions of the
//! scenario and the seed. Nothing here touches turmoil.
//!
//! - [`rng`]: per-component ChaCha RNGs derived from the seed by name.
//! - [`topology`]: host naming and the user population.
//! - [`imp`]: the IM&P nodes' component and PRG settings, Jabber login servers.
//! - [`connector`]: the Expressway connectors' settings, the cloud's capacity inputs.
//! - [`workload`]: chat, presence and group chat plans, rosters, sending clients.
//! - [`faults`]: the fault timeline (timed actions), risk windows.
//! - [`migration`]: which faults move sessions between PRG peers.
//! - [`validate`]: the cross-field rules of a scenario and the gates for what does not run yet.

pub mod connector;
pub mod faults;
pub mod imp;
pub mod migration;
pub mod prg_capacity;
pub mod rng;
pub mod topology;
pub mod validate;
pub mod workload;

use crate::scenario::Scenario;
use fakes::clients::jabber::{ChatPlan, GroupPlan};
use fakes::clients::webex::WebexPlan;
use faults::{BaseLatency, Timed};
use rng::RngFactory;
use std::collections::BTreeMap;
use topology::UserSpec;
use workload::SpacePlan;

/// Everything decided before the run starts.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The run's RNGs.
    pub rngs: RngFactory,
    /// The population.
    pub users: Vec<UserSpec>,
    /// Which client each user sends from when both are possible (`true` = Webex).
    pub senders: BTreeMap<u32, bool>,
    /// The chat plan of each Jabber sender, by user index.
    pub chat: BTreeMap<u32, ChatPlan>,
    /// Each user's contacts (bare JIDs, both ways), as the IM&P directories hold them.
    pub contacts: BTreeMap<String, Vec<String>>,
    /// The group chat plan of each Jabber user, by user index.
    pub groups: BTreeMap<u32, GroupPlan>,
    /// The Webex plan of each Webex sender, by user index.
    pub webex: BTreeMap<u32, WebexPlan>,
    /// The Webex group spaces each Webex App user creates, by user index.
    pub spaces: BTreeMap<u32, Vec<SpacePlan>>,
    /// Base one-way latency of every link.
    pub base: BaseLatency,
    /// The fault timeline, sorted.
    pub timeline: Vec<Timed>,
}

impl Plan {
    /// Plans the run of `s` with `seed`.
    pub fn new(s: &Scenario, seed: u64) -> Self {
        let rngs = RngFactory::new(seed);
        let users = topology::population(s, &rngs);
        let senders = workload::sending_client(&rngs, &users);
        let chat = workload::chat_plans(s, &rngs, &users, &senders);
        let base = BaseLatency(s.tick.0);
        Self {
            contacts: workload::contacts(&users, &chat),
            groups: workload::group_plans(s, &rngs, &users),
            webex: workload::webex_plans(s, &rngs, &users, &senders),
            spaces: workload::space_plans(s, &rngs, &users),
            timeline: faults::timeline(&s.faults, base),
            rngs,
            users,
            senders,
            chat,
            base,
        }
    }

    /// Each user's Webex email → bare JID, where the two differ (spec 24): how the history
    /// names the people Webex clients name by email. Also each second account of a user with
    /// a duplicate mail ID (spec 25) → that user's JID: the account carries the same mail ID,
    /// the identity key (spec 24), so a connector that discovered only its cluster bridges
    /// the person's Webex messages from it, and they are still that person's.
    pub fn jid_of_email(&self, s: &Scenario) -> BTreeMap<String, String> {
        let seconds = self.users.iter().filter_map(|u| {
            let (_, _, jid) = u.duplicate_record(s)?;
            Some((jid, u.jid.clone()))
        });
        self.users
            .iter()
            .map(|u| (self::connector::webex_email(u, s), u.jid.clone()))
            .filter(|(email, jid)| email != jid)
            .chain(seconds)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spec 24-25: a user with a duplicate mail ID has a second IM&P account on another
    /// cluster; a connector that discovered only that cluster (the other's AXL down) knows
    /// the mail ID by that account alone and bridges the user's Webex messages from its JID.
    /// The history names that account by its person, as it names a differing Webex email.
    #[test]
    fn a_second_account_with_the_same_mail_id_is_named_by_its_person() {
        let text = "name: t\nseed: 1\nduration: 1m\ntopology:\n  imp_clusters: \
                    [{ name: a, nodes: 1 }, { name: b, nodes: 1 }]\n\
                    users:\n  count: 200\n  duplicate_mail_id: 20%\n";
        let s = crate::parse("t.yaml", text).unwrap();
        let plan = Plan::new(&s, 1);
        let names = plan.jid_of_email(&s);
        let mut seconds = 0;
        for u in &plan.users {
            match u.duplicate_record(&s) {
                Some((_, _, jid)) => {
                    seconds += 1;
                    assert_eq!(names.get(&jid), Some(&u.jid), "{jid}");
                }
                None => assert!(!names.contains_key(&u.jid), "{}", u.jid),
            }
        }
        assert!(seconds > 0, "the population has second accounts");
    }
}
