//! Upload leases (see the migration): at most one upload per image, and a bounded number per
//! organization, decided by the database so the limits hold across replicas. A lease lapses
//! unless its holder renews it, so a crashed process holds nothing for long.

use crate::db::Db;
use std::time::Duration;

use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use strata_domain::DomainError;
use strata_domain::ids::ImageId;

use super::DbResult;
use super::entities::upload_leases;
use super::{is_unique_violation, micros, now};

/// What a client refused with `too-many-uploads` is told to wait before retrying.
const RETRY_AFTER_SECS: u64 = 5;

/// A held upload lease. Renewed in the background while it lives; released when dropped.
pub struct UploadLease {
    db: Db,
    image: String,
    holder: String,
    renewer: tokio::task::JoinHandle<()>,
    released: bool,
}

fn expiry(lease: Duration) -> i64 {
    micros(now()) + i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 2)
}

/// Takes the upload lease of `image` for `org`: `upload-in-progress` if another live upload holds
/// it, `too-many-uploads` if the organization already has `limit` uploads in flight.
pub async fn acquire(db: &Db, image: ImageId, org: &str, limit: u64, lease: Duration) -> DbResult<UploadLease> {
    let image = image.to_string();
    let holder = uuid::Uuid::new_v4().to_string();
    // Leases whose holders stopped renewing them are gone.
    upload_leases::Entity::delete_many()
        .filter(upload_leases::Column::ExpiresAt.lt(micros(now())))
        .filter(
            sea_orm::Condition::any()
                .add(upload_leases::Column::ImageId.eq(&image))
                .add(upload_leases::Column::OrganizationId.eq(org)),
        )
        .exec(db)
        .await?;
    let row = upload_leases::ActiveModel {
        image_id: Set(image.clone()),
        organization_id: Set(org.to_owned()),
        holder: Set(holder.clone()),
        expires_at: Set(expiry(lease)),
    };
    match upload_leases::Entity::insert(row).exec_without_returning(db).await {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => return Err(DomainError::UploadInProgress.into()),
        Err(e) => return Err(e.into()),
    }
    // Counted after our own row is committed: of uploads racing for the last slot, the one that
    // counts last sees all of them, so the limit is never exceeded (at worst both are refused).
    let held = upload_leases::Entity::find()
        .filter(upload_leases::Column::OrganizationId.eq(org))
        .filter(upload_leases::Column::ExpiresAt.gte(micros(now())))
        .count(db)
        .await;
    let taken = UploadLease {
        db: db.clone(),
        image: image.clone(),
        holder: holder.clone(),
        renewer: tokio::spawn(renew(db.clone(), image, holder, lease)),
        released: false,
    };
    if held? > limit {
        taken.release().await;
        return Err(DomainError::TooManyUploads {
            limit,
            retry_after_secs: RETRY_AFTER_SECS,
        }
        .into());
    }
    Ok(taken)
}

async fn renew(db: Db, image: String, holder: String, lease: Duration) {
    let every = (lease / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let res = upload_leases::Entity::update_many()
            .col_expr(upload_leases::Column::ExpiresAt, Expr::value(expiry(lease)))
            .filter(upload_leases::Column::ImageId.eq(&image))
            .filter(upload_leases::Column::Holder.eq(&holder))
            .exec(&db)
            .await;
        if let Err(e) = res {
            tracing::warn!(image, error = %e, "renewing an upload lease failed");
        }
    }
}

impl UploadLease {
    /// Gives the lease back now (dropping it does the same in the background).
    pub async fn release(mut self) {
        self.renewer.abort();
        self.released = true;
        if let Err(e) = delete(&self.db, &self.image, &self.holder).await {
            tracing::warn!(image = self.image, error = %e, "releasing an upload lease failed; it lapses");
        }
    }
}

/// Removes every lapsed lease (the sweeper's job; `acquire` also removes the ones in its way).
pub async fn remove_lapsed(db: &Db) -> DbResult<u64> {
    let res = upload_leases::Entity::delete_many()
        .filter(upload_leases::Column::ExpiresAt.lt(micros(now())))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

async fn delete(db: &Db, image: &str, holder: &str) -> DbResult<()> {
    upload_leases::Entity::delete_many()
        .filter(upload_leases::Column::ImageId.eq(image))
        .filter(upload_leases::Column::Holder.eq(holder))
        .exec(db)
        .await?;
    Ok(())
}

impl Drop for UploadLease {
    /// A cancelled upload (the client went away) gives its lease back too.
    fn drop(&mut self) {
        self.renewer.abort();
        if self.released {
            return;
        }
        let (db, image, holder) = (
            self.db.clone(),
            std::mem::take(&mut self.image),
            std::mem::take(&mut self.holder),
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = delete(&db, &image, &holder).await {
                    tracing::warn!(image, error = %e, "releasing an upload lease failed; it lapses");
                }
            });
        }
    }
}
