//! The orphan sweeper removes stored bytes nothing refers to, and nothing else.

use reqwest::{Method, StatusCode};
use strata_api::service::sweeper::Sweeper;
use strata_domain::disk_format::samples;
use strata_domain::ids::{BlobId, ImageId};

use crate::both;
use crate::harness::*;

fn manual_sweeps(cfg: &mut strata_api::Config) {
    cfg.sweeper.enabled = false; // the test runs passes itself
    cfg.sweeper.grace_secs = 0;
}

both!(
    sweeper_removes_orphans_only,
    config = manual_sweeps,
    with_s3,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let data = samples::raw_mbr(100_000);
        let img = app.create_named("acme", &t, "keep").await;
        let id = img["id"].as_str().unwrap().to_owned();
        expect_status(app.upload("acme", &t, &id, data.clone()).await, StatusCode::OK).await;
        let kept = app.stored().await;
        assert_eq!(kept.len(), 1);

        let regions = strata_api::state::build_regions(&app.cfg).unwrap();
        let store = &regions.values().next().unwrap().store;
        // an object whose image never existed, and a stray blob beside a ready image's real one
        for image in [ImageId::new(), ImageId::parse(&id).unwrap()] {
            let mut w = store.begin_write(image, BlobId::new()).await.unwrap();
            w.write(bytes::Bytes::from_static(b"orphaned bytes")).await.unwrap();
            w.finish().await.unwrap();
        }
        // what a process killed mid-upload leaves on local disk
        let staging = app.blobs_dir().join("images").join(ImageId::new().to_string());
        if app.cfg.regions.is_empty() {
            std::fs::create_dir_all(&staging).unwrap();
            std::fs::write(staging.join(format!("{}#7", BlobId::new())), b"partial").unwrap();
        }
        assert_eq!(app.stored().await.len(), if app.cfg.regions.is_empty() { 4 } else { 3 });

        let db = strata_api::db::connect(&app.cfg.database_url(), Some(2)).await.unwrap();
        let sweeper = Sweeper::new(
            db,
            regions.clone(),
            app.cfg.sweeper.clone(),
            std::sync::Arc::new(strata_api::metrics::Metrics::default()),
        );
        let report = sweeper.sweep_once().await.unwrap();
        assert_eq!(report.objects_removed.len(), 2, "{report:?}");
        assert_eq!(
            report.staging_removed.len(),
            usize::from(app.cfg.regions.is_empty()),
            "{report:?}"
        );
        assert_eq!(app.stored().await, kept, "only the ready image's bytes remain");
        // on S3: an upload a dead process left open (recorded, never completed or aborted)
        if let Some(bucket) = app.s3_bucket_name() {
            let db = strata_api::db::connect(&app.cfg.database_url(), Some(2)).await.unwrap();
            let region = strata_domain::ids::RegionId::parse("local").unwrap();
            let (image, blob) = (ImageId::new(), BlobId::new());
            let mut w = store.begin_write(image, blob).await.unwrap();
            use strata_providers::UploadLedger;
            let ledger = strata_api::db::uploads::DbLedger(&db, &region);
            ledger.started(image, blob, w.upload_id().unwrap()).await.unwrap();
            w.write(bytes::Bytes::from(vec![7u8; 9 << 20])).await.unwrap();
            std::mem::forget(w); // the process "dies": no abort on drop
            assert_eq!(s3_open_uploads(&bucket).await, 1);
            let mut cfg = app.cfg.sweeper.clone();
            cfg.multipart_grace_secs = 0;
            let report = Sweeper::new(
                db,
                regions.clone(),
                cfg,
                std::sync::Arc::new(strata_api::metrics::Metrics::default()),
            )
            .sweep_once()
            .await
            .map_err(|e| format!("{e:#}"))
            .unwrap();
            assert_eq!(report.uploads_aborted.len(), 1, "{report:?}");
            assert_eq!(s3_open_uploads(&bucket).await, 0);
        }
        // a second pass (another replica, say) finds nothing more
        let again = sweeper.sweep_once().await.unwrap();
        assert!(
            again.objects_removed.is_empty() && again.staging_removed.is_empty() && again.uploads_aborted.is_empty()
        );
        let file = app
            .req(
                Method::GET,
                &format!("{}/images/{id}/file", app.v1("acme", "local")),
                &t,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(file.bytes().await.unwrap().as_ref(), &data[..]);

        // with the default grace period, fresh objects are left alone
        let mut w = store.begin_write(ImageId::new(), BlobId::new()).await.unwrap();
        w.write(bytes::Bytes::from_static(b"young")).await.unwrap();
        w.finish().await.unwrap();
        let cautious = Sweeper::new(
            strata_api::db::connect(&app.cfg.database_url(), Some(2)).await.unwrap(),
            regions,
            strata_api::config::SweeperConfig::default(),
            std::sync::Arc::new(strata_api::metrics::Metrics::default()),
        );
        assert!(cautious.sweep_once().await.unwrap().objects_removed.is_empty());
    }
);

/// One process, two regions on different providers: each keeps its own bytes, and readiness
/// covers both (the bucket too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_mix_providers() {
    let bucket = s3_bucket().await;
    let app = spawn_with(Backend::Postgres, move |cfg| {
        use_s3(cfg, &bucket); // region "local" on S3 ...
        cfg.regions.push(strata_api::config::RegionConfig {
            id: "disk".into(),
            organizations: None,
            provider: strata_api::config::ProviderConfig::Local {
                root: cfg.data_dir.join("disk"),
            },
        }); // ... and region "disk" on local disk
    })
    .await;
    let t = app.token(&["acme"]);
    for (region, size) in [("local", 300_000), ("disk", 200_000)] {
        let url = format!("{}/images", app.v1("acme", region));
        let img = app
            .req(Method::POST, &url, &t)
            .json(&serde_json::json!({"name": "x", "source": {"type": "upload"}}))
            .send()
            .await
            .unwrap();
        let img = expect_status(img, StatusCode::CREATED).await;
        let file = format!("{url}/{}/file", img["id"].as_str().unwrap());
        let data = samples::raw_mbr(size);
        let res = app
            .req(Method::PUT, &file, &t)
            .header("content-type", "application/octet-stream")
            .body(data.clone())
            .send()
            .await
            .unwrap();
        expect_status(res, StatusCode::OK).await;
        let got = app
            .req(Method::GET, &file, &t)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(got.as_ref(), &data[..], "{region}");
    }
    // the local region's bytes are on disk, the S3 region's in the bucket
    assert_eq!(files_under(&app.cfg.data_dir.join("disk")).len(), 1);
    assert_eq!(
        app.stored().await.len(),
        1,
        "the S3 region holds exactly its one object"
    );
    // readiness names regions to a platform admin only
    let ready = app
        .req(Method::GET, &format!("{}/readyz", app.base), &app.admin_token())
        .send()
        .await
        .unwrap();
    let ready = expect_status(ready, StatusCode::OK).await;
    assert_eq!(ready["checks"]["region:local"], "ok");
    assert_eq!(ready["checks"]["region:disk"], "ok");
}

both!(
    sweeper_removes_kernel_orphans_and_stale_staging,
    config = manual_sweeps,
    with_s3,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let k = crate::kernels::ready_kernel(&app, "acme", &t, "keep", "x86_64").await;
        let kid = strata_domain::kernel::KernelId::parse(k["id"].as_str().unwrap()).unwrap();
        let regions = strata_api::state::build_regions(&app.cfg).unwrap();
        let store = &regions.values().next().unwrap().store;
        let kept = store.list_kernel_keys().await.unwrap();
        assert_eq!(kept.len(), 1);
        // a stray file beside the ready kernel's vmlinux, and one of a kernel that never existed
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), b"orphaned kernel bytes").unwrap();
        for kernel in [kid, strata_domain::kernel::KernelId::new()] {
            store.put_kernel_file(kernel, BlobId::new(), tmp.path()).await.unwrap();
        }
        assert_eq!(store.list_kernel_keys().await.unwrap().len(), 3);
        // what a killed kernel upload or pull leaves in the staging directory, and a stranger
        let staging = app.cfg.data_dir.join("staging");
        std::fs::create_dir_all(staging.join("bundle-dead/modules")).unwrap();
        std::fs::write(staging.join("bundle-dead/vmlinux"), b"x").unwrap();
        std::fs::write(staging.join("stage-dead"), b"x").unwrap();
        std::fs::write(staging.join("operator-notes.txt"), b"x").unwrap();

        let db = strata_api::db::connect(&app.cfg.database_url(), Some(2)).await.unwrap();
        let report = Sweeper::new(
            db,
            regions.clone(),
            app.cfg.sweeper.clone(),
            std::sync::Arc::new(strata_api::metrics::Metrics::default()),
        )
        .with_local_staging(staging.clone())
        .sweep_once()
        .await
        .unwrap();
        assert_eq!(report.objects_removed.len(), 2, "{report:?}");
        assert!(
            report.objects_removed.iter().all(|k| k.starts_with("kernels/")),
            "{report:?}"
        );
        assert_eq!(
            store.list_kernel_keys().await.unwrap(),
            kept,
            "only the ready kernel's file remains"
        );
        let mut left: Vec<_> = std::fs::read_dir(&staging)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["operator-notes.txt"]);
        // the kernel still downloads
        let url = format!("{}/kernels/{}/vmlinux", app.v1("acme", "local"), kid);
        let res = app.req(Method::GET, &url, &t).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
);
