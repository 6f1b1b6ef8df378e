//! IM&P failover as the connector sees it (spec 61-71, see `docs/protocols.md`): the
//! `migration` and `status_page` checks, connector liveness after faults, and the report's
//! migration curve.
//!
//! Inputs are the run's history, sampled by the runner:
//! - `History::moves`: every session move (a session that opened on another IM&P node than the
//!   one it was last open on), at the exact time it opened there;
//! - `connector_sessions/<exp host>/<imp node>`: open sessions per node, sampled;
//! - `History::status_pages`: every sampled status page, typed.
//!
//! Migration timing: the first move must come within `start_within` of the fault that
//! triggered it (the detection delay, spec 62: up to 15 minutes), and the moves must take
//! between `complete_after` and `complete_within` from the first to the last (the token
//! bucket: 5,000 sessions in about 30 minutes). Measuring completion from the first move
//! keeps the two properties apart: a seed that draws a long detection delay does not make a
//! correctly paced migration fail, and the delay is judged on its own.

use crate::checks::{Check, Entry, Needs, Verdict, boxed};
use crate::history::{CloudShare, History};
use crate::oracle::activity::Uses;
use crate::plan::topology::UserSpec;
use crate::plan::validate::Problem;
use crate::scenario::units::{Pct, Rate, format_duration};
use crate::scenario::{Dur, FailoverMode, Fault, ImpCluster, Scenario};
use connector::core::failover::NodeStatus;
use connector::core::status::{Share, StatusPage};
use reports::{Status, Table};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Series of open sessions per IM&P node.
pub const SESSIONS_SERIES: &str = "connector_sessions/";
/// Rows of the migration curve table: enough to see the delay, the ramp and the plateau.
pub const CURVE_ROWS_MAX: usize = 40;
/// Violations quoted in a detail.
const EXAMPLES_MAX: usize = 5;
/// Percentages on the page have one decimal: a recorded one may differ by half a step.
const PCT_TOLERANCE: f64 = 0.05 + 1e-9;

/// The sampled pages per Expressway host, by sample time (ms).
fn pages(out: &History) -> BTreeMap<String, BTreeMap<u64, &StatusPage>> {
    out.status_pages
        .iter()
        .map(|(host, pages)| {
            let by_t = pages
                .iter()
                .map(|(at, p)| ((at.as_secs_f64() * 1000.0).round() as u64, p))
                .collect();
            (host.clone(), by_t)
        })
        .collect()
}

/// A sampled page is consistent: node sums equal the totals, active + inactive = enabled
/// (spec 70-71), and its percentages add up to 100.
fn consistent(page: &StatusPage) -> Result<(), String> {
    page.consistent()?;
    let sum = page.active_pct() + page.inactive_pct();
    if page.enabled > 0 && (sum - 100.0).abs() > 2.0 * PCT_TOLERANCE {
        return Err(format!("percentages add up to {sum}, not 100"));
    }
    Ok(())
}

/// IM&P nodes the scenario's faults fail over, so the status page must show them as Outage
/// with their users still assigned (spec 63, the guide: "When you manually fail over one of
/// the IM and Presence nodes in a Presence Redundancy Group, ... The Expressway's Message
/// Service status page reports "Outage" status for the source node, but shows users still
/// assigned to that node"): (node, fault time). Only a node that fails over counts: one in a
/// PRG with high availability at that time (a `prg_high_availability` change counts at once,
/// as on IM&P, spec 61), taken out by a PRG failover, or by a crash longer than its cluster's
/// heartbeat timeout (spec 65: the peer takes over once it missed heartbeats that long; a
/// shorter failure fails nothing over and moves no user). And only a node that is home to
/// Hybrid Message users the connector can serve (a mail ID and one home cluster, spec 24-25):
/// a node without any has no users to show as still assigned; users without a mail ID are in
/// Error in Control Hub and never assigned (explore seed 3360). A manual failover while the
/// peer cannot take the users ([`peer_unavailable_at`]) fails nothing over (explore seed 6492).
fn failed_over_nodes(s: &Scenario, users: &[UserSpec]) -> Vec<(String, Duration)> {
    let mut v = Vec::new();
    for f in &s.faults {
        let crash_for = f.for_.map(|d| d.0);
        let mut nodes: Vec<(String, Option<Duration>, bool)> = f
            .crash
            .iter()
            .flat_map(|h| h.0.iter().map(|n| (n.clone(), crash_for, false)))
            .collect();
        nodes.extend(
            f.imp_failover
                .iter()
                .map(|x| (x.node.clone(), None, x.mode == FailoverMode::Manual)),
        );
        for (n, down_for, manual) in nodes {
            let fails_over = s.topology.imp_clusters.iter().any(|c| {
                crate::plan::imp::high_availability_at(s, c, f.at.0)
                    && crate::plan::imp::node_config(c).peer_of(&n).is_some()
                    && down_for.is_none_or(|d| d > c.prg.heartbeat_timeout.0)
                    && !(manual && peer_unavailable_at(s, c, &n, f.at.0))
            });
            let has_users = users
                .iter()
                .any(|u| crate::oracle::interop::served(u) && u.home_host(s) == n);
            if fails_over && has_users {
                v.push((n, f.at.0));
            }
        }
    }
    v
}

/// Whether the PRG peer of `node` (cluster `c`) cannot take `node`'s users over at `at`, so a
/// manual failover of `node` then moves nobody. The guide: "When you manually fail over one
/// of the IM and Presence nodes in a Presence Redundancy Group, the user sessions from the
/// source node migrate to the other node"; a peer that is down, or failed over itself (its
/// users served by `node`, which is then not Normal, spec 65), is no node to migrate to.
fn peer_unavailable_at(s: &Scenario, c: &ImpCluster, node: &str, at: Duration) -> bool {
    let Some(peer) = crate::plan::imp::node_config(c)
        .peer_of(node)
        .map(str::to_string)
    else {
        return false;
    };
    s.faults.iter().filter(|f| f.at.0 < at).any(|f| {
        peer_out(s, c, f, &peer)
            .is_some_and(|(from, until)| from <= at && until.is_none_or(|u| at < u))
    })
}

/// When fault `f` takes `peer` out of its PRG pair's service, and when it is back (`None`:
/// not within the scenario). A manual failover of the peer lasts until its fallback (an
/// `imp_fallback`, or the end of its `for`). A crash or automatic failover makes it down, and
/// once down longer than the heartbeat timeout failed over (spec 65: the survivor takes its
/// users) until a fallback: an `imp_fallback`, or with automatic fallback 30 minutes after it
/// is healthy again.
fn peer_out(
    s: &Scenario,
    c: &ImpCluster,
    f: &Fault,
    peer: &str,
) -> Option<(Duration, Option<Duration>)> {
    let t0 = f.at.0;
    let ends = f.for_.map(|d| t0 + d.0);
    let fallback = s
        .faults
        .iter()
        .filter(|g| g.at.0 >= t0 && g.imp_fallback.as_ref().is_some_and(|x| x.node == peer))
        .map(|g| g.at.0)
        .min();
    let failover = f.imp_failover.as_ref().filter(|x| x.node == peer);
    if failover.is_some_and(|x| x.mode == FailoverMode::Manual) {
        return Some((t0, [ends, fallback].into_iter().flatten().min()));
    }
    let crashed = failover.is_some()
        || f.crash
            .as_ref()
            .is_some_and(|h| h.0.iter().any(|x| x == peer));
    if !crashed {
        return None;
    }
    let takeover_at = t0 + c.prg.heartbeat_timeout.0;
    let taken_over = ends.is_none_or(|e| e > takeover_at)
        && crate::plan::imp::high_availability_at(s, c, takeover_at);
    if !taken_over {
        return Some((t0, ends));
    }
    let auto = ends
        .filter(|_| c.prg.automatic_fallback)
        .map(|e| e + fakes::imp::prg::AUTO_FALLBACK_DELAY);
    Some((t0, [fallback, auto].into_iter().flatten().min()))
}

/// Whether a connector showed `node` on a page sampled before `at`: it served the node when
/// the fault came (a connector that registers later never saw the failover), and does not
/// restart from `at` on without the node's AXL publisher (it could not show the node then,
/// [`crate::checks::liveness::restarts_blind_to`]).
fn served_before(
    s: &Scenario,
    pages: &BTreeMap<String, BTreeMap<u64, &StatusPage>>,
    node: &str,
    at: Duration,
) -> bool {
    let before_ms = at.as_millis() as u64;
    pages.iter().any(|(host, samples)| {
        samples
            .range(..before_ms)
            .any(|(_, p)| p.nodes.iter().any(|n| n.node == node))
            && !crate::checks::liveness::restarts_blind_to(s, host, node, at)
    })
}

/// Spec 63 evidence for a node failed over at `at`: the samples after it where the node
/// shows Outage with users still assigned, as "host: users from t1 to t2".
fn outage_evidence(
    pages: &BTreeMap<String, BTreeMap<u64, &StatusPage>>,
    node: &str,
    at: Duration,
) -> Option<String> {
    let from_ms = at.as_millis() as u64;
    for (host, samples) in pages {
        let shown: Vec<(u64, f64)> = samples
            .range(from_ms..)
            .filter_map(|(t, p)| {
                let n = p.nodes.iter().find(|n| n.node == node)?;
                (n.status != NodeStatus::Operational && n.users > 0).then_some((*t, n.users as f64))
            })
            .collect();
        if let (Some(first), Some(last)) = (shown.first(), shown.last()) {
            let peak = shown.iter().map(|p| p.1).fold(0.0, f64::max);
            return Some(format!(
                "{host} showed {node} as Outage with {peak} users still assigned in {} samples from {:.0}s to {:.0}s",
                shown.len(),
                first.0 as f64 / 1000.0,
                last.0 as f64 / 1000.0
            ));
        }
    }
    None
}

/// The `status_page` check: every sampled page of every connector is consistent, and each
/// failed-over node is shown as Outage while its users are still assigned to it (spec 63).
pub fn status_page(s: &Scenario, out: &History) -> (Status, String) {
    let pages = pages(out);
    let samples: usize = pages.values().map(BTreeMap::len).sum();
    if samples == 0 {
        return (
            Status::Fail,
            "no status page was sampled: the check exercised nothing".into(),
        );
    }
    let mut bad = Vec::new();
    for (host, by_t) in &pages {
        for (t, sample) in by_t {
            if let Err(e) = consistent(sample) {
                bad.push(format!("{host} at {:.0}s: {e}", *t as f64 / 1000.0));
            }
        }
    }
    let Totals {
        bad: totals_bad,
        judged: totals_judged,
        blind,
    } = cluster_totals(s, out);
    bad.extend(totals_bad);
    let mut evidence = Vec::new();
    let expected = failed_over_nodes(s, &out.users)
        .into_iter()
        .filter(|(node, at)| served_before(s, &pages, node, *at));
    for (node, at) in expected {
        match outage_evidence(&pages, &node, at) {
            Some(e) => evidence.push(e),
            None => bad.push(format!(
                "spec 63: no page showed {node} as Outage with its users still assigned after the fault at {:.0}s",
                at.as_secs_f64()
            )),
        }
    }
    if !bad.is_empty() {
        let shown: Vec<String> = bad.iter().take(EXAMPLES_MAX).cloned().collect();
        return (
            Status::Fail,
            format!(
                "{} of {samples} samples or expectations wrong: {}",
                bad.len(),
                shown.join("; ")
            ),
        );
    }
    let mut detail = format!(
        "{samples} pages from {} connector(s) consistent (node sums = totals, active + inactive = enabled, percentages match the counts)",
        pages.len()
    );
    detail.push_str(&format!(
        "; spec 69-70: {totals_judged} last page(s) show the enabled and active users the cloud assigned to the cluster's nodes and delivered to within 72 h"
    ));
    if !blind.is_empty() {
        detail.push_str(&format!(
            " (a peer may show fewer of its users where it could not discover their IM&P cluster then, spec 22: {})",
            blind.join("; ")
        ));
    }
    if evidence.is_empty() {
        detail.push_str("; spec 63: no node with Hybrid Message users failed over while a connector served it, so no Outage was expected");
    } else {
        detail.push_str(&format!("; spec 63: {}", evidence.join("; ")));
    }
    (Status::Pass, detail)
}

/// How old a peer's share on a page may be: each node uploads its share at its heartbeat and
/// reads the others' at its next one (every 30 s, docs/behaviour.md spec 69), so a change
/// reaches a peer's page up to two heartbeats and a sample later.
const PEER_SHARE_LAG_MS: u64 = 2 * 30_000 + 15_000;

/// Spec 69-71: users enabled and active are counted per Expressway cluster, the same on every
/// peer. The expectation comes from the fake cloud, not from the connector: a node's share is
/// the users the cloud assigned to it and, of those, the ones whose activity events it
/// delivered to the node within 72 h (`History::cloud_shares`, each count a range for what was
/// still in flight). Each connector's last page must show (enabled, active) within its node's
/// share at that sample plus, for each peer, the shares the cloud gave that peer within
/// [`PEER_SHARE_LAG_MS`] before it (peers' counts travel with heartbeats, so a page may carry
/// any value a peer passed through then; a peer with no share sampled then counts nothing;
/// a peer that could not discover some of its users then may have counted fewer). A
/// connector that miscounts its own share fails here even when its page adds up its own and
/// its peers' counts faithfully.
fn cluster_totals(s: &Scenario, out: &History) -> Totals {
    let (mut bad, mut judged, mut blind_notes) = (Vec::new(), 0, BTreeSet::new());
    let undiscoverable = crate::checks::liveness::undiscoverable_in_cluster(s, out);
    for e in &s.topology.expressway_clusters {
        let hosts: Vec<String> = (1..=e.nodes)
            .map(|n| crate::plan::topology::exp_host(&e.name, n))
            .collect();
        for h in &hosts {
            let Some((t, page)) = out.status_pages.get(h).and_then(|p| p.last()) else {
                continue;
            };
            let Some(own) = cloud_share_at(out, h, *t) else {
                continue;
            };
            let own = without(own, undiscoverable.get(h).copied().unwrap_or(0));
            judged += 1;
            let from = t.saturating_sub(Duration::from_millis(PEER_SHARE_LAG_MS));
            let peers: Vec<(&String, CloudShare)> = hosts
                .iter()
                .filter(|q| *q != h)
                .map(|q| {
                    let blind = crate::checks::discovery::blind_between(s, out, q, from, *t);
                    if blind > 0 {
                        blind_notes.insert(format!("{q} up to {blind} fewer on {h}'s page"));
                    }
                    (q, lower_by(cloud_shares_between(out, q, from, *t), blind))
                })
                .collect();
            let mut sum = own;
            for (_, p) in &peers {
                sum = add(sum, *p);
            }
            let inside = |v: usize, (lo, hi): (usize, usize)| (lo..=hi).contains(&v);
            if !inside(page.enabled, sum.enabled) || !inside(page.active, sum.active) {
                let counted = own_share_at(out, h, *t);
                bad.push(not_explained(h, (*t, page), own, counted, &peers));
            }
        }
    }
    Totals {
        bad,
        judged,
        blind: blind_notes.into_iter().collect(),
    }
}

/// What [`cluster_totals`] found: the violations, the pages judged, and the peers whose
/// lower bound dropped for users they could not discover then.
struct Totals {
    bad: Vec<String>,
    judged: usize,
    blind: Vec<String>,
}

/// A share without `n` users no node of its cluster can discover (spec 22): none can put
/// them in a node row (spec 71), so the page leaves them out; they may have been active.
fn without(c: CloudShare, n: usize) -> CloudShare {
    CloudShare {
        enabled: (c.enabled.0.saturating_sub(n), c.enabled.1.saturating_sub(n)),
        active: (c.active.0.saturating_sub(n), c.active.1),
    }
}

/// A share whose lower bounds drop by `n` users its node may not have counted then
/// ([`crate::checks::discovery::blind_between`]).
fn lower_by(c: CloudShare, n: usize) -> CloudShare {
    CloudShare {
        enabled: (c.enabled.0.saturating_sub(n), c.enabled.1),
        active: (c.active.0.saturating_sub(n), c.active.1),
    }
}

/// The ranges of two shares added.
fn add(a: CloudShare, b: CloudShare) -> CloudShare {
    CloudShare {
        enabled: (a.enabled.0 + b.enabled.0, a.enabled.1 + b.enabled.1),
        active: (a.active.0 + b.active.0, a.active.1 + b.active.1),
    }
}

/// The cloud's share for `host` sampled at `t`.
fn cloud_share_at(out: &History, host: &str, t: Duration) -> Option<CloudShare> {
    let shares = out.cloud_shares.get(host)?;
    shares.iter().rfind(|(at, _)| *at == t).map(|(_, s)| *s)
}

/// The connector's own count of its share sampled at `t` (for the failure's detail only).
fn own_share_at<'a>(out: &'a History, host: &str, t: Duration) -> Option<&'a Share> {
    let shares = out.status_shares.get(host)?;
    shares.iter().rfind(|(at, _)| *at == t).map(|(_, s)| s)
}

/// Every value the cloud's shares for `host` took in `[from, to]`, as one range per count;
/// none sampled: 0, a node its peers cannot have heard from.
fn cloud_shares_between(out: &History, host: &str, from: Duration, to: Duration) -> CloudShare {
    let held: Vec<CloudShare> = out
        .cloud_shares
        .get(host)
        .into_iter()
        .flatten()
        .filter(|(at, _)| (from..=to).contains(at))
        .map(|(_, s)| *s)
        .collect();
    let span = |f: fn(&CloudShare) -> (usize, usize)| {
        let lo = held.iter().map(|s| f(s).0).min().unwrap_or(0);
        let hi = held.iter().map(|s| f(s).1).max().unwrap_or(0);
        (lo, hi)
    };
    CloudShare {
        enabled: span(|s| s.enabled),
        active: span(|s| s.active),
    }
}

/// A range as text: `8`, or `8-9`.
fn range((lo, hi): (usize, usize)) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

/// Why a last page is wrong: what it shows against what the cloud gave its node and its
/// peers, and what the connector counted as its own share (`counted`, if sampled).
fn not_explained(
    h: &str,
    (t, page): (Duration, &StatusPage),
    own: CloudShare,
    counted: Option<&Share>,
    peers: &[(&String, CloudShare)],
) -> String {
    let peers: Vec<String> = peers
        .iter()
        .map(|(q, c)| format!("{q} ({}, {})", range(c.enabled), range(c.active)))
        .collect();
    let counted = counted.map_or("not sampled".to_string(), |c| {
        format!("({}, {})", c.enabled, c.active)
    });
    format!(
        "spec 69: {h} shows enabled/active ({}, {}) at the end ({:.0}s), not the cloud's share for it ({}, {}: assigned, delivered to within 72 h; the connector counted {counted}) plus the shares the cloud gave each peer in the {} s before ({})",
        page.enabled,
        page.active,
        t.as_secs_f64(),
        range(own.enabled),
        range(own.active),
        PEER_SHARE_LAG_MS / 1000,
        peers.join("; ")
    )
}

/// The moves `from → to` made by every connector: (time in s, user), sorted by time.
fn move_times<'a>(out: &'a History, from: &str, to: &str) -> Vec<(f64, &'a str)> {
    let mut t: Vec<(f64, &str)> = out
        .moves
        .values()
        .flatten()
        .filter(|m| m.from == from && m.to == to)
        .map(|m| (m.at.as_secs_f64(), m.user.as_str()))
        .collect();
    t.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
    t
}

/// The sessions (users) `from` held just before `at` (the last sample before the fault) whose
/// users' home node is `users_of`: what the fault hands over. Users are the connector's key
/// (email); a user not in the population counts.
pub fn held_at(
    out: &History,
    s: &Scenario,
    from: &str,
    at: Duration,
    users_of: &str,
) -> Vec<String> {
    let home: BTreeMap<&str, String> = out
        .users
        .iter()
        .filter_map(|u| Some((u.email.as_deref()?, u.home_host(s))))
        .collect();
    out.session_nodes
        .iter()
        .filter(|(user, ev)| {
            let on = ev.iter().take_while(|(t, _)| *t < at).last();
            on.is_some_and(|(_, n)| n.as_deref() == Some(from))
                && home.get(user.as_str()).is_none_or(|h| h == users_of)
        })
        .map(|(user, _)| user.clone())
        .collect()
}

/// The `migration` check (see the module docs for the timing rules).
pub fn migration(s: &Scenario, out: &History, e: &Migration) -> (Status, String) {
    let all = move_times(out, &e.from, &e.to);
    let triggers = crate::plan::migration::triggers(s, &e.from, &e.to);
    let Some(first_trigger) = triggers.first() else {
        return (
            Status::Fail,
            format!(
                "no fault moves sessions {}→{} (a crash or imp_failover of {}, or an imp_fallback to {})",
                e.from, e.to, e.from, e.to
            ),
        );
    };
    // The trigger is the last fault before the first move after the first trigger.
    let first_move = all
        .iter()
        .map(|m| m.0)
        .find(|t| *t >= first_trigger.at.as_secs_f64());
    let trigger = match first_move {
        Some(m) => triggers
            .iter()
            .rfind(|x| x.at.as_secs_f64() <= m)
            .unwrap_or(first_trigger),
        None => first_trigger,
    };
    let (what, fault_s) = (trigger.what.as_str(), trigger.at.as_secs_f64());
    let moves: Vec<(f64, &str)> = all.into_iter().filter(|m| m.0 >= fault_s).collect();
    if e.sessions == Sessions::Exactly(0) {
        return nothing_moved(e, what, fault_s, &moves);
    }
    let held = match e.sessions {
        Sessions::All => Some(held_at(out, s, &e.from, trigger.at, &trigger.users_of)),
        _ => None,
    };
    if held.as_ref().is_some_and(Vec::is_empty) {
        return (
            Status::Fail,
            format!(
                "{} held no session of {}'s users before the {what} at {fault_s:.0}s: the check exercised nothing",
                e.from, trigger.users_of
            ),
        );
    }
    let (Some(first), Some(last)) = (moves.first(), moves.last()) else {
        return (
            Status::Fail,
            format!(
                "no session moved {}→{} after the {what} at {fault_s:.0}s; expected {} ({})",
                e.from,
                e.to,
                expected(e.sessions, held.as_deref()),
                waiting_for(out)
            ),
        );
    };
    let mut bad = count_problems(e.sessions, held.as_deref(), &moves);
    let observed = timing(e, (what, fault_s), moves.len(), (first.0, last.0), &mut bad);
    if bad.is_empty() {
        (Status::Pass, observed)
    } else {
        (
            Status::Fail,
            format!("{}; observed: {observed}", bad.join("; ")),
        )
    }
}

/// What `sessions` expects, in words.
fn expected(sessions: Sessions, held: Option<&[String]>) -> String {
    match (sessions, held) {
        (Sessions::All, Some(h)) => format!("all {} it held", h.len()),
        (Sessions::AtLeast(n), _) => format!("at least {n}"),
        (Sessions::Exactly(n), _) => n.to_string(),
        (Sessions::All, None) => "all it held".into(),
    }
}

/// What is wrong with the number of moves, naming the held sessions that did not move.
fn count_problems(
    sessions: Sessions,
    held: Option<&[String]>,
    moves: &[(f64, &str)],
) -> Vec<String> {
    let n = moves.len();
    match (sessions, held) {
        (Sessions::Exactly(k), _) if n != k as usize => {
            vec![format!("{n} sessions moved, expected {k}")]
        }
        (Sessions::AtLeast(k), _) if n < k as usize => {
            vec![format!("{n} sessions moved, expected at least {k}")]
        }
        (Sessions::All, Some(held)) => {
            let moved: std::collections::BTreeSet<&str> = moves.iter().map(|m| m.1).collect();
            let stayed: Vec<&str> = held
                .iter()
                .map(String::as_str)
                .filter(|u| !moved.contains(u))
                .collect();
            if stayed.is_empty() {
                return Vec::new();
            }
            vec![format!(
                "{} of the {} sessions held at the fault did not move (e.g. {})",
                stayed.len(),
                held.len(),
                stayed[..stayed.len().min(EXAMPLES_MAX)].join(", ")
            )]
        }
        _ => Vec::new(),
    }
}

/// `sessions: 0`: what is not robust stays not robust (spec 64: without high availability a
/// failed node's sessions are lost, not moved).
fn nothing_moved(
    e: &Migration,
    what: &str,
    fault_s: f64,
    moves: &[(f64, &str)],
) -> (Status, String) {
    match moves.first() {
        None => (
            Status::Pass,
            format!(
                "no session moved {}→{} after the {what} at {fault_s:.0}s, as expected",
                e.from, e.to
            ),
        ),
        Some(first) => (
            Status::Fail,
            format!(
                "{} sessions moved {}→{} after the {what} at {fault_s:.0}s (the first at {:.0}s), expected none",
                moves.len(),
                e.from,
                e.to,
                first.0
            ),
        ),
    }
}

/// Compares the timing of the observed migration (`n` moves, first and last at these times)
/// with `e`, adding what is wrong to `bad`; returns what was observed.
fn timing(
    e: &Migration,
    (what, fault_s): (&str, f64),
    n: usize,
    (first, last): (f64, f64),
    bad: &mut Vec<String>,
) -> String {
    let start = Duration::from_secs_f64(first - fault_s);
    let span = Duration::from_secs_f64(last - first);
    let fmt = |d: Duration| format_duration(Duration::from_secs(d.as_secs()));
    if start > e.start_within.0 {
        bad.push(format!(
            "the first move came {} after the fault, expected within {}",
            fmt(start),
            fmt(e.start_within.0)
        ));
    }
    if span > e.complete_within.0 {
        bad.push(format!(
            "moving took {}, expected at most {}",
            fmt(span),
            fmt(e.complete_within.0)
        ));
    }
    if let Some(after) = e.complete_after
        && span < after.0
    {
        bad.push(format!(
            "moving took {}, expected at least {} (the migration rate was not honoured)",
            fmt(span),
            fmt(after.0)
        ));
    }
    let rate = e
        .rate
        .map(|r| judge_rate(r, e.rate_within, n, last - first, bad));
    let mut observed = format!(
        "{n} sessions moved {}→{} after the {what} at {fault_s:.0}s: first move {} after the fault, last {} after the first ({} after the fault)",
        e.from,
        e.to,
        fmt(start),
        fmt(span),
        fmt(Duration::from_secs_f64(last - fault_s))
    );
    observed.push_str(&rate.unwrap_or_default());
    observed
}

/// Judges the observed rate of `n` moves over `span_s` seconds against `want` ± `within`;
/// returns it in words.
fn judge_rate(want: Rate, within: Pct, n: usize, span_s: f64, bad: &mut Vec<String>) -> String {
    let want_per_s = want.per_second();
    let Some(per_s) = (n >= 2 && span_s > 0.0).then(|| (n - 1) as f64 / span_s) else {
        bad.push(format!(
            "{n} moves in {span_s:.0}s: too few to measure a rate (expected {want})"
        ));
        return String::new();
    };
    let off = per_s / want_per_s - 1.0;
    let words = format!(
        "; rate {per_s:.3}/s = {:.0} per {}, {:+.1} % from {want}",
        per_s * want.per.as_secs_f64(),
        format_duration(want.per),
        off * 100.0
    );
    if off.abs() > f64::from(within.0) / 10_000.0 {
        bad.push(format!(
            "the moves kept {per_s:.3}/s, {:+.1} % from the expected {want} ({want_per_s:.3}/s), more than {within}",
            off * 100.0
        ));
    }
    words
}

/// What the connectors were still waiting for at the end, from their final counters.
fn waiting_for(out: &History) -> String {
    let parts: Vec<String> = out
        .connector_stats
        .iter()
        .map(|(host, m)| {
            let g = |k: &str| m.get(k).copied().unwrap_or(0.0);
            format!(
                "{host}: {} assigned, {} sessions opened, {} moved, {} redirected while moving, {} failed",
                g("assigned"),
                g("sessions_opened"),
                g("sessions_moved"),
                g("sessions_redirected_while_moving"),
                g("sessions_failed")
            )
        })
        .collect();
    if parts.is_empty() {
        "no connector ran".into()
    } else {
        parts.join("; ")
    }
}

/// Connector liveness after faults: every user whose connector session was ever open has one
/// open again at the end, and a session that closed by `fault_end` (the last fault's end) is
/// open again by `bound` (`fault_end` plus `within`). Sessions that open for the first time,
/// or close and reopen later for reasons of their own (72 h inactive, then active), are not
/// late. `None` when no connector session ever opened (nothing to judge). `Err` says what it
/// waited for. Users in `stranded` (homed on a node down for good that no PRG failover took
/// over, [`crate::checks::liveness::stranded_nodes`]) are not waited for (explore seed 2254).
pub fn connector_liveness(
    out: &History,
    (fault_end, bound): (Duration, Duration),
    stranded: &BTreeSet<String>,
) -> Option<Result<String, String>> {
    if !out.bridge.values().any(|ev| ev.iter().any(|(_, up)| *up)) {
        return None;
    }
    let uses = Uses::of(out);
    let t = tally_sessions(out, (fault_end, bound), stranded, &uses);
    Some(sessions_verdict(
        out,
        (t.open, t.retired),
        &t.missing,
        &t.late,
        bound,
    ))
}

/// Whether a connector session [`connector_liveness`] expects open again is closed now: for
/// the runner, which otherwise stops at quiescence after `duration` while the connector may
/// still be waiting out its detection delay before a fallback (spec 62: "You can expect a
/// similar wait for the fallback to complete"; explore seed 2072, a fallback 60 s before the
/// end of `duration`, judged before the delay ran out). `uses` are [`Uses::of`] `out`, kept
/// up to date by the runner (rebuilding them walked every message each simulated second of
/// a drain with a session closed, issue 16); debug builds check them against a rebuild.
pub fn sessions_awaited(
    out: &History,
    window: (Duration, Duration),
    stranded: &BTreeSet<String>,
    uses: &Uses,
) -> bool {
    // Cheap first: most runs end with every session open.
    let closed = out
        .bridge
        .iter()
        .any(|(u, ev)| matches!(ev.last(), Some((_, false))) && !stranded.contains(u));
    if !closed {
        return false;
    }
    let missing = tally_sessions(out, window, stranded, uses).missing;
    debug_assert_eq!(
        missing,
        tally_sessions(out, window, stranded, &Uses::of(out)).missing,
        "the kept uses judge connector sessions otherwise than the rebuilt ones"
    );
    !missing.is_empty()
}

/// What [`connector_liveness`] counts: sessions open, closed on purpose by the 72 h rule,
/// closed and never reopened (`missing`), reopened after the bound (`late`).
struct SessionTally {
    open: usize,
    retired: usize,
    missing: Vec<String>,
    late: Vec<String>,
}

fn tally_sessions(
    out: &History,
    (fault_end, bound): (Duration, Duration),
    stranded: &BTreeSet<String>,
    uses: &Uses,
) -> SessionTally {
    let (mut open, mut missing, mut late) = (0usize, Vec::new(), Vec::new());
    // Sessions are keyed by mail ID, uses by JID (they may differ, spec 24).
    let jid_of: BTreeMap<&str, (&str, bool)> = out
        .users
        .iter()
        .filter_map(|u| Some((u.email.as_deref()?, (u.jid.as_str(), u.hidden))))
        .collect();
    let retires = |user: &str, at: Duration| {
        jid_of
            .get(user)
            .is_some_and(|(jid, hidden)| !hidden && uses.closed_by_72h_rule(jid, at))
    };
    let mut retired = 0usize;
    for (user, ev) in &out.bridge {
        match ev.last() {
            // Closed after 72 h without use of Webex or Jabber (spec 52): on purpose.
            Some((at, false)) if retires(user, *at) => {
                retired += 1;
            }
            Some((_, true)) => {
                open += 1;
                if let Some(at) = reopened_late(ev, fault_end, bound) {
                    late.push(format!("{user} reopened at {:.0}s", at.as_secs_f64()));
                }
            }
            // Homed on a node down for good with no PRG failover: nowhere to open it.
            Some((_, false)) if stranded.contains(user) => {}
            Some((at, false)) => {
                missing.push(format!("{user} closed at {:.0}s", at.as_secs_f64()));
            }
            None => {}
        }
    }
    SessionTally {
        open,
        retired,
        missing,
        late,
    }
}

/// The verdict of [`connector_liveness`] from its counts: sessions `open` and `retired` by the
/// 72 h rule, and the users `missing` or `late`.
fn sessions_verdict(
    out: &History,
    (open, retired): (usize, usize),
    missing: &[String],
    late: &[String],
    bound: Duration,
) -> Result<String, String> {
    if missing.is_empty() && late.is_empty() {
        let retired = if retired > 0 {
            format!(" ({retired} closed after 72 h without use, spec 52)")
        } else {
            String::new()
        };
        return Ok(format!(
            "all {open} connector sessions open again by {:.0}s{retired}",
            bound.as_secs_f64()
        ));
    }
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "waiting for {} connector sessions never reopened (e.g. {})",
            missing.len(),
            missing[..missing.len().min(EXAMPLES_MAX)].join(", ")
        ));
    }
    if !late.is_empty() {
        parts.push(format!(
            "{} connector sessions reopened after the bound {:.0}s (e.g. {})",
            late.len(),
            bound.as_secs_f64(),
            late[..late.len().min(EXAMPLES_MAX)].join(", ")
        ));
    }
    Err(format!("{} [{}]", parts.join("; "), waiting_for(out)))
}

/// When a session that was down at `fault_end` (after having been open) came back, if that
/// was after `bound`.
fn reopened_late(
    ev: &[(Duration, bool)],
    fault_end: Duration,
    bound: Duration,
) -> Option<Duration> {
    let closed_at = ev
        .iter()
        .take_while(|(at, _)| *at <= fault_end)
        .last()
        .filter(|(_, up)| !*up)?;
    let (at, _) = ev
        .iter()
        .find(|(at, up)| *up && *at > closed_at.0 && *at > fault_end)?;
    (*at > bound).then_some(*at)
}

/// The migration curve: open sessions per IM&P node over time (and moves so far), at most
/// [`CURVE_ROWS_MAX`] rows spread evenly over the samples. `None` without connector series.
pub fn curve_table(out: &History) -> Option<Table> {
    let curves: Vec<(&str, &Vec<(f64, f64)>)> = out
        .series
        .iter()
        .filter_map(|(name, p)| name.strip_prefix(SESSIONS_SERIES).map(|n| (n, p)))
        .collect();
    let mut times: Vec<f64> = curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.0))
        .collect();
    times.sort_by(f64::total_cmp);
    times.dedup();
    if times.is_empty() {
        return None;
    }
    let moves: Vec<(f64, f64)> = out
        .moves
        .values()
        .flatten()
        .map(|m| (m.at.as_secs_f64(), 1.0))
        .collect();
    let mut columns = vec!["t (s)".to_string()];
    columns.extend(curves.iter().map(|(n, _)| n.to_string()));
    columns.push("moved so far".into());
    let rows = spread(times.len(), CURVE_ROWS_MAX)
        .into_iter()
        .map(|i| {
            let t = times[i];
            let mut row = vec![format!("{t:.0}")];
            for (_, p) in &curves {
                // A node without open sessions is not sampled: 0 there.
                let v = p.iter().find(|x| x.0 == t).map_or(0.0, |x| x.1);
                row.push(format!("{v:.0}"));
            }
            let moved = moves.iter().filter(|m| m.0 <= t).count();
            row.push(moved.to_string());
            row
        })
        .collect();
    Some(Table {
        title: "Migration curve: open connector sessions per IM&P node (exp host/imp node)".into(),
        columns,
        rows,
    })
}

/// At most `max` indices of `0..len`, evenly spread, first and last included.
fn spread(len: usize, max: usize) -> Vec<usize> {
    if len <= max || max < 2 {
        return (0..len.min(max)).collect();
    }
    let mut v: Vec<usize> = (0..max).map(|k| k * (len - 1) / (max - 1)).collect();
    v.dedup();
    v
}

/// A move series thinned to at most `max` points for the run record (the last kept): the
/// check reads the full series, the record only needs the shape.
pub fn thin(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    spread(points.len(), max)
        .into_iter()
        .map(|i| points[i])
        .collect()
}

/// The `migration` check: the expected migration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    /// Source node.
    pub from: String,
    /// Destination node.
    pub to: String,
    /// Sessions expected to move (see [`Sessions`]).
    pub sessions: Sessions,
    /// The first move happens within this long of the fault.
    pub start_within: Dur,
    /// All moves complete within this long of the first move (a long detection delay does not
    /// fail a correctly paced migration; `start_within` bounds the delay).
    pub complete_within: Dur,
    /// And not sooner than this after the first move (the rate limit is honoured).
    #[serde(default)]
    pub complete_after: Option<Dur>,
    /// The rate the moves must keep, as the guide gives it (`5000/30m`, spec 62): judged from
    /// the moves' own timestamps, (moves − 1) ÷ (last − first), never from the connector's
    /// setting.
    #[serde(default)]
    pub rate: Option<Rate>,
    /// How far the observed rate may be from `rate`.
    #[serde(default = "default_rate_within")]
    pub rate_within: Pct,
}

/// The observed rate may differ from the guide's by 5 % (issue 12: "asserts the rate within
/// 5 %"): a token bucket paces moves evenly, so only its one-second burst and the sampling of
/// the first and last move are left.
fn default_rate_within() -> Pct {
    Pct(500)
}

/// How many sessions a `migration` check expects to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sessions {
    /// Exactly this many; 0 means none may move (no high availability, spec 64).
    Exactly(u32),
    /// `all`: every session the source node held at the fault (from the history) that the
    /// fault hands over: all of them for a failure of the source, those of the destination's
    /// own users for a fallback to it. Each one must move, and the ones that did not are named.
    All,
    /// `{ min: N }`: at least N.
    AtLeast(u32),
}

impl Serialize for Sessions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Sessions::Exactly(n) => s.serialize_u32(*n),
            Sessions::All => s.serialize_str("all"),
            Sessions::AtLeast(n) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("min", n)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Sessions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SessionsVisitor)
    }
}

/// Reads `sessions:` as a number, `all`, or `{ min: N }`.
struct SessionsVisitor;

impl<'de> serde::de::Visitor<'de> for SessionsVisitor {
    type Value = Sessions;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a number of sessions, `all`, or `{ min: N }`")
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Sessions, E> {
        u32::try_from(v)
            .map(Sessions::Exactly)
            .map_err(|_| E::custom(format!("{v} sessions is too many")))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Sessions, E> {
        u64::try_from(v)
            .map_err(|_| E::custom("a number of sessions cannot be negative"))
            .and_then(|v| self.visit_u64(v))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Sessions, E> {
        if v == "all" {
            return Ok(Sessions::All);
        }
        Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Sessions, A::Error> {
        let mut min = None;
        while let Some(k) = m.next_key::<String>()? {
            if k != "min" {
                return Err(serde::de::Error::unknown_field(&k, &["min"]));
            }
            min = Some(m.next_value::<u32>()?);
        }
        min.map(Sessions::AtLeast)
            .ok_or_else(|| serde::de::Error::missing_field("min"))
    }
}

/// How the registry reads the `migration` check.
pub const ENTRY: Entry = Entry {
    name: "migration",
    bare: false,
    read: boxed::<Migration>,
};

impl Check for Migration {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn needs(&self) -> Needs {
        Needs::CONNECTOR
    }
    fn validate(&self, s: &Scenario, at: &str) -> Vec<Problem> {
        rules(s, self, at)
    }
    fn judge(&self, s: &Scenario, h: &History) -> Verdict {
        migration(s, h, self)
    }
    fn tables(&self, _s: &Scenario, h: &History) -> Vec<Table> {
        curve_table(h).into_iter().collect()
    }
}

/// A `migration` check names a PRG pair, a fault that moves sessions between them, and
/// bounds in order.
fn rules(s: &Scenario, e: &Migration, at: &str) -> Vec<Problem> {
    let mut p = Vec::new();
    let mut add = |path: String, message: String, help: Option<String>| {
        p.push(Problem {
            path,
            message,
            help,
        })
    };
    let at = format!("{at}.migration");
    let pair = s
        .topology
        .imp_clusters
        .iter()
        .any(|cl| crate::plan::imp::node_config(cl).peer_of(&e.from) == Some(e.to.as_str()));
    if !pair {
        add(
            at.clone(),
            format!("`{}` and `{}` are not a PRG pair", e.from, e.to),
            Some("sessions move between PRG peers: nodes 1+2, 3+4 and 5+6 of a cluster".into()),
        );
    } else if crate::plan::migration::triggers(s, &e.from, &e.to).is_empty() {
        add(
            at.clone(),
            format!("no fault moves sessions from `{}` to `{}`", e.from, e.to),
            Some(format!(
                "add a crash or imp_failover of `{}`, or an imp_fallback to `{}`",
                e.from, e.to
            )),
        );
    }
    if e.complete_after.is_some_and(|a| a.0 > e.complete_within.0) {
        add(
            format!("{at}.complete_after"),
            "complete_after is longer than complete_within".into(),
            None,
        );
    }
    p
}

/// The `status_page` check (no parameters).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusPageCheck {}

/// How the registry reads the `status_page` check.
pub const STATUS_PAGE: Entry = Entry {
    name: "status_page",
    bare: true,
    read: boxed::<StatusPageCheck>,
};

impl Check for StatusPageCheck {
    fn name(&self) -> &'static str {
        STATUS_PAGE.name
    }
    fn needs(&self) -> Needs {
        Needs::CONNECTOR
    }
    fn judge(&self, s: &Scenario, h: &History) -> Verdict {
        status_page(s, h)
    }
}

#[cfg(test)]
mod tests {
    //! Each check judged on hand-made series: it passes on the right behaviour and fails on
    //! the wrong one, saying what it expected and what it saw.
    use super::*;
    use crate::history::observer::Observer;
    use crate::plan::topology::UserSpec;
    use connector::core::status::NodeRow;
    use std::rc::Rc;

    const YAML: &str = "name: t\nseed: 1\nduration: 90m\ntopology:\n  imp_clusters: [{ name: a, nodes: 2, prg: { high_availability: true } }]\n  expressway_clusters: [{ name: a, size: large, imp_clusters: [a] }]\nusers: { count: 10, webex: 100% }\nfaults:\n  - { at: 5m, imp_failover: { node: imp-a-1, mode: manual } }\n  - { at: 60m, imp_fallback: { node: imp-a-1 } }\nchecks:\n  - migration: { from: imp-a-1, to: imp-a-2, sessions: 100, start_within: 15m, complete_within: 35m, complete_after: 25m }\n  - status_page\n";

    fn scenario() -> Scenario {
        crate::parse("t.yaml", YAML).expect("valid test scenario")
    }

    fn output() -> History {
        History::from_history(1, Rc::new(Observer::new()), Vec::new())
    }

    fn expect(s: &Scenario) -> Migration {
        crate::checks::params(&s.checks[0].params).expect("check")
    }

    /// `n` moves `from → to` on `exp-a-1`, evenly from `first_s` to `last_s`.
    fn moves(out: &mut History, from: &str, to: &str, n: usize, first_s: f64, last_s: f64) {
        let step = (last_s - first_s) / (n.max(2) - 1) as f64;
        let moves = (0..n).map(|i| crate::history::SessionMove {
            user: format!("user{i:03}@x"),
            at: Duration::from_secs_f64(first_s + step * i as f64),
            from: from.into(),
            to: to.into(),
        });
        out.moves.entry("exp-a-1".into()).or_default().extend(moves);
    }

    #[test]
    fn a_paced_migration_after_the_delay_passes() {
        let s = scenario();
        let mut out = output();
        // Failover at 300 s: first move 10 min later, the last 30 min after the first.
        moves(&mut out, "imp-a-1", "imp-a-2", 100, 900.0, 2700.0);
        // The fallback's moves go the other way and are not counted.
        moves(&mut out, "imp-a-2", "imp-a-1", 100, 3700.0, 5500.0);
        let (st, detail) = migration(&s, &out, &expect(&s));
        assert_eq!(st, Status::Pass, "{detail}");
        assert!(
            detail.contains("100 sessions moved imp-a-1→imp-a-2 after the imp_failover of imp-a-1 at 300s: first move 10m after the fault, last 30m after the first"),
            "{detail}"
        );
    }

    #[test]
    fn too_few_too_late_or_too_fast_fails_with_the_numbers() {
        let s = scenario();
        let e = expect(&s);
        let mut out = output();
        moves(&mut out, "imp-a-1", "imp-a-2", 90, 1500.0, 1800.0);
        let (st, detail) = migration(&s, &out, &e);
        assert_eq!(st, Status::Fail);
        for part in [
            "90 sessions moved, expected 100",
            "the first move came 20m after the fault, expected within 15m",
            "moving took 5m, expected at least 25m (the migration rate was not honoured)",
        ] {
            assert!(detail.contains(part), "missing {part:?} in {detail}");
        }
        let mut slow = output();
        moves(
            &mut slow,
            "imp-a-1",
            "imp-a-2",
            100,
            400.0,
            400.0 + 40.0 * 60.0,
        );
        let (st, detail) = migration(&s, &slow, &e);
        assert_eq!(st, Status::Fail);
        assert!(
            detail.contains("moving took 40m, expected at most 35m"),
            "{detail}"
        );
    }

    #[test]
    fn no_move_at_all_says_what_the_connector_did() {
        let s = scenario();
        let mut out = output();
        out.connector_stats.insert(
            "exp-a-1".into(),
            [("assigned".to_string(), 100.0)].into_iter().collect(),
        );
        let (st, detail) = migration(&s, &out, &expect(&s));
        assert_eq!(st, Status::Fail);
        assert!(
            detail.contains("no session moved imp-a-1→imp-a-2 after the imp_failover of imp-a-1 at 300s; expected 100 (exp-a-1: 100 assigned"),
            "{detail}"
        );
    }

    #[test]
    fn sessions_zero_expects_no_move() {
        let s = scenario();
        let e = Migration {
            sessions: Sessions::Exactly(0),
            ..expect(&s)
        };
        let (st, detail) = migration(&s, &output(), &e);
        assert_eq!(st, Status::Pass, "{detail}");
        let mut out = output();
        moves(&mut out, "imp-a-1", "imp-a-2", 3, 400.0, 500.0);
        let (st, detail) = migration(&s, &out, &e);
        assert_eq!(st, Status::Fail);
        assert!(detail.contains("3 sessions moved imp-a-1→imp-a-2 after the imp_failover of imp-a-1 at 300s (the first at 400s), expected none"), "{detail}");
    }

    /// `users` open on `node` from `at_s` on.
    fn open_on(out: &mut History, users: &[String], node: &str, at_s: u64) {
        for u in users {
            let ev = out.session_nodes.entry(u.clone()).or_default();
            ev.push((Duration::from_secs(at_s), Some(node.to_string())));
        }
    }

    fn with_sessions(yaml_sessions: &str) -> Migration {
        let y = YAML.replace("sessions: 100,", &format!("sessions: {yaml_sessions},"));
        let s = crate::parse("t.yaml", &y).expect("valid test scenario");
        crate::checks::params(&s.checks[0].params).expect("check")
    }

    #[test]
    fn sessions_reads_a_number_all_or_a_minimum() {
        assert_eq!(with_sessions("100").sessions, Sessions::Exactly(100));
        assert_eq!(with_sessions("all").sessions, Sessions::All);
        assert_eq!(with_sessions("{ min: 90 }").sessions, Sessions::AtLeast(90));
        for bad in ["some", "{ max: 3 }", "-1"] {
            let y = YAML.replace("sessions: 100,", &format!("sessions: {bad},"));
            let err = crate::parse("t.yaml", &y).expect_err(bad).to_string();
            assert!(err.contains("checks[0].migration.sessions"), "{bad}: {err}");
        }
    }

    #[test]
    fn all_expects_every_session_the_node_held_and_names_those_that_stayed() {
        let s = scenario();
        let e = with_sessions("all");
        let mut out = output();
        // 99 sessions open on imp-a-1 before the fault at 300 s (not 100: a seed may leave a
        // user without one), one opened there only after it.
        let users: Vec<String> = (0..99).map(|i| format!("user{i:03}@x")).collect();
        open_on(&mut out, &users, "imp-a-1", 60);
        open_on(&mut out, &["late@x".to_string()], "imp-a-1", 400);
        moves(&mut out, "imp-a-1", "imp-a-2", 99, 900.0, 2700.0);
        let (st, detail) = migration(&s, &out, &e);
        assert_eq!(st, Status::Pass, "{detail}");
        // One of them never moved: named.
        let mut short = output();
        open_on(&mut short, &users, "imp-a-1", 60);
        moves(&mut short, "imp-a-1", "imp-a-2", 98, 900.0, 2700.0);
        let (st, detail) = migration(&s, &short, &e);
        assert_eq!(st, Status::Fail);
        assert!(
            detail.contains("1 of the 99 sessions held at the fault did not move (e.g. user098@x)"),
            "{detail}"
        );
        // Nothing held: the check exercised nothing.
        let (st, detail) = migration(&s, &output(), &e);
        assert_eq!(st, Status::Fail);
        assert!(detail.contains("the check exercised nothing"), "{detail}");
    }

    #[test]
    fn all_on_a_fallback_counts_only_the_users_it_gives_back() {
        let s = scenario();
        let users = crate::plan::topology::population(&s, &crate::plan::rng::RngFactory::new(1));
        let mut out = History::from_history(1, Rc::new(Observer::new()), users.clone());
        let email = |u: &UserSpec| u.email.clone().expect("email");
        let (home1, home2): (Vec<&UserSpec>, Vec<&UserSpec>) =
            users.iter().partition(|u| u.home_host(&s) == "imp-a-1");
        // At the fallback (60 m) imp-a-2 holds everybody; only imp-a-1's users go back.
        let all: Vec<String> = users.iter().map(email).collect();
        open_on(&mut out, &all, "imp-a-2", 2000);
        let back: Vec<String> = home1.iter().map(|u| email(u)).collect();
        for (i, u) in back.iter().enumerate() {
            out.moves
                .entry("exp-a-1".into())
                .or_default()
                .push(crate::history::SessionMove {
                    user: u.clone(),
                    at: Duration::from_secs(3700 + 400 * i as u64),
                    from: "imp-a-2".into(),
                    to: "imp-a-1".into(),
                });
        }
        let e = Migration {
            from: "imp-a-2".into(),
            to: "imp-a-1".into(),
            ..with_sessions("all")
        };
        let (st, detail) = migration(&s, &out, &e);
        assert_eq!(st, Status::Pass, "{detail}");
        assert!(!home2.is_empty() && !back.is_empty());
        assert!(
            detail.contains(&format!("{} sessions moved imp-a-2→imp-a-1", back.len())),
            "{detail}"
        );
    }

    #[test]
    fn the_rate_is_judged_from_the_move_timestamps() {
        let s = scenario();
        let mut out = output();
        // 100 moves over 30 minutes: 99 intervals in 1,800 s, 1 % under 100/30m.
        moves(&mut out, "imp-a-1", "imp-a-2", 100, 900.0, 2700.0);
        let y = |rate: &str| {
            let y = YAML.replace(
                "complete_after: 25m }",
                &format!("complete_after: 25m, rate: {rate} }}"),
            );
            let s = crate::parse("t.yaml", &y).expect("valid");
            crate::checks::params::<Migration>(&s.checks[0].params).expect("check")
        };
        let (st, detail) = migration(&s, &out, &y("100/30m"));
        assert_eq!(st, Status::Pass, "{detail}");
        assert!(
            detail.contains("rate 0.055/s = 99 per 30m, -1.0 % from 100/30m"),
            "{detail}"
        );
        let (st, detail) = migration(&s, &out, &y("120/30m"));
        assert_eq!(st, Status::Fail);
        assert!(
            detail.contains(
                "the moves kept 0.055/s, -17.5 % from the expected 120/30m (0.067/s), more than 5%"
            ),
            "{detail}"
        );
    }

    #[test]
    fn a_minimum_accepts_more_and_refuses_fewer() {
        let s = scenario();
        let e = with_sessions("{ min: 95 }");
        let mut out = output();
        moves(&mut out, "imp-a-1", "imp-a-2", 97, 900.0, 2700.0);
        assert_eq!(migration(&s, &out, &e).0, Status::Pass);
        let mut few = output();
        moves(&mut few, "imp-a-1", "imp-a-2", 94, 900.0, 2700.0);
        let (st, detail) = migration(&s, &few, &e);
        assert_eq!(st, Status::Fail);
        assert!(
            detail.contains("94 sessions moved, expected at least 95"),
            "{detail}"
        );
    }

    #[test]
    fn a_failover_and_its_fallback_are_two_migration_checks() {
        let y = YAML.replace(
            "  - status_page\n",
            "  - migration: { from: imp-a-2, to: imp-a-1, sessions: all, start_within: 15m, complete_within: 35m }\n  - status_page\n",
        );
        let s = crate::parse("t.yaml", &y).expect("two migration checks are valid");
        assert_eq!(crate::checks::build(&s).len(), 3);
        let twice = YAML.replace("  - status_page\n", "  - status_page\n  - status_page\n");
        let err = crate::parse("t.yaml", &twice)
            .expect_err("status_page twice")
            .to_string();
        assert!(err.contains("check `status_page` is listed twice"), "{err}");
    }

    #[test]
    fn the_fallback_is_timed_from_the_fallback_fault() {
        let s = scenario();
        let mut out = output();
        moves(&mut out, "imp-a-2", "imp-a-1", 100, 3700.0, 5500.0);
        let e = Migration {
            from: "imp-a-2".into(),
            to: "imp-a-1".into(),
            ..expect(&s)
        };
        let (st, detail) = migration(&s, &out, &e);
        assert_eq!(st, Status::Pass, "{detail}");
        assert!(
            detail.contains("after the imp_fallback to imp-a-1 at 3600s"),
            "{detail}"
        );
    }

    fn page(status: NodeStatus, users: (usize, usize)) -> StatusPage {
        let row = |node: &str, status, users: usize| NodeRow {
            node: node.into(),
            version: "14.0".into(),
            status,
            certificate_validation: true,
            users,
            active: users,
            inactive: 0,
        };
        StatusPage {
            connectivity: "Operational".into(),
            users_local: 10,
            users_all: 10,
            enabled: users.0 + users.1,
            active: users.0 + users.1,
            inactive: 0,
            nodes: vec![
                row("imp-a-1", status, users.0),
                row("imp-a-2", NodeStatus::Operational, users.1),
            ],
        }
    }

    /// A Hybrid Message user homed on `imp-a-<node>`.
    fn hybrid_user(index: u32, node: u32) -> UserSpec {
        UserSpec {
            index,
            userid: format!("user{index}"),
            jid: format!("user{index}@example.com"),
            email: Some(format!("user{index}@example.com")),
            password: "pw".into(),
            cluster: 0,
            node,
            jabber: true,
            webex: true,
            hybrid: true,
            hidden: false,
            dnd: false,
            ooo: false,
            duplicate_in: None,
            devices: 1,
            farm: 1,
        }
    }

    /// A run whose Hybrid Message users are homed on both nodes of cluster `a`.
    fn output_with_users() -> History {
        let mut out = output();
        out.users = vec![hybrid_user(0, 1), hybrid_user(1, 2)];
        out
    }

    fn record(out: &mut History, t: f64, p: &StatusPage) {
        let pages = out.status_pages.entry("exp-a-1".into()).or_default();
        pages.push((Duration::from_secs_f64(t), p.clone()));
    }

    /// A consistent page of `(enabled, active)` users, all homed on imp-a-1.
    fn totals_page(enabled: usize, active: usize) -> StatusPage {
        let mut p = page(NodeStatus::Operational, (enabled, 0));
        p.active = active;
        p.inactive = enabled - active;
        p.nodes[0].active = active;
        p.nodes[0].inactive = enabled - active;
        p
    }

    fn share(enabled: usize, active: usize) -> Share {
        Share {
            enabled,
            active,
            nodes: BTreeMap::from([("imp-a-1".to_string(), (enabled, active))]),
        }
    }

    /// The cloud gave `host` `share`, and the connector counted the same, sampled every 15 s
    /// over `[from_s, to_s]`.
    fn held(out: &mut History, host: &str, s: &Share, from_s: u64, to_s: u64) {
        let exact = CloudShare::exact(s.enabled, s.active);
        sampled(&mut out.cloud_shares, host, &exact, from_s, to_s);
        sampled(&mut out.status_shares, host, s, from_s, to_s);
    }

    /// `share` in `shares` of `host` sampled every 15 s over `[from_s, to_s]`.
    fn sampled<S: Clone>(
        shares: &mut BTreeMap<String, Vec<(Duration, S)>>,
        host: &str,
        s: &S,
        from_s: u64,
        to_s: u64,
    ) {
        let samples = shares.entry(host.into()).or_default();
        let at = (from_s..=to_s).step_by(15).map(Duration::from_secs);
        samples.extend(at.map(|t| (t, s.clone())));
    }

    /// Spec 69-70 judged from the cloud's records: a connector that counts a user the cloud
    /// did not assign to it (enabled 9, the cloud's 8), or one whose activity never reached it
    /// (active 3, the cloud's 2), and whose pages add up its own and its peer's counts
    /// faithfully, fails. Judged against the connectors' own shares (the check before the
    /// cloud's records), every page here adds up and would pass; with the connector counting
    /// what the cloud gave it, the same pages pass.
    #[test]
    fn a_connector_miscounting_its_own_share_fails_though_its_pages_add_up() {
        let yaml = "name: t\nseed: 1\nduration: 6m\ntopology:\n  imp_clusters: [{ name: a, nodes: 2 }]\n  expressway_clusters: [{ name: a, size: large, nodes: 2, imp_clusters: [a] }]\nusers: { count: 10, webex: 100% }\nchecks:\n  - status_page\n";
        let s = crate::parse("t.yaml", yaml).expect("valid test scenario");
        for (counted, page_totals) in [(share(9, 2), (17, 5)), (share(8, 3), (16, 6))] {
            let mut out = output();
            let cloud = CloudShare::exact(8, 2);
            sampled(&mut out.cloud_shares, "exp-a-1", &cloud, 0, 360);
            sampled(&mut out.status_shares, "exp-a-1", &counted, 0, 360);
            held(&mut out, "exp-a-2", &share(8, 3), 0, 360);
            for host in ["exp-a-1", "exp-a-2"] {
                let (e, a) = page_totals;
                let pages = out.status_pages.entry(host.into()).or_default();
                pages.push((Duration::from_secs(360), totals_page(e, a)));
            }
            // The old rule: each page is its own counted share plus its peer's.
            let own_sum = |h: &str, peer: &str| {
                let at = |q: &str| out.status_shares[q].last().map(|(_, s)| s.clone());
                let (a, b) = (at(h).expect("sampled"), at(peer).expect("sampled"));
                (a.enabled + b.enabled, a.active + b.active)
            };
            assert_eq!(own_sum("exp-a-1", "exp-a-2"), page_totals);
            assert_eq!(own_sum("exp-a-2", "exp-a-1"), page_totals);
            let (st, detail) = status_page(&s, &out);
            assert_eq!(st, Status::Fail, "{detail}");
            let told = format!(
                "spec 69: exp-a-1 shows enabled/active ({}, {}) at the end (360s), not the cloud's share for it (8, 2: assigned, delivered to within 72 h; the connector counted ({}, {}))",
                page_totals.0, page_totals.1, counted.enabled, counted.active
            );
            assert!(detail.contains(&told), "{detail}");
            assert!(detail.contains("spec 69: exp-a-2 shows"), "{detail}");
            // Had the cloud given exp-a-1 what it counted, the same pages pass.
            out.cloud_shares.remove("exp-a-1");
            let cloud = CloudShare::exact(counted.enabled, counted.active);
            sampled(&mut out.cloud_shares, "exp-a-1", &cloud, 0, 360);
            let (st, detail) = status_page(&s, &out);
            assert_eq!(st, Status::Pass, "{detail}");
        }
    }

    /// Spec 69 with the shares' lag (explore seed 2539): exp-a-1 came back at 300 s and took 8
    /// of exp-a-2's 16 users; at the end (360 s) exp-a-1's page still carries exp-a-2's share
    /// as its heartbeat brought it (16, from before 300 s) while exp-a-2's page has exp-a-1's
    /// fresh one. Both pages are a share at most two heartbeats old: they pass. A share older
    /// than that lag fails, naming what each node held.
    #[test]
    fn peers_pages_may_carry_shares_up_to_two_heartbeats_old() {
        let yaml = "name: t\nseed: 1\nduration: 6m\ntopology:\n  imp_clusters: [{ name: a, nodes: 2 }]\n  expressway_clusters: [{ name: a, size: large, nodes: 2, imp_clusters: [a] }]\nusers: { count: 10, webex: 100% }\nchecks:\n  - status_page\n";
        let s = crate::parse("t.yaml", yaml).expect("valid test scenario");
        let mut out = output();
        held(&mut out, "exp-a-1", &share(0, 0), 0, 285);
        held(&mut out, "exp-a-1", &share(8, 2), 300, 420);
        held(&mut out, "exp-a-2", &share(16, 4), 0, 285);
        held(&mut out, "exp-a-2", &share(8, 3), 300, 420);
        let page_at = |out: &mut History, host: &str, t: u64, p: StatusPage| {
            let pages = out.status_pages.entry(host.into()).or_default();
            pages.push((Duration::from_secs(t), p));
        };
        page_at(&mut out, "exp-a-1", 360, totals_page(24, 6));
        page_at(&mut out, "exp-a-2", 360, totals_page(16, 5));
        let (st, detail) = status_page(&s, &out);
        assert_eq!(st, Status::Pass, "{detail}");
        // 120 s after the move exp-a-1 still shows exp-a-2's old share: two heartbeats passed.
        page_at(&mut out, "exp-a-1", 420, totals_page(24, 6));
        page_at(&mut out, "exp-a-2", 420, totals_page(16, 5));
        let (st, detail) = status_page(&s, &out);
        assert_eq!(st, Status::Fail);
        assert!(
            detail.contains("spec 69: exp-a-1 shows enabled/active (24, 6) at the end (420s), not the cloud's share for it (8, 2: assigned, delivered to within 72 h; the connector counted (8, 2)) plus the shares the cloud gave each peer in the 75 s before (exp-a-2 (8, 3))"),
            "{detail}"
        );
        assert!(!detail.contains("spec 69: exp-a-2"), "{detail}");
    }

    #[test]
    fn consistent_pages_with_an_outage_while_assigned_pass() {
        let s = scenario();
        let mut out = output_with_users();
        record(&mut out, 60.0, &page(NodeStatus::Operational, (5, 5)));
        record(&mut out, 600.0, &page(NodeStatus::Outage, (5, 5)));
        record(&mut out, 700.0, &page(NodeStatus::Outage, (5, 5)));
        let (st, detail) = status_page(&s, &out);
        assert_eq!(st, Status::Pass, "{detail}");
        assert!(
            detail.contains("spec 63: exp-a-1 showed imp-a-1 as Outage with 5 users still assigned in 2 samples from 600s to 700s"),
            "{detail}"
        );
    }

    #[test]
    fn an_inconsistent_page_or_no_outage_fails() {
        let s = scenario();
        let mut out = output();
        record(&mut out, 600.0, &page(NodeStatus::Outage, (5, 5)));
        let mut bad = page(NodeStatus::Outage, (5, 5));
        bad.nodes[1].users = 4;
        bad.nodes[1].inactive = 0;
        bad.nodes[1].active = 4;
        record(&mut out, 900.0, &bad);
        let (st, detail) = status_page(&s, &out);
        assert_eq!(st, Status::Fail);
        assert!(
            detail.contains(
                "exp-a-1 at 900s: node sums users 9/active 9/inactive 0 != totals 10/10/0"
            ),
            "{detail}"
        );
        // The node never shown as Outage: spec 63 not observed.
        let mut out = output_with_users();
        record(&mut out, 60.0, &page(NodeStatus::Operational, (5, 5)));
        record(&mut out, 600.0, &page(NodeStatus::Operational, (5, 5)));
        let (st, detail) = status_page(&s, &out);
        assert_eq!(st, Status::Fail);
        assert!(
            detail.contains("spec 63: no page showed imp-a-1 as Outage with its users still assigned after the fault at 300s"),
            "{detail}"
        );
        assert_eq!(
            status_page(&s, &output()).0,
            Status::Fail,
            "nothing sampled"
        );
    }

    /// Spec 63 is about a failover. A crash shorter than the PRG's heartbeat timeout fails
    /// nothing over (spec 65: the peer takes over after missing heartbeats for 60 s), a node
    /// without Hybrid Message users has no users to show as still assigned, and a connector
    /// that did not serve the node yet never saw it fail: none of them must show Outage
    /// (explore seed 663: a 10 s crash, before the connector's first page, of a node whose
    /// cluster's two users were homed elsewhere).
    #[test]
    fn outage_is_expected_only_for_a_failover_of_a_node_with_users_a_connector_served() {
        let crash = |d: &str| {
            let yaml = YAML
                .replace(
                    "  - { at: 5m, imp_failover: { node: imp-a-1, mode: manual } }\n  - { at: 60m, imp_fallback: { node: imp-a-1 } }\n",
                    &if d.is_empty() {
                        "  - { at: 5m, crash: [imp-a-1] }\n".to_string()
                    } else {
                        format!("  - {{ at: 5m, for: {d}, crash: [imp-a-1] }}\n")
                    },
                )
                .replace("  - migration: { from: imp-a-1, to: imp-a-2, sessions: 100, start_within: 15m, complete_within: 35m, complete_after: 25m }\n", "");
            crate::parse("t.yaml", &yaml).expect("valid test scenario")
        };
        let operational = |users: Vec<UserSpec>, first_s: f64| {
            let mut out = output();
            out.users = users;
            record(&mut out, first_s, &page(NodeStatus::Operational, (5, 5)));
            record(&mut out, 600.0, &page(NodeStatus::Operational, (5, 5)));
            out
        };
        let both = || vec![hybrid_user(0, 1), hybrid_user(1, 2)];
        let (st, detail) = status_page(&crash("10s"), &operational(both(), 60.0));
        assert_eq!(st, Status::Pass, "{detail}");
        assert!(
            detail.contains("no node with Hybrid Message users failed over"),
            "{detail}"
        );
        // Down longer than the heartbeat timeout: failed over, so Outage is expected.
        let (st, detail) = status_page(&crash("2m"), &operational(both(), 60.0));
        assert_eq!(st, Status::Fail, "{detail}");
        assert!(
            detail.contains("spec 63: no page showed imp-a-1 as Outage"),
            "{detail}"
        );
        // No Hybrid Message user homed on the crashed node.
        let (st, detail) = status_page(&crash("2m"), &operational(vec![hybrid_user(1, 2)], 60.0));
        assert_eq!(st, Status::Pass, "{detail}");
        // The connector's first page came after the fault.
        let (st, detail) = status_page(&crash("2m"), &operational(both(), 400.0));
        assert_eq!(st, Status::Pass, "{detail}");
        // Explore seed 13755 (`--seed 14`): imp-a-1, the AXL publisher, down for good and the
        // connector restarted as it failed: it cannot discover imp-a-1 again (spec 22), so it
        // shows no row for it. Restarted before the failure, or with imp-a-1 back, it can.
        let restarted = |crash_for: &str, at: &str| {
            let mut s = crash(crash_for);
            let yaml = format!("{{ at: {at}, bounce: [exp-a-1] }}");
            s.faults.push(serde_yaml::from_str(&yaml).expect("a fault"));
            s
        };
        let blind = restarted("", "5m");
        assert_eq!(blind.faults[0].for_, None, "down for good");
        let (st, detail) = status_page(&blind, &operational(both(), 60.0));
        assert_eq!(st, Status::Pass, "{detail}");
        for s in [restarted("", "4m"), restarted("2m", "5m")] {
            let (st, detail) = status_page(&s, &operational(both(), 60.0));
            assert_eq!(st, Status::Fail, "{detail}");
            assert!(detail.contains("no page showed imp-a-1"), "{detail}");
        }
        // Explore seed 3360: the crashed node's Hybrid Message users have no mail ID (or one
        // another cluster holds too): Control Hub puts them in Error, none is assigned.
        let mut unmatched = vec![hybrid_user(0, 1), hybrid_user(1, 2), hybrid_user(2, 1)];
        unmatched[0].email = None;
        unmatched[2].duplicate_in = Some(1);
        let (st, detail) = status_page(&crash("2m"), &operational(unmatched, 60.0));
        assert_eq!(st, Status::Pass, "{detail}");
    }

    /// A manual failover moves the node's users to its peer (the guide: "When you manually
    /// fail over one of the IM and Presence nodes in a Presence Redundancy Group, the user
    /// sessions from the source node migrate to the other node"). A node whose peer is itself
    /// failed over serves both homes: there is no other node left for its users, so the second
    /// failover moves nobody and no Outage is expected for it; after the peer's fallback it is
    /// a failover again (explore seed 6492: imp-a-1 at 1m, then imp-a-2 at 1m18s).
    #[test]
    fn outage_is_not_expected_for_a_manual_failover_while_the_peer_is_failed_over() {
        let second = |at: &str| {
            let faults = format!(
                "  - {{ at: 60m, imp_fallback: {{ node: imp-a-1 }} }}\n  - {{ at: {at}, imp_failover: {{ node: imp-a-2, mode: manual }} }}\n"
            );
            let yaml = YAML.replace(
                "  - { at: 60m, imp_fallback: { node: imp-a-1 } }\n",
                &faults,
            );
            crate::parse("t.yaml", &yaml).expect("valid test scenario")
        };
        let mut out = output_with_users();
        record(&mut out, 60.0, &page(NodeStatus::Operational, (5, 5)));
        record(&mut out, 600.0, &page(NodeStatus::Outage, (5, 5)));
        record(&mut out, 3900.0, &page(NodeStatus::Operational, (5, 5)));
        let (st, detail) = status_page(&second("6m"), &out);
        assert_eq!(st, Status::Pass, "{detail}");
        // After imp-a-1's fallback, imp-a-2's failover is real and must show Outage.
        let (st, detail) = status_page(&second("61m"), &out);
        assert_eq!(st, Status::Fail, "{detail}");
        assert!(
            detail.contains("spec 63: no page showed imp-a-2 as Outage with its users still assigned after the fault at 3660s"),
            "{detail}"
        );
        // A crashed peer cannot take the users either: down, then (after the heartbeat
        // timeout, spec 65) failed over until a fallback. Back within the timeout, it can.
        let crashed = |crash: &str, at: &str| {
            let yaml = YAML
                .replace(
                    "  - { at: 5m, imp_failover: { node: imp-a-1, mode: manual } }\n",
                    &format!("  - {{ at: 5m, {crash}crash: [imp-a-1] }}\n  - {{ at: {at}, imp_failover: {{ node: imp-a-2, mode: manual }} }}\n"),
                )
                .replace("  - { at: 60m, imp_fallback: { node: imp-a-1 } }\n", "");
            crate::parse("t.yaml", &yaml).expect("valid test scenario")
        };
        for (crash, at) in [("", "5m30s"), ("", "7m"), ("for: 2m, ", "8m")] {
            let (st, detail) = status_page(&crashed(crash, at), &out);
            assert_eq!(st, Status::Pass, "{crash}{at}: {detail}");
        }
        let (st, detail) = status_page(&crashed("for: 10s, ", "7m"), &out);
        assert_eq!(st, Status::Fail, "{detail}");
        assert!(
            detail.contains("no page showed imp-a-2 as Outage"),
            "{detail}"
        );
    }

    /// Spec 69 with a user no connector node can discover: exp-a-1, the cluster's only node,
    /// restarts (Expressway maintenance) after imp-b-1, cluster b's AXL publisher, failed for
    /// good ("The Message Connector cannot discover IM and Presence nodes when the AXL service
    /// is not running on the nodes", spec 22). The cloud keeps user 1 (homed on cluster b) on
    /// exp-a-1, which can put them in no node row: its page leaves them out. Without the
    /// restart the node discovered them before the failure and must count them (explore seed
    /// 6125).
    #[test]
    fn a_user_no_node_can_discover_is_left_out_of_the_share() {
        let scenario = |maintenance: bool| {
            let m = if maintenance {
                "  - { at: 1m33s, for: 26s, expressway_maintenance: { node: exp-a-1 } }\n"
            } else {
                ""
            };
            let yaml = format!(
                "name: t\nseed: 1\nduration: 3m\ntopology:\n  imp_clusters: [{{ name: a, nodes: 1 }}, {{ name: b, nodes: 2 }}]\n  expressway_clusters: [{{ name: a, size: large, nodes: 1, imp_clusters: [a, b] }}]\nusers: {{ count: 2, webex: 100% }}\nfaults:\n  - {{ at: 1m49s, imp_failover: {{ node: imp-b-1, mode: automatic }} }}\n{m}checks:\n  - status_page\n"
            );
            crate::parse("t.yaml", &yaml).expect("valid test scenario")
        };
        let mut out = output();
        let mut on_b = hybrid_user(1, 1);
        on_b.cluster = 1;
        out.users = vec![hybrid_user(0, 1), on_b];
        for u in &out.users {
            let email = u.email.clone().expect("a mail ID");
            out.assigned_at_end.insert(email, "exp-a-1".into());
        }
        sampled(
            &mut out.cloud_shares,
            "exp-a-1",
            &CloudShare::exact(2, 0),
            0,
            180,
        );
        sampled(&mut out.status_shares, "exp-a-1", &share(1, 0), 0, 180);
        let pages = out.status_pages.entry("exp-a-1".into()).or_default();
        pages.push((Duration::from_secs(180), totals_page(1, 0)));
        let (st, detail) = status_page(&scenario(true), &out);
        assert_eq!(st, Status::Pass, "{detail}");
        let (st, detail) = status_page(&scenario(false), &out);
        assert_eq!(st, Status::Fail, "{detail}");
        assert!(
            detail.contains("spec 69: exp-a-1 shows enabled/active (1, 0) at the end (180s), not the cloud's share for it (2, 0"),
            "{detail}"
        );
    }

    #[test]
    fn connector_liveness_names_the_sessions_it_waited_for() {
        let mut out = output();
        let s = |v: &[(u64, bool)]| {
            v.iter()
                .map(|(t, up)| (Duration::from_secs(*t), *up))
                .collect()
        };
        out.bridge
            .insert("a@x".into(), s(&[(10, true), (300, false), (900, true)]));
        out.bridge.insert("b@x".into(), s(&[(10, true)]));
        let (end, bound) = (Duration::from_secs(400), Duration::from_secs(1000));
        assert_eq!(
            connector_liveness(&out, (end, bound), &BTreeSet::new()),
            Some(Ok("all 2 connector sessions open again by 1000s".into()))
        );
        out.bridge
            .insert("c@x".into(), s(&[(10, true), (300, false)]));
        out.bridge
            .insert("d@x".into(), s(&[(10, true), (300, false), (1200, true)]));
        // A session opening for the first time after the bound is not late.
        out.bridge.insert("e@x".into(), s(&[(1500, true)]));
        let Some(Err(detail)) = connector_liveness(&out, (end, bound), &BTreeSet::new()) else {
            panic!("must fail")
        };
        assert!(
            detail.contains(
                "waiting for 1 connector sessions never reopened (e.g. c@x closed at 300s)"
            ),
            "{detail}"
        );
        assert!(detail.contains("d@x reopened at 1200s"), "{detail}");
        assert!(!detail.contains("e@x"), "{detail}");
        // c@x homed on a node down for good with no PRG failover: not waited for.
        let stranded = BTreeSet::from(["c@x".to_string()]);
        let Some(Err(detail)) = connector_liveness(&out, (end, bound), &stranded) else {
            panic!("d@x is still late")
        };
        assert!(!detail.contains("never reopened"), "{detail}");
        assert_eq!(
            connector_liveness(&output(), (end, bound), &BTreeSet::new()),
            None
        );
    }

    /// Spec 52: a session closed after 72 h without use of Webex or Jabber was closed on
    /// purpose; one closed earlier was not.
    #[test]
    fn connector_liveness_accepts_sessions_closed_by_the_72_hour_rule() {
        use crate::plan::rng::RngFactory;
        let mut out = output();
        out.users = crate::plan::topology::population(&scenario(), &RngFactory::new(1));
        let (a, b) = (out.users[0].jid.clone(), out.users[1].jid.clone());
        let h72 = 72 * 3600;
        let s = |v: &[(u64, bool)]| {
            v.iter()
                .map(|(t, up)| (Duration::from_secs(*t), *up))
                .collect()
        };
        // Both last used Webex at login; only `a`'s session closed 72 h later.
        out.bridge
            .insert(a.clone(), s(&[(60, true), (h72 + 400, false)]));
        out.bridge
            .insert(b.clone(), s(&[(60, true), (h72 / 2, false)]));
        let end = Duration::ZERO;
        let bound = Duration::from_secs(600);
        let Some(Err(detail)) = connector_liveness(&out, (end, bound), &BTreeSet::new()) else {
            panic!("b's session was closed after 36 h: must fail")
        };
        assert!(detail.contains(&format!("{b} closed")), "{detail}");
        assert!(!detail.contains(&format!("{a} closed")), "{detail}");
    }

    #[test]
    fn the_curve_table_spreads_rows_and_counts_moves() {
        let mut out = output();
        let n = 100;
        let a: Vec<(f64, f64)> = (0..n).map(|i| (i as f64 * 10.0, (n - i) as f64)).collect();
        let b: Vec<(f64, f64)> = (0..n).map(|i| (i as f64 * 10.0, i as f64)).collect();
        out.series
            .insert(format!("{SESSIONS_SERIES}exp-a-1/imp-a-1"), a);
        out.series
            .insert(format!("{SESSIONS_SERIES}exp-a-1/imp-a-2"), b);
        moves(&mut out, "imp-a-1", "imp-a-2", 10, 5.0, 95.0);
        let t = curve_table(&out).unwrap();
        assert_eq!(
            t.columns,
            [
                "t (s)",
                "exp-a-1/imp-a-1",
                "exp-a-1/imp-a-2",
                "moved so far"
            ]
        );
        assert_eq!(t.rows.len(), CURVE_ROWS_MAX);
        assert_eq!(t.rows[0], ["0", "100", "0", "0"]);
        assert_eq!(t.rows.last().unwrap(), &["990", "1", "99", "10"]);
        assert_eq!(
            thin(&[(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)], 2),
            [(1.0, 1.0), (3.0, 3.0)]
        );
    }
}
