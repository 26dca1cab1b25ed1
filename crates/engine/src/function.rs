//! Durable functions inside the engine: the untyped runtime under the SDK.
//!
//! A function is invoked on a task; every step it reaches is matched against its
//! checkpointed history ([`redrive_core::function::replay`]). Completed steps
//! answer from the history without a round trip. Anything that changes the
//! history (an attempt starting, succeeding, failing; a sleep) is an event sent to
//! the driver loop, which commits it (group commit, like pipeline transitions) and
//! only then answers. When the history says "wait" (a retry's backoff, a sleep),
//! the invocation *suspends*: the task drops the function's future, so nothing is
//! held while waiting; the durable timer re-invokes the function, which replays.
//!
//! A replay that calls another step than the history has at a position, or that
//! returns before reaching every recorded step, fails the execution with
//! `Function.NON_DETERMINISTIC` ([`redrive_core::function::NonDeterminism`]).
//! Every attempt of a step gets its [`StepContext`], whose [`StepKey`] is the
//! step's idempotency key.

use redrive_core::exception::{ExceptionType, Failure};
use redrive_core::function::{FUNCTION_ERROR, FnEvent, FunctionState, Replay, StepKey, StepKind, StepState, StepStatus, replay, returned};
use redrive_core::policy::RetryPolicy;
use redrive_core::time::Timestamp;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

pub type FnFuture = Pin<Box<dyn Future<Output = Result<serde_json::Value, Failure>> + Send>>;

/// A registered function, untyped: JSON in, JSON (or a failure) out.
pub trait DurableFunction: Send + Sync + 'static {
    fn invoke(&self, ctx: FnContext, input_json: String) -> FnFuture;
}

impl<F> DurableFunction for F
where
    F: Fn(FnContext, String) -> FnFuture + Send + Sync + 'static,
{
    fn invoke(&self, ctx: FnContext, input_json: String) -> FnFuture {
        self(ctx, input_json)
    }
}

/// What happens to an attempt that was running when the process died.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Semantics {
    /// It counts as failed with `Step.SERVICE_FAULT` and the policy decides on a
    /// retry (the built-in default retries it): the step runs at least once.
    #[default]
    AtLeastOnce,
    /// It counts as failed with `Step.SERVICE_FAULT` and is never run again: the
    /// error goes back to the function.
    AtMostOnce,
}

/// A conditional retry: a failure this returns false for is not retried.
pub type RetryPredicate = Arc<dyn Fn(&Failure) -> bool + Send + Sync>;

/// How one step retries.
#[derive(Clone, Default)]
pub struct StepRetry {
    pub policies: Vec<RetryPolicy>,
    pub predicate: Option<RetryPredicate>,
    pub semantics: Semantics,
}

/// The message an attempt interrupted by a crash is recorded with.
pub const INTERRUPTED_MESSAGE: &str = "the process stopped while this step attempt was running";

/// What one attempt of a step gets: the step's [`StepKey`] (its idempotency
/// key), its name and the attempt number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepContext {
    key: StepKey,
    name: String,
    attempt: u32,
}

impl StepContext {
    /// The step's idempotency key, `"{execution_id}/{position}"`: the same on every
    /// attempt, retry and replay of this step (also after a crash or a redrive),
    /// different for another step of the same name. Hand it to services that
    /// deduplicate requests.
    pub fn key(&self) -> &StepKey {
        &self.key
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// This attempt's number, from 1 (it grows with retries: not a key).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// The context one invocation of a function runs with.
#[derive(Clone)]
pub struct FnContext {
    pub(crate) execution_id: String,
    pub(crate) inner: Arc<Mutex<Inner>>,
    /// To the driver loop: history changes, each answered once durable.
    pub(crate) calls: tokio::sync::mpsc::Sender<FnCall>,
    pub(crate) clock: Arc<dyn crate::clock::Clock>,
}

/// A history change of one execution, sent by its running invocation to the
/// driver loop and answered (with the step's new state) once durable.
pub(crate) struct FnCall {
    pub(crate) execution_id: String,
    pub(crate) event: FnEvent,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<Option<StepState>, crate::error::EngineError>>,
}

pub(crate) struct Inner {
    pub(crate) history: FunctionState,
    pub(crate) next_index: usize,
    pub(crate) suspend: Option<tokio::sync::oneshot::Sender<Stop>>,
}

/// Why an invocation stops before its function returns.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Waiting on a timer (or the engine is stopping): drop the future.
    Suspend,
    /// Non-deterministic replay: fail the execution with this failure.
    Fail(Failure),
}

impl FnContext {
    pub fn execution_id(&self) -> &str {
        &self.execution_id
    }

    /// The caller's name for this execution (its idempotency key).
    pub fn execution_name(&self) -> String {
        self.inner.lock().expect("context lock").history.name.clone()
    }

    /// Stops this invocation: its future is dropped by the task running it.
    async fn stop<T>(&self, why: Stop) -> T {
        if let Some(tx) = self.inner.lock().expect("context lock").suspend.take() {
            let _ = tx.send(why);
        }
        // Never resolves: the task running this invocation drops it.
        std::future::pending::<T>().await
    }

    async fn send(&self, event: FnEvent) -> Option<StepState> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let sent = self.calls.send(FnCall { execution_id: self.execution_id.clone(), event, reply }).await;
        match (sent, rx.await) {
            (Ok(()), Ok(Ok(step))) => step,
            // The engine is stopping or refused: this invocation ends here; a
            // restart replays it from the history.
            _ => self.stop(Stop::Suspend).await,
        }
    }

    fn store_step(&self, index: usize, step: Option<StepState>) {
        if let Some(s) = step {
            let mut inner = self.inner.lock().expect("context lock");
            if index < inner.history.steps.len() {
                inner.history.steps[index] = s;
            } else {
                inner.history.steps.push(s);
            }
        }
    }

    /// The position of the next step or sleep call of this invocation.
    fn next_call(&self) -> usize {
        let mut inner = self.inner.lock().expect("context lock");
        inner.next_index += 1;
        inner.next_index - 1
    }

    fn replay(&self, index: usize, name: &str, kind: StepKind) -> (Replay, Timestamp) {
        let now = self.clock.now();
        (replay(&self.inner.lock().expect("context lock").history, index, name, kind, now), now)
    }

    /// Runs a checkpointed step: see the module docs. [`FnContext::step_with`]
    /// gives the closure the step's [`StepContext`] (its idempotency key).
    pub async fn step<F, Fut>(&self, name: &str, retry: &StepRetry, mut run: F) -> Result<serde_json::Value, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<serde_json::Value, Failure>>,
    {
        self.step_with(name, retry, |_| run()).await
    }

    /// Runs a checkpointed step; each attempt calls `run` with the step's
    /// [`StepContext`].
    pub async fn step_with<F, Fut>(&self, name: &str, retry: &StepRetry, mut run: F) -> Result<serde_json::Value, Failure>
    where
        F: FnMut(StepContext) -> Fut,
        Fut: Future<Output = Result<serde_json::Value, Failure>>,
    {
        let index = self.next_call();
        loop {
            let verdict = self.replay(index, name, StepKind::Step).0;
            match verdict {
                Replay::Succeeded(v) => return Ok(v),
                Replay::Failed(f) => return Err(f),
                Replay::Mismatch(nd) => self.stop(Stop::Fail(nd.failure())).await,
                Replay::Waiting(_) => self.stop(Stop::Suspend).await,
                Replay::Interrupted => {
                    let failure = Failure::new(ExceptionType::ServiceFault, INTERRUPTED_MESSAGE);
                    let retryable = retry.semantics == Semantics::AtLeastOnce && retry.predicate.as_ref().is_none_or(|p| p(&failure));
                    let step = self.send(FnEvent::StepFailed { index, failure, policies: retry.policies.clone(), retryable }).await;
                    self.attempts(index, retry, step, &mut run).await;
                }
                Replay::New | Replay::Ready => {
                    let begin = FnEvent::StepBegin { index, name: name.to_string(), policy_slots: retry.policies.len() };
                    let step = self.send(begin).await;
                    self.attempts(index, retry, step, &mut run).await;
                }
            }
        }
    }

    /// Runs attempts while the durable state says one is running (a retry due at
    /// once starts in the same commit as the failure), then keeps the step's state.
    async fn attempts<F, Fut>(&self, index: usize, retry: &StepRetry, mut step: Option<StepState>, run: &mut F)
    where
        F: FnMut(StepContext) -> Fut,
        Fut: Future<Output = Result<serde_json::Value, Failure>>,
    {
        while let Some(s) = step.as_ref().filter(|s| s.status == StepStatus::Running) {
            let attempt = StepContext { key: StepKey::new(&self.execution_id, index), name: s.name.clone(), attempt: s.attempt };
            self.store_step(index, step.clone());
            // Inside the invocation's execution span: the step and its attempt.
            let span = tracing::info_span!("attempt", step = %s.name, attempt = s.attempt);
            let event = match tracing::Instrument::instrument(run(attempt), span).await {
                Ok(result) => FnEvent::StepSucceeded { index, result },
                Err(failure) => {
                    let retryable = retry.predicate.as_ref().is_none_or(|p| p(&failure));
                    FnEvent::StepFailed { index, failure, policies: retry.policies.clone(), retryable }
                }
            };
            step = self.send(event).await;
        }
        self.store_step(index, step);
    }

    /// A durable sleep: the invocation suspends until `duration` has passed.
    pub async fn sleep(&self, name: &str, duration: std::time::Duration) {
        let index = self.next_call();
        loop {
            let (verdict, now) = self.replay(index, name, StepKind::Sleep);
            match verdict {
                Replay::Succeeded(_) => return,
                Replay::Mismatch(nd) => self.stop(Stop::Fail(nd.failure())).await,
                Replay::Waiting(_) => self.stop(Stop::Suspend).await,
                Replay::New => {
                    let due_at = now.plus_ms(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
                    let step = self.send(FnEvent::SleepBegin { index, name: name.to_string(), due_at }).await;
                    self.store_step(index, step);
                }
                other => unreachable!("a sleep is never {other:?}"),
            }
        }
    }

    /// What the function's return means against the history: `result`, or the
    /// non-determinism of returning before a recorded step ([`returned`]).
    fn returned(&self, result: Result<serde_json::Value, Failure>) -> Result<serde_json::Value, Failure> {
        let inner = self.inner.lock().expect("context lock");
        returned(&inner.history, inner.next_index, &result).map_err(|nd| nd.failure())?;
        result
    }
}

/// The failure recorded when a function returns an error outside any step.
pub fn function_error(message: impl Into<String>) -> Failure {
    Failure::new(ExceptionType::Custom(FUNCTION_ERROR.into()), message)
}

/// Runs one invocation to its end, a suspension or a failure; returns what the
/// driver should record (`None`: suspended, nothing to record).
pub(crate) async fn invoke(
    function: Arc<dyn DurableFunction>,
    ctx: FnContext,
    input_json: String,
) -> Option<Result<serde_json::Value, Failure>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    ctx.inner.lock().expect("context lock").suspend = Some(tx);
    let probe = ctx.clone();
    let fut = function.invoke(ctx, input_json);
    tokio::select! {
        result = fut => Some(probe.returned(result)),
        stop = rx => match stop {
            Ok(Stop::Fail(f)) => Some(Err(f)),
            Ok(Stop::Suspend) | Err(_) => None,
        },
    }
}
