//! The fake Key Management Service, core and host.
//!
//! - [`keys`]: the sans-IO key store: space keys, who may fetch them, outages (spec 56-60).
//! - [`service`]: the KMS host's sans-IO request → response core ([`KmsService`]): its routes.
//! - [`http`]: the host's driver (HTTP/1.1 on any [`connector::io::net::Net`]) and the client
//!   the cloud relays with.

pub mod http;
pub mod keys;
pub mod service;

pub use keys::{CLOUD_HOST, HDS_HOST, Kms, KmsError, KmsStats, draw_uuid, key_uri};
pub use service::{KMS_PORT, KmsCall, KmsReply, KmsService, KmsServiceStats};
