//! The report's content as format-neutral sections, so that Markdown and HTML show the same
//! facts in the same order and differ only in rendering (HTML adds the charts).

use crate::record::{Percentiles, RunRecord, Series};
use std::collections::BTreeMap;

/// Points kept per series in the tabular summary (first and last always included).
pub(crate) const SERIES_SUMMARY_POINTS_MAX: usize = 20;

/// A whole report: a title and its sections in display order.
pub(crate) struct Document<'a> {
    /// `<scenario>: PASS` or `<scenario>: FAIL`.
    pub title: String,
    /// The run's overall verdict, for styling.
    pub passed: bool,
    /// Sections in display order.
    pub sections: Vec<Section<'a>>,
}

/// A headed part of the report.
pub(crate) struct Section<'a> {
    /// Section heading.
    pub heading: &'static str,
    /// Content in display order.
    pub blocks: Vec<Block<'a>>,
}

/// One piece of content.
pub(crate) enum Block<'a> {
    /// A paragraph of plain text.
    Text(String),
    /// Preformatted text to copy verbatim (the reproduce command).
    Code(String),
    /// `label: value` pairs.
    Fields(Vec<(&'static str, String)>),
    /// A table with an optional caption shown as a sub-heading.
    Table(TableBlock),
    /// Bar chart of the latency quantiles (HTML only; the metrics table has the numbers).
    LatencyChart(&'a Percentiles),
    /// Line chart of one series group (HTML only; the point tables follow it).
    SeriesChart {
        /// Group name, the chart title.
        group: String,
        /// Series of the group, in record order.
        series: Vec<&'a Series>,
    },
}

/// A table's content as plain text cells (renderers escape).
pub(crate) struct TableBlock {
    /// Sub-heading, if any.
    pub caption: Option<String>,
    /// Column headers.
    pub columns: Vec<String>,
    /// Rows; renderers pad short rows.
    pub rows: Vec<Vec<String>>,
}

impl TableBlock {
    /// A table with the given headers.
    pub fn new(caption: Option<String>, columns: &[&str]) -> Self {
        let columns = columns.iter().map(|c| c.to_string()).collect();
        TableBlock {
            caption,
            columns,
            rows: Vec::new(),
        }
    }

    /// Width of the widest row or header, so renderers never drop a cell.
    pub fn width(&self) -> usize {
        self.rows
            .iter()
            .map(Vec::len)
            .chain([self.columns.len()])
            .max()
            .unwrap_or(0)
    }
}

/// Formats a number compactly: whole numbers without decimals, others with up to 3, `n/a` for
/// NaN and infinities (which a record may hold after a division by zero upstream).
pub(crate) fn fmt_num(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".into();
    }
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return format!("{value:.0}");
    }
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Builds the content of the report for `r`.
pub(crate) fn document(r: &RunRecord) -> Document<'_> {
    let mut sections = vec![
        run_section(r),
        reproduce_section(r),
        checks_section(r),
        metrics_section(r),
        faults_section(r),
    ];
    sections.extend(tables_section(r));
    sections.extend(series_section(r));
    sections.push(coverage_section(r));
    Document {
        title: format!("{}: {}", r.scenario, r.outcome.label()),
        passed: r.outcome.passed,
        sections,
    }
}

fn run_section(r: &RunRecord) -> Section<'_> {
    let fields = vec![
        ("Scenario", r.scenario.clone()),
        ("Scenario file", r.scenario_file.clone()),
        ("Seed", r.seed.to_string()),
        ("Trace digest", r.trace_digest.clone()),
        (
            "Git commit",
            r.git_commit.clone().unwrap_or_else(|| "unknown".into()),
        ),
        ("hmsim version", r.hmsim_version.clone()),
        ("Simulated duration (s)", fmt_num(r.duration_s)),
    ];
    let mut blocks = vec![Block::Fields(fields)];
    if let Some(failure) = &r.outcome.failure {
        blocks.push(Block::Text(format!("The run did not finish: {failure}")));
    }
    Section {
        heading: "Run",
        blocks,
    }
}

fn reproduce_section(r: &RunRecord) -> Section<'_> {
    Section {
        heading: "Reproduce",
        blocks: vec![Block::Code(r.reproduce.clone())],
    }
}

fn checks_section(r: &RunRecord) -> Section<'_> {
    let failed = r.failed_checks().count();
    let summary = format!(
        "{} of {} checks passed.",
        r.checks.len() - failed,
        r.checks.len()
    );
    let mut table = TableBlock::new(None, &["check", "status", "detail"]);
    for c in &r.checks {
        table.rows.push(vec![
            c.name.clone(),
            c.status.label().into(),
            c.detail.clone(),
        ]);
    }
    Section {
        heading: "Checks",
        blocks: vec![Block::Text(summary), Block::Table(table)],
    }
}

fn metrics_section(r: &RunRecord) -> Section<'_> {
    let m = &r.metrics;
    let counters = [
        ("messages sent", m.sent),
        ("messages delivered", m.delivered),
        ("messages lost", m.lost),
        ("messages duplicated", m.duplicated),
        ("latency samples", m.latency_ms.count),
    ];
    let quantiles = m.latency_ms.quantiles().map(|(name, v)| (name, fmt_num(v)));
    let mut table = TableBlock::new(None, &["metric", "value"]);
    table
        .rows
        .extend(counters.map(|(k, v)| vec![k.to_string(), v.to_string()]));
    table
        .rows
        .extend(quantiles.map(|(k, v)| vec![format!("latency {k} (ms)"), v]));
    table.rows.extend(performance_rows(r));
    table
        .rows
        .extend(m.extra.iter().map(|(k, v)| vec![k.clone(), fmt_num(*v)]));
    let mut blocks = vec![Block::Table(table)];
    if m.latency_ms.count > 0 {
        blocks.push(Block::LatencyChart(&m.latency_ms));
    }
    Section {
        heading: "Metrics",
        blocks,
    }
}

fn performance_rows(r: &RunRecord) -> Vec<Vec<String>> {
    let m = &r.metrics;
    let rss_mib = m
        .peak_rss_mib()
        .map_or_else(|| "unknown".into(), |v| format!("{v:.1}"));
    [
        ("latency mean (ms)", fmt_num(m.latency_ms.mean)),
        ("wall time (s)", format!("{:.3}", m.wall_time_s)),
        (
            "simulated s per wall s",
            format!("{:.1}", m.sim_seconds_per_wall_second),
        ),
        ("peak RSS (MiB)", rss_mib),
        ("steps", m.steps.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| vec![k.to_string(), v])
    .collect()
}

fn faults_section(r: &RunRecord) -> Section<'_> {
    if r.faults.is_empty() {
        let blocks = vec![Block::Text("No faults were injected.".into())];
        return Section {
            heading: "Faults",
            blocks,
        };
    }
    let mut table = TableBlock::new(None, &["at (s)", "kind", "detail"]);
    for f in &r.faults {
        let at_s = format!("{}.{:03}", f.at_ms / 1000, f.at_ms % 1000);
        table
            .rows
            .push(vec![at_s, f.kind.clone(), f.detail.clone()]);
    }
    Section {
        heading: "Faults",
        blocks: vec![Block::Table(table)],
    }
}

fn tables_section(r: &RunRecord) -> Option<Section<'_>> {
    if r.tables.is_empty() {
        return None;
    }
    let blocks = r.tables.iter().map(|t| {
        let columns = t.columns.clone();
        Block::Table(TableBlock {
            caption: Some(t.title.clone()),
            columns,
            rows: t.rows.clone(),
        })
    });
    Some(Section {
        heading: "Tables",
        blocks: blocks.collect(),
    })
}

fn series_section(r: &RunRecord) -> Option<Section<'_>> {
    if r.series.is_empty() {
        return None;
    }
    let mut blocks = Vec::new();
    for (group, series) in series_groups(&r.series) {
        blocks.push(Block::SeriesChart {
            group: group.to_string(),
            series: series.clone(),
        });
        blocks.extend(series.into_iter().map(|s| Block::Table(series_table(s))));
    }
    Some(Section {
        heading: "Time series",
        blocks,
    })
}

/// Series grouped by [`Series::group`], groups in order of first appearance.
pub(crate) fn series_groups(all: &[Series]) -> Vec<(&str, Vec<&Series>)> {
    let mut groups: Vec<(&str, Vec<&Series>)> = Vec::new();
    for s in all {
        match groups.iter_mut().find(|(g, _)| *g == s.group()) {
            Some((_, members)) => members.push(s),
            None => groups.push((s.group(), vec![s])),
        }
    }
    groups
}

fn series_table(s: &Series) -> TableBlock {
    let caption = format!("{} ({}, {} samples)", s.name, s.unit, s.points.len());
    let value_header = format!("value ({})", s.unit);
    let mut table = TableBlock::new(Some(caption), &["t (s)", &value_header]);
    let points = s.downsampled(SERIES_SUMMARY_POINTS_MAX);
    table.rows.extend(
        points
            .into_iter()
            .map(|(t, v)| vec![fmt_num(t), fmt_num(v)]),
    );
    table
}

fn coverage_section(r: &RunRecord) -> Section<'_> {
    Section {
        heading: "Coverage",
        blocks: coverage_blocks(&r.coverage),
    }
}

fn coverage_blocks(coverage: &BTreeMap<String, u64>) -> Vec<Block<'static>> {
    if coverage.is_empty() {
        return vec![Block::Text(
            "No \"sometimes\" assertions were recorded.".into(),
        )];
    }
    let reached = coverage.values().filter(|&&hits| hits > 0).count();
    let summary = format!(
        "{reached} of {} \"sometimes\" assertions were reached at least once.",
        coverage.len()
    );
    let mut table = TableBlock::new(None, &["assertion", "hits"]);
    for (name, hits) in coverage {
        let cell = if *hits == 0 {
            "never reached".into()
        } else {
            hits.to_string()
        };
        table.rows.push(vec![name.clone(), cell]);
    }
    vec![Block::Text(summary), Block::Table(table)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_compact_and_never_nan() {
        assert_eq!(fmt_num(120.0), "120");
        assert_eq!(fmt_num(27.5), "27.5");
        assert_eq!(fmt_num(0.12345), "0.123");
        assert_eq!(fmt_num(f64::NAN), "n/a");
        assert_eq!(fmt_num(f64::INFINITY), "n/a");
    }

    #[test]
    fn series_are_grouped_by_prefix_in_first_appearance_order() {
        let r = RunRecord::example();
        let groups = series_groups(&r.series);
        let names: Vec<(&str, usize)> = groups.iter().map(|(g, s)| (*g, s.len())).collect();
        assert_eq!(names, [("sessions", 2), ("queue_depth", 1)]);
    }

    #[test]
    fn downsampling_keeps_first_and_last_and_at_most_the_limit() {
        let r = RunRecord::example();
        let s = &r.series[0];
        assert_eq!(s.points.len(), 121);
        let kept = s.downsampled(SERIES_SUMMARY_POINTS_MAX);
        assert_eq!(kept.len(), SERIES_SUMMARY_POINTS_MAX);
        assert_eq!(kept.first(), s.points.first());
        assert_eq!(kept.last(), s.points.last());
        assert!(
            kept.windows(2).all(|w| w[0].0 < w[1].0),
            "strictly increasing time"
        );
        let short = Series {
            points: s.points[..5].to_vec(),
            ..s.clone()
        };
        assert_eq!(short.downsampled(SERIES_SUMMARY_POINTS_MAX), short.points);
    }
}
