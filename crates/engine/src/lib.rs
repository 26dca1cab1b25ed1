//! redrive-engine: the IO shell around the pure core.
//!
//! - [`driver`]: the event loop. It applies [`redrive_core::machine`] transitions,
//!   group-commits them through a [`redrive_store::Store`], and only after the
//!   commit performs their effects: start attempts on runners, arm durable timers.
//! - [`runner`]: how attempts run: `command` (argv, no shell), `http`, `noop`.
//! - [`clock`]: the only place wall-clock time is read.
//! - [`dependencies`]: retry budgets and circuit breakers shared by all executions.
//! - [`health`]: ready, degraded (store faults, retried) or stopped.
//! - [`fair`]: attempt slots shared fairly between pipelines.
//! - [`metrics`]: the Prometheus figures the engine counts.
//! - [`locks`]: SUPERSEDED mode's stage locks as stored (read by the driver and dry runs).

pub mod clock;
pub mod dependencies;
pub mod doctor;
pub mod driver;
pub mod error;
pub mod fair;
pub mod function;
pub mod handle;
pub mod health;
pub mod keys;
pub mod locks;
pub mod metrics;
pub mod pipeline;
pub mod redrive;
pub mod retention;
pub mod runner;
pub mod service;

pub use clock::{Clock, ManualClock, SystemClock};
pub use driver::{Driver, DriverConfig};
pub use error::EngineError;
pub use handle::{DriverStats, EngineHandle, ExecutionOutcome, Notification};
pub use pipeline::LoadedPipeline;
