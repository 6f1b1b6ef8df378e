//! Control Hub's connector management: Expressway cluster registration (spec 11-16, 29),
//! connector heartbeats and status uploads, and maintenance mode.
//!
//! ## Registration
//!
//! - The administrator creates an Expressway cluster in Control Hub, naming the hostnames of
//!   its nodes, and gets one registration token for it ([`ControlHub::create_cluster`]).
//!   Registration without that token fails ("registration initiated from the Expressway UI is
//!   rejected", spec 12).
//! - The token is bound to its cluster: it registers only the hostnames it was issued for
//!   (403 naming the cluster otherwise), and each of them once. A second use answers 403
//!   naming the cluster and the hostname, and never the connector token: a registered
//!   Expressway keeps its connector token across restarts (the connector persists it), and one
//!   that lost it registers again with a new token from Control Hub ("you can restart
//!   registration in Control Hub", [`ControlHub::create_cluster`] again).
//! - A hostname with a capital letter fails registration (spec 11).
//! - The primary registers first; peers follow (spec 12): a peer registering before its primary
//!   is refused, and a peer completes no earlier than its primary.
//! - Registration completes after a delay drawn from the RNG passed in, at most
//!   [`REGISTRATION_DELAY_MAX`] (timers table: ≤ 5 min).
//!
//! ## Liveness
//!
//! A registered connector heartbeats (recommended every [`HEARTBEAT_INTERVAL`]); one silent for
//! longer than [`HEARTBEAT_TIMEOUT`] is down (its users are moved, spec 28), and its next
//! heartbeat brings it back up. Expressway's own maintenance mode is not seen by the cloud (it
//! looks like an outage, spec 29); Control Hub maintenance mode is [`ControlHub::set_maintenance`].

use super::assignment::{Coresidency, NODES_PER_CLUSTER_MAX, NodeSize};
use super::error::CloudError;
pub use connector::proto::webex::RegState;
use rand::{Rng, RngExt as _};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Longest registration delay (timers table: ≤ 5 min).
pub const REGISTRATION_DELAY_MAX: Duration = Duration::from_secs(5 * 60);
/// How often a connector should heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
/// How late a heartbeat may reach the cloud after its due time and still count as on time: a
/// network round trip and the cloud's one-second tick. Without it a node that lost exactly two
/// heartbeats (a 60 s cloud outage) and sent the third on time was down by the third's transit
/// time, and the cloud drained and refilled every node, shuffling 15,000 users.
pub const HEARTBEAT_GRACE: Duration = Duration::from_secs(5);
/// Silence after which a connector is down: three missed heartbeats (the third not in by its
/// due time plus [`HEARTBEAT_GRACE`]), so one or two lost or late heartbeats do not move
/// thousands of users.
pub const HEARTBEAT_TIMEOUT: Duration =
    Duration::from_secs(3 * HEARTBEAT_INTERVAL.as_secs() + HEARTBEAT_GRACE.as_secs());
/// Longest status upload kept, in bytes of JSON: the status page model is a few KiB; a bound
/// keeps a misbehaving connector from filling the cloud's memory.
pub const STATUS_BYTES_MAX: usize = 64 * 1024;
/// Longest hostname (RFC 1035).
pub const HOSTNAME_BYTES_MAX: usize = 253;

/// Random bytes in a registration or connector token.
const TOKEN_BYTES: usize = 16;

/// One Expressway-C node known to Control Hub.
#[derive(Debug, Clone)]
pub struct ConnectorNode {
    /// The node id: its (lowercase) hostname.
    pub id: String,
    /// Its Expressway cluster.
    pub cluster: String,
    /// Whether it is the cluster's primary.
    pub primary: bool,
    /// Registration progress.
    pub state: RegState,
    /// When registration completes.
    pub ready_at: Duration,
    /// The bearer token it uses after registration.
    pub token: String,
    /// Last heartbeat.
    pub last_heartbeat: Option<Duration>,
    /// Heartbeating within [`HEARTBEAT_TIMEOUT`].
    pub up: bool,
    /// In Control Hub maintenance mode.
    pub maintenance: bool,
    /// The last status upload (the connector's status page model), as JSON text.
    pub status: Option<String>,
}

/// What [`ControlHub::register`] answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The node id (hostname).
    pub connector_id: String,
    /// The bearer token for all later connector requests.
    pub connector_token: String,
    /// Registration progress.
    pub state: RegState,
    /// When registration completes, ms since the start of the run.
    pub ready_at_ms: u64,
    /// How long until then, ms (0 once registered): the delay drawn, on the connector's side of
    /// the wire, since the two clocks differ in real mode.
    pub ready_in_ms: u64,
}

/// A change the rest of the cloud reacts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent {
    /// Registration completed.
    Registered {
        /// The node.
        node: String,
        /// Its cluster.
        cluster: String,
    },
    /// Heartbeats stopped.
    Down(String),
    /// Heartbeats resumed.
    Up(String),
}

#[derive(Debug, Clone)]
struct ClusterReg {
    size: NodeSize,
    coresidency: Coresidency,
    registration_token: String,
    /// The hostnames the token was issued for: it registers these and no other.
    hostnames: BTreeSet<String>,
    /// The hostnames that used the current token: each may use it once.
    used_by: BTreeSet<String>,
    primary: Option<String>,
}

/// Control Hub's view of the Expressway clusters.
#[derive(Debug, Clone, Default)]
pub struct ControlHub {
    clusters: BTreeMap<String, ClusterReg>,
    connectors: BTreeMap<String, ConnectorNode>,
    /// connector token → node id.
    tokens: BTreeMap<String, String>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A random token: `prefix` and 32 hex digits from `rng`.
pub fn draw_token<R: Rng + ?Sized>(rng: &mut R, prefix: &str) -> String {
    let mut b = [0u8; TOKEN_BYTES];
    rng.fill_bytes(&mut b);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{prefix}{hex}")
}

/// Checks a hostname: non-empty, short, letters, digits, `-` and `.`, no capitals (spec 11).
pub fn validate_hostname(host: &str) -> Result<(), CloudError> {
    if host.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(CloudError::Invalid(format!(
            "hostname {host:?} has capital letters: registration fails (spec 11)"
        )));
    }
    let ok = !host.is_empty()
        && host.len() <= HOSTNAME_BYTES_MAX
        && host
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(CloudError::Invalid(format!("not a hostname: {host:?}")))
    }
}

impl ControlHub {
    /// No clusters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates an Expressway cluster of the nodes `hostnames` and returns its registration
    /// token, bound to those hostnames. Asked again with the same shape (restarting
    /// registration in Control Hub), it issues a new token for the hostnames not registered
    /// yet, or that lost their registration; the old token is void.
    ///
    /// # Errors
    /// [`CloudError::Invalid`] for a bad name or hostname, no hostname, or more than a cluster
    /// holds; [`CloudError::Conflict`] if it exists with another size or coresidency, or a
    /// hostname belongs to another cluster.
    pub fn create_cluster<R: Rng + ?Sized>(
        &mut self,
        name: &str,
        size: NodeSize,
        coresidency: Coresidency,
        hostnames: &[String],
        rng: &mut R,
    ) -> Result<String, CloudError> {
        validate_hostname(name)?;
        let hostnames = self.check_hostnames(name, hostnames)?;
        if let Some(c) = self.clusters.get(name)
            && (c.size != size || c.coresidency != coresidency)
        {
            return Err(CloudError::Conflict(format!("cluster {name} exists")));
        }
        let token = draw_token(rng, "reg-");
        let primary = self.clusters.get(name).and_then(|c| c.primary.clone());
        self.clusters.insert(
            name.to_owned(),
            ClusterReg {
                size,
                coresidency,
                registration_token: token.clone(),
                hostnames,
                used_by: BTreeSet::new(),
                primary,
            },
        );
        Ok(token)
    }

    /// The hostnames a token of cluster `name` is issued for: valid, at least one, at most a
    /// cluster's nodes, none of another cluster.
    fn check_hostnames(
        &self,
        name: &str,
        hostnames: &[String],
    ) -> Result<BTreeSet<String>, CloudError> {
        let set: BTreeSet<String> = hostnames.iter().cloned().collect();
        if set.is_empty() || set.len() > NODES_PER_CLUSTER_MAX {
            return Err(CloudError::Invalid(format!(
                "cluster {name}: name 1 to {NODES_PER_CLUSTER_MAX} Expressway hostnames \
                 (the registration token is issued for them)"
            )));
        }
        for h in &set {
            validate_hostname(h)?;
            let other = self.connectors.get(h).map(|n| &n.cluster).or_else(|| {
                let issued = self.clusters.iter().find(|(_, c)| c.hostnames.contains(h));
                issued.map(|(c, _)| c)
            });
            if let Some(other) = other.filter(|o| *o != name) {
                return Err(CloudError::Conflict(format!(
                    "{h} belongs to Expressway cluster {other}"
                )));
            }
        }
        Ok(set)
    }

    /// The size and coresidency of a cluster.
    pub fn cluster_shape(&self, name: &str) -> Option<(NodeSize, Coresidency)> {
        self.clusters.get(name).map(|c| (c.size, c.coresidency))
    }

    /// Registers a node with the cluster whose registration token is `token`.
    ///
    /// # Errors
    /// [`CloudError::Unauthorized`] without a valid registration token; [`CloudError::Invalid`]
    /// for a hostname with capitals (spec 11); [`CloudError::Conflict`] for a peer before its
    /// primary, a second primary, a full cluster, or a hostname of another cluster.
    pub fn register<R: Rng + ?Sized>(
        &mut self,
        now: Duration,
        token: Option<&str>,
        hostname: &str,
        primary: bool,
        rng: &mut R,
    ) -> Result<Registration, CloudError> {
        let cluster = self.cluster_of_token(token)?;
        validate_hostname(hostname)?;
        self.check_token_use(&cluster, hostname)?;
        // Registering again with a new token (restarted in Control Hub): the old connector
        // token is void once the new registration is accepted.
        let old = self.connectors.remove(hostname);
        let ready_at = match self.ready_at(now, &cluster, primary, rng) {
            Ok(at) => at,
            Err(e) => {
                if let Some(old) = old {
                    self.connectors.insert(hostname.to_owned(), old);
                }
                return Err(e);
            }
        };
        if let Some(old) = old {
            self.tokens.remove(&old.token);
        }
        let node = ConnectorNode {
            id: hostname.to_owned(),
            cluster: cluster.clone(),
            primary,
            state: RegState::Registering,
            ready_at,
            token: draw_token(rng, "con-"),
            last_heartbeat: None,
            up: false,
            maintenance: false,
            status: None,
        };
        if let Some(c) = self.clusters.get_mut(&cluster) {
            c.used_by.insert(hostname.to_owned());
            if primary {
                c.primary = Some(hostname.to_owned());
            }
        }
        self.tokens.insert(node.token.clone(), hostname.to_owned());
        let answer = registration(&node, now);
        self.connectors.insert(hostname.to_owned(), node);
        Ok(answer)
    }

    fn cluster_of_token(&self, token: Option<&str>) -> Result<String, CloudError> {
        let token = token.ok_or(CloudError::Unauthorized)?;
        self.clusters
            .iter()
            .find(|(_, c)| c.registration_token == token)
            .map(|(name, _)| name.clone())
            .ok_or(CloudError::Unauthorized)
    }

    /// Whether `hostname` may use the registration token of `cluster`: the token was issued
    /// for it and it has not used it yet.
    fn check_token_use(&self, cluster: &str, hostname: &str) -> Result<(), CloudError> {
        let Some(c) = self.clusters.get(cluster) else {
            return Err(CloudError::Unauthorized);
        };
        if !c.hostnames.contains(hostname) {
            let issued: Vec<&str> = c.hostnames.iter().map(String::as_str).collect();
            return Err(CloudError::Forbidden(format!(
                "the registration token of Expressway cluster {cluster} was not issued for \
                 {hostname} (it registers {})",
                issued.join(", ")
            )));
        }
        if c.used_by.contains(hostname) {
            return Err(CloudError::Forbidden(format!(
                "the registration token of Expressway cluster {cluster} was already used by \
                 {hostname}: a registration token is single use; a registered Expressway \
                 keeps its connector token, and one that lost it needs a new registration \
                 token (restart registration in Control Hub)"
            )));
        }
        Ok(())
    }

    /// When a new node of `cluster` completes registration, or why it may not register.
    fn ready_at<R: Rng + ?Sized>(
        &self,
        now: Duration,
        cluster: &str,
        primary: bool,
        rng: &mut R,
    ) -> Result<Duration, CloudError> {
        let members = self.connectors.values().filter(|n| n.cluster == cluster);
        if members.count() >= NODES_PER_CLUSTER_MAX {
            return Err(CloudError::Conflict(format!(
                "cluster {cluster} has {NODES_PER_CLUSTER_MAX} nodes (spec 1)"
            )));
        }
        let current_primary = self
            .clusters
            .get(cluster)
            .and_then(|c| c.primary.as_ref())
            .and_then(|p| self.connectors.get(p));
        match (primary, current_primary) {
            (true, None) => {
                let delay_ms = rng.random_range(0..=ms(REGISTRATION_DELAY_MAX));
                Ok(now + Duration::from_millis(delay_ms))
            }
            (true, Some(p)) => Err(CloudError::Conflict(format!(
                "cluster {cluster} already has primary {}",
                p.id
            ))),
            (false, None) => Err(CloudError::Conflict(format!(
                "register the primary of {cluster} first; peers follow (spec 12)"
            ))),
            (false, Some(p)) => Ok(now.max(p.ready_at)),
        }
    }

    /// The node holding connector token `token`.
    pub fn connector_by_token(&self, token: &str) -> Option<&ConnectorNode> {
        self.tokens
            .get(token)
            .and_then(|id| self.connectors.get(id))
    }

    /// A connector node by id.
    pub fn connector(&self, id: &str) -> Option<&ConnectorNode> {
        self.connectors.get(id)
    }

    /// All connector nodes, by id.
    pub fn connectors(&self) -> impl Iterator<Item = &ConnectorNode> {
        self.connectors.values()
    }

    /// When the next registration completes, if any is under way.
    pub fn next_due(&self) -> Option<Duration> {
        self.connectors
            .values()
            .filter(|n| n.state == RegState::Registering)
            .map(|n| n.ready_at)
            .min()
    }

    /// Completes due registrations and notices silent connectors.
    pub fn tick(&mut self, now: Duration) -> Vec<HubEvent> {
        let mut events = Vec::new();
        for node in self.connectors.values_mut() {
            match node.state {
                RegState::Registering if node.ready_at <= now => {
                    node.state = RegState::Registered;
                    node.up = true;
                    node.last_heartbeat = Some(node.last_heartbeat.unwrap_or(now).max(now));
                    events.push(HubEvent::Registered {
                        node: node.id.clone(),
                        cluster: node.cluster.clone(),
                    });
                }
                RegState::Registered if node.up => {
                    let last = node.last_heartbeat.unwrap_or_default();
                    if now.saturating_sub(last) > HEARTBEAT_TIMEOUT {
                        node.up = false;
                        events.push(HubEvent::Down(node.id.clone()));
                    }
                }
                _ => {}
            }
        }
        events
    }

    /// A heartbeat, optionally with a status upload (JSON text, at most [`STATUS_BYTES_MAX`]).
    ///
    /// # Errors
    /// [`CloudError::NotFound`] for an unknown node, [`CloudError::TooLarge`] for a large status.
    pub fn heartbeat(
        &mut self,
        now: Duration,
        id: &str,
        status: Option<String>,
    ) -> Result<Vec<HubEvent>, CloudError> {
        if let Some(s) = &status
            && s.len() > STATUS_BYTES_MAX
        {
            return Err(CloudError::TooLarge {
                bytes: s.len(),
                limit: STATUS_BYTES_MAX,
            });
        }
        let node = self
            .connectors
            .get_mut(id)
            .ok_or_else(|| CloudError::NotFound(format!("connector {id}")))?;
        node.last_heartbeat = Some(now);
        if status.is_some() {
            node.status = status;
        }
        if node.state == RegState::Registered && !node.up {
            node.up = true;
            return Ok(vec![HubEvent::Up(id.to_owned())]);
        }
        Ok(Vec::new())
    }

    /// Control Hub maintenance mode for one node (spec 29). Returns whether it changed.
    ///
    /// # Errors
    /// [`CloudError::NotFound`] for an unknown node.
    pub fn set_maintenance(&mut self, id: &str, on: bool) -> Result<bool, CloudError> {
        let node = self
            .connectors
            .get_mut(id)
            .ok_or_else(|| CloudError::NotFound(format!("connector {id}")))?;
        let changed = node.maintenance != on;
        node.maintenance = on;
        Ok(changed)
    }
}

fn registration(node: &ConnectorNode, now: Duration) -> Registration {
    Registration {
        connector_id: node.id.clone(),
        connector_token: node.token.clone(),
        state: node.state,
        ready_at_ms: ms(node.ready_at),
        ready_in_ms: ms(node.ready_at.saturating_sub(now)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;
    use rand_chacha::ChaCha8Rng;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn hub() -> (ControlHub, String, ChaCha8Rng) {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut hub = ControlHub::new();
        let token = hub
            .create_cluster(
                "exp-a",
                NodeSize::Large,
                Coresidency::None,
                &hosts("exp-a", 7),
                &mut rng,
            )
            .unwrap_err();
        assert_eq!(token.status(), 400, "at most six nodes: {token}");
        let token = hub
            .create_cluster(
                "exp-a",
                NodeSize::Large,
                Coresidency::None,
                &hosts("exp-a", 6),
                &mut rng,
            )
            .unwrap();
        (hub, token, rng)
    }

    fn hosts(cluster: &str, n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("{cluster}-{i}")).collect()
    }

    #[test]
    fn register_with_token_completes_within_five_minutes() {
        let (mut hub, token, mut rng) = hub();
        let reg = hub
            .register(secs(0), Some(&token), "exp-a-1", true, &mut rng)
            .unwrap();
        assert_eq!(reg.state, RegState::Registering);
        assert!(reg.ready_at_ms <= 300_000);
        let ready = Duration::from_millis(reg.ready_at_ms);
        if let Some(before) = ready.checked_sub(Duration::from_millis(1)) {
            assert!(hub.tick(before).is_empty(), "not before the drawn delay");
        }
        let registered = vec![HubEvent::Registered {
            node: "exp-a-1".into(),
            cluster: "exp-a".into(),
        }];
        assert_eq!(hub.tick(ready), registered);
        assert!(hub.tick(ready + Duration::from_secs(1)).is_empty(), "once");
        assert_eq!(
            hub.connector("exp-a-1").unwrap().state,
            RegState::Registered
        );
        assert_eq!(
            hub.connector_by_token(&reg.connector_token).unwrap().id,
            "exp-a-1"
        );
    }

    /// Issue 14 item 8: a registration token was reusable, its second use answered the live
    /// connector token, and any cluster's token registered another cluster's hostnames.
    #[test]
    fn a_registration_token_is_single_use_and_bound_to_its_cluster() {
        let (mut hub, token, mut rng) = hub();
        let reg = hub
            .register(secs(0), Some(&token), "exp-a-1", true, &mut rng)
            .unwrap();
        let again = hub
            .register(secs(400), Some(&token), "exp-a-1", true, &mut rng)
            .unwrap_err();
        assert_eq!(again.status(), 403);
        let text = again.to_string();
        assert!(
            text.contains("exp-a") && text.contains("already used"),
            "{text}"
        );
        assert!(!text.contains(&reg.connector_token), "{text}");

        let b_token = hub
            .create_cluster(
                "exp-b",
                NodeSize::Large,
                Coresidency::None,
                &hosts("exp-b", 2),
                &mut rng,
            )
            .unwrap();
        let stolen = hub
            .register(secs(1), Some(&b_token), "exp-a-2", false, &mut rng)
            .unwrap_err();
        assert_eq!(stolen.status(), 403);
        assert!(stolen.to_string().contains("exp-b"), "{stolen}");
        let stolen = hub
            .register(secs(1), Some(&token), "exp-b-1", true, &mut rng)
            .unwrap_err();
        assert_eq!(stolen.status(), 403, "{stolen}");
        let taken = hub.create_cluster(
            "exp-c",
            NodeSize::Large,
            Coresidency::None,
            &["exp-a-1".to_string()],
            &mut rng,
        );
        assert_eq!(taken.unwrap_err().status(), 409, "a hostname of exp-a");

        // Restarting registration in Control Hub: a new token, and the old connector token
        // is void once the node registers with it.
        let fresh = hub
            .create_cluster(
                "exp-a",
                NodeSize::Large,
                Coresidency::None,
                &hosts("exp-a", 6),
                &mut rng,
            )
            .unwrap();
        assert_ne!(fresh, token);
        let void = hub.register(secs(2), Some(&token), "exp-a-2", false, &mut rng);
        assert_eq!(void.unwrap_err().status(), 401, "the old token is void");
        let re = hub
            .register(secs(2), Some(&fresh), "exp-a-1", true, &mut rng)
            .unwrap();
        assert_ne!(re.connector_token, reg.connector_token);
        assert!(hub.connector_by_token(&reg.connector_token).is_none());
        assert_eq!(
            hub.connector_by_token(&re.connector_token).unwrap().id,
            "exp-a-1"
        );
    }

    #[test]
    fn registration_needs_the_token() {
        let (mut hub, _, mut rng) = hub();
        let none = hub.register(secs(0), None, "exp-a-1", true, &mut rng);
        assert_eq!(
            none.unwrap_err().status(),
            401,
            "from the Expressway UI (spec 12)"
        );
        let wrong = hub.register(secs(0), Some("reg-nope"), "exp-a-1", true, &mut rng);
        assert_eq!(wrong.unwrap_err(), CloudError::Unauthorized);
    }

    #[test]
    fn capital_letters_fail_registration() {
        let (mut hub, token, mut rng) = hub();
        let err = hub
            .register(secs(0), Some(&token), "Exp-A-1", true, &mut rng)
            .unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("spec 11"), "{err}");
    }

    #[test]
    fn primary_first_then_peers_follow() {
        let (mut hub, token, mut rng) = hub();
        let early = hub.register(secs(0), Some(&token), "exp-a-2", false, &mut rng);
        assert_eq!(early.unwrap_err().status(), 409);
        let p = hub
            .register(secs(0), Some(&token), "exp-a-1", true, &mut rng)
            .unwrap();
        let peer = hub
            .register(secs(1), Some(&token), "exp-a-2", false, &mut rng)
            .unwrap();
        assert!(peer.ready_at_ms >= p.ready_at_ms.min(1_000));
        assert_eq!(peer.ready_at_ms, p.ready_at_ms.max(1_000));
        // The delay left to wait, for a connector whose clock is not the cloud's.
        assert_eq!(p.ready_in_ms, p.ready_at_ms);
        assert_eq!(peer.ready_in_ms, peer.ready_at_ms - 1_000);
        let second = hub.register(secs(1), Some(&token), "exp-a-3", true, &mut rng);
        assert_eq!(second.unwrap_err().status(), 409);
        for i in 3..=6 {
            hub.register(
                secs(1),
                Some(&token),
                &format!("exp-a-{i}"),
                false,
                &mut rng,
            )
            .unwrap();
        }
        // A seventh node: the token was issued for six hostnames (a cluster's most, spec 1).
        let full = hub.register(secs(1), Some(&token), "exp-a-7", false, &mut rng);
        assert_eq!(full.unwrap_err().status(), 403);
        let events = hub.tick(REGISTRATION_DELAY_MAX + secs(1));
        assert_eq!(events.len(), 6);
    }

    #[test]
    fn heartbeats_keep_a_node_up() {
        let (mut hub, token, mut rng) = hub();
        hub.register(secs(0), Some(&token), "exp-a-1", true, &mut rng)
            .unwrap();
        let t0 = REGISTRATION_DELAY_MAX;
        hub.tick(t0);
        hub.heartbeat(t0 + secs(30), "exp-a-1", Some("{\"ok\":true}".into()))
            .unwrap();
        let last = t0 + secs(30);
        assert!(
            hub.tick(last + HEARTBEAT_TIMEOUT).is_empty(),
            "just the timeout since the last one"
        );
        assert_eq!(
            hub.tick(last + HEARTBEAT_TIMEOUT + secs(1)),
            vec![HubEvent::Down("exp-a-1".into())]
        );
        assert_eq!(
            hub.heartbeat(t0 + secs(200), "exp-a-1", None).unwrap(),
            vec![HubEvent::Up("exp-a-1".into())]
        );
        assert_eq!(
            hub.connector("exp-a-1").unwrap().status.as_deref(),
            Some("{\"ok\":true}"),
            "the last upload is kept"
        );
        let big = "x".repeat(STATUS_BYTES_MAX + 1);
        let err = hub.heartbeat(t0, "exp-a-1", Some(big)).unwrap_err();
        assert_eq!(err.status(), 413);
        assert_eq!(hub.heartbeat(t0, "nope", None).unwrap_err().status(), 404);
    }

    /// A 60 s cloud outage loses two heartbeats; the third, sent on time, reaches the cloud a
    /// round trip after its due time. The node is up all along: only a third lost heartbeat
    /// makes it down (the 15,000-user outage: every node drained and refilled at 480.25 s).
    #[test]
    fn two_lost_heartbeats_and_a_third_in_transit_keep_a_node_up() {
        let (mut hub, token, mut rng) = hub();
        hub.register(secs(0), Some(&token), "exp-a-1", true, &mut rng)
            .unwrap();
        let t0 = REGISTRATION_DELAY_MAX;
        hub.tick(t0);
        let last = t0 + secs(30);
        hub.heartbeat(last, "exp-a-1", None).unwrap();
        // The third heartbeat is due at `last + 3 intervals` and takes 100 ms to arrive; the
        // cloud's tick runs 50 ms before it does.
        let third_due = last + 3 * HEARTBEAT_INTERVAL;
        assert!(
            hub.tick(third_due + Duration::from_millis(50)).is_empty(),
            "two lost heartbeats are not down"
        );
        assert!(
            hub.heartbeat(third_due + Duration::from_millis(100), "exp-a-1", None)
                .unwrap()
                .is_empty(),
            "still up: no Up event"
        );
        // Then silent: down once a third heartbeat is not in by its due time plus the grace.
        let back = third_due + Duration::from_millis(100);
        assert!(hub.tick(back + 3 * HEARTBEAT_INTERVAL).is_empty());
        assert_eq!(
            hub.tick(back + 3 * HEARTBEAT_INTERVAL + HEARTBEAT_GRACE + secs(1)),
            vec![HubEvent::Down("exp-a-1".into())]
        );
    }

    #[test]
    fn maintenance_mode_per_node() {
        let (mut hub, token, mut rng) = hub();
        hub.register(secs(0), Some(&token), "exp-a-1", true, &mut rng)
            .unwrap();
        assert_eq!(hub.set_maintenance("exp-a-1", true), Ok(true));
        assert_eq!(hub.set_maintenance("exp-a-1", true), Ok(false));
        assert!(hub.connector("exp-a-1").unwrap().maintenance);
        assert_eq!(hub.set_maintenance("x", true).unwrap_err().status(), 404);
    }

    #[test]
    fn same_seed_same_tokens_and_delays() {
        let run = || {
            let (mut hub, token, mut rng) = hub();
            hub.register(secs(0), Some(&token), "exp-a-1", true, &mut rng)
                .unwrap()
        };
        assert_eq!(run(), run());
    }
}
