use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use strata_domain::DomainError;

use crate::error::ApiResult;
use crate::extract::JsonObject;
use crate::model::{CreateImageRequest, ImagePath, ImageView, ListParams, OrgRegionPath, PatchImageRequest};
use crate::openapi::{BadRequest, Forbidden, Internal, NotFound, Unauthorized};
use crate::service;
use crate::state::AppState;
use crate::tenancy::{ImageRef, ImagesRead, ImagesWrite, OrgRegion};

fn with_etag(status: actix_web::http::StatusCode, img: &strata_domain::image::Image) -> actix_web::HttpResponseBuilder {
    let mut b = HttpResponse::build(status);
    b.insert_header((header::ETAG, img.etag()));
    b
}

/// List images the organization can see in the region
#[utoipa::path(
    tag = "images",
    operation_id = "listImages",
    params(OrgRegionPath, ListParams),
    responses(
        (status = 200, description = "The organization's images and, unless `scope=owned`, the global ones, by name; one page of them (`limit`, default 10000)", body = Vec<ImageView>,
            headers(("Next-Page-Token" = String, description = "Present when more images follow: pass it as `pageToken` for the next page"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[get("/images")]
async fn list_images(
    st: web::Data<AppState>,
    access: OrgRegion<ImagesRead>,
    params: web::Query<ListParams>,
) -> ApiResult<HttpResponse> {
    let owned = match params.scope.as_deref() {
        None | Some("available") => false,
        Some("owned") => true,
        Some(_) => return Err(DomainError::invalid("scope", "must be owned or available").into()),
    };
    let page = service::images::list(&st, &access, owned, params.limit, params.page_token.as_deref()).await?;
    let mut res = HttpResponse::Ok();
    if let Some(token) = &page.next_page_token {
        res.insert_header(("Next-Page-Token", token.as_str()));
    }
    Ok(res.json(page.items.iter().map(ImageView::from).collect::<Vec<_>>()))
}

/// Create an image: `pending` for uploads (`PUT .../file`), `importing` for URL imports and OCI pulls
#[utoipa::path(
    tag = "images",
    operation_id = "createImage",
    params(OrgRegionPath),
    request_body = CreateImageRequest,
    responses(
        (status = 201, description = "Created, in state `pending` (upload) or `importing` (URL, OCI)", body = ImageView,
            headers(("Location" = String, description = "URL of the new image"), ("ETag" = String, description = "Revision"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "`name-taken`: an image of that name exists in this organization (or among global images) in this region; `quota-exceeded`: the organization's image count or concurrent imports would exceed its quota (the message says which)", body = crate::error::ErrorBody),
        (status = 413, description = "`too-large`: the JSON body exceeds 64 KiB", body = crate::error::ErrorBody),
        (status = 415, description = "`unsupported-media-type`: send `application/json`", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid-kernel`: `kernelId` names a kernel this image cannot use (not visible to the image's organization, another region or architecture, not `ready`). URL imports, checked before anything is created: `url-not-allowed` (scheme, port, deny list, or an address that is not public, also after a redirect), `fetch-failed` (upstream status, timeout or connection error while reading the first 512 bytes), `unsupported-disk-format` (the first 512 bytes are not a raw disk). OCI pulls, checked before anything is created: `url-not-allowed` (the registry's address or port is refused by the import policy), `fetch-failed` (the registry refused or lacks the manifest, or could not be reached; the message gives its answer), `platform-not-found` (the index has no manifest for the platform; the message lists those it has)", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[post("/images")]
async fn create_image(
    req: HttpRequest,
    st: web::Data<AppState>,
    access: OrgRegion<ImagesWrite>,
    body: JsonObject<CreateImageRequest>,
) -> ApiResult<HttpResponse> {
    let img = service::images::create(&st, &access, body.into_inner().try_into()?).await?;
    let location = format!("{}/{}", req.path().trim_end_matches('/'), img.id);
    Ok(with_etag(actix_web::http::StatusCode::CREATED, &img)
        .insert_header((header::LOCATION, location))
        .json(ImageView::from(&img)))
}

/// Get one image
#[utoipa::path(
    tag = "images",
    operation_id = "getImage",
    params(ImagePath, ("If-None-Match" = Option<String>, Header, nullable = false, description = "ETags the client holds; a current one gives 304 without a body")),
    responses(
        (status = 200, description = "The image", body = ImageView, headers(("ETag" = String, description = "Revision, for If-Match"))),
        (status = 304, description = "Not modified: the `If-None-Match` ETag is current", headers(("ETag" = String, description = "Revision"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[get("/images/{imageID}")]
async fn get_image(
    req: HttpRequest,
    st: web::Data<AppState>,
    access: OrgRegion<ImagesRead>,
    id: ImageRef,
) -> ApiResult<HttpResponse> {
    let img = service::images::find_visible(&st, &access, id.0).await?;
    if let Some(res) = super::not_modified(&req, &img.etag()) {
        return Ok(res);
    }
    Ok(with_etag(actix_web::http::StatusCode::OK, &img).json(ImageView::from(&img)))
}

/// Change name, description, tags, protection or kernel (JSON merge patch)
#[utoipa::path(
    tag = "images",
    operation_id = "patchImage",
    params(ImagePath, ("If-Match" = Option<String>, Header, nullable = false, description = "ETag the change is based on; a stale one gives 412")),
    request_body(content = PatchImageRequest, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "The changed image", body = ImageView, headers(("ETag" = String, description = "New revision"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not-found`: no such image, or the organization does not own it", body = crate::error::ErrorBody),
        (status = 409, description = "`name-taken`: the new name is in use", body = crate::error::ErrorBody),
        (status = 412, description = "`precondition-failed`: the image changed since the If-Match ETag", body = crate::error::ErrorBody),
        (status = 413, description = "`too-large`: the JSON body exceeds 64 KiB", body = crate::error::ErrorBody),
        (status = 415, description = "`unsupported-media-type`: send JSON", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid-kernel`: `kernelId` names a kernel this image cannot use (not visible to the image's organization, another region or architecture, not `ready`)", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[patch("/images/{imageID}")]
async fn patch_image(
    req: HttpRequest,
    st: web::Data<AppState>,
    access: OrgRegion<ImagesWrite>,
    id: ImageRef,
    body: JsonObject<PatchImageRequest>,
) -> ApiResult<HttpResponse> {
    let if_match = match req.headers().get(header::IF_MATCH) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| DomainError::invalid("If-Match", "must be ASCII"))?,
        ),
        None => None,
    };
    let img = service::images::patch(&st, &access, id.0, body.into_inner().try_into()?, if_match).await?;
    Ok(with_etag(actix_web::http::StatusCode::OK, &img).json(ImageView::from(&img)))
}

/// Delete an image and its bytes
#[utoipa::path(
    tag = "images",
    operation_id = "deleteImage",
    params(ImagePath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not-found`: no such image, or the organization does not own it", body = crate::error::ErrorBody),
        (status = 409, description = "`image-protected`: unprotect it first; `image-in-use`: consumers are registered (the message names them)", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[delete("/images/{imageID}")]
async fn delete_image(
    st: web::Data<AppState>,
    access: OrgRegion<ImagesWrite>,
    id: ImageRef,
) -> ApiResult<HttpResponse> {
    service::images::delete(&st, &access, id.0).await?;
    Ok(HttpResponse::NoContent().finish())
}
