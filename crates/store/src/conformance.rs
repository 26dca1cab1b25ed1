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
//! - `ExecutionFilter::limit == 0` means the largest page ([`MAX_PAGE_SIZE`]).
//! - `due_timers` caps `limit` at [`MAX_PAGE_SIZE`]; ties in `due_at` are ordered
//!   by execution id, then key.
//! - Within one transition, `clear_timers` is applied before `set_timers`: a key
//!   both cleared and set ends up set.
//! - Ledger entries and timers must belong to the transition's execution, else
//!   the whole commit is refused with [`StoreError::Limit`].
//! - `stats().transitions` counts applied (not refused) transitions.

use crate::limits::{MAX_DEFINITION_BYTES, MAX_INPUT_BYTES, MAX_PAGE_SIZE, MAX_STATE_BYTES, MAX_TRANSITIONS_PER_COMMIT};
use crate::{ExecutionFilter, LedgerEntry, Store, StoreError, TimerRecord, Transition, TransitionError};
use redrive_core::time::Timestamp;
use std::future::Future;
use std::sync::Arc;

/// A fixed base time for every check (2023-11-14).
const BASE_MS: i64 = 1_700_000_000_000;
/// Concurrent `commit` calls in [`group_commit_under_concurrency`].
pub const CONCURRENT_COMMITS: usize = 500;
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
    limits_enforced(&make_store().await).await;
    group_commit_under_concurrency(Arc::new(make_store().await)).await;
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
        pipeline_name: PIPELINE.to_owned(),
        pipeline_version: 1,
        status: IN_PROGRESS.to_owned(),
        input_json: format!(r#"{{"id":"{id}"}}"#),
        state_json: r#"{"step":0}"#.to_owned(),
        at: ts(at),
        ledger: Vec::new(),
        set_timers: Vec::new(),
        clear_timers: Vec::new(),
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
    let mut results = store.commit(vec![t]).await.unwrap_or_else(|e| panic!("{what} failed: {e}"));
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

fn ids(records: &[crate::ExecutionRecord]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

fn filter(pipeline: Option<&str>, unfinished_only: bool, limit: usize) -> ExecutionFilter {
    ExecutionFilter { pipeline_name: pipeline.map(str::to_owned), unfinished_only, limit }
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
    t.pipeline_version = 3;
    assert_eq!(commit_one(store, t.clone()).await, Ok(1), "create must return version 1");
    let e = store.get_execution("e1").await.unwrap().expect("created execution must be readable");
    assert_eq!(e.id, "e1");
    assert_eq!(e.pipeline_name, PIPELINE);
    assert_eq!(e.pipeline_version, 3);
    assert_eq!(e.status, IN_PROGRESS);
    assert_eq!(e.input_json, t.input_json);
    assert_eq!(e.state_json, t.state_json);
    assert_eq!(e.version, 1);
    assert_eq!(e.created_at, ts(0));
    assert_eq!(e.updated_at, ts(0));

    let mut u = update("e1", 1, 50);
    u.pipeline_version = 3;
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
    let results = store.commit(vec![create("e2", 70), update("e2", 1, 71), update("e2", 2, 72)]).await.unwrap();
    assert_eq!(results, vec![Ok(1), Ok(2), Ok(3)], "transitions in one commit apply in order");
    assert_eq!(version_of(store, "e2").await, Some(3));

    assert_eq!(store.commit(Vec::new()).await.unwrap(), Vec::new(), "an empty commit returns no results");
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

    let results = store.commit(vec![create("pair", 20), create("pair", 21)]).await.unwrap();
    assert_eq!(
        results,
        vec![Ok(1), Err(TransitionError::AlreadyExists("pair".into()))],
        "a second create in the same commit must be refused"
    );
    assert_eq!(store.get_execution("pair").await.unwrap().unwrap().created_at, ts(20), "the first create wins");
}

/// One commit with good and conflicting transitions applies only the good ones.
pub async fn mixed_commit_applies_only_good_transitions<S: Store>(store: &S) {
    let results = store.commit(vec![create("a", 0), create("b", 1)]).await.unwrap();
    assert_eq!(results, vec![Ok(1), Ok(1)]);
    let b_before = store.get_execution("b").await.unwrap().unwrap();

    let mut good = update("a", 1, 10);
    good.ledger = vec![entry("a", "Compile", 1, false)];
    good.set_timers = vec![timer("a", "ta", 100)];
    let mut bad = update("b", 5, 10);
    bad.ledger = vec![entry("b", "Compile", 1, false)];
    bad.set_timers = vec![timer("b", "tb", 50)];
    let results = store.commit(vec![good, bad, create("c", 10), create("a", 10)]).await.unwrap();
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

    let mut c = create("x", 0);
    c.ledger = vec![entry("x", "Compile", 1, true), entry("x", "Compile", 2, false)];
    let mut y = create("y", 0);
    y.ledger = vec![entry("y", "Lint", 1, false)];
    assert_eq!(store.commit(vec![c.clone(), y.clone()]).await.unwrap(), vec![Ok(1), Ok(1)]);

    let mut u = update("x", 1, 20);
    let mut third = entry("x", "Test", 1, true);
    third.series = 2;
    third.trigger = "stage-retry".to_owned();
    third.exception_type = None;
    third.message = Some(String::new());
    u.ledger = vec![third];
    assert_eq!(commit_one(store, u.clone()).await, Ok(2));

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

    let mut c1 = create("t1", 0);
    c1.set_timers = vec![timer("t1", "k2", 300), timer("t1", "k1", 100)];
    let mut c2 = create("t2", 0);
    c2.set_timers = vec![timer("t2", "k1", 200)];
    assert_eq!(store.commit(vec![c1, c2]).await.unwrap(), vec![Ok(1), Ok(1)]);

    assert_eq!(
        sorted_timers(store, "t1").await,
        vec![timer("t1", "k1", 100), timer("t1", "k2", 300)],
        "execution_timers returns the execution's timers"
    );
    assert_eq!(store.next_timer_due().await.unwrap(), Some(ts(100)), "next_timer_due is the earliest");
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
    assert_eq!(store.commit(vec![u, v]).await.unwrap(), vec![Ok(4), Ok(2)]);
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
        t.pipeline_name = pipeline.to_owned();
        batch.push(t);
    }
    assert!(store.commit(batch).await.unwrap().iter().all(Result::is_ok));
    let mut finish_l4 = update("l4", 1, 60);
    finish_l4.status = "Succeeded".to_owned();
    let mut finish_l2 = update("l2", 1, 61);
    finish_l2.pipeline_name = OTHER_PIPELINE.to_owned();
    finish_l2.status = "Failed".to_owned();
    assert_eq!(store.commit(vec![finish_l4, finish_l2]).await.unwrap(), vec![Ok(2), Ok(2)]);

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
    assert!(store.commit(many).await.unwrap().iter().all(Result::is_ok));
    let capped = store.list_executions(filter(None, false, MAX_PAGE_SIZE * 5)).await.unwrap();
    assert_eq!(capped.len(), MAX_PAGE_SIZE, "limit is capped at MAX_PAGE_SIZE");
    assert_eq!(capped[0].id, format!("m{MAX_PAGE_SIZE:05}"), "the capped page starts with the newest");
    let default_page = store.list_executions(filter(None, false, 0)).await.unwrap();
    assert_eq!(default_page.len(), MAX_PAGE_SIZE, "limit 0 means the largest page");
}

/// Every limit is enforced with [`StoreError::Limit`] and a refused call
/// changes nothing; values exactly at a limit are accepted.
pub async fn limits_enforced<S: Store>(store: &S) {
    fn expect_limit<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
        match result {
            Err(StoreError::Limit(message)) => assert!(!message.is_empty(), "{what}: the limit error needs a message"),
            other => panic!("{what}: expected StoreError::Limit, got {other:?}"),
        }
    }

    let too_many: Vec<Transition> = (0..=MAX_TRANSITIONS_PER_COMMIT).map(|i| create(&format!("many{i}"), 0)).collect();
    expect_limit(store.commit(too_many).await, "commit of MAX_TRANSITIONS_PER_COMMIT + 1 transitions");
    assert_eq!(store.get_execution("many0").await.unwrap(), None, "a refused commit writes nothing");

    let mut big_state = create("big-state", 0);
    big_state.state_json = "x".repeat(MAX_STATE_BYTES + 1);
    expect_limit(store.commit(vec![create("ok-neighbour", 0), big_state]).await, "state over MAX_STATE_BYTES");
    assert_eq!(store.get_execution("big-state").await.unwrap(), None, "a refused commit writes nothing");
    assert_eq!(store.get_execution("ok-neighbour").await.unwrap(), None, "a refused commit writes none of its transitions");

    let mut big_input = create("big-input", 0);
    big_input.input_json = "x".repeat(MAX_INPUT_BYTES + 1);
    expect_limit(store.commit(vec![big_input]).await, "input over MAX_INPUT_BYTES");
    assert_eq!(store.get_execution("big-input").await.unwrap(), None);

    expect_limit(
        store.put_pipeline("big", &"x".repeat(MAX_DEFINITION_BYTES + 1), None, ts(0)).await,
        "definition over MAX_DEFINITION_BYTES",
    );
    assert_eq!(store.get_pipeline("big", None).await.unwrap(), None, "a refused put_pipeline writes nothing");

    let mut foreign_ledger = create("owner", 0);
    foreign_ledger.ledger = vec![entry("someone-else", "Compile", 1, false)];
    expect_limit(store.commit(vec![foreign_ledger]).await, "ledger entry of another execution");
    let mut foreign_timer = create("owner", 0);
    foreign_timer.set_timers = vec![timer("someone-else", "k", 0)];
    expect_limit(store.commit(vec![foreign_timer]).await, "timer of another execution");
    assert_eq!(store.get_execution("owner").await.unwrap(), None);

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
    let results = store.commit(full).await.unwrap();
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
            store.commit(vec![t]).await
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
