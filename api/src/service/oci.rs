//! OCI registry pulls: a kind on the job runner (service::jobs) that turns an image from a
//! registry into an ext4 root filesystem.
//!
//! `check` parses nothing itself (the command holds a parsed reference) but resolves the
//! manifest through the hardened fetcher, so the registry's address passes the URL-import policy,
//! a refused or missing manifest is the caller's 422 `fetch-failed` and a missing platform their
//! 422 `platform-not-found`. The job's spec pins the manifest digest check saw, so the attempt
//! (and a takeover after a crash) pulls exactly that. Credentials are the job's secret: in
//! memory only.
//!
//! `run` pulls into a staging directory of the job's own (`strata_providers::oci`), then streams
//! the ext4 file into storage through the ingest pipeline (hashed on the way, checked to be ext4),
//! and removes the staging directory on every path, dropped futures included. The filesystem it
//! built is then kept in the OCI cache (a hard link) under the manifest digest, platform and size:
//! the next pull of the same image, by any tenant that can resolve that manifest, stores it
//! without pulling or building, verified against the digest it was stored with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_domain::DomainError;
use strata_domain::command::OciSource;
use strata_domain::image::{Architecture, ImportPhase, ReasonCode};
use strata_domain::reference::{Platform, Reference};
use strata_providers::archive::ArchiveLimits;
use strata_providers::blobcache::BlobCache;
use strata_providers::flatten::FlattenLimits;
use strata_providers::oci::{Phase, Progress, PullError, PullSpec, Pulled, Rootfs, pull_rootfs};
use strata_providers::registry::{Login, RegistryClient, RegistryError, default_platform};
use strata_providers::rootfs::Ext4Fs;
use strata_providers::{FetchError, Fetcher, IngestError, IngestLimits, Ingested, ingest};

use crate::config::Config;
use crate::service::jobs::{Attempt, Checked, Failure, ImportKind, Produced, Reporter};

/// The smallest filesystem a pull builds (as `strata_providers::ext4` does without `sizeBytes`).
const MIN_FS_BYTES: u64 = 64 << 20;

/// An OCI pull request, from the create-image command.
pub struct OciRequest {
    pub source: OciSource,
    pub architecture: Architecture,
}

/// What the job row keeps (never the credentials) and what check learnt for provenance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciSpec {
    /// `registry/repository@<manifest digest>`: what check resolved, pulled as is.
    pub pinned: String,
    pub platform: String,
    #[serde(default)]
    pub size_bytes: Option<u64>,
    pub manifest_digest: String,
    pub config_digest: String,
    /// Sum of the compressed layer sizes.
    pub layer_bytes: u64,
    /// `os` from the image config, if it says.
    #[serde(default)]
    pub os: Option<String>,
}

pub struct OciImport {
    client: RegistryClient,
    cache: BlobCache,
    staging: PathBuf,
    limits: FlattenLimits,
    max_layer_bytes: u64,
    tool_timeout: Duration,
}

impl OciImport {
    pub fn new(cfg: &Config) -> anyhow::Result<Self> {
        let policy = crate::service::imports::fetch_policy(&cfg.imports)?;
        let oci = &cfg.oci;
        let cache_dir = oci.cache_dir.clone().unwrap_or_else(|| cfg.data_dir.join("oci-cache"));
        let cache = BlobCache::open(&cache_dir, oci.cache_max_bytes)
            .map_err(|e| anyhow::anyhow!("oci.cache_dir {}: {e}", cache_dir.display()))?;
        let staging = oci
            .staging_dir
            .clone()
            .unwrap_or_else(|| cfg.data_dir.join("oci-staging"));
        std::fs::create_dir_all(&staging).map_err(|e| anyhow::anyhow!("oci.staging_dir {}: {e}", staging.display()))?;
        Ok(Self {
            client: RegistryClient::new(Fetcher::new(policy), oci.insecure_registries.clone()),
            cache,
            staging,
            limits: FlattenLimits {
                layer: ArchiveLimits {
                    max_unpacked_bytes: oci.max_unpacked_bytes,
                    max_entries: oci.max_entries,
                    max_path_len: 4096,
                },
                max_tree_bytes: oci.max_unpacked_bytes,
            },
            max_layer_bytes: oci.max_layer_bytes,
            tool_timeout: Duration::from_secs(oci.tool_timeout_secs.max(1)),
        })
    }
}

fn login(source: &OciSource) -> Option<Login> {
    source.credentials.as_ref().map(|c| Login {
        username: c.username.clone(),
        password: c.password.clone(),
    })
}

/// What the caller of the synchronous check sees; transport detail goes to the log only.
fn sync_error(e: RegistryError) -> DomainError {
    match e {
        RegistryError::Fetch(_, Some(FetchError::NotAllowed(reason))) => DomainError::UrlNotAllowed { reason },
        RegistryError::PlatformNotFound { wanted, available } => DomainError::PlatformNotFound { wanted, available },
        other => {
            tracing::info!(error = %other.log_detail(), "OCI import check: resolving the manifest failed");
            // the public text only: `Fetch` and `Invalid` display their message without detail
            DomainError::FetchFailed {
                reason: other.to_string(),
            }
        }
    }
}

#[async_trait::async_trait]
impl ImportKind for OciImport {
    const KIND: &'static str = "oci";
    type Request = OciRequest;
    type Spec = OciSpec;
    type Secret = Login;

    /// Address policy, manifest, platform, config: nothing is created when any fails.
    async fn check(&self, req: OciRequest) -> Result<Checked<OciSpec, Login>, DomainError> {
        let src = req.source;
        let platform = src
            .platform
            .clone()
            .unwrap_or_else(|| default_platform(req.architecture.as_str()));
        let login = login(&src);
        let mut session = self.client.session(&src.reference, login.clone());
        let resolved = session.resolve(&src.reference, &platform).await.map_err(sync_error)?;
        let config = session.config(&resolved).await.map_err(sync_error)?;
        let os = serde_json::from_slice::<strata_providers::oci::ImageConfig>(&config)
            .ok()
            .and_then(|c| c.os)
            .filter(|o| !o.is_empty() && o.len() <= 63 && !o.chars().any(char::is_control));
        let pinned = format!(
            "{}/{}@{}",
            src.reference.registry(),
            src.reference.repository(),
            resolved.manifest_digest
        );
        Ok(Checked {
            spec: OciSpec {
                pinned,
                platform: resolved.platform.clone(),
                size_bytes: src.size_bytes,
                manifest_digest: resolved.manifest_digest.to_string(),
                config_digest: resolved.config_digest.to_string(),
                layer_bytes: resolved.layer_bytes(),
                os,
            },
            secret: login,
            reference: Some(src.given),
        })
    }

    async fn run(&self, attempt: &Attempt<'_>, spec: OciSpec, secret: Option<&Login>) -> Result<Produced, Failure> {
        let job = attempt.job.id;
        let permanent_internal = |what: &str, e: &dyn std::fmt::Display| Failure {
            retryable: false,
            ..Failure::internal(job, what, e)
        };
        let reference = Reference::parse(&spec.pinned).map_err(|e| permanent_internal("the stored reference", &e))?;
        let platform = Platform::parse(&spec.platform).map_err(|e| permanent_internal("the stored platform", &e))?;
        let max = attempt.max_bytes;
        // Quotas are refused before anything is pulled or built when even the smallest
        // filesystem this image can give does not fit; charged for real when it is ready.
        let at_least = spec
            .size_bytes
            .unwrap_or_else(|| (spec.layer_bytes.saturating_mul(3) / 2).max(MIN_FS_BYTES));
        if spec.size_bytes.is_some_and(|s| s > max) {
            return Err(Failure::permanent(
                ReasonCode::TooLarge,
                format!("sizeBytes {at_least} is over the limit of {max} bytes"),
            ));
        }
        attempt.bytes_fit(at_least).await?;

        let staging = Staging::create(&self.staging, job).map_err(|e| Failure::internal(job, "staging", &e))?;
        let reporter = attempt.reporter();
        let pull = || {
            reporter.set_phase(ImportPhase::Resolving);
            pull_rootfs(
                &self.client,
                &self.cache,
                PullSpec {
                    reference: &reference,
                    platform: &platform,
                    login: secret.cloned(),
                    size_bytes: spec.size_bytes,
                    work_dir: &staging.dir,
                    limits: self.limits.clone(),
                    max_layer_bytes: self.max_layer_bytes.min(max),
                    cancel: staging.cancel.clone(),
                    tool_timeout: self.tool_timeout,
                },
                Arc::new(PhaseReporter(reporter.clone())),
            )
        };
        let pulled = pull().await.map_err(|e| pull_failure(job, e))?;
        let (pulled, done) = match self.store(attempt, &spec, pulled).await? {
            Stored::Done(both) => *both,
            Stored::DamagedCache => {
                // the cached filesystem was dropped: this pull builds it anew
                let pulled = pull().await.map_err(|e| pull_failure(job, e))?;
                match self.store(attempt, &spec, pulled).await? {
                    Stored::Done(both) => *both,
                    Stored::DamagedCache => {
                        return Err(Failure::internal(
                            job,
                            "storing",
                            &"a fresh build was taken for a cached one",
                        ));
                    }
                }
            }
        };
        if let Rootfs::Built { path, .. } = &pulled.rootfs {
            // remembered for the next pull of the same image: a hard link, no copy
            let (cache, key, sha, path) = (
                self.cache.clone(),
                pulled.build_key.clone(),
                done.sha256.clone(),
                path.clone(),
            );
            let size = done.size;
            let remembered = tokio::task::spawn_blocking(move || cache.remember_built(&key, &path, &sha, size)).await;
            if let Ok(Err(e)) = remembered {
                tracing::warn!(%job, error = %e, "keeping the built filesystem in the OCI cache failed");
            }
        }
        drop(staging);
        let from_cache = matches!(pulled.rootfs, Rootfs::Cached { .. });
        tracing::info!(%job, size = done.size, cache_hits = pulled.cache_hits, from_cache, "OCI pull stored");
        Ok(Produced::Blob {
            size: done.size,
            sha256: done.sha256,
        })
    }
}

/// What storing a pulled filesystem came to.
enum Stored {
    Done(Box<(Pulled, Ingested<()>)>),
    /// The cached filesystem did not match the digest it was stored with; it is dropped.
    DamagedCache,
}

impl OciImport {
    /// Checks the pulled filesystem against the job and the quota and stores it through the
    /// ingest pipeline (hashed, checked to be ext4, a cached one against its digest).
    async fn store(&self, attempt: &Attempt<'_>, spec: &OciSpec, pulled: Pulled) -> Result<Stored, Failure> {
        let (job, max) = (attempt.job.id, attempt.max_bytes);
        if pulled.resolved.manifest_digest.as_str() != spec.manifest_digest {
            return Err(Failure::permanent(
                ReasonCode::InvalidArchive,
                "the registry served another manifest than the one checked",
            ));
        }
        let size = pulled.rootfs.size();
        if size > max {
            return Err(Failure::permanent(
                ReasonCode::TooLarge,
                format!("the filesystem is {size} bytes, over the limit of {max} bytes"),
            ));
        }
        attempt.bytes_fit(size).await?;

        let reporter = attempt.reporter();
        reporter.set_phase(ImportPhase::Storing);
        reporter.progress(0, size);
        let (file, expected) = match &pulled.rootfs {
            Rootfs::Built { path, .. } => {
                let file = std::fs::File::open(path)
                    .map_err(|e| Failure::internal(job, "opening the built filesystem", &e))?;
                (file, None)
            }
            Rootfs::Cached { file, sha256, .. } => (
                file.try_clone()
                    .map_err(|e| Failure::internal(job, "opening the cached filesystem", &e))?,
                Some(sha256.clone()),
            ),
        };
        let from_cache = expected.is_some();
        let limits = IngestLimits {
            max_bytes: max,
            expected_sha256: expected,
        };
        let stream = tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), 1 << 20);
        let ledger = attempt.ledger();
        let stored = ingest(
            &attempt.region.store,
            &attempt.key,
            stream,
            &Ext4Fs,
            &limits,
            Some(&ledger),
            attempt.progress_fn(),
        )
        .await;
        match stored {
            Ok(done) => Ok(Stored::Done(Box::new((pulled, done)))),
            Err(IngestError::ChecksumMismatch { .. } | IngestError::Rejected(_)) if from_cache => {
                tracing::warn!(%job, "a cached root filesystem did not match its digest; dropped it");
                let (cache, key) = (self.cache.clone(), pulled.build_key.clone());
                let _ = tokio::task::spawn_blocking(move || cache.forget_built(&key)).await;
                Ok(Stored::DamagedCache)
            }
            Err(e) => Err(store_failure(job, e)),
        }
    }
}

fn store_failure(job: uuid::Uuid, e: IngestError<std::io::Error, &'static str>) -> Failure {
    match e {
        IngestError::Rejected(r) => Failure::permanent(ReasonCode::Internal, r.to_string()),
        IngestError::TooLarge { limit } => Failure::permanent(
            ReasonCode::TooLarge,
            format!("the filesystem exceeds the limit of {limit} bytes"),
        ),
        IngestError::ChecksumMismatch { .. } => Failure::internal(job, "storing", &"checksum mismatch"),
        IngestError::Source(e) => Failure::internal(job, "reading the built filesystem", &e),
        IngestError::Storage(e) => Failure::internal(job, "storage", &e),
    }
}

fn pull_failure(job: uuid::Uuid, e: PullError) -> Failure {
    match e {
        PullError::Registry(RegistryError::Fetch(reason, detail)) => {
            if let Some(d) = detail {
                tracing::warn!(%job, error = %d, "OCI import: the registry failed");
            }
            Failure::retryable(ReasonCode::FetchFailed, reason)
        }
        PullError::Registry(e @ RegistryError::PlatformNotFound { .. }) => {
            Failure::permanent(ReasonCode::FetchFailed, e.to_string())
        }
        PullError::Registry(RegistryError::Invalid(reason)) | PullError::Invalid(reason) => {
            Failure::permanent(ReasonCode::InvalidArchive, reason)
        }
        PullError::TooLarge(reason) => Failure::permanent(ReasonCode::TooLarge, reason),
        PullError::Cancelled => Failure::retryable(ReasonCode::Internal, "the pull was interrupted"),
        PullError::Internal(detail) => Failure::internal(job, "the OCI pull", &detail),
    }
}

/// Relays the provider's phases and layer progress to the attempt's heartbeat.
struct PhaseReporter(Reporter);

impl Progress for PhaseReporter {
    fn phase(&self, phase: Phase) {
        self.0.set_phase(match phase {
            Phase::Resolving => ImportPhase::Resolving,
            Phase::Pulling => ImportPhase::Pulling,
            Phase::Flattening => ImportPhase::Flattening,
            Phase::Building => ImportPhase::Building,
        });
    }

    fn bytes(&self, done: u64, total: u64) {
        self.0.progress(done, total);
    }
}

/// The job's own staging directory: emptied of what a dead attempt left when created, removed
/// (and blocking work told to stop) when dropped, whatever ended the attempt.
struct Staging {
    dir: PathBuf,
    cancel: Arc<AtomicBool>,
}

impl Staging {
    fn create(root: &Path, job: uuid::Uuid) -> std::io::Result<Self> {
        let dir = root.join(job.to_string());
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => tracing::info!(%job, "removed an earlier attempt's OCI staging directory"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            cancel: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "removing OCI staging failed");
        }
    }
}
