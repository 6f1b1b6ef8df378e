//! HTTP/1.1 and WebSocket clients over any [`Net`](super::net::Net) stream: how the connector
//! (and the Webex App model) talk to the cloud. Always over a stream the caller opened
//! (`Net::connect`), never a pooled client that opens its own sockets (its sockets would bypass
//! the simulated network). Every call has a timeout ([`HTTP_TIMEOUT`]). The WebSocket key is
//! drawn from the caller's RNG. tungstenite masks client frames with its own OS-seeded
//! randomness (allow-nondeterminism: the mask changes bytes on the wire, never their lengths or
//! timing, so runs stay reproducible).

use super::net::Stream;
use crate::proto::webex::Event;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::header;
use hyper_util::rt::TokioIo;
use rand_core::Rng;
use std::time::Duration;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

/// The cloud's host name.
pub const CLOUD_HOST: &str = "cloud";
/// The cloud's port (HTTPS in reality; plain TCP in the simulation, see docs/protocols.md).
pub const CLOUD_PORT: u16 = 443;
/// The WebSocket route.
pub const EVENTS_PATH: &str = "/v1/events";
/// How long the server waits for a request's headers, idle keep-alive time included (hyper's
/// header read timeout starts when the connection is ready for the next request): the bound on
/// an idle connection. Longer than two heartbeat periods, so that a connector heartbeating on a
/// kept-alive connection never races the server closing it.
pub const HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Client-side bound on one request (connect excluded) or one WebSocket handshake.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body a client reads, in bytes (500 activities are about 0.5 MiB).
pub const RESPONSE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Silence after which either end closes a WebSocket: three ping periods.
pub const WS_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Largest WebSocket message accepted, in bytes: events are at most tens of KiB.
pub const WS_MESSAGE_BYTES_MAX: usize = 1024 * 1024;
/// WebSocket read and write buffers, in bytes: small, since a farm host holds thousands of
/// sockets, and per-connection buffers multiply by that count.
pub const WS_BUFFER_BYTES: usize = 4 * 1024;

use crate::proto::http::Method;

// ---------------------------------------------------------------------------------------------

/// Why a client call failed (transport, not an HTTP error status: those come back as a status
/// and the JSON error body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The HTTP exchange failed (connection reset, protocol error).
    #[error("HTTP: {0}")]
    Http(String),
    /// The connection closed before any response arrived: typically the server closed an idle
    /// keep-alive connection as the request went out, so the request was never read. RFC 9112
    /// section 9.3.1 lets a client retry it on a new connection, as real clients do for a
    /// reused connection.
    #[error("HTTP: {0}")]
    NoResponse(String),
    /// No answer within [`HTTP_TIMEOUT`] (or [`WS_IDLE_TIMEOUT`] on a WebSocket).
    #[error("timed out")]
    Timeout,
    /// The response body is not JSON.
    #[error("response is not JSON: {0}")]
    BadJson(String),
    /// The server refused the WebSocket upgrade with this status.
    #[error("WebSocket upgrade refused with status {0}")]
    Refused(u16),
    /// The WebSocket failed or closed.
    #[error("WebSocket: {0}")]
    WebSocket(String),
}

/// One HTTP/1.1 connection to the cloud, reusable for many requests (keep-alive). The server
/// closes a connection idle for [`HTTP_IDLE_TIMEOUT`]: check [`HttpClient::is_open`] (or treat
/// [`ClientError::Http`] as "reconnect") before reusing one after a pause.
pub struct HttpClient {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    conn: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

impl Drop for HttpClient {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl HttpClient {
    /// Starts HTTP/1.1 on a stream the caller connected. Must run inside a `LocalSet` (turmoil
    /// hosts do): the connection task is spawned locally.
    ///
    /// # Errors
    /// [`ClientError::Http`] if the handshake fails.
    pub async fn handshake<S: Stream>(stream: S) -> Result<Self, ClientError> {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let conn = tokio::task::spawn_local(async move {
            if let Err(e) = conn.await {
                let _ = e; // the next request reports the broken connection
            }
        });
        Ok(HttpClient { sender, conn })
    }

    /// Whether the connection can take another request.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends one request with an optional bearer token and JSON body; returns the status and
    /// the JSON body (`Null` if empty).
    ///
    /// # Errors
    /// [`ClientError`] on transport failure, timeout or a non-JSON body.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        json: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), ClientError> {
        let body = json.map(|j| j.to_string()).unwrap_or_default();
        self.request_raw(method, path, token, body.into_bytes())
            .await
    }

    /// Like [`HttpClient::request`] with a raw body (for tests of malformed input).
    ///
    /// # Errors
    /// [`ClientError`] on transport failure, timeout or a non-JSON body.
    pub async fn request_raw(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(u16, serde_json::Value), ClientError> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let content_type = (!body.is_empty()).then_some("application/json");
        let (status, bytes) = self
            .send(
                method,
                path,
                CLOUD_HOST,
                auth.as_deref(),
                content_type,
                body,
            )
            .await?;
        if bytes.is_empty() {
            return Ok((status, serde_json::Value::Null));
        }
        let json =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::BadJson(e.to_string()))?;
        Ok((status, json))
    }

    /// Any request, any body: `authorization` is the whole header value (`Bearer …`,
    /// `Basic …`). Answers the status and the raw body. Used for AXL (SOAP) and by the
    /// connector's driver, which parses bodies in its sans-IO core.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        host: &str,
        authorization: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let call = self.exchange_bytes(method, path, host, authorization, content_type, body);
        tokio::time::timeout(HTTP_TIMEOUT, call)
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    async fn exchange_bytes(
        &mut self,
        method: Method,
        path: &str,
        host: &str,
        authorization: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let http = |e: hyper::http::Error| ClientError::Http(e.to_string());
        let mut builder = hyper::Request::builder()
            .method(method.as_str())
            .uri(path)
            .header(header::HOST, host);
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        if let Some(a) = authorization {
            builder = builder.header(header::AUTHORIZATION, a);
        }
        let req = builder.body(Full::new(Bytes::from(body))).map_err(http)?;
        self.sender
            .ready()
            .await
            .map_err(|e| ClientError::NoResponse(e.to_string()))?;
        let resp = self.sender.send_request(req).await.map_err(|e| {
            if closed_before_response(&e) {
                ClientError::NoResponse(e.to_string())
            } else {
                ClientError::Http(e.to_string())
            }
        })?;
        let status = resp.status().as_u16();
        let bytes = Limited::new(resp.into_body(), RESPONSE_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes();
        Ok((status, bytes.to_vec()))
    }
}

/// Whether a request failed because the connection closed under it before any response byte
/// came (closed, reset, or a broken pipe while writing), not because the server answered
/// something unreadable.
fn closed_before_response(e: &hyper::Error) -> bool {
    use std::io::ErrorKind as K;
    let io_closed = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| {
            matches!(
                io.kind(),
                K::ConnectionReset
                    | K::ConnectionAborted
                    | K::BrokenPipe
                    | K::NotConnected
                    | K::UnexpectedEof
            )
        });
    e.is_incomplete_message() || e.is_canceled() || e.is_closed() || io_closed
}

/// One request on a fresh HTTP/1.1 connection over `stream`.
///
/// # Errors
/// [`ClientError`] on transport failure, timeout or a non-JSON body.
pub async fn http_request<S: Stream>(
    stream: S,
    method: Method,
    path: &str,
    token: Option<&str>,
    json: Option<&serde_json::Value>,
) -> Result<(u16, serde_json::Value), ClientError> {
    let mut client = tokio::time::timeout(HTTP_TIMEOUT, HttpClient::handshake(stream))
        .await
        .map_err(|_| ClientError::Timeout)??;
    client.request(method, path, token, json).await
}

/// A WebSocket subscription to the cloud's events.
pub struct EventClient<S> {
    ws: WebSocketStream<S>,
}

impl<S> std::fmt::Debug for EventClient<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventClient").finish_non_exhaustive()
    }
}

/// Opens the event WebSocket over `stream` with a user or connector `token`; the
/// `Sec-WebSocket-Key` is drawn from `rng`.
///
/// # Errors
/// [`ClientError::Refused`] with the status if the cloud refuses (401 for a bad token),
/// [`ClientError::Timeout`], or [`ClientError::WebSocket`].
pub async fn ws_connect<S: Stream, R: Rng + ?Sized>(
    stream: S,
    token: &str,
    rng: &mut R,
) -> Result<EventClient<S>, ClientError> {
    let mut key = [0u8; 16];
    rng.fill_bytes(&mut key);
    let request = tungstenite::http::Request::builder()
        .method("GET")
        .uri(format!("ws://{CLOUD_HOST}{EVENTS_PATH}"))
        .header("Host", CLOUD_HOST)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", STANDARD.encode(key))
        .header("Authorization", format!("Bearer {token}"))
        .body(())
        .map_err(|e| ClientError::WebSocket(e.to_string()))?;
    let handshake = tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config()));
    match tokio::time::timeout(HTTP_TIMEOUT, handshake).await {
        Err(_) => Err(ClientError::Timeout),
        Ok(Ok((ws, _))) => Ok(EventClient { ws }),
        Ok(Err(tungstenite::Error::Http(resp))) => {
            Err(ClientError::Refused(resp.status().as_u16()))
        }
        Ok(Err(e)) => Err(ClientError::WebSocket(e.to_string())),
    }
}

impl<S: Stream> EventClient<S> {
    /// The next event. Answers pings on the way; fails if nothing at all (not even a ping)
    /// arrives for [`WS_IDLE_TIMEOUT`], or when the socket closes.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] on silence, [`ClientError::WebSocket`] on close or error,
    /// [`ClientError::BadJson`] for a frame that is not an event.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        loop {
            let frame = tokio::time::timeout(WS_IDLE_TIMEOUT, self.ws.next())
                .await
                .map_err(|_| ClientError::Timeout)?;
            match frame {
                None | Some(Ok(Message::Close(_))) => {
                    return Err(ClientError::WebSocket("closed".into()));
                }
                Some(Err(e)) => return Err(ClientError::WebSocket(e.to_string())),
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str())
                        .map_err(|e| ClientError::BadJson(e.to_string()));
                }
                Some(Ok(Message::Ping(_))) => {
                    // tungstenite queued the pong; push it out now.
                    let _ = tokio::time::timeout(HTTP_TIMEOUT, self.ws.flush()).await;
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// Closes the socket politely.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(HTTP_TIMEOUT, self.ws.close(None)).await;
    }
}

/// WebSocket limits shared by both ends: small buffers (thousands of sockets per host) and a
/// bounded message size.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(WS_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(Some(WS_MESSAGE_BYTES_MAX))
        .max_frame_size(Some(WS_MESSAGE_BYTES_MAX))
}
