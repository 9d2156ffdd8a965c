//! Builds the kernel program (`sipxdp-ebpf`) with the pinned eBPF nightly and places the
//! object in `OUT_DIR`, from where `src/` embeds it with `include_bytes_aligned!`.
use anyhow::{Context as _, anyhow};

/// The nightly that builds the kernel program. It must use the same LLVM major version as
/// `bpf-linker` (LLVM 22); `cargo xtask setup` installs exactly this toolchain.
const EBPF_TOOLCHAIN: &str = "nightly-2026-07-06";

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("reading workspace metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|package| package.name.as_str() == "sipxdp-ebpf")
        .ok_or_else(|| anyhow!("package sipxdp-ebpf is not in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", ebpf.manifest_path))?;
    // The kernel program also depends on the shared crate: rebuild when it changes.
    println!("cargo::rerun-if-changed={}/../sipxdp-common/src", root_dir);
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(EBPF_TOOLCHAIN),
    )
}
