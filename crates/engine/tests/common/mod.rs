//! Shared by the engine's integration tests: virtual time and waiting for
//! conditions. Time is logic here, so it is a [`ManualClock`] the test moves;
//! the only real-time waits are polls of a condition, bounded by [`DEADLINE`].
#![allow(dead_code)] // each test file uses its own subset

use redrive_core::time::Timestamp;
use redrive_engine::ManualClock;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long a test waits (real time) for something the engine must do without
/// the clock moving: a commit, a dispatch, a fired timer. Generous: a loaded
/// 2-core machine is slow, and a correct engine never gets near it.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A virtual clock starting at a fixed, realistic instant.
pub fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::from_unix_ms(1_767_225_600_000))) // 2026-01-01T00:00:00Z
}

/// Polls `cond` until it holds; fails the test after [`DEADLINE`].
pub async fn until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Awaits `fut`, failing the test after [`DEADLINE`] (a wait the engine must
/// answer without the clock moving).
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Checks that `cond` stays false for a short real-time window: the negative
/// half of "not before its time" (the engine had the chance and did not act).
pub async fn stays_false<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + Duration::from_millis(200);
    while tokio::time::Instant::now() < end {
        assert!(!cond().await, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Moves `clock` forward `step_ms` at a time, letting the engine run between
/// steps, until `cond` holds; fails the test after [`DEADLINE`] of real time.
/// For waits whose exact virtual length does not matter (a sleeping noop
/// that may start a little after it was dispatched).
pub async fn advance_until<F, Fut>(clock: &ManualClock, step_ms: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        clock.advance(step_ms);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
