//! Secrets of `secretEnv`: where their values come from (the server's
//! environment, or a secrets file), and scrubbing them out of whatever an
//! attempt reads back from its process.
//!
//! A value is looked up when the attempt starts and handed only to the
//! command's environment; it is never stored. Everything the runner reads back
//! (stdout/stderr tails, `$REDRIVE_ERROR_FILE`, `$REDRIVE_OUTPUT_FILE`) is
//! scrubbed before it becomes a message or an output: each value, in its raw
//! and JSON-escaped spellings, becomes `***`; a tail cut at its start loses its
//! partial first line (it could end with part of a value); and the outcome is
//! scrubbed again (every string of the output, the message, the exception type).

use super::AttemptOutcome;
use redrive_core::exception::{ExceptionType, Failure};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What replaces a secret's value.
pub const REDACTED: &str = "***";
/// A secrets file is read up to this size.
const MAX_SECRETS_FILE_BYTES: u64 = 1 << 20;

/// Where `secretEnv` values come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Secrets {
    /// The server's environment, read at attempt time.
    #[default]
    Environment,
    /// `NAME=value` lines of a file only its owner may read (`--secrets-file`),
    /// read at attempt time (so it can be rotated without a restart).
    File(PathBuf),
}

impl Secrets {
    /// A secrets file, checked now (a bad one stops the server before it starts).
    pub fn file(path: &Path) -> Result<Secrets, String> {
        read_file(path)?;
        Ok(Secrets::File(path.to_path_buf()))
    }

    /// The values of `names`; `Err` names the first one that has none.
    pub async fn resolve(&self, names: &[String]) -> Result<Resolved, Failure> {
        if names.is_empty() {
            return Ok(Resolved::default());
        }
        let pairs = match self {
            Secrets::Environment => names.iter().map(|n| (n.clone(), std::env::var(n).ok())).collect::<Vec<_>>(),
            Secrets::File(path) => {
                let path = path.clone();
                let read = tokio::task::spawn_blocking(move || read_file(&path)).await;
                let entries = read.map_err(|e| e.to_string()).and_then(|r| r).map_err(|e| Failure::new(ExceptionType::SecretMissing, e))?;
                names.iter().map(|n| (n.clone(), entries.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))).collect()
            }
        };
        let mut values = Vec::with_capacity(pairs.len());
        for (name, value) in pairs {
            let Some(value) = value else {
                let source = match self {
                    Secrets::Environment => "the server's environment".to_string(),
                    Secrets::File(p) => format!("the secrets file {}", p.display()),
                };
                return Err(Failure::new(ExceptionType::SecretMissing, format!("secret {name} is not set in {source}")));
            };
            values.push((name, value));
        }
        Ok(Resolved { values })
    }
}

/// Reads a secrets file: a regular file, not readable or writable by group or
/// others, of `NAME=value` lines (`#` comments and blank lines skipped).
fn read_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let shown = path.display();
    // One open file is checked and read (what is checked is what is read),
    // opened without blocking (a FIFO is refused by the check, never waited on).
    // A symbolic link is followed: mounted secrets often are links.
    let cannot = |e: std::io::Error| format!("cannot read the secrets file {shown}: {e}");
    let file = std::os::unix::fs::OpenOptionsExt::custom_flags(std::fs::OpenOptions::new().read(true), libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(format!("the secrets file {shown} is not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!("the secrets file {shown} has mode {mode:04o}; it must be readable by its owner only (chmod 600 {shown})"));
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(format!("the secrets file {shown} must belong to the user running redrive"));
    }
    if meta.len() > MAX_SECRETS_FILE_BYTES {
        return Err(format!("the secrets file {shown} is over {MAX_SECRETS_FILE_BYTES} bytes"));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_SECRETS_FILE_BYTES + 1), &mut text).map_err(cannot)?;
    if text.len() as u64 > MAX_SECRETS_FILE_BYTES {
        return Err(format!("the secrets file {shown} is over {MAX_SECRETS_FILE_BYTES} bytes"));
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The line itself is never quoted back: it holds a value.
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!("the secrets file {shown}, line {}: expected NAME=value", i + 1));
        };
        out.push((name.trim_end().to_string(), value.to_string()));
    }
    Ok(out)
}

/// The secret values of one attempt.
#[derive(Default)]
pub struct Resolved {
    values: Vec<(String, String)>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.values.iter().map(|(n, _)| format!("{n}={REDACTED}"))).finish()
    }
}

impl Resolved {
    /// The value of the secret `name`, if it was resolved.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// (name, value) pairs for the command's environment.
    pub fn env(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Each value in the spellings a process may write it in: raw, and escaped
    /// as a JSON string (serde's, and with every non-ASCII character `\uXXXX`).
    fn spellings(&self) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        for (_, v) in self.values.iter().filter(|(_, v)| !v.is_empty()) {
            let json = serde_json::to_string(v).expect("a string serialises");
            let ascii: String = json.chars().flat_map(|c| if c.is_ascii() { vec![c] } else { ascii_escape(c) }).collect();
            for s in [v.clone(), json[1..json.len() - 1].to_string(), ascii[1..ascii.len() - 1].to_string()] {
                if !out.contains(&s.clone().into_bytes()) {
                    out.push(s.into_bytes());
                }
            }
        }
        // Longest first, so a value containing another is replaced whole.
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out
    }

    /// `bytes` with every spelling of every value replaced by [`REDACTED`].
    pub fn scrub_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for s in self.spellings() {
            out = replace_all(&out, &s, REDACTED.as_bytes());
        }
        out
    }

    /// A stream's captured tail: scrubbed, and when the stream was cut at the
    /// start of the tail, without its partial first line.
    pub fn scrub_tail(&self, tail: &[u8], cut: bool) -> Vec<u8> {
        if self.is_empty() {
            return tail.to_vec();
        }
        let whole = if cut { tail.iter().position(|b| *b == b'\n').map_or(&[][..], |i| &tail[i + 1..]) } else { tail };
        self.scrub_bytes(whole)
    }

    pub fn scrub_str(&self, s: &str) -> String {
        if self.is_empty() {
            return s.to_string();
        }
        String::from_utf8_lossy(&self.scrub_bytes(s.as_bytes())).into_owned()
    }

    fn scrub_json(&self, v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::String(s) => Value::String(self.scrub_str(&s)),
            Value::Array(items) => Value::Array(items.into_iter().map(|i| self.scrub_json(i)).collect()),
            Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (self.scrub_str(&k), self.scrub_json(v))).collect()),
            other => other,
        }
    }

    /// The outcome with nothing of a value left: the output's strings and keys,
    /// the failure's message, and an exception type that spells one (then
    /// `Action.FAILED`).
    pub fn scrub_outcome(&self, outcome: AttemptOutcome) -> AttemptOutcome {
        if self.is_empty() {
            return outcome;
        }
        match outcome {
            AttemptOutcome::Succeeded { output } => AttemptOutcome::Succeeded { output: output.map(|v| self.scrub_json(v)) },
            AttemptOutcome::Failed(f) => {
                let type_name = f.exception_type.as_str();
                let exception_type =
                    if self.scrub_str(type_name) == type_name { f.exception_type.clone() } else { ExceptionType::ActionFailed };
                let retry_after_ms = f.retry_after_ms;
                AttemptOutcome::Failed(Failure::new(exception_type, self.scrub_str(&f.message)).with_retry_after_ms(retry_after_ms))
            }
        }
    }
}

fn ascii_escape(c: char) -> Vec<char> {
    let mut units = [0u16; 2];
    c.encode_utf16(&mut units).iter().flat_map(|u| format!("\\u{u:04x}").chars().collect::<Vec<_>>()).collect()
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(values: &[&str]) -> Resolved {
        Resolved { values: values.iter().enumerate().map(|(i, v)| (format!("S{i}"), v.to_string())).collect() }
    }

    #[test]
    fn values_are_scrubbed_in_every_spelling() {
        let r = resolved(&["s3cr\"et", "pässword"]);
        assert_eq!(r.scrub_str("a s3cr\"et b"), "a *** b");
        assert_eq!(r.scrub_str(r#"{"m": "s3cr\"et"}"#), r#"{"m": "***"}"#);
        assert_eq!(r.scrub_str(r#""p\u00e4ssword""#), r#""***""#);
        assert_eq!(r.scrub_str("pässword pässword"), "*** ***");
        assert_eq!(format!("{r:?}"), r#"["S0=***", "S1=***"]"#);
    }

    #[test]
    fn a_cut_tail_loses_its_partial_first_line() {
        let r = resolved(&["hunter2"]);
        assert_eq!(r.scrub_tail(b"ter2 leaked\nnext hunter2\n", true), b"next ***\n");
        assert_eq!(r.scrub_tail(b"whole hunter2\n", false), b"whole ***\n");
    }

    #[test]
    fn outcomes_are_scrubbed_through() {
        let r = resolved(&["tok-123"]);
        let out = r.scrub_outcome(AttemptOutcome::Succeeded { output: Some(serde_json::json!({"tok-123": ["x tok-123"]})) });
        let AttemptOutcome::Succeeded { output: Some(v) } = out else { panic!() };
        assert_eq!(v, serde_json::json!({"***": ["x ***"]}));
        let failed = Failure::new(ExceptionType::parse("tok-123").unwrap(), "no tok-123 here");
        let AttemptOutcome::Failed(f) = r.scrub_outcome(AttemptOutcome::Failed(failed)) else { panic!() };
        assert_eq!((f.exception_type, f.message.as_str()), (ExceptionType::ActionFailed, "no *** here"));
    }

    #[test]
    fn a_secrets_file_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets");
        std::fs::write(&path, "# comment\nAPI_TOKEN=abc=def\n\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Secrets::file(&path).unwrap_err();
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_file(&path).unwrap(), vec![("API_TOKEN".to_string(), "abc=def".to_string())]);
        std::fs::write(&path, "API_TOKEN abc\n").unwrap();
        let e = read_file(&path).unwrap_err();
        assert!(e.contains("line 1") && !e.contains("abc"), "{e}");
    }
}
