//! `hmsim explore` and `hmsim explore merge`: the command line of [`crate::explore`].

use super::{EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_IO, EXIT_OK};
use crate::explore::Profile;
use crate::explore::known::Known;
use crate::explore::seeds::{self, Shard};
use crate::explore::shrink::Limits;
use crate::explore::summary;
use crate::explore::sweep::{self, Seeds};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// The options of `hmsim explore`.
#[derive(Args, Debug)]
pub struct ExploreArgs {
    /// Seeds to run, `A..B` (B excluded) or one seed. Default: 0..100 unless --time.
    #[arg(long, conflicts_with = "time")]
    seeds: Option<String>,
    /// Run seeds from --from upwards for this much wall time (`10m`, `1h`).
    #[arg(long)]
    time: Option<String>,
    /// The first seed of a --time sweep.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// This process's shard, `i/n` (0-based). Default: JOB_COMPLETION_INDEX/JOB_COMPLETIONS
    /// (Kubernetes Indexed Job), then HMSIM_SHARD_INDEX/HMSIM_SHARD_COUNT (CI matrix), else 0/1.
    #[arg(long)]
    shard: Option<String>,
    /// Runs at a time (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Generator profile: small (seconds per seed) or large (thousands of users).
    #[arg(long, default_value = "small")]
    profile: Profile,
    /// Output directory.
    #[arg(long, default_value = "target/hmsim-explore")]
    out: PathBuf,
    /// Wall time a seed may take before it counts as a failure (timeout). Default: 120s for
    /// the small profile, 30m for the large one.
    #[arg(long)]
    seed_budget: Option<String>,
    /// Leave failing scenarios as drawn.
    #[arg(long)]
    no_shrink: bool,
    /// Most reductions a shrink keeps.
    #[arg(long, default_value_t = 60)]
    shrink_steps: u32,
    /// Shrink at most this many failing seeds (the first by seed); the others keep their
    /// records and reproduce commands.
    #[arg(long)]
    shrink_max: Option<usize>,
    /// Wall time a shrink may take per failing seed.
    #[arg(long, default_value = "10m")]
    shrink_time: String,
    /// A line per seed on stderr.
    #[arg(long, short)]
    verbose: bool,
    /// Known failures (`<seed> <finding file> <reason>` per line): those seeds, failing for
    /// those reasons, are reported but neither shrunk nor failing the exit status. Anything
    /// else that fails, fails.
    #[arg(long)]
    known: Option<PathBuf>,
    /// TEST ONLY: plant a connector defect (drop every N-th Webex → Jabber message after a
    /// failover) in every scenario with an Expressway, to test explore itself.
    #[arg(long, hide = true)]
    plant_defect: Option<u32>,
}

/// `hmsim explore` subcommands.
#[derive(Subcommand, Debug)]
pub enum ExploreOp {
    /// Merge the output directories of several shards into one summary: every failing seed,
    /// its minimal scenario, and the coverage.
    Merge {
        /// Output directories of `hmsim explore` (each holds a `seeds/` folder).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where to write summary.json and summary.md.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn duration(flag: &str, text: &str) -> Result<Duration, String> {
    fakes::config::parse_duration(text).map_err(|e| format!("--{flag} {text}: {e}"))
}

fn options(a: ExploreArgs) -> Result<sweep::Options, String> {
    let env = |k: &str| std::env::var(k).ok();
    let shard: Shard = seeds::shard_from(a.shard.as_deref(), &env)?;
    let seeds = match (&a.seeds, &a.time) {
        (_, Some(t)) => Seeds::Time {
            from: a.from,
            budget: duration("time", t)?,
        },
        (Some(r), None) => Seeds::Range(seeds::parse_range(r)?),
        (None, None) => Seeds::Range(0..100),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = a.jobs.unwrap_or(cores).max(1);
    let hmsim = std::env::current_exe().map_err(|e| format!("cannot find hmsim itself: {e}"))?;
    let shrink = (!a.no_shrink).then(|| -> Result<Limits, String> {
        Ok(Limits {
            steps_max: a.shrink_steps,
            runs_max: a.shrink_steps.saturating_mul(20),
            time_max: duration("shrink-time", &a.shrink_time)?,
            batch: jobs,
        })
    });
    Ok(sweep::Options {
        profile: a.profile,
        seeds,
        shard,
        jobs,
        seed_budget: match (&a.seed_budget, a.profile) {
            (Some(b), _) => duration("seed-budget", b)?,
            (None, Profile::Small) => Duration::from_secs(120),
            (None, Profile::Large) => Duration::from_secs(30 * 60),
        },
        out: a.out,
        hmsim,
        shrink: shrink.transpose()?,
        shrink_max: a.shrink_max.unwrap_or(usize::MAX),
        plant_defect: a.plant_defect,
        verbose: a.verbose,
        known: match &a.known {
            Some(p) => Known::read(p)?,
            None => Known::default(),
        },
    })
}

/// Runs `hmsim explore`.
pub fn cmd_explore(op: Option<ExploreOp>, args: ExploreArgs) -> i32 {
    if let Some(ExploreOp::Merge { dirs, out }) = op {
        return cmd_merge(&dirs, out);
    }
    let o = match options(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_BAD_INPUT;
        }
    };
    eprintln!(
        "hmsim explore: profile {}, shard {}/{}, {} jobs, output {}",
        o.profile.name(),
        o.shard.index,
        o.shard.count,
        o.jobs,
        o.out.display()
    );
    match sweep::sweep(&o) {
        Ok(s) => finish(&s, &o.out, &o.known),
        Err(e) => {
            eprintln!("{e}");
            EXIT_IO
        }
    }
}

/// Prints the summary, and every new failure's minimal scenario in full (a CI log shows the
/// test to copy). Fails when a failure is not a known one.
fn finish(s: &summary::Summary, out: &std::path::Path, known: &Known) -> i32 {
    println!("{}", s.markdown());
    let mut new = 0usize;
    for f in &s.failures {
        if let Some(entries) = known.explain(f) {
            let findings: Vec<&str> = entries.iter().map(|e| e.finding.as_str()).collect();
            println!("known failure: seed {} ({})", f.seed, findings.join(", "));
            continue;
        }
        new += 1;
        if let Some(m) = &f.minimal
            && let Ok(text) = std::fs::read_to_string(m)
        {
            println!("---- {m}\n{text}");
        }
    }
    // The seeds run are only needed to tell which known failures passed: no list, no reread.
    let ran: Vec<u64> = if known.is_empty() {
        Vec::new()
    } else {
        summary::read_dir(out)
            .map(|rs| rs.iter().map(|r| r.seed).collect())
            .unwrap_or_default()
    };
    for e in known.now_passing(&s.failures, &ran) {
        println!(
            "known failure no longer fails: seed {} ({}): remove it from the list",
            e.seed, e.finding
        );
    }
    println!("wrote: {}", out.join("summary.md").display());
    if new == 0 {
        if !s.passed() {
            println!("{} failing seeds, all known", s.failures.len());
        }
        EXIT_OK
    } else {
        println!("{new} failing seeds not in the known failures");
        EXIT_CHECK_FAILED
    }
}

fn cmd_merge(dirs: &[PathBuf], out: Option<PathBuf>) -> i32 {
    let s = match summary::merge(dirs) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_BAD_INPUT;
        }
    };
    let out = out.unwrap_or_else(|| PathBuf::from("target/hmsim-explore-merged"));
    if let Err(e) = std::fs::create_dir_all(&out)
        .map_err(|e| format!("{}: {e}", out.display()))
        .and_then(|_| summary::write(&out, &s))
    {
        eprintln!("{e}");
        return EXIT_IO;
    }
    finish(&s, &out, &Known::default())
}
