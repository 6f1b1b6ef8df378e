//! The `mdm_copies` check: Multiple Device Messaging (XEP-0280, spec 34).

use crate::checks::{Check, Entry, Verdict, boxed, examples};
use crate::history::History;
use crate::oracle::{Expect, Oracle, SESSION_SETTLE};
use crate::scenario::Scenario;
use reports::Status;

/// The `mdm_copies` check (no parameters).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MdmCopies {}

/// How the registry reads it.
pub const ENTRY: Entry = Entry {
    name: "mdm_copies",
    bare: true,
    read: boxed::<MdmCopies>,
};

impl Check for MdmCopies {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn judge(&self, s: &Scenario, h: &History) -> Verdict {
        mdm_copies(s, h)
    }
}

/// MDM (XEP-0280): for every message that must arrive, each of the sender's other devices and
/// each of the recipient's devices that was logged in around the send saw it, directly or as
/// a carbon. Clusters with MDM off are not judged.
pub fn mdm_copies(s: &Scenario, out: &History) -> (Status, String) {
    let oracle = Oracle::new(s, out);
    let mdm = |u: &str| oracle.cluster(u).is_some_and(|c| c.mdm);
    let (mut checked, mut carbons_checked) = (0u64, 0u64);
    let mut missing = Vec::new();
    out.observer.with_messages(|msgs| {
        for (id, m) in msgs {
            if oracle.expect(m) != Expect::Must || !mdm(&m.from) || !mdm(&m.to) {
                continue;
            }
            let (from, to) = (
                m.sent_at.saturating_sub(SESSION_SETTLE),
                m.sent_at + SESSION_SETTLE,
            );
            for d in oracle.devices_of(&m.from) {
                if d == &*m.sender_device || !oracle.device_up_over(&m.from, d, from, to) {
                    continue;
                }
                checked += 1;
                carbons_checked += 1;
                if !m
                    .carbon_seen
                    .iter()
                    .any(|c| c.user == m.from && &*c.device == d)
                {
                    missing.push(format!("{id}: sender's {}/{d} got no sent carbon", m.from));
                }
            }
            for d in oracle.devices_of(&m.to) {
                if !oracle.device_up_over(&m.to, d, from, to) {
                    continue;
                }
                checked += 1;
                let direct = m.deliveries.iter().any(|x| &*x.device == d);
                let carbon = m
                    .carbon_seen
                    .iter()
                    .any(|c| c.user == m.to && &*c.device == d);
                if !direct && !carbon {
                    missing.push(format!("{id}: recipient's {}/{d} never saw it", m.to));
                }
            }
        }
    });
    if checked == 0 {
        return (
            Status::Fail,
            "no (message, device) pair to judge: the check exercised nothing".into(),
        );
    }
    if missing.is_empty() {
        (
            Status::Pass,
            format!(
                "{checked} (message, logged-in device) pairs all saw the message, {carbons_checked} of them through the sender's carbons"
            ),
        )
    } else {
        (
            Status::Fail,
            format!(
                "{} of {checked} (message, device) pairs missing (e.g. {})",
                missing.len(),
                examples(&missing)
            ),
        )
    }
}
