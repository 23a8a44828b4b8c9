//! A real OCI registry (Debian's `docker-registry`) on 127.0.0.1, and images for it built as OCI
//! layouts by the tests (tar, gzip) and pushed with `skopeo`. Used by the registry client tests
//! here and by OCI pull tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use sha2::{Digest as _, Sha256};

pub struct Registry {
    child: Child,
    pub addr: String,
    pub storage: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Registry {
    /// Starts a registry; with `login`, it asks for basic auth (htpasswd, bcrypt).
    pub async fn start(login: Option<(&str, &str)>) -> Registry {
        Self::start_with(login, None).await
    }

    /// Starts a registry that sends clients to `tokens` for a bearer token (the registry's
    /// token flow), trusting the tokens it signs.
    pub async fn start_with_tokens(tokens: &TokenServer) -> Registry {
        Self::start_with(None, Some(tokens)).await
    }

    async fn start_with(login: Option<(&str, &str)>, tokens: Option<&TokenServer>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let storage = dir.path().join("storage");
        let auth = match login {
            None if tokens.is_some() => {
                let t = tokens.unwrap();
                format!(
                    "auth:\n  token:\n    realm: http://{}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                    t.addr,
                    t.cert.display()
                )
            }
            Some((user, password)) => {
                let htpasswd = dir.path().join("htpasswd");
                let line = run(Command::new("htpasswd").args(["-Bbn", user, password]));
                std::fs::write(&htpasswd, line.trim()).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
            None => String::new(),
        };
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
                storage.display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        let addr = format!("127.0.0.1:{port}");
        let reg = Registry {
            child,
            addr: addr.clone(),
            storage,
            _dir: dir,
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                return reg;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("docker-registry did not start on {addr}");
    }

    /// The file the registry keeps a blob in, to tamper with.
    pub fn blob_file(&self, hex: &str) -> PathBuf {
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

/// One layer, from a directory tree the test fills.
pub struct BuiltLayer {
    pub gz: Vec<u8>,
    pub diff_id: String,
}

/// `tar` of `dir` (numeric owners as on disk), gzipped: what a layer blob is.
pub fn layer_from_dir(dir: &Path) -> BuiltLayer {
    let out = Command::new("tar")
        .args(["--sort=name", "--numeric-owner", "-C"])
        .arg(dir)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
    layer_from_tar(&out.stdout)
}

pub fn layer_from_tar(tar: &[u8]) -> BuiltLayer {
    use std::io::Write;
    let mut gz = Command::new("gzip")
        .args(["-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = gz.stdin.take().unwrap();
    let input = tar.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = gz.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    BuiltLayer {
        gz: out.stdout,
        diff_id: format!("sha256:{}", sha2_hex(tar)),
    }
}

fn sha2_hex(b: &[u8]) -> String {
    let d = Sha256::digest(b);
    d.iter().map(|x| format!("{x:02x}")).collect()
}

/// An image to push: layers and the platform its config states.
pub struct ImageSpec<'a> {
    pub layers: &'a [BuiltLayer],
    pub os: &'a str,
    pub architecture: &'a str,
    pub config: serde_json::Value,
}

impl<'a> ImageSpec<'a> {
    /// linux/amd64 with an empty config.
    pub fn amd64(layers: &'a [BuiltLayer]) -> Self {
        ImageSpec {
            layers,
            os: "linux",
            architecture: "amd64",
            config: json!({}),
        }
    }
}

/// Two small layers: `etc/os-release`, then `hello`.
pub fn small_layers() -> Vec<BuiltLayer> {
    let a = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(a.path().join("etc")).unwrap();
    std::fs::write(a.path().join("etc/os-release"), "ID=test\n").unwrap();
    let b = tempfile::tempdir().unwrap();
    std::fs::write(b.path().join("hello"), "hi\n").unwrap();
    vec![layer_from_dir(a.path()), layer_from_dir(b.path())]
}

/// A registry client that may reach `reg` on loopback, over plain HTTP.
pub fn loopback_client(reg: &Registry) -> strata_providers::registry::RegistryClient {
    let policy = strata_providers::FetchPolicy {
        allow_hosts: vec!["127.0.0.1".parse().unwrap()],
        connect_timeout: Duration::from_secs(5),
        peek_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(10),
        ..strata_providers::FetchPolicy::default()
    };
    strata_providers::registry::RegistryClient::new(strata_providers::Fetcher::new(policy), vec![reg.addr.clone()])
}

pub struct Pushed {
    /// The digest of what the tag points at (a manifest, or the index for several platforms).
    pub digest: String,
    /// Per platform: (manifest digest, config digest, layer digests).
    pub manifests: Vec<(String, String, Vec<String>)>,
}

/// Writes an OCI layout with one manifest per spec (an index when more than one) and pushes it
/// to `registry` as `repo:tag` with skopeo.
pub fn push(
    registry: &Registry,
    repo: &str,
    tag: &str,
    images: &[ImageSpec<'_>],
    login: Option<(&str, &str)>,
) -> Pushed {
    let dir = tempfile::tempdir().unwrap();
    let pushed = write_layout(dir.path(), tag, images);
    let mut cmd = Command::new("skopeo");
    cmd.args([
        "copy",
        "--quiet",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
    ]);
    if let Some((u, p)) = login {
        cmd.arg(format!("--dest-creds={u}:{p}"));
    }
    cmd.arg(format!("oci:{}:{tag}", dir.path().display()))
        .arg(format!("docker://{}/{repo}:{tag}", registry.addr));
    run(&mut cmd);
    pushed
}

/// Writes an OCI image layout at `layout` with one manifest per spec (an index when more than
/// one), tagged `tag` in index.json.
pub fn write_layout(layout: &Path, tag: &str, images: &[ImageSpec<'_>]) -> Pushed {
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let put = |bytes: &[u8]| -> (String, u64) {
        let h = sha2_hex(bytes);
        std::fs::write(layout.join("blobs/sha256").join(&h), bytes).unwrap();
        (format!("sha256:{h}"), bytes.len() as u64)
    };
    let mut manifests = Vec::new();
    let mut descriptors = Vec::new();
    for img in images {
        let layer_descs: Vec<_> = img
            .layers
            .iter()
            .map(|l| {
                let (d, size) = put(&l.gz);
                json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": size})
            })
            .collect();
        let mut config = img.config.clone();
        config["os"] = json!(img.os);
        config["architecture"] = json!(img.architecture);
        config["rootfs"] =
            json!({"type": "layers", "diff_ids": img.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()});
        let (config_digest, config_size) = put(serde_json::to_vec(&config).unwrap().as_slice());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": layer_descs,
        });
        let (md, msize) = put(serde_json::to_vec(&manifest).unwrap().as_slice());
        manifests.push((
            md.clone(),
            config_digest,
            layer_descs
                .iter()
                .map(|d| d["digest"].as_str().unwrap().to_owned())
                .collect(),
        ));
        descriptors.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md, "size": msize,
            "platform": {"os": img.os, "architecture": img.architecture},
        }));
    }
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let top = if descriptors.len() == 1 {
        let mut d = descriptors[0].clone();
        d.as_object_mut().unwrap().remove("platform");
        d
    } else {
        let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": descriptors});
        let (d, size) = put(serde_json::to_vec(&index).unwrap().as_slice());
        json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": size})
    };
    let mut top_ref = top.clone();
    top_ref["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [top_ref]})).unwrap(),
    )
    .unwrap();
    Pushed {
        digest: top["digest"].as_str().unwrap().to_owned(),
        manifests,
    }
}

const TOKEN_SERVICE: &str = "strata-test-registry";
const TOKEN_ISSUER: &str = "strata-test-token-issuer";

/// A registry token service on 127.0.0.1 (the Docker token flow): `GET /token?service&scope`
/// with basic credentials answers `{"token": JWT}`, an ES256 JWT with the signing certificate in
/// `x5c`, which the registry verifies against the same certificate (`rootcertbundle`). Wrong or
/// missing credentials get 401. Counts the tokens it issued.
pub struct TokenServer {
    pub addr: String,
    pub cert: PathBuf,
    pub issued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    pub async fn start(user: &str, password: &str) -> TokenServer {
        use base64::Engine as _;
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=strata-test-token",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert));
        let der = std::process::Command::new("openssl")
            .args(["x509", "-outform", "der", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);
        let signing = jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(&key).unwrap()).unwrap();
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = issued.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (signing, x5c, expected, counter) =
                    (signing.clone(), x5c.clone(), expected.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(req) = crate::upstream::read_request(&mut conn).await else {
                        return;
                    };
                    let authorized = req.authorization.as_deref() == Some(expected.as_str());
                    let url = reqwest::Url::parse(&format!("http://x{}", req.path)).unwrap();
                    let scopes: Vec<String> = url
                        .query_pairs()
                        .filter(|(k, _)| k == "scope")
                        .map(|(_, v)| v.into_owned())
                        .collect();
                    let reply = if !authorized || url.path() != "/token" {
                        "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
                    } else {
                        // grants what each scope asks: repository:NAME:ACTIONS
                        let access: Vec<serde_json::Value> = scopes
                            .iter()
                            .filter_map(|s| {
                                let mut parts = s.splitn(3, ':');
                                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                                Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
                            })
                            .collect();
                        let now = chrono::Utc::now().timestamp();
                        let claims = json!({
                            "iss": TOKEN_ISSUER, "sub": "puller", "aud": TOKEN_SERVICE,
                            "exp": now + 300, "nbf": now - 10, "iat": now,
                            "jti": uuid::Uuid::new_v4().to_string(), "access": access,
                        });
                        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
                        header.x5c = Some(vec![x5c]);
                        let token = jsonwebtoken::encode(&header, &claims, &signing).unwrap();
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let body = json!({"token": token}).to_string();
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    };
                    let _ = conn.write_all(reply.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        TokenServer {
            addr,
            cert,
            issued,
            _dir: dir,
        }
    }
}
