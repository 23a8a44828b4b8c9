//! The one hardened tar reader. Kernel bundles use it now; OCI layers and docker-save archives
//! (plain, gzip or zstd) will use the same code, so everything that makes an archive hostile is
//! decided here once and every importer only sees entries that passed.
//!
//! Order of work, each step before the next one starts:
//! 1. [`check_staged`]: the compressed file on disk is size-capped (from its metadata, before a
//!    byte is read) and hashed; an expected sha256 is compared before anything is decompressed.
//! 2. [`read_archive`]: the compression is chosen by magic bytes, the decompressed stream is
//!    capped (a zstd or gzip bomb stops at the cap, not at the end), every header counts against
//!    the entry cap (so 200,000 entries stop at the first one over), extension headers (GNU long
//!    names, PAX) are capped before they are read into memory, and each entry's path and link
//!    target is checked against the entries before it. Only then is the caller's
//!    [`EntryVisitor`] called.
//!
//! Everything here is blocking I/O: call it from `tokio::task::spawn_blocking` (as
//! [`kernel_bundle::extract_kernel_bundle_async`] does), never on an async worker thread.

pub mod kernel_bundle;

mod paths;

use std::cell::Cell;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use std::rc::Rc;

use sha2::{Digest, Sha256};
use strata_domain::DomainError;

use paths::{Admission, Tree, normalize};

/// The tar block size; a plain tar is recognised by a valid header checksum in its first block.
const BLOCK: usize = 512;
/// A PAX header carries a few key/value records; 64 KiB is far more than any real one.
const MAX_PAX_BYTES: u64 = 64 * 1024;
/// zstd frames may ask for a window of up to 2^31 bytes, allocated before any output. 2^27
/// (128 MiB) is zstd's own default limit and what `zstd --long` writes.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// Human reasons quote entry names; a hostile name must not make the message huge.
const QUOTE_MAX: usize = 80;

/// Why an archive was not read. `Invalid` is the caller's fault and carries a short reason for
/// people; `Io` is the server's (staging disk) and must be logged, never shown.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The compressed file is over the size cap; nothing was read.
    #[error("the archive is {size} bytes, over the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    /// The compressed file's sha256 is not the expected one; nothing was decompressed.
    #[error("checksum mismatch: expected sha256 {expected}, got {actual}")]
    ChecksumMismatch { expected: String, actual: String },
    /// `invalid-archive`: hostile, corrupt, over a cap, or not the expected layout.
    #[error("invalid archive: {reason}")]
    Invalid { reason: String },
    /// Reading the staged file or writing the staging area failed.
    #[error("staging I/O failed: {0}")]
    Io(#[source] io::Error),
}

impl ArchiveError {
    pub fn invalid(reason: impl Into<String>) -> Self {
        ArchiveError::Invalid { reason: reason.into() }
    }

    /// For errors of the caller's own output (a staged file it writes); never for entry data.
    pub fn io(e: io::Error) -> Self {
        ArchiveError::Io(e)
    }

    /// The typed client error, or `None` for an internal failure (log it, answer `internal`).
    pub fn to_domain(&self) -> Option<DomainError> {
        match self {
            ArchiveError::TooLarge { limit, .. } => Some(DomainError::TooLarge { limit: *limit }),
            ArchiveError::ChecksumMismatch { expected, actual } => Some(DomainError::ChecksumMismatch {
                expected: expected.clone(),
                actual: actual.clone(),
            }),
            ArchiveError::Invalid { reason } => Some(DomainError::InvalidArchive { reason: reason.clone() }),
            ArchiveError::Io(_) => None,
        }
    }

    /// Classifies an error that came out of the decoding stack (tar over decompressor over the
    /// staged file): a failure of the file itself is I/O, the cap and everything else is the
    /// archive's fault.
    pub fn from_read(e: io::Error) -> Self {
        if let Some(inner) = e.get_ref() {
            if let Some(cap) = inner.downcast_ref::<OverCap>() {
                return ArchiveError::invalid(format!("more than {} bytes once decompressed", cap.0));
            }
            if inner.is::<Truncated>() {
                return ArchiveError::invalid("the archive is truncated");
            }
            if inner.is::<StagedIo>() || inner.is::<SinkIo>() {
                return match e.into_inner().map(|b| b.downcast::<StagedIo>()) {
                    Some(Ok(s)) => ArchiveError::Io(s.0),
                    Some(Err(other)) => match other.downcast::<SinkIo>() {
                        Ok(s) => ArchiveError::Io(s.0),
                        Err(other) => ArchiveError::Io(io::Error::other(other)),
                    },
                    None => ArchiveError::Io(io::Error::other("unknown staging error")),
                };
            }
        }
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return ArchiveError::invalid("the archive is truncated");
        }
        let mut text = e.to_string();
        truncate(&mut text, 120);
        ArchiveError::invalid(format!("corrupt archive data ({text})"))
    }
}

/// Most memory an xz stream may ask of the decoder (its dictionary); more is refused as corrupt.
const XZ_MEMLIMIT: u64 = 256 << 20;

/// A reader of the decompressed bytes. The decoders' own memory is bounded (zstd's window, xz's
/// memlimit); the decompressed bytes are capped by the caller.
pub fn decoder<'r, R: Read + 'r>(c: Compression, r: R) -> io::Result<Box<dyn Read + 'r>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(r)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(d)
        }
        Compression::Xz => {
            let stream = xz2::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, xz2::stream::CONCATENATED)
                .map_err(io::Error::other)?;
            Box::new(xz2::read::XzDecoder::new_stream(r, stream))
        }
    })
}

/// How the staged file is compressed, from its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    /// xz (`docker import` of a `.tar.xz`), decoded with a bounded memory limit.
    Xz,
}

impl Compression {
    /// `None` if the head is neither compressed nor a tar header.
    pub fn sniff(head: &[u8]) -> Option<Compression> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Some(Compression::Xz)
        } else if is_tar_header(head) {
            Some(Compression::None)
        } else {
            None
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "tar",
            Compression::Gzip => "tar.gz",
            Compression::Zstd => "tar.zst",
            Compression::Xz => "tar.xz",
        })
    }
}

/// A tar header block: either all zeros (an empty archive) or a block whose checksum adds up.
fn is_tar_header(head: &[u8]) -> bool {
    if head.len() < BLOCK {
        return false;
    }
    let block = &head[..BLOCK];
    if block.iter().all(|b| *b == 0) {
        return true;
    }
    let field = &block[148..156];
    let digits: String = field
        .iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| **b != 0 && **b != b' ')
        .map(|b| *b as char)
        .collect();
    let Ok(expected) = u32::from_str_radix(digits.trim(), 8) else {
        return false;
    };
    let sum: u32 = block[..148]
        .iter()
        .chain(&block[156..])
        .map(|b| u32::from(*b))
        .sum::<u32>()
        + 8 * 32;
    sum == expected
}

/// What the compressed file must satisfy before anything is decompressed.
#[derive(Debug, Clone)]
pub struct SourceCheck {
    pub max_bytes: u64,
    /// Lowercase or uppercase hex; compared case-insensitively.
    pub expected_sha256: Option<String>,
}

/// The staged file as checked: its size, digest and compression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedArchive {
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub compression: Compression,
}

/// Step 1: size from metadata (nothing read if over the cap), then one pass that hashes the file,
/// then the expected digest, then the magic bytes. Blocking.
pub fn check_staged(path: &Path, check: &SourceCheck) -> Result<StagedArchive, ArchiveError> {
    let file = File::open(path).map_err(ArchiveError::Io)?;
    let meta = file.metadata().map_err(ArchiveError::Io)?;
    if !meta.is_file() {
        return Err(ArchiveError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the staged archive is not a regular file",
        )));
    }
    if meta.len() > check.max_bytes {
        return Err(ArchiveError::TooLarge {
            size: meta.len(),
            limit: check.max_bytes,
        });
    }
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut hasher = Sha256::new();
    let mut head = Vec::with_capacity(BLOCK);
    let mut size = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ArchiveError::Io(e)),
        };
        size += n as u64;
        // the file may have grown since its metadata was read
        if size > check.max_bytes {
            return Err(ArchiveError::TooLarge {
                size,
                limit: check.max_bytes,
            });
        }
        if head.len() < BLOCK {
            let take = (BLOCK - head.len()).min(n);
            head.extend_from_slice(&buf[..take]);
        }
        hasher.update(&buf[..n]);
    }
    let sha256 = hex::encode(hasher.finalize());
    if let Some(expected) = &check.expected_sha256
        && !expected.eq_ignore_ascii_case(&sha256)
    {
        return Err(ArchiveError::ChecksumMismatch {
            expected: expected.to_ascii_lowercase(),
            actual: sha256,
        });
    }
    let compression = sniff_or_refuse(&head)?;
    Ok(StagedArchive {
        size,
        sha256,
        compression,
    })
}

fn sniff_or_refuse(head: &[u8]) -> Result<Compression, ArchiveError> {
    match Compression::sniff(head) {
        Some(c) => Ok(c),
        None if head.is_empty() => Err(ArchiveError::invalid("the archive is an empty file")),
        None => {
            let hex: Vec<String> = head.iter().take(4).map(|b| format!("{b:02x}")).collect();
            Err(ArchiveError::invalid(format!(
                "not a tar, tar.gz, tar.zst or tar.xz archive (starts with {})",
                hex.join(" ")
            )))
        }
    }
}

/// Caps on what the archive may expand to.
#[derive(Debug, Clone)]
pub struct ArchiveLimits {
    /// Bytes of the decompressed tar stream (headers, data and padding).
    pub max_unpacked_bytes: u64,
    /// Headers of any kind, extension headers included.
    pub max_entries: u64,
    /// Bytes of an entry's normalised path and of a link target. Components are always at most
    /// 255 bytes, as on Linux.
    pub max_path_len: usize,
}

/// What to do with character and block devices and FIFOs. Kernel bundles refuse them; the OCI
/// flattener will skip them when the filesystem builder cannot create them unprivileged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialFiles {
    /// The whole archive is `invalid-archive`, naming the entry.
    Refuse,
    /// The entry is counted and its data skipped; the visitor never sees it.
    Skip,
}

/// Which symlink targets are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymlinkTargets {
    /// Relative targets that resolve inside the archive, from the link's directory, without
    /// passing through another symlink. Absolute targets are refused. For bundles whose tree is
    /// unpacked or repacked on the host.
    Confined,
    /// Any target: it is data that only a guest resolves, at its own root (OCI layers). Entries
    /// reached through a symlink of the same archive are still refused.
    Any,
}

#[derive(Debug, Clone)]
pub struct ArchivePolicy {
    pub limits: ArchiveLimits,
    pub special_files: SpecialFiles,
    pub symlinks: SymlinkTargets,
}

/// An entry's type as the visitor sees it, after its checks passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// `target` as written in the archive. `resolved` is the archive path it points to, for
    /// [`SymlinkTargets::Confined`] (empty string = the archive root); `None` under `Any`.
    Symlink {
        target: String,
        resolved: Option<String>,
    },
    /// `target` is the normalised archive path of an earlier regular file.
    Hardlink {
        target: String,
    },
}

impl EntryKind {
    fn noun(&self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "directory",
            EntryKind::Symlink { .. } => "symlink",
            EntryKind::Hardlink { .. } => "hardlink",
        }
    }
}

/// Owner, mode and time as the header (or its PAX record) says. Visitors decide what to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// Bytes of data; 0 for everything but files.
    pub size: u64,
}

/// One checked entry. Its data is read through [`Entry::copy_to`] or `Read`; a short or corrupt
/// stream is an error, never a silently shorter file.
pub struct Entry<'a> {
    path: &'a str,
    kind: &'a EntryKind,
    meta: EntryMeta,
    data: &'a mut dyn Read,
}

impl Entry<'_> {
    /// Relative, normalised (no `.`, `..`, empty components or trailing slash), UTF-8.
    pub fn path(&self) -> &str {
        self.path
    }

    pub fn kind(&self) -> &EntryKind {
        self.kind
    }

    pub fn meta(&self) -> EntryMeta {
        self.meta
    }

    /// Copies the entry's data into `out`. Read-side failures are classified as by
    /// [`ArchiveError::from_read`]; write failures are `Io`.
    pub fn copy_to(&mut self, out: &mut dyn Write) -> Result<u64, ArchiveError> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = match self.data.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ArchiveError::from_read(e)),
            };
            out.write_all(&buf[..n]).map_err(ArchiveError::Io)?;
            total += n as u64;
        }
    }
}

impl Read for Entry<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.data.read(buf)
    }
}

/// What an importer does with each entry that passed the checks. Its error type lets it add
/// its own refusals (a kernel of the wrong architecture) beside the archive's.
pub trait EntryVisitor {
    type Error: From<ArchiveError>;
    fn visit(&mut self, entry: &mut Entry<'_>) -> Result<(), Self::Error>;
}

impl<F> EntryVisitor for F
where
    F: FnMut(&mut Entry<'_>) -> Result<(), ArchiveError>,
{
    type Error = ArchiveError;
    fn visit(&mut self, entry: &mut Entry<'_>) -> Result<(), ArchiveError> {
        self(entry)
    }
}

/// Counts of a fully read archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArchiveSummary {
    /// Headers read, extension headers included.
    pub headers: u64,
    /// Entries given to the visitor.
    pub visited: u64,
    /// Entries skipped by [`SpecialFiles::Skip`].
    pub skipped: u64,
    /// Decompressed bytes read.
    pub unpacked_bytes: u64,
}

/// Step 2: reads the staged archive at `path` and calls `visitor` for each entry that passes.
/// Stops at the first refusal; what the visitor wrote so far is its own to clean up. Blocking.
pub fn read_archive<V: EntryVisitor>(
    path: &Path,
    policy: &ArchivePolicy,
    visitor: &mut V,
) -> Result<ArchiveSummary, V::Error> {
    let file = File::open(path).map_err(ArchiveError::Io)?;
    read_archive_from(StagedRead(BufReader::with_capacity(128 * 1024, file)), policy, visitor)
}

/// [`read_archive`] over any byte stream, e.g. a layer tar inside a docker-save archive read
/// through the outer archive's [`Entry`] (whose caps and classification then still apply).
/// Errors of `reader` itself count as corrupt data unless they carry the reader's own tags.
pub fn read_archive_from<'r, R: Read + 'r, V: EntryVisitor>(
    mut reader: R,
    policy: &ArchivePolicy,
    visitor: &mut V,
) -> Result<ArchiveSummary, V::Error> {
    let mut head = Vec::with_capacity(BLOCK);
    (&mut reader)
        .take(BLOCK as u64)
        .read_to_end(&mut head)
        .map_err(ArchiveError::from_read)?;
    let compression = sniff_or_refuse(&head)?;
    let stream = io::Cursor::new(head).chain(reader);
    let decoded = decoder(compression, stream).map_err(ArchiveError::Io)?;
    let unpacked = Rc::new(Cell::new(0u64));
    let capped = Capped {
        inner: decoded,
        read: Rc::clone(&unpacked),
        limit: policy.limits.max_unpacked_bytes,
    };
    let mut summary = walk(capped, policy, visitor)?;
    summary.unpacked_bytes = unpacked.get();
    Ok(summary)
}

/// Extension records waiting for the entry they describe.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.long_name.is_none() && self.long_link.is_none() && self.pax.is_none()
    }
}

/// PAX values this reader honours.
#[derive(Default)]
struct PaxValues {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<u64>,
}

fn parse_pax(bytes: &[u8]) -> Result<PaxValues, ArchiveError> {
    let mut v = PaxValues::default();
    for ext in tar::PaxExtensions::new(bytes) {
        let ext = ext.map_err(|_| ArchiveError::invalid("malformed PAX header"))?;
        let key = ext.key().map_err(|_| ArchiveError::invalid("malformed PAX header"))?;
        let value = ext.value_bytes();
        let number = || -> Result<u64, ArchiveError> {
            let text = std::str::from_utf8(value).map_err(|_| ArchiveError::invalid("malformed PAX header"))?;
            // mtime may carry a fraction: keep the whole seconds
            let whole = text.split('.').next().unwrap_or_default();
            whole
                .parse::<u64>()
                .map_err(|_| ArchiveError::invalid(format!("malformed PAX {key} value")))
        };
        match key {
            "path" => v.path = Some(value.to_vec()),
            "linkpath" => v.linkpath = Some(value.to_vec()),
            "size" => v.size = Some(number()?),
            "uid" => v.uid = Some(number()?),
            "gid" => v.gid = Some(number()?),
            "mtime" => v.mtime = Some(number()?),
            k if k.starts_with("GNU.sparse.") => {
                return Err(ArchiveError::invalid("sparse file entries are not supported"));
            }
            _ => {}
        }
    }
    Ok(v)
}

fn read_extension(data: &mut dyn Read, size: u64, cap: u64, what: &str) -> Result<Vec<u8>, ArchiveError> {
    if size > cap {
        return Err(ArchiveError::invalid(format!(
            "{what} of {size} bytes is over the limit of {cap}"
        )));
    }
    let mut out = Vec::with_capacity(size as usize);
    ExactRead {
        inner: data,
        remaining: size,
    }
    .read_to_end(&mut out)
    .map_err(ArchiveError::from_read)?;
    Ok(out)
}

fn walk<V: EntryVisitor>(
    capped: Capped<'_>,
    policy: &ArchivePolicy,
    visitor: &mut V,
) -> Result<ArchiveSummary, V::Error> {
    let limits = &policy.limits;
    let mut archive = tar::Archive::new(capped);
    let entries = archive.entries().map_err(ArchiveError::from_read)?.raw(true);
    let mut tree = Tree::default();
    let mut pending = Pending::default();
    let mut summary = ArchiveSummary::default();
    for next in entries {
        let mut raw = next.map_err(ArchiveError::from_read)?;
        summary.headers += 1;
        if summary.headers > limits.max_entries {
            return Err(ArchiveError::invalid(format!("more than {} entries", limits.max_entries)).into());
        }
        let header = raw.header().clone();
        let size = header
            .entry_size()
            .map_err(|_| ArchiveError::invalid("an entry header has an invalid size field"))?;
        let entry_type = header.entry_type();
        // GNU long names end with a NUL; +1 leaves room for it.
        let name_cap = limits.max_path_len as u64 + 1;
        match entry_type {
            tar::EntryType::GNULongName => {
                if pending.long_name.is_some() {
                    return Err(ArchiveError::invalid("two long names for one entry").into());
                }
                pending.long_name = Some(read_extension(&mut raw, size, name_cap, "a long name")?);
                continue;
            }
            tar::EntryType::GNULongLink => {
                if pending.long_link.is_some() {
                    return Err(ArchiveError::invalid("two long link names for one entry").into());
                }
                pending.long_link = Some(read_extension(&mut raw, size, name_cap, "a long link name")?);
                continue;
            }
            tar::EntryType::XHeader => {
                if pending.pax.is_some() {
                    return Err(ArchiveError::invalid("two PAX headers for one entry").into());
                }
                pending.pax = Some(read_extension(&mut raw, size, MAX_PAX_BYTES, "a PAX header")?);
                continue;
            }
            tar::EntryType::XGlobalHeader => {
                // global defaults (GNU tar writes none; git archive writes a comment): read, capped, ignored
                read_extension(&mut raw, size, MAX_PAX_BYTES, "a PAX global header")?;
                continue;
            }
            _ => {}
        }
        let ext = std::mem::take(&mut pending);
        let pax = match &ext.pax {
            Some(bytes) => parse_pax(bytes)?,
            None => PaxValues::default(),
        };
        if let Some(pax_size) = pax.size
            && pax_size != size
        {
            return Err(ArchiveError::invalid("a PAX size that differs from the header's is not supported").into());
        }
        let name = strip_nuls(
            ext.long_name
                .or(pax.path)
                .unwrap_or_else(|| header.path_bytes().into_owned()),
        );
        let shown = quote(&name);
        let path = normalize(&name, limits.max_path_len)
            .map_err(|why| ArchiveError::invalid(format!("entry {shown} {why}")))?;
        let link = ext
            .long_link
            .or(pax.linkpath)
            .or_else(|| header.link_name_bytes().map(|c| c.into_owned()))
            .map(strip_nuls);
        let mut kind = match entry_type {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if name.ends_with(b"/") {
                    return Err(ArchiveError::invalid(format!("file entry {shown} has a directory name")).into());
                }
                EntryKind::File
            }
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = link.unwrap_or_default();
                if target.is_empty() {
                    return Err(ArchiveError::invalid(format!("link {shown} has no target")).into());
                }
                if target.len() > limits.max_path_len {
                    return Err(ArchiveError::invalid(format!(
                        "link {shown} has a target longer than {} bytes",
                        limits.max_path_len
                    ))
                    .into());
                }
                let target = String::from_utf8(target)
                    .map_err(|_| ArchiveError::invalid(format!("link {shown} has a target that is not UTF-8")))?;
                if entry_type == tar::EntryType::Symlink {
                    EntryKind::Symlink { target, resolved: None }
                } else {
                    EntryKind::Hardlink { target }
                }
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let noun = match entry_type {
                    tar::EntryType::Fifo => "a FIFO",
                    _ => "a device node",
                };
                match policy.special_files {
                    SpecialFiles::Refuse => {
                        return Err(
                            ArchiveError::invalid(format!("entry {shown} is {noun}, which is not allowed")).into(),
                        );
                    }
                    SpecialFiles::Skip => {
                        summary.skipped += 1;
                        continue;
                    }
                }
            }
            tar::EntryType::GNUSparse => {
                return Err(
                    ArchiveError::invalid(format!("entry {shown} is a sparse file, which is not supported")).into(),
                );
            }
            other => {
                return Err(ArchiveError::invalid(format!(
                    "entry {shown} has the unsupported type {:?}",
                    other.as_byte() as char
                ))
                .into());
            }
        };
        let Some(path) = path else {
            // "." or "./": the archive root itself
            if kind == EntryKind::Dir {
                continue;
            }
            return Err(
                ArchiveError::invalid(format!("entry {shown} names the archive root but is not a directory")).into(),
            );
        };
        match tree.admit(&path, &mut kind, policy) {
            Admission::Ok => {}
            Admission::Refused(why) => {
                return Err(ArchiveError::invalid(format!("{} {shown} {why}", kind.noun())).into());
            }
        }
        let meta = EntryMeta {
            mode: header.mode().unwrap_or(0o644),
            uid: pax.uid.or_else(|| header.uid().ok()).unwrap_or(0),
            gid: pax.gid.or_else(|| header.gid().ok()).unwrap_or(0),
            mtime: pax.mtime.or_else(|| header.mtime().ok()).unwrap_or(0),
            size: if kind == EntryKind::File { size } else { 0 },
        };
        if kind != EntryKind::File && size != 0 && !matches!(kind, EntryKind::Hardlink { .. }) {
            return Err(ArchiveError::invalid(format!("{} {shown} carries data", kind.noun())).into());
        }
        let mut data = ExactRead {
            inner: &mut raw,
            remaining: meta.size,
        };
        let mut entry = Entry {
            path: &path,
            kind: &kind,
            meta,
            data: &mut data,
        };
        visitor.visit(&mut entry)?;
        summary.visited += 1;
    }
    if !pending.is_empty() {
        return Err(ArchiveError::invalid("the archive ends with an extension header and no entry").into());
    }
    Ok(summary)
}

fn strip_nuls(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    bytes
}

/// A name as it can appear in a message: lossy UTF-8, debug-escaped, shortened.
fn quote(name: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(name).into_owned();
    let cut = truncate(&mut text, QUOTE_MAX);
    let mut shown = format!("{text:?}");
    if cut {
        shown.push('…');
    }
    shown
}

/// Shortens `text` to at most `max` bytes on a character boundary; true if it cut.
fn truncate(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    true
}

/// Marks errors of the staged file itself so they stay internal.
#[derive(Debug)]
struct StagedIo(io::Error);
impl fmt::Display for StagedIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reading the staged archive: {}", self.0)
    }
}
impl std::error::Error for StagedIo {}

/// Marks errors of an output the visitor writes while data flows through a reader-side API
/// (e.g. `tar::Builder::append_data`), so they stay internal.
#[derive(Debug)]
pub(crate) struct SinkIo(pub(crate) io::Error);
impl fmt::Display for SinkIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "writing staged output: {}", self.0)
    }
}
impl std::error::Error for SinkIo {}

#[derive(Debug)]
struct OverCap(u64);
impl fmt::Display for OverCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "more than {} bytes once decompressed", self.0)
    }
}
impl std::error::Error for OverCap {}

#[derive(Debug)]
struct Truncated;
impl fmt::Display for Truncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the archive is truncated")
    }
}
impl std::error::Error for Truncated {}

struct StagedRead(BufReader<File>);

impl Read for StagedRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::Interrupted {
                e
            } else {
                io::Error::other(StagedIo(e))
            }
        })
    }
}

/// The decompressed stream, failing once it would go past the cap: a bomb stops here.
struct Capped<'r> {
    inner: Box<dyn Read + 'r>,
    read: Rc<Cell<u64>>,
    limit: u64,
}

impl Read for Capped<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let done = self.read.get();
        let room = self.limit.saturating_sub(done);
        if room == 0 {
            // exactly at the cap is fine if the stream ends here
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(OverCap(self.limit))),
            };
        }
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.read.set(done + n as u64);
        Ok(n)
    }
}

/// Entry data that must be exactly `remaining` bytes: an archive that ends early is an error,
/// not a shorter file.
struct ExactRead<'a> {
    inner: &'a mut dyn Read,
    remaining: u64,
}

impl Read for ExactRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::other(Truncated));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
