//! Range checks of the config file's numbers, run while the file is parsed: a value out of
//! range is then reported as a syntax error is, with its line, column and field path, and the
//! core never sees a rate it cannot use (a zero or NaN rate would stop session opens for good).

use serde::de::{Deserialize, Deserializer, Error as _};

/// Session opens per second at most: far above what an IM&P node accepts (it refuses beyond
/// its creation rate with `resource-constraint`), low enough to catch a unit mistake.
pub const SESSION_RATE_PER_S_MAX: f64 = 10_000.0;
/// Sessions per migration period at most: ten times the largest deployment (spec 2-4: 15,000
/// users per IM&P node, 6 nodes per cluster, 5 clusters).
pub const MIGRATION_SESSIONS_MAX: f64 = 4_500_000.0;
/// A migration period or detection delay at most, in seconds: one day.
pub const SECONDS_MAX: u64 = 86_400;

fn finite_in<'de, D: Deserializer<'de>>(
    d: D,
    ok: impl Fn(f64) -> bool,
    range: &str,
) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if v.is_finite() && ok(v) {
        Ok(v)
    } else {
        Err(D::Error::custom(format!(
            "{v} is out of range: expected {range}"
        )))
    }
}

fn integer_in<'de, D: Deserializer<'de>>(
    d: D,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(D::Error::custom(format!(
            "{v} is out of range: expected an integer from {} to {}",
            range.start(),
            range.end()
        )))
    }
}

/// `tuning.session_rate_per_s`: in (0, [`SESSION_RATE_PER_S_MAX`]].
pub fn session_rate_per_s<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    finite_in(
        d,
        |v| v > 0.0 && v <= SESSION_RATE_PER_S_MAX,
        "a number above 0 and at most 10000",
    )
}

/// `tuning.migration_sessions`: in [1, [`MIGRATION_SESSIONS_MAX`]].
pub fn migration_sessions<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    finite_in(
        d,
        |v| (1.0..=MIGRATION_SESSIONS_MAX).contains(&v),
        "a number from 1 to 4500000",
    )
}

/// `tuning.migration_per_s`: 1 s to a day.
pub fn migration_per_s<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    integer_in(d, 1..=SECONDS_MAX)
}

/// `tuning.detection_delay_max_s`: none to a day.
pub fn detection_delay_max_s<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    integer_in(d, 0..=SECONDS_MAX)
}

/// A TCP port: 1 to 65535 (port 0 cannot be connected to).
pub fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let v = integer_in(d, 1..=u64::from(u16::MAX))?;
    Ok(u16::try_from(v).expect("checked"))
}

/// An optional TCP port (see [`port`]).
pub fn opt_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    match Option::<u64>::deserialize(d)? {
        None => Ok(None),
        Some(v) if (1..=u64::from(u16::MAX)).contains(&v) => Ok(u16::try_from(v).ok()),
        Some(v) => Err(D::Error::custom(format!(
            "{v} is out of range: expected an integer from 1 to 65535"
        ))),
    }
}
