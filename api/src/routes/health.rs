use std::collections::BTreeMap;

use actix_web::{HttpResponse, get, web};
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
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".into(),
        checks: BTreeMap::new(),
    })
}

/// The database and every region's storage are reachable
#[utoipa::path(
    tag = "health",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready to serve", body = Health),
        (status = 503, description = "A dependency is unreachable; `checks` says which", body = Health),
    ),
    security(())
)]
#[get("/readyz")]
async fn readyz(st: web::Data<AppState>) -> HttpResponse {
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
    let mut all_ok = db_ok;
    for (id, region) in &st.regions {
        let ok = match region.store.check().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(region = %id, error = %e, "readiness: storage unreachable");
                false
            }
        };
        all_ok &= ok;
        checks.insert(format!("region:{id}"), if ok { "ok" } else { "unreachable" }.to_owned());
    }
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
