//! Who may do what: scopes, grants limited to name prefixes, and the one pure
//! check every request of both APIs goes through ([`authorize`]). A leaf module.
//!
//! Scopes are ordered: `read` < `operate` < `admin`; a grant of a scope allows
//! everything a smaller scope allows. A grant may be limited to pipeline names
//! and to queue names, each a list of [`NamePattern`]s (`payments-*` for a
//! prefix, `payments` for one name); an unlimited dimension allows every name.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Most patterns in one dimension of a grant.
pub const MAX_PATTERNS: usize = 20;

/// What a grant allows, smallest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Lists, gets, state, metrics.
    Read,
    /// Read, plus start, stop, retry-stage and DLQ redrive.
    Operate,
    /// Operate, plus pipelines, queues, purges, tokens and the audit log.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Operate, Scope::Admin];
    pub const ALLOWED: &'static str = "read, operate, admin";

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Scope, String> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| format!("unknown scope {s:?}; allowed: {}", Scope::ALLOWED))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name (`payments`) or a name prefix (`payments-*`; `*` alone is every name).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NamePattern {
    text: String,
}

impl NamePattern {
    pub const ALLOWED: &'static str = "a name of A-Z a-z 0-9 . @ - _ (1 to 100 characters), optionally ending in * for a prefix";

    pub fn parse(s: &str) -> Result<NamePattern, String> {
        let stem = s.strip_suffix('*').unwrap_or(s);
        if !(s == "*" || crate::name::Name::parse(stem).is_ok()) {
            return Err(format!("{s:?} is not a name pattern; allowed: {}", NamePattern::ALLOWED));
        }
        Ok(NamePattern { text: s.to_string() })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn prefix(&self) -> Option<&str> {
        self.text.strip_suffix('*')
    }

    /// Whether `name` is one this pattern names.
    pub fn matches(&self, name: &str) -> bool {
        match self.prefix() {
            Some(p) => name.starts_with(p),
            None => name == self.text,
        }
    }

    /// Whether every name starting with `prefix` is one this pattern names.
    pub fn covers_prefix(&self, prefix: &str) -> bool {
        self.prefix().is_some_and(|p| prefix.starts_with(p))
    }
}

impl TryFrom<String> for NamePattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        NamePattern::parse(&s)
    }
}

impl From<NamePattern> for String {
    fn from(p: NamePattern) -> String {
        p.text
    }
}

/// A scope, optionally limited to pipeline and queue names (`None`: all names).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipelines: Option<Vec<NamePattern>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<Vec<NamePattern>>,
}

impl Grant {
    /// A grant of `scope` over every name.
    pub fn unlimited(scope: Scope) -> Grant {
        Grant { scope, pipelines: None, queues: None }
    }

    /// `operate on pipelines payments-* and queues payments-*`.
    pub fn describe(&self) -> String {
        let list = |ps: &Option<Vec<NamePattern>>| match ps {
            None => "all".to_string(),
            Some(ps) => ps.iter().map(NamePattern::as_str).collect::<Vec<_>>().join(","),
        };
        format!("{} (pipelines: {}; queues: {})", self.scope, list(&self.pipelines), list(&self.queues))
    }
}

/// Who is asking: a token's name, an access key's name or a schedule's grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub grant: Grant,
}

/// What a request touches, for the name limits of a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource<'a> {
    /// No pipeline or queue (the OpenAPI document, the cluster status).
    Nothing,
    /// One pipeline (or durable function) by name.
    Pipeline(&'a str),
    /// Every pipeline (a listing): needs a grant not limited in pipelines.
    AllPipelines,
    /// One dead-letter queue by name.
    Queue(&'a str),
    /// Every queue whose name starts with the prefix.
    QueuePrefix(&'a str),
    /// Every queue (a listing, an entry or run by id): needs a grant not limited in queues.
    AllQueues,
    /// Everything (tokens, the audit log, metrics): needs a grant limited in nothing.
    Everything,
}

/// What a route or operation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requirement<'a> {
    pub scope: Scope,
    pub resource: Resource<'a>,
}

/// Why a request was refused (the message of a 403).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied(pub String);

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `principal` may do what `need` describes; the refusal says why.
pub fn authorize(principal: &Principal, need: Requirement<'_>) -> Result<(), Denied> {
    let grant = &principal.grant;
    let who = &principal.name;
    if grant.scope < need.scope {
        return Err(Denied(format!("{who} has scope {}; this needs {}", grant.scope, need.scope)));
    }
    let limited = |dimension: &str, patterns: &Option<Vec<NamePattern>>| match patterns {
        None => Ok(()),
        Some(ps) => Err(Denied(format!("{who} is limited to {dimension} {}; this touches every {dimension}", join(ps)))),
    };
    match need.resource {
        Resource::Nothing => Ok(()),
        Resource::Pipeline(name) => within(who, "pipelines", &grant.pipelines, name, |p| p.matches(name)),
        Resource::AllPipelines => limited("pipeline", &grant.pipelines),
        Resource::Queue(name) => within(who, "queues", &grant.queues, name, |p| p.matches(name)),
        Resource::QueuePrefix(prefix) => within(who, "queues", &grant.queues, &format!("{prefix}*"), |p| p.covers_prefix(prefix)),
        Resource::AllQueues => limited("queue", &grant.queues),
        Resource::Everything => limited("pipeline", &grant.pipelines).and_then(|()| limited("queue", &grant.queues)),
    }
}

fn within(
    who: &str,
    dimension: &str,
    patterns: &Option<Vec<NamePattern>>,
    name: &str,
    ok: impl Fn(&NamePattern) -> bool,
) -> Result<(), Denied> {
    match patterns {
        None => Ok(()),
        Some(ps) if ps.iter().any(ok) => Ok(()),
        Some(ps) => Err(Denied(format!("{who} is limited to {dimension} {}; {name} is outside them", join(ps)))),
    }
}

fn join(ps: &[NamePattern]) -> String {
    ps.iter().map(NamePattern::as_str).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, scope: Scope, pipelines: Option<&[&str]>, queues: Option<&[&str]>) -> Principal {
        let patterns = |ps: Option<&[&str]>| ps.map(|ps| ps.iter().map(|s| NamePattern::parse(s).unwrap()).collect());
        Principal { name: name.into(), grant: Grant { scope, pipelines: patterns(pipelines), queues: patterns(queues) } }
    }

    fn need(scope: Scope, resource: Resource<'_>) -> Requirement<'_> {
        Requirement { scope, resource }
    }

    #[test]
    fn scopes_are_ordered() {
        let op = p("ci", Scope::Operate, None, None);
        assert!(authorize(&op, need(Scope::Read, Resource::AllPipelines)).is_ok());
        assert!(authorize(&op, need(Scope::Operate, Resource::Pipeline("x"))).is_ok());
        let e = authorize(&op, need(Scope::Admin, Resource::Nothing)).unwrap_err();
        assert_eq!(e.0, "ci has scope operate; this needs admin");
    }

    #[test]
    fn prefixes_limit_names() {
        let nightly = p("nightly", Scope::Operate, Some(&["payments-*"]), Some(&["payments-*", "audit"]));
        assert!(authorize(&nightly, need(Scope::Operate, Resource::Queue("payments-eu"))).is_ok());
        assert!(authorize(&nightly, need(Scope::Operate, Resource::Queue("audit"))).is_ok());
        assert!(authorize(&nightly, need(Scope::Operate, Resource::Queue("audit-2"))).is_err());
        assert!(authorize(&nightly, need(Scope::Operate, Resource::QueuePrefix("payments-eu-"))).is_ok());
        assert!(authorize(&nightly, need(Scope::Operate, Resource::QueuePrefix("pay"))).is_err());
        assert!(authorize(&nightly, need(Scope::Operate, Resource::QueuePrefix("audit"))).is_err(), "an exact name covers no prefix");
        let e = authorize(&nightly, need(Scope::Read, Resource::Pipeline("orders"))).unwrap_err();
        assert_eq!(e.0, "nightly is limited to pipelines payments-*; orders is outside them");
        assert!(authorize(&nightly, need(Scope::Read, Resource::AllQueues)).is_err());
        assert!(authorize(&nightly, need(Scope::Read, Resource::Everything)).is_err());
        assert!(authorize(&nightly, need(Scope::Read, Resource::Nothing)).is_ok());
        let all = p("all", Scope::Read, Some(&["*"]), None);
        assert!(authorize(&all, need(Scope::Read, Resource::Pipeline("anything"))).is_ok());
        assert!(authorize(&all, need(Scope::Read, Resource::Everything)).is_err(), "a listed * is still a limit");
    }

    #[test]
    fn patterns_are_parsed() {
        assert!(NamePattern::parse("payments-*").is_ok());
        assert!(NamePattern::parse("*").is_ok());
        assert!(NamePattern::parse("a*b").is_err());
        assert!(NamePattern::parse("").is_err());
        assert!(NamePattern::parse("**").is_err());
        assert_eq!(Scope::parse("operate"), Ok(Scope::Operate));
        assert!(Scope::parse("root").unwrap_err().contains("read, operate, admin"));
    }
}
