//! The operator's defaults: `POST /api/v1/regions/{regionID}/defaults:ensure`.

use actix_web::{HttpResponse, post, web};
use serde::Serialize;
use strata_domain::image::ReasonCode;
use utoipa::ToSchema;

use crate::config::DefaultKind;
use crate::error::ApiResult;
use crate::model::RegionPath;
use crate::openapi::{BadRequest, Forbidden, Internal, NotFound, Unauthorized};
use crate::service::defaults::{self, DefaultState, DefaultStatus};
use crate::state::AppState;
use crate::tenancy::PlatformRegion;

/// What a default is.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DefaultKindView {
    Kernel,
    Image,
}

/// Where a default stands: `present` (ready), `importing`, `failed` (see `reason`), or
/// `conflict` (a global artifact of that name with another sha256 exists; left alone).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DefaultStateView {
    Present,
    Importing,
    Failed,
    Conflict,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefaultStatusView {
    pub kind: DefaultKindView,
    pub name: String,
    pub state: DefaultStateView,
    /// The global kernel's or image's id, when there is one.
    pub id: Option<uuid::Uuid>,
    /// Why it failed or conflicts.
    pub reason: Option<String>,
    pub reason_code: Option<ReasonCode>,
}

impl From<DefaultStatus> for DefaultStatusView {
    fn from(d: DefaultStatus) -> Self {
        Self {
            kind: match d.kind {
                DefaultKind::Kernel => DefaultKindView::Kernel,
                DefaultKind::Image => DefaultKindView::Image,
            },
            name: d.name,
            state: match d.state {
                DefaultState::Present => DefaultStateView::Present,
                DefaultState::Importing => DefaultStateView::Importing,
                DefaultState::Failed => DefaultStateView::Failed,
                DefaultState::Conflict => DefaultStateView::Conflict,
            },
            id: d.id,
            reason: d.reason,
            reason_code: d.reason_code,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefaultsReport {
    pub region_id: String,
    /// Every default configured for this region, in configuration order.
    pub defaults: Vec<DefaultStatusView>,
}

/// Import the platform's missing default kernels and images in a region
///
/// Platform admins only. Defaults come from the server's `[[defaults]]` configuration; each is
/// identified by its name and sha256. Missing ones are imported as global artifacts (the response
/// says `importing`; poll the kernel or image); existing ones are left alone. Idempotent, and safe
/// when several replicas reconcile at once: each default is imported exactly once.
#[utoipa::path(
    tag = "defaults",
    operation_id = "ensureDefaults",
    params(RegionPath),
    responses(
        (status = 200, description = "Where every default of this region stands", body = DefaultsReport),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
    security(("bearer" = []))
)]
#[post("/regions/{regionID}/defaults:ensure")]
#[tracing::instrument(skip_all)]
async fn ensure_defaults(st: web::Data<AppState>, access: PlatformRegion) -> ApiResult<HttpResponse> {
    let list = defaults::ensure(&st, access.region_id()).await?;
    Ok(HttpResponse::Ok().json(DefaultsReport {
        region_id: access.region_id().to_string(),
        defaults: list.into_iter().map(DefaultStatusView::from).collect(),
    }))
}
