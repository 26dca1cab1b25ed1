//! `redrive dlq …` against a real `redrive server`: executions that fail for good
//! land in their pipeline's dead-letter queue; listing, showing, purging,
//! redriving (dry, failing again, succeeding, parked poison, forced), and the
//! server's config file with scheduled redrives.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

const QUEUE: &str = "dlq-orders";

/// Entries of the queue in `state` (`queued`, `resolved`, `all`, ...), as JSON.
fn entries(url: &str, state: &str) -> Vec<Value> {
    let v = cli(url, &["dlq", "show", QUEUE, "--state", state, "--output", "json"]).ok().json();
    v["entries"].as_array().unwrap().clone()
}

fn definition(flag: &Path) -> String {
    format!(
        r#"name: orders
deadLetterQueue: {QUEUE}
executionMode: PARALLEL
stages:
  - name: Ship
    actions:
      - name: Check
        command: ["sh", "-c", "test -f {}"]
        retryPolicies: [{{exceptionType: [Action.FAILED], maxAttempts: 0}}]
"#,
        flag.display()
    )
}

#[test]
fn executions_failing_for_good_are_dead_lettered_shown_redriven_parked_and_purged() {
    let sb = Sandbox::new();
    let config = sb.write(
        "server.yaml",
        "redriveSchedules:\n  - name: retry-sweeper\n    every: 1h\n    queuePrefix: sweep-\n    filters: {type: Step.THROTTLING}\n    rate: 5/s\n",
    );
    let server = start_server(
        server_command(&sb, "127.0.0.1:0").arg("--config").arg(&config).env_remove("REDRIVE_SERVER").env_remove("REDRIVE_CONFIG"),
    );
    assert!(server.banner.contains("1 redrive schedule (retry-sweeper every 1h00m on sweep-*)"), "{}", server.banner);
    let url = server.url.as_str();
    let flag = sb.path("flag");
    let file = sb.write("orders.yaml", &definition(&flag));
    cli(url, &["pipeline", "create", "-f", file.to_str().unwrap()]).ok();

    let ids: Vec<String> = (0..3).map(|_| cli(url, &["execution", "start", "orders"]).ok().stdout.trim().to_string()).collect::<Vec<_>>();
    let queued = eventually("3 entries in the queue", || {
        let e = entries(url, "queued");
        (e.len() == 3).then_some(e)
    });
    for e in &queued {
        assert!(ids.contains(&e["entryId"].as_str().unwrap().to_string()), "{e}");
        assert_eq!(e["redriveCount"], 0);
    }

    // list: the depth and the default maxRedrives.
    let r = cli(url, &["dlq", "list"]).ok();
    assert!(r.stdout.starts_with("QUEUE"), "{}", r.stdout);
    let row: Vec<&str> =
        r.stdout.lines().find(|l| l.starts_with(QUEUE)).unwrap_or_else(|| panic!("{}", r.stdout)).split_whitespace().collect();
    assert_eq!((row[1], row[2], row[3], row[5]), ("3", "0", "0", "3"), "{}", r.stdout);
    let r = cli(url, &["dlq", "list", "--prefix", "nothing-", "--output", "json"]).ok();
    assert_eq!(r.json()["queues"].as_array().unwrap().len(), 0);

    // show, with filters.
    let r = cli(url, &["dlq", "show", QUEUE, "--filter", "type=Action.FAILED", "--filter", "source=orders"]).ok();
    assert!(r.stdout.contains("ENTRY") && r.stdout.contains("REDRIVES"), "{}", r.stdout);
    assert!(r.stdout.contains("orders v1/Ship/Check"), "{}", r.stdout);
    assert!(r.stdout.contains("0/3"), "{}", r.stdout);
    assert!(r.stdout.contains("3 matching entries in dlq-orders (queued)"), "{}", r.stdout);
    let r = cli(url, &["dlq", "show", QUEUE, "--filter", "type=Step.THROTTLING"]).ok();
    assert!(r.stdout.contains("no matching entries"), "{}", r.stdout);
    let v = cli(url, &["dlq", "show", QUEUE, "--filter", "source=other", "--output", "json"]).ok().json();
    assert_eq!(v["count"], 0);
    let v = cli(url, &["dlq", "show", QUEUE, "--older-than", "1h", "--output", "json"]).ok().json();
    assert_eq!(v["count"], 0, "nothing has been queued for an hour");
    let v = cli(url, &["dlq", "show", QUEUE, "--max-items", "2", "--page-size", "1", "--output", "json"]).ok().json();
    assert_eq!((v["entries"].as_array().unwrap().len(), v["count"].as_u64()), (2, Some(3)), "{v}");

    // get: the whole entry.
    let first = ids[0].as_str();
    let r = cli(url, &["dlq", "get", first]).ok();
    assert!(r.stdout.starts_with(&format!("# dead-letter entry {first} in queue {QUEUE}: QUEUED")), "{}", r.stdout);
    assert!(r.stdout.contains("exceptionType: Action.FAILED"), "{}", r.stdout);
    let r = cli(url, &["dlq", "get", "no-such-entry"]).code(2);
    assert!(r.stderr.contains("DeadLetterEntryNotFoundException"), "{}", r.stderr);

    // A dry run changes nothing.
    let r = cli(url, &["dlq", "redrive", QUEUE, "--dry-run"]).ok();
    assert!(r.stdout.contains("WOULD") && r.stdout.contains("Ship/Check"), "{}", r.stdout);
    assert!(r.stdout.contains("dry run: 3 would be redriven, 0 skipped, 0 parked (poison); nothing was changed"), "{}", r.stdout);
    assert!(entries(url, "queued").iter().all(|e| e["redriveCount"] == 0 && e["state"] == "QUEUED"));
    assert!(entries(url, "redriven").is_empty());

    // Redriving while the action still fails: the entries come back, redriven once.
    let r = cli(url, &["dlq", "redrive", QUEUE, "--rate", "unlimited"]).ok();
    assert!(r.stdout.contains("SUCCEEDED"), "{}", r.stdout);
    assert!(r.stdout.contains("redriven 3, skipped 0, parked 0"), "{}", r.stdout);
    assert!(r.stderr.is_empty() || !r.stderr.contains('\r'), "no progress bar without a terminal: {:?}", r.stderr);
    eventually("the entries back in the queue, redriven once", || {
        let e = entries(url, "queued");
        (e.len() == 3 && e.iter().all(|e| e["redriveCount"] == 1)).then_some(())
    });
    let r = cli(url, &["dlq", "show", QUEUE]).ok();
    assert!(r.stdout.contains("1/3"), "{}", r.stdout);

    // maxRedrives 1: every entry is poison; a bulk redrive leaves them parked.
    let r = cli(url, &["dlq", "configure", QUEUE, "--max-redrives", "1"]).ok();
    assert!(r.stdout.contains(&format!("queue {QUEUE}: maxRedrives 1 (depth 3, 3 poison)")), "{}", r.stdout);
    let r = cli(url, &["dlq", "show", QUEUE, "--poison"]).ok();
    assert!(r.stdout.contains("1/1 poison"), "{}", r.stdout);
    let v = cli(url, &["dlq", "show", QUEUE, "--not-poison", "--output", "json"]).ok().json();
    assert_eq!(v["count"], 0);
    let r = cli(url, &["dlq", "redrive", QUEUE]).ok();
    assert!(r.stdout.contains("redriven 0, skipped 0, parked 3"), "{}", r.stdout);
    assert!(r.stdout.contains("--entry ID --force"), "{}", r.stdout);
    let r = cli(url, &["dlq", "redrive", QUEUE, "--dry-run", "--entry", first]).ok();
    assert!(r.stdout.contains("1 skipped") && r.stdout.contains("poison"), "{}", r.stdout);

    // With the flag, a forced redrive of one poison entry resolves it.
    std::fs::write(&flag, "").unwrap();
    let r = cli(url, &["dlq", "redrive", QUEUE, "--entry", first, "--force"]).ok();
    assert!(r.stdout.contains("redriven 1, skipped 0"), "{}", r.stdout);
    eventually("the forced entry resolved", || {
        let v = cli(url, &["dlq", "get", first, "--output", "json"]).ok().json();
        (v["state"] == "RESOLVED").then_some(())
    });

    // Back to 3 redrives: a prefix (high-level) redrive with new executions resolves the rest.
    cli(url, &["dlq", "configure", QUEUE, "--max-redrives", "3"]).ok();
    let v = cli(url, &["dlq", "redrive", "--prefix", "dlq-", "--mode", "new-execution", "--output", "json"]).ok().json();
    assert_eq!((v["status"].as_str(), v["summary"]["redriven"].as_u64()), (Some("SUCCEEDED"), Some(2)), "{v}");
    let run_id = v["runId"].as_str().unwrap().to_string();
    eventually("every entry resolved", || {
        let all = entries(url, "all");
        (all.len() == 3 && all.iter().all(|e| e["state"] == "RESOLVED")).then_some(())
    });
    let r = cli(url, &["dlq", "show", QUEUE, "--state", "all"]).ok();
    assert!(r.stdout.contains("RESOLVED") && r.stdout.contains("3 matching entries in dlq-orders (any state)"), "{}", r.stdout);
    let r = cli(url, &["dlq", "list"]).ok();
    let row: Vec<&str> = r.stdout.lines().find(|l| l.starts_with(QUEUE)).unwrap().split_whitespace().collect();
    assert_eq!((row[1], row[4]), ("0", "-"), "{}", r.stdout);

    // Recorded runs.
    let r = cli(url, &["dlq", "runs"]).ok();
    assert!(r.stdout.starts_with("RUN"), "{}", r.stdout);
    assert_eq!(r.stdout.lines().count(), 1 + 4, "four runs recorded (dry runs are not):\n{}", r.stdout);
    assert!(r.stdout.lines().nth(1).unwrap().starts_with(&run_id), "newest first:\n{}", r.stdout);
    let r = cli(url, &["dlq", "run", &run_id]).ok();
    assert!(r.stdout.contains("status:   SUCCEEDED"), "{}", r.stdout);
    assert!(r.stdout.contains("queues under prefix dlq-") && r.stdout.contains("mode new-execution"), "{}", r.stdout);
    assert!(r.stdout.contains("redriven 2, skipped 0, parked 0"), "{}", r.stdout);
    assert_eq!(cli(url, &["dlq", "runs", "--schedule", "retry-sweeper", "--output", "json"]).ok().json()["runs"], Value::Array(vec![]));
    cli(url, &["dlq", "run", "no-such-run"]).code(2);

    // Schedules from the config file.
    let r = cli(url, &["dlq", "schedules"]).ok();
    let row = r.stdout.lines().find(|l| l.starts_with("retry-sweeper")).unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(row.contains("1h00m") && row.contains("sweep-") && row.contains("never") && row.contains("type=Step.THROTTLING"), "{row}");

    // Purge: refused without --yes, then done.
    std::fs::remove_file(&flag).unwrap();
    for _ in 0..2 {
        cli(url, &["execution", "start", "orders"]).ok();
    }
    eventually("2 new entries", || (entries(url, "queued").len() == 2).then_some(()));
    let r = cli(url, &["dlq", "purge", QUEUE]).code(2);
    assert!(r.stdout.contains(&format!("would purge 2 entries from {QUEUE}")), "{}", r.stdout);
    assert!(r.stderr.contains("--yes"), "{}", r.stderr);
    assert_eq!(entries(url, "queued").len(), 2);
    let r = cli(url, &["dlq", "purge", QUEUE, "--filter", "source=other", "--yes"]).ok();
    assert!(r.stdout.contains(&format!("purged 0 entries from {QUEUE}")), "{}", r.stdout);
    let r = cli(url, &["dlq", "purge", QUEUE, "--yes"]).ok();
    assert!(r.stdout.contains(&format!("purged 2 entries from {QUEUE}")), "{}", r.stdout);
    assert!(entries(url, "queued").is_empty());
    assert_eq!(entries(url, "resolved").len(), 3, "resolved entries are kept");

    // Server errors keep the client conventions: an unknown queue is a 404, exit 2.
    let r = cli(url, &["dlq", "show", "no-such-queue"]).code(2);
    assert!(r.stderr.contains("error: DeadLetterQueueNotFoundException"), "{}", r.stderr);
}

#[test]
fn bad_options_are_refused_before_any_request() {
    // Nothing listens on port 9: an attempted request would exit 3, not 2.
    let url = "http://127.0.0.1:9";
    let cases: &[(&[&str], &[&str])] = &[
        (&["dlq", "show", "q", "--filter", "colour=red"], &["--filter", "unknown filter key \"colour\"", "type", "source"]),
        (&["dlq", "show", "q", "--filter", "type"], &["--filter", "KEY=VALUE"]),
        (&["dlq", "redrive", "q", "--filter", "type=A", "--filter", "type=B"], &["--filter type is given twice"]),
        (&["dlq", "purge", "q", "--filter", "source=a", "--filter", "source=b", "--yes"], &["given twice"]),
        (&["dlq", "redrive", "q", "--rate", "fast"], &["--rate", "not a rate", "N/s", "unlimited"]),
        (&["dlq", "redrive", "q", "--rate", "0/s"], &["--rate", "more than 0"]),
        (&["dlq", "redrive", "q", "--older-than", "10x"], &["--older-than", "not a duration"]),
        (&["dlq", "show", "q", "--older-than", "soon"], &["--older-than", "not a duration"]),
        (&["dlq", "redrive", "q", "--mode", "sideways"], &["--mode", "retry-stage", "new-execution"]),
        (&["dlq", "redrive"], &["QUEUE", "--prefix"]),
        (&["dlq", "redrive", "q", "--prefix", "p"], &["--prefix", "cannot be used with"]),
        (&["dlq", "redrive", "q", "--force"], &["--entry"]),
        (&["dlq", "redrive", "q", "--entry", "e", "--max", "3"], &["--entry", "--max"]),
        (&["dlq", "show", "q", "--poison", "--not-poison"], &["--poison", "--not-poison"]),
        (&["dlq", "show", "q", "--state", "lost"], &["--state", "queued", "redriven", "resolved", "all"]),
        (&["dlq", "configure", "q", "--max-redrives", "0"], &["--max-redrives", "1..=1000"]),
    ];
    for (args, needles) in cases {
        let r = cli(url, args);
        assert_eq!(r.code, 2, "{args:?}\nstdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
        for n in *needles {
            assert!(r.stderr.contains(n), "{args:?}: {n:?} not in\n{}", r.stderr);
        }
    }
    // Help explains defaults and loop protection.
    let r = cli(url, &["dlq", "redrive", "--help"]).ok();
    for n in ["100/s", "retry-stage", "new-execution", "poison", "--force", "maxRedrives", "3 per queue"] {
        assert!(r.stdout.contains(n), "{n:?} not in redrive --help:\n{}", r.stdout);
    }
}

#[test]
fn a_bad_config_file_stops_the_server_with_every_problem() {
    let sb = Sandbox::new();
    let bad = sb.write(
        "bad.yaml",
        "redriveSchedules:\n  - name: sweeper\n    every: soon\n    queuePrefix: retry-\n    mode: sideways\n    colour: red\n  - name: sweeper\n    every: 1m\n",
    );
    let out = bin()
        .args(["server", "--listen", "127.0.0.1:0", "--db"])
        .arg(sb.db())
        .arg("--config")
        .arg(&bad)
        .env_remove("REDRIVE_CONFIG")
        .output()
        .expect("spawn");
    let r = finish(out);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let file = bad.display().to_string();
    for n in [
        format!("{file}:3: $.redriveSchedules[0].every: \"soon\" is not a duration"),
        format!(
            "{file}:5: $.redriveSchedules[0].mode: not a redrive mode (got \"sideways\"; allowed: retry-stage (default), new-execution)"
        ),
        format!("{file}:6: $.redriveSchedules[0].colour: unknown key colour (allowed: name, every, queuePrefix"),
        format!("{file}:7: $.redriveSchedules[1].name: a schedule named sweeper is already defined on line 2"),
        "$.redriveSchedules[1].queuePrefix: required field queuePrefix is missing".to_string(),
    ] {
        assert!(r.stderr.contains(&n), "{n:?} not in\n{}", r.stderr);
    }
    assert!(!r.stderr.contains("listening"), "{}", r.stderr);
    assert!(!sb.db().exists(), "nothing was opened");

    // REDRIVE_CONFIG names the file too; a missing file is reported by name.
    let out = bin()
        .args(["server", "--listen", "127.0.0.1:0", "--db"])
        .arg(sb.db())
        .env("REDRIVE_CONFIG", sb.path("missing.yaml"))
        .output()
        .expect("spawn");
    let r = finish(out);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("missing.yaml"), "{}", r.stderr);
}
