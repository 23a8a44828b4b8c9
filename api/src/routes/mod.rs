//! Routes, one module per resource. Handlers extract, call one service function, respond.

pub(crate) mod console;
mod consumers;
mod defaults;
pub(crate) mod docker;
mod files;
pub(crate) mod health;
mod images;
mod kernels;
mod query;
mod session;
mod usage;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
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
            .service(usage::get_usage)
            .service(kernels::list_kernels)
            .service(kernels::create_kernel)
            .service(kernels::get_kernel)
            .service(kernels::patch_kernel)
            .service(kernels::delete_kernel)
            .service(kernels::upload_kernel_file)
            .service(kernels::upload_kernel_bundle)
            // before `{artifact}`, which would otherwise match `consumers`
            .service(kernels::list_kernel_consumers)
            .service(kernels::put_kernel_consumer)
            .service(kernels::delete_kernel_consumer)
            .service(kernels::download_kernel_file)
            .service(kernels::head_kernel_file)
            .service(kernels::list_kernel_catalog),
    );
    cfg.service(scope::scope("/api/v1").service(defaults::ensure_defaults));
    cfg.service(
        scope::scope("/api/v2")
            .service(query::query_images)
            .service(kernels::query_kernels)
            .service(session::list_regions)
            .service(session::sign_in_info),
    );
}

/// `304 Not Modified` with the ETag when the request's `If-None-Match` names `etag` (GET and HEAD
/// of an image or its bytes).
fn not_modified(req: &HttpRequest, etag: &str) -> Option<HttpResponse> {
    let held = req.headers().get(header::IF_NONE_MATCH)?.to_str().ok()?;
    strata_domain::image::if_none_match_hits(held, etag)
        .then(|| HttpResponse::NotModified().insert_header((header::ETAG, etag)).finish())
}

/// `GET` of a file (an image's or a kernel's): 200 with the whole body or 206 with one range,
/// streamed with its length, ETag and `Accept-Ranges`.
fn file_response(dl: crate::service::download::Download, etag: String) -> HttpResponse {
    use crate::service::download::Download;
    let (mut res, body, len) = match dl {
        Download::Full { body } => {
            let len = body.size;
            (HttpResponse::Ok(), body, len)
        }
        Download::Partial { body, start, end } => {
            let mut res = HttpResponse::PartialContent();
            res.insert_header((header::CONTENT_RANGE, format!("bytes {start}-{end}/{}", body.size)));
            (res, body, end - start + 1)
        }
    };
    res.insert_header((header::ETAG, etag))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .content_type("application/octet-stream")
        .no_chunking(len)
        .streaming(body.stream)
}

/// What `GET` of a file would send, headers only: size, ETag and `Accept-Ranges` (HEAD of an
/// image's or a kernel's file).
fn head_of_file(etag: &str, size: u64) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .content_type("application/octet-stream")
        .no_chunking(size)
        // a streamed body of unknown size keeps the Content-Length set above; HEAD sends no bytes
        .streaming(futures::stream::empty::<Result<bytes::Bytes, actix_web::Error>>())
}
