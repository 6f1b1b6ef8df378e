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
//! - `plot`: the plotters charts (series line charts, latency bar chart) as SVG strings.
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
mod html;
mod junit;
mod markdown;
mod merge;
mod plot;
mod record;

pub use baseline::{
    CheckComparison, Comparison, Limit, MetricComparison, Thresholds, Verdict, compare,
};
pub use error::ReportError;
pub use html::html;
pub use junit::junit;
pub use markdown::markdown;
pub use merge::{FailedSeed, MergedReport, ScenarioSummary, Spread, merge};
pub use record::{
    CheckResult, FaultRecord, Metrics, Outcome, Percentiles, RunRecord, SCHEMA_VERSION, Series,
    Status, Table,
};
