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
        interop::check(&interop::matrix(h, &h.bridge), &self.expect)
    }
}
