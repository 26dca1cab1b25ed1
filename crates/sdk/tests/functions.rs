//! Durable functions end to end on a real SQLite store: replay, suspension,
//! restarts, at-most-once, non-determinism, idempotent starts, errors.

use redrive_engine::{Clock, ManualClock};
use redrive_sdk::{Context, Engine, Error, StepError, StepPolicy, policy};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("f.db").display())
}

/// A virtual clock for the engine: retry delays and durable sleeps wait until
/// the test advances it.
fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(redrive_core::time::Timestamp::from_unix_ms(1_767_225_600_000)))
}

/// Polls `cond` until it holds; fails after 30 s of real time.
async fn until<F: FnMut() -> Fut, Fut: std::future::Future<Output = bool>>(what: &str, mut cond: F) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[derive(Default)]
struct Counts {
    invocations: AtomicUsize,
    a: AtomicUsize,
    b: AtomicUsize,
    c: AtomicUsize,
}

fn throttled_fast() -> StepPolicy {
    policy(["Step.THROTTLING"]).interval_seconds(0.05).backoff_rate(1.0).max_attempts(5).build().unwrap().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_steps_replay_without_running_and_retries_suspend_the_invocation() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(&url(&dir)).await.unwrap();
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    engine.register("order", move |ctx: Context, n: u32| {
        let c = c.clone();
        async move {
            c.invocations.fetch_add(1, Ordering::SeqCst);
            let a: u32 = ctx.step("a", StepPolicy::default(), |_| async { Ok(c.a.fetch_add(1, Ordering::SeqCst) as u32 + n) }).await?;
            let b: String = ctx
                .step("b", throttled_fast(), |_| async {
                    // Throttled twice, then succeeds.
                    if c.b.fetch_add(1, Ordering::SeqCst) < 2 { Err(StepError::throttled("busy")) } else { Ok(format!("b{a}")) }
                })
                .await?;
            c.c.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(format!("{a}/{b}"))
        }
    });
    let h = engine.start("order", "order-1", &7u32).await.unwrap();
    let out: String = h.result().await.unwrap();
    assert_eq!(out, "7/b7");
    assert_eq!(counts.a.load(Ordering::SeqCst), 1, "a completed once and was replayed from its checkpoint");
    assert_eq!(counts.b.load(Ordering::SeqCst), 3, "b: two throttled attempts, then success");
    assert_eq!(counts.c.load(Ordering::SeqCst), 1);
    assert_eq!(counts.invocations.load(Ordering::SeqCst), 3, "each retry suspended the invocation; the timer re-invoked it");
    let state = h.state().await.unwrap();
    assert_eq!(state.steps.len(), 2);
    assert_eq!(state.steps[1].attempt, 3);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_execution_resumes_after_a_restart_at_its_due_time_never_early() {
    let dir = tempfile::tempdir().unwrap();
    let fails = Arc::new(AtomicUsize::new(0));
    let clock = manual_clock();
    // When each attempt of the step ran, on the engine's (virtual) clock.
    let stamps = Arc::new(std::sync::Mutex::new(Vec::new()));
    let make = |fails: Arc<AtomicUsize>, stamps: Arc<std::sync::Mutex<Vec<redrive_core::time::Timestamp>>>| {
        let clock = clock.clone();
        move |ctx: Context, _: ()| {
            let (fails, stamps, clock) = (fails.clone(), stamps.clone(), clock.clone());
            async move {
                let p = policy(["Step.THROTTLING"]).interval_seconds(1.5).max_attempts(3).build()?;
                ctx.step("charge", p, |_| async {
                    stamps.lock().unwrap().push(clock.now());
                    if fails.fetch_add(1, Ordering::SeqCst) == 0 { Err(StepError::throttled("slow down")) } else { Ok(1u8) }
                })
                .await?;
                Ok::<_, Error>(())
            }
        }
    };
    let engine = Engine::open_with_clock(&url(&dir), clock.clone()).await.unwrap();
    engine.register("pay", make(fails.clone(), stamps.clone()));
    let h = engine.start("pay", "p-1", &()).await.unwrap();
    let id = h.id().to_string();
    // Wait for the failure to be durable (the step waits for its retry), then stop.
    until("the retry to be durable", || async { h.state().await.unwrap().steps.first().is_some_and(|s| s.due_at.is_some()) }).await;
    let due = h.state().await.unwrap().steps[0].due_at.unwrap();
    assert_eq!(due, clock.now().plus_ms(1500), "due 1.5 s after the failure (the clock has not moved)");
    engine.shutdown().await;
    drop((engine, h)); // nothing may hold the store file: one process (engine) per file

    let engine = Engine::open_with_clock(&url(&dir), clock.clone()).await.unwrap();
    engine.register("pay", make(fails.clone(), stamps.clone()));
    let result = tokio::spawn({
        let h = engine.execution(&id);
        async move { h.result::<()>().await }
    });
    clock.advance(1499);
    let not_yet = Instant::now() + Duration::from_millis(200);
    while Instant::now() < not_yet {
        assert!(!result.is_finished() && fails.load(Ordering::SeqCst) == 1, "retried before its due time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    clock.advance(1);
    tokio::time::timeout(Duration::from_secs(30), result).await.expect("retried once due").unwrap().unwrap();
    let state = engine.execution(&id).state().await.unwrap();
    assert_eq!(state.steps[0].attempt, 2);
    let stamps = stamps.lock().unwrap().clone();
    assert_eq!(stamps.len(), 2);
    assert_eq!(stamps[1], due, "retried exactly when due, after a restart");
    assert_eq!(stamps[1].ms_since(stamps[0]), 1500);
    engine.shutdown().await;
}

/// A step whose first attempt hangs until the engine is shut down (a crash
/// mid-attempt), with the given policy; the function reports what the step gave.
async fn interrupted_then_restarted(policy: StepPolicy) -> (String, usize) {
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let make = |runs: Arc<AtomicUsize>, policy: StepPolicy| {
        move |ctx: Context, _: ()| {
            let (runs, policy) = (runs.clone(), policy.clone());
            async move {
                let r: Result<String, StepError> = ctx
                    .step("charge", policy, |_| async {
                        if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                            std::future::pending::<()>().await; // "the process dies" mid-attempt
                        }
                        Ok("charged".to_string())
                    })
                    .await;
                Ok::<_, Error>(match r {
                    Ok(v) => v,
                    Err(e) => format!("not charged: {e}"),
                })
            }
        }
    };
    let engine = Engine::open(&url(&dir)).await.unwrap();
    engine.register("charge", make(runs.clone(), policy.clone()));
    let h = engine.start("charge", "c-1", &()).await.unwrap();
    let id = h.id().to_string();
    until("the first attempt to run", || async { runs.load(Ordering::SeqCst) > 0 }).await;
    engine.shutdown().await;
    drop((engine, h));
    let engine = Engine::open(&url(&dir)).await.unwrap();
    engine.register("charge", make(runs.clone(), policy));
    let out: String = engine.execution(&id).result().await.unwrap();
    engine.shutdown().await;
    (out, runs.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_attempt_is_retried_at_least_once_by_default() {
    let (out, runs) = interrupted_then_restarted(StepPolicy::default()).await;
    assert_eq!(out, "charged");
    assert_eq!(runs, 2, "the interrupted attempt ran again as a Step.SERVICE_FAULT retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_at_most_once_attempt_never_runs_again() {
    let (out, runs) = interrupted_then_restarted(StepPolicy::default().at_most_once()).await;
    assert!(out.starts_with("not charged: Step.SERVICE_FAULT"), "{out}");
    assert_eq!(runs, 1, "at most once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_calls_other_steps_fails_as_non_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(&url(&dir)).await.unwrap();
    let changed = Arc::new(AtomicBool::new(false));
    let c = changed.clone();
    engine.register("nd", move |ctx: Context, _: ()| {
        let c = c.clone();
        async move {
            let name = if c.load(Ordering::SeqCst) { "ship" } else { "charge" };
            // Fails once with a short backoff: the retry is a replay.
            let first = Arc::new(AtomicBool::new(true));
            ctx.step(name, throttled_fast(), |_| {
                let (first, c) = (first.clone(), c.clone());
                async move {
                    if first.swap(false, Ordering::SeqCst) {
                        c.store(true, Ordering::SeqCst); // the code "changes" before the replay
                        Err(StepError::throttled("later"))
                    } else {
                        Ok(())
                    }
                }
            })
            .await?;
            Ok::<_, Error>(())
        }
    });
    let h = engine.start("nd", "nd-1", &()).await.unwrap();
    match h.result::<()>().await {
        Err(Error::ExecutionFailed { exception_type, message }) => {
            assert_eq!(exception_type, "Function.NON_DETERMINISTIC");
            assert!(message.contains("\"ship\"") && message.contains("\"charge\""), "{message}");
        }
        other => panic!("{other:?}"),
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_returns_before_a_recorded_step_fails_as_non_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(&url(&dir)).await.unwrap();
    let changed = Arc::new(AtomicBool::new(false));
    let (c, counts) = (changed.clone(), Arc::new(Counts::default()));
    let n = counts.clone();
    engine.register("early", move |ctx: Context, _: ()| {
        let (c, n) = (c.clone(), n.clone());
        async move {
            n.invocations.fetch_add(1, Ordering::SeqCst);
            ctx.step("reserve", StepPolicy::default(), |_| async { Ok(()) }).await?;
            if c.load(Ordering::SeqCst) {
                return Ok::<_, Error>("returned early".to_string()); // the code "changed": no charge
            }
            // Fails once with a short backoff: the retry is a replay.
            ctx.step("charge", throttled_fast(), |_| async {
                n.b.fetch_add(1, Ordering::SeqCst);
                c.store(true, Ordering::SeqCst);
                Err::<(), _>(StepError::throttled("later"))
            })
            .await?;
            Ok("charged".to_string())
        }
    });
    let h = engine.start("early", "early-1", &()).await.unwrap();
    match h.result::<String>().await {
        Err(Error::ExecutionFailed { exception_type, message }) => {
            assert_eq!(exception_type, "Function.NON_DETERMINISTIC");
            assert!(message.contains("returned a result at call 2") && message.contains("step \"charge\" there"), "{message}");
        }
        other => panic!("the early return was not caught: {other:?}"),
    }
    let state = h.state().await.unwrap();
    assert_eq!(state.status, redrive_core::function::FunctionStatus::Failed);
    assert!(state.result.is_none(), "the early return's result is not the execution's");
    assert_eq!((state.steps.len(), counts.b.load(Ordering::SeqCst)), (2, 1));
    assert_eq!(counts.invocations.load(Ordering::SeqCst), 2, "not retried: the first run and the replay");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_execution_name_is_an_idempotency_key() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(&url(&dir)).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    engine.register("once", move |ctx: Context, n: u32| {
        let r = r.clone();
        async move { Ok::<_, Error>(ctx.step("s", StepPolicy::default(), |_| async { Ok(r.fetch_add(1, Ordering::SeqCst) as u32 + n) }).await?) }
    });
    let a = engine.start("once", "order-9", &1u32).await.unwrap();
    let b = engine.start("once", "order-9", &1u32).await.unwrap();
    assert_eq!(a.id(), b.id());
    assert_eq!(b.result::<u32>().await.unwrap(), 1);
    match engine.start("once", "order-9", &2u32).await {
        Err(Error::ExecutionAlreadyExists { name, execution_id, .. }) => {
            assert_eq!((name.as_str(), execution_id.as_str()), ("order-9", a.id()));
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a different input under the same name was accepted"),
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(matches!(engine.start("nope", "x", &()).await, Err(Error::NotRegistered(_))));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_outside_steps_fail_at_once_and_exhausted_steps_return_their_error() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(&url(&dir)).await.unwrap();
    let invocations = Arc::new(AtomicUsize::new(0));
    let i = invocations.clone();
    engine.register("outside", move |_ctx: Context, _: ()| {
        let i = i.clone();
        async move {
            i.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Error::msg("bad order"))
        }
    });
    let h = engine.start("outside", "o-1", &()).await.unwrap();
    match h.result::<()>().await {
        Err(Error::ExecutionFailed { exception_type, message }) => {
            assert_eq!((exception_type.as_str(), message.as_str()), ("Function.ERROR", "bad order"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(invocations.load(Ordering::SeqCst), 1, "not retried");

    engine.register("handles", |ctx: Context, _: ()| async move {
        let r: Result<(), StepError> =
            ctx.step("declined", StepPolicy::none(), |_| async { Err(StepError::of("Payment.DECLINED", "card declined")) }).await;
        let fallback: String = match r {
            Err(e) if e.exception_type.to_string() == "Payment.DECLINED" => {
                ctx.step("invoice", StepPolicy::default(), |_| async { Ok("invoiced".to_string()) }).await?
            }
            other => panic!("{other:?}"),
        };
        Ok::<_, Error>(fallback)
    });
    let h = engine.start("handles", "h-1", &()).await.unwrap();
    let r = h.result::<String>().await;
    assert_eq!(r.as_ref().ok().map(String::as_str), Some("invoiced"), "{r:?} {:?}", h.state().await);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_sleep_suspends_and_wakes_no_earlier() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let engine = Engine::open_with_clock(&url(&dir), clock.clone()).await.unwrap();
    engine.register("nap", |ctx: Context, _: ()| async move {
        ctx.sleep("cool-down", Duration::from_millis(800)).await;
        Ok::<_, Error>("awake".to_string())
    });
    let h = engine.start("nap", "n-1", &()).await.unwrap();
    until("the sleep to be durable", || async { h.state().await.unwrap().steps.first().is_some_and(|s| s.due_at.is_some()) }).await;
    let due = h.state().await.unwrap().steps[0].due_at.unwrap();
    assert_eq!(due, clock.now().plus_ms(800));
    let result = tokio::spawn({
        let h = engine.execution(h.id());
        async move { h.result::<String>().await }
    });
    clock.advance(799);
    let not_yet = Instant::now() + Duration::from_millis(200);
    while Instant::now() < not_yet {
        assert!(!result.is_finished(), "woke before its time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    clock.advance(1);
    assert_eq!(tokio::time::timeout(Duration::from_secs(30), result).await.expect("woke once due").unwrap().unwrap(), "awake");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_executions_hold_no_task_and_no_memory_in_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    // Virtual time: the one-hour retries never come due during the test.
    let engine = Engine::open_with_clock(&url(&dir), manual_clock()).await.unwrap();
    engine.register("wait", |ctx: Context, _: ()| async move {
        let hour = policy(["Step.THROTTLING"]).interval_seconds(3600.0).max_attempts(1).build()?;
        ctx.step("call", hour, |_| async { Err::<(), _>(StepError::throttled("come back in an hour")) }).await?;
        Ok::<_, Error>(())
    });
    let tasks_before = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    const N: usize = 1000;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(engine.start("wait", &format!("w-{i}"), &()).await.unwrap().id().to_string());
    }
    // Every execution reaches its one-hour backoff and is dropped from memory.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let waiting = {
            let mut n = 0;
            for id in ids.iter().step_by(50) {
                if engine.execution(id).state().await.unwrap().steps.first().is_some_and(|s| s.due_at.is_some()) {
                    n += 1;
                }
            }
            n
        };
        if waiting == N / 50 {
            break;
        }
        assert!(Instant::now() < deadline, "executions did not all suspend");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Suspending tasks end on their own: wait (bounded) for the count to settle.
    let alive = || tokio::runtime::Handle::current().metrics().num_alive_tasks();
    let settle = Instant::now() + Duration::from_secs(10);
    while alive() > tasks_before + 5 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let tasks_after = alive();
    assert!(tasks_after <= tasks_before + 5, "{tasks_after} tasks alive (before: {tasks_before}) with {N} suspended executions");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_action_runs_a_registered_function_under_the_action_policy() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(&url(&dir)).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    engine.register("rollout", move |ctx: Context, input: serde_json::Value| {
        let c = c.clone();
        async move {
            let n = ctx.step("deploy", StepPolicy::none(), |_| async { Ok(c.fetch_add(1, Ordering::SeqCst)) }).await?;
            if n == 0 {
                // The function fails its first execution; the action's policy retries it.
                return Err(Error::Step(StepError::throttled("region busy")));
            }
            Ok::<_, Error>(serde_json::json!({"deployed": input["version"], "calls": n + 1}))
        }
    });
    let definition = "name: release\nstages:\n  - name: Ship\n    actions:\n      - name: Rollout\n        function: rollout\n        retryPolicies: [{exceptionType: Step.THROTTLING, intervalSeconds: 0.05, maxAttempts: 2}]\n";
    let run = engine.start_pipeline(definition, &serde_json::json!({"version": "1.2.3"})).await.unwrap();
    assert_eq!(run.wait().await.unwrap(), "Succeeded");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one function execution per attempt: the failed one and its retry");
    let unknown = "name: orphan\nstages:\n  - name: S\n    actions:\n      - name: A\n        function: nobody\n";
    assert_eq!(engine.start_pipeline(unknown, &()).await.unwrap().wait().await.unwrap(), "Failed");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_fails_for_good_is_dead_lettered_and_a_redrive_resumes_it() {
    use redrive_sdk::FunctionOptions;
    use redrive_store::Store;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(&url(&dir)).await.unwrap();
    let fixed = Arc::new(AtomicBool::new(false));
    let (prepared, charged) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (f, p, c) = (fixed.clone(), prepared.clone(), charged.clone());
    engine.register_with("pay", FunctionOptions::default().dead_letter_queue("retry-pay"), move |ctx: Context, order: u32| {
        let (f, p, c) = (f.clone(), p.clone(), c.clone());
        async move {
            ctx.step("prepare", StepPolicy::default(), |_| async { Ok(p.fetch_add(1, Ordering::SeqCst)) }).await?;
            let id: String = ctx
                .step("charge", StepPolicy::none(), |_| async {
                    if f.load(Ordering::SeqCst) {
                        c.fetch_add(1, Ordering::SeqCst);
                        Ok(format!("ch-{order}"))
                    } else {
                        Err(StepError::of("Payment.GATEWAY_DOWN", "gateway down"))
                    }
                })
                .await?;
            Ok::<_, Error>(id)
        }
    });
    let h = engine.start("pay", "order-5", &5u32).await.unwrap();
    assert!(matches!(h.result::<String>().await, Err(Error::ExecutionFailed { .. })));
    let store = redrive_store::SqliteStore::open(&dir.path().join("f.db"), Default::default());
    assert!(store.is_err(), "the engine holds the store");
    let state = h.state().await.unwrap();
    let link = state.dead_letter.expect("dead-lettered");
    assert_eq!((link.entry_id.as_str(), link.queue.as_str()), (h.id(), "retry-pay"));
    // Still broken: the redrive resumes it, it fails again, the entry comes back.
    let first = engine.redrive_entry(h.id()).await.unwrap();
    assert!(matches!(first.result::<String>().await, Err(Error::ExecutionFailed { .. })));
    // Fix the gateway and redrive: the execution resumes, "prepare" is not redone.
    fixed.store(true, Ordering::SeqCst);
    let again = engine.redrive_entry(h.id()).await.unwrap();
    assert_eq!(again.id(), h.id(), "the same execution resumes");
    assert_eq!(again.result::<String>().await.unwrap(), "ch-5");
    assert_eq!((prepared.load(Ordering::SeqCst), charged.load(Ordering::SeqCst)), (1, 1));
    // Redriving a resolved entry is refused.
    assert!(engine.redrive_entry(h.id()).await.is_err());
    engine.shutdown().await;
    drop((engine, h, first, again));
    let store = redrive_store::SqliteStore::open(&dir.path().join("f.db"), Default::default()).unwrap();
    let entry = store.get_dlq_entry(&link.entry_id).await.unwrap().unwrap();
    assert_eq!((entry.state, entry.redrive_count), (redrive_store::DlqEntryState::Resolved, 2));
    assert_eq!((entry.action.as_str(), entry.exception_type.as_str()), ("charge", "Payment.GATEWAY_DOWN"));
    assert_eq!(entry.source, redrive_store::Target::function("pay"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predicate_decides_which_failures_are_retried() {
    use redrive_sdk::RetryPolicy;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(&url(&dir)).await.unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    engine.register("cond", move |ctx: Context, permanent: bool| {
        let a = a.clone();
        async move {
            // Throttling is retried, but not when the message says it is permanent.
            let p = throttled_fast().retry_if(|e| !e.message.contains("permanent"));
            let r: Result<(), StepError> = ctx
                .step("call", p, |_| async {
                    let n = a.fetch_add(1, Ordering::SeqCst);
                    if n < 2 { Err(StepError::throttled(if permanent { "permanent quota" } else { "busy" })) } else { Ok(()) }
                })
                .await;
            Ok::<_, Error>(r.is_ok())
        }
    });
    assert!(engine.start("cond", "transient", &false).await.unwrap().result::<bool>().await.unwrap());
    assert_eq!(attempts.swap(0, Ordering::SeqCst), 3, "retried twice");
    assert!(!engine.start("cond", "permanent", &true).await.unwrap().result::<bool>().await.unwrap());
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "the predicate refused the retry");
    // RetryPolicy::none() is a StepPolicy too.
    engine.register("never", |ctx: Context, _: ()| async move {
        let r: Result<(), StepError> =
            ctx.step("s", RetryPolicy::none(), |_| async { Err(StepError::new(redrive_sdk::ExceptionType::ServiceFault, "x")) }).await;
        Ok::<_, Error>(r.is_err())
    });
    assert!(engine.start("never", "n", &()).await.unwrap().result::<bool>().await.unwrap());
    engine.shutdown().await;
}
