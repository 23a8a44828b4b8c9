use actix_web::{HttpResponse, delete, get, put, web};

use crate::error::{ApiResult, ErrorBody};
use crate::extract::JsonObject;
use crate::model::{ConsumerPath, ConsumerRequest, ConsumerView, ImagePath};
use crate::openapi::{BadRequest, Forbidden, Internal, NotFound, Unauthorized};
use crate::service;
use crate::state::AppState;
use crate::tenancy::{ConsumerRef, ImageRef, ImagesRead, ImagesWrite, OrgRegion};

/// Register (or update) a consumer of an image; while any is registered the image cannot be deleted
#[utoipa::path(
    tag = "consumers",
    operation_id = "putImageConsumer",
    params(ConsumerPath),
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
#[put("/images/{imageID}/consumers/{consumerID}")]
async fn put_consumer(
    st: web::Data<AppState>,
    access: OrgRegion<ImagesWrite>,
    image: ImageRef,
    consumer: ConsumerRef,
    body: JsonObject<ConsumerRequest>,
) -> ApiResult<HttpResponse> {
    let cmd = body.into_inner().try_into()?;
    let (row, created) = service::consumers::register(&st, &access, image.0, &consumer.0, cmd).await?;
    let mut res = if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(res.json(ConsumerView::from(&row)))
}

/// List an image's consumers (the owner sees all; others see their own)
#[utoipa::path(
    tag = "consumers",
    operation_id = "listImageConsumers",
    params(ImagePath),
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
#[get("/images/{imageID}/consumers")]
async fn list_consumers(
    st: web::Data<AppState>,
    access: OrgRegion<ImagesRead>,
    image: ImageRef,
) -> ApiResult<HttpResponse> {
    let rows = service::consumers::list(&st, &access, image.0).await?;
    Ok(HttpResponse::Ok().json(rows.iter().map(ConsumerView::from).collect::<Vec<_>>()))
}

/// Unregister a consumer
#[utoipa::path(
    tag = "consumers",
    operation_id = "deleteImageConsumer",
    params(ConsumerPath),
    responses(
        (status = 204, description = "Unregistered"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not-found`: no such image or no such consumer of this organization", body = ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[delete("/images/{imageID}/consumers/{consumerID}")]
async fn delete_consumer(
    st: web::Data<AppState>,
    access: OrgRegion<ImagesWrite>,
    image: ImageRef,
    consumer: ConsumerRef,
) -> ApiResult<HttpResponse> {
    service::consumers::unregister(&st, &access, image.0, &consumer.0).await?;
    Ok(HttpResponse::NoContent().finish())
}
