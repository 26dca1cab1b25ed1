//! kill -9 in the middle of a run, then `--resume`: committed work never repeats.

mod common;
use common::*;
use std::collections::BTreeMap;

const ACTION_MS: f64 = 0.15;

fn pipeline() -> String {
    let mut s = String::from("name: crashy\nstages:\n");
    for stage in ["One", "Two"] {
        s.push_str(&format!("  - name: {stage}\n    actions:\n"));
        for i in 1..=4 {
            s.push_str(&format!(
                "      - name: A{i}\n        runOrder: {i}\n        command: [\"sh\", \"-c\", \"echo \\\"$REDRIVE_STAGE/$REDRIVE_ACTION\\\" >> effects.log; sleep {ACTION_MS}\"]\n"
            ));
        }
    }
    s
}

fn effect_counts(sb: &Sandbox) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for line in std::fs::read_to_string(sb.path("effects.log")).unwrap_or_default().lines() {
        *m.entry(line.to_string()).or_default() += 1;
    }
    m
}

fn committed_successes(sb: &Sandbox) -> Vec<String> {
    let conn = rusqlite::Connection::open(sb.db()).unwrap();
    let mut stmt = conn.prepare("SELECT stage || '/' || action FROM ledger WHERE outcome = 'SUCCEEDED'").unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
}

#[test]
fn kill_9_then_resume_never_reruns_committed_actions() {
    // Kill after the k-th side effect plus a varying delay, so the kill lands at
    // different moments: mid-attempt, between commit and next start, etc.
    for (k, extra_ms) in [(1usize, 0u64), (2, 60), (4, 130), (6, 20), (7, 170)] {
        let kill_after_ms = k as u64 * 1000 + extra_ms; // label for messages
        let sb = Sandbox::new();
        let f = sb.write("p.yaml", &pipeline());
        let mut child = bin()
            .arg("run")
            .arg(&f)
            .arg("--db")
            .arg(sb.db())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while effect_counts(&sb).values().sum::<usize>() < k {
            assert!(std::time::Instant::now() < deadline, "run made no progress");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(extra_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let committed = committed_successes(&sb);
        let before = effect_counts(&sb);
        let (code, v, stderr) = sb.resume_json();
        assert_eq!(code, 0, "kill at {kill_after_ms} ms: {stderr}");
        assert_eq!(v["status"], "Succeeded");
        let after = effect_counts(&sb);

        for action in &committed {
            assert_eq!(
                after.get(action),
                before.get(action),
                "kill at {kill_after_ms} ms: {action} succeeded before the kill and ran again"
            );
        }
        assert_eq!(after.len(), 8, "every action ran: {after:?}");
        let repeated: Vec<_> = after.iter().filter(|(_, n)| **n > 1).collect();
        assert!(repeated.len() <= 1, "only the attempt in flight at the kill may repeat: {repeated:?}");
        // An attempt in flight at the kill is recorded as a SERVICE_FAULT and retried.
        for (action, _) in repeated {
            let (stage, name) = action.split_once('/').unwrap();
            let a = attempts(&v, stage, name);
            assert_eq!(a[0]["exceptionType"], "Step.SERVICE_FAULT", "{a:?}");
            assert!(a[0]["message"].as_str().unwrap().contains("in flight"));
            assert_eq!(a.last().unwrap()["outcome"], "SUCCEEDED");
        }
    }
}

#[test]
fn resume_with_nothing_to_do_says_so() {
    let sb = Sandbox::new();
    let out = bin().args(["run", "--resume", "--db"]).arg(sb.db()).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to resume"));
}

#[test]
fn resume_unknown_execution_is_an_error() {
    let sb = Sandbox::new();
    let f = sb.write("p.yaml", "name: ok\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {}\n");
    assert_eq!(sb.run_json(&f).0, 0);
    let out = bin().args(["run", "--resume", "00000000-0000-0000-0000-000000000000", "--db"]).arg(sb.db()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}
