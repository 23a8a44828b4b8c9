//! Storage keys: every object Strata stores is named by one [`BlobKey`], built and parsed here
//! and nowhere else. Blob ids are never reused, so a key names one immutable object for life.

use std::fmt;

use object_store::path::Path;
use strata_domain::ids::{BlobId, ImageId, KernelId};

/// What an object in a region's storage is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BlobKey {
    /// An image's bytes: `images/<image id>/<blob id>`.
    Image { image: ImageId, blob: BlobId },
    /// One artifact of a kernel (vmlinux, initrd, modules; each has its own blob id):
    /// `kernels/<kernel id>/<blob id>`.
    Kernel { kernel: KernelId, blob: BlobId },
    /// A content-addressed cache entry: `cache/sha256/<64 hex>`. Shared, owned by no row.
    Cache { sha256: String },
}

/// The top-level prefixes keys live under, for listings and sweeps.
pub const PREFIXES: [&str; 3] = ["images", "kernels", "cache"];

impl BlobKey {
    pub fn image(image: ImageId, blob: BlobId) -> Self {
        BlobKey::Image { image, blob }
    }

    pub fn kernel(kernel: KernelId, blob: BlobId) -> Self {
        BlobKey::Kernel { kernel, blob }
    }

    /// A cache key; `None` unless `sha256` is 64 lowercase hex digits.
    pub fn cache(sha256: &str) -> Option<Self> {
        let ok = sha256.len() == 64 && sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| BlobKey::Cache {
            sha256: sha256.to_owned(),
        })
    }

    /// The blob id of a per-attempt key (images, kernels); `None` for cache entries.
    pub fn blob(&self) -> Option<BlobId> {
        match self {
            BlobKey::Image { blob, .. } | BlobKey::Kernel { blob, .. } => Some(*blob),
            BlobKey::Cache { .. } => None,
        }
    }

    pub fn path(&self) -> Path {
        Path::from(self.to_string())
    }

    /// The inverse of `to_string`; `None` for anything that is not a key this module makes.
    pub fn parse(key: &str) -> Option<Self> {
        let uuid = |s: &str| uuid::Uuid::parse_str(s).ok().filter(|u| u.to_string() == s);
        let mut parts = key.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("images"), Some(image), Some(blob), None) => Some(BlobKey::Image {
                image: ImageId::from_uuid(uuid(image)?),
                blob: BlobId::from_uuid(uuid(blob)?),
            }),
            (Some("kernels"), Some(kernel), Some(blob), None) => Some(BlobKey::Kernel {
                kernel: KernelId::from_uuid(uuid(kernel)?),
                blob: BlobId::from_uuid(uuid(blob)?),
            }),
            (Some("cache"), Some("sha256"), Some(hex), None) => BlobKey::cache(hex),
            _ => None,
        }
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobKey::Image { image, blob } => write!(f, "images/{image}/{blob}"),
            BlobKey::Kernel { kernel, blob } => write!(f, "kernels/{kernel}/{blob}"),
            BlobKey::Cache { sha256 } => write!(f, "cache/sha256/{sha256}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_nothing_else_parses() {
        let keys = [
            BlobKey::image(ImageId::new(), BlobId::new()),
            BlobKey::kernel(KernelId::new(), BlobId::new()),
            BlobKey::cache(&"ab".repeat(32)).unwrap(),
        ];
        for k in keys {
            assert_eq!(BlobKey::parse(&k.to_string()), Some(k.clone()));
            assert_eq!(k.path().as_ref(), k.to_string());
        }
        for bad in [
            "images/x/y",
            "images/0190a0a0-0000-7000-8000-000000000000",
            "kernels/0190a0a0-0000-7000-8000-000000000000/0190a0a0-0000-7000-8000-000000000000/extra",
            "cache/sha256/ABAB",
            "cache/md5/00",
            "health/probe-1",
            "images/0190A0A0-0000-7000-8000-000000000000/0190a0a0-0000-7000-8000-000000000000",
        ] {
            assert_eq!(BlobKey::parse(bad), None, "{bad}");
        }
        assert!(BlobKey::cache(&"0".repeat(63)).is_none());
    }
}
