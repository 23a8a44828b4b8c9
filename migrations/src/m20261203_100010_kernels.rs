//! Kernels, their tags, their stored files (vmlinux, initrd, modules) and their consumers; and
//! `images.kernel_id`, a RESTRICT reference so the database itself refuses to delete a kernel an
//! image boots with.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Kernels {
    Table,
    Id,
    RegionId,
    OrganizationId,
    Visibility,
    Architecture,
    Name,
    Description,
    Version,
    Format,
    Distro,
    Protected,
    Source,
    Reference,
    Digest,
    ImportedBy,
    ImportedAt,
    State,
    Reason,
    ExpectedSha256,
    SizeBytes,
    CreatedAt,
    UpdatedAt,
    Revision,
}

#[derive(DeriveIden)]
enum KernelTags {
    Table,
    KernelId,
    Key,
    Value,
    Reserved,
}

#[derive(DeriveIden)]
enum KernelArtifacts {
    Table,
    KernelId,
    Artifact,
    BlobId,
    SizeBytes,
    Sha256,
}

#[derive(DeriveIden)]
enum KernelConsumers {
    Table,
    KernelId,
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
                    .table(Kernels::Table)
                    .col(string_len(Kernels::Id, 36).primary_key())
                    .col(string_len(Kernels::RegionId, 128))
                    .col(string_len_null(Kernels::OrganizationId, 128))
                    .col(string_len(Kernels::Visibility, 16))
                    .col(string_len(Kernels::Architecture, 16))
                    .col(string_len(Kernels::Name, 63))
                    .col(text_null(Kernels::Description))
                    .col(string_len(Kernels::Version, 63))
                    .col(string_len_null(Kernels::Format, 16))
                    .col(string_len_null(Kernels::Distro, 63))
                    .col(boolean(Kernels::Protected))
                    .col(string_len(Kernels::Source, 32))
                    .col(text_null(Kernels::Reference))
                    .col(string_len_null(Kernels::Digest, 80))
                    .col(string_len(Kernels::ImportedBy, 255))
                    .col(big_integer(Kernels::ImportedAt))
                    .col(string_len(Kernels::State, 16))
                    .col(text_null(Kernels::Reason))
                    .col(string_len_null(Kernels::ExpectedSha256, 64))
                    // Total of the stored files: what the organization's bytes quota was charged.
                    .col(big_integer(Kernels::SizeBytes))
                    .col(big_integer(Kernels::CreatedAt))
                    .col(big_integer(Kernels::UpdatedAt))
                    .col(big_integer(Kernels::Revision))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE UNIQUE INDEX kernels_org_name ON kernels (region_id, organization_id, name) \
             WHERE organization_id IS NOT NULL",
        )
        .await?;
        db.execute_unprepared(
            "CREATE UNIQUE INDEX kernels_global_name ON kernels (region_id, name) WHERE organization_id IS NULL",
        )
        .await?;
        for (name, cols) in [
            (
                "kernels_region_name_id",
                vec![Kernels::RegionId, Kernels::Name, Kernels::Id],
            ),
            (
                "kernels_region_created_id",
                vec![Kernels::RegionId, Kernels::CreatedAt, Kernels::Id],
            ),
            (
                "kernels_region_org_created_id",
                vec![
                    Kernels::RegionId,
                    Kernels::OrganizationId,
                    Kernels::CreatedAt,
                    Kernels::Id,
                ],
            ),
        ] {
            let mut idx = Index::create();
            idx.name(name).table(Kernels::Table);
            for c in cols {
                idx.col(c);
            }
            manager.create_index(idx.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(KernelTags::Table)
                    .col(string_len(KernelTags::KernelId, 36))
                    .col(string_len(KernelTags::Key, 63))
                    .col(text(KernelTags::Value))
                    .col(boolean(KernelTags::Reserved))
                    .primary_key(Index::create().col(KernelTags::KernelId).col(KernelTags::Key))
                    .foreign_key(
                        ForeignKey::create()
                            .from(KernelTags::Table, KernelTags::KernelId)
                            .to(Kernels::Table, Kernels::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("kernel_tags_key_value")
                    .table(KernelTags::Table)
                    .col(KernelTags::Key)
                    .col(KernelTags::Value)
                    .col(KernelTags::KernelId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(KernelArtifacts::Table)
                    .col(string_len(KernelArtifacts::KernelId, 36))
                    .col(string_len(KernelArtifacts::Artifact, 16))
                    .col(string_len(KernelArtifacts::BlobId, 36))
                    .col(big_integer(KernelArtifacts::SizeBytes))
                    .col(string_len(KernelArtifacts::Sha256, 64))
                    .primary_key(
                        Index::create()
                            .col(KernelArtifacts::KernelId)
                            .col(KernelArtifacts::Artifact),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(KernelArtifacts::Table, KernelArtifacts::KernelId)
                            .to(Kernels::Table, Kernels::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(KernelConsumers::Table)
                    .col(string_len(KernelConsumers::KernelId, 36))
                    .col(string_len(KernelConsumers::OrganizationId, 128))
                    .col(string_len(KernelConsumers::ConsumerId, 128))
                    .col(string_len(KernelConsumers::Kind, 63))
                    .col(text_null(KernelConsumers::Description))
                    .col(big_integer(KernelConsumers::CreatedAt))
                    .col(big_integer(KernelConsumers::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(KernelConsumers::KernelId)
                            .col(KernelConsumers::OrganizationId)
                            .col(KernelConsumers::ConsumerId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(KernelConsumers::Table, KernelConsumers::KernelId)
                            .to(Kernels::Table, Kernels::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;

        // Both SQLite and PostgreSQL accept this exact SQL; SQLite allows a REFERENCES clause on
        // an added column whose default is NULL.
        db.execute_unprepared(
            "ALTER TABLE images ADD COLUMN kernel_id VARCHAR(36) NULL REFERENCES kernels (id) ON DELETE RESTRICT",
        )
        .await?;
        db.execute_unprepared("CREATE INDEX images_kernel_id ON images (kernel_id)")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX images_kernel_id").await?;
        db.execute_unprepared("ALTER TABLE images DROP COLUMN kernel_id")
            .await?;
        for t in ["kernel_consumers", "kernel_artifacts", "kernel_tags", "kernels"] {
            manager
                .drop_table(Table::drop().table(Alias::new(t)).to_owned())
                .await?;
        }
        Ok(())
    }
}
