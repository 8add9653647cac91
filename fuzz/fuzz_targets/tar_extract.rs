//! Extraction of any byte string: it never panics, and never writes outside its directory.
#![no_main]

use landform::source::archive::{Limits, extract};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let dest = dir.path().join("out");
    let limits = Limits {
        max_bytes: 1 << 20,
        max_files: 100,
    };
    let _ = extract(data, &dest, &limits);
    // Nothing may land beside the destination.
    for entry in std::fs::read_dir(dir.path()).expect("listing") {
        let name = entry.expect("an entry").file_name();
        assert_eq!(name, "out", "extraction wrote {name:?} outside its directory");
    }
});
