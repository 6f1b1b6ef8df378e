//! The AXL driver: hyper's HTTP/1.1 server on any [`Net`] around the sans-IO [`AxlService`].

use super::service::{AXL_BODY_BYTES_MAX, AXL_HEADER_TIMEOUT, AxlRequest, AxlResponse, AxlService};
use crate::accept::{AcceptErrors, accept};
use crate::body::{BodyError, read_body};
use crate::brake::Brake;
use connector::io::net::Net;
use http_body_util::Full;
use hyper::body::Bytes;
use std::cell::RefCell;
use std::rc::Rc;

/// Serves AXL on `port` until the listener fails: one hyper HTTP/1.1 connection task per
/// accepted stream. The service is shared so that a fault (spec 22) can stop it while it runs.
pub async fn serve_axl<N: Net>(
    net: N,
    axl: Rc<RefCell<AxlService>>,
    port: u16,
) -> std::io::Result<()> {
    let listener = net.bind(port).await?;
    let mut errors = AcceptErrors::default();
    let brake = Rc::new(RefCell::new(Brake::default()));
    loop {
        let (stream, peer) = accept(&net, &listener, "axl", &mut errors).await;
        let guard = Guard {
            net: net.clone(),
            brake: brake.clone(),
            source: peer.ip(),
        };
        tokio::task::spawn_local(axl_connection(stream, axl.clone(), guard));
    }
}

/// The brake on password guessing of one AXL server, and the source of one connection.
struct Guard<N: Net> {
    net: N,
    brake: Rc<RefCell<Brake>>,
    source: std::net::IpAddr,
}

impl<N: Net> Guard<N> {
    /// A 401 waits its delay (per source and account); a success forgives its account.
    async fn answered(&self, account: &str, status: u16) {
        if status == 401 {
            let now = self.net.now();
            let wait = self
                .brake
                .borrow_mut()
                .failed(now, self.source, account, "axl");
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        } else if status < 300 {
            self.brake.borrow_mut().succeeded(account);
        }
    }
}

/// The user name of a request's basic credentials ("" without readable ones): the account the
/// brake counts a failure against.
fn basic_user(headers: &hyper::HeaderMap) -> String {
    use base64::Engine as _;
    let user = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, b64)| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .map(|raw| String::from_utf8_lossy(&raw).into_owned());
    user.and_then(|u| u.split_once(':').map(|(name, _)| name.to_owned()))
        .unwrap_or_default()
}

async fn axl_connection<S: connector::io::net::Stream, N: Net>(
    stream: S,
    axl: Rc<RefCell<AxlService>>,
    guard: Guard<N>,
) {
    let guard = Rc::new(guard);
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let (axl, guard) = (axl.clone(), guard.clone());
        async move {
            let account = basic_user(req.headers());
            let resp = answer(&axl, req).await;
            guard.answered(&account, resp.status().as_u16()).await;
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(AXL_HEADER_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "AXL connection ended with an error");
    }
}

/// Reads one request's body (at most [`AXL_BODY_BYTES_MAX`]) and answers it.
async fn answer(
    axl: &Rc<RefCell<AxlService>>,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let resp = match read_body(body, AXL_BODY_BYTES_MAX).await {
        Ok(bytes) => {
            let headers: Vec<(String, String)> = parts
                .headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect();
            axl.borrow_mut().handle(AxlRequest {
                method: parts.method.as_str(),
                path: parts.uri.path(),
                headers: &headers,
                body: &bytes,
            })
        }
        Err(BodyError::TooLarge) => {
            AxlResponse::new(413, "text/plain", "request body too large\n".into())
        }
        Err(BodyError::TimedOut) => AxlResponse::new(
            408,
            "text/plain",
            "request body not complete in time\n".into(),
        ),
        Err(BodyError::Broken(_)) => {
            AxlResponse::new(400, "text/plain", "malformed request body\n".into())
        }
    };
    let mut builder = hyper::Response::builder().status(resp.status);
    for (k, v) in &resp.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    builder
        .body(Full::new(Bytes::from(resp.body)))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}
