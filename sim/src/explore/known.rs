//! Known failures: seeds of a fixed range that fail for a reason already written up as a
//! finding (`docs/explore-findings/`), so a CI sweep over that range fails only on what is new.
//!
//! The list is per seed *and* reason: a known seed that starts failing for another reason, or
//! any other seed failing at all, is new. A generic reason such as `no_message_loss: of sent:
//! lost` can therefore never hide a loss on another seed. Timeouts and crashes are never known.
//!
//! File format, one entry per line (`#` starts a comment):
//!
//! ```text
//! <seed> <finding file> <reason as printed by the sweep>
//! 11 liveness-11-connector-disable.yaml liveness: waiting for connector sessions never reopened
//! ```
//!
//! The reason matches when the failure's reason ([`Failure::reason`]) starts with it.

use super::summary::{FailingSeed, Failure, Verdict};
use std::path::Path;

/// Most entries a known-failures file may hold: the list is a short-lived quarantine for
/// findings being fixed, not a place to park a failing generator.
pub const KNOWN_ENTRIES_MAX: usize = 500;

/// One known failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The seed.
    pub seed: u64,
    /// The finding that explains it (a file in `docs/explore-findings/`).
    pub finding: String,
    /// The start of the failure's reason.
    pub reason: String,
}

/// The known failures of a sweep.
#[derive(Debug, Clone, Default)]
pub struct Known {
    entries: Vec<Entry>,
}

impl Known {
    /// Reads a known-failures file; errors name the file and line.
    pub fn read(path: &Path) -> Result<Known, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Known::parse(&text).map_err(|(line, e)| format!("{}:{line}: {e}", path.display()))
    }

    /// Parses the text of a known-failures file; an error carries its 1-based line.
    pub fn parse(text: &str) -> Result<Known, (usize, String)> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.splitn(3, char::is_whitespace);
            let (Some(seed), Some(finding), Some(reason)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err((i + 1, "expected `<seed> <finding file> <reason>`".into()));
            };
            let seed = seed
                .parse()
                .map_err(|_| (i + 1, format!("`{seed}` is not a seed (a whole number)")))?;
            entries.push(Entry {
                seed,
                finding: finding.to_string(),
                reason: reason.trim().to_string(),
            });
            if entries.len() > KNOWN_ENTRIES_MAX {
                return Err((i + 1, format!("more than {KNOWN_ENTRIES_MAX} entries")));
            }
        }
        Ok(Known { entries })
    }

    /// Whether the list has no entries (every failure is new).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The finding that explains failure `f` of `seed`, if it is known.
    fn explains(&self, seed: u64, f: &Failure) -> Option<&Entry> {
        let reason = f.reason();
        self.entries
            .iter()
            .find(|e| e.seed == seed && reason.starts_with(&e.reason))
    }

    /// The findings explaining every failure of a failing seed, or `None` when something about
    /// it is new (a failure no entry explains, a timeout, a crash).
    pub fn explain(&self, s: &FailingSeed) -> Option<Vec<&Entry>> {
        self.explain_parts(s.seed, s.verdict, &s.failures)
    }

    /// [`Known::explain`] from a seed's parts (a sweep's records before they are summarized).
    pub fn explain_parts(
        &self,
        seed: u64,
        verdict: Verdict,
        failures: &[Failure],
    ) -> Option<Vec<&Entry>> {
        if verdict != Verdict::Fail || failures.is_empty() {
            return None;
        }
        failures.iter().map(|f| self.explains(seed, f)).collect()
    }

    /// Known seeds in `seeds` that did not fail: their finding may be fixed.
    pub fn now_passing<'a>(&'a self, failing: &[FailingSeed], ran: &[u64]) -> Vec<&'a Entry> {
        self.entries
            .iter()
            .filter(|e| ran.contains(&e.seed) && !failing.iter().any(|f| f.seed == e.seed))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(seed: u64, check: &str, detail: &str) -> FailingSeed {
        FailingSeed {
            seed,
            verdict: Verdict::Fail,
            failures: vec![Failure {
                check: check.into(),
                detail: detail.into(),
            }],
            minimal: None,
            reproduce: String::new(),
        }
    }

    const LIST: &str = "# quarantine\n11 f.yaml no_message_loss: of sent: lost\n";

    #[test]
    fn a_known_seed_failing_for_its_reason_is_explained() {
        let k = Known::parse(LIST).unwrap();
        let s = failing(11, "no_message_loss", "3 of 40 sent: 1 lost (e.g. a.b.7)");
        assert_eq!(k.explain(&s).unwrap()[0].finding, "f.yaml");
    }

    #[test]
    fn the_same_reason_on_another_seed_is_new() {
        let k = Known::parse(LIST).unwrap();
        let s = failing(12, "no_message_loss", "3 of 40 sent: 1 lost");
        assert!(k.explain(&s).is_none());
    }

    #[test]
    fn a_known_seed_failing_for_another_reason_is_new() {
        let k = Known::parse(LIST).unwrap();
        let s = failing(11, "liveness", "waiting for devices");
        assert!(k.explain(&s).is_none());
        let mut t = failing(11, "no_message_loss", "1 of 4 sent: 1 lost");
        t.verdict = Verdict::Timeout;
        assert!(k.explain(&t).is_none(), "a timeout is never known");
    }

    #[test]
    fn bad_lines_are_located() {
        assert_eq!(Known::parse("\nx f r\n").unwrap_err().0, 2);
        assert_eq!(Known::parse("7 only-two\n").unwrap_err().0, 1);
    }

    #[test]
    fn known_seeds_that_passed_are_listed() {
        let k = Known::parse(LIST).unwrap();
        assert_eq!(k.now_passing(&[], &[10, 11]).len(), 1);
        assert!(k.now_passing(&[], &[10]).is_empty());
    }
}
