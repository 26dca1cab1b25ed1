//! Dead-letter queues through the driver and a real SQLite store: entries are
//! written with the failure, moved exactly once, and runs respect their scope.
//! The engine and the redriver run on a [`ManualClock`]: entry ages and sleeping
//! actions are virtual; waits poll a condition with a deadline.

mod common;

use common::{advance_until, manual_clock, until, within};
use redrive_core::definition::source::parse_document;
use redrive_core::machine::ExecutionStatus;
use redrive_core::time::Timestamp;
use redrive_engine::redrive::{QueueScope, Rate, RedriveMode, RedriveRequest, RedriveSummary, Redriver, SkipReason};
use redrive_engine::{Clock, Driver, DriverConfig, EngineError, EngineHandle, LoadedPipeline, ManualClock, Notification, SystemClock};
use redrive_store::{DlqEntryFilter, DlqEntryState, SqliteOptions, SqliteStore, Store};
use std::sync::Arc;

async fn pipeline<S: Store>(store: &S, yaml: &str) -> Arc<LoadedPipeline> {
    let doc = parse_document(yaml).unwrap();
    let name = doc.get("name").map(|n| n.to_json().as_str().unwrap().to_string()).unwrap();
    let rec = store.put_pipeline(&name, &doc.to_json().to_string(), None, SystemClock.now()).await.unwrap();
    Arc::new(LoadedPipeline::from_record(rec).unwrap())
}

/// A pipeline whose action fails (Action.FAILED, no retry) unless `flag` exists.
/// PARALLEL: the executions of one pipeline are independent, so a run can retry
/// many at once (in SUPERSEDED mode a retry into a stage another execution is
/// processing is refused until it leaves).
fn flagged(name: &str, queue: &str, flag: &std::path::Path) -> String {
    format!(
        "name: {name}\nexecutionMode: PARALLEL\ndeadLetterQueue: {queue}\nstages:\n  - name: Build\n    actions:\n      - name: Check\n        command: [sh, -c, 'test -f {}']\n",
        flag.display()
    )
}

struct Env {
    _dir: tempfile::TempDir,
    flag: std::path::PathBuf,
    clock: Arc<ManualClock>,
    store: Arc<SqliteStore>,
    handle: EngineHandle,
    join: tokio::task::JoinHandle<Result<(), EngineError>>,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("fixed");
        let store = Arc::new(SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()).unwrap());
        let clock = manual_clock();
        let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
        Env { _dir: dir, flag, clock, store, handle, join }
    }

    async fn failed_executions(&self, p: &Arc<LoadedPipeline>, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..n {
            // A virtual millisecond apart, so "oldest first" has an order to show.
            self.clock.advance(1);
            let id = self.handle.start(p.clone(), format!(r#"{{"order":{i}}}"#)).await.unwrap();
            self.finish(&id).await;
            assert_eq!(self.handle.wait(&id).await.unwrap().status, ExecutionStatus::Failed);
            ids.push(id);
        }
        ids
    }

    /// Moves the clock until execution `id` has finished (its actions sleep on it).
    async fn finish(&self, id: &str) {
        advance_until(&self.clock, 100, "the execution to finish", || {
            let (store, id) = (self.store.clone(), id.to_string());
            async move { store.get_execution(&id).await.unwrap().unwrap().status != "InProgress" }
        })
        .await;
    }

    fn redriver(&self) -> Redriver<SqliteStore> {
        Redriver {
            store: self.store.clone(),
            engine: self.handle.clone(),
            clock: self.clock.clone(),
            running: Default::default(),
            shard_holders: None,
        }
    }

    async fn state_of(&self, entry: &str) -> DlqEntryState {
        self.store.get_dlq_entry(entry).await.unwrap().unwrap().state
    }

    /// Waits until the entry has left `REDRIVEN` (its resubmission settled).
    async fn settled(&self, entry: &str) -> redrive_store::DlqEntryRecord {
        until("the entry to leave REDRIVEN", || {
            let (store, entry) = (self.store.clone(), entry.to_string());
            async move { store.get_dlq_entry(&entry).await.unwrap().unwrap().state != DlqEntryState::Redriven }
        })
        .await;
        self.store.get_dlq_entry(entry).await.unwrap().unwrap()
    }

    async fn stop(self) {
        self.handle.shutdown().await;
        self.join.await.unwrap().unwrap();
    }
}

fn request(scope: QueueScope, mode: RedriveMode) -> RedriveRequest {
    RedriveRequest {
        scope,
        entry_id: None,
        force: false,
        exception_type: None,
        pipeline_name: None,
        older_than_ms: None,
        max_entries: None,
        rate: Rate { per_second: None },
        mode,
        input_patch: None,
    }
}

async fn run(env: &Env, req: RedriveRequest) -> RedriveSummary {
    let r = env.redriver();
    let record = r.create_run(&req, None).await.unwrap();
    let done = r.run(record, req).await;
    assert_eq!(done.status, "SUCCEEDED", "{}", done.summary_json);
    serde_json::from_str(&done.summary_json).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_for_good_writes_one_entry_with_its_source_error_and_input() {
    let env = Env::new();
    let p = pipeline(&*env.store, &flagged("orders", "retry-orders", &env.flag)).await;
    let ids = env.failed_executions(&p, 1).await;
    let e = env.store.get_dlq_entry(&ids[0]).await.unwrap().expect("the entry is keyed by the execution id");
    assert_eq!((e.queue.as_str(), e.state, e.redrive_count, e.max_redrives), ("retry-orders", DlqEntryState::Queued, 0, 3));
    assert_eq!((&e.source, e.execution_id.as_str()), (&redrive_store::Target::pipeline("orders", 1), ids[0].as_str()));
    assert_eq!((e.stage.as_str(), e.action.as_str(), e.exception_type.as_str()), ("Build", "Check", "Action.FAILED"));
    assert_eq!(e.input_json, r#"{"order":0}"#);
    let detail: serde_json::Value = serde_json::from_str(&e.detail_json).unwrap();
    assert_eq!(detail["attempts"], 1);
    assert!(e.first_failure_at <= e.last_failure_at && e.last_failure_at <= e.entered_at);
    let all = env.store.list_dlq_entries(DlqEntryFilter::default()).await.unwrap();
    assert_eq!(all.len(), 1, "exactly one entry");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_stage_redrive_returns_a_still_failing_entry_then_resolves_it_once_fixed() {
    let env = Env::new();
    let p = pipeline(&*env.store, &flagged("orders", "retry-orders", &env.flag)).await;
    let id = env.failed_executions(&p, 1).await.remove(0);
    // Still broken: the same execution retries its stage and fails again.
    let to = env.handle.redrive(&id, RedriveMode::RetryStage, false, None, None, None).await.unwrap();
    assert_eq!(to, id, "retry-stage resubmits the original execution");
    let e = env.settled(&id).await;
    assert_eq!((e.state, e.redrive_count), (DlqEntryState::Queued, 1));
    assert_eq!(e.redriven_to.as_deref(), Some(id.as_str()));
    let ledger = env.store.ledger(&id).await.unwrap();
    assert_eq!(ledger.iter().filter(|l| l.trigger == "redrive").count(), 1);
    // Fixed: the redrive succeeds and the entry is resolved, not re-queued.
    std::fs::write(&env.flag, "").unwrap();
    env.handle.redrive(&id, RedriveMode::RetryStage, false, None, None, None).await.unwrap();
    let e = env.settled(&id).await;
    assert_eq!((e.state, e.redrive_count), (DlqEntryState::Resolved, 2));
    assert_eq!(env.handle.wait(&id).await.unwrap().status, ExecutionStatus::Succeeded);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_execution_redrive_starts_a_linked_execution_with_the_original_input() {
    let env = Env::new();
    let p = pipeline(&*env.store, &flagged("orders", "retry-orders", &env.flag)).await;
    let id = env.failed_executions(&p, 1).await.remove(0);
    let to = env.handle.redrive(&id, RedriveMode::NewExecution, false, None, Some(p.clone()), None).await.unwrap();
    assert_ne!(to, id);
    let e = env.settled(&id).await;
    assert_eq!(
        (e.state, e.redrive_count, e.execution_id.as_str()),
        (DlqEntryState::Queued, 1, to.as_str()),
        "back, from the new execution"
    );
    assert_eq!(env.store.get_execution(&to).await.unwrap().unwrap().input_json, r#"{"order":0}"#);
    assert_eq!(env.store.list_dlq_entries(DlqEntryFilter::default()).await.unwrap().len(), 1, "still one entry for the lineage");
    std::fs::write(&env.flag, "").unwrap();
    let again = env.handle.redrive(&id, RedriveMode::NewExecution, false, None, Some(p.clone()), None).await.unwrap();
    assert_eq!(env.handle.wait(&again).await.unwrap().status, ExecutionStatus::Succeeded);
    assert_eq!(env.settled(&id).await.state, DlqEntryState::Resolved);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_redrives_and_a_purge_move_each_entry_exactly_once() {
    let env = Env::new();
    // A failure that takes virtual time: redriven entries stay REDRIVEN while
    // we look, because the clock does not move meanwhile.
    let yaml = "name: slow\ndeadLetterQueue: retry-slow\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {sleepMs: 300, failFirst: 1000, failWith: Action.FAILED}\n";
    let p = pipeline(&*env.store, yaml).await;
    let ids = env.failed_executions(&p, 6).await;
    // Every entry gets three concurrent redrives and a purge races with them.
    let mut tasks = tokio::task::JoinSet::new();
    for id in &ids {
        for _ in 0..3 {
            let (h, id) = (env.handle.clone(), id.clone());
            tasks.spawn(async move { h.redrive(&id, RedriveMode::RetryStage, false, None, None, None).await.map(|_| id) });
        }
    }
    let purge = env.handle.purge(DlqEntryFilter { queue: Some("retry-slow".into()), ..Default::default() });
    let purged = purge.await.unwrap();
    let mut redriven = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(id) => redriven.push(id),
            Err(EngineError::NotRedriven(SkipReason::BeingRedriven | SkipReason::NotQueued(_) | SkipReason::NotFound)) => {}
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    redriven.sort();
    let before = redriven.len();
    redriven.dedup();
    assert_eq!(before, redriven.len(), "no entry was redriven twice");
    // Each entry was either purged (gone, its execution untouched) or redriven once.
    assert_eq!(purged as usize + redriven.len(), ids.len(), "purged {purged}, redriven {redriven:?}");
    for id in &ids {
        let entry = env.store.get_dlq_entry(id).await.unwrap();
        let redrives = env.store.ledger(id).await.unwrap().iter().filter(|l| l.trigger == "redrive").count();
        if redriven.contains(id) {
            assert!(entry.is_some(), "a redriven entry is never purged");
            assert!(redrives <= 1);
        } else {
            assert!(entry.is_none(), "entry {id} was neither purged nor redriven");
            assert_eq!(redrives, 0);
        }
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_entries_are_parked_and_only_a_forced_single_redrive_moves_them() {
    let env = Env::new();
    let p = pipeline(&*env.store, &flagged("orders", "retry-orders", &env.flag)).await;
    env.store.configure_dlq_queue("retry-orders", 2, SystemClock.now()).await.unwrap();
    let ids = env.failed_executions(&p, 2).await;
    let q = || request(QueueScope::Queue("retry-orders".into()), RedriveMode::RetryStage);
    for round in 1..=2u32 {
        let s = run(&env, q()).await;
        assert_eq!((s.matched, s.redriven, s.parked), (2, 2, 0), "round {round}");
        for id in &ids {
            assert_eq!(env.settled(id).await.redrive_count, round);
        }
    }
    // Both are poison now: a run parks them, a direct redrive refuses them.
    let s = run(&env, q()).await;
    assert_eq!((s.matched, s.redriven, s.parked), (0, 0, 2));
    let err = env.handle.redrive(&ids[0], RedriveMode::RetryStage, false, None, None, None).await.unwrap_err();
    assert!(matches!(err, EngineError::NotRedriven(SkipReason::Poison { redrive_count: 2, max_redrives: 2 })), "{err}");
    // Forced, one entry: it moves, fails again, and returns with its count.
    let s = run(&env, RedriveRequest { entry_id: Some(ids[0].clone()), force: true, ..q() }).await;
    assert_eq!(s.redriven, 1);
    assert_eq!(env.settled(&ids[0]).await.redrive_count, 3);
    assert_eq!(env.state_of(&ids[1]).await, DlqEntryState::Queued);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_run_touches_only_queues_under_its_prefix_and_filters_apply() {
    let env = Env::new();
    let a = pipeline(&*env.store, &flagged("a", "retry-a", &env.flag)).await;
    let b = pipeline(&*env.store, &flagged("b", "retry-b", &env.flag)).await;
    let c = pipeline(&*env.store, &flagged("c", "retryx", &env.flag)).await;
    let d = pipeline(&*env.store, &flagged("d", "other", &env.flag)).await;
    let ia = env.failed_executions(&a, 2).await;
    let ib = env.failed_executions(&b, 1).await;
    let ic = env.failed_executions(&c, 1).await;
    let id = env.failed_executions(&d, 1).await;
    std::fs::write(&env.flag, "").unwrap();
    // Filter by source: only pipeline a's entries under the prefix.
    let s = run(
        &env,
        RedriveRequest { pipeline_name: Some("a".into()), ..request(QueueScope::Prefix("retry-".into()), RedriveMode::RetryStage) },
    )
    .await;
    assert_eq!((s.matched, s.redriven), (2, 2));
    for e in &ia {
        assert_eq!(env.settled(e).await.state, DlqEntryState::Resolved);
    }
    assert_eq!(env.state_of(&ib[0]).await, DlqEntryState::Queued);
    // A filter on an exception type nobody has matches nothing.
    let s = run(
        &env,
        RedriveRequest {
            exception_type: Some("Step.THROTTLING".into()),
            ..request(QueueScope::Prefix("retry-".into()), RedriveMode::RetryStage)
        },
    )
    .await;
    assert_eq!(s.matched, 0);
    // `older_than` excludes fresh entries.
    let s = run(
        &env,
        RedriveRequest { older_than_ms: Some(3_600_000), ..request(QueueScope::Prefix("retry-".into()), RedriveMode::RetryStage) },
    )
    .await;
    assert_eq!(s.matched, 0);
    // An hour later (virtual) the same filter matches what is left under the prefix.
    env.clock.advance(3_600_000);
    let s = run(
        &env,
        RedriveRequest { older_than_ms: Some(3_600_000), ..request(QueueScope::Prefix("retry-".into()), RedriveMode::RetryStage) },
    )
    .await;
    assert_eq!((s.matched, s.redriven), (1, 1));
    assert_eq!(env.settled(&ib[0]).await.state, DlqEntryState::Resolved);
    assert_eq!(env.state_of(&ic[0]).await, DlqEntryState::Queued, "retryx is not under retry-");
    assert_eq!(env.state_of(&id[0]).await, DlqEntryState::Queued);
    // The scope is enforced where entries move, not only in the query.
    let err = env.handle.redrive(&id[0], RedriveMode::RetryStage, false, Some("retry-"), None, None).await.unwrap_err();
    assert!(matches!(err, EngineError::NotRedriven(SkipReason::OutOfScope { .. })), "{err}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_without_changing_anything() {
    let env = Env::new();
    let p = pipeline(&*env.store, &flagged("orders", "retry-orders", &env.flag)).await;
    let ids = env.failed_executions(&p, 3).await;
    let plan = env
        .redriver()
        .plan(&RedriveRequest { max_entries: Some(2), ..request(QueueScope::Queue("retry-orders".into()), RedriveMode::RetryStage) })
        .await
        .unwrap();
    assert_eq!((plan.matched, plan.would_redrive, plan.items.len()), (2, 2, 2));
    assert_eq!(plan.items[0].entry_id, ids[0], "oldest first");
    assert!(plan.items[0].detail.contains("retry stage Build"), "{}", plan.items[0].detail);
    for id in &ids {
        let e = env.store.get_dlq_entry(id).await.unwrap().unwrap();
        assert_eq!((e.state, e.redrive_count), (DlqEntryState::Queued, 0));
    }
    assert!(env.store.list_redrive_runs(Default::default()).await.unwrap().is_empty(), "a dry run records nothing");
    let _ = Timestamp::EPOCH;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_predicts_the_refusal_of_a_retry_into_a_locked_stage() {
    let env = Env::new();
    // SUPERSEDED (the default): the second start waits before stage S, which
    // the first holds (its attempts sleep on the clock, which stands still
    // meanwhile), and enters it once the first failed there.
    let yaml = "name: sup\ndeadLetterQueue: retry-sup\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {sleepMs: 300, failFirst: 1000, failWith: Action.FAILED}\n";
    let p = pipeline(&*env.store, yaml).await;
    let mut events = env.handle.subscribe();
    let first = env.handle.start(p.clone(), "{}".into()).await.unwrap();
    within("the first execution's attempt", async {
        while !matches!(events.recv().await.unwrap(), Notification::AttemptStarted { execution_id, .. } if execution_id == first) {}
    })
    .await;
    let second = env.handle.start(p.clone(), "{}".into()).await.unwrap();
    env.finish(&first).await;
    assert_eq!(env.handle.wait(&first).await.unwrap().status, ExecutionStatus::Failed);
    within("the second execution's attempt", async {
        while !matches!(events.recv().await.unwrap(), Notification::AttemptStarted { execution_id, .. } if execution_id == second) {}
    })
    .await;
    // The second is inside stage S now: a retry of the first's stage S must wait.
    let req = request(QueueScope::Queue("retry-sup".into()), RedriveMode::RetryStage);
    let plan = env.redriver().plan(&req).await.unwrap();
    let verdict = |id: &str| plan.items.iter().find(|i| i.entry_id == id).map(|i| (i.would.clone(), i.detail.clone())).unwrap();
    let (would, detail) = verdict(&first);
    assert_eq!(would, "skip");
    assert!(detail.contains(&format!("stage S is processing execution {second}")), "{detail}");
    // The real run agrees with the plan.
    let s = run(&env, req.clone()).await;
    assert_eq!((s.redriven, s.skipped), (0, 1));
    assert_eq!(s.skipped_by_reason.get("refused"), Some(&1));
    // Once the second left the stage, the retry goes through.
    env.finish(&second).await;
    assert_eq!(env.handle.wait(&second).await.unwrap().status, ExecutionStatus::Failed);
    let plan = env.redriver().plan(&req).await.unwrap();
    assert_eq!(plan.items.iter().find(|i| i.entry_id == first).map(|i| i.would.as_str()), Some("redrive"));
    env.stop().await;
}
