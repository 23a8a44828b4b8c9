//! Arbitrary bytes as two container layers applied in order by the flattener. Must never panic
//! and must never write outside the staging tree, whatever the layers' names, links and
//! whiteouts say.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use strata_providers::archive::ArchiveLimits;
use strata_providers::flatten::{FlattenLimits, Flattener};

fn walk(dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).expect("list") {
        let e = e.expect("entry");
        let md = e.path().symlink_metadata().expect("lstat");
        out.push(e.path().display().to_string());
        if md.is_dir() {
            walk(&e.path(), out);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().expect("tempdir");
    let outside = tmp.path().join("outside");
    let root = tmp.path().join("tree");
    std::fs::create_dir(&outside).expect("outside");
    std::fs::create_dir(&root).expect("tree");
    let (a, b) = data.split_at(data.len() / 2);
    let limits = FlattenLimits {
        layer: ArchiveLimits { max_unpacked_bytes: 4 << 20, max_entries: 512, max_path_len: 1024 },
        max_tree_bytes: 4 << 20,
    };
    let mut f = Flattener::new(&root, limits);
    if f.apply_from(a).is_ok() {
        let _ = f.apply_from(b);
    }
    let _ = f.finish();
    let mut seen = Vec::new();
    walk(&outside, &mut seen);
    assert!(seen.is_empty(), "written outside the tree: {seen:?}");
    let top: Vec<_> = std::fs::read_dir(tmp.path()).expect("list").map(|e| e.expect("e").file_name()).collect();
    assert_eq!(top.len(), 2, "nothing beside the tree: {top:?}");
});
