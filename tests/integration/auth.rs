use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both;
use crate::harness::*;

fn claims(exp_offset: i64) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": "x", "org_ids": ["acme"], "scope": ALL_SCOPES, "exp": now + exp_offset})
}

both!(tokens_are_verified, |app: TestApp| async move {
    let url = format!("{}/images", app.v1("acme", "local"));
    let get = |auth: Option<String>| {
        let mut r = app.client.get(&url);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    let res = get(None).await.unwrap();
    assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"strata\"");
    expect_error(res, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let dev_secret = std::fs::read_to_string(app.cfg.data_dir.join("dev-signing-key")).unwrap();
    let sign = |alg: Algorithm, secret: &[u8], c: serde_json::Value| {
        let mut h = Header::new(alg);
        h.kid = Some("strata-dev".into());
        jsonwebtoken::encode(&h, &c, &EncodingKey::from_secret(secret)).unwrap()
    };
    let expired = sign(Algorithm::HS256, dev_secret.as_bytes(), claims(-3600));
    let future_nbf = {
        let mut c = claims(3600);
        c["nbf"] = json!(chrono::Utc::now().timestamp() + 3600);
        sign(Algorithm::HS256, dev_secret.as_bytes(), c)
    };
    let other_key = sign(
        Algorithm::HS256,
        b"0123456789abcdef0123456789abcdef-not-ours",
        claims(3600),
    );
    let wrong_alg = sign(Algorithm::HS512, dev_secret.as_bytes(), claims(3600));
    let with_crit = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("strata-dev".into());
        h.crit = Some(vec!["exp".into()]);
        jsonwebtoken::encode(&h, &claims(3600), &EncodingKey::from_secret(dev_secret.as_bytes())).unwrap()
    };
    let unencoded = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("strata-dev".into());
        h.extras.insert("b64", false);
        jsonwebtoken::encode(&h, &claims(3600), &EncodingKey::from_secret(dev_secret.as_bytes())).unwrap()
    };
    let future_iat = {
        let mut c = claims(7200);
        c["iat"] = json!(chrono::Utc::now().timestamp() + 3600);
        sign(Algorithm::HS256, dev_secret.as_bytes(), c)
    };
    let no_exp = {
        let mut c = claims(0);
        c.as_object_mut().unwrap().remove("exp");
        sign(Algorithm::HS256, dev_secret.as_bytes(), c)
    };
    // alg=none: header and claims, empty signature
    use base64::Engine;
    let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!("{}.{}.", b64(json!({"alg": "none", "typ": "JWT"})), b64(claims(3600)));
    for (what, auth) in [
        ("garbage", "Bearer not.a.token".to_owned()),
        ("basic", "Basic dXNlcjpwYXNz".to_owned()),
        ("expired", format!("Bearer {expired}")),
        ("nbf in the future", format!("Bearer {future_nbf}")),
        ("foreign key", format!("Bearer {other_key}")),
        ("HS512 with the HS256 key", format!("Bearer {wrong_alg}")),
        ("no exp", format!("Bearer {no_exp}")),
        ("alg none", format!("Bearer {none}")),
        ("crit header", format!("Bearer {with_crit}")),
        ("b64: false", format!("Bearer {unencoded}")),
        ("iat in the future", format!("Bearer {future_iat}")),
    ] {
        let res = get(Some(auth)).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
        let body = expect_error(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
        assert!(!body["message"].as_str().unwrap().contains(&dev_secret), "{what}");
    }
    let ok = sign(Algorithm::HS256, dev_secret.as_bytes(), claims(3600));
    expect_status(get(Some(format!("Bearer {ok}"))).await.unwrap(), StatusCode::OK).await;
    // an iat within the leeway (clock skew) is fine
    let skewed = {
        let mut c = claims(3600);
        c["iat"] = json!(chrono::Utc::now().timestamp() + 5);
        sign(Algorithm::HS256, dev_secret.as_bytes(), c)
    };
    expect_status(get(Some(format!("Bearer {skewed}"))).await.unwrap(), StatusCode::OK).await;

    // scopes and organizations
    let read_only = app.token_with(&["acme"], "images:read", false);
    expect_status(
        app.req(Method::GET, &url, &read_only).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let res = app
        .req(Method::POST, &url, &read_only)
        .json(&json!({"name": "x", "source": {"type": "upload"}}))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let kernels_only = app.token_with(&["acme"], "kernels:read kernels:write", false);
    expect_error(
        app.req(Method::GET, &url, &kernels_only).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let other = app.token(&["other"]);
    expect_error(
        app.req(Method::GET, &url, &other).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // platform admins act for any organization
    let admin = app.admin_token();
    expect_status(app.req(Method::GET, &url, &admin).send().await.unwrap(), StatusCode::OK).await;
});

fn with_issuer(cfg: &mut strata_api::Config) {
    cfg.auth.issuer = Some("https://idp.example".into());
    cfg.auth.audience = Some("strata".into());
}

both!(
    issuer_and_audience_are_checked_when_configured,
    config = with_issuer,
    |app: TestApp| async move {
        let url = format!("{}/images", app.v1("acme", "local"));
        let good = app.token(&["acme"]);
        expect_status(app.req(Method::GET, &url, &good).send().await.unwrap(), StatusCode::OK).await;
        let dev_secret = std::fs::read_to_string(app.cfg.data_dir.join("dev-signing-key")).unwrap();
        for (iss, aud) in [
            ("https://evil.example", "strata"),
            ("https://idp.example", "other"),
            ("", ""),
        ] {
            let mut c = claims(3600);
            if !iss.is_empty() {
                c["iss"] = json!(iss);
                c["aud"] = json!(aud);
            }
            let t = jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &c,
                &EncodingKey::from_secret(dev_secret.as_bytes()),
            )
            .unwrap();
            expect_error(
                app.req(Method::GET, &url, &t).send().await.unwrap(),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            )
            .await;
        }
    }
);

/// An RS256 key from config: tokens signed with its private key pass; the classic confusion
/// attack (HS256 signed with the public key's PEM as the HMAC secret) fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_keys_are_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let public = dir.path().join("k.pub.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .status()
        .unwrap()
        .success()
        && std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public)
            .status()
            .unwrap()
            .success();
    assert!(ok, "openssl could not make a key pair");
    let public_path = public.clone();
    let app = spawn_with(Backend::Sqlite, move |cfg| {
        cfg.auth.dev_key = false;
        cfg.auth.keys = vec![strata_api::config::KeyConfig {
            kid: None,
            algorithm: "RS256".into(),
            secret: None,
            secret_file: None,
            public_key_file: Some(public_path),
        }];
    })
    .await;
    let url = format!("{}/images", app.v1("acme", "local"));
    let private = std::fs::read(&key).unwrap();
    let good = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims(3600),
        &EncodingKey::from_rsa_pem(&private).unwrap(),
    )
    .unwrap();
    expect_status(app.req(Method::GET, &url, &good).send().await.unwrap(), StatusCode::OK).await;
    let pem = std::fs::read(&public).unwrap();
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(3600),
        &EncodingKey::from_secret(&pem),
    )
    .unwrap();
    expect_error(
        app.req(Method::GET, &url, &forged).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    // the dev key is off: dev tokens are not trusted
    let dev =
        strata_api::auth::mint_dev_token(&app.cfg, "x", &["acme".into()], &["images:read".into()], false, 60).unwrap();
    expect_error(
        app.req(Method::GET, &url, &dev).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

fn regions(cfg: &mut strata_api::Config) {
    use strata_api::config::{ProviderConfig, RegionConfig};
    cfg.regions = vec![
        RegionConfig {
            id: "open".into(),
            organizations: None,
            provider: ProviderConfig::Local {
                root: cfg.data_dir.join("open"),
            },
        },
        RegionConfig {
            id: "vip".into(),
            organizations: Some(vec!["acme".into()]),
            provider: ProviderConfig::Local {
                root: cfg.data_dir.join("vip"),
            },
        },
    ];
}

both!(
    regions_hide_from_organizations_not_allowed,
    config = regions,
    |app: TestApp| async move {
        let acme = app.token(&["acme"]);
        let other = app.token(&["other"]);
        expect_status(
            app.req(Method::GET, &format!("{}/images", app.v1("acme", "vip")), &acme)
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        expect_status(
            app.req(Method::GET, &format!("{}/images", app.v1("other", "open")), &other)
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        // a closed region and a region that does not exist answer alike
        let closed = expect_error(
            app.req(Method::GET, &format!("{}/images", app.v1("other", "vip")), &other)
                .send()
                .await
                .unwrap(),
            StatusCode::NOT_FOUND,
            "not-found",
        )
        .await;
        let missing = expect_error(
            app.req(Method::GET, &format!("{}/images", app.v1("other", "nowhere")), &other)
                .send()
                .await
                .unwrap(),
            StatusCode::NOT_FOUND,
            "not-found",
        )
        .await;
        assert_eq!(
            closed["message"].as_str().unwrap().replace("vip", "X"),
            missing["message"].as_str().unwrap().replace("nowhere", "X")
        );
        // readiness does not name regions to anyone but a platform admin
        for token in [None, Some(other.clone()), Some(acme.clone())] {
            let mut req = app.client.get(format!("{}/readyz", app.base));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let text = req.send().await.unwrap().text().await.unwrap();
            assert!(
                !text.contains("vip") && !text.contains("open"),
                "readyz names a region: {text}"
            );
        }
        let admin = app
            .req(Method::GET, &format!("{}/readyz", app.base), &app.admin_token())
            .send()
            .await
            .unwrap();
        assert_eq!(expect_status(admin, StatusCode::OK).await["checks"]["region:vip"], "ok");
        // even for writes, and for the v2 query
        let res = app
            .req(Method::POST, &format!("{}/images", app.v1("other", "vip")), &other)
            .json(&json!({"name": "x", "source": {"type": "upload"}}))
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::NOT_FOUND, "not-found").await;
        let res = app
            .req(Method::GET, &format!("{}/api/v2/regions/vip/images", app.base), &other)
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::NOT_FOUND, "not-found").await;
        // the embedded default region is not there when regions are configured
        expect_error(
            app.req(Method::GET, &format!("{}/images", app.v1("acme", "local")), &acme)
                .send()
                .await
                .unwrap(),
            StatusCode::NOT_FOUND,
            "not-found",
        )
        .await;
        // a token for another organization learns nothing about the region: 403 comes first
        expect_error(
            app.req(Method::GET, &format!("{}/images", app.v1("acme", "nowhere")), &other)
                .send()
                .await
                .unwrap(),
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
    }
);

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// ES256 and EdDSA public keys from PEM files, and an RS256 key from a JWKS document, each pinned
/// to its algorithm and matched by kid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec_eddsa_and_jwks_keys() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &p("ec.key"),
    ]);
    openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", &p("ec.key"), "-out", &p("ec.pk8")]);
    openssl(&["ec", "-in", &p("ec.key"), "-pubout", "-out", &p("ec.pub")]);
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", &p("ed.key")]);
    openssl(&["pkey", "-in", &p("ed.key"), "-pubout", "-out", &p("ed.pub")]);
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &p("rsa.key"),
    ]);
    // JWKS: the RSA public key as n and e (65537 = AQAB)
    let modulus = String::from_utf8(openssl(&["rsa", "-in", &p("rsa.key"), "-noout", "-modulus"])).unwrap();
    let hex_n = modulus.trim().trim_start_matches("Modulus=");
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hex::decode(hex_n).unwrap());
    let jwks = json!({"keys": [{"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig", "n": n, "e": "AQAB"}]});
    std::fs::write(p("jwks.json"), jwks.to_string()).unwrap();

    let (ec_pub, ed_pub, jwks_path) = (p("ec.pub"), p("ed.pub"), p("jwks.json"));
    let app = spawn_with(Backend::Sqlite, move |cfg| {
        use strata_api::config::KeyConfig;
        cfg.auth.dev_key = false;
        let key = |kid: &str, alg: &str, file: &str| KeyConfig {
            kid: Some(kid.into()),
            algorithm: alg.into(),
            secret: None,
            secret_file: None,
            public_key_file: Some(file.into()),
        };
        cfg.auth.keys = vec![key("ec-1", "ES256", &ec_pub), key("ed-1", "EdDSA", &ed_pub)];
        cfg.auth.jwks_file = Some(jwks_path.into());
    })
    .await;
    let url = format!("{}/images", app.v1("acme", "local"));
    let sign = |alg: Algorithm, kid: &str, key: EncodingKey| {
        let mut h = Header::new(alg);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, &claims(3600), &key).unwrap()
    };
    let ec = EncodingKey::from_ec_pem(&std::fs::read(p("ec.pk8")).unwrap()).unwrap();
    let ed = EncodingKey::from_ed_pem(&std::fs::read(p("ed.key")).unwrap()).unwrap();
    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(p("rsa.key")).unwrap()).unwrap();
    for (what, token) in [
        ("ES256", sign(Algorithm::ES256, "ec-1", ec.clone())),
        ("EdDSA", sign(Algorithm::EdDSA, "ed-1", ed.clone())),
        ("RS256 from JWKS", sign(Algorithm::RS256, "rsa-1", rsa.clone())),
    ] {
        let res = app.req(Method::GET, &url, &token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{what}");
    }
    // a kid naming another key's slot, or another algorithm with the right kid, is refused
    for (what, token) in [
        ("EdDSA token under the EC kid", sign(Algorithm::EdDSA, "ec-1", ed)),
        ("RS512 under the JWKS kid", sign(Algorithm::RS512, "rsa-1", rsa)),
        ("unknown kid", sign(Algorithm::ES256, "nope", ec)),
    ] {
        let res = app.req(Method::GET, &url, &token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
    }
}
