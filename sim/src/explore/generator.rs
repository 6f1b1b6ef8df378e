//! The generator: one valid scenario per seed, drawn from RNGs derived from the seed by name.
//!
//! Swarm testing (Groce et al., ISSTA 2012): each seed first draws which fault kinds, workload
//! features and optional checks it enables, then draws the scenario from those only, so rare
//! combinations of a few features are dense across seeds instead of every seed mixing
//! everything thinly. The checks every run can judge are always on.
//!
//! Extension points (features the scenario language does not have yet; each is one function
//! below to fill in when the language gains it): message bodies of chosen sizes and characters
//! ([`bodies`]). JIDs that differ from emails are drawn by [`jid_scheme`], from a stream of
//! their own so that adding them shifted no other draw.

use super::Profile;
use crate::plan::rng::RngFactory;
use crate::plan::topology::{exp_host, imp_host};
use crate::scenario::units::{Dur, Pct, Rate};
use crate::scenario::{
    Between, ChatMix, ChatWorkload, CheckSpec, ClientFarms, ClientSel, Coresident,
    ExpresswayCluster, ExpresswaySize, Fault, GroupChatWorkload, Hosts, HttpErrors, ImpCluster,
    ImpFailover, JidScheme, KmsKind, LinkLatency, Migration, NodeRef, OneWay, Outage, PacketLoss,
    PresenceWorkload, Prg, PrgHighAvailability, Scenario, SessionLimits, Topology, Users, Workload,
};
use crate::scenario::{FailoverMode, HostnameCheck, PrgAssignment};
use rand::RngExt as _;
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// Every fault kind the generator draws from (swarm: each seed enables a subset).
pub const FAULT_KINDS: &[&str] = &[
    "crash",
    "bounce",
    "partition",
    "partition_oneway",
    "hold",
    "link_latency",
    "packet_loss",
    "imp_failover",
    "axl_stop",
    "cloud_outage",
    "kms_outage",
    "http_errors",
    "connector_disable",
    "connector_restart",
    "maintenance_mode",
    "expressway_maintenance",
    "reactivate",
    "prg_high_availability",
];

/// Checks that may be switched off per seed (swarm); the others are on whenever they apply.
///
/// Not drawn: checks that fail a run which does not exercise every case they judge, which a
/// random population rarely does (`interop_matrix`: all 16 sender/receiver classes;
/// `group_chat`, `offline_storage`, `presence_composition`: "nothing exercised"), checks of
/// one deployment's expectations (`mdm_copies` expects a Jabber carbon of a Webex post;
/// `migration`, `prg_failover`, `delivery_latency` and `reached` take numbers written for one
/// scenario).
pub const OPTIONAL_CHECKS: &[&str] = &["within_capacity", "status_page"];

/// IM&P versions drawn: both sides of 12.5, where offline storage behaviour changes (spec 46).
const IMP_VERSIONS: &[&str] = &["11.5(1)SU3", "12.0", "12.5", "14.0", "15.0"];

/// Cluster names, in order (a scenario has at most five IM&P clusters per Expressway).
const CLUSTER_NAMES: &[&str] = &["a", "b", "c", "d", "e"];

/// The simulation step of generated scenarios: coarse, so a seed costs seconds.
const TICK_MS: u64 = 100;

/// The limits a profile draws within.
struct Limits {
    users: (u32, u32),
    duration_min: (u64, u64),
    imp_clusters_max: usize,
    imp_nodes_max: u32,
    exp_nodes_max: u32,
    faults_max: usize,
}

fn limits(p: Profile) -> Limits {
    match p {
        Profile::Small => Limits {
            users: (4, 40),
            duration_min: (5, 10),
            imp_clusters_max: 2,
            imp_nodes_max: 4,
            exp_nodes_max: 2,
            faults_max: 3,
        },
        Profile::Large => Limits {
            users: (1000, 4000),
            duration_min: (30, 60),
            imp_clusters_max: 5,
            imp_nodes_max: 6,
            exp_nodes_max: 6,
            faults_max: 6,
        },
    }
}

/// What a seed enables (swarm testing): drawn before the scenario, recorded with the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swarm {
    /// Fault kinds this seed may draw.
    pub fault_kinds: Vec<&'static str>,
    /// Optional checks this seed switches on (when they apply).
    pub optional_checks: Vec<&'static str>,
    /// Presence changes, group chat, Webex App actions other than text.
    pub presence: bool,
    /// Group chat rooms and spaces.
    pub group_chat: bool,
    /// Edits, deletes, files, typing and read markers from the Webex App.
    pub rich_actions: bool,
    /// A chat burst around one fault, often a PRG failover added for it ([`fault_burst`]).
    pub fault_burst: bool,
}

/// Draws the seed's swarm: each feature independently with probability one half.
pub fn swarm(rngs: &RngFactory) -> Swarm {
    let mut r = rngs.named("explore/swarm");
    let fault_kinds = FAULT_KINDS
        .iter()
        .copied()
        .filter(|_| r.random_bool(0.5))
        .collect();
    let optional_checks = OPTIONAL_CHECKS
        .iter()
        .copied()
        .filter(|_| r.random_bool(0.5))
        .collect();
    let (presence, group_chat, rich_actions) =
        (r.random_bool(0.5), r.random_bool(0.3), r.random_bool(0.5));
    Swarm {
        fault_kinds,
        optional_checks,
        presence,
        group_chat,
        rich_actions,
        // Drawn last, so that the draws above stay those of the seeds already known.
        fault_burst: r.random_bool(0.5),
    }
}

/// The scenario of `seed` in `profile`: as drawn, each workload's rate capped for the
/// population ([`cap_rates`]).
pub fn generate(seed: u64, profile: Profile) -> Scenario {
    let mut s = drawn(seed, profile);
    cap_rates(&mut s);
    s
}

/// The scenario of `seed` in `profile` with the per-user rates as drawn.
fn drawn(seed: u64, profile: Profile) -> Scenario {
    let rngs = RngFactory::new(seed);
    let sw = swarm(&rngs);
    let lim = limits(profile);
    let mut r = rngs.named("explore/header");
    let duration = Dur::from_secs(60 * r.random_range(lim.duration_min.0..=lim.duration_min.1));
    let topology = topology(&mut rngs.named("explore/topology"), &lim, &sw);
    let mut users = population(&mut rngs.named("explore/users"), &lim, &topology);
    users.jid = jid_scheme(&mut rngs.named("explore/jid"), &topology);
    let mut s = Scenario {
        name: format!("explore-{}-{seed}", profile.name()),
        description: Some(format!(
            "Drawn by `hmsim explore` (profile {}, seed {seed}).",
            profile.name()
        )),
        seed,
        duration,
        tick: Dur::from_ms(TICK_MS),
        drain: Dur::from_secs(5 * 60),
        topology,
        users,
        workloads: Vec::new(),
        faults: Vec::new(),
        checks: Vec::new(),
        keepalive: Default::default(),
    };
    s.workloads = workloads(&mut rngs.named("explore/workloads"), &s, &sw);
    s.faults = faults(&mut rngs.named("explore/faults"), &s, &sw, lim.faults_max);
    // Bodies on a stream of their own: the draws above, which define the known seeds, stay.
    bodies(&mut rngs.named("explore/bodies"), &mut s.workloads);
    // On a stream of its own too: seeds without a burst draw exactly what they drew before.
    fault_burst(&mut rngs.named("explore/burst"), &mut s, &sw, &lim);
    s.checks = checks(&s, &sw);
    drop_checks_with_nothing_to_judge(&mut s);
    // Control Hub may take up to 5 minutes to let a node register (spec 12) and assignment
    // follows: a shorter run would leave `within_capacity` nothing to judge, which it fails.
    if s.checks.iter().any(|c| c.name == "within_capacity") {
        s.duration = s.duration.max(Dur::from_secs(WITH_CAPACITY_DURATION_MIN_S));
    }
    allow_client_relogin(&mut s);
    // Last: it plans the run as drawn.
    ensure_messages(&mut s);
    s
}

/// Makes a scenario that judges messages expect at least [`EXPECTED_MESSAGES_MIN`] of them,
/// shortening every chat workload's period in proportion (whole seconds); drops
/// `no_message_loss` when no sender has a contact at all (nothing could be sent: the check
/// would fail as exercising nothing).
fn ensure_messages(s: &mut Scenario) {
    if !s.checks.iter().any(|c| c.name == "no_message_loss") {
        return;
    }
    let expected = expected_messages(s);
    if expected <= 0.0 {
        s.checks.retain(|c| c.name != "no_message_loss");
        return;
    }
    if expected >= EXPECTED_MESSAGES_MIN {
        return;
    }
    let shorter = expected / EXPECTED_MESSAGES_MIN;
    for w in &mut s.workloads {
        if let Workload::Chat(c) = w {
            let per_s = (c.rate_per_user.per.as_secs_f64() * shorter)
                .floor()
                .max(1.0);
            c.rate_per_user.per = Duration::from_secs(per_s as u64);
        }
    }
}

/// Messages a drawn scenario that judges messages expects its chat workloads to send at the
/// least: with this many expected, a Poisson count of none has a chance below one in a
/// million (explore seeds 24366 and 24996 expected about 5 and sent none).
pub const EXPECTED_MESSAGES_MIN: f64 = 15.0;

/// The 1:1 messages the chat plans of `s` (planned from its seed as the run plans them) are
/// expected to send: each sender with a contact sends over its window at its mean interval,
/// once per user (a lower bound: a user's other Jabber devices may send too), and of a Webex
/// App's actions only its text messages count.
pub fn expected_messages(s: &Scenario) -> f64 {
    let plan = crate::plan::Plan::new(s, s.seed);
    let over = |start: Duration, stop: Duration, mean: Duration| {
        stop.saturating_sub(start).as_secs_f64() / mean.as_secs_f64().max(f64::EPSILON)
    };
    let jabber: f64 = (plan.chat.values())
        .filter(|p| !p.contacts.is_empty())
        .map(|p| over(p.start, p.stop, p.mean_interval))
        .sum();
    let webex: f64 = (plan.webex.values())
        .filter(|p| !p.contacts.is_empty())
        .map(|p| over(p.start, p.stop, p.mean_interval) * p.mix.text)
        .sum();
    jabber + webex
}

/// Drops the checks that the seed's population (drawn by the run from the seed) leaves with
/// nothing to judge, which they would fail as "exercised nothing":
/// - `within_capacity` when no user can be assigned: none is a Hybrid Message user the
///   connector can match (a mail ID, one home cluster, spec 24-25), or every such user's
///   cluster loses its AXL publisher for good before registration and discovery are sure to
///   be done ([`publisher_lost`]; explore seed 2998);
/// - `no_plaintext_at_cloud` when no body can reach the cloud: no user has the Webex App and
///   none is a Hybrid Message user whose messages the connector bridges (explore seed 3182).
fn drop_checks_with_nothing_to_judge(s: &mut Scenario) {
    use crate::oracle::interop::served;
    let people = crate::plan::topology::population(s, &RngFactory::new(s.seed));
    let assignable = people
        .iter()
        .filter(|u| served(u) && !publisher_lost(s, u.cluster))
        .count();
    if assignable == 0 {
        s.checks.retain(|c| c.name != "within_capacity");
    }
    if !people.iter().any(|u| u.webex || served(u)) {
        s.checks.retain(|c| c.name != "no_plaintext_at_cloud");
    }
}

/// Whether a fault takes the AXL publisher of IM&P cluster `cluster` (its node 1, the only
/// address the connector is given, spec 16) down for good before a registration and the
/// assignment after it are sure to be done ([`crate::checks::capacity::DURATION_MIN`]): a
/// crash of its host with no `for` (an automatic PRG failover is one) that no later fault
/// restarts, or an AXL stop with no `for`. A connector whose registration completes after
/// that discovers no node and no user (spec 22: "The Message Connector cannot discover IM and
/// Presence nodes when the AXL service is not running on the nodes"), so nobody of that
/// cluster is ever assigned.
fn publisher_lost(s: &Scenario, cluster: usize) -> bool {
    let publisher = imp_host(&s.topology.imp_clusters[cluster].name, 1);
    let crashes = |f: &Fault| {
        f.crash.as_ref().is_some_and(|h| h.0.contains(&publisher))
            || f.imp_failover
                .as_ref()
                .is_some_and(|x| x.node == publisher && x.mode == FailoverMode::Automatic)
    };
    // A bounce restarts the host, and so does the end of a timed crash.
    let restarts = |f: &Fault| {
        f.bounce.as_ref().is_some_and(|h| h.0.contains(&publisher))
            || (f.for_.is_some() && crashes(f))
    };
    let for_good = |f: &Fault| f.for_.is_none() && f.at.0 < crate::checks::capacity::DURATION_MIN;
    let host_lost = s
        .faults
        .iter()
        .filter(|f| for_good(f) && crashes(f))
        .any(|down| !s.faults.iter().any(|f| f.at.0 > down.at.0 && restarts(f)));
    let axl_lost = s
        .faults
        .iter()
        .any(|f| for_good(f) && f.axl_stop.as_ref().is_some_and(|n| n.node == publisher));
    host_lost || axl_lost
}

/// How long `liveness` gives devices after a fault that can fail an IM&P node over: the PRG
/// peer takes over after the heartbeat timeout (60 s), and Jabber clients log in again
/// 120-537 s after a PRG failover, about twice that with MDM (spec 65): 1,074 s + 60 s and a
/// margin is 19 minutes. Other faults keep the 5-minute bound.
const LIVENESS_AFTER_FAILOVER_S: u64 = 19 * 60;

/// A scenario whose faults can fail an IM&P node over (one on an IM&P host, a manual or
/// automatic failover, a high-availability change) gives its devices the client re-login
/// window, and a drain long enough to see them back.
fn allow_client_relogin(s: &mut Scenario) {
    let on_imp = |f: &Fault| {
        f.imp_failover.is_some()
            || f.prg_high_availability.is_some()
            || serde_yaml::to_string(f).is_ok_and(|y| y.contains("imp-"))
    };
    if !s.faults.iter().any(on_imp) {
        return;
    }
    let within = format!("{{ within: {}m }}", LIVENESS_AFTER_FAILOVER_S / 60);
    for c in s.checks.iter_mut().filter(|c| c.name == "liveness") {
        *c = CheckSpec::new("liveness", yaml(&within));
    }
    s.drain = s.drain.max(Dur::from_secs(LIVENESS_AFTER_FAILOVER_S + 60));
}

/// Shortest run that carries `within_capacity`: registration (up to 5 min) plus assignment,
/// the check's own floor (validation refuses shorter, so the shrink keeps it too).
const WITH_CAPACITY_DURATION_MIN_S: u64 = crate::checks::capacity::DURATION_MIN.as_secs();

fn pct(r: &mut ChaCha8Rng, lo: u32, hi: u32) -> Pct {
    // Whole percent steps keep the YAML readable (`35%`).
    Pct(r.random_range(lo..=hi) * 100)
}

fn topology(r: &mut ChaCha8Rng, lim: &Limits, sw: &Swarm) -> Topology {
    let clusters = r.random_range(1..=lim.imp_clusters_max);
    let imp_clusters: Vec<ImpCluster> = CLUSTER_NAMES[..clusters]
        .iter()
        .map(|name| imp_cluster(r, name, lim))
        .collect();
    let connector = r.random_bool(0.75);
    let mut imp_clusters = imp_clusters;
    if connector {
        // Hybrid Message needs MDM on every IM&P cluster it serves (spec 20: "Your IM and
        // Presence Service clusters must have Multiple Device Messaging (MDM) enabled").
        imp_clusters.iter_mut().for_each(|c| c.mdm = true);
    }
    let expressway_clusters = if connector {
        vec![expressway(r, &imp_clusters, lim)]
    } else {
        Vec::new()
    };
    let _ = sw;
    Topology {
        domain: "example.com".into(),
        imp_clusters,
        expressway_clusters,
        kms: if r.random_bool(0.3) {
            KmsKind::Hds
        } else {
            KmsKind::Cloud
        },
        client_farms: ClientFarms {
            jabber: r.random_range(1..=2),
            webex: r.random_range(1..=2),
        },
    }
}

fn imp_cluster(r: &mut ChaCha8Rng, name: &str, lim: &Limits) -> ImpCluster {
    let nodes = r.random_range(1..=lim.imp_nodes_max);
    ImpCluster {
        name: name.into(),
        nodes,
        version: IMP_VERSIONS[r.random_range(0..IMP_VERSIONS.len())].into(),
        prg: Prg {
            high_availability: r.random_bool(0.7),
            automatic_fallback: r.random_bool(0.2),
            heartbeat_timeout: Dur::from_secs(60),
            assignment: PrgAssignment::Balanced,
            client_relogin: Default::default(),
        },
        offline_storage: r.random_bool(0.7),
        mdm: r.random_bool(0.8),
        axl: Default::default(),
        // An explicit connector-session cap above both nodes' users, so a failover never
        // meets it (the JSM limit of the default 15k OVA, spec 10, is far above too). Kept
        // as drawn: dropping it would change every generated file and the known seeds.
        sessions: SessionLimits {
            max: (nodes > 1).then_some(lim.users.1 * 2),
            create_rate: None,
        },
        ova: Default::default(),
    }
}

fn expressway(r: &mut ChaCha8Rng, imp: &[ImpCluster], lim: &Limits) -> ExpresswayCluster {
    let sizes = [
        ExpresswaySize::Small,
        ExpresswaySize::Medium,
        ExpresswaySize::Large,
    ];
    let coresident = match r.random_range(0..4) {
        0 => vec![Coresident::Calendar],
        1 => vec![Coresident::Calendar, Coresident::Call],
        _ => Vec::new(),
    };
    let mut e = ExpresswayCluster {
        name: "a".into(),
        size: sizes[r.random_range(0..sizes.len())],
        nodes: r.random_range(1..=lim.exp_nodes_max),
        imp_clusters: imp.iter().map(|c| c.name.clone()).collect(),
        coresident,
        mra: r.random_bool(0.2),
        hostname: None,
        registration_token: true,
        hostname_check: HostnameCheck::Enforce,
        certificate_validation: true,
        enabled: true,
        // Scaled down with the population, as the `-small` failover scenarios do, so moves
        // finish within a generated run.
        migration: Migration {
            detection_delay_max: Dur::from_secs(60 * r.random_range(1..=3)),
            rate: Rate {
                count: f64::from(lim.users.1),
                per: Duration::from_secs(60 * r.random_range(1..=3)),
            },
        },
        test_only_drop_every_nth_to_jabber_after_failover: None,
    };
    // Control Hub refuses a cluster shape the guides give no capacity for (Calendar beside
    // Message on a Small node, say): keep only documented shapes, else no coresidency.
    let (size, coresidency) = crate::plan::connector::capacity_shape(&e);
    if fakes::cloud::assignment::node_capacity(size, coresidency, e.nodes as usize).is_none() {
        e.coresident.clear();
    }
    e
}

/// JIDs that differ from mail IDs (spec 24): on half the seeds a share of users, up to all,
/// whose mail ID (and so Webex email) is not their JID; on a third of those, the mail IDs are
/// under another domain too.
pub fn jid_scheme(r: &mut ChaCha8Rng, t: &Topology) -> JidScheme {
    if !r.random_bool(0.5) {
        return JidScheme::default();
    }
    let differs_from_email = pct(r, 1, 100);
    let email_domain = r
        .random_bool(1.0 / 3.0)
        .then(|| format!("mail.{}", t.domain));
    JidScheme {
        differs_from_email,
        email_domain,
    }
}

/// The user population; its JIDs are [`jid_scheme`]'s.
fn population(r: &mut ChaCha8Rng, lim: &Limits, t: &Topology) -> Users {
    let connector = !t.expressway_clusters.is_empty();
    let maybe = |r: &mut ChaCha8Rng, hi: u32| {
        if r.random_bool(0.5) {
            pct(r, 0, hi)
        } else {
            Pct::NONE
        }
    };
    let count = r.random_range(lim.users.0..=lim.users.1);
    // Each client's share leaves it about 3 users at least, so that chat has senders (a run
    // that sends nothing fails `no_message_loss` as "exercised nothing").
    let lo = (300 / count).clamp(20, 100);
    let hybrid_message = if connector {
        pct(r, 30, 100)
    } else {
        Pct::NONE
    };
    let jabber = pct(r, lo, 100);
    let webex = if connector || r.random_bool(0.5) {
        pct(r, lo, 100)
    } else {
        Pct::NONE
    };
    Users {
        count,
        hybrid_message,
        // Without Webex users every user is on Jabber (a user on no client sends nothing).
        jabber: if webex == Pct::NONE { Pct::ALL } else { jabber },
        webex,
        hidden_status: maybe(r, 30),
        without_email: maybe(r, 10),
        duplicate_mail_id: if t.imp_clusters.len() > 1 {
            maybe(r, 10)
        } else {
            Pct::NONE
        },
        dnd: maybe(r, 30),
        out_of_office: maybe(r, 30),
        jabber_devices: r.random_range(1..=2),
        jid: JidScheme::default(),
    }
}

fn rate(count: f64, minutes: u64) -> Rate {
    Rate {
        count,
        per: Duration::from_secs(60 * minutes),
    }
}

/// Chat in every direction the population allows; presence and group chat when the swarm
/// enables them.
fn workloads(r: &mut ChaCha8Rng, s: &Scenario, sw: &Swarm) -> Vec<Workload> {
    let (jabber, webex) = (s.users.jabber != Pct::NONE, s.users.webex != Pct::NONE);
    let mut out = Vec::new();
    let chat = |r: &mut ChaCha8Rng, from, mix| ChatWorkload {
        rate_per_user: rate(1.0, r.random_range(1..=4)),
        mix,
        from,
        to: ClientSel::Any,
        start: None,
        stop: None,
        contacts_per_user: r.random_range(1..=5),
        body: None,
    };
    if webex && sw.rich_actions {
        let mix = rich_mix(r);
        out.push(Workload::Chat(chat(r, ClientSel::Webex, mix)));
        if jabber {
            out.push(Workload::Chat(chat(
                r,
                ClientSel::Jabber,
                ChatMix::default(),
            )));
        }
    } else {
        out.push(Workload::Chat(chat(r, ClientSel::Any, ChatMix::default())));
    }
    if sw.presence && jabber {
        out.push(Workload::Presence(PresenceWorkload {
            rate_per_device: rate(1.0, r.random_range(2..=5)),
            manual: pct(r, 0, 100),
            start: None,
            stop: None,
        }));
    }
    if sw.group_chat && jabber {
        out.push(Workload::GroupChat(GroupChatWorkload {
            rate_per_user: rate(1.0, r.random_range(2..=5)),
            room_size: r.random_range(3..=6),
            persistent: pct(r, 0, 100),
            start: None,
            stop: None,
        }));
    }
    out
}

/// Text plus a random share of each Webex App action, adding up to 100%.
fn rich_mix(r: &mut ChaCha8Rng) -> ChatMix {
    let mut left = 100u32;
    let mut take = |r: &mut ChaCha8Rng| {
        let x = r.random_range(0..=left.min(15));
        left -= x;
        Pct(x * 100)
    };
    let (edit, delete, file, typing, read) = (take(r), take(r), take(r), take(r), take(r));
    ChatMix {
        text: Pct(left * 100),
        edit,
        delete,
        file,
        typing,
        read,
    }
}

/// Message bodies of every size up to the limits, with XML-special (`<&>"'`) and non-ASCII
/// characters: swarm-style, half the seeds keep the short word lists; in the others each chat
/// workload draws a character set and a size range (short, medium, or up to the most that
/// crosses in every direction).
fn bodies(r: &mut ChaCha8Rng, workloads: &mut [Workload]) {
    use crate::scenario::{BodyCharSet, BodySize, BodySpec};
    if !r.random_bool(0.5) {
        return;
    }
    for w in workloads.iter_mut() {
        let Workload::Chat(c) = w else { continue };
        let chars = [
            BodyCharSet::Ascii,
            BodyCharSet::Xml,
            BodyCharSet::Unicode,
            BodyCharSet::Mixed,
        ][r.random_range(0..4)];
        let limit = crate::plan::workload::body_bytes_max(chars);
        let max = [200, 4_000, limit][r.random_range(0..3)].min(limit);
        c.body = Some(BodySpec {
            size: BodySize::Range { min: 1, max },
            chars,
        });
    }
}

/// A burst sends one message per user this often at most and at least (seconds): dense
/// enough that a few users put a hundred messages into a few minutes of a failed-over PRG
/// (the planted defect drops one in 50), sparse enough that a seed still costs seconds.
const BURST_INTERVAL_S: (u64, u64) = (4, 15);

/// A burst goes on this long (seconds, drawn) after its fault's messages stop being at risk,
/// to see what the fault left behind: sessions moved to the PRG peer, clients back.
const BURST_AFTER_S: (u64, u64) = (180, 300);

/// Swarm, around faults: when the seed enables it, a chat workload much busier than the
/// background chat, from just before one fault until some minutes after that fault's risk
/// window ends ([`crate::oracle::RISK_MARGIN`]), so that what the fault leaves behind
/// (a PRG failed over, users moved between nodes) carries traffic that must arrive. The
/// fault is a PRG failover added for the burst when the topology has a PRG pair (on half the
/// seeds that have faults already, on every seed that has none), else one of the drawn ones.
/// An added failover comes early (1-2 minutes in) and the run lasts long enough after it,
/// within the profile's longest duration.
fn fault_burst(r: &mut ChaCha8Rng, s: &mut Scenario, sw: &Swarm, lim: &Limits) {
    if !sw.fault_burst {
        return;
    }
    let p = pools(s);
    let add = applies("imp_failover", &p) && (s.faults.is_empty() || r.random_bool(0.5));
    let focus = if add {
        let mut f = fault(r, "imp_failover", &p, s);
        f.at = Dur::from_secs(r.random_range(60..=120));
        if f.for_.is_some() {
            f.for_ = Some(Dur::from_secs(r.random_range(120..=300)));
        }
        s.faults.push(f.clone());
        s.faults.sort_by_key(|f| f.at);
        f
    } else if s.faults.is_empty() {
        return;
    } else {
        s.faults[r.random_range(0..s.faults.len())].clone()
    };
    let (start, end) = crate::plan::faults::window(&focus);
    // An automatic failover is seen by the PRG a heartbeat timeout after the crash.
    let heartbeat = Duration::from_secs(60);
    // Clients log in during the first minute.
    let login = Duration::from_secs(60);
    let after = Duration::from_secs(r.random_range(BURST_AFTER_S.0..=BURST_AFTER_S.1));
    let stop = end + heartbeat + crate::oracle::RISK_MARGIN + after;
    if add {
        let longest = Duration::from_secs(60 * lim.duration_min.1);
        s.duration = s.duration.max(Dur(stop.min(longest)));
    }
    let from = match (s.users.webex != Pct::NONE, r.random_range(0..10)) {
        (true, 0..5) => ClientSel::Webex,
        (true, 5..7) => ClientSel::Jabber,
        _ => ClientSel::Any,
    };
    let every_s = r.random_range(BURST_INTERVAL_S.0..=BURST_INTERVAL_S.1);
    let burst = ChatWorkload {
        rate_per_user: Rate {
            count: 1.0,
            per: Duration::from_secs(every_s),
        },
        mix: ChatMix::default(),
        from,
        to: ClientSel::Any,
        start: Some(Dur(start
            .saturating_sub(Duration::from_secs(30))
            .max(login))),
        stop: (stop < s.duration.0).then_some(Dur(stop)),
        contacts_per_user: r.random_range(1..=3),
        body: None,
    };
    apply_burst(&mut s.workloads, burst);
}

/// The most events a second one workload of a generated scenario makes across the whole
/// population: the library's Large-node busy hour (`large-expressway-15k`: 15,000 users, one
/// message per user per 10 minutes, 25 a second). The per-user rates are drawn for the small
/// profile's tens of users; a large seed's thousands of users at those rates sent some 600,000
/// messages in 11 minutes (seed 1: 3,657 users, one message per user per 4 s) and had not
/// finished after 898 CPU s. No small seed comes near the cap (40 users, one message per 4 s
/// at most: 10 a second), so the small profile draws what it drew before.
const WORKLOAD_EVENTS_PER_S_MAX: f64 = 25.0;

/// Stretches each workload's per-user (or per-device) period so that the whole population
/// makes at most [`WORKLOAD_EVENTS_PER_S_MAX`] events a second ([`stretched`]).
fn cap_rates(s: &mut Scenario) {
    let users = f64::from(s.users.count);
    let devices = users * f64::from(s.users.jabber_devices.max(1));
    for w in &mut s.workloads {
        match w {
            Workload::Chat(c) => c.rate_per_user = stretched(c.rate_per_user, users),
            Workload::GroupChat(g) => g.rate_per_user = stretched(g.rate_per_user, users),
            Workload::Presence(p) => p.rate_per_device = stretched(p.rate_per_device, devices),
        }
    }
}

/// `rate` per member, its period lengthened to whole seconds if `members` of them would make
/// more than [`WORKLOAD_EVENTS_PER_S_MAX`] events a second.
fn stretched(rate: Rate, members: f64) -> Rate {
    let per_s = rate.per.as_secs_f64();
    if per_s <= 0.0 || members * rate.count / per_s <= WORKLOAD_EVENTS_PER_S_MAX {
        return rate;
    }
    let min_s = (members * rate.count / WORKLOAD_EVENTS_PER_S_MAX).ceil();
    Rate {
        count: rate.count,
        per: Duration::from_secs(min_s as u64),
    }
}

/// Puts the burst `b` into the chat workloads. A sender has one chat plan (validation
/// refuses two workloads with the same senders), so the workloads of `b`'s senders take its
/// rate and window, keeping their mix, contacts and bodies; a workload of every sender keeps
/// sending at its own rate from the other client's senders, and `b` is added for its own.
fn apply_burst(workloads: &mut Vec<Workload>, b: ChatWorkload) {
    let mut covered = false;
    for w in workloads.iter_mut() {
        let Workload::Chat(c) = w else { continue };
        if b.from == ClientSel::Any || c.from == b.from {
            (c.rate_per_user, c.start, c.stop) = (b.rate_per_user, b.start, b.stop);
            covered = true;
        } else if c.from == ClientSel::Any {
            c.from = match b.from {
                ClientSel::Webex => ClientSel::Jabber,
                _ => ClientSel::Webex,
            };
        }
    }
    if !covered {
        workloads.push(Workload::Chat(b));
    }
}

/// Hosts a fault may name, by role.
struct Pools {
    imp: Vec<String>,
    exp: Vec<String>,
    farms: Vec<String>,
    cloud: Vec<String>,
    /// IM&P nodes with a PRG peer (nodes 1+2, 3+4, 5+6 of a cluster).
    paired: Vec<String>,
    /// IM&P clusters with a PRG.
    prg_clusters: Vec<String>,
}

fn pools(s: &Scenario) -> Pools {
    let t = &s.topology;
    let mut p = Pools {
        imp: Vec::new(),
        exp: Vec::new(),
        farms: Vec::new(),
        cloud: Vec::new(),
        paired: Vec::new(),
        prg_clusters: Vec::new(),
    };
    for c in &t.imp_clusters {
        p.imp.extend((1..=c.nodes).map(|n| imp_host(&c.name, n)));
        let paired = if c.nodes % 2 == 0 {
            c.nodes
        } else {
            c.nodes - 1
        };
        p.paired.extend((1..=paired).map(|n| imp_host(&c.name, n)));
        if c.nodes > 1 {
            p.prg_clusters.push(c.name.clone());
        }
    }
    for e in &t.expressway_clusters {
        p.exp.extend((1..=e.nodes).map(|n| exp_host(&e.name, n)));
    }
    p.farms
        .extend((1..=t.client_farms.jabber).map(|k| format!("jabber-{k}")));
    if crate::plan::topology::uses_cloud(s) {
        p.farms
            .extend((1..=t.client_farms.webex).map(|k| format!("webex-{k}")));
        let kms = match t.kms {
            KmsKind::Cloud => "kms",
            KmsKind::Hds => "hds",
        };
        p.cloud = vec!["cloud".into(), kms.into()];
    }
    p
}

/// Whether `kind` can be drawn in this scenario.
fn applies(kind: &str, p: &Pools) -> bool {
    let connector = !p.exp.is_empty();
    match kind {
        "imp_failover" => !p.paired.is_empty(),
        "prg_high_availability" => !p.prg_clusters.is_empty(),
        "axl_stop"
        | "connector_disable"
        | "connector_restart"
        | "maintenance_mode"
        | "expressway_maintenance"
        | "reactivate" => connector,
        "cloud_outage" | "kms_outage" | "http_errors" => !p.cloud.is_empty(),
        _ => true,
    }
}

/// Up to `max` faults of the kinds the swarm enabled, each ending by `duration`.
fn faults(r: &mut ChaCha8Rng, s: &Scenario, sw: &Swarm, max: usize) -> Vec<Fault> {
    let p = pools(s);
    let kinds: Vec<&str> = sw
        .fault_kinds
        .iter()
        .copied()
        .filter(|k| applies(k, &p))
        .collect();
    if kinds.is_empty() {
        return Vec::new();
    }
    let n = r.random_range(0..=max);
    let total_s = s.duration.0.as_secs();
    let mut out: Vec<Fault> = (0..n)
        .map(|_| {
            let kind = kinds[r.random_range(0..kinds.len())];
            // A failover lasts long enough for the connector to detect it and move sessions
            // (detection delay up to 3 minutes, then the migration rate).
            let for_s = match kind {
                "imp_failover" => r.random_range(120..=300u64),
                _ => r.random_range(20..=120u64),
            };
            // Start after login (1 minute) and end a minute before `duration`.
            let for_s = for_s.min(total_s.saturating_sub(120).max(10));
            let latest = total_s.saturating_sub(60 + for_s).max(61);
            let at = Dur::from_secs(r.random_range(60..=latest));
            let mut f = fault(r, kind, &p, s);
            f.at = at;
            if f.for_.is_some() {
                f.for_ = Some(Dur::from_secs(for_s));
            }
            f
        })
        .collect();
    out.sort_by_key(|f| f.at);
    out
}

fn pick(r: &mut ChaCha8Rng, v: &[String]) -> String {
    v[r.random_range(0..v.len())].clone()
}

/// One host, or two sides of a link, drawn from every host of the run.
fn sides(r: &mut ChaCha8Rng, p: &Pools) -> (Hosts, Hosts) {
    let all: Vec<String> = [&p.imp, &p.exp, &p.farms, &p.cloud]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let a = pick(r, &all);
    let rest: Vec<String> = all.into_iter().filter(|h| *h != a).collect();
    let b = if rest.is_empty() {
        a.clone()
    } else {
        pick(r, &rest)
    };
    (Hosts(vec![a]), Hosts(vec![b]))
}

/// A fault of `kind` at time zero; [`faults`] sets `at` and the length of a timed one
/// (`for: Some(..)` marks the kinds that take one).
fn fault(r: &mut ChaCha8Rng, kind: &str, p: &Pools, s: &Scenario) -> Fault {
    let timed = Some(Dur::from_secs(0));
    let mut f = Fault::default();
    let node = |r: &mut ChaCha8Rng, v: &[String]| NodeRef { node: pick(r, v) };
    match kind {
        "crash" | "bounce" => {
            let all: Vec<String> = [&p.imp, &p.exp, &p.farms, &p.cloud]
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            let h = Some(Hosts(vec![pick(r, &all)]));
            if kind == "crash" {
                (f.crash, f.for_) = (h, timed);
            } else {
                f.bounce = h;
            }
        }
        "partition" | "hold" => {
            let (a, b) = sides(r, p);
            let between = Some(Between { a, b });
            if kind == "partition" {
                f.partition = between;
            } else {
                f.hold = between;
            }
            f.for_ = timed;
        }
        "partition_oneway" => {
            let (from, to) = sides(r, p);
            (f.partition_oneway, f.for_) = (Some(OneWay { from, to }), timed);
        }
        "link_latency" => {
            let (a, b) = sides(r, p);
            let latency = Dur::from_ms(TICK_MS * r.random_range(1..=20));
            (f.link_latency, f.for_) = (Some(LinkLatency { a, b, latency }), timed);
        }
        "packet_loss" => {
            let (a, b) = sides(r, p);
            let rate = pct(r, 1, 20);
            (f.packet_loss, f.for_) = (Some(PacketLoss { a, b, rate }), timed);
        }
        _ => service_fault(r, kind, p, s, &mut f, node),
    }
    f
}

fn service_fault(
    r: &mut ChaCha8Rng,
    kind: &str,
    p: &Pools,
    s: &Scenario,
    f: &mut Fault,
    node: impl Fn(&mut ChaCha8Rng, &[String]) -> NodeRef,
) {
    let timed = Some(Dur::from_secs(0));
    match kind {
        "imp_failover" => {
            let mode = if r.random_bool(0.5) {
                FailoverMode::Manual
            } else {
                FailoverMode::Automatic
            };
            f.imp_failover = Some(ImpFailover {
                node: pick(r, &p.paired),
                mode,
            });
            f.for_ = if r.random_bool(0.5) { timed } else { None };
        }
        "axl_stop" => (f.axl_stop, f.for_) = (Some(node(r, &p.imp)), timed),
        "cloud_outage" => (f.cloud_outage, f.for_) = (Some(Outage {}), timed),
        "kms_outage" => (f.kms_outage, f.for_) = (Some(Outage {}), timed),
        "http_errors" => {
            let status = [429, 500, 503][r.random_range(0..3)];
            let rate = pct(r, 10, 50);
            (f.http_errors, f.for_) = (Some(HttpErrors { rate, status }), timed);
        }
        "connector_disable" => (f.connector_disable, f.for_) = (Some(node(r, &p.exp)), timed),
        "connector_restart" => f.connector_restart = Some(node(r, &p.exp)),
        "maintenance_mode" => (f.maintenance_mode, f.for_) = (Some(node(r, &p.exp)), timed),
        "expressway_maintenance" => {
            (f.expressway_maintenance, f.for_) = (Some(node(r, &p.exp)), timed)
        }
        "reactivate" => f.reactivate = Some(Default::default()),
        "prg_high_availability" => {
            let cluster = pick(r, &p.prg_clusters);
            let current = s
                .topology
                .imp_clusters
                .iter()
                .find(|c| c.name == cluster)
                .is_some_and(|c| c.prg.high_availability);
            f.prg_high_availability = Some(PrgHighAvailability {
                cluster,
                enabled: !current,
            });
        }
        _ => unreachable!("fault kind {kind} is not in FAULT_KINDS"),
    }
}

/// The checks: every one that applies and is always sound is on; the optional ones the
/// swarm enabled are on when they apply.
fn checks(s: &Scenario, sw: &Swarm) -> Vec<CheckSpec> {
    let connector = !s.topology.expressway_clusters.is_empty();
    let cloud = crate::plan::topology::uses_cloud(s);
    let mut out = vec![
        CheckSpec::new("no_message_loss", serde_yaml::Value::Null),
        CheckSpec::new("per_conversation_order", serde_yaml::Value::Null),
        CheckSpec::new("liveness", yaml("{ within: 5m }")),
    ];
    if cloud {
        out.push(CheckSpec::new(
            "no_plaintext_at_cloud",
            serde_yaml::Value::Null,
        ));
    }
    if connector {
        out.push(CheckSpec::new(
            "no_secrets_in_logs",
            serde_yaml::Value::Null,
        ));
        for name in &sw.optional_checks {
            out.push(CheckSpec::new(name, serde_yaml::Value::Null));
        }
    }
    // A check's own rules (what it needs of the topology) decide whether it applies.
    let mut kept = Vec::new();
    for c in out {
        let mut one = s.clone();
        one.checks = vec![c.clone()];
        if crate::plan::validate::validate(&one, &crate::checks::Registry).is_empty() {
            kept.push(c);
        }
    }
    kept
}

fn yaml(text: &str) -> serde_yaml::Value {
    serde_yaml::from_str(text).expect("static YAML")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explore::yaml::to_yaml;

    /// Every generated scenario passes `hmsim check`, and its YAML reads back to the same
    /// scenario (written again, byte for byte the same text).
    #[test]
    fn two_hundred_seeds_are_valid_and_round_trip() {
        for seed in 0..200 {
            let s = generate(seed, Profile::Small);
            let text = to_yaml(&s, &[]);
            let back = crate::parse("gen.yaml", &text)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{text}"));
            assert_eq!(to_yaml(&back, &[]), text, "seed {seed}");
        }
    }

    #[test]
    fn large_profile_seeds_are_valid() {
        for seed in 0..20 {
            let text = to_yaml(&generate(seed, Profile::Large), &[]);
            crate::parse("gen.yaml", &text).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{text}"));
        }
    }

    /// Events a second of each workload across the population (members x count / period).
    fn events_per_s(s: &Scenario) -> Vec<f64> {
        let users = f64::from(s.users.count);
        let devices = users * f64::from(s.users.jabber_devices.max(1));
        let per_s = |r: Rate, m: f64| m * r.count / r.per.as_secs_f64();
        s.workloads
            .iter()
            .map(|w| match w {
                Workload::Chat(c) => per_s(c.rate_per_user, users),
                Workload::GroupChat(g) => per_s(g.rate_per_user, users),
                Workload::Presence(p) => per_s(p.rate_per_device, devices),
            })
            .collect()
    }

    /// Large seed 1 drew 3,657 users sending one message each every 4 s for 11 minutes and
    /// had not finished after 898 CPU s. A large seed's workloads stay within the library's
    /// busy hour (25 events a second), and some large seeds were above it as drawn.
    #[test]
    fn a_large_seed_chats_no_harder_than_the_busy_hour() {
        let mut stretched_seeds = 0;
        for seed in 0..20 {
            let s = generate(seed, Profile::Large);
            for (i, eps) in events_per_s(&s).into_iter().enumerate() {
                assert!(eps <= 25.0, "seed {seed} workload {i}: {eps:.1} events/s");
            }
            stretched_seeds +=
                usize::from(to_yaml(&s, &[]) != to_yaml(&drawn(seed, Profile::Large), &[]));
        }
        assert!(
            stretched_seeds >= 10,
            "{stretched_seeds} of 20 large seeds capped"
        );
        let s1 = drawn(1, Profile::Large);
        assert!(
            events_per_s(&s1).iter().any(|&e| e > 900.0),
            "seed 1 as drawn"
        );
    }

    /// The cap never touches a small seed: the CI range's known failures (`known.txt`) name
    /// scenarios by seed, and those must stay the ones drawn.
    /// Explore seeds 24366 and 24996 drew scenarios that sent nothing, and `no_message_loss`
    /// failed them as exercising nothing: 8 and 12 users, a few of them senders at one message
    /// per 3-4 minutes over 5-6 minutes (24366: both users with both clients drew Jabber, so
    /// its Webex workload had no sender; the four Jabber senders, about 5.5 messages expected,
    /// sent none). Every drawn scenario that judges messages expects enough of them that
    /// sending none is beyond chance.
    #[test]
    fn every_drawn_scenario_that_judges_messages_expects_enough_of_them() {
        for seed in (0..300).chain([24366, 24996]) {
            let s = generate(seed, Profile::Small);
            if s.checks.iter().any(|c| c.name == "no_message_loss") {
                let expected = expected_messages(&s);
                assert!(
                    expected >= EXPECTED_MESSAGES_MIN,
                    "seed {seed}: {expected:.1} messages expected"
                );
            }
        }
    }

    #[test]
    fn the_rate_cap_leaves_every_small_seed_as_drawn() {
        for seed in 0..300 {
            let s = generate(seed, Profile::Small);
            assert_eq!(
                to_yaml(&s, &[]),
                to_yaml(&drawn(seed, Profile::Small), &[]),
                "seed {seed}"
            );
        }
    }

    /// A drawn scenario is one the guides can pass: no PRG peer left beyond its JSM limit, no
    /// `liveness` bound shorter than the guide's migration pace (`hmsim check`'s warnings).
    #[test]
    fn drawn_scenarios_carry_no_warnings() {
        let small = (0..300).map(|seed| (seed, Profile::Small));
        for (seed, profile) in small.chain((1..4).map(|seed| (seed, Profile::Large))) {
            let w = crate::checks::scenario_warnings(&generate(seed, profile));
            assert!(w.is_empty(), "seed {seed} {profile:?}: {w:?}");
        }
    }

    #[test]
    fn a_rate_too_busy_for_its_members_is_stretched_to_whole_seconds() {
        let every_4s = Rate {
            count: 1.0,
            per: Duration::from_secs(4),
        };
        assert_eq!(stretched(every_4s, 40.0), every_4s);
        assert_eq!(stretched(every_4s, 100.0), every_4s);
        let s = stretched(every_4s, 3657.0);
        assert_eq!(s.per, Duration::from_secs(147));
        let per_s = s.per.as_secs_f64();
        assert!(
            3657.0 / per_s <= 25.0 && 3657.0 / (per_s - 1.0) > 25.0,
            "the shortest"
        );
    }

    #[test]
    fn a_seed_draws_the_same_scenario_and_seeds_differ() {
        let a = to_yaml(&generate(7, Profile::Small), &[]);
        assert_eq!(a, to_yaml(&generate(7, Profile::Small), &[]));
        assert_ne!(a, to_yaml(&generate(8, Profile::Small), &[]));
    }

    /// Spec 24: some seeds have JIDs that differ from mail IDs (some under another mail
    /// domain), others none.
    #[test]
    fn some_seeds_draw_jids_that_differ_from_mail_ids() {
        let schemes: Vec<JidScheme> = (0..200)
            .map(|seed| generate(seed, Profile::Small).users.jid)
            .collect();
        let differ = schemes.iter().filter(|j| j.differs_from_email > Pct::NONE);
        let n = differ.clone().count();
        assert!((60..=140).contains(&n), "{n} of 200 seeds");
        let domains = differ.filter(|j| j.email_domain.is_some()).count();
        assert!(
            domains > 10 && domains < n,
            "{domains} of {n} with another domain"
        );
    }

    /// Swarm around faults: about half the seeds chat in a burst around one fault, many of
    /// them around a PRG failover for good early in the run, with at least three minutes of
    /// burst after its risk window (an automatic failover is seen a heartbeat timeout, 60 s,
    /// after the crash; the risk window is 150 s more), where every message must arrive.
    #[test]
    fn some_seeds_burst_around_an_early_failover() {
        let burst_end = |s: &Scenario| {
            s.workloads.iter().find_map(|w| match w {
                Workload::Chat(c)
                    if c.rate_per_user.per <= Duration::from_secs(BURST_INTERVAL_S.1) =>
                {
                    Some(c.stop.unwrap_or(s.duration).0)
                }
                _ => None,
            })
        };
        let (mut bursts, mut early) = (0, 0);
        for seed in 0..200 {
            let s = generate(seed, Profile::Small);
            let Some(end) = burst_end(&s) else {
                continue;
            };
            bursts += 1;
            let room = |f: &Fault| {
                f.imp_failover.is_some()
                    && f.for_.is_none()
                    && f.at.0 <= Duration::from_secs(120)
                    && end >= f.at.0 + Duration::from_secs(60 + 150 + 180)
            };
            early += usize::from(s.faults.iter().any(room));
        }
        assert!((60..=120).contains(&bursts), "{bursts} of 200 seeds burst");
        assert!(
            early >= 10,
            "{early} of {bursts} bursts around an early failover"
        );
    }

    /// Explore seed 2998: the registration completed at about 290 s, after the automatic
    /// failover (a crash with no end) of imp-a-1, the only AXL publisher, at 98 s; the
    /// connector discovered no user and `within_capacity` had nothing to judge. The seed no
    /// longer carries the check; a failover that ends (the host restarts), or a later bounce,
    /// keeps the publisher.
    #[test]
    fn a_publisher_lost_for_good_leaves_within_capacity_off() {
        let s = generate(2998, Profile::Small);
        assert!(publisher_lost(&s, 0), "{}", to_yaml(&s, &[]));
        let names: Vec<&str> = s.checks.iter().map(|c| c.name.as_str()).collect();
        assert!(!names.contains(&"within_capacity"), "{names:?}");
        assert!(names.contains(&"no_message_loss"), "{names:?}");
        let mut timed = s.clone();
        let fo = timed.faults.iter_mut().find(|f| f.imp_failover.is_some());
        fo.expect("the failover").for_ = Some(Dur::from_secs(120));
        assert!(!publisher_lost(&timed, 0));
        let mut bounced = s.clone();
        bounced.faults.push(Fault {
            at: Dur::from_secs(200),
            bounce: Some(Hosts(vec!["imp-a-1".into()])),
            ..Fault::default()
        });
        assert!(!publisher_lost(&bounced, 0));
        let mut other = s.clone();
        let fo = other
            .faults
            .iter_mut()
            .find_map(|f| f.imp_failover.as_mut());
        fo.expect("the failover").node = "imp-a-2".into();
        assert!(!publisher_lost(&other, 0));
    }

    /// Explore seed 3182: no connector, and none of the 14 users drew the Webex App (23%
    /// each), so no body ever reached the cloud and `no_plaintext_at_cloud` had nothing to
    /// judge. The seed no longer carries the check.
    #[test]
    fn a_population_without_webex_users_leaves_no_plaintext_at_cloud_off() {
        let s = generate(3182, Profile::Small);
        let people = crate::plan::topology::population(&s, &RngFactory::new(s.seed));
        assert!(people.iter().all(|u| !u.webex && !u.hybrid));
        let names: Vec<&str> = s.checks.iter().map(|c| c.name.as_str()).collect();
        assert!(!names.contains(&"no_plaintext_at_cloud"), "{names:?}");
        // Seeds with Webex users keep it.
        let kept = (0..50)
            .map(|seed| generate(seed, Profile::Small))
            .filter(|s| s.checks.iter().any(|c| c.name == "no_plaintext_at_cloud"))
            .count();
        assert!(kept > 25, "{kept} of 50 seeds");
    }

    /// Swarm: across seeds, every fault kind is both enabled and left out somewhere.
    #[test]
    fn the_swarm_enables_every_fault_kind_in_some_seeds_only() {
        let swarms: Vec<Swarm> = (0..100).map(|s| swarm(&RngFactory::new(s))).collect();
        for kind in FAULT_KINDS {
            let on = swarms
                .iter()
                .filter(|s| s.fault_kinds.contains(kind))
                .count();
            assert!(on > 10 && on < 90, "{kind} on in {on} of 100");
        }
    }
}
