//! The bridge from a staged kernel bundle to the hardened archive extractor
//! (`strata_providers::archive`): which entries a bundle may hold and where they go.

use std::path::{Path, PathBuf};

use strata_domain::DomainError;
use strata_domain::kernel::KernelArtifact;

use crate::error::ApiResult;

/// Extracts `archive` (tar, tar.gz or tar.zst) into `out_dir`: `vmlinux`, optional `initrd.img`
/// and optional `modules/` (kept as one tar). Returns the files found.
pub async fn extract(archive: &Path, out_dir: &Path, max_bytes: u64) -> ApiResult<Vec<(KernelArtifact, PathBuf)>> {
    let _ = (archive, out_dir, max_bytes);
    Err(DomainError::InvalidArchive {
        reason: "bundle extraction is not available in this build".into(),
    }
    .into())
}
