//! Errors on the CodePipeline wire: their `__type` names, HTTP statuses and body.
//!
//! # What a server must send
//!
//! An error response is an HTTP status ≥ 300 (see [`ErrorCode::http_status`]) with
//! the headers
//!
//! - `Content-Type: application/x-amz-json-1.1`
//! - `x-amzn-ErrorType: <Name>` (for example `x-amzn-ErrorType: StageNotFoundException`)
//! - `x-amzn-RequestId: <id>` (botocore copies it to `ResponseMetadata.RequestId`)
//!
//! and the body `{"__type": "<Name>", "message": "<text>"}` ([`ErrorBody`]).
//!
//! How clients read it: botocore's `json` protocol parser (`BaseJSONParser.
//! _do_error_parse`, botocore 1.44.5) takes the code from the body's `__type`,
//! keeping only what precedes a `:` and follows the last `#` (so
//! `com.amazonaws.codepipeline#ConflictException` also works), and falls back to
//! the HTTP status when `__type` is absent; it reads the text from `message` or
//! `Message`. It does **not** look at `x-amzn-ErrorType` (only its `rest-json`
//! parser does), but the Smithy-based SDKs (Java v2, JavaScript v3, Go v2, Rust)
//! check that header first and fall back to `__type`, so a server sends both.
//! A 5xx response whose body is empty or starts with `<html>` is reported by
//! botocore as a generic error named by the status code. botocore retries by
//! itself (its default `legacy` mode, `_retry.json`) on 500, 502, 503, 504, 509,
//! 429 and on the codes `Throttling`, `ThrottlingException`, `ThrottledException`,
//! `RequestThrottledException`; its `standard` mode (AWS CLI v2's default) on 500,
//! 502, 503, 504 and similar throttling codes.
//!
//! The client exception classes (`client.exceptions.StageNotFoundException`,
//! the AWS CLI's "An error occurred (StageNotFoundException) when calling the
//! RetryStageExecution operation: `<message>`") come from the code alone; the model
//! gives most CodePipeline exceptions no `message` member, but botocore reads
//! `message` from every error body anyway.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The header that names the error type, as the Smithy SDKs read it.
pub const ERROR_TYPE_HEADER: &str = "x-amzn-ErrorType";

macro_rules! error_codes {
    ($($(#[$meta:meta])* $name:ident = $status:literal, $in_model:literal;)+) => {
        /// An error `__type` a redrive server returns on the CodePipeline wire.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$meta])* $name),+
        }

        impl ErrorCode {
            /// Every code.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),+];

            /// The `__type` name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => stringify!($name)),+
                }
            }

            /// The HTTP status the server sends: the model's `error.httpStatusCode`
            /// where it has one (only `ConflictException`: 409), 400 for every
            /// other client error of the model, and the documented status of the
            /// AWS common errors.
            pub const fn http_status(self) -> u16 {
                match self {
                    $(ErrorCode::$name => $status),+
                }
            }

            /// Whether the CodePipeline service model (botocore 1.44.5) defines
            /// this exception shape. The others are AWS common errors, which every
            /// client understands without a model shape.
            pub const fn in_service_model(self) -> bool {
                match self {
                    $(ErrorCode::$name => $in_model),+
                }
            }
        }
    };
}

error_codes! {
    /// A request member breaks a constraint (length, pattern, range, enumeration,
    /// a required member missing). Every operation lists it.
    ValidationException = 400, true;
    /// The pipeline does not exist. Listed by GetPipeline, StartPipelineExecution,
    /// GetPipelineExecution, ListPipelineExecutions, StopPipelineExecution,
    /// GetPipelineState, ListActionExecutions, RetryStageExecution (not by
    /// DeletePipeline, which succeeds for an unknown name).
    PipelineNotFoundException = 400, true;
    /// CreatePipeline: the name is taken.
    PipelineNameInUseException = 400, true;
    /// CreatePipeline, UpdatePipeline: the declaration is structurally invalid.
    InvalidStructureException = 400, true;
    /// CreatePipeline, UpdatePipeline: a stage declaration is invalid.
    InvalidStageDeclarationException = 400, true;
    /// CreatePipeline, UpdatePipeline: an action declaration is invalid.
    InvalidActionDeclarationException = 400, true;
    /// GetPipeline: no such version of the pipeline.
    PipelineVersionNotFoundException = 400, true;
    /// GetPipelineExecution, ListActionExecutions: no such execution of the pipeline.
    PipelineExecutionNotFoundException = 400, true;
    /// StopPipelineExecution: the execution is not in progress.
    PipelineExecutionNotStoppableException = 400, true;
    /// StopPipelineExecution: a stop was already requested and the execution is
    /// `Stopping`.
    DuplicatedStopRequestException = 400, true;
    /// RetryStageExecution: no such stage.
    StageNotFoundException = 400, true;
    /// RetryStageExecution: the structure changed since the failure, the stage has
    /// no failed actions, or ALL_ACTIONS with actions in progress.
    StageNotRetryableException = 400, true;
    /// RetryStageExecution: the stage failed again in a later execution.
    NotLatestPipelineExecutionException = 400, true;
    /// StartPipelineExecution, StopPipelineExecution, RetryStageExecution: the
    /// pipeline is busy (e.g. another retry of the stage is in progress). The
    /// model gives it `httpStatusCode` **409**.
    ConflictException = 409, true;
    /// StartPipelineExecution, RetryStageExecution: too many executions at once.
    ConcurrentPipelineExecutionsLimitExceededException = 400, true;
    /// CreatePipeline, DeletePipeline: a simultaneous update.
    ConcurrentModificationException = 400, true;
    /// ListPipelines, ListPipelineExecutions, ListActionExecutions: a `nextToken`
    /// this server did not issue.
    InvalidNextTokenException = 400, true;
    /// CreatePipeline, UpdatePipeline: too many pipelines.
    LimitExceededException = 400, true;
    /// In the model, but listed only by PutActionRevision and PutApprovalResult,
    /// which redrive does not serve; none of the twelve operations returns it.
    ActionNotFoundException = 400, true;
    /// CreatePipeline: more tags than allowed.
    TooManyTagsException = 400, true;
    /// CreatePipeline: malformed tags.
    InvalidTagsException = 400, true;
    /// AWS common error (no model shape): the body is not a JSON object of the
    /// operation's input shape (malformed JSON).
    SerializationException = 400, false;
    /// AWS common error (no model shape): `X-Amz-Target` names no operation this
    /// server serves.
    UnknownOperationException = 400, false;
    /// AWS common error: rate limited. botocore retries it.
    ThrottlingException = 400, false;
    /// AWS common error: an unexpected server fault. botocore retries a 500.
    InternalFailure = 500, false;
    /// AWS common error: the request carries no credential (no `Authorization`
    /// header) and the server requires one.
    MissingAuthenticationTokenException = 401, false;
    /// AWS common error: the access key id is not one the server knows.
    UnrecognizedClientException = 401, false;
    /// AWS common error: the signature does not match, or the request is more
    /// than 15 minutes away from the server's clock.
    InvalidSignatureException = 403, false;
    /// AWS common error: the credential's scope or name limits do not allow the call.
    AccessDeniedException = 403, false;
    /// AWS common error: the store is unavailable (PRODUCT.md §9: report 503,
    /// never crash). botocore retries a 503.
    ServiceUnavailable = 503, false;
}

impl ErrorCode {
    /// The code a client would read from a `__type` value: the part before any
    /// `:` and after the last `#`, as botocore does.
    pub fn from_type(type_name: &str) -> Option<ErrorCode> {
        let name = type_name.split(':').next().unwrap_or("");
        let name = name.rsplit('#').next().unwrap_or(name);
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON body of an error response: `{"__type": "<Name>", "message": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "__type")]
    pub error_type: String,
    /// botocore also accepts `Message`; redrive sends `message`.
    #[serde(alias = "Message")]
    pub message: String,
}

/// An error a server answers with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into() }
    }

    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::ValidationException, message)
    }

    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody { error_type: self.code.as_str().to_string(), message: self.message.clone() }
    }

    /// The serialised body.
    pub fn body_json(&self) -> String {
        serde_json::to_string(&self.body()).expect("an error body always serialises")
    }

    /// The headers of the response besides `x-amzn-RequestId` (which the server
    /// makes up): content type and `x-amzn-ErrorType`.
    pub fn headers(&self) -> [(&'static str, &'static str); 2] {
        [("Content-Type", super::protocol::CONTENT_TYPE), (ERROR_TYPE_HEADER, self.code.as_str())]
    }

    /// A rejected pipeline declaration (CreatePipeline, UpdatePipeline), from the
    /// definition parser's problems. The code follows where the first problem is:
    /// inside an action → `InvalidActionDeclarationException`, inside a stage →
    /// `InvalidStageDeclarationException`, else `InvalidStructureException`. The
    /// message lists every problem, `; `-separated.
    pub fn from_problems(problems: &[redrive_core::definition::Problem]) -> ApiError {
        let code = match problems.first().map(|p| p.path.as_str()) {
            Some(p) if p.contains(".actions[") => ErrorCode::InvalidActionDeclarationException,
            Some(p) if p.contains(".stages[") => ErrorCode::InvalidStageDeclarationException,
            _ => ErrorCode::InvalidStructureException,
        };
        let message = if problems.is_empty() {
            "invalid pipeline declaration".to_string()
        } else {
            problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; ")
        };
        ApiError::new(code, truncate_message(message))
    }
}

/// The model's `Message` shape allows 1–5000 characters.
pub const MAX_MESSAGE_CHARS: usize = 5000;

/// Cuts a message to [`MAX_MESSAGE_CHARS`], ending it with `…` when cut.
pub fn truncate_message(message: String) -> String {
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        return message;
    }
    let mut out: String = message.chars().take(MAX_MESSAGE_CHARS - 1).collect();
    out.push('…');
    out
}
