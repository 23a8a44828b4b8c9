use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both;
use crate::harness::*;

fn committed_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json")
}

/// The committed spec is a snapshot of the code. Regenerate with
/// `cargo run -p strata-api -- openapi > openapi/openapi.json`.
#[test]
fn committed_spec_matches_the_code() {
    let generated = strata_api::openapi::to_json(&strata_api::openapi::document());
    let committed = std::fs::read_to_string(committed_path()).expect("openapi/openapi.json exists");
    assert!(
        generated == committed,
        "openapi/openapi.json is stale: run `cargo run -p strata-api -- openapi > openapi/openapi.json`"
    );
}

#[test]
fn every_response_is_described_and_errors_are_declared() {
    let spec: Value = serde_json::from_str(&strata_api::openapi::to_json(&strata_api::openapi::document())).unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    assert!(spec["components"]["securitySchemes"]["bearer"].is_object());
    let responses = &spec["components"]["responses"];
    let mut operations = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let rs = op["responses"].as_object().unwrap();
            for (status, r) in rs {
                let r = match r.get("$ref").and_then(Value::as_str) {
                    Some(reference) => &responses[reference.rsplit('/').next().unwrap()],
                    None => r,
                };
                assert!(
                    r["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{method} {path} {status}"
                );
            }
            if path.starts_with("/api/") {
                // Public operations (security `[{}]`, e.g. the sign-in hints) answer everyone;
                // every other one needs a bearer token and may be refused with 401.
                let public = op["security"]
                    .as_array()
                    .is_some_and(|s| s.len() == 1 && s[0] == serde_json::json!({}));
                let takes_input = op["parameters"].as_array().is_some_and(|p| !p.is_empty());
                let mut must = vec!["500"];
                if !public {
                    must.push("401");
                    assert!(
                        op["security"][0]["bearer"].is_array(),
                        "{method} {path} lacks bearer security"
                    );
                }
                // Operations with path or query parameters can be refused for them.
                if takes_input {
                    must.extend(["400", "403", "404"]);
                }
                for status in must {
                    assert!(rs.contains_key(status), "{method} {path} lacks {status}");
                }
            }
        }
    }
    assert_eq!(operations, 33);
}

both!(spec_and_docs_are_served, |app: TestApp| async move {
    let served = app
        .client
        .get(format!("{}/api/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    let served: Value = expect_status(served, StatusCode::OK).await;
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(committed_path()).unwrap()).unwrap();
    assert_eq!(served, committed);
    let docs = app.client.get(format!("{}/docs/", app.base)).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger"));
    let h = app.client.get(format!("{}/healthz", app.base)).send().await.unwrap();
    assert_eq!(expect_status(h, StatusCode::OK).await["status"], "ok");
    let r = app.client.get(format!("{}/readyz", app.base)).send().await.unwrap();
    let r = expect_status(r, StatusCode::OK).await;
    assert_eq!(r["checks"], json!({"database": "ok", "storage": "ok"}));
    // request ids: echoed when sane, made up otherwise, and quoted in error bodies
    let res = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-42");
    let res = app
        .client
        .get(format!("{}/api/v1/organizations/a/regions/local/images", app.base))
        .send()
        .await
        .unwrap();
    let rid = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = expect_error(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(body["requestId"], rid);
});

both!(readyz_reports_unreachable_storage, |app: TestApp| async move {
    // the region's storage root turns into a plain file: listing it fails
    let root = app.blobs_dir();
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::write(&root, b"not a directory").unwrap();
    let r = app.client.get(format!("{}/readyz", app.base)).send().await.unwrap();
    let body = expect_status(r, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["status"], "unavailable");
    // no token: ready or not, no region names
    assert_eq!(body["checks"], json!({"database": "ok", "storage": "unreachable"}));
    // a tenant's token does not see region names either
    let r = app
        .req(Method::GET, &format!("{}/readyz", app.base), &app.token(&["a"]))
        .send()
        .await
        .unwrap();
    let body = expect_status(r, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["checks"], json!({"database": "ok", "storage": "unreachable"}));
    // a platform admin gets the detail
    let r = app
        .req(Method::GET, &format!("{}/readyz", app.base), &app.admin_token())
        .send()
        .await
        .unwrap();
    let body = expect_status(r, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["region:local"], "unreachable");
    // liveness is unaffected
    let h = app.client.get(format!("{}/healthz", app.base)).send().await.unwrap();
    expect_status(h, StatusCode::OK).await;
});

both!(oversized_headers_get_the_json_error, |app: TestApp| async move {
    let url = format!("{}/healthz", app.base);
    // more fields than [limits] max_header_fields (64), fewer than actix's own 96
    let mut req = app.client.get(&url);
    for i in 0..80 {
        req = req.header(format!("x-filler-{i}"), "v");
    }
    let err = expect_error(
        req.send().await.unwrap(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers-too-large",
    )
    .await;
    assert!(err["message"].as_str().unwrap().contains("header fields"), "{err}");
    assert!(!err["requestId"].as_str().unwrap().is_empty());
    // more bytes than max_header_bytes (32 KiB), less than actix's own 128 KiB
    let res = app
        .client
        .get(&url)
        .header("x-big", "a".repeat(40 * 1024))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers-too-large").await;
    // on an authenticated route too, before the token is looked at
    let res = app
        .client
        .get(format!("{}/images", app.v1("acme", "local")))
        .bearer_auth(app.token(&["acme"]))
        .header("x-big", "a".repeat(40 * 1024))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers-too-large").await;
    // within the limits all is well
    let res = app
        .client
        .get(&url)
        .header("x-ok", "a".repeat(1024))
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::OK).await;
});

fn low_header_limits(cfg: &mut strata_api::Config) {
    cfg.limits.max_header_fields = 10;
    cfg.limits.max_header_bytes = 2048;
}

both!(
    header_limits_are_configurable,
    config = low_header_limits,
    |app: TestApp| async move {
        let url = format!("{}/healthz", app.base);
        let mut req = app.client.get(&url);
        for i in 0..12 {
            req = req.header(format!("x-filler-{i}"), "v");
        }
        expect_error(
            req.send().await.unwrap(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
        )
        .await;
        let res = app
            .client
            .get(&url)
            .header("x-big", "a".repeat(3000))
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers-too-large").await;
        let res = app.client.get(&url).send().await.unwrap();
        expect_status(res, StatusCode::OK).await;
    }
);
