//! Import jobs. Every transition is a conditional update on `lease_owner`, so a process that lost
//! its lease (it stalled, or the image was deleted) cannot overwrite the work of the one that has it.

use crate::db::Db;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use strata_domain::ids::{BlobId, ImageId, RegionId};
use strata_domain::image::{Image, ImageState};

use super::entities::{images, import_jobs};
use super::usage;
use super::{micros, now};
use crate::config::Limits;
use crate::error::{ApiError, ApiResult};

pub struct Job {
    pub image: ImageId,
    pub region: RegionId,
    pub url: String,
    pub has_credentials: bool,
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
        image: ImageId::from_uuid(uuid(&m.image_id)?),
        region: RegionId::parse(&m.region_id)?,
        url: m.url,
        has_credentials: m.has_credentials,
        attempt: m.attempt,
        max_attempts: m.max_attempts,
        blob: m.blob_id.as_deref().map(uuid).transpose()?.map(BlobId::from_uuid),
        taken_over: false,
        last_error: m.last_error,
    })
}

pub struct NewJob<'a> {
    pub limits: Option<Limits>,
    pub url: &'a str,
    pub has_credentials: bool,
    pub max_attempts: i32,
    pub owner: &'a str,
    pub lease_until: i64,
}

/// Creates the image and its job in one transaction; the job starts leased by its creator.
pub async fn create_with_job(db: &Db, img: &Image, job: NewJob<'_>) -> ApiResult<Job> {
    let txn = db.begin().await?;
    super::images::reserve_in(&txn, img, true, job.limits).await?;
    super::images::insert_in(&txn, img).await?;
    let at = micros(now());
    import_jobs::Entity::insert(import_jobs::ActiveModel {
        image_id: Set(img.id.to_string()),
        region_id: Set(img.region_id.to_string()),
        url: Set(job.url.to_owned()),
        has_credentials: Set(job.has_credentials),
        attempt: Set(1),
        max_attempts: Set(job.max_attempts),
        lease_owner: Set(Some(job.owner.to_owned())),
        lease_expires_at: Set(job.lease_until),
        blob_id: Set(None),
        last_error: Set(None),
        created_at: Set(at),
        updated_at: Set(at),
    })
    .exec(&txn)
    .await?;
    txn.commit().await?;
    Ok(Job {
        image: img.id,
        region: img.region_id.clone(),
        url: job.url.to_owned(),
        has_credentials: job.has_credentials,
        attempt: 1,
        max_attempts: job.max_attempts,
        blob: None,
        last_error: None,
        taken_over: false,
    })
}

/// Claims up to `limit` jobs whose lease has expired (their process died, stalled, or handed them
/// back). Each claim is a conditional update, so two processes never get the same job.
pub async fn claim_expired(db: &Db, owner: &str, lease_until: i64, limit: u64) -> ApiResult<Vec<Job>> {
    let at = micros(now());
    let candidates = import_jobs::Entity::find()
        .filter(import_jobs::Column::LeaseExpiresAt.lt(at))
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
            .filter(import_jobs::Column::ImageId.eq(&c.image_id))
            .filter(import_jobs::Column::LeaseExpiresAt.eq(c.lease_expires_at))
            .exec(db)
            .await?;
        if res.rows_affected == 1 {
            let taken_over = c.lease_owner.is_some();
            let mut job = from_row(c).map_err(ApiError::Internal)?;
            job.attempt += 1;
            job.taken_over = taken_over;
            claimed.push(job);
        }
    }
    Ok(claimed)
}

fn owned(image: ImageId, owner: &str) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(import_jobs::Column::ImageId.eq(image.to_string()))
        .add(import_jobs::Column::LeaseOwner.eq(owner))
}

/// Records the blob the current attempt writes. False: the lease is gone.
pub async fn set_blob(db: &Db, image: ImageId, owner: &str, blob: BlobId) -> ApiResult<bool> {
    let res = import_jobs::Entity::update_many()
        .col_expr(import_jobs::Column::BlobId, Expr::value(blob.to_string()))
        .filter(owned(image, owner))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Extends the lease and publishes progress. False: the lease is gone (taken over, or the image
/// was deleted and the job with it), and the caller must stop.
pub async fn heartbeat(
    db: &Db,
    image: ImageId,
    owner: &str,
    lease_until: i64,
    bytes_done: u64,
    bytes_total: Option<u64>,
) -> ApiResult<bool> {
    let res = import_jobs::Entity::update_many()
        .col_expr(import_jobs::Column::LeaseExpiresAt, Expr::value(lease_until))
        .filter(owned(image, owner))
        .exec(db)
        .await?;
    if res.rows_affected == 0 {
        return Ok(false);
    }
    images::Entity::update_many()
        .col_expr(images::Column::BytesDone, Expr::value(bytes_done as i64))
        .col_expr(images::Column::BytesTotal, Expr::value(bytes_total.map(|b| b as i64)))
        .filter(images::Column::Id.eq(image.to_string()))
        .filter(images::Column::State.eq(ImageState::Importing.to_string()))
        .exec(db)
        .await?;
    Ok(true)
}

/// Gives the job back: it becomes claimable at `retry_at`. `refund` undoes the attempt count
/// (a graceful shutdown is not a failed attempt).
pub async fn release(
    db: &Db,
    image: ImageId,
    owner: &str,
    error: Option<&str>,
    retry_at: i64,
    refund: bool,
) -> ApiResult<bool> {
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
    let res = upd.filter(owned(image, owner)).exec(db).await?;
    Ok(res.rows_affected == 1)
}

/// Success: the job goes, the image becomes `ready`, atomically. False: the lease or the image
/// is gone, and the caller must remove the blob it wrote.
pub async fn finish_ready(
    db: &Db,
    image: ImageId,
    owner: &str,
    blob: BlobId,
    size: u64,
    sha256: &str,
    limits: impl Fn(&str) -> Limits,
) -> ApiResult<bool> {
    let txn = db.begin().await?;
    let Some(ended) = end_job(&txn, image, owner).await? else {
        return Ok(false);
    };
    if !super::images::mark_ready_in(&txn, image, ImageState::Importing, blob, size, sha256).await? {
        return Ok(false);
    }
    if let Some((org, region)) = &ended.quota_owner {
        usage::charge_bytes(&txn, org, region, size, limits(org)).await?;
    }
    txn.commit().await?;
    Ok(true)
}

struct Ended {
    /// The (organization, region) the image counts against; `None` for global images.
    quota_owner: Option<(String, String)>,
}

/// Inside `txn`: removes the job if this process still holds its lease and gives back its
/// concurrent-import slot. `None`: the lease (or the image, and the job with it) is gone.
async fn end_job(txn: &crate::db::Txn, image: ImageId, owner: &str) -> ApiResult<Option<Ended>> {
    let res = import_jobs::Entity::delete_many()
        .filter(owned(image, owner))
        .exec(txn)
        .await?;
    if res.rows_affected == 0 {
        return Ok(None);
    }
    let row = images::Entity::find_by_id(image.to_string()).one(txn).await?;
    let quota_owner = row.and_then(|r| r.organization_id.map(|o| (o, r.region_id)));
    if let Some((org, region)) = &quota_owner {
        usage::release(txn, org, region, 0, 0, 1).await?;
    }
    Ok(Some(Ended { quota_owner }))
}

/// Final failure: the job goes, the image becomes `failed` with a reason a person can act on.
pub async fn finish_failed(db: &Db, image: ImageId, owner: &str, reason: &str) -> ApiResult<bool> {
    let txn = db.begin().await?;
    if end_job(&txn, image, owner).await?.is_none() {
        return Ok(false);
    }
    images::Entity::update_many()
        .col_expr(images::Column::State, Expr::value(ImageState::Failed.to_string()))
        .col_expr(images::Column::Reason, Expr::value(reason.to_owned()))
        .col_expr(images::Column::UpdatedAt, Expr::value(micros(now())))
        .col_expr(images::Column::Revision, Expr::col(images::Column::Revision).add(1))
        .filter(images::Column::Id.eq(image.to_string()))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(true)
}

/// Unfinished jobs across all processes: (leased by a live process, waiting to be claimed).
/// A lease that expired counts as waiting: any process may claim it.
pub async fn count_by_state(db: &Db) -> ApiResult<(u64, u64)> {
    use sea_orm::PaginatorTrait;
    let at = micros(now());
    let leased = import_jobs::Entity::find()
        .filter(import_jobs::Column::LeaseOwner.is_not_null())
        .filter(import_jobs::Column::LeaseExpiresAt.gte(at))
        .count(db)
        .await?;
    let all = import_jobs::Entity::find().count(db).await?;
    Ok((leased, all.saturating_sub(leased)))
}
