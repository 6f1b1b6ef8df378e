//! `junit.xml`: the run as one JUnit test suite, so CI test views list every check and tell a
//! user how to rerun a failure.

use crate::error::ReportError;
use crate::record::{CheckResult, RunRecord, Status};
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use std::time::Duration;

/// Name of the extra test case that fails when the run itself did not finish.
const RUN_CASE: &str = "run";

/// Renders the run as JUnit XML: one `<testsuite>` named after the scenario, one `<testcase>`
/// per check (failure message = the check's detail) and a `run` test case that fails when the
/// run could not finish (`outcome.failure`). Seed, trace digest and the reproduce command are
/// suite properties and system-out, and every failure's text ends with the reproduce command.
pub fn junit(r: &RunRecord) -> Result<String, ReportError> {
    let mut suite = TestSuite::new(&r.scenario);
    suite.add_properties(properties(r));
    suite.set_system_out(format!("seed: {}\nreproduce: {}\n", r.seed, r.reproduce));
    if let Ok(wall) = Duration::try_from_secs_f64(r.metrics.wall_time_s) {
        suite.set_time(wall);
    }
    suite.add_test_cases(r.checks.iter().map(|c| check_case(r, c)));
    suite.add_test_case(run_case(r));
    let mut report = Report::new("hmsim");
    report.add_test_suite(suite);
    Ok(report.to_string()?)
}

fn properties(r: &RunRecord) -> Vec<Property> {
    let commit = r.git_commit.as_deref().unwrap_or("unknown");
    [
        ("seed", r.seed.to_string()),
        ("reproduce", r.reproduce.clone()),
        ("trace_digest", r.trace_digest.clone()),
        ("scenario_file", r.scenario_file.clone()),
        ("git_commit", commit.to_string()),
        ("hmsim_version", r.hmsim_version.clone()),
    ]
    .into_iter()
    .map(|(name, value)| Property::new(name, value))
    .collect()
}

fn check_case(r: &RunRecord, check: &CheckResult) -> TestCase {
    let status = match check.status {
        Status::Pass => TestCaseStatus::success(),
        Status::Fail => failure(r, &check.detail),
    };
    let mut case = TestCase::new(&check.name, status);
    case.set_classname(&r.scenario);
    case
}

fn run_case(r: &RunRecord) -> TestCase {
    let status = match &r.outcome.failure {
        None => TestCaseStatus::success(),
        Some(why) => failure(r, why),
    };
    let mut case = TestCase::new(RUN_CASE, status);
    case.set_classname(&r.scenario);
    case
}

/// A failure whose message is the one-line reason and whose body says how to rerun it, since
/// many CI views show only the failure text.
fn failure(r: &RunRecord, message: &str) -> TestCaseStatus {
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
    status.set_message(message);
    status.set_description(format!(
        "{message}\n\nseed: {}\nreproduce: {}",
        r.seed, r.reproduce
    ));
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(r: &RunRecord) -> Report {
        Report::deserialize_from_str(&junit(r).unwrap()).unwrap()
    }

    #[test]
    fn one_suite_with_one_case_per_check_plus_run() {
        let r = RunRecord::example();
        let xml = junit(&r).unwrap();
        assert_eq!(
            xml.matches("<testcase").count(),
            r.checks.len() + 1,
            "{xml}"
        );
        assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
        let report = parsed(&r);
        assert_eq!(report.test_suites.len(), 1);
        let suite = &report.test_suites[0];
        assert_eq!(suite.name.as_str(), "failover-node-crash");
        assert_eq!((suite.tests, suite.failures), (5, 1));
        let names: Vec<&str> = suite.test_cases.iter().map(|c| c.name.as_str()).collect();
        let expected = [
            "no_message_loss",
            "no_duplicates",
            "per_conversation_order",
            "session_liveness",
        ];
        assert_eq!(names, [&expected[..], &["run"]].concat());
    }

    #[test]
    fn failing_check_carries_detail_and_reproduce_command() {
        let r = RunRecord::example();
        let report = parsed(&r);
        let case = &report.test_suites[0].test_cases[3];
        let TestCaseStatus::NonSuccess {
            message,
            description,
            ..
        } = &case.status
        else {
            panic!("session_liveness must fail: {:?}", case.status);
        };
        assert_eq!(message.as_ref().unwrap().as_str(), r.checks[3].detail);
        assert!(
            description
                .as_ref()
                .unwrap()
                .as_str()
                .ends_with(&r.reproduce)
        );
    }

    #[test]
    fn seed_and_reproduce_are_properties_and_system_out() {
        let r = RunRecord::example();
        let suite = parsed(&r).test_suites.remove(0);
        let prop = |name: &str| {
            let p = suite
                .properties
                .iter()
                .find(|p| p.name.as_str() == name)
                .unwrap();
            p.value.as_str().to_string()
        };
        assert_eq!(prop("seed"), "42");
        assert_eq!(prop("reproduce"), r.reproduce);
        assert_eq!(prop("trace_digest"), r.trace_digest);
        let out = suite.system_out.unwrap();
        assert!(out.as_str().contains("reproduce: hmsim run"), "{out:?}");
    }

    #[test]
    fn run_case_fails_when_the_run_did_not_finish() {
        let mut r = RunRecord::example();
        r.outcome.failure = Some("liveness: 3 users still without a session".into());
        let suite = parsed(&r).test_suites.remove(0);
        assert_eq!(suite.failures, 2);
        let run = suite.test_cases.last().unwrap();
        assert_eq!(run.name.as_str(), "run");
        assert!(matches!(run.status, TestCaseStatus::NonSuccess { .. }));
    }

    #[test]
    fn markup_in_details_is_escaped_in_xml() {
        let mut r = RunRecord::example();
        r.checks[3].detail = "<presence type=\"unavailable\"/> & more".into();
        let xml = junit(&r).unwrap();
        assert!(!xml.contains("<presence"), "{xml}");
        let case = &parsed(&r).test_suites[0].test_cases[3];
        let TestCaseStatus::NonSuccess { message, .. } = &case.status else {
            panic!()
        };
        assert_eq!(message.as_ref().unwrap().as_str(), r.checks[3].detail);
    }
}
