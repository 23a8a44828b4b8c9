//! The image aggregate and the rules about who may see or change it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::ids::{BlobId, ImageId, OrganizationId, RegionId};
use crate::name::{Description, ImageName};
use crate::tags::{RESERVED_PREFIX, UserTags};

/// A closed set of strings on the wire. The OpenAPI schema is written here by hand from the same
/// strings serde uses: a `#[serde(rename)]` produced by a macro does not reach utoipa's derive,
/// which would otherwise list the Rust variant names.
macro_rules! string_enum {
    ($(#[doc = $doc:literal])* $name:ident, $field:literal { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $s)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                let doc: &[&str] = &[$($doc),*];
                let doc = doc.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($s),+]))
                    .description((!doc.is_empty()).then_some(doc))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, DomainError> {
                match s {
                    $($s => Ok($name::$variant),)+
                    _ => Err(DomainError::invalid(
                        $field,
                        format!("{s:?} is not one of: {}", [$($s),+].join(", ")),
                    )),
                }
            }
        }
    };
}

pub(crate) use string_enum;

string_enum!(
    /// Who can see an image: its organization only, or every organization in the region.
    Visibility, "visibility" { Organization => "organization", Global => "global" }
);
string_enum!(
    /// What the image holds: a whole bootable disk, or a root filesystem (booted with a kernel).
    ImageKind, "kind" { Disk => "disk", Rootfs => "rootfs" }
);
string_enum!(
    /// How the bytes are laid out: `raw`, a whole disk with an MBR or GPT; `ext4`, one ext4
    /// filesystem (a root filesystem pulled from an OCI registry).
    DiskFormat, "diskFormat" { Raw => "raw", Ext4 => "ext4" }
);
string_enum!(
    /// The CPU architecture the image boots on.
    Architecture, "architecture" { X86_64 => "x86_64", Aarch64 => "aarch64" }
);
string_enum!(
    /// Where the bytes came from.
    SourceKind, "source" { Upload => "upload", Url => "url", DockerArchive => "docker-archive", Oci => "oci" }
);
string_enum!(
    /// The life cycle: `pending` waits for bytes, `importing` is being copied by the server,
    /// `ready` can be downloaded and booted, `failed` says why in `reason`.
    ImageState, "status" { Pending => "pending", Importing => "importing", Ready => "ready", Failed => "failed" }
);

string_enum!(
    /// Why an import failed, for clients to branch on (`status.reason` says it for people).
    ReasonCode, "reasonCode" {
        ChecksumMismatch => "checksum-mismatch",
        FetchFailed => "fetch-failed",
        UnsupportedDiskFormat => "unsupported-disk-format",
        TooLarge => "too-large",
        QuotaExceeded => "quota-exceeded",
        CredentialsUnavailable => "credentials-unavailable",
        InvalidArchive => "invalid-archive",
        UnsupportedKernelFormat => "unsupported-kernel-format",
        ArchitectureMismatch => "architecture-mismatch",
        Internal => "internal",
    }
);

string_enum!(
    /// Where a running import is: an OCI pull goes `resolving`, `pulling`, `flattening`,
    /// `building`, then `storing`; other imports only `storing`.
    ImportPhase, "phase" {
        Resolving => "resolving",
        Pulling => "pulling",
        Flattening => "flattening",
        Building => "building",
        Storing => "storing",
    }
);

/// Operating system description, free-form but bounded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OsInfo {
    /// e.g. `linux`, `windows`; 1-63 characters, no control characters (as every field here).
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 63, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")
    )]
    pub family: String,
    /// e.g. `ubuntu`
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 63, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")
    )]
    pub distro: Option<String>,
    /// e.g. `24.04`
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 63, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")
    )]
    pub version: Option<String>,
}

impl OsInfo {
    pub fn validate(self) -> Result<Self, DomainError> {
        let check = |field: &str, v: &str| {
            if v.is_empty() || v.len() > 63 || v.chars().any(|c| c.is_control()) {
                Err(DomainError::invalid(field, "must be 1-63 printable characters"))
            } else {
                Ok(())
            }
        };
        check("os.family", &self.family)?;
        if let Some(d) = &self.distro {
            check("os.distro", d)?;
        }
        if let Some(v) = &self.version {
            check("os.version", v)?;
        }
        Ok(self)
    }
}

/// Where an image came from, recorded by the server, never by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub source: SourceKind,
    /// The source reference without credentials (a URL, an OCI reference, an archive name).
    pub reference: Option<String>,
    /// `sha256:<hex>` of what was imported, once known; for OCI pulls the manifest's digest.
    pub digest: Option<String>,
    /// OCI pulls: the digest of the image config.
    pub config_digest: Option<String>,
    /// OCI pulls: the platform pulled, e.g. `linux/amd64`.
    pub platform: Option<String>,
    /// The token subject that created the image.
    pub imported_by: String,
    pub imported_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: ImageState,
    pub reason: Option<String>,
    /// Set with `reason` when the image is `failed`.
    pub reason_code: Option<ReasonCode>,
    pub bytes_done: u64,
    pub bytes_total: Option<u64>,
    /// Where a running import is, when it says.
    pub phase: Option<ImportPhase>,
}

#[derive(Debug, Clone)]
pub struct Image {
    pub id: ImageId,
    pub name: ImageName,
    pub description: Option<Description>,
    /// `None` for global images.
    pub organization_id: Option<OrganizationId>,
    pub region_id: RegionId,
    pub visibility: Visibility,
    pub kind: ImageKind,
    pub disk_format: DiskFormat,
    pub architecture: Architecture,
    pub os: Option<OsInfo>,
    pub tags: UserTags,
    pub protected: bool,
    pub provenance: Provenance,
    pub status: Status,
    pub size_bytes: Option<u64>,
    pub sha256: Option<String>,
    /// The sha256 the creator promised; the bytes must match it.
    pub expected_sha256: Option<String>,
    /// Where the bytes are stored, once they are.
    pub blob: Option<BlobId>,
    /// The kernel the image boots with, if any.
    pub kernel_id: Option<crate::kernel::KernelId>,
    /// Docker tags pointing at it (`alpine:3.19`), set through the Docker Engine API only.
    pub docker_tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub revision: i64,
}

pub mod reserved {
    pub const SOURCE: &str = "strata.dev/source";
    pub const ORGANIZATION: &str = "strata.dev/organization";
    pub const IMPORTED_BY: &str = "strata.dev/imported-by";
    pub const REFERENCE: &str = "strata.dev/reference";
    pub const DIGEST: &str = "strata.dev/digest";
    pub const PLATFORM: &str = "strata.dev/platform";
}

impl Image {
    /// The server-owned tags mirrored from provenance and ownership. Stored beside user tags so
    /// filters treat both alike.
    pub fn reserved_tags(&self) -> BTreeMap<String, String> {
        debug_assert!(reserved::SOURCE.starts_with(RESERVED_PREFIX));
        let mut t = BTreeMap::new();
        t.insert(reserved::SOURCE.to_owned(), self.provenance.source.to_string());
        if let Some(org) = &self.organization_id {
            t.insert(reserved::ORGANIZATION.to_owned(), org.to_string());
        }
        t.insert(reserved::IMPORTED_BY.to_owned(), self.provenance.imported_by.clone());
        if let Some(r) = &self.provenance.reference {
            t.insert(reserved::REFERENCE.to_owned(), r.clone());
        }
        if let Some(d) = &self.provenance.digest {
            t.insert(reserved::DIGEST.to_owned(), d.clone());
        }
        if let Some(p) = &self.provenance.platform {
            t.insert(reserved::PLATFORM.to_owned(), p.clone());
        }
        t
    }

    /// User tags and reserved tags together, as clients see them.
    pub fn all_tags(&self) -> BTreeMap<String, String> {
        let mut t = self.tags.clone().into_inner();
        t.extend(self.reserved_tags());
        t
    }

    /// May `org` see this image? Its own images and global ones.
    pub fn visible_to(&self, org: &OrganizationId) -> bool {
        self.visibility == Visibility::Global || self.organization_id.as_ref() == Some(org)
    }

    /// May a caller acting for `org` change or delete this image? Only the owner; global images
    /// only platform admins. Callers that may see but not change get the same answer as callers
    /// that may not see: not found, so ownership is not probeable.
    pub fn modifiable_by(&self, org: &OrganizationId, platform_admin: bool) -> bool {
        match self.visibility {
            Visibility::Global => platform_admin,
            Visibility::Organization => self.organization_id.as_ref() == Some(org),
        }
    }

    pub fn require_state(&self, expected: ImageState) -> Result<(), DomainError> {
        if self.status.state == expected {
            Ok(())
        } else {
            Err(DomainError::InvalidState {
                actual: self.status.state.to_string(),
                expected: expected.to_string(),
            })
        }
    }

    /// The strong entity tag of the metadata representation.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.revision)
    }

    /// The entity tag of the image's bytes: the quoted sha256 (empty until they exist).
    pub fn file_etag(&self) -> String {
        format!("\"{}\"", self.sha256.as_deref().unwrap_or_default())
    }
}

/// Parses an `If-Match` header value against the current revision. `*` matches anything.
pub fn check_if_match(header: &str, current_revision: i64) -> Result<(), DomainError> {
    let current = format!("\"{current_revision}\"");
    let ok = header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == current || t.strip_prefix("W/") == Some(&current));
    if ok {
        Ok(())
    } else {
        Err(DomainError::PreconditionFailed {
            current: current_revision,
        })
    }
}

/// Does an `If-None-Match` header match the current entity tag (RFC 9110 13.1.2: weak comparison,
/// `*` matches any current representation)? A match means `304 Not Modified` for GET and HEAD.
pub fn if_none_match_hits(header: &str, etag: &str) -> bool {
    fn opaque(t: &str) -> &str {
        t.trim().trim_start_matches("W/")
    }
    let current = opaque(etag);
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || opaque(t) == current)
}

/// Does an `If-Range` header let a `Range` apply (RFC 9110 13.1.5)? Only an entity tag that is
/// strongly equal to the current one does; a weak tag, another tag, or a date (no
/// `Last-Modified` is sent, so none can match) means the whole representation is sent.
pub fn if_range_holds(header: &str, etag: &str) -> bool {
    let h = header.trim();
    !h.starts_with("W/") && !etag.starts_with("W/") && h == etag
}

/// A lowercase hex sha256, as clients send it.
pub fn parse_sha256(field: &str, s: &str) -> Result<String, DomainError> {
    let s = s.strip_prefix("sha256:").unwrap_or(s).to_ascii_lowercase();
    if s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit()) {
        Ok(s)
    } else {
        Err(DomainError::invalid(
            field,
            "must be 64 hexadecimal characters (a sha256 digest)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip() {
        for s in ImageState::ALL {
            assert_eq!(s.as_str().parse::<ImageState>().unwrap(), *s);
        }
        assert_eq!("bogus".parse::<Architecture>().unwrap_err().code(), "invalid-input");
    }

    #[test]
    fn conditional_headers() {
        assert!(if_none_match_hits("\"3\"", "\"3\""));
        assert!(if_none_match_hits("\"1\", W/\"3\"", "\"3\""));
        assert!(if_none_match_hits("*", "\"3\""));
        assert!(!if_none_match_hits("\"2\"", "\"3\""));
        assert!(!if_none_match_hits("\"33\"", "\"3\""));
        assert!(if_range_holds("\"abc\"", "\"abc\""));
        assert!(!if_range_holds("W/\"abc\"", "\"abc\""));
        assert!(!if_range_holds("\"old\"", "\"abc\""));
        assert!(!if_range_holds("Wed, 21 Oct 2015 07:28:00 GMT", "\"abc\""));
    }

    #[test]
    fn if_match() {
        assert!(check_if_match("\"3\"", 3).is_ok());
        assert!(check_if_match("W/\"3\"", 3).is_ok());
        assert!(check_if_match("*", 3).is_ok());
        assert!(check_if_match("\"1\", \"3\"", 3).is_ok());
        assert_eq!(check_if_match("\"2\"", 3).unwrap_err().code(), "precondition-failed");
    }

    #[test]
    fn sha256() {
        let h = "A".repeat(64);
        assert_eq!(parse_sha256("sha256", &h).unwrap(), "a".repeat(64));
        assert!(parse_sha256("sha256", &format!("sha256:{}", "0".repeat(64))).is_ok());
        assert!(parse_sha256("sha256", "abc").is_err());
    }
}
