use reqwest::{Method, StatusCode};
use serde_json::json;
use strata_domain::disk_format::samples;

use crate::both;
use crate::harness::*;

both!(
    in_use_images_cannot_be_deleted,
    config = |_: &mut strata_api::Config| {},
    with_s3,
    |app: TestApp| async move {
        let a = app.token(&["a"]);
        let b = app.token(&["b"]);
        let img = app.create_named("a", &a, "disk").await;
        let id = img["id"].as_str().unwrap();
        expect_status(app.upload("a", &a, id, samples::raw_mbr(8192)).await, StatusCode::OK).await;
        let url = format!("{}/images/{id}", app.v1("a", "local"));

        let put = |consumer: &str, body: serde_json::Value| {
            app.req(Method::PUT, &format!("{url}/consumers/{consumer}"), &a)
                .json(&body)
                .send()
        };
        let c = expect_status(
            put("vm-1", json!({"kind": "vm", "description": "web"})).await.unwrap(),
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(c["id"], "vm-1");
        assert_eq!(c["organizationId"], "a");
        let c = expect_status(
            put("vm-1", json!({"kind": "vm", "description": "web-2"}))
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(c["description"], "web-2");
        expect_status(
            put("tpl.7", json!({"kind": "template"})).await.unwrap(),
            StatusCode::CREATED,
        )
        .await;
        expect_error(
            put("bad/id", json!({"kind": "vm"})).await.unwrap(),
            StatusCode::NOT_FOUND,
            "not-found",
        )
        .await;
        expect_error(
            put("ok", json!({"kind": "Bad Kind"})).await.unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid-input",
        )
        .await;

        let list = expect_status(
            app.req(Method::GET, &format!("{url}/consumers"), &a)
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(list.as_array().unwrap().len(), 2);

        let err = expect_error(
            app.req(Method::DELETE, &url, &a).send().await.unwrap(),
            StatusCode::CONFLICT,
            "image-in-use",
        )
        .await;
        let msg = err["message"].as_str().unwrap();
        assert!(msg.contains("vm vm-1") && msg.contains("template tpl.7"), "{msg}");

        for c in ["vm-1", "tpl.7"] {
            expect_status(
                app.req(Method::DELETE, &format!("{url}/consumers/{c}"), &a)
                    .send()
                    .await
                    .unwrap(),
                StatusCode::NO_CONTENT,
            )
            .await;
        }
        expect_error(
            app.req(Method::DELETE, &format!("{url}/consumers/vm-1"), &a)
                .send()
                .await
                .unwrap(),
            StatusCode::NOT_FOUND,
            "not-found",
        )
        .await;
        // b cannot see a's image, so cannot pin it either
        let b_url = format!("{}/images/{id}/consumers/vm-9", app.v1("b", "local"));
        expect_error(
            app.req(Method::PUT, &b_url, &b)
                .json(&json!({"kind": "vm"}))
                .send()
                .await
                .unwrap(),
            StatusCode::NOT_FOUND,
            "not-found",
        )
        .await;
        expect_status(
            app.req(Method::DELETE, &url, &a).send().await.unwrap(),
            StatusCode::NO_CONTENT,
        )
        .await;
        assert_eq!(app.stored().await, Vec::<String>::new());
        expect_error(
            put("vm-1", json!({"kind": "vm"})).await.unwrap(),
            StatusCode::NOT_FOUND,
            "not-found",
        )
        .await;
    }
);

both!(
    consumers_of_global_images_are_per_organization,
    |app: TestApp| async move {
        let admin = app.admin_token();
        let a = app.token(&["a"]);
        let b = app.token(&["b"]);
        let g = app
            .create(
                "a",
                &admin,
                json!({"name": "golden", "visibility": "global", "source": {"type": "upload"}}),
            )
            .await;
        let id = g["id"].as_str().unwrap();
        for (org, t) in [("a", &a), ("b", &b)] {
            let url = format!("{}/images/{id}/consumers/vm-1", app.v1(org, "local"));
            expect_status(
                app.req(Method::PUT, &url, t)
                    .json(&json!({"kind": "vm"}))
                    .send()
                    .await
                    .unwrap(),
                StatusCode::CREATED,
            )
            .await;
        }
        // each organization sees its own; the admin (owner of global images) sees both
        let list_b = app
            .req(
                Method::GET,
                &format!("{}/images/{id}/consumers", app.v1("b", "local")),
                &b,
            )
            .send()
            .await
            .unwrap();
        let list_b = expect_status(list_b, StatusCode::OK).await;
        assert_eq!(list_b.as_array().unwrap().len(), 1);
        assert_eq!(list_b[0]["organizationId"], "b");
        let all = app
            .req(
                Method::GET,
                &format!("{}/images/{id}/consumers", app.v1("a", "local")),
                &admin,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(expect_status(all, StatusCode::OK).await.as_array().unwrap().len(), 2);
        // b's VM blocks the admin's delete
        let del = app
            .req(Method::DELETE, &format!("{}/images/{id}", app.v1("a", "local")), &admin)
            .send()
            .await
            .unwrap();
        expect_error(del, StatusCode::CONFLICT, "image-in-use").await;
    }
);

// Consumers registered while deletes race must never be lost: either the delete wins (and the
// registration sees 404) or the registration wins (and the delete sees 409).
both!(delete_and_register_race, |app: TestApp| async move {
    let t = app.token(&["a"]);
    for round in 0..10 {
        let img = app.create_named("a", &t, &format!("r{round}")).await;
        let url = format!("{}/images/{}", app.v1("a", "local"), img["id"].as_str().unwrap());
        let reg = app
            .req(Method::PUT, &format!("{url}/consumers/vm"), &t)
            .json(&json!({"kind": "vm"}))
            .send();
        let del = app.req(Method::DELETE, &url, &t).send();
        let (reg, del) = tokio::join!(reg, del);
        let (reg, del) = (reg.unwrap().status(), del.unwrap().status());
        match (reg, del) {
            (StatusCode::CREATED, StatusCode::CONFLICT) | (StatusCode::NOT_FOUND, StatusCode::NO_CONTENT) => {}
            other => panic!("round {round}: inconsistent outcome {other:?}"),
        }
    }
});
