//! `docker save` archives: the classic layout (`manifest.json`, `<id>.json`, `<layer>/layer.tar`)
//! and the OCI layout Docker 25+ writes (`index.json`, `oci-layout`, `blobs/sha256/...`, plus
//! `manifest.json`), plain, gzip or zstd.
//!
//! The archive is unpacked into a staging directory by the one hardened tar reader (no `..`,
//! no absolute names, no links out of the archive, no devices, capped entries and bytes); only
//! then is `manifest.json` read, and every path it names is resolved inside what was unpacked
//! (following the archive's own symlinks, never leaving it). Each image's config must parse,
//! list as many `rootfs.diff_ids` as it has layers, and each layer's uncompressed sha256 must be
//! its diff_id. The Docker image id is the sha256 of the config bytes, so loading the same
//! archive twice gives the same id.
//!
//! Blocking: call from `spawn_blocking`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use strata_domain::reference::{Digest, Reference};

use crate::archive::{
    ArchiveError, ArchiveLimits, ArchivePolicy, Compression, Entry, EntryKind, SpecialFiles, SymlinkTargets,
    read_archive,
};
use crate::flatten::quoted;

const MAX_MANIFEST_BYTES: u64 = 4 << 20;
const MAX_CONFIG_BYTES: u64 = 8 << 20;
const MAX_IMAGES: usize = 64;
const MAX_LAYERS: usize = 256;
const MAX_TAGS: usize = 64;
const MAX_LINK_HOPS: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ConfigHead {
    rootfs: Option<RootFs>,
}

/// One image of the archive, checked.
#[derive(Debug)]
pub struct LoadedImage {
    /// `sha256:` + sha256 of the config bytes: Docker's image id.
    pub id: Digest,
    pub config: Vec<u8>,
    /// As given in `manifest.json`, each parsed (and normalised) as a reference.
    pub repo_tags: Vec<Reference>,
    /// Staged layer files, in order (each a plain, gzip or zstd tar).
    pub layers: Vec<PathBuf>,
    pub diff_ids: Vec<String>,
}

fn invalid(reason: impl Into<String>) -> ArchiveError {
    ArchiveError::invalid(reason)
}

/// What the outer archive held, by archive path.
#[derive(Default)]
struct Unpacked {
    files: HashMap<String, PathBuf>,
    /// Archive symlinks, already resolved to archive paths by the reader.
    links: HashMap<String, String>,
}

impl Unpacked {
    /// The staged file an archive path names, following the archive's own links.
    fn file(&self, path: &str) -> Result<&Path, ArchiveError> {
        let mut p = normalise(path).ok_or_else(|| invalid(format!("{} leaves the archive", quoted(path))))?;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(f) = self.files.get(&p) {
                return Ok(f);
            }
            match self.links.get(&p) {
                Some(next) => p = next.clone(),
                None => return Err(invalid(format!("{} is not in the archive", quoted(path)))),
            }
        }
        Err(invalid(format!("too many links resolving {}", quoted(path))))
    }
}

/// `a/./b` -> `a/b`; `None` for absolute paths or `..` (never followed out of the archive).
fn normalise(p: &str) -> Option<String> {
    if p.starts_with('/') {
        return None;
    }
    let mut out = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => out.push(c),
        }
    }
    (!out.is_empty()).then(|| out.join("/"))
}

/// Unpacks the archive at `archive` into `staging` (an empty directory) and returns its images.
pub fn load(archive: &Path, staging: &Path, limits: &ArchiveLimits) -> Result<Vec<LoadedImage>, ArchiveError> {
    let policy = ArchivePolicy {
        limits: limits.clone(),
        special_files: SpecialFiles::Refuse,
        symlinks: SymlinkTargets::Confined,
    };
    let mut unpacked = Unpacked::default();
    let mut n = 0u64;
    read_archive(archive, &policy, &mut |e: &mut Entry<'_>| -> Result<(), ArchiveError> {
        match e.kind().clone() {
            EntryKind::Dir => {}
            EntryKind::File => {
                // flat names in staging: the archive's tree is only ever looked up by path
                n += 1;
                let dest = staging.join(format!("m{n}"));
                let mut out = File::create(&dest).map_err(ArchiveError::io)?;
                e.copy_to(&mut out)?;
                unpacked.files.insert(e.path().to_owned(), dest);
            }
            EntryKind::Symlink { resolved, .. } => {
                if let Some(r) = resolved {
                    unpacked.links.insert(e.path().to_owned(), r);
                }
            }
            EntryKind::Hardlink { target } => {
                unpacked.links.insert(e.path().to_owned(), target);
            }
        }
        Ok(())
    })?;
    let manifest = unpacked
        .file("manifest.json")
        .map_err(|_| invalid("the archive has no manifest.json (is it a docker save archive?)"))?;
    let entries: Vec<ManifestEntry> =
        serde_json::from_slice(&read_capped(manifest, MAX_MANIFEST_BYTES, "manifest.json")?)
            .map_err(|e| invalid(format!("manifest.json is not valid: {}", short(&e.to_string()))))?;
    if entries.is_empty() {
        return Err(invalid("manifest.json lists no images"));
    }
    if entries.len() > MAX_IMAGES {
        return Err(invalid(format!("manifest.json lists more than {MAX_IMAGES} images")));
    }
    let mut images = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        images.push(check_image(&unpacked, i, entry, limits)?);
    }
    Ok(images)
}

fn short(s: &str) -> String {
    s.chars().take(120).collect()
}

fn check_image(
    unpacked: &Unpacked,
    i: usize,
    entry: ManifestEntry,
    limits: &ArchiveLimits,
) -> Result<LoadedImage, ArchiveError> {
    let config = read_capped(unpacked.file(&entry.config)?, MAX_CONFIG_BYTES, "the image config")?;
    let head: ConfigHead = serde_json::from_slice(&config).map_err(|e| {
        invalid(format!(
            "image {i}: the config does not parse: {}",
            short(&e.to_string())
        ))
    })?;
    let diff_ids = head.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    if entry.layers.len() > MAX_LAYERS {
        return Err(invalid(format!("image {i} has more than {MAX_LAYERS} layers")));
    }
    if entry.layers.len() != diff_ids.len() {
        return Err(invalid(format!(
            "image {i} has {} layers but its config lists {} diff_ids",
            entry.layers.len(),
            diff_ids.len()
        )));
    }
    let mut layers = Vec::with_capacity(entry.layers.len());
    for (n, (layer, diff_id)) in entry.layers.iter().zip(&diff_ids).enumerate() {
        let file = unpacked.file(layer)?;
        let got = uncompressed_sha256(file, limits.max_unpacked_bytes)?;
        if !diff_id
            .strip_prefix("sha256:")
            .is_some_and(|d| d.eq_ignore_ascii_case(&got))
        {
            return Err(invalid(format!(
                "invalid diffID for layer {n}: expected {diff_id}, got sha256:{got}"
            )));
        }
        layers.push(file.to_path_buf());
    }
    let mut repo_tags = Vec::new();
    for t in entry.repo_tags.unwrap_or_default().iter().take(MAX_TAGS) {
        let r = Reference::parse(t)
            .map_err(|_| invalid(format!("image {i}: {} is not a valid image reference", quoted(t))))?;
        repo_tags.push(r);
    }
    let id = Digest::from_sha256_hex(&hex::encode(Sha256::digest(&config))).map_err(|_| invalid("digest"))?;
    Ok(LoadedImage {
        id,
        config,
        repo_tags,
        layers,
        diff_ids,
    })
}

fn read_capped(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, ArchiveError> {
    let f = File::open(path).map_err(ArchiveError::io)?;
    if f.metadata().map_err(ArchiveError::io)?.len() > max {
        return Err(invalid(format!("{what} is over {max} bytes")));
    }
    let mut v = Vec::new();
    f.take(max + 1).read_to_end(&mut v).map_err(ArchiveError::io)?;
    Ok(v)
}

/// The sha256 of a layer's tar stream after decompression (its diff_id), reading at most
/// `max` decompressed bytes.
pub fn uncompressed_sha256(path: &Path, max: u64) -> Result<String, ArchiveError> {
    let mut head = Vec::with_capacity(512);
    File::open(path)
        .map_err(ArchiveError::io)?
        .take(512)
        .read_to_end(&mut head)
        .map_err(ArchiveError::io)?;
    let file = BufReader::with_capacity(256 * 1024, File::open(path).map_err(ArchiveError::io)?);
    let compression = Compression::sniff(&head).unwrap_or(Compression::None);
    let reader = crate::archive::decoder(compression, file).map_err(ArchiveError::io)?;
    let mut limited = reader.take(max + 1);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(invalid(format!("a layer is corrupt ({})", short(&e.to_string())))),
        };
        total += n as u64;
        if total > max {
            return Err(invalid(format!("a layer is more than {max} bytes once decompressed")));
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Removes what [`load`] staged.
pub fn clear(staging: &Path) {
    if let Ok(rd) = fs::read_dir(staging) {
        for e in rd.flatten() {
            let _ = fs::remove_file(e.path());
        }
    }
}
