//! Arbitrary bytes as a staged kernel bundle, through the real extractor with small caps.
//! Must never panic, must only ever create `vmlinux`, `initrd.img` and `modules.tar` in its own
//! output directory, must leave that directory empty on every refusal, and a repacked
//! `modules.tar` must itself pass the hardened reader.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use strata_domain::image::Architecture;
use strata_providers::archive::kernel_bundle::{BundleLimits, bundle_policy, extract_kernel_bundle};
use strata_providers::archive::{ArchiveError, Entry, read_archive};

fn names(dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bundle = tmp.path().join("bundle");
    let out = tmp.path().join("out");
    std::fs::write(&bundle, data).expect("write bundle");
    std::fs::create_dir(&out).expect("out dir");
    let limits = BundleLimits {
        max_bundle_bytes: 1 << 20,
        max_unpacked_bytes: 4 << 20,
        max_entries: 256,
        max_path_len: 256,
    };
    let result = extract_kernel_bundle(&bundle, None, Architecture::X86_64, &out, &limits);
    let before = BTreeSet::from(["bundle".to_owned(), "out".to_owned()]);
    assert_eq!(names(tmp.path()), before, "nothing written beside the output directory");
    let produced = names(&out);
    match result {
        Err(e) => {
            assert!(produced.is_empty(), "refused bundle left {produced:?}: {e}");
            if let Some(d) = e.to_domain() {
                assert!(!d.to_string().is_empty());
            }
        }
        Ok(b) => {
            let allowed = BTreeSet::from(["vmlinux".into(), "initrd.img".into(), "modules.tar".into()]);
            assert!(produced.is_subset(&allowed), "{produced:?}");
            assert_eq!(
                std::fs::metadata(&b.vmlinux.path).expect("vmlinux").len(),
                b.vmlinux.size
            );
            if let Some(m) = &b.modules {
                let mut count = 0u64;
                let mut visit = |e: &mut Entry<'_>| -> Result<(), ArchiveError> {
                    count += 1;
                    e.copy_to(&mut std::io::sink())?;
                    Ok(())
                };
                read_archive(&m.path, &bundle_policy(&limits), &mut visit).expect("repacked modules.tar reads back");
            }
        }
    }
});
