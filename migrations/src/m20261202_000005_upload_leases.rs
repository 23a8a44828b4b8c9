//! Uploads in flight: one row per image being uploaded, with an expiry the uploading process
//! renews while it streams. The primary key makes a second upload to the same image fail at once;
//! counting an organization's live rows bounds its concurrent uploads across every replica. A
//! process that dies stops renewing, and its rows lapse.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UploadLeases {
    Table,
    ImageId,
    OrganizationId,
    Holder,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UploadLeases::Table)
                    .col(string_len(UploadLeases::ImageId, 36).primary_key())
                    .col(string_len(UploadLeases::OrganizationId, 128))
                    .col(string_len(UploadLeases::Holder, 36))
                    .col(big_integer(UploadLeases::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("upload_leases_org")
                    .table(UploadLeases::Table)
                    .col(UploadLeases::OrganizationId)
                    .col(UploadLeases::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(UploadLeases::Table).to_owned())
            .await
    }
}
