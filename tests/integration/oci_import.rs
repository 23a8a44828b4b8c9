//! OCI pulls through the API (issue 11): a real `docker-registry` on 127.0.0.1, images built by
//! the tests and pushed with skopeo, the job runner pulling them into ext4 root filesystems that
//! are then downloaded and checked with debugfs and e2fsck, not with the code that wrote them.

use std::io::Write;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::*;
use crate::on_both;
use crate::registry::{ImageSpec, Registry, push, small_layers};

/// Loopback registries are allowed for the tests (the default policy refuses them), spoken to
/// over plain HTTP.
fn oci_cfg(reg: &Registry) -> impl FnOnce(&mut strata_api::Config) + use<> {
    let addr = reg.addr.clone();
    move |cfg| {
        crate::imports::import_cfg(cfg);
        cfg.imports.idle_timeout_secs = 10;
        cfg.imports.peek_timeout_secs = 10;
        cfg.oci.insecure_registries = vec![addr];
        cfg.oci.tool_timeout_secs = 120;
    }
}

fn images_url(app: &TestApp) -> String {
    format!("{}/images", app.v1("acme", "local"))
}

async fn create(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.req(Method::POST, &images_url(app), token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Polls until `done`, recording every `status.phase` seen on the way.
async fn wait_for(
    app: &TestApp,
    token: &str,
    id: &str,
    secs: u64,
    phases: &mut Vec<String>,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let url = format!("{}/{id}", images_url(app));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let img = expect_status(app.req(Method::GET, &url, token).send().await.unwrap(), StatusCode::OK).await;
        if let Some(p) = img["status"]["phase"].as_str()
            && phases.last().map(String::as_str) != Some(p)
        {
            phases.push(p.to_owned());
        }
        if done(&img) {
            return img;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting; image is {img}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn settled(img: &Value) -> bool {
    img["status"]["state"] == "ready" || img["status"]["state"] == "failed"
}

fn debugfs(img: &std::path::Path, req: &str) -> String {
    let out = Command::new("debugfs").arg("-R").arg(req).arg(img).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Downloads the image's file and checks it with e2fsck; returns where it is.
async fn download_ext4(app: &TestApp, token: &str, id: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let res = app
        .req(Method::GET, &format!("{}/{id}/file", images_url(app)), token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = res.bytes().await.unwrap();
    let path = dir.join("rootfs.ext4");
    std::fs::File::create(&path).unwrap().write_all(&bytes).unwrap();
    let fsck = Command::new("e2fsck").arg("-fn").arg(&path).output().unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    path
}

/// Job directories (empty or not) and files left in OCI staging.
fn staging_left(app: &TestApp) -> Vec<std::path::PathBuf> {
    let dir = app.cfg.data_dir.join("oci-staging");
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

/// The realistic layers, then 48 MiB that do not compress: long enough in each phase for a
/// heartbeat to publish it (and for a kill -9 to land in it).
fn noisy_layers() -> Vec<crate::registry::BuiltLayer> {
    let mut layers = crate::oci_pull::realistic_layers();
    let big = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(big.path().join("opt")).unwrap();
    let mut noise = vec![0u8; 48 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in noise.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(big.path().join("opt/noise.bin"), &noise).unwrap();
    layers.push(crate::registry::layer_from_dir(big.path()));
    layers
}

on_both!(pulls_to_a_ready_rootfs);
async fn pulls_to_a_ready_rootfs(backend: Backend) {
    let reg = Registry::start(None).await;
    let layers = noisy_layers();
    let pushed = push(&reg, "library/debian", "bookworm", &[ImageSpec::amd64(&layers)], None);
    let (manifest, config, _) = pushed.manifests[0].clone();
    run(backend, oci_cfg(&reg), |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let reference = format!("{}/library/debian:bookworm", reg.addr);
        let res = create(&app, &t, json!({"source": {"type": "oci", "reference": reference}})).await;
        let img = expect_status(res, StatusCode::CREATED).await;
        // the default name, the kind, provenance and reserved tags, all before the pull ends
        assert_eq!(img["name"], "debian-bookworm");
        assert_eq!(img["kind"], "rootfs");
        assert_eq!(img["diskFormat"], "ext4");
        assert_eq!(img["status"]["state"], "importing");
        assert_eq!(img["provenance"]["source"], "oci");
        assert_eq!(img["provenance"]["reference"], reference);
        assert_eq!(img["provenance"]["digest"], manifest);
        assert_eq!(img["provenance"]["configDigest"], config);
        assert_eq!(img["provenance"]["platform"], "linux/amd64");
        assert_eq!(img["tags"]["strata.dev/source"], "oci");
        assert_eq!(img["tags"]["strata.dev/reference"], reference);
        assert_eq!(img["tags"]["strata.dev/digest"], manifest);
        assert_eq!(img["tags"]["strata.dev/platform"], "linux/amd64");
        assert_eq!(img["os"]["family"], "linux");
        let id = img["id"].as_str().unwrap().to_owned();

        // the default name is taken now: 409, and nothing else is created
        let again = create(&app, &t, json!({"source": {"type": "oci", "reference": reference}})).await;
        expect_error(again, StatusCode::CONFLICT, "name-taken").await;

        let mut phases = vec!["resolving".to_owned()];
        let ready = wait_for(&app, &t, &id, 120, &mut phases, settled).await;
        assert_eq!(ready["status"]["state"], "ready", "{ready}");
        assert!(ready["status"]["phase"].is_null(), "{ready}");
        assert!(phases.len() >= 2, "some later phase was seen: {phases:?}");
        let order = ["resolving", "pulling", "flattening", "building", "storing"];
        let idx: Vec<usize> = phases
            .iter()
            .map(|p| {
                order
                    .iter()
                    .position(|o| o == p)
                    .unwrap_or_else(|| panic!("unknown phase {p}"))
            })
            .collect();
        assert!(idx.windows(2).all(|w| w[0] < w[1]), "phases in order: {phases:?}");
        // the manifest digest stays the provenance digest; the file's own hash is `sha256`
        assert_eq!(ready["provenance"]["digest"], manifest);
        assert_eq!(ready["tags"]["strata.dev/digest"], manifest);
        let size = ready["sizeBytes"].as_u64().unwrap();
        assert!(size >= 64 << 20, "{ready}");
        assert_eq!(ready["status"]["bytesDone"], size);

        let dir = tempfile::tempdir().unwrap();
        let img = download_ext4(&app, &t, &id, dir.path()).await;
        let bytes = std::fs::read(&img).unwrap();
        assert_eq!(bytes.len() as u64, size);
        use sha2::Digest as _;
        assert_eq!(ready["sha256"], hex::encode(sha2::Sha256::digest(&bytes)));
        let stat = |p: &str| debugfs(&img, &format!("stat {p}"));
        assert!(stat("/usr/bin/su").contains("Mode:  04755"), "{}", stat("/usr/bin/su"));
        assert!(
            stat("/usr/bin/su").contains("User:     0   Group:     0"),
            "{}",
            stat("/usr/bin/su")
        );
        assert!(
            stat("/home/user/notes").contains("User:  1000   Group:  1000"),
            "{}",
            stat("/home/user/notes")
        );
        assert!(stat("/etc/shadow").contains("Mode:  0600"), "{}", stat("/etc/shadow"));
        assert!(stat("/lib").contains("Fast link dest: \"usr/lib\""), "{}", stat("/lib"));
        let app_dir = debugfs(&img, "ls /opt/app");
        assert!(
            app_dir.contains("new.conf") && !app_dir.contains("old.conf"),
            "opaque: {app_dir}"
        );

        assert!(staging_left(&app).is_empty(), "staging: {:?}", staging_left(&app));

        // a digest reference: the default name is REPO-<12 hex>, and the same manifest
        let by_digest = format!("{}/library/debian@{manifest}", reg.addr);
        let res = create(
            &app,
            &t,
            json!({"source": {"type": "oci", "reference": by_digest, "platform": "linux/amd64"}}),
        )
        .await;
        let img2 = expect_status(res, StatusCode::CREATED).await;
        let hex12 = &manifest["sha256:".len().."sha256:".len() + 12];
        assert_eq!(img2["name"], format!("debian-{hex12}"));
        assert_eq!(img2["provenance"]["digest"], manifest);
        let done = wait_for(&app, &t, img2["id"].as_str().unwrap(), 120, &mut Vec::new(), settled).await;
        assert_eq!(done["status"]["state"], "ready", "{done}");
        assert_eq!(done["sizeBytes"], ready["sizeBytes"], "the same content, the same size");
        assert_eq!(
            done["sha256"], ready["sha256"],
            "the same manifest: the filesystem built once"
        );
        assert!(staging_left(&app).is_empty());
    })
    .await;
}

on_both!(built_filesystems_are_reused_and_verified);
/// The same manifest, platform and size pulled again (by another organization) stores the
/// filesystem built the first time: the same bytes (a fresh mkfs would differ: its UUID is
/// random). Another size builds anew. A cached filesystem damaged on disk is caught by the
/// checksum it is stored with, dropped, and the pull retried into a fresh build.
async fn built_filesystems_are_reused_and_verified(backend: Backend) {
    let reg = Registry::start(None).await;
    let layers = small_layers();
    push(&reg, "library/tiny", "1", &[ImageSpec::amd64(&layers)], None);
    run(backend, oci_cfg(&reg), |app: TestApp| async move {
        let reference = format!("{}/library/tiny:1", reg.addr);
        let pull = |org: &'static str, size: Option<u64>| {
            let (app, reference) = (&app, reference.clone());
            async move {
                let t = app.token(&[org]);
                let mut source = json!({"type": "oci", "reference": reference});
                if let Some(n) = size {
                    source["sizeBytes"] = json!(n);
                }
                let url = format!("{}/images", app.v1(org, "local"));
                let res = app
                    .req(Method::POST, &url, &t)
                    .json(&json!({"source": source}))
                    .send()
                    .await
                    .unwrap();
                let img = expect_status(res, StatusCode::CREATED).await;
                let img_url = format!("{url}/{}", img["id"].as_str().unwrap());
                let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
                loop {
                    let now =
                        expect_status(app.req(Method::GET, &img_url, &t).send().await.unwrap(), StatusCode::OK).await;
                    if settled(&now) {
                        assert_eq!(now["status"]["state"], "ready", "{now}");
                        let file = app
                            .req(Method::GET, &format!("{img_url}/file"), &t)
                            .send()
                            .await
                            .unwrap();
                        let bytes = file.bytes().await.unwrap();
                        use sha2::Digest as _;
                        assert_eq!(
                            now["sha256"],
                            hex::encode(sha2::Sha256::digest(&bytes)),
                            "stored as reported"
                        );
                        return now["sha256"].as_str().unwrap().to_owned();
                    }
                    assert!(tokio::time::Instant::now() < deadline, "{now}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let first = pull("acme", None).await;
        let second = pull("globex", None).await;
        assert_eq!(
            first, second,
            "the second pull stored the filesystem built by the first"
        );
        let sized = pull("hooli", Some(96 << 20)).await;
        assert_ne!(sized, first, "another size is another build");

        // damage the cached filesystem: caught, dropped, rebuilt
        let entry = app.cfg.data_dir.join("oci-cache").join("sha256").join(&first);
        let mut bytes = std::fs::read(&entry).expect("the built filesystem is in the cache");
        bytes[4096] ^= 0xff;
        std::fs::write(&entry, &bytes).unwrap();
        let third = pull("initech", None).await;
        assert_ne!(third, first, "a damaged cache entry is never stored");
        assert!(!entry.exists(), "the damaged entry was dropped");
        let fourth = pull("umbrella", None).await;
        assert_eq!(fourth, third, "the rebuilt filesystem is cached in its place");
        assert!(staging_left(&app).is_empty(), "staging: {:?}", staging_left(&app));
        let tmp = app.cfg.data_dir.join("oci-cache").join("tmp");
        assert!(
            files_under(&tmp).is_empty(),
            "cache temp files: {:?}",
            files_under(&tmp)
        );
    })
    .await;
}

on_both!(refuses_before_creating);
async fn refuses_before_creating(backend: Backend) {
    let reg = Registry::start(None).await;
    let layers = small_layers();
    push(
        &reg,
        "team/multi",
        "v1",
        &[
            ImageSpec {
                layers: &layers,
                os: "linux",
                architecture: "arm64",
                config: json!({}),
            },
            ImageSpec {
                layers: &layers,
                os: "linux",
                architecture: "s390x",
                config: json!({}),
            },
        ],
        None,
    );
    run(backend, oci_cfg(&reg), |app: TestApp| async move {
        let t = app.token(&["acme"]);
        // a missing tag: the registry's answer
        let missing = format!("{}/team/multi:nope", reg.addr);
        let res = create(&app, &t, json!({"source": {"type": "oci", "reference": missing}})).await;
        let body = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "fetch-failed").await;
        assert!(body["message"].as_str().unwrap().contains("no manifest"), "{body}");
        // an index without the default platform (linux/amd64): the ones it has are listed
        let multi = format!("{}/team/multi:v1", reg.addr);
        let res = create(&app, &t, json!({"source": {"type": "oci", "reference": multi}})).await;
        let body = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "platform-not-found").await;
        let msg = body["message"].as_str().unwrap();
        assert!(msg.contains("linux/arm64") && msg.contains("linux/s390x"), "{body}");
        // a bad reference, a bad platform, a name missing where it has no default
        let res = create(
            &app,
            &t,
            json!({"source": {"type": "oci", "reference": "UPPER/Case:x"}}),
        )
        .await;
        expect_error(res, StatusCode::BAD_REQUEST, "invalid-input").await;
        let res = create(
            &app,
            &t,
            json!({"source": {"type": "oci", "reference": multi, "platform": "linux"}}),
        )
        .await;
        expect_error(res, StatusCode::BAD_REQUEST, "invalid-input").await;
        let res = create(&app, &t, json!({"source": {"type": "upload"}})).await;
        expect_error(res, StatusCode::BAD_REQUEST, "invalid-input").await;
        // a private address is refused by the address policy before any connection
        let res = create(
            &app,
            &t,
            json!({"source": {"type": "oci", "reference": "10.0.0.1:5000/a/b:c"}}),
        )
        .await;
        expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "url-not-allowed").await;
        // nothing was created
        let list = expect_status(
            app.req(Method::GET, &images_url(&app), &t).send().await.unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(list.as_array().unwrap().len(), 0, "{list}");
        // the platform that is there pulls, with an explicit name
        let res = create(
            &app,
            &t,
            json!({"name": "multi-arm", "source": {"type": "oci", "reference": multi, "platform": "linux/arm64"}}),
        )
        .await;
        let img = expect_status(res, StatusCode::CREATED).await;
        assert_eq!(img["provenance"]["platform"], "linux/arm64");
        assert_eq!(img["tags"]["strata.dev/platform"], "linux/arm64");
        let done = wait_for(&app, &t, img["id"].as_str().unwrap(), 120, &mut Vec::new(), settled).await;
        assert_eq!(done["status"]["state"], "ready", "{done}");
    })
    .await;
}

/// Everything the server logs while these tests run (installed once per test process).
fn captured_logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        struct W(&'static Mutex<Vec<u8>>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || W(buf))
            .try_init();
        buf
    })
}

on_both!(credentials_are_used_and_never_shown);
async fn credentials_are_used_and_never_shown(backend: Backend) {
    let logs = captured_logs();
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let reg = Registry::start(Some(("puller", &password))).await;
    let layers = small_layers();
    push(
        &reg,
        "private/app",
        "1.0",
        &[ImageSpec::amd64(&layers)],
        Some(("puller", &password)),
    );
    let pw = password.clone();
    run(backend, oci_cfg(&reg), |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let reference = format!("{}/private/app:1.0", reg.addr);
        // without credentials, or with wrong ones: the registry refuses
        refused_without_the_right_credentials(&app, &t, &reference, "refused").await;

        let body = json!({"source": {"type": "oci", "reference": reference,
            "credentials": {"username": "puller", "password": pw}}});
        let img = expect_status(create(&app, &t, body).await, StatusCode::CREATED).await;
        assert_eq!(img["name"], "app-1.0");
        let id = img["id"].as_str().unwrap().to_owned();
        let mut shown = vec![img.to_string()];
        let ready = wait_for(&app, &t, &id, 120, &mut Vec::new(), settled).await;
        assert_eq!(ready["status"]["state"], "ready", "{ready}");
        shown.push(ready.to_string());
        let list = app.req(Method::GET, &images_url(&app), &t).send().await.unwrap();
        shown.push(list.text().await.unwrap());
        for s in &shown {
            assert!(!s.contains(&pw), "the password is shown: {s}");
        }
        download_ext4(&app, &t, &id, tempfile::tempdir().unwrap().path()).await;
    })
    .await;
    let logs = String::from_utf8_lossy(&logs.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    assert!(!logs.contains(&password), "the password is in the logs");
}

/// Without credentials, and with a wrong password for `puller`: 422 `fetch-failed`, the first
/// saying `says`.
async fn refused_without_the_right_credentials(app: &TestApp, t: &str, reference: &str, says: &str) {
    let res = create(app, t, json!({"source": {"type": "oci", "reference": reference}})).await;
    let body = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "fetch-failed").await;
    assert!(body["message"].as_str().unwrap().contains(says), "{body}");
    let wrong = json!({"source": {"type": "oci", "reference": reference,
        "credentials": {"username": "puller", "password": "wrong"}}});
    expect_error(
        create(app, t, wrong).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "fetch-failed",
    )
    .await;
}

on_both!(credentials_go_through_the_token_flow);
/// A registry behind the Docker token flow (its own token service, trusted by the registry):
/// the caller's credentials get a bearer token from the realm the registry names, which then
/// pulls; without them, or with wrong ones, the token service refuses and nothing is created.
async fn credentials_go_through_the_token_flow(backend: Backend) {
    use crate::registry::TokenServer;
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let tokens = TokenServer::start("puller", &password).await;
    let reg = Registry::start_with_tokens(&tokens).await;
    let layers = small_layers();
    push(
        &reg,
        "private/app",
        "2.0",
        &[ImageSpec::amd64(&layers)],
        Some(("puller", &password)),
    );
    let pushed_with = tokens.issued.load(std::sync::atomic::Ordering::SeqCst);
    assert!(pushed_with > 0, "skopeo pushed through the token flow");
    let realm = tokens.addr.clone();
    let cfg = oci_cfg(&reg);
    let cfg = move |c: &mut strata_api::Config| {
        cfg(c);
        // the token service is plain HTTP on loopback too
        c.oci.insecure_registries.push(realm);
    };
    let issued = tokens.issued.clone();
    run(backend, cfg, |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let reference = format!("{}/private/app:2.0", reg.addr);
        refused_without_the_right_credentials(&app, &t, &reference, "token").await;
        assert_eq!(
            issued.load(std::sync::atomic::Ordering::SeqCst),
            pushed_with,
            "no token for them"
        );
        let list = app.req(Method::GET, &images_url(&app), &t).send().await.unwrap();
        assert!(!list.text().await.unwrap().contains("app-2.0"), "nothing was created");

        let body = json!({"source": {"type": "oci", "reference": reference,
            "credentials": {"username": "puller", "password": password}}});
        let img = expect_status(create(&app, &t, body).await, StatusCode::CREATED).await;
        let id = img["id"].as_str().unwrap().to_owned();
        let ready = wait_for(&app, &t, &id, 120, &mut Vec::new(), settled).await;
        assert_eq!(ready["status"]["state"], "ready", "{ready}");
        assert!(
            issued.load(std::sync::atomic::Ordering::SeqCst) > pushed_with,
            "the pull got its token from the realm"
        );
        assert!(!ready.to_string().contains(&password));
        download_ext4(&app, &t, &id, tempfile::tempdir().unwrap().path()).await;
    })
    .await;
}

/// Where a crash test kills the first process.
#[derive(Clone, Copy, Debug, PartialEq)]
enum KillIn {
    /// While layers arrive (through a proxy that slows the registry down to 16 MiB/s).
    Pulling,
    /// While the layers are applied or the filesystem built.
    FlatteningOrBuilding,
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` that forwards requests as they come and
/// answers at `bytes_per_sec`: a slow registry, so a kill -9 can land while layers arrive.
async fn throttled_proxy(upstream: String, bytes_per_sec: u64) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                    let _ = sw.shutdown().await;
                });
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs_f64(n as f64 / bytes_per_sec as f64)).await;
                }
                let _ = cw.shutdown().await;
            });
        }
    });
    addr
}

/// kill -9 while a pull is pulling layers, or flattening or building: the restarted process
/// takes the job over once the lease expires, removes the dead attempt's staging directory, and
/// finishes it; nothing is left in staging, in the cache's temp files or in storage but the one
/// image.
async fn crash_during_pull(database_url: Option<String>, kill_in: KillIn) {
    use crate::cli::{serve, strata};
    let reg = Registry::start(None).await;
    let layers = noisy_layers();
    push(&reg, "library/big", "1", &[ImageSpec::amd64(&layers)], None);
    let registry = match kill_in {
        KillIn::Pulling => throttled_proxy(reg.addr.clone(), 16 << 20).await,
        KillIn::FlatteningOrBuilding => reg.addr.clone(),
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let cfg = dir.path().join("strata.toml");
    std::fs::write(
        &cfg,
        format!(
            "[imports]\nallow_hosts = [\"127.0.0.1\"]\nlease_secs = 2\npoll_interval_ms = 100\n\n[oci]\ninsecure_registries = [\"{registry}\"]\n"
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let env: Vec<(&str, &str)> = database_url
        .as_deref()
        .map(|u| vec![("STRATA__DATABASE__URL", u)])
        .unwrap_or_default();
    let mut first = serve(&["--config", c, "--listen", "127.0.0.1:0", "--data-dir", d], &env);
    let token = strata(&["token", "--config", c, "--data-dir", d, "--org", "acme"])
        .trim()
        .to_owned();
    let client = reqwest::Client::new();
    let images = format!("{}/api/v1/organizations/acme/regions/local/images", first.base);
    let reference = format!("{registry}/library/big:1");
    let res = client
        .post(&images)
        .bearer_auth(&token)
        .json(&json!({"source": {"type": "oci", "reference": reference}}))
        .send()
        .await
        .unwrap();
    let img = expect_status(res, StatusCode::CREATED).await;
    let id = img["id"].as_str().unwrap().to_owned();
    let staging = dir.path().join("oci-staging");
    let cache_tmp = dir.path().join("oci-cache").join("tmp");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let killed_in = loop {
        let found = match kill_in {
            // the API says so: some layer bytes are in, not all
            KillIn::Pulling => {
                let now = client
                    .get(format!("{images}/{id}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap();
                let st = &now["status"];
                let (done, total) = (
                    st["bytesDone"].as_u64().unwrap_or(0),
                    st["bytesTotal"].as_u64().unwrap_or(0),
                );
                (st["phase"] == "pulling" && done > 0 && done < total).then_some("pulling")
            }
            // the pull is quick here: watch its staging directory (`tree/`, `rootfs.ext4`)
            KillIn::FlatteningOrBuilding => std::fs::read_dir(&staging).ok().and_then(|jobs| {
                jobs.flatten().find_map(|j| {
                    if j.path().join("rootfs.ext4").exists() {
                        Some("building")
                    } else if j.path().join("tree").exists() {
                        Some("flattening")
                    } else {
                        None
                    }
                })
            }),
        };
        if let Some(phase) = found {
            first.child.kill().unwrap(); // SIGKILL
            first.child.wait().unwrap();
            break phase;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pull never reached {kill_in:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    assert!(
        std::fs::read_dir(&staging).unwrap().flatten().next().is_some(),
        "the dead attempt ({killed_in}) left its staging directory"
    );
    // a layer was being written to the cache: as an unnamed file, gone with the process
    assert!(
        files_under(&cache_tmp).is_empty(),
        "the dead attempt left cache temp files: {:?}",
        files_under(&cache_tmp)
    );

    let second = serve(&["--config", c, "--listen", "127.0.0.1:0", "--data-dir", d], &env);
    let url = format!("{}/api/v1/organizations/acme/regions/local/images/{id}", second.base);
    let ready = wait_until_settled(&client, &url, &token, 120).await;
    assert_eq!(ready["status"]["state"], "ready", "killed in {killed_in}: {ready}");
    assert!(
        std::fs::read_dir(&staging)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect::<Vec<_>>()
            .is_empty(),
        "staging left: {:?}",
        std::fs::read_dir(&staging)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect::<Vec<_>>()
    );
    assert!(
        files_under(&cache_tmp).is_empty(),
        "cache temp files left: {:?}",
        files_under(&cache_tmp)
    );
    let stored = files_under(&dir.path().join("blobs"));
    assert_eq!(stored.len(), 1, "storage holds the one image only: {stored:?}");
    let file = client
        .get(format!("{url}/file"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let bytes = file.bytes().await.unwrap();
    assert_eq!(Some(bytes.len() as u64), ready["sizeBytes"].as_u64());
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_pull_sqlite() {
    crash_during_pull(None, KillIn::FlatteningOrBuilding).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_pull_postgres() {
    crash_during_pull(Some(fresh_pg_database().await), KillIn::FlatteningOrBuilding).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_while_pulling_layers_sqlite() {
    crash_during_pull(None, KillIn::Pulling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_while_pulling_layers_postgres() {
    crash_during_pull(Some(fresh_pg_database().await), KillIn::Pulling).await;
}

on_both!(failures_are_typed_and_leave_nothing);
async fn failures_are_typed_and_leave_nothing(backend: Backend) {
    use crate::registry::layer_from_tar;
    let reg = Registry::start(None).await;
    // a layer whose entry climbs out with `..` (GNU tar -P keeps it)
    let evil_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(evil_dir.path().join("a")).unwrap();
    std::fs::write(evil_dir.path().join("evil"), "x").unwrap();
    let tar = Command::new("tar")
        .args(["-P", "-C"])
        .arg(evil_dir.path().join("a"))
        .args(["-cf", "-", "../evil"])
        .output()
        .unwrap();
    assert!(tar.status.success());
    push(
        &reg,
        "evil/dotdot",
        "v1",
        &[ImageSpec::amd64(&[layer_from_tar(&tar.stdout)])],
        None,
    );
    // an absolute entry name; a symlink climbing out, written through by the next layer; more
    // entries than `max_entries` (tar files written by Python's tarfile, which writes them as
    // asked)
    let py_tar = |script: &str| -> crate::registry::BuiltLayer {
        let out = Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import io, sys, tarfile\nbuf = io.BytesIO()\nt = tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT)\n\
                 def f(name, data=b'x'):\n    i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))\n\
                 def l(name, target):\n    i = tarfile.TarInfo(name); i.type = tarfile.SYMTYPE; i.linkname = target; t.addfile(i)\n\
                 {script}\nt.close()\nsys.stdout.buffer.write(buf.getvalue())\n"
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        layer_from_tar(&out.stdout)
    };
    push(
        &reg,
        "evil/absolute",
        "v1",
        &[ImageSpec::amd64(&[py_tar("f('/tmp/strata-evil-abs')")])],
        None,
    );
    let climb = [
        py_tar("l('up', '../../../../../../../../tmp')"),
        py_tar("f('up/strata-evil-through')"),
    ];
    push(&reg, "evil/symlink", "v1", &[ImageSpec::amd64(&climb)], None);
    push(
        &reg,
        "evil/entries",
        "v1",
        &[ImageSpec::amd64(&[py_tar("[f(f'e{n}') for n in range(3000)]")])],
        None,
    );
    // a layer blob the registry's storage no longer matches
    let layers = small_layers();
    let pushed = push(&reg, "team/tampered", "v1", &[ImageSpec::amd64(&layers)], None);
    let hex = pushed.manifests[0].2[0].trim_start_matches("sha256:").to_owned();
    let file = reg.blob_file(&hex);
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(&file, bytes).unwrap();
    // other blobs than the tampered ones (the registry stores blobs by digest)
    let fine_dir = tempfile::tempdir().unwrap();
    std::fs::write(fine_dir.path().join("fine"), "fine\n").unwrap();
    let fine = [crate::registry::layer_from_dir(fine_dir.path())];
    push(&reg, "team/fine", "v1", &[ImageSpec::amd64(&fine)], None);
    let configure = oci_cfg(&reg);
    let cfg = move |c: &mut strata_api::Config| {
        configure(c);
        c.quotas.max_bytes = 200 << 20;
        c.oci.max_entries = 2000;
    };
    run(backend, cfg, |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let cases = [
            (
                json!({"type": "oci", "reference": format!("{}/evil/dotdot:v1", reg.addr)}),
                "invalid-archive",
                "..",
            ),
            (
                json!({"type": "oci", "reference": format!("{}/evil/absolute:v1", reg.addr)}),
                "invalid-archive",
                "strata-evil-abs",
            ),
            (
                json!({"type": "oci", "reference": format!("{}/evil/symlink:v1", reg.addr)}),
                "invalid-archive",
                "through a symlink",
            ),
            (
                json!({"type": "oci", "reference": format!("{}/evil/entries:v1", reg.addr)}),
                "invalid-archive",
                "2000",
            ),
            (
                json!({"type": "oci", "reference": format!("{}/team/tampered:v1", reg.addr)}),
                "invalid-archive",
                "hashes to",
            ),
            (
                json!({"type": "oci", "reference": format!("{}/team/fine:v1", reg.addr), "sizeBytes": 1 << 20}),
                "too-large",
                "",
            ),
            (
                json!({"type": "oci", "reference": format!("{}/team/fine:v1", reg.addr), "sizeBytes": 300 << 20}),
                "quota-exceeded",
                "",
            ),
        ];
        for (i, (source, code, says)) in cases.into_iter().enumerate() {
            let res = create(&app, &t, json!({"name": format!("case-{i}"), "source": source})).await;
            let img = expect_status(res, StatusCode::CREATED).await;
            let done = wait_for(&app, &t, img["id"].as_str().unwrap(), 60, &mut Vec::new(), settled).await;
            assert_eq!(done["status"]["state"], "failed", "{done}");
            assert_eq!(done["status"]["reasonCode"], code, "{done}");
            assert!(done["status"]["phase"].is_null(), "{done}");
            assert!(done["status"]["reason"].as_str().unwrap().contains(says), "{done}");
            assert!(staging_left(&app).is_empty(), "staging: {:?}", staging_left(&app));
        }
        assert!(!evil_dir.path().parent().unwrap().join("evil").exists());
        assert!(!std::path::Path::new("/tmp/strata-evil-abs").exists());
        assert!(!std::path::Path::new("/tmp/strata-evil-through").exists());
        assert!(app.stored().await.is_empty(), "stored: {:?}", app.stored().await);
        let tmp = app.cfg.data_dir.join("oci-cache").join("tmp");
        assert!(files_under(&tmp).is_empty(), "cache temp: {:?}", files_under(&tmp));
    })
    .await;
}

on_both!(deleting_a_pulling_image_cancels_it);
async fn deleting_a_pulling_image_cancels_it(backend: Backend) {
    let reg = Registry::start(None).await;
    let layers = noisy_layers();
    push(&reg, "library/big", "1", &[ImageSpec::amd64(&layers)], None);
    run(backend, oci_cfg(&reg), |app: TestApp| async move {
        let t = app.token(&["acme"]);
        let reference = format!("{}/library/big:1", reg.addr);
        let res = create(&app, &t, json!({"source": {"type": "oci", "reference": reference}})).await;
        let img = expect_status(res, StatusCode::CREATED).await;
        let id = img["id"].as_str().unwrap().to_owned();
        let staging = app.cfg.data_dir.join("oci-staging");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !std::fs::read_dir(&staging)
            .map(|d| d.flatten().any(|j| j.path().join("tree").exists()))
            .unwrap_or(false)
        {
            assert!(tokio::time::Instant::now() < deadline, "the pull never flattened");
            std::thread::sleep(Duration::from_millis(2));
        }
        let res = app
            .req(Method::DELETE, &format!("{}/{id}", images_url(&app)), &t)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        // the attempt sees its lease gone at the next heartbeat, stops, and removes its staging
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !staging_left(&app).is_empty() || !app.stored().await.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "left: {:?} {:?}",
                staging_left(&app),
                app.stored().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // and stays clean once every blocking step has seen the cancel
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(staging_left(&app).is_empty(), "{:?}", staging_left(&app));
        assert!(app.stored().await.is_empty());
    })
    .await;
}
