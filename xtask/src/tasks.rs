//! The subcommands that do work. Each one runs `setup` first, so a fresh clone needs nothing
//! but `cargo xtask <command>`.

use std::time::Instant;

use crate::error::Result;
use crate::run::Cmd;
use crate::setup::{cargo_install, is_root, setup};
use crate::workspace::Workspace;

/// The kernel crate. It only builds for `bpfel-unknown-none`; `sipxdp`'s build.rs builds it
/// (via aya-build), so host-target cargo commands leave it out.
const EBPF_CRATE: &str = "sipxdp-ebpf";

/// The package that holds the lab and benchmark binaries.
const TESTS_PACKAGE: &str = "sipxdp-tests";

/// Runs `cmd` under a banner, then reports how long it took and whether it passed.
pub fn stage(name: &str, cmd: Cmd) -> Result<()> {
    println!("\n==> {name}");
    let start = Instant::now();
    let result = cmd.run();
    let verdict = if result.is_ok() { "ok" } else { "FAILED" };
    println!("<== {name}: {verdict} in {:.1?}", start.elapsed());
    result
}

/// `cargo xtask build`.
pub fn build(ws: &Workspace) -> Result<()> {
    setup(ws)?;
    build_workspace(ws)
}

/// Release build of every host crate (the kernel program is built and embedded by the way).
fn build_workspace(ws: &Workspace) -> Result<()> {
    stage(
        "build",
        ws.cargo(&ws.pins.userspace).args([
            "build",
            "--release",
            "--workspace",
            "--exclude",
            EBPF_CRATE,
        ]),
    )
}

/// `cargo xtask test [args...]`: formatting, lints, then the test suite; `args` go to
/// `cargo test` (a filter, or `-- --nocapture`).
pub fn test(ws: &Workspace, args: &[String]) -> Result<()> {
    setup(ws)?;
    let toolchain = &ws.pins.userspace;
    stage("fmt", ws.cargo(toolchain).args(["fmt", "--all", "--check"]))?;
    stage(
        "clippy",
        ws.cargo(toolchain).args([
            "clippy",
            "--workspace",
            "--exclude",
            EBPF_CRATE,
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // The daemon tests run the real `sipxdp` binary.
    build_workspace(ws)?;
    let mut tests =
        ws.cargo(toolchain)
            .args(["test", "--workspace", "--exclude", EBPF_CRATE, "--release"]);
    if is_root()? {
        // As root every privileged test must run: missing kernel features fail, not skip.
        tests = tests.env("SIPXDP_REQUIRE_PRIVILEGES", "1");
    }
    stage("test", tests.args(args))?;
    // With the whole suite: a short bounded pass of every fuzz target (`cargo xtask fuzz
    // SECONDS` runs longer), and the program on Debian 12's kernel.
    if args.is_empty() {
        fuzz(ws, CI_FUZZ_SECONDS)?;
        crate::vm::vm_test(ws)?;
    }
    Ok(())
}

/// `cargo xtask lab <args...>` (and `demo`, which is `lab demo`): builds, then runs the lab.
pub fn lab(ws: &Workspace, args: &[String]) -> Result<()> {
    setup(ws)?;
    build_workspace(ws)?;
    run_tests_binary(ws, "sipxdp-lab", args)
}

/// `cargo xtask bench [args...]`.
pub fn bench(ws: &Workspace, args: &[String]) -> Result<()> {
    setup(ws)?;
    // `--e2e` runs the real `sipxdp` binary in the lab.
    build_workspace(ws)?;
    run_tests_binary(ws, "sipxdp-bench", args)
}

/// `cargo run --release` of a binary of the tests package, passing `args` through.
fn run_tests_binary(ws: &Workspace, binary: &str, args: &[String]) -> Result<()> {
    ws.cargo(&ws.pins.userspace)
        .args([
            "run",
            "--release",
            "-p",
            TESTS_PACKAGE,
            "--bin",
            binary,
            "--",
        ])
        .args(args)
        .run()
}

/// Seconds each fuzz target runs in `cargo xtask test`.
const CI_FUZZ_SECONDS: u64 = 10;

/// `cargo xtask fuzz [SECONDS]`: every cargo-fuzz target for `seconds` each, with the pinned
/// nightly (cargo-fuzz needs nightly sanitizer flags).
pub fn fuzz(ws: &Workspace, seconds: u64) -> Result<()> {
    setup(ws)?;
    if !ws.root.join("fuzz").is_dir() {
        println!("no fuzz targets yet");
        return Ok(());
    }
    let nightly = &ws.pins.ebpf;
    if ws
        .cargo(nightly)
        .args(["fuzz", "--version"])
        .probe()
        .is_some()
    {
        println!("ok: cargo-fuzz present");
    } else {
        println!("installing cargo-fuzz ...");
        cargo_install(nightly)
            .args(["cargo-fuzz", "--locked"])
            .run()
            .map_err(|e| e.context("cannot install cargo-fuzz"))?;
    }
    // The targets need the daemon's code, not its kernel program.
    let fuzz_cargo = || ws.cargo(nightly).env("AYA_BUILD_SKIP", "1");
    let list = fuzz_cargo().args(["fuzz", "list"]).read_stdout()?;
    let targets: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if targets.is_empty() {
        println!("no fuzz targets yet");
    }
    for target in targets {
        stage(
            &format!("fuzz {target}"),
            // New inputs go to the working corpus (not committed); the seeds are read.
            fuzz_cargo()
                .args(["fuzz", "run", target])
                .arg(corpus_dir(ws, target)?.to_string_lossy())
                .arg(ws.root.join("fuzz/seeds").join(target).to_string_lossy())
                .arg("--")
                .arg(format!("-max_total_time={seconds}")),
        )?;
    }
    Ok(())
}

/// The working corpus of fuzz target `target`, created if missing.
fn corpus_dir(ws: &Workspace, target: &str) -> Result<std::path::PathBuf> {
    let dir = ws.root.join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir)
        .map_err(|e| crate::error::Error::failed(format!("creating {}: {e}", dir.display())))?;
    Ok(dir)
}
