//! Fault windows for the plots: each fault paired with its `<kind>/end`, so that every
//! time-series chart can shade the time the fault was active and label it.

use crate::record::FaultRecord;

/// Fault details longer than this are left out of plot labels (the faults table has them).
const LABEL_DETAIL_CHARS_MAX: usize = 24;

/// A fault as drawn on a chart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FaultWindow {
    /// Start, simulated seconds.
    pub start_s: f64,
    /// End, simulated seconds; `None` for an instantaneous fault (a fallback, a crash that
    /// was never ended), drawn as a vertical line.
    pub end_s: Option<f64>,
    /// `crash imp-a-1`: the kind, and the detail when it is short and readable.
    pub label: String,
}

/// Pairs every fault with the first later `<kind>/end` not yet paired, in time order. An
/// `/end` without a start is ignored (nothing to shade).
pub(crate) fn fault_windows(faults: &[FaultRecord]) -> Vec<FaultWindow> {
    let mut sorted: Vec<&FaultRecord> = faults.iter().collect();
    sorted.sort_by_key(|f| f.at_ms);
    let mut windows: Vec<(FaultWindow, &str)> = Vec::new();
    for f in sorted {
        // Milliseconds fit f64 exactly far beyond any simulated duration.
        let at_s = f.at_ms as f64 / 1000.0;
        if let Some(kind) = f.kind.strip_suffix("/end") {
            let open = windows
                .iter_mut()
                .find(|(w, k)| *k == kind && w.end_s.is_none());
            if let Some((w, _)) = open {
                w.end_s = Some(at_s);
            }
            continue;
        }
        let window = FaultWindow {
            start_s: at_s,
            end_s: None,
            label: label(f),
        };
        windows.push((window, f.kind.as_str()));
    }
    windows.into_iter().map(|(w, _)| w).collect()
}

fn label(f: &FaultRecord) -> String {
    let readable = |d: &str| {
        !d.is_empty()
            && d.chars().count() <= LABEL_DETAIL_CHARS_MAX
            && !d.contains(['(', ')', '"', '{'])
    };
    if readable(&f.detail) {
        format!("{} {}", f.kind, f.detail)
    } else {
        f.kind.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RunRecord;

    fn fault(at_ms: u64, kind: &str, detail: &str) -> FaultRecord {
        FaultRecord {
            at_ms,
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn faults_pair_with_their_end_and_instants_stay_open() {
        let w = fault_windows(&RunRecord::example().faults);
        let got: Vec<(f64, Option<f64>, &str)> = w
            .iter()
            .map(|w| (w.start_s, w.end_s, w.label.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (120.0, Some(150.0), "partition imp-a-1 | connector-1"),
                (180.0, None, "crash imp-a-1"),
                (300.0, None, "restart imp-a-1"),
            ]
        );
    }

    #[test]
    fn unreadable_details_are_left_out_and_repeated_kinds_pair_in_order() {
        let faults = [
            fault(600_000, "kms_outage", "KmsOutage(true)"),
            fault(660_000, "kms_outage/end", "KmsOutage(false)"),
            fault(700_000, "kms_outage", "KmsOutage(true)"),
            fault(720_000, "kms_outage/end", "KmsOutage(false)"),
            fault(800_000, "stray/end", ""),
        ];
        let w = fault_windows(&faults);
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].start_s, w[0].end_s), (600.0, Some(660.0)));
        assert_eq!((w[1].start_s, w[1].end_s), (700.0, Some(720.0)));
        assert_eq!(w[0].label, "kms_outage");
    }
}
