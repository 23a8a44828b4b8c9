//! The kernel aggregate: a bootable kernel (`vmlinux`) with an optional initrd and module tree,
//! managed beside images with the same names, tags, ownership and visibility rules.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::DomainError;
use crate::ids::{BlobId, OrganizationId, RegionId};
use crate::image::{Architecture, ImageState, Status, Visibility, string_enum};
use crate::name::{Description, ImageName};
use crate::tags::UserTags;

/// A kernel id. UUIDv7, like image ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KernelId(Uuid);

impl KernelId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub fn from_uuid(u: Uuid) -> Self {
        Self(u)
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| DomainError::invalid("kernelID", "must be a UUID"))
    }
}

impl Default for KernelId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for KernelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

string_enum!(
    /// How the vmlinux is laid out: an ELF executable, or an x86 bzImage (boot protocol header).
    KernelFormat, "format" { Elf => "elf", BzImage => "bzimage" }
);
string_enum!(
    /// Where a kernel's files came from.
    KernelSource, "source" { Upload => "upload", UploadBundle => "upload-bundle", Url => "url", Catalog => "catalog" }
);
string_enum!(
    /// One of a kernel's files: the kernel itself, its initial ramdisk, or its modules (a tar).
    KernelArtifact, "artifact" { Vmlinux => "vmlinux", Initrd => "initrd", Modules => "modules" }
);

/// A kernel version, e.g. `6.1.0-18`: 1-63 of `A-Za-z0-9._+~-`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct KernelVersion(String);

impl KernelVersion {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '~' | '-');
        if s.is_empty() || s.len() > 63 || !s.chars().all(ok) || !s.starts_with(|c: char| c.is_ascii_alphanumeric())
        {
            return Err(DomainError::invalid(
                "version",
                "must be 1-63 of A-Za-z0-9._+~- starting with a letter or digit",
            ));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A distribution name, e.g. `debian`: 1-63 printable characters.
pub fn parse_distro(s: &str) -> Result<String, DomainError> {
    if s.is_empty() || s.len() > 63 || s.chars().any(char::is_control) {
        return Err(DomainError::invalid("distro", "must be 1-63 printable characters"));
    }
    Ok(s.to_owned())
}

/// One stored file of a kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactInfo {
    pub blob: BlobId,
    pub size: u64,
    /// Lowercase hex sha256.
    pub sha256: String,
}

impl ArtifactInfo {
    /// The entity tag of the file: its quoted sha256.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.sha256)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Artifacts {
    pub vmlinux: Option<ArtifactInfo>,
    pub initrd: Option<ArtifactInfo>,
    pub modules: Option<ArtifactInfo>,
}

impl Artifacts {
    pub fn get(&self, a: KernelArtifact) -> Option<&ArtifactInfo> {
        match a {
            KernelArtifact::Vmlinux => self.vmlinux.as_ref(),
            KernelArtifact::Initrd => self.initrd.as_ref(),
            KernelArtifact::Modules => self.modules.as_ref(),
        }
    }

    pub fn set(&mut self, a: KernelArtifact, info: ArtifactInfo) {
        match a {
            KernelArtifact::Vmlinux => self.vmlinux = Some(info),
            KernelArtifact::Initrd => self.initrd = Some(info),
            KernelArtifact::Modules => self.modules = Some(info),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (KernelArtifact, &ArtifactInfo)> {
        KernelArtifact::ALL
            .iter()
            .filter_map(|a| self.get(*a).map(|i| (*a, i)))
    }

    /// What the kernel's files weigh together (what the organization's bytes quota is charged).
    pub fn total_size(&self) -> u64 {
        self.iter().map(|(_, i)| i.size).sum()
    }
}

/// Where a kernel came from, recorded by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelProvenance {
    pub source: KernelSource,
    /// The source reference without credentials (a URL, a catalog entry name).
    pub reference: Option<String>,
    /// `sha256:<hex>` of what was received (the vmlinux, or the bundle as sent), once known.
    pub digest: Option<String>,
    pub imported_by: String,
    pub imported_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Kernel {
    pub id: KernelId,
    pub name: ImageName,
    pub description: Option<Description>,
    /// `None` for global kernels.
    pub organization_id: Option<OrganizationId>,
    pub region_id: RegionId,
    pub visibility: Visibility,
    pub architecture: Architecture,
    pub version: KernelVersion,
    /// Known once the vmlinux is stored.
    pub format: Option<KernelFormat>,
    pub distro: Option<String>,
    pub tags: UserTags,
    pub protected: bool,
    pub provenance: KernelProvenance,
    pub status: Status,
    /// The sha256 the creator promised for what it sends (vmlinux or bundle).
    pub expected_sha256: Option<String>,
    pub artifacts: Artifacts,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub revision: i64,
}

impl Kernel {
    /// The server-owned `strata.dev/` tags, as for images.
    pub fn reserved_tags(&self) -> BTreeMap<String, String> {
        use crate::image::reserved;
        let mut t = BTreeMap::new();
        t.insert(reserved::SOURCE.to_owned(), self.provenance.source.to_string());
        if let Some(org) = &self.organization_id {
            t.insert(reserved::ORGANIZATION.to_owned(), org.to_string());
        }
        t.insert(reserved::IMPORTED_BY.to_owned(), self.provenance.imported_by.clone());
        if let Some(r) = &self.provenance.reference {
            t.insert(reserved::REFERENCE.to_owned(), r.clone());
        }
        if let Some(d) = &self.provenance.digest {
            t.insert(reserved::DIGEST.to_owned(), d.clone());
        }
        t
    }

    pub fn all_tags(&self) -> BTreeMap<String, String> {
        let mut t = self.tags.clone().into_inner();
        t.extend(self.reserved_tags());
        t
    }

    /// Its own organization's kernels and global ones.
    pub fn visible_to(&self, org: &OrganizationId) -> bool {
        self.visibility == Visibility::Global || self.organization_id.as_ref() == Some(org)
    }

    /// Only the owner; global kernels only platform admins.
    pub fn modifiable_by(&self, org: &OrganizationId, platform_admin: bool) -> bool {
        match self.visibility {
            Visibility::Global => platform_admin,
            Visibility::Organization => self.organization_id.as_ref() == Some(org),
        }
    }

    /// May an image owned by `image_org` (`None`: a global image) in `region` boot this kernel
    /// on `arch`? A global image may only use a global kernel: every tenant sees it.
    pub fn usable_by_image(
        &self,
        image_org: Option<&OrganizationId>,
        region: &RegionId,
        arch: Architecture,
    ) -> Result<(), DomainError> {
        let invalid = |reason: String| DomainError::InvalidKernel { reason };
        let visible = match image_org {
            Some(org) => self.visible_to(org),
            None => self.visibility == Visibility::Global,
        };
        if !visible || &self.region_id != region {
            return Err(invalid(format!("kernel {} does not exist for this image", self.id)));
        }
        if self.architecture != arch {
            return Err(invalid(format!(
                "kernel {} is {}, the image is {arch}",
                self.id, self.architecture
            )));
        }
        if self.status.state != ImageState::Ready {
            return Err(invalid(format!(
                "kernel {} is {}, not ready",
                self.id, self.status.state
            )));
        }
        Ok(())
    }

    pub fn require_state(&self, expected: ImageState) -> Result<(), DomainError> {
        if self.status.state == expected {
            Ok(())
        } else {
            Err(DomainError::InvalidState {
                actual: self.status.state.to_string(),
                expected: expected.to_string(),
            })
        }
    }

    pub fn etag(&self) -> String {
        format!("\"{}\"", self.revision)
    }
}

/// How many leading bytes [`check_vmlinux`] needs.
pub const VMLINUX_HEAD: usize = 4096;

/// Checks the first bytes of a vmlinux against the declared architecture: an ELF executable
/// whose machine matches, or a bzImage (x86 boot protocol) for x86_64. The error names what was
/// found.
pub fn check_vmlinux(head: &[u8], arch: Architecture) -> Result<KernelFormat, DomainError> {
    let unsupported = |detected: &str| DomainError::UnsupportedKernelFormat {
        detected: detected.to_owned(),
    };
    if head.starts_with(b"\x7fELF") {
        if head.len() < 20 {
            return Err(unsupported("a truncated ELF header"));
        }
        let le = match head[5] {
            1 => true,
            2 => false,
            _ => return Err(unsupported("an ELF file with an invalid byte order")),
        };
        let u16_at = |o: usize| {
            let b = [head[o], head[o + 1]];
            if le { u16::from_le_bytes(b) } else { u16::from_be_bytes(b) }
        };
        let e_type = u16_at(16);
        if !matches!(e_type, 2 | 3) {
            return Err(unsupported(&format!(
                "an ELF file that is not an executable (e_type {e_type})"
            )));
        }
        let machine = u16_at(18);
        let found = match machine {
            62 => Some(Architecture::X86_64),
            183 => Some(Architecture::Aarch64),
            _ => None,
        };
        return match found {
            Some(a) if a == arch => Ok(KernelFormat::Elf),
            Some(a) => Err(DomainError::ArchitectureMismatch {
                expected: arch.to_string(),
                found: format!("an ELF executable for {a}"),
            }),
            None => Err(DomainError::ArchitectureMismatch {
                expected: arch.to_string(),
                found: format!("an ELF executable for {}", elf_machine_name(machine)),
            }),
        };
    }
    let bz = head.len() >= 0x206 && head[0x1fe..0x200] == [0x55, 0xaa] && &head[0x202..0x206] == b"HdrS";
    if bz {
        return if arch == Architecture::X86_64 {
            Ok(KernelFormat::BzImage)
        } else {
            Err(DomainError::ArchitectureMismatch {
                expected: arch.to_string(),
                found: "an x86 bzImage".into(),
            })
        };
    }
    if head.len() >= 0x40 && &head[0x38..0x3c] == b"ARM\x64" {
        return Err(unsupported("an arm64 Image (not ELF); upload the ELF vmlinux"));
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        return Err(unsupported("gzip-compressed data"));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(unsupported("zstd-compressed data"));
    }
    if head.is_empty() {
        return Err(unsupported("an empty file"));
    }
    Err(unsupported("unrecognised data"))
}

fn elf_machine_name(m: u16) -> String {
    match m {
        3 => "i386".into(),
        8 => "mips".into(),
        20 => "powerpc".into(),
        21 => "ppc64".into(),
        22 => "s390".into(),
        40 => "arm".into(),
        243 => "riscv".into(),
        258 => "loongarch".into(),
        other => format!("machine {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(machine: u16, e_type: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[16..18].copy_from_slice(&e_type.to_le_bytes());
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h
    }

    #[test]
    fn vmlinux_checks() {
        use Architecture::*;
        assert_eq!(check_vmlinux(&elf(62, 2), X86_64).unwrap(), KernelFormat::Elf);
        assert_eq!(check_vmlinux(&elf(183, 3), Aarch64).unwrap(), KernelFormat::Elf);
        assert_eq!(check_vmlinux(&elf(183, 2), X86_64).unwrap_err().code(), "architecture-mismatch");
        assert_eq!(check_vmlinux(&elf(40, 2), Aarch64).unwrap_err().code(), "architecture-mismatch");
        assert_eq!(check_vmlinux(&elf(62, 1), X86_64).unwrap_err().code(), "unsupported-kernel-format");
        let mut bz = vec![0u8; 1024];
        bz[0x1fe] = 0x55;
        bz[0x1ff] = 0xaa;
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(check_vmlinux(&bz, X86_64).unwrap(), KernelFormat::BzImage);
        assert_eq!(check_vmlinux(&bz, Aarch64).unwrap_err().code(), "architecture-mismatch");
        let e = check_vmlinux(&[0x1f, 0x8b, 8, 0], X86_64).unwrap_err();
        assert!(e.to_string().contains("gzip"), "{e}");
        assert_eq!(check_vmlinux(b"", X86_64).unwrap_err().code(), "unsupported-kernel-format");
    }



    #[test]
    fn versions() {
        for ok in ["6.1.0-18", "6.8.0-rc1+", "5.15.0_generic~1"] {
            assert!(KernelVersion::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-1", "6.1 0", &"1".repeat(64), "6/1"] {
            assert!(KernelVersion::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enums() {
        assert_eq!("upload-bundle".parse::<KernelSource>().unwrap(), KernelSource::UploadBundle);
        assert_eq!("bzimage".parse::<KernelFormat>().unwrap(), KernelFormat::BzImage);
        assert!("file".parse::<KernelArtifact>().is_err());
    }
}
