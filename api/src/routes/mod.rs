//! Routes, one module per resource. Handlers extract, call one service function, respond.

mod consumers;
mod files;
pub(crate) mod health;
mod images;
mod query;
mod usage;

use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

pub const V1_PREFIX: &str = "/api/v1/organizations/{organizationID}/regions/{regionID}";

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(health::healthz)
        .service(health::readyz)
        .service(crate::metrics::get_metrics);
    cfg.service(
        scope::scope(V1_PREFIX)
            .service(images::list_images)
            .service(images::create_image)
            .service(images::get_image)
            .service(images::patch_image)
            .service(images::delete_image)
            .service(files::upload_file)
            .service(files::download_file)
            .service(files::head_file)
            .service(consumers::put_consumer)
            .service(consumers::list_consumers)
            .service(consumers::delete_consumer)
            .service(usage::get_usage),
    );
    cfg.service(scope::scope("/api/v2").service(query::query_images));
}
