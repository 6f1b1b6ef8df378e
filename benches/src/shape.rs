//! The harness side of the scale benches: scenarios of the Large-node traffic shape at any user
//! count, run with the wall clock read at every progress report.
//!
//! The wall clock and the process's CPU time are read here, in bench code outside the
//! simulation, only to time it. CPU time ([`cpu_time`]) is what a busy shared machine does not
//! inflate: with six builds beside it a run gets a fraction of a core, and its wall seconds
//! then say more about the neighbours than about the run.

use std::time::{Duration, Instant};

/// Which part of the product a shape runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Jabber devices and one IM&P node only: the c2s traffic the raw baseline imitates.
    C2s,
    /// `large-expressway-15k` without its fault: two IM&P nodes (a PRG), one Large
    /// Expressway node running the connector, Webex App for half the users.
    Hybrid,
    /// `cluster-75k` without its fault: a six-node IM&P cluster (three PRG pairs), six Large
    /// Expressway nodes running the connector, eight Jabber and eight Webex App farms.
    Cluster,
}

/// A scenario of `shape` with `users` users for `minutes` simulated minutes, one message per
/// user per 10 minutes from `chat_start_s`, and `extra` YAML lines appended at the top level
/// (settings a lever adds, e.g. `keepalive:`).
pub fn yaml(shape: Shape, users: usize, minutes: u64, chat_start_s: u64, extra: &str) -> String {
    let (topology, share) = match shape {
        Shape::C2s => (
            "  imp_clusters:\n    - { name: a, nodes: 1 }\n  client_farms: { jabber: 4 }\n",
            "  hybrid_message: 0%\n  jabber: 100%\n",
        ),
        Shape::Hybrid => (
            "  imp_clusters:\n    - { name: a, nodes: 2, prg: { high_availability: true } }\n  \
             expressway_clusters:\n    - { name: a, size: large, nodes: 1, imp_clusters: [a] }\n  \
             client_farms: { jabber: 4, webex: 4 }\n",
            "  hybrid_message: 100%\n  jabber: 100%\n  webex: 50%\n",
        ),
        Shape::Cluster => (
            "  imp_clusters:\n    - { name: a, nodes: 6, prg: { high_availability: true } }\n  \
             expressway_clusters:\n    - { name: a, size: large, nodes: 6, imp_clusters: [a] }\n  \
             client_farms: { jabber: 8, webex: 8 }\n",
            "  hybrid_message: 100%\n  jabber: 100%\n  webex: 50%\n",
        ),
    };
    format!(
        "name: bench-{users}\nseed: 15000\nduration: {minutes}m\ntick: 50ms\ndrain: 2m\n\
         topology:\n{topology}users:\n  count: {users}\n{share}workloads:\n  \
         - chat: {{ rate_per_user: 1/10m, contacts_per_user: 5, start: {chat_start_s}s }}\n\
         checks:\n  - no_message_loss\n{extra}"
    )
}

/// One timed run: the wall clock at each progress report, by simulated time.
#[derive(Debug, Clone)]
pub struct Timed {
    /// (simulated time, wall time since the run started), in order.
    pub marks: Vec<(Duration, Duration)>,
    /// (simulated time, this process's CPU time since the run started) at the same reports;
    /// empty where the CPU time cannot be read.
    pub cpu_marks: Vec<(Duration, Duration)>,
    /// Wall time of the whole run, setup and drain included.
    pub total: Duration,
    /// The run's failure, if any (a bench of a failing run measures nothing useful).
    pub failure: Option<String>,
}

impl Timed {
    /// Wall time spent between simulated times `from` and `to` (the nearest progress marks at
    /// or after each).
    pub fn wall_between(&self, from: Duration, to: Duration) -> Option<Duration> {
        let at = |t: Duration| self.marks.iter().find(|(s, _)| *s >= t).map(|(_, w)| *w);
        Some(at(to)?.saturating_sub(at(from)?))
    }

    /// CPU time this process spent between simulated times `from` and `to` (as
    /// [`Self::wall_between`]).
    pub fn cpu_between(&self, from: Duration, to: Duration) -> Option<Duration> {
        let at = |t: Duration| {
            self.cpu_marks
                .iter()
                .find(|(s, _)| *s >= t)
                .map(|(_, c)| *c)
        };
        Some(at(to)?.saturating_sub(at(from)?))
    }

    /// Simulated seconds per wall second between `from` and `to`.
    pub fn rate(&self, from: Duration, to: Duration) -> Option<f64> {
        let wall = self.wall_between(from, to)?.as_secs_f64();
        (wall > 0.0).then(|| (to - from).as_secs_f64() / wall)
    }

    /// Simulated seconds per CPU second between `from` and `to`.
    pub fn cpu_rate(&self, from: Duration, to: Duration) -> Option<f64> {
        let cpu = self.cpu_between(from, to)?.as_secs_f64();
        (cpu > 0.0).then(|| (to - from).as_secs_f64() / cpu)
    }
}

/// Parses and runs `yaml`, timing it.
pub fn run(yaml: &str) -> Timed {
    let s = sim::parse("bench.yaml", yaml).expect("bench scenario is valid");
    let start = Instant::now();
    let cpu_start = cpu_time();
    let (mut marks, mut cpu_marks) = (Vec::new(), Vec::new());
    // With BENCH_MARKS set, each simulated minute's start is printed with the machine's
    // uptime, to cut a `perf record -k boottime` profile by minute (`perf report --time`).
    let print_marks = std::env::var_os("BENCH_MARKS").is_some();
    let mut next_minute = Duration::ZERO;
    let out = sim::run::run(&s, s.seed, sim::run::Options::default(), &mut |p| {
        if print_marks && p.elapsed >= next_minute {
            let up = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
            let up = up.split_whitespace().next().unwrap_or("-");
            eprintln!("mark minute {} uptime {up}", next_minute.as_secs() / 60);
            next_minute += Duration::from_secs(60);
        }
        marks.push((p.elapsed, start.elapsed()));
        if let (Some(c0), Some(c)) = (cpu_start, cpu_time()) {
            cpu_marks.push((p.elapsed, c.saturating_sub(c0)));
        }
    });
    Timed {
        marks,
        cpu_marks,
        total: start.elapsed(),
        failure: out.failure.map(|f| format!("{f:?}")),
    }
}

/// The raw baseline's pace over a window.
#[derive(Debug, Clone, Copy)]
pub struct RawRate {
    /// Simulated seconds per wall second.
    pub wall: f64,
    /// Simulated seconds per CPU second of this process, if the CPU time can be read.
    pub cpu: Option<f64>,
    /// Frames the server answered in the window.
    pub frames: u64,
}

/// The raw baseline's pace between simulated times `from` and `to`.
pub fn raw_rate(users: usize, from: Duration, to: Duration) -> RawRate {
    let (mut sim, answered) = crate::raw::sim(users, Duration::from_millis(50), 15000);
    while sim.elapsed() < from {
        sim.step().expect("raw baseline runs");
    }
    let (start, cpu_start, before) = (Instant::now(), cpu_time(), answered.get());
    while sim.elapsed() < to {
        sim.step().expect("raw baseline runs");
    }
    let span = (to - from).as_secs_f64();
    let cpu = cpu_start
        .zip(cpu_time())
        .map(|(a, b)| b.saturating_sub(a).as_secs_f64())
        .filter(|c| *c > 0.0)
        .map(|c| span / c);
    RawRate {
        wall: span / start.elapsed().as_secs_f64(),
        cpu,
        frames: answered.get() - before,
    }
}

/// CPU time this process has run so far (Linux `/proc/self/schedstat`, nanoseconds on a CPU),
/// if known. The process is single-threaded while a simulation runs, so this is the run's.
pub fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Peak resident memory of this process so far, in MiB (Linux `VmHWM`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
