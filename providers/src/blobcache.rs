//! A content-addressed cache of registry blobs (layers) on local disk, bounded by size with
//! least-recently-used eviction.
//!
//! - A blob is written to `tmp/` while it is hashed, checked against its digest and size,
//!   synced, and only then renamed to `sha256/<hex>`: a crash leaves at most a temp file, which
//!   [`BlobCache::open`] removes, never a half-written entry under its digest.
//! - A hit is hashed again before it is handed out, so a blob damaged on disk is fetched anew.
//! - Users get an open file: eviction (an unlink) by a concurrent job cannot pull a blob away
//!   from a job that is reading it. Two jobs fetching the same blob both write temp files; the
//!   renames are atomic and the contents equal.
//! - Use bumps the entry's mtime; eviction removes the oldest entries until the cache is within
//!   its bound.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};
use strata_domain::reference::Digest;

use crate::fetch::FetchError;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// What arrived does not match the digest or size the manifest promised.
    #[error("blob {digest}: {why}")]
    Mismatch { digest: String, why: String },
    #[error("fetching blob {digest}: {source}")]
    Fetch {
        digest: String,
        #[source]
        source: FetchError,
    },
    #[error("cache: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug, Clone)]
pub struct BlobCache {
    dir: PathBuf,
    max_bytes: u64,
}

/// A verified blob: an open file positioned at its start.
#[derive(Debug)]
pub struct CachedBlob {
    pub file: File,
    pub size: u64,
    /// Whether it came from the cache (no network).
    pub hit: bool,
}

impl BlobCache {
    /// Opens (creating) the cache at `dir`, removing temp files a crash may have left.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir.join("sha256"))?;
        std::fs::create_dir_all(dir.join("tmp"))?;
        for e in std::fs::read_dir(dir.join("tmp"))? {
            let e = e?;
            // another process on this cache may be writing a fresh one: only stale ones go
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(3600))
                .unwrap_or(true);
            if stale {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
        })
    }

    fn path_of(&self, digest: &Digest) -> PathBuf {
        self.dir.join("sha256").join(digest.hex())
    }

    /// A verified hit, or `None` (a damaged entry is removed). Blocking: hashes the file.
    pub fn lookup(&self, digest: &Digest, size: u64) -> Result<Option<CachedBlob>, CacheError> {
        let path = self.path_of(digest);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let (got, len) = hash_file(&mut file)?;
        if len != size || got != digest.hex() {
            tracing::warn!(%digest, "cached blob does not match its digest; fetching it again");
            let _ = std::fs::remove_file(&path);
            return Ok(None);
        }
        file.seek(SeekFrom::Start(0))?;
        let _ = file.set_modified(SystemTime::now());
        Ok(Some(CachedBlob { file, size, hit: true }))
    }

    /// Returns the blob from the cache, or streams it from `fetch` into the cache, checking
    /// digest and size as it arrives (stopping as soon as it is longer than `size`).
    /// `progress` is told each chunk's length.
    pub async fn get_or_fetch<S, F>(
        &self,
        digest: &Digest,
        size: u64,
        fetch: F,
        mut progress: impl FnMut(u64),
    ) -> Result<CachedBlob, CacheError>
    where
        F: AsyncFnOnce() -> Result<S, FetchError>,
        S: Stream<Item = Result<Bytes, FetchError>> + Unpin,
    {
        let (cache, d) = (self.clone(), digest.clone());
        let hit = tokio::task::spawn_blocking(move || cache.lookup(&d, size))
            .await
            .map_err(|e| io::Error::other(e.to_string()))??;
        if let Some(hit) = hit {
            progress(size);
            return Ok(hit);
        }
        let fetch_err = |source| CacheError::Fetch {
            digest: digest.to_string(),
            source,
        };
        let mut stream = fetch().await.map_err(fetch_err)?;
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{}.{}", digest.hex(), uuid::Uuid::new_v4()));
        let result = async {
            let mut out = File::create(&tmp)?;
            let mut hasher = Sha256::new();
            let mut len = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(fetch_err)?;
                len += chunk.len() as u64;
                if len > size {
                    return Err(CacheError::Mismatch {
                        digest: digest.to_string(),
                        why: format!("more than the {size} bytes its descriptor says"),
                    });
                }
                hasher.update(&chunk);
                // a local write of one chunk: short enough to do here
                out.write_all(&chunk)?;
                progress(chunk.len() as u64);
            }
            let got = hex::encode(hasher.finalize());
            if len != size {
                return Err(CacheError::Mismatch {
                    digest: digest.to_string(),
                    why: format!("{len} bytes, its descriptor says {size}"),
                });
            }
            if got != digest.hex() {
                return Err(CacheError::Mismatch {
                    digest: digest.to_string(),
                    why: format!("its content hashes to sha256:{got}"),
                });
            }
            out.sync_all()?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let path = self.path_of(digest);
        std::fs::rename(&tmp, &path)?;
        let mut file = File::open(&path)?;
        file.seek(SeekFrom::Start(0))?;
        let cache = self.clone();
        let keep = digest.clone();
        let _ = tokio::task::spawn_blocking(move || cache.evict(Some(&keep))).await;
        Ok(CachedBlob { file, size, hit: false })
    }

    /// Removes least-recently-used entries until the cache is within its bound. `keep` (the
    /// blob just added) goes last. Returns how many bytes were removed.
    pub fn evict(&self, keep: Option<&Digest>) -> io::Result<u64> {
        let mut entries = Vec::new();
        let mut total = 0u64;
        for e in std::fs::read_dir(self.dir.join("sha256"))? {
            let e = e?;
            let md = match e.metadata() {
                Ok(m) => m,
                Err(_) => continue, // removed concurrently
            };
            total += md.len();
            let keep_it = keep.is_some_and(|k| e.file_name().to_str() == Some(k.hex()));
            entries.push((
                keep_it,
                md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                md.len(),
                e.path(),
            ));
        }
        entries.sort_by_key(|(keep_it, t, _, _)| (*keep_it, *t));
        let mut removed = 0;
        for (_, _, len, path) in entries {
            if total <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
                removed += len;
            }
        }
        Ok(removed)
    }

    /// Bytes held now.
    pub fn size(&self) -> io::Result<u64> {
        let mut total = 0;
        for e in std::fs::read_dir(self.dir.join("sha256"))? {
            total += e?.metadata().map(|m| m.len()).unwrap_or(0);
        }
        Ok(total)
    }
}

fn hash_file(f: &mut File) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    fn digest_of(b: &[u8]) -> Digest {
        Digest::from_sha256_hex(&hex::encode(Sha256::digest(b))).expect("digest")
    }

    fn chunks(b: &'static [u8]) -> futures::stream::Iter<std::vec::IntoIter<Result<Bytes, FetchError>>> {
        stream::iter(b.chunks(3).map(|c| Ok(Bytes::from_static(c))).collect::<Vec<_>>())
    }

    fn read_all(mut b: CachedBlob) -> Vec<u8> {
        let mut v = Vec::new();
        b.file.read_to_end(&mut v).expect("read");
        v
    }

    #[tokio::test]
    async fn miss_then_hit_then_damage_is_refetched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BlobCache::open(dir.path(), 1 << 20).expect("open");
        let data: &'static [u8] = b"layer bytes, layer bytes";
        let d = digest_of(data);
        let fetches = std::sync::atomic::AtomicUsize::new(0);
        let fetch = || async {
            fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(chunks(data))
        };
        let mut seen = 0;
        let b = cache
            .get_or_fetch(&d, data.len() as u64, fetch, |n| seen += n)
            .await
            .expect("miss");
        assert!(!b.hit);
        assert_eq!(seen, data.len() as u64);
        assert_eq!(read_all(b), data);
        let b = cache
            .get_or_fetch(&d, data.len() as u64, fetch, |_| {})
            .await
            .expect("hit");
        assert!(b.hit);
        assert_eq!(read_all(b), data);
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
        // flip a byte on disk: the next use notices and fetches again
        let path = dir.path().join("sha256").join(d.hex());
        let mut on_disk = std::fs::read(&path).expect("read");
        on_disk[0] ^= 1;
        std::fs::write(&path, on_disk).expect("write");
        let b = cache
            .get_or_fetch(&d, data.len() as u64, fetch, |_| {})
            .await
            .expect("refetch");
        assert!(!b.hit);
        assert_eq!(read_all(b), data);
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn mismatches_leave_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BlobCache::open(dir.path(), 1 << 20).expect("open");
        let data: &'static [u8] = b"the real content";
        let d = digest_of(b"something else");
        let err = cache
            .get_or_fetch(&d, data.len() as u64, || async { Ok(chunks(data)) }, |_| {})
            .await
            .expect_err("wrong digest");
        assert!(err.to_string().contains("hashes to"), "{err}");
        let right = digest_of(data);
        let err = cache
            .get_or_fetch(&right, 4, || async { Ok(chunks(data)) }, |_| {})
            .await
            .expect_err("longer than said");
        assert!(err.to_string().contains("more than the 4 bytes"), "{err}");
        let err = cache
            .get_or_fetch(&right, 100, || async { Ok(chunks(data)) }, |_| {})
            .await
            .expect_err("shorter than said");
        assert!(err.to_string().contains("its descriptor says 100"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).expect("tmp").count(), 0);
        assert_eq!(std::fs::read_dir(dir.path().join("sha256")).expect("blobs").count(), 0);
    }

    #[tokio::test]
    async fn eviction_is_least_recently_used_and_open_blobs_survive_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BlobCache::open(dir.path(), 25).expect("open");
        let blobs: [&'static [u8]; 3] = [b"aaaaaaaaaa", b"bbbbbbbbbb", b"cccccccccc"];
        let a = cache
            .get_or_fetch(&digest_of(blobs[0]), 10, || async { Ok(chunks(blobs[0])) }, |_| {})
            .await
            .expect("a");
        // make `a` clearly older than `b`
        a.file
            .set_modified(SystemTime::now() - Duration::from_secs(60))
            .expect("mtime");
        cache
            .get_or_fetch(&digest_of(blobs[1]), 10, || async { Ok(chunks(blobs[1])) }, |_| {})
            .await
            .expect("b");
        cache
            .get_or_fetch(&digest_of(blobs[2]), 10, || async { Ok(chunks(blobs[2])) }, |_| {})
            .await
            .expect("c");
        assert!(cache.size().expect("size") <= 25);
        assert!(
            !dir.path().join("sha256").join(digest_of(blobs[0]).hex()).exists(),
            "the oldest went"
        );
        assert!(
            dir.path().join("sha256").join(digest_of(blobs[2]).hex()).exists(),
            "the newest stays"
        );
        assert_eq!(read_all(a), blobs[0], "an open blob is still readable after eviction");
    }

    #[test]
    fn stale_temp_files_are_removed_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        BlobCache::open(dir.path(), 1).expect("open");
        let stale = dir.path().join("tmp").join("half-written");
        let fresh = dir.path().join("tmp").join("being-written");
        std::fs::write(&stale, b"x").expect("write");
        std::fs::write(&fresh, b"x").expect("write");
        File::options()
            .write(true)
            .open(&stale)
            .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(7200)))
            .expect("mtime");
        BlobCache::open(dir.path(), 1).expect("reopen");
        assert!(!stale.exists());
        assert!(fresh.exists(), "a temp file of a running job stays");
    }
}
