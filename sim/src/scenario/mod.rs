//! Scenarios: schema, value types, loading with located errors, and validation.
//!
//! - [`schema`]: the YAML shape (serde types, defaults).
//! - [`units`]: durations, percentages, rates.
//! - [`locate`]: path → line/column index of a YAML source.
//!
//! The rules a valid scenario follows beyond its shape are the plan's (`plan::validate`): they
//! need the plan's pure functions (host names, PRG pairs, connector settings). [`load`] and
//! [`parse`] take them as a function; the crate root passes them in (`sim::load`).

pub mod locate;
pub mod schema;
pub mod units;

pub use schema::*;
pub use units::{Dur, Pct, Rate, imp_version};

use locate::PathIndex;
use std::fmt;
use std::path::Path;

/// One problem in a scenario file, located (file:line:column, field path, help): the same
/// type and format as the connector's config errors.
pub use connector::io::located::Located as Diagnostic;

/// A scenario that could not be loaded: every problem found, in file order.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ScenarioError {
    /// The problems.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// The rules a scenario is validated with: every problem found, with its field path.
pub type Rules<'a> = &'a dyn Fn(&Scenario) -> Vec<Problem>;

/// A rule violation, not yet located in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Field path.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// Valid values or a suggestion.
    pub help: Option<String>,
}

/// Reads and validates a scenario file.
pub fn load(path: &Path, rules: Rules<'_>) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        diagnostics: vec![Diagnostic {
            file: file.clone(),
            pos: locate::Pos { line: 1, col: 1 },
            path: String::new(),
            message: format!("cannot read the file: {e}"),
            help: None,
        }],
    })?;
    parse(&file, &source, rules)
}

/// Parses and validates scenario text; `file` is used in diagnostics.
pub fn parse(file: &str, source: &str, rules: Rules<'_>) -> Result<Scenario, ScenarioError> {
    let scenario = deserialize(file, source)?;
    let index = PathIndex::build(source);
    let problems = rules(&scenario);
    if problems.is_empty() {
        return Ok(scenario);
    }
    let mut diagnostics: Vec<Diagnostic> = problems
        .into_iter()
        .map(|p| {
            let pos = index.find(&p.path);
            Diagnostic {
                file: file.to_string(),
                pos,
                path: p.path,
                message: p.message,
                help: p.help,
            }
        })
        .collect();
    diagnostics.sort_by_key(|d| d.pos);
    Err(ScenarioError { diagnostics })
}

fn deserialize(file: &str, source: &str) -> Result<Scenario, ScenarioError> {
    connector::io::located::deserialize(file, source).map_err(|d| ScenarioError {
        diagnostics: vec![d],
    })
}

/// Serde's message split into the problem and a help line with "did you mean", and the
/// closest candidate to a typo: the same helpers locate the connector's config errors.
pub use connector::io::located::{did_you_mean, explain_serde_message};
