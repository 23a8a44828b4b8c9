//! Kernel files: staged on local disk (size-capped and hashed as they arrive), then copied into the
//! region's blob storage under `kernels/<kernel id>/<blob id>` (each file has its own blob id;
//! which blob is which file is recorded in the database).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use strata_domain::ids::BlobId;
use strata_domain::kernel::KernelId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::blob::{BlobStore, StorageError};
use crate::key::BlobKey;

/// Part size of kernel file writes (S3's minimum part is 5 MiB).
const PART: usize = 8 << 20;

impl BlobStore {
    /// A kernel file's object key: the typed [`BlobKey::Kernel`].
    pub fn kernel_key(kernel: KernelId, blob: BlobId) -> ObjectPath {
        BlobKey::kernel(kernel, blob).path()
    }

    /// Copies a staged file into storage. Nothing is visible under the key unless it completes.
    pub async fn put_kernel_file(&self, kernel: KernelId, blob: BlobId, file: &Path) -> Result<(), StorageError> {
        let key = Self::kernel_key(kernel, blob);
        let io = |e: std::io::Error| StorageError::Config(format!("reading a staged kernel file: {e}"));
        let mut f = tokio::fs::File::open(file).await.map_err(io)?;
        let upload = self.inner.put_multipart(&key).await?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match f.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(io(e));
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = w.wait_for_capacity(2).await {
                return Err(e.into());
            }
            w.write(&buf[..n]);
        }
        w.finish().await?;
        Ok(())
    }

    /// Every stored object under `kernels/` (for tests and the sweeper).
    pub async fn list_kernel_keys(&self) -> Result<Vec<String>, StorageError> {
        let mut out = Vec::new();
        let mut stream = self.inner.list(Some(&ObjectPath::from("kernels")));
        while let Some(meta) = stream.next().await {
            out.push(meta?.location.to_string());
        }
        Ok(out)
    }
}

/// A file on local disk that is removed when this value is dropped.
#[derive(Debug)]
pub struct StagedFile {
    pub path: PathBuf,
    pub size: u64,
    /// Lowercase hex sha256.
    pub sha256: String,
    /// The first bytes (up to the `head` length asked for), for format checks.
    pub head: Vec<u8>,
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StageError<E> {
    #[error("content exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("checksum mismatch: expected {expected}, received {actual}")]
    ChecksumMismatch { expected: String, actual: String },
    #[error("{0}")]
    Source(E),
    #[error("staging: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes a body to a fresh file in `dir`, stopping at `max_bytes`, hashing as it goes; checks
/// `expected_sha256` at the end. On any error nothing is left on disk.
pub async fn stage<S, E>(
    mut body: S,
    dir: &Path,
    max_bytes: u64,
    head_len: usize,
    expected_sha256: Option<&str>,
) -> Result<StagedFile, StageError<E>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    tokio::fs::create_dir_all(dir).await?;
    let path = dir.join(format!("stage-{}", uuid::Uuid::new_v4()));
    let mut staged = StagedFile {
        path,
        size: 0,
        sha256: String::new(),
        head: Vec::new(),
    };
    let mut f = tokio::fs::File::create(&staged.path).await?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(StageError::Source)?;
        staged.size += chunk.len() as u64;
        if staged.size > max_bytes {
            return Err(StageError::TooLarge { limit: max_bytes });
        }
        if staged.head.len() < head_len {
            let take = (head_len - staged.head.len()).min(chunk.len());
            staged.head.extend_from_slice(&chunk[..take]);
        }
        hasher.update(&chunk);
        f.write_all(&chunk).await?;
    }
    f.flush().await?;
    f.sync_all().await?;
    staged.sha256 = hex::encode(hasher.finalize());
    if let Some(expected) = expected_sha256
        && expected != staged.sha256
    {
        return Err(StageError::ChecksumMismatch {
            expected: expected.to_owned(),
            actual: std::mem::take(&mut staged.sha256),
        });
    }
    Ok(staged)
}
