//! The kernel aggregate: a bootable kernel (`vmlinux`) with an optional initrd and module tree,
//! managed beside images with the same names, tags, ownership and visibility rules.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::ids::{BlobId, OrganizationId, RegionId};
use crate::image::{Architecture, ImageState, Status, Visibility, string_enum};
pub use crate::kernel_format::KernelFormat;
use crate::name::{Description, ImageName};
use crate::tags::UserTags;

pub use crate::ids::KernelId;

string_enum!(
    /// Where a kernel's files came from.
    KernelSource, "source" { Upload => "upload", UploadBundle => "upload-bundle", Url => "url", Catalog => "catalog" }
);
string_enum!(
    /// One of a kernel's files: the kernel itself, its initial ramdisk, or its modules (a tar).
    KernelArtifact, "artifact" { Vmlinux => "vmlinux", Initrd => "initrd", Modules => "modules" }
);

impl KernelArtifact {
    /// The blob id this artifact is stored under by the import attempt whose blob id is `attempt`:
    /// the vmlinux under `attempt` itself, the others under ids derived from it (UUID v5), so an
    /// attempt's every key is known from the one id the job records, and a takeover or sweep can
    /// find what a dead attempt wrote.
    pub fn attempt_blob(self, attempt: BlobId) -> BlobId {
        match self {
            KernelArtifact::Vmlinux => attempt,
            other => BlobId::from_uuid(uuid::Uuid::new_v5(&attempt.as_uuid(), other.to_string().as_bytes())),
        }
    }
}

/// A kernel version, e.g. `6.1.0-18`: 1-63 of `A-Za-z0-9._+~-`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct KernelVersion(String);

impl KernelVersion {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '~' | '-');
        if s.is_empty() || s.len() > 63 || !s.chars().all(ok) || !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
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
        KernelArtifact::ALL.iter().filter_map(|a| self.get(*a).map(|i| (*a, i)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_blobs_are_distinct_and_stable() {
        let a = BlobId::new();
        let ids: Vec<_> = KernelArtifact::ALL.iter().map(|x| x.attempt_blob(a)).collect();
        assert_eq!(ids[0], a);
        assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
        assert_eq!(KernelArtifact::Initrd.attempt_blob(a), ids[1]);
        assert_ne!(KernelArtifact::Initrd.attempt_blob(BlobId::new()), ids[1]);
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
        assert_eq!(
            "upload-bundle".parse::<KernelSource>().unwrap(),
            KernelSource::UploadBundle
        );
        assert!("file".parse::<KernelArtifact>().is_err());
    }
}
