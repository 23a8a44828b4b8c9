use actix_web::{HttpResponse, get, web};

use crate::error::ApiResult;
use crate::model::{ImagePage, ImageView, QueryParamsDoc, RegionPath};
use crate::openapi::{BadRequest, Forbidden, Internal, NotFound, Unauthorized};
use crate::service;
use crate::state::AppState;
use crate::tenancy::{ImagesRead, RegionAccess};

/// Query images in a region across the organizations the caller may read
#[utoipa::path(
    tag = "query",
    operation_id = "queryImages",
    params(RegionPath, QueryParamsDoc),
    responses(
        (status = 200, description = "One page of images, keyset-paged", body = ImagePage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[get("/regions/{regionID}/images")]
async fn query_images(
    st: web::Data<AppState>,
    access: RegionAccess<ImagesRead>,
    params: web::Query<Vec<(String, String)>>,
) -> ApiResult<HttpResponse> {
    let page = service::query::run(&st, &access, &params).await?;
    Ok(HttpResponse::Ok().json(ImagePage {
        items: page.items.iter().map(ImageView::from).collect(),
        next_page_token: page.next_page_token,
    }))
}
