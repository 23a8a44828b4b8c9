//! The kernel repository: kernels, their tags, their stored files and their consumers.

use std::collections::BTreeMap;

use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use strata_domain::ids::{BlobId, ConsumerId, OrganizationId, RegionId};
use strata_domain::image::{ImageState, Status, reserved};
use strata_domain::kernel::{ArtifactInfo, Artifacts, Kernel, KernelFormat, KernelId, KernelProvenance, KernelVersion};
use strata_domain::name::{Description, ImageName};
use strata_domain::query::{Cursor, ImageQuery, OrgFilter, Sort};
use strata_domain::tags::UserTags;
use strata_domain::{DomainError, ResourceKind};

use super::entities::{images, kernel_artifacts, kernel_consumers, kernel_tags, kernels};
use super::{Db, DbError, DbResult, from_micros, is_fk_violation, is_unique_violation, micros, nonneg, now, usage};
use crate::config::Limits;

pub use kernel_consumers::Model as KernelConsumerRow;

fn to_active(k: &Kernel) -> kernels::ActiveModel {
    kernels::ActiveModel {
        id: Set(k.id.to_string()),
        region_id: Set(k.region_id.to_string()),
        organization_id: Set(k.organization_id.as_ref().map(ToString::to_string)),
        visibility: Set(k.visibility.to_string()),
        architecture: Set(k.architecture.to_string()),
        name: Set(k.name.to_string()),
        description: Set(k.description.as_ref().map(|d| d.as_str().to_owned())),
        version: Set(k.version.as_str().to_owned()),
        format: Set(k.format.map(|f| f.to_string())),
        distro: Set(k.distro.clone()),
        protected: Set(k.protected),
        source: Set(k.provenance.source.to_string()),
        reference: Set(k.provenance.reference.clone()),
        digest: Set(k.provenance.digest.clone()),
        imported_by: Set(k.provenance.imported_by.clone()),
        imported_at: Set(micros(k.provenance.imported_at)),
        state: Set(k.status.state.to_string()),
        reason: Set(k.status.reason.clone()),
        reason_code: Set(k.status.reason_code.map(|c| c.to_string())),
        bytes_done: Set(k.status.bytes_done as i64),
        bytes_total: Set(k.status.bytes_total.map(|b| b as i64)),
        expected_sha256: Set(k.expected_sha256.clone()),
        size_bytes: Set(k.artifacts.total_size() as i64),
        created_at: Set(micros(k.created_at)),
        updated_at: Set(micros(k.updated_at)),
        revision: Set(k.revision),
    }
}

fn uuid(s: &str) -> anyhow::Result<uuid::Uuid> {
    uuid::Uuid::parse_str(s).map_err(|e| anyhow::anyhow!("bad uuid {s:?} in row: {e}"))
}

fn from_row(
    m: kernels::Model,
    user_tags: BTreeMap<String, String>,
    files: Vec<kernel_artifacts::Model>,
) -> anyhow::Result<Kernel> {
    let mut artifacts = Artifacts::default();
    for f in files {
        artifacts.set(
            f.artifact.parse()?,
            ArtifactInfo {
                blob: BlobId::from_uuid(uuid(&f.blob_id)?),
                size: nonneg(f.size_bytes),
                sha256: f.sha256,
            },
        );
    }
    let size = artifacts.total_size();
    let state: ImageState = m.state.parse()?;
    // While a pull runs its progress is in the row; afterwards it is what was stored.
    let (bytes_done, bytes_total) = if state == ImageState::Importing {
        (nonneg(m.bytes_done), m.bytes_total.map(nonneg))
    } else {
        (size, (size > 0).then_some(size))
    };
    Ok(Kernel {
        id: KernelId::from_uuid(uuid(&m.id)?),
        name: ImageName::parse(&m.name)?,
        description: m.description.as_deref().map(Description::parse).transpose()?,
        organization_id: m.organization_id.as_deref().map(OrganizationId::parse).transpose()?,
        region_id: RegionId::parse(&m.region_id)?,
        visibility: m.visibility.parse()?,
        architecture: m.architecture.parse()?,
        version: KernelVersion::parse(&m.version)?,
        format: m.format.as_deref().map(parse_format).transpose()?,
        distro: m.distro,
        tags: UserTags::parse(user_tags)?,
        protected: m.protected,
        provenance: KernelProvenance {
            source: m.source.parse()?,
            reference: m.reference,
            digest: m.digest,
            imported_by: m.imported_by,
            imported_at: from_micros(m.imported_at)?,
        },
        status: Status {
            state,
            reason: m.reason,
            reason_code: m.reason_code.as_deref().map(str::parse).transpose()?,
            bytes_done,
            bytes_total,
            phase: None,
        },
        expected_sha256: m.expected_sha256,
        artifacts,
        created_at: from_micros(m.created_at)?,
        updated_at: from_micros(m.updated_at)?,
        revision: m.revision,
    })
}

fn parse_format(s: &str) -> anyhow::Result<KernelFormat> {
    match s {
        "elf" => Ok(KernelFormat::Elf),
        "bzimage" => Ok(KernelFormat::BzImage),
        other => Err(anyhow::anyhow!("bad kernel format {other:?} in row")),
    }
}

async fn write_tags<C: ConnectionTrait>(c: &C, k: &Kernel) -> Result<(), sea_orm::DbErr> {
    let id = k.id.to_string();
    kernel_tags::Entity::delete_many()
        .filter(kernel_tags::Column::KernelId.eq(&id))
        .exec(c)
        .await?;
    let user = k.tags.iter().map(|(k, v)| (k.clone(), v.clone(), false));
    let rows: Vec<_> = user
        .chain(k.reserved_tags().into_iter().map(|(k, v)| (k, v, true)))
        .map(|(key, value, reserved)| kernel_tags::ActiveModel {
            kernel_id: Set(id.clone()),
            key: Set(key),
            value: Set(value),
            reserved: Set(reserved),
        })
        .collect();
    if !rows.is_empty() {
        kernel_tags::Entity::insert_many(rows).exec(c).await?;
    }
    Ok(())
}

pub(super) async fn hydrate<C: ConnectionTrait>(c: &C, rows: Vec<kernels::Model>) -> DbResult<Vec<Kernel>> {
    if rows.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut tags: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for r in kernel_tags::Entity::find()
        .filter(kernel_tags::Column::KernelId.is_in(ids.clone()))
        .filter(kernel_tags::Column::Reserved.eq(false))
        .all(c)
        .await?
    {
        tags.entry(r.kernel_id).or_default().insert(r.key, r.value);
    }
    let mut files: BTreeMap<String, Vec<kernel_artifacts::Model>> = BTreeMap::new();
    for r in kernel_artifacts::Entity::find()
        .filter(kernel_artifacts::Column::KernelId.is_in(ids))
        .all(c)
        .await?
    {
        files.entry(r.kernel_id.clone()).or_default().push(r);
    }
    rows.into_iter()
        .map(|r| {
            let t = tags.remove(&r.id).unwrap_or_default();
            let f = files.remove(&r.id).unwrap_or_default();
            from_row(r, t, f).map_err(DbError::corrupt)
        })
        .collect()
}

/// Inserts a new kernel; the unique indexes decide name conflicts.
pub async fn insert(db: &Db, k: &Kernel) -> DbResult<()> {
    let txn = db.begin().await?;
    insert_in(&txn, k).await?;
    txn.commit().await?;
    Ok(())
}

/// [`insert`] inside the caller's transaction.
pub async fn insert_in<C: ConnectionTrait>(c: &C, k: &Kernel) -> DbResult<()> {
    match kernels::Entity::insert(to_active(k)).exec(c).await {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            return Err(DomainError::NameTaken {
                name: k.name.to_string(),
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    }
    write_tags(c, k).await?;
    Ok(())
}

pub async fn find(db: &Db, region: &RegionId, id: KernelId) -> DbResult<Option<Kernel>> {
    let row = kernels::Entity::find_by_id(id.to_string())
        .filter(kernels::Column::RegionId.eq(region.as_str()))
        .one(db)
        .await?;
    match row {
        Some(r) => Ok(hydrate(db, vec![r]).await?.pop()),
        None => Ok(None),
    }
}

/// Writes the user-editable fields if the row is still at `expected_revision`.
pub async fn update_metadata(db: &Db, k: &Kernel, expected_revision: i64) -> DbResult<bool> {
    let txn = db.begin().await?;
    let res = kernels::Entity::update_many()
        .col_expr(kernels::Column::Name, Expr::value(k.name.to_string()))
        .col_expr(
            kernels::Column::Description,
            Expr::value(k.description.as_ref().map(|d| d.as_str().to_owned())),
        )
        .col_expr(kernels::Column::Distro, Expr::value(k.distro.clone()))
        .col_expr(kernels::Column::Protected, Expr::value(k.protected))
        .col_expr(kernels::Column::UpdatedAt, Expr::value(micros(k.updated_at)))
        .col_expr(kernels::Column::Revision, Expr::value(k.revision))
        .filter(kernels::Column::Id.eq(k.id.to_string()))
        .filter(kernels::Column::Revision.eq(expected_revision))
        .exec(&txn)
        .await;
    let res = match res {
        Ok(r) => r,
        Err(e) if is_unique_violation(&e) => {
            return Err(DomainError::NameTaken {
                name: k.name.to_string(),
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    if res.rows_affected == 0 {
        return Ok(false);
    }
    write_tags(&txn, k).await?;
    txn.commit().await?;
    Ok(true)
}

/// `pending` -> `ready` with its stored files, charging their bytes to the owner's quota, in one
/// transaction. False when the kernel is no longer `pending` (another upload won).
pub async fn mark_ready(
    db: &Db,
    k: &Kernel,
    format: KernelFormat,
    files: &Artifacts,
    digest: &str,
    limits: Option<Limits>,
) -> DbResult<bool> {
    let txn = db.begin().await?;
    if !mark_ready_in(&txn, k.id, ImageState::Pending, format, files, digest).await? {
        return Ok(false);
    }
    if let (Some(org), Some(l)) = (&k.organization_id, limits) {
        usage::charge_bytes(&txn, org.as_str(), k.region_id.as_str(), files.total_size(), l).await?;
    }
    txn.commit().await?;
    Ok(true)
}

/// Inside the caller's transaction: the kernel becomes `ready` with its files if it is still in
/// state `from`. The caller charges the bytes. False: it is no longer in that state (or gone).
pub async fn mark_ready_in<C: ConnectionTrait>(
    c: &C,
    kernel: KernelId,
    from: ImageState,
    format: KernelFormat,
    files: &Artifacts,
    digest: &str,
) -> DbResult<bool> {
    let id = kernel.to_string();
    let total = files.total_size();
    let res = kernels::Entity::update_many()
        .col_expr(kernels::Column::State, Expr::value(ImageState::Ready.to_string()))
        .col_expr(kernels::Column::Reason, Expr::value(Option::<String>::None))
        .col_expr(kernels::Column::ReasonCode, Expr::value(Option::<String>::None))
        .col_expr(kernels::Column::Format, Expr::value(format.to_string()))
        .col_expr(kernels::Column::Digest, Expr::value(digest.to_owned()))
        .col_expr(kernels::Column::SizeBytes, Expr::value(total as i64))
        .col_expr(kernels::Column::BytesDone, Expr::value(total as i64))
        .col_expr(kernels::Column::BytesTotal, Expr::value(Some(total as i64)))
        .col_expr(kernels::Column::UpdatedAt, Expr::value(micros(now())))
        .col_expr(kernels::Column::Revision, Expr::col(kernels::Column::Revision).add(1))
        .filter(kernels::Column::Id.eq(&id))
        .filter(kernels::Column::State.eq(from.to_string()))
        .exec(c)
        .await?;
    if res.rows_affected == 0 {
        return Ok(false);
    }
    let rows: Vec<_> = files
        .iter()
        .map(|(a, f)| kernel_artifacts::ActiveModel {
            kernel_id: Set(id.clone()),
            artifact: Set(a.to_string()),
            blob_id: Set(f.blob.to_string()),
            size_bytes: Set(f.size as i64),
            sha256: Set(f.sha256.clone()),
        })
        .collect();
    if !rows.is_empty() {
        kernel_artifacts::Entity::insert_many(rows).exec(c).await?;
    }
    kernel_tags::Entity::delete_many()
        .filter(kernel_tags::Column::KernelId.eq(&id))
        .filter(kernel_tags::Column::Key.eq(reserved::DIGEST))
        .exec(c)
        .await?;
    kernel_tags::Entity::insert(kernel_tags::ActiveModel {
        kernel_id: Set(id.clone()),
        key: Set(reserved::DIGEST.to_owned()),
        value: Set(digest.to_owned()),
        reserved: Set(true),
    })
    .exec(c)
    .await?;
    Ok(true)
}

/// Inside the caller's transaction: an importing kernel becomes `failed` with a stable code and
/// a reason a person can act on.
pub async fn mark_failed_in<C: ConnectionTrait>(
    c: &C,
    kernel: KernelId,
    code: strata_domain::image::ReasonCode,
    reason: &str,
) -> DbResult<()> {
    kernels::Entity::update_many()
        .col_expr(kernels::Column::State, Expr::value(ImageState::Failed.to_string()))
        .col_expr(kernels::Column::Reason, Expr::value(reason.to_owned()))
        .col_expr(kernels::Column::ReasonCode, Expr::value(code.to_string()))
        .col_expr(kernels::Column::UpdatedAt, Expr::value(micros(now())))
        .col_expr(kernels::Column::Revision, Expr::col(kernels::Column::Revision).add(1))
        .filter(kernels::Column::Id.eq(kernel.to_string()))
        .filter(kernels::Column::State.eq(ImageState::Importing.to_string()))
        .exec(c)
        .await?;
    Ok(())
}

/// Publishes a running pull's progress.
pub async fn set_progress(db: &Db, kernel: KernelId, done: u64, total: Option<u64>) -> DbResult<()> {
    kernels::Entity::update_many()
        .col_expr(kernels::Column::BytesDone, Expr::value(done as i64))
        .col_expr(kernels::Column::BytesTotal, Expr::value(total.map(|b| b as i64)))
        .filter(kernels::Column::Id.eq(kernel.to_string()))
        .filter(kernels::Column::State.eq(ImageState::Importing.to_string()))
        .exec(db)
        .await?;
    Ok(())
}

/// The owner of a kernel (`Some(None)`: global) and its region; `None` when it is gone.
pub async fn owner_of<C: ConnectionTrait>(c: &C, kernel: KernelId) -> DbResult<Option<(Option<String>, String)>> {
    let row = kernels::Entity::find_by_id(kernel.to_string()).one(c).await?;
    Ok(row.map(|r| (r.organization_id, r.region_id)))
}

/// (kernel id, blob id) of the stored files of these kernels: blobs the sweeper must keep.
pub async fn artifact_blobs(db: &Db, kernel_ids: Vec<String>) -> DbResult<Vec<(String, String)>> {
    let rows = kernel_artifacts::Entity::find()
        .filter(kernel_artifacts::Column::KernelId.is_in(kernel_ids))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| (r.kernel_id, r.blob_id)).collect())
}

pub enum DeleteOutcome {
    /// Deleted; its stored files can now be removed.
    Deleted(Artifacts),
    Gone,
    Protected,
    /// Referenced: the images (id and owner, `None` for global) that boot with it, and the
    /// registered consumers.
    InUse {
        images: Vec<(String, Option<String>)>,
        consumers: Vec<String>,
    },
    Changed,
}

/// Deletes a kernel unless it is protected or referenced. Both are conditions of the one `DELETE`
/// (`protected = false`, and RESTRICT foreign keys from `images.kernel_id` and consumers), so an
/// image that starts using the kernel concurrently can never be left pointing at nothing.
pub async fn delete(db: &Db, k: &Kernel) -> DbResult<DeleteOutcome> {
    let id = k.id.to_string();
    let txn = db.begin().await?;
    let res = kernels::Entity::delete_many()
        .filter(kernels::Column::Id.eq(&id))
        .filter(kernels::Column::Protected.eq(false))
        .filter(kernels::Column::State.eq(k.status.state.to_string()))
        .exec(&txn)
        .await;
    match res {
        Ok(r) if r.rows_affected == 1 => {
            if let Some(org) = &k.organization_id {
                let bytes = if k.status.state == ImageState::Ready {
                    k.artifacts.total_size()
                } else {
                    0
                };
                // A pull in progress held a concurrent-import slot; its job went with the row.
                let importing = u64::from(k.status.state == ImageState::Importing);
                usage::release(&txn, org.as_str(), k.region_id.as_str(), 0, bytes, importing).await?;
            }
            txn.commit().await?;
            Ok(DeleteOutcome::Deleted(k.artifacts.clone()))
        }
        Ok(_) => {
            drop(txn);
            let still = kernels::Entity::find_by_id(id).one(db).await?;
            Ok(match still {
                None => DeleteOutcome::Gone,
                Some(row) if row.protected => DeleteOutcome::Protected,
                Some(_) => DeleteOutcome::Changed,
            })
        }
        Err(e) if is_fk_violation(&e) => {
            drop(txn);
            let images = images::Entity::find()
                .filter(images::Column::KernelId.eq(&id))
                .order_by_asc(images::Column::Id)
                .all(db)
                .await?
                .into_iter()
                .map(|r| (r.id, r.organization_id))
                .collect();
            let consumers = kernel_consumers::Entity::find()
                .filter(kernel_consumers::Column::KernelId.eq(&id))
                .order_by_asc(kernel_consumers::Column::ConsumerId)
                .all(db)
                .await?
                .into_iter()
                .map(|r| format!("{} {}", r.kind, r.consumer_id))
                .collect();
            Ok(DeleteOutcome::InUse { images, consumers })
        }
        Err(e) => Err(e.into()),
    }
}

/// The digests of `ready` kernels in a region owned by `org` and of global ones, among `digests`:
/// `(is global, digest)`. For the catalog's "already have it" flags.
pub async fn digests_present(
    db: &Db,
    region: &RegionId,
    org: &OrganizationId,
    digests: Vec<String>,
) -> DbResult<Vec<(bool, String)>> {
    if digests.is_empty() {
        return Ok(vec![]);
    }
    let rows = kernels::Entity::find()
        .filter(kernels::Column::RegionId.eq(region.as_str()))
        .filter(
            Condition::any()
                .add(kernels::Column::OrganizationId.eq(org.as_str()))
                .add(kernels::Column::OrganizationId.is_null()),
        )
        .filter(kernels::Column::State.eq(ImageState::Ready.to_string()))
        .filter(kernels::Column::Digest.is_in(digests))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.digest.map(|d| (r.organization_id.is_none(), d)))
        .collect())
}

/// One page of the v2 kernel query, plus whether more follow. The same model as images.
pub async fn query(db: &Db, region: &RegionId, q: &ImageQuery) -> DbResult<(Vec<Kernel>, bool)> {
    use kernels::Column as C;
    let mut sel = kernels::Entity::find().filter(C::RegionId.eq(region.as_str()));
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
        sub.column(kernel_tags::Column::KernelId)
            .from(kernel_tags::Entity)
            .and_where(kernel_tags::Column::Key.eq(&t.key));
        if let Some(v) = &t.value {
            sub.and_where(kernel_tags::Column::Value.eq(v));
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

fn consumer_key(kernel: KernelId, org: &OrganizationId, id: &ConsumerId) -> Condition {
    Condition::all()
        .add(kernel_consumers::Column::KernelId.eq(kernel.to_string()))
        .add(kernel_consumers::Column::OrganizationId.eq(org.as_str()))
        .add(kernel_consumers::Column::ConsumerId.eq(id.as_str()))
}

/// Registers or updates a consumer of a kernel. Returns the row and whether it was created.
pub async fn upsert_consumer(
    db: &Db,
    kernel: KernelId,
    org: &OrganizationId,
    id: &ConsumerId,
    kind: String,
    description: Option<String>,
) -> DbResult<(KernelConsumerRow, bool)> {
    let at = micros(now());
    let row = kernel_consumers::ActiveModel {
        kernel_id: Set(kernel.to_string()),
        organization_id: Set(org.to_string()),
        consumer_id: Set(id.to_string()),
        kind: Set(kind.clone()),
        description: Set(description.clone()),
        created_at: Set(at),
        updated_at: Set(at),
    };
    let created = match kernel_consumers::Entity::insert(row).exec(db).await {
        Ok(_) => true,
        Err(e) if is_fk_violation(&e) => return Err(DomainError::not_found(ResourceKind::Kernel, kernel).into()),
        Err(e) if is_unique_violation(&e) => {
            kernel_consumers::Entity::update_many()
                .col_expr(kernel_consumers::Column::Kind, Expr::value(kind))
                .col_expr(kernel_consumers::Column::Description, Expr::value(description))
                .col_expr(kernel_consumers::Column::UpdatedAt, Expr::value(at))
                .filter(consumer_key(kernel, org, id))
                .exec(db)
                .await?;
            false
        }
        Err(e) => return Err(e.into()),
    };
    let row = kernel_consumers::Entity::find()
        .filter(consumer_key(kernel, org, id))
        .one(db)
        .await?
        .ok_or_else(|| DomainError::not_found(ResourceKind::Consumer, id))?;
    Ok((row, created))
}

/// Consumers of a kernel; `org` narrows to those one organization registered.
pub async fn list_consumers(
    db: &Db,
    kernel: KernelId,
    org: Option<&OrganizationId>,
) -> DbResult<Vec<KernelConsumerRow>> {
    let mut sel = kernel_consumers::Entity::find().filter(kernel_consumers::Column::KernelId.eq(kernel.to_string()));
    if let Some(org) = org {
        sel = sel.filter(kernel_consumers::Column::OrganizationId.eq(org.as_str()));
    }
    Ok(sel
        .order_by_asc(kernel_consumers::Column::OrganizationId)
        .order_by_asc(kernel_consumers::Column::ConsumerId)
        .all(db)
        .await?)
}

pub async fn delete_consumer(db: &Db, kernel: KernelId, org: &OrganizationId, id: &ConsumerId) -> DbResult<bool> {
    let res = kernel_consumers::Entity::delete_many()
        .filter(consumer_key(kernel, org, id))
        .exec(db)
        .await?;
    Ok(res.rows_affected > 0)
}
