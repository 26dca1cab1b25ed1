//! Child processes for the kill tests: the test binary re-runs one of its own
//! tests as the process to kill.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Runs the test `test` of this binary in a child process, with `env` = `db`.
pub fn spawn_child(test: &str, env: &str, db: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(env, db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `kill -9` the child, and reap it.
pub fn kill9(child: &mut Child) {
    // SAFETY: kill(2) on our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// The execution's state document, read (read-only, beside the running engine)
/// from the store file; `None` before it exists.
pub fn live_state(db: &Path) -> Option<serde_json::Value> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    let text: String = conn.query_row("SELECT state_json FROM executions LIMIT 1", [], |r| r.get(0)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The step named `name` in a state document.
pub fn step<'a>(state: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    state["steps"].as_array()?.iter().find(|s| s["name"] == name)
}
