//! The kernel-format check: what a would-be `vmlinux` is, from its first bytes, and whether it
//! boots on the architecture the kernel was declared for.
//!
//! A VM manager boots either an uncompressed ELF `vmlinux` (x86_64 or aarch64) or, on x86_64, a
//! `bzImage` in the x86 boot protocol. Anything else is refused with a message naming what was
//! found, because the usual mistakes (a gzip'd kernel, an arm64 `Image`, an initrd, a 32-bit
//! kernel) each have a different fix. Pure function over a byte prefix, so single-file uploads,
//! bundle extraction and the fuzz target all run the same code.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::image::Architecture;

/// How many leading bytes [`KernelFormat::detect`] wants. The x86 boot header ends at 0x238 and
/// the arm64 `Image` magic sits at 0x38; 4 KiB leaves room for later checks without another read.
pub const DETECT_LEN: usize = 4096;

const EM_386: u16 = 3;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// The two kernel layouts Strata stores, as they appear on the wire (`format` of a kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum KernelFormat {
    /// An uncompressed ELF `vmlinux`, booted directly by firecracker-style VMMs.
    Elf,
    /// An x86 `bzImage` (boot protocol 2.00 or newer, loaded high); x86_64 only.
    #[serde(rename = "bzimage")]
    BzImage,
}

impl KernelFormat {
    pub fn as_str(&self) -> &'static str {
        match self {
            KernelFormat::Elf => "elf",
            KernelFormat::BzImage => "bzimage",
        }
    }
}

impl fmt::Display for KernelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The machine a kernel is built for. Numbers are ELF `e_machine` values; a bzImage is reported
/// as x86-64 or, when its header says it has no 64-bit entry point, as Intel 80386.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Machine {
    X86_64,
    Aarch64,
    /// Any other ELF machine, kept by number so the message can name it.
    Other(u16),
}

impl Machine {
    pub fn from_elf(e_machine: u16) -> Self {
        match e_machine {
            EM_X86_64 => Machine::X86_64,
            EM_AARCH64 => Machine::Aarch64,
            n => Machine::Other(n),
        }
    }

    pub fn elf_number(&self) -> u16 {
        match self {
            Machine::X86_64 => EM_X86_64,
            Machine::Aarch64 => EM_AARCH64,
            Machine::Other(n) => *n,
        }
    }

    /// The Strata architecture this machine is, if Strata supports it at all.
    pub fn architecture(&self) -> Option<Architecture> {
        match self {
            Machine::X86_64 => Some(Architecture::X86_64),
            Machine::Aarch64 => Some(Architecture::Aarch64),
            Machine::Other(_) => None,
        }
    }

    /// A human name for the common ELF machines; `None` for the rest.
    pub fn name(&self) -> Option<&'static str> {
        Some(match self.elf_number() {
            2 => "SPARC",
            EM_386 => "Intel 80386",
            8 => "MIPS",
            20 => "PowerPC",
            21 => "PowerPC64",
            22 => "S/390",
            40 => "ARM",
            42 => "SuperH",
            43 => "SPARC V9",
            50 => "IA-64",
            EM_X86_64 => "x86-64",
            EM_AARCH64 => "AArch64",
            243 => "RISC-V",
            258 => "LoongArch",
            _ => return None,
        })
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "machine {} ({name})", self.elf_number()),
            None => write!(f, "machine {}", self.elf_number()),
        }
    }
}

/// A recognised kernel. Its machine may still be one Strata does not boot: [`Detected::check`]
/// decides that against the declared architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detected {
    pub format: KernelFormat,
    pub machine: Machine,
}

impl fmt::Display for Detected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.format {
            KernelFormat::Elf => write!(f, "ELF for {}", self.machine),
            KernelFormat::BzImage if self.machine == Machine::X86_64 => f.write_str("an x86-64 bzImage"),
            KernelFormat::BzImage => f.write_str("a 32-bit x86 bzImage (no 64-bit entry point)"),
        }
    }
}

/// What a refused file turned out to be. The `Display` text goes into the 422 message, so each
/// variant says it the way a person would ("gzip data", "a shell script").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Empty,
    Gzip,
    Zstd,
    Xz,
    Bzip2,
    Lz4,
    Lzma,
    Tar,
    Cpio,
    Script,
    /// An arm64 `Image` (what `make Image` writes): bootable by some loaders, but not an ELF.
    Arm64Image,
    /// A PE executable without an x86 boot header (an EFI application, a Windows binary).
    PeExecutable,
    /// An ELF file that is not a kernel Strata can boot: 32-bit, big-endian, a relocatable object
    /// or core dump, or for a machine Strata has no architecture for.
    Elf {
        class64: bool,
        little_endian: bool,
        e_type: u16,
        machine: Machine,
    },
    /// The ELF magic, but fewer bytes than an ELF header.
    TruncatedElf {
        len: usize,
    },
    /// An x86 boot sector whose header is older than protocol 2.00 or not loaded high.
    ZImage {
        protocol: u16,
    },
    /// The x86 boot header magic with fewer bytes than the header needs.
    TruncatedBzImage {
        len: usize,
    },
    /// A recognised kernel for a machine Strata does not boot (e.g. a 32-bit bzImage).
    Kernel(Detected),
    Text,
    Unknown {
        head: [u8; 4],
        len: usize,
    },
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Empty => f.write_str("an empty file"),
            Found::Gzip => f.write_str("gzip data (decompress the kernel first)"),
            Found::Zstd => f.write_str("zstd data (decompress the kernel first)"),
            Found::Xz => f.write_str("xz data (decompress the kernel first)"),
            Found::Bzip2 => f.write_str("bzip2 data (decompress the kernel first)"),
            Found::Lz4 => f.write_str("lz4 data (decompress the kernel first)"),
            Found::Lzma => f.write_str("lzma data (decompress the kernel first)"),
            Found::Tar => f.write_str("a tar archive (upload it as a bundle)"),
            Found::Cpio => f.write_str("a cpio archive (an initrd?)"),
            Found::Script => f.write_str("a shell script"),
            Found::Arm64Image => f.write_str("an arm64 Image (upload the ELF vmlinux instead)"),
            Found::PeExecutable => f.write_str("a PE executable without an x86 boot header"),
            Found::Elf {
                class64,
                little_endian,
                e_type,
                machine,
            } => {
                let kind = match e_type {
                    1 => " relocatable object",
                    4 => " core dump",
                    2 | 3 => "",
                    _ => " of unknown type",
                };
                let bits = if *class64 { "" } else { "32-bit " };
                let endian = if *little_endian { "" } else { "big-endian " };
                write!(f, "{bits}{endian}ELF{kind} for {machine}")
            }
            Found::TruncatedElf { len } => write!(f, "a truncated ELF header ({len} bytes)"),
            Found::ZImage { protocol } => write!(
                f,
                "an x86 zImage or boot sector (boot protocol {}.{:02}, not a bzImage)",
                protocol >> 8,
                protocol & 0xff
            ),
            Found::TruncatedBzImage { len } => write!(f, "a truncated x86 boot header ({len} bytes)"),
            Found::Kernel(d) => d.fmt(f),
            Found::Text => f.write_str("a text file"),
            Found::Unknown { head, len } => {
                let shown = (*len).min(4);
                let hex: Vec<String> = head[..shown].iter().map(|b| format!("{b:02x}")).collect();
                write!(f, "unknown data starting with {}", hex.join(" "))
            }
        }
    }
}

/// Why a kernel is refused. Both map to 422 through [`DomainError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelFormatError {
    /// `unsupported-kernel-format`: not an ELF or bzImage kernel Strata can boot.
    #[error("unsupported kernel format: {0}")]
    Unsupported(Found),
    /// `architecture-mismatch`: a good kernel, for the other architecture.
    #[error("the kernel is {found} but the declared architecture is {declared}")]
    ArchitectureMismatch { found: Detected, declared: Architecture },
}

impl From<KernelFormatError> for DomainError {
    fn from(e: KernelFormatError) -> Self {
        match e {
            KernelFormatError::Unsupported(found) => DomainError::UnsupportedKernelFormat {
                found: found.to_string(),
            },
            KernelFormatError::ArchitectureMismatch { found, declared } => DomainError::ArchitectureMismatch {
                found: found.to_string(),
                declared: declared.as_str().to_owned(),
            },
        }
    }
}

impl KernelFormat {
    /// Classifies `prefix`, the first bytes of a file (up to [`DETECT_LEN`]; fewer only if the
    /// file is that short). A recognised ELF or bzImage is `Ok` whatever its machine; use
    /// [`Detected::check`] (or [`KernelFormat::validate`]) to hold it against an architecture.
    pub fn detect(prefix: &[u8]) -> Result<Detected, KernelFormatError> {
        let head = &prefix[..prefix.len().min(DETECT_LEN)];
        if head.is_empty() {
            return Err(KernelFormatError::Unsupported(Found::Empty));
        }
        if head.starts_with(b"\x7fELF") {
            return parse_elf(head);
        }
        // The x86 boot header comes before PE: a bzImage with an EFI stub also starts with "MZ".
        if head.len() >= 0x206 && &head[0x202..0x206] == b"HdrS" {
            return parse_bzimage(head);
        }
        Err(KernelFormatError::Unsupported(other_format(head)))
    }

    /// [`KernelFormat::detect`] then [`Detected::check`]: what the upload and bundle paths call.
    pub fn validate(prefix: &[u8], declared: Architecture) -> Result<Detected, KernelFormatError> {
        let detected = Self::detect(prefix)?;
        detected.check(declared)?;
        Ok(detected)
    }
}

impl Detected {
    /// A kernel for a machine Strata has no architecture for is an unsupported format (the
    /// message names the machine); one for the other supported architecture is a mismatch.
    pub fn check(&self, declared: Architecture) -> Result<(), KernelFormatError> {
        match self.machine.architecture() {
            None => Err(KernelFormatError::Unsupported(Found::Kernel(*self))),
            Some(arch) if arch == declared => Ok(()),
            Some(_) => Err(KernelFormatError::ArchitectureMismatch { found: *self, declared }),
        }
    }
}

fn parse_elf(head: &[u8]) -> Result<Detected, KernelFormatError> {
    // e_ident (16 bytes), e_type (2), e_machine (2), e_version (4): enough to decide.
    if head.len() < 24 {
        return Err(KernelFormatError::Unsupported(Found::TruncatedElf { len: head.len() }));
    }
    let class64 = head[4] == 2;
    let little_endian = head[5] == 1;
    let u16_at = |off: usize| {
        let b = [head[off], head[off + 1]];
        if little_endian {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    };
    let e_type = u16_at(16);
    let machine = Machine::from_elf(u16_at(18));
    // ET_EXEC for x86_64; ET_DYN too, since a relocatable arm64 vmlinux is linked as one.
    let executable = matches!(e_type, 2 | 3);
    if class64 && little_endian && head[6] == 1 && executable {
        Ok(Detected {
            format: KernelFormat::Elf,
            machine,
        })
    } else {
        Err(KernelFormatError::Unsupported(Found::Elf {
            class64,
            little_endian,
            e_type,
            machine,
        }))
    }
}

fn parse_bzimage(head: &[u8]) -> Result<Detected, KernelFormatError> {
    if head.len() < 0x212 {
        return Err(KernelFormatError::Unsupported(Found::TruncatedBzImage {
            len: head.len(),
        }));
    }
    let protocol = u16::from_le_bytes([head[0x206], head[0x207]]);
    let boot_flag = head[0x1FE] == 0x55 && head[0x1FF] == 0xAA;
    let loaded_high = head[0x211] & 0x01 != 0;
    if !boot_flag || protocol < 0x0200 || !loaded_high {
        return Err(KernelFormatError::Unsupported(Found::ZImage { protocol }));
    }
    // Protocol 2.12 added xloadflags; XLF_KERNEL_64 is set by every x86_64 build. Older headers
    // cannot say, and such old x86_64 kernels are accepted as x86_64.
    let machine = if protocol >= 0x020C {
        if head.len() < 0x238 {
            return Err(KernelFormatError::Unsupported(Found::TruncatedBzImage {
                len: head.len(),
            }));
        }
        let xloadflags = u16::from_le_bytes([head[0x236], head[0x237]]);
        if xloadflags & 0x01 != 0 {
            Machine::X86_64
        } else {
            Machine::Other(EM_386)
        }
    } else {
        Machine::X86_64
    };
    Ok(Detected {
        format: KernelFormat::BzImage,
        machine,
    })
}

fn other_format(head: &[u8]) -> Found {
    let starts = |sig: &[u8]| head.starts_with(sig);
    if starts(&[0x1f, 0x8b]) {
        Found::Gzip
    } else if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Found::Zstd
    } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Found::Xz
    } else if starts(b"BZh") {
        Found::Bzip2
    } else if starts(&[0x04, 0x22, 0x4d, 0x18]) || starts(&[0x02, 0x21, 0x4c, 0x18]) {
        Found::Lz4
    } else if starts(&[0x5d, 0x00, 0x00]) {
        Found::Lzma
    } else if starts(b"070701") || starts(b"070702") || starts(b"070707") || starts(&[0xc7, 0x71]) {
        Found::Cpio
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Found::Tar
    } else if starts(b"#!") {
        Found::Script
    } else if head.len() >= 0x3C && &head[0x38..0x3C] == b"ARM\x64" {
        Found::Arm64Image
    } else if starts(b"MZ") {
        Found::PeExecutable
    } else if looks_like_text(head) {
        Found::Text
    } else {
        let mut first = [0u8; 4];
        let n = head.len().min(4);
        first[..n].copy_from_slice(&head[..n]);
        Found::Unknown {
            head: first,
            len: head.len(),
        }
    }
}

fn looks_like_text(head: &[u8]) -> bool {
    let sample = &head[..head.len().min(512)];
    match std::str::from_utf8(sample) {
        Ok(s) => s.chars().all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t')),
        // A multi-byte character cut at the end of the sample is still text.
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > sample.len(),
    }
}

/// Builders of sample kernel headers, shared by this crate's tests and other crates' tests (bundle
/// extraction, the kernels API) so each case is built once.
pub mod samples {
    /// A minimal 64-bit little-endian ELF header of type `e_type` for `e_machine`, zero-padded to `len`.
    pub fn elf64(e_type: u16, e_machine: u16, len: usize) -> Vec<u8> {
        let mut d = vec![0u8; len.max(64)];
        d[0..4].copy_from_slice(b"\x7fELF");
        d[4] = 2; // ELFCLASS64
        d[5] = 1; // ELFDATA2LSB
        d[6] = 1; // EV_CURRENT
        d[16..18].copy_from_slice(&e_type.to_le_bytes());
        d[18..20].copy_from_slice(&e_machine.to_le_bytes());
        d[20..24].copy_from_slice(&1u32.to_le_bytes());
        d
    }

    /// An x86 boot sector + setup header with protocol `version` (e.g. 0x020F), loaded high, and
    /// `XLF_KERNEL_64` set when `kernel_64`; zero-padded to `len` (at least 0x238 bytes).
    pub fn bzimage(version: u16, kernel_64: bool, len: usize) -> Vec<u8> {
        let mut d = vec![0u8; len.max(0x238)];
        d[0..2].copy_from_slice(b"MZ");
        d[0x1F1] = 27; // setup_sects
        d[0x1FE] = 0x55;
        d[0x1FF] = 0xAA;
        d[0x200] = 0xEB; // jump over the header
        d[0x201] = 0x66;
        d[0x202..0x206].copy_from_slice(b"HdrS");
        d[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        d[0x211] = 0x01; // LOADED_HIGH
        if kernel_64 {
            d[0x236] = 0x01 | 0x02; // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
        }
        d
    }

    /// Copies an ELF prefix with its `e_machine` replaced (little-endian files only).
    pub fn patch_machine(elf: &[u8], e_machine: u16) -> Vec<u8> {
        let mut d = elf.to_vec();
        if d.len() >= 20 {
            d[18..20].copy_from_slice(&e_machine.to_le_bytes());
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::samples::*;
    use super::*;

    fn unsupported(prefix: &[u8]) -> String {
        match KernelFormat::detect(prefix) {
            Err(KernelFormatError::Unsupported(found)) => found.to_string(),
            other => panic!("expected unsupported, got {other:?}"),
        }
    }

    fn head_of(path: &str) -> Vec<u8> {
        let mut bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        bytes.truncate(DETECT_LEN);
        bytes
    }

    #[test]
    fn real_x86_64_elf_and_patched_aarch64() {
        // /bin/true is a PIE (ET_DYN) x86_64 executable on the test machines.
        let real = head_of("/bin/true");
        let d = KernelFormat::detect(&real).unwrap();
        assert_eq!(d.format, KernelFormat::Elf);
        assert_eq!(d.machine, Machine::X86_64);
        assert!(KernelFormat::validate(&real, Architecture::X86_64).is_ok());

        let arm = patch_machine(&real, 183);
        assert_eq!(
            KernelFormat::validate(&arm, Architecture::Aarch64).unwrap(),
            Detected {
                format: KernelFormat::Elf,
                machine: Machine::Aarch64
            }
        );
        let err = KernelFormat::validate(&arm, Architecture::X86_64).unwrap_err();
        assert!(matches!(err, KernelFormatError::ArchitectureMismatch { .. }));
        let de = DomainError::from(err);
        assert_eq!(de.code(), "architecture-mismatch");
        assert_eq!(
            de.to_string(),
            "architecture mismatch: the kernel is ELF for machine 183 (AArch64) but the declared architecture is x86_64"
        );
        let err = DomainError::from(KernelFormat::validate(&real, Architecture::Aarch64).unwrap_err());
        assert!(err.to_string().contains("machine 62 (x86-64)"), "{err}");
    }

    #[test]
    fn static_program_from_the_machines_cc() {
        let dir = std::env::temp_dir().join(format!("strata-kf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("t.c");
        std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
        let out = dir.join("t");
        let status = std::process::Command::new("cc")
            .args(["-static", "-o"])
            .arg(&out)
            .arg(&src)
            .status();
        match status {
            Ok(s) if s.success() => {
                let head = head_of(out.to_str().unwrap());
                assert_eq!(
                    u16::from_le_bytes([head[16], head[17]]),
                    2,
                    "a static binary is ET_EXEC"
                );
                assert!(KernelFormat::validate(&head, Architecture::X86_64).is_ok());
                assert!(matches!(
                    KernelFormat::validate(&patch_machine(&head, 183), Architecture::Aarch64),
                    Ok(Detected {
                        machine: Machine::Aarch64,
                        ..
                    })
                ));
            }
            // No static libc here: the /bin/true case above still covers a real ELF.
            other => eprintln!("skipping: cc -static unavailable ({other:?})"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn synthetic_elf_types() {
        for e_type in [2u16, 3] {
            assert!(KernelFormat::validate(&elf64(e_type, 62, 4096), Architecture::X86_64).is_ok());
        }
        assert_eq!(
            unsupported(&elf64(1, 62, 128)),
            "ELF relocatable object for machine 62 (x86-64)"
        );
        assert_eq!(
            unsupported(&elf64(4, 183, 128)),
            "ELF core dump for machine 183 (AArch64)"
        );
        let mut arm32 = elf64(2, 40, 128);
        arm32[4] = 1;
        assert_eq!(unsupported(&arm32), "32-bit ELF for machine 40 (ARM)");
        let mut be = elf64(2, 0, 128);
        be[5] = 2;
        be[16..18].copy_from_slice(&2u16.to_be_bytes());
        be[18..20].copy_from_slice(&22u16.to_be_bytes());
        assert_eq!(unsupported(&be), "big-endian ELF for machine 22 (S/390)");
        assert_eq!(
            unsupported(&elf64(2, 62, 128)[..20]),
            "a truncated ELF header (20 bytes)"
        );
    }

    #[test]
    fn elf_for_unsupported_machines_is_an_unsupported_format() {
        let riscv = KernelFormat::detect(&elf64(2, 243, 128)).unwrap();
        assert_eq!(riscv.machine, Machine::Other(243));
        let err = DomainError::from(riscv.check(Architecture::X86_64).unwrap_err());
        assert_eq!(err.code(), "unsupported-kernel-format");
        assert!(err.to_string().contains("ELF for machine 243 (RISC-V)"), "{err}");
        let arm = KernelFormat::validate(&elf64(2, 40, 128), Architecture::Aarch64).unwrap_err();
        assert_eq!(
            arm,
            KernelFormatError::Unsupported(Found::Kernel(Detected {
                format: KernelFormat::Elf,
                machine: Machine::Other(40)
            }))
        );
        assert!(arm.to_string().contains("ELF for machine 40 (ARM)"));
        let odd = KernelFormat::validate(&elf64(2, 9999, 128), Architecture::Aarch64).unwrap_err();
        assert_eq!(odd.to_string(), "unsupported kernel format: ELF for machine 9999");
    }

    #[test]
    fn bzimage_headers() {
        for version in [0x0200u16, 0x020A, 0x020C, 0x020F] {
            let d = KernelFormat::validate(&bzimage(version, true, 4096), Architecture::X86_64).unwrap();
            assert_eq!(d.format, KernelFormat::BzImage);
            assert_eq!(d.machine, Machine::X86_64);
        }
        let err = KernelFormat::validate(&bzimage(0x020F, true, 4096), Architecture::Aarch64).unwrap_err();
        assert_eq!(DomainError::from(err.clone()).code(), "architecture-mismatch");
        assert!(err.to_string().contains("an x86-64 bzImage"), "{err}");
        // 2.12+ without XLF_KERNEL_64: a 32-bit kernel
        let err = KernelFormat::validate(&bzimage(0x020F, false, 4096), Architecture::X86_64).unwrap_err();
        assert_eq!(DomainError::from(err.clone()).code(), "unsupported-kernel-format");
        assert!(err.to_string().contains("32-bit x86 bzImage"), "{err}");
        // not loaded high, old protocol, missing boot flag
        let mut zimage = bzimage(0x0204, true, 4096);
        zimage[0x211] = 0;
        assert!(unsupported(&zimage).starts_with("an x86 zImage or boot sector (boot protocol 2.04"));
        assert!(unsupported(&bzimage(0x0103, true, 4096)).contains("1.03"));
        let mut no_flag = bzimage(0x020F, true, 4096);
        no_flag[0x1FF] = 0;
        assert!(unsupported(&no_flag).contains("zImage"));
        assert_eq!(
            unsupported(&bzimage(0x020F, true, 4096)[..0x220]),
            "a truncated x86 boot header (544 bytes)"
        );
        assert_eq!(
            unsupported(&bzimage(0x020F, true, 4096)[..0x208]),
            "a truncated x86 boot header (520 bytes)"
        );
        // The PE signature of the EFI stub does not hide the boot header.
        assert!(bzimage(0x020F, true, 4096).starts_with(b"MZ"));
    }

    #[test]
    fn names_what_was_found() {
        let mut tar = vec![0u8; 1024];
        tar[..7].copy_from_slice(b"vmlinux");
        tar[257..263].copy_from_slice(b"ustar\0");
        let mut arm64_image = vec![0u8; 4096];
        arm64_image[0..2].copy_from_slice(b"MZ");
        arm64_image[0x38..0x3C].copy_from_slice(b"ARM\x64");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "an empty file"),
            (vec![0x1f, 0x8b, 8, 0, 0, 0], "gzip data (decompress the kernel first)"),
            (
                vec![0x28, 0xb5, 0x2f, 0xfd, 0],
                "zstd data (decompress the kernel first)",
            ),
            (b"\xfd7zXZ\0\0".to_vec(), "xz data (decompress the kernel first)"),
            (b"BZh91AY".to_vec(), "bzip2 data (decompress the kernel first)"),
            (b"070701000".to_vec(), "a cpio archive (an initrd?)"),
            (b"#!/bin/sh\necho hi\n".to_vec(), "a shell script"),
            (tar, "a tar archive (upload it as a bundle)"),
            (arm64_image, "an arm64 Image (upload the ELF vmlinux instead)"),
            (b"MZ\x90\0".to_vec(), "a PE executable without an x86 boot header"),
            ("hello wörld\n".as_bytes().to_vec(), "a text file"),
            (vec![0, 1, 2, 3, 4, 5], "unknown data starting with 00 01 02 03"),
            (vec![0xff], "unknown data starting with ff"),
        ];
        for (bytes, want) in cases {
            assert_eq!(unsupported(&bytes), want);
        }
        let err = DomainError::from(KernelFormat::detect(&[]).unwrap_err());
        assert_eq!(err.code(), "unsupported-kernel-format");
        assert!(err.to_string().contains("an empty file"), "{err}");
    }

    #[test]
    fn never_panics_on_short_or_odd_prefixes() {
        let samples = [elf64(2, 62, 64), bzimage(0x020F, true, 0x238), vec![0x55; 600]];
        for s in &samples {
            for n in 0..s.len() {
                let _ = KernelFormat::detect(&s[..n]);
            }
        }
        // more than DETECT_LEN is fine and only the head counts
        assert!(KernelFormat::detect(&elf64(2, 62, 3 * DETECT_LEN)).is_ok());
    }

    #[test]
    fn format_names_on_the_wire() {
        assert_eq!(serde_json::to_string(&KernelFormat::BzImage).unwrap(), "\"bzimage\"");
        assert_eq!(serde_json::to_string(&KernelFormat::Elf).unwrap(), "\"elf\"");
        assert_eq!(
            serde_json::from_str::<KernelFormat>("\"bzimage\"").unwrap(),
            KernelFormat::BzImage
        );
    }
}
