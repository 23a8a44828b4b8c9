//! Test harness: each test gets its own database (a SQLite file, or a fresh PostgreSQL database)
//! and its own data directory, and talks to the real application over HTTP on a port-0 listener.

use std::path::{Path, PathBuf};

use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use strata_api::{Application, Config};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs `async fn name(backend: Backend)` as two tests, `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::harness::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::harness::Backend::Postgres).await;
            }
        }
    };
}

/// Runs an async test body on both databases: `both!(name, |app| async move { ... })`.
#[macro_export]
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::harness::run($crate::harness::Backend::Sqlite, |_| {}, $body).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::harness::run($crate::harness::Backend::Postgres, |_| {}, $body).await;
            }
        }
    };
    ($name:ident, config = $cfg:expr, with_s3, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::harness::run($crate::harness::Backend::Sqlite, $cfg, $body).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::harness::run($crate::harness::Backend::Postgres, $cfg, $body).await;
            }
            /// The same body with the region on S3 (moto).
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_s3() {
                let bucket = $crate::harness::s3_bucket().await;
                let configure = $cfg;
                $crate::harness::run(
                    $crate::harness::Backend::Postgres,
                    move |c: &mut strata_api::Config| {
                        configure(c);
                        $crate::harness::use_s3(c, &bucket);
                    },
                    $body,
                )
                .await;
            }
        }
    };
    ($name:ident, config = $cfg:expr, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::harness::run($crate::harness::Backend::Sqlite, $cfg, $body).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::harness::run($crate::harness::Backend::Postgres, $cfg, $body).await;
            }
        }
    };
}

pub fn pg_admin_url() -> String {
    std::env::var("STRATA_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates a uniquely named PostgreSQL database and returns its URL. The test script drops
/// leftovers (`strata_t_*`) before and after a run.
pub async fn fresh_pg_database() -> String {
    use sea_orm::ConnectionTrait;
    let admin = pg_admin_url();
    let name = format!("strata_t_{}", uuid::Uuid::new_v4().simple());
    let conn = sea_orm::Database::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required (the test script starts it): {e}"));
    conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    conn.close().await.ok();
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .expect("url with a database");
    format!("{base}/{name}")
}

pub fn s3_endpoint() -> String {
    std::env::var("STRATA_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9199".into())
}

/// Creates a fresh bucket on the test S3 server.
pub async fn s3_bucket() -> String {
    let name = format!("strata-t-{}", &uuid::Uuid::new_v4().simple().to_string()[..20]);
    let url = format!("{}/{name}", s3_endpoint());
    let res = Client::new().put(&url).send().await.unwrap_or_else(|e| {
        panic!(
            "S3 test server at {} is required (the test script starts it): {e}",
            s3_endpoint()
        )
    });
    assert!(res.status().is_success(), "creating bucket {name}: {}", res.status());
    name
}

/// Multipart uploads open in a bucket (S3 ListMultipartUploads).
pub async fn s3_open_uploads(bucket: &str) -> usize {
    let body = Client::new()
        .get(format!("{}/{bucket}?uploads", s3_endpoint()))
        .send()
        .await
        .expect("list multipart uploads")
        .text()
        .await
        .expect("body");
    body.matches("<UploadId>").count()
}

/// Puts the default region on S3, with credentials in files (as a mounted secret would be).
pub fn use_s3(cfg: &mut Config, bucket: &str) {
    use strata_api::config::{ProviderConfig, RegionConfig};
    let key = cfg.data_dir.join("s3-key-id");
    let secret = cfg.data_dir.join("s3-secret");
    std::fs::write(&key, "testing").expect("write key");
    std::fs::write(&secret, "testing-secret").expect("write secret");
    cfg.regions = vec![RegionConfig {
        id: "local".into(),
        organizations: None,
        provider: ProviderConfig::S3 {
            bucket: bucket.to_owned(),
            endpoint: Some(s3_endpoint()),
            region: "us-east-1".into(),
            prefix: Some("regions/local".into()),
            allow_http: true,
            access_key_id_file: Some(key),
            secret_access_key_file: Some(secret),
        },
    }];
}

pub struct TestApp {
    /// The app behind the spec-checking proxy (`spec_check`): use this for API calls.
    pub base: String,
    /// The app itself, for tests of connection handling on raw sockets.
    pub direct: String,
    /// What the proxies of this test found that the committed spec does not allow.
    pub violations: crate::spec_check::Violations,
    pub client: Client,
    pub cfg: Config,
    pub _dir: std::sync::Arc<tempfile::TempDir>,
    handle: actix_web::dev::ServerHandle,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub async fn base_config(backend: Backend, dir: &Path) -> Config {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    };
    cfg.server.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.server.workers = Some(2);
    cfg.server.shutdown_timeout_secs = 1;
    if backend == Backend::Postgres {
        cfg.database.url = Some(SecretString::from(fresh_pg_database().await));
    }
    cfg
}

pub async fn spawn_with(backend: Backend, customize: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = base_config(backend, dir.path()).await;
    customize(&mut cfg);
    let violations = crate::spec_check::Violations::default();
    let (base, direct, handle, task) = start(cfg.clone(), violations.clone()).await;
    TestApp {
        base,
        direct,
        violations,
        client: Client::new(),
        cfg,
        _dir: std::sync::Arc::new(dir),
        handle,
        task: Some(task),
    }
}

/// Starts one more instance of the application on `cfg` (e.g. a second replica on the same
/// database and data directory) behind a spec-checking proxy. Returns the proxy's base URL, the
/// app's own, and the app's handle and task.
pub async fn start(
    cfg: Config,
    violations: crate::spec_check::Violations,
) -> (
    String,
    String,
    actix_web::dev::ServerHandle,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let app = Application::build(cfg).await.expect("application starts");
    let proxy = crate::spec_check::proxy(app.addr(), violations).await;
    let handle = app.handle();
    (
        format!("http://{proxy}"),
        format!("http://{}", app.addr()),
        handle,
        tokio::spawn(app.run()),
    )
}

pub async fn run<F, Fut>(backend: Backend, customize: impl FnOnce(&mut Config), body: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let app = spawn_with(backend, customize).await;
    let handle = app.handle.clone();
    let violations = app.violations.clone();
    body(app).await;
    handle.stop(false).await;
    let found = violations.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        found.is_empty(),
        "responses that openapi/openapi.json does not allow:\n{}",
        found.join("\n")
    );
}

pub const ALL_SCOPES: &str = "images:read images:write kernels:read kernels:write";

impl TestApp {
    /// Graceful stop, as on SIGTERM: waits until background workers have handed their jobs back.
    pub async fn stop(&mut self) {
        self.handle.stop(true).await;
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Another instance on `cfg` sharing this one's data directory (a second replica, or a restart).
    pub async fn sibling(&self, cfg: Config) -> TestApp {
        let (base, direct, handle, task) = start(cfg.clone(), self.violations.clone()).await;
        TestApp {
            base,
            direct,
            violations: self.violations.clone(),
            client: Client::new(),
            cfg,
            _dir: self._dir.clone(),
            handle,
            task: Some(task),
        }
    }

    pub fn token(&self, orgs: &[&str]) -> String {
        self.token_with(orgs, ALL_SCOPES, false)
    }

    pub fn admin_token(&self) -> String {
        self.token_with(&[], ALL_SCOPES, true)
    }

    pub fn token_with(&self, orgs: &[&str], scopes: &str, admin: bool) -> String {
        let orgs: Vec<String> = orgs.iter().map(|s| s.to_string()).collect();
        let scopes: Vec<String> = scopes.split_whitespace().map(str::to_owned).collect();
        strata_api::auth::mint_dev_token(&self.cfg, "tester", &orgs, &scopes, admin, 600).expect("token")
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.cfg.data_dir.join("blobs")
    }

    /// The bucket of an S3-backed test app.
    pub fn s3_bucket_name(&self) -> Option<String> {
        self.cfg.regions.iter().find_map(|r| match &r.provider {
            strata_api::config::ProviderConfig::S3 { bucket, .. } => Some(bucket.clone()),
            _ => None,
        })
    }

    /// What the region's storage holds: object keys under `images/`, plus what object listings
    /// do not show: multipart staging files on local disk, open multipart uploads on S3.
    pub async fn stored(&self) -> Vec<String> {
        let regions = strata_api::state::build_regions(&self.cfg).expect("regions");
        let local = strata_domain::ids::RegionId::parse("local").expect("id");
        let store = &regions.get(&local).expect("the test region \"local\"").store;
        let mut keys: Vec<String> = store
            .list_images()
            .await
            .expect("list")
            .into_iter()
            .map(|o| o.key)
            .collect();
        for f in files_under(&self.blobs_dir()) {
            let f = f.to_string_lossy().into_owned();
            if f.contains('#') {
                keys.push(f);
            }
        }
        if let Some(bucket) = self.s3_bucket_name() {
            for i in 0..s3_open_uploads(&bucket).await {
                keys.push(format!("open multipart upload #{i}"));
            }
        }
        keys.sort();
        keys
    }

    pub fn v1(&self, org: &str, region: &str) -> String {
        format!("{}/api/v1/organizations/{org}/regions/{region}", self.base)
    }

    pub fn req(&self, method: Method, url: &str, token: &str) -> RequestBuilder {
        self.client.request(method, url).bearer_auth(token)
    }

    /// Creates an upload image and returns its JSON.
    pub async fn create(&self, org: &str, token: &str, body: Value) -> Value {
        let res = self
            .req(Method::POST, &format!("{}/images", self.v1(org, "local")), token)
            .json(&body)
            .send()
            .await
            .expect("request");
        expect_status(res, StatusCode::CREATED).await
    }

    pub async fn create_named(&self, org: &str, token: &str, name: &str) -> Value {
        self.create(org, token, json!({"name": name, "source": {"type": "upload"}}))
            .await
    }

    pub async fn upload(&self, org: &str, token: &str, id: &str, bytes: Vec<u8>) -> Response {
        self.req(
            Method::PUT,
            &format!("{}/images/{id}/file", self.v1(org, "local")),
            token,
        )
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .expect("request")
    }
}

/// Asserts the status (printing the body when it differs) and returns the JSON body.
pub async fn expect_status(res: Response, want: StatusCode) -> Value {
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    assert_eq!(status, want, "unexpected status; body: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }
}

/// Asserts an error response: status and stable code, and that the body has a message and request id.
pub async fn expect_error(res: Response, want: StatusCode, code: &str) -> Value {
    let body = expect_status(res, want).await;
    assert_eq!(body["error"], code, "wrong error code: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "no message: {body}"
    );
    assert!(
        body["requestId"].as_str().is_some_and(|m| !m.is_empty()),
        "no requestId: {body}"
    );
    body
}

/// Every regular file under `dir` (object-store staging files included).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out
}

/// GETs `url` with `token` every 200 ms until the JSON answer is no longer `importing`, failing
/// the test after `secs`. For crash tests that watch an artifact on a restarted process.
pub async fn wait_until_settled(client: &Client, url: &str, token: &str, secs: u64) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let v = expect_status(client.get(url).bearer_auth(token).send().await.unwrap(), StatusCode::OK).await;
        if v["status"]["state"] != "importing" {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "still importing: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Reads exactly one HTTP/1.1 response from a raw connection: its head (up to the blank line),
/// its `content-length` and that many body bytes (none after a HEAD), never a byte of the
/// response after it, so it works on kept-alive and pipelined connections alike. Panics if the
/// server closes first.
pub async fn read_http_response(s: &mut tokio::net::TcpStream, is_head: bool) -> (String, usize, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        match s.read_u8().await {
            Ok(b) => head.push(b),
            Err(e) => panic!(
                "the server closed instead of answering ({e}): {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; if is_head { 0 } else { len }];
    s.read_exact(&mut body).await.unwrap();
    (head, len, body)
}
