//! Input checks shared by every backend, run before anything is sent to storage.
//!
//! A refused call changes nothing. Everything here reports [`StoreError::Limit`]:
//! the call can never succeed as written, so retrying it is pointless.

use crate::limits::{
    MAX_CLIENT_TOKEN_CHARS, MAX_DEFINITION_BYTES, MAX_FINGERPRINT_BYTES, MAX_INPUT_BYTES, MAX_STATE_BYTES, MAX_TRANSITIONS_PER_COMMIT,
};
use crate::{StoreError, Transition};

/// Checks a `commit` call against [`crate::limits`] and its internal consistency:
/// every ledger entry and timer of a transition must belong to that transition's
/// execution. The client token of a create must have 1 to
/// [`MAX_CLIENT_TOKEN_CHARS`] characters (tokens on updates are ignored, so not
/// checked).
pub fn check_commit(transitions: &[Transition]) -> Result<(), StoreError> {
    if transitions.len() > MAX_TRANSITIONS_PER_COMMIT {
        return Err(StoreError::Limit(format!(
            "commit has {} transitions; at most {MAX_TRANSITIONS_PER_COMMIT} are allowed in one commit",
            transitions.len()
        )));
    }
    for (i, t) in transitions.iter().enumerate() {
        let id = &t.execution_id;
        if t.state_json.len() > MAX_STATE_BYTES {
            return Err(StoreError::Limit(format!(
                "transitions[{i}] (execution {id}): state is {} bytes; the maximum is {MAX_STATE_BYTES} bytes",
                t.state_json.len()
            )));
        }
        if t.input_json.len() > MAX_INPUT_BYTES {
            return Err(StoreError::Limit(format!(
                "transitions[{i}] (execution {id}): input is {} bytes; the maximum is {MAX_INPUT_BYTES} bytes",
                t.input_json.len()
            )));
        }
        if let Some((j, e)) = t.ledger.iter().enumerate().find(|(_, e)| &e.execution_id != id) {
            return Err(StoreError::Limit(format!(
                "transitions[{i}].ledger[{j}]: entry belongs to execution {}, but the transition is for execution {id}",
                e.execution_id
            )));
        }
        if let Some((j, timer)) = t.set_timers.iter().enumerate().find(|(_, tm)| &tm.execution_id != id) {
            return Err(StoreError::Limit(format!(
                "transitions[{i}].set_timers[{j}]: timer belongs to execution {}, but the transition is for execution {id}",
                timer.execution_id
            )));
        }
        if let Some(token) = t.client_token.as_ref().filter(|_| t.expected_version.is_none()) {
            let chars = token.token.chars().count();
            if chars == 0 || chars > MAX_CLIENT_TOKEN_CHARS {
                return Err(StoreError::Limit(format!(
                    "transitions[{i}] (execution {id}): client token has {chars} characters; it must have 1 to {MAX_CLIENT_TOKEN_CHARS}"
                )));
            }
            if token.fingerprint.len() > MAX_FINGERPRINT_BYTES {
                return Err(StoreError::Limit(format!(
                    "transitions[{i}] (execution {id}): client token fingerprint is {} bytes; the maximum is {MAX_FINGERPRINT_BYTES} bytes",
                    token.fingerprint.len()
                )));
            }
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
