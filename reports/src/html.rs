//! `report.html`: one self-contained file (inline CSS, inline SVG plots, no scripts, no
//! external resources) that can be attached to a CI run and opened anywhere.

use crate::document::{
    Block, Document, NEVER_REACHED, NOT_APPLICABLE, Section, TableBlock, document,
};
use crate::error::ReportError;
use crate::plot::{Chart, Frame, svg};
use crate::record::RunRecord;
use std::fmt::Write as _;

/// Styles for the whole page; kept inline so the file has no dependencies.
const CSS: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
main{max-width:1320px;margin:0 auto;padding:1rem 2rem 3rem}
h1{margin:.5rem 0 1rem;padding:.6rem 1rem;border-radius:6px;color:#fff}
h1.pass{background:#1f7a3a}h1.fail{background:#b42318}
h2{border-bottom:1px solid #d0d5dd;padding-bottom:.2rem;margin-top:2rem}
h3{font-size:1rem;margin:1.2rem 0 .4rem}
table{border-collapse:collapse;margin:.4rem 0 1rem;background:#fff}
th,td{border:1px solid #d0d5dd;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#eef0f3}
td.pass{color:#1f7a3a;font-weight:600}td.fail,td.never{color:#b42318;font-weight:600}
td.na{color:#8a919c}
ul.failures{background:#fef3f2;border:1px solid #fda29b;border-radius:6px;padding:.6rem 1rem .6rem 2rem}
ul.failures li{margin:.2rem 0;font-weight:600;color:#7a271a}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}
dt{font-weight:600}dd{margin:0;font-family:ui-monospace,monospace;word-break:break-all}
pre{background:#1d2430;color:#f6f7f9;padding:.8rem 1rem;border-radius:6px;overflow-x:auto}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:.6rem;margin:.6rem 0}
figure{margin:0;background:#fff;border:1px solid #d0d5dd}
figure.wide{grid-column:1 / -1}
figure svg{display:block;width:100%;height:auto}
details{margin:.2rem 0 .6rem}summary{cursor:pointer}
";

/// Renders the run report as one self-contained HTML page: the same content as
/// [`markdown`](crate::markdown), plus the charts: latency, and per series group one panel per
/// node and unit (series named `<group>/<node>/<member>`), all on the run's time axis with the
/// fault windows shaded. All record text is HTML-escaped.
pub fn html(r: &RunRecord) -> Result<String, ReportError> {
    let doc = document(r);
    let mut out = head(&doc);
    for section in &doc.sections {
        push_section(&mut out, section, &doc.frame)?;
    }
    out.push_str("</main>\n</body>\n</html>\n");
    Ok(out)
}

fn head(doc: &Document) -> String {
    let title = escape(&doc.title);
    let verdict = if doc.passed { "pass" } else { "fail" };
    // The policy forbids scripts and any fetch: the page must work offline and record text
    // (check details, table cells) can never become active content.
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" \
         content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>hmsim: {title}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n<main>\n\
         <h1 class=\"{verdict}\">{title}</h1>\n"
    )
}

fn push_section(out: &mut String, section: &Section, frame: &Frame) -> Result<(), ReportError> {
    let id: String = section
        .heading
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let _ = writeln!(
        out,
        "<section id=\"{id}\">\n<h2>{}</h2>",
        escape(section.heading)
    );
    for block in &section.blocks {
        push_block(out, block, frame)?;
    }
    out.push_str("</section>\n");
    Ok(())
}

fn push_block(out: &mut String, block: &Block, frame: &Frame) -> Result<(), ReportError> {
    match block {
        Block::Text(text) => {
            let _ = writeln!(out, "<p>{}</p>", escape(text));
        }
        Block::Code(code) => {
            let _ = writeln!(out, "<pre><code>{}</code></pre>", escape(code));
        }
        Block::Heading(text) => {
            let _ = writeln!(out, "<h3>{}</h3>", escape(text));
        }
        Block::Failures(lines) => {
            out.push_str("<ul class=\"failures\">\n");
            for line in lines {
                let _ = writeln!(out, "<li>{}</li>", escape(line));
            }
            out.push_str("</ul>\n");
        }
        Block::Fields(fields) => push_fields(out, fields),
        Block::Table(table) => push_table(out, table),
        Block::Charts(charts) => push_charts(out, charts, frame)?,
        Block::Collapsed { summary, blocks } => {
            let _ = writeln!(out, "<details><summary>{}</summary>", escape(summary));
            for block in blocks {
                push_block(out, block, frame)?;
            }
            out.push_str("</details>\n");
        }
    }
    Ok(())
}

fn push_charts(out: &mut String, charts: &[Chart], frame: &Frame) -> Result<(), ReportError> {
    out.push_str("<div class=\"charts\">\n");
    for chart in charts {
        let class = if chart.wide() { " class=\"wide\"" } else { "" };
        let _ = writeln!(out, "<figure{class}>\n{}\n</figure>", svg(chart, frame)?);
    }
    out.push_str("</div>\n");
    Ok(())
}

fn push_fields(out: &mut String, fields: &[(&'static str, String)]) {
    out.push_str("<dl>\n");
    for (label, value) in fields {
        let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", escape(label), escape(value));
    }
    out.push_str("</dl>\n");
}

/// Tables with a caption are series summaries or record tables: point lists and long tables
/// fold away under their caption so the charts stay in view.
fn push_table(out: &mut String, table: &TableBlock) {
    let folded = table
        .caption
        .as_ref()
        .filter(|_| table.folded || table.rows.len() > 10);
    match (&table.caption, folded) {
        (_, Some(caption)) => {
            let _ = writeln!(out, "<details><summary>{}</summary>", escape(caption));
        }
        (Some(caption), None) => {
            let _ = writeln!(out, "<h3>{}</h3>", escape(caption));
        }
        (None, None) => {}
    }
    push_table_element(out, table);
    if folded.is_some() {
        out.push_str("</details>\n");
    }
}

fn push_table_element(out: &mut String, table: &TableBlock) {
    let width = table.width();
    out.push_str("<table>\n<thead><tr>");
    for i in 0..width {
        let header = table.columns.get(i).map_or("", String::as_str);
        let _ = write!(out, "<th>{}</th>", escape(header));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &table.rows {
        out.push_str("<tr>");
        for i in 0..width {
            push_cell(out, row.get(i).map_or("", String::as_str));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}

/// A cell, coloured when it states a verdict so failures stand out; coverage a scenario
/// cannot reach is grey, not red.
fn push_cell(out: &mut String, text: &str) {
    let class = match text {
        "PASS" => " class=\"pass\"",
        "FAIL" => " class=\"fail\"",
        NEVER_REACHED => " class=\"never\"",
        t if t.starts_with(NOT_APPLICABLE) => " class=\"na\"",
        _ => "",
    };
    let _ = write!(out, "<td{class}>{}</td>", escape(text));
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{CheckResult, Status};

    fn page() -> String {
        html(&RunRecord::example()).unwrap()
    }

    #[test]
    fn page_is_self_contained() {
        let page = page();
        // The only URLs allowed are the SVG namespace declarations, which are never fetched.
        let svg_namespace = "xmlns=\"http://www.w3.org/2000/svg\"";
        assert_eq!(
            page.matches("://").count(),
            page.matches(svg_namespace).count(),
            "{page}"
        );
        for forbidden in ["<script", "<link", "<img", "<iframe", "src=", "href="] {
            assert!(!page.contains(forbidden), "found {forbidden}");
        }
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.ends_with("</html>\n"));
    }

    #[test]
    fn page_embeds_one_chart_per_series_group_plus_latency() {
        let page = page();
        // latency bars, latency and messages (2) per bucket, sessions, queue_depth.
        assert_eq!(page.matches("<svg").count(), 6, "charts");
        assert!(page.contains("<h3>sessions</h3>"));
        assert!(page.contains("<h3>queue_depth</h3>"));
        assert!(
            page.contains("\nimp-a-2\n</text>"),
            "legend entry in the sessions chart"
        );
    }

    #[test]
    fn page_has_the_same_facts_as_the_markdown() {
        let page = page();
        assert!(page.contains("<h1 class=\"fail\">failover-node-crash: FAIL</h1>"));
        assert!(page.contains(
            "<pre><code>hmsim run scenarios/failover-node-crash.yaml --seed 42</code></pre>"
        ));
        assert!(page.contains(
            "<tr><td>session_liveness</td><td class=\"fail\">FAIL</td><td>3 users without"
        ));
        assert!(page.contains("<tr><td>latency p99 (ms)</td><td>120</td></tr>"));
        assert!(page.contains("<td>180.000</td><td>crash</td><td>imp-a-1</td>"));
        assert!(page.contains("<h3>Interop matrix (sender → recipient)</h3>"));
        assert!(page.contains("<td>kms.key_rotated</td><td class=\"never\">never reached</td>"));
        assert!(
            page.contains("<summary>sessions/imp-a-1 (sessions, 121 samples; changes)</summary>")
        );
    }

    #[test]
    fn record_text_is_escaped() {
        let mut r = RunRecord::example();
        r.scenario = "a<b".into();
        r.checks.push(CheckResult {
            name: "xss".into(),
            status: Status::Fail,
            detail: "<script>alert('x')</script> & \"q\"".into(),
        });
        let page = html(&r).unwrap();
        assert!(!page.contains("<script"), "script tag must be escaped");
        assert!(
            page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;")
        );
        assert!(page.contains("<title>hmsim: a&lt;b: FAIL</title>"));
    }

    #[test]
    fn failures_come_first_and_the_metrics_dump_is_collapsed_below_the_plots() {
        let page = page();
        let failures = page.find("<ul class=\"failures\">").unwrap();
        assert!(failures < page.find("<h2>Run</h2>").unwrap());
        assert!(page.contains("<li>session_liveness: 3 users without a session 120 s"));
        let metrics = page.find("<h2>Metrics</h2>").unwrap();
        assert!(page.find("<h2>Time series</h2>").unwrap() < metrics);
        assert!(
            page[metrics..].starts_with(
                "<h2>Metrics</h2>\n<details><summary>All 7 figures, grouped by host</summary>"
            ),
            "{}",
            &page[metrics..metrics + 200]
        );
    }

    #[test]
    fn unreachable_coverage_is_grey_and_missed_coverage_red() {
        let page = page();
        assert!(page.contains(
            "<td>axl.soap_fault</td><td class=\"na\">not applicable: no connector in this scenario</td>"
        ));
        assert!(page.contains("<td>kms.key_rotated</td><td class=\"never\">never reached</td>"));
    }

    #[test]
    fn charts_share_the_page_width_and_small_multiples_pair_up() {
        let mut r = RunRecord::example();
        for node in ["exp-a-1", "exp-a-2"] {
            for member in ["imp-a-1", "imp-a-2"] {
                r.series.push(crate::record::Series {
                    name: format!("connector_sessions/{node}/{member}"),
                    unit: "connector_sessions".into(),
                    points: vec![(0.0, 1.0), (300.0, 2.0), (600.0, 1.0)],
                    ..Default::default()
                });
            }
        }
        let page = html(&r).unwrap();
        // One panel per node, each with its two IM&P nodes in the legend.
        assert!(page.contains("\nconnector_sessions exp-a-1\n</text>"));
        assert!(page.contains("\nconnector_sessions exp-a-2\n</text>"));
        assert_eq!(
            page.matches("<figure>\n<svg width=\"610\"").count(),
            2 + 1 + 2,
            "two panels, the latency bars and the two message panels"
        );
        assert!(page.contains("<figure class=\"wide\">\n<svg width=\"1240\""));
        assert!(CSS.contains("figure svg{display:block;width:100%;height:auto}"));
    }

    #[test]
    fn every_time_series_chart_shades_and_labels_every_fault() {
        let page = page();
        let charts: Vec<&str> = page.split("<svg").skip(1).collect();
        let series_charts: Vec<&&str> = charts
            .iter()
            .filter(|c| c.contains("simulated time (s)"))
            .collect();
        // Latency and the two message panels per bucket, sessions, queue_depth.
        assert_eq!(series_charts.len(), 5);
        for chart in series_charts {
            for label in [
                "partition imp-a-1 | connector-1",
                "crash imp-a-1",
                "restart imp-a-1",
            ] {
                assert!(chart.contains(&format!("\n{label}\n</text>")), "{label}");
            }
            assert_eq!(
                chart.matches("opacity=\"0.13\" fill=\"#D62728\"").count(),
                1
            );
        }
    }

    #[test]
    fn rendering_is_deterministic() {
        assert_eq!(page(), page());
    }

    #[test]
    fn a_record_without_samples_or_series_renders() {
        let mut r = RunRecord::example();
        r.series.clear();
        r.metrics.latency_ms = Default::default();
        r.delivery_timeline = None;
        let page = html(&r).unwrap();
        assert_eq!(page.matches("<svg").count(), 0);
        assert!(!page.contains("Time series"));
    }
}
