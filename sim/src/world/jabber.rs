//! The Jabber client farms: one host per farm, one task per device, each logging in to its
//! home node (then its PRG peer) and running its chat, group chat and presence plans.

use crate::history::observer::Observer;
use crate::plan::Plan;
use crate::plan::rng::RngFactory;
use crate::plan::topology::{self, UserSpec};
use crate::plan::workload::PresenceConfig;
use crate::scenario::KeepaliveKind;
use crate::scenario::Scenario;
use connector::io::net::TurmoilNet;
use connector::proto::xmpp::Jid;
use fakes::clients::jabber::{
    ChatPlan, DeviceSpec, GroupPlan, Keepalive, PresencePlan, Relogin, run_device,
};
use fakes::observe::Recorder;
use rand::RngExt as _;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// Logins are spread uniformly over this window at start-up: thousands of clients connecting
/// in one tick overflow turmoil's listen backlog and cost quadratically (turmoil keeps every pending connection).
pub const LOGIN_SPREAD: Duration = Duration::from_secs(20);

/// The scenario's keepalive as the devices run it.
pub fn keepalive(s: &Scenario) -> Keepalive {
    Keepalive {
        kind: match s.keepalive.kind {
            KeepaliveKind::Ping => fakes::clients::jabber::KeepaliveKind::Ping,
            KeepaliveKind::Whitespace => fakes::clients::jabber::KeepaliveKind::Whitespace,
        },
        interval: s.keepalive.interval.0,
    }
}

/// Adds the Jabber client farms.
pub fn add_farms(sim: &mut turmoil::Sim<'_>, s: &Scenario, plan: &Plan, observer: &Rc<Observer>) {
    let (rngs, users) = (&plan.rngs, &plan.users);
    let plans = Rc::new(plan.chat.clone());
    let groups = Rc::new(plan.groups.clone());
    let presence = crate::plan::workload::presence_config(s);
    let keepalive = keepalive(s);
    for k in 1..=s.topology.client_farms.jabber {
        let host = topology::jabber_farm(k);
        // Each user with its login servers (home node, then its PRG peer) and its cluster's
        // client re-login window (spec 65).
        let mine: Rc<Vec<Login>> = Rc::new(
            users
                .iter()
                .filter(|u| u.jabber && u.farm == k)
                .map(|u| {
                    let c = &s.topology.imp_clusters[u.cluster];
                    let window = crate::plan::imp::relogin_window(c);
                    (u.clone(), (crate::plan::imp::login_servers(s, u), window))
                })
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
                        keepalive,
                    };
                    spawn_devices(u, server, &dev);
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
}

/// A user, its login servers and its cluster's client re-login window.
type Login = (UserSpec, (Vec<String>, (Duration, Duration)));

/// What every device of one farm incarnation shares.
struct Devices<'a> {
    inc: u32,
    host: &'a str,
    rngs: &'a RngFactory,
    plans: &'a BTreeMap<u32, ChatPlan>,
    groups: &'a BTreeMap<u32, GroupPlan>,
    presence: PresenceConfig,
    recorder: &'a Rc<dyn Recorder>,
    keepalive: Keepalive,
}

fn spawn_devices(
    u: &UserSpec,
    (servers, relogin_window): &(Vec<String>, (Duration, Duration)),
    dev: &Devices<'_>,
) {
    let Devices {
        inc,
        host,
        rngs,
        plans,
        groups,
        presence,
        recorder,
        keepalive,
    } = *dev;
    let jid = Jid::parse(&u.jid).expect("population JIDs are valid");
    for d in 1..=u.devices {
        let resource = format!("jabber-{d}");
        let mut rng = rngs.named(&format!("jabber/{}/{resource}/{inc}", u.userid));
        let relogin = (servers.len() > 1).then(|| Relogin {
            lower: relogin_window.0,
            upper: relogin_window.1,
            rng: rngs.named(&format!("jabber-relogin/{}/{resource}/{inc}", u.userid)),
        });
        let delay = LOGIN_SPREAD.mul_f64(rng.random_range(0.0..1.0));
        let spec = Box::new(DeviceSpec {
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
            keepalive,
            relogin,
        });
        tokio::task::spawn_local(device_task(spec, delay));
    }
}

/// A device's task: it waits its login delay, then runs.
async fn device_task(spec: Box<DeviceSpec<TurmoilNet>>, delay: Duration) {
    tokio::time::sleep(delay).await;
    run_device(spec).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The most a device's task may take (issue 16, memory per user: one task a Jabber device;
    /// 6.4 KB when the spec was passed by value and kept three times), bytes.
    const DEVICE_TASK_BYTES_MAX: usize = 3 * 1024;

    /// A device's task keeps one copy of its spec, boxed, at most
    /// [`DEVICE_TASK_BYTES_MAX`] in all.
    #[test]
    fn a_device_task_keeps_its_spec_once() {
        let spec = Box::new(DeviceSpec {
            net: TurmoilNet,
            host: "jabber-1".into(),
            jid: Jid::parse("a@example.com").expect("a JID"),
            password: "pw".into(),
            resource: "jabber-1.0".into(),
            server: "imp-a-1".into(),
            servers: vec!["imp-a-2".into()],
            plan: None,
            rng: RngFactory::new(1).named("device"),
            recorder: Rc::new(Observer::new()),
            presence: None,
            group: None,
            keepalive: Keepalive::default(),
            relogin: None,
        });
        let task = device_task(spec, Duration::ZERO);
        let bytes = std::mem::size_of_val(&task);
        assert!(bytes <= DEVICE_TASK_BYTES_MAX, "{bytes} bytes");
    }
}
