//! Step keys, the idempotency keys a step hands to external services: the same
//! on every retry and on a replay after `kill -9`, different for a repeated name.

mod support;

use redrive_sdk::{Context, Engine, Error, StepError, StepPolicy, policy};
use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one attempt saw: the step's name, its key, the attempt number.
type Seen = Arc<Mutex<Vec<(String, String, u32)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_keeps_its_key_across_retries_and_a_repeated_name_gets_another() {
    let dir = tempfile::tempdir().unwrap();
    // Virtual time: the retry delays and the sleep move when the clock does.
    let clock = Arc::new(redrive_engine::ManualClock::new(redrive_core::time::Timestamp::from_unix_ms(1_767_225_600_000)));
    let engine = Engine::open_with_clock(&format!("sqlite://{}", dir.path().join("k.db").display()), clock.clone()).await.unwrap();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    engine.register("poller", move |ctx: Context, _: ()| {
        let s = s.clone();
        async move {
            // Throttled twice (each retry suspends the invocation, which replays), then done.
            let retry = policy(["Step.THROTTLING"]).interval_seconds(0.05).backoff_rate(1.0).max_attempts(5).build()?;
            for call in 0..2 {
                let s = &s;
                ctx.step("poll", retry.clone(), |step| async move {
                    s.lock().unwrap().push((step.name().to_string(), step.key().to_string(), step.attempt()));
                    if call == 0 && step.attempt() < 3 { Err(StepError::throttled("not yet")) } else { Ok(()) }
                })
                .await?;
                if call == 0 {
                    ctx.sleep("between", Duration::from_millis(1)).await; // sleeps take positions too
                }
            }
            Ok::<_, Error>(())
        }
    });
    let h = engine.start("poller", "p-1", &()).await.unwrap();
    let result = tokio::spawn({
        let h = engine.execution(h.id());
        async move { h.result::<()>().await }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !result.is_finished() {
        assert!(Instant::now() < deadline, "the poller never finished: {:?}", seen.lock().unwrap());
        clock.advance(50);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    result.await.unwrap().unwrap();
    let id = h.id();
    let seen = seen.lock().unwrap().clone();
    let first = format!("{id}/0");
    let second = format!("{id}/2");
    let expected: Vec<(String, String, u32)> =
        vec![("poll".into(), first.clone(), 1), ("poll".into(), first.clone(), 2), ("poll".into(), first, 3), ("poll".into(), second, 1)];
    assert_eq!(seen, expected, "one key for every attempt of a step; the second \"poll\" (after the sleep) has its own");
    engine.shutdown().await;
}

const CHILD_ENV: &str = "REDRIVE_SDK_TEST_STEP_KEY_DB";

/// Not a test on its own: the body of the child process (runs only with CHILD_ENV).
/// Step "charge" logs `KEY ATTEMPT` and, on its first attempt, hangs until killed.
#[test]
fn child_process_charge() {
    let Ok(db) = std::env::var(CHILD_ENV) else { return };
    let dir = Path::new(&db).parent().unwrap().to_path_buf();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let engine = Engine::open(&format!("sqlite://{db}")).await.unwrap();
        let d = dir.clone();
        engine.register("charge", move |ctx: Context, _: ()| {
            let d = d.clone();
            async move {
                ctx.step("prepare", StepPolicy::default(), |_| async { Ok(()) }).await?;
                // An interrupted attempt is retried at once.
                let again = policy(["Step.SERVICE_FAULT"]).interval_seconds(0.0).max_attempts(3).build()?;
                let d = &d;
                ctx.step("charge", again, |step| async move {
                    let line = format!("{} {}\n", step.key(), step.attempt());
                    append(&d.join("keys.log"), &line);
                    if step.attempt() == 1 {
                        std::future::pending::<()>().await; // killed here
                    }
                    Ok(())
                })
                .await?;
                Ok::<_, Error>(())
            }
        });
        let h = engine.start("charge", "c-1", &()).await.unwrap();
        h.result::<()>().await.unwrap();
        std::fs::write(dir.join("done"), h.id()).unwrap();
        engine.shutdown().await;
    });
}

fn append(path: &Path, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(line.as_bytes()).unwrap();
    f.sync_all().unwrap();
}

fn spawn_child(db: &Path) -> Child {
    support::spawn_child("child_process_charge", CHILD_ENV, db)
}

/// Waits (polling, up to a deadline) until `done` holds.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_step_keeps_its_key_when_replayed_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let log = dir.path().join("keys.log");
    let lines = || std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_string).collect::<Vec<_>>();
    let mut child = spawn_child(&db);
    // The kill lands mid-attempt: the action has run (its marker line) and the
    // attempt is durably started, with no result recorded.
    wait_for("the first attempt of charge", || !lines().is_empty());
    let state = support::live_state(&db).expect("the execution is stored");
    let charge = support::step(&state, "charge").expect("charge has begun");
    assert_eq!((charge["attempt"].as_u64(), charge["result"].is_null(), &state["status"]), (Some(1), true, &"Running".into()), "{state}");
    assert!(child.try_wait().unwrap().is_none(), "the first process is still in the attempt");
    support::kill9(&mut child);
    let mut child = spawn_child(&db);
    wait_for("the replayed execution to finish", || child.try_wait().unwrap().is_some());
    let id = std::fs::read_to_string(dir.path().join("done")).expect("the second process finished the execution");
    assert_eq!(lines(), [format!("{id}/1 1"), format!("{id}/1 2")], "the attempt after the kill had the interrupted one's key");
}
