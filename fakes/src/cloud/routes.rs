//! The REST handlers of [`Cloud`]: path matching, authentication, JSON in and out. The route
//! table is in the module doc of [`super`].

use super::api::{self, Event, Method, Subscriber};
use super::control_hub::{self, RegState};
use super::messaging::{self, NewActivity, Space, SpaceKind};
use super::org::{self, Entitlement};
use super::{
    Cloud, CloudError, KNOWN_USERS_PER_REQUEST_MAX, Pending, Principal, Step, connector_principal,
    ms,
};
use crate::kms::{KmsCall, KmsReply};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

type Answer = Result<(u16, Value), CloudError>;

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, CloudError> {
    let body = if body.is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| CloudError::BadJson(e.to_string()))
}

fn ok(v: Value) -> Answer {
    Ok((200, v))
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Decodes `%XX` escapes (clients may write `alice%40example.com`); a malformed escape is
/// kept as is.
fn percent_decode(seg: &str) -> String {
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `/a/b?x=1&y=2` into decoded segments and query pairs.
fn split_path(path: &str) -> (Vec<String>, Vec<(&str, &str)>) {
    let (p, q) = path.split_once('?').unwrap_or((path, ""));
    // Lowercase: emails are case-insensitive, and every id the cloud issues is lowercase.
    let segs = p
        .trim_start_matches('/')
        .split('/')
        .map(|seg| percent_decode(seg).to_lowercase())
        .collect();
    let query = q
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .collect();
    (segs, query)
}

/// The answer to a request no route takes: 405 on a known path, else 404.
fn unrouted(req: &api::Request, segs: &[&str]) -> Answer {
    let method = req.method.as_str().to_owned();
    let path = req.path.clone();
    if known_path(segs) {
        Err(CloudError::MethodNotAllowed { method, path })
    } else {
        Err(CloudError::NoRoute { method, path })
    }
}

/// Whether a path (ignoring the method) is one of the cloud's routes: for 405 versus 404.
fn known_path(segs: &[&str]) -> bool {
    matches!(
        segs,
        ["v1", "login" | "me" | "events"]
            | ["v1", "events", "redeliver"]
            | ["v1", "admin", "users" | "clusters"]
            | ["v1", "admin", "users", _]
            | [
                "v1",
                "admin",
                "users",
                _,
                "entitlements" | "reactivate" | "email"
            ]
            | ["v1", "admin", "clusters", _]
            | ["v1", "admin", "connectors", _]
            | ["v1", "admin", "connectors", _, "maintenance"]
            | [
                "v1",
                "connectors",
                "register" | "heartbeat" | "users" | "assignments" | "claims"
            ]
            | ["v1", "presence", "query" | "me"]
            | ["v1", "spaces"]
            | ["v1", "spaces", _]
            | ["v1", "spaces", _, "activities" | "typing" | "hold"]
            | ["v1", "kms", "keys"]
    )
}

impl Cloud {
    /// Dispatches one request: the routes that need the KMS answer a [`Step::Kms`].
    pub(super) fn route(&mut self, now: Duration, req: &api::Request) -> Result<Step, CloudError> {
        let (decoded, _) = split_path(&req.path);
        let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
        let body = req.body.as_slice();
        let token = req.token.as_deref();
        match (req.method, segs.as_slice()) {
            (Method::Post, ["v1", "spaces"]) => {
                let who = self.client_principal(now, token)?;
                self.create_space(&who, body)
            }
            (Method::Post, ["v1", "kms", "keys"]) => {
                let who = self.client_principal(now, token)?;
                self.fetch_key(&who, body)
            }
            (Method::Post, ["v1", "spaces", id, "hold"]) => {
                let who = self.client_principal(now, token)?;
                let (status, body) = self.release_hold(&who, id, body)?;
                Ok(Step::Done(status, body))
            }
            _ => self
                .route_now(now, req)
                .map(|(status, body)| Step::Done(status, body)),
        }
    }

    /// Dispatches a request answered without the KMS.
    fn route_now(&mut self, now: Duration, req: &api::Request) -> Answer {
        let (decoded, query) = split_path(&req.path);
        let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
        let body = req.body.as_slice();
        let token = req.token.as_deref();
        use Method::{Get, Post, Put};
        match (req.method, segs.as_slice()) {
            (Post, ["v1", "login"]) => self.login(body),
            (Post, ["v1", "connectors", "register"]) => self.register(now, token, body),
            (_, ["v1", "admin", rest @ ..]) => {
                self.admin_principal(token)?;
                self.admin(now, req.method, rest, body)
            }
            (m, ["v1", "connectors", op]) => self.route_connector(now, m, op, req),
            (Post, ["v1", "events", "redeliver"]) => {
                let id = self.registered_connector(token)?;
                let b: api::RedeliverBody = parse(body)?;
                self.redeliver(&id, &b)
            }
            (Get, ["v1", "me"]) => {
                let email = self.user_principal(now, token)?;
                self.me(&email)
            }
            (Put, ["v1", "presence", "me"]) => {
                let email = self.user_principal(now, token)?;
                self.set_presence(now, &email, body)
            }
            (Post, ["v1", "presence", "query"]) => {
                let who = self.client_principal(now, token)?;
                self.presence_query(now, &who, body)
            }
            (Get, ["v1", "spaces", id]) => {
                let who = self.client_principal(now, token)?;
                self.get_space(&who, id)
            }
            (Post, ["v1", "spaces", id, "activities"]) => {
                let who = self.client_principal(now, token)?;
                self.post_activity(now, &who, id, body)
            }
            (Get, ["v1", "spaces", id, "activities"]) => {
                let who = self.client_principal(now, token)?;
                self.list_activities(&who, id, &query)
            }
            (Post, ["v1", "spaces", id, "typing"]) => {
                let who = self.client_principal(now, token)?;
                self.typing(now, &who, id, body)
            }
            (_, s) => unrouted(req, s),
        }
    }

    /// `/v1/connectors/{op}` after registration: a connector's heartbeat, claims, user
    /// reports and assignment polls.
    fn route_connector(
        &mut self,
        now: Duration,
        method: Method,
        op: &str,
        req: &api::Request,
    ) -> Answer {
        let (body, token) = (req.body.as_slice(), req.token.as_deref());
        match (method, op) {
            (Method::Post, "heartbeat") => {
                let id = self.connector_principal(token)?;
                self.heartbeat(now, &id, body)
            }
            (Method::Post, "claims") => {
                let id = self.registered_connector(token)?;
                self.claim(&id, body)
            }
            (Method::Post, "users") => {
                let id = self.registered_connector(token)?;
                self.report_users(now, &id, body)
            }
            (Method::Get, "assignments") => {
                let id = self.registered_connector(token)?;
                self.bridge_log.assignments_answered(&id, now);
                ok(json!({ "connector_id": id, "users": self.assign.users_of(&id) }))
            }
            _ => unrouted(req, &["v1", "connectors", op]),
        }
    }

    // ---- authentication ----

    fn admin_principal(&self, token: Option<&str>) -> Result<(), CloudError> {
        match token {
            Some(t) if t == self.cfg.admin_token => Ok(()),
            _ => Err(CloudError::Unauthorized),
        }
    }

    pub(super) fn connector_principal(&self, token: Option<&str>) -> Result<String, CloudError> {
        token
            .and_then(|t| self.hub.connector_by_token(t))
            .map(|c| c.id.clone())
            .ok_or(CloudError::Unauthorized)
    }

    fn registered_connector(&self, token: Option<&str>) -> Result<String, CloudError> {
        let id = self.connector_principal(token)?;
        match self.hub.connector(&id).map(|c| c.state) {
            Some(RegState::Registered) => Ok(id),
            _ => Err(CloudError::Conflict(format!(
                "{id}: registration in progress"
            ))),
        }
    }

    /// A user token: the user is active on Webex now.
    fn user_principal(&mut self, now: Duration, token: Option<&str>) -> Result<String, CloudError> {
        let email = token
            .and_then(|t| self.user_tokens.get(t))
            .cloned()
            .ok_or(CloudError::Unauthorized)?;
        self.presence.touch(now, &email);
        Ok(email)
    }

    /// A user or a registered connector.
    fn client_principal(
        &mut self,
        now: Duration,
        token: Option<&str>,
    ) -> Result<Principal, CloudError> {
        if let Ok(email) = self.user_principal(now, token) {
            return Ok(Principal::User(email));
        }
        self.registered_connector(token).map(Principal::Connector)
    }

    /// The member on whose behalf `who` acts in `space_id`: the user itself, or for a connector
    /// the named `actor`, who must be a member, in a space where the connector serves a member.
    fn actor_in_space(
        &self,
        who: &Principal,
        space_id: &str,
        actor: Option<&str>,
    ) -> Result<String, CloudError> {
        let space = self
            .msg
            .space(space_id)
            .ok_or_else(|| CloudError::NotFound(format!("space {space_id}")))?;
        let actor = match (who, actor) {
            (Principal::User(me), None) => me.clone(),
            (Principal::User(me), Some(a)) if a == me => me.clone(),
            (Principal::User(_), Some(a)) => {
                return Err(CloudError::Forbidden(format!("a user cannot act as {a}")));
            }
            (Principal::Connector(_), None) => {
                return Err(CloudError::Invalid(
                    "a connector must name the actor".into(),
                ));
            }
            (Principal::Connector(_), Some(a)) => a.to_owned(),
        };
        if !space.members.contains(&actor) {
            return Err(CloudError::Forbidden(format!(
                "{actor} is not a member of {space_id}"
            )));
        }
        if let Principal::Connector(id) = who
            && !self.serves_a_member(id, &space.members)
        {
            return Err(CloudError::Forbidden(format!(
                "{id} serves no member of {space_id}"
            )));
        }
        Ok(actor)
    }

    pub(super) fn serves_a_member(&self, connector: &str, members: &[String]) -> bool {
        members.iter().any(|m| {
            self.assign.node_of(m) == Some(connector)
                || self
                    .grace_end(m, connector)
                    .is_some_and(|end| self.clock < end)
        })
    }

    /// When the grace of `node` for `member`, who was moved off it, ends (or ended):
    /// [`super::RELEASE_GRACE`] after the move.
    fn grace_end(&self, member: &str, node: &str) -> Option<Duration> {
        let at = self.released.get(member)?.get(node)?;
        Some(*at + super::RELEASE_GRACE)
    }

    // ---- login ----

    fn login(&mut self, body: &[u8]) -> Answer {
        let mut b: api::LoginBody = parse(body)?;
        b.email = b.email.to_lowercase();
        if !self.org.check_password(&b.email, &b.password) {
            return Err(CloudError::WrongPassword);
        }
        self.stats.logins += 1;
        let token = match self.token_of_user.get(&b.email) {
            Some(t) => t.clone(),
            None => {
                let t = control_hub::draw_token(&mut self.rng, "usr-");
                self.user_tokens.insert(t.clone(), b.email.clone());
                self.token_of_user.insert(b.email.clone(), t.clone());
                t
            }
        };
        ok(json!({ "token": token, "email": b.email }))
    }

    fn me(&self, email: &str) -> Answer {
        let spaces: Vec<Value> = self
            .msg
            .spaces_of(email)
            .iter()
            .filter_map(|id| self.msg.space(id))
            .map(|s| json!({ "space_id": s.id, "unread": s.unread(email) }))
            .collect();
        let state = self.org.user(email).map(|u| u.state);
        ok(json!({ "email": email, "state": to_json(&state), "spaces": spaces }))
    }

    // ---- Control Hub (admin) ----

    fn admin(&mut self, now: Duration, method: Method, rest: &[&str], body: &[u8]) -> Answer {
        use Method::{Get, Post, Put};
        match (method, rest) {
            (Post, ["users"]) => {
                let mut b: api::AddUserBody = parse(body)?;
                b.email = b.email.to_lowercase();
                self.org.add_user(&b.email, &b.password)?;
                if !b.entitlements.is_empty() {
                    self.set_entitlements(now, &b.email, b.entitlements)?;
                }
                Ok((201, self.user_view(&b.email)?))
            }
            (Get, ["users", email]) => ok(self.user_view(email)?),
            (Put, ["users", email, "entitlements"]) => {
                let b: api::EntitlementsBody = parse(body)?;
                self.set_entitlements(now, email, b.entitlements)?;
                ok(self.user_view(email)?)
            }
            (Post, ["users", email, "reactivate"]) => {
                let events = self.org.reactivate(now, email, &mut self.rng)?;
                self.note("cloud: user reactivated", 1);
                events.into_iter().for_each(|e| self.on_org_event(e));
                ok(self.user_view(email)?)
            }
            (Post, ["users", email, "email"]) => {
                let b: api::ChangeEmailBody = parse(body)?;
                let due = self.org.change_email(
                    now,
                    email,
                    &b.new_email.to_lowercase(),
                    &mut self.rng,
                )?;
                ok(json!({ "pickup_at_ms": ms(due) }))
            }
            (Post, ["clusters"]) => self.create_cluster(body),
            (Get, ["clusters", name]) => self.cluster_view(name),
            (Get, ["connectors", id]) => self.connector_view(id),
            (Put, ["connectors", id, "maintenance"]) => {
                let b: api::MaintenanceBody = parse(body)?;
                self.set_maintenance(id, b.on)
            }
            (m, s) => {
                let path = format!("/v1/admin/{}", s.join("/"));
                let mut full = vec!["v1", "admin"];
                full.extend_from_slice(s);
                if known_path(&full) {
                    Err(CloudError::MethodNotAllowed {
                        method: m.as_str().to_owned(),
                        path,
                    })
                } else {
                    Err(CloudError::NoRoute {
                        method: m.as_str().to_owned(),
                        path,
                    })
                }
            }
        }
    }

    fn set_entitlements(
        &mut self,
        now: Duration,
        email: &str,
        list: Vec<Entitlement>,
    ) -> Result<(), CloudError> {
        let set: BTreeSet<Entitlement> = list.into_iter().collect();
        let events = self.org.set_entitlements(now, email, set)?;
        events.into_iter().for_each(|e| self.on_org_event(e));
        Ok(())
    }

    fn user_view(&self, email: &str) -> Result<Value, CloudError> {
        let u = self
            .org
            .user(email)
            .ok_or_else(|| CloudError::NotFound(format!("user {email}")))?;
        Ok(json!({
            "email": u.email,
            "entitlements": to_json(&u.entitlements),
            "state": to_json(&u.state),
            "reason": u.reason,
            "history": to_json(&u.history),
            "assigned_to": self.assign.node_of(email),
        }))
    }

    fn create_cluster(&mut self, body: &[u8]) -> Answer {
        let b: api::CreateClusterBody = parse(body)?;
        if super::assignment::node_capacity(b.size, b.coresidency, 1).is_none() {
            return Err(CloudError::Invalid(format!(
                "no documented capacity for {:?} with {:?}",
                b.size, b.coresidency
            )));
        }
        let token =
            self.hub
                .create_cluster(&b.name, b.size, b.coresidency, &b.hostnames, &mut self.rng)?;
        if self.assign.cluster_status(&b.name).is_none() {
            self.assign.add_cluster(&b.name, b.size, b.coresidency)?;
        }
        Ok((
            201,
            json!({ "cluster": b.name, "registration_token": token }),
        ))
    }

    fn cluster_view(&self, name: &str) -> Answer {
        let status = self
            .assign
            .cluster_status(name)
            .ok_or_else(|| CloudError::NotFound(format!("cluster {name}")))?;
        let mut v = to_json(&status);
        v["unassigned_users"] = json!(self.assign.unassigned_count());
        ok(v)
    }

    fn connector_view(&self, id: &str) -> Answer {
        let c = self
            .hub
            .connector(id)
            .ok_or_else(|| CloudError::NotFound(format!("connector {id}")))?;
        let status: Value = c
            .status
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null);
        ok(json!({
            "connector_id": c.id,
            "cluster": c.cluster,
            "primary": c.primary,
            "state": to_json(&c.state),
            "up": c.up,
            "maintenance": c.maintenance,
            "assigned": self.assign.users_of(id).len(),
            "status": status,
        }))
    }

    fn set_maintenance(&mut self, id: &str, on: bool) -> Answer {
        let changed = self.hub.set_maintenance(id, on)?;
        if changed {
            let moves = self.assign.set_maintenance(id, on);
            let (placed, stranded) = super::split_moves(&moves);
            if on {
                self.note("cloud: users drained for maintenance", placed);
                self.note("cloud: users unassigned by maintenance (no room)", stranded);
            } else {
                self.note("cloud: users back after maintenance", moves.len());
            }
            self.apply_moves(moves);
            self.push(
                Subscriber::Connector(id.to_owned()),
                Event::Maintenance {
                    connector_id: id.to_owned(),
                    on,
                },
            );
        }
        ok(json!({ "connector_id": id, "maintenance": on }))
    }

    // ---- connectors ----

    fn register(&mut self, now: Duration, token: Option<&str>, body: &[u8]) -> Answer {
        let b: api::RegisterBody = parse(body)?;
        let reg = self
            .hub
            .register(now, token, &b.hostname, b.primary, &mut self.rng)
            .inspect_err(|e| self.note_refusal(e, token, &b.hostname))?;
        self.stats.registrations += 1;
        Ok((202, to_json(&reg)))
    }

    /// Counts why Control Hub refused a registration (spec 11-12).
    fn note_refusal(&mut self, e: &CloudError, token: Option<&str>, hostname: &str) {
        let what = match e {
            CloudError::Unauthorized if token.is_none_or(str::is_empty) => {
                "cloud: registration refused (no token)"
            }
            CloudError::Unauthorized => "cloud: registration refused (unknown token)",
            CloudError::Invalid(_) if hostname.chars().any(|c| c.is_ascii_uppercase()) => {
                "cloud: registration refused (hostname has capitals)"
            }
            CloudError::Forbidden(why) if why.contains("already used") => {
                "cloud: registration refused (token already used)"
            }
            CloudError::Forbidden(_) => "cloud: registration refused (token not for this host)",
            _ => "cloud: registration refused (other)",
        };
        self.note(what, 1);
    }

    fn heartbeat(&mut self, now: Duration, id: &str, body: &[u8]) -> Answer {
        let b: api::HeartbeatBody = parse(body)?;
        let status = b.status.map(|s| s.to_string());
        let events = self.hub.heartbeat(now, id, status)?;
        self.stats.heartbeats += 1;
        events.into_iter().for_each(|e| self.on_hub_event(e));
        let c = self
            .hub
            .connector(id)
            .ok_or_else(|| CloudError::NotFound(format!("connector {id}")))?;
        // The shares of the cluster's other nodes that are up: Expressway peers replicate
        // their status among themselves; here the cloud carries it (spec 69-71).
        let peers: Vec<Value> = self
            .hub
            .connectors()
            .filter(|p| p.cluster == c.cluster && p.id != id && p.up)
            .filter_map(|p| {
                let status: Value = serde_json::from_str(p.status.as_deref()?).ok()?;
                Some(json!({"id": p.id, "share": status.get("share")?.clone()}))
            })
            .collect();
        ok(json!({
            "connector_id": id,
            "state": to_json(&c.state),
            "up": c.up,
            "maintenance": c.maintenance,
            "peers": peers,
        }))
    }

    fn report_users(&mut self, now: Duration, id: &str, body: &[u8]) -> Answer {
        let mut b: api::KnownUsersBody = parse(body)?;
        // IM&P mailids may carry capitals; Webex emails match case-insensitively (spec 24).
        for u in b.add.iter_mut().chain(b.remove.iter_mut()) {
            u.email = u.email.to_lowercase();
        }
        if b.add.len() + b.remove.len() > KNOWN_USERS_PER_REQUEST_MAX {
            return Err(CloudError::Invalid(format!(
                "at most {KNOWN_USERS_PER_REQUEST_MAX} users per report; send chunks"
            )));
        }
        for u in b.add.iter().chain(&b.remove) {
            org::validate_email(&u.email)?;
        }
        let cluster = self
            .assign
            .cluster_of(id)
            .ok_or_else(|| CloudError::NotFound(format!("connector {id}")))?
            .to_owned();
        let moves = self.assign.report_users(&cluster, &b.add, &b.remove)?;
        let n = moves.len();
        self.apply_moves(moves);
        // An Active user whose Mail ID this report makes a duplicate (spec 25).
        for u in &b.add {
            if self.assign.lookup(&u.email) == org::Lookup::Duplicate {
                for e in self.org.became_duplicate(now, &u.email) {
                    self.on_org_event(e);
                }
            }
        }
        ok(json!({ "moves": n }))
    }

    // ---- presence ----

    fn set_presence(&mut self, now: Duration, email: &str, body: &[u8]) -> Answer {
        let b: api::SetPresenceBody = parse(body)?;
        match b.dnd_minutes {
            Some(0) => self.presence.clear_dnd(email),
            Some(m) => {
                let d = Duration::from_secs(m.saturating_mul(60));
                self.presence.set_dnd(now, email, d)?;
            }
            None => {}
        }
        if let Some(on) = b.out_of_office {
            self.presence.set_out_of_office(email, on);
        }
        if let Some(on) = b.hidden {
            self.presence.set_hidden(email, on);
        }
        ok(to_json(&self.presence.state(now, email)))
    }

    fn presence_query(&mut self, now: Duration, who: &Principal, body: &[u8]) -> Answer {
        let b: api::PresenceQueryBody = parse(body)?;
        let emails: Vec<String> = b.emails.iter().map(|e| e.to_lowercase()).collect();
        let states = self.presence.query(now, &emails)?;
        if let Principal::Connector(node) = who {
            // What the node now knows of each user's use of Webex with Jabber (spec 70).
            for st in &states {
                if let Some(used) = st.last_interop_ms {
                    let used = Duration::from_millis(used);
                    self.bridge_log.told(&st.email, node, now, used);
                }
            }
        }
        self.stats.presence_queries += 1;
        self.stats.presence_emails += states.len() as u64;
        ok(json!({ "states": to_json(&states) }))
    }

    // ---- messaging ----

    fn create_space(&mut self, who: &Principal, body: &[u8]) -> Result<Step, CloudError> {
        let b: api::CreateSpaceBody = parse(body)?;
        let members: Vec<String> = b.members.iter().map(|m| m.to_lowercase()).collect();
        let members = messaging::Messaging::check_members(b.kind, &members)?;
        for m in &members {
            if self.org.user(m).is_none() {
                // Spec 31: only users of the same organization interoperate.
                return Err(CloudError::NotFound(format!(
                    "user {m} in this organization"
                )));
            }
        }
        match who {
            Principal::User(me) if !members.contains(me) => {
                return Err(CloudError::Forbidden("the creator must be a member".into()));
            }
            Principal::Connector(id) if !self.serves_a_member(id, &members) => {
                return Err(CloudError::Forbidden(format!("{id} serves no member")));
            }
            _ => {}
        }
        if let (Principal::Connector(id), Some(since), SpaceKind::Direct) =
            (who, b.held_since_ms, b.kind)
        {
            let pair = (members[0].clone(), members[1].clone());
            let (now, since) = (self.clock, Duration::from_millis(since));
            self.holds.take(now, id, pair.clone(), since);
            let space = self.msg.direct_space(&members[0], &members[1]);
            let unposted = unposted_left(space, &b.unposted);
            self.holds.declare(now, id, &pair, unposted);
        }
        if b.kind == SpaceKind::Direct
            && let Some(s) = self.msg.direct_space(&members[0], &members[1])
        {
            return Ok(Step::Done(200, space_json(s, false)));
        }
        let space_id = self.msg.next_space_id();
        // A node that a member was just moved away from may still post what it had in flight
        // for them (RELEASE_GRACE), whoever creates the space: it needs the key too, until its
        // grace is over (explore seed 11379: the new node created the space and the old one,
        // holding the member's message, was refused the key).
        let mut granted = self.serving_nodes(&members);
        granted.extend(self.graced_nodes(&members));
        if let Principal::Connector(id) = who {
            granted.push(id.clone());
        }
        granted.sort();
        granted.dedup();
        let mut principals = members.clone();
        principals.extend(granted.iter().map(|n| connector_principal(n)));
        principals.sort();
        principals.dedup();
        Ok(Step::Kms(
            KmsCall::CreateKey {
                space_id,
                principals,
            },
            Pending::CreateSpace {
                kind: b.kind,
                members,
                granted,
            },
        ))
    }

    /// The connector nodes a member of `members` was moved away from within
    /// [`super::RELEASE_GRACE`], which may still post for them.
    fn graced_nodes(&self, members: &[String]) -> Vec<String> {
        members
            .iter()
            .filter_map(|m| self.released.get(m))
            .flatten()
            .filter(|(_, at)| self.clock < **at + super::RELEASE_GRACE)
            .map(|(node, _)| node.clone())
            .collect()
    }

    /// The connector nodes serving a member of `members` now, sorted.
    fn serving_nodes(&self, members: &[String]) -> Vec<String> {
        let mut nodes: Vec<String> = members
            .iter()
            .filter_map(|m| self.assign.node_of(m))
            .map(str::to_owned)
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// Brings the key access of a space just created up to date with the assignments. Its key
    /// was made for `granted` (the nodes serving a member when the space was asked for, and a
    /// released creator), but a member assigned or moved while the KMS made the key was moved
    /// without this space, which did not exist yet ([`Cloud::apply_moves`] authorizes the
    /// spaces a user has): without this, the member's new node is refused the key for good and
    /// everything bridged in the space waits for it forever. So every node serving a member
    /// now is authorized, and every granted node that serves none now keeps the key for the
    /// release grace only, as after a move.
    fn settle_key_access(&mut self, space_id: &str, uri: &str, granted: &[String]) {
        let Some(members) = self.msg.space(space_id).map(|s| s.members.clone()) else {
            return;
        };
        let serving = self.serving_nodes(&members);
        for node in serving.iter().filter(|n| !granted.contains(n)) {
            self.kms_change(KmsCall::Authorize {
                uri: uri.to_owned(),
                principal: connector_principal(node),
            });
        }
        for node in granted.iter().filter(|n| !serving.contains(n)) {
            // A node within a member's grace keeps the key until that grace ends.
            let due = members
                .iter()
                .filter_map(|m| self.grace_end(m, node))
                .max()
                .unwrap_or(self.clock + super::RELEASE_GRACE);
            self.defer_revocation_until(space_id.to_owned(), node.clone(), due);
        }
    }

    /// Creates the space once the KMS made its key (or finds the direct space another request
    /// created meanwhile).
    pub(super) fn finish_space(
        &mut self,
        kind: SpaceKind,
        members: Vec<String>,
        key: connector::proto::jwe::SpaceKey,
        granted: Vec<String>,
    ) -> Answer {
        if kind == SpaceKind::Direct
            && let Some(s) = self.msg.direct_space(&members[0], &members[1])
        {
            return ok(space_json(s, false));
        }
        let space = self.msg.create_space(kind, members, key.uri);
        let answer = space_json(space, true);
        let event = Event::SpaceCreated {
            space_id: space.id.clone(),
            kind: space.kind,
            members: space.members.clone(),
            key_uri: space.key_uri.clone(),
        };
        let members = space.members.clone();
        let (space_id, uri) = (space.id.clone(), space.key_uri.clone());
        self.settle_key_access(&space_id, &uri, &granted);
        self.stats.spaces_created += 1;
        for m in members {
            self.push(Subscriber::User(m), event.clone());
        }
        Ok((201, answer))
    }

    fn get_space(&self, who: &Principal, id: &str) -> Answer {
        let space = self
            .msg
            .space(id)
            .ok_or_else(|| CloudError::NotFound(format!("space {id}")))?;
        self.may_read(who, &space.members, id)?;
        let mut v = space_json(space, false);
        v["last_seq"] = json!(space.last_seq());
        if let Principal::User(me) = who {
            v["unread"] = json!(space.unread(me));
        } else {
            let unread: serde_json::Map<String, Value> = space
                .members
                .iter()
                .map(|m| (m.clone(), json!(space.unread(m))))
                .collect();
            v["unread"] = Value::Object(unread);
        }
        ok(v)
    }

    fn may_read(&self, who: &Principal, members: &[String], id: &str) -> Result<(), CloudError> {
        let allowed = match who {
            Principal::User(me) => members.contains(me),
            Principal::Connector(c) => self.serves_a_member(c, members),
        };
        if allowed {
            Ok(())
        } else {
            Err(CloudError::Forbidden(format!("not a member of {id}")))
        }
    }

    fn post_activity(&mut self, now: Duration, who: &Principal, id: &str, body: &[u8]) -> Answer {
        let b: api::PostActivityBody = parse(body)?;
        let actor = self.actor_in_space(who, id, b.actor.map(|a| a.to_lowercase()).as_deref())?;
        if let Principal::Connector(c) = who {
            let got = b.got_ms.map(Duration::from_millis);
            self.hold_back(now, c, id, (b.client_id.as_deref(), got))?;
        }
        let via_connector = match who {
            Principal::Connector(c) => Some(c.clone()),
            _ => None,
        };
        let client_id = b.client_id;
        let new = NewActivity {
            verb: b.verb,
            actor,
            encrypted_text: b.encrypted_text,
            target: b.target,
            client_id: client_id.clone(),
            via_connector: via_connector.clone(),
        };
        // One line per activity post (HMSIM_LOG=debug): follows a message by its client id.
        // Formatted only when someone listens.
        let what = tracing::enabled!(tracing::Level::DEBUG).then(|| {
            format!(
                "{} {:?} client_id={:?} target={:?}",
                new.actor, new.verb, new.client_id, new.target
            )
        });
        let what = what.unwrap_or_default();
        let posted = self.msg.post(now, id, new).inspect_err(|e| {
            tracing::debug!(space = %id, %what, error = %e, "cloud refused an activity");
        })?;
        let ids: Vec<&str> = posted.activities.iter().map(|a| a.id.as_str()).collect();
        let duplicate = posted.duplicate;
        tracing::debug!(space = %id, %what, ?ids, duplicate, "cloud took an activity");
        if posted.duplicate {
            self.stats.duplicate_posts += 1;
            return ok(json!({ "activities": to_json(&posted.activities), "duplicate": true }));
        }
        self.stats.activities_stored += posted.activities.len() as u64;
        if let (Some(cid), Some(pair)) = (&client_id, self.direct_pair(id)) {
            self.holds.stored(&pair, cid);
        }
        if via_connector.is_some() {
            self.stats.activities_from_connectors += posted.activities.len() as u64;
        }
        for a in &posted.activities {
            self.route_activity(a);
        }
        Ok((
            201,
            json!({ "activities": to_json(&posted.activities), "duplicate": false }),
        ))
    }

    /// Connector `node` asks again for the key of direct space `space_id`, whose messages
    /// wait on it since `since`, or claims it: it holds the conversation ([`super::holds`])
    /// if it serves a member (a node that does not is refused the key anyway), and declares
    /// the messages it has not posted yet (with or without `since`: a node whose post was
    /// refused for another node's hold only declares).
    fn hold_space(
        &mut self,
        node: &str,
        space_id: &str,
        since: Option<Duration>,
        unposted: &[api::Unposted],
    ) {
        let Some(space) = self.msg.space(space_id) else {
            return;
        };
        if space.kind != SpaceKind::Direct || space.members.len() != 2 {
            return;
        }
        let members = space.members.clone();
        if !self.serves_a_member(node, &members) {
            return;
        }
        let left = unposted_left(Some(space), unposted);
        let pair = (members[0].clone(), members[1].clone());
        if let Some(since) = since {
            self.holds.take(self.clock, node, pair.clone(), since);
        }
        self.holds.declare(self.clock, node, &pair, left);
    }

    /// The members of direct space `space_id`, as the key of its holds.
    fn direct_pair(&self, space_id: &str) -> Option<(String, String)> {
        let space = self.msg.space(space_id)?;
        match (space.kind, space.members.as_slice()) {
            (SpaceKind::Direct, [m0, m1]) => Some((m0.clone(), m1.clone())),
            _ => None,
        }
    }

    /// Whether `connector` serves a member of the direct conversation `pair`
    /// ([`Self::serves_a_member`]).
    fn serves_pair(&self, connector: &str, pair: &(String, String)) -> bool {
        [&pair.0, &pair.1]
            .into_iter()
            .any(|m| self.serves_a_member(connector, std::slice::from_ref(m)))
    }

    /// The node holding earlier messages of the direct conversation `pair`, if it is not
    /// `node` and still serves a member (a node that serves none can no longer post them),
    /// unless the post `(client_id, got)` is older than every message the holder declared it
    /// has not posted yet ([`holds::Holds::before_holder`]): it goes first (explore-findings,
    /// the holder that lacks a message only the other node has).
    fn held_by_another(
        &self,
        now: Duration,
        node: &str,
        pair: &(String, String),
        post: (Option<&str>, Option<Duration>),
    ) -> Option<String> {
        let hold = self.holds.of(now, pair)?;
        if hold.node == node || !self.serves_pair(&hold.node, pair) {
            return None;
        }
        if let (Some(cid), Some(got)) = post
            && self
                .holds
                .before_holder(now, (pair, &hold.node), (cid, got))
        {
            return None;
        }
        Some(hold.node.clone())
    }

    /// Another node serving a member of the direct conversation `pair` that declared an older
    /// message than `node`'s post `(client_id, got)` and has not got it stored yet: the post
    /// waits for it ([`holds::Holds::earlier_elsewhere`]).
    fn declared_earlier(
        &self,
        now: Duration,
        node: &str,
        pair: &(String, String),
        post: (Option<&str>, Option<Duration>),
    ) -> Option<String> {
        let (Some(cid), Some(got)) = post else {
            return None;
        };
        let may_post = |n: &str| self.serves_pair(n, pair);
        self.holds
            .earlier_elsewhere(now, (pair, node), (cid, got), may_post)
    }

    /// Refuses (409) connector `node`'s post `client_id` to `space_id` while another node holds
    /// earlier messages of the conversation, or while an earlier post of this node to the space
    /// was refused so and has not come again (it goes first).
    fn hold_back(
        &mut self,
        now: Duration,
        node: &str,
        space_id: &str,
        post: (Option<&str>, Option<Duration>),
    ) -> Result<(), CloudError> {
        let client_id = post.0;
        let passes = self.holds.passes_fence(now, node, space_id, client_id);
        // A copy of a message already stored is a duplicate: it changes no order.
        let stored = self.msg.space(space_id).zip(client_id);
        if stored.is_some_and(|(s, cid)| s.has_client_id(cid)) {
            return Ok(());
        }
        if !passes {
            self.stats.posts_held_back += 1;
            return Err(CloudError::Conflict(format!(
                "an earlier post of {node} to {space_id} was held back: it goes first"
            )));
        }
        // Holds and declarations are kept per direct conversation (its two members).
        let pair = self.direct_pair(space_id);
        let pair = pair.as_ref();
        let why = if let Some(peer) = self.unsettled_peer(now, node, space_id) {
            format!("{space_id} settles after an outage: {peer} may still claim it")
        } else if let Some(peer) = pair.and_then(|p| self.declared_earlier(now, node, p, post)) {
            format!("{peer} has an earlier message of {space_id} to post")
        } else if let Some(holder) = pair.and_then(|p| self.held_by_another(now, node, p, post)) {
            format!("earlier messages of {space_id} are held by {holder}")
        } else {
            return Ok(());
        };
        self.stats.posts_held_back += 1;
        if let Some(cid) = client_id {
            self.holds.fence(now, node, space_id, cid);
        }
        Err(CloudError::Conflict(why))
    }

    /// Another connector node that may post to direct space `space_id` (serving a member, or
    /// moved off one within its [`super::RELEASE_GRACE`]) whose claims may still be on their
    /// way after the cloud's outage ([`holds::Settle`]), if any. An outage that outlasts the
    /// heartbeat timeout takes users off every node, and the node heard first gets them: the
    /// node they were on still holds their messages refused in the outage (explore seed 10851).
    fn unsettled_peer(&self, now: Duration, node: &str, space_id: &str) -> Option<String> {
        if !self.settle.active(now) {
            return None;
        }
        let space = self.msg.space(space_id)?;
        if space.kind != SpaceKind::Direct || space.members.len() != 2 {
            return None;
        }
        let mut nodes = self.serving_nodes(&space.members);
        nodes.extend(self.graced_nodes(&space.members));
        nodes
            .into_iter()
            .find(|peer| peer != node && !self.settle.settled(now, peer))
    }

    /// `POST /v1/spaces/{id}/hold`: the connector posted the messages it held.
    fn release_hold(&mut self, who: &Principal, id: &str, body: &[u8]) -> Answer {
        let b: api::HoldReleaseBody = parse(body)?;
        let Principal::Connector(node) = who else {
            return Err(CloudError::Forbidden(
                "only a connector holds a conversation".into(),
            ));
        };
        if !b.release {
            return Err(CloudError::Invalid("release must be true".into()));
        }
        let members = self
            .msg
            .space(id)
            .map(|s| s.members.clone())
            .ok_or_else(|| CloudError::NotFound(format!("space {id}")))?;
        let released = members.len() == 2 && {
            let pair = (members[0].clone(), members[1].clone());
            self.holds.end_declaration(node, &pair);
            self.holds.release(node, &pair)
        };
        ok(json!({ "released": released }))
    }

    /// `POST /v1/connectors/claims`: connector `node` claims the conversations whose posts
    /// failed at the transport or are stuck on its way, each since its post's first send
    /// ([`api::ClaimsBody`]). Answers the spaces it holds now.
    fn claim(&mut self, node: &str, body: &[u8]) -> Answer {
        let b: api::ClaimsBody = parse(body)?;
        if b.claims.len() > api::CLAIMS_PER_REQUEST_MAX {
            return Err(CloudError::Invalid(format!(
                "{} claims, at most {}",
                b.claims.len(),
                api::CLAIMS_PER_REQUEST_MAX
            )));
        }
        let mut held = Vec::new();
        for c in &b.claims {
            let since = c.since_ms.map(Duration::from_millis);
            self.hold_space(node, &c.space_id, since, &c.unposted);
            let Some(space) = self.msg.space(&c.space_id) else {
                continue;
            };
            let pair = match space.members.as_slice() {
                [m0, m1] => (m0.clone(), m1.clone()),
                _ => continue,
            };
            if self
                .holds
                .of(self.clock, &pair)
                .is_some_and(|h| h.node == node)
            {
                held.push(c.space_id.clone());
            }
        }
        ok(json!({ "held": held }))
    }

    fn list_activities(&self, who: &Principal, id: &str, query: &[(&str, &str)]) -> Answer {
        let after = match query.iter().find(|(k, _)| *k == "after") {
            Some((_, v)) => v
                .parse::<u64>()
                .map_err(|_| CloudError::Invalid(format!("after={v} is not a number")))?,
            None => 0,
        };
        let members = self
            .msg
            .space(id)
            .map(|s| s.members.clone())
            .ok_or_else(|| CloudError::NotFound(format!("space {id}")))?;
        self.may_read(who, &members, id)?;
        let activities = self.msg.activities_after(id, after)?;
        ok(json!({ "activities": to_json(&activities) }))
    }

    fn typing(&mut self, now: Duration, who: &Principal, id: &str, body: &[u8]) -> Answer {
        let b: api::TypingBody = parse(body)?;
        let actor = self.actor_in_space(who, id, b.actor.map(|a| a.to_lowercase()).as_deref())?;
        let changed = self.msg.typing(now, id, &actor, b.typing)?;
        if changed {
            self.stats.typing_changes += 1;
            let origin = match who {
                Principal::Connector(c) => Some(c.clone()),
                _ => None,
            };
            self.route_typing(id, &actor, b.typing, origin.as_deref());
        }
        ok(json!({ "changed": changed }))
    }

    fn fetch_key(&mut self, who: &Principal, body: &[u8]) -> Result<Step, CloudError> {
        let b: api::KeyFetchBody = parse(body)?;
        if let (Principal::Connector(id), Some(held)) = (who, &b.held) {
            let since = held.since_ms.map(Duration::from_millis);
            self.hold_space(id, &held.space_id, since, &held.unposted);
        }
        let principal = match who {
            Principal::User(me) => me.clone(),
            Principal::Connector(c) => connector_principal(c),
        };
        self.stats.key_fetches += 1;
        Ok(Step::Kms(
            KmsCall::FetchKey {
                uri: b.uri,
                principal,
            },
            Pending::FetchKey,
        ))
    }

    /// Turns the KMS's answer into the answer of the request that waited for it.
    pub(super) fn resume(
        &mut self,
        pending: Pending,
        result: Result<KmsReply, crate::kms::KmsError>,
    ) -> Answer {
        match (pending, result?) {
            (
                Pending::CreateSpace {
                    kind,
                    members,
                    granted,
                },
                KmsReply::Key(key),
            ) => self.finish_space(kind, members, key, granted),
            (Pending::FetchKey, KmsReply::Key(key)) => {
                ok(json!({ "uri": key.uri, "key": URL_SAFE_NO_PAD.encode(key.bytes) }))
            }
            (_, KmsReply::Changed(_)) => Err(CloudError::Kms(crate::kms::KmsError::Unavailable)),
        }
    }
}

fn space_json(s: &messaging::Space, created: bool) -> Value {
    json!({
        "space_id": s.id,
        "kind": to_json(&s.kind),
        "members": s.members,
        "key_uri": s.key_uri,
        "created": created,
    })
}

/// A node's declared unposted messages as the holds keep them, `(client_id, got)`, without
/// those already stored in `space` (another node's copy came first).
fn unposted_left(space: Option<&Space>, unposted: &[api::Unposted]) -> Vec<(String, Duration)> {
    unposted
        .iter()
        .filter(|u| !space.is_some_and(|s| s.has_client_id(&u.client_id)))
        .map(|u| (u.client_id.clone(), Duration::from_millis(u.got_ms)))
        .collect()
}
