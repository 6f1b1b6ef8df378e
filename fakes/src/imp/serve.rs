//! Real-mode serving of one IM&P node (`hmsim serve imp`): the config file and the setup of the
//! node (the publisher of a one-node cluster) on loopback sockets ([`TokioNet`]): c2s XMPP,
//! the XEP-0114 component port and AXL. The CLI parses the YAML into [`ServeImpConfig`] and
//! prints the lines [`serve`] hands to `on_ready`.
//!
//! ```yaml
//! # hmsim serve imp --config imp.yaml
//! domain: example.com            # XMPP domain (default example.com)
//! host: imp-1                    # node host name, as AXL reports it (default imp-1)
//! version: "14.0"                # IM&P version (default 14.0)
//! offline_storage: true          # spec 46 (default true)
//! mdm: true                      # carbons (default true)
//! listen: { ip: 127.0.0.1, c2s: 5222, component: 7400, axl: 8443 }   # these are the defaults
//! component: { secret: s3cret, sessions_max: 100, create_rate: 10/1s }  # limits optional
//! axl: { username: hmsim-axl, password: axl-Secret-0, axl_role: true }
//! users:
//!   - { userid: alice, password: alice-pw, email: alice@example.com }
//!   - { userid: nomail, password: pw }   # no email: no mailid in AXL
//! ```

use super::axl::{AXL_PORT, AxlAccount, AxlNode, AxlService};
use super::component::{COMPONENT_PORT, ComponentConfig, ComponentService, CreateRate};
use super::driver::{C2S_PORT, NodePorts, serve_node};
use super::{Directory, ImpNode, NodeConfig, UserRecord};
use connector::io::net::TokioNet;
use serde::{Deserialize, Deserializer};
use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;

/// The config of `hmsim serve imp` (module doc).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeImpConfig {
    /// XMPP domain.
    #[serde(default = "default_domain")]
    pub domain: String,
    /// Node host name, as AXL reports it.
    #[serde(default = "default_host")]
    pub host: String,
    /// IM&P version (`14.0`).
    #[serde(default = "default_version")]
    pub version: String,
    /// Offline storage (spec 46).
    #[serde(default = "yes")]
    pub offline_storage: bool,
    /// Message carbons (multiple devices).
    #[serde(default = "yes")]
    pub mdm: bool,
    /// Where to listen.
    #[serde(default)]
    pub listen: ServeListen,
    /// The component port.
    pub component: ServeComponent,
    /// The AXL account.
    pub axl: ServeAxl,
    /// The users.
    pub users: Vec<ServeUser>,
}

/// Where the node listens.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeListen {
    /// Address to bind (default 127.0.0.1).
    #[serde(default = "loopback")]
    pub ip: IpAddr,
    /// c2s port (default 5222).
    #[serde(default = "default_c2s", deserialize_with = "crate::config::port")]
    pub c2s: u16,
    /// Component port (default 7400).
    #[serde(
        default = "default_component",
        deserialize_with = "crate::config::port"
    )]
    pub component: u16,
    /// AXL port (default 8443).
    #[serde(default = "default_axl", deserialize_with = "crate::config::port")]
    pub axl: u16,
}

impl Default for ServeListen {
    fn default() -> Self {
        Self {
            ip: loopback(),
            c2s: default_c2s(),
            component: default_component(),
            axl: default_axl(),
        }
    }
}

/// The component port's secret and limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeComponent {
    /// The shared secret of the XEP-0114 handshake.
    pub secret: String,
    /// Session limit (default 1.5 × the homed users, spec 10).
    #[serde(default, deserialize_with = "crate::config::sessions_max")]
    pub sessions_max: Option<usize>,
    /// Session creation rate, `<count>/<duration>` (`10/1s`, `600/m`).
    #[serde(default, deserialize_with = "rate")]
    pub create_rate: Option<CreateRate>,
}

/// The AXL account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeAxl {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Whether the account has "Standard AXL API Access" (spec 17).
    #[serde(default = "yes")]
    pub axl_role: bool,
}

/// A user of the node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeUser {
    /// User id (the JID's local part, lowercased).
    pub userid: String,
    /// Password.
    pub password: String,
    /// Mail id (none: no mailid in AXL).
    #[serde(default)]
    pub email: Option<String>,
}

fn default_domain() -> String {
    "example.com".into()
}
fn default_host() -> String {
    "imp-1".into()
}
fn default_version() -> String {
    "14.0".into()
}
fn yes() -> bool {
    true
}
fn loopback() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}
fn default_c2s() -> u16 {
    C2S_PORT
}
fn default_component() -> u16 {
    COMPONENT_PORT
}
fn default_axl() -> u16 {
    AXL_PORT
}

fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CreateRate>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| parse_rate(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// Parses a rate `<count>/<duration>`: `10/1s`, `6/h`, `5000/30m`. The count is rounded to
/// whole sessions.
///
/// # Errors
/// What is wrong, with the accepted forms.
pub fn parse_rate(s: &str) -> Result<CreateRate, String> {
    let (count, per) = crate::config::parse_rate(s)?;
    let max = crate::config::CREATE_RATE_CONFIG_MAX;
    if !(1.0..=f64::from(max)).contains(&count.round()) {
        return Err(format!(
            "rate `{s}`: the count rounds to {}, out of range 1..={max}",
            count.round()
        ));
    }
    Ok(CreateRate {
        sessions: count.round() as u32,
        per,
    })
}

/// The (major, minor) of an IM&P version such as `14.0` or `12.5.1`; `None` unless the major
/// version is 8 to 99.
pub fn imp_version(v: &str) -> Option<(u32, u32)> {
    let core: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut it = core.split('.');
    let major: u32 = it.next()?.parse().ok()?;
    let minor: u32 = it.next().unwrap_or("0").parse().ok()?;
    (8..100).contains(&major).then_some((major, minor))
}

impl ServeImpConfig {
    /// Checks what the types cannot: each problem as `<field path>: <what is wrong>`.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), String> {
        if imp_version(&self.version).is_none() {
            return Err(format!(
                "version: `{}` is not a version such as `14.0`",
                self.version
            ));
        }
        Ok(())
    }
}

/// The node, its component service and its AXL service, built from `cfg` (validated).
pub fn build(cfg: &ServeImpConfig) -> (ImpNode, ComponentService, AxlService) {
    let version = imp_version(&cfg.version).unwrap_or((14, 0));
    let dir = Rc::new(Directory::new(cfg.users.iter().map(|u| UserRecord {
        userid: u.userid.clone(),
        jid: format!("{}@{}", u.userid.to_ascii_lowercase(), cfg.domain),
        email: u.email.clone(),
        password: u.password.clone(),
        home: cfg.host.clone(),
    })));
    let node_cfg = NodeConfig {
        host: cfg.host.clone(),
        domain: cfg.domain.clone(),
        version,
        offline_storage: cfg.offline_storage,
        mdm: cfg.mdm,
    };
    let comp = ComponentService::new(
        ComponentConfig {
            secret: cfg.component.secret.clone(),
            sessions_max: cfg.component.sessions_max,
            create_rate: cfg.component.create_rate,
        },
        &node_cfg,
        dir.clone(),
    );
    let axl = AxlService::new(
        vec![AxlAccount {
            username: cfg.axl.username.clone(),
            password: cfg.axl.password.clone(),
            axl_role: cfg.axl.axl_role,
        }],
        vec![AxlNode {
            name: cfg.host.clone(),
            description: "hmsim IM and Presence publisher".into(),
            version: format!("{}.{}", version.0, version.1),
            prg_peer: None,
            prg_high_availability: false,
        }],
        dir.clone(),
        Vec::new(),
    );
    (ImpNode::new(node_cfg, dir, Rc::default()), comp, axl)
}

/// Serves the node of `cfg` on real sockets until a listener fails. Call inside a `LocalSet`.
/// `on_ready` gets the lines to print once listening: `hmsim serve imp: node <host> domain
/// <domain>`, then `listening c2s|component|axl <ip>:<port>`.
///
/// # Errors
/// A config problem ([`ServeImpConfig::validate`]) or a socket error, as text.
pub async fn serve(cfg: &ServeImpConfig, on_ready: impl FnOnce(Vec<String>)) -> Result<(), String> {
    cfg.validate()?;
    let (node, comp, axl) = build(cfg);
    let ports = NodePorts {
        c2s: cfg.listen.c2s,
        component: cfg.listen.component,
        axl: cfg.listen.axl,
        router: None,
    };
    let ip = cfg.listen.ip;
    let lines = vec![
        format!("hmsim serve imp: node {} domain {}", cfg.host, cfg.domain),
        format!("listening c2s {ip}:{}", ports.c2s),
        format!("listening component {ip}:{}", ports.component),
        format!("listening axl {ip}:{}", ports.axl),
    ];
    serve_node(
        TokioNet::new(ip),
        Rc::new(RefCell::new(node)),
        Rc::new(RefCell::new(comp)),
        Rc::new(RefCell::new(axl)),
        ports,
        || on_ready(lines),
    )
    .await
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_and_versions_parse_as_the_scenario_units_do() {
        let r = parse_rate("10/1s").expect("rate");
        assert_eq!((r.sessions, r.per), (10, Duration::from_secs(1)));
        let r = parse_rate("6/h").expect("rate");
        assert_eq!((r.sessions, r.per), (6, Duration::from_secs(3600)));
        let r = parse_rate("5000/1m30s").expect("rate");
        assert_eq!((r.sessions, r.per), (5000, Duration::from_secs(90)));
        for bad in [
            "",
            "10",
            "x/s",
            "10/0s",
            "-1/s",
            "NaN/s",
            "1/parsec",
            "0/s",
            "0.2/s",
            "2000000/s",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(imp_version("14.0"), Some((14, 0)));
        assert_eq!(imp_version("12.5.1 SU3"), Some((12, 5)));
        assert_eq!(imp_version("7.0"), None);
    }

    fn parse(yaml_like: serde_json::Value) -> Result<ServeImpConfig, String> {
        serde_json::from_value(yaml_like).map_err(|e| e.to_string())
    }

    #[test]
    fn numbers_out_of_range_are_refused_while_reading() {
        let base = serde_json::json!({
            "component": {"secret": "s"},
            "axl": {"username": "a", "password": "b"},
            "users": [],
        });
        assert!(parse(base.clone()).is_ok());
        let cases = [
            (serde_json::json!({"c2s": 0}), "port 0"),
            (serde_json::json!({"axl": 70000}), "port 70000"),
            (serde_json::json!({"component": -1}), "port -1"),
        ];
        for (listen, want) in cases {
            let mut cfg = base.clone();
            cfg["listen"] = listen;
            let e = parse(cfg).expect_err("refused");
            assert!(e.contains(want), "{e}");
        }
        for (sessions_max, want) in [(0, "sessions_max 0"), (-5, "sessions_max -5")] {
            let mut cfg = base.clone();
            cfg["component"]["sessions_max"] = sessions_max.into();
            let e = parse(cfg).expect_err("refused");
            assert!(e.contains(want), "{e}");
        }
        let mut cfg = base;
        cfg["component"]["create_rate"] = "0/s".into();
        let e = parse(cfg).expect_err("refused");
        assert!(e.contains("out of range"), "{e}");
    }
}
