//! Typed identifiers. A value of one of these types is valid by construction.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::DomainError;

/// Checks an opaque identifier that comes from a token, a path or config: 1-128 characters of
/// ASCII letters, digits, `.`, `_`, `-`, `:`, starting with a letter or digit. Narrow on purpose:
/// these values end up in storage keys, logs and SQL parameters.
fn check_opaque_id(field: &str, s: &str) -> Result<(), DomainError> {
    if s.is_empty() || s.len() > 128 {
        return Err(DomainError::invalid(field, "must be 1-128 characters"));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if !s.chars().all(ok_char) {
        return Err(DomainError::invalid(
            field,
            "may contain only ASCII letters, digits, '.', '_', '-' and ':'",
        ));
    }
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(DomainError::invalid(field, "must start with a letter or digit"));
    }
    Ok(())
}

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, DomainError> {
                check_opaque_id($field, s)?;
                Ok(Self(s.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

opaque_id!(
    /// An organization (tenant). Opaque to Strata: issued by the identity provider.
    OrganizationId,
    "organizationID"
);
opaque_id!(
    /// A region, as configured by the operator.
    RegionId,
    "regionID"
);
opaque_id!(
    /// A consumer of an image (a VM, a template, ...), named by the system that registers it.
    ConsumerId,
    "consumerID"
);

/// An image id. UUIDv7: time-ordered (good index locality), never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ImageId(Uuid);

impl ImageId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub fn from_uuid(u: Uuid) -> Self {
        Self(u)
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| DomainError::invalid("imageID", "must be a UUID"))
    }
}

impl Default for ImageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A kernel id. UUIDv7, like image ids. Storage keys and import-job targets name kernels by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KernelId(Uuid);

impl KernelId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub fn from_uuid(u: Uuid) -> Self {
        Self(u)
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| DomainError::invalid("kernelID", "must be a UUID"))
    }
}

impl Default for KernelId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for KernelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Identifies one stored copy of an image's bytes. Each upload or import attempt writes under a
/// fresh blob id, so concurrent or retried attempts never overwrite each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobId(Uuid);

impl BlobId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub fn from_uuid(u: Uuid) -> Self {
        Self(u)
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for BlobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_ids() {
        assert!(OrganizationId::parse("acme").is_ok());
        assert!(OrganizationId::parse("9f0c-12:ab_c.d").is_ok());
        assert!(OrganizationId::parse("").is_err());
        assert!(OrganizationId::parse("-x").is_err());
        assert!(OrganizationId::parse("a/b").is_err());
        assert!(OrganizationId::parse(&"a".repeat(129)).is_err());
        assert!(ImageId::parse("not-a-uuid").is_err());
    }
}
