//! A brake on password guessing, per source address: the c2s port, AXL, the cloud's login and
//! admin routes answer a wrong password or token after a delay that doubles with each failure
//! from the same source, and every failure is counted and logged (WARN, with the count, at
//! the first failures of a source and then at each power of two). Sans-IO: the driver passes
//! `now` and the source, and sleeps the delay before answering.
//!
//! A right password resets its source. Sources are forgotten after [`BRAKE_FORGET`] without a
//! failure, and at most [`BRAKE_SOURCES_MAX`] are tracked (the least recent goes first).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// Failures a source makes without delay: a user mistyping a password twice.
pub const BRAKE_FREE_FAILURES: u32 = 2;
/// The delay after the first failure beyond the free ones; it doubles with each further one.
pub const BRAKE_DELAY_MIN: Duration = Duration::from_millis(250);
/// The longest delay: 200 guesses cost a source at least a quarter of an hour.
pub const BRAKE_DELAY_MAX: Duration = Duration::from_secs(8);
/// A source without a failure for this long starts afresh.
pub const BRAKE_FORGET: Duration = Duration::from_secs(15 * 60);
/// Sources tracked at once: bounds the table a spray from many addresses can grow.
pub const BRAKE_SOURCES_MAX: usize = 4_096;

#[derive(Debug, Clone, Copy)]
struct Source {
    failures: u32,
    last: Duration,
}

/// Failed authentications per source, and the delays they earn.
#[derive(Debug, Default)]
pub struct Brake {
    sources: BTreeMap<IpAddr, Source>,
    /// Failures counted since start.
    pub total: u64,
}

impl Brake {
    /// A failed authentication from `source` on `what` (`c2s`, `axl`, `cloud login`, `cloud
    /// admin`) at `now`: how long to wait before answering it.
    pub fn failed(&mut self, now: Duration, source: IpAddr, what: &str) -> Duration {
        self.total += 1;
        self.forget_before(now);
        if !self.sources.contains_key(&source) && self.sources.len() >= BRAKE_SOURCES_MAX {
            let oldest = self
                .sources
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(ip, _)| *ip);
            if let Some(ip) = oldest {
                self.sources.remove(&ip);
            }
        }
        let s = self.sources.entry(source).or_insert(Source {
            failures: 0,
            last: now,
        });
        s.failures = s.failures.saturating_add(1);
        s.last = now;
        let failures = s.failures;
        if failures <= BRAKE_FREE_FAILURES + 1 || failures.is_power_of_two() {
            tracing::warn!(
                %source,
                what,
                failures,
                total = self.total,
                "authentication failed"
            );
        }
        delay(failures)
    }

    /// A successful authentication from `source`: its failures are forgiven.
    pub fn succeeded(&mut self, source: IpAddr) {
        self.sources.remove(&source);
    }

    /// Failures of `source` in its current run.
    pub fn failures(&self, source: IpAddr) -> u32 {
        self.sources.get(&source).map_or(0, |s| s.failures)
    }

    fn forget_before(&mut self, now: Duration) {
        self.sources
            .retain(|_, s| now.saturating_sub(s.last) < BRAKE_FORGET);
    }
}

/// The delay earned by the `failures`-th failure in a row.
pub fn delay(failures: u32) -> Duration {
    let Some(over) = failures.checked_sub(BRAKE_FREE_FAILURES + 1) else {
        return Duration::ZERO;
    };
    BRAKE_DELAY_MIN
        .saturating_mul(1u32 << over.min(16))
        .min(BRAKE_DELAY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn delays_grow_per_source_and_reset_on_success() {
        let mut b = Brake::default();
        let now = Duration::from_secs(1);
        let delays: Vec<Duration> = (0..8).map(|_| b.failed(now, ip(1), "c2s")).collect();
        assert_eq!(delays[..2], [Duration::ZERO, Duration::ZERO]);
        assert_eq!(delays[2], BRAKE_DELAY_MIN);
        assert_eq!(delays[3], BRAKE_DELAY_MIN * 2);
        assert_eq!(delays[7], BRAKE_DELAY_MAX);
        assert_eq!(
            b.failed(now, ip(2), "c2s"),
            Duration::ZERO,
            "another source is not slowed"
        );
        b.succeeded(ip(1));
        assert_eq!(b.failures(ip(1)), 0);
        let total: Duration = (0..200).map(|_| b.failed(now, ip(3), "c2s")).sum();
        assert!(total >= Duration::from_secs(15 * 60), "{total:?}");
        assert_eq!(b.total, 209);
    }

    #[test]
    fn sources_are_bounded_and_forgotten() {
        let mut b = Brake::default();
        for i in 0..BRAKE_SOURCES_MAX + 10 {
            let source = IpAddr::from(u32::try_from(i).unwrap().to_be_bytes());
            b.failed(Duration::from_secs(1), source, "cloud login");
        }
        assert_eq!(b.sources.len(), BRAKE_SOURCES_MAX);
        b.failed(Duration::from_secs(1) + BRAKE_FORGET, ip(9), "cloud login");
        assert_eq!(b.sources.len(), 1);
    }
}
