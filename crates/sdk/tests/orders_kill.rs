//! The order example under `kill -9`: the test binary re-runs itself as the
//! workflow process, kills it at several moments, restarts it, and counts charges.

mod support;
#[path = "../examples/orders/workflow.rs"]
#[allow(dead_code)]
mod workflow;

use redrive_sdk::Engine;
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};
use workflow::{Gateway, Order, Receipt};

/// Whether a state document (and the gateway's files) shows a phase reached.
type Phase<'a> = dyn Fn(&serde_json::Value) -> bool + 'a;

const CHILD_ENV: &str = "REDRIVE_SDK_TEST_CHILD_DB";

/// Not a test on its own: the body of the child process (runs only with CHILD_ENV).
#[test]
fn child_process_workflow() {
    let Ok(db) = std::env::var(CHILD_ENV) else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = Path::new(&db).parent().unwrap().to_path_buf();
        let gateway = Arc::new(Gateway { dir: dir.clone() });
        let engine = Engine::open(&format!("sqlite://{db}")).await.unwrap();
        let g = gateway.clone();
        engine.register("process-order", move |ctx, order: Order| workflow::process_order(ctx, order, g.clone()));
        let order = Order { id: "order-7".into(), cents: 990 };
        let h = engine.start("process-order", "order-7", &order).await.unwrap();
        let receipt: Receipt = h.result().await.unwrap();
        std::fs::write(dir.join("receipt.json"), serde_json::to_string(&receipt).unwrap()).unwrap();
        engine.shutdown().await;
    });
}

fn spawn_child(db: &Path) -> Child {
    support::spawn_child("child_process_workflow", CHILD_ENV, db)
}

#[test]
fn kill_9_at_several_moments_never_repeats_a_completed_step_or_charges_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("orders.db");
    // Kill in each phase of the workflow, each one seen before the kill: in the
    // first throttle backoff, in the second, right after the gateway charged,
    // in the settle sleep. Each restart replays from the checkpoints.
    let gateway = Gateway { dir: dir.path().to_path_buf() };
    let phases: [(&str, &Phase); 4] = [
        ("the first throttle backoff", &|st| support::step(st, "charge-card").is_some_and(|c| c["attempt"] == 1 && c["dueAt"].is_number())),
        ("the second throttle backoff", &|st| {
            support::step(st, "charge-card").is_some_and(|c| c["attempt"] == 2 && c["dueAt"].is_number())
        }),
        ("after the gateway charged", &|_| gateway.charges_for("order-7") == 1),
        ("the settle sleep", &|st| {
            support::step(st, "settle").is_some_and(|s| s["dueAt"].is_number())
                && support::step(st, "ship").is_none()
                && st["status"] == "Running"
        }),
    ];
    for (phase, reached) in phases {
        let mut child = spawn_child(&db);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if support::live_state(&db).is_some_and(|st| reached(&st)) {
                break;
            }
            assert!(child.try_wait().unwrap().is_none(), "the workflow ended before {phase}");
            assert!(Instant::now() < deadline, "the workflow never reached {phase}");
            std::thread::sleep(Duration::from_millis(5));
        }
        support::kill9(&mut child);
        assert!(!dir.path().join("receipt.json").exists(), "killed in {phase}, before the end");
    }
    let mut child = spawn_child(&db);
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the workflow did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let receipt: Receipt = serde_json::from_str(&std::fs::read_to_string(dir.path().join("receipt.json")).unwrap()).unwrap();
    assert_eq!(receipt.charge_id, "ch_order-7_990");
    let gateway = Gateway { dir: dir.path().to_path_buf() };
    assert_eq!(gateway.charges_for("order-7"), 1, "charged exactly once");
    // The history: every step completed, in order, in one execution.
    let state = stored_state(&db);
    // Every charge request, from whichever process, carried the step's one key:
    // the execution and the step's position.
    let keys = gateway.request_keys("order-7");
    assert!(keys.len() >= 3, "two throttled requests and the charge: {keys:?}");
    let key = format!("{}/1", state["executionId"].as_str().unwrap());
    assert!(keys.iter().all(|k| *k == key), "every attempt of charge-card used {key}: {keys:?}");
    assert_eq!(state["status"], "Succeeded");
    let names: Vec<&str> = state["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["reserve-stock", "charge-card", "settle", "ship"]);
}

/// The execution's state document, straight from the store file.
fn stored_state(db: &Path) -> serde_json::Value {
    use redrive_store::Store;
    let store = redrive_store::SqliteStore::open(db, redrive_store::SqliteOptions::default()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rows = rt
        .block_on(store.list_executions(redrive_store::ExecutionFilter {
            target: Some(redrive_store::TargetName::function("process-order")),
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(rows.len(), 1, "one execution for the order name, however many restarts");
    serde_json::from_str(&rows[0].state_json).unwrap()
}
