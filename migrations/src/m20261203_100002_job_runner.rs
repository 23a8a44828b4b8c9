//! One job table for every asynchronous import. A job has a `kind` (`url` today; kernel bundles,
//! catalog pulls, OCI pulls and docker archives later), a JSON `spec` the kind reads back (never
//! a secret: parts that must not be stored, such as URL credentials, stay in the memory of the
//! accepting process, and `secrets_in_memory` says so), and a target (`target_kind`, `target_id`):
//! the image or kernel it produces. One job per target.
//!
//! `image_id` repeats the target id for image targets, with a cascading foreign key: deleting the
//! image deletes its job, and the running attempt sees its lease gone and stops. Other target
//! kinds add their own cascading column the same way.
//!
//! Failed images get a stable `reason_code` beside their human `reason`; existing failures are
//! mapped from the code their reason starts with.
//!
//! The old table is keyed by image; its rows are copied as `url` jobs, then it is replaced.
//! On PostgreSQL all of it runs in the one migration transaction (see `db::migrate`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ImportJobs {
    Table,
}

#[derive(DeriveIden)]
enum Jobs {
    Id,
    Kind,
    Spec,
    SecretsInMemory,
    TargetKind,
    TargetId,
    ImageId,
    RegionId,
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
    ReasonCode,
}

fn jobs_table(name: &str) -> TableCreateStatement {
    let table = Alias::new(name);
    Table::create()
        .table(table.clone())
        .col(string_len(Jobs::Id, 36).primary_key())
        .col(string_len(Jobs::Kind, 32))
        .col(text(Jobs::Spec))
        .col(boolean(Jobs::SecretsInMemory))
        .col(string_len(Jobs::TargetKind, 16))
        .col(string_len(Jobs::TargetId, 36))
        .col(string_len_null(Jobs::ImageId, 36))
        .col(string_len(Jobs::RegionId, 128))
        .col(integer(Jobs::Attempt))
        .col(integer(Jobs::MaxAttempts))
        .col(string_len_null(Jobs::LeaseOwner, 64))
        .col(big_integer(Jobs::LeaseExpiresAt))
        // the blob the current attempt writes: what a takeover must clean up
        .col(string_len_null(Jobs::BlobId, 36))
        .col(text_null(Jobs::LastError))
        .col(big_integer(Jobs::CreatedAt))
        .col(big_integer(Jobs::UpdatedAt))
        .foreign_key(
            ForeignKey::create()
                .from(table, Jobs::ImageId)
                .to(Images::Table, Images::Id)
                .on_delete(ForeignKeyAction::Cascade),
        )
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.create_table(jobs_table("import_jobs_next")).await?;
        let spec = match manager.get_database_backend() {
            DbBackend::Postgres => "json_build_object('url', j.url, 'sha256', i.expected_sha256)::text",
            _ => "json_object('url', j.url, 'sha256', i.expected_sha256)",
        };
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "INSERT INTO import_jobs_next (id, kind, spec, secrets_in_memory, target_kind, target_id, image_id, \
                 region_id, attempt, max_attempts, lease_owner, lease_expires_at, blob_id, last_error, created_at, \
                 updated_at) SELECT j.image_id, 'url', {spec}, j.has_credentials, 'image', j.image_id, j.image_id, \
                 j.region_id, j.attempt, j.max_attempts, j.lease_owner, j.lease_expires_at, j.blob_id, j.last_error, \
                 j.created_at, j.updated_at FROM import_jobs j JOIN images i ON i.id = j.image_id"
            ))
            .await?;
        manager
            .drop_table(Table::drop().table(ImportJobs::Table).to_owned())
            .await?;
        // A fresh table under the old name rather than a rename, which SQLite refuses through a
        // pooled connection that still sees the dropped table.
        manager.create_table(jobs_table("import_jobs")).await?;
        manager
            .get_connection()
            .execute_unprepared("INSERT INTO import_jobs SELECT * FROM import_jobs_next")
            .await?;
        manager
            .drop_table(Table::drop().table(Alias::new("import_jobs_next")).to_owned())
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("import_jobs_lease")
                    .table(ImportJobs::Table)
                    .col(Jobs::LeaseExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("import_jobs_target")
                    .table(ImportJobs::Table)
                    .col(Jobs::TargetKind)
                    .col(Jobs::TargetId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("import_jobs_image")
                    .table(ImportJobs::Table)
                    .col(Jobs::ImageId)
                    .to_owned(),
            )
            .await?;

        manager
            .alter_table(
                Table::alter()
                    .table(Images::Table)
                    .add_column(string_len_null(Images::ReasonCode, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE images SET reason_code = CASE \
                 WHEN reason LIKE '%checksum-mismatch:%' THEN 'checksum-mismatch' \
                 WHEN reason LIKE '%unsupported-disk-format:%' THEN 'unsupported-disk-format' \
                 WHEN reason LIKE '%too-large:%' THEN 'too-large' \
                 WHEN reason LIKE '%quota-exceeded:%' THEN 'quota-exceeded' \
                 WHEN reason LIKE '%fetch-failed:%' THEN 'fetch-failed' \
                 WHEN reason LIKE '%took longer than%' THEN 'fetch-failed' \
                 WHEN reason LIKE '%credentials are kept only in memory%' THEN 'credentials-unavailable' \
                 ELSE 'internal' END \
                 WHERE state = 'failed' AND reason_code IS NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration(
            "the job-runner migration cannot be reverted: url jobs would lose their kind and spec".into(),
        ))
    }
}
