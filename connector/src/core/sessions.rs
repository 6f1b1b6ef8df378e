//! Per-user IM&P sessions of one connector node, opened over the component link (the session
//! protocol is in docs/protocols.md, "Connector ↔ IM&P: XEP-0114 component").
//!
//! A user the cloud assigned to this node, and who wants a session (active on Webex within
//! 72 h, or hidden: [`super::presence::wants_session`]), gets one session on their home IM&P
//! node, opened with an IQ on the component link:
//!
//! ```xml
//! <iq type='set' id='s-17' from='connector' to='imp-a-1'>
//!   <session xmlns='urn:hmsim:hybrid-session:0' action='start' jid='alice@example.com/hm-webex'/>
//! </iq>
//! ```
//!
//! Opens go through a [`TokenBucket`] (the node's session-creation budget, and after a
//! failover the migration rate of spec 62). A `resource-constraint` answer puts the user in
//! seeded backoff. A `redirect` naming another known node (the one serving the user after a
//! PRG failover the connector did not see) is followed there, at most
//! [`REDIRECTS_FOLLOWED_MAX`] times in a row and with backoff after the first, and reported
//! ([`SessionManager::poll_redirected`]); a `redirect` to a session moving after a failover is
//! retried instead (the target may not have taken the user over yet), at most
//! [`REDIRECTED_WHILE_MOVING_MAX`] times, then followed. A `redirect` naming a node whose link is
//! down is not followed but asked again at the node that answered, with backoff (that node may
//! take its silent peer's users over, spec 65); any other error marks the session failed, with the
//! condition kept for the status page. Losing a node's component link closes every session on it: they are queued
//! again, and open as soon as the link (or, after a failover, the user's new node) is back.
//!
//! Grammar: `want`/`unwant`/`retarget`/`node_up`/`node_down` and `handle_iq` are inputs,
//! [`SessionManager::poll_command`] yields IQs to send, [`SessionManager::poll_timeout`] /
//! [`SessionManager::handle_timeout`] drive timers. Time is always an argument.

use super::limiter::{Backoff, TokenBucket};
use crate::proto::xml::Element;
use crate::proto::xmpp::{self, NS_COMPONENT, NS_HM_SESSION};
use rand_core::Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// The resource of every connector session: the user's "Webex device" in IM&P.
pub const SESSION_RESOURCE: &str = "hm-webex";
/// An open request unanswered for this long is abandoned and retried (the node may have lost
/// it with a dead stream).
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(60);
/// Backoff bounds after `resource-constraint`.
pub const BACKOFF_MIN: Duration = Duration::from_secs(5);
/// Upper bound of the backoff.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Session IQs in flight at once per manager: bounds the node's pending table and keeps a
/// burst of opens from flooding one component stream.
pub const IN_FLIGHT_MAX: usize = 256;
/// Session moves kept for observers (oldest forgotten first): a Large node's 15,000 sessions
/// failing over and back several times fit.
pub const MOVES_KEPT_MAX: usize = 100_000;
/// `redirect` answers naming another node that one user's open follows in a row before the
/// session is failed for good: bounds a ping-pong between two nodes whose PRG views disagree.
/// Every follow after the first waits the seeded backoff (5 s doubling to 300 s), so the
/// follows span about ten minutes: longer than a PRG takes to converge (15 s heartbeats,
/// 60 s timeout, 120 s initialisation).
pub const REDIRECTS_FOLLOWED_MAX: u32 = 8;
/// `redirect` answers to a moving session retried (the target has not taken the user over
/// yet) before the redirect is taken as the answer and followed to the node it names: a PRG
/// that gave the users back, or never took them over, would otherwise be asked for good
/// (explore seed 2289). Six retries wait at least 157 s (5 s doubling, jittered down to 50 %),
/// over twice the 60 s heartbeat timeout after which a peer takes a silent node over (spec 65).
pub const REDIRECTED_WHILE_MOVING_MAX: u32 = 6;
/// How long a session the cloud moved to another connector node stays open here for the new
/// node to take it over (make-before-break, spec 29): the new node first asks the user's
/// presence and opens at its session rate, and whatever IM&P routes to the session meanwhile
/// must still be bridged from here. Half the cloud's grace for posts from the old node
/// (`fakes::cloud::RELEASE_GRACE`, 120 s), so that what arrives at the end of the window still
/// has a minute to be posted.
pub const HANDOVER_MAX: Duration = Duration::from_secs(60);

/// Where a user's session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    /// Wanted, waiting for a token or for the node's link.
    Queued,
    /// Start IQ sent.
    Opening {
        /// IQ id.
        iq: String,
        /// When it was sent.
        since: Duration,
    },
    /// Open on the node.
    Open,
    /// Refused with `resource-constraint`: retry at `until`.
    Backoff {
        /// Retry time.
        until: Duration,
    },
    /// Refused for good (unknown user, wrong node); `condition` is the stanza error.
    Failed {
        /// The XMPP error condition.
        condition: String,
    },
}

impl SessionState {
    /// Whether the session failed for good with the stanza error `condition`.
    pub fn failed_with(&self, condition: &str) -> bool {
        matches!(self, SessionState::Failed { condition: c } if c == condition)
    }
}

#[derive(Debug)]
struct UserSession {
    jid: String,
    node: String,
    state: SessionState,
    backoff: Backoff,
    /// The node the session was last open on: reopening elsewhere is a move.
    last_open: Option<String>,
    /// Retargeted and not yet open: the target may not have taken the user over yet (a PRG
    /// peer waits its heartbeat timeout), so a `redirect` then is retried, not final.
    moving: bool,
    /// `redirect`s followed since the session was last open ([`REDIRECTS_FOLLOWED_MAX`]).
    redirects: u32,
    /// `redirect`s retried since the move began ([`REDIRECTED_WHILE_MOVING_MAX`]).
    moving_redirects: u32,
    /// The node the owner asked for when a `redirect` from it sent the session elsewhere:
    /// the owner asking for that node again ([`SessionManager::want`], every presence poll)
    /// is the same wish, already answered by the node itself, not a move back to it (which
    /// it would refuse again, forever: explore seeds 2476, 2497). Cleared by an explicit
    /// move ([`SessionManager::retarget`]).
    redirected_from: Option<String>,
    /// The node the last `redirect` refusing this session named, followed or not: a session
    /// that failed on a redirect to a node whose link was not up follows it once the link is
    /// ([`SessionManager::node_up`], explore seed 28367).
    redirected_to: Option<String>,
}

/// An open that a node refused with `redirect` naming the node serving the user now (a PRG
/// failover the connector did not see, e.g. it started while the home node was failed over),
/// followed there: how the owner learns the PRG's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirected {
    /// The user (email).
    pub user: String,
    /// The node that refused.
    pub from: String,
    /// The node it named, where the open goes now.
    pub to: String,
}

/// A session that opened on another node than the one it was last open on (failover,
/// fallback): what the migration check measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMove {
    /// The user (email).
    pub user: String,
    /// The node it was open on before.
    pub from: String,
    /// The node it is open on now.
    pub to: String,
    /// When it opened there.
    pub at: Duration,
}

/// An open session of a user the cloud moved away, kept until another connector node takes
/// it over or [`HANDOVER_MAX`] passes ([`SessionManager::release`]).
#[derive(Debug)]
struct Handover {
    jid: String,
    node: String,
    until: Duration,
}

/// An IQ to send on the component link to `node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Target IM&P node host.
    pub node: String,
    /// The IQ.
    pub iq: Element,
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Start IQs sent.
    pub opens_sent: u64,
    /// Sessions opened.
    pub opened: u64,
    /// Sessions closed by the connector.
    pub closed: u64,
    /// `resource-constraint` refusals.
    pub refused_rate: u64,
    /// Other refusals.
    pub failed: u64,
    /// Opens that timed out.
    pub timeouts: u64,
    /// Sessions lost with a node's link.
    pub lost_with_node: u64,
    /// `redirect` answers to a moving session, retried with backoff.
    pub redirected_while_moving: u64,
    /// `redirect` answers naming another node, followed there.
    pub redirects_followed: u64,
    /// `redirect` answers naming a known node whose link is down, asked again at the node
    /// that answered after the backoff.
    pub redirected_to_unreachable: u64,
    /// Released sessions another connector node took over.
    pub handovers_taken_over: u64,
    /// Released sessions closed here because nobody took them over within [`HANDOVER_MAX`].
    pub handovers_expired: u64,
}

/// The session table of one connector node.
pub struct SessionManager {
    component: String,
    users: BTreeMap<String, UserSession>,
    /// Released sessions waiting to be taken over, by user; a user is never in both this and
    /// `users`, so it is bounded by the session table.
    handovers: BTreeMap<String, Handover>,
    /// Users waiting for a token, in the order they became ready.
    queue: VecDeque<String>,
    pending: BTreeMap<String, String>,
    nodes_up: BTreeSet<String>,
    /// Every node whose link was ever up: a redirect is followed only to one of them.
    nodes_known: BTreeSet<String>,
    /// Redirects followed, for [`SessionManager::poll_redirected`].
    redirected: VecDeque<Redirected>,
    bucket: TokenBucket,
    out: VecDeque<Command>,
    /// Users whose session just opened, for [`SessionManager::poll_opened`].
    opened: VecDeque<String>,
    next_iq: u64,
    stats: SessionStats,
    /// The latest moves, at most [`MOVES_KEPT_MAX`].
    moves: VecDeque<SessionMove>,
    /// (deadline, user) of opens and backoffs, so that timers cost O(log n), not a scan of
    /// every user. Entries are not removed when a state changes: an entry counts only while
    /// the user's state still has that deadline ([`SessionManager::deadline_of`]).
    timers: BTreeSet<(Duration, String)>,
    /// Moves since the manager was created (kept or not).
    moves_total: u64,
    /// Users whose session opened or stopped being open since the last
    /// [`SessionManager::take_open_changes`]: observers follow sessions without scanning
    /// every user. At most one entry per user, so bounded by the session table.
    open_changed: BTreeSet<String>,
    /// Wanted users whose session is queued, opening or in backoff ([`Self::pending_opens`]),
    /// kept by [`set_state`] and where users come and go: counting them walked every user on
    /// every timer during a migration.
    unsettled: usize,
    /// The last pump stopped for want of a token while a queued user could open: only then
    /// is the bucket a timer (users queued for a node that is down wait for its link, and a
    /// timer for them would fire at once, forever).
    bucket_wait: bool,
}

impl SessionManager {
    /// A manager whose component JID is `component`, opening at most `bucket`'s rate.
    pub fn new(component: &str, bucket: TokenBucket) -> Self {
        Self {
            component: component.to_string(),
            users: BTreeMap::new(),
            handovers: BTreeMap::new(),
            queue: VecDeque::new(),
            pending: BTreeMap::new(),
            nodes_up: BTreeSet::new(),
            nodes_known: BTreeSet::new(),
            redirected: VecDeque::new(),
            bucket,
            out: VecDeque::new(),
            opened: VecDeque::new(),
            next_iq: 0,
            stats: SessionStats::default(),
            moves: VecDeque::new(),
            timers: BTreeSet::new(),
            moves_total: 0,
            open_changed: BTreeSet::new(),
            unsettled: 0,
            bucket_wait: false,
        }
    }

    /// Replaces the rate limit (e.g. the migration rate after a failover).
    pub fn set_bucket(&mut self, bucket: TokenBucket) {
        self.bucket = bucket;
    }

    /// Counters.
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// The state of a user's session, if the user is wanted.
    pub fn state(&self, user: &str) -> Option<&SessionState> {
        self.users.get(user).map(|u| &u.state)
    }

    /// Open sessions per IM&P node.
    pub fn open_per_node(&self) -> BTreeMap<String, usize> {
        // Counted under borrowed names, owned once per node: a name cloned per open session
        // cost 15,000 allocations a sample on a Large node.
        let mut m: BTreeMap<&str, usize> = BTreeMap::new();
        for u in self.users.values() {
            if u.state == SessionState::Open {
                *m.entry(u.node.as_str()).or_insert(0) += 1;
            }
        }
        m.into_iter().map(|(n, c)| (n.to_owned(), c)).collect()
    }

    /// The full JID of a user's session.
    pub fn session_jid(bare: &str) -> String {
        format!("{bare}/{SESSION_RESOURCE}")
    }

    /// The user (key, usually the email) whose bare JID is `bare`, if wanted.
    pub fn user_by_jid(&self, bare: &str) -> Option<&str> {
        self.users
            .iter()
            .find(|(_, u)| u.jid == bare)
            .map(|(k, _)| k.as_str())
    }

    /// The user should have a session on `node`. Idempotent.
    pub fn want(&mut self, user: &str, bare_jid: &str, node: &str, now: Duration) {
        if self.resume_handover(user, node) {
            return;
        }
        if let Some(u) = self.users.get_mut(user) {
            // A session the node itself sent elsewhere stays there while it lives; once it
            // failed (the serving node gave the user back) the node is asked again.
            let sent_away = u.redirected_from.as_deref() == Some(node)
                && !matches!(u.state, SessionState::Failed { .. });
            if u.node == node || sent_away {
                // Another connector node took the session over while the cloud still gives
                // the user to this one (assignments settling after a node came back): open
                // it again, or nobody would hold it once the other node lets go.
                if u.state.failed_with(xmpp::SESSION_TAKEN_OVER) {
                    set_state(
                        &mut self.open_changed,
                        &mut self.unsettled,
                        user,
                        u,
                        SessionState::Queued,
                    );
                    if !self.queue.iter().any(|q| q == user) {
                        self.queue.push_back(user.to_string());
                    }
                    self.pump(now);
                }
                return;
            }
            self.retarget(user, node, now);
            return;
        }
        self.users.insert(
            user.to_string(),
            UserSession {
                jid: bare_jid.to_string(),
                node: node.to_string(),
                state: SessionState::Queued,
                backoff: Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
                last_open: None,
                moving: false,
                redirects: 0,
                moving_redirects: 0,
                redirected_from: None,
                redirected_to: None,
            },
        );
        self.unsettled += 1;
        self.queue.push_back(user.to_string());
        self.pump(now);
    }

    /// The user should no longer have a session (inactive for 72 h, the connector disabled):
    /// it is closed at once.
    pub fn unwant(&mut self, user: &str, now: Duration) {
        self.end_handover(user);
        let Some(u) = self.users.remove(user) else {
            return;
        };
        if !settled(&u.state) {
            self.unsettled -= 1;
        }
        if u.state == SessionState::Open {
            self.open_changed.insert(user.to_string());
        }
        self.queue.retain(|q| q != user);
        if matches!(u.state, SessionState::Open | SessionState::Opening { .. })
            && self.nodes_up.contains(&u.node)
        {
            self.stats.closed += 1;
            let iq = self.session_iq("stop", &u.jid, &u.node);
            self.out.push_back(Command { node: u.node, iq });
        }
        self.pump(now);
    }

    /// Every session, open, handing over or wanted, is closed (the connector is disabled).
    pub fn unwant_all(&mut self, now: Duration) {
        let users: Vec<String> = self
            .users
            .keys()
            .chain(self.handovers.keys())
            .cloned()
            .collect();
        for u in users {
            self.unwant(&u, now);
        }
    }

    /// The cloud moved the user to another connector node (spec 28, 29): an open session
    /// stays open for that node to take over (make-before-break), so a message IM&P routes to
    /// it meanwhile is still bridged from here; it is closed after [`HANDOVER_MAX`] if nobody
    /// took it over. A session that is not open is closed at once, as by [`Self::unwant`].
    pub fn release(&mut self, user: &str, now: Duration) {
        let open = self
            .users
            .get(user)
            .is_some_and(|u| u.state == SessionState::Open && self.nodes_up.contains(&u.node));
        if !open {
            self.unwant(user, now);
            return;
        }
        let u = self.users.remove(user).expect("checked above");
        // No longer this node's session to report, though it stays open on IM&P a while.
        self.open_changed.insert(user.to_string());
        let until = now + HANDOVER_MAX;
        self.timers.insert((until, user.to_string()));
        let (jid, node) = (u.jid, u.node);
        self.handovers
            .insert(user.to_string(), Handover { jid, node, until });
    }

    /// Every session is released ([`Self::release`]): Control Hub maintenance mode.
    pub fn release_all(&mut self, now: Duration) {
        let users: Vec<String> = self.users.keys().cloned().collect();
        for u in users {
            self.release(&u, now);
        }
    }

    /// Users whose released session is still open here, waiting to be taken over.
    pub fn handovers(&self) -> usize {
        self.handovers.len()
    }

    /// The node of the user's released session, while it is still open here: what the owner
    /// had in flight for the user (a Webex message decrypted late) can still be sent on it.
    pub fn handover_node(&self, user: &str) -> Option<&str> {
        self.handovers.get(user).map(|h| h.node.as_str())
    }

    /// The user is wanted again while their released session is still open: on the same node
    /// it simply stays (returns true); on another node it is closed first.
    fn resume_handover(&mut self, user: &str, node: &str) -> bool {
        let Some(h) = self.handovers.get(user) else {
            return false;
        };
        if h.node != node || !self.nodes_up.contains(node) {
            self.end_handover(user);
            return false;
        }
        let h = self.handovers.remove(user).expect("checked above");
        self.open_changed.insert(user.to_string());
        let session = UserSession {
            jid: h.jid,
            node: h.node.clone(),
            state: SessionState::Open,
            backoff: Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
            last_open: Some(h.node),
            moving: false,
            redirects: 0,
            moving_redirects: 0,
            redirected_from: None,
            redirected_to: None,
        };
        self.users.insert(user.to_string(), session);
        true
    }

    /// Closes the user's released session now, if there is one.
    fn end_handover(&mut self, user: &str) {
        let Some(h) = self.handovers.remove(user) else {
            return;
        };
        if self.nodes_up.contains(&h.node) {
            self.stats.closed += 1;
            let iq = self.session_iq("stop", &h.jid, &h.node);
            self.out.push_back(Command { node: h.node, iq });
        }
    }

    /// Moves a user's session to another node (failover, fallback): closes the old one if
    /// its node is reachable, queues an open on the new one.
    pub fn retarget(&mut self, user: &str, node: &str, now: Duration) {
        let Some(u) = self.users.get_mut(user) else {
            return;
        };
        if u.node == node {
            return;
        }
        let old = std::mem::replace(&mut u.node, node.to_string());
        let was_live = matches!(u.state, SessionState::Open | SessionState::Opening { .. });
        set_state(
            &mut self.open_changed,
            &mut self.unsettled,
            user,
            u,
            SessionState::Queued,
        );
        u.moving = true;
        u.moving_redirects = 0;
        u.redirected_from = None;
        u.backoff.reset();
        let jid = u.jid.clone();
        if was_live && self.nodes_up.contains(&old) {
            let iq = self.session_iq("stop", &jid, &old);
            self.out.push_back(Command { node: old, iq });
        }
        if !self.queue.iter().any(|q| q == user) {
            self.queue.push_back(user.to_string());
        }
        self.pump(now);
    }

    /// The component link to `node` is up (again).
    pub fn node_up(&mut self, node: &str, now: Duration) {
        self.nodes_up.insert(node.to_string());
        self.nodes_known.insert(node.to_string());
        self.follow_failed_redirects(node);
        self.pump(now);
    }

    /// Sessions that failed on a `redirect` naming `node` while its link was not up (a
    /// redirect to a node never linked is final) follow it now, within
    /// [`REDIRECTS_FOLLOWED_MAX`]: the node a PRG peer keeps naming is back (explore seed
    /// 28367: imp-a-1 down from exp-a-1's start, its users' sessions failed on imp-a-2's
    /// redirects to it, and nothing asked again once it was back).
    fn follow_failed_redirects(&mut self, node: &str) {
        let named = |u: &UserSession| {
            u.redirected_to.as_deref() == Some(node)
                && u.node != node
                && u.redirects < REDIRECTS_FOLLOWED_MAX
                && u.state.failed_with("redirect")
        };
        let users: Vec<String> = (self.users.iter())
            .filter(|(_, u)| named(u))
            .map(|(k, _)| k.clone())
            .collect();
        for k in users {
            let Some(u) = self.users.get_mut(&k) else {
                continue;
            };
            u.redirects += 1;
            u.moving = false;
            let from = std::mem::replace(&mut u.node, node.to_string());
            u.redirected_from.get_or_insert(from);
            let (ch, un) = (&mut self.open_changed, &mut self.unsettled);
            set_state(ch, un, &k, u, SessionState::Queued);
            if !self.queue.contains(&k) {
                self.queue.push_back(k);
            }
        }
    }

    /// The component link to `node` is gone: its sessions are lost and queued again.
    pub fn node_down(&mut self, node: &str, now: Duration) {
        self.nodes_up.remove(node);
        // Released sessions there ended with the link: nothing is left to hand over.
        self.handovers.retain(|_, h| h.node != node);
        let lost: Vec<String> = self
            .users
            .iter()
            .filter(|(_, u)| {
                u.node == node
                    && !matches!(u.state, SessionState::Queued | SessionState::Failed { .. })
            })
            .map(|(k, _)| k.clone())
            .collect();
        // Answers from a dead link never come: free their in-flight slots.
        self.pending.retain(|_, u| !lost.contains(u));
        for k in lost {
            if let Some(u) = self.users.get_mut(&k) {
                if u.state == SessionState::Open {
                    self.stats.lost_with_node += 1;
                }
                set_state(
                    &mut self.open_changed,
                    &mut self.unsettled,
                    &k,
                    u,
                    SessionState::Queued,
                );
            }
            if !self.queue.contains(&k) {
                self.queue.push_back(k);
            }
        }
        self.pump(now);
    }

    /// An IQ result or error from a node. Returns false if it was not one of ours.
    pub fn handle_iq(&mut self, iq: &Element, now: Duration, rng: &mut impl Rng) -> bool {
        let Some(id) = iq.attr("id") else {
            return false;
        };
        let Some(user) = self.pending.remove(id) else {
            return false;
        };
        let Some(u) = self.users.get_mut(&user) else {
            return true;
        };
        if !matches!(&u.state, SessionState::Opening { iq, .. } if iq == id) {
            return true; // a stale answer for a superseded attempt
        }
        match iq.attr("type") {
            Some("result") => {
                set_state(
                    &mut self.open_changed,
                    &mut self.unsettled,
                    &user,
                    u,
                    SessionState::Open,
                );
                u.backoff.reset();
                u.moving = false;
                u.redirects = 0;
                let from = u.last_open.replace(u.node.clone());
                let to = u.node.clone();
                self.stats.opened += 1;
                self.opened.push_back(user.clone());
                if let Some(from) = from.filter(|f| *f != to) {
                    self.record_move(SessionMove {
                        user,
                        from,
                        to,
                        at: now,
                    });
                }
            }
            _ => self.refused(user, iq, now, rng),
        }
        self.pump(now);
        true
    }

    /// An open refused with a stanza error: retry after a backoff (`resource-constraint`, a
    /// `redirect` while moving: the target has not taken the user over yet, or a `redirect`
    /// naming a node whose link is down), follow a `redirect` that names another known node,
    /// or fail for good.
    fn refused(&mut self, user: String, iq: &Element, now: Duration, rng: &mut impl Rng) {
        let condition = xmpp::error_condition(iq).unwrap_or("undefined-condition");
        let Some(u) = self.users.get_mut(&user) else {
            return;
        };
        note_redirect(u, condition, iq);
        let (ch, un) = (&mut self.open_changed, &mut self.unsettled);
        let named = (condition == "redirect")
            .then(|| redirect_target(iq))
            .flatten()
            .filter(|to| *to != u.node && self.nodes_known.contains(to));
        // A node that cannot be reached now cannot open the session: following it parked the
        // user on a dead link for good, while the node that answered (a restarted PRG node
        // still initialising, spec 65) took its silent peer's users over two minutes later
        // (explore seed 8742). Asked again after the backoff, that node either serves the
        // user or names the peer again, followed once its link is up.
        let unreachable = named.as_ref().is_some_and(|to| !self.nodes_up.contains(to));
        // A moving session's redirect is retried while the target may still take the user
        // over; after that it is the answer, followed like any other.
        let answered = !u.moving || u.moving_redirects >= REDIRECTED_WHILE_MOVING_MAX;
        let follow =
            named.filter(|_| answered && !unreachable && u.redirects < REDIRECTS_FOLLOWED_MAX);
        if let Some(to) = follow {
            self.stats.redirects_followed += 1;
            u.redirects += 1;
            u.moving = false;
            let from = std::mem::replace(&mut u.node, to.clone());
            u.redirected_from.get_or_insert_with(|| from.clone());
            // The first follow goes at once; a node naming yet another one waits its turn.
            if u.redirects == 1 {
                set_state(ch, un, &user, u, SessionState::Queued);
                if !self.queue.iter().any(|q| *q == user) {
                    self.queue.push_back(user.clone());
                }
            } else {
                let until = now + u.backoff.next_delay(rng);
                set_state(ch, un, &user, u, SessionState::Backoff { until });
                self.timers.insert((until, user.clone()));
            }
            self.redirected.push_back(Redirected { user, from, to });
        } else if condition == "resource-constraint"
            || (condition == "redirect" && !answered)
            || unreachable
        {
            // Every redirect the moving target answers counts toward its retries, whether or
            // not the node it names can be reached: the PRG had that time to converge either
            // way. Uncounted, a move whose target named a node down for minutes began its
            // retries afresh once that node was back, at backoffs of minutes (explore seed
            // 11585: still retrying at the end of the run).
            if condition == "redirect" && u.moving {
                u.moving_redirects += 1;
            }
            if unreachable {
                self.stats.redirected_to_unreachable += 1;
            } else if condition == "redirect" {
                self.stats.redirected_while_moving += 1;
            } else {
                self.stats.refused_rate += 1;
            }
            let until = now + u.backoff.next_delay(rng);
            set_state(ch, un, &user, u, SessionState::Backoff { until });
            self.timers.insert((until, user));
        } else {
            self.stats.failed += 1;
            let failed = SessionState::Failed {
                condition: condition.to_string(),
            };
            set_state(ch, un, &user, u, failed);
        }
    }

    /// A followed redirect since the last call (drained by the owner after each answer; at
    /// most [`REDIRECTS_FOLLOWED_MAX`] per wanted user between two opens).
    pub fn poll_redirected(&mut self) -> Option<Redirected> {
        self.redirected.pop_front()
    }

    /// The next timer deadline, if any.
    pub fn poll_timeout(&mut self, now: Duration) -> Option<Duration> {
        let mut next: Option<Duration> = None;
        let mut consider = |t: Duration| next = Some(next.map_or(t, |n| n.min(t)));
        // Entries whose user has since moved on are dropped as they surface.
        while let Some((t, user)) = self.timers.first() {
            if self.deadline_of(user) == Some(*t) {
                consider(*t);
                break;
            }
            self.timers.pop_first();
        }
        if self.bucket_wait && self.pending.len() < IN_FLIGHT_MAX {
            consider(self.bucket.next_available(now).max(now));
        }
        next
    }

    /// Timers due at `now`: backoffs end, opens time out, queued users get tokens.
    pub fn handle_timeout(&mut self, now: Duration) {
        let mut requeue = Vec::new();
        while let Some((t, k)) = self.timers.first().cloned() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            if self.deadline_of(&k) != Some(t) {
                continue; // superseded: the user's state changed since
            }
            if self.handovers.contains_key(&k) {
                self.stats.handovers_expired += 1;
                self.end_handover(&k);
                continue;
            }
            let Some(u) = self.users.get_mut(&k) else {
                continue;
            };
            if matches!(u.state, SessionState::Opening { .. }) {
                self.stats.timeouts += 1;
            }
            set_state(
                &mut self.open_changed,
                &mut self.unsettled,
                &k,
                u,
                SessionState::Queued,
            );
            requeue.push(k);
        }
        for k in requeue {
            self.pending.retain(|_, v| *v != k);
            if !self.queue.contains(&k) {
                self.queue.push_back(k);
            }
        }
        self.pump(now);
    }

    /// When `user`'s current state times out: an open unanswered, or a backoff ending.
    fn deadline_of(&self, user: &str) -> Option<Duration> {
        let Some(u) = self.users.get(user) else {
            return self.handovers.get(user).map(|h| h.until);
        };
        match u.state {
            SessionState::Opening { since, .. } => Some(since + OPEN_TIMEOUT),
            SessionState::Backoff { until } => Some(until),
            _ => None,
        }
    }

    /// A user whose session opened since the last call.
    pub fn poll_opened(&mut self) -> Option<String> {
        self.opened.pop_front()
    }

    /// Users waiting to open (queued, in backoff or opening).
    pub fn pending_opens(&self) -> usize {
        self.unsettled
    }

    /// The node a user's session is (or will be) on.
    pub fn node_of(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(|u| u.node.as_str())
    }

    /// Wanted users, sorted.
    pub fn users(&self) -> impl Iterator<Item = &String> {
        self.users.keys()
    }

    /// Whether the user's session here ended because another connector node took it over
    /// ([`crate::proto::xmpp::SESSION_TAKEN_OVER`]) and nobody asked for it since.
    pub fn taken_over(&self, user: &str) -> bool {
        (self.users.get(user)).is_some_and(|u| u.state.failed_with(xmpp::SESSION_TAKEN_OVER))
    }

    /// The node ended a session on its side (a Jabber client took the resource): it is
    /// failed with `condition` until wanted again. A released session that ends was taken
    /// over (or lost): nothing is left to close.
    pub fn ended_by_node(&mut self, user: &str, condition: &str) {
        if self.handovers.remove(user).is_some() {
            if condition == xmpp::SESSION_TAKEN_OVER {
                self.stats.handovers_taken_over += 1;
            }
            return;
        }
        if let Some(u) = self.users.get_mut(user) {
            let failed = SessionState::Failed {
                condition: condition.to_string(),
            };
            set_state(&mut self.open_changed, &mut self.unsettled, user, u, failed);
        }
    }

    /// Users whose session opened or stopped being open (closed, lost, unwanted) since the
    /// last call, sorted; a user who did both in between is included too.
    pub fn take_open_changes(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.open_changed)
    }

    /// The latest session moves in order (at most [`MOVES_KEPT_MAX`]) and the number of
    /// moves since the manager was created: an observer that saw `n` moves before reads the
    /// last `total - n` of the list.
    pub fn moves(&self) -> (&VecDeque<SessionMove>, u64) {
        (&self.moves, self.moves_total)
    }

    fn record_move(&mut self, m: SessionMove) {
        self.moves_total += 1;
        self.moves.push_back(m);
        while self.moves.len() > MOVES_KEPT_MAX {
            self.moves.pop_front();
        }
    }

    /// The next IQ to send.
    #[must_use]
    pub fn poll_command(&mut self) -> Option<Command> {
        self.out.pop_front()
    }

    /// Sends opens for queued users while tokens, links and in-flight room allow. Users whose
    /// node is down stay queued without consuming tokens.
    fn pump(&mut self, now: Duration) {
        let mut waiting = VecDeque::new();
        self.bucket_wait = false;
        // Bounded by the queue length: each user is looked at once per pump. It stops at the
        // first user who lacks a token or an in-flight slot, since nobody after them has one
        // either: moving the rest of a long queue on every answer made opening n sessions
        // cost O(n^2).
        while let Some(k) = self.queue.pop_front() {
            let Some(u) = self.users.get(&k) else {
                continue;
            };
            if u.state != SessionState::Queued {
                continue;
            }
            if !self.nodes_up.contains(&u.node) {
                waiting.push_back(k);
                continue;
            }
            if self.pending.len() >= IN_FLIGHT_MAX {
                self.queue.push_front(k);
                break;
            }
            if !self.bucket.try_take(now) {
                self.bucket_wait = true;
                self.queue.push_front(k);
                break;
            }
            self.open(&k, now);
        }
        // Users of nodes that are down keep their places, ahead of the rest.
        while let Some(k) = waiting.pop_back() {
            self.queue.push_front(k);
        }
    }

    fn open(&mut self, user: &str, now: Duration) {
        let (jid, node) = {
            let u = &self.users[user];
            (u.jid.clone(), u.node.clone())
        };
        let iq = self.session_iq("start", &jid, &node);
        let id = iq.attr("id").unwrap_or_default().to_string();
        self.pending.insert(id.clone(), user.to_string());
        if let Some(u) = self.users.get_mut(user) {
            let opening = SessionState::Opening { iq: id, since: now };
            set_state(
                &mut self.open_changed,
                &mut self.unsettled,
                user,
                u,
                opening,
            );
            self.timers.insert((now + OPEN_TIMEOUT, user.to_string()));
        }
        self.stats.opens_sent += 1;
        self.out.push_back(Command { node, iq });
    }

    fn session_iq(&mut self, action: &str, bare: &str, node: &str) -> Element {
        self.next_iq += 1;
        Element::new("iq", NS_COMPONENT)
            .with_attr("type", "set")
            .with_attr("id", format!("s-{}", self.next_iq))
            .with_attr("from", self.component.clone())
            .with_attr("to", node)
            .with_child(
                Element::new("session", NS_HM_SESSION)
                    .with_attr("action", action)
                    .with_attr("jid", Self::session_jid(bare)),
            )
    }
}

/// The node a `redirect` error names (RFC 6120 8.3.3.14: its character data is the
/// alternate address, an `xmpp:` URI or a bare domain), if any.
/// Keeps the node a `redirect` refusing `u`'s session named ([`UserSession::redirected_to`]).
fn note_redirect(u: &mut UserSession, condition: &str, iq: &Element) {
    if condition == "redirect" {
        u.redirected_to = redirect_target(iq);
    }
}

fn redirect_target(iq: &Element) -> Option<String> {
    let err = iq.elements().find(|e| e.name == "error")?;
    let text = err.child("redirect", xmpp::NS_STANZAS)?.text();
    let host = text.trim();
    let host = host.strip_prefix("xmpp:").unwrap_or(host);
    (!host.is_empty()).then(|| host.to_string())
}

/// Sets a user's session state, noting the user in `changed` when the session opens or stops
/// being open (what [`SessionManager::take_open_changes`] reports), and keeping `unsettled`,
/// the count of wanted users whose session is not [`settled`]. Every change of a wanted
/// user's state goes through here, or the count drifts.
fn set_state(
    changed: &mut BTreeSet<String>,
    unsettled: &mut usize,
    user: &str,
    u: &mut UserSession,
    to: SessionState,
) {
    if (u.state == SessionState::Open) != (to == SessionState::Open) && !changed.contains(user) {
        changed.insert(user.to_string());
    }
    match (settled(&u.state), settled(&to)) {
        (true, false) => *unsettled += 1,
        (false, true) => *unsettled -= 1,
        _ => {}
    }
    u.state = to;
}

/// Whether a session stays where it is until something happens: open, or failed for good.
/// The others (queued, opening, in backoff) are what [`SessionManager::pending_opens`] counts.
fn settled(state: &SessionState) -> bool {
    matches!(state, SessionState::Open | SessionState::Failed { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::SeedableRng as _;

    fn manager(rate_per_s: f64) -> SessionManager {
        SessionManager::new(
            "hm.exp-a-1",
            TokenBucket::new(rate_per_s, rate_per_s.max(1.0), Duration::ZERO),
        )
    }

    fn answer(cmd: &Command, ok: bool, condition: &str) -> Element {
        if ok {
            xmpp::iq_result(&cmd.iq, None)
        } else {
            xmpp::error_reply(&cmd.iq, "wait", condition, None)
        }
    }

    fn drain(m: &mut SessionManager) -> Vec<Command> {
        std::iter::from_fn(|| m.poll_command()).collect()
    }

    /// Users waiting to open, counted the slow way: what `pending_opens` must equal.
    fn unsettled_by_walking(m: &SessionManager) -> usize {
        m.users
            .keys()
            .filter(|k| {
                matches!(
                    m.state(k),
                    Some(SessionState::Queued | SessionState::Opening { .. })
                        | Some(SessionState::Backoff { .. })
                )
            })
            .count()
    }

    /// `pending_opens` is a count kept as states change (walking every user on each timer
    /// made migrations quadratic): through every kind of change, in a seeded random order,
    /// it equals the count of users queued, opening or in backoff.
    #[test]
    fn pending_opens_is_kept_exactly_through_every_change() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let pick = |rng: &mut ChaCha8Rng, n: u64| rng.next_u64() % n;
        let mut m = manager(50.0);
        let nodes = ["imp-1", "imp-2"];
        let conditions = ["resource-constraint", "redirect", "item-not-found"];
        let mut now = Duration::ZERO;
        for step in 0..4000 {
            now += Duration::from_millis(pick(&mut rng, 400));
            let user = format!("u{}@x", pick(&mut rng, 40));
            let node = nodes[pick(&mut rng, 2) as usize];
            match pick(&mut rng, 10) {
                0..=2 => m.want(&user, &user, node, now),
                3 => m.unwant(&user, now),
                4 => m.release(&user, now),
                5 => m.node_down(node, now),
                6 => m.node_up(node, now),
                7 => m.ended_by_node(&user, xmpp::SESSION_TAKEN_OVER),
                _ => m.handle_timeout(now),
            }
            for cmd in drain(&mut m) {
                let ok = pick(&mut rng, 10) < 6;
                let c = conditions[pick(&mut rng, 3) as usize];
                if pick(&mut rng, 10) < 9 {
                    m.handle_iq(&answer(&cmd, ok, c), now, &mut rng);
                }
            }
            assert_eq!(
                m.pending_opens(),
                unsettled_by_walking(&m),
                "after step {step}"
            );
        }
        assert!(m.stats().opened > 100 && m.stats().refused_rate > 10 && m.stats().failed > 10);
    }

    #[test]
    fn opens_when_the_node_is_up_and_paces_by_the_bucket() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut m = manager(1.0);
        let t0 = Duration::ZERO;
        m.want("a@x", "a@x", "imp-1", t0);
        m.want("b@x", "b@x", "imp-1", t0);
        assert!(drain(&mut m).is_empty(), "node not up yet");
        m.node_up("imp-1", t0);
        let first = drain(&mut m);
        assert_eq!(first.len(), 1);
        let jid = first[0]
            .iq
            .child("session", NS_HM_SESSION)
            .unwrap()
            .attr("jid")
            .unwrap();
        assert_eq!(jid, "a@x/hm-webex");
        assert!(m.handle_iq(&answer(&first[0], true, ""), t0, &mut rng));
        assert_eq!(m.state("a@x"), Some(&SessionState::Open));
        let t1 = m.poll_timeout(t0).unwrap();
        assert_eq!(t1, Duration::from_secs(1));
        m.handle_timeout(t1);
        assert_eq!(drain(&mut m).len(), 1);
    }

    #[test]
    fn resource_constraint_backs_off_then_retries() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut m = manager(100.0);
        m.node_up("imp-1", Duration::ZERO);
        m.want("a@x", "a@x", "imp-1", Duration::ZERO);
        let c = drain(&mut m);
        m.handle_iq(
            &answer(&c[0], false, "resource-constraint"),
            Duration::ZERO,
            &mut rng,
        );
        let SessionState::Backoff { until } = m.state("a@x").unwrap().clone() else {
            panic!()
        };
        assert!(until >= BACKOFF_MIN / 2);
        m.handle_timeout(until);
        assert_eq!(drain(&mut m).len(), 1);
        assert_eq!(m.stats().refused_rate, 1);
    }

    #[test]
    fn node_loss_requeues_and_retarget_moves() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut m = manager(100.0);
        m.node_up("imp-1", Duration::ZERO);
        m.node_up("imp-2", Duration::ZERO);
        m.want("a@x", "a@x", "imp-1", Duration::ZERO);
        let c = drain(&mut m);
        m.handle_iq(&answer(&c[0], true, ""), Duration::ZERO, &mut rng);
        m.node_down("imp-1", Duration::ZERO);
        assert_eq!(m.state("a@x"), Some(&SessionState::Queued));
        assert!(drain(&mut m).is_empty(), "imp-1 is down");
        assert_eq!(
            m.poll_timeout(Duration::ZERO),
            None,
            "no timer while the only queued user waits for a link (it would fire forever)"
        );
        m.retarget("a@x", "imp-2", Duration::ZERO);
        let c = drain(&mut m);
        assert_eq!(c.len(), 1, "no stop to a dead node, one start on the peer");
        assert_eq!(c[0].node, "imp-2");
        let t1 = Duration::from_secs(7);
        m.handle_iq(&answer(&c[0], true, ""), t1, &mut rng);
        assert_eq!(m.open_per_node().get("imp-2"), Some(&1));
        let (moves, total) = m.moves();
        assert_eq!(total, 1);
        assert_eq!(
            moves[0],
            SessionMove {
                user: "a@x".into(),
                from: "imp-1".into(),
                to: "imp-2".into(),
                at: t1
            }
        );
    }

    #[test]
    fn a_redirect_while_moving_is_retried_but_final_otherwise() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut m = manager(100.0);
        let t0 = Duration::ZERO;
        m.node_up("imp-1", t0);
        m.node_up("imp-2", t0);
        m.want("a@x", "a@x", "imp-1", t0);
        m.want("b@x", "b@x", "imp-2", t0);
        for c in drain(&mut m) {
            let ok = c.node == "imp-1";
            m.handle_iq(&answer(&c, ok, "redirect"), t0, &mut rng);
        }
        assert!(
            matches!(m.state("b@x"), Some(SessionState::Failed { condition }) if condition == "redirect"),
            "a plain open redirected is final"
        );
        // The peer has not taken the user over yet: the move waits and tries again.
        m.retarget("a@x", "imp-2", t0);
        let c = drain(&mut m);
        let start = c.iter().find(|c| c.node == "imp-2").unwrap();
        m.handle_iq(&answer(start, false, "redirect"), t0, &mut rng);
        let Some(SessionState::Backoff { until }) = m.state("a@x").cloned() else {
            panic!("{:?}", m.state("a@x"))
        };
        assert_eq!(m.stats().redirected_while_moving, 1);
        m.handle_timeout(until);
        let retry = drain(&mut m);
        assert_eq!(retry.len(), 1);
        m.handle_iq(&answer(&retry[0], true, ""), until, &mut rng);
        assert_eq!(m.moves().1, 1, "one move, recorded when it opened");
        assert_eq!(m.moves().0[0].at, until);
    }

    /// A `redirect` answer whose character data names `to`.
    fn redirect_to(cmd: &Command, to: &str) -> Element {
        let mut e = xmpp::error_reply(&cmd.iq, "modify", "redirect", None);
        for n in &mut e.children {
            if let crate::proto::xml::Node::Element(err) = n {
                for c in &mut err.children {
                    if let crate::proto::xml::Node::Element(cond) = c {
                        cond.children = vec![crate::proto::xml::Node::Text(to.into())];
                    }
                }
            }
        }
        e
    }

    #[test]
    fn a_redirect_naming_the_serving_node_is_followed_and_reported() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let mut m = manager(100.0);
        let t0 = Duration::from_secs(420);
        m.node_up("imp-1", t0);
        m.node_up("imp-2", t0);
        m.want("a@x", "a@x", "imp-1", t0);
        let c = drain(&mut m);
        assert_eq!(c[0].node, "imp-1", "AXL's home node first");
        m.handle_iq(&redirect_to(&c[0], "xmpp:imp-2"), t0, &mut rng);
        assert_eq!(m.node_of("a@x"), Some("imp-2"));
        assert_eq!(
            m.poll_redirected(),
            Some(Redirected {
                user: "a@x".into(),
                from: "imp-1".into(),
                to: "imp-2".into()
            })
        );
        assert_eq!(m.poll_redirected(), None);
        let c = drain(&mut m);
        assert_eq!(c.len(), 1, "the first follow goes at once");
        assert_eq!(c[0].node, "imp-2");
        m.handle_iq(&answer(&c[0], true, ""), t0, &mut rng);
        assert_eq!(m.state("a@x"), Some(&SessionState::Open));
        assert_eq!(m.stats().redirects_followed, 1);
        assert_eq!(m.moves().1, 0, "a first open is not a move");
    }

    /// Explore seed 8742: imp-a-1 restarts after its peer imp-a-2 took its users over and then
    /// failed for good. Initialising (waiting up to 120 s for its silent peer before taking it
    /// over, spec 65), imp-a-1 still answers `redirect` naming imp-a-2, whose link is down. The
    /// session used to follow it and wait for imp-a-2's link for good, while imp-a-1 served its
    /// users again two minutes later. A redirect to a node this connector cannot reach is asked
    /// again at the node that answered it, after the backoff, and followed once that link is up.
    #[test]
    fn a_redirect_to_a_node_whose_link_is_down_is_asked_again_where_it_came_from() {
        let mut rng = ChaCha8Rng::seed_from_u64(8742);
        let mut m = manager(100.0);
        let t0 = Duration::from_secs(61);
        m.node_up("imp-1", t0);
        m.node_up("imp-2", t0);
        m.node_down("imp-2", Duration::from_secs(191));
        let t1 = Duration::from_secs(267);
        m.want("a@x", "a@x", "imp-1", t1);
        let c = drain(&mut m);
        m.handle_iq(&redirect_to(&c[0], "imp-2"), t1, &mut rng);
        assert_eq!(m.node_of("a@x"), Some("imp-1"), "not parked on imp-2");
        assert_eq!(m.poll_redirected(), None, "nothing followed");
        let SessionState::Backoff { until } = m.state("a@x").cloned().unwrap() else {
            panic!("{:?}", m.state("a@x"))
        };
        assert_eq!(m.stats().redirected_to_unreachable, 1);
        m.handle_timeout(until);
        let c = drain(&mut m);
        assert_eq!((c.len(), c[0].node.as_str()), (1, "imp-1"), "asked again");
        // imp-1 took its silent peer over: it serves the user now.
        m.handle_iq(&answer(&c[0], true, ""), until, &mut rng);
        assert_eq!(m.open_per_node().get("imp-1"), Some(&1));
        // With imp-2's link up, the same answer is followed there as before.
        m.want("b@x", "b@x", "imp-1", until);
        m.node_up("imp-2", until);
        let c = drain(&mut m);
        m.handle_iq(&redirect_to(&c[0], "imp-2"), until, &mut rng);
        assert_eq!(m.node_of("b@x"), Some("imp-2"));
        assert_eq!(m.stats().redirects_followed, 1);
    }

    /// Explore seeds 2476 and 2497: the connector started after a manual failover of its
    /// users' home node, and after the PRG's high availability was switched off, so it never
    /// learns the failover (it reads HA at discovery, spec 61) and keeps asking for the home
    /// node at every presence poll. The home node's redirect to its peer is the answer: asking
    /// for the home node again keeps the session where the redirect sent it (it used to move
    /// it back, where every open was redirected again, forever, while moving).
    #[test]
    fn wanting_the_node_that_redirected_keeps_the_session_where_it_was_sent() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut m = manager(100.0);
        let t0 = Duration::from_secs(176);
        m.node_up("imp-1", t0);
        m.node_up("imp-2", t0);
        m.want("a@x", "a@x", "imp-1", t0);
        let c = drain(&mut m);
        m.handle_iq(&redirect_to(&c[0], "imp-2"), t0, &mut rng);
        let c = drain(&mut m);
        m.handle_iq(&answer(&c[0], true, ""), t0, &mut rng);
        assert_eq!(m.open_per_node().get("imp-2"), Some(&1));
        let poll = t0 + Duration::from_secs(30);
        m.want("a@x", "a@x", "imp-1", poll);
        assert!(
            drain(&mut m).is_empty(),
            "no stop on imp-2, no open on imp-1"
        );
        assert_eq!(m.state("a@x"), Some(&SessionState::Open));
        assert_eq!(m.node_of("a@x"), Some("imp-2"));
        // The peer gives the user back (fallback): the home node is asked again.
        m.ended_by_node("a@x", "see-other-host");
        m.want("a@x", "a@x", "imp-1", poll);
        let c = drain(&mut m);
        assert_eq!((c.len(), c[0].node.as_str()), (1, "imp-1"));
        m.handle_iq(&answer(&c[0], true, ""), poll, &mut rng);
        assert_eq!(m.open_per_node().get("imp-1"), Some(&1));
    }

    /// Explore seed 2289: a session moved to the home's PRG peer, which answers `redirect`
    /// naming the home (the PRG gave the users back, or never took them over: the pair split
    /// brain and healed while the connector moved them). A redirect while moving means the peer
    /// has not taken the user over yet, but only for as long as a PRG takes to converge: it
    /// used to be retried for good. After [`REDIRECTED_WHILE_MOVING_MAX`] retries the redirect
    /// is the answer: followed to the node it names and reported to the owner.
    #[test]
    fn a_redirect_while_moving_is_followed_once_the_prg_had_time_to_converge() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut m = manager(100.0);
        let mut now = Duration::from_secs(233);
        m.node_up("imp-1", now);
        m.node_up("imp-2", now);
        m.want("a@x", "a@x", "imp-1", now);
        let c = drain(&mut m);
        m.handle_iq(&answer(&c[0], true, ""), now, &mut rng);
        m.retarget("a@x", "imp-2", now);
        let mut c: Vec<Command> = drain(&mut m)
            .into_iter()
            .filter(|c| c.node == "imp-2")
            .collect();
        let started = now;
        for i in 1..=REDIRECTED_WHILE_MOVING_MAX {
            assert_eq!(c.len(), 1, "retry {i}");
            m.handle_iq(&redirect_to(&c[0], "imp-1"), now, &mut rng);
            let Some(SessionState::Backoff { until }) = m.state("a@x").cloned() else {
                panic!("retry {i} waits: {:?}", m.state("a@x"))
            };
            now = until;
            m.handle_timeout(now);
            c = drain(&mut m);
        }
        assert!(
            now - started >= Duration::from_secs(120),
            "the retries outlast a PRG's convergence (60 s heartbeat timeout): {:?}",
            now - started
        );
        assert_eq!(m.poll_redirected(), None, "nothing learned while retrying");
        m.handle_iq(&redirect_to(&c[0], "imp-1"), now, &mut rng);
        assert_eq!(
            m.node_of("a@x"),
            Some("imp-1"),
            "followed to the node it names"
        );
        assert_eq!(
            m.poll_redirected(),
            Some(Redirected {
                user: "a@x".into(),
                from: "imp-2".into(),
                to: "imp-1".into()
            })
        );
        let c = drain(&mut m);
        assert_eq!((c.len(), c[0].node.as_str()), (1, "imp-1"));
        m.handle_iq(&answer(&c[0], true, ""), now, &mut rng);
        assert_eq!(m.state("a@x"), Some(&SessionState::Open));
        assert_eq!(
            m.stats().redirected_while_moving,
            u64::from(REDIRECTED_WHILE_MOVING_MAX)
        );
    }

    /// Explore seed 11585: imp-1 fails (automatic failover) and, high availability on as
    /// discovered, its users move to the peer imp-2; high availability is switched off before
    /// imp-2's heartbeat timeout, so imp-2 never takes them over and answers every open with a
    /// `redirect` naming imp-1, down until it restarts 160 s later. Those answers were asked
    /// again without counting toward [`REDIRECTED_WHILE_MOVING_MAX`], so once imp-1's link was
    /// back the move started its retries afresh, at the backoff's 160-300 s, and the sessions
    /// were still retrying at imp-2 at the end of the run. Every redirect the moving target
    /// answers counts: the PRG had that time to converge whether or not the node it names
    /// could be reached.
    #[test]
    fn a_moving_sessions_redirects_to_a_down_node_count_toward_the_moving_retries() {
        let mut rng = ChaCha8Rng::seed_from_u64(11585);
        let mut m = manager(100.0);
        let mut now = Duration::from_secs(43);
        m.node_up("imp-1", now);
        m.node_up("imp-2", now);
        m.want("a@x", "a@x", "imp-1", now);
        let c = drain(&mut m);
        m.handle_iq(&answer(&c[0], true, ""), now, &mut rng);
        m.node_down("imp-1", Duration::from_secs(111));
        now = Duration::from_secs(150);
        m.retarget("a@x", "imp-2", now);
        let mut c = drain(&mut m);
        for i in 1..=REDIRECTED_WHILE_MOVING_MAX {
            assert_eq!((c.len(), c[0].node.as_str()), (1, "imp-2"), "retry {i}");
            m.handle_iq(&redirect_to(&c[0], "imp-1"), now, &mut rng);
            let Some(SessionState::Backoff { until }) = m.state("a@x").cloned() else {
                panic!("retry {i} waits: {:?}", m.state("a@x"))
            };
            now = until;
            m.handle_timeout(now);
            c = drain(&mut m);
        }
        assert_eq!(
            m.stats().redirected_to_unreachable,
            u64::from(REDIRECTED_WHILE_MOVING_MAX)
        );
        // imp-1 restarted and serves its users: imp-2's next redirect is the answer.
        m.node_up("imp-1", now);
        m.handle_iq(&redirect_to(&c[0], "imp-1"), now, &mut rng);
        assert_eq!(m.node_of("a@x"), Some("imp-1"), "followed to imp-1");
        assert_eq!(
            m.poll_redirected(),
            Some(Redirected {
                user: "a@x".into(),
                from: "imp-2".into(),
                to: "imp-1".into()
            })
        );
        let c = drain(&mut m);
        assert_eq!((c.len(), c[0].node.as_str()), (1, "imp-1"), "at once");
        m.handle_iq(&answer(&c[0], true, ""), now, &mut rng);
        assert_eq!(m.open_per_node().get("imp-1"), Some(&1));
    }

    #[test]
    fn redirects_are_followed_with_backoff_at_most_redirects_followed_max_times() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut m = manager(100.0);
        let mut now = Duration::ZERO;
        m.node_up("imp-1", now);
        m.node_up("imp-2", now);
        m.want("a@x", "a@x", "imp-1", now);
        let mut c = drain(&mut m);
        // Two nodes whose PRG views disagree send the user back and forth.
        for i in 1..=REDIRECTS_FOLLOWED_MAX {
            assert_eq!(c.len(), 1, "attempt {i}");
            let other = if c[0].node == "imp-1" {
                "imp-2"
            } else {
                "imp-1"
            };
            m.handle_iq(&redirect_to(&c[0], other), now, &mut rng);
            if i > 1 {
                let Some(SessionState::Backoff { until }) = m.state("a@x").cloned() else {
                    panic!("follow {i} waits: {:?}", m.state("a@x"))
                };
                assert!(until > now);
                now = until;
                m.handle_timeout(now);
            }
            c = drain(&mut m);
        }
        m.handle_iq(&redirect_to(&c[0], "imp-1"), now, &mut rng);
        assert!(
            matches!(m.state("a@x"), Some(SessionState::Failed { condition }) if condition == "redirect"),
            "{:?}",
            m.state("a@x")
        );
        assert_eq!(
            m.stats().redirects_followed,
            u64::from(REDIRECTS_FOLLOWED_MAX)
        );
        assert!(drain(&mut m).is_empty());
    }

    /// Explore seed 28367: exp-a-1 started as imp-a-1 failed (its link never came up) and
    /// moved imp-a-1's users to imp-a-2, which kept naming imp-a-1 (high availability was
    /// switched off before the takeover). A redirect to a node whose link was never up is
    /// final, so the sessions failed; when imp-a-1 came back and its link came up, nothing
    /// asked again, and two users never had a session. A session failed on a redirect follows
    /// it once the named node's link is up.
    #[test]
    fn a_session_failed_on_a_redirect_follows_it_once_the_named_nodes_link_is_up() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let mut m = manager(100.0);
        m.node_up("imp-1", Duration::ZERO);
        m.want("a@x", "a@x", "imp-1", Duration::ZERO);
        m.want("b@x", "b@x", "imp-1", Duration::ZERO);
        let c = drain(&mut m);
        m.handle_iq(&redirect_to(&c[0], "imp-9"), Duration::ZERO, &mut rng);
        m.handle_iq(&redirect_to(&c[1], "imp-8"), Duration::ZERO, &mut rng);
        assert!(
            matches!(m.state("a@x"), Some(SessionState::Failed { condition }) if condition == "redirect")
        );
        let later = Duration::from_secs(300);
        m.node_up("imp-9", later);
        let c = drain(&mut m);
        assert_eq!(c.len(), 1, "only the session sent to imp-9: {c:?}");
        assert_eq!(c[0].node, "imp-9");
        m.handle_iq(&answer(&c[0], true, ""), later, &mut rng);
        assert_eq!(m.state("a@x"), Some(&SessionState::Open));
        assert!(matches!(m.state("b@x"), Some(SessionState::Failed { .. })));
    }

    #[test]
    fn a_redirect_to_an_unknown_node_is_final() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let mut m = manager(100.0);
        m.node_up("imp-1", Duration::ZERO);
        m.want("a@x", "a@x", "imp-1", Duration::ZERO);
        let c = drain(&mut m);
        m.handle_iq(&redirect_to(&c[0], "imp-9"), Duration::ZERO, &mut rng);
        assert!(
            matches!(m.state("a@x"), Some(SessionState::Failed { condition }) if condition == "redirect")
        );
        assert_eq!(m.poll_redirected(), None);
    }

    #[test]
    fn unknown_user_fails_for_good_and_unwant_stops() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut m = manager(100.0);
        m.node_up("imp-1", Duration::ZERO);
        m.want("a@x", "a@x", "imp-1", Duration::ZERO);
        m.want("b@x", "b@x", "imp-1", Duration::ZERO);
        let c = drain(&mut m);
        m.handle_iq(
            &answer(&c[0], false, "item-not-found"),
            Duration::ZERO,
            &mut rng,
        );
        m.handle_iq(&answer(&c[1], true, ""), Duration::ZERO, &mut rng);
        assert_eq!(
            m.state("a@x"),
            Some(&SessionState::Failed {
                condition: "item-not-found".into()
            })
        );
        m.unwant("b@x", Duration::ZERO);
        let stop = drain(&mut m);
        assert_eq!(
            stop[0]
                .iq
                .child("session", NS_HM_SESSION)
                .unwrap()
                .attr("action"),
            Some("stop")
        );
    }

    /// Opens `users` on `node` and answers every open with success.
    fn open_all(m: &mut SessionManager, users: &[&str], node: &str, rng: &mut ChaCha8Rng) {
        let t0 = Duration::ZERO;
        m.node_up(node, t0);
        for u in users {
            m.want(u, u, node, t0);
        }
        for c in drain(m) {
            assert!(m.handle_iq(&answer(&c, true, ""), t0, rng));
        }
        let _ = m.take_open_changes();
    }

    fn actions(cmds: &[Command]) -> Vec<(String, String)> {
        cmds.iter()
            .map(|c| {
                let s = c.iq.child("session", NS_HM_SESSION).unwrap();
                (
                    s.attr("action").unwrap().to_string(),
                    s.attr("jid").unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn a_released_session_stays_open_until_taken_over_or_handover_max() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let mut m = manager(100.0);
        open_all(&mut m, &["a@x", "b@x"], "imp-1", &mut rng);
        let t1 = Duration::from_secs(960);
        m.release("a@x", t1);
        m.release("b@x", t1);
        assert!(
            drain(&mut m).is_empty(),
            "make-before-break: no stop while the new node opens"
        );
        assert_eq!(m.handovers(), 2);
        assert_eq!(m.state("a@x"), None, "no longer this node's user");
        assert_eq!(
            m.take_open_changes(),
            BTreeSet::from(["a@x".to_string(), "b@x".to_string()])
        );
        // The new node takes a@x over: IM&P ended the session, nothing is left to close.
        m.ended_by_node("a@x", xmpp::SESSION_TAKEN_OVER);
        assert_eq!(m.stats().handovers_taken_over, 1);
        // Nobody takes b@x over: it is closed after HANDOVER_MAX, and only then.
        let due = m.poll_timeout(t1).unwrap();
        assert_eq!(due, t1 + HANDOVER_MAX);
        m.handle_timeout(due - Duration::from_millis(1));
        assert!(drain(&mut m).is_empty());
        m.handle_timeout(due);
        assert_eq!(
            actions(&drain(&mut m)),
            vec![("stop".to_string(), "b@x/hm-webex".to_string())]
        );
        assert_eq!(m.stats().handovers_expired, 1);
        assert_eq!(m.handovers(), 0);
        assert_eq!(m.poll_timeout(due), None);
    }

    #[test]
    fn a_released_session_wanted_again_stays_open_or_is_closed_before_moving() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut m = manager(100.0);
        open_all(&mut m, &["a@x", "b@x"], "imp-1", &mut rng);
        m.node_up("imp-2", Duration::ZERO);
        let t1 = Duration::from_secs(10);
        m.release("a@x", t1);
        m.release("b@x", t1);
        // Assigned back before anyone took it over: the session simply stays.
        m.want("a@x", "a@x", "imp-1", t1);
        assert!(drain(&mut m).is_empty(), "no stop, no second start");
        assert_eq!(m.state("a@x"), Some(&SessionState::Open));
        // Wanted on another node (a failover meanwhile): closed here, opened there.
        m.want("b@x", "b@x", "imp-2", t1);
        let cmds = drain(&mut m);
        assert_eq!(
            actions(&cmds),
            vec![
                ("stop".to_string(), "b@x/hm-webex".to_string()),
                ("start".to_string(), "b@x/hm-webex".to_string())
            ]
        );
        assert_eq!(
            (cmds[0].node.as_str(), cmds[1].node.as_str()),
            ("imp-1", "imp-2")
        );
        assert_eq!(m.handovers(), 0);
        assert!(m.handle_iq(&answer(&cmds[1], true, ""), t1, &mut rng));
        m.handle_timeout(t1 + HANDOVER_MAX);
        assert!(drain(&mut m).is_empty(), "the handover timers are void");
        assert_eq!(
            m.open_per_node(),
            BTreeMap::from([("imp-1".to_string(), 1), ("imp-2".to_string(), 1)])
        );
    }

    #[test]
    fn disabling_closes_released_sessions_and_a_lost_link_ends_them() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let mut m = manager(100.0);
        open_all(&mut m, &["a@x", "b@x"], "imp-1", &mut rng);
        open_all(&mut m, &["c@x"], "imp-2", &mut rng);
        let t1 = Duration::from_secs(10);
        m.release_all(t1);
        assert_eq!(m.handovers(), 3);
        m.node_down("imp-2", t1);
        assert_eq!(m.handovers(), 2, "c@x's session ended with its link");
        m.unwant_all(t1);
        assert_eq!(
            actions(&drain(&mut m)),
            vec![
                ("stop".to_string(), "a@x/hm-webex".to_string()),
                ("stop".to_string(), "b@x/hm-webex".to_string())
            ]
        );
        assert_eq!(m.handovers(), 0);
        // A session that was not open yet is not handed over: it is closed at once.
        m.want("d@x", "d@x", "imp-1", t1);
        let start = drain(&mut m);
        assert_eq!(actions(&start)[0].0, "start");
        m.release("d@x", t1);
        assert_eq!(actions(&drain(&mut m))[0].0, "stop");
        assert_eq!(m.handovers(), 0);
    }
}
