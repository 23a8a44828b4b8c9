//! Docker identities and tags of an organization's images in one region (the Docker Engine API
//! subset). A handle is built only from an authorised `OrgRegion`, and every query carries the
//! region and organization in its SQL, as [`super::tenant`] does for images.

use std::collections::BTreeMap;

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use strata_domain::ids::{ImageId, OrganizationId, RegionId};
use strata_domain::image::Image;

use super::entities::{docker_images, docker_tags};
use super::{Db, DbResult, micros, now};
use crate::tenancy::OrgRegion;

/// A loaded image as Docker sees it.
#[derive(Debug, Clone)]
pub struct DockerImage {
    pub image: Image,
    /// `sha256:<hex>`.
    pub docker_id: String,
    /// The image config as loaded.
    pub config: String,
    /// Unix seconds, from the config.
    pub created: i64,
    /// Normalised references (`docker.io/library/alpine:3.19`), sorted.
    pub tags: Vec<String>,
}

pub struct OrgDocker<'a> {
    db: &'a Db,
    region: &'a RegionId,
    org: &'a OrganizationId,
}

impl<'a> OrgDocker<'a> {
    pub fn new<S>(db: &'a Db, access: &'a OrgRegion<S>) -> Self {
        Self {
            db,
            region: access.region_id(),
            org: &access.org,
        }
    }

    fn mine_images(&self) -> sea_orm::Condition {
        sea_orm::Condition::all()
            .add(docker_images::Column::RegionId.eq(self.region.as_str()))
            .add(docker_images::Column::OrganizationId.eq(self.org.as_str()))
    }

    fn mine_tags(&self) -> sea_orm::Condition {
        sea_orm::Condition::all()
            .add(docker_tags::Column::RegionId.eq(self.region.as_str()))
            .add(docker_tags::Column::OrganizationId.eq(self.org.as_str()))
    }

    async fn hydrate(&self, rows: Vec<docker_images::Model>) -> DbResult<Vec<DockerImage>> {
        if rows.is_empty() {
            return Ok(vec![]);
        }
        let ids: Vec<String> = rows.iter().map(|r| r.image_id.clone()).collect();
        let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in docker_tags::Entity::find()
            .filter(self.mine_tags())
            .filter(docker_tags::Column::ImageId.is_in(ids.clone()))
            .order_by_asc(docker_tags::Column::Reference)
            .all(self.db)
            .await?
        {
            tags.entry(t.image_id).or_default().push(t.reference);
        }
        let image_rows = super::entities::images::Entity::find()
            .filter(super::entities::images::Column::Id.is_in(ids))
            .all(self.db)
            .await?;
        let mut images: BTreeMap<String, Image> = super::images::hydrate(self.db, image_rows)
            .await?
            .into_iter()
            .map(|i| (i.id.to_string(), i))
            .collect();
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let image = images.remove(&r.image_id)?;
                Some(DockerImage {
                    tags: tags.remove(&r.image_id).unwrap_or_default(),
                    image,
                    docker_id: r.docker_id,
                    config: r.config,
                    created: r.created_at,
                })
            })
            .collect())
    }

    /// Every loaded image, newest first.
    pub async fn list(&self) -> DbResult<Vec<DockerImage>> {
        let rows = docker_images::Entity::find()
            .filter(self.mine_images())
            .order_by_desc(docker_images::Column::CreatedAt)
            .order_by_asc(docker_images::Column::DockerId)
            .all(self.db)
            .await?;
        self.hydrate(rows).await
    }

    pub async fn by_id(&self, docker_id: &str) -> DbResult<Option<DockerImage>> {
        let rows = docker_images::Entity::find()
            .filter(self.mine_images())
            .filter(docker_images::Column::DockerId.eq(docker_id))
            .all(self.db)
            .await?;
        Ok(self.hydrate(rows).await?.pop())
    }

    /// Images whose id starts with `sha256:<hex_prefix>` (the caller decides about ambiguity).
    pub async fn by_id_prefix(&self, hex_prefix: &str) -> DbResult<Vec<DockerImage>> {
        let rows = docker_images::Entity::find()
            .filter(self.mine_images())
            .filter(docker_images::Column::DockerId.starts_with(format!("sha256:{hex_prefix}")))
            .all(self.db)
            .await?;
        self.hydrate(rows).await
    }

    pub async fn by_reference(&self, reference: &str) -> DbResult<Option<DockerImage>> {
        let tag = docker_tags::Entity::find()
            .filter(self.mine_tags())
            .filter(docker_tags::Column::Reference.eq(reference))
            .one(self.db)
            .await?;
        let Some(tag) = tag else { return Ok(None) };
        let rows = docker_images::Entity::find()
            .filter(self.mine_images())
            .filter(docker_images::Column::ImageId.eq(tag.image_id))
            .all(self.db)
            .await?;
        Ok(self.hydrate(rows).await?.pop())
    }

    /// Points `reference` at `image`, taking it from whichever image held it: one conditional
    /// write (an upsert on the tag's key), so concurrent moves leave exactly one holder.
    pub async fn move_tag(&self, reference: &str, image: ImageId) -> DbResult<()> {
        move_tag_in(self.db, self.region, self.org, reference, image).await
    }

    /// Removes a tag. False: it did not exist.
    pub async fn untag(&self, reference: &str) -> DbResult<bool> {
        let res = docker_tags::Entity::delete_many()
            .filter(self.mine_tags())
            .filter(docker_tags::Column::Reference.eq(reference))
            .exec(self.db)
            .await?;
        Ok(res.rows_affected == 1)
    }
}

/// A stored reference as clients name it (`ubuntu:24.04`, not `docker.io/library/ubuntu:24.04`).
pub(super) fn familiar(reference: &str) -> String {
    strata_domain::reference::Reference::parse(reference).map_or_else(|_| reference.to_owned(), |r| r.familiar())
}

/// The Docker tags (familiar form, sorted) of these images, by image id.
pub async fn tags_of<C: ConnectionTrait>(c: &C, image_ids: Vec<String>) -> DbResult<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if image_ids.is_empty() {
        return Ok(out);
    }
    for chunk in image_ids.chunks(500) {
        for t in docker_tags::Entity::find()
            .filter(docker_tags::Column::ImageId.is_in(chunk.to_vec()))
            .order_by_asc(docker_tags::Column::Reference)
            .all(c)
            .await?
        {
            out.entry(t.image_id).or_default().push(familiar(&t.reference));
        }
    }
    Ok(out)
}

pub async fn move_tag_in<C: ConnectionTrait>(
    c: &C,
    region: &RegionId,
    org: &OrganizationId,
    reference: &str,
    image: ImageId,
) -> DbResult<()> {
    docker_tags::Entity::insert(docker_tags::ActiveModel {
        region_id: Set(region.to_string()),
        organization_id: Set(org.to_string()),
        reference: Set(reference.to_owned()),
        image_id: Set(image.to_string()),
        updated_at: Set(micros(now())),
    })
    .on_conflict(
        OnConflict::columns([
            docker_tags::Column::RegionId,
            docker_tags::Column::OrganizationId,
            docker_tags::Column::Reference,
        ])
        .update_columns([docker_tags::Column::ImageId, docker_tags::Column::UpdatedAt])
        .to_owned(),
    )
    .exec(c)
    .await?;
    Ok(())
}

/// What a load records beside the new image.
pub struct NewDockerImage<'a> {
    pub docker_id: &'a str,
    pub config: &'a str,
    pub created: i64,
}

/// Inside the caller's transaction (the one that inserts the image): the Docker identity. False:
/// the organization already has an image with this id in the region (a concurrent load of the
/// same archive won); the transaction is spoiled and must be dropped.
pub async fn insert_identity_in<C: ConnectionTrait>(c: &C, img: &Image, d: &NewDockerImage<'_>) -> DbResult<bool> {
    let org = img
        .organization_id
        .as_ref()
        .ok_or_else(|| super::DbError::corrupt(anyhow::anyhow!("a loaded image without an organization")))?;
    let res = docker_images::Entity::insert(docker_images::ActiveModel {
        image_id: Set(img.id.to_string()),
        organization_id: Set(org.to_string()),
        region_id: Set(img.region_id.to_string()),
        docker_id: Set(d.docker_id.to_owned()),
        config: Set(d.config.to_owned()),
        created_at: Set(d.created),
    })
    .exec(c)
    .await;
    match res {
        Ok(_) => Ok(true),
        Err(e) if super::is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
