//! Group chat is never bridged (spec 42): the `group_chat` workload's plans, the facts a run
//! leaves behind, and the `group_chat` check.
//!
//! ## The workload
//! Each `group_chat` workload is one wave: at its `start` every Jabber user creates one
//! XEP-0045 room on its IM&P node (a `persistent` share of them persistent) and invites
//! `room_size - 1` users homed on the same node, drawn from everyone (rooms live on one node,
//! `fakes::imp::muc`); every Webex App user creates one Webex group space of `room_size`
//! members. A wave before the connector opens its sessions puts Hybrid Message users who also
//! use Webex into rooms; a wave after it invites them once they are on Webex.
//!
//! ## The check, behaviour by behaviour (spec 42)
//! - (a) Every invitation to a Jabber user not on Webex at the time led to a join, and every
//!   device in a room received every groupchat message sent while it was there (sent after its
//!   join was confirmed, and more than [`RACE_MARGIN`] before it left). No invitee on Webex
//!   (connector session open at the invitation) ever joined, the node dropped such
//!   invitations (`invites_dropped_hm` > 0), and no inviter got an error.
//! - (b) Every device of a user in an ad-hoc room when the user's connector session opened was
//!   removed from it within [`SWITCH_WINDOW`] (its own unavailable presence with status 333),
//!   and the other occupants saw it go.
//! - (c) No Jabber device received a Webex group-space post, no post in a group space came
//!   through a connector, and members who are Hybrid Message users on Jabber only produced no
//!   read receipt; at least one group space had such a member.
//! - (d) In persistent rooms such a user stayed, and the other occupants saw them Available
//!   with the connector's "@ Webex" status (users set DND, out of office or hidden are shown
//!   otherwise by design, spec 52, and are not judged here).
//!
//! Each behaviour must have been exercised at least once, or the check fails: a check that saw
//! nothing proves nothing.

use crate::checks::{Check, Entry, boxed};
use crate::history::{Bridge, GroupFacts, History};
use crate::plan::topology::UserSpec;
use crate::plan::validate::Problem;
use crate::scenario::{Scenario, Workload};
use fakes::imp::muc::STATUS_REMOVED_BY_SERVICE;
use fakes::observe::{ClientKind, Delivered, GroupEvent, GroupEventKind};
use reports::Status;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A message sent within this long of a member's departure may legitimately miss it (it was
/// on the wire when the room let the member go).
pub const RACE_MARGIN: Duration = Duration::from_secs(1);
/// A user's removal from ad-hoc rooms is due within this long of the connector session being
/// seen open (sessions are sampled every second, `hybrid::BRIDGE_SAMPLE`).
pub const SWITCH_WINDOW: Duration = Duration::from_secs(3);
/// Violations quoted in the check's detail; the rest are counted.
pub const QUOTED_MAX: usize = 5;

/// Everything the check judges.
pub struct Inputs<'a> {
    /// The population.
    pub users: &'a [UserSpec],
    /// Group events in order with their times.
    pub events: &'a [(Duration, GroupEvent)],
    /// Deliveries of group-space posts.
    pub space_deliveries: &'a [(Duration, Delivered)],
    /// Connector session history per user.
    pub bridge: &'a Bridge,
    /// Node and cloud facts.
    pub facts: &'a GroupFacts,
}

/// The `group_chat` check on a finished run.
pub fn check(out: &crate::history::History) -> (Status, String) {
    let events = out.observer.group_events();
    let space_deliveries = out.observer.group_space_deliveries();
    judge(&Inputs {
        users: &out.users,
        events: &events,
        space_deliveries: &space_deliveries,
        bridge: &out.bridge,
        facts: &out.group,
    })
}

/// Violations and counts, gathered behaviour by behaviour.
#[derive(Default)]
struct Verdict {
    violations: Vec<String>,
    counts: BTreeMap<&'static str, u64>,
}

impl Verdict {
    fn bad(&mut self, v: String) {
        self.violations.push(v);
    }
    fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }
    fn n(&self, what: &str) -> u64 {
        self.counts.get(what).copied().unwrap_or(0)
    }
}

/// When the user's connector session was first seen open, if ever.
fn switched_at(bridge: &Bridge, user: &str) -> Option<Duration> {
    bridge
        .get(user)?
        .iter()
        .find(|(_, up)| *up)
        .map(|(t, _)| *t)
}

fn on_webex_at(bridge: &Bridge, user: &str, at: Duration) -> bool {
    bridge
        .get(user)
        .and_then(|ev| ev.iter().rfind(|(t, _)| *t <= at))
        .is_some_and(|(_, up)| *up)
}

/// A device's stay in a room: (room, user, device) → [(joined, left, codes at leaving)].
type Stays = BTreeMap<(String, String, String), Vec<(Duration, Option<(Duration, Vec<u16>)>)>>;

fn stays(events: &[(Duration, GroupEvent)]) -> Stays {
    let mut st = Stays::new();
    for (at, e) in events {
        let key = (e.room.clone(), e.user.clone(), e.device.clone());
        match &e.kind {
            GroupEventKind::Joined => st.entry(key).or_default().push((*at, None)),
            GroupEventKind::Left { codes } => {
                if let Some(last) = st
                    .get_mut(&key)
                    .and_then(|v| v.last_mut())
                    .filter(|s| s.1.is_none())
                {
                    last.1 = Some((*at, codes.clone()));
                }
            }
            _ => {}
        }
    }
    st
}

/// Judges a history (see the module docs).
pub fn judge(i: &Inputs<'_>) -> (Status, String) {
    let mut v = Verdict::default();
    let stays = stays(i.events);
    invitations(i, &stays, &mut v);
    messages(i, &stays, &mut v);
    errors(i, &stays, &mut v);
    switches(i, &stays, &mut v);
    spaces(i, &mut v);
    let dropped: u64 = i.facts.muc.values().map(|m| m.invites_dropped_hm).sum();
    let needed = [
        ("Jabber invitees joined", v.n("joined")),
        ("groupchat copies received", v.n("received")),
        ("invitations to HM users on Webex dropped", dropped),
        (
            "users removed from ad-hoc rooms on switching",
            v.n("removed"),
        ),
        (
            "persistent-room occupants shown Available @ Webex",
            v.n("available"),
        ),
        ("group spaces with HM members on Jabber", v.n("spaces_hm")),
    ];
    for (what, n) in needed {
        if n == 0 {
            v.bad(format!("nothing exercised: 0 {what}"));
        }
    }
    let summary = format!(
        "{} Jabber invitees joined, {} of {} groupchat copies received; {} invitations to HM users on Webex dropped silently ({} not joined); {} switches removed from ad-hoc rooms; {} persistent-room occupants shown Available @ Webex; {} group spaces ({} with HM members on Jabber), {} Jabber deliveries, {} read receipts from them",
        v.n("joined"),
        v.n("received"),
        v.n("due"),
        dropped,
        v.n("hm_not_added"),
        v.n("removed"),
        v.n("available"),
        i.facts.spaces.len(),
        v.n("spaces_hm"),
        v.n("space_to_jabber"),
        v.n("hm_reads"),
    );
    if v.violations.is_empty() {
        return (Status::Pass, summary);
    }
    let quoted: Vec<&str> = v
        .violations
        .iter()
        .take(QUOTED_MAX)
        .map(String::as_str)
        .collect();
    (
        Status::Fail,
        format!(
            "{} violations: {}; {summary}",
            v.violations.len(),
            quoted.join("; ")
        ),
    )
}

/// (a) Jabber invitees join; invitees on Webex never do.
fn invitations(i: &Inputs<'_>, stays: &Stays, v: &mut Verdict) {
    let by_jid: BTreeMap<&str, &UserSpec> = i.users.iter().map(|u| (u.jid.as_str(), u)).collect();
    for (at, e) in i.events {
        let GroupEventKind::Invited { invitee } = &e.kind else {
            continue;
        };
        let joined_after = stays
            .iter()
            .any(|((r, u, _), s)| r == &e.room && u == invitee && s.iter().any(|(j, _)| j >= at));
        let invited = by_jid.get(invitee.as_str());
        let jabber = invited.is_some_and(|u| u.jabber);
        // The bridge is keyed by the mail ID (spec 24); the invitation names the JID.
        let key = invited.and_then(|u| crate::oracle::interop::session_key(u));
        if key.is_some_and(|k| on_webex_at(i.bridge, k, *at)) {
            v.count("hm_not_added");
            if joined_after {
                v.bad(format!(
                    "{invitee} was on Webex when invited to {} but joined it",
                    e.room
                ));
            }
        } else if jabber {
            if joined_after {
                v.count("joined");
            } else {
                v.bad(format!(
                    "Jabber user {invitee} was invited to {} and never joined",
                    e.room
                ));
            }
        } else if joined_after {
            v.bad(format!(
                "{invitee} has no Jabber client but joined {}",
                e.room
            ));
        }
    }
}

/// (a) Every device in a room received every message sent while it was there.
fn messages(i: &Inputs<'_>, stays: &Stays, v: &mut Verdict) {
    let refused: BTreeSet<&str> = i
        .events
        .iter()
        .filter_map(|(_, e)| match &e.kind {
            GroupEventKind::Error { id: Some(id), .. } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    let received: BTreeSet<(&str, &str, &str, &str)> = i
        .events
        .iter()
        .filter_map(|(_, e)| match &e.kind {
            GroupEventKind::Received { id, .. } => Some((
                e.room.as_str(),
                e.user.as_str(),
                e.device.as_str(),
                id.as_str(),
            )),
            _ => None,
        })
        .collect();
    for (at, e) in i.events {
        let GroupEventKind::Sent { id } = &e.kind else {
            continue;
        };
        if refused.contains(id.as_str()) {
            continue;
        }
        for ((room, user, device), list) in stays.iter().filter(|((r, ..), _)| r == &e.room) {
            let present = list.iter().any(|(j, left)| {
                j < at && left.as_ref().is_none_or(|(l, _)| *at + RACE_MARGIN < *l)
            });
            if !present {
                continue;
            }
            v.count("due");
            if received.contains(&(room.as_str(), user.as_str(), device.as_str(), id.as_str())) {
                v.count("received");
            } else {
                v.bad(format!("{user}/{device} in {room} never received {id}"));
            }
        }
    }
}

/// No inviter saw an error; a groupchat refused is tolerated only from a sender removed
/// around that time (it was on the wire when the room let it go).
fn errors(i: &Inputs<'_>, stays: &Stays, v: &mut Verdict) {
    for (at, e) in i.events {
        let GroupEventKind::Error {
            stanza, condition, ..
        } = &e.kind
        else {
            continue;
        };
        let key = (e.room.clone(), e.user.clone(), e.device.clone());
        let removed_then = stays.get(&key).is_some_and(|l| {
            l.iter().any(|(_, left)| {
                left.as_ref().is_some_and(|(t, codes)| {
                    codes.contains(&STATUS_REMOVED_BY_SERVICE) && *t <= *at + RACE_MARGIN
                })
            })
        });
        if stanza == "message" && removed_then {
            v.count("late_sends");
            continue;
        }
        v.bad(format!(
            "{}/{} got a {condition} error from {}",
            e.user, e.device, e.room
        ));
    }
}

/// Rooms' persistence, from their creation events.
fn persistence(events: &[(Duration, GroupEvent)]) -> BTreeMap<&str, bool> {
    events
        .iter()
        .filter_map(|(_, e)| match e.kind {
            GroupEventKind::Created { persistent } => Some((e.room.as_str(), persistent)),
            _ => None,
        })
        .collect()
}

/// (b) and (d): what happened to the rooms of users who switched to Webex.
fn switches(i: &Inputs<'_>, stays: &Stays, v: &mut Verdict) {
    let persistent = persistence(i.events);
    for u in i.users {
        // The bridge is keyed by the connector's key, the mail ID (spec 24), not the JID.
        let key = crate::oracle::interop::session_key(u).unwrap_or_default();
        let Some(t) = switched_at(i.bridge, key) else {
            continue;
        };
        for ((room, user, device), list) in stays.iter().filter(|((_, user, _), _)| *user == u.jid)
        {
            // In the room when the session opened (sampling lags the opening by up to 1 s).
            let Some(stay) = list.iter().find(|(j, left)| {
                *j < t.saturating_sub(SWITCH_WINDOW)
                    && left.as_ref().is_none_or(|(l, _)| *l + SWITCH_WINDOW > t)
            }) else {
                continue;
            };
            let removed = stay
                .1
                .as_ref()
                .filter(|(_, c)| c.contains(&STATUS_REMOVED_BY_SERVICE));
            if persistent.get(room.as_str()).copied().unwrap_or(false) {
                if removed.is_some() {
                    v.bad(format!(
                        "{user}/{device} was removed from persistent room {room}"
                    ));
                } else {
                    shown_available(i, stays, u, room, t, v);
                }
            } else {
                match removed {
                    Some((l, _)) if *l <= t + SWITCH_WINDOW => {
                        v.count("removed");
                        seen_gone(i, stays, user, room, *l, v);
                    }
                    _ => v.bad(format!(
                        "{user}/{device} stayed in ad-hoc room {room} after switching to Webex"
                    )),
                }
            }
        }
    }
}

/// Whether a device of another user was in `room` from before `at` until after it.
fn others_present(stays: &Stays, user: &str, room: &str, at: Duration) -> bool {
    stays.iter().any(|((r, u, _), list)| {
        r == room
            && u != user
            && list.iter().any(|(j, left)| {
                *j + SWITCH_WINDOW < at
                    && left.as_ref().is_none_or(|(l, _)| *l > at + SWITCH_WINDOW)
            })
    })
}

/// (b) the other occupants there at the time saw the switched user leave (status 333).
fn seen_gone(i: &Inputs<'_>, stays: &Stays, user: &str, room: &str, at: Duration, v: &mut Verdict) {
    let seen = i.events.iter().any(|(t, e)| {
        e.room == room
            && *t + SWITCH_WINDOW >= at
            && matches!(&e.kind, GroupEventKind::Presence { occupant, available: false, codes, .. }
                if occupant == user && codes.contains(&STATUS_REMOVED_BY_SERVICE))
    });
    let others = others_present(stays, user, room, at);
    if others && !seen {
        v.bad(format!("nobody in {room} saw {user} removed"));
    }
}

/// (d) after the switch, the room showed the user Available "@ Webex".
fn shown_available(
    i: &Inputs<'_>,
    stays: &Stays,
    u: &UserSpec,
    room: &str,
    t: Duration,
    v: &mut Verdict,
) {
    if u.dnd || u.ooo || u.hidden || !u.webex {
        // Shown as their Webex state says (spec 52), not Available; a user who never uses
        // Webex has a session too and shows Away "@ Webex" (spec 55).
        return;
    }
    if !others_present(stays, &u.jid, room, t) {
        return; // nobody else in the room to show it to
    }
    let seen: Vec<(bool, Option<&String>, Option<&String>)> = i
        .events
        .iter()
        .filter(|(at, e)| e.room == room && e.user != u.jid && *at + SWITCH_WINDOW >= t)
        .filter_map(|(_, e)| match &e.kind {
            GroupEventKind::Presence {
                occupant,
                available,
                show,
                status,
                ..
            } if *occupant == u.jid => Some((*available, show.as_ref(), status.as_ref())),
            _ => None,
        })
        .collect();
    let webex = seen
        .iter()
        .find(|(_, _, st)| st.is_some_and(|s| s.contains("@ Webex")));
    match webex {
        Some((true, None, _)) => v.count("available"),
        Some((a, show, _)) => v.bad(format!(
            "{} was shown in persistent room {room} as available={a} show={show:?}, not Available",
            u.jid
        )),
        None => v.bad(format!(
            "{} never showed \"@ Webex\" presence in persistent room {room}",
            u.jid
        )),
    }
}

/// (c) group spaces: nothing on Jabber, no connector, no read receipts from HM Jabber users.
fn spaces(i: &Inputs<'_>, v: &mut Verdict) {
    for (_, d) in i.space_deliveries {
        if d.client == ClientKind::Jabber {
            v.count("space_to_jabber");
            v.bad(format!(
                "group-space post {} reached Jabber user {}",
                d.id, d.to
            ));
        }
    }
    let hm_jabber: BTreeSet<&str> = i
        .users
        .iter()
        .filter(|u| u.hybrid && u.jabber && !u.webex)
        .map(|u| u.jid.as_str())
        .collect();
    for s in &i.facts.spaces {
        if s.via_connector > 0 {
            v.bad(format!(
                "{} activities of group space {} came through a connector",
                s.via_connector, s.id
            ));
        }
        let hm: Vec<&String> = s
            .members
            .iter()
            .filter(|m| hm_jabber.contains(m.as_str()))
            .collect();
        if hm.is_empty() || s.posts == 0 {
            continue;
        }
        v.count("spaces_hm");
        for m in hm {
            if let Some(n) = s.reads_by.get(m).filter(|n| **n > 0) {
                *v.counts.entry("hm_reads").or_default() += n;
                v.bad(format!(
                    "{m} (Hybrid Message on Jabber) sent {n} read receipts in {}",
                    s.id
                ));
            }
        }
    }
}

/// The `group_chat` check (no parameters).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupChat {}

/// How the registry reads it.
pub const ENTRY: Entry = Entry {
    name: "group_chat",
    bare: true,
    read: boxed::<GroupChat>,
};

impl Check for GroupChat {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn validate(&self, s: &Scenario, at: &str) -> Vec<Problem> {
        let mut p = Vec::new();
        let mut add = |message: &str, help: &str| {
            p.push(Problem {
                path: at.to_string(),
                message: message.into(),
                help: Some(help.into()),
            })
        };
        if !s
            .workloads
            .iter()
            .any(|w| matches!(w, Workload::GroupChat(_)))
        {
            add(
                "the `group_chat` check needs a `group_chat` workload",
                "add `- group_chat: { rate_per_user: 1/1m }` to `workloads`",
            );
        }
        if s.topology.expressway_clusters.is_empty() {
            add(
                "the `group_chat` check needs the connector (users switching to Webex)",
                "add an `expressway_clusters` entry to `topology`",
            );
        }
        p
    }
    fn judge(&self, _s: &Scenario, h: &History) -> crate::checks::Verdict {
        check(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::SpaceFacts;
    use fakes::imp::muc::MucStats;

    fn user(i: u32, jabber: bool, webex: bool, hybrid: bool) -> UserSpec {
        UserSpec {
            index: i,
            userid: format!("u{i}"),
            jid: format!("u{i}@example.com"),
            email: Some(format!("u{i}@example.com")),
            password: String::new(),
            cluster: 0,
            node: 1,
            jabber,
            webex,
            hybrid,
            hidden: false,
            dnd: false,
            ooo: false,
            duplicate_in: None,
            devices: 1,
            farm: 1,
        }
    }

    fn ev(room: &str, user: &str, kind: GroupEventKind) -> GroupEvent {
        GroupEvent {
            room: room.into(),
            user: user.into(),
            device: "j".into(),
            kind,
        }
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    /// A history where every behaviour holds: u0 (Jabber) owns ad-hoc room A and persistent
    /// room P, u1 (Jabber) joins both, u2 (HM, both clients) joins both and switches at 100 s,
    /// u3 (HM on Webex) is invited at 200 s and dropped, u4 (HM on Jabber only) is in a group
    /// space.
    fn world() -> (
        Vec<UserSpec>,
        Vec<(Duration, GroupEvent)>,
        Bridge,
        GroupFacts,
    ) {
        use GroupEventKind as K;
        let users = vec![
            user(0, true, false, false),
            user(1, true, false, false),
            user(2, true, true, true),
            user(3, false, true, true),
            user(4, true, false, true),
        ];
        let (a, p) = ("a@conference.example.com", "p@conference.example.com");
        let (u0, u1, u2) = ("u0@example.com", "u1@example.com", "u2@example.com");
        let mut e = Vec::new();
        for room in [a, p] {
            e.push((s(10), ev(room, u0, K::Joined)));
            e.push((
                s(10),
                ev(
                    room,
                    u0,
                    K::Created {
                        persistent: room == p,
                    },
                ),
            ));
            for who in [u1, u2] {
                e.push((
                    s(10),
                    ev(
                        room,
                        u0,
                        K::Invited {
                            invitee: who.into(),
                        },
                    ),
                ));
                e.push((s(11), ev(room, who, K::Joined)));
            }
        }
        e.push((s(20), ev(a, u1, K::Sent { id: "m1".into() })));
        for who in [u0, u1, u2] {
            e.push((
                s(20),
                ev(
                    a,
                    who,
                    K::Received {
                        id: "m1".into(),
                        from: "u1".into(),
                    },
                ),
            ));
        }
        let removed = K::Left {
            codes: vec![110, 333],
        };
        e.push((s(100), ev(a, u2, removed)));
        let gone = K::Presence {
            occupant: u2.into(),
            available: false,
            show: None,
            status: None,
            codes: vec![333],
        };
        e.push((s(100), ev(a, u0, gone)));
        let webex = K::Presence {
            occupant: u2.into(),
            available: true,
            show: None,
            status: Some("@ Webex".into()),
            codes: vec![],
        };
        e.push((s(101), ev(p, u1, webex)));
        e.push((
            s(200),
            ev(
                a,
                u0,
                K::Invited {
                    invitee: "u3@example.com".into(),
                },
            ),
        ));
        let bridge: Bridge = [
            (u2.to_string(), vec![(s(100), true)]),
            ("u3@example.com".to_string(), vec![(s(90), true)]),
        ]
        .into_iter()
        .collect();
        let mut facts = GroupFacts::default();
        facts.muc.insert(
            "imp-a-1".into(),
            MucStats {
                invites_dropped_hm: 1,
                ..MucStats::default()
            },
        );
        facts.spaces.push(SpaceFacts {
            id: "space-1".into(),
            members: vec!["u3@example.com".into(), "u4@example.com".into(), u1.into()],
            posts: 3,
            reads_by: BTreeMap::new(),
            via_connector: 0,
        });
        (users, e, bridge, facts)
    }

    fn run(
        users: &[UserSpec],
        e: &[(Duration, GroupEvent)],
        b: &Bridge,
        f: &GroupFacts,
        d: &[(Duration, Delivered)],
    ) -> (Status, String) {
        judge(&Inputs {
            users,
            events: e,
            space_deliveries: d,
            bridge: b,
            facts: f,
        })
    }

    #[test]
    fn a_history_with_every_behaviour_passes() {
        let (users, e, b, f) = world();
        let (st, detail) = run(&users, &e, &b, &f, &[]);
        assert_eq!(st, Status::Pass, "{detail}");
        assert!(
            detail.contains("2 Jabber invitees joined")
                || detail.contains("4 Jabber invitees joined"),
            "{detail}"
        );
        assert!(
            detail.contains("3 of 3 groupchat copies received"),
            "{detail}"
        );
    }

    #[test]
    fn planted_violations_fail_the_check() {
        use GroupEventKind as K;
        let (users, e, b, f) = world();
        // A Jabber invitee who never got a message of its room.
        let mut lost = e.clone();
        lost.retain(|(_, x)| !(x.user == "u1@example.com" && matches!(x.kind, K::Received { .. })));
        let d = run(&users, &lost, &b, &f, &[]).1;
        assert!(d.contains("never received m1"), "{d}");
        // The HM user on Webex joined after all.
        let mut joined = e.clone();
        joined.push((
            s(201),
            ev("a@conference.example.com", "u3@example.com", K::Joined),
        ));
        assert!(
            run(&users, &joined, &b, &f, &[])
                .1
                .contains("was on Webex when invited")
        );
        // The inviter got an error.
        let mut err = e.clone();
        err.push((
            s(200),
            ev(
                "a@conference.example.com",
                "u0@example.com",
                K::Error {
                    stanza: "message".into(),
                    id: Some("x".into()),
                    condition: "forbidden".into(),
                },
            ),
        ));
        assert!(run(&users, &err, &b, &f, &[]).1.contains("forbidden error"));
        // The switcher stayed in the ad-hoc room.
        let mut stayed = e.clone();
        stayed.retain(|(_, x)| !matches!(x.kind, K::Left { .. }));
        assert!(
            run(&users, &stayed, &b, &f, &[])
                .1
                .contains("stayed in ad-hoc room")
        );
        // The persistent room showed them away.
        let mut away = e.clone();
        for (_, x) in &mut away {
            if let K::Presence {
                show,
                available: true,
                ..
            } = &mut x.kind
            {
                *show = Some("away".into());
            }
        }
        assert!(run(&users, &away, &b, &f, &[]).1.contains("not Available"));
        // A group-space post reached Jabber, and an HM Jabber user "read" it.
        let leak = Delivered {
            id: "group-space.u3.g.1".into(),
            from: "u3@example.com".into(),
            to: "u4@example.com".into(),
            device: "j".into(),
            client: ClientKind::Jabber,
            delayed: false,
            carbon: false,
            body: None,
        };
        let (st, detail) = run(&users, &e, &b, &f, &[(s(300), leak)]);
        assert_eq!(st, Status::Fail);
        assert!(
            detail.contains("reached Jabber user u4@example.com"),
            "{detail}"
        );
        let mut read = f.clone();
        read.spaces[0].reads_by.insert("u4@example.com".into(), 2);
        assert!(
            run(&users, &e, &b, &read, &[])
                .1
                .contains("sent 2 read receipts")
        );
        // Nothing exercised at all.
        let (st, detail) = run(&users, &[], &Bridge::new(), &GroupFacts::default(), &[]);
        assert_eq!(st, Status::Fail);
        assert!(detail.contains("nothing exercised"), "{detail}");
    }
}
