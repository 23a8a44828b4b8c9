//! Quota accounting. Every change is one conditional `UPDATE` of the (organization, region) row
//! inside the transaction that creates, settles or deletes the image, so limits hold across
//! replicas and counters never drift from the rows they count.

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use strata_domain::DomainError;

use super::DbResult;
use super::entities::org_usage;
use super::nonneg;
use crate::config::Limits;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub images: u64,
    pub bytes: u64,
    pub importing: u64,
}

fn key(org: &str, region: &str) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(org_usage::Column::OrganizationId.eq(org))
        .add(org_usage::Column::RegionId.eq(region))
}

async fn ensure_row<C: ConnectionTrait>(c: &C, org: &str, region: &str) -> DbResult<()> {
    let row = org_usage::ActiveModel {
        organization_id: Set(org.to_owned()),
        region_id: Set(region.to_owned()),
        images: Set(0),
        bytes: Set(0),
        importing: Set(0),
    };
    // ON CONFLICT DO NOTHING: a failed insert would abort the whole transaction on PostgreSQL.
    org_usage::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([org_usage::Column::OrganizationId, org_usage::Column::RegionId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(c)
        .await?;
    Ok(())
}

pub async fn get<C: ConnectionTrait>(c: &C, org: &str, region: &str) -> DbResult<Usage> {
    let row = org_usage::Entity::find().filter(key(org, region)).one(c).await?;
    Ok(row
        .map(|r| Usage {
            images: nonneg(r.images),
            bytes: nonneg(r.bytes),
            importing: nonneg(r.importing),
        })
        .unwrap_or_default())
}

/// Counts a new image (and, for imports, a running import) if both stay within the limits.
pub async fn reserve_image<C: ConnectionTrait>(
    c: &C,
    org: &str,
    region: &str,
    importing: bool,
    l: Limits,
) -> DbResult<()> {
    ensure_row(c, org, region).await?;
    let imp = i64::from(importing);
    let res = org_usage::Entity::update_many()
        .col_expr(org_usage::Column::Images, Expr::col(org_usage::Column::Images).add(1))
        .col_expr(
            org_usage::Column::Importing,
            Expr::col(org_usage::Column::Importing).add(imp),
        )
        .filter(key(org, region))
        .filter(Expr::col(org_usage::Column::Images).add(1).lte(l.images as i64))
        .filter(
            Expr::col(org_usage::Column::Importing)
                .add(imp)
                .lte(l.concurrent_imports as i64),
        )
        .exec(c)
        .await?;
    if res.rows_affected == 1 {
        return Ok(());
    }
    let u = get(c, org, region).await?;
    let detail = if u.images + 1 > l.images {
        format!(
            "images: {} of {} used in this region; delete images or ask for a higher limit",
            u.images, l.images
        )
    } else {
        format!(
            "concurrent imports: {} of {} running; wait for one to finish",
            u.importing, l.concurrent_imports
        )
    };
    Err(DomainError::QuotaExceeded { detail }.into())
}

/// Counts a running import that adds no image (a kernel pull) if it stays within the limit.
pub async fn reserve_import<C: ConnectionTrait>(c: &C, org: &str, region: &str, l: Limits) -> DbResult<()> {
    ensure_row(c, org, region).await?;
    let res = org_usage::Entity::update_many()
        .col_expr(
            org_usage::Column::Importing,
            Expr::col(org_usage::Column::Importing).add(1),
        )
        .filter(key(org, region))
        .filter(
            Expr::col(org_usage::Column::Importing)
                .add(1)
                .lte(l.concurrent_imports as i64),
        )
        .exec(c)
        .await?;
    if res.rows_affected == 1 {
        return Ok(());
    }
    let u = get(c, org, region).await?;
    Err(DomainError::QuotaExceeded {
        detail: format!(
            "concurrent imports: {} of {} running; wait for one to finish",
            u.importing, l.concurrent_imports
        ),
    }
    .into())
}

/// Charges `bytes` of stored content if the total stays within the limit.
pub async fn charge_bytes<C: ConnectionTrait>(c: &C, org: &str, region: &str, bytes: u64, l: Limits) -> DbResult<()> {
    ensure_row(c, org, region).await?;
    let res = org_usage::Entity::update_many()
        .col_expr(
            org_usage::Column::Bytes,
            Expr::col(org_usage::Column::Bytes).add(bytes as i64),
        )
        .filter(key(org, region))
        .filter(
            Expr::col(org_usage::Column::Bytes)
                .add(bytes as i64)
                .lte(l.bytes as i64),
        )
        .exec(c)
        .await?;
    if res.rows_affected == 1 {
        return Ok(());
    }
    let u = get(c, org, region).await?;
    Err(DomainError::QuotaExceeded {
        detail: format!(
            "bytes: {} of {} used in this region; this image needs {bytes} more",
            u.bytes, l.bytes
        ),
    }
    .into())
}

/// Checks, without changing anything, whether `bytes` more would fit (to refuse early, before
/// streaming; the charge itself is [`charge_bytes`]).
pub async fn bytes_fit<C: ConnectionTrait>(c: &C, org: &str, region: &str, bytes: u64, l: Limits) -> DbResult<()> {
    let u = get(c, org, region).await?;
    if u.bytes.saturating_add(bytes) > l.bytes {
        return Err(DomainError::QuotaExceeded {
            detail: format!(
                "bytes: {} of {} used in this region; this image needs {bytes} more",
                u.bytes, l.bytes
            ),
        }
        .into());
    }
    Ok(())
}

/// Gives back what an image held. Deltas are subtracted (never below zero).
pub async fn release<C: ConnectionTrait>(
    c: &C,
    org: &str,
    region: &str,
    images: u64,
    bytes: u64,
    importing: u64,
) -> DbResult<()> {
    let dec = |col: org_usage::Column, by: u64| {
        Expr::case(Expr::col(col).gte(by as i64), Expr::col(col).sub(by as i64)).finally(0)
    };
    org_usage::Entity::update_many()
        .col_expr(org_usage::Column::Images, dec(org_usage::Column::Images, images).into())
        .col_expr(org_usage::Column::Bytes, dec(org_usage::Column::Bytes, bytes).into())
        .col_expr(
            org_usage::Column::Importing,
            dec(org_usage::Column::Importing, importing).into(),
        )
        .filter(key(org, region))
        .exec(c)
        .await?;
    Ok(())
}
