//! A scenario written as the YAML a user writes: workloads and checks as single-key mappings
//! (`- chat: { ... }`, `- liveness: { within: 5m }`, `- no_message_loss`), no `null` fields,
//! durations, shares and rates in their written forms. Reading it back gives the same
//! scenario, so `hmsim run` replays a generated or shrunk file exactly.

use crate::scenario::{CheckSpec, Scenario, Workload};
use serde_yaml::{Mapping, Value};

/// The scenario as YAML text, after `header` (comment lines, each written with `# `).
pub fn to_yaml(s: &Scenario, header: &[String]) -> String {
    let mut v = serde_yaml::to_value(s).expect("a scenario serializes");
    if let Value::Mapping(m) = &mut v {
        m.insert(
            "workloads".into(),
            Value::Sequence(s.workloads.iter().map(workload).collect()),
        );
        m.insert(
            "checks".into(),
            Value::Sequence(s.checks.iter().map(check).collect()),
        );
    }
    strip_nulls(&mut v);
    let body = serde_yaml::to_string(&v).expect("a value serializes");
    let mut out = String::new();
    for line in header {
        for l in line.lines() {
            out.push_str(if l.is_empty() { "#" } else { "# " });
            out.push_str(l);
            out.push('\n');
        }
    }
    out.push_str(&body);
    out
}

fn single(name: &str, v: Value) -> Value {
    let mut m = Mapping::new();
    m.insert(name.into(), v);
    Value::Mapping(m)
}

fn workload(w: &Workload) -> Value {
    let (name, v) = match w {
        Workload::Chat(c) => ("chat", serde_yaml::to_value(c)),
        Workload::Presence(p) => ("presence", serde_yaml::to_value(p)),
        Workload::GroupChat(g) => ("group_chat", serde_yaml::to_value(g)),
    };
    single(name, v.expect("a workload serializes"))
}

fn check(c: &CheckSpec) -> Value {
    if c.params.is_null() {
        Value::String(c.name.clone())
    } else {
        single(&c.name, c.params.clone())
    }
}

/// Removes `key: null` entries (unset options) at every depth; a `null` check parameter never
/// reaches here (a bare check is written as its name).
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Mapping(m) => {
            m.retain(|_, x| !x.is_null());
            for (_, x) in m.iter_mut() {
                strip_nulls(x);
            }
        }
        Value::Sequence(s) => s.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}
