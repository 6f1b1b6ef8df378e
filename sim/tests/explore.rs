//! `hmsim explore` end to end: a generated file replays with the digest of the scenario it was
//! drawn as, and a sweep of two shards writes one record per seed, exactly once, which
//! `explore merge` gathers.

use sim::explore::{Profile, generator, scenario_text};
use std::path::{Path, PathBuf};
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hmsim-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn hmsim() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hmsim"));
    c.stdout(std::process::Stdio::null());
    c
}

/// The first seed whose scenario is cheap (few users, short) but has a connector and faults.
fn cheap_seed(from: u64) -> u64 {
    (from..from + 500)
        .find(|&s| {
            let g = generator::generate(s, Profile::Small);
            !g.topology.expressway_clusters.is_empty()
                && !g.faults.is_empty()
                && g.users.count <= 12
                && g.duration.0.as_secs() <= 6 * 60
        })
        .expect("a cheap seed")
}

#[test]
fn a_generated_file_replays_with_the_same_digest() {
    let seed = cheap_seed(0);
    let s = generator::generate(seed, Profile::Small);
    let dir = scratch("explore-replay");
    let file = dir.join("s.yaml");
    std::fs::write(&file, scenario_text(&s, Profile::Small)).expect("write");
    let (record, _) = sim::cli::run_scenario(&s, Path::new("generated"), s.seed, true);
    let status = hmsim()
        .args(["run", "--quiet", "--record-only", "--out"])
        .arg(dir.join("out"))
        .arg(&file)
        .status()
        .expect("hmsim runs");
    assert!(status.code().is_some_and(|c| c <= 1), "{status}");
    let text = std::fs::read_to_string(dir.join("out/run.json")).expect("run.json");
    let replayed = reports::RunRecord::from_json(&text).expect("a record");
    assert_eq!(replayed.trace_digest, record.trace_digest, "seed {seed}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_shards_run_each_seed_once_and_merge() {
    let dir = scratch("explore-shards");
    let from = cheap_seed(0);
    let range = format!("{from}..{}", from + 4);
    for i in 0..2 {
        let status = hmsim()
            .args(["explore", "--no-shrink", "--jobs", "2", "--seeds", &range])
            .args(["--shard", &format!("{i}/2"), "--out"])
            .arg(dir.join(format!("shard-{i}")))
            .status()
            .expect("hmsim explore runs");
        assert!(status.code().is_some_and(|c| c <= 1), "{status}");
    }
    let status = hmsim()
        .args(["explore", "merge", "--out"])
        .arg(dir.join("merged"))
        .arg(dir.join("shard-0"))
        .arg(dir.join("shard-1"))
        .status()
        .expect("hmsim explore merge runs");
    assert!(status.code().is_some_and(|c| c <= 1), "{status}");
    let merged: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("merged/summary.json")).expect("summary"),
    )
    .expect("json");
    assert_eq!(merged["seeds"], 4);
    assert_eq!(merged["duplicate_seeds"], serde_json::json!([]));
    for i in 0..2u64 {
        let seeds =
            sim::explore::summary::read_dir(&dir.join(format!("shard-{i}"))).expect("records");
        assert_eq!(seeds.len(), 2);
        assert!(
            seeds.iter().all(|r| r.seed % 2 == i),
            "shard {i} ran a seed of the other"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
