//! The job runner: one for every kind of asynchronous import.
//!
//! A job is a row in `import_jobs` with a kind, a JSON spec and a target (an image, later a
//! kernel), leased by one process at a time. The process that accepts an import leases it at once
//! and starts it; every other process (and this one after a restart) only takes over jobs whose
//! lease has expired. While an attempt runs, a heartbeat renews the lease and publishes progress;
//! when the heartbeat finds the lease gone (the target was deleted, or another process took over
//! after a stall) the attempt is dropped and what it wrote removed. Retries back off; a graceful
//! shutdown hands jobs back at once without counting an attempt; a takeover first removes what
//! the dead attempt left.
//!
//! Each kind implements [`ImportKind`]: `check` runs before anything is created, `run` performs
//! one attempt and returns what it stored or a typed [`Failure`]. None of the lease logic above is
//! a kind's business.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_domain::DomainError;
use strata_domain::ids::{BlobId, OrganizationId, RegionId};
use strata_domain::image::{Image, ImportPhase, ReasonCode};
use strata_domain::kernel::{Artifacts, Kernel, KernelArtifact, KernelFormat};
use strata_providers::BlobKey;
use tokio::sync::{Semaphore, watch};

use crate::config::{ImportsConfig, QuotaConfig};
use crate::db;
use crate::db::jobs::{Job, JobTarget, NewJob, Stored};
use crate::error::{ApiError, ApiResult};
use crate::metrics::{ImportEvent, Metrics};
use crate::state::Region;

/// Why an attempt did not store its artifact.
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: ReasonCode,
    /// Short, for people; never internal error text (that goes to the log with the job id).
    pub message: String,
    /// Worth another attempt (a network hiccup); otherwise final at once (a checksum mismatch).
    pub retryable: bool,
}

impl Failure {
    pub fn permanent(code: ReasonCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retryable: false,
        }
    }

    pub fn retryable(code: ReasonCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retryable: true,
        }
    }

    /// A server-side failure (database, storage): the detail is logged with the job, the tenant
    /// sees `internal` only.
    pub fn internal(job: uuid::Uuid, what: &str, e: &dyn std::fmt::Display) -> Self {
        tracing::warn!(%job, error = %e, "import: {what} failed");
        Self::retryable(
            ReasonCode::Internal,
            "a server-side error; quote the image id when reporting it",
        )
    }

    /// As stored and shown: `<code>: <message>`.
    pub fn reason(&self) -> String {
        format!("{}: {}", self.code, self.message)
    }
}

/// What an attempt stored.
#[derive(Debug, Clone)]
pub enum Produced {
    /// One object under [`Attempt::key`] (an image's bytes).
    Blob {
        size: u64,
        /// Lowercase hex.
        sha256: String,
    },
    /// A kernel's files, each under [`Attempt::kernel_key`] of its artifact.
    Kernel {
        format: KernelFormat,
        artifacts: Artifacts,
        /// `sha256:<hex>` of the bundle as received.
        digest: String,
    },
}

/// What a kind's `check` hands to the runner.
pub struct Checked<Spec, Secret> {
    /// Stored in the job row and given back to `run`; never a secret.
    pub spec: Spec,
    /// Held only in this process's memory; a job whose secret is lost (the process stopped)
    /// fails with `credentials-unavailable`.
    pub secret: Option<Secret>,
    /// The provenance reference to show (without secrets).
    pub reference: Option<String>,
}

/// One kind of import: a URL today; kernel bundles, catalog pulls, OCI pulls and docker archives
/// are further implementations, not copies of the runner.
#[async_trait::async_trait]
pub trait ImportKind: Send + Sync + 'static {
    /// Stored in `import_jobs.kind`; the `kind` label of the import metrics.
    const KIND: &'static str;
    /// What a caller asks for (from a domain command).
    type Request: Send;
    type Spec: Serialize + DeserializeOwned + Send + Sync;
    type Secret: Send + Sync + 'static;

    /// Synchronous checks before anything is created. An error is the caller's 4xx.
    async fn check(&self, req: Self::Request) -> Result<Checked<Self::Spec, Self::Secret>, DomainError>;

    /// One attempt: store the artifact under `attempt.key`, reporting progress on `attempt`.
    /// Dropping the future must leave nothing behind but what [`Attempt::key`] names (which the
    /// runner removes).
    async fn run(
        &self,
        attempt: &Attempt<'_>,
        spec: Self::Spec,
        secret: Option<&Self::Secret>,
    ) -> Result<Produced, Failure>;
}

/// What an attempt may use: where to write, progress, the quota, the ledger.
pub struct Attempt<'a> {
    pub job: &'a Job,
    /// Where the main object goes (an image's bytes; a kernel's vmlinux).
    pub key: BlobKey,
    /// This attempt's blob id: every key it may write is derived from it.
    pub blob: BlobId,
    pub region: &'a Region,
    /// The organization the artifact is charged to; `None` for global artifacts.
    pub org: Option<OrganizationId>,
    pub max_bytes: u64,
    db: &'a db::Db,
    quotas: &'a QuotaConfig,
    done: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
    /// 0: not said; otherwise 1 + the index in [`ImportPhase::ALL`].
    phase: Arc<AtomicU8>,
}

impl Attempt<'_> {
    /// Where the attempt is, published as `status.phase` with the next heartbeat.
    pub fn set_phase(&self, phase: ImportPhase) {
        self.reporter().set_phase(phase);
    }

    /// A handle for setting the phase and progress from other tasks and blocking threads.
    pub fn reporter(&self) -> Reporter {
        Reporter {
            done: self.done.clone(),
            total: self.total.clone(),
            phase: self.phase.clone(),
        }
    }

    fn phase(&self) -> Option<ImportPhase> {
        let i = self.phase.load(Ordering::Relaxed) as usize;
        i.checked_sub(1).and_then(|i| ImportPhase::ALL.get(i).copied())
    }

    /// Where this attempt stores a kernel's artifact; `None` unless the target is a kernel.
    pub fn kernel_key(&self, artifact: KernelArtifact) -> Option<BlobKey> {
        match self.job.target {
            JobTarget::Kernel(kernel) => Some(BlobKey::kernel(kernel, artifact.attempt_blob(self.blob))),
            JobTarget::Image(_) => None,
        }
    }

    /// Bytes stored so far.
    pub fn progress(&self, bytes_done: u64) {
        self.done.store(bytes_done, Ordering::Relaxed);
    }

    /// A progress callback for [`strata_providers::ingest`].
    pub fn progress_fn(&self) -> impl FnMut(u64) + use<> {
        let done = self.done.clone();
        move |n| done.store(n, Ordering::Relaxed)
    }

    pub fn set_total(&self, bytes_total: u64) {
        self.total.store(bytes_total, Ordering::Relaxed);
    }

    /// Refuses early when `bytes` cannot fit the organization's quota (charged for real when the
    /// artifact becomes ready).
    pub async fn bytes_fit(&self, bytes: u64) -> Result<(), Failure> {
        let Some(org) = &self.org else { return Ok(()) };
        let l = self.quotas.limits_for(org.as_str());
        db::usage::bytes_fit(self.db, org.as_str(), self.region.policy.id.as_str(), bytes, l)
            .await
            .map_err(|e| match e {
                db::DbError::Rule(DomainError::QuotaExceeded { detail }) => {
                    Failure::permanent(ReasonCode::QuotaExceeded, detail)
                }
                other => Failure::internal(self.job.id, "the quota check", &other),
            })
    }

    /// The upload ledger of this region (multipart uploads a takeover may have to abort).
    pub fn ledger(&self) -> db::uploads::DbLedger<'_> {
        db::uploads::DbLedger(self.db, &self.region.policy.id)
    }
}

/// Progress and phase of an attempt, for tasks that outlive a borrow of it.
#[derive(Clone)]
pub struct Reporter {
    done: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
    phase: Arc<AtomicU8>,
}

impl Reporter {
    pub fn set_phase(&self, phase: ImportPhase) {
        let i = ImportPhase::ALL.iter().position(|p| *p == phase).map_or(0, |i| i + 1);
        self.phase.store(i as u8, Ordering::Relaxed);
    }

    pub fn progress(&self, done: u64, total: u64) {
        self.done.store(done, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }
}

/// A kind as the runner holds it: specs as JSON, secrets type-erased.
#[async_trait::async_trait]
trait Runnable: Send + Sync {
    async fn run_json(
        &self,
        attempt: &Attempt<'_>,
        spec: &str,
        secret: Option<&(dyn Any + Send + Sync)>,
    ) -> Result<Produced, Failure>;
    fn as_any(&self) -> &dyn Any;
}

#[async_trait::async_trait]
impl<K: ImportKind> Runnable for K {
    async fn run_json(
        &self,
        attempt: &Attempt<'_>,
        spec: &str,
        secret: Option<&(dyn Any + Send + Sync)>,
    ) -> Result<Produced, Failure> {
        let spec: K::Spec = serde_json::from_str(spec).map_err(|e| {
            Failure::permanent(ReasonCode::Internal, "the import's stored description is unreadable")
                .also_log(attempt.job.id, &e)
        })?;
        let secret = secret.and_then(|s| s.downcast_ref::<K::Secret>());
        self.run(attempt, spec, secret).await
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Failure {
    fn also_log(self, job: uuid::Uuid, e: &dyn std::fmt::Display) -> Self {
        tracing::error!(%job, error = %e, "import: {}", self.message);
        self
    }
}

enum Outcome {
    Done(Produced),
    Failed(Failure),
    /// The lease is gone: someone else owns the job now, or the target was deleted.
    Lost,
    Shutdown,
}

type Secret = Arc<dyn Any + Send + Sync>;

pub struct JobRunner {
    db: db::Db,
    regions: std::collections::BTreeMap<RegionId, Arc<Region>>,
    kinds: HashMap<&'static str, Arc<dyn Runnable>>,
    cfg: ImportsConfig,
    quotas: QuotaConfig,
    max_image_bytes: u64,
    /// Identifies this process's leases.
    owner: String,
    /// Secret parts of specs, which are never written to the database: only the process that
    /// accepted such a job can run it.
    secrets: Mutex<HashMap<uuid::Uuid, Secret>>,
    slots: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
}

impl JobRunner {
    pub fn new(
        db: db::Db,
        regions: std::collections::BTreeMap<RegionId, Arc<Region>>,
        cfg: ImportsConfig,
        quotas: QuotaConfig,
        max_image_bytes: u64,
        stop: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            db,
            regions,
            kinds: HashMap::new(),
            slots: Arc::new(Semaphore::new(cfg.workers.max(1))),
            cfg,
            quotas,
            max_image_bytes,
            owner: uuid::Uuid::new_v4().to_string(),
            secrets: Mutex::new(HashMap::new()),
            stop,
            metrics,
        }
    }

    /// Registers a kind (before the runner is shared).
    pub fn register<K: ImportKind>(&mut self, kind: K) {
        self.kinds.insert(K::KIND, Arc::new(kind));
    }

    /// The registered kinds, by name (metrics label them).
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut k: Vec<_> = self.kinds.keys().copied().collect();
        k.sort_unstable();
        k
    }

    fn kind<K: ImportKind>(&self) -> ApiResult<&K> {
        self.kinds
            .get(K::KIND)
            .and_then(|k| k.as_any().downcast_ref::<K>())
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("import kind {} is not registered", K::KIND)))
    }

    /// The kind's synchronous checks; nothing is created when they fail.
    pub async fn check<K: ImportKind>(&self, req: K::Request) -> ApiResult<Checked<K::Spec, K::Secret>> {
        Ok(self.kind::<K>()?.check(req).await?)
    }

    fn lease_until(&self) -> i64 {
        db::now().timestamp_micros() + (self.cfg.lease_secs as i64) * 1_000_000
    }

    /// Persists the image with its job (leased by this process) and starts it.
    pub async fn start_image<K: ImportKind>(
        self: &Arc<Self>,
        img: &Image,
        checked: Checked<K::Spec, K::Secret>,
    ) -> ApiResult<()> {
        let limits = img.organization_id.as_ref().map(|o| self.quotas.limits_for(o.as_str()));
        let new = self.new_job::<K>(&checked)?;
        let job = db::jobs::create_with_image(&self.db, img, limits, new).await?;
        self.launch(job, checked.secret);
        Ok(())
    }

    /// Persists the kernel (state `importing`) with its job (leased by this process) and starts it.
    pub async fn start_kernel<K: ImportKind>(
        self: &Arc<Self>,
        k: &Kernel,
        checked: Checked<K::Spec, K::Secret>,
    ) -> ApiResult<()> {
        let limits = k.organization_id.as_ref().map(|o| self.quotas.limits_for(o.as_str()));
        let new = self.new_job::<K>(&checked)?;
        let job = db::jobs::create_with_kernel(&self.db, k, limits, new).await?;
        self.launch(job, checked.secret);
        Ok(())
    }

    fn new_job<K: ImportKind>(&self, checked: &Checked<K::Spec, K::Secret>) -> ApiResult<NewJob<'_>> {
        Ok(NewJob {
            kind: K::KIND,
            spec: serde_json::to_string(&checked.spec).map_err(ApiError::internal)?,
            secrets_in_memory: checked.secret.is_some(),
            max_attempts: self.cfg.max_attempts.max(1) as i32,
            owner: &self.owner,
            lease_until: self.lease_until(),
        })
    }

    /// Keeps the job's secret in memory (never in the database) and runs the job.
    fn launch<Secret: Send + Sync + 'static>(self: &Arc<Self>, job: Job, secret: Option<Secret>) {
        if let Some(secret) = secret {
            self.secrets_lock().insert(job.id, Arc::new(secret));
        }
        self.spawn(job);
    }

    fn secrets_lock(&self) -> std::sync::MutexGuard<'_, HashMap<uuid::Uuid, Secret>> {
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
                    let (id, target) = (job.id, job.target);
                    if let Err(e) = this.execute(job).await {
                        tracing::error!(job = %id, %target, error = format!("{e:#}"), "import job failed unexpectedly");
                    }
                });
            }
            Err(_) => {
                tokio::spawn(async move {
                    let now = db::now().timestamp_micros() - 1;
                    if let Err(e) = db::jobs::release(&this.db, job.id, &this.owner, None, now, true).await {
                        tracing::warn!(job = %job.id, error = %e, "handing back a queued import failed");
                    }
                });
            }
        }
    }

    /// Takes over expired jobs until told to stop, then waits for running attempts to hand back.
    pub async fn run(self: Arc<Self>) {
        let mut stop = self.stop.clone();
        let mut tick = tokio::time::interval(Duration::from_millis(self.cfg.poll_interval_ms.max(50)));
        let kinds = self.kinds();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            let free = self.slots.available_permits();
            if free == 0 {
                continue;
            }
            match db::jobs::claim_expired(&self.db, &self.owner, self.lease_until(), free as u64, &kinds).await {
                Ok(jobs) => {
                    for job in jobs {
                        tracing::info!(job = %job.id, target = %job.target, attempt = job.attempt, "import job claimed");
                        self.spawn(job);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "looking for import jobs failed"),
            }
        }
        // Running attempts see the same signal and release their leases; wait for them.
        let all = self.cfg.workers.max(1) as u32;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.slots.acquire_many(all)).await;
    }

    /// The metrics label of a job's kind: its registered name.
    fn label(&self, job: &Job) -> &'static str {
        self.kinds.get_key_value(job.kind.as_str()).map_or("other", |(k, _)| *k)
    }

    async fn execute(&self, job: Job) -> ApiResult<()> {
        let kind_label = self.label(&job);
        if job.taken_over {
            self.metrics.import_event(kind_label, ImportEvent::TakenOver);
        }
        if job.attempt > job.max_attempts {
            let last = job.last_error.as_deref().unwrap_or("unknown error");
            let code = last
                .split_once(": ")
                .and_then(|(c, _)| c.parse().ok())
                .unwrap_or(ReasonCode::Internal);
            let reason = format!("import failed after {} attempts: {last}", job.max_attempts);
            return self.fail(&job, code, &reason).await;
        }
        let Some(region) = self.regions.get(&job.region).cloned() else {
            return self
                .fail(&job, ReasonCode::Internal, "the region is no longer configured")
                .await;
        };
        let Some(kind) = self.kinds.get(job.kind.as_str()).cloned() else {
            // claim_expired only claims registered kinds; a job started here always has one
            return Err(ApiError::internal(anyhow::anyhow!(
                "import kind {} is not registered",
                job.kind
            )));
        };
        let secret = if job.secrets_in_memory {
            let cached = self.secrets_lock().get(&job.id).cloned();
            match cached {
                Some(s) => Some(s),
                None => {
                    return self
                        .fail(
                            &job,
                            ReasonCode::CredentialsUnavailable,
                            "the import's credentials (URL or registry) are kept only in memory by the server that accepted the \
                             import, and it stopped; create the import again",
                        )
                        .await;
                }
            }
        } else {
            None
        };
        // A takeover first removes what the earlier attempt wrote.
        if let Some(old) = job.blob {
            self.discard(&region, &job.target.keys(old)).await;
        }
        let blob = BlobId::new();
        if !db::jobs::set_blob(&self.db, job.id, &self.owner, blob).await? {
            return Ok(());
        }
        let key = job.target.keys(blob);
        self.metrics.import_event(kind_label, ImportEvent::Started);
        let outcome = self.attempt(&job, &*kind, secret.as_deref(), &region, blob).await;
        match outcome {
            Outcome::Done(done) => {
                let quotas = &self.quotas;
                let stored = match done {
                    Produced::Blob { size, sha256 } => Stored::Blob { blob, size, sha256 },
                    Produced::Kernel {
                        format,
                        artifacts,
                        digest,
                    } => Stored::Kernel {
                        format,
                        artifacts,
                        digest,
                    },
                };
                let finished =
                    db::jobs::finish_ready(&self.db, &job, &self.owner, &stored, |o| quotas.limits_for(o)).await;
                match finished {
                    Ok(true) => {
                        self.metrics.import_event(kind_label, ImportEvent::Succeeded);
                        self.secrets_lock().remove(&job.id);
                        tracing::info!(job = %job.id, target = %job.target, size = stored.size(), "import finished");
                    }
                    Ok(false) => {
                        self.metrics.import_event(kind_label, ImportEvent::Cancelled);
                        self.discard(&region, &key).await
                    }
                    Err(db::DbError::Rule(DomainError::QuotaExceeded { detail })) => {
                        self.discard(&region, &key).await;
                        let f = Failure::permanent(ReasonCode::QuotaExceeded, detail);
                        self.fail(&job, f.code, &f.reason()).await?;
                    }
                    Err(e) => {
                        self.discard(&region, &key).await;
                        return Err(e.into());
                    }
                }
            }
            Outcome::Failed(f) if !f.retryable => {
                self.discard(&region, &key).await;
                self.fail(&job, f.code, &f.reason()).await?;
            }
            Outcome::Failed(f) => {
                self.discard(&region, &key).await;
                let reason = f.reason();
                if job.attempt >= job.max_attempts {
                    let reason = format!("import failed after {} attempts: {reason}", job.attempt);
                    self.fail(&job, f.code, &reason).await?;
                } else {
                    tracing::warn!(job = %job.id, target = %job.target, attempt = job.attempt, reason, "import attempt failed; will retry");
                    let backoff = 1_000_000 * (1i64 << job.attempt.clamp(0, 6));
                    let retry_at = db::now().timestamp_micros() + backoff;
                    if db::jobs::release(&self.db, job.id, &self.owner, Some(&reason), retry_at, false).await? {
                        self.metrics.import_event(kind_label, ImportEvent::Retried);
                    }
                }
            }
            Outcome::Lost => {
                self.metrics.import_event(kind_label, ImportEvent::Cancelled);
                tracing::info!(job = %job.id, target = %job.target, "import cancelled: the target was deleted or the job taken over");
                self.secrets_lock().remove(&job.id);
                self.discard(&region, &key).await;
            }
            Outcome::Shutdown => {
                self.discard(&region, &key).await;
                // hand back at once, and do not count this as an attempt
                let now = db::now().timestamp_micros() - 1;
                if db::jobs::release(&self.db, job.id, &self.owner, None, now, true).await? {
                    self.metrics.import_event(kind_label, ImportEvent::HandedBack);
                }
                tracing::info!(job = %job.id, target = %job.target, "import handed back for shutdown");
            }
        }
        Ok(())
    }

    /// Removes everything an attempt may have written: the objects, local staging files, and
    /// any multipart upload it recorded (which a dead process could not abort itself).
    async fn discard(&self, region: &Region, keys: &[BlobKey]) {
        for key in keys {
            if let Err(e) = db::uploads::abort_for_key(&self.db, &region.store, key).await {
                tracing::warn!(%key, error = %e, "aborting a partial import's upload failed");
            }
            if let Err(e) = region.store.discard(key).await {
                tracing::warn!(%key, error = %e, "removing a partial import failed");
            }
        }
    }

    async fn fail(&self, job: &Job, code: ReasonCode, reason: &str) -> ApiResult<()> {
        if db::jobs::finish_failed(&self.db, job, &self.owner, code, reason).await? {
            self.metrics.import_event(self.label(job), ImportEvent::Failed);
            tracing::warn!(job = %job.id, target = %job.target, %code, reason, "import failed");
        }
        self.secrets_lock().remove(&job.id);
        Ok(())
    }

    /// One attempt of the kind, with a heartbeat beside it, a total timeout and the stop signal.
    async fn attempt(
        &self,
        job: &Job,
        kind: &dyn Runnable,
        secret: Option<&(dyn Any + Send + Sync)>,
        region: &Region,
        blob: BlobId,
    ) -> Outcome {
        let org = match db::jobs::target_owner(&self.db, job.target).await {
            Ok(Some(org)) => org,
            Ok(None) => return Outcome::Lost,
            Err(e) => return Outcome::Failed(Failure::internal(job.id, "reading the target", &e)),
        };
        let attempt = Attempt {
            job,
            key: job.target.key(blob),
            blob,
            region,
            org,
            max_bytes: self.max_image_bytes,
            db: &self.db,
            quotas: &self.quotas,
            done: Arc::new(AtomicU64::new(0)),
            total: Arc::new(AtomicU64::new(u64::MAX)),
            phase: Arc::new(AtomicU8::new(0)),
        };
        let work = kind.run_json(&attempt, &job.spec, secret);
        let heartbeat = async {
            // twice a second: progress stays fresh for pollers, and the lease is renewed well
            // within any configured lease time
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let t = attempt.total.load(Ordering::Relaxed);
                let t = (t != u64::MAX).then_some(t);
                let n = attempt.done.load(Ordering::Relaxed);
                match db::jobs::heartbeat(&self.db, job, &self.owner, self.lease_until(), n, t, attempt.phase()).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    // a database hiccup: keep going; the lease is still ours for a while
                    Err(e) => tracing::warn!(job = %job.id, error = %e, "import heartbeat failed"),
                }
            }
        };
        let mut stop = self.stop.clone();
        let total_timeout = Duration::from_secs(self.cfg.total_timeout_secs);
        tokio::select! {
            r = tokio::time::timeout(total_timeout, work) => match r {
                Ok(Ok(done)) => Outcome::Done(done),
                Ok(Err(failure)) => Outcome::Failed(failure),
                Err(_) => Outcome::Failed(Failure::retryable(
                    ReasonCode::FetchFailed,
                    format!("the import took longer than {}s", total_timeout.as_secs()),
                )),
            },
            _ = heartbeat => Outcome::Lost,
            _ = stop.changed() => Outcome::Shutdown,
        }
    }
}
