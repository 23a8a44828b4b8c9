use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, head, put, web};
use futures::TryStreamExt;
use strata_domain::DomainError;

use crate::error::{ApiResult, ErrorBody};
use crate::model::{ImagePath, ImageView};
use crate::openapi::{BadRequest, Binary, Forbidden, Internal, NotFound, Unauthorized};
use crate::service;
use crate::state::AppState;
use crate::tenancy::{ImageRef, ImagesRead, ImagesWrite, OrgRegion};

const OCTET: &str = "application/octet-stream";

/// Upload the image's bytes (streamed; raw disks only)
#[utoipa::path(
    tag = "image-files",
    operation_id = "uploadImageFile",
    params(ImagePath),
    request_body(content = Binary, content_type = "application/octet-stream",
        description = "A raw disk image: MBR with boot signature and sane partition entries, or a protective MBR followed by a GPT header"),
    responses(
        (status = 200, description = "Stored and verified; the image is `ready`", body = ImageView,
            headers(("ETag" = String, description = "The image's new revision, for If-Match"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not-found`: no such image, or the organization does not own it", body = ErrorBody),
        (status = 408, description = "`request-timeout`: the body stalled (nothing sent for `body_idle_timeout_secs`) or came too slowly; nothing is kept and the connection is closed", body = ErrorBody),
        (status = 409, description = "`invalid-state`: the image is not `pending`; `quota-exceeded`: the organization's stored bytes would exceed its quota (checked while the body streams); `upload-in-progress`: another upload to this image has not ended", body = ErrorBody),
        (status = 413, description = "`too-large`: over the configured size cap", body = ErrorBody),
        (status = 415, description = "`unsupported-media-type`: send `application/octet-stream`", body = ErrorBody),
        (status = 422, description = "`unsupported-disk-format` (the message names the detected format, e.g. qcow2) or `checksum-mismatch`", body = ErrorBody),
        (status = 429, description = "`too-many-uploads`: the organization has `max_concurrent_uploads` uploads in flight", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[put("/images/{imageID}/file")]
async fn upload_file(
    req: HttpRequest,
    st: web::Data<AppState>,
    access: OrgRegion<ImagesWrite>,
    id: ImageRef,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    let _in_flight = st.metrics.upload_started();
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default();
        if ct.split(';').next().map(str::trim) != Some(OCTET) {
            return Err(DomainError::UnsupportedMediaType {
                got: ct.to_owned(),
                expected: OCTET,
            }
            .into());
        }
    }
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let img = service::images::upload(&st, &access, id.0, length, body.into_stream()).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, img.etag()))
        .json(ImageView::from(&img)))
}

fn header(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Download the image's bytes (single byte ranges supported)
#[utoipa::path(
    tag = "image-files",
    operation_id = "downloadImageFile",
    params(ImagePath,
        ("Range" = Option<String>, Header, nullable = false, description = "One range, e.g. `bytes=0-511`; multiple ranges get the whole file"),
        ("If-Range" = Option<String>, Header, nullable = false, description = "The file's ETag: the Range applies only if it is still current; otherwise the whole file is sent (200)"),
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "ETags the client holds; a current one gives 304 without a body"),
    ),
    responses(
        (status = 304, description = "Not modified: the `If-None-Match` ETag is current",
            headers(("ETag" = String, description = "The quoted sha256"))),
        (status = 200, description = "The whole image", content_type = "application/octet-stream", body = Binary,
            headers(("Content-Length" = u64, description = "Size"), ("ETag" = String, description = "The quoted sha256"), ("Accept-Ranges" = String, description = "bytes"))),
        (status = 206, description = "The requested range", content_type = "application/octet-stream", body = Binary,
            headers(("Content-Range" = String, description = "bytes START-END/SIZE"), ("Content-Length" = u64, description = "Length of the range"), ("ETag" = String, description = "The quoted sha256"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "`invalid-state`: the image is not `ready`", body = ErrorBody),
        (status = 416, description = "`range-not-satisfiable`: the range starts past the end", body = ErrorBody,
            headers(("Content-Range" = String, description = "bytes */SIZE"))),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[get("/images/{imageID}/file")]
async fn download_file(
    req: HttpRequest,
    st: web::Data<AppState>,
    access: OrgRegion<ImagesRead>,
    id: ImageRef,
) -> ApiResult<HttpResponse> {
    let file = service::images::downloadable(&st, &access, id.0).await?;
    let etag = file.image.file_etag();
    if let Some(res) = super::not_modified(&req, &etag) {
        return Ok(res);
    }
    let dl = service::images::download(
        &access,
        &file,
        header(&req, header::RANGE),
        header(&req, header::IF_RANGE),
    )
    .await?;
    Ok(super::file_response(dl, etag))
}

/// The image's size and ETag, without its bytes
#[utoipa::path(
    tag = "image-files",
    operation_id = "headImageFile",
    params(ImagePath,
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "ETags the client holds; a current one gives 304"),
    ),
    responses(
        (status = 200, description = "What `GET` would send, headers only",
            headers(("Content-Length" = u64, description = "Size"), ("ETag" = String, description = "The quoted sha256"), ("Accept-Ranges" = String, description = "bytes"))),
        (status = 304, description = "Not modified: the `If-None-Match` ETag is current",
            headers(("ETag" = String, description = "The quoted sha256"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "`invalid-state`: the image is not `ready`", body = ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[head("/images/{imageID}/file")]
async fn head_file(
    req: HttpRequest,
    st: web::Data<AppState>,
    access: OrgRegion<ImagesRead>,
    id: ImageRef,
) -> ApiResult<HttpResponse> {
    let file = service::images::downloadable(&st, &access, id.0).await?;
    let etag = file.image.file_etag();
    if let Some(res) = super::not_modified(&req, &etag) {
        return Ok(res);
    }
    Ok(super::head_of_file(&etag, file.size))
}
