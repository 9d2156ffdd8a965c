//! `sipxdp-lab`: a throw-away lab on this machine, for the demo and for exploring.
//!
//! `sipxdp-lab demo [--keep] [--calls N]` builds a client, a balancer and three backends in
//! network namespaces, runs the real `sipxdp` daemon on the balancer from a generated
//! configuration, Kamailio on each backend and Prometheus scraping the daemon, places sipp
//! calls through the VIP, prints sipp's results, where every call went (from Kamailio's
//! logs), the setup times and Prometheus's per-backend counts, and removes everything. With
//! `--keep` the lab stays up until Ctrl-C, with commands to look around.

use std::{
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
    daemon_lab::{DaemonLab, METRICS, SIP_PORT, forwarded},
    kamailio::CallSpread,
    remove_stale_namespaces,
    sipp::SippReport,
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
    /// Build the lab, run sipxdp, Kamailio and Prometheus, place sipp calls through it,
    /// report, tear down.
    Demo {
        /// Leave the lab up (until Ctrl-C) to look around.
        #[arg(long)]
        keep: bool,
        /// Number of sipp calls (INVITE, ACK, BYE each), at most 100,000.
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
    sipxdp_tests::interrupt::tear_down_on_signal()?;
    match cli.command {
        LabCommand::Demo { keep, calls } => demo(keep, calls),
        LabCommand::Clean => {
            for name in remove_stale_namespaces()? {
                println!("removed {name}");
            }
            for pins in sipxdp_tests::daemon_lab::remove_stale_pins() {
                println!("removed {}", pins.display());
            }
            Ok(())
        }
    }
}

/// Calls per second sipp places in the demo.
const CALL_RATE: u32 = 300;

fn demo(keep: bool, calls: u32) -> anyhow::Result<()> {
    println!(
        "== building the lab: client, balancer, 3 backends on a bridge (198.51.100.0/26), \
         Kamailio on each backend"
    );
    let mut lab = DaemonLab::start_with_kamailio(&WEIGHTS)?;
    let vip = lab.vip();
    println!(
        "== sipxdp run attached to {} in namespace {} (config {})",
        lab.lab().balancer().iface().name(),
        lab.lab().balancer().netns().name(),
        lab.config_path().display()
    );
    for (backend, weight) in lab.lab().backends().iter().zip(WEIGHTS) {
        println!(
            "   backend {} ({}): Kamailio, VIP on lo, weight {weight}",
            backend.iface().ipv4(),
            backend.netns().name()
        );
    }
    let prometheus = lab.start_prometheus()?;
    println!(
        "== Prometheus in {} scraping sipxdp's metrics on {METRICS} every second",
        lab.lab().balancer().netns().name()
    );

    println!(
        "== sipp in {}: {calls} calls (INVITE, 200, ACK, BYE, 200) at {CALL_RATE}/s to the VIP {vip}",
        lab.lab().client().netns().name()
    );
    let sipp = lab.start_sipp("demo", calls, CALL_RATE)?;
    let (report, spread) = lab.finish_sipp("demo", sipp)?;
    print_calls(&report, &spread);

    let logged = lab.kamailio_requests().len() as f64;
    let query = "sipxdp_backend_packets_total{vip=\"lab\"}";
    // Prometheus scrapes every second: wait until it has seen every request the
    // Kamailios logged, bounded.
    let mut series = Vec::new();
    wait_until(Instant::now() + Duration::from_secs(10), || {
        series = lab.query(&prometheus, query).unwrap_or_default();
        series.iter().map(|(_, value)| value).sum::<f64>() >= logged
    });
    println!("== Prometheus: {query} (the Kamailios logged {logged} requests)");
    for (labels, value) in &series {
        println!("   backend {}: {value} packets", labels["backend"]);
    }

    faults(&mut lab)?;

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
    println!(
        "== sipxdp forwarded {forwarded} messages in XDP, faults and retransmissions included"
    );
    println!("== nothing left attached; removing the lab");
    ensure!(
        report.failed == 0 && report.successful == u64::from(calls),
        "{} of {calls} calls failed",
        u64::from(calls) - report.successful
    );
    ensure!(
        spread.split.is_empty(),
        "{} calls were split across backends",
        spread.split.len()
    );
    Ok(())
}

/// Calls of each fault run (5 s at [`CALL_RATE`]) ...
const FAULT_CALLS: u32 = 1_500;
/// ... and how many sipp has placed when the fault strikes.
const FAULT_AFTER: u64 = 300;

/// A fault injected while sipp places calls.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Kamailio on backend 3 stops (SIGTERM); it is started again afterwards.
    StopBackend,
    /// `kill -9` of the daemon, then a new one (the program stays attached meanwhile).
    RestartDaemon,
    /// The configuration's weights change from 1:2:1 to 1:1:1 and the daemon reloads
    /// (SIGHUP); the weights are put back afterwards.
    ReloadWeights,
}

impl Fault {
    fn describe(self) -> &'static str {
        match self {
            Fault::StopBackend => "Kamailio on backend 3 stopped",
            Fault::RestartDaemon => "sipxdp killed (-9) and started again",
            Fault::ReloadWeights => "weights reloaded from 1:2:1 to 1:1:1",
        }
    }
}

/// Each fault in turn under a run of sipp calls, with the calls that failed. A stopped
/// backend fails its calls in progress and those placed before the health checks mark it
/// down; a restart or a reload should fail none.
fn faults(lab: &mut DaemonLab) -> anyhow::Result<()> {
    println!(
        "== faults under load: {FAULT_CALLS} calls at {CALL_RATE}/s for each, the fault after \
         {FAULT_AFTER} calls"
    );
    for (index, fault) in [
        Fault::StopBackend,
        Fault::RestartDaemon,
        Fault::ReloadWeights,
    ]
    .into_iter()
    .enumerate()
    {
        let tag = format!("fault{index}");
        let sipp = lab.start_sipp(&tag, FAULT_CALLS, CALL_RATE)?;
        let placing = wait_until(Instant::now() + Duration::from_secs(10), || {
            sipp.created_so_far() >= FAULT_AFTER
        });
        ensure!(placing, "sipp did not get going:\n{}", sipp.output());
        strike(lab, fault)?;
        let (report, _) = lab.finish_sipp(&tag, sipp)?;
        println!(
            "   {}: {} of {} calls failed ({} retransmissions)",
            fault.describe(),
            report.failed,
            report.created,
            report.retransmissions
        );
        recover(lab, fault)?;
    }
    Ok(())
}

fn strike(lab: &mut DaemonLab, fault: Fault) -> anyhow::Result<()> {
    match fault {
        Fault::StopBackend => lab.stop_kamailio(3),
        Fault::RestartDaemon => {
            lab.kill_daemon()?;
            lab.restart_daemon()
        }
        Fault::ReloadWeights => {
            lab.write_config(&[1, 1, 1])?;
            lab.reload()
        }
    }
}

fn recover(lab: &mut DaemonLab, fault: Fault) -> anyhow::Result<()> {
    match fault {
        Fault::StopBackend => {
            let up = format!(
                "{}:{SIP_PORT} of VIP lab is up",
                lab.lab().backends()[2].iface().ipv4()
            );
            let before = lab.daemon_log().matches(&up).count();
            lab.start_kamailio(3)?;
            let back = wait_until(Instant::now() + Duration::from_secs(10), || {
                lab.daemon_log().matches(&up).count() > before
            });
            ensure!(back, "backend 3 did not come back:\n{}", lab.daemon_log());
            Ok(())
        }
        Fault::RestartDaemon => Ok(()),
        Fault::ReloadWeights => {
            lab.write_config(&WEIGHTS)?;
            lab.reload()
        }
    }
}

/// The summary of a sipp run: sipp's counts, each backend's share and the setup times.
fn print_calls(report: &SippReport, spread: &CallSpread) {
    println!(
        "== calls: {} attempted, {} completed, {} failed ({} retransmissions)",
        report.created, report.successful, report.failed, report.retransmissions
    );
    let total_weight: u32 = WEIGHTS.iter().sum();
    for (number, weight) in (1..).zip(WEIGHTS) {
        let got = spread.calls_of.get(&number).copied().unwrap_or(0);
        println!(
            "   backend {number}: {got:>6} calls ({:5.1}%, weight share {:5.1}%) in its Kamailio log",
            100.0 * got as f64 / spread.calls.max(1) as f64,
            100.0 * f64::from(weight) / f64::from(total_weight)
        );
    }
    println!(
        "   every call stayed on one backend: {} ({} of {} calls split)",
        spread.split.is_empty(),
        spread.split.len(),
        spread.calls
    );
    let percentile = |p| {
        report
            .setup_percentile(p)
            .map_or("-".to_owned(), |ms| format!("{ms} ms"))
    };
    println!(
        "   call setup (INVITE to 200 OK, sipp, whole ms): p50 {}, p90 {}, p99 {}, max {}",
        percentile(50.0),
        percentile(90.0),
        percentile(99.0),
        percentile(100.0)
    );
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
        "   ip netns exec {client} sipp -sn uac -m 10 -p 5090 -i {} {}",
        lab.lab().client().iface().ipv4(),
        lab.vip()
    );
    println!(
        "   tail -f {}/kamailio-*.log   # each backend's requests",
        lab.directory().display()
    );
    println!(
        "   ip netns exec {balancer} curl -s 'http://127.0.0.1:9090/api/v1/query?query=sipxdp_backend_packets_total'"
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
