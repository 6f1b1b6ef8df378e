//! Links the fault schedule cut on a message's way to Webex, for the order the product does
//! not promise across them.
//!
//! The guide: "The service is not robust to other uncontrolled outages, including but not
//! limited to: Unexpected failure of an Expressway. [...] Unexpected failure of the IM and
//! Presence services that Hybrid Message Service depends on, including XCP" (spec 64), and an
//! Expressway the cloud cannot reach "looks like an uncontrolled outage of that connector to
//! Cisco Webex" (spec 29). A message from Jabber reaches the recipient's Webex App by two
//! paths that nothing orders against each other: the recipient's copy (routed by IM&P from
//! the sender's home node to the recipient's, posted by the recipient's connector session)
//! and the sender's carbon (posted by the sender's session). A `hold` or `partition` of the
//! IM&P router link between the two home nodes, or of a connector node and the cloud, keeps
//! a copy on one path while a later message takes the other.
//!
//! The other way, a Webex App's message reaches Jabber through the connector node the cloud
//! sends it to; a node cut off from the cloud keeps what was on its way to it while the cloud
//! gives the recipient to another node (heartbeat lost), which delivers a later message first.
//!
//! So `per_conversation_order` excuses, only across the bridge (from Jabber to a Webex App, or
//! from a Webex App to Jabber), a message sent while such a cut of a link on its way lasted
//! ([`IN_FLIGHT_SLACK`] before it included) that reached the device after the cut ended,
//! behind later messages all sent before the cut ended or within [`IN_FLIGHT_SLACK`] after
//! (while what it held was still on its way): the later ones went round the cut, the earlier
//! one waited on it. A connector node cut off from the cloud lets what it held out only at its
//! next retry of the post that failed, so after its cut the window is [`BACKLOG_DRAIN`]. A connector node's cut counts only when another node serving the same
//! users still reaches the cloud: with one node nothing goes round, and its order must hold.
//! Judged from the scenario's fault schedule, topology and the send and delivery times only;
//! the same reorder without such a cut still fails, and so does one within a client (Jabber
//! to Jabber keeps its order through a held router link).

use crate::history::observer::MessageRecord;
use crate::oracle::{BACKLOG_DRAIN, IN_FLIGHT_SLACK};
use crate::plan::topology::{UserSpec, exp_host};
use crate::scenario::{Fault, Scenario};
use fakes::observe::ClientKind;
use std::collections::BTreeMap;
use std::time::Duration;

/// The cloud's host name (the side of a connector node's cut link).
const CLOUD_HOST: &str = "cloud";

/// One timed `hold` or `partition` of the schedule, both ways.
#[derive(Debug, Clone)]
struct Cut {
    start: Duration,
    end: Duration,
    a: Vec<String>,
    b: Vec<String>,
    what: String,
}

impl Cut {
    fn of(f: &Fault) -> Option<Cut> {
        let (kind, between) = match (&f.hold, &f.partition) {
            (Some(b), _) => ("hold", b),
            (None, Some(b)) => ("partition", b),
            (None, None) => return None,
        };
        // A cut without end never lets the waiting copy out: nothing to excuse.
        let (start, end) = crate::plan::faults::window(f);
        f.for_?;
        let what = format!(
            "{kind} {}↔{} {}-{} s",
            between.a.0.join("+"),
            between.b.0.join("+"),
            start.as_secs(),
            end.as_secs()
        );
        Some(Cut {
            start,
            end,
            a: between.a.0.clone(),
            b: between.b.0.clone(),
            what,
        })
    }

    /// Whether the cut separates hosts `x` and `y` (either way round).
    fn separates(&self, x: &str, y: &str) -> bool {
        let has = |side: &[String], h: &str| side.iter().any(|s| s == h);
        (has(&self.a, x) && has(&self.b, y)) || (has(&self.a, y) && has(&self.b, x))
    }
}

/// The schedule's cuts and the links on each message's way to Webex.
pub struct Cuts<'a> {
    s: &'a Scenario,
    cuts: Vec<Cut>,
}

/// A cut on a message's way: when it ended, and what it was (for the check's detail).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OnWay {
    /// The end of the cut (its `at` plus `for`).
    pub end: Duration,
    /// How long after `end` what the cut held may still be on its way: [`IN_FLIGHT_SLACK`]
    /// on a router link, which lets it through once back; [`BACKLOG_DRAIN`] for a connector
    /// node cut off from the cloud, whose held posts go out at its next retry of the request
    /// that failed (explore seed 26054's scenario at seed 10: a cut ended at 401 s, the held
    /// posts out at 415.9 s behind messages sent up to 409.9 s).
    pub drain: Duration,
    /// The fault, e.g. `hold imp-a-3↔imp-a-1 146-262 s`.
    pub what: String,
}

impl<'a> Cuts<'a> {
    /// The timed holds and partitions of `s`.
    pub fn of(s: &'a Scenario) -> Self {
        Cuts {
            s,
            cuts: s.faults.iter().filter_map(Cut::of).collect(),
        }
    }

    /// The cuts that lasted when `m` was sent (or began up to [`IN_FLIGHT_SLACK`] after) on a
    /// link its way to the recipient's `client` crosses: from Jabber to a Webex App, the IM&P
    /// router link between the sender's and the recipient's home nodes, or the link between
    /// the cloud and a node of an Expressway cluster serving either home cluster (the post);
    /// from a Webex App to Jabber, the latter (the activity the cloud sends a connector). A
    /// connector node's cut only while another serving node is not cut off by it. Empty
    /// within one client: no connector carries it.
    pub fn on_way(
        &self,
        by_jid: &BTreeMap<&str, &UserSpec>,
        m: &MessageRecord,
        client: ClientKind,
    ) -> Vec<OnWay> {
        if m.client == client || self.cuts.is_empty() {
            return Vec::new();
        }
        let (Some(from), Some(to)) = (by_jid.get(&*m.from), by_jid.get(&*m.to)) else {
            return Vec::new();
        };
        let homes = (from.home_host(self.s), to.home_host(self.s));
        let routed = m.client == ClientKind::Jabber && homes.0 != homes.1;
        let connectors = self.connector_nodes(&[from.cluster, to.cluster]);
        let lasting = |c: &&Cut| m.sent_at + IN_FLIGHT_SLACK >= c.start && m.sent_at < c.end;
        let mut out: Vec<OnWay> = (self.cuts.iter().filter(lasting))
            .filter_map(|c| {
                let cut_off = |x: &String| c.separates(x, CLOUD_HOST);
                let round = connectors.iter().any(cut_off) && !connectors.iter().all(cut_off);
                let router = routed && c.separates(&homes.0, &homes.1);
                let drain = match (router, round) {
                    (_, true) => BACKLOG_DRAIN,
                    (true, false) => IN_FLIGHT_SLACK,
                    (false, false) => return None,
                };
                Some(OnWay {
                    end: c.end,
                    drain,
                    what: c.what.clone(),
                })
            })
            .collect();
        out.sort();
        out
    }

    /// The hosts of every Expressway node serving one of the IM&P `clusters` (indices).
    fn connector_nodes(&self, clusters: &[usize]) -> Vec<String> {
        let t = &self.s.topology;
        let names: Vec<&String> = clusters.iter().map(|&i| &t.imp_clusters[i].name).collect();
        (t.expressway_clusters.iter())
            .filter(|e| e.imp_clusters.iter().any(|c| names.contains(&c)))
            .flat_map(|e| (1..=e.nodes).map(|n| exp_host(&e.name, n)))
            .collect()
    }
}
