//! The hybrid half of the world: the Webex cloud (with its KMS), the Expressway-C nodes that
//! run the real connector, and the Webex App client farms.
//!
//! Setup that a real deployment does by hand happens here, before the simulation starts, as
//! Control Hub configuration: Expressway clusters are created in the cloud (registration
//! tokens issued) and users provisioned with their entitlements. After that, hosts only talk
//! over turmoil's network. The cloud's and the connectors' state is reachable from the runner
//! read-only, for sampling (status page, sessions); only faults write into it.

use crate::history::LeakLog;
use crate::plan::Plan;
use crate::plan::connector::{
    ADMIN_TOKEN, COMPONENT_SECRET, WEBEX_LOGIN_SPREAD, coresidency, node_settings, size_name,
    webex_email,
};
use crate::plan::rng::RngFactory;
use crate::plan::topology::{self, UserSpec};
use crate::plan::workload::SpacePlan;
use crate::scenario::Scenario;
use connector::core::node::ConnectorNode;
use connector::io::driver::{self, Peers};
use connector::io::net::{Net as _, TurmoilNet};
use connector::proto::http::Method;
use fakes::clients::webex::{PresenceSettings, WebexPlan, WebexSpec, run_webex};
use fakes::cloud::api::Request;
use fakes::cloud::http::{CLOUD_HOST, CLOUD_PORT};
use fakes::cloud::{Cloud, CloudConfig};
use fakes::observe::Recorder;
use rand::RngExt as _;
use serde_json::{Value, json};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// Read-only handle on a connector core, for sampling.
pub type ConnectorSlot = Rc<RefCell<Option<Rc<RefCell<ConnectorNode>>>>>;
/// A connector core and how many of its session moves were read.
pub type MovesSeen = (Rc<RefCell<ConnectorNode>>, u64);

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

/// Handles the runner keeps on the hybrid hosts.
#[derive(Default)]
pub struct HybridHandles {
    /// The cloud core.
    pub cloud: Option<Rc<RefCell<Cloud>>>,
    /// What the cloud's body tap found.
    pub leaks: Rc<RefCell<LeakLog>>,
    /// The KMS host's service (for the outage fault).
    pub kms: Option<Rc<RefCell<fakes::kms::KmsService>>>,
    /// The run's RNGs (seeded error injection).
    pub rngs: Option<RngFactory>,
    /// Every host of the run (a cloud outage cuts the cloud from all of them).
    pub hosts: Vec<String>,
    /// Connector cores by Expressway host.
    pub connectors: BTreeMap<String, ConnectorSlot>,
    /// Per Expressway host, the core whose session moves were read and how many
    /// (`run::sample`); a restarted connector is a new core and starts again at 0.
    pub moves_seen: RefCell<BTreeMap<String, MovesSeen>>,
    /// The cores the bridge sampling read last time, by Expressway host: while they stay the
    /// same it reads only their changed sessions; a restart (a new core) means a full scan.
    pub bridge_cores: RefCell<BTreeMap<String, Rc<RefCell<ConnectorNode>>>>,
}

/// A Control Hub administrator's request to the cloud core (setup and service faults).
pub fn admin(cloud: &mut Cloud, now: Duration, method: Method, path: &str, body: Value) -> Value {
    let req = Request {
        method,
        path: path.into(),
        token: Some(ADMIN_TOKEN.into()),
        body: body.to_string().into_bytes(),
    };
    cloud.handle_request(now, req).body
}

/// Adds the KMS host `name`: its own host (cloud `kms`, or on-premises `hds`); the cloud
/// relays key requests to it over the network (spec 56-57). Its keys survive restarts.
fn add_kms(sim: &mut turmoil::Sim<'_>, name: &str, rngs: &RngFactory, h: &mut HybridHandles) {
    let kms = Rc::new(RefCell::new(fakes::kms::KmsService::new(
        name.to_string(),
        rngs.named("kms"),
    )));
    h.kms = Some(kms.clone());
    sim.host(name, move || {
        let kms = kms.clone();
        async move {
            fakes::kms::http::serve(TurmoilNet, kms, fakes::kms::KMS_PORT).await?;
            Ok(())
        }
    });
}

/// Creates the cloud, provisions users and Expressway clusters, adds the `cloud` host.
/// Returns the registration token of each Expressway cluster.
fn add_cloud(
    sim: &mut turmoil::Sim<'_>,
    s: &Scenario,
    plan: &Plan,
    h: &mut HybridHandles,
) -> BTreeMap<String, String> {
    let (rngs, users) = (&plan.rngs, &plan.users);
    let cfg = CloudConfig {
        domain: s.topology.domain.clone(),
        admin_token: ADMIN_TOKEN.into(),
        kms_host: match s.topology.kms {
            crate::scenario::KmsKind::Cloud => fakes::kms::CLOUD_HOST.into(),
            crate::scenario::KmsKind::Hds => fakes::kms::HDS_HOST.into(),
        },
    };
    let kms_name = cfg.kms_host.clone();
    add_kms(sim, &kms_name, rngs, h);
    let mut cloud =
        Cloud::with_remote_kms(cfg, rngs.named("cloud"), kms_name, fakes::kms::KMS_PORT);
    let connector_nodes = s.topology.expressway_clusters.iter().map(|e| e.nodes);
    cloud.set_kms_relay_nodes(connector_nodes.sum::<u32>() as usize);
    let mut tokens = BTreeMap::new();
    for e in &s.topology.expressway_clusters {
        let coresidency = coresidency(e);
        let hostnames = control_hub_hostnames(s, e);
        let body = json!({"name": e.name, "size": size_name(e.size), "coresidency": coresidency,
            "hostnames": hostnames});
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
    hide_statuses(&mut cloud, s, users);
    set_out_of_office(&mut cloud, s, users);
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

/// Calendar out of office reaches Webex presence through the calendar integration, whether
/// or not the user ever opens the Webex App (spec 55).
fn set_out_of_office(cloud: &mut Cloud, s: &Scenario, users: &[UserSpec]) {
    for u in users.iter().filter(|u| u.ooo) {
        cloud
            .presence_mut()
            .set_out_of_office(&webex_email(u, s), true);
    }
}

/// Users who hide their status in Webex but do not run the Webex App in the run (spec 49:
/// they use only Jabber) unchecked "Show status" before it starts: each signs in once at
/// time zero and sets `hidden`. Webex App users set it themselves when they log in.
fn hide_statuses(cloud: &mut Cloud, s: &Scenario, users: &[UserSpec]) {
    for u in users.iter().filter(|u| u.hidden && !u.webex) {
        let email = webex_email(u, s);
        let login = json!({"email": email, "password": u.password});
        let req = Request {
            method: Method::Post,
            path: "/v1/login".into(),
            token: None,
            body: login.to_string().into_bytes(),
        };
        let answer = cloud.handle_request(Duration::ZERO, req).body;
        let Some(token) = answer["token"].as_str() else {
            continue; // not a Webex user at all (no licence): nothing to hide
        };
        let req = Request {
            method: Method::Put,
            path: "/v1/presence/me".into(),
            token: Some(token.to_string()),
            body: json!({"hidden": true}).to_string().into_bytes(),
        };
        cloud.handle_request(Duration::ZERO, req);
    }
}

/// The hostnames the administrator names for Expressway cluster `e` in Control Hub, which
/// its registration token is issued for: its nodes' FQDNs in lowercase (a node registering
/// with capitals is refused for those, spec 11).
fn control_hub_hostnames(s: &Scenario, e: &crate::scenario::ExpresswayCluster) -> Vec<String> {
    crate::plan::connector::connector_config(s, e)
        .nodes
        .iter()
        .map(|h| h.to_lowercase())
        .collect()
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
            let settings = node_settings(s, e, n, tokens.get(&e.name).cloned());
            let slot: ConnectorSlot = Rc::default();
            h.connectors.insert(host.clone(), slot.clone());
            let incarnation = Rc::new(Cell::new(0u64));
            let seed = rngs.sub_seed(&format!("connector/{host}"));
            let planted = e.test_only_drop_every_nth_to_jabber_after_failover;
            sim.host(host.as_str(), move || {
                // A restart rediscovers (spec 22): a fresh core each start. What registration
                // gave the node survives it, as on a real Expressway (the registration token is
                // single use): the previous incarnation's, handed to the new core.
                let inc = incarnation.get();
                incarnation.set(inc + 1);
                let saved = slot
                    .borrow()
                    .as_ref()
                    .and_then(|c| c.borrow().saved_registration());
                let mut fresh = ConnectorNode::new(settings.clone(), TurmoilNet.now());
                if let Some(saved) = saved {
                    fresh.resume_registration(saved);
                }
                if let Some(n) = planted {
                    fresh.plant_defect_for_tests(n);
                }
                let core = Rc::new(RefCell::new(fresh));
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

/// Adds the Webex client farms: one task per user of the Webex App.
fn add_webex_farms(
    sim: &mut turmoil::Sim<'_>,
    s: &Scenario,
    plan: &Plan,
    recorder: Rc<dyn Recorder>,
) {
    let (rngs, users) = (&plan.rngs, &plan.users);
    let farms = s.topology.client_farms.webex;
    let plans: Rc<BTreeMap<u32, WebexPlan>> = Rc::new(plan.webex.clone());
    let spaces = Rc::new(plan.spaces.clone());
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
                spawn_spaces(spaces.get(&u.index), u, inc, &host_name, ctx);
            }
            async move {
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
}

/// Starts the Webex group spaces `plans` of user `u` on its farm (incarnation `inc`): each a
/// second Webex device of the user, `webex.group<workload>.<inc>`.
pub fn spawn_spaces(
    plans: Option<&Vec<SpacePlan>>,
    u: &UserSpec,
    inc: u32,
    host: &str,
    (s, rngs, recorder): (
        &Scenario,
        &RngFactory,
        &std::rc::Rc<dyn fakes::observe::Recorder>,
    ),
) {
    for p in plans.into_iter().flatten() {
        let device = format!("webex.group{}.{inc}", p.workload);
        let spec = fakes::clients::webex::GroupSpaceSpec {
            net: connector::io::net::TurmoilNet,
            host: host.to_string(),
            cloud: (
                fakes::cloud::http::CLOUD_HOST.into(),
                fakes::cloud::http::CLOUD_PORT,
            ),
            email: webex_email(u, s),
            password: u.password.clone(),
            members: p.members.clone(),
            at: p.at,
            mean_interval: p.mean_interval,
            stop: p.stop,
            rng: rngs.named(&format!("group-space/{}/{}/{inc}", u.userid, p.workload)),
            recorder: recorder.clone(),
            device,
        };
        tokio::task::spawn_local(fakes::clients::webex::run_group_space(spec));
    }
}

/// Adds every hybrid host the scenario needs; nothing when it has no Webex side.
pub fn add_hosts(
    sim: &mut turmoil::Sim<'_>,
    s: &Scenario,
    plan: &Plan,
    recorder: Rc<dyn Recorder>,
) -> HybridHandles {
    let rngs = &plan.rngs;
    let mut h = HybridHandles {
        rngs: Some(*rngs),
        hosts: topology::all_hosts(s),
        ..Default::default()
    };
    if !topology::uses_cloud(s) {
        return h;
    }
    let tokens = add_cloud(sim, s, plan, &mut h);
    add_expressways(sim, s, rngs, &tokens, &mut h);
    add_webex_farms(sim, s, plan, recorder);
    h
}
