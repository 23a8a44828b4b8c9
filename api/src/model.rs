//! The JSON shapes of the API, with their OpenAPI schemas. Conversions to and from domain types
//! live here so handlers stay thin.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use strata_domain::image::{
    Architecture, DiskFormat, Image, ImageKind, ImageState, ImportPhase, OsInfo, ReasonCode, SourceKind, Visibility,
};
use utoipa::{IntoParams, ToSchema};

use crate::db::consumers::ConsumerRow;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvenanceView {
    pub source: SourceKind,
    /// Where the bytes came from, without credentials; null for uploads.
    pub reference: Option<String>,
    /// `sha256:<hex>` of the imported content, once known; for OCI pulls the manifest's digest
    /// (of the platform's manifest when the reference names an index).
    pub digest: Option<String>,
    /// OCI pulls: the digest of the image config.
    pub config_digest: Option<String>,
    /// OCI pulls: the platform pulled, e.g. `linux/amd64`.
    pub platform: Option<String>,
    /// The token subject that created the image.
    pub imported_by: String,
    pub imported_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub state: ImageState,
    /// Why the image is `failed`, for people.
    pub reason: Option<String>,
    /// Why the image is `failed`, for programs: a stable code to branch on.
    pub reason_code: Option<ReasonCode>,
    /// Bytes done of `bytesTotal`; for OCI pulls layer bytes while pulling, then stored bytes.
    pub bytes_done: u64,
    pub bytes_total: Option<u64>,
    /// Where a running import is; null when it does not say, and once the image is no longer
    /// `importing`.
    pub phase: Option<ImportPhase>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageView {
    pub id: uuid::Uuid,
    pub name: String,
    pub description: Option<String>,
    /// Null for global images.
    pub organization_id: Option<String>,
    pub region_id: String,
    pub visibility: Visibility,
    pub kind: ImageKind,
    pub disk_format: DiskFormat,
    pub architecture: Architecture,
    pub os: Option<OsInfo>,
    /// User tags plus the server's read-only `strata.dev/` provenance tags.
    #[schema(value_type = ImageTags)]
    pub tags: BTreeMap<String, String>,
    pub protected: bool,
    pub provenance: ProvenanceView,
    pub status: StatusView,
    pub size_bytes: Option<u64>,
    /// Hex sha256 of the content, once stored.
    pub sha256: Option<String>,
    /// The kernel the image boots with, if any.
    pub kernel_id: Option<uuid::Uuid>,
    /// Docker tags pointing at it (`alpine:3.19`), read-only here: set with `docker tag` and
    /// `docker load` through `/docker/{organizationID}/{regionID}`.
    pub docker_tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Increases with every change; the `ETag` is this number in quotes.
    pub revision: i64,
}

impl From<&Image> for ImageView {
    fn from(i: &Image) -> Self {
        Self {
            id: i.id.as_uuid(),
            name: i.name.to_string(),
            description: i.description.as_ref().map(|d| d.as_str().to_owned()),
            organization_id: i.organization_id.as_ref().map(ToString::to_string),
            region_id: i.region_id.to_string(),
            visibility: i.visibility,
            kind: i.kind,
            disk_format: i.disk_format,
            architecture: i.architecture,
            os: i.os.clone(),
            tags: i.all_tags(),
            protected: i.protected,
            provenance: ProvenanceView {
                source: i.provenance.source,
                reference: i.provenance.reference.clone(),
                digest: i.provenance.digest.clone(),
                config_digest: i.provenance.config_digest.clone(),
                platform: i.provenance.platform.clone(),
                imported_by: i.provenance.imported_by.clone(),
                imported_at: i.provenance.imported_at,
            },
            status: StatusView {
                state: i.status.state,
                reason: i.status.reason.clone(),
                reason_code: i.status.reason_code,
                bytes_done: i.status.bytes_done,
                bytes_total: i.status.bytes_total,
                // only while importing: a failed import keeps its last phase in the row
                phase: i.status.phase.filter(|_| i.status.state == ImageState::Importing),
            },
            size_bytes: i.size_bytes,
            sha256: i.sha256.clone(),
            kernel_id: i.kernel_id.map(|k| k.as_uuid()),
            docker_tags: i.docker_tags.clone(),
            created_at: i.created_at,
            updated_at: i.updated_at,
            revision: i.revision,
        }
    }
}

/// Where the image's bytes will come from.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceSpec {
    /// The caller uploads the bytes with `PUT .../file`.
    #[schema(title = "UploadSource")]
    Upload {
        /// Expected hex sha256 of the upload (optionally prefixed `sha256:`); a mismatch is refused
        /// with `checksum-mismatch`.
        #[schema(pattern = r"^(sha256:)?[0-9a-fA-F]{64}$")]
        sha256: Option<String>,
    },
    /// The server fetches a raw disk from this URL in the background (state `importing`).
    #[schema(title = "UrlSource")]
    Url {
        /// `http` or `https`; must resolve to public addresses. Credentials in it are used for the
        /// fetch only: never stored, logged or shown.
        #[schema(min_length = 1, max_length = 2048)]
        url: String,
        /// Expected hex sha256 (optionally prefixed `sha256:`); a mismatch fails the import with
        /// `checksum-mismatch`.
        #[schema(pattern = r"^(sha256:)?[0-9a-fA-F]{64}$")]
        sha256: Option<String>,
    },
    /// The server pulls an image from an OCI registry and builds an ext4 root filesystem of it
    /// in the background (state `importing`, `status.phase` says where). The image is
    /// `kind: rootfs`, `diskFormat: ext4`.
    #[schema(title = "OciSource")]
    #[serde(rename_all = "camelCase")]
    Oci {
        /// `[REGISTRY/]REPO[:TAG]` or `...@sha256:<hex>`, as the docker CLI reads it. The
        /// registry must pass the same address policy as URL imports. At most 237 characters:
        /// the name, normalised (`debian` -> `docker.io/library/debian`), must stay within 255.
        #[schema(
            min_length = 1,
            max_length = 237,
            example = "registry.example:5000/library/debian:bookworm"
        )]
        reference: String,
        /// `OS/ARCH[/VARIANT]` to choose from an index; default from `architecture`
        /// (`x86_64` -> `linux/amd64`, `aarch64` -> `linux/arm64`).
        #[schema(example = "linux/amd64")]
        platform: Option<String>,
        /// For the registry's token or basic flow; never stored, logged or shown.
        credentials: Option<RegistryCredentialsSpec>,
        /// The filesystem's size in bytes; default the content x 1.5, at least 64 MiB. Too
        /// small fails the import with `too-large`.
        #[schema(minimum = 1)]
        size_bytes: Option<u64>,
    },
}

/// A registry login.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredentialsSpec {
    #[schema(min_length = 1, max_length = 1024)]
    pub username: String,
    #[schema(min_length = 1, max_length = 4096)]
    pub password: String,
}

impl std::fmt::Debug for RegistryCredentialsSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryCredentialsSpec(<redacted>)")
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateImageRequest {
    /// 1-63 lowercase letters, digits, `.`, `_`, `-`; starts and ends alphanumeric. Required,
    /// except for OCI pulls: their default comes from the reference
    /// (`registry:5000/library/debian:bookworm` -> `debian-bookworm`; a digest reference ->
    /// `REPO-<first 12 hex digits>`).
    #[schema(min_length = 1, max_length = 63, pattern = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")]
    pub name: Option<String>,
    /// Up to 1024 characters; no control characters except newline and tab.
    #[schema(max_length = 1024, pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$")]
    pub description: Option<String>,
    /// Default `x86_64`.
    pub architecture: Option<Architecture>,
    pub os: Option<OsInfo>,
    /// At most 64; keys 1-63 of `A-Za-z0-9._/-`, values up to 255 characters without control
    /// characters; `strata.dev/` keys are reserved (`reserved-tag`).
    #[schema(value_type = Option<Tags>)]
    pub tags: Option<BTreeMap<String, String>>,
    /// Protected images cannot be deleted. Default false.
    pub protected: Option<bool>,
    /// Default `organization`; `global` needs a platform-admin token.
    pub visibility: Option<Visibility>,
    /// A `ready` kernel to boot with: visible to the image's organization (a global image needs a
    /// global kernel), in this region, of the same architecture; otherwise `invalid-kernel`.
    pub kernel_id: Option<uuid::Uuid>,
    pub source: SourceSpec,
}

fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A JSON merge patch (RFC 7396): an absent field stays as it is; `null` removes the field, which
/// for `description` clears it, for a tag removes that tag, for `tags` removes every user tag, and
/// for `protected` resets it to its default, `false`. `name` has no default and cannot be null.
/// A patch that changes nothing leaves the revision and the ETag as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchImageRequest {
    /// 1-63 lowercase letters, digits, `.`, `_`, `-`; starts and ends alphanumeric. Not nullable.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = String, min_length = 1, max_length = 63, pattern = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")]
    pub name: Option<Option<String>>,
    /// Up to 1024 characters; no control characters except newline and tab. `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 1024, pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$")]
    pub description: Option<Option<String>>,
    /// Per key: a string sets the tag, null removes it. `null` for the whole object removes all
    /// user tags. Same limits as on create; `strata.dev/` keys are reserved.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<TagPatch>)]
    pub tags: Option<Option<BTreeMap<String, Option<String>>>>,
    /// `null` resets it to `false`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<bool>)]
    pub protected: Option<Option<bool>>,
    /// The kernel to boot with, checked as on create (`invalid-kernel`); `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<uuid::Uuid>)]
    pub kernel_id: Option<Option<uuid::Uuid>>,
}

/// Tag keys, as the domain checks them: 1-63 ASCII letters, digits, `.`, `_`, `-`, `/`.
const TAG_KEY_PATTERN: &str = r"^[A-Za-z0-9._/-]{1,63}$";
/// Tag values: no control characters (`char::is_control`: C0, DEL and C1).
const TAG_VALUE_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

/// The OpenAPI schema of a tag map, constrained as the domain checks it. Writable maps refuse
/// the reserved `strata.dev/` prefix (in any case); a patch map also takes `null` values (remove
/// the tag). Whether the map itself may be `null` is said where it is used (`Option<...>`).
fn tag_map_schema(
    writable: bool,
    null_values: bool,
    description: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let mut key = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(strata_domain::tags::MAX_KEY_LEN))
        .pattern(Some(TAG_KEY_PATTERN))
        .build();
    if writable {
        // utoipa has no builder for `not`; extensions are written flat into the schema object.
        key.extensions = Some(utoipa::openapi::extensions::Extensions::from_iter([(
            "not",
            serde_json::json!({"pattern": "^[Ss][Tt][Rr][Aa][Tt][Aa]\\.[Dd][Ee][Vv]/"}),
        )]));
    }
    let value_type = if null_values {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::new(Type::String)
    };
    let mut value = ObjectBuilder::new().schema_type(value_type);
    if writable {
        // Shown values include provenance (a reference URL may be up to 2048 characters).
        value = value
            .max_length(Some(strata_domain::tags::MAX_VALUE_LEN))
            .pattern(Some(TAG_VALUE_PATTERN));
    }
    // Shown maps add the provenance tags to up to 64 user tags: no count limit there.
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .property_names(Some(key))
        .additional_properties(Some(value))
        .max_properties(writable.then_some(strata_domain::tags::MAX_TAGS))
        .into()
}

/// Named schemas for the three tag maps, so generated clients get readable model names.
macro_rules! tag_schema {
    ($name:ident, $writable:expr, $null_values:expr, $doc:expr) => {
        #[doc = $doc]
        pub struct $name;
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                tag_map_schema($writable, $null_values, $doc)
            }
        }
        impl utoipa::ToSchema for $name {}
    };
}

tag_schema!(
    Tags,
    true,
    false,
    "User tags: at most 64; keys 1-63 of `A-Za-z0-9._/-`, values up to 255 characters without \
     control characters; `strata.dev/` keys are reserved (`reserved-tag`)."
);
tag_schema!(
    TagPatch,
    true,
    true,
    "A merge patch of user tags: a string sets the tag, `null` removes it. Same limits as `Tags`."
);
tag_schema!(
    ImageTags,
    false,
    false,
    "User tags plus the server's read-only `strata.dev/` provenance tags."
);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsumerRequest {
    /// What uses the image, e.g. `vm`: 1-63 lowercase letters, digits and `-`.
    #[schema(pattern = "^[a-z0-9-]{1,63}$")]
    pub kind: String,
    /// Up to 1024 characters; no control characters except newline and tab.
    #[schema(max_length = 1024, pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$")]
    pub description: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerView {
    pub id: String,
    pub kind: String,
    pub description: Option<String>,
    /// The organization that registered the consumer.
    pub organization_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&ConsumerRow> for ConsumerView {
    fn from(r: &ConsumerRow) -> Self {
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

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePage {
    pub items: Vec<ImageView>,
    /// Pass as `pageToken` to get the next page; null on the last page.
    pub next_page_token: Option<String>,
}

/// Use of one quota.
#[derive(Debug, Serialize, ToSchema)]
pub struct Quota {
    pub used: u64,
    pub limit: u64,
}

/// The organization's usage in the region against each limit.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    /// Images of the organization in the region, whatever their state.
    pub images: Quota,
    /// Bytes of the organization's `ready` images and kernels in the region.
    pub bytes: Quota,
    /// Imports running now: URL imports and kernel pulls.
    pub concurrent_imports: Quota,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: String,
    /// Per dependency: `ok` or a short reason (no internal details).
    pub checks: BTreeMap<String, String>,
}

/// The v1 image and kernel lists' parameters: a scope, and pages.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `owned`: only the organization's own; `available` (default): plus the global ones.
    #[param(pattern = "^(available|owned)$")]
    pub scope: Option<String>,
    /// Page size, 1-10000; default 10000 (the default image quota of an organization, so a
    /// client that never pages sees every image or kernel of one within it). More follow when the
    /// response has a `Next-Page-Token` header.
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
    /// The `Next-Page-Token` of the previous page, with the same `scope`.
    #[serde(rename = "pageToken")]
    #[param(max_length = 1024, pattern = "^[A-Za-z0-9_-]{1,1024}$")]
    pub page_token: Option<String>,
}

/// Path parameters, for the OpenAPI document.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(non_snake_case, dead_code)]
pub struct OrgRegionPath {
    /// Organization the call acts for; must be in the token's `org_ids`.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    organizationID: String,
    /// Region id.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    regionID: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(non_snake_case, dead_code)]
pub struct ImagePath {
    /// Organization the call acts for; must be in the token's `org_ids`.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    organizationID: String,
    /// Region id.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    regionID: String,
    /// Image id (UUID).
    imageID: uuid::Uuid,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(non_snake_case, dead_code)]
pub struct ConsumerPath {
    /// Organization the call acts for; must be in the token's `org_ids`.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    organizationID: String,
    /// Region id.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    regionID: String,
    /// Image id (UUID).
    imageID: uuid::Uuid,
    /// The consumer's id in the system that registers it (e.g. a VM id): 1-128 of `A-Za-z0-9._:-`.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    consumerID: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(non_snake_case, dead_code)]
pub struct RegionPath {
    /// Region id.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    regionID: String,
}

/// Query parameters of the v2 image query, for the OpenAPI document (parsed by hand because
/// several are repeatable).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(non_snake_case, dead_code)]
pub struct QueryParamsDoc {
    /// Repeatable. Organizations to include; ones the caller may not read are dropped silently.
    /// Default: every organization the caller may read.
    #[param(max_items = 100, pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    organizationID: Option<Vec<String>>,
    /// `available` (default; includes global images) or `owned`.
    #[param(pattern = "^(available|owned)$")]
    scope: Option<String>,
    /// Repeatable: `pending`, `importing`, `ready`, `failed`.
    status: Option<Vec<ImageState>>,
    /// Exact image name.
    #[param(pattern = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")]
    name: Option<String>,
    architecture: Option<Architecture>,
    /// Images only: `disk` (a whole bootable disk) or `rootfs` (a root filesystem).
    kind: Option<strata_domain::image::ImageKind>,
    /// Repeatable: `key=value` (exact value) or `key` (any value); reserved `strata.dev/` tags too.
    #[param(max_items = 16, pattern = r"^[A-Za-z0-9._/-]{1,63}(=[^\x00-\x1f\x7f]{0,255})?$")]
    tag: Option<Vec<String>>,
    /// `name` (default), `createdAt` or `-createdAt`; ties are broken by id.
    #[param(pattern = "^(name|createdAt|-createdAt)$")]
    sort: Option<String>,
    /// 1-1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `nextPageToken` of the previous page, with the same other parameters.
    #[param(max_length = 1024, pattern = "^[A-Za-z0-9_-]{1,1024}$")]
    pageToken: Option<String>,
}

/// A region the caller can use.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionView {
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    pub id: String,
}

/// The regions the caller can use, in id order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionList {
    pub items: Vec<RegionView>,
}

/// How to sign in to this server, for a client that has no token yet.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignInInfo {
    /// The server trusts its development signing key: `strata token --org ORG` mints a token.
    /// Off in production.
    pub dev_key: bool,
}

// Request bodies become domain commands here, at the edge: services never see a DTO.

impl TryFrom<CreateImageRequest> for strata_domain::command::CreateImage {
    type Error = strata_domain::DomainError;
    fn try_from(req: CreateImageRequest) -> Result<Self, Self::Error> {
        use strata_domain::command::ImageSource;
        use strata_domain::name::{Description, ImageName};
        let source = match req.source {
            SourceSpec::Upload { sha256 } => ImageSource::upload(sha256.as_deref())?,
            SourceSpec::Url { url, sha256 } => ImageSource::url(url, sha256.as_deref())?,
            SourceSpec::Oci {
                reference,
                platform,
                credentials,
                size_bytes,
            } => {
                let credentials = credentials.map(|c| strata_domain::command::RegistryCredentials {
                    username: c.username,
                    password: c.password,
                });
                ImageSource::Oci(Box::new(strata_domain::command::OciSource::parse(
                    &reference,
                    platform.as_deref(),
                    credentials,
                    size_bytes,
                )?))
            }
        };
        let name = match (&req.name, &source) {
            (Some(n), _) => ImageName::parse(n)?,
            (None, ImageSource::Oci(oci)) => oci.reference.default_image_name()?,
            (None, _) => return Err(strata_domain::DomainError::invalid("name", "is required")),
        };
        Ok(Self {
            name,
            description: req.description.as_deref().map(Description::parse).transpose()?,
            architecture: req.architecture.unwrap_or(Architecture::X86_64),
            os: req.os.map(|o| o.validate()).transpose()?,
            tags: strata_domain::tags::UserTags::parse(req.tags.unwrap_or_default())?,
            protected: req.protected.unwrap_or(false),
            visibility: req.visibility.unwrap_or(Visibility::Organization),
            source,
            kernel_id: req.kernel_id.map(strata_domain::ids::KernelId::from_uuid),
        })
    }
}

impl TryFrom<PatchImageRequest> for strata_domain::command::PatchImage {
    type Error = strata_domain::DomainError;
    fn try_from(req: PatchImageRequest) -> Result<Self, Self::Error> {
        use strata_domain::name::{Description, ImageName};
        let name = match req.name {
            None => None,
            Some(None) => return Err(strata_domain::DomainError::invalid("name", "cannot be null")),
            Some(Some(n)) => Some(ImageName::parse(&n)?),
        };
        let description = req
            .description
            .map(|d| d.as_deref().map(Description::parse).transpose())
            .transpose()?;
        Ok(Self {
            name,
            description,
            tags: req.tags,
            protected: req.protected,
            kernel_id: req.kernel_id.map(|k| k.map(strata_domain::ids::KernelId::from_uuid)),
        })
    }
}

impl TryFrom<ConsumerRequest> for strata_domain::command::RegisterConsumer {
    type Error = strata_domain::DomainError;
    fn try_from(req: ConsumerRequest) -> Result<Self, Self::Error> {
        Self::new(req.kind, req.description.as_deref())
    }
}
