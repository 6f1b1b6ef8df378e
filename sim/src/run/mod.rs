//! Stage 5, the run: plan → world → stepped simulation → history.
//!
//! The runner steps the world itself (rather than `Sim::run`) so it can fire the fault
//! timeline at its simulated times ([`crate::inject::apply`]), sample the world, and stop as
//! soon as the run is quiescent after `duration` (nothing that must arrive is still on its
//! way, judged by [`crate::oracle`], and no device or connector session the `liveness` check
//! awaits before its bound is down); if it is not quiescent by `duration + drain`, the run fails with what it
//! was still waiting for.
//!
//! - [`sample`]: what is read from the world while it runs (sessions, status pages, PRG
//!   states, the cloud's view).
//! - [`collect`]: what is read from the world at the end (counters, group facts, secrets),
//!   and the log capture for `no_secrets_in_logs`.
//! - `quiet`: the quiescence judgement, incremental (what changed and what is still open).

pub mod collect;
mod quiet;
pub mod sample;

use crate::history::History;
use crate::history::observer::Observer;
use crate::plan::Plan;
use crate::plan::faults::Timed;
use crate::plan::topology::UserSpec;
use crate::scenario::Scenario;
use crate::world::World;
use quiet::Quiet;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// How often, after `duration`, the runner checks whether the run is quiescent.
pub const QUIESCENCE_EVERY: Duration = Duration::from_secs(1);
pub use crate::history::SAMPLES_MAX;

/// Progress callback payload.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Simulated time so far.
    pub elapsed: Duration,
    /// Planned simulated duration (without drain).
    pub duration: Duration,
    /// Messages sent so far.
    pub sent: usize,
    /// Devices logged in now.
    pub devices_up: usize,
}

/// What the run must gather besides the history every run keeps.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Capture the run's log and the secrets it knows (for `no_secrets_in_logs`).
    pub capture_log: bool,
    /// Whether a check still awaits something at `now` (a device or connector session
    /// `liveness` expects back before its bound): the run then goes on, within its drain. Given by the caller, since
    /// the checks are a later stage than the run.
    pub awaits: Option<Awaits>,
    /// How often `progress` is called, in simulated time; `None`: every 2 % of the duration
    /// (at least every simulated second). `hmsim run --progress-every 1m` sets it, for a line
    /// (and a CPU-seconds figure) per simulated minute.
    pub progress_every: Option<Duration>,
    /// A self-check of the incremental quiescence judgement: from the start of the run, once
    /// per simulated second, judge both incrementally and over the whole history and panic if
    /// they differ (the count lands in [`History::quiescence_self_checks`]). Slow; for tests.
    pub self_check_quiescence: bool,
}

/// See [`Options::awaits`]. The last argument is the 72 h rule's uses of the history so far,
/// kept up to date by the runner ([`crate::oracle::activity::LiveUses`]) so that a check need
/// not rebuild them over every message each simulated second of the drain (issue 16).
pub type Awaits = fn(&Scenario, &History, Duration, &crate::oracle::activity::Uses) -> bool;

/// Runs `s` with `seed`, calling `progress` every few simulated seconds.
pub fn run(s: &Scenario, seed: u64, opts: Options, progress: &mut dyn FnMut(Progress)) -> History {
    // `no_secrets_in_logs` judges everything the run logs: capture it (only then).
    let (mut out, log) = collect::capture(opts.capture_log, || run_world(s, seed, opts, progress));
    if let (Some(ev), Some((log, cut))) = (out.secrets.as_mut(), log) {
        (ev.log, ev.log_cut) = (log, cut);
    }
    out
}

fn run_world(
    s: &Scenario,
    seed: u64,
    opts: Options,
    progress: &mut dyn FnMut(Progress),
) -> History {
    let plan = Plan::new(s, seed);
    let observer = Rc::new(Observer::with_identities(plan.jid_of_email(s)));
    let mut world = World::build(s, &plan, observer.clone());
    let mut out = History::from_history(seed, observer, plan.users.clone());
    out.contacts = plan.contacts.clone();
    let progress_every = opts
        .progress_every
        .unwrap_or((s.duration.0 / 50).max(Duration::from_secs(1)));
    step_loop(
        &mut world,
        (s, opts.awaits, progress_every, opts.self_check_quiescence),
        &plan.timeline,
        &mut out,
        progress,
    );
    collect::finish(&world, s, opts, &mut out);
    out
}

fn step_loop(
    world: &mut World<'_>,
    (s, awaits, progress_every, self_check): (&Scenario, Option<Awaits>, Duration, bool),
    timeline: &[Timed],
    out: &mut History,
    progress: &mut dyn FnMut(Progress),
) {
    let mut next_bridge = Duration::ZERO;
    let mut next_quiescence = Duration::ZERO;
    let mut prg_watch = sample::Watch::default();
    let mut quiet = Quiet::self_checking(self_check);
    let duration = s.duration.0;
    let deadline = duration + s.drain.0;
    let sample_every = crate::history::sample_every(s);
    let (mut next_fault, mut next_sample, mut next_progress) =
        (0usize, Duration::ZERO, Duration::ZERO);
    // Bounded: the loop ends by `deadline`, which is finite, one tick per iteration.
    loop {
        let now = world.sim.elapsed();
        prg_watch.step(world, now);
        next_fault = fire_faults(world, &timeline[next_fault..], now, out) + next_fault;
        if now >= next_bridge {
            sample::bridge(&world.hybrid, out, now);
            next_bridge += sample::BRIDGE_SAMPLE;
        }
        if now >= next_sample {
            sample::clients(out, &world.imp, now);
            prg_watch.sample(out, now);
            sample::series(&world.hybrid, out, now);
            next_sample += sample_every;
        }
        if now >= next_progress {
            progress(Progress {
                elapsed: now,
                duration,
                sent: out.observer.sent_count(),
                devices_up: out.observer.devices_up(),
            });
            next_progress += progress_every;
        }
        quiet.check_before(s, out, (now, duration));
        // Quiescence is judged once per simulated second, not per tick.
        if now >= duration && next_fault >= timeline.len() && now >= next_quiescence {
            next_quiescence = now + QUIESCENCE_EVERY;
            collect::webex_activity(&world.hybrid, out);
            // What `liveness` still waits for keeps the run going, never past its drain.
            let awaited = now + QUIESCENCE_EVERY < deadline
                && awaits.is_some_and(|awaits| awaits(s, out, now, quiet.uses(s, out)));
            if !awaited && quiet.judge(s, out) {
                break;
            }
        }
        if now >= deadline {
            out.failure = Some(waiting_for(s, out, deadline, &timeline[next_fault..]));
            break;
        }
        if let Err(e) = world.sim.step() {
            out.failure = Some(format!(
                "a host failed at {}: {e}",
                crate::scenario::units::format_duration(now)
            ));
            break;
        }
        out.steps += 1;
    }
    out.elapsed = world.sim.elapsed();
    sample::clients(out, &world.imp, out.elapsed);
}

/// Applies the due actions at the head of `timeline` at `now`, recording each in the trace
/// digest and the history. Returns how many were applied.
fn fire_faults(
    world: &mut World<'_>,
    timeline: &[Timed],
    now: Duration,
    out: &mut History,
) -> usize {
    let due = timeline.iter().take_while(|t| t.at <= now).count();
    for t in &timeline[..due] {
        crate::inject::apply(world, &t.action, now);
        out.observer
            .fault(now, &format!("{} {}", t.kind, t.detail()));
        out.applied.push(Timed {
            at: now,
            ..t.clone()
        });
    }
    due
}

/// Nothing that must arrive is still on its way.
fn quiescent(s: &Scenario, out: &History) -> bool {
    let bridged = crate::plan::topology::uses_cloud(s);
    // Without a bridge a message with one delivery is done (cheap: no oracle needed).
    if !bridged && out.observer.undelivered().is_empty() {
        return true;
    }
    awaited(s, out, 1).is_empty()
}

/// Up to `limit` messages, in send order, that must still arrive: what the run waits for.
/// Messages a fault may have swallowed (at risk) are not awaited.
fn awaited(s: &Scenario, out: &History, limit: usize) -> Vec<String> {
    use crate::oracle::{Expect, Oracle};
    // The oracle indexes the session history: built only when something is undelivered.
    let oracle = Oracle::new(s, out);
    if crate::plan::topology::uses_cloud(s) {
        // Across the bridge each recipient client is judged: a message may still be on its
        // way to the recipient's other client (Webex after Jabber).
        let by_jid: BTreeMap<&str, &UserSpec> =
            out.users.iter().map(|u| (u.jid.as_str(), u)).collect();
        let uses = crate::oracle::activity::Uses::of(out);
        return out.observer.with_messages(|msgs| {
            msgs.filter(|(_, m)| {
                if crate::oracle::never_at_cloud(m) {
                    return false;
                }
                let missing = oracle.missing(&by_jid, m, &out.bridge, &uses).0;
                !missing.is_empty() && !oracle.excused(m, &missing)
            })
            .map(|(id, _)| id.to_string())
            .take(limit)
            .collect()
        });
    }
    out.observer.with_messages(|msgs| {
        msgs.filter(|(_, m)| {
            m.deliveries.is_empty()
                && !crate::oracle::never_at_cloud(m)
                && oracle.expect(m) == Expect::Must
        })
        .map(|(id, _)| id.to_string())
        .take(limit)
        .collect()
    })
}

/// A liveness failure message: what the run was still waiting for (messages that must
/// arrive, not those at risk from faults) and devices not logged in.
fn waiting_for(s: &Scenario, out: &History, deadline: Duration, unfired: &[Timed]) -> String {
    // Quiescence is only judged once the timeline has run out: a fault still to come at the
    // deadline is what kept the run going, not a message.
    if let Some(next) = unfired.first() {
        return format!(
            "not finished by duration + drain ({}): {} fault actions still to come (the next, {} {}, at {})",
            crate::scenario::units::format_duration(deadline),
            unfired.len(),
            next.kind,
            next.detail(),
            crate::scenario::units::format_duration(next.at)
        );
    }
    let pending = awaited(s, out, usize::MAX);
    let down = out.observer.devices_down();
    let mut msg = format!(
        "not quiescent by duration + drain ({}): waiting for {} of {} messages to be delivered",
        crate::scenario::units::format_duration(deadline),
        pending.len(),
        out.observer.sent_count()
    );
    if !pending.is_empty() {
        msg.push_str(&format!(
            " (first: {})",
            pending
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !down.is_empty() {
        let names: Vec<String> = down
            .iter()
            .take(5)
            .map(|(u, d)| format!("{u}/{d}"))
            .collect();
        msg.push_str(&format!(
            "; {} devices not logged in (first: {})",
            down.len(),
            names.join(", ")
        ));
        msg.push_str(&relogin_past_deadline(s, out, &down, deadline));
    }
    msg
}

/// Names a device not logged in at the deadline whose client re-login bound
/// ([`crate::plan::imp::relogin_bound`]) lies past it: the run was too short for the device
/// to come back, so what waits for it in offline storage was not lost by the model; the
/// scenario's `drain` must cover the bound. Empty when no such device.
fn relogin_past_deadline(
    s: &Scenario,
    out: &History,
    down: &[(String, String)],
    deadline: Duration,
) -> String {
    let homes: BTreeMap<&str, String> = out
        .users
        .iter()
        .map(|u| (u.jid.as_str(), u.home_host(s)))
        .collect();
    let late = down.iter().find_map(|(u, d)| {
        let (bound, why) = crate::plan::imp::relogin_bound(s, homes.get(u.as_str())?)?;
        (bound > deadline).then_some((u, d, bound, why))
    });
    let Some((u, d, bound, why)) = late else {
        return String::new();
    };
    let f = crate::scenario::units::format_duration;
    format!(
        "; {u}/{d} may log in again as late as {} ({why}), past duration + drain ({}): messages to it wait in offline storage; make `drain` at least {}",
        f(bound),
        f(deadline),
        f(bound.saturating_sub(s.duration.0))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::rng::RngFactory;
    use fakes::observe::{ClientKind, Delivered, Recorder as _, Sent};

    const ALICE: &str = "user00000@example.com";
    const BOB: &str = "user00001@example.com";

    /// Seeds 6, 7 and 12 of `imp-crash-intercluster-routing`: the crashed node's user came
    /// back only after the run, as the guide allows ("client re-login 120-537 s", "MDM roughly
    /// doubles failover times", spec 65): the failure names the bound and the field to change.
    #[test]
    fn a_device_whose_relogin_bound_outlasts_the_drain_is_named_with_the_bound() {
        let s = crate::parse(
            "t.yaml",
            "name: t\nseed: 1\nduration: 2m\ndrain: 1m\ntopology:\n  imp_clusters: [{ name: a, nodes: 2, mdm: true }]\nusers: { count: 2, jabber: 100% }\nfaults:\n- at: 1m\n  for: 30s\n  crash: [imp-a-2]\n",
        )
        .expect("valid test scenario");
        let obs = Rc::new(Observer::new());
        let users = crate::plan::topology::population(&s, &RngFactory::new(1));
        let out = History::from_history(1, obs.clone(), users);
        let on_crashed = out
            .users
            .iter()
            .find(|u| u.home_host(&s) == "imp-a-2")
            .expect("a user homed on imp-a-2")
            .jid
            .clone();
        obs.session("jabber-1", &on_crashed, "d1", true, "logged in");
        obs.session(
            "jabber-1",
            &on_crashed,
            "d1",
            false,
            "server closed the connection",
        );
        let msg = waiting_for(&s, &out, Duration::from_secs(180), &[]);
        // 60 s + 3 × 30 s keepalive + 2 × 537 s = 1224 s; the drain must reach 1224 - 120 s.
        assert!(
            msg.contains(&format!(
                "{on_crashed}/d1 may log in again as late as 20m24s"
            )),
            "{msg}"
        );
        assert!(msg.contains("the crash of imp-a-2 at 1m"), "{msg}");
        assert!(msg.contains("make `drain` at least 18m24s"), "{msg}");
        let long = crate::parse(
            "t.yaml",
            "name: t\nseed: 1\nduration: 2m\ndrain: 19m\ntopology:\n  imp_clusters: [{ name: a, nodes: 2, mdm: true }]\nusers: { count: 2, jabber: 100% }\nfaults:\n- at: 1m\n  for: 30s\n  crash: [imp-a-2]\n",
        )
        .expect("valid test scenario");
        let msg = waiting_for(&long, &out, Duration::from_secs(21 * 60), &[]);
        assert!(!msg.contains("may log in again"), "{msg}");
    }

    #[test]
    fn the_kept_quiescence_verdict_changes_with_the_history_it_reads() {
        let s = crate::parse(
            "t.yaml",
            "name: t\nseed: 1\nduration: 1m\ntopology:\n  imp_clusters: [{ name: a, nodes: 1 }]\nusers: { count: 2, jabber: 100% }\n",
        )
        .expect("valid test scenario");
        let obs = Rc::new(Observer::new());
        let users = crate::plan::topology::population(&s, &RngFactory::new(1));
        let out = History::from_history(1, obs.clone(), users);
        let mut quiet = Quiet::default();
        for u in [ALICE, BOB] {
            obs.session("jabber-1", u, "d1", true, "logged in");
        }
        assert!(quiet.judge(&s, &out), "nothing sent: quiescent");
        obs.sent(
            "jabber-1",
            Sent {
                id: "m1".into(),
                from: ALICE.into(),
                to: BOB.into(),
                client: ClientKind::Jabber,
                device: "d1".into(),
                body: None,
            },
        );
        assert!(!quiet.judge(&s, &out), "a message on its way");
        assert!(!quiet.judge(&s, &out), "still on its way");
        obs.delivered(
            "jabber-1",
            Delivered {
                id: "m1".into(),
                from: ALICE.into(),
                to: BOB.into(),
                device: "d1".into(),
                client: ClientKind::Jabber,
                delayed: false,
                carbon: false,
                body: None,
            },
        );
        assert_eq!(quiet.judge(&s, &out), quiescent(&s, &out));
        assert!(quiet.judge(&s, &out), "delivered: quiescent again");
    }

    /// Issue 16: quiescence is judged incrementally (what changed, what is still open); the
    /// full judgement over the whole history stays as the reference. At every simulated second
    /// of these library scenarios (before `duration` here, after it in `Quiet::judge`'s debug
    /// check) both must agree: without a bridge (offline storage off: discards), across it
    /// (the interop matrix, storage off with Hybrid Message, the 72 h rule's uses), with a
    /// PRG failover and its automatic fallback (at risk) and a node down for good (stranded
    /// copies).
    #[test]
    fn the_incremental_quiescence_judgement_equals_the_full_one_at_every_second() {
        for name in LIBRARY {
            let path = format!("{}/../scenarios/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
            let s = crate::load(std::path::Path::new(&path)).expect("a library scenario");
            let opts = Options {
                self_check_quiescence: true,
                ..Options::default()
            };
            let out = run(&s, s.seed, opts, &mut |_| {});
            let seconds = s.duration.0.as_secs();
            assert!(
                out.quiescence_self_checks + 1 >= seconds,
                "{name}: judged at every second before its duration"
            );
        }
    }

    /// See [`the_incremental_quiescence_judgement_equals_the_full_one_at_every_second`].
    const LIBRARY: [&str; 5] = [
        "imp-offline-storage-off",
        "imp-offline-storage-hybrid-off",
        "interop-matrix",
        "imp-crash-for-good-no-ha-messages",
        "imp-prg-auto-fallback",
    ];

    /// `Options::progress_every` sets how often the progress callback comes (by default every
    /// 2 % of the duration, at least every second).
    #[test]
    fn progress_comes_every_interval_asked() {
        let s = crate::parse(
            "t.yaml",
            "name: t\nseed: 1\nduration: 2m\ntick: 500ms\ntopology:\n  imp_clusters: [{ name: a, nodes: 1 }]\nusers: { count: 2, jabber: 100% }\n",
        )
        .expect("valid test scenario");
        let mut at = Vec::new();
        let opts = Options {
            progress_every: Some(Duration::from_secs(30)),
            ..Options::default()
        };
        run(&s, 1, opts, &mut |p| at.push(p.elapsed.as_secs()));
        assert_eq!(at, [0, 30, 60, 90, 120]);
        let mut count = 0;
        run(&s, 1, Options::default(), &mut |_| count += 1);
        assert_eq!(count, 51, "every 2.4 s of 2 minutes, both ends");
    }
}
