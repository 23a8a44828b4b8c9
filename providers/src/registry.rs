//! A small OCI distribution client for pulls: resolve a reference to one image manifest (choosing
//! the platform from an index), then fetch its config and layers.
//!
//! Every request goes through the hardened [`Fetcher`], so a registry host (and every redirect,
//! and every token realm) passes the same address policy as URL imports. Plain HTTP only to
//! registries listed as insecure. Credentials are used for the registry's basic or token flow
//! and never appear in errors. Everything the registry sends is bounded: manifest and config
//! sizes, the number of layers and index entries, and every blob is checked against its digest
//! and size by the caller that stores it (see `blobcache`).

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use strata_domain::reference::{Digest, Platform, Reference};

use crate::fetch::{FetchError, Fetcher, Source};

pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
pub const MAX_CONFIG_BYTES: usize = 8 << 20;
pub const MAX_LAYERS: usize = 256;
pub const MAX_INDEX_ENTRIES: usize = 512;
const MAX_TOKEN_BYTES: usize = 64 << 10;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<DescriptorPlatform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DescriptorPlatform {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl DescriptorPlatform {
    fn shown(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

/// A layer to pull, checked: a sha256 digest, a size, a known media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub digest: Digest,
    pub size: u64,
    pub compression: LayerCompression,
}

/// One image manifest, resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The digest of the manifest that was chosen (for an index: the platform's manifest).
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub config_size: u64,
    pub layers: Vec<Layer>,
    /// The platform chosen from an index, or asked for when the reference named a manifest.
    pub platform: String,
}

impl Resolved {
    pub fn layer_bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

/// What can go wrong, in words a tenant may see (no addresses, no transport detail: that is in
/// [`RegistryError::log_detail`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The registry refused or lacks the image (401/403/404 ...), or could not be reached.
    #[error("{0}")]
    Fetch(String, #[source] Option<FetchError>),
    #[error("the platform {wanted} is not in the image index; it has: {}", available.join(", "))]
    PlatformNotFound { wanted: String, available: Vec<String> },
    /// The registry sent something that is not a valid manifest, config or blob.
    #[error("{0}")]
    Invalid(String),
}

impl RegistryError {
    /// The transport detail, for the log only.
    pub fn log_detail(&self) -> String {
        match self {
            RegistryError::Fetch(m, Some(e)) => format!("{m}: {e}"),
            other => other.to_string(),
        }
    }

    fn fetch(what: &str, e: FetchError) -> Self {
        RegistryError::Fetch(format!("{what}: {}", e.public_reason()), Some(e))
    }
}

fn invalid(m: impl Into<String>) -> RegistryError {
    RegistryError::Invalid(m.into())
}

/// Registry login, never stored or logged.
#[derive(Clone)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Login(<redacted>)")
    }
}

#[derive(Clone)]
pub struct RegistryClient {
    fetcher: Fetcher,
    /// Registries (`host[:port]`) spoken to over plain HTTP.
    insecure: Vec<String>,
}

/// One session with one repository: remembers the token the registry gave.
pub struct Session<'a> {
    client: &'a RegistryClient,
    base: String,
    repository: String,
    login: Option<Login>,
    token: Option<String>,
}

impl RegistryClient {
    /// Time limits come from the fetcher's policy (connect, idle); the caller bounds the whole
    /// pull.
    pub fn new(fetcher: Fetcher, insecure: Vec<String>) -> Self {
        Self { fetcher, insecure }
    }

    pub fn session<'a>(&'a self, reference: &Reference, login: Option<Login>) -> Session<'a> {
        let registry = match reference.registry() {
            // Docker Hub's API lives elsewhere than its name.
            "docker.io" => "registry-1.docker.io",
            r => r,
        };
        let scheme = if self.insecure.iter().any(|i| i == registry) {
            "http"
        } else {
            "https"
        };
        Session {
            client: self,
            base: format!("{scheme}://{registry}/v2/{}", reference.repository()),
            repository: reference.repository().to_owned(),
            login,
            token: None,
        }
    }
}

impl Session<'_> {
    fn source(&self, url: &str) -> Result<Source, RegistryError> {
        Source::parse(url).map_err(|e| RegistryError::fetch("bad registry URL", e))
    }

    /// GET with the registry's auth dance: on a 401, follow its `WWW-Authenticate` challenge
    /// (a bearer token from its realm, or basic credentials) once, then retry.
    async fn get(&mut self, url: &str, accept: Option<&str>) -> Result<reqwest::Response, RegistryError> {
        let mut headers = HeaderMap::new();
        if let Some(a) = accept.and_then(|a| HeaderValue::from_str(a).ok()) {
            headers.insert(ACCEPT, a);
        }
        let src = self.source(url)?;
        let with_login = |s: Source, login: &Option<Login>| match login {
            Some(l) if self.token.is_none() => s.with_credentials(&l.username, &l.password),
            _ => s,
        };
        let first = self
            .client
            .fetcher
            .get_with(&with_login(src.clone(), &self.login), &headers, self.token.as_deref())
            .await
            .map_err(|e| RegistryError::fetch("cannot reach the registry", e))?;
        if first.status().as_u16() != 401 {
            return Ok(first);
        }
        let challenge = first
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if let Some(params) = strip_scheme(&challenge, "bearer") {
            self.token = Some(self.fetch_token(&params).await?);
            let src = self.source(url)?;
            return self
                .client
                .fetcher
                .get_with(&src, &headers, self.token.as_deref())
                .await
                .map_err(|e| RegistryError::fetch("cannot reach the registry", e));
        }
        // Basic: the login was already sent; a second 401 means it is wrong or missing.
        Ok(first)
    }

    async fn fetch_token(&self, challenge: &str) -> Result<String, RegistryError> {
        let params = parse_challenge(challenge);
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| invalid("the registry asked for a token but named no realm"))?;
        let mut url = url::Url::parse(&realm).map_err(|_| invalid("the registry's token realm is not a URL"))?;
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in &params {
                if k == "service" || k == "scope" {
                    q.append_pair(k, v);
                }
            }
            if !params.iter().any(|(k, _)| k == "scope") {
                q.append_pair("scope", &format!("repository:{}:pull", self.repository));
            }
        }
        let mut src = self.source(url.as_str())?;
        if let Some(l) = &self.login {
            src = src.with_credentials(&l.username, &l.password);
        }
        let resp = self
            .client
            .fetcher
            .get_with(&src, &HeaderMap::new(), None)
            .await
            .map_err(|e| RegistryError::fetch("cannot reach the registry's token service", e))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(RegistryError::Fetch(
                format!("the registry's token service answered HTTP {status}"),
                None,
            ));
        }
        let body = read_limited(resp, MAX_TOKEN_BYTES, "token").await?;
        #[derive(Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token = serde_json::from_slice(&body).map_err(|_| invalid("the token service sent no JSON token"))?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty() && t.len() < MAX_TOKEN_BYTES)
            .ok_or_else(|| invalid("the token service sent no token"))
    }

    /// Fetches a manifest or index by tag or digest; returns its bytes and their digest,
    /// checked against `expect` when the reference named one.
    async fn manifest(&mut self, reference: &str, expect: Option<&Digest>) -> Result<(Bytes, Digest), RegistryError> {
        let url = format!("{}/manifests/{reference}", self.base);
        let accept = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].join(", ");
        let resp = self.get(&url, Some(&accept)).await?;
        let status = resp.status().as_u16();
        if status != 200 {
            let what = match status {
                401 | 403 => "the registry refused access (check the credentials)".to_owned(),
                404 => format!("the registry has no manifest {reference}"),
                s => format!("the registry answered HTTP {s} for the manifest"),
            };
            return Err(RegistryError::Fetch(what, None));
        }
        let body = read_limited(resp, MAX_MANIFEST_BYTES, "manifest").await?;
        let digest = Digest::from_sha256_hex(&hex::encode(Sha256::digest(&body))).map_err(|_| invalid("digest"))?;
        if let Some(e) = expect
            && e != &digest
        {
            return Err(invalid(format!("the manifest's digest is {digest}, not {e}")));
        }
        Ok((body, digest))
    }

    /// Resolves the reference to one image manifest for `platform`.
    pub async fn resolve(&mut self, reference: &Reference, platform: &Platform) -> Result<Resolved, RegistryError> {
        let (body, digest) = self
            .manifest(reference.manifest_reference(), reference.digest())
            .await?;
        let raw: RawManifest = serde_json::from_slice(&body).map_err(|_| invalid("the manifest is not valid JSON"))?;
        if let Some(list) = raw.manifests {
            if list.len() > MAX_INDEX_ENTRIES {
                return Err(invalid(format!(
                    "the index lists more than {MAX_INDEX_ENTRIES} manifests"
                )));
            }
            let chosen = choose(&list, platform).ok_or_else(|| RegistryError::PlatformNotFound {
                wanted: platform.to_string(),
                available: {
                    let mut v: Vec<String> = list
                        .iter()
                        .filter_map(|d| d.platform.as_ref().map(DescriptorPlatform::shown))
                        .filter(|p| !p.starts_with("unknown/"))
                        .collect();
                    v.sort();
                    v.dedup();
                    v
                },
            })?;
            let shown = chosen
                .platform
                .as_ref()
                .map_or_else(|| platform.to_string(), DescriptorPlatform::shown);
            let want = Digest::parse(&chosen.digest)
                .map_err(|_| invalid("the index names a manifest without a sha256 digest"))?;
            let (body, digest) = self.manifest(want.as_str(), Some(&want)).await?;
            let raw: RawManifest =
                serde_json::from_slice(&body).map_err(|_| invalid("the platform's manifest is not valid JSON"))?;
            if raw.manifests.is_some() {
                return Err(invalid("an index inside an index is not supported"));
            }
            return image_manifest(raw, digest, shown);
        }
        image_manifest(raw, digest, platform.to_string())
    }

    /// Opens a blob for streaming. The caller verifies digest and size as it reads.
    pub async fn blob(
        &mut self,
        digest: &Digest,
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes, FetchError>>, RegistryError> {
        let url = format!("{}/blobs/{digest}", self.base);
        let resp = self.get(&url, None).await?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(RegistryError::Fetch(
                format!("the registry answered HTTP {status} for blob {digest}"),
                None,
            ));
        }
        Ok(resp
            .bytes_stream()
            .map(|r| r.map_err(|e| FetchError::Body(e.without_url().to_string())))
            .boxed())
    }

    /// Fetches and checks the image config (small: read into memory, bounded).
    pub async fn config(&mut self, resolved: &Resolved) -> Result<Bytes, RegistryError> {
        if resolved.config_size > MAX_CONFIG_BYTES as u64 {
            return Err(invalid(format!("the image config is over {MAX_CONFIG_BYTES} bytes")));
        }
        let mut stream = self.blob(&resolved.config_digest).await?;
        let mut buf = Vec::with_capacity(resolved.config_size as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| RegistryError::fetch("reading the image config failed", e))?;
            if buf.len() + chunk.len() > resolved.config_size as usize {
                return Err(invalid("the image config is larger than its descriptor says"));
            }
            buf.extend_from_slice(&chunk);
        }
        let got = hex::encode(Sha256::digest(&buf));
        if buf.len() as u64 != resolved.config_size || got != resolved.config_digest.hex() {
            return Err(invalid("the image config does not match its digest"));
        }
        Ok(Bytes::from(buf))
    }
}

fn choose<'d>(list: &'d [Descriptor], want: &Platform) -> Option<&'d Descriptor> {
    let matches = |d: &&Descriptor, variant: bool| {
        d.platform.as_ref().is_some_and(|p| {
            p.os == want.os
                && p.architecture == want.architecture
                && (!variant || want.variant.is_none() || p.variant == want.variant)
        })
    };
    list.iter()
        .find(|d| matches(d, true))
        .or_else(|| list.iter().find(|d| matches(d, false) && want.variant.is_none()))
}

fn image_manifest(raw: RawManifest, digest: Digest, platform: String) -> Result<Resolved, RegistryError> {
    if raw.schema_version.is_some_and(|v| v != 2) {
        return Err(invalid("only schema version 2 manifests are supported"));
    }
    if let Some(mt) = raw.media_type.as_deref()
        && mt != OCI_MANIFEST
        && mt != DOCKER_MANIFEST
    {
        return Err(invalid(format!("unsupported manifest media type {mt}")));
    }
    let config = raw.config.ok_or_else(|| invalid("the manifest has no config"))?;
    let layers = raw.layers.ok_or_else(|| invalid("the manifest has no layers"))?;
    if layers.len() > MAX_LAYERS {
        return Err(invalid(format!("the image has more than {MAX_LAYERS} layers")));
    }
    let config_digest =
        Digest::parse(&config.digest).map_err(|_| invalid("the config descriptor has no sha256 digest"))?;
    let layers = layers
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let compression = match l.media_type.as_str() {
                "application/vnd.oci.image.layer.v1.tar" | "application/vnd.docker.image.rootfs.diff.tar" => {
                    LayerCompression::None
                }
                "application/vnd.oci.image.layer.v1.tar+gzip" | "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
                    LayerCompression::Gzip
                }
                "application/vnd.oci.image.layer.v1.tar+zstd" => LayerCompression::Zstd,
                other => return Err(invalid(format!("layer {i} has an unsupported media type {other:?}"))),
            };
            let digest = Digest::parse(&l.digest).map_err(|_| invalid(format!("layer {i} has no sha256 digest")))?;
            Ok(Layer {
                digest,
                size: l.size,
                compression,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Resolved {
        manifest_digest: digest,
        config_digest,
        config_size: config.size,
        layers,
        platform,
    })
}

async fn read_limited(resp: reqwest::Response, max: usize, what: &str) -> Result<Bytes, RegistryError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(invalid(format!("the {what} is over {max} bytes")));
    }
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            RegistryError::fetch(
                &format!("reading the {what} failed"),
                FetchError::Body(e.without_url().to_string()),
            )
        })?;
        if buf.len() + chunk.len() > max {
            return Err(invalid(format!("the {what} is over {max} bytes")));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// `Bearer realm="...",service="..."` -> `realm="...",service="..."` for scheme `bearer`.
fn strip_scheme(challenge: &str, scheme: &str) -> Option<String> {
    let c = challenge.trim();
    let (s, rest) = c.split_once(char::is_whitespace)?;
    s.eq_ignore_ascii_case(scheme).then(|| rest.trim().to_owned())
}

/// Parses `k="v",k2=v2` (RFC 7235 auth-params), quoted strings with `\` escapes.
fn parse_challenge(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_owned();
        }
        out.push((key.trim().to_ascii_lowercase(), value));
        if out.len() > 16 {
            break;
        }
    }
    out
}

/// The OCI platform a Strata architecture pulls by default.
pub fn default_platform(architecture: &str) -> Platform {
    let arch = match architecture {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    Platform {
        os: "linux".into(),
        architecture: arch.into(),
        variant: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let p = parse_challenge(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        );
        assert_eq!(p[0], ("realm".into(), "https://auth.example/token".into()));
        assert_eq!(p[1].1, "registry.example");
        assert_eq!(p[2].1, "repository:a/b:pull");
        assert_eq!(
            parse_challenge(r#"realm="a\"b", x=y"#),
            vec![("realm".into(), "a\"b".into()), ("x".into(), "y".into())]
        );
        assert!(parse_challenge("").is_empty());
        assert_eq!(strip_scheme("Bearer realm=x", "bearer").as_deref(), Some("realm=x"));
        assert_eq!(strip_scheme("Basic realm=x", "bearer"), None);
    }

    #[test]
    fn platforms_are_chosen_from_an_index() {
        let d = |os: &str, arch: &str, v: Option<&str>| Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 1,
            platform: Some(DescriptorPlatform {
                os: os.into(),
                architecture: arch.into(),
                variant: v.map(str::to_owned),
            }),
        };
        let list = vec![
            d("linux", "amd64", None),
            d("linux", "arm64", Some("v8")),
            d("linux", "arm", Some("v7")),
        ];
        let p = |s: &str| Platform::parse(s).expect("platform");
        assert_eq!(
            choose(&list, &p("linux/amd64")).map(|d| d.platform.clone()),
            Some(list[0].platform.clone())
        );
        assert!(choose(&list, &p("linux/arm64")).is_some());
        assert!(choose(&list, &p("linux/arm64/v8")).is_some());
        assert!(choose(&list, &p("linux/arm/v6")).is_none());
        assert!(choose(&list, &p("windows/amd64")).is_none());
    }
}
