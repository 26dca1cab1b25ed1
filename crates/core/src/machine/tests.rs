use super::*;
use crate::definition::{Action, ActionKind, ExecutionMode, NoopSpec, Stage, StageAutoRetry};
use crate::name::Name;
use crate::policy::{GiveUpReason, RetryPolicy, RetryPolicySpec};

fn noop() -> ActionKind {
    ActionKind::Noop(NoopSpec { fail_first: 0, fail_with: ExceptionType::ActionFailed, sleep_ms: 0, retry_after_seconds: None })
}

fn action(name: &str, run_order: u32, policies: Vec<RetryPolicy>) -> Action {
    Action {
        name: Name::parse(name).unwrap(),
        run_order,
        kind: noop(),
        retry_policies: policies,
        timeout_seconds: None,
        dependency: None,
        on_exhausted: Default::default(),
        concurrency: None,
    }
}

fn stage(name: &str, actions: Vec<Action>) -> Stage {
    Stage { name: Name::parse(name).unwrap(), on_failure: None, actions }
}

fn pipeline(stages: Vec<Stage>) -> Pipeline {
    Pipeline {
        name: Name::parse("p").unwrap(),
        execution_mode: ExecutionMode::Parallel,
        max_concurrent_executions: 10,
        stages,
        dead_letter_queue: None,
        retention_days: None,
        dependencies: Vec::new(),
    }
}

fn retry(types: &[&str], interval: f64, max: u32) -> RetryPolicy {
    RetryPolicy::new(&RetryPolicySpec {
        exception_types: types.iter().map(|s| s.to_string()).collect(),
        interval_seconds: Some(interval),
        backoff_rate: Some(2.0),
        max_attempts: Some(f64::from(max)),
        ..Default::default()
    })
    .unwrap()
}

fn t(ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(ms)
}

fn started(effects: &[Effect]) -> Vec<AttemptId> {
    effects.iter().filter_map(|e| if let Effect::StartAttempt(id) = e { Some(*id) } else { None }).collect()
}

fn at(stage: usize, action: usize) -> ActionAt {
    ActionAt { stage, action }
}

fn failed(t: ExceptionType) -> Failure {
    Failure::new(t, "boom")
}

#[test]
fn run_orders_and_stages_advance_in_order() {
    let p = pipeline(vec![
        stage("Build", vec![action("A", 1, vec![]), action("B", 1, vec![]), action("C", 2, vec![])]),
        stage("Deploy", vec![action("D", 1, vec![])]),
    ]);
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let fx = apply(&p, &mut s, Event::Start, t(0)).unwrap();
    let ids = started(&fx);
    assert_eq!(ids.iter().map(|i| i.at).collect::<Vec<_>>(), vec![at(0, 0), at(0, 1)]);
    // A succeeds: C must wait for B.
    let fx = apply(&p, &mut s, Event::AttemptSucceeded { id: ids[0], output: None }, t(1)).unwrap();
    assert!(started(&fx).is_empty());
    let fx = apply(&p, &mut s, Event::AttemptSucceeded { id: ids[1], output: None }, t(2)).unwrap();
    let c = started(&fx);
    assert_eq!(c[0].at, at(0, 2));
    let fx = apply(&p, &mut s, Event::AttemptSucceeded { id: c[0], output: None }, t(3)).unwrap();
    let d = started(&fx);
    assert_eq!(d[0].at, at(1, 0));
    assert_eq!(s.stages[0].status, StageStatus::Succeeded);
    let fx = apply(&p, &mut s, Event::AttemptSucceeded { id: d[0], output: Some(serde_json::json!({"ok": 1})) }, t(4)).unwrap();
    assert!(fx.contains(&Effect::Finished(ExecutionStatus::Succeeded)));
    assert_eq!(s.status, ExecutionStatus::Succeeded);
}

#[test]
fn failed_attempt_with_delay_sets_timer_and_fires_no_earlier() {
    let p = pipeline(vec![stage("S", vec![action("A", 1, vec![retry(&["Action.FAILED"], 2.0, 3)])])]);
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let id = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap())[0];
    let fx = apply(&p, &mut s, Event::AttemptFailed { id, failure: failed(ExceptionType::ActionFailed) }, t(100)).unwrap();
    assert!(fx.contains(&Effect::SetTimer { at: at(0, 0), due_at: t(2100) }));
    assert_eq!(s.action(at(0, 0)).status, ActionStatus::WaitingRetry);
    let early = apply(&p, &mut s, Event::TimerFired { at: at(0, 0) }, t(2099));
    assert_eq!(early, Err(Rejection::TimerEarly { at: at(0, 0), due: t(2100) }));
    let fx = apply(&p, &mut s, Event::TimerFired { at: at(0, 0) }, t(2100)).unwrap();
    assert_eq!(started(&fx), vec![AttemptId { at: at(0, 0), series: 1, attempt: 2 }]);
    assert!(fx.contains(&Effect::ClearTimer { at: at(0, 0) }));
}

#[test]
fn zero_delay_retry_starts_in_the_same_transition() {
    let p = pipeline(vec![stage("S", vec![action("A", 1, vec![retry(&["Step.SERVICE_FAULT"], 0.0, 1)])])]);
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let id = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap())[0];
    let fx = apply(&p, &mut s, Event::AttemptFailed { id, failure: failed(ExceptionType::ServiceFault) }, t(5)).unwrap();
    assert_eq!(started(&fx), vec![AttemptId { at: at(0, 0), series: 1, attempt: 2 }]);
    assert!(!fx.iter().any(|e| matches!(e, Effect::SetTimer { .. })));
}

#[test]
fn give_up_fails_the_execution_after_the_group_settles() {
    let p = pipeline(vec![stage("S", vec![action("A", 1, vec![]), action("B", 1, vec![])]), stage("T", vec![action("C", 1, vec![])])]);
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let ids = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap());
    let fx = apply(&p, &mut s, Event::AttemptFailed { id: ids[0], failure: failed(ExceptionType::ActionFailed) }, t(1)).unwrap();
    assert!(!fx.iter().any(|e| matches!(e, Effect::Finished(_))), "B still running");
    let rec = fx.iter().find_map(|e| if let Effect::Record(r) = e { Some(r) } else { None }).unwrap();
    assert_eq!(rec.decision, Some(Decision::GiveUp { policy: None, reason: GiveUpReason::NoMatchingPolicy }));
    let fx = apply(&p, &mut s, Event::AttemptSucceeded { id: ids[1], output: None }, t(2)).unwrap();
    assert!(fx.contains(&Effect::Finished(ExecutionStatus::Failed)));
    assert_eq!(s.stages[0].status, StageStatus::Failed);
    assert_eq!(s.stages[1].status, StageStatus::NotStarted);
}

#[test]
fn stale_and_duplicate_events_are_rejected_without_change() {
    let p = pipeline(vec![stage("S", vec![action("A", 1, vec![])])]);
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let id = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap())[0];
    let before = s.clone();
    let wrong = AttemptId { attempt: 2, ..id };
    assert_eq!(apply(&p, &mut s, Event::AttemptSucceeded { id: wrong, output: None }, t(1)), Err(Rejection::Stale(wrong)));
    assert_eq!(s, before);
    apply(&p, &mut s, Event::AttemptSucceeded { id, output: None }, t(1)).unwrap();
    assert!(apply(&p, &mut s, Event::AttemptSucceeded { id, output: None }, t(2)).is_err());
    assert_eq!(apply(&p, &mut s, Event::Start, t(3)), Err(Rejection::Finished(ExecutionStatus::Succeeded)));
}

#[test]
fn recover_fails_in_flight_attempts_as_service_fault_and_retries_them() {
    let p = pipeline(vec![stage("S", vec![action("A", 1, vec![]), action("B", 1, vec![])])]);
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let ids = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap());
    apply(&p, &mut s, Event::AttemptSucceeded { id: ids[0], output: None }, t(1)).unwrap();
    // The engine dies; B was in flight. After restart:
    let fx = apply(&p, &mut s, Event::Recover, t(10_000)).unwrap();
    let rec = fx.iter().find_map(|e| if let Effect::Record(r) = e { Some(r.clone()) } else { None }).unwrap();
    assert_eq!(rec.id.at, at(0, 1));
    assert_eq!(rec.failure.as_ref().unwrap().exception_type, ExceptionType::ServiceFault);
    assert!(matches!(rec.decision, Some(Decision::Retry(_))), "built-in default retries SERVICE_FAULT");
    // A (succeeded) is never started again.
    assert!(started(&fx).iter().all(|i| i.at != at(0, 0)));
    assert_eq!(s.action(at(0, 0)).status, ActionStatus::Succeeded);
}

#[test]
fn auto_stage_retry_restarts_failed_actions_with_fresh_counters() {
    let mut st = stage("S", vec![action("A", 1, vec![retry(&["Action.FAILED"], 0.0, 1)]), action("B", 1, vec![])]);
    st.on_failure = Some(StageAutoRetry { retry_mode: RetryMode::FailedActions, max_retries: 1 });
    let p = pipeline(vec![st]);
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let ids = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap());
    apply(&p, &mut s, Event::AttemptSucceeded { id: ids[1], output: None }, t(1)).unwrap();
    let fx = apply(&p, &mut s, Event::AttemptFailed { id: ids[0], failure: failed(ExceptionType::ActionFailed) }, t(2)).unwrap();
    let retry_id = started(&fx)[0];
    assert_eq!(retry_id.attempt, 2);
    let fx = apply(&p, &mut s, Event::AttemptFailed { id: retry_id, failure: failed(ExceptionType::ActionFailed) }, t(3)).unwrap();
    // Policy exhausted → stage auto-retry: new series 2 of A only; B untouched.
    assert_eq!(started(&fx), vec![AttemptId { at: at(0, 0), series: 2, attempt: 1 }]);
    assert_eq!(s.action(at(0, 0)).series_trigger, Trigger::StageAutoRetry);
    assert_eq!(s.action(at(0, 0)).retries_by_policy, vec![0, 0]);
    assert_eq!(s.action(at(0, 1)).status, ActionStatus::Succeeded);
    // Series 2 fails twice too → no auto-retries left → execution fails.
    let id2 = started(&fx)[0];
    let fx = apply(&p, &mut s, Event::AttemptFailed { id: id2, failure: failed(ExceptionType::ActionFailed) }, t(4)).unwrap();
    let id3 = started(&fx)[0];
    let fx = apply(&p, &mut s, Event::AttemptFailed { id: id3, failure: failed(ExceptionType::ActionFailed) }, t(5)).unwrap();
    assert!(fx.contains(&Effect::Finished(ExecutionStatus::Failed)));
}

#[test]
fn manual_retry_of_failed_stage_reopens_the_execution() {
    let p = pipeline(vec![stage("S", vec![action("A", 1, vec![]), action("B", 2, vec![])])]);
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let id = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap())[0];
    apply(&p, &mut s, Event::AttemptFailed { id, failure: failed(ExceptionType::ActionFailed) }, t(1)).unwrap();
    assert_eq!(s.status, ExecutionStatus::Failed);
    let fx = apply(&p, &mut s, Event::RetryStage { stage: 0, mode: RetryMode::FailedActions, trigger: Trigger::Manual, input: None }, t(2))
        .unwrap();
    let id = started(&fx)[0];
    assert_eq!((id.series, id.attempt), (2, 1));
    assert_eq!(s.status, ExecutionStatus::InProgress);
    let fx = apply(&p, &mut s, Event::AttemptSucceeded { id, output: None }, t(3)).unwrap();
    assert_eq!(started(&fx)[0].at, at(0, 1), "continues with the next group");
    // Retrying a stage without failed actions is refused.
    assert!(
        apply(&p, &mut s, Event::RetryStage { stage: 0, mode: RetryMode::AllActions, trigger: Trigger::Manual, input: None }, t(4))
            .is_err()
    );
}

#[test]
fn state_round_trips_through_json() {
    let p = pipeline(vec![stage("S", vec![action("A", 1, vec![retry(&["*"], 1.0, 2)])])]);
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let id = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap())[0];
    apply(&p, &mut s, Event::AttemptFailed { id, failure: failed(ExceptionType::Custom("X".into())) }, t(1)).unwrap();
    let json = serde_json::to_string(&s).unwrap();
    let back: ExecutionState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
}

/// A stage with A (fails for good at once) and B (still running) in one group.
fn half_failed() -> (Pipeline, ExecutionState, AttemptId) {
    let p = pipeline(vec![stage("S", vec![action("A", 1, vec![]), action("B", 1, vec![])])]);
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let ids = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap());
    apply(&p, &mut s, Event::AttemptFailed { id: ids[0], failure: failed(ExceptionType::ActionFailed) }, t(1)).unwrap();
    (p, s, ids[1])
}

#[test]
fn failed_actions_retry_leaves_running_actions_alone_and_a_second_retry_conflicts() {
    let (p, mut s, b) = half_failed();
    assert_eq!(s.status, ExecutionStatus::InProgress, "B still runs");
    assert!(matches!(
        apply(&p, &mut s, Event::RetryStage { stage: 0, mode: RetryMode::AllActions, trigger: Trigger::Manual, input: None }, t(2)),
        Err(Rejection::NotRetryable(_))
    ));
    let fx = apply(&p, &mut s, Event::RetryStage { stage: 0, mode: RetryMode::FailedActions, trigger: Trigger::Manual, input: None }, t(2))
        .unwrap();
    let a2 = started(&fx);
    assert_eq!(a2, vec![AttemptId { at: at(0, 0), series: 2, attempt: 1 }]);
    assert_eq!(s.action(at(0, 1)).status, ActionStatus::Running, "B was not touched");
    assert!(s.stages[0].retry_in_progress);
    assert_eq!(s.stages[0].manual_retries_used, 1);
    assert_eq!(
        apply(&p, &mut s, Event::RetryStage { stage: 0, mode: RetryMode::FailedActions, trigger: Trigger::Manual, input: None }, t(3)),
        Err(Rejection::RetryInProgress)
    );
    apply(&p, &mut s, Event::AttemptSucceeded { id: b, output: None }, t(4)).unwrap();
    let fx = apply(&p, &mut s, Event::AttemptSucceeded { id: a2[0], output: None }, t(5)).unwrap();
    assert!(fx.contains(&Effect::Finished(ExecutionStatus::Succeeded)));
    assert!(!s.stages[0].retry_in_progress, "settled");
}

#[test]
fn stop_lets_running_attempts_finish_and_cancels_pending_retries() {
    let p = pipeline(vec![stage("S", vec![action("A", 1, vec![retry(&["Action.FAILED"], 60.0, 3)]), action("B", 1, vec![])])]);
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let ids = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap());
    apply(&p, &mut s, Event::AttemptFailed { id: ids[0], failure: failed(ExceptionType::ActionFailed) }, t(1)).unwrap();
    assert_eq!(s.action(at(0, 0)).status, ActionStatus::WaitingRetry);
    let fx = apply(&p, &mut s, Event::Stop { abandon: false, reason: "operator".into() }, t(2)).unwrap();
    assert!(fx.contains(&Effect::ClearTimer { at: at(0, 0) }));
    assert_eq!(s.status, ExecutionStatus::Stopping);
    assert_eq!(apply(&p, &mut s, Event::Stop { abandon: false, reason: String::new() }, t(3)), Err(Rejection::AlreadyStopping));
    let fx = apply(&p, &mut s, Event::AttemptFailed { id: ids[1], failure: failed(ExceptionType::ServiceFault) }, t(4)).unwrap();
    assert!(started(&fx).is_empty(), "no retry while stopping");
    assert!(fx.contains(&Effect::Finished(ExecutionStatus::Stopped)));
    assert!(matches!(
        apply(&p, &mut s, Event::RetryStage { stage: 0, mode: RetryMode::FailedActions, trigger: Trigger::Manual, input: None }, t(5)),
        Err(Rejection::NotRetryable(_))
    ));
}

#[test]
fn abandon_stops_at_once_and_late_results_are_stale() {
    let p = pipeline(vec![stage("S", vec![action("A", 1, vec![])])]);
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let id = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap())[0];
    let fx = apply(&p, &mut s, Event::Stop { abandon: true, reason: String::new() }, t(1)).unwrap();
    assert!(fx.contains(&Effect::Finished(ExecutionStatus::Stopped)));
    let rec = fx.iter().find_map(|e| if let Effect::Record(r) = e { Some(r) } else { None }).unwrap();
    assert_eq!(rec.failure.as_ref().unwrap().exception_type.as_str(), STOPPED_EXCEPTION_TYPE);
    assert_eq!(apply(&p, &mut s, Event::AttemptSucceeded { id, output: None }, t(2)), Err(Rejection::Finished(ExecutionStatus::Stopped)));
}

#[test]
fn release_unstarts_an_undispatched_attempt_without_counting_it() {
    let p = pipeline(vec![stage("S", vec![action("A", 1, vec![])])]);
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let id = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap())[0];
    let fx = apply(&p, &mut s, Event::Release { id }, t(5)).unwrap();
    assert_eq!(fx, vec![Effect::SetTimer { at: at(0, 0), due_at: t(5) }]);
    assert!(!fx.iter().any(|e| matches!(e, Effect::Record(_))), "nothing in the ledger");
    let fx = apply(&p, &mut s, Event::TimerFired { at: at(0, 0) }, t(6)).unwrap();
    assert_eq!(started(&fx), vec![id], "the same attempt runs after the restart");
    assert_eq!(s.action(at(0, 0)).total_attempts, 1);
}

#[test]
fn a_keyed_attempt_that_never_began_is_recovered_as_the_same_attempt() {
    use crate::concurrency::{Concurrency, KeyPath};
    let mut keyed = action("A", 1, vec![]);
    keyed.concurrency = Some(Concurrency::new(KeyPath::parse("$.input.tenant").unwrap(), 1).unwrap());
    let p = pipeline(vec![stage("S", vec![keyed, action("B", 1, vec![])])]);
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let ids = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap());
    assert_eq!((s.action(at(0, 0)).awaiting_key, s.action(at(0, 1)).awaiting_key), (true, false), "only a keyed attempt waits");
    // A crash while A waits for its key slot and B runs.
    let fx = apply(&p, &mut s, Event::Recover, t(5)).unwrap();
    let records: Vec<_> = fx.iter().filter_map(|e| if let Effect::Record(r) = e { Some(r) } else { None }).collect();
    assert_eq!(records.len(), 1, "only B is recorded as lost in flight: {fx:?}");
    assert_eq!(records[0].id, ids[1]);
    assert!(fx.contains(&Effect::SetTimer { at: at(0, 0), due_at: t(5) }), "A is due at once");
    let a = s.action(at(0, 0));
    assert_eq!((a.status, a.attempt, a.total_attempts, a.awaiting_key), (ActionStatus::WaitingRetry, 0, 0, false));
    let fx = apply(&p, &mut s, Event::TimerFired { at: at(0, 0) }, t(6)).unwrap();
    assert_eq!(started(&fx), vec![ids[0]], "the same attempt runs again");
    assert!(s.action(at(0, 0)).awaiting_key);
    // Once it began (committed before its action runs), a crash loses it in flight.
    apply(&p, &mut s, Event::AttemptBegan { id: ids[0], at: None }, t(7)).unwrap();
    assert_eq!(s.action(at(0, 0)).attempt_started_at, Some(t(6)), "it did not wait: its start stays");
    let fx = apply(&p, &mut s, Event::Recover, t(8)).unwrap();
    let rec = fx.iter().find_map(|e| if let Effect::Record(r) = e { Some(r) } else { None }).unwrap();
    assert_eq!((rec.id, rec.failure.as_ref().unwrap().exception_type.as_str()), (ids[0], "Step.SERVICE_FAULT"));
}

#[test]
fn a_begun_attempt_records_its_real_start_and_its_wait_does_not_count_for_expire_after_min() {
    let expire = RetryPolicy::new(&RetryPolicySpec {
        exception_types: vec!["Step.SERVICE_FAULT".into()],
        interval_seconds: Some(1.0),
        expire_after_min: Some(1.0),
        ..Default::default()
    })
    .unwrap();
    let p = pipeline(vec![stage("S", vec![action("A", 1, vec![expire])])]);
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let id = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap())[0];
    assert!(
        matches!(apply(&p, &mut s, Event::AttemptBegan { id, at: Some(t(0)) }, t(1)), Err(Rejection::Invalid(_))),
        "not after its start"
    );
    assert!(matches!(apply(&p, &mut s, Event::AttemptBegan { id, at: Some(t(9)) }, t(5)), Err(Rejection::Invalid(_))), "not after now");
    // It waited 100 s for a key slot, then failed at once.
    assert_eq!(apply(&p, &mut s, Event::AttemptBegan { id, at: Some(t(100_000)) }, t(100_000)).unwrap(), vec![]);
    let fail = Failure::new(ExceptionType::ServiceFault, "x");
    let fx = apply(&p, &mut s, Event::AttemptFailed { id, failure: fail.clone() }, t(100_010)).unwrap();
    let rec = fx.iter().find_map(|e| if let Effect::Record(r) = e { Some(r) } else { None }).unwrap();
    assert_eq!(rec.started_at, t(100_000), "the ledger has when it began");
    assert!(matches!(rec.decision, Some(Decision::Retry(_))), "a minute has not passed since it began: {:?}", rec.decision);
    // The retry waits 30 s more: the series' start moves by the wait again.
    let fx = apply(&p, &mut s, Event::TimerFired { at: at(0, 0) }, t(101_010)).unwrap();
    let retry = started(&fx)[0];
    apply(&p, &mut s, Event::AttemptBegan { id: retry, at: Some(t(131_010)) }, t(131_010)).unwrap();
    assert_eq!(s.action(at(0, 0)).series_started_at, Some(t(130_000)));
    let fx = apply(&p, &mut s, Event::AttemptFailed { id: retry, failure: fail }, t(131_020)).unwrap();
    let rec = fx.iter().find_map(|e| if let Effect::Record(r) = e { Some(r) } else { None }).unwrap();
    assert!(matches!(rec.decision, Some(Decision::Retry(_))), "1 s of running and 1 s of delay: {:?}", rec.decision);
    assert_eq!(apply(&p, &mut s, Event::AttemptBegan { id, at: Some(t(131_030)) }, t(131_030)), Err(Rejection::Stale(id)));
}

fn dead_letters(effects: &[Effect]) -> Vec<&DeadLetter> {
    effects.iter().filter_map(|e| if let Effect::DeadLetter(d) = e { Some(d) } else { None }).collect()
}

/// A pipeline with a dead-letter queue: stage S with A (one retry for Action.FAILED: two attempts) and B.
fn dlq_pipeline() -> Pipeline {
    let mut p = pipeline(vec![stage("S", vec![action("A", 1, vec![retry(&["Action.FAILED"], 0.0, 1)]), action("B", 1, vec![])])]);
    p.dead_letter_queue = Some(Name::parse("retry-orders").unwrap());
    p
}

#[test]
fn failure_for_good_dead_letters_once_with_counts_and_times() {
    let p = dlq_pipeline();
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let ids = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap());
    let fx = apply(&p, &mut s, Event::AttemptSucceeded { id: ids[1], output: None }, t(5)).unwrap();
    assert!(dead_letters(&fx).is_empty());
    let fx = apply(&p, &mut s, Event::AttemptFailed { id: ids[0], failure: failed(ExceptionType::ActionFailed) }, t(10)).unwrap();
    assert!(dead_letters(&fx).is_empty(), "a retry is still allowed");
    let second = started(&fx)[0];
    let fx = apply(&p, &mut s, Event::AttemptFailed { id: second, failure: failed(ExceptionType::ActionFailed) }, t(20)).unwrap();
    let d = dead_letters(&fx);
    assert_eq!(d.len(), 1);
    let d = d[0];
    assert_eq!((d.entry_id.as_str(), d.queue.as_str(), d.stage, d.action), ("e1", "retry-orders", 0, 0));
    assert_eq!((d.first_failure_at, d.last_failure_at), (t(10), t(20)));
    assert_eq!(d.failure.exception_type, ExceptionType::ActionFailed);
    assert_eq!(d.actions[0].total_attempts, 2);
    assert_eq!(d.actions[1].status, ActionStatus::Succeeded);
    assert_eq!(s.dead_letter, Some(DeadLetterLink { entry_id: "e1".into(), queue: Name::parse("retry-orders").unwrap() }));
}

#[test]
fn redriven_stage_that_fails_again_returns_the_same_entry_and_success_resolves_it() {
    let p = dlq_pipeline();
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let ids = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap());
    apply(&p, &mut s, Event::AttemptSucceeded { id: ids[1], output: None }, t(1)).unwrap();
    let fx = apply(&p, &mut s, Event::AttemptFailed { id: ids[0], failure: failed(ExceptionType::ActionFailed) }, t(10)).unwrap();
    let fx = apply(&p, &mut s, Event::AttemptFailed { id: started(&fx)[0], failure: failed(ExceptionType::ActionFailed) }, t(20)).unwrap();
    assert_eq!(dead_letters(&fx).len(), 1);
    // Redrive: the failed action runs a fresh series; it fails for good again.
    let fx =
        apply(&p, &mut s, Event::RetryStage { stage: 0, mode: RetryMode::FailedActions, trigger: Trigger::Redrive, input: None }, t(100))
            .unwrap();
    let id = started(&fx)[0];
    let fx = apply(&p, &mut s, Event::AttemptFailed { id, failure: failed(ExceptionType::ActionFailed) }, t(110)).unwrap();
    let fx = apply(&p, &mut s, Event::AttemptFailed { id: started(&fx)[0], failure: failed(ExceptionType::ActionFailed) }, t(120)).unwrap();
    let d = dead_letters(&fx);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].entry_id, "e1");
    assert_eq!((d[0].first_failure_at, d[0].last_failure_at), (t(10), t(120)), "the first failure is kept across redrives");
    assert_eq!(d[0].actions[0].total_attempts, 4);
    assert_eq!(d[0].actions[0].series, 2);
    // Another redrive succeeds: the entry is resolved, nothing is dead-lettered.
    let fx =
        apply(&p, &mut s, Event::RetryStage { stage: 0, mode: RetryMode::FailedActions, trigger: Trigger::Redrive, input: None }, t(200))
            .unwrap();
    let fx = apply(&p, &mut s, Event::AttemptSucceeded { id: started(&fx)[0], output: None }, t(210)).unwrap();
    assert!(dead_letters(&fx).is_empty());
    assert!(fx.contains(&Effect::DeadLetterResolved { entry_id: "e1".into() }));
}

#[test]
fn no_queue_no_entry_and_stops_never_dead_letter() {
    let p = pipeline(vec![stage("S", vec![action("A", 1, vec![])])]);
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let id = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap())[0];
    let fx = apply(&p, &mut s, Event::AttemptFailed { id, failure: failed(ExceptionType::ActionFailed) }, t(1)).unwrap();
    assert!(fx.contains(&Effect::Finished(ExecutionStatus::Failed)));
    assert!(dead_letters(&fx).is_empty());

    let p = dlq_pipeline();
    let mut s = ExecutionState::new(&p, "e2", t(0));
    apply(&p, &mut s, Event::Start, t(0)).unwrap();
    let fx = apply(&p, &mut s, Event::Stop { abandon: true, reason: String::new() }, t(1)).unwrap();
    assert!(fx.contains(&Effect::Finished(ExecutionStatus::Stopped)));
    assert!(dead_letters(&fx).is_empty());
}

#[test]
fn a_new_execution_started_by_a_redrive_answers_to_the_original_entry() {
    let p = dlq_pipeline();
    let link = DeadLetterLink { entry_id: "e1".into(), queue: Name::parse("retry-orders").unwrap() };
    let mut s = ExecutionState::redriven(&p, "e2", t(0), link);
    let ids = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap());
    apply(&p, &mut s, Event::AttemptSucceeded { id: ids[0], output: None }, t(1)).unwrap();
    let fx = apply(&p, &mut s, Event::AttemptSucceeded { id: ids[1], output: None }, t(2)).unwrap();
    assert!(fx.contains(&Effect::DeadLetterResolved { entry_id: "e1".into() }));
    let s2: ExecutionState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(s2, s);
}

#[test]
fn abort_fails_the_execution_drops_outputs_and_dead_letters() {
    let mut p = pipeline(vec![
        stage("Build", vec![action("A", 1, vec![]), action("B", 1, vec![retry(&["Step.THROTTLING"], 10.0, 3)]), action("C", 1, vec![])]),
        stage("Deploy", vec![action("D", 1, vec![])]),
    ]);
    p.dead_letter_queue = Some(Name::parse("dlq").unwrap());
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let ids = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap());
    apply(&p, &mut s, Event::AttemptSucceeded { id: ids[0], output: Some(serde_json::json!({"big": 1})) }, t(1)).unwrap();
    apply(&p, &mut s, Event::AttemptFailed { id: ids[1], failure: failed(ExceptionType::Throttling) }, t(2)).unwrap();
    assert_eq!(s.stages[0].actions[1].status, ActionStatus::WaitingRetry);
    let limit = Failure::new(ExceptionType::LimitExceeded, "state is too big");
    let fx = apply(&p, &mut s, Event::Abort { failure: limit.clone() }, t(3)).unwrap();
    assert_eq!(s.status, ExecutionStatus::Failed);
    assert_eq!(s.failure.as_ref(), Some(&limit));
    assert!(s.stages.iter().flat_map(|st| &st.actions).all(|a| a.output.is_none()), "outputs are dropped");
    assert!(fx.contains(&Effect::ClearTimer { at: at(0, 1) }), "the pending retry is cancelled");
    let records: Vec<&AttemptRecord> = fx.iter().filter_map(|e| if let Effect::Record(r) = e { Some(r) } else { None }).collect();
    assert_eq!(records.len(), 1, "only the running attempt (C) is recorded: {records:?}");
    assert_eq!(records[0].id, ids[2]);
    assert_eq!(records[0].failure.as_ref(), Some(&limit));
    assert_eq!(records[0].decision, Some(Decision::GiveUp { policy: None, reason: GiveUpReason::Aborted }));
    let dl = fx.iter().find_map(|e| if let Effect::DeadLetter(d) = e { Some(d) } else { None }).expect("dead-lettered");
    assert_eq!((dl.stage, dl.action, &dl.failure), (0, 1, &limit));
    assert_eq!(s.stages[1].status, StageStatus::NotStarted);
    // A late result of the aborted attempt is stale; a manual retry reopens it.
    assert!(apply(&p, &mut s, Event::AttemptSucceeded { id: ids[2], output: None }, t(4)).is_err());
    apply(&p, &mut s, Event::RetryStage { stage: 0, mode: RetryMode::FailedActions, trigger: Trigger::Manual, input: None }, t(5)).unwrap();
    assert_eq!((s.status, s.failure.as_ref()), (ExecutionStatus::InProgress, None));
}

#[test]
fn abort_of_a_queued_execution_files_its_failure() {
    let mut p = pipeline(vec![stage("Build", vec![action("A", 1, vec![])])]);
    p.dead_letter_queue = Some(Name::parse("dlq").unwrap());
    let mut s = ExecutionState::new(&p, "e1", t(0));
    apply(&p, &mut s, Event::Enqueue, t(0)).unwrap();
    let limit = Failure::new(ExceptionType::LimitExceeded, "x");
    let fx = apply(&p, &mut s, Event::Abort { failure: limit.clone() }, t(1)).unwrap();
    assert_eq!((s.status, s.queued), (ExecutionStatus::Failed, false));
    let dl = fx.iter().find_map(|e| if let Effect::DeadLetter(d) = e { Some(d) } else { None }).expect("dead-lettered");
    assert_eq!(dl.failure, limit);
}

#[test]
fn a_stage_locked_execution_waits_before_each_stage_until_let_in() {
    let p = pipeline(vec![stage("One", vec![action("A", 1, vec![])]), stage("Two", vec![action("B", 1, vec![])])]);
    let mut s = ExecutionState { stage_locked: true, ..ExecutionState::new(&p, "e1", t(0)) };
    assert_eq!(s.stage_position(), None, "not started");
    assert!(started(&apply(&p, &mut s, Event::Start, t(0)).unwrap()).is_empty(), "waits before stage One");
    assert_eq!(s.stage_position(), Some(StagePosition::Waiting(0)));
    assert!(matches!(apply(&p, &mut s, Event::EnterStage { stage: 1 }, t(1)), Err(Rejection::Invalid(_))), "not waiting there");
    let a = started(&apply(&p, &mut s, Event::EnterStage { stage: 0 }, t(1)).unwrap());
    assert_eq!((a.len(), s.stage_position()), (1, Some(StagePosition::Holding(0))));
    assert!(
        matches!(apply(&p, &mut s, Event::Supersede { by: "e2".into() }, t(2)), Err(Rejection::Invalid(_))),
        "an execution inside a stage is never interrupted"
    );
    let fx = apply(&p, &mut s, Event::AttemptSucceeded { id: a[0], output: None }, t(3)).unwrap();
    assert!(started(&fx).is_empty(), "waits before stage Two");
    assert_eq!((s.stage_position(), s.stages[0].status), (Some(StagePosition::Waiting(1)), StageStatus::Succeeded));
    let fx = apply(&p, &mut s, Event::Supersede { by: "e3".into() }, t(4)).unwrap();
    assert_eq!(fx, vec![Effect::Finished(ExecutionStatus::Superseded)]);
    assert_eq!((s.status, s.superseded_by.as_deref(), s.stage_position()), (ExecutionStatus::Superseded, Some("e3"), None));
}

#[test]
fn stopping_a_waiting_execution_stops_it_at_once() {
    let p = pipeline(vec![stage("One", vec![action("A", 1, vec![])])]);
    let mut s = ExecutionState { stage_locked: true, ..ExecutionState::new(&p, "e1", t(0)) };
    apply(&p, &mut s, Event::Start, t(0)).unwrap();
    let fx = apply(&p, &mut s, Event::Stop { abandon: false, reason: String::new() }, t(1)).unwrap();
    assert!(fx.contains(&Effect::Finished(ExecutionStatus::Stopped)));
    assert_eq!((s.waiting_for_stage, s.stage_position()), (None, None));
}

#[test]
fn retry_targets_previews_exactly_what_a_retry_reruns_and_refuses_what_it_refuses() {
    let (p, mut s, b) = half_failed();
    assert_eq!(retry_targets(&s, 0, RetryMode::FailedActions), Ok(vec![0]));
    assert!(matches!(retry_targets(&s, 0, RetryMode::AllActions), Err(Rejection::NotRetryable(_))), "B is still running");
    apply(&p, &mut s, Event::AttemptSucceeded { id: b, output: None }, t(2)).unwrap();
    assert_eq!(s.status, ExecutionStatus::Failed);
    assert_eq!(retry_targets(&s, 0, RetryMode::AllActions), Ok(vec![0, 1]));
    let before = s.clone();
    assert!(matches!(retry_targets(&s, 1, RetryMode::FailedActions), Err(Rejection::Invalid(_))));
    assert_eq!(s, before, "a preview changes nothing");
    let fx = apply(&p, &mut s, Event::RetryStage { stage: 0, mode: RetryMode::FailedActions, trigger: Trigger::Manual, input: None }, t(3))
        .unwrap();
    assert_eq!(started(&fx).iter().map(|i| i.at.action).collect::<Vec<_>>(), vec![0], "the retry re-ran what the preview said");
    assert_eq!(retry_targets(&s, 0, RetryMode::FailedActions), Err(Rejection::RetryInProgress));
}

#[test]
fn a_deferred_attempt_keeps_its_number_and_runs_at_the_new_due_time() {
    let p = pipeline(vec![stage("S", vec![action("A", 1, vec![retry(&["Step.SERVICE_FAULT"], 1.0, 3)])])]);
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let first = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap())[0];
    let hold =
        Hold { dependency: Name::parse("api").unwrap(), reason: crate::dependency::DeferReason::BreakerOpen, since: t(0), until: t(5_000) };
    let early = Hold { until: t(0), ..hold.clone() };
    assert!(matches!(apply(&p, &mut s, Event::Defer { id: first, hold: early }, t(0)), Err(Rejection::Invalid(_))));
    let fx = apply(&p, &mut s, Event::Defer { id: first, hold: hold.clone() }, t(0)).unwrap();
    assert_eq!(fx, vec![Effect::SetTimer { at: at(0, 0), due_at: t(5_000) }, Effect::Deferred { id: first, hold: hold.clone() }]);
    let a = s.action(at(0, 0));
    assert_eq!((a.status, a.attempt, a.total_attempts, a.held.as_ref()), (ActionStatus::WaitingRetry, 0, 0, Some(&hold)));
    // The result of the un-started attempt is stale; the timer starts the same attempt.
    assert!(apply(&p, &mut s, Event::AttemptSucceeded { id: first, output: None }, t(1)).is_err());
    assert!(matches!(apply(&p, &mut s, Event::TimerFired { at: at(0, 0) }, t(4_999)), Err(Rejection::TimerEarly { .. })));
    // Held again for the same reason when it comes due: no second ledger row, the hold's start kept.
    started(&apply(&p, &mut s, Event::TimerFired { at: at(0, 0) }, t(5_000)).unwrap());
    let fx =
        apply(&p, &mut s, Event::Defer { id: first, hold: Hold { until: t(6_000), since: t(5_000), ..hold.clone() } }, t(5_000)).unwrap();
    assert_eq!(fx, vec![Effect::SetTimer { at: at(0, 0), due_at: t(6_000) }]);
    assert_eq!(s.action(at(0, 0)).held.as_ref().map(|h| (h.since, h.until)), Some((t(0), t(6_000))));
    let again = started(&apply(&p, &mut s, Event::TimerFired { at: at(0, 0) }, t(6_000)).unwrap());
    assert_eq!(again, vec![first]);
    // A retry deferred the same way is still attempt 2.
    let fx = apply(&p, &mut s, Event::AttemptFailed { id: first, failure: failed(ExceptionType::ServiceFault) }, t(6_001)).unwrap();
    assert!(started(&fx).is_empty());
    assert_eq!(s.action(at(0, 0)).held, None, "cleared when the attempt ended");
    let second = started(&apply(&p, &mut s, Event::TimerFired { at: at(0, 0) }, t(7_001)).unwrap())[0];
    assert_eq!(second.attempt, 2);
    let fx = apply(&p, &mut s, Event::Defer { id: second, hold: Hold { until: t(9_000), ..hold } }, t(7_001)).unwrap();
    assert!(fx.iter().any(|e| matches!(e, Effect::Deferred { .. })), "a new hold is recorded");
    let again = started(&apply(&p, &mut s, Event::TimerFired { at: at(0, 0) }, t(9_000)).unwrap());
    assert_eq!(again, vec![second]);
    assert_eq!(s.action(at(0, 0)).total_attempts, 2);
}

mod from_action;
mod pause;
