//! Range-checked numbers for the serve configs (`hmsim serve imp|cloud|kms`): a value out of
//! range is refused while the YAML is read, so the CLI reports it with its field path (for
//! example `listen.port: port 0 is out of range 1..=65535`) and exits 2, instead of a server
//! that binds a random port or refuses every session.

use serde::{Deserialize, Deserializer, de};

/// Sessions one node may be configured to hold at most: ten times a Large node's 15,000 users
/// at 1.5 sessions each, far beyond what one process serves.
pub const SESSIONS_CONFIG_MAX: usize = 250_000;
/// Session creations per period at most in a configured rate.
pub const CREATE_RATE_CONFIG_MAX: u32 = 1_000_000;

/// A TCP port to listen on or connect to: 1 to 65535 (0 would bind a random port while the
/// server prints the configured one).
///
/// # Errors
/// A value out of range, or not a number.
pub fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let v = i64::deserialize(d)?;
    match u16::try_from(v) {
        Ok(p) if p >= 1 => Ok(p),
        _ => Err(de::Error::custom(format!(
            "port {v} is out of range 1..=65535"
        ))),
    }
}

/// An optional session limit: 1 to [`SESSIONS_CONFIG_MAX`].
///
/// # Errors
/// A value out of range, or not a number.
pub fn sessions_max<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let Some(v) = Option::<i64>::deserialize(d)? else {
        return Ok(None);
    };
    match usize::try_from(v) {
        Ok(n) if (1..=SESSIONS_CONFIG_MAX).contains(&n) => Ok(Some(n)),
        _ => Err(de::Error::custom(format!(
            "sessions_max {v} is out of range 1..={SESSIONS_CONFIG_MAX}"
        ))),
    }
}
