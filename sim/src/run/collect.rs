//! What the runner reads from the world at the end of a run (counters, the cloud's view, group
//! chat facts, the secrets the run knows), and the log capture `no_secrets_in_logs` needs.

use crate::history::{Evidence, History, LOG_BYTES_MAX, Secret, SpaceFacts, key_encodings};
use crate::plan::connector::{COMPONENT_SECRET, webex_email};
use crate::plan::topology::UserSpec;
use crate::run::Options;
use crate::scenario::Scenario;
use crate::world::World;
use crate::world::hybrid::HybridHandles;
use crate::world::imp::ImpHandles;
use connector::core::node::ConnectorNode;
use connector::core::presence::WebexPresence;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tracing_subscriber::filter;
use tracing_subscriber::prelude::*;

/// Reads the world's final state into the history.
pub fn finish(world: &World<'_>, s: &Scenario, opts: Options, out: &mut History) {
    final_stats(&world.hybrid, s, out);
    group_facts(&world.imp, &world.hybrid, s, out);
    if opts.capture_log {
        out.secrets = Some(Evidence {
            secrets: secrets(s, &world.hybrid, &out.users),
            ..Default::default()
        });
    }
    axl_coverage(&world.imp, &out.observer);
    for (host, h) in &world.imp.nodes {
        if let Some(node) = h.slot.borrow().as_ref() {
            let st = node.borrow().stats().clone();
            // A node at its JSM session limit (spec 10) refused sessions: say so in the
            // report's coverage, whatever the checks are.
            if st.jsm_refused_logins + st.jsm_refused_sessions > 0 {
                let o = &out.observer;
                o.hit_n(
                    "imp: Jabber logins refused at the JSM session limit",
                    st.jsm_refused_logins,
                );
                o.hit_n(
                    "imp: connector sessions refused at the JSM session limit",
                    st.jsm_refused_sessions,
                );
            }
            out.node_stats.insert(host.clone(), st);
        }
    }
}

/// Adds the AXL services' counters to the run's coverage: what discovery met (spec 22).
fn axl_coverage(imp: &ImpHandles, observer: &crate::history::observer::Observer) {
    {
        for svc in imp.axl.values() {
            let st = svc.borrow().stats().clone();
            observer.hit_n("axl: requests answered", st.ok);
            observer.hit_n("axl: requests refused while stopped", st.stopped);
            observer.hit_n("axl: bad credentials", st.unauthorized);
            observer.hit_n("axl: SOAP faults", st.faults);
        }
    }
}

/// Every Hybrid Message state change of a user, as the cloud recorded it when it happened
/// (spec 25-27): `cloud: user Pending -> Active`, `cloud: user Pending -> Error (<reason>)`.
fn hit_transitions(out: &History, u: &fakes::cloud::org::User) {
    use fakes::cloud::org::HmState;
    let mut from = HmState::NotEnabled;
    for e in &u.history {
        let why = match (e.state, e.reason.as_deref()) {
            (HmState::Error, Some(r)) => format!(" ({r})"),
            _ => String::new(),
        };
        out.observer
            .hit(&format!("cloud: user {from:?} -> {:?}{why}", e.state));
        from = e.state;
    }
}

/// Final connector counters into the run output.
pub fn final_stats(h: &HybridHandles, s: &Scenario, out: &mut History) {
    crate::run::sample::collect_moves(h, out);
    if let Some(cloud) = &h.cloud {
        out.plaintext = Some(h.leaks.borrow().clone());
        let cloud = cloud.borrow();
        // Control Hub's view of every Hybrid Message user (spec 25-27), as coverage.
        for u in cloud.org().users() {
            let what = match (&u.state, u.reason.as_deref()) {
                (fakes::cloud::org::HmState::Error, Some(r)) => {
                    format!("cloud: users in Error ({r})")
                }
                (state, _) => format!("cloud: users {state:?}"),
            };
            out.observer.hit(&what);
            hit_transitions(out, u);
        }
        // Rare events counted where they happened in the cloud (reassignment, rebalancing,
        // maintenance drains, refused registrations, reactivations).
        for (what, n) in cloud.coverage() {
            out.observer.hit_n(what, *n);
        }
        let enabled = cloud.org().hm_enabled_count();
        let assigned = cloud.assignment().assigned_count();
        out.unassigned_at_end = cloud.assignment().unassigned_users().cloned().collect();
        out.assigned_at_end = (out.users.iter())
            .filter_map(|u| {
                let node = cloud.assignment().node_of(&webex_email(u, s))?;
                Some((u.email.clone()?, node.to_string()))
            })
            .collect();
        out.observer.hit_n(
            "cloud: enabled users unassigned at the end",
            enabled.saturating_sub(assigned) as u64,
        );
        for u in &out.users {
            // The cloud knows people by email, which need not be the JID (spec 24).
            let st = cloud.presence().state(out.elapsed, &webex_email(u, s));
            let p = from_cloud(
                st.last_active_ms,
                st.dnd_until_ms,
                st.out_of_office,
                st.hidden,
            );
            out.webex_presence.insert(u.jid.clone(), p);
        }
        webex_activity(h, out);
    }
    for (host, slot) in &h.connectors {
        if let Some(core) = slot.borrow().as_ref() {
            out.connector_stats
                .insert(host.clone(), connector_counters(&core.borrow()));
        }
    }
}

/// Copies the cloud's record of each user's Webex activity into the history where it changed
/// (a new use, or the last one moved forward by a later touch within its grain), counting the
/// change in [`History::webex_activity_changes`]. The runner calls it at each quiescence
/// judgement as well as at the end: read only at the end, a Jabber message sent just before
/// `duration` to a user whose Webex use the cloud had recorded was judged optional by the
/// runner, which stopped, and required by the final tally, which counted it lost (explore
/// seed 5484).
pub fn webex_activity(h: &HybridHandles, out: &mut History) {
    let Some(cloud) = &h.cloud else { return };
    let cloud = cloud.borrow();
    let mut changed = false;
    for u in &out.users {
        let used = cloud.presence().activity(&u.jid);
        if used.is_empty() || out.webex_activity.get(&u.jid).map(Vec::as_slice) == Some(used) {
            continue;
        }
        out.webex_activity.insert(u.jid.clone(), used.to_vec());
        changed = true;
    }
    if changed {
        out.webex_activity_changes += 1;
    }
}

/// A connector core's final counters, by name.
fn connector_counters(core: &ConnectorNode) -> BTreeMap<String, f64> {
    let st = core.stats();
    let ss = core.sessions().stats();
    [
        ("to_webex", st.to_webex),
        ("to_jabber", st.to_jabber),
        ("stanzas_not_bridged", st.not_bridged),
        ("rejected", st.rejected),
        ("http_errors", st.http_errors),
        ("keys_fetched", st.keys_fetched),
        ("spaces_created", st.spaces_created),
        ("dropped_full", st.dropped_full),
        ("deduplicated", st.deduplicated),
        ("sessions_opened", ss.opened),
        ("sessions_refused_rate", ss.refused_rate),
        ("sessions_failed", ss.failed),
        ("sessions_moved", core.sessions().moves().1),
        (
            "sessions_redirected_while_moving",
            ss.redirected_while_moving,
        ),
        ("sessions_redirects_followed", ss.redirects_followed),
        (
            "sessions_redirected_to_unreachable",
            ss.redirected_to_unreachable,
        ),
        ("sessions_handovers_taken_over", ss.handovers_taken_over),
        ("sessions_handovers_expired", ss.handovers_expired),
        ("dropped_unserved", st.dropped_unserved),
        ("handed_back", st.handed_back),
        ("duplicate_events", st.duplicate_events),
        ("assigned", core.assigned().len() as u64),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v as f64))
    .collect()
}

/// The Webex facts of a user, as the cloud's presence service reports them.
pub fn from_cloud(
    last_active_ms: Option<u64>,
    dnd_until_ms: Option<u64>,
    ooo: bool,
    hidden: bool,
) -> WebexPresence {
    WebexPresence {
        last_active: last_active_ms.map(std::time::Duration::from_millis),
        dnd_until: dnd_until_ms.map(std::time::Duration::from_millis),
        out_of_office: ooo,
        hidden,
    }
}

/// Gathers the group chat counters of every IM&P node and every Webex group space.
fn group_facts(imp: &ImpHandles, hybrid: &HybridHandles, s: &Scenario, out: &mut History) {
    for (host, h) in &imp.nodes {
        if let Some(node) = h.slot.borrow().as_ref() {
            out.group
                .muc
                .insert(host.clone(), node.borrow().muc().stats().clone());
        }
    }
    let Some(cloud) = &hybrid.cloud else { return };
    let cloud = cloud.borrow();
    let m = cloud.messaging();
    let mut ids = BTreeSet::new();
    for u in &out.users {
        ids.extend(m.spaces_of(&webex_email(u, s)));
    }
    for id in ids {
        let Some(space) = m
            .space(&id)
            .filter(|s| s.kind == fakes::cloud::messaging::SpaceKind::Group)
        else {
            continue;
        };
        let mut f = SpaceFacts {
            id: id.clone(),
            members: space.members.clone(),
            ..SpaceFacts::default()
        };
        for a in m.activities_after(&id, 0).unwrap_or_default() {
            match a.verb {
                fakes::cloud::messaging::Verb::Post => f.posts += 1,
                fakes::cloud::messaging::Verb::Read => {
                    *f.reads_by.entry(a.actor.clone()).or_default() += 1
                }
                _ => {}
            }
            f.via_connector += u64::from(a.via_connector.is_some());
        }
        out.group.spaces.push(f);
    }
}

/// Every secret the run knows at its end (module doc): from the scenario, the population,
/// Control Hub and the KMS.
fn secrets(s: &Scenario, h: &HybridHandles, users: &[UserSpec]) -> Vec<Secret> {
    let mut out = Vec::new();
    for c in &s.topology.imp_clusters {
        out.push(Secret::new(
            format!("AXL password (cluster {})", c.name),
            c.axl.password.clone(),
        ));
    }
    out.push(Secret::new("component secret", COMPONENT_SECRET));
    for u in users {
        out.push(Secret::new(
            format!("password of {}", u.userid),
            u.password.clone(),
        ));
    }
    if let Some(cloud) = &h.cloud {
        for c in cloud.borrow().control_hub().connectors() {
            out.push(Secret::new(
                format!("connector bearer token of {}", c.id),
                c.token.clone(),
            ));
        }
    }
    if let Some(kms) = &h.kms {
        for key in kms.borrow().kms().issued_keys() {
            for (encoding, text) in key_encodings(&key.bytes) {
                out.push(Secret::new(
                    format!("space key {} ({encoding})", key.uri),
                    text,
                ));
            }
        }
    }
    out
}

/// The in-memory log: a shared, bounded byte buffer.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<(Vec<u8>, bool)>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let room = LOG_BYTES_MAX.saturating_sub(g.0.len());
        if buf.len() > room {
            g.1 = true;
        }
        g.0.extend_from_slice(&buf[..buf.len().min(room)]);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` (a whole run) capturing its log when `on`; returns `f`'s result and
/// the captured log (and whether it was cut), or `None` when not `on`.
pub fn capture<T>(on: bool, f: impl FnOnce() -> T) -> (T, Option<(String, bool)>) {
    if !on {
        return (f(), None);
    }
    let buf = LogBuffer::default();
    let writer = buf.clone();
    let keep = filter::Targets::new()
        .with_target("connector", tracing::Level::DEBUG)
        .with_target("fakes", tracing::Level::DEBUG)
        .with_target("sim", tracing::Level::DEBUG);
    let captured = tracing_subscriber::fmt::layer()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .with_filter(keep);
    // Whatever subscriber was in force (the CLI's stderr log) still gets its events.
    let outer = tracing::dispatcher::get_default(Clone::clone);
    let wanted = outer.clone();
    let forward = Forward(outer).with_filter(filter::filter_fn(move |m| wanted.enabled(m)));
    let subscriber = tracing_subscriber::registry().with(captured).with(forward);
    let out = tracing::subscriber::with_default(subscriber, f);
    let (bytes, cut) = std::mem::take(&mut *buf.0.lock().unwrap_or_else(|p| p.into_inner()));
    (
        out,
        Some((String::from_utf8_lossy(&bytes).into_owned(), cut)),
    )
}

/// Hands events to another dispatcher (the one in force before [`capture`]).
struct Forward(tracing::Dispatch);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Forward {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        self.0.event(event);
    }
}
