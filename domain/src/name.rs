use std::fmt;

use serde::Serialize;

use crate::error::DomainError;

/// An image name: 1-63 characters of lowercase letters, digits, `.`, `_`, `-`, starting and ending
/// with a letter or digit. Unique per organization and region (and among global images per region).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ImageName(String);

impl ImageName {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let err = |reason: &str| DomainError::invalid("name", reason);
        if s.is_empty() || s.len() > 63 {
            return Err(err("must be 1-63 characters"));
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-');
        if !s.chars().all(allowed) {
            return Err(err("may contain only lowercase letters, digits, '.', '_' and '-'"));
        }
        let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        if !s.starts_with(alnum) || !s.ends_with(alnum) {
            return Err(err("must start and end with a lowercase letter or digit"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Free text shown to people; bounded so a tenant cannot store megabytes in a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Description(String);

impl Description {
    pub const MAX_LEN: usize = 1024;

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if s.chars().count() > Self::MAX_LEN {
            return Err(DomainError::invalid(
                "description",
                format!("must be at most {} characters", Self::MAX_LEN),
            ));
        }
        if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(DomainError::invalid(
                "description",
                "must not contain control characters",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "ubuntu-24.04", "x_1", "0abc9", &"a".repeat(63)] {
            assert!(ImageName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a b", "a/b", ".a", &"a".repeat(64), "é"] {
            assert!(ImageName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn descriptions() {
        assert!(Description::parse("hello\nworld").is_ok());
        assert!(Description::parse("bell\u{7}").is_err());
        assert!(Description::parse(&"x".repeat(1025)).is_err());
    }
}
