//! Quotas per (organization, region): enforced atomically in the database.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use strata_domain::disk_format::samples;

use crate::both;
use crate::harness::*;
use crate::upstream::{Behaviour, Upstream};

fn quotas(cfg: &mut strata_api::Config) {
    crate::imports::import_cfg(cfg);
    let q = &mut cfg.quotas;
    q.organizations.insert(
        "few".into(),
        strata_api::config::QuotaOverride {
            max_images: Some(3),
            ..Default::default()
        },
    );
    q.organizations.insert(
        "small".into(),
        strata_api::config::QuotaOverride {
            max_bytes: Some(300_000),
            ..Default::default()
        },
    );
    q.organizations.insert(
        "serial".into(),
        strata_api::config::QuotaOverride {
            max_concurrent_imports: Some(1),
            ..Default::default()
        },
    );
}

async fn usage(app: &TestApp, org: &str, t: &str) -> Value {
    let res = app
        .req(Method::GET, &format!("{}/usage", app.v1(org, "local")), t)
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::OK).await
}

both!(
    image_count_holds_under_parallel_creates,
    config = quotas,
    |app: TestApp| async move {
        let t = app.token(&["few"]);
        let url = format!("{}/images", app.v1("few", "local"));
        let mut tasks = Vec::new();
        for i in 0..10 {
            let req = app
                .req(Method::POST, &url, &t)
                .json(&json!({"name": format!("i{i}"), "source": {"type": "upload"}}));
            tasks.push(tokio::spawn(async move {
                let res = req.send().await.unwrap();
                (res.status(), res.text().await.unwrap())
            }));
        }
        let mut created = 0;
        for task in tasks {
            let (status, body) = task.await.unwrap();
            match status {
                StatusCode::CREATED => created += 1,
                StatusCode::CONFLICT => assert!(
                    body.contains("quota-exceeded") && body.contains("images: 3 of 3"),
                    "{body}"
                ),
                other => panic!("unexpected {other}: {body}"),
            }
        }
        assert_eq!(created, 3);
        let u = usage(&app, "few", &t).await;
        assert_eq!(u["images"], json!({"used": 3, "limit": 3}));
        // deleting gives the slot back
        let list = expect_status(app.req(Method::GET, &url, &t).send().await.unwrap(), StatusCode::OK).await;
        let first = list[0]["id"].as_str().unwrap();
        expect_status(
            app.req(Method::DELETE, &format!("{url}/{first}"), &t)
                .send()
                .await
                .unwrap(),
            StatusCode::NO_CONTENT,
        )
        .await;
        assert_eq!(usage(&app, "few", &t).await["images"]["used"], 2);
        app.create_named("few", &t, "again").await;
        // other organizations have the default limits; global images count against nobody
        let other = app.token(&["other"]);
        assert_eq!(
            usage(&app, "other", &other).await["images"],
            json!({"used": 0, "limit": 10000})
        );
    }
);

both!(
    stored_bytes_are_charged_when_known,
    config = quotas,
    |app: TestApp| async move {
        let t = app.token(&["small"]);
        let a = app.create_named("small", &t, "a").await;
        let b = app.create_named("small", &t, "b").await;
        let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
        expect_status(
            app.upload("small", &t, a, samples::raw_mbr(200_000)).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(
            usage(&app, "small", &t).await["bytes"],
            json!({"used": 200_000, "limit": 300_000})
        );
        // refused up front from Content-Length ...
        let err = expect_error(
            app.upload("small", &t, b, samples::raw_mbr(200_000)).await,
            StatusCode::CONFLICT,
            "quota-exceeded",
        )
        .await;
        assert!(err["message"].as_str().unwrap().contains("bytes"), "{err}");
        // ... and atomically at the end when the size was not announced
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = samples::raw_mbr(200_000)
            .chunks(50_000)
            .map(|c| Ok(c.to_vec()))
            .collect();
        let res = app
            .req(
                Method::PUT,
                &format!("{}/images/{b}/file", app.v1("small", "local")),
                &t,
            )
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::CONFLICT, "quota-exceeded").await;
        let img = app
            .req(Method::GET, &format!("{}/images/{b}", app.v1("small", "local")), &t)
            .send()
            .await
            .unwrap();
        assert_eq!(expect_status(img, StatusCode::OK).await["status"]["state"], "pending");
        assert_eq!(app.stored().await.len(), 1, "only a's bytes are stored");
        assert_eq!(usage(&app, "small", &t).await["bytes"]["used"], 200_000);
        // deleting a ready image gives its bytes back
        expect_status(
            app.req(Method::DELETE, &format!("{}/images/{a}", app.v1("small", "local")), &t)
                .send()
                .await
                .unwrap(),
            StatusCode::NO_CONTENT,
        )
        .await;
        assert_eq!(usage(&app, "small", &t).await["bytes"]["used"], 0);
        expect_status(
            app.upload("small", &t, b, samples::raw_mbr(200_000)).await,
            StatusCode::OK,
        )
        .await;
    }
);

both!(
    concurrent_imports_are_limited,
    config = quotas,
    |app: TestApp| async move {
        let t = app.token(&["serial"]);
        let up = Upstream::start(samples::raw_mbr(4 << 20), Behaviour::StallAfter(1 << 20)).await;
        let url = format!("{}/images", app.v1("serial", "local"));
        let create = |name: &str| {
            app.req(Method::POST, &url, &t)
                .json(&json!({"name": name, "source": {"type": "url", "url": up.url("d")}}))
                .send()
        };
        let first = expect_status(create("one").await.unwrap(), StatusCode::CREATED).await;
        assert_eq!(
            usage(&app, "serial", &t).await["concurrentImports"],
            json!({"used": 1, "limit": 1})
        );
        let err = expect_error(create("two").await.unwrap(), StatusCode::CONFLICT, "quota-exceeded").await;
        assert!(err["message"].as_str().unwrap().contains("concurrent imports"), "{err}");
        // uploads are not imports
        app.create_named("serial", &t, "upload").await;
        // cancelling the running import frees the slot
        let id = first["id"].as_str().unwrap();
        expect_status(
            app.req(Method::DELETE, &format!("{url}/{id}"), &t)
                .send()
                .await
                .unwrap(),
            StatusCode::NO_CONTENT,
        )
        .await;
        assert_eq!(usage(&app, "serial", &t).await["concurrentImports"]["used"], 0);
        up.set_behaviour(Behaviour::Normal);
        let second = expect_status(create("two").await.unwrap(), StatusCode::CREATED).await;
        let id = second["id"].as_str().unwrap();
        for _ in 0..100 {
            let img = app.req(Method::GET, &format!("{url}/{id}"), &t).send().await.unwrap();
            if expect_status(img, StatusCode::OK).await["status"]["state"] == "ready" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let u = usage(&app, "serial", &t).await;
        assert_eq!(u["concurrentImports"]["used"], 0, "{u}");
        assert_eq!(u["bytes"]["used"], 4 << 20, "{u}");
        assert_eq!(u["images"]["used"], 2, "{u}");
    }
);
