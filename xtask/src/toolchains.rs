//! The toolchain pins. They live in the workspace root `Cargo.toml` under
//! `[workspace.metadata.sipxdp]` so that there is exactly one place to change them; xtask reads
//! them from there with a tiny line parser (no `toml` crate: xtask has no dependencies).

use std::fs;
use std::path::Path;

use crate::error::{Error, Result};

/// The table in the root `Cargo.toml` that holds the pins.
const SECTION: &str = "workspace.metadata.sipxdp";

/// The versions every build uses.
#[derive(Debug, PartialEq, Eq)]
pub struct Toolchains {
    /// Rust toolchain for everything that runs on the host (`cargo +<userspace> ...`).
    pub userspace: String,
    /// Nightly that builds the kernel program; its LLVM major must equal `llvm_major`.
    pub ebpf: String,
    /// The `bpf-linker` release to install.
    pub bpf_linker_version: String,
    /// LLVM major version `bpf-linker` is built against (selects `llvm-<major>-dev`).
    pub llvm_major: String,
}

impl Toolchains {
    /// Reads the pins from `<root>/Cargo.toml`.
    pub fn load(root: &Path) -> Result<Self> {
        let manifest = root.join("Cargo.toml");
        let text = fs::read_to_string(&manifest)
            .map_err(|e| Error::failed(format!("cannot read {}: {e}", manifest.display())))?;
        Self::parse(&text).map_err(|e| e.context(manifest.display()))
    }

    /// Extracts the pins from the text of a `Cargo.toml`. Only `key = "string"` lines inside
    /// `[workspace.metadata.sipxdp]` are looked at; a missing key is an error.
    fn parse(text: &str) -> Result<Self> {
        let mut in_section = false;
        let mut userspace = None;
        let mut ebpf = None;
        let mut bpf_linker_version = None;
        let mut llvm_major = None;
        for line in text.lines().map(str::trim) {
            if let Some(header) = line.strip_prefix('[') {
                in_section = header
                    .split(']')
                    .next()
                    .is_some_and(|name| name.trim() == SECTION);
                continue;
            }
            if !in_section || line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let slot = match key.trim() {
                "userspace-toolchain" => &mut userspace,
                "ebpf-toolchain" => &mut ebpf,
                "bpf-linker-version" => &mut bpf_linker_version,
                "llvm-major" => &mut llvm_major,
                _ => continue,
            };
            *slot = Some(parse_string(value).ok_or_else(|| {
                Error::failed(format!(
                    "[{SECTION}] {}: expected a quoted string, found `{}`",
                    key.trim(),
                    value.trim()
                ))
            })?);
        }
        let require = |value: Option<String>, key: &str| {
            value.ok_or_else(|| Error::failed(format!("[{SECTION}] lacks the key `{key}`")))
        };
        let pins = Toolchains {
            userspace: require(userspace, "userspace-toolchain")?,
            ebpf: require(ebpf, "ebpf-toolchain")?,
            bpf_linker_version: require(bpf_linker_version, "bpf-linker-version")?,
            llvm_major: require(llvm_major, "llvm-major")?,
        };
        if pins.llvm_major.is_empty() || !pins.llvm_major.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::failed(format!(
                "[{SECTION}] llvm-major must be a number, found `{}`",
                pins.llvm_major
            )));
        }
        Ok(pins)
    }
}

/// The contents of a basic TOML string `"..."` (no escapes), ignoring a trailing comment.
fn parse_string(value: &str) -> Option<String> {
    let rest = value.trim().strip_prefix('"')?;
    let (content, _) = rest.split_once('"')?;
    (!content.contains('\\')).then(|| content.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
[workspace]
members = ["xtask"]

[workspace.metadata.other]
userspace-toolchain = "wrong"

[workspace.metadata.sipxdp]
# comment
userspace-toolchain = "1.98.0"
ebpf-toolchain = "nightly-2026-07-06"  # trailing comment
bpf-linker-version="0.13.0"
llvm-major = "22"

[workspace.dependencies]
llvm-major = "wrong"
"#;

    #[test]
    fn reads_the_pins_from_their_section_only() {
        let pins = Toolchains::parse(MANIFEST).expect("valid manifest");
        assert_eq!(
            pins,
            Toolchains {
                userspace: "1.98.0".into(),
                ebpf: "nightly-2026-07-06".into(),
                bpf_linker_version: "0.13.0".into(),
                llvm_major: "22".into(),
            }
        );
    }

    #[test]
    fn names_a_missing_key() {
        let text = MANIFEST.replace("llvm-major = \"22\"", "");
        let err = Toolchains::parse(&text).expect_err("key is missing");
        assert!(err.to_string().contains("`llvm-major`"), "{err}");
    }

    #[test]
    fn rejects_an_unquoted_value() {
        let text = MANIFEST.replace("\"0.13.0\"", "0.13.0");
        assert!(Toolchains::parse(&text).is_err());
    }

    #[test]
    fn the_workspace_manifest_has_the_pins() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        Toolchains::load(&root).expect("root Cargo.toml holds [workspace.metadata.sipxdp]");
    }
}
