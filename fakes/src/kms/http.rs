//! The KMS host's driver: HTTP/1.1 on any [`Net`] around the sans-IO [`KmsService`] ([`serve`],
//! [`serve_listener`]), and the client the cloud relays with ([`KmsClient`], [`kms_request`]).

use super::keys::KmsError;
use super::service::{KMS_BODY_BYTES_MAX, KmsCall, KmsReply, KmsService, error_body};
use crate::accept::{AcceptErrors, accept};
use crate::body::{BodyError, read_body};
use crate::rest::{Method, Response};
use connector::io::http::{ClientError, HTTP_IDLE_TIMEOUT, HTTP_TIMEOUT, HttpClient};
use connector::io::net::Net;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use std::cell::RefCell;
use std::convert::Infallible;
use std::rc::Rc;

type HttpResponse = hyper::Response<Full<Bytes>>;

fn json_response(r: &Response) -> HttpResponse {
    let mut resp = hyper::Response::new(Full::new(Bytes::from(r.body.to_string())));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(r.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Serves the KMS on `port` until the listener fails.
///
/// # Errors
/// The listener's error.
pub async fn serve<N: Net>(net: N, kms: Rc<RefCell<KmsService>>, port: u16) -> std::io::Result<()> {
    let listener = net.bind(port).await?;
    serve_listener(net, kms, listener).await
}

/// Serves the KMS on a listener the caller bound (to print "listening" once bound).
///
/// # Errors
/// The listener's error.
pub async fn serve_listener<N: Net>(
    net: N,
    kms: Rc<RefCell<KmsService>>,
    listener: N::Listener,
) -> std::io::Result<()> {
    let mut errors = AcceptErrors::default();
    loop {
        let (stream, _) = accept(&net, &listener, "kms", &mut errors).await;
        let kms = kms.clone();
        tokio::task::spawn_local(async move {
            let service = hyper::service::service_fn(move |req| {
                let kms = kms.clone();
                async move { Ok::<_, Infallible>(handle(kms, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HTTP_IDLE_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "KMS HTTP connection ended with an error");
            }
        });
    }
}

async fn handle(kms: Rc<RefCell<KmsService>>, req: hyper::Request<Incoming>) -> HttpResponse {
    let path = req.uri().path().to_owned();
    let Some(method) = Method::parse(req.method().as_str()) else {
        let r = Response {
            status: 405,
            body: error_body("method_not_allowed", req.method().as_str()),
        };
        return json_response(&r);
    };
    let body = match read_body(req.into_body(), KMS_BODY_BYTES_MAX).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return json_response(&kms.borrow_mut().refuse_too_large()),
        Err(BodyError::TimedOut) => {
            let r = Response {
                status: 408,
                body: error_body("body_timeout", "request body not complete in time"),
            };
            return json_response(&r);
        }
        Err(BodyError::Broken(e)) => {
            let r = Response {
                status: 400,
                body: error_body("bad_json", format!("body: {e}")),
            };
            return json_response(&r);
        }
    };
    let r = kms.borrow_mut().handle(method, &path, &body);
    json_response(&r)
}

/// A keep-alive HTTP/1.1 connection to a KMS host, reopened after any failure: how the
/// cloud's driver relays. A transport failure or timeout ([`HTTP_TIMEOUT`]) counts as
/// [`KmsError::Unavailable`], like a 503.
pub struct KmsClient<N: Net> {
    net: N,
    host: String,
    port: u16,
    client: Option<HttpClient>,
}

impl<N: Net> std::fmt::Debug for KmsClient<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsClient")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl<N: Net> KmsClient<N> {
    /// A client of the KMS at `host:port` (connects on first use).
    pub fn new(net: N, host: impl Into<String>, port: u16) -> Self {
        KmsClient {
            net,
            host: host.into(),
            port,
            client: None,
        }
    }

    /// Sends one call and reads the answer.
    ///
    /// # Errors
    /// The [`KmsError`] the KMS answered, or `Unavailable` on transport failure.
    pub async fn call(&mut self, call: &KmsCall) -> Result<KmsReply, KmsError> {
        match tokio::time::timeout(HTTP_TIMEOUT, self.exchange(call)).await {
            Ok(Some((status, json))) => call.parse_answer(status, &json),
            _ => {
                self.client = None;
                Err(KmsError::Unavailable)
            }
        }
    }

    /// One exchange; a call that a reused connection closed on before any response was never
    /// read, so it is sent once more on a new connection (RFC 9112 section 9.3.1), as the
    /// Webex App's `CloudConn` does. Two ways to meet it: the KMS closed the connection as
    /// idle just as the call went out (a keep-alive race; presence-poll saw Webex Apps log in
    /// again after the 503), or the close was lost in a partition and a reset answers the call
    /// (cloud-outage-hds-relay).
    async fn exchange(&mut self, call: &KmsCall) -> Option<(u16, Value)> {
        let reused = self.client.as_ref().is_some_and(HttpClient::is_open);
        match self.send_once(call).await {
            Err(ClientError::NoResponse(_)) if reused => self.send_once(call).await.ok(),
            answer => answer.ok(),
        }
    }

    /// Sends `call` on the open connection, or on a new one; drops the connection on failure.
    async fn send_once(&mut self, call: &KmsCall) -> Result<(u16, Value), ClientError> {
        if !self.client.as_ref().is_some_and(HttpClient::is_open) {
            self.client = None;
            let stream = self
                .net
                .connect(&self.host, self.port)
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?;
            self.client = Some(HttpClient::handshake(stream).await?);
        }
        let client = self
            .client
            .as_mut()
            .ok_or_else(|| ClientError::Http("no connection".into()))?;
        let (method, path, body) = call.request();
        let sent = client
            .send(
                method,
                path,
                &self.host,
                None,
                Some("application/json"),
                body.to_string().into_bytes(),
            )
            .await;
        match sent {
            Ok((status, bytes)) => Ok((
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )),
            Err(e) => {
                self.client = None;
                Err(e)
            }
        }
    }
}

/// Sends one call to the KMS at `host:port` on a fresh connection.
///
/// # Errors
/// The [`KmsError`] the KMS answered, or `Unavailable` on transport failure.
pub async fn kms_request<N: Net>(
    net: &N,
    host: &str,
    port: u16,
    call: &KmsCall,
) -> Result<KmsReply, KmsError> {
    KmsClient::new(net.clone(), host, port).call(call).await
}
