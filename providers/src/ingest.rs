//! The one streaming pipeline every way of getting bytes into Strata goes through (uploads, URL
//! imports, and later kernel artifacts, archives, ext4 builds): inspect the head with the
//! [`Inspector`] of the artifact being stored, then stream to storage while hashing (on a thread
//! of its own, beside the copy) and counting, with a size cap; on any failure the partial object
//! is aborted.

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use strata_domain::disk_format::{self, INSPECT_LEN, PartitionTable, Rejected};
use strata_domain::ids::{BlobId, ImageId};

use crate::blob::{BlobStore, StorageError};
use crate::key::BlobKey;

/// Decides from the first bytes whether content is the artifact being stored (a raw disk, a
/// kernel image, an archive, an ext4 filesystem), before a byte of it is written.
pub trait Inspector: Send + Sync {
    /// What the inspection found, returned with the stored object.
    type Found: Send;
    /// Why the content was refused; shown to the caller.
    type Rejection: std::fmt::Display + std::fmt::Debug + Send;
    /// How many leading bytes [`Self::inspect`] wants (it gets fewer when the content is shorter).
    fn head_len(&self) -> usize;
    fn inspect(&self, head: &[u8]) -> Result<Self::Found, Self::Rejection>;
}

/// A whole bootable disk, raw, with an MBR or GPT (domain::disk_format).
#[derive(Debug, Clone, Copy, Default)]
pub struct RawDisk;

impl Inspector for RawDisk {
    type Found = PartitionTable;
    type Rejection = Rejected;
    fn head_len(&self) -> usize {
        INSPECT_LEN
    }
    fn inspect(&self, head: &[u8]) -> Result<PartitionTable, Rejected> {
        disk_format::inspect(head)
    }
}

#[derive(Debug, Clone)]
pub struct IngestLimits {
    pub max_bytes: u64,
    /// Lowercase hex sha256 the content must have.
    pub expected_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested<F = PartitionTable> {
    pub size: u64,
    pub sha256: String,
    /// What the inspector found.
    pub found: F,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError<E, R = Rejected> {
    #[error("refused by the inspector: {0}")]
    Rejected(R),
    #[error("content exceeds {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("checksum mismatch")]
    ChecksumMismatch { expected: String, actual: String },
    #[error("reading the source failed: {0}")]
    Source(E),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Where multipart upload ids are recorded while uploads are open, so that an upload left by a
/// process that died can be found and aborted by another (takeover, sweeper).
#[async_trait::async_trait]
pub trait UploadLedger: Send + Sync {
    /// Called before any data goes into the upload of `key`.
    async fn record(&self, key: &BlobKey, upload_id: &str) -> Result<(), StorageError>;
    /// [`Self::record`] for an image's blob.
    async fn started(&self, image: ImageId, blob: BlobId, upload_id: &str) -> Result<(), StorageError> {
        self.record(&BlobKey::image(image, blob), upload_id).await
    }
    /// Called once the upload is completed or aborted.
    async fn ended(&self, upload_id: &str);
}

/// Bytes handed to the hashing thread at once: a small-chunked body must not cost a thread
/// wake-up per chunk.
const HASH_BATCH: usize = 1 << 20;
/// Batches queued for the hashing thread; bounds the memory one ingest holds for hashing.
const HASH_QUEUE: usize = 4;

/// sha256 on a blocking thread beside the copy: while a batch is hashed, the next bytes are
/// received and written. The batches share the chunks the writer holds; nothing is copied or
/// read twice. Dropping it ends the thread.
struct BackgroundHasher {
    tx: Option<tokio::sync::mpsc::Sender<Vec<Bytes>>>,
    batch: Vec<Bytes>,
    batched: usize,
    task: tokio::task::JoinHandle<Sha256>,
}

impl BackgroundHasher {
    fn new() -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(HASH_QUEUE);
        let task = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            while let Some(batch) = rx.blocking_recv() {
                for bytes in batch {
                    hasher.update(&bytes);
                }
            }
            hasher
        });
        Self {
            tx: Some(tx),
            batch: Vec::new(),
            batched: 0,
            task,
        }
    }

    async fn update(&mut self, bytes: &Bytes) {
        self.batched += bytes.len();
        self.batch.push(bytes.clone());
        if self.batched >= HASH_BATCH {
            self.flush().await;
        }
    }

    async fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        self.batched = 0;
        if let Some(tx) = &self.tx {
            // A send fails only when the thread is gone (it panicked): `finish` reports that.
            let _ = tx.send(batch).await;
        }
    }

    /// The lowercase hex digest of everything passed to `update`.
    async fn finish(mut self) -> Result<String, StorageError> {
        self.flush().await;
        drop(self.tx.take());
        let hasher = self
            .task
            .await
            .map_err(|e| StorageError::Config(format!("hashing failed: {e}")))?;
        Ok(hex::encode(hasher.finalize()))
    }
}

/// Streams `body` into the object `key`, after `inspector` accepted its head. Returns only after
/// the object is complete and verified; on error nothing remains under the key.
pub async fn ingest<S, E, I>(
    store: &BlobStore,
    key: &BlobKey,
    mut body: S,
    inspector: &I,
    limits: &IngestLimits,
    ledger: Option<&dyn UploadLedger>,
    mut progress: impl FnMut(u64),
) -> Result<Ingested<I::Found>, IngestError<E, I::Rejection>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    I: Inspector,
{
    // 1. The head, held in memory until it has been inspected: a refused format writes nothing.
    let head_len = inspector.head_len();
    let mut head = BytesMut::with_capacity(head_len);
    let mut pending: Option<Bytes> = None;
    while head.len() < head_len {
        match body.next().await {
            Some(Ok(chunk)) => {
                let room = head_len - head.len();
                if chunk.len() > room {
                    head.extend_from_slice(&chunk[..room]);
                    pending = Some(chunk.slice(room..));
                } else {
                    head.extend_from_slice(&chunk);
                }
            }
            Some(Err(e)) => return Err(IngestError::Source(e)),
            None => break,
        }
        if head.len() as u64 > limits.max_bytes {
            return Err(IngestError::TooLarge {
                limit: limits.max_bytes,
            });
        }
    }
    let found = inspector.inspect(&head).map_err(IngestError::Rejected)?;

    // 2. Stream the rest. The writer aborts itself if this future is dropped.
    let mut writer = store.writer(key).await?;
    let recorded = match (ledger, writer.upload_id().map(str::to_owned)) {
        (Some(l), Some(id)) => match l.record(key, &id).await {
            Ok(()) => Some((l, id)),
            Err(e) => {
                let _ = writer.abort().await;
                return Err(e.into());
            }
        },
        _ => None,
    };
    let result = async {
        let mut hasher = BackgroundHasher::new();
        let mut size: u64 = 0;
        let mut chunk = Some(head.freeze());
        loop {
            let bytes = match chunk.take().or_else(|| pending.take()) {
                Some(b) => b,
                None => match body.next().await {
                    Some(Ok(b)) => b,
                    Some(Err(e)) => return Err(IngestError::Source(e)),
                    None => break,
                },
            };
            if bytes.is_empty() {
                continue;
            }
            size += bytes.len() as u64;
            if size > limits.max_bytes {
                return Err(IngestError::TooLarge {
                    limit: limits.max_bytes,
                });
            }
            hasher.update(&bytes).await;
            writer.write(bytes).await?;
            progress(size);
        }
        let sha256 = hasher.finish().await?;
        if let Some(expected) = limits.expected_sha256.as_ref().filter(|e| **e != sha256) {
            return Err(IngestError::ChecksumMismatch {
                expected: expected.clone(),
                actual: sha256,
            });
        }
        Ok(Ingested { size, sha256, found })
    }
    .await;

    let outcome = match result {
        Ok(done) => writer.finish().await.map(|()| done).map_err(IngestError::from),
        Err(e) => {
            if let Err(abort_err) = writer.abort().await {
                tracing::warn!(error = %abort_err, %key, "aborting a failed upload failed");
            }
            Err(e)
        }
    };
    if let Some((l, id)) = recorded {
        l.ended(&id).await;
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;
    use object_store::ObjectStoreExt;
    use strata_domain::disk_format::samples;

    fn chunks(data: &[u8], size: usize) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
        let v: Vec<_> = data.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        stream::iter(v)
    }

    fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = vec![];
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() { stack.push(p) } else { out.push(p) }
            }
        }
        out
    }

    fn limits(max: u64, sha: Option<String>) -> IngestLimits {
        IngestLimits {
            max_bytes: max,
            expected_sha256: sha,
        }
    }

    #[tokio::test]
    async fn stores_and_hashes_across_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        let data = samples::raw_mbr(3 * INSPECT_LEN + 17);
        let key = BlobKey::image(ImageId::new(), BlobId::new());
        let sha = hex::encode(Sha256::digest(&data));
        let mut seen = 0;
        let got = ingest(
            &store,
            &key,
            chunks(&data, 7000),
            &RawDisk,
            &limits(1 << 30, Some(sha.clone())),
            None,
            |n| seen = n,
        )
        .await
        .unwrap();
        assert_eq!(got.size, data.len() as u64);
        assert_eq!(got.sha256, sha);
        assert_eq!(seen, data.len() as u64);
        let read = store.inner.get(&key.path()).await.unwrap().bytes().await.unwrap();
        assert_eq!(&read[..], &data[..]);
    }

    #[tokio::test]
    async fn failures_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        let data = samples::raw_mbr(4 * INSPECT_LEN);
        let run = |data: Vec<u8>, l: IngestLimits| {
            let store = store.clone();
            async move {
                ingest(
                    &store,
                    &BlobKey::image(ImageId::new(), BlobId::new()),
                    chunks(&data, 4096),
                    &RawDisk,
                    &l,
                    None,
                    |_| {},
                )
                .await
            }
        };
        assert!(matches!(
            run(data.clone(), limits(1000, None)).await,
            Err(IngestError::TooLarge { .. })
        ));
        assert!(matches!(
            run(data.clone(), limits(INSPECT_LEN as u64 + 1, None)).await,
            Err(IngestError::TooLarge { .. })
        ));
        assert!(matches!(
            run(data.clone(), limits(1 << 30, Some("0".repeat(64)))).await,
            Err(IngestError::ChecksumMismatch { .. })
        ));
        assert!(matches!(
            run(samples::qcow2(8192), limits(1 << 30, None)).await,
            Err(IngestError::Rejected(Rejected::Qcow2))
        ));
        let broken = futures::stream::iter(vec![
            Ok(Bytes::from(data[..INSPECT_LEN].to_vec())),
            Ok(Bytes::from(vec![1u8; 4096])),
            Err(std::io::Error::other("connection reset")),
        ]);
        let r = ingest(
            &store,
            &BlobKey::image(ImageId::new(), BlobId::new()),
            broken,
            &RawDisk,
            &limits(1 << 30, None),
            None,
            |_| {},
        )
        .await;
        assert!(matches!(r, Err(IngestError::Source(_))));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(files_under(dir.path()), Vec::<std::path::PathBuf>::new());
    }

    #[tokio::test]
    async fn dropped_writer_aborts() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        let mut w = store.begin_write(ImageId::new(), BlobId::new()).await.unwrap();
        w.write(Bytes::from(vec![0u8; 3 << 20])).await.unwrap();
        drop(w);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(files_under(dir.path()), Vec::<std::path::PathBuf>::new());
    }
}
