//! Scenario tests: one test per file in `scenarios/` (each must pass its checks), the
//! determinism test (same seed, same digest; another seed, another digest), and the bad-input
//! corpus in `sim/tests/bad-input/` (each file states the diagnostics it must produce).
//!
//! Large scenarios that do not fit the test budget carry `# hmsim-test: ignore` in their first
//! lines and run with `cargo test -p sim --test scenarios -- --ignored`.

use libtest_mimic::{Arguments, Failed, Trial};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// Directives in a file's comment lines: `# <key>: <value>`.
fn directives(path: &Path, key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let prefix = format!("# {key}:");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().to_string()))
        .collect()
}

fn run_scenario_file(path: &Path) -> Result<(), Failed> {
    let s = sim::load(path).map_err(|e| Failed::from(e.to_string()))?;
    let (record, _) = sim::cli::run_scenario(&s, path, s.seed, true);
    record_invariants(&record)?;
    if record.outcome.passed {
        return Ok(());
    }
    let mut msg = format!("scenario `{}` failed with seed {}\n", s.name, record.seed);
    if let Some(f) = &record.outcome.failure {
        msg.push_str(&format!("run failure: {f}\n"));
    }
    for c in record.failed_checks() {
        msg.push_str(&format!("check {} failed: {}\n", c.name, c.detail));
    }
    msg.push_str(&format!("reproduce: {}", record.reproduce));
    Err(msg.into())
}

/// What every run record must hold (issue 15): the console's message categories add up to
/// `sent`, so does the delivery timeline, and every series says its unit, how it is drawn and
/// how it was sampled.
fn record_invariants(r: &reports::RunRecord) -> Result<(), Failed> {
    let categories = sim::cli::message_categories(r);
    let total: u64 = categories.iter().map(|(_, n)| n).sum();
    if total != r.metrics.sent {
        return Err(format!(
            "message categories add up to {total}, not {} sent: {categories:?}",
            r.metrics.sent
        )
        .into());
    }
    let line = sim::cli::messages_line(r);
    for (label, n) in &categories {
        // Shown only when some message was held unsent at a client's crash (explore 5779).
        let optional = *n == 0 && *label == sim::cli::HELD_UNSENT;
        if !optional && !line.contains(&format!("{n} {label}")) {
            return Err(format!("console line lacks `{n} {label}`: {line}").into());
        }
    }
    let Some(timeline) = &r.delivery_timeline else {
        return Err("no delivery timeline".into());
    };
    let timeline_sent: u64 = timeline.buckets.iter().map(|b| b.sent).sum();
    let timeline_lost: u64 = timeline.buckets.iter().map(|b| b.lost).sum();
    if timeline_sent != r.metrics.sent || timeline_lost != r.metrics.lost {
        return Err(format!(
            "timeline: {timeline_sent} sent, {timeline_lost} lost; metrics: {} sent, {} lost",
            r.metrics.sent, r.metrics.lost
        )
        .into());
    }
    for series in &r.series {
        let group = series.name.split('/').next().unwrap_or_default();
        if series.kind.is_none() || series.sampling.is_none() || series.unit.is_empty() {
            return Err(format!("series {} lacks its unit, kind or sampling", series.name).into());
        }
        if group == "prg_state" && series.value_labels.is_empty() {
            return Err(format!("series {} lacks its state names", series.name).into());
        }
    }
    Ok(())
}

fn determinism() -> Result<(), Failed> {
    let path = workspace().join("scenarios/smoke.yaml");
    let s = sim::load(&path).map_err(|e| Failed::from(e.to_string()))?;
    let a = sim::cli::run_scenario(&s, &path, s.seed, true).0;
    let b = sim::cli::run_scenario(&s, &path, s.seed, true).0;
    let c = sim::cli::run_scenario(&s, &path, s.seed + 1, true).0;
    if a.trace_digest != b.trace_digest {
        return Err(format!(
            "same seed, different digests: {} vs {}",
            a.trace_digest, b.trace_digest
        )
        .into());
    }
    if a.metrics.sent == 0 || a.metrics.extra.get("digest_events").copied().unwrap_or(0.0) < 100.0 {
        return Err("the digest covers too little to mean anything".into());
    }
    if a.trace_digest == c.trace_digest {
        return Err("another seed gave the same digest: the seed does not drive the run".into());
    }
    Ok(())
}

fn bad_input(path: &Path) -> Result<(), Failed> {
    let expected = directives(path, "expect");
    if expected.is_empty() {
        return Err("bad-input file has no `# expect:` lines".into());
    }
    let rel = path.strip_prefix(workspace()).unwrap_or(path);
    let err = match sim::load(rel) {
        Ok(_) => return Err("loaded without error".into()),
        Err(e) => e.to_string(),
    };
    let err = err.replace(&format!("{}/", rel.parent().unwrap().display()), "");
    for want in &expected {
        if !err.contains(want.as_str()) {
            return Err(format!("diagnostic lacks {want:?}; got:\n{err}").into());
        }
    }
    Ok(())
}

/// `hmsim check` on a bad file: exit code 2, location printed, no panic.
fn cli_check_exit_code() -> Result<(), Failed> {
    let bad = workspace().join("sim/tests/bad-input/too-many-nodes.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hmsim"))
        .args(["check", bad.to_str().unwrap()])
        .output()
        .map_err(|e| Failed::from(e.to_string()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2) {
        return Err(format!(
            "exit code {:?}, want 2; stderr: {stderr}",
            out.status.code()
        )
        .into());
    }
    if !stderr.contains("too-many-nodes.yaml:10:7: error at `topology.imp_clusters[0].nodes`") {
        return Err(format!("no located diagnostic on stderr: {stderr}").into());
    }
    let good = workspace().join("scenarios/smoke.yaml");
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_hmsim"))
        .args(["check", good.to_str().unwrap()])
        .status()
        .map_err(|e| Failed::from(e.to_string()))?;
    if ok.code() != Some(0) {
        return Err(format!("valid scenario: exit code {:?}", ok.code()).into());
    }
    Ok(())
}

/// `hmsim compare`: an unchanged record passes (0), a record that lost a message regresses (3).
fn cli_compare_exit_codes() -> Result<(), Failed> {
    let path = workspace().join("scenarios/smoke.yaml");
    let s = sim::load(&path).map_err(|e| Failed::from(e.to_string()))?;
    let base = sim::cli::run_scenario(&s, &path, s.seed, true).0;
    // A run that lost a message behaved differently, so its trace digest differs too.
    let mut worse = base.clone();
    worse.metrics.lost = 1;
    worse.trace_digest = format!("{}-other", base.trace_digest);
    // The same run again on a busier machine: identical digest, twice the wall time.
    let mut slower = base.clone();
    slower.metrics.wall_time_s = base.metrics.wall_time_s * 2.0 + 0.1;
    let dir = std::env::temp_dir().join(format!("hmsim-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Failed::from(e.to_string()))?;
    let (b, w, sl) = (
        dir.join("base.json"),
        dir.join("worse.json"),
        dir.join("slower.json"),
    );
    std::fs::write(&b, base.to_json().unwrap()).unwrap();
    std::fs::write(&w, worse.to_json().unwrap()).unwrap();
    std::fs::write(&sl, slower.to_json().unwrap()).unwrap();
    let code = |cur: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hmsim"))
            .args(["compare", b.to_str().unwrap(), cur.to_str().unwrap()])
            .output()
            .map(|o| o.status.code())
    };
    let same = code(&b).map_err(|e| Failed::from(e.to_string()))?;
    let regressed = code(&w).map_err(|e| Failed::from(e.to_string()))?;
    let noisy = code(&sl).map_err(|e| Failed::from(e.to_string()))?;
    let _ = std::fs::remove_dir_all(&dir);
    if same != Some(0) || regressed != Some(3) || noisy != Some(0) {
        return Err(format!(
            "exit codes: unchanged {same:?} (want 0), regressed {regressed:?} (want 3), \
             same digest on a slower machine {noisy:?} (want 0)"
        )
        .into());
    }
    Ok(())
}

/// The interop matrix check can fail: plant a wrong expectation (W- -> J- delivers) into the
/// headline scenario and the same run must fail that check, naming the cell.
fn interop_matrix_planted_expectation_fails() -> Result<(), Failed> {
    let path = workspace().join("scenarios/interop-matrix.yaml");
    let mut s = sim::load(&path).map_err(|e| Failed::from(e.to_string()))?;
    let planted: serde_yaml::Value =
        serde_yaml::from_str("expect: { \"W- -> J-\": deliver }").map_err(|e| e.to_string())?;
    s.checks = vec![sim::scenario::CheckSpec::new("interop_matrix", planted)];
    let (r, _) = sim::cli::run_scenario(&s, &path, s.seed, true);
    let c = &r.checks[0];
    if c.status != reports::Status::Fail || !c.detail.contains("W- -> J- failed (want deliver)") {
        return Err(format!(
            "planted expectation not caught: {:?} {}",
            c.status, c.detail
        )
        .into());
    }
    Ok(())
}

/// A PRG failover that stalls at the peer's JSM session limit is never silent (spec 10): the
/// planted scenario warns, its peer refuses sessions at the limit, and `prg_failover` fails
/// naming the limit and how many sessions could not move.
fn jsm_stall_is_named() -> Result<(), Failed> {
    let path = workspace().join("sim/tests/planted/imp-failover-jsm-stall.yaml");
    let s = sim::load(&path).map_err(|e| Failed::from(e.to_string()))?;
    let warned = sim::checks::scenario_warnings(&s);
    if !warned.iter().any(|w| w.contains("JSM session limit is 75")) {
        return Err(format!("no JSM warning: {warned:?}").into());
    }
    let (r, _) = sim::cli::run_scenario(&s, &path, s.seed, true);
    let c = r
        .checks
        .iter()
        .find(|c| c.name == "prg_failover")
        .ok_or("no prg_failover check")?;
    let named = c.detail.contains("stalled at imp-a-2's JSM session limit")
        && c.detail
            .contains("JSM session limit of 75 (1.5 × its OVA of 50 users)");
    if c.status != reports::Status::Fail || !named {
        return Err(format!("stall not named: {:?} {}", c.status, c.detail).into());
    }
    Ok(())
}

/// Every scenario, the ignored large ones included, is a deployment the guides allow at its
/// size: no PRG peer is left holding more JSM sessions after a failover than its OVA takes
/// (spec 10), and no `liveness` bound is shorter than the guide's migration pace (spec 62),
/// which `hmsim check` would warn about. A scenario that means to stall lives in
/// `sim/tests/planted/`.
fn no_scenario_is_warned() -> Result<(), Failed> {
    let mut warned = Vec::new();
    for path in yaml_files(&workspace().join("scenarios")) {
        let s = sim::load(&path).map_err(|e| Failed::from(e.to_string()))?;
        for w in sim::checks::scenario_warnings(&s) {
            warned.push(format!("{}: {w}", path.display()));
        }
    }
    if warned.is_empty() {
        Ok(())
    } else {
        Err(warned.join("\n").into())
    }
}

fn main() {
    let args = Arguments::from_args();
    let root = workspace();
    std::env::set_current_dir(&root).unwrap();
    let mut trials = Vec::new();
    for path in yaml_files(&root.join("scenarios")) {
        let name = format!("scenario::{}", path.file_stem().unwrap().to_string_lossy());
        let ignored = !directives(&path, "hmsim-test")
            .iter()
            .all(|d| d != "ignore");
        let p = path.clone();
        trials.push(Trial::test(name, move || run_scenario_file(&p)).with_ignored_flag(ignored));
    }
    trials.push(Trial::test(
        "determinism::smoke_same_seed_same_digest",
        determinism,
    ));
    trials.push(Trial::test(
        "cli::check_exit_code_and_location",
        cli_check_exit_code,
    ));
    trials.push(Trial::test(
        "cli::compare_exit_codes",
        cli_compare_exit_codes,
    ));
    trials.push(Trial::test(
        "interop::planted_expectation_fails",
        interop_matrix_planted_expectation_fails,
    ));
    trials.push(Trial::test(
        "planted::jsm_stall_is_named",
        jsm_stall_is_named,
    ));
    trials.push(Trial::test(
        "capacity::no_scenario_is_warned",
        no_scenario_is_warned,
    ));
    for path in yaml_files(&root.join("sim/tests/bad-input")) {
        let name = format!("bad_input::{}", path.file_stem().unwrap().to_string_lossy());
        trials.push(Trial::test(name, move || bad_input(&path)));
    }
    libtest_mimic::run(&args, trials).exit();
}
