//! Pause on exhaustion, Resume and Fail (see `machine::pause`).

use super::*;
use crate::merge_patch::InputPatch;
use crate::policy::OnExhausted;
use serde_json::json;

/// `retry` with `onExhausted` set on the policy.
fn pausing(types: &[&str], max: u32, on: &str) -> RetryPolicy {
    RetryPolicy::new(&RetryPolicySpec {
        exception_types: types.iter().map(|s| s.to_string()).collect(),
        interval_seconds: Some(0.0),
        max_attempts: Some(f64::from(max)),
        on_exhausted: Some(on.into()),
        ..Default::default()
    })
    .unwrap()
}

/// Stage S: A (Action.FAILED retried once, PAUSE on exhaustion) and B, both
/// runOrder 1; stage T: C. With a dead-letter queue.
fn paused_pipeline() -> Pipeline {
    let a = action("A", 1, vec![pausing(&["Action.FAILED"], 1, "PAUSE")]);
    let mut p = pipeline(vec![stage("S", vec![a, action("B", 1, vec![])]), stage("T", vec![action("C", 1, vec![])])]);
    p.dead_letter_queue = Some(Name::parse("q").unwrap());
    p
}

/// Runs A to exhaustion (two failed attempts) with B succeeded: the execution pauses.
fn paused() -> (Pipeline, ExecutionState) {
    let p = paused_pipeline();
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let ids = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap());
    apply(&p, &mut s, Event::AttemptSucceeded { id: ids[1], output: None }, t(1)).unwrap();
    let retry =
        started(&apply(&p, &mut s, Event::AttemptFailed { id: ids[0], failure: failed(ExceptionType::ActionFailed) }, t(2)).unwrap());
    let fx = apply(&p, &mut s, Event::AttemptFailed { id: retry[0], failure: failed(ExceptionType::ActionFailed) }, t(3)).unwrap();
    assert!(fx.iter().all(|e| matches!(e, Effect::Record(_))), "a pause only records the attempt: {fx:?}");
    (p, s)
}

#[test]
fn exhaustion_under_pause_pauses_with_the_failure_and_the_reason_recorded() {
    let p = paused_pipeline();
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let ids = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap());
    let retry =
        started(&apply(&p, &mut s, Event::AttemptFailed { id: ids[0], failure: failed(ExceptionType::ActionFailed) }, t(2)).unwrap());
    let fx = apply(&p, &mut s, Event::AttemptFailed { id: retry[0], failure: failed(ExceptionType::ActionFailed) }, t(3)).unwrap();
    let Some(Effect::Record(r)) = fx.first() else { panic!("{fx:?}") };
    assert!(matches!(&r.decision, Some(Decision::GiveUp { reason: GiveUpReason::MaxAttemptsReached { max_attempts: 1 }, .. })));
    assert_eq!(s.action(at(0, 0)).status, ActionStatus::Paused);
    assert_eq!(s.status, ExecutionStatus::InProgress, "B still runs: the execution pauses once the group settles");
    let fx = apply(&p, &mut s, Event::AttemptSucceeded { id: ids[1], output: None }, t(4)).unwrap();
    assert_eq!(s.status, ExecutionStatus::Paused);
    assert!(!s.status.is_finished(), "a paused execution is unfinished");
    assert!(!fx.iter().any(|e| matches!(e, Effect::Finished(_) | Effect::DeadLetter(_))), "no finish, no dead letter: {fx:?}");
    assert_eq!(s.action(at(0, 0)).last_failure.as_ref().unwrap().exception_type, ExceptionType::ActionFailed);
    assert_eq!(s.stages[0].status, StageStatus::InProgress);
}

/// Which give-ups pause, as data: (action's onExhausted, policy's onExhausted,
/// maxAttempts, exception type, paused?).
#[test]
fn only_exhaustion_of_a_retryable_failure_pauses() {
    let cases: &[(OnExhausted, Option<&str>, u32, ExceptionType, bool)] = &[
        (OnExhausted::Pause, None, 1, ExceptionType::ActionFailed, true),
        (OnExhausted::Fail, Some("PAUSE"), 1, ExceptionType::ActionFailed, true),
        (OnExhausted::Pause, Some("FAIL"), 1, ExceptionType::ActionFailed, false), // the policy wins
        (OnExhausted::Fail, None, 1, ExceptionType::ActionFailed, false),          // the default
        (OnExhausted::Pause, None, 0, ExceptionType::ActionFailed, true),          // retriesDisabled
        (OnExhausted::Pause, None, 1, ExceptionType::Timeout, false),              // no policy matches
        (OnExhausted::Pause, None, 1, ExceptionType::LimitExceeded, false),        // terminal, even when named
    ];
    for (i, (action_on, policy_on, max, ty, want)) in cases.iter().enumerate() {
        let policy = RetryPolicy::new(&RetryPolicySpec {
            exception_types: vec!["Action.FAILED".into(), "Engine.LIMIT_EXCEEDED".into()],
            interval_seconds: Some(0.0),
            max_attempts: Some(f64::from(*max)),
            on_exhausted: policy_on.map(String::from),
            ..Default::default()
        })
        .unwrap();
        let mut a = action("A", 1, vec![policy]);
        a.on_exhausted = *action_on;
        let p = pipeline(vec![stage("S", vec![a])]);
        let mut s = ExecutionState::new(&p, "e1", t(0));
        let mut id = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap())[0];
        for _ in 0..=*max {
            let fx = apply(&p, &mut s, Event::AttemptFailed { id, failure: failed(ty.clone()) }, t(1)).unwrap();
            match started(&fx).first() {
                Some(next) => id = *next,
                None => break,
            }
        }
        let want_status = if *want { ExecutionStatus::Paused } else { ExecutionStatus::Failed };
        assert_eq!(s.status, want_status, "case {i}: {:?}", cases[i]);
    }
}

#[test]
fn resume_starts_a_fresh_series_with_the_patched_input_recorded() {
    let (p, mut s) = paused();
    let before = s.action(at(0, 0)).clone();
    let patch = InputPatch::apply(&json!({"fail": true, "n": 1}), json!({"fail": null})).unwrap();
    let fx = apply(&p, &mut s, Event::Resume { action: None, input: Some(patch) }, t(10)).unwrap();
    let id = AttemptId { at: at(0, 0), series: before.series + 1, attempt: 1 };
    assert_eq!(started(&fx), vec![id], "series index increments, attempts count from 1 in it");
    let a = s.action(at(0, 0));
    assert_eq!((a.series_trigger, a.total_attempts, a.status), (Trigger::Resume, before.total_attempts + 1, ActionStatus::Running));
    assert_eq!(s.status, ExecutionStatus::InProgress);
    assert_eq!(s.input, Some(json!({"n": 1})));
    assert_eq!(s.input_patches, vec![InputPatchRecord { at: t(10), trigger: Trigger::Resume, patch: json!({"fail": null}) }]);
    // The resumed series runs to success; the execution carries on to stage T.
    let fx = apply(&p, &mut s, Event::AttemptSucceeded { id, output: None }, t(11)).unwrap();
    assert_eq!(started(&fx), vec![AttemptId { at: at(1, 0), series: 1, attempt: 1 }]);
    let Effect::Record(r) = &fx[0] else { panic!("{fx:?}") };
    assert_eq!(r.trigger, Trigger::Resume, "the ledger says the attempt came from a resume");
}

#[test]
fn a_resumed_action_that_exhausts_again_pauses_again_and_fail_dead_letters() {
    let (p, mut s) = paused();
    let id = started(&apply(&p, &mut s, Event::Resume { action: Some(at(0, 0)), input: None }, t(10)).unwrap())[0];
    let retry = started(&apply(&p, &mut s, Event::AttemptFailed { id, failure: failed(ExceptionType::ActionFailed) }, t(11)).unwrap());
    assert_eq!(retry, vec![AttemptId { at: at(0, 0), series: 2, attempt: 2 }], "a fresh retry budget");
    apply(&p, &mut s, Event::AttemptFailed { id: retry[0], failure: Failure::new(ExceptionType::ActionFailed, "still") }, t(12)).unwrap();
    assert_eq!(s.status, ExecutionStatus::Paused);
    let fx = apply(&p, &mut s, Event::Fail, t(20)).unwrap();
    assert_eq!(s.status, ExecutionStatus::Failed);
    assert_eq!(s.finished_at, Some(t(20)));
    assert_eq!(s.stages[0].status, StageStatus::Failed);
    assert_eq!(s.action(at(0, 0)).status, ActionStatus::Failed);
    assert!(fx.contains(&Effect::Finished(ExecutionStatus::Failed)));
    let dl = dead_letters(&fx);
    assert_eq!(dl.len(), 1, "{fx:?}");
    assert_eq!((dl[0].action, dl[0].failure.message.as_str(), dl[0].actions[0].total_attempts), (0, "still", 4));
}

#[test]
fn fail_without_a_queue_just_fails() {
    let (mut p, mut s) = paused();
    p.dead_letter_queue = None;
    let fx = apply(&p, &mut s, Event::Fail, t(20)).unwrap();
    assert_eq!(fx, vec![Effect::Finished(ExecutionStatus::Failed)]);
}

/// Events a paused execution refuses (state unchanged), and Resume/Fail of one
/// that is not paused, as data.
#[test]
fn stale_and_misplaced_events_are_rejected_without_change() {
    let (p, paused_state) = paused();
    let stale = AttemptId { at: at(0, 0), series: 1, attempt: 2 };
    type Expect = fn(&Rejection) -> bool;
    let cases: Vec<(Event, Expect)> = vec![
        (Event::AttemptFailed { id: stale, failure: failed(ExceptionType::ActionFailed) }, |r| matches!(r, Rejection::Stale(_))),
        (Event::TimerFired { at: at(0, 0) }, |r| matches!(r, Rejection::Stale(_))),
        (Event::Resume { action: Some(at(0, 1)), input: None }, |r| r.to_string() == "action S/B is not paused"),
        (Event::Start, |r| matches!(r, Rejection::AlreadyStarted)),
        (
            Event::RetryStage { stage: 0, mode: RetryMode::FailedActions, trigger: Trigger::Manual, input: None },
            |r| matches!(r, Rejection::NotRetryable(m) if m.contains("paused")),
        ),
    ];
    for (event, want) in cases {
        let mut s = paused_state.clone();
        let r = apply(&p, &mut s, event.clone(), t(10)).unwrap_err();
        assert!(want(&r), "{event:?}: {r}");
        assert_eq!(s, paused_state, "{event:?} changed the state");
    }
    // Resume and Fail need a paused execution: a resumed one (twice), a running one.
    let mut s = paused_state.clone();
    apply(&p, &mut s, Event::Resume { action: None, input: None }, t(10)).unwrap();
    let running = s.clone();
    for event in [Event::Resume { action: None, input: None }, Event::Fail] {
        assert_eq!(apply(&p, &mut s, event, t(11)).unwrap_err(), Rejection::NotPaused(ExecutionStatus::InProgress));
        assert_eq!(s, running);
    }
    let (p, mut s) = paused();
    apply(&p, &mut s, Event::Fail, t(10)).unwrap();
    assert_eq!(apply(&p, &mut s, Event::Fail, t(11)).unwrap_err(), Rejection::NotPaused(ExecutionStatus::Failed));
}

#[test]
fn a_paused_execution_can_be_stopped_and_survives_a_restart() {
    let (p, mut s) = paused();
    let restored: ExecutionState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(restored, s, "the state round-trips through the store's JSON");
    assert!(apply(&p, &mut s.clone(), Event::Recover, t(9)).unwrap().is_empty(), "nothing was in flight");
    let fx = apply(&p, &mut s, Event::Stop { abandon: false, reason: String::new() }, t(10)).unwrap();
    assert_eq!(fx, vec![Effect::Finished(ExecutionStatus::Stopped)]);
    assert_eq!(s.action(at(0, 0)).status, ActionStatus::Failed);
}
