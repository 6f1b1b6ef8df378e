//! Every chart of a report as a file of its own, for tools that cannot show the HTML page
//! (chat tools and issue trackers that do not render inline SVG take PNG).

use crate::document::{Block, document};
use crate::error::ReportError;
use crate::plot::{Chart, png, svg};
use crate::record::RunRecord;
use serde::{Deserialize, Serialize};

/// The image format of [`plot_files`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlotFormat {
    /// Scalable vector graphics, the charts of `report.html`.
    Svg,
    /// 8-bit RGB PNG at the size the HTML page shows the chart.
    Png,
}

/// One chart as a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotFile {
    /// File name: `NN-<chart title as a slug>.svg|png`, numbered in report order.
    pub name: String,
    /// The file content.
    pub bytes: Vec<u8>,
}

/// Renders every chart of the report for `r` (the same charts, in the same order, as
/// [`html`](crate::html)), each as its own file. Writing them is the caller's business.
pub fn plot_files(r: &RunRecord, format: PlotFormat) -> Result<Vec<PlotFile>, ReportError> {
    let doc = document(r);
    let mut charts: Vec<&Chart> = Vec::new();
    for section in &doc.sections {
        collect_charts(&section.blocks, &mut charts);
    }
    let mut files = Vec::with_capacity(charts.len());
    for (i, chart) in charts.into_iter().enumerate() {
        let (ext, bytes) = match format {
            PlotFormat::Svg => ("svg", svg(chart, &doc.frame)?.into_bytes()),
            PlotFormat::Png => ("png", png(chart, &doc.frame)?),
        };
        let name = format!("{:02}-{}.{ext}", i + 1, slug(chart.title()));
        files.push(PlotFile { name, bytes });
    }
    Ok(files)
}

fn collect_charts<'a>(blocks: &'a [Block], out: &mut Vec<&'a Chart>) {
    for block in blocks {
        match block {
            Block::Charts(charts) => out.extend(charts),
            Block::Collapsed { blocks, .. } => collect_charts(blocks, out),
            _ => {}
        }
    }
}

/// Lowercase ASCII letters and digits, every other run of characters one `-`.
fn slug(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars() {
        if c == '%' {
            out.push_str("pct");
        } else if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chart_of_the_page_becomes_a_file() {
        let r = RunRecord::example();
        let page = crate::html(&r).unwrap();
        let svgs = plot_files(&r, PlotFormat::Svg).unwrap();
        assert_eq!(svgs.len(), page.matches("<svg").count());
        assert_eq!(svgs[0].name, "01-delivery-latency-simulated-ms.svg");
        let pngs = plot_files(&r, PlotFormat::Png).unwrap();
        assert_eq!(pngs.len(), svgs.len());
        assert!(
            pngs.iter()
                .all(|f| f.bytes.starts_with(b"\x89PNG\r\n\x1a\n"))
        );
        assert!(pngs.iter().all(|f| f.name.ends_with(".png")));
    }
}
