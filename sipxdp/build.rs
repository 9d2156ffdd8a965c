//! Builds the kernel program (`sipxdp-ebpf`) with the pinned eBPF nightly and places the
//! object in `OUT_DIR`, from where `src/dataplane.rs` embeds it.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("reading workspace metadata")?;
    // The pin lives in the workspace manifest, next to the others `cargo xtask setup`
    // installs; it must use the same LLVM major version as bpf-linker.
    let toolchain = metadata.workspace_metadata["sipxdp"]["ebpf-toolchain"]
        .as_str()
        .ok_or_else(|| anyhow!("[workspace.metadata.sipxdp] ebpf-toolchain is missing"))?
        .to_owned();
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
    println!("cargo::rerun-if-changed={root_dir}/../sipxdp-common/src");
    // `AYA_BUILD_SKIP=1` (lints, fuzzing) builds no program; an empty object stands in
    // for it so that the crate compiles, and loading it fails.
    let placeholder = std::path::Path::new(&std::env::var("OUT_DIR")?).join("sipxdp");
    if std::env::var_os("AYA_BUILD_SKIP").is_some() && !placeholder.exists() {
        std::fs::write(&placeholder, []).context("writing the placeholder object")?;
    }
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}
