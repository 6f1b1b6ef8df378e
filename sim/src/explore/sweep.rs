//! The runner: each seed's scenario is written to `<out>/scenarios/<seed>.yaml` and run as its
//! own `hmsim run` process, at most `jobs` at a time, so that a crash or a hang in one seed
//! never ends the sweep. A run past its wall-time budget is killed and reported as a timeout
//! with the command that reproduces it. Each seed leaves `<out>/seeds/<seed>.json`; failing
//! seeds are shrunk (`<out>/minimal/<check>-<seed>.yaml`, the original beside it) and the
//! sweep ends with `<out>/summary.json` and `summary.md`.
//!
//! The runner reads the wall clock (budgets, `--time`); the runs themselves stay
//! deterministic: a seed's scenario and its trace digest depend on the seed only.

use super::seeds::Shard;
use super::shrink::{self, Limits};
use super::summary::{self, Failure, SeedRecord, Verdict};
use super::{Profile, generator};
use crate::scenario::Scenario;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How often the runner looks at its children.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Which seeds a sweep runs.
#[derive(Debug, Clone)]
pub enum Seeds {
    /// A range (end excluded).
    Range(Range<u64>),
    /// Seeds counted up from `from` until `budget` of wall time has passed (runs already
    /// started finish).
    Time {
        /// The first seed.
        from: u64,
        /// Wall time after which no new seed starts.
        budget: Duration,
    },
}

/// A sweep's options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Generator profile.
    pub profile: Profile,
    /// Which seeds.
    pub seeds: Seeds,
    /// This process's shard of them.
    pub shard: Shard,
    /// Runs at a time.
    pub jobs: usize,
    /// Wall time a run may take before it is killed and reported as a timeout.
    pub seed_budget: Duration,
    /// Output directory.
    pub out: PathBuf,
    /// The `hmsim` binary that runs each seed.
    pub hmsim: PathBuf,
    /// Shrinking bounds, `None` to leave failures as drawn.
    pub shrink: Option<Limits>,
    /// Most failing seeds shrunk (the first by seed).
    pub shrink_max: usize,
    /// TEST ONLY: plant the connector defect (drop every n-th Webex → Jabber message after a
    /// failover) in every generated scenario with an Expressway.
    pub plant_defect: Option<u32>,
    /// Print a line per seed.
    pub verbose: bool,
    /// Known failures: not shrunk again, and not failing the sweep's exit status.
    pub known: super::known::Known,
}

/// One run to do: a scenario file and the directory for its record.
#[derive(Debug, Clone)]
pub struct Task {
    /// The scenario file.
    pub file: PathBuf,
    /// Where `hmsim run` writes.
    pub dir: PathBuf,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The record, when the run wrote one.
    pub record: Option<reports::RunRecord>,
    /// Killed after the budget.
    pub timed_out: bool,
    /// Exit code (`None` when killed by a signal).
    pub exit: Option<i32>,
    /// Wall time, seconds.
    pub wall_s: f64,
}

impl RunOutcome {
    /// The verdict and what failed.
    pub fn verdict(&self, budget: Duration) -> (Verdict, Vec<Failure>) {
        if self.timed_out {
            let detail = format!("no result within the budget of {} s", budget.as_secs());
            return (Verdict::Timeout, vec![failure("timeout", detail)]);
        }
        let Some(r) = &self.record else {
            let detail = format!("the run ended with exit code {:?} and no record", self.exit);
            return (Verdict::Crash, vec![failure("crash", detail)]);
        };
        let mut f: Vec<Failure> = r
            .checks
            .iter()
            .filter(|c| c.status == reports::Status::Fail)
            .map(|c| failure(&c.name, c.detail.clone()))
            .collect();
        if let Some(why) = &r.outcome.failure {
            f.push(failure("run", why.clone()));
        }
        match r.outcome.passed && f.is_empty() {
            true => (Verdict::Pass, f),
            false => (Verdict::Fail, f),
        }
    }
}

fn failure(check: &str, detail: String) -> Failure {
    Failure {
        check: check.into(),
        detail,
    }
}

struct Running {
    index: usize,
    child: Child,
    started: Instant,
}

/// Runs `tasks` as `hmsim run` processes, `jobs` at a time, calling `done` as each ends
/// (with its index in the order the iterator gave it). Stops taking tasks once `keep_going`
/// says so; runs already started finish.
pub fn run_pool(
    hmsim: &Path,
    tasks: &mut dyn Iterator<Item = Task>,
    jobs: usize,
    budget: Duration,
    keep_going: &dyn Fn() -> bool,
    done: &mut dyn FnMut(usize, &Task, RunOutcome),
) {
    let mut running: Vec<(Running, Task)> = Vec::new();
    let mut next = 0usize;
    let mut exhausted = false;
    loop {
        while !exhausted && running.len() < jobs.max(1) && keep_going() {
            match tasks.next() {
                Some(t) => {
                    running.push((spawn(hmsim, &t, next), t));
                    next += 1;
                }
                None => exhausted = true,
            }
        }
        if running.is_empty() {
            return;
        }
        let mut i = 0;
        while i < running.len() {
            let (r, t) = &mut running[i];
            match poll(r, budget, t) {
                Some(outcome) => {
                    let (r, t) = running.swap_remove(i);
                    done(r.index, &t, outcome);
                }
                None => i += 1,
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn spawn(hmsim: &Path, t: &Task, index: usize) -> Running {
    let _ = std::fs::create_dir_all(&t.dir);
    let log = std::fs::File::create(t.dir.join("log.txt"));
    let mut cmd = Command::new(hmsim);
    cmd.arg("run")
        .arg(&t.file)
        .arg("--quiet")
        .arg("--record-only")
        .arg("--out")
        .arg(&t.dir)
        .stdin(Stdio::null());
    match log.and_then(|l| Ok((l.try_clone()?, l))) {
        Ok((a, b)) => cmd.stdout(a).stderr(b),
        Err(_) => cmd.stdout(Stdio::null()).stderr(Stdio::null()),
    };
    let child = cmd.spawn().unwrap_or_else(|e| {
        // A binary that cannot start is a broken installation, not a seed's failure.
        panic!("cannot start {}: {e}", hmsim.display())
    });
    Running {
        index,
        child,
        started: Instant::now(), // allow-nondeterminism: the runner's wall-time budget
    }
}

/// The outcome of a finished (or overdue, then killed) run; `None` while it runs.
fn poll(r: &mut Running, budget: Duration, t: &Task) -> Option<RunOutcome> {
    let wall = r.started.elapsed();
    let status = match r.child.try_wait() {
        Ok(Some(s)) => Some(s),
        Ok(None) if wall <= budget => return None,
        Ok(None) | Err(_) => None,
    };
    let timed_out = status.is_none();
    if timed_out {
        let _ = r.child.kill();
        let _ = r.child.wait();
    }
    let record = std::fs::read_to_string(t.dir.join("run.json"))
        .ok()
        .and_then(|text| reports::RunRecord::from_json(&text).ok());
    Some(RunOutcome {
        record: record.filter(|_| !timed_out),
        timed_out,
        exit: status.and_then(|s| s.code()),
        wall_s: wall.as_secs_f64(),
    })
}

/// The scenario a sweep draws for `seed`, with the planted defect when asked.
pub fn scenario_for(seed: u64, o: &Options) -> Scenario {
    let mut s = generator::generate(seed, o.profile);
    if let Some(n) = o.plant_defect {
        for e in &mut s.topology.expressway_clusters {
            e.test_only_drop_every_nth_to_jabber_after_failover = Some(n);
        }
    }
    s
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The command that replays a scenario file.
pub fn replay_command(file: &Path) -> String {
    format!("cargo run -p sim --release -- run {}", file.display())
}

/// Runs the sweep; returns its summary.
pub fn sweep(o: &Options) -> Result<summary::Summary, String> {
    let started = Instant::now(); // allow-nondeterminism: the runner's `--time` budget
    let seeds: Box<dyn Iterator<Item = u64>> = match &o.seeds {
        Seeds::Range(r) => Box::new(o.shard.seeds(r.clone())),
        Seeds::Time { from, .. } => Box::new(o.shard.seeds(*from..u64::MAX)),
    };
    let deadline = match &o.seeds {
        Seeds::Time { budget, .. } => Some(*budget),
        Seeds::Range(_) => None,
    };
    let mut failed: Vec<SeedRecord> = Vec::new();
    let mut err = None;
    let mut tasks = seeds.map_while(|seed| {
        let s = scenario_for(seed, o);
        let file = o.out.join("scenarios").join(format!("{seed}.yaml"));
        match write(&file, &super::scenario_text(&s, o.profile)) {
            Ok(()) => Some(Task {
                file,
                dir: o.out.join("runs").join(seed.to_string()),
            }),
            Err(e) => {
                err = Some(e);
                None
            }
        }
    });
    let keep_going = || deadline.is_none_or(|d| started.elapsed() < d);
    let mut done = |_: usize, t: &Task, outcome: RunOutcome| {
        let rec = seed_record(o, t, &outcome);
        if o.verbose {
            let what: Vec<String> = rec.failures.iter().map(Failure::brief).collect();
            eprintln!(
                "seed {} {:?} {:.1}s {}",
                rec.seed,
                rec.verdict,
                rec.wall_s,
                what.join("; ")
            );
        }
        let _ = save_record(&o.out, &rec);
        if rec.verdict == Verdict::Pass {
            let _ = std::fs::remove_dir_all(&t.dir);
        } else {
            failed.push(rec);
        }
    };
    run_pool(
        &o.hmsim,
        &mut tasks,
        o.jobs,
        o.seed_budget,
        &keep_going,
        &mut done,
    );
    drop(tasks);
    if let Some(e) = err {
        return Err(e);
    }
    shrink_new(o, &mut failed)?;
    let s = summary::merge(std::slice::from_ref(&o.out))?;
    summary::write(&o.out, &s)?;
    Ok(s)
}

/// Shrinks the first `shrink_max` failing seeds that are not known failures, by seed.
fn shrink_new(o: &Options, failed: &mut [SeedRecord]) -> Result<(), String> {
    let Some(limits) = &o.shrink else {
        return Ok(());
    };
    failed.sort_by_key(|r| r.seed);
    let new = |r: &&mut SeedRecord| {
        o.known
            .explain_parts(r.seed, r.verdict, &r.failures)
            .is_none()
    };
    for rec in failed.iter_mut().filter(new).take(o.shrink_max) {
        shrink_seed(o, limits, rec)?;
        save_record(&o.out, rec)?;
    }
    Ok(())
}

fn seed_record(o: &Options, t: &Task, outcome: &RunOutcome) -> SeedRecord {
    let seed: u64 = t
        .file
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let s = scenario_for(seed, o);
    let (verdict, failures) = outcome.verdict(o.seed_budget);
    let mut kinds: Vec<String> = s
        .faults
        .iter()
        .flat_map(crate::plan::validate::fault_kinds)
        .map(str::to_string)
        .collect();
    kinds.sort();
    kinds.dedup();
    SeedRecord {
        seed,
        profile: o.profile,
        verdict,
        failures,
        fault_kinds: kinds,
        checks: s.checks.iter().map(|c| c.name.clone()).collect(),
        coverage: outcome
            .record
            .as_ref()
            .map(|r| r.coverage.clone())
            .unwrap_or_default(),
        wall_s: outcome.wall_s,
        trace_digest: outcome.record.as_ref().map(|r| r.trace_digest.clone()),
        reproduce: replay_command(&t.file),
        minimal: None,
    }
}

fn save_record(out: &Path, r: &SeedRecord) -> Result<(), String> {
    let json = serde_json::to_string_pretty(r).expect("a seed record serializes");
    write(&out.join("seeds").join(format!("{}.json", r.seed)), &json)
}

/// Shrinks a failing seed's scenario and writes `minimal/<check>-<seed>.yaml` with the
/// original beside it (`minimal/<check>-<seed>.original.yaml`).
fn shrink_seed(o: &Options, limits: &Limits, rec: &mut SeedRecord) -> Result<(), String> {
    let Some(target) = rec.failures.first().cloned() else {
        return Ok(());
    };
    let original = scenario_for(rec.seed, o);
    let work = o.out.join("shrink").join(rec.seed.to_string());
    let mut eval = |batch: &[Scenario]| evaluate(o, &work, batch, &target);
    let result = shrink::shrink(&original, limits, &mut eval);
    let _ = std::fs::remove_dir_all(&work);
    let name = format!("{}-{}", target.check, rec.seed);
    let dir = o.out.join("minimal");
    let file = dir.join(format!("{name}.yaml"));
    let header = shrink::header(&target, &result, &file, rec.seed, o.profile);
    write(&file, &super::yaml::to_yaml(&result.scenario, &header))?;
    let original_file = dir.join(format!("{name}.original.yaml"));
    write(&original_file, &super::scenario_text(&original, o.profile))?;
    rec.minimal = Some(format!("minimal/{name}.yaml"));
    if o.verbose {
        eprintln!(
            "seed {}: shrunk in {} steps ({} runs) to {}",
            rec.seed,
            result.steps.len(),
            result.runs,
            file.display()
        );
    }
    Ok(())
}

/// Runs a batch of candidate scenarios; whether each fails for `target`'s reason.
fn evaluate(o: &Options, work: &Path, batch: &[Scenario], target: &Failure) -> Vec<bool> {
    let mut tasks = Vec::new();
    for (i, s) in batch.iter().enumerate() {
        let file = work.join(format!("candidate-{i}.yaml"));
        if write(&file, &super::yaml::to_yaml(s, &[])).is_err() {
            return vec![false; batch.len()];
        }
        tasks.push(Task {
            file,
            dir: work.join(format!("run-{i}")),
        });
    }
    let mut same = vec![false; batch.len()];
    let mut done = |i: usize, t: &Task, outcome: RunOutcome| {
        let (_, failures) = outcome.verdict(o.seed_budget);
        same[i] = failures.iter().any(|f| f.reason() == target.reason());
        let _ = std::fs::remove_dir_all(&t.dir);
    };
    run_pool(
        &o.hmsim,
        &mut tasks.into_iter(),
        o.jobs,
        o.seed_budget,
        &|| true,
        &mut done,
    );
    same
}
