//! A brake on password guessing, per source address and per target account: the c2s port,
//! AXL, the cloud's login and admin routes answer a wrong password or token after a delay that
//! doubles with each failure, and every failure is counted and logged (WARN, with the count, at
//! the first failures and then at each power of two). Sans-IO: the driver passes `now`, the
//! source and the account tried, and sleeps the delay before answering.
//!
//! Failures are counted twice: per source (one host guessing many accounts) and per account
//! (many hosts guessing one account); the delay follows the larger count. A right password
//! clears only its own account's count: the source keeps its failures, so an attacker who holds
//! one valid account cannot log in with it between guesses to wipe the source's count. Entries
//! are forgotten after [`BRAKE_FORGET`] without a failure, and at most [`BRAKE_SOURCES_MAX`]
//! sources and [`BRAKE_ACCOUNTS_MAX`] accounts are tracked (the least recent goes first).

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
/// Accounts tracked at once: bounds the table a spray of made-up user names can grow.
pub const BRAKE_ACCOUNTS_MAX: usize = 4_096;
/// Bytes of an account name kept as its key: names come from the network, and a real one
/// (an email address, RFC 5321) is shorter.
pub const BRAKE_ACCOUNT_BYTES_MAX: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Source {
    failures: u32,
    last: Duration,
}

/// Failed authentications per source and per account, and the delays they earn.
#[derive(Debug, Default)]
pub struct Brake {
    sources: BTreeMap<IpAddr, Source>,
    accounts: BTreeMap<String, Source>,
    /// Failures counted since start.
    pub total: u64,
}

impl Brake {
    /// A failed authentication from `source` for `account` on `what` (`c2s`, `axl`, `cloud
    /// login`, `cloud admin`) at `now`: how long to wait before answering it.
    pub fn failed(&mut self, now: Duration, source: IpAddr, account: &str, what: &str) -> Duration {
        self.total += 1;
        self.forget_before(now);
        let account = account_key(account);
        let by_source = count(&mut self.sources, source, now, BRAKE_SOURCES_MAX);
        let by_account = count(&mut self.accounts, account.clone(), now, BRAKE_ACCOUNTS_MAX);
        let failures = by_source.max(by_account);
        if failures <= BRAKE_FREE_FAILURES + 1 || failures.is_power_of_two() {
            tracing::warn!(
                %source,
                account = %account.escape_debug(),
                what,
                by_source,
                by_account,
                total = self.total,
                "authentication failed"
            );
        }
        delay(failures)
    }

    /// A successful authentication of `account`: that account's failures are forgiven, not
    /// the source's (a valid login must not wipe the guesses its source made at others).
    pub fn succeeded(&mut self, account: &str) {
        self.accounts.remove(&account_key(account));
    }

    /// Failures of `source` in its current run.
    pub fn failures(&self, source: IpAddr) -> u32 {
        self.sources.get(&source).map_or(0, |s| s.failures)
    }

    /// Failures against `account` in its current run.
    pub fn account_failures(&self, account: &str) -> u32 {
        self.accounts
            .get(&account_key(account))
            .map_or(0, |s| s.failures)
    }

    fn forget_before(&mut self, now: Duration) {
        let fresh = |s: &Source| now.saturating_sub(s.last) < BRAKE_FORGET;
        self.sources.retain(|_, s| fresh(s));
        self.accounts.retain(|_, s| fresh(s));
    }
}

/// The key an account name is counted under: its first [`BRAKE_ACCOUNT_BYTES_MAX`] bytes (on a
/// character boundary), lowercase (user names and emails compare without case).
fn account_key(account: &str) -> String {
    let mut end = account.len().min(BRAKE_ACCOUNT_BYTES_MAX);
    while !account.is_char_boundary(end) {
        end -= 1;
    }
    account[..end].to_lowercase()
}

/// Counts one failure of `key` in `table` (at most `max` keys: the least recent goes first);
/// returns its failures in a row.
fn count<K: Ord + Clone>(
    table: &mut BTreeMap<K, Source>,
    key: K,
    now: Duration,
    max: usize,
) -> u32 {
    if !table.contains_key(&key) && table.len() >= max {
        let oldest = table
            .iter()
            .min_by_key(|(_, s)| s.last)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            table.remove(&k);
        }
    }
    let s = table.entry(key).or_insert(Source {
        failures: 0,
        last: now,
    });
    s.failures = s.failures.saturating_add(1);
    s.last = now;
    s.failures
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
    fn delays_grow_per_source() {
        let mut b = Brake::default();
        let now = Duration::from_secs(1);
        let delays: Vec<Duration> = (0..8)
            .map(|i| b.failed(now, ip(1), &format!("user-{i}"), "c2s"))
            .collect();
        assert_eq!(delays[..2], [Duration::ZERO, Duration::ZERO]);
        assert_eq!(delays[2], BRAKE_DELAY_MIN);
        assert_eq!(delays[3], BRAKE_DELAY_MIN * 2);
        assert_eq!(delays[7], BRAKE_DELAY_MAX);
        assert_eq!(
            b.failed(now, ip(2), "someone", "c2s"),
            Duration::ZERO,
            "another source is not slowed"
        );
        let total: Duration = (0..200).map(|_| b.failed(now, ip(3), "x", "c2s")).sum();
        assert!(total >= Duration::from_secs(15 * 60), "{total:?}");
        assert_eq!(b.total, 209);
    }

    /// The known gap of issue 14: a login with a valid account cleared the whole source, so an
    /// attacker holding one account could interleave it with guesses at another and never be
    /// slowed. Now a success clears only its account.
    #[test]
    fn a_valid_login_between_guesses_does_not_forgive_the_source() {
        let mut b = Brake::default();
        let now = Duration::from_secs(1);
        let mut delays = Vec::new();
        for i in 0..8 {
            delays.push(b.failed(now, ip(1), &format!("victim-{i}"), "c2s"));
            b.succeeded("attacker");
        }
        assert_eq!(delays[2], BRAKE_DELAY_MIN, "{delays:?}");
        assert_eq!(delays[7], BRAKE_DELAY_MAX, "{delays:?}");
        assert_eq!(b.failures(ip(1)), 8);
        b.failed(now, ip(1), "victim", "c2s");
        assert_eq!(b.account_failures("victim"), 1);
        // The victim's own login clears the victim's count, not the source's.
        b.succeeded("Victim");
        assert_eq!(b.account_failures("victim"), 0);
        assert_eq!(b.failures(ip(1)), 9);
        assert_eq!(b.failed(now, ip(1), "other", "c2s"), BRAKE_DELAY_MAX);
    }

    #[test]
    fn many_sources_guessing_one_account_are_braked() {
        let mut b = Brake::default();
        let now = Duration::from_secs(1);
        let delays: Vec<Duration> = (0..8)
            .map(|i| b.failed(now, ip(i), "victim", "cloud login"))
            .collect();
        assert_eq!(delays[2], BRAKE_DELAY_MIN, "{delays:?}");
        assert_eq!(delays[7], BRAKE_DELAY_MAX, "{delays:?}");
        assert_eq!(
            b.failed(now, ip(200), "bystander", "cloud login"),
            Duration::ZERO,
            "another account from a fresh source is not slowed"
        );
    }

    #[test]
    fn sources_are_bounded_and_forgotten() {
        let mut b = Brake::default();
        for i in 0..BRAKE_SOURCES_MAX + 10 {
            let source = IpAddr::from(u32::try_from(i).unwrap().to_be_bytes());
            b.failed(
                Duration::from_secs(1),
                source,
                &format!("u{i}"),
                "cloud login",
            );
        }
        assert_eq!(b.sources.len(), BRAKE_SOURCES_MAX);
        assert_eq!(b.accounts.len(), BRAKE_ACCOUNTS_MAX);
        let long = "é".repeat(BRAKE_ACCOUNT_BYTES_MAX);
        b.failed(
            Duration::from_secs(1) + BRAKE_FORGET,
            ip(9),
            &long,
            "cloud login",
        );
        assert_eq!(b.sources.len(), 1);
        assert_eq!(b.accounts.len(), 1);
        assert!(
            b.accounts
                .keys()
                .all(|k| k.len() <= BRAKE_ACCOUNT_BYTES_MAX)
        );
    }
}
