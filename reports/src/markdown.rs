//! `report.md`: the run report as GitHub-flavoured Markdown (also fit for a CI job summary).

use crate::document::{Block, Document, TableBlock, document};
use crate::record::RunRecord;
use std::fmt::Write as _;

/// Renders the run report as Markdown: verdict, on a failure why (one line per failed check),
/// seed, trace digest, reproduce command, checks, delivery and latency, faults, a downsampled
/// summary of every series, the record's tables, every metric grouped by host, and the
/// "sometimes" coverage. Cannot fail: every field has a textual form.
pub fn markdown(r: &RunRecord) -> String {
    render(&document(r))
}

fn render(doc: &Document) -> String {
    let mut out = format!("# {}\n", escape_inline(&doc.title));
    for section in &doc.sections {
        let _ = write!(out, "\n## {}\n", section.heading);
        for block in &section.blocks {
            push_block(&mut out, block);
        }
    }
    out
}

fn push_block(out: &mut String, block: &Block) {
    match block {
        Block::Text(text) => {
            let _ = write!(out, "\n{}\n", escape_inline(text));
        }
        Block::Code(code) => push_code(out, code),
        Block::Fields(fields) => {
            out.push('\n');
            for (label, value) in fields {
                let _ = writeln!(out, "- **{label}:** {}", escape_inline(value));
            }
        }
        Block::Failures(lines) => {
            out.push('\n');
            for line in lines {
                let _ = writeln!(out, "- **{}**", escape_inline(line));
            }
        }
        Block::Heading(text) => {
            let _ = write!(out, "\n### {}\n", escape_inline(text));
        }
        Block::Table(table) => push_table_block(out, table),
        Block::Collapsed { summary, blocks } => {
            let _ = write!(out, "\n### {}\n", escape_inline(summary));
            blocks.iter().for_each(|b| push_block(out, b));
        }
        // Markdown has no charts: the numbers are in the tables next to them.
        Block::Charts(_) => {}
    }
}

fn push_table_block(out: &mut String, table: &TableBlock) {
    if let Some(caption) = &table.caption {
        let _ = write!(out, "\n### {}\n", escape_inline(caption));
    }
    push_table(out, &table.columns, &table.rows);
}

/// Appends a Markdown table, escaping every cell and padding short rows so that the table
/// stays well formed whatever the record holds.
pub(crate) fn push_table(out: &mut String, columns: &[String], rows: &[Vec<String>]) {
    let escape_all = |cells: &[String]| cells.iter().map(|c| escape_inline(c)).collect();
    let rows: Vec<Vec<String>> = rows.iter().map(|row| escape_all(row)).collect();
    push_escaped_table(out, &escape_all(columns), &rows);
}

/// Appends a Markdown table of cells that are already Markdown (escaped text, code spans).
pub(crate) fn push_escaped_table(out: &mut String, columns: &[String], rows: &[Vec<String>]) {
    let width = rows
        .iter()
        .map(Vec::len)
        .chain([columns.len(), 1])
        .max()
        .unwrap_or(1);
    out.push('\n');
    push_row(out, columns, width);
    let _ = writeln!(out, "|{}", "---|".repeat(width));
    for row in rows {
        push_row(out, row, width);
    }
}

fn push_row(out: &mut String, cells: &[String], width: usize) {
    out.push('|');
    for i in 0..width {
        let _ = write!(out, " {} |", cells.get(i).map_or("", String::as_str));
    }
    out.push('\n');
}

/// Appends a fenced code block whose fence is longer than any backtick run inside, so a
/// command containing backticks cannot close it early.
pub(crate) fn push_code(out: &mut String, code: &str) {
    let longest_run = code.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest_run.max(2) + 1);
    let _ = write!(out, "\n{fence}sh\n{code}\n{fence}\n");
}

/// Inline code for a table cell (a command to copy): the delimiter is longer than any backtick
/// run inside, and only `|` and newlines are escaped, since entities are not decoded in code.
pub(crate) fn code_span(text: &str) -> String {
    let longest_run = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let ticks = "`".repeat(longest_run + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    let body = text.replace('|', "\\|").replace(['\r', '\n'], " ");
    format!("{ticks}{pad}{body}{pad}{ticks}")
}

/// Makes text safe inside a table cell or list item: `|` would split a cell, `<` could start
/// an HTML tag that renderers hide, and a newline would end the row. `&` is left alone so that
/// the raw file stays readable.
pub(crate) fn escape_inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '\n' => out.push_str("<br>"),
            '\r' => {}
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{CheckResult, Status};

    #[test]
    fn title_names_scenario_and_verdict() {
        let md = markdown(&RunRecord::example());
        assert!(md.starts_with("# failover-node-crash: FAIL\n"), "{md}");
    }

    #[test]
    fn checks_table_has_one_row_per_check() {
        let md = markdown(&RunRecord::example());
        assert!(
            md.contains("| check | status | detail |\n|---|---|---|\n"),
            "{md}"
        );
        assert!(md.contains("| no_message_loss | PASS | 12840 deliverable messages, 0 lost |"));
        assert!(md.contains("| session_liveness | FAIL | 3 users without a session 120 s"));
        assert!(md.contains("3 of 4 checks passed."));
    }

    #[test]
    fn reproduce_command_seed_and_digest_are_shown() {
        let r = RunRecord::example();
        let md = markdown(&r);
        let code = "```sh\nhmsim run scenarios/failover-node-crash.yaml --seed 42\n```";
        assert!(md.contains(code), "{md}");
        assert!(md.contains("- **Seed:** 42\n"));
        assert!(md.contains(&format!("- **Trace digest:** {}\n", r.trace_digest)));
        assert!(md.contains("- **Git commit:** 3b1f0c9e2d7a\n"));
    }

    #[test]
    fn metrics_include_latency_performance_and_extra_entries() {
        let md = markdown(&RunRecord::example());
        for row in [
            "| messages sent | 12840 |",
            "| messages lost | 0 |",
            "| latency p99 (ms) | 120 |",
            "| latency p99.9 (ms) | 480 |",
            "| latency max (ms) | 2150 |",
            "| simulated s per wall s | 240.0 |",
            "| peak RSS (MiB) | 96.0 |",
            "| steps | 60000 |",
            "| migration.users_moved | 2500 |",
        ] {
            assert!(md.contains(row), "missing {row:?} in\n{md}");
        }
    }

    #[test]
    fn faults_tables_series_and_coverage_are_rendered() {
        let md = markdown(&RunRecord::example());
        assert!(md.contains("| 180.000 | crash | imp-a-1 |"), "{md}");
        assert!(md.contains("| 120.000 | partition | imp-a-1 \\| connector-1 |"));
        assert!(md.contains("### Interop matrix (sender → recipient)"));
        assert!(md.contains("| Webex App | delivered | delivered \\| carbon |"));
        assert!(md.contains("### sessions/imp-a-1 (sessions, 121 samples; changes)"));
        assert!(md.contains("| 600 | 2500 |"), "last point kept");
        assert!(md.contains("| kms.key_rotated | never reached |"));
        assert!(md.contains("2 of 3 \"sometimes\" assertions were reached"));
    }

    #[test]
    fn step_series_list_their_changes_and_gaps() {
        let md = markdown(&RunRecord::example());
        let section = md.split("### sessions/imp-a-2").nth(1).unwrap();
        assert!(
            section.starts_with(" (sessions, 121 samples; changes)\n"),
            "{section}"
        );
        let table = section.split("\n\n").nth(1).unwrap();
        let rows: Vec<&str> = table.lines().skip(2).collect();
        assert_eq!(
            rows,
            [
                "| 0 | 2500 |",
                "| 180 | 5000 |",
                "| 300 | 2500 |",
                "| 600 | 2500 |"
            ]
        );
        let mut r = RunRecord::example();
        r.series[0]
            .points
            .retain(|p| !(200.0..260.0).contains(&p.0));
        let md = markdown(&r);
        let section = md.split("### sessions/imp-a-1").nth(1).unwrap();
        assert!(
            section.contains("| 195 | 0 |\n| … | no samples |\n| 260 | 0 |\n"),
            "{section}"
        );
    }

    #[test]
    fn series_with_many_changes_are_downsampled_to_twenty_rows() {
        let mut r = RunRecord::example();
        r.series[2].kind = Some(crate::record::SeriesKind::Line);
        let md = markdown(&r);
        let section = md.split("### queue_depth/connector-1").nth(1).unwrap();
        assert!(
            section.starts_with(" (messages, 121 samples; samples)\n"),
            "{section}"
        );
        let table = section.split("\n\n").nth(1).unwrap();
        // Header and separator, then the points.
        assert_eq!(table.lines().count(), 2 + 20, "{table}");
    }

    #[test]
    fn cells_cannot_break_the_table_or_inject_html() {
        let mut r = RunRecord::example();
        r.checks.push(CheckResult {
            name: "odd".into(),
            status: Status::Fail,
            detail: "a|b\n<script>x</script>".into(),
        });
        let md = markdown(&r);
        assert!(
            md.contains("| odd | FAIL | a\\|b<br>&lt;script>x&lt;/script> |"),
            "{md}"
        );
    }

    #[test]
    fn code_spans_survive_backticks_and_pipes() {
        assert_eq!(code_span("hmsim run a.yaml"), "`hmsim run a.yaml`");
        assert_eq!(code_span("a | b"), "`a \\| b`");
        assert_eq!(code_span("`x`"), "`` `x` ``");
    }

    #[test]
    fn backticks_in_the_command_get_a_longer_fence() {
        let mut out = String::new();
        push_code(&mut out, "echo ```");
        assert_eq!(out, "\n````sh\necho ```\n````\n");
    }

    #[test]
    fn a_failure_says_why_first_one_line_per_failed_check() {
        let md = markdown(&RunRecord::example());
        let why = md.find("## Why it failed").unwrap();
        assert!(why < md.find("## Run").unwrap(), "{md}");
        assert!(md.contains(
            "## Why it failed\n\n- **session_liveness: 3 users without a session 120 s after"
        ));
        let mut passed = RunRecord::example();
        passed.outcome.passed = true;
        assert!(!markdown(&passed).contains("Why it failed"));
    }

    #[test]
    fn metrics_dump_comes_after_the_series_grouped_by_host() {
        let mut r = RunRecord::example();
        for host in ["exp-a-1", "exp-a-2"] {
            r.metrics
                .extra
                .insert(format!("{host}/sessions_opened"), 40.0);
            r.metrics.extra.insert(format!("{host}/keys_fetched"), 3.0);
        }
        r.metrics.extra.insert("imp-a-1/logins".into(), 7.0);
        let md = markdown(&r);
        let metrics = md.find("## Metrics").unwrap();
        assert!(md.find("## Time series").unwrap() < metrics, "{md}");
        let dump = &md[metrics..];
        assert!(
            dump.contains("### exp-a-1, exp-a-2\n\n| figure | exp-a-1 | exp-a-2 |"),
            "{dump}"
        );
        assert!(dump.contains("| sessions_opened | 40 | 40 |"), "{dump}");
        assert!(dump.contains("### imp-a-1\n\n| figure | imp-a-1 |\n|---|---|\n| logins | 7 |"));
        assert!(dump.contains("| migration.users_moved | 2500 |"), "{dump}");
    }

    #[test]
    fn delivery_per_bucket_and_clamped_latency_are_reported() {
        let mut r = RunRecord::example();
        r.metrics.latency_ms.clamped = 2;
        let md = markdown(&r);
        assert!(
            md.contains("### Delivery per 60 s bucket (by send time)"),
            "{md}"
        );
        assert!(
            md.contains("| 180 | 1284 | 1278 | 0 | 6 | 400 | 2000 | 2150 |"),
            "{md}"
        );
        assert!(md.contains(
            "2 latency samples exceeded the histogram's range and were clamped: the true maximum \
             is at least 2150 ms."
        ));
        assert!(
            md.contains("| latency p99 (ms) | 120 |"),
            "the percentile table stays"
        );
    }

    #[test]
    fn unreachable_coverage_is_not_applicable_not_missed() {
        let md = markdown(&RunRecord::example());
        assert!(md.contains("| axl.soap_fault | not applicable: no connector in this scenario |"));
        assert!(md.contains(
            "2 of 3 \"sometimes\" assertions were reached at least once. 1 do not apply"
        ));
    }

    #[test]
    fn state_values_are_named_in_series_tables() {
        let mut r = RunRecord::example();
        r.series.push(crate::record::Series {
            name: "prg_state/imp-a-1".into(),
            unit: "prg_state".into(),
            points: vec![(0.0, 1.0), (10.0, 5.0)],
            ..Default::default()
        });
        let md = markdown(&r);
        assert!(
            md.contains("### prg_state/imp-a-1 (PRG state, 2 samples; changes)"),
            "{md}"
        );
        assert!(md.contains("| 10 | 5 (Running in Backup Mode) |"), "{md}");
    }

    #[test]
    fn a_run_that_did_not_finish_says_why() {
        let mut r = RunRecord::example();
        r.outcome.failure = Some("waiting for 3 sessions".into());
        assert!(markdown(&r).contains("The run did not finish: waiting for 3 sessions"));
    }
}
