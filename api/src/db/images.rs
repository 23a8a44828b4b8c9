//! The image repository.

use crate::db::Db;
use std::collections::BTreeMap;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QueryResult, QuerySelect, Statement,
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
        docker_tags: Vec::new(),
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
    refresh_tag_set(c, &id).await
}

/// Between the tags of `images.tag_set` (migration `m20261204_100010_image_tag_set`): a control
/// character, which no tag value may contain.
const TAG_SET_SEPARATOR: char = '\u{1f}';

/// Rewrites `images.tag_set` from the image's rows in `image_tags`, and marks it current for the
/// image's revision; called in the transaction that wrote them (after any revision bump), so the
/// prefilter never lags the tags.
async fn refresh_tag_set<C: ConnectionTrait>(c: &C, id: &str) -> Result<(), sea_orm::DbErr> {
    let mut sql = Sql::new(c.get_database_backend());
    let sep = TAG_SET_SEPARATOR.to_string();
    // string_agg: PostgreSQL, and SQLite since 3.44 (the bundled one is 3.51).
    sql.push("UPDATE images SET tag_set = COALESCE((SELECT ")
        .bind(sep.clone())
        .push(" || string_agg(image_tags.\"key\" || '=' || image_tags.\"value\", ")
        .bind(sep.clone())
        .push(") || ")
        .bind(sep.clone())
        .push(" FROM image_tags WHERE image_tags.image_id = ")
        .bind(id.to_owned())
        .push("), ")
        .bind(sep)
        .push("), tag_set_revision = revision WHERE id = ")
        .bind(id.to_owned());
    c.execute_raw(sql.statement()).await?;
    Ok(())
}

/// After a revision bump that leaves the tags alone: `tag_set` stays in use if it was current.
pub(super) async fn tag_set_follows_revision<C: ConnectionTrait>(c: &C, id: &str) -> Result<(), sea_orm::DbErr> {
    let mut sql = Sql::new(c.get_database_backend());
    sql.push("UPDATE images SET tag_set_revision = revision WHERE id = ")
        .bind(id.to_owned())
        .push(" AND tag_set_revision = revision - 1");
    c.execute_raw(sql.statement()).await?;
    Ok(())
}

/// What `images.tag_set` contains when the image has the tag `filter` (any value when it has none).
fn tag_set_needle(filter: &strata_domain::tags::TagFilter) -> String {
    let sep = TAG_SET_SEPARATOR;
    match &filter.value {
        Some(v) => format!("{sep}{}={v}{sep}", filter.key),
        None => format!("{sep}{}=", filter.key),
    }
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
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut tags = load_user_tags(c, ids.clone()).await?;
    let mut docker = super::docker::tags_of(c, ids).await?;
    rows.into_iter()
        .map(|r| {
            let t = tags.remove(&r.id).unwrap_or_default();
            let d = docker.remove(&r.id).unwrap_or_default();
            from_row(r, t)
                .map(|mut i| {
                    i.docker_tags = d;
                    i
                })
                .map_err(DbError::Corrupt)
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
    refresh_tag_set(txn, &id.to_string()).await?;
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

/// One page of the v2 query, plus whether more follow: one statement, one round trip (the
/// page's tags come with its rows).
pub async fn query(db: &Db, region: &RegionId, q: &ImageQuery) -> DbResult<(Vec<Image>, bool)> {
    let Some(stmt) = query_statement(db.get_database_backend(), region, q) else {
        return Ok((vec![], false));
    };
    let mut rows = PageRow::find_by_statement(stmt).all(db).await?;
    let more = rows.len() > q.limit as usize;
    rows.truncate(q.limit as usize);
    let images = rows.into_iter().map(PageRow::into_image).collect::<DbResult<_>>()?;
    Ok((images, more))
}

/// A row of the v2 statement: the image and, as JSON text, its user tags (an object) and its
/// docker tags (an array of references in order); NULL when it has none.
struct PageRow {
    image: images::Model,
    user_tags: Option<String>,
    docker_tags: Option<String>,
}

impl FromQueryResult for PageRow {
    fn from_query_result(res: &QueryResult, pre: &str) -> Result<Self, sea_orm::DbErr> {
        Ok(PageRow {
            image: images::Model::from_query_result(res, pre)?,
            user_tags: res.try_get(pre, USER_TAGS)?,
            docker_tags: res.try_get(pre, DOCKER_TAGS)?,
        })
    }
}

impl PageRow {
    fn into_image(self) -> DbResult<Image> {
        let corrupt = |what: &str, e: serde_json::Error| DbError::Corrupt(anyhow::anyhow!("bad {what} in row: {e}"));
        let tags: BTreeMap<String, String> = match self.user_tags.as_deref() {
            Some(json) => serde_json::from_str(json).map_err(|e| corrupt("user tags", e))?,
            None => BTreeMap::new(),
        };
        let docker: Vec<String> = match self.docker_tags.as_deref() {
            Some(json) => serde_json::from_str(json).map_err(|e| corrupt("docker tags", e))?,
            None => Vec::new(),
        };
        let mut img = from_row(self.image, tags).map_err(DbError::Corrupt)?;
        img.docker_tags = docker.iter().map(|r| super::docker::familiar(r)).collect();
        Ok(img)
    }
}

/// The columns the v2 statement adds to each image row.
const USER_TAGS: &str = "strata_user_tags";
const DOCKER_TAGS: &str = "strata_docker_tags";

/// SQL text with its bound values, in the placeholder style of the backend.
struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<sea_orm::Value>,
}

impl Sql {
    fn new(backend: DbBackend) -> Self {
        Sql {
            backend,
            text: String::new(),
            values: Vec::new(),
        }
    }

    fn statement(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }

    fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    fn bind(&mut self, v: impl Into<sea_orm::Value>) -> &mut Self {
        self.values.push(v.into());
        let n = self.values.len();
        match self.backend {
            DbBackend::Postgres => self.text.push_str(&format!("${n}")),
            _ => self.text.push_str(&format!("?{n}")),
        }
        self
    }
}

/// Whose images one branch of the query reads.
enum Who<'a> {
    Anyone,
    AnyOrganization,
    Organization(&'a OrganizationId),
    Global,
    /// Many organizations (and, with the flag, global images) in one index read: past
    /// [`MAX_BRANCHES`] planning a branch each costs more than the bitmap read and sort of
    /// their images.
    Organizations(&'a [OrganizationId], bool),
}

/// Organizations a query reads in branches of their own, one walk each.
const MAX_BRANCHES: usize = 8;

/// The v2 query as the one statement Strata sends (public for the plan test); `None` when
/// nothing can match. Its form fixes the plan on PostgreSQL, whatever the bound parameters
/// (a prepared statement gets a generic plan after five runs) and whatever the statistics:
/// - one `UNION ALL` branch per organization asked for (up to [`MAX_BRANCHES`]; more are read
///   together through the organization index) and one for global images, each an
///   index walk in sort order (`images_region_org_name_id` and friends) that PostgreSQL merges,
///   so no branch reads more than a page; `state` and `architecture` have their own sorted
///   indexes for queries across organizations;
/// - a tag filter is a scalar subquery probing `image_tags`' primary key for the row at hand:
///   unlike `IN (SELECT ...)` or `EXISTS`, it cannot become a join over every row of a tag; all of
///   them sit in one `COALESCE`, which the planner estimates at one half whatever its statistics
///   say, so the walk in sort order never looks dearer than reading everything to sort it;
/// - the keyset cursor is a row comparison, which bounds the index walk instead of filtering it;
/// - `LIMIT` is a literal (a validated number): with a bound limit the generic plan would
///   assume a tenth of the table is wanted.
pub fn query_statement(backend: DbBackend, region: &RegionId, q: &ImageQuery) -> Option<Statement> {
    let branches: Vec<Who> = match (&q.organizations, q.include_global) {
        (OrgFilter::Any, true) => vec![Who::Anyone],
        (OrgFilter::Any, false) => vec![Who::AnyOrganization],
        (OrgFilter::Only(orgs), global) if orgs.len() > MAX_BRANCHES => vec![Who::Organizations(orgs, global)],
        (OrgFilter::Only(orgs), global) => orgs
            .iter()
            .map(Who::Organization)
            .chain(global.then_some(Who::Global))
            .collect(),
    };
    if branches.is_empty() {
        return None;
    }
    let mut sql = Sql::new(backend);
    // PostgreSQL computes the tag columns of the top-level select list after its sort and
    // `LIMIT` (it postpones expensive expressions); SQLite would compute them for every row it
    // sorts, so there the page is a subquery and the columns are added outside it.
    let flat = backend == DbBackend::Postgres;
    let merged = branches.len() > 1;
    if !flat {
        sql.push(&page_columns(backend, "p")).push(" FROM (");
    }
    if merged {
        if flat {
            sql.push(&page_columns(backend, "u"));
        } else {
            sql.push("SELECT *");
        }
        sql.push(" FROM (");
    }
    for (i, who) in branches.iter().enumerate() {
        if i > 0 {
            sql.push(" UNION ALL ");
        }
        if flat && !merged {
            sql.push(&page_columns(backend, "images"));
        } else {
            sql.push("SELECT *");
        }
        sql.push(" FROM images WHERE region_id = ").bind(region.as_str());
        match who {
            Who::Anyone => {}
            Who::AnyOrganization => {
                sql.push(" AND organization_id IS NOT NULL");
            }
            Who::Organization(org) => {
                sql.push(" AND organization_id = ").bind(org.as_str());
            }
            Who::Global => {
                sql.push(" AND organization_id IS NULL");
            }
            Who::Organizations(orgs, global) => {
                sql.push(" AND (organization_id IN (");
                for (i, org) in orgs.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.bind(org.as_str());
                }
                sql.push(if *global { ") OR organization_id IS NULL)" } else { "))" });
            }
        }
        push_filters(&mut sql, q);
    }
    if merged {
        sql.push(") AS u");
    }
    let order = match q.sort {
        Sort::Name => " ORDER BY name, id",
        Sort::CreatedAt => " ORDER BY created_at, id",
        Sort::CreatedAtDesc => " ORDER BY created_at DESC, id DESC",
    };
    sql.push(order);
    sql.push(&format!(" LIMIT {}", u64::from(q.limit) + 1));
    if !flat {
        sql.push(") AS p").push(order);
    }
    Some(sql.statement())
}

/// The select list of the v2 statement: the image row of `table` with its user tags and docker
/// tags as JSON text, each read through an index on `image_id` for the page's rows only (see
/// [`query_statement`] for where each backend computes them).
fn page_columns(backend: DbBackend, table: &str) -> String {
    let (object, array) = match backend {
        DbBackend::Postgres => ("json_object_agg", "json_agg"),
        _ => ("json_group_object", "json_group_array"),
    };
    format!(
        "SELECT {table}.*, \
         (SELECT CAST({object}(image_tags.\"key\", image_tags.\"value\") AS TEXT) FROM image_tags \
          WHERE image_tags.image_id = {table}.id AND NOT image_tags.reserved) AS {USER_TAGS}, \
         (SELECT CAST({array}(docker_tags.reference ORDER BY docker_tags.reference) AS TEXT) FROM docker_tags \
          WHERE docker_tags.image_id = {table}.id) AS {DOCKER_TAGS}"
    )
}

/// The conditions every branch shares: state, name, architecture, tags and the cursor.
fn push_filters(sql: &mut Sql, q: &ImageQuery) {
    match q.states.as_slice() {
        [] => {}
        [one] => {
            sql.push(" AND state = ").bind(one.to_string());
        }
        many => {
            sql.push(" AND state IN (");
            for (i, s) in many.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.bind(s.to_string());
            }
            sql.push(")");
        }
    }
    if let Some(name) = &q.name {
        sql.push(" AND name = ").bind(name.as_str());
    }
    if let Some(arch) = q.architecture {
        sql.push(" AND architecture = ").bind(arch.to_string());
    }
    if let Some(kind) = q.kind {
        sql.push(" AND kind = ").bind(kind.to_string());
    }
    // All tag probes in one COALESCE: PostgreSQL estimates an expression it cannot see into at
    // one half, whatever the statistics say about the tag, so a walk in sort order always looks
    // (and is) cheaper than reading every image to sort them. Each tag is first looked for in the
    // row's own `tag_set` (a NULL one is not known and passes), and only the images that pass
    // every such test are probed in `image_tags`: a rare combination costs an in-row string
    // search per image walked past, not a probe.
    if !q.tags.is_empty() {
        let find = match sql.backend {
            DbBackend::Postgres => "strpos",
            _ => "instr",
        };
        sql.push(" AND COALESCE(");
        for t in &q.tags {
            sql.push(&format!(
                "COALESCE(CASE WHEN images.tag_set_revision = images.revision THEN {find}(images.tag_set, "
            ))
            .bind(tag_set_needle(t))
            .push(") > 0 END, true) AND ");
        }
        for (i, t) in q.tags.iter().enumerate() {
            if i > 0 {
                sql.push(" AND ");
            }
            let probe = " FROM image_tags WHERE image_tags.image_id = images.id AND image_tags.\"key\" = ";
            match &t.value {
                Some(v) => {
                    sql.push("(SELECT image_tags.\"value\"")
                        .push(probe)
                        .bind(t.key.as_str())
                        .push(") = ")
                        .bind(v.as_str());
                }
                None => {
                    sql.push("(SELECT 1")
                        .push(probe)
                        .bind(t.key.as_str())
                        .push(") IS NOT NULL");
                }
            }
        }
        sql.push(", false)");
    }
    match (&q.after, q.sort) {
        (None, _) => {}
        (Some(Cursor::Name { name, id }), _) => {
            sql.push(" AND (name, id) > (")
                .bind(name.as_str())
                .push(", ")
                .bind(id.to_string())
                .push(")");
        }
        (Some(Cursor::CreatedAt { at, id }), Sort::CreatedAtDesc) => {
            sql.push(" AND (created_at, id) < (")
                .bind(micros(*at))
                .push(", ")
                .bind(id.to_string())
                .push(")");
        }
        (Some(Cursor::CreatedAt { at, id }), _) => {
            sql.push(" AND (created_at, id) > (")
                .bind(micros(*at))
                .push(", ")
                .bind(id.to_string())
                .push(")");
        }
    }
}
