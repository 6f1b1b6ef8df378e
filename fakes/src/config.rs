//! Range-checked numbers for the serve configs (`hmsim serve imp|cloud|kms`): a value out of
//! range is refused while the YAML is read, so the CLI reports it with its field path (for
//! example `listen.port: port 0 is out of range 1..=65535`) and exits 2, instead of a server
//! that binds a random port or refuses every session.

use serde::{Deserialize, Deserializer, de};
use std::time::Duration;

/// The accepted duration forms, for error messages.
pub const DURATION_FORMS: &str = "a number followed by a unit (ms, s, m, h, d), possibly repeated: `500ms`, `90s`, `15m`, `1h30m`, `72h`";

/// Parses `1h30m`, `90s`, `250ms`, `2d`: the one duration syntax of scenarios and serve
/// configs.
///
/// # Errors
/// The text is empty, or not numbers each followed by a unit.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("empty duration: expected {DURATION_FORMS}"));
    }
    let mut total_ms: u128 = 0;
    let mut rest = t;
    // Each round consumes one number and its unit: at most one round per character.
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let unit_len = rest[num_len..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len() - num_len);
        let (num, unit) = (&rest[..num_len], &rest[num_len..num_len + unit_len]);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("invalid duration `{s}`: expected {DURATION_FORMS}"))?;
        let unit_ms: f64 = match unit {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            _ => return Err(format!("invalid duration `{s}`: expected {DURATION_FORMS}")),
        };
        total_ms += (value * unit_ms).round() as u128;
        rest = &rest[num_len + unit_len..];
    }
    Ok(Duration::from_millis(total_ms.min(u64::MAX as u128) as u64))
}

/// Parses a rate `<count>/<duration>` (`1/10m`, `6/h`, `5000/30m`) into the count and the
/// period: the one rate syntax of scenarios and serve configs.
///
/// # Errors
/// Not of that form, a negative or NaN count, or a zero period.
pub fn parse_rate(s: &str) -> Result<(f64, Duration), String> {
    let err = || {
        format!(
            "invalid rate `{s}`: expected `<count>/<duration>`, like `1/10m`, `6/h` or `5000/30m`"
        )
    };
    let (count, per) = s.trim().split_once('/').ok_or_else(err)?;
    let count: f64 = count.trim().parse().map_err(|_| err())?;
    let per = per.trim();
    let per = if per.starts_with(|c: char| c.is_ascii_digit()) {
        parse_duration(per).map_err(|_| err())?
    } else {
        parse_duration(&format!("1{per}")).map_err(|_| err())?
    };
    if count.is_nan() || count < 0.0 || per.is_zero() {
        return Err(err());
    }
    Ok((count, per))
}

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
