//! What a Terraform provider built on the v1 API does with an image resource, step by step:
//! create, wait for a terminal state, read, update with If-Match, refresh, import by id, destroy,
//! and treat 404 as "gone". Every status it branches on must be declared in the committed spec
//! (the harness's spec check fails the test otherwise, and `provider_statuses_are_declared`
//! names them).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use strata_domain::disk_format::samples;

use crate::both;
use crate::harness::*;
use crate::imports::import_cfg;
use crate::upstream::{Behaviour, Upstream};

/// The provider's read: `Some(image, etag)`, or `None` when the image is gone (404).
async fn read(app: &TestApp, token: &str, id: &str) -> Option<(Value, String)> {
    let res = app
        .req(Method::GET, &format!("{}/images/{id}", app.v1("acme", "local")), token)
        .send()
        .await
        .unwrap();
    if res.status() == StatusCode::NOT_FOUND {
        expect_error(res, StatusCode::NOT_FOUND, "not-found").await;
        return None;
    }
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    Some((expect_status(res, StatusCode::OK).await, etag))
}

/// The provider's create: wait until `ready` or `failed`, as `terraform apply` does.
async fn wait_terminal(app: &TestApp, token: &str, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (img, _) = read(app, token, id).await.expect("the image exists while importing");
        let state = img["status"]["state"].as_str().unwrap().to_owned();
        if state == "ready" || state == "failed" {
            return img;
        }
        assert_eq!(state, "importing", "{img}");
        assert!(tokio::time::Instant::now() < deadline, "still importing: {img}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

both!(
    terraform_style_life_cycle,
    config = import_cfg,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let images = format!("{}/images", app.v1("acme", "local"));
        let data = samples::raw_mbr(2 << 20);
        let sha = hex::encode(Sha256::digest(&data));
        let up = Upstream::start(data, Behaviour::Normal).await;

        // create
        let res = app
            .req(Method::POST, &images, &t)
            .json(
                &json!({"name": "tf-disk", "architecture": "x86_64", "tags": {"managed-by": "terraform"},
                "source": {"type": "url", "url": up.url("disk.raw"), "sha256": sha}}),
            )
            .send()
            .await
            .unwrap();
        let location = res.headers()["location"].to_str().unwrap().to_owned();
        let created = expect_status(res, StatusCode::CREATED).await;
        let id = created["id"].as_str().unwrap().to_owned();
        assert!(location.ends_with(&format!("/images/{id}")), "{location}");
        let done = wait_terminal(&app, &t, &id).await;
        assert_eq!(done["status"]["state"], "ready", "{done}");
        assert_eq!(done["sha256"], sha);

        // read, then update tags with If-Match
        let (img, etag) = read(&app, &t, &id).await.unwrap();
        assert_eq!(etag, format!("\"{}\"", img["revision"]));
        let res = app
            .req(Method::PATCH, &format!("{images}/{id}"), &t)
            .header("if-match", &etag)
            .header("content-type", "application/merge-patch+json")
            .body(json!({"tags": {"owner": "platform", "managed-by": "terraform"}}).to_string())
            .send()
            .await
            .unwrap();
        let new_etag = res.headers()["etag"].to_str().unwrap().to_owned();
        let patched = expect_status(res, StatusCode::OK).await;
        assert_ne!(new_etag, etag);
        assert_eq!(patched["tags"]["owner"], "platform");

        // a concurrent change made elsewhere: the provider's stale ETag gets 412
        let res = app
            .req(Method::PATCH, &format!("{images}/{id}"), &t)
            .header("if-match", &etag)
            .json(&json!({"description": "drift"}))
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::PRECONDITION_FAILED, "precondition-failed").await;

        // refresh shows the update; `terraform import` of the same id reads the same state
        let (refreshed, refreshed_etag) = read(&app, &t, &id).await.unwrap();
        assert_eq!(refreshed_etag, new_etag);
        assert_eq!(refreshed["tags"]["owner"], "platform");
        assert_eq!(refreshed["tags"]["managed-by"], "terraform");
        assert_eq!(refreshed["description"], Value::Null);
        let listed = expect_status(app.req(Method::GET, &images, &t).send().await.unwrap(), StatusCode::OK).await;
        assert!(listed.as_array().unwrap().iter().any(|i| i["id"] == id.as_str()));

        // destroy; then read -> gone; destroy again -> 404, which the provider treats as done
        let res = app
            .req(Method::DELETE, &format!("{images}/{id}"), &t)
            .send()
            .await
            .unwrap();
        expect_status(res, StatusCode::NO_CONTENT).await;
        assert!(read(&app, &t, &id).await.is_none());
        let res = app
            .req(Method::DELETE, &format!("{images}/{id}"), &t)
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::NOT_FOUND, "not-found").await;

        // a failed import is a terminal state the provider reports, with a stable reason code
        let res = app
            .req(Method::POST, &images, &t)
            .json(&json!({"name": "tf-bad", "source": {"type": "url", "url": up.url("disk.raw"), "sha256": "0".repeat(64)}}))
            .send()
            .await
            .unwrap();
        let bad = expect_status(res, StatusCode::CREATED).await;
        let failed = wait_terminal(&app, &t, bad["id"].as_str().unwrap()).await;
        assert_eq!(failed["status"]["state"], "failed", "{failed}");
        assert!(failed["status"]["reason"].as_str().is_some_and(|r| !r.is_empty()));
    }
);

/// The statuses a provider branches on are declared on the operations it calls.
#[test]
fn provider_statuses_are_declared() {
    let text =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json"))
            .unwrap();
    let spec: Value = serde_json::from_str(&text).unwrap();
    let images = "/api/v1/organizations/{organizationID}/regions/{regionID}/images";
    let image = format!("{images}/{{imageID}}");
    for (path, method, statuses) in [
        (images, "post", &["201", "400", "401", "403", "404", "409", "422"][..]),
        (images, "get", &["200", "404"][..]),
        (image.as_str(), "get", &["200", "404"][..]),
        (image.as_str(), "patch", &["200", "404", "409", "412"][..]),
        (image.as_str(), "delete", &["204", "404", "409"][..]),
    ] {
        let responses = &spec["paths"][path][method]["responses"];
        for s in statuses {
            assert!(responses.get(*s).is_some(), "{method} {path} does not declare {s}");
        }
    }
    let created = &spec["paths"][images]["post"]["responses"]["201"];
    assert!(created["headers"].get("Location").is_some() && created["headers"].get("ETag").is_some());
    let patch_params = spec["paths"][image.as_str()]["patch"]["parameters"].as_array().unwrap();
    assert!(
        patch_params
            .iter()
            .any(|p| p["name"] == "If-Match" && p["in"] == "header")
    );
}
