//! Blob storage for image bytes: one concrete type over `Arc<dyn ObjectStore>`, whatever the
//! backend (local disk now, S3 later). Object keys are derived from typed ids here and nowhere else.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};
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
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore")
            .field("backend", &self.inner.to_string())
            .finish()
    }
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
        let inner: Arc<dyn ObjectStore> = match s3
            .prefix
            .as_deref()
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty())
        {
            Some(prefix) => Arc::new(object_store::prefix::PrefixStore::new(store, prefix)),
            None => Arc::new(store),
        };
        Ok(Self::new(inner, 8 << 20, 2))
    }

    pub fn new(inner: Arc<dyn ObjectStore>, chunk_size: usize, max_concurrency: usize) -> Self {
        Self {
            inner,
            chunk_size,
            max_concurrency: max_concurrency.max(1),
            local_root: None,
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
            let dir = root.join("images").join(image.to_string());
            let prefix = format!("{blob}#");
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(StorageError::Config(format!("cannot list {}: {e}", dir.display()))),
            };
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    std::fs::remove_file(entry.path())
                        .map_err(|e| StorageError::Config(format!("cannot remove staging file: {e}")))?;
                }
            }
            // like object_store's automatic cleanup: no empty directories left behind
            let _ = std::fs::remove_dir(&dir);
        }
        Ok(())
    }

    /// Removes local multipart staging files (`<key>#<n>`) not written to for `older_than`: what
    /// a process killed mid-upload leaves. Returns the paths removed. No-op for object stores,
    /// whose unfinished multipart uploads are invisible to listings.
    pub fn sweep_staging(&self, older_than: std::time::Duration) -> Result<Vec<String>, StorageError> {
        let Some(root) = &self.local_root else {
            return Ok(vec![]);
        };
        let mut removed = Vec::new();
        let images = root.join("images");
        let Ok(dirs) = std::fs::read_dir(&images) else {
            return Ok(vec![]);
        };
        for dir in dirs.flatten() {
            let Ok(files) = std::fs::read_dir(dir.path()) else {
                continue;
            };
            for f in files.flatten() {
                if !f.file_name().to_string_lossy().contains('#') {
                    continue;
                }
                let stale = f
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age >= older_than);
                if stale {
                    std::fs::remove_file(f.path())
                        .map_err(|e| StorageError::Config(format!("cannot remove staging file: {e}")))?;
                    removed.push(f.path().display().to_string());
                }
            }
            let _ = std::fs::remove_dir(dir.path()); // only succeeds when empty
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
        let upload = self.inner.put_multipart(&Self::image_key(image, blob)).await?;
        Ok(BlobWriter {
            inner: Some(WriteMultipart::new_with_chunk_size(upload, self.chunk_size)),
            max_concurrency: self.max_concurrency,
        })
    }
}

/// An open multipart write. Memory use is bounded by chunk size x concurrency.
pub struct BlobWriter {
    inner: Option<WriteMultipart>,
    max_concurrency: usize,
}

impl BlobWriter {
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), StorageError> {
        let w = self
            .inner
            .as_mut()
            .ok_or_else(|| StorageError::Config("writer already closed".into()))?;
        w.wait_for_capacity(self.max_concurrency).await?;
        w.put(bytes);
        Ok(())
    }

    pub async fn finish(mut self) -> Result<(), StorageError> {
        match self.inner.take() {
            Some(w) => {
                w.finish().await?;
                Ok(())
            }
            None => Err(StorageError::Config("writer already closed".into())),
        }
    }

    pub async fn abort(mut self) -> Result<(), StorageError> {
        if let Some(w) = self.inner.take() {
            w.abort().await?;
        }
        Ok(())
    }
}

impl Drop for BlobWriter {
    /// A writer dropped mid-way (a cancelled request, a panic) must not leave a partial upload.
    fn drop(&mut self) {
        if let (Some(w), Ok(rt)) = (self.inner.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move {
                if let Err(e) = w.abort().await {
                    tracing::warn!(error = %e, "aborting an abandoned upload failed");
                }
            });
        }
    }
}
