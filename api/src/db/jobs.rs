//! Import jobs, of every kind. Every transition is a conditional update on `lease_owner`, so a
//! process that lost its lease (it stalled, or the target was deleted) cannot overwrite the work
//! of the one that has it. How a finished job publishes its artifact depends on its target.

use crate::db::Db;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use strata_domain::ids::{BlobId, ImageId, KernelId, OrganizationId, RegionId};
use strata_domain::image::{Image, ImageState, ImportPhase, ReasonCode};
use strata_domain::kernel::{Artifacts, Kernel, KernelArtifact, KernelFormat};
use strata_providers::BlobKey;

use super::entities::{images, import_jobs};
use super::usage;
use super::{DbError, DbResult};
use super::{micros, now};
use crate::config::Limits;

/// What a job produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobTarget {
    Image(ImageId),
    Kernel(KernelId),
}

impl JobTarget {
    pub fn kind(&self) -> &'static str {
        match self {
            JobTarget::Image(_) => "image",
            JobTarget::Kernel(_) => "kernel",
        }
    }

    pub fn id(&self) -> uuid::Uuid {
        match self {
            JobTarget::Image(i) => i.as_uuid(),
            JobTarget::Kernel(k) => k.as_uuid(),
        }
    }

    /// Where an attempt of this job whose blob id is `blob` writes its main object (an image's
    /// bytes; a kernel's vmlinux).
    pub fn key(&self, blob: BlobId) -> BlobKey {
        match *self {
            JobTarget::Image(image) => BlobKey::image(image, blob),
            JobTarget::Kernel(kernel) => BlobKey::kernel(kernel, blob),
        }
    }

    /// Every key an attempt whose blob id is `blob` may write: what a failed or dead attempt
    /// leaves to remove. A kernel attempt writes one object per artifact, under ids derived from
    /// `blob` ([`KernelArtifact::attempt_blob`]).
    pub fn keys(&self, blob: BlobId) -> Vec<BlobKey> {
        match *self {
            JobTarget::Image(image) => vec![BlobKey::image(image, blob)],
            JobTarget::Kernel(kernel) => KernelArtifact::ALL
                .iter()
                .map(|a| BlobKey::kernel(kernel, a.attempt_blob(blob)))
                .collect(),
        }
    }

    fn parse(kind: &str, id: &str) -> anyhow::Result<Self> {
        let id = uuid::Uuid::parse_str(id).map_err(|e| anyhow::anyhow!("bad target id in import_jobs: {e}"))?;
        match kind {
            "image" => Ok(JobTarget::Image(ImageId::from_uuid(id))),
            "kernel" => Ok(JobTarget::Kernel(KernelId::from_uuid(id))),
            other => Err(anyhow::anyhow!("unknown target kind {other:?} in import_jobs")),
        }
    }
}

impl std::fmt::Display for JobTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind(), self.id())
    }
}

pub struct Job {
    pub id: uuid::Uuid,
    /// Which [`crate::service::jobs::ImportKind`] runs it.
    pub kind: String,
    /// The kind's spec, as JSON (never a secret).
    pub spec: String,
    /// Part of the spec is held only in the memory of the process that accepted the job.
    pub secrets_in_memory: bool,
    pub target: JobTarget,
    pub region: RegionId,
    pub attempt: i32,
    pub max_attempts: i32,
    pub blob: Option<BlobId>,
    pub last_error: Option<String>,
    /// Claimed from a process that stopped renewing its lease (not a retry or a hand-back).
    pub taken_over: bool,
}

fn from_row(m: import_jobs::Model) -> anyhow::Result<Job> {
    let uuid = |s: &str| uuid::Uuid::parse_str(s).map_err(|e| anyhow::anyhow!("bad uuid in import_jobs: {e}"));
    Ok(Job {
        id: uuid(&m.id)?,
        target: JobTarget::parse(&m.target_kind, &m.target_id)?,
        kind: m.kind,
        spec: m.spec,
        secrets_in_memory: m.secrets_in_memory,
        region: RegionId::parse(&m.region_id)?,
        attempt: m.attempt,
        max_attempts: m.max_attempts,
        blob: m.blob_id.as_deref().map(uuid).transpose()?.map(BlobId::from_uuid),
        taken_over: false,
        last_error: m.last_error,
    })
}

pub struct NewJob<'a> {
    pub kind: &'static str,
    pub spec: String,
    pub secrets_in_memory: bool,
    pub max_attempts: i32,
    pub owner: &'a str,
    pub lease_until: i64,
}

/// Creates the image and its job in one transaction; the job starts leased by its creator.
pub async fn create_with_image(db: &Db, img: &Image, limits: Option<Limits>, job: NewJob<'_>) -> DbResult<Job> {
    let txn = db.begin().await?;
    super::images::reserve_in(&txn, img, true, limits).await?;
    super::images::insert_in(&txn, img).await?;
    let job = insert_job(&txn, JobTarget::Image(img.id), &img.region_id, job).await?;
    txn.commit().await?;
    Ok(job)
}

/// Creates the kernel (state `importing`) and its job in one transaction; the job starts leased
/// by its creator. An organization's pull counts against its concurrent imports.
pub async fn create_with_kernel(db: &Db, k: &Kernel, limits: Option<Limits>, job: NewJob<'_>) -> DbResult<Job> {
    let txn = db.begin().await?;
    if let (Some(org), Some(l)) = (&k.organization_id, limits) {
        usage::reserve_import(&txn, org.as_str(), k.region_id.as_str(), l).await?;
    }
    super::kernels::insert_in(&txn, k).await?;
    let job = insert_job(&txn, JobTarget::Kernel(k.id), &k.region_id, job).await?;
    txn.commit().await?;
    Ok(job)
}

async fn insert_job(txn: &crate::db::Txn, target: JobTarget, region: &RegionId, job: NewJob<'_>) -> DbResult<Job> {
    let at = micros(now());
    let id = uuid::Uuid::now_v7();
    let (image_id, kernel_id) = match target {
        JobTarget::Image(i) => (Some(i.to_string()), None),
        JobTarget::Kernel(k) => (None, Some(k.to_string())),
    };
    import_jobs::Entity::insert(import_jobs::ActiveModel {
        id: Set(id.to_string()),
        kind: Set(job.kind.to_owned()),
        spec: Set(job.spec.clone()),
        secrets_in_memory: Set(job.secrets_in_memory),
        target_kind: Set(target.kind().to_owned()),
        target_id: Set(target.id().to_string()),
        image_id: Set(image_id),
        kernel_id: Set(kernel_id),
        region_id: Set(region.to_string()),
        attempt: Set(1),
        max_attempts: Set(job.max_attempts),
        lease_owner: Set(Some(job.owner.to_owned())),
        lease_expires_at: Set(job.lease_until),
        blob_id: Set(None),
        last_error: Set(None),
        created_at: Set(at),
        updated_at: Set(at),
    })
    .exec(txn)
    .await?;
    Ok(Job {
        id,
        kind: job.kind.to_owned(),
        spec: job.spec,
        secrets_in_memory: job.secrets_in_memory,
        target,
        region: region.clone(),
        attempt: 1,
        max_attempts: job.max_attempts,
        blob: None,
        last_error: None,
        taken_over: false,
    })
}

/// Claims up to `limit` jobs of the given kinds whose lease has expired (their process died,
/// stalled, or handed them back). Each claim is a conditional update, so two processes never get
/// the same job. A process only claims kinds it can run.
pub async fn claim_expired(
    db: &Db,
    owner: &str,
    lease_until: i64,
    limit: u64,
    kinds: &[&'static str],
) -> DbResult<Vec<Job>> {
    let at = micros(now());
    let candidates = import_jobs::Entity::find()
        .filter(import_jobs::Column::LeaseExpiresAt.lt(at))
        .filter(import_jobs::Column::Kind.is_in(kinds.iter().copied()))
        .order_by_asc(import_jobs::Column::LeaseExpiresAt)
        .limit(limit)
        .all(db)
        .await?;
    let mut claimed = Vec::new();
    for c in candidates {
        let res = import_jobs::Entity::update_many()
            .col_expr(import_jobs::Column::LeaseOwner, Expr::value(owner))
            .col_expr(import_jobs::Column::LeaseExpiresAt, Expr::value(lease_until))
            .col_expr(
                import_jobs::Column::Attempt,
                Expr::col(import_jobs::Column::Attempt).add(1),
            )
            .col_expr(import_jobs::Column::UpdatedAt, Expr::value(at))
            .filter(import_jobs::Column::Id.eq(&c.id))
            .filter(import_jobs::Column::LeaseExpiresAt.eq(c.lease_expires_at))
            .exec(db)
            .await?;
        if res.rows_affected == 1 {
            let taken_over = c.lease_owner.is_some();
            let mut job = from_row(c).map_err(DbError::Corrupt)?;
            job.attempt += 1;
            job.taken_over = taken_over;
            claimed.push(job);
        }
    }
    Ok(claimed)
}

fn owned(job: uuid::Uuid, owner: &str) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(import_jobs::Column::Id.eq(job.to_string()))
        .add(import_jobs::Column::LeaseOwner.eq(owner))
}

/// Records the blob the current attempt writes. False: the lease is gone.
pub async fn set_blob(db: &Db, job: uuid::Uuid, owner: &str, blob: BlobId) -> DbResult<bool> {
    let res = import_jobs::Entity::update_many()
        .col_expr(import_jobs::Column::BlobId, Expr::value(blob.to_string()))
        .filter(owned(job, owner))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// The organization whose quota the target counts against (`Some(None)`: a global artifact);
/// `None` when the target is gone (deleted, and its job with it).
pub async fn target_owner(db: &Db, target: JobTarget) -> DbResult<Option<Option<OrganizationId>>> {
    match target {
        JobTarget::Image(image) => {
            let row = images::Entity::find_by_id(image.to_string()).one(db).await?;
            row.map(|r| r.organization_id.as_deref().map(OrganizationId::parse).transpose())
                .transpose()
                .map_err(|e| DbError::corrupt(anyhow::anyhow!("bad organization id in images: {e}")))
        }
        JobTarget::Kernel(kernel) => {
            let row = super::kernels::owner_of(db, kernel).await?;
            row.map(|(org, _)| org.as_deref().map(OrganizationId::parse).transpose())
                .transpose()
                .map_err(|e| DbError::corrupt(anyhow::anyhow!("bad organization id in kernels: {e}")))
        }
    }
}

/// Extends the lease and publishes progress. False: the lease is gone (taken over, or the target
/// was deleted and the job with it), and the caller must stop.
pub async fn heartbeat(
    db: &Db,
    job: &Job,
    owner: &str,
    lease_until: i64,
    bytes_done: u64,
    bytes_total: Option<u64>,
    phase: Option<ImportPhase>,
) -> DbResult<bool> {
    let res = import_jobs::Entity::update_many()
        .col_expr(import_jobs::Column::LeaseExpiresAt, Expr::value(lease_until))
        .filter(owned(job.id, owner))
        .exec(db)
        .await?;
    if res.rows_affected == 0 {
        return Ok(false);
    }
    match job.target {
        JobTarget::Image(image) => {
            let mut upd = images::Entity::update_many()
                .col_expr(images::Column::BytesDone, Expr::value(bytes_done as i64))
                .col_expr(images::Column::BytesTotal, Expr::value(bytes_total.map(|b| b as i64)));
            if let Some(p) = phase {
                upd = upd.col_expr(images::Column::Phase, Expr::value(p.to_string()));
            }
            upd.filter(images::Column::Id.eq(image.to_string()))
                .filter(images::Column::State.eq(ImageState::Importing.to_string()))
                .exec(db)
                .await?;
        }
        JobTarget::Kernel(kernel) => super::kernels::set_progress(db, kernel, bytes_done, bytes_total).await?,
    }
    Ok(true)
}

/// Gives the job back: it becomes claimable at `retry_at`. `refund` undoes the attempt count
/// (a graceful shutdown is not a failed attempt).
pub async fn release(
    db: &Db,
    job: uuid::Uuid,
    owner: &str,
    error: Option<&str>,
    retry_at: i64,
    refund: bool,
) -> DbResult<bool> {
    let mut upd = import_jobs::Entity::update_many()
        .col_expr(import_jobs::Column::LeaseOwner, Expr::value(Option::<String>::None))
        .col_expr(import_jobs::Column::LeaseExpiresAt, Expr::value(retry_at))
        .col_expr(import_jobs::Column::BlobId, Expr::value(Option::<String>::None))
        .col_expr(import_jobs::Column::UpdatedAt, Expr::value(micros(now())));
    if let Some(e) = error {
        upd = upd.col_expr(import_jobs::Column::LastError, Expr::value(e.to_owned()));
    }
    if refund {
        upd = upd.col_expr(
            import_jobs::Column::Attempt,
            Expr::col(import_jobs::Column::Attempt).sub(1),
        );
    }
    let res = upd.filter(owned(job, owner)).exec(db).await?;
    Ok(res.rows_affected == 1)
}

/// What an attempt stored.
pub enum Stored {
    /// One object: an image's bytes.
    Blob { blob: BlobId, size: u64, sha256: String },
    /// A kernel's files, each under its own key.
    Kernel {
        format: KernelFormat,
        artifacts: Artifacts,
        /// `sha256:<hex>` of the bundle as received.
        digest: String,
    },
}

impl Stored {
    pub fn size(&self) -> u64 {
        match self {
            Stored::Blob { size, .. } => *size,
            Stored::Kernel { artifacts, .. } => artifacts.total_size(),
        }
    }
}

/// Success: the job goes and the target becomes ready with what was stored, atomically. False:
/// the lease or the target is gone, and the caller must remove what it wrote.
pub async fn finish_ready(
    db: &Db,
    job: &Job,
    owner: &str,
    stored: &Stored,
    limits: impl Fn(&str) -> Limits,
) -> DbResult<bool> {
    let txn = db.begin().await?;
    let Some(ended) = end_job(&txn, job, owner).await? else {
        return Ok(false);
    };
    let ready = match (job.target, stored) {
        (JobTarget::Image(image), Stored::Blob { blob, size, sha256 }) => {
            super::images::mark_ready_in(&txn, image, ImageState::Importing, *blob, *size, sha256).await?
        }
        (
            JobTarget::Kernel(kernel),
            Stored::Kernel {
                format,
                artifacts,
                digest,
            },
        ) => super::kernels::mark_ready_in(&txn, kernel, ImageState::Importing, *format, artifacts, digest).await?,
        (target, _) => {
            return Err(DbError::corrupt(anyhow::anyhow!(
                "an import of {target} produced the wrong kind of artifact"
            )));
        }
    };
    if !ready {
        return Ok(false);
    }
    if let Some((org, region)) = &ended.quota_owner {
        usage::charge_bytes(&txn, org, region, stored.size(), limits(org)).await?;
    }
    txn.commit().await?;
    Ok(true)
}

struct Ended {
    /// The (organization, region) the target counts against; `None` for global artifacts.
    quota_owner: Option<(String, String)>,
}

/// Inside `txn`: removes the job if this process still holds its lease and gives back its
/// concurrent-import slot. `None`: the lease (or the target, and the job with it) is gone.
async fn end_job(txn: &crate::db::Txn, job: &Job, owner: &str) -> DbResult<Option<Ended>> {
    let res = import_jobs::Entity::delete_many()
        .filter(owned(job.id, owner))
        .exec(txn)
        .await?;
    if res.rows_affected == 0 {
        return Ok(None);
    }
    let quota_owner = match job.target {
        JobTarget::Image(image) => {
            let row = images::Entity::find_by_id(image.to_string()).one(txn).await?;
            row.and_then(|r| r.organization_id.map(|o| (o, r.region_id)))
        }
        JobTarget::Kernel(kernel) => super::kernels::owner_of(txn, kernel)
            .await?
            .and_then(|(org, region)| org.map(|o| (o, region))),
    };
    if let Some((org, region)) = &quota_owner {
        usage::release(txn, org, region, 0, 0, 1).await?;
    }
    Ok(Some(Ended { quota_owner }))
}

/// Final failure: the job goes, the target becomes `failed` with a stable code and a reason a
/// person can act on.
pub async fn finish_failed(db: &Db, job: &Job, owner: &str, code: ReasonCode, reason: &str) -> DbResult<bool> {
    let txn = db.begin().await?;
    if end_job(&txn, job, owner).await?.is_none() {
        return Ok(false);
    }
    match job.target {
        JobTarget::Image(image) => {
            images::Entity::update_many()
                .col_expr(images::Column::State, Expr::value(ImageState::Failed.to_string()))
                .col_expr(images::Column::Reason, Expr::value(reason.to_owned()))
                .col_expr(images::Column::ReasonCode, Expr::value(code.to_string()))
                .col_expr(images::Column::UpdatedAt, Expr::value(micros(now())))
                .col_expr(images::Column::Revision, Expr::col(images::Column::Revision).add(1))
                .filter(images::Column::Id.eq(image.to_string()))
                .exec(&txn)
                .await?;
            super::images::tag_set_follows_revision(&txn, &image.to_string()).await?;
        }
        JobTarget::Kernel(kernel) => super::kernels::mark_failed_in(&txn, kernel, code, reason).await?,
    }
    txn.commit().await?;
    Ok(true)
}

/// Unfinished jobs of one kind across all processes: (leased by a live process, waiting to be
/// claimed). A lease that expired counts as waiting: any process may claim it.
pub async fn count_by_state(db: &Db, kind: &str) -> DbResult<(u64, u64)> {
    use sea_orm::PaginatorTrait;
    let at = micros(now());
    let leased = import_jobs::Entity::find()
        .filter(import_jobs::Column::Kind.eq(kind))
        .filter(import_jobs::Column::LeaseOwner.is_not_null())
        .filter(import_jobs::Column::LeaseExpiresAt.gte(at))
        .count(db)
        .await?;
    let all = import_jobs::Entity::find()
        .filter(import_jobs::Column::Kind.eq(kind))
        .count(db)
        .await?;
    Ok((leased, all.saturating_sub(leased)))
}

/// (target id, blob id) of the attempts running for these image ids: blobs the sweeper must keep.
pub async fn image_attempt_blobs(db: &Db, image_ids: Vec<String>) -> DbResult<Vec<(String, String)>> {
    let jobs = import_jobs::Entity::find()
        .filter(import_jobs::Column::TargetKind.eq("image"))
        .filter(import_jobs::Column::TargetId.is_in(image_ids))
        .all(db)
        .await?;
    Ok(jobs
        .into_iter()
        .filter_map(|j| j.blob_id.map(|b| (j.target_id, b)))
        .collect())
}

/// Every key the attempts running for these kernel ids may write: blobs the sweeper must keep.
pub async fn kernel_attempt_keys(db: &Db, kernel_ids: Vec<String>) -> DbResult<Vec<BlobKey>> {
    let jobs = import_jobs::Entity::find()
        .filter(import_jobs::Column::TargetKind.eq("kernel"))
        .filter(import_jobs::Column::TargetId.is_in(kernel_ids))
        .all(db)
        .await?;
    let mut keys = Vec::new();
    for j in jobs {
        let (Ok(kernel), Some(Ok(blob))) = (
            uuid::Uuid::parse_str(&j.target_id),
            j.blob_id.as_deref().map(uuid::Uuid::parse_str),
        ) else {
            continue;
        };
        keys.extend(JobTarget::Kernel(KernelId::from_uuid(kernel)).keys(BlobId::from_uuid(blob)));
    }
    Ok(keys)
}
