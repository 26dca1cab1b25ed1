//! The database file's identity: one engine per file whatever path reaches it,
//! and a file deleted or replaced underneath a running store is noticed.

use redrive_core::time::Timestamp;
use redrive_store::{SqliteOptions, SqliteStore, Store, StoreError, Transition};
use std::path::Path;

fn create(id: &str) -> Transition {
    Transition {
        execution_id: id.into(),
        expected_version: None,
        target: redrive_store::Target::pipeline("p", 1),
        status: "InProgress".into(),
        input_json: "{}".into(),
        state_json: "{}".into(),
        at: Timestamp::from_unix_ms(1),
        ledger: vec![],
        set_timers: vec![],
        clear_timers: vec![],
        client_token: None,
        dlq: Vec::new(),
    }
}

fn expect_locked(path: &Path, how: &str) {
    match SqliteStore::open(path, SqliteOptions::default()) {
        Err(StoreError::Locked(m)) => assert!(m.contains("in use by another redrive process"), "{how}: {m}"),
        Err(e) => panic!("{how}: expected Locked, got {e:?}"),
        Ok(_) => panic!("{how}: a second engine on the same file must be refused"),
    }
}

#[test]
fn the_lock_follows_the_file_not_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let _first = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    std::os::unix::fs::symlink(&path, dir.path().join("sym.db")).unwrap();
    expect_locked(&dir.path().join("sym.db"), "through a symlink");
    std::fs::hard_link(&path, dir.path().join("hard.db")).unwrap();
    expect_locked(&dir.path().join("hard.db"), "through a hard link (whose WAL would be another file)");
    let other_dir = dir.path().join("sub");
    std::fs::create_dir(&other_dir).unwrap();
    expect_locked(&other_dir.join("../a.db"), "through another spelling of the path");
}

#[test]
fn a_new_database_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let _store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the database holds inputs and outputs: only its owner may read it");
}

async fn expect_lost(store: &SqliteStore, id: &str, needle: &str) {
    match store.commit(vec![create(id)].into()).await {
        Err(StoreError::Lost(m)) => assert!(m.contains(needle), "{m}"),
        other => panic!("expected Lost ({needle}), got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_database_file_is_lost_not_silently_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    assert_eq!(store.commit(vec![create("before")].into()).await.unwrap(), vec![Ok(1)]);
    std::fs::remove_file(&path).unwrap();
    expect_lost(&store, "after", "deleted").await;
    expect_lost(&store, "after2", "deleted").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_database_file_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replaced.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    assert_eq!(store.commit(vec![create("before")].into()).await.unwrap(), vec![Ok(1)]);
    // Moved away and another file put in its place: the open file still has a link.
    std::fs::rename(&path, dir.path().join("moved.db")).unwrap();
    std::fs::write(&path, b"").unwrap();
    expect_lost(&store, "after", "replaced").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_wal_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    assert_eq!(store.commit(vec![create("before")].into()).await.unwrap(), vec![Ok(1)]);
    assert_eq!(store.commit(vec![create("before2")].into()).await.unwrap(), vec![Ok(1)]);
    std::fs::remove_file(dir.path().join("wal.db-wal")).unwrap();
    expect_lost(&store, "after", "wal.db-wal was deleted").await;
}

/// The lock of an engine that exited can outlive it briefly (a child it forked
/// still shares the open file): opening waits for that (a live engine's lock is
/// refused at once, see `engine_lock_refuses_second_open`).
#[test]
fn a_dead_engines_lingering_lock_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("left.db");
    drop(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
    // flock(1) takes the lock and exits; the `sleep` it left behind inherited the
    // locked descriptor and holds the lock for about a second more.
    let status = std::process::Command::new("flock").arg("--nonblock").arg(&path).args(["-c", "sleep 1 &"]).status().unwrap();
    assert!(status.success());
    assert!(!nobody_holds(&std::fs::File::open(&path).unwrap()), "the orphan holds the lock");
    let started = std::time::Instant::now();
    let store = SqliteStore::open(&path, SqliteOptions::default()).expect("opens once the leftover holder is gone");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300), "it waited for the holder ({:?})", started.elapsed());
    drop(store);
}

/// Whether nobody holds an exclusive flock on `f` (probed with a shared one).
fn nobody_holds(f: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor for the duration of the calls.
    let free = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0;
    if free {
        // SAFETY: as above.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
    }
    free
}
