//! kill -9 in the middle of a run, then `--resume`: committed work never repeats.

mod common;
use common::*;
use std::collections::BTreeMap;

/// Every action logs its side effect, then holds while `hold-STAGE-ACTION`
/// exists: a test holds one action to kill the engine in the middle of it.
fn pipeline() -> String {
    let mut s = String::from("name: crashy\nstages:\n");
    for stage in ["One", "Two"] {
        s.push_str(&format!("  - name: {stage}\n    actions:\n"));
        for i in 1..=4 {
            s.push_str(&format!(
                "      - name: A{i}\n        runOrder: {i}\n        command: [\"sh\", \"-c\", \"echo \\\"$REDRIVE_STAGE/$REDRIVE_ACTION\\\" >> effects.log; while [ -e hold-$REDRIVE_STAGE-$REDRIVE_ACTION ]; do sleep 0.01; done\"]\n"
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

/// The actions whose success is committed (read-only, beside a running engine;
/// nothing before the database and its schema exist).
fn committed_successes(sb: &Sandbox) -> Vec<String> {
    let Ok(conn) = rusqlite::Connection::open_with_flags(sb.db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else { return vec![] };
    let Ok(mut stmt) = conn.prepare("SELECT stage || '/' || action FROM ledger WHERE outcome = 'SUCCEEDED'") else { return vec![] };
    stmt.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
}

#[test]
fn kill_9_then_resume_never_reruns_committed_actions() {
    // Kill in the middle of an attempt at several points of the run: the held
    // action has run its side effect, and every action before it is committed.
    let order: Vec<String> = ["One", "Two"].iter().flat_map(|st| (1..=4).map(move |i| format!("{st}/A{i}"))).collect();
    for held in ["One/A1", "One/A2", "One/A4", "Two/A2", "Two/A4"] {
        let sb = Sandbox::new();
        let f = sb.write("p.yaml", &pipeline());
        let hold = sb.path(&format!("hold-{}", held.replace('/', "-")));
        std::fs::write(&hold, "").unwrap();
        let mut child = bin()
            .arg("run")
            .arg(&f)
            .arg("--db")
            .arg(sb.db())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let before_held: Vec<String> = order.iter().take_while(|a| a.as_str() != held).cloned().collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let ran = effect_counts(&sb).contains_key(held);
            let mut committed = committed_successes(&sb);
            committed.sort();
            let mut want = before_held.clone();
            want.sort();
            if ran && committed == want {
                break; // the phase: mid-attempt of `held`, all before it durable
            }
            assert!(!committed.iter().any(|a| a == held), "{held} finished while held");
            assert!(child.try_wait().unwrap().is_none(), "the run ended before {held} was reached");
            assert!(std::time::Instant::now() < deadline, "the run never reached the middle of {held}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        std::fs::remove_file(&hold).unwrap();

        let committed = committed_successes(&sb);
        let before = effect_counts(&sb);
        let (code, v, stderr) = sb.resume_json();
        assert_eq!(code, 0, "kill in {held}: {stderr}");
        assert_eq!(v["status"], "Succeeded");
        let after = effect_counts(&sb);

        for action in &committed {
            assert_eq!(after.get(action), before.get(action), "kill in {held}: {action} succeeded before the kill and ran again");
        }
        assert_eq!(after.len(), 8, "every action ran: {after:?}");
        let repeated: Vec<_> = after.iter().filter(|(_, n)| **n > 1).collect();
        assert_eq!(
            repeated.iter().map(|(a, n)| (a.as_str(), **n)).collect::<Vec<_>>(),
            [(held, 2)],
            "exactly the attempt in flight at the kill repeats"
        );
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
