//! `sipxdp`: the command line of the SIP load balancer.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sipxdp::{
    config,
    control::{
        self,
        protocol::{BackendAction, Request},
    },
    daemon::{self, RunOptions},
    dataplane::Pins,
    lookup,
    plan::{BackendRuntime, Health, Path, Slots, plan},
};

/// An XDP load balancer for SIP over UDP and TCP: keeps every call on one backend by its
/// Call-ID (over TCP, every connection on one backend).
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
    /// Print which backend of a VIP a Call-ID goes to now: its dialog's, or the running
    /// daemon's table's (with `--offline`: the configuration's, every backend up).
    Hash {
        #[command(flatten)]
        daemon: DaemonSocket,
        /// Compute from the configuration file alone, without asking the daemon.
        #[arg(long)]
        offline: bool,
        /// The VIP's name (as in `status` and the metrics).
        vip: String,
        /// The Call-ID header's value.
        call_id: String,
    },
    /// Print the running daemon's VIPs and backends: weights, states, health, latency and
    /// packets forwarded.
    Status {
        #[command(flatten)]
        daemon: DaemonSocket,
    },
    /// Change a backend in the running daemon until the next restart: `drain` (no new
    /// calls, calls in progress stay), `disable` (no calls; calls in progress move),
    /// `enable` (back to the configured state), `add` (a new backend, with --weight),
    /// `remove` (out of the VIP; its calls move).
    Backend {
        #[command(flatten)]
        daemon: DaemonSocket,
        action: Action,
        /// The VIP's name.
        vip: String,
        /// The backend's ADDRESS:PORT ([IPv6]:PORT).
        backend: std::net::SocketAddr,
        /// The weight of a backend `add` adds.
        #[arg(long, default_value_t = 1)]
        weight: u32,
    },
    /// Show the running daemon's status with packet rates, redrawn every interval, until
    /// interrupted.
    Top {
        #[command(flatten)]
        daemon: DaemonSocket,
        /// Seconds between two screens.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
    /// Make the running daemon apply its configuration file again (as SIGHUP does).
    Reload {
        #[command(flatten)]
        daemon: DaemonSocket,
    },
    /// Remove what a stopped daemon left attached and pinned: every XDP link and map
    /// under the configuration's `pin_path`. Traffic then goes to the kernel's stack.
    Detach {
        #[command(flatten)]
        daemon: DaemonSocket,
    },
}

/// Where the running daemon listens.
#[derive(clap::Args, Debug)]
struct DaemonSocket {
    /// The configuration file, which names the control socket.
    #[arg(long, short, default_value = "/etc/sipxdp/sipxdp.toml")]
    config: PathBuf,
    /// The control socket, instead of the one the configuration names.
    #[arg(long)]
    socket: Option<PathBuf>,
}

impl DaemonSocket {
    /// Sends `request` to the daemon and prints its answer.
    fn ask(&self, request: &Request) -> anyhow::Result<()> {
        let text = self.answer(request)?;
        if !text.is_empty() {
            println!("{text}");
        }
        Ok(())
    }

    /// Sends `request` to the daemon and returns its answer.
    fn answer(&self, request: &Request) -> anyhow::Result<String> {
        let path = match &self.socket {
            Some(path) => path.clone(),
            None => {
                config::load(&self.config, &config::SystemEnvironment)
                    .map_err(|errors| anyhow::anyhow!("{errors}"))?
                    .daemon
                    .control_socket
            }
        };
        control::request(&path, request)?.map_err(|message| anyhow::anyhow!("{message}"))
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Action {
    Drain,
    Enable,
    Disable,
    Add,
    Remove,
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
            daemon,
            offline: true,
            vip,
            call_id,
        } => hash(&daemon.config, &vip, &call_id),
        Command::Hash {
            daemon,
            offline: false,
            vip,
            call_id,
        } => daemon.ask(&Request::Hash { vip, call_id }),
        Command::Status { daemon } => daemon.ask(&Request::Status),
        Command::Backend {
            daemon,
            action,
            vip,
            backend,
            weight,
        } => daemon.ask(&Request::Backend {
            action: match action {
                Action::Drain => BackendAction::Drain,
                Action::Enable => BackendAction::Enable,
                Action::Disable => BackendAction::Disable,
                Action::Add => BackendAction::Add { weight },
                Action::Remove => BackendAction::Remove,
            },
            vip,
            backend,
        }),
        Command::Reload { daemon } => daemon.ask(&Request::Reload),
        Command::Top { daemon, interval } => top(&daemon, interval),
        Command::Detach { daemon } => detach(&daemon),
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

fn top(daemon: &DaemonSocket, interval: f64) -> anyhow::Result<()> {
    anyhow::ensure!(
        interval.is_finite() && (0.1..=3600.0).contains(&interval),
        "--interval must be between 0.1 and 3600 seconds"
    );
    let interval = Duration::from_secs_f64(interval);
    let mut before = sipxdp::top::counts(&daemon.answer(&Request::Status)?);
    let mut then = std::time::Instant::now();
    loop {
        std::thread::sleep(interval);
        let status = daemon.answer(&Request::Status)?;
        let now = std::time::Instant::now();
        // Clear the screen and draw from its top.
        print!(
            "\x1b[2J\x1b[Hsipxdp top, every {:.1} s (Ctrl-C ends)\n\n{}",
            interval.as_secs_f64(),
            sipxdp::top::frame(&status, &before, now - then)
        );
        std::io::Write::flush(&mut std::io::stdout())?;
        before = sipxdp::top::counts(&status);
        then = now;
    }
}

fn detach(daemon: &DaemonSocket) -> anyhow::Result<()> {
    let config = config::load(&daemon.config, &config::SystemEnvironment)
        .map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let socket = daemon
        .socket
        .clone()
        .unwrap_or_else(|| config.daemon.control_socket.clone());
    anyhow::ensure!(
        control::request(&socket, &Request::Status).is_err(),
        "sipxdp is running (it answers on {}); stop it first, or it would attach again",
        socket.display()
    );
    let pins = Pins::new(&config.daemon.pin_path);
    let interfaces = pins.remove_all()?;
    if interfaces.is_empty() {
        println!(
            "nothing was pinned under {}",
            config.daemon.pin_path.display()
        );
    } else {
        println!(
            "detached from {} and removed the pins under {}",
            interfaces.join(", "),
            config.daemon.pin_path.display()
        );
    }
    Ok(())
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
    let Some(vip_config) = config.vips.iter().find(|config| config.name == vip) else {
        anyhow::bail!("no VIP named {vip:?}; the VIPs are {names:?}");
    };
    lookup::placed_by_call_id(vip_config).map_err(anyhow::Error::msg)?;
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
