//! `docker save` archives read by the docker-archive loader: the classic layout written by
//! skopeo (`docker-archive:`), plain, gzip and zstd; the OCI layout with manifest.json that
//! Docker 25+ writes; several images in one archive; and the attacks the loader must refuse.

use std::path::Path;
use std::process::Command;

use serde_json::json;
use strata_providers::archive::ArchiveLimits;
use strata_providers::docker_archive::load;

use crate::registry::{ImageSpec, run, small_layers, write_layout};

fn limits() -> ArchiveLimits {
    ArchiveLimits {
        max_unpacked_bytes: 256 << 20,
        max_entries: 10_000,
        max_path_len: 4096,
    }
}

fn compress(file: &Path, tool: &str) -> std::path::PathBuf {
    let out = file.with_extension(format!("tar.{tool}"));
    let bytes = Command::new(tool).arg("-c").arg(file).output().unwrap();
    assert!(bytes.status.success());
    std::fs::write(&out, bytes.stdout).unwrap();
    out
}

fn tar_dir(dir: &Path, out: &Path) {
    run(Command::new("tar").arg("-C").arg(dir).arg("-cf").arg(out).arg("."));
}

#[test]
fn skopeo_docker_archives_load_plain_gzip_and_zstd() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let l = small_layers();
    let spec = [ImageSpec {
        layers: &l,
        os: "linux",
        architecture: "amd64",
        config: json!({"config": {"Cmd": ["/bin/sh"]}}),
    }];
    let pushed = write_layout(&layout, "v1", &spec);
    let archive = dir.path().join("app.tar");
    run(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker-archive:{}:team/app:v1", archive.display())));
    let mut ids = Vec::new();
    for file in [archive.clone(), compress(&archive, "gzip"), compress(&archive, "zstd")] {
        let staging = tempfile::tempdir().unwrap();
        let images = load(&file, staging.path(), &limits()).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(images.len(), 1);
        let img = &images[0];
        assert_eq!(
            img.id.as_str(),
            pushed.manifests[0].1,
            "the image id is the config's digest"
        );
        assert_eq!(img.repo_tags.len(), 1);
        assert_eq!(img.repo_tags[0].familiar(), "team/app:v1");
        assert_eq!(img.layers.len(), 2);
        assert_eq!(img.diff_ids, l.iter().map(|x| x.diff_id.clone()).collect::<Vec<_>>());
        ids.push(img.id.clone());
    }
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "the same archive gives the same id"
    );
}

/// Docker 25+: an OCI layout plus manifest.json naming blobs; several images, one untagged.
#[test]
fn oci_layout_archives_with_several_images() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let l = small_layers();
    let a = write_layout(
        &layout,
        "a",
        &[ImageSpec {
            layers: &l,
            os: "linux",
            architecture: "amd64",
            config: json!({"a": 1}),
        }],
    );
    let b = write_layout(
        &layout,
        "b",
        &[ImageSpec {
            layers: &l[..1],
            os: "linux",
            architecture: "amd64",
            config: json!({"b": 2}),
        }],
    );
    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let manifest = json!([
        {"Config": blob(&a.manifests[0].1), "RepoTags": ["alpine:3.19", "alpine:latest"], "Layers": a.manifests[0].2.iter().map(|d| blob(d)).collect::<Vec<_>>()},
        {"Config": blob(&b.manifests[0].1), "RepoTags": null, "Layers": b.manifests[0].2.iter().map(|d| blob(d)).collect::<Vec<_>>()},
    ]);
    std::fs::write(layout.join("manifest.json"), manifest.to_string()).unwrap();
    let archive = dir.path().join("multi.tar");
    tar_dir(&layout, &archive);
    let staging = tempfile::tempdir().unwrap();
    let images = load(&archive, staging.path(), &limits()).unwrap();
    assert_eq!(images.len(), 2);
    let tags: Vec<String> = images[0].repo_tags.iter().map(|r| r.familiar()).collect();
    assert_eq!(tags, ["alpine:3.19", "alpine:latest"]);
    assert!(images[1].repo_tags.is_empty());
    assert_eq!(images[1].layers.len(), 1);
    assert_ne!(images[0].id, images[1].id);
}

#[test]
fn hostile_archives_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let l = small_layers();
    let layout = dir.path().join("layout");
    let good = write_layout(&layout, "x", &[ImageSpec::amd64(&l)]);
    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let config = blob(&good.manifests[0].1);
    let layer_paths: Vec<String> = good.manifests[0].2.iter().map(|d| blob(d)).collect();
    // a config whose diff_ids do not match the layers
    let mut bad_config =
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(layout.join(&config)).unwrap()).unwrap();
    bad_config["rootfs"]["diff_ids"][0] = json!(format!("sha256:{}", "0".repeat(64)));
    let bad_bytes = bad_config.to_string();
    std::fs::write(layout.join("bad-config.json"), &bad_bytes).unwrap();
    let mut short_config = bad_config.clone();
    short_config["rootfs"]["diff_ids"] = json!([l[0].diff_id]);
    std::fs::write(layout.join("short-config.json"), short_config.to_string()).unwrap();
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "config outside",
            json!([{"Config": "../../etc/passwd", "Layers": []}]),
            "leaves the archive",
        ),
        (
            "absolute layer",
            json!([{"Config": config, "Layers": ["/etc/passwd", layer_paths[1]]}]),
            "leaves the archive",
        ),
        (
            "missing layer",
            json!([{"Config": config, "Layers": ["nope.tar", layer_paths[1]]}]),
            "not in the archive",
        ),
        (
            "diff_id mismatch",
            json!([{"Config": "bad-config.json", "Layers": layer_paths}]),
            "invalid diffID for layer 0",
        ),
        (
            "count mismatch",
            json!([{"Config": "short-config.json", "Layers": layer_paths}]),
            "2 layers but its config lists 1",
        ),
        ("no images", json!([]), "no images"),
        (
            "bad tag",
            json!([{"Config": config, "RepoTags": ["UPPER:case"], "Layers": layer_paths}]),
            "not a valid image reference",
        ),
    ];
    for (name, manifest, says) in cases {
        std::fs::write(layout.join("manifest.json"), manifest.to_string()).unwrap();
        let archive = dir.path().join("evil.tar");
        tar_dir(&layout, &archive);
        let staging = tempfile::tempdir().unwrap();
        let err = load(&archive, staging.path(), &limits()).expect_err(name);
        assert!(err.to_string().contains(says), "{name}: {err}");
    }
    // no manifest.json at all
    std::fs::remove_file(layout.join("manifest.json")).unwrap();
    let archive = dir.path().join("nomanifest.tar");
    tar_dir(&layout, &archive);
    let staging = tempfile::tempdir().unwrap();
    let err = load(&archive, staging.path(), &limits()).expect_err("no manifest");
    assert!(err.to_string().contains("no manifest.json"), "{err}");
    // a member that is a symlink out of the archive
    let evil = dir.path().join("evil-link");
    std::fs::create_dir_all(&evil).unwrap();
    std::os::unix::fs::symlink("../../../etc/passwd", evil.join("manifest.json")).unwrap();
    let archive = dir.path().join("link.tar");
    tar_dir(&evil, &archive);
    let staging = tempfile::tempdir().unwrap();
    let err = load(&archive, staging.path(), &limits()).expect_err("link out");
    assert!(err.to_string().contains("invalid archive"), "{err}");
}
