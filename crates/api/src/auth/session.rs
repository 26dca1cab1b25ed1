//! Console sessions: a browser logs in once with a bearer token
//! (`POST /console/login`) and then carries a session cookie instead.
//!
//! A session is 256 random bits from the operating system, sent to the browser
//! once in an `HttpOnly; SameSite=Strict` cookie; the server keeps only its
//! SHA-256, with the hash of the token it was opened with, in memory (a
//! restart, or a change of leader in a cluster, asks for a login again). Each
//! request with the cookie looks the token up again, so revoking or expiring
//! the token ends its sessions at once. A session ends
//! [`CONSOLE_SESSION_MAX_AGE_MS`] after its login, after
//! [`CONSOLE_SESSION_IDLE_MS`] unused, or at logout; at most
//! [`MAX_CONSOLE_SESSIONS`] are kept (a login beyond that ends the least
//! recently used one).
//!
//! A cookie is sent by the browser whoever made the page, so a state-changing
//! request authenticated by it must also carry [`CONSOLE_HEADER`] — a custom
//! header that a cross-site form cannot send and a cross-site script cannot
//! send without a preflight this server never grants.

use super::token;
use axum::http::{HeaderMap, HeaderValue, header};
use redrive_core::limits::{CONSOLE_SESSION_IDLE_MS, CONSOLE_SESSION_MAX_AGE_MS, MAX_CONSOLE_SESSIONS};
use redrive_core::time::Timestamp;
use std::collections::HashMap;
use std::sync::Mutex;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "redrive_session";
/// The header the console's script sends with every request (value `1`);
/// required on state-changing requests authenticated by the session cookie.
pub const CONSOLE_HEADER: &str = "x-redrive-console";

struct Session {
    /// SHA-256 of the bearer token the session was opened with.
    token_hash: String,
    opened_at: Timestamp,
    used_at: Timestamp,
}

impl Session {
    fn live(&self, now: Timestamp) -> bool {
        now.ms_since(self.opened_at) < ms(CONSOLE_SESSION_MAX_AGE_MS) && now.ms_since(self.used_at) < ms(CONSOLE_SESSION_IDLE_MS)
    }
}

fn ms(limit: u64) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The open sessions, by the SHA-256 of their cookie value.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Opens a session for the token whose hash is `token_hash`; returns the
    /// cookie value (shown to the browser once, never kept).
    pub fn open(&self, token_hash: String, now: Timestamp) -> Result<String, String> {
        let mut bytes = [0u8; token::TOKEN_RANDOM_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| format!("the operating system's random source failed: {e}"))?;
        let value = token::hex(&bytes);
        let mut open = self.lock();
        open.retain(|_, s| s.live(now));
        while open.len() >= MAX_CONSOLE_SESSIONS {
            let Some(oldest) = open.iter().min_by_key(|(_, s)| s.used_at).map(|(k, _)| k.clone()) else { break };
            open.remove(&oldest);
        }
        open.insert(token::hash(&value), Session { token_hash, opened_at: now, used_at: now });
        debug_assert!(open.len() <= MAX_CONSOLE_SESSIONS);
        Ok(value)
    }

    /// The token hash of the live session `value`, marking it used; an expired
    /// session is ended.
    pub fn token_of(&self, value: &str, now: Timestamp) -> Option<String> {
        let key = token::hash(value);
        let mut open = self.lock();
        let session = open.get_mut(&key)?;
        if !session.live(now) {
            open.remove(&key);
            return None;
        }
        session.used_at = now;
        Some(session.token_hash.clone())
    }

    /// Ends the session `value`; whether it was open.
    pub fn close(&self, value: &str) -> bool {
        self.lock().remove(&token::hash(value)).is_some()
    }

    /// Sessions open (live or not yet swept).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The session cookie's value in `headers`, if one was sent.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
}

/// Whether the request carries [`CONSOLE_HEADER`]`: 1`.
pub fn from_console_script(headers: &HeaderMap) -> bool {
    headers.get(CONSOLE_HEADER).is_some_and(|v| v.as_bytes() == b"1")
}

/// The `Set-Cookie` value opening a session (`secure` when served over TLS).
pub fn set_cookie(value: &str, secure: bool) -> HeaderValue {
    let max_age_s = CONSOLE_SESSION_MAX_AGE_MS / 1000;
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_s}{secure}"))
        .expect("hex digits and fixed text form a header value")
}

/// The `Set-Cookie` value deleting the session cookie.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}"))
        .expect("fixed text forms a header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_or_old_and_close() {
        let sessions = Sessions::default();
        let t0 = Timestamp::from_unix_ms(1_767_225_600_000);
        let a = sessions.open("h".into(), t0).unwrap();
        let b = sessions.open("h".into(), t0).unwrap();
        assert_ne!(a, b);
        assert_eq!(sessions.token_of(&a, t0.plus_ms(1000)).as_deref(), Some("h"));
        assert_eq!(sessions.token_of("nonsense", t0), None);
        // Used every 59 minutes, a session still ends 12 hours after its login.
        let mut now = t0;
        while now.ms_since(t0) + 59 * 60_000 < ms(CONSOLE_SESSION_MAX_AGE_MS) {
            now = now.plus_ms(59 * 60_000);
            assert!(sessions.token_of(&a, now).is_some(), "at {now}");
        }
        assert_eq!(sessions.token_of(&a, t0.plus_ms(CONSOLE_SESSION_MAX_AGE_MS)), None, "too old");
        assert_eq!(sessions.token_of(&b, t0.plus_ms(CONSOLE_SESSION_IDLE_MS)), None, "idle too long");
        let c = sessions.open("h".into(), t0).unwrap();
        assert!(sessions.close(&c));
        assert!(!sessions.close(&c));
        assert_eq!(sessions.token_of(&c, t0), None);
    }

    #[test]
    fn sessions_are_bounded_by_ending_the_least_recently_used() {
        let sessions = Sessions::default();
        let t0 = Timestamp::from_unix_ms(0);
        let first = sessions.open("h".into(), t0).unwrap();
        let second = sessions.open("h".into(), t0.plus_ms(1)).unwrap();
        for i in 2..MAX_CONSOLE_SESSIONS {
            sessions.open("h".into(), t0.plus_ms(2 + i as u64)).unwrap();
        }
        assert!(sessions.token_of(&first, t0.plus_ms(5_000)).is_some(), "first used last");
        sessions.open("h".into(), t0.plus_ms(6_000)).unwrap();
        assert_eq!(sessions.len(), MAX_CONSOLE_SESSIONS);
        assert!(sessions.token_of(&second, t0.plus_ms(6_001)).is_none(), "the least recently used one ended");
        assert!(sessions.token_of(&first, t0.plus_ms(6_001)).is_some());
    }

    #[test]
    fn the_cookie_is_read_among_others_and_set_with_its_attributes() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; redrive_session=abc ; b=2"));
        assert_eq!(cookie(&h), Some("abc"));
        assert_eq!(
            set_cookie("abc", true).to_str().unwrap(),
            "redrive_session=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200; Secure"
        );
        assert!(!clear_cookie(false).to_str().unwrap().contains("Secure"));
    }
}
