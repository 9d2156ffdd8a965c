//! `sipxdp run`: loads the configuration, fills the program's maps, attaches it, keeps the
//! backends' health and paths current, reloads on SIGHUP and detaches on SIGINT/SIGTERM.
//!
//! Everything that can be refused is checked before anything is attached: the
//! configuration, what this version supports, and a path to every backend. Once running,
//! a bad reload is logged and the running configuration stays in force.

mod checks;
mod control;
mod occupancy;
mod overlay;
mod paths;
mod privileges;
mod source;
pub mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::{Path as FsPath, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, anyhow, bail};
use sipxdp_common::{
    flood::{SourceKey, TokenBucket},
    maps::{
        FragmentKey, FragmentTarget, Placement, PlacementKey, Settings as KernelSettings, names,
    },
};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use self::{
    checks::{Checked, HealthChecks},
    occupancy::{Counted, Occupancy},
    overlay::Overlay,
};
use crate::{
    config::{
        self, AdminState, Config, Environment as _, ForwardingMode, LogLevel, Protocol,
        SystemEnvironment, XdpMode as ConfigXdpMode,
    },
    control::{Connection, ControlSocket, protocol::Request},
    dataplane::{Attachment, Dataplane, LoadOptions, Pins, XdpMode},
    health::{Event, Target},
    metrics::{Exporter, Reply, Scrape},
    neighbor::{AsyncWatcher, DEFAULT_RESOLVE_TIMEOUT, Resolver, Watcher, XdpAttachment},
    plan::{BackendId, BackendRuntime, Health, Path, Plan, Slots, plan},
    report::Report,
    slowpath::{Served, SlowPath, decide::View, kernel_dialogs, socket::Transmitter},
};

pub use paths::PathError;

/// How `sipxdp run` behaves beyond its configuration file.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub config: PathBuf,
    /// Log the counters this often (never when `None`).
    pub report_every: Option<Duration>,
}

/// Loads `path` and checks that this version can serve it.
///
/// # Errors
///
/// Every problem of the file, every feature it uses that the data path lacks, and every
/// kernel setting its NAT VIPs need that this machine lacks.
pub fn load_config(path: &FsPath) -> anyhow::Result<Config> {
    let config = config::load(path, &SystemEnvironment).map_err(|errors| anyhow!("{errors}"))?;
    let mut problems = support::unsupported(&config);
    problems.extend(support::missing_nat_sysctls(&config, |key| {
        std::fs::read_to_string(format!("/proc/sys/{}", key.replace('.', "/"))).ok()
    }));
    if !problems.is_empty() {
        bail!("{}: {}", path.display(), problems.join("\n"));
    }
    Ok(config)
}

/// The `log` filter of a configured level.
pub fn log_filter(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Off => log::LevelFilter::Off,
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    }
}

fn kernel_log_level(level: LogLevel) -> Option<aya_log::Level> {
    match level {
        LogLevel::Off => None,
        LogLevel::Error => Some(aya_log::Level::Error),
        LogLevel::Warn => Some(aya_log::Level::Warn),
        LogLevel::Info => Some(aya_log::Level::Info),
        LogLevel::Debug => Some(aya_log::Level::Debug),
        LogLevel::Trace => Some(aya_log::Level::Trace),
    }
}

fn xdp_mode(mode: ConfigXdpMode) -> XdpMode {
    match mode {
        // Without a mode flag the kernel uses the driver's XDP when it has one.
        ConfigXdpMode::Auto => XdpMode::Default,
        ConfigXdpMode::Skb => XdpMode::Skb,
        ConfigXdpMode::Driver => XdpMode::Driver,
    }
}

/// The Maglev tables published for one VIP.
#[derive(Clone, Copy, Debug)]
struct TablePublications {
    count: u64,
    last: SystemTime,
}

impl Default for TablePublications {
    fn default() -> Self {
        Self {
            count: 0,
            last: SystemTime::UNIX_EPOCH,
        }
    }
}

/// The attached program and what it was filled from.
struct Daemon {
    config_path: PathBuf,
    /// The configuration file as loaded ...
    file_config: Config,
    /// ... with the backends added and removed at runtime: the configuration in force.
    config: Config,
    overlay: Overlay,
    dataplane: Dataplane,
    slots: Slots,
    plan: Plan,
    health: BTreeMap<BackendId, Health>,
    paths: BTreeMap<BackendId, Path>,
    /// Operators' admin states (`sipxdp backend …`), over the configured ones; kept across
    /// reloads while the backend stays in the file.
    admin: BTreeMap<BackendId, AdminState>,
    /// Per VIP name: the Maglev tables published so far, and when the last one was.
    tables: BTreeMap<String, TablePublications>,
    tx_ports: BTreeSet<u32>,
    /// Per interface: the mode the kernel attached the program in.
    xdp_modes: BTreeMap<String, XdpAttachment>,
    resolver: Resolver,
    /// `None` when `[slow_path] enabled = false`.
    slow_path: Option<SlowPath>,
    occupancy: Occupancy,
}

impl Daemon {
    /// Computes the plan for the current configuration, health and paths, and writes what
    /// changed into the maps.
    fn publish(&mut self) -> anyhow::Result<()> {
        let health = &self.health;
        let paths = &self.paths;
        let admin = &self.admin;
        let next = plan(&self.config, &mut self.slots, |id| BackendRuntime {
            health: health.get(id).copied().unwrap_or(Health::Up),
            admin: admin.get(id).copied(),
            path: paths.get(id).copied(),
        })?;
        for path in self.paths.values() {
            if self.tx_ports.insert(path.ifindex) {
                self.dataplane.add_tx_port(path.ifindex)?;
            }
        }
        self.dataplane.apply(&next, &self.plan)?;
        if let Some(slow_path) = &self.slow_path {
            let settings = kernel_settings(&self.config);
            slow_path.publish(View::new(&self.config, &settings, &next, &self.slots));
        }
        let now = SystemTime::now();
        for vip in &next.vips {
            let before = self.plan.vips.iter().find(|old| old.key == vip.key);
            if before.map(|old| &old.table) != Some(&vip.table) {
                let published = self.tables.entry(vip.name.clone()).or_default();
                published.count += 1;
                published.last = now;
            }
        }
        self.plan = next;
        Ok(())
    }

    /// The health-check targets, one per backend slot, and the VIP addresses.
    fn checked(&self) -> Checked {
        let targets = self
            .plan
            .backends
            .keys()
            .filter_map(|&slot| {
                self.slots.backend_at(slot).map(|id| Target {
                    id: slot,
                    address: id.address,
                })
            })
            .collect();
        let vips = self.config.vips.iter().map(|vip| vip.address).collect();
        Checked { targets, vips }
    }

    fn on_health(&mut self, event: Event) -> anyhow::Result<()> {
        let (slot, health) = match event {
            Event::Up { id } => (id, Health::Up),
            Event::Down { id, .. } => (id, Health::Down),
        };
        let Some(id) = self.slots.backend_at(slot).cloned() else {
            return Ok(());
        };
        self.health.insert(id.clone(), health);
        self.publish()?;
        // Logged once the maps say so: whoever reads this line may rely on the change.
        match event {
            Event::Up { .. } => log::info!("backend {} of VIP {} is up", id.address, id.vip),
            Event::Down { reason, .. } => {
                log::warn!("backend {} of VIP {} is down: {reason}", id.address, id.vip)
            }
        }
        Ok(())
    }

    /// Re-reads the paths after the kernel's tables changed; keeps the old ones if any
    /// backend cannot be resolved now (its health checks will tell whether it is gone).
    fn on_tables_changed(&mut self) -> anyhow::Result<()> {
        match paths::resolve_all(&self.config, &mut self.resolver) {
            Ok(paths) if paths != self.paths => {
                log::info!("backend paths changed; updating the maps");
                self.paths = paths;
                self.publish()
            }
            Ok(_) => Ok(()),
            Err(errors) => {
                for error in errors {
                    log::warn!("{error}");
                }
                Ok(())
            }
        }
    }

    /// Applies the configuration file again. On any problem the running configuration
    /// stays in force.
    fn reload(&mut self) -> anyhow::Result<()> {
        let file_config = load_config(&self.config_path)?;
        let mut overlay = self.overlay.clone();
        overlay.settle(&file_config);
        let config = overlay.apply(&file_config);
        if config.interfaces != self.config.interfaces {
            bail!("the interfaces changed; restart sipxdp to attach to the new set");
        }
        let paths = paths::resolve_all(&config, &mut self.resolver).map_err(joined)?;
        if let Some(slow_path) = &mut self.slow_path {
            slow_path.serve(&served(&config))?;
        }
        if config.slow_path.enabled != self.config.slow_path.enabled
            || config.slow_path.queue != self.config.slow_path.queue
        {
            log::warn!("[slow_path] changes take effect when sipxdp restarts");
        }
        if config.sticky.entries != self.config.sticky.entries
            || config.fragments.entries != self.config.fragments.entries
            || config.tcp.connections != self.config.tcp.connections
            || config.flood.sources != self.config.flood.sources
        {
            log::warn!(
                "[sticky] entries, [fragments] entries, [tcp] connections or [flood] sources \
                 changed; map sizes change when sipxdp restarts"
            );
        }
        if kernel_settings(&config) != kernel_settings(&self.config) {
            self.dataplane.set_settings(&kernel_settings(&config))?;
        }
        self.admin.retain(|id, _| {
            config.vips.iter().any(|vip| {
                vip.name == id.vip
                    && vip
                        .backends
                        .iter()
                        .any(|backend| backend.socket_address() == id.address)
            })
        });
        self.file_config = file_config;
        self.overlay = overlay;
        self.config = config;
        self.paths = paths;
        self.publish()
    }
}

/// The program's global settings for `config`.
pub(crate) fn kernel_settings(config: &Config) -> KernelSettings {
    KernelSettings {
        hash_seed: config.daemon.hash_seed,
        dialog_idle_ns: u64::try_from(config.sticky.idle_timeout.as_nanos()).unwrap_or(u64::MAX),
        nat_returns: u32::from(
            config
                .vips
                .iter()
                .any(|vip| vip.mode == ForwardingMode::Nat),
        ),
        padding: 0,
        connection_idle_ns: u64::try_from(config.tcp.idle_timeout.as_nanos()).unwrap_or(u64::MAX),
    }
}

/// Refuses to go on without the capabilities the daemon uses, naming the missing ones.
fn check_capabilities(slow_path: bool) -> anyhow::Result<()> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let effective = privileges::effective(&status).context("no CapEff in /proc/self/status")?;
    let missing = privileges::missing(effective, slow_path);
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(ToString::to_string).collect();
        bail!(
            "sipxdp run lacks capabilities it needs: {}; nothing was attached",
            names.join(", ")
        );
    }
    Ok(())
}

/// The UDP VIPs of `config`: those the slow path receives on.
fn served(config: &Config) -> Vec<Served> {
    config
        .vips
        .iter()
        .filter(|vip| vip.protocol == Protocol::Udp)
        .map(|vip| Served {
            name: vip.name.clone(),
            address: SocketAddr::new(vip.address, vip.port),
        })
        .collect()
}

/// Starts the slow path on `config`'s UDP VIPs, sharing `dataplane`'s dialogs.
fn start_slow_path(config: &Config, dataplane: &Dataplane) -> anyhow::Result<SlowPath> {
    let transmitter = Transmitter::new()?;
    let dialogs =
        kernel_dialogs(dataplane.lru_map_copy(names::DIALOGS)?).context("opening DIALOGS")?;
    let mut slow_path = SlowPath::start(config.slow_path.queue, transmitter, dialogs);
    slow_path.serve(&served(config))?;
    Ok(slow_path)
}

fn joined(errors: Vec<PathError>) -> anyhow::Error {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    anyhow!("{}", lines.join("\n"))
}

/// Waits for the next event of an optional source; never returns without one.
async fn next_of<T>(source: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match source {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs the daemon until SIGINT or SIGTERM.
///
/// # Errors
///
/// A configuration, resolution, loading or attaching problem at start (nothing is left
/// attached then), or a failure to update the maps while running.
pub async fn run(options: RunOptions) -> anyhow::Result<()> {
    let config = load_config(&options.config)?;
    check_capabilities(config.slow_path.enabled)?;
    let mut resolver = Resolver::new(DEFAULT_RESOLVE_TIMEOUT)?;
    let paths = paths::resolve_all(&config, &mut resolver).map_err(joined)?;
    // Bound before anything is attached: a second daemon stops here.
    let control = ControlSocket::bind(&config.daemon.control_socket)?;
    let pins = Pins::new(&config.daemon.pin_path);
    let pins_root = config.daemon.pin_path.clone();
    let exporter = match config.metrics.listen {
        Some(address) => Some(Exporter::bind(address).await?),
        None => None,
    };
    let mut dataplane = Dataplane::load(&LoadOptions {
        log_level: kernel_log_level(config.daemon.kernel_log_level),
        verifier_statistics: true,
        dialog_entries: Some(config.sticky.entries),
        fragment_entries: Some(config.fragments.entries),
        connection_entries: Some(config.tcp.connections),
        flood_sources: Some(config.flood.sources),
        pins: Some(pins.clone()),
    })?;
    // What a previous daemon left in the pinned maps: the first publish removes what the
    // configuration no longer has, and what it still has keeps its slots, so the calls
    // the kernel remembers keep their backends.
    let pinned = dataplane.pinned_plan()?;
    let slots = Slots::taking_over(&pinned, &config);
    let logger = match config.daemon.kernel_log_level {
        LogLevel::Off => None,
        _ => {
            let logger = dataplane.kernel_logger()?;
            // SAFETY: the logger owns its ring buffer's descriptor, which stays open and the
            // same for as long as the `AsyncFd` holds the logger.
            let registered =
                unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) };
            Some(registered.context("polling the kernel log")?)
        }
    };
    dataplane.set_settings(&kernel_settings(&config))?;
    // Before anything is attached: a VIP the slow path cannot receive on stops here.
    let slow_path = if config.slow_path.enabled {
        Some(start_slow_path(&config, &dataplane)?)
    } else {
        None
    };
    let occupancy = Occupancy::start(vec![
        Counted::lru::<PlacementKey, Placement>(
            names::DIALOGS,
            dataplane.lru_map_copy(names::DIALOGS)?,
            config.sticky.entries,
        )?,
        Counted::lru::<PlacementKey, Placement>(
            names::CONNECTIONS,
            dataplane.lru_map_copy(names::CONNECTIONS)?,
            config.tcp.connections,
        )?,
        Counted::lru::<FragmentKey, FragmentTarget>(
            names::FRAGMENTS,
            dataplane.lru_map_copy(names::FRAGMENTS)?,
            config.fragments.entries,
        )?,
        Counted::lru::<SourceKey, TokenBucket>(
            names::FLOOD_SOURCES,
            dataplane.lru_map_copy(names::FLOOD_SOURCES)?,
            config.flood.sources,
        )?,
    ]);
    let mut daemon = Daemon {
        config_path: options.config.clone(),
        file_config: config.clone(),
        config,
        overlay: Overlay::default(),
        dataplane,
        slots,
        plan: pinned,
        health: BTreeMap::new(),
        paths,
        admin: BTreeMap::new(),
        tables: BTreeMap::new(),
        tx_ports: BTreeSet::new(),
        xdp_modes: BTreeMap::new(),
        resolver,
        slow_path,
        occupancy,
    };
    daemon.publish()?;
    for interface in &daemon.config.interfaces {
        // NAT mode routes to whichever interface the FIB names, answers to clients too.
        let index = SystemEnvironment
            .interface_index(&interface.name)
            .with_context(|| format!("interface {} is gone", interface.name))?;
        if daemon.tx_ports.insert(index) {
            daemon.dataplane.add_tx_port(index)?;
        }
        let attachment =
            daemon
                .dataplane
                .attach(&interface.name, xdp_mode(interface.xdp_mode), Some(&pins))?;
        // What the kernel chose matters to the operator: generic XDP is several times
        // slower, and "auto" falls back to it silently.
        let mode = match daemon.resolver.xdp_attachment(index) {
            Ok(mode) => {
                daemon.xdp_modes.insert(interface.name.clone(), mode);
                mode.to_string()
            }
            Err(error) => format!("mode unknown: {error}"),
        };
        match attachment {
            Attachment::Attached => log::info!("attached to {} ({mode})", interface.name),
            Attachment::Adopted => log::info!(
                "took over the pinned XDP link on {} without a gap ({mode})",
                interface.name
            ),
        }
    }
    for interface in pins.linked_interfaces() {
        if !daemon
            .config
            .interfaces
            .iter()
            .any(|configured| configured.name == interface)
        {
            log::warn!(
                "an XDP link pinned under {} stays on {interface}, which the configuration no \
                 longer names; `sipxdp detach` removes every pinned link",
                daemon.config.daemon.pin_path.display()
            );
        }
    }
    if let Some(instructions) = daemon.dataplane.verified_instructions()? {
        log::info!("the verifier accepted the program after {instructions} instructions");
    }
    let (mut health_checks, mut health_events) = if daemon.config.health_check.enabled {
        let (checks, events) =
            HealthChecks::start(&daemon.config.health_check, daemon.checked()).await?;
        (Some(checks), Some(events))
    } else {
        (None, None)
    };
    let mut watcher = AsyncWatcher::new(Watcher::new()?)?;
    let mut terminate = signal(SignalKind::terminate()).context("watching SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("watching SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("watching SIGHUP")?;
    let mut logger = logger;
    let mut report_timer = options
        .report_every
        .map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
    let (request_sender, mut requests) = mpsc::channel::<(Result<Request, String>, Connection)>(16);
    let (scrape_sender, mut scrapes) = mpsc::channel::<Scrape>(16);
    if let Some(exporter) = &exporter {
        log::info!("metrics on http://{}/metrics", exporter.local_addr()?);
    }
    log::info!(
        "running; SIGHUP reloads {}; control socket {}",
        options.config.display(),
        daemon.config.daemon.control_socket.display()
    );
    loop {
        tokio::select! {
            accepted = control.accept() => match accepted {
                Ok(mut connection) => {
                    // Read in a task of its own: a slow client must not hold up the rest.
                    let sender = request_sender.clone();
                    tokio::spawn(async move {
                        let request = connection.request().await;
                        let _ = sender.send((request, connection)).await;
                    });
                }
                Err(error) => log::warn!("control socket: {error}"),
            },
            accepted = accept_scrape(&exporter) => match accepted {
                Ok(mut scrape) => {
                    let sender = scrape_sender.clone();
                    tokio::spawn(async move {
                        match scrape.wants_metrics().await {
                            Ok(true) => {
                                let _ = sender.send(scrape).await;
                            }
                            Ok(false) => scrape.respond(Reply::NotFound).await,
                            Err(error) => log::debug!("metrics request: {error}"),
                        }
                    });
                }
                Err(error) => log::warn!("metrics endpoint: {error}"),
            },
            Some(scrape) = scrapes.recv() => {
                let reply = match daemon.metrics(&health_checks).await {
                    Ok(text) => Reply::Metrics(text),
                    Err(error) => {
                        log::warn!("metrics: {error}");
                        Reply::Failed(error)
                    }
                };
                tokio::spawn(scrape.respond(reply));
            }
            Some((request, connection)) = requests.recv() => {
                let answer = match request {
                    Ok(request) => daemon.answer(request, &mut health_checks).await,
                    Err(error) => Err(error),
                };
                tokio::spawn(connection.answer(answer));
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => match daemon.reload() {
                Ok(()) => {
                    log::info!("reloaded {}", options.config.display());
                    if let Some(checks) = &mut health_checks {
                        checks.set_targets(daemon.checked()).await?;
                    }
                }
                Err(error) => log::error!("reload refused, keeping the running configuration: {error:#}"),
            },
            event = next_of(&mut health_events) => match event {
                Some(event) => daemon.on_health(event)?,
                None => {
                    log::error!("health checks stopped; backends keep their last state");
                    health_events = None;
                }
            },
            changes = watcher.changes() => {
                changes?;
                daemon.on_tables_changed()?;
                if let Some(checks) = &mut health_checks {
                    checks.follow_sources().await?;
                }
            }
            readable = readable_logger(&mut logger) => readable?,
            () = tick(&mut report_timer) => {
                let report = Report::read(&daemon.dataplane, &daemon.plan, &daemon.slots)?;
                log::info!("counters:\n{report}");
            }
        }
    }
    let report = Report::read(&daemon.dataplane, &daemon.plan, &daemon.slots)?;
    println!("{report}");
    drop(daemon);
    log::info!(
        "stopped; the program stays attached and pinned under {}, so traffic keeps flowing \
         until sipxdp starts again; `sipxdp detach` removes it",
        pins_root.display()
    );
    Ok(())
}

/// The next client of the metrics endpoint; never, without an endpoint.
async fn accept_scrape(exporter: &Option<Exporter>) -> std::io::Result<Scrape> {
    match exporter {
        Some(exporter) => exporter.accept().await,
        None => std::future::pending().await,
    }
}

/// Forwards the kernel's queued log messages once the logger is readable.
async fn readable_logger(
    logger: &mut Option<AsyncFd<aya_log::EbpfLogger<&'static dyn log::Log>>>,
) -> anyhow::Result<()> {
    let Some(logger) = logger else {
        return std::future::pending().await;
    };
    let mut guard = logger
        .readable_mut()
        .await
        .context("waiting for kernel log messages")?;
    guard.get_inner_mut().flush();
    guard.clear_ready();
    Ok(())
}

async fn tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}
