//! The charts, drawn with plotters into SVG strings for inline embedding or into PNG images
//! for tools that do not render SVG. Both come from the same drawing code.
//!
//! plotters is built without system font support (fontconfig would be a system library):
//! text layout uses DejaVu Sans shipped in `assets/` and registered once. The SVG itself names
//! the family `sans-serif`, so browsers render labels with their own sans font.
//!
//! Every time-series panel of a report shares one [`Frame`]: the run's x range and its fault
//! windows, shaded and labelled on each panel, so panels line up and read against the faults.

use crate::document::fmt_num;
use crate::error::ReportError;
use crate::faults::FaultWindow;
use crate::record::{Percentiles, Series, ValueLabel};
use crate::series::segments;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};
use std::error::Error;
use std::ops::Range;
use std::sync::OnceLock;

/// DejaVu Sans (Bitstream Vera licence, `assets/DejaVu-LICENSE.txt`).
static FONT_TTF: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
/// A chart spanning the page (the report's main column is about this wide).
const WIDE_PX: (u32, u32) = (1240, 300);
/// A small multiple, two to a row.
const SMALL_PX: (u32, u32) = (610, 250);
/// Width of the legend column right of the data; names longer than fit are cut.
const LEGEND_PX: u32 = 170;
/// Characters of a legend entry that fit in [`LEGEND_PX`] at the legend font size.
const LEGEND_CHARS_MAX: usize = 24;
const FONT: &str = "sans-serif";
/// Shading of a fault window; light enough to read the lines through it.
const FAULT_FILL: RGBColor = RGBColor(214, 39, 40);
const FAULT_TEXT: RGBColor = RGBColor(150, 20, 20);

/// Line colours in legend order: Tableau 10 without its red (red marks the faults), then
/// plotters' 99-colour palette for larger panels.
const PALETTE: [RGBColor; 9] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

type DrawResult = Result<(), Box<dyn Error>>;

/// The colour of the `i`th series of a panel.
fn line_color(i: usize) -> RGBColor {
    PALETTE.get(i).copied().unwrap_or_else(|| {
        let c = Palette99::pick(i).to_rgba();
        RGBColor(c.0, c.1, c.2)
    })
}

/// What every time-series panel of one report shares.
pub(crate) struct Frame {
    /// Simulated seconds covered by every panel: the whole run.
    pub x_range: Range<f64>,
    /// Faults to shade.
    pub faults: Vec<FaultWindow>,
}

/// One time-series chart: series of one unit (one node of a group, or a whole small group).
#[derive(Debug, Clone)]
pub(crate) struct Panel {
    /// Chart title.
    pub title: String,
    /// Unit of every series, the y axis description.
    pub unit: String,
    /// The series, drawn in this order; legend entries are their members (last name part).
    pub series: Vec<Series>,
    /// Spans the page rather than sitting two to a row.
    pub wide: bool,
}

/// A chart of the report.
#[derive(Debug, Clone)]
pub(crate) enum Chart {
    /// Bar chart of the run's latency quantiles.
    LatencyBars(Percentiles),
    /// A time-series panel.
    Panel(Panel),
}

impl Chart {
    /// Title, also the base of the PNG file name.
    pub fn title(&self) -> &str {
        match self {
            Chart::LatencyBars(_) => "Delivery latency (simulated ms)",
            Chart::Panel(p) => &p.title,
        }
    }

    fn size(&self) -> (u32, u32) {
        if self.wide() { WIDE_PX } else { SMALL_PX }
    }

    /// Spans the page; the others sit two to a row.
    pub fn wide(&self) -> bool {
        match self {
            Chart::Panel(p) => p.wide,
            Chart::LatencyBars(_) => false,
        }
    }
}

/// Registers the shipped font under `sans-serif` exactly once per process; without it every
/// plotters backend fails with `FontUnavailable`.
fn ensure_font() -> Result<(), ReportError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, FONT_TTF).is_ok());
    if ok { Ok(()) } else { Err(ReportError::Font) }
}

fn plot_error(chart: &Chart, e: &dyn Error) -> ReportError {
    ReportError::Plot {
        chart: chart.title().into(),
        message: e.to_string(),
    }
}

/// The chart as an SVG document.
pub(crate) fn svg(chart: &Chart, frame: &Frame) -> Result<String, ReportError> {
    ensure_font()?;
    let mut out = String::new();
    let root = SVGBackend::with_string(&mut out, chart.size()).into_drawing_area();
    draw(root, chart, frame).map_err(|e| plot_error(chart, &*e))?;
    Ok(out)
}

/// The chart as a PNG image (8-bit RGB).
pub(crate) fn png(chart: &Chart, frame: &Frame) -> Result<Vec<u8>, ReportError> {
    ensure_font()?;
    let (w, h) = chart.size();
    let mut rgb = vec![0_u8; (w * h * 3) as usize];
    let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
    draw(root, chart, frame).map_err(|e| plot_error(chart, &*e))?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let written = encoder
        .write_header()
        .and_then(|mut writer| writer.write_image_data(&rgb));
    written.map_err(|e| plot_error(chart, &e))?;
    Ok(out)
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    chart: &Chart,
    frame: &Frame,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    match chart {
        Chart::LatencyBars(latency_ms) => draw_latency(&root, chart.title(), latency_ms)?,
        Chart::Panel(panel) => draw_panel(&root, panel, frame)?,
    }
    root.present()?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panel: &Panel,
    frame: &Frame,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (width, _) = root.dim_in_pixel();
    let (plot_area, legend_area) = root.split_horizontally(width - LEGEND_PX);
    let lines: Vec<Vec<Vec<(f64, f64)>>> = panel.series.iter().map(segments).collect();
    let labels = panel
        .series
        .iter()
        .map(Series::value_labels_or_inferred)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    let values = lines.iter().flatten().flatten().map(|p| p.1);
    let data_range = if labels.is_empty() {
        value_range(values)
    } else {
        label_range(values)
    };
    // Room above the data for the fault labels, so that no line runs through them.
    let headroom = if frame.faults.is_empty() { 0.0 } else { 0.3 };
    let y_range = data_range.start..data_range.end + (data_range.end - data_range.start) * headroom;
    let y_label_px = if labels.is_empty() {
        60
    } else {
        let longest = labels.iter().map(|l| l.label.chars().count()).max();
        (longest.unwrap_or(0) as u32 * 7 + 16).max(60)
    };
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(&panel.title, (FONT, 15))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(y_label_px)
        .build_cartesian_2d(frame.x_range.clone(), y_range.clone())?;
    let label_of = |v: &f64| value_label(&labels, *v);
    let mut mesh = chart.configure_mesh();
    mesh.x_desc("simulated time (s)").y_desc(&panel.unit);
    mesh.x_label_formatter(&|v| fmt_num(*v))
        .label_style((FONT, 11));
    mesh.light_line_style(TRANSPARENT)
        .bold_line_style(BLACK.mix(0.08));
    if labels.is_empty() {
        mesh.y_label_formatter(&|v| fmt_num(*v));
    } else {
        // One tick per integer in range, named; plotters then never picks a half step.
        let ticks = (y_range.end - y_range.start).round() as usize + 1;
        mesh.y_labels(ticks).y_label_formatter(&label_of);
    }
    mesh.draw()?;
    shade_faults(&mut chart, &frame.faults, &y_range, data_range.end)?;
    for (i, segments) in lines.into_iter().enumerate() {
        let style = line_color(i).stroke_width(2);
        for segment in segments {
            if let [only] = segment[..] {
                chart.draw_series([Circle::new(only, 3, style.filled())])?;
            } else {
                chart.draw_series(LineSeries::new(segment, style))?;
            }
        }
    }
    draw_legend(&legend_area, &panel.series)
}

type Cartesian<'a, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Fault windows as light red bands (instants as thin lines), each labelled in the headroom
/// above `data_top`; labels of nearby faults are staggered over three rows so they do not
/// overprint.
fn shade_faults<DB: DrawingBackend>(
    chart: &mut Cartesian<'_, DB>,
    faults: &[FaultWindow],
    y_range: &Range<f64>,
    data_top: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (y_lo, y_hi) = (y_range.start, y_range.end);
    let row_h = (y_hi - data_top) / 3.0;
    for (i, f) in faults.iter().enumerate() {
        match f.end_s {
            Some(end_s) => {
                let band = [(f.start_s, y_lo), (end_s, y_hi)];
                chart.draw_series([Rectangle::new(band, FAULT_FILL.mix(0.13).filled())])?;
            }
            None => {
                let line = [(f.start_s, y_lo), (f.start_s, y_hi)];
                chart.draw_series([PathElement::new(line, FAULT_FILL.mix(0.7).stroke_width(1))])?;
            }
        }
        let font = (FONT, 11).into_font().color(&FAULT_TEXT);
        let y = y_hi - row_h * (i % 3) as f64;
        let text = Text::new(
            f.label.clone(),
            (f.start_s, y),
            font.pos(Pos::new(HPos::Left, VPos::Top)),
        );
        chart.draw_series([text])?;
    }
    Ok(())
}

/// The legend in its own column right of the data: a colour sample and the member name per
/// series, and `+N more` when the column is full.
fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, series: &[Series]) -> DrawResult
where
    DB::ErrorType: 'static,
{
    const ROW_PX: i32 = 16;
    const TOP_PX: i32 = 34;
    let (_, height) = area.dim_in_pixel();
    let rows = ((height as i32 - TOP_PX) / ROW_PX).max(1) as usize;
    let shown = if series.len() > rows {
        rows - 1
    } else {
        series.len()
    };
    let font = TextStyle::from((FONT, 12)).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, s) in series.iter().take(shown).enumerate() {
        let y = TOP_PX + ROW_PX * i as i32;
        let sample = [(6, y), (26, y)];
        area.draw(&PathElement::new(sample, line_color(i).stroke_width(3)))?;
        let name: String = s.member().chars().take(LEGEND_CHARS_MAX).collect();
        area.draw(&Text::new(name, (32, y), font.clone()))?;
    }
    if shown < series.len() {
        let y = TOP_PX + ROW_PX * shown as i32;
        let more = format!("+{} more", series.len() - shown);
        area.draw(&Text::new(more, (32, y), font))?;
    }
    Ok(())
}

/// The name of `v` when it is (very nearly) a labelled value, else nothing.
fn value_label(labels: &[ValueLabel], v: f64) -> String {
    labels
        .iter()
        .find(|l| (l.value - v).abs() < 1e-6)
        .map_or_else(String::new, |l| l.label.clone())
}

/// For enumerations: half a step around the values that occur, so each gets its own row.
fn label_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return -0.5..1.5;
    }
    (lo.round() - 0.5)..(hi.round() + 0.5)
}

/// From zero (or the lowest negative value) to 5 % above the highest; never zero-width.
fn value_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values.fold((0.0_f64, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= lo {
        return lo..lo + 1.0;
    }
    lo..hi + (hi - lo) * 0.05
}

/// Quantiles spanning more than this ratio (max / smallest non-zero) get a log axis, so that
/// p50 to p99 stay readable next to an offline delivery hours long.
const LOG_AXIS_SPAN_MIN: f64 = 1000.0;

fn draw_latency<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    latency_ms: &Percentiles,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let bars = latency_ms
        .quantiles()
        .map(|(name, v)| (name, if v.is_finite() { v } else { 0.0 }));
    let y_max = bars.iter().map(|(_, v)| *v).fold(1.0, f64::max);
    let smallest = bars
        .iter()
        .map(|(_, v)| *v)
        .filter(|v| *v > 0.0)
        .fold(y_max, f64::min);
    if y_max / smallest > LOG_AXIS_SPAN_MIN {
        let base = smallest / 2.0;
        let axis = (base..y_max * 3.0).log_scale();
        draw_bars(root, title, &bars, axis, base, "ms (log scale)")
    } else {
        draw_bars(root, title, &bars, 0.0..y_max * 1.15, 0.0, "ms")
    }
}

fn draw_bars<DB: DrawingBackend, Y>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    bars: &[(&str, f64)],
    y_axis: Y,
    base: f64,
    y_desc: &str,
) -> DrawResult
where
    DB::ErrorType: 'static,
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        // Integer ranges are inclusive as segments: 0..4 gives the five bars.
        .build_cartesian_2d((0..bars.len() - 1).into_segmented(), y_axis)?;
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => bars.get(*i).map_or("", |(name, _)| name).to_string(),
        _ => String::new(),
    };
    let mut mesh = chart.configure_mesh();
    mesh.disable_x_mesh()
        .x_label_formatter(&label)
        .y_desc(y_desc);
    mesh.light_line_style(TRANSPARENT)
        .bold_line_style(BLACK.mix(0.08));
    mesh.y_label_formatter(&|v| fmt_num(*v)).draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
        let corners = [
            (SegmentValue::Exact(i), base),
            (SegmentValue::Exact(i + 1), v.max(base)),
        ];
        let mut bar = Rectangle::new(corners, BLUE.mix(0.6).filled());
        bar.set_margin(0, 0, 18, 18);
        bar
    }))?;
    let value_style = TextStyle::from((FONT, 13)).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
        Text::new(
            fmt_num(*v),
            (SegmentValue::CenterOf(i), v.max(base)),
            value_style.clone(),
        )
    }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::fault_windows;
    use crate::record::RunRecord;

    /// The text content of every `<text>` element (plotters puts it on its own line).
    pub(crate) fn texts(svg: &str) -> Vec<&str> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim()))
            .collect()
    }

    fn frame(r: &RunRecord) -> Frame {
        Frame {
            x_range: 0.0..r.duration_s,
            faults: fault_windows(&r.faults),
        }
    }

    fn sessions_panel(r: &RunRecord) -> Chart {
        let series = r
            .series
            .iter()
            .filter(|s| s.group() == "sessions")
            .cloned()
            .collect();
        Chart::Panel(Panel {
            title: "sessions".into(),
            unit: "sessions".into(),
            series,
            wide: true,
        })
    }

    #[test]
    fn latency_chart_is_an_svg_with_quantile_labels_and_values() {
        let r = RunRecord::example();
        let svg = svg(
            &Chart::LatencyBars(r.metrics.latency_ms.clone()),
            &frame(&r),
        )
        .unwrap();
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
    fn panel_has_one_line_per_series_a_legend_and_every_fault() {
        let r = RunRecord::example();
        let svg = svg(&sessions_panel(&r), &frame(&r)).unwrap();
        let texts = texts(&svg);
        for text in [
            "sessions",
            "imp-a-1",
            "imp-a-2",
            "simulated time (s)",
            "partition imp-a-1 | connector-1",
            "crash imp-a-1",
            "restart imp-a-1",
        ] {
            assert!(texts.contains(&text), "missing {text} in {texts:?}");
        }
        // Two data lines (width 2) and two legend samples (width 3).
        assert_eq!(
            svg.matches("stroke-width=\"2\" points=").count(),
            2,
            "{svg}"
        );
        assert_eq!(
            svg.matches("stroke-width=\"3\" points=").count(),
            2,
            "{svg}"
        );
        // One shaded band (the partition window, 120 s to 150 s); two instant lines.
        assert_eq!(
            svg.matches("opacity=\"0.13\" fill=\"#D62728\"").count(),
            1,
            "{svg}"
        );
        assert_eq!(
            svg.matches("opacity=\"0.7\" stroke=\"#D62728\"").count(),
            2,
            "{svg}"
        );
    }

    #[test]
    fn the_fault_band_spans_its_window_on_the_shared_x_axis() {
        let r = RunRecord::example();
        let svg = svg(&sessions_panel(&r), &frame(&r)).unwrap();
        let band = svg
            .split("<rect")
            .find(|r| r.contains("opacity=\"0.13\""))
            .unwrap();
        let attr = |name: &str| -> f64 {
            let v = band.split(&format!(" {name}=\"")).nth(1).unwrap();
            v.split('"').next().unwrap().parse().unwrap()
        };
        // Plot area: 1240 px minus the legend, minus margins and the y label area.
        let (left, right) = (8.0 + 60.0, (1240 - LEGEND_PX) as f64 - 8.0);
        let px_per_s = (right - left) / 600.0;
        assert!(
            (attr("x") - (left + 120.0 * px_per_s)).abs() <= 2.0,
            "{band}"
        );
        assert!((attr("width") - 30.0 * px_per_s).abs() <= 2.0, "{band}");
    }

    #[test]
    fn a_step_series_is_drawn_as_a_staircase() {
        let r = RunRecord::example();
        let svg = svg(&sessions_panel(&r), &frame(&r)).unwrap();
        let line = svg
            .split("<polyline")
            .find(|p| p.contains("stroke-width=\"2\""))
            .unwrap();
        let points = line
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let xy: Vec<(i32, i32)> = points
            .split_whitespace()
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        // Every segment is horizontal or vertical: a staircase, never a slant.
        assert!(
            xy.windows(2).all(|w| w[0].0 == w[1].0 || w[0].1 == w[1].1),
            "{xy:?}"
        );
        assert!(
            xy.windows(2).any(|w| w[0].0 == w[1].0 && w[0].1 != w[1].1),
            "a drop"
        );
    }

    #[test]
    fn state_series_show_state_names() {
        let s = Series {
            name: "prg_state/imp-a-1".into(),
            unit: "prg_state".into(),
            points: vec![(0.0, 1.0), (100.0, 5.0), (200.0, 1.0)],
            ..Series::default()
        };
        let chart = Chart::Panel(Panel {
            title: "prg_state".into(),
            unit: s.unit_or_inferred(),
            series: vec![s],
            wide: false,
        });
        let r = RunRecord::example();
        let svg = svg(&chart, &frame(&r)).unwrap();
        let texts = texts(&svg);
        for text in ["Normal", "Running in Backup Mode", "PRG state"] {
            assert!(texts.contains(&text), "missing {text} in {texts:?}");
        }
        assert!(!texts.contains(&"5"), "{texts:?}");
    }

    #[test]
    fn latency_spanning_hours_gets_a_log_axis() {
        let r = RunRecord::example();
        let wide = Percentiles {
            max: 80.0 * 3600.0 * 1000.0,
            ..r.metrics.latency_ms.clone()
        };
        let svg = svg(&Chart::LatencyBars(wide), &frame(&r)).unwrap();
        let texts = texts(&svg);
        assert!(texts.contains(&"ms (log scale)"), "{texts:?}");
        assert!(texts.contains(&"288000000"), "{texts:?}");
        let linear = svg_of_example_latency();
        assert!(texts_of(&linear).contains(&"ms".to_string()));
    }

    fn svg_of_example_latency() -> String {
        let r = RunRecord::example();
        svg(
            &Chart::LatencyBars(r.metrics.latency_ms.clone()),
            &frame(&r),
        )
        .unwrap()
    }

    fn texts_of(svg: &str) -> Vec<String> {
        texts(svg).into_iter().map(String::from).collect()
    }

    #[test]
    fn degenerate_series_still_draw_and_png_is_a_png() {
        let empty = Series {
            name: "q/a".into(),
            unit: "x".into(),
            ..Series::default()
        };
        let flat = Series {
            points: vec![(5.0, 3.0), (f64::NAN, 1.0)],
            ..empty.clone()
        };
        let chart = Chart::Panel(Panel {
            title: "q".into(),
            unit: "x".into(),
            series: vec![empty, flat],
            wide: false,
        });
        let r = RunRecord::example();
        assert!(svg(&chart, &frame(&r)).unwrap().contains("<svg"));
        let nan = Percentiles {
            p99: f64::NAN,
            ..Percentiles::default()
        };
        let png = png(&Chart::LatencyBars(nan), &frame(&r)).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}
