//! The CodePipeline wire layer: request bodies as the AWS CLI sends them, response
//! field names, timestamps, errors, and native ↔ wire round trips.

use redrive_api::codepipeline::convert::{
    ConvertError, PLACEHOLDER_ROLE_ARN, action_type_id, native_to_wire, parse_declaration, wire_to_native,
};
use redrive_api::codepipeline::errors::{ApiError, ErrorBody, ErrorCode};
use redrive_api::codepipeline::model::*;
use redrive_api::codepipeline::protocol::{Operation, Request, decode_request, encode_response};
use redrive_api::codepipeline::validate::validate_request;
use redrive_core::definition::source::{Node, parse_document};
use redrive_core::definition::{ActionKind, Pipeline, parse_pipeline};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn parse_json(v: &Value) -> Pipeline {
    parse_pipeline(&Node::from_json(v)).unwrap_or_else(|p| panic!("does not parse: {p:#?}\n{v:#}"))
}

fn quickstart() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/quickstart.yaml");
    let text = std::fs::read_to_string(path).expect("examples/quickstart.yaml");
    parse_document(&text).expect("quickstart parses").to_json()
}

/// native → wire → native parses to an equal Pipeline; the wire form parses to it
/// too; wire → native → wire is the identity on a declaration made by native_to_wire.
fn assert_round_trips(native: &Value) -> PipelineDeclaration {
    let pipeline = parse_json(native);
    let wire = native_to_wire(native).expect("native_to_wire");
    assert_eq!(parse_declaration(&wire).expect("wire form parses"), pipeline, "wire form");
    let back = wire_to_native(&wire);
    assert_eq!(parse_json(&back), pipeline, "native → wire → native");
    assert_eq!(native_to_wire(&back).expect("again"), wire, "wire → native → wire");
    // And through the bytes a client sees.
    let bytes = encode_response(&GetPipelineOutput { pipeline: Some(wire.clone()), metadata: None });
    let decoded: GetPipelineOutput = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(decoded.pipeline.as_ref(), Some(&wire));
    wire
}

// ---------------------------------------------------------------------------
// Requests as the AWS CLI sends them

/// The body of the reference's sample request (and of `retry-stage-execution
/// --cli-input-json file://retry-failed-actions.json`).
const RETRY_SAMPLE: &str = r#"{
"pipelineExecutionId": "3137f7cb-7cf7-EXAMPLE",
"pipelineName": "MyFirstPipeline",
"retryMode": "FAILED_ACTIONS",
"stageName": "Staging"
}"#;

#[test]
fn retry_stage_execution_sample_request_deserializes() {
    let op = Operation::from_target("CodePipeline_20150709.RetryStageExecution").unwrap();
    assert_eq!(op, Operation::RetryStageExecution);
    let req = Request::decode(op, RETRY_SAMPLE.as_bytes()).unwrap();
    let Request::RetryStageExecution(input) = &req else { panic!("{req:?}") };
    assert_eq!(
        input,
        &RetryStageExecutionInput {
            pipeline_name: "MyFirstPipeline".into(),
            stage_name: "Staging".into(),
            pipeline_execution_id: "3137f7cb-7cf7-EXAMPLE".into(),
            retry_mode: StageRetryMode::FailedActions,
        }
    );
    // The documentation's id is a placeholder, not a UUID: validation names it.
    let err = validate_request(&req).unwrap_err();
    assert_eq!(err.code, ErrorCode::ValidationException);
    assert!(
        err.message.starts_with("1 validation error detected: Value '3137f7cb-7cf7-EXAMPLE' at 'pipelineExecutionId'"),
        "{}",
        err.message
    );

    let good = RETRY_SAMPLE.replace("3137f7cb-7cf7-EXAMPLE", "3137f7cb-7cf7-4b1e-9f0a-0123456789ab");
    let req = Request::decode(op, good.as_bytes()).unwrap();
    validate_request(&req).unwrap();

    // The response of the reference.
    let out = RetryStageExecutionOutput { pipeline_execution_id: Some("3137f7cb-7cf7-EXAMPLE".into()) };
    assert_eq!(String::from_utf8(encode_response(&out)).unwrap(), r#"{"pipelineExecutionId":"3137f7cb-7cf7-EXAMPLE"}"#);
}

#[test]
fn requests_ignore_unknown_members_and_reject_bad_ones() {
    let op = Operation::RetryStageExecution;
    let with_extra = RETRY_SAMPLE.replace('{', r#"{"someFutureMember": {"x": [1]},"#);
    let input: RetryStageExecutionInput = decode_request(op, with_extra.as_bytes()).unwrap();
    assert_eq!(input.stage_name, "Staging");

    let err =
        decode_request::<RetryStageExecutionInput>(op, RETRY_SAMPLE.replace("FAILED_ACTIONS", "SOME_ACTIONS").as_bytes()).unwrap_err();
    assert_eq!(err.code, ErrorCode::ValidationException);
    assert!(err.message.contains("SOME_ACTIONS") && err.message.contains("ALL_ACTIONS"), "{}", err.message);

    let err = decode_request::<RetryStageExecutionInput>(op, br#"{"pipelineName": "p", "stageName": "s", "pipelineExecutionId": "x"}"#)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::ValidationException);
    assert!(err.message.contains("retryMode"), "{}", err.message);

    let err = decode_request::<RetryStageExecutionInput>(op, b"{not json").unwrap_err();
    assert_eq!(err.code, ErrorCode::SerializationException);
    let err = decode_request::<RetryStageExecutionInput>(op, b"[1]").unwrap_err();
    assert_eq!(err.code, ErrorCode::SerializationException);
    // A key repeated in an object is refused, as on the native API; a BOM is not.
    let dup = RETRY_SAMPLE.replacen("\"pipelineName\"", "\"pipelineName\": \"other\", \"pipelineName\"", 1);
    let err = decode_request::<RetryStageExecutionInput>(op, dup.as_bytes()).unwrap_err();
    assert_eq!(err.code, ErrorCode::SerializationException);
    assert!(err.message.contains("pipelineName"), "{}", err.message);
    let with_bom = [b"\xEF\xBB\xBF".as_slice(), RETRY_SAMPLE.as_bytes()].concat();
    decode_request::<RetryStageExecutionInput>(op, &with_bom).unwrap();

    // An empty body is `{}`: fine for an input without required members.
    let input: ListPipelinesInput = decode_request(Operation::ListPipelines, b"").unwrap();
    assert_eq!(input, ListPipelinesInput::default());
}

#[test]
fn validation_reports_every_violation_in_the_aws_style() {
    let req = Request::ListActionExecutions(ListActionExecutionsInput {
        pipeline_name: "has space".into(),
        filter: Some(ActionExecutionFilter { pipeline_execution_id: Some("ABC".into()), latest_in_pipeline_execution: None }),
        max_results: Some(0),
        next_token: Some(String::new()),
    });
    let err = validate_request(&req).unwrap_err();
    assert!(err.message.starts_with("4 validation errors detected: "), "{}", err.message);
    assert!(err.message.contains(r"Value 'has space' at 'pipelineName' failed to satisfy constraint: Member must satisfy regular expression pattern: [A-Za-z0-9.@\-_]+"));
    assert!(err.message.contains("at 'maxResults' failed to satisfy constraint: Member must have value greater than or equal to 1"));
    assert!(err.message.contains("at 'filter.pipelineExecutionId'"));
    assert!(err.message.contains("at 'nextToken' failed to satisfy constraint: Member must have length greater than or equal to 1"));

    let long = "a".repeat(101);
    let req = Request::GetPipelineState(GetPipelineStateInput { name: long });
    assert!(validate_request(&req).unwrap_err().message.contains("Member must have length less than or equal to 100"));

    let req = Request::StartPipelineExecution(StartPipelineExecutionInput {
        name: "p".into(),
        variables: None,
        client_request_token: Some("tok_en".into()),
        source_revisions: None,
    });
    assert!(validate_request(&req).unwrap_err().message.contains("clientRequestToken"));
}

#[test]
fn operations_and_targets() {
    for op in Operation::ALL {
        assert_eq!(Operation::from_target(&op.target()).unwrap(), *op);
    }
    assert_eq!(Operation::ALL.len(), 12);
    for bad in ["CodePipeline_20150709.PutJobSuccessResult", "CodePipeline_20150709", "Other_20150709.GetPipeline", ""] {
        assert_eq!(Operation::from_target(bad).unwrap_err().code, ErrorCode::UnknownOperationException, "{bad}");
    }
    let req = Request::decode(Operation::GetPipelineState, br#"{"name": "quickstart"}"#).unwrap();
    assert_eq!(req.operation(), Operation::GetPipelineState);
    let req = Request::decode(
        Operation::StopPipelineExecution,
        br#"{"pipelineName":"p","pipelineExecutionId":"e","abandon":true,"reason":"why"}"#,
    )
    .unwrap();
    let Request::StopPipelineExecution(stop) = req else { panic!() };
    assert_eq!(stop.abandon, Some(true));
    assert_eq!(stop.reason.as_deref(), Some("why"));
}

/// `aws codepipeline create-pipeline --cli-input-json file://p.json` sends the
/// declaration as written (botocore serialises members by their model names).
const CREATE_BODY: &str = r#"{
  "pipeline": {
    "name": "MyFirstPipeline",
    "roleArn": "arn:aws:iam::123456789012:role/AWS-CodePipeline-Service",
    "artifactStore": {"type": "S3", "location": "codepipeline-us-east-1-1234567890"},
    "stages": [
      {
        "name": "Build",
        "actions": [
          {
            "name": "Compile",
            "actionTypeId": {"category": "Build", "owner": "Custom", "provider": "Command", "version": "1"},
            "runOrder": 1,
            "configuration": {
              "Command": "[\"make\", \"all\"]",
              "Env": "{\"CC\": \"clang\"}",
              "TimeoutSeconds": "60",
              "ExitCodes": "{\"75\": \"Step.THROTTLING\"}",
              "RetryPolicies": "[{\"ExceptionType\": [\"Action.FAILED\"], \"IntervalSeconds\": 1, \"BackoffRate\": 2, \"MaxAttempts\": 3}]"
            },
            "outputArtifacts": [{"name": "BuildOutput"}],
            "inputArtifacts": []
          }
        ]
      },
      {
        "name": "Deploy",
        "onFailure": {"result": "RETRY", "retryConfiguration": {"retryMode": "ALL_ACTIONS"}},
        "actions": [
          {
            "name": "Hook",
            "actionTypeId": {"category": "Invoke", "owner": "Custom", "provider": "Http", "version": "1"},
            "configuration": {"Url": "https://example.com/hook", "Method": "PUT", "Body": "{\"ok\": true}"}
          }
        ]
      }
    ],
    "version": 1
  },
  "tags": [{"key": "team", "value": "platform"}]
}"#;

#[test]
fn create_pipeline_body_with_a_command_action_and_retry_policies() {
    let req = Request::decode(Operation::CreatePipeline, CREATE_BODY.as_bytes()).unwrap();
    validate_request(&req).unwrap();
    let Request::CreatePipeline(input) = req else { panic!() };
    assert_eq!(input.tags, Some(vec![Tag { key: "team".into(), value: "platform".into() }]));
    let decl = &input.pipeline;
    assert_eq!(decl.role_arn, "arn:aws:iam::123456789012:role/AWS-CodePipeline-Service");
    assert_eq!(decl.artifact_store.as_ref().unwrap().store_type, ArtifactStoreType::S3);
    let compile = &decl.stages[0].actions[0];
    assert_eq!(compile.action_type_id, action_type_id("Command"));
    assert_eq!(compile.configuration.as_ref().unwrap()["TimeoutSeconds"], "60");

    let pipeline = parse_declaration(decl).unwrap();
    let action = &pipeline.stages[0].actions[0];
    let ActionKind::Command(spec) = &action.kind else { panic!("{:?}", action.kind) };
    assert_eq!(spec.argv, ["make", "all"]);
    assert_eq!(spec.env.get("CC").map(String::as_str), Some("clang"));
    assert_eq!(spec.exit_codes.len(), 1);
    assert_eq!(action.timeout_seconds, Some(60));
    assert_eq!(action.retry_policies.len(), 1);
    assert!(action.retry_policies[0].summary().contains("3"), "{}", action.retry_policies[0].summary());
    assert_eq!(pipeline.stages[1].on_failure.unwrap().retry_mode, redrive_core::definition::RetryMode::AllActions);

    // Shown natively: shorthand, retry policies beside the kind.
    let native = wire_to_native(decl);
    let a = &native["stages"][0]["actions"][0];
    assert_eq!(a["command"], json!(["make", "all"]));
    assert_eq!(a["env"], json!({"CC": "clang"}));
    assert_eq!(a["timeoutSeconds"], json!(60));
    assert_eq!(a["exitCodes"], json!({"75": "Step.THROTTLING"}));
    assert_eq!(a["retryPolicies"][0]["MaxAttempts"], json!(3));
    assert_eq!(a["outputArtifacts"], json!([{"name": "BuildOutput"}]));
    assert!(a.get("actionTypeId").is_none() && a.get("configuration").is_none());
    assert_eq!(
        native["stages"][1]["actions"][0]["http"],
        json!({"url": "https://example.com/hook", "method": "PUT", "body": {"ok": true}})
    );
    assert_eq!(native["roleArn"], json!("arn:aws:iam::123456789012:role/AWS-CodePipeline-Service"));
    assert_eq!(parse_json(&native), pipeline);

    // wire → native → wire: equal but for canonical JSON text in configuration.
    let again = native_to_wire(&native).unwrap();
    let conf = again.stages[0].actions[0].configuration.as_ref().unwrap();
    assert_eq!(conf["Command"], r#"["make","all"]"#);
    assert_eq!(conf["Env"], r#"{"CC":"clang"}"#);
    assert_eq!(again.stages[1].actions[0].configuration.as_ref().unwrap()["Body"], r#"{"ok":true}"#);
    let mut expected = decl.clone();
    for (s, stage) in expected.stages.iter_mut().enumerate() {
        for (a, action) in stage.actions.iter_mut().enumerate() {
            action.configuration = again.stages[s].actions[a].configuration.clone();
        }
    }
    assert_eq!(again, expected);
}

#[test]
fn secret_names_survive_the_wire_to_native_conversion() {
    let body = json!({"pipeline": {"name": "p", "stages": [{"name": "S", "actions": [
        {"name": "C", "actionTypeId": {"category": "Build", "owner": "Custom", "provider": "Command", "version": "1"},
         "configuration": {"Command": "[\"deploy\"]", "SecretEnv": "[\"API_TOKEN\"]"}},
        {"name": "H", "actionTypeId": {"category": "Invoke", "owner": "Custom", "provider": "Http", "version": "1"},
         "configuration": {"Url": "https://h/", "SecretHeaders": "{\"Authorization\":{\"prefix\":\"Bearer \",\"secretEnv\":\"API_TOKEN\"}}"}}
    ]}]}});
    let input: CreatePipelineInput = decode_request(Operation::CreatePipeline, body.to_string().as_bytes()).unwrap();
    let native = wire_to_native(&input.pipeline);
    let actions = &native["stages"][0]["actions"];
    assert_eq!(actions[0]["secretEnv"], json!(["API_TOKEN"]), "{native}");
    assert_eq!(actions[1]["http"]["secretHeaders"], json!({"Authorization": {"prefix": "Bearer ", "secretEnv": "API_TOKEN"}}), "{native}");
    assert_eq!(parse_json(&native), parse_declaration(&input.pipeline).unwrap());
    let again = native_to_wire(&native).unwrap();
    assert_eq!(again.stages[0].actions[0].configuration.as_ref().unwrap()["SecretEnv"], r#"["API_TOKEN"]"#);
    assert_eq!(
        again.stages[0].actions[1].configuration.as_ref().unwrap()["SecretHeaders"],
        r#"{"Authorization":{"prefix":"Bearer ","secretEnv":"API_TOKEN"}}"#
    );
}

/// `configuration.Redirects` (issue 13) is the native `http.redirects`, both ways.
#[test]
fn http_redirects_survive_the_wire_to_native_conversion() {
    let body = json!({"pipeline": {"name": "p", "stages": [{"name": "S", "actions": [
        {"name": "H", "actionTypeId": {"category": "Invoke", "owner": "Custom", "provider": "Http", "version": "1"},
         "configuration": {"Url": "https://h/", "Redirects": "ANY_ORIGIN"}}
    ]}]}});
    let input: CreatePipelineInput = decode_request(Operation::CreatePipeline, body.to_string().as_bytes()).unwrap();
    let native = wire_to_native(&input.pipeline);
    assert_eq!(native["stages"][0]["actions"][0]["http"]["redirects"], json!("ANY_ORIGIN"), "{native}");
    assert_eq!(parse_json(&native), parse_declaration(&input.pipeline).unwrap());
    let again = native_to_wire(&native).unwrap();
    assert_eq!(again.stages[0].actions[0].configuration.as_ref().unwrap()["Redirects"], "ANY_ORIGIN");
}

#[test]
fn a_declaration_without_role_arn_gets_the_placeholder() {
    let body = json!({"pipeline": {"name": "p", "stages": [{"name": "S", "actions": [
        {"name": "A", "actionTypeId": {"category": "Test", "owner": "Custom", "provider": "Noop", "version": "1"}}
    ]}]}});
    let input: CreatePipelineInput = decode_request(Operation::CreatePipeline, body.to_string().as_bytes()).unwrap();
    assert_eq!(input.pipeline.role_arn, PLACEHOLDER_ROLE_ARN);
    let native = wire_to_native(&input.pipeline);
    assert!(native.get("roleArn").is_none());
    assert_eq!(native["stages"][0]["actions"][0], json!({"name": "A", "noop": {}}));
    assert_eq!(native_to_wire(&native).unwrap(), input.pipeline);
}

// ---------------------------------------------------------------------------
// Responses: exact member names

#[test]
fn get_pipeline_state_response_field_names() {
    let out = GetPipelineStateOutput {
        pipeline_name: Some("MyFirstPipeline".into()),
        pipeline_version: Some(1),
        created: Some(EpochSeconds::from_unix_ms(1_427_245_911_525)),
        updated: Some(EpochSeconds::from_unix_ms(1_427_245_911_000)),
        stage_states: Some(vec![StageState {
            stage_name: Some("Staging".into()),
            inbound_transition_state: Some(TransitionState { enabled: Some(true), ..Default::default() }),
            latest_execution: Some(StageExecution {
                pipeline_execution_id: "3137f7cb-7cf7-4b1e-9f0a-0123456789ab".into(),
                status: StageExecutionStatus::Failed,
                execution_type: Some(ExecutionType::Standard),
            }),
            action_states: Some(vec![ActionState {
                action_name: Some("Compile".into()),
                latest_execution: Some(ActionExecution {
                    action_execution_id: Some("a-1".into()),
                    status: Some(ActionExecutionStatus::Failed),
                    summary: Some("exit code 1".into()),
                    last_status_change: Some(EpochSeconds::from_unix_ms(1_427_245_912_000)),
                    external_execution_id: Some("attempt-3".into()),
                    percent_complete: Some(100),
                    error_details: Some(ErrorDetails { code: Some("Action.FAILED".into()), message: Some("boom".into()) }),
                    log_stream_arn: Some("arn:log".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            on_failure_condition_state: Some(StageConditionState {
                latest_execution: Some(StageConditionsExecution { status: Some(ConditionExecutionStatus::Succeeded), summary: None }),
                condition_states: None,
            }),
            retry_stage_metadata: Some(RetryStageMetadata {
                auto_stage_retry_attempt: Some(1),
                manual_stage_retry_attempt: Some(2),
                latest_retry_trigger: Some(RetryTrigger::ManualStageRetry),
            }),
            ..Default::default()
        }]),
    };
    let got: Value = serde_json::from_slice(&encode_response(&out)).unwrap();
    assert_eq!(
        got,
        json!({
            "pipelineName": "MyFirstPipeline",
            "pipelineVersion": 1,
            "stageStates": [{
                "stageName": "Staging",
                "inboundTransitionState": {"enabled": true},
                "actionStates": [{
                    "actionName": "Compile",
                    "latestExecution": {
                        "actionExecutionId": "a-1",
                        "status": "Failed",
                        "summary": "exit code 1",
                        "lastStatusChange": 1427245912.0,
                        "externalExecutionId": "attempt-3",
                        "percentComplete": 100,
                        "errorDetails": {"code": "Action.FAILED", "message": "boom"},
                        "logStreamARN": "arn:log"
                    }
                }],
                "latestExecution": {"pipelineExecutionId": "3137f7cb-7cf7-4b1e-9f0a-0123456789ab", "status": "Failed", "type": "STANDARD"},
                "onFailureConditionState": {"latestExecution": {"status": "Succeeded"}},
                "retryStageMetadata": {"autoStageRetryAttempt": 1, "manualStageRetryAttempt": 2, "latestRetryTrigger": "ManualStageRetry"}
            }],
            "created": 1427245911.525,
            "updated": 1427245911.0
        })
    );
    let text = String::from_utf8(encode_response(&out)).unwrap();
    assert!(text.contains(r#""created":1427245911.525"#), "{text}");
    // The reference's get-pipeline-state output reads back.
    let reference = r#"{ "updated": 1427245911.525, "created": 1427245911.525, "pipelineVersion": 1, "pipelineName": "MyFirstPipeline", "stageStates": [ { "actionStates": [], "stageName": "Source", "latestExecution": { "pipelineExecutionId": "9811f7cb-7cf7-SUCCESS", "status": "Succeeded" } }, { "actionStates": [], "stageName": "Staging", "latestExecution": { "pipelineExecutionId": "3137f7cb-7cf7-EXAMPLE", "status": "Failed" } } ] }"#;
    let parsed: GetPipelineStateOutput = serde_json::from_str(reference).unwrap();
    assert_eq!(parsed.updated, Some(EpochSeconds::from_unix_ms(1_427_245_911_525)));
    assert_eq!(parsed.stage_states.unwrap()[1].latest_execution.as_ref().unwrap().status, StageExecutionStatus::Failed);
}

#[test]
fn execution_and_listing_response_field_names() {
    let exec = GetPipelineExecutionOutput {
        pipeline_execution: Some(PipelineExecution {
            pipeline_name: Some("p".into()),
            pipeline_version: Some(3),
            pipeline_execution_id: Some("e".into()),
            status: Some(PipelineExecutionStatus::InProgress),
            status_summary: Some("running".into()),
            trigger: Some(ExecutionTrigger { trigger_type: Some(TriggerType::StartPipelineExecution), trigger_detail: Some("cli".into()) }),
            execution_mode: Some(ExecutionMode::Parallel),
            execution_type: Some(ExecutionType::Standard),
            ..Default::default()
        }),
    };
    assert_eq!(
        serde_json::to_value(&exec).unwrap(),
        json!({"pipelineExecution": {
            "pipelineName": "p", "pipelineVersion": 3, "pipelineExecutionId": "e", "status": "InProgress",
            "statusSummary": "running", "trigger": {"triggerType": "StartPipelineExecution", "triggerDetail": "cli"},
            "executionMode": "PARALLEL", "executionType": "STANDARD"
        }})
    );

    let list = ListPipelineExecutionsOutput {
        pipeline_execution_summaries: Some(vec![PipelineExecutionSummary {
            pipeline_execution_id: Some("e".into()),
            status: Some(PipelineExecutionStatus::Stopped),
            start_time: Some(EpochSeconds::from_unix_ms(1_000)),
            last_update_time: Some(EpochSeconds::from_unix_ms(2_500)),
            stop_trigger: Some(StopExecutionTrigger { reason: Some("because".into()) }),
            ..Default::default()
        }]),
        next_token: Some("t".into()),
    };
    assert_eq!(
        serde_json::to_value(&list).unwrap(),
        json!({"pipelineExecutionSummaries": [{
            "pipelineExecutionId": "e", "status": "Stopped", "startTime": 1.0, "lastUpdateTime": 2.5,
            "stopTrigger": {"reason": "because"}
        }], "nextToken": "t"})
    );

    let actions = ListActionExecutionsOutput {
        action_execution_details: Some(vec![ActionExecutionDetail {
            pipeline_execution_id: Some("e".into()),
            action_execution_id: Some("a".into()),
            pipeline_version: Some(1),
            stage_name: Some("Build".into()),
            action_name: Some("Compile".into()),
            start_time: Some(EpochSeconds::from_unix_ms(1_000)),
            last_update_time: Some(EpochSeconds::from_unix_ms(1_001)),
            updated_by: Some("redrive".into()),
            status: Some(ActionExecutionStatus::Succeeded),
            input: Some(ActionExecutionInput {
                action_type_id: Some(action_type_id("Noop")),
                configuration: Some(BTreeMap::from([("FailFirst".to_string(), "1".to_string())])),
                input_artifacts: Some(vec![ArtifactDetail {
                    name: Some("src".into()),
                    s3_location: Some(S3Location { bucket: Some("b".into()), key: Some("k".into()) }),
                }]),
                ..Default::default()
            }),
            output: Some(ActionExecutionOutput {
                execution_result: Some(ActionExecutionResult {
                    external_execution_id: Some("attempt-1".into()),
                    external_execution_summary: Some("ok".into()),
                    error_details: None,
                    ..Default::default()
                }),
                output_variables: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
                ..Default::default()
            }),
        }]),
        next_token: None,
    };
    assert_eq!(
        serde_json::to_value(&actions).unwrap(),
        json!({"actionExecutionDetails": [{
            "pipelineExecutionId": "e", "actionExecutionId": "a", "pipelineVersion": 1, "stageName": "Build",
            "actionName": "Compile", "startTime": 1.0, "lastUpdateTime": 1.001, "updatedBy": "redrive", "status": "Succeeded",
            "input": {
                "actionTypeId": {"category": "Test", "owner": "Custom", "provider": "Noop", "version": "1"},
                "configuration": {"FailFirst": "1"},
                "inputArtifacts": [{"name": "src", "s3location": {"bucket": "b", "key": "k"}}]
            },
            "output": {
                "executionResult": {"externalExecutionId": "attempt-1", "externalExecutionSummary": "ok"},
                "outputVariables": {"k": "v"}
            }
        }]})
    );

    let pipelines = ListPipelinesOutput {
        pipelines: Some(vec![PipelineSummary {
            name: Some("p".into()),
            version: Some(2),
            pipeline_type: Some(PipelineType::V2),
            execution_mode: Some(ExecutionMode::Superseded),
            created: Some(EpochSeconds::from_unix_ms(0)),
            updated: Some(EpochSeconds::from_unix_ms(1)),
        }]),
        next_token: None,
    };
    assert_eq!(
        serde_json::to_value(&pipelines).unwrap(),
        json!({"pipelines": [{"name": "p", "version": 2, "pipelineType": "V2", "executionMode": "SUPERSEDED", "created": 0.0, "updated": 0.001}]})
    );

    let get = GetPipelineOutput {
        pipeline: None,
        metadata: Some(PipelineMetadata {
            pipeline_arn: Some("arn:aws:codepipeline:local:000000000000:p".into()),
            created: Some(EpochSeconds::from_unix_ms(5_000)),
            updated: None,
            polling_disabled_at: None,
        }),
    };
    assert_eq!(
        serde_json::to_value(&get).unwrap(),
        json!({"metadata": {"pipelineArn": "arn:aws:codepipeline:local:000000000000:p", "created": 5.0}})
    );
    assert_eq!(String::from_utf8(encode_response(&DeletePipelineOutput {})).unwrap(), "{}");
    assert_eq!(
        serde_json::to_value(StartPipelineExecutionOutput { pipeline_execution_id: Some("e".into()) }).unwrap(),
        json!({"pipelineExecutionId": "e"})
    );
    assert_eq!(
        serde_json::to_value(StopPipelineExecutionOutput { pipeline_execution_id: Some("e".into()) }).unwrap(),
        json!({"pipelineExecutionId": "e"})
    );
}

#[test]
fn enumerations_use_the_model_strings() {
    macro_rules! strings {
        ($t:ty) => {
            <$t>::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>()
        };
    }
    assert_eq!(strings!(PipelineExecutionStatus), ["Cancelled", "InProgress", "Stopped", "Stopping", "Succeeded", "Superseded", "Failed"]);
    assert_eq!(strings!(StageExecutionStatus), ["Cancelled", "InProgress", "Failed", "Stopped", "Stopping", "Succeeded", "Skipped"]);
    assert_eq!(strings!(ActionExecutionStatus), ["InProgress", "Abandoned", "Succeeded", "Failed"]);
    assert_eq!(strings!(StageRetryMode), ["FAILED_ACTIONS", "ALL_ACTIONS"]);
    assert_eq!(strings!(ExecutionMode), ["QUEUED", "SUPERSEDED", "PARALLEL"]);
    assert_eq!(strings!(ActionOwner), ["AWS", "ThirdParty", "Custom"]);
    assert_eq!(strings!(ActionCategory), ["Source", "Build", "Deploy", "Test", "Invoke", "Approval", "Compute"]);
    assert_eq!(strings!(ConditionResult), ["ROLLBACK", "FAIL", "RETRY", "SKIP"]);
    assert_eq!(strings!(RetryTrigger), ["AutomatedStageRetry", "ManualStageRetry"]);
    for s in StageExecutionStatus::ALL {
        assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        assert_eq!(serde_json::from_value::<StageExecutionStatus>(json!(s.as_str())).unwrap(), *s);
        assert_eq!(StageExecutionStatus::from_wire(s.as_str()), Some(*s));
    }
}

// ---------------------------------------------------------------------------
// Timestamps

#[test]
fn epoch_seconds_round_trip() {
    let s = EpochSeconds::from_unix_ms(1_427_245_911_525);
    assert_eq!(serde_json::to_string(&s).unwrap(), "1427245911.525");
    assert_eq!(serde_json::from_str::<EpochSeconds>("1427245911.525").unwrap(), s);
    assert_eq!(serde_json::from_str::<EpochSeconds>("1427245911").unwrap(), EpochSeconds::from_unix_ms(1_427_245_911_000));
    assert_eq!(serde_json::from_str::<EpochSeconds>("1427245911.5254").unwrap(), s, "rounded to the millisecond");
    assert_eq!(serde_json::to_string(&EpochSeconds::from_unix_ms(-1_500)).unwrap(), "-1.5");
    assert!(serde_json::from_str::<EpochSeconds>("\"1427245911\"").is_err());
    assert!(serde_json::from_str::<EpochSeconds>("1e300").is_err());
    let t = redrive_core::time::Timestamp::from_unix_ms(1_795_000_000_123);
    assert_eq!(redrive_core::time::Timestamp::from(EpochSeconds::from(t)), t);

    // Every millisecond of a spread of instants survives, with at most 3 decimals.
    let mut ms: i64 = 1_795_000_000_000;
    for i in 0..20_000i64 {
        ms += i * 7919 % 100_003;
        for v in [ms, -ms, i] {
            let e = EpochSeconds::from_unix_ms(v);
            let text = serde_json::to_string(&e).unwrap();
            let decimals = text.split_once('.').map(|(_, d)| d.len()).unwrap_or(0);
            assert!(decimals <= 3, "{v} → {text}");
            assert_eq!(serde_json::from_str::<EpochSeconds>(&text).unwrap(), e, "{v} → {text}");
        }
    }
}

// ---------------------------------------------------------------------------
// Errors

#[test]
fn error_bodies_statuses_and_types() {
    let e = ApiError::new(ErrorCode::ConflictException, "another retry of stage Deploy is in progress");
    assert_eq!(e.http_status(), 409);
    assert_eq!(e.body_json(), r#"{"__type":"ConflictException","message":"another retry of stage Deploy is in progress"}"#);
    assert_eq!(e.headers(), [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", "ConflictException")]);

    for code in ErrorCode::ALL {
        let expected = match code {
            ErrorCode::ConflictException => 409,
            ErrorCode::InternalFailure => 500,
            ErrorCode::ServiceUnavailable => 503,
            ErrorCode::MissingAuthenticationTokenException | ErrorCode::UnrecognizedClientException => 401,
            ErrorCode::InvalidSignatureException | ErrorCode::AccessDeniedException => 403,
            _ => 400,
        };
        assert_eq!(code.http_status(), expected, "{code}");
        assert_eq!(ErrorCode::from_type(code.as_str()), Some(*code));
        assert_eq!(ErrorCode::from_type(&format!("com.amazonaws.codepipeline#{code}")), Some(*code));
        assert_eq!(ErrorCode::from_type(&format!("{code}:http://internal.amazon.com/coral/")), Some(*code));
    }
    for name in [
        "ValidationException",
        "PipelineNotFoundException",
        "PipelineNameInUseException",
        "InvalidStructureException",
        "PipelineVersionNotFoundException",
        "PipelineExecutionNotFoundException",
        "PipelineExecutionNotStoppableException",
        "DuplicatedStopRequestException",
        "StageNotFoundException",
        "StageNotRetryableException",
        "NotLatestPipelineExecutionException",
        "ConflictException",
        "ConcurrentPipelineExecutionsLimitExceededException",
        "ConcurrentModificationException",
        "InvalidNextTokenException",
        "LimitExceededException",
        "ActionNotFoundException",
    ] {
        let code = ErrorCode::from_type(name).unwrap_or_else(|| panic!("{name}"));
        assert!(code.in_service_model(), "{name}");
    }
    assert_eq!(ErrorCode::from_type("NoSuchThing"), None);
    let body: ErrorBody = serde_json::from_str(r#"{"__type": "x#StageNotFoundException", "Message": "m"}"#).unwrap();
    assert_eq!(body.message, "m");
}

#[test]
fn invalid_declarations_become_the_matching_exception() {
    let mut native = quickstart();
    native["stages"][0]["actions"][0]["retryPolicies"][0]["maxAttempts"] = json!(99);
    let err = native_to_wire(&native).unwrap_err();
    let ConvertError::Invalid(problems) = &err else { panic!("{err:?}") };
    assert!(problems[0].path.contains("maxAttempts"), "{problems:?}");
    let api = err.to_api_error();
    assert_eq!(api.code, ErrorCode::InvalidActionDeclarationException);
    assert!(api.message.contains("$.stages[0].actions[0].retryPolicies[0].maxAttempts"), "{}", api.message);

    let mut native = quickstart();
    native["stages"][1]["name"] = json!("Build");
    assert_eq!(native_to_wire(&native).unwrap_err().to_api_error().code, ErrorCode::InvalidStageDeclarationException);
    let mut native = quickstart();
    native["executionMode"] = json!("SOMETIMES");
    assert_eq!(native_to_wire(&native).unwrap_err().to_api_error().code, ErrorCode::InvalidStructureException);

    // Valid for redrive but not for the wire shape: an unknown category.
    let mut native = quickstart();
    native["stages"][0]["actions"][0] = json!({"name": "Compile", "actionTypeId": {"category": "Whatever", "provider": "Noop"}});
    let err = native_to_wire(&native).unwrap_err();
    assert!(matches!(err, ConvertError::Shape { .. }), "{err:?}");
    assert_eq!(err.to_api_error().code, ErrorCode::InvalidStructureException);
}

// ---------------------------------------------------------------------------
// Conversion

#[test]
fn quickstart_round_trips() {
    let native = quickstart();
    let wire = assert_round_trips(&native);
    let json = serde_json::to_value(&wire).unwrap();
    assert_eq!(json["name"], "quickstart");
    assert_eq!(json["roleArn"], PLACEHOLDER_ROLE_ARN);
    assert_eq!(json["executionMode"], "PARALLEL");
    assert_eq!(
        json["stages"][0]["actions"][0],
        json!({
            "name": "Compile",
            "actionTypeId": {"category": "Build", "owner": "Custom", "provider": "Command", "version": "1"},
            "runOrder": 1,
            "configuration": {
                "Command": r#"["./scripts/flaky.sh","2"]"#,
                "TimeoutSeconds": "60",
                "RetryPolicies": r#"[{"backoffRate":2,"exceptionType":["Action.FAILED"],"intervalSeconds":0.5,"maxAttempts":3}]"#
            }
        })
    );
    assert_eq!(
        json["stages"][0]["actions"][1]["configuration"],
        json!({"FailFirst": "2", "FailWith": "Step.THROTTLING", "RetryAfterSeconds": "1", "SleepMs": "100"})
    );
    assert_eq!(json["stages"][0]["actions"][1]["actionTypeId"]["category"], "Test");
    assert_eq!(json["stages"][1]["actions"][0]["configuration"]["ExitCodes"], r#"{"75":"Step.THROTTLING"}"#);
    // The Step Functions spelling travels as written.
    assert_eq!(
        json["stages"][1]["actions"][1]["configuration"]["RetryPolicies"],
        r#"[{"ErrorEquals":["States.ALL"],"IntervalSeconds":0.5,"JitterStrategy":"FULL","MaxAttempts":2}]"#
    );
    // Every configuration value meets the model's minimum length of 1.
    for stage in &wire.stages {
        for action in &stage.actions {
            for (k, v) in action.configuration.iter().flatten() {
                assert!(!k.is_empty() && k.len() <= 50 && !v.is_empty(), "{k}={v:?}");
            }
        }
    }
}

/// Every kind and every member the conversion carries.
fn everything() -> Value {
    json!({
        "name": "everything",
        "executionMode": "PARALLEL",
        "maxConcurrentExecutions": 4,
        "deadLetterQueue": "retry-everything",
        "roleArn": "arn:aws:iam::123456789012:role/mine",
        "artifactStore": {"type": "S3", "location": "my-bucket"},
        "pipelineType": "V2",
        "variables": [{"name": "env", "defaultValue": "dev"}],
        "version": 7,
        "stages": [
            {
                "name": "Build",
                "blockers": [{"name": "b", "type": "Schedule"}],
                "actions": [
                    {
                        "name": "Compile",
                        "command": ["make", "-j", 4],
                        "env": {"A": "1", "B": 2},
                        "workingDirectory": "src",
                        "exitCodes": {"75": "Step.THROTTLING", "3": "PaymentDeclined"},
                        "timeoutSeconds": 600,
                        "RetryPolicies": [{"ExceptionType": ["Step.THROTTLING"], "IntervalSeconds": 1, "BackoffRate": 1.5, "ExpireAfterMin": 10}],
                        "outputArtifacts": [{"name": "out"}],
                        "region": "eu-west-1",
                        "namespace": "build"
                    },
                    {"name": "Plain", "command": ["true"], "runOrder": 2},
                    {"name": "Text", "runOrder": 2, "http": {"url": "http://127.0.0.1:9000/a", "body": "hello"}},
                    {"name": "Quoted", "runOrder": 2, "http": {"url": "http://127.0.0.1:9000/b", "body": "123", "headers": {}}},
                    {"name": "Empty", "runOrder": 2, "http": {"url": "http://127.0.0.1:9000/c", "body": "", "method": "GET"}},
                    {"name": "JsonText", "runOrder": 2, "http": {"url": "http://127.0.0.1:9000/d", "body": "{\"a\": 1}"}},
                    {"name": "Structured", "runOrder": 3, "http": {"method": "POST", "url": "https://example.com/e", "headers": {"X-Token": "t"}, "body": {"a": [1, 2.5, null, true]}}}
                ]
            },
            {
                "name": "Deploy",
                "onFailure": {"result": "RETRY", "retryConfiguration": {"retryMode": "ALL_ACTIONS"}, "maxRetries": 3},
                "onSuccess": {"conditions": [{"result": "FAIL", "rules": [{"name": "r", "ruleTypeId": {"category": "Rule", "provider": "DeploymentWindow"}}]}]},
                "actions": [
                    {"name": "Rollout", "function": "rollout", "retryPolicies": [{"exceptionType": "*", "maxAttempts": 0}]},
                    {"name": "Smoke", "noop": null, "timeoutSeconds": 5},
                    {"name": "Smoke2", "noop": {"failFirst": 1, "failWith": "Job.CAPACITY_ERROR", "sleepMs": 0, "retryAfterSeconds": 0.25},
                     "Retry": [{"ErrorEquals": ["Job.CAPACITY_ERROR"], "MaxAttempts": 2}]},
                    {"name": "Wire", "actionTypeId": {"category": "Deploy", "owner": "Custom", "provider": "Command", "version": "1"},
                     "configuration": {"Command": "[\"deploy\",  \"--now\"]", "TimeoutSeconds": 30}},
                    {"name": "WireCanonical", "actionTypeId": {"provider": "Function"}, "configuration": {"FunctionName": "f"}}
                ]
            }
        ]
    })
}

#[test]
fn every_kind_round_trips() {
    let native = everything();
    let wire = assert_round_trips(&native);
    assert_eq!(wire.role_arn, "arn:aws:iam::123456789012:role/mine");
    assert_eq!(wire.max_concurrent_executions, Some(4));
    assert_eq!(wire.dead_letter_queue.as_deref(), Some("retry-everything"));
    assert_eq!(wire.version, Some(7));
    assert_eq!(wire.pipeline_type, Some(PipelineType::V2));
    assert_eq!(wire.stages[0].blockers.as_ref().unwrap()[0].blocker_type, BlockerType::Schedule);
    let on_failure = wire.stages[1].on_failure.as_ref().unwrap();
    assert_eq!(on_failure.result, Some(ConditionResult::Retry));
    assert_eq!(on_failure.max_retries, Some(3));

    let conf = |s: usize, a: usize| wire.stages[s].actions[a].configuration.clone().unwrap_or_default();
    let compile = conf(0, 0);
    assert_eq!(compile["Command"], r#"["make","-j",4]"#);
    assert_eq!(compile["Env"], r#"{"A":"1","B":2}"#);
    assert_eq!(compile["WorkingDirectory"], "src");
    assert_eq!(compile["TimeoutSeconds"], "600");
    assert!(compile["RetryPolicies"].contains(r#""ExpireAfterMin":10"#));
    assert_eq!(wire.stages[0].actions[0].region.as_deref(), Some("eu-west-1"));
    assert_eq!(conf(0, 2)["Body"], "hello");
    assert_eq!(conf(0, 3)["Body"], r#""123""#);
    assert_eq!(conf(0, 3)["Headers"], "{}");
    assert_eq!(conf(0, 4)["Body"], r#""""#);
    assert_eq!(conf(0, 5)["Body"], r#""{\"a\": 1}""#);
    assert_eq!(conf(0, 6)["Body"], r#"{"a":[1,2.5,null,true]}"#);
    assert_eq!(
        conf(1, 0),
        BTreeMap::from([
            ("FunctionName".into(), "rollout".into()),
            ("RetryPolicies".into(), r#"[{"exceptionType":"*","maxAttempts":0}]"#.into())
        ])
    );
    assert_eq!(conf(1, 1), BTreeMap::from([("TimeoutSeconds".into(), "5".into())]));
    assert_eq!(wire.stages[1].actions[2].configuration.as_ref().unwrap()["RetryAfterSeconds"], "0.25");
    // A wire-form action keeps its category and its configuration text.
    assert_eq!(wire.stages[1].actions[3].action_type_id.category, ActionCategory::Deploy);
    assert_eq!(conf(1, 3)["Command"], r#"["deploy",  "--now"]"#);
    assert_eq!(conf(1, 3)["TimeoutSeconds"], "30");
    assert_eq!(wire.stages[1].actions[4].action_type_id, action_type_id("Function"));

    // Back to native: canonical actions become shorthand, the Deploy one stays wire.
    let back = wire_to_native(&wire);
    let actions = &back["stages"][1]["actions"];
    assert_eq!(actions[0]["function"], "rollout");
    assert_eq!(actions[1], json!({"name": "Smoke", "noop": {}, "timeoutSeconds": 5}));
    assert_eq!(actions[3]["actionTypeId"]["category"], "Deploy");
    assert_eq!(actions[4], json!({"name": "WireCanonical", "function": "f"}));
    assert_eq!(back["stages"][0]["actions"][3]["http"]["body"], "123");
    assert_eq!(back["stages"][0]["actions"][4]["http"]["body"], "");
    assert_eq!(back["stages"][0]["actions"][5]["http"]["body"], "{\"a\": 1}");
    assert_eq!(back["maxConcurrentExecutions"], 4);
    assert_eq!(back["stages"][1]["onFailure"]["maxRetries"], 3);
    assert_eq!(back["artifactStore"], json!({"type": "S3", "location": "my-bucket"}));

    let pipeline = parse_json(&native);
    assert_eq!(pipeline.max_concurrent_executions, 4);
    assert_eq!(pipeline.stages[1].on_failure.unwrap().max_retries, 3);
}

#[test]
fn the_wrapped_get_pipeline_shape_is_accepted() {
    let native = json!({"pipeline": quickstart(), "metadata": {"pipelineArn": "x"}});
    let wire = native_to_wire(&native).unwrap();
    assert_eq!(wire, native_to_wire(&quickstart()).unwrap());
}

#[test]
fn wire_actions_that_do_not_decode_stay_in_wire_form() {
    let cases = [
        (json!({"Command": "[\"a\""}), "configuration.Command"),
        (json!({"Command": "\"ls\""}), "configuration.Command"),
        (json!({"Command": "[\"a\"]", "Shell": "bash"}), "configuration.Shell"),
        (json!({"Command": "[\"a\"]", "TimeoutSeconds": "soon"}), "configuration.TimeoutSeconds"),
        (json!({"Command": "[\"a\"]", "RetryPolicies": "{}"}), "configuration.RetryPolicies"),
        (json!({"Env": "{}"}), "configuration.Command"),
    ];
    for (conf, path) in cases {
        let decl: PipelineDeclaration = serde_json::from_value(json!({
            "name": "p", "roleArn": PLACEHOLDER_ROLE_ARN,
            "stages": [{"name": "S", "actions": [{"name": "A", "actionTypeId": action_type_id("Command"), "configuration": conf}]}]
        }))
        .unwrap();
        let native = wire_to_native(&decl);
        let action = &native["stages"][0]["actions"][0];
        assert!(action.get("actionTypeId").is_some(), "{action}");
        let problems = parse_pipeline(&Node::from_json(&native)).unwrap_err();
        assert!(problems.iter().any(|p| p.path.ends_with(path)), "{path}: {problems:#?}");
        let direct = parse_declaration(&decl).unwrap_err();
        assert_eq!(direct, problems);
    }

    // Members of action kinds redrive lacks are rejected by name.
    let mut decl = native_to_wire(&quickstart()).unwrap();
    decl.stages[0].actions[0].timeout_in_minutes = Some(10);
    decl.stages[0].actions[1].commands = Some(vec!["echo hi".into()]);
    let problems = parse_declaration(&decl).unwrap_err();
    assert!(problems.iter().any(|p| p.field == "timeoutInMinutes"), "{problems:#?}");
    assert!(problems.iter().any(|p| p.field == "commands"), "{problems:#?}");
    assert_eq!(parse_pipeline(&Node::from_json(&wire_to_native(&decl))).unwrap_err(), problems);
}

#[test]
fn wire_numbers_and_bodies_normalise() {
    let decl: PipelineDeclaration = serde_json::from_value(json!({
        "name": "p",
        "stages": [{"name": "S", "actions": [
            {"name": "N", "actionTypeId": action_type_id("Noop"),
             "configuration": {"FailFirst": " 2 ", "SleepMs": "0x10", "RetryAfterSeconds": "1.50"}},
            {"name": "H", "actionTypeId": action_type_id("Http"),
             "configuration": {"Url": "http://h/x", "Body": "not json", "Headers": "{\"A\" : \"b\"}"}},
            {"name": "E", "actionTypeId": action_type_id("Noop"), "configuration": {}}
        ]}]
    }))
    .unwrap();
    let pipeline = parse_declaration(&decl).unwrap();
    let native = wire_to_native(&decl);
    assert_eq!(native["stages"][0]["actions"][0]["noop"], json!({"failFirst": 2, "sleepMs": 16, "retryAfterSeconds": 1.5}));
    assert_eq!(native["stages"][0]["actions"][1]["http"]["body"], "not json");
    assert_eq!(parse_json(&native), pipeline);
    let again = native_to_wire(&native).unwrap();
    let conf = |a: usize| again.stages[0].actions[a].configuration.clone();
    assert_eq!(conf(0).unwrap()["FailFirst"], "2");
    assert_eq!(conf(0).unwrap()["SleepMs"], "16");
    assert_eq!(conf(0).unwrap()["RetryAfterSeconds"], "1.5");
    assert_eq!(conf(1).unwrap()["Body"], "not json");
    assert_eq!(conf(1).unwrap()["Headers"], r#"{"A":"b"}"#);
    assert_eq!(conf(2), None, "an empty configuration is left out");
    assert_eq!(parse_declaration(&again).unwrap(), pipeline);
}

// ---------------------------------------------------------------------------
// Properties

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Strings that stress the configuration encodings: JSON look-alikes, quotes,
    /// whitespace, numbers, unicode.
    fn tricky() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("123".to_string()),
            Just(" 1".to_string()),
            Just("null".to_string()),
            Just("true".to_string()),
            Just("{\"a\": 1}".to_string()),
            Just("[1,2]".to_string()),
            Just("\"quoted\"".to_string()),
            "[ -~]{0,12}",
            "\\PC{0,8}",
        ]
    }

    fn body() -> impl Strategy<Value = Value> {
        prop_oneof![
            tricky().prop_map(Value::String),
            any::<i32>().prop_map(Value::from),
            // At most 15 significant digits: see convert's note on float precision.
            (-100_000_000i64..100_000_000).prop_map(|n| Value::from(n as f64 / 1000.0)),
            Just(json!(null)),
            Just(json!({"nested": ["x", 1, null]})),
            Just(json!([])),
        ]
    }

    fn argv_item() -> impl Strategy<Value = Value> {
        prop_oneof![tricky().prop_filter("no NUL", |s| !s.contains('\0')).prop_map(Value::String), any::<i16>().prop_map(Value::from)]
    }

    prop_compose! {
        fn pipeline()(
            argv in proptest::collection::vec(argv_item(), 0..4),
            env in proptest::collection::btree_map("[A-Z][A-Z0-9_]{0,5}", tricky().prop_filter("no NUL", |s| !s.contains('\0')), 0..3),
            header in "[ -~&&[^\r\n]]{0,10}",
            body in body(),
            fail_first in 0u32..5,
            sleep_ms in 0u64..10_000,
            retry_after in prop_oneof![Just(None), (0u32..100_000).prop_map(|n| Some(f64::from(n) / 1000.0))],
            interval in (0u32..10_000).prop_map(|n| f64::from(n) / 1000.0),
            timeout in proptest::option::of(1u64..100_000),
            run_order in 1u32..5,
        ) -> Value {
            let mut argv = argv;
            argv.insert(0, json!("prog"));
            let mut noop = json!({"failFirst": fail_first, "sleepMs": sleep_ms, "failWith": "Step.THROTTLING"});
            if let Some(r) = retry_after {
                noop["retryAfterSeconds"] = json!(r);
            }
            let mut compile = json!({
                "name": "Compile", "runOrder": run_order, "command": argv, "env": env,
                "retryPolicies": [{"exceptionType": ["Action.FAILED"], "intervalSeconds": interval, "maxAttempts": 2}]
            });
            if let Some(t) = timeout {
                compile["timeoutSeconds"] = json!(t);
            }
            json!({
                "name": "prop",
                "stages": [{"name": "S", "actions": [
                    compile,
                    {"name": "Call", "http": {"url": "http://127.0.0.1:1/x", "headers": {"X-H": header}, "body": body}},
                    {"name": "Nothing", "noop": noop, "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 1}]}
                ]}]
            })
        }
    }

    proptest! {
        #[test]
        fn native_and_wire_round_trip(native in pipeline()) {
            assert_round_trips(&native);
        }

        #[test]
        /// Exact within ±70 000 years of 1970 (see `EpochSeconds`).
        fn epoch_seconds_survive_any_millisecond(ms in -2_200_000_000_000_000i64..2_200_000_000_000_000) {
            let e = EpochSeconds::from_unix_ms(ms);
            let text = serde_json::to_string(&e).unwrap();
            prop_assert_eq!(serde_json::from_str::<EpochSeconds>(&text).unwrap(), e);
        }
    }
}

#[test]
fn retry_control_members_travel_on_the_wire() {
    let native = json!({
        "name": "guarded",
        "dependencies": [
            {"name": "payments-api", "retryBudget": {"ratio": 0.1, "minRetriesPerSecond": 5, "window": "60s"},
             "circuitBreaker": {"failureThreshold": 20, "coolDown": 30, "halfOpenProbes": 1}},
            {"name": "ledger"}
        ],
        "stages": [{"name": "S", "actions": [
            {"name": "Pay", "http": {"url": "http://127.0.0.1:9/pay"}, "dependency": "payments-api", "onExhausted": "PAUSE"},
            {"name": "Book", "command": ["true"], "dependency": "ledger", "concurrency": {"key": "$.input.tenant", "max": 2}},
            {"name": "Plain", "noop": {}}
        ]}]
    });
    let wire = assert_round_trips(&native);
    let deps = wire.dependencies.as_ref().expect("dependencies travel as an extension member");
    assert_eq!(deps[0].name, "payments-api");
    assert_eq!(deps[0].retry_budget.as_ref().unwrap().window, Some(DurationValue::Text("60s".into())));
    assert_eq!(deps[0].circuit_breaker.as_ref().unwrap().cool_down, Some(DurationValue::Seconds(30.into())));
    let conf = |a: usize| wire.stages[0].actions[a].configuration.clone().unwrap_or_default();
    assert_eq!(conf(0)["OnExhausted"], "PAUSE");
    assert_eq!(conf(0)["Dependency"], "payments-api");
    assert_eq!(conf(1)["Dependency"], "ledger");
    assert_eq!(conf(1)["Concurrency"], r#"{"key":"$.input.tenant","max":2}"#);
    assert!(!conf(2).contains_key("OnExhausted") && !conf(2).contains_key("Dependency"), "{:?}", conf(2));

    let pipeline = parse_declaration(&wire).unwrap();
    assert_eq!(pipeline.dependencies.len(), 2);
    let pay = &pipeline.stages[0].actions[0];
    assert_eq!(pay.on_exhausted, redrive_core::policy::OnExhausted::Pause);
    assert_eq!(pay.dependency.as_ref().map(|n| n.as_str()), Some("payments-api"));

    // As the AWS CLI's --cli-input-json (or boto3 without validation) sends them.
    let body = json!({"pipeline": {"name": "p", "dependencies": [{"name": "d", "circuitBreaker": {"failureThreshold": 3, "coolDown": "5s"}}],
        "stages": [{"name": "S", "actions": [
        {"name": "N", "actionTypeId": {"category": "Test", "owner": "Custom", "provider": "Noop", "version": "1"},
         "configuration": {"OnExhausted": "PAUSE", "Dependency": "d"}}]}]}});
    let input: CreatePipelineInput = decode_request(Operation::CreatePipeline, body.to_string().as_bytes()).unwrap();
    let parsed = parse_declaration(&input.pipeline).unwrap();
    assert_eq!(parsed.stages[0].actions[0].on_exhausted, redrive_core::policy::OnExhausted::Pause);
    let native = wire_to_native(&input.pipeline);
    assert_eq!(native["stages"][0]["actions"][0], json!({"name": "N", "noop": {}, "onExhausted": "PAUSE", "dependency": "d"}));
    assert_eq!(parse_json(&native), parsed);
}

#[test]
fn retry_control_keys_are_checked_on_the_wire() {
    let decl = |conf: Value, extra: Value| {
        let mut action = json!({"name": "N", "actionTypeId": {"provider": "Noop"}, "configuration": conf});
        action.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let doc = json!({"name": "p", "stages": [{"name": "S", "actions": [action]}]});
        parse_pipeline(&Node::from_json(&doc)).unwrap_err()
    };
    let p = decl(json!({"OnExhausted": "SOMETIMES"}), json!({}));
    assert_eq!(p[0].path, "$.stages[0].actions[0].configuration.OnExhausted", "{p:#?}");
    assert_eq!(p[0].allowed.as_deref(), Some("FAIL or PAUSE"), "{p:#?}");
    let p = decl(json!({"OnExhausted": "PAUSE"}), json!({"onExhausted": "FAIL"}));
    assert!(p[0].message.contains("twice"), "{p:#?}");
    let p = decl(json!({"Concurrency": "{\"key\": \"$.input.t\", \"max\": 0}"}), json!({}));
    assert!(p[0].path.starts_with("$.stages[0].actions[0].configuration.Concurrency"), "{p:#?}");
    let p = decl(json!({"Concurrency": "{\"key\": \"$.input.t\", \"max\": 1}"}), json!({"concurrency": {"key": "$.input.t", "max": 1}}));
    assert!(p[0].message.contains("twice"), "{p:#?}");
    let p = decl(json!({"Dependency": "nobody"}), json!({}));
    assert_eq!(p[0].path, "$.stages[0].actions[0].configuration.Dependency", "{p:#?}");
}
