//! The Jabber device task: connects, logs in through [`JabberCore`], runs the timers of the
//! chat, presence and group plans, keeps the stream alive with pings, and reconnects.

use super::chat::{publish_presence, record_stanza, send_next};
use super::core::{ClientEvent, JabberCore};
use super::group::{GroupState, group_due, group_stanza, group_tick};
use super::plan::{ChatPlan, GroupPlan, PresencePlan};
use super::{
    BACKOFF_MAX, BACKOFF_MIN, CONNECT_TIMEOUT, Keepalive, KeepaliveKind, LOGIN_TIMEOUT,
    PING_TIMEOUT, Relogin,
};
use crate::observe::{PresenceEvent, Recorder};
use connector::io::net::Net;
use connector::proto::xml::Element;
use connector::proto::xmpp::{self, Jid};
use rand::RngExt as _;
use rand_chacha::ChaCha8Rng;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;

/// One device of one user.
pub struct DeviceSpec<N: Net> {
    /// Network backend.
    pub net: N,
    /// Farm host name (for records).
    pub host: String,
    /// User's bare JID.
    pub jid: Jid,
    /// Password.
    pub password: String,
    /// Resource of this device.
    pub resource: String,
    /// Home IM&P node host.
    pub server: String,
    /// Further servers tried in order after `server`, like Jabber's high-availability login
    /// (the home node, then its PRG peer, spec 65). See [`run_device`].
    pub servers: Vec<String>,
    /// Chat plan; only the device that sends has one.
    pub plan: Option<ChatPlan>,
    /// This device's RNG (workload and backoff), derived from the seed by name.
    pub rng: ChaCha8Rng,
    /// Where to report.
    pub recorder: Rc<dyn Recorder>,
    /// Presence changes this device publishes, if any.
    pub presence: Option<PresencePlan>,
    /// Group chat this device takes part in, if any (spec 42).
    pub group: Option<GroupPlan>,
    /// How the device keeps its stream alive.
    pub keepalive: Keepalive,
    /// The PRG's client re-login window, if the device has a server to fail over to.
    pub relogin: Option<Relogin>,
}

/// Runs a device forever: connect, log in, chat, and reconnect after any failure.
///
/// Server choice (Jabber's high-availability login): the device starts with `server`. An
/// attempt that never logged in (connect failed, or the node refused the login, as a node
/// does for users it does not serve) moves on to the next server of the list, wrapping
/// around; so does a session the server ended with `see-other-host` (the node's users moved
/// to its PRG peer, or back). A logged-in session lost otherwise is retried on the same
/// server first. Every retry waits the seeded backoff, except around a lost session: see
/// [`Reconnect`].
///
/// The spec comes boxed (issue 16, memory per user): a future keeps an `async fn`'s
/// arguments apart from its locals, so a spec passed by value (some 1.4 KB, three seeded
/// generators) was kept twice in the device's task, and a third time by the task that
/// waited its login delay: 6.4 KB a device, 3.5 KB of it copies of the spec.
pub async fn run_device<N: Net>(mut d: Box<DeviceSpec<N>>) {
    let mut next_send = d
        .plan
        .as_ref()
        .map(|p| crate::first_action_at(p.start, p.mean_interval, &mut d.rng));
    let mut seq: u64 = 0;
    let list: Vec<String> = std::iter::once(d.server.clone())
        .chain(d.servers.iter().cloned())
        .collect();
    let mut at = 0usize;
    let mut group = GroupState::default();
    let mut re = Reconnect {
        backoff: BACKOFF_MIN,
        relogin_at: None,
    };
    loop {
        let server = list[at % list.len()].clone();
        let mut logged_in = false;
        group.joined.clear();
        let reason = match connect(&d, &server).await {
            Ok(stream) => {
                let ctx = Ctx {
                    server: &server,
                    logged_in: &mut logged_in,
                    group: &mut group,
                };
                session(
                    &mut d,
                    stream,
                    &mut next_send,
                    &mut seq,
                    &mut re.backoff,
                    ctx,
                )
                .await
            }
            Err(e) => format!("connect failed: {e}"),
        };
        d.recorder
            .session(&d.host, &d.jid.bare(), &d.resource, false, &reason);
        let ended = Ended {
            now: d.net.now(),
            logged_in,
            sent_away: reason.contains("see-other-host"),
        };
        let relogin = d.relogin.as_mut().filter(|_| list.len() > 1);
        let (switch, wait) = re.next(ended, relogin, &mut d.rng);
        if switch {
            at = (at + 1) % list.len();
        }
        tokio::time::sleep(wait).await;
    }
}

/// How a session attempt ended.
#[derive(Debug, Clone, Copy)]
pub struct Ended {
    /// When.
    pub now: Duration,
    /// Whether it had logged in.
    pub logged_in: bool,
    /// Whether the server ended it with `see-other-host`.
    pub sent_away: bool,
}

/// A device's reconnect state (sans-IO).
///
/// When a logged-in session ends, the device draws its PRG client re-login delay
/// ([`Relogin`]): it logs in to another server of its list no sooner than that after the
/// loss. Sent away (`see-other-host`: a failover or fallback moved its users), it waits the
/// delay and moves. Its node gone (the session died), it keeps retrying that node with the
/// seeded backoff until the delay is over (a node back within it keeps its users), then
/// moves at once. Without a re-login window, or for attempts that never logged in, the
/// seeded backoff alone.
#[derive(Debug, Clone)]
pub struct Reconnect {
    /// The next backoff.
    pub backoff: Duration,
    /// The earliest time to log in to another server after a lost session.
    pub relogin_at: Option<Duration>,
}

impl Reconnect {
    /// After `e`: whether to move to the next server, and how long to wait first.
    pub fn next(
        &mut self,
        e: Ended,
        relogin: Option<&mut Relogin>,
        rng: &mut ChaCha8Rng,
    ) -> (bool, Duration) {
        if e.logged_in {
            self.relogin_at = relogin.map(|r| e.now + r.draw());
        }
        let moves = !e.logged_in || e.sent_away;
        match self.relogin_at {
            Some(t) if moves && e.sent_away => {
                self.relogin_at = None;
                (true, t.saturating_sub(e.now))
            }
            Some(t) if moves && e.now < t => (false, self.backoff_wait(rng).min(t - e.now)),
            Some(_) if moves => {
                self.relogin_at = None;
                (true, Duration::ZERO)
            }
            _ => (moves, self.backoff_wait(rng)),
        }
    }

    /// The seeded backoff: this one, jittered; the next one doubled up to [`BACKOFF_MAX`].
    fn backoff_wait(&mut self, rng: &mut ChaCha8Rng) -> Duration {
        let jitter = rng.random_range(0.5..1.5);
        let wait = self.backoff.mul_f64(jitter);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        wait
    }
}

/// Where one session attempt goes, and whether it logged in.
struct Ctx<'a> {
    server: &'a str,
    logged_in: &'a mut bool,
    group: &'a mut GroupState,
}

async fn connect<N: Net>(d: &DeviceSpec<N>, server: &str) -> std::io::Result<N::Stream> {
    match tokio::time::timeout(CONNECT_TIMEOUT, d.net.connect(server, 5222)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        )),
    }
}

/// One connected session; returns why it ended.
async fn session<N: Net>(
    d: &mut DeviceSpec<N>,
    stream: N::Stream,
    next_send: &mut Option<Duration>,
    seq: &mut u64,
    backoff: &mut Duration,
    mut ctx: Ctx<'_>,
) -> String {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut core = JabberCore::new(&d.jid, &d.password, &d.resource);
    let login_deadline = d.net.now() + LOGIN_TIMEOUT;
    let (mut last_rx, mut last_tx) = (d.net.now(), d.net.now());
    // The outstanding keepalive ping: (stanza id, sent at).
    let mut pending_ping: Option<(String, Duration)> = None;
    let mut ping = tokio::time::interval(d.keepalive.interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if let Some(out) = core.take_output() {
            if wr.write_all(out.as_bytes()).await.is_err() {
                return "write failed".into();
            }
            last_tx = d.net.now();
        }
        let now = d.net.now();
        if !core.is_ready() && now >= login_deadline {
            return "login timed out".into();
        }
        let (send_in, presence_in, group_in) = timers(d, &core, *next_send, ctx.group, now);
        tokio::select! {
            biased;
            r = crate::read::read_some(&mut rd) => {
                let bytes = match r {
                    Ok(b) if b.is_empty() => return "server closed the connection".into(),
                    Err(e) => return format!("read failed: {e}"),
                    Ok(b) => b,
                };
                last_rx = d.net.now();
                let events = core.input(&bytes);
                if let Some(why) = on_events(d, &mut core, events, &mut pending_ping, backoff, &mut ctx) {
                    return why;
                }
            }
            _ = tokio::time::sleep(send_in) => {
                send_next(d.net.now(), d, &mut core, next_send, seq);
            }
            _ = tokio::time::sleep(presence_in.unwrap_or_default()), if presence_in.is_some() => {
                publish_presence(d.net.now(), d, &mut core);
            }
            _ = tokio::time::sleep(group_in.unwrap_or_default()), if group_in.is_some() => {
                group_tick(d.net.now(), d, &mut core, ctx.group);
            }
            _ = ping.tick() => {
                let quiet = (last_rx, last_tx);
                match keepalive(d.net.now(), &d.keepalive, &mut core, quiet, &mut pending_ping) {
                    Err(why) => return why,
                    Ok(true) if wr.write_all(b" ").await.is_err() => return "write failed".into(),
                    Ok(true) => last_tx = d.net.now(),
                    Ok(false) => {}
                }
            }
            _ = tokio::time::sleep(login_deadline.saturating_sub(d.net.now())), if !core.is_ready() => {
                return "login timed out".into();
            }
        }
    }
}

/// How long until the next chat message (an hour when none is planned), presence change and
/// group chat action; nothing is due before login.
fn timers<N: Net>(
    d: &DeviceSpec<N>,
    core: &JabberCore,
    next_send: Option<Duration>,
    group: &GroupState,
    now: Duration,
) -> (Duration, Option<Duration>, Option<Duration>) {
    let send_in = match (core.is_ready(), next_send) {
        (true, Some(t)) => t.saturating_sub(now),
        _ => Duration::from_secs(3600),
    };
    let presence_in = match (&d.presence, core.is_ready()) {
        (Some(p), true) if now < p.stop => Some(p.next.saturating_sub(now)),
        _ => None,
    };
    let group_in = match (&d.group, core.is_ready()) {
        (Some(g), true) => group_due(g, group).map(|t| t.saturating_sub(now)),
        _ => None,
    };
    (send_in, presence_in, group_in)
}

/// Handles what the core made of received bytes; `Some` is why the session ends.
fn on_events<N: Net>(
    d: &mut DeviceSpec<N>,
    core: &mut JabberCore,
    events: Vec<ClientEvent>,
    pending_ping: &mut Option<(String, Duration)>,
    backoff: &mut Duration,
    ctx: &mut Ctx<'_>,
) -> Option<String> {
    for ev in events {
        match ev {
            ClientEvent::Ready(_) => {
                *backoff = BACKOFF_MIN;
                *ctx.logged_in = true;
                logged_in(d, ctx.server);
            }
            ClientEvent::Stanza(el) => {
                let answers_ping = pending_ping
                    .as_ref()
                    .is_some_and(|(id, _)| el.name == "iq" && el.attr("id") == Some(id.as_str()));
                if answers_ping {
                    *pending_ping = None;
                }
                if !group_stanza(d.net.now(), d, core, ctx.group, &el) {
                    record_stanza(d, &el);
                }
            }
            ClientEvent::Failed(why) => return Some(why),
        }
    }
    None
}

/// Reports a login: the session, and the initial `<presence/>`, this device's first device
/// presence.
fn logged_in<N: Net>(d: &DeviceSpec<N>, server: &str) {
    let why = format!("logged in to {server}");
    d.recorder
        .session(&d.host, &d.jid.bare(), &d.resource, true, &why);
    d.recorder.presence_published(
        &d.host,
        PresenceEvent {
            user: d.jid.bare(),
            device: d.resource.clone(),
            from: String::new(),
            manual: false,
            show: None,
            status: None,
            available: true,
        },
    );
}

/// The keepalive tick: ends a silent or half-open stream; else sends a ping if none is
/// outstanding (with whitespace keepalives, only to probe a stream the server has been silent
/// on for two intervals: its own whitespace comes at least that often). Returns whether to
/// send a whitespace keepalive (nothing else went out for an interval).
fn keepalive(
    now: Duration,
    ka: &Keepalive,
    core: &mut JabberCore,
    (last_rx, last_tx): (Duration, Duration),
    pending_ping: &mut Option<(String, Duration)>,
) -> Result<bool, String> {
    let silent = now.saturating_sub(last_rx);
    if silent > ka.silence_max() {
        return Err("stream silent: keepalive timed out".into());
    }
    if pending_ping
        .as_ref()
        .is_some_and(|(_, at)| now.saturating_sub(*at) > PING_TIMEOUT)
    {
        return Err("keepalive ping unanswered: stream is half-open".into());
    }
    if !core.is_ready() || pending_ping.is_some() {
        return Ok(false);
    }
    let probe = match ka.kind {
        KeepaliveKind::Ping => true,
        KeepaliveKind::Whitespace => silent >= ka.interval * 2,
    };
    if !probe {
        return Ok(now.saturating_sub(last_tx) >= ka.interval);
    }
    {
        let id = core.next_id();
        *pending_ping = Some((id.clone(), now));
        let p = Element::new("iq", xmpp::NS_CLIENT)
            .with_attr("type", "get")
            .with_attr("id", id)
            .with_child(Element::new("ping", xmpp::NS_PING));
        core.send(&p);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core that has logged in (the login sequence of `core.rs`'s test), output drained.
    fn ready_core() -> JabberCore {
        let jid = Jid::parse("alice@example.com").unwrap();
        let mut c = JabberCore::new(&jid, "pw", "desk");
        let h = xmpp::stream_header(xmpp::NS_CLIENT, Some("example.com"), None, Some("1"));
        c.input(format!("{h}<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>").as_bytes());
        c.input(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
        c.input(format!("{h}<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>").as_bytes());
        c.input(b"<iq type='result' id='alice-desk-1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@example.com/desk</jid></bind></iq>");
        assert!(c.is_ready());
        while c.take_output().is_some() {}
        c
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn window() -> Relogin {
        use rand::SeedableRng as _;
        Relogin {
            lower: s(120),
            upper: s(537),
            rng: ChaCha8Rng::seed_from_u64(7),
        }
    }

    fn ended(now: u64, logged_in: bool, sent_away: bool) -> Ended {
        Ended {
            now: s(now),
            logged_in,
            sent_away,
        }
    }

    #[test]
    fn sent_away_a_device_moves_within_the_re_login_window_not_after_its_backoff() {
        use rand::SeedableRng as _;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut w = window();
        let mut re = Reconnect {
            backoff: BACKOFF_MIN,
            relogin_at: None,
        };
        for _ in 0..50 {
            let (switch, wait) = re.next(ended(1000, true, true), Some(&mut w), &mut rng);
            assert!(switch);
            assert!((s(120)..=s(537)).contains(&wait), "{wait:?}");
        }
        // Without a window (a node without a PRG peer): the backoff, seconds.
        let (switch, wait) = re.next(ended(1000, true, true), None, &mut rng);
        assert!(switch && wait <= BACKOFF_MAX.mul_f64(1.5), "{wait:?}");
    }

    #[test]
    fn a_lost_node_is_retried_until_the_re_login_delay_then_left_at_once() {
        use rand::SeedableRng as _;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut w = window();
        let mut re = Reconnect {
            backoff: BACKOFF_MIN,
            relogin_at: None,
        };
        // The session died: retry the same server first.
        let (switch, _) = re.next(ended(100, true, false), Some(&mut w), &mut rng);
        assert!(!switch);
        let due = re.relogin_at.expect("a re-login time");
        assert!((s(220)..=s(637)).contains(&due), "{due:?}");
        // Its retries fail: stay on it, never waiting past the re-login time.
        let (switch, wait) = re.next(ended(110, false, false), Some(&mut w), &mut rng);
        assert!(!switch && s(110) + wait <= due);
        // Past it: move at once, and the next failures are plain backoff again.
        let (switch, wait) = re.next(
            Ended {
                now: due,
                ..ended(0, false, false)
            },
            Some(&mut w),
            &mut rng,
        );
        assert_eq!((switch, wait), (true, Duration::ZERO));
        assert_eq!(re.relogin_at, None);
        let (switch, wait) = re.next(
            Ended {
                now: due,
                ..ended(0, false, false)
            },
            Some(&mut w),
            &mut rng,
        );
        assert!(switch && wait > Duration::ZERO);
    }

    /// Whether the core has a ping to send (and drains it).
    fn sent_ping(c: &mut JabberCore) -> bool {
        c.take_output().is_some_and(|o| o.contains("urn:xmpp:ping"))
    }

    #[test]
    fn ping_keepalives_ping_every_tick_and_end_an_unanswered_one() {
        let ka = Keepalive::default();
        let mut c = ready_core();
        let mut pending = None;
        let quiet = (s(0), s(0));
        assert_eq!(
            keepalive(s(30), &ka, &mut c, quiet, &mut pending),
            Ok(false)
        );
        assert!(sent_ping(&mut c) && pending.is_some());
        let quiet = (s(40), s(30));
        assert_eq!(
            keepalive(s(60), &ka, &mut c, quiet, &mut pending),
            Ok(false)
        );
        let err = keepalive(s(61), &ka, &mut c, quiet, &mut pending).unwrap_err();
        assert!(err.contains("half-open"), "{err}");
    }

    /// Whitespace keepalives: a space when nothing went out for an interval, a ping only to
    /// probe a stream the server has been silent on for two intervals, the end of a stream
    /// silent for three.
    #[test]
    fn whitespace_keepalives_probe_only_a_silent_stream() {
        let ka = Keepalive {
            kind: KeepaliveKind::Whitespace,
            interval: s(30),
        };
        let mut c = ready_core();
        let mut pending = None;
        // The server's whitespace arrived 10 s ago; we sent a stanza 20 s ago: nothing to do.
        assert_eq!(
            keepalive(s(100), &ka, &mut c, (s(90), s(80)), &mut pending),
            Ok(false)
        );
        // Nothing sent for an interval: a space, no stanza.
        assert_eq!(
            keepalive(s(100), &ka, &mut c, (s(90), s(70)), &mut pending),
            Ok(true)
        );
        assert!(c.take_output().is_none() && pending.is_none());
        // The server silent for two intervals: a ping probes the stream.
        assert_eq!(
            keepalive(s(100), &ka, &mut c, (s(40), s(90)), &mut pending),
            Ok(false)
        );
        assert!(sent_ping(&mut c) && pending.is_some());
        // Unanswered past PING_TIMEOUT: half-open.
        let err = keepalive(s(131), &ka, &mut c, (s(45), s(100)), &mut pending).unwrap_err();
        assert!(err.contains("half-open"), "{err}");
        // Silent for three intervals: dead, answered ping or not.
        let err = keepalive(s(131), &ka, &mut c, (s(40), s(130)), &mut None).unwrap_err();
        assert!(err.contains("silent"), "{err}");
        assert_eq!(ka.silence_max(), s(90));
        let long = Keepalive {
            interval: s(120),
            ..ka
        };
        assert_eq!(
            long.silence_max(),
            s(360),
            "three intervals, never less than 90 s"
        );
    }
}
