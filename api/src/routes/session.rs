use actix_web::{HttpResponse, get, web};

use crate::model::{RegionList, RegionView, SignInInfo};
use crate::openapi::{Internal, Unauthorized};
use crate::service;
use crate::state::AppState;
use crate::tenancy::Authenticated;

/// The regions the caller can use
///
/// Every region for a platform admin; otherwise the regions whose allow-list admits one of the
/// token's organizations. Regions closed to the caller are not listed.
#[utoipa::path(
    tag = "query",
    operation_id = "listRegions",
    responses(
        (status = 200, description = "The caller's regions", body = RegionList),
        (status = 401, response = Unauthorized),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[get("/regions")]
async fn list_regions(st: web::Data<AppState>, caller: Authenticated) -> HttpResponse {
    let items = service::session::visible_regions(&st, &caller.0)
        .into_iter()
        .map(|id| RegionView { id: id.to_string() })
        .collect();
    HttpResponse::Ok().json(RegionList { items })
}

/// How to obtain a token here
///
/// Answers without a token, for a sign-in page: whether the development signing key is trusted
/// (then `strata token` on the server mints tokens).
#[utoipa::path(
    tag = "query",
    operation_id = "getSignInInfo",
    responses(
        (status = 200, description = "Sign-in hints", body = SignInInfo),
        (status = 500, response = Internal),
    ),
    security(())
)]
#[get("/sign-in")]
async fn sign_in_info(st: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(SignInInfo {
        dev_key: service::session::dev_key_enabled(&st),
    })
}
