//! The image repository.

use crate::db::Db;
use std::collections::BTreeMap;

use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use strata_domain::DomainError;
use strata_domain::ids::{BlobId, ImageId, OrganizationId, RegionId};
use strata_domain::image::{Image, ImageState, OsInfo, Provenance, Status, reserved};
use strata_domain::kernel::KernelId;
use strata_domain::name::{Description, ImageName};
use strata_domain::query::{Cursor, ImageQuery, OrgFilter, Sort};
use strata_domain::tags::UserTags;

use super::entities::{image_consumers, image_tags, images};
use super::usage;
use super::{DbError, DbResult};
use super::{from_micros, is_fk_violation, is_unique_violation, micros, nonneg, now};
use crate::config::Limits;

fn to_active(img: &Image) -> images::ActiveModel {
    images::ActiveModel {
        id: Set(img.id.to_string()),
        region_id: Set(img.region_id.to_string()),
        organization_id: Set(img.organization_id.as_ref().map(ToString::to_string)),
        visibility: Set(img.visibility.to_string()),
        kind: Set(img.kind.to_string()),
        disk_format: Set(img.disk_format.to_string()),
        architecture: Set(img.architecture.to_string()),
        name: Set(img.name.to_string()),
        description: Set(img.description.as_ref().map(|d| d.as_str().to_owned())),
        os_family: Set(img.os.as_ref().map(|o| o.family.clone())),
        os_distro: Set(img.os.as_ref().and_then(|o| o.distro.clone())),
        os_version: Set(img.os.as_ref().and_then(|o| o.version.clone())),
        protected: Set(img.protected),
        source: Set(img.provenance.source.to_string()),
        reference: Set(img.provenance.reference.clone()),
        digest: Set(img.provenance.digest.clone()),
        imported_by: Set(img.provenance.imported_by.clone()),
        imported_at: Set(micros(img.provenance.imported_at)),
        state: Set(img.status.state.to_string()),
        reason: Set(img.status.reason.clone()),
        reason_code: Set(img.status.reason_code.map(|c| c.to_string())),
        bytes_done: Set(img.status.bytes_done as i64),
        bytes_total: Set(img.status.bytes_total.map(|b| b as i64)),
        size_bytes: Set(img.size_bytes.map(|b| b as i64)),
        sha256: Set(img.sha256.clone()),
        expected_sha256: Set(img.expected_sha256.clone()),
        blob_id: Set(img.blob.map(|b| b.to_string())),
        created_at: Set(micros(img.created_at)),
        updated_at: Set(micros(img.updated_at)),
        revision: Set(img.revision),
        kernel_id: Set(img.kernel_id.map(|k| k.to_string())),
        config_digest: Set(img.provenance.config_digest.clone()),
        platform: Set(img.provenance.platform.clone()),
        phase: Set(img.status.phase.map(|p| p.to_string())),
    }
}

fn from_row(m: images::Model, user_tags: BTreeMap<String, String>) -> anyhow::Result<Image> {
    let uuid = |s: &str| uuid::Uuid::parse_str(s).map_err(|e| anyhow::anyhow!("bad uuid {s:?} in row: {e}"));
    Ok(Image {
        id: ImageId::from_uuid(uuid(&m.id)?),
        name: ImageName::parse(&m.name)?,
        description: m.description.as_deref().map(Description::parse).transpose()?,
        organization_id: m.organization_id.as_deref().map(OrganizationId::parse).transpose()?,
        region_id: RegionId::parse(&m.region_id)?,
        visibility: m.visibility.parse()?,
        kind: m.kind.parse()?,
        disk_format: m.disk_format.parse()?,
        architecture: m.architecture.parse()?,
        os: m.os_family.map(|family| OsInfo {
            family,
            distro: m.os_distro,
            version: m.os_version,
        }),
        tags: UserTags::parse(user_tags)?,
        protected: m.protected,
        provenance: Provenance {
            source: m.source.parse()?,
            reference: m.reference,
            digest: m.digest,
            config_digest: m.config_digest,
            platform: m.platform,
            imported_by: m.imported_by,
            imported_at: from_micros(m.imported_at)?,
        },
        status: Status {
            state: m.state.parse()?,
            reason: m.reason,
            reason_code: m.reason_code.as_deref().map(str::parse).transpose()?,
            bytes_done: nonneg(m.bytes_done),
            bytes_total: m.bytes_total.map(nonneg),
            phase: m.phase.as_deref().map(str::parse).transpose()?,
        },
        size_bytes: m.size_bytes.map(nonneg),
        sha256: m.sha256,
        expected_sha256: m.expected_sha256,
        blob: m.blob_id.as_deref().map(uuid).transpose()?.map(BlobId::from_uuid),
        kernel_id: m.kernel_id.as_deref().map(uuid).transpose()?.map(KernelId::from_uuid),
        created_at: from_micros(m.created_at)?,
        updated_at: from_micros(m.updated_at)?,
        revision: m.revision,
    })
}

async fn write_tags<C: ConnectionTrait>(c: &C, img: &Image) -> Result<(), sea_orm::DbErr> {
    let id = img.id.to_string();
    image_tags::Entity::delete_many()
        .filter(image_tags::Column::ImageId.eq(&id))
        .exec(c)
        .await?;
    let user = img.tags.iter().map(|(k, v)| (k.clone(), v.clone(), false));
    let rows: Vec<_> = user
        .chain(img.reserved_tags().into_iter().map(|(k, v)| (k, v, true)))
        .map(|(key, value, reserved)| image_tags::ActiveModel {
            image_id: Set(id.clone()),
            key: Set(key),
            value: Set(value),
            reserved: Set(reserved),
        })
        .collect();
    if !rows.is_empty() {
        image_tags::Entity::insert_many(rows).exec(c).await?;
    }
    Ok(())
}

async fn load_user_tags<C: ConnectionTrait>(
    c: &C,
    ids: Vec<String>,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, sea_orm::DbErr> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let rows = image_tags::Entity::find()
        .filter(image_tags::Column::ImageId.is_in(ids))
        .filter(image_tags::Column::Reserved.eq(false))
        .all(c)
        .await?;
    for r in rows {
        out.entry(r.image_id).or_default().insert(r.key, r.value);
    }
    Ok(out)
}

pub(super) async fn hydrate<C: ConnectionTrait>(c: &C, rows: Vec<images::Model>) -> DbResult<Vec<Image>> {
    let mut tags = load_user_tags(c, rows.iter().map(|r| r.id.clone()).collect()).await?;
    rows.into_iter()
        .map(|r| {
            let t = tags.remove(&r.id).unwrap_or_default();
            from_row(r, t).map_err(DbError::Corrupt)
        })
        .collect()
}

/// The kernel an image names was deleted between the check and the write: the foreign key said so.
fn kernel_gone(img: &Image) -> DbError {
    DomainError::InvalidKernel {
        reason: format!(
            "kernel {} does not exist for this image",
            img.kernel_id.map(|k| k.to_string()).unwrap_or_default()
        ),
    }
    .into()
}

/// Inserts a new image. The unique indexes decide name conflicts, across replicas.
pub async fn insert(db: &Db, img: &Image, limits: Option<Limits>) -> DbResult<()> {
    let txn = db.begin().await?;
    reserve_in(&txn, img, false, limits).await?;
    insert_in(&txn, img).await?;
    txn.commit().await?;
    Ok(())
}

/// Counts a new organization image against its quota (global images are not counted).
pub async fn reserve_in<C: ConnectionTrait>(
    c: &C,
    img: &Image,
    importing: bool,
    limits: Option<Limits>,
) -> DbResult<()> {
    match (&img.organization_id, limits) {
        (Some(org), Some(l)) => usage::reserve_image(c, org.as_str(), img.region_id.as_str(), importing, l).await,
        _ => Ok(()),
    }
}

/// [`insert`] inside the caller's transaction.
pub async fn insert_in<C: ConnectionTrait>(c: &C, img: &Image) -> DbResult<()> {
    match images::Entity::insert(to_active(img)).exec(c).await {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            return Err(DomainError::NameTaken {
                name: img.name.to_string(),
            }
            .into());
        }
        Err(e) if is_fk_violation(&e) => return Err(kernel_gone(img)),
        Err(e) => return Err(e.into()),
    }
    write_tags(c, img).await?;
    Ok(())
}

/// Writes the user-editable fields of `img` if the row is still at `expected_revision`.
/// Returns false when someone else changed it first.
pub async fn update_metadata(db: &Db, img: &Image, expected_revision: i64) -> DbResult<bool> {
    let txn = db.begin().await?;
    let res = images::Entity::update_many()
        .col_expr(images::Column::Name, Expr::value(img.name.to_string()))
        .col_expr(
            images::Column::Description,
            Expr::value(img.description.as_ref().map(|d| d.as_str().to_owned())),
        )
        .col_expr(images::Column::Protected, Expr::value(img.protected))
        .col_expr(
            images::Column::KernelId,
            Expr::value(img.kernel_id.map(|k| k.to_string())),
        )
        .col_expr(images::Column::UpdatedAt, Expr::value(micros(img.updated_at)))
        .col_expr(images::Column::Revision, Expr::value(img.revision))
        .filter(images::Column::Id.eq(img.id.to_string()))
        .filter(images::Column::Revision.eq(expected_revision))
        .exec(&txn)
        .await;
    let res = match res {
        Ok(r) => r,
        Err(e) if is_unique_violation(&e) => {
            return Err(DomainError::NameTaken {
                name: img.name.to_string(),
            }
            .into());
        }
        Err(e) if is_fk_violation(&e) => return Err(kernel_gone(img)),
        Err(e) => return Err(e.into()),
    };
    if res.rows_affected == 0 {
        return Ok(false);
    }
    write_tags(&txn, img).await?;
    txn.commit().await?;
    Ok(true)
}

/// `pending` -> `ready` with the stored blob. Only one uploader can win: the update is
/// conditional on the state, so a concurrent upload of the same image finds it already ready.
pub async fn mark_ready(
    db: &Db,
    img: &Image,
    blob: BlobId,
    size: u64,
    sha256: &str,
    limits: Option<Limits>,
) -> DbResult<bool> {
    let txn = db.begin().await?;
    if !mark_ready_in(&txn, img.id, ImageState::Pending, blob, size, sha256).await? {
        return Ok(false);
    }
    charge_in(&txn, img.organization_id.as_ref(), &img.region_id, size, limits).await?;
    txn.commit().await?;
    Ok(true)
}

/// Charges stored bytes to the owning organization's quota (global images are not counted).
pub async fn charge_in<C: ConnectionTrait>(
    c: &C,
    org: Option<&OrganizationId>,
    region: &RegionId,
    size: u64,
    limits: Option<Limits>,
) -> DbResult<()> {
    match (org, limits) {
        (Some(org), Some(l)) => usage::charge_bytes(c, org.as_str(), region.as_str(), size, l).await,
        _ => Ok(()),
    }
}

/// `from` -> `ready` inside the caller's transaction; false when the image is not in `from`.
pub async fn mark_ready_in<C: ConnectionTrait>(
    txn: &C,
    id: ImageId,
    from: ImageState,
    blob: BlobId,
    size: u64,
    sha256: &str,
) -> DbResult<bool> {
    // An import that knows a better digest (an OCI manifest's) has recorded it already.
    let known = images::Entity::find_by_id(id.to_string())
        .select_only()
        .column(images::Column::Digest)
        .into_tuple::<Option<String>>()
        .one(txn)
        .await?
        .flatten();
    let digest = known.unwrap_or_else(|| format!("sha256:{sha256}"));
    let res = images::Entity::update_many()
        .col_expr(images::Column::State, Expr::value(ImageState::Ready.to_string()))
        .col_expr(images::Column::Reason, Expr::value(Option::<String>::None))
        .col_expr(images::Column::ReasonCode, Expr::value(Option::<String>::None))
        .col_expr(images::Column::BlobId, Expr::value(blob.to_string()))
        .col_expr(images::Column::SizeBytes, Expr::value(size as i64))
        .col_expr(images::Column::BytesDone, Expr::value(size as i64))
        .col_expr(images::Column::BytesTotal, Expr::value(size as i64))
        .col_expr(images::Column::Sha256, Expr::value(sha256.to_owned()))
        .col_expr(images::Column::Digest, Expr::value(digest.clone()))
        .col_expr(images::Column::Phase, Expr::value(Option::<String>::None))
        .col_expr(images::Column::UpdatedAt, Expr::value(micros(now())))
        .col_expr(images::Column::Revision, Expr::col(images::Column::Revision).add(1))
        .filter(images::Column::Id.eq(id.to_string()))
        .filter(images::Column::State.eq(from.to_string()))
        .exec(txn)
        .await?;
    if res.rows_affected == 0 {
        return Ok(false);
    }
    image_tags::Entity::delete_many()
        .filter(image_tags::Column::ImageId.eq(id.to_string()))
        .filter(image_tags::Column::Key.eq(reserved::DIGEST))
        .exec(txn)
        .await?;
    image_tags::Entity::insert(image_tags::ActiveModel {
        image_id: Set(id.to_string()),
        key: Set(reserved::DIGEST.to_owned()),
        value: Set(digest),
        reserved: Set(true),
    })
    .exec(txn)
    .await?;
    Ok(true)
}

pub enum DeleteOutcome {
    /// Deleted; the blob it pointed to, if any, can now be removed.
    Deleted {
        blob: Option<BlobId>,
    },
    Gone,
    Protected,
    InUse(Vec<String>),
    /// Its state changed since it was read (an import finished): read it again and retry.
    Changed,
}

/// Deletes an image unless it is protected or has consumers. The checks are part of the one
/// `DELETE` statement (a `protected = false` condition and a `RESTRICT` foreign key from
/// consumers), so a concurrent `PATCH protected` or consumer registration cannot slip between a
/// check and the delete, on any number of replicas.
pub async fn delete(db: &Db, img: &Image) -> DbResult<DeleteOutcome> {
    let id = img.id.to_string();
    let txn = db.begin().await?;
    // Conditional on the state we saw: what the image gives back to the quota depends on it.
    let res = images::Entity::delete_many()
        .filter(images::Column::Id.eq(&id))
        .filter(images::Column::Protected.eq(false))
        .filter(images::Column::State.eq(img.status.state.to_string()))
        .exec(&txn)
        .await;
    match res {
        Ok(r) if r.rows_affected == 1 => {
            if let Some(org) = &img.organization_id {
                let bytes = if img.status.state == ImageState::Ready {
                    img.size_bytes.unwrap_or(0)
                } else {
                    0
                };
                let importing = u64::from(img.status.state == ImageState::Importing);
                usage::release(&txn, org.as_str(), img.region_id.as_str(), 1, bytes, importing).await?;
            }
            txn.commit().await?;
            Ok(DeleteOutcome::Deleted { blob: img.blob })
        }
        Ok(_) => {
            drop(txn);
            let still = images::Entity::find_by_id(id).one(db).await?;
            Ok(match still {
                None => DeleteOutcome::Gone,
                Some(row) if row.protected => DeleteOutcome::Protected,
                Some(_) => DeleteOutcome::Changed,
            })
        }
        Err(e) if is_fk_violation(&e) => {
            drop(txn);
            Ok(DeleteOutcome::InUse(consumer_names(db, &id).await?))
        }
        Err(e) => Err(e.into()),
    }
}

async fn consumer_names<C: ConnectionTrait>(c: &C, image_id: &str) -> Result<Vec<String>, sea_orm::DbErr> {
    let rows = image_consumers::Entity::find()
        .filter(image_consumers::Column::ImageId.eq(image_id))
        .order_by_asc(image_consumers::Column::ConsumerId)
        .all(c)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| format!("{} {}", r.kind, r.consumer_id))
        .collect())
}

/// One page of the v2 query, plus whether more follow.
pub async fn query(db: &Db, region: &RegionId, q: &ImageQuery) -> DbResult<(Vec<Image>, bool)> {
    use images::Column as C;
    let mut sel = images::Entity::find().filter(C::RegionId.eq(region.as_str()));
    sel = match (&q.organizations, q.include_global) {
        (OrgFilter::Any, true) => sel,
        (OrgFilter::Any, false) => sel.filter(C::OrganizationId.is_not_null()),
        (OrgFilter::Only(orgs), include_global) => {
            if orgs.is_empty() && !include_global {
                return Ok((vec![], false));
            }
            let mut who = Condition::any();
            if !orgs.is_empty() {
                who = who.add(C::OrganizationId.is_in(orgs.iter().map(|o| o.as_str().to_owned())));
            }
            if include_global {
                who = who.add(C::OrganizationId.is_null());
            }
            sel.filter(who)
        }
    };
    if !q.states.is_empty() {
        sel = sel.filter(C::State.is_in(q.states.iter().map(|s| s.to_string())));
    }
    if let Some(name) = &q.name {
        sel = sel.filter(C::Name.eq(name.as_str()));
    }
    if let Some(arch) = q.architecture {
        sel = sel.filter(C::Architecture.eq(arch.to_string()));
    }
    for t in &q.tags {
        let mut sub = Query::select();
        sub.column(image_tags::Column::ImageId)
            .from(image_tags::Entity)
            .and_where(image_tags::Column::Key.eq(&t.key));
        if let Some(v) = &t.value {
            sub.and_where(image_tags::Column::Value.eq(v));
        }
        sel = sel.filter(C::Id.in_subquery(sub.to_owned()));
    }
    if let Some(cursor) = &q.after {
        let cond = match (cursor, q.sort) {
            (Cursor::Name { name, id }, _) => Condition::any()
                .add(C::Name.gt(name))
                .add(Condition::all().add(C::Name.eq(name)).add(C::Id.gt(id.to_string()))),
            (Cursor::CreatedAt { at, id }, Sort::CreatedAtDesc) => {
                Condition::any().add(C::CreatedAt.lt(micros(*at))).add(
                    Condition::all()
                        .add(C::CreatedAt.eq(micros(*at)))
                        .add(C::Id.lt(id.to_string())),
                )
            }
            (Cursor::CreatedAt { at, id }, _) => Condition::any().add(C::CreatedAt.gt(micros(*at))).add(
                Condition::all()
                    .add(C::CreatedAt.eq(micros(*at)))
                    .add(C::Id.gt(id.to_string())),
            ),
        };
        sel = sel.filter(cond);
    }
    sel = match q.sort {
        Sort::Name => sel.order_by_asc(C::Name).order_by_asc(C::Id),
        Sort::CreatedAt => sel.order_by_asc(C::CreatedAt).order_by_asc(C::Id),
        Sort::CreatedAtDesc => sel.order_by_desc(C::CreatedAt).order_by_desc(C::Id),
    };
    let mut rows = sel.limit(u64::from(q.limit) + 1).all(db).await?;
    let more = rows.len() > q.limit as usize;
    rows.truncate(q.limit as usize);
    Ok((hydrate(db, rows).await?, more))
}
