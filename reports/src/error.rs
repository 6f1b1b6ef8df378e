//! The one error type of the crate boundary.

use crate::record::SCHEMA_VERSION;

/// Why a run record could not be read or a report could not be rendered.
///
/// Rendering Markdown and comparing records cannot fail; only parsing, plotting and XML
/// serialization can.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The text is not a run record (bad JSON or a missing field).
    #[error("not a valid run record (schema version {SCHEMA_VERSION}): {0}")]
    Json(#[from] serde_json::Error),
    /// The record was written by a newer hmsim whose format this build would misread.
    #[error("run record has schema version {found}; this build reads up to {supported}")]
    UnsupportedSchema {
        /// `schema_version` found in the record.
        found: u32,
        /// Newest version this build understands ([`SCHEMA_VERSION`]).
        supported: u32,
    },
    /// The font shipped for plot labels was rejected (a build defect, not bad input).
    #[error("the embedded plot font (DejaVu Sans) could not be loaded")]
    Font,
    /// plotters failed while drawing a chart.
    #[error("drawing chart {chart:?} failed: {message}")]
    Plot {
        /// Title of the chart being drawn.
        chart: String,
        /// plotters' error, as text (its error type is generic over the backend).
        message: String,
    },
    /// quick-junit could not serialize the report.
    #[error("writing JUnit XML failed: {0}")]
    Junit(#[from] quick_junit::SerializeError),
}
