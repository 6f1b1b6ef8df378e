//! The `trace.jsonl` text of a history: for debugging a failing seed, and scanned by the
//! `no_secrets_in_logs` check as `hmsim run --trace` would write it.

use crate::history::History;

/// The lines of `trace.jsonl`: every session transition, send and delivery, one JSON object a
/// line, in time order per kind.
pub fn trace_text(out: &History) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    for e in out.observer.sessions() {
        let v = serde_json::json!({"t": e.at.as_secs_f64(), "kind": "session", "user": e.user,
            "device": e.device, "up": e.up, "reason": e.reason});
        let _ = writeln!(text, "{v}");
    }
    for (at, ev) in out.observer.webex_presence_log() {
        let v = serde_json::json!({"t": at.as_secs_f64(), "kind": "webex_presence_seen", "viewer": ev.user,
            "from": ev.from, "available": ev.available, "show": ev.show, "status": ev.status});
        let _ = writeln!(text, "{v}");
    }
    for (user, ev) in &out.bridge {
        for (at, up) in ev {
            let v = serde_json::json!({"t": at.as_secs_f64(), "kind": "connector_session", "user": user, "up": up});
            let _ = writeln!(text, "{v}");
        }
    }
    out.observer.with_messages(|msgs| {
        for (id, m) in msgs {
            let v = serde_json::json!({"t": m.sent_at.as_secs_f64(), "kind": "sent", "id": id,
                "from": &*m.from, "to": &*m.to});
            let _ = writeln!(text, "{v}");
            for d in &m.deliveries {
                let (device, at, delayed) = (&*d.device, d.at, d.delayed);
                let v = serde_json::json!({"t": at.as_secs_f64(), "kind": "delivered", "id": id,
                    "device": device, "delayed": delayed});
                let _ = writeln!(text, "{v}");
            }
        }
    });
    text
}
