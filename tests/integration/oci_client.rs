//! The OCI registry client and layer cache against a real registry: tags, digests, indexes and
//! platforms, basic auth, the address policy, and a blob the registry serves tampered.

use serde_json::json;
use strata_domain::reference::{Platform, Reference};
use strata_providers::blobcache::{BlobCache, CacheError};
use strata_providers::registry::{Login, RegistryClient, RegistryError};
use strata_providers::{FetchPolicy, Fetcher};

use crate::registry::{ImageSpec, Registry, loopback_client, push, small_layers};

#[tokio::test]
async fn resolves_tags_digests_and_platforms_from_a_real_registry() {
    let reg = Registry::start(None).await;
    let layers = small_layers();
    let single = push(&reg, "team/app", "v1", &[ImageSpec::amd64(&layers)], None);
    let multi = push(
        &reg,
        "team/multi",
        "v1",
        &[
            ImageSpec::amd64(&layers[..1]),
            ImageSpec {
                layers: &layers[1..],
                os: "linux",
                architecture: "arm64",
                config: json!({}),
            },
        ],
        None,
    );
    let c = loopback_client(&reg);
    let amd64 = Platform::parse("linux/amd64").unwrap();
    // by tag
    let r = Reference::parse(&format!("{}/team/app:v1", reg.addr)).unwrap();
    let mut s = c.session(&r, None);
    let got = s.resolve(&r, &amd64).await.unwrap();
    assert_eq!(got.manifest_digest.as_str(), single.manifests[0].0);
    assert_eq!(got.config_digest.as_str(), single.manifests[0].1);
    let layer_digests: Vec<String> = got.layers.iter().map(|l| l.digest.to_string()).collect();
    assert_eq!(layer_digests, single.manifests[0].2);
    let config = s.config(&got).await.unwrap();
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"][1], layers[1].diff_id.as_str());
    // by digest
    let r = Reference::parse(&format!("{}/team/app@{}", reg.addr, single.digest)).unwrap();
    let got = c.session(&r, None).resolve(&r, &amd64).await.unwrap();
    assert_eq!(got.manifest_digest.as_str(), single.digest);
    // an index: the platform's manifest is chosen
    let r = Reference::parse(&format!("{}/team/multi:v1", reg.addr)).unwrap();
    let arm = c
        .session(&r, None)
        .resolve(&r, &Platform::parse("linux/arm64").unwrap())
        .await
        .unwrap();
    assert_eq!(arm.manifest_digest.as_str(), multi.manifests[1].0);
    assert_eq!(arm.platform, "linux/arm64");
    let err = c
        .session(&r, None)
        .resolve(&r, &Platform::parse("linux/riscv64").unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RegistryError::PlatformNotFound {
            wanted: "linux/riscv64".into(),
            available: vec!["linux/amd64".into(), "linux/arm64".into()]
        }
    );
    // a missing tag says so
    let r = Reference::parse(&format!("{}/team/app:nope", reg.addr)).unwrap();
    let err = c.session(&r, None).resolve(&r, &amd64).await.unwrap_err();
    assert!(err.to_string().contains("no manifest nope"), "{err}");
    // loopback is refused unless allow-listed, before any request
    let r = Reference::parse(&format!("{}/team/app:v1", reg.addr)).unwrap();
    let err = RegistryClient::new(Fetcher::new(FetchPolicy::default()), vec![reg.addr.clone()])
        .session(&r, None)
        .resolve(&r, &amd64)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not allowed"), "{err}");
}

#[tokio::test]
async fn basic_auth_and_a_tampered_blob() {
    let login = ("ci", "s3cret+pass");
    let reg = Registry::start(Some(login)).await;
    let layers = small_layers();
    let pushed = push(&reg, "private/app", "v1", &[ImageSpec::amd64(&layers)], Some(login));
    let c = loopback_client(&reg);
    let amd64 = Platform::parse("linux/amd64").unwrap();
    let r = Reference::parse(&format!("{}/private/app:v1", reg.addr)).unwrap();
    let err = c.session(&r, None).resolve(&r, &amd64).await.unwrap_err();
    assert!(err.to_string().contains("refused access"), "{err}");
    let wrong = Login {
        username: "ci".into(),
        password: "wrong".into(),
    };
    let err = c.session(&r, Some(wrong)).resolve(&r, &amd64).await.unwrap_err();
    assert!(err.to_string().contains("refused access"), "{err}");
    assert!(!format!("{err:?}").contains("wrong"), "no password in errors: {err:?}");
    let good = Login {
        username: login.0.into(),
        password: login.1.into(),
    };
    let mut s = c.session(&r, Some(good));
    let got = s.resolve(&r, &amd64).await.unwrap();
    assert_eq!(got.manifest_digest.as_str(), pushed.digest);
    // the layers through the cache: a miss, then a hit without the network
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = BlobCache::open(cache_dir.path(), 1 << 30).unwrap();
    for l in &got.layers {
        let b = cache
            .get_or_fetch(
                &l.digest,
                l.size,
                async || s.blob(&l.digest).await.map_err(fetch_err),
                |_| {},
            )
            .await
            .unwrap();
        assert!(!b.hit);
    }
    // tamper with the first layer in the registry's storage: same length, other bytes
    let first = &got.layers[0];
    let file = reg.blob_file(first.digest.hex());
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let cold = BlobCache::open(fresh.path(), 1 << 30).unwrap();
    let err = cold
        .get_or_fetch(
            &first.digest,
            first.size,
            async || s.blob(&first.digest).await.map_err(fetch_err),
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CacheError::Mismatch { .. }), "{err}");
    assert_eq!(
        std::fs::read_dir(fresh.path().join("sha256")).unwrap().count(),
        0,
        "nothing cached"
    );
    // the warm cache still has the good copy
    let b = cache
        .get_or_fetch(
            &first.digest,
            first.size,
            async || -> Result<futures::stream::Empty<_>, _> { panic!("no network on a hit") },
            |_| {},
        )
        .await
        .unwrap();
    assert!(b.hit);
}

fn fetch_err(e: RegistryError) -> strata_providers::FetchError {
    strata_providers::FetchError::Body(e.to_string())
}
