//! The one error type of the cloud boundary. Every refusal of the cloud core becomes a
//! [`CloudError`], and every `CloudError` becomes an HTTP status with the JSON body
//! `{"error": "<kind>", "detail": "<human text>"}` ([`CloudError::status`],
//! [`CloudError::kind`]). Nothing a client sends can make the cloud panic.

use crate::kms::KmsError;

/// Why the cloud refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// The body is not the JSON the route expects (400).
    #[error("malformed JSON body: {0}")]
    BadJson(String),
    /// The request is well-formed JSON but a value is not acceptable (400).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No route has this path (404).
    #[error("no route {method} {path}")]
    NoRoute {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// The route exists but not with this method (405).
    #[error("method {method} not allowed on {path}")]
    MethodNotAllowed {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// The body is longer than the named limit (413).
    #[error("body of {bytes} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Bytes received (at least; reading stops at the limit).
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The body did not arrive in full within [`crate::body::BODY_READ_TIMEOUT`] (408).
    #[error("request body not complete in time")]
    BodyTimeout,
    /// No bearer token, or one the cloud did not issue (401).
    #[error("missing or unknown bearer token")]
    Unauthorized,
    /// A login with an unknown email or a wrong password (401).
    #[error("wrong email or password")]
    WrongPassword,
    /// A valid token, but this principal may not do this (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The named thing does not exist (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The request conflicts with the current state (409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A KMS request relayed by the cloud failed (403, 404 or 503 as the KMS answered).
    #[error("KMS: {0}")]
    Kms(#[from] KmsError),
}

impl CloudError {
    /// The HTTP status code answered for this error (always 4xx, or 503 for a KMS outage).
    pub fn status(&self) -> u16 {
        match self {
            CloudError::BadJson(_) | CloudError::Invalid(_) => 400,
            CloudError::Unauthorized | CloudError::WrongPassword => 401,
            CloudError::Forbidden(_) => 403,
            CloudError::BodyTimeout => 408,
            CloudError::NoRoute { .. } | CloudError::NotFound(_) => 404,
            CloudError::MethodNotAllowed { .. } => 405,
            CloudError::Conflict(_) => 409,
            CloudError::TooLarge { .. } => 413,
            CloudError::Kms(e) => e.status(),
        }
    }

    /// The short machine-readable kind, the `error` member of the JSON body.
    pub fn kind(&self) -> &'static str {
        match self {
            CloudError::BadJson(_) => "bad_json",
            CloudError::Invalid(_) => "invalid",
            CloudError::NoRoute { .. } => "no_route",
            CloudError::MethodNotAllowed { .. } => "method_not_allowed",
            CloudError::TooLarge { .. } => "too_large",
            CloudError::Unauthorized | CloudError::WrongPassword => "unauthorized",
            CloudError::Forbidden(_) => "forbidden",
            CloudError::BodyTimeout => "body_timeout",
            CloudError::NotFound(_) => "not_found",
            CloudError::Conflict(_) => "conflict",
            CloudError::Kms(KmsError::NotFound { .. }) => "kms_not_found",
            CloudError::Kms(KmsError::Forbidden { .. }) => "kms_forbidden",
            CloudError::Kms(KmsError::Unavailable) => "kms_unavailable",
        }
    }

    /// The JSON error body: `{"error": kind, "detail": message}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.kind(), "detail": self.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_bodies() {
        let cases = [
            (CloudError::BadJson("x".into()), 400, "bad_json"),
            (CloudError::Unauthorized, 401, "unauthorized"),
            (CloudError::Forbidden("x".into()), 403, "forbidden"),
            (CloudError::NotFound("x".into()), 404, "not_found"),
            (CloudError::Conflict("x".into()), 409, "conflict"),
            (
                CloudError::TooLarge {
                    bytes: 10,
                    limit: 5,
                },
                413,
                "too_large",
            ),
            (
                CloudError::Kms(KmsError::Unavailable),
                503,
                "kms_unavailable",
            ),
        ];
        for (e, status, kind) in cases {
            assert_eq!(e.status(), status);
            assert_eq!(e.body()["error"], kind);
            assert!(e.body()["detail"].as_str().is_some());
        }
    }
}
