//! The `no_plaintext_at_cloud` check: the cloud's body tap scanned every request body for a
//! message tag (`[[id]]`), which only plaintext can contain (JWE compact is base64url and dots).

use crate::checks::{Check, Entry, Needs, Verdict, boxed};
use crate::history::{History, LeakLog};
use crate::scenario::Scenario;

/// The `no_plaintext_at_cloud` verdict on a leak log.
pub fn check(log: &LeakLog) -> (reports::Status, String) {
    if log.scanned == 0 {
        return (
            reports::Status::Fail,
            "the cloud received no body: the check exercised nothing".into(),
        );
    }
    if log.leaks_total == 0 {
        return (
            reports::Status::Pass,
            format!(
                "{} bodies received by the cloud, none with plaintext",
                log.scanned
            ),
        );
    }
    (
        reports::Status::Fail,
        format!(
            "{} of {} bodies carried plaintext (e.g. {})",
            log.leaks_total,
            log.scanned,
            log.leaks.join("; ")
        ),
    )
}

/// The `no_plaintext_at_cloud` check (no parameters).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoPlaintextAtCloud {}

/// How the registry reads it.
pub const ENTRY: Entry = Entry {
    name: "no_plaintext_at_cloud",
    bare: true,
    read: boxed::<NoPlaintextAtCloud>,
};

impl Check for NoPlaintextAtCloud {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn needs(&self) -> Needs {
        Needs::CLOUD
    }
    fn judge(&self, _s: &Scenario, h: &History) -> Verdict {
        match &h.plaintext {
            Some(log) => check(log),
            None => (reports::Status::Fail, "the run has no cloud".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::connector::ADMIN_TOKEN;
    use crate::world::hybrid::plaintext_tap;
    use connector::proto::http::Method;
    use fakes::cloud::api::Request;
    use fakes::cloud::{Cloud, CloudConfig};
    use serde_json::json;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    #[test]
    fn a_planted_plaintext_body_fails_the_check() {
        let cfg = CloudConfig {
            domain: "example.com".into(),
            admin_token: ADMIN_TOKEN.into(),
            kms_host: "kms".into(),
        };
        let mut cloud = Cloud::new(cfg, rand_chacha::rand_core::SeedableRng::seed_from_u64(1));
        let log: Rc<RefCell<LeakLog>> = Rc::default();
        cloud.set_body_tap(plaintext_tap(log.clone()));
        let encrypted =
            json!({"verb": "post", "encrypted_text": "eyJhbGciOiJkaXIifQ..aXY.Y3Q.dGFn"});
        let planted = json!({"verb": "post", "encrypted_text": "hello [[alice.webex.0.1]]"});
        for body in [encrypted, planted] {
            let req = Request {
                method: Method::Post,
                path: "/v1/spaces/s/activities".into(),
                token: None,
                body: body.to_string().into_bytes(),
            };
            cloud.handle_request(Duration::ZERO, req);
        }
        let (status, detail) = check(&log.borrow());
        assert_eq!(status, reports::Status::Fail);
        assert!(
            detail.contains("1 of 2 bodies carried plaintext"),
            "{detail}"
        );
        assert!(detail.contains("[[alice.webex.0.1]]"), "{detail}");
        let clean = LeakLog {
            scanned: 5,
            ..Default::default()
        };
        assert_eq!(check(&clean).0, reports::Status::Pass);
    }
}
