//! Bundles made by the real `tar`, `gzip` and `zstd` CLIs (good ones and the attacks they can
//! express), and hand-written tar headers for the attacks they refuse to write. Outputs are
//! checked with the real tools too (`tar -x` of the repacked modules, `sha256sum`).

use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use strata_domain::image::Architecture;
use strata_domain::kernel_format::{KernelFormat, Machine, samples};

use super::kernel_bundle::{BundleError, BundleLimits, extract_kernel_bundle, extract_kernel_bundle_async};
use super::*;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

/// A real x86_64 ELF: the whole of /bin/true.
fn real_elf() -> Vec<u8> {
    std::fs::read("/bin/true").unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A source tree under `src/`: files with contents; parents made as needed.
    fn tree(&self, files: &[(&str, &[u8])]) -> PathBuf {
        let root = self.path("src");
        std::fs::create_dir_all(&root).unwrap();
        for (rel, data) in files {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, data).unwrap();
        }
        root
    }

    /// `tar -C src -cf NAME ARGS...` with the real tar, then compressed with the real CLI.
    fn tar(&self, name: &str, compress: &str, args: &[&str]) -> PathBuf {
        let plain = self.path(&format!("{name}.tar"));
        run(Command::new("tar")
            .arg("-C")
            .arg(self.path("src"))
            .arg("-cf")
            .arg(&plain)
            .args(args));
        self.compress(&plain, compress)
    }

    fn compress(&self, plain: &Path, compress: &str) -> PathBuf {
        match compress {
            "" => plain.to_owned(),
            "gz" => {
                run(Command::new("gzip").arg("-kf").arg(plain));
                PathBuf::from(format!("{}.gz", plain.display()))
            }
            "zst" => {
                run(Command::new("zstd").arg("-qf").arg(plain));
                PathBuf::from(format!("{}.zst", plain.display()))
            }
            "xz" => {
                run(Command::new("xz").arg("-kf").arg(plain));
                PathBuf::from(format!("{}.xz", plain.display()))
            }
            other => panic!("unknown compression {other}"),
        }
    }

    fn out(&self) -> PathBuf {
        let out = self.path("out");
        std::fs::create_dir_all(&out).unwrap();
        out
    }

    fn out_is_empty(&self) -> bool {
        std::fs::read_dir(self.path("out")).unwrap().next().is_none()
    }

    /// Extracts with the default limits, declared x86_64.
    fn extract(&self, bundle: &Path) -> Result<kernel_bundle::KernelBundle, BundleError> {
        self.extract_with(bundle, None, Architecture::X86_64, &BundleLimits::default())
    }

    fn extract_with(
        &self,
        bundle: &Path,
        sha: Option<&str>,
        arch: Architecture,
        limits: &BundleLimits,
    ) -> Result<kernel_bundle::KernelBundle, BundleError> {
        let out = self.out();
        extract_kernel_bundle(bundle, sha, arch, &out, limits)
    }

    /// A refusal: invalid-archive whose reason contains `want`, and nothing left in out/.
    fn refused(&self, bundle: &Path, want: &str) {
        self.refused_with(bundle, &BundleLimits::default(), want);
    }

    fn refused_with(&self, bundle: &Path, limits: &BundleLimits, want: &str) {
        let err = self
            .extract_with(bundle, None, Architecture::X86_64, limits)
            .expect_err("bundle must be refused");
        let domain = err.to_domain().unwrap_or_else(|| panic!("internal error: {err}"));
        assert_eq!(domain.code(), "invalid-archive", "{err}");
        assert!(err.to_string().contains(want), "{err:?} should mention {want:?}");
        assert!(self.out_is_empty(), "refused bundle left files in the staging dir");
    }
}

/// Hand-written tar entries for what the CLIs refuse to write.
enum Raw<'a> {
    File(&'a [u8], &'a [u8]),
    Dir(&'a [u8]),
    Symlink(&'a [u8], &'a [u8]),
    Hardlink(&'a [u8], &'a [u8]),
    Char(&'a [u8]),
    Fifo(&'a [u8]),
    /// A GNU long-name record announcing `n` name bytes, then a file.
    LongName(usize),
}

fn header(name: &[u8], kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let gnu = h.as_gnu_mut().unwrap();
    assert!(name.len() <= 100, "use LongName for long names");
    gnu.name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h
}

fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (mut h, data): (tar::Header, &[u8]) = match e {
            Raw::File(n, d) => (header(n, tar::EntryType::Regular, d.len() as u64), d),
            Raw::Dir(n) => (header(n, tar::EntryType::Directory, 0), &[]),
            Raw::Symlink(n, t) | Raw::Hardlink(n, t) => {
                let kind = if matches!(e, Raw::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                let mut h = header(n, kind, 0);
                h.as_gnu_mut().unwrap().linkname[..t.len()].copy_from_slice(t);
                (h, &[])
            }
            Raw::Char(n) => {
                let mut h = header(n, tar::EntryType::Char, 0);
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
                (h, &[])
            }
            Raw::Fifo(n) => (header(n, tar::EntryType::Fifo, 0), &[]),
            Raw::LongName(n) => {
                let name = vec![b'a'; *n];
                let mut h = header(b"././@LongLink", tar::EntryType::GNULongName, *n as u64 + 1);
                h.set_cksum();
                let mut data = name.clone();
                data.push(0);
                b.append(&h, &data[..]).unwrap();
                let mut f = header(b"placeholder", tar::EntryType::Regular, 0);
                f.set_cksum();
                b.append(&f, &[][..]).unwrap();
                continue;
            }
        };
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn write(fx: &Fixture, name: &str, bytes: &[u8]) -> PathBuf {
    let p = fx.path(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

// ---------------------------------------------------------------- good bundles

#[test]
fn plain_tar_with_only_vmlinux() {
    let fx = Fixture::new();
    let elf = real_elf();
    fx.tree(&[("vmlinux", &elf)]);
    let bundle = fx.tar("b", "", &["vmlinux"]);
    let b = fx.extract(&bundle).unwrap();
    assert_eq!(b.kernel.format, KernelFormat::Elf);
    assert_eq!(b.kernel.machine, Machine::X86_64);
    assert_eq!(b.bundle.compression, Compression::None);
    assert_eq!(b.bundle.sha256, sha256sum(&bundle));
    assert_eq!(b.vmlinux.size, elf.len() as u64);
    assert_eq!(b.vmlinux.sha256, sha256sum(Path::new("/bin/true")));
    assert_eq!(std::fs::read(&b.vmlinux.path).unwrap(), elf);
    assert!(b.initrd.is_none() && b.modules.is_none());
}

/// A bundle with everything, as `tar -C dir -cf x .` writes it (names start with `./`),
/// including a relative symlink and a hardlink inside modules/, in every compression.
#[test]
fn full_bundles_in_every_compression() {
    for compress in ["", "gz", "zst", "xz"] {
        let fx = Fixture::new();
        let elf = real_elf();
        let initrd = vec![7u8; 300_000];
        let src = fx.tree(&[
            ("vmlinux", &elf),
            ("initrd.img", &initrd),
            ("modules/6.1.0-18-amd64/kernel/fs/ext4.ko", b"ext4 module"),
            ("modules/6.1.0-18-amd64/modules.dep", b"kernel/fs/ext4.ko:\n"),
        ]);
        let m = src.join("modules/6.1.0-18-amd64");
        symlink("kernel/fs/ext4.ko", m.join("ext4-link.ko")).unwrap();
        std::fs::hard_link(m.join("modules.dep"), m.join("modules.dep.hard")).unwrap();
        std::fs::create_dir(m.join("empty-dir")).unwrap();
        let bundle = fx.tar("b", compress, &["."]);
        let b = fx.extract(&bundle).unwrap_or_else(|e| panic!("{compress}: {e}"));
        let want = match compress {
            "" => Compression::None,
            "gz" => Compression::Gzip,
            "xz" => Compression::Xz,
            _ => Compression::Zstd,
        };
        assert_eq!(b.bundle.compression, want);
        assert_eq!(b.vmlinux.sha256, sha256sum(Path::new("/bin/true")));
        let initrd_art = b.initrd.as_ref().unwrap();
        assert_eq!(initrd_art.size, 300_000);
        assert_eq!(initrd_art.sha256, sha256sum(&src.join("initrd.img")));
        let modules = b.modules.as_ref().unwrap();
        assert_eq!(modules.sha256, sha256sum(&modules.path));
        assert_eq!(modules.size, std::fs::metadata(&modules.path).unwrap().len());

        // the real tar unpacks the repacked tree to the same content, link and hardlink
        let unpacked = fx.path("unpacked");
        std::fs::create_dir(&unpacked).unwrap();
        run(Command::new("tar")
            .arg("-C")
            .arg(&unpacked)
            .arg("-xf")
            .arg(&modules.path));
        run(Command::new("diff").arg("-r").arg(src.join("modules")).arg(&unpacked));
        let u = unpacked.join("6.1.0-18-amd64");
        assert_eq!(
            std::fs::read_link(u.join("ext4-link.ko")).unwrap(),
            Path::new("kernel/fs/ext4.ko")
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(u.join("modules.dep")).unwrap().nlink(), 2);
        assert!(u.join("empty-dir").is_dir());
        // owners are root in the repacked tar, whoever made the bundle
        let listing = Command::new("tar").arg("-tvf").arg(&modules.path).output().unwrap();
        let listing = String::from_utf8(listing.stdout).unwrap();
        assert!(listing.lines().all(|l| l.contains(" 0/0 ")), "{listing}");
        assert!(
            !listing.contains("modules/"),
            "names are relative to modules/: {listing}"
        );
    }
}

/// POSIX (PAX) archives with names over 100 bytes, and GNU long names, both read back.
#[test]
fn long_names_in_pax_and_gnu_formats() {
    for format in ["posix", "gnu"] {
        let fx = Fixture::new();
        let deep = format!("modules/{}/{}.ko", "d".repeat(120), "m".repeat(150));
        fx.tree(&[("vmlinux", &real_elf()), (deep.as_str(), b"module")]);
        let bundle = fx.tar("b", "zst", &[&format!("--format={format}"), "vmlinux", "modules"]);
        let b = fx.extract(&bundle).unwrap_or_else(|e| panic!("{format}: {e}"));
        let listing = Command::new("tar")
            .arg("-tf")
            .arg(&b.modules.unwrap().path)
            .output()
            .unwrap();
        let listing = String::from_utf8(listing.stdout).unwrap();
        assert!(listing.contains(deep.strip_prefix("modules/").unwrap()), "{listing}");
    }
}

#[test]
fn aarch64_and_bzimage_kernels() {
    let fx = Fixture::new();
    let arm = samples::patch_machine(&real_elf(), 183);
    fx.tree(&[("vmlinux", &arm)]);
    let bundle = fx.tar("arm", "gz", &["vmlinux"]);
    let b = fx
        .extract_with(&bundle, None, Architecture::Aarch64, &BundleLimits::default())
        .unwrap();
    assert_eq!(b.kernel.machine, Machine::Aarch64);
    std::fs::remove_dir_all(fx.path("out")).unwrap();

    // the same bundle declared x86_64: architecture-mismatch, nothing left
    let err = fx.extract(&bundle).unwrap_err();
    assert_eq!(err.to_domain().unwrap().code(), "architecture-mismatch");
    assert!(err.to_string().contains("machine 183 (AArch64)"), "{err}");
    assert!(fx.out_is_empty());

    let fx = Fixture::new();
    fx.tree(&[("vmlinux", &samples::bzimage(0x020F, true, 64 * 1024))]);
    let bundle = fx.tar("bz", "zst", &["vmlinux"]);
    let b = fx.extract(&bundle).unwrap();
    assert_eq!(b.kernel.format, KernelFormat::BzImage);
}

#[test]
fn a_kernel_that_is_not_one_is_an_unsupported_format() {
    let fx = Fixture::new();
    let gz = Command::new("gzip").arg("-c").arg("/bin/true").output().unwrap().stdout;
    fx.tree(&[("vmlinux", &gz), ("initrd.img", b"x")]);
    let bundle = fx.tar("b", "", &["initrd.img", "vmlinux"]);
    let err = fx.extract(&bundle).unwrap_err();
    let d = err.to_domain().unwrap();
    assert_eq!(d.code(), "unsupported-kernel-format");
    assert!(d.to_string().contains("gzip data"), "{d}");
    assert!(fx.out_is_empty(), "the initrd staged before the vmlinux is removed too");
}

#[tokio::test]
async fn async_wrapper_runs_on_the_blocking_pool() {
    let fx = Fixture::new();
    fx.tree(&[("vmlinux", &real_elf())]);
    let bundle = fx.tar("b", "zst", &["vmlinux"]);
    let sha = sha256sum(&bundle);
    let b = extract_kernel_bundle_async(
        bundle,
        Some(sha.to_uppercase()),
        Architecture::X86_64,
        fx.out(),
        BundleLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(b.bundle.sha256, sha);
}

// ---------------------------------------------------------------- the compressed file

#[test]
fn sha256_mismatch_is_refused_before_decompressing() {
    // a bomb with the wrong digest: if it were decompressed first, the answer would differ
    let fx = Fixture::new();
    let bomb = zstd_bomb(&fx, 256 << 20);
    let started = Instant::now();
    let err = fx
        .extract_with(
            &bomb,
            Some(&"0".repeat(64)),
            Architecture::X86_64,
            &BundleLimits::default(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, BundleError::Archive(ArchiveError::ChecksumMismatch { actual, .. }) if *actual == sha256sum(&bomb)),
        "{err:?}"
    );
    assert_eq!(err.to_domain().unwrap().code(), "checksum-mismatch");
    assert!(started.elapsed().as_secs() < 5);
    assert!(fx.out_is_empty());
}

#[test]
fn over_the_size_cap_is_refused_before_reading() {
    let fx = Fixture::new();
    fx.tree(&[("vmlinux", &real_elf())]);
    let bundle = fx.tar("b", "", &["vmlinux"]);
    let size = std::fs::metadata(&bundle).unwrap().len();
    let limits = BundleLimits {
        max_bundle_bytes: size - 1,
        ..BundleLimits::default()
    };
    let err = fx
        .extract_with(&bundle, None, Architecture::X86_64, &limits)
        .unwrap_err();
    assert!(
        matches!(err, BundleError::Archive(ArchiveError::TooLarge { size: s, limit }) if s == size && limit == size - 1),
        "{err:?}"
    );
    assert_eq!(err.to_domain().unwrap().code(), "too-large");
    assert!(fx.out_is_empty());
    // exactly at the cap is fine
    let limits = BundleLimits {
        max_bundle_bytes: size,
        ..BundleLimits::default()
    };
    assert!(fx.extract_with(&bundle, None, Architecture::X86_64, &limits).is_ok());
}

#[test]
fn not_an_archive() {
    let fx = Fixture::new();
    fx.out();
    fx.refused(&write(&fx, "empty", b""), "empty file");
    fx.refused(
        &write(&fx, "elf", &real_elf()),
        "not a tar, tar.gz, tar.zst or tar.xz archive (starts with 7f 45 4c 46)",
    );
    // xz decodes (docker import of a .tar.xz); what is inside must still be a tar
    let xz = Command::new("xz").arg("-c").arg("/bin/true").output().unwrap().stdout;
    fx.refused(&write(&fx, "xz", &xz), "");
    let mut gz = Command::new("gzip").arg("-c").arg("/bin/true").output().unwrap().stdout;
    gz[20] ^= 0xff;
    gz.truncate(gz.len() / 2);
    fx.refused(&write(&fx, "gz", &gz), "");
    let mut zst = Command::new("zstd").arg("-c").arg("/bin/true").output().unwrap().stdout;
    zst[4] = 0xff; // reserved frame header bit
    fx.refused(&write(&fx, "zst", &zst), "corrupt archive data");
}

/// Writers disagree on the checksum field's padding (GNU: "0012345\0 ", others: "  12345\0"):
/// a plain tar is recognised either way, and a block with a wrong checksum is not a tar.
#[test]
fn plain_tar_sniffing() {
    let tar = raw_tar(&[Raw::File(b"vmlinux", b"x")]);
    assert_eq!(Compression::sniff(&tar), Some(Compression::None));
    let sum: u32 = tar[..148]
        .iter()
        .chain(&tar[156..512])
        .map(|b| u32::from(*b))
        .sum::<u32>()
        + 8 * 32;
    let mut spaced = tar.clone();
    spaced[148..156].copy_from_slice(format!("{sum:7o}\0").as_bytes());
    assert_eq!(Compression::sniff(&spaced), Some(Compression::None));
    let mut wrong = tar.clone();
    wrong[0] ^= 1;
    assert_eq!(Compression::sniff(&wrong), None);
    assert_eq!(
        Compression::sniff(&[0u8; 512]),
        Some(Compression::None),
        "an empty archive"
    );
    assert_eq!(Compression::sniff(&tar[..511]), None);
}

#[test]
fn truncated_archive_never_gives_a_shorter_file() {
    let fx = Fixture::new();
    fx.tree(&[("vmlinux", &real_elf())]);
    let bundle = fx.tar("b", "", &["vmlinux"]);
    let bytes = std::fs::read(&bundle).unwrap();
    fx.refused(&write(&fx, "cut", &bytes[..5000]), "truncated");
    // cut inside a zstd stream
    let z = fx.compress(&bundle, "zst");
    let zb = std::fs::read(&z).unwrap();
    fx.refused(&write(&fx, "cut.zst", &zb[..zb.len() / 2]), "");
}

// ---------------------------------------------------------------- bombs and counts

/// A tar holding a `vmlinux` of `size` zero bytes, through the real tar and zstd.
fn zstd_bomb(fx: &Fixture, size: u64) -> PathBuf {
    let src = fx.path("bomb-src");
    std::fs::create_dir_all(&src).unwrap();
    let f = std::fs::File::create(src.join("vmlinux")).unwrap();
    f.set_len(size).unwrap();
    let out = fx.path("bomb.tar.zst");
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .args(["-cf", "-", "vmlinux"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = tar.stdout.take().unwrap();
    run(Command::new("zstd").args(["-q", "-1", "-o"]).arg(&out).stdin(stdout));
    assert!(tar.wait().unwrap().success());
    out
}

#[test]
fn zstd_bomb_stops_at_the_unpacked_cap() {
    let fx = Fixture::new();
    let bomb = zstd_bomb(&fx, 1 << 30);
    let compressed = std::fs::metadata(&bomb).unwrap().len();
    assert!(compressed < 1 << 20, "a bomb: {compressed} bytes for 1 GiB");
    let limits = BundleLimits {
        max_unpacked_bytes: 32 << 20,
        ..BundleLimits::default()
    };
    let started = Instant::now();
    fx.refused_with(&bomb, &limits, "more than 33554432 bytes once decompressed");
    assert!(
        started.elapsed().as_secs() < 10,
        "stopped early: {:?}",
        started.elapsed()
    );
}

#[test]
fn xz_bomb_stops_at_the_unpacked_cap() {
    let fx = Fixture::new();
    let src = fx.path("src");
    std::fs::create_dir_all(src.join("modules")).unwrap();
    std::fs::File::create(src.join("modules/zeros"))
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    std::fs::write(src.join("vmlinux"), real_elf()).unwrap();
    let bomb = fx.tar("b", "xz", &["vmlinux", "modules"]);
    let limits = BundleLimits {
        max_unpacked_bytes: 8 << 20,
        ..BundleLimits::default()
    };
    fx.refused_with(&bomb, &limits, "more than 8388608 bytes once decompressed");
}

#[test]
fn gzip_bomb_stops_at_the_unpacked_cap() {
    let fx = Fixture::new();
    let src = fx.path("src");
    std::fs::create_dir_all(src.join("modules")).unwrap();
    std::fs::File::create(src.join("modules/zeros"))
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    std::fs::write(src.join("vmlinux"), real_elf()).unwrap();
    let bomb = fx.tar("b", "gz", &["vmlinux", "modules"]);
    let limits = BundleLimits {
        max_unpacked_bytes: 8 << 20,
        ..BundleLimits::default()
    };
    fx.refused_with(&bomb, &limits, "more than 8388608 bytes once decompressed");
}

#[test]
fn two_hundred_thousand_entries_stop_at_the_entry_cap() {
    let fx = Fixture::new();
    // 200,000 distinct files below modules/, written by the tar crate and compressed by zstd
    let mut zstd = Command::new("zstd")
        .args(["-q", "-o"])
        .arg(fx.path("many.tar.zst"))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let stdin = zstd.stdin.take().unwrap();
        let mut b = tar::Builder::new(std::io::BufWriter::new(stdin));
        for i in 0..200_000 {
            let mut h = tar::Header::new_gnu();
            h.set_size(0);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("modules/f{i}"), &[][..]).unwrap();
        }
        b.into_inner().unwrap().flush().unwrap();
    }
    assert!(zstd.wait().unwrap().success());
    let started = Instant::now();
    fx.refused(&fx.path("many.tar.zst"), "more than 50000 entries");
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
}

#[test]
fn exactly_at_the_caps_is_accepted() {
    let fx = Fixture::new();
    let tar = raw_tar(&[Raw::File(b"vmlinux", &real_elf())]);
    let bundle = write(&fx, "b.tar", &tar);
    // the reader stops at the first zero block: header + data blocks, and one end block read
    let b = fx.extract(&bundle).unwrap();
    std::fs::remove_dir_all(fx.path("out")).unwrap();
    let limits = BundleLimits {
        max_unpacked_bytes: b.unpacked_bytes,
        max_entries: 1,
        ..BundleLimits::default()
    };
    fx.extract_with(&bundle, None, Architecture::X86_64, &limits).unwrap();
    std::fs::remove_dir_all(fx.path("out")).unwrap();
    let limits = BundleLimits {
        max_unpacked_bytes: b.unpacked_bytes - 1,
        ..BundleLimits::default()
    };
    fx.refused_with(&bundle, &limits, "once decompressed");
}

// ---------------------------------------------------------------- names and links

#[test]
fn dot_dot_and_absolute_names() {
    let fx = Fixture::new();
    fx.out();
    let elf = real_elf();
    // the real tar writes these with -P
    let sub = fx.path("src/sub");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(fx.path("src/x"), b"x").unwrap();
    std::fs::write(sub.join("vmlinux"), &elf).unwrap();
    let dotdot = fx.path("dotdot.tar");
    run(Command::new("tar")
        .current_dir(&sub)
        .args(["-cPf"])
        .arg(&dotdot)
        .args(["vmlinux", "../x"]));
    fx.refused(&dotdot, "entry \"../x\" contains \"..\"");
    let abs = fx.path("abs.tar");
    run(Command::new("tar")
        .current_dir(&sub)
        .args(["-cPf"])
        .arg(&abs)
        .arg("vmlinux")
        .arg(fx.path("src/x")));
    fx.refused(&abs, "is an absolute path");
    // and the sneakier spellings
    for name in [&b"modules/../../x"[..], b"./../x", b"/vmlinux", b"modules/a/../../../x"] {
        let tar = raw_tar(&[Raw::File(b"vmlinux", &elf), Raw::File(name, b"x")]);
        let err = fx.extract(&write(&fx, "n.tar", &tar)).unwrap_err();
        assert_eq!(err.to_domain().unwrap().code(), "invalid-archive", "{name:?}");
        assert!(fx.out_is_empty());
    }
}

#[test]
fn long_names_are_refused_before_they_are_read() {
    let fx = Fixture::new();
    fx.out();
    // a GNU long-name record announcing 100 MB: refused from its header, not buffered
    let tar = raw_tar(&[Raw::LongName(100_000_000)]);
    // the record's data is not really there; only the header matters
    fx.refused(
        &write(&fx, "ln.tar", &tar[..1024]),
        "a long name of 100000001 bytes is over the limit of 1025",
    );
    // a long name within the record cap but over max_path_len after all
    let tar = raw_tar(&[Raw::LongName(1500)]);
    fx.refused(&write(&fx, "ln2.tar", &tar), "over the limit");
    // a component over 255 bytes, written by the real tar
    let name = format!("modules/{}", "c".repeat(300));
    // (the file system refuses 300-byte names, so the tar crate writes this one)
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    b.append_data(&mut h, &name, &[][..]).unwrap();
    let bytes = b.into_inner().unwrap();
    fx.refused(
        &write(&fx, "comp.tar", &bytes),
        "has a path component longer than 255 bytes",
    );
    // the limit on whole names
    let limits = BundleLimits {
        max_path_len: 64,
        ..BundleLimits::default()
    };
    let fx3 = Fixture::new();
    fx3.tree(&[("vmlinux", &real_elf()), (&format!("modules/{}", "x".repeat(80)), b"m")]);
    let bundle = fx3.tar("b", "", &["--format=posix", "vmlinux", "modules"]);
    fx3.refused_with(&bundle, &limits, "has a name longer than 64 bytes");
}

#[test]
fn symlink_escapes_and_entries_through_links() {
    let elf = real_elf();
    // absolute and relative escapes, written by the real tar
    for (link, target, want) in [
        ("modules/evil", "/etc", "points to the absolute path \"/etc\""),
        ("modules/up", "../../x", "points outside the archive"),
        ("modules/a/b/up", "../../../..", "points outside the archive"),
    ] {
        let fx = Fixture::new();
        let src = fx.tree(&[("vmlinux", &elf)]);
        std::fs::create_dir_all(src.join(link).parent().unwrap()).unwrap();
        symlink(target, src.join(link)).unwrap();
        fx.refused(&fx.tar("b", "zst", &["vmlinux", "modules"]), want);
    }
    // a link inside the bundle but outside modules/ is not kept in modules.tar
    let fx = Fixture::new();
    let src = fx.tree(&[("vmlinux", &elf)]);
    std::fs::create_dir_all(src.join("modules")).unwrap();
    symlink("../vmlinux", src.join("modules/k")).unwrap();
    fx.refused(
        &fx.tar("b", "", &["vmlinux", "modules"]),
        "symlink \"modules/k\" points outside modules/",
    );
    // "../modules/x" lands inside modules/ but would leave it once repacked
    let fx = Fixture::new();
    let src = fx.tree(&[("vmlinux", &elf), ("modules/x", b"x")]);
    symlink("../modules/x", src.join("modules/y")).unwrap();
    fx.refused(&fx.tar("b", "", &["vmlinux", "modules"]), "points outside modules/");

    // the entry reached through an escaping link: the real tar with --transform renames a real
    // directory's file so it sits below the link's name
    let fx = Fixture::new();
    let src = fx.tree(&[("vmlinux", &elf), ("modules/evilx/passwd", b"root::0:0")]);
    symlink("/etc", src.join("modules/evil")).unwrap();
    let bundle = fx.tar(
        "b",
        "",
        &[
            "--transform=s,evilx,evil,",
            "vmlinux",
            "modules/evil",
            "modules/evilx/passwd",
        ],
    );
    let listing = String::from_utf8(Command::new("tar").arg("-tf").arg(&bundle).output().unwrap().stdout).unwrap();
    assert!(listing.contains("modules/evil/passwd"), "{listing}");
    fx.refused(&bundle, "points to the absolute path");
}

/// The generic reader with links allowed to point anywhere (as OCI layers will): the link
/// itself passes, an entry through it does not.
#[test]
fn entry_through_a_symlink_is_refused_even_when_targets_are_free() {
    let fx = Fixture::new();
    let tar = raw_tar(&[Raw::Symlink(b"evil", b"/etc"), Raw::File(b"evil/passwd", b"root::0:0")]);
    let path = write(&fx, "l.tar", &tar);
    let mut policy = kernel_bundle::bundle_policy(&BundleLimits::default());
    policy.symlinks = SymlinkTargets::Any;
    let mut seen = Vec::new();
    let mut visit = |e: &mut Entry<'_>| -> Result<(), ArchiveError> {
        seen.push((e.path().to_owned(), e.kind().clone()));
        Ok(())
    };
    let err = read_archive(&path, &policy, &mut visit).unwrap_err();
    assert!(
        err.to_string()
            .contains("file \"evil/passwd\" goes through the symlink \"evil\""),
        "{err}"
    );
    assert_eq!(
        seen,
        vec![(
            "evil".to_owned(),
            EntryKind::Symlink {
                target: "/etc".into(),
                resolved: None
            }
        )]
    );
    // and a confined link inside the archive still does not carry entries
    let tar = raw_tar(&[
        Raw::Dir(b"modules/real/"),
        Raw::Symlink(b"modules/l", b"real"),
        Raw::File(b"modules/l/x", b"x"),
    ]);
    let err = read_archive(
        &write(&fx, "l2.tar", &tar),
        &kernel_bundle::bundle_policy(&BundleLimits::default()),
        &mut |_: &mut Entry<'_>| Ok(()),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("goes through the symlink \"modules/l\""),
        "{err}"
    );
}

/// `l -> d/x/..` looks inside; `d/x -> ../..` added afterwards would make it leave.
#[test]
fn a_later_link_cannot_turn_an_earlier_target_into_an_escape() {
    let fx = Fixture::new();
    fx.out();
    let elf = real_elf();
    let tar = raw_tar(&[
        Raw::File(b"vmlinux", &elf),
        Raw::Symlink(b"modules/l", b"d/x/../.."),
        Raw::Symlink(b"modules/d/x", b".."),
    ]);
    fx.refused(
        &write(&fx, "late.tar", &tar),
        "replaces a directory that an earlier symlink's target goes through",
    );
    // the other order: the target goes through an existing link
    let tar = raw_tar(&[
        Raw::File(b"vmlinux", &elf),
        Raw::Symlink(b"modules/d/x", b".."),
        Raw::Symlink(b"modules/l", b"d/x/../.."),
    ]);
    fx.refused(
        &write(&fx, "early.tar", &tar),
        "goes through the symlink \"modules/d/x\"",
    );
    // a file replacing a directory that has entries, and a link replacing one
    let tar = raw_tar(&[
        Raw::File(b"vmlinux", &elf),
        Raw::File(b"modules/d/a", b"a"),
        Raw::Symlink(b"modules/d", b"/etc"),
    ]);
    fx.refused(
        &write(&fx, "replace.tar", &tar),
        "replaces a directory that earlier entries are in",
    );
}

#[test]
fn hardlink_escapes() {
    let elf = real_elf();
    let fx = Fixture::new();
    fx.out();
    for (target, want) in [
        (
            &b"../../etc/passwd"[..],
            "points outside the archive (\"../../etc/passwd\")",
        ),
        (b"/etc/passwd", "points outside the archive (\"/etc/passwd\")"),
        (b"modules/nothere", "which is not an earlier regular file"),
        (b"modules", "which is not an earlier regular file"),
    ] {
        let tar = raw_tar(&[
            Raw::File(b"vmlinux", &elf),
            Raw::Dir(b"modules/"),
            Raw::Hardlink(b"modules/h", target),
        ]);
        fx.refused(&write(&fx, "h.tar", &tar), want);
    }
    // a hardlink to a file outside modules/ cannot be repacked
    let tar = raw_tar(&[Raw::File(b"vmlinux", &elf), Raw::Hardlink(b"modules/h", b"vmlinux")]);
    fx.refused(
        &write(&fx, "h2.tar", &tar),
        "hardlink \"modules/h\" points outside modules/",
    );
    // the real tar's hardlink escape: a link member whose target was given with -P
    let fx = Fixture::new();
    let sub = fx.path("src/sub");
    std::fs::create_dir_all(sub.join("modules")).unwrap();
    std::fs::write(sub.join("vmlinux"), &elf).unwrap();
    std::fs::write(fx.path("src/outside"), b"secret").unwrap();
    std::fs::hard_link(fx.path("src/outside"), sub.join("modules/h")).unwrap();
    let bundle = fx.path("hl.tar");
    run(Command::new("tar")
        .current_dir(&sub)
        .arg("-cPf")
        .arg(&bundle)
        .args(["vmlinux", "../outside", "modules/h"]));
    fx.refused(&bundle, "contains \"..\"");
}

#[test]
fn device_nodes_and_fifos() {
    let elf = real_elf();
    let fx = Fixture::new();
    fx.out();
    let tar = raw_tar(&[Raw::File(b"vmlinux", &elf), Raw::Char(b"modules/null")]);
    fx.refused(
        &write(&fx, "c.tar", &tar),
        "entry \"modules/null\" is a device node, which is not allowed",
    );
    // a FIFO made by mkfifo and archived by the real tar
    let fx = Fixture::new();
    let src = fx.tree(&[("vmlinux", &elf)]);
    std::fs::create_dir(src.join("modules")).unwrap();
    run(Command::new("mkfifo").arg(src.join("modules/pipe")));
    fx.refused(
        &fx.tar("b", "gz", &["vmlinux", "modules"]),
        "is a FIFO, which is not allowed",
    );

    // the generic reader can skip them instead
    let mut policy = kernel_bundle::bundle_policy(&BundleLimits::default());
    policy.special_files = SpecialFiles::Skip;
    let tar = raw_tar(&[Raw::Char(b"dev/null"), Raw::Fifo(b"p"), Raw::File(b"f", b"data")]);
    let mut seen = Vec::new();
    let summary = read_archive(&write(&fx, "s.tar", &tar), &policy, &mut |e: &mut Entry<'_>| {
        seen.push(e.path().to_owned());
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, vec!["f".to_owned()]);
    assert_eq!((summary.visited, summary.skipped, summary.headers), (1, 2, 3));
}

// ---------------------------------------------------------------- bundle layout

#[test]
fn bundle_layout_rules() {
    let elf = real_elf();
    // missing vmlinux
    let fx = Fixture::new();
    fx.tree(&[("initrd.img", b"i"), ("modules/m.ko", b"m")]);
    fx.refused(
        &fx.tar("b", "zst", &["initrd.img", "modules"]),
        "the bundle has no vmlinux",
    );
    // an extra file, named
    let fx = Fixture::new();
    fx.tree(&[("vmlinux", &elf), ("README", b"hi")]);
    fx.refused(
        &fx.tar("b", "", &["vmlinux", "README"]),
        "unexpected entry \"README\"; a kernel bundle holds only vmlinux, initrd.img and modules/",
    );
    // kernel in a subdirectory
    let fx = Fixture::new();
    fx.tree(&[("boot/vmlinux", &elf)]);
    fx.refused(&fx.tar("b", "", &["boot"]), "unexpected entry \"boot\"");
    // vmlinux twice (tar -r appends)
    let fx = Fixture::new();
    fx.tree(&[("vmlinux", &elf)]);
    let bundle = fx.tar("b", "", &["vmlinux"]);
    run(Command::new("tar")
        .arg("-C")
        .arg(fx.path("src"))
        .arg("-rf")
        .arg(&bundle)
        .arg("vmlinux"));
    fx.refused(&bundle, "file \"vmlinux\" appears twice in the archive");
    // vmlinux as a symlink
    let fx = Fixture::new();
    let src = fx.tree(&[("modules/k", &elf)]);
    symlink("modules/k", src.join("vmlinux")).unwrap();
    fx.refused(
        &fx.tar("b", "", &["modules", "vmlinux"]),
        "vmlinux must be a regular file",
    );
    // modules as a file
    let fx = Fixture::new();
    fx.tree(&[("vmlinux", &elf), ("modules", b"not a dir")]);
    fx.refused(&fx.tar("b", "", &["vmlinux", "modules"]), "modules must be a directory");
}

#[test]
fn staging_files_already_there_are_never_overwritten() {
    let fx = Fixture::new();
    fx.tree(&[("vmlinux", &real_elf())]);
    let bundle = fx.tar("b", "", &["vmlinux"]);
    let out = fx.out();
    std::fs::write(out.join("vmlinux"), b"someone else's").unwrap();
    let err = fx.extract(&bundle).unwrap_err();
    assert!(err.to_domain().is_none(), "a staging clash is internal: {err}");
    assert_eq!(std::fs::read(out.join("vmlinux")).unwrap(), b"someone else's");
}

/// A tar inside a tar (as docker-save holds layer tars), read through the outer entry.
#[test]
fn nested_archive_through_an_entry() {
    let fx = Fixture::new();
    let src = fx.tree(&[("inner/etc/hostname", b"box\n")]);
    run(Command::new("tar")
        .arg("-C")
        .arg(src.join("inner"))
        .arg("-czf")
        .arg(src.join("layer.tar.gz"))
        .arg("etc"));
    let outer = fx.tar("outer", "zst", &["layer.tar.gz"]);
    let policy = kernel_bundle::bundle_policy(&BundleLimits::default());
    let mut inner_paths = Vec::new();
    read_archive(&outer, &policy, &mut |e: &mut Entry<'_>| {
        assert_eq!(e.path(), "layer.tar.gz");
        read_archive_from(&mut *e, &policy, &mut |inner: &mut Entry<'_>| {
            let mut data = Vec::new();
            inner.copy_to(&mut data)?;
            inner_paths.push((inner.path().to_owned(), data));
            Ok(())
        })?;
        Ok(())
    })
    .unwrap();
    assert_eq!(
        inner_paths,
        vec![
            ("etc".to_owned(), vec![]),
            ("etc/hostname".to_owned(), b"box\n".to_vec())
        ]
    );
}
