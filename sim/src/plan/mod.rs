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
    /// names the people Webex clients name by email.
    pub fn jid_of_email(&self, s: &Scenario) -> BTreeMap<String, String> {
        self.users
            .iter()
            .map(|u| (self::connector::webex_email(u, s), u.jid.clone()))
            .filter(|(email, jid)| email != jid)
            .collect()
    }
}
