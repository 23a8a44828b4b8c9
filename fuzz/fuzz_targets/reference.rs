//! Arbitrary strings as image references and Docker Engine API names. Must never panic, and a
//! reference that parses must print to a string that parses back to the same reference.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_domain::reference::{ImageLookup, Platform, Reference};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(r) = Reference::parse(s) {
        let printed = r.to_string();
        let again = Reference::parse(&printed).expect("a printed reference parses");
        assert_eq!(again, r, "{s:?} -> {printed:?}");
        let familiar = r.familiar();
        assert_eq!(Reference::parse(&familiar).expect("the familiar form parses"), r, "{familiar:?}");
        let _ = r.with_default_tag().default_image_name();
    }
    let _ = ImageLookup::parse(s);
    let _ = Platform::parse(s);
});
