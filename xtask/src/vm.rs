//! `cargo xtask vm-test`: the program on an older kernel. Boots Debian 12's kernel (6.1,
//! the kernel of `linux-image-amd64` in the machine's apt sources) under qemu with a
//! small initramfs whose init is `sipxdp-vmcheck`: it loads the program (the verifier of
//! that kernel accepts it or not), checks a frame with `BPF_PROG_TEST_RUN`, attaches the
//! program to a veth pair and forwards a stream through it. The serial console says
//! `VMCHECK PASS` or why not.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use crate::{
    error::{Error, Result},
    run::Cmd,
    setup::setup,
    tasks::stage,
    workspace::Workspace,
};

/// How long the VM may take, boot to power-off. Without hardware virtualisation qemu
/// emulates the CPU; the check takes about 15 s so.
const VM_SECONDS: u32 = 300;

/// `cargo xtask vm-test`.
pub fn vm_test(ws: &Workspace) -> Result<()> {
    setup(ws)?;
    let dir = ws.root.join("target/vm");
    let kernel = debian_kernel(&dir)?;
    stage(
        "build sipxdp-vmcheck",
        ws.cargo(&ws.pins.userspace).args([
            "build",
            "--release",
            "-p",
            "sipxdp-tests",
            "--bin",
            "sipxdp-vmcheck",
        ]),
    )?;
    let root = dir.join("root");
    initramfs_tree(
        &root,
        &ws.root.join("target/release/sipxdp-vmcheck"),
        &kernel,
    )?;
    let initramfs = dir.join("initramfs.cpio");
    write_newc(&root, &initramfs)?;
    let vmlinuz = find_file(&kernel.join("boot"), "vmlinuz-")?;
    let console = Cmd::new("timeout")
        .arg(VM_SECONDS.to_string())
        .args([
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-m",
            "1024",
        ])
        .args(["-smp", "1", "-nographic", "-no-reboot", "-kernel"])
        .arg(vmlinuz.to_string_lossy())
        .arg("-initrd")
        .arg(initramfs.to_string_lossy())
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        .read_stdout()
        .map_err(|e| e.context("running the VM"))?;
    // The console's first line starts with terminal control sequences: look for the
    // check's lines anywhere in a line.
    let report: Vec<&str> = console
        .lines()
        .filter_map(|line| {
            [
                "kernel ",
                "verifier:",
                "BPF_PROG_TEST_RUN",
                "attached",
                "VMCHECK",
            ]
            .iter()
            .find_map(|start| line.find(start).map(|at| &line[at..]))
        })
        .collect();
    for line in &report {
        println!("vm: {line}");
    }
    if report.contains(&"VMCHECK PASS") {
        Ok(())
    } else {
        Err(Error::failed(format!(
            "the check in the VM did not pass; its console:\n{console}"
        )))
    }
}

/// Downloads and unpacks the kernel package `linux-image-amd64` depends on, once.
fn debian_kernel(dir: &Path) -> Result<PathBuf> {
    let depends = Cmd::new("apt-cache")
        .args(["depends", "linux-image-amd64"])
        .read_stdout()?;
    let package = depends
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Depends: "))
        .find(|name| name.starts_with("linux-image-"))
        .ok_or_else(|| Error::failed("linux-image-amd64 depends on no linux-image package"))?
        .to_owned();
    let unpacked = dir.join(&package);
    if unpacked.join("boot").is_dir() {
        println!("ok: {package} unpacked in {}", unpacked.display());
        return Ok(unpacked);
    }
    fs::create_dir_all(dir).map_err(|e| io_failure("creating", dir, &e))?;
    Cmd::new("apt-get")
        .args(["download", &package])
        .current_dir(dir)
        .run()?;
    let deb = find_file(dir, &format!("{package}_"))?;
    Cmd::new("dpkg-deb")
        .arg("-x")
        .arg(deb.to_string_lossy())
        .arg(unpacked.to_string_lossy())
        .run()?;
    Ok(unpacked)
}

/// The first file in `dir` whose name starts with `prefix`.
fn find_file(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let entries = fs::read_dir(dir).map_err(|e| io_failure("reading", dir, &e))?;
    entries
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with(prefix))
        })
        .ok_or_else(|| Error::failed(format!("no {prefix}* in {}", dir.display())))
}

/// The VM's whole file system: `check` as `/init`, iproute2's `ip` as `/bin/lab-ip`,
/// the shared libraries both need, the veth module, and the mount points.
fn initramfs_tree(root: &Path, check: &Path, kernel: &Path) -> Result<()> {
    if root.exists() {
        fs::remove_dir_all(root).map_err(|e| io_failure("removing", root, &e))?;
    }
    for dir in ["proc", "sys", "bin", "modules"] {
        let path = root.join(dir);
        fs::create_dir_all(&path).map_err(|e| io_failure("creating", &path, &e))?;
    }
    copy_with_libraries(check, &root.join("init"), root)?;
    let ip = Cmd::new("sh").args(["-c", "command -v ip"]).read_stdout()?;
    copy_with_libraries(Path::new(ip.trim()), &root.join("bin/lab-ip"), root)?;
    let veth = find_module(&kernel.join("lib/modules"), "veth.ko")?;
    copy(&veth, &root.join("modules/veth.ko"))
}

/// Copies `binary` to `to` and every shared library `ldd` names to the same path under
/// `root`.
fn copy_with_libraries(binary: &Path, to: &Path, root: &Path) -> Result<()> {
    copy(binary, to)?;
    let libraries = Cmd::new("ldd")
        .arg(binary.to_string_lossy())
        .read_stdout()?;
    for library in libraries
        .split_whitespace()
        .filter(|word| word.starts_with('/'))
    {
        let inside = root.join(library.trim_start_matches('/'));
        if let Some(parent) = inside.parent() {
            fs::create_dir_all(parent).map_err(|e| io_failure("creating", parent, &e))?;
        }
        copy(Path::new(library), &inside)?;
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to).map_err(|e| io_failure("copying", from, &e))?;
    Ok(())
}

/// The module file `name` under `modules` (`lib/modules/VERSION/...`).
fn find_module(modules: &Path, name: &str) -> Result<PathBuf> {
    let mut pending = vec![modules.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| io_failure("reading", &dir, &e))?;
        for entry in entries.filter_map(|entry| entry.ok()) {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().is_some_and(|file| file == name) {
                return Ok(path);
            }
        }
    }
    Err(Error::failed(format!(
        "no {name} under {}",
        modules.display()
    )))
}

/// Writes the tree under `root` as a `newc` cpio archive, the initramfs format.
fn write_newc(root: &Path, archive: &Path) -> Result<()> {
    let mut out = Vec::new();
    let mut inode = 1;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let mut entries: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(|e| io_failure("reading", &dir, &e))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .collect();
        entries.sort();
        for path in entries {
            let metadata =
                fs::symlink_metadata(&path).map_err(|e| io_failure("reading", &path, &e))?;
            let name = path
                .strip_prefix(root)
                .map_err(|_| Error::failed("a path outside the tree"))?
                .to_string_lossy()
                .into_owned();
            let (data, links) = if metadata.is_dir() {
                pending.push(path.clone());
                (Vec::new(), 2)
            } else {
                (
                    fs::read(&path).map_err(|e| io_failure("reading", &path, &e))?,
                    1,
                )
            };
            newc_entry(&mut out, inode, metadata.mode(), links, &name, &data);
            inode += 1;
        }
    }
    newc_entry(&mut out, inode, 0, 1, "TRAILER!!!", &[]);
    let mut file = fs::File::create(archive).map_err(|e| io_failure("creating", archive, &e))?;
    file.write_all(&out)
        .map_err(|e| io_failure("writing", archive, &e))
}

/// One `newc` header (ASCII hex fields), the name and the data, each padded to 4 bytes.
fn newc_entry(out: &mut Vec<u8>, inode: u32, mode: u32, links: u32, name: &str, data: &[u8]) {
    let fields = [
        inode,
        mode,
        0,
        0,
        links,
        0,
        data.len() as u32,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for field in fields {
        out.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad(out);
    out.extend_from_slice(data);
    pad(out);
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn io_failure(doing: &str, path: &Path, error: &std::io::Error) -> Error {
    Error::failed(format!("{doing} {}: {error}", path.display()))
}
