//! Goal: the YAML shown in the docs is real. Every ```yaml block of `README.md`, `docs/*.md` and
//! `scenarios/README.md` is either a file of the repository shown verbatim (the line before
//! the block says which: `<!-- file: scenarios/format-tour.yaml -->`) or not a scenario at all.
//! A scenario shown in the docs is thus a file of `scenarios/`, which `cargo test` runs with
//! its checks (`tests/scenarios/main.rs`); here it must also load (`hmsim check`). A config
//! file shown (`examples/real-mode/*.yaml`) is what `examples/real-mode/run.sh` runs.
//!
//! The README's example used to be a scenario named `smoke` that was not `scenarios/smoke.yaml`
//! and failed when run as written.

mod common;

use std::path::{Path, PathBuf};

/// One ```yaml block of a Markdown file.
struct Block {
    /// `file:line` of the opening fence.
    at: String,
    /// The repository file it shows, from the `<!-- file: … -->` line before it.
    file: Option<String>,
    /// The block's text, each line ending with a newline.
    text: String,
}

/// The Markdown files whose examples are checked.
fn docs() -> Vec<PathBuf> {
    let root = common::workspace();
    let mut files = vec![root.join("README.md"), root.join("scenarios/README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("read docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    files.extend(more);
    files
}

fn yaml_blocks(path: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(path).expect("read a doc");
    let name = path
        .strip_prefix(common::workspace())
        .unwrap_or(path)
        .display()
        .to_string();
    let mut blocks = Vec::new();
    let mut previous = "";
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(b) = open.as_mut() {
            if line.trim_start() == "```" {
                blocks.extend(open.take());
            } else {
                b.text.push_str(line);
                b.text.push('\n');
            }
            continue;
        }
        if line.trim() == "```yaml" {
            let file = previous
                .trim()
                .strip_prefix("<!-- file: ")
                .and_then(|r| r.strip_suffix(" -->"))
                .map(str::to_string);
            open = Some(Block {
                at: format!("{name}:{}", i + 1),
                file,
                text: String::new(),
            });
        }
        if !line.trim().is_empty() {
            previous = line;
        }
    }
    assert!(open.is_none(), "{name}: a ```yaml block is not closed");
    blocks
}

/// Whether YAML text is (meant as) a scenario: a mapping with a scenario's sections.
fn is_scenario(text: &str) -> bool {
    let Ok(serde_yaml::Value::Mapping(m)) = serde_yaml::from_str::<serde_yaml::Value>(text) else {
        return false;
    };
    ["topology", "workloads", "checks"]
        .iter()
        .any(|k| m.contains_key(serde_yaml::Value::from(*k)))
}

#[test]
fn every_yaml_example_in_the_docs_is_a_repository_file_shown_verbatim() {
    let root = common::workspace();
    let blocks: Vec<Block> = docs().iter().flat_map(|d| yaml_blocks(d)).collect();
    let mut problems = Vec::new();
    let mut scenarios = 0;
    for b in &blocks {
        let Some(file) = &b.file else {
            if is_scenario(&b.text) {
                problems.push(format!(
                    "{}: a scenario example must be a file of scenarios/ that cargo test runs: \
                     put it there and write `<!-- file: scenarios/<name>.yaml -->` before the block",
                    b.at
                ));
            }
            continue;
        };
        let Ok(on_disk) = std::fs::read_to_string(root.join(file)) else {
            problems.push(format!("{}: `{file}` does not exist", b.at));
            continue;
        };
        if on_disk != b.text {
            problems.push(format!(
                "{}: the block differs from `{file}`: copy the file into it",
                b.at
            ));
        }
        if is_scenario(&on_disk) {
            scenarios += 1;
            if !file.starts_with("scenarios/") || on_disk.contains("# hmsim-test: ignore") {
                problems.push(format!(
                    "{}: scenario `{file}` is not one that cargo test runs (scenarios/, not ignored)",
                    b.at
                ));
            }
            if let Err(e) = sim::load(&root.join(file)) {
                problems.push(format!("{}: `{file}` does not load:\n{e}", b.at));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The README's scenario-format example is one of them.
    assert!(
        scenarios >= 1,
        "no scenario example found in the docs ({} yaml blocks)",
        blocks.len()
    );
}

#[test]
fn a_scenario_block_that_is_not_a_file_is_refused() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("doc-examples");
    std::fs::create_dir_all(&dir).expect("create tmp dir");
    let md = dir.join(format!("doc-{}.md", std::process::id()));
    std::fs::write(
        &md,
        "Text.\n\n```yaml\nname: smoke\ntopology: { domain: example.com }\n```\n\n\
         <!-- file: scenarios/smoke.yaml -->\n```yaml\nname: other\n```\n",
    )
    .expect("write doc");
    let blocks = yaml_blocks(&md);
    assert_eq!(blocks.len(), 2);
    assert!(blocks[0].file.is_none() && is_scenario(&blocks[0].text));
    assert_eq!(blocks[1].file.as_deref(), Some("scenarios/smoke.yaml"));
    assert_eq!(blocks[1].text, "name: other\n");
    let _ = std::fs::remove_file(&md);
}
