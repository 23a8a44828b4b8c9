//! Tenant-scoped repository handles. A handle is built only from an authorised
//! [`OrgRegion`](crate::tenancy::OrgRegion) (which only the extractor makes), and every query it
//! runs carries the region and the organization/visibility condition in its SQL. A service cannot
//! forget the tenant filter: there is no unfiltered method here to call.

use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter};
use strata_domain::ids::{ImageId, OrganizationId, RegionId};
use strata_domain::image::{Image, Visibility};
use strata_domain::query::{ImageQuery, OrgFilter, Sort};

use super::entities::images;
use super::{Db, DbResult};
use crate::tenancy::OrgRegion;

/// The images one organization reaches in one region.
pub struct OrgImages<'a> {
    db: &'a Db,
    region: &'a RegionId,
    org: &'a OrganizationId,
    platform_admin: bool,
}

impl<'a> OrgImages<'a> {
    pub fn new<S>(db: &'a Db, access: &'a OrgRegion<S>) -> Self {
        Self {
            db,
            region: access.region_id(),
            org: &access.org,
            platform_admin: access.principal.platform_admin,
        }
    }

    /// Its own images and the global ones (`Image::visible_to`, in SQL).
    fn visible(&self) -> Condition {
        Condition::all()
            .add(images::Column::RegionId.eq(self.region.as_str()))
            .add(
                Condition::any()
                    .add(images::Column::OrganizationId.eq(self.org.as_str()))
                    .add(images::Column::Visibility.eq(Visibility::Global.to_string())),
            )
    }

    /// Its own images, and global ones for platform admins (`Image::modifiable_by`, in SQL).
    fn modifiable(&self) -> Condition {
        let mut who = Condition::any().add(
            Condition::all()
                .add(images::Column::Visibility.eq(Visibility::Organization.to_string()))
                .add(images::Column::OrganizationId.eq(self.org.as_str())),
        );
        if self.platform_admin {
            who = who.add(images::Column::Visibility.eq(Visibility::Global.to_string()));
        }
        Condition::all()
            .add(images::Column::RegionId.eq(self.region.as_str()))
            .add(who)
    }

    async fn one(&self, id: ImageId, cond: Condition) -> DbResult<Option<Image>> {
        let row = images::Entity::find_by_id(id.to_string())
            .filter(cond)
            .one(self.db)
            .await?;
        match row {
            Some(r) => Ok(super::images::hydrate(self.db, vec![r]).await?.pop()),
            None => Ok(None),
        }
    }

    /// The image if this organization may see it; `None` otherwise (also across regions).
    pub async fn find_visible(&self, id: ImageId) -> DbResult<Option<Image>> {
        self.one(id, self.visible()).await
    }

    /// The image if this caller may change it; `None` otherwise, also when it is only visible.
    pub async fn find_modifiable(&self, id: ImageId) -> DbResult<Option<Image>> {
        self.one(id, self.modifiable()).await
    }

    /// The v2 query for this organization's images (and, with `include_global`, the global
    /// ones) by name: the v1 list's pages. Add a cursor with `after` before [`Self::page`].
    pub fn by_name(&self, include_global: bool, limit: u32) -> ImageQuery {
        ImageQuery {
            organizations: OrgFilter::Only(vec![self.org.clone()]),
            include_global,
            states: vec![],
            name: None,
            architecture: None,
            tags: vec![],
            sort: Sort::Name,
            limit,
            after: None,
        }
    }

    /// One page of `q`, plus whether more follow. Whatever organizations `q` names, it reads only
    /// this organization's images and the global ones: the tenant filter is set here.
    pub async fn page(&self, q: &ImageQuery) -> DbResult<(Vec<Image>, bool)> {
        let q = ImageQuery {
            organizations: OrgFilter::Only(vec![self.org.clone()]),
            ..q.clone()
        };
        super::images::query(self.db, self.region, &q).await
    }
}
