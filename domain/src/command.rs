//! Commands: what a caller asks a service to do, as domain values that are valid by
//! construction. The API converts its request bodies into these (`TryFrom` at the edge), so
//! services never see a request DTO and other front ends (a CLI, the Docker API) can build them.

use std::collections::BTreeMap;

use crate::error::DomainError;
use crate::ids::KernelId;
use crate::image::{Architecture, OsInfo, Visibility, parse_sha256};
use crate::name::{Description, ImageName};
use crate::reference::{Platform, Reference};
use crate::tags::UserTags;

/// Where a new image's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// The caller uploads them; `sha256` (lowercase hex) is what they must hash to.
    Upload { sha256: Option<String> },
    /// The server imports them from `url` (checked by the URL import kind).
    Url { url: String, sha256: Option<String> },
    /// The server pulls an OCI image and builds an ext4 root filesystem from it.
    Oci(Box<OciSource>),
}

/// An OCI registry pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciSource {
    pub reference: Reference,
    /// The reference as the caller wrote it (shown in provenance).
    pub given: String,
    /// `None`: the platform of the image's architecture.
    pub platform: Option<Platform>,
    /// For the registry's basic or token flow; never stored, logged or echoed.
    pub credentials: Option<RegistryCredentials>,
    /// The filesystem's size; `None`: content x 1.5, at least 64 MiB.
    pub size_bytes: Option<u64>,
}

impl OciSource {
    pub fn parse(
        reference: &str,
        platform: Option<&str>,
        credentials: Option<RegistryCredentials>,
        size_bytes: Option<u64>,
    ) -> Result<Self, DomainError> {
        let parsed = Reference::parse(reference)
            .map_err(|e| match e {
                DomainError::InvalidInput { reason, .. } => DomainError::invalid("source.reference", reason),
                other => other,
            })?
            .with_default_tag();
        if size_bytes == Some(0) {
            return Err(DomainError::invalid("source.sizeBytes", "must be positive"));
        }
        Ok(Self {
            reference: parsed,
            given: reference.to_owned(),
            platform: platform.map(Platform::parse).transpose().map_err(|e| match e {
                DomainError::InvalidInput { reason, .. } => DomainError::invalid("source.platform", reason),
                other => other,
            })?,
            credentials,
            size_bytes,
        })
    }
}

/// A registry login. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryCredentials(<redacted>)")
    }
}

impl ImageSource {
    /// `raw` is the caller's `sha256`, optionally prefixed `sha256:`.
    pub fn upload(sha256: Option<&str>) -> Result<Self, DomainError> {
        Ok(ImageSource::Upload {
            sha256: sha256.map(|s| parse_sha256("source.sha256", s)).transpose()?,
        })
    }

    pub fn url(url: String, sha256: Option<&str>) -> Result<Self, DomainError> {
        Ok(ImageSource::Url {
            url,
            sha256: sha256.map(|s| parse_sha256("source.sha256", s)).transpose()?,
        })
    }

    pub fn expected_sha256(&self) -> Option<&str> {
        match self {
            ImageSource::Upload { sha256 } | ImageSource::Url { sha256, .. } => sha256.as_deref(),
            ImageSource::Oci(_) => None,
        }
    }
}

/// Create an image.
#[derive(Debug, Clone)]
pub struct CreateImage {
    pub name: ImageName,
    pub description: Option<Description>,
    pub architecture: Architecture,
    pub os: Option<OsInfo>,
    pub tags: UserTags,
    pub protected: bool,
    pub visibility: Visibility,
    pub source: ImageSource,
    /// The kernel the image boots with (checked by the service: visible, same region and
    /// architecture, ready).
    pub kernel_id: Option<KernelId>,
}

/// Change an image's metadata, as a JSON merge patch: `None` leaves a field as it is; for the
/// nullable fields `Some(None)` removes (resets) it.
#[derive(Debug, Clone, Default)]
pub struct PatchImage {
    pub name: Option<ImageName>,
    pub description: Option<Option<Description>>,
    /// Per key: `Some` sets, `None` removes; the whole map `None` removes every user tag. Keys and
    /// values are checked when merged into the current tags.
    pub tags: Option<Option<BTreeMap<String, Option<String>>>>,
    pub protected: Option<Option<bool>>,
    /// `Some(None)` detaches the kernel.
    pub kernel_id: Option<Option<KernelId>>,
}

/// Register (or update) a consumer of an image.
#[derive(Debug, Clone)]
pub struct RegisterConsumer {
    /// What uses the image, e.g. `vm`: 1-63 lowercase letters, digits and `-`.
    pub kind: String,
    pub description: Option<Description>,
}

impl RegisterConsumer {
    pub fn new(kind: String, description: Option<&str>) -> Result<Self, DomainError> {
        let ok = !kind.is_empty()
            && kind.len() <= 63
            && kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(DomainError::invalid(
                "kind",
                "must be 1-63 lowercase letters, digits and '-'",
            ));
        }
        Ok(Self {
            kind,
            description: description.map(Description::parse).transpose()?,
        })
    }
}
