//! The Webex App user's task: logs in, keeps the event socket open, catches up over REST, and
//! carries out the actions its [`WebexCore`] draws; reconnects with seeded backoff.

use super::core::{Action, Observation, PostAnswer, Unsent, WebexCore, fate_of};
use super::{BACKOFF_MAX, BACKOFF_MIN, CONNECT_TIMEOUT, PresenceSettings, TYPING_FOR, WebexPlan};
use crate::observe::{GROUP_SPACE_TAG_PREFIX, GroupEvent, GroupEventKind, PostFate, Recorder};
use connector::core::limiter::Backoff;
use connector::io::http::{ClientError, EventClient, HttpClient, ws_connect};
use connector::io::net::Net;
use connector::proto::http::Method;
use connector::proto::jwe::{self, SpaceKey};
use connector::proto::webex::{Activity, Event};
use rand::RngExt as _;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::rc::Rc;
use std::time::Duration;

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

/// Runs a Webex user forever.
pub async fn run_webex<N: Net>(mut d: WebexSpec<N>) {
    tokio::time::sleep(d.login_at.saturating_sub(d.net.now())).await;
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let mut st = WebexCore::default();
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
    st: &mut WebexCore,
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
    // A real app sends what it holds once it is connected, whatever its catch-up makes of
    // the spaces: a catch-up failing at every login kept the outbox unsent until a farm
    // bounce wiped it (explore seed 5779).
    let caught_up = catch_up(d, st, &mut c, &token).await;
    let flushed = flush_outbox(d, st, &mut c, &token).await;
    if let Err(e) = caught_up.and(flushed) {
        return e;
    }
    loop {
        let wait = next_action.map_or(Duration::from_secs(3600), |t| t.saturating_sub(d.net.now()));
        tokio::select! {
            biased;
            ev = events.rx.recv() => {
                let handled = match ev.unwrap_or_else(|| Err("reader ended".into())) {
                    Ok(ev) => on_event(d, st, &mut c, &token, ev).await,
                    Err(e) => Err(format!("event socket: {e}")),
                };
                if let Err(e) = handled {
                    return e;
                }
            }
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
    st: &mut WebexCore,
    c: &mut CloudConn<N>,
    token: &str,
) -> Result<(), String> {
    let me = call(c, Method::Get, "/v1/me", Some(token), Value::Null).await?;
    if let Some(spaces) = me["spaces"].as_array() {
        for sp in spaces {
            if let Some(id) = sp["space_id"].as_str() {
                st.know_space(id);
            }
        }
    }
    for (space, after) in st.catch_up_marks() {
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
    st: &mut WebexCore,
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
    st: &mut WebexCore,
    c: &mut CloudConn<N>,
    token: &str,
    space: &str,
) -> Result<SpaceKey, String> {
    if let Some(k) = st.key(space) {
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
    st.add_key(space, key.clone());
    Ok(key)
}

/// Reports an activity from someone else (fetching its key first if need be); our own
/// echoes only advance the catch-up mark.
async fn receive<N: Net>(
    d: &mut WebexSpec<N>,
    st: &mut WebexCore,
    c: &mut CloudConn<N>,
    token: &str,
    a: Activity,
) -> Result<(), String> {
    if !st.is_new(&a) {
        return Ok(()); // already seen (catch-up overlap)
    }
    let key = if WebexCore::needs_key(&d.email, &a) {
        Some(key_for(st, c, token, &a.space_id).await?)
    } else {
        None
    };
    for o in st.read(&d.email, &d.device, &a, key.as_ref()) {
        match o {
            Observation::Note(n) => d.recorder.note(n),
            Observation::Delivered(m) => d.recorder.delivered(&d.host, m),
            Observation::Refused(r) => d.recorder.refused(&d.host, r),
        }
    }
    st.mark_seen(&a);
    Ok(())
}

/// The direct space with `contact`, created on first use, with its key.
async fn space_with<N: Net>(
    st: &mut WebexCore,
    c: &mut CloudConn<N>,
    token: &str,
    me: &str,
    contact: &str,
) -> Result<(String, SpaceKey), String> {
    if let Some(s) = st.space_with(contact) {
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
    st.add_space(contact, &space, key.clone());
    Ok((space, key))
}

/// One scheduled action, then the next one is drawn.
async fn act<N: Net>(
    d: &mut WebexSpec<N>,
    st: &mut WebexCore,
    c: &mut CloudConn<N>,
    token: &str,
    next: &mut Option<Duration>,
) -> Result<(), String> {
    let Some(plan) = d.plan.clone() else {
        *next = None;
        return Ok(());
    };
    let Some((at, contact)) = WebexCore::schedule(d.net.now(), &plan, &mut d.rng) else {
        *next = None;
        return Ok(());
    };
    *next = Some(at);
    let (space, key) = space_with(st, c, token, &d.email.clone(), &contact).await?;
    let path = format!("/v1/spaces/{space}/activities");
    match st.choose(&contact, plan.mix, &mut d.rng) {
        Action::Text { edit_of } => {
            let mut sent = st.new_message(&d.email, &d.device, &contact);
            let id = sent.id.clone();
            let edit = edit_of.as_deref();
            let (body, digest) =
                WebexCore::text_body(&id, &key, edit, plan.body.as_ref(), &mut d.rng);
            sent.body = Some(digest);
            d.recorder.sent(&d.host, sent);
            if edit_of.is_some() {
                d.recorder.note("webex: edit sent");
            }
            let v = post_activity(d, (st, c), token, (&space, &contact), body).await?;
            st.posted(&contact, &v);
            Ok(())
        }
        Action::Delete { target } => {
            d.recorder.note("webex: delete sent");
            let body = json!({"verb": "delete", "target": target});
            let (answer, _) = send_post(c, token, &path, &body, "delete").await;
            match answer {
                PostAnswer::Taken(_) => Ok(()),
                PostAnswer::Refused(e) | PostAnswer::Failed(e) => Err(e),
            }
        }
        Action::Share => {
            let sent = st.new_message(&d.email, &d.device, &contact);
            let id = sent.id.clone();
            d.recorder.sent(&d.host, sent);
            let body = st.share_body(&id, &key, &mut d.rng);
            d.recorder.note("webex: file sent");
            let to = (space.as_str(), contact.as_str());
            post_activity(d, (st, c), token, to, body).await.map(|_| ())
        }
        Action::Typing => typing(d, c, token, &space).await,
        Action::Read { space, target } => {
            d.recorder.note("webex: read sent");
            let body = json!({"verb": "read", "target": target});
            let p = format!("/v1/spaces/{space}/activities");
            call(c, Method::Post, &p, Some(token), body)
                .await
                .map(|_| ())
        }
        Action::Idle => Ok(()),
    }
}

/// A typing indication: on, then off [`TYPING_FOR`] later.
async fn typing<N: Net>(
    d: &mut WebexSpec<N>,
    c: &mut CloudConn<N>,
    token: &str,
    space: &str,
) -> Result<(), String> {
    d.recorder.note("webex: typing sent");
    let p = format!("/v1/spaces/{space}/typing");
    call(c, Method::Post, &p, Some(token), json!({"typing": true})).await?;
    tokio::time::sleep(TYPING_FOR).await;
    call(c, Method::Post, &p, Some(token), json!({"typing": false}))
        .await
        .map(|_| ())
}

/// Posts an activity towards `contact`. A post the cloud refused for good is dropped and
/// counted (the session goes on); one it did not take is kept for re-sending after the next
/// login and ends the session (the caller reconnects with backoff). `Null` when dropped.
async fn post_activity<N: Net>(
    d: &WebexSpec<N>,
    (st, c): (&mut WebexCore, &mut CloudConn<N>),
    token: &str,
    (space, contact): (&str, &str),
    body: Value,
) -> Result<Value, String> {
    let path = format!("/v1/spaces/{space}/activities");
    let (answer, fate) = send_post(c, token, &path, &body, "post").await;
    report_fate(d, &body, fate);
    match answer {
        PostAnswer::Taken(v) => Ok(v),
        PostAnswer::Refused(_) => {
            d.recorder.note(POST_DROPPED);
            st.refused(contact, &body);
            Ok(Value::Null)
        }
        PostAnswer::Failed(e) => {
            let contact = contact.to_string();
            st.keep_unsent(Unsent {
                contact,
                path,
                body,
            });
            Err(e)
        }
    }
}

/// The note counting posts the cloud refused for good, which the client dropped.
const POST_DROPPED: &str = "webex: post refused for good, dropped";

/// Sends one post and reads the answer, with a debug line (`how`: post, re-send); and what
/// it means for the message posted ([`fate_of`]).
async fn send_post<N: Net>(
    c: &mut CloudConn<N>,
    token: &str,
    path: &str,
    body: &Value,
    how: &str,
) -> (PostAnswer, PostFate) {
    let answer = c.request(Method::Post, path, Some(token), Some(body)).await;
    let fate = fate_of(&answer);
    let answer = PostAnswer::of(path, answer);
    log_post(path, body, &answer, how);
    (answer, fate)
}

/// Tells the observer what became of the message a post (`body`, by its `client_id`) carried.
fn report_fate<N: Net>(d: &WebexSpec<N>, body: &Value, fate: PostFate) {
    if let Some(id) = body["client_id"].as_str() {
        d.recorder.post_fate(&d.host, id, fate);
    }
}

/// One line per post (HMSIM_LOG=debug): which message (`client_id`), what the cloud answered
/// (the activity ids it stored, or the error).
fn log_post(path: &str, body: &Value, answer: &PostAnswer, how: &str) {
    let client_id = body["client_id"].as_str().unwrap_or_default();
    let (verb, target) = (body["verb"].as_str(), body["target"].as_str());
    match answer {
        PostAnswer::Taken(v) => {
            let ids: Vec<&str> = v["activities"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x["id"].as_str()).collect())
                .unwrap_or_default();
            tracing::debug!(
                how,
                path,
                client_id,
                ?verb,
                ?target,
                ?ids,
                "webex post taken"
            );
        }
        PostAnswer::Refused(e) => {
            tracing::debug!(how, path, client_id, ?verb, ?target, error = %e, "webex post refused for good, dropped");
        }
        PostAnswer::Failed(e) => {
            tracing::debug!(how, path, client_id, ?verb, ?target, error = %e, "webex post failed, kept");
        }
    }
}

/// Re-sends the posts a previous session could not deliver, oldest first; drops those the
/// cloud refuses for good.
async fn flush_outbox<N: Net>(
    d: &WebexSpec<N>,
    st: &mut WebexCore,
    c: &mut CloudConn<N>,
    token: &str,
) -> Result<(), String> {
    while let Some(u) = st.next_unsent() {
        let (answer, fate) = send_post(c, token, &u.path, &u.body, "re-send").await;
        report_fate(d, &u.body, fate);
        match st.resent(answer) {
            PostAnswer::Taken(_) => {}
            PostAnswer::Refused(_) => d.recorder.note(POST_DROPPED),
            PostAnswer::Failed(e) => return Err(e),
        }
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
            let key = key_for(&mut WebexCore::default(), &mut c, &token, &id).await?;
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
