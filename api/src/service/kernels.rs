//! Kernels: create, read, change, delete, upload (a vmlinux or a bundle), download, consumers,
//! the catalog, and the rule by which images may reference them.

use std::path::PathBuf;

use bytes::Bytes;
use futures::Stream;
use strata_domain::ids::{BlobId, ConsumerId};
use strata_domain::image::{Architecture, Image, ImageState, Status, Visibility, check_if_match, parse_sha256};
use strata_domain::kernel::{
    ArtifactInfo, Artifacts, Kernel, KernelArtifact, KernelFormat, KernelId, KernelProvenance, KernelSource,
    KernelVersion, parse_distro,
};
use strata_domain::kernel_format::DETECT_LEN;
use strata_domain::name::{Description, ImageName};
use strata_domain::tags::UserTags;
use strata_domain::{DomainError, ResourceKind};
use strata_providers::BlobKey;
use strata_providers::kernel_store::{StageError, StagedFile, stage};

use crate::config::{Config, KernelCatalogEntry};
use crate::db;
use crate::db::kernels::{DeleteOutcome, KernelConsumerRow};
use crate::db::tenant::OrgKernels;
use crate::error::{ApiError, ApiResult};
use crate::service::body::{BodyError, Pace, QuotaWatch, guard};
use crate::service::download::Download;
use crate::service::kernel_pull::{BundleRequest, KernelBundlePull};
use crate::state::AppState;
use crate::tenancy::{KernelsWrite, OrgRegion};

/// What kernels need from the configuration, checked once at start.
pub struct KernelSettings {
    pub max_bytes: u64,
    pub staging_dir: PathBuf,
    pub catalog: Vec<KernelCatalogEntry>,
}

impl KernelSettings {
    pub fn from_config(cfg: &Config) -> anyhow::Result<Self> {
        let mut catalog = cfg.kernel_catalog.clone();
        if let Some(file) = &cfg.kernels.catalog_file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("kernels.catalog_file {}: {e}", file.display()))?;
            let more: Vec<KernelCatalogEntry> = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("kernels.catalog_file {}: {e}", file.display()))?;
            catalog.extend(more);
        }
        let mut seen = std::collections::BTreeSet::new();
        for e in &mut catalog {
            let bad = |what: String| anyhow::anyhow!("kernel catalog entry {:?}: {what}", e.name);
            ImageName::parse(&e.name).map_err(|x| bad(x.to_string()))?;
            e.architecture.parse::<Architecture>().map_err(|x| bad(x.to_string()))?;
            KernelVersion::parse(&e.version).map_err(|x| bad(x.to_string()))?;
            e.sha256 = parse_sha256("sha256", &e.sha256).map_err(|x| bad(x.to_string()))?;
            if let Some(d) = &e.distro {
                parse_distro(d).map_err(|x| bad(x.to_string()))?;
            }
            if !seen.insert(e.name.clone()) {
                return Err(bad("configured twice".into()));
            }
        }
        Ok(Self {
            max_bytes: cfg.kernels.max_bytes,
            staging_dir: cfg
                .kernels
                .staging_dir
                .clone()
                .unwrap_or_else(|| cfg.data_dir.join("staging")),
            catalog,
        })
    }
}

fn not_found(id: KernelId) -> ApiError {
    DomainError::not_found(ResourceKind::Kernel, id).into()
}

/// The kernel if the organization of `access` may see it; 404 otherwise (also across regions).
/// The tenant condition is in the repository handle's SQL.
pub async fn find_visible<S>(st: &AppState, access: &OrgRegion<S>, id: KernelId) -> ApiResult<Kernel> {
    let k = OrgKernels::new(&st.db, access).find_visible(id.as_uuid()).await?;
    k.ok_or_else(|| not_found(id))
}

/// The kernel if the caller may change it; everyone else gets the same 404.
pub async fn find_modifiable(st: &AppState, access: &OrgRegion<KernelsWrite>, id: KernelId) -> ApiResult<Kernel> {
    let k = OrgKernels::new(&st.db, access).find_modifiable(id.as_uuid()).await?;
    k.ok_or_else(|| not_found(id))
}

/// One page of the organization's kernels (and, unless `owned_only`, the global ones) by name.
pub async fn list<S>(
    st: &AppState,
    access: &OrgRegion<S>,
    owned_only: bool,
    limit: Option<u32>,
    page_token: Option<&str>,
) -> ApiResult<Page> {
    use strata_domain::query::{V1_DEFAULT_LIMIT, V1_MAX_LIMIT};
    let kernels = OrgKernels::new(&st.db, access);
    let mut q = kernels.by_name(
        !owned_only,
        strata_domain::query::ImageQuery::check_limit_of(limit, V1_DEFAULT_LIMIT, V1_MAX_LIMIT)?,
    );
    if let Some(t) = page_token {
        q.after = Some(q.decode_token(t)?);
    }
    let (items, more) = kernels.page(&q).await?;
    Ok(Page::of(&q, items, more))
}

/// How a new kernel's files will arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewSource {
    /// `PUT .../file` with the vmlinux.
    Upload,
    /// `PUT .../bundle` with a tar, tar.gz, tar.zst or tar.xz.
    UploadBundle,
    /// A bundle the server pulls (a job on the runner).
    Url { url: String },
    /// A catalog entry the server pulls (a job on the runner).
    Catalog { entry: String },
}

/// A validated request to create a kernel.
pub struct CreateKernel {
    pub name: ImageName,
    pub description: Option<Description>,
    /// Default `x86_64`, or the catalog entry's.
    pub architecture: Option<Architecture>,
    /// Required unless the source is a catalog entry.
    pub version: Option<KernelVersion>,
    pub distro: Option<String>,
    pub tags: UserTags,
    pub protected: bool,
    pub visibility: Visibility,
    pub source: NewSource,
    pub expected_sha256: Option<String>,
}

pub async fn create(st: &AppState, access: &OrgRegion<KernelsWrite>, cmd: CreateKernel) -> ApiResult<Kernel> {
    if cmd.visibility == Visibility::Global && !access.principal.platform_admin {
        return Err(DomainError::Forbidden {
            reason: "only platform admins create global kernels".into(),
        }
        .into());
    }
    create_unchecked(
        st,
        access.region_id(),
        Some(&access.org),
        &access.principal.subject,
        cmd,
    )
    .await
}

/// Creates a kernel for `org` (or a global one) once the caller's right to has been checked:
/// by [`create`] for API calls, by the defaults reconciler for the operator's own defaults.
pub(crate) async fn create_unchecked(
    st: &AppState,
    region: &strata_domain::ids::RegionId,
    org: Option<&strata_domain::ids::OrganizationId>,
    subject: &str,
    cmd: CreateKernel,
) -> ApiResult<Kernel> {
    let organization_id = match cmd.visibility {
        Visibility::Global => None,
        Visibility::Organization => Some(
            org.cloned()
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("an organization kernel without an organization")))?,
        ),
    };
    let entry = match &cmd.source {
        NewSource::Catalog { entry } => Some(catalog_entry(st, entry)?),
        _ => None,
    };
    let entry_arch = entry.map(|e| e.architecture.parse::<Architecture>()).transpose()?;
    let architecture = match (cmd.architecture, entry_arch) {
        (Some(a), Some(e)) if a != e => {
            return Err(DomainError::ArchitectureMismatch {
                found: e.to_string(),
                declared: a.to_string(),
            }
            .into());
        }
        (Some(a), _) => a,
        (None, Some(e)) => e,
        (None, None) => Architecture::X86_64,
    };
    let version = match (cmd.version, entry) {
        (Some(v), _) => v,
        (None, Some(e)) => KernelVersion::parse(&e.version)?,
        (None, None) => return Err(DomainError::invalid("version", "is required").into()),
    };
    let now = db::now();
    let pulled = matches!(cmd.source, NewSource::Url { .. } | NewSource::Catalog { .. });
    let mut k = Kernel {
        id: KernelId::new(),
        name: cmd.name,
        description: match (cmd.description, entry.and_then(|e| e.description.as_deref())) {
            (Some(d), _) => Some(d),
            (None, Some(d)) => Some(Description::parse(d)?),
            (None, None) => None,
        },
        organization_id,
        region_id: region.clone(),
        visibility: cmd.visibility,
        architecture,
        version,
        format: None,
        distro: cmd.distro.or_else(|| entry.and_then(|e| e.distro.clone())),
        tags: cmd.tags,
        protected: cmd.protected,
        provenance: KernelProvenance {
            source: match cmd.source {
                NewSource::Upload => KernelSource::Upload,
                NewSource::UploadBundle => KernelSource::UploadBundle,
                NewSource::Url { .. } => KernelSource::Url,
                NewSource::Catalog { .. } => KernelSource::Catalog,
            },
            reference: None,
            digest: None,
            imported_by: subject.to_owned(),
            imported_at: now,
        },
        status: Status {
            state: if pulled {
                ImageState::Importing
            } else {
                ImageState::Pending
            },
            reason: None,
            reason_code: None,
            bytes_done: 0,
            bytes_total: None,
            phase: None,
        },
        expected_sha256: match entry {
            Some(e) => Some(e.sha256.clone()),
            None => cmd.expected_sha256,
        },
        artifacts: Artifacts::default(),
        created_at: now,
        updated_at: now,
        revision: 1,
    };
    let pull = match (&cmd.source, entry) {
        (NewSource::Url { url }, _) => Some(BundleRequest {
            url: url.clone(),
            sha256: k.expected_sha256.clone(),
            max_bytes: st.kernels.max_bytes,
            architecture,
            catalog: None,
        }),
        (NewSource::Catalog { .. }, Some(e)) => Some(BundleRequest {
            url: e.url.clone(),
            sha256: Some(e.sha256.clone()),
            max_bytes: e.size_bytes.min(st.kernels.max_bytes),
            architecture,
            catalog: Some(e.name.clone()),
        }),
        _ => None,
    };
    match pull {
        Some(req) => {
            let checked = st.jobs.check::<KernelBundlePull>(req).await?;
            k.provenance.reference = checked.reference.clone();
            st.jobs.start_kernel::<KernelBundlePull>(&k, checked).await?;
        }
        None => db::kernels::insert(&st.db, &k).await?,
    }
    tracing::info!(kernel = %k.id, name = %k.name, source = %k.provenance.source, "kernel created");
    Ok(k)
}

fn catalog_entry<'a>(st: &'a AppState, name: &str) -> Result<&'a KernelCatalogEntry, DomainError> {
    st.kernels.catalog.iter().find(|e| e.name == name).ok_or_else(|| {
        DomainError::invalid(
            "source.entry",
            format!("no catalog entry is named {name:?}; GET .../kernel-catalog lists them"),
        )
    })
}

/// A merge patch of a kernel's user-editable fields (`None`: leave as is; `Some(None)`: remove).
#[derive(Default)]
pub struct KernelPatch {
    pub name: Option<ImageName>,
    pub description: Option<Option<Description>>,
    pub distro: Option<Option<String>>,
    pub tags: Option<Option<std::collections::BTreeMap<String, Option<String>>>>,
    pub protected: Option<bool>,
}

pub async fn patch(
    st: &AppState,
    access: &OrgRegion<KernelsWrite>,
    id: KernelId,
    p: KernelPatch,
    if_match: Option<&str>,
) -> ApiResult<Kernel> {
    for _ in 0..5 {
        let current = find_modifiable(st, access, id).await?;
        let next = apply_patch(&current, &p)?;
        if let Some(tag) = if_match {
            check_if_match(tag, current.revision)?;
        }
        let Some(next) = next else {
            return Ok(current);
        };
        if db::kernels::update_metadata(&st.db, &next, current.revision).await? {
            return Ok(next);
        }
        if if_match.is_some() {
            let now = find_modifiable(st, access, id).await?;
            return Err(DomainError::PreconditionFailed { current: now.revision }.into());
        }
    }
    Err(ApiError::internal(anyhow::anyhow!(
        "kernel {id} kept changing during PATCH"
    )))
}

fn apply_patch(current: &Kernel, p: &KernelPatch) -> Result<Option<Kernel>, DomainError> {
    let mut next = current.clone();
    if let Some(n) = &p.name {
        next.name = n.clone();
    }
    if let Some(d) = &p.description {
        next.description = d.clone();
    }
    if let Some(d) = &p.distro {
        next.distro = d.clone();
    }
    match &p.tags {
        None => {}
        Some(None) => next.tags = UserTags::default(),
        Some(Some(patch)) => next.tags = current.tags.merge(patch)?,
    }
    if let Some(pr) = p.protected {
        next.protected = pr;
    }
    let unchanged = next.name == current.name
        && next.description == current.description
        && next.distro == current.distro
        && next.tags == current.tags
        && next.protected == current.protected;
    if unchanged {
        return Ok(None);
    }
    next.updated_at = db::now();
    next.revision = current.revision + 1;
    Ok(Some(next))
}

/// What a client sends to `.../file` or `.../bundle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadKind {
    Vmlinux,
    Bundle,
}

/// Stages the body (size-capped, hashed, checked against the promised sha256), validates it,
/// stores the files and marks the kernel ready. On any failure the kernel stays `pending` and
/// nothing of the upload stays in storage or on disk.
pub async fn upload<S, E>(
    st: &AppState,
    access: &OrgRegion<KernelsWrite>,
    id: KernelId,
    kind: UploadKind,
    content_length: Option<u64>,
    body: S,
) -> ApiResult<Kernel>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let k = find_modifiable(st, access, id).await?;
    k.require_state(ImageState::Pending)?;
    let wants = match k.provenance.source {
        KernelSource::UploadBundle => UploadKind::Bundle,
        _ => UploadKind::Vmlinux,
    };
    if wants != kind {
        let (actual, expected) = match wants {
            UploadKind::Bundle => ("created for a bundle", "sent to .../bundle"),
            UploadKind::Vmlinux => ("created for a single vmlinux", "sent to .../file"),
        };
        return Err(DomainError::InvalidState {
            actual: actual.into(),
            expected: expected.into(),
        }
        .into());
    }
    let limit = st.kernels.max_bytes;
    if content_length.is_some_and(|n| n > limit) {
        return Err(DomainError::TooLarge { limit }.into());
    }
    let quota = k.organization_id.as_ref().map(|o| st.quotas.limits_for(o.as_str()));
    if let (Some(n), Some(org), Some(l)) = (content_length, &k.organization_id, quota) {
        db::usage::bytes_fit(&st.db, org.as_str(), k.region_id.as_str(), n, l).await?;
    }
    let watch = match (&k.organization_id, quota) {
        (Some(org), Some(l)) => Some(QuotaWatch {
            db: st.db.clone(),
            org: org.to_string(),
            region: k.region_id.to_string(),
            limit: l.bytes,
        }),
        _ => None,
    };
    let body = guard(body, Pace::from_limits(&st.limits), watch).await;
    let staged = stage(
        body,
        &st.kernels.staging_dir,
        limit,
        DETECT_LEN,
        k.expected_sha256.as_deref(),
    )
    .await
    .map_err(stage_error)?;
    let digest = format!("sha256:{}", staged.sha256);
    let (format, files, dir) = match kind {
        UploadKind::Vmlinux => {
            let detected = KernelFormat::validate(&staged.head, k.architecture).map_err(DomainError::from)?;
            (detected.format, vec![(KernelArtifact::Vmlinux, staged)], None)
        }
        UploadKind::Bundle => {
            let (format, files, dir) = unpack_bundle(st, &k, staged).await?;
            (format, files, Some(dir))
        }
    };
    let store = &access.region.store;
    let mut artifacts = Artifacts::default();
    let stored = store_files(store, k.id, &files, &mut artifacts).await;
    drop(files);
    drop(dir);
    let marked = match stored {
        Ok(()) => db::kernels::mark_ready(&st.db, &k, format, &artifacts, &digest, quota)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    if !matches!(marked, Ok(true)) {
        // Over quota, a database or storage error, or another upload won: drop our copies.
        remove_files(store, k.id, &artifacts).await;
    }
    if !marked? {
        let now = find_visible(st, access, id).await?;
        now.require_state(ImageState::Pending)?;
        return Err(ApiError::internal(anyhow::anyhow!(
            "kernel {id} left pending after a lost race"
        )));
    }
    tracing::info!(kernel = %id, size = artifacts.total_size(), "kernel uploaded");
    find_visible(st, access, id).await
}

pub(crate) fn stage_error<E: std::fmt::Display>(e: StageError<BodyError<E>>) -> ApiError {
    match e {
        StageError::TooLarge { limit } => DomainError::TooLarge { limit }.into(),
        StageError::ChecksumMismatch { expected, actual } => DomainError::ChecksumMismatch { expected, actual }.into(),
        StageError::Source(BodyError::Timeout(reason)) => DomainError::RequestTimeout { reason }.into(),
        StageError::Source(BodyError::Refused(e)) => e.into(),
        StageError::Source(BodyError::Source(e)) => {
            DomainError::invalid("body", format!("the upload was interrupted: {e}")).into()
        }
        StageError::Io(e) => ApiError::internal(anyhow::anyhow!("staging a kernel upload: {e}")),
    }
}

async fn store_files(
    store: &strata_providers::BlobStore,
    id: KernelId,
    files: &[(KernelArtifact, StagedFile)],
    out: &mut Artifacts,
) -> ApiResult<()> {
    for (artifact, f) in files {
        let blob = BlobId::new();
        // Recorded before the write so a failure part-way removes what was written.
        out.set(
            *artifact,
            ArtifactInfo {
                blob,
                size: f.size,
                sha256: f.sha256.clone(),
            },
        );
        store.put_kernel_file(id, blob, &f.path).await?;
    }
    Ok(())
}

async fn remove_files(store: &strata_providers::BlobStore, id: KernelId, artifacts: &Artifacts) {
    for (a, info) in artifacts.iter() {
        if let Err(e) = store.delete(&BlobKey::kernel(id, info.blob)).await {
            tracing::warn!(kernel = %id, artifact = %a, blob = %info.blob, error = %e, "removing a kernel file failed");
        }
    }
}

/// Extracts a staged bundle with the hardened extractor (`strata_providers::archive`), which also
/// checks the vmlinux against the architecture. The files live in a directory the returned guard
/// removes when dropped.
async fn unpack_bundle(
    st: &AppState,
    k: &Kernel,
    staged: StagedFile,
) -> ApiResult<(KernelFormat, Vec<(KernelArtifact, StagedFile)>, DirGuard)> {
    use strata_providers::archive::kernel_bundle::{BundleLimits, extract_kernel_bundle_async};
    let dir = DirGuard(st.kernels.staging_dir.join(format!("bundle-{}", uuid::Uuid::new_v4())));
    tokio::fs::create_dir_all(&dir.0)
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("creating a bundle staging directory: {e}")))?;
    let limits = BundleLimits {
        max_bundle_bytes: st.kernels.max_bytes,
        ..BundleLimits::default()
    };
    // Size and sha256 were checked while staging.
    let result = extract_kernel_bundle_async(staged.path.clone(), None, k.architecture, dir.0.clone(), limits).await;
    drop(staged);
    let bundle = result.map_err(|e| match e.to_domain() {
        Some(d) => ApiError::from(d),
        None => ApiError::internal(anyhow::anyhow!("extracting a kernel bundle: {e}")),
    })?;
    let files = [
        (KernelArtifact::Vmlinux, Some(bundle.vmlinux)),
        (KernelArtifact::Initrd, bundle.initrd),
        (KernelArtifact::Modules, bundle.modules),
    ]
    .into_iter()
    .filter_map(|(a, f)| {
        f.map(|f| {
            (
                a,
                StagedFile {
                    path: f.path,
                    size: f.size,
                    sha256: f.sha256,
                    head: Vec::new(),
                },
            )
        })
    })
    .collect();
    Ok((bundle.kernel.format, files, dir))
}

/// Removes a staging directory tree when dropped.
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A ready kernel file the caller may read.
pub struct Readable {
    pub kernel: Kernel,
    pub artifact: KernelArtifact,
    pub info: ArtifactInfo,
}

pub async fn downloadable<S>(
    st: &AppState,
    access: &OrgRegion<S>,
    id: KernelId,
    artifact: KernelArtifact,
) -> ApiResult<Readable> {
    let kernel = find_visible(st, access, id).await?;
    kernel.require_state(ImageState::Ready)?;
    let info = kernel
        .artifacts
        .get(artifact)
        .cloned()
        .ok_or_else(|| DomainError::not_found(ResourceKind::Kernel, format!("{id}/{artifact}")))?;
    Ok(Readable { kernel, artifact, info })
}

pub async fn download<S>(
    access: &OrgRegion<S>,
    file: &Readable,
    range: Option<&str>,
    if_range: Option<&str>,
) -> ApiResult<Download> {
    let key = BlobKey::kernel(file.kernel.id, file.info.blob);
    let etag = file.info.etag();
    super::download::open(&access.region.store, &key, &etag, file.info.size, range, if_range).await
}

pub async fn delete(st: &AppState, access: &OrgRegion<KernelsWrite>, id: KernelId) -> ApiResult<()> {
    for _ in 0..5 {
        let k = find_modifiable(st, access, id).await?;
        match db::kernels::delete(&st.db, &k).await? {
            DeleteOutcome::Deleted(files) => {
                // The row is gone: a failure here leaves an orphan object, never a dangling row.
                remove_files(&access.region.store, id, &files).await;
                tracing::info!(kernel = %id, "kernel deleted");
                return Ok(());
            }
            DeleteOutcome::Gone => return Err(not_found(id)),
            DeleteOutcome::Protected => return Err(DomainError::ImageProtected.into()),
            DeleteOutcome::InUse { images, consumers } => {
                // Everyone learns how many images use it; only images the caller may see are named.
                let admin = access.principal.platform_admin;
                let visible_images = images
                    .iter()
                    .filter(|(_, owner)| admin || owner.as_deref().is_none_or(|o| o == access.org.as_str()))
                    .map(|(id, _)| id.clone())
                    .collect();
                return Err(DomainError::KernelInUse {
                    images: images.len() as u64,
                    visible_images,
                    consumers,
                }
                .into());
            }
            DeleteOutcome::Changed => continue,
        }
    }
    Err(ApiError::internal(anyhow::anyhow!(
        "kernel {id} kept changing state during DELETE"
    )))
}

/// An image may name a kernel only if it can boot it: see [`Kernel::usable_by_image`]. Checked on
/// create and PATCH; the foreign key catches a kernel deleted in between.
pub async fn check_for_image(st: &AppState, img: &Image) -> ApiResult<()> {
    let Some(kid) = img.kernel_id else {
        return Ok(());
    };
    match db::kernels::find(&st.db, &img.region_id, kid).await? {
        Some(k) => Ok(k.usable_by_image(img.organization_id.as_ref(), &img.region_id, img.architecture)?),
        None => Err(DomainError::InvalidKernel {
            reason: format!("kernel {kid} does not exist for this image"),
        }
        .into()),
    }
}

fn check_consumer_kind(kind: &str) -> Result<(), DomainError> {
    let ok = !kind.is_empty()
        && kind.len() <= 63
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "kind",
            "must be 1-63 lowercase letters, digits and '-'",
        ))
    }
}

/// Any organization that can see a kernel may register its own consumers of it.
pub async fn register_consumer(
    st: &AppState,
    access: &OrgRegion<KernelsWrite>,
    kernel: KernelId,
    id: &ConsumerId,
    kind: String,
    description: Option<String>,
) -> ApiResult<(KernelConsumerRow, bool)> {
    check_consumer_kind(&kind)?;
    let description = description
        .as_deref()
        .map(Description::parse)
        .transpose()?
        .map(|d| d.as_str().to_owned());
    find_visible(st, access, kernel).await?;
    Ok(db::kernels::upsert_consumer(&st.db, kernel, &access.org, id, kind, description).await?)
}

/// The owner (or a platform admin, for global kernels) sees every consumer; others their own.
pub async fn list_consumers<S>(
    st: &AppState,
    access: &OrgRegion<S>,
    kernel: KernelId,
) -> ApiResult<Vec<KernelConsumerRow>> {
    let k = find_visible(st, access, kernel).await?;
    let sees_all = k.modifiable_by(&access.org, access.principal.platform_admin);
    Ok(db::kernels::list_consumers(&st.db, kernel, (!sees_all).then_some(&access.org)).await?)
}

pub async fn unregister_consumer(
    st: &AppState,
    access: &OrgRegion<KernelsWrite>,
    kernel: KernelId,
    id: &ConsumerId,
) -> ApiResult<()> {
    find_visible(st, access, kernel).await?;
    if db::kernels::delete_consumer(&st.db, kernel, &access.org, id).await? {
        Ok(())
    } else {
        Err(DomainError::not_found(ResourceKind::Consumer, id).into())
    }
}

/// One catalog entry and whether this organization, or the platform, already has it (a `ready`
/// kernel in this region whose digest is the entry's sha256).
pub struct CatalogItem<'a> {
    pub entry: &'a KernelCatalogEntry,
    pub in_organization: bool,
    pub global: bool,
}

pub async fn catalog<'a, S>(st: &'a AppState, access: &OrgRegion<S>) -> ApiResult<Vec<CatalogItem<'a>>> {
    let digests = st
        .kernels
        .catalog
        .iter()
        .map(|e| format!("sha256:{}", e.sha256))
        .collect();
    let present = db::kernels::digests_present(&st.db, access.region_id(), &access.org, digests).await?;
    Ok(st
        .kernels
        .catalog
        .iter()
        .map(|entry| {
            let d = format!("sha256:{}", entry.sha256);
            CatalogItem {
                entry,
                in_organization: present.iter().any(|(global, x)| !global && *x == d),
                global: present.iter().any(|(global, x)| *global && *x == d),
            }
        })
        .collect())
}

pub type Page = crate::service::query::Page<Kernel>;

/// The v2 kernel query: the image query model (filters, sort, keyset tokens) over kernels.
pub async fn query(
    st: &AppState,
    access: &crate::tenancy::RegionAccess<crate::tenancy::KernelsRead>,
    params: &[(String, String)],
) -> ApiResult<Page> {
    let (mut q, token) = crate::service::query::build(access, params)?;
    if q.kind.is_some() {
        return Err(DomainError::invalid("kind", "kernels have no kind; it filters images").into());
    }
    if let Some(t) = token {
        q.after = Some(q.decode_token(&t)?);
    }
    let (items, more) = db::kernels::query(&st.db, access.region_id(), &q).await?;
    Ok(Page::of(&q, items, more))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_from_toml_and_json_file() {
        let dir = std::env::temp_dir().join(format!("strata-catalog-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("catalog.json");
        std::fs::write(
            &json,
            format!(
                r#"[{{"name": "arm", "architecture": "aarch64", "version": "6.8", "url": "https://m.example/a.tar",
                     "sha256": "{}", "sizeBytes": 1}}]"#,
                "b".repeat(64)
            ),
        )
        .unwrap();
        let toml = dir.join("strata.toml");
        std::fs::write(
            &toml,
            format!(
                r#"
[kernels]
catalog_file = "{}"

[[kernel_catalog]]
name = "debian-12"
distro = "debian"
architecture = "x86_64"
version = "6.1.0-18"
url = "https://m.example/d.tar.zst"
sha256 = "sha256:{}"
sizeBytes = 123
description = "Debian"
"#,
                json.display(),
                "A".repeat(64)
            ),
        )
        .unwrap();
        let cfg = Config::load(Some(&toml), &Default::default()).unwrap();
        let s = KernelSettings::from_config(&cfg).unwrap();
        let names: Vec<_> = s.catalog.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["debian-12", "arm"]);
        assert_eq!(s.catalog[0].sha256, "a".repeat(64));
        assert_eq!(s.catalog[0].size_bytes, 123);

        let mut bad = cfg.clone();
        bad.kernel_catalog[0].architecture = "sparc".into();
        assert!(KernelSettings::from_config(&bad).is_err());
        let mut twice = cfg.clone();
        twice.kernel_catalog.push(twice.kernel_catalog[0].clone());
        assert!(KernelSettings::from_config(&twice).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
