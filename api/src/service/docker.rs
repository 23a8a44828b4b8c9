//! The Docker Engine API subset: `docker load` (docker-save archives, both layouts, plain, gzip
//! or zstd) into rootfs images built by the same flatten-and-ext4 pipeline as OCI pulls, and
//! `docker tag`, `docker images`, `docker image inspect`, `docker rmi` over an organization's
//! loaded images. Tenancy comes from the same `OrgRegion` extractor as v1.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use strata_domain::DomainError;
use strata_domain::ids::{BlobId, ImageId};
use strata_domain::image::{
    Architecture, DiskFormat, Image, ImageKind, ImageState, OsInfo, Provenance, SourceKind, Status, Visibility,
};
use strata_domain::name::ImageName;
use strata_domain::reference::{ImageLookup, Reference, image_name_from};
use strata_domain::tags::UserTags;
use strata_providers::archive::ArchiveLimits;
use strata_providers::docker_archive::{self, LoadedImage};
use strata_providers::flatten::FlattenLimits;
use strata_providers::kernel_store::stage;
use strata_providers::rootfs::{self, Ext4Fs, RootfsError, RootfsSpec};
use strata_providers::{BlobKey, IngestError, IngestLimits, ingest};

use crate::db;
use crate::db::docker::{DockerImage, NewDockerImage, OrgDocker};
use crate::error::{ApiError, ApiResult};
use crate::service::body::{Pace, guard};
use crate::state::AppState;
use crate::tenancy::{ImagesWrite, OrgRegion};

/// The Engine API version Strata speaks (the docker CLI negotiates down to it).
pub const API_VERSION: &str = "1.43";
pub const MIN_API_VERSION: &str = "1.24";

/// One line of a load's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadLine {
    /// A layer was read (dropped with `quiet=1`).
    Layer { id: String, bytes: u64 },
    /// `Loaded image: REPO:TAG`.
    Tagged(String),
    /// `Loaded image ID: sha256:...` (an untagged image).
    Untagged(String),
}

fn invalid_archive(reason: impl Into<String>) -> ApiError {
    DomainError::InvalidArchive { reason: reason.into() }.into()
}

/// Removes a work directory when dropped, on every path (also a dropped request future).
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn outer_limits(max: u64) -> ArchiveLimits {
    ArchiveLimits {
        max_unpacked_bytes: max,
        max_entries: 100_000,
        max_path_len: 1024,
    }
}

fn flatten_limits(max: u64) -> FlattenLimits {
    FlattenLimits {
        layer: ArchiveLimits {
            max_unpacked_bytes: max,
            max_entries: 500_000,
            max_path_len: 4096,
        },
        max_tree_bytes: max,
    }
}

/// `docker load`: stages the body (capped, paced), checks the archive, and makes each image of
/// it a `ready` rootfs image with its tags, or reuses the one already loaded with the same id.
/// On any failure nothing is kept.
pub async fn load<S, E>(st: &AppState, access: &OrgRegion<ImagesWrite>, body: S) -> ApiResult<Vec<LoadLine>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let max = st.limits.max_image_bytes;
    let work = WorkDir(st.kernels.staging_dir.join(format!("load-{}", uuid::Uuid::new_v4())));
    tokio::fs::create_dir_all(&work.0)
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("creating a load directory: {e}")))?;
    let body = guard(body, Pace::from_limits(&st.limits), None).await;
    let staged = stage(body, &work.0, max, 0, None)
        .await
        .map_err(crate::service::kernels::stage_error)?;
    let unpacked = work.0.join("archive");
    let archive = staged.path.clone();
    let limits = outer_limits(max);
    let images = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&unpacked)?;
        Ok::<_, std::io::Error>(docker_archive::load(&archive, &unpacked, &limits))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| ApiError::internal(anyhow::anyhow!("unpacking a docker archive: {e}")))?
    .map_err(|e| match e.to_domain() {
        Some(d) => ApiError::from(d),
        None => ApiError::internal(anyhow::anyhow!("unpacking a docker archive: {e}")),
    })?;
    drop(staged);
    let mut lines = Vec::new();
    for (n, loaded) in images.iter().enumerate() {
        for (layer, diff) in loaded.layers.iter().zip(&loaded.diff_ids) {
            let bytes = std::fs::metadata(layer).map(|m| m.len()).unwrap_or(0);
            let id = diff.strip_prefix("sha256:").unwrap_or(diff);
            lines.push(LoadLine::Layer {
                id: id.chars().take(12).collect(),
                bytes,
            });
        }
        let img = load_one(st, access, loaded, &work.0.join(format!("image-{n}"))).await?;
        if loaded.repo_tags.is_empty() {
            lines.push(LoadLine::Untagged(img.docker_id.clone()));
        }
        for r in &loaded.repo_tags {
            lines.push(LoadLine::Tagged(r.familiar()));
        }
    }
    Ok(lines)
}

async fn load_one(
    st: &AppState,
    access: &OrgRegion<ImagesWrite>,
    loaded: &LoadedImage,
    work: &std::path::Path,
) -> ApiResult<DockerImage> {
    let docker = OrgDocker::new(&st.db, access);
    let id = loaded.id.as_str().to_owned();
    let tags: Vec<String> = loaded.repo_tags.iter().map(ToString::to_string).collect();
    if let Some(existing) = docker.by_id(&id).await? {
        for t in &tags {
            docker.move_tag(t, existing.image.id).await?;
        }
        return Ok(existing);
    }
    let config: serde_json::Value =
        serde_json::from_slice(&loaded.config).map_err(|_| invalid_archive("the image config is not valid JSON"))?;
    let architecture = match config.get("architecture").and_then(|a| a.as_str()) {
        Some("amd64") | Some("x86_64") | None => Architecture::X86_64,
        Some("arm64") | Some("aarch64") => Architecture::Aarch64,
        Some(other) => {
            return Err(DomainError::invalid(
                "architecture",
                format!("the image is for {other:?}; Strata keeps amd64 and arm64 images"),
            )
            .into());
        }
    };
    // Build the filesystem from the checked layers.
    std::fs::create_dir_all(work).map_err(|e| ApiError::internal(anyhow::anyhow!("staging: {e}")))?;
    let (layers, dir, max) = (loaded.layers.clone(), work.to_path_buf(), st.limits.max_image_bytes);
    let built = tokio::task::spawn_blocking(move || {
        let layers = layers
            .iter()
            .map(std::fs::File::open)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| RootfsError::Internal(format!("opening a layer: {e}")))?;
        rootfs::build(&RootfsSpec {
            layers: &layers,
            work_dir: &dir,
            limits: flatten_limits(max),
            size_bytes: None,
            cancel: &AtomicBool::new(false),
            tool_timeout: Duration::from_secs(600),
            on_building: &|| {},
        })
    })
    .await
    .map_err(ApiError::internal)?;
    let (ext4, _) = built.map_err(|e| match e {
        RootfsError::Invalid(r) => invalid_archive(r),
        RootfsError::TooLarge(r) => invalid_archive(r),
        other => ApiError::internal(anyhow::anyhow!("building a rootfs: {other}")),
    })?;
    // Store it, hashed on the way, under a fresh image id.
    let image_id = ImageId::new();
    let blob = BlobId::new();
    let key = BlobKey::image(image_id, blob);
    let store = &access.region.store;
    let file = tokio::fs::File::open(&ext4)
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("opening the built rootfs: {e}")))?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
    let limits = IngestLimits {
        max_bytes: st.limits.max_image_bytes,
        expected_sha256: None,
    };
    let ledger = db::uploads::DbLedger(&st.db, access.region_id());
    let stored = ingest(store, &key, stream, &Ext4Fs, &limits, Some(&ledger), |_| {})
        .await
        .map_err(|e| match e {
            IngestError::TooLarge { limit } => ApiError::from(DomainError::TooLarge { limit }),
            other => ApiError::internal(anyhow::anyhow!("storing a loaded rootfs: {other}")),
        })?;
    let _ = tokio::fs::remove_file(&ext4).await;
    let created = config
        .get("created")
        .and_then(|c| c.as_str())
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
        .map_or(0, |t| t.timestamp());
    let os = config
        .get("os")
        .and_then(|o| o.as_str())
        .map(|family| OsInfo {
            family: family.to_owned(),
            distro: None,
            version: None,
        })
        .and_then(|o| o.validate().ok());
    let config_text = String::from_utf8_lossy(&loaded.config).into_owned();
    let base = match loaded.repo_tags.first() {
        Some(r) => r.default_image_name()?,
        None => image_name_from(&format!("sha256-{}", &loaded.id.hex()[..12]))?,
    };
    let now = db::now();
    let mut img = Image {
        id: image_id,
        name: base.clone(),
        description: None,
        organization_id: Some(access.org.clone()),
        region_id: access.region_id().clone(),
        visibility: Visibility::Organization,
        kind: ImageKind::Rootfs,
        disk_format: DiskFormat::Ext4,
        architecture,
        os,
        tags: UserTags::default(),
        protected: false,
        provenance: Provenance {
            source: SourceKind::DockerArchive,
            reference: loaded.repo_tags.first().map(Reference::familiar),
            digest: Some(id.clone()),
            config_digest: None,
            platform: None,
            imported_by: access.principal.subject.clone(),
            imported_at: now,
        },
        status: Status {
            state: ImageState::Ready,
            reason: None,
            reason_code: None,
            bytes_done: stored.size,
            bytes_total: Some(stored.size),
            phase: None,
        },
        size_bytes: Some(stored.size),
        sha256: Some(stored.sha256.clone()),
        expected_sha256: None,
        blob: Some(blob),
        kernel_id: None,
        docker_tags: Vec::new(),
        created_at: now,
        updated_at: now,
        revision: 1,
    };
    let quota = Some(st.quotas.limits_for(access.org.as_str()));
    let identity = NewDockerImage {
        docker_id: &id,
        config: &config_text,
        created,
    };
    // A name clash gets a short suffix and is never refused.
    for attempt in 0..12 {
        if attempt > 0 {
            img.name = suffixed(&base, attempt)?;
        }
        match insert_loaded(st, &img, quota, &identity, &tags).await {
            Ok(true) => {
                tracing::info!(image = %img.id, docker_id = id, name = %img.name, "docker image loaded");
                return docker
                    .by_id(&id)
                    .await?
                    .ok_or_else(|| ApiError::internal(anyhow::anyhow!("a loaded image vanished before it was read")));
            }
            Ok(false) => {
                // Another load of the same image won: use it, drop our copy.
                discard(store, &key).await;
                let existing = docker
                    .by_id(&id)
                    .await?
                    .ok_or_else(|| ApiError::internal(anyhow::anyhow!("a concurrently loaded image vanished")))?;
                for t in &tags {
                    docker.move_tag(t, existing.image.id).await?;
                }
                return Ok(existing);
            }
            Err(ApiError::Domain(DomainError::NameTaken { .. })) => continue,
            Err(e) => {
                discard(store, &key).await;
                return Err(e);
            }
        }
    }
    discard(store, &key).await;
    Err(ApiError::internal(anyhow::anyhow!(
        "no free name for a loaded image after 12 tries"
    )))
}

/// `base-2` ... `base-9`, then `base-<4 random hex>`, within the 63-character limit.
fn suffixed(base: &ImageName, attempt: u32) -> ApiResult<ImageName> {
    let suffix = if attempt < 9 {
        format!("{}", attempt + 1)
    } else {
        uuid::Uuid::new_v4().simple().to_string()[..4].to_owned()
    };
    let stem: String = base.as_str().chars().take(63 - suffix.len() - 1).collect();
    Ok(image_name_from(&format!("{stem}-{suffix}"))?)
}

async fn discard(store: &strata_providers::BlobStore, key: &BlobKey) {
    if let Err(e) = store.discard(key).await {
        tracing::warn!(%key, error = %e, "removing a loaded rootfs failed");
    }
}

/// One transaction: the image (counted and charged), its Docker identity and its tags. False:
/// the identity was taken by a concurrent load (nothing of ours was kept).
async fn insert_loaded(
    st: &AppState,
    img: &Image,
    quota: Option<crate::config::Limits>,
    identity: &NewDockerImage<'_>,
    tags: &[String],
) -> ApiResult<bool> {
    let txn = st.db.begin().await?;
    db::images::reserve_in(&txn, img, false, quota).await?;
    db::images::insert_in(&txn, img).await?;
    db::images::charge_in(
        &txn,
        img.organization_id.as_ref(),
        &img.region_id,
        img.size_bytes.unwrap_or(0),
        quota,
    )
    .await?;
    if !db::docker::insert_identity_in(&txn, img, identity).await? {
        return Ok(false);
    }
    if let Some(org) = &img.organization_id {
        for t in tags {
            db::docker::move_tag_in(&txn, &img.region_id, org, t, img.id).await?;
        }
    }
    txn.commit().await?;
    Ok(true)
}

/// What `{name}` means in the Engine API, resolved as Docker does.
pub async fn resolve<S>(st: &AppState, access: &OrgRegion<S>, name: &str) -> ApiResult<DockerImage> {
    let no_such = || ApiError::from(DomainError::not_found(strata_domain::ResourceKind::Image, name));
    let docker = OrgDocker::new(&st.db, access);
    let lookup = ImageLookup::parse(name).map_err(|_| no_such())?;
    match lookup {
        ImageLookup::Id(d) => docker.by_id(d.as_str()).await?.ok_or_else(no_such),
        ImageLookup::IdPrefix(p) => {
            let mut found = docker.by_id_prefix(&p).await?;
            match found.len() {
                1 => Ok(found.remove(0)),
                0 => {
                    // a 12+ hex name may also be a repository name
                    match Reference::parse(name) {
                        Ok(r) => docker
                            .by_reference(&r.with_default_tag().to_string())
                            .await?
                            .ok_or_else(no_such),
                        Err(_) => Err(no_such()),
                    }
                }
                _ => Err(DomainError::invalid("name", format!("{name} matches more than one image")).into()),
            }
        }
        ImageLookup::Reference(r) => docker.by_reference(&r.to_string()).await?.ok_or_else(no_such),
    }
}

/// `docker tag`: points `repo:tag` at the image `name` resolves to (moving it if another image
/// holds it; that image keeps its other tags, or stays dangling).
pub async fn tag(
    st: &AppState,
    access: &OrgRegion<ImagesWrite>,
    name: &str,
    repo: &str,
    tag: Option<&str>,
) -> ApiResult<()> {
    let img = resolve(st, access, name).await?;
    let raw = match tag.filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.to_owned(),
    };
    let r = Reference::parse(&raw)?.with_default_tag();
    if r.digest().is_some() {
        return Err(DomainError::invalid("repo", "a tag cannot name a digest").into());
    }
    OrgDocker::new(&st.db, access)
        .move_tag(&r.to_string(), img.image.id)
        .await?;
    tracing::info!(image = %img.image.id, tag = r.familiar(), "docker tag moved");
    Ok(())
}

pub async fn list<S>(st: &AppState, access: &OrgRegion<S>) -> ApiResult<Vec<DockerImage>> {
    Ok(OrgDocker::new(&st.db, access).list().await?)
}

/// One entry of a `docker rmi` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Untagged(String),
    Deleted(String),
}

/// `docker rmi`: by tag it untags, and deletes the image once no tag is left; by id it deletes
/// (an image with several tags only with `force`). Protected or in-use images are refused with
/// the v1 rule's reason, and keep their tags.
pub async fn remove(
    st: &AppState,
    access: &OrgRegion<ImagesWrite>,
    name: &str,
    force: bool,
) -> ApiResult<Vec<Removed>> {
    let img = resolve(st, access, name).await?;
    let docker = OrgDocker::new(&st.db, access);
    let by_reference = match ImageLookup::parse(name) {
        Ok(ImageLookup::Reference(r)) => Some(r.to_string()),
        _ => None,
    };
    let mut out = Vec::new();
    match by_reference {
        Some(reference) if img.tags.len() > 1 => {
            docker.untag(&reference).await?;
            out.push(Removed::Untagged(familiar(&reference)));
        }
        _ => {
            if by_reference.is_none() && img.tags.len() > 1 && !force {
                return Err(DomainError::InvalidState {
                    actual: format!("tagged {} times", img.tags.len()),
                    expected: "untagged, or removed with force=1, to delete it by id".into(),
                }
                .into());
            }
            // The last tag (or the id): the image goes, and its tags with it.
            crate::service::images::delete(st, access, img.image.id).await?;
            out.extend(img.tags.iter().map(|t| Removed::Untagged(familiar(t))));
            out.push(Removed::Deleted(img.docker_id.clone()));
        }
    }
    Ok(out)
}

fn familiar(reference: &str) -> String {
    Reference::parse(reference).map_or_else(|_| reference.to_owned(), |r| r.familiar())
}

/// `docker import -` (`POST /images/create?fromSrc=-`): one tar (plain, gzip, zstd or xz) becomes
/// a single-layer image, its config made here with the `changes` applied (CMD, ENTRYPOINT, ENV,
/// WORKDIR, USER, LABEL, EXPOSE), then built and stored as a load is. Returns the image id.
pub async fn import<S, E>(
    st: &AppState,
    access: &OrgRegion<ImagesWrite>,
    body: S,
    repo: Option<&str>,
    tag: Option<&str>,
    changes: &[String],
) -> ApiResult<String>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut image_config = serde_json::Map::new();
    for c in changes {
        apply_change(&mut image_config, c)?;
    }
    let repo_tags = match repo.filter(|r| !r.is_empty()) {
        None => vec![],
        Some(r) => {
            let raw = match tag.filter(|t| !t.is_empty()) {
                Some(t) => format!("{r}:{t}"),
                None => r.to_owned(),
            };
            let r = Reference::parse(&raw)?.with_default_tag();
            if r.digest().is_some() {
                return Err(DomainError::invalid("repo", "a tag cannot name a digest").into());
            }
            vec![r]
        }
    };
    let max = st.limits.max_image_bytes;
    let work = WorkDir(st.kernels.staging_dir.join(format!("load-{}", uuid::Uuid::new_v4())));
    tokio::fs::create_dir_all(&work.0)
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("creating an import directory: {e}")))?;
    let body = guard(body, Pace::from_limits(&st.limits), None).await;
    let staged = stage(body, &work.0, max, 0, None)
        .await
        .map_err(crate::service::kernels::stage_error)?;
    let layer = staged.path.clone();
    let diff = tokio::task::spawn_blocking(move || docker_archive::uncompressed_sha256(&layer, max))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| match e.to_domain() {
            Some(d) => ApiError::from(d),
            None => ApiError::internal(anyhow::anyhow!("reading an imported layer: {e}")),
        })?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let config = serde_json::json!({
        "architecture": match std::env::consts::ARCH { "aarch64" => "arm64", _ => "amd64" },
        "os": "linux",
        "created": now,
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff}")]},
        "history": [{"created": now, "comment": "Imported from -"}],
    });
    let config = serde_json::to_vec(&config).map_err(ApiError::internal)?;
    let id = strata_domain::reference::Digest::from_sha256_hex(&hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        &config,
    )))?;
    let loaded = LoadedImage {
        id,
        config,
        repo_tags,
        layers: vec![staged.path.clone()],
        diff_ids: vec![format!("sha256:{diff}")],
    };
    let img = load_one(st, access, &loaded, &work.0.join("image")).await?;
    drop(staged);
    Ok(img.docker_id)
}

/// One Dockerfile instruction of `docker import --change`, applied to the image config.
fn apply_change(cfg: &mut serde_json::Map<String, serde_json::Value>, change: &str) -> Result<(), DomainError> {
    use serde_json::{Value, json};
    let bad = |why: &str| DomainError::invalid("changes", format!("{change:?}: {why}"));
    let (instr, rest) = change
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(|| bad("no argument"))?;
    let rest = rest.trim();
    // exec form `["a", "b"]`, or shell form run by /bin/sh -c
    let command = |rest: &str| -> Result<Value, DomainError> {
        if rest.starts_with('[') {
            let v: Vec<String> = serde_json::from_str(rest).map_err(|_| bad("not a JSON array of strings"))?;
            Ok(json!(v))
        } else {
            Ok(json!(["/bin/sh", "-c", rest]))
        }
    };
    let pair = |rest: &str| -> Result<(String, String), DomainError> {
        let (k, v) = rest
            .split_once('=')
            .or_else(|| rest.split_once(char::is_whitespace))
            .ok_or_else(|| bad("wants KEY=VALUE"))?;
        Ok((k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
    };
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => {
            cfg.insert("Cmd".into(), command(rest)?);
        }
        "ENTRYPOINT" => {
            cfg.insert("Entrypoint".into(), command(rest)?);
        }
        "WORKDIR" => {
            cfg.insert("WorkingDir".into(), json!(rest));
        }
        "USER" => {
            cfg.insert("User".into(), json!(rest));
        }
        "ENV" => {
            let (k, v) = pair(rest)?;
            let env = cfg.entry("Env").or_insert_with(|| json!([]));
            if let Some(list) = env.as_array_mut() {
                list.retain(|e| e.as_str().is_none_or(|e| !e.starts_with(&format!("{k}="))));
                list.push(json!(format!("{k}={v}")));
            }
        }
        "LABEL" => {
            let (k, v) = pair(rest)?;
            let labels = cfg.entry("Labels").or_insert_with(|| json!({}));
            if let Some(m) = labels.as_object_mut() {
                m.insert(k, json!(v));
            }
        }
        "EXPOSE" => {
            let ports = cfg.entry("ExposedPorts").or_insert_with(|| json!({}));
            for p in rest.split_whitespace() {
                let p = if p.contains('/') {
                    p.to_owned()
                } else {
                    format!("{p}/tcp")
                };
                if let Some(m) = ports.as_object_mut() {
                    m.insert(p, json!({}));
                }
            }
        }
        other => return Err(bad(&format!("{other} is not supported by docker import here"))),
    }
    Ok(())
}
