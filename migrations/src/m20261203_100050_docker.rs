//! The Docker Engine API subset (issue 12): images loaded from `docker save` archives keep their
//! Docker identity (the config's sha256) and config beside the Strata image, and Docker tags
//! (`repo:tag` -> image) are a table of their own, unique per organization and region, so moving
//! a tag is one conditional write. Both cascade from the image.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Images {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum DockerImages {
    Table,
    ImageId,
    OrganizationId,
    RegionId,
    DockerId,
    Config,
    CreatedAt,
}

#[derive(DeriveIden)]
enum DockerTags {
    Table,
    OrganizationId,
    RegionId,
    Reference,
    ImageId,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DockerImages::Table)
                    .col(string_len(DockerImages::ImageId, 36).primary_key())
                    .col(string_len(DockerImages::OrganizationId, 128))
                    .col(string_len(DockerImages::RegionId, 128))
                    // `sha256:<64 hex>`: Docker's image id
                    .col(string_len(DockerImages::DockerId, 71))
                    // the image config as loaded (inspect reads it)
                    .col(text(DockerImages::Config))
                    // the config's `created`, Unix seconds (0 when absent)
                    .col(big_integer(DockerImages::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(DockerImages::Table, DockerImages::ImageId)
                            .to(Images::Table, Images::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("docker_images_identity")
                    .table(DockerImages::Table)
                    .col(DockerImages::RegionId)
                    .col(DockerImages::OrganizationId)
                    .col(DockerImages::DockerId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DockerTags::Table)
                    .col(string_len(DockerTags::OrganizationId, 128))
                    .col(string_len(DockerTags::RegionId, 128))
                    // normalised: `docker.io/library/alpine:3.19`
                    .col(string_len(DockerTags::Reference, 512))
                    .col(string_len(DockerTags::ImageId, 36))
                    .col(big_integer(DockerTags::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(DockerTags::RegionId)
                            .col(DockerTags::OrganizationId)
                            .col(DockerTags::Reference),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(DockerTags::Table, DockerTags::ImageId)
                            .to(DockerImages::Table, DockerImages::ImageId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("docker_tags_image")
                    .table(DockerTags::Table)
                    .col(DockerTags::ImageId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DockerTags::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(DockerImages::Table).to_owned())
            .await
    }
}
