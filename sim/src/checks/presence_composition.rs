//! The `presence_composition` check: every logged-in device sees each contact's composed
//! presence at the end (spec 53).

use crate::checks::{Check, Entry, Verdict, boxed, examples};
use crate::history::History;
use crate::history::observer::Name;
use crate::oracle::Oracle;
use crate::scenario::Scenario;
use reports::Status;
use std::collections::BTreeMap;
use std::time::Duration;

/// The `presence_composition` check (no parameters).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceComposition {}

/// How the registry reads it.
pub const ENTRY: Entry = Entry {
    name: "presence_composition",
    bare: true,
    read: boxed::<PresenceComposition>,
};

impl Check for PresenceComposition {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn judge(&self, s: &Scenario, h: &History) -> Verdict {
        presence_composition(s, h)
    }
}

/// Two device presences of one user published this close together may reach the node in
/// either order (separate connections): either may legitimately be "the most recent".
pub const PRESENCE_RACE: Duration = Duration::from_millis(100);

/// What a contact should see of a user: (resource, show, status), or unavailable.
type Shown = Option<(String, Option<String>, Option<String>)>;

/// A device presence as last published: (time, show, status).
type Latest = (Duration, Option<String>, Option<String>);

/// What users published: per user the manual presence (device, show, status) and, per
/// device, its latest device presence with its time.
struct Published {
    manual: BTreeMap<String, Shown>,
    device: BTreeMap<String, BTreeMap<String, Latest>>,
    manual_changes: u64,
}

impl Published {
    fn of(out: &History) -> Self {
        let mut p = Self {
            manual: BTreeMap::new(),
            device: BTreeMap::new(),
            manual_changes: 0,
        };
        for (at, e) in out.observer.published_presences() {
            if e.manual {
                p.manual_changes += 1;
                let v = e.available.then(|| (e.device.clone(), e.show, e.status));
                p.manual.insert(e.user, v);
            } else {
                p.device
                    .entry(e.user)
                    .or_default()
                    .insert(e.device, (at, e.show, e.status));
            }
        }
        p
    }

    /// Every presence a contact may show for `user` now, and whether a manual presence beats
    /// logged-in devices.
    fn candidates(&self, oracle: &Oracle<'_>, user: &str) -> (Vec<Shown>, bool) {
        let devs: Vec<(&String, &Latest)> = self
            .device
            .get(user)
            .map(|m| {
                m.iter()
                    .filter(|(d, _)| up_at_end(oracle, user, d))
                    .collect()
            })
            .unwrap_or_default();
        let latest = devs.iter().map(|(_, l)| l.0).max();
        let device_shown: Vec<Shown> = devs
            .iter()
            .filter(|(_, l)| latest.is_some_and(|t| t.saturating_sub(l.0) <= PRESENCE_RACE))
            .map(|(d, l)| Some(((*d).clone(), l.1.clone(), l.2.clone())))
            .collect();
        match self.manual.get(user).cloned().flatten() {
            Some(m) if up_at_end(oracle, user, &m.0) => (vec![Some(m)], !device_shown.is_empty()),
            _ if device_shown.is_empty() => (vec![None], false),
            _ => (device_shown, false),
        }
    }
}

/// Whether `user/device` is logged in at the end.
fn up_at_end(oracle: &Oracle<'_>, user: &str, device: &str) -> bool {
    oracle
        .sessions
        .get(&(user.to_string(), device.to_string()))
        .and_then(|e| e.last())
        .is_some_and(|(_, up)| *up)
}

/// Presence composition (spec 53), judged on the final state: for every device logged in at
/// the end and every contact of its user, the last presence it received from that contact is
/// the contact's composed presence: the manual presence if one is set (by a device still
/// logged in), otherwise the latest device presence among the contact's logged-in devices
/// (either of two published within [`PRESENCE_RACE`]), otherwise unavailable.
pub fn presence_composition(s: &Scenario, out: &History) -> (Status, String) {
    let oracle = Oracle::new(s, out);
    let published = Published::of(out);
    let manual_changes = published.manual_changes;
    let candidates = |user: &str| published.candidates(&oracle, user);
    let (mut judged, mut manual_won, mut with_text) = (0u64, 0u64, 0u64);
    let mut bad = Vec::new();
    for ((viewer, vdev), up) in oracle
        .sessions
        .iter()
        .map(|(k, e)| (k, e.last().is_some_and(|(_, u)| *u)))
    {
        if !up {
            continue;
        }
        for contact in out.contacts.get(viewer).map(Vec::as_slice).unwrap_or(&[]) {
            let (want, manual_over_device) = candidates(contact);
            judged += 1;
            let got_shown: Option<Shown> = out.observer.with_seen_presences(|seen| {
                let got = seen.get(viewer, vdev, contact)?;
                Some(got.available.then(|| {
                    let text = |t: &Option<Name>| t.as_deref().map(str::to_string);
                    (got.resource.to_string(), text(&got.show), text(&got.status))
                }))
            });
            match got_shown {
                Some(g) if want.contains(&g) => {
                    if manual_over_device {
                        manual_won += 1;
                    }
                    if g.as_ref().is_some_and(|x| x.2.is_some()) {
                        with_text += 1;
                    }
                }
                other => bad.push(format!(
                    "{viewer}/{vdev} shows {contact} as {} instead of {}",
                    describe(other.flatten()),
                    describe(want.first().cloned().flatten())
                )),
            }
        }
    }
    if judged == 0 || manual_changes == 0 {
        return (
            Status::Fail,
            "no contact presence or no manual presence to judge: the check exercised nothing"
                .into(),
        );
    }
    if bad.is_empty() {
        (
            Status::Pass,
            format!(
                "{judged} (device, contact) pairs show the composed presence; {with_text} with status text, {manual_won} where a manual presence beats logged-in devices"
            ),
        )
    } else {
        (
            Status::Fail,
            format!(
                "{} of {judged} (device, contact) pairs wrong (e.g. {})",
                bad.len(),
                examples(&bad)
            ),
        )
    }
}

fn describe(s: Shown) -> String {
    match s {
        None => "unavailable".into(),
        Some((res, show, status)) => format!(
            "{}/{res} {:?}",
            show.as_deref().unwrap_or("available"),
            status.unwrap_or_default()
        ),
    }
}
