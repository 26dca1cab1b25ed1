//! Names of pipelines, stages, actions and queues: `[A-Za-z0-9.@\-_]{1,100}`.

use serde::{Deserialize, Serialize};

pub use crate::limits::NAME_MAX_LEN;
pub const NAME_PATTERN: &str = "[A-Za-z0-9.@-_]{1,100}";

/// A validated resource name. Exists only through [`Name::parse`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    pub fn parse(s: &str) -> Result<Name, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.len() > NAME_MAX_LEN {
            return Err(format!("is {} characters long; at most {NAME_MAX_LEN} allowed", s.len()));
        }
        if let Some(c) = s.chars().find(|c| !is_name_char(*c)) {
            return Err(format!("contains {c:?}; allowed characters are A-Z a-z 0-9 . @ - _"));
        }
        Ok(Name(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '-' | '_')
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Name::parse(&s).map_err(|e| serde::de::Error::custom(format!("name {s:?} {e}")))
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        assert!(Name::parse("Build.v2@prod-1_x").is_ok());
        assert!(Name::parse("").is_err());
        assert!(Name::parse("has space").unwrap_err().contains("' '"));
        assert!(Name::parse(&"a".repeat(101)).is_err());
        assert!(Name::parse(&"a".repeat(100)).is_ok());
    }
}
