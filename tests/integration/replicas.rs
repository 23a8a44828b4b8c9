//! Two `strata serve` processes on one PostgreSQL database and one S3 bucket.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use strata_domain::disk_format::samples;

use crate::cli::{Server, serve, strata};
use crate::harness::*;
use crate::upstream::{Behaviour, Upstream};

struct Pair {
    a: Server,
    b: Server,
    token: String,
    bucket: String,
    _dir: tempfile::TempDir,
}

async fn two_replicas() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_owned();
    let bucket = s3_bucket().await;
    std::fs::write(dir.path().join("key"), "testing").unwrap();
    std::fs::write(dir.path().join("secret"), "testing-secret").unwrap();
    let cfg = dir.path().join("strata.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[imports]
allow_hosts = ["127.0.0.1"]
lease_secs = 2
poll_interval_ms = 100
[quotas.organizations.few]
max_images = 3
[[regions]]
id = "eu-1"
[regions.provider]
kind = "s3"
bucket = "{bucket}"
endpoint = "{endpoint}"
prefix = "eu-1"
allow_http = true
access_key_id_file = "{d}/key"
secret_access_key_file = "{d}/secret"
"#,
            endpoint = s3_endpoint()
        ),
    )
    .unwrap();
    let db = fresh_pg_database().await;
    let c = cfg.to_str().unwrap();
    let env = [("STRATA__DATABASE__URL", db.as_str())];
    let a = serve(&["--config", c, "--listen", "127.0.0.1:0", "--data-dir", &d], &env);
    let b = serve(&["--config", c, "--listen", "127.0.0.1:0", "--data-dir", &d], &env);
    let token = strata(&[
        "token",
        "--config",
        c,
        "--data-dir",
        &d,
        "--org",
        "acme",
        "--org",
        "few",
    ])
    .trim()
    .to_owned();
    Pair {
        a,
        b,
        token,
        bucket,
        _dir: dir,
    }
}

fn images(server: &Server, org: &str) -> String {
    format!("{}/api/v1/organizations/{org}/regions/eu-1/images", server.base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_truth() {
    let p = two_replicas().await;
    let client = reqwest::Client::new();
    let post = |url: String, name: String| {
        client
            .post(url)
            .bearer_auth(&p.token)
            .json(&json!({"name": name, "source": {"type": "upload"}}))
            .send()
    };

    // the same name on both at once: exactly one 201 and one 409, every time
    for i in 0..10 {
        let name = format!("race-{i}");
        let (ra, rb) = tokio::join!(
            post(images(&p.a, "acme"), name.clone()),
            post(images(&p.b, "acme"), name)
        );
        let mut s = [ra.unwrap().status(), rb.unwrap().status()];
        s.sort();
        assert_eq!(s, [StatusCode::CREATED, StatusCode::CONFLICT], "round {i}");
    }

    // uploaded through one, byte-identical through the other (ranges too)
    let data = samples::raw_mbr(12 << 20);
    let img = expect_status(
        post(images(&p.a, "acme"), "shared".into()).await.unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let id = img["id"].as_str().unwrap();
    let res = client
        .put(format!("{}/{id}/file", images(&p.a, "acme")))
        .bearer_auth(&p.token)
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::OK).await;
    let got = client
        .get(format!("{}/{id}/file", images(&p.b, "acme")))
        .bearer_auth(&p.token)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().as_ref(), &data[..]);
    let part = client
        .get(format!("{}/{id}/file", images(&p.b, "acme")))
        .bearer_auth(&p.token)
        .header("range", "bytes=10485760-")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.bytes().await.unwrap().as_ref(), &data[10 << 20..]);

    // quotas hold across both: 10 creates split over two replicas, limit 3
    let mut tasks = Vec::new();
    for i in 0..10 {
        let url = if i % 2 == 0 {
            images(&p.a, "few")
        } else {
            images(&p.b, "few")
        };
        tasks.push(post(url, format!("q{i}")));
    }
    let results = futures::future::join_all(tasks).await;
    let created = results
        .iter()
        .filter(|r| r.as_ref().unwrap().status() == StatusCode::CREATED)
        .count();
    let refused = results
        .iter()
        .filter(|r| r.as_ref().unwrap().status() == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, refused), (3, 7));
    let usage = client
        .get(format!("{}/api/v1/organizations/few/regions/eu-1/usage", p.b.base))
        .bearer_auth(&p.token)
        .send()
        .await
        .unwrap();
    assert_eq!(expect_status(usage, StatusCode::OK).await["images"]["used"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_outlives_the_replica_that_started_it() {
    let mut p = two_replicas().await;
    let client = reqwest::Client::new();
    let data = samples::raw_mbr(24 << 20);
    let sha = hex::encode(Sha256::digest(&data));
    // 18 MiB before the stall: A has sent parts of its multipart upload when it dies
    let up = Upstream::start(data.clone(), Behaviour::StallAfter(18 << 20)).await;
    let res = client
        .post(images(&p.a, "acme"))
        .bearer_auth(&p.token)
        .json(&json!({"name": "orphan", "source": {"type": "url", "url": up.url("d"), "sha256": sha}}))
        .send()
        .await
        .unwrap();
    let img = expect_status(res, StatusCode::CREATED).await;
    let url_b = format!("{}/{}", images(&p.b, "acme"), img["id"].as_str().unwrap());
    // wait until A is copying, then kill it without warning
    for _ in 0..100 {
        let i: Value = client
            .get(&url_b)
            .bearer_auth(&p.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if i["status"]["bytesDone"].as_u64().unwrap_or(0) >= 16 << 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.a.child.kill().unwrap();
    p.a.child.wait().unwrap();
    up.set_behaviour(Behaviour::Normal);
    // B takes the job over once A's lease (2 s) expires
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let done = loop {
        let i: Value = client
            .get(&url_b)
            .bearer_auth(&p.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if i["status"]["state"] != "importing" {
            break i;
        }
        assert!(tokio::time::Instant::now() < deadline, "still importing: {i}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done["status"]["state"], "ready", "{done}");
    assert_eq!(done["sha256"], sha);
    let file = client
        .get(format!("{url_b}/file"))
        .bearer_auth(&p.token)
        .send()
        .await
        .unwrap();
    assert_eq!(file.bytes().await.unwrap().as_ref(), &data[..]);
    assert_eq!(up.requests().len(), 3, "peek, A's copy, B's copy: {:?}", up.requests());
    // A's multipart upload, which A could not abort, was aborted by B when it took over
    assert_eq!(s3_open_uploads(&p.bucket).await, 0);
}
