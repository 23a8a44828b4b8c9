//! An OCI registry pull turned into an ext4 root filesystem: resolve, pull layers through the
//! cache, flatten them in order, build ext4. Storing the result (and publishing the image) is
//! the import pipeline's job, like every other artifact's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::Deserialize;
use strata_domain::reference::{Platform, Reference};

use crate::archive::ArchiveError;
use crate::blobcache::{BlobCache, CacheError};
use crate::ext4::{self, Ext4Error, Ext4Spec};
use crate::fetch::FetchError;
use crate::flatten::{FlattenLimits, Flattener};
use crate::registry::{Login, RegistryClient, RegistryError, Resolved};

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
    /// A directory of this job's own; everything here is removed by the caller afterwards.
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
    pub ext4: PathBuf,
    pub ext4_size: u64,
    /// Layers that came from the cache.
    pub cache_hits: usize,
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

impl From<ArchiveError> for PullError {
    fn from(e: ArchiveError) -> Self {
        match e {
            ArchiveError::Io(io) => PullError::Internal(format!("flattening: {io}")),
            other => PullError::Invalid(other.to_string()),
        }
    }
}

impl From<Ext4Error> for PullError {
    fn from(e: Ext4Error) -> Self {
        match e {
            Ext4Error::TooSmall { .. } => PullError::TooLarge(e.to_string()),
            Ext4Error::UnsupportedName(_) => PullError::Invalid(e.to_string()),
            Ext4Error::Cancelled => PullError::Cancelled,
            other => PullError::Internal(other.to_string()),
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
        files.push(blob);
    }

    progress.phase(Phase::Flattening);
    let tree = spec.work_dir.join("tree");
    std::fs::create_dir_all(&tree).map_err(|e| PullError::Internal(format!("staging: {e}")))?;
    let limits = spec.limits.clone();
    let cancel = spec.cancel.clone();
    let tree_for_flatten = tree.clone();
    let flat = tokio::task::spawn_blocking(move || -> Result<_, PullError> {
        let mut f = Flattener::new(&tree_for_flatten, limits);
        for blob in &files {
            if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(PullError::Cancelled);
            }
            // the open file, even if the cache evicted its path meanwhile
            f.apply_from(std::io::BufReader::with_capacity(256 * 1024, &blob.file))?;
        }
        Ok(f.finish())
    })
    .await
    .map_err(blocking_failed)??;

    progress.phase(Phase::Building);
    let out = spec.work_dir.join("rootfs.ext4");
    let entries = flat.tree_entries();
    let (size_bytes, cancel, timeout, out2) = (spec.size_bytes, spec.cancel.clone(), spec.tool_timeout, out.clone());
    let built = tokio::task::spawn_blocking(move || {
        let built = ext4::build(&Ext4Spec {
            tree: &tree,
            entries: &entries,
            size_bytes,
            out: &out2,
            cancel: &cancel,
            tool_timeout: timeout,
        });
        // the tree is as large as the image: free it now, whatever happened
        let _ = std::fs::remove_dir_all(&tree);
        built
    })
    .await
    .map_err(blocking_failed)??;
    Ok(Pulled {
        resolved,
        config,
        config_bytes,
        ext4: out,
        ext4_size: built.size_bytes,
        cache_hits,
    })
}
