//! The I/O driver of an IM&P node: accepts c2s connections on any [`Net`] backend and shuttles
//! bytes between sockets and the sans-IO [`ImpNode`].
//!
//! One task per connection; every task shares the node (single-threaded, `Rc<RefCell<_>>`) and
//! a table of per-connection outbound queues. Queues are bounded: a client that does not read
//! is disconnected rather than allowed to grow the node's memory. A stream the node closes
//! with [`Transmit::Closing`] (a `see-other-host` at a failover or fallback) is still read
//! until the client closes its side or [`CLOSE_WAIT_MAX`] passes (RFC 6120 4.4).
//!
//! Node-to-node links ([`ROUTER_PORT`]): inbound links are accepted like client connections and
//! fed to the core ([`ImpNode::open_router`]); outbound links are owned here, one task per peer,
//! opened lazily when the core first emits a [`PeerTransmit`] for that peer. A link keeps itself
//! alive with XEP-0199 pings (turmoil's TCP never retransmits, so a dead stream is noticed only
//! by silence) and reconnects with exponential backoff. Stanzas wait in a bounded per-peer queue
//! while the link is down; what was written to a stream that then died is lost, as with XMPP
//! without stream management.

use super::node::{CLOSE_WAIT_MAX, ConnId, ImpNode, PeerTransmit, Transmit};
use crate::accept::{AcceptErrors, accept};
use crate::brake::Brake;
use connector::io::net::Net;
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;

/// The XMPP client port.
pub const C2S_PORT: u16 = 5222;
/// Node-to-node stanza routing: stands in for the peering of IM&P's Cisco XCP routers inside
/// a cluster (the real port is internal to IM&P; this one is the project's choice).
pub const ROUTER_PORT: u16 = 7005;
/// Stanzas queued per peer link. A peer restarting for a minute at a few hundred stanzas per
/// second fits; beyond it stanzas are dropped (counted, logged) rather than grow memory.
pub const PEER_QUEUE_MAX: usize = 16_384;
/// Keepalive ping interval on outbound links.
pub const LINK_PING_INTERVAL: Duration = Duration::from_secs(10);
/// An outbound link silent this long is dead: three missed pings.
pub const LINK_SILENCE_MAX: Duration = Duration::from_secs(30);
/// Connect attempts give up after this long: a connect to a crashed host is never refused,
/// it hangs (the simulated network drops its packets, as a real one does).
pub const LINK_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First reconnect delay of a link.
pub const LINK_BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest reconnect delay of a link: a restarted peer is reached within this.
pub const LINK_BACKOFF_MAX: Duration = Duration::from_secs(8);
/// Outbound stanzas queued per connection before the node gives up on a slow reader. A
/// Jabber client drains its socket continuously; 1,024 covers a burst of offline messages.
pub const OUT_QUEUE_MAX: usize = 1_024;
/// Outbound stanzas queued per component link. One link multiplexes every session of a
/// connector node (15,000 on a Large node, spec 2): a burst of presence and carbons for all of
/// them must fit, or the node would drop the link as a slow reader and every session with it.
pub const COMPONENT_QUEUE_MAX: usize = 131_072;
/// How long a c2s client may take from connect to a successful SASL login. Jabber gives up
/// on a login after 30 s itself; past a minute the stream is a peer holding a socket.
pub const C2S_AUTH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a logged-in c2s stream may stay silent before the node ends it with a
/// `<connection-timeout/>` stream error (RFC 6120 4.6.1 and 4.9.3.4: a party may close a
/// stream it believes dead; the keepalive method and interval are the deployment's). The
/// Jabber client model sends an XEP-0199 ping every 30 s and gives up on an unanswered one
/// after 30 s more, so a live client is never silent for a minute; four ping intervals leave
/// room for a busy client and still free the socket, session and presence of one that vanished
/// (a FIN lost in a partition never arrives).
pub const IDLE_TIMEOUT_C2S: Duration = Duration::from_secs(120);
/// How long an authenticated XEP-0114 component link may stay silent before the node ends it
/// with a `<connection-timeout/>` stream error. The connector pings its link every 30 s
/// (`connector::io::driver::LINK_PING_INTERVAL`) and drops it after 30 s unanswered, so a live
/// link is never silent for a minute; four intervals, as for c2s.
pub const IDLE_TIMEOUT_COMPONENT: Duration = Duration::from_secs(120);

/// Period of the PRG timer ([`ImpNode::prg_handle_timeout`]): heartbeats are every 15 s and
/// timeouts are tens of seconds, so one second is precise enough and cheap. The timer also
/// flushes what a fault injected from outside the host (manual failover, fallback) queued.
pub const PRG_TICK: Duration = Duration::from_secs(1);

type Writers = Rc<RefCell<BTreeMap<ConnId, mpsc::Sender<Transmit>>>>;
/// Outbound peer links by peer host: the queue feeding each link task.
type Links = Rc<RefCell<BTreeMap<String, mpsc::Sender<String>>>>;

/// Serves c2s on `port` until the listener fails. Restartable: state that must survive a
/// restart lives in the node's `NodeDb`, not here. Stanzas for other nodes leave over
/// outbound links; to receive from peers, also run [`serve`] (or use it instead).
pub async fn serve_c2s<N: Net>(
    net: N,
    node: Rc<RefCell<ImpNode>>,
    port: u16,
) -> std::io::Result<()> {
    let links: Links = Rc::default();
    accept_loop(net, node, Rc::default(), links, port, false).await
}

/// Serves a whole node: c2s on [`C2S_PORT`] and the node-to-node router on [`ROUTER_PORT`],
/// sharing one set of connection queues and peer links. Returns when a listener fails.
pub async fn serve<N: Net>(net: N, node: Rc<RefCell<ImpNode>>) -> std::io::Result<()> {
    let writers: Writers = Rc::default();
    let links: Links = Rc::default();
    tokio::try_join!(
        accept_loop(
            net.clone(),
            node.clone(),
            writers.clone(),
            links.clone(),
            C2S_PORT,
            false
        ),
        accept_loop(
            net.clone(),
            node.clone(),
            writers.clone(),
            links.clone(),
            ROUTER_PORT,
            true
        ),
        prg_timer(net, node, writers, links),
    )?;
    Ok(())
}

/// Runs the node's PRG timer every [`PRG_TICK`] and sends what it produced. A node without
/// PRG settings never needs it: the task then just waits.
async fn prg_timer<N: Net>(
    net: N,
    node: Rc<RefCell<ImpNode>>,
    writers: Writers,
    links: Links,
) -> std::io::Result<()> {
    if node.borrow().prg().is_none() {
        return std::future::pending().await;
    }
    let mut tick = tokio::time::interval(PRG_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        node.borrow_mut().prg_handle_timeout(net.now());
        dispatch(&net, &node, &writers, &links);
    }
}

async fn accept_loop<N: Net>(
    net: N,
    node: Rc<RefCell<ImpNode>>,
    writers: Writers,
    links: Links,
    port: u16,
    router: bool,
) -> std::io::Result<()> {
    let listener = net.bind(port).await?;
    let what = if router { "router" } else { "c2s" };
    let mut errors = AcceptErrors::default();
    let brake = Rc::new(RefCell::new(Brake::default()));
    loop {
        let (stream, peer) = accept(&net, &listener, what, &mut errors).await;
        let id = if router {
            node.borrow_mut().open_router()
        } else {
            node.borrow_mut().open()
        };
        let (tx, rx) = mpsc::channel(OUT_QUEUE_MAX);
        writers.borrow_mut().insert(id, tx);
        tokio::task::spawn_local(connection(
            net.clone(),
            node.clone(),
            Endpoint::Node,
            writers.clone(),
            links.clone(),
            id,
            stream,
            rx,
            // A peer pings its outbound link; silence means the peer or the path is gone (a
            // FIN lost in a partition never arrives), so the inbound side is closed too.
            router.then_some(LINK_SILENCE_MAX),
            (!router).then(|| (brake.clone(), peer.ip())),
        ));
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one task's whole context; a struct would only be unpacked again here"
)]
async fn connection<N: Net>(
    net: N,
    node: Rc<RefCell<ImpNode>>,
    endpoint: Endpoint,
    writers: Writers,
    links: Links,
    id: ConnId,
    stream: N::Stream,
    mut rx: mpsc::Receiver<Transmit>,
    idle_max: Option<Duration>,
    guard: Option<(Rc<RefCell<Brake>>, std::net::IpAddr)>,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut last_tx = net.now();
    let mut clocks = Clocks::new(net.now(), endpoint.auth_timeout(), idle_max);
    let (whitespace, mut keepalive) = whitespace_keepalive(&node, &endpoint, idle_max);
    loop {
        let open = clocks.closing_until.is_none();
        let authenticated = endpoint.authenticated(&node, id);
        let idle_timeout = endpoint.idle_timeout(&node);
        let [end_left, logged_in_left, auth_left] =
            clocks.left(net.now(), authenticated, idle_timeout);
        tokio::select! {
            biased;
            out = rx.recv() => {
                let Some(first) = out else { break };
                if !write_out(&mut wr, first, &mut rx, &mut clocks.closing_until, net.now()).await {
                    break;
                }
                last_tx = net.now();
            }
            r = crate::read::read_some(&mut rd) => match r {
                Err(_) => break,
                Ok(bytes) if bytes.is_empty() => break,
                Ok(bytes) => {
                    clocks.last_rx = net.now();
                    take_input(&net, &node, &endpoint, id, &bytes, guard.as_ref()).await;
                    dispatch(&net, &node, &writers, &links);
                }
            },
            _ = tokio::time::sleep(end_left.unwrap_or_default()), if end_left.is_some() => {
                tracing::debug!(id, "inbound router link silent, or closed stream not answered");
                break;
            }
            _ = tokio::time::sleep(logged_in_left.unwrap_or_default()), if logged_in_left.is_some() => {
                clocks.timed_out = true;
                endpoint.idle_timed_out(&node, id);
                dispatch(&net, &node, &writers, &links);
            }
            _ = tokio::time::sleep(auth_left.unwrap_or_default()), if auth_left.is_some() => {
                endpoint.auth_timed_out(&node, id);
                dispatch(&net, &node, &writers, &links);
            }
            _ = tick(&mut keepalive), if open => {
                let authed = endpoint.authenticated(&node, id);
                let quiet = (clocks.last_rx, &mut last_tx);
                if !whitespace_tick(net.now(), whitespace, authed, quiet, &mut wr).await {
                    tracing::debug!(id, "c2s stream silent for three keepalive intervals: closing");
                    break;
                }
            }
        }
    }
    writers.borrow_mut().remove(&id);
    endpoint.closed(net.now(), &node, id);
    dispatch(&net, &node, &writers, &links);
}

/// What a connection's timers count from.
struct Clocks {
    last_rx: Duration,
    auth_deadline: Duration,
    /// An inbound router link's silence limit; `None` for c2s and component streams.
    idle_max: Option<Duration>,
    /// Set once the idle timeout fired: the stream error and close are queued, not fired again.
    timed_out: bool,
    /// Set once the node wrote its closing tag: from then on the stream waits for the client
    /// alone (no idle, login or keepalive timers), until then at most.
    closing_until: Option<Duration>,
}

impl Clocks {
    /// A connection opened at `now`.
    fn new(now: Duration, auth_timeout: Duration, idle_max: Option<Duration>) -> Self {
        Self {
            last_rx: now,
            auth_deadline: now + auth_timeout,
            idle_max,
            timed_out: false,
            closing_until: None,
        }
    }

    /// How long until each timer fires (`None`: not armed): the end of the connection (a
    /// router link's silence limit, or a closed stream's wait: router links never close that
    /// way), the logged-in idle timeout (`idle_timeout` of silence), the login timeout.
    fn left(
        &self,
        now: Duration,
        authenticated: bool,
        idle_timeout: Duration,
    ) -> [Option<Duration>; 3] {
        let open = self.closing_until.is_none();
        let silent = now.saturating_sub(self.last_rx);
        let end = match self.closing_until {
            Some(t) => Some(t.saturating_sub(now)),
            None => self.idle_max.map(|max| max.saturating_sub(silent)),
        };
        let logged_in = (self.idle_max.is_none() && authenticated && !self.timed_out && open)
            .then(|| idle_timeout.saturating_sub(silent));
        let auth = (!authenticated && open).then(|| self.auth_deadline.saturating_sub(now));
        [end, logged_in, auth]
    }
}

/// The whitespace keepalive interval of a connection and its timer: only c2s streams (the
/// node's, without the router links' idle limit) may be kept alive with whitespace.
fn whitespace_keepalive(
    node: &Rc<RefCell<ImpNode>>,
    endpoint: &Endpoint,
    idle_max: Option<Duration>,
) -> (Option<Duration>, Option<tokio::time::Interval>) {
    let every = match endpoint {
        Endpoint::Node if idle_max.is_none() => node.borrow().whitespace_keepalive(),
        _ => None,
    };
    (every, every.map(tokio::time::interval))
}

/// The next tick of an optional interval (never, without one).
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// A whitespace keepalive tick of a c2s stream (RFC 6120 4.6.1, sent both ways as XEP-0304
/// describes): a space if nothing else was written for an interval. False when the stream is
/// to close: a logged-in client sends its own keepalives, so three silent intervals mean the
/// client or the path is gone (a FIN lost in a partition never arrives).
async fn whitespace_tick<W: tokio::io::AsyncWrite + Unpin>(
    now: Duration,
    every: Option<Duration>,
    authenticated: bool,
    (last_rx, last_tx): (Duration, &mut Duration),
    wr: &mut W,
) -> bool {
    let Some(every) = every else { return true };
    if authenticated && now.saturating_sub(last_rx) > every * 3 {
        return false;
    }
    if now.saturating_sub(*last_tx) >= every {
        if wr.write_all(b" ").await.is_err() {
            return false;
        }
        *last_tx = now;
    }
    true
}

/// Hands received bytes to the endpoint; a wrong c2s password then waits the brake's delay
/// (before the failure is dispatched).
async fn take_input<N: Net>(
    net: &N,
    node: &Rc<RefCell<ImpNode>>,
    endpoint: &Endpoint,
    id: ConnId,
    bytes: &[u8],
    guard: Option<&(Rc<RefCell<Brake>>, std::net::IpAddr)>,
) {
    let wrong_before = node.borrow().stats().wrong_passwords;
    let authed_before = node.borrow().is_authenticated(id);
    endpoint.input(net.now(), node, id, bytes);
    if let Some((brake, source)) = guard {
        // Both read before the await: the node is not borrowed across it.
        let wrong = node.borrow().stats().wrong_passwords > wrong_before;
        let authed = !wrong && !authed_before && node.borrow().is_authenticated(id);
        let account = node.borrow().last_auth_account().unwrap_or("").to_owned();
        brake_c2s(net, brake, (*source, &account), wrong, authed).await;
    }
}

/// The brake on c2s password guessing: a wrong password waits its delay (per source and
/// account) before the failure is sent; a login forgives its account.
async fn brake_c2s<N: Net>(
    net: &N,
    brake: &Rc<RefCell<Brake>>,
    (source, account): (std::net::IpAddr, &str),
    wrong: bool,
    logged_in: bool,
) {
    if wrong {
        let wait = brake.borrow_mut().failed(net.now(), source, account, "c2s");
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    } else if logged_in {
        brake.borrow_mut().succeeded(account);
    }
}

/// Who takes a connection's bytes: the node itself (c2s, router links) or the component
/// service in front of it (port 7400). Everything else about a connection is the same.
enum Endpoint {
    Node,
    Component(Rc<RefCell<super::component::ComponentService>>),
}

impl Endpoint {
    fn input(&self, now: Duration, node: &Rc<RefCell<ImpNode>>, id: ConnId, bytes: &[u8]) {
        match self {
            Endpoint::Node => node.borrow_mut().input(now, id, bytes),
            Endpoint::Component(svc) => {
                svc.borrow_mut()
                    .input(now, &mut node.borrow_mut(), id, bytes)
            }
        }
    }

    /// How long the connection may stay unauthenticated.
    fn auth_timeout(&self) -> Duration {
        match self {
            Endpoint::Node => C2S_AUTH_TIMEOUT,
            Endpoint::Component(_) => super::component::COMPONENT_HANDSHAKE_TIMEOUT,
        }
    }

    fn authenticated(&self, node: &Rc<RefCell<ImpNode>>, id: ConnId) -> bool {
        match self {
            Endpoint::Node => node.borrow().is_authenticated(id),
            Endpoint::Component(svc) => svc.borrow().is_authenticated(id),
        }
    }

    /// How long the connection may stay silent once authenticated.
    fn idle_timeout(&self, node: &Rc<RefCell<ImpNode>>) -> Duration {
        match self {
            Endpoint::Node => node.borrow().c2s_idle_timeout(),
            Endpoint::Component(_) => IDLE_TIMEOUT_COMPONENT,
        }
    }

    fn idle_timed_out(&self, node: &Rc<RefCell<ImpNode>>, id: ConnId) {
        match self {
            Endpoint::Node => node.borrow_mut().idle_timed_out(id),
            Endpoint::Component(svc) => svc.borrow_mut().idle_timed_out(&mut node.borrow_mut(), id),
        }
    }

    fn auth_timed_out(&self, node: &Rc<RefCell<ImpNode>>, id: ConnId) {
        match self {
            Endpoint::Node => node.borrow_mut().auth_timed_out(id),
            Endpoint::Component(svc) => {
                svc.borrow_mut()
                    .handshake_timed_out(&mut node.borrow_mut(), id);
            }
        }
    }

    fn closed(&self, now: Duration, node: &Rc<RefCell<ImpNode>>, id: ConnId) {
        match self {
            Endpoint::Node => node.borrow_mut().closed(now, id),
            Endpoint::Component(svc) => svc.borrow_mut().closed(now, &mut node.borrow_mut(), id),
        }
    }
}

/// Writes what the node queued for a connection; false once it is closed. The node's closing
/// tag starts the wait for the client's ([`CLOSE_WAIT_MAX`] from `now`).
async fn write_out<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    first: Transmit,
    rx: &mut mpsc::Receiver<Transmit>,
    closing_until: &mut Option<Duration>,
    now: Duration,
) -> bool {
    match write_batch(wr, first, rx, closing_until.is_some()).await {
        Wrote::Closed => false,
        Wrote::Closing => {
            closing_until.get_or_insert(now + CLOSE_WAIT_MAX);
            true
        }
        Wrote::Open => true,
    }
}

/// What a write left of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrote {
    /// Open both ways.
    Open,
    /// The node's closing tag is out ([`Transmit::Closing`]): read on, write nothing more.
    Closing,
    /// Closed, or the write failed.
    Closed,
}

/// Writes `first` and everything else already queued in one write, up to a close. Once the
/// node closed its stream (`closing`), bytes are dropped: nothing follows a closing tag.
async fn write_batch<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    first: Transmit,
    rx: &mut mpsc::Receiver<Transmit>,
    closing: bool,
) -> Wrote {
    let mut out = String::new();
    let mut end = None;
    let mut next = Some(first);
    while let Some(t) = next {
        match t {
            Transmit::Bytes(b) if !closing => out.push_str(&b),
            Transmit::Bytes(_) => {}
            Transmit::Close => {
                end = Some(Wrote::Closed);
                break;
            }
            Transmit::Closing => {
                end = Some(Wrote::Closing);
                break;
            }
        }
        next = rx.try_recv().ok();
    }
    if !out.is_empty() && wr.write_all(out.as_bytes()).await.is_err() {
        return Wrote::Closed;
    }
    if end == Some(Wrote::Closed) {
        let _ = wr.shutdown().await;
    }
    end.unwrap_or(if closing { Wrote::Closing } else { Wrote::Open })
}

/// Moves the node's outputs to the connections' queues and the peer links' queues.
fn dispatch<N: Net>(net: &N, node: &Rc<RefCell<ImpNode>>, writers: &Writers, links: &Links) {
    loop {
        dispatch_peers(net, node, links);
        let next = node.borrow_mut().poll_transmit();
        let Some((conn, t)) = next else { return };
        let full = match writers.borrow().get(&conn) {
            Some(tx) => tx.try_send(t).is_err(),
            None => false,
        };
        if full {
            tracing::warn!(conn, "outbound queue full: disconnecting slow client");
            writers.borrow_mut().remove(&conn);
            node.borrow_mut().closed(Default::default(), conn);
        }
    }
}

/// Moves stanzas for peer nodes to their links, starting a link on first use.
fn dispatch_peers<N: Net>(net: &N, node: &Rc<RefCell<ImpNode>>, links: &Links) {
    loop {
        let next = node.borrow_mut().poll_peer();
        let Some(PeerTransmit { node: peer, bytes }) = next else {
            return;
        };
        let tx = links.borrow().get(&peer).cloned();
        let tx = match tx {
            Some(tx) => tx,
            None => {
                let (tx, rx) = mpsc::channel(PEER_QUEUE_MAX);
                links.borrow_mut().insert(peer.clone(), tx.clone());
                tokio::task::spawn_local(link(net.clone(), node.clone(), peer.clone(), rx));
                tx
            }
        };
        if tx.try_send(bytes).is_err() {
            tracing::warn!(%peer, "peer link queue full: stanza dropped");
        }
    }
}

/// The outbound link to `peer`: connects, sends queued stanzas, pings, and reconnects after
/// any failure. Runs as long as the host.
async fn link<N: Net>(
    net: N,
    node: Rc<RefCell<ImpNode>>,
    peer: String,
    mut rx: mpsc::Receiver<String>,
) {
    let mut backoff = LINK_BACKOFF_MIN;
    // Stanzas taken from the queue and not written: a batch whose write failed (it may have
    // been partly written; the peer's parser discards a torn stanza with the stream), and
    // what waited while the link was down. They go first on the next stream.
    let mut down = Down {
        carry: VecDeque::new(),
        routes: node.borrow().routes(),
    };
    loop {
        let connect = tokio::time::timeout(LINK_CONNECT_TIMEOUT, net.connect(&peer, ROUTER_PORT));
        let connected = down.wait(&net, &node, &peer, &mut rx, connect).await;
        if let Ok(Ok(stream)) = connected {
            let why = link_session(&net, &node, &peer, stream, &mut rx, &mut down.carry).await;
            tracing::debug!(%peer, why, "router link down");
            if why == "queue closed" {
                return;
            }
            backoff = LINK_BACKOFF_MIN;
        }
        let pause = tokio::time::sleep(backoff);
        down.wait(&net, &node, &peer, &mut rx, pause).await;
        backoff = (backoff * 2).min(LINK_BACKOFF_MAX);
    }
}

/// What a link holds while it cannot reach its peer.
struct Down {
    /// Stanzas not written yet, in order; at most [`PEER_QUEUE_MAX`] (the queue holds the
    /// rest, and drops past its own bound).
    carry: VecDeque<String>,
    /// The node's routes when the waiting stanzas were last routed.
    routes: Vec<(String, String)>,
}

impl Down {
    /// Waits for `fut` (a connect attempt, or the pause before the next): every
    /// [`PRG_TICK`], if the node's routes changed meanwhile (a PRG takeover of the peer's
    /// users), the stanzas waiting for the peer are routed again by the node
    /// ([`ImpNode::reroute_waiting`]); those still for the peer keep waiting, in order. The
    /// node's outputs leave with the PRG timer's next dispatch, within a tick.
    async fn wait<N: Net, F: std::future::Future>(
        &mut self,
        net: &N,
        node: &Rc<RefCell<ImpNode>>,
        peer: &str,
        rx: &mut mpsc::Receiver<String>,
        fut: F,
    ) -> F::Output {
        tokio::pin!(fut);
        let mut tick = tokio::time::interval(PRG_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                out = &mut fut => return out,
                _ = tick.tick() => self.reroute(net, node, peer, rx),
            }
        }
    }

    fn reroute<N: Net>(
        &mut self,
        net: &N,
        node: &Rc<RefCell<ImpNode>>,
        peer: &str,
        rx: &mut mpsc::Receiver<String>,
    ) {
        let routes = node.borrow().routes();
        if routes == self.routes {
            return;
        }
        self.routes = routes;
        while self.carry.len() < PEER_QUEUE_MAX {
            let Ok(b) = rx.try_recv() else { break };
            self.carry.push_back(b);
        }
        let waiting = std::mem::take(&mut self.carry).into();
        let kept = node.borrow_mut().reroute_waiting(net.now(), peer, waiting);
        self.carry = kept.into();
    }
}

/// One connected stream of a link; returns why it ended.
async fn link_session<N: Net>(
    net: &N,
    node: &Rc<RefCell<ImpNode>>,
    peer: &str,
    stream: N::Stream,
    rx: &mut mpsc::Receiver<String>,
    carry: &mut VecDeque<String>,
) -> &'static str {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let header = node.borrow().router_header(peer);
    if wr.write_all(header.as_bytes()).await.is_err() {
        return "write failed";
    }
    if !carry.is_empty() {
        let first: String = carry.iter().map(String::as_str).collect();
        if wr.write_all(first.as_bytes()).await.is_err() {
            return "write failed";
        }
        carry.clear();
    }
    let mut last_rx = net.now();
    let mut ping = tokio::time::interval(LINK_PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            r = crate::read::read_some(&mut rd) => match r {
                // The peer answers pings and sends nothing else on this stream: any bytes are
                // a sign of life, their content is not needed.
                Err(_) => return "peer closed",
                Ok(bytes) if bytes.is_empty() => return "peer closed",
                Ok(_) => last_rx = net.now(),
            },
            out = rx.recv() => {
                let Some(first) = out else { return "queue closed" };
                carry.push_back(first);
                while let Ok(more) = rx.try_recv() {
                    carry.push_back(more);
                }
                let batch: String = carry.iter().map(String::as_str).collect();
                if wr.write_all(batch.as_bytes()).await.is_err() {
                    return "write failed";
                }
                carry.clear();
            }
            _ = ping.tick() => {
                if net.now().saturating_sub(last_rx) > LINK_SILENCE_MAX {
                    return "silent: keepalive timed out";
                }
                let p = node.borrow_mut().router_ping(peer);
                if wr.write_all(p.as_bytes()).await.is_err() {
                    return "write failed";
                }
            }
        }
    }
}

/// The ports [`serve_node`] listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePorts {
    /// XMPP c2s ([`C2S_PORT`]).
    pub c2s: u16,
    /// XEP-0114 component port ([`super::component::COMPONENT_PORT`]).
    pub component: u16,
    /// AXL ([`super::axl::AXL_PORT`]).
    pub axl: u16,
    /// The node-to-node router ([`ROUTER_PORT`]); `None` for a node alone (real mode).
    pub router: Option<u16>,
}

impl Default for NodePorts {
    fn default() -> Self {
        Self {
            c2s: C2S_PORT,
            component: super::component::COMPONENT_PORT,
            axl: super::axl::AXL_PORT,
            router: Some(ROUTER_PORT),
        }
    }
}

/// Serves every port of one node: c2s, the component port, AXL and (optionally) the router,
/// sharing one set of connection queues so that a stanza from a Jabber client reaches a
/// connector session and back. `on_ready` runs once the listeners are bound. Returns when a
/// listener fails.
pub async fn serve_node<N: Net>(
    net: N,
    node: Rc<RefCell<ImpNode>>,
    component: Rc<RefCell<super::component::ComponentService>>,
    axl: Rc<RefCell<super::axl::AxlService>>,
    ports: NodePorts,
    on_ready: impl FnOnce(),
) -> std::io::Result<()> {
    let writers: Writers = Rc::default();
    let links: Links = Rc::default();
    let component_listener = net.bind(ports.component).await?;
    let router = async {
        match ports.router {
            Some(port) => {
                accept_loop(
                    net.clone(),
                    node.clone(),
                    writers.clone(),
                    links.clone(),
                    port,
                    true,
                )
                .await
            }
            None => std::future::pending().await,
        }
    };
    let ready = async {
        // The accept loops before this one in the join have been polled once, so their
        // listeners are bound (binding an IP address completes on its first poll).
        tokio::task::yield_now().await;
        on_ready();
        std::future::pending::<std::io::Result<()>>().await
    };
    tokio::try_join!(
        accept_loop(
            net.clone(),
            node.clone(),
            writers.clone(),
            links.clone(),
            ports.c2s,
            false
        ),
        router,
        accept_component(
            net.clone(),
            node.clone(),
            component,
            writers.clone(),
            links.clone(),
            component_listener
        ),
        super::axl::serve_axl(net.clone(), axl, ports.axl),
        prg_timer(net.clone(), node.clone(), writers.clone(), links.clone()),
        ready,
    )?;
    Ok(())
}

async fn accept_component<N: Net>(
    net: N,
    node: Rc<RefCell<ImpNode>>,
    svc: Rc<RefCell<super::component::ComponentService>>,
    writers: Writers,
    links: Links,
    listener: N::Listener,
) -> std::io::Result<()> {
    let mut errors = AcceptErrors::default();
    loop {
        let (stream, _) = accept(&net, &listener, "component", &mut errors).await;
        let id = svc.borrow_mut().open(&mut node.borrow_mut());
        let (tx, rx) = mpsc::channel(COMPONENT_QUEUE_MAX);
        writers.borrow_mut().insert(id, tx);
        // A link refused at open (too many links) has its error and close queued already.
        dispatch(&net, &node, &writers, &links);
        tokio::task::spawn_local(connection(
            net.clone(),
            node.clone(),
            Endpoint::Component(svc.clone()),
            writers.clone(),
            links.clone(),
            id,
            stream,
            rx,
            None,
            None,
        ));
    }
}
