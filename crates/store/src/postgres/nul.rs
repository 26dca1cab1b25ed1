//! PostgreSQL cannot store the character U+0000 in a text column (SQLite can).
//! A value holding one could never be written, so it is refused up front as a
//! limit — [`TransitionError::Limit`] for that transition alone, or
//! [`StoreError::Limit`] — rather than failing at the server (which would look
//! like a transient error and be retried forever).

use crate::{DlqOp, StoreError, Transition};

fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

/// The first field of `fields` holding U+0000, by name.
fn first_nul<'a>(fields: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Option<&'a str> {
    fields.into_iter().find(|(_, value)| value.is_some_and(has_nul)).map(|(name, _)| name)
}

/// What is wrong with a transition, for PostgreSQL, beyond
/// [`crate::validate::check_transition`].
pub(super) fn transition_problem(t: &Transition) -> Option<String> {
    let id = &t.execution_id;
    let mut fields: Vec<(&str, Option<&str>)> = vec![
        ("execution id", Some(id)),
        ("target name", Some(t.target.name())),
        ("status", Some(&t.status)),
        ("input", Some(&t.input_json)),
        ("state", Some(&t.state_json)),
    ];
    if let Some(token) = t.client_token.as_ref().filter(|_| t.expected_version.is_none()) {
        fields.extend([("client token", Some(token.token.as_str())), ("client token fingerprint", Some(token.fingerprint.as_str()))]);
    }
    for e in &t.ledger {
        fields.extend([
            ("ledger stage", Some(e.stage.as_str())),
            ("ledger action", Some(e.action.as_str())),
            ("ledger trigger", Some(e.trigger.as_str())),
            ("ledger outcome", Some(e.outcome.as_str())),
            ("ledger exception type", e.exception_type.as_deref()),
            ("ledger message", e.message.as_deref()),
            ("ledger decision", e.decision_json.as_deref()),
        ]);
    }
    fields.extend(t.set_timers.iter().map(|timer| ("timer key", Some(timer.key.as_str()))));
    fields.extend(t.clear_timers.iter().map(|key| ("timer key", Some(key.as_str()))));
    for op in &t.dlq {
        match op {
            DlqOp::Enter(w) => fields.extend([
                ("dead-letter entry id", Some(w.id.as_str())),
                ("dead-letter queue", Some(w.queue.as_str())),
                ("dead-letter source", Some(w.source.name())),
                ("dead-letter execution id", Some(w.execution_id.as_str())),
                ("dead-letter stage", Some(w.stage.as_str())),
                ("dead-letter action", Some(w.action.as_str())),
                ("dead-letter exception type", Some(w.exception_type.as_str())),
                ("dead-letter message", Some(w.message.as_str())),
                ("dead-letter input", Some(w.input_json.as_str())),
                ("dead-letter detail", Some(w.detail_json.as_str())),
            ]),
            DlqOp::Take { entry_id, execution_id } => fields
                .extend([("dead-letter entry id", Some(entry_id.as_str())), ("dead-letter execution id", Some(execution_id.as_str()))]),
            DlqOp::Resolve { entry_id } => fields.push(("dead-letter entry id", Some(entry_id.as_str()))),
        }
    }
    first_nul(fields).map(|field| format!("execution {id}: the {field} contains the character U+0000, which PostgreSQL cannot store"))
}

/// [`StoreError::Limit`] if a field of another write holds U+0000.
pub(super) fn check<'a>(what: &str, fields: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Result<(), StoreError> {
    match first_nul(fields) {
        Some(field) => Err(StoreError::Limit(format!("{what}: the {field} contains the character U+0000, which PostgreSQL cannot store"))),
        None => Ok(()),
    }
}
