//! Blob storage for image bytes: one concrete type over `Arc<dyn ObjectStore>`, whatever the
//! backend (local disk now, S3 later). Object keys are derived from typed ids here and nowhere else.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, MultipartId, ObjectStore, ObjectStoreExt, WriteMultipart};
use strata_domain::ids::{BlobId, ImageId};

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

/// Removes the staging files in one image directory that `doomed(name, metadata)` selects, then
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

/// A stored object, as listed.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub key: String,
    /// The image and blob the key names, when it is an image key.
    pub ids: Option<(ImageId, BlobId)>,
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

    /// The one place object keys are made: `images/<image id>/<blob id>`.
    pub fn image_key(image: ImageId, blob: BlobId) -> Path {
        Path::from(format!("images/{image}/{blob}"))
    }

    /// Opens an image's bytes, optionally only the inclusive range `start..=end`.
    pub async fn open(
        &self,
        image: ImageId,
        blob: BlobId,
        range: Option<(u64, u64)>,
    ) -> Result<BlobRead, StorageError> {
        let options = GetOptions {
            range: range.map(|(s, e)| GetRange::Bounded(s..e + 1)),
            ..Default::default()
        };
        let res = self.inner.get_opts(&Self::image_key(image, blob), options).await?;
        let size = res.meta.size;
        let stream = res.into_stream().map_err(StorageError::from).boxed();
        Ok(BlobRead { size, stream })
    }

    /// Deletes an image's bytes. Deleting what is already gone is not an error.
    pub async fn delete(&self, image: ImageId, blob: BlobId) -> Result<(), StorageError> {
        match self.inner.delete(&Self::image_key(image, blob)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every stored object under `images/`, for the sweeper (and tests).
    pub async fn list_images(&self) -> Result<Vec<StoredObject>, StorageError> {
        let mut out = Vec::new();
        let mut stream = self.inner.list(Some(&Path::from("images")));
        while let Some(meta) = stream.next().await {
            let meta = meta?;
            out.push(StoredObject {
                ids: Self::parse_image_key(meta.location.as_ref()),
                key: meta.location.to_string(),
                last_modified: meta.last_modified,
            });
        }
        Ok(out)
    }

    /// The inverse of [`Self::image_key`]; `None` for anything else.
    pub fn parse_image_key(key: &str) -> Option<(ImageId, BlobId)> {
        let mut parts = key.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("images"), Some(image), Some(blob), None) => Some((
                ImageId::from_uuid(uuid::Uuid::parse_str(image).ok()?),
                BlobId::from_uuid(uuid::Uuid::parse_str(blob).ok()?),
            )),
            _ => None,
        }
    }

    /// Deletes an object by the key [`Self::list_images`] returned.
    pub async fn delete_key(&self, key: &str) -> Result<(), StorageError> {
        match self.inner.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Where readiness probes write; outside `images/`, so nothing mistakes a probe for data.
    fn probe_key() -> Path {
        Path::from(format!("health/probe-{}", uuid::Uuid::new_v4()))
    }

    /// Removes whatever an earlier, interrupted write of this blob left: the object if it was
    /// completed, and on local disk the staging files of an unfinished multipart write. Used when
    /// a job is taken over from a process that died.
    pub async fn discard(&self, image: ImageId, blob: BlobId) -> Result<(), StorageError> {
        self.delete(image, blob).await?;
        if let Some(root) = &self.local_root {
            let prefix = format!("{blob}#");
            let dir = root.join("images").join(image.to_string());
            remove_staging_in(&dir, |name, _| name.starts_with(&prefix))?;
        }
        Ok(())
    }

    /// Removes local multipart staging files (`<key>#<n>`) not written to for `older_than`: what
    /// a process killed mid-upload leaves. Returns the paths removed. No-op for object stores,
    /// whose unfinished multipart uploads the upload ledger tracks instead.
    pub fn sweep_staging(&self, older_than: std::time::Duration) -> Result<Vec<String>, StorageError> {
        let Some(root) = &self.local_root else {
            return Ok(vec![]);
        };
        let Ok(dirs) = std::fs::read_dir(root.join("images")) else {
            return Ok(vec![]);
        };
        let mut removed = Vec::new();
        for dir in dirs.flatten() {
            removed.extend(remove_staging_in(&dir.path(), |name, meta| {
                let age = meta.modified().ok().and_then(|t| t.elapsed().ok());
                name.contains('#') && age.is_some_and(|age| age >= older_than)
            })?);
        }
        Ok(removed)
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
        let path = Self::image_key(image, blob);
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
    pub async fn abort_upload(&self, image: ImageId, blob: BlobId, upload_id: &str) -> Result<(), StorageError> {
        if let Some(store) = &self.multipart {
            match store
                .abort_multipart(&Self::image_key(image, blob), &upload_id.to_owned())
                .await
            {
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
