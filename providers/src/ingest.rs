//! The one streaming pipeline every way of getting bytes into Strata goes through (direct upload
//! now, URL imports and archive loads later): inspect the head, then stream to storage while
//! hashing and counting, with a size cap; on any failure the partial object is aborted.

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use strata_domain::disk_format::{self, INSPECT_LEN, PartitionTable, Rejected};
use strata_domain::ids::{BlobId, ImageId};

use crate::blob::{BlobStore, StorageError};

#[derive(Debug, Clone)]
pub struct IngestLimits {
    pub max_bytes: u64,
    /// Lowercase hex sha256 the content must have.
    pub expected_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    pub size: u64,
    pub sha256: String,
    pub table: PartitionTable,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError<E> {
    #[error("unsupported disk format: {0}")]
    Rejected(Rejected),
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
    /// Called before any data goes into the upload.
    async fn started(&self, image: ImageId, blob: BlobId, upload_id: &str) -> Result<(), StorageError>;
    /// Called once the upload is completed or aborted.
    async fn ended(&self, upload_id: &str);
}

/// Streams `body` into the blob `(image, blob)`. Returns only after the object is complete and
/// verified; on error nothing remains under the key.
pub async fn ingest<S, E>(
    store: &BlobStore,
    image: ImageId,
    blob: BlobId,
    mut body: S,
    limits: &IngestLimits,
    ledger: Option<&dyn UploadLedger>,
    mut progress: impl FnMut(u64),
) -> Result<Ingested, IngestError<E>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    // 1. The head, held in memory until it has been inspected: a refused format writes nothing.
    let mut head = BytesMut::with_capacity(INSPECT_LEN);
    let mut pending: Option<Bytes> = None;
    while head.len() < INSPECT_LEN {
        match body.next().await {
            Some(Ok(chunk)) => {
                let room = INSPECT_LEN - head.len();
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
    let table = disk_format::inspect(&head).map_err(IngestError::Rejected)?;

    // 2. Stream the rest. The writer aborts itself if this future is dropped.
    let mut writer = store.begin_write(image, blob).await?;
    let recorded = match (ledger, writer.upload_id().map(str::to_owned)) {
        (Some(l), Some(id)) => match l.started(image, blob, &id).await {
            Ok(()) => Some((l, id)),
            Err(e) => {
                let _ = writer.abort().await;
                return Err(e.into());
            }
        },
        _ => None,
    };
    let result = async {
        let mut hasher = Sha256::new();
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
            hasher.update(&bytes);
            writer.write(bytes).await?;
            progress(size);
        }
        let sha256 = hex::encode(hasher.finalize());
        if let Some(expected) = limits.expected_sha256.as_ref().filter(|e| **e != sha256) {
            return Err(IngestError::ChecksumMismatch {
                expected: expected.clone(),
                actual: sha256,
            });
        }
        Ok(Ingested { size, sha256, table })
    }
    .await;

    let outcome = match result {
        Ok(done) => writer.finish().await.map(|()| done).map_err(IngestError::from),
        Err(e) => {
            if let Err(abort_err) = writer.abort().await {
                tracing::warn!(error = %abort_err, %image, %blob, "aborting a failed upload failed");
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
        let (img, blob) = (ImageId::new(), BlobId::new());
        let sha = hex::encode(Sha256::digest(&data));
        let mut seen = 0;
        let got = ingest(
            &store,
            img,
            blob,
            chunks(&data, 7000),
            &limits(1 << 30, Some(sha.clone())),
            None,
            |n| seen = n,
        )
        .await
        .unwrap();
        assert_eq!(got.size, data.len() as u64);
        assert_eq!(got.sha256, sha);
        assert_eq!(seen, data.len() as u64);
        let read = store
            .inner
            .get(&BlobStore::image_key(img, blob))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
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
                    ImageId::new(),
                    BlobId::new(),
                    chunks(&data, 4096),
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
            ImageId::new(),
            BlobId::new(),
            broken,
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
