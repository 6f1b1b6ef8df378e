//! The `interop_matrix` check: the 16-way interop matrix of spec 32-33, judged by the interop
//! oracle.

use crate::checks::{Check, Entry, Needs, Verdict, boxed};
use crate::history::History;
use crate::oracle::interop;
use crate::scenario::Scenario;
use serde::{Deserialize, Serialize};

/// The `interop_matrix` check: expected interop outcomes, overriding the table of spec 33 (for
/// negative tests).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InteropMatrix {
    /// `"W+->J-": deliver|fail` overrides.
    #[serde(default)]
    pub expect: std::collections::BTreeMap<String, String>,
    /// Also require J− → W+ messages to receivers who had not used Webex for over 72 h, none
    /// of them delivered to Webex (spec 33; runs longer than 72 h).
    #[serde(default)]
    pub inactive_receivers: bool,
}

/// How the registry reads it.
pub const ENTRY: Entry = Entry {
    name: "interop_matrix",
    bare: true,
    read: boxed::<InteropMatrix>,
};

impl Check for InteropMatrix {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn needs(&self) -> Needs {
        Needs::CONNECTOR
    }
    fn judge(&self, s: &Scenario, h: &History) -> Verdict {
        let _ = s;
        let m = interop::matrix(h, &h.bridge);
        let (status, detail) = interop::check(&m, &self.expect);
        if !self.inactive_receivers {
            return (status, detail);
        }
        match interop::inactive_receivers(&m) {
            Ok(n) => (
                status,
                format!(
                    "{detail}; J- -> W+: {n} messages to receivers not on Webex for 72 h, none delivered there"
                ),
            ),
            Err(e) if status == reports::Status::Pass => (reports::Status::Fail, e),
            Err(e) => (status, format!("{detail} | {e}")),
        }
    }
}
