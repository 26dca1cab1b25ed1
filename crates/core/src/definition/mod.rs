//! Pipeline definitions.
//!
//! Three layers, each pure:
//! - [`source`]: YAML or JSON text to a [`source::Node`] tree that remembers the
//!   line of every value (JSON is parsed by the same YAML 1.2 loader).
//! - [`parse`]: a `Node` tree to a validated [`Pipeline`], collecting **every**
//!   problem as a [`Problem`] with its JSON path, line, field, value and what is
//!   allowed. Wire spellings (SageMaker PascalCase, camelCase, Step Functions
//!   `Retry`) are accepted here and nowhere else.
//! - [`model`]: the domain types. A `Pipeline` exists only through `parse`.
//!
//! [`problem`] holds [`Problem`] and its collector, which counts every problem
//! but reports at most [`crate::limits::MAX_PROBLEMS_REPORTED`].

pub mod model;
pub mod parse;
pub mod problem;
pub mod source;

pub use model::*;
pub use parse::{parse_dependencies, parse_pipeline, parse_pipeline_text};
pub use problem::{Problem, Problems, total_problems};
