//! Paging of every listing: the page size (`limit`) and the opaque `nextToken`s.
//! Every token is parsed here, the same way for every list: one this server did
//! not issue is a `ValidationException` (400) naming `nextToken`, never an empty page.

use redrive_core::time::Timestamp;
use redrive_engine::service::ServiceError;
use redrive_store::ExecutionCursor;

/// Default and largest page sizes of listings.
pub const DEFAULT_PAGE_SIZE: usize = 100;
pub use redrive_core::limits::MAX_PAGE_SIZE;

/// `limit` of a listing: [`DEFAULT_PAGE_SIZE`] when absent, else `1..=MAX_PAGE_SIZE`.
pub fn page_limit(limit: Option<usize>) -> Result<usize, ServiceError> {
    match limit {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
        Some(n) => Err(ServiceError::Validation(format!("limit {n} is out of range 1..={MAX_PAGE_SIZE}"))),
    }
}

/// The paging query of a listing with no other parameters.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct Page {
    /// The previous page's `nextToken`.
    pub next_token: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

fn bad_token(t: &str) -> ServiceError {
    ServiceError::Validation(format!("nextToken {t:?} is not a token this server issued"))
}

/// Opaque execution page token: `<created_at_ms>.<id>`.
pub fn execution_token(c: &ExecutionCursor) -> String {
    keyset_token(c.created_at, &c.id)
}

pub fn parse_execution_token(t: &str) -> Result<ExecutionCursor, ServiceError> {
    let (created_at, id) = parse_keyset_token(t)?;
    redrive_engine::service::validate_execution_id("nextToken", &id).map_err(|_| bad_token(t))?;
    Ok(ExecutionCursor { created_at, id })
}

/// Opaque page token of `<ms>.<id>` orderings (executions, entries, runs).
pub fn keyset_token(at: Timestamp, id: &str) -> String {
    format!("{}.{}", at.unix_ms(), id)
}

pub fn parse_keyset_token(t: &str) -> Result<(Timestamp, String), ServiceError> {
    let (ms, id) = t.split_once('.').ok_or_else(|| bad_token(t))?;
    let ms: i64 = ms.parse().map_err(|_| bad_token(t))?;
    if id.is_empty() || id.len() > 100 {
        return Err(bad_token(t));
    }
    Ok((Timestamp::from_unix_ms(ms), id.to_string()))
}

/// A token of a listing ordered by name (pipelines, queues): the last name
/// of the previous page, which must be a valid name.
pub fn parse_name_token(t: &str) -> Result<&str, ServiceError> {
    redrive_engine::service::validate_name("nextToken", t).map_err(|_| bad_token(t))?;
    Ok(t)
}

/// A token of a listing ordered by sequence number (action executions).
pub fn parse_seq_token(t: &str) -> Result<i64, ServiceError> {
    t.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| bad_token(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bogus_ones_are_refused() {
        let c = ExecutionCursor { created_at: Timestamp::from_unix_ms(5), id: "a1b2c3d4-0000-4000-8000-000000000000".into() };
        assert_eq!(parse_execution_token(&execution_token(&c)).ok(), Some(c));
        for bogus in ["", "x", "12", "x.y", "1."] {
            assert!(parse_keyset_token(bogus).is_err(), "{bogus}");
        }
        for bogus in ["", "x", "-1", "1.5"] {
            assert!(parse_seq_token(bogus).is_err(), "{bogus}");
        }
        assert!(parse_name_token("has space").is_err());
        assert!(parse_name_token("ok-name").is_ok());
        assert!(page_limit(Some(0)).is_err());
        assert_eq!(page_limit(None).ok(), Some(DEFAULT_PAGE_SIZE));
    }
}
