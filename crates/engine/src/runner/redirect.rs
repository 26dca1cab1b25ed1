//! Which redirect an HTTP action follows, and what the next request carries
//! (issue 13): a pure decision, [`next_hop`], that the runner's redirect loop
//! (`http.rs`) applies.
//!
//! | response | same origin (scheme, host, port of the action's URL) | another origin |
//! |---|---|---|
//! | 301, 302 | POST becomes GET without a body; otherwise as sent | `ANY_ORIGIN` only: GET (HEAD stays HEAD), no body, no headers of the action |
//! | 303 | GET (HEAD stays HEAD), no body | as 301 |
//! | 307, 308 | same method, same body | `ANY_ORIGIN` only, and only a GET or HEAD without a body: no headers of the action; else refused (it would re-send the body) |
//!
//! - `SAME_ORIGIN` (the default) follows same-origin redirects only, `ANY_ORIGIN`
//!   both columns, `NONE` nothing.
//! - Once a request has left the action's origin, the action's headers are not
//!   sent again for the rest of the chain (not even back on its own origin).
//! - "No headers of the action" means none: not its `headers`, not its
//!   `secretHeaders`, not an `Authorization` made from credentials in its URL,
//!   not `Idempotency-Key`, not `X-Redrive-Attempt`. Such a request carries only
//!   what the client adds to every request: `Host`, `User-Agent: redrive/<version>`
//!   and `Accept: */*`. No `Referer` is ever sent.
//! - A `Location` that is not an http(s) URL is never followed, whatever the mode;
//!   credentials written in a `Location` are dropped.
//! - At most [`MAX_REDIRECTS`] redirects are followed; one more is refused.
//! - Dropping the body on a redirect also drops the headers describing it
//!   (`Content-Type`, `Content-Length`, `Content-Encoding`, `Transfer-Encoding`).

use redrive_core::definition::RedirectMode;
use reqwest::{Method, Url};

/// Most redirects one attempt follows.
pub const MAX_REDIRECTS: usize = 5;

/// The statuses that are redirects (others in 3xx are answers).
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// The request that got a redirect, as far as the decision needs it.
#[derive(Clone, Copy, Debug)]
pub struct Sent<'a> {
    /// The action's own URL (its origin is the one headers stay on).
    pub first: &'a Url,
    /// The URL this request went to (a relative `Location` resolves against it).
    pub url: &'a Url,
    pub method: &'a Method,
    pub has_body: bool,
    /// Whether this request carried the action's headers.
    pub has_headers: bool,
    /// Redirects followed before this one.
    pub redirects_followed: usize,
}

/// What to do with one redirect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hop {
    /// Send the next request.
    Follow(Follow),
    /// Do not follow: the attempt fails with `Action.FAILED`; the text says why
    /// (the runner adds the status and where it pointed).
    Refuse(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Follow {
    /// Absolute, http or https, without credentials.
    pub url: Url,
    pub method: Method,
    /// Send the action's headers (all of them) again; otherwise none.
    pub keep_headers: bool,
    /// Send the body (and the headers describing it) again.
    pub keep_body: bool,
}

/// Decides a redirect `status` to `location` (the header as received) of the
/// request `sent`, under `mode`. See the module documentation.
pub fn next_hop(sent: Sent, status: u16, location: &str, mode: RedirectMode) -> Hop {
    if mode == RedirectMode::Never {
        return Hop::Refuse("redirects: NONE follows no redirect".into());
    }
    if sent.redirects_followed >= MAX_REDIRECTS {
        return Hop::Refuse(format!("more than {MAX_REDIRECTS} redirects"));
    }
    let mut url = match sent.url.join(location.trim()) {
        Ok(u) => u,
        Err(e) => return Hop::Refuse(format!("the Location is not a valid URL ({e})")),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Hop::Refuse(format!("the Location's scheme {} is not http or https", url.scheme()));
    }
    // Never fails for http(s) URLs, which always have a host.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if url.origin() == sent.first.origin() {
        let (method, keep_body) = method_after(sent.method, status, sent.has_body);
        return Hop::Follow(Follow { url, method, keep_headers: sent.has_headers, keep_body });
    }
    if mode == RedirectMode::SameOrigin {
        return Hop::Refuse("only redirects to the same origin are followed (redirects: SAME_ORIGIN)".into());
    }
    let keeps_method = matches!(status, 307 | 308);
    if keeps_method && (sent.has_body || !matches!(*sent.method, Method::GET | Method::HEAD)) {
        return Hop::Refuse(format!(
            "a {status} to another origin must re-send the {} request{}, which redrive does not do (redirects: ANY_ORIGIN)",
            sent.method,
            if sent.has_body { " and its body" } else { "" },
        ));
    }
    // Elsewhere only a bare GET (a HEAD stays a HEAD) goes.
    let method = if *sent.method == Method::HEAD { Method::HEAD } else { Method::GET };
    Hop::Follow(Follow { url, method, keep_headers: false, keep_body: false })
}

/// The method and whether the body is re-sent after `status` on the same
/// origin (what reqwest did: RFC 9110 §15.4 as browsers apply it).
fn method_after(method: &Method, status: u16, has_body: bool) -> (Method, bool) {
    match status {
        301 | 302 if *method == Method::POST => (Method::GET, false),
        303 if *method == Method::HEAD => (Method::HEAD, false),
        303 => (Method::GET, false),
        _ => (method.clone(), has_body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RedirectMode::{AnyOrigin, Never, SameOrigin};

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    /// `method` (with a body when `has_body`) to `from`, whose action URL was
    /// `https://api.example/start`, got `status` to `location`.
    fn decide(method: Method, has_body: bool, from: &str, status: u16, location: &str, mode: RedirectMode) -> Hop {
        let first = url("https://api.example/start");
        let from = url(from);
        let sent = Sent { first: &first, url: &from, method: &method, has_body, has_headers: true, redirects_followed: 0 };
        next_hop(sent, status, location, mode)
    }

    fn follow(u: &str, method: Method, keep_headers: bool, keep_body: bool) -> Hop {
        Hop::Follow(Follow { url: url(u), method, keep_headers, keep_body })
    }

    fn refused(h: &Hop, why: &str) -> bool {
        matches!(h, Hop::Refuse(r) if r.contains(why))
    }

    const HERE: &str = "https://api.example/start";

    #[test]
    fn same_origin_keeps_headers_and_follows_the_method_rules() {
        for mode in [SameOrigin, AnyOrigin] {
            assert_eq!(
                decide(Method::POST, true, HERE, 307, "/moved", mode),
                follow("https://api.example/moved", Method::POST, true, true)
            );
            assert_eq!(
                decide(Method::PUT, true, HERE, 308, "?page=2", mode),
                follow("https://api.example/start?page=2", Method::PUT, true, true)
            );
            assert_eq!(decide(Method::POST, true, HERE, 302, "/m", mode), follow("https://api.example/m", Method::GET, true, false));
            assert_eq!(decide(Method::POST, true, HERE, 301, "/m", mode), follow("https://api.example/m", Method::GET, true, false));
            assert_eq!(decide(Method::PUT, true, HERE, 301, "/m", mode), follow("https://api.example/m", Method::PUT, true, true));
            assert_eq!(decide(Method::DELETE, false, HERE, 303, "/m", mode), follow("https://api.example/m", Method::GET, true, false));
            assert_eq!(decide(Method::HEAD, false, HERE, 303, "/m", mode), follow("https://api.example/m", Method::HEAD, true, false));
            // The default port is the same origin; credentials in a Location are dropped.
            assert_eq!(
                decide(Method::GET, false, HERE, 302, "https://u:p@API.example:443/x", mode),
                follow("https://api.example/x", Method::GET, true, false)
            );
        }
    }

    #[test]
    fn same_origin_mode_refuses_other_origins() {
        for other in ["https://evil.example/x", "http://api.example/x", "https://api.example:8443/x", "//evil.example/x"] {
            let h = decide(Method::GET, false, HERE, 302, other, SameOrigin);
            assert!(refused(&h, "only redirects to the same origin"), "{other}: {h:?}");
        }
    }

    #[test]
    fn any_origin_sends_a_bare_get_elsewhere() {
        for status in [301, 302, 303] {
            for (method, has_body) in [(Method::POST, true), (Method::PUT, true), (Method::DELETE, false), (Method::GET, false)] {
                let h = decide(method.clone(), has_body, HERE, status, "https://cdn.example/r", AnyOrigin);
                assert_eq!(h, follow("https://cdn.example/r", Method::GET, false, false), "{status} {method}");
            }
            let h = decide(Method::HEAD, false, HERE, status, "https://cdn.example/r", AnyOrigin);
            assert_eq!(h, follow("https://cdn.example/r", Method::HEAD, false, false));
        }
        // 307/308 keep the method: a GET or HEAD without a body may go.
        for status in [307, 308] {
            let h = decide(Method::GET, false, HERE, status, "https://cdn.example/r", AnyOrigin);
            assert_eq!(h, follow("https://cdn.example/r", Method::GET, false, false));
        }
    }

    #[test]
    fn any_origin_refuses_to_resend_a_body_or_an_unsafe_method_elsewhere() {
        for status in [307, 308] {
            let h = decide(Method::POST, true, HERE, status, "https://cdn.example/r", AnyOrigin);
            assert!(refused(&h, &format!("a {status} to another origin must re-send the POST request and its body")), "{h:?}");
            let h = decide(Method::GET, true, HERE, status, "https://cdn.example/r", AnyOrigin);
            assert!(refused(&h, "re-send the GET request and its body"), "{h:?}");
            let h = decide(Method::DELETE, false, HERE, status, "https://cdn.example/r", AnyOrigin);
            assert!(refused(&h, "re-send the DELETE request, which"), "{h:?}");
        }
    }

    #[test]
    fn headers_once_dropped_stay_dropped() {
        let first = url(HERE);
        let from = url("https://cdn.example/r");
        let sent = Sent { first: &first, url: &from, method: &Method::GET, has_body: false, has_headers: false, redirects_followed: 1 };
        assert_eq!(
            next_hop(sent, 302, "https://api.example/back", AnyOrigin),
            follow("https://api.example/back", Method::GET, false, false)
        );
        // A relative Location resolves against where the request went, not the action's URL.
        assert_eq!(next_hop(sent, 302, "/next", AnyOrigin), follow("https://cdn.example/next", Method::GET, false, false));
    }

    #[test]
    fn never_mode_schemes_bad_locations_and_the_limit() {
        assert!(refused(&decide(Method::GET, false, HERE, 302, "/same", Never), "redirects: NONE"));
        for mode in [SameOrigin, AnyOrigin] {
            for loc in ["ftp://api.example/x", "file:///etc/passwd", "javascript:alert(1)", "data:text/plain,hi"] {
                let h = decide(Method::GET, false, HERE, 302, loc, mode);
                assert!(refused(&h, "is not http or https"), "{loc}: {h:?}");
            }
            assert!(refused(&decide(Method::GET, false, HERE, 302, "http://[::1", mode), "not a valid URL"));
        }
        let first = url(HERE);
        let sent = |n| Sent { first: &first, url: &first, method: &Method::GET, has_body: false, has_headers: true, redirects_followed: n };
        assert!(matches!(next_hop(sent(MAX_REDIRECTS - 1), 302, "/x", SameOrigin), Hop::Follow(_)));
        assert_eq!(next_hop(sent(MAX_REDIRECTS), 302, "/x", AnyOrigin), Hop::Refuse("more than 5 redirects".into()));
    }

    #[test]
    fn only_real_redirect_statuses_are_redirects() {
        let yes: Vec<u16> = (300..400).filter(|s| is_redirect(*s)).collect();
        assert_eq!(yes, [301, 302, 303, 307, 308]);
    }
}
