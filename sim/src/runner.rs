//! The runner: scenario → turmoil world → stepped simulation → outcome.
//!
//! Hosts are built from the topology (DESIGN.md section 1); every host factory is restartable
//! so `bounce` and `crash`+restart work. The runner steps the world itself (rather than
//! `Sim::run`) so it can fire the fault timeline at its simulated times, sample time series,
//! and stop as soon as the run is quiescent after `duration`; if it is not quiescent by
//! `duration + drain`, the run fails with what it was still waiting for.

use crate::faults::{self, BaseLatency, Timed};
use crate::observer::Observer;
use crate::rng::RngFactory;
use crate::scenario::{ClientSel, Scenario, Workload, validate::imp_version};
use crate::topology::{self, UserSpec};
use connector::io::net::TurmoilNet;
use connector::proto::xmpp::Jid;
use fakes::imp::{Directory, ImpNode, NodeConfig, NodeDb, UserRecord, driver};
use fakes::jabber::{ChatPlan, DeviceSpec, GroupPlan, PresencePlan, run_device};
use fakes::observe::Recorder;
use rand::RngExt as _;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

/// Simulated wall-clock start of every run: 2026-01-01T00:00:00Z, fixed so timestamps (delay
/// stamps, logs) are identical run to run (turmoil defaults to the real clock).
pub const EPOCH_SECS: u64 = 1_767_225_600;
/// Logins are spread uniformly over this window at start-up: thousands of clients connecting
/// in one tick overflow turmoil's listen backlog and cost quadratically (PITFALLS).
pub const LOGIN_SPREAD: Duration = Duration::from_secs(20);
/// Chat starts this long after the start by default, once everyone has logged in.
pub const CHAT_START_DEFAULT: Duration = Duration::from_secs(30);
/// turmoil's per-stream segment limit and listen backlog.
pub const TCP_CAPACITY: usize = 65_536;
/// How often, after `duration`, the runner checks whether the run is quiescent.
pub const QUIESCENCE_EVERY: Duration = Duration::from_secs(1);
/// Time-series samples per run (bounded so records stay small).
pub const SAMPLES_MAX: u64 = 240;

/// Progress callback payload.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Simulated time so far.
    pub elapsed: Duration,
    /// Planned simulated duration (without drain).
    pub duration: Duration,
    /// Messages sent so far.
    pub sent: usize,
    /// Devices logged in now.
    pub devices_up: usize,
}

/// Read-only handles on node cores, for sampling. Hosts never read them.
/// The one exception: PRG faults call the administrator's failover and fallback on a core
/// (`crate::prg::apply`), the one deliberate write into a host from outside, like a crash.
pub(crate) type NodeSlots = BTreeMap<String, Rc<RefCell<Option<Rc<RefCell<ImpNode>>>>>>;

/// What a run produced, before checks.
pub struct RunOutput {
    /// The seed used.
    pub seed: u64,
    /// The history.
    pub observer: Rc<Observer>,
    /// Set when the run could not finish: what it was waiting for, or a host error.
    pub failure: Option<String>,
    /// Simulated time at the end.
    pub elapsed: Duration,
    /// Steps executed.
    pub steps: u64,
    /// Faults as applied.
    pub applied: Vec<Timed>,
    /// Sampled series: name → points.
    pub series: BTreeMap<String, Vec<(f64, f64)>>,
    /// Final node statistics by host.
    pub node_stats: BTreeMap<String, fakes::imp::NodeStats>,
    /// The population.
    pub users: Vec<UserSpec>,
    /// Each user's contacts (bare JIDs, both ways), as the IM&P directories hold them.
    pub contacts: BTreeMap<String, Vec<String>>,
    /// Connector session history per user, sampled each second (the interop oracle's input).
    pub bridge: crate::interop::Bridge,
    /// Final connector counters by Expressway host.
    pub connector_stats: BTreeMap<String, BTreeMap<String, f64>>,
    /// What the cloud's plaintext tap found (`None` when the run has no cloud).
    pub plaintext: Option<crate::hybrid::LeakLog>,
    /// Every user's Webex presence facts at the end, from the cloud (bare JID = email).
    pub webex_presence: BTreeMap<String, connector::core::presence::WebexPresence>,
    /// Group chat counters of the IM&P nodes and the cloud's group spaces (spec 42).
    pub group: crate::group_chat_check::GroupFacts,
    /// The run's secrets and captured log, when the scenario lists `no_secrets_in_logs`.
    pub secrets: Option<crate::secrets_check::Evidence>,
}

impl RunOutput {
    /// An output holding only a history and its population, as a finished run would: for
    /// judging hand-written histories (the checks' own tests).
    pub fn from_history(seed: u64, observer: Rc<Observer>, users: Vec<UserSpec>) -> Self {
        Self {
            seed,
            observer,
            failure: None,
            elapsed: Duration::ZERO,
            steps: 0,
            applied: Vec::new(),
            series: BTreeMap::new(),
            node_stats: BTreeMap::new(),
            users,
            contacts: BTreeMap::new(),
            bridge: BTreeMap::new(),
            connector_stats: BTreeMap::new(),
            plaintext: None,
            webex_presence: BTreeMap::new(),
            group: Default::default(),
            secrets: None,
        }
    }
}

/// Runs `s` with `seed`, calling `progress` every few simulated seconds.
pub fn run(s: &Scenario, seed: u64, progress: &mut dyn FnMut(Progress)) -> RunOutput {
    // `no_secrets_in_logs` judges everything the run logs: capture it (only then).
    let (mut out, log) = crate::secrets_check::capture(s, || run_world(s, seed, progress));
    if let (Some(ev), Some((log, cut))) = (out.secrets.as_mut(), log) {
        (ev.log, ev.log_cut) = (log, cut);
    }
    out
}

fn run_world(s: &Scenario, seed: u64, progress: &mut dyn FnMut(Progress)) -> RunOutput {
    let rngs = RngFactory::new(seed);
    crate::imp::reset();
    let users = topology::population(s, &rngs);
    let observer = Rc::new(Observer::new());
    let base = BaseLatency(s.tick.0);
    let mut sim = build_world(s, &rngs, base);
    let senders = crate::hybrid::sending_client(&rngs, &users);
    let plans = chat_plans(s, &rngs, &users, &senders);
    // The rosters as the IM&P directories hold them: within one cluster only (presence does
    // not cross clusters here), both ways.
    let cluster_of: BTreeMap<&str, usize> =
        users.iter().map(|u| (u.jid.as_str(), u.cluster)).collect();
    let mut contacts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (a, b) in roster_pairs(&users, &plans) {
        if cluster_of.get(a.as_str()) != cluster_of.get(b.as_str()) {
            continue;
        }
        for (x, y) in [(&a, &b), (&b, &a)] {
            let list = contacts.entry(x.clone()).or_default();
            if !list.contains(y) {
                list.push(y.clone());
            }
        }
    }
    let slots = add_imp_hosts(&mut sim, s, &users, &plans);
    let groups = crate::group_chat_check::jabber_plans(s, &rngs, &users);
    add_jabber_farms(&mut sim, s, (plans, groups), &rngs, &users, &observer);
    let hybrid = crate::hybrid::add_hosts(&mut sim, s, &rngs, &users, &senders, observer.clone());
    let timeline = faults::timeline(&s.faults, base);
    let mut out = RunOutput {
        seed,
        observer,
        failure: None,
        elapsed: Duration::ZERO,
        steps: 0,
        applied: Vec::new(),
        series: BTreeMap::new(),
        node_stats: BTreeMap::new(),
        users,
        contacts,
        bridge: BTreeMap::new(),
        connector_stats: BTreeMap::new(),
        plaintext: None,
        webex_presence: BTreeMap::new(),
        group: Default::default(),
        secrets: None,
    };
    step_loop(&mut sim, s, &timeline, &slots, &hybrid, &mut out, progress);
    crate::hybrid::final_stats(&hybrid, &mut out);
    crate::group_chat_check::collect(&slots, &hybrid, &mut out);
    if crate::secrets_check::listed(s) {
        out.secrets = Some(crate::secrets_check::Evidence {
            secrets: crate::secrets_check::collect(s, &hybrid, &out.users),
            ..Default::default()
        });
    }
    crate::imp::report(&out.observer);
    for (host, slot) in &slots {
        if let Some(node) = slot.borrow().as_ref() {
            out.node_stats
                .insert(host.clone(), node.borrow().stats().clone());
        }
    }
    out
}

fn build_world<'a>(s: &Scenario, rngs: &RngFactory, base: BaseLatency) -> turmoil::Sim<'a> {
    turmoil::Builder::new()
        .rng_seed(rngs.sub_seed("turmoil"))
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
        .tick_duration(s.tick.0)
        // The runner enforces its own bound (duration + drain) and reports what it waited for;
        // turmoil's must never fire first.
        .simulation_duration(s.duration.0 + s.drain.0 + Duration::from_secs(3600))
        .min_message_latency(base.0)
        .max_message_latency(base.0)
        .tcp_capacity(TCP_CAPACITY)
        .ephemeral_ports(1024..=65535)
        .build()
}

/// Roster pairs for presence: a user and each contact of its chat plan (the directory makes
/// them mutual). Jabber rosters are not otherwise modelled (spec 44).
fn roster_pairs(users: &[UserSpec], plans: &BTreeMap<u32, ChatPlan>) -> Vec<(String, String)> {
    users
        .iter()
        .filter_map(|u| plans.get(&u.index).map(|p| (u, p)))
        .flat_map(|(u, p)| p.contacts.iter().map(|c| (u.jid.clone(), c.clone())))
        .collect()
}

fn add_imp_hosts(
    sim: &mut turmoil::Sim<'_>,
    s: &Scenario,
    users: &[UserSpec],
    plans: &BTreeMap<u32, ChatPlan>,
) -> NodeSlots {
    let mut slots = NodeSlots::new();
    let pairs = roster_pairs(users, plans);
    let record = |u: &UserSpec| UserRecord {
        userid: u.userid.clone(),
        jid: u.jid.clone(),
        email: u.email.clone(),
        password: u.password.clone(),
        home: u.home_host(s),
    };
    // Every node routes with the users of every cluster (ICSA syncs them, spec 23), so a 1:1
    // chat to another cluster is forwarded to the recipient's home node over the network.
    // Rosters, and so presence, stay within a cluster.
    let cluster_of: BTreeMap<&str, usize> =
        users.iter().map(|u| (u.jid.as_str(), u.cluster)).collect();
    let same_cluster = pairs
        .iter()
        .filter(|(a, b)| cluster_of.get(a.as_str()) == cluster_of.get(b.as_str()))
        .cloned();
    // Second accounts of users with a duplicate mail ID (spec 25), on another cluster.
    let duplicates: Vec<(usize, UserRecord)> = users
        .iter()
        .filter_map(|u| {
            let (c, userid, jid) = u.duplicate_record(s)?;
            let home = topology::imp_host(&s.topology.imp_clusters[c].name, 1);
            let rec = UserRecord {
                userid,
                jid,
                email: u.email.clone(),
                password: u.password.clone(),
                home,
            };
            Some((c, rec))
        })
        .collect();
    let all = users
        .iter()
        .map(record)
        .chain(duplicates.iter().map(|(_, r)| r.clone()));
    let routing = Rc::new(Directory::new(all).with_contacts(same_cluster));
    for (ci, c) in s.topology.imp_clusters.iter().enumerate() {
        let dir = Rc::new(
            Directory::new(
                users.iter().filter(|u| u.cluster == ci).map(record).chain(
                    duplicates
                        .iter()
                        .filter(|(c, _)| *c == ci)
                        .map(|(_, r)| r.clone()),
                ),
            )
            .with_contacts(pairs.iter().cloned()),
        );
        for n in 1..=c.nodes {
            let host = topology::imp_host(&c.name, n);
            let cfg = NodeConfig {
                host: host.clone(),
                domain: s.topology.domain.clone(),
                version: imp_version(&c.version).unwrap_or((14, 0)),
                offline_storage: c.offline_storage,
                mdm: c.mdm,
            };
            // The node's database survives restarts; the node itself does not.
            let db = Rc::new(RefCell::new(NodeDb::default()));
            let slot: Rc<RefCell<Option<Rc<RefCell<ImpNode>>>>> = Rc::default();
            let prg = crate::prg::node_config(c);
            slots.insert(host.clone(), slot.clone());
            let dir = dir.clone();
            let routing = routing.clone();
            // The AXL service (and whether it is stopped, spec 22) outlives restarts.
            let axl = Rc::new(RefCell::new(crate::imp::axl_service(
                s,
                ci,
                users,
                dir.clone(),
            )));
            let comp_cfg = crate::imp::component_config(c);
            crate::imp::register_axl(&host, axl.clone());
            crate::imp::register_node(
                &host,
                crate::imp::NodeHandle {
                    cluster: c.name.clone(),
                    slot: slot.clone(),
                    db: db.clone(),
                },
            );
            sim.host(host.as_str(), move || {
                let node = Rc::new(RefCell::new(
                    ImpNode::new(cfg.clone(), routing.clone(), db.clone()).with_prg(prg.clone()),
                ));
                *slot.borrow_mut() = Some(node.clone());
                let comp = fakes::imp::component::ComponentService::new(
                    comp_cfg.clone(),
                    &cfg,
                    dir.clone(),
                );
                let axl = axl.clone();
                async move {
                    // c2s for Jabber, the router port for the other nodes of the cluster, the
                    // component port for connectors, AXL for discovery.
                    let ports = driver::NodePorts::default();
                    let comp = Rc::new(RefCell::new(comp));
                    driver::serve_node(TurmoilNet, node, comp, axl, ports, || {}).await?;
                    Ok(())
                }
            });
        }
    }
    slots
}

/// The chat workload's plan for each user, by user index.
fn chat_plans(
    s: &Scenario,
    rngs: &RngFactory,
    users: &[UserSpec],
    webex_senders: &BTreeMap<u32, bool>,
) -> BTreeMap<u32, ChatPlan> {
    let mut plans = BTreeMap::new();
    let jabber: Vec<&UserSpec> = users
        .iter()
        .filter(|u| u.jabber && webex_senders.get(&u.index) != Some(&true))
        .collect();
    for (wi, w) in s.workloads.iter().enumerate() {
        let Workload::Chat(c) = w else { continue };
        let mut rng = rngs.named(&format!("workload/{wi}/contacts"));
        let Some(mean) = c.rate_per_user.mean_interval() else {
            continue;
        };
        let start = c
            .start
            .map(|d| d.0)
            .unwrap_or(CHAT_START_DEFAULT.min(s.duration.0 / 2));
        let stop = c.stop.unwrap_or(s.duration).0;
        let pool: Vec<&UserSpec> = users
            .iter()
            .filter(|u| crate::hybrid::receives(c.to, u))
            .collect();
        let senders = jabber.iter().filter(|_| c.from != ClientSel::Webex);
        for u in senders {
            let want = c.contacts_per_user as usize;
            let contacts =
                crate::hybrid::pick_contacts(&mut rng, &pool, u, want, |p| p.jid.clone());
            plans.insert(
                u.index,
                ChatPlan {
                    contacts,
                    mean_interval: mean,
                    start,
                    stop,
                },
            );
        }
    }
    plans
}

fn add_jabber_farms(
    sim: &mut turmoil::Sim<'_>,
    s: &Scenario,
    (plans, groups): (BTreeMap<u32, ChatPlan>, BTreeMap<u32, GroupPlan>),
    rngs: &RngFactory,
    users: &[UserSpec],
    observer: &Rc<Observer>,
) {
    let plans = Rc::new(plans);
    let groups = Rc::new(groups);
    let presence = presence_config(s);
    for k in 1..=s.topology.client_farms.jabber {
        let host = topology::jabber_farm(k);
        // Each user with its login servers: home node, then its PRG peer (spec 65).
        let mine: Rc<Vec<(UserSpec, Vec<String>)>> = Rc::new(
            users
                .iter()
                .filter(|u| u.jabber && u.farm == k)
                .map(|u| (u.clone(), crate::prg::login_servers(s, u)))
                .collect(),
        );
        let incarnation = Rc::new(Cell::new(0u32));
        let (rngs, plans, recorder) = (*rngs, plans.clone(), observer.clone() as Rc<dyn Recorder>);
        let groups = groups.clone();
        let host_name = host.clone();
        sim.host(host.as_str(), move || {
            // Each start of the farm is a new incarnation: fresh RNG streams and message ids,
            // so a restarted farm never reuses an id.
            let inc = incarnation.get();
            incarnation.set(inc + 1);
            let (mine, plans, recorder, host) = (
                mine.clone(),
                plans.clone(),
                recorder.clone(),
                host_name.clone(),
            );
            let groups = groups.clone();
            async move {
                for (u, server) in mine.iter() {
                    let dev = Devices {
                        inc,
                        host: &host,
                        rngs: &rngs,
                        plans: &plans,
                        groups: &groups,
                        presence,
                        recorder: &recorder,
                    };
                    spawn_devices(u, server, &dev);
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
}

/// The presence workload's parameters: (mean interval, manual share, start, stop).
type PresenceConfig = Option<(Duration, f64, Duration, Duration)>;

/// The first presence workload of the scenario, if any.
fn presence_config(s: &Scenario) -> PresenceConfig {
    s.workloads.iter().find_map(|w| match w {
        Workload::Presence(p) => Some((
            p.rate_per_device.mean_interval()?,
            f64::from(p.manual.0) / f64::from(crate::scenario::Pct::ALL.0),
            p.start
                .map(|d| d.0)
                .unwrap_or(CHAT_START_DEFAULT.min(s.duration.0 / 2)),
            p.stop.unwrap_or(s.duration).0,
        )),
        Workload::Chat(_) | Workload::GroupChat(_) => None,
    })
}

/// What every device of one farm incarnation shares.
struct Devices<'a> {
    inc: u32,
    host: &'a str,
    rngs: &'a RngFactory,
    plans: &'a BTreeMap<u32, ChatPlan>,
    groups: &'a BTreeMap<u32, GroupPlan>,
    presence: PresenceConfig,
    recorder: &'a Rc<dyn Recorder>,
}

fn spawn_devices(u: &UserSpec, servers: &[String], dev: &Devices<'_>) {
    let Devices {
        inc,
        host,
        rngs,
        plans,
        groups,
        presence,
        recorder,
    } = *dev;
    let jid = Jid::parse(&u.jid).expect("population JIDs are valid");
    for d in 1..=u.devices {
        let resource = format!("jabber-{d}");
        let mut rng = rngs.named(&format!("jabber/{}/{resource}/{inc}", u.userid));
        let delay = LOGIN_SPREAD.mul_f64(rng.random_range(0.0..1.0));
        let spec = DeviceSpec {
            net: TurmoilNet,
            host: host.to_string(),
            jid: jid.clone(),
            password: u.password.clone(),
            resource: format!("{resource}.{inc}"),
            server: servers[0].clone(),
            servers: servers[1..].to_vec(),
            plan: if d == 1 {
                plans.get(&u.index).cloned()
            } else {
                None
            },
            group: groups.get(&u.index).filter(|_| d == 1).cloned(),
            rng,
            recorder: recorder.clone(),
            presence: presence.map(|(mean, manual, start, stop)| PresencePlan {
                mean_interval: mean,
                manual_share: manual,
                stop,
                rng: rngs.named(&format!("presence/{}/{resource}/{inc}", u.userid)),
                next: start,
                count: 0,
            }),
        };
        tokio::task::spawn_local(async move {
            tokio::time::sleep(delay).await;
            run_device(spec).await;
        });
    }
}

fn step_loop(
    sim: &mut turmoil::Sim<'_>,
    s: &Scenario,
    timeline: &[Timed],
    slots: &NodeSlots,
    hybrid: &crate::hybrid::HybridHandles,
    out: &mut RunOutput,
    progress: &mut dyn FnMut(Progress),
) {
    let mut next_bridge = Duration::ZERO;
    let mut next_quiescence = Duration::ZERO;
    let mut prg_watch = crate::prg::Watch::default();
    let duration = s.duration.0;
    let deadline = duration + s.drain.0;
    let sample_every = (duration / SAMPLES_MAX as u32).max(s.tick.0);
    let progress_every = (duration / 50).max(Duration::from_secs(1));
    let (mut next_fault, mut next_sample, mut next_progress) =
        (0usize, Duration::ZERO, Duration::ZERO);
    // Bounded: the loop ends by `deadline`, which is finite, one tick per iteration.
    loop {
        let now = sim.elapsed();
        prg_watch.step(sim, slots, now, &out.observer);
        while next_fault < timeline.len() && timeline[next_fault].at <= now {
            let t = &timeline[next_fault];
            faults::apply(sim, &t.action);
            crate::prg::apply(sim, &t.action, slots, now, &out.observer);
            crate::hybrid::apply(sim, hybrid, &t.action, now);
            if let faults::Action::Crash(hosts) | faults::Action::Bounce(hosts) = &t.action {
                for h in hosts.iter().filter(|h| is_client_farm(h)) {
                    out.observer.host_down(now, h);
                }
            }
            out.observer
                .fault(now, &format!("{} {}", t.kind, t.detail()));
            out.applied.push(Timed {
                at: now,
                ..t.clone()
            });
            next_fault += 1;
        }
        if now >= next_bridge {
            crate::hybrid::sample_bridge(hybrid, out, now);
            next_bridge += crate::hybrid::BRIDGE_SAMPLE;
        }
        if now >= next_sample {
            sample(out, slots, now);
            prg_watch.sample(out, now);
            crate::hybrid::sample_series(hybrid, out, now);
            next_sample += sample_every;
        }
        if now >= next_progress {
            progress(Progress {
                elapsed: now,
                duration,
                sent: out.observer.sent_count(),
                devices_up: out.observer.devices_up(),
            });
            next_progress += progress_every;
        }
        // Quiescence scans the whole history: judge it once per simulated second, not per tick.
        if now >= duration && next_fault >= timeline.len() && now >= next_quiescence {
            next_quiescence = now + QUIESCENCE_EVERY;
            if quiescent(s, out) {
                break;
            }
        }
        if now >= deadline {
            out.failure = Some(waiting_for(s, out, deadline));
            break;
        }
        if let Err(e) = sim.step() {
            out.failure = Some(format!(
                "a host failed at {}: {e}",
                crate::scenario::units::format_duration(now)
            ));
            break;
        }
        out.steps += 1;
    }
    out.elapsed = sim.elapsed();
    sample(out, slots, out.elapsed);
}

/// Client-farm hosts (their devices do not survive a restart: new resources log in).
fn is_client_farm(host: &str) -> bool {
    host.starts_with("jabber-") || host.starts_with("webex-")
}

/// Nothing that must arrive is still on its way.
fn quiescent(s: &Scenario, out: &RunOutput) -> bool {
    let bridged = crate::topology::uses_cloud(s);
    // Without a bridge a message with one delivery is done (cheap: no oracle needed).
    if !bridged && out.observer.undelivered().is_empty() {
        return true;
    }
    awaited(s, out, 1).is_empty()
}

/// Up to `limit` messages, in send order, that must still arrive: what the run waits for.
/// Messages a fault may have swallowed (at risk) are not awaited.
fn awaited(s: &Scenario, out: &RunOutput, limit: usize) -> Vec<String> {
    use crate::checks::{Expect, Oracle};
    // The oracle indexes the session history: built only when something is undelivered.
    let oracle = Oracle::new(s, out);
    if crate::topology::uses_cloud(s) {
        // Across the bridge each recipient client is judged: a message may still be on its
        // way to the recipient's other client (Webex after Jabber).
        let by_jid: BTreeMap<&str, &UserSpec> =
            out.users.iter().map(|u| (u.jid.as_str(), u)).collect();
        return out.observer.with_messages(|msgs| {
            msgs.filter(|(_, m)| {
                !crate::interop::missing(&by_jid, m, &out.bridge).is_empty() && !oracle.at_risk(m)
            })
            .map(|(id, _)| id.to_string())
            .take(limit)
            .collect()
        });
    }
    out.observer.with_messages(|msgs| {
        msgs.filter(|(_, m)| m.deliveries.is_empty() && oracle.expect(m) == Expect::Must)
            .map(|(id, _)| id.to_string())
            .take(limit)
            .collect()
    })
}

/// A liveness failure message: what the run was still waiting for (messages that must
/// arrive, not those at risk from faults) and devices not logged in.
fn waiting_for(s: &Scenario, out: &RunOutput, deadline: Duration) -> String {
    let pending = awaited(s, out, usize::MAX);
    let down = out.observer.devices_down();
    let mut msg = format!(
        "not quiescent by duration + drain ({}): waiting for {} of {} messages to be delivered",
        crate::scenario::units::format_duration(deadline),
        pending.len(),
        out.observer.sent_count()
    );
    if !pending.is_empty() {
        msg.push_str(&format!(
            " (first: {})",
            pending
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !down.is_empty() {
        let names: Vec<String> = down
            .iter()
            .take(5)
            .map(|(u, d)| format!("{u}/{d}"))
            .collect();
        msg.push_str(&format!(
            "; {} devices not logged in (first: {})",
            down.len(),
            names.join(", ")
        ));
    }
    msg
}

fn sample(out: &mut RunOutput, slots: &NodeSlots, now: Duration) {
    let t = now.as_secs_f64();
    let mut push = |name: String, v: f64| out.series.entry(name).or_default().push((t, v));
    push(
        "clients/devices_up".into(),
        out.observer.devices_up() as f64,
    );
    push("messages/sent".into(), out.observer.sent_count() as f64);
    for (host, slot) in slots {
        let sessions = slot
            .borrow()
            .as_ref()
            .map(|n| n.borrow().session_count())
            .unwrap_or(0);
        push(format!("sessions/{host}"), sessions as f64);
    }
}
