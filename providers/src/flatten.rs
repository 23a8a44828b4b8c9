//! Applies container image layers, in order, to a staging tree the way a container runtime
//! does, and records what each path should look like in the filesystem built from it.
//!
//! Every layer is read by the one hardened tar reader ([`crate::archive`]), which refuses `..`,
//! absolute names, over-long names, bombs and entries reached through a symlink of the same
//! layer. What it cannot know is the tree the earlier layers built: here every entry's parent
//! directories are resolved inside the staging tree, following symlinks from earlier layers as
//! the guest would (absolute targets from the image's root), and a path that would leave the
//! tree makes the layer `invalid-archive`. Nothing is ever written outside the tree.
//!
//! - Whiteouts: `.wh.NAME` removes `NAME` of lower layers; `.wh..wh..opq` empties its directory
//!   of what lower layers put there. Both only act on lower layers, as the OCI spec says.
//! - Files are written as the process user; owners, modes (setuid/setgid/sticky included) and
//!   mtimes go into the entry list that [`crate::ext4`] applies to the image.
//! - Hardlinks are made in the tree, so the image shares the inode.
//!
//! Blocking: call from `spawn_blocking`.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use crate::archive::{
    ArchiveError, ArchiveLimits, ArchivePolicy, Entry, EntryKind as ArchiveKind, EntryVisitor, SpecialFiles,
    SymlinkTargets, read_archive_from,
};
use crate::ext4::{EntryKind, TreeEntry};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
/// Symlinks followed while resolving one path, as Linux's `ELOOP` limit.
const MAX_LINK_HOPS: usize = 40;

/// Caps over the whole image (every layer together).
#[derive(Debug, Clone)]
pub struct FlattenLimits {
    /// Per layer, as the archive reader applies them.
    pub layer: ArchiveLimits,
    /// Bytes of file data written to the tree, over all layers.
    pub max_tree_bytes: u64,
}

/// The tree and what the image says about each path in it.
#[derive(Debug, Default)]
pub struct Flattened {
    /// Relative path -> owner, mode and time. Device nodes and FIFOs are only here.
    pub entries: BTreeMap<String, TreeEntry>,
    /// File data written, over all layers (later layers may have replaced some of it).
    pub bytes_written: u64,
}

impl Flattened {
    pub fn tree_entries(&self) -> Vec<TreeEntry> {
        self.entries.values().cloned().collect()
    }
}

pub struct Flattener<'a> {
    root: &'a Path,
    limits: FlattenLimits,
    state: Flattened,
}

impl<'a> Flattener<'a> {
    /// `root` must be an empty directory owned by this process.
    pub fn new(root: &'a Path, limits: FlattenLimits) -> Self {
        Self {
            root,
            limits,
            state: Flattened::default(),
        }
    }

    /// Applies one layer (a plain, gzip or zstd tar, detected by its magic bytes).
    pub fn apply(&mut self, layer: &Path) -> Result<(), ArchiveError> {
        self.apply_from(File::open(layer).map_err(ArchiveError::io)?)
    }

    /// [`Flattener::apply`] over an open layer (a cached blob, an entry of an outer archive).
    pub fn apply_from(&mut self, layer: impl io::Read) -> Result<(), ArchiveError> {
        let policy = ArchivePolicy {
            limits: self.limits.layer.clone(),
            special_files: SpecialFiles::Skip,
            symlinks: SymlinkTargets::Any,
        };
        let mut visitor = LayerVisitor {
            root: self.root,
            max_tree_bytes: self.limits.max_tree_bytes,
            state: &mut self.state,
            this_layer: HashSet::new(),
        };
        read_archive_from(layer, &policy, &mut visitor)?;
        Ok(())
    }

    pub fn finish(self) -> Flattened {
        self.state
    }
}

struct LayerVisitor<'s> {
    root: &'s Path,
    max_tree_bytes: u64,
    state: &'s mut Flattened,
    /// Paths this layer created: its own whiteouts do not remove them.
    this_layer: HashSet<String>,
}

fn invalid(reason: impl Into<String>) -> ArchiveError {
    ArchiveError::invalid(reason)
}

/// An entry name for a message: quoted, at most 80 characters of it.
pub(crate) fn quoted(p: &str) -> String {
    let mut s: String = p.chars().take(80).collect();
    if s.len() < p.len() {
        s.push_str("...");
    }
    format!("{s:?}")
}

impl LayerVisitor<'_> {
    /// Resolves the directory `rel` (relative, normalised) inside the tree, following symlinks
    /// that earlier layers made; returns its path inside the tree, relative to the root.
    fn resolve_dir(&self, rel: &str) -> Result<String, ArchiveError> {
        let mut resolved: Vec<String> = Vec::new();
        let mut pending: Vec<String> = rel
            .split('/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(str::to_owned)
            .collect();
        let mut hops = 0;
        while let Some(c) = pending.pop() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    if resolved.pop().is_none() {
                        return Err(invalid(format!(
                            "{} leads out of the image through a symlink",
                            quoted(rel)
                        )));
                    }
                    continue;
                }
                _ => {}
            }
            let here = self.root.join(resolved.join("/")).join(&c);
            match fs::symlink_metadata(&here) {
                Ok(md) if md.file_type().is_symlink() => {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Err(invalid(format!("too many symlinks resolving {}", quoted(rel))));
                    }
                    let target = fs::read_link(&here).map_err(ArchiveError::io)?;
                    let target = target.to_string_lossy().into_owned();
                    if target.starts_with('/') {
                        resolved.clear();
                    }
                    for t in target.split('/').filter(|t| !t.is_empty()).rev() {
                        pending.push(t.to_owned());
                    }
                }
                Ok(md) if md.is_dir() => resolved.push(c),
                Ok(_) => return Err(invalid(format!("{} is not a directory in a lower layer", quoted(rel)))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // a parent the layer did not list: created as the runtime would
                    fs::create_dir(&here).map_err(ArchiveError::io)?;
                    // (no entry: the builder keeps what mkfs gives it, root and 0755, as runtimes do)
                    resolved.push(c);
                }
                Err(e) => return Err(ArchiveError::io(e)),
            }
        }
        Ok(resolved.join("/"))
    }

    /// Removes `rel` (file, link or whole directory) from the tree and from the entry list.
    fn remove(&mut self, rel: &str) -> Result<(), ArchiveError> {
        let path = self.root.join(rel);
        match fs::symlink_metadata(&path) {
            Ok(md) if md.is_dir() => fs::remove_dir_all(&path).map_err(ArchiveError::io)?,
            Ok(_) => fs::remove_file(&path).map_err(ArchiveError::io)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ArchiveError::io(e)),
        }
        let prefix = format!("{rel}/");
        self.state.entries.retain(|k, _| k != rel && !k.starts_with(&prefix));
        Ok(())
    }

    fn record(&mut self, rel: &str, kind: EntryKind, meta: &crate::archive::EntryMeta) {
        self.this_layer.insert(rel.to_owned());
        self.state.entries.insert(
            rel.to_owned(),
            TreeEntry {
                path: rel.to_owned(),
                kind,
                uid: u32::try_from(meta.uid).unwrap_or(u32::MAX),
                gid: u32::try_from(meta.gid).unwrap_or(u32::MAX),
                mode: meta.mode & 0o7777,
                mtime: i64::try_from(meta.mtime).unwrap_or(i64::MAX),
            },
        );
    }
}

impl EntryVisitor for LayerVisitor<'_> {
    type Error = ArchiveError;

    fn visit(&mut self, entry: &mut Entry<'_>) -> Result<(), ArchiveError> {
        let raw = entry.path().to_owned();
        let (parent_raw, name) = match raw.rsplit_once('/') {
            Some((p, n)) => (p.to_owned(), n.to_owned()),
            None => (String::new(), raw.clone()),
        };
        let parent = self.resolve_dir(&parent_raw)?;
        let join = |n: &str| {
            if parent.is_empty() {
                n.to_owned()
            } else {
                format!("{parent}/{n}")
            }
        };
        // whiteouts act on lower layers only
        if name == OPAQUE {
            let dir = self.root.join(&parent);
            for child in fs::read_dir(&dir).map_err(ArchiveError::io)? {
                let child = child.map_err(ArchiveError::io)?;
                let rel = join(&child.file_name().to_string_lossy());
                if !self.this_layer.contains(&rel) {
                    self.remove(&rel)?;
                }
            }
            return Ok(());
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(invalid(format!("bad whiteout {}", quoted(&raw))));
            }
            let rel = join(hidden);
            if !self.this_layer.contains(&rel) {
                self.remove(&rel)?;
            }
            return Ok(());
        }
        let rel = join(&name);
        let path = self.root.join(&rel);
        let meta = entry.meta();
        let existing = fs::symlink_metadata(&path).ok();
        match entry.kind().clone() {
            ArchiveKind::Dir => {
                match existing {
                    Some(md) if md.is_dir() => {}
                    Some(_) => {
                        self.remove(&rel)?;
                        fs::create_dir(&path).map_err(ArchiveError::io)?;
                    }
                    None => fs::create_dir(&path).map_err(ArchiveError::io)?,
                }
                // the tree stays writable for later layers; the image gets the layer's mode
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(ArchiveError::io)?;
                self.record(&rel, EntryKind::InTree, &meta);
            }
            ArchiveKind::File => {
                if existing.is_some() {
                    self.remove(&rel)?;
                }
                if self.state.bytes_written.saturating_add(meta.size) > self.max_tree_bytes {
                    return Err(invalid(format!(
                        "the image is over {} bytes of files",
                        self.max_tree_bytes
                    )));
                }
                let mut out = File::create(&path).map_err(ArchiveError::io)?;
                let n = entry.copy_to(&mut out)?;
                self.state.bytes_written += n;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).map_err(ArchiveError::io)?;
                self.record(&rel, EntryKind::InTree, &meta);
            }
            ArchiveKind::Symlink { target, .. } => {
                if existing.is_some() {
                    self.remove(&rel)?;
                }
                symlink(&target, &path).map_err(ArchiveError::io)?;
                self.record(&rel, EntryKind::InTree, &meta);
            }
            ArchiveKind::Hardlink { target } => {
                // the target is an archive path; resolve its parents in the tree too
                let (tp, tn) = match target.rsplit_once('/') {
                    Some((p, n)) => (p.to_owned(), n.to_owned()),
                    None => (String::new(), target.clone()),
                };
                let tparent = self.resolve_dir(&tp)?;
                let trel = if tparent.is_empty() {
                    tn
                } else {
                    format!("{tparent}/{tn}")
                };
                let tpath = self.root.join(&trel);
                match fs::symlink_metadata(&tpath) {
                    Ok(md) if md.is_file() => {}
                    _ => {
                        return Err(invalid(format!(
                            "hardlink {} to {}, which is not a file",
                            quoted(&raw),
                            quoted(&target)
                        )));
                    }
                }
                if existing.is_some() {
                    self.remove(&rel)?;
                }
                fs::hard_link(&tpath, &path).map_err(ArchiveError::io)?;
                // one inode: the target's owner and mode are the link's
                let m = self.state.entries.get(&trel).cloned();
                if let Some(mut m) = m {
                    m.path = rel.clone();
                    self.this_layer.insert(rel.clone());
                    self.state.entries.insert(rel, m);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
