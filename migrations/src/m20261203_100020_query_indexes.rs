//! Indexes for the v2 query at scale (issue 10). Each query shape has an index whose equality
//! prefix and order match it, so that PostgreSQL walks it in sort order and stops after one page,
//! whatever the bound parameters and whatever the statistics say:
//! - per organization (one branch per organization of the query), by name and by creation;
//! - global images by creation (by name: `images_global_name`);
//! - by state and by architecture across organizations (a platform admin's filters), both sorts.
//!
//! Tag filters need no new index: they probe `image_tags`' primary key `(image_id, key)` from the
//! image at hand.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEXES: &[(&str, &str)] = &[
    (
        "images_region_org_name_id",
        "images (region_id, organization_id, name, id)",
    ),
    (
        "images_global_created_id",
        "images (region_id, created_at, id) WHERE organization_id IS NULL",
    ),
    ("images_region_state_name_id", "images (region_id, state, name, id)"),
    (
        "images_region_state_created_id",
        "images (region_id, state, created_at, id)",
    ),
    (
        "images_region_arch_name_id",
        "images (region_id, architecture, name, id)",
    ),
    (
        "images_region_arch_created_id",
        "images (region_id, architecture, created_at, id)",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // Plain SQL: SQLite and PostgreSQL both accept it, partial indexes included.
        for (name, on) in INDEXES {
            db.execute_unprepared(&format!("CREATE INDEX IF NOT EXISTS {name} ON {on}"))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, _) in INDEXES {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}")).await?;
        }
        Ok(())
    }
}
