//! Process-wide state handed to every handler: database, regions, token verifier, limits.

use std::collections::BTreeMap;
use std::sync::Arc;

use sea_orm::DatabaseConnection;
use strata_domain::access::RegionPolicy;
use strata_domain::ids::{OrganizationId, RegionId};
use strata_providers::BlobStore;

use crate::auth::Verifier;
use crate::config::{Config, LimitsConfig, ProviderConfig};

/// A region: who may use it and where its bytes live.
pub struct Region {
    pub policy: RegionPolicy,
    pub store: BlobStore,
}

pub struct AppState {
    pub db: DatabaseConnection,
    pub regions: BTreeMap<RegionId, Arc<Region>>,
    pub verifier: Verifier,
    pub limits: LimitsConfig,
    pub quotas: crate::config::QuotaConfig,
    pub importer: Arc<crate::service::imports::Importer>,
}

pub fn build_regions(cfg: &Config) -> anyhow::Result<BTreeMap<RegionId, Arc<Region>>> {
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
            ProviderConfig::Local { root } => BlobStore::local(root)?,
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
