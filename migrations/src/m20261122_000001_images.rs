//! Images, their tags (user and reserved, one row each, indexed for filtering) and their consumers.
//! Timestamps are integer microseconds since the epoch: identical ordering on every backend.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Images {
    Table,
    Id,
    RegionId,
    OrganizationId,
    Visibility,
    Kind,
    DiskFormat,
    Architecture,
    Name,
    Description,
    OsFamily,
    OsDistro,
    OsVersion,
    Protected,
    Source,
    Reference,
    Digest,
    ImportedBy,
    ImportedAt,
    State,
    Reason,
    BytesDone,
    BytesTotal,
    SizeBytes,
    Sha256,
    ExpectedSha256,
    BlobId,
    CreatedAt,
    UpdatedAt,
    Revision,
}

#[derive(DeriveIden)]
enum ImageTags {
    Table,
    ImageId,
    Key,
    Value,
    Reserved,
}

#[derive(DeriveIden)]
enum ImageConsumers {
    Table,
    ImageId,
    OrganizationId,
    ConsumerId,
    Kind,
    Description,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Images::Table)
                    .col(string_len(Images::Id, 36).primary_key())
                    .col(string_len(Images::RegionId, 128))
                    .col(string_len_null(Images::OrganizationId, 128))
                    .col(string_len(Images::Visibility, 16))
                    .col(string_len(Images::Kind, 16))
                    .col(string_len(Images::DiskFormat, 16))
                    .col(string_len(Images::Architecture, 16))
                    .col(string_len(Images::Name, 63))
                    .col(text_null(Images::Description))
                    .col(string_len_null(Images::OsFamily, 63))
                    .col(string_len_null(Images::OsDistro, 63))
                    .col(string_len_null(Images::OsVersion, 63))
                    .col(boolean(Images::Protected))
                    .col(string_len(Images::Source, 32))
                    .col(text_null(Images::Reference))
                    .col(string_len_null(Images::Digest, 80))
                    .col(string_len(Images::ImportedBy, 255))
                    .col(big_integer(Images::ImportedAt))
                    .col(string_len(Images::State, 16))
                    .col(text_null(Images::Reason))
                    .col(big_integer(Images::BytesDone))
                    .col(big_integer_null(Images::BytesTotal))
                    .col(big_integer_null(Images::SizeBytes))
                    .col(string_len_null(Images::Sha256, 64))
                    .col(string_len_null(Images::ExpectedSha256, 64))
                    .col(string_len_null(Images::BlobId, 36))
                    .col(big_integer(Images::CreatedAt))
                    .col(big_integer(Images::UpdatedAt))
                    .col(big_integer(Images::Revision))
                    .to_owned(),
            )
            .await?;

        let db = manager.get_connection();
        // Names are unique per organization and region, and among global images per region.
        // Partial indexes: both SQLite and PostgreSQL accept this exact SQL.
        db.execute_unprepared(
            "CREATE UNIQUE INDEX images_org_name ON images (region_id, organization_id, name) \
             WHERE organization_id IS NOT NULL",
        )
        .await?;
        db.execute_unprepared(
            "CREATE UNIQUE INDEX images_global_name ON images (region_id, name) WHERE organization_id IS NULL",
        )
        .await?;
        // Keyset paging of the v2 query: (region, sort key, id), with and without organization.
        for (name, cols) in [
            (
                "images_region_name_id",
                vec![Images::RegionId, Images::Name, Images::Id],
            ),
            (
                "images_region_created_id",
                vec![Images::RegionId, Images::CreatedAt, Images::Id],
            ),
            (
                "images_region_org_created_id",
                vec![Images::RegionId, Images::OrganizationId, Images::CreatedAt, Images::Id],
            ),
        ] {
            let mut idx = Index::create();
            idx.name(name).table(Images::Table);
            for c in cols {
                idx.col(c);
            }
            manager.create_index(idx.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(ImageTags::Table)
                    .col(string_len(ImageTags::ImageId, 36))
                    .col(string_len(ImageTags::Key, 63))
                    .col(text(ImageTags::Value))
                    .col(boolean(ImageTags::Reserved))
                    .primary_key(Index::create().col(ImageTags::ImageId).col(ImageTags::Key))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ImageTags::Table, ImageTags::ImageId)
                            .to(Images::Table, Images::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("image_tags_key_value")
                    .table(ImageTags::Table)
                    .col(ImageTags::Key)
                    .col(ImageTags::Value)
                    .col(ImageTags::ImageId)
                    .to_owned(),
            )
            .await?;

        // RESTRICT: the database itself refuses to delete an image that still has consumers, so a
        // consumer registered concurrently with a delete can never be lost.
        manager
            .create_table(
                Table::create()
                    .table(ImageConsumers::Table)
                    .col(string_len(ImageConsumers::ImageId, 36))
                    .col(string_len(ImageConsumers::OrganizationId, 128))
                    .col(string_len(ImageConsumers::ConsumerId, 128))
                    .col(string_len(ImageConsumers::Kind, 63))
                    .col(text_null(ImageConsumers::Description))
                    .col(big_integer(ImageConsumers::CreatedAt))
                    .col(big_integer(ImageConsumers::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(ImageConsumers::ImageId)
                            .col(ImageConsumers::OrganizationId)
                            .col(ImageConsumers::ConsumerId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ImageConsumers::Table, ImageConsumers::ImageId)
                            .to(Images::Table, Images::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in ["image_consumers", "image_tags", "images"] {
            manager
                .drop_table(Table::drop().table(Alias::new(t)).to_owned())
                .await?;
        }
        Ok(())
    }
}
