//! The hybrid side's configuration, as Control Hub and the Expressway administrator would set
//! it: the connector settings of every Expressway node, the cloud's capacity inputs, the
//! shared secrets and accounts. Pure functions of the scenario; validation and the capacity
//! check use them as the world does.

use crate::plan::topology::{self, UserSpec};
use crate::scenario::{Coresident, ExpresswayCluster, ExpresswaySize, HostnameCheck, Scenario};
use connector::core::config::{ConnectorConfig, ImpPublisher, Proxy};
use connector::core::node::NodeSettings;
use fakes::cloud::assignment::{Coresidency, NodeSize};
use serde_json::{Value, json};
use std::time::Duration;

/// The Control Hub administrator's token (setup only).
pub const ADMIN_TOKEN: &str = "hmsim-admin";
/// The XEP-0114 secret shared by every IM&P node and connector of a run.
pub const COMPONENT_SECRET: &str = "hmsim-component-secret";
/// The IM&P platform administrator account (spec 17: the AXL user must differ).
pub const PLATFORM_ADMIN: &str = "admin";
/// Session opens per second a connector allows itself towards IM&P in normal operation.
pub const SESSION_RATE_PER_S: f64 = 50.0;
/// Webex users log in spread over this window after the start.
pub const WEBEX_LOGIN_SPREAD: Duration = Duration::from_secs(30);

/// The email a user has in Webex: the mail ID IM&P holds (spec 24: it must be the same,
/// whatever the JID), or for a user without one in IM&P, `<userid>@<domain>` (every user has
/// an email in Webex).
pub fn webex_email(u: &UserSpec, s: &Scenario) -> String {
    u.email
        .clone()
        .unwrap_or_else(|| format!("{}@{}", u.userid, s.topology.domain))
}

/// The cloud's name of an Expressway VM size.
pub fn size_name(s: ExpresswaySize) -> &'static str {
    match s {
        ExpresswaySize::Small => "small",
        ExpresswaySize::Medium => "medium",
        ExpresswaySize::Large => "large",
    }
}

/// The cloud's capacity inputs for an Expressway cluster: VM size and coresidency (spec 2-7).
pub fn capacity_shape(e: &ExpresswayCluster) -> (NodeSize, Coresidency) {
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

/// The cloud's coresidency description for an Expressway cluster (spec 6-7).
pub fn coresidency(e: &ExpresswayCluster) -> Value {
    json!(capacity_shape(e).1)
}

/// The Message Service configuration an Expressway cluster of the scenario carries.
pub fn connector_config(s: &Scenario, e: &ExpresswayCluster) -> ConnectorConfig {
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

/// The connector settings of node `n` of Expressway cluster `e`, with its registration token.
pub fn node_settings(
    s: &Scenario,
    e: &ExpresswayCluster,
    n: u32,
    token: Option<String>,
) -> NodeSettings {
    let mut cluster = connector_config(s, e);
    let hostname = cluster.nodes[(n - 1) as usize].clone();
    if e.hostname_check == HostnameCheck::Skip {
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
