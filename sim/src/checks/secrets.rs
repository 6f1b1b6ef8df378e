//! The `no_secrets_in_logs` check (issue 5): no secret the run knows
//! appears in what it logs, in its trace (`trace.jsonl`) or in its run record (`run.json`, from
//! which the reports are rendered).
//!
//! ## What is scanned
//! - **The run's log**: when a scenario lists the check, [`capture`] runs it under a tracing
//!   subscriber that keeps every event of the crates `connector`, `fakes` and `sim` at DEBUG
//!   level in memory (scoped to the run's thread, so parallel runs do not mix), and still hands
//!   events to whatever subscriber was active before (`HMSIM_LOG` keeps working). Runs without
//!   the check pay nothing.
//! - **The trace**: the lines `hmsim run --trace` writes ([`crate::history::trace::trace_text`]).
//! - **The run record**: [`check_record`] scans the finished record as `run.json` holds it.
//!
//! ## Which secrets ([`collect`])
//! - by value: the AXL passwords of the scenario, the XEP-0114 component secret, the users'
//!   passwords, the connectors' bearer tokens (from Control Hub), and every space key the KMS
//!   issued, in each encoding the project uses ([`key_encodings`]: base64url as on the wire,
//!   standard base64, hex, and Rust's `[u8]` debug form);
//! - by shape ([`TOKEN_SHAPES`]): any registration token (`reg-`), user bearer token (`usr-`)
//!   or connector bearer token (`con-`) followed by 32 hex digits, whether or not the run
//!   could name it.
//!
//! A failure names the secret's kind and where it appeared (source and line), with the line
//! shown redacted: the secret itself is never printed.

use crate::history::{LOG_BYTES_MAX, Secret, key_encodings};

use crate::checks::{Check, Entry, Needs, Verdict, boxed};
use crate::history::History;
use crate::scenario::Scenario;
use reports::Status;
use std::fmt;

/// Bearer and registration tokens by shape: prefix, kind. The cloud draws each as the prefix
/// and 32 lowercase hex digits (`fakes::cloud::control_hub::draw_token`).
pub const TOKEN_SHAPES: [(&str, &str); 3] = [
    ("reg-", "registration token"),
    ("usr-", "user bearer token"),
    ("con-", "connector bearer token"),
];
/// Hex digits after a token's prefix.
pub const TOKEN_HEX_DIGITS: usize = 32;
/// Secrets shorter than this are not scanned for (they would match ordinary text); the check
/// says how many it skipped.
pub const SECRET_CHARS_MIN: usize = 6;
/// Findings quoted in a failure.
const FINDINGS_QUOTED_MAX: usize = 5;
/// Characters of a redacted line quoted in a finding.
const EXCERPT_CHARS_MAX: usize = 160;

/// Where a secret appeared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The secret's kind.
    pub kind: String,
    /// The source: "the run's log", "trace.jsonl", "run.json".
    pub source: String,
    /// 1-based line in the source.
    pub line: usize,
    /// The line with every secret replaced by `<kind>`, shortened.
    pub excerpt: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} in {} line {}: `{}`",
            self.kind, self.source, self.line, self.excerpt
        )
    }
}

/// Whether scenario `s` lists the check (the run then captures its log and secrets).
pub fn listed(s: &Scenario) -> bool {
    s.checks.iter().any(|c| c.name == ENTRY.name)
}

/// Byte offsets where each line of `text` starts.
fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// Token-shaped spans in `text`: (start, end, kind).
fn token_spans(text: &str) -> Vec<(usize, usize, &'static str)> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    for (prefix, kind) in TOKEN_SHAPES {
        for (at, _) in text.match_indices(prefix) {
            let word_start = at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
            let hex = &bytes[at + prefix.len()..];
            let digits = hex
                .iter()
                .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
                .count();
            if word_start && digits == TOKEN_HEX_DIGITS {
                spans.push((at, at + prefix.len() + digits, kind));
            }
        }
    }
    spans
}

/// Every place in `text` (from `source`) where one of `secrets` or a token-shaped string
/// appears, in line order.
pub fn scan(secrets: &[Secret], source: &str, text: &str) -> Vec<Finding> {
    let starts = line_starts(text);
    let line_of = |at: usize| starts.partition_point(|&s| s <= at);
    let mut hits: Vec<(usize, String)> = Vec::new();
    for s in secrets
        .iter()
        .filter(|s| s.value().chars().count() >= SECRET_CHARS_MIN)
    {
        for (at, _) in text.match_indices(s.value()) {
            hits.push((line_of(at), s.kind.clone()));
        }
    }
    for (at, _, kind) in token_spans(text) {
        hits.push((line_of(at), kind.to_string()));
    }
    hits.sort();
    hits.dedup();
    hits.into_iter()
        .map(|(line, kind)| {
            let start = starts[line - 1];
            let end = starts.get(line).map_or(text.len(), |&e| e - 1);
            Finding {
                kind,
                source: source.to_string(),
                line,
                excerpt: redact(secrets, &text[start..end]),
            }
        })
        .collect()
}

/// `line` with every secret and token-shaped string replaced by `<kind>`, shortened.
fn redact(secrets: &[Secret], line: &str) -> String {
    let mut out = line.to_string();
    // Longest first: a padded base64 key contains its unpadded base64url form.
    let mut by_length: Vec<&Secret> = secrets.iter().filter(|s| !s.value().is_empty()).collect();
    by_length.sort_by_key(|s| std::cmp::Reverse(s.value().len()));
    for s in by_length {
        out = out.replace(s.value(), &format!("<{}>", s.kind));
    }
    for (start, end, kind) in token_spans(&out.clone()).into_iter().rev() {
        out.replace_range(start..end, &format!("<{kind}>"));
    }
    let short: String = out.chars().take(EXCERPT_CHARS_MAX).collect();
    if short.len() < out.len() {
        format!("{short}…")
    } else {
        short
    }
}

/// The check over the run's log and trace (the record is scanned by [`check_record`]).
pub fn check(out: &History) -> (Status, String) {
    let Some(ev) = &out.secrets else {
        return (
            Status::Fail,
            "the run gathered no evidence (no log was captured)".into(),
        );
    };
    let trace = crate::history::trace::trace_text(out);
    let mut findings = scan(&ev.secrets, "the run's log", &ev.log);
    findings.extend(scan(&ev.secrets, "trace.jsonl", &trace));
    if !findings.is_empty() {
        return (Status::Fail, failure(&findings));
    }
    let short = ev
        .secrets
        .iter()
        .filter(|s| s.value().chars().count() < SECRET_CHARS_MIN)
        .count();
    let mut detail = format!(
        "{} secrets ({}) and token shapes ({}) absent from the log ({} lines) and the trace ({} lines)",
        ev.secrets.len(),
        kinds(&ev.secrets),
        TOKEN_SHAPES.map(|(p, _)| format!("{p}…")).join(", "),
        ev.log.lines().count(),
        trace.lines().count()
    );
    if short > 0 {
        detail.push_str(&format!(
            "; {short} secrets shorter than {SECRET_CHARS_MIN} characters not scanned"
        ));
    }
    if ev.log_cut {
        detail.push_str(&format!(
            "; the log was cut at {LOG_BYTES_MAX} bytes (the rest was not scanned)"
        ));
    }
    (Status::Pass, detail)
}

/// Scans the finished record as `run.json` holds it; a secret there fails the check (which
/// must be listed) and the run.
pub fn check_record(out: &History, r: &mut reports::RunRecord) {
    let Some(ev) = &out.secrets else { return };
    let Ok(json) = serde_json::to_string_pretty(&*r) else {
        return;
    };
    let findings = scan(&ev.secrets, "run.json", &json);
    if findings.is_empty() {
        return;
    }
    let name = ENTRY.name;
    if let Some(c) = r.checks.iter_mut().find(|c| c.name == name) {
        c.status = Status::Fail;
        c.detail = failure(&findings);
        r.outcome.passed = false;
    }
}

/// Counts of secrets by family, e.g. "1 AXL passwords, 40 user passwords, 2 space keys in 4
/// encodings".
fn kinds(secrets: &[Secret]) -> String {
    const FAMILIES: [(&str, &str); 5] = [
        ("AXL password", "AXL passwords"),
        ("component secret", "component secrets"),
        ("password of", "user passwords"),
        ("connector bearer token", "connector bearer tokens"),
        ("space key", "space keys"),
    ];
    let mut counts = [0usize; FAMILIES.len()];
    for s in secrets {
        if let Some(i) = FAMILIES.iter().position(|(p, _)| s.kind.starts_with(p)) {
            counts[i] += 1;
        }
    }
    let encodings = key_encodings(&[]).len();
    FAMILIES
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|((prefix, plural), n)| match *prefix {
            "space key" => format!("{} {plural} in {encodings} encodings", n / encodings),
            _ => format!("{n} {plural}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn failure(findings: &[Finding]) -> String {
    let quoted: Vec<String> = findings
        .iter()
        .take(FINDINGS_QUOTED_MAX)
        .map(ToString::to_string)
        .collect();
    format!(
        "{} secret occurrence(s) found, e.g. {}",
        findings.len(),
        quoted.join("; ")
    )
}

/// The `no_secrets_in_logs` check (no parameters).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSecretsInLogs {}

/// How the registry reads it.
pub const ENTRY: Entry = Entry {
    name: "no_secrets_in_logs",
    bare: true,
    read: boxed::<NoSecretsInLogs>,
};

impl Check for NoSecretsInLogs {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn needs(&self) -> Needs {
        Needs {
            log: true,
            ..Needs::CONNECTOR
        }
    }
    fn judge(&self, _s: &Scenario, h: &History) -> Verdict {
        check(h)
    }
    fn amend(&self, h: &History, r: &mut reports::RunRecord) {
        check_record(h, r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Evidence;
    use crate::run::collect::capture;

    fn secrets() -> Vec<Secret> {
        let mut s = vec![
            Secret::new("AXL password (cluster a)", "axl-Secret-0"),
            Secret::new("component secret", "hmsim-component-secret"),
            Secret::new("password of u1", "pw-u1"),
        ];
        for (enc, text) in key_encodings(&[0xab; 32]) {
            s.push(Secret::new(
                format!("space key kms://kms/keys/k ({enc})"),
                text,
            ));
        }
        s
    }

    #[test]
    fn a_planted_secret_fails_the_check_without_printing_it() {
        let (_, captured) = tracing::subscriber::with_default(
            tracing_subscriber::registry(),
            || {
                let s = crate::parse(
                    "t.yaml",
                    "name: t\nseed: 1\nduration: 1m\ntopology:\n  imp_clusters: [{ name: a }]\n  \
                     expressway_clusters: [{ name: a, size: small, imp_clusters: [a] }]\n\
                     users: { count: 2 }\nchecks: [no_secrets_in_logs]\n",
                )
                .expect("valid test scenario");
                capture(listed(&s), || {
                    tracing::debug!(target: "connector::io::driver", "link up");
                    tracing::debug!(target: "fakes::imp::axl", user = "hmsim-axl", password = "axl-Secret-0", "login");
                    tracing::debug!(target: "other_crate", "axl-Secret-0 outside the captured crates");
                })
            },
        );
        let (log, cut) = captured.expect("the check is listed: the log is captured");
        assert!(!cut);
        assert!(log.contains("link up"), "{log}");
        assert!(!log.contains("outside the captured crates"), "{log}");
        let mut out = History::from_history(1, Default::default(), Vec::new());
        out.secrets = Some(Evidence {
            secrets: secrets(),
            log,
            log_cut: false,
        });
        let (status, detail) = check(&out);
        assert_eq!(status, Status::Fail, "{detail}");
        assert!(
            detail.contains("AXL password (cluster a) in the run's log line 2"),
            "{detail}"
        );
        assert!(detail.contains("<AXL password (cluster a)>"), "{detail}");
        assert!(!detail.contains("axl-Secret-0"), "{detail}");
        // Without the planted line, the same log passes.
        let clean = out
            .secrets
            .as_ref()
            .unwrap()
            .log
            .lines()
            .next()
            .unwrap()
            .to_string();
        out.secrets.as_mut().unwrap().log = clean;
        let (status, detail) = check(&out);
        assert_eq!(status, Status::Pass, "{detail}");
    }

    #[test]
    fn every_key_encoding_and_token_shape_is_found() {
        let s = secrets();
        for (enc, text) in key_encodings(&[0xab; 32]) {
            // (Standard base64 also holds the base64url form when no `+` or `/` occurs.)
            let found = scan(&s, "trace.jsonl", &format!("{{\"k\":\"{text}\"}}"));
            let kind = format!("space key kms://kms/keys/k ({enc})");
            assert!(found.iter().any(|f| f.kind == kind), "{enc}: {found:?}");
            let redacted = format!("{{\"k\":\"<{kind}>\"}}");
            assert!(
                found.iter().all(|f| f.excerpt == redacted),
                "{enc}: {found:?}"
            );
        }
        let text = "a\nauth Bearer usr-0123456789abcdef0123456789abcdef ok\n\
                    reg-0123456789abcdef0123456789abcdef\n\
                    con-0123456789abcdef (too short) icon-0123456789abcdef0123456789abcdef\n";
        let found = scan(&s, "run.json", text);
        let got: Vec<(usize, &str)> = found.iter().map(|f| (f.line, f.kind.as_str())).collect();
        assert_eq!(got, [(2, "user bearer token"), (3, "registration token")]);
        assert_eq!(found[0].excerpt, "auth Bearer <user bearer token> ok");
    }

    #[test]
    fn short_secrets_are_skipped_and_said() {
        let s = vec![Secret::new("password of x", "pw")];
        assert!(scan(&s, "log", "pw pw pw").is_empty());
        let mut out = History::from_history(1, Default::default(), Vec::new());
        out.secrets = Some(Evidence {
            secrets: s,
            log: "pw".into(),
            log_cut: true,
        });
        let (status, detail) = check(&out);
        assert_eq!(status, Status::Pass);
        assert!(detail.contains("1 secrets shorter than 6"), "{detail}");
        assert!(detail.contains("cut"), "{detail}");
        let shown = format!("{:?}", out.secrets);
        assert!(!shown.contains("\"pw\""), "{shown}");
    }
}
