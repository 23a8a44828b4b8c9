//! Kernel bundles: a tar, tar.gz or tar.zst holding `vmlinux`, optionally `initrd.img` and
//! optionally a `modules/` tree, read through the hardened reader and staged as local files:
//! `vmlinux`, `initrd.img` and `modules.tar` (the tree repacked as one tar, names relative to
//! `modules/`, owned by root, no setuid bits), each with its size and sha256. Uploading them to
//! storage is the caller's job.
//!
//! The vmlinux is checked with the kernel-format check as soon as it has been read, so a bundle
//! with a gzip'd kernel or the wrong architecture is refused before the modules are repacked.
//! On any refusal every file this module created is removed again.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use strata_domain::DomainError;
use strata_domain::image::Architecture;
use strata_domain::kernel_format::{DETECT_LEN, Detected, KernelFormat, KernelFormatError};

use super::{
    ArchiveError, ArchiveLimits, ArchivePolicy, Entry, EntryKind, EntryVisitor, SinkIo, SourceCheck, SpecialFiles,
    StagedArchive, SymlinkTargets, check_staged, read_archive,
};

pub const VMLINUX: &str = "vmlinux";
pub const INITRD: &str = "initrd.img";
pub const MODULES_DIR: &str = "modules";
/// The name of the repacked modules tree in the output directory.
pub const MODULES_TAR: &str = "modules.tar";

/// Caps for one bundle. The defaults fit a distribution kernel with all its modules (about
/// 7,000 entries and 500 MiB unpacked) with room to spare.
#[derive(Debug, Clone)]
pub struct BundleLimits {
    /// The compressed bundle as staged.
    pub max_bundle_bytes: u64,
    /// The decompressed tar stream.
    pub max_unpacked_bytes: u64,
    pub max_entries: u64,
    pub max_path_len: usize,
}

impl Default for BundleLimits {
    fn default() -> Self {
        BundleLimits {
            max_bundle_bytes: 1 << 30,
            max_unpacked_bytes: 4 << 30,
            max_entries: 50_000,
            max_path_len: 1024,
        }
    }
}

/// A staged output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedArtifact {
    pub path: PathBuf,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// A bundle that passed every check; its files are in the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelBundle {
    /// The compressed bundle as received (its digest is the provenance digest).
    pub bundle: StagedArchive,
    pub kernel: Detected,
    pub vmlinux: StagedArtifact,
    pub initrd: Option<StagedArtifact>,
    /// Present when the bundle had at least one entry below `modules/`.
    pub modules: Option<StagedArtifact>,
    /// Entries of the bundle, extension headers included.
    pub entries: u64,
    pub unpacked_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Kernel(#[from] KernelFormatError),
}

impl BundleError {
    /// The typed client error, or `None` for an internal failure (log it, answer `internal`).
    pub fn to_domain(&self) -> Option<DomainError> {
        match self {
            BundleError::Archive(e) => e.to_domain(),
            BundleError::Kernel(e) => Some(e.clone().into()),
        }
    }
}

/// The reader policy for bundles: device nodes and FIFOs refused (a kernel bundle has no use for
/// them, and naming the entry is clearer than dropping it), symlinks confined to the bundle.
pub fn bundle_policy(limits: &BundleLimits) -> ArchivePolicy {
    ArchivePolicy {
        limits: ArchiveLimits {
            max_unpacked_bytes: limits.max_unpacked_bytes,
            max_entries: limits.max_entries,
            max_path_len: limits.max_path_len,
        },
        special_files: SpecialFiles::Refuse,
        symlinks: SymlinkTargets::Confined,
    }
}

/// Checks and extracts the staged bundle at `bundle` into `out_dir` (which must exist; the
/// names `vmlinux`, `initrd.img` and `modules.tar` must not). Size and `expected_sha256` are
/// checked before anything is decompressed. On error nothing this call created is left.
/// Blocking: use [`extract_kernel_bundle_async`] from async code.
pub fn extract_kernel_bundle(
    bundle: &Path,
    expected_sha256: Option<&str>,
    declared: Architecture,
    out_dir: &Path,
    limits: &BundleLimits,
) -> Result<KernelBundle, BundleError> {
    let staged = check_staged(
        bundle,
        &SourceCheck {
            max_bytes: limits.max_bundle_bytes,
            expected_sha256: expected_sha256.map(str::to_owned),
        },
    )?;
    let mut visitor = BundleVisitor {
        out_dir,
        declared,
        created: Cleanup::default(),
        vmlinux: None,
        initrd: None,
        modules: None,
    };
    let summary = read_archive(bundle, &bundle_policy(limits), &mut visitor)?;
    let Some((vmlinux, kernel)) = visitor.vmlinux.take() else {
        return Err(ArchiveError::invalid("the bundle has no vmlinux").into());
    };
    let modules = match visitor.modules.take() {
        Some(tar) => Some(tar.finish()?),
        None => None,
    };
    visitor.created.keep();
    Ok(KernelBundle {
        bundle: staged,
        kernel,
        vmlinux,
        initrd: visitor.initrd.take(),
        modules,
        entries: summary.headers,
        unpacked_bytes: summary.unpacked_bytes,
    })
}

/// [`extract_kernel_bundle`] on the blocking pool.
pub async fn extract_kernel_bundle_async(
    bundle: PathBuf,
    expected_sha256: Option<String>,
    declared: Architecture,
    out_dir: PathBuf,
    limits: BundleLimits,
) -> Result<KernelBundle, BundleError> {
    tokio::task::spawn_blocking(move || {
        extract_kernel_bundle(&bundle, expected_sha256.as_deref(), declared, &out_dir, &limits)
    })
    .await
    .map_err(|e| BundleError::Archive(ArchiveError::Io(io::Error::other(e))))?
}

/// Removes the files it lists when dropped, unless kept.
#[derive(Default)]
struct Cleanup {
    files: Vec<PathBuf>,
    kept: bool,
}

impl Cleanup {
    /// Creates `dir/name`, refusing to reuse or follow anything already there.
    fn create(&mut self, dir: &Path, name: &str) -> Result<(File, PathBuf), ArchiveError> {
        let path = dir.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(ArchiveError::Io)?;
        self.files.push(path.clone());
        Ok((file, path))
    }

    fn keep(&mut self) {
        self.kept = true;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.kept {
            for f in &self.files {
                let _ = std::fs::remove_file(f);
            }
        }
    }
}

/// A buffered file that hashes and counts what goes through it, keeping the first bytes for
/// the kernel-format check. Its write errors are tagged as staging I/O.
struct HashingFile {
    out: BufWriter<File>,
    hasher: Sha256,
    size: u64,
    head: Vec<u8>,
    keep_head: usize,
}

impl HashingFile {
    fn new(file: File, keep_head: usize) -> Self {
        HashingFile {
            out: BufWriter::with_capacity(256 * 1024, file),
            hasher: Sha256::new(),
            size: 0,
            head: Vec::new(),
            keep_head,
        }
    }

    fn finish(mut self, path: PathBuf) -> Result<(StagedArtifact, Vec<u8>), ArchiveError> {
        self.out.flush().map_err(ArchiveError::Io)?;
        Ok((
            StagedArtifact {
                path,
                size: self.size,
                sha256: hex::encode(self.hasher.finalize()),
            },
            self.head,
        ))
    }
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf).map_err(|e| io::Error::other(SinkIo(e)))?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        if self.head.len() < self.keep_head {
            let take = (self.keep_head - self.head.len()).min(n);
            self.head.extend_from_slice(&buf[..take]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush().map_err(|e| io::Error::other(SinkIo(e)))
    }
}

struct ModulesTar {
    builder: tar::Builder<HashingFile>,
    path: PathBuf,
}

impl ModulesTar {
    fn finish(self) -> Result<StagedArtifact, ArchiveError> {
        let file = self.builder.into_inner().map_err(ArchiveError::from_read)?;
        Ok(file.finish(self.path)?.0)
    }
}

struct BundleVisitor<'a> {
    out_dir: &'a Path,
    declared: Architecture,
    created: Cleanup,
    vmlinux: Option<(StagedArtifact, Detected)>,
    initrd: Option<StagedArtifact>,
    modules: Option<ModulesTar>,
}

impl BundleVisitor<'_> {
    fn stage_file(
        &mut self,
        entry: &mut Entry<'_>,
        name: &str,
        keep_head: usize,
    ) -> Result<(StagedArtifact, Vec<u8>), ArchiveError> {
        if *entry.kind() != EntryKind::File {
            return Err(ArchiveError::invalid(format!("{name} must be a regular file")));
        }
        let (file, path) = self.created.create(self.out_dir, name)?;
        let mut out = HashingFile::new(file, keep_head);
        entry.copy_to(&mut out)?;
        out.finish(path)
    }

    fn add_module_entry(&mut self, entry: &mut Entry<'_>, rel: &str) -> Result<(), ArchiveError> {
        if self.modules.is_none() {
            let (file, path) = self.created.create(self.out_dir, MODULES_TAR)?;
            let mut builder = tar::Builder::new(HashingFile::new(file, 0));
            builder.mode(tar::HeaderMode::Deterministic);
            self.modules = Some(ModulesTar { builder, path });
        }
        let Some(modules) = self.modules.as_mut() else {
            return Err(ArchiveError::invalid("internal: modules tar missing"));
        };
        let meta = entry.meta();
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.mode & 0o777);
        header.set_mtime(meta.mtime);
        header.set_uid(0);
        header.set_gid(0);
        let inside_modules = |p: &str| p == MODULES_DIR || p.starts_with("modules/");
        let result = match entry.kind().clone() {
            EntryKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                modules.builder.append_data(&mut header, format!("{rel}/"), io::empty())
            }
            EntryKind::File => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(meta.size);
                modules.builder.append_data(&mut header, rel, &mut *entry)
            }
            EntryKind::Symlink { target, resolved } => {
                // resolved inside modules/ and, as repacked, never above its new root (a target
                // like `../modules/x` resolves inside but would leave once `modules/` is stripped)
                if !resolved.as_deref().is_some_and(inside_modules) || !stays_below(rel, &target) {
                    return Err(ArchiveError::invalid(format!(
                        "symlink {} points outside modules/",
                        super::quote(entry.path().as_bytes())
                    )));
                }
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                modules.builder.append_link(&mut header, rel, target)
            }
            EntryKind::Hardlink { target } => {
                let Some(target_rel) = target.strip_prefix("modules/") else {
                    return Err(ArchiveError::invalid(format!(
                        "hardlink {} points outside modules/",
                        super::quote(entry.path().as_bytes())
                    )));
                };
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                modules.builder.append_link(&mut header, rel, target_rel)
            }
        };
        result.map_err(ArchiveError::from_read)
    }
}

impl EntryVisitor for BundleVisitor<'_> {
    type Error = BundleError;

    fn visit(&mut self, entry: &mut Entry<'_>) -> Result<(), BundleError> {
        let path = entry.path().to_owned();
        match path.as_str() {
            VMLINUX => {
                let (artifact, head) = self.stage_file(entry, VMLINUX, DETECT_LEN)?;
                let kernel = KernelFormat::validate(&head, self.declared)?;
                self.vmlinux = Some((artifact, kernel));
            }
            INITRD => {
                let (artifact, _) = self.stage_file(entry, INITRD, 0)?;
                self.initrd = Some(artifact);
            }
            MODULES_DIR => {
                if *entry.kind() != EntryKind::Dir {
                    return Err(ArchiveError::invalid("modules must be a directory").into());
                }
            }
            p => match p.strip_prefix("modules/") {
                Some(rel) => self.add_module_entry(entry, rel)?,
                None => {
                    return Err(ArchiveError::invalid(format!(
                        "unexpected entry {}; a kernel bundle holds only vmlinux, initrd.img and modules/",
                        super::quote(p.as_bytes())
                    ))
                    .into());
                }
            },
        }
        Ok(())
    }
}

/// Whether the relative symlink `target` of the entry at `rel` resolves, lexically, without
/// going above the root `rel` is relative to.
fn stays_below(rel: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return false;
    }
    let mut depth = rel.split('/').count().saturating_sub(1);
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            _ => depth += 1,
        }
    }
    true
}
