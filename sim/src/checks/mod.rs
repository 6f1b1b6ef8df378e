//! Stage 8, the checks: each scenario check judged over the run's history, with the oracle.
//! A check never names the world or the runner.
//!
//! Every check is one type implementing [`Check`] in its own file, and one line in
//! [`REGISTRY`]: the registry is where scenario names, parameter schemas (each check reads its
//! own parameters with serde, `deny_unknown_fields`), needs and validation rules come from.
//!
//! - Delivery: [`no_message_loss`], [`per_conversation_order`], [`delivery_latency`],
//!   [`liveness`], [`mdm_copies`], [`offline_storage`], [`reached`].
//! - Presence: [`presence_composition`], [`presence`] (spec 50-55), [`webex_dnd`] (spec 54).
//! - IM&P failover: [`prg_failover`], [`migration`] (`migration` and `status_page`).
//! - Hybrid: [`interop_matrix`], [`group_chat`], [`capacity`] (`within_capacity`),
//!   [`plaintext`] (`no_plaintext_at_cloud`), [`secrets`] (`no_secrets_in_logs`).
//! - Parts shared by checks: [`first_session`] (`liveness`: every user the plan serves gets a
//!   connector session, spec 55), [`discovery`] (what a connector node can discover and when,
//!   from the fault schedule, spec 22), [`liveness_pace`] (the pace warning).

pub mod capacity;
pub mod delivery_latency;
pub mod discovery;
pub mod first_session;
pub mod group_chat;
pub mod interop_matrix;
pub mod liveness;
pub mod liveness_pace;
pub mod mdm_copies;
pub mod migration;
pub mod no_message_loss;
pub mod offline_storage;
pub mod per_conversation_order;
pub mod plaintext;
pub mod presence;
pub mod presence_composition;
pub mod prg_failover;
pub mod reached;
pub mod secrets;
pub mod webex_dnd;

use crate::history::History;
use crate::plan::validate::{Catalog, Problem};
use crate::scenario::{CheckSpec, Scenario};
use reports::{CheckResult, RunRecord, Status, Table};
use serde::de::DeserializeOwned;

/// A check's verdict: pass or fail, and what it saw.
pub type Verdict = (Status, String);

/// What a check needs from the scenario and the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// The connector (an Expressway cluster); without it the check is refused as unsupported.
    pub connector: bool,
    /// The Webex cloud (Webex users or a connector); refused without it.
    pub cloud: bool,
    /// The run's captured log and the secrets it knows (`run::Options::capture_log`).
    pub log: bool,
}

impl Needs {
    /// A check of the connector's behaviour: refused in a scenario without one.
    pub const CONNECTOR: Needs = Needs {
        connector: true,
        cloud: false,
        log: false,
    };
    /// A check of the cloud's behaviour: refused in a scenario without Webex users or a
    /// connector.
    pub const CLOUD: Needs = Needs {
        connector: false,
        cloud: true,
        log: false,
    };
}

/// One scenario check.
pub trait Check {
    /// Its scenario name.
    fn name(&self) -> &'static str;
    /// What it needs (validation refuses a scenario without it).
    fn needs(&self) -> Needs {
        Needs::default()
    }
    /// Its own rules on the scenario, beyond its parameters' shape: problems at `at.<field>`.
    fn validate(&self, _s: &Scenario, _at: &str) -> Vec<Problem> {
        Vec::new()
    }
    /// Judges a finished run.
    fn judge(&self, s: &Scenario, h: &History) -> Verdict;
    /// Tables it adds to the report.
    fn tables(&self, _s: &Scenario, _h: &History) -> Vec<Table> {
        Vec::new()
    }
    /// Looks at the finished record (the secrets check scans it too).
    fn amend(&self, _h: &History, _r: &mut RunRecord) {}
}

/// How a check is read from its scenario entry.
pub struct Entry {
    /// The scenario name.
    pub name: &'static str,
    /// Whether it may be written as a bare name (its parameters all have defaults).
    pub bare: bool,
    /// Reads its parameters.
    pub read: fn(&serde_yaml::Value) -> Result<Box<dyn Check>, ParamError>,
}

/// A parameter that does not fit the check's schema, with its path inside the parameters.
pub type ParamError = serde_path_to_error::Error<serde_yaml::Error>;

/// Every check, in the order `unknown check` lists them. A new check: its file, and a line here.
pub const REGISTRY: &[Entry] = &[
    no_message_loss::ENTRY,
    per_conversation_order::ENTRY,
    delivery_latency::ENTRY,
    liveness::ENTRY,
    interop_matrix::ENTRY,
    presence::ENTRY,
    migration::ENTRY,
    migration::STATUS_PAGE,
    plaintext::ENTRY,
    secrets::ENTRY,
    capacity::ENTRY,
    mdm_copies::ENTRY,
    offline_storage::ENTRY,
    presence_composition::ENTRY,
    prg_failover::ENTRY,
    reached::ENTRY,
    group_chat::ENTRY,
    webex_dnd::ENTRY,
];

/// Checks that may be listed more than once, each with its own parameters: a failover and its
/// fallback are two migrations.
pub const REPEATABLE: &[&str] = &[migration::ENTRY.name];

/// Reads a check's parameters (`Null`, a bare name, reads as an empty mapping).
pub fn params<T: DeserializeOwned>(v: &serde_yaml::Value) -> Result<T, ParamError> {
    let empty = serde_yaml::Value::Mapping(Default::default());
    let v = if v.is_null() { &empty } else { v };
    serde_path_to_error::deserialize(v.clone())
}

/// Boxes a check read by [`params`]: the `read` of an [`Entry`].
pub fn boxed<T: Check + DeserializeOwned + 'static>(
    v: &serde_yaml::Value,
) -> Result<Box<dyn Check>, ParamError> {
    Ok(Box::new(params::<T>(v)?))
}

fn entry(name: &str) -> Option<&'static Entry> {
    REGISTRY.iter().find(|e| e.name == name)
}

/// The scenario's checks, read. Validation has accepted them: a check that does not read is
/// left out (it cannot happen after [`crate::load`]).
pub fn build(s: &Scenario) -> Vec<Box<dyn Check>> {
    s.checks
        .iter()
        .filter_map(|c| (entry(&c.name)?.read)(&c.params).ok())
        .collect()
}

/// What the run must gather for the scenario's checks.
pub fn needs(s: &Scenario) -> Needs {
    build(s).iter().fold(Needs::default(), |a, c| {
        let n = c.needs();
        Needs {
            connector: a.connector || n.connector,
            cloud: a.cloud || n.cloud,
            log: a.log || n.log,
        }
    })
}

/// Judges every check of the scenario, in scenario order.
pub fn evaluate(s: &Scenario, h: &History) -> Vec<CheckResult> {
    build(s)
        .iter()
        .map(|c| {
            let (status, detail) = c.judge(s, h);
            CheckResult {
                name: c.name().to_string(),
                status,
                detail,
            }
        })
        .collect()
}

/// The registry as validation sees it.
pub struct Registry;

impl Catalog for Registry {
    fn names(&self) -> Vec<&'static str> {
        REGISTRY.iter().map(|e| e.name).collect()
    }

    fn repeatable(&self, name: &str) -> bool {
        REPEATABLE.contains(&name)
    }

    fn problems(&self, s: &Scenario, at: &str, spec: &CheckSpec) -> Vec<Problem> {
        let Some(e) = entry(&spec.name) else {
            return Vec::new();
        };
        if spec.params.is_null() && !e.bare {
            let n = e.name;
            let message = format!("`{n}` needs parameters: write `{n}: {{ ... }}`");
            return vec![Problem {
                path: at.to_string(),
                message,
                help: None,
            }];
        }
        let check = match (e.read)(&spec.params) {
            Ok(c) => c,
            Err(err) => return vec![param_problem(at, e.name, &err)],
        };
        let n = check.needs();
        let no_connector = n.connector && s.topology.expressway_clusters.is_empty();
        if no_connector {
            return vec![Problem {
                path: at.to_string(),
                message: format!(
                    "the `{}` check needs the connector: the scenario has no Expressway cluster",
                    e.name
                ),
                help: Some(
                    "add `topology.expressway_clusters: [{ name: e, imp_clusters: [<IM&P cluster>] }]`, or remove the check".into(),
                ),
            }];
        }
        if n.cloud && !crate::plan::topology::uses_cloud(s) {
            return vec![Problem {
                path: at.to_string(),
                message: format!(
                    "the `{}` check needs the Webex cloud: the scenario has no Webex users and no connector",
                    e.name
                ),
                help: Some("give some users the Webex App (`users.webex: 50%`) or add an Expressway cluster, or remove the check".into()),
            }];
        }
        check.validate(s, at)
    }
}

/// A parameter error located at `at.<name>.<path>`.
fn param_problem(at: &str, name: &str, err: &ParamError) -> Problem {
    let inner = err.path().to_string();
    let path = if inner == "." {
        format!("{at}.{name}")
    } else {
        format!("{at}.{name}.{inner}")
    };
    let (message, help) = crate::scenario::explain_serde_message(&err.inner().to_string());
    Problem {
        path,
        message,
        help,
    }
}

/// Quotes up to [`EXAMPLES_MAX`] violations.
pub fn examples(v: &[String]) -> String {
    v.iter()
        .take(EXAMPLES_MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ")
}

/// Violations quoted in a check's detail.
const EXAMPLES_MAX: usize = 5;

/// The scenario's warnings, given its population `users`: properties of the scenario that a
/// run would trip over without any fault of the product (a PRG peer that cannot hold its
/// failed node's sessions, [`crate::plan::prg_capacity`]; a `liveness` bound shorter than
/// the guide's migration pace, [`liveness_pace`]). Shown by `hmsim check` and in the report.
pub fn warnings(s: &Scenario, users: &[crate::plan::topology::UserSpec]) -> Vec<String> {
    let mut w = crate::plan::prg_capacity::warnings(s, users);
    w.extend(liveness_pace::warnings(s, users));
    w
}

/// [`warnings`] at the scenario's own seed.
pub fn scenario_warnings(s: &Scenario) -> Vec<String> {
    let rngs = crate::plan::rng::RngFactory::new(s.seed);
    warnings(s, &crate::plan::topology::population(s, &rngs))
}

#[cfg(test)]
mod tests {
    //! Each check judged on hand-written histories: it passes on the right behaviour and fails
    //! on the wrong one. Outside turmoil every event happens at time 0.
    use super::*;
    use crate::checks::mdm_copies::mdm_copies;
    use crate::checks::no_message_loss::no_message_loss;
    use crate::checks::offline_storage::offline_storage;
    use crate::checks::presence_composition::presence_composition;
    use crate::history::observer::Observer;
    use crate::oracle::tally::tally;
    use crate::plan::rng::RngFactory;
    use crate::scenario::Scenario;
    use fakes::observe::{ClientKind, Delivered, PresenceEvent, Recorder as _, Refused, Sent};
    use std::rc::Rc;

    const ALICE: &str = "user00000@example.com";
    const BOB: &str = "user00001@example.com";

    fn scenario(storage: bool, version: &str, devices: u32) -> Scenario {
        let yaml = format!(
            "name: t\nseed: 1\nduration: 1m\ntopology:\n  imp_clusters: [{{ name: a, nodes: 1, version: \"{version}\", offline_storage: {storage} }}]\nusers: {{ count: 2, jabber: 100%, jabber_devices: {devices} }}\n"
        );
        crate::parse("t.yaml", &yaml).expect("valid test scenario")
    }

    fn output(s: &Scenario, obs: Rc<Observer>) -> History {
        let users = crate::plan::topology::population(s, &RngFactory::new(1));
        History::from_history(1, obs, users)
    }

    fn up(o: &Observer, user: &str, device: &str) {
        o.session("jabber-1", user, device, true, "logged in");
    }

    fn send(o: &Observer, id: &str, device: &str) {
        o.sent(
            "jabber-1",
            Sent {
                id: id.into(),
                from: ALICE.into(),
                to: BOB.into(),
                client: ClientKind::Jabber,
                device: device.into(),
                body: None,
            },
        );
    }

    fn seen(o: &Observer, id: &str, user: &str, device: &str, delayed: bool, carbon: bool) {
        o.delivered(
            "jabber-1",
            Delivered {
                id: id.into(),
                from: ALICE.into(),
                to: user.into(),
                device: device.into(),
                client: ClientKind::Jabber,
                delayed,
                carbon,
                body: None,
            },
        );
    }

    fn refuse(o: &Observer, id: &str) {
        o.refused(
            "jabber-1",
            Refused {
                id: id.into(),
                user: ALICE.into(),
                device: "d1".into(),
                condition: "service-unavailable".into(),
                text: fakes::imp::node::UNDELIVERABLE_TEXT.into(),
            },
        );
    }

    fn publish(o: &Observer, device: &str, manual: bool, show: &str, status: &str) {
        o.presence_published(
            "jabber-1",
            PresenceEvent {
                user: ALICE.into(),
                device: device.into(),
                from: String::new(),
                manual,
                show: Some(show.into()),
                status: Some(status.into()),
                available: true,
            },
        );
    }

    #[test]
    fn presence_composition_fails_when_a_device_presence_beats_a_manual_one() {
        let s = scenario(true, "14.0", 2);
        let history = |shown_device: &str, shown_status: &str| {
            let o = Rc::new(Observer::new());
            for (u, d) in [(ALICE, "d1"), (ALICE, "d2"), (BOB, "d1")] {
                up(&o, u, d);
            }
            publish(&o, "d1", true, "dnd", "In a meeting");
            publish(&o, "d2", false, "away", "Away @ Webex");
            o.presence_seen(
                "jabber-1",
                PresenceEvent {
                    user: BOB.into(),
                    device: "d1".into(),
                    from: format!("{ALICE}/{shown_device}"),
                    manual: false,
                    show: Some(if shown_device == "d1" { "dnd" } else { "away" }.into()),
                    status: Some(shown_status.into()),
                    available: true,
                },
            );
            let mut out = output(&s, o);
            out.contacts.insert(BOB.into(), vec![ALICE.into()]);
            out
        };
        let (status, detail) = presence_composition(&s, &history("d1", "In a meeting"));
        assert_eq!(status, Status::Pass, "{detail}");
        let (status, detail) = presence_composition(&s, &history("d2", "Away @ Webex"));
        assert_eq!(status, Status::Fail, "{detail}");
        assert!(detail.contains("instead of dnd/d1"), "{detail}");
    }

    #[test]
    fn mdm_copies_fails_when_a_device_misses_its_copy() {
        let s = scenario(true, "14.0", 2);
        let history = |sender_carbon: bool| {
            let o = Rc::new(Observer::new());
            for (u, d) in [(ALICE, "d1"), (ALICE, "d2"), (BOB, "d1"), (BOB, "d2")] {
                up(&o, u, d);
            }
            send(&o, "m1", "d1");
            seen(&o, "m1", BOB, "d1", false, false);
            seen(&o, "m1", BOB, "d2", false, false);
            if sender_carbon {
                seen(&o, "m1", ALICE, "d2", false, true);
            }
            output(&s, o)
        };
        let (status, detail) = mdm_copies(&s, &history(true));
        assert_eq!(status, Status::Pass, "{detail}");
        let (status, detail) = mdm_copies(&s, &history(false));
        assert_eq!(status, Status::Fail, "{detail}");
        assert!(detail.contains("sent carbon"), "{detail}");
    }

    /// Explore 5779: a message its client held unsent (the cloud answered every post with an
    /// error) when the client's host went down never reached the bridge: counted apart and
    /// shown, not lost. One the cloud may have taken (an attempt unanswered), or one held by
    /// a client still up, is still judged, and lost here.
    #[test]
    fn a_message_held_unsent_at_its_clients_crash_is_counted_apart_not_lost() {
        use fakes::observe::PostFate;
        let s = scenario(true, "14.0", 1);
        let history = |fates: &[PostFate], crash: bool| {
            let o = Rc::new(Observer::new());
            up(&o, ALICE, "d1");
            send(&o, "m1", "d1");
            for &f in fates {
                o.post_fate("jabber-1", "m1", f);
            }
            if crash {
                o.host_down(std::time::Duration::from_secs(60), "jabber-1");
            }
            output(&s, o)
        };
        let out = history(&[PostFate::Kept, PostFate::Kept], true);
        let t = tally(&s, &out);
        assert_eq!((t.lost.len(), t.held_unsent.len()), (0, 1));
        let (status, detail) = no_message_loss(&t, &out);
        assert_eq!(status, Status::Pass, "{detail}");
        assert!(detail.contains("1 held unsent"), "{detail}");
        for (fates, crash) in [
            (&[PostFate::Unanswered, PostFate::Kept][..], true),
            (&[PostFate::Kept][..], false),
            (&[PostFate::Kept, PostFate::Taken][..], true),
        ] {
            let out = history(fates, crash);
            let t = tally(&s, &out);
            assert_eq!(
                (t.lost.len(), t.held_unsent.len()),
                (1, 0),
                "{fates:?} {crash}"
            );
            assert_eq!(no_message_loss(&t, &out).0, Status::Fail);
        }
    }

    #[test]
    fn discard_with_storage_off_is_allowed_but_a_loss_with_storage_on() {
        // bob has no session; IM&P 12.0 refuses with the spec's text.
        let history = |s: &Scenario, refused: bool| {
            let o = Rc::new(Observer::new());
            up(&o, ALICE, "d1");
            send(&o, "m1", "d1");
            if refused {
                refuse(&o, "m1");
            }
            output(s, o)
        };
        let off = scenario(false, "12.0", 1);
        let out = history(&off, true);
        let t = tally(&off, &out);
        assert_eq!((t.lost.len(), t.discarded), (0, 1));
        assert_eq!(no_message_loss(&t, &out).0, Status::Pass);
        assert_eq!(offline_storage(&off, &out).0, Status::Pass);
        // Pre-12.5 without the error text: offline_storage fails.
        let (status, detail) = offline_storage(&off, &history(&off, false));
        assert_eq!(status, Status::Fail, "{detail}");
        assert!(
            detail.contains("Message could not be delivered"),
            "{detail}"
        );
        // 12.5 and later discard silently: an error is wrong there.
        let off_new = scenario(false, "12.5", 1);
        assert_eq!(
            offline_storage(&off_new, &history(&off_new, false)).0,
            Status::Pass
        );
        assert_eq!(
            offline_storage(&off_new, &history(&off_new, true)).0,
            Status::Fail
        );
        // A refusal while bob had a session is a loss, storage off or not.
        let o = Rc::new(Observer::new());
        up(&o, ALICE, "d1");
        up(&o, BOB, "d1");
        send(&o, "m1", "d1");
        refuse(&o, "m1");
        let out = output(&off, o);
        let t = tally(&off, &out);
        assert_eq!(no_message_loss(&t, &out).0, Status::Fail);
        // The same history with storage on is a loss.
        let on = scenario(true, "14.0", 1);
        let out = history(&on, true);
        let t = tally(&on, &out);
        assert_eq!(t.lost.len(), 1);
        assert_eq!(no_message_loss(&t, &out).0, Status::Fail);
        assert_eq!(offline_storage(&on, &out).0, Status::Fail);
    }

    #[test]
    fn offline_storage_fails_on_a_replay_out_of_order_or_nothing_replayed() {
        let s = scenario(true, "14.0", 1);
        let history = |in_order: bool| {
            let o = Rc::new(Observer::new());
            up(&o, ALICE, "d1");
            send(&o, "m1", "d1");
            send(&o, "m2", "d1");
            up(&o, BOB, "d1");
            let ids = if in_order { ["m1", "m2"] } else { ["m2", "m1"] };
            for id in ids {
                seen(&o, id, BOB, "d1", true, false);
            }
            output(&s, o)
        };
        let (status, detail) = offline_storage(&s, &history(true));
        assert_eq!(status, Status::Pass, "{detail}");
        let (status, detail) = offline_storage(&s, &history(false));
        assert_eq!(status, Status::Fail, "{detail}");
        assert!(detail.contains("out of send order"), "{detail}");
        // Nothing stored at all: the check exercised nothing, which is a failure.
        let o = Rc::new(Observer::new());
        up(&o, ALICE, "d1");
        up(&o, BOB, "d1");
        send(&o, "m1", "d1");
        seen(&o, "m1", BOB, "d1", false, false);
        assert_eq!(offline_storage(&s, &output(&s, o)).0, Status::Fail);
    }
}
