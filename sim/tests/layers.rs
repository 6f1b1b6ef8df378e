//! The pipeline's direction, enforced: every `crate::` path in `sim/src` (outside `#[cfg(test)]`
//! modules) names only the module itself or a stage allowed before it. A test module may
//! assemble the whole pipeline; the crate root (`lib.rs`, `main.rs`) wires the stages.
//!
//! scenario → plan → world → inject → run, history ← oracle ← checks ← record ← cli: `run`
//! writes the history and asks the oracle whether it is quiescent; a check never names the
//! world, the injector or the runner.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each stage and the stages it may import.
const ALLOWED: &[(&str, &[&str])] = &[
    ("scenario", &[]),
    ("plan", &["scenario"]),
    ("history", &["scenario", "plan"]),
    ("oracle", &["scenario", "plan", "history"]),
    ("world", &["scenario", "plan", "history"]),
    ("inject", &["scenario", "plan", "history", "world"]),
    (
        "run",
        &["scenario", "plan", "history", "oracle", "world", "inject"],
    ),
    ("checks", &["scenario", "plan", "history", "oracle"]),
    (
        "record",
        &["scenario", "plan", "history", "oracle", "checks"],
    ),
    (
        "explore",
        &[
            "scenario", "plan", "history", "oracle", "checks", "record", "run", "world", "inject",
        ],
    ),
    (
        "cli",
        &[
            "scenario", "plan", "history", "oracle", "checks", "record", "run", "world", "inject",
            "explore",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("readable source dir") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The text of `src` without its `#[cfg(test)]` items (a test module ends the scan: by
/// convention it is the last item of a file).
fn without_tests(src: &str) -> &str {
    match src.find("#[cfg(test)]") {
        Some(i) => &src[..i],
        None => src,
    }
}

/// The top-level modules named by `crate::` paths in `text`, with their line numbers, and by
/// `use crate::{a, b}` groups.
fn crate_paths(text: &str) -> Vec<(usize, String, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let names: Vec<String> = if let Some(group) = after.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end]
                    .split(',')
                    .map(|s| s.trim().split("::").next().unwrap_or_default().to_string())
                    .collect()
            } else {
                let end = after
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                vec![after[..end].to_string()]
            };
            for name in names.into_iter().filter(|s| !s.is_empty()) {
                found.push((n + 1, name, line.trim().to_string()));
            }
            rest = &after[1..];
        }
    }
    found
}

#[test]
fn every_import_points_to_an_earlier_stage() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    let mut bad = Vec::new();
    let mut checked = 0;
    for f in &files {
        let rel = f.strip_prefix(&root).expect("under src");
        let stage = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default()
            .trim_end_matches(".rs");
        if stage == "lib" || stage == "main" {
            continue;
        }
        let Some(may) = allowed.get(stage) else {
            bad.push(format!(
                "{}: module `{stage}` is not a pipeline stage (add it to ALLOWED in tests/layers.rs)",
                rel.display()
            ));
            continue;
        };
        let src = std::fs::read_to_string(f).expect("readable file");
        for (line, name, text) in crate_paths(without_tests(&src)) {
            checked += 1;
            // `crate::Error` and other items of the crate root are shared by every stage.
            let is_module = allowed.contains_key(name.as_str());
            if is_module && name != stage && !may.contains(&name.as_str()) {
                bad.push(format!(
                    "{}:{line}: `{stage}` imports `{name}`, a later stage: {text}",
                    rel.display()
                ));
            }
        }
    }
    assert!(
        checked > 50,
        "found only {checked} crate paths: the scan is broken"
    );
    assert!(
        bad.is_empty(),
        "imports against the pipeline order:\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_thread_local_state() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| {
            let src = std::fs::read_to_string(f).expect("readable file");
            src.contains(&["thread", "_local!"].concat())
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "thread-local state in {offenders:?}: keep handles in the World"
    );
}
