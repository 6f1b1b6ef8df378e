//! The interop oracle (spec 32-34): who must, may, or must not receive a message across the
//! Jabber/Webex bridge, and the 16-way interop matrix check.
//!
//! Each message is judged per recipient *client*: a recipient who uses both clients yields a
//! Jabber cell and a Webex cell. Classes are W− / W+ / J− / J+ (client × Hybrid Message).
//!
//! | sender → receiver | result (spec 33) | what makes it work |
//! |---|---|---|
//! | same client | delivers | the client's own service |
//! | W− → J−, W− → J+, J− → W− | fails | nothing bridges them |
//! | W+ → J− / J+ | delivers | the sender's connector session |
//! | J− → W+ | delivers | the receiver's connector session, while the receiver used Webex in 72 h |
//! | J+ → W− | delivers | the sender's connector session (carbon) |
//! | J+ → W+ | delivers | either party's connector session |
//!
//! A bridged delivery is *must* only while the connector session it depends on was open
//! around the send (the runner samples sessions each second, [`SESSION_MARGIN`] either side);
//! before the bridge is up (registration ≤ 5 min, activation, presence poll) it is *may*.

use crate::history::History;
use crate::oracle::activity::Uses;
use crate::plan::topology::UserSpec;
use fakes::observe::ClientKind;
use reports::{Status, Table};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Session samples are a second apart: a session must be seen open this long before and
/// after the send for the bridge to be required.
pub const SESSION_MARGIN: Duration = Duration::from_secs(2);

/// A party of a message: the client it uses there, and whether it is a Hybrid Message user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Webex, not Hybrid Message.
    WebexMinus,
    /// Webex, Hybrid Message.
    WebexPlus,
    /// Jabber, not Hybrid Message.
    JabberMinus,
    /// Jabber, Hybrid Message.
    JabberPlus,
}

impl Class {
    /// The class of a party.
    pub fn of(client: ClientKind, hybrid: bool) -> Self {
        match (client, hybrid) {
            (ClientKind::Webex, false) => Class::WebexMinus,
            (ClientKind::Webex, true) => Class::WebexPlus,
            (ClientKind::Jabber, false) => Class::JabberMinus,
            (ClientKind::Jabber, true) => Class::JabberPlus,
        }
    }

    /// The spec's notation: `W-`, `W+`, `J-`, `J+`.
    pub fn label(self) -> &'static str {
        match self {
            Class::WebexMinus => "W-",
            Class::WebexPlus => "W+",
            Class::JabberMinus => "J-",
            Class::JabberPlus => "J+",
        }
    }

    /// All four, in table order.
    pub const ALL: [Class; 4] = [
        Class::WebexMinus,
        Class::WebexPlus,
        Class::JabberMinus,
        Class::JabberPlus,
    ];

    fn webex(self) -> bool {
        matches!(self, Class::WebexMinus | Class::WebexPlus)
    }
    fn hybrid(self) -> bool {
        matches!(self, Class::WebexPlus | Class::JabberPlus)
    }
}

/// Whether the bridge can serve a user: enabled for Hybrid Message *and* with a mail ID in
/// IM&P, the only key the connector matches on (spec 24). Users without one are never
/// discovered and behave as non-Hybrid Message users.
pub fn served(u: &UserSpec) -> bool {
    u.hybrid && matchable(u)
}

/// Whether the connector can tell who the user is in Webex: a mail ID, and only one home
/// cluster for it (spec 24-25).
pub fn matchable(u: &UserSpec) -> bool {
    u.email.is_some() && u.duplicate_in.is_none()
}

/// The key of a user's connector session: the mail ID, which the connector matches with the
/// Webex email (spec 24: "JID need not equal email"); `None` without one (no session).
pub fn session_key(u: &UserSpec) -> Option<&str> {
    u.email.as_deref()
}

/// Spec 32-33: whether `sender → receiver` works at all.
pub fn works(sender: Class, receiver: Class) -> bool {
    if sender.webex() == receiver.webex() {
        return true;
    }
    sender.hybrid() || (receiver.hybrid() && receiver.webex())
}

/// What the oracle expects of one (message, recipient client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Must arrive.
    Must,
    /// May arrive (the bridge it needs was not up around the send).
    May,
    /// Must not arrive (spec 33 says it fails).
    MustNot,
}

/// Connector session history per user (email), from the runner's sampling.
pub type Bridge = BTreeMap<String, Vec<(Duration, bool)>>;

fn open_over(bridge: &Bridge, user: &str, from: Duration, to: Duration) -> bool {
    let Some(ev) = bridge.get(user) else {
        return false;
    };
    let up_at_start = ev
        .iter()
        .rfind(|(at, _)| *at <= from)
        .is_some_and(|(_, up)| *up);
    up_at_start && !ev.iter().any(|(at, up)| !*up && *at > from && *at <= to)
}

/// The expectation for a message from `sender` (using `sender_client`) to `receiver`'s
/// `receiver_client`, sent at `at`. A message reaches Webex through the *receiver's* session
/// only while the receiver used Webex within 72 h (spec 33, 56): certainly not ⇒ it must not
/// arrive there (J− → W+), too close to call ⇒ may.
pub fn expect(
    sender: &UserSpec,
    sender_client: ClientKind,
    receiver: &UserSpec,
    receiver_client: ClientKind,
    (at, bridge, uses): (Duration, &Bridge, &Uses),
) -> Expect {
    let (sc, rc) = (
        Class::of(sender_client, served(sender)),
        Class::of(receiver_client, served(receiver)),
    );
    if sender_client == receiver_client {
        return Expect::Must;
    }
    // Without a mail ID the connector cannot tell who a Jabber user is in Webex (spec 24):
    // nothing to or from them crosses the bridge.
    if !matchable(sender) || !matchable(receiver) {
        return Expect::MustNot;
    }
    if !works(sc, rc) {
        return Expect::MustNot;
    }
    let window = (at.saturating_sub(SESSION_MARGIN), at + SESSION_MARGIN);
    let open =
        |u: &UserSpec| session_key(u).is_some_and(|k| open_over(bridge, k, window.0, window.1));
    let webex = |u: &UserSpec| uses.webex_active(&u.jid, at);
    let needed = match (sc, rc) {
        (Class::WebexPlus, _) => open(sender),
        (Class::JabberMinus, Class::WebexPlus) => match webex(receiver) {
            Some(false) => return Expect::MustNot,
            Some(true) => open(receiver),
            None => false,
        },
        (Class::JabberPlus, Class::WebexMinus) => open(sender),
        (Class::JabberPlus, Class::WebexPlus) => {
            let receiver_active = webex(receiver) == Some(true);
            (open(sender) && (receiver_active || webex(sender) == Some(true)))
                || (open(receiver) && receiver_active)
        }
        _ => false,
    };
    if needed { Expect::Must } else { Expect::May }
}

/// The client of a device, by its name (`webex.<n>` for Webex App, Jabber resources else).
pub fn client_of_device(device: &str) -> ClientKind {
    if device.starts_with("webex") {
        ClientKind::Webex
    } else {
        ClientKind::Jabber
    }
}

/// The recipient clients that had to receive `rec` and did not.
pub fn missing(
    users: &BTreeMap<&str, &UserSpec>,
    rec: &crate::history::observer::MessageRecord,
    bridge: &Bridge,
    uses: &Uses,
) -> Vec<ClientKind> {
    missing_by(&|jid| users.get(jid).copied(), rec, bridge, uses)
}

/// [`missing`], finding users with `users` (by bare JID).
pub fn missing_by<'u>(
    users: &dyn Fn(&str) -> Option<&'u UserSpec>,
    rec: &crate::history::observer::MessageRecord,
    bridge: &Bridge,
    uses: &Uses,
) -> Vec<ClientKind> {
    let (Some(s), Some(r)) = (users(&rec.from), users(&rec.to)) else {
        return Vec::new();
    };
    [(ClientKind::Jabber, r.jabber), (ClientKind::Webex, r.webex)]
        .into_iter()
        .filter(|(client, on)| {
            *on && expect(s, rec.client, r, *client, (rec.sent_at, bridge, uses)) == Expect::Must
                && !rec
                    .deliveries
                    .iter()
                    .any(|d| client_of_device(&d.device) == *client)
        })
        .map(|(c, _)| c)
        .collect()
}

/// Per-cell results of a run.
#[derive(Debug, Clone, Default)]
pub struct Matrix {
    /// (sender, receiver) → (messages judged, delivered, expected must, must but missing).
    pub cells: BTreeMap<(Class, Class), Cell>,
    /// Connector sessions under a key that is no user's mail ID (a connector keying sessions
    /// by JID, say), at most [`FOREIGN_KEPT_MAX`], and how many in all.
    pub foreign: (Vec<String>, usize),
}

/// Foreign session keys quoted by the check.
pub const FOREIGN_KEPT_MAX: usize = 5;

/// The bridge's keys that are no user's mail ID (quoted up to [`FOREIGN_KEPT_MAX`]), and how
/// many there are.
fn foreign_keys(users: &[UserSpec], bridge: &Bridge) -> (Vec<String>, usize) {
    let keys: BTreeSet<&str> = users.iter().filter_map(session_key).collect();
    let foreign: Vec<&String> = bridge
        .keys()
        .filter(|k| !keys.contains(k.as_str()))
        .collect();
    let quoted = foreign
        .iter()
        .take(FOREIGN_KEPT_MAX)
        .map(|k| k.to_string())
        .collect();
    (quoted, foreign.len())
}

/// One cell of the matrix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cell {
    /// (message, recipient client) pairs judged.
    pub judged: u64,
    /// Of those, delivered to at least one device of that client.
    pub delivered: u64,
    /// Of those, the oracle required.
    pub must: u64,
    /// Required but not delivered.
    pub missing: u64,
    /// Delivered although the spec says it fails.
    pub forbidden: u64,
    /// Of those judged, the oracle forbade (for J− → W+: the receiver had not used Webex for
    /// over 72 h, spec 33).
    pub must_not: u64,
}

/// Judges every (message, recipient client) pair of the run.
pub fn matrix(out: &History, bridge: &Bridge) -> Matrix {
    let users: BTreeMap<&str, &UserSpec> = out.users.iter().map(|u| (u.jid.as_str(), u)).collect();
    let uses = Uses::of(out);
    let mut m = Matrix {
        foreign: foreign_keys(&out.users, bridge),
        ..Matrix::default()
    };
    out.observer.with_messages(|msgs| {
        for (_, rec) in msgs {
            let (Some(s), Some(r)) = (users.get(&*rec.from), users.get(&*rec.to)) else {
                continue;
            };
            // Users without a mail ID are outside the spec's classes (spec 24).
            if !matchable(s) || !matchable(r) {
                continue;
            }
            for (client, on) in [(ClientKind::Jabber, r.jabber), (ClientKind::Webex, r.webex)] {
                if !on {
                    continue;
                }
                let got = rec
                    .deliveries
                    .iter()
                    .any(|d| client_of_device(&d.device) == client);
                let e = expect(s, rec.client, r, client, (rec.sent_at, bridge, &uses));
                let cell = m
                    .cells
                    .entry((
                        Class::of(rec.client, served(s)),
                        Class::of(client, served(r)),
                    ))
                    .or_default();
                cell.judged += 1;
                cell.delivered += u64::from(got);
                cell.must += u64::from(e == Expect::Must);
                cell.missing += u64::from(e == Expect::Must && !got);
                cell.forbidden += u64::from(e == Expect::MustNot && got);
                cell.must_not += u64::from(e == Expect::MustNot);
            }
        }
    });
    m
}

/// A cell of the matrix: (sender class, receiver class).
pub type CellKey = (Class, Class);

/// The scenario's name of a cell: `J- -> W+`.
pub fn cell_name((s, r): CellKey) -> String {
    format!("{} -> {}", s.label(), r.label())
}

/// All 16 cells, in table order.
pub fn all_cells() -> Vec<CellKey> {
    Class::ALL
        .iter()
        .flat_map(|s| Class::ALL.iter().map(move |r| (*s, *r)))
        .collect()
}

/// The cell a scenario names (`"J- -> W+"`), if it is one of the 16.
pub fn cell_of(name: &str) -> Option<CellKey> {
    all_cells().into_iter().find(|c| cell_name(*c) == name)
}

/// The `interop_matrix` check: every one of the 16 cells exercised, each behaving as the spec
/// (or the scenario's `expect` overrides, used to prove the check can fail) says.
pub fn check(m: &Matrix, overrides: &BTreeMap<String, String>) -> (Status, String) {
    check_cells(m, overrides, &all_cells().into_iter().collect())
}

/// What is wrong with one cell, if anything.
enum CellProblem {
    /// It behaved against the spec (or the override).
    Wrong(String),
    /// Nothing in the run could show how it behaves.
    Unexercised(String),
}

/// Judges one cell against the spec's table, or the scenario's override of it.
fn judge_cell(
    m: &Matrix,
    overrides: &BTreeMap<String, String>,
    (s, r): CellKey,
) -> Result<(), CellProblem> {
    let key = cell_name((s, r));
    let want = match overrides.get(&key).map(String::as_str) {
        Some("deliver") => true,
        Some("fail") => false,
        _ => works(s, r),
    };
    let Some(c) = m.cells.get(&(s, r)) else {
        return Err(CellProblem::Unexercised(key));
    };
    let delivers = c.delivered > 0;
    let verdict = |d: bool| if d { "delivered" } else { "failed" };
    if want != works(s, r) || !want {
        // A planted or a failing expectation is judged on what was delivered.
        let wanted = if want { "deliver" } else { "fail" };
        if delivers != want || (!want && c.forbidden > 0) {
            return Err(CellProblem::Wrong(format!(
                "{key} {} (want {wanted})",
                verdict(delivers)
            )));
        }
    } else if c.forbidden > 0 {
        return Err(CellProblem::Wrong(format!(
            "{key} delivered {} the oracle forbade (receiver not on Webex for 72 h)",
            c.forbidden
        )));
    } else if c.must == 0 {
        return Err(CellProblem::Unexercised(format!("{key} (bridge never up)")));
    } else if !delivers {
        return Err(CellProblem::Wrong(format!("{key} failed (want deliver)")));
    }
    Ok(())
}

/// The `interop_matrix` check over the cells `required` (a scenario's `cells`): each of them
/// exercised; every cell the run exercised, required or not, behaving as the spec (or the
/// override) says. A cell outside `required` that the run did not exercise is not judged.
pub fn check_cells(
    m: &Matrix,
    overrides: &BTreeMap<String, String>,
    required: &BTreeSet<CellKey>,
) -> (Status, String) {
    let mut wrong = Vec::new();
    if m.foreign.1 > 0 {
        wrong.push(format!(
            "{} connector sessions under a key that is no user's mail ID (e.g. {}): sessions are keyed by the mail ID, not the JID (spec 24)",
            m.foreign.1,
            m.foreign.0.join(", ")
        ));
    }
    let (mut unexercised, mut others) = (Vec::new(), 0);
    for cell in all_cells() {
        match judge_cell(m, overrides, cell) {
            Err(CellProblem::Wrong(w)) => wrong.push(w),
            Err(CellProblem::Unexercised(u)) if required.contains(&cell) => unexercised.push(u),
            Err(CellProblem::Unexercised(_)) => {}
            Ok(()) => others += usize::from(!required.contains(&cell)),
        }
    }
    if wrong.is_empty() && unexercised.is_empty() {
        return (Status::Pass, passed(required, others));
    }
    let mut parts = Vec::new();
    if !wrong.is_empty() {
        parts.push(format!("wrong: {}", wrong.join("; ")));
    }
    if !unexercised.is_empty() {
        parts.push(format!("not exercised: {}", unexercised.join(", ")));
    }
    (Status::Fail, parts.join(" | "))
}

/// The detail of a passed check: all 16 cells, or the required ones and how many others the
/// run exercised (as the spec too).
fn passed(required: &BTreeSet<CellKey>, others: usize) -> String {
    if required.len() == 16 {
        let works_n = all_cells().iter().filter(|(s, r)| works(*s, *r)).count();
        return format!(
            "all 16 combinations as spec 32-33: {works_n} deliver, {} fail",
            16 - works_n
        );
    }
    let names: Vec<String> = required
        .iter()
        .map(|c| {
            let spec = if works(c.0, c.1) { "deliver" } else { "fail" };
            format!("{} ({spec})", cell_name(*c))
        })
        .collect();
    format!(
        "{} as spec 32-33; {others} other combinations exercised, as the spec too",
        names.join(", ")
    )
}

/// The matrix as a report table.
pub fn table(m: &Matrix) -> Table {
    let mut rows = Vec::new();
    for s in Class::ALL {
        for r in Class::ALL {
            let c = m.cells.get(&(s, r)).copied().unwrap_or_default();
            rows.push(vec![
                format!("{} -> {}", s.label(), r.label()),
                if works(s, r) { "deliver" } else { "fail" }.into(),
                if c.judged == 0 {
                    "—".into()
                } else if c.delivered > 0 {
                    "delivered".into()
                } else {
                    "failed".into()
                },
                c.judged.to_string(),
                c.delivered.to_string(),
                c.must.to_string(),
                c.missing.to_string(),
            ]);
        }
    }
    Table {
        title: "Interop matrix (spec 32-33)".into(),
        columns: [
            "sender -> receiver",
            "spec",
            "observed",
            "judged",
            "delivered",
            "required",
            "missing",
        ]
        .iter()
        .map(|c| c.to_string())
        .collect(),
        rows,
    }
}

/// Spec 33, J− → W+ "only if receiver active on Webex in last 72 h": the failing half,
/// exercised and judged: how many messages went to a receiver inactive in Webex for over 72 h
/// when some did and none of them reached Webex; otherwise what is wrong.
pub fn inactive_receivers(m: &Matrix) -> Result<u64, String> {
    let c = m
        .cells
        .get(&(Class::JabberMinus, Class::WebexPlus))
        .copied()
        .unwrap_or_default();
    match (c.must_not, c.forbidden) {
        (0, _) => Err(
            "not exercised: no J- -> W+ message to a receiver who had not used Webex for over 72 h"
                .into(),
        ),
        (n, 0) => Ok(n),
        (n, f) => Err(format!(
            "J- -> W+: {f} of {n} messages to receivers not on Webex for over 72 h reached Webex"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Class::*;

    #[test]
    fn the_table_of_spec_33() {
        let fails = [
            (WebexMinus, JabberMinus),
            (WebexMinus, JabberPlus),
            (JabberMinus, WebexMinus),
        ];
        let mut n = 0;
        for s in Class::ALL {
            for r in Class::ALL {
                let w = works(s, r);
                assert_eq!(w, !fails.contains(&(s, r)), "{s:?} -> {r:?}");
                n += usize::from(w);
            }
        }
        assert_eq!(n, 13, "8 same-client + 5 interop combinations deliver");
    }

    /// A Hybrid Message user of both clients whose JID differs from the mail ID.
    fn user(i: u32) -> UserSpec {
        UserSpec {
            index: i,
            userid: format!("u{i}"),
            jid: format!("u{i}@im.example.com"),
            email: Some(format!("first{i}.last@example.com")),
            password: String::new(),
            cluster: 0,
            node: 1,
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

    fn open_from(key: &str, at_s: u64) -> Bridge {
        [(key.to_string(), vec![(Duration::from_secs(at_s), true)])]
            .into_iter()
            .collect()
    }

    #[test]
    fn the_session_is_looked_up_by_mail_id_not_jid() {
        let (a, b) = (user(1), user(2));
        let at = Duration::from_secs(600);
        // The connector keys sessions by mail ID: a Webex message must cross while the
        // sender's session is open, so a loss of it is a loss (before, looked up by JID,
        // the session was not found and the message only "may" arrive: a loss passed).
        let uses = Uses::default();
        let by_mail = open_from(a.email.as_deref().unwrap(), 10);
        assert_eq!(
            expect(
                &a,
                ClientKind::Webex,
                &b,
                ClientKind::Jabber,
                (at, &by_mail, &uses)
            ),
            Expect::Must
        );
        let by_jid = open_from(&a.jid, 10);
        assert_eq!(
            expect(
                &a,
                ClientKind::Webex,
                &b,
                ClientKind::Jabber,
                (at, &by_jid, &uses)
            ),
            Expect::May
        );
    }

    #[test]
    fn a_connector_keying_sessions_by_jid_fails_the_check() {
        let users = vec![user(1), user(2)];
        let mut m = Matrix::default();
        for s in Class::ALL {
            for r in Class::ALL {
                let w = works(s, r);
                let c = Cell {
                    judged: 1,
                    delivered: u64::from(w),
                    must: u64::from(w),
                    missing: 0,
                    forbidden: 0,
                    must_not: 0,
                };
                m.cells.insert((s, r), c);
            }
        }
        m.foreign = foreign_keys(&users, &open_from(users[0].email.as_deref().unwrap(), 1));
        assert_eq!(check(&m, &BTreeMap::new()).0, Status::Pass);
        m.foreign = foreign_keys(&users, &open_from(&users[0].jid, 1));
        let (status, detail) = check(&m, &BTreeMap::new());
        assert_eq!(status, Status::Fail);
        assert!(
            detail.contains("1 connector sessions under a key that is no user's mail ID (e.g. u1@im.example.com)"),
            "{detail}"
        );
    }

    #[test]
    fn a_planted_wrong_expectation_fails_the_check() {
        let mut m = Matrix::default();
        for s in Class::ALL {
            for r in Class::ALL {
                let w = works(s, r);
                let c = Cell {
                    judged: 4,
                    delivered: if w { 4 } else { 0 },
                    must: if w { 4 } else { 0 },
                    missing: 0,
                    forbidden: 0,
                    must_not: 0,
                };
                m.cells.insert((s, r), c);
            }
        }
        assert_eq!(check(&m, &BTreeMap::new()).0, Status::Pass);
        let planted: BTreeMap<String, String> = [("W- -> J-".to_string(), "deliver".to_string())]
            .into_iter()
            .collect();
        let (status, detail) = check(&m, &planted);
        assert_eq!(status, Status::Fail);
        assert!(
            detail.contains("W- -> J- failed (want deliver)"),
            "{detail}"
        );
        m.cells.remove(&(JabberPlus, WebexMinus));
        assert!(
            check(&m, &BTreeMap::new())
                .1
                .contains("not exercised: J+ -> W-")
        );
    }
}
