//! Whether the run is quiescent, judged once per simulated second after `duration` at a cost
//! that follows what changed and what is still open, not the whole history (issue 16: each
//! judgement rebuilt the oracle over every message and every user, and a 75,000-user hour's
//! drain ran for more than 800 CPU s without finishing).
//!
//! [`Live`] keeps what [`super::quiescent`] rebuilds: the oracle's session index (extended
//! with each new session transition), the Webex uses of the 72 h rule ([`LiveUses`], folded in
//! at each send and delivery), and the messages that may still be awaited. A message leaves
//! that set only once it can never be awaited again, whatever the rest of the run does: every
//! client of its recipient has received it (deliveries are never taken back), or a fault put
//! it at risk (the PRG changes that put messages at risk only grow in number, the scenario's
//! faults are fixed). Every other message is judged again each time, exactly as the full
//! judgement would, so the verdict is the same at every judgement point; debug builds check
//! that against [`super::quiescent`] at each one.

use crate::history::History;
use crate::oracle::activity::LiveUses;
use crate::oracle::{Expect, Oracle};
use crate::scenario::Scenario;
use fakes::observe::ClientKind;
use std::collections::{BTreeMap, BTreeSet};

/// [`super::quiescent`], judged again only when the history it reads has changed: it is a
/// function of the messages and their deliveries, the device sessions, the connector sessions
/// sampled and the PRG states, never of the time. A run waiting on a stuck message changes
/// nothing between two judgements; when something changed, [`Live`] judges what is new and
/// what is still open.
#[derive(Default)]
pub(super) struct Quiet<'a> {
    last: Option<(HistoryMark, bool)>,
    live: Option<Live<'a>>,
    /// [`super::Options::self_check_quiescence`]: judge both ways from the start.
    self_check: bool,
    /// When the next self-check judgement before `duration` is due.
    next_check: std::time::Duration,
}

/// What [`super::quiescent`] reads of a history, as counts that grow with every change: the
/// events the observer digested (deliveries, device sessions, refusals), the messages sent,
/// the connector session transitions, the PRG state samples and the cloud's Webex activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HistoryMark {
    digested: u64,
    sent: usize,
    bridge: usize,
    prg: usize,
    activity: u64,
}

impl HistoryMark {
    fn of(out: &History) -> Self {
        Self {
            digested: out.observer.digest_events(),
            sent: out.observer.sent_count(),
            bridge: out.bridge.values().map(Vec::len).sum(),
            prg: prg_samples(out),
            activity: out.webex_activity_changes,
        }
    }
}

fn prg_samples(out: &History) -> usize {
    out.prg_states.values().map(Vec::len).sum()
}

impl<'a> Quiet<'a> {
    /// Whether nothing that must arrive is still on its way ([`super::quiescent`]).
    pub(super) fn judge(&mut self, s: &'a Scenario, out: &History) -> bool {
        let mark = HistoryMark::of(out);
        if let Some((last, verdict)) = self.last
            && last == mark
        {
            return verdict;
        }
        let verdict = self.live(s, out).quiescent(out);
        debug_assert_eq!(
            verdict,
            super::quiescent(s, out),
            "the incremental quiescence judgement differs from the full one at {:?}",
            out.observer.sent_count()
        );
        self.last = Some((mark, verdict));
        verdict
    }

    /// A judge that, if `self_check`, also runs [`Quiet::check_before`].
    pub(super) fn self_checking(self_check: bool) -> Self {
        Self {
            self_check,
            ..Self::default()
        }
    }

    /// With [`super::Options::self_check_quiescence`]: before `duration`, once per simulated
    /// second, judges incrementally and in full (with a history still full of open messages),
    /// and panics if they differ; counts the judgements in `out`. After `duration` debug
    /// builds check in [`Quiet::judge`].
    pub(super) fn check_before(
        &mut self,
        s: &'a Scenario,
        out: &mut History,
        (now, duration): (std::time::Duration, std::time::Duration),
    ) {
        if !self.self_check || now >= duration || now < self.next_check {
            return;
        }
        self.next_check = now + super::QUIESCENCE_EVERY;
        let live = self.live(s, out);
        let verdict = live.quiescent(out);
        assert_eq!(
            verdict,
            super::quiescent(s, out),
            "{}: the judgements differ at {now:?}",
            s.name
        );
        // What the verdict rests on, kept up to date, equals what the full one rebuilds.
        let uses = crate::oracle::activity::Uses::of(out);
        assert_eq!(
            live.uses.uses().by_user(),
            uses.by_user(),
            "{}: uses at {now:?}",
            s.name
        );
        let full = Oracle::new(s, out);
        assert_eq!(
            live.oracle.sessions, full.sessions,
            "{}: sessions at {now:?}",
            s.name
        );
        out.quiescence_self_checks += 1;
    }

    /// The 72 h rule's uses of the history so far ([`crate::oracle::activity::Uses::of`]),
    /// caught up incrementally: for [`super::Options::awaits`].
    pub(super) fn uses(
        &mut self,
        s: &'a Scenario,
        out: &History,
    ) -> &crate::oracle::activity::Uses {
        let live = self.live(s, out);
        live.catch_up(out);
        live.uses.uses()
    }

    fn live(&mut self, s: &'a Scenario, out: &History) -> &mut Live<'a> {
        self.live.get_or_insert_with(|| Live::new(s, out))
    }
}

/// The state of the incremental judgement: the history read so far (by position in the
/// observer's logs) and what it made of it.
struct Live<'a> {
    /// Whether the run crosses the Jabber/Webex bridge (each recipient client is judged).
    bridged: bool,
    oracle: Oracle<'a>,
    /// Each user's place in [`History::users`], by bare JID (the last of duplicates, as a
    /// map collected from them keeps).
    jids: BTreeMap<String, usize>,
    uses: LiveUses,
    /// Places in send order of the messages that may still be awaited.
    open: BTreeSet<usize>,
    /// Messages sent, deliveries, session transitions and PRG samples read so far.
    read: (usize, usize, usize, usize),
}

impl<'a> Live<'a> {
    fn new(s: &'a Scenario, out: &History) -> Self {
        Self {
            bridged: crate::plan::topology::uses_cloud(s),
            oracle: Oracle::without_sessions(s, out),
            jids: (out.users.iter().enumerate())
                .map(|(i, u)| (u.jid.clone(), i))
                .collect(),
            uses: LiveUses::new(out),
            open: BTreeSet::new(),
            read: (0, 0, 0, prg_samples(out)),
        }
    }

    /// Reads what the history gained since the last call.
    fn catch_up(&mut self, out: &History) {
        let (sent, delivered, sessions, prg) = self.read;
        let new_sessions = out.observer.sessions_since(sessions);
        let sessions = sessions + new_sessions.len();
        for e in new_sessions {
            self.oracle.add_session(e);
        }
        let prg_now = prg_samples(out);
        if prg_now != prg {
            self.oracle.refresh_prg(out);
        }
        let (uses, open) = (&mut self.uses, &mut self.open);
        let sent = out.observer.with_sent_since(sent, |i, m| {
            uses.sent(i, m);
            open.insert(i);
        });
        let delivered = out
            .observer
            .with_delivered_since(delivered, |i, m| uses.delivered(i, m));
        self.uses.activity(out);
        self.read = (sent, delivered, sessions, prg_now);
    }

    /// Whether no open message is awaited; forgets those that never can be again.
    fn quiescent(&mut self, out: &History) -> bool {
        self.catch_up(out);
        let mut awaited = false;
        let mut closed = Vec::new();
        for &i in &self.open {
            let judged = out.observer.with_message_at(i, |m| self.judge(out, m));
            let (waiting, done) = judged.unwrap_or((false, true));
            awaited |= waiting;
            if done {
                closed.push(i);
            }
        }
        for i in closed {
            self.open.remove(&i);
        }
        !awaited
    }

    /// Whether `m` is awaited now, and whether it is done for good.
    fn judge(&self, out: &History, m: &crate::history::observer::MessageRecord) -> (bool, bool) {
        let o = &self.oracle;
        if crate::oracle::never_at_cloud(m) {
            // Held for good: its client and what it held are gone.
            return (false, true);
        }
        if !self.bridged {
            // As the full judgement: a message with no delivery that must arrive.
            let waiting = m.deliveries.is_empty() && o.expect(m) == Expect::Must;
            let done = !m.deliveries.is_empty() || o.at_risk(m) || o.stranded_copy(m, m.client);
            return (waiting, done);
        }
        let users = |jid: &str| self.jids.get(jid).map(|&i| &out.users[i]);
        let missing = o.missing_by(&users, m, &out.bridge, self.uses.uses()).0;
        let waiting = !missing.is_empty() && !o.excused(m, &missing);
        let got = |c: ClientKind| {
            m.deliveries
                .iter()
                .any(|d| crate::oracle::interop::client_of_device(&d.device) == c)
        };
        // Missing is among the recipient's clients that have not received it.
        let done = o.at_risk(m)
            || match (users(&m.from), users(&m.to)) {
                (Some(_), Some(r)) => {
                    (!r.jabber || got(ClientKind::Jabber)) && (!r.webex || got(ClientKind::Webex))
                }
                _ => true,
            };
        (waiting, done)
    }
}
