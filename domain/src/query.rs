//! The v2 image query: filters, sort order and opaque keyset page tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::ids::OrganizationId;
use crate::image::{Architecture, ImageKind, ImageState};
use crate::name::ImageName;
use crate::tags::TagFilter;

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;
pub const MAX_TAG_FILTERS: usize = 16;
pub const MAX_ORG_FILTERS: usize = 100;
/// v1 `GET .../images` pages too; its default page is the default image quota per organization
/// (`quotas.max_images`), so a client that never pages still sees every image of an organization
/// within that quota.
pub const V1_DEFAULT_LIMIT: u32 = 10_000;
pub const V1_MAX_LIMIT: u32 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Sort {
    #[default]
    #[serde(rename = "name")]
    Name,
    #[serde(rename = "createdAt")]
    CreatedAt,
    #[serde(rename = "-createdAt")]
    CreatedAtDesc,
}

impl Sort {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "name" => Ok(Sort::Name),
            "createdAt" => Ok(Sort::CreatedAt),
            "-createdAt" => Ok(Sort::CreatedAtDesc),
            _ => Err(DomainError::invalid(
                "sort",
                format!("{s:?} is not one of: name, createdAt, -createdAt"),
            )),
        }
    }
}

/// Which organizations' images a query covers. Computed from the caller's rights, never taken
/// verbatim from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgFilter {
    /// Every organization (platform admins without an `organizationID` filter).
    Any,
    /// Exactly these organizations (possibly none, which still lets global images through).
    Only(Vec<OrganizationId>),
}

/// The position after which the next page starts: the sort key of the last item and its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cursor {
    Name { name: String, id: uuid::Uuid },
    CreatedAt { at: DateTime<Utc>, id: uuid::Uuid },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageQuery {
    pub organizations: OrgFilter,
    pub include_global: bool,
    pub states: Vec<ImageState>,
    pub name: Option<ImageName>,
    pub architecture: Option<Architecture>,
    /// Images only: `disk` or `rootfs`.
    pub kind: Option<ImageKind>,
    pub tags: Vec<TagFilter>,
    pub sort: Sort,
    pub limit: u32,
    pub after: Option<Cursor>,
}

/// Tokens are unpadded URL-safe base64 of a small JSON cursor; anything longer is not ours.
pub const MAX_TOKEN_LEN: usize = 1024;

#[derive(Serialize, Deserialize)]
struct Token {
    /// Fingerprint of the filters the token was issued for.
    q: String,
    c: Cursor,
}

impl ImageQuery {
    pub fn check_limit(limit: Option<u32>) -> Result<u32, DomainError> {
        Self::check_limit_of(limit, DEFAULT_LIMIT, MAX_LIMIT)
    }

    /// `limit` if it is within `1..=max`, `default` if absent.
    pub fn check_limit_of(limit: Option<u32>, default: u32, max: u32) -> Result<u32, DomainError> {
        match limit {
            None => Ok(default),
            Some(l) if (1..=max).contains(&l) => Ok(l),
            Some(_) => Err(DomainError::invalid("limit", format!("must be between 1 and {max}"))),
        }
    }

    /// A short stable digest of everything but the cursor and limit, so a token cannot be replayed
    /// against a different query (which would silently skip or repeat items).
    fn fingerprint(&self) -> String {
        let repr = format!(
            "{:?}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.organizations,
            self.include_global,
            self.states,
            self.name,
            self.architecture,
            self.kind,
            self.tags,
            self.sort
        );
        // FNV-1a: not a security boundary, only a consistency check.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in repr.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    pub fn encode_token(&self, cursor: &Cursor) -> String {
        let t = Token {
            q: self.fingerprint(),
            c: cursor.clone(),
        };
        // serializing a plain struct of strings cannot fail
        let json = serde_json::to_vec(&t).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Decodes a `pageToken` issued for this same query.
    pub fn decode_token(&self, token: &str) -> Result<Cursor, DomainError> {
        let bad = || {
            DomainError::invalid(
                "pageToken",
                "is not a token this query returned; start again without it",
            )
        };
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(bad());
        }
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
        let t: Token = serde_json::from_slice(&raw).map_err(|_| bad())?;
        let fits = matches!(
            (&t.c, self.sort),
            (Cursor::Name { .. }, Sort::Name) | (Cursor::CreatedAt { .. }, Sort::CreatedAt | Sort::CreatedAtDesc)
        );
        if t.q != self.fingerprint() || !fits {
            return Err(bad());
        }
        Ok(t.c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> ImageQuery {
        ImageQuery {
            organizations: OrgFilter::Only(vec![OrganizationId::parse("a").unwrap()]),
            include_global: true,
            states: vec![],
            name: None,
            architecture: None,
            kind: None,
            tags: vec![],
            sort: Sort::Name,
            limit: 10,
            after: None,
        }
    }

    #[test]
    fn tokens_round_trip_and_bind_to_the_query() {
        let c = Cursor::Name {
            name: "x".into(),
            id: uuid::Uuid::nil(),
        };
        let t = q().encode_token(&c);
        assert_eq!(q().decode_token(&t).unwrap(), c);
        let other = ImageQuery {
            include_global: false,
            ..q()
        };
        assert!(other.decode_token(&t).is_err());
        assert!(q().decode_token("garbage!").is_err());
        // the limit may change between pages
        assert!(ImageQuery { limit: 5, ..q() }.decode_token(&t).is_ok());
    }

    #[test]
    fn limits() {
        assert_eq!(ImageQuery::check_limit(None).unwrap(), 100);
        assert!(ImageQuery::check_limit(Some(0)).is_err());
        assert!(ImageQuery::check_limit(Some(1001)).is_err());
        assert_eq!(
            ImageQuery::check_limit_of(None, V1_DEFAULT_LIMIT, V1_MAX_LIMIT).unwrap(),
            10_000
        );
        assert!(ImageQuery::check_limit_of(Some(10_001), V1_DEFAULT_LIMIT, V1_MAX_LIMIT).is_err());
    }
}
