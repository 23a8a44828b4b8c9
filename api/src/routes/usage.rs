use actix_web::{HttpResponse, get, web};

use crate::error::ApiResult;
use crate::model::{OrgRegionPath, Quota, UsageView};
use crate::openapi::{BadRequest, Forbidden, Internal, NotFound, Unauthorized};
use crate::state::AppState;
use crate::tenancy::{ImagesRead, OrgRegion};

/// The organization's usage in the region against its quotas
#[utoipa::path(
    tag = "images",
    operation_id = "getUsage",
    params(OrgRegionPath),
    responses(
        (status = 200, description = "Usage and limits", body = UsageView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[get("/usage")]
async fn get_usage(st: web::Data<AppState>, access: OrgRegion<ImagesRead>) -> ApiResult<HttpResponse> {
    let (used, limits) = crate::service::images::usage(&st, &access).await?;
    Ok(HttpResponse::Ok().json(UsageView {
        images: Quota {
            used: used.images,
            limit: limits.images,
        },
        bytes: Quota {
            used: used.bytes,
            limit: limits.bytes,
        },
        concurrent_imports: Quota {
            used: used.importing,
            limit: limits.concurrent_imports,
        },
    }))
}
