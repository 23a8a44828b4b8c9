//! The job runner's typed failures: `status.reasonCode` is what clients branch on, beside the
//! human `status.reason`, for each way a URL import can fail in the background.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use strata_domain::disk_format::samples;

use crate::both;
use crate::harness::*;
use crate::imports::import_cfg;
use crate::upstream::{Behaviour, Upstream};

async fn import(app: &TestApp, t: &str, name: &str, url: &str, sha256: Option<&str>) -> String {
    let mut source = json!({"type": "url", "url": url});
    if let Some(s) = sha256 {
        source["sha256"] = json!(s);
    }
    let res = app
        .req(Method::POST, &format!("{}/images", app.v1("acme", "local")), t)
        .json(&json!({"name": name, "source": source}))
        .send()
        .await
        .unwrap();
    let img = expect_status(res, StatusCode::CREATED).await;
    assert_eq!(img["status"]["reasonCode"], Value::Null, "{img}");
    img["id"].as_str().unwrap().to_owned()
}

async fn settled(app: &TestApp, t: &str, id: &str) -> Value {
    let url = format!("{}/images/{id}", app.v1("acme", "local"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let img = expect_status(app.req(Method::GET, &url, t).send().await.unwrap(), StatusCode::OK).await;
        if img["status"]["state"] != "importing" {
            return img;
        }
        assert!(tokio::time::Instant::now() < deadline, "still importing: {img}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn too_small(cfg: &mut strata_api::Config) {
    import_cfg(cfg);
    cfg.limits.max_image_bytes = 1 << 20;
}

both!(
    failed_imports_carry_a_stable_reason_code,
    config = too_small,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let ok = Upstream::start(samples::raw_mbr(512 << 10), Behaviour::Normal).await;
        let id = import(&app, &t, "fine", &ok.url("d"), None).await;
        let img = settled(&app, &t, &id).await;
        assert_eq!(img["status"]["state"], "ready", "{img}");
        assert_eq!(img["status"]["reasonCode"], Value::Null, "{img}");

        let cases: [(&str, Behaviour, usize, Option<String>, &str); 3] = [
            (
                "sum",
                Behaviour::Normal,
                512 << 10,
                Some("ab".repeat(32)),
                "checksum-mismatch",
            ),
            ("big", Behaviour::Normal, 2 << 20, None, "too-large"),
            ("drop", Behaviour::DropAfter(256 << 10), 768 << 10, None, "fetch-failed"),
        ];
        for (name, behaviour, size, sha, code) in cases {
            let up = Upstream::start(samples::raw_mbr(size), behaviour).await;
            let id = import(&app, &t, name, &up.url("d"), sha.as_deref()).await;
            let img = settled(&app, &t, &id).await;
            assert_eq!(img["status"]["state"], "failed", "{img}");
            assert_eq!(img["status"]["reasonCode"], code, "{img}");
            let reason = img["status"]["reason"].as_str().unwrap();
            assert!(reason.contains(code), "{reason}");
            for internal in ["database", "storage", "sqlx", "object_store", "os error"] {
                assert!(!reason.to_lowercase().contains(internal), "{reason}");
            }
        }
        assert!(app.stored().await.len() == 1, "only the ready image's bytes remain");
    }
);
