//! Request and response shapes of the CodePipeline operations redrive serves.
//!
//! Every type here mirrors a shape of botocore's CodePipeline service model
//! (`botocore/data/codepipeline/2015-07-09/service-2.json`, read from botocore
//! 1.44.5): the JSON member names are the model's member names, required members
//! are plain fields and optional members are `Option`s that are left out of the
//! JSON when `None`. Deserialising ignores unknown members (AWS clients may send
//! members newer than this model); deserialising checks only JSON types, required
//! members and enumeration values, so length/pattern/range constraints (written in
//! the doc comments below, and checked by [`super::validate`]) are the server's job.
//!
//! Enumerations are Rust enums whose JSON strings are exactly the model's values.
//! Timestamps are [`EpochSeconds`]. Integers are `i32` (the model's `integer` is a
//! 32-bit number); range checks belong to validation.
//!
//! A few members are **redrive extensions** that the model does not have
//! ([`PipelineDeclaration::max_concurrent_executions`],
//! [`PipelineDeclaration::dead_letter_queue`], [`PipelineDeclaration::retention_days`],
//! [`PipelineDeclaration::dependencies`], [`FailureConditions::max_retries`], and the
//! action configuration keys `OnExhausted`, `Dependency` and `Concurrency`).
//! botocore ignores members it does not know in responses, but the AWS CLI refuses
//! to send them (client-side parameter validation), so they survive only through
//! raw HTTP, SDKs with validation turned off, or the native API.

use redrive_core::time::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------
// Timestamps

/// A model `timestamp`. AWS JSON 1.1 sends timestamps as epoch **seconds**, a JSON
/// number that may be fractional (botocore parses `1427245911.525`). Held as
/// milliseconds (a [`Timestamp`]); serialised as `f64` seconds with millisecond
/// precision (at most three decimals); deserialised from any JSON number (rounded
/// to the nearest millisecond). The millisecond survives the round trip for
/// instants within ±70 000 years of 1970 (beyond, an `f64` of seconds has less
/// than millisecond resolution).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EpochSeconds(pub Timestamp);

impl EpochSeconds {
    pub const fn from_unix_ms(ms: i64) -> Self {
        EpochSeconds(Timestamp::from_unix_ms(ms))
    }

    pub const fn unix_ms(self) -> i64 {
        self.0.unix_ms()
    }

    /// The value put on the wire.
    pub fn as_seconds(self) -> f64 {
        self.0.unix_ms() as f64 / 1000.0
    }
}

impl From<Timestamp> for EpochSeconds {
    fn from(t: Timestamp) -> Self {
        EpochSeconds(t)
    }
}

impl From<EpochSeconds> for Timestamp {
    fn from(t: EpochSeconds) -> Self {
        t.0
    }
}

impl Serialize for EpochSeconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // `ms / 1000.0` is the double nearest to the decimal `S.mmm`, so its shortest
        // round-tripping text has at most three decimals.
        s.serialize_f64(self.as_seconds())
    }
}

impl<'de> Deserialize<'de> for EpochSeconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = EpochSeconds;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a timestamp in epoch seconds (a JSON number)")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<EpochSeconds, E> {
                v.checked_mul(1000).map(EpochSeconds::from_unix_ms).ok_or_else(|| E::custom("timestamp out of range"))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<EpochSeconds, E> {
                i64::try_from(v).map_err(|_| E::custom("timestamp out of range")).and_then(|v| self.visit_i64(v))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<EpochSeconds, E> {
                let ms = (v * 1000.0).round();
                // ±2^53 ms: every millisecond exactly representable (±285 000 years).
                if !ms.is_finite() || ms.abs() > 9_007_199_254_740_992.0 {
                    return Err(E::custom("timestamp out of range"));
                }
                Ok(EpochSeconds::from_unix_ms(ms as i64))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------
// Enumerations

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value, in the model's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire string.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire),+
                }
            }

            /// The value with this exact wire string.
            pub fn from_wire(s: &str) -> Option<Self> {
                match s {
                    $($wire => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// `ExecutionMode`. CodePipeline's default (when absent) is `SUPERSEDED`.
    ExecutionMode { Queued = "QUEUED", Superseded = "SUPERSEDED", Parallel = "PARALLEL" }
}

wire_enum! {
    /// `PipelineType`. redrive accepts and stores it; it changes nothing.
    PipelineType { V1 = "V1", V2 = "V2" }
}

wire_enum! {
    /// `ActionCategory`. redrive ignores the category; see
    /// [`super::convert::default_category`] for what it emits.
    ActionCategory {
        Source = "Source",
        Build = "Build",
        Deploy = "Deploy",
        Test = "Test",
        Invoke = "Invoke",
        Approval = "Approval",
        Compute = "Compute",
    }
}

wire_enum! {
    /// `ActionOwner`. redrive's actions are `Custom`.
    ActionOwner { Aws = "AWS", ThirdParty = "ThirdParty", Custom = "Custom" }
}

wire_enum! {
    /// `ArtifactStoreType`.
    ArtifactStoreType { S3 = "S3" }
}

wire_enum! {
    /// `EncryptionKeyType`.
    EncryptionKeyType { Kms = "KMS" }
}

wire_enum! {
    /// `BlockerType`.
    BlockerType { Schedule = "Schedule" }
}

wire_enum! {
    /// The model's `Result` shape (what a stage does when its conditions are met).
    /// redrive supports only `RETRY` in `onFailure`.
    ConditionResult { Rollback = "ROLLBACK", Fail = "FAIL", Retry = "RETRY", Skip = "SKIP" }
}

wire_enum! {
    /// `StageRetryMode`.
    StageRetryMode { FailedActions = "FAILED_ACTIONS", AllActions = "ALL_ACTIONS" }
}

wire_enum! {
    /// `RuleCategory`.
    RuleCategory { Rule = "Rule" }
}

wire_enum! {
    /// `RuleOwner`.
    RuleOwner { Aws = "AWS" }
}

wire_enum! {
    /// `EnvironmentVariableType`.
    EnvironmentVariableType { Plaintext = "PLAINTEXT", SecretsManager = "SECRETS_MANAGER" }
}

wire_enum! {
    /// `PipelineTriggerProviderType`.
    PipelineTriggerProviderType { CodeStarSourceConnection = "CodeStarSourceConnection" }
}

wire_enum! {
    /// `GitPullRequestEventType`.
    GitPullRequestEventType { Open = "OPEN", Updated = "UPDATED", Closed = "CLOSED" }
}

wire_enum! {
    /// `PipelineExecutionStatus`.
    PipelineExecutionStatus {
        Cancelled = "Cancelled",
        InProgress = "InProgress",
        Stopped = "Stopped",
        Stopping = "Stopping",
        Succeeded = "Succeeded",
        Superseded = "Superseded",
        Failed = "Failed",
    }
}

wire_enum! {
    /// `StageExecutionStatus`.
    StageExecutionStatus {
        Cancelled = "Cancelled",
        InProgress = "InProgress",
        Failed = "Failed",
        Stopped = "Stopped",
        Stopping = "Stopping",
        Succeeded = "Succeeded",
        Skipped = "Skipped",
    }
}

wire_enum! {
    /// `ActionExecutionStatus` (also the model's `RuleExecutionStatus`).
    ActionExecutionStatus { InProgress = "InProgress", Abandoned = "Abandoned", Succeeded = "Succeeded", Failed = "Failed" }
}

wire_enum! {
    /// `ConditionExecutionStatus`.
    ConditionExecutionStatus {
        InProgress = "InProgress",
        Failed = "Failed",
        Errored = "Errored",
        Succeeded = "Succeeded",
        Cancelled = "Cancelled",
        Abandoned = "Abandoned",
        Overridden = "Overridden",
    }
}

wire_enum! {
    /// `TriggerType`: what started a pipeline execution.
    TriggerType {
        CreatePipeline = "CreatePipeline",
        StartPipelineExecution = "StartPipelineExecution",
        PollForSourceChanges = "PollForSourceChanges",
        Webhook = "Webhook",
        CloudWatchEvent = "CloudWatchEvent",
        PutActionRevision = "PutActionRevision",
        WebhookV2 = "WebhookV2",
        ManualRollback = "ManualRollback",
        AutomatedRollback = "AutomatedRollback",
    }
}

wire_enum! {
    /// `ExecutionType`.
    ExecutionType { Standard = "STANDARD", Rollback = "ROLLBACK" }
}

wire_enum! {
    /// `SourceRevisionType`.
    SourceRevisionType {
        CommitId = "COMMIT_ID",
        ImageDigest = "IMAGE_DIGEST",
        S3ObjectVersionId = "S3_OBJECT_VERSION_ID",
        S3ObjectKey = "S3_OBJECT_KEY",
    }
}

wire_enum! {
    /// `StartTimeRange` (of `LatestInPipelineExecutionFilter`).
    StartTimeRange { Latest = "Latest", All = "All" }
}

wire_enum! {
    /// `RetryTrigger`: what started the latest retry of a stage.
    RetryTrigger { AutomatedStageRetry = "AutomatedStageRetry", ManualStageRetry = "ManualStageRetry" }
}

// ---------------------------------------------------------------------------
// The pipeline declaration

/// `PipelineDeclaration`.
///
/// Model: `name`, `roleArn` and `stages` are required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineDeclaration {
    /// `PipelineName`: 1–100 characters, pattern `[A-Za-z0-9.@\-_]+`.
    pub name: String,
    /// `RoleArn`: required by the model, at most 1024 characters, pattern
    /// `arn:aws(-[\w]+)*:iam::[0-9]{12}:role/.*`. The AWS CLI refuses to send a
    /// declaration without it, so redrive always returns one: the stored value, or
    /// [`super::convert::PLACEHOLDER_ROLE_ARN`]. redrive never uses it; a missing
    /// `roleArn` deserialises to the placeholder rather than failing.
    #[serde(default = "placeholder_role_arn")]
    pub role_arn: String,
    /// `ArtifactStore`. The real service demands `artifactStore` or
    /// `artifactStores` (the model requires neither); redrive stores no artifacts
    /// and accepts either, both or none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_store: Option<ArtifactStore>,
    /// `ArtifactStoreMap`: region name (4–30 characters) to store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_stores: Option<BTreeMap<String, ArtifactStore>>,
    /// `PipelineStageDeclarationList`. redrive: 1 to 50 stages.
    pub stages: Vec<StageDeclaration>,
    /// `PipelineVersion`: integer ≥ 1. Set by the server (1 on create, +1 per
    /// update); ignored in requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_mode: Option<ExecutionMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_type: Option<PipelineType>,
    /// `PipelineVariableDeclarationList`: at most 50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variables: Option<Vec<PipelineVariableDeclaration>>,
    /// `PipelineTriggerDeclarationList`: at most 50. Stored, never acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triggers: Option<Vec<PipelineTriggerDeclaration>>,
    /// **redrive extension** (not in the model): executions that may run at once
    /// in `PARALLEL` mode, 1 to 10 000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_executions: Option<i32>,
    /// **redrive extension** (not in the model): the dead-letter queue's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue: Option<String>,
    /// **redrive extension** (not in the model): days a finished execution is
    /// kept, 1 to 36 500 (default: the server's `retention`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<i32>,
    /// **redrive extension** (not in the model): the pipeline's dependencies,
    /// with their retry budgets and circuit breakers (docs/retry-control.md), at
    /// most 100; validated by the definition parser.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<Vec<DependencyDeclaration>>,
}

/// **redrive extension**: one dependency of a pipeline (`dependencies[]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DependencyDeclaration {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudgetDeclaration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerDeclaration>,
}

/// **redrive extension**: a dependency's retry budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudgetDeclaration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<serde_json::Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_retries_per_second: Option<serde_json::Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<DurationValue>,
}

/// **redrive extension**: a dependency's circuit breaker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreakerDeclaration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<serde_json::Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cool_down: Option<DurationValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub half_open_probes: Option<serde_json::Number>,
}

/// A duration as the definition parser reads it: seconds, or text such as `60s`, `500ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    Seconds(serde_json::Number),
    Text(String),
}

fn placeholder_role_arn() -> String {
    super::convert::PLACEHOLDER_ROLE_ARN.to_string()
}

/// `ArtifactStore`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactStore {
    #[serde(rename = "type")]
    pub store_type: ArtifactStoreType,
    /// `ArtifactStoreLocation`: 3–63 characters, pattern `[a-zA-Z0-9\-\.]+`.
    pub location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<EncryptionKey>,
}

/// `EncryptionKey`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionKey {
    /// `EncryptionKeyId`: 1–400 characters.
    pub id: String,
    #[serde(rename = "type")]
    pub key_type: EncryptionKeyType,
}

/// `PipelineVariableDeclaration`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineVariableDeclaration {
    /// `PipelineVariableName`: 1–128 characters, pattern `[A-Za-z0-9@\-_]+`.
    pub name: String,
    /// `PipelineVariableValue`: 1–1000 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_value: Option<String>,
    /// 0–200 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `PipelineTriggerDeclaration`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineTriggerDeclaration {
    pub provider_type: PipelineTriggerProviderType,
    pub git_configuration: GitConfiguration,
}

/// `GitConfiguration`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitConfiguration {
    pub source_action_name: String,
    /// 1–3 filters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<Vec<GitPushFilter>>,
    /// 1–3 filters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<Vec<GitPullRequestFilter>>,
}

/// `GitPushFilter`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitPushFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<GitFilterCriteria>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branches: Option<GitFilterCriteria>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_paths: Option<GitFilterCriteria>,
}

/// `GitPullRequestFilter`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitPullRequestFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<GitPullRequestEventType>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branches: Option<GitFilterCriteria>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_paths: Option<GitFilterCriteria>,
}

/// `GitTagFilterCriteria`, `GitBranchFilterCriteria` and
/// `GitFilePathFilterCriteria` (one shape: 1–8 patterns of 1–255 characters each).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitFilterCriteria {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub includes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excludes: Option<Vec<String>>,
}

/// `StageDeclaration`. Model: `name` and `actions` are required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageDeclaration {
    /// `StageName`: 1–100 characters, pattern `[A-Za-z0-9.@\-_]+`.
    pub name: String,
    /// Stored, never acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blockers: Option<Vec<BlockerDeclaration>>,
    /// redrive: 1 to 50 actions, names unique within the stage.
    pub actions: Vec<ActionDeclaration>,
    /// redrive acts on `result: RETRY` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<FailureConditions>,
    /// Stored, never acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_success: Option<SuccessConditions>,
    /// Stored, never acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_entry: Option<BeforeEntryConditions>,
}

/// `BlockerDeclaration`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockerDeclaration {
    /// 1–100 characters.
    pub name: String,
    #[serde(rename = "type")]
    pub blocker_type: BlockerType,
}

/// `ActionDeclaration`. Model: `name` and `actionTypeId` are required.
///
/// redrive's kinds are `actionTypeId.provider` `Command`, `Http`, `Function` or
/// `Noop` with string-valued `configuration` (PRODUCT.md §7; see
/// [`super::convert`]). `commands`, `outputVariables`, `environmentVariables` and
/// `timeoutInMinutes` (the model says: manual approval actions only) belong to
/// action kinds redrive does not have; they deserialise, and the definition parser
/// rejects them by name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionDeclaration {
    /// `ActionName`: 1–100 characters, pattern `[A-Za-z0-9.@\-_]+`.
    pub name: String,
    pub action_type_id: ActionTypeId,
    /// `ActionRunOrder`: 1–999.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_order: Option<i32>,
    /// `ActionConfigurationMap`: keys 1–50 characters, values 1–1000 characters.
    /// redrive does not enforce the 1000-character limit on values (a JSON list of
    /// retry policies or a request body can be longer); botocore checks only the
    /// minimum length, so longer values pass the AWS CLI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration: Option<BTreeMap<String, String>>,
    /// `CommandList` (1–50 strings of 1–1000 characters): not supported by redrive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commands: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_artifacts: Option<Vec<OutputArtifact>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_artifacts: Option<Vec<InputArtifact>>,
    /// `OutputVariableList` (1–15 names): not supported by redrive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_variables: Option<Vec<String>>,
    /// `RoleArn`: stored, never used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// `AWSRegionName`: 4–30 characters. Stored, never used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `ActionNamespace`: 1–100 characters, pattern `[A-Za-z0-9@\-_]+`. Stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `ActionTimeout`: 5–86400 minutes, manual approval actions only: not
    /// supported by redrive (use `configuration.TimeoutSeconds`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_in_minutes: Option<i32>,
    /// `EnvironmentVariableList` (1–10): not supported by redrive (use
    /// `configuration.Env` of a `Command` action).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_variables: Option<Vec<EnvironmentVariable>>,
}

/// `ActionTypeId`. Model: all four members required.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionTypeId {
    pub category: ActionCategory,
    pub owner: ActionOwner,
    /// `ActionProvider`: 1–35 characters, pattern `[0-9A-Za-z_-]+`. redrive:
    /// `Command`, `Http`, `Function` or `Noop`.
    pub provider: String,
    /// `Version`: 1–9 characters, pattern `[0-9A-Za-z_-]+`. redrive emits `1`.
    pub version: String,
}

/// `OutputArtifact`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputArtifact {
    /// `ArtifactName`: 1–100 characters, pattern `[a-zA-Z0-9_\-]+`.
    pub name: String,
    /// `FilePathList`: 1–10 paths of 1–128 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<String>>,
}

/// `InputArtifact`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputArtifact {
    /// `ArtifactName`: 1–100 characters, pattern `[a-zA-Z0-9_\-]+`.
    pub name: String,
}

/// `EnvironmentVariable`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentVariable {
    pub name: String,
    pub value: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub variable_type: Option<EnvironmentVariableType>,
}

/// `FailureConditions` (a stage's `onFailure`). Every member is optional in the
/// model; redrive requires `result: RETRY`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureConditions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<ConditionResult>,
    /// Absent means `FAILED_ACTIONS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_configuration: Option<RetryConfiguration>,
    /// `ConditionList`: exactly one condition. Stored, never acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// **redrive extension** (not in the model): automatic stage retries, 0 to 10
    /// (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<i32>,
}

/// `RetryConfiguration`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_mode: Option<StageRetryMode>,
}

/// `SuccessConditions`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuccessConditions {
    pub conditions: Vec<Condition>,
}

/// `BeforeEntryConditions`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BeforeEntryConditions {
    pub conditions: Vec<Condition>,
}

/// `Condition`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<ConditionResult>,
    /// `RuleDeclarationList`: 1–5 rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<RuleDeclaration>>,
}

/// `RuleDeclaration`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleDeclaration {
    pub name: String,
    pub rule_type_id: RuleTypeId,
    /// `RuleConfigurationMap`: at most 200 entries; values 1–10000 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commands: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_artifacts: Option<Vec<InputArtifact>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `RuleTimeout`: 5–86400.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_in_minutes: Option<i32>,
}

/// `RuleTypeId`. Model: `category` and `provider` required.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleTypeId {
    pub category: RuleCategory,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<RuleOwner>,
    pub provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `Tag`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tag {
    /// `TagKey`: 1–128 characters.
    pub key: String,
    /// `TagValue`: 0–256 characters.
    pub value: String,
}

/// `PipelineMetadata` (in `GetPipeline`'s output).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineMetadata {
    /// `PipelineArn`: pattern `arn:aws(-[\w]+)*:codepipeline:.+:[0-9]{12}:.+`
    /// (the real service's; botocore does not check responses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<EpochSeconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated: Option<EpochSeconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polling_disabled_at: Option<EpochSeconds>,
}

/// `PipelineSummary` (an item of `ListPipelines`' output).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineSummary {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_type: Option<PipelineType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_mode: Option<ExecutionMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<EpochSeconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated: Option<EpochSeconds>,
}

// ---------------------------------------------------------------------------
// Executions

/// `PipelineExecution` (in `GetPipelineExecution`'s output).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineExecution {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_version: Option<i32>,
    /// `PipelineExecutionId`: a lower-case UUID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_execution_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<PipelineExecutionStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_revisions: Option<Vec<ArtifactRevision>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variables: Option<Vec<ResolvedPipelineVariable>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<ExecutionTrigger>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_mode: Option<ExecutionMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_type: Option<ExecutionType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_metadata: Option<PipelineRollbackMetadata>,
}

/// `ArtifactRevision`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRevision {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_change_identifier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<EpochSeconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_url: Option<String>,
}

/// `ResolvedPipelineVariable`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedPipelineVariable {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_value: Option<String>,
}

/// `ExecutionTrigger`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionTrigger {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_type: Option<TriggerType>,
    /// 0–1024 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_detail: Option<String>,
}

/// `StopExecutionTrigger`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopExecutionTrigger {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `PipelineRollbackMetadata`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineRollbackMetadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_target_pipeline_execution_id: Option<String>,
}

/// `PipelineExecutionSummary` (an item of `ListPipelineExecutions`' output).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineExecutionSummary {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_execution_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<PipelineExecutionStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<EpochSeconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<EpochSeconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_revisions: Option<Vec<SourceRevision>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<ExecutionTrigger>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_trigger: Option<StopExecutionTrigger>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_mode: Option<ExecutionMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_type: Option<ExecutionType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_metadata: Option<PipelineRollbackMetadata>,
}

/// `SourceRevision`. Model: `actionName` required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRevision {
    pub action_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_url: Option<String>,
}

/// `PipelineVariable` (a variable given to `StartPipelineExecution`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineVariable {
    /// 1–128 characters, pattern `[A-Za-z0-9@\-_]+`.
    pub name: String,
    /// 1–1000 characters.
    pub value: String,
}

/// `SourceRevisionOverride`. Model: all members required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRevisionOverride {
    pub action_name: String,
    pub revision_type: SourceRevisionType,
    /// `Revision`: 1–1500 characters.
    pub revision_value: String,
}

/// `PipelineExecutionFilter`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineExecutionFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub succeeded_in_stage: Option<SucceededInStageFilter>,
}

/// `SucceededInStageFilter`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SucceededInStageFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_name: Option<String>,
}

// ---------------------------------------------------------------------------
// Pipeline state

/// `StageState` (an item of `GetPipelineState`'s output).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageState {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound_execution: Option<StageExecution>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound_executions: Option<Vec<StageExecution>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound_transition_state: Option<TransitionState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_states: Option<Vec<ActionState>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_execution: Option<StageExecution>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_entry_condition_state: Option<StageConditionState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_success_condition_state: Option<StageConditionState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure_condition_state: Option<StageConditionState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_stage_metadata: Option<RetryStageMetadata>,
}

/// `StageExecution`. Model: `pipelineExecutionId` and `status` required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageExecution {
    pub pipeline_execution_id: String,
    pub status: StageExecutionStatus,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub execution_type: Option<ExecutionType>,
}

/// `TransitionState`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransitionState {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_changed_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_changed_at: Option<EpochSeconds>,
    /// 1–300 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
}

/// `ActionState`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionState {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<ActionRevision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_execution: Option<ActionExecution>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_url: Option<String>,
}

/// `ActionRevision`. Model: all members required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionRevision {
    pub revision_id: String,
    pub revision_change_id: String,
    pub created: EpochSeconds,
}

/// `ActionExecution`: the latest execution of an action in `GetPipelineState`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionExecution {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_execution_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ActionExecutionStatus>,
    /// `ExecutionSummary`: 1–2048 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status_change: Option<EpochSeconds>,
    /// An approval token in CodePipeline; redrive has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_updated_by: Option<String>,
    /// `ExecutionId`: 1–1500 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_execution_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_execution_url: Option<String>,
    /// `Percentage`: 0–100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent_complete: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_details: Option<ErrorDetails>,
    #[serde(rename = "logStreamARN", skip_serializing_if = "Option::is_none")]
    pub log_stream_arn: Option<String>,
}

/// `ErrorDetails`: redrive puts the exception type in `code`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// `Message`: 1–5000 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `StageConditionState`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageConditionState {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_execution: Option<StageConditionsExecution>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition_states: Option<Vec<ConditionState>>,
}

/// `StageConditionsExecution`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageConditionsExecution {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ConditionExecutionStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// `ConditionState`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionState {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_execution: Option<ConditionExecution>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_states: Option<Vec<RuleState>>,
}

/// `ConditionExecution`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionExecution {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ConditionExecutionStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status_change: Option<EpochSeconds>,
}

/// `RuleState`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleState {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<RuleRevision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_execution: Option<RuleExecution>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_url: Option<String>,
}

/// `RuleRevision`. Model: all members required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleRevision {
    pub revision_id: String,
    pub revision_change_id: String,
    pub created: EpochSeconds,
}

/// `RuleExecution`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleExecution {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_execution_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ActionExecutionStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status_change: Option<EpochSeconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_updated_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_execution_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_execution_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_details: Option<ErrorDetails>,
}

/// `RetryStageMetadata`: how often a stage was retried, and by what.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryStageMetadata {
    /// `RetryAttempt`: integer ≥ 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_stage_retry_attempt: Option<i32>,
    /// `RetryAttempt`: integer ≥ 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manual_stage_retry_attempt: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_retry_trigger: Option<RetryTrigger>,
}

// ---------------------------------------------------------------------------
// Action executions

/// `ActionExecutionFilter`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionExecutionFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_execution_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_in_pipeline_execution: Option<LatestInPipelineExecutionFilter>,
}

/// `LatestInPipelineExecutionFilter`. Model: both members required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatestInPipelineExecutionFilter {
    pub pipeline_execution_id: String,
    pub start_time_range: StartTimeRange,
}

/// `ActionExecutionDetail` (an item of `ListActionExecutions`' output). redrive
/// returns one item per attempt.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionExecutionDetail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_execution_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_execution_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_version: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<EpochSeconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<EpochSeconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ActionExecutionStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<ActionExecutionInput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<ActionExecutionOutput>,
}

/// `ActionExecutionInput`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionExecutionInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_type_id: Option<ActionTypeId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_configuration: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_artifacts: Option<Vec<ArtifactDetail>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `ActionExecutionOutput`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionExecutionOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_artifacts: Option<Vec<ArtifactDetail>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_result: Option<ActionExecutionResult>,
    /// `OutputVariablesMap`: keys match `[A-Za-z0-9@\-_]+`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_variables: Option<BTreeMap<String, String>>,
}

/// `ActionExecutionResult`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionExecutionResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_execution_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_execution_summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_execution_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_details: Option<ErrorDetails>,
    #[serde(rename = "logStreamARN", skip_serializing_if = "Option::is_none")]
    pub log_stream_arn: Option<String>,
}

/// `ArtifactDetail`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ArtifactDetail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Spelt `s3location` (all lower case) in the model.
    #[serde(rename = "s3location", skip_serializing_if = "Option::is_none")]
    pub s3_location: Option<S3Location>,
}

/// `S3Location`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct S3Location {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

// ---------------------------------------------------------------------------
// Operations: inputs and outputs

/// `CreatePipelineInput`. Model: `pipeline` required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatePipelineInput {
    pub pipeline: PipelineDeclaration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
}

/// `CreatePipelineOutput`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatePipelineOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineDeclaration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
}

/// `GetPipelineInput`. Model: `name` required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetPipelineInput {
    pub name: String,
    /// Integer ≥ 1; absent means the current version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
}

/// `GetPipelineOutput`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetPipelineOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineDeclaration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PipelineMetadata>,
}

/// `ListPipelinesInput`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPipelinesInput {
    /// `NextToken`: 1–2048 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// `MaxPipelines`: 1–1000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i32>,
}

/// `ListPipelinesOutput`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPipelinesOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipelines: Option<Vec<PipelineSummary>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `UpdatePipelineInput`. Model: `pipeline` required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdatePipelineInput {
    pub pipeline: PipelineDeclaration,
}

/// `UpdatePipelineOutput`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdatePipelineOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineDeclaration>,
}

/// `DeletePipelineInput`. Model: `name` required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletePipelineInput {
    pub name: String,
}

/// `DeletePipeline` has no output shape in the model: the server answers 200 with
/// the body `{}` (botocore ignores the body of an operation without output).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletePipelineOutput {}

/// `StartPipelineExecutionInput`. Model: `name` required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartPipelineExecutionInput {
    pub name: String,
    /// `PipelineVariableList`: 1–50 variables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variables: Option<Vec<PipelineVariable>>,
    /// `ClientRequestToken`: 1–128 characters, pattern `^[a-zA-Z0-9-]+$`. An
    /// `idempotencyToken` in the model: botocore fills a random UUID when the
    /// caller gives none, so every AWS CLI call carries one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_request_token: Option<String>,
    /// `SourceRevisionOverrideList`: 0–50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_revisions: Option<Vec<SourceRevisionOverride>>,
}

/// `StartPipelineExecutionOutput`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartPipelineExecutionOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_execution_id: Option<String>,
}

/// `GetPipelineExecutionInput`. Model: both members required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetPipelineExecutionInput {
    pub pipeline_name: String,
    /// `PipelineExecutionId`: pattern
    /// `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`.
    pub pipeline_execution_id: String,
}

/// `GetPipelineExecutionOutput`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetPipelineExecutionOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_execution: Option<PipelineExecution>,
}

/// `ListPipelineExecutionsInput`. Model: `pipelineName` required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPipelineExecutionsInput {
    pub pipeline_name: String,
    /// `MaxResults`: 1–100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<PipelineExecutionFilter>,
    /// `NextToken`: 1–2048 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `ListPipelineExecutionsOutput`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPipelineExecutionsOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_execution_summaries: Option<Vec<PipelineExecutionSummary>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `StopPipelineExecutionInput`. Model: `pipelineName` and
/// `pipelineExecutionId` required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopPipelineExecutionInput {
    pub pipeline_name: String,
    pub pipeline_execution_id: String,
    /// Abandon in-progress actions instead of letting them finish. Absent = false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abandon: Option<bool>,
    /// `StopPipelineExecutionReason`: at most 200 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `StopPipelineExecutionOutput`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopPipelineExecutionOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_execution_id: Option<String>,
}

/// `GetPipelineStateInput`. Model: `name` required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetPipelineStateInput {
    pub name: String,
}

/// `GetPipelineStateOutput`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetPipelineStateOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_version: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_states: Option<Vec<StageState>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<EpochSeconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated: Option<EpochSeconds>,
}

/// `ListActionExecutionsInput`. Model: `pipelineName` required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListActionExecutionsInput {
    pub pipeline_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<ActionExecutionFilter>,
    /// `MaxResults`: 1–100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i32>,
    /// `NextToken`: 1–2048 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `ListActionExecutionsOutput`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListActionExecutionsOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_execution_details: Option<Vec<ActionExecutionDetail>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `RetryStageExecutionInput`. Model: all four members required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryStageExecutionInput {
    /// 1–100 characters, pattern `[A-Za-z0-9.@\-_]+`.
    pub pipeline_name: String,
    /// 1–100 characters, pattern `[A-Za-z0-9.@\-_]+`.
    pub stage_name: String,
    /// Pattern `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`.
    pub pipeline_execution_id: String,
    pub retry_mode: StageRetryMode,
}

/// `RetryStageExecutionOutput`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryStageExecutionOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_execution_id: Option<String>,
}
