//! Workload plans: who talks to whom, when, from which client; the rosters; the group chat
//! waves. Pure functions of the scenario, the population and the seed (every draw from a named
//! RNG), used by the world to start the client farms and by nothing that runs.

use crate::plan::connector::webex_email;
use crate::plan::rng::RngFactory;
use crate::plan::topology::UserSpec;
use crate::scenario::{ClientSel, GroupChatWorkload, Pct, Scenario, Workload};
use connector::proto::stream::STANZA_BYTES_MAX;
use fakes::clients::body::BodyPlan;
use fakes::clients::jabber::{ChatPlan, GroupPlan, RoomPlan};
use fakes::clients::webex::{Mix, WebexPlan};
use rand::RngExt as _;
use std::collections::BTreeMap;
use std::time::Duration;

/// Chat starts this long after the start by default, once everyone has logged in.
pub const CHAT_START_DEFAULT: Duration = Duration::from_secs(30);

/// Every workload's start: its own `start`, or [`CHAT_START_DEFAULT`] (at most half the run).
pub fn start_of(s: &Scenario, start: Option<crate::scenario::Dur>) -> Duration {
    start
        .map(|d| d.0)
        .unwrap_or(CHAT_START_DEFAULT.min(s.duration.0 / 2))
}

/// Roster pairs for presence: a user and each contact of its chat plan (the directory makes
/// them mutual). Jabber rosters are not otherwise modelled (spec 44).
pub fn roster_pairs(users: &[UserSpec], plans: &BTreeMap<u32, ChatPlan>) -> Vec<(String, String)> {
    users
        .iter()
        .filter_map(|u| plans.get(&u.index).map(|p| (u, p)))
        .flat_map(|(u, p)| p.contacts.iter().map(|c| (u.jid.clone(), c.clone())))
        .collect()
}

/// Each user's contacts (bare JIDs, both ways) as the IM&P directories hold them: the roster
/// pairs within one cluster only (presence does not cross clusters here).
pub fn contacts(
    users: &[UserSpec],
    plans: &BTreeMap<u32, ChatPlan>,
) -> BTreeMap<String, Vec<String>> {
    let cluster_of: BTreeMap<&str, usize> =
        users.iter().map(|u| (u.jid.as_str(), u.cluster)).collect();
    let mut contacts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (a, b) in roster_pairs(users, plans) {
        if cluster_of.get(a.as_str()) != cluster_of.get(b.as_str()) {
            continue;
        }
        for (x, y) in [(&a, &b), (&b, &a)] {
            let list = contacts.entry(x.clone()).or_default();
            if !list.contains(y) {
                list.push(y.clone());
            }
        }
    }
    contacts
}

/// The chat workload's plan for each user, by user index.
pub fn chat_plans(
    s: &Scenario,
    rngs: &RngFactory,
    users: &[UserSpec],
    webex_senders: &BTreeMap<u32, bool>,
) -> BTreeMap<u32, ChatPlan> {
    let mut plans = BTreeMap::new();
    let jabber: Vec<&UserSpec> = users
        .iter()
        .filter(|u| u.jabber && webex_senders.get(&u.index) != Some(&true))
        .collect();
    for (wi, w) in s.workloads.iter().enumerate() {
        let Workload::Chat(c) = w else { continue };
        let mut rng = rngs.named(&format!("workload/{wi}/contacts"));
        let Some(mean) = c.rate_per_user.mean_interval() else {
            continue;
        };
        let start = c
            .start
            .map(|d| d.0)
            .unwrap_or(CHAT_START_DEFAULT.min(s.duration.0 / 2));
        let stop = c.stop.unwrap_or(s.duration).0;
        let pool: Vec<&UserSpec> = users.iter().filter(|u| receives(c.to, u)).collect();
        let senders = jabber.iter().filter(|_| c.from != ClientSel::Webex);
        for u in senders {
            let want = c.contacts_per_user as usize;
            let contacts = pick_contacts(&mut rng, &pool, u, want, |p| p.jid.clone());
            plans.insert(
                u.index,
                ChatPlan {
                    contacts,
                    mean_interval: mean,
                    start,
                    stop,
                    body: c.body.map(body_plan),
                },
            );
        }
    }
    plans
}

/// The presence workload's parameters: (mean interval, manual share, start, stop).
pub type PresenceConfig = Option<(Duration, f64, Duration, Duration)>;

/// The first presence workload of the scenario, if any.
pub fn presence_config(s: &Scenario) -> PresenceConfig {
    s.workloads.iter().find_map(|w| match w {
        Workload::Presence(p) => Some((
            p.rate_per_device.mean_interval()?,
            f64::from(p.manual.0) / f64::from(crate::scenario::Pct::ALL.0),
            p.start
                .map(|d| d.0)
                .unwrap_or(CHAT_START_DEFAULT.min(s.duration.0 / 2)),
            p.stop.unwrap_or(s.duration).0,
        )),
        Workload::Chat(_) | Workload::GroupChat(_) => None,
    })
}

/// The Webex plans of users who send from Webex, by user index.
pub fn webex_plans(
    s: &Scenario,
    rngs: &RngFactory,
    users: &[UserSpec],
    senders: &BTreeMap<u32, bool>,
) -> BTreeMap<u32, WebexPlan> {
    let mut plans = BTreeMap::new();
    for (wi, w) in s.workloads.iter().enumerate() {
        let Workload::Chat(c) = w else { continue };
        let Some(mean) = c.rate_per_user.mean_interval() else {
            continue;
        };
        let mut rng = rngs.named(&format!("workload/{wi}/webex-contacts"));
        let pool: Vec<&UserSpec> = users.iter().filter(|u| receives(c.to, u)).collect();
        let m = &c.mix;
        let mix = Mix {
            text: m.text.fraction(),
            edit: m.edit.fraction(),
            delete: m.delete.fraction(),
            file: m.file.fraction(),
            typing: m.typing.fraction(),
            read: m.read.fraction(),
        };
        let start = c
            .start
            .map(|d| d.0)
            .unwrap_or(CHAT_START_DEFAULT.min(s.duration.0 / 2));
        let stop = c.stop.unwrap_or(s.duration).0;
        for u in users.iter().filter(|u| {
            u.webex && senders.get(&u.index) == Some(&true) && c.from != ClientSel::Jabber
        }) {
            let contacts = pick_contacts(&mut rng, &pool, u, c.contacts_per_user as usize, |p| {
                webex_email(p, s)
            });
            plans.insert(
                u.index,
                WebexPlan {
                    contacts,
                    mean_interval: mean,
                    start,
                    stop,
                    mix,
                    body: c.body.map(body_plan),
                },
            );
        }
    }
    plans
}

/// Whether `u` is in the recipient pool of a workload addressed to `sel`.
pub fn receives(sel: ClientSel, u: &UserSpec) -> bool {
    match sel {
        ClientSel::Any => u.jabber || u.webex,
        ClientSel::Jabber => u.jabber,
        ClientSel::Webex => u.webex,
    }
}

/// Up to `want` distinct contacts other than `u`, drawn from `pool` (bounded draws).
pub fn pick_contacts(
    rng: &mut impl rand::Rng,
    pool: &[&UserSpec],
    u: &UserSpec,
    want: usize,
    name: impl Fn(&UserSpec) -> String,
) -> Vec<String> {
    let want = want.min(pool.len().saturating_sub(1));
    let mut out = Vec::new();
    // Bounded: at most 8 draws per wanted contact.
    for _ in 0..want * 8 {
        if out.len() == want {
            break;
        }
        let peer = pool[rng.random_range(0..pool.len())];
        let n = name(peer);
        if peer.index != u.index && !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// Which client each user sends from when both are possible (`from: any`): Jabber-only and
/// Webex-only users use theirs; users of both pick one per the seed. `true` = Webex.
pub fn sending_client(rngs: &RngFactory, users: &[UserSpec]) -> BTreeMap<u32, bool> {
    let mut rng = rngs.named("sending-client");
    users
        .iter()
        .map(|u| {
            let webex = match (u.jabber, u.webex) {
                (true, true) => rng.random_range(0..2) == 1,
                (false, true) => true,
                _ => false,
            };
            (u.index, webex)
        })
        .collect()
}

/// One Webex group space a user creates.
#[derive(Debug, Clone)]
pub struct SpacePlan {
    /// Which workload (wave) it belongs to.
    pub workload: usize,
    /// The other members' emails.
    pub members: Vec<String>,
    /// When it is created.
    pub at: Duration,
    /// Mean time between posts.
    pub mean_interval: Duration,
    /// Posting stops.
    pub stop: Duration,
}

fn group_window(s: &Scenario, w: &GroupChatWorkload) -> (Duration, Duration) {
    let start = w
        .start
        .map(|d| d.0)
        .unwrap_or(CHAT_START_DEFAULT.min(s.duration.0 / 2));
    (start, w.stop.unwrap_or(s.duration).0)
}

/// The `group_chat` workloads, with their index among the workloads.
pub fn waves(s: &Scenario) -> impl Iterator<Item = (usize, &GroupChatWorkload)> {
    s.workloads.iter().enumerate().filter_map(|(i, w)| match w {
        Workload::GroupChat(g) => Some((i, g)),
        _ => None,
    })
}

fn drawn(rng: &mut impl rand::Rng, p: Pct) -> bool {
    rng.random_range(0..Pct::ALL.0) < p.0
}

/// The group plan of every Jabber user (by user index): rooms it creates, with invitees from
/// its own IM&P node; every Jabber user has one so that it accepts invitations.
pub fn group_plans(
    s: &Scenario,
    rngs: &RngFactory,
    users: &[UserSpec],
) -> BTreeMap<u32, GroupPlan> {
    let mut plans: BTreeMap<u32, GroupPlan> = BTreeMap::new();
    let service = format!("conference.{}", s.topology.domain);
    for (wi, w) in waves(s) {
        let Some(mean) = w.rate_per_user.mean_interval() else {
            continue;
        };
        let (start, stop) = group_window(s, w);
        let mut rng = rngs.named(&format!("workload/{wi}/group-chat"));
        for u in users.iter().filter(|u| u.jabber) {
            let home = u.home_host(s);
            let pool: Vec<&UserSpec> = users.iter().filter(|p| p.home_host(s) == home).collect();
            let want = w.room_size.saturating_sub(1) as usize;
            let invitees = pick_contacts(&mut rng, &pool, u, want, |p| p.jid.clone());
            let room = RoomPlan {
                name: format!("g{wi}-{}", u.userid),
                persistent: drawn(&mut rng, w.persistent),
                invitees,
                at: start,
            };
            let plan = plans.entry(u.index).or_insert_with(|| GroupPlan {
                service: service.clone(),
                rooms: Vec::new(),
                mean_interval: mean,
                stop,
            });
            plan.rooms.push(room);
            // Several waves: the fastest rate, the latest stop.
            plan.mean_interval = plan.mean_interval.min(mean);
            plan.stop = plan.stop.max(stop);
        }
    }
    plans
}

/// The Webex group spaces each Webex App user creates (by user index).
pub fn space_plans(
    s: &Scenario,
    rngs: &RngFactory,
    users: &[UserSpec],
) -> BTreeMap<u32, Vec<SpacePlan>> {
    let mut plans: BTreeMap<u32, Vec<SpacePlan>> = BTreeMap::new();
    let everyone: Vec<&UserSpec> = users.iter().collect();
    let hm_jabber: Vec<&UserSpec> = users
        .iter()
        .filter(|u| u.hybrid && u.jabber && !u.webex)
        .collect();
    for (wi, w) in waves(s) {
        let Some(mean) = w.rate_per_user.mean_interval() else {
            continue;
        };
        let (start, stop) = group_window(s, w);
        let mut rng = rngs.named(&format!("workload/{wi}/group-spaces"));
        for u in users.iter().filter(|u| u.webex) {
            let want = w.room_size.saturating_sub(1) as usize;
            // One member is a Hybrid Message user on Jabber when there is one (the case spec
            // 42 (c) is about), the others anyone.
            // (`u` uses Webex, so it is never in `hm_jabber`.)
            let mut members: Vec<String> = Vec::new();
            if !hm_jabber.is_empty() {
                let p = hm_jabber[rng.random_range(0..hm_jabber.len())];
                members.push(webex_email(p, s));
            }
            let rest = pick_contacts(&mut rng, &everyone, u, want, |p| webex_email(p, s));
            for m in rest {
                if members.len() < want && !members.contains(&m) {
                    members.push(m);
                }
            }
            if members.len() < 2 {
                continue; // a group space has three members at least
            }
            plans.entry(u.index).or_default().push(SpacePlan {
                workload: wi,
                members,
                at: start,
                mean_interval: mean,
                stop,
            });
        }
    }
    plans
}

/// The clients' body plan for a workload's `body`.
pub fn body_plan(b: crate::scenario::BodySpec) -> fakes::clients::body::BodyPlan {
    use crate::scenario::BodyCharSet as C;
    use fakes::clients::body::BodyChars;
    let (min, max) = b.size.bounds();
    BodyPlan {
        min_bytes: min as usize,
        max_bytes: max as usize,
        chars: match b.chars {
            C::Ascii => BodyChars::Ascii,
            C::Xml => BodyChars::Xml,
            C::Unicode => BodyChars::Unicode,
            C::Mixed => BodyChars::Mixed,
        },
    }
}

/// The largest body of `chars` that crosses in every direction, in bytes: its encrypted form
/// within the cloud's limit on encrypted text, and its stanza, escaped at the worst, within
/// IM&P's stanza limit with room for the envelope of a carbon or an offline copy.
pub fn body_bytes_max(chars: crate::scenario::BodyCharSet) -> u32 {
    let factor = body_plan(crate::scenario::BodySpec {
        size: crate::scenario::BodySize::Fixed(0),
        chars,
    })
    .chars
    .escape_factor_max();
    let stanza = (STANZA_BYTES_MAX - STANZA_ENVELOPE_BYTES) / factor;
    stanza.min(BODY_ENCRYPTED_TEXT_BYTES) as u32
}

/// Bytes of a stanza around its body at most: addresses, ids, a carbon's `sent`/`forwarded`
/// wrapping, an offline copy's delay stamp, and the client's `[[id]]` tag.
const STANZA_ENVELOPE_BYTES: usize = 4 * 1024;

/// The longest text whose JWE fits the cloud's limit on encrypted text (64 KiB): base64url
/// makes 4 bytes of 3, plus a protected header naming the space key (a few hundred bytes) and
/// the client's `[[id]]` tag.
const BODY_ENCRYPTED_TEXT_BYTES: usize = 47_000;
