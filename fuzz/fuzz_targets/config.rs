//! The configuration parser on arbitrary text: never a panic; a problem always names a
//! place in the file.
#![no_main]

use std::{io, path::Path};

use libfuzzer_sys::fuzz_target;
use sipxdp::config::{Environment, parse};

/// A machine where every interface exists and the file is root's, mode 0644.
struct Machine;

impl Environment for Machine {
    fn interface_index(&self, _name: &str) -> Option<u32> {
        Some(2)
    }

    fn file_owner_and_mode(&self, _path: &Path) -> io::Result<(u32, u32)> {
        Ok((0, 0o100_644))
    }

    fn current_uid(&self) -> u32 {
        0
    }
}

fuzz_target!(|text: &str| {
    if let Err(errors) = parse(text, "fuzz.toml", &Machine) {
        assert!(errors.to_string().contains("fuzz.toml"));
    }
});
