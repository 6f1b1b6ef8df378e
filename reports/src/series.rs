//! What a series means for a plot: its kind (step or line), how it was sampled, its unit and
//! value names, declared in the record or inferred from the series name for records written
//! before those fields existed; and [`segments`], the exact polylines a chart draws.
//!
//! The inference knows the series names hmsim writes (`sessions/<node>`, `prg_state/<node>`,
//! `status/<host>/<field>`, ...). Everything unknown is a step series of its group's unit,
//! sampled periodically: counts and states are the common case, and a step never invents
//! values between two samples the way a slanted line does.

use crate::record::{Sampling, Series, SeriesKind, ValueLabel};

/// An interval between two points longer than this many sampling periods is missing data
/// (the source was down or absent) and is drawn as a gap. 1.5 tolerates jitter in the sampling
/// instants yet breaks the line when even one sample is missing.
pub(crate) const GAP_PERIODS: f64 = 1.5;

/// Line charts keep the extremes of this many time buckets per segment: enough for a smooth
/// line at the chart's width, while a run with 100,000 samples still gives a small file.
pub(crate) const PLOT_BUCKETS_MAX: usize = 500;

/// `prg_state/<host>` codes as hmsim writes them (`fakes::imp::PrgState::code`).
const PRG_STATES: [&str; 11] = [
    "Unknown",
    "Normal",
    "Failing Over",
    "Taking Over",
    "Idle",
    "Running in Backup Mode",
    "Failed Over",
    "Failed Over, Critical Services Down",
    "Falling Back",
    "Taking Back",
    "Running in Failed Mode",
];

impl Series {
    /// The host a series belongs to, which gets its own panel: the part after the group when
    /// more parts follow (`exp-a-1` for `connector_sessions/exp-a-1/imp-a-1` and for
    /// `status/exp-a-1/imp-a-1/users`), else empty (`sessions/imp-a-1`).
    pub fn node(&self) -> &str {
        let mut parts = self.name.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(_), Some(node), Some(_)) => node,
            _ => "",
        }
    }

    /// The name after its group and node (`imp-a-1/users` for
    /// `status/exp-a-1/imp-a-1/users`, `imp-a-1` for `sessions/imp-a-1`), the legend entry.
    pub fn member(&self) -> &str {
        let mut parts = self.name.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(_), Some(_), Some(member)) => member,
            (Some(_), Some(member), None) => member,
            _ => &self.name,
        }
    }

    /// The one value of a series that never changes and has no gap, `None` otherwise: such a
    /// series is listed, not drawn (a flat line per configuration value buries the others).
    pub(crate) fn constant_value(&self) -> Option<f64> {
        let segments = segments(self);
        let [segment] = &segments[..] else {
            return None;
        };
        let first = segment.first()?.1;
        segment.iter().all(|p| p.1 == first).then_some(first)
    }

    /// The declared kind, else a line for rates and latencies and a step for everything else.
    pub fn kind_or_inferred(&self) -> SeriesKind {
        if let Some(kind) = self.kind {
            return kind;
        }
        let name = self.name.as_str();
        let continuous = ["latency", "_ms", "rate", "per_s", "speed"];
        if continuous.iter().any(|w| name.contains(w)) {
            SeriesKind::Line
        } else {
            SeriesKind::Step
        }
    }

    /// The declared sampling, else on-change for the cumulative move counts and periodic at
    /// the median interval between points for everything else.
    pub fn sampling_or_inferred(&self) -> Sampling {
        if let Some(sampling) = self.sampling {
            return sampling;
        }
        if self.group() == "connector_moves" {
            return Sampling::OnChange;
        }
        match median_interval_s(&self.points) {
            Some(interval_s) => Sampling::Periodic { interval_s },
            None => Sampling::OnChange,
        }
    }

    /// The declared unit unless it only repeats the group name (older records), else the
    /// unit of the series hmsim writes under that name.
    pub fn unit_or_inferred(&self) -> String {
        if !self.unit.is_empty() && self.unit != self.group() {
            return self.unit.clone();
        }
        let field = self.name.rsplit('/').next().unwrap_or("");
        let unit = match (self.group(), field) {
            ("sessions" | "connector_sessions" | "connector_open_sessions", _) => "sessions",
            ("connector_moves", _) => "sessions moved",
            ("cloud_assigned" | "connector_assigned" | "cloud_users", _) => "users",
            ("cloud_eligible", _) => "eligible",
            ("clients", _) => "devices",
            ("messages", _) => "messages",
            ("prg_state", _) => "PRG state",
            ("status", m) if m.ends_with("_pct") => "%",
            ("status", "connectivity" | "status") => "state",
            ("status", "certificate_validation") => "on/off",
            ("status", "version") => "version",
            ("status", _) => "users",
            (group, _) => group,
        };
        unit.to_string()
    }

    /// The declared value names, else the names of the enumerations hmsim records as numbers.
    pub fn value_labels_or_inferred(&self) -> Vec<ValueLabel> {
        if !self.value_labels.is_empty() {
            return self.value_labels.clone();
        }
        let field = self.name.rsplit('/').next().unwrap_or("");
        let names: &[&str] = match (self.group(), field) {
            ("prg_state", _) => &PRG_STATES,
            ("status", "connectivity" | "status") => &["down", "Operational"],
            ("status", "certificate_validation") => &["off", "on"],
            ("cloud_eligible", _) => &["no", "yes"],
            _ => &[],
        };
        let label = |(i, name): (usize, &&str)| ValueLabel {
            // Codes are small indices: exact in f64.
            value: i as f64,
            label: name.to_string(),
        };
        names.iter().enumerate().map(label).collect()
    }
}

/// The median of the positive intervals between consecutive finite points.
fn median_interval_s(points: &[(f64, f64)]) -> Option<f64> {
    let mut intervals: Vec<f64> = points
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .filter(|d| d.is_finite() && *d > 0.0)
        .collect();
    intervals.sort_by(f64::total_cmp);
    intervals.get(intervals.len() / 2).copied()
}

/// The polylines a chart draws for `s`: one per stretch of data without a gap (a non-finite
/// point, or an interval longer than [`GAP_PERIODS`] sampling periods), decimated to at most
/// [`PLOT_BUCKETS_MAX`] buckets, and for a step series drawn as a staircase: the value holds
/// until the next point, where it changes vertically.
pub(crate) fn segments(s: &Series) -> Vec<Vec<(f64, f64)>> {
    let step = s.kind_or_inferred() == SeriesKind::Step;
    runs(s)
        .into_iter()
        .map(|run| {
            let kept = decimate(&run);
            if step { staircase(&kept) } else { kept }
        })
        .collect()
}

/// The finite points of `s`, split where data is missing: at a non-finite point, and at an
/// interval longer than [`GAP_PERIODS`] sampling periods. Never an empty run.
pub(crate) fn runs(s: &Series) -> Vec<Vec<(f64, f64)>> {
    let gap_after_s = match s.sampling_or_inferred() {
        Sampling::Periodic { interval_s } => interval_s * GAP_PERIODS,
        Sampling::OnChange => f64::INFINITY,
    };
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for &(t, v) in &s.points {
        let Some(run) = runs.last_mut() else { break };
        if !(t.is_finite() && v.is_finite()) {
            runs.push(Vec::new());
            continue;
        }
        if run.last().is_some_and(|&(prev, _)| t - prev > gap_after_s) {
            runs.push(vec![(t, v)]);
        } else {
            run.push((t, v));
        }
    }
    runs.retain(|run| !run.is_empty());
    runs
}

/// `(t0, v0), (t1, v1)` becomes `(t0, v0), (t1, v0), (t1, v1)`. Points that repeat the
/// previous value add nothing to a staircase and are left out, except the last.
fn staircase(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(points.len());
    for (i, &(t, v)) in points.iter().enumerate() {
        let last = i + 1 == points.len();
        match out.last() {
            Some(&(_, prev)) if prev == v && !last => {}
            Some(&(_, prev)) if prev != v => out.extend([(t, prev), (t, v)]),
            _ => out.push((t, v)),
        }
    }
    out
}

/// The first, the last and the minimum and maximum of each of at most [`PLOT_BUCKETS_MAX`]
/// buckets, in time order, so that short spikes stay visible.
pub(crate) fn decimate(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= 2 * PLOT_BUCKETS_MAX {
        return points.to_vec();
    }
    let bucket_len = points.len().div_ceil(PLOT_BUCKETS_MAX);
    let mut kept = vec![points[0]];
    for bucket in points.chunks(bucket_len) {
        let by_value = |a: &&(f64, f64), b: &&(f64, f64)| a.1.total_cmp(&b.1);
        let (Some(lo), Some(hi)) = (
            bucket.iter().min_by(by_value),
            bucket.iter().max_by(by_value),
        ) else {
            continue;
        };
        let (first, second) = if lo.0 <= hi.0 { (lo, hi) } else { (hi, lo) };
        kept.extend([*first, *second]);
    }
    kept.extend(points.last());
    kept.dedup();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, points: &[(f64, f64)]) -> Series {
        Series {
            name: name.into(),
            unit: name.split('/').next().unwrap().into(),
            points: points.to_vec(),
            ..Series::default()
        }
    }

    /// The case of the issue: 50 sessions at 300 s, 0 from 310 s, sampled every 10 s. A line
    /// from (300, 50) to (960, 0) would show a slow drain that never happened.
    #[test]
    fn a_count_is_a_staircase_that_drops_at_its_sample() {
        let mut points = vec![(290.0, 50.0), (300.0, 50.0)];
        points.extend((31..=96).map(|i| (f64::from(i) * 10.0, 0.0)));
        let s = series("connector_sessions/exp-e-1/imp-a-1", &points);
        assert_eq!(s.kind_or_inferred(), SeriesKind::Step);
        let segs = segments(&s);
        assert_eq!(segs.len(), 1);
        let line = &segs[0];
        assert_eq!(&line[..3], &[(290.0, 50.0), (310.0, 50.0), (310.0, 0.0)]);
        assert_eq!(line.last(), Some(&(960.0, 0.0)), "held to the last sample");
        // From 310 s on the value is 0: no point between 300 and 960 s above 0 after 310 s.
        assert!(
            line.iter().all(|&(t, v)| t <= 310.0 || v == 0.0),
            "{line:?}"
        );
    }

    #[test]
    fn missing_samples_are_a_gap_not_a_line() {
        // Sampled every 8.5 s; nothing between 476 s and 1368.5 s (the node was down).
        let mut points: Vec<(f64, f64)> = (0..=56).map(|i| (f64::from(i) * 8.5, 200.0)).collect();
        points.extend((161..=200).map(|i| (f64::from(i) * 8.5, 6.0)));
        let segs = segments(&series("connector_sessions/exp-a-1/imp-a-1", &points));
        assert_eq!(segs.len(), 2, "{segs:?}");
        assert_eq!(segs[0].last(), Some(&(476.0, 200.0)));
        assert_eq!(segs[1].first(), Some(&(1368.5, 6.0)));
    }

    #[test]
    fn one_missing_sample_is_a_gap_and_a_nan_too() {
        let points = [
            (0.0, 1.0),
            (10.0, 1.0),
            (20.0, 1.0),
            (40.0, 2.0),
            (50.0, f64::NAN),
            (60.0, 2.0),
        ];
        let segs = segments(&series("sessions/imp-a-1", &points));
        assert_eq!(
            segs,
            vec![
                vec![(0.0, 1.0), (20.0, 1.0)],
                vec![(40.0, 2.0)],
                vec![(60.0, 2.0)]
            ]
        );
    }

    #[test]
    fn on_change_series_hold_their_value_without_gaps() {
        let s = series(
            "connector_moves/exp-a-1/imp-a-1/imp-a-2",
            &[(10.0, 1.0), (11.0, 2.0), (500.0, 3.0)],
        );
        assert_eq!(s.sampling_or_inferred(), Sampling::OnChange);
        assert_eq!(
            segments(&s),
            vec![vec![
                (10.0, 1.0),
                (11.0, 1.0),
                (11.0, 2.0),
                (500.0, 2.0),
                (500.0, 3.0)
            ]]
        );
    }

    #[test]
    fn declared_fields_win_over_inference() {
        let mut s = series("sessions/imp-a-1", &[(0.0, 1.0), (10.0, 2.0), (100.0, 3.0)]);
        s.kind = Some(SeriesKind::Line);
        s.sampling = Some(Sampling::Periodic { interval_s: 100.0 });
        s.unit = "sessions open".into();
        assert_eq!(
            segments(&s),
            vec![vec![(0.0, 1.0), (10.0, 2.0), (100.0, 3.0)]]
        );
        assert_eq!(s.unit_or_inferred(), "sessions open");
    }

    #[test]
    fn names_give_units_kinds_and_state_names() {
        let cases = [
            ("status/exp-a-1/active_pct", "%"),
            ("status/exp-a-1/imp-a-1/users", "users"),
            ("clients/devices_up", "devices"),
            ("prg_state/imp-a-1", "PRG state"),
            ("queue_depth/connector-1", "queue_depth"),
        ];
        for (name, unit) in cases {
            assert_eq!(series(name, &[]).unit_or_inferred(), unit, "{name}");
        }
        let prg = series("prg_state/imp-a-1", &[]).value_labels_or_inferred();
        assert_eq!(
            (prg[5].value, prg[5].label.as_str()),
            (5.0, "Running in Backup Mode")
        );
        assert_eq!(
            series("latency_ms/p99", &[]).kind_or_inferred(),
            SeriesKind::Line
        );
        let s = series("status/exp-a-1/imp-a-1/users", &[]);
        assert_eq!(
            (s.group(), s.node(), s.member()),
            ("status", "exp-a-1", "imp-a-1/users")
        );
        let s = series("sessions/imp-a-1", &[]);
        assert_eq!(
            (s.group(), s.node(), s.member()),
            ("sessions", "", "imp-a-1")
        );
        let s = series("messages", &[]);
        assert_eq!(
            (s.group(), s.node(), s.member()),
            ("messages", "", "messages")
        );
    }

    #[test]
    fn decimation_keeps_ends_and_spikes() {
        let mut points: Vec<(f64, f64)> = (0..100_000).map(|i| (f64::from(i), 1.0)).collect();
        points[54_321].1 = 999.0;
        let kept = decimate(&points);
        assert!(kept.len() <= 2 * PLOT_BUCKETS_MAX + 2, "{}", kept.len());
        assert_eq!(kept.first(), points.first());
        assert_eq!(kept.last(), points.last());
        assert!(kept.contains(&(54_321.0, 999.0)), "the spike survives");
        assert!(kept.windows(2).all(|w| w[0].0 <= w[1].0), "time order");
    }
}
