//! Rate limiting and backoff, sans-IO: time is an argument, randomness is passed in.
//!
//! [`TokenBucket`] paces session creation and migration (spec 62: 5,000 sessions in about
//! 30 minutes after a failover); [`Backoff`] spaces retries after refusals
//! (`resource-constraint`) and lost connections, with seeded jitter so that thousands of
//! sessions do not retry in the same tick.

use rand_core::Rng;
use std::time::Duration;

/// How far ahead a closed bucket says its next token is: never, but a timer far in the future
/// is what a caller that asks must get, not an overflow.
pub const CLOSED_RETRY: Duration = Duration::from_secs(365 * 24 * 3600);

/// A token bucket: `rate_per_s` tokens per second, holding at most `burst`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    rate_per_s: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
}

/// Why a rate cannot drive a [`TokenBucket`].
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum RateError {
    /// Zero, negative, NaN or infinite.
    #[error("a rate must be a finite number above zero, not {0}")]
    NotPositive(f64),
}

impl TokenBucket {
    /// A bucket that starts full at time `now`, or why `rate_per_s` cannot drive one (zero,
    /// negative, NaN or infinite: a config error to report, not a panic).
    pub fn try_new(rate_per_s: f64, burst: f64, now: Duration) -> Result<Self, RateError> {
        if !(rate_per_s.is_finite() && rate_per_s > 0.0) {
            return Err(RateError::NotPositive(rate_per_s));
        }
        let burst = if burst.is_finite() {
            burst.max(1.0)
        } else {
            1.0
        };
        Ok(Self {
            rate_per_s,
            burst,
            tokens: burst,
            last: now,
        })
    }

    /// [`Self::try_new`], with a refused rate giving a closed bucket: it never grants a token,
    /// so whatever it paces waits (and the configuration check names the rate) instead of the
    /// process stopping.
    pub fn new(rate_per_s: f64, burst: f64, now: Duration) -> Self {
        Self::try_new(rate_per_s, burst, now).unwrap_or(Self {
            rate_per_s: 0.0,
            burst: 0.0,
            tokens: 0.0,
            last: now,
        })
    }

    /// A bucket moving `count` items per `per` (e.g. 5,000 per 30 minutes), burst of one
    /// second's worth (at least 1); closed if that rate is refused ([`Self::new`]).
    pub fn per(count: f64, per: Duration, now: Duration) -> Self {
        let rate = count / per.as_secs_f64().max(1e-9);
        Self::new(rate, rate.max(1.0), now)
    }

    /// Whether the bucket never grants a token (its rate was refused).
    pub fn is_closed(&self) -> bool {
        self.rate_per_s == 0.0
    }

    fn refill(&mut self, now: Duration) {
        let dt = now.saturating_sub(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate_per_s).min(self.burst);
        self.last = self.last.max(now);
    }

    /// Takes one token if available.
    pub fn try_take(&mut self, now: Duration) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next token will be available (now, if one is).
    pub fn next_available(&mut self, now: Duration) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            return now;
        }
        if self.is_closed() {
            return now + CLOSED_RETRY;
        }
        // Rounded up, and at least 1 ns: a wait rounded down to zero (tokens a rounding error
        // short of one) would find the bucket still empty at the same instant, forever.
        let wait_ns = ((1.0 - self.tokens) / self.rate_per_s * 1e9).ceil();
        now + Duration::from_nanos((wait_ns as u64).max(1))
    }

    /// Tokens per second.
    pub fn rate_per_s(&self) -> f64 {
        self.rate_per_s
    }
}

/// Exponential backoff with jitter in `[0.5, 1.5)` of the current step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// Backoff from `min` doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            step: min,
        }
    }

    /// The next delay; doubles the step for the time after.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let jitter = 0.5 + (rng.next_u32() as f64 / (u32::MAX as f64 + 1.0));
        let d = self.step.mul_f64(jitter);
        self.step = (self.step * 2).min(self.max);
        d
    }

    /// Back to the minimum after a success.
    pub fn reset(&mut self) {
        self.step = self.min;
    }
}

/// The wait after an item's `failures`-th failure (1 = the first): `min` doubling per failure
/// up to `max`, jittered to 50-150 %. Kept per item: with one shared backoff, any other
/// request's success would reset it, and a saturated KMS would be asked again at once.
pub fn backoff_delay(min: Duration, max: Duration, failures: u32, rng: &mut impl Rng) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    let step = min.saturating_mul(1 << doublings).min(max.max(min));
    let jitter = 0.5 + (rng.next_u32() as f64 / (u32::MAX as f64 + 1.0));
    step.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::SeedableRng as _;

    #[test]
    fn a_token_a_rounding_error_short_is_still_in_the_future() {
        let now = Duration::from_secs(317);
        let mut b = TokenBucket::per(200.0, Duration::from_secs(300), now);
        // What float refills leave behind: a wait of 1.5e-11 s, zero once in nanoseconds.
        b.tokens = 1.0 - 1e-11;
        assert!(!b.try_take(now));
        let next = b.next_available(now);
        assert!(
            next > now,
            "a bucket without a token must not say `now` (a timer loop)"
        );
        assert!(b.try_take(next));
    }

    #[test]
    fn migration_rate_moves_5000_in_30_minutes() {
        let start = Duration::ZERO;
        let mut b = TokenBucket::per(5000.0, Duration::from_secs(1800), start);
        let (mut moved, mut now) = (0u32, start);
        // Bounded: 5,000 tokens at ~2.8/s need ~1,800 s; step 100 ms.
        while moved < 5000 && now < Duration::from_secs(4000) {
            while b.try_take(now) {
                moved += 1;
            }
            now += Duration::from_millis(100);
        }
        let secs = now.as_secs_f64();
        assert!((1750.0..1850.0).contains(&secs), "took {secs}s");
    }

    #[test]
    fn next_available_predicts_the_next_token() {
        let mut b = TokenBucket::new(2.0, 1.0, Duration::ZERO);
        assert!(b.try_take(Duration::ZERO));
        assert!(!b.try_take(Duration::ZERO));
        let t = b.next_available(Duration::ZERO);
        assert_eq!(t, Duration::from_millis(500));
        assert!(b.try_take(t));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_resets() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let delays: Vec<f64> = (0..6)
            .map(|_| b.next_delay(&mut rng).as_secs_f64())
            .collect();
        for (i, d) in delays.iter().enumerate() {
            let step = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0][i];
            assert!(*d >= 0.5 * step && *d < 1.5 * step, "{i}: {d}");
        }
        b.reset();
        assert!(b.next_delay(&mut rng) < Duration::from_millis(1500));
    }

    #[test]
    fn a_zero_negative_or_nan_rate_is_refused_without_a_panic() {
        let now = Duration::from_secs(5);
        for rate in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            let mut b = TokenBucket::new(rate, rate, now);
            assert!(!b.try_take(now), "{rate}");
            assert!(b.next_available(now) > now, "{rate}");
            let mut m = TokenBucket::per(rate, Duration::from_secs(1800), now);
            assert!(!m.try_take(now + Duration::from_secs(3600)), "{rate}");
        }
        let mut zero_period = TokenBucket::per(5000.0, Duration::ZERO, now);
        assert!(zero_period.try_take(now));
    }
}
