//! A Docker Engine API subset at `/docker/{organizationID}/{regionID}` (with or without the
//! `/v1.NN` prefix), enough for `docker load`, `docker tag`, `docker images`, `docker image
//! inspect` and `docker rmi`. Tenancy, regions and scopes come from the same `OrgRegion`
//! extractor as v1. Errors are the one `ApiError`, rendered in Docker's envelope
//! (`{"message": ...}`, statuses 400/401/403/404/409/500) by [`docker_envelope`].
//!
//! Not part of the OpenAPI document: Docker's own API reference describes these operations, and
//! the real docker CLI is what the tests drive.

use std::collections::BTreeMap;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpRequest, HttpResponse, web};
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use strata_domain::reference::Reference;

use crate::db::docker::DockerImage;
use crate::error::{ApiError, ApiResult, Rendered};
use crate::service::docker::{self, API_VERSION, LoadLine, MIN_API_VERSION, Removed};
use crate::state::AppState;
use crate::tenancy::{ImagesRead, ImagesWrite, OrgRegion};

const BASE: &str = "/docker/{organizationID}/{regionID}";

pub fn configure(cfg: &mut web::ServiceConfig) {
    // The versioned prefix first: `/v1.43/_ping` must not be read as an image name.
    for prefix in [format!(r"{BASE}/v{{apiVersion:[0-9]+\.[0-9]+}}"), BASE.to_owned()] {
        cfg.service(
            web::scope(&prefix)
                .wrap(from_fn(docker_envelope))
                .route("/_ping", web::get().to(ping))
                .route("/_ping", web::head().to(ping))
                .route("/version", web::get().to(version))
                .route("/info", web::get().to(info))
                .route("/images/json", web::get().to(list_images))
                .route("/images/load", web::post().to(load))
                .route("/images/create", web::post().to(create))
                .route("/images/{name:.+}/json", web::get().to(inspect))
                .route("/images/{name:.+}/tag", web::post().to(tag))
                .route("/images/{name:.+}", web::delete().to(remove))
                .default_service(web::to(not_found)),
        );
    }
}

/// Docker's statuses for our error codes.
fn docker_status(status: StatusCode) -> StatusCode {
    match status.as_u16() {
        401 | 403 | 404 | 409 => status,
        400..=499 => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn envelope(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(docker_status(status)).json(json!({ "message": message }))
}

/// Re-renders every error of the wrapped routes (what `ApiError::error_response` made, or the
/// framework's own) as Docker does: `{"message": ...}`.
async fn docker_envelope(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // (Handlers' and extractors' errors arrive here as responses; the request must not be
    // cloned before the call: routing inside the scope needs it unshared.)
    let res = next.call(req).await?;
    let rendered = res.response().extensions().get::<Rendered>().cloned();
    match rendered {
        None if res.status().is_client_error() || res.status().is_server_error() => {
            let status = res.status();
            let (req, _) = res.into_parts();
            let reason = status.canonical_reason().unwrap_or("error").to_ascii_lowercase();
            Ok(ServiceResponse::new(req, envelope(status, &reason)))
        }
        None => Ok(res.map_into_boxed_body()),
        Some(e) => {
            let status = res.status();
            let (req, _) = res.into_parts();
            // Docker's own words for a name that resolves to nothing.
            let message = match (e.code, req.match_info().get("name")) {
                ("not-found", Some(name)) => format!("No such image: {name}"),
                _ => e.message,
            };
            let mut out = envelope(status, &message);
            if status == StatusCode::UNAUTHORIZED {
                out.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"strata\""),
                );
            }
            Ok(ServiceResponse::new(req, out))
        }
    }
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    envelope(
        StatusCode::NOT_FOUND,
        &format!("page not found: {} is not part of Strata's Docker API", req.path()),
    )
}

fn engine_headers(res: &mut actix_web::HttpResponseBuilder) {
    res.insert_header(("Api-Version", API_VERSION))
        .insert_header(("Docker-Experimental", "false"))
        .insert_header(("Ostype", "linux"))
        .insert_header((header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"));
}

async fn ping(req: HttpRequest, _access: OrgRegion<ImagesRead>) -> HttpResponse {
    let mut res = HttpResponse::Ok();
    engine_headers(&mut res);
    if req.method() == actix_web::http::Method::HEAD {
        return res.content_type("text/plain; charset=utf-8").finish();
    }
    res.content_type("text/plain; charset=utf-8").body("OK")
}

fn docker_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    }
}

async fn version(access: OrgRegion<ImagesRead>) -> HttpResponse {
    let v = env!("CARGO_PKG_VERSION");
    let mut res = HttpResponse::Ok();
    engine_headers(&mut res);
    res.json(json!({
        "Platform": {"Name": format!("Strata (region {})", access.region_id())},
        "Components": [{"Name": "Engine", "Version": v, "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": docker_arch()}}],
        "Version": v,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": docker_arch(),
        "KernelVersion": "",
        "BuildTime": "",
    }))
}

async fn info(st: web::Data<AppState>, access: OrgRegion<ImagesRead>) -> ApiResult<HttpResponse> {
    let images = docker::list(&st, &access).await?.len();
    let mut res = HttpResponse::Ok();
    engine_headers(&mut res);
    Ok(res.json(json!({
        "ID": format!("strata-{}-{}", access.org, access.region_id()),
        "Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0, "ContainersStopped": 0,
        "Images": images,
        "Driver": "strata-ext4",
        "OSType": "linux",
        "OperatingSystem": "Strata",
        "Architecture": std::env::consts::ARCH,
        "Name": "strata",
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "NCPU": std::thread::available_parallelism().map_or(1, usize::from),
        "MemTotal": 0,
        "Labels": [],
        "Warnings": [],
    })))
}

#[derive(Debug, Deserialize)]
struct LoadQuery {
    #[serde(default)]
    quiet: Option<String>,
}

fn truthy(v: Option<&str>) -> bool {
    matches!(v, Some("1" | "true" | "True" | "TRUE"))
}

async fn load(
    st: web::Data<AppState>,
    access: OrgRegion<ImagesWrite>,
    q: web::Query<LoadQuery>,
    body: web::Payload,
) -> HttpResponse {
    let quiet = truthy(q.quiet.as_deref());
    let _in_flight = st.metrics.upload_started();
    let mut out = String::new();
    let line = |v: Value, out: &mut String| {
        out.push_str(&v.to_string());
        out.push('\n');
    };
    match docker::load(&st, &access, body.into_stream()).await {
        Ok(lines) => {
            for l in lines {
                match l {
                    LoadLine::Layer { id, bytes } if !quiet => line(
                        json!({"status": "Loading layer", "progressDetail": {"current": bytes, "total": bytes}, "id": id}),
                        &mut out,
                    ),
                    LoadLine::Layer { .. } => {}
                    LoadLine::Tagged(t) => line(json!({"stream": format!("Loaded image: {t}\n")}), &mut out),
                    LoadLine::Untagged(id) => line(json!({"stream": format!("Loaded image ID: {id}\n")}), &mut out),
                }
            }
        }
        // As Docker does: the load's own failure is a line of the stream, after a 200.
        Err(e) => {
            let message = match &e {
                ApiError::Domain(d) => d.to_string(),
                ApiError::Internal(cause) => {
                    tracing::error!(error = format!("{cause:#}"), "docker load failed");
                    "internal server error; quote the request id when reporting it".to_owned()
                }
            };
            tracing::info!(error = message, "docker load refused");
            line(json!({"errorDetail": {"message": message}, "error": message}), &mut out);
        }
    }
    let mut res = HttpResponse::Ok();
    engine_headers(&mut res);
    res.content_type("application/json").body(out)
}

/// `POST /images/create`: only `fromSrc=-` (`docker import`, the body is the tar); pulling from a
/// registry (`fromImage`) is the v1 API's OCI import, not this one.
async fn create(
    st: web::Data<AppState>,
    access: OrgRegion<ImagesWrite>,
    q: web::Query<Vec<(String, String)>>,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    if get("fromSrc") != Some("-") {
        return Err(strata_domain::DomainError::invalid(
            "fromSrc",
            "only docker import from the request body (fromSrc=-) is supported; pull images with the v1 API",
        )
        .into());
    }
    let changes: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "changes")
        .map(|(_, v)| v.clone())
        .collect();
    let _in_flight = st.metrics.upload_started();
    let id = docker::import(&st, &access, body.into_stream(), get("repo"), get("tag"), &changes).await?;
    let mut res = HttpResponse::Ok();
    engine_headers(&mut res);
    Ok(res
        .content_type("application/json")
        .body(format!("{}\n", json!({ "status": id }))))
}

#[derive(Debug, Deserialize)]
struct TagQuery {
    repo: String,
    tag: Option<String>,
}

async fn tag(
    st: web::Data<AppState>,
    access: OrgRegion<ImagesWrite>,
    req: HttpRequest,
    q: web::Query<TagQuery>,
) -> ApiResult<HttpResponse> {
    let name = image_name(&req);
    docker::tag(&st, &access, &name, &q.repo, q.tag.as_deref()).await?;
    Ok(HttpResponse::Created().finish())
}

/// The `{name}` of `/images/{name}/...` (it may hold `/`: `team/app:1`).
fn image_name(req: &HttpRequest) -> String {
    req.match_info().get("name").unwrap_or_default().to_owned()
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    filters: Option<String>,
    #[serde(default)]
    all: Option<String>,
}

/// `filters` in either of Docker's encodings: `{"reference": ["a"]}` or `{"reference": {"a": true}}`.
fn parse_filters(raw: Option<&str>) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let v: Value = serde_json::from_str(raw)
        .map_err(|_| ApiError::from(strata_domain::DomainError::invalid("filters", "not valid JSON")))?;
    let mut out = BTreeMap::new();
    for (k, vals) in v.as_object().into_iter().flatten() {
        let list: Vec<String> = match vals {
            Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
            Value::Object(o) => o
                .iter()
                .filter(|(_, on)| on.as_bool() == Some(true))
                .map(|(k, _)| k.clone())
                .collect(),
            _ => vec![],
        };
        if !matches!(k.as_str(), "reference" | "dangling" | "label" | "before" | "since") {
            return Err(strata_domain::DomainError::invalid("filters", format!("invalid filter '{k}'")).into());
        }
        out.insert(k.clone(), list);
    }
    Ok(out)
}

/// Docker's `reference` filter: a glob over `repo` (when the pattern has no tag) or `repo:tag`.
fn reference_matches(pattern: &str, tags: &[String]) -> bool {
    let pat_has_tag = pattern.rsplit('/').next().is_some_and(|last| last.contains(':'));
    tags.iter().filter_map(|t| Reference::parse(t).ok()).any(|r| {
        let candidates = if pat_has_tag {
            vec![r.familiar(), r.to_string()]
        } else {
            vec![r.familiar_name(), format!("{}/{}", r.registry(), r.repository())]
        };
        candidates.iter().any(|c| glob(pattern, c))
    })
}

fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, rest)) => {
            let Some(tail) = s.strip_prefix(head) else { return false };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && glob(rest, &tail[i..]))
        }
    }
}

fn familiar_tags(img: &DockerImage) -> Vec<String> {
    img.tags
        .iter()
        .map(|t| Reference::parse(t).map_or_else(|_| t.clone(), |r| r.familiar()))
        .collect()
}

fn config_of(img: &DockerImage) -> Value {
    serde_json::from_str(&img.config).unwrap_or(Value::Null)
}

async fn list_images(
    st: web::Data<AppState>,
    access: OrgRegion<ImagesRead>,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let _ = &q.all;
    let filters = parse_filters(q.filters.as_deref())?;
    let images = docker::list(&st, &access).await?;
    let out: Vec<Value> = images
        .iter()
        .filter(|img| match filters.get("dangling").and_then(|d| d.first()) {
            Some(d) if d == "true" || d == "1" => img.tags.is_empty(),
            Some(_) => !img.tags.is_empty(),
            None => true,
        })
        .filter(|img| {
            filters
                .get("reference")
                .is_none_or(|pats| pats.iter().any(|p| reference_matches(p, &img.tags)))
        })
        .map(|img| {
            let labels = config_of(img)["config"]["Labels"].clone();
            // As Docker does: with a reference filter, only the tags that match are listed.
            let tags: Vec<String> = match filters.get("reference") {
                Some(pats) => img
                    .tags
                    .iter()
                    .filter(|t| pats.iter().any(|p| reference_matches(p, std::slice::from_ref(t))))
                    .map(|t| Reference::parse(t).map_or_else(|_| t.clone(), |r| r.familiar()))
                    .collect(),
                None => familiar_tags(img),
            };
            json!({
                "Id": img.docker_id,
                "ParentId": "",
                "RepoTags": tags,
                "RepoDigests": [],
                "Created": img.created,
                "Size": img.image.size_bytes.unwrap_or(0),
                "SharedSize": -1,
                "Labels": if labels.is_object() { labels } else { json!({}) },
                "Containers": -1,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

async fn inspect(st: web::Data<AppState>, access: OrgRegion<ImagesRead>, req: HttpRequest) -> ApiResult<HttpResponse> {
    let img = docker::resolve(&st, &access, &image_name(&req)).await?;
    let cfg = config_of(&img);
    let c = &cfg["config"];
    let pick = |k: &str| c.get(k).cloned().unwrap_or(Value::Null);
    let created = chrono::DateTime::from_timestamp(img.created, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    Ok(HttpResponse::Ok().json(json!({
        "Id": img.docker_id,
        "RepoTags": familiar_tags(&img),
        "RepoDigests": [],
        "Parent": "",
        "Comment": cfg.get("comment").cloned().unwrap_or(json!("")),
        "Created": created,
        "DockerVersion": cfg.get("docker_version").cloned().unwrap_or(json!("")),
        "Author": cfg.get("author").cloned().unwrap_or(json!("")),
        "Architecture": cfg.get("architecture").cloned().unwrap_or(json!("amd64")),
        "Variant": cfg.get("variant").cloned().unwrap_or(Value::Null),
        "Os": cfg.get("os").cloned().unwrap_or(json!("linux")),
        "Size": img.image.size_bytes.unwrap_or(0),
        "VirtualSize": img.image.size_bytes.unwrap_or(0),
        "Config": {
            "Env": pick("Env"),
            "Cmd": pick("Cmd"),
            "Entrypoint": pick("Entrypoint"),
            "WorkingDir": c.get("WorkingDir").cloned().unwrap_or(json!("")),
            "User": c.get("User").cloned().unwrap_or(json!("")),
            "Labels": pick("Labels"),
            "ExposedPorts": pick("ExposedPorts"),
        },
        "RootFS": {"Type": "layers", "Layers": cfg["rootfs"]["diff_ids"].clone()},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        // Strata's own view of the same image (v1 and v2 see it under this id and name).
        "StrataImage": {"id": img.image.id.to_string(), "name": img.image.name.to_string()},
    })))
}

#[derive(Debug, Deserialize)]
struct RemoveQuery {
    force: Option<String>,
    #[serde(default)]
    noprune: Option<String>,
}

async fn remove(
    st: web::Data<AppState>,
    access: OrgRegion<ImagesWrite>,
    req: HttpRequest,
    q: web::Query<RemoveQuery>,
) -> ApiResult<HttpResponse> {
    let _ = &q.noprune;
    let removed = docker::remove(&st, &access, &image_name(&req), truthy(q.force.as_deref())).await?;
    let out: Vec<Value> = removed
        .into_iter()
        .map(|r| match r {
            Removed::Untagged(t) => json!({"Untagged": t}),
            Removed::Deleted(id) => json!({"Deleted": id}),
        })
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_reference_filters() {
        assert!(glob("alp*", "alpine"));
        assert!(glob("*", "x"));
        assert!(glob("a*e", "alpine"));
        assert!(!glob("b*", "alpine"));
        let tags = vec!["docker.io/library/alpine:3.19".to_owned()];
        assert!(reference_matches("alpine", &tags));
        assert!(reference_matches("alpine:3.19", &tags));
        assert!(reference_matches("alpine:3.*", &tags));
        assert!(!reference_matches("alpine:latest", &tags));
        assert!(!reference_matches("busybox", &tags));
    }

    #[test]
    fn filters_in_both_encodings() {
        let a = parse_filters(Some(r#"{"reference":["alpine"],"dangling":["false"]}"#)).unwrap();
        let b = parse_filters(Some(r#"{"reference":{"alpine":true},"dangling":{"false":true}}"#)).unwrap();
        assert_eq!(a, b);
        assert!(parse_filters(Some(r#"{"bogus":["x"]}"#)).is_err());
        assert!(parse_filters(Some("not json")).is_err());
    }
}
