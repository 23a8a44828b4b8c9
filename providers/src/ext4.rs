//! Builds an ext4 filesystem image from a staged directory tree with e2fsprogs, unprivileged.
//!
//! `mkfs.ext4 -d` copies the tree, but with the owners of the process that extracted it: Strata
//! does not run as root, so it cannot `chown` a layer's `0:0` or `1000:1000` files in staging.
//! The tree therefore holds contents, links and names; what an image's layers say about each
//! entry (owner, mode with setuid/setgid/sticky, mtime) comes in a list of [`TreeEntry`], and a
//! `debugfs -w` pass sets those per inode afterwards. Device nodes and FIFOs, which an
//! unprivileged process cannot create in staging, are created by the same pass. `e2fsck -fn`
//! must then find the image clean.
//!
//! Everything here blocks (processes, directory walks): call it from `spawn_blocking`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Smallest filesystem built when no size is asked for.
pub const MIN_SIZE_BYTES: u64 = 64 << 20;
const BLOCK: u64 = 4096;

/// What a layer said about one path of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Relative to the tree's root, `/`-separated, without a leading `/` (`usr/bin/su`).
    pub path: String,
    pub kind: EntryKind,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits including setuid, setgid and sticky (`0o4755`); no file-type bits.
    pub mode: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Present in the tree (regular file, directory, symlink; hardlinks share an inode there).
    InTree,
    /// Created by the debugfs pass: not in the tree.
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}

#[derive(Debug)]
pub struct Ext4Spec<'a> {
    pub tree: &'a Path,
    pub entries: &'a [TreeEntry],
    /// The filesystem's size; `None` means content x 1.5, at least [`MIN_SIZE_BYTES`].
    pub size_bytes: Option<u64>,
    pub out: &'a Path,
    /// Set by the caller to stop (the job was cancelled): the running tool is killed.
    pub cancel: &'a AtomicBool,
    /// Longest any one tool may run.
    pub tool_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ext4Built {
    pub size_bytes: u64,
    /// What the tree holds, in 4 KiB blocks (hardlinks counted once).
    pub content_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    /// The asked-for size cannot hold the content.
    #[error("the filesystem needs about {needed} bytes but {given} were asked for ({short} short)", short = needed.saturating_sub(*given))]
    TooSmall { needed: u64, given: u64 },
    /// A path the debugfs command language cannot carry (a newline in a name).
    #[error("unsupported file name {0:?}")]
    UnsupportedName(String),
    #[error("cancelled")]
    Cancelled,
    /// A tool failed or is missing; the detail is for the log.
    #[error("{tool}: {detail}")]
    Tool { tool: &'static str, detail: String },
    #[error("staging: {0}")]
    Io(#[from] io::Error),
}

/// Counts what the tree holds, in blocks, and the number of inodes it needs.
fn measure(tree: &Path) -> io::Result<(u64, u64)> {
    let mut bytes = 0u64;
    let mut inodes = 0u64;
    let mut seen = HashSet::new();
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        bytes += BLOCK;
        inodes += 1;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let md = entry.path().symlink_metadata()?;
            if md.is_dir() {
                stack.push(entry.path());
            } else {
                if md.nlink() > 1 && !seen.insert((md.dev(), md.ino())) {
                    continue;
                }
                inodes += 1;
                bytes += md.len().div_ceil(BLOCK) * BLOCK;
            }
        }
    }
    Ok((bytes, inodes))
}

/// Runs `cmd` to completion, killing it on cancel or after `timeout`.
fn run(tool: &'static str, mut cmd: Command, cancel: &AtomicBool, timeout: Duration) -> Result<String, Ext4Error> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Ext4Error::Tool {
            tool,
            detail: format!("cannot start: {e}"),
        })?;
    let started = Instant::now();
    // Read output on threads so a chatty tool cannot fill its pipe and stall.
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = io::Read::read_to_string(o, &mut s);
        }
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = io::Read::read_to_string(e, &mut s);
        }
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if cancel.load(Ordering::Relaxed) || started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            if cancel.load(Ordering::Relaxed) {
                return Err(Ext4Error::Cancelled);
            }
            return Err(Ext4Error::Tool {
                tool,
                detail: format!("still running after {timeout:?}"),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    if status.success() {
        Ok(format!("{stdout}{stderr}"))
    } else {
        Err(Ext4Error::Tool {
            tool,
            detail: format!("{status}: {}", last_lines(&format!("{stdout}{stderr}"), 5)),
        })
    }
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// A path in debugfs's command language: absolute, in double quotes, `"` doubled.
fn quoted(path: &str) -> Result<String, Ext4Error> {
    if path.contains('\n') || path.contains('\r') || path.contains('\0') {
        return Err(Ext4Error::UnsupportedName(path.to_owned()));
    }
    Ok(format!("\"/{}\"", path.trim_start_matches('/').replace('"', "\"\"")))
}

/// The debugfs commands that make the image say what the layers said.
fn fixups(tree: &Path, entries: &[TreeEntry]) -> Result<String, Ext4Error> {
    let mut cmds = String::new();
    for e in entries {
        let q = quoted(&e.path)?;
        let (type_bits, current) = match e.kind {
            EntryKind::InTree => {
                let md = match tree.join(&e.path).symlink_metadata() {
                    Ok(md) => md,
                    // replaced or whited out by a later layer: nothing to fix
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(err.into()),
                };
                (md.mode() & 0o170000, Some(md))
            }
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                let (parent, name) = split_parent(&e.path);
                let c = if matches!(e.kind, EntryKind::CharDevice { .. }) {
                    'c'
                } else {
                    'b'
                };
                let _ = writeln!(cmds, "cd {}", quoted(parent)?);
                let _ = writeln!(cmds, "mknod {} {c} {major} {minor}", quoted_name(name)?);
                (if c == 'c' { 0o020000 } else { 0o060000 }, None)
            }
            EntryKind::Fifo => {
                let (parent, name) = split_parent(&e.path);
                let _ = writeln!(cmds, "cd {}", quoted(parent)?);
                let _ = writeln!(cmds, "mknod {} p", quoted_name(name)?);
                (0o010000, None)
            }
        };
        let mode = type_bits | (e.mode & 0o7777);
        let same = |f: &dyn Fn(&std::fs::Metadata) -> bool| current.as_ref().is_some_and(f);
        if !same(&|m| m.uid() == e.uid) {
            let _ = writeln!(cmds, "sif {q} uid {}", e.uid);
        }
        if !same(&|m| m.gid() == e.gid) {
            let _ = writeln!(cmds, "sif {q} gid {}", e.gid);
        }
        // symlinks keep 0777 whatever a layer says, as on every Linux filesystem
        if type_bits != 0o120000 && !same(&|m| m.mode() == mode) {
            let _ = writeln!(cmds, "sif {q} mode 0{mode:o}");
        }
        if !same(&|m| m.mtime() == e.mtime) {
            let _ = writeln!(cmds, "sif {q} mtime @{}", e.mtime.max(0));
        }
    }
    Ok(cmds)
}

fn split_parent(path: &str) -> (&str, &str) {
    let p = path.trim_start_matches('/');
    match p.rsplit_once('/') {
        Some((parent, name)) => (parent, name),
        None => ("", p),
    }
}

fn quoted_name(name: &str) -> Result<String, Ext4Error> {
    if name.contains(['\n', '\r', '\0', '/']) {
        return Err(Ext4Error::UnsupportedName(name.to_owned()));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// Builds `spec.out` from `spec.tree` and `spec.entries`, then checks it with `e2fsck -fn`. On
/// any error the output file is removed.
pub fn build(spec: &Ext4Spec<'_>) -> Result<Ext4Built, Ext4Error> {
    let result = build_inner(spec);
    if result.is_err() {
        let _ = std::fs::remove_file(spec.out);
    }
    result
}

fn build_inner(spec: &Ext4Spec<'_>) -> Result<Ext4Built, Ext4Error> {
    let (content, tree_inodes) = measure(spec.tree)?;
    let specials = spec.entries.iter().filter(|e| e.kind != EntryKind::InTree).count() as u64;
    let inodes = (tree_inodes + specials) * 5 / 4 + 1024;
    // What ext4 adds: inode tables (256 bytes each), the journal, group descriptors.
    let overhead = inodes * 256 + (4 << 20);
    let needed = content + overhead;
    let size = match spec.size_bytes {
        Some(given) if given < needed => return Err(Ext4Error::TooSmall { needed, given }),
        Some(given) => given,
        None => (content.saturating_mul(3) / 2 + overhead).max(MIN_SIZE_BYTES),
    };
    let size = size.div_ceil(BLOCK) * BLOCK;
    let cmds = fixups(spec.tree, spec.entries)?;
    let mut mkfs = Command::new("mkfs.ext4");
    mkfs.args([
        "-q",
        "-F",
        "-t",
        "ext4",
        "-b",
        "4096",
        "-m",
        "0",
        "-E",
        "root_owner=0:0",
        "-N",
    ])
    .arg(inodes.to_string())
    .arg("-d")
    .arg(spec.tree)
    .arg(spec.out)
    .arg(format!("{}k", size / 1024));
    match run("mkfs.ext4", mkfs, spec.cancel, spec.tool_timeout) {
        Ok(_) => {}
        Err(Ext4Error::Tool { detail, .. })
            if spec.size_bytes.is_some() && (detail.contains("space") || detail.contains("allocate")) =>
        {
            return Err(Ext4Error::TooSmall {
                needed: needed.max(size + BLOCK),
                given: size,
            });
        }
        Err(e) => return Err(e),
    }
    if !cmds.is_empty() {
        let file = with_extension(spec.out, "debugfs");
        std::fs::write(&file, &cmds)?;
        let mut debugfs = Command::new("debugfs");
        debugfs.arg("-w").arg("-f").arg(&file).arg(spec.out);
        let out = run("debugfs", debugfs, spec.cancel, spec.tool_timeout);
        let _ = std::fs::remove_file(&file);
        // debugfs exits 0 even when a command fails; its complaints follow the echoed command.
        let out = out?;
        if let Some(bad) = out.lines().find(|l| is_debugfs_complaint(l)) {
            return Err(Ext4Error::Tool {
                tool: "debugfs",
                detail: bad.to_owned(),
            });
        }
    }
    let mut fsck = Command::new("e2fsck");
    fsck.arg("-fn").arg(spec.out);
    run("e2fsck", fsck, spec.cancel, spec.tool_timeout)?;
    Ok(Ext4Built {
        size_bytes: size,
        content_bytes: content,
    })
}

fn is_debugfs_complaint(line: &str) -> bool {
    !line.starts_with("debugfs") && !line.starts_with("Allocated inode") && !line.trim().is_empty()
}

fn with_extension(p: &Path, ext: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    pub(crate) fn debugfs(img: &Path, req: &str) -> String {
        let out = Command::new("debugfs")
            .arg("-R")
            .arg(req)
            .arg(img)
            .output()
            .expect("debugfs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `(uid, gid, mode)` of a path in the image, as debugfs reads it.
    fn stat(img: &Path, path: &str) -> (u32, u32, u32) {
        let s = debugfs(img, &format!("stat \"{}\"", path.replace('"', "\"\"")));
        let field = |name: &str| -> &str {
            let at = s.find(name).unwrap_or_else(|| panic!("no {name} for {path}: {s}"));
            s[at + name.len()..].split_whitespace().next().unwrap_or_default()
        };
        let mode = u32::from_str_radix(field("Mode:"), 8).unwrap_or(u32::MAX);
        (
            field("User:").parse().unwrap_or(u32::MAX),
            field("Group:").parse().unwrap_or(u32::MAX),
            mode,
        )
    }

    fn entry(path: &str, uid: u32, gid: u32, mode: u32) -> TreeEntry {
        TreeEntry {
            path: path.into(),
            kind: EntryKind::InTree,
            uid,
            gid,
            mode,
            mtime: 1_700_000_000,
        }
    }

    fn spec<'a>(
        tree: &'a Path,
        entries: &'a [TreeEntry],
        out: &'a Path,
        size: Option<u64>,
        cancel: &'a AtomicBool,
    ) -> Ext4Spec<'a> {
        Ext4Spec {
            tree,
            entries,
            size_bytes: size,
            out,
            cancel,
            tool_timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn owners_modes_links_and_devices_come_from_the_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("usr/bin")).expect("mkdir");
        std::fs::create_dir_all(tree.join("home/u")).expect("mkdir");
        std::fs::create_dir_all(tree.join("dev")).expect("mkdir");
        std::fs::create_dir_all(tree.join("tmp")).expect("mkdir");
        std::fs::write(tree.join("usr/bin/su"), b"#!/bin/sh\n").expect("write");
        std::fs::hard_link(tree.join("usr/bin/su"), tree.join("usr/bin/su2")).expect("link");
        std::fs::write(tree.join("home/u/secret \"q\""), b"s").expect("write");
        symlink("/usr/bin/su", tree.join("abs")).expect("symlink");
        symlink("../usr/bin", tree.join("home/rel")).expect("symlink");
        let entries = vec![
            entry("usr/bin/su", 0, 0, 0o4755),
            entry("home/u", 1000, 1000, 0o700),
            entry("home/u/secret \"q\"", 1000, 1000, 0o600),
            entry("tmp", 0, 0, 0o1777),
            entry("abs", 0, 0, 0o777),
            TreeEntry {
                kind: EntryKind::CharDevice { major: 1, minor: 3 },
                ..entry("dev/null", 0, 0, 0o666)
            },
            TreeEntry {
                kind: EntryKind::Fifo,
                ..entry("dev/fifo", 0, 5, 0o620)
            },
        ];
        let img = dir.path().join("fs.ext4");
        let cancel = AtomicBool::new(false);
        let built = build(&spec(&tree, &entries, &img, None, &cancel)).expect("build");
        assert_eq!(built.size_bytes, MIN_SIZE_BYTES);
        assert_eq!(std::fs::metadata(&img).expect("image").len(), MIN_SIZE_BYTES);
        assert_eq!(stat(&img, "/usr/bin/su"), (0, 0, 0o4755));
        assert_eq!(stat(&img, "/home/u"), (1000, 1000, 0o700));
        assert_eq!(stat(&img, "/home/u/secret \"q\""), (1000, 1000, 0o600));
        assert_eq!(stat(&img, "/tmp").2, 0o1777);
        let listing = debugfs(&img, "ls -l /usr/bin");
        let inode = |name: &str| {
            listing
                .lines()
                .find(|l| l.trim_end().ends_with(name))
                .and_then(|l| l.split_whitespace().next())
                .map(str::to_owned)
        };
        assert_eq!(inode(" su"), inode(" su2"), "a hardlink shares the inode: {listing}");
        assert!(debugfs(&img, "stat /abs").contains("Fast link dest: \"/usr/bin/su\""));
        assert!(debugfs(&img, "stat /home/rel").contains("\"../usr/bin\""));
        let null = debugfs(&img, "stat /dev/null");
        assert!(null.contains("Type: character special"), "{null}");
        assert!(null.contains("Device major/minor number: 01:03"), "{null}");
        assert_eq!(stat(&img, "/dev/null").2, 0o666);
        let fifo = debugfs(&img, "stat /dev/fifo");
        assert!(fifo.contains("Type: FIFO"), "{fifo}");
        assert_eq!(stat(&img, "/dev/fifo"), (0, 5, 0o620));
        assert!(
            debugfs(&img, "stat /usr/bin/su").contains("mtime: 0x6553f100"),
            "mtime from the entry"
        );
        // an independent check of the whole image
        let fsck = Command::new("e2fsck").arg("-fn").arg(&img).output().expect("e2fsck");
        assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
    }

    #[test]
    fn too_small_says_by_how_much_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(&tree).expect("mkdir");
        std::fs::write(tree.join("big"), vec![7u8; 8 << 20]).expect("write");
        let img = dir.path().join("fs.ext4");
        let cancel = AtomicBool::new(false);
        let err = build(&spec(&tree, &[], &img, Some(4 << 20), &cancel)).expect_err("too small");
        match err {
            Ext4Error::TooSmall { needed, given } => {
                assert_eq!(given, 4 << 20);
                assert!(needed > 8 << 20, "{needed}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!img.exists());
        // a size that fits is used as given
        let built = build(&spec(&tree, &[], &img, Some(32 << 20), &cancel)).expect("fits");
        assert_eq!(built.size_bytes, 32 << 20);
        assert!(built.content_bytes >= 8 << 20);
    }

    #[test]
    fn cancel_stops_and_cleans_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(&tree).expect("mkdir");
        let img = dir.path().join("fs.ext4");
        let cancel = AtomicBool::new(true);
        let err = build(&spec(&tree, &[], &img, None, &cancel)).expect_err("cancelled");
        assert!(matches!(err, Ext4Error::Cancelled), "{err:?}");
        assert!(!img.exists());
    }

    #[test]
    fn names_debugfs_cannot_carry_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(&tree).expect("mkdir");
        let entries = [TreeEntry {
            kind: EntryKind::Fifo,
            ..entry("a\nb", 0, 0, 0o600)
        }];
        let img = dir.path().join("fs.ext4");
        let cancel = AtomicBool::new(false);
        let err = build(&spec(&tree, &entries, &img, None, &cancel)).expect_err("refused");
        assert!(matches!(err, Ext4Error::UnsupportedName(_)), "{err:?}");
    }
}
