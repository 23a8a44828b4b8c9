//! URL imports: the first kind on the job runner (service::jobs). `check` applies the address
//! policy and inspects the first 512 bytes; `run` streams the source into storage through the
//! ingest pipeline with the raw-disk inspector. Credentials in the URL are the spec's secret:
//! used for the fetch, never stored.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_domain::DomainError;
use strata_domain::disk_format::{self, SECTOR};
use strata_domain::image::ReasonCode;
use strata_domain::netpolicy::HostRule;
use strata_providers::{FetchError, FetchPolicy, Fetcher, IngestError, IngestLimits, RawDisk, Source, ingest};

use crate::config::ImportsConfig;
use crate::service::jobs::{Attempt, Checked, Failure, ImportKind, Produced};

pub fn fetch_policy(cfg: &ImportsConfig) -> anyhow::Result<FetchPolicy> {
    let rules = |list: &[String], what: &str| {
        list.iter()
            .map(|h| {
                h.parse::<HostRule>()
                    .map_err(|e| anyhow::anyhow!("imports.{what}: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()
    };
    Ok(FetchPolicy {
        allowed_ports: cfg.allowed_ports.clone(),
        deny_hosts: rules(&cfg.deny_hosts, "deny_hosts")?,
        allow_hosts: rules(&cfg.allow_hosts, "allow_hosts")?,
        connect_timeout: Duration::from_secs(cfg.connect_timeout_secs),
        peek_timeout: Duration::from_secs(cfg.peek_timeout_secs),
        idle_timeout: Duration::from_secs(cfg.idle_timeout_secs),
        max_redirects: 5,
    })
}

/// Maps fetch errors to what the caller of the synchronous check sees.
/// Transport detail goes to the log; the caller gets the short public reason.
pub(crate) fn sync_error(e: FetchError) -> DomainError {
    match e {
        FetchError::InvalidUrl(reason) => DomainError::invalid("source.url", reason),
        FetchError::NotAllowed(reason) => DomainError::UrlNotAllowed { reason },
        other => {
            tracing::info!(error = %other, "import check: fetching the source failed");
            DomainError::FetchFailed {
                reason: other.public_reason(),
            }
        }
    }
}

/// A failure worth retrying, shown to the tenant as `fetch-failed: <reason>`; the detail is
/// logged here and nowhere else.
pub(crate) fn retryable_fetch(job: uuid::Uuid, e: &FetchError) -> Failure {
    tracing::warn!(%job, error = %e, "import: fetching the source failed");
    Failure::retryable(ReasonCode::FetchFailed, e.public_reason())
}

/// A URL import request, from the create-image command.
pub struct UrlRequest {
    pub url: String,
    /// Expected lowercase hex sha256, already validated.
    pub sha256: Option<String>,
}

/// What the job row keeps: the URL without credentials, and the expected checksum.
#[derive(Debug, Serialize, Deserialize)]
pub struct UrlSpec {
    pub url: String,
    #[serde(default)]
    pub sha256: Option<String>,
}

pub struct UrlImport {
    fetcher: Fetcher,
}

impl UrlImport {
    pub fn new(cfg: &ImportsConfig) -> anyhow::Result<Self> {
        Ok(Self {
            fetcher: Fetcher::new(fetch_policy(cfg)?),
        })
    }
}

#[async_trait::async_trait]
impl ImportKind for UrlImport {
    const KIND: &'static str = "url";
    type Request = UrlRequest;
    type Spec = UrlSpec;
    /// The whole source, credentials included, when the URL carried any.
    type Secret = Source;

    /// Policy, a 512-byte peek, the disk-format inspector. Nothing is created when any fails.
    async fn check(&self, req: UrlRequest) -> Result<Checked<UrlSpec, Source>, DomainError> {
        let src = Source::parse(&req.url).map_err(sync_error)?;
        let head = self.fetcher.peek(&src, SECTOR).await.map_err(sync_error)?;
        disk_format::inspect(&head).map_err(|r| DomainError::UnsupportedDiskFormat {
            detected: r.to_string(),
        })?;
        let redacted = src.redacted().to_owned();
        Ok(Checked {
            spec: UrlSpec {
                url: redacted.clone(),
                sha256: req.sha256,
            },
            secret: src.has_credentials().then_some(src),
            reference: Some(redacted),
        })
    }

    async fn run(&self, attempt: &Attempt<'_>, spec: UrlSpec, secret: Option<&Source>) -> Result<Produced, Failure> {
        let job = attempt.job.id;
        let src = match secret {
            Some(s) => s.clone(),
            None => Source::parse(&spec.url)
                .map_err(|e| Failure::internal(job, "parsing the stored URL", &e))
                .map_err(|f| Failure { retryable: false, ..f })?,
        };
        let max = attempt.max_bytes;
        let dl = self.fetcher.open(&src).await.map_err(|e| retryable_fetch(job, &e))?;
        if let Some(n) = dl.content_length {
            if n > max {
                return Err(Failure::permanent(
                    ReasonCode::TooLarge,
                    format!("the source is {n} bytes, over the limit of {max} bytes"),
                ));
            }
            attempt.set_total(n);
            attempt.bytes_fit(n).await?;
        }
        let limits = IngestLimits {
            max_bytes: max,
            expected_sha256: spec.sha256,
        };
        let ledger = attempt.ledger();
        let done = ingest(
            &attempt.region.store,
            &attempt.key,
            dl.stream,
            &RawDisk,
            &limits,
            Some(&ledger),
            attempt.progress_fn(),
        )
        .await
        .map_err(|e| match e {
            IngestError::ChecksumMismatch { expected, actual } => Failure::permanent(
                ReasonCode::ChecksumMismatch,
                format!("expected sha256 {expected}, received {actual}"),
            ),
            IngestError::Rejected(r) => Failure::permanent(ReasonCode::UnsupportedDiskFormat, r.to_string()),
            IngestError::TooLarge { limit } => Failure::permanent(
                ReasonCode::TooLarge,
                format!("the source exceeds the limit of {limit} bytes"),
            ),
            IngestError::Source(e) => retryable_fetch(job, &e),
            IngestError::Storage(e) => Failure::internal(job, "storage", &e),
        })?;
        Ok(Produced::Blob {
            size: done.size,
            sha256: done.sha256,
        })
    }
}
