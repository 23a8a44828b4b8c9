//! The ledger of open multipart uploads (see the migration). Rows are written before any data
//! goes into an upload and removed when it ends, so a row older than any live upload can be is
//! one a dead process left: takeovers and the sweeper abort exactly those.

use crate::db::Db;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use strata_domain::ids::{BlobId, ImageId, RegionId};
use strata_providers::{BlobStore, StorageError, UploadLedger};

use super::entities::multipart_uploads;
use super::{micros, now};
use crate::error::ApiResult;

pub struct Open {
    pub upload_id: String,
    pub region: RegionId,
    pub image: ImageId,
    pub blob: BlobId,
}

fn open(m: multipart_uploads::Model) -> Option<Open> {
    Some(Open {
        image: ImageId::from_uuid(uuid::Uuid::parse_str(&m.image_id).ok()?),
        blob: BlobId::from_uuid(uuid::Uuid::parse_str(&m.blob_id).ok()?),
        region: RegionId::parse(&m.region_id).ok()?,
        upload_id: m.upload_id,
    })
}

/// The database as an [`UploadLedger`] for one region.
pub struct DbLedger<'a>(pub &'a Db, pub &'a RegionId);

#[async_trait::async_trait]
impl UploadLedger for DbLedger<'_> {
    async fn started(&self, image: ImageId, blob: BlobId, upload_id: &str) -> Result<(), StorageError> {
        multipart_uploads::Entity::insert(multipart_uploads::ActiveModel {
            upload_id: Set(upload_id.to_owned()),
            region_id: Set(self.1.to_string()),
            image_id: Set(image.to_string()),
            blob_id: Set(blob.to_string()),
            started_at: Set(micros(now())),
        })
        .exec(self.0)
        .await
        .map(|_| ())
        .map_err(|e| StorageError::Config(format!("recording the upload: {e}")))
    }

    async fn ended(&self, upload_id: &str) {
        if let Err(e) = forget(self.0, upload_id).await {
            // harmless: the sweeper aborts (an already finished upload: a no-op) and forgets it
            tracing::warn!(error = %e, "forgetting a finished upload failed");
        }
    }
}

async fn forget(db: &Db, upload_id: &str) -> ApiResult<()> {
    multipart_uploads::Entity::delete_many()
        .filter(multipart_uploads::Column::UploadId.eq(upload_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Uploads started before `before_micros`.
pub async fn older_than(db: &Db, before_micros: i64) -> ApiResult<Vec<Open>> {
    let rows = multipart_uploads::Entity::find()
        .filter(multipart_uploads::Column::StartedAt.lt(before_micros))
        .all(db)
        .await?;
    Ok(rows.into_iter().filter_map(open).collect())
}

/// Aborts every recorded upload of one blob (what a dead attempt left) and forgets them.
pub async fn abort_for_blob(db: &Db, store: &BlobStore, image: ImageId, blob: BlobId) -> ApiResult<()> {
    let rows = multipart_uploads::Entity::find()
        .filter(multipart_uploads::Column::ImageId.eq(image.to_string()))
        .filter(multipart_uploads::Column::BlobId.eq(blob.to_string()))
        .all(db)
        .await?;
    for u in rows.into_iter().filter_map(open) {
        abort(db, store, &u).await?;
    }
    Ok(())
}

pub async fn abort(db: &Db, store: &BlobStore, u: &Open) -> ApiResult<()> {
    store.abort_upload(u.image, u.blob, &u.upload_id).await?;
    forget(db, &u.upload_id).await
}
