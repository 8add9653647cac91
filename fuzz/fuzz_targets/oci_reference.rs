//! OCI references, digests and semver ranges from any text: parsed or refused, never a panic.
#![no_main]

use landform::source::digest::Digest;
use landform::source::oci::{Repository, SemverRange};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(repo) = Repository::parse(text) {
        // What parsed prints as a URL that parses to the same repository.
        let again = Repository::parse(&repo.url()).expect("a printed URL parses");
        assert_eq!(again.url(), repo.url());
    }
    let _ = Repository::parse_pinned(text);
    if let Ok(d) = text.parse::<Digest>() {
        assert_eq!(d.to_string().parse::<Digest>().expect("round trip").to_string(), d.to_string());
    }
    let _ = SemverRange::parse(text);
});
