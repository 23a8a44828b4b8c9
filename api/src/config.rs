//! Typed, layered configuration: built-in defaults, then the TOML file, then `STRATA__SECTION__KEY`
//! environment variables, then command-line flags. Secrets are `SecretString`s: they never print.
//! A leaf module: it imports nothing of the application; what the application refuses at start
//! is checked by `app::check_config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the embedded defaults keep their state: SQLite file, blobs, development key.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub imports: ImportsConfig,
    pub quotas: QuotaConfig,
    pub sweeper: SweeperConfig,
    pub log: LogConfig,
    pub kernels: KernelsConfig,
    /// Downloadable kernel bundles operators offer (`[[kernel_catalog]]`); more may come from
    /// `kernels.catalog_file`.
    pub kernel_catalog: Vec<KernelCatalogEntry>,
    /// OCI registry pulls.
    pub oci: OciConfig,
    /// Global kernels and images every region (or the listed ones) should have (`[[defaults]]`),
    /// imported when missing on start and by `POST /api/v1/regions/{regionID}/defaults:ensure`.
    pub defaults: Vec<DefaultArtifact>,
    /// Empty means one region `local`, open to all, on local disk under `data_dir/blobs`.
    pub regions: Vec<RegionConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// How long running requests may take to finish after a shutdown signal.
    pub shutdown_timeout_secs: u64,
    pub workers: Option<usize>,
    /// How long a client may take to send a request's headers.
    pub request_header_timeout_secs: u64,
    /// How long an idle keep-alive connection stays open.
    pub keep_alive_secs: u64,
    /// How long the server waits for a client to go away after it has answered and closed
    /// (also how long a refused request's unread body is discarded before the socket closes).
    pub disconnect_timeout_secs: u64,
    /// Connections served at once per worker. Default: derived from the open-file limit
    /// (`RLIMIT_NOFILE`), so excess connections wait in the listen backlog instead of failing
    /// with "too many open files".
    pub max_connections: Option<usize>,
    /// Serve `GET /metrics` only on this address (e.g. `127.0.0.1:9100`), not on `listen`; the
    /// probes `/healthz` and `/readyz` are answered there too (and still on `listen`).
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// `text` (human-readable, the default) or `json` (one object per line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://...`. Default: SQLite at `data_dir/strata.db`.
    #[serde(serialize_with = "ser_secret_opt")]
    pub url: Option<SecretString>,
    pub max_connections: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Required `iss` claim, when set.
    pub issuer: Option<String>,
    /// Required `aud` claim, when set.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// Trust the development HS256 key kept in `data_dir` (created on first start). Turn off in
    /// production and configure `keys` or `jwks_file`.
    pub dev_key: bool,
    pub keys: Vec<KeyConfig>,
    /// A JWKS document on disk; every key in it must name its `alg`.
    pub jwks_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Matched against the token's `kid` header when both are present.
    pub kid: Option<String>,
    /// Pinned algorithm: HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA.
    pub algorithm: String,
    /// HMAC secret (HS*). Prefer `secret_file` or the `STRATA__...` environment over the file.
    #[serde(default, serialize_with = "ser_secret_opt")]
    pub secret: Option<SecretString>,
    pub secret_file: Option<PathBuf>,
    /// PEM public key (RS*, PS*, ES*, EdDSA).
    pub public_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest image accepted, in bytes.
    pub max_image_bytes: u64,
    /// An upload that sends nothing for this long is aborted with 408.
    pub body_idle_timeout_secs: u64,
    /// Total time an upload body may take: this many seconds plus its size at
    /// `body_min_bytes_per_sec`; a slower upload is aborted with 408.
    pub body_base_secs: u64,
    pub body_min_bytes_per_sec: u64,
    /// How long an upload's lease (one per image, counted per organization) lasts without
    /// renewal: what a crashed process's uploads hold at most. Renewed while streaming.
    pub upload_lease_secs: u64,
    /// Largest request header section (request line plus every `name: value` line), in bytes;
    /// more is `431 headers-too-large`. actix-web itself cuts off at 128 KiB (the same 431).
    pub max_header_bytes: usize,
    /// Most header fields in one request; more is `431 headers-too-large`. actix-web itself
    /// cuts off at 96 (the same 431).
    pub max_header_fields: usize,
}

/// Per-organization limits in each region, with per-organization overrides. Global images
/// (owned by no organization) are not counted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    pub max_images: u64,
    pub max_bytes: u64,
    pub max_concurrent_imports: u64,
    /// Uploads in flight at once, per organization (across all replicas).
    pub max_concurrent_uploads: u64,
    pub organizations: std::collections::BTreeMap<String, QuotaOverride>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaOverride {
    pub max_images: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_concurrent_imports: Option<u64>,
    pub max_concurrent_uploads: Option<u64>,
}

/// The limits that apply to one organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub images: u64,
    pub bytes: u64,
    pub concurrent_imports: u64,
    pub concurrent_uploads: u64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            max_images: 10_000,
            max_bytes: 10 << 40,
            max_concurrent_imports: 4,
            max_concurrent_uploads: 8,
            organizations: Default::default(),
        }
    }
}

impl QuotaConfig {
    pub fn limits_for(&self, org: &str) -> Limits {
        let o = self.organizations.get(org).cloned().unwrap_or_default();
        Limits {
            images: o.max_images.unwrap_or(self.max_images),
            bytes: o.max_bytes.unwrap_or(self.max_bytes),
            concurrent_imports: o.max_concurrent_imports.unwrap_or(self.max_concurrent_imports),
            concurrent_uploads: o.max_concurrent_uploads.unwrap_or(self.max_concurrent_uploads),
        }
    }
}

/// The orphan sweeper: removes stored bytes no image refers to. Safe on every replica at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweeperConfig {
    pub enabled: bool,
    pub interval_secs: u64,
    /// Objects and staging files younger than this are never touched.
    pub grace_secs: u64,
    /// Recorded multipart uploads older than this are aborted: longer than any live upload runs.
    pub multipart_grace_secs: u64,
}

impl Default for SweeperConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 600,
            grace_secs: 3600,
            multipart_grace_secs: 86400,
        }
    }
}

/// Kernel uploads and the kernel catalog.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KernelsConfig {
    /// Largest vmlinux or bundle accepted (as sent), in bytes.
    pub max_bytes: u64,
    /// Where uploads are staged (hashed, checked, extracted) before they go to storage.
    /// Default: `data_dir/staging`.
    pub staging_dir: Option<PathBuf>,
    /// A JSON file with more catalog entries: an array of objects shaped like `[[kernel_catalog]]`.
    pub catalog_file: Option<PathBuf>,
}

impl Default for KernelsConfig {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            staging_dir: None,
            catalog_file: None,
        }
    }
}

/// One downloadable kernel bundle (tar, tar.gz, tar.zst or tar.xz with `vmlinux`, optional `initrd.img`
/// and `modules/`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KernelCatalogEntry {
    pub name: String,
    pub distro: Option<String>,
    pub architecture: String,
    pub version: String,
    pub url: String,
    /// Hex sha256 of the bundle as downloaded.
    pub sha256: String,
    #[serde(alias = "size_bytes")]
    pub size_bytes: u64,
    pub description: Option<String>,
}

/// OCI registry pulls. The registry's address passes the `[imports]` policy like a URL import's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OciConfig {
    /// Registries (`host[:port]`) spoken to over plain HTTP instead of HTTPS.
    pub insecure_registries: Vec<String>,
    /// The content-addressed layer cache. Default: `data_dir/oci-cache`.
    pub cache_dir: Option<PathBuf>,
    /// The cache's bound; least recently used layers are evicted beyond it.
    pub cache_max_bytes: u64,
    /// Where pulls flatten and build (removed after every attempt). Default: `data_dir/oci-staging`.
    pub staging_dir: Option<PathBuf>,
    /// Largest sum of compressed layer sizes, and of unpacked bytes, a pull accepts.
    pub max_layer_bytes: u64,
    pub max_unpacked_bytes: u64,
    /// Most entries over all layers.
    pub max_entries: u64,
    /// Longest mkfs.ext4, debugfs or e2fsck may run.
    pub tool_timeout_secs: u64,
}

impl Default for OciConfig {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            cache_dir: None,
            cache_max_bytes: 10 << 30,
            staging_dir: None,
            max_layer_bytes: 16 << 30,
            max_unpacked_bytes: 32 << 30,
            max_entries: 2_000_000,
            tool_timeout_secs: 1800,
        }
    }
}

/// What a default is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum DefaultKind {
    Kernel,
    Image,
}

/// A global artifact operators want in every region (`[[defaults]]`). Identified by `name` and
/// sha256: a global artifact of that name with the same sha256 is the default; one with another
/// sha256 is a conflict, reported and left alone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DefaultArtifact {
    pub kind: DefaultKind,
    pub name: String,
    /// Kernels only: a `[[kernel_catalog]]` entry (its URL, sha256, size, version and
    /// architecture are used).
    pub catalog: Option<String>,
    /// A kernel bundle, or a raw disk image; with `sha256`.
    pub url: Option<String>,
    /// Hex sha256 of what `url` serves; required with `url`.
    pub sha256: Option<String>,
    /// Default `x86_64` (for a catalog entry, the entry's).
    pub architecture: Option<String>,
    /// Kernels from a URL: the kernel version (required).
    pub version: Option<String>,
    pub description: Option<String>,
    /// Regions to keep it in; default every region.
    pub regions: Option<Vec<String>>,
}

/// URL imports: where the server may fetch from, and how import jobs run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportsConfig {
    /// Ports a URL may name (unless its host is in `allow_hosts`).
    pub allowed_ports: Vec<u16>,
    /// Hosts, addresses or CIDR networks never fetched from.
    pub deny_hosts: Vec<String>,
    /// Hosts, addresses or CIDR networks exempt from the address and port checks.
    pub allow_hosts: Vec<String>,
    pub connect_timeout_secs: u64,
    pub peek_timeout_secs: u64,
    /// Longest silence while copying.
    pub idle_timeout_secs: u64,
    /// Longest a whole copy may take.
    pub total_timeout_secs: u64,
    /// Attempts before an import is `failed`.
    pub max_attempts: u32,
    /// How long a claimed job stays with a process that stops renewing it.
    pub lease_secs: u64,
    /// How often idle workers look for jobs to take over.
    pub poll_interval_ms: u64,
    /// Imports one process runs at once.
    pub workers: usize,
}

impl Default for ImportsConfig {
    fn default() -> Self {
        Self {
            allowed_ports: vec![80, 443],
            deny_hosts: Vec::new(),
            allow_hosts: Vec::new(),
            connect_timeout_secs: 10,
            peek_timeout_secs: 15,
            idle_timeout_secs: 60,
            total_timeout_secs: 6 * 3600,
            max_attempts: 3,
            lease_secs: 30,
            poll_interval_ms: 1000,
            workers: 4,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    pub id: String,
    /// Allow-list of organizations; absent means open to every organization.
    pub organizations: Option<Vec<String>>,
    pub provider: ProviderConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ProviderConfig {
    Local {
        root: PathBuf,
    },
    /// S3 or an S3-compatible server. Credentials come from `*_file` (e.g. mounted secrets) or
    /// the standard `AWS_*` environment variables, never from this file in clear.
    S3 {
        bucket: String,
        /// For S3-compatible servers, e.g. `http://127.0.0.1:9000`.
        endpoint: Option<String>,
        #[serde(default = "default_s3_region")]
        region: String,
        /// Key prefix inside the bucket, so regions can share one.
        prefix: Option<String>,
        #[serde(default)]
        allow_http: bool,
        access_key_id_file: Option<PathBuf>,
        secret_access_key_file: Option<PathBuf>,
    },
}

fn default_s3_region() -> String {
    "us-east-1".into()
}

fn ser_secret_opt<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    use secrecy::ExposeSecret;
    // Only used to feed defaults back into figment; never for display.
    match v {
        Some(secret) => s.serialize_some(secret.expose_secret()),
        None => s.serialize_none(),
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            imports: ImportsConfig::default(),
            quotas: QuotaConfig::default(),
            sweeper: SweeperConfig::default(),
            log: LogConfig::default(),
            kernels: KernelsConfig::default(),
            kernel_catalog: Vec::new(),
            oci: OciConfig::default(),
            defaults: Vec::new(),
            regions: Vec::new(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            shutdown_timeout_secs: 30,
            workers: None,
            request_header_timeout_secs: 10,
            keep_alive_secs: 5,
            disconnect_timeout_secs: 1,
            max_connections: None,
            metrics_listen: None,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            leeway_secs: 30,
            dev_key: true,
            keys: Vec::new(),
            jwks_file: None,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_image_bytes: 64 << 30,
            body_idle_timeout_secs: 30,
            body_base_secs: 60,
            body_min_bytes_per_sec: 64 << 10,
            upload_lease_secs: 60,
            max_header_bytes: 32 * 1024,
            max_header_fields: 64,
        }
    }
}

/// Values given on the command line; they win over everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

impl Config {
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                anyhow::bail!("config file {} does not exist", path.display());
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig.merge(Env::prefixed("STRATA__").split("__"));
        if let Some(listen) = overrides.listen {
            fig = fig.merge(Serialized::default("server.listen", listen));
        }
        if let Some(dir) = &overrides.data_dir {
            fig = fig.merge(Serialized::default("data_dir", dir));
        }
        let cfg: Config = fig
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        Ok(cfg)
    }

    pub fn database_url(&self) -> SecretString {
        match &self.database.url {
            Some(url) => url.clone(),
            None => SecretString::from(format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("strata.db").display()
            )),
        }
    }

    /// The configured regions, or the embedded default.
    pub fn effective_regions(&self) -> Vec<RegionConfig> {
        if self.regions.is_empty() {
            vec![RegionConfig {
                id: "local".into(),
                organizations: None,
                provider: ProviderConfig::Local {
                    root: self.data_dir.join("blobs"),
                },
            }]
        } else {
            self.regions.clone()
        }
    }

    pub fn dev_key_path(&self) -> PathBuf {
        self.data_dir.join("dev-signing-key")
    }
}
