//! The model's constraints on request members (length, pattern, range), checked
//! after [`super::protocol::decode_request`] has checked types, required members
//! and enumerations.
//!
//! Failures are one `ValidationException` listing every violation in the AWS
//! style: `2 validation errors detected: Value 'x y' at 'pipelineName' failed to
//! satisfy constraint: Member must satisfy regular expression pattern:
//! [A-Za-z0-9.@\-_]+; Value '0' at 'maxResults' ...`.
//!
//! Patterns are matched against the whole value (AWS's model patterns are not
//! anchored, but the service rejects, for example, an execution id with a suffix).
//!
//! A `PipelineDeclaration` (CreatePipeline, UpdatePipeline) is checked here only
//! for its name; the whole declaration is validated by
//! [`super::convert::parse_declaration`], whose problems become
//! [`ApiError::from_problems`].

use super::errors::ApiError;
use super::protocol::Request;

/// `PipelineName`, `StageName`, `ActionName`: 1–100 characters of `[A-Za-z0-9.@\-_]`.
pub const NAME_PATTERN: &str = r"[A-Za-z0-9.@\-_]+";
/// `PipelineExecutionId`.
pub const EXECUTION_ID_PATTERN: &str = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
/// `ClientRequestToken`: 1–128 characters.
pub const CLIENT_REQUEST_TOKEN_PATTERN: &str = "^[a-zA-Z0-9-]+$";
/// `PipelineVariableName`: 1–128 characters.
pub const VARIABLE_NAME_PATTERN: &str = r"[A-Za-z0-9@\-_]+";

/// Checks a decoded request's members against the model's constraints.
pub fn validate_request(request: &Request) -> Result<(), ApiError> {
    let mut v = Violations::default();
    match request {
        Request::CreatePipeline(r) => {
            v.name("pipeline.name", &r.pipeline.name);
            if let Some(tags) = &r.tags {
                for (i, t) in tags.iter().enumerate() {
                    v.length(&format!("tags.{}.member.key", i + 1), &t.key, 1, 128);
                    v.length(&format!("tags.{}.member.value", i + 1), &t.value, 0, 256);
                }
            }
        }
        Request::UpdatePipeline(r) => v.name("pipeline.name", &r.pipeline.name),
        Request::GetPipeline(r) => {
            v.name("name", &r.name);
            if let Some(version) = r.version {
                v.range("version", version, 1, i32::MAX);
            }
        }
        Request::ListPipelines(r) => {
            v.next_token(&r.next_token);
            if let Some(m) = r.max_results {
                v.range("maxResults", m, 1, 1000);
            }
        }
        Request::DeletePipeline(r) => v.name("name", &r.name),
        Request::StartPipelineExecution(r) => {
            v.name("name", &r.name);
            if let Some(vars) = &r.variables {
                v.count("variables", vars.len(), 1, 50);
                for (i, var) in vars.iter().enumerate() {
                    let at = format!("variables.{}.member", i + 1);
                    v.pattern(&format!("{at}.name"), &var.name, 1, 128, VARIABLE_NAME_PATTERN, is_variable_name_char);
                    v.length(&format!("{at}.value"), &var.value, 1, 1000);
                }
            }
            if let Some(t) = &r.client_request_token {
                v.pattern("clientRequestToken", t, 1, 128, CLIENT_REQUEST_TOKEN_PATTERN, |c| c.is_ascii_alphanumeric() || c == '-');
            }
            if let Some(revs) = &r.source_revisions {
                v.count("sourceRevisions", revs.len(), 0, 50);
                for (i, rev) in revs.iter().enumerate() {
                    let at = format!("sourceRevisions.{}.member", i + 1);
                    v.name(&format!("{at}.actionName"), &rev.action_name);
                    v.length(&format!("{at}.revisionValue"), &rev.revision_value, 1, 1500);
                }
            }
        }
        Request::GetPipelineExecution(r) => {
            v.name("pipelineName", &r.pipeline_name);
            v.execution_id("pipelineExecutionId", &r.pipeline_execution_id);
        }
        Request::ListPipelineExecutions(r) => {
            v.name("pipelineName", &r.pipeline_name);
            if let Some(m) = r.max_results {
                v.range("maxResults", m, 1, 100);
            }
            if let Some(stage) = r.filter.as_ref().and_then(|f| f.succeeded_in_stage.as_ref()).and_then(|s| s.stage_name.as_ref()) {
                v.name("filter.succeededInStage.stageName", stage);
            }
            v.next_token(&r.next_token);
        }
        Request::StopPipelineExecution(r) => {
            v.name("pipelineName", &r.pipeline_name);
            v.execution_id("pipelineExecutionId", &r.pipeline_execution_id);
            if let Some(reason) = &r.reason {
                v.length("reason", reason, 0, 200);
            }
        }
        Request::GetPipelineState(r) => v.name("name", &r.name),
        Request::ListActionExecutions(r) => {
            v.name("pipelineName", &r.pipeline_name);
            if let Some(f) = &r.filter {
                if let Some(id) = &f.pipeline_execution_id {
                    v.execution_id("filter.pipelineExecutionId", id);
                }
                if let Some(l) = &f.latest_in_pipeline_execution {
                    v.execution_id("filter.latestInPipelineExecution.pipelineExecutionId", &l.pipeline_execution_id);
                }
            }
            if let Some(m) = r.max_results {
                v.range("maxResults", m, 1, 100);
            }
            v.next_token(&r.next_token);
        }
        Request::RetryStageExecution(r) => {
            v.name("pipelineName", &r.pipeline_name);
            v.name("stageName", &r.stage_name);
            v.execution_id("pipelineExecutionId", &r.pipeline_execution_id);
        }
    }
    v.into_result()
}

/// Whether `s` is a well-formed `PipelineExecutionId` (a lower-case UUID).
pub fn is_execution_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '-' | '_')
}

fn is_variable_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '@' | '-' | '_')
}

#[derive(Default)]
struct Violations(Vec<String>);

impl Violations {
    fn push(&mut self, value: &str, at: &str, constraint: &str) {
        let shown: String = if value.chars().count() > 100 { value.chars().take(100).chain("…".chars()).collect() } else { value.into() };
        self.0.push(format!("Value '{shown}' at '{at}' failed to satisfy constraint: Member must {constraint}"));
    }

    /// Length in characters, as AWS counts.
    fn length(&mut self, at: &str, s: &str, min: usize, max: usize) -> bool {
        let n = s.chars().count();
        if n < min {
            self.push(s, at, &format!("have length greater than or equal to {min}"));
            false
        } else if n > max {
            self.push(s, at, &format!("have length less than or equal to {max}"));
            false
        } else {
            true
        }
    }

    fn pattern(&mut self, at: &str, s: &str, min: usize, max: usize, pattern: &str, ok: impl Fn(char) -> bool) {
        if self.length(at, s, min, max) && !s.chars().all(ok) {
            self.push(s, at, &format!("satisfy regular expression pattern: {pattern}"));
        }
    }

    fn name(&mut self, at: &str, s: &str) {
        self.pattern(at, s, 1, 100, NAME_PATTERN, is_name_char);
    }

    fn execution_id(&mut self, at: &str, s: &str) {
        if !is_execution_id(s) {
            self.push(s, at, &format!("satisfy regular expression pattern: {EXECUTION_ID_PATTERN}"));
        }
    }

    fn next_token(&mut self, t: &Option<String>) {
        if let Some(t) = t {
            self.length("nextToken", t, 1, 2048);
        }
    }

    fn range(&mut self, at: &str, n: i32, min: i32, max: i32) {
        if n < min {
            self.push(&n.to_string(), at, &format!("have value greater than or equal to {min}"));
        } else if n > max {
            self.push(&n.to_string(), at, &format!("have value less than or equal to {max}"));
        }
    }

    fn count(&mut self, at: &str, n: usize, min: usize, max: usize) {
        if n < min {
            self.0.push(format!("Value at '{at}' failed to satisfy constraint: Member must have length greater than or equal to {min}"));
        } else if n > max {
            self.0.push(format!("Value at '{at}' failed to satisfy constraint: Member must have length less than or equal to {max}"));
        }
    }

    fn into_result(self) -> Result<(), ApiError> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(ApiError::validation(format!("1 validation error detected: {}", self.0[0]))),
            n => {
                Err(ApiError::validation(super::errors::truncate_message(format!("{n} validation errors detected: {}", self.0.join("; ")))))
            }
        }
    }
}
