//! The daemon's SIP OPTIONS checkers: one per address family in use, because a checker
//! sends from one UDP socket and writes that socket's address into its requests.

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
pub struct Checked {
    pub targets: Vec<Target>,
    pub vips: BTreeSet<IpAddr>,
}

/// The running checkers and the events of all of them.
pub struct HealthChecks {
    settings: health::Settings,
    /// One command channel per family with a checker: IPv6 or not.
    checkers: Vec<(bool, mpsc::Sender<health::Command>)>,
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
            events,
        };
        checks.set_targets(checked).await?;
        Ok((checks, receiver))
    }

    /// Replaces the targets, starting a checker for a family seen for the first time.
    pub async fn set_targets(&mut self, checked: Checked) -> anyhow::Result<()> {
        for ipv6 in [false, true] {
            let family: Vec<Target> = checked
                .targets
                .iter()
                .filter(|target| target.address.is_ipv6() == ipv6)
                .cloned()
                .collect();
            match self.checkers.iter().find(|(v6, _)| *v6 == ipv6) {
                Some((_, commands)) => {
                    let (reply, answer) = oneshot::channel();
                    commands
                        .send(health::Command::SetTargets {
                            targets: family,
                            reply,
                        })
                        .await
                        .context("updating the health-check targets")?;
                    answer
                        .await
                        .context("the health checker stopped")?
                        .map_err(|duplicate| {
                            anyhow!("duplicate health-check target {}", duplicate.0)
                        })?;
                }
                None if !family.is_empty() => {
                    let commands = self.spawn(family, &checked.vips).await?;
                    self.checkers.push((ipv6, commands));
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Every target's status, from all checkers.
    pub async fn snapshot(&self) -> anyhow::Result<BTreeMap<u32, TargetStatus>> {
        let mut statuses = BTreeMap::new();
        for (_, commands) in &self.checkers {
            let (reply, answer) = oneshot::channel();
            commands
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

    /// Starts a checker for `targets`, all of one family, sending from an address that is
    /// none of `vips`.
    async fn spawn(
        &self,
        targets: Vec<Target>,
        vips: &BTreeSet<IpAddr>,
    ) -> anyhow::Result<mpsc::Sender<health::Command>> {
        let first = targets.first().context("no backend to check")?.address;
        let source = health_check_source(first, vips)?;
        let socket = UdpSocket::bind(SocketAddr::new(source, 0))
            .await
            .context("binding the health-check socket")?;
        let local = socket
            .local_addr()
            .context("reading the health-check socket")?;
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
