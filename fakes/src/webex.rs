//! The Webex App client model: one task per user, speaking the cloud's REST API and event
//! WebSocket (the same client helpers as the connector, [`connector::io::http`]).
//!
//! A user logs in, keeps the event socket open, and acts on a seeded schedule: text posts,
//! edits and deletes of their last post, file shares, typing indications and read markers,
//! drawn from the workload's mix. Every text it sends carries a unique tag `[[id]]` (Jepsen
//! style): ids differ across the bridge (activity ids in Webex, stanza ids in Jabber), the tag
//! is how the observer follows one message from sender to every receiver. Everything is
//! encrypted with the space key before it leaves the client; the cloud never sees plaintext.
//!
//! Failures (cloud outage, KMS outage, HTTP errors, a dropped socket) are survived the way a
//! real client does: reconnect with seeded backoff, and re-fetch what was missed over REST.

use crate::observe::{
    ClientKind, Delivered, GROUP_SPACE_TAG_PREFIX, GroupEvent, GroupEventKind, Recorder, Sent,
};
use connector::core::limiter::Backoff;
use connector::io::http::{ClientError, EventClient, HttpClient, Method, ws_connect};
use connector::io::net::Net;
use connector::proto::jwe::{self, SpaceKey};
use connector::proto::webex::{Activity, Event, Verb};
use rand::RngExt as _;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// Reconnect backoff bounds.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Upper bound of the reconnect backoff.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long a typing indication lasts before the client stops it.
pub const TYPING_FOR: Duration = Duration::from_secs(5);
/// Connect attempts give up after this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Shares of each action, as fractions summing to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    /// Text posts.
    pub text: f64,
    /// Edits of the last own post.
    pub edit: f64,
    /// Deletes of the last own post.
    pub delete: f64,
    /// File shares.
    pub file: f64,
    /// Typing indications.
    pub typing: f64,
    /// Read markers.
    pub read: f64,
}

/// What one Webex user does.
#[derive(Debug, Clone)]
pub struct WebexPlan {
    /// Emails the user writes to.
    pub contacts: Vec<String>,
    /// Mean time between actions (exponential).
    pub mean_interval: Duration,
    /// When acting starts.
    pub start: Duration,
    /// When acting stops.
    pub stop: Duration,
    /// Action shares.
    pub mix: Mix,
}

/// Presence settings applied once logged in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PresenceSettings {
    /// "Show statuses" off.
    pub hidden: bool,
    /// Do not disturb for this many minutes (30..=1440), set at login.
    pub dnd_minutes: Option<u64>,
    /// Out of office.
    pub out_of_office: bool,
}

/// One Webex App user.
pub struct WebexSpec<N: Net> {
    /// Network backend.
    pub net: N,
    /// Farm host name (for records).
    pub host: String,
    /// Cloud host and port.
    pub cloud: (String, u16),
    /// Email.
    pub email: String,
    /// Password.
    pub password: String,
    /// What to send; `None` for a user who only reads.
    pub plan: Option<WebexPlan>,
    /// Presence settings.
    pub presence: PresenceSettings,
    /// Whether the user uses Webex at all before `plan.start` (idle users log in late).
    pub login_at: Duration,
    /// The device name for records (`webex.<incarnation>`).
    pub device: String,
    /// This user's RNG.
    pub rng: ChaCha8Rng,
    /// Where to report.
    pub recorder: Rc<dyn Recorder>,
}

/// The `[[id]]` tag of a text, if any.
pub fn tag_of(text: &str) -> Option<&str> {
    let start = text.find("[[")? + 2;
    let end = start + text[start..].find("]]")?;
    Some(&text[start..end])
}

#[derive(Default)]
struct State {
    token: Option<String>,
    /// Contact email → (space id, key).
    spaces: BTreeMap<String, (String, SpaceKey)>,
    /// Space id → key, for every space seen.
    keys: BTreeMap<String, SpaceKey>,
    /// Space id → last activity sequence seen (for catch-up).
    seen: BTreeMap<String, u64>,
    /// Last own post per contact: (activity id, tag).
    last_post: BTreeMap<String, String>,
    /// Last activity received per contact, for read markers.
    last_received: BTreeMap<String, (String, String)>,
    seq: u64,
    /// Posts the cloud did not take (outage, 5xx, dropped connection): re-sent in order after
    /// the next login. The `client_id` makes a re-send of a post that did land harmless.
    outbox: std::collections::VecDeque<(String, Value)>,
}

/// Events read ahead of the session loop; the reader waits when it is full.
const EVENTS_QUEUED_MAX: usize = 64;

/// Reads the event socket in its own task. Its silence timeout (no frame, not even a ping, for
/// the WebSocket idle timeout) only works if the read is never cancelled: a read raced in the
/// session loop's `select!` restarts it at every action, so an active user would never notice
/// a socket wedged by a partition and would miss every event after it.
struct EventReader {
    rx: tokio::sync::mpsc::Receiver<Result<Event, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl EventReader {
    fn spawn<S: connector::io::net::Stream + 'static>(mut ws: EventClient<S>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(EVENTS_QUEUED_MAX);
        let task = tokio::task::spawn_local(async move {
            loop {
                let ev = ws.next_event().await.map_err(|e| e.to_string());
                let failed = ev.is_err();
                if tx.send(ev).await.is_err() || failed {
                    break;
                }
            }
        });
        EventReader { rx, task }
    }
}

impl Drop for EventReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Posts kept for re-sending at most; a user offline for longer than this loses the oldest,
/// as a real client's bounded outbox would.
pub const OUTBOX_MAX: usize = 256;

/// Runs a Webex user forever.
pub async fn run_webex<N: Net>(mut d: WebexSpec<N>) {
    tokio::time::sleep(d.login_at.saturating_sub(d.net.now())).await;
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let mut st = State::default();
    let mut next_action = d
        .plan
        .as_ref()
        .map(|p| crate::first_action_at(p.start, p.mean_interval, &mut d.rng));
    loop {
        let reason = session(&mut d, &mut st, &mut next_action, &mut backoff).await;
        d.recorder
            .session(&d.host, &d.email, &d.device, false, &reason);
        st.token = None;
        tokio::time::sleep(backoff.next_delay(&mut d.rng)).await;
    }
}

/// The Webex App's keep-alive HTTP/1.1 connection to the cloud, replaced when it closes, as
/// a real client's connection pool does. The cloud closes a connection idle for
/// [`connector::io::http::HTTP_IDLE_TIMEOUT`]; a request sent just as it does gets no response
/// ("connection closed before message completed"). That is a race of HTTP/1.1 itself, which
/// real clients absorb by sending the request again on a new connection when a reused one
/// closed before any response (RFC 9112 section 9.3.1; browsers do so for any method). The
/// cloud closes connections only between requests, so such a request was never read, and
/// posts carry a `client_id` besides.
pub struct CloudConn<N: Net> {
    net: N,
    cloud: (String, u16),
    http: HttpClient,
    /// `http` has answered a request: only a reused connection can meet the idle close.
    reused: bool,
}

impl<N: Net> CloudConn<N> {
    /// Connects to the cloud at `cloud` (within [`CONNECT_TIMEOUT`]).
    ///
    /// # Errors
    /// Why the connection could not be made.
    pub async fn connect(net: N, cloud: (String, u16)) -> Result<Self, String> {
        let http = connect_http(&net, &cloud).await?;
        Ok(CloudConn {
            net,
            cloud,
            http,
            reused: false,
        })
    }

    async fn reconnect(&mut self) -> Result<(), String> {
        self.http = connect_http(&self.net, &self.cloud).await?;
        self.reused = false;
        Ok(())
    }

    /// One request: the status and the JSON body. A connection found closed is replaced
    /// first; a request that a reused connection closed on without answering is sent once
    /// more on a new one.
    ///
    /// # Errors
    /// The transport failure, as text.
    pub async fn request(
        &mut self,
        m: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        if !self.http.is_open() {
            self.reconnect().await?;
        }
        let answer = match self.http.request(m, path, token, body).await {
            Err(ClientError::NoResponse(_)) if self.reused => {
                self.reconnect().await?;
                self.http.request(m, path, token, body).await
            }
            other => other,
        };
        let answer = answer.map_err(|e| e.to_string())?;
        self.reused = true;
        Ok(answer)
    }
}

async fn connect_http<N: Net>(net: &N, cloud: &(String, u16)) -> Result<HttpClient, String> {
    let s = tokio::time::timeout(CONNECT_TIMEOUT, net.connect(&cloud.0, cloud.1))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    HttpClient::handshake(s).await.map_err(|e| e.to_string())
}

async fn call<N: Net>(
    c: &mut CloudConn<N>,
    m: Method,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Result<Value, String> {
    let body = (!body.is_null()).then_some(body);
    let (status, v) = c.request(m, path, token, body.as_ref()).await?;
    if status >= 300 {
        return Err(format!("{path}: HTTP {status} {v}"));
    }
    Ok(v)
}

async fn session<N: Net>(
    d: &mut WebexSpec<N>,
    st: &mut State,
    next_action: &mut Option<Duration>,
    backoff: &mut Backoff,
) -> String {
    let mut c = match CloudConn::connect(d.net.clone(), d.cloud.clone()).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let login = json!({"email": d.email, "password": d.password});
    let token = match call(&mut c, Method::Post, "/v1/login", None, login).await {
        Ok(v) => v["token"].as_str().unwrap_or_default().to_string(),
        Err(e) => return format!("login failed: {e}"),
    };
    st.token = Some(token.clone());
    if let Err(e) = apply_presence(&mut c, &token, d.presence).await {
        return e;
    }
    let stream =
        match tokio::time::timeout(CONNECT_TIMEOUT, d.net.connect(&d.cloud.0, d.cloud.1)).await {
            Ok(Ok(s)) => s,
            _ => return "event socket connect failed".into(),
        };
    let ws: EventClient<N::Stream> = match ws_connect(stream, &token, &mut d.rng).await {
        Ok(ws) => ws,
        Err(e) => return format!("event socket refused: {e}"),
    };
    let mut events = EventReader::spawn(ws);
    backoff.reset();
    d.recorder
        .session(&d.host, &d.email, &d.device, true, "logged in");
    if let Err(e) = catch_up(d, st, &mut c, &token).await {
        return e;
    }
    if let Err(e) = flush_outbox(st, &mut c, &token).await {
        return e;
    }
    loop {
        let wait = next_action.map_or(Duration::from_secs(3600), |t| t.saturating_sub(d.net.now()));
        tokio::select! {
            biased;
            ev = events.rx.recv() => match ev.unwrap_or_else(|| Err("reader ended".into())) {
                Ok(ev) => {
                    if let Err(e) = on_event(d, st, &mut c, &token, ev).await {
                        return e;
                    }
                }
                Err(e) => return format!("event socket: {e}"),
            },
            _ = tokio::time::sleep(wait) => {
                // (The cloud closes idle keep-alive connections: `CloudConn` reopens them.)
                if let Err(e) = act(d, st, &mut c, &token, next_action).await {
                    return e;
                }
            }
        }
    }
}

async fn apply_presence<N: Net>(
    c: &mut CloudConn<N>,
    token: &str,
    p: PresenceSettings,
) -> Result<(), String> {
    if p == PresenceSettings::default() {
        return Ok(());
    }
    let mut body = json!({"hidden": p.hidden, "out_of_office": p.out_of_office});
    if let Some(m) = p.dnd_minutes {
        body["dnd_minutes"] = json!(m);
    }
    call(c, Method::Put, "/v1/presence/me", Some(token), body)
        .await
        .map(|_| ())
}

/// Fetches activities missed while disconnected: every space the user is in (`GET /v1/me`,
/// so spaces created while offline are found too), after the last sequence seen.
async fn catch_up<N: Net>(
    d: &mut WebexSpec<N>,
    st: &mut State,
    c: &mut CloudConn<N>,
    token: &str,
) -> Result<(), String> {
    let me = call(c, Method::Get, "/v1/me", Some(token), Value::Null).await?;
    if let Some(spaces) = me["spaces"].as_array() {
        for sp in spaces {
            if let Some(id) = sp["space_id"].as_str() {
                st.seen.entry(id.to_string()).or_insert(0);
            }
        }
    }
    let spaces: Vec<(String, u64)> = st.seen.iter().map(|(k, v)| (k.clone(), *v)).collect();
    for (space, after) in spaces {
        let v = call(
            c,
            Method::Get,
            &format!("/v1/spaces/{space}/activities?after={after}"),
            Some(token),
            Value::Null,
        )
        .await?;
        let list: Vec<Activity> =
            serde_json::from_value(v["activities"].clone()).unwrap_or_default();
        for a in list {
            receive(d, st, c, token, a).await?;
        }
    }
    Ok(())
}

async fn on_event<N: Net>(
    d: &mut WebexSpec<N>,
    st: &mut State,
    c: &mut CloudConn<N>,
    token: &str,
    ev: Event,
) -> Result<(), String> {
    match ev {
        Event::Activity { activity, .. } => receive(d, st, c, token, *activity).await,
        Event::Typing {
            actor,
            typing: true,
            ..
        } if actor != d.email => {
            d.recorder.note("webex: typing indication received");
            Ok(())
        }
        _ => Ok(()),
    }
}

async fn key_for<N: Net>(
    st: &mut State,
    c: &mut CloudConn<N>,
    token: &str,
    space: &str,
) -> Result<SpaceKey, String> {
    if let Some(k) = st.keys.get(space) {
        return Ok(k.clone());
    }
    let info = call(
        c,
        Method::Get,
        &format!("/v1/spaces/{space}"),
        Some(token),
        Value::Null,
    )
    .await?;
    let uri = info["key_uri"].as_str().unwrap_or_default().to_string();
    let k = call(
        c,
        Method::Post,
        "/v1/kms/keys",
        Some(token),
        json!({"uri": uri}),
    )
    .await?;
    let bytes = k["key"]
        .as_str()
        .and_then(|s| {
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s).ok()
        })
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or("bad key from KMS")?;
    let key = SpaceKey { uri, bytes };
    st.keys.insert(space.to_string(), key.clone());
    Ok(key)
}

/// Records an activity from someone else; our own echoes only advance the catch-up mark.
async fn receive<N: Net>(
    d: &mut WebexSpec<N>,
    st: &mut State,
    c: &mut CloudConn<N>,
    token: &str,
    a: Activity,
) -> Result<(), String> {
    let seen = st.seen.get(&a.space_id).copied().unwrap_or(0);
    if a.seq <= seen && a.seq != 0 {
        return Ok(()); // already seen (catch-up overlap)
    }
    // The catch-up mark advances only once the activity is handled: if a key fetch fails
    // here, the session ends and the catch-up after re-login fetches it again.
    handle(d, st, c, token, &a).await?;
    let mark = st.seen.entry(a.space_id.clone()).or_insert(0);
    *mark = a.seq.max(*mark);
    Ok(())
}

async fn handle<N: Net>(
    d: &mut WebexSpec<N>,
    st: &mut State,
    c: &mut CloudConn<N>,
    token: &str,
    a: &Activity,
) -> Result<(), String> {
    if a.actor == d.email {
        return Ok(());
    }
    match a.verb {
        Verb::Post | Verb::Share => {
            let key = key_for(st, c, token, &a.space_id).await?;
            let Some(ct) = a.encrypted_text.as_deref() else {
                return Ok(());
            };
            let plain = match jwe::decrypt(&key, ct) {
                Ok(p) => String::from_utf8_lossy(&p).into_owned(),
                Err(_) => {
                    d.recorder.note("webex: undecryptable activity");
                    return Ok(());
                }
            };
            let id = tag_of(&plain)
                .map(str::to_string)
                .unwrap_or_else(|| a.id.clone());
            if a.verb == Verb::Share {
                d.recorder.note("webex: file received");
            }
            if a.edit_of.is_some() {
                d.recorder.note("webex: edit received");
            }
            st.last_received
                .insert(a.actor.clone(), (a.space_id.clone(), a.id.clone()));
            d.recorder.delivered(
                &d.host,
                Delivered {
                    id,
                    from: a.actor.clone(),
                    to: d.email.clone(),
                    device: d.device.clone(),
                    client: ClientKind::Webex,
                    delayed: false,
                    carbon: false,
                },
            );
        }
        Verb::Read => d.recorder.note("webex: read marker received"),
        Verb::Delete => d.recorder.note("webex: delete received"),
    }
    Ok(())
}

/// The direct space with `contact`, created on first use, with its key.
async fn space_with<N: Net>(
    st: &mut State,
    c: &mut CloudConn<N>,
    token: &str,
    me: &str,
    contact: &str,
) -> Result<(String, SpaceKey), String> {
    if let Some(s) = st.spaces.get(contact) {
        return Ok(s.clone());
    }
    let v = call(
        c,
        Method::Post,
        "/v1/spaces",
        Some(token),
        json!({"kind": "direct", "members": [me, contact]}),
    )
    .await?;
    let space = v["space_id"].as_str().unwrap_or_default().to_string();
    let key = key_for(st, c, token, &space).await?;
    st.seen.entry(space.clone()).or_insert(0);
    st.spaces
        .insert(contact.to_string(), (space.clone(), key.clone()));
    Ok((space, key))
}

/// One scheduled action, then the next one is drawn.
async fn act<N: Net>(
    d: &mut WebexSpec<N>,
    st: &mut State,
    c: &mut CloudConn<N>,
    token: &str,
    next: &mut Option<Duration>,
) -> Result<(), String> {
    let Some(plan) = d.plan.clone() else {
        *next = None;
        return Ok(());
    };
    let now = d.net.now();
    if now >= plan.stop || plan.contacts.is_empty() {
        *next = None;
        return Ok(());
    }
    *next = Some(now + crate::exp_wait(plan.mean_interval, &mut d.rng));
    let contact = plan.contacts[d.rng.random_range(0..plan.contacts.len())].clone();
    let (space, key) = space_with(st, c, token, &d.email.clone(), &contact).await?;
    let m = plan.mix;
    let x: f64 = d.rng.random_range(0.0..1.0);
    let edge = |k: usize| {
        [m.text, m.edit, m.delete, m.file, m.typing]
            .iter()
            .take(k)
            .sum::<f64>()
    };
    let last = st.last_post.get(&contact).cloned();
    let path = format!("/v1/spaces/{space}/activities");
    if x < edge(1) || (x < edge(3) && last.is_none()) {
        post_text(d, st, c, token, &contact, &space, &key, None).await
    } else if x < edge(2) {
        post_text(d, st, c, token, &contact, &space, &key, last).await
    } else if x < edge(3) {
        let target = last.expect("checked above");
        st.last_post.remove(&contact);
        d.recorder.note("webex: delete sent");
        call(
            c,
            Method::Post,
            &path,
            Some(token),
            json!({"verb": "delete", "target": target}),
        )
        .await
        .map(|_| ())
    } else if x < edge(4) {
        share_file(d, st, c, token, &contact, &space, &key).await
    } else if x < edge(5) {
        d.recorder.note("webex: typing sent");
        let p = format!("/v1/spaces/{space}/typing");
        call(c, Method::Post, &p, Some(token), json!({"typing": true})).await?;
        tokio::time::sleep(TYPING_FOR).await;
        call(c, Method::Post, &p, Some(token), json!({"typing": false}))
            .await
            .map(|_| ())
    } else {
        // Mark the conversation with this contact read, or else the latest one that has news.
        let last = st
            .last_received
            .get(&contact)
            .or_else(|| st.last_received.values().next_back());
        let Some((sp, target)) = last.cloned() else {
            return Ok(());
        };
        d.recorder.note("webex: read sent");
        call(
            c,
            Method::Post,
            &format!("/v1/spaces/{sp}/activities"),
            Some(token),
            json!({"verb": "read", "target": target}),
        )
        .await
        .map(|_| ())
    }
}

#[allow(clippy::too_many_arguments)] // the eight facts of one post; a struct would only rename them
async fn post_text<N: Net>(
    d: &mut WebexSpec<N>,
    st: &mut State,
    c: &mut CloudConn<N>,
    token: &str,
    contact: &str,
    space: &str,
    key: &SpaceKey,
    edit_of: Option<String>,
) -> Result<(), String> {
    let id = new_message(d, st, contact);
    let words = d.rng.random_range(1..10);
    let text = (0..words)
        .map(|_| WORDS[d.rng.random_range(0..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ");
    let text = format!("{text} [[{id}]]");
    let mut iv = [0u8; 12];
    d.rng.fill(&mut iv);
    let ct = jwe::encrypt(key, iv, text.as_bytes());
    let verb = if edit_of.is_some() { "edit" } else { "post" };
    let mut body = json!({"verb": verb, "encrypted_text": ct, "client_id": id});
    if let Some(t) = &edit_of {
        body["target"] = json!(t);
        d.recorder.note("webex: edit sent");
    }
    let v = post_activity(st, c, token, space, body).await?;
    // An edit answers the new post and the delete; the post is the one to edit next time.
    let new_id = v["activities"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["verb"] == "post"))
        .and_then(|x| x["id"].as_str())
        .map(str::to_string);
    if let Some(new_id) = new_id {
        st.last_post.insert(contact.to_string(), new_id);
    }
    Ok(())
}

/// A fresh message id (unique per user, device and incarnation), recorded as sent to
/// `contact`: the observer follows it by its `[[id]]` tag.
fn new_message<N: Net>(d: &mut WebexSpec<N>, st: &mut State, contact: &str) -> String {
    st.seq += 1;
    let user = d.email.split('@').next().unwrap_or("w");
    let id = format!("{user}.{}.{}", d.device, st.seq);
    let sent = Sent {
        id: id.clone(),
        from: d.email.clone(),
        to: contact.to_string(),
        client: ClientKind::Webex,
        device: d.device.clone(),
    };
    d.recorder.sent(&d.host, sent);
    id
}

async fn share_file<N: Net>(
    d: &mut WebexSpec<N>,
    st: &mut State,
    c: &mut CloudConn<N>,
    token: &str,
    contact: &str,
    space: &str,
    key: &SpaceKey,
) -> Result<(), String> {
    let id = new_message(d, st, contact);
    let file = json!({"url": format!("https://files.webex.example/f/{}", st.seq), "name": format!("notes [[{id}]].pdf")});
    let mut iv = [0u8; 12];
    d.rng.fill(&mut iv);
    let ct = jwe::encrypt(key, iv, file.to_string().as_bytes());
    d.recorder.note("webex: file sent");
    let body = json!({"verb": "share", "encrypted_text": ct, "client_id": id});
    post_activity(st, c, token, space, body).await.map(|_| ())
}

/// Posts an activity; if the cloud does not take it, keeps it for re-sending after the next
/// login and ends the session (the caller reconnects with backoff).
async fn post_activity<N: Net>(
    st: &mut State,
    c: &mut CloudConn<N>,
    token: &str,
    space: &str,
    body: Value,
) -> Result<Value, String> {
    let path = format!("/v1/spaces/{space}/activities");
    match call(c, Method::Post, &path, Some(token), body.clone()).await {
        Ok(v) => Ok(v),
        Err(e) => {
            if st.outbox.len() >= OUTBOX_MAX {
                st.outbox.pop_front();
            }
            st.outbox.push_back((path, body));
            Err(e)
        }
    }
}

/// Re-sends the posts a previous session could not deliver, oldest first.
async fn flush_outbox<N: Net>(
    st: &mut State,
    c: &mut CloudConn<N>,
    token: &str,
) -> Result<(), String> {
    while let Some((path, body)) = st.outbox.front().cloned() {
        call(c, Method::Post, &path, Some(token), body).await?;
        st.outbox.pop_front();
    }
    Ok(())
}

/// A Webex group space one user creates and posts to (spec 42): 3+ members, possibly Hybrid
/// Message users on Jabber. The cloud never routes group spaces to a connector, so nothing of
/// it reaches Jabber, and no read receipts come from those users.
pub struct GroupSpaceSpec<N: Net> {
    /// Network backend.
    pub net: N,
    /// Farm host name (for records).
    pub host: String,
    /// Cloud host and port.
    pub cloud: (String, u16),
    /// The creator's email.
    pub email: String,
    /// The creator's password.
    pub password: String,
    /// The other members' emails.
    pub members: Vec<String>,
    /// When the space is created.
    pub at: Duration,
    /// Mean time between posts (exponential).
    pub mean_interval: Duration,
    /// Posting stops at this time.
    pub stop: Duration,
    /// The device name for records (a second Webex device of the creator).
    pub device: String,
    /// This space's RNG.
    pub rng: ChaCha8Rng,
    /// Where to report.
    pub recorder: Rc<dyn Recorder>,
}

/// Runs one group space: create it at `at`, post tagged texts until `stop`. Failures are
/// retried with backoff (a lost post's `client_id` makes the retry idempotent).
pub async fn run_group_space<N: Net>(mut d: GroupSpaceSpec<N>) {
    tokio::time::sleep(d.at.saturating_sub(d.net.now())).await;
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let mut st = GroupSpaceState::default();
    while d.net.now() < d.stop || st.pending.is_some() {
        match group_space_session(&mut d, &mut st, &mut backoff).await {
            Ok(()) => return,
            Err(e) => {
                d.recorder.note("webex: group space session failed");
                tracing::debug!(email = %d.email, error = %e, "group space session failed");
                tokio::time::sleep(backoff.next_delay(&mut d.rng)).await;
            }
        }
    }
}

/// What a group space's poster keeps across sessions.
#[derive(Default)]
struct GroupSpaceState {
    /// The space and its key, once created.
    space: Option<(String, SpaceKey)>,
    /// Posts made.
    seq: u64,
    /// The post not yet acknowledged by the cloud: (tag, body), re-sent after a reconnect.
    pending: Option<(String, Value)>,
}

/// Logs in, creates the space if need be, then posts until `stop`.
async fn group_space_session<N: Net>(
    d: &mut GroupSpaceSpec<N>,
    st: &mut GroupSpaceState,
    backoff: &mut Backoff,
) -> Result<(), String> {
    let mut c = CloudConn::connect(d.net.clone(), d.cloud.clone()).await?;
    let login = json!({"email": d.email, "password": d.password});
    let v = call(&mut c, Method::Post, "/v1/login", None, login).await?;
    let token = v["token"].as_str().unwrap_or_default().to_string();
    backoff.reset();
    let (id, key) = match st.space.clone() {
        Some(s) => s,
        None => {
            let mut members = vec![d.email.clone()];
            members.extend(d.members.iter().cloned());
            let body = json!({"kind": "group", "members": members});
            let v = call(&mut c, Method::Post, "/v1/spaces", Some(&token), body).await?;
            let id = v["space_id"].as_str().unwrap_or_default().to_string();
            let key = key_for(&mut State::default(), &mut c, &token, &id).await?;
            d.recorder.group(
                &d.host,
                GroupEvent {
                    room: id.clone(),
                    user: d.email.clone(),
                    device: d.device.clone(),
                    kind: GroupEventKind::SpaceCreated { members },
                },
            );
            st.space = Some((id.clone(), key.clone()));
            (id, key)
        }
    };
    let path = format!("/v1/spaces/{id}/activities");
    loop {
        if let Some((_, body)) = st.pending.clone() {
            call(&mut c, Method::Post, &path, Some(&token), body).await?;
            st.pending = None;
        }
        let now = d.net.now();
        if now >= d.stop {
            return Ok(());
        }
        tokio::time::sleep(crate::exp_wait(d.mean_interval, &mut d.rng)).await;
        if d.net.now() >= d.stop {
            return Ok(());
        }
        st.seq += 1;
        let user = d.email.split('@').next().unwrap_or("w");
        let tag = format!("{GROUP_SPACE_TAG_PREFIX}{user}.{}.{}", d.device, st.seq);
        let mut iv = [0u8; 12];
        d.rng.fill(&mut iv);
        let ct = jwe::encrypt(&key, iv, format!("hello all [[{tag}]]").as_bytes());
        let body = json!({"verb": "post", "encrypted_text": ct, "client_id": tag});
        st.pending = Some((tag.clone(), body));
        let kind = GroupEventKind::SpacePosted { id: tag };
        let ev = GroupEvent {
            room: id.clone(),
            user: d.email.clone(),
            device: d.device.clone(),
            kind,
        };
        d.recorder.group(&d.host, ev);
    }
}

/// Vocabulary for generated texts.
const WORDS: [&str; 12] = [
    "sure", "sounds", "good", "see", "the", "deck", "before", "noon", "thanks", "on", "my", "way",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_found_anywhere() {
        assert_eq!(tag_of("hello [[alice.w.3]] there"), Some("alice.w.3"));
        assert_eq!(tag_of("notes [[a.1]].pdf: https://x/f/1"), Some("a.1"));
        assert_eq!(tag_of("no tag"), None);
        assert_eq!(tag_of("[[unclosed"), None);
    }
}
