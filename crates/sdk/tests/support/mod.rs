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
