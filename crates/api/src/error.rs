//! The native API's error answer: `{"error": {"code", "message", "problems"?}}`
//! with a meaningful HTTP status. A leaf module: every route module uses it.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use redrive_core::definition::Problem;
use redrive_engine::service::ServiceError;
use redrive_wire as w;

pub struct ApiError(pub ServiceError);

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError(e)
    }
}

pub type Result<T> = std::result::Result<T, ApiError>;

/// The CodePipeline exception name and native HTTP status of a service error.
pub fn error_code(e: &ServiceError) -> (&'static str, StatusCode) {
    use ServiceError::*;
    match e {
        Validation(_) => ("ValidationException", StatusCode::BAD_REQUEST),
        InvalidStructure(_) => ("InvalidStructureException", StatusCode::BAD_REQUEST),
        PipelineNotFound(_) => ("PipelineNotFoundException", StatusCode::NOT_FOUND),
        PipelineNameInUse(_) => ("PipelineNameInUseException", StatusCode::CONFLICT),
        PipelineVersionNotFound { .. } => ("PipelineVersionNotFoundException", StatusCode::NOT_FOUND),
        ExecutionNotFound(_) => ("PipelineExecutionNotFoundException", StatusCode::NOT_FOUND),
        ExecutionNotStoppable(_) => ("PipelineExecutionNotStoppableException", StatusCode::CONFLICT),
        DuplicatedStopRequest(_) => ("DuplicatedStopRequestException", StatusCode::CONFLICT),
        StageNotFound(_) => ("StageNotFoundException", StatusCode::NOT_FOUND),
        StageNotRetryable(_) => ("StageNotRetryableException", StatusCode::CONFLICT),
        NotLatestPipelineExecution(_) => ("NotLatestPipelineExecutionException", StatusCode::CONFLICT),
        Conflict(_) => ("ConflictException", StatusCode::CONFLICT),
        ConcurrentExecutionsLimitExceeded(_) => ("ConcurrentPipelineExecutionsLimitExceededException", StatusCode::TOO_MANY_REQUESTS),
        DlqQueueNotFound(_) => ("DeadLetterQueueNotFoundException", StatusCode::NOT_FOUND),
        DlqEntryNotFound(_) => ("DeadLetterEntryNotFoundException", StatusCode::NOT_FOUND),
        RedriveRunNotFound(_) => ("RedriveRunNotFoundException", StatusCode::NOT_FOUND),
        BulkRetryNotFound(_) => ("BulkRetryNotFoundException", StatusCode::NOT_FOUND),
        DependencyNotFound(_) => ("DependencyNotFoundException", StatusCode::NOT_FOUND),
        NotRedriven(_) => ("EntryNotRedrivenException", StatusCode::CONFLICT),
        Unavailable(_) => ("ServiceUnavailableException", StatusCode::SERVICE_UNAVAILABLE),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, status) = error_code(&self.0);
        let problems = match &self.0 {
            ServiceError::InvalidStructure(problems) => Some(problems.iter().map(wire_problem).collect()),
            _ => None,
        };
        let body = w::ErrorResponse { error: w::ErrorDetail { code: code.to_string(), message: self.0.to_string(), problems } };
        (status, Json(body)).into_response()
    }
}

/// A definition problem on the wire.
fn wire_problem(p: &Problem) -> w::Problem {
    w::Problem {
        path: p.path.clone(),
        line: p.line,
        field: p.field.clone(),
        value: p.value.clone(),
        message: p.message.clone(),
        allowed: p.allowed.clone(),
    }
}

impl ApiError {
    /// The error's answer with another HTTP status (404, 405, 408, 413, 431).
    pub fn into_response_with(self, status: StatusCode) -> Response {
        let mut r = self.into_response();
        *r.status_mut() = status;
        r
    }
}

/// A `ValidationException` for a request that could not be read (400).
pub fn invalid(message: impl Into<String>) -> ApiError {
    ApiError(ServiceError::Validation(message.into()))
}

/// A JSON body that failed to parse, reported the same way as other errors.
pub fn bad_body(message: impl Into<String>) -> Response {
    invalid(message).into_response()
}
