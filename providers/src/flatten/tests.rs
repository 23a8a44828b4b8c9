use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::*;
use crate::ext4::tests::debugfs;
use crate::ext4::{self, Ext4Spec};

/// A layer as a tar the `tar` crate writes: (path, kind, uid, gid, mode, data or link target).
enum L<'a> {
    Dir(&'a str, u32, u32, u32),
    File(&'a str, u32, u32, u32, &'a [u8]),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

fn layer(dir: &Path, name: &str, entries: &[L<'_>]) -> PathBuf {
    let path = dir.join(name);
    let mut b = tar::Builder::new(File::create(&path).expect("create"));
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        match e {
            L::Dir(p, uid, gid, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_uid(u64::from(*uid));
                h.set_gid(u64::from(*gid));
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, p, io::empty()).expect("dir");
            }
            L::File(p, uid, gid, mode, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_uid(u64::from(*uid));
                h.set_gid(u64::from(*gid));
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).expect("file");
            }
            L::Sym(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).expect("symlink");
            }
            L::Hard(p, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_link(&mut h, p, target).expect("hardlink");
            }
        }
    }
    b.finish().expect("finish");
    path
}

fn limits() -> FlattenLimits {
    FlattenLimits {
        layer: ArchiveLimits {
            max_unpacked_bytes: 64 << 20,
            max_entries: 10_000,
            max_path_len: 4096,
        },
        max_tree_bytes: 32 << 20,
    }
}

#[test]
fn layers_flatten_with_whiteouts_links_and_owners_into_a_clean_ext4() {
    let dir = tempfile::tempdir().expect("tempdir");
    let l1 = layer(
        dir.path(),
        "l1.tar",
        &[
            L::Dir("etc", 0, 0, 0o755),
            L::File("etc/passwd", 0, 0, 0o644, b"root:x:0:0\n"),
            L::File("etc/gone", 0, 0, 0o644, b"whited out later\n"),
            L::Dir("opt", 0, 0, 0o755),
            L::File("opt/old", 0, 0, 0o644, b"lower\n"),
            L::Dir("usr", 0, 0, 0o755),
            L::Dir("usr/lib", 0, 0, 0o755),
            L::Sym("lib", "usr/lib"),
            L::Sym("abs", "/etc/passwd"),
            L::Dir("usr/bin", 0, 0, 0o755),
            L::File("usr/bin/su", 0, 0, 0o4755, b"#!/bin/sh\n"),
            L::Hard("usr/bin/su-again", "usr/bin/su"),
            L::Dir("home", 0, 0, 0o755),
            L::Dir("home/u", 1000, 1000, 0o700),
            L::File("home/u/key", 1000, 1000, 0o600, b"secret\n"),
            L::Dir("tmp", 0, 0, 0o1777),
        ],
    );
    let l2 = layer(
        dir.path(),
        "l2.tar",
        &[
            L::File("etc/.wh.gone", 0, 0, 0o644, b""),
            L::Dir("opt", 0, 0, 0o755),
            L::File("opt/.wh..wh..opq", 0, 0, 0o644, b""),
            L::File("opt/new", 0, 0, 0o644, b"upper\n"),
            // written through lib -> usr/lib, a symlink of the lower layer
            L::File("lib/libc.so", 0, 0, 0o755, b"ELF"),
            L::File("etc/passwd", 0, 0, 0o644, b"root:x:0:0\nu:x:1000:1000\n"),
        ],
    );
    let root = dir.path().join("tree");
    fs::create_dir(&root).expect("mkdir");
    let mut f = Flattener::new(&root, limits());
    f.apply(&l1).expect("layer 1");
    f.apply(&l2).expect("layer 2");
    let flat = f.finish();
    assert!(!root.join("etc/gone").exists(), "whiteout");
    assert!(!root.join("opt/old").exists(), "opaque directory");
    assert!(root.join("opt/new").exists());
    assert_eq!(
        fs::read(root.join("usr/lib/libc.so")).expect("through the symlink"),
        b"ELF"
    );
    assert_eq!(
        fs::metadata(root.join("usr/bin/su")).expect("su").ino(),
        fs::metadata(root.join("usr/bin/su-again")).expect("link").ino()
    );
    assert!(!flat.entries.contains_key("etc/gone"));
    assert!(!flat.entries.contains_key("opt/old"));
    assert_eq!(flat.entries["usr/bin/su"].mode, 0o4755);
    // build the filesystem and check it with e2fsprogs, not with this code
    let img = dir.path().join("rootfs.ext4");
    let cancel = AtomicBool::new(false);
    ext4::build(&Ext4Spec {
        tree: &root,
        entries: &flat.tree_entries(),
        size_bytes: None,
        out: &img,
        cancel: &cancel,
        tool_timeout: Duration::from_secs(60),
    })
    .expect("ext4");
    let su = debugfs(&img, "stat /usr/bin/su");
    assert!(su.contains("Mode:  04755"), "{su}");
    assert!(su.contains("Links: 2"), "{su}");
    let home = debugfs(&img, "stat /home/u/key");
    assert!(home.contains("User:  1000   Group:  1000"), "{home}");
    assert!(home.contains("Mode:  0600"), "{home}");
    assert!(debugfs(&img, "stat /tmp").contains("Mode:  01777"));
    assert!(debugfs(&img, "stat /abs").contains("Fast link dest: \"/etc/passwd\""));
    assert!(debugfs(&img, "cat /etc/passwd").contains("u:x:1000:1000"));
    let listing = debugfs(&img, "ls /opt");
    assert!(listing.contains("new") && !listing.contains("old"), "{listing}");
    let fsck = Command::new("e2fsck").arg("-fn").arg(&img).output().expect("e2fsck");
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
}

#[test]
fn writes_through_a_lower_symlink_that_leaves_the_tree_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, lower, upper) in [
        ("relative escape", L::Sym("esc", "../../.."), "esc/etc/x"),
        ("nested escape", L::Sym("a", "b/../../.."), "a/x"),
    ] {
        let l1 = layer(dir.path(), "l1.tar", &[lower]);
        let l2 = layer(dir.path(), "l2.tar", &[L::File(upper, 0, 0, 0o644, b"pwned")]);
        let root = dir.path().join(format!("tree-{}", name.replace(' ', "-")));
        fs::create_dir(&root).expect("mkdir");
        let mut f = Flattener::new(&root, limits());
        f.apply(&l1).expect("layer 1 only makes a link");
        let err = f.apply(&l2).expect_err(name);
        assert!(err.to_string().contains("leads out of the image"), "{name}: {err}");
    }
    // an absolute target resolves at the image's root, inside the tree
    let l1 = layer(
        dir.path(),
        "l1.tar",
        &[L::Dir("etc", 0, 0, 0o755), L::Sym("link", "/etc")],
    );
    let l2 = layer(dir.path(), "l2.tar", &[L::File("link/conf", 0, 0, 0o644, b"ok")]);
    let root = dir.path().join("tree-abs");
    fs::create_dir(&root).expect("mkdir");
    let mut f = Flattener::new(&root, limits());
    f.apply(&l1).expect("layer 1");
    f.apply(&l2).expect("layer 2");
    assert_eq!(fs::read(root.join("etc/conf")).expect("inside"), b"ok");
}

#[test]
fn the_tree_byte_cap_stops_the_flatten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = vec![0u8; 2 << 20];
    let l1 = layer(
        dir.path(),
        "l1.tar",
        &[L::File("a", 0, 0, 0o644, &big), L::File("b", 0, 0, 0o644, &big)],
    );
    let root = dir.path().join("tree");
    fs::create_dir(&root).expect("mkdir");
    let mut lim = limits();
    lim.max_tree_bytes = 3 << 20;
    let err = Flattener::new(&root, lim).apply(&l1).expect_err("over the cap");
    assert!(err.to_string().contains("bytes of files"), "{err}");
}
