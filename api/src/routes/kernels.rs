//! Kernels (v1), their files, consumers and the catalog; the v2 kernel query.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, delete, get, head, patch, post, put, web};
use futures::TryStreamExt;
use strata_domain::DomainError;
use strata_domain::kernel::Kernel;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::JsonObject;
use crate::kernel_model::{
    CreateKernelRequest, KernelCatalogItem, KernelConsumerPath, KernelFilePath, KernelPage, KernelPath, KernelView,
    PatchKernelRequest,
};
use crate::model::{ConsumerRequest, ConsumerView, ListParams, OrgRegionPath, QueryParamsDoc, RegionPath};
use crate::openapi::{BadRequest, Binary, Forbidden, Internal, NotFound, Unauthorized};
use crate::service;
use crate::service::kernels::UploadKind;
use crate::state::AppState;
use crate::tenancy::{ArtifactRef, ConsumerRef, KernelRef, KernelsRead, KernelsWrite, OrgRegion, RegionAccess};

const OCTET: &str = "application/octet-stream";

fn with_etag(status: StatusCode, k: &Kernel) -> actix_web::HttpResponseBuilder {
    let mut b = HttpResponse::build(status);
    b.insert_header((header::ETAG, k.etag()));
    b
}

fn header_str(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// List kernels the organization can see in the region
#[utoipa::path(
    tag = "kernels",
    operation_id = "listKernels",
    params(OrgRegionPath, ListParams),
    responses(
        (status = 200, description = "The organization's kernels and, unless `scope=owned`, the global ones, by name", body = Vec<KernelView>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[get("/kernels")]
#[tracing::instrument(skip_all)]
async fn list_kernels(
    st: web::Data<AppState>,
    access: OrgRegion<KernelsRead>,
    params: web::Query<ListParams>,
) -> ApiResult<HttpResponse> {
    let owned = match params.scope.as_deref() {
        None | Some("available") => false,
        Some("owned") => true,
        Some(_) => return Err(DomainError::invalid("scope", "must be owned or available").into()),
    };
    let page = service::kernels::list(&st, &access, owned, params.limit, params.page_token.as_deref()).await?;
    let mut res = HttpResponse::Ok();
    if let Some(token) = &page.next_page_token {
        res.insert_header(("Next-Page-Token", token.as_str()));
    }
    Ok(res.json(page.items.iter().map(KernelView::from).collect::<Vec<_>>()))
}

/// Create a kernel
///
/// For `upload` and `upload-bundle` the kernel is `pending` until its vmlinux (`PUT .../file`) or
/// bundle (`PUT .../bundle`) arrives. For `url` and `catalog` the server pulls the bundle: the
/// kernel is `importing` (with `status.bytesDone`) until it is `ready` or `failed` (with
/// `status.reasonCode`: `fetch-failed`, `checksum-mismatch`, `too-large`, `invalid-archive`,
/// `unsupported-kernel-format`, `architecture-mismatch`, `quota-exceeded`, `internal`).
#[utoipa::path(
    tag = "kernels",
    operation_id = "createKernel",
    params(OrgRegionPath),
    request_body = CreateKernelRequest,
    responses(
        (status = 201, description = "Created: `pending` (uploads) or `importing` (pulls)", body = KernelView,
            headers(("Location" = String, description = "URL of the new kernel"), ("ETag" = String, description = "Revision"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "`name-taken`: a kernel of that name exists in this organization (or among global kernels) in this region; `quota-exceeded`: the organization's concurrent imports are all in use (pulls)", body = ErrorBody),
        (status = 413, description = "`too-large`: the JSON body exceeds 64 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported-media-type`: send `application/json`", body = ErrorBody),
        (status = 422, description = "Pulls, checked before anything is created: `url-not-allowed` (scheme, port, deny list, or an address that is not public, also after a redirect), `fetch-failed` (upstream status, timeout or connection error while reading the first bytes), `invalid-archive` (the source is not a tar, tar.gz, tar.zst or tar.xz); `architecture-mismatch`: `architecture` differs from the catalog entry's", body = ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[post("/kernels")]
#[tracing::instrument(skip_all)]
async fn create_kernel(
    req: HttpRequest,
    st: web::Data<AppState>,
    access: OrgRegion<KernelsWrite>,
    body: JsonObject<CreateKernelRequest>,
) -> ApiResult<HttpResponse> {
    let k = service::kernels::create(&st, &access, body.into_inner().try_into()?).await?;
    let location = format!("{}/{}", req.path().trim_end_matches('/'), k.id);
    Ok(with_etag(StatusCode::CREATED, &k)
        .insert_header((header::LOCATION, location))
        .json(KernelView::from(&k)))
}

/// Get one kernel
#[utoipa::path(
    tag = "kernels",
    operation_id = "getKernel",
    params(KernelPath, ("If-None-Match" = Option<String>, Header, nullable = false, description = "ETags the client holds; a current one gives 304 without a body")),
    responses(
        (status = 200, description = "The kernel", body = KernelView, headers(("ETag" = String, description = "Revision, for If-Match"))),
        (status = 304, description = "Not modified: the `If-None-Match` ETag is current", headers(("ETag" = String, description = "Revision"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[get("/kernels/{kernelID}")]
#[tracing::instrument(skip_all)]
async fn get_kernel(
    req: HttpRequest,
    st: web::Data<AppState>,
    access: OrgRegion<KernelsRead>,
    id: KernelRef,
) -> ApiResult<HttpResponse> {
    let k = service::kernels::find_visible(&st, &access, id.0).await?;
    if let Some(res) = super::not_modified(&req, &k.etag()) {
        return Ok(res);
    }
    Ok(with_etag(StatusCode::OK, &k).json(KernelView::from(&k)))
}

/// Change name, description, distro, tags or protection (JSON merge patch)
#[utoipa::path(
    tag = "kernels",
    operation_id = "patchKernel",
    params(KernelPath, ("If-Match" = Option<String>, Header, nullable = false, description = "ETag the change is based on; a stale one gives 412")),
    request_body(content = PatchKernelRequest, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "The changed kernel", body = KernelView, headers(("ETag" = String, description = "New revision"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not-found`: no such kernel, or the organization does not own it", body = ErrorBody),
        (status = 409, description = "`name-taken`: the new name is in use", body = ErrorBody),
        (status = 412, description = "`precondition-failed`: the kernel changed since the If-Match ETag", body = ErrorBody),
        (status = 413, description = "`too-large`: the JSON body exceeds 64 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported-media-type`: send JSON", body = ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[patch("/kernels/{kernelID}")]
#[tracing::instrument(skip_all)]
async fn patch_kernel(
    req: HttpRequest,
    st: web::Data<AppState>,
    access: OrgRegion<KernelsWrite>,
    id: KernelRef,
    body: JsonObject<PatchKernelRequest>,
) -> ApiResult<HttpResponse> {
    let if_match = match req.headers().get(header::IF_MATCH) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| DomainError::invalid("If-Match", "must be ASCII"))?,
        ),
        None => None,
    };
    let k = service::kernels::patch(&st, &access, id.0, body.into_inner().try_into()?, if_match).await?;
    Ok(with_etag(StatusCode::OK, &k).json(KernelView::from(&k)))
}

/// Delete a kernel and its files
#[utoipa::path(
    tag = "kernels",
    operation_id = "deleteKernel",
    params(KernelPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not-found`: no such kernel, or the organization does not own it", body = ErrorBody),
        (status = 409, description = "`image-protected`: unprotect it first; `kernel-in-use`: images boot with it or consumers are registered (the message gives the number of images, the ids of those the caller may see, and the consumers)", body = ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[delete("/kernels/{kernelID}")]
#[tracing::instrument(skip_all)]
async fn delete_kernel(
    st: web::Data<AppState>,
    access: OrgRegion<KernelsWrite>,
    id: KernelRef,
) -> ApiResult<HttpResponse> {
    service::kernels::delete(&st, &access, id.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

fn content_length(req: &HttpRequest) -> Option<u64> {
    header_str(req, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok())
}

fn require_content_type(req: &HttpRequest, allowed: &[&str], expected: &'static str) -> Result<(), DomainError> {
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default();
        let base = ct.split(';').next().map(str::trim).unwrap_or_default();
        if !allowed.contains(&base) {
            return Err(DomainError::UnsupportedMediaType {
                got: ct.chars().take(100).collect(),
                expected,
            });
        }
    }
    Ok(())
}

/// Upload the kernel's vmlinux (for kernels created with source `upload`)
#[utoipa::path(
    tag = "kernel-files",
    operation_id = "uploadKernelFile",
    params(KernelPath),
    request_body(content = Binary, content_type = "application/octet-stream",
        description = "An ELF vmlinux for the kernel's architecture, or an x86 bzImage for x86_64"),
    responses(
        (status = 200, description = "Stored and checked; the kernel is `ready`", body = KernelView,
            headers(("ETag" = String, description = "The kernel's new revision"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not-found`: no such kernel, or the organization does not own it", body = ErrorBody),
        (status = 408, description = "`request-timeout`: the body stalled or came too slowly; nothing is kept", body = ErrorBody),
        (status = 409, description = "`invalid-state`: the kernel is not `pending`, or was created for a bundle; `quota-exceeded`: the organization's stored bytes would exceed its quota", body = ErrorBody),
        (status = 413, description = "`too-large`: over `kernels.max_bytes`", body = ErrorBody),
        (status = 415, description = "`unsupported-media-type`: send `application/octet-stream`", body = ErrorBody),
        (status = 422, description = "`unsupported-kernel-format` (not an ELF executable or bzImage; the message names what was found), `architecture-mismatch` (a kernel for another machine), `checksum-mismatch`", body = ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[put("/kernels/{kernelID}/file")]
#[tracing::instrument(skip_all)]
async fn upload_kernel_file(
    req: HttpRequest,
    st: web::Data<AppState>,
    access: OrgRegion<KernelsWrite>,
    id: KernelRef,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    require_content_type(&req, &[OCTET], OCTET)?;
    upload_as(req, st, access, id, body, UploadKind::Vmlinux).await
}

/// Upload the kernel's bundle (for kernels created with source `upload-bundle`)
#[utoipa::path(
    tag = "kernel-files",
    operation_id = "uploadKernelBundle",
    params(KernelPath),
    request_body(content = Binary, content_type = "application/octet-stream",
        description = "A tar, tar.gz, tar.zst or tar.xz with `vmlinux`, optional `initrd.img` and optional `modules/` (other entries are refused)"),
    responses(
        (status = 200, description = "Unpacked, checked and stored; the kernel is `ready`", body = KernelView,
            headers(("ETag" = String, description = "The kernel's new revision"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not-found`: no such kernel, or the organization does not own it", body = ErrorBody),
        (status = 408, description = "`request-timeout`: the body stalled or came too slowly; nothing is kept", body = ErrorBody),
        (status = 409, description = "`invalid-state`: the kernel is not `pending`, or was created for a single vmlinux; `quota-exceeded`: the organization's stored bytes would exceed its quota", body = ErrorBody),
        (status = 413, description = "`too-large`: the bundle as sent is over `kernels.max_bytes`", body = ErrorBody),
        (status = 415, description = "`unsupported-media-type`: send `application/octet-stream`, `application/x-tar`, `application/gzip`, `application/zstd` or `application/x-xz`", body = ErrorBody),
        (status = 422, description = "`invalid-archive` (not a tar, a refused entry, a path leaving the bundle, too many entries or bytes, no vmlinux), `unsupported-kernel-format`, `architecture-mismatch`, `checksum-mismatch`", body = ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[put("/kernels/{kernelID}/bundle")]
#[tracing::instrument(skip_all)]
async fn upload_kernel_bundle(
    req: HttpRequest,
    st: web::Data<AppState>,
    access: OrgRegion<KernelsWrite>,
    id: KernelRef,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    require_content_type(
        &req,
        &[
            OCTET,
            "application/x-tar",
            "application/gzip",
            "application/zstd",
            "application/x-xz",
        ],
        "application/octet-stream, application/x-tar, application/gzip, application/zstd or application/x-xz",
    )?;
    upload_as(req, st, access, id, body, UploadKind::Bundle).await
}

async fn upload_as(
    req: HttpRequest,
    st: web::Data<AppState>,
    access: OrgRegion<KernelsWrite>,
    id: KernelRef,
    body: web::Payload,
    kind: UploadKind,
) -> ApiResult<HttpResponse> {
    let _in_flight = st.metrics.upload_started();
    let k = service::kernels::upload(&st, &access, id.0, kind, content_length(&req), body.into_stream()).await?;
    Ok(with_etag(StatusCode::OK, &k).json(KernelView::from(&k)))
}

/// Register (or update) a consumer of a kernel; while any is registered the kernel cannot be deleted
#[utoipa::path(
    tag = "kernels",
    operation_id = "putKernelConsumer",
    params(KernelConsumerPath),
    request_body = ConsumerRequest,
    responses(
        (status = 201, description = "Registered", body = ConsumerView),
        (status = 200, description = "Was already registered; kind and description updated", body = ConsumerView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, description = "`too-large`: the JSON body exceeds 64 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported-media-type`: send `application/json`", body = ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[put("/kernels/{kernelID}/consumers/{consumerID}")]
#[tracing::instrument(skip_all)]
async fn put_kernel_consumer(
    st: web::Data<AppState>,
    access: OrgRegion<KernelsWrite>,
    kernel: KernelRef,
    consumer: ConsumerRef,
    body: JsonObject<ConsumerRequest>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let (row, created) =
        service::kernels::register_consumer(&st, &access, kernel.0, &consumer.0, b.kind, b.description).await?;
    let mut res = if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(res.json(ConsumerView::from(&row)))
}

/// List a kernel's consumers (the owner sees all; others see their own)
#[utoipa::path(
    tag = "kernels",
    operation_id = "listKernelConsumers",
    params(KernelPath),
    responses(
        (status = 200, description = "Consumers", body = Vec<ConsumerView>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[get("/kernels/{kernelID}/consumers")]
#[tracing::instrument(skip_all)]
async fn list_kernel_consumers(
    st: web::Data<AppState>,
    access: OrgRegion<KernelsRead>,
    kernel: KernelRef,
) -> ApiResult<HttpResponse> {
    let rows = service::kernels::list_consumers(&st, &access, kernel.0).await?;
    Ok(HttpResponse::Ok().json(rows.iter().map(ConsumerView::from).collect::<Vec<_>>()))
}

/// Unregister a consumer of a kernel
#[utoipa::path(
    tag = "kernels",
    operation_id = "deleteKernelConsumer",
    params(KernelConsumerPath),
    responses(
        (status = 204, description = "Unregistered"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not-found`: no such kernel or no such consumer of this organization", body = ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[delete("/kernels/{kernelID}/consumers/{consumerID}")]
#[tracing::instrument(skip_all)]
async fn delete_kernel_consumer(
    st: web::Data<AppState>,
    access: OrgRegion<KernelsWrite>,
    kernel: KernelRef,
    consumer: ConsumerRef,
) -> ApiResult<HttpResponse> {
    service::kernels::unregister_consumer(&st, &access, kernel.0, &consumer.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Download one of the kernel's files (single byte ranges supported)
#[utoipa::path(
    tag = "kernel-files",
    operation_id = "downloadKernelFile",
    params(KernelFilePath,
        ("Range" = Option<String>, Header, nullable = false, description = "One range, e.g. `bytes=0-511`; multiple ranges get the whole file"),
        ("If-Range" = Option<String>, Header, nullable = false, description = "The file's ETag: the Range applies only if it is still current"),
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "ETags the client holds; a current one gives 304 without a body"),
    ),
    responses(
        (status = 304, description = "Not modified: the `If-None-Match` ETag is current",
            headers(("ETag" = String, description = "The quoted sha256 of the file"))),
        (status = 200, description = "The whole file", content_type = "application/octet-stream", body = Binary,
            headers(("Content-Length" = u64, description = "Size"), ("ETag" = String, description = "The quoted sha256"), ("Accept-Ranges" = String, description = "bytes"))),
        (status = 206, description = "The requested range", content_type = "application/octet-stream", body = Binary,
            headers(("Content-Range" = String, description = "bytes START-END/SIZE"), ("Content-Length" = u64, description = "Length of the range"), ("ETag" = String, description = "The quoted sha256"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not-found`: no such kernel, or it has no such file (e.g. no initrd)", body = ErrorBody),
        (status = 409, description = "`invalid-state`: the kernel is not `ready`", body = ErrorBody),
        (status = 416, description = "`range-not-satisfiable`: the range starts past the end", body = ErrorBody,
            headers(("Content-Range" = String, description = "bytes */SIZE"))),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[get("/kernels/{kernelID}/{artifact}")]
#[tracing::instrument(skip_all)]
async fn download_kernel_file(
    req: HttpRequest,
    st: web::Data<AppState>,
    access: OrgRegion<KernelsRead>,
    id: KernelRef,
    artifact: ArtifactRef,
) -> ApiResult<HttpResponse> {
    let file = service::kernels::downloadable(&st, &access, id.0, artifact.0).await?;
    let etag = file.info.etag();
    if let Some(res) = super::not_modified(&req, &etag) {
        return Ok(res);
    }
    let dl = service::kernels::download(
        &access,
        &file,
        header_str(&req, header::RANGE),
        header_str(&req, header::IF_RANGE),
    )
    .await?;
    Ok(super::file_response(dl, etag))
}

/// A kernel file's size and ETag, without its bytes
#[utoipa::path(
    tag = "kernels",
    operation_id = "headKernelArtifact",
    params(KernelFilePath,
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
        (status = 404, description = "`not-found`: no such kernel, or it has no such file (e.g. no initrd)", body = ErrorBody),
        (status = 409, description = "`invalid-state`: the kernel is not `ready`", body = ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[head("/kernels/{kernelID}/{artifact}")]
#[tracing::instrument(skip_all)]
async fn head_kernel_file(
    req: HttpRequest,
    st: web::Data<AppState>,
    access: OrgRegion<KernelsRead>,
    id: KernelRef,
    artifact: ArtifactRef,
) -> ApiResult<HttpResponse> {
    let file = service::kernels::downloadable(&st, &access, id.0, artifact.0).await?;
    let etag = file.info.etag();
    if let Some(res) = super::not_modified(&req, &etag) {
        return Ok(res);
    }
    Ok(super::head_of_file(&etag, file.info.size))
}

/// The kernel catalog: downloadable bundles the operator offers
#[utoipa::path(
    tag = "kernels",
    operation_id = "listKernelCatalog",
    params(OrgRegionPath),
    responses(
        (status = 200, description = "Every entry, with whether this organization (or the platform) already has a kernel from it", body = Vec<KernelCatalogItem>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[get("/kernel-catalog")]
#[tracing::instrument(skip_all)]
async fn list_kernel_catalog(st: web::Data<AppState>, access: OrgRegion<KernelsRead>) -> ApiResult<HttpResponse> {
    let items = service::kernels::catalog(&st, &access).await?;
    Ok(HttpResponse::Ok().json(items.iter().map(KernelCatalogItem::from).collect::<Vec<_>>()))
}

/// Query kernels in a region across the organizations the caller may read
#[utoipa::path(
    tag = "query",
    operation_id = "queryKernels",
    params(RegionPath, QueryParamsDoc),
    responses(
        (status = 200, description = "One page of kernels, keyset-paged (the same parameters as the image query)", body = KernelPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[get("/regions/{regionID}/kernels")]
#[tracing::instrument(skip_all)]
async fn query_kernels(
    st: web::Data<AppState>,
    access: RegionAccess<KernelsRead>,
    params: web::Query<Vec<(String, String)>>,
) -> ApiResult<HttpResponse> {
    let page = service::kernels::query(&st, &access, &params).await?;
    Ok(HttpResponse::Ok().json(KernelPage {
        items: page.items.iter().map(KernelView::from).collect(),
        next_page_token: page.next_page_token,
    }))
}
