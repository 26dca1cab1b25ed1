//! redrive-core: the pure heart of redrive.
//!
//! Nothing in this crate performs IO, spawns tasks, reads a clock or draws random
//! numbers. Time arrives as a [`time::Timestamp`] argument and jitter as a
//! [`jitter::JitterDraw`] derived from a hash of stable identifiers, so every
//! function here is deterministic and testable with plain values.
//!
//! - [`auth`]: scopes, grants limited to name prefixes, and the authorization check.
//! - [`bulk`]: bulk stage retry by filter: matching, pacing, outcome counts.
//! - [`concurrency`]: per-key concurrency of an action's attempts (key paths, slots).
//! - [`dependency`]: retry budgets and circuit breakers per dependency (gate, record).
//! - [`dlq`]: dead-letter redrives: modes, entry states, the take checks.
//! - [`exception`]: exception types, aliases and matching.
//! - [`policy`]: validated retry policies, the retry decision and schedule preview.
//! - [`definition`]: pipeline definitions: source text to a located tree, the tree
//!   to a validated [`definition::Pipeline`], with every error reported at once.
//! - [`limits`]: every size and count limit, and the checks that apply them.
//! - [`retention`]: how long finished records are kept, and which may go now.
//! - [`schedule`]: rules across a pipeline's executions (modes, queue, concurrency).
//! - [`machine`]: the execution state machine: `(state, event, now) -> effects`.

pub mod auth;
pub mod bulk;
pub mod concurrency;
pub mod definition;
pub mod dependency;
pub mod dlq;
pub mod exception;
pub mod fair;
pub mod function;
pub mod jitter;
pub mod limits;
pub mod machine;
pub mod merge_patch;
pub mod name;
pub mod policy;
pub mod retention;
pub mod schedule;
pub mod shard;
pub mod time;
