//! Shrinking: reduce a failing scenario while the same check keeps failing for the same
//! reason ([`super::summary::Failure::reason`]).
//!
//! Greedy: list the one-step reductions of the current scenario that still validate (drop a
//! check other than the failing one, a fault, a workload; fewer users, fewer shares of special
//! users, one device; drop a cluster, a node; a shorter duration; a fault earlier or shorter;
//! fewer contacts), run them in batches, keep the first that still fails the same way, and
//! start again from it. Stops when no reduction keeps the failure, or at the step or
//! wall-time bound. Every candidate is a full run, so the result is a scenario that fails on
//! its own: the regression test.

use super::Profile;
use super::summary::Failure;
use crate::scenario::units::{Dur, Pct};
use crate::scenario::{Scenario, Workload};
use std::path::Path;
use std::time::{Duration, Instant};

/// Bounds on a shrink.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most reductions kept.
    pub steps_max: u32,
    /// Most candidate runs.
    pub runs_max: u32,
    /// Wall time after which the best scenario so far is the result.
    pub time_max: Duration,
    /// Candidates run at once (the sweep's `--jobs`).
    pub batch: usize,
}

/// What a shrink produced.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// The smallest scenario that still fails the same way.
    pub scenario: Scenario,
    /// The reductions kept, in order.
    pub steps: Vec<String>,
    /// Candidate runs made.
    pub runs: u32,
}

/// Shrinks `original`; `eval` runs a batch of candidates and says which fail the same way.
pub fn shrink(
    original: &Scenario,
    limits: &Limits,
    eval: &mut dyn FnMut(&[Scenario]) -> Vec<bool>,
) -> Shrunk {
    let started = Instant::now(); // allow-nondeterminism: the shrink's wall-time bound
    let mut cur = Shrunk {
        scenario: original.clone(),
        steps: Vec::new(),
        runs: 0,
    };
    let within = |s: &Shrunk| {
        s.steps.len() < limits.steps_max as usize
            && s.runs < limits.runs_max
            && started.elapsed() < limits.time_max
    };
    'outer: while within(&cur) {
        let cands = candidates(&cur.scenario);
        for chunk in cands.chunks(limits.batch.max(1)) {
            if !within(&cur) {
                break 'outer;
            }
            let batch: Vec<Scenario> = chunk.iter().map(|(_, s)| s.clone()).collect();
            let same = eval(&batch);
            cur.runs += batch.len() as u32;
            if let Some(i) = same.iter().position(|x| *x) {
                cur.scenario = chunk[i].1.clone();
                cur.steps.push(chunk[i].0.clone());
                continue 'outer;
            }
        }
        break;
    }
    cur
}

fn valid(s: &Scenario) -> bool {
    crate::plan::validate::validate(s, &crate::checks::Registry).is_empty()
}

/// Every one-step reduction of `s` that still validates, most reducing first.
pub fn candidates(s: &Scenario) -> Vec<(String, Scenario)> {
    let mut out: Vec<(String, Scenario)> = Vec::new();
    let mut add = |what: String, c: Scenario| {
        if valid(&c) {
            out.push((what, c));
        }
    };
    for i in 0..s.faults.len() {
        let mut c = s.clone();
        let f = c.faults.remove(i);
        add(format!("drop fault {}", kinds(&f)), c);
    }
    for i in 0..s.workloads.len() {
        let mut c = s.clone();
        c.workloads.remove(i);
        add(format!("drop workload {i}"), c);
    }
    population(s, &mut add);
    topology(s, &mut add);
    timing(s, &mut add);
    for i in 0..s.checks.len() {
        let mut c = s.clone();
        let name = c.checks.remove(i).name;
        add(format!("drop check {name}"), c);
    }
    out
}

fn kinds(f: &crate::scenario::Fault) -> String {
    crate::plan::validate::fault_kinds(f).join(",")
}

/// One share field of `users`.
type ShareOf = fn(&mut Scenario) -> &mut Pct;

fn population(s: &Scenario, add: &mut dyn FnMut(String, Scenario)) {
    let u = &s.users;
    for count in [2, u.count / 2, u.count.saturating_sub(1)] {
        if count >= 2 && count < u.count {
            let mut c = s.clone();
            c.users.count = count;
            add(format!("{count} users"), c);
        }
    }
    let shares: [(&str, ShareOf); 6] = [
        ("hidden_status", |s| &mut s.users.hidden_status),
        ("without_email", |s| &mut s.users.without_email),
        ("duplicate_mail_id", |s| &mut s.users.duplicate_mail_id),
        ("dnd", |s| &mut s.users.dnd),
        ("out_of_office", |s| &mut s.users.out_of_office),
        ("jid.differs_from_email", |s| {
            &mut s.users.jid.differs_from_email
        }),
    ];
    for (name, field) in shares {
        let mut c = s.clone();
        if *field(&mut c) != Pct::NONE {
            *field(&mut c) = Pct::NONE;
            add(format!("no {name} users"), c);
        }
    }
    if u.jabber_devices > 1 {
        let mut c = s.clone();
        c.users.jabber_devices = 1;
        add("one device per Jabber user".into(), c);
    }
    for (i, w) in s.workloads.iter().enumerate() {
        if let Workload::Chat(ch) = w
            && ch.contacts_per_user > 1
        {
            let mut c = s.clone();
            if let Workload::Chat(x) = &mut c.workloads[i] {
                x.contacts_per_user = 1;
            }
            add(format!("one contact per user in workload {i}"), c);
        }
    }
}

fn topology(s: &Scenario, add: &mut dyn FnMut(String, Scenario)) {
    let t = &s.topology;
    if t.imp_clusters.len() > 1 {
        let mut c = s.clone();
        let gone = c
            .topology
            .imp_clusters
            .pop()
            .map(|x| x.name)
            .unwrap_or_default();
        for e in &mut c.topology.expressway_clusters {
            e.imp_clusters.retain(|n| *n != gone);
        }
        add(format!("drop IM&P cluster {gone}"), c);
    }
    for i in 0..t.imp_clusters.len() {
        if t.imp_clusters[i].nodes > 1 {
            let mut c = s.clone();
            c.topology.imp_clusters[i].nodes -= 1;
            add(
                format!("one IM&P node fewer in cluster {}", t.imp_clusters[i].name),
                c,
            );
        }
    }
    for i in 0..t.expressway_clusters.len() {
        if t.expressway_clusters[i].nodes > 1 {
            let mut c = s.clone();
            c.topology.expressway_clusters[i].nodes -= 1;
            add("one Expressway node fewer".into(), c);
        }
    }
    let farms = &t.client_farms;
    if farms.jabber > 1 || farms.webex > 1 {
        let mut c = s.clone();
        (
            c.topology.client_farms.jabber,
            c.topology.client_farms.webex,
        ) = (1, 1);
        add("one client farm each".into(), c);
    }
}

/// The end of the last fault (its start for an instantaneous one).
fn faults_end(s: &Scenario) -> Duration {
    s.faults
        .iter()
        .map(|f| f.at.0 + f.for_.map(|d| d.0).unwrap_or_default())
        .max()
        .unwrap_or_default()
}

fn timing(s: &Scenario, add: &mut dyn FnMut(String, Scenario)) {
    let shorter = (s.duration.0 * 3 / 4).max(faults_end(s) + Duration::from_secs(60));
    let shorter = Duration::from_secs(shorter.as_secs());
    if shorter < s.duration.0 {
        let mut c = s.clone();
        c.duration = Dur(shorter);
        add(format!("duration {}", Dur(shorter)), c);
    }
    for i in 0..s.faults.len() {
        let f = &s.faults[i];
        let earlier = Duration::from_secs((f.at.0.as_secs() / 2).max(60));
        if earlier < f.at.0 {
            let mut c = s.clone();
            c.faults[i].at = Dur(earlier);
            add(
                format!("fault {} earlier, at {}", kinds(f), Dur(earlier)),
                c,
            );
        }
        if let Some(d) = f.for_.filter(|d| d.0 >= Duration::from_secs(20)) {
            let mut c = s.clone();
            let half = Dur::from_secs(d.0.as_secs() / 2);
            c.faults[i].for_ = Some(half);
            add(format!("fault {} shorter, for {half}", kinds(f)), c);
        }
    }
}

/// The comment at the top of a minimal scenario: what it shows and how to reproduce it.
pub fn header(target: &Failure, r: &Shrunk, file: &Path, seed: u64, p: Profile) -> Vec<String> {
    vec![
        format!(
            "Minimal scenario found by `hmsim explore --profile {} --seeds {seed}..{}` and shrunk in {} steps ({} runs).",
            p.name(),
            seed + 1,
            r.steps.len(),
            r.runs
        ),
        format!(
            "What it shows: check `{}` fails: {}",
            target.check, target.detail
        ),
        format!("Same reason as the original: {}", target.reason()),
        format!(
            "Reductions: {}",
            if r.steps.is_empty() {
                "none".into()
            } else {
                r.steps.join("; ")
            }
        ),
        format!(
            "Reproduce: cargo run -p sim --release -- run {}",
            file.display()
        ),
        String::new(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explore::generator;

    /// A fake evaluator: "fails" while the scenario still has an `imp_failover` fault and
    /// at least 3 users. The shrink must keep exactly that and drop everything else it can.
    #[test]
    fn shrinking_keeps_the_cause_and_drops_the_rest() {
        let seed = (0..500)
            .find(|&s| {
                let g = generator::generate(s, Profile::Small);
                g.faults.len() >= 2
                    && g.faults.iter().any(|f| f.imp_failover.is_some())
                    && g.users.count > 10
            })
            .expect("a seed with a failover among other faults");
        let original = generator::generate(seed, Profile::Small);
        let fails =
            |s: &Scenario| s.faults.iter().any(|f| f.imp_failover.is_some()) && s.users.count >= 3;
        let limits = Limits {
            steps_max: 100,
            runs_max: 10_000,
            time_max: Duration::from_secs(600),
            batch: 4,
        };
        let r = shrink(&original, &limits, &mut |b| b.iter().map(fails).collect());
        assert!(fails(&r.scenario));
        assert_eq!(r.scenario.faults.len(), 1, "{:?}", r.steps);
        assert_eq!(r.scenario.users.count, 3, "{:?}", r.steps);
        assert!(
            r.scenario.workloads.is_empty()
                || candidates(&r.scenario).iter().all(|(_, c)| !fails(c))
        );
        assert!(valid(&r.scenario));
    }

    /// Explore seed 2019's minimal scenario was shrunk from 10m to 4m28s, below the time a
    /// registration (up to 5 min) and assignment take: at other seeds it then failed
    /// `within_capacity` with no user ever assigned, a failure of the shrink, not the product.
    #[test]
    fn no_candidate_runs_within_capacity_shorter_than_registration_and_assignment() {
        let floor = crate::checks::capacity::DURATION_MIN;
        let carries = |s: &Scenario| s.checks.iter().any(|c| c.name == "within_capacity");
        let mut shrunk = 0;
        for seed in 0..60 {
            let g = generator::generate(seed, Profile::Small);
            if !carries(&g) {
                continue;
            }
            shrunk += 1;
            for (what, c) in candidates(&g).iter().filter(|(_, c)| carries(c)) {
                assert!(c.duration.0 >= floor, "seed {seed}: {what}");
            }
        }
        assert!(shrunk > 0, "no seed of 0..60 carries within_capacity");
    }

    #[test]
    fn every_candidate_validates() {
        for seed in 0..30 {
            for (what, c) in candidates(&generator::generate(seed, Profile::Small)) {
                assert!(valid(&c), "seed {seed}: {what}");
            }
        }
    }
}
