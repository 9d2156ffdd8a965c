//! Helpers shared by the crate's unit tests and the fuzz targets (feature `test-support`).

use std::{io, path::Path};

use crate::{
    config::Environment,
    plan::{self, BackendRuntime, Health},
};

/// A machine where every interface exists (index 2) and every file is root's, mode 0644.
pub struct Machine;

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

/// A backend with `health`, no admin override, reached on interface 2 (MACs 02:… to
/// 04:…).
pub fn reachable(health: Health) -> BackendRuntime {
    BackendRuntime {
        health,
        admin: None,
        path: Some(plan::Path {
            ifindex: 2,
            source_mac: [2; 6],
            destination_mac: [4; 6],
        }),
    }
}
