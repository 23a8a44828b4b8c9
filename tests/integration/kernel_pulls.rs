//! Kernel pulls on the job runner: bundles from a URL and from the catalog, served by a loopback
//! HTTP server; failures with their reason codes; cancel on delete; kill -9 during a pull; and
//! the operator's defaults reconciled once across replicas.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use strata_api::config::{DefaultArtifact, DefaultKind, KernelCatalogEntry};
use strata_domain::disk_format::samples;

use crate::harness::*;
use crate::kernels::{elf_aarch64, elf_x86_64, make_bundle};
use crate::on_both;
use crate::upstream::{Behaviour, Upstream};

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A zstd bundle with a vmlinux, an initrd and one module, made by the real tar.
fn bundle(vmlinux: Vec<u8>) -> Vec<u8> {
    make_bundle(
        &[
            ("vmlinux", vmlinux),
            ("initrd.img", b"070701 initrd".repeat(200)),
            ("modules/6.1.0/kernel/fs/x.ko", b"module bytes".repeat(50)),
        ],
        "zstd",
    )
}

fn entry(name: &str, url: String, body: &[u8]) -> KernelCatalogEntry {
    KernelCatalogEntry {
        name: name.into(),
        distro: Some("debian".into()),
        architecture: "x86_64".into(),
        version: "6.1.0-18".into(),
        url,
        sha256: sha(body),
        size_bytes: body.len() as u64,
        description: Some("Debian 12 cloud kernel".into()),
    }
}

fn pull_cfg(cfg: &mut strata_api::Config) {
    cfg.imports.allow_hosts = vec!["127.0.0.1".into()];
    cfg.imports.lease_secs = 2;
    cfg.imports.poll_interval_ms = 100;
    cfg.imports.idle_timeout_secs = 5;
    cfg.imports.peek_timeout_secs = 3;
    cfg.imports.max_attempts = 2;
}

async fn create(app: &TestApp, t: &str, body: Value) -> reqwest::Response {
    let url = format!("{}/kernels", app.v1("acme", "local"));
    app.req(Method::POST, &url, t).json(&body).send().await.unwrap()
}

/// Polls a kernel until `done` holds (or fails the test after `secs`).
async fn wait_kernel(app: &TestApp, t: &str, id: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let url = format!("{}/kernels/{id}", app.v1("acme", "local"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let k = expect_status(app.req(Method::GET, &url, t).send().await.unwrap(), StatusCode::OK).await;
        if done(&k) {
            return k;
        }
        assert!(tokio::time::Instant::now() < deadline, "kernel did not get there: {k}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn settled(k: &Value) -> bool {
    k["status"]["state"] != "importing"
}

async fn kernel_keys(app: &TestApp) -> Vec<String> {
    let regions = strata_api::state::build_regions(&app.cfg).unwrap();
    let local = strata_domain::ids::RegionId::parse("local").unwrap();
    let mut keys = regions[&local].store.list_kernel_keys().await.unwrap();
    keys.sort();
    keys
}

/// Staging entries (kernel uploads and pulls) left in the data directory.
fn staging_entries(app: &TestApp) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(app.cfg.data_dir.join("staging")) {
        Ok(d) => d.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

async fn pulls(backend: Backend, s3: bool) {
    let good = bundle(elf_x86_64());
    let up = Upstream::start(good.clone(), Behaviour::Normal).await;
    let wrong_arch = bundle(elf_aarch64());
    let arm = Upstream::start(wrong_arch.clone(), Behaviour::Normal).await;
    let not_archive = Upstream::start(elf_x86_64(), Behaviour::Normal).await;
    let catalog = vec![
        entry("debian-12", up.url("debian-12.tar.zst"), &good),
        // The same bytes, announced with another checksum: the pull must refuse them.
        KernelCatalogEntry {
            sha256: "ab".repeat(32),
            ..entry("tampered", up.url("tampered.tar.zst"), &good)
        },
    ];
    let bucket = if s3 { Some(s3_bucket().await) } else { None };
    let configure = move |cfg: &mut strata_api::Config| {
        pull_cfg(cfg);
        cfg.kernel_catalog = catalog;
        if let Some(b) = &bucket {
            use_s3(cfg, b);
        }
    };
    let up_url = up.url("bundle.tar.zst");
    run(backend, configure, |app: TestApp| async move {
        let t = app.token(&["acme"]);

        // From a URL, with its checksum.
        let res = create(
            &app,
            &t,
            json!({"name": "from-url", "version": "6.1.0-18",
                   "source": {"type": "url", "url": up_url, "sha256": sha(&good)}}),
        )
        .await;
        let k = expect_status(res, StatusCode::CREATED).await;
        assert_eq!(k["status"]["state"], "importing");
        assert_eq!(k["provenance"]["source"], "url");
        assert_eq!(k["provenance"]["reference"], up_url);
        let id = k["id"].as_str().unwrap().to_owned();
        let k = wait_kernel(&app, &t, &id, 30, settled).await;
        assert_eq!(k["status"]["state"], "ready", "{k}");
        assert_eq!(k["format"], "elf");
        assert_eq!(k["provenance"]["digest"], format!("sha256:{}", sha(&good)));
        assert_eq!(k["tags"]["strata.dev/digest"], format!("sha256:{}", sha(&good)));
        assert_eq!(k["artifacts"]["vmlinux"]["sha256"], sha(&elf_x86_64()));
        assert!(k["artifacts"]["initrd"]["sizeBytes"].as_u64().unwrap() > 0);
        assert!(k["artifacts"]["modules"]["sizeBytes"].as_u64().unwrap() > 0);
        let total: u64 = ["vmlinux", "initrd", "modules"]
            .iter()
            .map(|a| k["artifacts"][a]["sizeBytes"].as_u64().unwrap())
            .sum();
        assert_eq!(k["status"]["bytesDone"], total);
        let file = format!("{}/kernels/{id}/vmlinux", app.v1("acme", "local"));
        let res = app.req(Method::GET, &file, &t).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.bytes().await.unwrap().to_vec(), elf_x86_64());
        let res = app.req(Method::HEAD, &file, &t).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-length"], elf_x86_64().len().to_string().as_str());
        assert_eq!(
            res.headers()["etag"].to_str().unwrap(),
            format!("\"{}\"", sha(&elf_x86_64()))
        );
        assert_eq!(kernel_keys(&app).await.len(), 3);
        // A pulled kernel takes no upload.
        let res = app
            .req(
                Method::PUT,
                &format!("{}/kernels/{id}/file", app.v1("acme", "local")),
                &t,
            )
            .header("content-type", "application/octet-stream")
            .body(elf_x86_64())
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::CONFLICT, "invalid-state").await;

        // From the catalog: version, distro and description come from the entry.
        let res = create(
            &app,
            &t,
            json!({"name": "from-catalog", "source": {"type": "catalog", "entry": "debian-12"}}),
        )
        .await;
        let k = expect_status(res, StatusCode::CREATED).await;
        assert_eq!(k["version"], "6.1.0-18");
        assert_eq!(k["distro"], "debian");
        assert_eq!(k["description"], "Debian 12 cloud kernel");
        assert_eq!(k["provenance"]["source"], "catalog");
        assert_eq!(k["provenance"]["reference"], "debian-12");
        let cat_id = k["id"].as_str().unwrap().to_owned();
        let k = wait_kernel(&app, &t, &cat_id, 30, settled).await;
        assert_eq!(k["status"]["state"], "ready", "{k}");
        let c = expect_status(
            app.req(Method::GET, &format!("{}/kernel-catalog", app.v1("acme", "local")), &t)
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(c[0]["name"], "debian-12");
        assert_eq!(c[0]["inOrganization"], true);

        // A catalog entry whose bytes do not match its sha256: failed, nothing stored.
        let res = create(
            &app,
            &t,
            json!({"name": "tampered", "source": {"type": "catalog", "entry": "tampered"}}),
        )
        .await;
        let k = expect_status(res, StatusCode::CREATED).await;
        let k = wait_kernel(&app, &t, k["id"].as_str().unwrap(), 30, settled).await;
        assert_eq!(k["status"]["state"], "failed");
        assert_eq!(k["status"]["reasonCode"], "checksum-mismatch", "{k}");
        assert!(k["artifacts"]["vmlinux"].is_null());

        // An aarch64 vmlinux in a bundle for an x86_64 kernel.
        let res = create(
            &app,
            &t,
            json!({"name": "wrong-arch", "version": "6.1",
                   "source": {"type": "url", "url": arm.url("b.tar.zst")}}),
        )
        .await;
        let k = expect_status(res, StatusCode::CREATED).await;
        let k = wait_kernel(&app, &t, k["id"].as_str().unwrap(), 30, settled).await;
        assert_eq!(k["status"]["reasonCode"], "architecture-mismatch", "{k}");
        assert!(
            k["status"]["reason"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("aarch64"),
            "{k}"
        );
        // Two ready kernels, three files each; nothing of the failures.
        assert_eq!(kernel_keys(&app).await.len(), 6);

        // Synchronous refusals create nothing.
        let res = create(
            &app,
            &t,
            json!({"name": "nope", "source": {"type": "catalog", "entry": "no-such-entry"}}),
        )
        .await;
        let e = expect_error(res, StatusCode::BAD_REQUEST, "invalid-input").await;
        assert!(e["message"].as_str().unwrap().contains("kernel-catalog"), "{e}");
        let res = create(
            &app,
            &t,
            json!({"name": "nope", "source": {"type": "url", "url": not_archive.url("vmlinux")},
                   "version": "1"}),
        )
        .await;
        expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid-archive").await;
        // A private address is refused by policy before any connection is tried.
        let res = create(
            &app,
            &t,
            json!({"name": "nope", "version": "1", "source": {"type": "url", "url": "http://10.0.0.1/k.tar"}}),
        )
        .await;
        expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "url-not-allowed").await;
        let res = create(&app, &t, json!({"name": "nope", "source": {"type": "upload"}})).await;
        expect_error(res, StatusCode::BAD_REQUEST, "invalid-input").await;
        let res = create(
            &app,
            &t,
            json!({"name": "nope", "architecture": "aarch64",
                   "source": {"type": "catalog", "entry": "debian-12"}}),
        )
        .await;
        expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "architecture-mismatch").await;
        let q = expect_status(
            app.req(
                Method::GET,
                &format!("{}/api/v2/regions/local/kernels?name=nope", app.base),
                &t,
            )
            .send()
            .await
            .unwrap(),
            StatusCode::OK,
        )
        .await;
        assert!(q["items"].as_array().unwrap().is_empty(), "{q}");
        assert!(staging_entries(&app).is_empty(), "{:?}", staging_entries(&app));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_sqlite() {
    pulls(Backend::Sqlite, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_postgres() {
    pulls(Backend::Postgres, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_postgres_s3() {
    pulls(Backend::Postgres, true).await;
}

on_both!(cancel);
/// Deleting a kernel while it is being pulled cancels the pull (its job goes with the row) and
/// leaves nothing in storage or staging; the concurrent-import slot is given back.
async fn cancel(backend: Backend) {
    let good = bundle(elf_x86_64());
    let up = Upstream::start(good.clone(), Behaviour::StallAfter(good.len() / 2)).await;
    let url = up.url("b.tar.zst");
    run(
        backend,
        |cfg: &mut strata_api::Config| {
            pull_cfg(cfg);
            cfg.imports.idle_timeout_secs = 60;
        },
        |app: TestApp| async move {
            let t = app.token(&["acme"]);
            let k = expect_status(
                create(
                    &app,
                    &t,
                    json!({"name": "slow", "version": "1", "source": {"type": "url", "url": url}}),
                )
                .await,
                StatusCode::CREATED,
            )
            .await;
            let id = k["id"].as_str().unwrap().to_owned();
            let k = wait_kernel(&app, &t, &id, 20, |k| {
                k["status"]["bytesDone"].as_u64().unwrap_or(0) > 0
            })
            .await;
            assert_eq!(k["status"]["bytesTotal"], good.len());
            assert_eq!(staging_entries(&app).len(), 1, "the bundle is being staged");
            let usage = format!("{}/usage", app.v1("acme", "local"));
            let u = expect_status(app.req(Method::GET, &usage, &t).send().await.unwrap(), StatusCode::OK).await;
            assert_eq!(u["concurrentImports"]["used"], 1, "{u}");
            let res = app
                .req(Method::DELETE, &format!("{}/kernels/{id}", app.v1("acme", "local")), &t)
                .send()
                .await
                .unwrap();
            expect_status(res, StatusCode::NO_CONTENT).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while !staging_entries(&app).is_empty() {
                assert!(tokio::time::Instant::now() < deadline, "{:?}", staging_entries(&app));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(kernel_keys(&app).await.is_empty());
            let u = expect_status(app.req(Method::GET, &usage, &t).send().await.unwrap(), StatusCode::OK).await;
            assert_eq!(u["concurrentImports"]["used"], 0, "{u}");
        },
    )
    .await;
}

/// kill -9 in the middle of a catalog pull: the restarted process takes the job over once the
/// lease expires and finishes it; the dead process's staging file is swept.
async fn crash_during_pull(database_url: Option<String>) {
    use crate::cli::{serve, strata};
    let good = bundle(elf_x86_64());
    let up = Upstream::start(good.clone(), Behaviour::StallAfter(good.len() / 2)).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let cfg = dir.path().join("strata.toml");
    std::fs::write(
        &cfg,
        format!(
            "[imports]\nallow_hosts = [\"127.0.0.1\"]\nlease_secs = 2\npoll_interval_ms = 100\nidle_timeout_secs = 60\n\
             [sweeper]\ninterval_secs = 1\ngrace_secs = 2\n\
             [[kernel_catalog]]\nname = \"debian-12\"\narchitecture = \"x86_64\"\nversion = \"6.1.0-18\"\n\
             url = \"{}\"\nsha256 = \"{}\"\nsizeBytes = {}\n",
            up.url("debian-12.tar.zst"),
            sha(&good),
            good.len()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let env: Vec<(&str, &str)> = database_url
        .as_deref()
        .map(|u| vec![("STRATA__DATABASE__URL", u)])
        .unwrap_or_default();
    let mut first = serve(&["--config", c, "--listen", "127.0.0.1:0", "--data-dir", d], &env);
    let token = strata(&[
        "token",
        "--config",
        c,
        "--data-dir",
        d,
        "--org",
        "acme",
        "--scope",
        "kernels:read kernels:write",
    ])
    .trim()
    .to_owned();
    let client = reqwest::Client::new();
    let kernels = format!("{}/api/v1/organizations/acme/regions/local/kernels", first.base);
    let res = client
        .post(&kernels)
        .bearer_auth(&token)
        .json(&json!({"name": "crash", "source": {"type": "catalog", "entry": "debian-12"}}))
        .send()
        .await
        .unwrap();
    let k = expect_status(res, StatusCode::CREATED).await;
    let id = k["id"].as_str().unwrap().to_owned();
    let staging = dir.path().join("staging");
    let url = format!("{kernels}/{id}");
    for _ in 0..200 {
        let k = expect_status(
            client.get(&url).bearer_auth(&token).send().await.unwrap(),
            StatusCode::OK,
        )
        .await;
        if k["status"]["bytesDone"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    assert_eq!(files_under(&staging).len(), 1, "the dead pull leaves its staging file");

    up.set_behaviour(Behaviour::Normal);
    let second = serve(&["--config", c, "--listen", "127.0.0.1:0", "--data-dir", d], &env);
    let url = format!("{}/api/v1/organizations/acme/regions/local/kernels/{id}", second.base);
    let done = wait_until_settled(&client, &url, &token, 40).await;
    assert_eq!(done["status"]["state"], "ready", "{done}");
    assert_eq!(done["provenance"]["digest"], format!("sha256:{}", sha(&good)));
    let vmlinux = client
        .get(format!("{url}/vmlinux"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(vmlinux.bytes().await.unwrap().to_vec(), elf_x86_64());
    let stored: Vec<_> = files_under(&dir.path().join("blobs"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/kernels/"))
        .collect();
    assert_eq!(stored.len(), 3, "exactly the three files: {stored:?}");
    // The dead process's staging file is old enough for the sweeper after its 2 s grace.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !files_under(&staging).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", files_under(&staging));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_pull_sqlite() {
    crash_during_pull(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_pull_postgres() {
    crash_during_pull(Some(fresh_pg_database().await)).await;
}

fn default_kernel(name: &str, entry: &str) -> DefaultArtifact {
    DefaultArtifact {
        kind: DefaultKind::Kernel,
        name: name.into(),
        catalog: Some(entry.into()),
        url: None,
        sha256: None,
        architecture: None,
        version: None,
        description: None,
        regions: None,
    }
}

on_both!(defaults);
/// Defaults: reconciled on start and on demand, by several replicas at once, with exactly one
/// import per default; a changed sha256 is a conflict, left alone.
async fn defaults(backend: Backend) {
    let good = bundle(elf_x86_64());
    let kernel_up = Upstream::start(good.clone(), Behaviour::Normal).await;
    let disk = samples::raw_mbr(1 << 20);
    let disk_up = Upstream::start(disk.clone(), Behaviour::Normal).await;
    let catalog = vec![entry("debian-12", kernel_up.url("debian-12.tar.zst"), &good)];
    let disk_url = disk_up.url("disk.raw");
    let disk_sha = sha(&disk);
    let configure = {
        let disk_url = disk_url.clone();
        let disk_sha = disk_sha.clone();
        move |cfg: &mut strata_api::Config| {
            pull_cfg(cfg);
            cfg.kernel_catalog = catalog;
            cfg.defaults = vec![
                default_kernel("default-kernel", "debian-12"),
                DefaultArtifact {
                    kind: DefaultKind::Image,
                    name: "default-disk".into(),
                    catalog: None,
                    url: Some(disk_url),
                    sha256: Some(disk_sha),
                    architecture: None,
                    version: None,
                    description: Some("the platform's base disk".into()),
                    regions: Some(vec!["local".into()]),
                },
            ];
        }
    };
    run(backend, configure, |app: TestApp| async move {
        let admin = app.admin_token();
        let ensure_url = format!("{}/api/v1/regions/local/defaults:ensure", app.base);
        // Three more replicas start (each reconciles on start) while callers ask at once.
        let mut replicas = Vec::new();
        for _ in 0..2 {
            replicas.push(app.sibling(app.cfg.clone()).await);
        }
        let calls = (0..4).map(|_| app.req(Method::POST, &ensure_url, &admin).send());
        for res in futures::future::join_all(calls).await {
            let r = expect_status(res.unwrap(), StatusCode::OK).await;
            assert_eq!(r["regionId"], "local");
            assert_eq!(r["defaults"].as_array().unwrap().len(), 2, "{r}");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
        let report = loop {
            let r = expect_status(
                app.req(Method::POST, &ensure_url, &admin).send().await.unwrap(),
                StatusCode::OK,
            )
            .await;
            let states: Vec<_> = r["defaults"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["state"].as_str().unwrap().to_owned())
                .collect();
            if states.iter().all(|s| s != "importing") {
                break r;
            }
            assert!(tokio::time::Instant::now() < deadline, "{r}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(report["defaults"][0]["kind"], "kernel");
        assert_eq!(report["defaults"][0]["name"], "default-kernel");
        assert_eq!(report["defaults"][0]["state"], "present", "{report}");
        assert_eq!(report["defaults"][1]["kind"], "image");
        assert_eq!(report["defaults"][1]["state"], "present", "{report}");
        // Exactly one import each: one full GET per source (the other requests are peeks).
        let full = |up: &Upstream| up.requests().iter().filter(|r| r.is_none()).count();
        assert_eq!(full(&kernel_up), 1, "{:?}", kernel_up.requests());
        assert_eq!(full(&disk_up), 1, "{:?}", disk_up.requests());
        let q = expect_status(
            app.req(
                Method::GET,
                &format!("{}/api/v2/regions/local/kernels", app.base),
                &admin,
            )
            .send()
            .await
            .unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(q["items"].as_array().unwrap().len(), 1, "{q}");
        let k = &q["items"][0];
        assert_eq!(k["visibility"], "global");
        assert_eq!(k["organizationId"], Value::Null);
        assert_eq!(k["provenance"]["importedBy"], "strata-defaults");
        // Tenants see the global kernel and image.
        let t = app.token(&["acme"]);
        let imgs = expect_status(
            app.req(Method::GET, &format!("{}/images", app.v1("acme", "local")), &t)
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        let items = imgs.as_array().unwrap();
        assert_eq!(items.len(), 1, "{imgs}");
        assert_eq!(items[0]["name"], "default-disk");
        assert_eq!(items[0]["sha256"], disk_sha);

        // Only platform admins; unknown regions do not exist.
        let res = app.req(Method::POST, &ensure_url, &t).send().await.unwrap();
        expect_error(res, StatusCode::FORBIDDEN, "forbidden").await;
        let res = app
            .req(
                Method::POST,
                &format!("{}/api/v1/regions/nowhere/defaults:ensure", app.base),
                &admin,
            )
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::NOT_FOUND, "not-found").await;

        // The operator changes the kernel default's bytes: a conflict, and the old one stays.
        let mut changed = app.cfg.clone();
        changed.kernel_catalog[0].sha256 = "cd".repeat(32);
        for mut r in replicas {
            r.stop().await;
        }
        let mut other = app.sibling(changed).await;
        let r = expect_status(
            other
                .req(
                    Method::POST,
                    &format!("{}/api/v1/regions/local/defaults:ensure", other.base),
                    &admin,
                )
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(r["defaults"][0]["state"], "conflict", "{r}");
        assert!(
            r["defaults"][0]["reason"].as_str().unwrap().contains(&sha(&good)),
            "{r}"
        );
        assert_eq!(r["defaults"][1]["state"], "present", "{r}");
        other.stop().await;
        assert_eq!(full(&kernel_up), 1);
    })
    .await;
}
