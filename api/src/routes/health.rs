use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, get, web};
use sea_orm::ConnectionTrait;

use crate::model::Health;
use crate::state::AppState;

/// The process is alive
#[utoipa::path(
    tag = "health",
    operation_id = "healthz",
    responses((status = 200, description = "Alive", body = Health)),
    security(())
)]
#[get("/healthz")]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".into(),
        checks: BTreeMap::new(),
    })
}

/// The database and every region's storage are reachable
///
/// Without a token (or with one that is not a platform admin's) `checks` holds only `database` and
/// `storage` (all regions together), so region names cannot be discovered here. A platform admin's
/// token adds one `region:<id>` entry per region. Each unreachable region is always logged.
#[utoipa::path(
    tag = "health",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready to serve", body = Health),
        (status = 503, description = "A dependency is unreachable; `checks` says which", body = Health),
    ),
    security((), ("bearer" = []))
)]
#[get("/readyz")]
pub(crate) async fn readyz(req: HttpRequest, st: web::Data<AppState>) -> HttpResponse {
    let detailed = crate::tenancy::optional_principal(&req).is_some_and(|p| p.platform_admin);
    let mut checks = BTreeMap::new();
    let db_ok = match st.db.execute_unprepared("SELECT 1").await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            false
        }
    };
    checks.insert(
        "database".to_owned(),
        if db_ok { "ok" } else { "unreachable" }.to_owned(),
    );
    let mut storage_ok = true;
    for (id, region) in &st.regions {
        let ok = match region.store.check().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(region = %id, error = %e, "readiness: storage unreachable");
                false
            }
        };
        storage_ok &= ok;
        if detailed {
            checks.insert(format!("region:{id}"), if ok { "ok" } else { "unreachable" }.to_owned());
        }
    }
    checks.insert(
        "storage".to_owned(),
        if storage_ok { "ok" } else { "unreachable" }.to_owned(),
    );
    let all_ok = db_ok && storage_ok;
    let body = Health {
        status: if all_ok { "ok" } else { "unavailable" }.into(),
        checks,
    };
    if all_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
