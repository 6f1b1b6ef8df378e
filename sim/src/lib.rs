//! # sim — hmsim, the deterministic simulation and load-test harness
//!
//! One `u64` seed drives a run: the scenario (YAML) becomes a turmoil world of fake IM&P
//! nodes, client farms and (later) the real connector and the fake cloud; workloads and the
//! fault timeline run at simulated times; the observer records history; checks judge it; the
//! run record and reports are written. The same seed gives the same trace digest.
//!
//! ## Module map
//! - [`scenario`]: schema, value types, located errors, validation.
//! - [`topology`]: host naming and the user population.
//! - [`rng`]: per-component ChaCha RNGs derived from the seed by name.
//! - [`observer`]: the history and the trace digest.
//! - [`faults`]: the fault timeline and how it is applied to turmoil.
//! - [`hybrid`]: the cloud, the Expressway nodes running the real connector, Webex farms.
//! - [`imp`]: the IM&P nodes' component and AXL services built from a scenario.
//! - [`interop`]: the interop oracle (spec 32-34) and the 16-way matrix check.
//! - [`prg`]: IM&P Presence Redundancy Groups: settings, client server lists, failover
//!   faults, `prg_state` series and the `prg_failover` check.
//! - [`presence_check`]: Webex presence as Jabber contacts see it (spec 50-55).
//! - [`group_chat_check`]: group chat is never bridged (spec 42): the `group_chat` workload's
//!   plans and check.
//! - [`migration_check`]: IM&P failover as the connector sees it: the `migration` and
//!   `status_page` checks, connector liveness, the migration curve (spec 61-71).
//! - [`secrets_check`]: the `no_secrets_in_logs` check: the run's log captured in memory,
//!   the trace and the run record scanned for every secret the run knows.
//! - [`runner`]: building the world and stepping it, bounded by `duration + drain`.
//! - [`checks`]: the oracle.
//! - [`record`]: run record assembly and output files.
//! - [`cli`]: the `hmsim` command line.

pub mod capacity_check;
pub mod checks;
pub mod cli;
pub mod faults;
pub mod group_chat_check;
pub mod hybrid;
pub mod imp;
pub mod interop;
pub mod migration_check;
pub mod observer;
pub mod presence_check;
pub mod prg;
pub mod record;
pub mod rng;
pub mod runner;
pub mod scenario;
pub mod secrets_check;
pub mod topology;

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
