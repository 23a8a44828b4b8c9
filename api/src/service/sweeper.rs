//! The orphan sweeper. Stored objects are named by a `BlobKey` (`images/<image>/<blob>`,
//! `kernels/<kernel>/<blob>`, `cache/sha256/<hex>`) and a blob id is never reused, so an object
//! that no row and no import job refers to can never become referenced again: deleting it is safe
//! on any replica, at any time, concurrently. A grace period covers the moment between an upload
//! completing and its row being updated. Every prefix is listed; each kind of key is judged by
//! the rows that can refer to it.

use crate::db::Db;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use strata_domain::ids::RegionId;
use strata_providers::BlobKey;
use tokio::sync::watch;

use crate::config::SweeperConfig;
use crate::db::entities::images;
use crate::error::ApiResult;
use crate::metrics::{Metrics, SweepRemoval};
use crate::state::Region;

pub struct Sweeper {
    db: Db,
    regions: BTreeMap<RegionId, Arc<Region>>,
    cfg: SweeperConfig,
    metrics: Arc<Metrics>,
    /// This process's own staging directory (kernel uploads and pulls): files and directories a
    /// killed process left there.
    local_staging: Option<PathBuf>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub objects_removed: Vec<String>,
    pub staging_removed: Vec<String>,
    /// Multipart uploads a dead process left open (by upload id).
    pub uploads_aborted: Vec<String>,
}

impl Sweeper {
    pub fn new(db: Db, regions: BTreeMap<RegionId, Arc<Region>>, cfg: SweeperConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            db,
            regions,
            cfg,
            metrics,
            local_staging: None,
        }
    }

    /// Also sweeps this local staging directory (entries named `stage-*`, `bundle-*` or `load-*`).
    pub fn with_local_staging(mut self, dir: PathBuf) -> Self {
        self.local_staging = Some(dir);
        self
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        if !self.cfg.enabled {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(self.cfg.interval_secs.max(1)));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = self.sweep_once().await {
                tracing::warn!(error = %e, "orphan sweep failed");
            }
        }
    }

    /// One pass over every region.
    pub async fn sweep_once(&self) -> ApiResult<SweepReport> {
        let mut report = SweepReport::default();
        let done = self.sweep_into(&mut report).await;
        let count = |v: &Vec<String>| v.len() as u64;
        self.metrics.swept(SweepRemoval::Object, count(&report.objects_removed));
        self.metrics
            .swept(SweepRemoval::StagingFile, count(&report.staging_removed));
        self.metrics
            .swept(SweepRemoval::MultipartUpload, count(&report.uploads_aborted));
        self.metrics.sweep_finished(done.is_ok());
        done.map(|()| report)
    }

    /// A pass that records what it removed as it goes, so a pass that stops on an error still
    /// counts what it did.
    async fn sweep_into(&self, report: &mut SweepReport) -> ApiResult<()> {
        let grace = Duration::from_secs(self.cfg.grace_secs);
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        // Upload leases whose holders stopped renewing them (a process died mid-upload).
        crate::db::leases::remove_lapsed(&self.db).await?;
        let mp_grace = Duration::from_secs(self.cfg.multipart_grace_secs);
        let mp_cutoff = crate::db::now().timestamp_micros() - i64::try_from(mp_grace.as_micros()).unwrap_or(i64::MAX);
        for open in crate::db::uploads::older_than(&self.db, mp_cutoff).await? {
            let Some(region) = self.regions.get(&open.region) else {
                continue;
            };
            crate::db::uploads::abort(&self.db, &region.store, &open).await?;
            tracing::info!(region = %open.region, key = %open.key, "sweeper aborted a stale multipart upload");
            report.uploads_aborted.push(open.upload_id);
        }
        for (region_id, region) in &self.regions {
            let objects = region.store.list_all().await?;
            let old: Vec<_> = objects.into_iter().filter(|o| o.last_modified < cutoff).collect();
            let image_ids: Vec<String> = old
                .iter()
                .filter_map(|o| match &o.parsed {
                    Some(BlobKey::Image { image, .. }) => Some(image.to_string()),
                    _ => None,
                })
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let kernel_ids: Vec<String> = old
                .iter()
                .filter_map(|o| match &o.parsed {
                    Some(BlobKey::Kernel { kernel, .. }) => Some(kernel.to_string()),
                    _ => None,
                })
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let referenced = self.referenced_blobs(image_ids).await?;
            let kernel_referenced = self.referenced_kernel_blobs(kernel_ids).await?;
            for o in old {
                match &o.parsed {
                    Some(BlobKey::Image { image, blob }) => {
                        if referenced.contains(&(image.to_string(), blob.to_string())) {
                            continue;
                        }
                    }
                    Some(BlobKey::Kernel { kernel, blob }) => {
                        if kernel_referenced.contains(&(kernel.to_string(), blob.to_string())) {
                            continue;
                        }
                    }
                    // Content-addressed and shared by design: the cache evicts its own entries.
                    Some(BlobKey::Cache { .. }) => continue,
                    None => {
                        tracing::warn!(region = %region_id, key = o.key, "unexpected object key; left alone");
                        continue;
                    }
                }
                region.store.delete_key(&o.key).await?;
                tracing::info!(region = %region_id, key = o.key, "sweeper removed an orphaned object");
                report.objects_removed.push(o.key);
            }
            for path in region.store.sweep_staging(grace).await? {
                tracing::info!(region = %region_id, path, "sweeper removed a stale staging file");
                report.staging_removed.push(path);
            }
        }
        if let Some(dir) = self.local_staging.clone() {
            let removed = tokio::task::spawn_blocking(move || sweep_local_staging(&dir, grace))
                .await
                .map_err(crate::error::ApiError::internal)?;
            for path in removed {
                tracing::info!(path, "sweeper removed a stale kernel staging entry");
                report.staging_removed.push(path);
            }
        }
        Ok(())
    }

    /// (kernel, blob) pairs that rows point at: ready kernels' files and running pulls' keys.
    async fn referenced_kernel_blobs(&self, kernel_ids: Vec<String>) -> ApiResult<HashSet<(String, String)>> {
        let mut out = HashSet::new();
        for chunk in kernel_ids.chunks(500) {
            out.extend(crate::db::kernels::artifact_blobs(&self.db, chunk.to_vec()).await?);
            for key in crate::db::jobs::kernel_attempt_keys(&self.db, chunk.to_vec()).await? {
                if let BlobKey::Kernel { kernel, blob } = key {
                    out.insert((kernel.to_string(), blob.to_string()));
                }
            }
        }
        Ok(out)
    }

    /// (image, blob) pairs that rows point at: ready images' blobs and running imports' blobs.
    async fn referenced_blobs(&self, image_ids: Vec<String>) -> ApiResult<HashSet<(String, String)>> {
        let mut out = HashSet::new();
        for chunk in image_ids.chunks(500) {
            let rows = images::Entity::find()
                .filter(images::Column::Id.is_in(chunk.to_vec()))
                .all(&self.db)
                .await?;
            out.extend(rows.into_iter().filter_map(|r| r.blob_id.map(|b| (r.id, b))));
            out.extend(crate::db::jobs::image_attempt_blobs(&self.db, chunk.to_vec()).await?);
        }
        Ok(out)
    }
}

/// Removes `stage-*` files and `bundle-*` directories in `dir` not modified for `grace`: what an
/// upload or pull left when its process was killed (a live one writes to them continuously, and
/// removes them itself when it ends).
fn sweep_local_staging(dir: &std::path::Path, grace: Duration) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("stage-") || name.starts_with("bundle-") || name.starts_with("load-")) {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        let age = meta.modified().ok().and_then(|m| m.elapsed().ok());
        if age.is_none_or(|a| a < grace) {
            continue;
        }
        let path = e.path();
        let gone = if meta.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match gone {
            Ok(()) => removed.push(path.display().to_string()),
            Err(err) => tracing::warn!(path = %path.display(), error = %err, "removing a stale staging entry failed"),
        }
    }
    removed
}
