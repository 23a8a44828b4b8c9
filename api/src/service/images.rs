use bytes::Bytes;
use futures::Stream;
use strata_domain::access::Principal;
use strata_domain::command::{CreateImage, ImageSource, PatchImage};
use strata_domain::ids::{BlobId, ImageId, OrganizationId, RegionId};
use strata_domain::image::{
    DiskFormat, Image, ImageKind, ImageState, ImportPhase, OsInfo, Provenance, SourceKind, Status, Visibility,
    check_if_match,
};
use strata_domain::query::{ImageQuery, V1_DEFAULT_LIMIT, V1_MAX_LIMIT};
use strata_domain::tags::UserTags;
use strata_domain::{DomainError, ResourceKind};
use strata_providers::{BlobKey, IngestError, IngestLimits, RawDisk, ingest};

use crate::db;
use crate::db::images::DeleteOutcome;
use crate::db::tenant::OrgImages;
use crate::error::{ApiError, ApiResult};
use crate::service::body::{BodyError, Pace, QuotaWatch, guard};
use crate::service::download::Download;
use crate::service::imports::{UrlImport, UrlRequest};
use crate::service::oci::{OciImport, OciRequest};
use crate::state::AppState;
use crate::tenancy::{ImagesWrite, OrgRegion};

fn not_found(id: ImageId) -> ApiError {
    DomainError::not_found(ResourceKind::Image, id).into()
}

/// The image if the organization of `access` may see it; 404 otherwise (also across regions).
/// The tenant condition is in the repository handle's SQL.
pub async fn find_visible<S>(st: &AppState, access: &OrgRegion<S>, id: ImageId) -> ApiResult<Image> {
    let img = OrgImages::new(&st.db, access).find_visible(id.as_uuid()).await?;
    img.ok_or_else(|| not_found(id))
}

/// The image if the caller may change it: its owner, or a platform admin for global images.
/// Everyone else gets the same 404 as for an image that does not exist.
pub async fn find_modifiable(st: &AppState, access: &OrgRegion<ImagesWrite>, id: ImageId) -> ApiResult<Image> {
    let img = OrgImages::new(&st.db, access).find_modifiable(id.as_uuid()).await?;
    img.ok_or_else(|| not_found(id))
}

pub async fn usage<S>(st: &AppState, access: &OrgRegion<S>) -> ApiResult<(db::usage::Usage, crate::config::Limits)> {
    let used = db::usage::get(&st.db, access.org.as_str(), access.region_id().as_str()).await?;
    Ok((used, st.quotas.limits_for(access.org.as_str())))
}

/// One page of the organization's images (and, unless `owned_only`, the global ones) by name:
/// the v2 query for one organization, through the tenant handle, with its tokens.
pub async fn list<S>(
    st: &AppState,
    access: &OrgRegion<S>,
    owned_only: bool,
    limit: Option<u32>,
    page_token: Option<&str>,
) -> ApiResult<crate::service::query::Page> {
    let images = OrgImages::new(&st.db, access);
    let mut q = images.by_name(
        !owned_only,
        ImageQuery::check_limit_of(limit, V1_DEFAULT_LIMIT, V1_MAX_LIMIT)?,
    );
    if let Some(t) = page_token {
        q.after = Some(q.decode_token(t)?);
    }
    let (items, more) = images.page(&q).await?;
    Ok(crate::service::query::Page::of(&q, items, more))
}

pub async fn create(st: &AppState, access: &OrgRegion<ImagesWrite>, cmd: CreateImage) -> ApiResult<Image> {
    let source = cmd.source.clone();
    // Everything that needs no network is checked first.
    let img = new_image(access, &access.principal, cmd)?;
    persist_new(st, img, source).await
}

/// Creates a global image from a URL for the operator's defaults (no caller to authorise: the
/// configuration is the operator's own).
pub(crate) async fn create_global_from_url(
    st: &AppState,
    region: &RegionId,
    subject: &str,
    cmd: CreateImage,
) -> ApiResult<Image> {
    let source = cmd.source.clone();
    let img = build_image(region, None, subject, cmd);
    persist_new(st, img, source).await
}

async fn persist_new(st: &AppState, mut img: Image, source: ImageSource) -> ApiResult<Image> {
    crate::service::kernels::check_for_image(st, &img).await?;
    match source {
        ImageSource::Upload { .. } => db::images::insert(&st.db, &img, quota(st, &img)).await?,
        ImageSource::Oci(source) => {
            let checked = st
                .jobs
                .check::<OciImport>(OciRequest {
                    source: *source,
                    architecture: img.architecture,
                })
                .await?;
            let spec = &checked.spec;
            img.provenance.reference = checked.reference.clone();
            img.provenance.digest = Some(spec.manifest_digest.clone());
            img.provenance.config_digest = Some(spec.config_digest.clone());
            img.provenance.platform = Some(spec.platform.clone());
            if img.os.is_none()
                && let Some(family) = &spec.os
            {
                img.os = Some(OsInfo {
                    family: family.clone(),
                    distro: None,
                    version: None,
                });
            }
            img.status.phase = Some(ImportPhase::Resolving);
            st.jobs.start_image::<OciImport>(&img, checked).await?;
        }
        ImageSource::Url { url, .. } => {
            let checked = st
                .jobs
                .check::<UrlImport>(UrlRequest {
                    url,
                    sha256: img.expected_sha256.clone(),
                })
                .await?;
            img.provenance.reference = checked.reference.clone();
            st.jobs.start_image::<UrlImport>(&img, checked).await?;
        }
    }
    tracing::info!(image = %img.id, name = %img.name, source = %img.provenance.source, "image created");
    Ok(img)
}

/// The quota limits that apply to an image: its organization's; none for global images.
pub fn quota(st: &AppState, img: &Image) -> Option<crate::config::Limits> {
    img.organization_id.as_ref().map(|o| st.quotas.limits_for(o.as_str()))
}

fn new_image(access: &OrgRegion<ImagesWrite>, who: &Principal, cmd: CreateImage) -> Result<Image, DomainError> {
    if cmd.visibility == Visibility::Global && !who.platform_admin {
        return Err(DomainError::Forbidden {
            reason: "only platform admins create global images".into(),
        });
    }
    let org = (cmd.visibility == Visibility::Organization).then(|| access.org.clone());
    Ok(build_image(access.region_id(), org, &who.subject, cmd))
}

fn build_image(region: &RegionId, org: Option<OrganizationId>, subject: &str, cmd: CreateImage) -> Image {
    let visibility = cmd.visibility;
    let (source, state) = match cmd.source {
        ImageSource::Upload { .. } => (SourceKind::Upload, ImageState::Pending),
        ImageSource::Url { .. } => (SourceKind::Url, ImageState::Importing),
        ImageSource::Oci(_) => (SourceKind::Oci, ImageState::Importing),
    };
    // An OCI pull gives a root filesystem; everything else a whole disk.
    let (kind, disk_format) = match source {
        SourceKind::Oci => (ImageKind::Rootfs, DiskFormat::Ext4),
        _ => (ImageKind::Disk, DiskFormat::Raw),
    };
    let expected_sha256 = cmd.source.expected_sha256().map(str::to_owned);
    let now = db::now();
    Image {
        id: ImageId::new(),
        name: cmd.name,
        description: cmd.description,
        organization_id: org,
        region_id: region.clone(),
        visibility,
        kind,
        disk_format,
        architecture: cmd.architecture,
        os: cmd.os,
        tags: cmd.tags,
        protected: cmd.protected,
        provenance: Provenance {
            source,
            reference: None,
            digest: None,
            config_digest: None,
            platform: None,
            imported_by: subject.to_owned(),
            imported_at: now,
        },
        status: Status {
            state,
            reason: None,
            reason_code: None,
            bytes_done: 0,
            bytes_total: None,
            phase: None,
        },
        size_bytes: None,
        sha256: None,
        expected_sha256,
        blob: None,
        kernel_id: cmd.kernel_id,
        docker_tags: Vec::new(),
        created_at: now,
        updated_at: now,
        revision: 1,
    }
}

pub async fn patch(
    st: &AppState,
    access: &OrgRegion<ImagesWrite>,
    id: ImageId,
    req: PatchImage,
    if_match: Option<&str>,
) -> ApiResult<Image> {
    // Optimistic concurrency: apply to what we read, write only if nobody changed it meanwhile.
    // Without If-Match a lost race is retried on fresh data; with it, it is the caller's 412.
    for _ in 0..5 {
        let current = find_modifiable(st, access, id).await?;
        // A bad patch is a 400 whatever the precondition says: validate before comparing ETags.
        let next = apply_patch(&current, &req)?;
        if let Some(tag) = if_match {
            check_if_match(tag, current.revision)?;
        }
        // A patch that changes nothing changes nothing: same revision, ETag and updatedAt.
        let Some(next) = next else {
            return Ok(current);
        };
        if next.kernel_id != current.kernel_id {
            crate::service::kernels::check_for_image(st, &next).await?;
        }
        if db::images::update_metadata(&st.db, &next, current.revision).await? {
            return Ok(next);
        }
        if if_match.is_some() {
            let now = find_modifiable(st, access, id).await?;
            return Err(DomainError::PreconditionFailed { current: now.revision }.into());
        }
    }
    Err(ApiError::internal(anyhow::anyhow!(
        "image {id} kept changing during PATCH"
    )))
}

/// The image after the patch, or `None` when the patch leaves every field as it is.
fn apply_patch(current: &Image, req: &PatchImage) -> Result<Option<Image>, DomainError> {
    let mut next = current.clone();
    if let Some(name) = &req.name {
        next.name = name.clone();
    }
    if let Some(desc) = &req.description {
        next.description = desc.clone();
    }
    match &req.tags {
        None => {}
        Some(None) => next.tags = UserTags::default(),
        Some(Some(patch)) => next.tags = current.tags.merge(patch)?,
    }
    match req.protected {
        None => {}
        // Merge-patch null removes the member: protection falls back to its default.
        Some(None) => next.protected = false,
        Some(Some(p)) => next.protected = p,
    }
    if let Some(k) = req.kernel_id {
        next.kernel_id = k;
    }
    let unchanged = next.kernel_id == current.kernel_id
        && next.name == current.name
        && next.description == current.description
        && next.tags == current.tags
        && next.protected == current.protected;
    if unchanged {
        return Ok(None);
    }
    next.updated_at = db::now();
    next.revision = current.revision + 1;
    Ok(Some(next))
}

/// Streams an upload into storage and marks the image ready. On any failure the image stays
/// `pending` and nothing is kept.
pub async fn upload<S, E>(
    st: &AppState,
    access: &OrgRegion<ImagesWrite>,
    id: ImageId,
    content_length: Option<u64>,
    body: S,
) -> ApiResult<Image>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let img = find_modifiable(st, access, id).await?;
    img.require_state(ImageState::Pending)?;
    let limit = st.limits.max_image_bytes;
    if content_length.is_some_and(|n| n > limit) {
        return Err(DomainError::TooLarge { limit }.into());
    }
    // Refuse early when the announced size cannot fit; the charge itself happens atomically
    // when the image becomes ready.
    if let (Some(n), Some(org), Some(l)) = (content_length, &img.organization_id, quota(st, &img)) {
        db::usage::bytes_fit(&st.db, org.as_str(), img.region_id.as_str(), n, l).await?;
    }
    // One upload per image, a bounded number per organization, across replicas.
    let lease = db::leases::acquire(
        &st.db,
        id,
        access.org.as_str(),
        st.quotas.limits_for(access.org.as_str()).concurrent_uploads,
        std::time::Duration::from_secs(st.limits.upload_lease_secs.max(1)),
    )
    .await?;
    let result = store_upload(st, access, &img, body).await;
    lease.release().await;
    result
}

async fn store_upload<S, E>(st: &AppState, access: &OrgRegion<ImagesWrite>, img: &Image, body: S) -> ApiResult<Image>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let id = img.id;
    let limit = st.limits.max_image_bytes;
    let watch = match (&img.organization_id, quota(st, img)) {
        (Some(org), Some(l)) => Some(QuotaWatch {
            db: st.db.clone(),
            org: org.to_string(),
            region: img.region_id.to_string(),
            limit: l.bytes,
        }),
        _ => None,
    };
    let body = guard(body, Pace::from_limits(&st.limits), watch).await;
    let blob = BlobId::new();
    let limits = IngestLimits {
        max_bytes: limit,
        expected_sha256: img.expected_sha256.clone(),
    };
    let store = &access.region.store;
    let ledger = db::uploads::DbLedger(&st.db, access.region_id());
    let key = BlobKey::image(id, blob);
    let done = ingest(store, &key, body, &RawDisk, &limits, Some(&ledger), |_| {})
        .await
        .map_err(|e| match e {
            IngestError::Rejected(r) => DomainError::UnsupportedDiskFormat {
                detected: r.to_string(),
            }
            .into(),
            IngestError::TooLarge { limit } => DomainError::TooLarge { limit }.into(),
            IngestError::ChecksumMismatch { expected, actual } => {
                DomainError::ChecksumMismatch { expected, actual }.into()
            }
            IngestError::Source(BodyError::Timeout(reason)) => DomainError::RequestTimeout { reason }.into(),
            IngestError::Source(BodyError::Refused(e)) => e.into(),
            IngestError::Source(BodyError::Source(e)) => {
                DomainError::invalid("body", format!("the upload was interrupted: {e}")).into()
            }
            IngestError::Storage(e) => ApiError::from(e),
        })?;
    let marked = db::images::mark_ready(&st.db, img, blob, done.size, &done.sha256, quota(st, img)).await;
    if !matches!(marked, Ok(true)) {
        // Over quota, a database error, or someone else completed or deleted the image while we
        // were copying: our bytes must not stay behind.
        if let Err(e) = store.delete(&key).await {
            tracing::warn!(image = %id, %blob, error = %e, "removing an upload that was not kept failed");
        }
    }
    if !marked? {
        let now = find_visible(st, access, id).await?;
        now.require_state(ImageState::Pending)?;
        return Err(ApiError::internal(anyhow::anyhow!(
            "image {id} left pending after a lost race"
        )));
    }
    tracing::info!(image = %id, size = done.size, "image uploaded");
    find_visible(st, access, id).await
}

/// A ready image the caller may read, with what a download needs. Only [`downloadable`] makes
/// one, so a download always starts from the visibility check.
pub struct Readable {
    pub image: Image,
    pub size: u64,
    blob: BlobId,
}

/// The image whose bytes a download or HEAD would send: visible, `ready`, with its size.
pub async fn downloadable<S>(st: &AppState, access: &OrgRegion<S>, id: ImageId) -> ApiResult<Readable> {
    let image = find_visible(st, access, id).await?;
    image.require_state(ImageState::Ready)?;
    let (Some(blob), Some(size)) = (image.blob, image.size_bytes) else {
        return Err(ApiError::internal(anyhow::anyhow!("ready image {id} has no blob")));
    };
    Ok(Readable { image, size, blob })
}

/// Opens the bytes of `file`: the whole of them, or the one `range` asked for when `if_range`
/// (if sent) still names them. A stale `If-Range` means the client's partial copy is of other
/// bytes, so it gets them all.
pub async fn download<S>(
    access: &OrgRegion<S>,
    file: &Readable,
    range: Option<&str>,
    if_range: Option<&str>,
) -> ApiResult<Download> {
    let key = BlobKey::image(file.image.id, file.blob);
    let etag = file.image.file_etag();
    super::download::open(&access.region.store, &key, &etag, file.size, range, if_range).await
}

pub async fn delete(st: &AppState, access: &OrgRegion<ImagesWrite>, id: ImageId) -> ApiResult<()> {
    for _ in 0..5 {
        let img = find_modifiable(st, access, id).await?;
        if let Some(done) = delete_once(st, access, &img).await? {
            return done;
        }
    }
    Err(ApiError::internal(anyhow::anyhow!(
        "image {id} kept changing state during DELETE"
    )))
}

/// `None`: the image changed state under us; read it again.
async fn delete_once(st: &AppState, access: &OrgRegion<ImagesWrite>, img: &Image) -> ApiResult<Option<ApiResult<()>>> {
    let id = img.id;
    Ok(Some(match db::images::delete(&st.db, img).await? {
        DeleteOutcome::Deleted { blob } => {
            if let Some(blob) = blob {
                // The row is gone, so the image is deleted; a failure here leaves an orphan object
                // for the sweeper, never a dangling row.
                if let Err(e) = access.region.store.delete(&BlobKey::image(id, blob)).await {
                    tracing::warn!(image = %id, %blob, error = %e, "removing a deleted image's bytes failed");
                }
            }
            tracing::info!(image = %id, "image deleted");
            Ok(())
        }
        DeleteOutcome::Gone => Err(not_found(id)),
        DeleteOutcome::Protected => Err(DomainError::ImageProtected.into()),
        DeleteOutcome::InUse(consumers) => Err(DomainError::InUse { consumers }.into()),
        DeleteOutcome::Changed => return Ok(None),
    }))
}
