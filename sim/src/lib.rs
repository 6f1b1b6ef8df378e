//! # sim — hmsim, the deterministic simulation and load-test harness
//!
//! One `u64` seed drives a run: the scenario (YAML) becomes a turmoil world of fake IM&P
//! nodes, client farms and (later) the real connector and the fake cloud; workloads and the
//! fault timeline run at simulated times; the observer records history; checks judge it; the
//! run record and reports are written. The same seed gives the same trace digest.
//!
//! ## Module map: the pipeline
//!
//! Each stage imports only the stages before it (`tests/layers.rs` enforces it):
//!
//! ```text
//! scenario → plan → world → inject → run ──writes──▶ history ◀── oracle ◀── checks ◀── record ◀── cli
//!                                      └───asks the oracle whether the run is quiescent
//! ```
//!
//! - [`scenario`]: the YAML schema, value types, parsing with located errors.
//! - [`plan`]: pure decisions from the scenario and the seed: population, component settings,
//!   workload plans, the fault timeline; the scenario's cross-field rules.
//! - [`world`]: the plan turned into turmoil hosts and explicit handles (the only caller of
//!   `sim.host`).
//! - [`inject`]: one `apply` for every fault action.
//! - [`run`]: the step loop, sampling, quiescence; produces the history.
//! - [`history`]: what a run produced, as data; the trace digest.
//! - [`oracle`]: what must, may and must not be delivered.
//! - [`checks`]: each scenario check judged over the history.
//! - [`record`]: the run record and output files.
//! - [`cli`]: the `hmsim` command line.
//!
//! See `docs/architecture.md` for where each kind of change goes.

pub mod checks;
pub mod cli;
pub mod explore;
pub mod history;
pub mod inject;
pub mod oracle;
pub mod plan;
pub mod record;
pub mod run;
pub mod scenario;
pub mod world;

/// With the `mimalloc` feature, every program built on the harness (`hmsim`, the benches,
/// the tests) allocates through mimalloc. A run allocates and frees per stanza (the element
/// tree, turmoil's segments, the observer's records), and glibc's malloc spent a tenth of a
/// busy minute in `_int_malloc`, `malloc_consolidate` and `unlink_chunk` (issue 16's
/// profiles); mimalloc's per-size free lists cost less, but it keeps about a fifth more
/// memory (README, "Scale"), so it is opt-in. Allocation addresses never reach a trace: the
/// digests are the same with either allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Parses and validates scenario text; `file` is used in diagnostics.
pub fn parse(file: &str, source: &str) -> Result<scenario::Scenario, scenario::ScenarioError> {
    scenario::parse(file, source, &|s| {
        plan::validate::validate(s, &checks::Registry)
    })
}

/// Reads and validates a scenario file.
pub fn load(path: &std::path::Path) -> Result<scenario::Scenario, scenario::ScenarioError> {
    scenario::load(path, &|s| plan::validate::validate(s, &checks::Registry))
}

/// Errors at this crate's boundary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scenario is invalid (exit code 2).
    #[error("{0}")]
    Scenario(#[from] scenario::ScenarioError),
    /// A file could not be read or written.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// A report could not be rendered.
    #[error("rendering a report failed: {0}")]
    Render(String),
}
