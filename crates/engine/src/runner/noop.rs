//! Noop actions: scripted outcomes for tests, demos and policy rehearsals.
//!
//! Attempt `n` (1-based within its series) sleeps `sleepMs`, then fails with
//! `failWith` ("noop: scripted failure n of failFirst", retry hint
//! `retryAfterSeconds`) while `n <= failFirst`, and succeeds with output
//! `{"attempt": n}` after that. A sleep longer than the attempt's
//! `timeoutSeconds` ends in `Step.TIMEOUT` like any other action.

use super::{AttemptContext, AttemptOutcome, fmt_secs, seconds_to_ms};
use redrive_core::definition::NoopSpec;
use redrive_core::exception::{ExceptionType, Failure};
use std::time::Duration;

/// Runs one attempt of a noop action (sleeping first when `sleep_ms > 0`).
/// The sleep and the timeout run on the engine's clock (`ctx.clock`), from
/// the moment the attempt runs.
pub async fn run_noop(spec: &NoopSpec, ctx: &AttemptContext) -> AttemptOutcome {
    if spec.sleep_ms > 0 {
        let sleep = Duration::from_millis(spec.sleep_ms);
        let from = ctx.clock.now();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        match ctx.timeout {
            Some(t) if t < sleep => {
                ctx.clock.sleep_until(from.plus_ms(ms(t))).await;
                return AttemptOutcome::Failed(Failure::new(ExceptionType::Timeout, format!("timed out after {}", fmt_secs(t))));
            }
            _ => ctx.clock.sleep_until(from.plus_ms(ms(sleep))).await,
        }
    }
    noop_outcome(spec, ctx.attempt)
}

/// The outcome of attempt `attempt` without sleeping: what [`run_noop`] returns
/// after its sleep. Lets the engine skip spawning a task when `sleep_ms == 0`.
pub fn noop_outcome(spec: &NoopSpec, attempt: u32) -> AttemptOutcome {
    if attempt <= spec.fail_first {
        AttemptOutcome::Failed(
            Failure::new(spec.fail_with.clone(), format!("noop: scripted failure {attempt} of {}", spec.fail_first))
                .with_retry_after_ms(spec.retry_after_seconds.and_then(seconds_to_ms)),
        )
    } else {
        AttemptOutcome::Succeeded { output: Some(serde_json::json!({ "attempt": attempt })) }
    }
}
