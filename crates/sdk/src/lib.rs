//! Durable functions for redrive: async Rust functions whose steps are
//! checkpointed, whose retries suspend instead of holding a task, and which
//! replay after a crash without redoing completed work.
//!
//! ```
//! use redrive_sdk::{Context, Engine, Error, StepError, policy};
//! use serde::{Deserialize, Serialize};
//! use std::sync::atomic::{AtomicU32, Ordering};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Order { id: String, cents: u64 }
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Receipt { charge_id: String }
//!
//! static GATEWAY_CALLS: AtomicU32 = AtomicU32::new(0);
//!
//! async fn process_order(ctx: Context, order: Order) -> Result<Receipt, Error> {
//!     // Throttling is retried (after 50 ms, then 100 ms); meanwhile the execution is suspended.
//!     let throttling = policy(["Step.THROTTLING"]).interval_seconds(0.05).max_attempts(5).build()?;
//!     let charge_id: String = ctx
//!         .step("charge", throttling, |_| async {
//!             if GATEWAY_CALLS.fetch_add(1, Ordering::SeqCst) < 2 {
//!                 return Err(StepError::throttled("gateway busy"));
//!             }
//!             Ok(format!("ch_{}_{}", order.id, order.cents))
//!         })
//!         .await?;
//!     ctx.sleep("cool-down", std::time::Duration::from_millis(20)).await; // a durable wait
//!     Ok(Receipt { charge_id })
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let url = format!("sqlite://{}", dir.path().join("orders.db").display());
//! let engine = Engine::open(&url).await?;          // e.g. "sqlite://orders.db": embedded, same store as pipelines
//! engine.register("process-order", process_order);
//! let order = Order { id: "order-123".into(), cents: 4200 };
//! let handle = engine.start("process-order", "order-123", &order).await?; // the name makes the start idempotent
//! let receipt: Receipt = handle.result().await?;
//! assert_eq!(receipt.charge_id, "ch_order-123_4200");
//! assert_eq!(GATEWAY_CALLS.load(Ordering::SeqCst), 3); // throttled twice, then charged once
//! # engine.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # What is durable
//! - `ctx.step(name, policy, f)` runs `f`; its successful result is checkpointed
//!   (serde JSON) before the function goes on. Replays return it without running `f`.
//! - A failed attempt is decided by the step's policy — the same [`RetryPolicy`] and
//!   exception types as pipeline actions, plus an optional predicate
//!   ([`StepPolicy::retry_if`]); [`StepPolicy::none`] never retries. When a retry is
//!   due later, the execution **suspends**: the function's future is dropped and a
//!   durable timer re-invokes it, also after a restart. Retries exhausted: the step
//!   returns its [`StepError`] to the function, which may handle it.
//! - `ctx.sleep(name, duration)` is a durable wait (the execution suspends).
//! - An error returned outside any step fails the execution; it is not retried.
//! - After a crash the function is invoked again from the top and replayed: a step
//!   whose attempt was running counts as failed with `Step.SERVICE_FAULT` and is
//!   retried under its policy (at-least-once, the default), or with
//!   [`StepPolicy::at_most_once`] is returned as failed without running again.
//! - The replay must call the same steps in the same order, and must not return
//!   before reaching every step the history recorded; otherwise the execution fails
//!   (for good, not retried) with exception type `Function.NON_DETERMINISTIC`,
//!   naming both sides: the recorded step and the step called, or the return.
//!   Await steps one after another (not concurrently), and keep anything that varies
//!   between runs (time, randomness, I/O) inside steps.
//! - Each attempt of a step gets a [`StepContext`]; its [`StepContext::key`] is
//!   **the idempotency key to hand to external services**: `"{execution_id}/{position}"`
//!   ([`StepKey`]; the position counts the function's step and sleep calls from 0).
//!   It is the same on every attempt, retry and replay of the step — after a crash
//!   or a dead-letter redrive too — and differs between two steps of the same name.
//!   A service that deduplicates by it turns an attempt repeated after a crash into
//!   a no-op. (`execution_id` + step name is *not* unique: names may repeat.)
//! - The execution name is the idempotency key of *starting* it: starting an
//!   existing name with the same input returns the existing execution; with another
//!   input, [`Error::ExecutionAlreadyExists`].

use redrive_core::exception::Failure;
use redrive_core::function::{FunctionState, FunctionStatus};
pub use redrive_engine::function::StepContext;
use redrive_engine::function::{DurableFunction, FnContext, FnFuture, Semantics, StepRetry, function_error};
use redrive_engine::{Clock, Driver, DriverConfig, EngineError, EngineHandle, SystemClock};
use redrive_store::{AnyStore, MemberKind, PostgresOptions, Store, StoreLocation, StoreOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::Arc;

pub use redrive_core::exception::ExceptionType;
pub use redrive_core::function::StepKey;
pub use redrive_core::policy::{RetryPolicy, RetryPolicySpec};
mod cluster;
mod serve;

/// Everything that can go wrong, for functions and for their callers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A step failed for good (`?` on a step passes it on; the execution then fails
    /// with the step's exception type).
    #[error("step failed: {0}")]
    Step(#[from] StepError),
    /// An error of the function's own, outside any step: fails the execution.
    #[error("{0}")]
    Function(String),
    /// The execution name is taken by an execution with a different input.
    #[error("execution {name:?} of function {function} already exists (id {execution_id}) with a different input")]
    ExecutionAlreadyExists { function: String, name: String, execution_id: String },
    /// [`ExecutionHandle::result`] of an execution that failed.
    #[error("the execution failed: {exception_type}: {message}")]
    ExecutionFailed { exception_type: String, message: String },
    #[error("no durable function named {0:?} is registered")]
    NotRegistered(String),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("{0}")]
    Engine(String),
}

impl Error {
    /// An error of the function's own (outside any step).
    pub fn msg(message: impl std::fmt::Display) -> Error {
        Error::Function(message.to_string())
    }

    fn into_failure(self) -> Failure {
        match self {
            Error::Step(e) => Failure::new(e.exception_type, e.message),
            Error::ExecutionFailed { exception_type, message } => {
                Failure::new(ExceptionType::parse(&exception_type).unwrap_or(ExceptionType::ActionFailed), message)
            }
            other => function_error(other.to_string()),
        }
    }
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::ExecutionAlreadyExists { function, name, execution_id } => {
                Error::ExecutionAlreadyExists { function, name, execution_id }
            }
            EngineError::FunctionNotRegistered(n) => Error::NotRegistered(n),
            other => Error::Engine(other.to_string()),
        }
    }
}

impl From<redrive_store::StoreError> for Error {
    fn from(e: redrive_store::StoreError) -> Self {
        Error::Engine(e.to_string())
    }
}

impl From<String> for Error {
    /// Policy construction errors and other messages.
    fn from(m: String) -> Self {
        Error::Function(m)
    }
}

/// Why one attempt of a step failed: an exception type (what policies match on)
/// and a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{exception_type}: {message}")]
pub struct StepError {
    pub exception_type: ExceptionType,
    pub message: String,
}

impl StepError {
    pub fn new(exception_type: ExceptionType, message: impl Into<String>) -> StepError {
        StepError { exception_type, message: message.into() }
    }

    /// `Step.THROTTLING`: slow down and retry.
    pub fn throttled(message: impl Into<String>) -> StepError {
        StepError::new(ExceptionType::Throttling, message)
    }

    /// `Action.FAILED`: a failure no policy retries unless it names it.
    pub fn failed(message: impl Into<String>) -> StepError {
        StepError::new(ExceptionType::ActionFailed, message)
    }

    /// A type by name (`Step.SERVICE_FAULT`, `Job.CAPACITY_ERROR`, or your own like
    /// `Payment.DECLINED`); an invalid name becomes `Action.FAILED` with the reason.
    pub fn of(exception_type: &str, message: impl Into<String>) -> StepError {
        match ExceptionType::parse(exception_type) {
            Ok(t) => StepError::new(t, message),
            Err(e) => StepError::failed(format!("{} (invalid exception type {exception_type:?}: {e})", message.into())),
        }
    }

    fn from_failure(f: Failure) -> StepError {
        StepError { exception_type: f.exception_type, message: f.message }
    }
}

/// How a step retries: retry policies (first match wins, as for pipeline
/// actions), an optional predicate, and what an interrupted attempt means.
#[derive(Clone, Default)]
pub struct StepPolicy {
    retry: StepRetry,
}

impl StepPolicy {
    /// These policies; without a match, `Step.SERVICE_FAULT` and `Step.THROTTLING`
    /// still get the built-in default.
    pub fn new(policies: impl IntoIterator<Item = RetryPolicy>) -> StepPolicy {
        StepPolicy { retry: StepRetry { policies: policies.into_iter().collect(), ..StepRetry::default() } }
    }

    /// Never retry (not even service faults).
    pub fn none() -> StepPolicy {
        StepPolicy::new([RetryPolicy::none()])
    }

    /// Conditional retry: a failure `pred` returns false for is not retried.
    pub fn retry_if(mut self, pred: impl Fn(&StepError) -> bool + Send + Sync + 'static) -> StepPolicy {
        self.retry.predicate = Some(Arc::new(move |f: &Failure| pred(&StepError::from_failure(f.clone()))));
        self
    }

    /// An attempt interrupted by a crash counts as failed and never runs again.
    pub fn at_most_once(mut self) -> StepPolicy {
        self.retry.semantics = Semantics::AtMostOnce;
        self
    }
}

impl From<RetryPolicy> for StepPolicy {
    fn from(p: RetryPolicy) -> StepPolicy {
        StepPolicy::new([p])
    }
}

impl From<Vec<RetryPolicy>> for StepPolicy {
    fn from(p: Vec<RetryPolicy>) -> StepPolicy {
        StepPolicy::new(p)
    }
}

/// Starts building a [`RetryPolicy`] for these exception types (`"*"` matches
/// every type), validated like a pipeline's.
pub fn policy<I: IntoIterator<Item = S>, S: Into<String>>(types: I) -> RetryPolicyBuilder {
    RetryPolicy::builder(types)
}

/// Builds a [`RetryPolicy`] (validated like a pipeline's).
pub struct RetryPolicyBuilder {
    spec: RetryPolicySpec,
}

/// Builder entry point.
pub trait RetryPolicyExt {
    /// A policy for these exception types (`"*"` matches every type).
    fn builder<I: IntoIterator<Item = S>, S: Into<String>>(types: I) -> RetryPolicyBuilder;
}

impl RetryPolicyExt for RetryPolicy {
    fn builder<I: IntoIterator<Item = S>, S: Into<String>>(types: I) -> RetryPolicyBuilder {
        RetryPolicyBuilder { spec: RetryPolicySpec { exception_types: types.into_iter().map(Into::into).collect(), ..Default::default() } }
    }
}

impl RetryPolicyBuilder {
    pub fn interval_seconds(mut self, s: f64) -> Self {
        self.spec.interval_seconds = Some(s);
        self
    }
    pub fn backoff_rate(mut self, r: f64) -> Self {
        self.spec.backoff_rate = Some(r);
        self
    }
    /// Retries (not attempts): 0 never retries.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.spec.max_attempts = Some(f64::from(n));
        self
    }
    pub fn expire_after_min(mut self, m: u32) -> Self {
        self.spec.expire_after_min = Some(f64::from(m));
        self
    }
    /// Every problem with the policy, in one message.
    pub fn build(self) -> Result<RetryPolicy, String> {
        RetryPolicy::new(&self.spec).map_err(|problems| {
            let each: Vec<String> = problems.iter().map(|p| format!("{} (got {}; allowed: {})", p.message, p.value, p.allowed)).collect();
            format!("invalid retry policy: {}", each.join("; "))
        })
    }
}

/// Options of a registered function.
#[derive(Clone, Debug, Default)]
pub struct FunctionOptions {
    dead_letter_queue: Option<String>,
}

impl FunctionOptions {
    /// Where executions that fail for good leave their dead-letter entry.
    pub fn dead_letter_queue(mut self, queue: &str) -> Self {
        self.dead_letter_queue = Some(queue.to_string());
        self
    }
}

/// What a running function gets: steps and sleeps.
pub struct Context {
    inner: FnContext,
}

impl Context {
    /// This execution's id (a UUID) and name (the idempotency key it was started with).
    pub fn execution_id(&self) -> &str {
        self.inner.execution_id()
    }

    pub fn execution_name(&self) -> String {
        self.inner.execution_name()
    }

    /// Runs `f` as a checkpointed step named `name` (unique names are clearest;
    /// the position in the function is what replay matches, with the name checked).
    ///
    /// Each attempt calls `f` with the step's [`StepContext`]:
    /// [`StepContext::key`] is the step's idempotency key,
    /// `"{execution_id}/{position}"`, the same on every attempt, retry and replay
    /// of this step and different for any other step. Hand it to services that
    /// deduplicate (`|_| async { … }` when a step needs none):
    ///
    /// ```
    /// # use redrive_sdk::{Context, Error, StepPolicy};
    /// # async fn pay(ctx: Context, gateway: &Gateway, cents: u64) -> Result<String, Error> {
    /// let charge_id: String = ctx
    ///     .step("charge", StepPolicy::default(), |step| async move { gateway.charge(step.key().as_str(), cents).await })
    ///     .await?;
    /// # Ok(charge_id) }
    /// # struct Gateway;
    /// # impl Gateway { async fn charge(&self, key: &str, _: u64) -> Result<String, redrive_sdk::StepError> { Ok(key.into()) } }
    /// ```
    pub async fn step<T, F, Fut>(&self, name: &str, policy: impl Into<StepPolicy>, mut f: F) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(StepContext) -> Fut,
        Fut: Future<Output = Result<T, StepError>>,
    {
        let policy = policy.into();
        let value = self
            .inner
            .step_with(name, &policy.retry, |step| {
                let fut = f(step);
                async move {
                    match fut.await {
                        Ok(v) => serde_json::to_value(v)
                            .map_err(|e| Failure::new(ExceptionType::ActionFailed, format!("the step's result does not serialize: {e}"))),
                        Err(e) => Err(Failure::new(e.exception_type, e.message)),
                    }
                }
            })
            .await
            .map_err(StepError::from_failure)?;
        serde_json::from_value(value)
            .map_err(|e| StepError::failed(format!("the checkpointed result of step {name:?} does not deserialize into this type: {e}")))
    }

    /// A durable sleep: the execution suspends (no task, no memory) until it is over.
    pub async fn sleep(&self, name: &str, duration: std::time::Duration) {
        self.inner.sleep(name, duration).await
    }
}

/// Where an [`Engine`]'s executions are driven.
#[derive(Clone)]
enum Driving {
    /// SQLite: one engine over the whole store.
    One(EngineHandle),
    /// PostgreSQL: an engine per shard this process holds among the
    /// database's SDK processes.
    Spread(Arc<cluster::Shards>),
}

/// The embedded engine: a store plus the loop (or, on PostgreSQL, the loops
/// of this process's shards) that drives executions.
pub struct Engine {
    /// SQLite: the store; PostgreSQL: the whole database, for reads and
    /// start requests (the shards' stores write).
    store: Arc<AnyStore>,
    driving: Driving,
    /// Time for the engine: the system clock, or a test's (`open_with_clock`).
    clock: Arc<dyn Clock>,
    /// The engine's task (SQLite), or the loop keeping this process's share of the shards.
    join: tokio::sync::Mutex<Option<Joined>>,
    /// Background work of `register` (resuming executions), ended by `shutdown`.
    background: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

enum Joined {
    Engine(tokio::task::JoinHandle<Result<(), EngineError>>),
    Shards(tokio::task::JoinHandle<()>),
}

/// The shortest lease [`OpenOptions::lease`] may set.
pub const MIN_LEASE: std::time::Duration = std::time::Duration::from_secs(1);

/// Options of [`Engine::open_with`].
#[derive(Clone)]
pub struct OpenOptions {
    clock: Arc<dyn Clock>,
    lease: std::time::Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { clock: Arc::new(SystemClock), lease: redrive_store::postgres::DEFAULT_LEASE }
    }
}

impl OpenOptions {
    /// Time for the engine (see [`Engine::open_with_clock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// PostgreSQL: how long a shard's lease lasts without a renewal (default
    /// 10 s; at least 1 s). A process stalled this long has its shards taken
    /// over (its later writes are refused); one that dies has them taken over
    /// within about four heartbeats. The heartbeat is a fifth of the lease, at
    /// most 1 s. A shorter lease takes over sooner from a stalled process, and
    /// more often from one that is merely slow to reach the database.
    /// [`Engine::open_with`] refuses a lease shorter than [`MIN_LEASE`].
    pub fn lease(mut self, lease: std::time::Duration) -> Self {
        self.lease = lease;
        self
    }
}

/// A store URL of [`Engine::open`]: `sqlite://PATH` or a PostgreSQL URL.
fn store_location(url: &str) -> Result<StoreLocation, Error> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(Error::Invalid("the store URL has no path; write sqlite://PATH".into()));
        }
        return Ok(StoreLocation::Sqlite(path.into()));
    }
    match StoreLocation::parse(url) {
        location @ StoreLocation::Postgres(_) => Ok(location),
        StoreLocation::Sqlite(_) => Err(Error::Invalid(format!(
            "{} is not a store URL; write sqlite://PATH or postgres://USER@HOST/DATABASE",
            redrive_store::postgres::redact_url(url)
        ))),
    }
}

impl Engine {
    /// Opens (creating if needed) the store and starts the engine: `sqlite://PATH`
    /// (a file, embedded; one engine at a time may open it) or
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (schema created on
    /// first use).
    ///
    /// On PostgreSQL any number of processes may open one database: the
    /// executions are spread over them by shard (the shard of a function's
    /// name), each process driving about an even share of the 16 shards, and
    /// the shards of a process that exits, dies or stalls are taken over by
    /// the others, which replay its executions from their checkpoints. Every
    /// process should register the same functions. A start of a function
    /// whose shard another process holds is handed to it through the database.
    /// `open` returns once this process took its share (all 16 when alone).
    /// SDK processes and `redrive server`s cannot share a database.
    pub async fn open(url: &str) -> Result<Engine, Error> {
        Engine::open_with_clock(url, Arc::new(SystemClock)).await
    }

    /// [`Engine::open`] on a given clock. For tests of durable functions:
    /// with a [`redrive_engine::ManualClock`], step retry delays and
    /// `Context::sleep` wait until the test advances the clock, never on the
    /// wall clock. Step bodies themselves run in real time.
    pub async fn open_with_clock(url: &str, clock: Arc<dyn Clock>) -> Result<Engine, Error> {
        Engine::open_with(url, OpenOptions { clock, ..OpenOptions::default() }).await
    }

    /// [`Engine::open`] with options: the clock, and on PostgreSQL the lease
    /// of each shard this process holds.
    pub async fn open_with(url: &str, open: OpenOptions) -> Result<Engine, Error> {
        let OpenOptions { clock, lease } = open;
        if lease < MIN_LEASE {
            return Err(Error::Invalid(format!(
                "a lease of {} ms is too short; allowed: at least {} ms",
                lease.as_millis(),
                MIN_LEASE.as_millis()
            )));
        }
        let location = store_location(url)?;
        if let StoreLocation::Postgres(_) = location {
            // The heartbeat as a server's: a fifth of the lease, at most a second.
            let heartbeat = (lease / 5).min(redrive_store::postgres::DEFAULT_HEARTBEAT);
            let postgres = PostgresOptions { kind: MemberKind::Functions, lease, heartbeat, ..Default::default() };
            let options = StoreOptions { postgres, ..Default::default() };
            let member = AnyStore::open_member(&location, options.clone()).await?;
            let shards = cluster::Shards::join(member, options, clock.clone()).await?;
            let run = tokio::spawn(shards.clone().run());
            return Ok(Engine {
                store: shards.member(),
                driving: Driving::Spread(shards),
                clock,
                join: tokio::sync::Mutex::new(Some(Joined::Shards(run))),
                background: std::sync::Mutex::new(Vec::new()),
            });
        }
        let store = Arc::new(AnyStore::open(&location, StoreOptions::default()).await?);
        let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
        Ok(Engine {
            store,
            driving: Driving::One(handle),
            clock,
            join: tokio::sync::Mutex::new(Some(Joined::Engine(join))),
            background: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Registers `f` as the durable function `name` and continues its unfinished
    /// executions (after a crash: replay from their checkpoints).
    ///
    /// # Panics
    /// If `name` is not 1 to 100 characters of `A-Za-z0-9.@-_`.
    pub fn register<I, O, F, Fut>(&self, name: &str, f: F)
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + 'static,
        F: Fn(Context, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, Error>> + Send + 'static,
    {
        self.register_with(name, FunctionOptions::default(), f)
    }

    /// [`Engine::register`] with options, e.g. a dead-letter queue:
    /// `engine.register_with("process-order", FunctionOptions::default().dead_letter_queue("retry-orders"), f)`.
    /// An execution that fails for good then leaves one entry there (source,
    /// input, final error, failed step); a redrive (`redrive dlq redrive`, or the
    /// API) resumes the execution: completed steps keep their results and the
    /// failed step runs again with fresh retry counters.
    ///
    /// # Panics
    /// If `name` or the queue name is not 1 to 100 characters of `A-Za-z0-9.@-_`.
    pub fn register_with<I, O, F, Fut>(&self, name: &str, options: FunctionOptions, f: F)
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + 'static,
        F: Fn(Context, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, Error>> + Send + 'static,
    {
        if let Err(e) = redrive_core::name::Name::parse(name) {
            panic!("durable function name {name:?} {e}");
        }
        let queue = options
            .dead_letter_queue
            .as_deref()
            .map(|q| redrive_core::name::Name::parse(q).unwrap_or_else(|e| panic!("dead-letter queue name {q:?} of function {name} {e}")));
        let f = Arc::new(f);
        let function = move |ctx: FnContext, input_json: String| -> FnFuture {
            let input: I = match serde_json::from_str(&input_json) {
                Ok(i) => i,
                Err(e) => return Box::pin(std::future::ready(Err(function_error(format!("the input does not deserialize: {e}"))))),
            };
            let fut = f(Context { inner: ctx }, input);
            Box::pin(async move {
                match fut.await {
                    Ok(out) => serde_json::to_value(out).map_err(|e| function_error(format!("the result does not serialize: {e}"))),
                    Err(e) => Err(e.into_failure()),
                }
            })
        };
        let function: Arc<dyn DurableFunction> = Arc::new(function);
        let handle = match &self.driving {
            Driving::One(handle) => handle.clone(),
            Driving::Spread(shards) => return self.register_spread(shards, name, function, queue),
        };
        if handle.register_function_now(name, function, queue.clone()).is_err() {
            tracing::error!(function = name, "the engine has stopped; the function was not registered");
            return;
        }
        let (store, name, clock) = (self.store.clone(), name.to_string(), self.clock.clone());
        let task = tokio::spawn(async move {
            if let Some(q) = &queue {
                // The queue exists (empty) from the moment a function names it.
                if let Err(e) = store.ensure_dlq_queue(q.as_str(), clock.now()).await {
                    tracing::error!(queue = q.as_str(), error = %e, "cannot create the dead-letter queue");
                }
            }
            let target = Some(redrive_store::TargetName::function(name.clone()));
            if let Err(e) = cluster::resume_unfinished(&store, &handle, target).await {
                tracing::error!(function = name, error = %e, "cannot list unfinished executions to resume");
            }
        });
        let mut background = self.background.lock().expect("background lock");
        background.retain(|t| !t.is_finished());
        background.push(task);
    }

    /// [`Engine::register_with`] on PostgreSQL: into every shard's engine,
    /// now and later; the queue is created through one of them.
    fn register_spread(
        &self,
        shards: &Arc<cluster::Shards>,
        name: &str,
        function: Arc<dyn DurableFunction>,
        queue: Option<redrive_core::name::Name>,
    ) {
        let registration = cluster::Registration { name: name.to_string(), function, queue: queue.clone() };
        let resuming = shards.register(registration);
        let (shards, clock) = (shards.clone(), self.clock.clone());
        let queue_task = tokio::spawn(async move {
            let (Some(q), Some(store)) = (queue, shards.any_store()) else { return };
            if let Err(e) = store.ensure_dlq_queue(q.as_str(), clock.now()).await {
                tracing::error!(queue = q.as_str(), error = %e, "cannot create the dead-letter queue");
            }
        });
        let mut background = self.background.lock().expect("background lock");
        background.retain(|t| !t.is_finished());
        background.extend(resuming.into_iter().chain([queue_task]));
    }

    /// Starts an execution of `function` named `name` with `input`. The name is the
    /// idempotency key: the same name and input give back the existing execution.
    pub async fn start<I: Serialize>(&self, function: &str, name: &str, input: &I) -> Result<ExecutionHandle, Error> {
        if name.is_empty() || name.chars().count() > 200 {
            return Err(Error::Invalid(format!("execution name {name:?} must be 1 to 200 characters")));
        }
        let input_json = serde_json::to_string(input).map_err(|e| Error::Invalid(format!("the input does not serialize: {e}")))?;
        let (execution_id, _existing) = match &self.driving {
            Driving::One(handle) => handle.start_function(function, name, input_json).await?,
            Driving::Spread(shards) => shards.start_function(function, name, input_json).await?,
        };
        Ok(self.execution(&execution_id))
    }

    /// Stores a pipeline definition (YAML or JSON text, as for `redrive run`) and
    /// starts an execution of it with `input`. Its `function: NAME` actions run
    /// the functions registered with this engine, one function execution per
    /// attempt, under the action's retry policies; the function's result is the
    /// action's output.
    pub async fn start_pipeline<I: Serialize>(&self, definition: &str, input: &I) -> Result<PipelineRun, Error> {
        let pipeline = redrive_core::definition::parse_pipeline_text(definition).map_err(|problems| {
            Error::Invalid(problems.iter().map(|p| format!("{}: {}", p.path, p.message)).collect::<Vec<_>>().join("; "))
        })?;
        let json =
            redrive_core::definition::source::parse_document(definition).map_err(|e| Error::Invalid(e.to_string()))?.to_json().to_string();
        let (store, handle) = self.driving_of(pipeline.name.as_str(), "pipeline")?;
        let now = self.clock.now();
        let record = store.put_pipeline(pipeline.name.as_str(), &json, None, now).await?;
        if let Some(q) = &pipeline.dead_letter_queue {
            store.ensure_dlq_queue(q.as_str(), now).await?;
        }
        let loaded = Arc::new(redrive_engine::LoadedPipeline::from_record(record)?);
        let input_json = serde_json::to_string(input).map_err(|e| Error::Invalid(format!("the input does not serialize: {e}")))?;
        let execution_id = handle.start(loaded, input_json).await?;
        Ok(PipelineRun { execution_id, handle })
    }

    /// Redrives one dead-letter entry (mid-level redrive from code): a function's
    /// entry resumes its execution, a pipeline's retries its failed stage. The
    /// entry leaves its queue in the same commit. Returns the execution resubmitted.
    pub async fn redrive_entry(&self, entry_id: &str) -> Result<ExecutionHandle, Error> {
        let handle = match &self.driving {
            Driving::One(handle) => handle.clone(),
            // The engine of the shard of the entry's execution.
            Driving::Spread(_) => {
                let no_entry = || Error::Invalid(format!("no dead-letter entry {entry_id}"));
                let entry = self.store.get_dlq_entry(entry_id).await?.ok_or_else(no_entry)?;
                let source = self.store.get_execution(&entry.execution_id).await?.ok_or_else(no_entry)?;
                self.driving_of(source.target.name(), "execution of")?.1
            }
        };
        let execution_id = handle
            .redrive(entry_id, redrive_engine::redrive::RedriveMode::RetryStage, false, None, None, None)
            .await
            .map_err(|e| match e {
                EngineError::NotRedriven(reason) => Error::Invalid(format!("entry {entry_id} was not redriven: {reason}")),
                other => other.into(),
            })?;
        Ok(self.execution(&execution_id))
    }

    /// A handle to an execution by id.
    pub fn execution(&self, execution_id: &str) -> ExecutionHandle {
        ExecutionHandle { execution_id: execution_id.to_string(), store: self.store.clone(), driving: self.driving.clone() }
    }

    /// The store and engine that drive the executions of pipeline or function
    /// `name`: on PostgreSQL, those of its shard if this process holds it.
    fn driving_of(&self, name: &str, what: &str) -> Result<(Arc<AnyStore>, EngineHandle), Error> {
        match &self.driving {
            Driving::One(handle) => Ok((self.store.clone(), handle.clone())),
            Driving::Spread(shards) => {
                let shard = redrive_core::shard::ShardId::of(name);
                shards.driving(shard).ok_or_else(|| {
                    Error::Engine(format!(
                        "the {what} {name:?} is in shard {shard}, which another SDK process drives now; call this there \
                         (`redrive cluster status --db URL` shows who holds which shard)"
                    ))
                })
            }
        }
    }

    /// Stops the engine after the current batch; running steps are abandoned and
    /// replayed (as interrupted attempts) by the next process.
    pub async fn shutdown(&self) {
        let background: Vec<_> = self.background.lock().expect("background lock").drain(..).collect();
        for task in background {
            task.abort();
            let _ = task.await;
        }
        match (&self.driving, self.join.lock().await.take()) {
            (Driving::One(handle), join) => {
                handle.shutdown().await;
                if let Some(Joined::Engine(join)) = join {
                    let _ = join.await;
                }
            }
            (Driving::Spread(shards), join) => {
                shards.stop();
                if let Some(Joined::Shards(run)) = join {
                    let _ = run.await;
                }
                shards.shutdown().await;
            }
        }
    }
}

/// One execution of a pipeline started through the SDK.
pub struct PipelineRun {
    execution_id: String,
    handle: EngineHandle,
}

impl PipelineRun {
    pub fn id(&self) -> &str {
        &self.execution_id
    }

    /// Waits for the execution to finish; its status (`Succeeded`, `Failed`, ...).
    pub async fn wait(&self) -> Result<String, Error> {
        Ok(self.handle.wait(&self.execution_id).await?.status.as_str().to_string())
    }
}

/// One execution of a durable function.
#[derive(Clone)]
pub struct ExecutionHandle {
    execution_id: String,
    store: Arc<AnyStore>,
    driving: Driving,
}

impl ExecutionHandle {
    pub fn id(&self) -> &str {
        &self.execution_id
    }

    /// Waits for the execution to finish and returns its result.
    pub async fn result<T: DeserializeOwned>(&self) -> Result<T, Error> {
        match &self.driving {
            Driving::One(handle) => drop(handle.wait(&self.execution_id).await?),
            Driving::Spread(shards) => shards.wait(&self.execution_id).await?,
        }
        let state = self.state().await?;
        match state.status {
            FunctionStatus::Succeeded => serde_json::from_value(state.result.unwrap_or(serde_json::Value::Null))
                .map_err(|e| Error::Invalid(format!("the execution's result does not deserialize into this type: {e}"))),
            FunctionStatus::Failed => {
                let f = state.error.unwrap_or_else(|| function_error("the execution failed"));
                Err(Error::ExecutionFailed { exception_type: f.exception_type.to_string(), message: f.message })
            }
            FunctionStatus::Running => Err(Error::Engine("the execution is still running".into())),
        }
    }

    /// The execution's checkpointed state: status, steps with attempts and results.
    pub async fn state(&self) -> Result<FunctionState, Error> {
        let rec = self
            .store
            .get_execution(&self.execution_id)
            .await?
            .ok_or_else(|| Error::Engine(format!("execution {} not found", self.execution_id)))?;
        serde_json::from_str(&rec.state_json).map_err(|e| Error::Engine(format!("unreadable state: {e}")))
    }
}
