use super::*;
use crate::definition::{Action, ActionKind, ExecutionMode, NoopSpec, Pipeline, Stage};
use crate::exception::Failure;
use crate::machine::{Effect, Event, apply};
use crate::name::Name;

fn pipeline() -> Pipeline {
    let action = |name: &str| Action {
        name: Name::parse(name).unwrap(),
        run_order: 1,
        kind: ActionKind::Noop(NoopSpec { fail_first: 0, fail_with: ExceptionType::ActionFailed, sleep_ms: 0, retry_after_seconds: None }),
        retry_policies: vec![],
        timeout_seconds: None,
        dependency: None,
        on_exhausted: Default::default(),
        concurrency: None,
    };
    let stage = |name: &str, actions| Stage { name: Name::parse(name).unwrap(), on_failure: None, actions };
    Pipeline {
        name: Name::parse("p").unwrap(),
        execution_mode: ExecutionMode::Parallel,
        max_concurrent_executions: 10,
        stages: vec![stage("Build", vec![action("A"), action("B")]), stage("Ship", vec![action("C")])],
        dead_letter_queue: None,
        retention_days: None,
        dependencies: Vec::new(),
    }
}

fn t(ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(ms)
}

/// An execution whose Build stage failed at `at`: action A with `a_type`, B succeeded.
fn failed_in_build(a_type: &str, at: i64) -> ExecutionState {
    let p = pipeline();
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let fx = apply(&p, &mut s, Event::Start, t(0)).unwrap();
    let ids: Vec<_> = fx.iter().filter_map(|e| if let Effect::StartAttempt(id) = e { Some(*id) } else { None }).collect();
    let failure = Failure::new(ExceptionType::parse(a_type).unwrap(), "boom");
    apply(&p, &mut s, Event::AttemptSucceeded { id: ids[1], output: None }, t(at)).unwrap();
    apply(&p, &mut s, Event::AttemptFailed { id: ids[0], failure }, t(at)).unwrap();
    assert_eq!(s.stages[0].status, StageStatus::Failed);
    s
}

fn filter(exception_type: Option<&str>, failed_since: Option<i64>) -> BulkFilter {
    BulkFilter { exception_type: exception_type.map(|x| ExceptionType::parse(x).unwrap()), failed_since: failed_since.map(t) }
}

#[test]
fn matches_only_executions_failed_in_the_stage() {
    let s = failed_in_build("Card.DECLINED", 100);
    assert!(filter(None, None).matches(&s, 0));
    assert!(!filter(None, None).matches(&s, 1), "Ship never ran");
    assert!(!filter(None, None).matches(&s, 7), "no such stage");
    let p = pipeline();
    let mut running = ExecutionState::new(&p, "e2", t(0));
    apply(&p, &mut running, Event::Start, t(0)).unwrap();
    assert!(!filter(None, None).matches(&running, 0), "in progress is not failed");
}

#[test]
fn exception_type_is_that_of_a_failed_action_of_the_stage() {
    let s = failed_in_build("Card.DECLINED", 100);
    assert!(filter(Some("Card.DECLINED"), None).matches(&s, 0));
    assert!(!filter(Some("Action.FAILED"), None).matches(&s, 0));
    let custom = failed_in_build("Payments.DECLINED", 100);
    assert!(filter(Some("Payments.DECLINED"), None).matches(&custom, 0));
    assert!(!filter(Some("Card.DECLINED"), None).matches(&custom, 0));
}

#[test]
fn since_is_when_the_execution_failed() {
    let s = failed_in_build("Card.DECLINED", 5_000);
    assert!(filter(None, Some(5_000)).matches(&s, 0), "at the bound");
    assert!(filter(None, Some(1_000)).matches(&s, 0));
    assert!(!filter(None, Some(5_001)).matches(&s, 0), "failed before the window");
}

#[test]
fn max_is_bounded() {
    assert_eq!(max_executions(None), Ok(MAX_BULK_RETRY_EXECUTIONS));
    assert_eq!(max_executions(Some(5)), Ok(5));
    assert!(max_executions(Some(0)).unwrap_err().contains("from 1 to 10000"));
    assert!(max_executions(Some(MAX_BULK_RETRY_EXECUTIONS + 1)).is_err());
}

#[test]
fn rate_is_bounded() {
    assert_eq!(BulkRate::new(20.0).unwrap().interval_ms(), 50);
    assert_eq!(BulkRate::new(0.5).unwrap().interval_ms(), 2000);
    assert_eq!(BulkRate::new(MAX_BULK_RETRY_RATE_PER_S).unwrap().interval_ms(), 1);
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, MAX_BULK_RETRY_RATE_PER_S + 1.0] {
        assert!(BulkRate::new(bad).is_err(), "{bad}");
    }
}

#[test]
fn pace_spaces_starts_and_never_bursts_after_a_stall() {
    let mut pace = Pace::new(BulkRate::new(10.0).unwrap());
    assert_eq!(pace.take_slot(t(1_000)), t(1_000), "the first starts at once");
    assert_eq!(pace.take_slot(t(1_000)), t(1_100));
    assert_eq!(pace.take_slot(t(1_050)), t(1_200), "asked early: waits for its slot");
    // A stall of two seconds: the next starts now, the one after an interval later.
    assert_eq!(pace.take_slot(t(3_200)), t(3_200));
    assert_eq!(pace.take_slot(t(3_200)), t(3_300));
}

#[test]
fn pace_over_many_starts_keeps_the_rate() {
    let mut pace = Pace::new(BulkRate::new(20.0).unwrap());
    let slots: Vec<_> = (0..100).map(|_| pace.take_slot(t(0))).collect();
    assert_eq!(slots.last(), Some(&t(99 * 50)));
    assert!(slots.windows(2).all(|w| w[1].ms_since(w[0]) == 50));
}

#[test]
fn counts_add_up() {
    let mut c = BulkCounts { matched: 4, ..Default::default() };
    for o in [BulkOutcome::Retried, BulkOutcome::Skipped, BulkOutcome::Retried, BulkOutcome::Failed] {
        c.record(o);
    }
    assert_eq!(c, BulkCounts { matched: 4, processed: 4, retried: 2, skipped: 1, failed: 1 });
    for o in [BulkOutcome::Retried, BulkOutcome::Skipped, BulkOutcome::Failed] {
        assert_eq!(BulkOutcome::parse(o.as_str()), Some(o));
    }
    assert_eq!(BulkOutcome::parse("nope"), None);
}

#[test]
fn a_later_execution_counts_as_failed_unsettled_or_settled() {
    let failed = failed_in_build("Card.DECLINED", 100);
    assert_eq!(later_stage(&failed, Some(0)), LaterStage::Failed);
    assert_eq!(later_stage(&failed, Some(1)), LaterStage::Settled, "finished: Ship can no longer fail");
    assert_eq!(later_stage(&failed, None), LaterStage::Settled, "its version has no such stage");
    let p = pipeline();
    let mut running = ExecutionState::new(&p, "e2", t(0));
    apply(&p, &mut running, Event::Start, t(0)).unwrap();
    assert_eq!(later_stage(&running, Some(0)), LaterStage::Unsettled, "it may still fail Build");
    assert_eq!(later_stage(&running, Some(1)), LaterStage::Unsettled, "or Ship");
}
