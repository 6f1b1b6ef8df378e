//! Scale benches of the Large-node traffic shape, each quoted against a raw-turmoil baseline
//! measured in the same command (the machine is shared and noisy: only ratios compare).
//!
//! - `cargo bench -p benches --bench scale` (or `-- compare [USERS] [YAML…]`): the raw
//!   baseline ([`benches::raw`]: USERS TCP connections, 150-byte pings every 30 s, one 300-byte
//!   message per user per 10 min), then the harness on the same shape, Jabber and IM&P only
//!   (`c2s`) and with the connector and Webex App (`hybrid`), each as simulated seconds per
//!   wall second over the busy window and as a ratio to the baseline. Every further argument is
//!   YAML added to the hybrid scenario, run as one more variant (a lever, e.g.
//!   `'keepalive: { kind: whitespace, interval: 30s }'`), with its ratio to the plain one.
//! - `-- table [USERS,USERS,…] [YAML]`: the hybrid shape for 10 simulated minutes at each size
//!   (default 5000,15000,30000): wall seconds and CPU seconds for every simulated minute (the
//!   connector starts in the first, chat starts at 2 min), the peak RSS so far and the raw
//!   baseline's rate at that size.
//!
//! Every rate is printed twice: per wall second, and per CPU second of this process. On a
//! shared machine the second is the one to compare (the run and its baseline may get very
//! different shares of a core over minutes); both are ratios to the baseline.
//! - `-- cluster [USERS,…] [MINUTES] [YAML]`: as `table` (10 minutes unless MINUTES), on the
//!   six-node shape of `cluster-75k` (six IM&P nodes in three PRG pairs, six Large Expressway
//!   nodes, 8 + 8 farms), no fault. With `BENCH_MARKS` set, `table` and `cluster` print each
//!   simulated minute's start with the machine's uptime on stderr (to cut a
//!   `perf record -k boottime` profile by minute).
//! - `-- raw USERS`: the raw baseline alone at USERS connections (to quote a whole
//!   `hmsim run` against, in the same command).
//! - `-- axl [USERS,…]`: discovery's paging through the fake AXL service at each size, one
//!   table per query (as the service does) against a table built for every page (as it did),
//!   in the same run.

use benches::shape::{self, Shape, Timed};
use std::time::Duration;

/// The busy window measured in `compare`: after logins and the connector's start.
const WARM: Duration = Duration::from_secs(180);
/// The end of the `compare` runs.
const COMPARE_MINUTES: u64 = 7;
/// The `table` runs' length.
const TABLE_MINUTES: u64 = 10;

fn main() {
    // cargo bench passes `--bench`; anything starting with `--` is cargo's.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args.first().map(String::as_str) {
        Some("table") => table(Shape::Hybrid, TABLE_MINUTES, &args[1..]),
        Some("cluster") => {
            let minutes = args.get(2).and_then(|a| a.parse().ok());
            let rest: Vec<String> = args
                .iter()
                .skip(1)
                .take(1)
                .chain(args.get(3))
                .cloned()
                .collect();
            table(Shape::Cluster, minutes.unwrap_or(TABLE_MINUTES), &rest)
        }
        Some("compare") => compare(&args[1..]),
        Some("raw") => {
            let users = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(22_500);
            let r = shape::raw_rate(users, WARM, WARM + Duration::from_secs(240));
            println!(
                "raw turmoil, {users} connections: {:.1} sim-s/wall-s, {} sim-s/cpu-s",
                r.wall,
                fmt_rate(r.cpu)
            );
        }
        Some("axl") => axl(&args[1..]),
        _ => compare(&args),
    }
}

/// A run's simulated seconds per wall second and per CPU second over the busy window.
fn busy(t: &Timed, what: &str) -> (f64, Option<f64>) {
    if let Some(f) = &t.failure {
        eprintln!("warning: the {what} run failed: {f}");
    }
    let end = Duration::from_secs(COMPARE_MINUTES * 60);
    let wall = t.rate(WARM, end).expect("progress marks cover the window");
    (wall, t.cpu_rate(WARM, end))
}

fn fmt_rate(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.1}"))
}

fn fmt_ratio(a: Option<f64>, b: Option<f64>) -> String {
    a.zip(b)
        .map_or("-".into(), |(a, b)| format!("{:.3}", a / b))
}

fn compare(args: &[String]) {
    let users: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(3000);
    let extras: Vec<&String> = args.iter().skip(1).collect();
    let end = Duration::from_secs(COMPARE_MINUTES * 60);
    let raw = shape::raw_rate(users, WARM, end);
    let per_frame_us = (end - WARM).as_secs_f64() / raw.wall / raw.frames.max(1) as f64 * 1e6;
    println!(
        "shape: {users} users, window {}-{} s simulated; sim-s per wall-s | per cpu-s",
        WARM.as_secs(),
        end.as_secs()
    );
    println!(
        "raw turmoil      {:8.1} | {:>8}  ({} frames, {per_frame_us:.2} us each)",
        raw.wall,
        fmt_rate(raw.cpu),
        raw.frames
    );
    let mut plain = (0.0, None);
    for (name, s) in [
        ("harness c2s", Shape::C2s),
        ("harness hybrid", Shape::Hybrid),
    ] {
        let t = shape::run(&shape::yaml(s, users, COMPARE_MINUTES, 60, ""));
        let (w, c) = busy(&t, name);
        println!(
            "{name:<16} {w:8.1} | {:>8}  ratio to raw {:.3} | {}",
            fmt_rate(c),
            w / raw.wall,
            fmt_ratio(c, raw.cpu)
        );
        plain = (w, c);
    }
    for extra in extras {
        let t = shape::run(&shape::yaml(
            Shape::Hybrid,
            users,
            COMPARE_MINUTES,
            60,
            extra,
        ));
        let (w, c) = busy(&t, extra);
        println!(
            "hybrid + {extra}\n                 {w:8.1} | {:>8}  ratio to raw {:.3} | {}, to plain hybrid {:.3} | {}",
            fmt_rate(c),
            w / raw.wall,
            fmt_ratio(c, raw.cpu),
            w / plain.0,
            fmt_ratio(c, plain.1)
        );
    }
}

fn table(shape: Shape, minutes: u64, args: &[String]) {
    let sizes: Vec<usize> = args
        .first()
        .map(|a| a.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![5000, 15000, 30000]);
    let extra = args.get(1).map(String::as_str).unwrap_or("");
    println!(
        "users  raw-sim-s/wall-s|cpu-s  wall-s, then cpu-s, per simulated minute 1..{minutes}  total-s  peak-RSS-MiB"
    );
    for users in sizes {
        let raw = shape::raw_rate(users, WARM, WARM + Duration::from_secs(120));
        let t = shape::run(&shape::yaml(shape, users, minutes, 120, extra));
        if let Some(f) = &t.failure {
            eprintln!("warning: the {users}-user run failed: {f}");
        }
        let per_minute = |f: &dyn Fn(Duration, Duration) -> Option<Duration>| -> String {
            (0..minutes)
                .map(|m| {
                    let (a, b) = (
                        Duration::from_secs(m * 60),
                        Duration::from_secs((m + 1) * 60),
                    );
                    f(a, b).map_or("-".into(), |w| format!("{:.2}", w.as_secs_f64()))
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let rss = shape::peak_rss_mib().map_or("-".into(), |m| format!("{m:.0}"));
        println!(
            "{users:>6} {:8.1}|{}  wall {}  {:.1}  {rss}",
            raw.wall,
            fmt_rate(raw.cpu),
            per_minute(&|a, b| t.wall_between(a, b)),
            t.total.as_secs_f64()
        );
        println!(
            "{users:>6} {:>17}  cpu  {}",
            "",
            per_minute(&|a, b| t.cpu_between(a, b))
        );
    }
}

fn axl(args: &[String]) {
    let sizes: Vec<usize> = args
        .first()
        .map(|a| a.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![5000, 15000, 30000, 75000]);
    println!("users  pages-from-one-table-ms  table-per-page-ms  ratio");
    for users in sizes {
        let (one, rows) = benches::axl::page_through(users, false);
        let (per_page, rows2) = benches::axl::page_through(users, true);
        assert_eq!(rows, rows2);
        println!(
            "{users:>6} {:>10.1} {:>18.1} {:>8.1}",
            one.as_secs_f64() * 1e3,
            per_page.as_secs_f64() * 1e3,
            per_page.as_secs_f64() / one.as_secs_f64()
        );
    }
}
