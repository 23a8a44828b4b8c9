//! `images.tag_set`: every tag of an image (user and reserved) in one text column, each as
//! `key=value` between unit separators (U+001F, a control character no tag value may contain).
//! A v2 tag filter rejects most images from the row at hand while the query walks an index in
//! sort order, instead of probing `image_tags` for each image it passes (a rare tag combination
//! walks thousands of images per page). It is only a prefilter: `image_tags` stays the truth and
//! each candidate is still confirmed there, so no content can make the query wrong. NULL (a row
//! inserted by a binary that does not know the column) means "unknown": such rows are probed.
//! `tag_set_revision` is the image's `revision` when `tag_set` was written. The prefilter is used
//! only while the two are equal: a binary that does not know the columns (a rolling upgrade)
//! bumps `revision` whenever it changes tags, so its writes turn the prefilter off for that image
//! (probed, as before) instead of leaving a stale `tag_set` that could hide it.
//!
//! `db::images` keeps both current with the same expression, in the transaction that writes the
//! tags; its other revision bumps carry `tag_set_revision` along when it was current.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Images {
    Table,
    TagSet,
    TagSetRevision,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Images::Table)
                    .add_column(text_null(Images::TagSet))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Images::Table)
                    .add_column(big_integer_null(Images::TagSetRevision))
                    .to_owned(),
            )
            .await?;
        // string_agg: PostgreSQL, and SQLite since 3.44 (the bundled one is 3.51).
        let sep = match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => "chr(31)",
            _ => "char(31)",
        };
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "UPDATE images SET tag_set = COALESCE((SELECT {sep} || string_agg(image_tags.\"key\" || '=' || \
                 image_tags.\"value\", {sep}) || {sep} FROM image_tags WHERE image_tags.image_id = images.id), {sep}), \
                 tag_set_revision = revision"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Images::Table)
                    .drop_column(Images::TagSetRevision)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Images::Table)
                    .drop_column(Images::TagSet)
                    .to_owned(),
            )
            .await
    }
}
