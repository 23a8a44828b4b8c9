//! An OCI registry pull turned into an ext4 root filesystem: resolve, pull layers through the
//! cache, flatten them in order, build ext4. Storing the result (and publishing the image) is
//! the import pipeline's job, like every other artifact's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::Deserialize;
use strata_domain::reference::{Platform, Reference};

use crate::blobcache::{BlobCache, CacheError};
use crate::fetch::FetchError;
use crate::flatten::FlattenLimits;
use crate::registry::{Login, RegistryClient, RegistryError, Resolved};
use crate::rootfs::{self, RootfsError, RootfsSpec};

/// Where a pull is, for `status.phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Resolving,
    Pulling,
    Flattening,
    Building,
}

/// Told what happens; called from the pulling task and from blocking threads.
pub trait Progress: Send + Sync {
    fn phase(&self, phase: Phase);
    /// Layer bytes pulled (or found in the cache) so far, of `total`.
    fn bytes(&self, done: u64, total: u64);
}

pub struct PullSpec<'a> {
    pub reference: &'a Reference,
    pub platform: &'a Platform,
    pub login: Option<Login>,
    /// The filesystem's size; `None`: content x 1.5, at least 64 MiB.
    pub size_bytes: Option<u64>,
    /// A directory of this job's own; everything here is removed by the caller afterwards. A
    /// caller that removes it while the pull runs (a dropped future) sets `cancel` first.
    pub work_dir: &'a Path,
    pub limits: FlattenLimits,
    /// Largest sum of compressed layer sizes accepted.
    pub max_layer_bytes: u64,
    pub cancel: Arc<AtomicBool>,
    pub tool_timeout: Duration,
}

/// What the image config says, as far as Strata keeps it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub architecture: Option<String>,
}

#[derive(Debug)]
pub struct Pulled {
    pub resolved: Resolved,
    pub config: ImageConfig,
    /// The config as the registry sent it (digest-checked).
    pub config_bytes: bytes::Bytes,
    pub rootfs: Rootfs,
    /// What the filesystem is remembered under in the cache: [`build_key`].
    pub build_key: String,
    /// Layers that came from the cache.
    pub cache_hits: usize,
}

/// The filesystem a pull produced.
#[derive(Debug)]
pub enum Rootfs {
    /// Built by this pull, in the work directory. Once stored (and hashed on the way), the caller
    /// hands it to [`BlobCache::remember_built`] so the next pull of the same image skips the build.
    Built { path: PathBuf, size: u64 },
    /// Built earlier from the same manifest, platform and size: read from the cache, NOT
    /// verified. The caller stores it with `sha256` as the expected checksum, and on a mismatch
    /// calls [`BlobCache::forget_built`] and pulls again.
    Cached {
        file: std::fs::File,
        size: u64,
        sha256: String,
    },
}

impl Rootfs {
    pub fn size(&self) -> u64 {
        match self {
            Rootfs::Built { size, .. } | Rootfs::Cached { size, .. } => *size,
        }
    }
}

/// Changes whenever the flattener or the filesystem builder would build a different filesystem
/// from the same layers: old cache entries are then never used again (and age out).
const BUILDER_VERSION: &str = "strata-rootfs/1";

/// What a filesystem built from a manifest is remembered under: the builder, the manifest digest
/// (which pins the config and every layer digest), the platform and the asked-for size.
pub fn build_key(manifest_digest: &str, platform: &str, size_bytes: Option<u64>) -> String {
    use sha2::Digest as _;
    let size = size_bytes.map_or_else(|| "auto".to_owned(), |s| s.to_string());
    hex::encode(sha2::Sha256::digest(
        format!("{BUILDER_VERSION}\n{manifest_digest}\n{platform}\n{size}").as_bytes(),
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A layer or config that does not match its digest, or a hostile layer.
    #[error("{0}")]
    Invalid(String),
    /// The layers or the filesystem are over a limit; the message says by how much.
    #[error("{0}")]
    TooLarge(String),
    #[error("cancelled")]
    Cancelled,
    /// The server's fault (staging disk, tools): for the log.
    #[error("{0}")]
    Internal(String),
}

impl From<CacheError> for PullError {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::Mismatch { .. } => PullError::Invalid(e.to_string()),
            CacheError::Fetch { digest, source } => PullError::Registry(RegistryError::Fetch(
                format!("pulling layer {digest} failed: {}", source.public_reason()),
                Some(source),
            )),
            CacheError::Io(io) => PullError::Internal(format!("layer cache: {io}")),
        }
    }
}

impl From<RootfsError> for PullError {
    fn from(e: RootfsError) -> Self {
        match e {
            RootfsError::Invalid(r) => PullError::Invalid(r),
            RootfsError::TooLarge(r) => PullError::TooLarge(r),
            RootfsError::Cancelled => PullError::Cancelled,
            RootfsError::Internal(r) => PullError::Internal(r),
        }
    }
}

fn blocking_failed(e: tokio::task::JoinError) -> PullError {
    PullError::Internal(format!("blocking task failed: {e}"))
}

/// Runs the whole pull. Nothing is stored; `spec.work_dir` holds the result and the caller
/// removes it on every path.
pub async fn pull_rootfs(
    client: &RegistryClient,
    cache: &BlobCache,
    spec: PullSpec<'_>,
    progress: Arc<dyn Progress>,
) -> Result<Pulled, PullError> {
    progress.phase(Phase::Resolving);
    let mut session = client.session(spec.reference, spec.login.clone());
    let resolved = session.resolve(spec.reference, spec.platform).await?;
    let total = resolved.layer_bytes();
    if total > spec.max_layer_bytes {
        return Err(PullError::TooLarge(format!(
            "the image's layers are {total} bytes, over the limit of {} ({} over)",
            spec.max_layer_bytes,
            total - spec.max_layer_bytes
        )));
    }
    let config_bytes = session.config(&resolved).await?;
    let config: ImageConfig = serde_json::from_slice(&config_bytes)
        .map_err(|_| PullError::Invalid("the image config is not valid JSON".into()))?;

    let build_key = build_key(resolved.manifest_digest.as_str(), &resolved.platform, spec.size_bytes);
    let cached = {
        let (cache, key) = (cache.clone(), build_key.clone());
        tokio::task::spawn_blocking(move || cache.built(&key))
            .await
            .map_err(blocking_failed)?
            .map_err(|e| PullError::Internal(format!("layer cache: {e}")))?
    };
    if let Some(hit) = cached {
        progress.bytes(total, total);
        let resolved_layers = resolved.layers.len();
        return Ok(Pulled {
            resolved,
            config,
            config_bytes,
            rootfs: Rootfs::Cached {
                file: hit.file,
                size: hit.size,
                sha256: hit.sha256,
            },
            build_key,
            cache_hits: resolved_layers,
        });
    }

    progress.phase(Phase::Pulling);
    progress.bytes(0, total);
    let mut files = Vec::with_capacity(resolved.layers.len());
    let mut done = 0u64;
    let mut cache_hits = 0;
    for layer in &resolved.layers {
        if spec.cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(PullError::Cancelled);
        }
        let base = done;
        let p = progress.clone();
        let mut seen = 0u64;
        let blob = cache
            .get_or_fetch(
                &layer.digest,
                layer.size,
                async || {
                    session
                        .blob(&layer.digest)
                        .await
                        .map_err(|e| FetchError::Body(e.log_detail()))
                },
                |n| {
                    seen += n;
                    p.bytes(base + seen, total);
                },
            )
            .await?;
        cache_hits += usize::from(blob.hit);
        done += layer.size;
        // the open file, even if the cache evicts its path meanwhile
        files.push(blob.file);
    }

    progress.phase(Phase::Flattening);
    let (work_dir, limits, size_bytes) = (spec.work_dir.to_path_buf(), spec.limits.clone(), spec.size_bytes);
    let (cancel, tool_timeout, p) = (spec.cancel.clone(), spec.tool_timeout, progress.clone());
    let (path, size) = tokio::task::spawn_blocking(move || {
        let built = rootfs::build(&RootfsSpec {
            layers: &files,
            work_dir: &work_dir,
            limits,
            size_bytes,
            cancel: &cancel,
            tool_timeout,
            on_building: &|| p.phase(Phase::Building),
        });
        // The owner of the work directory removes it when the pull is dropped, and then sets
        // `cancel` first: whatever this thread wrote there since (it may still have been
        // applying a layer) goes now, after its last write.
        if cancel.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = std::fs::remove_dir_all(&work_dir);
            return Err(RootfsError::Cancelled);
        }
        built
    })
    .await
    .map_err(blocking_failed)??;
    Ok(Pulled {
        resolved,
        config,
        config_bytes,
        rootfs: Rootfs::Built { path, size },
        build_key,
        cache_hits,
    })
}
