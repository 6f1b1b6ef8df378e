//! The charts, drawn with plotters into SVG strings for inline embedding.
//!
//! plotters is built without system font support (see `docs/PITFALLS.md`): text layout uses
//! DejaVu Sans shipped in `assets/` and registered once. The SVG itself names the family
//! `sans-serif`, so browsers render labels with their own sans font.

use crate::document::fmt_num;
use crate::error::ReportError;
use crate::record::{Percentiles, Series};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};
use std::error::Error;
use std::sync::OnceLock;

/// DejaVu Sans (Bitstream Vera licence, `assets/DejaVu-LICENSE.txt`).
static FONT_TTF: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
/// Size of every chart; wide enough for a legend beside long series names.
const CHART_SIZE_PX: (u32, u32) = (760, 340);
/// Line charts keep the extremes of this many time buckets per series: enough for a smooth
/// line at the chart's width, while a run with 100,000 samples still gives a small file.
const PLOT_BUCKETS_MAX: usize = 500;
const FONT: &str = "sans-serif";

type DrawResult = Result<(), Box<dyn Error>>;

/// Registers the shipped font under `sans-serif` exactly once per process; without it every
/// plotters backend fails with `FontUnavailable`.
fn ensure_font() -> Result<(), ReportError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, FONT_TTF).is_ok());
    if ok { Ok(()) } else { Err(ReportError::Font) }
}

fn render(
    title: &str,
    draw: impl FnOnce(&mut String) -> DrawResult,
) -> Result<String, ReportError> {
    ensure_font()?;
    let mut svg = String::new();
    draw(&mut svg).map_err(|e| ReportError::Plot {
        chart: title.into(),
        message: e.to_string(),
    })?;
    Ok(svg)
}

/// One line chart for a group of series sharing a name prefix, with a legend.
pub(crate) fn series_chart(group: &str, series: &[&Series]) -> Result<String, ReportError> {
    render(group, |svg| draw_series(svg, group, series))
}

fn draw_series(svg: &mut String, group: &str, series: &[&Series]) -> DrawResult {
    let lines: Vec<Vec<(f64, f64)>> = series.iter().map(|s| decimate(&s.points)).collect();
    let (x_range, y_range) = bounds(lines.iter().flatten());
    let root = SVGBackend::with_string(svg, CHART_SIZE_PX).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(group, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range, y_range)?;
    let unit = series.first().map_or("", |s| s.unit.as_str());
    let mut mesh = chart.configure_mesh();
    mesh.x_desc("simulated time (s)").y_desc(unit);
    mesh.x_label_formatter(&|v| fmt_num(*v))
        .y_label_formatter(&|v| fmt_num(*v))
        .draw()?;
    for (i, (s, points)) in series.iter().zip(lines).enumerate() {
        let style = Palette99::pick(i).stroke_width(2);
        let legend = move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style);
        chart
            .draw_series(LineSeries::new(points, style))?
            .label(&s.name)
            .legend(legend);
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Finite points only, reduced to the first, the last and the minimum and maximum of each of
/// at most [`PLOT_BUCKETS_MAX`] buckets, so that short spikes stay visible.
fn decimate(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let finite: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(t, v)| t.is_finite() && v.is_finite())
        .collect();
    if finite.len() <= 2 * PLOT_BUCKETS_MAX {
        return finite;
    }
    let bucket_len = finite.len().div_ceil(PLOT_BUCKETS_MAX);
    let mut kept = vec![finite[0]];
    for bucket in finite.chunks(bucket_len) {
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
    kept.extend(finite.last());
    kept.dedup();
    kept
}

/// Axis ranges covering every point, starting the y axis at zero for non-negative data and
/// widening empty ranges (plotters cannot map a zero-width range).
fn bounds<'a>(
    points: impl Iterator<Item = &'a (f64, f64)>,
) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
    let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (f64::MAX, f64::MIN, 0.0_f64, f64::MIN);
    for &(t, v) in points {
        (x_lo, x_hi) = (x_lo.min(t), x_hi.max(t));
        (y_lo, y_hi) = (y_lo.min(v), y_hi.max(v));
    }
    if x_lo > x_hi {
        (x_lo, x_hi) = (0.0, 1.0);
    }
    if x_hi <= x_lo {
        x_hi = x_lo + 1.0;
    }
    let y_hi = if y_hi <= y_lo {
        y_lo + 1.0
    } else {
        y_hi + (y_hi - y_lo) * 0.05
    };
    (x_lo..x_hi, y_lo..y_hi)
}

/// Bar chart of the latency quantiles, each bar labelled with its value in ms.
pub(crate) fn latency_chart(latency_ms: &Percentiles) -> Result<String, ReportError> {
    let title = "Delivery latency (simulated ms)";
    render(title, |svg| draw_latency(svg, title, latency_ms))
}

fn draw_latency(svg: &mut String, title: &str, latency_ms: &Percentiles) -> DrawResult {
    let bars = latency_ms
        .quantiles()
        .map(|(name, v)| (name, if v.is_finite() { v } else { 0.0 }));
    let y_max = bars.iter().map(|(_, v)| *v).fold(1.0, f64::max) * 1.15;
    let root = SVGBackend::with_string(svg, CHART_SIZE_PX).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        // Integer ranges are inclusive as segments: 0..4 gives the five bars.
        .build_cartesian_2d((0..bars.len() - 1).into_segmented(), 0.0..y_max)?;
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => bars.get(*i).map_or("", |(name, _)| name).to_string(),
        _ => String::new(),
    };
    let mut mesh = chart.configure_mesh();
    mesh.disable_x_mesh().x_label_formatter(&label).y_desc("ms");
    mesh.y_label_formatter(&|v| fmt_num(*v)).draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
        let corners = [
            (SegmentValue::Exact(i), 0.0),
            (SegmentValue::Exact(i + 1), *v),
        ];
        let mut bar = Rectangle::new(corners, BLUE.mix(0.6).filled());
        bar.set_margin(0, 0, 18, 18);
        bar
    }))?;
    let value_style = TextStyle::from((FONT, 13)).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
        Text::new(
            fmt_num(*v),
            (SegmentValue::CenterOf(i), *v),
            value_style.clone(),
        )
    }))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RunRecord;

    /// The text content of every `<text>` element (plotters puts it on its own line).
    fn texts(svg: &str) -> Vec<&str> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim()))
            .collect()
    }

    #[test]
    fn latency_chart_is_an_svg_with_quantile_labels_and_values() {
        let svg = latency_chart(&RunRecord::example().metrics.latency_ms).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        let texts = texts(&svg);
        for text in [
            "Delivery latency (simulated ms)",
            "p50",
            "p99.9",
            "max",
            "2150",
            "500",
        ] {
            assert!(texts.contains(&text), "missing {text} in {texts:?}");
        }
        assert_eq!(
            svg.matches("<rect").count(),
            1 + 5,
            "background and five bars"
        );
    }

    #[test]
    fn series_chart_has_one_line_and_legend_entry_per_series() {
        let r = RunRecord::example();
        let sessions: Vec<&Series> = r
            .series
            .iter()
            .filter(|s| s.group() == "sessions")
            .collect();
        let svg = series_chart("sessions", &sessions).unwrap();
        let texts = texts(&svg);
        for text in [
            "sessions",
            "sessions/imp-a-1",
            "sessions/imp-a-2",
            "simulated time (s)",
        ] {
            assert!(texts.contains(&text), "missing {text} in {texts:?}");
        }
        // Two data lines plus two legend samples; axes and ticks are thin.
        assert_eq!(
            svg.matches("stroke-width=\"2\" points=").count(),
            4,
            "{svg}"
        );
    }

    #[test]
    fn degenerate_series_still_draw() {
        let empty = Series {
            name: "q/a".into(),
            unit: "x".into(),
            points: vec![],
        };
        let flat = Series {
            points: vec![(5.0, 3.0), (f64::NAN, 1.0)],
            ..empty.clone()
        };
        assert!(
            series_chart("q", &[&empty, &flat])
                .unwrap()
                .contains("<svg")
        );
        let nan = Percentiles {
            p99: f64::NAN,
            ..Percentiles::default()
        };
        assert!(latency_chart(&nan).unwrap().contains("<svg"));
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
