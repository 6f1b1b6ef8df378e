//! Accepting connections without dying of it: every fake's accept loop goes through
//! [`accept`], which survives accept errors. Out of file descriptors (`EMFILE`, `ENFILE`), out
//! of buffers, or a connection aborted before it was accepted are conditions of the moment:
//! a server that returned on them ended for every client it was serving. Instead the error
//! is counted and logged, and the loop waits a growing pause (descriptors free up as other
//! connections close) and accepts again.

use connector::io::net::Net;
use std::net::SocketAddr;
use std::time::Duration;

/// First pause after an accept error: short, since one aborted connection is common.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause between accept attempts while they keep failing: long enough not to spin
/// on a descriptor table that stays full, short enough to serve again within a second of a
/// descriptor freeing up.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Accept errors one listener has met, for its WARN lines.
#[derive(Debug, Default)]
pub struct AcceptErrors {
    /// Errors since the listener opened.
    pub total: u64,
    /// Errors since the last accepted connection.
    streak: u32,
}

/// Accepts one connection on `listener`; on an error, logs it (the first of a run of
/// failures, and then every power of two, with the count), waits a doubling pause from
/// [`ACCEPT_BACKOFF_MIN`] to [`ACCEPT_BACKOFF_MAX`], and tries again. `what` names the
/// listener in the log (`c2s`, `component`, `axl`, `cloud`, `kms`).
pub async fn accept<N: Net>(
    net: &N,
    listener: &N::Listener,
    what: &str,
    errors: &mut AcceptErrors,
) -> (N::Stream, SocketAddr) {
    loop {
        match net.accept(listener).await {
            Ok(accepted) => {
                errors.recovered(what);
                return accepted;
            }
            Err(e) => tokio::time::sleep(errors.failed(what, &e)).await,
        }
    }
}

impl AcceptErrors {
    /// Counts an accept error, logs the first of a run and then each power of two; returns
    /// the pause before the next attempt.
    fn failed(&mut self, what: &str, e: &std::io::Error) -> Duration {
        self.total += 1;
        self.streak = self.streak.saturating_add(1);
        if self.streak.is_power_of_two() {
            let (failed, total) = (self.streak, self.total);
            tracing::warn!(listener = what, error = %e, failed, total, "accept failed; pausing and retrying");
        }
        pause(self.streak)
    }

    /// A connection was accepted: the run of errors, if any, is over.
    fn recovered(&mut self, what: &str) {
        if self.streak > 0 {
            let failed = self.streak;
            tracing::warn!(listener = what, failed, "accepting connections again");
        }
        self.streak = 0;
    }
}

/// The pause after the `streak`-th failure in a row.
fn pause(streak: u32) -> Duration {
    let doublings = streak.saturating_sub(1).min(16);
    ACCEPT_BACKOFF_MIN
        .saturating_mul(1 << doublings)
        .min(ACCEPT_BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_up_to_its_bound() {
        assert_eq!(pause(1), ACCEPT_BACKOFF_MIN);
        assert_eq!(pause(2), ACCEPT_BACKOFF_MIN * 2);
        assert_eq!(pause(8), ACCEPT_BACKOFF_MAX);
        assert_eq!(pause(u32::MAX), ACCEPT_BACKOFF_MAX);
    }
}
