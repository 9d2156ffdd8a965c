//! `sipxdp-lab`: a throw-away lab on this machine, for the demo and for exploring.
//!
//! `sipxdp-lab demo [--keep] [--calls N]` builds a client, a balancer and three backends in
//! network namespaces, runs the real `sipxdp` daemon on the balancer, sends SIP dialogs to
//! the VIP, prints where every call went and what the daemon counted, and removes
//! everything. With `--keep` the lab stays up until Ctrl-C, with commands to look around.

use std::{
    net::{IpAddr, SocketAddr},
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use clap::{Parser, Subcommand};
use sipxdp_tests::{
    daemon_lab::{DaemonLab, counted, forwarded},
    delivery::dialogs_by_backend,
    remove_stale_namespaces,
    sipgen::{Call, Rng},
    wait_until,
};

#[derive(Parser, Debug)]
#[command(about = "A throw-away sipxdp lab in network namespaces")]
struct Cli {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Subcommand, Debug)]
enum LabCommand {
    /// Build the lab, run sipxdp, send SIP dialogs through it, report, tear down.
    Demo {
        /// Leave the lab up (until Ctrl-C) to look around.
        #[arg(long)]
        keep: bool,
        /// Number of calls (INVITE, ACK, BYE each), at most 100,000.
        #[arg(long, default_value_t = 3_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        calls: u32,
    },
    /// Remove namespaces left behind by lab runs whose process is gone.
    Clean,
}

/// Backend weights of the demo: the middle backend gets twice the share.
const WEIGHTS: [u32; 3] = [1, 2, 1];

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sipxdp-lab: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "the lab creates network namespaces and attaches XDP: run it as root"
    );
    match cli.command {
        LabCommand::Demo { keep, calls } => demo(keep, calls as usize),
        LabCommand::Clean => {
            for name in remove_stale_namespaces()? {
                println!("removed {name}");
            }
            Ok(())
        }
    }
}

fn demo(keep: bool, calls: usize) -> anyhow::Result<()> {
    println!("== building the lab: client, balancer, 3 backends on a bridge (198.51.100.0/26)");
    let mut lab = DaemonLab::start(&WEIGHTS)?;
    let vip = lab.vip();
    println!(
        "== sipxdp attached to {} in namespace {} (config {})",
        lab.lab().balancer().iface().name(),
        lab.lab().balancer().netns().name(),
        lab.config_path().display()
    );
    for (backend, weight) in lab.lab().backends().iter().zip(WEIGHTS) {
        println!(
            "   backend {} ({}), weight {weight}",
            backend.iface().ipv4(),
            backend.netns().name()
        );
    }

    let mut rng = Rng::new(0x00de_0de0);
    let dialogs: Vec<Call> = (0..calls).map(|_| Call::random(&mut rng, 25)).collect();
    let client = SocketAddr::new(IpAddr::V4(lab.lab().client().iface().ipv4()), 5070);
    println!(
        "== sending {calls} calls ({} messages) from {client} to the VIP {vip}",
        calls * 3
    );
    let started = Instant::now();
    let received = lab.send_dialogs(client, &dialogs)?;
    let elapsed = started.elapsed();

    let (backends_of, calls_of) = dialogs_by_backend(&received);
    let split = backends_of.values().filter(|set| set.len() > 1).count();
    let total_weight: u32 = WEIGHTS.iter().sum();
    println!(
        "== {} of {} messages arrived in {:.2} s; {} of {calls} calls stayed on one backend",
        received.len(),
        calls * 3,
        elapsed.as_secs_f64(),
        backends_of.len() - split
    );
    for (number, weight) in (1..).zip(WEIGHTS) {
        let got = calls_of.get(&number).copied().unwrap_or(0);
        println!(
            "   backend {number}: {got:>6} calls ({:5.1}%, weight share {:5.1}%)",
            100.0 * got as f64 / calls as f64,
            100.0 * f64::from(weight) / f64::from(total_weight)
        );
    }
    let client_seen = received.iter().all(|message| message.peer == client);
    println!("   backends saw the client's own address and port: {client_seen}");

    if keep {
        explore(&lab)?;
    }
    let (status, counters) = lab.stop_daemon()?;
    println!("== sipxdp stopped ({status}); its counters:\n{counters}");
    println!(
        "== the program stays pinned while no daemon runs; `sipxdp detach`: {}",
        lab.detach()?.trim()
    );
    ensure!(
        !lab.attached()?,
        "the program is still attached after sipxdp detach"
    );
    let forwarded = forwarded(&counters, "lab");
    let by_table = counted(&counters, "lab", "forwarded", "call_id").unwrap_or(0);
    println!(
        "== sipxdp forwarded {forwarded} messages in XDP ({by_table} placed by the Maglev \
         table, {} by their dialog); the client sent {}, the backends got {}",
        forwarded - by_table,
        calls * 3,
        received.len()
    );
    ensure!(
        forwarded == (calls * 3) as u64,
        "sipxdp's count differs from what was sent"
    );
    println!("== nothing left attached; removing the lab");
    ensure!(split == 0, "{split} calls were split across backends");
    ensure!(client_seen, "a backend saw another source than the client");
    Ok(())
}

/// Prints how to look around and waits for Ctrl-C.
fn explore(lab: &DaemonLab) -> anyhow::Result<()> {
    let balancer = lab.lab().balancer().netns().name();
    let client = lab.lab().client().netns().name();
    println!("== the lab stays up until Ctrl-C. To look around (as root):");
    println!("   ip netns list");
    println!("   ip -n {balancer} -d link show        # the attached XDP program");
    println!("   bpftool prog show name sipxdp");
    let binary = sipxdp_tests::daemon_lab::sipxdp_binary()?;
    let socket = lab.control_socket();
    println!(
        "   {} status --socket {}",
        binary.display(),
        socket.display()
    );
    println!(
        "   {} hash --socket {} lab SOME-CALL-ID",
        binary.display(),
        socket.display()
    );
    println!(
        "   sipp -sn uac -m 10 -i {} {}   # in: ip netns exec {client} ...",
        lab.lab().client().iface().ipv4(),
        lab.vip()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc_flag(flag)?;
    // Bounded: a forgotten lab goes away after a day.
    wait_until(Instant::now() + Duration::from_secs(24 * 60 * 60), || {
        stop.load(Ordering::Relaxed)
    });
    Ok(())
}

/// Sets `flag` on SIGINT instead of dying, so the lab is torn down.
fn ctrlc_flag(flag: Arc<AtomicBool>) -> anyhow::Result<()> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    extern "C" fn on_interrupt(_: libc::c_int) {
        if let Some(flag) = FLAG.get() {
            flag.store(true, Ordering::Relaxed);
        }
    }
    FLAG.set(flag)
        .ok()
        .context("the interrupt handler is set once")?;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    let previous = unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t,
        )
    };
    ensure!(previous != libc::SIG_ERR, "installing the SIGINT handler");
    Ok(())
}
