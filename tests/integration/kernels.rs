//! Kernels: upload and validation of real ELF bytes, bundles made with tar and zstd, downloads with
//! Range and ETags, tenancy, images that reference kernels, consumers, the catalog and the v2 query.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest;

use crate::both;
use crate::harness::*;

/// The first 8 KiB of the machine's `/bin/true`: a real x86_64 ELF executable header (PIE).
pub fn elf_x86_64() -> Vec<u8> {
    let mut b = std::fs::read("/bin/true").expect("/bin/true");
    b.truncate(8192);
    assert_eq!(&b[..4], b"\x7fELF");
    assert_eq!(
        u16::from_le_bytes([b[18], b[19]]),
        62,
        "this machine's /bin/true is x86_64"
    );
    b
}

/// The same bytes with `e_machine` patched to 183 (AArch64).
pub fn elf_aarch64() -> Vec<u8> {
    let mut b = elf_x86_64();
    b[18..20].copy_from_slice(&183u16.to_le_bytes());
    b
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

fn kernels_url(app: &TestApp, org: &str) -> String {
    format!("{}/kernels", app.v1(org, "local"))
}

pub async fn create_kernel(app: &TestApp, org: &str, t: &str, body: Value) -> Value {
    let res = app
        .req(Method::POST, &kernels_url(app, org), t)
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::CREATED).await
}

async fn put_file(app: &TestApp, org: &str, t: &str, id: &str, what: &str, bytes: Vec<u8>) -> reqwest::Response {
    app.req(Method::PUT, &format!("{}/{id}/{what}", kernels_url(app, org)), t)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap()
}

/// A `ready` kernel of `org` with the x86_64 ELF (or aarch64) as vmlinux.
pub async fn ready_kernel(app: &TestApp, org: &str, t: &str, name: &str, arch: &str) -> Value {
    let k = create_kernel(
        app,
        org,
        t,
        json!({"name": name, "version": "6.1.0-18", "architecture": arch, "source": {"type": "upload"}}),
    )
    .await;
    let bytes = if arch == "aarch64" { elf_aarch64() } else { elf_x86_64() };
    let res = put_file(app, org, t, k["id"].as_str().unwrap(), "file", bytes).await;
    expect_status(res, StatusCode::OK).await
}

/// Object keys under `kernels/` in the test region's storage.
async fn stored_kernel_files(app: &TestApp) -> Vec<String> {
    let regions = strata_api::state::build_regions(&app.cfg).unwrap();
    let local = strata_domain::ids::RegionId::parse("local").unwrap();
    let mut keys = regions[&local].store.list_kernel_keys().await.unwrap();
    keys.sort();
    keys
}

/// A bundle made by the real `tar` (and `zstd`/`gzip`) from `files` (path, bytes).
pub fn make_bundle(files: &[(&str, Vec<u8>)], compress: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for (p, bytes) in files {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
    let out = dir.path().join("bundle");
    let names: Vec<&str> = files
        .iter()
        .map(|(p, _)| p.split('/').next().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut cmd = std::process::Command::new("tar");
    cmd.arg("-C").arg(&root).arg("-cf").arg(&out);
    match compress {
        "zstd" => {
            cmd.arg("--zstd");
        }
        "gzip" => {
            cmd.arg("--gzip");
        }
        _ => {}
    }
    let st = cmd.args(&names).status().unwrap();
    assert!(st.success(), "tar failed");
    std::fs::read(out).unwrap()
}

both!(
    upload_download_patch_delete,
    config = |_: &mut strata_api::Config| {},
    with_s3,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let elf = elf_x86_64();
        let k = create_kernel(
            &app,
            "acme",
            &t,
            json!({"name": "debian-6.1", "version": "6.1.0-18", "distro": "debian",
                   "tags": {"env": "prod"}, "source": {"type": "upload", "sha256": sha256_hex(&elf)}}),
        )
        .await;
        assert_eq!(k["status"]["state"], "pending");
        assert_eq!(k["format"], Value::Null);
        assert_eq!(k["tags"]["strata.dev/source"], "upload");
        let id = k["id"].as_str().unwrap().to_owned();
        let url = format!("{}/{id}", kernels_url(&app, "acme"));

        // The wrong upload route for this source, then the right one.
        let res = put_file(&app, "acme", &t, &id, "bundle", elf.clone()).await;
        expect_error(res, StatusCode::CONFLICT, "invalid-state").await;
        let res = put_file(&app, "acme", &t, &id, "file", elf.clone()).await;
        let etag = res.headers()["etag"].to_str().unwrap().to_owned();
        let k = expect_status(res, StatusCode::OK).await;
        assert_eq!(k["status"]["state"], "ready");
        assert_eq!(k["format"], "elf");
        assert_eq!(k["artifacts"]["vmlinux"]["sizeBytes"], elf.len());
        assert_eq!(k["artifacts"]["vmlinux"]["sha256"], sha256_hex(&elf));
        assert_eq!(k["artifacts"]["initrd"], Value::Null);
        assert_eq!(k["tags"]["strata.dev/digest"], format!("sha256:{}", sha256_hex(&elf)));
        assert_eq!(etag, format!("\"{}\"", k["revision"]));
        assert_eq!(stored_kernel_files(&app).await.len(), 1);
        // A second upload finds it ready.
        let res = put_file(&app, "acme", &t, &id, "file", elf.clone()).await;
        expect_error(res, StatusCode::CONFLICT, "invalid-state").await;

        // Download: whole, a range, conditional.
        let res = app
            .req(Method::GET, &format!("{url}/vmlinux"), &t)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let file_etag = res.headers()["etag"].to_str().unwrap().to_owned();
        assert_eq!(file_etag, format!("\"{}\"", sha256_hex(&elf)));
        assert_eq!(res.bytes().await.unwrap().to_vec(), elf);
        let res = app
            .req(Method::GET, &format!("{url}/vmlinux"), &t)
            .header("range", "bytes=0-3")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            res.headers()["content-range"].to_str().unwrap(),
            format!("bytes 0-3/{}", elf.len())
        );
        assert_eq!(&res.bytes().await.unwrap()[..], b"\x7fELF");
        let res = app
            .req(Method::GET, &format!("{url}/vmlinux"), &t)
            .header("range", format!("bytes={}-", elf.len() + 10))
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::RANGE_NOT_SATISFIABLE, "range-not-satisfiable").await;
        let res = app
            .req(Method::GET, &format!("{url}/vmlinux"), &t)
            .header("if-none-match", &file_etag)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
        let res = app.req(Method::GET, &format!("{url}/initrd"), &t).send().await.unwrap();
        expect_error(res, StatusCode::NOT_FOUND, "not-found").await;
        let res = app.req(Method::GET, &format!("{url}/bogus"), &t).send().await.unwrap();
        expect_error(res, StatusCode::BAD_REQUEST, "invalid-input").await;

        // GET with ETags; PATCH with If-Match.
        let res = app
            .req(Method::GET, &url, &t)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
        let res = app
            .req(Method::PATCH, &url, &t)
            .header("content-type", "application/merge-patch+json")
            .header("if-match", "\"1\"")
            .body(r#"{"description":"stale"}"#)
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::PRECONDITION_FAILED, "precondition-failed").await;
        let res = app
            .req(Method::PATCH, &url, &t)
            .header("content-type", "application/merge-patch+json")
            .header("if-match", &etag)
            .body(r#"{"description":"LTS","tags":{"env":null,"tier":"1"},"protected":true}"#)
            .send()
            .await
            .unwrap();
        let new_etag = res.headers()["etag"].to_str().unwrap().to_owned();
        let k = expect_status(res, StatusCode::OK).await;
        assert_ne!(new_etag, etag);
        assert_eq!(k["description"], "LTS");
        assert_eq!(k["tags"]["tier"], "1");
        assert!(k["tags"].get("env").is_none());
        let res = app
            .req(Method::PATCH, &url, &t)
            .header("content-type", "application/merge-patch+json")
            .body(r#"{"tags":{"strata.dev/source":"x"}}"#)
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::BAD_REQUEST, "reserved-tag").await;

        // Protected, then deleted with its files.
        let res = app.req(Method::DELETE, &url, &t).send().await.unwrap();
        expect_error(res, StatusCode::CONFLICT, "image-protected").await;
        let res = app
            .req(Method::PATCH, &url, &t)
            .header("content-type", "application/merge-patch+json")
            .body(r#"{"protected":null}"#)
            .send()
            .await
            .unwrap();
        expect_status(res, StatusCode::OK).await;
        let res = app.req(Method::DELETE, &url, &t).send().await.unwrap();
        expect_status(res, StatusCode::NO_CONTENT).await;
        let res = app.req(Method::GET, &url, &t).send().await.unwrap();
        expect_error(res, StatusCode::NOT_FOUND, "not-found").await;
        assert!(stored_kernel_files(&app).await.is_empty());
    }
);

both!(
    format_and_architecture_are_checked,
    config = |_: &mut strata_api::Config| {},
    with_s3,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let x86 = create_kernel(
            &app,
            "acme",
            &t,
            json!({"name": "k", "version": "6.1", "source": {"type": "upload"}}),
        )
        .await;
        let id = x86["id"].as_str().unwrap();
        let res = put_file(&app, "acme", &t, id, "file", elf_aarch64()).await;
        let e = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "architecture-mismatch").await;
        assert!(e["message"].as_str().unwrap().contains("AArch64"), "{e}");
        let mut gz = vec![0x1f, 0x8b, 8, 0];
        gz.resize(4096, 0);
        let res = put_file(&app, "acme", &t, id, "file", gz).await;
        let e = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "unsupported-kernel-format").await;
        assert!(e["message"].as_str().unwrap().contains("gzip"), "{e}");
        let res = put_file(&app, "acme", &t, id, "file", vec![]).await;
        expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "unsupported-kernel-format").await;
        // A promised sha256 that the bytes do not have.
        let k = create_kernel(
            &app,
            "acme",
            &t,
            json!({"name": "sum", "version": "6.1", "source": {"type": "upload", "sha256": "0".repeat(64)}}),
        )
        .await;
        let res = put_file(&app, "acme", &t, k["id"].as_str().unwrap(), "file", elf_x86_64()).await;
        expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "checksum-mismatch").await;
        // Nothing of the refused uploads stays, and the kernels are still pending.
        assert!(stored_kernel_files(&app).await.is_empty());
        let res = app
            .req(Method::GET, &format!("{}/{id}", kernels_url(&app, "acme")), &t)
            .send()
            .await
            .unwrap();
        assert_eq!(expect_status(res, StatusCode::OK).await["status"]["state"], "pending");

        // The aarch64 ELF on an aarch64 kernel is fine.
        let k = ready_kernel(&app, "acme", &t, "arm", "aarch64").await;
        assert_eq!(k["architecture"], "aarch64");
        assert_eq!(k["format"], "elf");
        let res = app
            .req(Method::POST, &kernels_url(&app, "acme"), &t)
            .json(&json!({"name": "arm", "version": "6.1", "source": {"type": "upload"}}))
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::CONFLICT, "name-taken").await;
        let res = app
            .req(Method::POST, &kernels_url(&app, "acme"), &t)
            .json(&json!({"name": "v", "version": "6 1", "source": {"type": "upload"}}))
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::BAD_REQUEST, "invalid-input").await;
    }
);

both!(tenancy_and_scopes, |app: TestApp| async move {
    let a = app.token(&["a"]);
    let b = app.token(&["b"]);
    let admin = app.admin_token();
    let k = ready_kernel(&app, "a", &a, "mine", "x86_64").await;
    let id = k["id"].as_str().unwrap();
    // Another organization cannot see, change or read it.
    for (m, u) in [
        (Method::GET, format!("{}/{id}", kernels_url(&app, "b"))),
        (Method::DELETE, format!("{}/{id}", kernels_url(&app, "b"))),
        (Method::GET, format!("{}/{id}/vmlinux", kernels_url(&app, "b"))),
        (Method::GET, format!("{}/{id}/consumers", kernels_url(&app, "b"))),
    ] {
        let res = app.req(m, &u, &b).send().await.unwrap();
        expect_error(res, StatusCode::NOT_FOUND, "not-found").await;
    }
    // Acting for an organization not in the token; images scopes only.
    let res = app.req(Method::GET, &kernels_url(&app, "a"), &b).send().await.unwrap();
    expect_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let images_only = app.token_with(&["a"], "images:read images:write", false);
    let res = app
        .req(Method::GET, &kernels_url(&app, "a"), &images_only)
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let read_only = app.token_with(&["a"], "kernels:read", false);
    let res = app
        .req(Method::DELETE, &format!("{}/{id}", kernels_url(&app, "a")), &read_only)
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::FORBIDDEN, "forbidden").await;

    // Tenants cannot publish global kernels; a platform admin can, and tenants read them.
    let res = app
        .req(Method::POST, &kernels_url(&app, "a"), &a)
        .json(&json!({"name": "g", "version": "6.1", "visibility": "global", "source": {"type": "upload"}}))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let g = create_kernel(
        &app,
        "a",
        &admin,
        json!({"name": "shared", "version": "6.1", "visibility": "global", "source": {"type": "upload"}}),
    )
    .await;
    assert_eq!(g["organizationId"], Value::Null);
    let gid = g["id"].as_str().unwrap();
    let res = put_file(&app, "a", &admin, gid, "file", elf_x86_64()).await;
    expect_status(res, StatusCode::OK).await;
    let res = app
        .req(Method::GET, &format!("{}/{gid}/vmlinux", kernels_url(&app, "b")), &b)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    for m in [Method::DELETE, Method::PATCH] {
        let res = app
            .req(m, &format!("{}/{gid}", kernels_url(&app, "b")), &b)
            .header("content-type", "application/merge-patch+json")
            .body("{}")
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::NOT_FOUND, "not-found").await;
    }
    let res = put_file(&app, "b", &b, gid, "file", elf_x86_64()).await;
    expect_error(res, StatusCode::NOT_FOUND, "not-found").await;

    // Lists: own plus global, or owned only.
    let res = app.req(Method::GET, &kernels_url(&app, "b"), &b).send().await.unwrap();
    let names: Vec<String> = expect_status(res, StatusCode::OK)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["shared"]);
    let res = app
        .req(Method::GET, &format!("{}?scope=owned", kernels_url(&app, "a")), &a)
        .send()
        .await
        .unwrap();
    assert_eq!(expect_status(res, StatusCode::OK).await.as_array().unwrap().len(), 1);

    // The platform admin removes the global kernel.
    let res = app
        .req(Method::DELETE, &format!("{}/{gid}", kernels_url(&app, "b")), &admin)
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::NO_CONTENT).await;
});

both!(images_reference_kernels, |app: TestApp| async move {
    let a = app.token(&["a"]);
    let b = app.token(&["b"]);
    let admin = app.admin_token();
    let k = ready_kernel(&app, "a", &a, "k-x86", "x86_64").await;
    let kid = k["id"].as_str().unwrap().to_owned();
    let arm = ready_kernel(&app, "a", &a, "k-arm", "aarch64").await;
    let other = ready_kernel(&app, "b", &b, "k-b", "x86_64").await;
    let pending = create_kernel(
        &app,
        "a",
        &a,
        json!({"name": "k-pending", "version": "6.1", "source": {"type": "upload"}}),
    )
    .await;

    let images = format!("{}/images", app.v1("a", "local"));
    let create = |name: &str, kernel: &Value| json!({"name": name, "kernelId": kernel, "source": {"type": "upload"}});
    for (bad, why) in [
        (&arm["id"], "architecture"),
        (&other["id"], "other organization"),
        (&pending["id"], "pending"),
        (&json!("0190c0de-0000-7000-8000-000000000000"), "missing"),
    ] {
        let res = app
            .req(Method::POST, &images, &a)
            .json(&create("img", bad))
            .send()
            .await
            .unwrap();
        let e = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid-kernel").await;
        assert!(!e["message"].as_str().unwrap().is_empty(), "{why}");
    }
    let res = app
        .req(Method::POST, &images, &a)
        .json(&create("img", &json!(kid)))
        .send()
        .await
        .unwrap();
    let img = expect_status(res, StatusCode::CREATED).await;
    assert_eq!(img["kernelId"], kid.as_str());
    let img_id = img["id"].as_str().unwrap().to_owned();

    // The kernel cannot go while the image uses it; the owner sees which image.
    let kurl = format!("{}/{kid}", kernels_url(&app, "a"));
    let res = app.req(Method::DELETE, &kurl, &a).send().await.unwrap();
    let e = expect_error(res, StatusCode::CONFLICT, "kernel-in-use").await;
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("1 image(s)") && msg.contains(&img_id), "{msg}");

    // PATCH: a bad kernel is refused, null detaches, then the kernel can be deleted.
    let iurl = format!("{images}/{img_id}");
    let patch = |body: Value| {
        app.req(Method::PATCH, &iurl, &a)
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string())
    };
    let res = patch(json!({"kernelId": arm["id"]})).send().await.unwrap();
    expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid-kernel").await;
    let res = patch(json!({"kernelId": null})).send().await.unwrap();
    assert_eq!(expect_status(res, StatusCode::OK).await["kernelId"], Value::Null);
    let res = app.req(Method::DELETE, &kurl, &a).send().await.unwrap();
    expect_status(res, StatusCode::NO_CONTENT).await;

    // A global kernel used by a tenant's image: only the platform admin may delete it, and is
    // told the count and the image.
    let g = create_kernel(
        &app,
        "a",
        &admin,
        json!({"name": "g", "version": "6.1", "visibility": "global", "source": {"type": "upload"}}),
    )
    .await;
    let gid = g["id"].as_str().unwrap().to_owned();
    expect_status(
        put_file(&app, "a", &admin, &gid, "file", elf_x86_64()).await,
        StatusCode::OK,
    )
    .await;
    let res = patch(json!({"kernelId": gid})).send().await.unwrap();
    assert_eq!(expect_status(res, StatusCode::OK).await["kernelId"], gid.as_str());
    // A global image cannot use an organization's kernel.
    let arm_b = ready_kernel(&app, "b", &b, "x-b2", "x86_64").await;
    let res = app
        .req(Method::POST, &format!("{}/images", app.v1("b", "local")), &admin)
        .json(&json!({"name": "gi", "visibility": "global", "kernelId": arm_b["id"], "source": {"type": "upload"}}))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid-kernel").await;
    let res = app
        .req(Method::DELETE, &format!("{}/{gid}", kernels_url(&app, "b")), &admin)
        .send()
        .await
        .unwrap();
    let e = expect_error(res, StatusCode::CONFLICT, "kernel-in-use").await;
    assert!(e["message"].as_str().unwrap().contains(&img_id), "{e}");
    // Deleting the image frees the kernel.
    expect_status(
        app.req(Method::DELETE, &iurl, &a).send().await.unwrap(),
        StatusCode::NO_CONTENT,
    )
    .await;
    let res = app
        .req(Method::DELETE, &format!("{}/{gid}", kernels_url(&app, "b")), &admin)
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::NO_CONTENT).await;
});

both!(consumers_block_deletion, |app: TestApp| async move {
    let a = app.token(&["a"]);
    let b = app.token(&["b"]);
    let admin = app.admin_token();
    let g = create_kernel(
        &app,
        "a",
        &admin,
        json!({"name": "g", "version": "6.1", "visibility": "global", "source": {"type": "upload"}}),
    )
    .await;
    let gid = g["id"].as_str().unwrap().to_owned();
    expect_status(
        put_file(&app, "a", &admin, &gid, "file", elf_x86_64()).await,
        StatusCode::OK,
    )
    .await;
    let curl = |org: &str, c: &str| format!("{}/{gid}/consumers/{c}", kernels_url(&app, org));
    for (org, t, c) in [("a", &a, "vm-a"), ("b", &b, "vm-b")] {
        let res = app
            .req(Method::PUT, &curl(org, c), t)
            .json(&json!({"kind": "vm"}))
            .send()
            .await
            .unwrap();
        expect_status(res, StatusCode::CREATED).await;
    }
    let res = app
        .req(Method::PUT, &curl("a", "vm-a"), &a)
        .json(&json!({"kind": "vm", "description": "again"}))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_status(res, StatusCode::OK).await["description"], "again");
    // Tenants see their own consumers; the admin sees all.
    let list = |org: &str, t: &str| {
        app.req(Method::GET, &format!("{}/{gid}/consumers", kernels_url(&app, org)), t)
            .send()
    };
    assert_eq!(
        expect_status(list("b", &b).await.unwrap(), StatusCode::OK)
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        expect_status(list("a", &admin).await.unwrap(), StatusCode::OK)
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let kurl = format!("{}/{gid}", kernels_url(&app, "a"));
    let res = app.req(Method::DELETE, &kurl, &admin).send().await.unwrap();
    let e = expect_error(res, StatusCode::CONFLICT, "kernel-in-use").await;
    assert!(e["message"].as_str().unwrap().contains("vm vm-a"), "{e}");
    for (org, t, c) in [("a", &a, "vm-a"), ("b", &b, "vm-b")] {
        let res = app.req(Method::DELETE, &curl(org, c), t).send().await.unwrap();
        expect_status(res, StatusCode::NO_CONTENT).await;
    }
    let res = app.req(Method::DELETE, &curl("a", "vm-a"), &a).send().await.unwrap();
    expect_error(res, StatusCode::NOT_FOUND, "not-found").await;
    let res = app.req(Method::DELETE, &kurl, &admin).send().await.unwrap();
    expect_status(res, StatusCode::NO_CONTENT).await;
});

both!(v2_query, |app: TestApp| async move {
    let a = app.token(&["a"]);
    let b = app.token(&["b"]);
    for (org, t, name, arch) in [
        ("a", &a, "a1", "x86_64"),
        ("a", &a, "a2", "aarch64"),
        ("a", &a, "a3", "x86_64"),
        ("b", &b, "b1", "x86_64"),
    ] {
        ready_kernel(&app, org, t, name, arch).await;
    }
    let q = |query: &str, t: &str| {
        app.req(
            Method::GET,
            &format!("{}/api/v2/regions/local/kernels?{query}", app.base),
            t,
        )
        .send()
    };
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let page = expect_status(q("", &a).await.unwrap(), StatusCode::OK).await;
    assert_eq!(names(&page), ["a1", "a2", "a3"]);
    let page = expect_status(q("architecture=x86_64", &a).await.unwrap(), StatusCode::OK).await;
    assert_eq!(names(&page), ["a1", "a3"]);
    let page = expect_status(
        q("tag=strata.dev/source=upload&name=a2", &a).await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(names(&page), ["a2"]);
    // Keyset paging.
    let p1 = expect_status(q("limit=2", &a).await.unwrap(), StatusCode::OK).await;
    assert_eq!(names(&p1), ["a1", "a2"]);
    let token = p1["nextPageToken"].as_str().unwrap();
    let p2 = expect_status(
        q(&format!("limit=2&pageToken={token}"), &a).await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(names(&p2), ["a3"]);
    assert_eq!(p2["nextPageToken"], Value::Null);
    // Another organization's kernels are dropped silently; a platform admin sees all.
    let page = expect_status(q("organizationID=b", &a).await.unwrap(), StatusCode::OK).await;
    assert!(names(&page).is_empty());
    let page = expect_status(q("sort=-createdAt", &app.admin_token()).await.unwrap(), StatusCode::OK).await;
    assert_eq!(names(&page), ["b1", "a3", "a2", "a1"]);
    let res = q("bogus=1", &a).await.unwrap();
    expect_error(res, StatusCode::BAD_REQUEST, "invalid-input").await;
    let images_only = app.token_with(&["a"], "images:read", false);
    expect_error(q("", &images_only).await.unwrap(), StatusCode::FORBIDDEN, "forbidden").await;
});

fn catalog_and_quota(cfg: &mut strata_api::Config) {
    let sha = sha256_hex(&elf_x86_64());
    cfg.kernel_catalog = vec![
        strata_api::config::KernelCatalogEntry {
            name: "debian-12".into(),
            distro: Some("debian".into()),
            architecture: "x86_64".into(),
            version: "6.1.0-18".into(),
            url: "http://127.0.0.1:9/debian-12.tar.zst".into(),
            sha256: sha,
            size_bytes: 8192,
            description: Some("Debian 12 cloud kernel".into()),
        },
        strata_api::config::KernelCatalogEntry {
            name: "other".into(),
            distro: None,
            architecture: "aarch64".into(),
            version: "6.8".into(),
            url: "http://127.0.0.1:9/other.tar".into(),
            sha256: "ab".repeat(32),
            size_bytes: 1,
            description: None,
        },
    ];
    cfg.quotas.organizations.insert(
        "small".into(),
        strata_api::config::QuotaOverride {
            max_bytes: Some(10_000),
            ..Default::default()
        },
    );
}

both!(
    catalog_and_bytes_quota,
    config = catalog_and_quota,
    |app: TestApp| async move {
        let t = app.token(&["small"]);
        let catalog = |t: String| {
            let url = format!("{}/kernel-catalog", app.v1("small", "local"));
            let req = app.req(Method::GET, &url, &t);
            async move { expect_status(req.send().await.unwrap(), StatusCode::OK).await }
        };
        let c = catalog(t.clone()).await;
        assert_eq!(c.as_array().unwrap().len(), 2);
        assert_eq!(c[0]["name"], "debian-12");
        assert_eq!(c[0]["inOrganization"], false);
        assert_eq!(c[0]["globalExists"], false);

        // The same vmlinux uploaded by the organization: it now has the entry; bytes are charged.
        let k = ready_kernel(&app, "small", &t, "mine", "x86_64").await;
        let c = catalog(t.clone()).await;
        assert_eq!(c[0]["inOrganization"], true);
        assert_eq!(c[1]["inOrganization"], false);
        let usage = |t: String| {
            let url = format!("{}/usage", app.v1("small", "local"));
            let req = app.req(Method::GET, &url, &t);
            async move { expect_status(req.send().await.unwrap(), StatusCode::OK).await }
        };
        assert_eq!(usage(t.clone()).await["bytes"]["used"], 8192);
        // 8192 + 8192 > 10000: the second kernel does not fit.
        let k2 = create_kernel(
            &app,
            "small",
            &t,
            json!({"name": "second", "version": "6.1", "source": {"type": "upload"}}),
        )
        .await;
        let res = put_file(&app, "small", &t, k2["id"].as_str().unwrap(), "file", elf_x86_64()).await;
        expect_error(res, StatusCode::CONFLICT, "quota-exceeded").await;
        assert_eq!(stored_kernel_files(&app).await.len(), 1);
        // Deleting gives the bytes back.
        let res = app
            .req(
                Method::DELETE,
                &format!("{}/{}", kernels_url(&app, "small"), k["id"].as_str().unwrap()),
                &t,
            )
            .send()
            .await
            .unwrap();
        expect_status(res, StatusCode::NO_CONTENT).await;
        assert_eq!(usage(t.clone()).await["bytes"]["used"], 0);
        let res = put_file(&app, "small", &t, k2["id"].as_str().unwrap(), "file", elf_x86_64()).await;
        expect_status(res, StatusCode::OK).await;
    }
);

async fn bundle_kernel(app: &TestApp, org: &str, t: &str, name: &str, arch: &str) -> String {
    let k = create_kernel(
        app,
        org,
        t,
        json!({"name": name, "version": "6.1.0-18", "architecture": arch, "source": {"type": "upload-bundle"}}),
    )
    .await;
    assert_eq!(k["provenance"]["source"], "upload-bundle");
    k["id"].as_str().unwrap().to_owned()
}

both!(
    bundles_unpack_into_files,
    config = |_: &mut strata_api::Config| {},
    with_s3,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let elf = elf_x86_64();
        let initrd = b"070701 fake cpio initrd".repeat(100);
        let module = b"\x7fELF module bytes".to_vec();
        for (i, compress) in ["zstd", "gzip", "none"].into_iter().enumerate() {
            let bundle = make_bundle(
                &[
                    ("vmlinux", elf.clone()),
                    ("initrd.img", initrd.clone()),
                    ("modules/6.1.0-18/kernel/fs/foo.ko", module.clone()),
                    ("modules/6.1.0-18/modules.dep", b"kernel/fs/foo.ko:\n".to_vec()),
                ],
                compress,
            );
            let id = bundle_kernel(&app, "acme", &t, &format!("b{i}"), "x86_64").await;
            // A single vmlinux is not what this kernel waits for.
            let res = put_file(&app, "acme", &t, &id, "file", elf.clone()).await;
            expect_error(res, StatusCode::CONFLICT, "invalid-state").await;
            let res = put_file(&app, "acme", &t, &id, "bundle", bundle.clone()).await;
            let k = expect_status(res, StatusCode::OK).await;
            assert_eq!(k["status"]["state"], "ready", "{compress}");
            assert_eq!(k["format"], "elf");
            assert_eq!(k["provenance"]["digest"], format!("sha256:{}", sha256_hex(&bundle)));
            assert_eq!(k["artifacts"]["vmlinux"]["sha256"], sha256_hex(&elf));
            assert_eq!(k["artifacts"]["initrd"]["sizeBytes"], initrd.len());
            assert!(k["artifacts"]["modules"]["sizeBytes"].as_u64().unwrap() > 0);
            let url = format!("{}/{id}", kernels_url(&app, "acme"));
            let res = app.req(Method::GET, &format!("{url}/initrd"), &t).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(res.bytes().await.unwrap().to_vec(), initrd);
            // The modules tree comes back as a tar the real tar lists.
            let res = app
                .req(Method::GET, &format!("{url}/modules"), &t)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let tar_bytes = res.bytes().await.unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("modules.tar");
            std::fs::write(&path, &tar_bytes).unwrap();
            let out = std::process::Command::new("tar")
                .arg("-tf")
                .arg(&path)
                .output()
                .unwrap();
            let listing = String::from_utf8_lossy(&out.stdout);
            assert!(listing.contains("foo.ko"), "{listing}");
        }
        assert_eq!(stored_kernel_files(&app).await.len(), 9);
        let staging = app.cfg.data_dir.join("staging");
        assert!(files_under(&staging).is_empty(), "{:?}", files_under(&staging));
    }
);

both!(
    bad_bundles_are_refused_and_leave_nothing,
    config = |_: &mut strata_api::Config| {},
    with_s3,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let elf = elf_x86_64();
        let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
            (
                "no vmlinux",
                make_bundle(&[("initrd.img", b"x".to_vec())], "zstd"),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-archive",
            ),
            (
                "a stray entry",
                make_bundle(&[("vmlinux", elf.clone()), ("etc/passwd", b"root".to_vec())], "zstd"),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-archive",
            ),
            (
                "an aarch64 vmlinux",
                make_bundle(&[("vmlinux", elf_aarch64())], "zstd"),
                StatusCode::UNPROCESSABLE_ENTITY,
                "architecture-mismatch",
            ),
            (
                "a gzip'd vmlinux",
                make_bundle(&[("vmlinux", vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0])], "none"),
                StatusCode::UNPROCESSABLE_ENTITY,
                "unsupported-kernel-format",
            ),
            (
                "not an archive",
                b"this is not a tar".repeat(100),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-archive",
            ),
        ];
        for (i, (what, bundle, status, code)) in cases.into_iter().enumerate() {
            let id = bundle_kernel(&app, "acme", &t, &format!("bad{i}"), "x86_64").await;
            let res = put_file(&app, "acme", &t, &id, "bundle", bundle).await;
            let e = expect_error(res, status, code).await;
            assert!(!e["message"].as_str().unwrap().is_empty(), "{what}");
            let res = app
                .req(Method::GET, &format!("{}/{id}", kernels_url(&app, "acme")), &t)
                .send()
                .await
                .unwrap();
            assert_eq!(
                expect_status(res, StatusCode::OK).await["status"]["state"],
                "pending",
                "{what}"
            );
        }
        // A promised sha256 is checked before anything is unpacked.
        let k = create_kernel(
            &app,
            "acme",
            &t,
            json!({"name": "sum", "version": "6.1", "source": {"type": "upload-bundle", "sha256": "1".repeat(64)}}),
        )
        .await;
        let bundle = make_bundle(&[("vmlinux", elf.clone())], "zstd");
        let res = put_file(&app, "acme", &t, k["id"].as_str().unwrap(), "bundle", bundle).await;
        expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "checksum-mismatch").await;
        assert!(stored_kernel_files(&app).await.is_empty());
        // Nothing is left in the staging directory either.
        let staging = app.cfg.data_dir.join("staging");
        assert!(files_under(&staging).is_empty(), "{:?}", files_under(&staging));
    }
);

both!(delete_races_with_a_new_reference, |app: TestApp| async move {
    // A kernel delete and a PATCH that makes an image use the kernel, at the same time, many
    // times: the database decides, so an image never ends up pointing at a deleted kernel.
    let t = app.token(&["a"]);
    let images = format!("{}/images", app.v1("a", "local"));
    let img = app.create_named("a", &t, "racer").await;
    let iurl = format!("{images}/{}", img["id"].as_str().unwrap());
    for i in 0..8 {
        let k = ready_kernel(&app, "a", &t, &format!("k{i}"), "x86_64").await;
        let kid = k["id"].as_str().unwrap().to_owned();
        let del = app.req(Method::DELETE, &format!("{}/{kid}", kernels_url(&app, "a")), &t);
        let patch = app
            .req(Method::PATCH, &iurl, &t)
            .header("content-type", "application/merge-patch+json")
            .body(json!({"kernelId": kid}).to_string());
        let (d, p) = tokio::join!(del.send(), patch.send());
        let (d, p) = (d.unwrap(), p.unwrap());
        let (ds, ps) = (d.status(), p.status());
        let pbody: Value = p.json().await.unwrap();
        let now: Value = app
            .req(Method::GET, &iurl, &t)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ds == StatusCode::NO_CONTENT {
            assert_eq!(ps, StatusCode::UNPROCESSABLE_ENTITY, "{pbody}");
            assert_eq!(pbody["error"], "invalid-kernel");
            assert_ne!(now["kernelId"], kid.as_str());
        } else {
            assert_eq!(ds, StatusCode::CONFLICT);
            assert_eq!(ps, StatusCode::OK, "{pbody}");
            assert_eq!(now["kernelId"], kid.as_str());
        }
    }
});

both!(
    size_cap,
    config = |c: &mut strata_api::Config| c.kernels.max_bytes = 4096,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        for (source, what) in [("upload", "file"), ("upload-bundle", "bundle")] {
            let k = create_kernel(
                &app,
                "acme",
                &t,
                json!({"name": source, "version": "6.1", "source": {"type": source}}),
            )
            .await;
            let res = put_file(&app, "acme", &t, k["id"].as_str().unwrap(), what, elf_x86_64()).await;
            expect_error(res, StatusCode::PAYLOAD_TOO_LARGE, "too-large").await;
        }
        assert!(stored_kernel_files(&app).await.is_empty());
    }
);

// The v1 kernel list pages like the image list: `limit`, `Next-Page-Token`, `pageToken`.
both!(kernel_list_pages, |app: TestApp| async move {
    let t = app.token(&["acme"]);
    for n in ["k1", "k2", "k3", "k4", "k5"] {
        create_kernel(
            &app,
            "acme",
            &t,
            json!({"name": n, "version": "6.1", "source": {"type": "upload"}}),
        )
        .await;
    }
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..5 {
        let mut url = format!("{}?limit=2", kernels_url(&app, "acme"));
        if let Some(t) = &token {
            url.push_str(&format!("&pageToken={t}"));
        }
        let res = app.req(Method::GET, &url, &t).send().await.unwrap();
        token = res
            .headers()
            .get("next-page-token")
            .map(|v| v.to_str().unwrap().to_owned());
        let page = expect_status(res, StatusCode::OK).await;
        assert!(page.as_array().unwrap().len() <= 2);
        names.extend(
            page.as_array()
                .unwrap()
                .iter()
                .map(|k| k["name"].as_str().unwrap().to_owned()),
        );
        if token.is_none() {
            break;
        }
    }
    assert_eq!(names, ["k1", "k2", "k3", "k4", "k5"]);
    let res = app
        .req(Method::GET, &format!("{}?limit=0", kernels_url(&app, "acme")), &t)
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST, "invalid-input").await;
});
