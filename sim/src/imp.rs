//! Building the connector-facing services of the fake IM&P nodes from a scenario: the
//! component port's settings (spec 10) and the AXL service (spec 16-17, 22-23), and the
//! handles faults use to stop an AXL service or change a PRG's high availability (spec 61).

use crate::scenario::{ImpCluster, Scenario};
use crate::topology::{self, UserSpec};
use fakes::imp::axl::{AxlAccount, AxlNode, AxlService};
use fakes::imp::component::{ComponentConfig, CreateRate};
use fakes::imp::{Directory, ImpNode, NodeDb, UserRecord};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

thread_local! {
    /// AXL services by host, for the `axl_stop` fault. Thread-local because each simulation
    /// runs on one thread (tests run several simulations on several threads); cleared at the
    /// start of every run.
    static AXL: RefCell<BTreeMap<String, Rc<RefCell<AxlService>>>> = RefCell::default();
    /// IM&P nodes by host, for the `prg_high_availability` fault; thread-local and cleared
    /// like [`AXL`].
    static NODES: RefCell<BTreeMap<String, NodeHandle>> = RefCell::default();
}

/// What the `prg_high_availability` fault reaches on one IM&P host: its cluster, the running
/// core (empty before the host first starts), and the database that outlives restarts.
pub struct NodeHandle {
    /// The scenario's cluster name.
    pub cluster: String,
    /// The current core, set by the host each time it starts.
    pub slot: Rc<RefCell<Option<Rc<RefCell<ImpNode>>>>>,
    /// The node's database.
    pub db: Rc<RefCell<NodeDb>>,
}

/// Forgets the AXL services and nodes of a previous run on this thread.
pub fn reset() {
    AXL.with(|a| a.borrow_mut().clear());
    NODES.with(|n| n.borrow_mut().clear());
}

/// Remembers the IM&P node of `host` for faults.
pub fn register_node(host: &str, node: NodeHandle) {
    NODES.with(|n| n.borrow_mut().insert(host.to_string(), node));
}

/// The administrator switches the PRG high availability of every node of `cluster` (spec 61):
/// live on the running cores, kept in their databases for restarts, and reported by every AXL
/// service's `listProcessNode` from now on. Connectors read it at discovery only, so they
/// see it after a restart. Returns the hosts changed, in order.
pub fn set_prg_high_availability(cluster: &str, on: bool) -> Vec<String> {
    let hosts: Vec<String> = NODES.with(|n| {
        n.borrow()
            .iter()
            // `a` and `imp-a` name the same cluster, as in host names.
            .filter(|(_, h)| topology::imp_host(&h.cluster, 1) == topology::imp_host(cluster, 1))
            .map(|(host, h)| {
                // Written to the database first, so a host that is down now starts with it.
                h.db.borrow_mut().prg_high_availability = Some(on);
                if let Some(core) = h.slot.borrow().as_ref() {
                    core.borrow_mut().set_prg_high_availability(on);
                }
                host.clone()
            })
            .collect()
    });
    AXL.with(|a| {
        for svc in a.borrow().values() {
            let mut svc = svc.borrow_mut();
            for host in &hosts {
                svc.set_prg_high_availability(host, on);
            }
        }
    });
    hosts
}

/// Remembers the AXL service of `host` for faults.
pub fn register_axl(host: &str, svc: Rc<RefCell<AxlService>>) {
    AXL.with(|a| a.borrow_mut().insert(host.to_string(), svc));
}

/// Stops or starts the AXL service of `host` (spec 22). Returns false for an unknown host.
pub fn set_axl_stopped(host: &str, stopped: bool) -> bool {
    AXL.with(|a| match a.borrow().get(host) {
        Some(svc) => {
            svc.borrow_mut().set_stopped(stopped);
            true
        }
        None => false,
    })
}

/// Adds the AXL services' counters to the run's coverage: what discovery met (spec 22).
pub fn report(observer: &crate::observer::Observer) {
    AXL.with(|a| {
        for svc in a.borrow().values() {
            let st = svc.borrow().stats().clone();
            observer.hit_n("axl: requests answered", st.ok);
            observer.hit_n("axl: requests refused while stopped", st.stopped);
            observer.hit_n("axl: bad credentials", st.unauthorized);
            observer.hit_n("axl: SOAP faults", st.faults);
        }
    });
}

/// The component port settings of a cluster's nodes.
pub fn component_config(c: &ImpCluster) -> ComponentConfig {
    ComponentConfig {
        secret: crate::hybrid::COMPONENT_SECRET.into(),
        sessions_max: c.sessions.max.map(|m| m as usize),
        create_rate: c.sessions.create_rate.map(|r| CreateRate {
            sessions: r.count.round().clamp(1.0, f64::from(u32::MAX)) as u32,
            per: r.per,
        }),
    }
}

/// The AXL service of cluster `ci`: its nodes (paired into PRGs 1+2, 3+4, 5+6), its users,
/// and the users of every other cluster as intercluster (ICSA, spec 23).
pub fn axl_service(s: &Scenario, ci: usize, users: &[UserSpec], dir: Rc<Directory>) -> AxlService {
    let c = &s.topology.imp_clusters[ci];
    let nodes = (1..=c.nodes)
        .map(|n| {
            let peer = if n % 2 == 1 { n + 1 } else { n - 1 };
            AxlNode {
                name: topology::imp_host(&c.name, n),
                description: if n == 1 {
                    "publisher".into()
                } else {
                    "subscriber".into()
                },
                version: c.version.clone(),
                prg_peer: (peer <= c.nodes).then(|| topology::imp_host(&c.name, peer)),
                prg_high_availability: c.prg.high_availability,
            }
        })
        .collect();
    let icsa = users
        .iter()
        .filter(|u| u.cluster != ci)
        .map(|u| UserRecord {
            userid: u.userid.clone(),
            jid: u.jid.clone(),
            email: u.email.clone(),
            password: u.password.clone(),
            home: u.home_host(s),
        })
        .collect();
    let account = AxlAccount {
        username: c.axl.username.clone(),
        password: c.axl.password.clone(),
        axl_role: c.axl.axl_role,
    };
    AxlService::new(vec![account], nodes, dir, icsa)
}
