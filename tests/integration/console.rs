//! The console's server side: the static files under `/console/` with their security headers,
//! and the two small API operations it needs (`listRegions`, `getSignInInfo`).

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both;
use crate::harness::*;

fn regions(cfg: &mut strata_api::Config) {
    use strata_api::config::{ProviderConfig, RegionConfig};
    cfg.regions = ["eu-1", "us-1", "vip"]
        .into_iter()
        .map(|id| RegionConfig {
            id: id.into(),
            organizations: (id == "vip").then(|| vec!["acme".into()]),
            provider: ProviderConfig::Local {
                root: cfg.data_dir.join(id),
            },
        })
        .collect();
}

async fn region_ids(app: &TestApp, token: &str) -> Vec<String> {
    let body = expect_status(
        app.req(Method::GET, &format!("{}/api/v2/regions", app.base), token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

both!(
    regions_list_what_the_caller_can_use,
    config = regions,
    |app: TestApp| async move {
        assert_eq!(region_ids(&app, &app.token(&["acme"])).await, ["eu-1", "us-1", "vip"]);
        // A closed region is not listed, and it is exactly the one the v2 query refuses.
        assert_eq!(region_ids(&app, &app.token(&["globex"])).await, ["eu-1", "us-1"]);
        let globex = app.token(&["globex"]);
        expect_error(
            app.req(Method::GET, &format!("{}/api/v2/regions/vip/images", app.base), &globex)
                .send()
                .await
                .unwrap(),
            StatusCode::NOT_FOUND,
            "not-found",
        )
        .await;
        // No organization at all: nothing is usable, except for a platform admin.
        assert!(region_ids(&app, &app.token(&[])).await.is_empty());
        assert_eq!(
            region_ids(&app, &app.token_with(&[], ALL_SCOPES, true)).await,
            ["eu-1", "us-1", "vip"]
        );
        // Any valid token will do (the list says where to look, not what is there): kernels-only too.
        assert_eq!(
            region_ids(&app, &app.token_with(&["globex"], "kernels:read", false)).await,
            ["eu-1", "us-1"]
        );
        for bad in [None, Some("not-a-jwt")] {
            let mut r = app.client.get(format!("{}/api/v2/regions", app.base));
            if let Some(t) = bad {
                r = r.bearer_auth(t);
            }
            let res = r.send().await.unwrap();
            assert!(res.headers().contains_key("www-authenticate"));
            expect_error(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
        }
    }
);

both!(
    sign_in_info_says_whether_the_dev_key_is_trusted,
    |app: TestApp| async move {
        let body = expect_status(
            app.client
                .get(format!("{}/api/v2/sign-in", app.base))
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(body, json!({"devKey": true}));
    }
);

both!(
    sign_in_info_without_the_dev_key,
    config = |cfg: &mut strata_api::Config| {
        cfg.auth.dev_key = false;
        cfg.auth.keys = vec![strata_api::config::KeyConfig {
            kid: None,
            algorithm: "HS256".into(),
            secret: Some(secrecy::SecretString::from("x".repeat(32))),
            secret_file: None,
            public_key_file: None,
        }];
    },
    |app: TestApp| async move {
        let body = expect_status(
            app.client
                .get(format!("{}/api/v2/sign-in", app.base))
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(body, json!({"devKey": false}));
    }
);

/// Every file the console references is served from the binary with its type and a CSP that
/// allows no inline code and no other origin; nothing under /console/ needs a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_files_are_served_with_a_strict_policy() {
    run(
        Backend::Sqlite,
        |_| {},
        |app: TestApp| async move {
            let c = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let res = c.get(format!("{}/console", app.direct)).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::PERMANENT_REDIRECT);
            assert_eq!(res.headers()["location"], "/console/");

            let res = c.get(format!("{}/console/", app.direct)).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
            for directive in [
                "default-src 'none'",
                "script-src 'self'",
                "style-src 'self'",
                "connect-src 'self'",
                "frame-ancestors 'none'",
            ] {
                assert!(csp.contains(directive), "{directive} missing from {csp}");
            }
            assert!(!csp.contains("unsafe"), "{csp}");
            assert_eq!(res.headers()["x-content-type-options"], "nosniff");
            assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
            let html = res.text().await.unwrap();
            // No inline script or style, nothing from another origin.
            assert!(!html.contains("<script>") && !html.contains("<style") && !html.contains(" style="));
            assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"));

            // Follow every module import from main.js: each one is served as JavaScript.
            let mut todo = vec![
                "js/main.js".to_owned(),
                "console.css".to_owned(),
                "favicon.svg".to_owned(),
            ];
            let mut seen = std::collections::BTreeSet::new();
            while let Some(f) = todo.pop() {
                if !seen.insert(f.clone()) {
                    continue;
                }
                let res = c.get(format!("{}/console/{f}", app.direct)).send().await.unwrap();
                assert_eq!(res.status(), StatusCode::OK, "{f}");
                assert!(res.headers().contains_key("content-security-policy"));
                let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
                let body = res.text().await.unwrap();
                if f.ends_with(".js") {
                    assert!(ct.starts_with("text/javascript"), "{f}: {ct}");
                    for sink in [
                        "innerHTML",
                        "outerHTML",
                        "insertAdjacentHTML",
                        "document.write",
                        "eval(",
                        "new Function",
                    ] {
                        assert!(!body.contains(sink), "{f} uses {sink}: markup or code from strings");
                    }
                    assert!(!body.contains("localStorage.setItem"), "{f} persists beyond the tab");
                    for line in body.lines().filter(|l| l.starts_with("import ")) {
                        let target = line.rsplit("from '").next().unwrap().trim_end_matches("';");
                        todo.push(format!("js/{}", target.trim_start_matches("./")));
                    }
                }
            }
            assert!(seen.len() >= 10, "{seen:?}");

            let res = c.get(format!("{}/console/nope.js", app.direct)).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::NOT_FOUND);
            // Only the compiled-in table is served: no file system behind it.
            for path in ["%2e%2e/Cargo.toml", "..%2fCargo.toml", "js/", "index.html/"] {
                let res = c.get(format!("{}/console/{path}", app.direct)).send().await.unwrap();
                assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
            }
        },
    )
    .await;
}
