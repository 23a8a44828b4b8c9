//! URL imports against real HTTP servers on 127.0.0.1 (see `upstream`).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use strata_domain::disk_format::samples;

use crate::both;
use crate::harness::*;
use crate::upstream::{Behaviour, Upstream};

/// Tests fetch from 127.0.0.1, which the default policy refuses; short leases and timeouts.
pub(crate) fn import_cfg(cfg: &mut strata_api::Config) {
    cfg.imports.allow_hosts = vec!["127.0.0.1".into()];
    cfg.imports.lease_secs = 2;
    cfg.imports.poll_interval_ms = 100;
    cfg.imports.idle_timeout_secs = 2;
    cfg.imports.peek_timeout_secs = 3;
    cfg.imports.max_attempts = 2;
}

async fn create_url(app: &TestApp, token: &str, name: &str, url: &str, sha: Option<&str>) -> reqwest::Response {
    let mut source = json!({"type": "url", "url": url});
    if let Some(s) = sha {
        source["sha256"] = json!(s);
    }
    app.req(Method::POST, &format!("{}/images", app.v1("acme", "local")), token)
        .json(&json!({"name": name, "source": source}))
        .send()
        .await
        .unwrap()
}

/// Polls the image until `done(image)` or the deadline.
async fn wait_for(app: &TestApp, token: &str, id: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let url = format!("{}/images/{id}", app.v1("acme", "local"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let res = app.req(Method::GET, &url, token).send().await.unwrap();
        let img = expect_status(res, StatusCode::OK).await;
        if done(&img) {
            return img;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting; image is {img}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn state(s: &'static str) -> impl Fn(&Value) -> bool {
    move |img: &Value| img["status"]["state"] == s
}

both!(
    imports_from_a_url,
    config = import_cfg,
    with_s3,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let data = samples::raw_gpt(3 << 20);
        let sha = hex::encode(Sha256::digest(&data));
        let up = Upstream::start(data.clone(), Behaviour::Normal).await;
        let res = create_url(&app, &t, "from-url", &up.url("disk.raw?x=1"), Some(&sha)).await;
        let img = expect_status(res, StatusCode::CREATED).await;
        assert_eq!(img["status"]["state"], "importing");
        assert_eq!(img["provenance"]["source"], "url");
        assert_eq!(img["provenance"]["reference"], up.url("disk.raw?x=1"));
        assert_eq!(img["tags"]["strata.dev/source"], "url");
        assert_eq!(img["tags"]["strata.dev/reference"], up.url("disk.raw?x=1"));
        let id = img["id"].as_str().unwrap();
        let ready = wait_for(&app, &t, id, 20, state("ready")).await;
        assert_eq!(ready["sha256"], sha);
        assert_eq!(ready["sizeBytes"], data.len());
        assert_eq!(ready["status"]["bytesDone"], data.len());
        assert_eq!(ready["status"]["bytesTotal"], data.len());
        assert_eq!(ready["provenance"]["digest"], format!("sha256:{sha}"));
        // the peek asked for 512 bytes; the copy for everything
        assert_eq!(up.requests(), vec![Some("bytes=0-511".to_owned()), None]);
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
        assert_eq!(app.stored().await.len(), 1);
    }
);

both!(
    bad_urls_are_refused_before_anything_exists,
    config = import_cfg,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let raw = Upstream::start(samples::raw_mbr(8192), Behaviour::Normal).await;
        let qcow = Upstream::start(samples::qcow2(8192), Behaviour::Normal).await;
        let missing = Upstream::start(vec![], Behaviour::Status(404)).await;
        let broken = Upstream::start(vec![], Behaviour::Status(503)).await;
        let to_metadata = Upstream::start(
            vec![],
            Behaviour::RedirectTo("http://169.254.169.254/latest/meta-data/".into()),
        )
        .await;
        let to_public_port = Upstream::start(vec![], Behaviour::RedirectTo("http://8.8.8.8:8080/x".into())).await;
        let hop = Upstream::start(vec![], Behaviour::RedirectTo(raw.url("disk"))).await;
        let looping = Upstream::start(vec![], Behaviour::Normal).await;
        looping.set_behaviour(Behaviour::RedirectTo(looping.url("again")));
        let cases: Vec<(String, &str, &str)> = vec![
            (qcow.url("x.qcow2"), "unsupported-disk-format", "qcow2"),
            (missing.url("nope"), "fetch-failed", "404"),
            (broken.url("x"), "fetch-failed", "503"),
            (to_metadata.url("x"), "url-not-allowed", "link-local"),
            (to_public_port.url("x"), "url-not-allowed", "port 8080"),
            (looping.url("x"), "fetch-failed", "redirects"),
            ("http://127.0.0.1:1/closed".into(), "fetch-failed", "could not connect"),
            ("http://127.0.0.2/x".into(), "url-not-allowed", "loopback"),
            ("http://10.1.2.3/x".into(), "url-not-allowed", "private"),
            ("http://[::1]:8080/x".into(), "url-not-allowed", "not allowed"),
            // IPv6 spellings of IPv4 loopback: refused by the policy, never connected to
            ("http://[::ffff:0:7f00:1]/x".into(), "url-not-allowed", "loopback"),
            ("http://[::ffff:0:127.0.0.1]/x".into(), "url-not-allowed", "loopback"),
            ("http://[64:ff9b::7f00:1]/x".into(), "url-not-allowed", "loopback"),
            ("http://[64:ff9b:1::7f00:1]/x".into(), "url-not-allowed", "NAT64"),
            ("http://[2002:7f00:1::1]/x".into(), "url-not-allowed", "loopback"),
            ("ftp://127.0.0.1/x".into(), "url-not-allowed", "scheme"),
            ("file:///etc/passwd".into(), "url-not-allowed", "scheme"),
        ];
        for (url, code, needle) in cases {
            let err = expect_error(
                create_url(&app, &t, "x", &url, None).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
            )
            .await;
            assert!(err["message"].as_str().unwrap().contains(needle), "{url}: {err}");
        }
        let err = expect_error(
            create_url(&app, &t, "x", "not a url", None).await,
            StatusCode::BAD_REQUEST,
            "invalid-input",
        )
        .await;
        assert!(err["message"].as_str().unwrap().contains("source.url"));
        // nothing was created
        let list = app
            .req(Method::GET, &format!("{}/images", app.v1("acme", "local")), &t)
            .send()
            .await
            .unwrap();
        assert_eq!(expect_status(list, StatusCode::OK).await, json!([]));
        assert!(app.stored().await.is_empty());
        // a redirect to an allowed place is followed
        let img = expect_status(
            create_url(&app, &t, "hop", &hop.url("x"), None).await,
            StatusCode::CREATED,
        )
        .await;
        wait_for(&app, &t, img["id"].as_str().unwrap(), 20, state("ready")).await;
    }
);

both!(
    peek_stops_after_512_bytes_when_range_is_ignored,
    config = import_cfg,
    |app: TestApp| async move {
        // 64 MiB announced, 4 KiB sent, then silence: a peek that waited for more would time out
        let t = app.token(&["acme"]);
        let mut body = samples::raw_mbr(64 << 20);
        body[70_000] = 1;
        let up = Upstream::start(body, Behaviour::IgnoresRangeThenStall(4096)).await;
        let started = std::time::Instant::now();
        let img = expect_status(
            create_url(&app, &t, "slow", &up.url("d"), None).await,
            StatusCode::CREATED,
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "peek took {:?}",
            started.elapsed()
        );
        // the copy itself stalls: idle timeout, retried once, then failed with the reason
        let failed = wait_for(&app, &t, img["id"].as_str().unwrap(), 30, state("failed")).await;
        let reason = failed["status"]["reason"].as_str().unwrap();
        assert!(
            reason.contains("after 2 attempts") && reason.contains("timed out"),
            "{reason}"
        );
        assert!(app.stored().await.is_empty());
    }
);

/// Words that only transport detail carries: OS errors, TLS library text, the address.
fn assert_no_transport_detail(text: &str) {
    for leak in [
        "tcp",
        "os error",
        "refused",
        "route",
        "certificate",
        "invalid peer",
        "InvalidContentType",
        "127.0.0.1",
        "hyper",
        "error sending request",
        "decoding",
    ] {
        assert!(!text.contains(leak), "{leak:?} in {text}");
    }
}

both!(
    import_failures_carry_a_short_reason_not_transport_detail,
    config = import_cfg,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        // a closed port
        let err = expect_error(
            create_url(&app, &t, "x", "http://127.0.0.1:1/closed", None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "fetch-failed",
        )
        .await;
        let msg = err["message"].as_str().unwrap();
        assert!(msg.contains("could not connect"), "{msg}");
        assert_no_transport_detail(msg);
        // TLS to a server that answers in plain HTTP at once: the handshake fails
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = plain.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut sock, _)) = plain.accept().await {
                let _ = sock
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await;
                let _ = sock.shutdown().await;
            }
        });
        let err = expect_error(
            create_url(&app, &t, "x", &format!("https://127.0.0.1:{port}/d"), None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "fetch-failed",
        )
        .await;
        let msg = err["message"].as_str().unwrap();
        assert!(msg.contains("TLS handshake failed"), "{msg}");
        assert_no_transport_detail(msg);
        // the status code of the source is the tenant's to know
        let missing = Upstream::start(vec![], Behaviour::Status(404)).await;
        let err = expect_error(
            create_url(&app, &t, "x", &missing.url("d"), None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "fetch-failed",
        )
        .await;
        assert!(
            err["message"].as_str().unwrap().contains("HTTP 404 from the source"),
            "{err}"
        );
        // a copy whose connection breaks: the stored reason has a code and a short reason
        let up = Upstream::start(samples::raw_mbr(4 << 20), Behaviour::DropAfter(1 << 20)).await;
        let img = expect_status(
            create_url(&app, &t, "drops", &up.url("d"), None).await,
            StatusCode::CREATED,
        )
        .await;
        let failed = wait_for(&app, &t, img["id"].as_str().unwrap(), 30, state("failed")).await;
        let reason = failed["status"]["reason"].as_str().unwrap();
        assert!(
            reason.contains("fetch-failed: the connection to the source broke"),
            "{reason}"
        );
        assert_no_transport_detail(reason);
    }
);

both!(
    userinfo_is_percent_decoded_as_the_url_standard_says,
    config = import_cfg,
    |app: TestApp| async move {
        use base64::Engine;
        let t = app.token(&["acme"]);
        let up = Upstream::start(samples::raw_mbr(8192), Behaviour::Normal).await;
        // `+`, `&` and `=` are themselves; `%2B` and `%40` are decoded
        let with_creds = up.url("d").replace("http://", "http://a+b:p+ss&w=rd%2B%40@");
        let img = expect_status(
            create_url(&app, &t, "plus", &with_creds, None).await,
            StatusCode::CREATED,
        )
        .await;
        wait_for(&app, &t, img["id"].as_str().unwrap(), 20, state("ready")).await;
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("a+b:p+ss&w=rd+@")
        );
        let seen = up.authorizations();
        assert_eq!(seen.len(), 2, "{seen:?}");
        for got in seen {
            assert_eq!(got.as_deref(), Some(want.as_str()));
        }
    }
);

both!(
    credentials_are_used_but_never_shown,
    config = import_cfg,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let up = Upstream::start(samples::raw_mbr(8192), Behaviour::Normal).await;
        let with_creds = up.url("d").replace("http://", "http://alice:hunter2@");
        let res = create_url(&app, &t, "creds", &with_creds, None).await;
        let text = res.text().await.unwrap();
        assert!(!text.contains("hunter2") && !text.contains("alice"), "{text}");
        let img: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(img["provenance"]["reference"], up.url("d"));
        let ready = wait_for(&app, &t, img["id"].as_str().unwrap(), 20, state("ready")).await;
        assert!(!ready.to_string().contains("hunter2"));
        // and in errors
        let bad = Upstream::start(vec![], Behaviour::Status(401)).await;
        let with_creds = bad.url("d").replace("http://", "http://alice:hunter2@");
        let res = create_url(&app, &t, "creds2", &with_creds, None).await;
        let text = res.text().await.unwrap();
        assert!(text.contains("fetch-failed") && !text.contains("hunter2"), "{text}");
    }
);

both!(
    failed_imports_retry_then_fail_and_keep_nothing,
    config = import_cfg,
    with_s3,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let up = Upstream::start(samples::raw_mbr(4 << 20), Behaviour::DropAfter(1 << 20)).await;
        let img = expect_status(
            create_url(&app, &t, "drops", &up.url("d"), None).await,
            StatusCode::CREATED,
        )
        .await;
        let failed = wait_for(&app, &t, img["id"].as_str().unwrap(), 30, state("failed")).await;
        assert!(
            failed["status"]["reason"]
                .as_str()
                .unwrap()
                .contains("after 2 attempts"),
            "{failed}"
        );
        // peek + two full attempts
        assert_eq!(up.requests().len(), 3, "{:?}", up.requests());
        assert!(app.stored().await.is_empty());

        // a checksum mismatch is final at once
        let up = Upstream::start(samples::raw_mbr(1 << 20), Behaviour::Normal).await;
        let img = expect_status(
            create_url(&app, &t, "sha", &up.url("d"), Some(&"ab".repeat(32))).await,
            StatusCode::CREATED,
        )
        .await;
        let failed = wait_for(&app, &t, img["id"].as_str().unwrap(), 20, state("failed")).await;
        assert!(
            failed["status"]["reason"]
                .as_str()
                .unwrap()
                .starts_with("checksum-mismatch"),
            "{failed}"
        );
        assert_eq!(up.requests().len(), 2);
        assert!(app.stored().await.is_empty());
        // failed images can be deleted
        let url = format!("{}/images/{}", app.v1("acme", "local"), img["id"].as_str().unwrap());
        expect_status(
            app.req(Method::DELETE, &url, &t).send().await.unwrap(),
            StatusCode::NO_CONTENT,
        )
        .await;
    }
);

both!(
    deleting_an_importing_image_cancels_it,
    config = import_cfg,
    with_s3,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let data = samples::raw_mbr(8 << 20);
        let up = Upstream::start(data.clone(), Behaviour::StallAfter(3 << 20)).await;
        let img = expect_status(
            create_url(&app, &t, "stalls", &up.url("d"), None).await,
            StatusCode::CREATED,
        )
        .await;
        let id = img["id"].as_str().unwrap();
        // progress is visible while it copies
        let busy = wait_for(&app, &t, id, 10, |i| {
            i["status"]["bytesDone"].as_u64().unwrap_or(0) >= 3 << 20
        })
        .await;
        assert_eq!(busy["status"]["state"], "importing");
        assert_eq!(busy["status"]["bytesTotal"], data.len());
        let url = format!("{}/images/{id}", app.v1("acme", "local"));
        expect_status(
            app.req(Method::DELETE, &url, &t).send().await.unwrap(),
            StatusCode::NO_CONTENT,
        )
        .await;
        expect_error(
            app.req(Method::GET, &url, &t).send().await.unwrap(),
            StatusCode::NOT_FOUND,
            "not-found",
        )
        .await;
        // the partial upload is removed once the worker notices (within a heartbeat)
        let mut left = vec![];
        for _ in 0..50 {
            left = app.stored().await;
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(left, Vec::<String>::new());
    }
);

// SIGTERM-style stop hands running jobs back: a second instance with a long lease takes the job
// over at once instead of waiting for the lease to expire.
both!(
    graceful_stop_hands_jobs_back,
    config = import_cfg,
    |app: TestApp| async move {
        let mut app = app;
        let t = app.token(&["acme"]);
        let data = samples::raw_mbr(6 << 20);
        let up = Upstream::start(data.clone(), Behaviour::StallAfter(2 << 20)).await;
        let img = expect_status(
            create_url(&app, &t, "handback", &up.url("d"), None).await,
            StatusCode::CREATED,
        )
        .await;
        let id = img["id"].as_str().unwrap().to_owned();
        wait_for(&app, &t, &id, 10, |i| {
            i["status"]["bytesDone"].as_u64().unwrap_or(0) > 0
        })
        .await;
        let mut cfg = app.cfg.clone();
        app.stop().await;
        up.set_behaviour(Behaviour::Normal);
        cfg.imports.lease_secs = 600;
        let mut second = app.sibling(cfg).await;
        let ready = wait_for(&second, &t, &id, 10, state("ready")).await;
        assert_eq!(ready["sizeBytes"], data.len());
        // one file only: the first attempt's partial upload is gone
        assert_eq!(app.stored().await.len(), 1);
        second.stop().await;
    }
);

/// kill -9 during an import: the restarted process takes the job over once the lease expires,
/// removes what the dead attempt wrote, and finishes it.
async fn crash_and_recover(database_url: Option<String>) {
    use crate::cli::{serve, strata};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let cfg = dir.path().join("strata.toml");
    std::fs::write(
        &cfg,
        "[imports]\nallow_hosts = [\"127.0.0.1\"]\nlease_secs = 2\npoll_interval_ms = 100\nidle_timeout_secs = 30\n",
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let env: Vec<(&str, &str)> = database_url
        .as_deref()
        .map(|u| vec![("STRATA__DATABASE__URL", u)])
        .unwrap_or_default();
    let data = samples::raw_mbr(6 << 20);
    let sha = hex::encode(Sha256::digest(&data));
    let up = Upstream::start(data.clone(), Behaviour::StallAfter(3 << 20)).await;

    let mut first = serve(&["--config", c, "--listen", "127.0.0.1:0", "--data-dir", d], &env);
    let token = strata(&["token", "--config", c, "--data-dir", d, "--org", "acme"])
        .trim()
        .to_owned();
    let client = reqwest::Client::new();
    let images = format!("{}/api/v1/organizations/acme/regions/local/images", first.base);
    let res = client
        .post(&images)
        .bearer_auth(&token)
        .json(&json!({"name": "crash", "source": {"type": "url", "url": up.url("d"), "sha256": sha}}))
        .send()
        .await
        .unwrap();
    let img = expect_status(res, StatusCode::CREATED).await;
    let id = img["id"].as_str().unwrap().to_owned();
    let blobs = dir.path().join("blobs");
    for _ in 0..100 {
        if files_under(&blobs).iter().any(|p| p.to_string_lossy().contains('#')) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    let orphans = files_under(&blobs);
    assert!(!orphans.is_empty(), "the dead attempt should have left a staging file");

    up.set_behaviour(Behaviour::Normal);
    let second = serve(&["--config", c, "--listen", "127.0.0.1:0", "--data-dir", d], &env);
    let url = format!("{}/api/v1/organizations/acme/regions/local/images/{id}", second.base);
    let ready = wait_until_settled(&client, &url, &token, 30).await;
    assert_eq!(ready["status"]["state"], "ready", "{ready}");
    assert_eq!(ready["sha256"], sha);
    let left = files_under(&blobs);
    assert_eq!(left.len(), 1, "orphans remain: {left:?}");
    assert!(!left[0].to_string_lossy().contains('#'));
    let file = client
        .get(format!("{url}/file"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(file.bytes().await.unwrap().as_ref(), &data[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_import_sqlite() {
    crash_and_recover(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_import_postgres() {
    crash_and_recover(Some(fresh_pg_database().await)).await;
}

fn one_worker(cfg: &mut strata_api::Config) {
    import_cfg(cfg);
    cfg.imports.workers = 1;
    // The stalled import must keep its worker for the whole test, however slow the machine:
    // with the suite's 2 s idle timeout a loaded machine let it fail first and free the worker.
    cfg.imports.idle_timeout_secs = 60;
}

// With every worker busy, a new import waits (handed back, not run twice) and starts as soon as
// a worker is free.
both!(
    imports_queue_when_workers_are_busy,
    config = one_worker,
    |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let slow = Upstream::start(samples::raw_mbr(4 << 20), Behaviour::StallAfter(1 << 20)).await;
        let fast = Upstream::start(samples::raw_mbr(2 << 20), Behaviour::Normal).await;
        let a = expect_status(
            create_url(&app, &t, "slow", &slow.url("d"), None).await,
            StatusCode::CREATED,
        )
        .await;
        let a = a["id"].as_str().unwrap().to_owned();
        wait_for(&app, &t, &a, 10, |i| i["status"]["bytesDone"].as_u64().unwrap_or(0) > 0).await;
        let b = expect_status(
            create_url(&app, &t, "fast", &fast.url("d"), None).await,
            StatusCode::CREATED,
        )
        .await;
        let b = b["id"].as_str().unwrap().to_owned();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let waiting = wait_for(&app, &t, &b, 5, |_| true).await;
        assert_eq!(waiting["status"]["state"], "importing");
        assert_eq!(fast.requests().len(), 1, "only the peek so far");
        let url = format!("{}/images/{a}", app.v1("acme", "local"));
        expect_status(
            app.req(Method::DELETE, &url, &t).send().await.unwrap(),
            StatusCode::NO_CONTENT,
        )
        .await;
        wait_for(&app, &t, &b, 20, state("ready")).await;
        assert_eq!(fast.requests().len(), 2, "copied exactly once: {:?}", fast.requests());
    }
);
