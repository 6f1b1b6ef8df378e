//! Renders the reports of an existing `run.json` without running anything:
//! `cargo run -p reports --example render -- <run.json> <out dir> [--png]`
//! (`example` instead of a file renders [`reports::RunRecord::example`]).
//! Writes `report.html`, `report.md` and, with `--png`, `plots/NN-<chart>.png`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(input), Some(out)) = (args.first(), args.get(1)) else {
        return Err("usage: render <run.json> <out dir> [--png]".into());
    };
    let record = if input == "example" {
        reports::RunRecord::example()
    } else {
        reports::RunRecord::from_json(&std::fs::read_to_string(input)?)?
    };
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("report.html"), reports::html(&record)?)?;
    std::fs::write(out.join("report.md"), reports::markdown(&record))?;
    if args.iter().any(|a| a == "--png") {
        let dir = out.join("plots");
        std::fs::create_dir_all(&dir)?;
        for file in reports::plot_files(&record, reports::PlotFormat::Png)? {
            std::fs::write(dir.join(&file.name), &file.bytes)?;
        }
    }
    Ok(())
}
