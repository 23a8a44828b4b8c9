//! The `strata` binary itself: serve on port 0, token, migrate, openapi, config layering, SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::*;

const BIN: &str = env!("CARGO_BIN_EXE_strata");

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `strata serve ARGS` and waits for its "listening on" line.
pub(crate) fn serve(args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").args(args).stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    spawn_serve(cmd).0
}

/// Spawns a prepared `strata serve` command (its stdout is piped here) and waits for its
/// "listening on" line; returns the server and the rest of its stdout.
pub(crate) fn spawn_serve(mut cmd: Command) -> (Server, BufReader<ChildStdout>) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("strata starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let base = line
        .split("listening on ")
        .nth(1)
        .unwrap_or_else(|| panic!("no 'listening on' line: {line:?}"))
        .trim()
        .to_owned();
    (Server { child, base }, out)
}

pub(crate) fn strata(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "strata {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn serve_token_and_graceful_stop() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // the token command works before the server ever ran: it creates the development key
    let token = strata(&[
        "token",
        "--data-dir",
        d,
        "--org",
        "acme",
        "--scope",
        "images:read images:write",
    ])
    .trim()
    .to_owned();
    let mut server = serve(&["--listen", "127.0.0.1:0", "--data-dir", d], &[]);
    assert!(!server.base.ends_with(":0"), "{}", server.base);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("dev-signing-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(dir.path().join("strata.db").exists());
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/organizations/acme/regions/local/images", server.base);
    let res = client
        .post(&url)
        .bearer_auth(&token)
        .json(&json!({"name": "x", "source": {"type": "upload"}}))
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::CREATED).await;
    // scopes from --scope only
    let ro = strata(&["token", "--data-dir", d, "--org", "acme", "--scope", "images:read"])
        .trim()
        .to_owned();
    let res = client
        .post(&url)
        .bearer_auth(&ro)
        .json(&json!({"name": "y", "source": {"type": "upload"}}))
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::FORBIDDEN).await;
    // SIGTERM: a clean exit
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // restart on the same data: migrations are idempotent, data persisted
    let server = serve(&["--listen", "127.0.0.1:0", "--data-dir", d], &[]);
    let url = format!("{}/api/v1/organizations/acme/regions/local/images", server.base);
    let list = expect_status(
        client.get(&url).bearer_auth(&token).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn config_file_env_and_flags_layer() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let cfg = dir.path().join("strata.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
data_dir = "{d}/ignored"
[server]
listen = "127.0.0.1:1"
[limits]
max_image_bytes = 999999999
[[regions]]
id = "eu-1"
organizations = ["acme"]
[regions.provider]
kind = "local"
root = "{d}/eu-1"
"#
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    // flags beat env, env beats the file
    let server = serve(
        &["--config", c, "--listen", "127.0.0.1:0", "--data-dir", d],
        &[("STRATA__LIMITS__MAX_IMAGE_BYTES", "5000")],
    );
    let token = strata(&["token", "--config", c, "--data-dir", d, "--org", "acme"])
        .trim()
        .to_owned();
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/organizations/acme/regions/eu-1/images", server.base);
    let img = expect_status(
        client
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({"name": "x", "source": {"type": "upload"}}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let res = client
        .put(format!("{url}/{}/file", img["id"].as_str().unwrap()))
        .bearer_auth(&token)
        .header("content-type", "application/octet-stream")
        .body(strata_domain::disk_format::samples::raw_mbr(6000))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::PAYLOAD_TOO_LARGE, "too-large").await;
    let local = format!("{}/api/v1/organizations/acme/regions/local/images", server.base);
    expect_status(
        client.get(&local).bearer_auth(&token).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(!dir.path().join("ignored").exists());
}

#[test]
fn bad_config_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[server]\nlisten = \"nope\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid configuration"));
    std::fs::write(&cfg, "[database]\nurl = \"postgres://user:hunter2@127.0.0.1:1/x\"\n").unwrap();
    let out = Command::new(BIN)
        .args([
            "migrate",
            "--config",
            cfg.to_str().unwrap(),
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("hunter2"), "secret leaked: {err}");
}

#[tokio::test]
async fn migrate_and_openapi_commands() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(strata(&["migrate", "--data-dir", d]).contains("migrations applied"));
    assert!(strata(&["migrate", "--data-dir", d]).contains("migrations applied"));
    let url = fresh_pg_database().await;
    let out = Command::new(BIN)
        .args(["migrate"])
        .env("STRATA__DATABASE__URL", &url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let spec = strata(&["openapi"]);
    let committed =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json"))
            .unwrap();
    assert!(spec == committed, "`strata openapi` differs from openapi/openapi.json");
}

#[test]
fn check_config_validates_without_side_effects() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("never-created");
    let out = Command::new(BIN)
        .args(["serve", "--check-config", "--data-dir", d.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration ok"));
    assert!(!d.exists(), "--check-config must not create the data directory");
    let bad = [
        "[[regions]]\nid = \"x\"\n[regions.provider]\nkind = \"s3\"\nbucket = \"b\"\naccess_key_id_file = \"/nonexistent\"\n",
        "[[regions]]\nid = \"bad id!\"\n[regions.provider]\nkind = \"local\"\nroot = \"/tmp/x\"\n",
        "[imports]\nallow_hosts = [\"not a host!\"]\n",
        "[auth]\ndev_key = false\n",
        "[database]\nurl = \"mysql://x\"\n",
        "[[auth.keys]]\nalgorithm = \"HS256\"\nsecret = \"short\"\n",
        "[server]\nnope = 1\n",
    ];
    for toml in bad {
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, toml).unwrap();
        let out = Command::new(BIN)
            .args([
                "serve",
                "--check-config",
                "--config",
                f.to_str().unwrap(),
                "--data-dir",
                d.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(!out.status.success(), "accepted: {toml}");
        assert!(!String::from_utf8_lossy(&out.stderr).trim().is_empty());
    }
}

/// Replicas starting together on a fresh PostgreSQL database must not trip over each other's
/// migrations.
#[tokio::test]
async fn concurrent_migrations_on_postgres() {
    let url = fresh_pg_database().await;
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(BIN)
                .args(["migrate"])
                .env("STRATA__DATABASE__URL", &url)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
