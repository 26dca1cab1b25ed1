use super::*;
use proptest::prelude::*;

fn spec(types: &[&str]) -> RetryPolicySpec {
    RetryPolicySpec { exception_types: types.iter().map(|s| s.to_string()).collect(), ..Default::default() }
}

fn policy(types: &[&str], interval: f64, rate: f64, max_attempts: Option<f64>, expire: Option<f64>) -> RetryPolicy {
    RetryPolicy::new(&RetryPolicySpec {
        interval_seconds: Some(interval),
        backoff_rate: Some(rate),
        max_attempts,
        expire_after_min: expire,
        ..spec(types)
    })
    .unwrap()
}

fn fail(t: ExceptionType) -> Failure {
    Failure::new(t, "boom")
}

/// Runs attempts that all fail instantly with `t`, returning the decisions.
fn run(policies: &[RetryPolicy], t: &ExceptionType, attempt_duration_ms: u64) -> Vec<Decision> {
    let mut counters = vec![0u32; policies.len() + 1];
    let start = Timestamp::from_unix_ms(1_000_000);
    let mut now = start.plus_ms(attempt_duration_ms);
    let mut attempts = 1;
    let mut out = Vec::new();
    loop {
        let h = RetryHistory { first_attempt_started_at: start, retries_by_policy: &counters, attempts };
        let d = decide(policies, h, &fail(t.clone()), now, JitterDraw::MAX);
        out.push(d.clone());
        match d {
            Decision::Retry(r) => {
                counters[r.policy.slot(policies.len())] += 1;
                now = r.due_at.plus_ms(attempt_duration_ms);
                attempts += 1;
            }
            Decision::GiveUp { .. } => return out,
        }
    }
}

fn delays(ds: &[Decision]) -> Vec<u64> {
    ds.iter().filter_map(|d| if let Decision::Retry(r) = d { Some(r.delay_ms) } else { None }).collect()
}

#[test]
fn defaults_follow_the_reference() {
    let p = RetryPolicy::new(&spec(&["Job.INTERNAL_ERROR"])).unwrap();
    assert_eq!(p.interval_ms(), 1000);
    assert_eq!(p.backoff_rate(), 2.0);
    assert_eq!(p.limit(), RetryLimit::MaxAttempts(5));
    assert_eq!(p.jitter(), Jitter::None);
}

#[test]
fn exponential_schedule_and_max_attempts() {
    let p = policy(&["Job.INTERNAL_ERROR"], 1.0, 2.0, Some(5.0), None);
    let ds = run(&[p], &ExceptionType::JobInternalError, 0);
    assert_eq!(delays(&ds), vec![1000, 2000, 4000, 8000, 16000]);
    assert_eq!(
        ds.last().unwrap(),
        &Decision::GiveUp { policy: Some(PolicyRef::Declared(0)), reason: GiveUpReason::MaxAttemptsReached { max_attempts: 5 } }
    );
}

#[test]
fn zero_means_never() {
    let p = policy(&["Action.FAILED"], 1.0, 2.0, Some(0.0), None);
    let ds = run(&[p], &ExceptionType::ActionFailed, 0);
    assert_eq!(ds, vec![Decision::GiveUp { policy: Some(PolicyRef::Declared(0)), reason: GiveUpReason::RetriesDisabled }]);
    let p = policy(&["Action.FAILED"], 1.0, 2.0, None, Some(0.0));
    assert_eq!(delays(&run(&[p], &ExceptionType::ActionFailed, 0)), Vec::<u64>::new());
}

#[test]
fn expiry_stops_retries_for_late_failures() {
    // 1 minute expiry, 20 s attempts, 10 s interval, no backoff: failures at 20, 50, 80 s.
    let p = policy(&["Step.TIMEOUT"], 10.0, 1.0, None, Some(1.0));
    let ds = run(&[p], &ExceptionType::Timeout, 20_000);
    assert_eq!(delays(&ds), vec![10_000, 10_000]);
    match ds.last().unwrap() {
        Decision::GiveUp { reason: GiveUpReason::Expired { expire_after_min: 1, elapsed_ms }, .. } => assert_eq!(*elapsed_ms, 80_000),
        other => panic!("{other:?}"),
    }
}

#[test]
fn first_matching_policy_wins_and_counts_separately() {
    let a = policy(&["Step.THROTTLING"], 1.0, 1.0, Some(2.0), None);
    let b = policy(&["*"], 5.0, 1.0, Some(1.0), None);
    let policies = [a, b];
    let start = Timestamp::from_unix_ms(0);
    let mut counters = vec![0u32; 3];
    let mut attempts = 1;
    let mut seq = Vec::new();
    for t in [
        ExceptionType::Throttling,
        ExceptionType::ActionFailed,
        ExceptionType::Throttling,
        ExceptionType::Throttling,
        ExceptionType::ActionFailed,
    ] {
        let h = RetryHistory { first_attempt_started_at: start, retries_by_policy: &counters, attempts };
        let d = decide(&policies, h, &fail(t), start, JitterDraw::MAX);
        if let Decision::Retry(r) = &d {
            counters[r.policy.slot(2)] += 1;
            attempts += 1;
        }
        seq.push(d);
    }
    let summary: Vec<String> = seq
        .iter()
        .map(|d| match d {
            Decision::Retry(r) => format!("retry {} #{}", r.policy, r.retry_number),
            Decision::GiveUp { policy, reason } => format!("give up {policy:?} {reason}"),
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            "retry policy #1 #1",
            "retry policy #2 #1",
            "retry policy #1 #2",
            "give up Some(Declared(0)) maxAttempts 2 reached",
            "give up Some(Declared(1)) maxAttempts 1 reached",
        ]
    );
}

#[test]
fn builtin_default_covers_service_fault_and_throttling_only() {
    let ds = run(&[], &ExceptionType::ServiceFault, 0);
    assert_eq!(ds.len(), 6);
    assert!(matches!(ds[0], Decision::Retry(RetryDecision { policy: PolicyRef::BuiltinDefault, .. })));
    assert_eq!(run(&[], &ExceptionType::ActionFailed, 0), vec![Decision::GiveUp { policy: None, reason: GiveUpReason::NoMatchingPolicy }]);
    // A policy naming THROTTLING with maxAttempts 0 turns the default off for it.
    let off = policy(&["Step.THROTTLING"], 1.0, 2.0, Some(0.0), None);
    assert_eq!(run(std::slice::from_ref(&off), &ExceptionType::Throttling, 0).len(), 1);
    // ... but SERVICE_FAULT is still covered.
    assert_eq!(run(&[off], &ExceptionType::ServiceFault, 0).len(), 6);
}

#[test]
fn builtin_default_uses_full_jitter() {
    let counters = [0u32];
    let h = RetryHistory { first_attempt_started_at: Timestamp::EPOCH, retries_by_policy: &counters, attempts: 1 };
    let d = decide(&[], h, &fail(ExceptionType::Throttling), Timestamp::EPOCH, JitterDraw::new(0.25));
    let Decision::Retry(r) = d else { panic!() };
    assert_eq!((r.computed_delay_ms, r.delay_ms), (1000, 250));
}

#[test]
fn hint_raises_delay_but_cap_still_applies() {
    let p =
        RetryPolicy::new(&RetryPolicySpec { interval_seconds: Some(1.0), max_interval_seconds: Some(10.0), ..spec(&["Step.THROTTLING"]) })
            .unwrap();
    let counters = [0u32, 0];
    let h = RetryHistory { first_attempt_started_at: Timestamp::EPOCH, retries_by_policy: &counters, attempts: 1 };
    let with_hint = |ms| {
        decide(
            std::slice::from_ref(&p),
            h,
            &fail(ExceptionType::Throttling).with_retry_after_ms(Some(ms)),
            Timestamp::EPOCH,
            JitterDraw::MAX,
        )
    };
    let Decision::Retry(r) = with_hint(3000) else { panic!() };
    assert_eq!(r.delay_ms, 3000);
    let Decision::Retry(r) = with_hint(60_000) else { panic!() };
    assert_eq!(r.delay_ms, 10_000);
}

#[test]
fn validation_reports_every_problem() {
    let errs = RetryPolicy::new(&RetryPolicySpec {
        exception_types: vec!["Step.BOGUS".into(), "ok".into()],
        interval_seconds: Some(50_000.0),
        backoff_rate: Some(0.5),
        max_attempts: Some(3.0),
        expire_after_min: Some(10.0),
        jitter: Some("SOME".into()),
        ..Default::default()
    })
    .unwrap_err();
    let fields: Vec<PolicyField> = errs.iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        vec![
            PolicyField::ExceptionType,
            PolicyField::IntervalSeconds,
            PolicyField::BackoffRate,
            PolicyField::ExpireAfterMin,
            PolicyField::Jitter
        ]
    );
    assert_eq!(errs[0].index, Some(0));
    assert!(RetryPolicy::new(&RetryPolicySpec { max_attempts: Some(21.0), ..spec(&["*"]) }).is_err());
    assert!(RetryPolicy::new(&RetryPolicySpec { max_attempts: Some(2.5), ..spec(&["*"]) }).is_err());
    assert!(RetryPolicy::new(&RetryPolicySpec { expire_after_min: Some(14_401.0), ..spec(&["*"]) }).is_err());
    assert!(RetryPolicy::new(&spec(&[])).is_err());
    assert!(RetryPolicy::new(&RetryPolicySpec { interval_seconds: Some(0.25), ..spec(&["*"]) }).is_ok());
    assert!(RetryPolicy::new(&RetryPolicySpec { interval_seconds: Some(10.0), max_interval_seconds: Some(5.0), ..spec(&["*"]) }).is_err());
}

#[test]
fn decisions_round_trip_through_json_with_flat_reasons() {
    let d = Decision::GiveUp {
        policy: Some(PolicyRef::Declared(1)),
        reason: GiveUpReason::Expired { expire_after_min: 3, elapsed_ms: 200_000 },
    };
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"decision": "giveUp", "policy": {"kind": "declared", "index": 1}, "reason": "expired", "expireAfterMin": 3, "elapsedMs": 200_000})
    );
    assert_eq!(serde_json::from_value::<Decision>(v).unwrap(), d);
    let none = Decision::GiveUp { policy: None, reason: GiveUpReason::NoMatchingPolicy };
    assert_eq!(serde_json::from_str::<Decision>(&serde_json::to_string(&none).unwrap()).unwrap(), none);
}

#[test]
fn explain_previews_schedule() {
    let p = policy(&["Step.THROTTLING"], 2.0, 3.0, Some(3.0), None);
    let s = explain(&[p], &ExceptionType::Throttling, |_| None);
    let rows: Vec<(u32, u64, u64)> = s.retries.iter().map(|r| (r.attempt, r.delay_ms, r.offset_ms)).collect();
    assert_eq!(rows, vec![(2, 2000, 2000), (3, 6000, 8000), (4, 18000, 26000)]);
    assert_eq!(s.worst_case_total_wait_ms, 26_000);
    assert_eq!(s.stop, GiveUpReason::MaxAttemptsReached { max_attempts: 3 });
}

#[test]
fn explain_with_draws_matches_decide() {
    let s = explain(&[], &ExceptionType::ServiceFault, |a| Some(JitterDraw::for_attempt("exec-1", "S", "A", a)));
    assert_eq!(s.retries.len(), 5);
    for r in &s.retries {
        let draw = JitterDraw::for_attempt("exec-1", "S", "A", r.attempt - 1);
        assert_eq!(r.delay_ms, Jitter::Full.apply(r.computed_delay_ms, draw));
    }
    assert!(s.total_wait_ms <= s.worst_case_total_wait_ms);
}

fn arb_policy() -> impl Strategy<Value = RetryPolicy> {
    (
        0u32..=43_200_000,
        1.0f64..=100.0,
        prop::option::of(0u32..=20),
        prop::option::of(0u32..=14_400),
        prop::option::of(0u64..=864_000_000),
        prop_oneof![Just("NONE"), Just("FULL"), Just("EQUAL")],
    )
        .prop_map(|(interval_ms, rate, max_attempts, expire, max_interval_extra, jitter)| {
            let interval_seconds = interval_ms as f64 / 1000.0;
            let (max_attempts, expire_after_min) = match (max_attempts, expire) {
                (Some(m), Some(_)) => (Some(m as f64), None),
                (m, e) => (m.map(f64::from), e.map(f64::from)),
            };
            RetryPolicy::new(&RetryPolicySpec {
                exception_types: vec!["*".into()],
                interval_seconds: Some(interval_seconds),
                backoff_rate: Some(rate),
                max_attempts,
                expire_after_min,
                max_interval_seconds: max_interval_extra
                    .map(|x| (interval_seconds + x as f64 / 1000.0).clamp(0.001, 864_000.0).max(interval_seconds)),
                jitter: Some(jitter.into()),
                on_exhausted: None,
            })
            .expect("generated policy is valid")
        })
}

proptest! {
    #[test]
    fn delay_never_exceeds_max_interval(p in arb_policy(), n in 1u32..40, draw in 0.0f64..=1.0, hint in prop::option::of(0u64..2_000_000_000)) {
        let mut counters = vec![0u32; 2];
        counters[0] = n - 1;
        let h = RetryHistory { first_attempt_started_at: Timestamp::EPOCH, retries_by_policy: &counters, attempts: n };
        let f = fail(ExceptionType::ActionFailed).with_retry_after_ms(hint);
        if let Decision::Retry(r) = decide(std::slice::from_ref(&p), h, &f, Timestamp::EPOCH, JitterDraw::new(draw)) {
            prop_assert!(r.delay_ms <= p.max_interval_ms().unwrap_or(MAX_DELAY_MS));
            prop_assert!(r.delay_ms <= MAX_DELAY_MS);
            prop_assert!(r.due_at >= Timestamp::EPOCH, "never scheduled in the past");
        }
    }

    #[test]
    fn never_more_retries_than_max_attempts(p in arb_policy(), dur in 0u64..100_000) {
        let ds = run(std::slice::from_ref(&p), &ExceptionType::ActionFailed, dur);
        let retries = ds.len() as u32 - 1;
        match p.limit() {
            RetryLimit::MaxAttempts(m) => prop_assert!(retries <= m),
            RetryLimit::ExpireAfterMin(0) => prop_assert_eq!(retries, 0),
            RetryLimit::ExpireAfterMin(_) => prop_assert!(retries < MAX_ATTEMPTS_PER_SERIES),
        }
    }

    #[test]
    fn never_a_retry_after_expiry(p in arb_policy(), elapsed_ms in 0u64..1_000_000_000, used in 0u32..20) {
        let counters = [used, 0];
        let start = Timestamp::from_unix_ms(5_000);
        let now = start.plus_ms(elapsed_ms);
        let h = RetryHistory { first_attempt_started_at: start, retries_by_policy: &counters, attempts: used + 1 };
        let d = decide(std::slice::from_ref(&p), h, &fail(ExceptionType::ActionFailed), now, JitterDraw::MAX);
        if let RetryLimit::ExpireAfterMin(min) = p.limit()
            && (elapsed_ms > u64::from(min) * 60_000 || min == 0) {
                let gave_up = matches!(d, Decision::GiveUp { .. });
                prop_assert!(gave_up);
            }
    }

    #[test]
    fn delays_non_decreasing_without_jitter(interval_ms in 0u32..=43_200_000, rate in 1.0f64..=100.0, cap in prop::option::of(1u64..=864_000_000)) {
        let interval_seconds = interval_ms as f64 / 1000.0;
        let p = RetryPolicy::new(&RetryPolicySpec {
            interval_seconds: Some(interval_seconds),
            backoff_rate: Some(rate),
            max_attempts: Some(20.0),
            max_interval_seconds: cap.map(|c| (c as f64 / 1000.0).max(interval_seconds).max(0.001)),
            ..spec(&["*"])
        }).unwrap();
        let ds = delays(&run(&[p], &ExceptionType::ActionFailed, 0));
        prop_assert_eq!(ds.len(), 20);
        prop_assert!(ds.windows(2).all(|w| w[0] <= w[1]), "{:?}", ds);
    }

    #[test]
    fn same_inputs_same_delay(p in arb_policy(), exec in "[a-f0-9]{8}", attempt in 1u32..20, now_ms in 0i64..1_000_000_000) {
        let counters = [attempt - 1, 0];
        let now = Timestamp::from_unix_ms(now_ms);
        let h = RetryHistory { first_attempt_started_at: now, retries_by_policy: &counters, attempts: attempt };
        let f = fail(ExceptionType::Throttling);
        let a = decide(std::slice::from_ref(&p), h, &f, now, JitterDraw::for_attempt(&exec, "S", "A", attempt));
        let b = decide(std::slice::from_ref(&p), h, &f, now, JitterDraw::for_attempt(&exec, "S", "A", attempt));
        prop_assert_eq!(a, b);
    }
}

#[test]
fn give_up_codes_are_the_serialised_reasons() {
    let reasons = [
        GiveUpReason::NoMatchingPolicy,
        GiveUpReason::RetriesDisabled,
        GiveUpReason::MaxAttemptsReached { max_attempts: 3 },
        GiveUpReason::Expired { expire_after_min: 1, elapsed_ms: 5 },
        GiveUpReason::AttemptCeiling { limit: 9 },
        GiveUpReason::Stopped,
        GiveUpReason::Aborted,
    ];
    for r in reasons {
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["reason"], r.code(), "{r:?}");
    }
}
