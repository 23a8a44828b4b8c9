//! Schema migrations, one per file, applied on start (`strata serve`) and by `strata migrate`.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_images;
mod m20261122_000002_import_jobs;
mod m20261122_000003_usage;
mod m20261122_000004_multipart_uploads;
mod m20261202_000005_upload_leases;
mod m20261203_100001_upload_object_keys;
mod m20261203_100002_job_runner;
mod m20261203_100010_kernels;
mod m20261203_100020_query_indexes;
mod m20261203_100030_oci;
mod m20261203_100040_kernel_jobs;
mod m20261203_100050_docker;
mod m20261204_100010_image_tag_set;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_images::Migration),
            Box::new(m20261122_000002_import_jobs::Migration),
            Box::new(m20261122_000003_usage::Migration),
            Box::new(m20261122_000004_multipart_uploads::Migration),
            Box::new(m20261202_000005_upload_leases::Migration),
            Box::new(m20261203_100001_upload_object_keys::Migration),
            Box::new(m20261203_100002_job_runner::Migration),
            Box::new(m20261203_100010_kernels::Migration),
            Box::new(m20261203_100020_query_indexes::Migration),
            Box::new(m20261203_100030_oci::Migration),
            Box::new(m20261203_100040_kernel_jobs::Migration),
            Box::new(m20261203_100050_docker::Migration),
            Box::new(m20261204_100010_image_tag_set::Migration),
        ]
    }
}
