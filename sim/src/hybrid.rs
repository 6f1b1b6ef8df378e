//! The hybrid half of the world: the Webex cloud (with its KMS), the Expressway-C nodes that
//! run the real connector, and the Webex App client farms.
//!
//! Setup that a real deployment does by hand happens here, before the simulation starts, as
//! Control Hub configuration: Expressway clusters are created in the cloud (registration
//! tokens issued) and users provisioned with their entitlements. After that, hosts only talk
//! over turmoil's network. The cloud's and the connectors' state is reachable from the runner
//! read-only, for sampling (status page, sessions); only faults write into it.

use crate::rng::RngFactory;
use crate::scenario::{ClientSel, Coresident, ExpresswaySize, Scenario, Workload};
use crate::topology::{self, UserSpec};
use connector::core::config::{ConnectorConfig, ImpPublisher, Proxy};
use connector::core::node::{ConnectorNode, NodeSettings};
use connector::io::driver::{self, Peers};
use connector::io::http::Method;
use connector::io::net::{Net as _, TurmoilNet};
use fakes::cloud::api::Request;
use fakes::cloud::assignment::{Coresidency, NodeSize};
use fakes::cloud::http::{CLOUD_HOST, CLOUD_PORT};
use fakes::cloud::{Cloud, CloudConfig};
use fakes::observe::Recorder;
use fakes::webex::{Mix, PresenceSettings, WebexPlan, WebexSpec, run_webex};
use rand::RngExt as _;
use serde_json::{Value, json};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// The Control Hub administrator's token (setup only).
const ADMIN_TOKEN: &str = "hmsim-admin";
/// The XEP-0114 secret shared by every IM&P node and connector of a run.
pub const COMPONENT_SECRET: &str = "hmsim-component-secret";
/// The IM&P platform administrator account (spec 17: the AXL user must differ).
pub const PLATFORM_ADMIN: &str = "admin";
/// Session opens per second a connector allows itself towards IM&P in normal operation.
pub const SESSION_RATE_PER_S: f64 = 50.0;
/// Webex users log in spread over this window after the start.
pub const WEBEX_LOGIN_SPREAD: Duration = Duration::from_secs(30);

/// Read-only handle on a connector core, for sampling.
pub type ConnectorSlot = Rc<RefCell<Option<Rc<RefCell<ConnectorNode>>>>>;
/// A connector core and how many of its session moves were read.
pub type MovesSeen = (Rc<RefCell<ConnectorNode>>, u64);

/// What the cloud's body tap found: every request body is scanned for a message tag
/// (`[[id]]`), which only plaintext can contain (JWE compact is base64url and dots).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeakLog {
    /// Bodies scanned.
    pub scanned: u64,
    /// Leaks: "route at time: excerpt", bounded by [`LEAKS_KEPT_MAX`].
    pub leaks: Vec<String>,
    /// Leaks in all (including those not kept).
    pub leaks_total: u64,
}

/// Leaks quoted in full; beyond this only counted.
pub const LEAKS_KEPT_MAX: usize = 20;

/// A body tap recording plaintext leaks into `log`.
pub fn plaintext_tap(log: Rc<RefCell<LeakLog>>) -> fakes::cloud::BodyTap {
    Box::new(move |b: &fakes::cloud::ReceivedBody| {
        let mut l = log.borrow_mut();
        l.scanned += 1;
        if let Some(at) = b.body.find("[[") {
            l.leaks_total += 1;
            if l.leaks.len() < LEAKS_KEPT_MAX {
                let excerpt: String = b.body[at..].chars().take(60).collect();
                l.leaks
                    .push(format!("{} at {} ms: {excerpt}", b.route, b.at_ms));
            }
        }
    })
}

/// The `no_plaintext_at_cloud` verdict on a leak log.
pub fn plaintext_check(log: &LeakLog) -> (reports::Status, String) {
    if log.scanned == 0 {
        return (
            reports::Status::Fail,
            "the cloud received no body: the check exercised nothing".into(),
        );
    }
    if log.leaks_total == 0 {
        return (
            reports::Status::Pass,
            format!(
                "{} bodies received by the cloud, none with plaintext",
                log.scanned
            ),
        );
    }
    (
        reports::Status::Fail,
        format!(
            "{} of {} bodies carried plaintext (e.g. {})",
            log.leaks_total,
            log.scanned,
            log.leaks.join("; ")
        ),
    )
}

/// Handles the runner keeps on the hybrid hosts.
#[derive(Default)]
pub struct HybridHandles {
    /// The cloud core.
    pub cloud: Option<Rc<RefCell<Cloud>>>,
    /// What the cloud's body tap found.
    pub leaks: Rc<RefCell<LeakLog>>,
    /// The KMS host's service (for the outage fault).
    pub kms: Option<Rc<RefCell<fakes::kms_http::KmsService>>>,
    /// The run's RNGs (seeded error injection).
    pub rngs: Option<RngFactory>,
    /// Every host of the run (a cloud outage cuts the cloud from all of them).
    pub hosts: Vec<String>,
    /// Connector cores by Expressway host.
    pub connectors: BTreeMap<String, ConnectorSlot>,
    /// Per Expressway host, the core whose session moves were read and how many
    /// ([`collect_moves`]); a restarted connector is a new core and starts again at 0.
    pub moves_seen: RefCell<BTreeMap<String, MovesSeen>>,
    /// The cores [`sample_bridge`] read last time, by Expressway host: while they stay the
    /// same it reads only their changed sessions; a restart (a new core) means a full scan.
    pub bridge_cores: RefCell<BTreeMap<String, Rc<RefCell<ConnectorNode>>>>,
}

/// The email a user has in Webex (every user has one there, spec 24; IM&P may lack it).
pub fn webex_email(u: &UserSpec, s: &Scenario) -> String {
    format!("{}@{}", u.userid, s.topology.domain)
}

fn admin(cloud: &mut Cloud, now: Duration, method: Method, path: &str, body: Value) -> Value {
    let req = Request {
        method,
        path: path.into(),
        token: Some(ADMIN_TOKEN.into()),
        body: body.to_string().into_bytes(),
    };
    cloud.handle_request(now, req).body
}

fn size_name(s: ExpresswaySize) -> &'static str {
    match s {
        ExpresswaySize::Small => "small",
        ExpresswaySize::Medium => "medium",
        ExpresswaySize::Large => "large",
    }
}

/// The cloud's capacity inputs for an Expressway cluster: VM size and coresidency (spec 2-7).
pub fn capacity_shape(e: &crate::scenario::ExpresswayCluster) -> (NodeSize, Coresidency) {
    let size = match e.size {
        ExpresswaySize::Small => NodeSize::Small,
        ExpresswaySize::Medium => NodeSize::Medium,
        ExpresswaySize::Large => NodeSize::Large,
    };
    let (cal, call) = (
        e.coresident.contains(&Coresident::Calendar),
        e.coresident.contains(&Coresident::Call),
    );
    let coresidency = match (cal, call, e.mra) {
        (_, _, true) => Coresidency::Mra,
        (true, true, _) => Coresidency::CalendarCallMessage,
        (true, false, _) | (false, true, _) => Coresidency::CalendarMessage,
        _ => Coresidency::None,
    };
    (size, coresidency)
}

/// Creates the cloud, provisions users and Expressway clusters, adds the `cloud` host.
/// Returns the registration token of each Expressway cluster.
fn add_cloud(
    sim: &mut turmoil::Sim<'_>,
    s: &Scenario,
    rngs: &RngFactory,
    users: &[UserSpec],
    h: &mut HybridHandles,
) -> BTreeMap<String, String> {
    let cfg = CloudConfig {
        domain: s.topology.domain.clone(),
        admin_token: ADMIN_TOKEN.into(),
        kms_host: match s.topology.kms {
            crate::scenario::KmsKind::Cloud => fakes::kms::CLOUD_HOST.into(),
            crate::scenario::KmsKind::Hds => fakes::kms::HDS_HOST.into(),
        },
    };
    // The KMS is its own host (cloud `kms`, or on-premises `hds`); the cloud relays key
    // requests to it over the network (spec 56-57). Its keys survive restarts.
    let kms_name = cfg.kms_host.clone();
    let kms = Rc::new(RefCell::new(fakes::kms_http::KmsService::new(
        kms_name.clone(),
        rngs.named("kms"),
    )));
    h.kms = Some(kms.clone());
    sim.host(kms_name.as_str(), move || {
        let kms = kms.clone();
        async move {
            fakes::kms_http::serve(TurmoilNet, kms, fakes::kms_http::KMS_PORT).await?;
            Ok(())
        }
    });
    let mut cloud = Cloud::with_remote_kms(
        cfg,
        rngs.named("cloud"),
        kms_name,
        fakes::kms_http::KMS_PORT,
    );
    let mut tokens = BTreeMap::new();
    for e in &s.topology.expressway_clusters {
        let coresidency = coresidency(e);
        let body = json!({"name": e.name, "size": size_name(e.size), "coresidency": coresidency});
        let v = admin(
            &mut cloud,
            Duration::ZERO,
            Method::Post,
            "/v1/admin/clusters",
            body,
        );
        if let Some(t) = v["registration_token"].as_str() {
            tokens.insert(e.name.clone(), t.to_string());
        }
    }
    for u in users {
        let ents = if u.hybrid {
            json!(["paid_licence", "hybrid_message"])
        } else {
            json!(["paid_licence"])
        };
        let body =
            json!({"email": webex_email(u, s), "password": u.password, "entitlements": ents});
        admin(
            &mut cloud,
            Duration::ZERO,
            Method::Post,
            "/v1/admin/users",
            body,
        );
    }
    // Provisioning bodies above are the administrator's, not message traffic: scan from here.
    cloud.set_body_tap(plaintext_tap(h.leaks.clone()));
    let cloud = Rc::new(RefCell::new(cloud));
    h.cloud = Some(cloud.clone());
    sim.host(CLOUD_HOST, move || {
        let cloud = cloud.clone();
        async move {
            fakes::cloud::http::serve(TurmoilNet, cloud, CLOUD_PORT).await?;
            Ok(())
        }
    });
    tokens
}

/// The cloud's coresidency description for an Expressway cluster (spec 6-7).
fn coresidency(e: &crate::scenario::ExpresswayCluster) -> Value {
    json!(capacity_shape(e).1)
}

/// The connector settings of node `n` of Expressway cluster `e`.
/// The Message Service configuration an Expressway cluster of the scenario carries.
pub fn connector_config(s: &Scenario, e: &crate::scenario::ExpresswayCluster) -> ConnectorConfig {
    ConnectorConfig {
        cluster: e.name.clone(),
        nodes: (1..=e.nodes)
            .map(|k| match (&e.hostname, k) {
                (Some(h), 1) => h.clone(),
                _ => topology::exp_host(&e.name, k),
            })
            .collect(),
        publishers: e
            .imp_clusters
            .iter()
            .filter_map(|name| s.topology.imp_clusters.iter().find(|c| &c.name == name))
            .map(|c| ImpPublisher {
                cluster: c.name.clone(),
                host: topology::imp_host(&c.name, 1),
                axl_username: c.axl.username.clone(),
                axl_password: c.axl.password.clone(),
                certificate_validation: e.certificate_validation,
                platform_admin: PLATFORM_ADMIN.into(),
            })
            .collect(),
        proxy: Proxy::None,
        enabled: e.enabled,
    }
}

fn settings(
    s: &Scenario,
    e: &crate::scenario::ExpresswayCluster,
    n: u32,
    token: Option<String>,
) -> NodeSettings {
    let mut cluster = connector_config(s, e);
    let hostname = cluster.nodes[(n - 1) as usize].clone();
    if e.hostname_check == crate::scenario::HostnameCheck::Skip {
        // The local `lowercase-hostname` rule is bypassed: it sees lowercase names, while the
        // node registers with its real hostname, which only Control Hub then refuses.
        cluster.nodes = cluster.nodes.iter().map(|h| h.to_lowercase()).collect();
    }
    let others = s
        .topology
        .expressway_clusters
        .iter()
        .filter(|o| o.name != e.name)
        .map(|o| connector_config(s, o))
        .collect();
    NodeSettings {
        hostname,
        primary: n == 1,
        cluster,
        others,
        registration_token: token.filter(|_| e.registration_token),
        session_rate_per_s: SESSION_RATE_PER_S,
        migration_rate: (e.migration.rate.count, e.migration.rate.per),
        detection_delay_max: e.migration.detection_delay_max.0,
    }
}

/// Adds one host per Expressway node, each running the real connector.
fn add_expressways(
    sim: &mut turmoil::Sim<'_>,
    s: &Scenario,
    rngs: &RngFactory,
    tokens: &BTreeMap<String, String>,
    h: &mut HybridHandles,
) {
    for e in &s.topology.expressway_clusters {
        for n in 1..=e.nodes {
            let host = topology::exp_host(&e.name, n);
            let settings = settings(s, e, n, tokens.get(&e.name).cloned());
            let slot: ConnectorSlot = Rc::default();
            h.connectors.insert(host.clone(), slot.clone());
            let incarnation = Rc::new(Cell::new(0u64));
            let seed = rngs.sub_seed(&format!("connector/{host}"));
            sim.host(host.as_str(), move || {
                // A restart rediscovers (spec 22): a fresh core each start.
                let inc = incarnation.get();
                incarnation.set(inc + 1);
                let core = Rc::new(RefCell::new(ConnectorNode::new(
                    settings.clone(),
                    TurmoilNet.now(),
                )));
                *slot.borrow_mut() = Some(core.clone());
                async move {
                    driver::run(
                        TurmoilNet,
                        core,
                        Peers::standard(CLOUD_HOST, COMPONENT_SECRET),
                        seed ^ inc,
                    )
                    .await;
                    Ok(())
                }
            });
        }
    }
}

/// The Webex plans of users who send from Webex, by user index.
pub fn webex_plans(
    s: &Scenario,
    rngs: &RngFactory,
    users: &[UserSpec],
    senders: &BTreeMap<u32, bool>,
) -> BTreeMap<u32, WebexPlan> {
    let mut plans = BTreeMap::new();
    for (wi, w) in s.workloads.iter().enumerate() {
        let Workload::Chat(c) = w else { continue };
        let Some(mean) = c.rate_per_user.mean_interval() else {
            continue;
        };
        let mut rng = rngs.named(&format!("workload/{wi}/webex-contacts"));
        let pool: Vec<&UserSpec> = users.iter().filter(|u| receives(c.to, u)).collect();
        let m = &c.mix;
        let mix = Mix {
            text: m.text.fraction(),
            edit: m.edit.fraction(),
            delete: m.delete.fraction(),
            file: m.file.fraction(),
            typing: m.typing.fraction(),
            read: m.read.fraction(),
        };
        let start = c
            .start
            .map(|d| d.0)
            .unwrap_or(crate::runner::CHAT_START_DEFAULT.min(s.duration.0 / 2));
        let stop = c.stop.unwrap_or(s.duration).0;
        for u in users.iter().filter(|u| {
            u.webex && senders.get(&u.index) == Some(&true) && c.from != ClientSel::Jabber
        }) {
            let contacts = pick_contacts(&mut rng, &pool, u, c.contacts_per_user as usize, |p| {
                webex_email(p, s)
            });
            plans.insert(
                u.index,
                WebexPlan {
                    contacts,
                    mean_interval: mean,
                    start,
                    stop,
                    mix,
                },
            );
        }
    }
    plans
}

/// Whether `u` is in the recipient pool of a workload addressed to `sel`.
pub fn receives(sel: ClientSel, u: &UserSpec) -> bool {
    match sel {
        ClientSel::Any => u.jabber || u.webex,
        ClientSel::Jabber => u.jabber,
        ClientSel::Webex => u.webex,
    }
}

/// Up to `want` distinct contacts other than `u`, drawn from `pool` (bounded draws).
pub fn pick_contacts(
    rng: &mut impl rand::Rng,
    pool: &[&UserSpec],
    u: &UserSpec,
    want: usize,
    name: impl Fn(&UserSpec) -> String,
) -> Vec<String> {
    let want = want.min(pool.len().saturating_sub(1));
    let mut out = Vec::new();
    // Bounded: at most 8 draws per wanted contact.
    for _ in 0..want * 8 {
        if out.len() == want {
            break;
        }
        let peer = pool[rng.random_range(0..pool.len())];
        let n = name(peer);
        if peer.index != u.index && !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// Adds the Webex client farms: one task per user of the Webex App.
fn add_webex_farms(
    sim: &mut turmoil::Sim<'_>,
    s: &Scenario,
    rngs: &RngFactory,
    users: &[UserSpec],
    plans: BTreeMap<u32, WebexPlan>,
    recorder: Rc<dyn Recorder>,
) {
    let farms = s.topology.client_farms.webex;
    let plans = Rc::new(plans);
    let spaces = Rc::new(crate::group_chat_check::space_plans(s, rngs, users));
    for k in 1..=farms {
        let host = format!("webex-{k}");
        let mine: Rc<Vec<UserSpec>> = Rc::new(
            users
                .iter()
                .filter(|u| u.webex && u.index % farms + 1 == k)
                .cloned()
                .collect(),
        );
        let incarnation = Rc::new(Cell::new(0u32));
        let (rngs, plans, recorder, s) = (*rngs, plans.clone(), recorder.clone(), s.clone());
        let spaces = spaces.clone();
        let host_name = host.clone();
        sim.host(host.as_str(), move || {
            let inc = incarnation.get();
            incarnation.set(inc + 1);
            for u in mine.iter() {
                let mut rng = rngs.named(&format!("webex/{}/{inc}", u.userid));
                let login_at = WEBEX_LOGIN_SPREAD.mul_f64(rng.random_range(0.0..1.0));
                let spec = WebexSpec {
                    net: TurmoilNet,
                    host: host_name.clone(),
                    cloud: (CLOUD_HOST.into(), CLOUD_PORT),
                    email: webex_email(u, &s),
                    password: u.password.clone(),
                    plan: plans.get(&u.index).cloned(),
                    presence: PresenceSettings {
                        hidden: u.hidden,
                        // 24 h, the longest Webex allows (spec 52).
                        dnd_minutes: u.dnd.then_some(24 * 60),
                        out_of_office: u.ooo,
                    },
                    login_at,
                    device: format!("webex.{inc}"),
                    rng,
                    recorder: recorder.clone(),
                };
                tokio::task::spawn_local(run_webex(spec));
                let ctx = (&s, &rngs, &recorder);
                crate::group_chat_check::spawn_spaces(
                    spaces.get(&u.index),
                    u,
                    inc,
                    &host_name,
                    ctx,
                );
            }
            async move {
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
}

/// Adds every hybrid host the scenario needs; nothing when it has no Webex side.
pub fn add_hosts(
    sim: &mut turmoil::Sim<'_>,
    s: &Scenario,
    rngs: &RngFactory,
    users: &[UserSpec],
    senders: &BTreeMap<u32, bool>,
    recorder: Rc<dyn Recorder>,
) -> HybridHandles {
    let mut h = HybridHandles {
        rngs: Some(*rngs),
        hosts: topology::all_hosts(s),
        ..Default::default()
    };
    if !topology::uses_cloud(s) {
        return h;
    }
    let tokens = add_cloud(sim, s, rngs, users, &mut h);
    add_expressways(sim, s, rngs, &tokens, &mut h);
    let plans = webex_plans(s, rngs, users, senders);
    add_webex_farms(sim, s, rngs, users, plans, recorder);
    h
}

/// Which client each user sends from when both are possible (`from: any`): Jabber-only and
/// Webex-only users use theirs; users of both pick one per the seed. `true` = Webex.
pub fn sending_client(rngs: &RngFactory, users: &[UserSpec]) -> BTreeMap<u32, bool> {
    let mut rng = rngs.named("sending-client");
    users
        .iter()
        .map(|u| {
            let webex = match (u.jabber, u.webex) {
                (true, true) => rng.random_range(0..2) == 1,
                (false, true) => true,
                _ => false,
            };
            (u.index, webex)
        })
        .collect()
}

/// Applies a service fault (cloud, KMS, connector, AXL) through the service itself.
pub fn apply(
    sim: &mut turmoil::Sim<'_>,
    h: &HybridHandles,
    action: &crate::faults::Action,
    now: Duration,
) {
    use crate::faults::{Action, Service};
    let Action::Service(svc) = action else { return };
    match svc {
        Service::CloudOutage(on) => {
            for other in h.hosts.iter().filter(|x| x.as_str() != CLOUD_HOST) {
                if *on {
                    sim.partition(CLOUD_HOST, other.as_str());
                } else {
                    sim.repair(CLOUD_HOST, other.as_str());
                }
            }
        }
        Service::KmsOutage(on) => {
            if let Some(k) = &h.kms {
                k.borrow_mut().set_outage(*on);
            }
        }
        Service::HttpErrors(rate, status) => {
            if let (Some(c), Some(r)) = (&h.cloud, &h.rngs) {
                c.borrow_mut()
                    .set_http_errors(*rate, *status, r.named("http-errors"));
            }
        }
        Service::ConnectorEnabled(node, on) => {
            if let Some(core) = h.connectors.get(node).and_then(|s| s.borrow().clone()) {
                core.borrow_mut().set_enabled(*on, now);
            }
        }
        Service::Maintenance(node, on) => {
            if let Some(c) = &h.cloud {
                let path = format!("/v1/admin/connectors/{node}/maintenance");
                admin(
                    &mut c.borrow_mut(),
                    now,
                    Method::Put,
                    &path,
                    json!({"on": on}),
                );
            }
        }
        Service::AxlStopped(node, stopped) => {
            crate::imp::set_axl_stopped(node, *stopped);
        }
        Service::PrgHighAvailability(cluster, on) => {
            crate::imp::set_prg_high_availability(cluster, *on);
        }
        Service::Reactivate => {
            if let Some(c) = &h.cloud {
                let mut c = c.borrow_mut();
                let errors: Vec<String> = c
                    .org()
                    .users()
                    .filter(|u| u.state == fakes::cloud::org::HmState::Error)
                    .map(|u| u.email.clone())
                    .collect();
                for email in errors {
                    let path = format!("/v1/admin/users/{email}/reactivate");
                    admin(&mut c, now, Method::Post, &path, Value::Null);
                }
            }
        }
    }
}

/// Connector sessions are sampled this often for the interop oracle.
pub const BRIDGE_SAMPLE: Duration = Duration::from_secs(1);

/// Records which users' connector sessions are open now (changes only). Reads the users whose
/// session opened or closed since the last sample ([`ConnectorNode::take_open_changes`]), not
/// every session: a Large node has 15,000, sampled every second. A connector that restarted
/// or went away since the last sample makes it look at every user once.
pub fn sample_bridge(h: &HybridHandles, out: &mut crate::runner::RunOutput, now: Duration) {
    if h.connectors.is_empty() {
        return;
    }
    collect_moves(h, out);
    let cores: BTreeMap<String, Rc<RefCell<ConnectorNode>>> = h
        .connectors
        .iter()
        .filter_map(|(host, slot)| Some((host.clone(), slot.borrow().as_ref().cloned()?)))
        .collect();
    let mut changed = std::collections::BTreeSet::new();
    for core in cores.values() {
        changed.append(&mut core.borrow_mut().take_open_changes());
    }
    let same_cores = {
        let last = h.bridge_cores.borrow();
        last.len() == cores.len()
            && last
                .iter()
                .zip(&cores)
                .all(|((h1, c1), (h2, c2))| h1 == h2 && Rc::ptr_eq(c1, c2))
    };
    if !same_cores {
        // Everyone who was or may be open: the old cores' sessions are gone.
        changed.extend(out.bridge.keys().cloned());
        for core in cores.values() {
            changed.extend(core.borrow().sessions().users().cloned());
        }
        *h.bridge_cores.borrow_mut() = cores.clone();
    }
    for user in changed {
        let open = cores.values().any(|c| {
            matches!(
                c.borrow().sessions().state(&user),
                Some(connector::core::sessions::SessionState::Open)
            )
        });
        record_bridge(out, user, open, now);
    }
}

/// Appends `user`'s session going up or down at `now` to the bridge record, if it changed.
fn record_bridge(out: &mut crate::runner::RunOutput, user: String, open: bool, now: Duration) {
    let was_open = out
        .bridge
        .get(&user)
        .and_then(|ev| ev.last())
        .is_some_and(|(_, up)| *up);
    if open == was_open {
        return;
    }
    let ev = out.bridge.entry(user).or_default();
    if open && !ev.is_empty() {
        out.observer.hit("connector: session reopened");
    }
    if !open {
        out.observer.hit("connector: session closed");
    }
    ev.push((now, open));
}

/// Appends the session moves (failover, fallback) the connectors made since the last call to
/// the series `connector_moves/<host>/<from>/<to>`: one point per move, at its exact time,
/// valued with the number of such moves so far (the migration check's input).
pub fn collect_moves(h: &HybridHandles, out: &mut crate::runner::RunOutput) {
    let mut seen = h.moves_seen.borrow_mut();
    for (host, slot) in &h.connectors {
        let Some(core) = slot.borrow().as_ref().cloned() else {
            continue;
        };
        let read = match seen.get(host) {
            Some((c, n)) if Rc::ptr_eq(c, &core) => *n,
            _ => 0,
        };
        let node = core.borrow();
        let (moves, total) = node.sessions().moves();
        let fresh = (total.saturating_sub(read) as usize).min(moves.len());
        for m in moves.iter().skip(moves.len() - fresh) {
            let series = out
                .series
                .entry(format!("connector_moves/{host}/{}/{}", m.from, m.to))
                .or_default();
            let so_far = series.last().map_or(0.0, |p| p.1);
            series.push((m.at.as_secs_f64(), so_far + 1.0));
        }
        drop(node);
        seen.insert(host.clone(), (core, total));
    }
}

/// Time series of the connectors: open sessions per IM&P node, and every field of the status
/// page (spec 66-71) as `status/<host>/<field>` and `status/<host>/<imp node>/<field>`;
/// text fields as numbers: connectivity 1 = Operational, node status 1 = Operational,
/// certificate validation 1 = on, the version as a number (`14.0`).
///
/// Also what `within_capacity` reads: per connector node the users the cloud assigned to it
/// (`connector_assigned/<host>`) and its open sessions (`connector_open_sessions/<host>`), and
/// the cloud's own view ([`sample_cloud`]).
pub fn sample_series(h: &HybridHandles, out: &mut crate::runner::RunOutput, now: Duration) {
    let t = now.as_secs_f64();
    sample_cloud(h, out, t);
    for (host, slot) in &h.connectors {
        let Some(core) = slot.borrow().as_ref().cloned() else {
            continue;
        };
        let core = core.borrow();
        for (node, n) in core.sessions().open_per_node() {
            out.series
                .entry(format!("connector_sessions/{host}/{node}"))
                .or_default()
                .push((t, n as f64));
        }
        let mut push = |name: String, n: usize| {
            out.series.entry(name).or_default().push((t, n as f64));
        };
        push(format!("connector_assigned/{host}"), core.assigned().len());
        let open: usize = core.sessions().open_per_node().values().sum();
        push(format!("connector_open_sessions/{host}"), open);
        for (k, v) in crate::migration_check::page_fields(&core.status_page(now)) {
            out.series
                .entry(format!("status/{host}/{k}"))
                .or_default()
                .push((t, v));
        }
    }
}

/// The cloud's view at `t`: users assigned per connector node and whether the node takes users
/// (`cloud_assigned/<node>`, `cloud_eligible/<node>`), and how many users are in each Hybrid
/// Message state (`cloud_users/<state>`, spec 25-27).
fn sample_cloud(h: &HybridHandles, out: &mut crate::runner::RunOutput, t: f64) {
    let Some(cloud) = &h.cloud else { return };
    let cloud = cloud.borrow();
    let mut push = |name: String, v: f64| out.series.entry(name).or_default().push((t, v));
    let a = cloud.assignment();
    for cluster in a.clusters() {
        let Some(st) = a.cluster_status(cluster) else {
            continue;
        };
        for n in st.nodes {
            push(format!("cloud_assigned/{}", n.node), f64::from(n.assigned));
            let eligible = n.up && !n.maintenance;
            push(
                format!("cloud_eligible/{}", n.node),
                f64::from(u8::from(eligible)),
            );
        }
    }
    let mut states: BTreeMap<String, f64> = BTreeMap::new();
    for u in cloud.org().users() {
        *states
            .entry(format!("cloud_users/{:?}", u.state))
            .or_default() += 1.0;
    }
    for (name, n) in states {
        push(name, n);
    }
}

/// Every Hybrid Message state change of a user, as the cloud recorded it when it happened
/// (spec 25-27): `cloud: user Pending -> Active`, `cloud: user Pending -> Error (<reason>)`.
fn hit_transitions(out: &crate::runner::RunOutput, u: &fakes::cloud::org::User) {
    use fakes::cloud::org::HmState;
    let mut from = HmState::NotEnabled;
    for e in &u.history {
        let why = match (e.state, e.reason.as_deref()) {
            (HmState::Error, Some(r)) => format!(" ({r})"),
            _ => String::new(),
        };
        out.observer
            .hit(&format!("cloud: user {from:?} -> {:?}{why}", e.state));
        from = e.state;
    }
}

/// Final connector counters into the run output.
pub fn final_stats(h: &HybridHandles, out: &mut crate::runner::RunOutput) {
    collect_moves(h, out);
    if let Some(cloud) = &h.cloud {
        out.plaintext = Some(h.leaks.borrow().clone());
        let cloud = cloud.borrow();
        // Control Hub's view of every Hybrid Message user (spec 25-27), as coverage.
        for u in cloud.org().users() {
            let what = match (&u.state, u.reason.as_deref()) {
                (fakes::cloud::org::HmState::Error, Some(r)) => {
                    format!("cloud: users in Error ({r})")
                }
                (state, _) => format!("cloud: users {state:?}"),
            };
            out.observer.hit(&what);
            hit_transitions(out, u);
        }
        // Rare events counted where they happened in the cloud (reassignment, rebalancing,
        // maintenance drains, refused registrations, reactivations).
        for (what, n) in cloud.coverage() {
            out.observer.hit_n(what, *n);
        }
        let enabled = cloud.org().hm_enabled_count();
        let assigned = cloud.assignment().assigned_count();
        out.observer.hit_n(
            "cloud: enabled users unassigned at the end",
            enabled.saturating_sub(assigned) as u64,
        );
        for u in &out.users {
            let st = cloud.presence().state(out.elapsed, &u.jid);
            let p = crate::presence_check::from_cloud(
                st.last_active_ms,
                st.dnd_until_ms,
                st.out_of_office,
                st.hidden,
            );
            out.webex_presence.insert(u.jid.clone(), p);
        }
    }
    for (host, slot) in &h.connectors {
        let Some(core) = slot.borrow().as_ref().cloned() else {
            continue;
        };
        let core = core.borrow();
        let st = core.stats();
        let ss = core.sessions().stats();
        let m: BTreeMap<String, f64> = [
            ("to_webex", st.to_webex),
            ("to_jabber", st.to_jabber),
            ("not_bridged", st.not_bridged),
            ("rejected", st.rejected),
            ("http_errors", st.http_errors),
            ("keys_fetched", st.keys_fetched),
            ("spaces_created", st.spaces_created),
            ("dropped_full", st.dropped_full),
            ("deduplicated", st.deduplicated),
            ("sessions_opened", ss.opened),
            ("sessions_refused_rate", ss.refused_rate),
            ("sessions_failed", ss.failed),
            ("sessions_moved", core.sessions().moves().1),
            (
                "sessions_redirected_while_moving",
                ss.redirected_while_moving,
            ),
            ("sessions_redirects_followed", ss.redirects_followed),
            ("sessions_handovers_taken_over", ss.handovers_taken_over),
            ("sessions_handovers_expired", ss.handovers_expired),
            ("dropped_unserved", st.dropped_unserved),
            ("handed_back", st.handed_back),
            ("duplicate_events", st.duplicate_events),
            ("assigned", core.assigned().len() as u64),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v as f64))
        .collect();
        out.connector_stats.insert(host.clone(), m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planted_plaintext_body_fails_the_check() {
        let cfg = CloudConfig {
            domain: "example.com".into(),
            admin_token: ADMIN_TOKEN.into(),
            kms_host: "kms".into(),
        };
        let mut cloud = Cloud::new(cfg, rand_chacha::rand_core::SeedableRng::seed_from_u64(1));
        let log: Rc<RefCell<LeakLog>> = Rc::default();
        cloud.set_body_tap(plaintext_tap(log.clone()));
        let encrypted =
            json!({"verb": "post", "encrypted_text": "eyJhbGciOiJkaXIifQ..aXY.Y3Q.dGFn"});
        let planted = json!({"verb": "post", "encrypted_text": "hello [[alice.webex.0.1]]"});
        for body in [encrypted, planted] {
            let req = Request {
                method: Method::Post,
                path: "/v1/spaces/s/activities".into(),
                token: None,
                body: body.to_string().into_bytes(),
            };
            cloud.handle_request(Duration::ZERO, req);
        }
        let (status, detail) = plaintext_check(&log.borrow());
        assert_eq!(status, reports::Status::Fail);
        assert!(
            detail.contains("1 of 2 bodies carried plaintext"),
            "{detail}"
        );
        assert!(detail.contains("[[alice.webex.0.1]]"), "{detail}");
        let clean = LeakLog {
            scanned: 5,
            ..Default::default()
        };
        assert_eq!(plaintext_check(&clean).0, reports::Status::Pass);
    }
}
