//! Pieces every console page uses: status badges (icon and text, never colour
//! alone), times (UTC in the page; `console.js` shows them in the browser's zone
//! with the UTC value on hover), failures, JSON blocks and page links.

use maud::{Markup, html};
use redrive_core::exception::Failure;
use redrive_core::time::{Timestamp, human_duration_ms};

/// The icon shown before a status, by the status's text.
fn status_icon(status: &str) -> &'static str {
    match status {
        "Succeeded" | "SUCCEEDED" | "Redriven" | "REDRIVEN" | "Resolved" | "RESOLVED" => "✔",
        "Failed" | "FAILED" | "Interrupted" | "INTERRUPTED" => "✖",
        "InProgress" | "Running" | "RUNNING" | "Stopping" => "⟳",
        "WaitingRetry" | "Sleeping" => "◷",
        "Stopped" | "Superseded" | "ABORTED" => "■",
        "Queued" | "QUEUED" => "✉",
        "Paused" => "⏸",
        _ => "○",
    }
}

/// A status as icon + text, classed for colour.
pub fn status(text: &str) -> Markup {
    let class = format!("status s-{}", text.to_ascii_lowercase());
    html! { span class=(class) { span aria-hidden="true" { (status_icon(text)) " " } (text) } }
}

/// A time: UTC text in the page, localised by the script.
pub fn time(t: Timestamp) -> Markup {
    let utc = t.to_string();
    html! { time datetime=(utc) title=(format!("{utc} (UTC)")) { (utc) } }
}

pub fn time_opt(t: Option<Timestamp>) -> Markup {
    match t {
        Some(t) => time(t),
        None => html! { "–" },
    }
}

/// A live countdown to `due`: the script shows the time left and ticks it every
/// second. The markup itself never changes as time passes, so a polled region
/// holding one is only replaced when something really changed.
pub fn countdown(due: Timestamp) -> Markup {
    html! {
        span.countdown data-due=(due.to_string()) { "due" }
        " (" (time(due)) ")"
    }
}

/// How long ago `since` was: the script shows it and ticks it every second
/// (like [`countdown`], the markup never changes as time passes).
pub fn age(since: Timestamp) -> Markup {
    html! { span.age data-since=(since.to_string()) title=(format!("since {since} (UTC)")) { "since " (since.to_string()) } }
}

pub fn duration_ms(ms: i64) -> String {
    human_duration_ms(ms.max(0) as u64)
}

/// An exception type and message.
pub fn failure(f: Option<&Failure>) -> Markup {
    match f {
        Some(f) => error_text(f.exception_type.as_str(), &f.message),
        None => html! {},
    }
}

pub fn error_text(exception_type: &str, message: &str) -> Markup {
    html! { span.error { code { (exception_type) } ": " span.message { (message) } } }
}

/// A JSON value, pretty, in a bounded scrolling block.
pub fn json_block(v: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    html! { pre.json { (text) } }
}

/// A "Next page" link when there is one.
pub fn next_link(href: Option<String>) -> Markup {
    html! {
        @if let Some(href) = href {
            nav.pager aria-label="Pages" { a rel="next" href=(href) { "Next page →" } }
        }
    }
}

/// A query-string value, percent-encoded.
pub fn q(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_encoded() {
        let m = error_text("X", "<script>alert(1)</script>").into_string();
        assert!(m.contains("&lt;script&gt;") && !m.contains("<script>"), "{m}");
        assert_eq!(q("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert!(status("Failed").into_string().contains("✖"));
    }
}
