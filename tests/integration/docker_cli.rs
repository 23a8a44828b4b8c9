//! The real docker CLI against Strata's Docker Engine API subset: version, load (plain, gzip,
//! zstd; classic and OCI layouts; several images, one untagged), images, tag (and a tag move),
//! inspect, rmi by tag and by id; a GitLab-Runner-shaped load over plain HTTP; tenancy; the
//! loaded image seen through v1 as an ext4 rootfs that e2fsck finds clean.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both;
use crate::harness::*;
use crate::registry::{ImageSpec, run, small_layers, write_layout};

/// A docker CLI bound to one organization and region of the app, with its token in
/// `config.json` as `HttpHeaders`.
struct Cli {
    host: String,
    config: tempfile::TempDir,
}

impl Cli {
    fn new(app: &TestApp, org: &str, region: &str, token: &str) -> Self {
        let config = tempfile::tempdir().unwrap();
        std::fs::write(
            config.path().join("config.json"),
            json!({"HttpHeaders": {"Authorization": format!("Bearer {token}")}}).to_string(),
        )
        .unwrap();
        // the app itself, not the spec-checking proxy: these paths are Docker's, not in openapi.json
        let host = format!("{}/docker/{org}/{region}", app.direct.replace("http://", "tcp://"));
        Self { host, config }
    }

    fn output(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", self.config.path())
            .env_remove("DOCKER_CONTEXT")
            .output()
            .expect("docker CLI runs")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and expects failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            !out.status.success(),
            "docker {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    fn images(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .ok(&["images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"])
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    }
}

fn compress(file: &Path, tool: &str) -> PathBuf {
    let out = file.with_extension(format!("tar.{tool}"));
    let bytes = Command::new(tool).arg("-c").arg(file).output().unwrap();
    assert!(bytes.status.success());
    std::fs::write(&out, bytes.stdout).unwrap();
    out
}

/// A classic docker-save archive of `team/app:v1` written by skopeo; returns (archive, image id).
fn app_archive(dir: &Path) -> (PathBuf, String) {
    let layout = dir.join("layout");
    let l = small_layers();
    let spec = [ImageSpec {
        layers: &l,
        os: "linux",
        architecture: "amd64",
        config: json!({"config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin"], "Labels": {"team": "ci"}}}),
    }];
    let pushed = write_layout(&layout, "v1", &spec);
    let archive = dir.join("app.tar");
    run(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker-archive:{}:team/app:v1", archive.display())));
    (archive, pushed.manifests[0].1.clone())
}

/// The layout Docker 25+ writes: an OCI layout plus manifest.json; two images, one untagged.
fn multi_archive(dir: &Path) -> (PathBuf, String, String) {
    let layout = dir.join("multi");
    let l = small_layers();
    let a = write_layout(
        &layout,
        "a",
        &[ImageSpec {
            layers: &l,
            os: "linux",
            architecture: "amd64",
            config: json!({"config": {"Cmd": ["/bin/ash"]}}),
        }],
    );
    let b = write_layout(
        &layout,
        "b",
        &[ImageSpec {
            layers: &l[..1],
            os: "linux",
            architecture: "amd64",
            config: json!({"config": {"Cmd": ["/bin/true"]}}),
        }],
    );
    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let manifest = json!([
        {"Config": blob(&a.manifests[0].1), "RepoTags": ["alpine:3.19", "alpine:latest"], "Layers": a.manifests[0].2.iter().map(|d| blob(d)).collect::<Vec<_>>()},
        {"Config": blob(&b.manifests[0].1), "RepoTags": null, "Layers": b.manifests[0].2.iter().map(|d| blob(d)).collect::<Vec<_>>()},
    ]);
    std::fs::write(layout.join("manifest.json"), manifest.to_string()).unwrap();
    let archive = dir.join("multi.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg("."));
    (archive, a.manifests[0].1.clone(), b.manifests[0].1.clone())
}

fn token_rw(app: &TestApp, org: &str) -> String {
    app.token_with(&[org], "images:read images:write", false)
}

both!(
    docker_cli_load_tag_inspect_rmi,
    config = |_: &mut strata_api::Config| {},
    |app: TestApp| async move {
        let dir = tempfile::tempdir().unwrap();
        let (archive, app_id) = app_archive(dir.path());
        let cli = Cli::new(&app, "acme", "local", &token_rw(&app, "acme"));

        let v = cli.ok(&["version", "--format", "{{.Server.APIVersion}} {{.Server.Os}}"]);
        assert_eq!(v.trim(), "1.43 linux");

        // plain, gzip and zstd: the same image, loaded once
        for file in [archive.clone(), compress(&archive, "gzip"), compress(&archive, "zstd")] {
            let out = cli.ok(&["load", "-i", file.to_str().unwrap()]);
            assert!(out.contains("Loaded image: team/app:v1"), "{out}");
        }
        assert_eq!(cli.images(), [format!("{app_id} team/app:v1")]);

        // through v1: one rootfs image, ext4, checked by e2fsck
        let t = app.token(&["acme"]);
        let list = expect_status(
            app.req(Method::GET, &format!("{}/images", app.v1("acme", "local")), &t)
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        let imgs = list.as_array().unwrap();
        assert_eq!(imgs.len(), 1, "{list}");
        let img = &imgs[0];
        assert_eq!(img["name"], "app-v1");
        assert_eq!(img["kind"], "rootfs");
        assert_eq!(img["diskFormat"], "ext4");
        assert_eq!(img["provenance"]["source"], "docker-archive");
        assert_eq!(img["provenance"]["digest"], app_id);
        assert_eq!(img["status"]["state"], "ready");
        let file = app
            .req(
                Method::GET,
                &format!(
                    "{}/images/{}/file",
                    app.v1("acme", "local"),
                    img["id"].as_str().unwrap()
                ),
                &t,
            )
            .send()
            .await
            .unwrap();
        let fs = dir.path().join("rootfs.ext4");
        std::fs::write(&fs, file.bytes().await.unwrap()).unwrap();
        let fsck = Command::new("e2fsck").args(["-fn"]).arg(&fs).output().unwrap();
        assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
        let cat = Command::new("debugfs")
            .args(["-R", "cat /hello"])
            .arg(&fs)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&cat.stdout), "hi\n");

        // tag, inspect
        cli.ok(&["tag", "team/app:v1", "team/app:prod"]);
        let one = expect_status(
            app.req(
                Method::GET,
                &format!("{}/images/{}", app.v1("acme", "local"), img["id"].as_str().unwrap()),
                &t,
            )
            .send()
            .await
            .unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(one["dockerTags"], json!(["team/app:prod", "team/app:v1"]), "{one}");
        // the v2 query finds it by kind
        let v2 = |q: &'static str| {
            let url = format!("{}/api/v2/regions/local/images?{q}", app.base);
            let req = app.req(Method::GET, &url, &t);
            async move { expect_status(req.send().await.unwrap(), StatusCode::OK).await }
        };
        let rootfs = v2("kind=rootfs").await;
        assert_eq!(rootfs["items"].as_array().unwrap().len(), 1);
        // the page's docker tags come with its rows, in the same order as the image's own
        assert_eq!(rootfs["items"][0]["dockerTags"], one["dockerTags"], "{rootfs}");
        assert!(v2("kind=disk").await["items"].as_array().unwrap().is_empty());
        assert_eq!(
            cli.images(),
            [format!("{app_id} team/app:prod"), format!("{app_id} team/app:v1")]
        );
        let inspect = cli.ok(&[
            "image",
            "inspect",
            "team/app:prod",
            "--format",
            "{{.Id}}|{{json .Config.Cmd}}|{{json .Config.Labels}}|{{len .RootFS.Layers}}|{{.Os}}/{{.Architecture}}",
        ]);
        assert_eq!(
            inspect.trim(),
            format!("{app_id}|[\"/bin/sh\"]|{{\"team\":\"ci\"}}|2|linux/amd64")
        );
        // by id prefix (12 hex), and an unknown name in Docker's words
        let short = &app_id["sha256:".len().."sha256:".len() + 12];
        assert!(
            cli.ok(&["image", "inspect", short, "--format", "{{.Id}}"])
                .contains(&app_id)
        );
        let e = cli.fails(&["image", "inspect", "nope:1"]);
        assert!(e.contains("No such image: nope:1"), "{e}");

        // several images in the Docker 25+ layout, one untagged; then a tag moves
        let (multi, alpine_id, untagged_id) = multi_archive(dir.path());
        let out = cli.ok(&["load", "-i", multi.to_str().unwrap()]);
        assert!(out.contains("Loaded image: alpine:3.19"), "{out}");
        assert!(out.contains("Loaded image: alpine:latest"), "{out}");
        assert!(out.contains(&format!("Loaded image ID: {untagged_id}")), "{out}");
        cli.ok(&["tag", "alpine:3.19", "team/app:v1"]);
        let now = cli.images();
        assert!(now.contains(&format!("{alpine_id} team/app:v1")), "{now:?}");
        assert!(now.contains(&format!("{app_id} team/app:prod")), "{now:?}");
        assert!(now.contains(&format!("{untagged_id} <none>:<none>")), "{now:?}");
        let dangling = cli.ok(&["images", "-q", "--no-trunc", "--filter", "dangling=true"]);
        assert_eq!(dangling.trim(), untagged_id);
        let by_ref = cli.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}", "alpine"]);
        let mut by_ref: Vec<_> = by_ref.lines().collect();
        by_ref.sort();
        assert_eq!(by_ref, ["alpine:3.19", "alpine:latest"]);

        // rmi: a tag of an image with more tags only untags; the last tag deletes; by id deletes
        let out = cli.ok(&["rmi", "alpine:latest"]);
        assert!(out.contains("Untagged: alpine:latest"), "{out}");
        assert!(!out.contains("Deleted"), "{out}");
        let e = cli.fails(&["rmi", &alpine_id]);
        assert!(e.contains("force"), "{e}");
        let out = cli.ok(&["rmi", "team/app:prod"]);
        assert!(out.contains("Untagged: team/app:prod"), "{out}");
        assert!(out.contains(&format!("Deleted: {app_id}")), "{out}");
        let out = cli.ok(&["rmi", &untagged_id[7..19]]);
        assert!(out.contains(&format!("Deleted: {untagged_id}")), "{out}");
        assert_eq!(
            cli.images(),
            [format!("{alpine_id} alpine:3.19"), format!("{alpine_id} team/app:v1")]
        );
        let out = cli.ok(&["rmi", "-f", &alpine_id]);
        assert!(out.contains(&format!("Deleted: {alpine_id}")), "{out}");
        assert!(cli.images().is_empty());
        assert!(app.stored().await.is_empty(), "{:?}", app.stored().await);
    }
);

both!(
    docker_tenancy_and_runner_flow,
    config = |_: &mut strata_api::Config| {},
    |app: TestApp| async move {
        let dir = tempfile::tempdir().unwrap();
        let (archive, app_id) = app_archive(dir.path());
        let zst = compress(&archive, "zstd");
        let a = Cli::new(&app, "acme", "local", &token_rw(&app, "acme"));
        let b = Cli::new(&app, "bravo", "local", &token_rw(&app, "bravo"));
        a.ok(&["load", "-i", archive.to_str().unwrap()]);

        // organization B sees, tags and removes nothing of A's
        assert!(b.images().is_empty());
        let e = b.fails(&["image", "inspect", "team/app:v1"]);
        assert!(e.contains("No such image"), "{e}");
        let e = b.fails(&["tag", &app_id, "mine:1"]);
        assert!(e.contains("No such image"), "{e}");
        let e = b.fails(&["rmi", "team/app:v1"]);
        assert!(e.contains("No such image"), "{e}");
        // A's token in B's path: the same 403 as v1, in Docker's envelope
        let wrong = Cli::new(&app, "bravo", "local", &token_rw(&app, "acme"));
        let e = wrong.fails(&["images"]);
        assert!(!e.is_empty());
        // a region that does not exist (or is closed to the caller) is 404
        let hidden = Cli::new(&app, "acme", "nowhere", &token_rw(&app, "acme"));
        hidden.fails(&["version"]);
        let res = app
            .client
            .get(format!("{}/docker/acme/nowhere/v1.43/images/json", app.direct))
            .bearer_auth(token_rw(&app, "acme"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        let body: Value = res.json().await.unwrap();
        assert!(body["message"].as_str().is_some(), "{body}");
        assert!(body.get("error").is_none(), "Docker's envelope, not v1's: {body}");
        // read-only tokens cannot load
        let ro = app.token_with(&["acme"], "images:read", false);
        let res = app
            .client
            .post(format!("{}/docker/acme/local/images/load?quiet=1", app.direct))
            .bearer_auth(&ro)
            .header("content-type", "application/x-tar")
            .body(std::fs::read(&zst).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);

        // GitLab Runner: POST a .tar.zst with quiet=1, take the Loaded image line, tag, inspect
        let t = token_rw(&app, "bravo");
        let base = format!("{}/docker/bravo/local/v1.43", app.direct);
        let res = app
            .client
            .post(format!("{base}/images/load?quiet=1"))
            .bearer_auth(&t)
            .header("content-type", "application/x-tar")
            .body(std::fs::read(&zst).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let text = res.text().await.unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 1, "quiet: only the Loaded image line: {text}");
        let loaded = lines[0]["stream"].as_str().unwrap();
        let name = loaded.strip_prefix("Loaded image: ").unwrap().trim();
        assert_eq!(name, "team/app:v1");
        let res = app
            .client
            .post(format!(
                "{base}/images/{name}/tag?repo=registry.example/ci/helper&tag=x86_64-v17"
            ))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let res = app
            .client
            .get(format!("{base}/images/registry.example/ci/helper:x86_64-v17/json"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let inspect: Value = res.json().await.unwrap();
        assert_eq!(inspect["Id"], app_id);
        assert_eq!(inspect["Config"]["Cmd"], json!(["/bin/sh"]));

        // a hostile archive: an error line after 200, as Docker sends it, and nothing kept
        let evil = dir.path().join("evil");
        std::fs::create_dir_all(&evil).unwrap();
        std::fs::write(
            evil.join("manifest.json"),
            json!([{"Config": "../../etc/passwd", "RepoTags": ["evil:1"], "Layers": []}]).to_string(),
        )
        .unwrap();
        let evil_tar = dir.path().join("evil.tar");
        run(Command::new("tar")
            .arg("-C")
            .arg(&evil)
            .arg("-cf")
            .arg(&evil_tar)
            .arg("."));
        let before = app.stored().await;
        let out = b.output(&["load", "-i", evil_tar.to_str().unwrap()]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("leaves the archive"), "{err}");
        assert_eq!(app.stored().await, before);
        let staging = app.cfg.data_dir.join("staging");
        let left = std::fs::read_dir(&staging).map(|d| d.flatten().count()).unwrap_or(0);
        assert_eq!(left, 0, "the load's staging is gone");
    }
);

async fn post_load(app: &TestApp, base: &str, token: &str, body: Vec<u8>) -> String {
    let res = app
        .client
        .post(format!("{base}/docker/acme/local/images/load?quiet=1"))
        .bearer_auth(token)
        .header("content-type", "application/x-tar")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.text().await.unwrap()
}

// Two replicas loading the same archive at once keep one image; two replicas moving the same tag
// at once leave exactly one holder.
both!(
    docker_replicas_race,
    config = |_: &mut strata_api::Config| {},
    |app: TestApp| async move {
        let dir = tempfile::tempdir().unwrap();
        let (archive, app_id) = app_archive(dir.path());
        let (multi, alpine_id, _) = multi_archive(dir.path());
        let mut other = app.sibling(app.cfg.clone()).await;
        let t = token_rw(&app, "acme");
        let bytes = std::fs::read(&archive).unwrap();
        let (a, b) = tokio::join!(
            post_load(&app, &app.direct, &t, bytes.clone()),
            post_load(&app, &other.direct, &t, bytes.clone())
        );
        assert!(a.contains("Loaded image: team/app:v1"), "{a}");
        assert!(b.contains("Loaded image: team/app:v1"), "{b}");
        post_load(&app, &other.direct, &t, std::fs::read(&multi).unwrap()).await;
        let cli = Cli::new(&app, "acme", "local", &t);
        let ids: std::collections::BTreeSet<String> = cli
            .images()
            .iter()
            .map(|l| l.split(' ').next().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 3, "one image per id: {ids:?}");
        assert_eq!(app.stored().await.len(), 3, "no second copy stored");

        for round in 0..10 {
            let tag = |base: String, id: String| {
                let c = app.client.clone();
                let t = t.clone();
                async move {
                    let res = c
                        .post(format!(
                            "{base}/docker/acme/local/images/{id}/tag?repo=race&tag=r{round}"
                        ))
                        .bearer_auth(&t)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), StatusCode::CREATED);
                }
            };
            tokio::join!(
                tag(app.direct.clone(), app_id.clone()),
                tag(other.direct.clone(), alpine_id.clone())
            );
            let holders: Vec<String> = cli
                .images()
                .into_iter()
                .filter(|l| l.ends_with(&format!(" race:r{round}")))
                .collect();
            assert_eq!(holders.len(), 1, "{holders:?}");
        }
        other.stop().await;
    }
);

// `docker import` (GitLab Runner's older fallback): a rootfs tar, plain or xz, becomes a
// single-layer image with the changes applied.
both!(
    docker_import_tar_and_xz,
    config = |_: &mut strata_api::Config| {},
    |app: TestApp| async move {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/hello"), "#!/bin/sh\necho hi\n").unwrap();
        let tar = dir.path().join("rootfs.tar");
        run(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg("."));
        let xz = dir.path().join("rootfs.tar.xz");
        let out = Command::new("xz").arg("-c").arg(&tar).output().unwrap();
        std::fs::write(&xz, out.stdout).unwrap();
        let cli = Cli::new(&app, "acme", "local", &token_rw(&app, "acme"));
        let id = cli.ok(&[
            "import",
            "--change",
            "CMD [\"/bin/hello\"]",
            "--change",
            "ENV GREETING=hi",
            "--change",
            "WORKDIR /bin",
            tar.to_str().unwrap(),
            "ci/rootfs:1",
        ]);
        let id = id.trim();
        assert!(id.starts_with("sha256:"), "{id}");
        let inspect = cli.ok(&[
            "image",
            "inspect",
            "ci/rootfs:1",
            "--format",
            "{{.Id}}|{{json .Config.Cmd}}|{{json .Config.Env}}|{{.Config.WorkingDir}}|{{len .RootFS.Layers}}",
        ]);
        assert_eq!(
            inspect.trim(),
            format!("{id}|[\"/bin/hello\"]|[\"GREETING=hi\"]|/bin|1")
        );
        let id2 = cli.ok(&["import", xz.to_str().unwrap(), "ci/rootfs:xz"]);
        assert!(id2.trim().starts_with("sha256:"));
        let e = cli.fails(&["import", "--change", "RUN rm -rf /", tar.to_str().unwrap()]);
        assert!(e.contains("RUN is not supported"), "{e}");
        let mut tags: Vec<String> = cli
            .images()
            .iter()
            .map(|l| l.split(' ').nth(1).unwrap().to_owned())
            .collect();
        tags.sort();
        assert_eq!(tags, ["ci/rootfs:1", "ci/rootfs:xz"]);
    }
);

/// Hostile archives made with Python's tarfile (which writes what GNU tar refuses to).
fn hostile_archives(dir: &Path) -> Vec<(&'static str, PathBuf, &'static str)> {
    let script = r#"
import hashlib, io, json, sys, tarfile
out = sys.argv[1]
def tar(path, members):
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as t:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "sym":
                info.type = tarfile.SYMTYPE; info.linkname = data; t.addfile(info)
            else:
                info.size = len(data); t.addfile(info, io.BytesIO(data))
tar(out + "/dotdot.tar", [("../evil", "file", b"x")])
tar(out + "/absolute.tar", [("/etc/evil", "file", b"x")])
tar(out + "/long.tar", [("a" * 300, "file", b"x")])
tar(out + "/link.tar", [("out", "sym", "../../etc/passwd"), ("out/passwd", "file", b"x")])
layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w", format=tarfile.GNU_FORMAT) as t:
    info = tarfile.TarInfo("../escape"); info.size = 1; t.addfile(info, io.BytesIO(b"x"))
layer = layer.getvalue()
config = json.dumps({"architecture": "amd64", "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}).encode()
tar(out + "/evil-layer.tar", [("layer.tar", "file", layer), ("config.json", "file", config),
    ("manifest.json", "file", json.dumps([{"Config": "config.json", "RepoTags": ["evil:1"], "Layers": ["layer.tar"]}]).encode())])
"#;
    run(Command::new("python3").arg("-c").arg(script).arg(dir));
    // a zstd bomb: 64 MiB of zeros in a few KiB, over the test's 4 MiB limit
    let src = dir.join("bomb-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("zeros"), vec![0u8; 64 << 20]).unwrap();
    let bomb = dir.join("bomb.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-cf")
        .arg(&bomb)
        .arg("zeros"));
    let bomb = compress(&bomb, "zstd");
    vec![
        ("a member with ..", dir.join("dotdot.tar"), "contains \"..\""),
        ("an absolute member", dir.join("absolute.tar"), "is an absolute path"),
        ("an over-long name", dir.join("long.tar"), "longer than 255 bytes"),
        (
            "a link out of the archive",
            dir.join("link.tar"),
            "points outside the archive",
        ),
        (
            "a layer writing through ..",
            dir.join("evil-layer.tar"),
            "contains \"..\"",
        ),
        ("a zstd bomb", bomb, "once decompressed"),
    ]
}

// Every hostile archive: a 200 whose stream carries the error, as Docker sends it, and nothing
// kept in staging, the database or storage.
both!(
    docker_hostile_loads_keep_nothing,
    config = |c: &mut strata_api::Config| c.limits.max_image_bytes = 4 << 20,
    |app: TestApp| async move {
        let dir = tempfile::tempdir().unwrap();
        let t = token_rw(&app, "acme");
        for (what, file, says) in hostile_archives(dir.path()) {
            let res = app
                .client
                .post(format!("{}/docker/acme/local/images/load", app.direct))
                .bearer_auth(&t)
                .header("content-type", "application/x-tar")
                .body(std::fs::read(&file).unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{what}");
            let text = res.text().await.unwrap();
            let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
            let msg = last["errorDetail"]["message"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: {text}"));
            assert!(msg.contains(says), "{what}: {msg}");
            assert_eq!(last["error"], last["errorDetail"]["message"]);
            assert!(app.stored().await.is_empty(), "{what}: storage");
            let staging = app.cfg.data_dir.join("staging");
            let left = std::fs::read_dir(&staging).map(|d| d.flatten().count()).unwrap_or(0);
            assert_eq!(left, 0, "{what}: staging");
        }
        let cli = Cli::new(&app, "acme", "local", &t);
        assert!(cli.images().is_empty());
        let v1 = expect_status(
            app.req(
                Method::GET,
                &format!("{}/images", app.v1("acme", "local")),
                &app.token(&["acme"]),
            )
            .send()
            .await
            .unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(v1, json!([]));
    }
);
