use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both;
use crate::harness::*;

both!(lifecycle, |app: TestApp| async move {
    let t = app.token(&["acme"]);
    let base = app.v1("acme", "local");
    let res = app
        .req(Method::POST, &format!("{base}/images"), &t)
        .json(&json!({
            "name": "ubuntu-24.04", "description": "LTS", "architecture": "aarch64",
            "os": {"family": "linux", "distro": "ubuntu", "version": "24.04"},
            "tags": {"env": "prod"}, "source": {"type": "upload"}
        }))
        .send()
        .await
        .unwrap();
    let location = format!("{}{}", app.base, res.headers()["location"].to_str().unwrap());
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let img = expect_status(res, StatusCode::CREATED).await;
    let id = img["id"].as_str().unwrap().to_owned();
    assert!(
        location.ends_with(&format!("/api/v1/organizations/acme/regions/local/images/{id}")),
        "{location}"
    );
    assert_eq!(etag, "\"1\"");
    assert_eq!(img["status"]["state"], "pending");
    assert_eq!(img["organizationId"], "acme");
    assert_eq!(img["regionId"], "local");
    assert_eq!(img["visibility"], "organization");
    assert_eq!(img["kind"], "disk");
    assert_eq!(img["diskFormat"], "raw");
    assert_eq!(img["architecture"], "aarch64");
    assert_eq!(img["os"]["distro"], "ubuntu");
    assert_eq!(img["protected"], false);
    assert_eq!(img["provenance"]["source"], "upload");
    assert_eq!(img["provenance"]["importedBy"], "tester");
    assert_eq!(img["tags"]["env"], "prod");
    assert_eq!(img["tags"]["strata.dev/source"], "upload");
    assert_eq!(img["tags"]["strata.dev/organization"], "acme");
    assert_eq!(img["tags"]["strata.dev/imported-by"], "tester");

    let res = app.req(Method::GET, &location, &t).send().await.unwrap();
    assert_eq!(res.headers()["etag"], "\"1\"");
    let got = expect_status(res, StatusCode::OK).await;
    assert_eq!(got, img);

    // list: own images, never null
    let list = expect_status(
        app.req(Method::GET, &format!("{base}/images"), &t)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let empty = app.token(&["empty-org"]);
    let list = app
        .req(Method::GET, &format!("{}/images", app.v1("empty-org", "local")), &empty)
        .send()
        .await
        .unwrap();
    assert_eq!(expect_status(list, StatusCode::OK).await, json!([]));

    // PATCH with If-Match, then a stale If-Match
    let res = app
        .req(Method::PATCH, &location, &t)
        .header("if-match", "\"1\"")
        .json(&json!({"name": "ubuntu-lts", "description": null, "tags": {"env": null, "team": "core"}, "protected": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["etag"], "\"2\"");
    let patched = expect_status(res, StatusCode::OK).await;
    assert_eq!(patched["name"], "ubuntu-lts");
    assert_eq!(patched["description"], serde_json::Value::Null);
    assert_eq!(patched["protected"], true);
    assert_eq!(patched["tags"]["team"], "core");
    assert!(patched["tags"].get("env").is_none());
    assert_eq!(
        patched["tags"]["strata.dev/source"], "upload",
        "reserved tags survive patches"
    );
    assert_eq!(patched["revision"], 2);
    let res = app
        .req(Method::PATCH, &location, &t)
        .header("if-match", "\"1\"")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::PRECONDITION_FAILED, "precondition-failed").await;
    let still = expect_status(
        app.req(Method::GET, &location, &t).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(still["name"], "ubuntu-lts");

    // protected images cannot be deleted until unprotected
    let res = app.req(Method::DELETE, &location, &t).send().await.unwrap();
    expect_error(res, StatusCode::CONFLICT, "image-protected").await;
    let res = app
        .req(Method::PATCH, &location, &t)
        .json(&json!({"protected": false}))
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::OK).await;
    let res = app.req(Method::DELETE, &location, &t).send().await.unwrap();
    expect_status(res, StatusCode::NO_CONTENT).await;
    expect_error(
        app.req(Method::GET, &location, &t).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    expect_error(
        app.req(Method::DELETE, &location, &t).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
});

both!(names_are_unique_per_org_and_among_globals, |app: TestApp| async move {
    let a = app.token(&["a"]);
    let b = app.token(&["b"]);
    let admin = app.admin_token();
    app.create_named("a", &a, "base").await;
    let res = app
        .req(Method::POST, &format!("{}/images", app.v1("a", "local")), &a)
        .json(&json!({"name": "base", "source": {"type": "upload"}}))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::CONFLICT, "name-taken").await;
    // another organization may use the same name, and so may a global image
    app.create_named("b", &b, "base").await;
    let g = app
        .create(
            "a",
            &admin,
            json!({"name": "base", "visibility": "global", "source": {"type": "upload"}}),
        )
        .await;
    assert_eq!(g["organizationId"], serde_json::Value::Null);
    assert!(g["tags"].get("strata.dev/organization").is_none());
    let res = app
        .req(Method::POST, &format!("{}/images", app.v1("b", "local")), &admin)
        .json(&json!({"name": "base", "visibility": "global", "source": {"type": "upload"}}))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::CONFLICT, "name-taken").await;
    // renaming onto a taken name is refused too
    let other = app.create_named("a", &a, "other").await;
    let res = app
        .req(
            Method::PATCH,
            &format!("{}/images/{}", app.v1("a", "local"), other["id"].as_str().unwrap()),
            &a,
        )
        .json(&json!({"name": "base"}))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::CONFLICT, "name-taken").await;
});

both!(
    parallel_creates_of_one_name_yield_one_image,
    |app: TestApp| async move {
        let t = app.token(&["race"]);
        let url = format!("{}/images", app.v1("race", "local"));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let req = app
                .req(Method::POST, &url, &t)
                .json(&json!({"name": "same", "source": {"type": "upload"}}));
            tasks.push(tokio::spawn(async move { req.send().await.unwrap().status() }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == StatusCode::CREATED).count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count(),
            7,
            "{statuses:?}"
        );
    }
);

both!(global_images, |app: TestApp| async move {
    let a = app.token(&["a"]);
    let b = app.token(&["b"]);
    let admin = app.admin_token();
    // only platform admins create global images
    let res = app
        .req(Method::POST, &format!("{}/images", app.v1("a", "local")), &a)
        .json(&json!({"name": "g", "visibility": "global", "source": {"type": "upload"}}))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let g = app
        .create(
            "a",
            &admin,
            json!({"name": "g", "visibility": "global", "source": {"type": "upload"}}),
        )
        .await;
    let id = g["id"].as_str().unwrap();
    let own = app.create_named("a", &a, "own").await;

    // every organization sees it; scope=owned hides it
    let got = app
        .req(Method::GET, &format!("{}/images/{id}", app.v1("b", "local")), &b)
        .send()
        .await
        .unwrap();
    expect_status(got, StatusCode::OK).await;
    let all = expect_status(
        app.req(Method::GET, &format!("{}/images", app.v1("b", "local")), &b)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    let owned = app
        .req(Method::GET, &format!("{}/images?scope=owned", app.v1("b", "local")), &b)
        .send()
        .await
        .unwrap();
    assert_eq!(expect_status(owned, StatusCode::OK).await, json!([]));
    let bad = app
        .req(Method::GET, &format!("{}/images?scope=mine", app.v1("b", "local")), &b)
        .send()
        .await
        .unwrap();
    expect_error(bad, StatusCode::BAD_REQUEST, "invalid-input").await;

    // but only platform admins change or delete it; others get 404
    let url_b = format!("{}/images/{id}", app.v1("b", "local"));
    expect_error(
        app.req(Method::PATCH, &url_b, &b)
            .json(&json!({"description": "x"}))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    expect_error(
        app.req(Method::DELETE, &url_b, &b).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    let res = app
        .upload("b", &b, id, strata_domain::disk_format::samples::raw_mbr(4096))
        .await;
    expect_error(res, StatusCode::NOT_FOUND, "not-found").await;

    // another organization's image does not exist for b, whatever the method
    let own_id = own["id"].as_str().unwrap();
    let url = format!("{}/images/{own_id}", app.v1("b", "local"));
    for m in [Method::GET, Method::DELETE] {
        expect_error(
            app.req(m, &url, &b).send().await.unwrap(),
            StatusCode::NOT_FOUND,
            "not-found",
        )
        .await;
    }
    expect_error(
        app.req(Method::PATCH, &url, &b)
            .json(&json!({"name": "stolen"}))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    expect_error(
        app.req(Method::GET, &format!("{url}/file"), &b).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    let put = app
        .req(Method::PUT, &format!("{url}/consumers/vm-1"), &b)
        .json(&json!({"kind": "vm"}))
        .send()
        .await
        .unwrap();
    expect_error(put, StatusCode::NOT_FOUND, "not-found").await;

    // platform admins manage it
    let url_admin = format!("{}/images/{id}", app.v1("a", "local"));
    let res = app
        .req(Method::PATCH, &url_admin, &admin)
        .json(&json!({"description": "golden"}))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_status(res, StatusCode::OK).await["description"], "golden");
    expect_status(
        app.req(Method::DELETE, &url_admin, &admin).send().await.unwrap(),
        StatusCode::NO_CONTENT,
    )
    .await;
});

both!(input_validation, |app: TestApp| async move {
    let t = app.token(&["acme"]);
    let url = format!("{}/images", app.v1("acme", "local"));
    let post = |body: serde_json::Value| app.req(Method::POST, &url, &t).json(&body).send();
    let bad = [
        json!({"name": "Upper", "source": {"type": "upload"}}),
        json!({"name": "-dash", "source": {"type": "upload"}}),
        json!({"name": "a".repeat(64), "source": {"type": "upload"}}),
        json!({"name": "ok"}),
        json!({"name": "ok", "source": {"type": "carrier-pigeon"}}),
        json!({"name": "ok", "source": {"type": "upload", "sha256": "xyz"}}),
        json!({"name": "ok", "architecture": "mips", "source": {"type": "upload"}}),
        json!({"name": "ok", "unknownField": 1, "source": {"type": "upload"}}),
        json!({"name": "ok", "tags": {"bad key": "v"}, "source": {"type": "upload"}}),
        json!({"name": "ok", "tags": {"k": "v".repeat(256)}, "source": {"type": "upload"}}),
        json!({"name": "ok", "tags": (0..65).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>(), "source": {"type": "upload"}}),
        json!({"name": "ok", "description": "d".repeat(1025), "source": {"type": "upload"}}),
        json!({"name": "ok", "os": {"family": ""}, "source": {"type": "upload"}}),
    ];
    for body in bad {
        let res = post(body.clone()).await.unwrap();
        let err = expect_error(res, StatusCode::BAD_REQUEST, "invalid-input").await;
        assert!(!err["message"].as_str().unwrap().contains("internal"), "{body}: {err}");
    }
    // reserved tags: on create, and set or removed by PATCH
    let res = post(json!({"name": "ok", "tags": {"strata.dev/source": "url"}, "source": {"type": "upload"}}))
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST, "reserved-tag").await;
    let img = app.create_named("acme", &t, "ok").await;
    let img_url = format!("{url}/{}", img["id"].as_str().unwrap());
    for patch in [
        json!({"tags": {"strata.dev/imported-by": "mallory"}}),
        json!({"tags": {"strata.dev/source": null}}),
    ] {
        let res = app.req(Method::PATCH, &img_url, &t).json(&patch).send().await.unwrap();
        expect_error(res, StatusCode::BAD_REQUEST, "reserved-tag").await;
    }
    for patch in [
        json!({"name": null}),
        json!({"name": "BAD"}),
        json!({"visibility": "global"}),
        json!({"protected": "yes"}),
    ] {
        let res = app.req(Method::PATCH, &img_url, &t).json(&patch).send().await.unwrap();
        expect_error(res, StatusCode::BAD_REQUEST, "invalid-input").await;
    }
    // nothing was changed by the refused requests
    let got = expect_status(app.req(Method::GET, &img_url, &t).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(got["revision"], 1);
    assert_eq!(got["tags"]["strata.dev/imported-by"], "tester");
    let list = expect_status(app.req(Method::GET, &url, &t).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "refused creates left nothing behind");

    // malformed JSON, wrong content type, oversized body, bad image id
    let res = app
        .req(Method::POST, &url, &t)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST, "invalid-input").await;
    let res = app
        .req(Method::POST, &url, &t)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type").await;
    let huge = json!({"name": "big", "description": "x".repeat(70_000), "source": {"type": "upload"}});
    expect_error(post(huge).await.unwrap(), StatusCode::PAYLOAD_TOO_LARGE, "too-large").await;
    let res = app
        .req(Method::GET, &format!("{url}/not-a-uuid"), &t)
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST, "invalid-input").await;
    let res = app
        .req(Method::GET, &format!("{}/api/v1/nope", app.base), &t)
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::NOT_FOUND, "not-found").await;
});

both!(json_bodies_are_objects_in_utf8, |app: TestApp| async move {
    let t = app.token(&["acme"]);
    let url = format!("{}/images", app.v1("acme", "local"));
    // serde would read these structs from arrays in field order
    let as_array = json!(["from-array", null, null, null, null, null, null, {"type": "upload"}]);
    let res = app.req(Method::POST, &url, &t).json(&as_array).send().await.unwrap();
    let err = expect_error(res, StatusCode::BAD_REQUEST, "invalid-input").await;
    assert!(err["message"].as_str().unwrap().contains("JSON object"), "{err}");
    let img = app.create_named("acme", &t, "obj").await;
    let id = img["id"].as_str().unwrap();
    let img_url = format!("{url}/{id}");
    for body in ["[]", "null", "1", "\"name\""] {
        let res = app
            .req(Method::PATCH, &img_url, &t)
            .header("content-type", "application/merge-patch+json")
            .body(body)
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::BAD_REQUEST, "invalid-input").await;
    }
    let res = app
        .req(Method::PUT, &format!("{img_url}/consumers/vm-1"), &t)
        .json(&json!(["vm", null]))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST, "invalid-input").await;
    // a charset other than UTF-8 is refused, UTF-8 (any case) is fine
    let body = json!({"name": "utf16", "source": {"type": "upload"}}).to_string();
    for ct in ["application/json; charset=utf-16", "application/json; charset=latin1"] {
        let res = app
            .req(Method::POST, &url, &t)
            .header("content-type", ct)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type").await;
    }
    let res = app
        .req(Method::POST, &url, &t)
        .header("content-type", "application/json; charset=UTF-8")
        .body(body)
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::CREATED).await;
    // nothing else was created, and the image was not changed
    let list = expect_status(app.req(Method::GET, &url, &t).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let got = expect_status(app.req(Method::GET, &img_url, &t).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(got["revision"], 1);
});

both!(
    a_patch_that_changes_nothing_changes_nothing,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let url = format!("{}/images", app.v1("acme", "local"));
        let res = app
            .req(Method::POST, &url, &t)
            .json(&json!({"name": "same", "description": "d", "tags": {"k": "v"}, "source": {"type": "upload"}}))
            .send()
            .await
            .unwrap();
        let etag = res.headers()["etag"].to_str().unwrap().to_owned();
        let img = expect_status(res, StatusCode::CREATED).await;
        let img_url = format!("{url}/{}", img["id"].as_str().unwrap());
        for patch in [
            json!({}),
            json!({"name": "same"}),
            json!({"description": "d", "protected": false}),
            json!({"tags": {}}),
            json!({"tags": {"k": "v", "absent": null}}),
            json!({"protected": null}),
        ] {
            let res = app
                .req(Method::PATCH, &img_url, &t)
                .header("if-match", &etag)
                .json(&patch)
                .send()
                .await
                .unwrap();
            assert_eq!(res.headers()["etag"].to_str().unwrap(), etag, "{patch}");
            let got = expect_status(res, StatusCode::OK).await;
            assert_eq!(got["revision"], 1, "{patch}");
            assert_eq!(got["updatedAt"], img["updatedAt"], "{patch}");
        }
        // a real change still bumps the revision, and a stale If-Match is still refused
        let res = app
            .req(Method::PATCH, &img_url, &t)
            .json(&json!({"description": "new"}))
            .send()
            .await
            .unwrap();
        assert_eq!(expect_status(res, StatusCode::OK).await["revision"], 2);
        let res = app
            .req(Method::PATCH, &img_url, &t)
            .header("if-match", &etag)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::PRECONDITION_FAILED, "precondition-failed").await;
    }
);

// The limits are the edges, and what is at an edge is still valid on the wire: 64 user tags of
// 63-character keys and 255-character values are accepted, and the image (which shows them
// with its provenance tags, more than 64 in all) still matches the committed spec (checked by
// the harness's proxy on every response).
both!(
    limits_are_inclusive_and_shown_tags_may_exceed_them,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let url = format!("{}/images", app.v1("acme", "local"));
        let tags: serde_json::Map<_, _> = (0..64)
            .map(|i| (format!("{i:02}{}", "k".repeat(61)), json!("v".repeat(255))))
            .collect();
        let res = app
        .req(Method::POST, &url, &t)
        .json(&json!({"name": "a".repeat(63), "description": "d".repeat(1024), "tags": tags, "source": {"type": "upload"}}))
        .send()
        .await
        .unwrap();
        let img = expect_status(res, StatusCode::CREATED).await;
        let shown = img["tags"].as_object().unwrap();
        assert!(shown.len() > 64, "{} tags shown", shown.len());
        let res = app
            .req(Method::GET, &format!("{url}/{}", img["id"].as_str().unwrap()), &t)
            .send()
            .await
            .unwrap();
        expect_status(res, StatusCode::OK).await;
    }
);
