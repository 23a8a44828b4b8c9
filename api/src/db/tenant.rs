//! Tenant-scoped repository handles. A handle is built only from an authorised
//! [`OrgRegion`](crate::tenancy::OrgRegion) (which only the extractor makes), and every query it
//! runs carries the region and the organization/visibility condition in its SQL. A service cannot
//! forget the tenant filter: there is no unfiltered method here to call.
//!
//! Images and kernels follow one ownership model (an organization's own, or global, in one
//! region), so one handle serves both through [`OwnedTable`].

use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter};
use strata_domain::ids::{OrganizationId, RegionId};
use strata_domain::image::{Image, Visibility};
use strata_domain::kernel::Kernel;
use strata_domain::query::{ImageQuery, OrgFilter, Sort};

use super::entities::{images, kernels};
use super::{Db, DbResult};
use crate::tenancy::OrgRegion;

/// A table of artifacts owned by an organization or global, in a region.
#[async_trait::async_trait]
pub trait OwnedTable: Send + Sync {
    type Entity: EntityTrait<Model = Self::Model, Column = Self::Column>;
    type Model: sea_orm::ModelTrait<Entity = Self::Entity> + sea_orm::FromQueryResult + Send + Sync;
    type Column: ColumnTrait + Copy;
    type Item: Send;
    const ID: Self::Column;
    const REGION: Self::Column;
    const ORGANIZATION: Self::Column;
    const VISIBILITY: Self::Column;
    const NAME: Self::Column;

    /// Rows to domain values (tags and files loaded alongside).
    async fn hydrate(db: &Db, rows: Vec<Self::Model>) -> DbResult<Vec<Self::Item>>;

    /// One page of the keyset query over this table (the caller has set the tenant filter).
    async fn query(db: &Db, region: &RegionId, q: &ImageQuery) -> DbResult<(Vec<Self::Item>, bool)>;
}

pub struct ImagesTable;
pub struct KernelsTable;

#[async_trait::async_trait]
impl OwnedTable for ImagesTable {
    type Entity = images::Entity;
    type Model = images::Model;
    type Column = images::Column;
    type Item = Image;
    const ID: images::Column = images::Column::Id;
    const REGION: images::Column = images::Column::RegionId;
    const ORGANIZATION: images::Column = images::Column::OrganizationId;
    const VISIBILITY: images::Column = images::Column::Visibility;
    const NAME: images::Column = images::Column::Name;

    async fn hydrate(db: &Db, rows: Vec<images::Model>) -> DbResult<Vec<Image>> {
        super::images::hydrate(db, rows).await
    }

    async fn query(db: &Db, region: &RegionId, q: &ImageQuery) -> DbResult<(Vec<Image>, bool)> {
        super::images::query(db, region, q).await
    }
}

#[async_trait::async_trait]
impl OwnedTable for KernelsTable {
    type Entity = kernels::Entity;
    type Model = kernels::Model;
    type Column = kernels::Column;
    type Item = Kernel;
    const ID: kernels::Column = kernels::Column::Id;
    const REGION: kernels::Column = kernels::Column::RegionId;
    const ORGANIZATION: kernels::Column = kernels::Column::OrganizationId;
    const VISIBILITY: kernels::Column = kernels::Column::Visibility;
    const NAME: kernels::Column = kernels::Column::Name;

    async fn hydrate(db: &Db, rows: Vec<kernels::Model>) -> DbResult<Vec<Kernel>> {
        super::kernels::hydrate(db, rows).await
    }

    async fn query(db: &Db, region: &RegionId, q: &ImageQuery) -> DbResult<(Vec<Kernel>, bool)> {
        super::kernels::query(db, region, q).await
    }
}

/// A global artifact by name in a region: the platform's own (defaults are identified by name).
/// Not tenant data reached by a caller: only the operator's reconciler uses it.
pub async fn global_by_name<T: OwnedTable>(db: &Db, region: &RegionId, name: &str) -> DbResult<Option<T::Item>> {
    let row = T::Entity::find()
        .filter(T::REGION.eq(region.as_str()))
        .filter(T::VISIBILITY.eq(Visibility::Global.to_string()))
        .filter(T::NAME.eq(name))
        .one(db)
        .await?;
    match row {
        Some(r) => Ok(T::hydrate(db, vec![r]).await?.pop()),
        None => Ok(None),
    }
}

/// The artifacts of one table one organization reaches in one region.
pub struct OrgScoped<'a, T> {
    db: &'a Db,
    region: &'a RegionId,
    org: &'a OrganizationId,
    platform_admin: bool,
    _table: std::marker::PhantomData<T>,
}

/// The images one organization reaches in one region.
pub type OrgImages<'a> = OrgScoped<'a, ImagesTable>;
/// The kernels one organization reaches in one region.
pub type OrgKernels<'a> = OrgScoped<'a, KernelsTable>;

impl<'a, T: OwnedTable> OrgScoped<'a, T> {
    pub fn new<S>(db: &'a Db, access: &'a OrgRegion<S>) -> Self {
        Self {
            db,
            region: access.region_id(),
            org: &access.org,
            platform_admin: access.principal.platform_admin,
            _table: std::marker::PhantomData,
        }
    }

    /// Its own and the global ones (`visible_to`, in SQL).
    fn visible(&self) -> Condition {
        Condition::all().add(T::REGION.eq(self.region.as_str())).add(
            Condition::any()
                .add(T::ORGANIZATION.eq(self.org.as_str()))
                .add(T::VISIBILITY.eq(Visibility::Global.to_string())),
        )
    }

    /// Its own, and global ones for platform admins (`modifiable_by`, in SQL).
    fn modifiable(&self) -> Condition {
        let mut who = Condition::any().add(
            Condition::all()
                .add(T::VISIBILITY.eq(Visibility::Organization.to_string()))
                .add(T::ORGANIZATION.eq(self.org.as_str())),
        );
        if self.platform_admin {
            who = who.add(T::VISIBILITY.eq(Visibility::Global.to_string()));
        }
        Condition::all().add(T::REGION.eq(self.region.as_str())).add(who)
    }

    async fn one(&self, id: uuid::Uuid, cond: Condition) -> DbResult<Option<T::Item>> {
        let row = T::Entity::find()
            .filter(T::ID.eq(id.to_string()))
            .filter(cond)
            .one(self.db)
            .await?;
        match row {
            Some(r) => Ok(T::hydrate(self.db, vec![r]).await?.pop()),
            None => Ok(None),
        }
    }

    /// The artifact if this organization may see it; `None` otherwise (also across regions).
    pub async fn find_visible(&self, id: uuid::Uuid) -> DbResult<Option<T::Item>> {
        self.one(id, self.visible()).await
    }

    /// The artifact if this caller may change it; `None` otherwise, also when only visible.
    pub async fn find_modifiable(&self, id: uuid::Uuid) -> DbResult<Option<T::Item>> {
        self.one(id, self.modifiable()).await
    }
}

impl<T: OwnedTable> OrgScoped<'_, T> {
    /// The v2 query for this organization's own (and, with `include_global`, the global ones)
    /// by name: the v1 lists' pages. Add a cursor with `after` before [`Self::page`].
    pub fn by_name(&self, include_global: bool, limit: u32) -> ImageQuery {
        ImageQuery {
            organizations: OrgFilter::Only(vec![self.org.clone()]),
            include_global,
            states: vec![],
            name: None,
            architecture: None,
            kind: None,
            tags: vec![],
            sort: Sort::Name,
            limit,
            after: None,
        }
    }

    /// One page of `q`, plus whether more follow. Whatever organizations `q` names, it reads only
    /// this organization's own and the global ones: the tenant filter is set here.
    pub async fn page(&self, q: &ImageQuery) -> DbResult<(Vec<T::Item>, bool)> {
        let q = ImageQuery {
            organizations: OrgFilter::Only(vec![self.org.clone()]),
            ..q.clone()
        };
        T::query(self.db, self.region, &q).await
    }
}
