//! The REST wire types the cloud and the KMS host share: a leaf, so that the cloud (which relays
//! to the KMS) and the KMS (which answers with the same [`Response`]) both import it and
//! neither imports the other.

pub use connector::proto::http::Method;

/// The core's answer: a status and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// JSON body (`{"error", "detail"}` for errors).
    pub body: serde_json::Value,
}
