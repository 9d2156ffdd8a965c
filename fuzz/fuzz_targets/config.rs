//! The configuration parser on arbitrary text: never a panic; a problem always names a
//! place in the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipxdp::{config::parse, test_support::Machine};

fuzz_target!(|text: &str| {
    if let Err(errors) = parse(text, "fuzz.toml", &Machine) {
        assert!(errors.to_string().contains("fuzz.toml"));
    }
});
