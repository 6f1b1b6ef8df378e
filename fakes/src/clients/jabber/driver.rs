//! The Jabber device task: connects, logs in through [`JabberCore`], runs the timers of the
//! chat, presence and group plans, keeps the stream alive with pings, and reconnects.

use super::chat::{publish_presence, record_stanza, send_next};
use super::core::{ClientEvent, JabberCore};
use super::group::{GroupState, group_due, group_stanza, group_tick};
use super::plan::{ChatPlan, GroupPlan, PresencePlan};
use super::{
    BACKOFF_MAX, BACKOFF_MIN, CONNECT_TIMEOUT, LOGIN_TIMEOUT, PING_INTERVAL, PING_TIMEOUT,
    READ_BUF_BYTES, SILENCE_MAX,
};
use crate::observe::{PresenceEvent, Recorder};
use connector::io::net::Net;
use connector::proto::xml::Element;
use connector::proto::xmpp::{self, Jid};
use rand::RngExt as _;
use rand_chacha::ChaCha8Rng;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

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
}

/// Runs a device forever: connect, log in, chat, and reconnect after any failure.
///
/// Server choice (Jabber's high-availability login): the device starts with `server`. An
/// attempt that never logged in (connect failed, or the node refused the login, as a node
/// does for users it does not serve) moves on to the next server of the list, wrapping
/// around; so does a session the server ended with `see-other-host` (the node's users moved
/// to its PRG peer, or back). A logged-in session lost otherwise is retried on the same
/// server first. Every retry waits the seeded backoff.
pub async fn run_device<N: Net>(mut d: DeviceSpec<N>) {
    let mut backoff = BACKOFF_MIN;
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
                session(&mut d, stream, &mut next_send, &mut seq, &mut backoff, ctx).await
            }
            Err(e) => format!("connect failed: {e}"),
        };
        if !logged_in || reason.contains("see-other-host") {
            at = (at + 1) % list.len();
        }
        d.recorder
            .session(&d.host, &d.jid.bare(), &d.resource, false, &reason);
        let jitter = d.rng.random_range(0.5..1.5);
        tokio::time::sleep(backoff.mul_f64(jitter)).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
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
    let mut buf = vec![0u8; READ_BUF_BYTES];
    let login_deadline = d.net.now() + LOGIN_TIMEOUT;
    let mut last_rx = d.net.now();
    // The outstanding keepalive ping: (stanza id, sent at).
    let mut pending_ping: Option<(String, Duration)> = None;
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if let Some(out) = core.take_output()
            && wr.write_all(out.as_bytes()).await.is_err()
        {
            return "write failed".into();
        }
        let now = d.net.now();
        if !core.is_ready() && now >= login_deadline {
            return "login timed out".into();
        }
        let (send_in, presence_in, group_in) = timers(d, &core, *next_send, ctx.group, now);
        tokio::select! {
            biased;
            r = rd.read(&mut buf) => {
                let n = match r {
                    Ok(0) => return "server closed the connection".into(),
                    Err(e) => return format!("read failed: {e}"),
                    Ok(n) => n,
                };
                last_rx = d.net.now();
                let events = core.input(&buf[..n]);
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
                if let Err(why) = keepalive(d.net.now(), &mut core, last_rx, &mut pending_ping) {
                    return why;
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

/// The keepalive tick: ends a silent or half-open stream, else sends a ping if none is
/// outstanding.
fn keepalive(
    now: Duration,
    core: &mut JabberCore,
    last_rx: Duration,
    pending_ping: &mut Option<(String, Duration)>,
) -> Result<(), String> {
    if now.saturating_sub(last_rx) > SILENCE_MAX {
        return Err("stream silent: keepalive timed out".into());
    }
    if pending_ping
        .as_ref()
        .is_some_and(|(_, at)| now.saturating_sub(*at) > PING_TIMEOUT)
    {
        return Err("keepalive ping unanswered: stream is half-open".into());
    }
    if core.is_ready() && pending_ping.is_none() {
        let id = core.next_id();
        *pending_ping = Some((id.clone(), now));
        let p = Element::new("iq", xmpp::NS_CLIENT)
            .with_attr("type", "get")
            .with_attr("id", id)
            .with_child(Element::new("ping", xmpp::NS_PING));
        core.send(&p);
    }
    Ok(())
}
