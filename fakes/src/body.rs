//! Reading a request body on the fakes' HTTP servers (cloud, KMS, AXL): bounded in bytes and
//! in time. hyper's header timeout ends a connection whose headers stall, but nothing ends one
//! whose body stalls: a peer that announces a long body and sends it slowly would hold the
//! connection, and its buffer, for ever.

use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use std::time::Duration;

/// How long a request body may take to arrive in full. The connector and the client models
/// give up on a request after `connector::io::http::HTTP_TIMEOUT` (30 s): twice that is never
/// reached by a client still waiting for its answer.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a body was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Longer than the limit (answered 413).
    TooLarge,
    /// Not complete within [`BODY_READ_TIMEOUT`] (answered 408, then the connection closes).
    TimedOut,
    /// The transport failed or the framing was bad.
    Broken(String),
}

/// Reads a whole body of at most `limit` bytes within [`BODY_READ_TIMEOUT`].
///
/// # Errors
/// [`BodyError`].
pub async fn read_body(body: Incoming, limit: usize) -> Result<Vec<u8>, BodyError> {
    match tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, limit).collect()).await {
        Err(_) => Err(BodyError::TimedOut),
        Ok(Ok(collected)) => Ok(collected.to_bytes().to_vec()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Ok(Err(e)) => Err(BodyError::Broken(e.to_string())),
    }
}
