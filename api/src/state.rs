//! Process-wide state handed to every handler: database, regions, token verifier, limits.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::db::Db;
use strata_domain::access::RegionPolicy;
use strata_domain::ids::{OrganizationId, RegionId};
use strata_providers::{BlobStore, S3Settings};

use crate::auth::Verifier;
use crate::config::{Config, LimitsConfig, ProviderConfig};

/// A region: who may use it and where its bytes live.
pub struct Region {
    pub policy: RegionPolicy,
    pub store: BlobStore,
}

pub struct AppState {
    pub db: Db,
    pub regions: BTreeMap<RegionId, Arc<Region>>,
    pub verifier: Verifier,
    pub limits: LimitsConfig,
    pub quotas: crate::config::QuotaConfig,
    /// Runs every asynchronous import (service::jobs).
    pub jobs: Arc<crate::service::jobs::JobRunner>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub kernels: Arc<crate::service::kernels::KernelSettings>,
    /// The operator's default global kernels and images (`[[defaults]]`).
    pub defaults: Arc<crate::service::defaults::Defaults>,
}

pub fn build_regions(cfg: &Config) -> anyhow::Result<BTreeMap<RegionId, Arc<Region>>> {
    regions(cfg, true)
}

/// Validates every region (ids, allow-lists, provider settings, credential files) without
/// creating directories or contacting storage.
pub fn check_regions(cfg: &Config) -> anyhow::Result<()> {
    regions(cfg, false).map(|_| ())
}

fn regions(cfg: &Config, create: bool) -> anyhow::Result<BTreeMap<RegionId, Arc<Region>>> {
    let mut out = BTreeMap::new();
    for r in cfg.effective_regions() {
        let id = RegionId::parse(&r.id).map_err(|e| anyhow::anyhow!("region {:?}: {e}", r.id))?;
        let organizations = r
            .organizations
            .as_ref()
            .map(|orgs| orgs.iter().map(|o| OrganizationId::parse(o)).collect::<Result<_, _>>())
            .transpose()
            .map_err(|e| anyhow::anyhow!("region {id}: {e}"))?;
        let store = match &r.provider {
            ProviderConfig::Local { root } if create => BlobStore::local(root)?,
            ProviderConfig::Local { .. } => BlobStore::new(Arc::new(object_store::memory::InMemory::new()), 1, 1),
            ProviderConfig::S3 {
                bucket,
                endpoint,
                region,
                prefix,
                allow_http,
                access_key_id_file,
                secret_access_key_file,
            } => {
                let read = |f: &Option<std::path::PathBuf>, what: &str| {
                    f.as_ref()
                        .map(|p| {
                            std::fs::read_to_string(p)
                                .map(|s| s.trim().to_owned())
                                .map_err(|e| anyhow::anyhow!("region {id}: reading {what} {}: {e}", p.display()))
                        })
                        .transpose()
                };
                BlobStore::s3(S3Settings {
                    bucket: bucket.clone(),
                    endpoint: endpoint.clone(),
                    region: region.clone(),
                    prefix: prefix.clone(),
                    allow_http: *allow_http,
                    access_key_id: read(access_key_id_file, "access_key_id_file")?,
                    secret_access_key: read(secret_access_key_file, "secret_access_key_file")?,
                })?
            }
        };
        let region = Region {
            policy: RegionPolicy {
                id: id.clone(),
                organizations,
            },
            store,
        };
        if out.insert(id.clone(), Arc::new(region)).is_some() {
            anyhow::bail!("region {id} is configured twice");
        }
    }
    Ok(out)
}
