//! Open multipart uploads, by id: written before any data goes into an upload and removed when
//! it completes or is aborted. A row that outlives its process names exactly what to abort.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MultipartUploads {
    Table,
    UploadId,
    RegionId,
    ImageId,
    BlobId,
    StartedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MultipartUploads::Table)
                    .col(string_len(MultipartUploads::UploadId, 1024).primary_key())
                    .col(string_len(MultipartUploads::RegionId, 128))
                    .col(string_len(MultipartUploads::ImageId, 36))
                    .col(string_len(MultipartUploads::BlobId, 36))
                    .col(big_integer(MultipartUploads::StartedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("multipart_uploads_blob")
                    .table(MultipartUploads::Table)
                    .col(MultipartUploads::ImageId)
                    .col(MultipartUploads::BlobId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(MultipartUploads::Table).to_owned())
            .await
    }
}
