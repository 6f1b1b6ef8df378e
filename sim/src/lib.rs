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

/// Every program built on the harness (`hmsim`, the benches, the tests) allocates through
/// mimalloc. A run allocates and frees per stanza (the element tree, turmoil's segments,
/// the observer's records), and glibc's malloc and free were about 14 % of a 3,000-user run's
/// profile (`_int_malloc`, `unlink_chunk`, `free`, `malloc_consolidate`); with mimalloc the
/// run takes about 1.2 × less CPU and about 1.2 × more peak memory (README, "Scale",
/// session 9). Allocation addresses never reach a trace: the digests are the same with either
/// allocator.
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
