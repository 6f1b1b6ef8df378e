//! The report's content as format-neutral sections, so that Markdown and HTML show the same
//! facts in the same order and differ only in rendering (HTML adds the charts).
//!
//! Order, for an on-call reader: on a failure, why it failed (one line per failed check);
//! then the run and how to reproduce it, the checks, delivery and latency, the faults, the
//! time-series charts (shaded with the faults), the record's tables, and last the full metrics
//! dump (grouped per host; collapsed in HTML) and the coverage.

use crate::faults::fault_windows;
use crate::plot::{Chart, Frame, Panel};
use crate::record::{DeliveryBucket, DeliveryTimeline, RunRecord, Sampling, Series, SeriesKind};
use crate::series::runs;
use std::collections::{BTreeMap, BTreeSet};

/// Points kept per series in the tabular summary (first and last always included).
pub(crate) const SERIES_SUMMARY_POINTS_MAX: usize = 20;
/// A whole report: a title and its sections in display order.
pub(crate) struct Document {
    /// `<scenario>: PASS` or `<scenario>: FAIL`.
    pub title: String,
    /// The run's overall verdict, for styling.
    pub passed: bool,
    /// What every time-series chart shares: the run's x range and its faults.
    pub frame: Frame,
    /// Sections in display order.
    pub sections: Vec<Section>,
}

/// A headed part of the report.
pub(crate) struct Section {
    /// Section heading.
    pub heading: &'static str,
    /// Content in display order.
    pub blocks: Vec<Block>,
}

/// One piece of content.
pub(crate) enum Block {
    /// A paragraph of plain text.
    Text(String),
    /// Preformatted text to copy verbatim (the reproduce command).
    Code(String),
    /// `label: value` pairs.
    Fields(Vec<(&'static str, String)>),
    /// A table with an optional caption shown as a sub-heading.
    Table(TableBlock),
    /// Why the run failed, one line each (a list that stands out).
    Failures(Vec<String>),
    /// A sub-heading.
    Heading(String),
    /// Charts laid out together: wide ones span the page, small multiples two to a row
    /// (HTML only; the tables next to them have the numbers).
    Charts(Vec<Chart>),
    /// Content folded away under a summary line in HTML (shown in full in Markdown).
    Collapsed {
        /// The summary line.
        summary: String,
        /// What unfolds.
        blocks: Vec<Block>,
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
    /// Folded away under its caption in HTML whatever its length (the point lists next to a
    /// chart); other captioned tables fold only when long.
    pub folded: bool,
}

impl TableBlock {
    /// A table with the given headers.
    pub fn new(caption: Option<String>, columns: &[&str]) -> Self {
        let columns = columns.iter().map(|c| c.to_string()).collect();
        TableBlock {
            caption,
            columns,
            rows: Vec::new(),
            folded: false,
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
pub(crate) fn document(r: &RunRecord) -> Document {
    let mut sections = Vec::new();
    let failures = r.failure_lines();
    if !failures.is_empty() {
        sections.push(Section {
            heading: "Why it failed",
            blocks: vec![Block::Failures(failures)],
        });
    }
    sections.extend([run_section(r), reproduce_section(r), checks_section(r)]);
    sections.push(delivery_section(r));
    sections.push(faults_section(r));
    sections.extend(series_section(r));
    sections.extend(tables_section(r));
    sections.push(metrics_section(r));
    sections.push(coverage_section(r));
    Document {
        title: format!("{}: {}", r.scenario, r.outcome.label()),
        passed: r.outcome.passed,
        frame: Frame {
            x_range: 0.0..r.time_span_s(),
            faults: fault_windows(&r.faults),
        },
        sections,
    }
}

fn run_section(r: &RunRecord) -> Section {
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

fn reproduce_section(r: &RunRecord) -> Section {
    Section {
        heading: "Reproduce",
        blocks: vec![Block::Code(r.reproduce.clone())],
    }
}

fn checks_section(r: &RunRecord) -> Section {
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

/// Messages and latency: the counts, the percentile table and chart, and when the record has
/// them, latency and delivery per time bucket.
fn delivery_section(r: &RunRecord) -> Section {
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
    table
        .rows
        .push(vec!["latency mean (ms)".into(), fmt_num(m.latency_ms.mean)]);
    let mut blocks = vec![Block::Table(table)];
    if m.latency_ms.clamped > 0 {
        blocks.push(Block::Text(format!(
            "{} latency samples exceeded the histogram's range and were clamped: the true \
             maximum is at least {} ms.",
            m.latency_ms.clamped,
            fmt_num(m.latency_ms.max)
        )));
    }
    let mut charts = Vec::new();
    if m.latency_ms.count > 0 {
        charts.push(Chart::LatencyBars(m.latency_ms.clone()));
    }
    if let Some(timeline) = &r.delivery_timeline {
        charts.extend(timeline_charts(timeline));
        blocks.push(Block::Charts(charts));
        blocks.push(Block::Collapsed {
            summary: format!(
                "Delivery per {} s bucket (by send time)",
                fmt_num(timeline.bucket_s)
            ),
            blocks: vec![Block::Table(timeline_table(timeline))],
        });
    } else if !charts.is_empty() {
        blocks.push(Block::Charts(charts));
    }
    Section {
        heading: "Delivery and latency",
        blocks,
    }
}

/// One figure of a delivery bucket, `None` where the bucket has no value for it.
type BucketFigure<'a> = &'a dyn Fn(&DeliveryBucket) -> Option<f64>;

/// Latency percentiles and message fates per bucket, each a step over its bucket; a bucket
/// missing from the record is a gap.
fn timeline_charts(t: &DeliveryTimeline) -> Vec<Chart> {
    let sampled = |b: &DeliveryBucket| b.latency_ms.count > 0;
    let latency: Vec<Series> = [("p50", 0), ("p90", 1), ("p99", 2), ("max", 4)]
        .into_iter()
        .map(|(name, i)| {
            let quantile = |b: &DeliveryBucket| sampled(b).then(|| b.latency_ms.quantiles()[i].1);
            bucket_series(t, &format!("latency_ms/{name}"), "ms", &quantile)
        })
        .collect();
    // Counts become f64 only for plotting; exact below 2^53.
    let fates: [(&str, BucketFigure<'_>); 4] = [
        ("sent", &|b| Some(b.sent as f64)),
        ("delivered", &|b| Some(b.delivered as f64)),
        ("lost", &|b| Some(b.lost as f64)),
        ("at_risk", &|b| Some(b.at_risk as f64)),
    ];
    let [sent, delivered, lost, at_risk] =
        fates.map(|(name, count)| bucket_series(t, &format!("messages/{name}"), "messages", count));
    let bucket = fmt_num(t.bucket_s);
    let panel = |title: String, series, wide| {
        Chart::Panel(Panel {
            title,
            unit: "ms".into(),
            series,
            wide,
        })
    };
    let messages = |title: &str, series| {
        let mut chart = panel(format!("{title} per {bucket} s bucket"), series, false);
        if let Chart::Panel(p) = &mut chart {
            p.unit = "messages".into();
        }
        chart
    };
    vec![
        panel(
            format!("Latency per {bucket} s bucket, by send time"),
            latency,
            true,
        ),
        messages("Sent and delivered", vec![sent, delivered]),
        // Apart, so that a handful of losses is not flattened by thousands sent.
        messages("Lost and at risk", vec![lost, at_risk]),
    ]
}

/// A step series of one figure per bucket; the last bucket holds its value to its end.
fn bucket_series(t: &DeliveryTimeline, name: &str, unit: &str, value: BucketFigure<'_>) -> Series {
    let mut points: Vec<(f64, f64)> = t
        .buckets
        .iter()
        .filter_map(|b| Some((b.start_s, value(b)?)))
        .collect();
    if let Some(&(start, v)) = points.last() {
        points.push((start + t.bucket_s, v));
    }
    Series {
        name: name.into(),
        unit: unit.into(),
        points,
        kind: Some(SeriesKind::Step),
        sampling: Some(Sampling::Periodic {
            interval_s: t.bucket_s,
        }),
        value_labels: Vec::new(),
    }
}

fn timeline_table(t: &DeliveryTimeline) -> TableBlock {
    let columns = [
        "from (s)",
        "sent",
        "delivered",
        "lost",
        "at risk",
        "p50 (ms)",
        "p99 (ms)",
        "max (ms)",
    ];
    let mut table = TableBlock::new(None, &columns);
    for b in &t.buckets {
        let q = |v: f64| {
            if b.latency_ms.count > 0 {
                fmt_num(v)
            } else {
                "-".into()
            }
        };
        table.rows.push(vec![
            fmt_num(b.start_s),
            b.sent.to_string(),
            b.delivered.to_string(),
            b.lost.to_string(),
            b.at_risk.to_string(),
            q(b.latency_ms.p50),
            q(b.latency_ms.p99),
            q(b.latency_ms.max),
        ]);
    }
    table
}

/// Every figure: the run's performance, then `Metrics::extra` grouped by host (the name up to
/// the first `/`), hosts with the same figures side by side in one table.
fn metrics_section(r: &RunRecord) -> Section {
    let mut table = TableBlock::new(Some("Run".into()), &["figure", "value"]);
    table.rows.extend(performance_rows(r));
    let extra_rows: Vec<(&str, &str, f64)> = r
        .metrics
        .extra
        .iter()
        .map(|(k, v)| {
            let (host, figure) = k.split_once('/').unwrap_or(("run", k.as_str()));
            (host, figure, *v)
        })
        .collect();
    let mut by_host: BTreeMap<&str, BTreeMap<&str, f64>> = BTreeMap::new();
    for (host, figure, v) in extra_rows {
        by_host.entry(host).or_default().insert(figure, v);
    }
    let run_extra = by_host.remove("run").unwrap_or_default();
    table.rows.extend(
        run_extra
            .iter()
            .map(|(k, v)| vec![k.to_string(), fmt_num(*v)]),
    );
    let mut blocks = vec![Block::Table(table)];
    blocks.extend(host_tables(&by_host).into_iter().map(Block::Table));
    let count = r.metrics.extra.len() + 5;
    Section {
        heading: "Metrics",
        blocks: vec![Block::Collapsed {
            summary: format!("All {count} figures, grouped by host"),
            blocks,
        }],
    }
}

/// One table per set of hosts reporting the same figures: a row per figure, a column per host.
fn host_tables(by_host: &BTreeMap<&str, BTreeMap<&str, f64>>) -> Vec<TableBlock> {
    let mut alike: Vec<(Vec<&str>, Vec<&str>)> = Vec::new();
    for (host, figures) in by_host {
        let names: Vec<&str> = figures.keys().copied().collect();
        match alike.iter_mut().find(|(n, _)| *n == names) {
            Some((_, hosts)) => hosts.push(host),
            None => alike.push((names, vec![host])),
        }
    }
    alike
        .into_iter()
        .map(|(names, hosts)| {
            let mut columns = vec!["figure"];
            columns.extend(&hosts);
            let mut table = TableBlock::new(Some(hosts.join(", ")), &columns);
            for name in names {
                let mut row = vec![name.to_string()];
                row.extend(hosts.iter().map(|h| fmt_num(by_host[h][name])));
                table.rows.push(row);
            }
            table
        })
        .collect()
}

fn performance_rows(r: &RunRecord) -> Vec<Vec<String>> {
    let m = &r.metrics;
    let rss_mib = m
        .peak_rss_mib()
        .map_or_else(|| "unknown".into(), |v| format!("{v:.1}"));
    [
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

fn faults_section(r: &RunRecord) -> Section {
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

fn tables_section(r: &RunRecord) -> Option<Section> {
    if r.tables.is_empty() {
        return None;
    }
    let blocks = r.tables.iter().map(|t| {
        let columns = t.columns.clone();
        Block::Table(TableBlock {
            caption: Some(t.title.clone()),
            columns,
            rows: t.rows.clone(),
            folded: false,
        })
    });
    Some(Section {
        heading: "Tables",
        blocks: blocks.collect(),
    })
}

fn series_section(r: &RunRecord) -> Option<Section> {
    if r.series.is_empty() {
        return None;
    }
    let mut blocks = vec![Block::Text(
        "Counts and states are drawn as steps; a break in a line is a stretch without samples. \
         Shaded: fault windows; thin red lines: instantaneous faults."
            .into(),
    )];
    for (group, series) in series_groups(&r.series) {
        blocks.push(Block::Heading(group.to_string()));
        let (constant, varying): (Vec<&Series>, Vec<&Series>) =
            series.iter().partition(|s| s.constant_value().is_some());
        if !varying.is_empty() {
            blocks.push(Block::Charts(panels(group, &varying)));
        }
        if !constant.is_empty() {
            blocks.push(Block::Text(constant_line(&constant)));
        }
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

/// The small multiples of one group: a panel per node and unit, so that no axis mixes units
/// and no panel holds every node. A group that needs one panel gets the page width.
pub(crate) fn panels(group: &str, series: &[&Series]) -> Vec<Chart> {
    let mut panels: Vec<((&str, String), Vec<Series>)> = Vec::new();
    for s in series {
        let key = (s.node(), s.unit_or_inferred());
        match panels.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push((*s).clone()),
            None => panels.push((key, vec![(*s).clone()])),
        }
    }
    let units: Vec<&String> = panels.iter().map(|((_, u), _)| u).collect();
    let mixed_units = units.iter().any(|u| *u != units[0]);
    let wide = panels.len() == 1;
    panels
        .into_iter()
        .map(|((node, unit), series)| {
            let mut title = group.to_string();
            if !node.is_empty() {
                title = format!("{title} {node}");
            }
            if mixed_units {
                title = format!("{title} ({unit})");
            }
            Chart::Panel(Panel {
                title,
                unit,
                series,
                wide,
            })
        })
        .collect()
}

/// `Constant while sampled (not drawn): a = 1 (on) from 0 to 600 s, b = 14 from 250 to 600 s.`
fn constant_line(constant: &[&Series]) -> String {
    let items: Vec<String> = constant
        .iter()
        .filter_map(|s| {
            Some((
                s,
                s.constant_value()?,
                s.points.first()?.0,
                s.points.last()?.0,
            ))
        })
        .map(|(s, v, from, to)| {
            let value = labelled(s, v);
            format!(
                "{} = {value} from {} to {} s",
                s.name,
                fmt_num(from),
                fmt_num(to)
            )
        })
        .collect();
    format!("Constant while sampled (not drawn): {}.", items.join(", "))
}

/// A value with its name when the series names its values: `5 (Running in Backup Mode)`.
fn labelled(s: &Series, v: f64) -> String {
    match s.value_labels_or_inferred().iter().find(|l| l.value == v) {
        Some(l) => format!("{} ({})", fmt_num(v), l.label),
        None => fmt_num(v),
    }
}

/// Rows of a step series listed by its changes before it is downsampled instead: changes
/// are exact, evenly spaced samples of a staircase miss them.
const SERIES_CHANGES_MAX: usize = 2 * SERIES_SUMMARY_POINTS_MAX;

/// A series as a table: for a step series with few changes, every change and every gap
/// (exact); otherwise at most [`SERIES_SUMMARY_POINTS_MAX`] evenly spaced samples.
fn series_table(s: &Series) -> TableBlock {
    let unit = s.unit_or_inferred();
    let changes = (s.kind_or_inferred() == SeriesKind::Step)
        .then(|| change_rows(s))
        .filter(|rows| rows.len() <= SERIES_CHANGES_MAX);
    let shown = if changes.is_some() {
        "changes"
    } else {
        "samples"
    };
    let caption = format!("{} ({unit}, {} samples; {shown})", s.name, s.points.len());
    let value_header = format!("value ({unit})");
    let mut table = TableBlock::new(Some(caption), &["t (s)", &value_header]);
    table.folded = true;
    table.rows = changes.unwrap_or_else(|| {
        let points = s.downsampled(SERIES_SUMMARY_POINTS_MAX);
        points
            .into_iter()
            .map(|(t, v)| vec![fmt_num(t), labelled(s, v)])
            .collect()
    });
    table
}

/// The first point of each stretch of samples, every change of value, the last point, and a
/// `no samples` row at each gap.
fn change_rows(s: &Series) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for (i, run) in runs(s).iter().enumerate() {
        if i > 0 {
            rows.push(vec!["…".into(), "no samples".into()]);
        }
        let mut shown: Option<f64> = None;
        for (j, &(t, v)) in run.iter().enumerate() {
            if shown != Some(v) || j + 1 == run.len() {
                rows.push(vec![fmt_num(t), labelled(s, v)]);
                shown = Some(v);
            }
        }
    }
    rows
}

fn coverage_section(r: &RunRecord) -> Section {
    Section {
        heading: "Coverage",
        blocks: coverage_blocks(&r.coverage, &r.coverage_not_applicable),
    }
}

/// Text of a coverage cell for a point the scenario cannot reach (renderers grey it out).
pub(crate) const NOT_APPLICABLE: &str = "not applicable";
/// Text of a coverage cell for a reachable point never reached (renderers colour it).
pub(crate) const NEVER_REACHED: &str = "never reached";

fn coverage_blocks(
    coverage: &BTreeMap<String, u64>,
    not_applicable: &BTreeMap<String, String>,
) -> Vec<Block> {
    if coverage.is_empty() && not_applicable.is_empty() {
        return vec![Block::Text(
            "No \"sometimes\" assertions were recorded.".into(),
        )];
    }
    let hits = |name: &str| coverage.get(name).copied().unwrap_or(0);
    // A point marked not applicable that was reached anyway counts as reached.
    let names: BTreeSet<&String> = coverage.keys().chain(not_applicable.keys()).collect();
    let cells: Vec<(&String, String)> = names
        .into_iter()
        .map(|name| {
            let cell = match (not_applicable.get(name), hits(name)) {
                (Some(why), 0) => format!("{NOT_APPLICABLE}: {why}"),
                (None, 0) => NEVER_REACHED.into(),
                (_, n) => n.to_string(),
            };
            (name, cell)
        })
        .collect();
    let skipped = cells
        .iter()
        .filter(|(_, c)| c.starts_with(NOT_APPLICABLE))
        .count();
    let reached = cells.iter().filter(|(n, _)| hits(n) > 0).count();
    let mut summary = format!(
        "{reached} of {} \"sometimes\" assertions were reached at least once.",
        cells.len() - skipped
    );
    if skipped > 0 {
        summary.push_str(&format!(" {skipped} do not apply to this scenario."));
    }
    let mut table = TableBlock::new(None, &["assertion", "hits"]);
    table
        .rows
        .extend(cells.into_iter().map(|(n, c)| vec![n.clone(), c]));
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
