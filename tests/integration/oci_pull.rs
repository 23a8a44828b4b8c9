//! An image built with real tools (tar, gzip) and pushed with skopeo to a real registry, pulled
//! into an ext4 root filesystem, and checked with debugfs and e2fsck, not with the code that
//! wrote it. Then a warm cache, a hostile layer and a tampered blob.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use strata_domain::reference::{Platform, Reference};
use strata_providers::archive::ArchiveLimits;
use strata_providers::blobcache::BlobCache;
use strata_providers::flatten::FlattenLimits;
use strata_providers::oci::{Phase, Progress, PullError, PullSpec, Rootfs, pull_rootfs};

use crate::registry::{ImageSpec, Registry, layer_from_dir, layer_from_tar, loopback_client, push};

#[derive(Default)]
struct Seen {
    phases: std::sync::Mutex<Vec<Phase>>,
    done: AtomicU64,
    total: AtomicU64,
}

impl Progress for Seen {
    fn phase(&self, p: Phase) {
        self.phases.lock().unwrap().push(p);
    }
    fn bytes(&self, done: u64, total: u64) {
        self.done.store(done, Ordering::SeqCst);
        self.total.store(total, Ordering::SeqCst);
    }
}

fn spec<'a>(r: &'a Reference, p: &'a Platform, work: &'a std::path::Path) -> PullSpec<'a> {
    PullSpec {
        reference: r,
        platform: p,
        login: None,
        size_bytes: None,
        work_dir: work,
        limits: FlattenLimits {
            layer: ArchiveLimits {
                max_unpacked_bytes: 256 << 20,
                max_entries: 100_000,
                max_path_len: 4096,
            },
            max_tree_bytes: 256 << 20,
        },
        max_layer_bytes: 256 << 20,
        cancel: Arc::new(AtomicBool::new(false)),
        tool_timeout: Duration::from_secs(120),
    }
}

fn debugfs(img: &std::path::Path, req: &str) -> String {
    let out = Command::new("debugfs").arg("-R").arg(req).arg(img).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn chown(p: &std::path::Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

/// The layers the issue lists: whiteouts, an opaque directory, a hardlink, absolute and relative
/// symlinks, a setuid root file, a file owned by 1000:1000 and a 0600 file.
pub(crate) fn realistic_layers() -> Vec<crate::registry::BuiltLayer> {
    let base = tempfile::tempdir().unwrap();
    let b = base.path();
    for d in ["etc", "usr/bin", "usr/lib", "opt/app", "home/user", "tmp"] {
        std::fs::create_dir_all(b.join(d)).unwrap();
    }
    std::fs::write(b.join("etc/os-release"), "ID=strata-test\n").unwrap();
    std::fs::write(b.join("etc/obsolete"), "remove me\n").unwrap();
    std::fs::write(b.join("opt/app/old.conf"), "lower\n").unwrap();
    std::fs::write(b.join("usr/bin/su"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(b.join("usr/bin/su"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::hard_link(b.join("usr/bin/su"), b.join("usr/bin/su-hard")).unwrap();
    symlink("usr/lib", b.join("lib")).unwrap();
    symlink("/etc/os-release", b.join("os-release-abs")).unwrap();
    std::fs::write(b.join("home/user/notes"), "mine\n").unwrap();
    chown(&b.join("home/user"), 1000, 1000);
    chown(&b.join("home/user/notes"), 1000, 1000);
    std::fs::write(b.join("etc/shadow"), "root:*:1::::::\n").unwrap();
    std::fs::set_permissions(b.join("etc/shadow"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(b.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let upper = tempfile::tempdir().unwrap();
    let u = upper.path();
    std::fs::create_dir_all(u.join("etc")).unwrap();
    std::fs::create_dir_all(u.join("opt/app")).unwrap();
    std::fs::write(u.join("etc/.wh.obsolete"), "").unwrap();
    std::fs::write(u.join("opt/app/.wh..wh..opq"), "").unwrap();
    std::fs::write(u.join("opt/app/new.conf"), "upper\n").unwrap();
    vec![layer_from_dir(b), layer_from_dir(u)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_image_becomes_a_clean_ext4_rootfs() {
    let reg = Registry::start(None).await;
    let layers = realistic_layers();
    let pushed = push(
        &reg,
        "library/debian",
        "bookworm",
        &[ImageSpec {
            layers: &layers,
            os: "linux",
            architecture: "amd64",
            config: json!({"config": {"Cmd": ["/bin/sh"]}}),
        }],
        None,
    );
    let c = loopback_client(&reg);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = BlobCache::open(cache_dir.path(), 1 << 30).unwrap();
    let r = Reference::parse(&format!("{}/library/debian:bookworm", reg.addr)).unwrap();
    let p = Platform::parse("linux/amd64").unwrap();
    let work = tempfile::tempdir().unwrap();
    let seen = Arc::new(Seen::default());
    let pulled = pull_rootfs(&c, &cache, spec(&r, &p, work.path()), seen.clone())
        .await
        .unwrap();
    assert_eq!(pulled.resolved.manifest_digest.as_str(), pushed.digest);
    assert_eq!(pulled.config.os.as_deref(), Some("linux"));
    assert_eq!(pulled.cache_hits, 0);
    assert_eq!(
        *seen.phases.lock().unwrap(),
        vec![Phase::Resolving, Phase::Pulling, Phase::Flattening, Phase::Building]
    );
    assert_eq!(seen.done.load(Ordering::SeqCst), seen.total.load(Ordering::SeqCst));
    assert!(
        !work.path().join("tree").exists(),
        "the staging tree is gone after the build"
    );
    let Rootfs::Built { path: img, size } = &pulled.rootfs else {
        panic!("an empty cache builds: {:?}", pulled.rootfs)
    };
    assert_eq!(std::fs::metadata(img).unwrap().len(), *size);
    assert!(*size >= 64 << 20);
    let fsck = Command::new("e2fsck").arg("-fn").arg(img).output().unwrap();
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
    let stat = |p: &str| debugfs(img, &format!("stat {p}"));
    assert!(stat("/usr/bin/su").contains("Mode:  04755"), "{}", stat("/usr/bin/su"));
    assert!(
        stat("/usr/bin/su").contains("Links: 2"),
        "hardlink kept: {}",
        stat("/usr/bin/su")
    );
    assert!(
        stat("/home/user/notes").contains("User:  1000   Group:  1000"),
        "{}",
        stat("/home/user/notes")
    );
    assert!(stat("/etc/shadow").contains("Mode:  0600"));
    assert!(stat("/tmp").contains("Mode:  01777"));
    assert!(stat("/lib").contains("Fast link dest: \"usr/lib\""));
    assert!(stat("/os-release-abs").contains("Fast link dest: \"/etc/os-release\""));
    let etc = debugfs(img, "ls /etc");
    assert!(
        etc.contains("os-release") && !etc.contains("obsolete"),
        "whiteout: {etc}"
    );
    let app = debugfs(img, "ls /opt/app");
    assert!(app.contains("new.conf") && !app.contains("old.conf"), "opaque: {app}");
    assert!(!etc.contains(".wh."), "no whiteout markers in the image: {etc}");
    // warm: every layer from the cache, the manifest still checked
    let work2 = tempfile::tempdir().unwrap();
    let again = pull_rootfs(&c, &cache, spec(&r, &p, work2.path()), Arc::new(Seen::default()))
        .await
        .unwrap();
    assert_eq!(again.cache_hits, 2);
    assert!(
        matches!(again.rootfs, Rootfs::Built { .. }),
        "nothing remembered the build"
    );
    // a size too small says by how much
    let work3 = tempfile::tempdir().unwrap();
    let mut small = spec(&r, &p, work3.path());
    small.size_bytes = Some(1 << 20);
    let err = pull_rootfs(&c, &cache, small, Arc::new(Seen::default()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PullError::TooLarge(ref m) if m.contains("short")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_layers_and_tampered_blobs_fail_and_leave_no_tree() {
    let reg = Registry::start(None).await;
    // a layer whose entry climbs out with `..`, written with GNU tar from a crafted listing
    let evil_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(evil_dir.path().join("a")).unwrap();
    std::fs::write(evil_dir.path().join("evil"), "x").unwrap();
    // -P keeps the `..` GNU tar would otherwise strip
    let tar = Command::new("tar")
        .args(["-P", "-C"])
        .arg(evil_dir.path().join("a"))
        .args(["-cf", "-", "../evil"])
        .output()
        .unwrap();
    assert!(tar.status.success(), "{}", String::from_utf8_lossy(&tar.stderr));
    let evil = layer_from_tar(&tar.stdout);
    push(&reg, "evil/dotdot", "v1", &[ImageSpec::amd64(&[evil])], None);
    let c = loopback_client(&reg);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = BlobCache::open(cache_dir.path(), 1 << 30).unwrap();
    let p = Platform::parse("linux/amd64").unwrap();
    let r = Reference::parse(&format!("{}/evil/dotdot:v1", reg.addr)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let err = pull_rootfs(&c, &cache, spec(&r, &p, work.path()), Arc::new(Seen::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::Invalid(_)), "{err}");
    assert!(!evil_dir.path().parent().unwrap().join("evil").exists());
    // a blob whose bytes the registry's storage no longer matches
    let layers = realistic_layers();
    let pushed = push(&reg, "team/tampered", "v1", &[ImageSpec::amd64(&layers)], None);
    let layer_hex = pushed.manifests[0].2[0].trim_start_matches("sha256:").to_owned();
    let file = reg.blob_file(&layer_hex);
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(&file, bytes).unwrap();
    let r = Reference::parse(&format!("{}/team/tampered:v1", reg.addr)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let err = pull_rootfs(&c, &cache, spec(&r, &p, work.path()), Arc::new(Seen::default()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PullError::Invalid(ref m) if m.contains("hashes to")),
        "{err}"
    );
    assert!(!work.path().join("tree").exists());
    assert_eq!(
        std::fs::read_dir(cache_dir.path().join("tmp")).unwrap().count(),
        0,
        "no cache temp file left"
    );
}
