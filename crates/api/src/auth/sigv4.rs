//! AWS Signature Version 4 verification for the CodePipeline protocol.
//!
//! The canonical request is rebuilt from what the client says it signed
//! (`SignedHeaders`), the string to sign from its `X-Amz-Date` and credential
//! scope, and the signature from the configured secret of its access key; the
//! two signatures are compared in constant time. As on AWS: an unknown key is
//! `UnrecognizedClientException`, a signature that does not match or a request
//! more than 15 minutes away from the server's clock is
//! `InvalidSignatureException`.

use super::{AccessKey, Refusal};
use axum::http::request::Parts;
use hmac::{Hmac, KeyInit, Mac};
use redrive_core::auth::Principal;
use redrive_core::time::Timestamp;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The only algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Largest distance between a request's `X-Amz-Date` and the server's clock.
pub const MAX_SKEW_MS: i64 = 15 * 60 * 1000;
/// Most headers a signature may name.
const MAX_SIGNED_HEADERS: usize = 50;

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access_key_id: &'a str,
    /// `date/region/service/aws4_request`.
    pub scope: &'a str,
    pub date: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

/// Reads an `Authorization` header value.
pub fn parse_authorization(value: &str) -> Result<Authorization<'_>, String> {
    let rest = value.strip_prefix(ALGORITHM).ok_or_else(|| format!("the algorithm must be {ALGORITHM}"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, val) = part.trim().split_once('=').ok_or_else(|| format!("malformed Authorization component {:?}", part.trim()))?;
        match key {
            "Credential" => credential = Some(val),
            "SignedHeaders" => signed = Some(val),
            "Signature" => signature = Some(val),
            _ => return Err(format!("unknown Authorization component {key}")),
        }
    }
    let credential = credential.ok_or("Authorization has no Credential")?;
    let (access_key_id, scope) =
        credential.split_once('/').ok_or("Credential must be <access key id>/<date>/<region>/<service>/aws4_request")?;
    let pieces: Vec<&str> = scope.split('/').collect();
    if pieces.len() != 4 || pieces[3] != "aws4_request" {
        return Err("Credential must be <access key id>/<date>/<region>/<service>/aws4_request".to_string());
    }
    let signed_headers: Vec<&str> = signed.ok_or("Authorization has no SignedHeaders")?.split(';').collect();
    if signed_headers.len() > MAX_SIGNED_HEADERS || !signed_headers.contains(&"host") {
        return Err(format!("SignedHeaders must include host and name at most {MAX_SIGNED_HEADERS} headers"));
    }
    let signature = signature.ok_or("Authorization has no Signature")?;
    Ok(Authorization { access_key_id, scope, date: pieces[0], signed_headers, signature })
}

/// Most signatures of served changes remembered (the oldest are forgotten first
/// past it; they are forgotten anyway once 15 minutes old, when the clock check
/// refuses them).
pub const MAX_SEEN_SIGNATURES: usize = 100_000;

/// Signatures of signed changes already served, until they are too old to pass
/// the clock check: a captured change cannot be replayed within its 15 minutes.
/// Per process (a cluster's leader serves every change).
#[derive(Debug, Default)]
pub struct SeenSignatures {
    /// Signature → when it was first served.
    seen: std::collections::HashMap<String, Timestamp>,
    order: std::collections::VecDeque<(Timestamp, String)>,
}

impl SeenSignatures {
    /// Whether `signature` is served for the first time (and remembers it).
    pub fn first_use(&mut self, signature: &str, now: Timestamp) -> bool {
        while let Some((at, sig)) = self.order.front() {
            let expired = now.unix_ms() - at.unix_ms() > 2 * MAX_SKEW_MS;
            if !expired && self.order.len() < MAX_SEEN_SIGNATURES {
                break;
            }
            self.seen.remove(sig);
            self.order.pop_front();
        }
        if self.seen.contains_key(signature) {
            return false;
        }
        self.seen.insert(signature.to_string(), now);
        self.order.push_back((now, signature.to_string()));
        true
    }
}

/// Who signed the request (and its signature), or why it is refused.
pub fn verify(keys: &[AccessKey], parts: &Parts, body: &[u8], now: Timestamp) -> Result<(Principal, Option<String>), Refusal> {
    let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let auth = parse_authorization(header).map_err(|e| Refusal::BadSignature(format!("Authorization header: {e}")))?;
    let key = keys
        .iter()
        .find(|k| bool::from(k.id.as_bytes().ct_eq(auth.access_key_id.as_bytes())))
        .ok_or_else(|| Refusal::Unknown("The security token included in the request is invalid.".to_string()))?;
    let amz_date =
        header_value(parts, "x-amz-date").ok_or_else(|| Refusal::BadSignature("the request has no X-Amz-Date header".to_string()))?;
    let signed_at =
        parse_amz_date(&amz_date).ok_or_else(|| Refusal::BadSignature(format!("X-Amz-Date {amz_date:?} is not YYYYMMDDTHHMMSSZ")))?;
    if (signed_at.unix_ms() - now.unix_ms()).abs() > MAX_SKEW_MS {
        return Err(Refusal::BadSignature(format!(
            "Signature expired: {amz_date} is more than 15 minutes away from the server's time {}",
            amz_format(now)
        )));
    }
    if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
        return Err(Refusal::BadSignature("the credential scope's date is not the date of X-Amz-Date".to_string()));
    }
    let canonical = canonical_request(parts, &auth.signed_headers, body);
    let string_to_sign = format!("{ALGORITHM}\n{amz_date}\n{}\n{}", auth.scope, sha256_hex(canonical.as_bytes()));
    let expected = signature(&key.secret, auth.scope, &string_to_sign);
    if !bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
        return Err(Refusal::BadSignature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."
                .to_string(),
        ));
    }
    Ok((Principal { name: key.id.clone(), grant: key.grant.clone() }, Some(expected)))
}

/// The signature of `string_to_sign` under `secret` for the credential scope
/// `date/region/service/aws4_request`.
pub fn signature(secret: &str, scope: &str, string_to_sign: &str) -> String {
    let mut key = format!("AWS4{secret}").into_bytes();
    for piece in scope.split('/') {
        key = hmac(&key, piece.as_bytes());
    }
    super::token::hex(&hmac(&key, string_to_sign.as_bytes()))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    super::token::hex(&Sha256::digest(data))
}

/// Every value of a header, joined by commas, trimmed, inner runs of spaces collapsed.
fn header_value(parts: &Parts, name: &str) -> Option<String> {
    let values: Vec<String> = parts
        .headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// The canonical request of SigV4 over the headers the client signed.
pub fn canonical_request(parts: &Parts, signed_headers: &[&str], body: &[u8]) -> String {
    let headers: String = signed_headers.iter().map(|h| format!("{h}:{}\n", header_value(parts, h).unwrap_or_default())).collect();
    let payload = header_value(parts, "x-amz-content-sha256").unwrap_or_else(|| sha256_hex(body));
    format!(
        "{}\n{}\n{}\n{headers}\n{}\n{payload}",
        parts.method.as_str(),
        canonical_path(parts.uri.path()),
        canonical_query(parts.uri.query().unwrap_or("")),
        signed_headers.join(";")
    )
}

/// The path, each segment percent-encoded (again, as botocore does for every
/// service but S3).
fn canonical_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    path.split('/').map(|s| encode(s.as_bytes())).collect::<Vec<_>>().join("/")
}

/// Query parameters decoded, re-encoded, sorted.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(&decode(k)), encode(&decode(v)))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect()
}

fn decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// `20150830T123600Z`.
fn parse_amz_date(s: &str) -> Option<Timestamp> {
    let ok = s.len() == 16 && s.as_bytes()[8] == b'T' && s.ends_with('Z');
    if !ok || !s[..8].bytes().chain(s[9..15].bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rfc = format!("{}-{}-{}T{}:{}:{}Z", &s[0..4], &s[4..6], &s[6..8], &s[9..11], &s[11..13], &s[13..15]);
    Timestamp::parse_rfc3339(&rfc).ok()
}

fn amz_format(t: Timestamp) -> String {
    let s = t.to_string();
    // `2026-11-18T11:06:40.123Z` → `20261118T110640Z`
    let digits: String = s.chars().take(19).filter(|c| c.is_ascii_digit() || *c == 'T').collect();
    format!("{digits}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the AWS documentation (GET with a query, IAM).
    #[test]
    fn the_documented_example_verifies() {
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let request = axum::http::Request::get("https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08")
            .header("host", "iam.amazonaws.com")
            .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
            .header("x-amz-date", "20150830T123600Z")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let canonical = canonical_request(&parts, &["content-type", "host", "x-amz-date"], b"");
        assert_eq!(sha256_hex(canonical.as_bytes()), "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59");
        let scope = "20150830/us-east-1/iam/aws4_request";
        let sts = format!("{ALGORITHM}\n20150830T123600Z\n{scope}\n{}", sha256_hex(canonical.as_bytes()));
        assert_eq!(signature(secret, scope, &sts), "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
    }

    #[test]
    fn a_signature_is_served_once_until_it_is_too_old_to_verify() {
        let mut seen = SeenSignatures::default();
        let t = |ms: i64| Timestamp::from_unix_ms(1_000_000_000 + ms);
        assert!(seen.first_use("a", t(0)));
        assert!(!seen.first_use("a", t(1_000)), "a replay");
        assert!(seen.first_use("b", t(1_000)));
        assert!(!seen.first_use("a", t(2 * MAX_SKEW_MS)), "still remembered while it could verify");
        assert!(seen.first_use("c", t(2 * MAX_SKEW_MS + 1)));
        assert_eq!(seen.seen.len(), 2, "a is forgotten once it is too old: b and c remain");
    }

    #[test]
    fn authorization_headers_are_parsed() {
        let a = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/codepipeline/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
        )
        .unwrap();
        assert_eq!((a.access_key_id, a.date, a.signature), ("AKID", "20150830", "abc"));
        assert_eq!(a.signed_headers, ["host", "x-amz-date"]);
        assert!(parse_authorization("AWS4-HMAC-SHA256 Credential=AKID/x, SignedHeaders=host, Signature=a").is_err());
        assert!(parse_authorization("AWS4-HMAC-SHA256 Credential=A/d/r/s/aws4_request, SignedHeaders=x-amz-date, Signature=a").is_err());
        assert_eq!(parse_amz_date("20150830T123600Z").map(|t| t.to_string()).as_deref(), Some("2015-08-30T12:36:00.000Z"));
        assert_eq!(parse_amz_date("2015-08-30T12:36"), None);
        assert_eq!(amz_format(parse_amz_date("20150830T123600Z").unwrap()), "20150830T123600Z");
    }
}
