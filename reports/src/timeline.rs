//! Building a [`DeliveryTimeline`] from the fate of every message, so that the runner only
//! has to say, per message, when it was sent and what became of it.

use crate::record::{DeliveryBucket, DeliveryTimeline, Percentiles};

/// At most this many buckets: one chart column every 20 px at the report's width, and a
/// table an engineer can still scan.
pub const DELIVERY_BUCKETS_MAX: usize = 60;

/// Bucket widths to choose from, seconds: round numbers a reader can add up.
const NICE_BUCKETS_S: [f64; 14] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 21600.0,
];

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Delivered to at least one device of the recipient, this long after it was sent.
    Delivered {
        /// Send-to-first-delivery latency, simulated ms.
        latency_ms: u64,
    },
    /// Deliverable, never delivered: a loss the checks fail on.
    Lost,
    /// Undelivered, sent close enough to a fault that loss is allowed.
    AtRisk,
    /// Not expected to arrive (not bridged by design, discarded by the offline policy): counted
    /// as sent only.
    NotExpected,
}

impl DeliveryTimeline {
    /// Buckets messages by send time over `span_s` simulated seconds, with the smallest round
    /// bucket width that needs at most [`DELIVERY_BUCKETS_MAX`] buckets; each bucket gets its
    /// counts and the exact latency quantiles (nearest rank) of its delivered messages.
    /// Messages sent before 0 s or at or after `span_s` land in the first or last bucket.
    pub fn from_messages(span_s: f64, messages: impl IntoIterator<Item = (f64, Fate)>) -> Self {
        let span_s = if span_s.is_finite() && span_s > 0.0 {
            span_s
        } else {
            1.0
        };
        let bucket_s = NICE_BUCKETS_S
            .into_iter()
            .find(|b| span_s / b <= DELIVERY_BUCKETS_MAX as f64)
            .unwrap_or(span_s / DELIVERY_BUCKETS_MAX as f64);
        // At most DELIVERY_BUCKETS_MAX by the choice above (ceil of a ratio ≤ the maximum).
        let count = ((span_s / bucket_s).ceil() as usize).clamp(1, DELIVERY_BUCKETS_MAX);
        let mut buckets: Vec<(DeliveryBucket, Vec<u64>)> = (0..count)
            .map(|i| {
                let start_s = i as f64 * bucket_s;
                (
                    DeliveryBucket {
                        start_s,
                        ..DeliveryBucket::default()
                    },
                    Vec::new(),
                )
            })
            .collect();
        for (sent_s, fate) in messages {
            let i = ((sent_s / bucket_s).floor().max(0.0) as usize).min(count - 1);
            let (bucket, latencies) = &mut buckets[i];
            bucket.sent += 1;
            match fate {
                Fate::Delivered { latency_ms } => {
                    bucket.delivered += 1;
                    latencies.push(latency_ms);
                }
                Fate::Lost => bucket.lost += 1,
                Fate::AtRisk => bucket.at_risk += 1,
                Fate::NotExpected => {}
            }
        }
        let buckets = buckets
            .into_iter()
            .map(|(mut bucket, mut latencies)| {
                bucket.latency_ms = exact_percentiles(&mut latencies);
                bucket
            })
            .collect();
        DeliveryTimeline { bucket_s, buckets }
    }
}

/// Nearest-rank quantiles of `samples` (sorted in place); all zero when empty.
fn exact_percentiles(samples: &mut [u64]) -> Percentiles {
    samples.sort_unstable();
    let n = samples.len();
    if n == 0 {
        return Percentiles::default();
    }
    // Sample values are milliseconds: exact in f64 below 2^53.
    let at = |q: f64| samples[((q * n as f64).ceil() as usize).clamp(1, n) - 1] as f64;
    let sum: f64 = samples.iter().map(|&v| v as f64).sum();
    Percentiles {
        count: n as u64,
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        p999: at(0.999),
        max: at(1.0),
        mean: (sum / n as f64 * 10.0).round() / 10.0,
        clamped: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_land_in_round_buckets_with_their_fates_and_latencies() {
        let mut messages: Vec<(f64, Fate)> = (0..100)
            .map(|i| {
                (
                    f64::from(i) * 0.1,
                    Fate::Delivered {
                        latency_ms: (i + 1) as u64,
                    },
                )
            })
            .collect();
        messages.extend([
            (65.0, Fate::Lost),
            (70.0, Fate::AtRisk),
            (9_999.0, Fate::NotExpected),
        ]);
        let t = DeliveryTimeline::from_messages(600.0, messages);
        assert_eq!(t.bucket_s, 10.0, "600 s in at most 60 buckets");
        assert_eq!(t.buckets.len(), 60);
        let first = &t.buckets[0];
        assert_eq!((first.sent, first.delivered), (100, 100));
        let q = &first.latency_ms;
        assert_eq!(
            (q.count, q.p50, q.p90, q.p99, q.max, q.mean),
            (100, 50.0, 90.0, 99.0, 100.0, 50.5)
        );
        assert_eq!((t.buckets[6].lost, t.buckets[7].at_risk), (1, 1));
        let last = t.buckets.last().unwrap();
        assert_eq!(
            (last.start_s, last.sent, last.delivered),
            (590.0, 1, 0),
            "late send clamps"
        );
        assert_eq!(last.latency_ms, Percentiles::default());
    }

    #[test]
    fn days_long_runs_still_fit_the_bucket_limit() {
        let t = DeliveryTimeline::from_messages(4.0 * 86_400.0, []);
        assert!(t.buckets.len() <= DELIVERY_BUCKETS_MAX);
        assert_eq!(t.bucket_s, 21_600.0);
        let odd = DeliveryTimeline::from_messages(1.0e9, []);
        assert_eq!(odd.buckets.len(), DELIVERY_BUCKETS_MAX);
    }
}
