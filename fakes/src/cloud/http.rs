//! The cloud's I/O driver: serves [`Cloud`] over HTTP/1.1 (hyper 1) and WebSocket
//! (tokio-tungstenite) on any [`Net`] backend, plus the client helpers the connector and the
//! Webex App model use ([`HttpClient`], [`http_request`], [`ws_connect`]).
//!
//! ## Server
//!
//! - One task per TCP connection: `hyper::server::conn::http1` with a [`TokioTimer`] (without
//!   it hyper's header timeout silently never fires) and keep-alive. Bodies are read through
//!   `http_body_util::Limited` at [`BODY_BYTES_MAX`]: a longer one is answered 413 without
//!   buffering it.
//! - `GET /v1/events` with `Upgrade: websocket` and a user or connector bearer token becomes a
//!   WebSocket (RFC 6455 accept computed here, then `WebSocketStream::from_raw_socket` on the
//!   upgraded connection). Events are JSON text frames ([`Event`]). The server pings every
//!   [`WS_PING_INTERVAL`] and closes a socket silent for [`WS_IDLE_TIMEOUT`] (turmoil's TCP
//!   never retransmits: keepalives are how both ends notice a dead link). Each socket has a
//!   queue of [`WS_QUEUE_MAX`] events; events past it wait in the socket's backlog (at most
//!   [`WS_BACKLOG_MAX`]) and move to the queue as the socket sends, in order. Only a subscriber
//!   that falls further behind than both is disconnected and must catch up over REST.
//! - A ticker calls [`Cloud::tick`] every [`TICK_INTERVAL`] and after each request the events
//!   are moved to the sockets.
//! - With a remote KMS ([`Cloud::with_remote_kms`]) one relay task owns up to
//!   [`KMS_CALLS_IN_FLIGHT_PER_NODE_MAX`] keep-alive connections to the KMS host
//!   ([`KmsClient`]) per connector node served (at most [`KMS_CALLS_IN_FLIGHT_MAX`]) and
//!   runs, in queue order, the KMS calls of waiting requests ([`Outcome::Kms`], answered
//!   through [`Cloud::complete`]) and the queued authorization changes
//!   ([`Cloud::poll_kms_change`]); jobs on different keys overlap, and on one key a change
//!   runs alone, in queue order. Order matters: a connector that hears of its new user then
//!   fetches a key must find itself authorized. While the KMS is down a
//!   change is retried with backoff ([`KMS_RETRY_MIN`] doubling to [`KMS_RETRY_MAX`]) and
//!   requests waiting for the KMS are answered 503 meanwhile; their clients retry.
//! - Faults: [`Cloud::drop_event_sockets`] is applied at the next dispatch (every socket
//!   closes); [`Cloud::set_http_errors`] acts in the core.
//!
//! ## Client
//!
//! Always over a stream the caller opened (`Net::connect`): never a pooled client that opens
//! its own sockets (it would escape the simulation). Every call has a timeout
//! ([`HTTP_TIMEOUT`]). The WebSocket key is drawn from the caller's RNG. tungstenite masks
//! client frames with its own OS-seeded randomness; the mask changes bytes on the wire, never
//! their lengths or timing, so runs stay reproducible.

use super::api::{self, Subscriber};
use super::{BODY_BYTES_MAX, Cloud, CloudError, Outcome};
use crate::accept::{AcceptErrors, accept};
use crate::body::{BodyError, read_body};
use crate::brake::Brake;
use crate::kms::KmsError;
use crate::kms::http::KmsClient;
use crate::kms::{KmsCall, KmsReply};
use connector::io::net::Net;
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{self, Message};

/// How often the driver runs the core's timers. Registration, activation and typing timers are
/// seconds to minutes long; one second is precise enough and cheap under turmoil.
pub const TICK_INTERVAL: Duration = Duration::from_secs(1);
/// Events queued per WebSocket before the subscriber counts as stuck (a burst of assignment
/// events for 15,000 users is 15 frames; a busy user's devices see a few per second).
pub const WS_QUEUE_MAX: usize = 1_024;
/// Events held per WebSocket beyond its queue, in order, while the subscriber reads: the
/// activation burst of a Large node's users (one assignment event each, up to 15,000, spec 1-3)
/// is a burst the cloud caused itself, and Webex does not drop a connector for it (a queue of
/// 1,024 did, and each drop cost the connector a resync). Twice a Large node's users covers a
/// rebalance's unassignments and assignments together; a subscriber further behind is stuck.
pub const WS_BACKLOG_MAX: usize = 32_768;
/// Server ping period on WebSockets.
pub const WS_PING_INTERVAL: Duration = Duration::from_secs(30);

/// KMS jobs (key fetches, authorization changes) relayed at once for each connector node the
/// cloud serves ([`Cloud::set_kms_relay_nodes`]), one keep-alive connection each: a Large
/// node's connector fetches a key for every new conversation, about 50 a second at 15,000
/// users, and one call per round trip on a single connection caps that at ten. Webex's relay is
/// a cloud service that grows with the connectors it fronts: one sized for a single node held
/// a six-node cluster's conversation set-up to 160 KMS calls a second, and the bridge's backlog
/// grew for as long as the traffic lasted.
pub const KMS_CALLS_IN_FLIGHT_PER_NODE_MAX: usize = 16;
/// KMS jobs relayed at once whatever the node count, so the relay's connections to the KMS
/// host stay bounded: an organization's 195,000 Hybrid Message users (spec 4) fill 13 Large
/// nodes, 18 with a spare node in each of three six-node clusters, 288 calls; twice that is
/// room enough.
pub const KMS_CALLS_IN_FLIGHT_MAX: usize = 576;
/// First wait before resending an authorization change the KMS refused with 503.
pub const KMS_RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest wait between resends: requests waiting for the KMS are answered 503 during the
/// wait, so a short cap keeps the recovery after an outage quick.
pub const KMS_RETRY_MAX: Duration = Duration::from_secs(8);

type Shared = Rc<RefCell<Cloud>>;
type HttpResponse = hyper::Response<Full<Bytes>>;

/// Open WebSockets by subscriber.
#[derive(Default)]
struct Sockets {
    subs: BTreeMap<Subscriber, BTreeMap<u64, Socket>>,
    next_id: u64,
}

/// One open WebSocket's queue and the events waiting behind it.
struct Socket {
    tx: mpsc::Sender<String>,
    /// Events that found the queue full, oldest first (at most [`WS_BACKLOG_MAX`]).
    backlog: VecDeque<String>,
    /// Events queued so far: the next one's place in the socket's stream.
    pushed: u64,
}

impl Socket {
    /// Queues `text` behind any backlog; its place in the socket's stream, or `None` if the
    /// socket is gone or stuck.
    fn push(&mut self, text: &str) -> Option<u64> {
        self.refill();
        let index = self.pushed;
        if self.backlog.is_empty() {
            match self.tx.try_send(text.to_owned()) {
                Ok(()) => {
                    self.pushed += 1;
                    return Some(index);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return None,
                Err(mpsc::error::TrySendError::Full(_)) => {}
            }
        }
        if self.backlog.len() >= WS_BACKLOG_MAX {
            return None;
        }
        self.backlog.push_back(text.to_owned());
        self.pushed += 1;
        Some(index)
    }

    /// Moves backlogged events to the queue while it has room.
    fn refill(&mut self) {
        while let Some(text) = self.backlog.pop_front() {
            if let Err(e) = self.tx.try_send(text) {
                if let mpsc::error::TrySendError::Full(text) = e {
                    self.backlog.push_front(text);
                }
                return;
            }
        }
    }
}

type SharedSockets = Rc<RefCell<Sockets>>;

/// A job for the KMS relay task.
enum Job {
    /// A waiting request's call; the answer goes back on the channel.
    Call(KmsCall, oneshot::Sender<Result<KmsReply, KmsError>>),
    /// A queued authorization change.
    Change(KmsCall),
}

type KmsJobs = Option<mpsc::UnboundedSender<Job>>;

/// Serves the cloud on `port` until the listener fails.
///
/// # Errors
/// The listener's error.
pub async fn serve<N: Net>(net: N, cloud: Shared, port: u16) -> std::io::Result<()>
where
    N::Stream: Send,
{
    let listener = net.bind(port).await?;
    serve_listener(net, cloud, listener).await
}

/// Serves the cloud on a listener the caller bound (to print "listening" once bound).
///
/// # Errors
/// The listener's error.
pub async fn serve_listener<N: Net>(
    net: N,
    cloud: Shared,
    listener: N::Listener,
) -> std::io::Result<()>
where
    N::Stream: Send,
{
    let sockets: SharedSockets = Rc::default();
    let addr = cloud.borrow().kms_addr().map(|(h, p)| (h.to_owned(), p));
    let (jobs, relay) = match addr {
        Some((host, port)) => {
            // A restart (a bounce of the cloud host) sends again what the last relay owed.
            cloud.borrow_mut().kms_relay_restarted();
            let (tx, rx) = mpsc::unbounded_channel();
            let relay =
                tokio::task::spawn_local(kms_relay(net.clone(), (host, port), cloud.clone(), rx));
            (Some(tx), Some(relay))
        }
        None => (None, None),
    };
    let ticker = tokio::task::spawn_local(ticker(
        net.clone(),
        cloud.clone(),
        sockets.clone(),
        jobs.clone(),
    ));
    // Aborts the ticker and the relay when the server is dropped.
    let _tasks = AbortOnDrop(ticker, relay);
    let mut errors = AcceptErrors::default();
    let brake = Rc::new(RefCell::new(Brake::default()));
    loop {
        let (stream, peer) = accept(&net, &listener, "cloud", &mut errors).await;
        let task = connection(
            net.clone(),
            cloud.clone(),
            sockets.clone(),
            jobs.clone(),
            stream,
            (brake.clone(), peer.ip()),
        );
        tokio::task::spawn_local(task);
    }
}

/// The cloud server's background tasks (ticker, KMS relay), ended with it.
struct AbortOnDrop(
    tokio::task::JoinHandle<()>,
    Option<tokio::task::JoinHandle<()>>,
);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
        if let Some(relay) = &self.1 {
            relay.abort();
        }
    }
}

/// KMS jobs the relay runs at once for `nodes` connector nodes.
pub fn kms_relay_width(nodes: usize) -> usize {
    nodes
        .max(1)
        .saturating_mul(KMS_CALLS_IN_FLIGHT_PER_NODE_MAX)
        .min(KMS_CALLS_IN_FLIGHT_MAX)
}

/// The relay width for the connector nodes `cloud` is sized for.
fn relay_width(cloud: &Shared) -> usize {
    kms_relay_width(cloud.borrow().kms_relay_nodes())
}

/// The KMS relay: runs calls and changes in queue order per key (module doc).
///
/// Up to [`relay_width`] jobs run at once, each on its own keep-alive connection.
/// Jobs on different keys overlap; on one key, a change waits until every earlier job on that
/// key is done and no later job starts before it is, so the KMS sees each key's jobs in the
/// order of a single queue. (One global queue made every key fetch wait behind the hundreds of
/// changes of a maintenance drain, past the connectors' 30 s timeout.)
///
/// A change the KMS refused as unavailable goes back to the queue, and the relay pauses
/// ([`kms_pause`]) once per outage, not once per change: a change sent before the latest
/// pause began failed with the outage that pause waited out, and goes again with the others.
/// (A pause per change, one after the other, kept the relay answering 503 for minutes after the
/// KMS was back when an outage failed all the changes in flight at once.)
async fn kms_relay<N: Net>(
    net: N,
    (host, port): (String, u16),
    cloud: Shared,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let client = || KmsClient::new(net.clone(), host.clone(), port);
    let mut idle: Vec<KmsClient<N>> = (0..relay_width(&cloud)).map(|_| client()).collect();
    let mut running: tokio::task::JoinSet<Done<N>> = tokio::task::JoinSet::new();
    let mut footprints: BTreeMap<tokio::task::Id, Footprint> = BTreeMap::new();
    let mut busy = KeyUse::new();
    let mut backlog: VecDeque<Job> = VecDeque::new();
    let mut backoff = KMS_RETRY_MIN;
    let mut pauses: u64 = 0; // so far; each job remembers the count when it started
    let mut closed = false;
    loop {
        while let Ok(job) = rx.try_recv() {
            backlog.push_back(job);
        }
        for job in ready_jobs(&mut backlog, &busy, idle.len()) {
            let (uri, change) = footprint(&job);
            let uri = uri.map(str::to_string);
            use_key(&mut busy, uri.as_deref(), change, true);
            let kms = idle.pop().expect("at most one job per idle client");
            let id = spawn_job(&mut running, kms, job, &cloud);
            footprints.insert(id, (uri, change, pauses));
        }
        if closed && backlog.is_empty() && running.is_empty() {
            return;
        }
        tokio::select! {
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                let id = done.as_ref().map_or_else(|e| e.id(), |(id, _)| *id);
                let started = footprints.remove(&id).map(|(uri, change, started)| {
                    use_key(&mut busy, uri.as_deref(), change, false);
                    started
                });
                // A job that panicked loses its client: replace it.
                let Ok((_, (kms, change))) = done else {
                    idle.push(client());
                    continue;
                };
                idle.push(kms);
                let Some((call, result)) = change else {
                    continue;
                };
                cloud.borrow_mut().count_kms_change(&call, &result);
                if result != Err(KmsError::Unavailable) {
                    backoff = KMS_RETRY_MIN;
                    continue;
                }
                // Ahead of every later job on its key, which waited for it. One sent before the
                // latest pause began failed with the outage that pause waited out: no new pause.
                backlog.push_front(Job::Change(call));
                if started.is_some_and(|s| s < pauses) {
                    continue;
                }
                pauses += 1;
                if !kms_pause(&mut backlog, &mut rx, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(KMS_RETRY_MAX);
            }
            job = rx.recv(), if !closed => match job {
                Some(job) => backlog.push_back(job),
                None => closed = true,
            },
        }
    }
}

/// Queues a call on the KMS relay and waits for its answer; a relay gone is an unavailable
/// KMS.
async fn relay_call(tx: &mpsc::UnboundedSender<Job>, call: KmsCall) -> Result<KmsReply, KmsError> {
    let (reply, answer) = oneshot::channel();
    match tx.send(Job::Call(call, reply)) {
        Ok(()) => answer.await.unwrap_or(Err(KmsError::Unavailable)),
        Err(_) => Err(KmsError::Unavailable),
    }
}

/// Runs one job on its own client in `running` (the cloud keeps the peak of jobs running);
/// returns the task's id.
fn spawn_job<N: Net>(
    running: &mut tokio::task::JoinSet<Done<N>>,
    mut kms: KmsClient<N>,
    job: Job,
    cloud: &Shared,
) -> tokio::task::Id {
    let handle = match job {
        Job::Call(call, reply) => running.spawn_local(async move {
            let _ = reply.send(kms.call(&call).await);
            (kms, None)
        }),
        Job::Change(call) => running.spawn_local(async move {
            let result = kms.call(&call).await;
            (kms, Some((call, result)))
        }),
    };
    cloud.borrow_mut().note_kms_calls_in_flight(running.len());
    handle.id()
}

/// What a relay task gives back: its client, and for a change the change and its result.
type Done<N> = (KmsClient<N>, Option<(KmsCall, Result<KmsReply, KmsError>)>);

/// A running job's key and kind ([`footprint`]), and the relay's pause count when it started.
type Footprint = (Option<String>, bool, u64);

/// Jobs per key, running or queued ahead: (calls, changes).
type KeyUse = BTreeMap<String, (usize, usize)>;

/// The key a job reads or changes (`None` for a new key, which no other job can name yet) and
/// whether it changes the key's authorizations.
fn footprint(job: &Job) -> (Option<&str>, bool) {
    let (call, change) = match job {
        Job::Call(call, _) => (call, false),
        Job::Change(call) => (call, true),
    };
    let uri = match call {
        KmsCall::CreateKey { .. } => None,
        KmsCall::FetchKey { uri, .. }
        | KmsCall::Authorize { uri, .. }
        | KmsCall::Revoke { uri, .. } => Some(uri.as_str()),
    };
    (uri, change)
}

/// Counts a job on its key in (`on`) or out.
fn use_key(keys: &mut KeyUse, uri: Option<&str>, change: bool, on: bool) {
    let Some(uri) = uri else {
        return;
    };
    let entry = keys.entry(uri.to_string()).or_default();
    let n = if change { &mut entry.1 } else { &mut entry.0 };
    *n = if on { *n + 1 } else { n.saturating_sub(1) };
    if *entry == (0, 0) {
        keys.remove(uri);
    }
}

/// Takes out of `backlog`, in queue order, at most `slots` jobs that may start now: those that
/// no job on their key, running (`busy`) or queued ahead of them, conflicts with. A change
/// conflicts with every job on its key; two calls never conflict. Costs the jobs it looks at:
/// those it starts and those blocked ahead of the last one.
fn ready_jobs(backlog: &mut VecDeque<Job>, busy: &KeyUse, slots: usize) -> Vec<Job> {
    let mut ready = Vec::new();
    if slots == 0 {
        return ready;
    }
    let mut ahead = KeyUse::new();
    let free = |keys: &KeyUse, uri: Option<&str>, change: bool| {
        uri.is_none_or(|u| {
            keys.get(u)
                .is_none_or(|&(calls, changes)| changes == 0 && (!change || calls == 0))
        })
    };
    // Only as far as needed: a long backlog is not rescanned on every answer.
    let mut i = 0;
    while i < backlog.len() && ready.len() < slots {
        let (uri, change) = footprint(&backlog[i]);
        let uri = uri.map(str::to_string);
        let start = free(busy, uri.as_deref(), change) && free(&ahead, uri.as_deref(), change);
        use_key(&mut ahead, uri.as_deref(), change, true);
        match start.then(|| backlog.remove(i)).flatten() {
            Some(job) => ready.push(job),
            None => i += 1,
        }
    }
    ready
}

/// The KMS is down: waiting calls get 503 now rather than after the change, and new ones for
/// `pause`; changes keep their order. False when the channel closed.
async fn kms_pause(
    backlog: &mut VecDeque<Job>,
    rx: &mut mpsc::UnboundedReceiver<Job>,
    pause: Duration,
) -> bool {
    backlog.retain_mut(|job| match job {
        Job::Call(..) => false,
        Job::Change(_) => true,
    });
    let pause = tokio::time::sleep(pause);
    tokio::pin!(pause);
    loop {
        tokio::select! {
            _ = &mut pause => return true,
            job = rx.recv() => match job {
                Some(Job::Call(_, reply)) => {
                    let _ = reply.send(Err(KmsError::Unavailable));
                }
                Some(change) => backlog.push_back(change),
                None => return false,
            },
        }
    }
}

async fn ticker<N: Net>(net: N, cloud: Shared, sockets: SharedSockets, jobs: KmsJobs) {
    let mut interval = tokio::time::interval(TICK_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        cloud.borrow_mut().tick(net.now());
        dispatch(&cloud, &sockets, &jobs);
    }
}

async fn connection<N: Net>(
    net: N,
    cloud: Shared,
    sockets: SharedSockets,
    jobs: KmsJobs,
    stream: N::Stream,
    (brake, source): (Rc<RefCell<Brake>>, std::net::IpAddr),
) where
    N::Stream: Send,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let (net, cloud, sockets, jobs) =
            (net.clone(), cloud.clone(), sockets.clone(), jobs.clone());
        let brake = brake.clone();
        async move {
            let guarded = guarded_route(req.uri().path());
            let now = net.now();
            let resp = handle(net, cloud, sockets, jobs, req).await;
            if let Some(what) = guarded {
                let account = match resp.extensions().get::<LoginAccount>() {
                    Some(LoginAccount(email)) => email.clone(),
                    // One administrator: every admin token guessed is a guess at that account.
                    None => what.to_owned(),
                };
                let status = resp.status().as_u16();
                brake_answer(now, &brake, (source, &account), what, status).await;
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HTTP_IDLE_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "cloud HTTP connection ended with an error");
    }
}

/// A 401 on a guarded route waits its delay (per source and account); a success forgives its
/// account.
async fn brake_answer(
    now: std::time::Duration,
    brake: &Rc<RefCell<Brake>>,
    (source, account): (std::net::IpAddr, &str),
    what: &str,
    status: u16,
) {
    if status == 401 {
        let wait = brake.borrow_mut().failed(now, source, account, what);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    } else if status < 300 {
        brake.borrow_mut().succeeded(account);
    }
}

/// The email a `POST /v1/login` tried, carried on its response to the brake (the body is
/// gone by then).
#[derive(Debug, Clone)]
struct LoginAccount(String);

/// The email of a login body, if it has one.
fn login_email(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["email"].as_str().map(str::to_owned)
}

/// The routes where a 401 means a wrong password or admin token: guessing them is braked.
fn guarded_route(path: &str) -> Option<&'static str> {
    if path == "/v1/login" {
        Some("cloud login")
    } else if path.starts_with("/v1/admin") {
        Some("cloud admin")
    } else {
        None
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::to_owned)
}

fn json_response(status: u16, body: &serde_json::Value) -> HttpResponse {
    let mut resp = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn refuse(cloud: &Shared, error: CloudError) -> HttpResponse {
    let r = cloud.borrow_mut().refuse(error);
    json_response(r.status, &r.body)
}

async fn handle<N: Net>(
    net: N,
    cloud: Shared,
    sockets: SharedSockets,
    jobs: KmsJobs,
    req: hyper::Request<Incoming>,
) -> HttpResponse {
    let token = bearer(req.headers());
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    if req.uri().path() == EVENTS_PATH && req.headers().contains_key(header::UPGRADE) {
        return upgrade(net, cloud, sockets, req, token);
    }
    let req_path = req.uri().path().to_owned();
    let Some(method) = api::Method::parse(req.method().as_str()) else {
        let method = req.method().as_str().to_owned();
        return refuse(&cloud, CloudError::MethodNotAllowed { method, path });
    };
    let body = match read_body(req.into_body(), BODY_BYTES_MAX).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            let error = CloudError::TooLarge {
                bytes: BODY_BYTES_MAX + 1,
                limit: BODY_BYTES_MAX,
            };
            return refuse(&cloud, error);
        }
        Err(BodyError::TimedOut) => return refuse(&cloud, CloudError::BodyTimeout),
        Err(BodyError::Broken(e)) => {
            return refuse(&cloud, CloudError::BadJson(format!("body: {e}")));
        }
    };
    let login = (req_path == "/v1/login")
        .then(|| login_email(&body))
        .flatten();
    let request = api::Request {
        method,
        path,
        token,
        body,
    };
    let outcome = cloud.borrow_mut().handle(net.now(), request);
    let response = match outcome {
        Outcome::Now(r) => r,
        Outcome::Kms(call, cont) => {
            dispatch(&cloud, &sockets, &jobs);
            let result = match &jobs {
                Some(tx) => relay_call(tx, call).await,
                // An in-process KMS: the core runs the call itself.
                None => cloud.borrow_mut().local_kms_call(&call),
            };
            cloud.borrow_mut().complete(net.now(), cont, result)
        }
    };
    dispatch(&cloud, &sockets, &jobs);
    let mut resp = json_response(response.status, &response.body);
    if let Some(email) = login {
        resp.extensions_mut().insert(LoginAccount(email));
    }
    resp
}

/// Accepts a WebSocket upgrade on [`EVENTS_PATH`] for a user or connector token.
fn upgrade<N: Net>(
    net: N,
    cloud: Shared,
    sockets: SharedSockets,
    mut req: hyper::Request<Incoming>,
    token: Option<String>,
) -> HttpResponse {
    let subscriber = token.and_then(|t| cloud.borrow().subscriber_for_token(&t));
    let Some(subscriber) = subscriber else {
        return refuse(&cloud, CloudError::Unauthorized);
    };
    let headers = req.headers();
    let is_websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    let (true, true, Some(key)) = (is_websocket, version_ok, key) else {
        let detail = "WebSocket upgrade needs Upgrade: websocket, version 13 and a key".into();
        return refuse(&cloud, CloudError::Invalid(detail));
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::task::spawn_local(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = TokioIo::new(upgraded);
                ws_session(net, (cloud, sockets), subscriber, io).await;
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    let mut resp = hyper::Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

/// One server-side WebSocket: pushes queued events, pings, and closes when silent.
///
/// Each ping carries how many events were sent before it (8 bytes, big-endian), and the
/// peer's pong echoes it (RFC 6455, 5.5.3): the peer read those, so the cloud's records count
/// them as read ([`Cloud::note_read_through`]). Events go out before a ping (the `biased`
/// select takes a queued event first, and the backlog refills the queue as it empties).
async fn ws_session<N: Net, S>(
    net: N,
    (cloud, sockets): (Shared, SharedSockets),
    subscriber: Subscriber,
    io: S,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config())).await;
    let (tx, mut rx) = mpsc::channel::<String>(WS_QUEUE_MAX);
    let id = sockets.borrow_mut().add(subscriber.clone(), tx);
    let mut ping = tokio::time::interval(WS_PING_INTERVAL);
    ping.tick().await; // the first tick is immediate
    let mut last_heard = net.now();
    let mut sent: u64 = 0;
    loop {
        tokio::select! {
            biased;
            event = rx.recv() => {
                let Some(text) = event else { break };
                sockets.borrow_mut().refill(&subscriber, id);
                if !send(&mut ws, Message::text(text)).await {
                    break;
                }
                sent += 1;
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(msg)) => {
                    last_heard = net.now();
                    if let Some(n) = pong_count(&msg) {
                        cloud.borrow_mut().note_read_through(id, n);
                    }
                }
            },
            _ = ping.tick() => {
                let silent = net.now().saturating_sub(last_heard) > WS_IDLE_TIMEOUT;
                let count = Bytes::copy_from_slice(&sent.to_be_bytes());
                if silent || !send(&mut ws, Message::Ping(count)).await {
                    break;
                }
            }
        }
    }
    sockets.borrow_mut().remove(&subscriber, id);
    cloud.borrow_mut().note_socket_closed(id);
    let _ = tokio::time::timeout(HTTP_TIMEOUT, ws.close(None)).await;
}

/// The count a pong echoes from [`ws_session`]'s ping; `None` for any other frame, or a pong
/// of another length (unsolicited, or not ours).
fn pong_count(msg: &Message) -> Option<u64> {
    let Message::Pong(payload) = msg else {
        return None;
    };
    let bytes: [u8; 8] = payload.as_ref().try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// Sends one message with a timeout; false if the socket is unusable.
async fn send<S>(ws: &mut WebSocketStream<S>, msg: Message) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    matches!(
        tokio::time::timeout(WS_IDLE_TIMEOUT, ws.send(msg)).await,
        Ok(Ok(()))
    )
}

impl Sockets {
    fn add(&mut self, subscriber: Subscriber, tx: mpsc::Sender<String>) -> u64 {
        self.next_id += 1;
        self.subs.entry(subscriber).or_default().insert(
            self.next_id,
            Socket {
                tx,
                backlog: VecDeque::new(),
                pushed: 0,
            },
        );
        self.next_id
    }

    /// The socket `id` of `subscriber` sent an event: its backlog moves up.
    fn refill(&mut self, subscriber: &Subscriber, id: u64) {
        if let Some(sock) = self.subs.get_mut(subscriber).and_then(|s| s.get_mut(&id)) {
            sock.refill();
        }
    }

    fn remove(&mut self, subscriber: &Subscriber, id: u64) {
        if let Some(socks) = self.subs.get_mut(subscriber) {
            socks.remove(&id);
            if socks.is_empty() {
                self.subs.remove(subscriber);
            }
        }
    }

    /// Queues `text` on every socket of `subscriber`; returns (delivered, undeliverable,
    /// dropped), and where it went: (socket id, its place in that socket's stream). A socket
    /// whose queue and backlog are full is dropped (its session then ends).
    fn deliver(
        &mut self,
        subscriber: &Subscriber,
        text: &str,
    ) -> ((u64, u64, u64), Vec<(u64, u64)>) {
        let Some(socks) = self.subs.get_mut(subscriber) else {
            return ((0, 1, 0), Vec::new());
        };
        let before = socks.len();
        let mut on = Vec::new();
        socks.retain(|id, sock| {
            let index = sock.push(text);
            on.extend(index.map(|i| (*id, i)));
            index.is_some()
        });
        let dropped = (before - socks.len()) as u64;
        if socks.is_empty() {
            self.subs.remove(subscriber);
        }
        (((before as u64) - dropped, 0, dropped), on)
    }
}

/// Moves the core's pending events to the sockets and its authorization changes to the KMS
/// relay; applies a socket drop.
fn dispatch(cloud: &Shared, sockets: &SharedSockets, jobs: &KmsJobs) {
    if cloud.borrow_mut().take_socket_drop() {
        let mut s = sockets.borrow_mut();
        let n: usize = s.subs.values().map(BTreeMap::len).sum();
        // Dropping the senders ends every session, which then closes its socket.
        s.subs.clear();
        drop(s);
        cloud.borrow_mut().count_socket_drops(n as u64);
    }
    if let Some(tx) = jobs {
        loop {
            let next = cloud.borrow_mut().poll_kms_change();
            let Some(call) = next else { break };
            if tx.send(Job::Change(call)).is_err() {
                break;
            }
        }
    }
    loop {
        let next = cloud.borrow_mut().poll_event();
        let Some((subscriber, event)) = next else {
            return;
        };
        let text = serde_json::to_string(&event).unwrap_or_default();
        let (counts, on) = sockets.borrow_mut().deliver(&subscriber, &text);
        let mut c = cloud.borrow_mut();
        c.count_delivery(counts);
        if counts.0 > 0 {
            c.note_delivered(&subscriber, &event, &on);
        }
    }
}

pub use connector::io::http::{
    CLOUD_HOST, CLOUD_PORT, ClientError, EVENTS_PATH, EventClient, HTTP_IDLE_TIMEOUT, HTTP_TIMEOUT,
    HttpClient, RESPONSE_BYTES_MAX, WS_BUFFER_BYTES, WS_IDLE_TIMEOUT, WS_MESSAGE_BYTES_MAX,
    http_request, ws_config, ws_connect,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(uri: &str) -> Job {
        let (tx, _) = oneshot::channel();
        let principal = "connector:exp-a-1".to_string();
        Job::Call(
            KmsCall::FetchKey {
                uri: uri.into(),
                principal,
            },
            tx,
        )
    }

    fn revoke(uri: &str) -> Job {
        let principal = "connector:exp-a-2".to_string();
        Job::Change(KmsCall::Revoke {
            uri: uri.into(),
            principal,
        })
    }

    fn create() -> Job {
        let (tx, _) = oneshot::channel();
        let principals = vec!["a@example.com".to_string()];
        Job::Call(
            KmsCall::CreateKey {
                space_id: "s".into(),
                principals,
            },
            tx,
        )
    }

    /// (key, change) of each job, to compare.
    fn shape(jobs: &[Job]) -> Vec<(Option<String>, bool)> {
        jobs.iter()
            .map(|j| {
                let (uri, change) = footprint(j);
                (uri.map(str::to_string), change)
            })
            .collect()
    }

    #[test]
    fn jobs_on_other_keys_pass_a_change_and_one_key_keeps_its_order() {
        let mut backlog: VecDeque<Job> = [
            revoke("k1"),
            fetch("k1"),
            fetch("k2"),
            revoke("k2"),
            fetch("k2"),
            create(),
        ]
        .into();
        let ready = ready_jobs(&mut backlog, &KeyUse::new(), 16);
        // k1's fetch waits for its revocation; k2's change waits for the fetch ahead of it and
        // the fetch behind waits for the change; a new key waits for nothing.
        assert_eq!(
            shape(&ready),
            [
                (Some("k1".into()), true),
                (Some("k2".into()), false),
                (None, false)
            ]
        );
        assert_eq!(
            shape(backlog.make_contiguous()),
            [
                (Some("k1".into()), false),
                (Some("k2".into()), true),
                (Some("k2".into()), false)
            ]
        );
        // While those run, nothing on k1 or k2 may start; once they are done, the next of each.
        let mut busy = KeyUse::new();
        for j in &ready {
            let (uri, change) = footprint(j);
            use_key(&mut busy, uri, change, true);
        }
        assert!(ready_jobs(&mut backlog, &busy, 16).is_empty());
        for j in &ready {
            let (uri, change) = footprint(j);
            use_key(&mut busy, uri, change, false);
        }
        assert!(busy.is_empty());
        let next = ready_jobs(&mut backlog, &busy, 16);
        assert_eq!(
            shape(&next),
            [(Some("k1".into()), false), (Some("k2".into()), true)]
        );
        assert_eq!(backlog.len(), 1);
    }

    #[test]
    fn calls_on_one_key_overlap_up_to_the_free_clients() {
        let mut backlog: VecDeque<Job> = [fetch("k"), fetch("k"), fetch("k")].into();
        assert!(ready_jobs(&mut backlog, &KeyUse::new(), 0).is_empty());
        assert_eq!(ready_jobs(&mut backlog, &KeyUse::new(), 2).len(), 2);
        assert_eq!(backlog.len(), 1);
    }

    /// An HDS host on turmoil's network, for a relay a client task runs: (sim, the KMS).
    fn relay_world<'a>() -> (turmoil::Sim<'a>, Rc<RefCell<crate::kms::KmsService>>) {
        use rand::SeedableRng as _;
        let mut sim = turmoil::Builder::new()
            .tick_duration(Duration::from_millis(10))
            .simulation_duration(Duration::from_secs(600))
            .build();
        let kms = Rc::new(RefCell::new(crate::kms::KmsService::new(
            crate::kms::HDS_HOST,
            rand_chacha::ChaCha8Rng::seed_from_u64(21),
        )));
        let k = kms.clone();
        sim.host(crate::kms::HDS_HOST, move || {
            let k = k.clone();
            async move {
                crate::kms::http::serve(connector::io::net::TurmoilNet, k, crate::kms::KMS_PORT)
                    .await?;
                Ok(())
            }
        });
        (sim, kms)
    }

    /// A KMS outage fails every authorization change in flight at once. The relay waits out
    /// the outage once for all of them: a pause per failed change, one after the other, made
    /// the relay answer every key fetch 503 for minutes after the KMS was back (explore seed
    /// 51: from 352 s to 464 s, and after a second outage ending at 503 s until 623 s).
    /// An activation burst (one assignment event per user, 15,000 for a Large node) to a
    /// connector whose socket has not read yet: the socket stays, and every event arrives, in
    /// order, as the socket sends.
    #[test]
    fn a_burst_past_the_queue_waits_for_the_socket_instead_of_dropping_it() {
        let node = Subscriber::Connector("exp-a-1".into());
        let mut sockets = Sockets::default();
        let (tx, mut rx) = mpsc::channel::<String>(WS_QUEUE_MAX);
        let id = sockets.add(node.clone(), tx);
        let burst = 15_000;
        let mut counts = (0, 0, 0);
        for i in 0..burst {
            let ((d, w, x), on) = sockets.deliver(&node, &format!("event {i}"));
            counts = (counts.0 + d, counts.1 + w, counts.2 + x);
            // Its place in the stream, queue and backlog alike: what a ping counts.
            assert_eq!(on, [(id, i)]);
        }
        assert_eq!(
            counts,
            (burst, 0, 0),
            "(delivered, without socket, dropped)"
        );
        let mut seen = Vec::new();
        while let Ok(text) = rx.try_recv() {
            seen.push(text);
            sockets.refill(&node, id); // what the socket's task does after each receive
        }
        let expected: Vec<String> = (0..burst).map(|i| format!("event {i}")).collect();
        assert_eq!(seen.len(), expected.len());
        assert!(seen == expected, "events out of order");
        // A subscriber further behind than queue and backlog together is stuck: dropped.
        sockets.remove(&node, id);
        let (tx, _rx) = mpsc::channel::<String>(WS_QUEUE_MAX);
        sockets.add(node.clone(), tx);
        let total = (WS_QUEUE_MAX + WS_BACKLOG_MAX) as u64;
        let dropped: u64 = (0..=total).map(|_| sockets.deliver(&node, "e").0.2).sum();
        assert_eq!(dropped, 1);
    }

    #[test]
    fn changes_failing_together_cost_one_pause_not_one_each() {
        use connector::io::net::TurmoilNet;
        let (mut sim, kms) = relay_world();
        let shared = kms.clone();
        sim.client("cloud", async move {
            use rand::SeedableRng as _;
            let cfg = crate::cloud::CloudConfig {
                domain: "example.com".into(),
                admin_token: "admin".into(),
                kms_host: crate::kms::HDS_HOST.into(),
            };
            let cloud = Rc::new(RefCell::new(Cloud::with_remote_kms(
                cfg,
                rand_chacha::ChaCha8Rng::seed_from_u64(11),
                crate::kms::HDS_HOST,
                crate::kms::KMS_PORT,
            )));
            let addr = (crate::kms::HDS_HOST.to_string(), crate::kms::KMS_PORT);
            let (tx, rx) = mpsc::unbounded_channel();
            let relay = tokio::task::spawn_local(kms_relay(TurmoilNet, addr, cloud, rx));
            let mut uris = Vec::new();
            for i in 0..KMS_CALLS_IN_FLIGHT_PER_NODE_MAX {
                let create = KmsCall::CreateKey {
                    space_id: format!("space-{i}"),
                    principals: vec!["alice@example.com".into()],
                };
                let Ok(KmsReply::Key(key)) = relay_call(&tx, create).await else {
                    panic!("the KMS is up: key {i} is created");
                };
                uris.push(key.uri);
            }
            // Down: every change fails with 503, all of them in flight together.
            shared.borrow_mut().set_outage(true);
            let principal = "connector:exp-a-1";
            for uri in &uris {
                let call = KmsCall::Authorize {
                    uri: uri.clone(),
                    principal: principal.into(),
                };
                tx.send(Job::Change(call)).unwrap();
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            shared.borrow_mut().set_outage(false);
            // Back: within the longest pause the changes are through and fetches answered.
            tokio::time::sleep(KMS_RETRY_MAX + Duration::from_secs(1)).await;
            let fetch = KmsCall::FetchKey {
                uri: uris[0].clone(),
                principal: principal.into(),
            };
            let answer = relay_call(&tx, fetch).await;
            assert!(matches!(answer, Ok(KmsReply::Key(_))), "{answer:?}");
            let kms = shared.borrow();
            let authorized = uris
                .iter()
                .filter(|u| kms.kms().is_authorized(u, principal))
                .count();
            assert_eq!(authorized, uris.len());
            drop(kms);
            relay.abort();
            Ok(())
        });
        sim.run().unwrap();
    }

    /// A relay sized for the connector nodes it fronts runs that many nodes' calls at once:
    /// one sized for a single Large node held a six-node cluster's conversation set-up (a new
    /// key per conversation) to 16 calls per round trip (issue 16: at 15,000 users and 125
    /// messages a second, thousands of messages waited past the run's end).
    #[test]
    fn a_relay_for_six_nodes_runs_six_nodes_calls_at_once() {
        use connector::io::net::TurmoilNet;
        let (mut sim, _kms) = relay_world();
        sim.client("cloud", async move {
            use rand::SeedableRng as _;
            let cfg = crate::cloud::CloudConfig {
                domain: "example.com".into(),
                admin_token: "admin".into(),
                kms_host: crate::kms::HDS_HOST.into(),
            };
            let mut cloud = Cloud::with_remote_kms(
                cfg,
                rand_chacha::ChaCha8Rng::seed_from_u64(11),
                crate::kms::HDS_HOST,
                crate::kms::KMS_PORT,
            );
            cloud.set_kms_relay_nodes(6);
            let cloud = Rc::new(RefCell::new(cloud));
            let addr = (crate::kms::HDS_HOST.to_string(), crate::kms::KMS_PORT);
            let (tx, rx) = mpsc::unbounded_channel();
            let relay = tokio::task::spawn_local(kms_relay(TurmoilNet, addr, cloud.clone(), rx));
            let width = 6 * KMS_CALLS_IN_FLIGHT_PER_NODE_MAX;
            let calls = (0..2 * width).map(|i| {
                let create = KmsCall::CreateKey {
                    space_id: format!("space-{i}"),
                    principals: vec!["alice@example.com".into()],
                };
                relay_call(&tx, create)
            });
            let answers = futures_util::future::join_all(calls).await;
            let created = answers
                .iter()
                .filter(|a| matches!(a, Ok(KmsReply::Key(_))))
                .count();
            assert_eq!(created, 2 * width);
            let peak = cloud.borrow().stats().kms_calls_in_flight_peak;
            assert_eq!(peak, width as u64);
            relay.abort();
            Ok(())
        });
        sim.run().unwrap();
    }

    #[test]
    fn the_relay_width_grows_with_the_nodes_up_to_its_limit() {
        assert_eq!(kms_relay_width(0), KMS_CALLS_IN_FLIGHT_PER_NODE_MAX);
        assert_eq!(kms_relay_width(1), KMS_CALLS_IN_FLIGHT_PER_NODE_MAX);
        assert_eq!(kms_relay_width(6), 6 * KMS_CALLS_IN_FLIGHT_PER_NODE_MAX);
        assert_eq!(kms_relay_width(10_000), KMS_CALLS_IN_FLIGHT_MAX);
    }
}
