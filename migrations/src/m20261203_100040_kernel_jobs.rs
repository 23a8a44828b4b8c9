//! Kernels pulled by import jobs (a bundle URL, a catalog entry): `import_jobs.kernel_id` repeats
//! the target id for kernel targets with a cascading foreign key, as `image_id` does for images,
//! so deleting a kernel cancels its pull in the database itself; and kernels get the progress
//! and reason-code columns images have.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // Plain SQL: SQLite can add a column with a REFERENCES clause (default NULL), but not a
        // foreign key through ALTER TABLE ... ADD CONSTRAINT, which is what sea-query would emit.
        for sql in [
            "ALTER TABLE import_jobs ADD COLUMN kernel_id VARCHAR(36) NULL REFERENCES kernels (id) ON DELETE CASCADE",
            "CREATE INDEX import_jobs_kernel ON import_jobs (kernel_id)",
            "ALTER TABLE kernels ADD COLUMN reason_code VARCHAR(64) NULL",
            "ALTER TABLE kernels ADD COLUMN bytes_done BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE kernels ADD COLUMN bytes_total BIGINT NULL",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // A kernel job cannot outlive its column; the kernels it was pulling stay as failed rows.
        db.execute_unprepared("DELETE FROM import_jobs WHERE target_kind = 'kernel'")
            .await?;
        db.execute_unprepared("DROP INDEX import_jobs_kernel").await?;
        // SQLite cannot drop a column that is part of a foreign key: there the nullable,
        // unused column stays behind (harmless to the code of the earlier migrations).
        if manager.get_database_backend() != sea_orm_migration::sea_orm::DatabaseBackend::Sqlite {
            db.execute_unprepared("ALTER TABLE import_jobs DROP COLUMN kernel_id")
                .await?;
        }
        for sql in [
            "ALTER TABLE kernels DROP COLUMN reason_code",
            "ALTER TABLE kernels DROP COLUMN bytes_done",
            "ALTER TABLE kernels DROP COLUMN bytes_total",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
