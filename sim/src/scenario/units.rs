//! Value types written as strings in scenarios: durations (`90s`, `15m`, `1h30m`), percentages
//! (`60%`) and rates (`1/10m`). Each parses with an error message that shows the valid forms.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A simulated duration, at millisecond resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

impl Dur {
    /// From milliseconds.
    pub const fn from_ms(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
    /// From seconds.
    pub const fn from_secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    /// Whole milliseconds.
    pub fn ms(self) -> u64 {
        self.0.as_millis() as u64
    }
}

/// The duration syntax, shared with the serve configs.
pub use fakes::config::{DURATION_FORMS, parse_duration};

/// Formats a duration the way scenarios write it (`1h30m`, `90s` → `1m30s`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    if ms > 0 {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a duration string: {DURATION_FORMS}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "a bare number `{v}` has no unit: write {v}s, {v}m, or {v}ms"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                self.visit_u64(v.unsigned_abs())
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A percentage in basis points (1% = 100), written `60%` or `12.5%`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pct(pub u32);

impl Pct {
    /// 100%.
    pub const ALL: Pct = Pct(10_000);
    /// 0%.
    pub const NONE: Pct = Pct(0);
    /// As a fraction in `[0, 1]`.
    pub fn fraction(self) -> f64 {
        f64::from(self.0) / 10_000.0
    }
    /// `count` × this percentage, rounded to the nearest whole.
    pub fn of(self, count: u32) -> u32 {
        ((u64::from(count) * u64::from(self.0) + 5_000) / 10_000) as u32
    }
}

impl fmt::Display for Pct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(100) {
            write!(f, "{}%", self.0 / 100)
        } else {
            write!(f, "{}%", f64::from(self.0) / 100.0)
        }
    }
}

/// Parses `60%` or `12.5%` into basis points.
pub fn parse_percent(s: &str) -> Result<Pct, String> {
    let err = || {
        format!(
            "invalid percentage `{s}`: expected a number from 0 to 100 followed by `%`, like `60%` or `12.5%`"
        )
    };
    let num = s.trim().strip_suffix('%').ok_or_else(err)?;
    let v: f64 = num.trim().parse().map_err(|_| err())?;
    if !(0.0..=100.0).contains(&v) {
        return Err(err());
    }
    Ok(Pct((v * 100.0).round() as u32))
}

impl<'de> Deserialize<'de> for Pct {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_percent(&s).map_err(de::Error::custom)
    }
}

impl Serialize for Pct {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A rate: `count` events per `per` of simulated time, written `1/10m`, `6/h`, `2/1s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Events per period.
    pub count: f64,
    /// The period.
    pub per: Duration,
}

impl Rate {
    /// Mean time between events (infinite for a zero rate).
    pub fn mean_interval(&self) -> Option<Duration> {
        (self.count > 0.0).then(|| self.per.div_f64(self.count))
    }
    /// Events per second.
    pub fn per_second(&self) -> f64 {
        self.count / self.per.as_secs_f64()
    }
}

/// Parses `1/10m` (1 per 10 minutes) or `6/h` (6 per hour).
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let (count, per) = fakes::config::parse_rate(s)?;
    Ok(Rate { count, per })
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, format_duration(self.per))
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_rate(&s).map_err(de::Error::custom)
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Parses an IM&P version's major and minor numbers (`11.5(1)SU3` → (11, 5)): the one
/// parser `hmsim serve imp` uses too.
pub use fakes::imp::serve::imp_version;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(
            parse_duration("72h").unwrap(),
            Duration::from_secs(72 * 3600)
        );
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("15 minutes").is_err());
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("m").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
    }

    #[test]
    fn percentages_and_rates() {
        assert_eq!(parse_percent("60%").unwrap(), Pct(6000));
        assert_eq!(parse_percent("12.5%").unwrap(), Pct(1250));
        assert!(parse_percent("60").is_err());
        assert!(parse_percent("120%").is_err());
        assert_eq!(Pct(5000).of(7), 4);
        let r = parse_rate("1/10m").unwrap();
        assert_eq!(r.mean_interval(), Some(Duration::from_secs(600)));
        assert_eq!(parse_rate("6/h").unwrap().per, Duration::from_secs(3600));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("1/0s").is_err());
    }
}
