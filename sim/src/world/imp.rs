//! The IM&P hosts: one per node, each running the fake node core with its c2s, router,
//! component (spec 10) and AXL (spec 16-17, 22-23) services; and the handles faults use to stop
//! an AXL service or change a PRG's high availability (spec 61).

use crate::plan::Plan;
use crate::plan::topology::{self, UserSpec};
use crate::scenario::{Scenario, imp_version};
use connector::io::net::TurmoilNet;
use fakes::imp::axl::{AxlAccount, AxlNode, AxlService};
use fakes::imp::{Directory, ImpNode, NodeConfig, NodeDb, UserRecord, driver};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// Read-only handle on a node core, for sampling: empty before the host first starts, replaced
/// at each restart. PRG faults call the administrator's failover and fallback on the core
/// ([`crate::inject`]), the one deliberate write into a host from outside, like a crash.
pub type NodeSlot = Rc<RefCell<Option<Rc<RefCell<ImpNode>>>>>;

/// What the `prg_high_availability` fault reaches on one IM&P host: its cluster, the running
/// core (empty before the host first starts), and the database that outlives restarts.
pub struct NodeHandle {
    /// The scenario's cluster name.
    pub cluster: String,
    /// The current core, set by the host each time it starts.
    pub slot: NodeSlot,
    /// The node's database.
    pub db: Rc<RefCell<NodeDb>>,
}

/// The IM&P side's handles, by host.
#[derive(Default)]
pub struct ImpHandles {
    /// Every node.
    pub nodes: BTreeMap<String, NodeHandle>,
    /// Every node's AXL service (whether it is stopped outlives restarts, spec 22).
    pub axl: BTreeMap<String, Rc<RefCell<AxlService>>>,
}

impl ImpHandles {
    /// The running core of `host`, if it has started.
    pub fn core(&self, host: &str) -> Option<Rc<RefCell<ImpNode>>> {
        self.nodes.get(host).and_then(|h| h.slot.borrow().clone())
    }

    /// The administrator switches the PRG high availability of every node of `cluster` (spec 61):
    /// live on the running cores, kept in their databases for restarts, and reported by every AXL
    /// service's `listProcessNode` from now on. Connectors read it at discovery only, so they
    /// see it after a restart. Returns the hosts changed, in order.
    pub fn set_prg_high_availability(&self, cluster: &str, on: bool) -> Vec<String> {
        let hosts: Vec<String> = self
            .nodes
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
            .collect();
        for svc in self.axl.values() {
            let mut svc = svc.borrow_mut();
            for host in &hosts {
                svc.set_prg_high_availability(host, on);
            }
        }
        hosts
    }

    /// Stops or starts the AXL service of `host` (spec 22). Returns false for an unknown host.
    pub fn set_axl_stopped(&self, host: &str, stopped: bool) -> bool {
        match self.axl.get(host) {
            Some(svc) => {
                svc.borrow_mut().set_stopped(stopped);
                true
            }
            None => false,
        }
    }
}

/// Adds one host per IM&P node.
pub fn add_hosts(sim: &mut turmoil::Sim<'_>, s: &Scenario, plan: &Plan) -> ImpHandles {
    let mut handles = ImpHandles::default();
    let users = &plan.users;
    let pairs = crate::plan::workload::roster_pairs(users, &plan.chat);
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
            add_node(sim, s, plan, (ci, n), (&dir, &routing), &mut handles);
        }
    }
    handles
}

/// Adds the host of node `n` of IM&P cluster `ci`, with its handles.
fn add_node(
    sim: &mut turmoil::Sim<'_>,
    s: &Scenario,
    plan: &Plan,
    (ci, n): (usize, u32),
    (dir, routing): (&Rc<Directory>, &Rc<Directory>),
    handles: &mut ImpHandles,
) {
    let c = &s.topology.imp_clusters[ci];
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
    let slot: NodeSlot = Rc::default();
    let prg = crate::plan::imp::node_config_with_remote(s, ci);
    let ka = super::jabber::keepalive(s);
    let whitespace =
        (ka.kind == fakes::clients::jabber::KeepaliveKind::Whitespace).then_some(ka.interval);
    let (dir, routing) = (dir.clone(), routing.clone());
    // The AXL service (and whether it is stopped, spec 22) outlives restarts.
    let axl = Rc::new(RefCell::new(axl_service(s, ci, &plan.users, dir.clone())));
    let comp_cfg = crate::plan::imp::component_config(c);
    let jsm_max = crate::plan::imp::jsm_sessions_max(c);
    handles.axl.insert(host.clone(), axl.clone());
    handles.nodes.insert(
        host.clone(),
        NodeHandle {
            cluster: c.name.clone(),
            slot: slot.clone(),
            db: db.clone(),
        },
    );
    sim.host(host.as_str(), move || {
        let node = Rc::new(RefCell::new(
            ImpNode::new(cfg.clone(), routing.clone(), db.clone())
                .with_prg(prg.clone())
                .with_whitespace_keepalive(whitespace)
                .with_client_keepalive(ka.interval)
                .with_jsm_sessions_max(Some(jsm_max)),
        ));
        *slot.borrow_mut() = Some(node.clone());
        let comp =
            fakes::imp::component::ComponentService::new(comp_cfg.clone(), &cfg, dir.clone());
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
