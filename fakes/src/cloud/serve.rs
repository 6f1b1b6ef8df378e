//! Real-mode serving (`hmsim serve cloud`, `hmsim serve kms`): the config files and the setup
//! of a cloud or a KMS host on loopback sockets ([`TokioNet`]). The CLI parses the YAML into
//! these types and prints the lines [`serve_cloud`] and [`serve_kms`] hand to `on_ready`. The
//! served cloud logs each connector's registration at INFO: the delay Control Hub drew (spec
//! 12, up to 5 min) and the time of day the connector waits until.
//!
//! ```yaml
//! # hmsim serve cloud --config cloud.yaml
//! domain: example.com                 # org domain (default example.com)
//! admin_token: admin-Secret-1         # Control Hub admin bearer token
//! seed: 1                             # seeds tokens and delays (default 1)
//! listen: { ip: 127.0.0.1, port: 8443 }
//! kms: { name: kms, address: 127.0.0.1, port: 8444 }   # name (kms|hds) goes into key URIs
//! users:
//!   - { email: alice@example.com, password: alice-pw, entitlements: [paid_licence, hybrid_message] }
//!   - { email: bob@example.com, password: bob-pw, entitlements: [paid_licence] }  # Webex only
//! clusters:
//!   - { name: exp-a, size: large, hostnames: [exp-a-1, exp-a-2] }  # size: small|medium|large; optional coresidency; the token registers these hostnames, each once
//! ```
//!
//! ```yaml
//! # hmsim serve kms --config kms.yaml
//! name: kms                           # kms (cloud) or hds (Hybrid Data Security)
//! seed: 2                             # seeds key URIs and bytes (default 1)
//! listen: { ip: 127.0.0.1, port: 8444 }
//! ```

use super::api::{Method, Request};
use super::control_hub::{REGISTRATION_DELAY_MAX, RegState};
use super::{Cloud, CloudConfig};
use crate::kms::KmsService;
use connector::io::net::{Net as _, TokioNet};
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use serde_json::json;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

/// Where a real-mode server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Address to bind (default 127.0.0.1).
    #[serde(default = "loopback")]
    pub ip: IpAddr,
    /// Port (1-65535).
    #[serde(deserialize_with = "crate::config::port")]
    pub port: u16,
}

/// Where the cloud finds its KMS.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsAddress {
    /// The KMS's name in key URIs: `kms` or `hds` (default kms).
    #[serde(default = "kms_name")]
    pub name: String,
    /// Host or IP to connect to (default 127.0.0.1).
    #[serde(default = "loopback_name")]
    pub address: String,
    /// Port (1-65535).
    #[serde(deserialize_with = "crate::config::port")]
    pub port: u16,
}

/// A user created at start.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeUser {
    /// Email.
    pub email: String,
    /// Password.
    pub password: String,
    /// Entitlements: `paid_licence` (a paid Webex licence), `message_free` (the free Message
    /// tier) and `hybrid_message` (Hybrid Message Service: the connector bridges the user; it
    /// needs `paid_licence` too, spec 27).
    #[serde(default)]
    pub entitlements: Vec<String>,
}

/// An Expressway cluster created at start (its registration token is printed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeCluster {
    /// Cluster name.
    pub name: String,
    /// VM size: `small`, `medium` or `large`.
    pub size: String,
    /// Coresident services, as `POST /v1/admin/clusters` takes them (optional).
    #[serde(default)]
    pub coresidency: Option<serde_json::Value>,
    /// The hostnames of its Expressway nodes: the cluster's registration token registers
    /// these and no other, each once.
    pub hostnames: Vec<String>,
}

/// The config of `hmsim serve cloud` (module doc).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudServeConfig {
    /// Org domain.
    #[serde(default = "default_domain")]
    pub domain: String,
    /// Admin bearer token.
    pub admin_token: String,
    /// RNG seed.
    #[serde(default = "one")]
    pub seed: u64,
    /// Where to listen.
    pub listen: Listen,
    /// The KMS host.
    pub kms: KmsAddress,
    /// Users.
    #[serde(default)]
    pub users: Vec<ServeUser>,
    /// Expressway clusters.
    #[serde(default)]
    pub clusters: Vec<ServeCluster>,
}

/// The config of `hmsim serve kms` (module doc).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsServeConfig {
    /// Name in key URIs: `kms` or `hds`.
    #[serde(default = "kms_name")]
    pub name: String,
    /// RNG seed.
    #[serde(default = "one")]
    pub seed: u64,
    /// Where to listen.
    pub listen: Listen,
}

fn loopback() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}
fn loopback_name() -> String {
    "127.0.0.1".into()
}
fn kms_name() -> String {
    crate::kms::CLOUD_HOST.into()
}
fn default_domain() -> String {
    "example.com".into()
}
fn one() -> u64 {
    1
}

/// Builds the cloud of `cfg` and runs its setup (users, clusters) through the admin routes.
/// Returns the cloud and one line per cluster: `registration_token <cluster> <token>`.
///
/// # Errors
/// The first setup request the cloud refused, as text.
pub fn build_cloud(cfg: &CloudServeConfig) -> Result<(Cloud, Vec<String>), String> {
    let core = CloudConfig {
        domain: cfg.domain.clone(),
        admin_token: cfg.admin_token.clone(),
        kms_host: cfg.kms.name.clone(),
    };
    let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut cloud = Cloud::with_remote_kms(core, rng, cfg.kms.address.clone(), cfg.kms.port);
    let mut admin = |path: &str, body: serde_json::Value| {
        let r = cloud.handle_request(
            Duration::ZERO,
            Request {
                method: Method::Post,
                path: path.into(),
                token: Some(cfg.admin_token.clone()),
                body: body.to_string().into_bytes(),
            },
        );
        if r.status == 201 {
            Ok(r.body)
        } else {
            Err(format!("{path}: {} {}", r.status, r.body))
        }
    };
    for u in &cfg.users {
        let body =
            json!({"email": u.email, "password": u.password, "entitlements": u.entitlements});
        admin("/v1/admin/users", body)?;
    }
    let mut lines = Vec::new();
    for c in &cfg.clusters {
        let mut body = json!({"name": c.name, "size": c.size, "hostnames": c.hostnames});
        if let Some(co) = &c.coresidency {
            body["coresidency"] = co.clone();
        }
        let r = admin("/v1/admin/clusters", body)?;
        let token = r["registration_token"].as_str().unwrap_or_default();
        lines.push(format!("registration_token {} {token}", c.name));
    }
    Ok((cloud, lines))
}

/// Serves the cloud of `cfg` on real sockets until the listener fails. Call inside a
/// `LocalSet`. `on_ready` gets the lines to print once listening: the registration tokens,
/// then `listening http <ip>:<port>`.
///
/// # Errors
/// A setup refusal ([`build_cloud`]) or a socket error, as text.
pub async fn serve_cloud(
    cfg: &CloudServeConfig,
    on_ready: impl FnOnce(Vec<String>),
) -> Result<(), String> {
    let (cloud, mut lines) = build_cloud(cfg)?;
    let net = TokioNet::new(cfg.listen.ip);
    let listener = net
        .bind(cfg.listen.port)
        .await
        .map_err(|e| format!("bind {}:{}: {e}", cfg.listen.ip, cfg.listen.port))?;
    let addr = listener
        .local_addr()
        .unwrap_or(SocketAddr::new(cfg.listen.ip, cfg.listen.port));
    lines.push(format!("listening http {addr}"));
    on_ready(lines);
    let cloud = Rc::new(RefCell::new(cloud));
    tokio::task::spawn_local(log_registrations(net.clone(), cloud.clone()));
    super::http::serve_listener(net, cloud, listener)
        .await
        .map_err(|e| e.to_string())
}

/// How often the served cloud looks for registrations to log.
const REGISTRATION_LOG_EVERY: Duration = Duration::from_millis(200);

/// Logs (INFO) each connector node's registration: when Control Hub accepts it, the delay
/// it drew (spec 12: up to [`REGISTRATION_DELAY_MAX`]) and until when, in UTC, the node waits;
/// then when it completes. Without it nothing shows why a connector is silent for minutes.
async fn log_registrations(net: TokioNet, cloud: Rc<RefCell<Cloud>>) {
    let mut seen: BTreeMap<String, RegState> = BTreeMap::new();
    let mut tick = tokio::time::interval(REGISTRATION_LOG_EVERY);
    loop {
        tick.tick().await;
        let now = net.now();
        let c = cloud.borrow();
        for node in c.control_hub().connectors() {
            if seen.get(&node.id) == Some(&node.state) {
                continue;
            }
            seen.insert(node.id.clone(), node.state);
            if node.state == RegState::Registered {
                tracing::info!(connector = %node.id, cluster = %node.cluster, "registration complete");
                continue;
            }
            let left = node.ready_at.saturating_sub(now);
            // Real mode only: the wall clock gives the time of day the wait ends.
            let until = std::time::SystemTime::now() + left; // allow-nondeterminism: served cloud only, a log line
            tracing::info!(
                connector = %node.id,
                cluster = %node.cluster,
                "registration accepted; Control Hub completes it in {:.1} s (the registration \
                 delay, spec 12: up to {} min): waiting for Control Hub until {} UTC",
                left.as_secs_f64(),
                REGISTRATION_DELAY_MAX.as_secs() / 60,
                connector::io::real::utc_time_of_day(until)
            );
        }
    }
}

/// Serves the KMS of `cfg` on real sockets until the listener fails. Call inside a `LocalSet`.
/// `on_ready` gets `listening http <ip>:<port>`.
///
/// # Errors
/// A socket error, as text.
pub async fn serve_kms(
    cfg: &KmsServeConfig,
    on_ready: impl FnOnce(Vec<String>),
) -> Result<(), String> {
    let kms = KmsService::new(cfg.name.clone(), ChaCha8Rng::seed_from_u64(cfg.seed));
    let net = TokioNet::new(cfg.listen.ip);
    let listener = net
        .bind(cfg.listen.port)
        .await
        .map_err(|e| format!("bind {}:{}: {e}", cfg.listen.ip, cfg.listen.port))?;
    let addr = listener
        .local_addr()
        .unwrap_or(SocketAddr::new(cfg.listen.ip, cfg.listen.port));
    on_ready(vec![format!("listening http {addr}")]);
    crate::kms::http::serve_listener(net, Rc::new(RefCell::new(kms)), listener)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_out_of_range_are_refused_while_reading() {
        let cloud = serde_json::json!({
            "admin_token": "a",
            "listen": {"port": 0},
            "kms": {"port": 8444},
        });
        let e = serde_json::from_value::<CloudServeConfig>(cloud).expect_err("refused");
        assert!(e.to_string().contains("port 0 is out of range"), "{e}");
        let cloud = serde_json::json!({
            "admin_token": "a",
            "listen": {"port": 8443},
            "kms": {"port": 65536},
        });
        let e = serde_json::from_value::<CloudServeConfig>(cloud).expect_err("refused");
        assert!(e.to_string().contains("port 65536"), "{e}");
        let kms = serde_json::json!({"listen": {"port": -1}});
        let e = serde_json::from_value::<KmsServeConfig>(kms).expect_err("refused");
        assert!(e.to_string().contains("port -1"), "{e}");
        let kms = serde_json::json!({"listen": {"port": 8444}});
        assert!(serde_json::from_value::<KmsServeConfig>(kms).is_ok());
    }
}
