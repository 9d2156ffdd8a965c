//! `cargo xtask setup`: installs what a fresh Debian 12 machine (CI: root, only the stable
//! Rust toolchain preinstalled) lacks to build and test sipxdp. Every piece is checked first
//! and skipped when present, so running setup again does nothing; the first failure stops
//! setup with a message naming the piece and the command that failed.

use std::env;
use std::fs;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::run::Cmd;
use crate::toolchains::Toolchains;
use crate::workspace::Workspace;

/// Debian packages the builds, tests, labs and benchmarks use, besides `llvm-<major>-dev`
/// (which depends on the pins): networking tools, the real SIP peers and scrapers the tests
/// talk to, and the tools for inspecting and measuring the kernel program.
const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",
    "sip-tester",
    "kamailio",
    "prometheus",
    "bpftool",
    "tshark",
    "tmux",
    "iputils-ping",
    "ethtool",
    "hyperfine",
    "linux-perf",
    "qemu-system-x86",
    "python3",
    // `systemd-analyze verify` checks the shipped unit.
    "systemd",
    // `setpriv` runs the control-socket test as another user.
    "util-linux",
];

/// Services some packages start on installation. They would occupy the ports tests and labs
/// use, and the tests start their own instances, so they are disabled right after install.
const SERVICES_TO_DISABLE: &[(&str, &[&str])] = &[
    ("prometheus", &["prometheus", "prometheus-node-exporter"]),
    ("kamailio", &["kamailio"]),
];

/// Installs every missing piece: Debian packages, the two pinned Rust toolchains with their
/// components, and `bpf-linker`.
pub fn setup(ws: &Workspace) -> Result<()> {
    println!("==> setup");
    ensure_cargo_bin_on_path()?;
    debian_packages(&ws.pins)?;
    rust_toolchain(&ws.pins.userspace, &["clippy", "rustfmt"])?;
    rust_toolchain(&ws.pins.ebpf, &["rust-src"])?;
    bpf_linker(&ws.pins)?;
    bpf_filesystem()
}

/// Where sipxdp pins its program and maps; systemd mounts it, a bare machine may not.
const BPF_FS: &str = "/sys/fs/bpf";

/// Mounts the BPF filesystem at [`BPF_FS`] when it is not mounted there (as root only:
/// without root there is nothing the tests that pin could do anyway).
fn bpf_filesystem() -> Result<()> {
    let mounts = fs::read_to_string("/proc/self/mounts")
        .map_err(|e| Error::failed(format!("cannot read /proc/self/mounts: {e}")))?;
    let mounted = mounts.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&BPF_FS) && fields.get(2) == Some(&"bpf")
    });
    if mounted || !is_root()? {
        return Ok(());
    }
    println!("--> mounting the BPF filesystem at {BPF_FS}");
    Cmd::new("mount")
        .args(["-t", "bpf", "bpf", BPF_FS])
        .run()
        .map_err(|e| Error::failed(format!("mounting the BPF filesystem: {e}")))
}

/// Whether xtask runs as root (effective uid 0), read from `/proc/self/status`.
pub fn is_root() -> Result<bool> {
    let status = fs::read_to_string("/proc/self/status")
        .map_err(|e| Error::failed(format!("cannot read /proc/self/status: {e}")))?;
    let effective_uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        .ok_or_else(|| Error::failed("/proc/self/status has no effective Uid"))?;
    Ok(effective_uid == "0")
}

/// Where `cargo install` and rustup put binaries: `$CARGO_HOME/bin`, or `~/.cargo/bin`.
fn cargo_bin_dir() -> Result<PathBuf> {
    let home = match env::var_os("CARGO_HOME") {
        Some(cargo_home) => PathBuf::from(cargo_home),
        None => env::home_dir()
            .ok_or_else(|| Error::failed("neither CARGO_HOME nor HOME is set"))?
            .join(".cargo"),
    };
    Ok(home.join("bin"))
}

/// Puts the cargo bin directory on xtask's own `PATH` (so every child inherits it): a fresh
/// shell may lack it, and `bpf-linker` and `cargo-fuzz` are installed there.
fn ensure_cargo_bin_on_path() -> Result<()> {
    let bin = cargo_bin_dir()?;
    let path = env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = env::split_paths(&path).collect();
    if dirs.contains(&bin) {
        println!("ok: {} on PATH", bin.display());
        return Ok(());
    }
    println!("adding {} to PATH ...", bin.display());
    dirs.push(bin);
    let joined =
        env::join_paths(dirs).map_err(|e| Error::failed(format!("cannot extend PATH: {e}")))?;
    // SAFETY: xtask is single-threaded; no other thread can read the environment meanwhile.
    unsafe { env::set_var("PATH", joined) };
    Ok(())
}

/// Whether `dpkg` reports `package` as installed.
fn dpkg_installed(package: &str) -> bool {
    Cmd::new("dpkg-query")
        .args(["--show", "--showformat=${Status}", package])
        .probe()
        .is_some_and(|status| status.trim() == "install ok installed")
}

/// Installs the missing Debian packages with apt (needs root) and disables the services that
/// the newly installed packages started.
fn debian_packages(pins: &Toolchains) -> Result<()> {
    let llvm_dev = format!("llvm-{}-dev", pins.llvm_major);
    let wanted = std::iter::once(llvm_dev.as_str()).chain(DEBIAN_PACKAGES.iter().copied());
    let mut missing = Vec::new();
    for package in wanted {
        if dpkg_installed(package) {
            println!("ok: Debian package {package} present");
        } else {
            missing.push(package);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root()? {
        return Err(Error::failed(format!(
            "Debian packages missing: {list}; installing them needs root \
             (run `cargo xtask setup` as root, or `apt-get install {list}`)"
        )));
    }
    println!("installing Debian packages {list} ...");
    let failed = |e: Error| e.context(format!("cannot install Debian packages {list}"));
    Cmd::new("apt-get").arg("update").run().map_err(failed)?;
    Cmd::new("apt-get")
        // tshark asks whether non-root users may capture; take the default, ask nothing.
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .run()
        .map_err(failed)?;
    for (package, services) in SERVICES_TO_DISABLE {
        if missing.contains(package) {
            // One unit per call: a unit that does not exist must not keep the others running.
            // Without systemd (containers) there is nothing to stop, so failures are ignored.
            for service in *services {
                Cmd::new("systemctl")
                    .args(["disable", "--now", service])
                    .run_ignoring_failure();
            }
        }
    }
    Ok(())
}

/// Whether `name` is `wanted`, possibly followed by a host triple as rustup prints it
/// (`1.98.0-x86_64-unknown-linux-gnu`, `clippy-x86_64-unknown-linux-gnu`). A triple starts
/// with its architecture, never a digit, so `nightly` does not match `nightly-2026-07-06-...`.
fn is_named(name: &str, wanted: &str) -> bool {
    match name.strip_prefix(wanted) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('-')
            .and_then(|triple| triple.chars().next())
            .is_some_and(|c| c.is_ascii_alphabetic()),
        None => false,
    }
}

/// Installs the rustup toolchain `name` with `components`, or adds the components it lacks.
/// (rustup here never installs a toolchain by itself, so this must be explicit.)
fn rust_toolchain(name: &str, components: &[&str]) -> Result<()> {
    let what = format!("Rust toolchain {name} with {}", components.join(", "));
    let installed = Cmd::new("rustup")
        .args(["toolchain", "list"])
        .probe()
        .ok_or_else(|| {
            Error::failed(format!(
                "cannot set up {what}: `rustup toolchain list` failed; \
                 is rustup (https://rustup.rs) installed?"
            ))
        })?;
    let has_toolchain = installed
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .any(|toolchain| is_named(toolchain, name));
    if !has_toolchain {
        println!("installing {what} ...");
        return Cmd::new("rustup")
            .args(["toolchain", "install", name, "--profile", "minimal"])
            // rustup itself is the machine's business, not the project's: leave it as it is.
            .arg("--no-self-update")
            .args(["--component", &components.join(",")])
            .run()
            .map_err(|e| e.context(format!("cannot install {what}")));
    }
    let present = Cmd::new("rustup")
        .args(["component", "list", "--toolchain", name, "--installed"])
        .probe()
        .unwrap_or_default();
    let missing: Vec<&str> = components
        .iter()
        .copied()
        .filter(|component| !present.lines().any(|line| is_named(line.trim(), component)))
        .collect();
    if missing.is_empty() {
        println!("ok: {what} present");
        return Ok(());
    }
    println!(
        "installing {} into Rust toolchain {name} ...",
        missing.join(", ")
    );
    Cmd::new("rustup")
        .args(["component", "add", "--toolchain", name])
        .args(&missing)
        .run()
        .map_err(|e| e.context(format!("cannot install {what}")))
}

/// The version `bpf-linker --version` reports (`bpf-linker 0.13.0`), if it runs at all.
fn bpf_linker_version() -> Option<String> {
    let output = Cmd::new("bpf-linker").arg("--version").probe()?;
    output.split_whitespace().nth(1).map(str::to_owned)
}

/// `cargo +<toolchain> install ...`, run outside the workspace so that the workspace's
/// `.cargo/config.toml` cannot change how a published tool is built.
pub fn cargo_install(toolchain: &str) -> Cmd {
    Cmd::new("cargo")
        .arg(format!("+{toolchain}"))
        .arg("install")
        .current_dir(&env::temp_dir())
}

/// Builds the pinned `bpf-linker` against the pinned LLVM (`llvm-<major>-dev` from apt), with
/// the pinned userspace toolchain so the build does not depend on the host's stable Rust.
fn bpf_linker(pins: &Toolchains) -> Result<()> {
    let version = &pins.bpf_linker_version;
    let what = format!("bpf-linker {version}");
    match bpf_linker_version() {
        Some(found) if found == *version => {
            println!("ok: {what} present");
            return Ok(());
        }
        Some(found) => println!("installing {what} (found bpf-linker {found}) ..."),
        None => println!("installing {what} ..."),
    }
    let llvm = PathBuf::from(format!("/usr/lib/llvm-{}", pins.llvm_major));
    let path = env::var_os("PATH").unwrap_or_default();
    let path = env::join_paths(std::iter::once(llvm.join("bin")).chain(env::split_paths(&path)))
        .map_err(|e| Error::failed(format!("cannot extend PATH: {e}")))?;
    cargo_install(&pins.userspace)
        .args(["bpf-linker", "--version", version, "--locked"])
        // Replace whatever other version is installed.
        .arg("--force")
        .args(["--no-default-features", "--features"])
        .arg(format!("llvm-{}", pins.llvm_major))
        // Without LLVM_PREFIX the link fails with "unable to find library -lLLVM".
        .env("LLVM_PREFIX", &llvm)
        .env("PATH", path)
        .run()
        .map_err(|e| e.context(format!("cannot install {what}")))?;
    match bpf_linker_version() {
        Some(found) if found == *version => Ok(()),
        found => Err(Error::failed(format!(
            "installed {what}, but `bpf-linker --version` reports {}; \
             another bpf-linker comes first on PATH",
            found.as_deref().unwrap_or("nothing")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_names_with_and_without_host_triple() {
        assert!(is_named("1.98.0-x86_64-unknown-linux-gnu", "1.98.0"));
        assert!(is_named("nightly-2026-07-06", "nightly-2026-07-06"));
        assert!(is_named("rust-src", "rust-src"));
        assert!(is_named("clippy-x86_64-unknown-linux-gnu", "clippy"));
        assert!(!is_named(
            "nightly-2026-07-06-x86_64-unknown-linux-gnu",
            "nightly"
        ));
        assert!(!is_named("1.98.0-x86_64-unknown-linux-gnu", "1.98"));
        assert!(!is_named("rust-std-x86_64-unknown-linux-gnu", "rust-src"));
        assert!(!is_named("rustfmt-x86_64-unknown-linux-gnu", "rust"));
    }
}
