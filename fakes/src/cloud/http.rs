//! The cloud's I/O driver: serves [`Cloud`] over HTTP/1.1 (hyper 1) and WebSocket
//! (tokio-tungstenite) on any [`Net`] backend, plus the client helpers the connector and the
//! Webex App model use ([`HttpClient`], [`http_request`], [`ws_connect`]).
//!
//! ## Server
//!
//! - One task per TCP connection: `hyper::server::conn::http1` with a [`TokioTimer`] (without
//!   it hyper's header timeout never fires, PITFALLS) and keep-alive. Bodies are read through
//!   `http_body_util::Limited` at [`BODY_BYTES_MAX`]: a longer one is answered 413 without
//!   buffering it.
//! - `GET /v1/events` with `Upgrade: websocket` and a user or connector bearer token becomes a
//!   WebSocket (RFC 6455 accept computed here, then `WebSocketStream::from_raw_socket` on the
//!   upgraded connection). Events are JSON text frames ([`Event`]). The server pings every
//!   [`WS_PING_INTERVAL`] and closes a socket silent for [`WS_IDLE_TIMEOUT`] (turmoil's TCP
//!   never retransmits: keepalives are how both ends notice a dead link). Each socket has a
//!   queue of [`WS_QUEUE_MAX`] events; a subscriber that falls that far behind is disconnected
//!   and must catch up over REST.
//! - A ticker calls [`Cloud::tick`] every [`TICK_INTERVAL`] and after each request the events
//!   are moved to the sockets.
//!
//! ## Client
//!
//! Always over a stream the caller opened (`Net::connect`): never a pooled client that opens
//! its own sockets (it would escape the simulation). Every call has a timeout
//! ([`HTTP_TIMEOUT`]). The WebSocket key is drawn from the caller's RNG. tungstenite masks
//! client frames with its own OS-seeded randomness; the mask changes bytes on the wire, never
//! their lengths or timing, so runs stay reproducible.

use super::api::{self, Subscriber};
use super::{BODY_BYTES_MAX, Cloud, CloudError};
use connector::io::net::Net;
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{self, Message};

/// How often the driver runs the core's timers. Registration, activation and typing timers are
/// seconds to minutes long; one second is precise enough and cheap under turmoil.
pub const TICK_INTERVAL: Duration = Duration::from_secs(1);
/// Events queued per WebSocket before the subscriber counts as stuck (a burst of assignment
/// events for 15,000 users is 15 frames; a busy user's devices see a few per second).
pub const WS_QUEUE_MAX: usize = 1_024;
/// Server ping period on WebSockets.
pub const WS_PING_INTERVAL: Duration = Duration::from_secs(30);

type Shared = Rc<RefCell<Cloud>>;
type HttpResponse = hyper::Response<Full<Bytes>>;

/// Open WebSockets by subscriber.
#[derive(Default)]
struct Sockets {
    subs: BTreeMap<Subscriber, BTreeMap<u64, mpsc::Sender<String>>>,
    next_id: u64,
}

type SharedSockets = Rc<RefCell<Sockets>>;

/// Serves the cloud on `port` until the listener fails.
pub async fn serve<N: Net>(net: N, cloud: Shared, port: u16) -> std::io::Result<()>
where
    N::Stream: Send,
{
    let listener = net.bind(port).await?;
    let sockets: SharedSockets = Rc::default();
    let ticker = tokio::task::spawn_local(ticker(net.clone(), cloud.clone(), sockets.clone()));
    let result = loop {
        match net.accept(&listener).await {
            Ok((stream, _)) => {
                let task = connection(net.clone(), cloud.clone(), sockets.clone(), stream);
                tokio::task::spawn_local(task);
            }
            Err(e) => break Err(e),
        }
    };
    ticker.abort();
    result
}

async fn ticker<N: Net>(net: N, cloud: Shared, sockets: SharedSockets) {
    let mut interval = tokio::time::interval(TICK_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        cloud.borrow_mut().tick(net.now());
        dispatch(&cloud, &sockets);
    }
}

async fn connection<N: Net>(net: N, cloud: Shared, sockets: SharedSockets, stream: N::Stream)
where
    N::Stream: Send,
{
    let service = hyper::service::service_fn(move |req| {
        let (net, cloud, sockets) = (net.clone(), cloud.clone(), sockets.clone());
        async move { Ok::<_, Infallible>(handle(net, cloud, sockets, req).await) }
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
    let Some(method) = api::Method::parse(req.method().as_str()) else {
        let method = req.method().as_str().to_owned();
        return refuse(&cloud, CloudError::MethodNotAllowed { method, path });
    };
    let body = match Limited::new(req.into_body(), BODY_BYTES_MAX)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let error = CloudError::TooLarge {
                bytes: BODY_BYTES_MAX + 1,
                limit: BODY_BYTES_MAX,
            };
            return refuse(&cloud, error);
        }
        Err(e) => return refuse(&cloud, CloudError::BadJson(format!("body: {e}"))),
    };
    let request = api::Request {
        method,
        path,
        token,
        body,
    };
    let response = cloud.borrow_mut().handle_request(net.now(), request);
    dispatch(&cloud, &sockets);
    json_response(response.status, &response.body)
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
            Ok(upgraded) => ws_session(net, sockets, subscriber, TokioIo::new(upgraded)).await,
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
async fn ws_session<N: Net, S>(net: N, sockets: SharedSockets, subscriber: Subscriber, io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config())).await;
    let (tx, mut rx) = mpsc::channel::<String>(WS_QUEUE_MAX);
    let id = sockets.borrow_mut().add(subscriber.clone(), tx);
    let mut ping = tokio::time::interval(WS_PING_INTERVAL);
    ping.tick().await; // the first tick is immediate
    let mut last_heard = net.now();
    loop {
        tokio::select! {
            biased;
            event = rx.recv() => {
                let Some(text) = event else { break };
                if !send(&mut ws, Message::text(text)).await {
                    break;
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => last_heard = net.now(),
            },
            _ = ping.tick() => {
                let silent = net.now().saturating_sub(last_heard) > WS_IDLE_TIMEOUT;
                if silent || !send(&mut ws, Message::Ping(Default::default())).await {
                    break;
                }
            }
        }
    }
    sockets.borrow_mut().remove(&subscriber, id);
    let _ = tokio::time::timeout(HTTP_TIMEOUT, ws.close(None)).await;
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
        self.subs
            .entry(subscriber)
            .or_default()
            .insert(self.next_id, tx);
        self.next_id
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
    /// dropped): a full queue drops its socket (its session then ends).
    fn deliver(&mut self, subscriber: &Subscriber, text: &str) -> (u64, u64, u64) {
        let Some(socks) = self.subs.get_mut(subscriber) else {
            return (0, 1, 0);
        };
        let before = socks.len();
        socks.retain(|_, tx| tx.try_send(text.to_owned()).is_ok());
        let dropped = (before - socks.len()) as u64;
        if socks.is_empty() {
            self.subs.remove(subscriber);
        }
        ((before as u64) - dropped, 0, dropped)
    }
}

/// Moves the core's pending events to the sockets.
fn dispatch(cloud: &Shared, sockets: &SharedSockets) {
    loop {
        let next = cloud.borrow_mut().poll_event();
        let Some((subscriber, event)) = next else {
            return;
        };
        let text = serde_json::to_string(&event).unwrap_or_default();
        let counts = sockets.borrow_mut().deliver(&subscriber, &text);
        cloud.borrow_mut().count_delivery(counts);
    }
}

pub use connector::io::http::{
    CLOUD_HOST, CLOUD_PORT, ClientError, EVENTS_PATH, EventClient, HTTP_IDLE_TIMEOUT, HTTP_TIMEOUT,
    HttpClient, RESPONSE_BYTES_MAX, WS_BUFFER_BYTES, WS_IDLE_TIMEOUT, WS_MESSAGE_BYTES_MAX,
    http_request, ws_config, ws_connect,
};
