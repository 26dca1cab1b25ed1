//! `redrive policy explain`: a retry schedule, previewed.

use crate::load::{load_file, report_load_error};
use crate::present::Table;
use crate::{OutputFormat, exit};
use redrive_core::dependency::Dependency;
use redrive_core::exception::ExceptionType;
use redrive_core::jitter::JitterDraw;
use redrive_core::name::Name;
use redrive_core::policy::{Jitter, RetryLimit, explain as explain_schedule};
use redrive_core::time::human_duration_ms;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// Pipeline definition (YAML or JSON).
    file: PathBuf,
    /// The action, as STAGE/ACTION.
    #[arg(long, value_name = "STAGE/ACTION")]
    action: String,
    /// The exception type of the failure, e.g. Step.THROTTLING or a custom name.
    #[arg(long = "type", value_name = "EXCEPTION_TYPE")]
    exception_type: String,
    /// Show the exact jittered delays this execution would get.
    #[arg(long, value_name = "ID")]
    execution_id: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

pub fn explain(args: ExplainArgs) -> u8 {
    let loaded = match load_file(&args.file) {
        Ok(l) => l,
        Err(e) => return report_load_error(&args.file, &e, args.output),
    };
    let p = &loaded.pipeline;
    let all_actions =
        || p.stages.iter().flat_map(|s| s.actions.iter().map(move |a| format!("{}/{}", s.name, a.name))).collect::<Vec<_>>().join(", ");
    let Some((stage_name, action_name)) = args.action.split_once('/') else {
        eprintln!("error: --action {:?} must be STAGE/ACTION; actions in {}: {}", args.action, args.file.display(), all_actions());
        return exit::INVALID_INPUT;
    };
    let Some(action) = p.stage_index(stage_name).and_then(|si| p.stages[si].actions.iter().find(|a| a.name.as_str() == action_name)) else {
        eprintln!("error: no action {} in {}; actions: {}", args.action, args.file.display(), all_actions());
        return exit::INVALID_INPUT;
    };
    let t = match ExceptionType::parse(&args.exception_type) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "error: --type: {e}; known types: {}, aliases SageMaker.JOB_INTERNAL_ERROR, SageMaker.CAPACITY_ERROR, SageMaker.RESOURCE_LIMIT, States.Timeout, or a custom name",
                redrive_core::exception::KNOWN_TYPES.join(", ")
            );
            return exit::INVALID_INPUT;
        }
    };
    let draw = |attempt: u32| args.execution_id.as_deref().map(|id| JitterDraw::for_attempt(id, stage_name, action_name, attempt));
    let schedule = explain_schedule(&action.retry_policies, &t, draw);

    if args.output == OutputFormat::Json {
        let mut v = serde_json::to_value(&schedule).expect("json");
        v["action"] = serde_json::json!(args.action);
        v["executionId"] = serde_json::json!(args.execution_id);
        if let Some(name) = &action.dependency {
            let declared = p.dependencies.iter().find(|d| &d.name == name).filter(|d| !d.is_name_only());
            v["dependency"] = serde_json::json!({"name": name, "declared": declared, "mayHoldRetries": true});
        }
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return exit::SUCCEEDED;
    }

    println!("Action {} — failure type {t}", args.action);
    let policy =
        schedule.policy.map(|r| (r, redrive_core::policy::matching_policy(&action.retry_policies, &t).expect("matched").1.into_owned()));
    match (&schedule.policy, &schedule.policy_summary) {
        (Some(r), Some(s)) => println!("Matching policy: {r} {s}"),
        _ => {
            println!("No policy matches {t}: the first failure fails the action (no retries).");
            return exit::SUCCEEDED;
        }
    }
    let jitter = policy.as_ref().map(|(_, p)| p.jitter()).unwrap_or_default();
    match (jitter, &args.execution_id) {
        (Jitter::None, _) => {}
        (_, Some(id)) => println!("Jitter {}: delays below are exactly what execution {id} gets.", jitter.as_str()),
        (_, None) => println!(
            "Jitter {}: delays below are the maximum; each is drawn within the range shown (pass --execution-id for exact values).",
            jitter.as_str()
        ),
    }
    println!("Offsets assume each attempt fails at once; real attempts add their own run time.");
    println!();
    const MAX_ROWS: usize = 100;
    let mut t = Table::right_aligned(&["RETRY", "ATTEMPT", "DELAY", "JITTER RANGE", "STARTS AT"]);
    for r in schedule.retries.iter().take(MAX_ROWS) {
        let range = if jitter == Jitter::None {
            "-".to_string()
        } else {
            format!("{}–{}", human_duration_ms(r.jitter_range_ms.0), human_duration_ms(r.jitter_range_ms.1))
        };
        t.row(vec![
            r.retry_number.to_string(),
            r.attempt.to_string(),
            human_duration_ms(r.delay_ms),
            range,
            format!("+{}", human_duration_ms(r.offset_ms)),
        ]);
    }
    print!("{}", t.render());
    if schedule.retries.len() > MAX_ROWS {
        println!("  … {} more retries (see --output json)", schedule.retries.len() - MAX_ROWS);
    }
    let last_attempt = schedule.retries.last().map_or(1, |r| r.attempt);
    println!();
    println!("Stops: {} — no retry after attempt {last_attempt}.", schedule.stop);
    if let Some((_, p)) = &policy
        && let RetryLimit::ExpireAfterMin(m) = p.limit()
    {
        println!(
            "Expiry: failures later than {m} min after the first attempt started are not retried; with slower attempts fewer retries fit."
        );
    }
    if args.execution_id.is_some() && jitter != Jitter::None {
        println!("Total wait for this execution: {}", human_duration_ms(schedule.total_wait_ms));
    }
    println!("Worst-case total wait: {}", human_duration_ms(schedule.worst_case_total_wait_ms));
    if let Some(name) = &action.dependency {
        println!();
        for line in dependency_note(name, p.dependencies.iter().find(|d| &d.name == name)) {
            println!("{line}");
        }
    }
    exit::SUCCEEDED
}

/// What explain says about an action's dependency: its retries go through the
/// dependency's budget and breaker, which may hold them past the times shown.
fn dependency_note(name: &Name, declared: Option<&Dependency>) -> Vec<String> {
    let mut lines = Vec::new();
    let settings = declared.filter(|d| !d.is_name_only());
    match settings {
        None => lines.push(format!(
            "Dependency: {name} — its retry budget and circuit breaker are the server config's, if it declares {name} (this file does not)."
        )),
        Some(d) => {
            lines.push(format!("Dependency: {name}"));
            if let Some(b) = &d.retry_budget {
                lines.push(format!(
                    "  retry budget: retries at most {}% of first attempts (or {}/s, whichever is more) over {}",
                    b.ratio() * 100.0,
                    b.min_retries_per_second(),
                    human_duration_ms(b.window_seconds() * 1000)
                ));
            }
            if let Some(c) = &d.circuit_breaker {
                lines.push(format!(
                    "  circuit breaker: opens after {} failures in a row, holds every attempt for {}, then lets {} probe(s) through",
                    c.failure_threshold(),
                    human_duration_ms(c.cool_down_ms()),
                    c.half_open_probes()
                ));
            }
        }
    }
    lines.push(
        "A retry due while the budget is spent or the breaker is open is held until admitted (a DEFERRED ledger row; `held` in `redrive state`): the starts above are the earliest."
            .to_string(),
    );
    lines
}
