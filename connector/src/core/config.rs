//! The Message Service configuration of an Expressway cluster, and the rules the seeds impose
//! on it (spec 11-21). Every violated rule is reported, each naming the rule and its spec item,
//! so an administrator fixes everything in one pass.

use std::fmt;

/// Most IM&P clusters one Expressway cluster may list (spec 5, 19).
pub const IMP_CLUSTERS_MAX: usize = 5;
/// Most nodes in an Expressway cluster (spec 1).
pub const EXPRESSWAY_NODES_MAX: usize = 6;

/// Outbound HTTP proxy towards the cloud (spec 14): none, or Basic authentication only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proxy {
    /// Direct connection.
    None,
    /// A proxy with optional Basic credentials.
    Basic {
        /// Proxy host.
        host: String,
        /// Proxy port.
        port: u16,
        /// Basic credentials, if the proxy requires them.
        credentials: Option<(String, String)>,
    },
    /// Any other authentication scheme (NTLM, Digest): unsupported, rejected by validation.
    Other {
        /// The scheme named in the configuration.
        scheme: String,
    },
}

/// One IM&P publisher the connector is configured with (spec 16).
#[derive(Clone, PartialEq, Eq)]
pub struct ImpPublisher {
    /// IM&P cluster name (for messages).
    pub cluster: String,
    /// Publisher host name.
    pub host: String,
    /// AXL application user.
    pub axl_username: String,
    /// AXL password; never printed (see the `Debug` impl).
    pub axl_password: String,
    /// Certificate validation towards this publisher (spec 16: default enabled).
    pub certificate_validation: bool,
    /// The IM&P platform's main administrator account (spec 17: the AXL user must differ).
    pub platform_admin: String,
}

impl fmt::Debug for ImpPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImpPublisher")
            .field("cluster", &self.cluster)
            .field("host", &self.host)
            .field("axl_username", &self.axl_username)
            .field("axl_password", &"<redacted>")
            .field("certificate_validation", &self.certificate_validation)
            .finish()
    }
}

/// The configuration of one Expressway cluster's message connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorConfig {
    /// Expressway cluster name.
    pub cluster: String,
    /// Host names of the nodes; the first is the primary.
    pub nodes: Vec<String>,
    /// IM&P publishers, one per IM&P cluster.
    pub publishers: Vec<ImpPublisher>,
    /// Proxy towards the cloud.
    pub proxy: Proxy,
    /// The connector's Active setting (spec 21).
    pub enabled: bool,
}

/// A violated configuration rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Spec 11: capital letters in a hostname make registration fail.
    #[error(
        "rule `lowercase-hostname` (spec 11): Expressway hostname `{0}` has capital letters; registration would fail"
    )]
    UppercaseHostname(String),
    /// Spec 1: 1 to 6 nodes.
    #[error(
        "rule `cluster-size` (spec 1): an Expressway cluster has 1 to {EXPRESSWAY_NODES_MAX} nodes, not {0}"
    )]
    ClusterSize(usize),
    /// Spec 16: at least one publisher must be configured.
    #[error("rule `publisher-required` (spec 16): no IM&P publisher is configured")]
    NoPublisher,
    /// Spec 5, 19: at most 5 IM&P clusters.
    #[error(
        "rule `imp-clusters-max` (spec 5, 19): {0} IM&P clusters configured, at most {IMP_CLUSTERS_MAX} are supported"
    )]
    TooManyImpClusters(usize),
    /// Spec 19: an IM&P cluster listed twice in one configuration.
    #[error("rule `no-duplicate-publisher` (spec 19): IM&P cluster `{0}` is listed twice")]
    DuplicatePublisher(String),
    /// Spec 19: an IM&P cluster configured on two Expressway clusters.
    #[error(
        "rule `no-meshing` (spec 19): IM&P cluster `{imp}` is also configured on Expressway cluster `{other}`"
    )]
    Meshing {
        /// The IM&P cluster.
        imp: String,
        /// The other Expressway cluster.
        other: String,
    },
    /// Spec 17: the AXL account must not be the main administrator.
    #[error(
        "rule `axl-not-admin` (spec 17): AXL user `{user}` for `{cluster}` is the platform administrator; use an application user with Standard AXL API Access"
    )]
    AxlIsAdmin {
        /// IM&P cluster.
        cluster: String,
        /// The offending user name.
        user: String,
    },
    /// Spec 16: AXL credentials are required.
    #[error("rule `axl-credentials` (spec 16): AXL username or password missing for `{0}`")]
    AxlCredentialsMissing(String),
    /// Spec 14: proxies support Basic authentication only.
    #[error(
        "rule `proxy-basic-only` (spec 14): proxy authentication `{0}` is not supported; use none or Basic"
    )]
    ProxyScheme(String),
    /// Spec 21: the connector must be set Active=Enabled to run.
    #[error("rule `connector-enabled` (spec 21): the message connector is not enabled")]
    NotEnabled,
}

/// Checks `cfg` against every rule; `others` are the other Expressway clusters of the org
/// (for the meshing rule). Returns every violation, in rule order.
pub fn validate(cfg: &ConnectorConfig, others: &[ConnectorConfig]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for n in &cfg.nodes {
        if n.chars().any(|c| c.is_ascii_uppercase()) {
            errors.push(ConfigError::UppercaseHostname(n.clone()));
        }
    }
    if cfg.nodes.is_empty() || cfg.nodes.len() > EXPRESSWAY_NODES_MAX {
        errors.push(ConfigError::ClusterSize(cfg.nodes.len()));
    }
    publishers(cfg, others, &mut errors);
    if let Proxy::Other { scheme } = &cfg.proxy {
        errors.push(ConfigError::ProxyScheme(scheme.clone()));
    }
    if !cfg.enabled {
        errors.push(ConfigError::NotEnabled);
    }
    errors
}

fn publishers(cfg: &ConnectorConfig, others: &[ConnectorConfig], errors: &mut Vec<ConfigError>) {
    if cfg.publishers.is_empty() {
        errors.push(ConfigError::NoPublisher);
    }
    if cfg.publishers.len() > IMP_CLUSTERS_MAX {
        errors.push(ConfigError::TooManyImpClusters(cfg.publishers.len()));
    }
    for (i, p) in cfg.publishers.iter().enumerate() {
        if cfg.publishers[..i].iter().any(|q| q.cluster == p.cluster) {
            errors.push(ConfigError::DuplicatePublisher(p.cluster.clone()));
        }
        let meshed = others
            .iter()
            .filter(|o| o.cluster != cfg.cluster)
            .find(|o| o.publishers.iter().any(|q| q.cluster == p.cluster));
        if let Some(o) = meshed {
            errors.push(ConfigError::Meshing {
                imp: p.cluster.clone(),
                other: o.cluster.clone(),
            });
        }
        if p.axl_username.is_empty() || p.axl_password.is_empty() {
            errors.push(ConfigError::AxlCredentialsMissing(p.cluster.clone()));
        } else if p.axl_username.eq_ignore_ascii_case(&p.platform_admin) {
            errors.push(ConfigError::AxlIsAdmin {
                cluster: p.cluster.clone(),
                user: p.axl_username.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher(cluster: &str) -> ImpPublisher {
        ImpPublisher {
            cluster: cluster.into(),
            host: format!("imp-{cluster}-1"),
            axl_username: "hmsim-axl".into(),
            axl_password: "s3cret".into(),
            certificate_validation: true,
            platform_admin: "admin".into(),
        }
    }

    fn config(name: &str, imps: &[&str]) -> ConnectorConfig {
        ConnectorConfig {
            cluster: name.into(),
            nodes: vec![format!("exp-{name}-1"), format!("exp-{name}-2")],
            publishers: imps.iter().map(|c| publisher(c)).collect(),
            proxy: Proxy::None,
            enabled: true,
        }
    }

    #[test]
    fn a_good_configuration_passes() {
        assert_eq!(validate(&config("a", &["x", "y"]), &[]), vec![]);
    }

    #[test]
    fn each_rule_is_named() {
        let mut c = config("a", &["x", "x"]);
        c.nodes[0] = "Exp-A-1".into();
        c.publishers[1].axl_username = "Admin".into();
        c.proxy = Proxy::Other {
            scheme: "NTLM".into(),
        };
        c.enabled = false;
        let errs = validate(&c, &[config("b", &["x"])]);
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        for rule in [
            "lowercase-hostname",
            "no-duplicate-publisher",
            "no-meshing",
            "axl-not-admin",
            "proxy-basic-only",
            "connector-enabled",
        ] {
            assert!(
                text.iter().any(|t| t.contains(rule)),
                "{rule} missing in {text:?}"
            );
        }
    }

    #[test]
    fn limits() {
        let c = config("a", &["1", "2", "3", "4", "5", "6"]);
        assert_eq!(validate(&c, &[]), vec![ConfigError::TooManyImpClusters(6)]);
        let mut c = config("a", &["x"]);
        c.nodes = (1..=7).map(|n| format!("exp-a-{n}")).collect();
        assert_eq!(validate(&c, &[]), vec![ConfigError::ClusterSize(7)]);
        c.nodes.clear();
        c.publishers.clear();
        assert_eq!(
            validate(&c, &[]),
            vec![ConfigError::ClusterSize(0), ConfigError::NoPublisher]
        );
    }

    #[test]
    fn debug_never_shows_the_axl_password() {
        let p = publisher("x");
        assert!(!format!("{p:?}").contains("s3cret"));
    }
}
