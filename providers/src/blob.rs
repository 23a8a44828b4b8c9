//! Blob storage: one concrete type over `Arc<dyn ObjectStore>`, whatever the backend (local disk,
//! S3). Objects are named by a typed [`BlobKey`] (crate::key), the only place keys are made.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, MultipartId, ObjectStore, ObjectStoreExt, WriteMultipart};
use strata_domain::ids::{BlobId, ImageId};

use crate::key::{BlobKey, PREFIXES};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object not found")]
    NotFound,
    #[error("storage backend error: {0}")]
    Backend(#[source] object_store::Error),
    #[error("storage configuration error: {0}")]
    Config(String),
}

impl From<object_store::Error> for StorageError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => StorageError::NotFound,
            other => StorageError::Backend(other),
        }
    }
}

/// A region's storage. Cheap to clone.
#[derive(Clone)]
pub struct BlobStore {
    pub(crate) inner: Arc<dyn ObjectStore>,
    /// Part size of multipart writes; bounds the memory one write holds.
    chunk_size: usize,
    /// Parts in flight at once per write.
    max_concurrency: usize,
    /// Set for local disk, where an interrupted multipart write leaves `<key>#<n>` staging files
    /// that object_store does not list.
    local_root: Option<std::path::PathBuf>,
    /// Set for object stores: writes go through explicit multipart uploads whose ids are known,
    /// so an upload left by a process that died can be aborted by any other.
    multipart: Option<Arc<dyn MultipartStore>>,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore")
            .field("backend", &self.inner.to_string())
            .finish()
    }
}

/// Removes the staging files in one key directory that `doomed(name, metadata)` selects, then
/// the directory itself if that left it empty (as object_store's automatic cleanup would).
fn remove_staging_in(
    dir: &std::path::Path,
    doomed: impl Fn(&str, &std::fs::Metadata) -> bool,
) -> Result<Vec<String>, StorageError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(StorageError::Config(format!("cannot list {}: {e}", dir.display()))),
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else { continue };
        if doomed(&name, &meta) {
            std::fs::remove_file(entry.path())
                .map_err(|e| StorageError::Config(format!("cannot remove staging file: {e}")))?;
            removed.push(entry.path().display().to_string());
        }
    }
    let _ = std::fs::remove_dir(dir); // only succeeds when empty
    Ok(removed)
}

/// Removes stale staging files anywhere under `dir`, and key directories that this leaves empty
/// (never a prefix directory itself, `depth` 0).
fn sweep_dir(
    dir: &std::path::Path,
    depth: usize,
    older_than: std::time::Duration,
    removed: &mut Vec<String>,
) -> Result<(), StorageError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let subdirs: Vec<_> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    // keys are at most three segments deep: nothing below that is ours
    if depth < 3 {
        for sub in subdirs {
            sweep_dir(&sub, depth + 1, older_than, removed)?;
        }
    }
    let stale = |name: &str, meta: &std::fs::Metadata| {
        let age = meta.modified().ok().and_then(|t| t.elapsed().ok());
        meta.is_file() && name.contains('#') && age.is_some_and(|age| age >= older_than)
    };
    if depth == 0 {
        // remove_staging_in would also try to remove the (empty) prefix directory
        return Ok(());
    }
    removed.extend(remove_staging_in(dir, stale)?);
    Ok(())
}

/// Runs filesystem work on the blocking pool, off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Config(format!("blocking storage task failed: {e}")))?
}

/// A stored object, as listed.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub key: String,
    /// What the key names; `None` for a key no Strata version writes.
    pub parsed: Option<BlobKey>,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// Where an S3 region keeps its bytes.
pub struct S3Settings {
    pub bucket: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub prefix: Option<String>,
    pub allow_http: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// A byte range of a stored object and its bytes.
pub struct BlobRead {
    /// Size of the whole object.
    pub size: u64,
    pub stream: BoxStream<'static, Result<Bytes, StorageError>>,
}

/// Bytes read per step of a local download: large enough that a download runs at disk speed,
/// small enough that many at once stay within a few MiB each.
const LOCAL_READ_CHUNK: u64 = 512 << 10;
/// Chunks of a local download read ahead of the socket.
const LOCAL_READ_AHEAD: usize = 2;

fn local_error(e: std::io::Error) -> StorageError {
    if e.kind() == std::io::ErrorKind::NotFound {
        return StorageError::NotFound;
    }
    StorageError::Backend(object_store::Error::Generic {
        store: "LocalFileSystem",
        source: Box::new(e),
    })
}

fn join_error(e: tokio::task::JoinError) -> StorageError {
    local_error(std::io::Error::other(e))
}

/// Streams the inclusive range `start..=end` of a local file (the whole file without a range)
/// in large positioned reads on the blocking pool, a couple of chunks ahead of the socket.
/// object_store's local reader yields 8 KiB chunks, one blocking task each: far below disk speed.
async fn open_local(path: std::path::PathBuf, range: Option<(u64, u64)>) -> Result<BlobRead, StorageError> {
    let (file, size) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let file = std::fs::File::open(&path)?;
        let size = file.metadata()?.len();
        Ok((file, size))
    })
    .await
    .map_err(join_error)?
    .map_err(local_error)?;
    let (start, end) = match range {
        Some((s, e)) => (s.min(size), e.saturating_add(1).min(size)),
        None => (0, size),
    };
    let file = Arc::new(file);
    let stream = futures::stream::iter((start..end).step_by(LOCAL_READ_CHUNK as usize))
        .map(move |offset| {
            let file = file.clone();
            let len = (end - offset).min(LOCAL_READ_CHUNK) as usize;
            async move {
                tokio::task::spawn_blocking(move || read_at(&file, offset, len))
                    .await
                    .map_err(join_error)?
                    .map_err(local_error)
            }
        })
        .buffered(LOCAL_READ_AHEAD)
        .boxed();
    Ok(BlobRead { size, stream })
}

/// `len` bytes of `file` from `offset`, read into a buffer that is not zeroed first (each chunk
/// of a download would otherwise be written twice in memory before the socket sees it).
fn read_at(file: &std::fs::File, offset: u64, len: usize) -> std::io::Result<Bytes> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        // Reads into the spare capacity and extends the length by what was read.
        let at = offset + buf.len() as u64;
        let n = rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    // The allocator may have given more capacity than asked for: never past the range.
    buf.truncate(len);
    Ok(Bytes::from(buf))
}

impl BlobStore {
    /// Local disk under `root` (created if missing). Empty directories are removed after deletes.
    pub fn local(root: &std::path::Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(root)
            .map_err(|e| StorageError::Config(format!("cannot create {}: {e}", root.display())))?;
        let fs = LocalFileSystem::new_with_prefix(root)?.with_automatic_cleanup(true);
        let mut store = Self::new(Arc::new(fs), 1 << 20, 2);
        store.local_root = Some(root.to_path_buf());
        Ok(store)
    }

    /// S3 or an S3-compatible server. Credentials not given here come from the `AWS_*`
    /// environment. Parts are 8 MiB (S3's minimum is 5 MiB), two in flight per write.
    pub fn s3(s3: S3Settings) -> Result<Self, StorageError> {
        let mut b = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&s3.bucket)
            .with_region(&s3.region)
            .with_allow_http(s3.allow_http);
        if let Some(e) = &s3.endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(k) = s3.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = s3.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        let store = b
            .build()
            .map_err(|e| StorageError::Config(format!("S3 bucket {}: {e}", s3.bucket)))?;
        let prefix = s3
            .prefix
            .as_deref()
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty());
        let (inner, multipart): (Arc<dyn ObjectStore>, Arc<dyn MultipartStore>) = match prefix {
            Some(prefix) => {
                let p = Arc::new(object_store::prefix::PrefixStore::new(store, prefix));
                (p.clone(), p)
            }
            None => {
                let p = Arc::new(store);
                (p.clone(), p)
            }
        };
        let mut this = Self::new(inner, 8 << 20, 2);
        this.multipart = Some(multipart);
        Ok(this)
    }

    pub fn new(inner: Arc<dyn ObjectStore>, chunk_size: usize, max_concurrency: usize) -> Self {
        Self {
            inner,
            chunk_size,
            max_concurrency: max_concurrency.max(1),
            local_root: None,
            multipart: None,
        }
    }

    /// Opens an object's bytes, optionally only the inclusive range `start..=end`.
    pub async fn open(&self, key: &BlobKey, range: Option<(u64, u64)>) -> Result<BlobRead, StorageError> {
        if let Some(root) = &self.local_root {
            return open_local(root.join(key.to_string()), range).await;
        }
        // Object stores: the range goes to the server as an HTTP Range, and the body streams
        // through as it arrives.
        let options = GetOptions {
            range: range.map(|(s, e)| GetRange::Bounded(s..e + 1)),
            ..Default::default()
        };
        let res = self.inner.get_opts(&key.path(), options).await?;
        let size = res.meta.size;
        let stream = res.into_stream().map_err(StorageError::from).boxed();
        Ok(BlobRead { size, stream })
    }

    /// Deletes an object. Deleting what is already gone is not an error.
    pub async fn delete(&self, key: &BlobKey) -> Result<(), StorageError> {
        self.delete_path(&key.path()).await
    }

    async fn delete_path(&self, path: &Path) -> Result<(), StorageError> {
        match self.inner.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list_prefix(&self, prefix: &str, out: &mut Vec<StoredObject>) -> Result<(), StorageError> {
        let mut stream = self.inner.list(Some(&Path::from(prefix)));
        while let Some(meta) = stream.next().await {
            let meta = meta?;
            out.push(StoredObject {
                parsed: BlobKey::parse(meta.location.as_ref()),
                key: meta.location.to_string(),
                last_modified: meta.last_modified,
            });
        }
        Ok(())
    }

    /// Every stored object under every key prefix (images, kernels, cache), for the sweeper.
    pub async fn list_all(&self) -> Result<Vec<StoredObject>, StorageError> {
        let mut out = Vec::new();
        for prefix in PREFIXES {
            self.list_prefix(prefix, &mut out).await?;
        }
        Ok(out)
    }

    /// Every stored object under `images/` (tests count an image region's bytes with it).
    pub async fn list_images(&self) -> Result<Vec<StoredObject>, StorageError> {
        let mut out = Vec::new();
        self.list_prefix("images", &mut out).await?;
        Ok(out)
    }

    /// Deletes an object by the key a listing returned.
    pub async fn delete_key(&self, key: &str) -> Result<(), StorageError> {
        self.delete_path(&Path::from(key)).await
    }

    /// Where readiness probes write; outside every key prefix, so nothing mistakes a probe for data.
    fn probe_key() -> Path {
        Path::from(format!("health/probe-{}", uuid::Uuid::new_v4()))
    }

    /// Removes whatever an earlier, interrupted write of this key left: the object if it was
    /// completed, and on local disk the staging files of an unfinished multipart write. Used when
    /// a job is taken over from a process that died.
    pub async fn discard(&self, key: &BlobKey) -> Result<(), StorageError> {
        self.delete(key).await?;
        if let Some(root) = &self.local_root {
            let full = root.join(key.to_string());
            let (Some(dir), Some(name)) = (full.parent(), full.file_name()) else {
                return Ok(());
            };
            let (dir, prefix) = (dir.to_path_buf(), format!("{}#", name.to_string_lossy()));
            blocking(move || remove_staging_in(&dir, |name, _| name.starts_with(&prefix))).await?;
        }
        Ok(())
    }

    /// Removes local multipart staging files (`<key>#<n>`) not written to for `older_than`, under
    /// every key prefix: what a process killed mid-upload leaves. Returns the paths removed. No-op
    /// for object stores, whose unfinished multipart uploads the upload ledger tracks instead.
    /// The directory walk runs on the blocking pool.
    pub async fn sweep_staging(&self, older_than: std::time::Duration) -> Result<Vec<String>, StorageError> {
        let Some(root) = self.local_root.clone() else {
            return Ok(vec![]);
        };
        blocking(move || {
            let mut removed = Vec::new();
            for prefix in PREFIXES {
                sweep_dir(&root.join(prefix), 0, older_than, &mut removed)?;
            }
            Ok(removed)
        })
        .await
    }

    /// Is the backend usable? Writes and deletes a tiny probe object: listing alone succeeds on a
    /// missing or unwritable local root and on a read-only bucket.
    pub async fn check(&self) -> Result<(), StorageError> {
        let key = Self::probe_key();
        self.inner.put(&key, Bytes::from_static(b"ok").into()).await?;
        self.inner.delete(&key).await?;
        Ok(())
    }

    /// Starts writing an image's bytes. Nothing is visible under the key until
    /// [`BlobWriter::finish`]; dropping the writer unfinished aborts the upload.
    pub async fn begin_write(&self, image: ImageId, blob: BlobId) -> Result<BlobWriter, StorageError> {
        self.writer(&BlobKey::image(image, blob)).await
    }

    /// Starts writing the object `key`; see [`Self::begin_write`].
    pub async fn writer(&self, key: &BlobKey) -> Result<BlobWriter, StorageError> {
        let path = key.path();
        let inner = match &self.multipart {
            Some(store) => {
                let id = store.create_multipart(&path).await?;
                Inner::Parts(PartsWriter {
                    store: store.clone(),
                    path,
                    id,
                    buf: bytes::BytesMut::new(),
                    chunk: self.chunk_size,
                    inflight: tokio::task::JoinSet::new(),
                    next: 0,
                    parts: Vec::new(),
                })
            }
            None => {
                let upload = self.inner.put_multipart(&path).await?;
                Inner::Stream(WriteMultipart::new_with_chunk_size(upload, self.chunk_size))
            }
        };
        Ok(BlobWriter {
            inner: Some(inner),
            max_concurrency: self.max_concurrency,
        })
    }

    /// Aborts a multipart upload by id, from any process (no-op for local disk, whose staging
    /// files [`Self::discard`] and [`Self::sweep_staging`] remove).
    pub async fn abort_upload(&self, key: &BlobKey, upload_id: &str) -> Result<(), StorageError> {
        if let Some(store) = &self.multipart {
            match store.abort_multipart(&key.path(), &upload_id.to_owned()).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// An open multipart write. Memory use is bounded by chunk size x concurrency.
pub struct BlobWriter {
    inner: Option<Inner>,
    max_concurrency: usize,
}

enum Inner {
    /// Local disk: object_store's own writer (a staging file renamed on completion).
    Stream(WriteMultipart),
    /// Object stores: explicit parts of a multipart upload whose id is known.
    Parts(PartsWriter),
}

struct PartsWriter {
    store: Arc<dyn MultipartStore>,
    path: Path,
    id: MultipartId,
    buf: bytes::BytesMut,
    chunk: usize,
    inflight: tokio::task::JoinSet<Result<(usize, PartId), object_store::Error>>,
    next: usize,
    parts: Vec<Option<PartId>>,
}

impl PartsWriter {
    async fn collect_one(&mut self) -> Result<(), StorageError> {
        match self.inflight.join_next().await {
            Some(Ok(Ok((idx, part)))) => {
                if self.parts.len() <= idx {
                    self.parts.resize(idx + 1, None);
                }
                self.parts[idx] = Some(part);
                Ok(())
            }
            Some(Ok(Err(e))) => Err(e.into()),
            Some(Err(join)) => Err(StorageError::Config(format!("part upload task failed: {join}"))),
            None => Ok(()),
        }
    }

    async fn send(&mut self, data: Bytes, max: usize) -> Result<(), StorageError> {
        while self.inflight.len() >= max {
            self.collect_one().await?;
        }
        let (store, path, id, idx) = (self.store.clone(), self.path.clone(), self.id.clone(), self.next);
        self.next += 1;
        self.inflight
            .spawn(async move { store.put_part(&path, &id, idx, data.into()).await.map(|p| (idx, p)) });
        Ok(())
    }
}

impl BlobWriter {
    /// The multipart upload id, for stores where another process may have to abort it.
    pub fn upload_id(&self) -> Option<&str> {
        match &self.inner {
            Some(Inner::Parts(p)) => Some(p.id.as_str()),
            _ => None,
        }
    }

    pub async fn write(&mut self, bytes: Bytes) -> Result<(), StorageError> {
        let max = self.max_concurrency;
        match self.inner.as_mut() {
            Some(Inner::Stream(w)) => {
                w.wait_for_capacity(max).await?;
                w.put(bytes);
                Ok(())
            }
            Some(Inner::Parts(p)) => {
                p.buf.extend_from_slice(&bytes);
                while p.buf.len() >= p.chunk {
                    let part = p.buf.split_to(p.chunk).freeze();
                    p.send(part, max).await?;
                }
                Ok(())
            }
            None => Err(StorageError::Config("writer already closed".into())),
        }
    }

    pub async fn finish(mut self) -> Result<(), StorageError> {
        let max = self.max_concurrency;
        match self.inner.take() {
            Some(Inner::Stream(w)) => {
                w.finish().await?;
                Ok(())
            }
            Some(Inner::Parts(mut p)) => {
                let result = async {
                    if !p.buf.is_empty() || p.next == 0 {
                        let last = std::mem::take(&mut p.buf).freeze();
                        p.send(last, max).await?;
                    }
                    while !p.inflight.is_empty() {
                        p.collect_one().await?;
                    }
                    let parts = std::mem::take(&mut p.parts)
                        .into_iter()
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| StorageError::Config("a part of the upload is missing".into()))?;
                    p.store.complete_multipart(&p.path, &p.id, parts).await?;
                    Ok(())
                }
                .await;
                if result.is_err() {
                    p.inflight.abort_all();
                    let _ = p.store.abort_multipart(&p.path, &p.id).await;
                }
                result
            }
            None => Err(StorageError::Config("writer already closed".into())),
        }
    }

    pub async fn abort(mut self) -> Result<(), StorageError> {
        match self.inner.take() {
            Some(Inner::Stream(w)) => w.abort().await?,
            Some(Inner::Parts(mut p)) => {
                p.inflight.abort_all();
                p.store.abort_multipart(&p.path, &p.id).await?;
            }
            None => {}
        }
        Ok(())
    }
}

impl Drop for BlobWriter {
    /// A writer dropped mid-way (a cancelled request, a panic) must not leave a partial upload.
    fn drop(&mut self) {
        if let (Some(inner), Ok(rt)) = (self.inner.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move {
                let res = match inner {
                    Inner::Stream(w) => w.abort().await,
                    Inner::Parts(mut p) => {
                        p.inflight.abort_all();
                        p.store.abort_multipart(&p.path, &p.id).await
                    }
                };
                if let Err(e) = res {
                    tracing::warn!(error = %e, "aborting an abandoned upload failed");
                }
            });
        }
    }
}
