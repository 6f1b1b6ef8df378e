//! The `interop_matrix` check: the 16-way interop matrix of spec 32-33, judged by the interop
//! oracle.

use crate::checks::{Check, Entry, Needs, Verdict, boxed};
use crate::history::History;
use crate::oracle::interop::{self, CellKey};
use crate::plan::validate::Problem;
use crate::scenario::Scenario;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The `interop_matrix` check: expected interop outcomes, overriding the table of spec 33 (for
/// negative tests).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InteropMatrix {
    /// `"W+->J-": deliver|fail` overrides.
    #[serde(default)]
    pub expect: std::collections::BTreeMap<String, String>,
    /// Also require J− → W+ messages to receivers who had not used Webex for over 72 h, none
    /// of them delivered to Webex (spec 33; runs longer than 72 h).
    #[serde(default)]
    pub inactive_receivers: bool,
    /// The cells the run must exercise (`["J- -> W+"]`), by default all 16. A cell left out
    /// is still judged when the run exercised it; one the run did not is not a failure (a
    /// scenario about one cell, such as the 72 h limit of J- -> W+, need not run the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cells: Option<Vec<String>>,
}

/// How the registry reads it.
pub const ENTRY: Entry = Entry {
    name: "interop_matrix",
    bare: true,
    read: boxed::<InteropMatrix>,
};

impl Check for InteropMatrix {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn needs(&self) -> Needs {
        Needs::CONNECTOR
    }
    fn validate(&self, _s: &Scenario, at: &str) -> Vec<Problem> {
        let mut problems =
            cell_problems(self.cells.as_deref(), &format!("{at}.interop_matrix.cells"));
        problems.extend(expect_problems(
            &self.expect,
            &format!("{at}.interop_matrix.expect"),
        ));
        problems
    }
    fn judge(&self, s: &Scenario, h: &History) -> Verdict {
        let _ = s;
        let m = interop::matrix(h, &h.bridge);
        let (status, detail) = interop::check_cells(&m, &self.expect, &self.required());
        if !self.inactive_receivers {
            return (status, detail);
        }
        match interop::inactive_receivers(&m) {
            Ok(n) => (
                status,
                format!(
                    "{detail}; J- -> W+: {n} messages to receivers not on Webex for 72 h, none delivered there"
                ),
            ),
            Err(e) if status == reports::Status::Pass => (reports::Status::Fail, e),
            Err(e) => (status, format!("{detail} | {e}")),
        }
    }
}

impl InteropMatrix {
    /// The cells the run must exercise: the named ones (validation has refused unknown
    /// names), or all 16.
    fn required(&self) -> BTreeSet<CellKey> {
        match &self.cells {
            Some(names) => names.iter().filter_map(|n| interop::cell_of(n)).collect(),
            None => interop::all_cells().into_iter().collect(),
        }
    }
}

/// The help line listing the 16 cells' names, in table order.
fn valid_cells() -> String {
    let valid: Vec<String> = interop::all_cells()
        .into_iter()
        .map(interop::cell_name)
        .collect();
    format!("valid cells: {}", valid.join(", "))
}

/// `cells` names at least one cell, and only cells of the matrix: problems at `at[i]`, with
/// the valid names.
fn cell_problems(cells: Option<&[String]>, at: &str) -> Vec<Problem> {
    let Some(cells) = cells else {
        return Vec::new();
    };
    let help = Some(valid_cells());
    if cells.is_empty() {
        let message = "`cells` names no cell: the check would require nothing".to_string();
        return vec![Problem {
            path: at.to_string(),
            message,
            help,
        }];
    }
    cells
        .iter()
        .enumerate()
        .filter(|(_, n)| interop::cell_of(n).is_none())
        .map(|(i, n)| Problem {
            path: format!("{at}[{i}]"),
            message: format!("`{n}` is not a cell of the interop matrix"),
            help: help.clone(),
        })
        .collect()
}

/// `expect` overrides name cells of the matrix and say `deliver` or `fail`: a misspelt key
/// would otherwise leave the spec's expectation in force and the planted test proving nothing.
fn expect_problems(expect: &std::collections::BTreeMap<String, String>, at: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (cell, want) in expect {
        if interop::cell_of(cell).is_none() {
            problems.push(Problem {
                path: format!("{at}.{cell}"),
                message: format!("`{cell}` is not a cell of the interop matrix"),
                help: Some(valid_cells()),
            });
        } else if want != "deliver" && want != "fail" {
            problems.push(Problem {
                path: format!("{at}.{cell}"),
                message: format!("`{want}` is not an outcome"),
                help: Some("valid values: deliver, fail".into()),
            });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    //! The J- -> W+ limit of spec 33 judged on hand-written histories whose events happen at
    //! chosen simulated times (a turmoil client sleeps to each): the check passes on the
    //! right behaviour, fails on a delivery to an inactive receiver, and fails "not
    //! exercised" without a message to one.
    use super::*;
    use crate::history::observer::Observer;
    use crate::plan::topology::UserSpec;
    use fakes::observe::{ClientKind, Delivered, Recorder as _, Sent};
    use reports::Status;
    use std::rc::Rc;
    use std::time::Duration;

    const HOUR: Duration = Duration::from_secs(3600);
    const SENDER: &str = "j@example.com";
    const RECEIVER: &str = "w@example.com";

    /// `j` uses Jabber only, not a Hybrid Message user (J-); `w` uses both clients and is one
    /// (W+ on Webex).
    fn user(i: u32, jid: &str, webex: bool, hybrid: bool) -> UserSpec {
        UserSpec {
            index: i,
            userid: format!("u{i}"),
            jid: jid.into(),
            email: Some(jid.into()),
            password: String::new(),
            cluster: 0,
            node: 1,
            jabber: true,
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

    fn delivered(id: &str, device: &str, client: ClientKind) -> Delivered {
        Delivered {
            id: id.into(),
            from: SENDER.into(),
            to: RECEIVER.into(),
            device: device.into(),
            client,
            delayed: false,
            carbon: false,
            body: None,
        }
    }

    /// A history of J- -> W+ messages sent from Jabber at the given times, each delivered to
    /// the receiver's Jabber device and, when its flag says so, to the Webex App. The
    /// receiver's connector session is open throughout; its last Webex use is its login.
    fn history(messages: &[(Duration, bool)]) -> History {
        let obs = Rc::new(Observer::new());
        let end = messages.iter().map(|m| m.0).max().unwrap_or_default() + HOUR;
        let mut sim = turmoil::Builder::new()
            .tick_duration(Duration::from_secs(60))
            .simulation_duration(end)
            .build();
        let (o, plan) = (obs.clone(), messages.to_vec());
        sim.client("t", async move {
            for (n, (at, to_webex)) in plan.into_iter().enumerate() {
                tokio::time::sleep(at.saturating_sub(now())).await;
                let id = format!("m{n}");
                let sent = Sent {
                    id: id.clone(),
                    from: SENDER.into(),
                    to: RECEIVER.into(),
                    client: ClientKind::Jabber,
                    device: "jabber-0".into(),
                    body: None,
                };
                o.sent("t", sent);
                o.delivered("t", delivered(&id, "jabber-0", ClientKind::Jabber));
                if to_webex {
                    o.delivered("t", delivered(&id, "webex.0", ClientKind::Webex));
                }
            }
            Ok(())
        });
        sim.run().expect("the history's simulation runs");
        let users = vec![user(0, SENDER, false, false), user(1, RECEIVER, true, true)];
        let mut h = History::from_history(1, obs, users);
        h.bridge
            .insert(RECEIVER.into(), vec![(Duration::from_secs(60), true)]);
        h
    }

    fn now() -> Duration {
        turmoil::sim_elapsed().unwrap_or_default()
    }

    fn check(cells: &[&str]) -> InteropMatrix {
        InteropMatrix {
            inactive_receivers: true,
            cells: Some(cells.iter().map(|c| c.to_string()).collect()),
            ..InteropMatrix::default()
        }
    }

    fn judge(c: &InteropMatrix, h: &History) -> Verdict {
        let yaml = "name: t\nseed: 1\nduration: 1m\ntopology: { imp_clusters: [{ name: a }] }\nusers: { count: 2 }\n";
        let s = crate::parse("t.yaml", yaml).expect("scenario");
        c.judge(&s, h)
    }

    #[test]
    fn messages_to_active_and_inactive_receivers_pass() {
        // At 1 h the receiver's Webex login is recent (and the Webex App's key request for the
        // new conversation is a use at 1 h); at 75 h both are over 72 h old.
        let h = history(&[(HOUR, true), (75 * HOUR, false)]);
        let (status, detail) = judge(&check(&["J- -> W+"]), &h);
        assert_eq!(status, Status::Pass, "{detail}");
        assert!(
            detail.starts_with("J- -> W+ (deliver) as spec 32-33"),
            "{detail}"
        );
        assert!(
            detail.contains(
                "J- -> W+: 1 messages to receivers not on Webex for 72 h, none delivered there"
            ),
            "{detail}"
        );
    }

    #[test]
    fn a_delivery_to_an_inactive_receiver_fails_the_check() {
        let h = history(&[(HOUR, true), (75 * HOUR, true)]);
        let (status, detail) = judge(&check(&["J- -> W+"]), &h);
        assert_eq!(status, Status::Fail, "{detail}");
        assert!(
            detail.contains(
                "J- -> W+ delivered 1 the oracle forbade (receiver not on Webex for 72 h)"
            ),
            "{detail}"
        );
        assert!(
            detail
                .contains("1 of 1 messages to receivers not on Webex for over 72 h reached Webex"),
            "{detail}"
        );
    }

    #[test]
    fn no_message_to_an_inactive_receiver_is_not_exercised() {
        let h = history(&[(HOUR, true), (2 * HOUR, true)]);
        let (status, detail) = judge(&check(&["J- -> W+"]), &h);
        assert_eq!(status, Status::Fail, "{detail}");
        assert!(
            detail.contains("not exercised: no J- -> W+ message to a receiver who had not used Webex for over 72 h"),
            "{detail}"
        );
    }

    #[test]
    fn a_named_cell_the_run_left_out_fails_and_the_default_requires_all_16() {
        let h = history(&[(HOUR, true), (75 * HOUR, false)]);
        let (status, detail) = judge(&check(&["J- -> W+", "W+ -> J-"]), &h);
        assert_eq!(status, Status::Fail, "{detail}");
        assert!(detail.contains("not exercised: W+ -> J-;"), "{detail}");
        let all = InteropMatrix::default();
        let (status, detail) = judge(&all, &h);
        assert_eq!(status, Status::Fail, "{detail}");
        assert!(
            detail.contains("not exercised: W- -> W-, W- -> W+"),
            "{detail}"
        );
    }

    #[test]
    fn cells_are_named_from_the_matrix() {
        let at = "checks[0].interop_matrix.cells";
        assert!(cell_problems(None, at).is_empty());
        assert!(cell_problems(Some(&["J+ -> W-".into()]), at).is_empty());
        let p = cell_problems(Some(&["J- -> W+".into(), "J- → W+".into()]), at);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, format!("{at}[1]"));
        assert_eq!(
            p[0].message,
            "`J- → W+` is not a cell of the interop matrix"
        );
        let help = p[0].help.as_deref().unwrap_or_default();
        assert!(
            help.starts_with("valid cells: W- -> W-, W- -> W+"),
            "{help}"
        );
        assert!(help.ends_with("J+ -> J+"), "{help}");
        let p = cell_problems(Some(&[]), at);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, at);
    }

    #[test]
    fn expect_overrides_name_cells_and_outcomes() {
        let at = "checks[0].interop_matrix.expect";
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        assert!(expect_problems(&map(&[("W- -> J-", "deliver")]), at).is_empty());
        let p = expect_problems(
            &map(&[("W -> J-", "deliver"), ("J+ -> W-", "delivers")]),
            at,
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].path, format!("{at}.J+ -> W-"));
        assert_eq!(p[0].help.as_deref(), Some("valid values: deliver, fail"));
        assert_eq!(p[1].path, format!("{at}.W -> J-"));
        assert_eq!(
            p[1].message,
            "`W -> J-` is not a cell of the interop matrix"
        );
    }
}
