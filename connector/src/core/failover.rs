//! IM&P node health and session migration after a failover (spec 61-65).
//!
//! The connector notices a node outage: its component stream is lost (a crash, an automatic
//! PRG failover), or the node itself ends its users' sessions with `see-other-host` (a manual
//! PRG failover: the node is up but no longer serves its users). It then waits a
//! detection delay drawn uniformly from `[0, detection_delay_max]` (spec 62: "may take up to
//! 15 min to start moving sessions") and moves the node's sessions to its PRG peer through the
//! migration token bucket (default 5,000 sessions in about 30 minutes). Fallback moves them
//! back the same way once the node is healthy again: when its stream returns before the users
//! were moved, or, once they were, when the PRG gives them back (the peer ends their sessions
//! with `see-other-host`; a node that restarts after a failover stays failed over until the
//! administrator's fallback or the automatic one, spec 65). While sessions are moving, the status
//! page shows the source node as "Outage" with its users still assigned to it (spec 63).
//!
//! Both nodes of a PRG down at once: nothing moves to a node that is down, and the first to
//! return takes the other over (Running in Backup Mode, spec 65), so the connector moves the
//! other's users to it after the detection delay, and takes back its own from a peer that
//! served them until it failed.
//!
//! A connector that starts (or restarts) while a node is failed over has seen neither signal:
//! it opens the users on their home node from AXL, and the node refuses with a `redirect`
//! naming its peer. That teaches it the failover ([`Failover::learned_failed_over`]): the node
//! is Outage at once and its users go to the peer, with no detection delay (the answer is the
//! detection) but at the migration rate, since re-creating thousands of sessions loads the peer
//! as any failover does; the PRG's fallback then brings them back as after any failover.
//!
//! High availability is read at discovery and kept until the connector restarts (spec 61): a
//! PRG whose HA setting changes later is still treated as before, as the seeds say.
//! What the seeds call not robust (spec 64: an XCP or AXL failure of a node without HA) stays
//! not robust: without HA or without a peer, the node's users simply lose their sessions.

use rand_core::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Node status as the status page shows it (spec 71).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    /// Reachable.
    Operational,
    /// Stream lost.
    Outage,
}

#[derive(Debug, Clone)]
struct NodeHealth {
    status: NodeStatus,
    peer: Option<String>,
    high_availability: bool,
    since: Duration,
}

/// A decided move: sessions homed on `from` go to `to`, starting at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// Source node.
    pub from: String,
    /// Destination node.
    pub to: String,
    /// When moving starts.
    pub at: Duration,
    /// Failover (away from a failed node) or fallback (back to a recovered one).
    pub fallback: bool,
}

/// Health of every discovered IM&P node, and the moves it implies.
#[derive(Debug, Clone, Default)]
pub struct Failover {
    nodes: BTreeMap<String, NodeHealth>,
    detection_delay_max: Duration,
    scheduled: Vec<Move>,
    /// Where each failed-over node's users currently go.
    redirect: BTreeMap<String, String>,
    /// Nodes whose component link is up ([`Self::link_back`], [`Self::link_lost`]): a node
    /// failed over but linked is healthy, not serving (spec 65: Failed Over).
    linked: BTreeSet<String>,
}

impl Failover {
    /// Tracks nodes `(name, prg peer, high availability)` as discovered at start.
    pub fn new(nodes: &[(String, Option<String>, bool)], detection_delay_max: Duration) -> Self {
        Self {
            nodes: nodes
                .iter()
                .map(|(n, peer, ha)| {
                    let health = NodeHealth {
                        status: NodeStatus::Operational,
                        peer: peer.clone(),
                        high_availability: *ha,
                        since: Duration::ZERO,
                    };
                    (n.clone(), health)
                })
                .collect(),
            detection_delay_max,
            scheduled: Vec::new(),
            redirect: BTreeMap::new(),
            linked: BTreeSet::new(),
        }
    }

    /// Tracks nodes `(name, prg peer, high availability)` discovered later (a cluster whose
    /// publisher answered only after the others, spec 22); the nodes tracked already keep
    /// their state.
    pub fn track(&mut self, nodes: &[(String, Option<String>, bool)]) {
        for (n, h) in Self::new(nodes, self.detection_delay_max).nodes {
            self.nodes.entry(n).or_insert(h);
        }
    }

    /// A node's status.
    pub fn status(&self, node: &str) -> Option<NodeStatus> {
        self.nodes.get(node).map(|h| h.status)
    }

    /// Where a user homed on `home` should have its session now: the home node, or its PRG
    /// peer once a failover move has started.
    pub fn target(&self, home: &str) -> String {
        self.redirect
            .get(home)
            .cloned()
            .unwrap_or_else(|| home.to_string())
    }

    /// Whether any node's users are redirected to its PRG peer now.
    pub fn any_redirect(&self) -> bool {
        !self.redirect.is_empty()
    }

    /// The component stream to `node` was lost at `now`.
    pub fn node_lost(&mut self, node: &str, now: Duration, rng: &mut impl Rng) {
        let Some(h) = self.nodes.get_mut(node) else {
            return;
        };
        if h.status == NodeStatus::Outage {
            return;
        }
        h.status = NodeStatus::Outage;
        h.since = now;
        let (peer, ha) = (h.peer.clone(), h.high_availability);
        // Nothing moves to a node that is down: not the fallback of its users, nor the
        // failover of its peer's (the peer's users wait for one of the two to return, explore
        // seed 7216). A fallback still waiting out its detection delay had happened on the
        // PRG already (the node took its users back): they are the node's now, lost with it,
        // so the peer no longer serves them. Kept, the stale redirect held the node in Outage
        // once its link came back, as if the peer still had them (explore seed 24793: a
        // bounce of imp-a-1 22 s after its fallback; a session never reopened).
        let falling_back = self.scheduled.iter().any(|m| m.to == node && m.fallback);
        self.scheduled.retain(|m| m.to != node);
        if falling_back {
            self.redirect.remove(node);
        }
        let Some(peer) = peer.filter(|_| ha) else {
            return;
        };
        // A peer failed over to `node` whose link is up is healthy (Failed Over): the PRG's
        // survivor takes its own users back and `node`'s over (spec 65; explore seed 28314:
        // a connector restarted while imp-a-3 was failed over, imp-a-3 back, imp-a-4 then lost
        // for good, six sessions left queued on it).
        if self.redirect.get(&peer).is_some_and(|to| to == node) && self.linked.contains(&peer) {
            self.node_back(&peer, now, rng);
            return;
        }
        if self.status(&peer) != Some(NodeStatus::Operational) {
            return;
        }
        let delay = self.detection_delay(rng);
        self.scheduled.push(Move {
            from: node.to_string(),
            to: peer,
            at: now + delay,
            fallback: false,
        });
    }

    /// The component stream to `node` is back at `now`. If its users were already moved to
    /// the peer, the PRG keeps them there until a fallback ([`Self::node_back`] when the peer
    /// releases them), so the node stays in Outage; otherwise, or if the peer that took them
    /// is down too, the outage is over. A peer of `node` still down with high availability
    /// is taken over by `node` as by any automatic failover ([`Self::taken_over_by`]).
    pub fn link_back(&mut self, node: &str, now: Duration, rng: &mut impl Rng) {
        self.linked.insert(node.to_string());
        let served_by_peer = self
            .redirect
            .get(node)
            .is_some_and(|p| self.status(p) == Some(NodeStatus::Operational));
        if !served_by_peer {
            self.node_back(node, now, rng);
        }
        self.taken_over_by(node, now, rng);
    }

    /// The component link to `node` was lost at `now`: the node is lost ([`Self::node_lost`]).
    pub fn link_lost(&mut self, node: &str, now: Duration, rng: &mut impl Rng) {
        self.linked.remove(node);
        self.node_lost(node, now, rng);
    }

    /// `node` is Operational again at `now` while its PRG peer is still down (its stream lost
    /// while `node` was down as well, so no failover was scheduled then): the PRG's survivor
    /// takes the peer's users over (spec 65: Taking Over, then Running in Backup Mode), and the
    /// connector moves their sessions after the detection delay, as after any failover (the
    /// guide: the connector "can respond to manual or automatic failover and fallback events
    /// on the IM and Presence nodes"; explore seed 7216).
    fn taken_over_by(&mut self, node: &str, now: Duration, rng: &mut impl Rng) {
        if self.status(node) != Some(NodeStatus::Operational) {
            return;
        }
        let down: Vec<String> = self
            .nodes
            .iter()
            .filter(|(n, h)| {
                h.status == NodeStatus::Outage
                    && h.high_availability
                    && h.peer.as_deref() == Some(node)
                    && !self.redirect.contains_key(n.as_str())
                    && !self.scheduled.iter().any(|m| !m.fallback && &m.from == *n)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for from in down {
            let delay = self.detection_delay(rng);
            self.scheduled.push(Move {
                from,
                to: node.to_string(),
                at: now + delay,
                fallback: false,
            });
        }
    }

    /// `node` serves its users again at `now` (its stream is back, or its PRG peer released
    /// them): schedule the fallback of its users. A peer in Outage meanwhile, whose users
    /// could not move to `node` while it was down, is taken over by `node`
    /// ([`Self::taken_over_by`]): a PRG that lost both nodes' heartbeats, where each took the
    /// other over and the peer gave `node`'s users back as it failed over itself (explore
    /// seed 17453).
    pub fn node_back(&mut self, node: &str, now: Duration, rng: &mut impl Rng) {
        let Some(h) = self.nodes.get_mut(node) else {
            return;
        };
        if h.status == NodeStatus::Operational {
            return;
        }
        h.status = NodeStatus::Operational;
        h.since = now;
        self.scheduled.retain(|m| m.from != node || m.fallback);
        if let Some(peer) = self.redirect.get(node).cloned() {
            let delay = self.detection_delay(rng);
            self.scheduled.push(Move {
                from: peer,
                to: node.to_string(),
                at: now + delay,
                fallback: true,
            });
        }
        self.taken_over_by(node, now, rng);
    }

    /// A node answered that `server` serves the users homed on `home` (a `redirect` naming
    /// it): the PRG failed `home` over while the connector was not looking (it started, or
    /// restarted, after the failover, so no lost stream or `see-other-host` told it). If
    /// `server` is `home`'s peer under high availability and nothing was known or decided
    /// about `home` yet, `home` is failed over from now on: Outage, its users go to `server`
    /// without a detection delay (the caller moves them at the migration rate), and the
    /// PRG's fallback brings them back as after any failover ([`Self::node_back`]). Returns
    /// whether this changed what [`Self::target`] answers.
    pub fn learned_failed_over(&mut self, home: &str, server: &str, now: Duration) -> bool {
        let Some(h) = self.nodes.get_mut(home) else {
            return false;
        };
        let known = h.status != NodeStatus::Operational
            || self.redirect.contains_key(home)
            || self
                .scheduled
                .iter()
                .any(|m| m.from == home || m.to == home);
        if known || !h.high_availability || h.peer.as_deref() != Some(server) {
            return false;
        }
        h.status = NodeStatus::Outage;
        h.since = now;
        self.redirect.insert(home.to_string(), server.to_string());
        true
    }

    /// A detection delay (spec 62: the connector "could take up to 15 minutes to start
    /// transitioning users"), drawn uniformly from `[0, detection_delay_max)`.
    fn detection_delay(&self, rng: &mut impl Rng) -> Duration {
        (self.detection_delay_max).mul_f64(rng.next_u32() as f64 / (u32::MAX as f64 + 1.0))
    }

    /// The next scheduled move time.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.scheduled.iter().map(|m| m.at).min()
    }

    /// Moves due at `now`, in schedule order. Each updates [`Self::target`].
    pub fn due(&mut self, now: Duration) -> Vec<Move> {
        let (due, later): (Vec<Move>, Vec<Move>) =
            self.scheduled.drain(..).partition(|m| m.at <= now);
        self.scheduled = later;
        for m in &due {
            if m.fallback {
                self.redirect.remove(&m.to);
            } else {
                self.redirect.insert(m.from.clone(), m.to.clone());
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::SeedableRng as _;

    fn pair(ha: bool) -> Failover {
        Failover::new(
            &[
                ("imp-a-1".into(), Some("imp-a-2".into()), ha),
                ("imp-a-2".into(), Some("imp-a-1".into()), ha),
            ],
            Duration::from_secs(900),
        )
    }

    #[test]
    fn failover_waits_the_detection_delay_then_redirects() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut f = pair(true);
        f.node_lost("imp-a-1", Duration::from_secs(100), &mut rng);
        assert_eq!(f.status("imp-a-1"), Some(NodeStatus::Outage));
        let at = f.poll_timeout().unwrap();
        assert!(at >= Duration::from_secs(100) && at <= Duration::from_secs(1000));
        assert_eq!(f.target("imp-a-1"), "imp-a-1", "not before the delay");
        let moves = f.due(at);
        assert_eq!(moves.len(), 1);
        assert_eq!(f.target("imp-a-1"), "imp-a-2");
        f.node_back("imp-a-1", at + Duration::from_secs(60), &mut rng);
        let back = f.due(f.poll_timeout().unwrap());
        assert!(back[0].fallback);
        assert_eq!(f.target("imp-a-1"), "imp-a-1");
    }

    #[test]
    fn a_link_back_after_the_move_waits_for_the_prg_fallback() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut f = pair(true);
        f.node_lost("imp-a-1", Duration::ZERO, &mut rng);
        let at = f.poll_timeout().unwrap();
        f.due(at);
        f.link_back("imp-a-1", at + Duration::from_secs(1), &mut rng);
        assert_eq!(
            f.status("imp-a-1"),
            Some(NodeStatus::Outage),
            "still failed over"
        );
        assert_eq!(f.poll_timeout(), None, "no fallback before the PRG's");
        f.node_back("imp-a-1", at + Duration::from_secs(2), &mut rng);
        assert_eq!(f.status("imp-a-1"), Some(NodeStatus::Operational));
        let back = f.due(f.poll_timeout().unwrap());
        assert_eq!((back[0].from.as_str(), back[0].fallback), ("imp-a-2", true));
    }

    #[test]
    fn a_link_back_before_the_move_cancels_it() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut f = pair(true);
        f.node_lost("imp-a-1", Duration::ZERO, &mut rng);
        f.link_back("imp-a-1", Duration::from_millis(1), &mut rng);
        assert_eq!(f.status("imp-a-1"), Some(NodeStatus::Operational));
        assert_eq!(f.poll_timeout(), None);
    }

    #[test]
    fn without_high_availability_nothing_moves() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut f = pair(false);
        f.node_lost("imp-a-1", Duration::ZERO, &mut rng);
        assert_eq!(f.poll_timeout(), None);
        assert_eq!(f.target("imp-a-1"), "imp-a-1");
    }

    #[test]
    fn a_redirect_to_the_peer_teaches_a_failover_and_the_prg_fallback_undoes_it() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut f = pair(true);
        let t = Duration::from_secs(420);
        assert!(
            !f.learned_failed_over("imp-a-1", "imp-a-3", t),
            "not its peer"
        );
        assert!(f.learned_failed_over("imp-a-1", "imp-a-2", t));
        assert_eq!(f.status("imp-a-1"), Some(NodeStatus::Outage));
        assert_eq!(
            f.target("imp-a-1"),
            "imp-a-2",
            "no detection delay: the answer is the detection"
        );
        assert_eq!(f.poll_timeout(), None, "no move to schedule");
        assert!(
            !f.learned_failed_over("imp-a-1", "imp-a-2", t),
            "already known"
        );
        // The peer gives the users back (see-other-host): the usual fallback.
        f.node_back("imp-a-1", t + Duration::from_secs(300), &mut rng);
        let back = f.due(f.poll_timeout().unwrap());
        assert_eq!((back[0].from.as_str(), back[0].fallback), ("imp-a-2", true));
        assert_eq!(f.target("imp-a-1"), "imp-a-1");
    }

    #[test]
    fn a_redirect_teaches_nothing_without_ha_or_while_a_move_is_pending() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut off = pair(false);
        assert!(!off.learned_failed_over("imp-a-1", "imp-a-2", Duration::ZERO));
        assert_eq!(
            off.target("imp-a-1"),
            "imp-a-1",
            "HA as discovered (spec 61)"
        );
        let mut f = pair(true);
        f.node_lost("imp-a-1", Duration::ZERO, &mut rng);
        assert!(
            !f.learned_failed_over("imp-a-1", "imp-a-2", Duration::from_secs(1)),
            "the detection delay of a seen failover still applies (spec 62)"
        );
        assert_eq!(f.target("imp-a-1"), "imp-a-1");
    }

    /// Explore seed 7216: imp-a-2 fails, its peer imp-a-1 fails for good before taking it
    /// over, imp-a-2 returns and takes imp-a-1 over (Running in Backup Mode).
    #[test]
    fn a_peer_back_while_the_node_is_still_down_takes_its_users_over() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut f = pair(true);
        f.node_lost("imp-a-2", Duration::from_secs(61), &mut rng);
        f.node_lost("imp-a-1", Duration::from_secs(75), &mut rng);
        assert_eq!(f.poll_timeout(), None, "no move to a node that is down");
        f.link_back("imp-a-2", Duration::from_secs(301), &mut rng);
        assert_eq!(f.status("imp-a-2"), Some(NodeStatus::Operational));
        let at = f.poll_timeout().expect("the peer takes the node over");
        let moves = f.due(at);
        assert_eq!(
            moves
                .iter()
                .map(|m| (m.from.as_str(), m.to.as_str(), m.fallback))
                .collect::<Vec<_>>(),
            vec![("imp-a-1", "imp-a-2", false)]
        );
        assert_eq!(f.target("imp-a-1"), "imp-a-2");
        assert_eq!(f.target("imp-a-2"), "imp-a-2");
    }

    /// The same after the move to the peer happened: the node back takes its own users back
    /// and the peer's over, since the peer that served them is down.
    #[test]
    fn a_node_back_whose_peer_is_down_takes_its_users_back() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut f = pair(true);
        f.node_lost("imp-a-2", Duration::ZERO, &mut rng);
        f.due(f.poll_timeout().unwrap());
        assert_eq!(f.target("imp-a-2"), "imp-a-1");
        f.node_lost("imp-a-1", Duration::from_secs(200), &mut rng);
        f.link_back("imp-a-2", Duration::from_secs(300), &mut rng);
        assert_eq!(f.status("imp-a-2"), Some(NodeStatus::Operational));
        let moves = every_move(&mut f);
        assert_eq!(moves.len(), 2, "{moves:?}");
        assert_eq!(f.target("imp-a-1"), "imp-a-2");
        assert_eq!(f.target("imp-a-2"), "imp-a-2");
    }

    /// Split brain in a PRG (explore seed 17453): imp-a-2 was failed over to imp-a-1 when the
    /// connector started, and learned so from a redirect. Then the two lost each other's
    /// heartbeats and imp-a-2 took imp-a-1 over: imp-a-1 ended every session it served with
    /// `see-other-host`, its own users' (a failover of imp-a-1, noticed while imp-a-2 still
    /// counted as Outage, so nothing could move there) and imp-a-2's (given back). imp-a-2
    /// serving again is its peer's takeover too: imp-a-1's users go to imp-a-2 after the
    /// detection delay, whichever of the two signals comes first.
    #[test]
    fn a_node_given_its_users_back_while_its_peer_failed_over_takes_the_peer_over() {
        for own_first in [true, false] {
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            let mut f = pair(true);
            assert!(f.learned_failed_over("imp-a-2", "imp-a-1", Duration::from_secs(382)));
            let at = Duration::from_secs(513);
            if own_first {
                f.node_lost("imp-a-1", at, &mut rng);
                f.node_back("imp-a-2", at, &mut rng);
            } else {
                f.node_back("imp-a-2", at, &mut rng);
                f.node_lost("imp-a-1", at, &mut rng);
            }
            let moves = every_move(&mut f);
            let mut moves: Vec<_> = (moves.iter())
                .map(|m| (m.from.as_str(), m.to.as_str(), m.fallback))
                .collect();
            moves.sort();
            let expected = vec![("imp-a-1", "imp-a-2", false), ("imp-a-1", "imp-a-2", true)];
            assert_eq!(
                moves, expected,
                "own users' see-other-host first: {own_first}"
            );
            assert_eq!(f.target("imp-a-1"), "imp-a-2");
            assert_eq!(f.target("imp-a-2"), "imp-a-2");
        }
    }

    /// Explore seed 28314: exp-a-2 restarted while imp-a-3 was failed over to imp-a-4 (it
    /// learned so from a redirect); imp-a-3 came back healthy, its users kept on imp-a-4
    /// (Failed Over), and then imp-a-4 failed for good. Under high availability imp-a-3 took
    /// both nodes' users (Taking Over, then Running in Backup Mode), but the connector
    /// scheduled nothing: the peer counted as Outage, so nothing could move to it, and six
    /// sessions stayed queued on the dead node. A peer whose link is up, failed over to the
    /// node lost, takes its own users back and the lost node's over.
    #[test]
    fn a_failed_over_node_whose_link_is_up_takes_everything_when_its_peer_is_lost() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut f = pair(true);
        assert!(f.learned_failed_over("imp-a-1", "imp-a-2", Duration::from_secs(213)));
        f.link_back("imp-a-1", Duration::from_secs(223), &mut rng);
        assert_eq!(
            f.status("imp-a-1"),
            Some(NodeStatus::Outage),
            "its users on the peer"
        );
        assert_eq!(f.target("imp-a-1"), "imp-a-2");
        f.link_lost("imp-a-2", Duration::from_secs(270), &mut rng);
        let moves = every_move(&mut f);
        let mut moves: Vec<_> = (moves.iter())
            .map(|m| (m.from.as_str(), m.to.as_str(), m.fallback))
            .collect();
        moves.sort();
        let expected = vec![("imp-a-2", "imp-a-1", false), ("imp-a-2", "imp-a-1", true)];
        assert_eq!(moves, expected);
        assert_eq!(f.target("imp-a-1"), "imp-a-1");
        assert_eq!(f.target("imp-a-2"), "imp-a-1");
        // Its link down as well, nothing moves (explore seed 7216).
        let mut f = pair(true);
        assert!(f.learned_failed_over("imp-a-1", "imp-a-2", Duration::from_secs(213)));
        f.link_lost("imp-a-2", Duration::from_secs(270), &mut rng);
        assert!(every_move(&mut f).is_empty());
    }

    /// Explore seed 24793: imp-a-1 fell back (its users back on it, the connector's
    /// fallback waiting out its detection delay) and bounced 22 s later. The pending fallback
    /// was dropped with the loss, but the redirect to imp-a-2 stayed, so when imp-a-1's link
    /// came back the connector took the peer to serve its users still and kept imp-a-1 in
    /// Outage for good: a session closed by the fallback never reopened. The users are
    /// imp-a-1's once it took them back: lost with it, back with its link.
    #[test]
    fn a_node_lost_during_its_fallback_delay_serves_its_users_once_back() {
        let mut rng = ChaCha8Rng::seed_from_u64(10);
        let mut f = pair(true);
        assert!(f.learned_failed_over("imp-a-1", "imp-a-2", Duration::from_secs(155)));
        assert_eq!(f.target("imp-a-1"), "imp-a-2");
        f.node_back("imp-a-1", Duration::from_secs(340), &mut rng);
        f.node_lost("imp-a-1", Duration::from_secs(362), &mut rng);
        f.link_back("imp-a-1", Duration::from_secs(363), &mut rng);
        assert_eq!(f.status("imp-a-1"), Some(NodeStatus::Operational));
        assert_eq!(f.target("imp-a-1"), "imp-a-1");
        let moves = every_move(&mut f);
        assert!(moves.is_empty(), "{moves:?}");
        assert_eq!(f.target("imp-a-1"), "imp-a-1");
    }

    /// Every move `f` has scheduled, each taken when due.
    fn every_move(f: &mut Failover) -> Vec<Move> {
        let mut moves = Vec::new();
        while let Some(at) = f.poll_timeout() {
            moves.extend(f.due(at));
        }
        moves
    }

    #[test]
    fn same_seed_same_delay() {
        let delay = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut f = pair(true);
            f.node_lost("imp-a-1", Duration::ZERO, &mut rng);
            f.poll_timeout().unwrap()
        };
        assert_eq!(delay(5), delay(5));
        assert_ne!(delay(5), delay(6));
    }
}
