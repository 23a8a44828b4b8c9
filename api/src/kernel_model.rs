//! The JSON shapes of the kernel API, with their OpenAPI schemas and conversions.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use strata_domain::DomainError;
use strata_domain::image::{Architecture, Visibility, parse_sha256};
use strata_domain::kernel::{ArtifactInfo, Kernel, KernelFormat, KernelSource, KernelVersion, parse_distro};
use strata_domain::name::{Description, ImageName};
use strata_domain::tags::UserTags;
use utoipa::{IntoParams, ToSchema};

use crate::config::KernelCatalogEntry;
use crate::db::kernels::KernelConsumerRow;
use crate::model::{ConsumerView, StatusView};
use crate::service::kernels::{CatalogItem, CreateKernel, KernelPatch, NewSource};

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KernelProvenanceView {
    pub source: KernelSource,
    /// Where the files came from, without credentials; null for uploads.
    pub reference: Option<String>,
    /// `sha256:<hex>` of what was received (the vmlinux, or the bundle as sent), once known.
    pub digest: Option<String>,
    pub imported_by: String,
    pub imported_at: DateTime<Utc>,
}

/// One stored file of a kernel.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KernelFileView {
    pub size_bytes: u64,
    /// Hex sha256; the file's ETag is this value in quotes.
    pub sha256: String,
}

impl From<&ArtifactInfo> for KernelFileView {
    fn from(a: &ArtifactInfo) -> Self {
        Self {
            size_bytes: a.size,
            sha256: a.sha256.clone(),
        }
    }
}

/// The kernel's files, once stored; download each with `GET .../kernels/{kernelID}/{artifact}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KernelFilesView {
    /// The kernel; present on every `ready` kernel.
    pub vmlinux: Option<KernelFileView>,
    pub initrd: Option<KernelFileView>,
    /// The bundle's `modules/` tree, kept as one tar.
    pub modules: Option<KernelFileView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KernelView {
    pub id: uuid::Uuid,
    pub name: String,
    pub description: Option<String>,
    /// Null for global kernels.
    pub organization_id: Option<String>,
    pub region_id: String,
    pub visibility: Visibility,
    pub architecture: Architecture,
    pub version: String,
    /// `elf` or `bzimage`, detected when the vmlinux is stored; null before.
    pub format: Option<KernelFormat>,
    pub distro: Option<String>,
    /// User tags plus the server's read-only `strata.dev/` provenance tags.
    #[schema(value_type = crate::model::ImageTags)]
    pub tags: BTreeMap<String, String>,
    pub protected: bool,
    pub provenance: KernelProvenanceView,
    pub status: StatusView,
    pub artifacts: KernelFilesView,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Increases with every change; the `ETag` is this number in quotes.
    pub revision: i64,
}

impl From<&Kernel> for KernelView {
    fn from(k: &Kernel) -> Self {
        Self {
            id: k.id.as_uuid(),
            name: k.name.to_string(),
            description: k.description.as_ref().map(|d| d.as_str().to_owned()),
            organization_id: k.organization_id.as_ref().map(ToString::to_string),
            region_id: k.region_id.to_string(),
            visibility: k.visibility,
            architecture: k.architecture,
            version: k.version.as_str().to_owned(),
            format: k.format,
            distro: k.distro.clone(),
            tags: k.all_tags(),
            protected: k.protected,
            provenance: KernelProvenanceView {
                source: k.provenance.source,
                reference: k.provenance.reference.clone(),
                digest: k.provenance.digest.clone(),
                imported_by: k.provenance.imported_by.clone(),
                imported_at: k.provenance.imported_at,
            },
            status: StatusView {
                state: k.status.state,
                reason: k.status.reason.clone(),
                reason_code: k.status.reason_code,
                bytes_done: k.status.bytes_done,
                bytes_total: k.status.bytes_total,
                phase: k.status.phase,
            },
            artifacts: KernelFilesView {
                vmlinux: k.artifacts.vmlinux.as_ref().map(KernelFileView::from),
                initrd: k.artifacts.initrd.as_ref().map(KernelFileView::from),
                modules: k.artifacts.modules.as_ref().map(KernelFileView::from),
            },
            created_at: k.created_at,
            updated_at: k.updated_at,
            revision: k.revision,
        }
    }
}

/// Where the kernel's files will come from.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum KernelSourceSpec {
    /// The caller uploads the vmlinux with `PUT .../kernels/{kernelID}/file`.
    #[schema(title = "KernelUploadSource")]
    Upload {
        /// Expected hex sha256 of the vmlinux; a mismatch is refused with `checksum-mismatch`.
        #[schema(pattern = r"^(sha256:)?[0-9a-fA-F]{64}$")]
        sha256: Option<String>,
    },
    /// The caller uploads a tar, tar.gz, tar.zst or tar.xz holding `vmlinux`, optional `initrd.img` and
    /// optional `modules/` with `PUT .../kernels/{kernelID}/bundle`.
    #[schema(title = "KernelBundleUploadSource")]
    UploadBundle {
        /// Expected hex sha256 of the bundle as sent; checked before anything is unpacked.
        #[schema(pattern = r"^(sha256:)?[0-9a-fA-F]{64}$")]
        sha256: Option<String>,
    },
    /// The server pulls a bundle (tar, tar.gz, tar.zst or tar.xz, laid out as for `upload-bundle`) from
    /// an `http(s)` URL through the same address policy as URL image imports. The kernel is
    /// `importing` until the pull ends; poll it.
    #[schema(title = "KernelUrlSource")]
    Url {
        /// `http` or `https`; credentials in it are used for the fetch and never stored or shown.
        #[schema(min_length = 1, max_length = 2048)]
        url: String,
        /// Expected hex sha256 of the bundle; a mismatch fails the pull with `checksum-mismatch`
        /// before anything is unpacked.
        #[schema(pattern = r"^(sha256:)?[0-9a-fA-F]{64}$")]
        sha256: Option<String>,
    },
    /// The server pulls an entry of the kernel catalog (`GET .../kernel-catalog`), checked
    /// against the entry's sha256 and size. `version`, `architecture`, `distro` and
    /// `description` default to the entry's.
    #[schema(title = "KernelCatalogSource")]
    Catalog {
        /// The catalog entry's name.
        #[schema(min_length = 1, max_length = 63)]
        entry: String,
    },
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKernelRequest {
    /// 1-63 lowercase letters, digits, `.`, `_`, `-`; starts and ends alphanumeric. Unique per
    /// organization and region, and among global kernels.
    #[schema(min_length = 1, max_length = 63, pattern = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")]
    pub name: String,
    /// Up to 1024 characters; no control characters except newline and tab.
    #[schema(max_length = 1024, pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$")]
    pub description: Option<String>,
    /// Default `x86_64` (for a catalog pull, the entry's). The vmlinux must be for this machine
    /// (`architecture-mismatch`).
    pub architecture: Option<Architecture>,
    /// e.g. `6.1.0-18`: 1-63 of `A-Za-z0-9._+~-`, starting with a letter or digit. Required
    /// unless the source is a catalog entry (which has one).
    #[schema(min_length = 1, max_length = 63, pattern = r"^[A-Za-z0-9][A-Za-z0-9._+~-]{0,62}$")]
    pub version: Option<String>,
    /// e.g. `debian`; 1-63 printable characters.
    #[schema(min_length = 1, max_length = 63, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub distro: Option<String>,
    #[schema(value_type = Option<crate::model::Tags>)]
    pub tags: Option<BTreeMap<String, String>>,
    /// Protected kernels cannot be deleted. Default false.
    pub protected: Option<bool>,
    /// Default `organization`; `global` needs a platform-admin token.
    pub visibility: Option<Visibility>,
    pub source: KernelSourceSpec,
}

impl TryFrom<CreateKernelRequest> for CreateKernel {
    type Error = DomainError;
    fn try_from(r: CreateKernelRequest) -> Result<Self, DomainError> {
        let (source, sha) = match r.source {
            KernelSourceSpec::Upload { sha256 } => (NewSource::Upload, sha256),
            KernelSourceSpec::UploadBundle { sha256 } => (NewSource::UploadBundle, sha256),
            KernelSourceSpec::Url { url, sha256 } => (NewSource::Url { url }, sha256),
            KernelSourceSpec::Catalog { entry } => (NewSource::Catalog { entry }, None),
        };
        let version = match (&r.version, &source) {
            (Some(v), _) => Some(KernelVersion::parse(v)?),
            (None, NewSource::Catalog { .. }) => None,
            (None, _) => {
                return Err(DomainError::invalid(
                    "version",
                    "is required unless source.type is catalog",
                ));
            }
        };
        Ok(CreateKernel {
            name: ImageName::parse(&r.name)?,
            description: r.description.as_deref().map(Description::parse).transpose()?,
            architecture: r.architecture,
            version,
            distro: r.distro.as_deref().map(parse_distro).transpose()?,
            tags: UserTags::parse(r.tags.unwrap_or_default())?,
            protected: r.protected.unwrap_or(false),
            visibility: r.visibility.unwrap_or(Visibility::Organization),
            source,
            expected_sha256: sha.as_deref().map(|s| parse_sha256("source.sha256", s)).transpose()?,
        })
    }
}

fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A JSON merge patch (RFC 7396), as for images: absent fields stay, `null` removes (`protected`
/// resets to `false`; `name` cannot be null). A patch that changes nothing keeps the revision.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchKernelRequest {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = String, min_length = 1, max_length = 63, pattern = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 1024, pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 63, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub distro: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<crate::model::TagPatch>)]
    pub tags: Option<Option<BTreeMap<String, Option<String>>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<bool>)]
    pub protected: Option<Option<bool>>,
}

impl TryFrom<PatchKernelRequest> for KernelPatch {
    type Error = DomainError;
    fn try_from(r: PatchKernelRequest) -> Result<Self, DomainError> {
        let name = match r.name {
            None => None,
            Some(None) => return Err(DomainError::invalid("name", "cannot be null")),
            Some(Some(n)) => Some(ImageName::parse(&n)?),
        };
        let description = r
            .description
            .map(|d| d.as_deref().map(Description::parse).transpose())
            .transpose()?;
        let distro = r
            .distro
            .map(|d| d.as_deref().map(parse_distro).transpose())
            .transpose()?;
        Ok(KernelPatch {
            name,
            description,
            distro,
            tags: r.tags,
            protected: r.protected.map(|p| p.unwrap_or(false)),
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KernelPage {
    pub items: Vec<KernelView>,
    /// Pass as `pageToken` to get the next page; null on the last page.
    pub next_page_token: Option<String>,
}

/// A catalog entry, and whether a `ready` kernel with its bundle's sha256 exists already.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KernelCatalogItem {
    pub name: String,
    pub distro: Option<String>,
    pub architecture: Architecture,
    pub version: String,
    pub url: String,
    /// Hex sha256 of the bundle.
    pub sha256: String,
    pub size_bytes: u64,
    pub description: Option<String>,
    /// This organization has a kernel from this bundle in this region.
    pub in_organization: bool,
    /// A global kernel from this bundle exists in this region.
    pub global_exists: bool,
}

impl From<&CatalogItem<'_>> for KernelCatalogItem {
    fn from(c: &CatalogItem<'_>) -> Self {
        let e: &KernelCatalogEntry = c.entry;
        Self {
            name: e.name.clone(),
            distro: e.distro.clone(),
            // checked at start
            architecture: e.architecture.parse().unwrap_or(Architecture::X86_64),
            version: e.version.clone(),
            url: e.url.clone(),
            sha256: e.sha256.clone(),
            size_bytes: e.size_bytes,
            description: e.description.clone(),
            in_organization: c.in_organization,
            global_exists: c.global,
        }
    }
}

impl From<&KernelConsumerRow> for ConsumerView {
    fn from(r: &KernelConsumerRow) -> Self {
        let at = |us| DateTime::from_timestamp_micros(us).unwrap_or_default();
        Self {
            id: r.consumer_id.clone(),
            kind: r.kind.clone(),
            description: r.description.clone(),
            organization_id: r.organization_id.clone(),
            created_at: at(r.created_at),
            updated_at: at(r.updated_at),
        }
    }
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(non_snake_case, dead_code)]
pub struct KernelPath {
    /// Organization the call acts for; must be in the token's `org_ids`.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    organizationID: String,
    /// Region id.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    regionID: String,
    /// Kernel id (UUID).
    kernelID: uuid::Uuid,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(non_snake_case, dead_code)]
pub struct KernelFilePath {
    /// Organization the call acts for; must be in the token's `org_ids`.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    organizationID: String,
    /// Region id.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    regionID: String,
    /// Kernel id (UUID).
    kernelID: uuid::Uuid,
    /// Which file.
    #[param(value_type = strata_domain::kernel::KernelArtifact)]
    artifact: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(non_snake_case, dead_code)]
pub struct KernelConsumerPath {
    /// Organization the call acts for; must be in the token's `org_ids`.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    organizationID: String,
    /// Region id.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    regionID: String,
    /// Kernel id (UUID).
    kernelID: uuid::Uuid,
    /// The consumer's id in the system that registers it (e.g. a VM id): 1-128 of `A-Za-z0-9._:-`.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    consumerID: String,
}
