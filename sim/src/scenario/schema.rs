//! Scenario schema v1: the YAML shape scenarios are written in (`scenarios/README.md`).
//!
//! A scenario is **topology + users + workloads + faults + checks**. Every struct denies unknown
//! fields so a typo is an error that lists the valid keys, never a silently ignored setting.
//! Defaults live here, in code, so scenario files stay short (FoundationDB style).
//! The whole shape is declared even where no code executes it yet; [`super::validate`] rejects
//! such parts with "not yet supported" instead of ignoring them.

use super::units::{Dur, Pct, Rate};
use serde::{Deserialize, Serialize};

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short identifier, used in output paths: lowercase letters, digits and `-`.
    pub name: String,
    /// What the scenario demonstrates, one paragraph.
    #[serde(default)]
    pub description: Option<String>,
    /// The seed that drives every random choice (overridable with `--seed`).
    pub seed: u64,
    /// Simulated time during which workloads run and faults fire.
    pub duration: Dur,
    /// Simulation step. Network delivery is quantised to it; coarser ticks run faster.
    #[serde(default = "default_tick")]
    pub tick: Dur,
    /// Grace period after `duration` for in-flight work to settle before liveness is judged.
    #[serde(default = "default_drain")]
    pub drain: Dur,
    /// Machines and their configuration.
    pub topology: Topology,
    /// The user population.
    pub users: Users,
    /// Traffic generators.
    #[serde(default)]
    pub workloads: Vec<Workload>,
    /// The fault timeline.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// The oracle: properties the run must satisfy.
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
    /// How Jabber devices and IM&P nodes keep c2s streams alive.
    #[serde(default)]
    pub keepalive: Keepalive,
}

/// The keepalive of c2s streams. The Cisco guides do not say what Jabber sends; the default
/// is an XEP-0199 ping every 30 s from each device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Keepalive {
    /// `ping`: an XEP-0199 ping IQ from each device every interval, answered by the node.
    /// `whitespace`: RFC 6120 section 4.6.1 whitespace keepalives sent both ways (XEP-0304),
    /// with a ping only to probe a stream the node has been silent on for two intervals.
    #[serde(default)]
    pub kind: KeepaliveKind,
    /// How often, 5s to 10m. A dead stream is noticed after three silent intervals.
    #[serde(default = "default_keepalive_interval")]
    pub interval: Dur,
}

impl Default for Keepalive {
    fn default() -> Self {
        Self {
            kind: KeepaliveKind::Ping,
            interval: default_keepalive_interval(),
        }
    }
}

fn default_keepalive_interval() -> Dur {
    Dur::from_secs(30)
}

/// What a keepalive is on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeepaliveKind {
    /// An XEP-0199 ping IQ and its answer.
    #[default]
    Ping,
    /// A space between stanzas (RFC 6120 section 4.6.1).
    Whitespace,
}

fn default_tick() -> Dur {
    Dur::from_ms(10)
}
fn default_drain() -> Dur {
    Dur::from_secs(60)
}

/// Everything that runs: IM&P clusters, Expressway clusters, KMS, client farms.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// The organization's domain: user JIDs and emails live under it.
    #[serde(default = "default_domain")]
    pub domain: String,
    /// On-premises IM and Presence clusters.
    pub imp_clusters: Vec<ImpCluster>,
    /// Expressway-C clusters running the message connector.
    #[serde(default)]
    pub expressway_clusters: Vec<ExpresswayCluster>,
    /// Where space keys live: the cloud KMS or an on-premises Hybrid Data Security KMS.
    #[serde(default)]
    pub kms: KmsKind,
    /// How many client-farm hosts run the simulated clients (users are spread over them).
    #[serde(default)]
    pub client_farms: ClientFarms,
}

fn default_domain() -> String {
    "example.com".into()
}

/// One IM&P cluster: a publisher (node 1) and subscriber nodes, paired into PRGs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImpCluster {
    /// Cluster name; hosts are `imp-<name>-<n>` style names built from it (see `hosts`).
    pub name: String,
    /// Nodes including the publisher, 1 to 6 (spec 5).
    #[serde(default = "one")]
    pub nodes: u32,
    /// Software version such as `14.0` or `12.0`; behaviour differs below 12.5 (spec 46).
    #[serde(default = "default_version")]
    pub version: String,
    /// Presence Redundancy Group settings, applied to each pair of nodes (1+2, 3+4, 5+6).
    #[serde(default)]
    pub prg: Prg,
    /// Offline storage ("Suppress offline instant messaging" cleared), spec 46-48.
    #[serde(default = "yes")]
    pub offline_storage: bool,
    /// Multiple Device Messaging (carbons), on by default (spec 20).
    #[serde(default = "yes")]
    pub mdm: bool,
    /// The AXL application user the connector is configured with.
    #[serde(default)]
    pub axl: Axl,
    /// Limits on connector sessions per node (spec 10).
    #[serde(default)]
    pub sessions: SessionLimits,
    /// The OVA (VM size) of every node: its user capacity, which fixes the node's JSM session
    /// limit at 1.5 × that (spec 10). Default 15k.
    #[serde(default)]
    pub ova: Ova,
}

/// An IM&P node's OVA by its user capacity: the documented sizes `5k`, `15k` and `25k`
/// (spec 10), or a plain user count for a lab-sized node that lets a small scenario reach
/// the JSM session limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ova {
    /// Users the OVA is sized for.
    pub users: u32,
}

impl Default for Ova {
    /// 15k: the mid-size OVA, the one spec 10's example names (15K → 22.5K sessions).
    fn default() -> Self {
        Self { users: 15_000 }
    }
}

impl Ova {
    /// JSM sessions per OVA user, in tenths: IM&P holds about 1.5 × its OVA's user capacity
    /// in JSM sessions (spec 10: 5K → 7.5K, 15K → 22.5K, 25K → 37.5K).
    pub const JSM_SESSIONS_PER_USER_TENTHS: u64 = 15;

    /// The node's JSM session limit.
    pub fn jsm_sessions_max(self) -> u64 {
        u64::from(self.users) * Self::JSM_SESSIONS_PER_USER_TENTHS / 10
    }
}

impl<'de> Deserialize<'de> for Ova {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, Visitor};
        struct V;
        impl Visitor<'_> for V {
            type Value = Ova;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "an IM&P OVA size: 5k, 15k, 25k, or a user count")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ova, E> {
                let users = match v.trim().to_ascii_lowercase().as_str() {
                    "5k" => 5_000,
                    "15k" => 15_000,
                    "25k" => 25_000,
                    _ => {
                        return Err(E::custom(format!(
                            "unknown OVA `{v}`: the sizes are 5k, 15k and 25k (or a user count)"
                        )));
                    }
                };
                Ok(Ova { users })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ova, E> {
                match u32::try_from(v) {
                    Ok(users) if (1..=25_000).contains(&users) => Ok(Ova { users }),
                    _ => Err(E::custom(format!(
                        "an OVA of {v} users: between 1 and 25000 (the largest OVA is 25k)"
                    ))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ova, E> {
                self.visit_u64(u64::try_from(v).unwrap_or(0))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Ova {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.users {
            5_000 => s.serialize_str("5k"),
            15_000 => s.serialize_str("15k"),
            25_000 => s.serialize_str("25k"),
            n => s.serialize_u32(n),
        }
    }
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn default_version() -> String {
    "14.0".into()
}

/// Presence Redundancy Group settings (spec 61-65).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Prg {
    /// High availability: automatic failover when a node fails.
    #[serde(default = "yes")]
    pub high_availability: bool,
    /// Automatic fallback 30 minutes after the primary is healthy (default off, spec 65).
    #[serde(default)]
    pub automatic_fallback: bool,
    /// Heartbeat timeout before a peer is declared failed (spec 65: 60 s).
    #[serde(default = "default_heartbeat_timeout")]
    pub heartbeat_timeout: Dur,
    /// How users are spread over the pair.
    #[serde(default)]
    pub assignment: PrgAssignment,
    /// The window in which Jabber clients log in again after a failover or fallback (the
    /// Server Recovery Manager's client re-login limits, spec 65: 120-537 s).
    #[serde(default)]
    pub client_relogin: ClientRelogin,
}

impl Default for Prg {
    fn default() -> Self {
        Self {
            high_availability: true,
            automatic_fallback: false,
            heartbeat_timeout: default_heartbeat_timeout(),
            assignment: PrgAssignment::Balanced,
            client_relogin: ClientRelogin::default(),
        }
    }
}

/// IM&P's client re-login limits (spec 65): a client that lost its node to a failover (or
/// got it back at a fallback) logs in again after a delay drawn between them. With Multiple
/// Device Messaging on, failover times roughly double (spec 65): the upper limit is doubled.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRelogin {
    /// The shortest delay (spec 65: 120 s).
    #[serde(default = "default_relogin_lower")]
    pub lower: Dur,
    /// The longest delay without MDM (spec 65: 537 s).
    #[serde(default = "default_relogin_upper")]
    pub upper: Dur,
}

impl Default for ClientRelogin {
    fn default() -> Self {
        Self {
            lower: default_relogin_lower(),
            upper: default_relogin_upper(),
        }
    }
}

fn default_relogin_lower() -> Dur {
    Dur::from_secs(120)
}
fn default_relogin_upper() -> Dur {
    Dur::from_secs(537)
}

fn default_heartbeat_timeout() -> Dur {
    Dur::from_secs(60)
}

/// PRG user assignment mode (spec 65).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrgAssignment {
    /// Users split evenly over both nodes.
    #[default]
    Balanced,
    /// All users on the first node of the pair.
    ActiveStandby,
    /// No automatic assignment.
    None,
}

/// The AXL account given to the connector (spec 16-17).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Axl {
    /// Application user name.
    #[serde(default = "default_axl_user")]
    pub username: String,
    /// Its password (a secret: it must never appear in logs or traces).
    #[serde(default = "default_axl_password")]
    pub password: String,
    /// Whether the account holds "Standard AXL API Access".
    #[serde(default = "yes")]
    pub axl_role: bool,
}

impl Default for Axl {
    fn default() -> Self {
        Self {
            username: default_axl_user(),
            password: default_axl_password(),
            axl_role: true,
        }
    }
}

fn default_axl_user() -> String {
    "hmsim-axl".into()
}
fn default_axl_password() -> String {
    "axl-Secret-0".into()
}

/// Connector session limits on an IM&P node.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionLimits {
    /// Most connector sessions a node holds, a cap on top of its JSM session limit (which
    /// comes from `ova`, spec 10); default: only that limit.
    #[serde(default)]
    pub max: Option<u32>,
    /// Session creations a node accepts per unit of time before `resource-constraint`.
    #[serde(default)]
    pub create_rate: Option<Rate>,
}

/// An Expressway-C cluster running the message connector.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpresswayCluster {
    /// Cluster name; hosts are `exp-<name>-<n>`.
    pub name: String,
    /// VM size, which fixes user capacity (spec 2).
    pub size: ExpresswaySize,
    /// Nodes including the primary, 1 to 6 (spec 1).
    #[serde(default = "one")]
    pub nodes: u32,
    /// The IM&P clusters it serves (at most 5, none served by another cluster: spec 19).
    pub imp_clusters: Vec<String>,
    /// Other hybrid connectors on the same nodes, which reduce capacity (spec 6).
    #[serde(default)]
    pub coresident: Vec<Coresident>,
    /// Mobile and Remote Access on the same nodes (spec 7).
    #[serde(default)]
    pub mra: bool,
    /// The primary's hostname as registered (must be lowercase, spec 11).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Whether the registration uses the Control Hub token (spec 12).
    #[serde(default = "yes")]
    pub registration_token: bool,
    /// The Expressway's own `lowercase-hostname` check (spec 11): `enforce`, or `skip` for an
    /// Expressway whose local check is bypassed, to show that Control Hub refuses the
    /// hostname too.
    #[serde(default)]
    pub hostname_check: HostnameCheck,
    /// Certificate validation towards IM&P (spec 16, 18).
    #[serde(default = "yes")]
    pub certificate_validation: bool,
    /// Message connector set Active=Enabled (spec 21).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Session migration tuning (spec 62, see `docs/protocols.md`).
    #[serde(default)]
    pub migration: Migration,
    /// TEST ONLY, a planted defect: the connector drops every n-th Webex → Jabber message
    /// once it has failed a node over (`connector::core::node::PlantedDefect`). It exists so
    /// that a test can show `hmsim explore` finds and shrinks a real-looking bug; no real
    /// scenario sets it, the generator draws it only under `hmsim explore --plant-defect`,
    /// and a run that has it says so on its first line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_only_drop_every_nth_to_jabber_after_failover: Option<u32>,
}

/// Whether the Expressway checks its own hostname before registering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostnameCheck {
    /// The Expressway refuses a hostname with capitals (the real UI does).
    #[default]
    Enforce,
    /// The local check is bypassed: only Control Hub's refusal stops the registration.
    Skip,
}

/// Expressway VM sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpresswaySize {
    /// 5,000 Message users per node.
    Small,
    /// 6,500 Message users per node.
    Medium,
    /// 15,000 Message users per node.
    Large,
}

/// Connectors that may share an Expressway node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Coresident {
    /// Hybrid Calendar.
    Calendar,
    /// Hybrid Call.
    Call,
}

/// How the connector moves sessions after an IM&P node outage (spec 62).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    /// Upper bound of the detection delay, drawn uniformly from the seed.
    #[serde(default = "default_detection_delay_max")]
    pub detection_delay_max: Dur,
    /// Token-bucket rate of session moves.
    #[serde(default = "default_migration_rate")]
    pub rate: Rate,
}

impl Default for Migration {
    fn default() -> Self {
        Self {
            detection_delay_max: default_detection_delay_max(),
            rate: default_migration_rate(),
        }
    }
}

fn default_detection_delay_max() -> Dur {
    Dur::from_secs(15 * 60)
}
fn default_migration_rate() -> Rate {
    Rate {
        count: 5000.0,
        per: std::time::Duration::from_secs(30 * 60),
    }
}

/// KMS placement (spec 58).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KmsKind {
    /// Webex cloud KMS, host `kms`.
    #[default]
    Cloud,
    /// On-premises Hybrid Data Security, host `hds`.
    Hds,
}

/// Client-farm hosts: simulated users are tasks inside a few hosts, never one host each,
/// because turmoil's per-tick cost grows faster than the host count.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFarms {
    /// Hosts `jabber-1..=n`.
    #[serde(default = "one")]
    pub jabber: u32,
    /// Hosts `webex-1..=n`.
    #[serde(default = "one")]
    pub webex: u32,
}

impl Default for ClientFarms {
    fn default() -> Self {
        Self {
            jabber: 1,
            webex: 1,
        }
    }
}

/// The user population. Percentages are of `count` and drawn per user from the seed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    /// Number of users in the organization.
    pub count: u32,
    /// Share enabled for Hybrid Message.
    #[serde(default = "all")]
    pub hybrid_message: Pct,
    /// Share that use Jabber.
    #[serde(default = "all")]
    pub jabber: Pct,
    /// Share that use the Webex App.
    #[serde(default)]
    pub webex: Pct,
    /// Share with hidden Webex status ("Show statuses" off).
    #[serde(default)]
    pub hidden_status: Pct,
    /// Share without a mail ID in IM&P (cannot use the service, spec 24).
    #[serde(default)]
    pub without_email: Pct,
    /// Share of users who also have an account on another IM&P cluster with the same mail
    /// ID (spec 25: Control Hub shows them in Error, "duplicate Mail ID").
    #[serde(default)]
    pub duplicate_mail_id: Pct,
    /// Share of Webex App users who set Do Not Disturb for 24 h at login (spec 52, 54).
    #[serde(default)]
    pub dnd: Pct,
    /// Share of Webex App users out of office (calendar, spec 52, 55).
    #[serde(default)]
    pub out_of_office: Pct,
    /// Devices (Jabber resources) per Jabber user.
    #[serde(default = "one")]
    pub jabber_devices: u32,
    /// How Jabber IDs relate to mail IDs (spec 24: the JID need not be the email).
    #[serde(default, skip_serializing_if = "JidScheme::is_default")]
    pub jid: JidScheme,
}

/// How users' Jabber IDs relate to the mail IDs IM&P holds and Webex knows them by (spec 24:
/// "the Jabber ID does not have to be the email address, even though it looks like one").
/// Every JID is `<userid>@<topology.domain>` (IM&P's "UserID@Default_Domain" address scheme);
/// a share of users get a mail ID that is something else, as when the directory's `mail`
/// field is `first.last@...` while the user id is short. Their Webex email is that mail ID
/// (spec 24: it must be), so the connector has to map between the two both ways.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JidScheme {
    /// Share of users (with a mail ID) whose mail ID is not their JID: another local part,
    /// `first.last<n>`, under `email_domain`.
    #[serde(default)]
    pub differs_from_email: Pct,
    /// The domain of those mail IDs (default: `topology.domain`, so only the local part
    /// differs); another domain makes both parts differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_domain: Option<String>,
}

impl JidScheme {
    /// True for the default (every JID is its mail ID), which scenario files leave out.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn all() -> Pct {
    Pct::ALL
}

/// A traffic generator, written `- chat: { ... }`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// One-to-one chat between users.
    Chat(ChatWorkload),
    /// Jabber devices changing their presence, manual or device (spec 53).
    Presence(PresenceWorkload),
    /// Jabber group chat rooms and Webex group spaces, never bridged (spec 42).
    GroupChat(GroupChatWorkload),
}

/// Group chat (spec 42). At `start`, every Jabber user creates one XEP-0045 room on its IM&P
/// node (a share `persistent` of them made persistent) and invites `room_size - 1` users homed
/// on the same node, drawn from everyone: Jabber users join, Hybrid Message users who are on
/// Webex are silently not added. Every Jabber user then sends groupchat messages to the rooms
/// it is in at `rate_per_user`. Every Webex App user likewise creates one Webex group space of
/// `room_size` members (at least 3) and posts to it at `rate_per_user`; group spaces are never
/// bridged to Jabber. Several `group_chat` workloads make several waves of rooms (for
/// example before and after the connector opens its sessions).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupChatWorkload {
    /// Mean messages per user (over its rooms); inter-arrival times are exponential.
    pub rate_per_user: Rate,
    /// Members per room or space, the creator included (3..=50).
    #[serde(default = "default_room_size")]
    pub room_size: u32,
    /// Share of rooms made persistent (persistent chat).
    #[serde(default)]
    pub persistent: Pct,
    /// When rooms are created (default: once clients are logged in).
    #[serde(default)]
    pub start: Option<Dur>,
    /// When sending stops (default: `duration`).
    #[serde(default)]
    pub stop: Option<Dur>,
}

fn default_room_size() -> u32 {
    4
}

/// Presence changes published by every Jabber device (spec 53-55). Contacts are the users of
/// the chat workloads' contact lists, both ways.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceWorkload {
    /// Mean changes per device; inter-arrival times are exponential, drawn from the seed.
    pub rate_per_device: Rate,
    /// Share of changes that are manual (user-set) rather than device presence.
    #[serde(default = "half")]
    pub manual: Pct,
    /// When changes start (default: once clients are logged in).
    #[serde(default)]
    pub start: Option<Dur>,
    /// When changes stop (default: `duration`).
    #[serde(default)]
    pub stop: Option<Dur>,
}

fn half() -> Pct {
    Pct(Pct::ALL.0 / 2)
}

/// One-to-one chat traffic.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChatWorkload {
    /// Mean actions per user; inter-arrival times are exponential, drawn from the seed.
    pub rate_per_user: Rate,
    /// What each action is.
    #[serde(default)]
    pub mix: ChatMix,
    /// Which clients send.
    #[serde(default)]
    pub from: ClientSel,
    /// Which clients receive (the recipient's class).
    #[serde(default)]
    pub to: ClientSel,
    /// When sending starts (default: once clients are logged in).
    #[serde(default)]
    pub start: Option<Dur>,
    /// When sending stops (default: `duration`).
    #[serde(default)]
    pub stop: Option<Dur>,
    /// How many distinct contacts each user chats with.
    #[serde(default = "default_contacts")]
    pub contacts_per_user: u32,
    /// Message bodies: size and characters (default: a few words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodySpec>,
}

/// The bodies of a chat workload's messages and posts: `body: { size: 2000, chars: mixed }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BodySpec {
    /// Bytes of UTF-8 text (before the `[[id]]` tag the client appends): a number, or
    /// `{ min, max }` drawn uniformly for each message.
    pub size: BodySize,
    /// Which characters.
    #[serde(default)]
    pub chars: BodyCharSet,
}

/// A body size: fixed, or drawn uniformly from a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum BodySize {
    /// Every body this many bytes.
    Fixed(u32),
    /// Each body drawn from `min..=max` bytes.
    Range {
        /// Smallest.
        min: u32,
        /// Largest.
        max: u32,
    },
}

impl BodySize {
    /// (smallest, largest) in bytes.
    pub fn bounds(self) -> (u32, u32) {
        match self {
            BodySize::Fixed(n) => (n, n),
            BodySize::Range { min, max } => (min, max),
        }
    }
}

/// The characters of a body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyCharSet {
    /// Letters, digits, space, punctuation XML carries as it is.
    #[default]
    Ascii,
    /// `<&>"'`, carriage return, tab and line feed among letters.
    Xml,
    /// Accented letters, CJK, right-to-left script, combining marks, emoji.
    Unicode,
    /// All of them.
    Mixed,
}

fn default_contacts() -> u32 {
    5
}

/// Which users take part in a workload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientSel {
    /// Any user, on whichever client they use.
    #[default]
    Any,
    /// Jabber users.
    Jabber,
    /// Webex App users.
    Webex,
}

/// Shares of chat actions; they must add up to 100%.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMix {
    /// A plain-text message.
    #[serde(default = "all")]
    pub text: Pct,
    /// An edit of the user's last message.
    #[serde(default)]
    pub edit: Pct,
    /// A delete of the user's last message.
    #[serde(default)]
    pub delete: Pct,
    /// A file share.
    #[serde(default)]
    pub file: Pct,
    /// A typing indication without a message.
    #[serde(default)]
    pub typing: Pct,
    /// A read marker for the last message received.
    #[serde(default)]
    pub read: Pct,
}

impl Default for ChatMix {
    fn default() -> Self {
        Self {
            text: Pct::ALL,
            edit: Pct::NONE,
            delete: Pct::NONE,
            file: Pct::NONE,
            typing: Pct::NONE,
            read: Pct::NONE,
        }
    }
}

/// One or more hosts, written as a name or a list of names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hosts(pub Vec<String>);

impl<'de> Deserialize<'de> for Hosts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "a host name or a list of host names")]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(h) => Hosts(vec![h]),
            OneOrMany::Many(v) => Hosts(v),
        })
    }
}

/// Two groups of hosts (both directions).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Between {
    /// One side.
    pub a: Hosts,
    /// The other side.
    pub b: Hosts,
}

/// A direction from one group of hosts to another.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OneWay {
    /// Sending side.
    pub from: Hosts,
    /// Receiving side.
    pub to: Hosts,
}

/// Latency on the links between two groups.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkLatency {
    /// One side.
    pub a: Hosts,
    /// The other side.
    pub b: Hosts,
    /// One-way latency (a multiple of the tick).
    pub latency: Dur,
}

/// Loss on the links between two groups.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PacketLoss {
    /// One side.
    pub a: Hosts,
    /// The other side.
    pub b: Hosts,
    /// Share of messages dropped.
    pub rate: Pct,
}

/// An IM&P node targeted by a fault.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRef {
    /// Host name, e.g. `imp-a-1` or `exp-a-2`.
    pub node: String,
}

/// An IM&P PRG failover.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImpFailover {
    /// The node that fails over (its users move to its PRG peer).
    pub node: String,
    /// Manual (administrator) or automatic (node failure detected by heartbeat).
    #[serde(default)]
    pub mode: FailoverMode,
}

/// How a failover is triggered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailoverMode {
    /// Administrator-initiated.
    #[default]
    Manual,
    /// After a node failure and the heartbeat timeout.
    Automatic,
}

/// A cluster-wide outage with no parameters.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Outage {}

/// HTTP error injection at the cloud.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpErrors {
    /// Share of requests answered with the status.
    pub rate: Pct,
    /// Status code: 429 or 5xx.
    pub status: u16,
}

/// One entry of the fault timeline: when, for how long, and exactly one kind.
///
/// Kinds are optional fields rather than an enum so that `at` and `for` sit beside the kind in
/// one YAML mapping (`{ at: 10m, for: 30s, crash: imp-a-1 }`) while unknown keys are still
/// rejected with the list of valid ones.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Simulated time at which the fault starts.
    pub at: Dur,
    /// How long it lasts; at the end it is undone (restart, repair, release, restore).
    #[serde(default, rename = "for")]
    pub for_: Option<Dur>,
    /// Stop hosts (with `for`: start them again after).
    #[serde(default)]
    pub crash: Option<Hosts>,
    /// Restart hosts' software at once.
    #[serde(default)]
    pub bounce: Option<Hosts>,
    /// Drop everything between two groups, both ways.
    #[serde(default)]
    pub partition: Option<Between>,
    /// Drop everything in one direction.
    #[serde(default)]
    pub partition_oneway: Option<OneWay>,
    /// Hold messages between two groups (delivered, late, on release).
    #[serde(default)]
    pub hold: Option<Between>,
    /// Add latency between two groups.
    #[serde(default)]
    pub link_latency: Option<LinkLatency>,
    /// Drop a share of messages between two groups.
    #[serde(default)]
    pub packet_loss: Option<PacketLoss>,
    /// IM&P PRG failover of a node.
    #[serde(default)]
    pub imp_failover: Option<ImpFailover>,
    /// IM&P PRG fallback to a node.
    #[serde(default)]
    pub imp_fallback: Option<NodeRef>,
    /// Stop the AXL service of an IM&P node.
    #[serde(default)]
    pub axl_stop: Option<NodeRef>,
    /// The Webex cloud is unreachable.
    #[serde(default)]
    pub cloud_outage: Option<Outage>,
    /// The KMS fails every request.
    #[serde(default)]
    pub kms_outage: Option<Outage>,
    /// The cloud answers a share of HTTP requests with an error status.
    #[serde(default)]
    pub http_errors: Option<HttpErrors>,
    /// Disable the message connector on an Expressway node.
    #[serde(default)]
    pub connector_disable: Option<NodeRef>,
    /// Enable it again.
    #[serde(default)]
    pub connector_enable: Option<NodeRef>,
    /// Restart it (rediscovers nodes, spec 22).
    #[serde(default)]
    pub connector_restart: Option<NodeRef>,
    /// Control Hub maintenance mode on an Expressway node (its users move away, spec 29).
    #[serde(default)]
    pub maintenance_mode: Option<NodeRef>,
    /// The Expressway's own maintenance mode (looks like an outage to the cloud, spec 29).
    #[serde(default)]
    pub expressway_maintenance: Option<NodeRef>,
    /// The administrator's "Reactivate User" in Control Hub for every user in Error (spec 25):
    /// the activation is retried.
    #[serde(default)]
    pub reactivate: Option<Reactivate>,
    /// The administrator switches a PRG's high availability on or off (spec 61): live on the
    /// IM&P cluster at once, seen by a connector only after it restarts (rediscovers).
    #[serde(default)]
    pub prg_high_availability: Option<PrgHighAvailability>,
}

/// `prg_high_availability: { cluster: a, enabled: true }`: a one-shot change of the PRG
/// setting of every node of an IM&P cluster (the scenario's `prg.high_availability`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrgHighAvailability {
    /// The IM&P cluster's name as in `topology.imp_clusters[].name`; it needs 2 or more nodes.
    pub cluster: String,
    /// The new setting.
    pub enabled: bool,
}

/// `reactivate: {}` (no parameters: it applies to every user in Error).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Reactivate {}

/// Names of the workload kinds.
pub const WORKLOAD_NAMES: &[&str] = &["chat", "presence", "group_chat"];

/// A check as the scenario lists it: a bare name (`no_message_loss`) or a single-key mapping
/// (`liveness: { within: 5m }`). Its parameters are read by the check itself (`checks::REGISTRY`),
/// which also says which names exist.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckSpec {
    /// The check's name.
    pub name: String,
    /// Its parameters as written (`Null` for a bare name).
    pub params: serde_yaml::Value,
}

impl CheckSpec {
    /// A check written as `name: params`.
    pub fn new(name: &str, params: serde_yaml::Value) -> Self {
        Self {
            name: name.into(),
            params,
        }
    }
}

impl<'de> Deserialize<'de> for CheckSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckVisitor)
    }
}

struct CheckVisitor;

impl<'de> serde::de::Visitor<'de> for CheckVisitor {
    type Value = CheckSpec;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(CHECK_EXPECTING)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CheckSpec, E> {
        Ok(CheckSpec::new(v, serde_yaml::Value::Null))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<CheckSpec, A::Error> {
        use serde::de::Error as _;
        let Some(name) = map.next_key::<String>()? else {
            return Err(A::Error::custom(format!(
                "empty mapping: expected {CHECK_EXPECTING}"
            )));
        };
        let params = map.next_value::<serde_yaml::Value>()?;
        if let Some(extra) = map.next_key::<String>()? {
            return Err(beside::<A::Error>(&extra, &name));
        }
        Ok(CheckSpec::new(&name, params))
    }
}

const CHECK_EXPECTING: &str = "a check name, or a mapping `name: { parameters }`";

/// A second key in a single-kind list item.
fn beside<E: serde::de::Error>(extra: &str, name: &str) -> E {
    E::custom(format!(
        "`{extra}` beside `{name}`: each list item holds exactly one kind; start a new item with `- {extra}: ...`"
    ))
}

// The YAML crate reads externally tagged enums only from YAML tags (`!chat`), not from the
// single-key mappings scenarios use, so workloads and checks are read by hand. Streaming through a
// MapAccess keeps serde_path_to_error's field paths and the parser's positions intact.

impl<'de> Deserialize<'de> for Workload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TaggedVisitor::<Workload>::new(
            "a workload such as `chat: { rate_per_user: 1/10m }`",
        ))
    }
}

/// An enum read from a bare name (no parameters) or a single-key mapping.
trait Tagged: Sized {
    const NAMES: &'static [&'static str];
    /// The variant for a bare name, or `None` when it needs parameters.
    fn bare(name: &str) -> Option<Self>;
    /// The variant for `name: value`.
    fn with_value<'de, A: serde::de::MapAccess<'de>>(
        name: &str,
        map: &mut A,
    ) -> Result<Self, A::Error>;
}

impl Tagged for Workload {
    const NAMES: &'static [&'static str] = WORKLOAD_NAMES;
    fn bare(_: &str) -> Option<Self> {
        None
    }
    fn with_value<'de, A: serde::de::MapAccess<'de>>(
        name: &str,
        map: &mut A,
    ) -> Result<Self, A::Error> {
        Ok(match name {
            "presence" => Workload::Presence(map.next_value()?),
            "group_chat" => Workload::GroupChat(map.next_value()?),
            _ => Workload::Chat(map.next_value()?),
        })
    }
}

struct TaggedVisitor<T> {
    expecting: &'static str,
    _t: std::marker::PhantomData<T>,
}

impl<T> TaggedVisitor<T> {
    fn new(expecting: &'static str) -> Self {
        Self {
            expecting,
            _t: std::marker::PhantomData,
        }
    }
}

impl<'de, T: Tagged> serde::de::Visitor<'de> for TaggedVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        if !T::NAMES.contains(&v) {
            return Err(E::unknown_variant(v, T::NAMES));
        }
        T::bare(v)
            .ok_or_else(|| E::custom(format!("`{v}` needs parameters: write `{v}: {{ ... }}`")))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        use serde::de::Error as _;
        let Some(name) = map.next_key::<String>()? else {
            return Err(A::Error::custom(format!(
                "empty mapping: expected {}",
                self.expecting
            )));
        };
        if !T::NAMES.contains(&name.as_str()) {
            return Err(A::Error::unknown_variant(&name, T::NAMES));
        }
        let value = T::with_value(&name, &mut map)?;
        if let Some(extra) = map.next_key::<String>()? {
            return Err(beside::<A::Error>(&extra, &name));
        }
        Ok(value)
    }
}
