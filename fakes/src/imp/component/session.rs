//! The session IQs of the component link (`urn:hmsim:hybrid-session:0`, module doc of
//! [`super`]): start and stop, the limits and the GCRA creation rate.

use super::{ComponentService, ComponentStats, set_condition_text};
use crate::imp::node::{ConnId, ImpNode};
use crate::imp::prg::PrgState;
use connector::proto::xml::Element;
use connector::proto::xmpp::{self, Jid};
use std::time::Duration;

impl ComponentService {
    /// Handles a session IQ; `Err` is the error reply.
    pub(super) fn on_session(
        &mut self,
        now: Duration,
        node: &mut ImpNode,
        link: ConnId,
        iq: &Element,
        s: &Element,
    ) -> Result<(), Element> {
        let (action, jid) = self.session_request(iq, s)?;
        if action == "stop" {
            // Only the link holding the session can stop it: a late stop from a connector
            // whose session another connector already took over must not end the new one.
            if let Some((session, owner)) = node.component_session(&jid)
                && owner == link
            {
                node.component_session_stop(now, session);
                self.stats.sessions_stopped += 1;
            }
            return Ok(());
        }
        self.check_home(node, iq, &jid)?;
        if node.component_session(&jid).is_none() {
            self.check_limits(now, node, iq, &jid.bare())?;
        }
        match node.component_session_start(now, link, &jid) {
            Some(_) => {
                self.stats.sessions_started += 1;
                Ok(())
            }
            None => Err(refuse(
                &mut self.stats,
                iq,
                "cancel",
                "conflict",
                "a Jabber client holds this resource",
            )),
        }
    }

    /// The action (`start` or `stop`) and full JID of a well-formed session request.
    fn session_request(&mut self, iq: &Element, s: &Element) -> Result<(String, Jid), Element> {
        if iq.attr("type") != Some("set") {
            let text = "session requests are type='set'";
            return Err(refuse(&mut self.stats, iq, "modify", "bad-request", text));
        }
        let action = s.attr("action").unwrap_or_default();
        if action != "start" && action != "stop" {
            let text = "action is 'start' or 'stop'";
            return Err(refuse(&mut self.stats, iq, "modify", "bad-request", text));
        }
        match s.attr("jid").map(Jid::parse) {
            Some(Ok(j)) if j.local.is_some() && j.resource.is_some() => Ok((action.to_string(), j)),
            _ => {
                let text = "jid must be a full JID (user@domain/resource)";
                Err(refuse(&mut self.stats, iq, "modify", "jid-malformed", text))
            }
        }
    }

    /// The user must exist here and be served by this node (its home node, or the home node's
    /// PRG peer after a failover, `prg.rs`): else `item-not-found`, a `redirect`, or
    /// `resource-constraint` (`wait`) while the node does not know yet whom it serves.
    fn check_home(&mut self, node: &ImpNode, iq: &Element, jid: &Jid) -> Result<(), Element> {
        let home = match self.dir.get(&jid.bare()) {
            Some(u) if jid.domain == self.domain => u.home.clone(),
            _ => {
                let text = "no such user";
                return Err(refuse(
                    &mut self.stats,
                    iq,
                    "cancel",
                    "item-not-found",
                    text,
                ));
            }
        };
        // A node restarted in its PRG (`Unknown`) does not know yet whom it serves: its view
        // may be older than a takeover made while it was down. Like its c2s port
        // (`temporary-auth-failure`), it opens nobody's session until its peer's heartbeat
        // (or the initialisation timeout) settles it; the connector comes back later and is
        // then answered by the settled view (explore seed 9517: sessions opened by the stale
        // view were ended with `see-other-host` six seconds later).
        if node.prg_state() == Some(PrgState::Unknown) {
            let text = "the node is starting: whom it serves is not known yet";
            return Err(refuse(
                &mut self.stats,
                iq,
                "wait",
                "resource-constraint",
                text,
            ));
        }
        let home = node.serving_node(&jid.bare()).unwrap_or(home);
        if home == self.host {
            return Ok(());
        }
        let text = format!("user is homed on {home}");
        let mut e = refuse(&mut self.stats, iq, "modify", "redirect", &text);
        set_condition_text(&mut e, &home);
        Err(e)
    }

    /// A new session must fit the node's JSM session limit (spec 10), the component port's
    /// own session cap, if set, and the creation rate.
    fn check_limits(
        &mut self,
        now: Duration,
        node: &mut ImpNode,
        iq: &Element,
        bare: &str,
    ) -> Result<(), Element> {
        if !node.jsm_admit(bare, true) {
            self.stats.refused_capacity += 1;
            let why = node.jsm_limit_text();
            return Err(xmpp::error_reply(
                iq,
                "wait",
                "resource-constraint",
                Some(&why),
            ));
        }
        if node.component_session_count() >= self.sessions_max {
            self.stats.refused_capacity += 1;
            return Err(xmpp::error_reply(
                iq,
                "wait",
                "resource-constraint",
                Some(&format!("session limit {} reached", self.sessions_max)),
            ));
        }
        if !self.admit(now) {
            self.stats.refused_rate += 1;
            return Err(xmpp::error_reply(
                iq,
                "wait",
                "resource-constraint",
                Some("session creation rate exceeded"),
            ));
        }
        Ok(())
    }

    /// GCRA: admits one creation at `now` if the rate allows it, and records it.
    fn admit(&mut self, now: Duration) -> bool {
        let Some(rate) = self.cfg.create_rate else {
            return true;
        };
        if rate.sessions == 0 {
            return false;
        }
        let interval = rate.per / rate.sessions;
        let tolerance = rate.per.saturating_sub(interval);
        let tat = self.tat.max(now);
        if tat.saturating_sub(now) > tolerance {
            return false;
        }
        self.tat = tat.saturating_add(interval);
        true
    }
}

/// A refusal other than a limit, counted.
fn refuse(stats: &mut ComponentStats, iq: &Element, kind: &str, cond: &str, text: &str) -> Element {
    stats.refused_other += 1;
    xmpp::error_reply(iq, kind, cond, Some(text))
}
