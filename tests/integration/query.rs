use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use strata_domain::disk_format::samples;

use crate::both;
use crate::harness::*;

async fn page(app: &TestApp, token: &str, query: &str) -> Value {
    let url = format!("{}/api/v2/regions/local/images?{query}", app.base);
    expect_status(app.req(Method::GET, &url, token).send().await.unwrap(), StatusCode::OK).await
}

/// Follows nextPageToken to the end and returns every item's name.
async fn all_pages(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..100 {
        let q = match &next {
            Some(t) => format!("{query}&pageToken={t}"),
            None => query.to_owned(),
        };
        let p = page(app, token, &q).await;
        names.extend(
            p["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap().to_owned()),
        );
        match p["nextPageToken"].as_str() {
            Some(t) => next = Some(t.to_owned()),
            None => return names,
        }
    }
    panic!("paging did not end");
}

both!(v2_query, |app: TestApp| async move {
    let a = app.token(&["a"]);
    let b = app.token(&["b"]);
    let ab = app.token(&["a", "b"]);
    let admin = app.admin_token();
    for i in 0..23 {
        let arch = if i % 3 == 0 { "aarch64" } else { "x86_64" };
        let tags = if i % 2 == 0 {
            json!({"env": "prod"})
        } else {
            json!({"env": "dev", "team": "x"})
        };
        app.create(
            "a",
            &a,
            json!({"name": format!("a-{i:02}"), "architecture": arch, "tags": tags, "source": {"type": "upload"}}),
        )
        .await;
    }
    for i in 0..5 {
        app.create_named("b", &b, &format!("b-{i}")).await;
    }
    let g = app
        .create(
            "a",
            &admin,
            json!({"name": "g-0", "visibility": "global", "source": {"type": "upload"}}),
        )
        .await;
    let first = app.create_named("c", &app.token(&["c"]), "c-0").await;
    expect_status(
        app.upload(
            "c",
            &app.token(&["c"]),
            first["id"].as_str().unwrap(),
            samples::raw_mbr(4096),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    // paging: every item exactly once, in name order, across several page sizes
    let expected: Vec<String> = (0..23)
        .map(|i| format!("a-{i:02}"))
        .chain(std::iter::once("g-0".to_owned()))
        .collect();
    for limit in [1, 5, 7, 24, 1000] {
        assert_eq!(
            all_pages(&app, &a, &format!("limit={limit}")).await,
            expected,
            "limit {limit}"
        );
    }
    let p = page(&app, &a, "limit=24").await;
    assert_eq!(p["nextPageToken"], Value::Null);
    assert_eq!(page(&app, &a, "").await["items"].as_array().unwrap().len(), 24);

    // sorting by creation time, both ways, ties by id
    let asc = all_pages(&app, &a, "sort=createdAt&limit=4").await;
    let desc = all_pages(&app, &a, "sort=-createdAt&limit=4").await;
    assert_eq!(asc.len(), 24);
    assert_eq!(asc.iter().rev().cloned().collect::<Vec<_>>(), desc);
    assert_eq!(asc[0], "a-00");

    // scope and organizations
    assert_eq!(all_pages(&app, &a, "scope=owned&limit=10").await.len(), 23);
    assert_eq!(all_pages(&app, &ab, "limit=50").await.len(), 29);
    assert_eq!(all_pages(&app, &ab, "organizationID=b&scope=owned").await.len(), 5);
    // organizations the caller may not read are dropped silently
    assert_eq!(
        all_pages(&app, &a, "organizationID=b&organizationID=c&scope=owned").await,
        Vec::<String>::new()
    );
    assert_eq!(all_pages(&app, &a, "organizationID=b").await, vec!["g-0".to_owned()]);
    assert_eq!(all_pages(&app, &admin, "limit=50").await.len(), 30);
    assert_eq!(
        all_pages(&app, &admin, "organizationID=c").await,
        vec!["c-0".to_owned(), "g-0".to_owned()]
    );

    // filters
    assert_eq!(all_pages(&app, &a, "architecture=aarch64&scope=owned").await.len(), 8);
    assert_eq!(all_pages(&app, &a, "tag=env=prod").await.len(), 12);
    assert_eq!(all_pages(&app, &a, "tag=team").await.len(), 11);
    assert_eq!(all_pages(&app, &a, "tag=team&tag=env=prod").await.len(), 0);
    assert_eq!(all_pages(&app, &a, "tag=env=prod&architecture=aarch64").await.len(), 4);
    assert_eq!(all_pages(&app, &a, "name=a-07").await, vec!["a-07".to_owned()]);
    assert_eq!(all_pages(&app, &admin, "kind=disk&limit=50").await.len(), 30);
    assert!(all_pages(&app, &admin, "kind=rootfs").await.is_empty());
    assert_eq!(all_pages(&app, &admin, "status=ready").await, vec!["c-0".to_owned()]);
    assert_eq!(
        all_pages(&app, &admin, "status=ready&status=failed").await,
        vec!["c-0".to_owned()]
    );
    assert_eq!(all_pages(&app, &admin, "status=pending&limit=100").await.len(), 29);
    // reserved provenance tags are filterable
    assert_eq!(all_pages(&app, &admin, "tag=strata.dev/organization=b").await.len(), 5);
    assert_eq!(
        all_pages(&app, &admin, "tag=strata.dev/source=upload&limit=100")
            .await
            .len(),
        30
    );
    assert_eq!(
        all_pages(&app, &admin, "tag=strata.dev/digest").await,
        vec!["c-0".to_owned()]
    );
    let items = page(&app, &a, "name=g-0").await;
    assert_eq!(items["items"][0]["id"], g["id"]);
    // a tag change is what the filters see next (the tags' prefilter column is rewritten in the
    // same transaction), and a value holding `=` matches only itself
    let a00 = page(&app, &a, "name=a-00").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .req(Method::PATCH, &format!("{}/images/{a00}", app.v1("a", "local")), &a)
        .json(&json!({"tags": {"env": "prod=x", "team": "y"}}))
        .send()
        .await
        .unwrap();
    let patched = expect_status(res, StatusCode::OK).await;
    // a page's items carry the same tags as the image itself (they come with the page's rows)
    let listed = page(&app, &a, "name=a-00").await;
    assert_eq!(listed["items"][0]["tags"], patched["tags"], "{listed}");
    assert_eq!(listed["items"][0]["tags"]["env"], "prod=x");
    assert_eq!(all_pages(&app, &a, "tag=env=prod").await.len(), 11);
    assert_eq!(all_pages(&app, &a, "tag=env=prod=x").await, vec!["a-00".to_owned()]);
    assert_eq!(
        all_pages(&app, &a, "tag=team=y&tag=env=prod=x").await,
        vec!["a-00".to_owned()]
    );
    assert_eq!(all_pages(&app, &a, "tag=team").await.len(), 12);
    assert!(all_pages(&app, &a, "tag=env=prod=").await.is_empty());
    // a binary older than the prefilter column (a rolling upgrade) changes the tags as it
    // always did, bumping the revision and leaving `tag_set` as it was: the filters still see
    // the change (the stale prefilter is not used), and the next write makes it current again
    {
        use sea_orm::ConnectionTrait;
        let db = strata_api::db::connect(&app.cfg.database_url(), Some(1)).await.unwrap();
        db.execute_unprepared(&format!(
            "UPDATE image_tags SET value = 'canary' WHERE image_id = '{a00}' AND key = 'team'"
        ))
        .await
        .unwrap();
        db.execute_unprepared(&format!("UPDATE images SET revision = revision + 1 WHERE id = '{a00}'"))
            .await
            .unwrap();
    }
    assert_eq!(all_pages(&app, &a, "tag=team=canary").await, vec!["a-00".to_owned()]);
    assert!(all_pages(&app, &a, "tag=team=y").await.is_empty());
    let res = app
        .req(Method::PATCH, &format!("{}/images/{a00}", app.v1("a", "local")), &a)
        .json(&json!({"tags": {"env": "prod=x", "team": "z"}}))
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::OK).await;
    assert_eq!(all_pages(&app, &a, "tag=team=z").await, vec!["a-00".to_owned()]);
    assert!(all_pages(&app, &a, "tag=team=canary").await.is_empty());

    // bad input
    let url = |q: &str| format!("{}/api/v2/regions/local/images?{q}", app.base);
    for q in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "sort=size",
        "status=done",
        "architecture=mips",
        "scope=all",
        "organizationId=a",
        "pageToken=garbage",
        "tag==x",
        "name=UPPER",
    ] {
        let res = app.req(Method::GET, &url(q), &a).send().await.unwrap();
        expect_error(res, StatusCode::BAD_REQUEST, "invalid-input").await;
    }
    // a token only works with the query it came from
    let token = page(&app, &a, "limit=2").await["nextPageToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .req(
            Method::GET,
            &url(&format!("limit=2&sort=createdAt&pageToken={token}")),
            &a,
        )
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST, "invalid-input").await;
    let res = app
        .req(Method::GET, &url(&format!("limit=2&tag=env&pageToken={token}")), &a)
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST, "invalid-input").await;
    let res = app
        .req(Method::GET, &url(&format!("limit=9&pageToken={token}")), &a)
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::OK).await;
    // auth applies here too
    expect_error(
        app.client.get(url("")).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let no_scope = app.token_with(&["a"], "kernels:read", false);
    expect_error(
        app.req(Method::GET, &url(""), &no_scope).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let res = app
        .req(
            Method::GET,
            &format!("{}/api/v2/regions/elsewhere/images", app.base),
            &a,
        )
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::NOT_FOUND, "not-found").await;

    // pages never repeat items even when new images arrive between pages
    let p1 = page(&app, &a, "limit=10&scope=owned").await;
    app.create_named("a", &a, "a-00a").await;
    let t = p1["nextPageToken"].as_str().unwrap();
    let p2 = page(&app, &a, &format!("limit=10&scope=owned&pageToken={t}")).await;
    let n1: BTreeSet<_> = p1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].clone().to_string())
        .collect();
    let n2: BTreeSet<_> = p2["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].clone().to_string())
        .collect();
    assert!(n1.is_disjoint(&n2));
});

both!(v1_list_pages, |app: TestApp| async move {
    let a = app.token(&["a"]);
    let admin = app.admin_token();
    for i in 0..7 {
        app.create_named("a", &a, &format!("a-{i}")).await;
    }
    app.create(
        "a",
        &admin,
        json!({"name": "g-0", "visibility": "global", "source": {"type": "upload"}}),
    )
    .await;
    let list = format!("{}/images", app.v1("a", "local"));
    // The default page holds a normal organization's images: all of them, no token.
    let res = app.req(Method::GET, &list, &a).send().await.unwrap();
    assert!(res.headers().get("next-page-token").is_none());
    let all = expect_status(res, StatusCode::OK).await;
    let names: Vec<_> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["a-0", "a-1", "a-2", "a-3", "a-4", "a-5", "a-6", "g-0"]);
    // Pages of 3 through Next-Page-Token give the same images in the same order, once each.
    for (scope, want) in [("available", names.clone()), ("owned", names[..7].to_vec())] {
        let mut got = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..10 {
            let url = match &token {
                Some(t) => format!("{list}?scope={scope}&limit=3&pageToken={t}"),
                None => format!("{list}?scope={scope}&limit=3"),
            };
            let res = app.req(Method::GET, &url, &a).send().await.unwrap();
            token = res
                .headers()
                .get("next-page-token")
                .map(|v| v.to_str().unwrap().to_owned());
            let page = expect_status(res, StatusCode::OK).await;
            assert!(page.as_array().unwrap().len() <= 3);
            got.extend(
                page.as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["name"].as_str().unwrap().to_owned()),
            );
            if token.is_none() {
                break;
            }
        }
        assert_eq!(got, want, "{scope}");
    }
    // A token belongs to its query; limits are checked.
    let res = app
        .req(Method::GET, &format!("{list}?limit=3"), &a)
        .send()
        .await
        .unwrap();
    let t = res.headers()["next-page-token"].to_str().unwrap().to_owned();
    let other = app
        .req(Method::GET, &format!("{list}?scope=owned&pageToken={t}"), &a)
        .send()
        .await
        .unwrap();
    expect_error(other, StatusCode::BAD_REQUEST, "invalid-input").await;
    for bad in ["limit=0", "limit=10001"] {
        let res = app.req(Method::GET, &format!("{list}?{bad}"), &a).send().await.unwrap();
        expect_error(res, StatusCode::BAD_REQUEST, "invalid-input").await;
    }
});
