//! Runs as the only program of the virtual machine that `cargo xtask vm-test` boots on
//! another kernel (Debian 12's 6.1): loads the real program (the verifier accepts it or
//! not), checks a frame with `BPF_PROG_TEST_RUN`, then attaches the program to a veth
//! pair that the VM's init made (`vm0` ↔ `vm1`) and forwards a stream of INVITEs sent
//! into `vm0` back out to their backends' MACs. Prints `VMCHECK PASS` or
//! `VMCHECK FAIL: …`, which the host reads from the serial console.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use sipxdp::{config::Environment as _, dataplane::XdpMode};
use sipxdp_common::maps::Backend;
use sipxdp_tests::{
    fixture::{self, BACKENDS, Loaded, XDP_TX, backend_mac},
    frames::{FrameSpec, VIP, client_address, udp_frame},
    inject::PacketSocket,
    sipgen::{Call, Rng},
};

/// INVITEs in the forwarded stream, sent in windows of `WINDOW`.
const STREAM: usize = 1_000;
const WINDOW: usize = 50;
/// The interface the program attaches to, and its peer, where the stream enters and
/// the forwarded frames come back.
const ATTACHED: &str = "vm0";
const PEER: &str = "vm1";

/// iproute2's `ip`, renamed: an `ip` binary named `ipX` runs its `X` command.
const IP: &str = "/bin/lab-ip";
/// The veth driver, a module in Debian's kernels.
const VETH_MODULE: &str = "/modules/veth.ko";

fn main() {
    // As the VM's init (PID 1) it first sets up the little it needs, and powers the VM
    // off at the end, whatever happened.
    let init = std::process::id() == 1;
    let result = if init {
        boot().and_then(|()| check())
    } else {
        check()
    };
    match result {
        Ok(()) => println!("VMCHECK PASS"),
        Err(error) => println!("VMCHECK FAIL: {error:#}"),
    }
    if init {
        power_off();
    }
}

/// What an init does before the check: file systems, the veth driver, the veth pair.
fn boot() -> Result<()> {
    for (source, target, kind) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("bpf", "/sys/fs/bpf", "bpf"),
    ] {
        mount(source, target, kind)?;
    }
    load_module(VETH_MODULE)?;
    for args in [
        &["link", "set", "lo", "up"][..],
        &[
            "link", "add", ATTACHED, "type", "veth", "peer", "name", PEER,
        ],
        &["link", "set", ATTACHED, "up"],
        &["link", "set", PEER, "up"],
    ] {
        let status = std::process::Command::new(IP).args(args).status()?;
        ensure!(status.success(), "ip {}: {status}", args.join(" "));
    }
    Ok(())
}

fn mount(source: &str, target: &str, kind: &str) -> Result<()> {
    let text = |value: &str| std::ffi::CString::new(value).context("a path without NUL");
    let (source_c, target_c, kind_c) = (text(source)?, text(target)?, text(kind)?);
    // SAFETY: NUL-terminated strings that outlive the call; no data argument.
    let result = unsafe {
        libc::mount(
            source_c.as_ptr(),
            target_c.as_ptr(),
            kind_c.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    ensure!(
        result == 0,
        "mounting {kind} on {target}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

fn load_module(path: &str) -> Result<()> {
    let module = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
    let no_parameters = c"";
    // SAFETY: an open module file and an empty parameter string.
    let result = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            std::os::fd::AsRawFd::as_raw_fd(&module),
            no_parameters.as_ptr(),
            0,
        )
    };
    ensure!(
        result == 0,
        "loading {path}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

fn power_off() -> ! {
    // SAFETY: flushing and powering off the VM this program is the init of.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    // Unreachable unless the reboot call failed; an init must not return.
    loop {
        std::thread::park();
    }
}

fn check() -> Result<()> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("kernel {}", release.trim());
    let mut program =
        Loaded::new(&fixture::stateless(7), 0).context("loading the program (the verifier)")?;
    let verified = program.dataplane.verified_instructions()?;
    println!("verifier: {verified:?} instructions processed");

    let mut rng = Rng::new(0x61);
    let client = SocketAddr::new(client_address(IpAddr::V4(VIP)), 5062);
    let vip = SocketAddr::new(IpAddr::V4(VIP), 5060);
    let call = Call::random(&mut rng, 20);
    let frame = udp_frame(&FrameSpec::default(), &call.invite(client, vip, 300));
    let output = program.dataplane.test_run(&frame)?;
    let owner = program.owner(call.call_id.as_bytes());
    ensure!(
        output.action == XDP_TX && output.frame[..6] == backend_mac(owner),
        "BPF_PROG_TEST_RUN: action {} to {:02x?}, expected XDP_TX to backend {owner}",
        output.action,
        &output.frame[..6]
    );
    println!("BPF_PROG_TEST_RUN: an INVITE goes to its backend");

    forward_stream(&mut program, &mut rng, client, vip)
}

/// Attaches to `vm0` with every backend behind it, sends `STREAM` INVITEs into it from
/// `vm1`, and checks that each comes back out to its Call-ID's backend.
fn forward_stream(
    program: &mut Loaded,
    rng: &mut Rng,
    client: SocketAddr,
    vip: SocketAddr,
) -> Result<()> {
    let ifindex = sipxdp::config::SystemEnvironment
        .interface_index(ATTACHED)
        .context("no vm0: the VM's init makes the veth pair")?;
    for slot in 0..BACKENDS {
        let backend = Backend {
            ifindex,
            ..fixture::loopback_backend(slot)
        };
        program.dataplane.set_backend(slot, &backend)?;
    }
    program.dataplane.attach(ATTACHED, XdpMode::Skb, None)?;
    let peer = PacketSocket::bind(PEER)?;
    let mut arrived = 0;
    // In windows, each received before the next is sent: the capture socket's buffer
    // holds about a hundred frames.
    for _ in 0..STREAM / WINDOW {
        let mut expected: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        for _ in 0..WINDOW {
            let call = Call::random(rng, 20);
            let frame = udp_frame(&FrameSpec::default(), &call.invite(client, vip, 300));
            let owner = program.owner(call.call_id.as_bytes());
            let mut forwarded = frame.clone();
            forwarded[..6].copy_from_slice(&backend_mac(owner));
            forwarded[6..12].copy_from_slice(&fixture::loopback_backend(owner).source_mac);
            *expected.entry(forwarded).or_default() += 1;
            peer.send(&frame)?;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut window = 0;
        while window < WINDOW {
            let Some(frame) = peer.receive(deadline)? else {
                break;
            };
            if let Some(count) = expected.get_mut(&frame)
                && *count > 0
            {
                *count -= 1;
                window += 1;
            }
        }
        arrived += window;
    }
    ensure!(
        arrived == STREAM,
        "{arrived} of {STREAM} INVITEs came back out of {ATTACHED} to their backends"
    );
    println!("attached to {ATTACHED} (generic XDP): {arrived} INVITEs forwarded to their backends");
    Ok(())
}
