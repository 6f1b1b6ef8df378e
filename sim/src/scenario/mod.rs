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

/// One problem in a scenario file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// File as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// Field path such as `topology.imp_clusters[0].nodes` (empty for the document).
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// What would be right: the valid keys or values, or a suggestion.
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(document)"
        } else {
            &self.path
        };
        write!(
            f,
            "{}:{}:{}: error at `{}`: {}",
            self.file, self.line, self.col, path, self.message
        )?;
        if let Some(h) = &self.help {
            write!(f, "\n  help: {h}")?;
        }
        Ok(())
    }
}

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
            line: 1,
            col: 1,
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
                line: pos.line,
                col: pos.col,
                path: p.path,
                message: p.message,
                help: p.help,
            }
        })
        .collect();
    diagnostics.sort_by_key(|d| (d.line, d.col));
    Err(ScenarioError { diagnostics })
}

fn deserialize(file: &str, source: &str) -> Result<Scenario, ScenarioError> {
    let de = serde_yaml::Deserializer::from_str(source);
    serde_path_to_error::deserialize::<_, Scenario>(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = e.into_inner();
        let (line, col) = inner
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        let raw = inner.to_string();
        // The YAML crate prefixes its own (parent's) path; ours is printed in front already.
        let raw = match raw.split_once(": ") {
            Some((prefix, rest)) if !prefix.is_empty() && path.starts_with(prefix) => rest,
            _ => &raw,
        };
        let (message, help) = explain_serde_message(raw);
        // Custom errors are located at the enclosing mapping; the field's own key is later in
        // the text and more useful. Syntax errors are located past the last good key.
        let (line, col) = match PathIndex::build(source).exact(&path) {
            Some(p) if (p.line, p.col) > (line, col) => (p.line, p.col),
            _ => (line, col),
        };
        ScenarioError {
            diagnostics: vec![Diagnostic {
                file: file.to_string(),
                line,
                col,
                path,
                message,
                help,
            }],
        }
    })
}

/// Serde's message split into the problem and a help line with "did you mean", and the
/// closest candidate to a typo: the same helpers locate the connector's config errors.
pub use connector::io::located::{did_you_mean, explain_serde_message};
