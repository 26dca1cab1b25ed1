//! Input checks shared by every backend, run before anything is sent to storage.
//!
//! A refused call changes nothing. Everything here reports [`StoreError::Limit`]:
//! the call can never succeed as written, so retrying it is pointless.

use crate::limits::{
    MAX_CLIENT_TOKEN_BYTES, MAX_DEFINITION_BYTES, MAX_DLQ_DETAIL_BYTES, MAX_DLQ_MESSAGE_BYTES, MAX_FAILURE_MESSAGE_BYTES,
    MAX_FINGERPRINT_BYTES, MAX_INPUT_BYTES, MAX_REDRIVE_RUN_JSON_BYTES, MAX_STATE_BYTES, MAX_TRANSITIONS_PER_COMMIT,
};
use crate::{DlqOp, ExecutionFault, MAX_MAX_REDRIVES, RedriveRunRecord, StoreError, Transition};
use redrive_core::name::NAME_MAX_LEN;

/// Checks the size of a `commit` call: at most [`MAX_TRANSITIONS_PER_COMMIT`]
/// transitions. Each transition is checked on its own by [`check_transition`].
pub fn check_commit(transitions: &[Transition]) -> Result<(), StoreError> {
    if transitions.len() > MAX_TRANSITIONS_PER_COMMIT {
        return Err(StoreError::Limit(format!(
            "commit has {} transitions; at most {MAX_TRANSITIONS_PER_COMMIT} are allowed in one commit",
            transitions.len()
        )));
    }
    Ok(())
}

/// What is wrong with one transition, if anything (a refusal of that transition
/// alone, [`crate::TransitionError::Limit`]): its sizes against
/// [`crate::limits`] and its internal consistency — every ledger entry and timer
/// must belong to the transition's execution. The client token of a create must
/// have 1 to [`MAX_CLIENT_TOKEN_BYTES`] bytes (tokens on updates are ignored, so
/// not checked). Dead-letter ops are checked by [`check_dlq_op`]. The engine runs
/// this before it submits a transition; the store runs it again.
pub fn check_transition(t: &Transition) -> Result<(), String> {
    let id = &t.execution_id;
    let sizes = [("state", t.state_json.len(), MAX_STATE_BYTES), ("input", t.input_json.len(), MAX_INPUT_BYTES)];
    for (what, len, max) in sizes {
        if len > max {
            return Err(format!("execution {id}: {what} is {len} bytes; the maximum is {max} bytes"));
        }
    }
    if let Some((j, e)) = t.ledger.iter().enumerate().find(|(_, e)| &e.execution_id != id) {
        return Err(format!("ledger[{j}]: entry belongs to execution {}, but the transition is for execution {id}", e.execution_id));
    }
    if let Some((j, e)) = t.ledger.iter().enumerate().find(|(_, e)| e.message.as_ref().is_some_and(|m| m.len() > MAX_FAILURE_MESSAGE_BYTES))
    {
        let len = e.message.as_ref().map_or(0, String::len);
        return Err(format!("execution {id}: ledger[{j}] message is {len} bytes; the maximum is {MAX_FAILURE_MESSAGE_BYTES} bytes"));
    }
    if let Some((j, timer)) = t.set_timers.iter().enumerate().find(|(_, tm)| &tm.execution_id != id) {
        return Err(format!(
            "set_timers[{j}]: timer belongs to execution {}, but the transition is for execution {id}",
            timer.execution_id
        ));
    }
    if let Some(token) = t.client_token.as_ref().filter(|_| t.expected_version.is_none()) {
        let len = token.token.len();
        if len == 0 || len > MAX_CLIENT_TOKEN_BYTES {
            return Err(format!("execution {id}: client token is {len} bytes; it must be 1 to {MAX_CLIENT_TOKEN_BYTES} bytes"));
        }
        if token.fingerprint.len() > MAX_FINGERPRINT_BYTES {
            return Err(format!(
                "execution {id}: client token fingerprint is {} bytes; the maximum is {MAX_FINGERPRINT_BYTES} bytes",
                token.fingerprint.len()
            ));
        }
    }
    for (j, op) in t.dlq.iter().enumerate() {
        check_dlq_op(op).map_err(|problem| format!("execution {id}: dlq[{j}]: {problem}"))?;
    }
    Ok(())
}

/// Checks a quarantine's fault: a non-empty exception type, a message of at most
/// [`MAX_FAILURE_MESSAGE_BYTES`].
pub fn check_fault(id: &str, fault: &ExecutionFault) -> Result<(), StoreError> {
    if fault.exception_type.is_empty() || fault.message.len() > MAX_FAILURE_MESSAGE_BYTES {
        return Err(StoreError::Limit(format!(
            "quarantine of execution {id}: the fault needs an exception type and a message of at most {MAX_FAILURE_MESSAGE_BYTES} bytes"
        )));
    }
    Ok(())
}

/// What is wrong with one [`DlqOp`], if anything: ids must be non-empty, an
/// entering entry's queue a valid queue name (see [`check_dlq_queue_name`]), its
/// message at most [`MAX_DLQ_MESSAGE_BYTES`], its detail at most
/// [`MAX_DLQ_DETAIL_BYTES`] and its input at most [`MAX_INPUT_BYTES`].
fn check_dlq_op(op: &DlqOp) -> Result<(), String> {
    match op {
        DlqOp::Enter(w) => {
            if w.id.is_empty() {
                return Err("the dead-letter entry id is empty".to_owned());
            }
            let entry = &w.id;
            if let Some(problem) = queue_name_problem(&w.queue) {
                return Err(format!("dead-letter entry {entry}: {problem}"));
            }
            if w.execution_id.is_empty() {
                return Err(format!("dead-letter entry {entry}: the execution id is empty"));
            }
            let sizes = [
                ("message", w.message.len(), MAX_DLQ_MESSAGE_BYTES),
                ("detail_json", w.detail_json.len(), MAX_DLQ_DETAIL_BYTES),
                ("input_json", w.input_json.len(), MAX_INPUT_BYTES),
            ];
            for (field, len, max) in sizes {
                if len > max {
                    return Err(format!("dead-letter entry {entry}: {field} is {len} bytes; the maximum is {max} bytes"));
                }
            }
            Ok(())
        }
        DlqOp::Take { entry_id, execution_id } => {
            if entry_id.is_empty() {
                return Err("Take: the dead-letter entry id is empty".to_owned());
            }
            if execution_id.is_empty() {
                return Err(format!("Take of dead-letter entry {entry_id}: the execution id is empty"));
            }
            Ok(())
        }
        DlqOp::Resolve { entry_id } if entry_id.is_empty() => Err("Resolve: the dead-letter entry id is empty".to_owned()),
        DlqOp::Resolve { .. } => Ok(()),
    }
}

fn queue_name_problem(name: &str) -> Option<String> {
    let chars = name.chars().count();
    (chars == 0 || chars > NAME_MAX_LEN)
        .then(|| format!("dead-letter queue name {name:?} has {chars} characters; it must have 1 to {NAME_MAX_LEN}"))
}

/// Checks a dead-letter queue name: 1 to [`NAME_MAX_LEN`] characters.
pub fn check_dlq_queue_name(name: &str) -> Result<(), StoreError> {
    queue_name_problem(name).map_or(Ok(()), |problem| Err(StoreError::Limit(problem)))
}

/// Checks a queue's `max_redrives`: 1 to [`MAX_MAX_REDRIVES`].
pub fn check_max_redrives(queue: &str, max_redrives: u32) -> Result<(), StoreError> {
    if !(1..=MAX_MAX_REDRIVES).contains(&max_redrives) {
        return Err(StoreError::Limit(format!(
            "dead-letter queue {queue}: max_redrives {max_redrives} is out of range; it must be 1 to {MAX_MAX_REDRIVES}"
        )));
    }
    Ok(())
}

/// Checks a redrive run: a non-empty id, `request_json` and `summary_json` at
/// most [`MAX_REDRIVE_RUN_JSON_BYTES`] each.
pub fn check_redrive_run(run: &RedriveRunRecord) -> Result<(), StoreError> {
    if run.id.is_empty() {
        return Err(StoreError::Limit("redrive run: the id is empty".to_owned()));
    }
    for (field, len) in [("request_json", run.request_json.len()), ("summary_json", run.summary_json.len())] {
        if len > MAX_REDRIVE_RUN_JSON_BYTES {
            return Err(StoreError::Limit(format!(
                "redrive run {}: {field} is {len} bytes; the maximum is {MAX_REDRIVE_RUN_JSON_BYTES} bytes",
                run.id
            )));
        }
    }
    Ok(())
}

/// Checks a pipeline definition against [`MAX_DEFINITION_BYTES`].
pub fn check_definition(name: &str, definition_json: &str) -> Result<(), StoreError> {
    if definition_json.len() > MAX_DEFINITION_BYTES {
        return Err(StoreError::Limit(format!(
            "pipeline {name}: definition is {} bytes; the maximum is {MAX_DEFINITION_BYTES} bytes",
            definition_json.len()
        )));
    }
    Ok(())
}

/// Largest [`crate::TokenRecord::grant_json`].
pub const MAX_GRANT_JSON_BYTES: usize = 8 * 1024;
/// Largest [`crate::AuditRecord::summary_json`].
pub const MAX_AUDIT_SUMMARY_BYTES: usize = 4 * 1024;
/// Largest [`crate::AuditRecord::action`].
pub const MAX_AUDIT_ACTION_BYTES: usize = 200;

/// A token: a name of 1 to [`NAME_MAX_LEN`] bytes, a lower-case hex SHA-256,
/// a grant of at most [`MAX_GRANT_JSON_BYTES`].
pub fn check_token(t: &crate::TokenRecord) -> Result<(), StoreError> {
    if t.name.is_empty() || t.name.len() > NAME_MAX_LEN {
        return Err(StoreError::Limit(format!("token name is {} bytes; it must be 1 to {NAME_MAX_LEN}", t.name.len())));
    }
    let hex = t.token_hash.len() == crate::TOKEN_HASH_HEX_LEN && t.token_hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !hex {
        return Err(StoreError::Limit(format!("token {}: the hash is not {} lower-case hex digits", t.name, crate::TOKEN_HASH_HEX_LEN)));
    }
    if t.grant_json.len() > MAX_GRANT_JSON_BYTES {
        return Err(StoreError::Limit(format!(
            "token {}: grant_json is {} bytes; the maximum is {MAX_GRANT_JSON_BYTES}",
            t.name,
            t.grant_json.len()
        )));
    }
    Ok(())
}

/// An audit record: target of at most [`NAME_MAX_LEN`] bytes, principal and
/// action of 1 to [`MAX_AUDIT_ACTION_BYTES`], summary within its limit.
pub fn check_audit(r: &crate::AuditRecord) -> Result<(), StoreError> {
    let target = r.target.as_ref().map_or(0, String::len);
    let fields = [
        ("principal", r.principal.len(), MAX_AUDIT_ACTION_BYTES),
        ("target", target, NAME_MAX_LEN),
        ("action", r.action.len(), MAX_AUDIT_ACTION_BYTES),
        ("summary_json", r.summary_json.len(), MAX_AUDIT_SUMMARY_BYTES),
    ];
    if let Some((field, len, max)) = fields.into_iter().find(|(_, len, max)| len > max) {
        return Err(StoreError::Limit(format!("audit record: {field} is {len} bytes; the maximum is {max}")));
    }
    if r.principal.is_empty() || r.action.is_empty() {
        return Err(StoreError::Limit("audit record: principal and action must not be empty".to_owned()));
    }
    Ok(())
}

/// Bytes of one dependency's state (its window holds at most an hour of
/// one-second buckets).
pub const MAX_DEPENDENCY_STATE_BYTES: usize = 512 * 1024;

pub fn check_dependencies(records: &[crate::DependencyRecord]) -> Result<(), StoreError> {
    if records.len() > crate::MAX_DEPENDENCY_RECORDS {
        return Err(StoreError::Limit(format!(
            "{} dependency records; at most {} per write",
            records.len(),
            crate::MAX_DEPENDENCY_RECORDS
        )));
    }
    for r in records {
        if r.name.is_empty() || r.name.len() > NAME_MAX_LEN {
            return Err(StoreError::Limit(format!("dependency name is {} bytes; it must be 1 to {NAME_MAX_LEN}", r.name.len())));
        }
        if r.state_json.len() > MAX_DEPENDENCY_STATE_BYTES {
            return Err(StoreError::Limit(format!(
                "dependency {}: state is {} bytes; the maximum is {MAX_DEPENDENCY_STATE_BYTES}",
                r.name,
                r.state_json.len()
            )));
        }
    }
    Ok(())
}
