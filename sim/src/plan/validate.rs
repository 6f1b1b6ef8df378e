//! Cross-field rules of a scenario, and gates for parts no code executes yet.
//!
//! Each rule yields a [`Problem`] with the field path it concerns and, where possible, the valid
//! values; [`crate::scenario::parse`] turns paths into line and column. Rules cite the spec item they
//! come from. All problems are collected, not just the first, so one edit fixes a file.

use crate::plan::topology;
use crate::scenario::schema::*;
use crate::scenario::units::{Dur, Pct, imp_version};
use std::collections::BTreeSet;

/// Most nodes in an IM&P or Expressway cluster (spec 1, 5).
pub const CLUSTER_NODES_MAX: u32 = 6;
/// Most IM&P clusters one Expressway cluster may serve (spec 5, 19).
pub const IMP_CLUSTERS_PER_EXPRESSWAY_MAX: usize = 5;
/// Most client-farm hosts of one kind: turmoil's per-tick cost grows faster than the host
/// count (each tick visits every host), and 16 farms already carry 195,000 users.
pub const CLIENT_FARMS_MAX: u32 = 16;
/// Most users in a scenario: the largest supported organization is 195,000 Hybrid Message
/// users (spec 4); a little headroom for non-HM users.
pub const USERS_MAX: u32 = 250_000;
/// Most Jabber devices per user; Jabber users run desktop, mobile, and perhaps a tablet.
pub const JABBER_DEVICES_MAX: u32 = 4;
/// Coarsest tick accepted: beyond this, XMPP keepalives (30 s) would be distorted.
pub const TICK_MAX_MS: u64 = 1_000;
/// Longest `duration` and longest `drain`: 30 days, the longest latency the run's histogram
/// holds (`oracle::tally::LATENCY_MS_MAX`); the longest library scenario simulates 74 h of
/// offline storage. Without a bound a typo (`99999999999999999999d`) runs forever.
pub const DURATION_MAX_MS: u64 = 30 * 86_400_000;

pub use crate::scenario::Problem;

struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>, help: Option<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
            help,
        });
    }
    fn unsupported(&mut self, path: impl Into<String>, what: &str) {
        self.0.push(unsupported(&path.into(), what));
    }
}

/// Every rule violation in `s`.
pub fn validate(s: &Scenario, catalog: &dyn Catalog) -> Vec<Problem> {
    let mut p = Problems(Vec::new());
    header(s, &mut p);
    keepalive(s, &mut p);
    imp_clusters(s, &mut p);
    expressway_clusters(s, &mut p);
    connector_rules(s, &mut p);
    others(s, &mut p);
    users(s, &mut p);
    for (i, w) in s.workloads.iter().enumerate() {
        workload(s, i, w, &mut p);
    }
    chat_senders(s, &mut p);
    let hosts = topology::all_hosts(s);
    duplicate_hosts(s, &hosts, &mut p);
    for (i, f) in s.faults.iter().enumerate() {
        fault(s, i, f, &hosts, &mut p);
    }
    checks(s, catalog, &mut p);
    p.0
}

/// The keepalive interval within what devices run ([`fakes::clients::jabber::KEEPALIVE_INTERVAL_MIN`]
/// to `_MAX`).
fn keepalive(s: &Scenario, p: &mut Problems) {
    use fakes::clients::jabber::{KEEPALIVE_INTERVAL_MAX, KEEPALIVE_INTERVAL_MIN};
    let every = s.keepalive.interval.0;
    if !(KEEPALIVE_INTERVAL_MIN..=KEEPALIVE_INTERVAL_MAX).contains(&every) {
        p.add(
            "keepalive.interval",
            format!(
                "keepalive interval {} is out of range",
                s.keepalive.interval
            ),
            Some(format!(
                "{} to {}",
                Dur(KEEPALIVE_INTERVAL_MIN),
                Dur(KEEPALIVE_INTERVAL_MAX)
            )),
        );
    }
}

/// A workload's `start..stop` must be a non-empty window within `duration`.
fn window(s: &Scenario, at: &str, start: Option<Dur>, stop: Option<Dur>, p: &mut Problems) {
    let start = start.unwrap_or_default();
    let stop = stop.unwrap_or(s.duration);
    if start >= stop || stop > s.duration {
        p.add(
            format!("{at}.stop"),
            format!(
                "the workload window {start}..{stop} is empty or ends after `duration` ({})",
                s.duration
            ),
            Some("start < stop <= duration".into()),
        );
    }
}

fn header(s: &Scenario, p: &mut Problems) {
    if s.name.is_empty()
        || !s
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        p.add(
            "name",
            format!("invalid name `{}`", s.name),
            Some("use lowercase letters, digits and `-` (it becomes a directory name)".into()),
        );
    }
    if s.duration.ms() == 0 {
        p.add("duration", "duration must be more than 0", None);
    }
    for (field, d) in [("duration", s.duration), ("drain", s.drain)] {
        if d.ms() > DURATION_MAX_MS {
            p.add(
                field,
                format!("{field} {d} is longer than the longest run hmsim simulates"),
                Some(format!("at most {}", Dur::from_ms(DURATION_MAX_MS))),
            );
        }
    }
    if s.duration.ms() > 0 && s.tick.ms() > s.duration.ms() {
        p.add(
            "tick",
            format!(
                "tick {} is longer than duration {}: the run would take one step and check nothing",
                s.tick, s.duration
            ),
            Some("a tick is a small fraction of the duration; 10ms is the default".into()),
        );
    }
    if s.tick.ms() == 0 || s.tick.ms() > TICK_MAX_MS {
        p.add(
            "tick",
            format!("tick {} is out of range", s.tick),
            Some(format!("use 1ms to {TICK_MAX_MS}ms; 10ms is the default")),
        );
    }
}

fn imp_clusters(s: &Scenario, p: &mut Problems) {
    let t = &s.topology;
    if t.imp_clusters.is_empty() {
        p.add(
            "topology.imp_clusters",
            "at least one IM&P cluster is needed",
            Some("add `- { name: a, nodes: 1 }`".into()),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, c) in t.imp_clusters.iter().enumerate() {
        let at = format!("topology.imp_clusters[{i}]");
        if !seen.insert(topology::imp_host(&c.name, 0)) {
            p.add(
                format!("{at}.name"),
                format!("IM&P cluster `{}` is defined twice", c.name),
                None,
            );
        }
        if !valid_label(&c.name) {
            p.add(
                format!("{at}.name"),
                format!("invalid cluster name `{}`", c.name),
                Some("use lowercase letters, digits and `-`".into()),
            );
        }
        if c.nodes == 0 || c.nodes > CLUSTER_NODES_MAX {
            p.add(
                format!("{at}.nodes"),
                format!(
                    "an IM&P cluster has 1 to {CLUSTER_NODES_MAX} nodes, not {} (spec 5)",
                    c.nodes
                ),
                Some(format!("valid values: 1..={CLUSTER_NODES_MAX}")),
            );
        }
        // PRG user assignment other than Balanced (users spread over both nodes, spec 65) is
        // not modelled: the population is always spread round-robin over the nodes.
        if c.prg.assignment != PrgAssignment::Balanced {
            p.unsupported(
                format!("{at}.prg.assignment"),
                "a PRG assignment mode other than `balanced`",
            );
        }
        if imp_version(&c.version).is_none() {
            p.add(
                format!("{at}.version"),
                format!("invalid IM&P version `{}`", c.version),
                Some("write major.minor, optionally with a build suffix: `14.0`, `12.5`, `11.5(1)SU3`".into()),
            );
        }
    }
}

fn expressway_clusters(s: &Scenario, p: &mut Problems) {
    let imp_names: Vec<String> = s
        .topology
        .imp_clusters
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let mut served_by: std::collections::BTreeMap<String, String> = Default::default();
    for (i, e) in s.topology.expressway_clusters.iter().enumerate() {
        let at = format!("topology.expressway_clusters[{i}]");
        if e.nodes == 0 || e.nodes > CLUSTER_NODES_MAX {
            p.add(
                format!("{at}.nodes"),
                format!(
                    "an Expressway cluster has 1 to {CLUSTER_NODES_MAX} nodes, not {} (spec 1)",
                    e.nodes
                ),
                Some(format!("valid values: 1..={CLUSTER_NODES_MAX}")),
            );
        }
        if e.imp_clusters.len() > IMP_CLUSTERS_PER_EXPRESSWAY_MAX {
            p.add(
                format!("{at}.imp_clusters"),
                format!(
                    "an Expressway cluster serves at most {IMP_CLUSTERS_PER_EXPRESSWAY_MAX} IM&P clusters, not {} (spec 5, 19)",
                    e.imp_clusters.len()
                ),
                None,
            );
        }
        for (j, name) in e.imp_clusters.iter().enumerate() {
            let path = format!("{at}.imp_clusters[{j}]");
            if !imp_names.contains(name) {
                p.add(
                    path,
                    format!("no IM&P cluster is named `{name}`"),
                    Some(one_of(name, &imp_names)),
                );
            } else if let Some(other) = served_by.insert(name.clone(), e.name.clone()) {
                p.add(
                    path,
                    format!(
                        "IM&P cluster `{name}` is already served by Expressway cluster `{other}`: meshing is not supported (spec 19)"
                    ),
                    Some("an IM&P cluster may be configured on one Expressway cluster only".into()),
                );
            }
        }
        coresidency_shape(e, &at, p);
    }
    mdm_served(s, p);
}

/// Control Hub registers an Expressway cluster only in a shape the guides give a capacity for
/// (spec 6: Calendar+Message on one Medium node 4,000; Calendar+Call+Message 1,300 / 2,300 /
/// 3,000 per Small / Medium / Large in two-node clusters; "Coresidency recommended only up to
/// two nodes"). Any other coresidency is refused there: no registration token, so the bridge
/// would silently never come up.
fn coresidency_shape(e: &ExpresswayCluster, at: &str, p: &mut Problems) {
    if e.nodes == 0 || e.nodes > CLUSTER_NODES_MAX || e.coresident.is_empty() || e.mra {
        return; // the node count is reported above; MRA coresidency has its own figures
    }
    let (size, coresidency) = crate::plan::connector::capacity_shape(e);
    if fakes::cloud::assignment::node_capacity(size, coresidency, e.nodes as usize).is_some() {
        return;
    }
    let with: Vec<&str> = e
        .coresident
        .iter()
        .map(|c| match c {
            Coresident::Calendar => "calendar",
            Coresident::Call => "call",
        })
        .collect();
    p.add(
        format!("{at}.coresident"),
        format!(
            "Control Hub gives no capacity for a {} Expressway cluster of {} node(s) with [{}] beside Message (spec 6), so it refuses to register it",
            crate::plan::connector::size_name(e.size),
            e.nodes,
            with.join(", ")
        ),
        Some("documented shapes, 1 or 2 nodes: `coresident: [calendar]` on `size: medium`; `coresident: [calendar, call]` on any size; or `coresident: []`".into()),
    );
}

/// Hybrid Message needs MDM on every IM&P cluster a connector serves (spec 20; the guide:
/// "Your IM and Presence Service clusters must have Multiple Device Messaging (MDM) enabled
/// (this feature is enabled by default)"): without it the connector gets no carbon of what
/// its users write on Jabber.
fn mdm_served(s: &Scenario, p: &mut Problems) {
    for (ci, c) in s.topology.imp_clusters.iter().enumerate() {
        let served = s
            .topology
            .expressway_clusters
            .iter()
            .find(|e| e.imp_clusters.contains(&c.name));
        if let (false, Some(e)) = (c.mdm, served) {
            p.add(
                format!("topology.imp_clusters[{ci}].mdm"),
                format!(
                    "IM&P cluster `{}` is served by Expressway cluster `{}` with MDM off: Hybrid Message requires Multiple Device Messaging enabled (spec 20)",
                    c.name, e.name
                ),
                Some("set `mdm: true` (the default), or serve this IM&P cluster from no Expressway cluster".into()),
            );
        }
    }
}

/// The connector's own configuration rules (spec 11-21), run on each Expressway cluster as
/// the connector would at start: a scenario that breaks one is refused before any run.
/// Meshing and the 5-cluster limit are reported above with their own paths.
fn connector_rules(s: &Scenario, p: &mut Problems) {
    use connector::core::config::{self, ConfigError};
    if s.topology.expressway_clusters.iter().any(|e| {
        e.imp_clusters
            .iter()
            .any(|c| !s.topology.imp_clusters.iter().any(|i| &i.name == c))
    }) {
        return; // dangling references are reported already
    }
    for (i, e) in s.topology.expressway_clusters.iter().enumerate() {
        let at = format!("topology.expressway_clusters[{i}]");
        let cfg = crate::plan::connector::connector_config(s, e);
        for err in config::validate(&cfg, &[]) {
            let path = match &err {
                ConfigError::UppercaseHostname(_)
                    if e.hostname_check == crate::scenario::HostnameCheck::Skip =>
                {
                    continue; // the scenario shows Control Hub's own refusal
                }
                ConfigError::UppercaseHostname(_) => format!("{at}.hostname"),
                ConfigError::AxlIsAdmin { cluster, .. }
                | ConfigError::AxlCredentialsMissing(cluster) => {
                    let ci = s
                        .topology
                        .imp_clusters
                        .iter()
                        .position(|c| &c.name == cluster)
                        .unwrap_or(0);
                    format!("topology.imp_clusters[{ci}].axl.username")
                }
                ConfigError::NotEnabled => format!("{at}.enabled"),
                ConfigError::NoPublisher => format!("{at}.imp_clusters"),
                // Reported with scenario paths by the topology rules.
                ConfigError::ClusterSize(_)
                | ConfigError::TooManyImpClusters(_)
                | ConfigError::DuplicatePublisher(_)
                | ConfigError::Meshing { .. } => continue,
                ConfigError::ProxyScheme(_) => at.clone(),
            };
            p.add(
                path,
                err.to_string(),
                Some("the connector refuses to run with this configuration".into()),
            );
        }
    }
}

fn others(s: &Scenario, p: &mut Problems) {
    let t = &s.topology;
    if !valid_domain(&t.domain) {
        p.add(
            "topology.domain",
            format!("invalid domain `{}`", t.domain),
            Some("a lowercase DNS name such as `example.com`".into()),
        );
    }
    for (field, n) in [
        ("jabber", t.client_farms.jabber),
        ("webex", t.client_farms.webex),
    ] {
        if n == 0 || n > CLIENT_FARMS_MAX {
            p.add(
                format!("topology.client_farms.{field}"),
                format!("{n} client farms is out of range"),
                Some(format!("valid values: 1..={CLIENT_FARMS_MAX}")),
            );
        }
    }
}

fn users(s: &Scenario, p: &mut Problems) {
    let u = &s.users;
    if u.count == 0 || u.count > USERS_MAX {
        p.add(
            "users.count",
            format!("{} users is out of range", u.count),
            Some(format!("valid values: 1..={USERS_MAX}")),
        );
    }
    if u.jabber_devices == 0 || u.jabber_devices > JABBER_DEVICES_MAX {
        p.add(
            "users.jabber_devices",
            format!("{} devices per user is out of range", u.jabber_devices),
            Some(format!("valid values: 1..={JABBER_DEVICES_MAX}")),
        );
    }
    if let Some(d) = u.jid.email_domain.as_deref().filter(|d| !valid_domain(d)) {
        p.add(
            "users.jid.email_domain",
            format!("invalid domain `{d}`"),
            Some("a lowercase DNS name such as `corp.example.net`".into()),
        );
    }
}

fn workload(s: &Scenario, i: usize, w: &Workload, p: &mut Problems) {
    let c = match w {
        Workload::Chat(c) => c,
        Workload::Presence(pw) => return presence_workload(s, i, pw, p),
        Workload::GroupChat(g) => return group_chat_workload(s, i, g, p),
    };
    let at = format!("workloads[{i}].chat");
    if let Some(b) = c.body {
        body(&at, b, p);
    }
    if c.rate_per_user.count <= 0.0 {
        p.add(
            format!("{at}.rate_per_user"),
            "the rate must be more than 0",
            None,
        );
    }
    let m = &c.mix;
    let total: u32 = [m.text, m.edit, m.delete, m.file, m.typing, m.read]
        .iter()
        .map(|x| x.0)
        .sum();
    if total != Pct::ALL.0 {
        p.add(
            format!("{at}.mix"),
            format!("the mix adds up to {}, not 100%", Pct(total)),
            Some("shares of text, edit, delete, file, typing and read must total 100%".into()),
        );
    }
    // Edits, deletes, files, typing and read markers are Webex App actions here (Jabber's
    // would not cross the bridge: spec 39-43): a mix with them must send from Webex.
    for (name, share) in [
        ("edit", m.edit),
        ("delete", m.delete),
        ("file", m.file),
        ("typing", m.typing),
        ("read", m.read),
    ] {
        if share != Pct::NONE && c.from != ClientSel::Webex {
            p.add(
                format!("{at}.mix.{name}"),
                format!("`{name}` is a Webex App action; this workload may send from Jabber"),
                Some("set `from: webex` on this workload, or move the share to `text`".into()),
            );
        }
    }
    if c.from == ClientSel::Webex && s.users.webex == Pct::NONE {
        p.add(
            format!("{at}.from"),
            "the workload sends from Webex but no user uses the Webex App",
            Some("set `users.webex` above 0%".into()),
        );
    }
    window(s, &at, c.start, c.stop, p);
    if c.contacts_per_user == 0 {
        p.add(
            format!("{at}.contacts_per_user"),
            "must be at least 1",
            None,
        );
    }
}

fn presence_workload(s: &Scenario, i: usize, w: &PresenceWorkload, p: &mut Problems) {
    let at = format!("workloads[{i}].presence");
    let earlier = s.workloads[..i]
        .iter()
        .any(|w| matches!(w, Workload::Presence(_)));
    if earlier {
        p.add(
            at.clone(),
            "only one presence workload per scenario",
            Some("merge them into one".into()),
        );
    }
    if w.rate_per_device.count <= 0.0 {
        p.add(
            format!("{at}.rate_per_device"),
            "the rate must be more than 0",
            None,
        );
    }
    window(s, &at, w.start, w.stop, p);
}

/// Members of a group chat room or space: 3 at least (two would be a 1:1 chat), and a
/// handful more than a simulated population needs, bounded so invitations stay cheap.
pub const ROOM_SIZE_MAX: u32 = 50;

/// A `group_chat` workload: a rate, a room size of 3..=50, a window, and Jabber users to
/// create the rooms (spec 42).
fn group_chat_workload(s: &Scenario, i: usize, w: &GroupChatWorkload, p: &mut Problems) {
    let at = format!("workloads[{i}].group_chat");
    if w.rate_per_user.count <= 0.0 {
        p.add(
            format!("{at}.rate_per_user"),
            "the rate must be more than 0",
            None,
        );
    }
    if !(3..=ROOM_SIZE_MAX).contains(&w.room_size) {
        p.add(
            format!("{at}.room_size"),
            format!("{} members is out of range", w.room_size),
            Some(format!(
                "valid values: 3..={ROOM_SIZE_MAX} (two members are a 1:1 chat)"
            )),
        );
    }
    if s.users.jabber == Pct::NONE {
        p.add(
            at.clone(),
            "group chat rooms are created by Jabber users but no user uses Jabber",
            Some("set `users.jabber` above 0%".into()),
        );
    }
    window(s, &at, w.start, w.stop, p);
}

/// The kinds a fault entry may have; the first group runs today.
const FAULT_KINDS_SUPPORTED: [&str; 20] = [
    "reactivate",
    "prg_high_availability",
    "imp_failover",
    "imp_fallback",
    "cloud_outage",
    "kms_outage",
    "http_errors",
    "connector_disable",
    "connector_enable",
    "connector_restart",
    "maintenance_mode",
    "expressway_maintenance",
    "axl_stop",
    "crash",
    "bounce",
    "partition",
    "partition_oneway",
    "hold",
    "link_latency",
    "packet_loss",
];

fn fault(s: &Scenario, i: usize, f: &Fault, hosts: &[String], p: &mut Problems) {
    let at = format!("faults[{i}]");
    let kinds = fault_kinds(f);
    match kinds.as_slice() {
        [] => p.add(
            at.clone(),
            "a fault needs a kind",
            Some(format!("one of: {}", all_fault_kinds().join(", "))),
        ),
        [_] => {}
        many => p.add(
            at.clone(),
            format!(
                "a fault has exactly one kind, this one has {}: {}",
                many.len(),
                many.join(", ")
            ),
            Some("split it into one entry per kind".into()),
        ),
    }
    if f.at > s.duration {
        p.add(
            format!("{at}.at"),
            format!(
                "fault at {} is after the end of the scenario ({})",
                f.at, s.duration
            ),
            None,
        );
    }
    if f.for_.is_some_and(|d| d.ms() == 0) {
        p.add(format!("{at}.for"), "`for` must be more than 0", None);
    }
    ends_in_time(s, &at, f, p);
    for kind in &kinds {
        if !FAULT_KINDS_SUPPORTED.contains(kind) {
            p.unsupported(format!("{at}.{kind}"), &format!("the `{kind}` fault"));
        }
    }
    prg_fault(s, &at, f, p);
    if f.bounce.is_some() && f.for_.is_some() {
        p.add(
            format!("{at}.for"),
            "`bounce` restarts at once and takes no `for`",
            Some("use `crash` with `for` to keep a host down for a while".into()),
        );
    }
    if let Some(l) = &f.link_latency
        && l.latency.ms() % s.tick.ms().max(1) != 0
    {
        p.add(
            format!("{at}.link_latency.latency"),
            format!(
                "latency {} is not a multiple of the tick ({})",
                l.latency, s.tick
            ),
            Some("network delivery is quantised to the tick".into()),
        );
    }
    unknown_hosts(&at, f, hosts, p);
}

/// Two clusters whose host names collide (`x` twice, or `x` and `exp-x`) would register one
/// host twice in the simulator.
fn duplicate_hosts(s: &Scenario, hosts: &[String], p: &mut Problems) {
    let mut seen = BTreeSet::new();
    let twice: BTreeSet<&String> = hosts.iter().filter(|h| !seen.insert(*h)).collect();
    let clusters = s
        .topology
        .expressway_clusters
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let host = topology::exp_host(&c.name, 1);
            (format!("topology.expressway_clusters[{i}].name"), host)
        });
    let mut reported = BTreeSet::new();
    // IM&P clusters defined twice are reported by `imp_clusters`; the rest here, once each,
    // at the later cluster.
    for (at, host) in clusters.rev() {
        if twice.contains(&host) && reported.insert(host.clone()) {
            p.add(
                at,
                format!("host `{host}` would exist twice: two clusters give the same host names"),
                Some(
                    "give each cluster a different name (`x` and `exp-x` name the same hosts)"
                        .into(),
                ),
            );
        }
    }
}

/// A body size from 1 byte to the most that crosses in every direction with its characters.
fn body(at: &str, b: crate::scenario::BodySpec, p: &mut Problems) {
    let (min, max) = b.size.bounds();
    let limit = crate::plan::workload::body_bytes_max(b.chars);
    if min == 0 || min > max || max > limit {
        p.add(
            format!("{at}.body.size"),
            format!("a body of {min} to {max} bytes is out of range for these characters"),
            Some(format!(
                "valid sizes: 1..={limit} bytes for `chars: {:?}` (the most that crosses both ways: the cloud's limit on encrypted text, IM&P's on a stanza with every character escaped)",
                b.chars
            ).to_lowercase()),
        );
    }
}

/// Two `chat` workloads for the same senders would overwrite one another's plan: refused.
fn chat_senders(s: &Scenario, p: &mut Problems) {
    let mut earlier: Vec<(usize, ClientSel)> = Vec::new();
    for (i, w) in s.workloads.iter().enumerate() {
        let Workload::Chat(c) = w else { continue };
        let overlap = earlier
            .iter()
            .find(|(_, f)| *f == c.from || *f == ClientSel::Any || c.from == ClientSel::Any);
        if let Some((j, _)) = overlap {
            p.add(
                format!("workloads[{i}]"),
                format!("this `chat` workload has the same senders as workloads[{j}]: one plan per sender, so one would replace the other"),
                Some("merge them into one `chat` workload, or split the senders with `from: jabber` and `from: webex`".into()),
            );
        }
        earlier.push((i, c.from));
    }
}

/// A fault that starts in time must also end by `duration`: its end is an action of the
/// timeline, and quiescence is only judged once the timeline has run out.
fn ends_in_time(s: &Scenario, at: &str, f: &Fault, p: &mut Problems) {
    if let Some(d) = f.for_
        && f.at <= s.duration
        && f.at.ms().saturating_add(d.ms()) > s.duration.ms()
    {
        p.add(
            format!("{at}.for"),
            format!(
                "the fault at {} for {d} ends after the end of the scenario ({}): the run would wait for it to end and then judge nothing",
                f.at, s.duration
            ),
            Some("end faults by `duration`: shorten `for` or lengthen `duration`".into()),
        );
    }
}

/// Every host a fault names must exist.
fn unknown_hosts(at: &str, f: &Fault, hosts: &[String], p: &mut Problems) {
    for (path, names) in fault_hosts(f) {
        for (j, h) in names.iter().enumerate() {
            if hosts.contains(h) {
                continue;
            }
            let index = if names.len() > 1 {
                format!("[{j}]")
            } else {
                String::new()
            };
            p.add(
                format!("{at}.{path}{index}"),
                format!("no host is named `{h}`"),
                Some(one_of(h, hosts)),
            );
        }
    }
}

/// PRG faults (spec 65) name an IM&P node that has a PRG peer; `for` on a manual failover
/// means a fallback at its end.
fn prg_fault(s: &Scenario, at: &str, f: &Fault, p: &mut Problems) {
    let named = [
        (
            "imp_failover.node",
            f.imp_failover.as_ref().map(|x| &x.node),
        ),
        (
            "imp_fallback.node",
            f.imp_fallback.as_ref().map(|x| &x.node),
        ),
    ];
    for (path, node) in named {
        let Some(node) = node else { continue };
        let paired = s.topology.imp_clusters.iter().any(|c| {
            let cfg = crate::plan::imp::node_config(c);
            cfg.cluster.contains(node) && cfg.peer_of(node).is_some()
        });
        if !paired {
            p.add(
                format!("{at}.{path}"),
                format!("`{node}` is not an IM&P node with a PRG peer"),
                Some("PRGs pair nodes 1+2, 3+4 and 5+6 of a cluster (spec 65)".into()),
            );
        }
    }
    if f.reactivate.is_some() && f.for_.is_some() {
        p.add(
            format!("{at}.for"),
            "`reactivate` is instantaneous and takes no `for`",
            None,
        );
    }
    if f.imp_fallback.is_some() && f.for_.is_some() {
        p.add(
            format!("{at}.for"),
            "`imp_fallback` is instantaneous and takes no `for`",
            None,
        );
    }
    if let Some(ha) = &f.prg_high_availability {
        prg_high_availability(s, at, f, ha, p);
    }
}

/// `prg_high_availability` (spec 61) names an IM&P cluster with a PRG (2 or more nodes) and is
/// a one-shot change: changing it back is another entry.
fn prg_high_availability(
    s: &Scenario,
    at: &str,
    f: &Fault,
    ha: &PrgHighAvailability,
    p: &mut Problems,
) {
    let names: Vec<String> = s
        .topology
        .imp_clusters
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let path = format!("{at}.prg_high_availability.cluster");
    // `a` and `imp-a` name the same cluster, as in host names.
    let same =
        |c: &&ImpCluster| topology::imp_host(&c.name, 1) == topology::imp_host(&ha.cluster, 1);
    match s.topology.imp_clusters.iter().find(same) {
        None => p.add(
            path,
            format!("no IM&P cluster is named `{}`", ha.cluster),
            Some(one_of(&ha.cluster, &names)),
        ),
        Some(c) if c.nodes < 2 => p.add(
            path,
            format!(
                "IM&P cluster `{}` has {} node and so no PRG whose high availability could change",
                c.name, c.nodes
            ),
            Some("PRGs pair nodes 1+2, 3+4 and 5+6 of a cluster (spec 65)".into()),
        ),
        Some(_) => {}
    }
    if f.for_.is_some() {
        p.add(
            format!("{at}.for"),
            "`prg_high_availability` is a one-shot change and takes no `for`",
            Some("add another entry at a later time to change it back".into()),
        );
    }
}

/// The kinds set on a fault entry, by field name.
pub fn fault_kinds(f: &Fault) -> Vec<&'static str> {
    let flags = [
        ("crash", f.crash.is_some()),
        ("bounce", f.bounce.is_some()),
        ("partition", f.partition.is_some()),
        ("partition_oneway", f.partition_oneway.is_some()),
        ("hold", f.hold.is_some()),
        ("link_latency", f.link_latency.is_some()),
        ("packet_loss", f.packet_loss.is_some()),
        ("imp_failover", f.imp_failover.is_some()),
        ("imp_fallback", f.imp_fallback.is_some()),
        ("axl_stop", f.axl_stop.is_some()),
        ("cloud_outage", f.cloud_outage.is_some()),
        ("kms_outage", f.kms_outage.is_some()),
        ("http_errors", f.http_errors.is_some()),
        ("connector_disable", f.connector_disable.is_some()),
        ("connector_enable", f.connector_enable.is_some()),
        ("connector_restart", f.connector_restart.is_some()),
        ("maintenance_mode", f.maintenance_mode.is_some()),
        ("expressway_maintenance", f.expressway_maintenance.is_some()),
        ("reactivate", f.reactivate.is_some()),
        ("prg_high_availability", f.prg_high_availability.is_some()),
    ];
    flags
        .iter()
        .filter(|(_, on)| *on)
        .map(|(k, _)| *k)
        .collect()
}

fn all_fault_kinds() -> Vec<&'static str> {
    let every = Fault {
        crash: Some(Hosts(vec![])),
        bounce: Some(Hosts(vec![])),
        partition: Some(Between {
            a: Hosts(vec![]),
            b: Hosts(vec![]),
        }),
        partition_oneway: Some(OneWay {
            from: Hosts(vec![]),
            to: Hosts(vec![]),
        }),
        hold: Some(Between {
            a: Hosts(vec![]),
            b: Hosts(vec![]),
        }),
        link_latency: Some(LinkLatency {
            a: Hosts(vec![]),
            b: Hosts(vec![]),
            latency: Default::default(),
        }),
        packet_loss: Some(PacketLoss {
            a: Hosts(vec![]),
            b: Hosts(vec![]),
            rate: Pct::NONE,
        }),
        imp_failover: Some(ImpFailover {
            node: String::new(),
            mode: FailoverMode::Manual,
        }),
        imp_fallback: Some(NodeRef {
            node: String::new(),
        }),
        axl_stop: Some(NodeRef {
            node: String::new(),
        }),
        cloud_outage: Some(Outage {}),
        kms_outage: Some(Outage {}),
        http_errors: Some(HttpErrors {
            rate: Pct::NONE,
            status: 503,
        }),
        connector_disable: Some(NodeRef {
            node: String::new(),
        }),
        connector_enable: Some(NodeRef {
            node: String::new(),
        }),
        connector_restart: Some(NodeRef {
            node: String::new(),
        }),
        maintenance_mode: Some(NodeRef {
            node: String::new(),
        }),
        expressway_maintenance: Some(NodeRef {
            node: String::new(),
        }),
        reactivate: Some(Reactivate {}),
        prg_high_availability: Some(PrgHighAvailability {
            cluster: String::new(),
            enabled: true,
        }),
        ..Fault::default()
    };
    fault_kinds(&every)
}

/// Host names a fault refers to, with the field path (relative to the fault) of each group.
pub fn fault_hosts(f: &Fault) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut add = |path: &str, h: &Hosts| out.push((path.to_string(), h.0.clone()));
    if let Some(h) = &f.crash {
        add("crash", h);
    }
    if let Some(h) = &f.bounce {
        add("bounce", h);
    }
    for (name, b) in [("partition", &f.partition), ("hold", &f.hold)] {
        if let Some(b) = b {
            add(&format!("{name}.a"), &b.a);
            add(&format!("{name}.b"), &b.b);
        }
    }
    if let Some(o) = &f.partition_oneway {
        add("partition_oneway.from", &o.from);
        add("partition_oneway.to", &o.to);
    }
    if let Some(l) = &f.link_latency {
        add("link_latency.a", &l.a);
        add("link_latency.b", &l.b);
    }
    if let Some(l) = &f.packet_loss {
        add("packet_loss.a", &l.a);
        add("packet_loss.b", &l.b);
    }
    for (name, n) in [
        ("imp_fallback", &f.imp_fallback),
        ("axl_stop", &f.axl_stop),
        ("connector_disable", &f.connector_disable),
        ("connector_enable", &f.connector_enable),
        ("connector_restart", &f.connector_restart),
        ("maintenance_mode", &f.maintenance_mode),
        ("expressway_maintenance", &f.expressway_maintenance),
    ] {
        if let Some(n) = n {
            add(&format!("{name}.node"), &Hosts(vec![n.node.clone()]));
        }
    }
    if let Some(fo) = &f.imp_failover {
        add("imp_failover.node", &Hosts(vec![fo.node.clone()]));
    }
    out
}

/// The checks a scenario may list and the rules of each: the checks stage's registry
/// (`checks::Registry`), passed in so that the plan names no later stage.
pub trait Catalog {
    /// Every check name, in registry order.
    fn names(&self) -> Vec<&'static str>;
    /// The problems of check `spec` (a known name) at `at` (`checks[i]`) in `s`.
    fn problems(&self, s: &Scenario, at: &str, spec: &CheckSpec) -> Vec<Problem>;
    /// Whether check `name` may be listed more than once (each with its own parameters).
    fn repeatable(&self, _name: &str) -> bool {
        false
    }
}

/// `what` is not run by this build.
pub fn unsupported(path: &str, what: &str) -> Problem {
    Problem {
        path: path.to_string(),
        message: format!("{what} is not yet supported by this hmsim build"),
        help: Some("remove it, or see README.md for what runs today".into()),
    }
}

fn checks(s: &Scenario, catalog: &dyn Catalog, p: &mut Problems) {
    let names = catalog.names();
    let mut seen = BTreeSet::new();
    for (i, c) in s.checks.iter().enumerate() {
        let at = format!("checks[{i}]");
        if !names.contains(&c.name.as_str()) {
            // Worded as serde words an unknown variant, with "did you mean".
            let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            let raw = format!(
                "unknown variant `{}`, expected one of {}",
                c.name,
                list.join(", ")
            );
            let (message, help) = crate::scenario::explain_serde_message(&raw);
            p.add(at, message, help);
            continue;
        }
        if !seen.insert(c.name.as_str()) && !catalog.repeatable(&c.name) {
            p.add(
                at.clone(),
                format!("check `{}` is listed twice", c.name),
                None,
            );
        }
        p.0.extend(catalog.problems(s, &at, c));
    }
}

fn one_of(bad: &str, valid: &[String]) -> String {
    let list = valid
        .iter()
        .map(|v| format!("`{v}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match crate::scenario::did_you_mean(bad, valid) {
        Some(s) => format!("did you mean `{s}`? valid values: {list}"),
        None => format!("valid values: {list}"),
    }
}

fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn valid_domain(s: &str) -> bool {
    s.contains('.') && s.split('.').all(valid_label)
}

#[cfg(test)]
mod tests {
    //! The `prg_high_availability` fault (spec 61): accepted on a cluster with a PRG, refused
    //! with the field path otherwise.
    use super::*;

    /// A scenario with IM&P cluster `a` of `nodes` nodes and one fault entry.
    fn with_fault(nodes: u32, fault: &str) -> Result<Scenario, String> {
        let yaml = format!(
            "name: t\nseed: 1\nduration: 10m\ntopology:\n  imp_clusters: [{{ name: a, nodes: {nodes} }}]\nusers: {{ count: 2 }}\nfaults:\n  - {fault}\n"
        );
        crate::parse("t.yaml", &yaml).map_err(|e| e.to_string())
    }

    /// `keepalive`: ping every 30 s unless set; whitespace parses; an interval out of range is
    /// refused at its path; an unknown kind lists the valid ones.
    #[test]
    fn keepalive_setting_defaults_parses_and_is_bounded() {
        let base = "name: t\nseed: 1\nduration: 10m\ntopology:\n  imp_clusters: [{ name: a }]\nusers: { count: 2 }\n";
        let s = crate::parse("t.yaml", base).expect("valid");
        assert_eq!(s.keepalive.kind, KeepaliveKind::Ping);
        assert_eq!(s.keepalive.interval, Dur::from_secs(30));
        let s = crate::parse(
            "t.yaml",
            &format!("{base}keepalive: {{ kind: whitespace, interval: 60s }}\n"),
        )
        .expect("valid");
        assert_eq!(s.keepalive.kind, KeepaliveKind::Whitespace);
        assert_eq!(s.keepalive.interval, Dur::from_secs(60));
        let err = crate::parse("t.yaml", &format!("{base}keepalive: {{ interval: 2s }}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("keepalive.interval") && err.contains("out of range"),
            "{err}"
        );
        let err = crate::parse("t.yaml", &format!("{base}keepalive: {{ kind: tcp }}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("whitespace"), "{err}");
    }

    /// A scenario with IM&P cluster `a` (`imp` fields) served by Expressway cluster `a`
    /// (`exp` fields).
    fn served(imp: &str, exp: &str) -> Result<Scenario, String> {
        let yaml = format!(
            "name: t\nseed: 1\nduration: 10m\ntopology:\n  imp_clusters: [{{ name: a{imp} }}]\n  expressway_clusters: [{{ name: a, imp_clusters: [a]{exp} }}]\nusers: {{ count: 2, hybrid_message: 100% }}\n"
        );
        crate::parse("t.yaml", &yaml).map_err(|e| e.to_string())
    }

    /// Spec 20: MDM must be on for every IM&P cluster a connector serves (explore seed 41:
    /// `mdm: false` was accepted, and then no carbon of a Jabber message reached Webex).
    #[test]
    fn mdm_off_on_a_cluster_a_connector_serves_is_refused_at_its_path() {
        let err = served(", mdm: false", ", size: large").unwrap_err();
        assert!(
            err.contains("error at `topology.imp_clusters[0].mdm`")
                && err.contains("requires Multiple Device Messaging enabled (spec 20)")
                && err.contains("set `mdm: true`"),
            "{err}"
        );
        served(", mdm: true", ", size: large").expect("MDM on");
        // Without a connector MDM is the IM&P administrator's choice.
        let yaml = "name: t\nseed: 1\nduration: 10m\ntopology:\n  imp_clusters: [{ name: a, mdm: false }]\nusers: { count: 2 }\n";
        crate::parse("t.yaml", yaml).expect("no connector");
    }

    /// Spec 6: Control Hub refuses a coresidency it has no capacity for (explore: a `small`
    /// Expressway with `coresident: [calendar]` passed `hmsim check`, then never registered).
    #[test]
    fn an_undocumented_coresidency_shape_is_refused_at_its_path() {
        let err = served("", ", size: small, nodes: 1, coresident: [calendar]").unwrap_err();
        assert!(
            err.contains("error at `topology.expressway_clusters[0].coresident`")
                && err.contains(
                    "no capacity for a small Expressway cluster of 1 node(s) with [calendar]"
                )
                && err.contains("`coresident: [calendar]` on `size: medium`"),
            "{err}"
        );
        let err = served("", ", size: large, nodes: 3, coresident: [calendar, call]").unwrap_err();
        assert!(err.contains("coresident"), "{err}");
        for ok in [
            ", size: medium, nodes: 1, coresident: [calendar]",
            ", size: small, nodes: 2, coresident: [calendar, call]",
            ", size: large, nodes: 6, coresident: []",
        ] {
            served("", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn prg_high_availability_on_a_prg_cluster_is_valid() {
        let s = with_fault(
            2,
            "{ at: 5m, prg_high_availability: { cluster: a, enabled: true } }",
        )
        .expect("valid");
        let ha = s.faults[0].prg_high_availability.as_ref().expect("parsed");
        assert_eq!((ha.cluster.as_str(), ha.enabled), ("a", true));
        assert_eq!(fault_kinds(&s.faults[0]), vec!["prg_high_availability"]);
        assert!(all_fault_kinds().contains(&"prg_high_availability"));
        // `imp-a` names cluster `a`, as in host names.
        with_fault(
            2,
            "{ at: 5m, prg_high_availability: { cluster: imp-a, enabled: false } }",
        )
        .expect("`imp-a` is cluster `a`");
    }

    #[test]
    fn prg_high_availability_names_the_path_of_what_is_wrong() {
        let cases = [
            (
                2,
                "{ at: 5m, prg_high_availability: { cluster: b, enabled: true } }",
                "error at `faults[0].prg_high_availability.cluster`: no IM&P cluster is named `b`",
            ),
            (
                1,
                "{ at: 5m, prg_high_availability: { cluster: a, enabled: true } }",
                "error at `faults[0].prg_high_availability.cluster`: IM&P cluster `a` has 1 node",
            ),
            (
                2,
                "{ at: 5m, for: 1m, prg_high_availability: { cluster: a, enabled: true } }",
                "error at `faults[0].for`: `prg_high_availability` is a one-shot change",
            ),
            (
                2,
                "{ at: 5m, prg_high_availability: { cluster: a, enabled: yes } }",
                "faults[0].prg_high_availability.enabled",
            ),
            (
                2,
                "{ at: 5m, prg_high_availability: { cluster: a, enable: true } }",
                "unknown field `enable`",
            ),
            (
                2,
                "{ at: 5m, reactivate: {}, prg_high_availability: { cluster: a, enabled: true } }",
                "a fault has exactly one kind, this one has 2: reactivate, prg_high_availability",
            ),
        ];
        for (nodes, fault, want) in cases {
            let err = with_fault(nodes, fault).expect_err(fault);
            assert!(err.contains(want), "{fault}: want {want:?} in:\n{err}");
        }
    }
}
