//! The AWS JSON 1.1 envelope: which operation a request calls and how its body is
//! read and written.
//!
//! A request is `POST /` with `X-Amz-Target: CodePipeline_20150709.<Operation>`,
//! `Content-Type: application/x-amz-json-1.1` and a JSON object body (the
//! operation's input shape). A success is HTTP 200 with the same content type and
//! the output shape as a JSON object; errors are described in [`super::errors`].
//!
//! botocore 1.44.5's model for CodePipeline lists two protocols,
//! `["smithy-rpc-v2-cbor", "json"]`; botocore picks the first of its own priority
//! list (`json`, `rest-json`, `rest-xml`, `smithy-rpc-v2-cbor`, ...) that the
//! service offers, which is `json` (AWS JSON 1.1), and older botocores know only
//! `json`. Newer Smithy-generated SDKs may prefer RPC v2 CBOR
//! (`POST /service/CodePipeline/operation/<Operation>`, `smithy-protocol:
//! rpc-v2-cbor`); redrive does not speak it.

use super::errors::{ApiError, ErrorCode};
use super::model::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The model's `targetPrefix`.
pub const TARGET_PREFIX: &str = "CodePipeline_20150709";
/// The request header that names the operation.
pub const TARGET_HEADER: &str = "X-Amz-Target";
/// `application/x-amz-json-<jsonVersion>` with the model's `jsonVersion` 1.1.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// The response header botocore reads as `ResponseMetadata.RequestId`.
pub const REQUEST_ID_HEADER: &str = "x-amzn-RequestId";

macro_rules! operations {
    ($($name:ident($input:ty) -> $output:ty;)+) => {
        /// A CodePipeline operation redrive serves.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Operation {
            $($name),+
        }

        impl Operation {
            pub const ALL: &'static [Operation] = &[$(Operation::$name),+];

            /// The operation's name, as in `X-Amz-Target`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Operation::$name => stringify!($name)),+
                }
            }
        }

        /// A decoded request: the operation and its input.
        #[derive(Clone, Debug, PartialEq)]
        #[allow(clippy::large_enum_variant)]
        pub enum Request {
            $($name($input)),+
        }

        impl Request {
            /// Reads the body of a request to `operation`.
            pub fn decode(operation: Operation, body: &[u8]) -> Result<Request, ApiError> {
                Ok(match operation {
                    $(Operation::$name => Request::$name(decode_request(operation, body)?)),+
                })
            }

            pub fn operation(&self) -> Operation {
                match self {
                    $(Request::$name(_) => Operation::$name),+
                }
            }
        }
    };
}

operations! {
    CreatePipeline(CreatePipelineInput) -> CreatePipelineOutput;
    GetPipeline(GetPipelineInput) -> GetPipelineOutput;
    ListPipelines(ListPipelinesInput) -> ListPipelinesOutput;
    UpdatePipeline(UpdatePipelineInput) -> UpdatePipelineOutput;
    DeletePipeline(DeletePipelineInput) -> DeletePipelineOutput;
    StartPipelineExecution(StartPipelineExecutionInput) -> StartPipelineExecutionOutput;
    GetPipelineExecution(GetPipelineExecutionInput) -> GetPipelineExecutionOutput;
    ListPipelineExecutions(ListPipelineExecutionsInput) -> ListPipelineExecutionsOutput;
    StopPipelineExecution(StopPipelineExecutionInput) -> StopPipelineExecutionOutput;
    GetPipelineState(GetPipelineStateInput) -> GetPipelineStateOutput;
    ListActionExecutions(ListActionExecutionsInput) -> ListActionExecutionsOutput;
    RetryStageExecution(RetryStageExecutionInput) -> RetryStageExecutionOutput;
}

impl Operation {
    /// The operation named by an `X-Amz-Target` value,
    /// `CodePipeline_20150709.<Operation>`. Anything else, including a CodePipeline
    /// operation redrive does not serve, is `UnknownOperationException`.
    pub fn from_target(target: &str) -> Result<Operation, ApiError> {
        let unknown = || ApiError::new(ErrorCode::UnknownOperationException, format!("unknown operation {target:?}"));
        let (prefix, name) = target.split_once('.').ok_or_else(unknown)?;
        if prefix != TARGET_PREFIX {
            return Err(unknown());
        }
        Operation::ALL.iter().copied().find(|o| o.name() == name).ok_or_else(unknown)
    }

    /// `CodePipeline_20150709.<Operation>`.
    pub fn target(self) -> String {
        format!("{TARGET_PREFIX}.{}", self.name())
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads a request body as the input shape `T`. An empty body counts as `{}`.
/// Unknown members are ignored.
///
/// - Not JSON, JSON with a key repeated in an object, or JSON that is not an
///   object → `SerializationException` (a leading UTF-8 byte-order mark is skipped).
/// - A member of the wrong JSON type, a required member missing, a value outside
///   an enumeration → `ValidationException`, naming the member where serde does.
///
/// Length, pattern and range constraints are checked afterwards by
/// [`super::validate`].
pub fn decode_request<T: DeserializeOwned>(operation: Operation, body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    // As on the native API: a leading byte-order mark is skipped, a repeated key refused.
    let value = crate::json::parse_value(body)
        .map_err(|e| ApiError::new(ErrorCode::SerializationException, format!("{operation}: the request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::new(ErrorCode::SerializationException, format!("{operation}: the request body must be a JSON object")));
    }
    serde_json::from_value(value).map_err(|e| ApiError::validation(format!("{operation}: invalid request: {e}")))
}

/// Writes a response body.
pub fn encode_response<T: Serialize>(output: &T) -> Vec<u8> {
    serde_json::to_vec(output).expect("wire shapes always serialise")
}
