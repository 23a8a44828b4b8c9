//! Kernel bundle pulls, from a URL or a catalog entry: a kind on the job runner (service::jobs).
//!
//! `check` applies the address policy and peeks at the first bytes (a tar, tar.gz, tar.zst or tar.xz);
//! `run` stages the bundle through the hardened fetcher, capped and hashed (the sha256 and size
//! are checked before a byte is decompressed), extracts it with the one hardened extractor that
//! uploads use, and stores each file under a key derived from the attempt's blob id, so the
//! runner can remove all of them when an attempt fails, is cancelled or dies.

use std::path::PathBuf;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use strata_domain::DomainError;
use strata_domain::image::{Architecture, ReasonCode};
use strata_domain::kernel::{ArtifactInfo, Artifacts, KernelArtifact};
use strata_domain::kernel_format::DETECT_LEN;
use strata_providers::archive::Compression;
use strata_providers::archive::kernel_bundle::{BundleLimits, extract_kernel_bundle_async};
use strata_providers::kernel_store::stage;
use strata_providers::{BlobKey, Fetcher, Source, StageError};

use crate::config::ImportsConfig;
use crate::service::imports::{fetch_policy, retryable_fetch, sync_error};
use crate::service::jobs::{Attempt, Checked, Failure, ImportKind, Produced};

/// What the create-kernel command asks for.
pub struct BundleRequest {
    pub url: String,
    /// Expected lowercase hex sha256 of the bundle as sent.
    pub sha256: Option<String>,
    /// The most bytes the bundle may have (a catalog entry's size, or the kernel limit).
    pub max_bytes: u64,
    pub architecture: Architecture,
    /// The catalog entry the pull comes from, if any (its name is the provenance reference).
    pub catalog: Option<String>,
}

/// What the job row keeps: never credentials.
#[derive(Debug, Serialize, Deserialize)]
pub struct BundleSpec {
    pub url: String,
    #[serde(default)]
    pub sha256: Option<String>,
    pub max_bytes: u64,
    pub architecture: Architecture,
}

pub struct KernelBundlePull {
    fetcher: Fetcher,
    staging_dir: PathBuf,
}

impl KernelBundlePull {
    pub fn new(cfg: &ImportsConfig, staging_dir: PathBuf) -> anyhow::Result<Self> {
        Ok(Self {
            fetcher: Fetcher::new(fetch_policy(cfg)?),
            staging_dir,
        })
    }
}

/// A client-caused failure of the bundle (as the upload path reports it synchronously), final.
fn bundle_failure(e: DomainError) -> Failure {
    let code = match &e {
        DomainError::TooLarge { .. } => ReasonCode::TooLarge,
        DomainError::ChecksumMismatch { .. } => ReasonCode::ChecksumMismatch,
        DomainError::UnsupportedKernelFormat { .. } => ReasonCode::UnsupportedKernelFormat,
        DomainError::ArchitectureMismatch { .. } => ReasonCode::ArchitectureMismatch,
        _ => ReasonCode::InvalidArchive,
    };
    // The reason is shown as `<code>: <message>`: drop the error's own spelled-out prefix.
    let text = e.to_string();
    let spelled = format!("{}: ", code.to_string().replace('-', " "));
    let message = text.strip_prefix(spelled.as_str()).unwrap_or(&text).to_owned();
    Failure::permanent(code, message)
}

#[async_trait::async_trait]
impl ImportKind for KernelBundlePull {
    const KIND: &'static str = "kernel-bundle";
    type Request = BundleRequest;
    type Spec = BundleSpec;
    type Secret = Source;

    async fn check(&self, req: BundleRequest) -> Result<Checked<BundleSpec, Source>, DomainError> {
        let src = Source::parse(&req.url).map_err(sync_error)?;
        let head = self.fetcher.peek(&src, 512).await.map_err(sync_error)?;
        match Compression::sniff(&head) {
            Some(_) => {}
            None => {
                return Err(DomainError::InvalidArchive {
                    reason: "the source is not a tar, tar.gz, tar.zst or tar.xz".into(),
                });
            }
        }
        let redacted = src.redacted().to_owned();
        Ok(Checked {
            spec: BundleSpec {
                url: redacted.clone(),
                sha256: req.sha256,
                max_bytes: req.max_bytes,
                architecture: req.architecture,
            },
            secret: src.has_credentials().then_some(src),
            reference: Some(req.catalog.unwrap_or(redacted)),
        })
    }

    async fn run(&self, attempt: &Attempt<'_>, spec: BundleSpec, secret: Option<&Source>) -> Result<Produced, Failure> {
        let job = attempt.job.id;
        let src = match secret {
            Some(s) => s.clone(),
            None => Source::parse(&spec.url).map_err(|e| Failure {
                retryable: false,
                ..Failure::internal(job, "parsing the stored URL", &e)
            })?,
        };
        let max = spec.max_bytes;
        let dl = self.fetcher.open(&src).await.map_err(|e| retryable_fetch(job, &e))?;
        if let Some(n) = dl.content_length {
            if n > max {
                return Err(Failure::permanent(
                    ReasonCode::TooLarge,
                    format!("the bundle is {n} bytes, over the limit of {max} bytes"),
                ));
            }
            attempt.set_total(n);
        }
        let mut progress = attempt.progress_fn();
        let mut seen = 0u64;
        let body = dl.stream.inspect(move |chunk| {
            if let Ok(b) = chunk {
                seen += b.len() as u64;
                progress(seen);
            }
        });
        let staged = stage(body, &self.staging_dir, max, DETECT_LEN, spec.sha256.as_deref())
            .await
            .map_err(|e| match e {
                StageError::TooLarge { limit } => bundle_failure(DomainError::TooLarge { limit }),
                StageError::ChecksumMismatch { expected, actual } => {
                    bundle_failure(DomainError::ChecksumMismatch { expected, actual })
                }
                StageError::Source(e) => retryable_fetch(job, &e),
                StageError::Io(e) => Failure::internal(job, "staging the bundle", &e),
            })?;
        let digest = format!("sha256:{}", staged.sha256);
        let dir = StagingDir(self.staging_dir.join(format!("bundle-{}", uuid::Uuid::new_v4())));
        tokio::fs::create_dir_all(&dir.0)
            .await
            .map_err(|e| Failure::internal(job, "creating a bundle staging directory", &e))?;
        let limits = BundleLimits {
            max_bundle_bytes: max,
            ..BundleLimits::default()
        };
        let result =
            extract_kernel_bundle_async(staged.path.clone(), None, spec.architecture, dir.0.clone(), limits).await;
        drop(staged);
        let bundle = result.map_err(|e| match e.to_domain() {
            Some(d) => bundle_failure(d),
            None => Failure::internal(job, "extracting the bundle", &e),
        })?;
        let files = [
            (KernelArtifact::Vmlinux, Some(bundle.vmlinux)),
            (KernelArtifact::Initrd, bundle.initrd),
            (KernelArtifact::Modules, bundle.modules),
        ];
        // What will be stored (and charged when the kernel becomes ready) must fit the quota.
        let total = files.iter().flat_map(|(_, f)| f.as_ref().map(|f| f.size)).sum();
        attempt.bytes_fit(total).await?;
        let mut artifacts = Artifacts::default();
        for (artifact, file) in files {
            let Some(file) = file else { continue };
            let Some(BlobKey::Kernel { kernel, blob }) = attempt.kernel_key(artifact) else {
                return Err(Failure::internal(
                    job,
                    "choosing a key",
                    &"the job's target is not a kernel",
                ));
            };
            attempt
                .region
                .store
                .put_kernel_file(kernel, blob, &file.path)
                .await
                .map_err(|e| Failure::internal(job, "storage", &e))?;
            artifacts.set(
                artifact,
                ArtifactInfo {
                    blob,
                    size: file.size,
                    sha256: file.sha256,
                },
            );
        }
        drop(dir);
        Ok(Produced::Kernel {
            format: bundle.kernel.format,
            artifacts,
            digest,
        })
    }
}

/// Removes a staging directory tree when dropped (also when the attempt's future is dropped).
struct StagingDir(PathBuf);

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
