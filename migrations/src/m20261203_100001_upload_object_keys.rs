//! Open multipart uploads record the object key they write (`images/...`, `kernels/...`,
//! `cache/...`), not only an image id: any kind of artifact can be aborted by another process.
//! Existing rows are image uploads and get their image key.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MultipartUploads {
    Table,
    ObjectKey,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(MultipartUploads::Table)
                    .add_column(text_null(MultipartUploads::ObjectKey))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE multipart_uploads SET object_key = 'images/' || image_id || '/' || blob_id \
                 WHERE object_key IS NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(MultipartUploads::Table)
                    .drop_column(MultipartUploads::ObjectKey)
                    .to_owned(),
            )
            .await
    }
}
