//! URL imports: the synchronous checks at create time, and the workers that copy in the background.
//!
//! A job is a row in `import_jobs`, leased by one process at a time. The process that accepts an
//! import leases it at once and starts copying; every other process (and this one after a
//! restart) only takes over jobs whose lease has expired. While copying, a heartbeat renews the
//! lease and publishes progress; when the heartbeat finds the lease gone (the image was deleted,
//! or another process took over after a stall) the copy is dropped and its partial upload aborted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_domain::DomainError;
use strata_domain::disk_format::{self, SECTOR};
use strata_domain::ids::{BlobId, ImageId};
use strata_domain::netpolicy::HostRule;
use strata_providers::{BlobKey, FetchError, FetchPolicy, Fetcher, IngestError, IngestLimits, RawDisk, Source, ingest};
use tokio::sync::{Semaphore, watch};

use crate::config::{ImportsConfig, QuotaConfig};
use crate::db;
use crate::db::jobs::{Job, NewJob};
use crate::error::{ApiError, ApiResult};
use crate::metrics::{ImportEvent, Metrics};
use crate::state::Region;

pub struct Importer {
    db: crate::db::Db,
    regions: std::collections::BTreeMap<strata_domain::ids::RegionId, Arc<Region>>,
    fetcher: Fetcher,
    cfg: ImportsConfig,
    quotas: QuotaConfig,
    max_image_bytes: u64,
    /// Identifies this process's leases.
    owner: String,
    /// Sources with credentials, which are never written to the database: only the process that
    /// accepted such an import can run it.
    secrets: Mutex<HashMap<ImageId, Source>>,
    slots: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
}

/// The metrics label of URL imports, the only kind of job so far.
pub(crate) const KIND: &str = "url";

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
fn sync_error(e: FetchError) -> DomainError {
    match e {
        FetchError::InvalidUrl(reason) => DomainError::invalid("source.url", reason),
        FetchError::NotAllowed(reason) => DomainError::UrlNotAllowed { reason },
        other => {
            tracing::info!(error = %other, "URL import check: fetching the source failed");
            DomainError::FetchFailed {
                reason: other.public_reason(),
            }
        }
    }
}

/// A failure worth retrying, as stored and shown to the tenant (`fetch-failed: <reason>`); the
/// detail is logged here and nowhere else.
fn retryable_fetch(image: ImageId, e: &FetchError) -> Outcome {
    tracing::warn!(%image, error = %e, "import: fetching the source failed");
    Outcome::Retryable(format!("fetch-failed: {}", e.public_reason()))
}

/// An internal failure (database, storage): logged, and shown as `internal` only.
fn retryable_internal(image: ImageId, what: &str, e: &dyn std::fmt::Display) -> Outcome {
    tracing::warn!(%image, error = %e, "import: {what} failed");
    Outcome::Retryable("internal: a server-side error; quote the image id when reporting it".into())
}

enum Outcome {
    Done(strata_providers::Ingested),
    /// Will not get better by retrying.
    Permanent(String),
    Retryable(String),
    /// The lease is gone: someone else owns the job now, or the image was deleted.
    Lost,
    Shutdown,
}

impl Importer {
    pub fn new(
        db: crate::db::Db,
        regions: std::collections::BTreeMap<strata_domain::ids::RegionId, Arc<Region>>,
        cfg: ImportsConfig,
        quotas: QuotaConfig,
        max_image_bytes: u64,
        stop: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            db,
            regions,
            fetcher: Fetcher::new(fetch_policy(&cfg)?),
            slots: Arc::new(Semaphore::new(cfg.workers.max(1))),
            cfg,
            quotas,
            max_image_bytes,
            owner: uuid::Uuid::new_v4().to_string(),
            secrets: Mutex::new(HashMap::new()),
            stop,
            metrics,
        })
    }

    fn lease_until(&self) -> i64 {
        db::now().timestamp_micros() + (self.cfg.lease_secs as i64) * 1_000_000
    }

    /// The synchronous part of a URL import: policy, a 512-byte peek, the disk-format inspector.
    /// Nothing is created when any of it fails.
    pub async fn check(&self, raw_url: &str) -> Result<Source, DomainError> {
        let src = Source::parse(raw_url).map_err(sync_error)?;
        let head = self.fetcher.peek(&src, SECTOR).await.map_err(sync_error)?;
        disk_format::inspect(&head).map_err(|r| DomainError::UnsupportedDiskFormat {
            detected: r.to_string(),
        })?;
        Ok(src)
    }

    /// Persists the image with its job (leased by this process) and starts copying.
    pub async fn start(self: &Arc<Self>, img: &strata_domain::image::Image, src: Source) -> ApiResult<()> {
        let has_credentials = src.has_credentials();
        let job = db::jobs::create_with_job(
            &self.db,
            img,
            NewJob {
                limits: img.organization_id.as_ref().map(|o| self.quotas.limits_for(o.as_str())),
                url: src.redacted(),
                has_credentials,
                max_attempts: self.cfg.max_attempts.max(1) as i32,
                owner: &self.owner,
                lease_until: self.lease_until(),
            },
        )
        .await?;
        if has_credentials {
            self.secrets_lock().insert(img.id, src);
        }
        self.spawn(job);
        Ok(())
    }

    fn secrets_lock(&self) -> std::sync::MutexGuard<'_, HashMap<ImageId, Source>> {
        // a poisoned map only means a panic elsewhere; the data is still consistent
        self.secrets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a job this process holds the lease of, if a worker slot is free. Otherwise the job is
    /// handed back at once (not left waiting with a ticking lease, which this process's own
    /// poller could then claim a second time); the poller picks it up when a slot frees.
    fn spawn(self: &Arc<Self>, job: Job) {
        let this = self.clone();
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => {
                tokio::spawn(async move {
                    let _slot = slot;
                    let _running = this.metrics.import_running();
                    let image = job.image;
                    if let Err(e) = this.execute(job).await {
                        tracing::error!(%image, error = format!("{e:#}"), "import job failed unexpectedly");
                    }
                });
            }
            Err(_) => {
                tokio::spawn(async move {
                    let now = db::now().timestamp_micros() - 1;
                    if let Err(e) = db::jobs::release(&this.db, job.image, &this.owner, None, now, true).await {
                        tracing::warn!(image = %job.image, error = %e, "handing back a queued import failed");
                    }
                });
            }
        }
    }

    /// Takes over expired jobs until told to stop, then waits for running copies to hand back.
    pub async fn run(self: Arc<Self>) {
        let mut stop = self.stop.clone();
        let mut tick = tokio::time::interval(Duration::from_millis(self.cfg.poll_interval_ms.max(50)));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            let free = self.slots.available_permits();
            if free == 0 {
                continue;
            }
            match db::jobs::claim_expired(&self.db, &self.owner, self.lease_until(), free as u64).await {
                Ok(jobs) => {
                    for job in jobs {
                        tracing::info!(image = %job.image, attempt = job.attempt, "import job claimed");
                        self.spawn(job);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "looking for import jobs failed"),
            }
        }
        // Running copies see the same signal and release their leases; wait for them.
        let all = self.cfg.workers.max(1) as u32;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.slots.acquire_many(all)).await;
    }

    async fn execute(&self, job: Job) -> ApiResult<()> {
        let image = job.image;
        if job.taken_over {
            self.metrics.import_event(KIND, ImportEvent::TakenOver);
        }
        if job.attempt > job.max_attempts {
            let reason = format!(
                "import failed after {} attempts: {}",
                job.max_attempts,
                job.last_error.as_deref().unwrap_or("unknown error")
            );
            return self.fail(image, &reason).await;
        }
        let Some(region) = self.regions.get(&job.region).cloned() else {
            return self.fail(image, "the image's region is no longer configured").await;
        };
        let src = if job.has_credentials {
            let cached = self.secrets_lock().get(&image).cloned();
            match cached {
                Some(s) => s,
                None => {
                    return self
                        .fail(
                            image,
                            "the URL's credentials are kept only in memory by the server that accepted the \
                             import, and it stopped; create the import again",
                        )
                        .await;
                }
            }
        } else {
            Source::parse(&job.url).map_err(|e| ApiError::internal(anyhow::anyhow!("stored URL: {e}")))?
        };
        // A takeover first removes what the earlier attempt wrote.
        if let Some(old) = job.blob {
            self.discard(&region, image, old).await;
        }
        let blob = BlobId::new();
        if !db::jobs::set_blob(&self.db, image, &self.owner, blob).await? {
            return Ok(());
        }
        self.metrics.import_event(KIND, ImportEvent::Started);
        let outcome = self.copy(image, blob, &src, &region).await;
        match outcome {
            Outcome::Done(done) => {
                let quotas = &self.quotas;
                let finished =
                    db::jobs::finish_ready(&self.db, image, &self.owner, blob, done.size, &done.sha256, |o| {
                        quotas.limits_for(o)
                    })
                    .await;
                match finished {
                    Ok(true) => {
                        self.metrics.import_event(KIND, ImportEvent::Succeeded);
                        self.secrets_lock().remove(&image);
                        tracing::info!(%image, size = done.size, "import finished");
                    }
                    Ok(false) => {
                        self.metrics.import_event(KIND, ImportEvent::Cancelled);
                        self.discard(&region, image, blob).await
                    }
                    Err(ApiError::Domain(DomainError::QuotaExceeded { detail })) => {
                        self.discard(&region, image, blob).await;
                        self.fail(image, &format!("quota-exceeded: {detail}")).await?;
                    }
                    Err(e) => {
                        self.discard(&region, image, blob).await;
                        return Err(e);
                    }
                }
            }
            Outcome::Permanent(reason) => {
                self.discard(&region, image, blob).await;
                self.fail(image, &reason).await?;
            }
            Outcome::Retryable(reason) => {
                self.discard(&region, image, blob).await;
                if job.attempt >= job.max_attempts {
                    let reason = format!("import failed after {} attempts: {reason}", job.attempt);
                    self.fail(image, &reason).await?;
                } else {
                    tracing::warn!(%image, attempt = job.attempt, reason, "import attempt failed; will retry");
                    let backoff = 1_000_000 * (1i64 << job.attempt.clamp(0, 6));
                    let retry_at = db::now().timestamp_micros() + backoff;
                    if db::jobs::release(&self.db, image, &self.owner, Some(&reason), retry_at, false).await? {
                        self.metrics.import_event(KIND, ImportEvent::Retried);
                    }
                }
            }
            Outcome::Lost => {
                self.metrics.import_event(KIND, ImportEvent::Cancelled);
                tracing::info!(%image, "import cancelled: the image was deleted or the job taken over");
                self.secrets_lock().remove(&image);
                self.discard(&region, image, blob).await;
            }
            Outcome::Shutdown => {
                self.discard(&region, image, blob).await;
                // hand back at once, and do not count this as an attempt
                let now = db::now().timestamp_micros() - 1;
                if db::jobs::release(&self.db, image, &self.owner, None, now, true).await? {
                    self.metrics.import_event(KIND, ImportEvent::HandedBack);
                }
                tracing::info!(%image, "import handed back for shutdown");
            }
        }
        Ok(())
    }

    /// Removes everything an attempt may have written: the object, local staging files, and any
    /// multipart upload it recorded (which a dead process could not abort itself).
    async fn discard(&self, region: &Region, image: ImageId, blob: BlobId) {
        let key = BlobKey::image(image, blob);
        if let Err(e) = db::uploads::abort_for_key(&self.db, &region.store, &key).await {
            tracing::warn!(%image, %blob, error = %e, "aborting a partial import's upload failed");
        }
        if let Err(e) = region.store.discard(&key).await {
            tracing::warn!(%image, %blob, error = %e, "removing a partial import failed");
        }
    }

    async fn fail(&self, image: ImageId, reason: &str) -> ApiResult<()> {
        if db::jobs::finish_failed(&self.db, image, &self.owner, reason).await? {
            self.metrics.import_event(KIND, ImportEvent::Failed);
            tracing::warn!(%image, reason, "import failed");
        }
        self.secrets_lock().remove(&image);
        Ok(())
    }

    /// One attempt: stream from the source into storage, with a heartbeat beside it.
    async fn copy(&self, image: ImageId, blob: BlobId, src: &Source, region: &Region) -> Outcome {
        let done = Arc::new(AtomicU64::new(0));
        let total = Arc::new(AtomicU64::new(u64::MAX));
        let (expected, org) = match db::images::find(&self.db, &region.policy.id, image).await {
            Ok(Some(img)) => (img.expected_sha256, img.organization_id),
            Ok(None) => return Outcome::Lost,
            Err(e) => return retryable_internal(image, "reading the image", &e),
        };
        let limits = IngestLimits {
            max_bytes: self.max_image_bytes,
            expected_sha256: expected,
        };
        let work = async {
            let dl = self.fetcher.open(src).await.map_err(|e| retryable_fetch(image, &e))?;
            if let Some(n) = dl.content_length {
                if n > self.max_image_bytes {
                    return Err(Outcome::Permanent(format!(
                        "too-large: the source is {n} bytes, over the limit of {} bytes",
                        self.max_image_bytes
                    )));
                }
                total.store(n, Ordering::Relaxed);
                if let Some(org) = &org {
                    let l = self.quotas.limits_for(org.as_str());
                    db::usage::bytes_fit(&self.db, org.as_str(), region.policy.id.as_str(), n, l)
                        .await
                        .map_err(|e| match e {
                            ApiError::Domain(DomainError::QuotaExceeded { detail }) => {
                                Outcome::Permanent(format!("quota-exceeded: {detail}"))
                            }
                            other => retryable_internal(image, "the quota check", &other),
                        })?;
                }
            }
            let progress = done.clone();
            let ledger = db::uploads::DbLedger(&self.db, &region.policy.id);
            ingest(
                &region.store,
                &BlobKey::image(image, blob),
                dl.stream,
                &RawDisk,
                &limits,
                Some(&ledger),
                move |n| progress.store(n, Ordering::Relaxed),
            )
            .await
            .map_err(|e| match e {
                IngestError::ChecksumMismatch { expected, actual } => Outcome::Permanent(format!(
                    "checksum-mismatch: expected sha256 {expected}, received {actual}"
                )),
                IngestError::Rejected(r) => Outcome::Permanent(format!("unsupported-disk-format: {r}")),
                IngestError::TooLarge { limit } => {
                    Outcome::Permanent(format!("too-large: the source exceeds the limit of {limit} bytes"))
                }
                IngestError::Source(e) => retryable_fetch(image, &e),
                IngestError::Storage(e) => retryable_internal(image, "storage", &e),
            })
        };
        let heartbeat = async {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let t = total.load(Ordering::Relaxed);
                let t = (t != u64::MAX).then_some(t);
                let n = done.load(Ordering::Relaxed);
                match db::jobs::heartbeat(&self.db, image, &self.owner, self.lease_until(), n, t).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    // a database hiccup: keep going; the lease is still ours for a while
                    Err(e) => tracing::warn!(%image, error = %e, "import heartbeat failed"),
                }
            }
        };
        let mut stop = self.stop.clone();
        let total_timeout = Duration::from_secs(self.cfg.total_timeout_secs);
        tokio::select! {
            r = tokio::time::timeout(total_timeout, work) => match r {
                Ok(Ok(done)) => Outcome::Done(done),
                Ok(Err(outcome)) => outcome,
                Err(_) => Outcome::Retryable(format!("the copy took longer than {}s", total_timeout.as_secs())),
            },
            _ = heartbeat => Outcome::Lost,
            _ = stop.changed() => Outcome::Shutdown,
        }
    }
}
