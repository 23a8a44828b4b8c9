//! Arbitrary bytes as a `docker save` archive through the loader. Must never panic and must only
//! write inside its staging directory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_providers::archive::ArchiveLimits;
use strata_providers::docker_archive::load;

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().expect("tempdir");
    let archive = tmp.path().join("archive.tar");
    let staging = tmp.path().join("staging");
    std::fs::write(&archive, data).expect("write");
    std::fs::create_dir(&staging).expect("staging");
    let limits = ArchiveLimits { max_unpacked_bytes: 4 << 20, max_entries: 512, max_path_len: 1024 };
    if let Ok(images) = load(&archive, &staging, &limits) {
        for img in images {
            assert!(!img.layers.is_empty() || img.diff_ids.is_empty());
            for l in &img.layers {
                assert!(l.starts_with(&staging), "{l:?}");
            }
        }
    }
    let top: Vec<_> = std::fs::read_dir(tmp.path()).expect("list").map(|e| e.expect("e").file_name()).collect();
    assert_eq!(top.len(), 2, "nothing beside the staging directory: {top:?}");
});
