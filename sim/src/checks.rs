//! The oracle: each scenario check evaluated over the run's history.
//!
//! Safety checks look at every message: a message that the rules say must arrive and did not
//! is a loss, a second copy on one device is a duplicate. A message sent while a fault could
//! legitimately swallow it (XMPP without stream management loses what is in flight on a dead
//! TCP stream) is *at risk*: its loss is reported, not failed. The window is the fault plus
//! [`RISK_MARGIN`], the time a client needs to notice a dead stream and log in again.

use crate::observer::MessageRecord;
use crate::runner::RunOutput;
use crate::scenario::{Check, Scenario, validate::check_name};
use reports::{CheckResult, Status};
use std::time::Duration;

/// After a fault ends, messages stay at risk until clients have noticed dead streams
/// (keepalive silence, 90 s) and logged in again (backoff up to 30 s, login).
pub const RISK_MARGIN: Duration = Duration::from_secs(150);
/// Violations quoted in a check's detail.
const EXAMPLES_MAX: usize = 5;

/// Delivery expectation for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Must reach at least one device of the recipient, and each device at most once.
    Must,
    /// May be lost (sent inside a fault's risk window).
    AtRisk,
}

/// Whether `m` must be delivered, given the scenario's faults.
pub fn expectation(s: &Scenario, m: &MessageRecord) -> Expect {
    let at_risk = s.faults.iter().any(|f| {
        let (start, end) = crate::faults::window(f);
        m.sent_at + Duration::from_secs(1) >= start && m.sent_at <= end + RISK_MARGIN
    });
    if at_risk {
        Expect::AtRisk
    } else {
        Expect::Must
    }
}

/// Delivery accounting over the whole history.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Messages sent.
    pub sent: u64,
    /// Messages delivered to at least one recipient device.
    pub delivered: u64,
    /// Must-deliver messages never delivered.
    pub lost: Vec<String>,
    /// At-risk messages never delivered (reported, allowed).
    pub lost_at_risk: u64,
    /// (message, device) pairs delivered more than once.
    pub duplicated: Vec<String>,
    /// Send-to-first-delivery latencies, ms.
    pub latencies_ms: Vec<u64>,
    /// Conversations whose messages arrived out of send order (excluding offline replay).
    pub reordered: Vec<String>,
}

/// Counts deliveries, losses, duplicates and reorderings.
pub fn tally(s: &Scenario, out: &RunOutput) -> Tally {
    let mut t = Tally::default();
    // Last (send time) delivered per (conversation, device), to detect reordering.
    let mut last_seen: std::collections::BTreeMap<(String, String, String), Duration> =
        Default::default();
    out.observer.with_messages(|msgs| {
        for (id, m) in msgs {
            t.sent += 1;
            if m.deliveries.is_empty() {
                match expectation(s, m) {
                    Expect::Must => t.lost.push(format!("{id} ({}→{})", m.from, m.to)),
                    Expect::AtRisk => t.lost_at_risk += 1,
                }
                continue;
            }
            t.delivered += 1;
            let first = m.deliveries.iter().map(|d| d.1).min().unwrap_or(m.sent_at);
            t.latencies_ms.push((first - m.sent_at).as_millis() as u64);
            let mut devices: Vec<&str> = m.deliveries.iter().map(|d| d.0.as_str()).collect();
            devices.sort_unstable();
            if devices.windows(2).any(|w| w[0] == w[1]) {
                t.duplicated.push(id.to_string());
            }
            for (device, _, delayed) in &m.deliveries {
                let key = (m.from.clone(), m.to.clone(), device.clone());
                let prev = last_seen.insert(key, m.sent_at);
                if !delayed && prev.is_some_and(|p| p > m.sent_at) {
                    t.reordered.push(id.to_string());
                }
            }
        }
    });
    t
}

/// Evaluates every check of the scenario.
pub fn evaluate(
    s: &Scenario,
    out: &RunOutput,
    t: &Tally,
    p99_ms: f64,
    max_ms: f64,
) -> Vec<CheckResult> {
    s.checks
        .iter()
        .map(|c| {
            let (status, detail) = match c {
                Check::NoMessageLoss => no_message_loss(t, out),
                Check::PerConversationOrder => order(t),
                Check::DeliveryLatency(b) => latency(b, p99_ms, max_ms),
                Check::Liveness(b) => liveness(s, out, b.within.0),
                other => (
                    Status::Fail,
                    format!("`{}` is not executable in this build", check_name(other)),
                ),
            };
            CheckResult {
                name: check_name(c).to_string(),
                status,
                detail,
            }
        })
        .collect()
}

fn examples(v: &[String]) -> String {
    v.iter()
        .take(EXAMPLES_MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ")
}

fn no_message_loss(t: &Tally, out: &RunOutput) -> (Status, String) {
    let phantom = out.observer.phantom();
    if t.sent == 0 {
        return (
            Status::Fail,
            "no message was sent: the check exercised nothing".into(),
        );
    }
    if t.lost.is_empty() && t.duplicated.is_empty() && phantom.is_empty() {
        return (
            Status::Pass,
            format!(
                "{} sent, {} delivered, 0 lost, 0 duplicated ({} at risk during faults not delivered)",
                t.sent, t.delivered, t.lost_at_risk
            ),
        );
    }
    let mut parts = Vec::new();
    if !t.lost.is_empty() {
        parts.push(format!(
            "{} lost (e.g. {})",
            t.lost.len(),
            examples(&t.lost)
        ));
    }
    if !t.duplicated.is_empty() {
        parts.push(format!(
            "{} duplicated (e.g. {})",
            t.duplicated.len(),
            examples(&t.duplicated)
        ));
    }
    if !phantom.is_empty() {
        parts.push(format!(
            "{} delivered but never sent (e.g. {})",
            phantom.len(),
            examples(&phantom)
        ));
    }
    (
        Status::Fail,
        format!("{} of {} sent: {}", parts.len(), t.sent, parts.join("; ")),
    )
}

fn order(t: &Tally) -> (Status, String) {
    if t.reordered.is_empty() {
        (
            Status::Pass,
            format!(
                "{} messages, all in send order per conversation and device",
                t.delivered
            ),
        )
    } else {
        (
            Status::Fail,
            format!(
                "{} out of order (e.g. {})",
                t.reordered.len(),
                examples(&t.reordered)
            ),
        )
    }
}

fn latency(b: &crate::scenario::LatencyBound, p99_ms: f64, max_ms: f64) -> (Status, String) {
    let mut bad = Vec::new();
    if let Some(lim) = b.p99_max
        && p99_ms > lim.ms() as f64
    {
        bad.push(format!("p99 {p99_ms} ms > {} ms", lim.ms()));
    }
    if let Some(lim) = b.max
        && max_ms > lim.ms() as f64
    {
        bad.push(format!("max {max_ms} ms > {} ms", lim.ms()));
    }
    if bad.is_empty() {
        (Status::Pass, format!("p99 {p99_ms} ms, max {max_ms} ms"))
    } else {
        (Status::Fail, bad.join("; "))
    }
}

/// Every device that was ever up is up at the end, and came back within `within` of the last
/// fault ending.
fn liveness(s: &Scenario, out: &RunOutput, within: Duration) -> (Status, String) {
    let last_fault_end = s
        .faults
        .iter()
        .map(|f| crate::faults::window(f).1)
        .max()
        .unwrap_or_default();
    let bound = last_fault_end + within;
    let down = out.observer.devices_down();
    if !down.is_empty() {
        let names: Vec<String> = down.iter().map(|(u, d)| format!("{u}/{d}")).collect();
        return (
            Status::Fail,
            format!(
                "{} devices not logged in at the end (e.g. {})",
                down.len(),
                examples(&names)
            ),
        );
    }
    let late: Vec<String> = out
        .observer
        .sessions()
        .iter()
        .filter(|e| e.up && e.at > bound)
        .map(|e| format!("{}/{} at {:.0}s", e.user, e.device, e.at.as_secs_f64()))
        .collect();
    if late.is_empty() {
        (
            Status::Pass,
            format!(
                "all {} devices logged in; recovered within {} of the last fault",
                out.observer.devices_up(),
                crate::scenario::units::format_duration(within)
            ),
        )
    } else {
        (
            Status::Fail,
            format!(
                "{} logins after the bound {:.0}s (e.g. {})",
                late.len(),
                bound.as_secs_f64(),
                examples(&late)
            ),
        )
    }
}
