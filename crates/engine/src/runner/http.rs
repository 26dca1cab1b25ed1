//! HTTP actions: send one request, classify the response (PRODUCT.md §3).
//!
//! # The request
//!
//! `method`, `url` and `headers` as given. A body that is a JSON string is sent
//! as that raw string (`text/plain; charset=utf-8` unless a `Content-Type`
//! header is given); any other JSON value is sent serialized, as
//! `application/json` unless a `Content-Type` header is given. Added headers:
//! `Idempotency-Key: <key>` (unless the action sets one itself; the key is the
//! same for every attempt of the action in the execution) and
//! `X-Redrive-Attempt: <attempt>`.
//!
//! **Redirects** (301, 302, 303, 307, 308; at most 5) are followed as the
//! action's `redirects` says — absent, the server's default (`httpActions.redirects`
//! in its config file, else `SAME_ORIGIN`): `SAME_ORIGIN` follows redirects on the
//! action's own origin (scheme, host and port) only, `ANY_ORIGIN` follows them
//! anywhere http(s), `NONE` follows none. A redirect not followed fails the
//! attempt with `Action.FAILED` naming where it pointed and why. A request that
//! leaves the action's origin never carries the action's headers (none of them:
//! `headers`, `secretHeaders`, URL credentials, `Idempotency-Key`,
//! `X-Redrive-Attempt`) or its body: it is a GET or HEAD; a 307/308 that would
//! re-send a body or another method there is refused. The whole table is in
//! [`super::redirect`]. So an action's headers and body — often credentials —
//! never reach a host it did not name.
//! Credentials written in a URL (`https://user:password@host/`) never appear in an
//! attempt's error message or the logs (`***`).
//!
//! `secretHeaders` (`Authorization: {secretEnv: API_TOKEN, prefix: "Bearer "}`)
//! are sent as their prefix and the secret's value, looked up when the attempt
//! starts exactly like a command's `secretEnv` ([`super::secrets::Secrets`]: the
//! server's environment or its secrets file; one missing fails the attempt with
//! `Engine.SECRET_MISSING`, nothing sent). The values are never stored or
//! logged, and are scrubbed (`***`) from everything read back: the output, the
//! failure message and its body excerpt — a service echoing the header back
//! leaks nothing.
//!
//! The whole exchange (connect, send, read the body) must finish within the
//! attempt's `timeoutSeconds`, else [`limits::DEFAULT_HTTP_TIMEOUT_SECONDS`]
//! ([`http_time_limit`]): a server that accepts and never answers, or a body
//! that trickles forever, ends in `Step.TIMEOUT` at that deadline.
//! At most [`limits::MAX_HTTP_RESPONSE_BYTES`] of the body are read.
//!
//! # Classification
//!
//! | response | outcome |
//! |---|---|
//! | 2xx | success; output = the body as JSON if it parses, else `{"status": code, "body": text}` (text cut to [`limits::MAX_HTTP_OUTPUT_TEXT_BYTES`]; `"truncated": true` when the body was over the read limit) |
//! | 2xx whose body nests deeper than [`limits::MAX_JSON_DEPTH`] (brackets counted outside strings, before parsing) | `Engine.LIMIT_EXCEEDED` "the output of action S/A (HTTP response body) is nested N levels deep; ..." |
//! | 429 | `Step.THROTTLING` |
//! | 503 with a valid `Retry-After` | `Step.THROTTLING` |
//! | 500, 502, 503 without `Retry-After`, 504, other 5xx, 408 | `Step.SERVICE_FAULT` |
//! | other 4xx, other 3xx | `Action.FAILED` |
//! | a redirect not followed (another origin under `SAME_ORIGIN`, any under `NONE`, a 307/308 elsewhere that would re-send a body or a method other than GET/HEAD, a Location not http(s), more than 5) | `Action.FAILED` "HTTP 307 Temporary Redirect, redirect to <Location> not followed: <why>" |
//! | connection refused / reset, DNS failure, connect timeout, broken body | `Step.SERVICE_FAULT` |
//! | no complete response within the time limit | `Step.TIMEOUT` "timed out after Ns" |
//! | invalid method, URL or header | `Action.FAILED` |
//!
//! **Reported error bodies.** When a failing (non-2xx) response's body is a JSON
//! object with `errorType` (and optionally `message`, `retryAfterSeconds`) — the
//! same shape a command writes to `$REDRIVE_ERROR_FILE` — the service's own
//! classification wins: `errorType` replaces the status-code class (if it is a
//! valid type; otherwise the status-code class stands and the message says
//! why), `message` replaces the body excerpt and `retryAfterSeconds` replaces
//! the `Retry-After` hint. This lets a service say e.g.
//! `{"errorType": "PaymentDeclined"}` with a 402 so a policy can match it.
//!
//! Every failing response's `Retry-After` (delta-seconds, decimals accepted, or
//! an HTTP-date) becomes the failure's `retry_after_ms`, capped at the policy
//! maximum delay (`redrive_core::policy::MAX_DELAY_MS`; a date in the past or a
//! negative delay is 0). A `Retry-After` that is neither (`1e400`, `soon`) is
//! ignored, and the message says so. Failure message:
//! `HTTP <code> <reason>: <first 300 bytes of the body>`.

use super::redirect::{Follow, Hop, Sent, is_redirect, next_hop};
use super::secrets::Resolved;
use super::{AttemptContext, AttemptOutcome, ReportedError, fmt_secs, limits, output_name, parse_output, seconds_to_ms};
use redrive_core::definition::{HttpSpec, RedirectMode};
use redrive_core::exception::{ExceptionType, FAILURE_MESSAGE_MAX_BYTES, Failure, truncate_utf8};
use redrive_core::policy::MAX_DELAY_MS;
use reqwest::StatusCode;
use reqwest::header::{
    CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION, RETRY_AFTER, TRANSFER_ENCODING,
};
use std::time::{Duration, SystemTime};

const IDEMPOTENCY_KEY: &str = "idempotency-key";
const ATTEMPT_HEADER: &str = "x-redrive-attempt";

/// What every HTTP attempt uses: one connection pool, and the redirect mode of
/// actions that do not say theirs.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    default_redirects: RedirectMode,
}

impl HttpClient {
    /// A client whose actions without `redirects` follow `default_redirects`.
    /// It follows no redirect by itself (the runner does, see
    /// [`super::redirect`]), identifies itself as `redrive/<version>`, gives up
    /// connecting after 30 s (a connect timeout is a `Step.SERVICE_FAULT`, not
    /// the attempt's timeout).
    pub fn new(default_redirects: RedirectMode) -> HttpClient {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("redrive/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .expect("building the HTTP client (TLS backend initialisation) failed");
        HttpClient { client, default_redirects }
    }
}

/// [`HttpClient::new`] with the built-in default, `SAME_ORIGIN`.
pub fn http_client() -> HttpClient {
    HttpClient::new(RedirectMode::default())
}

fn failed(t: ExceptionType, message: impl Into<String>) -> AttemptOutcome {
    AttemptOutcome::Failed(Failure::new(t, truncate_utf8(without_url_credentials(&message.into()), FAILURE_MESSAGE_MAX_BYTES)))
}

/// `text` with the user information of every URL in it (`scheme://user:pass@`)
/// replaced by `***`.
pub fn without_url_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        let authority_end =
            after.find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"' || c == '\'').unwrap_or(after.len());
        match after[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &after[at..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

/// Runs one attempt of an HTTP action. Never panics; see the module docs.
pub async fn run_http(client: &HttpClient, spec: &HttpSpec, ctx: &AttemptContext) -> AttemptOutcome {
    let names: Vec<String> = spec.secret_headers.values().map(|h| h.secret_env.clone()).collect();
    let secrets = match ctx.secrets.resolve(&names).await {
        Ok(s) => s,
        Err(missing) => return AttemptOutcome::Failed(missing),
    };
    let outcome = run_with_secrets(client, spec, ctx, &secrets).await;
    secrets.scrub_outcome(outcome)
}

async fn run_with_secrets(client: &HttpClient, spec: &HttpSpec, ctx: &AttemptContext, secrets: &Resolved) -> AttemptOutcome {
    let request = match build_request(&client.client, spec, ctx, secrets) {
        Ok(r) => r,
        Err(msg) => return failed(ExceptionType::ActionFailed, msg),
    };
    let limit = http_time_limit(ctx);
    tracing::debug!(
        execution = %ctx.execution_id, stage = %ctx.stage, action = %ctx.action,
        attempt = ctx.attempt, method = %spec.method, url = %without_url_credentials(&spec.url), "http request"
    );
    let mode = spec.redirects.unwrap_or(client.default_redirects);
    match tokio::time::timeout(limit, exchange(&client.client, request, &spec.url, mode)).await {
        Err(_) => failed(ExceptionType::Timeout, format!("timed out after {}", fmt_secs(limit))),
        Ok(Err(Unanswered::Transport { method, url, error })) => transport_failure(&method, &url, &error),
        Ok(Err(Unanswered::Refused(message))) => failed(ExceptionType::ActionFailed, message),
        Ok(Ok(resp)) => classify(resp, ctx, system_time(ctx.clock.0.now())),
    }
}

/// The engine clock's instant as a `SystemTime` (what HTTP dates compare with).
fn system_time(now: redrive_core::time::Timestamp) -> SystemTime {
    let ms = now.unix_ms();
    let since_epoch = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 { SystemTime::UNIX_EPOCH + since_epoch } else { SystemTime::UNIX_EPOCH - since_epoch }
}

/// The deadline of the whole exchange: `timeoutSeconds`, else
/// [`limits::DEFAULT_HTTP_TIMEOUT_SECONDS`].
pub fn http_time_limit(ctx: &AttemptContext) -> Duration {
    ctx.timeout.unwrap_or(Duration::from_secs(limits::DEFAULT_HTTP_TIMEOUT_SECONDS))
}

fn build_request(client: &reqwest::Client, spec: &HttpSpec, ctx: &AttemptContext, secrets: &Resolved) -> Result<reqwest::Request, String> {
    let method = reqwest::Method::from_bytes(spec.method.as_bytes()).map_err(|_| format!("invalid HTTP method {:?}", spec.method))?;
    let mut headers = HeaderMap::new();
    for (k, v) in &spec.headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("invalid header name {k:?}"))?;
        let value = HeaderValue::from_str(v).map_err(|_| format!("invalid value for header {k:?}"))?;
        headers.append(name, value);
    }
    for (k, h) in &spec.secret_headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("invalid header name {k:?}"))?;
        let secret = secrets.value(&h.secret_env).unwrap_or_default();
        // The message names the secret, never its value.
        let mut value = HeaderValue::from_str(&format!("{}{secret}", h.prefix)).map_err(|_| {
            format!("the value of secret {} is not a valid value for header {k:?} (a line break or control character)", h.secret_env)
        })?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    if !headers.contains_key(IDEMPOTENCY_KEY) {
        let v = HeaderValue::from_str(&ctx.idempotency_key)
            .map_err(|_| format!("idempotency key {:?} is not a valid header value", ctx.idempotency_key))?;
        headers.insert(HeaderName::from_static(IDEMPOTENCY_KEY), v);
    }
    headers.insert(HeaderName::from_static(ATTEMPT_HEADER), HeaderValue::from(ctx.attempt));

    let body = match &spec.body {
        None => None,
        Some(serde_json::Value::String(s)) => {
            if !headers.contains_key(CONTENT_TYPE) {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            }
            Some(s.clone().into_bytes())
        }
        Some(v) => {
            if !headers.contains_key(CONTENT_TYPE) {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            Some(serde_json::to_vec(v).map_err(|e| format!("could not serialize the body: {e}"))?)
        }
    };

    let mut rb = client.request(method, &spec.url).headers(headers);
    if let Some(b) = body {
        rb = rb.body(b);
    }
    rb.build().map_err(|e| format!("invalid request {} {}: {}", spec.method, spec.url, error_chain(&e)))
}

struct Received {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    truncated: bool,
}

/// Why an exchange ended without a response to classify.
enum Unanswered {
    /// Sending `method url` failed (`url` as written when it is the action's own).
    Transport { method: String, url: String, error: reqwest::Error },
    /// A redirect was not followed: the whole failure message.
    Refused(String),
}

/// Sends `request` and follows the redirects `mode` allows ([`super::redirect`]);
/// the last response, its body read up to the limit.
async fn exchange(
    client: &reqwest::Client,
    request: reqwest::Request,
    written_url: &str,
    mode: RedirectMode,
) -> Result<Received, Unanswered> {
    let first = request.url().clone();
    let (mut request, mut has_headers, mut followed) = (request, true, 0);
    loop {
        let again = request.try_clone();
        let method = request.method().to_string();
        let url = if followed == 0 { written_url.to_string() } else { request.url().to_string() };
        let resp = match client.execute(request).await {
            Ok(r) => r,
            Err(error) => return Err(Unanswered::Transport { method, url, error }),
        };
        let status = resp.status();
        let location = resp.headers().get(LOCATION).map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned());
        let (Some(sent), Some(location)) = (again, location.filter(|_| is_redirect(status.as_u16()))) else {
            return read_response(resp).await.map_err(|error| Unanswered::Transport { method, url, error });
        };
        let decision = next_hop(
            Sent {
                first: &first,
                url: sent.url(),
                method: sent.method(),
                has_body: sent.body().is_some(),
                has_headers,
                redirects_followed: followed,
            },
            status.as_u16(),
            &location,
            mode,
        );
        let follow = match decision {
            Hop::Follow(f) => f,
            Hop::Refuse(why) => return Err(Unanswered::Refused(refusal(status, &location, &why))),
        };
        tracing::debug!(status = status.as_u16(), url = %follow.url, method = %follow.method, headers = follow.keep_headers, "following a redirect");
        request = redirected(sent, &follow);
        has_headers = follow.keep_headers;
        followed += 1;
    }
}

/// `HTTP 307 Temporary Redirect, redirect to <Location> not followed: <why>`
/// (credentials in the Location as `***`).
fn refusal(status: StatusCode, location: &str, why: &str) -> String {
    let head = format!("HTTP {} {}", status.as_u16(), status.canonical_reason().unwrap_or("")).trim_end().to_string();
    let location = truncate_utf8(without_url_credentials(location), 200);
    format!("{head}, redirect to {location} not followed: {why}")
}

/// The request after `sent` (a copy of the one that got the redirect) that
/// `follow` describes.
fn redirected(mut sent: reqwest::Request, follow: &Follow) -> reqwest::Request {
    let mut next = reqwest::Request::new(follow.method.clone(), follow.url.clone());
    if follow.keep_headers {
        *next.headers_mut() = std::mem::take(sent.headers_mut());
    }
    if follow.keep_body {
        *next.body_mut() = sent.body_mut().take();
    } else {
        for h in [CONTENT_TYPE, CONTENT_LENGTH, CONTENT_ENCODING, TRANSFER_ENCODING] {
            next.headers_mut().remove(h);
        }
    }
    next
}

/// The status, headers and body (up to the read limit) of the last response.
async fn read_response(mut resp: reqwest::Response) -> Result<Received, reqwest::Error> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = resp.chunk().await? {
        let room = limits::MAX_HTTP_RESPONSE_BYTES - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Received { status, headers, body, truncated })
}

/// The error and its causes, e.g. `error sending request: client error
/// (Connect): tcp connect error: Connection refused (os error 111)`.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

fn transport_failure(method: &str, url: &str, e: &reqwest::Error) -> AttemptOutcome {
    let detail = error_chain(e);
    let t = if e.is_builder() || e.is_redirect() {
        ExceptionType::ActionFailed
    } else {
        // Connect errors (refused, DNS, TLS handshake, connect timeout), resets,
        // a body cut short: faults outside the action's logic.
        ExceptionType::ServiceFault
    };
    failed(t, format!("{method} {url} failed: {detail}"))
}

fn classify(r: Received, ctx: &AttemptContext, now: SystemTime) -> AttemptOutcome {
    let code = r.status.as_u16();
    if r.status.is_success() {
        return success(r, ctx);
    }

    let retry_after = r.headers.get(RETRY_AFTER).map(|v| {
        let text = String::from_utf8_lossy(v.as_bytes());
        parse_retry_after(&text, now).ok_or_else(|| {
            format!("Retry-After {:?} ignored: neither delta-seconds nor an HTTP-date", truncate_utf8(text.into_owned(), 40))
        })
    });
    let retry_after_ms = retry_after.as_ref().and_then(|r| r.as_ref().ok().copied());
    let by_status = match code {
        429 => ExceptionType::Throttling,
        503 if retry_after_ms.is_some() => ExceptionType::Throttling,
        408 => ExceptionType::ServiceFault,
        500..=599 => ExceptionType::ServiceFault,
        _ => ExceptionType::ActionFailed,
    };

    let reported = parse_output(|| "the response body".to_string(), &r.body, limits::MAX_HTTP_RESPONSE_BYTES)
        .ok()
        .and_then(Result::ok)
        .and_then(|v| ReportedError::from_json(&v))
        .filter(|rep| rep.error_type.is_some());
    let note = match &retry_after {
        Some(Err(n)) => format!(" ({n})"),
        _ => String::new(),
    };

    let mut head = format!("HTTP {code} {}", r.status.canonical_reason().unwrap_or("")).trim_end().to_string();
    if r.status.is_redirection()
        && let Some(location) = r.headers.get(LOCATION)
    {
        let location = without_url_credentials(&String::from_utf8_lossy(location.as_bytes()));
        head = format!("{head}, Location {} (HTTP {code} is not a redirect that is followed)", truncate_utf8(location, 200));
    }
    let body_excerpt = {
        let text = String::from_utf8_lossy(&r.body);
        truncate_utf8(text.trim().to_string(), limits::MAX_HTTP_BODY_EXCERPT_BYTES)
    };
    let default_message = if body_excerpt.is_empty() { head.clone() } else { format!("{head}: {body_excerpt}") };

    let Some(rep) = reported else {
        return AttemptOutcome::Failed(
            Failure::new(by_status, truncate_utf8(default_message + &note, FAILURE_MESSAGE_MAX_BYTES)).with_retry_after_ms(retry_after_ms),
        );
    };
    let message = match &rep.message {
        Some(m) => format!("{head}: {m}"),
        None => default_message,
    };
    let (t, message) = match rep.error_type {
        Some(Ok(t)) => (t, message),
        Some(Err(bad)) => (by_status, format!("{message} (response body: {bad})")),
        None => (by_status, message),
    };
    let note = if rep.retry_after_ms.is_some() { "" } else { note.as_str() };
    AttemptOutcome::Failed(
        Failure::new(t, truncate_utf8(message + note, FAILURE_MESSAGE_MAX_BYTES))
            .with_retry_after_ms(rep.retry_after_ms.or(retry_after_ms)),
    )
}

/// A 2xx: the body as JSON output (within the depth limit), else as text.
fn success(r: Received, ctx: &AttemptContext) -> AttemptOutcome {
    let code = r.status.as_u16();
    if !r.truncated {
        let what = || output_name(ctx, "HTTP response body");
        match parse_output(what, &r.body, limits::MAX_HTTP_RESPONSE_BYTES) {
            Ok(Ok(v)) => return AttemptOutcome::Succeeded { output: Some(v) },
            Ok(Err(_not_json)) => {}
            Err(limit) => return AttemptOutcome::Failed(Failure::limit_exceeded(&limit)),
        }
    }
    let text = truncate_utf8(String::from_utf8_lossy(&r.body).into_owned(), limits::MAX_HTTP_OUTPUT_TEXT_BYTES);
    let mut o = serde_json::json!({"status": code, "body": text});
    if r.truncated {
        o["truncated"] = serde_json::Value::Bool(true);
    }
    AttemptOutcome::Succeeded { output: Some(o) }
}

/// Parses a `Retry-After` value into milliseconds from `now`: delta-seconds
/// (`120`, also `1.5`) or an HTTP-date (IMF-fixdate, RFC 850 or asctime form,
/// years 1970–9999, read by `httpdate`).
/// A date in the past, or a negative delay, is 0; anything longer than the
/// policy maximum delay ([`MAX_DELAY_MS`]), however large, is that maximum.
/// `None` if unparseable.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<u64> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if v.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+') {
        let secs: f64 = v.parse().ok()?; // a huge number of digits parses as infinity
        return seconds_to_ms(secs.max(0.0));
    }
    // A date is whole seconds: rounding up keeps the wait from ending before it.
    let at = httpdate::parse_http_date(v).ok()?;
    let delay_ms = at.duration_since(now).map_or(0, |d| d.as_nanos().div_ceil(1_000_000));
    Some(delay_ms.min(u128::from(MAX_DELAY_MS)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix)
    }

    #[test]
    fn http_dates() {
        // 784111777 = Sun, 06 Nov 1994 08:49:37 GMT, in the three forms.
        let now = at(784_111_777 - 30);
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(30_000));
        assert_eq!(parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now), Some(30_000));
        assert_eq!(parse_retry_after("Sun Nov  6 08:49:37 1994", now), Some(30_000));
        assert_eq!(parse_retry_after("Tue, 29 Feb 2000 12:00:00 GMT", at(951_825_600 - 1)), Some(1000));
        assert_eq!(parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", at(0)), Some(0));
        // A part of a millisecond before: the wait rounds up to the millisecond.
        let now = UNIX_EPOCH + Duration::from_millis(784_111_776_999) + Duration::from_nanos(1);
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(1));
        assert_eq!(parse_retry_after("yesterday", now), None);
        assert_eq!(parse_retry_after("Sun, 06 Foo 1994 08:49:37 GMT", now), None);
    }

    #[test]
    fn retry_after_forms() {
        let now = at(784_111_777);
        assert_eq!(parse_retry_after("2", now), Some(2000));
        assert_eq!(parse_retry_after(" 1.5 ", now), Some(1500));
        assert_eq!(parse_retry_after("-3", now), Some(0));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(30_000));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(0));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("NaN", now), None);
    }

    #[test]
    fn retry_after_is_bounded() {
        let now = at(784_111_777);
        assert_eq!(parse_retry_after("99999999999999999999", now), Some(MAX_DELAY_MS));
        assert_eq!(parse_retry_after(&"9".repeat(400), now), Some(MAX_DELAY_MS));
        assert_eq!(parse_retry_after("1e400", now), None);
        assert_eq!(parse_retry_after("-5", now), Some(0));
        assert_eq!(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now), Some(MAX_DELAY_MS));
        // HTTP-dates before 1970 are not read (httpdate's range is 1970–9999).
        assert_eq!(parse_retry_after("Mon, 01 Jan 0001 00:00:00 GMT", now), None);
        assert_eq!(parse_retry_after("Mon, 01 Jan 99999999999999999999 00:00:00 GMT", now), None);
    }
}
