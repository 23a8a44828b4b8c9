//! OCI registry pulls (issue 11): images remember the image config's digest and the platform
//! they were pulled for, and a running import publishes its phase (`resolving` ... `storing`).
//! All nullable: other sources leave them empty. One column per statement (SQLite).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Images {
    Table,
    ConfigDigest,
    Platform,
    Phase,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in [
            string_len_null(Images::ConfigDigest, 71),
            string_len_null(Images::Platform, 100),
            string_len_null(Images::Phase, 16),
        ] {
            let mut col = col;
            manager
                .alter_table(Table::alter().table(Images::Table).add_column(&mut col).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in [Images::ConfigDigest, Images::Platform, Images::Phase] {
            manager
                .alter_table(Table::alter().table(Images::Table).drop_column(col).to_owned())
                .await?;
        }
        Ok(())
    }
}
