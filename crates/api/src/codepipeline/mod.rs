//! The CodePipeline wire protocol (AWS JSON 1.1), so that `aws codepipeline ...
//! --endpoint-url` and boto3 drive redrive unchanged (PRODUCT.md §7).
//!
//! The shapes, member names and error `__type`s are those of botocore's service
//! model `botocore/data/codepipeline/2015-07-09/service-2.json` (read from
//! botocore 1.44.5, `apiVersion` 2015-07-09, `targetPrefix`
//! `CodePipeline_20150709`, `jsonVersion` 1.1).
//!
//! - [`protocol`]: `X-Amz-Target` to an [`protocol::Operation`], request bodies to
//!   typed inputs ([`protocol::Request`]), outputs to bodies.
//! - [`model`]: the request/response shapes of the twelve operations redrive
//!   serves, and [`model::EpochSeconds`] for timestamps.
//! - [`validate`]: the model's length/pattern/range constraints on requests.
//! - [`errors`]: error codes, their HTTP statuses and the error body.
//! - [`convert`]: native pipeline definitions to and from the wire
//!   [`model::PipelineDeclaration`].
//!
//! A server's request path: [`protocol::Operation::from_target`] →
//! [`protocol::Request::decode`] → [`validate::validate_request`] → (for
//! CreatePipeline/UpdatePipeline) [`convert::parse_declaration`] → engine →
//! output shape → [`protocol::encode_response`]; any [`errors::ApiError`] on the
//! way becomes its status, headers and [`errors::ErrorBody`].

pub mod convert;
pub mod errors;
pub mod model;
pub mod protocol;
pub mod validate;

pub use errors::{ApiError, ErrorCode};
pub use protocol::{Operation, Request};
