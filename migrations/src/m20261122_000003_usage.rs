//! Per (organization, region) usage counters. Quotas are enforced by conditional updates of this
//! row, so concurrent creates on any number of replicas cannot overshoot a limit.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OrgUsage {
    Table,
    OrganizationId,
    RegionId,
    Images,
    Bytes,
    Importing,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OrgUsage::Table)
                    .col(string_len(OrgUsage::OrganizationId, 128))
                    .col(string_len(OrgUsage::RegionId, 128))
                    .col(big_integer(OrgUsage::Images))
                    .col(big_integer(OrgUsage::Bytes))
                    .col(big_integer(OrgUsage::Importing))
                    .primary_key(Index::create().col(OrgUsage::OrganizationId).col(OrgUsage::RegionId))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OrgUsage::Table).to_owned())
            .await
    }
}
