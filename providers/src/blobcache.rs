//! A content-addressed cache of registry blobs (layers) on local disk, bounded by size with
//! least-recently-used eviction.
//!
//! - A blob is written to an unnamed file (`O_TMPFILE` in `tmp/`) while it is hashed, checked
//!   against its digest and size, synced, and only then linked as `sha256/<hex>`: a crash leaves
//!   nothing behind, never a half-written entry under its digest. (Where the filesystem has no
//!   `O_TMPFILE`, the temp file is named, and [`BlobCache::open`] removes stale ones.)
//! - A hit is hashed again before it is handed out, so a blob damaged on disk is fetched anew.
//! - Users get an open file: eviction (an unlink) by a concurrent job cannot pull a blob away
//!   from a job that is reading it. Two jobs fetching the same blob both write temp files; the
//!   renames are atomic and the contents equal.
//! - Use bumps the entry's mtime; eviction removes the oldest entries until the cache is within
//!   its bound.
//! - Built artifacts (root filesystems) are entries like blobs, under the digest of their content,
//!   and evicted like them. An index file `built/<key>` (the caller's name for what the artifact
//!   was built from) names the entry's digest and size; it is written by rename, after the entry.
//!   A hit is handed out unverified: its reader hashes it anyway (the import pipeline stores it
//!   with the digest as its expected checksum) and calls [`BlobCache::forget_built`] on a mismatch.

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

/// An artifact built earlier: an open file positioned at its start, with the digest and size it
/// was remembered with (not verified here).
#[derive(Debug)]
pub struct BuiltArtifact {
    pub file: File,
    pub sha256: String,
    pub size: u64,
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
        std::fs::create_dir_all(dir.join("built"))?;
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
        let mut pending = Pending::create(&self.dir.join("tmp"), digest.hex())?;
        let result = async {
            let out = &mut pending.file;
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
            pending.discard();
            return Err(e);
        }
        let mut file = pending.publish(&self.path_of(digest), Replace::No)?;
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

    /// Where the index of a built artifact lives; `None` for a key that is not 64 hex digits.
    fn built_index(&self, key: &str) -> Option<PathBuf> {
        (key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit())).then(|| self.dir.join("built").join(key))
    }

    /// The artifact built earlier under `key`: an open file with the digest and size it was
    /// stored with, NOT verified (see the module's doc). Blocking.
    pub fn built(&self, key: &str) -> io::Result<Option<BuiltArtifact>> {
        let Some(index) = self.built_index(key) else {
            return Ok(None);
        };
        let Some((digest, size)) = read_index(&index)? else {
            return Ok(None);
        };
        let path = self.path_of(&digest);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // evicted: the index goes too
                let _ = std::fs::remove_file(&index);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if file.metadata()?.len() != size {
            self.forget_built(key);
            return Ok(None);
        }
        let _ = file.set_modified(SystemTime::now());
        Ok(Some(BuiltArtifact {
            file,
            sha256: digest.hex().to_owned(),
            size,
        }))
    }

    /// Remembers `file` (whose content hashed to `sha256` hex, `size` bytes, as its writer saw
    /// while storing it) as the artifact built under `key`: hard-linked into the cache when it is
    /// on the same filesystem, copied otherwise, then evicting as needed. Blocking.
    pub fn remember_built(&self, key: &str, file: &Path, sha256: &str, size: u64) -> io::Result<()> {
        let Some(index) = self.built_index(key) else {
            return Err(io::Error::other("a built artifact's key is 64 hex digits"));
        };
        let digest = Digest::from_sha256_hex(sha256).map_err(|e| io::Error::other(e.to_string()))?;
        let entry = self.path_of(&digest);
        if std::fs::metadata(file)?.len() != size {
            return Err(io::Error::other("the built artifact changed size since it was stored"));
        }
        // The file is complete: linked straight into place, there is nothing half-written to
        // see. Across filesystems it is copied through an unnamed temp file instead.
        match std::fs::hard_link(file, &entry) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(_) => self.write_new(&entry, Replace::No, digest.hex(), |out| {
                io::copy(&mut File::open(file)?, out).map(drop)
            })?,
        }
        self.write_new(&index, Replace::Yes, key, |out| {
            out.write_all(format!("{} {size}\n", digest.as_str()).as_bytes())
        })?;
        self.evict(Some(&digest))?;
        Ok(())
    }

    /// Drops the artifact built under `key` (its reader found it damaged).
    pub fn forget_built(&self, key: &str) {
        let Some(index) = self.built_index(key) else {
            return;
        };
        if let Ok(Some((digest, _))) = read_index(&index) {
            let _ = std::fs::remove_file(self.path_of(&digest));
        }
        let _ = std::fs::remove_file(&index);
    }

    /// Writes a new file at `dest` through an unnamed temp file: filled by `fill`, synced, then
    /// published; nothing is left behind when any step fails.
    fn write_new(
        &self,
        dest: &Path,
        replace: Replace,
        stem: &str,
        fill: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut pending = Pending::create(&self.dir.join("tmp"), stem)?;
        if let Err(e) = fill(&mut pending.file).and_then(|()| pending.file.sync_all()) {
            pending.discard();
            return Err(e);
        }
        pending.publish(dest, replace).map(drop)
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

/// The digest and size a built artifact's index names; `None` (and the index removed) when it
/// is missing or unreadable.
fn read_index(index: &Path) -> io::Result<Option<(Digest, u64)>> {
    let text = match std::fs::read_to_string(index) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let parsed = text.trim().split_once(' ').and_then(|(d, n)| {
        let digest = Digest::parse(d).ok()?;
        Some((digest, n.parse::<u64>().ok()?))
    });
    if parsed.is_none() {
        let _ = std::fs::remove_file(index);
    }
    Ok(parsed)
}

/// Whether publishing replaces what is at the destination already.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replace {
    /// Keep it: a concurrent writer published the same verified content.
    No,
    Yes,
}

/// A file being written into the cache: unnamed (`O_TMPFILE`) until it is published, so a
/// process killed while writing leaves nothing behind. On a filesystem without `O_TMPFILE` it
/// is a named file in `tmp/`, which [`BlobCache::open`] removes once it is an hour old.
struct Pending {
    file: File,
    named: Option<PathBuf>,
}

impl Pending {
    fn create(tmp_dir: &Path, stem: &str) -> io::Result<Self> {
        use rustix::fs::{Mode, OFlags};
        match rustix::fs::open(
            tmp_dir,
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => Ok(Self {
                file: File::from(fd),
                named: None,
            }),
            Err(_) => {
                let path = tmp_dir.join(format!("{stem}.{}", uuid::Uuid::new_v4()));
                Ok(Self {
                    file: File::create_new(&path)?,
                    named: Some(path),
                })
            }
        }
    }

    /// Gives the file its name `dest` (atomically) and returns it, open.
    fn publish(self, dest: &Path, replace: Replace) -> io::Result<File> {
        match &self.named {
            Some(path) => {
                if replace == Replace::No && dest.exists() {
                    let _ = std::fs::remove_file(path);
                } else {
                    std::fs::rename(path, dest)?;
                }
            }
            None => {
                use std::os::fd::AsRawFd;
                let proc_path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
                let link = || {
                    rustix::fs::linkat(
                        rustix::fs::CWD,
                        proc_path.as_str(),
                        rustix::fs::CWD,
                        dest,
                        rustix::fs::AtFlags::SYMLINK_FOLLOW,
                    )
                };
                match link() {
                    Ok(()) => {}
                    Err(rustix::io::Errno::EXIST) if replace == Replace::No => {}
                    Err(rustix::io::Errno::EXIST) => {
                        // replaced by unlink and link: a reader between the two sees nothing
                        // (a miss), never a mix
                        let _ = std::fs::remove_file(dest);
                        match link() {
                            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(self.file)
    }

    fn discard(self) {
        if let Some(path) = &self.named {
            let _ = std::fs::remove_file(path);
        }
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

    #[test]
    fn built_artifacts_are_linked_found_and_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BlobCache::open(&dir.path().join("cache"), 1 << 20).expect("open");
        let key = "ab".repeat(32);
        assert!(cache.built(&key).expect("lookup").is_none());
        assert!(cache.built("../../etc/passwd").expect("lookup").is_none(), "not a key");
        let built = dir.path().join("rootfs.ext4");
        std::fs::write(&built, b"a filesystem").expect("write");
        let sha = hex::encode(Sha256::digest(b"a filesystem"));
        cache.remember_built(&key, &built, &sha, 12).expect("remember");
        std::fs::remove_file(&built).expect("the staging copy goes");
        let mut hit = cache.built(&key).expect("lookup").expect("hit");
        assert_eq!((hit.sha256.as_str(), hit.size), (sha.as_str(), 12));
        let mut v = Vec::new();
        hit.file.read_to_end(&mut v).expect("read");
        assert_eq!(v, b"a filesystem");
        // another size than remembered: not handed out, and dropped
        std::fs::write(dir.path().join("cache/sha256").join(&sha), b"short").expect("write");
        assert!(cache.built(&key).expect("lookup").is_none());
        assert!(!dir.path().join("cache/built").join(&key).exists());
        // evicted under it: a miss, and the index goes too
        std::fs::write(&built, b"a filesystem").expect("write");
        cache.remember_built(&key, &built, &sha, 12).expect("remember");
        cache.forget_built(&key);
        assert!(cache.built(&key).expect("lookup").is_none());
        assert!(!dir.path().join("cache/sha256").join(&sha).exists());
        assert_eq!(std::fs::read_dir(dir.path().join("cache/tmp")).expect("tmp").count(), 0);
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
