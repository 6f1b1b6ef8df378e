//! Presence Redundancy Groups (spec 61-65): the sans-IO state machine of one node's PRG.
//!
//! The nodes of a cluster are paired (1+2, 3+4, 5+6, [`PrgConfig::peer_of`]). Every node keeps
//! a *serving view*: for each node of the cluster (a *home*), which node currently serves the
//! users homed there, with an epoch that grows with every change. Logins, message delivery,
//! presence composition and offline storage of a user happen on the node serving its home (see
//! `node.rs`). The view travels in the heartbeats and is merged by epoch, so every node of the
//! cluster converges on it without shared memory.
//! The view is kept in the node's database (`NodeDb::prg_view`, written by `node.rs` whenever it
//! changes): a restarted node resumes from it at the epochs the other nodes and clusters
//! learned (restarting from the configuration at epoch 0 left another cluster routing by the
//! newer epoch it had merged: explore seed 6680).
//!
//! ## Wire format: `urn:hmsim:prg:0` (the project's)
//!
//! PRG traffic rides the node-to-node router links (`driver::ROUTER_PORT`) as messages between
//! node host names, never to users:
//!
//! ```xml
//! <message from='imp-a-1' to='imp-a-2'>
//!   <prg xmlns='urn:hmsim:prg:0' action='heartbeat' state='1'>
//!     <serve home='imp-a-1' server='imp-a-1' epoch='0'/>
//!     <serve home='imp-a-2' server='imp-a-2' epoch='0'/>
//!   </prg>
//! </message>
//! ```
//!
//! | `action` | sent | effect on the receiver |
//! |---|---|---|
//! | `heartbeat` | every [`HEARTBEAT_INTERVAL`] to every node of the cluster, and at once after any change of the view | merge the view; from the PRG peer it also proves the peer alive |
//! | `failover` | by a node asked to fail over (manual), to its peer | take over the sender's users if high availability is on and the receiver is `Normal` |
//! | `fallback` | by a node whose users the peer serves, to the peer | give the sender's users back |
//!
//! ## Failure detection (spec 65)
//!
//! A peer silent for longer than the heartbeat timeout (default 60 s) has failed. With high
//! availability on, the survivor takes over every home the silent peer served (its users, and
//! the survivor's own if the peer was serving them). Without it nothing moves: the failed
//! node's users are unavailable until it returns (spec 64: not robust).
//!
//! A network split of only the pair is a split brain: each takes the other over and serves
//! both homes (Running in Backup Mode), while the rest of the cluster routes by whichever
//! claim it merged. Who serves the pair's homes is the pair's own business: a running node
//! takes those entries from its peer only, not from the copies the other nodes pass on
//! (which would make it give its own users away and flap while the split lasts). When the
//! pair hears each other again, both undo the swap the same way: every home back to itself.
//!
//! ## States (spec 65) and their integer codes ([`PrgState::code`])
//!
//! | code | state | here |
//! |---|---|---|
//! | 0 | Unknown | restarted, waiting for the peer's heartbeat (at most [`INIT_TIMEOUT`]); also the runner's value for a node whose host is down |
//! | 1 | Normal | serves its own users |
//! | 2 | Failing Over | manual failover asked, waiting for the peer to take over |
//! | 3 | Taking Over | took over the peer's users (one timer tick) |
//! | 4 | Idle | after a manual failover: serves nobody |
//! | 5 | Running in Backup Mode | serves its own and its peer's users |
//! | 6 | Failed Over | its users were taken over automatically (it was down or silent); it is healthy now |
//! | 7 | Failed Over with Critical Services Not Running | not produced (no critical-service faults yet) |
//! | 8 | Falling Back | giving the peer's users back (one timer tick) |
//! | 9 | Taking Back | fallback asked, waiting for the peer to give the users back |
//! | 10 | Running in Failed Mode | the peer never answered a failover or fallback request |

use connector::proto::xml::Element;
use std::collections::BTreeMap;
use std::time::Duration;

/// The project's namespace for PRG traffic between nodes.
pub const NS_PRG: &str = "urn:hmsim:prg:0";
/// Heartbeat interval between PRG peers (spec 65).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
/// Default heartbeat timeout (spec 65).
pub const HEARTBEAT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);
/// A restarted node waits this long for its peer's heartbeat before serving (spec 65's
/// initialisation timeout).
pub const INIT_TIMEOUT: Duration = Duration::from_secs(120);
/// Automatic fallback happens this long after the primary is healthy again (spec 65).
pub const AUTO_FALLBACK_DELAY: Duration = Duration::from_secs(30 * 60);
/// A failover or fallback request the peer has not acted on within this is abandoned
/// (Running in Failed Mode): two heartbeat intervals, so a live peer has surely answered.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Entries read from one heartbeat's view: a cluster has at most 6 nodes (spec 5); anything
/// beyond is a malformed peer and ignored rather than grown into the table.
pub const VIEW_ENTRIES_MAX: usize = 6;

/// PRG settings of one node, from the scenario's cluster `prg` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrgConfig {
    /// Every node of the cluster, node 1 (the publisher) first; pairs are (1,2), (3,4), (5,6).
    pub cluster: Vec<String>,
    /// High availability: automatic failover on heartbeat timeout, and manual failover allowed.
    pub high_availability: bool,
    /// Automatic fallback [`AUTO_FALLBACK_DELAY`] after an automatically failed-over node is
    /// healthy again.
    pub automatic_fallback: bool,
    /// How long a silent peer is tolerated.
    pub heartbeat_timeout: Duration,
    /// The nodes of every other IM&P cluster, each in node order (known through the
    /// Intercluster Sync Agent): heartbeats go to them too, so that they route to this
    /// cluster's users where they are served ([`RemoteViews`]).
    pub remote: Vec<Vec<String>>,
}

impl PrgConfig {
    /// The PRG peer of `host`, if it has one (an odd last node has none).
    pub fn peer_of(&self, host: &str) -> Option<&str> {
        let i = self.cluster.iter().position(|h| h == host)?;
        self.cluster.get(i ^ 1).map(String::as_str)
    }
}

/// Node states of spec 65.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PrgState {
    /// Not known (restarting, or the host is down).
    Unknown,
    /// Serving its own users.
    Normal,
    /// Manual failover under way.
    FailingOver,
    /// Taking over the peer's users.
    TakingOver,
    /// Manually failed over: serving nobody.
    Idle,
    /// Serving its own and the peer's users.
    RunningInBackupMode,
    /// Automatically failed over, healthy again, not serving.
    FailedOver,
    /// Failed over and its critical services are down (reserved, not produced).
    FailedOverCriticalServicesNotRunning,
    /// Giving the peer's users back.
    FallingBack,
    /// Waiting for its users to come back.
    TakingBack,
    /// A takeover or fallback did not complete.
    RunningInFailedMode,
}

impl PrgState {
    /// Stable integer code for time series (see the module table).
    pub fn code(self) -> u8 {
        match self {
            PrgState::Unknown => 0,
            PrgState::Normal => 1,
            PrgState::FailingOver => 2,
            PrgState::TakingOver => 3,
            PrgState::Idle => 4,
            PrgState::RunningInBackupMode => 5,
            PrgState::FailedOver => 6,
            PrgState::FailedOverCriticalServicesNotRunning => 7,
            PrgState::FallingBack => 8,
            PrgState::TakingBack => 9,
            PrgState::RunningInFailedMode => 10,
        }
    }
    /// The name Cisco's administration pages show.
    pub fn name(self) -> &'static str {
        match self {
            PrgState::Unknown => "Unknown",
            PrgState::Normal => "Normal",
            PrgState::FailingOver => "Failing Over",
            PrgState::TakingOver => "Taking Over",
            PrgState::Idle => "Idle",
            PrgState::RunningInBackupMode => "Running in Backup Mode",
            PrgState::FailedOver => "Failed Over",
            PrgState::FailedOverCriticalServicesNotRunning => {
                "Failed Over with Critical Services Not Running"
            }
            PrgState::FallingBack => "Falling Back",
            PrgState::TakingBack => "Taking Back",
            PrgState::RunningInFailedMode => "Running in Failed Mode",
        }
    }
}

/// What the node must do after a PRG step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrgAction {
    /// Send this `<message>` (already addressed from/to node hosts) to node `to`.
    Send {
        /// Destination node host.
        to: String,
        /// The stanza.
        stanza: Element,
    },
    /// This node no longer serves the users homed on `home`: close their sessions and hand
    /// their offline messages to `server`.
    Release {
        /// The home whose users left.
        home: String,
        /// Their new serving node.
        server: String,
    },
}

/// A request waiting for the peer to act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Failover(Duration),
    Fallback(Duration),
}

/// Where the users of the remote IM&P clusters are served: their nodes (known through the
/// Intercluster Sync Agent) and the serving views their heartbeats carry. Every node holds
/// one, a node alone in its cluster too: a failover in one cluster changes where the others
/// route to its users, and who may speak for them.
#[derive(Debug, Clone, Default)]
pub struct RemoteViews {
    clusters: Vec<Vec<String>>,
    /// remote home → (serving node, epoch); a home not heard of yet serves its own users.
    view: BTreeMap<String, (String, u64)>,
}

impl RemoteViews {
    /// Knows the nodes of `clusters` (each in node order, pairs as in [`PrgConfig`]).
    pub fn new(clusters: Vec<Vec<String>>) -> Self {
        Self {
            clusters,
            view: BTreeMap::new(),
        }
    }

    /// Whether `host` is a node of a remote cluster.
    pub fn knows(&self, host: &str) -> bool {
        self.clusters.iter().flatten().any(|h| h == host)
    }

    /// The PRG peer of the remote node `host`, if any.
    pub fn peer_of(&self, host: &str) -> Option<&str> {
        let nodes = self.clusters.iter().find(|c| c.iter().any(|h| h == host))?;
        let i = nodes.iter().position(|h| h == host)?;
        nodes.get(i ^ 1).map(String::as_str)
    }

    /// The node serving the users of the remote home `home`, once a heartbeat said it moved.
    pub fn server_of(&self, home: &str) -> Option<&str> {
        self.view.get(home).map(|(s, _)| s.as_str())
    }

    /// Each remote home heard of, with the node serving its users.
    pub fn servers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.view.iter().map(|(h, (s, _))| (h.as_str(), s.as_str()))
    }

    /// Merges the view in the heartbeat of `from`, a remote node, by epoch: only the homes of
    /// its own cluster, each served by the home or its PRG peer.
    pub fn merge(&mut self, from: &str, prg: &Element) {
        let Some(nodes) = self.clusters.iter().find(|c| c.iter().any(|h| h == from)) else {
            return; // not a known node: ignored
        };
        let mut learned = Vec::new();
        for (home, server, epoch) in serve_entries(prg) {
            let known = self.view.get(home).map(|v| v.1).unwrap_or(0);
            let speaks = server == home || self.peer_of(home) == Some(server);
            if nodes.iter().any(|h| h == home) && speaks && epoch > known {
                learned.push((home.to_string(), (server.to_string(), epoch)));
            }
        }
        self.view.extend(learned);
    }
}

/// The `(home, server, epoch)` entries of a PRG view, at most `VIEW_ENTRIES_MAX`; malformed
/// entries are skipped.
fn serve_entries(prg: &Element) -> impl Iterator<Item = (&str, &str, u64)> {
    prg.elements()
        .filter(|e| e.name == "serve" && e.ns == NS_PRG)
        .take(VIEW_ENTRIES_MAX)
        .filter_map(|e| {
            let epoch = e.attr("epoch").and_then(|x| x.parse::<u64>().ok())?;
            Some((e.attr("home")?, e.attr("server")?, epoch))
        })
}

/// The PRG half of a node: state, serving view, heartbeats.
#[derive(Debug, Clone)]
pub struct Prg {
    me: String,
    cfg: PrgConfig,
    state: PrgState,
    since: Duration,
    /// home → (serving node, epoch).
    view: BTreeMap<String, (String, u64)>,
    /// Last PRG message from the peer (any action proves it alive).
    peer_heard: Duration,
    next_heartbeat: Duration,
    pending: Option<Pending>,
    /// Whether the timer ran at least once (the start time is its first `now`).
    started: bool,
    restarted: bool,
    transitions: u64,
}

impl Prg {
    /// The PRG state of node `me`. `restarted` (the node's database says it ran before) starts
    /// it `Unknown` until the peer's heartbeat says who serves whom.
    pub fn new(me: &str, cfg: PrgConfig, restarted: bool) -> Self {
        let view = cfg
            .cluster
            .iter()
            .map(|h| (h.clone(), (h.clone(), 0)))
            .collect();
        Self {
            me: me.to_string(),
            state: if restarted && cfg.peer_of(me).is_some() {
                PrgState::Unknown
            } else {
                PrgState::Normal
            },
            cfg,
            since: Duration::ZERO,
            view,
            peer_heard: Duration::ZERO,
            next_heartbeat: Duration::ZERO,
            pending: None,
            started: false,
            restarted,
            transitions: 0,
        }
    }

    /// Current state.
    pub fn state(&self) -> PrgState {
        self.state
    }

    /// State changes so far.
    pub fn transitions(&self) -> u64 {
        self.transitions
    }

    /// Settings.
    pub fn config(&self) -> &PrgConfig {
        &self.cfg
    }

    /// Changes the high-availability setting (the administrator's PRG page, spec 61). IM&P
    /// applies it at once: from the next timer tick a silent peer is (or is no longer) taken
    /// over, and manual failovers are allowed (or refused). Users already moved stay where
    /// they are; only a fallback brings them back.
    pub fn set_high_availability(&mut self, on: bool) {
        self.cfg.high_availability = on;
    }

    /// This node's PRG peer.
    pub fn peer(&self) -> Option<&str> {
        self.cfg.peer_of(&self.me)
    }

    /// The node serving the users homed on `home` (in this node's view).
    pub fn server_of<'a>(&'a self, home: &'a str) -> &'a str {
        self.view.get(home).map(|(s, _)| s.as_str()).unwrap_or(home)
    }

    /// The serving view (home → serving node, epoch), which the node keeps in its database.
    pub fn view(&self) -> &BTreeMap<String, (String, u64)> {
        &self.view
    }

    /// Resumes the serving view a restarted node's database kept: the entries of this
    /// cluster's homes, each served by the home or its PRG peer; the rest as configured.
    pub fn resume_view(&mut self, saved: &BTreeMap<String, (String, u64)>) {
        for (home, (server, epoch)) in saved {
            if self.view.contains_key(home) && self.may_speak_for(server, home) {
                self.view.insert(home.clone(), (server.clone(), *epoch));
            }
        }
    }

    /// The epoch of `home`'s entry in this node's view (0: never moved).
    pub fn epoch_of(&self, home: &str) -> u64 {
        self.view.get(home).map_or(0, |v| v.1)
    }

    /// Each home of the cluster, with the node serving its users in this node's view.
    pub fn servers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.view.iter().map(|(h, (s, _))| (h.as_str(), s.as_str()))
    }

    /// Whether this node accepts logins of users homed on `home` now.
    pub fn accepts(&self, home: &str) -> bool {
        self.state != PrgState::Unknown && self.server_of(home) == self.me
    }

    /// Whether `node` may speak for users homed on `home`: their home or its PRG peer.
    pub fn may_speak_for(&self, node: &str, home: &str) -> bool {
        node == home || self.cfg.peer_of(home) == Some(node)
    }

    fn set(&mut self, now: Duration, s: PrgState) {
        if s != self.state {
            tracing::debug!(node = %self.me, from = self.state.name(), to = s.name(), "PRG state");
            self.state = s;
            self.since = now;
            self.transitions += 1;
        }
    }

    fn heartbeat_to(&self, to: &str, action: &str) -> PrgAction {
        let mut prg = Element::new("prg", NS_PRG)
            .with_attr("action", action)
            .with_attr("state", self.state.code().to_string());
        for (home, (server, epoch)) in &self.view {
            prg = prg.with_child(
                Element::new("serve", NS_PRG)
                    .with_attr("home", home.clone())
                    .with_attr("server", server.clone())
                    .with_attr("epoch", epoch.to_string()),
            );
        }
        let stanza = Element::new("message", connector::proto::xmpp::NS_CLIENT)
            .with_attr("from", self.me.clone())
            .with_attr("to", to)
            .with_child(prg);
        PrgAction::Send {
            to: to.to_string(),
            stanza,
        }
    }

    /// The view to every other node of the cluster and of the remote clusters (which only
    /// route by it).
    fn broadcast(&self, out: &mut Vec<PrgAction>) {
        let nodes = self
            .cfg
            .cluster
            .iter()
            .chain(self.cfg.remote.iter().flatten());
        for h in nodes.filter(|h| **h != self.me) {
            out.push(self.heartbeat_to(h, "heartbeat"));
        }
    }

    /// Takes `home` over (or back) at a new epoch.
    fn claim(&mut self, home: &str) {
        let epoch = self.view.get(home).map(|v| v.1).unwrap_or(0) + 1;
        self.view.insert(home.to_string(), (self.me.clone(), epoch));
    }

    /// The timer: heartbeats, failure detection, timeouts, transitions. Call about every
    /// second.
    pub fn handle_timeout(&mut self, now: Duration) -> Vec<PrgAction> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            self.since = now;
            self.peer_heard = now;
        }
        let Some(peer) = self.peer().map(str::to_string) else {
            if now >= self.next_heartbeat {
                self.broadcast(&mut out);
                self.next_heartbeat = now + HEARTBEAT_INTERVAL;
            }
            return out;
        };
        match self.state {
            PrgState::Unknown if now.saturating_sub(self.since) >= INIT_TIMEOUT => {
                self.resolve(now);
            }
            PrgState::TakingOver | PrgState::FallingBack => self.settle(now),
            PrgState::FailingOver | PrgState::TakingBack => {
                let asked = match self.pending {
                    Some(Pending::Failover(t) | Pending::Fallback(t)) => t,
                    None => self.since,
                };
                if now.saturating_sub(asked) >= REQUEST_TIMEOUT {
                    self.pending = None;
                    self.set(now, PrgState::RunningInFailedMode);
                }
            }
            PrgState::FailedOver
                if self.cfg.automatic_fallback
                    && now.saturating_sub(self.since) >= AUTO_FALLBACK_DELAY =>
            {
                out.extend(self.fallback(now));
            }
            _ => {}
        }
        self.detect_failure(now, &peer, &mut out);
        if now >= self.next_heartbeat {
            self.broadcast(&mut out);
            self.next_heartbeat = now + HEARTBEAT_INTERVAL;
        }
        out
    }

    /// Failure detection (spec 65): only with high availability, and never while this node
    /// itself does not know the state of the pair. A silent peer's homes are taken over.
    fn detect_failure(&mut self, now: Duration, peer: &str, out: &mut Vec<PrgAction>) {
        let silent = now.saturating_sub(self.peer_heard) > self.cfg.heartbeat_timeout;
        if silent && self.cfg.high_availability && self.state != PrgState::Unknown {
            let served_by_peer: Vec<String> = [self.me.clone(), peer.to_string()]
                .into_iter()
                .filter(|h| self.server_of(h) == peer)
                .collect();
            if !served_by_peer.is_empty() {
                for h in &served_by_peer {
                    self.claim(h);
                }
                self.pending = None;
                let took_peer = served_by_peer.iter().any(|h| h == peer);
                self.set(
                    now,
                    if took_peer {
                        PrgState::TakingOver
                    } else {
                        PrgState::TakingBack
                    },
                );
                self.broadcast(out);
                self.next_heartbeat = now + HEARTBEAT_INTERVAL;
                if !took_peer {
                    self.settle(now);
                }
            }
        }
    }

    /// The state that follows from the view once nothing is pending.
    fn settle(&mut self, now: Duration) {
        let Some(peer) = self.peer().map(str::to_string) else {
            return;
        };
        let mine = self.server_of(&self.me) == self.me;
        let theirs = self.server_of(&peer) == self.me;
        let s = match (mine, theirs) {
            (true, true) => PrgState::RunningInBackupMode,
            (true, false) => PrgState::Normal,
            (false, _) if self.state == PrgState::FailingOver || self.state == PrgState::Idle => {
                PrgState::Idle
            }
            (false, _) => PrgState::FailedOver,
        };
        self.set(now, s);
    }

    /// Leaves `Unknown`: the view (from the peer's heartbeat, or as persisted) decides.
    fn resolve(&mut self, now: Duration) {
        self.state = PrgState::Normal; // so `settle` does not read the old state as Idle
        self.settle(now);
        self.transitions += 1;
    }

    /// Manual failover of this node (administrator): its users move to the peer. Returns
    /// false (and does nothing) without high availability, without a peer, or unless
    /// `Normal`.
    pub fn failover(&mut self, now: Duration) -> Vec<PrgAction> {
        let Some(peer) = self.peer().map(str::to_string) else {
            return Vec::new();
        };
        if !self.cfg.high_availability || self.state != PrgState::Normal {
            return Vec::new();
        }
        self.pending = Some(Pending::Failover(now));
        self.set(now, PrgState::FailingOver);
        vec![self.heartbeat_to(&peer, "failover")]
    }

    /// Fallback to this node: its users come back from the peer. Does nothing unless the
    /// peer serves them.
    pub fn fallback(&mut self, now: Duration) -> Vec<PrgAction> {
        let Some(peer) = self.peer().map(str::to_string) else {
            return Vec::new();
        };
        if self.server_of(&self.me) != peer || self.state == PrgState::TakingBack {
            return Vec::new();
        }
        self.pending = Some(Pending::Fallback(now));
        self.set(now, PrgState::TakingBack);
        vec![self.heartbeat_to(&peer, "fallback")]
    }

    /// A PRG message from node `from` (the router link's authenticated peer).
    pub fn on_message(&mut self, now: Duration, from: &str, prg: &Element) -> Vec<PrgAction> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            self.since = now;
        }
        let peer = self.peer().map(str::to_string);
        let from_peer = peer.as_deref() == Some(from);
        if from_peer {
            self.peer_heard = now;
        }
        let (stale_sender, mut lost) = self.merge_view(from_peer, prg);
        if let Some(p) = peer.as_deref()
            && self.heal_split_brain(now, p, &mut lost, &mut out)
        {
            return out;
        }
        for (home, server) in &lost {
            out.push(PrgAction::Release {
                home: home.clone(),
                server: server.clone(),
            });
        }
        if self.on_request(now, from, from_peer, prg.attr("action"), &mut out) {
            return out;
        }
        self.follow_view(now, from_peer, !lost.is_empty());
        // A restarted peer (`Unknown`) waits for this node's view: answer at once rather than
        // at the next heartbeat, so its users are served again within a tick.
        let peer_unknown = from_peer && prg.attr("state") == Some("0");
        if stale_sender || peer_unknown {
            out.push(self.heartbeat_to(from, "heartbeat"));
        }
        out
    }

    /// Merges a received view by epoch. Returns whether the sender's view was stale, and the
    /// homes this node lost (home, new server).
    ///
    /// Who serves the pair's own two homes is the pair's to decide, over its own heartbeat
    /// ("each node in the presence redundancy group monitors the status, or heartbeat, of the
    /// peer node"): once running, a node takes those entries from its peer only, and another
    /// node's copy of them just routes. Otherwise a pair split by the network, each still
    /// hearing the other's claims through the rest of the cluster, gives its own users away,
    /// heals, takes over again and flaps for as long as the split lasts (explore seed 2289).
    /// A restarted node (`Unknown`) still learns from anyone what happened while it was down.
    fn merge_view(&mut self, from_peer: bool, prg: &Element) -> (bool, Vec<(String, String)>) {
        let mut stale_sender = false;
        let mut lost: Vec<(String, String)> = Vec::new();
        let relayed = !from_peer && self.state != PrgState::Unknown;
        for (home, server, epoch) in serve_entries(prg) {
            // Only a home or its PRG peer can serve a home's users.
            if !self.cfg.cluster.iter().any(|h| h == home) || !self.may_speak_for(server, home) {
                continue;
            }
            let Some((cur, cur_epoch)) = self.view.get(home).cloned() else {
                continue;
            };
            let pair_home = home == self.me || self.peer() == Some(home);
            if epoch > cur_epoch && relayed && pair_home {
                continue;
            }
            if epoch > cur_epoch {
                if cur == self.me && server != self.me {
                    lost.push((home.to_string(), server.to_string()));
                }
                self.view
                    .insert(home.to_string(), (server.to_string(), epoch));
            } else if epoch < cur_epoch {
                stale_sender = true;
            }
        }
        (stale_sender, lost)
    }

    /// Split brain healed: a partition longer than the timeout made each node of the pair
    /// take over the other's users, and merging the views would swap them. Both nodes see the
    /// same swapped view and resolve it the same way: every home back to itself, at a new
    /// epoch; each gives the other's users back. True when it was a split brain.
    fn heal_split_brain(
        &mut self,
        now: Duration,
        p: &str,
        lost: &mut Vec<(String, String)>,
        out: &mut Vec<PrgAction>,
    ) -> bool {
        if self.server_of(&self.me) != p || self.server_of(p) != self.me {
            return false;
        }
        let epoch = self.view.values().map(|v| v.1).max().unwrap_or(0) + 1;
        self.view.insert(self.me.clone(), (self.me.clone(), epoch));
        self.view.insert(p.to_string(), (p.to_string(), epoch));
        lost.retain(|(h, _)| *h != self.me);
        lost.push((p.to_string(), p.to_string()));
        self.pending = None;
        self.set(now, PrgState::Normal);
        self.broadcast(out);
        for (home, server) in lost.iter() {
            out.push(PrgAction::Release {
                home: home.clone(),
                server: server.clone(),
            });
        }
        true
    }

    /// The peer's failover or fallback request; true when it was taken.
    fn on_request(
        &mut self,
        now: Duration,
        from: &str,
        from_peer: bool,
        action: Option<&str>,
        out: &mut Vec<PrgAction>,
    ) -> bool {
        let take_over = action == Some("failover")
            && from_peer
            && self.cfg.high_availability
            && self.state == PrgState::Normal
            && self.server_of(from) == from;
        if take_over {
            self.claim(from);
            self.set(now, PrgState::TakingOver);
            self.broadcast(out);
            return true;
        }
        if action == Some("fallback") && from_peer && self.server_of(from) == self.me {
            self.claim(from);
            // The peer's users go back to it at the new epoch.
            if let Some(v) = self.view.get_mut(from) {
                v.0 = from.to_string();
            }
            out.push(PrgAction::Release {
                home: from.to_string(),
                server: from.to_string(),
            });
            self.set(now, PrgState::FallingBack);
            self.broadcast(out);
            return true;
        }
        false
    }

    /// Moves the state along the merged view.
    fn follow_view(&mut self, now: Duration, from_peer: bool, lost_any: bool) {
        let follow = lost_any || (from_peer && self.state != PrgState::RunningInFailedMode);
        match self.state {
            PrgState::Unknown if from_peer => self.resolve(now),
            PrgState::FailingOver | PrgState::TakingBack => {
                let done = match self.pending {
                    Some(Pending::Failover(_)) => self.server_of(&self.me) != self.me,
                    Some(Pending::Fallback(_)) => self.server_of(&self.me) == self.me,
                    None => true,
                };
                if done {
                    self.pending = None;
                    self.settle(now);
                }
            }
            PrgState::TakingOver | PrgState::FallingBack | PrgState::Unknown => {}
            // The peer took something over or gave it back: follow the view. A failed
            // request (Running in Failed Mode) stays until the view changes.
            _ if follow => self.settle(now),
            _ => {}
        }
    }

    /// Whether this node started from a database that had run before.
    pub fn restarted(&self) -> bool {
        self.restarted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ha: bool) -> PrgConfig {
        PrgConfig {
            cluster: vec!["n1".into(), "n2".into(), "n3".into()],
            high_availability: ha,
            automatic_fallback: true,
            heartbeat_timeout: HEARTBEAT_TIMEOUT_DEFAULT,
            remote: Vec::new(),
        }
    }

    /// Delivers every `Send` of `actions` addressed to `to` and returns what `to` produced.
    fn deliver(now: Duration, from: &str, actions: &[PrgAction], to: &mut Prg) -> Vec<PrgAction> {
        let mut out = Vec::new();
        for a in actions {
            if let PrgAction::Send { to: t, stanza } = a
                && *t == to.me
            {
                let prg = stanza.child("prg", NS_PRG).expect("prg payload");
                out.extend(to.on_message(now, from, prg));
            }
        }
        out
    }

    fn s(x: u64) -> Duration {
        Duration::from_secs(x)
    }

    #[test]
    fn pairs_are_one_two_and_an_odd_node_is_alone() {
        let c = cfg(true);
        assert_eq!(c.peer_of("n1"), Some("n2"));
        assert_eq!(c.peer_of("n2"), Some("n1"));
        assert_eq!(c.peer_of("n3"), None);
    }

    /// Cluster `a` is a HA pair (a1, a2), cluster `b` one node (b1); each knows the other.
    fn two_clusters() -> (PrgConfig, PrgConfig) {
        let a: Vec<String> = vec!["a1".into(), "a2".into()];
        let b: Vec<String> = vec!["b1".into()];
        let ca = PrgConfig {
            cluster: a.clone(),
            remote: vec![b.clone()],
            ..cfg(true)
        };
        let cb = PrgConfig {
            cluster: b,
            remote: vec![a],
            ..cfg(false)
        };
        (ca, cb)
    }

    #[test]
    fn a_remote_cluster_routes_to_the_backup_after_an_automatic_failover() {
        let (ca, cb) = two_clusters();
        let mut a1 = Prg::new("a1", ca, false);
        let mut b1 = RemoteViews::new(cb.remote.clone());
        a1.handle_timeout(s(0));
        // a2 crashed at 0: a1 takes its users over after the heartbeat timeout.
        let mut sent = Vec::new();
        for t in 1..=90 {
            sent.extend(a1.handle_timeout(s(t)));
        }
        assert_eq!(a1.server_of("a2"), "a1");
        // b1 (cluster b) learns it from a1's heartbeats: a2's users are reached through a1,
        // not the dead a2 (before, every message from cluster b was queued for a2 forever).
        assert_eq!(b1.server_of("a2"), None);
        for a in &sent {
            if let PrgAction::Send { to, stanza } = a
                && to == "b1"
            {
                b1.merge("a1", stanza.child("prg", NS_PRG).expect("prg payload"));
            }
        }
        assert_eq!(b1.server_of("a2"), Some("a1"));
        assert_eq!(b1.server_of("a1"), None, "a1 still serves its own users");
        assert_eq!(b1.peer_of("a2"), Some("a1"));
        // An older epoch (a restarted a2's fresh view) does not move them back; a node
        // outside the home's cluster cannot claim them.
        let view = |server: &str, epoch: &str| {
            Element::new("prg", NS_PRG).with_child(
                Element::new("serve", NS_PRG)
                    .with_attr("home", "a2")
                    .with_attr("server", server)
                    .with_attr("epoch", epoch),
            )
        };
        b1.merge("a2", &view("a2", "0"));
        assert_eq!(b1.server_of("a2"), Some("a1"));
        let mut fresh = RemoteViews::new(cb.remote);
        fresh.merge("x9", &view("a1", "9"));
        fresh.merge("a1", &view("b1", "9"));
        assert_eq!(fresh.server_of("a2"), None);
    }

    #[test]
    fn manual_failover_then_fallback() {
        let (mut a, mut b) = (
            Prg::new("n1", cfg(true), false),
            Prg::new("n2", cfg(true), false),
        );
        a.handle_timeout(s(0));
        b.handle_timeout(s(0));
        let req = a.failover(s(1));
        assert_eq!(a.state(), PrgState::FailingOver);
        let back = deliver(s(1), "n1", &req, &mut b);
        assert_eq!(b.state(), PrgState::TakingOver);
        assert_eq!(b.server_of("n1"), "n2");
        let rel = deliver(s(1), "n2", &back, &mut a);
        assert_eq!(a.state(), PrgState::Idle);
        assert!(rel.contains(&PrgAction::Release {
            home: "n1".into(),
            server: "n2".into()
        }));
        assert!(!a.accepts("n1") && b.accepts("n1"));
        b.handle_timeout(s(2));
        assert_eq!(b.state(), PrgState::RunningInBackupMode);
        let req = a.fallback(s(10));
        assert_eq!(a.state(), PrgState::TakingBack);
        let back = deliver(s(10), "n1", &req, &mut b);
        assert_eq!(b.state(), PrgState::FallingBack);
        assert!(
            back.iter()
                .any(|x| matches!(x, PrgAction::Release { home, .. } if home == "n1"))
        );
        deliver(s(10), "n2", &back, &mut a);
        assert_eq!(a.state(), PrgState::Normal);
        b.handle_timeout(s(11));
        assert_eq!(b.state(), PrgState::Normal);
        assert!(a.accepts("n1") && !b.accepts("n1"));
    }

    #[test]
    fn automatic_failover_after_the_heartbeat_timeout_only_with_high_availability() {
        for ha in [true, false] {
            let mut b = Prg::new("n2", cfg(ha), false);
            b.handle_timeout(s(0));
            b.handle_timeout(s(60));
            assert_eq!(b.state(), PrgState::Normal, "not before the timeout");
            let out = b.handle_timeout(s(61));
            if ha {
                assert_eq!(b.state(), PrgState::TakingOver);
                assert!(b.accepts("n1"));
                assert!(
                    out.iter()
                        .any(|x| matches!(x, PrgAction::Send { to, .. } if to == "n3"))
                );
                b.handle_timeout(s(62));
                assert_eq!(b.state(), PrgState::RunningInBackupMode);
            } else {
                assert_eq!(b.state(), PrgState::Normal);
                assert!(!b.accepts("n1"), "spec 64: nothing moves without HA");
            }
        }
    }

    #[test]
    fn a_high_availability_change_takes_effect_at_once() {
        let (mut a, mut b) = (
            Prg::new("n1", cfg(false), false),
            Prg::new("n2", cfg(false), false),
        );
        a.handle_timeout(s(0));
        b.handle_timeout(s(0));
        assert!(a.failover(s(1)).is_empty(), "refused without HA");
        assert_eq!(a.state(), PrgState::Normal);
        a.set_high_availability(true);
        b.set_high_availability(true);
        assert!(a.config().high_availability);
        let req = a.failover(s(2));
        assert_eq!(a.state(), PrgState::FailingOver);
        deliver(s(2), "n1", &req, &mut b);
        assert_eq!(b.state(), PrgState::TakingOver);
        assert!(b.accepts("n1"));
        // Switched off again: a silent peer is no longer taken over.
        let mut c = Prg::new("n2", cfg(true), false);
        c.handle_timeout(s(0));
        c.set_high_availability(false);
        c.handle_timeout(s(61));
        assert_eq!(c.state(), PrgState::Normal);
        assert!(!c.accepts("n1"));
    }

    #[test]
    fn restarted_node_learns_it_failed_over_and_falls_back_automatically() {
        let mut b = Prg::new("n2", cfg(true), false);
        b.handle_timeout(s(0));
        b.handle_timeout(s(61));
        let mut a = Prg::new("n1", cfg(true), true);
        assert_eq!(a.state(), PrgState::Unknown);
        assert!(!a.accepts("n1"));
        let hello = a.handle_timeout(s(100));
        // b answers a stale view at once.
        let back = deliver(s(100), "n1", &hello, &mut b);
        deliver(s(100), "n2", &back, &mut a);
        assert_eq!(a.state(), PrgState::FailedOver);
        // The peer keeps heartbeating; 30 minutes after a is healthy it asks for its users.
        let hb = b.handle_timeout(s(99) + AUTO_FALLBACK_DELAY);
        deliver(s(99) + AUTO_FALLBACK_DELAY, "n2", &hb, &mut a);
        assert_eq!(a.state(), PrgState::FailedOver);
        let req = a.handle_timeout(s(100) + AUTO_FALLBACK_DELAY);
        assert_eq!(a.state(), PrgState::TakingBack);
        let back = deliver(s(2000), "n1", &req, &mut b);
        deliver(s(2000), "n2", &back, &mut a);
        assert_eq!(a.state(), PrgState::Normal);
        assert!(a.accepts("n1"));
    }

    #[test]
    fn a_healed_split_brain_gives_every_home_back_to_itself() {
        let (mut a, mut b) = (
            Prg::new("n1", cfg(true), false),
            Prg::new("n2", cfg(true), false),
        );
        a.handle_timeout(s(0));
        b.handle_timeout(s(0));
        // Partitioned past the timeout: each takes the other's users over.
        let from_a = a.handle_timeout(s(61));
        let from_b = b.handle_timeout(s(61));
        assert!(a.accepts("n2") && b.accepts("n1"));
        let back_b = deliver(s(62), "n1", &from_a, &mut b);
        let back_a = deliver(s(62), "n2", &from_b, &mut a);
        for (p, other) in [(&a, "n2"), (&b, "n1")] {
            assert_eq!(p.state(), PrgState::Normal);
            assert!(p.accepts(&p.me) && !p.accepts(other));
        }
        assert!(back_a.iter().any(
            |x| matches!(x, PrgAction::Release { home, server } if home == "n2" && server == "n2")
        ));
        assert!(back_b.iter().any(
            |x| matches!(x, PrgAction::Release { home, server } if home == "n1" && server == "n1")
        ));
        assert_eq!(a.view, b.view, "both resolve the same way");
    }

    /// Runs the nodes of `cfg(true)` (n1, n2 a pair, n3 alone) second by second up to `secs`,
    /// delivering every PRG message at once except between n1 and n2 while `split(t)`.
    /// Returns the releases each node made, with their time.
    fn run_three(secs: u64, split: impl Fn(u64) -> bool) -> (Vec<Prg>, Vec<(u64, String, String)>) {
        let mut nodes: Vec<Prg> = ["n1", "n2", "n3"]
            .iter()
            .map(|n| Prg::new(n, cfg(true), false))
            .collect();
        let mut releases = Vec::new();
        for t in 0..=secs {
            let mut queue: std::collections::VecDeque<(String, PrgAction)> = Default::default();
            for n in nodes.iter_mut() {
                let me = n.me.clone();
                queue.extend(n.handle_timeout(s(t)).into_iter().map(|a| (me.clone(), a)));
            }
            // Each change is answered by at most a few heartbeats: bounded well below this.
            for _ in 0..10_000 {
                let Some((from, action)) = queue.pop_front() else {
                    break;
                };
                match action {
                    PrgAction::Release { home, .. } => releases.push((t, from, home)),
                    PrgAction::Send { to, stanza } => {
                        let cut = split(t) && from != to && [&from, &to].iter().all(|h| *h != "n3");
                        let Some(dest) = nodes.iter_mut().find(|n| n.me == to) else {
                            continue;
                        };
                        if cut {
                            continue;
                        }
                        let prg = stanza.child("prg", NS_PRG).expect("prg payload");
                        let out = dest.on_message(s(t), &from, prg);
                        queue.extend(out.into_iter().map(|a| (to.clone(), a)));
                    }
                }
            }
        }
        (nodes, releases)
    }

    /// Explore seed 2289: a partition of only the pair, longer than the heartbeat timeout,
    /// while each still hears the other's view through the rest of the cluster. The PRG
    /// heartbeat is the pair's own ("each node in the presence redundancy group monitors the
    /// status, or heartbeat, of the peer node"): both take the other over (split brain), and
    /// a third node's copy of the other's claim must not make either give its own users away,
    /// nor heal and take over again and again while the pair is still apart.
    #[test]
    fn a_partition_of_only_the_pair_splits_brain_once_and_heals_when_it_ends() {
        let split = |t: u64| (10..103).contains(&t);
        let (mid, rel) = run_three(100, split);
        for n in &mid[..2] {
            assert_eq!(
                n.state(),
                PrgState::RunningInBackupMode,
                "{} split brain",
                n.me
            );
        }
        let own: Vec<_> = rel.iter().filter(|(_, node, home)| node == home).collect();
        assert!(own.is_empty(), "a node released its own users: {own:?}");
        assert!(rel.is_empty(), "nobody else was released: {rel:?}");
        let (end, rel) = run_three(200, split);
        for n in &end[..2] {
            assert_eq!(n.state(), PrgState::Normal, "{} healed", n.me);
            assert!(n.accepts(&n.me.clone()));
            assert!(
                n.transitions() <= 4,
                "{} flapped: {} transitions",
                n.me,
                n.transitions()
            );
        }
        assert_eq!(end[2].server_of("n1"), "n1");
        assert_eq!(end[2].server_of("n2"), "n2");
        assert!(
            rel.iter().all(|(t, node, home)| *t >= 103 && node != home),
            "{rel:?}"
        );
    }

    #[test]
    fn a_view_entry_naming_a_node_outside_the_pair_is_ignored() {
        let mut b = Prg::new("n2", cfg(true), false);
        let bad = Element::new("prg", NS_PRG)
            .with_attr("action", "heartbeat")
            .with_child(
                Element::new("serve", NS_PRG)
                    .with_attr("home", "n1")
                    .with_attr("server", "n3")
                    .with_attr("epoch", "9"),
            );
        b.on_message(s(1), "n3", &bad);
        assert_eq!(b.server_of("n1"), "n1");
    }
}
