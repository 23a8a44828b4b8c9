//! Import jobs: one row per image being imported by the server, claimed with a lease so that
//! exactly one process works on it even when several replicas share the database.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ImportJobs {
    Table,
    ImageId,
    RegionId,
    Url,
    HasCredentials,
    Attempt,
    MaxAttempts,
    LeaseOwner,
    LeaseExpiresAt,
    BlobId,
    LastError,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Images {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ImportJobs::Table)
                    .col(string_len(ImportJobs::ImageId, 36).primary_key())
                    .col(string_len(ImportJobs::RegionId, 128))
                    // without credentials: those stay in the memory of the accepting process
                    .col(text(ImportJobs::Url))
                    .col(boolean(ImportJobs::HasCredentials))
                    .col(integer(ImportJobs::Attempt))
                    .col(integer(ImportJobs::MaxAttempts))
                    .col(string_len_null(ImportJobs::LeaseOwner, 64))
                    .col(big_integer(ImportJobs::LeaseExpiresAt))
                    // the blob the current attempt writes: what a takeover must clean up
                    .col(string_len_null(ImportJobs::BlobId, 36))
                    .col(text_null(ImportJobs::LastError))
                    .col(big_integer(ImportJobs::CreatedAt))
                    .col(big_integer(ImportJobs::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ImportJobs::Table, ImportJobs::ImageId)
                            .to(Images::Table, Images::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("import_jobs_lease")
                    .table(ImportJobs::Table)
                    .col(ImportJobs::LeaseExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ImportJobs::Table).to_owned())
            .await
    }
}
