use super::*;
use proptest::prelude::*;

fn t(ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(ms)
}

fn dep(budget: Option<RetryBudget>, breaker: Option<CircuitBreaker>) -> Dependency {
    Dependency { name: Name::parse("payments-api").unwrap(), retry_budget: budget, circuit_breaker: breaker }
}

#[test]
fn constructors_refuse_out_of_range_values_naming_the_field() {
    let cases: Vec<(Result<RetryBudget, Invalid>, Option<&str>)> = vec![
        (RetryBudget::new(0.1, 5.0, 60_000), None),
        (RetryBudget::new(1.0, 1.0, 1_000), None),
        (RetryBudget::new(0.0, 5.0, 60_000), Some("ratio")),
        (RetryBudget::new(1.5, 5.0, 60_000), Some("ratio")),
        (RetryBudget::new(f64::NAN, 5.0, 60_000), Some("ratio")),
        (RetryBudget::new(0.1, 0.0, 60_000), Some("minRetriesPerSecond")),
        (RetryBudget::new(0.1, 0.01, 60_000), Some("minRetriesPerSecond")), // < 1 retry per window
        (RetryBudget::new(0.1, 5.0, 1_500), Some("window")),
        (RetryBudget::new(0.1, 5.0, 0), Some("window")),
        (RetryBudget::new(0.1, 5.0, 3_601_000), Some("window")),
    ];
    for (result, field) in cases {
        assert_eq!(result.as_ref().err().map(|e| e.0), field, "{result:?}");
    }
    let breakers = [
        (CircuitBreaker::new(20, 30_000, 1), None),
        (CircuitBreaker::new(0, 30_000, 1), Some("failureThreshold")),
        (CircuitBreaker::new(20, 10, 1), Some("coolDown")),
        (CircuitBreaker::new(20, 30_000, 0), Some("halfOpenProbes")),
    ];
    for (result, field) in breakers {
        assert_eq!(result.as_ref().err().map(|e| e.0), field, "{result:?}");
    }
}

#[test]
fn budget_admits_first_attempts_and_retries_up_to_the_bound_then_defers_to_the_oldest_retry_leaving() {
    // ratio 0.1, min 0.1/s over 10 s: min bound 1 retry.
    let d = dep(Some(RetryBudget::new(0.1, 0.1, 10_000).unwrap()), None);
    let mut s = DependencyState::default();
    for i in 0..30 {
        assert_eq!(gate(&d, &mut s, &Peers::default(), t(1_000_000 + i), AttemptKind::First), Gate::Admit);
    }
    // 30 firsts → 3 retries allowed.
    for i in 0..3 {
        assert_eq!(gate(&d, &mut s, &Peers::default(), t(1_002_000 + i), AttemptKind::Retry), Gate::Admit, "retry {i}");
    }
    let g = gate(&d, &mut s, &Peers::default(), t(1_003_000), AttemptKind::Retry);
    assert_eq!(g, Gate::Defer { until: t(1_012_000), reason: DeferReason::Budget { used: 3, allowed: 3.0 } });
    // At that time the firsts (second 1000) are out of the window too: the min bound (1) applies.
    assert_eq!(gate(&d, &mut s, &Peers::default(), t(1_012_000), AttemptKind::Retry), Gate::Admit);
    assert!(matches!(gate(&d, &mut s, &Peers::default(), t(1_012_001), AttemptKind::Retry), Gate::Defer { .. }));
    assert!(s.buckets.len() <= 10);
}

#[test]
fn breaker_opens_after_threshold_holds_everything_then_probes_and_closes() {
    let d = dep(None, Some(CircuitBreaker::new(3, 30_000, 1).unwrap()));
    let mut s = DependencyState::default();
    let now = t(5_000_000);
    for i in 0..2 {
        assert_eq!(gate(&d, &mut s, &Peers::default(), now, AttemptKind::First), Gate::Admit);
        record(&d, &mut s, &Peers::default(), now.plus_ms(i), now, Outcome::Failure);
    }
    assert_eq!(s.breaker, Breaker::Closed { consecutive_failures: 2 });
    record(&d, &mut s, &Peers::default(), now.plus_ms(5), now, Outcome::Success); // a success resets the count
    for _ in 0..3 {
        record(&d, &mut s, &Peers::default(), now.plus_ms(10), now, Outcome::Failure);
    }
    let opened = now.plus_ms(10);
    assert_eq!(s.breaker, Breaker::Open { opened_at: opened, until: opened.plus_ms(30_000) });
    for kind in [AttemptKind::First, AttemptKind::Retry] {
        assert_eq!(
            gate(&d, &mut s, &Peers::default(), opened.plus_ms(29_999), kind),
            Gate::Defer { until: opened.plus_ms(30_000), reason: DeferReason::BreakerOpen }
        );
    }
    let cool = opened.plus_ms(30_000);
    assert_eq!(gate(&d, &mut s, &Peers::default(), cool, AttemptKind::Retry), Gate::Admit); // the probe
    assert_eq!(
        gate(&d, &mut s, &Peers::default(), cool, AttemptKind::Retry),
        Gate::Defer { until: cool.plus_ms(HALF_OPEN_RECHECK_MS), reason: DeferReason::BreakerHalfOpen }
    );
    // A late outcome of an attempt started before the half-open state is not a probe.
    record(&d, &mut s, &Peers::default(), cool.plus_ms(1), now, Outcome::Success);
    assert_eq!(s.breaker.as_str(), "half-open");
    // The probe fails: open again.
    record(&d, &mut s, &Peers::default(), cool.plus_ms(2), cool, Outcome::Failure);
    assert_eq!(s.breaker, Breaker::Open { opened_at: cool.plus_ms(2), until: cool.plus_ms(30_002) });
    let cool2 = cool.plus_ms(30_002);
    assert_eq!(gate(&d, &mut s, &Peers::default(), cool2, AttemptKind::First), Gate::Admit);
    record(&d, &mut s, &Peers::default(), cool2.plus_ms(1), cool2, Outcome::Success);
    assert_eq!(s.breaker, Breaker::Closed { consecutive_failures: 0 });
}

#[test]
fn a_neutral_probe_outcome_frees_its_slot() {
    let d = dep(None, Some(CircuitBreaker::new(1, 1_000, 1).unwrap()));
    let mut s = DependencyState::default();
    record(&d, &mut s, &Peers::default(), t(0), t(0), Outcome::Failure);
    assert_eq!(gate(&d, &mut s, &Peers::default(), t(1_000), AttemptKind::First), Gate::Admit);
    assert!(matches!(gate(&d, &mut s, &Peers::default(), t(1_000), AttemptKind::First), Gate::Defer { .. }));
    record(&d, &mut s, &Peers::default(), t(1_001), t(1_000), Outcome::Neutral);
    assert_eq!(gate(&d, &mut s, &Peers::default(), t(1_002), AttemptKind::First), Gate::Admit);
}

#[test]
fn state_round_trips_as_json() {
    let mut s =
        DependencyState { breaker: Breaker::HalfOpen { opened_at: t(1), since: t(2), probes_out: 1 }, ..DependencyState::default() };
    s.count(t(5_000), AttemptKind::Retry);
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<DependencyState>(&json).unwrap(), s);
}

#[test]
fn effective_settings_prefer_the_pipelines_own_unless_name_only() {
    let server = vec![dep(None, Some(CircuitBreaker::new(5, 1_000, 1).unwrap()))];
    let own = vec![dep(Some(RetryBudget::new(0.5, 1.0, 10_000).unwrap()), None)];
    assert!(effective("payments-api", &own, &server).unwrap().retry_budget.is_some());
    let name_only = vec![dep(None, None)];
    assert!(effective("payments-api", &name_only, &server).unwrap().circuit_breaker.is_some());
    assert!(effective("payments-api", &name_only, &[]).unwrap().is_name_only());
    assert!(effective("other", &own, &server).is_none());
}

/// One gate call in a generated run: how far time moves first, and what is due.
#[derive(Clone, Debug)]
struct Step {
    advance_ms: u64,
    retry: bool,
    outcome: u8,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (0u64..1500, any::<bool>(), 0u8..3).prop_map(|(advance_ms, retry, outcome)| Step { advance_ms, retry, outcome }),
        1..400,
    )
}

proptest! {
    /// Whatever the sequence: at every admitted retry the retries admitted in the
    /// window ending then (counted from the full admission history, not the
    /// buckets) stay within max(ratio × first attempts in it, min × window);
    /// and every answer is Admit or Defer strictly later.
    #[test]
    fn budget_never_exceeds_its_bound_and_never_drops(
        ratio in 0.01f64..=1.0,
        min in 0.1f64..5.0,
        window_s in 1u64..30,
        run in steps(),
    ) {
        prop_assume!(min * window_s as f64 >= 1.0);
        let budget = RetryBudget::new(ratio, min, window_s * 1000).unwrap();
        let d = dep(Some(budget), None);
        let mut s = DependencyState::default();
        let mut now = t(1_700_000_000_000);
        let mut admitted: Vec<(i64, bool)> = Vec::new(); // (second, is_retry)
        for step in run {
            now = now.plus_ms(step.advance_ms);
            let kind = if step.retry { AttemptKind::Retry } else { AttemptKind::First };
            match gate(&d, &mut s, &Peers::default(), now, kind) {
                Gate::Admit => {
                    let sec = now.unix_ms().div_euclid(1000);
                    admitted.push((sec, step.retry));
                    let in_window = admitted.iter().filter(|(s, _)| *s > sec - window_s as i64);
                    let (firsts, retries) = in_window.fold((0u64, 0u64), |(f, r), (_, retry)| if *retry { (f, r + 1) } else { (f + 1, r) });
                    // Checked when a retry is admitted: later, first attempts
                    // leaving the window can lower the bound under retries
                    // already admitted (which then hold further retries back).
                    prop_assert!(!step.retry || retries as f64 <= budget.allowed(firsts) + 1e-9,
                        "{retries} retries with {firsts} firsts over {window_s}s");
                }
                Gate::Defer { until, .. } => {
                    prop_assert!(!step.retry || until > now);
                    prop_assert!(step.retry, "a first attempt is never deferred by a budget");
                    prop_assert!(until > now);
                }
            }
            prop_assert!(s.buckets.len() as u64 <= window_s);
        }
    }

    /// The breaker's transitions hold whatever happens: open only after
    /// `threshold` consecutive failures, holds until its cool-down, then lets at
    /// most `probes` through, and every deferral is strictly later.
    #[test]
    fn breaker_transitions(threshold in 1u32..6, probes in 1u32..4, cool in 100u64..5_000, run in steps()) {
        let d = dep(None, Some(CircuitBreaker::new(threshold, cool, probes).unwrap()));
        let mut s = DependencyState::default();
        let mut now = t(1_700_000_000_000);
        let mut out: Vec<Timestamp> = Vec::new(); // admitted, outcome not yet recorded
        for step in run {
            now = now.plus_ms(step.advance_ms);
            let before = s.breaker;
            match gate(&d, &mut s, &Peers::default(), now, AttemptKind::First) {
                Gate::Admit => {
                    match before {
                        Breaker::Open { until, .. } => prop_assert!(now >= until),
                        Breaker::HalfOpen { probes_out, .. } => prop_assert!(probes_out < probes),
                        Breaker::Closed { .. } => {}
                    }
                    if let Breaker::HalfOpen { probes_out, .. } = s.breaker { prop_assert!(probes_out <= probes); }
                    out.push(now);
                }
                Gate::Defer { until, reason } => {
                    prop_assert!(until > now);
                    prop_assert!(!matches!(s.breaker, Breaker::Closed { .. }), "a closed breaker holds nothing ({reason:?})");
                }
            }
            // Finish the oldest attempt out, with the generated outcome.
            if !out.is_empty() && step.outcome != 2 {
                let started = out.remove(0);
                let outcome = if step.outcome == 0 { Outcome::Failure } else { Outcome::Success };
                let was = s.breaker;
                record(&d, &mut s, &Peers::default(), now, started, outcome);
                if let Breaker::Closed { consecutive_failures } = was {
                    let consecutive = if outcome == Outcome::Failure { consecutive_failures + 1 } else { 0 };
                    if consecutive >= threshold {
                        prop_assert_eq!(s.breaker, Breaker::Open { opened_at: now, until: now.plus_ms(cool) });
                    } else {
                        prop_assert_eq!(s.breaker, Breaker::Closed { consecutive_failures: consecutive });
                    }
                }
                if let Breaker::Open { .. } = was { prop_assert_eq!(s.breaker, was); }
                if let Breaker::HalfOpen { since, .. } = was && started >= since {
                    let expected = if outcome == Outcome::Success { "closed" } else { "open" };
                    prop_assert_eq!(s.breaker.as_str(), expected);
                }
            }
        }
    }
}

/// Admissions of one second as a bucket.
fn bucket(second_ms: i64, first_attempts: u32, retries: u32) -> Bucket {
    Bucket { second: second_ms / 1000, first_attempts, retries }
}

#[test]
fn a_peers_retries_spend_the_budget_here_too() {
    // 10 s window, ratio 0.5, at least 1 retry per second: 10 retries allowed
    // with ≤ 20 first attempts in the window.
    let d = dep(Some(RetryBudget::new(0.5, 1.0, 10_000).unwrap()), None);
    let peer = DependencyState { buckets: vec![bucket(1_000_000, 10, 4), bucket(1_003_000, 0, 6)], ..DependencyState::default() };
    let peers = Peers::fold([&peer]);
    let mut own = DependencyState::default();
    // Alone, the retry would be admitted; with the peer's 10 retries it waits
    // until the peer's oldest retry leaves the window.
    assert_eq!(gate(&d, &mut own.clone(), &Peers::default(), t(1_005_000), AttemptKind::Retry), Gate::Admit);
    let g = gate(&d, &mut own, &peers, t(1_005_000), AttemptKind::Retry);
    assert_eq!(g, Gate::Defer { until: t(1_010_000), reason: DeferReason::Budget { used: 10, allowed: 10.0 } });
    // The peer's first attempts raise the bound as one's own do.
    let busier = DependencyState { buckets: vec![bucket(1_000_000, 30, 4), bucket(1_003_000, 0, 6)], ..peer.clone() };
    assert_eq!(gate(&d, &mut own, &Peers::fold([&busier]), t(1_005_000), AttemptKind::Retry), Gate::Admit);
    // The view counts both.
    let v = view(&d, &own, &Peers::fold([&busier]), t(1_005_000));
    assert_eq!(v.budget.map(|b| (b.first_attempts, b.retries)), Some((30, 11)));
}

#[test]
fn a_peers_opening_opens_the_breaker_here_once() {
    let d = dep(None, Some(CircuitBreaker::new(5, 30_000, 1).unwrap()));
    let opened = t(2_000_000);
    let peer =
        DependencyState { breaker: Breaker::Open { opened_at: opened, until: opened.plus_ms(30_000) }, ..DependencyState::default() };
    let peers = Peers::fold([&peer]);
    let mut own = DependencyState::default();
    assert_eq!(
        gate(&d, &mut own, &peers, opened.plus_ms(1_000), AttemptKind::First),
        Gate::Defer { until: opened.plus_ms(30_000), reason: DeferReason::BreakerOpen }
    );
    // After the cool-down this engine probes on its own, and a success closes
    // it: the same opening (the peer still shows it) is not adopted again.
    let probe_at = opened.plus_ms(30_000);
    assert_eq!(gate(&d, &mut own, &peers, probe_at, AttemptKind::First), Gate::Admit);
    record(&d, &mut own, &peers, probe_at.plus_ms(5), probe_at, Outcome::Success);
    assert_eq!(own.breaker, Breaker::Closed { consecutive_failures: 0 });
    assert_eq!(gate(&d, &mut own, &peers, probe_at.plus_ms(10), AttemptKind::First), Gate::Admit);
    // A later opening at the peer is.
    let again = probe_at.plus_ms(20);
    let peer = DependencyState { breaker: Breaker::HalfOpen { opened_at: again, since: again, probes_out: 1 }, ..peer };
    assert!(matches!(
        gate(&d, &mut own, &Peers::fold([&peer]), again.plus_ms(1), AttemptKind::First),
        Gate::Defer { reason: DeferReason::BreakerOpen, .. }
    ));
    assert_eq!(own.last_opened_at, Some(again));
}

#[test]
fn failures_here_and_at_peers_add_up_to_the_threshold() {
    let d = dep(None, Some(CircuitBreaker::new(5, 30_000, 1).unwrap()));
    let closed = |n| DependencyState { breaker: Breaker::Closed { consecutive_failures: n }, ..DependencyState::default() };
    let peers = Peers::fold([&closed(2), &closed(1)]);
    let mut own = closed(0);
    let now = t(3_000_000);
    record(&d, &mut own, &peers, now, now, Outcome::Failure);
    assert_eq!(own.breaker, Breaker::Closed { consecutive_failures: 1 }, "1 + 3 at peers is under 5");
    record(&d, &mut own, &peers, now.plus_ms(1), now, Outcome::Failure);
    assert_eq!(own.breaker, Breaker::Open { opened_at: now.plus_ms(1), until: now.plus_ms(30_001) });
    assert_eq!(own.last_opened_at, Some(now.plus_ms(1)));
}

proptest! {
    /// Splitting a dependency's admissions over several engines changes no
    /// budget decision: gating with one's own buckets and the peers' folded
    /// answers as one engine holding all of them would.
    #[test]
    fn a_budget_split_over_peers_decides_as_one(
        window_s in 1u64..20,
        ratio in 0.05f64..=1.0,
        admissions in proptest::collection::vec((0i64..25, 0u32..6, 0u32..4, 0usize..3), 0..30),
    ) {
        let budget = RetryBudget::new(ratio, 1.0, window_s * 1000).unwrap();
        let d = dep(Some(budget), None);
        let now = t(1_700_000_025_500);
        let mut split = [DependencyState::default(), DependencyState::default(), DependencyState::default()];
        let mut whole = DependencyState::default();
        for (second, firsts, retries, engine) in admissions {
            let admitted = bucket(1_700_000_000_000 + second * 1000, firsts, retries);
            split[engine].buckets.push(admitted);
            whole.buckets.push(admitted);
        }
        // Generated out of order: merged per second, oldest first, as kept.
        for s in split.iter_mut().chain([&mut whole]) { normalise(s); }
        let [mut own, a, b] = split;
        let alone = gate(&d, &mut whole, &Peers::default(), now, AttemptKind::Retry);
        let spread = gate(&d, &mut own, &Peers::fold([&a, &b]), now, AttemptKind::Retry);
        prop_assert_eq!(alone, spread);
    }
}

/// Merges a state's buckets per second, oldest first.
fn normalise(s: &mut DependencyState) {
    let folded = Peers::fold([&*s]);
    s.buckets = folded.buckets;
}

#[test]
fn a_peers_probe_closes_the_breaker_here_and_probes_count_across_peers() {
    let d = dep(None, Some(CircuitBreaker::new(5, 30_000, 1).unwrap()));
    let opened = t(4_000_000);
    let open =
        DependencyState { breaker: Breaker::Open { opened_at: opened, until: opened.plus_ms(30_000) }, ..DependencyState::default() };
    // Cool-down over: the peer has its one probe out, so none goes here.
    let probing = DependencyState {
        breaker: Breaker::HalfOpen { opened_at: opened, since: opened.plus_ms(30_000), probes_out: 1 },
        ..DependencyState::default()
    };
    let mut own = open.clone();
    assert_eq!(
        gate(&d, &mut own, &Peers::fold([&probing]), opened.plus_ms(30_500), AttemptKind::First),
        Gate::Defer { until: opened.plus_ms(31_500), reason: DeferReason::BreakerHalfOpen }
    );
    // Its probe succeeded: that closes the breaker here too.
    let closed_at = opened.plus_ms(30_800);
    let closed = DependencyState { last_opened_at: Some(opened), last_closed_at: Some(closed_at), ..DependencyState::default() };
    assert_eq!(gate(&d, &mut own, &Peers::fold([&closed]), opened.plus_ms(31_000), AttemptKind::First), Gate::Admit);
    assert_eq!(own.breaker, Breaker::Closed { consecutive_failures: 0 });
    // A closing older than this breaker's own opening does not close it.
    let mut reopened =
        DependencyState { breaker: Breaker::Open { opened_at: closed_at.plus_ms(1), until: closed_at.plus_ms(30_001) }, ..open };
    assert!(matches!(
        gate(&d, &mut reopened, &Peers::fold([&closed]), closed_at.plus_ms(2), AttemptKind::First),
        Gate::Defer { reason: DeferReason::BreakerOpen, .. }
    ));
}

#[test]
fn a_restored_state_has_no_probe_out() {
    let stalled =
        DependencyState { breaker: Breaker::HalfOpen { opened_at: t(1), since: t(2), probes_out: 1 }, ..DependencyState::default() };
    assert_eq!(stalled.restored().breaker, Breaker::HalfOpen { opened_at: t(1), since: t(2), probes_out: 0 });
    let open = DependencyState { breaker: Breaker::Open { opened_at: t(1), until: t(2) }, ..DependencyState::default() };
    assert_eq!(open.clone().restored(), open, "only probes are forgotten");
}

#[test]
fn without_settings_the_view_shows_the_breaker_that_opened_last_until_a_probe_closes_it() {
    let opened = t(5_000_000);
    let open =
        DependencyState { breaker: Breaker::Open { opened_at: opened, until: opened.plus_ms(10_000) }, ..DependencyState::default() };
    let here = DependencyState::default();
    assert_eq!(view_unset(&here, &Peers::fold([&open]), opened.plus_ms(1)).breaker, open.breaker);
    assert_eq!(
        view_unset(&here, &Peers::fold([&open]), opened.plus_ms(10_000)).breaker,
        Breaker::HalfOpen { opened_at: opened, since: opened.plus_ms(10_000), probes_out: 0 },
        "after its cool-down"
    );
    let closed = DependencyState { last_closed_at: Some(opened.plus_ms(11_000)), ..DependencyState::default() };
    assert_eq!(
        view_unset(&here, &Peers::fold([&open, &closed]), opened.plus_ms(12_000)).breaker,
        Breaker::Closed { consecutive_failures: 0 },
        "a probe closed it since"
    );
    assert_eq!(view_unset(&here, &Peers::default(), opened).breaker, here.breaker, "alone: its own");
}
