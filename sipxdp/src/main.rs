//! `sipxdp`: the command line of the SIP load balancer.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sipxdp::{
    daemon::{self, RunOptions},
    lookup,
    plan::{BackendRuntime, Health, Path, Slots, plan},
};

/// An XDP load balancer for SIP over UDP: keeps every call on one backend by its Call-ID.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Attach to the configured interfaces and balance until SIGINT or SIGTERM (SIGHUP
    /// reloads the configuration).
    Run {
        /// The configuration file.
        #[arg(long, short, default_value = "/etc/sipxdp/sipxdp.toml")]
        config: PathBuf,
        /// Log the counters every this many seconds (0: only when stopping).
        #[arg(long, default_value_t = 0)]
        report_every: u64,
    },
    /// Check a configuration file and print every problem with its location.
    CheckConfig {
        /// The configuration file.
        config: PathBuf,
    },
    /// Print which backend of a VIP a Call-ID goes to with every backend in service.
    Hash {
        /// The configuration file.
        #[arg(long, short, default_value = "/etc/sipxdp/sipxdp.toml")]
        config: PathBuf,
        /// The VIP's name (as in `status` and the metrics).
        vip: String,
        /// The Call-ID header's value.
        call_id: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            report_every,
        } => run(config, report_every),
        Command::CheckConfig { config } => check_config(&config),
        Command::Hash {
            config,
            vip,
            call_id,
        } => hash(&config, &vip, &call_id),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sipxdp: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: PathBuf, report_every: u64) -> anyhow::Result<()> {
    // The log level comes from the file; a broken file is reported without a logger.
    let level = daemon::load_config(&config)?.daemon.log_level;
    env_logger::Builder::new()
        .filter_level(daemon::log_filter(level))
        .parse_default_env()
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(daemon::run(RunOptions {
        config,
        report_every: (report_every > 0).then(|| Duration::from_secs(report_every)),
    }))
}

fn check_config(path: &std::path::Path) -> anyhow::Result<()> {
    let config = daemon::load_config(path)?;
    let backends: usize = config.vips.iter().map(|vip| vip.backends.len()).sum();
    println!(
        "{}: valid: {} interface(s), {} VIP(s), {backends} backend(s)",
        path.display(),
        config.interfaces.len(),
        config.vips.len()
    );
    Ok(())
}

fn hash(path: &std::path::Path, vip: &str, call_id: &str) -> anyhow::Result<()> {
    let config = daemon::load_config(path)?;
    let mut slots = Slots::default();
    // Every backend in service, in its configured admin state: what the kernel does when
    // all health checks pass.
    let planned = plan(&config, &mut slots, |_| BackendRuntime {
        health: Health::Up,
        admin: None,
        path: Some(Path {
            ifindex: 1,
            source_mac: [0; 6],
            destination_mac: [0; 6],
        }),
    })?;
    let names: Vec<&str> = config.vips.iter().map(|vip| vip.name.as_str()).collect();
    anyhow::ensure!(
        names.contains(&vip),
        "no VIP named {vip:?}; the VIPs are {names:?}"
    );
    match lookup::backend_for(
        &planned,
        &slots,
        vip,
        call_id.as_bytes(),
        config.daemon.hash_seed,
    ) {
        Some(backend) => println!("{}", backend.address),
        None => anyhow::bail!("VIP {vip} has no backend in service"),
    }
    Ok(())
}
