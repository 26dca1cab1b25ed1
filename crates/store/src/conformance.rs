//! The backend-agnostic conformance suite: every [`Store`] implementation must
//! pass [`run_all`]. Each check is also public, takes a fresh, empty store and
//! panics with a descriptive message on the first violation.
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread")]
//! async fn conformance() {
//!     redrive_store::conformance::run_all(|| async { make_empty_store().await }).await;
//! }
//! ```
//!
//! Contract details pinned down here (beyond the docs in the crate root):
//! - `limit == 0` means the largest page ([`MAX_PAGE_SIZE`]) for every listing
//!   (`list_executions`, `list_pipelines`, `list_ledger`, `list_dlq_entries`,
//!   `list_dlq_queues`, `list_redrive_runs`).
//! - `list_executions` orders by `(created_at DESC, id DESC)`: executions created
//!   at the same instant are ordered by id, descending, so that keyset pages
//!   (`ExecutionFilter::before`) have no gaps or duplicates.
//! - `list_pipelines` orders names by their bytes (UTF-8), e.g. `Zeta` before
//!   `alpha` (PostgreSQL: `COLLATE "C"`).
//! - `put_pipeline` on a deleted name inserts a new version even if the content
//!   equals the last stored version (a revived pipeline never shares a version
//!   with its previous life).
//! - `delete_pipeline` forgets the client tokens of the pipeline's executions.
//! - A create carrying a used client token is refused with `TokenReused` even if
//!   its execution id also exists (the token is checked first).
//! - Ledger entries are filed under the execution's pipeline as recorded on
//!   create, whatever `target` a later update carries.
//! - `due_timers` caps `limit` at [`MAX_PAGE_SIZE`]; ties in `due_at` are ordered
//!   by execution id, then key.
//! - Within one transition, `clear_timers` is applied before `set_timers`: a key
//!   both cleared and set ends up set.
//! - Ledger entries and timers must belong to the transition's execution, else
//!   the whole commit is refused with [`StoreError::Limit`].
//! - `stats().transitions` counts applied (not refused) transitions, and
//!   `stats().ledger_rows` the ledger rows they wrote.
//! - Dead-letter ops apply in order after the execution row; a refused one
//!   ([`TransitionError::DlqEntryNotQueued`]) undoes the transition's earlier ops
//!   too, including the queue an `Enter` created. A `Take` of a missing
//!   (purged) entry is refused like one of a non-`QUEUED` entry.
//! - `Enter` of an existing entry (any state, including `RESOLVED`) keeps
//!   `redriven_to` and `redriven_at` and clears `resolved_at`; the queue named by
//!   the write is then ignored and not created.
//! - `list_dlq_entries` orders by `(entered_at, id)` ascending; `queue_prefix`
//!   is a byte prefix of the queue name, and an empty prefix is no constraint;
//!   `queue` and `queue_prefix` together must both hold.
//! - `ensure_dlq_queue`, `configure_dlq_queue` and dead-letter ops refuse queue
//!   names that are empty or longer than 100 characters with [`StoreError::Limit`];
//!   `list_dlq_queues` orders names by their bytes, like `list_pipelines`.
//! - `update_redrive_run` changes only `status`, `finished_at` and
//!   `summary_json`; `list_redrive_runs` orders by `(started_at DESC, id DESC)`.
//! - `prune_candidates` lists finished executions (status `Succeeded`, `Failed`,
//!   `Stopped` or `Superseded`) whose `updated_at` is before the cutoff and that
//!   no dead-letter entry names (as `execution_id` or `redriven_to`), ordered by
//!   `(created_at, id)`, strictly after the cursor. `prune` re-checks each
//!   execution in its transaction (a changed version or a new entry skips it)
//!   and deletes it with its ledger rows, timers and client tokens (the token
//!   can then be used again).

use crate::limits::{
    MAX_CLIENT_TOKEN_BYTES, MAX_DEFINITION_BYTES, MAX_DLQ_DETAIL_BYTES, MAX_DLQ_MESSAGE_BYTES, MAX_FAILURE_MESSAGE_BYTES,
    MAX_FINGERPRINT_BYTES, MAX_INPUT_BYTES, MAX_PAGE_SIZE, MAX_REDRIVE_RUN_JSON_BYTES, MAX_STATE_BYTES, MAX_TRANSITIONS_PER_COMMIT,
};
use crate::{
    ClientToken, CommitResult, DEFAULT_MAX_REDRIVES, DlqEntryCursor, DlqEntryFilter, DlqEntryRecord, DlqEntryState, DlqEntryWrite, DlqOp,
    DlqQueueRecord, DlqQueueStats, ExecutionCursor, ExecutionFault, ExecutionFilter, ExecutionKind, ExecutionRecord, LedgerEntry,
    LedgerFilter, MAX_MAX_REDRIVES, MAX_PRUNE_STEP, PipelineRecord, PruneCandidate, PruneCounts, PruneExecution, PruneQuery, PruneStep,
    RedriveRunFilter, RedriveRunRecord, Store, StoreError, Target, TargetName, TimerRecord, Transition, TransitionError,
};
use redrive_core::time::Timestamp;
use std::future::Future;
use std::sync::Arc;

/// A fixed base time for every check (2023-11-14).
const BASE_MS: i64 = 1_700_000_000_000;
/// Concurrent `commit` calls in [`group_commit_under_concurrency`].
pub const CONCURRENT_COMMITS: usize = 500;
/// Concurrent creates sharing one client token in [`concurrent_starts_with_one_token`].
pub const CONCURRENT_TOKEN_STARTS: usize = 20;
const PIPELINE: &str = "conformance";
const OTHER_PIPELINE: &str = "conformance-other";
const IN_PROGRESS: &str = "InProgress";

/// Runs every check, each on a fresh store from `make_store`.
pub async fn run_all<S, F, Fut>(make_store: F)
where
    S: Store,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    pipeline_versioning(&make_store().await).await;
    create_and_update(&make_store().await).await;
    stale_version_is_refused(&make_store().await).await;
    double_create_is_refused(&make_store().await).await;
    mixed_commit_applies_only_good_transitions(&make_store().await).await;
    ledger_round_trip(&make_store().await).await;
    timers(&make_store().await).await;
    list_executions(&make_store().await).await;
    get_executions(&make_store().await).await;
    limits_enforced(&make_store().await).await;
    group_commit_under_concurrency(Arc::new(make_store().await)).await;
    pipeline_lifecycle(&make_store().await).await;
    list_pipelines_pagination(Arc::new(make_store().await)).await;
    client_token_idempotency(&make_store().await).await;
    concurrent_starts_with_one_token(Arc::new(make_store().await)).await;
    execution_pagination(&make_store().await).await;
    ledger_listing(&make_store().await).await;
    dlq_enter_take_resolve(&make_store().await).await;
    dlq_atomicity(&make_store().await).await;
    dlq_filters_and_paging(&make_store().await).await;
    dlq_queues(&make_store().await).await;
    dlq_purge(&make_store().await).await;
    redrive_runs(&make_store().await).await;
    dlq_limits_enforced(&make_store().await).await;
    quarantine(&make_store().await).await;
    kinds_are_separate(&make_store().await).await;
    one_commit_applies_in_order(&make_store().await).await;
    large_commit_applies_each_transition(&make_store().await).await;
    tokens(&make_store().await).await;
    audit_log(&make_store().await).await;
    prune_deletes_finished_executions(&make_store().await).await;
    prune_keeps_what_is_still_needed(&make_store().await).await;
    prune_candidates_paging(&make_store().await).await;
    prune_entries_and_runs(&make_store().await).await;
    prune_audit_records(&make_store().await).await;
    prune_bulk_retries(&make_store().await).await;
    dependencies(&make_store().await).await;
    bulk_retries(&make_store().await).await;
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn ts(offset_ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(BASE_MS + offset_ms)
}

/// A transition creating execution `id` at `ts(at)`.
fn create(id: &str, at: i64) -> Transition {
    Transition {
        execution_id: id.to_owned(),
        expected_version: None,
        target: Target::pipeline(PIPELINE, 1),
        status: IN_PROGRESS.to_owned(),
        input_json: format!(r#"{{"id":"{id}"}}"#),
        state_json: r#"{"step":0}"#.to_owned(),
        at: ts(at),
        ledger: Vec::new(),
        set_timers: Vec::new(),
        clear_timers: Vec::new(),
        client_token: None,
        dlq: Vec::new(),
    }
}

/// A transition moving execution `id` from version `expected` at `ts(at)`.
fn update(id: &str, expected: u64, at: i64) -> Transition {
    Transition { expected_version: Some(expected), state_json: format!(r#"{{"step":{expected}}}"#), ..create(id, at) }
}

fn entry(id: &str, action: &str, attempt: u32, failed: bool) -> LedgerEntry {
    LedgerEntry {
        seq: 0,
        execution_id: id.to_owned(),
        stage: "Build".to_owned(),
        action: action.to_owned(),
        series: 1,
        attempt,
        trigger: if attempt == 1 { "initial" } else { "policy" }.to_owned(),
        started_at: ts(i64::from(attempt) * 10),
        finished_at: ts(i64::from(attempt) * 10 + 5),
        outcome: if failed { "FAILED" } else { "SUCCEEDED" }.to_owned(),
        exception_type: failed.then(|| "Step.Timeout".to_owned()),
        message: failed.then(|| format!("attempt {attempt} timed out — «unicode» ok")),
        decision_json: failed.then(|| format!(r#"{{"retry_at":{},"reason":"policy"}}"#, BASE_MS + 1000)),
    }
}

fn timer(id: &str, key: &str, due: i64) -> TimerRecord {
    TimerRecord { execution_id: id.to_owned(), key: key.to_owned(), due_at: ts(due) }
}

/// Commits one transition and returns its result.
async fn commit_one<S: Store>(store: &S, t: Transition) -> Result<u64, TransitionError> {
    let what = format!("commit of a transition for {}", t.execution_id);
    let mut results = store.commit(vec![t].into()).await.unwrap_or_else(|e| panic!("{what} failed: {e}"));
    assert_eq!(results.len(), 1, "{what}: commit must return one result per transition");
    results.pop().unwrap()
}

async fn version_of<S: Store>(store: &S, id: &str) -> Option<u64> {
    store.get_execution(id).await.expect("get_execution").map(|e| e.version)
}

async fn sorted_timers<S: Store>(store: &S, id: &str) -> Vec<TimerRecord> {
    let mut timers = store.execution_timers(id).await.expect("execution_timers");
    timers.sort();
    timers
}

fn ids(records: &[ExecutionRecord]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

fn filter(pipeline: Option<&str>, unfinished_only: bool, limit: usize) -> ExecutionFilter {
    ExecutionFilter { target: pipeline.map(TargetName::pipeline), unfinished_only, before: None, limit }
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

/// `put_pipeline` keeps the version while the definition is unchanged and bumps
/// it otherwise; `get_pipeline` finds the latest or a given version.
pub async fn pipeline_versioning<S: Store>(store: &S) {
    const D1: &str = r#"{"stages":[{"name":"Build"}]}"#;
    const D2: &str = r#"{"stages":[{"name":"Build"},{"name":"Test"}]}"#;
    assert_eq!(store.get_pipeline("build", None).await.unwrap(), None, "unknown pipeline must be None");

    let v1 = store.put_pipeline("build", D1, Some("/src"), ts(0)).await.unwrap();
    assert_eq!(v1.name, "build");
    assert_eq!(v1.version, 1, "the first version of a pipeline is 1");
    assert_eq!(v1.definition_json, D1);
    assert_eq!(v1.source_dir.as_deref(), Some("/src"));
    assert_eq!(v1.created_at, ts(0));

    let again = store.put_pipeline("build", D1, Some("/src"), ts(100)).await.unwrap();
    assert_eq!(again, v1, "an unchanged definition must return the stored version unchanged (incl. created_at)");

    let v2 = store.put_pipeline("build", D2, Some("/src"), ts(200)).await.unwrap();
    assert_eq!(v2.version, 2, "a changed definition must get version latest+1");
    assert_eq!(v2.created_at, ts(200));

    let v3 = store.put_pipeline("build", D2, None, ts(300)).await.unwrap();
    assert_eq!(v3.version, 3, "a changed source_dir must get a new version");
    assert_eq!(v3.source_dir, None);

    let v4 = store.put_pipeline("build", D1, Some("/src"), ts(400)).await.unwrap();
    assert_eq!(v4.version, 4, "going back to an older definition is a change relative to the latest");

    assert_eq!(store.get_pipeline("build", None).await.unwrap(), Some(v4.clone()), "latest version");
    assert_eq!(store.get_pipeline("build", Some(1)).await.unwrap(), Some(v1), "version 1");
    assert_eq!(store.get_pipeline("build", Some(2)).await.unwrap(), Some(v2), "version 2");
    assert_eq!(store.get_pipeline("build", Some(99)).await.unwrap(), None, "unknown version must be None");
    assert_eq!(store.get_pipeline("nope", None).await.unwrap(), None, "unknown name must be None");

    let other = store.put_pipeline("deploy", D2, None, ts(500)).await.unwrap();
    assert_eq!(other.version, 1, "versions are per pipeline name");
    assert_eq!(store.get_pipeline("build", None).await.unwrap(), Some(v4), "other names do not affect 'build'");
}

/// Create → version 1; update with the right version → version+1; every column
/// round-trips; `created_at` stays, `updated_at` moves.
pub async fn create_and_update<S: Store>(store: &S) {
    assert_eq!(store.get_execution("e1").await.unwrap(), None, "unknown execution must be None");

    let mut t = create("e1", 0);
    t.target = Target::pipeline(PIPELINE, 3);
    assert_eq!(commit_one(store, t.clone()).await, Ok(1), "create must return version 1");
    let e = store.get_execution("e1").await.unwrap().expect("created execution must be readable");
    assert_eq!(e.id, "e1");
    assert_eq!(e.target, Target::pipeline(PIPELINE, 3));
    assert_eq!(e.status, IN_PROGRESS);
    assert_eq!(e.input_json, t.input_json);
    assert_eq!(e.state_json, t.state_json);
    assert_eq!(e.version, 1);
    assert_eq!(e.created_at, ts(0));
    assert_eq!(e.updated_at, ts(0));

    let mut u = update("e1", 1, 50);
    u.target = Target::pipeline(PIPELINE, 3);
    u.status = "Succeeded".to_owned();
    u.state_json = r#"{"step":"done","ünïcode":"✓"}"#.to_owned();
    assert_eq!(commit_one(store, u.clone()).await, Ok(2), "update from version 1 must return version 2");
    let e = store.get_execution("e1").await.unwrap().unwrap();
    assert_eq!(e.version, 2);
    assert_eq!(e.status, "Succeeded");
    assert_eq!(e.state_json, u.state_json, "state must round-trip exactly");
    assert_eq!(e.created_at, ts(0), "created_at must not change on update");
    assert_eq!(e.updated_at, ts(50), "updated_at must be the transition's time");

    assert_eq!(commit_one(store, update("e1", 2, 60)).await, Ok(3));

    // Several transitions of one execution in one commit apply in order.
    let results = store.commit(vec![create("e2", 70), update("e2", 1, 71), update("e2", 2, 72)].into()).await.unwrap();
    assert_eq!(results, vec![Ok(1), Ok(2), Ok(3)], "transitions in one commit apply in order");
    assert_eq!(version_of(store, "e2").await, Some(3));

    assert_eq!(store.commit(Vec::new().into()).await.unwrap(), Vec::new(), "an empty commit returns no results");
}

/// A stale `expected_version` is refused and nothing of that transition (state,
/// ledger, timers) is applied; updating a missing execution is a conflict too.
pub async fn stale_version_is_refused<S: Store>(store: &S) {
    let mut c = create("e", 0);
    c.ledger = vec![entry("e", "Compile", 1, true)];
    c.set_timers = vec![timer("e", "Build/Compile#2", 1000)];
    assert_eq!(commit_one(store, c).await, Ok(1));
    assert_eq!(commit_one(store, update("e", 1, 10)).await, Ok(2));
    let before = store.get_execution("e").await.unwrap().unwrap();
    let ledger_before = store.ledger("e").await.unwrap();
    let timers_before = sorted_timers(store, "e").await;

    let mut stale = update("e", 1, 20);
    stale.status = "Failed".to_owned();
    stale.state_json = r#"{"stale":true}"#.to_owned();
    stale.ledger = vec![entry("e", "Compile", 2, false)];
    stale.set_timers = vec![timer("e", "other", 5)];
    stale.clear_timers = vec!["Build/Compile#2".to_owned()];
    assert_eq!(
        commit_one(store, stale).await,
        Err(TransitionError::VersionConflict { execution_id: "e".into(), expected: 1, actual: Some(2) }),
        "a stale version must be refused with the actual version"
    );
    assert_eq!(store.get_execution("e").await.unwrap().unwrap(), before, "a refused transition must not change the execution");
    assert_eq!(store.ledger("e").await.unwrap(), ledger_before, "a refused transition must not append to the ledger");
    assert_eq!(sorted_timers(store, "e").await, timers_before, "a refused transition must not touch timers");

    let future = update("e", 7, 30);
    assert_eq!(
        commit_one(store, future).await,
        Err(TransitionError::VersionConflict { execution_id: "e".into(), expected: 7, actual: Some(2) }),
        "a version from the future must be refused too"
    );

    let mut missing = update("ghost", 1, 40);
    missing.ledger = vec![entry("ghost", "Compile", 1, false)];
    missing.set_timers = vec![timer("ghost", "t", 5)];
    assert_eq!(
        commit_one(store, missing).await,
        Err(TransitionError::VersionConflict { execution_id: "ghost".into(), expected: 1, actual: None }),
        "updating a missing execution must be a conflict with actual None"
    );
    assert_eq!(store.get_execution("ghost").await.unwrap(), None, "a refused update must not create the execution");
    assert!(store.ledger("ghost").await.unwrap().is_empty(), "a refused update must not write ledger rows");
    assert!(store.execution_timers("ghost").await.unwrap().is_empty(), "a refused update must not write timers");
    assert_eq!(store.next_timer_due().await.unwrap(), Some(ts(1000)), "refused timers must not be visible");
}

/// Creating an existing execution is refused with `AlreadyExists` and changes
/// nothing.
pub async fn double_create_is_refused<S: Store>(store: &S) {
    assert_eq!(commit_one(store, create("dup", 0)).await, Ok(1));
    let before = store.get_execution("dup").await.unwrap().unwrap();

    let mut again = create("dup", 10);
    again.state_json = r#"{"second":true}"#.to_owned();
    again.ledger = vec![entry("dup", "Compile", 1, false)];
    again.set_timers = vec![timer("dup", "t", 5)];
    assert_eq!(
        commit_one(store, again).await,
        Err(TransitionError::AlreadyExists("dup".into())),
        "creating an existing execution must be refused"
    );
    assert_eq!(store.get_execution("dup").await.unwrap().unwrap(), before, "a refused create must not change the execution");
    assert!(store.ledger("dup").await.unwrap().is_empty(), "a refused create must not write ledger rows");
    assert!(store.execution_timers("dup").await.unwrap().is_empty(), "a refused create must not write timers");

    let results = store.commit(vec![create("pair", 20), create("pair", 21)].into()).await.unwrap();
    assert_eq!(
        results,
        vec![Ok(1), Err(TransitionError::AlreadyExists("pair".into()))],
        "a second create in the same commit must be refused"
    );
    assert_eq!(store.get_execution("pair").await.unwrap().unwrap().created_at, ts(20), "the first create wins");
}

/// One commit with good and conflicting transitions applies only the good ones.
pub async fn mixed_commit_applies_only_good_transitions<S: Store>(store: &S) {
    let results = store.commit(vec![create("a", 0), create("b", 1)].into()).await.unwrap();
    assert_eq!(results, vec![Ok(1), Ok(1)]);
    let b_before = store.get_execution("b").await.unwrap().unwrap();

    let mut good = update("a", 1, 10);
    good.ledger = vec![entry("a", "Compile", 1, false)];
    good.set_timers = vec![timer("a", "ta", 100)];
    let mut bad = update("b", 5, 10);
    bad.ledger = vec![entry("b", "Compile", 1, false)];
    bad.set_timers = vec![timer("b", "tb", 50)];
    let results = store.commit(vec![good, bad, create("c", 10), create("a", 10)].into()).await.unwrap();
    assert_eq!(
        results,
        vec![
            Ok(2),
            Err(TransitionError::VersionConflict { execution_id: "b".into(), expected: 5, actual: Some(1) }),
            Ok(1),
            Err(TransitionError::AlreadyExists("a".into())),
        ],
        "each transition of a commit gets its own result"
    );
    assert_eq!(version_of(store, "a").await, Some(2), "the good update must be applied");
    assert_eq!(store.ledger("a").await.unwrap().len(), 1, "the good update's ledger entry must be written");
    assert_eq!(sorted_timers(store, "a").await, vec![timer("a", "ta", 100)], "the good update's timer must be set");
    assert_eq!(store.get_execution("b").await.unwrap().unwrap(), b_before, "the conflicting update must not apply");
    assert!(store.ledger("b").await.unwrap().is_empty(), "the conflicting update's ledger entry must not be written");
    assert!(store.execution_timers("b").await.unwrap().is_empty(), "the conflicting update's timer must not be set");
    assert_eq!(version_of(store, "c").await, Some(1), "the create after the conflict must be applied");
    assert_eq!(store.next_timer_due().await.unwrap(), Some(ts(100)), "only the good timer is pending");
}

/// Ledger entries come back exactly as written, in commit order, with ascending
/// `seq`, and only for their own execution.
pub async fn ledger_round_trip<S: Store>(store: &S) {
    assert!(store.ledger("x").await.unwrap().is_empty(), "unknown execution has an empty ledger");
    let before = store.stats().ledger_rows;

    let mut c = create("x", 0);
    c.ledger = vec![entry("x", "Compile", 1, true), entry("x", "Compile", 2, false)];
    let mut y = create("y", 0);
    y.ledger = vec![entry("y", "Lint", 1, false)];
    assert_eq!(store.commit(vec![c.clone(), y.clone()].into()).await.unwrap(), vec![Ok(1), Ok(1)]);

    let mut u = update("x", 1, 20);
    let mut third = entry("x", "Test", 1, true);
    third.series = 2;
    third.trigger = "stage-retry".to_owned();
    third.exception_type = None;
    third.message = Some(String::new());
    u.ledger = vec![third];
    assert_eq!(commit_one(store, u.clone()).await, Ok(2));
    let stale = update("x", 1, 30); // refused: no rows counted
    assert!(commit_one(store, Transition { ledger: vec![entry("x", "Stale", 1, true)], ..stale }).await.is_err());
    assert_eq!(store.stats().ledger_rows - before, 4, "stats().ledger_rows counts the rows committed transitions wrote");

    let got = store.ledger("x").await.unwrap();
    let expected: Vec<LedgerEntry> = c.ledger.iter().chain(&u.ledger).cloned().collect();
    assert_eq!(got.len(), expected.len(), "ledger of x must have every appended entry");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(LedgerEntry { seq: 0, ..g.clone() }, *e, "ledger entry {i} must round-trip exactly");
    }
    assert!(got.windows(2).all(|w| w[0].seq < w[1].seq), "seq must be strictly ascending: {got:?}");

    let got_y = store.ledger("y").await.unwrap();
    assert_eq!(got_y.len(), 1, "ledger of y must hold only y's entries");
    assert_eq!(LedgerEntry { seq: 0, ..got_y[0].clone() }, y.ledger[0]);
    assert!(got_y[0].seq > got[0].seq && got_y[0].seq < got[2].seq, "seq is global commit order");
}

/// Timers: set, replace, clear; `due_timers` returns only due ones, earliest
/// first, honouring `limit`; `next_timer_due` is the earliest.
pub async fn timers<S: Store>(store: &S) {
    assert_eq!(store.next_timer_due().await.unwrap(), None, "no timers yet");
    assert!(store.due_timers(ts(i64::MAX / 4), 10).await.unwrap().is_empty(), "no timers yet");
    assert_eq!(store.count_timers().await.unwrap(), 0, "no timers yet");

    let mut c1 = create("t1", 0);
    c1.set_timers = vec![timer("t1", "k2", 300), timer("t1", "k1", 100)];
    let mut c2 = create("t2", 0);
    c2.set_timers = vec![timer("t2", "k1", 200)];
    assert_eq!(store.commit(vec![c1, c2].into()).await.unwrap(), vec![Ok(1), Ok(1)]);

    assert_eq!(
        sorted_timers(store, "t1").await,
        vec![timer("t1", "k1", 100), timer("t1", "k2", 300)],
        "execution_timers returns the execution's timers"
    );
    assert_eq!(store.next_timer_due().await.unwrap(), Some(ts(100)), "next_timer_due is the earliest");
    assert_eq!(store.count_timers().await.unwrap(), 3, "count_timers counts due and future timers");
    assert_eq!(
        store.due_timers(ts(200), 10).await.unwrap(),
        vec![timer("t1", "k1", 100), timer("t2", "k1", 200)],
        "due_timers returns timers with due_at <= now, earliest first"
    );
    assert!(store.due_timers(ts(99), 10).await.unwrap().is_empty(), "nothing is due before the earliest timer");
    assert_eq!(
        store.due_timers(ts(10_000), 2).await.unwrap(),
        vec![timer("t1", "k1", 100), timer("t2", "k1", 200)],
        "due_timers honours limit, keeping the earliest"
    );
    assert!(store.due_timers(ts(10_000), 0).await.unwrap().is_empty(), "limit 0 returns nothing");
    assert_eq!(
        store.due_timers_after(ts(10_000), &timer("t1", "k1", 100), 10).await.unwrap(),
        vec![timer("t2", "k1", 200), timer("t1", "k2", 300)],
        "due_timers_after continues after the given timer, in the same order"
    );
    assert_eq!(
        store.due_timers_after(ts(250), &timer("t1", "k1", 100), 10).await.unwrap(),
        vec![timer("t2", "k1", 200)],
        "due_timers_after returns only due timers"
    );
    assert_eq!(
        store.due_timers_after(ts(10_000), &timer("t1", "k1", 200), 10).await.unwrap(),
        vec![timer("t2", "k1", 200), timer("t1", "k2", 300)],
        "ties on the due time order by execution id, then key"
    );

    // Replace: same key, new due time.
    let mut u = update("t1", 1, 10);
    u.set_timers = vec![timer("t1", "k1", 500)];
    assert_eq!(commit_one(store, u).await, Ok(2));
    assert_eq!(
        sorted_timers(store, "t1").await,
        vec![timer("t1", "k1", 500), timer("t1", "k2", 300)],
        "setting an existing key replaces its due time"
    );
    assert_eq!(store.next_timer_due().await.unwrap(), Some(ts(200)));

    // Clear (including a key that does not exist).
    let mut u = update("t2", 1, 20);
    u.clear_timers = vec!["k1".to_owned(), "never-set".to_owned()];
    assert_eq!(commit_one(store, u).await, Ok(2), "clearing a missing key is not an error");
    assert!(store.execution_timers("t2").await.unwrap().is_empty(), "cleared timers are gone");
    assert_eq!(store.count_timers().await.unwrap(), 2, "a replaced timer counts once, a cleared one not at all");
    assert_eq!(store.next_timer_due().await.unwrap(), Some(ts(300)));
    assert_eq!(
        store.due_timers(ts(10_000), 10).await.unwrap(),
        vec![timer("t1", "k2", 300), timer("t1", "k1", 500)],
        "due_timers reflects replaced and cleared timers"
    );

    // Clear and set the same key in one transition: clear first, then set.
    let mut u = update("t1", 2, 30);
    u.clear_timers = vec!["k1".to_owned(), "k2".to_owned()];
    u.set_timers = vec![timer("t1", "k1", 700)];
    assert_eq!(commit_one(store, u).await, Ok(3));
    assert_eq!(
        sorted_timers(store, "t1").await,
        vec![timer("t1", "k1", 700)],
        "clear_timers applies before set_timers within one transition"
    );

    // Ties in due_at: ordered by execution id, then key.
    let mut t3 = create("t3", 40);
    t3.set_timers = vec![timer("t3", "b", 700), timer("t3", "a", 700)];
    assert_eq!(commit_one(store, t3).await, Ok(1));
    assert_eq!(
        store.due_timers(ts(700), 10).await.unwrap(),
        vec![timer("t1", "k1", 700), timer("t3", "a", 700), timer("t3", "b", 700)],
        "equal due times are ordered by execution id, then key"
    );

    // Clearing every timer empties the schedule.
    let mut u = update("t1", 3, 50);
    u.clear_timers = vec!["k1".to_owned()];
    let mut v = update("t3", 1, 50);
    v.clear_timers = vec!["a".to_owned(), "b".to_owned()];
    assert_eq!(store.commit(vec![u, v].into()).await.unwrap(), vec![Ok(4), Ok(2)]);
    assert_eq!(store.next_timer_due().await.unwrap(), None, "no timers left");
}

/// `list_executions`: newest first, filters, page limit and its cap.
pub async fn list_executions<S: Store>(store: &S) {
    assert!(store.list_executions(filter(None, false, 10)).await.unwrap().is_empty(), "empty store lists nothing");

    // Created out of time order on purpose: listing sorts by created_at.
    let mut batch = Vec::new();
    for (id, pipeline, at) in
        [("l3", PIPELINE, 30), ("l1", PIPELINE, 10), ("l5", OTHER_PIPELINE, 50), ("l2", OTHER_PIPELINE, 20), ("l4", PIPELINE, 40)]
    {
        let mut t = create(id, at);
        t.target = Target::pipeline(pipeline, 1);
        batch.push(t);
    }
    assert!(store.commit(batch.into()).await.unwrap().iter().all(Result::is_ok));
    let mut finish_l4 = update("l4", 1, 60);
    finish_l4.status = "Succeeded".to_owned();
    let mut finish_l2 = update("l2", 1, 61);
    finish_l2.target = Target::pipeline(OTHER_PIPELINE, 1);
    finish_l2.status = "Failed".to_owned();
    assert_eq!(store.commit(vec![finish_l4, finish_l2].into()).await.unwrap(), vec![Ok(2), Ok(2)]);

    let all = store.list_executions(filter(None, false, 10)).await.unwrap();
    assert_eq!(ids(&all), ["l5", "l4", "l3", "l2", "l1"], "all executions, newest (created_at) first");
    assert_eq!(all[1].status, "Succeeded", "listed records carry current columns");

    let unfinished = store.list_executions(filter(None, true, 10)).await.unwrap();
    assert_eq!(ids(&unfinished), ["l5", "l3", "l1"], "unfinished_only keeps InProgress executions");

    let by_pipeline = store.list_executions(filter(Some(PIPELINE), false, 10)).await.unwrap();
    assert_eq!(ids(&by_pipeline), ["l4", "l3", "l1"], "pipeline_name filter");

    let both = store.list_executions(filter(Some(OTHER_PIPELINE), true, 10)).await.unwrap();
    assert_eq!(ids(&both), ["l5"], "pipeline_name and unfinished_only combined");

    assert!(store.list_executions(filter(Some("none"), false, 10)).await.unwrap().is_empty(), "unknown pipeline");

    let page = store.list_executions(filter(None, false, 2)).await.unwrap();
    assert_eq!(ids(&page), ["l5", "l4"], "limit keeps the newest");
    let page = store.list_executions(filter(None, true, 1)).await.unwrap();
    assert_eq!(ids(&page), ["l5"], "limit applies after filtering");

    // The page cap.
    let many: Vec<Transition> = (0..=MAX_PAGE_SIZE).map(|i| create(&format!("m{i:05}"), 100 + i as i64)).collect();
    assert!(store.commit(many.into()).await.unwrap().iter().all(Result::is_ok));
    let capped = store.list_executions(filter(None, false, MAX_PAGE_SIZE * 5)).await.unwrap();
    assert_eq!(capped.len(), MAX_PAGE_SIZE, "limit is capped at MAX_PAGE_SIZE");
    assert_eq!(capped[0].id, format!("m{MAX_PAGE_SIZE:05}"), "the capped page starts with the newest");
    let default_page = store.list_executions(filter(None, false, 0)).await.unwrap();
    assert_eq!(default_page.len(), MAX_PAGE_SIZE, "limit 0 means the largest page");
}

/// Several executions read at once: those that exist, with their current
/// columns, whatever the order asked; an id that is not there is left out (also
/// one that differs only in case); too many ids are refused.
pub async fn get_executions<S: Store>(store: &S) {
    assert!(store.get_executions(&[]).await.unwrap().is_empty(), "nothing asked, nothing read");
    let made: Vec<Transition> = (0..5).map(|i| create(&format!("g{i}"), i)).collect();
    assert!(store.commit(made.into()).await.unwrap().iter().all(Result::is_ok));
    let mut done = update("g3", 1, 10);
    done.status = "Succeeded".to_owned();
    assert_eq!(store.commit(vec![done].into()).await.unwrap(), vec![Ok(2)]);

    let asked: Vec<String> = ["g3", "nope", "g0", "G1", "g4", "g0"].iter().map(|s| (*s).to_string()).collect();
    let mut read = store.get_executions(&asked).await.unwrap();
    read.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(ids(&read), ["g0", "g3", "g4"], "the ones that exist, each once");
    let g3 = &read[1];
    assert_eq!((g3.status.as_str(), g3.version), ("Succeeded", 2), "current columns");
    assert_eq!(g3, &store.get_execution("g3").await.unwrap().unwrap(), "the same record get_execution reads");

    let most: Vec<String> = (0..crate::MAX_EXECUTIONS_PER_READ).map(|i| format!("g{i}")).collect();
    assert_eq!(store.get_executions(&most).await.unwrap().len(), 5, "exactly the most ids is fine");
    let too_many: Vec<String> = (0..=crate::MAX_EXECUTIONS_PER_READ).map(|i| format!("g{i}")).collect();
    assert!(matches!(store.get_executions(&too_many).await, Err(StoreError::Limit(_))), "one id over the most is refused");
}

/// Every limit is enforced and a refused call changes nothing; values exactly
/// at a limit are accepted. A transition over a limit is refused alone
/// ([`TransitionError::Limit`]): the others of its commit are applied.
pub async fn limits_enforced<S: Store>(store: &S) {
    fn expect_limit<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
        match result {
            Err(StoreError::Limit(message)) => assert!(!message.is_empty(), "{what}: the limit error needs a message"),
            other => panic!("{what}: expected StoreError::Limit, got {other:?}"),
        }
    }
    /// A commit of `[neighbour, bad]`: the neighbour commits, `bad` alone is refused.
    async fn expect_refused_alone<S: Store>(store: &S, bad: Transition, what: &str, needle: &str) {
        let neighbour = create(&format!("{}-neighbour", bad.execution_id), 0);
        let (bad_id, neighbour_id, creates) = (bad.execution_id.clone(), neighbour.execution_id.clone(), bad.expected_version.is_none());
        match store.commit(vec![neighbour, bad].into()).await.unwrap().as_slice() {
            [Ok(1), Err(TransitionError::Limit(m))] => assert!(m.contains(needle), "{what}: the refusal must mention {needle}: {m}"),
            other => panic!("{what}: expected [Ok(1), Err(Limit)], got {other:?}"),
        }
        if creates {
            assert_eq!(store.get_execution(&bad_id).await.unwrap(), None, "{what}: the refused transition writes nothing");
        }
        assert!(store.get_execution(&neighbour_id).await.unwrap().is_some(), "{what}: its neighbour commits");
    }

    let too_many: Vec<Transition> = (0..=MAX_TRANSITIONS_PER_COMMIT).map(|i| create(&format!("many{i}"), 0)).collect();
    expect_limit(store.commit(too_many.into()).await, "commit of MAX_TRANSITIONS_PER_COMMIT + 1 transitions");
    assert_eq!(store.get_execution("many0").await.unwrap(), None, "a refused commit writes nothing");

    let mut big_state = create("big-state", 0);
    big_state.state_json = "x".repeat(MAX_STATE_BYTES + 1);
    expect_refused_alone(store, big_state, "state over MAX_STATE_BYTES", "state is").await;
    let mut big_input = create("big-input", 0);
    big_input.input_json = "x".repeat(MAX_INPUT_BYTES + 1);
    expect_refused_alone(store, big_input, "input over MAX_INPUT_BYTES", "input is").await;
    // An update over a limit leaves the stored execution as it was.
    assert_eq!(commit_one(store, create("grown", 0)).await, Ok(1));
    let mut grown = update("grown", 1, 1);
    grown.state_json = "x".repeat(MAX_STATE_BYTES + 1);
    expect_refused_alone(store, grown, "an update over MAX_STATE_BYTES", "state is").await;
    assert_eq!(store.get_execution("grown").await.unwrap().map(|e| e.version), Some(1), "a refused update changes nothing");

    expect_limit(
        store.put_pipeline("big", &"x".repeat(MAX_DEFINITION_BYTES + 1), None, ts(0)).await,
        "definition over MAX_DEFINITION_BYTES",
    );
    assert_eq!(store.get_pipeline("big", None).await.unwrap(), None, "a refused put_pipeline writes nothing");
    expect_limit(
        store.create_pipeline("big", &"x".repeat(MAX_DEFINITION_BYTES + 1), None, ts(0)).await,
        "create_pipeline with a definition over MAX_DEFINITION_BYTES",
    );
    assert_eq!(store.get_pipeline("big", None).await.unwrap(), None, "a refused create_pipeline writes nothing");
    store.create_pipeline("big", "{}", None, ts(0)).await.unwrap();
    expect_limit(
        store.update_pipeline("big", &"x".repeat(MAX_DEFINITION_BYTES + 1), None, ts(1)).await,
        "update_pipeline with a definition over MAX_DEFINITION_BYTES",
    );
    assert_eq!(store.get_pipeline("big", None).await.unwrap().map(|p| p.version), Some(1), "a refused update_pipeline writes nothing");

    let mut foreign_ledger = create("owner", 0);
    foreign_ledger.ledger = vec![entry("someone-else", "Compile", 1, false)];
    expect_refused_alone(store, foreign_ledger, "ledger entry of another execution", "someone-else").await;
    let mut foreign_timer = create("owner2", 0);
    foreign_timer.set_timers = vec![timer("someone-else", "k", 0)];
    expect_refused_alone(store, foreign_timer, "timer of another execution", "someone-else").await;
    let mut long_message = create("long-message", 0);
    let mut failed = entry("long-message", "Compile", 1, false);
    failed.message = Some("m".repeat(MAX_FAILURE_MESSAGE_BYTES + 1));
    long_message.ledger = vec![failed];
    expect_refused_alone(store, long_message, "a ledger message over MAX_FAILURE_MESSAGE_BYTES", "message is").await;

    // Exactly at the limits is fine.
    let mut at_limit = create("at-limit", 0);
    at_limit.state_json = "s".repeat(MAX_STATE_BYTES);
    at_limit.input_json = "i".repeat(MAX_INPUT_BYTES);
    assert_eq!(commit_one(store, at_limit).await, Ok(1), "state and input exactly at their limits are accepted");
    let stored = store.get_execution("at-limit").await.unwrap().unwrap();
    assert_eq!(stored.state_json.len(), MAX_STATE_BYTES, "a large state round-trips");
    let definition = "d".repeat(MAX_DEFINITION_BYTES);
    let p = store.put_pipeline("at-limit", &definition, None, ts(0)).await.unwrap();
    assert_eq!(p.definition_json.len(), MAX_DEFINITION_BYTES, "a definition exactly at the limit is accepted");
    let full: Vec<Transition> = (0..MAX_TRANSITIONS_PER_COMMIT).map(|i| create(&format!("full{i}"), 0)).collect();
    let results = store.commit(full.into()).await.unwrap();
    assert_eq!(results.len(), MAX_TRANSITIONS_PER_COMMIT);
    assert!(results.iter().all(Result::is_ok), "a commit of exactly MAX_TRANSITIONS_PER_COMMIT is accepted");
}

/// [`CONCURRENT_COMMITS`] `commit` calls from as many tasks all succeed and share
/// fewer transactions than calls (group commit).
pub async fn group_commit_under_concurrency<S: Store>(store: Arc<S>) {
    let before = store.stats();
    let mut tasks = Vec::with_capacity(CONCURRENT_COMMITS);
    for i in 0..CONCURRENT_COMMITS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let id = format!("g{i:04}");
            let mut t = create(&id, i as i64);
            t.ledger = vec![entry(&id, "Compile", 1, false)];
            t.set_timers = vec![timer(&id, "k", 1_000 + i as i64)];
            store.commit(vec![t].into()).await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.expect("commit task panicked");
        let result = result.unwrap_or_else(|e| panic!("concurrent commit {i} failed: {e}"));
        assert_eq!(result, vec![Ok(1)], "concurrent commit {i} must create its execution");
    }
    let after = store.stats();
    let commits = after.commits - before.commits;
    eprintln!("group commit: {CONCURRENT_COMMITS} commit calls in {commits} transactions");
    assert_eq!(
        after.transitions - before.transitions,
        CONCURRENT_COMMITS as u64,
        "stats().transitions must count every applied transition"
    );
    assert!(commits >= 1, "stats().commits must count transactions");
    assert!(
        commits < CONCURRENT_COMMITS as u64,
        "{CONCURRENT_COMMITS} concurrent commits used {commits} transactions: group commit is not working"
    );

    let listed = store.list_executions(filter(None, false, MAX_PAGE_SIZE)).await.unwrap();
    assert_eq!(listed.len(), CONCURRENT_COMMITS, "every concurrently committed execution is stored");
    for i in [0, CONCURRENT_COMMITS / 2, CONCURRENT_COMMITS - 1] {
        let id = format!("g{i:04}");
        assert_eq!(store.ledger(&id).await.unwrap().len(), 1, "{id}: ledger entry stored");
        assert_eq!(store.execution_timers(&id).await.unwrap().len(), 1, "{id}: timer stored");
    }
    assert_eq!(store.next_timer_due().await.unwrap(), Some(ts(1_000)));
}

// ---------------------------------------------------------------------------
// Pipelines as a service, start idempotency, paginated listings
// ---------------------------------------------------------------------------

fn expect_already_exists<T: std::fmt::Debug>(result: Result<T, StoreError>, name: &str, what: &str) {
    match result {
        Err(StoreError::AlreadyExists(message)) => assert!(message.contains(name), "{what}: the message must name {name}: {message}"),
        other => panic!("{what}: expected StoreError::AlreadyExists, got {other:?}"),
    }
}

fn expect_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, name: &str, what: &str) {
    match result {
        Err(StoreError::NotFound(message)) => assert!(message.contains(name), "{what}: the message must name {name}: {message}"),
        other => panic!("{what}: expected StoreError::NotFound, got {other:?}"),
    }
}

/// `create_pipeline`, `update_pipeline`, `delete_pipeline` and their interplay
/// with `put_pipeline` and `get_pipeline`: versions are never reused, a deleted
/// pipeline is hidden but its versions stay readable.
pub async fn pipeline_lifecycle<S: Store>(store: &S) {
    const D1: &str = r#"{"stages":[{"name":"Build"}]}"#;
    const D2: &str = r#"{"stages":[{"name":"Build"},{"name":"Test"}]}"#;

    let v1 = store.create_pipeline("svc", D1, Some("/src"), ts(0)).await.unwrap();
    assert_eq!(
        v1,
        PipelineRecord { name: "svc".into(), version: 1, definition_json: D1.into(), source_dir: Some("/src".into()), created_at: ts(0) },
        "create_pipeline stores version 1 with every field"
    );
    expect_already_exists(store.create_pipeline("svc", D2, None, ts(10)).await, "svc", "creating a live pipeline");
    assert_eq!(store.get_pipeline("svc", None).await.unwrap(), Some(v1.clone()), "a refused create writes nothing");

    let v2 = store.update_pipeline("svc", D1, Some("/src"), ts(20)).await.unwrap();
    assert_eq!(v2.version, 2, "an update bumps the version even if nothing changed");
    assert_eq!(v2.created_at, ts(20), "an update's version is created at the update's time");
    let v3 = store.update_pipeline("svc", D2, None, ts(30)).await.unwrap();
    assert_eq!((v3.version, v3.definition_json.as_str(), v3.source_dir.as_deref()), (3, D2, None), "update stores the new definition");
    assert_eq!(store.put_pipeline("svc", D2, None, ts(35)).await.unwrap(), v3, "put_pipeline of the live latest content keeps it");
    assert_eq!(store.get_pipeline("svc", None).await.unwrap(), Some(v3.clone()), "latest after updates");

    expect_not_found(store.update_pipeline("ghost", D1, None, ts(36)).await, "ghost", "updating an unknown pipeline");
    assert_eq!(store.get_pipeline("ghost", Some(1)).await.unwrap(), None, "a refused update writes nothing");

    // Delete: hidden from get (latest) and listings; versions stay readable.
    assert!(store.delete_pipeline("svc", ts(40)).await.unwrap(), "deleting a live pipeline returns true");
    assert_eq!(store.get_pipeline("svc", None).await.unwrap(), None, "a deleted pipeline has no latest version");
    assert_eq!(store.get_pipeline("svc", Some(1)).await.unwrap(), Some(v1.clone()), "versions of a deleted pipeline stay readable");
    assert_eq!(store.get_pipeline("svc", Some(3)).await.unwrap(), Some(v3.clone()), "versions of a deleted pipeline stay readable");
    assert!(store.list_pipelines(None, 0).await.unwrap().is_empty(), "a deleted pipeline is not listed");
    assert!(!store.delete_pipeline("svc", ts(41)).await.unwrap(), "deleting a deleted pipeline returns false");
    assert!(!store.delete_pipeline("ghost", ts(41)).await.unwrap(), "deleting an unknown pipeline returns false");
    assert_eq!(store.get_pipeline("ghost", None).await.unwrap(), None, "deleting an unknown name creates nothing");
    expect_not_found(store.update_pipeline("svc", D1, None, ts(42)).await, "svc", "updating a deleted pipeline");
    assert_eq!(store.get_pipeline("svc", Some(4)).await.unwrap(), None, "a refused update of a deleted pipeline writes nothing");

    // Re-create: numbering continues, old versions are untouched.
    let v4 = store.create_pipeline("svc", D1, Some("/src"), ts(50)).await.unwrap();
    assert_eq!(v4.version, 4, "re-creating a deleted name continues its version numbers (old executions reference them)");
    assert_eq!(v4.created_at, ts(50));
    assert_eq!(store.get_pipeline("svc", None).await.unwrap(), Some(v4.clone()), "a re-created pipeline is live again");
    assert_eq!(store.get_pipeline("svc", Some(1)).await.unwrap(), Some(v1), "re-creating keeps old versions");
    assert_eq!(store.list_pipelines(None, 0).await.unwrap(), vec![v4.clone()], "a re-created pipeline is listed with its latest version");
    expect_already_exists(store.create_pipeline("svc", D1, None, ts(51)).await, "svc", "creating a re-created pipeline");

    // put_pipeline revives a deleted name with a new version, even for identical content.
    assert!(store.delete_pipeline("svc", ts(60)).await.unwrap());
    let v5 = store.put_pipeline("svc", D1, Some("/src"), ts(61)).await.unwrap();
    assert_eq!(v5.version, 5, "put_pipeline of a deleted name inserts latest+1, even if identical to the last version");
    assert_eq!(v5.created_at, ts(61));
    assert_eq!(store.put_pipeline("svc", D1, Some("/src"), ts(62)).await.unwrap(), v5, "then put_pipeline is idempotent again");
    assert_eq!(store.get_pipeline("svc", None).await.unwrap(), Some(v5), "put_pipeline revives a deleted name");
    assert_eq!(store.update_pipeline("svc", D2, None, ts(63)).await.unwrap().version, 6, "a revived name can be updated");

    // Names are independent.
    let other = store.put_pipeline("other", D1, None, ts(70)).await.unwrap();
    assert_eq!(other.version, 1, "put_pipeline of a new name creates version 1");
    expect_already_exists(store.create_pipeline("other", D1, None, ts(71)).await, "other", "create after put_pipeline");
    assert_eq!(store.update_pipeline("other", D1, None, ts(72)).await.unwrap().version, 2, "update after put_pipeline");
    assert_eq!(store.get_pipeline("svc", None).await.unwrap().map(|p| p.version), Some(6), "other names do not affect svc");
}

/// Collects every page of `list_pipelines` with page size `page`.
async fn all_pipeline_pages<S: Store>(store: &S, page: usize) -> Vec<PipelineRecord> {
    let mut all: Vec<PipelineRecord> = Vec::new();
    loop {
        let after = all.last().map(|p| p.name.clone());
        let got = store.list_pipelines(after.as_deref(), page).await.unwrap();
        let max = if page == 0 { MAX_PAGE_SIZE } else { page };
        assert!(got.len() <= max, "a page of list_pipelines must hold at most {max} rows, got {}", got.len());
        if got.is_empty() {
            return all;
        }
        all.extend(got);
        assert!(all.len() <= 10 * MAX_PAGE_SIZE, "list_pipelines pagination does not end");
    }
}

/// `list_pipelines`: the latest version of each live pipeline, in byte order of
/// names, cursor pagination without gaps or duplicates, the page cap.
pub async fn list_pipelines_pagination<S: Store>(store: Arc<S>) {
    assert!(store.list_pipelines(None, 10).await.unwrap().is_empty(), "empty store lists no pipelines");

    let mut names: Vec<String> = (0..25).map(|i| format!("p{i:02}")).collect();
    names.extend(["Zeta", "alpha", "p05x", "A.b@c-d_e"].map(String::from));
    // Created in a scrambled order: listing sorts by name.
    for (k, name) in names.iter().enumerate().rev() {
        store.create_pipeline(name, &format!(r#"{{"n":"{name}"}}"#), None, ts(k as i64)).await.unwrap();
    }
    for i in (0..25).step_by(3) {
        let name = format!("p{i:02}");
        store.update_pipeline(&name, r#"{"updated":1}"#, None, ts(100)).await.unwrap();
        store.update_pipeline(&name, r#"{"updated":2}"#, None, ts(101)).await.unwrap();
    }
    for i in (0..25).step_by(5) {
        assert!(store.delete_pipeline(&format!("p{i:02}"), ts(200)).await.unwrap());
    }
    // p10 comes back.
    store.create_pipeline("p10", r#"{"again":true}"#, None, ts(300)).await.unwrap();

    let mut expected: Vec<PipelineRecord> = Vec::new();
    let mut live: Vec<&String> =
        names.iter().filter(|n| !(n.starts_with('p') && n.len() == 3 && n[1..].parse::<u32>().unwrap() % 5 == 0)).collect();
    let p10 = "p10".to_owned();
    live.push(&p10);
    live.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in live {
        expected.push(store.get_pipeline(name, None).await.unwrap().unwrap_or_else(|| panic!("{name} must be live")));
    }
    assert_eq!(expected.iter().find(|p| p.name == "p03").unwrap().version, 3, "updated pipelines are at version 3");
    assert_eq!(expected.iter().find(|p| p.name == "p10").unwrap().version, 2, "p10 was re-created at version 2");
    assert_eq!(expected[0].name, "A.b@c-d_e", "byte order: uppercase before lowercase");
    assert_eq!(expected[1].name, "Zeta");
    assert_eq!(expected[2].name, "alpha");

    let all = store.list_pipelines(None, 0).await.unwrap();
    let listed: Vec<(&str, u32)> = all.iter().map(|p| (p.name.as_str(), p.version)).collect();
    let wanted: Vec<(&str, u32)> = expected.iter().map(|p| (p.name.as_str(), p.version)).collect();
    assert_eq!(listed, wanted, "list_pipelines: latest version of each live pipeline, ordered by name");
    assert_eq!(all, expected, "listed records carry every field of the latest version");

    for page in [1, 4, 7, expected.len(), expected.len() + 1] {
        assert_eq!(all_pipeline_pages(&*store, page).await, expected, "paging with limit {page} must list each pipeline exactly once");
    }
    let after = store.list_pipelines(Some("p04"), 3).await.unwrap();
    let after: Vec<&str> = after.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(after, ["p05x", "p06", "p07"], "after_name is exclusive and may name a deleted or unknown pipeline");
    let after = store.list_pipelines(Some("p05"), 2).await.unwrap();
    let after: Vec<&str> = after.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(after, ["p05x", "p06"], "after_name may name a deleted pipeline");
    assert!(store.list_pipelines(Some("zzz"), 10).await.unwrap().is_empty(), "after the last name: nothing");

    // The page cap.
    let mut tasks = Vec::new();
    for i in 0..=MAX_PAGE_SIZE {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move { store.create_pipeline(&format!("cap{i:05}"), "{}", None, ts(0)).await.map(|p| p.version) }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("create task panicked").unwrap(), 1);
    }
    let total = expected.len() + MAX_PAGE_SIZE + 1;
    assert_eq!(store.list_pipelines(None, 0).await.unwrap().len(), MAX_PAGE_SIZE, "limit 0 means the largest page");
    let capped = store.list_pipelines(None, MAX_PAGE_SIZE * 5).await.unwrap();
    assert_eq!(capped.len(), MAX_PAGE_SIZE, "limit is capped at MAX_PAGE_SIZE");
    assert_eq!(all_pipeline_pages(&*store, 0).await.len(), total, "every pipeline is reachable through pages");
}

fn token(token: &str, fingerprint: &str) -> Option<ClientToken> {
    Some(ClientToken { token: token.to_owned(), fingerprint: fingerprint.to_owned() })
}

/// A create with a client token, in pipeline `pipeline`.
fn create_with_token(id: &str, pipeline: &str, t: &str, fingerprint: &str) -> Transition {
    Transition { target: Target::pipeline(pipeline, 1), client_token: token(t, fingerprint), ..create(id, 0) }
}

/// Client tokens: one execution per `(pipeline, token)`; a reuse is refused with
/// the first execution's id and whether the fingerprints match; refused creates
/// do not consume tokens; updates ignore tokens; deleting the pipeline forgets them.
pub async fn client_token_idempotency<S: Store>(store: &S) {
    let reused = |id: &str, same_request: bool| Err(TransitionError::TokenReused { execution_id: id.to_owned(), same_request });

    assert_eq!(commit_one(store, create_with_token("e1", PIPELINE, "T", "A")).await, Ok(1), "first use of a token creates");
    let mut retry = create_with_token("e2", PIPELINE, "T", "A");
    retry.ledger = vec![entry("e2", "Compile", 1, false)];
    retry.set_timers = vec![timer("e2", "k", 5)];
    assert_eq!(commit_one(store, retry).await, reused("e1", true), "the same request again names the first execution");
    assert_eq!(store.get_execution("e2").await.unwrap(), None, "a refused create writes no execution");
    assert!(store.ledger("e2").await.unwrap().is_empty(), "a refused create writes no ledger rows");
    assert!(store.execution_timers("e2").await.unwrap().is_empty(), "a refused create writes no timers");
    assert_eq!(commit_one(store, create_with_token("e3", PIPELINE, "T", "B")).await, reused("e1", false), "a different request");
    assert_eq!(store.get_execution("e3").await.unwrap(), None);

    assert_eq!(commit_one(store, create_with_token("e4", OTHER_PIPELINE, "T", "A")).await, Ok(1), "tokens are scoped to the pipeline");
    assert_eq!(commit_one(store, create_with_token("t", PIPELINE, "t", "A")).await, Ok(1), "tokens are case-sensitive");

    let results =
        store.commit(vec![create_with_token("e5", PIPELINE, "U", "A"), create_with_token("e6", PIPELINE, "U", "A")].into()).await.unwrap();
    assert_eq!(results, vec![Ok(1), reused("e5", true)], "a token used earlier in the same commit is reused");

    // The token is checked before the execution id, and a refused create does not consume its token.
    assert_eq!(commit_one(store, create_with_token("e1", PIPELINE, "T", "A")).await, reused("e1", true), "token check comes first");
    assert_eq!(
        commit_one(store, create_with_token("e1", PIPELINE, "V", "A")).await,
        Err(TransitionError::AlreadyExists("e1".into())),
        "a new token on an existing execution id"
    );
    assert_eq!(commit_one(store, create_with_token("e7", PIPELINE, "V", "A")).await, Ok(1), "a refused create does not consume its token");

    // Updates ignore tokens (neither checked nor recorded).
    let mut u = update("e1", 1, 10);
    u.client_token = token("U", "other");
    assert_eq!(commit_one(store, u).await, Ok(2), "an update ignores a used token");
    let mut u = update("e1", 2, 11);
    u.client_token = token("W", "A");
    assert_eq!(commit_one(store, u).await, Ok(3));
    assert_eq!(commit_one(store, create_with_token("e8", PIPELINE, "W", "A")).await, Ok(1), "an update does not record its token");

    // Limits: 1..=MAX_CLIENT_TOKEN_BYTES bytes (not characters), bounded fingerprint.
    let expect_limit = |result: Result<CommitResult, TransitionError>, what: &str| match result {
        Err(TransitionError::Limit(m)) => assert!(m.contains("client token"), "{what}: the refusal must name the token: {m}"),
        other => panic!("{what}: expected TransitionError::Limit, got {other:?}"),
    };
    let long = "x".repeat(MAX_CLIENT_TOKEN_BYTES + 1);
    expect_limit(commit_one(store, create_with_token("big", PIPELINE, &long, "A")).await.map(|v| vec![Ok(v)]), "a token over the limit");
    expect_limit(commit_one(store, create_with_token("big", PIPELINE, "", "A")).await.map(|v| vec![Ok(v)]), "an empty token");
    let big_fingerprint = "f".repeat(MAX_FINGERPRINT_BYTES + 1);
    expect_limit(
        commit_one(store, create_with_token("big", PIPELINE, "F", &big_fingerprint)).await.map(|v| vec![Ok(v)]),
        "a fingerprint over the limit",
    );
    assert_eq!(store.get_execution("big").await.unwrap(), None, "a refused commit writes nothing");
    let wide = "é".repeat(MAX_CLIENT_TOKEN_BYTES / 2);
    assert_eq!(commit_one(store, create_with_token("wide", PIPELINE, &wide, "A")).await, Ok(1), "the limit counts bytes");
    assert_eq!(commit_one(store, create_with_token("wide2", PIPELINE, &wide, "A")).await, reused("wide", true), "long tokens round-trip");
    let wider = format!("{wide}x");
    expect_limit(commit_one(store, create_with_token("wider", PIPELINE, &wider, "A")).await.map(|v| vec![Ok(v)]), "one byte more");
    let at_limit = "y".repeat(MAX_CLIENT_TOKEN_BYTES);
    let fingerprint = "f".repeat(MAX_FINGERPRINT_BYTES);
    assert_eq!(commit_one(store, create_with_token("at-limit", PIPELINE, &at_limit, &fingerprint)).await, Ok(1));
    assert_eq!(commit_one(store, create_with_token("at-limit2", PIPELINE, &at_limit, &fingerprint)).await, reused("at-limit", true));

    // Deleting the pipeline forgets its tokens (only its own).
    store.put_pipeline(PIPELINE, "{}", None, ts(0)).await.unwrap();
    assert!(store.delete_pipeline(PIPELINE, ts(20)).await.unwrap());
    assert_eq!(commit_one(store, create_with_token("e9", PIPELINE, "T", "B")).await, Ok(1), "a deleted pipeline's tokens are forgotten");
    assert_eq!(commit_one(store, create_with_token("e10", PIPELINE, "T", "B")).await, reused("e9", true), "and recorded anew");
    assert_eq!(
        commit_one(store, create_with_token("e11", OTHER_PIPELINE, "T", "A")).await,
        reused("e4", true),
        "other pipelines keep their tokens"
    );
}

/// [`CONCURRENT_TOKEN_STARTS`] concurrent commits creating different executions
/// with one client token: exactly one creates, every other one is refused naming
/// it.
pub async fn concurrent_starts_with_one_token<S: Store>(store: Arc<S>) {
    let barrier = Arc::new(tokio::sync::Barrier::new(CONCURRENT_TOKEN_STARTS));
    let mut tasks = Vec::with_capacity(CONCURRENT_TOKEN_STARTS);
    for i in 0..CONCURRENT_TOKEN_STARTS {
        let store = Arc::clone(&store);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let id = format!("race{i:02}");
            barrier.wait().await;
            (id.clone(), store.commit(vec![create_with_token(&id, PIPELINE, "one-token", "same-payload")].into()).await)
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        let (id, result) = task.await.expect("commit task panicked");
        let mut results = result.unwrap_or_else(|e| panic!("commit of {id} failed: {e}"));
        assert_eq!(results.len(), 1);
        outcomes.push((id, results.pop().unwrap()));
    }
    let winners: Vec<&str> = outcomes.iter().filter(|(_, r)| r.is_ok()).map(|(id, _)| id.as_str()).collect();
    assert_eq!(winners.len(), 1, "exactly one of {CONCURRENT_TOKEN_STARTS} concurrent starts with one token must create: {outcomes:?}");
    let winner = winners[0].to_owned();
    for (id, result) in &outcomes {
        if *id != winner {
            assert_eq!(
                *result,
                Err(TransitionError::TokenReused { execution_id: winner.clone(), same_request: true }),
                "{id}: a concurrent start with the same token must name the winner"
            );
            assert_eq!(store.get_execution(id).await.unwrap(), None, "{id}: a refused start must not be stored");
        }
    }
    let listed = store.list_executions(filter(Some(PIPELINE), false, 0)).await.unwrap();
    assert_eq!(ids(&listed), [winner.as_str()], "exactly one execution is stored");
}

/// Collects every page of `list_executions` for `base` with page size `page`.
async fn all_execution_pages<S: Store>(store: &S, base: &ExecutionFilter, page: usize) -> Vec<String> {
    assert!(page > 0, "page size 0 means the largest page");
    let mut all: Vec<ExecutionRecord> = Vec::new();
    loop {
        let f = ExecutionFilter { before: all.last().map(ExecutionRecord::cursor), limit: page, ..base.clone() };
        let got = store.list_executions(f).await.unwrap();
        assert!(got.len() <= page, "a page of list_executions must hold at most limit = {page} rows, got {}", got.len());
        if got.is_empty() {
            return all.into_iter().map(|r| r.id).collect();
        }
        all.extend(got);
        assert!(all.len() <= 10 * MAX_PAGE_SIZE, "list_executions pagination does not end");
    }
}

/// `list_executions` keyset pagination: `(created_at DESC, id DESC)` order, ties
/// broken by id, pages without gaps or duplicates for every filter, stable when
/// newer executions arrive between pages.
pub async fn execution_pagination<S: Store>(store: &S) {
    // (id, pipeline, created_at offset, finished); many ties in created_at, ids
    // not in insertion order.
    let mut rows: Vec<(String, &str, i64, bool)> = Vec::new();
    for i in 0..40_i64 {
        let id = format!("x{:02}", (i * 17) % 40);
        let pipeline = if i % 3 == 0 { OTHER_PIPELINE } else { PIPELINE };
        rows.push((id, pipeline, (i / 4) * 10, i % 5 == 0));
    }
    let (first, second) = rows.split_at(rows.len() / 2);
    for half in [second, first] {
        let batch: Vec<Transition> =
            half.iter().map(|(id, pipeline, at, _)| Transition { target: Target::pipeline(*pipeline, 1), ..create(id, *at) }).collect();
        assert!(store.commit(batch.into()).await.unwrap().iter().all(Result::is_ok));
    }
    let finish: Vec<Transition> =
        rows.iter().filter(|r| r.3).map(|(id, _, _, _)| Transition { status: "Succeeded".into(), ..update(id, 1, 1_000) }).collect();
    assert!(store.commit(finish.into()).await.unwrap().iter().all(Result::is_ok));

    let mut sorted = rows.clone();
    sorted.sort_by(|a, b| (b.2, &b.0).cmp(&(a.2, &a.0)));
    for pipeline in [None, Some(PIPELINE), Some(OTHER_PIPELINE)] {
        for unfinished_only in [false, true] {
            let base = filter(pipeline, unfinished_only, 0);
            let expected: Vec<String> =
                sorted.iter().filter(|r| pipeline.is_none_or(|p| p == r.1) && !(unfinished_only && r.3)).map(|r| r.0.clone()).collect();
            let whole = store.list_executions(base.clone()).await.unwrap();
            assert_eq!(ids(&whole), expected, "{base:?}: newest first by (created_at, id), ties by id descending");
            for page in [1, 3, 7, expected.len()] {
                assert_eq!(
                    all_execution_pages(store, &base, page).await,
                    expected,
                    "{base:?}: pages of {page} must have no gaps or duplicates"
                );
            }
        }
    }

    // A cursor need not be a stored row: strictly older by (created_at, id).
    let cursor = ExecutionCursor { created_at: ts(50), id: "x2".to_owned() };
    let got = store.list_executions(ExecutionFilter { before: Some(cursor), limit: 4, ..filter(None, false, 0) }).await.unwrap();
    let expected: Vec<&str> =
        sorted.iter().filter(|r| r.2 < 50 || (r.2 == 50 && r.0.as_str() < "x2")).take(4).map(|r| r.0.as_str()).collect();
    assert_eq!(ids(&got), expected, "rows strictly older than an arbitrary cursor");
    let oldest = store
        .list_executions(ExecutionFilter {
            before: Some(ExecutionCursor { created_at: ts(0), id: String::new() }),
            ..filter(None, false, 0)
        })
        .await
        .unwrap();
    assert!(oldest.is_empty(), "nothing is older than the oldest possible cursor at the first instant");

    // Newer executions arriving between pages do not shift later pages.
    let first_page = store.list_executions(filter(None, false, 5)).await.unwrap();
    let mut newer = create("zz-newest", 10_000);
    newer.target = Target::pipeline(PIPELINE, 1);
    let same_instant = create("x99", first_page.last().unwrap().created_at.unix_ms() - BASE_MS);
    assert_eq!(store.commit(vec![newer, same_instant].into()).await.unwrap(), vec![Ok(1), Ok(1)]);
    let second_page = store
        .list_executions(ExecutionFilter { before: Some(first_page.last().unwrap().cursor()), ..filter(None, false, 5) })
        .await
        .unwrap();
    let expected: Vec<&str> = sorted.iter().skip(5).take(5).map(|r| r.0.as_str()).collect();
    assert_eq!(ids(&second_page), expected, "the next page continues after the cursor, ignoring newer executions");
}

/// `list_ledger`: a pipeline's entries newest first (`seq DESC`), optionally of
/// one execution, with `before_seq` pagination and the page cap.
pub async fn ledger_listing<S: Store>(store: &S) {
    let all_of = |pipeline: &str| LedgerFilter { target: TargetName::pipeline(pipeline), ..LedgerFilter::default() };
    assert!(store.list_ledger(all_of(PIPELINE)).await.unwrap().is_empty(), "empty store has no ledger");

    let in_pipeline = |id: &str, pipeline: &str, n: u32| {
        let mut t = Transition { target: Target::pipeline(pipeline, 1), ..create(id, 0) };
        t.ledger = (1..=n).map(|a| entry(id, "Compile", a, a < n)).collect();
        t
    };
    let results = store
        .commit(vec![in_pipeline("a1", PIPELINE, 2), in_pipeline("b1", OTHER_PIPELINE, 1), in_pipeline("a2", PIPELINE, 1)].into())
        .await;
    assert_eq!(results.unwrap(), vec![Ok(1), Ok(1), Ok(1)]);
    for round in 1..=3_u64 {
        let mut a1 = update("a1", round, 10 * round as i64);
        a1.ledger = vec![entry("a1", "Test", round as u32, false)];
        // An update's target is ignored: the entry belongs to a1's pipeline.
        a1.target = Target::pipeline(OTHER_PIPELINE, 1);
        let mut b1 = update("b1", round, 10 * round as i64);
        b1.target = Target::pipeline(OTHER_PIPELINE, 1);
        b1.ledger = vec![entry("b1", "Lint", round as u32, true)];
        let mut a2 = update("a2", round, 10 * round as i64);
        a2.ledger = vec![entry("a2", "Deploy", 1, false), entry("a2", "Deploy", 2, false)];
        assert_eq!(store.commit(vec![a1, b1, a2].into()).await.unwrap(), vec![Ok(round + 1); 3]);
    }

    let mut expected: Vec<LedgerEntry> = Vec::new();
    for id in ["a1", "a2"] {
        expected.extend(store.ledger(id).await.unwrap());
    }
    expected.sort_by_key(|e| std::cmp::Reverse(e.seq));
    assert_eq!(expected.len(), 2 + 3 + 1 + 6, "every entry of a1 and a2");
    let got = store.list_ledger(all_of(PIPELINE)).await.unwrap();
    assert_eq!(got, expected, "list_ledger: the pipeline's entries, newest (seq) first, every field");

    let mut b1 = store.ledger("b1").await.unwrap();
    b1.reverse();
    assert_eq!(store.list_ledger(all_of(OTHER_PIPELINE)).await.unwrap(), b1, "another pipeline's entries");

    let only = |pipeline: &str, id: &str| LedgerFilter { execution_id: Some(id.to_owned()), ..all_of(pipeline) };
    let mut a1 = store.ledger("a1").await.unwrap();
    a1.reverse();
    assert_eq!(store.list_ledger(only(PIPELINE, "a1")).await.unwrap(), a1, "execution_id filter, newest first");
    assert!(store.list_ledger(only(PIPELINE, "b1")).await.unwrap().is_empty(), "an execution of another pipeline has no entries here");
    assert!(store.list_ledger(only(PIPELINE, "ghost")).await.unwrap().is_empty(), "unknown execution");
    assert!(store.list_ledger(all_of("ghost")).await.unwrap().is_empty(), "unknown pipeline");

    // Pagination by before_seq.
    for (base, whole) in [(all_of(PIPELINE), &expected), (only(PIPELINE, "a1"), &a1)] {
        for page in [1, 2, 5, whole.len()] {
            let mut collected: Vec<LedgerEntry> = Vec::new();
            loop {
                let f = LedgerFilter { before_seq: collected.last().map(|e| e.seq), limit: page, ..base.clone() };
                let got = store.list_ledger(f).await.unwrap();
                assert!(got.len() <= page, "a page of list_ledger must hold at most limit = {page} entries");
                if got.is_empty() {
                    break;
                }
                collected.extend(got);
                assert!(collected.len() <= whole.len(), "{base:?}: pages of {page} repeat entries");
            }
            assert_eq!(&collected, whole, "{base:?}: pages of {page} must have no gaps or duplicates");
        }
    }
    let middle = expected[3].seq;
    let got = store.list_ledger(LedgerFilter { before_seq: Some(middle), limit: 2, ..all_of(PIPELINE) }).await.unwrap();
    assert_eq!(got, expected[4..6].to_vec(), "before_seq is exclusive");
    let oldest = expected.last().unwrap().seq;
    assert!(store.list_ledger(LedgerFilter { before_seq: Some(oldest), ..all_of(PIPELINE) }).await.unwrap().is_empty());
    let got = store.list_ledger(LedgerFilter { before_seq: Some(i64::MAX), ..all_of(PIPELINE) }).await.unwrap();
    assert_eq!(got, expected, "a before_seq past the end lists everything");

    // The page cap.
    let mut big = Transition { target: Target::pipeline("big", 1), ..create("big", 100) };
    big.ledger = (0..=MAX_PAGE_SIZE as u32).map(|a| entry("big", "Many", a + 1, false)).collect();
    assert_eq!(commit_one(store, big).await, Ok(1));
    assert_eq!(store.list_ledger(all_of("big")).await.unwrap().len(), MAX_PAGE_SIZE, "limit 0 means the largest page");
    let capped = store.list_ledger(LedgerFilter { limit: MAX_PAGE_SIZE * 5, ..all_of("big") }).await.unwrap();
    assert_eq!(capped.len(), MAX_PAGE_SIZE, "limit is capped at MAX_PAGE_SIZE");
    assert_eq!(capped[0].attempt, MAX_PAGE_SIZE as u32 + 1, "the capped page starts with the newest entry");
}

// ---------------------------------------------------------------------------
// Dead-letter queues and redrive runs
// ---------------------------------------------------------------------------

/// What execution `execution_id` writes when it fails for good, for the entry
/// `id` in `queue`, having failed at `ts(failed_at)`.
fn dlq_write(id: &str, queue: &str, execution_id: &str, failed_at: i64) -> DlqEntryWrite {
    DlqEntryWrite {
        id: id.to_owned(),
        queue: queue.to_owned(),
        source: Target::pipeline(PIPELINE, 1),
        execution_id: execution_id.to_owned(),
        stage: "Build".to_owned(),
        action: "Compile".to_owned(),
        exception_type: "Step.TIMEOUT".to_owned(),
        message: format!("{execution_id} timed out — «unicode» ok"),
        input_json: format!(r#"{{"id":"{id}"}}"#),
        detail_json: format!(r#"{{"attempts":{{"Compile":3}},"execution":"{execution_id}"}}"#),
        first_failure_at: ts(failed_at),
        last_failure_at: ts(failed_at),
    }
}

/// Creates execution `id` at `ts(at)`, failed for good: its entry `id` enters
/// `queue` (the failure happened 5 ms earlier).
fn failed_create(id: &str, queue: &str, at: i64) -> Transition {
    let mut t = Transition { status: "Failed".to_owned(), ..create(id, at) };
    t.dlq = vec![DlqOp::Enter(dlq_write(id, queue, id, at - 5))];
    t
}

/// A redrive of entry `entry_id`: creates execution `execution_id` at `ts(at)`.
fn redrive(entry_id: &str, execution_id: &str, at: i64) -> Transition {
    let mut t = create(execution_id, at);
    t.dlq = vec![take(entry_id, execution_id)];
    t
}

fn take(entry_id: &str, execution_id: &str) -> DlqOp {
    DlqOp::Take { entry_id: entry_id.to_owned(), execution_id: execution_id.to_owned() }
}

fn resolve(entry_id: &str) -> DlqOp {
    DlqOp::Resolve { entry_id: entry_id.to_owned() }
}

async fn dlq_entry<S: Store>(store: &S, id: &str) -> DlqEntryRecord {
    store.get_dlq_entry(id).await.unwrap().unwrap_or_else(|| panic!("dead-letter entry {id} must exist"))
}

fn entry_ids(entries: &[DlqEntryRecord]) -> Vec<&str> {
    entries.iter().map(|e| e.id.as_str()).collect()
}

fn not_queued(entry_id: &str) -> Result<u64, TransitionError> {
    Err(TransitionError::DlqEntryNotQueued { entry_id: entry_id.to_owned() })
}

/// The lifecycle of an entry: `Enter` creates it (and its queue), `Take` moves it
/// out (only if `QUEUED`, else the whole transition is refused), `Enter` again
/// puts it back keeping its identity and count, `Resolve` ends it.
pub async fn dlq_enter_take_resolve<S: Store>(store: &S) {
    const Q: &str = "retry-a";
    assert_eq!(store.get_dlq_entry("d1").await.unwrap(), None, "unknown entry");
    assert_eq!(store.get_dlq_queue(Q).await.unwrap(), None, "unknown queue");

    // Enter: a new entry in a new queue.
    let first = failed_create("d1", Q, 10);
    let write = match &first.dlq[0] {
        DlqOp::Enter(w) => w.clone(),
        _ => unreachable!(),
    };
    assert_eq!(commit_one(store, first).await, Ok(1));
    let entered = DlqEntryRecord {
        id: "d1".into(),
        queue: Q.into(),
        state: DlqEntryState::Queued,
        source: Target::pipeline(PIPELINE, 1),
        execution_id: "d1".into(),
        stage: "Build".into(),
        action: "Compile".into(),
        exception_type: "Step.TIMEOUT".into(),
        message: write.message.clone(),
        input_json: write.input_json.clone(),
        detail_json: write.detail_json.clone(),
        redrive_count: 0,
        max_redrives: DEFAULT_MAX_REDRIVES,
        first_failure_at: ts(5),
        last_failure_at: ts(5),
        entered_at: ts(10),
        redriven_to: None,
        redriven_at: None,
        resolved_at: None,
        updated_at: ts(10),
    };
    assert_eq!(dlq_entry(store, "d1").await, entered, "Enter creates a QUEUED entry with every field, entered at the transition's time");
    assert!(!entered.is_poison());
    let queue = DlqQueueRecord { name: Q.into(), max_redrives: DEFAULT_MAX_REDRIVES, created_at: ts(10) };
    assert_eq!(
        store.get_dlq_queue(Q).await.unwrap(),
        Some(DlqQueueStats { queue: queue.clone(), depth: 1, poison: 0, redriven: 0, oldest_entered_at: Some(ts(10)) }),
        "Enter creates the queue with DEFAULT_MAX_REDRIVES"
    );

    // Take: out of the queue, counted.
    assert_eq!(commit_one(store, redrive("d1", "d1-r1", 20)).await, Ok(1));
    let taken = DlqEntryRecord {
        state: DlqEntryState::Redriven,
        redrive_count: 1,
        redriven_to: Some("d1-r1".into()),
        redriven_at: Some(ts(20)),
        updated_at: ts(20),
        ..entered.clone()
    };
    assert_eq!(dlq_entry(store, "d1").await, taken, "Take: REDRIVEN, count + 1, redriven_to/at set, entered_at kept");
    assert_eq!(
        store.get_dlq_queue(Q).await.unwrap(),
        Some(DlqQueueStats { queue: queue.clone(), depth: 0, poison: 0, redriven: 1, oldest_entered_at: None }),
        "a taken entry leaves the queue's depth and counts as redriven"
    );

    // A second Take of the same entry refuses its whole transition, only it.
    let mut again = update("d1", 1, 30);
    again.status = "Failed".into();
    again.ledger = vec![entry("d1", "Compile", 1, false)];
    again.set_timers = vec![timer("d1", "k", 100)];
    again.dlq = vec![take("d1", "d1")];
    let mut again_create = redrive("d1", "d1-r2", 30);
    again_create.ledger = vec![entry("d1-r2", "Compile", 1, false)];
    again_create.set_timers = vec![timer("d1-r2", "k", 100)];
    let results = store.commit(vec![again, update("d1-r1", 1, 30), again_create, redrive("ghost", "g-r1", 30)].into()).await.unwrap();
    assert_eq!(results, vec![not_queued("d1"), Ok(2), not_queued("d1"), not_queued("ghost")], "a Take of a non-QUEUED or missing entry");
    assert_eq!(version_of(store, "d1").await, Some(1), "a refused update keeps the execution's version");
    assert_eq!(store.get_execution("d1").await.unwrap().unwrap().status, "Failed", "and its status");
    assert!(store.ledger("d1").await.unwrap().is_empty(), "a refused transition writes no ledger entry");
    assert!(store.execution_timers("d1").await.unwrap().is_empty(), "a refused transition sets no timer");
    assert_eq!(store.get_execution("d1-r2").await.unwrap(), None, "a refused create writes no execution");
    assert_eq!(store.get_execution("g-r1").await.unwrap(), None);
    assert_eq!(store.next_timer_due().await.unwrap(), None, "no timer of a refused transition is visible");
    assert_eq!(version_of(store, "d1-r1").await, Some(2), "the other transitions of the commit commit");
    assert_eq!(dlq_entry(store, "d1").await, taken, "a refused Take changes nothing");

    // Enter again (the redrive failed for good): back in its own queue.
    let mut back = update("d1-r1", 2, 40);
    back.status = "Failed".into();
    let mut returning = dlq_write("d1", "some-other-queue", "d1-r1", 38);
    returning.first_failure_at = ts(35);
    returning.exception_type = "Job.CAPACITY_ERROR".into();
    returning.source = Target::pipeline(PIPELINE, 2);
    back.dlq = vec![DlqOp::Enter(returning.clone())];
    assert_eq!(commit_one(store, back).await, Ok(3));
    let returned = DlqEntryRecord {
        state: DlqEntryState::Queued,
        source: Target::pipeline(PIPELINE, 2),
        execution_id: "d1-r1".into(),
        exception_type: "Job.CAPACITY_ERROR".into(),
        message: returning.message.clone(),
        detail_json: returning.detail_json.clone(),
        last_failure_at: ts(38),
        entered_at: ts(40),
        updated_at: ts(40),
        ..taken.clone()
    };
    assert_eq!(
        dlq_entry(store, "d1").await,
        returned,
        "a returning entry: QUEUED, new failure fields and entered_at; id, queue, first_failure_at, count, redriven_to/at kept"
    );
    assert_eq!(
        store.get_dlq_queue("some-other-queue").await.unwrap(),
        None,
        "a returning entry keeps its queue: no other queue is created"
    );
    let stats = store.get_dlq_queue(Q).await.unwrap().unwrap();
    assert_eq!((stats.depth, stats.redriven, stats.oldest_entered_at), (1, 0, Some(ts(40))));

    // Second redrive, then the lineage succeeds.
    assert_eq!(commit_one(store, redrive("d1", "d1-r2", 50)).await, Ok(1));
    let mut done = update("d1-r2", 1, 60);
    done.status = "Succeeded".into();
    done.dlq = vec![resolve("d1")];
    assert_eq!(commit_one(store, done).await, Ok(2));
    let resolved = DlqEntryRecord {
        state: DlqEntryState::Resolved,
        redrive_count: 2,
        redriven_to: Some("d1-r2".into()),
        redriven_at: Some(ts(50)),
        resolved_at: Some(ts(60)),
        updated_at: ts(60),
        ..returned.clone()
    };
    assert_eq!(dlq_entry(store, "d1").await, resolved, "Resolve: RESOLVED at the transition's time");
    let stats = store.get_dlq_queue(Q).await.unwrap().unwrap();
    assert_eq!((stats.depth, stats.poison, stats.redriven, stats.oldest_entered_at), (0, 0, 0, None), "a resolved entry is not counted");
    assert_eq!(commit_one(store, redrive("d1", "d1-r3", 65)).await, not_queued("d1"), "a resolved entry cannot be taken");

    // Resolve of a missing entry is fine; Enter after Resolve re-queues.
    let mut ghost = update("d1-r2", 2, 70);
    ghost.dlq = vec![resolve("never-entered")];
    assert_eq!(commit_one(store, ghost).await, Ok(3), "resolving a missing (purged) entry is not an error");
    assert_eq!(store.get_dlq_entry("never-entered").await.unwrap(), None, "Resolve creates nothing");
    let mut requeue = update("d1-r2", 3, 80);
    requeue.dlq = vec![DlqOp::Enter(dlq_write("d1", Q, "d1-r2", 79))];
    assert_eq!(commit_one(store, requeue).await, Ok(4));
    let e = dlq_entry(store, "d1").await;
    assert_eq!(
        (e.state, e.redrive_count, e.resolved_at, e.entered_at),
        (DlqEntryState::Queued, 2, None, ts(80)),
        "Enter of a resolved entry"
    );
    assert_eq!(e.first_failure_at, ts(5), "first_failure_at is kept from the first write");

    // Several ops of one transition apply in order.
    let mut both = failed_create("d2", Q, 90);
    both.dlq.push(take("d2", "d2"));
    both.dlq.push(take("d1", "d2"));
    assert_eq!(commit_one(store, both).await, Ok(1));
    let (d1, d2) = (dlq_entry(store, "d1").await, dlq_entry(store, "d2").await);
    assert_eq!((d2.state, d2.redrive_count, d2.redriven_to.as_deref()), (DlqEntryState::Redriven, 1, Some("d2")), "Enter then Take");
    assert_eq!((d1.state, d1.redrive_count, d1.redriven_at), (DlqEntryState::Redriven, 3, Some(ts(90))));
    let mut wrong_order = failed_create("d3", Q, 95);
    wrong_order.dlq.insert(0, take("d3", "d3"));
    assert_eq!(commit_one(store, wrong_order).await, not_queued("d3"), "Take before Enter of a new entry is refused");
    assert_eq!(store.get_dlq_entry("d3").await.unwrap(), None);
    assert_eq!(store.get_execution("d3").await.unwrap(), None);
}

/// A transition refused for any reason writes none of its dead-letter ops, nor
/// anything else: not the queue an `Enter` would have created, not its ledger
/// entries or timers.
pub async fn dlq_atomicity<S: Store>(store: &S) {
    assert_eq!(store.commit(vec![failed_create("a1", "atomic", 0), create("holder", 0)].into()).await.unwrap(), vec![Ok(1), Ok(1)]);
    assert_eq!(commit_one(store, redrive("a1", "a1-r1", 10)).await, Ok(1));
    let a1 = dlq_entry(store, "a1").await;

    // A Take of a non-queued entry after an Enter (of an entry in a new queue), a
    // Resolve, a ledger entry and a timer.
    let mut t = update("holder", 1, 20);
    t.ledger = vec![entry("holder", "Compile", 1, true)];
    t.set_timers = vec![timer("holder", "k", 500)];
    t.dlq = vec![DlqOp::Enter(dlq_write("n1", "atomic-new", "holder", 19)), resolve("a1"), take("a1", "holder")];
    assert_eq!(commit_one(store, t).await, not_queued("a1"));
    assert_eq!(version_of(store, "holder").await, Some(1), "the execution is unchanged");
    assert!(store.ledger("holder").await.unwrap().is_empty(), "no ledger entry");
    assert!(store.execution_timers("holder").await.unwrap().is_empty(), "no timer");
    assert_eq!(store.get_dlq_entry("n1").await.unwrap(), None, "the Enter before the refused Take is undone");
    assert_eq!(store.get_dlq_queue("atomic-new").await.unwrap(), None, "and so is its queue");
    assert_eq!(dlq_entry(store, "a1").await, a1, "the Resolve before the refused Take is undone");

    // A version conflict, a duplicate create and a reused client token write no entry.
    let mut conflict = update("holder", 7, 30);
    conflict.dlq = vec![DlqOp::Enter(dlq_write("n2", "conflict-q", "holder", 29)), resolve("a1")];
    assert_eq!(
        commit_one(store, conflict).await,
        Err(TransitionError::VersionConflict { execution_id: "holder".into(), expected: 7, actual: Some(1) })
    );
    let mut duplicate = failed_create("holder", "conflict-q", 31);
    duplicate.dlq.push(resolve("a1"));
    assert_eq!(commit_one(store, duplicate).await, Err(TransitionError::AlreadyExists("holder".into())));
    assert_eq!(commit_one(store, create_with_token("tok1", PIPELINE, "T", "A")).await, Ok(1));
    let reused = Transition { client_token: token("T", "A"), ..failed_create("tok2", "conflict-q", 32) };
    assert!(matches!(commit_one(store, reused).await, Err(TransitionError::TokenReused { .. })));
    for id in ["n2", "holder", "tok2"] {
        assert_eq!(store.get_dlq_entry(id).await.unwrap(), None, "{id}: a refused transition writes no entry");
    }
    assert_eq!(store.get_dlq_queue("conflict-q").await.unwrap(), None, "a refused transition creates no queue");
    assert_eq!(dlq_entry(store, "a1").await, a1, "a refused transition resolves nothing");

    // The same transition, once valid, writes everything.
    let mut ok = update("holder", 1, 40);
    ok.ledger = vec![entry("holder", "Compile", 1, true)];
    ok.dlq = vec![DlqOp::Enter(dlq_write("n1", "atomic-new", "holder", 39)), resolve("a1")];
    assert_eq!(commit_one(store, ok).await, Ok(2));
    assert_eq!(dlq_entry(store, "n1").await.state, DlqEntryState::Queued);
    assert_eq!(dlq_entry(store, "a1").await.state, DlqEntryState::Resolved);
    assert_eq!(store.ledger("holder").await.unwrap().len(), 1);
}

/// Whether `e` matches `f` (the reference semantics of [`DlqEntryFilter`]; the
/// cursor and limit aside).
fn dlq_matches(e: &DlqEntryRecord, f: &DlqEntryFilter) -> bool {
    f.queue.as_ref().is_none_or(|q| *q == e.queue)
        && f.queue_prefix.as_ref().is_none_or(|p| e.queue.starts_with(p.as_str()))
        && f.state.is_none_or(|s| s == e.state)
        && f.poison.is_none_or(|p| p == e.is_poison())
        && f.exception_type.as_ref().is_none_or(|x| *x == e.exception_type)
        && f.source_name.as_ref().is_none_or(|p| p == e.source.name())
        && f.entered_at_or_before.is_none_or(|at| e.entered_at <= at)
}

/// Collects every page of `list_dlq_entries` for `base` with page size `page`.
async fn all_dlq_pages<S: Store>(store: &S, base: &DlqEntryFilter, page: usize) -> Vec<DlqEntryRecord> {
    assert!(page > 0, "page size 0 means the largest page");
    let mut all: Vec<DlqEntryRecord> = Vec::new();
    loop {
        let f = DlqEntryFilter { after: all.last().map(DlqEntryRecord::cursor), limit: page, ..base.clone() };
        let got = store.list_dlq_entries(f).await.unwrap();
        assert!(got.len() <= page, "a page of list_dlq_entries must hold at most limit = {page} rows, got {}", got.len());
        if got.is_empty() {
            return all;
        }
        all.extend(got);
        assert!(all.len() <= 10 * MAX_PAGE_SIZE, "list_dlq_entries pagination does not end");
    }
}

/// `list_dlq_entries` and `count_dlq_entries`: every filter field alone and
/// combined, oldest first `(entered_at, id)`, keyset pages without gaps or
/// duplicates, the page cap. A queue prefix is a byte prefix of the name.
pub async fn dlq_filters_and_paging<S: Store>(store: &S) {
    const QUEUES: [&str; 9] = ["retry-a", "retry-b", "other", "retry", "retry-", "retrx", "retryX", "retry.x", "retrz"];
    const EXCEPTIONS: [&str; 3] = ["Step.TIMEOUT", "Job.CAPACITY_ERROR", "Custom.Boom"];
    assert!(store.list_dlq_entries(DlqEntryFilter::default()).await.unwrap().is_empty(), "empty store lists no entries");
    assert_eq!(store.count_dlq_entries(DlqEntryFilter::default()).await.unwrap(), 0);

    // 45 entries, 5 per queue; many ties in entered_at, ids not in time order,
    // committed in two batches out of time order.
    let mut creates = Vec::new();
    let mut by_queue: Vec<Vec<String>> = vec![Vec::new(); QUEUES.len()];
    for i in 0..45_usize {
        let id = format!("f{:02}", (i * 17) % 45);
        by_queue[i % QUEUES.len()].push(id.clone());
        let mut t = failed_create(&id, QUEUES[i % QUEUES.len()], 100 * ((i as i64 * 7) % 10));
        t.target = Target::pipeline(if (i / 3) % 2 == 0 { PIPELINE } else { OTHER_PIPELINE }, 1);
        if let DlqOp::Enter(w) = &mut t.dlq[0] {
            w.exception_type = EXCEPTIONS[i % EXCEPTIONS.len()].to_owned();
            w.source = t.target.clone();
        }
        creates.push(t);
    }
    let later = creates.split_off(20);
    for batch in [later, creates] {
        assert!(store.commit(batch.into()).await.unwrap().iter().all(Result::is_ok));
    }
    // In each queue, the first entry is redriven and comes back (a count of 1),
    // the second stays redriven, the third is resolved; retry's first entry is
    // redriven and comes back twice (a count of 2).
    for (q, ids) in by_queue.iter().enumerate() {
        let rounds = if QUEUES[q] == "retry" { 2 } else { 1 };
        for (j, id) in ids.iter().take(3).enumerate() {
            for round in 1..=if j == 0 { rounds } else { 1 } {
                let at = 1_000 + 100 * round + 10 * q as i64;
                let execution = format!("{id}-r{round}");
                assert_eq!(commit_one(store, redrive(id, &execution, at)).await, Ok(1));
                let mut outcome = update(&execution, 1, at + 5);
                outcome.dlq = match j {
                    0 => vec![DlqOp::Enter(dlq_write(id, "ignored", &execution, at + 4))],
                    1 => vec![],
                    _ => vec![resolve(id)],
                };
                assert_eq!(commit_one(store, outcome).await, Ok(2));
            }
        }
    }
    // Lower retry-a's and retry's max: their entries with a count of 1 or 2 become poison.
    assert_eq!(store.configure_dlq_queue("retry-a", 1, ts(2_000)).await.unwrap().max_redrives, 1);
    assert_eq!(store.configure_dlq_queue("retry", 2, ts(2_000)).await.unwrap().max_redrives, 2);

    // The reference: every entry as get_dlq_entry reads it.
    let mut model = Vec::new();
    for i in 0..45 {
        model.push(dlq_entry(store, &format!("f{i:02}")).await);
    }
    model.sort_by(|a, b| (a.entered_at, &a.id).cmp(&(b.entered_at, &b.id)));
    assert_eq!(store.get_dlq_queue("ignored").await.unwrap(), None, "returning entries keep their queues");
    for e in &model {
        let max = match e.queue.as_str() {
            "retry-a" => 1,
            "retry" => 2,
            _ => DEFAULT_MAX_REDRIVES,
        };
        assert_eq!(e.max_redrives, max, "{}: max_redrives is the queue's at read time", e.id);
    }
    let count_of = |state: DlqEntryState| model.iter().filter(|e| e.state == state).count();
    assert!(count_of(DlqEntryState::Queued) > 20 && count_of(DlqEntryState::Redriven) > 2 && count_of(DlqEntryState::Resolved) > 2);
    let queued_poison = model.iter().filter(|e| e.state == DlqEntryState::Queued && e.is_poison()).count();
    assert_eq!(queued_poison, 2, "the first entries of retry-a and retry are poison");

    // Hand-checked prefixes: byte prefixes, the successor itself excluded.
    let queues_of = |f: &DlqEntryFilter| {
        let mut q: Vec<String> = model.iter().filter(|e| dlq_matches(e, f)).map(|e| e.queue.clone()).collect();
        q.sort();
        q.dedup();
        q
    };
    let prefixed = |p: &str| DlqEntryFilter { queue_prefix: Some(p.to_owned()), ..DlqEntryFilter::default() };
    assert_eq!(queues_of(&prefixed("retry-")), ["retry-", "retry-a", "retry-b"]);
    assert_eq!(queues_of(&prefixed("retry")), ["retry", "retry-", "retry-a", "retry-b", "retry.x", "retryX"]);
    for (prefix, queues) in
        [("retry-", vec!["retry-", "retry-a", "retry-b"]), ("retry", vec!["retry", "retry-", "retry-a", "retry-b", "retry.x", "retryX"])]
    {
        let mut listed: Vec<String> = store.list_dlq_entries(prefixed(prefix)).await.unwrap().into_iter().map(|e| e.queue).collect();
        listed.sort();
        listed.dedup();
        assert_eq!(listed, queues, "queue_prefix {prefix:?}: names starting with it, not retrx, retrz or other");
    }

    let queued = Some(DlqEntryState::Queued);
    let mut filters: Vec<DlqEntryFilter> = vec![DlqEntryFilter::default()];
    for q in QUEUES.iter().chain(&["nope"]) {
        filters.push(DlqEntryFilter { queue: Some((*q).to_owned()), ..DlqEntryFilter::default() });
        filters.push(DlqEntryFilter { queue: Some((*q).to_owned()), state: queued, ..DlqEntryFilter::default() });
    }
    for p in ["retry-", "retry", "r", "", "retrx", "retry-a", "retry-ab", "zzz", "\u{10ffff}"] {
        filters.push(prefixed(p));
        filters.push(DlqEntryFilter { state: queued, poison: Some(false), ..prefixed(p) });
    }
    for state in [DlqEntryState::Queued, DlqEntryState::Redriven, DlqEntryState::Resolved] {
        filters.push(DlqEntryFilter { state: Some(state), ..DlqEntryFilter::default() });
    }
    for poison in [true, false] {
        filters.push(DlqEntryFilter { poison: Some(poison), ..DlqEntryFilter::default() });
        filters.push(DlqEntryFilter { poison: Some(poison), state: queued, ..DlqEntryFilter::default() });
        filters.push(DlqEntryFilter { poison: Some(poison), state: queued, queue: Some("retry-a".into()), ..DlqEntryFilter::default() });
    }
    for x in EXCEPTIONS.iter().chain(&["Nope"]) {
        filters.push(DlqEntryFilter { exception_type: Some((*x).to_owned()), ..DlqEntryFilter::default() });
        filters.push(DlqEntryFilter {
            exception_type: Some((*x).to_owned()),
            queue: Some("retry-b".into()),
            state: queued,
            ..DlqEntryFilter::default()
        });
    }
    for p in [PIPELINE, OTHER_PIPELINE] {
        filters.push(DlqEntryFilter { source_name: Some(p.to_owned()), ..DlqEntryFilter::default() });
        filters.push(DlqEntryFilter { source_name: Some(p.to_owned()), state: queued, ..prefixed("retry") });
    }
    for before in [-1, 0, 300, 350, 900, 1_050, 10_000] {
        filters.push(DlqEntryFilter { entered_at_or_before: Some(ts(before)), ..DlqEntryFilter::default() });
        filters.push(DlqEntryFilter {
            entered_at_or_before: Some(ts(before)),
            state: queued,
            poison: Some(false),
            exception_type: Some(EXCEPTIONS[0].into()),
            ..prefixed("retry-")
        });
    }
    filters.push(DlqEntryFilter { queue: Some("retry-a".into()), queue_prefix: Some("retry-".into()), ..DlqEntryFilter::default() });
    filters.push(DlqEntryFilter { queue: Some("retry-a".into()), queue_prefix: Some("other".into()), ..DlqEntryFilter::default() });

    for f in &filters {
        let expected: Vec<DlqEntryRecord> = model.iter().filter(|e| dlq_matches(e, f)).cloned().collect();
        let got = store.list_dlq_entries(f.clone()).await.unwrap();
        assert_eq!(entry_ids(&got), entry_ids(&expected), "{f:?}: the matching entries, oldest first by (entered_at, id)");
        assert_eq!(got, expected, "{f:?}: listed entries carry every field");
        assert_eq!(store.count_dlq_entries(f.clone()).await.unwrap(), expected.len() as u64, "{f:?}: count matches the listing");
        let counted_with_page = DlqEntryFilter { after: model.last().map(DlqEntryRecord::cursor), limit: 1, ..f.clone() };
        assert_eq!(
            store.count_dlq_entries(counted_with_page).await.unwrap(),
            expected.len() as u64,
            "{f:?}: count ignores after and limit"
        );
        for page in [1, 4, expected.len().max(1)] {
            assert_eq!(
                entry_ids(&all_dlq_pages(store, f, page).await),
                entry_ids(&expected),
                "{f:?}: pages of {page} must have no gaps or duplicates"
            );
        }
    }
    let poison_only =
        store.list_dlq_entries(DlqEntryFilter { poison: Some(true), state: queued, ..DlqEntryFilter::default() }).await.unwrap();
    assert!(poison_only.iter().all(|e| e.redrive_count >= e.max_redrives && ["retry-a", "retry"].contains(&e.queue.as_str())));
    assert_eq!(poison_only.len(), queued_poison);

    // A cursor need not be a stored row: strictly after (entered_at, id).
    let cursor = DlqEntryCursor { entered_at: ts(300), id: "f2".into() };
    let got = store.list_dlq_entries(DlqEntryFilter { after: Some(cursor), limit: 5, ..DlqEntryFilter::default() }).await.unwrap();
    let expected: Vec<&str> = model
        .iter()
        .filter(|e| e.entered_at > ts(300) || (e.entered_at == ts(300) && e.id.as_str() > "f2"))
        .take(5)
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(entry_ids(&got), expected, "entries strictly after an arbitrary cursor");

    // The page cap.
    let many: Vec<Transition> = (0..=MAX_PAGE_SIZE).map(|i| failed_create(&format!("m{i:05}"), "many", 5_000 + i as i64)).collect();
    assert!(store.commit(many.into()).await.unwrap().iter().all(Result::is_ok));
    let many = |limit: usize| DlqEntryFilter { queue: Some("many".into()), limit, ..DlqEntryFilter::default() };
    assert_eq!(store.list_dlq_entries(many(0)).await.unwrap().len(), MAX_PAGE_SIZE, "limit 0 means the largest page");
    let capped = store.list_dlq_entries(many(MAX_PAGE_SIZE * 5)).await.unwrap();
    assert_eq!(capped.len(), MAX_PAGE_SIZE, "limit is capped at MAX_PAGE_SIZE");
    assert_eq!(capped[0].id, "m00000", "the capped page starts with the oldest");
    assert_eq!(store.count_dlq_entries(many(0)).await.unwrap(), MAX_PAGE_SIZE as u64 + 1, "count is not capped");
}

/// Queues: `ensure_dlq_queue` is idempotent and keeps settings,
/// `configure_dlq_queue` validates its range, `list_dlq_queues` orders by name
/// with prefix and cursor, and the figures count the right entries.
pub async fn dlq_queues<S: Store>(store: &S) {
    fn expect_limit<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str, needle: &str) {
        match result {
            Err(StoreError::Limit(message)) => assert!(message.contains(needle), "{what}: the message must mention {needle}: {message}"),
            other => panic!("{what}: expected StoreError::Limit, got {other:?}"),
        }
    }
    let record = |name: &str, max_redrives: u32, created: i64| DlqQueueRecord { name: name.into(), max_redrives, created_at: ts(created) };
    assert!(store.list_dlq_queues(None, None, 0).await.unwrap().is_empty(), "no queues yet");

    assert_eq!(store.ensure_dlq_queue("q-b", ts(0)).await.unwrap(), record("q-b", DEFAULT_MAX_REDRIVES, 0), "ensure creates");
    assert_eq!(store.ensure_dlq_queue("q-b", ts(10)).await.unwrap(), record("q-b", DEFAULT_MAX_REDRIVES, 0), "ensure is idempotent");
    assert_eq!(store.configure_dlq_queue("q-b", 5, ts(20)).await.unwrap(), record("q-b", 5, 0), "configure updates, created_at kept");
    assert_eq!(store.ensure_dlq_queue("q-b", ts(30)).await.unwrap(), record("q-b", 5, 0), "ensure keeps the settings");
    assert_eq!(store.configure_dlq_queue("q-a", 1, ts(40)).await.unwrap(), record("q-a", 1, 40), "configure creates");
    assert_eq!(store.configure_dlq_queue("q-a", MAX_MAX_REDRIVES, ts(41)).await.unwrap(), record("q-a", MAX_MAX_REDRIVES, 40));
    assert_eq!(store.configure_dlq_queue("q-a", 1, ts(42)).await.unwrap(), record("q-a", 1, 40));

    let range = format!("1 to {MAX_MAX_REDRIVES}");
    expect_limit(store.configure_dlq_queue("q-b", 0, ts(50)).await, "max_redrives 0", &range);
    expect_limit(store.configure_dlq_queue("q-b", MAX_MAX_REDRIVES + 1, ts(50)).await, "max_redrives over MAX_MAX_REDRIVES", &range);
    expect_limit(store.configure_dlq_queue("q-new", 0, ts(50)).await, "max_redrives 0 on a new queue", &range);
    expect_limit(store.ensure_dlq_queue("", ts(50)).await, "an empty queue name", "queue");
    expect_limit(store.ensure_dlq_queue(&"q".repeat(101), ts(50)).await, "a queue name of 101 characters", "queue");
    expect_limit(store.configure_dlq_queue("", 3, ts(50)).await, "an empty queue name", "queue");
    assert_eq!(
        store.ensure_dlq_queue(&"q".repeat(100), ts(50)).await.unwrap().max_redrives,
        DEFAULT_MAX_REDRIVES,
        "100 characters are fine"
    );
    assert_eq!(store.get_dlq_queue("q-b").await.unwrap().unwrap().queue, record("q-b", 5, 0), "a refused configure changes nothing");
    assert_eq!(store.get_dlq_queue("q-new").await.unwrap(), None, "a refused configure creates nothing");
    assert_eq!(store.get_dlq_queue("nope").await.unwrap(), None, "unknown queue");

    // Figures of q-b (max 5, lowered to 1 below): 3 queued (one redriven and
    // back, so count 1), 1 redriven, 1 resolved; one queued in q-a.
    let batch = vec![
        failed_create("b1", "q-b", 100),
        failed_create("b2", "q-b", 110),
        failed_create("b3", "q-b", 120),
        failed_create("b4", "q-b", 130),
        failed_create("b5", "q-b", 90),
        failed_create("a1", "q-a", 80),
    ];
    assert!(store.commit(batch.into()).await.unwrap().iter().all(Result::is_ok));
    assert_eq!(
        store.commit(vec![redrive("b1", "b1-r", 200), redrive("b3", "b3-r", 200), redrive("b4", "b4-r", 200)].into()).await.unwrap(),
        vec![Ok(1); 3]
    );
    let mut back = update("b1-r", 1, 210);
    back.dlq = vec![DlqOp::Enter(dlq_write("b1", "q-b", "b1-r", 205))];
    let mut done = update("b4-r", 1, 220);
    done.dlq = vec![resolve("b4")];
    assert_eq!(store.commit(vec![back, done].into()).await.unwrap(), vec![Ok(2), Ok(2)]);
    let stats = |queue: DlqQueueRecord, depth, poison, redriven, oldest: Option<i64>| DlqQueueStats {
        queue,
        depth,
        poison,
        redriven,
        oldest_entered_at: oldest.map(ts),
    };
    assert_eq!(store.get_dlq_queue("q-b").await.unwrap(), Some(stats(record("q-b", 5, 0), 3, 0, 1, Some(90))), "queue figures");
    store.configure_dlq_queue("q-b", 1, ts(300)).await.unwrap();
    let q_b = stats(record("q-b", 1, 0), 3, 1, 1, Some(90));
    assert_eq!(store.get_dlq_queue("q-b").await.unwrap(), Some(q_b.clone()), "poison follows the queue's max_redrives");
    let q_a = stats(record("q-a", 1, 40), 1, 0, 0, Some(80));
    assert_eq!(store.get_dlq_queue("q-a").await.unwrap(), Some(q_a.clone()));

    // Listing: byte order, prefix, cursor, limit.
    for name in ["Zq", "q-b-x", "q.c", "r", "q-"] {
        store.ensure_dlq_queue(name, ts(400)).await.unwrap();
    }
    let names = |queues: Vec<DlqQueueStats>| queues.into_iter().map(|q| q.queue.name).collect::<Vec<_>>();
    let long = "q".repeat(100);
    let all = store.list_dlq_queues(None, None, 0).await.unwrap();
    assert_eq!(names(all.clone()), ["Zq", "q-", "q-a", "q-b", "q-b-x", "q.c", long.as_str(), "r"], "ordered by name (bytes)");
    assert_eq!(all[2], q_a, "listed queues carry their figures");
    assert_eq!(all[3], q_b);
    assert_eq!(names(store.list_dlq_queues(Some("q-b"), None, 0).await.unwrap()), ["q-b", "q-b-x"], "prefix");
    assert_eq!(names(store.list_dlq_queues(Some("q-"), None, 0).await.unwrap()), ["q-", "q-a", "q-b", "q-b-x"], "prefix, not q.c");
    assert_eq!(names(store.list_dlq_queues(Some("q"), Some("q-b"), 2).await.unwrap()), ["q-b-x", "q.c"], "prefix, cursor and limit");
    assert_eq!(names(store.list_dlq_queues(Some(""), None, 0).await.unwrap()).len(), 8, "an empty prefix is no constraint");
    assert!(store.list_dlq_queues(Some("x"), None, 0).await.unwrap().is_empty());
    assert_eq!(names(store.list_dlq_queues(None, Some("q-a"), 1).await.unwrap()), ["q-b"], "after_name is exclusive");
    assert_eq!(names(store.list_dlq_queues(None, Some("q-aa"), 1).await.unwrap()), ["q-b"], "after_name need not exist");
    assert!(store.list_dlq_queues(None, Some("r"), 0).await.unwrap().is_empty(), "after the last name: nothing");
    for page in [1, 3] {
        let mut paged: Vec<String> = Vec::new();
        loop {
            let got = names(store.list_dlq_queues(None, paged.last().map(String::as_str), page).await.unwrap());
            assert!(got.len() <= page, "at most limit = {page} queues");
            if got.is_empty() {
                break;
            }
            paged.extend(got);
        }
        assert_eq!(paged, names(all.clone()), "pages of {page} have no gaps or duplicates");
    }
}

/// `purge_dlq_entries` deletes only `QUEUED` entries matching the filter, whatever
/// its state, cursor and limit say, and returns how many.
pub async fn dlq_purge<S: Store>(store: &S) {
    let mut batch = Vec::new();
    for (i, queue) in ["p1", "p1", "p1", "p1", "p1", "p2", "p2"].iter().enumerate() {
        let mut t = failed_create(&format!("e{i}"), queue, 10 * i as i64);
        if let DlqOp::Enter(w) = &mut t.dlq[0]
            && i % 2 == 1
        {
            w.exception_type = "Custom.Boom".into();
        }
        batch.push(t);
    }
    assert!(store.commit(batch.into()).await.unwrap().iter().all(Result::is_ok));
    // e0 redriven, e1 resolved (after a redrive), e2 back with count 1.
    assert_eq!(
        store.commit(vec![redrive("e0", "e0-r", 100), redrive("e1", "e1-r", 100), redrive("e2", "e2-r", 100)].into()).await.unwrap(),
        vec![Ok(1); 3]
    );
    let mut done = update("e1-r", 1, 110);
    done.dlq = vec![resolve("e1")];
    let mut back = update("e2-r", 1, 110);
    back.dlq = vec![DlqOp::Enter(dlq_write("e2", "p1", "e2-r", 105))];
    assert_eq!(store.commit(vec![done, back].into()).await.unwrap(), vec![Ok(2), Ok(2)]);
    let queued_ids = |entries: Vec<DlqEntryRecord>| entries.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let queued_in =
        |queue: &str| DlqEntryFilter { queue: Some(queue.into()), state: Some(DlqEntryState::Queued), ..DlqEntryFilter::default() };
    assert_eq!(queued_ids(store.list_dlq_entries(queued_in("p1")).await.unwrap()), ["e3", "e4", "e2"]);

    // A filter: only matching queued entries, whatever filter.state, after and limit say.
    let boom_in_p1 = DlqEntryFilter {
        queue: Some("p1".into()),
        exception_type: Some("Custom.Boom".into()),
        state: Some(DlqEntryState::Resolved),
        after: Some(DlqEntryCursor { entered_at: ts(10_000), id: String::new() }),
        limit: 1,
        ..DlqEntryFilter::default()
    };
    assert_eq!(store.purge_dlq_entries(boom_in_p1.clone()).await.unwrap(), 1, "only e3 is queued, in p1 and of that type");
    assert_eq!(store.get_dlq_entry("e3").await.unwrap(), None, "a purged entry is gone");
    assert_eq!(dlq_entry(store, "e1").await.state, DlqEntryState::Resolved, "a resolved entry survives a purge");
    assert_eq!(store.purge_dlq_entries(boom_in_p1).await.unwrap(), 0, "nothing left to purge");
    assert!(store.get_dlq_entry("e5").await.unwrap().is_some(), "another queue's entry of that type survives");

    // Poison only.
    store.configure_dlq_queue("p1", 1, ts(200)).await.unwrap();
    let poison = DlqEntryFilter { poison: Some(true), ..DlqEntryFilter::default() };
    assert_eq!(store.purge_dlq_entries(poison).await.unwrap(), 1, "e2 is the only queued poison entry");
    assert_eq!(store.get_dlq_entry("e2").await.unwrap(), None);
    assert_eq!(dlq_entry(store, "e0").await.state, DlqEntryState::Redriven, "a redriven entry (count 1, poison) survives");

    // Everything queued.
    assert_eq!(store.purge_dlq_entries(DlqEntryFilter::default()).await.unwrap(), 3, "e4, e5, e6");
    assert_eq!(
        store.count_dlq_entries(DlqEntryFilter { state: Some(DlqEntryState::Queued), ..DlqEntryFilter::default() }).await.unwrap(),
        0
    );
    assert_eq!(queued_ids(store.list_dlq_entries(DlqEntryFilter::default()).await.unwrap()), ["e0", "e1"], "REDRIVEN and RESOLVED survive");
    let p1 = store.get_dlq_queue("p1").await.unwrap().unwrap();
    assert_eq!((p1.depth, p1.poison, p1.redriven, p1.oldest_entered_at), (0, 0, 1, None), "the queue stays, emptied");
    assert_eq!(store.purge_dlq_entries(DlqEntryFilter::default()).await.unwrap(), 0);

    // A purged entry: Resolve is fine, Take is refused, Enter starts afresh.
    let mut late = update("e3", 1, 300);
    late.dlq = vec![resolve("e3")];
    assert_eq!(commit_one(store, late).await, Ok(2), "resolving a purged entry is not an error");
    assert_eq!(commit_one(store, redrive("e4", "e4-r", 300)).await, not_queued("e4"), "a purged entry cannot be taken");
    let mut again = update("e2-r", 2, 310);
    again.dlq = vec![DlqOp::Enter(dlq_write("e2", "p2", "e2-r", 305))];
    assert_eq!(commit_one(store, again).await, Ok(3));
    let e2 = dlq_entry(store, "e2").await;
    assert_eq!((e2.queue.as_str(), e2.redrive_count, e2.first_failure_at), ("p2", 0, ts(305)), "a purged entry entering again is new");
}

fn run(id: &str, schedule: Option<&str>, started: i64) -> RedriveRunRecord {
    RedriveRunRecord {
        id: id.to_owned(),
        schedule: schedule.map(str::to_owned),
        status: "RUNNING".to_owned(),
        dry_run: false,
        started_at: ts(started),
        finished_at: None,
        request_json: format!(r#"{{"queues":["retry"],"run":"{id}"}}"#),
        summary_json: "{}".to_owned(),
    }
}

/// Redrive runs: create, get, update, list newest first (by schedule, keyset
/// pages), duplicates and missing ids refused, interruption at start-up.
pub async fn redrive_runs<S: Store>(store: &S) {
    fn expect_limit<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
        match result {
            Err(StoreError::Limit(message)) => assert!(!message.is_empty(), "{what}: the limit error needs a message"),
            other => panic!("{what}: expected StoreError::Limit, got {other:?}"),
        }
    }
    assert_eq!(store.get_redrive_run("r1").await.unwrap(), None, "unknown run");
    assert!(store.list_redrive_runs(RedriveRunFilter::default()).await.unwrap().is_empty());

    let runs = vec![
        run("r1", None, 10),
        RedriveRunRecord { dry_run: true, ..run("r2", Some("nightly"), 20) },
        run("r3", Some("nightly"), 20),
        run("r4", Some("hourly"), 30),
        run("r0", Some("nightly"), 40),
        run("r5", None, 20),
    ];
    for r in &runs {
        store.create_redrive_run(r.clone()).await.unwrap();
    }
    for r in &runs {
        assert_eq!(store.get_redrive_run(&r.id).await.unwrap().as_ref(), Some(r), "{}: every field round-trips", r.id);
    }
    expect_already_exists(store.create_redrive_run(run("r1", Some("x"), 99)).await, "r1", "a duplicate run id");
    assert_eq!(store.get_redrive_run("r1").await.unwrap(), Some(runs[0].clone()), "a refused create changes nothing");

    // Update: status, finished_at and summary only.
    let finished = RedriveRunRecord {
        status: "SUCCEEDED".into(),
        finished_at: Some(ts(50)),
        summary_json: r#"{"redriven":3,"skipped_poison":1}"#.into(),
        ..runs[0].clone()
    };
    let with_other_fields = RedriveRunRecord {
        schedule: Some("other".into()),
        dry_run: true,
        started_at: ts(1),
        request_json: "{}".into(),
        ..finished.clone()
    };
    store.update_redrive_run(with_other_fields).await.unwrap();
    assert_eq!(store.get_redrive_run("r1").await.unwrap(), Some(finished.clone()), "update replaces status, finished_at and summary only");
    let failed = RedriveRunRecord { status: "FAILED".into(), finished_at: Some(ts(60)), ..runs[3].clone() };
    store.update_redrive_run(failed.clone()).await.unwrap();
    expect_not_found(store.update_redrive_run(run("ghost", None, 0)).await, "ghost", "updating a missing run");
    assert_eq!(store.get_redrive_run("ghost").await.unwrap(), None, "a refused update creates nothing");

    // Listing: newest first, ties by id descending.
    let ids = |runs: Vec<RedriveRunRecord>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let all = store.list_redrive_runs(RedriveRunFilter::default()).await.unwrap();
    assert_eq!(ids(all.clone()), ["r0", "r4", "r5", "r3", "r2", "r1"], "newest first by (started_at, id)");
    assert_eq!(all[5], finished, "listed runs carry every field");
    let nightly = |before: Option<(i64, &str)>, limit| RedriveRunFilter {
        schedule: Some("nightly".into()),
        before: before.map(|(at, id)| (ts(at), id.to_owned())),
        limit,
    };
    assert_eq!(ids(store.list_redrive_runs(nightly(None, 0)).await.unwrap()), ["r0", "r3", "r2"], "one schedule's runs");
    assert_eq!(ids(store.list_redrive_runs(nightly(Some((20, "r3")), 0)).await.unwrap()), ["r2"], "before is exclusive");
    assert_eq!(ids(store.list_redrive_runs(nightly(Some((20, "r9")), 1)).await.unwrap()), ["r3"], "before need not be a run");
    let unknown = RedriveRunFilter { schedule: Some("never".into()), ..RedriveRunFilter::default() };
    assert!(store.list_redrive_runs(unknown).await.unwrap().is_empty());
    for page in [1, 2, 4] {
        let mut paged: Vec<RedriveRunRecord> = Vec::new();
        loop {
            let before = paged.last().map(|r| (r.started_at, r.id.clone()));
            let got = store.list_redrive_runs(RedriveRunFilter { before, limit: page, ..RedriveRunFilter::default() }).await.unwrap();
            assert!(got.len() <= page, "at most limit = {page} runs");
            if got.is_empty() {
                break;
            }
            paged.extend(got);
            assert!(paged.len() <= all.len(), "pages of {page} repeat runs");
        }
        assert_eq!(paged, all, "pages of {page} have no gaps or duplicates");
    }

    // Start-up: RUNNING runs become INTERRUPTED, the others are untouched.
    assert_eq!(store.interrupt_redrive_runs(ts(100)).await.unwrap(), 4, "r0, r2, r3 and r5 were running");
    for id in ["r0", "r2", "r3", "r5"] {
        let r = store.get_redrive_run(id).await.unwrap().unwrap();
        assert_eq!((r.status.as_str(), r.finished_at), ("INTERRUPTED", Some(ts(100))), "{id}: interrupted now");
    }
    assert_eq!(store.get_redrive_run("r1").await.unwrap(), Some(finished), "a finished run is untouched");
    assert_eq!(store.get_redrive_run("r4").await.unwrap(), Some(failed), "a failed run is untouched");
    assert_eq!(store.interrupt_redrive_runs(ts(200)).await.unwrap(), 0, "nothing is running any more");

    // Limits.
    let big = "x".repeat(MAX_REDRIVE_RUN_JSON_BYTES + 1);
    expect_limit(store.create_redrive_run(RedriveRunRecord { request_json: big.clone(), ..run("big", None, 0) }).await, "a big request");
    expect_limit(store.create_redrive_run(RedriveRunRecord { summary_json: big.clone(), ..run("big", None, 0) }).await, "a big summary");
    assert_eq!(store.get_redrive_run("big").await.unwrap(), None, "a refused create writes nothing");
    expect_limit(store.update_redrive_run(RedriveRunRecord { summary_json: big, ..runs[2].clone() }).await, "a big summary update");
    assert_eq!(store.get_redrive_run("r2").await.unwrap().unwrap().summary_json, "{}", "a refused update writes nothing");
    let at_limit = RedriveRunRecord { request_json: "r".repeat(MAX_REDRIVE_RUN_JSON_BYTES), ..run("at-limit", None, 0) };
    store.create_redrive_run(at_limit.clone()).await.unwrap();
    assert_eq!(store.get_redrive_run("at-limit").await.unwrap(), Some(at_limit), "a request exactly at the limit round-trips");
}

/// Dead-letter sizes are checked before anything is written: an oversized
/// message, detail or input, or a bad queue name or id, refuses its transition
/// alone with [`TransitionError::Limit`] naming `dlq[j]`; the others commit.
pub async fn dlq_limits_enforced<S: Store>(store: &S) {
    fn expect_limit(result: Result<CommitResult, StoreError>, what: &str, position: &str) {
        match result.unwrap().as_slice() {
            [Ok(1), Err(TransitionError::Limit(message))] => {
                assert!(message.contains(position), "{what}: the message must name {position}: {message}")
            }
            other => panic!("{what}: expected [Ok(1), Err(TransitionError::Limit)], got {other:?}"),
        }
    }
    let with_write = |id: &str, change: &dyn Fn(&mut DlqEntryWrite)| {
        let mut t = failed_create(id, "limits", 0);
        if let DlqOp::Enter(w) = &mut t.dlq[0] {
            change(w);
        }
        t
    };
    let cases: Vec<(&str, Transition)> = vec![
        ("detail over MAX_DLQ_DETAIL_BYTES", with_write("x", &|w| w.detail_json = "d".repeat(MAX_DLQ_DETAIL_BYTES + 1))),
        ("message over MAX_DLQ_MESSAGE_BYTES", with_write("x", &|w| w.message = "m".repeat(MAX_DLQ_MESSAGE_BYTES + 1))),
        ("input over MAX_INPUT_BYTES", with_write("x", &|w| w.input_json = "i".repeat(MAX_INPUT_BYTES + 1))),
        ("an empty queue name", with_write("x", &|w| w.queue = String::new())),
        ("a queue name over 100 characters", with_write("x", &|w| w.queue = "q".repeat(101))),
        ("an empty entry id", with_write("x", &|w| w.id = String::new())),
        ("a Take of an empty entry id", Transition { dlq: vec![take("", "x")], ..create("x", 0) }),
        ("a Resolve of an empty entry id", Transition { dlq: vec![resolve("")], ..create("x", 0) }),
    ];
    for (i, (what, bad)) in cases.into_iter().enumerate() {
        let neighbour_id = format!("neighbour{i}");
        let mut neighbour = failed_create(&neighbour_id, "neighbours", 0);
        neighbour.dlq.insert(0, resolve("nothing"));
        let mut bad = bad;
        bad.dlq.insert(0, resolve("nothing"));
        expect_limit(store.commit(vec![neighbour, bad].into()).await, what, "dlq[1]");
        assert_eq!(store.get_execution("x").await.unwrap(), None, "{what}: a refused transition writes no execution");
        assert_eq!(store.get_dlq_entry("x").await.unwrap(), None, "{what}: a refused transition writes no entry");
        assert_eq!(store.get_dlq_queue("limits").await.unwrap(), None, "{what}: a refused transition creates no queue");
        assert!(store.get_dlq_entry(&neighbour_id).await.unwrap().is_some(), "{what}: the neighbour's entry is written");
    }

    // Exactly at the limits is fine.
    let at_limit = with_write("at-limit", &|w| {
        w.detail_json = "d".repeat(MAX_DLQ_DETAIL_BYTES);
        w.message = "é".repeat(MAX_DLQ_MESSAGE_BYTES / 2);
        w.input_json = "i".repeat(MAX_INPUT_BYTES);
        w.queue = "q".repeat(100);
    });
    assert_eq!(commit_one(store, at_limit).await, Ok(1), "sizes exactly at their limits are accepted");
    let e = dlq_entry(store, "at-limit").await;
    assert_eq!((e.detail_json.len(), e.message.len(), e.input_json.len()), (MAX_DLQ_DETAIL_BYTES, MAX_DLQ_MESSAGE_BYTES, MAX_INPUT_BYTES));
}

/// [`Store::quarantine_execution`]: whatever the version, the execution gets the
/// status and fault and a new version (so a commit computed before conflicts),
/// loses its timers, keeps its state document and ledger; a missing one is `None`.
pub async fn quarantine<S: Store>(store: &S) {
    let mut t = create("q1", 0);
    t.set_timers = vec![timer("q1", "Build/A", 100), timer("q1", "Build/B", 200)];
    t.ledger = vec![entry("q1", "Compile", 1, false)];
    t.state_json = "not json at all {".into();
    assert_eq!(commit_one(store, t).await, Ok(1));
    assert_eq!(commit_one(store, create("q2", 1)).await, Ok(1));
    let fault = ExecutionFault { exception_type: "Engine.CORRUPT_STATE".into(), message: "state unreadable".into() };
    assert_eq!(store.quarantine_execution("q1", "Failed", fault.clone(), ts(50)).await.unwrap(), Some(2));
    let e = store.get_execution("q1").await.unwrap().unwrap();
    assert_eq!((e.status.as_str(), e.version, e.fault.as_ref()), ("Failed", 2, Some(&fault)));
    assert_eq!((e.state_json.as_str(), e.updated_at), ("not json at all {", ts(50)), "the state is kept as it was");
    assert!(store.execution_timers("q1").await.unwrap().is_empty(), "its timers are gone");
    assert_eq!(store.ledger("q1").await.unwrap().len(), 1, "its ledger stays");
    assert_eq!(store.next_timer_due().await.unwrap(), None);
    assert_eq!(
        commit_one(store, update("q1", 1, 60)).await,
        Err(TransitionError::VersionConflict { execution_id: "q1".into(), expected: 1, actual: Some(2) }),
        "a commit computed before the quarantine is refused"
    );
    let listed = store.list_executions(ExecutionFilter { unfinished_only: false, ..Default::default() }).await.unwrap();
    assert_eq!(listed.iter().find(|r| r.id == "q1").and_then(|r| r.fault.clone()), Some(fault.clone()), "listings carry the fault");
    assert_eq!(listed.iter().find(|r| r.id == "q2").map(|r| r.fault.is_none()), Some(true), "others have none");
    let unfinished = store.list_executions(ExecutionFilter { unfinished_only: true, ..Default::default() }).await.unwrap();
    assert!(unfinished.iter().all(|r| r.id != "q1"), "a quarantined execution is finished");
    assert_eq!(store.quarantine_execution("missing", "Failed", fault.clone(), ts(60)).await.unwrap(), None);
    let long = ExecutionFault { message: "m".repeat(MAX_FAILURE_MESSAGE_BYTES + 1), ..fault };
    assert!(matches!(store.quarantine_execution("q2", "Failed", long, ts(70)).await, Err(StoreError::Limit(_))));
    assert_eq!(store.get_execution("q2").await.unwrap().unwrap().version, 1, "a refused quarantine changes nothing");
}

/// A pipeline and a function may share a name: listings, ledgers and client
/// tokens are per kind; a function execution has no pipeline version.
pub async fn kinds_are_separate<S: Store>(store: &S) {
    let of = |target: Target, token: &str| {
        let mut t = create(&format!("{}-{token}", target.kind().as_str()), 0);
        t.target = target;
        t.client_token = Some(ClientToken { token: token.into(), fingerprint: "f".into() });
        t.ledger = vec![entry(&t.execution_id, "S", 1, false)];
        t
    };
    let results = store.commit(vec![of(Target::pipeline("same", 1), "T"), of(Target::function("same"), "T")].into()).await.unwrap();
    assert_eq!(results, vec![Ok(1), Ok(1)], "the same token under each kind");
    let function = store.get_execution("function-T").await.unwrap().unwrap();
    assert_eq!(
        (function.target.kind(), function.target.name(), function.target.pipeline_version()),
        (ExecutionKind::Function, "same", None)
    );
    for target in [TargetName::pipeline("same"), TargetName::function("same")] {
        let rows = store.list_executions(ExecutionFilter { target: Some(target.clone()), ..Default::default() }).await.unwrap();
        assert_eq!(rows.len(), 1, "{target:?}: one execution of this kind");
        assert_eq!(rows[0].target.kind(), target.kind);
        let ledger = store.list_ledger(LedgerFilter { target: target.clone(), ..Default::default() }).await.unwrap();
        assert_eq!(ledger.len(), 1, "{target:?}: its own ledger");
        assert_eq!(ledger[0].execution_id, rows[0].id);
    }
    let all = store.list_executions(ExecutionFilter::default()).await.unwrap();
    assert_eq!(all.len(), 2, "no target: every kind");
    store.put_pipeline("same", "{}", None, ts(0)).await.unwrap();
    assert!(store.delete_pipeline("same", ts(5)).await.unwrap());
    let mut again = of(Target::pipeline("same", 1), "T");
    again.execution_id = "pipeline-again".into();
    again.ledger.clear();
    assert_eq!(commit_one(store, again).await, Ok(1), "the pipeline's tokens are forgotten");
    assert_eq!(
        commit_one(store, of(Target::function("same"), "T")).await,
        Err(TransitionError::TokenReused { execution_id: "function-T".into(), same_request: true }),
        "deleting a pipeline forgets only its own tokens"
    );
}

/// The transitions of one commit apply one after the other, each seeing what
/// the earlier ones wrote and not what a refused one tried to write: a token
/// used earlier in the same commit is reused, an update after a refused one
/// sees the version before it, a conflict reports the version at its turn, and
/// timers and ledger rows follow the transitions' order.
pub async fn one_commit_applies_in_order<S: Store>(store: &S) {
    let reused = |id: &str, same_request: bool| Err(TransitionError::TokenReused { execution_id: id.to_owned(), same_request });
    assert_eq!(commit_one(store, failed_create("gone", "in-order", 0)).await, Ok(1));
    assert_eq!(commit_one(store, redrive("gone", "gone-r1", 1)).await, Ok(1), "the entry is REDRIVEN now");

    let mut set_k = update("x", 1, 10);
    set_k.ledger = vec![entry("x", "First", 1, false)];
    set_k.set_timers = vec![timer("x", "k", 100)];
    // Refused (the entry is not QUEUED): its version, ledger row and timer are undone.
    let mut refused = update("x", 2, 11);
    refused.ledger = vec![entry("x", "Refused", 1, false)];
    refused.set_timers = vec![timer("x", "refused", 1)];
    refused.dlq = vec![take("gone", "x")];
    let mut move_k = update("x", 2, 12);
    move_k.ledger = vec![entry("x", "Second", 1, false)];
    move_k.clear_timers = vec!["k".to_owned()];
    move_k.set_timers = vec![timer("x", "k2", 200)];
    let results = store
        .commit(
            vec![
                create("x", 0),
                create_with_token("t1", PIPELINE, "T", "A"),
                create_with_token("t2", PIPELINE, "T", "A"),
                create_with_token("t3", PIPELINE, "T", "B"),
                update("x", 5, 9),
                set_k,
                refused,
                update("x", 7, 12),
                move_k,
                create_with_token("t4", PIPELINE, "U", "A"),
                create("t4", 13),
            ]
            .into(),
        )
        .await
        .unwrap();
    assert_eq!(
        results,
        vec![
            Ok(1),
            Ok(1),
            reused("t1", true),
            reused("t1", false),
            Err(TransitionError::VersionConflict { execution_id: "x".into(), expected: 5, actual: Some(1) }),
            Ok(2),
            Err(TransitionError::DlqEntryNotQueued { entry_id: "gone".into() }),
            Err(TransitionError::VersionConflict { execution_id: "x".into(), expected: 7, actual: Some(2) }),
            Ok(3),
            Ok(1),
            Err(TransitionError::AlreadyExists("t4".into())),
        ],
        "each transition sees the ones before it in the same commit"
    );
    assert_eq!(version_of(store, "x").await, Some(3));
    assert_eq!(sorted_timers(store, "x").await, vec![timer("x", "k2", 200)], "cleared by a later transition, refused one undone");
    let actions: Vec<String> = store.ledger("x").await.unwrap().into_iter().map(|e| e.action).collect();
    assert_eq!(actions, ["First", "Second"], "ledger rows in transition order, the refused one's undone");
    for id in ["t2", "t3"] {
        assert_eq!(store.get_execution(id).await.unwrap(), None, "{id}: a reused token creates nothing");
    }
    assert_eq!(dlq_entry(store, "gone").await.state, DlqEntryState::Redriven, "the refused Take changed nothing");
}

/// One large commit, as a busy engine's group sends (a backend may batch its
/// transitions): updates of many executions with stale and missing ones among
/// them, the same execution several times, creates of new and existing ids,
/// ledger rows and timers. Every result is as if the transitions were applied
/// one by one, the refused ones write nothing, ledger `seq` follows the
/// transitions' order (then each one's entry order), a key set twice by one
/// transition keeps its last due time, and the stats count exactly.
pub async fn large_commit_applies_each_transition<S: Store>(store: &S) {
    const N: usize = 60;
    let id = |i: usize| format!("b{i:02}");
    let setup: Vec<Transition> = (0..N).map(|i| Transition { set_timers: vec![timer(&id(i), "old", 1000)], ..create(&id(i), 0) }).collect();
    assert_eq!(store.commit(setup.into()).await.unwrap(), vec![Ok(1); N], "setup");
    let before = store.stats();

    let conflict = |id: &str, expected: u64, actual: Option<u64>| {
        Err(TransitionError::VersionConflict { execution_id: id.to_owned(), expected, actual })
    };
    let mut transitions = Vec::new();
    let mut expected = Vec::new();
    let mut ledger_order: Vec<(String, String, u32)> = Vec::new();
    for i in 0..N {
        let b = id(i);
        if i % 7 == 3 {
            // Stale: refused, none of its writes happen.
            let mut t = update(&b, 5, 10);
            t.ledger = vec![entry(&b, "Stale", 1, true)];
            t.clear_timers = vec!["old".to_owned()];
            t.set_timers = vec![timer(&b, "stale", 1)];
            transitions.push(t);
            expected.push(conflict(&b, 5, Some(1)));
        } else {
            let mut t = update(&b, 1, 10);
            if i == 2 {
                // Filed under the pipeline recorded on create all the same.
                t.target = Target::pipeline(OTHER_PIPELINE, 1);
            }
            t.ledger = vec![entry(&b, "Run", 1, true), entry(&b, "Run", 2, false)];
            t.clear_timers = vec!["old".to_owned()];
            t.set_timers = vec![timer(&b, "k", 500 + i as i64), timer(&b, "k", 600 + i as i64)];
            transitions.push(t);
            expected.push(Ok(2));
            ledger_order.push((b.clone(), "Run".to_owned(), 1));
            ledger_order.push((b.clone(), "Run".to_owned(), 2));
        }
        if i % 5 == 0 {
            let n = format!("n{i:02}");
            let mut t = create(&n, 10);
            t.ledger = vec![entry(&n, "Start", 1, false)];
            t.set_timers = vec![timer(&n, "start", 50)];
            transitions.push(t);
            expected.push(Ok(1));
            ledger_order.push((n, "Start".to_owned(), 1));
            let mut again = create(&b, 10);
            again.ledger = vec![entry(&b, "Again", 1, false)];
            transitions.push(again);
            expected.push(Err(TransitionError::AlreadyExists(b.clone())));
        }
    }
    transitions.push(update("missing", 1, 10));
    expected.push(conflict("missing", 1, None));
    // The same executions again in the same commit: b01 twice more (from the
    // version its first update left), then stale; b03 after its refused one.
    for (from, action) in [(2, "Again2"), (3, "Again3")] {
        let mut t = update("b01", from, 20);
        t.ledger = vec![entry("b01", action, 1, false)];
        t.set_timers = vec![timer("b01", "k", 700 + from as i64)];
        transitions.push(t);
        expected.push(Ok(from + 1));
        ledger_order.push(("b01".to_owned(), action.to_owned(), 1));
    }
    transitions.push(update("b01", 3, 30));
    expected.push(conflict("b01", 3, Some(4)));
    let mut late = update("b03", 1, 30);
    late.ledger = vec![entry("b03", "Late", 1, false)];
    late.clear_timers = vec!["old".to_owned()];
    transitions.push(late);
    expected.push(Ok(2));
    ledger_order.push(("b03".to_owned(), "Late".to_owned(), 1));

    let results = store.commit(transitions.into()).await.unwrap();
    assert_eq!(results, expected, "each transition of a large commit is judged as if applied alone, in order");

    for i in 0..N {
        let b = id(i);
        let (version, timers) = match i {
            1 => (4, vec![timer(&b, "k", 703)]),
            3 => (2, Vec::new()),
            _ if i % 7 == 3 => (1, vec![timer(&b, "old", 1000)]),
            _ => (2, vec![timer(&b, "k", 600 + i as i64)]),
        };
        assert_eq!(version_of(store, &b).await, Some(version), "{b}: version");
        assert_eq!(sorted_timers(store, &b).await, timers, "{b}: timers (cleared before set, last set wins, refused undone)");
        if i % 5 == 0 {
            let n = format!("n{i:02}");
            assert_eq!(version_of(store, &n).await, Some(1), "{n}: created");
            assert_eq!(sorted_timers(store, &n).await, vec![timer(&n, "start", 50)], "{n}: timers");
        }
    }
    assert_eq!(version_of(store, "missing").await, None, "a conflicting update creates nothing");

    let filter = LedgerFilter { target: TargetName::pipeline(PIPELINE), ..LedgerFilter::default() };
    let mut got = store.list_ledger(filter).await.unwrap();
    got.reverse();
    let got_order: Vec<(String, String, u32)> = got.iter().map(|e| (e.execution_id.clone(), e.action.clone(), e.attempt)).collect();
    assert_eq!(got_order, ledger_order, "ledger seq in transition order, then entry order; refused transitions write none");
    assert!(got.windows(2).all(|w| w[0].seq < w[1].seq), "seq strictly ascending");

    let after = store.stats();
    let applied = expected.iter().filter(|r| r.is_ok()).count() as u64;
    assert_eq!(after.transitions - before.transitions, applied, "stats().transitions counts the applied transitions");
    assert_eq!(after.ledger_rows - before.ledger_rows, ledger_order.len() as u64, "stats().ledger_rows counts their rows");
}

// ---------------------------------------------------------------------------
// Tokens and the audit log
// ---------------------------------------------------------------------------

fn bearer(name: &str, hash_digit: char, expires: Option<i64>) -> crate::TokenRecord {
    crate::TokenRecord {
        name: name.to_owned(),
        token_hash: hash_digit.to_string().repeat(crate::TOKEN_HASH_HEX_LEN),
        grant_json: format!(r#"{{"scope":"read","name":"{name}"}}"#),
        created_at: ts(1),
        expires_at: expires.map(ts),
    }
}

/// Tokens round-trip, are found by hash, are unique by name and by hash,
/// are refused over the limits, and are gone once revoked.
pub async fn tokens<S: Store>(store: &S) {
    assert!(store.list_tokens().await.unwrap().is_empty());
    let (ci, ops) = (bearer("ci", 'a', Some(86_400_000)), bearer("ops", 'b', None));
    store.create_token(ops.clone()).await.unwrap();
    store.create_token(ci.clone()).await.unwrap();
    assert_eq!(store.list_tokens().await.unwrap(), [ci.clone(), ops.clone()], "by name, every field round-trips");
    assert_eq!(store.token_by_hash(&ci.token_hash).await.unwrap(), Some(ci.clone()));
    assert_eq!(store.token_by_hash(&"c".repeat(64)).await.unwrap(), None, "an unknown hash");
    expect_already_exists(store.create_token(bearer("ci", 'c', None)).await, "ci", "a name taken");
    let same_hash = store.create_token(bearer("other", 'a', None)).await;
    assert!(matches!(same_hash, Err(StoreError::AlreadyExists(_))), "a hash taken: {same_hash:?}");
    for (bad, what) in [
        (crate::TokenRecord { name: String::new(), ..bearer("x", 'd', None) }, "an empty name"),
        (crate::TokenRecord { token_hash: "D".repeat(64), ..bearer("x", 'd', None) }, "an upper-case hash"),
        (crate::TokenRecord { token_hash: "d".repeat(63), ..bearer("x", 'd', None) }, "a short hash"),
        (crate::TokenRecord { grant_json: "g".repeat(crate::validate::MAX_GRANT_JSON_BYTES + 1), ..bearer("x", 'd', None) }, "a big grant"),
    ] {
        assert!(matches!(store.create_token(bad).await, Err(StoreError::Limit(_))), "{what}");
    }
    assert_eq!(store.list_tokens().await.unwrap().len(), 2, "refused creates write nothing");
    assert!(store.revoke_token("ci").await.unwrap());
    assert!(!store.revoke_token("ci").await.unwrap(), "already revoked");
    assert_eq!(store.token_by_hash(&ci.token_hash).await.unwrap(), None, "a revoked token is not found");
    store.create_token(bearer("ci", 'e', None)).await.unwrap();
    assert_eq!(store.list_tokens().await.unwrap().len(), 2, "a revoked name can be reused");
}

fn audit_entry(principal: &str, at: i64, status: u16) -> crate::AuditRecord {
    crate::AuditRecord {
        seq: 0,
        at: ts(at),
        principal: principal.to_owned(),
        action: "POST /v1/pipelines/{name}/executions".to_owned(),
        target: Some("payments".to_owned()),
        status,
        summary_json: r#"{"pipeline":"payments"}"#.to_owned(),
    }
}

/// Audit records get increasing `seq`s and are listed newest first, by page.
pub async fn audit_log<S: Store>(store: &S) {
    assert!(store.list_audit(crate::AuditFilter::default()).await.unwrap().is_empty());
    let mut seqs = Vec::new();
    for i in 0..5 {
        seqs.push(store.append_audit(audit_entry(&format!("p{i}"), i, 200 + i as u16)).await.unwrap());
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "increasing: {seqs:?}");
    let all = store.list_audit(crate::AuditFilter::default()).await.unwrap();
    let principals: Vec<&str> = all.iter().map(|r| r.principal.as_str()).collect();
    assert_eq!(principals, ["p4", "p3", "p2", "p1", "p0"], "newest first");
    assert_eq!(all[4], crate::AuditRecord { seq: seqs[0], ..audit_entry("p0", 0, 200) }, "every field round-trips");
    let page = store.list_audit(crate::AuditFilter { before_seq: Some(seqs[3]), limit: 2 }).await.unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [seqs[2], seqs[1]], "before is exclusive; limit applies");
    let none = crate::AuditRecord { target: None, ..audit_entry("p5", 9, 403) };
    let seq = store.append_audit(none.clone()).await.unwrap();
    assert_eq!(store.list_audit(crate::AuditFilter { before_seq: None, limit: 1 }).await.unwrap(), [crate::AuditRecord { seq, ..none }]);
    let big = crate::AuditRecord { summary_json: "s".repeat(crate::validate::MAX_AUDIT_SUMMARY_BYTES + 1), ..audit_entry("p", 0, 200) };
    assert!(matches!(store.append_audit(big).await, Err(StoreError::Limit(_))), "a big summary");
    assert!(matches!(store.append_audit(audit_entry("", 0, 200)).await, Err(StoreError::Limit(_))), "no principal");
    assert_eq!(store.list_audit(crate::AuditFilter::default()).await.unwrap().len(), 6, "refused appends write nothing");
}

// ---------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------

/// A transition finishing execution `id` (at version `expected`) at `ts(at)`.
fn finish(id: &str, expected: u64, status: &str, at: i64) -> Transition {
    Transition { status: status.to_owned(), ..update(id, expected, at) }
}

fn prune_query(before: i64) -> PruneQuery {
    PruneQuery { finished_before: ts(before), after: None, limit: 0 }
}

fn candidate_ids(candidates: &[PruneCandidate]) -> Vec<&str> {
    candidates.iter().map(|c| c.id.as_str()).collect()
}

fn prune_of(candidates: &[PruneCandidate]) -> PruneStep {
    PruneStep {
        executions: candidates.iter().map(|c| PruneExecution { id: c.id.clone(), version: c.version }).collect(),
        ..PruneStep::default()
    }
}

/// A finished execution past the cutoff is a candidate and goes with its
/// ledger rows, timers and client token; an unfinished one and one finished
/// after the cutoff stay.
pub async fn prune_deletes_finished_executions<S: Store>(store: &S) {
    let mut old = create("old", 0);
    old.ledger = vec![entry("old", "Compile", 1, true), entry("old", "Compile", 2, false)];
    old.client_token = Some(ClientToken { token: "tok-old".into(), fingerprint: "f".into() });
    old.set_timers = vec![timer("old", "k", 50)];
    let running = create("running", 1);
    let recent = create("recent", 2);
    assert_eq!(store.commit(vec![old, running, recent].into()).await.unwrap(), vec![Ok(1); 3]);
    assert_eq!(commit_one(store, finish("old", 1, "Succeeded", 100)).await, Ok(2));
    assert_eq!(commit_one(store, finish("recent", 1, "Failed", 1_000)).await, Ok(2));

    let found = store.prune_candidates(prune_query(500)).await.unwrap();
    assert_eq!(candidate_ids(&found), ["old"], "only a finished execution last changed before the cutoff");
    let c = &found[0];
    assert_eq!((c.target.clone(), c.status.as_str(), c.version), (TargetName::pipeline(PIPELINE), "Succeeded", 2));
    assert_eq!((c.created_at, c.finished_at), (ts(0), ts(100)), "created_at and the finish time (updated_at)");

    let counts = store.prune(prune_of(&found)).await.unwrap();
    assert_eq!(counts, PruneCounts { executions: 1, ledger_rows: 2, ..PruneCounts::default() });
    assert_eq!(store.get_execution("old").await.unwrap(), None, "a pruned execution is gone");
    assert!(store.ledger("old").await.unwrap().is_empty(), "and its ledger rows");
    assert!(store.execution_timers("old").await.unwrap().is_empty(), "and its timers");
    assert!(store.get_execution("running").await.unwrap().is_some() && store.get_execution("recent").await.unwrap().is_some());
    let mut again = create("old-again", 600);
    again.client_token = Some(ClientToken { token: "tok-old".into(), fingerprint: "g".into() });
    assert_eq!(commit_one(store, again).await, Ok(1), "the pruned execution's client token is forgotten");
    assert_eq!(store.prune(prune_of(&found)).await.unwrap(), PruneCounts::default(), "pruning twice deletes nothing");
    let later = store.prune_candidates(prune_query(2_000)).await.unwrap();
    assert_eq!(candidate_ids(&later), ["recent"], "a later cutoff reaches the execution finished later");
}

/// Never pruned: an execution a dead-letter entry names (queued, redriven or
/// resolved), one that changed since it was listed, one that is unfinished.
pub async fn prune_keeps_what_is_still_needed<S: Store>(store: &S) {
    let batch = vec![failed_create("dead", "q", 10), create("plain", 11), create("moving", 12)];
    assert_eq!(store.commit(batch.into()).await.unwrap(), vec![Ok(1); 3]);
    assert_eq!(commit_one(store, finish("plain", 1, "Stopped", 20)).await, Ok(2));
    assert_eq!(commit_one(store, finish("moving", 1, "Superseded", 20)).await, Ok(2));
    let found = store.prune_candidates(prune_query(100)).await.unwrap();
    assert_eq!(candidate_ids(&found), ["plain", "moving"], "the dead-lettered execution is never a candidate");

    // "moving" changes after it was listed (a stage retry reopened it): skipped.
    assert_eq!(commit_one(store, update("moving", 2, 30)).await, Ok(3));
    // "plain" is named by an entry after it was listed: skipped.
    let mut redriven = update("plain", 2, 31);
    redriven.dlq = vec![DlqOp::Enter(dlq_write("plain-entry", "q", "plain", 31))];
    assert_eq!(commit_one(store, Transition { status: "Failed".into(), ..redriven }).await, Ok(3));
    let mut step = prune_of(&found);
    step.executions.push(PruneExecution { id: "dead".into(), version: 1 });
    step.executions.push(PruneExecution { id: "missing".into(), version: 1 });
    assert_eq!(store.prune(step).await.unwrap(), PruneCounts::default(), "nothing listed may go any more");
    for id in ["dead", "plain", "moving"] {
        assert!(store.get_execution(id).await.unwrap().is_some(), "{id} must survive");
    }

    // The redrive of "dead" names it and its new execution while the entry lives.
    assert_eq!(commit_one(store, redrive("dead", "dead-r", 40)).await, Ok(1));
    let mut resolved = finish("dead-r", 1, "Succeeded", 50);
    resolved.dlq = vec![resolve("dead")];
    assert_eq!(commit_one(store, resolved).await, Ok(2));
    let found = store.prune_candidates(prune_query(10_000)).await.unwrap();
    assert!(!candidate_ids(&found).contains(&"dead") && !candidate_ids(&found).contains(&"dead-r"), "a resolved entry still names them");

    // Once the resolved entry is pruned, both become candidates.
    let entries = PruneStep { resolved_entries_before: Some(ts(10_000)), limit: 10, ..PruneStep::default() };
    assert_eq!(store.prune(entries).await.unwrap().dlq_entries, 1, "the resolved entry goes");
    let found = store.prune_candidates(prune_query(10_000)).await.unwrap();
    assert_eq!(candidate_ids(&found), ["dead", "dead-r"], "{found:?}");
    assert_eq!(store.prune(prune_of(&found)).await.unwrap().executions, 2);
    assert!(store.get_dlq_entry("plain-entry").await.unwrap().is_some(), "a queued entry is never pruned");
}

/// Candidates page by `(created_at, id)` with no gaps or repeats, also among
/// executions created at the same instant; `limit` caps a page.
pub async fn prune_candidates_paging<S: Store>(store: &S) {
    let mut batch = Vec::new();
    for i in 0..7 {
        batch.push(create(&format!("p{i}"), i / 3));
    }
    assert!(store.commit(batch.into()).await.unwrap().iter().all(Result::is_ok));
    let finished: Vec<Transition> = (0..7).map(|i| finish(&format!("p{i}"), 1, "Succeeded", 10)).collect();
    assert!(store.commit(finished.into()).await.unwrap().iter().all(Result::is_ok));
    let mut seen = Vec::new();
    let mut query = PruneQuery { limit: 3, ..prune_query(100) };
    loop {
        let page = store.prune_candidates(query.clone()).await.unwrap();
        assert!(page.len() <= 3, "a page holds at most limit candidates");
        seen.extend(page.iter().map(|c| c.id.clone()));
        match page.last() {
            Some(last) if page.len() == 3 => query.after = Some(last.cursor()),
            _ => break,
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("p{i}")).collect::<Vec<_>>(), "every candidate once, in (created_at, id) order");
    let too_big = PruneStep { limit: MAX_PRUNE_STEP + 1, ..PruneStep::default() };
    assert!(matches!(store.prune(too_big).await, Err(StoreError::Limit(_))), "a step over MAX_PRUNE_STEP is refused");
}

/// `RESOLVED` entries and finished runs past their cutoff go, `limit` at a
/// time; queued and redriven entries and running runs never; `count_prunable`
/// counts what would go.
pub async fn prune_entries_and_runs<S: Store>(store: &S) {
    let batch = vec![failed_create("a", "q", 10), failed_create("b", "q", 10), failed_create("c", "q", 10), failed_create("d", "q", 10)];
    assert_eq!(store.commit(batch.into()).await.unwrap(), vec![Ok(1); 4]);
    for (entry_id, at) in [("a", 20), ("b", 30)] {
        let new_id = format!("{entry_id}-r");
        assert_eq!(commit_one(store, redrive(entry_id, &new_id, at)).await, Ok(1));
        let mut done = finish(&new_id, 1, "Succeeded", at + 1);
        done.dlq = vec![resolve(entry_id)];
        assert_eq!(commit_one(store, done).await, Ok(2));
    }
    assert_eq!(commit_one(store, redrive("c", "c-r", 20)).await, Ok(1), "c stays REDRIVEN");
    for (id, status, finished) in [("r1", "SUCCEEDED", Some(15)), ("r2", "INTERRUPTED", Some(25)), ("r3", "RUNNING", None)] {
        store.create_redrive_run(run(id, None, 5)).await.unwrap();
        if finished.is_some() {
            let done = RedriveRunRecord { status: status.into(), finished_at: finished.map(ts), ..run(id, None, 5) };
            store.update_redrive_run(done).await.unwrap();
        }
    }
    let step = |before: i64, limit: usize| PruneStep {
        resolved_entries_before: Some(ts(before)),
        runs_finished_before: Some(ts(before)),
        limit,
        ..PruneStep::default()
    };
    let counted = store.count_prunable(step(1_000, 0)).await.unwrap();
    assert_eq!((counted.dlq_entries, counted.redrive_runs), (2, 2), "resolved a and b; runs r1 and r2");
    assert_eq!(store.count_prunable(step(25, 0)).await.unwrap().dlq_entries, 1, "b resolved at 31, after the cutoff");
    let first = store.prune(step(1_000, 1)).await.unwrap();
    assert_eq!((first.dlq_entries, first.redrive_runs), (1, 1), "limit caps each kind");
    let rest = store.prune(step(1_000, 10)).await.unwrap();
    assert_eq!((rest.dlq_entries, rest.redrive_runs), (1, 1));
    assert_eq!(store.prune(step(1_000, 10)).await.unwrap(), PruneCounts::default());
    assert_eq!(dlq_entry(store, "c").await.state, DlqEntryState::Redriven);
    assert_eq!(dlq_entry(store, "d").await.state, DlqEntryState::Queued);
    assert!(store.get_dlq_entry("a").await.unwrap().is_none() && store.get_dlq_entry("b").await.unwrap().is_none());
    assert!(store.get_redrive_run("r3").await.unwrap().is_some(), "a running run stays");
    assert!(store.get_redrive_run("r1").await.unwrap().is_none());
}

/// Audit records written before the cutoff go, oldest first, `limit` at a time;
/// `count_prunable` counts them.
pub async fn prune_audit_records<S: Store>(store: &S) {
    for i in 0..5 {
        store.append_audit(audit_entry(&format!("p{i}"), i, 200)).await.unwrap();
    }
    let at = |r: &crate::AuditRecord| r.at;
    let all = store.list_audit(crate::AuditFilter::default()).await.unwrap();
    let cutoff = at(&all[1]); // p0 .. p2 were written before p3
    let step = |limit| PruneStep { audit_before: Some(cutoff), limit, ..PruneStep::default() };
    assert_eq!(store.count_prunable(step(0)).await.unwrap().audit_records, 3);
    assert_eq!(store.prune(step(2)).await.unwrap().audit_records, 2, "limit caps a step");
    assert_eq!(store.prune(step(2)).await.unwrap().audit_records, 1);
    let left: Vec<String> = store.list_audit(crate::AuditFilter::default()).await.unwrap().into_iter().map(|r| r.principal).collect();
    assert_eq!(left, ["p4", "p3"], "the oldest went first, the rest stays");
}

/// Finished bulk retry operations past the cutoff go with their results,
/// oldest finish first, `limit` at a time; a running one never;
/// `count_prunable` counts what would go.
pub async fn prune_bulk_retries<S: Store>(store: &S) {
    use crate::{BulkRetryRecord, BulkRetryResult};
    let op = |id: &str, status: &str, finished: Option<i64>| BulkRetryRecord {
        id: id.into(),
        pipeline: "p".into(),
        stage: "Build".into(),
        status: status.into(),
        started_at: ts(5),
        finished_at: finished.map(ts),
        request_json: "{}".into(),
        summary_json: "{}".into(),
    };
    let ops =
        [op("o1", "SUCCEEDED", Some(20)), op("o2", "ABORTED", Some(10)), op("o3", "INTERRUPTED", Some(40)), op("o4", "RUNNING", None)];
    for o in &ops {
        store.create_bulk_retry(op(&o.id, "RUNNING", None)).await.unwrap();
        store
            .add_bulk_retry_result(BulkRetryResult {
                op_id: o.id.clone(),
                seq: 1,
                execution_id: "e1".into(),
                outcome: "retried".into(),
                reason: None,
                at: ts(6),
            })
            .await
            .unwrap();
        if o.status != "RUNNING" {
            store.update_bulk_retry(o.clone()).await.unwrap();
        }
    }
    let step = |before: i64, limit: usize| PruneStep { bulk_retries_finished_before: Some(ts(before)), limit, ..PruneStep::default() };
    assert_eq!(store.count_prunable(step(30, 0)).await.unwrap().bulk_retries, 2, "o1 and o2 finished before 30");
    assert_eq!(store.count_prunable(step(1_000, 0)).await.unwrap().bulk_retries, 3, "never the running one");
    let first = store.prune(step(30, 1)).await.unwrap();
    assert_eq!(first, PruneCounts { bulk_retries: 1, ..PruneCounts::default() }, "limit caps a step");
    assert!(store.get_bulk_retry("o2").await.unwrap().is_none(), "the one that finished first went first");
    assert!(store.list_bulk_retry_results("o2", 0, 0).await.unwrap().is_empty(), "with its results");
    assert_eq!(store.prune(step(30, 10)).await.unwrap().bulk_retries, 1);
    assert_eq!(store.prune(step(30, 10)).await.unwrap(), PruneCounts::default());
    for kept in ["o3", "o4"] {
        assert!(store.get_bulk_retry(kept).await.unwrap().is_some(), "{kept} stays");
        assert_eq!(store.list_bulk_retry_results(kept, 0, 0).await.unwrap().len(), 1, "{kept}'s results stay");
    }
    assert_eq!(store.prune(step(1_000, 10)).await.unwrap().bulk_retries, 1, "o3");
    assert!(store.get_bulk_retry("o4").await.unwrap().is_some(), "a running operation is never pruned");
}

/// Dependency states: upserted by name (a second write replaces the first,
/// others are kept), listed by name; over a limit nothing is written.
pub async fn dependencies<S: Store>(store: &S) {
    use crate::DependencyRecord;
    assert!(store.list_dependencies().await.unwrap().is_empty());
    let rec = |name: &str, state: &str, at: i64| DependencyRecord { name: name.into(), state_json: state.into(), updated_at: ts(at) };
    store.put_dependencies(vec![rec("payments", r#"{"breaker":{"state":"open"}}"#, 1), rec("api.example.com", "{}", 2)]).await.unwrap();
    store.put_dependencies(Vec::new()).await.unwrap();
    let listed = store.list_dependencies().await.unwrap();
    assert_eq!(listed, [rec("api.example.com", "{}", 2), rec("payments", r#"{"breaker":{"state":"open"}}"#, 1)], "by name, round-trips");
    store.put_dependencies(vec![rec("payments", r#"{"breaker":{"state":"closed"}}"#, 3)]).await.unwrap();
    let listed = store.list_dependencies().await.unwrap();
    assert_eq!(listed[1], rec("payments", r#"{"breaker":{"state":"closed"}}"#, 3), "replaced by name");
    assert_eq!(listed.len(), 2, "the other is kept");
    let too_big = "x".repeat(crate::validate::MAX_DEPENDENCY_STATE_BYTES + 1);
    let refused = store.put_dependencies(vec![rec("other", "{}", 4), rec("big", &too_big, 4)]).await;
    assert!(matches!(refused, Err(StoreError::Limit(_))), "{refused:?}");
    assert_eq!(store.list_dependencies().await.unwrap().len(), 2, "a refused write writes nothing");
    assert_eq!(store.list_shard_dependencies().await.unwrap(), [], "the whole database's records are no shard's");
}

/// Bulk stage retry operations: created once, updated (status, finish, summary
/// only), listed per pipeline newest first with a keyset cursor, interrupted at
/// start-up; results once per execution and per seq, in seq order.
pub async fn bulk_retries<S: Store>(store: &S) {
    use crate::{BulkRetryRecord, BulkRetryResult};
    let op = |id: &str, pipeline: &str, started: i64| BulkRetryRecord {
        id: id.into(),
        pipeline: pipeline.into(),
        stage: "Build".into(),
        status: "RUNNING".into(),
        started_at: ts(started),
        finished_at: None,
        request_json: r#"{"mode":"FAILED_ACTIONS"}"#.into(),
        summary_json: "{}".into(),
    };
    assert_eq!(store.get_bulk_retry("b1").await.unwrap(), None, "unknown operation");
    assert!(store.list_bulk_retries("p", None, 0).await.unwrap().is_empty());
    let ops = [op("b1", "p", 10), op("b2", "p", 20), op("b3", "p", 20), op("b4", "q", 30)];
    for o in &ops {
        store.create_bulk_retry(o.clone()).await.unwrap();
        assert_eq!(store.get_bulk_retry(&o.id).await.unwrap().as_ref(), Some(o), "{}: every field round-trips", o.id);
    }
    expect_already_exists(store.create_bulk_retry(op("b1", "x", 99)).await, "b1", "a duplicate operation id");
    assert_eq!(store.get_bulk_retry("b1").await.unwrap(), Some(ops[0].clone()), "a refused create changes nothing");

    let ids = |v: Vec<BulkRetryRecord>| v.into_iter().map(|o| o.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_bulk_retries("p", None, 0).await.unwrap()), ["b3", "b2", "b1"], "newest first, per pipeline");
    let page = store.list_bulk_retries("p", None, 2).await.unwrap();
    let last = page.last().unwrap();
    let rest = store.list_bulk_retries("p", Some((last.started_at, last.id.clone())), 2).await.unwrap();
    assert_eq!(ids(rest), ["b1"], "the cursor continues after the page");

    let done = BulkRetryRecord {
        status: "SUCCEEDED".into(),
        finished_at: Some(ts(40)),
        summary_json: r#"{"retried":2}"#.into(),
        pipeline: "ignored".into(),
        request_json: "ignored".into(),
        ..op("b1", "p", 10)
    };
    store.update_bulk_retry(done).await.unwrap();
    let got = store.get_bulk_retry("b1").await.unwrap().unwrap();
    assert_eq!((got.status.as_str(), got.finished_at, got.summary_json.as_str()), ("SUCCEEDED", Some(ts(40)), r#"{"retried":2}"#));
    assert_eq!(
        (got.pipeline.as_str(), got.request_json.as_str()),
        ("p", ops[0].request_json.as_str()),
        "only status, finish and summary change"
    );
    assert!(matches!(store.update_bulk_retry(op("nope", "p", 1)).await, Err(StoreError::NotFound(_))));
    assert_eq!(store.interrupt_bulk_retries(ts(50)).await.unwrap(), 3, "the RUNNING ones");
    let b2 = store.get_bulk_retry("b2").await.unwrap().unwrap();
    assert_eq!((b2.status.as_str(), b2.finished_at), ("INTERRUPTED", Some(ts(50))));
    assert_eq!(store.get_bulk_retry("b1").await.unwrap().unwrap().status, "SUCCEEDED", "a finished one is kept");
    assert_eq!(store.interrupt_bulk_retries(ts(60)).await.unwrap(), 0);

    let result = |seq: u64, exec: &str, outcome: &str, reason: Option<&str>| BulkRetryResult {
        op_id: "b2".into(),
        seq,
        execution_id: exec.into(),
        outcome: outcome.into(),
        reason: reason.map(str::to_string),
        at: ts(seq as i64),
    };
    let results = [result(1, "e9", "retried", None), result(2, "e3", "skipped", Some("not latest")), result(3, "e1", "failed", Some("x"))];
    for r in &results {
        store.add_bulk_retry_result(r.clone()).await.unwrap();
    }
    expect_already_exists(store.add_bulk_retry_result(result(4, "e9", "retried", None)).await, "e9", "a second result for an execution");
    expect_already_exists(store.add_bulk_retry_result(result(2, "e7", "retried", None)).await, "b2", "a seq taken");
    let orphan = BulkRetryResult { op_id: "none".into(), ..result(1, "e1", "retried", None) };
    assert!(matches!(store.add_bulk_retry_result(orphan).await, Err(StoreError::NotFound(_))), "no such operation");
    assert_eq!(store.list_bulk_retry_results("b2", 0, 0).await.unwrap(), results, "in seq order, every field round-trips");
    assert_eq!(store.list_bulk_retry_results("b2", 1, 1).await.unwrap(), [results[1].clone()], "after a seq, limited");
    assert!(store.list_bulk_retry_results("b1", 0, 0).await.unwrap().is_empty(), "per operation");
    let long = result(5, "e5", "skipped", Some(&"r".repeat(redrive_core::limits::MAX_BULK_RETRY_REASON_BYTES + 1)));
    assert!(matches!(store.add_bulk_retry_result(long).await, Err(StoreError::Limit(_))), "a reason over its limit");
    let big = BulkRetryRecord { request_json: "x".repeat(redrive_core::limits::MAX_BULK_RETRY_JSON_BYTES + 1), ..op("b9", "p", 1) };
    assert!(matches!(store.create_bulk_retry(big).await, Err(StoreError::Limit(_))));
    assert_eq!(store.get_bulk_retry("b9").await.unwrap(), None, "a refused write writes nothing");
}
