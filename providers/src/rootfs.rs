//! Layers to a bootable ext4 root filesystem: the flatten-and-build half of an OCI pull, shared
//! with docker-archive loads and `docker import`. Blocking: call from `spawn_blocking`.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::archive::ArchiveError;
use crate::ext4::{self, Ext4Error, Ext4Spec};
use crate::flatten::{FlattenLimits, Flattener};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A hostile or broken layer, or layers over the entry or byte limits: the caller's to fix
    /// (the message names the entry or the limit).
    #[error("{0}")]
    Invalid(String),
    /// The asked-for filesystem size cannot hold the content (the message says by how much).
    #[error("{0}")]
    TooLarge(String),
    #[error("cancelled")]
    Cancelled,
    /// The server's fault (staging disk, tools): for the log.
    #[error("{0}")]
    Internal(String),
}

impl From<ArchiveError> for RootfsError {
    fn from(e: ArchiveError) -> Self {
        match e {
            ArchiveError::Io(io) => RootfsError::Internal(format!("flattening: {io}")),
            other => RootfsError::Invalid(other.to_string()),
        }
    }
}

impl From<Ext4Error> for RootfsError {
    fn from(e: Ext4Error) -> Self {
        match e {
            Ext4Error::TooSmall { .. } => RootfsError::TooLarge(e.to_string()),
            Ext4Error::UnsupportedName(_) => RootfsError::Invalid(e.to_string()),
            Ext4Error::Cancelled => RootfsError::Cancelled,
            other => RootfsError::Internal(other.to_string()),
        }
    }
}

pub struct RootfsSpec<'a> {
    /// Layers in order, each a plain, gzip or zstd tar: open files, so a cache evicting a
    /// layer's path meanwhile cannot pull it away.
    pub layers: &'a [File],
    /// A directory of the caller's own; the tree is made and removed in it.
    pub work_dir: &'a Path,
    pub limits: FlattenLimits,
    /// `None`: content x 1.5, at least 64 MiB.
    pub size_bytes: Option<u64>,
    pub cancel: &'a AtomicBool,
    pub tool_timeout: Duration,
    /// Told when the layers are applied and the filesystem build starts.
    pub on_building: &'a (dyn Fn() + Sync),
}

/// Applies the layers in order (whiteouts, opaque directories, owners and modes kept) and builds
/// `<work_dir>/rootfs.ext4`. Returns its path and size. The tree is removed on every path.
pub fn build(spec: &RootfsSpec<'_>) -> Result<(PathBuf, u64), RootfsError> {
    let tree = spec.work_dir.join("tree");
    std::fs::create_dir_all(&tree).map_err(|e| RootfsError::Internal(format!("staging: {e}")))?;
    let result = build_in(spec, &tree);
    let _ = std::fs::remove_dir_all(&tree);
    result
}

fn build_in(spec: &RootfsSpec<'_>, tree: &Path) -> Result<(PathBuf, u64), RootfsError> {
    let mut f = Flattener::new(tree, spec.limits.clone());
    for layer in spec.layers {
        if spec.cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(RootfsError::Cancelled);
        }
        f.apply_from(BufReader::with_capacity(256 * 1024, layer))?;
    }
    let flat = f.finish();
    (spec.on_building)();
    let out = spec.work_dir.join("rootfs.ext4");
    let built = ext4::build(&Ext4Spec {
        tree,
        entries: &flat.tree_entries(),
        size_bytes: spec.size_bytes,
        out: &out,
        cancel: spec.cancel,
        tool_timeout: spec.tool_timeout,
    })?;
    Ok((out, built.size_bytes))
}

/// An ext4 filesystem image: the superblock's magic (0xEF53 at byte 1080).
#[derive(Debug, Clone, Copy, Default)]
pub struct Ext4Fs;

impl crate::ingest::Inspector for Ext4Fs {
    type Found = ();
    type Rejection = &'static str;
    fn head_len(&self) -> usize {
        2048
    }
    fn inspect(&self, head: &[u8]) -> Result<(), &'static str> {
        if head.get(1080..1082) == Some(&[0x53, 0xEF][..]) {
            Ok(())
        } else {
            Err("not an ext4 filesystem")
        }
    }
}
