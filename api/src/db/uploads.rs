//! The ledger of open multipart uploads (see the migration). Rows are written before any data
//! goes into an upload and removed when it ends, so a row older than any live upload can be is
//! one a dead process left: takeovers and the sweeper abort exactly those.

use crate::db::Db;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use strata_domain::ids::{BlobId, ImageId, RegionId};
use strata_providers::{BlobKey, BlobStore, StorageError, UploadLedger};

use super::DbResult;
use super::entities::multipart_uploads;
use super::{micros, now};

pub struct Open {
    pub upload_id: String,
    pub region: RegionId,
    pub key: BlobKey,
}

fn open(m: multipart_uploads::Model) -> Option<Open> {
    let key = match m.object_key.as_deref() {
        Some(k) => BlobKey::parse(k)?,
        None => BlobKey::image(
            ImageId::from_uuid(uuid::Uuid::parse_str(&m.image_id).ok()?),
            BlobId::from_uuid(uuid::Uuid::parse_str(&m.blob_id).ok()?),
        ),
    };
    Some(Open {
        key,
        region: RegionId::parse(&m.region_id).ok()?,
        upload_id: m.upload_id,
    })
}

/// The owner id and blob id columns of a key (cache entries have no blob: the digest stands in).
fn owner_columns(key: &BlobKey) -> (String, String) {
    match key {
        BlobKey::Image { image, blob } => (image.to_string(), blob.to_string()),
        BlobKey::Kernel { kernel, blob } => (kernel.to_string(), blob.to_string()),
        BlobKey::Cache { sha256 } => ("cache".to_owned(), sha256.chars().take(36).collect()),
    }
}

/// The database as an [`UploadLedger`] for one region.
pub struct DbLedger<'a>(pub &'a Db, pub &'a RegionId);

#[async_trait::async_trait]
impl UploadLedger for DbLedger<'_> {
    async fn record(&self, key: &BlobKey, upload_id: &str) -> Result<(), StorageError> {
        let (owner, blob) = owner_columns(key);
        multipart_uploads::Entity::insert(multipart_uploads::ActiveModel {
            upload_id: Set(upload_id.to_owned()),
            region_id: Set(self.1.to_string()),
            image_id: Set(owner),
            blob_id: Set(blob),
            started_at: Set(micros(now())),
            object_key: Set(Some(key.to_string())),
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

async fn forget(db: &Db, upload_id: &str) -> DbResult<()> {
    multipart_uploads::Entity::delete_many()
        .filter(multipart_uploads::Column::UploadId.eq(upload_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Uploads started before `before_micros`.
pub async fn older_than(db: &Db, before_micros: i64) -> DbResult<Vec<Open>> {
    let rows = multipart_uploads::Entity::find()
        .filter(multipart_uploads::Column::StartedAt.lt(before_micros))
        .all(db)
        .await?;
    Ok(rows.into_iter().filter_map(open).collect())
}

/// Aborts every recorded upload of one object (what a dead attempt left) and forgets them.
pub async fn abort_for_key(db: &Db, store: &BlobStore, key: &BlobKey) -> DbResult<()> {
    let rows = multipart_uploads::Entity::find()
        .filter(multipart_uploads::Column::ObjectKey.eq(key.to_string()))
        .all(db)
        .await?;
    for u in rows.into_iter().filter_map(open) {
        abort(db, store, &u).await?;
    }
    Ok(())
}

pub async fn abort(db: &Db, store: &BlobStore, u: &Open) -> DbResult<()> {
    store.abort_upload(&u.key, &u.upload_id).await?;
    forget(db, &u.upload_id).await
}
