//! Where the workspace is and which toolchains it pins. Every cargo command of xtask runs in
//! the workspace root, with a pinned toolchain named explicitly (`cargo +<toolchain>`), so the
//! stable toolchain that happens to run xtask never builds the project itself.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::run::Cmd;
use crate::toolchains::Toolchains;

/// The workspace xtask belongs to.
pub struct Workspace {
    /// The workspace root: the parent of xtask's own manifest directory.
    pub root: PathBuf,
    /// The pins from the root `Cargo.toml`.
    pub pins: Toolchains,
}

impl Workspace {
    /// Finds the root from the directory xtask was compiled in (so xtask works from any
    /// working directory) and reads the pins.
    pub fn locate() -> Result<Self> {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir
            .parent()
            .ok_or_else(|| {
                Error::failed(format!(
                    "{} has no parent directory",
                    manifest_dir.display()
                ))
            })?
            .to_path_buf();
        let pins = Toolchains::load(&root)?;
        Ok(Workspace { root, pins })
    }

    /// `cargo +<toolchain>`, run in the workspace root.
    pub fn cargo(&self, toolchain: &str) -> Cmd {
        Cmd::new("cargo")
            .arg(format!("+{toolchain}"))
            .current_dir(&self.root)
    }
}
