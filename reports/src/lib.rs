//! # reports
//!
//! Pure functions from run records to outputs. Nothing here reads a clock, a file or the
//! environment: the same [`RunRecord`] always renders to the same bytes, so reports can be
//! diffed and tested.
//!
//! ## Module map
//! - `record`: the run record (`run.json`), the contract between `hmsim run` and every reader.
//! - `error`: [`ReportError`], the one error type of the crate boundary.
//! - `document`: the report's content as format-neutral sections (shared by Markdown and HTML).
//! - `markdown`: [`markdown`], `report.md`.
//! - `html`: [`html`], `report.html`, one self-contained file with inline SVG plots.
//! - `series`: what a series means for a plot (step or line, sampling, unit, value names;
//!   declared or inferred from its name) and the exact polylines drawn: steps and gaps.
//! - `faults`: fault windows (a fault and its `/end`) shaded on every time-series chart.
//! - `plot`: the plotters charts (time-series panels, latency bars) as SVG or PNG.
//! - `files`: [`plot_files`], every chart of a report as a separate SVG or PNG file.
//! - `timeline`: [`DeliveryTimeline::from_messages`], delivery and latency per time bucket
//!   from each message's send time and [`Fate`].
//! - `junit`: [`junit`], `junit.xml` for CI test views.
//! - `baseline`: [`compare`], the CI regression gate against a baseline run record.
//! - `merge`: [`merge`], the per-scenario summary of a seed sweep (`hmsim report merge`).
//! - `example`: [`RunRecord::example`], a complete record for examples and tests.
//!
//! ## Example
//! ```
//! # fn main() -> Result<(), reports::ReportError> {
//! # let json = reports::RunRecord::example().to_json()?;
//! let record = reports::RunRecord::from_json(&json)?;
//! let md = reports::markdown(&record);
//! assert!(md.contains(&record.reproduce));
//! # Ok(())
//! # }
//! ```

mod baseline;
mod document;
mod error;
mod example;
mod faults;
mod files;
mod html;
mod junit;
mod markdown;
mod merge;
mod plot;
mod record;
mod series;
mod timeline;

pub use baseline::{
    CheckComparison, Comparison, Limit, MetricComparison, Thresholds, Verdict, compare,
};
pub use error::ReportError;
pub use files::{PlotFile, PlotFormat, plot_files};
pub use html::html;
pub use junit::junit;
pub use markdown::markdown;
pub use merge::{FailedSeed, MergedReport, ScenarioSummary, Spread, merge};
pub use record::{
    CheckResult, DeliveryBucket, DeliveryTimeline, FAILURE_LINE_CHARS_MAX, FaultRecord, Metrics,
    Outcome, Percentiles, RunRecord, SCHEMA_VERSION, Sampling, Series, SeriesKind, Status, Table,
    ValueLabel,
};
pub use timeline::{DELIVERY_BUCKETS_MAX, Fate};
