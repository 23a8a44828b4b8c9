//! Tags: a small string map users attach to images, plus the reserved `strata.dev/` namespace the
//! server fills from provenance. Users can read and filter on reserved tags but never write them.

use std::collections::BTreeMap;

use crate::error::DomainError;

pub const RESERVED_PREFIX: &str = "strata.dev/";
pub const MAX_TAGS: usize = 64;
pub const MAX_KEY_LEN: usize = 63;
pub const MAX_VALUE_LEN: usize = 255;

pub fn is_reserved(key: &str) -> bool {
    key.len() >= RESERVED_PREFIX.len()
        && key.as_bytes()[..RESERVED_PREFIX.len()].eq_ignore_ascii_case(RESERVED_PREFIX.as_bytes())
}

fn check_key_shape(key: &str) -> Result<(), DomainError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(DomainError::invalid(
            "tags",
            format!("key {key:?} must be 1-{MAX_KEY_LEN} characters"),
        ));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/');
    if !key.chars().all(ok) {
        return Err(DomainError::invalid(
            "tags",
            format!("key {key:?} may contain only ASCII letters, digits, '.', '_', '-' and '/'"),
        ));
    }
    Ok(())
}

/// Validates a key a user wants to write: shape first, then the reserved namespace.
pub fn check_user_key(key: &str) -> Result<(), DomainError> {
    if is_reserved(key) {
        return Err(DomainError::ReservedTag {
            key: key.to_owned(),
            prefix: RESERVED_PREFIX,
        });
    }
    check_key_shape(key)
}

fn check_value(key: &str, value: &str) -> Result<(), DomainError> {
    if value.chars().count() > MAX_VALUE_LEN {
        return Err(DomainError::invalid(
            "tags",
            format!("value of {key:?} must be at most {MAX_VALUE_LEN} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "tags",
            format!("value of {key:?} must not contain control characters"),
        ));
    }
    Ok(())
}

/// The user-owned tags of an image: valid by construction, never containing reserved keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserTags(BTreeMap<String, String>);

impl UserTags {
    pub fn parse(map: BTreeMap<String, String>) -> Result<Self, DomainError> {
        for (k, v) in &map {
            check_user_key(k)?;
            check_value(k, v)?;
        }
        if map.len() > MAX_TAGS {
            return Err(DomainError::invalid(
                "tags",
                format!("at most {MAX_TAGS} tags are allowed"),
            ));
        }
        Ok(Self(map))
    }

    /// Applies a JSON merge patch (RFC 7396) to the tags: a value sets, `null` removes.
    pub fn merge(&self, patch: &BTreeMap<String, Option<String>>) -> Result<Self, DomainError> {
        let mut out = self.0.clone();
        for (k, v) in patch {
            check_user_key(k)?;
            match v {
                Some(v) => {
                    check_value(k, v)?;
                    out.insert(k.clone(), v.clone());
                }
                None => {
                    out.remove(k);
                }
            }
        }
        Self::parse(out)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }

    pub fn into_inner(self) -> BTreeMap<String, String> {
        self.0
    }
}

/// One `tag` filter of a query: `key=value` matches that exact value, `key` matches any value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TagFilter {
    pub key: String,
    pub value: Option<String>,
}

impl TagFilter {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let (key, value) = match s.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (s, None),
        };
        check_key_shape(key).map_err(|_| DomainError::invalid("tag", format!("{s:?} is not key=value or key")))?;
        if let Some(v) = &value {
            check_value(key, v).map_err(|e| DomainError::invalid("tag", e.to_string()))?;
        }
        Ok(Self {
            key: key.to_owned(),
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn reserved_keys_are_refused_in_any_case() {
        for k in ["strata.dev/source", "STRATA.DEV/x", "strata.dev/"] {
            let e = UserTags::parse(map(&[(k, "v")])).unwrap_err();
            assert_eq!(e.code(), "reserved-tag", "{k}");
        }
        let patch = BTreeMap::from([("strata.dev/source".to_owned(), None)]);
        assert_eq!(UserTags::default().merge(&patch).unwrap_err().code(), "reserved-tag");
        assert!(UserTags::parse(map(&[("strata.devx", "v")])).is_ok());
    }

    #[test]
    fn limits() {
        let many: BTreeMap<_, _> = (0..65).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert!(UserTags::parse(many).is_err());
        assert!(UserTags::parse(map(&[(&"k".repeat(64), "v")])).is_err());
        assert!(UserTags::parse(map(&[("k", &"v".repeat(256))])).is_err());
        assert!(UserTags::parse(map(&[("", "v")])).is_err());
        assert!(UserTags::parse(map(&[("k", &"v".repeat(255))])).is_ok());
    }

    #[test]
    fn merge_patch() {
        let t = UserTags::parse(map(&[("a", "1"), ("b", "2")])).unwrap();
        let patch = BTreeMap::from([("a".to_owned(), None), ("c".to_owned(), Some("3".to_owned()))]);
        assert_eq!(t.merge(&patch).unwrap().into_inner(), map(&[("b", "2"), ("c", "3")]));
    }

    #[test]
    fn filters() {
        assert_eq!(TagFilter::parse("env=prod").unwrap().value.as_deref(), Some("prod"));
        assert_eq!(TagFilter::parse("env").unwrap().value, None);
        assert_eq!(TagFilter::parse("env=").unwrap().value.as_deref(), Some(""));
        assert!(TagFilter::parse("=x").is_err());
        assert!(TagFilter::parse("strata.dev/source=upload").is_ok());
    }
}
