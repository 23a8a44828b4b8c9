//! Consumers: who uses an image. Rows reference the image with a RESTRICT foreign key.

use crate::db::Db;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use strata_domain::ids::{ConsumerId, ImageId, OrganizationId};
use strata_domain::{DomainError, ResourceKind};

use super::DbResult;
use super::entities::image_consumers;
use super::{is_fk_violation, is_unique_violation, micros, now};

pub use image_consumers::Model as ConsumerRow;

pub struct NewConsumer<'a> {
    pub image: ImageId,
    pub org: &'a OrganizationId,
    pub id: &'a ConsumerId,
    pub kind: String,
    pub description: Option<String>,
}

/// Registers or updates a consumer. Returns the row and whether it was created.
pub async fn upsert(db: &Db, c: NewConsumer<'_>) -> DbResult<(ConsumerRow, bool)> {
    let at = micros(now());
    let row = image_consumers::ActiveModel {
        image_id: Set(c.image.to_string()),
        organization_id: Set(c.org.to_string()),
        consumer_id: Set(c.id.to_string()),
        kind: Set(c.kind.clone()),
        description: Set(c.description.clone()),
        created_at: Set(at),
        updated_at: Set(at),
    };
    match image_consumers::Entity::insert(row).exec(db).await {
        Ok(_) => {}
        Err(e) if is_fk_violation(&e) => return Err(DomainError::not_found(ResourceKind::Image, c.image).into()),
        Err(e) if is_unique_violation(&e) => {
            image_consumers::Entity::update_many()
                .col_expr(
                    image_consumers::Column::Kind,
                    sea_orm::sea_query::Expr::value(c.kind.clone()),
                )
                .col_expr(
                    image_consumers::Column::Description,
                    sea_orm::sea_query::Expr::value(c.description.clone()),
                )
                .col_expr(image_consumers::Column::UpdatedAt, sea_orm::sea_query::Expr::value(at))
                .filter(key(c.image, c.org, c.id))
                .exec(db)
                .await?;
            let row = get(db, c.image, c.org, c.id)
                .await?
                .ok_or_else(|| DomainError::not_found(ResourceKind::Consumer, c.id))?;
            return Ok((row, false));
        }
        Err(e) => return Err(e.into()),
    }
    let row = get(db, c.image, c.org, c.id)
        .await?
        .ok_or_else(|| DomainError::not_found(ResourceKind::Consumer, c.id))?;
    Ok((row, true))
}

fn key(image: ImageId, org: &OrganizationId, id: &ConsumerId) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(image_consumers::Column::ImageId.eq(image.to_string()))
        .add(image_consumers::Column::OrganizationId.eq(org.as_str()))
        .add(image_consumers::Column::ConsumerId.eq(id.as_str()))
}

async fn get(db: &Db, image: ImageId, org: &OrganizationId, id: &ConsumerId) -> DbResult<Option<ConsumerRow>> {
    Ok(image_consumers::Entity::find()
        .filter(key(image, org, id))
        .one(db)
        .await?)
}

/// Consumers of an image; `org` narrows to those one organization registered.
pub async fn list(db: &Db, image: ImageId, org: Option<&OrganizationId>) -> DbResult<Vec<ConsumerRow>> {
    let mut sel = image_consumers::Entity::find().filter(image_consumers::Column::ImageId.eq(image.to_string()));
    if let Some(org) = org {
        sel = sel.filter(image_consumers::Column::OrganizationId.eq(org.as_str()));
    }
    Ok(sel
        .order_by_asc(image_consumers::Column::OrganizationId)
        .order_by_asc(image_consumers::Column::ConsumerId)
        .all(db)
        .await?)
}

pub async fn delete(db: &Db, image: ImageId, org: &OrganizationId, id: &ConsumerId) -> DbResult<bool> {
    let res = image_consumers::Entity::delete_many()
        .filter(key(image, org, id))
        .exec(db)
        .await?;
    Ok(res.rows_affected > 0)
}
