//! Default global kernels and images (`[[defaults]]`): each replica reconciles them on start, and
//! a platform admin can ask for it with `POST /api/v1/regions/{regionID}/defaults:ensure`.
//!
//! A default is identified by its name and sha256. Reconciling looks up the global artifact of
//! that name in the region: missing -> it is created with its import job; present with the same
//! sha256 -> left alone and reported (`present`, `importing`, `failed`); present with another
//! sha256 -> `conflict`, left alone. Replicas reconciling at once race on the database's unique
//! name index for global artifacts, so exactly one import starts per default; the others find it.

use std::collections::BTreeSet;

use strata_domain::DomainError;
use strata_domain::command::{CreateImage, ImageSource};
use strata_domain::ids::RegionId;
use strata_domain::image::{Architecture, ImageState, ReasonCode, Status, Visibility, parse_sha256};
use strata_domain::kernel::KernelVersion;
use strata_domain::name::{Description, ImageName};
use strata_domain::tags::UserTags;

use crate::config::{Config, DefaultArtifact, DefaultKind, KernelCatalogEntry};
use crate::db::tenant::{ImagesTable, KernelsTable, global_by_name};
use crate::error::{ApiError, ApiResult};
use crate::service::kernels::{CreateKernel, NewSource};
use crate::state::AppState;

/// Who imports defaults, as recorded in their provenance.
pub const SUBJECT: &str = "strata-defaults";

/// A validated default.
#[derive(Debug, Clone)]
pub struct Planned {
    pub kind: DefaultKind,
    pub name: ImageName,
    pub source: PlannedSource,
    /// Lowercase hex: what identifies the default besides its name.
    pub sha256: String,
    pub architecture: Option<Architecture>,
    pub version: Option<KernelVersion>,
    pub description: Option<Description>,
    /// `None`: every region.
    pub regions: Option<BTreeSet<RegionId>>,
}

#[derive(Debug, Clone)]
pub enum PlannedSource {
    Catalog(String),
    Url(String),
}

/// Every default, checked once at start.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    pub items: Vec<Planned>,
}

impl Defaults {
    pub fn from_config(cfg: &Config, catalog: &[KernelCatalogEntry]) -> anyhow::Result<Self> {
        let regions: BTreeSet<String> = cfg.effective_regions().iter().map(|r| r.id.clone()).collect();
        let mut seen = BTreeSet::new();
        let mut items = Vec::new();
        for d in &cfg.defaults {
            items.push(plan(d, catalog, &regions).map_err(|e| anyhow::anyhow!("defaults {:?}: {e}", d.name))?);
            if !seen.insert((d.kind, d.name.clone())) {
                anyhow::bail!("defaults {:?}: configured twice", d.name);
            }
        }
        Ok(Self { items })
    }
}

fn plan(d: &DefaultArtifact, catalog: &[KernelCatalogEntry], regions: &BTreeSet<String>) -> anyhow::Result<Planned> {
    let name = ImageName::parse(&d.name)?;
    let architecture = d.architecture.as_deref().map(str::parse::<Architecture>).transpose()?;
    let version = d.version.as_deref().map(KernelVersion::parse).transpose()?;
    let description = d.description.as_deref().map(Description::parse).transpose()?;
    let (source, sha256) = match (d.kind, &d.catalog, &d.url) {
        (DefaultKind::Kernel, Some(entry), None) => {
            let e = catalog
                .iter()
                .find(|e| &e.name == entry)
                .ok_or_else(|| anyhow::anyhow!("no [[kernel_catalog]] entry is named {entry:?}"))?;
            if d.sha256
                .as_deref()
                .is_some_and(|s| parse_sha256("sha256", s).ok().as_ref() != Some(&e.sha256))
            {
                anyhow::bail!("sha256 differs from the catalog entry's; leave it out");
            }
            (PlannedSource::Catalog(entry.clone()), e.sha256.clone())
        }
        (_, None, Some(url)) => {
            let sha = d
                .sha256
                .as_deref()
                .ok_or_else(|| anyhow::anyhow!("a default from a URL needs its sha256"))?;
            if d.kind == DefaultKind::Kernel && version.is_none() {
                anyhow::bail!("a kernel from a URL needs its version");
            }
            (PlannedSource::Url(url.clone()), parse_sha256("sha256", sha)?)
        }
        (DefaultKind::Image, Some(_), _) => anyhow::bail!("catalog entries are kernels; an image default takes url"),
        _ => anyhow::bail!("give exactly one of catalog (kernels) and url"),
    };
    let regions = match &d.regions {
        None => None,
        Some(list) => {
            let mut out = BTreeSet::new();
            for r in list {
                if !regions.contains(r) {
                    anyhow::bail!("region {r:?} is not configured");
                }
                out.insert(RegionId::parse(r)?);
            }
            Some(out)
        }
    };
    Ok(Planned {
        kind: d.kind,
        name,
        source,
        sha256,
        architecture,
        version,
        description,
        regions,
    })
}

/// Where a default stands in a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultState {
    Present,
    Importing,
    Failed,
    Conflict,
}

#[derive(Debug, Clone)]
pub struct DefaultStatus {
    pub kind: DefaultKind,
    pub name: String,
    pub state: DefaultState,
    /// The global artifact's id, when there is one.
    pub id: Option<uuid::Uuid>,
    pub reason: Option<String>,
    pub reason_code: Option<ReasonCode>,
}

/// Reconciles every default that applies to `region`; idempotent, safe on several replicas.
pub async fn ensure(st: &AppState, region: &RegionId) -> ApiResult<Vec<DefaultStatus>> {
    let mut out = Vec::new();
    for p in &st.defaults.items {
        if p.regions.as_ref().is_some_and(|r| !r.contains(region)) {
            continue;
        }
        out.push(ensure_one(st, region, p).await?);
    }
    Ok(out)
}

/// On start: every region, logged; never fatal (an unreachable mirror must not stop the server).
pub async fn reconcile_all(st: &AppState) {
    if st.defaults.items.is_empty() {
        return;
    }
    for region in st.regions.keys() {
        match ensure(st, region).await {
            Ok(list) => {
                for d in list {
                    tracing::info!(%region, name = d.name, state = ?d.state, reason = d.reason, "default");
                }
            }
            Err(e) => tracing::warn!(%region, error = format!("{e:#}"), "reconciling defaults failed"),
        }
    }
}

/// What an artifact found under the default's name says about the default.
fn judge(p: &Planned, id: uuid::Uuid, status: &Status, expected: Option<&str>, digest: Option<&str>) -> DefaultStatus {
    let want = format!("sha256:{}", p.sha256);
    let same = expected == Some(p.sha256.as_str()) || digest == Some(want.as_str()) || digest == Some(&p.sha256);
    let (state, reason, reason_code) = if !same {
        let has = digest.or(expected).unwrap_or("no checksum");
        (
            DefaultState::Conflict,
            Some(format!(
                "a global {} named {} exists with {has}, not sha256:{}; it is left alone",
                kind_name(p.kind),
                p.name,
                p.sha256
            )),
            None,
        )
    } else {
        match status.state {
            ImageState::Ready => (DefaultState::Present, None, None),
            ImageState::Failed => (DefaultState::Failed, status.reason.clone(), status.reason_code),
            _ => (DefaultState::Importing, None, None),
        }
    };
    DefaultStatus {
        kind: p.kind,
        name: p.name.to_string(),
        state,
        id: Some(id),
        reason,
        reason_code,
    }
}

fn kind_name(k: DefaultKind) -> &'static str {
    match k {
        DefaultKind::Kernel => "kernel",
        DefaultKind::Image => "image",
    }
}

async fn ensure_one(st: &AppState, region: &RegionId, p: &Planned) -> ApiResult<DefaultStatus> {
    // Two rounds: when another replica creates it between our read and our insert, the insert
    // loses on the unique index and the second read finds theirs.
    for _ in 0..2 {
        if let Some(found) = find(st, region, p).await? {
            return Ok(found);
        }
        match create(st, region, p).await {
            Ok(id) => {
                tracing::info!(%region, name = %p.name, kind = kind_name(p.kind), "default import started");
                return Ok(DefaultStatus {
                    kind: p.kind,
                    name: p.name.to_string(),
                    state: DefaultState::Importing,
                    id: Some(id),
                    reason: None,
                    reason_code: None,
                });
            }
            Err(ApiError::Domain(DomainError::NameTaken { .. })) => continue,
            // The source refused or failed the synchronous checks: nothing was created.
            Err(ApiError::Domain(e)) => {
                return Ok(DefaultStatus {
                    kind: p.kind,
                    name: p.name.to_string(),
                    state: DefaultState::Failed,
                    id: None,
                    reason_code: e.code().parse().ok(),
                    reason: Some(format!("{}: {e}", e.code())),
                });
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::internal(anyhow::anyhow!(
        "default {} kept appearing and disappearing",
        p.name
    )))
}

async fn find(st: &AppState, region: &RegionId, p: &Planned) -> ApiResult<Option<DefaultStatus>> {
    Ok(match p.kind {
        DefaultKind::Kernel => global_by_name::<KernelsTable>(&st.db, region, p.name.as_str())
            .await?
            .map(|k| {
                judge(
                    p,
                    k.id.as_uuid(),
                    &k.status,
                    k.expected_sha256.as_deref(),
                    k.provenance.digest.as_deref(),
                )
            }),
        DefaultKind::Image => global_by_name::<ImagesTable>(&st.db, region, p.name.as_str())
            .await?
            .map(|i| {
                judge(
                    p,
                    i.id.as_uuid(),
                    &i.status,
                    i.expected_sha256.as_deref(),
                    i.sha256.as_deref(),
                )
            }),
    })
}

async fn create(st: &AppState, region: &RegionId, p: &Planned) -> ApiResult<uuid::Uuid> {
    match p.kind {
        DefaultKind::Kernel => {
            let source = match &p.source {
                PlannedSource::Catalog(entry) => NewSource::Catalog { entry: entry.clone() },
                PlannedSource::Url(url) => NewSource::Url { url: url.clone() },
            };
            let cmd = CreateKernel {
                name: p.name.clone(),
                description: p.description.clone(),
                architecture: p.architecture,
                version: p.version.clone(),
                distro: None,
                tags: UserTags::default(),
                protected: false,
                visibility: Visibility::Global,
                source,
                expected_sha256: Some(p.sha256.clone()),
            };
            let k = crate::service::kernels::create_unchecked(st, region, None, SUBJECT, cmd).await?;
            Ok(k.id.as_uuid())
        }
        DefaultKind::Image => {
            let PlannedSource::Url(url) = &p.source else {
                return Err(ApiError::internal(anyhow::anyhow!("an image default without a URL")));
            };
            let cmd = CreateImage {
                name: p.name.clone(),
                description: p.description.clone(),
                architecture: p.architecture.unwrap_or(Architecture::X86_64),
                os: None,
                tags: UserTags::default(),
                protected: false,
                visibility: Visibility::Global,
                source: ImageSource::Url {
                    url: url.clone(),
                    sha256: Some(p.sha256.clone()),
                },
                kernel_id: None,
            };
            let img = crate::service::images::create_global_from_url(st, region, SUBJECT, cmd).await?;
            Ok(img.id.as_uuid())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Vec<KernelCatalogEntry> {
        vec![KernelCatalogEntry {
            name: "debian-12".into(),
            distro: None,
            architecture: "x86_64".into(),
            version: "6.1".into(),
            url: "https://mirror.example/d.tar.zst".into(),
            sha256: "a".repeat(64),
            size_bytes: 10,
            description: None,
        }]
    }

    fn base(kind: DefaultKind) -> DefaultArtifact {
        DefaultArtifact {
            kind,
            name: "base".into(),
            catalog: None,
            url: None,
            sha256: None,
            architecture: None,
            version: None,
            description: None,
            regions: None,
        }
    }

    fn check(d: DefaultArtifact) -> anyhow::Result<Defaults> {
        let cfg = Config {
            defaults: vec![d],
            ..Config::default()
        };
        Defaults::from_config(&cfg, &catalog())
    }

    #[test]
    fn valid_defaults() {
        let k = check(DefaultArtifact {
            catalog: Some("debian-12".into()),
            ..base(DefaultKind::Kernel)
        })
        .unwrap();
        assert_eq!(k.items[0].sha256, "a".repeat(64));
        let i = check(DefaultArtifact {
            url: Some("https://mirror.example/disk.raw".into()),
            sha256: Some(format!("sha256:{}", "B".repeat(64))),
            regions: Some(vec!["local".into()]),
            ..base(DefaultKind::Image)
        })
        .unwrap();
        assert_eq!(i.items[0].sha256, "b".repeat(64));
        assert!(i.items[0].regions.as_ref().unwrap().len() == 1);
    }

    #[test]
    fn invalid_defaults_are_refused_at_start() {
        let url = Some("https://mirror.example/x".to_owned());
        let sha = Some("c".repeat(64));
        for (d, why) in [
            (base(DefaultKind::Kernel), "exactly one"),
            (
                DefaultArtifact {
                    catalog: Some("nope".into()),
                    ..base(DefaultKind::Kernel)
                },
                "no [[kernel_catalog]]",
            ),
            (
                DefaultArtifact {
                    catalog: Some("debian-12".into()),
                    sha256: sha.clone(),
                    ..base(DefaultKind::Kernel)
                },
                "differs",
            ),
            (
                DefaultArtifact {
                    url: url.clone(),
                    ..base(DefaultKind::Image)
                },
                "needs its sha256",
            ),
            (
                DefaultArtifact {
                    url: url.clone(),
                    sha256: sha.clone(),
                    ..base(DefaultKind::Kernel)
                },
                "needs its version",
            ),
            (
                DefaultArtifact {
                    catalog: Some("debian-12".into()),
                    ..base(DefaultKind::Image)
                },
                "catalog entries are kernels",
            ),
            (
                DefaultArtifact {
                    url: url.clone(),
                    sha256: sha.clone(),
                    regions: Some(vec!["mars".into()]),
                    ..base(DefaultKind::Image)
                },
                "not configured",
            ),
            (
                DefaultArtifact {
                    name: "Bad Name".into(),
                    url: url.clone(),
                    sha256: sha.clone(),
                    ..base(DefaultKind::Image)
                },
                "name",
            ),
        ] {
            let e = check(d).unwrap_err().to_string();
            assert!(e.contains(why), "{e} (wanted {why})");
        }
        let twice = Config {
            defaults: vec![
                DefaultArtifact {
                    catalog: Some("debian-12".into()),
                    ..base(DefaultKind::Kernel)
                },
                DefaultArtifact {
                    catalog: Some("debian-12".into()),
                    ..base(DefaultKind::Kernel)
                },
            ],
            ..Config::default()
        };
        assert!(Defaults::from_config(&twice, &catalog()).is_err());
    }
}
