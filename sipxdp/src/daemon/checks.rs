//! The daemon's SIP OPTIONS checkers: one per address family in use, because a checker
//! sends from one UDP socket and writes that socket's address into its requests. Which
//! address that is follows the network: see [`HealthChecks`].

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, anyhow};
use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot},
};

use super::source::health_check_source;
use crate::{
    config::HealthCheckConfig,
    health::{self, Event, Prober, Target, TargetStatus},
};

/// What the checkers are told: the backends to check, and the VIP addresses, which are
/// never a check's source (backends hold them and would answer themselves).
#[derive(Debug, Default)]
pub struct Checked {
    pub targets: Vec<Target>,
    pub vips: BTreeSet<IpAddr>,
}

impl Checked {
    /// The targets of one family: IPv6 or not.
    fn family(&self, ipv6: bool) -> Vec<Target> {
        self.targets
            .iter()
            .filter(|target| target.address.is_ipv6() == ipv6)
            .cloned()
            .collect()
    }
}

/// A running checker: the family it checks and the address it sends from.
struct Checker {
    ipv6: bool,
    source: IpAddr,
    commands: mpsc::Sender<health::Command>,
}

/// The running checkers and the events of all of them.
///
/// A family whose source cannot be chosen (say, only a VIP reaches its backends, or its
/// address is still in duplicate address detection) has no checker: its backends count as
/// up, as with checks off, and the error is logged. Each later network change or reload
/// tries again, and moves a running checker to another source when the one it has is no
/// longer the right one (the balancer was renumbered, or its address became a VIP).
pub struct HealthChecks {
    settings: health::Settings,
    checkers: Vec<Checker>,
    checked: Checked,
    /// The last error logged for each family (IPv6 or not), so that it is logged once.
    problems: BTreeMap<bool, String>,
    events: mpsc::Sender<Event>,
}

impl HealthChecks {
    /// Starts a checker for each family of the targets; events arrive on the returned
    /// receiver.
    pub async fn start(
        config: &HealthCheckConfig,
        checked: Checked,
    ) -> anyhow::Result<(Self, mpsc::Receiver<Event>)> {
        let (events, receiver) = mpsc::channel(64);
        let mut checks = Self {
            settings: health::Settings {
                interval: config.interval,
                timeout: config.timeout,
                down_after: config.down_after,
                up_after: config.up_after,
                alive_codes: config.reply_codes.clone(),
            },
            checkers: Vec::new(),
            checked: Checked::default(),
            problems: BTreeMap::new(),
            events,
        };
        checks.set_targets(checked).await?;
        Ok((checks, receiver))
    }

    /// Replaces the targets and the VIPs, on reload.
    pub async fn set_targets(&mut self, checked: Checked) -> anyhow::Result<()> {
        self.checked = checked;
        for checker in &self.checkers {
            let (reply, answer) = oneshot::channel();
            checker
                .commands
                .send(health::Command::SetTargets {
                    targets: self.checked.family(checker.ipv6),
                    reply,
                })
                .await
                .context("updating the health-check targets")?;
            answer
                .await
                .context("the health checker stopped")?
                .map_err(|duplicate| anyhow!("duplicate health-check target {}", duplicate.0))?;
        }
        self.follow_sources().await
    }

    /// Chooses each family's source again: a running checker moves to a new one, and a
    /// family without a checker gets one. Called after every change of the network's
    /// tables, since an address comes and goes with its local route.
    pub async fn follow_sources(&mut self) -> anyhow::Result<()> {
        for ipv6 in [false, true] {
            let targets = self.checked.family(ipv6);
            let Some(first) = targets.first() else {
                continue;
            };
            let running = self
                .checkers
                .iter()
                .position(|checker| checker.ipv6 == ipv6);
            let source = match health_check_source(first.address, &self.checked.vips) {
                Ok(source) => source,
                Err(error) => {
                    self.report(ipv6, &error.into());
                    continue;
                }
            };
            if running.is_some_and(|index| self.checkers[index].source == source) {
                self.problems.remove(&ipv6);
                continue;
            }
            let (socket, local) = match bind(source).await {
                Ok(bound) => bound,
                Err(error) => {
                    self.report(ipv6, &error);
                    continue;
                }
            };
            match running {
                Some(index) => {
                    let checker = &mut self.checkers[index];
                    log::info!("health checks from {local} (were from {})", checker.source);
                    checker.source = source;
                    checker
                        .commands
                        .send(health::Command::Rebind { socket, local })
                        .await
                        .context("moving the health checks to a new source")?;
                }
                None => {
                    let commands = self.spawn(socket, local, targets)?;
                    self.checkers.push(Checker {
                        ipv6,
                        source,
                        commands,
                    });
                }
            }
            self.problems.remove(&ipv6);
        }
        Ok(())
    }

    /// Logs why a family's source could not be chosen, once for each new reason.
    fn report(&mut self, ipv6: bool, error: &anyhow::Error) {
        let problem = format!("{error:#}");
        if self.problems.get(&ipv6) == Some(&problem) {
            return;
        }
        let family = if ipv6 { "IPv6" } else { "IPv4" };
        match self.checkers.iter().find(|checker| checker.ipv6 == ipv6) {
            Some(checker) => log::warn!(
                "health checks of the {family} backends stay on {}: {problem}",
                checker.source
            ),
            None => log::error!(
                "no health checks of the {family} backends, which count as up until they can \
                 start: {problem}"
            ),
        }
        self.problems.insert(ipv6, problem);
    }

    /// Every target's status, from all checkers.
    pub async fn snapshot(&self) -> anyhow::Result<BTreeMap<u32, TargetStatus>> {
        let mut statuses = BTreeMap::new();
        for checker in &self.checkers {
            let (reply, answer) = oneshot::channel();
            checker
                .commands
                .send(health::Command::Snapshot { reply })
                .await
                .context("asking the health checker")?;
            let snapshot = answer.await.context("the health checker stopped")?;
            for (target, status) in snapshot.targets {
                statuses.insert(target.id, status);
            }
        }
        Ok(statuses)
    }

    /// Starts a checker for `targets`, all of one family, on `socket`, bound to `local`.
    fn spawn(
        &self,
        socket: UdpSocket,
        local: SocketAddr,
        targets: Vec<Target>,
    ) -> anyhow::Result<mpsc::Sender<health::Command>> {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        let mut prober = Prober::new(self.settings.clone(), local, seed)?;
        prober
            .set_targets(std::time::Instant::now(), targets)
            .map_err(|duplicate| anyhow!("duplicate health-check target {}", duplicate.0))?;
        let (commands, command_receiver) = mpsc::channel(4);
        let events = self.events.clone();
        tokio::spawn(async move {
            if let Err(error) = health::run(prober, socket, events, command_receiver).await {
                log::error!("health checks stopped: {error}");
            }
        });
        log::info!("health checks from {local}");
        Ok(commands)
    }
}

/// A socket for health checks from `source`, and the address it got.
async fn bind(source: IpAddr) -> anyhow::Result<(UdpSocket, SocketAddr)> {
    let socket = UdpSocket::bind(SocketAddr::new(source, 0))
        .await
        .with_context(|| format!("binding the health-check socket to {source}"))?;
    let local = socket
        .local_addr()
        .context("reading the health-check socket")?;
    Ok((socket, local))
}
