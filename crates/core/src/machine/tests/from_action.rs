//! Stage retry from a chosen action (see `machine::from_action`).

use super::*;
use crate::machine::from_action::retry_from_targets;
use crate::merge_patch::InputPatch;
use serde_json::json;

/// Stage S: A (runOrder 1), B and C (runOrder 2), D (runOrder 3); C fails for good.
fn failed_in_group_two() -> (Pipeline, ExecutionState) {
    let p =
        pipeline(vec![stage("S", vec![action("A", 1, vec![]), action("B", 2, vec![]), action("C", 2, vec![]), action("D", 3, vec![])])]);
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let a = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap());
    let bc = started(&apply(&p, &mut s, Event::AttemptSucceeded { id: a[0], output: Some(json!(1)) }, t(1)).unwrap());
    apply(&p, &mut s, Event::AttemptSucceeded { id: bc[0], output: None }, t(2)).unwrap();
    apply(&p, &mut s, Event::AttemptFailed { id: bc[1], failure: failed(ExceptionType::ActionFailed) }, t(3)).unwrap();
    assert_eq!(s.status, ExecutionStatus::Failed);
    (p, s)
}

/// Which actions a retry from each action re-runs, or the refusal, as data.
#[test]
fn targets_are_the_actions_group_and_later_ones() {
    let (p, s) = failed_in_group_two();
    let cases: [(usize, Result<Vec<usize>, &str>); 4] = [
        (0, Ok(vec![0, 1, 2, 3])),
        (1, Ok(vec![1, 2, 3])),
        (2, Ok(vec![1, 2, 3])),
        (3, Err("action C (runOrder 2, before D's group) did not succeed; retry from it")),
    ];
    for (ai, want) in cases {
        let got = retry_from_targets(&p, &s, 0, ai).map_err(|r| r.to_string());
        assert_eq!(got, want.map_err(String::from), "from action {ai}");
    }
}

#[test]
fn retry_from_an_action_keeps_earlier_groups_and_patches_the_input() {
    let (p, mut s) = failed_in_group_two();
    let patch = InputPatch::apply(&json!({"region": "eu"}), json!({"region": "us"})).unwrap();
    let fx = apply(&p, &mut s, Event::RetryFromAction { stage: 0, action: 2, input: Some(patch) }, t(10)).unwrap();
    let ids = started(&fx);
    assert_eq!(ids, vec![AttemptId { at: at(0, 1), series: 2, attempt: 1 }, AttemptId { at: at(0, 2), series: 2, attempt: 1 }]);
    assert_eq!(s.status, ExecutionStatus::InProgress);
    assert_eq!(s.finished_at, None);
    assert_eq!(s.action(at(0, 0)).status, ActionStatus::Succeeded, "earlier groups keep their results");
    assert_eq!(s.action(at(0, 0)).output, Some(json!(1)));
    assert_eq!(s.action(at(0, 3)).status, ActionStatus::NotStarted);
    assert_eq!((s.stages[0].manual_retries_used, s.stages[0].latest_retry_trigger), (1, Some(Trigger::Manual)));
    assert_eq!(s.input, Some(json!({"region": "us"})));
    assert_eq!(s.input_patches, vec![InputPatchRecord { at: t(10), trigger: Trigger::Manual, patch: json!({"region": "us"}) }]);
    // A second retry while this one runs is refused, state unchanged.
    let before = s.clone();
    assert_eq!(
        apply(&p, &mut s, Event::RetryFromAction { stage: 0, action: 1, input: None }, t(11)).unwrap_err(),
        Rejection::RetryInProgress
    );
    assert_eq!(s, before);
    apply(&p, &mut s, Event::AttemptSucceeded { id: ids[0], output: None }, t(12)).unwrap();
    let d = started(&apply(&p, &mut s, Event::AttemptSucceeded { id: ids[1], output: None }, t(13)).unwrap());
    apply(&p, &mut s, Event::AttemptSucceeded { id: d[0], output: None }, t(14)).unwrap();
    assert_eq!(s.status, ExecutionStatus::Succeeded);
}

#[test]
fn a_paused_execution_can_be_retried_from_an_action_but_not_a_running_one() {
    let a = action("A", 1, vec![retry(&["Action.FAILED"], 0.0, 0)]);
    let mut a = a;
    a.on_exhausted = crate::policy::OnExhausted::Pause;
    let p = pipeline(vec![stage("S", vec![a])]);
    let mut s = ExecutionState::new(&p, "e1", t(0));
    let id = started(&apply(&p, &mut s, Event::Start, t(0)).unwrap())[0];
    let running = s.clone();
    let r = apply(&p, &mut s.clone(), Event::RetryFromAction { stage: 0, action: 0, input: None }, t(1)).unwrap_err();
    assert_eq!(r.to_string(), "a retry from an action needs a Failed or Paused execution; this one is InProgress");
    assert_eq!(s, running);
    apply(&p, &mut s, Event::AttemptFailed { id, failure: failed(ExceptionType::ActionFailed) }, t(2)).unwrap();
    assert_eq!(s.status, ExecutionStatus::Paused);
    let fx = apply(&p, &mut s, Event::RetryFromAction { stage: 0, action: 0, input: None }, t(3)).unwrap();
    assert_eq!(started(&fx), vec![AttemptId { at: at(0, 0), series: 2, attempt: 1 }]);
    assert_eq!(s.status, ExecutionStatus::InProgress);
}

#[test]
fn a_stage_retry_can_carry_an_input_patch_recorded_with_its_trigger() {
    let (p, mut s) = failed_in_group_two();
    let patch = InputPatch::apply(&json!({"a": 1}), json!({"b": 2})).unwrap();
    let event = Event::RetryStage { stage: 0, mode: RetryMode::FailedActions, trigger: Trigger::Redrive, input: Some(patch) };
    let fx = apply(&p, &mut s, event, t(10)).unwrap();
    assert_eq!(started(&fx), vec![AttemptId { at: at(0, 2), series: 2, attempt: 1 }]);
    assert_eq!(s.input, Some(json!({"a": 1, "b": 2})));
    assert_eq!(s.input_patches, vec![InputPatchRecord { at: t(10), trigger: Trigger::Redrive, patch: json!({"b": 2}) }]);
    // A refused retry records nothing.
    let before = s.clone();
    let again = Event::RetryStage {
        stage: 0,
        mode: RetryMode::FailedActions,
        trigger: Trigger::Manual,
        input: Some(InputPatch::apply(&json!({}), json!({"c": 3})).unwrap()),
    };
    assert_eq!(apply(&p, &mut s, again, t(11)).unwrap_err(), Rejection::RetryInProgress);
    assert_eq!(s, before);
}
