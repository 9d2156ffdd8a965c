//! What the daemon answers on its control socket (see `crate::control`).

use std::{collections::BTreeMap, fmt::Write as _, net::SocketAddr};

use sipxdp_common::{hash::xxh64_bytes, maps::PlacementKey};

use super::{Daemon, checks::HealthChecks, kernel_settings};
use crate::{
    config::{AdminState, ForwardingMode, Protocol, VipConfig},
    control::protocol::{Answer, BackendAction, Request},
    health::TargetStatus,
    lookup,
    metrics::{
        Attached, BackendState, SlowPathCount, SlowPathSent, Snapshot, TableState, exposition,
    },
    plan::{BackendId, Health},
    report::Report,
    slowpath::{coarse_now_ns, decide::dialog_backend},
};

impl Daemon {
    /// Carries out `request`. `checks` are the running health checkers, if any.
    pub(super) async fn answer(
        &mut self,
        request: Request,
        checks: &mut Option<HealthChecks>,
    ) -> Answer {
        match request {
            Request::Status => {
                let health = match checks {
                    Some(checks) => checks.snapshot().await.map_err(|error| error.to_string())?,
                    None => BTreeMap::new(),
                };
                self.status(&health).map_err(|error| format!("{error:#}"))
            }
            Request::Hash { vip, call_id } => self.hash(&vip, &call_id),
            Request::Backend {
                action: action @ (BackendAction::Add { .. } | BackendAction::Remove),
                vip,
                backend,
            } => {
                let answer = self.change_backends(action, &vip, backend)?;
                if let Some(checks) = checks {
                    checks
                        .set_targets(self.checked())
                        .await
                        .map_err(|error| format!("{error:#}"))?;
                }
                Ok(answer)
            }
            Request::Backend {
                action,
                vip,
                backend,
            } => self.set_admin(action, &vip, backend),
            Request::Reload => {
                self.reload().map_err(|error| format!("{error:#}"))?;
                if let Some(checks) = checks {
                    checks
                        .set_targets(self.checked())
                        .await
                        .map_err(|error| format!("{error:#}"))?;
                }
                log::info!("reloaded {} (control socket)", self.config_path.display());
                Ok(format!("reloaded {}", self.config_path.display()))
            }
        }
    }

    /// The metrics text of this moment, for one scrape.
    pub(super) async fn metrics(&self, checks: &Option<HealthChecks>) -> Result<String, String> {
        let health = match checks {
            Some(checks) => checks.snapshot().await.map_err(|error| error.to_string())?,
            None => BTreeMap::new(),
        };
        let report = Report::read(&self.dataplane, &self.plan, &self.slots)
            .map_err(|error| error.to_string())?;
        let snapshot = Snapshot {
            report,
            backends: self
                .backend_states(&health)
                .into_iter()
                .map(|(state, _)| state)
                .collect(),
            attached: self
                .config
                .interfaces
                .iter()
                .map(|interface| Attached {
                    interface: interface.name.clone(),
                    mode: self
                        .xdp_modes
                        .get(&interface.name)
                        .map_or("unknown", |mode| mode.name()),
                    requested: interface.xdp_mode.name(),
                })
                .collect(),
            verified_instructions: self.dataplane.verified_instructions().ok().flatten(),
            tables: self
                .tables
                .iter()
                .map(|(vip, published)| TableState {
                    vip: vip.clone(),
                    publications: published.count,
                    last_rebuild_seconds: published
                        .last
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |since| since.as_secs_f64()),
                })
                .collect(),
            slow_path: self.slow_path_counts(),
            slow_path_sent: self.slow_path_sent(),
            maps: self.occupancy.fills(),
        };
        exposition(&snapshot).map_err(|error| error.to_string())
    }

    /// The slow path's counts by VIP name; `None` when it is off.
    fn slow_path_counts(&self) -> Option<Vec<SlowPathCount>> {
        let slow_path = self.slow_path.as_ref()?;
        let counts = slow_path
            .counts()
            .snapshot()
            .into_iter()
            .map(|((address, outcome, reason), messages)| SlowPathCount {
                vip: self.udp_vip_name(address),
                outcome: outcome.name(),
                reason,
                messages,
            })
            .collect();
        Some(counts)
    }

    /// The messages the slow path sent, by VIP name and backend; empty when it is off.
    fn slow_path_sent(&self) -> Vec<SlowPathSent> {
        let Some(slow_path) = &self.slow_path else {
            return Vec::new();
        };
        slow_path
            .counts()
            .sent()
            .into_iter()
            .map(|((vip, backend), messages)| SlowPathSent {
                vip: self.udp_vip_name(vip),
                backend: backend.to_string(),
                messages,
            })
            .collect()
    }

    /// The name of the UDP VIP at `address`, or the address when no VIP has it any more.
    fn udp_vip_name(&self, address: SocketAddr) -> String {
        self.config
            .vips
            .iter()
            .find(|vip| {
                vip.protocol == Protocol::Udp && SocketAddr::new(vip.address, vip.port) == address
            })
            .map_or_else(|| address.to_string(), |vip| vip.name.clone())
    }

    /// The backend a Call-ID goes to now: the one its dialog remembers, if any, else the
    /// live table's choice.
    fn hash(&self, vip: &str, call_id: &str) -> Answer {
        let Some(config) = self.config.vips.iter().find(|config| config.name == vip) else {
            let names: Vec<&str> = self
                .config
                .vips
                .iter()
                .map(|vip| vip.name.as_str())
                .collect();
            return Err(format!("no VIP named {vip:?}; the VIPs are {names:?}"));
        };
        lookup::placed_by_call_id(config)?;
        let settings = kernel_settings(&self.config);
        let hash = xxh64_bytes(call_id.trim_ascii().as_bytes(), settings.hash_seed);
        let vip_slot = self
            .slots
            .vip(&crate::plan::vip_key(config))
            .ok_or_else(|| format!("VIP {vip} has no slot"))?;
        let key = PlacementKey {
            hash,
            vip_slot,
            padding: 0,
        };
        // As the kernel decides: a dialog seen within the idle time, whose backend is in
        // service and still the one it was placed on.
        if let Ok(Some(dialog)) = self.dataplane.dialog(&key)
            && let Some(slot) = dialog_backend(
                &dialog,
                &self.plan.backends,
                coarse_now_ns(),
                settings.dialog_idle_ns,
            )
            && let Some(backend) = self.slots.backend_at(slot)
        {
            return Ok(format!("{} (its dialog's backend)", backend.address));
        }
        match lookup::backend_by_hash(&self.plan, &self.slots, vip, hash) {
            Some(backend) => Ok(format!("{} (by the Maglev table)", backend.address)),
            None => Err(format!("VIP {vip} has no backend in service")),
        }
    }

    /// Sets or clears an operator's admin state for a backend and publishes the change.
    fn set_admin(&mut self, action: BackendAction, vip: &str, backend: SocketAddr) -> Answer {
        let id = BackendId {
            vip: vip.to_owned(),
            address: backend,
        };
        let configured = self
            .config
            .vips
            .iter()
            .filter(|config| config.name == vip)
            .flat_map(|config| &config.backends)
            .find(|config| config.socket_address() == backend)
            .map(|config| config.state)
            .ok_or_else(|| format!("VIP {vip} has no backend {backend}"))?;
        let state = match action {
            BackendAction::Drain => AdminState::Draining,
            BackendAction::Disable => AdminState::Disabled,
            BackendAction::Enable | BackendAction::Add { .. } | BackendAction::Remove => configured,
        };
        if state == configured {
            self.admin.remove(&id);
        } else {
            self.admin.insert(id, state);
        }
        self.publish().map_err(|error| format!("{error:#}"))?;
        log::info!(
            "backend {backend} of VIP {vip} is now {} (control socket)",
            state.name()
        );
        Ok(format!("backend {backend} of VIP {vip}: {}", state.name()))
    }

    /// Adds or removes a backend until the next restart: the change is checked, the new
    /// backend's path resolved, and the plan published, or nothing changes.
    fn change_backends(&mut self, action: BackendAction, vip: &str, backend: SocketAddr) -> Answer {
        let mut overlay = self.overlay.clone();
        match action {
            BackendAction::Add { weight } => overlay.add(&self.config, vip, backend, weight)?,
            _ => overlay.remove(&self.config, vip, backend)?,
        }
        let config = overlay.apply(&self.file_config);
        let paths = super::paths::resolve_all(&config, &mut self.resolver)
            .map_err(|errors| super::joined(errors).to_string())?;
        self.overlay = overlay;
        self.config = config;
        self.paths = paths;
        self.publish().map_err(|error| format!("{error:#}"))?;
        let done = match action {
            BackendAction::Add { weight } => format!("added with weight {weight}"),
            _ => "removed".to_owned(),
        };
        log::info!("backend {backend} of VIP {vip} {done} (control socket)");
        Ok(format!(
            "backend {backend} of VIP {vip}: {done}, until the next restart; write it in the \
             configuration file to keep it"
        ))
    }

    /// The interfaces and the mode the program runs in on each, then VIPs and backends:
    /// address, weight, admin state, health, latency and the packets forwarded to each.
    fn status(&self, health: &BTreeMap<u32, TargetStatus>) -> anyhow::Result<String> {
        let states = self.backend_states(health);
        let mut text = String::new();
        for interface in &self.config.interfaces {
            match self.xdp_modes.get(&interface.name) {
                Some(mode) => writeln!(text, "interface {}: {mode}", interface.name)?,
                None => writeln!(text, "interface {}: mode unknown", interface.name)?,
            }
        }
        for vip in &self.config.vips {
            let protocol = match vip.protocol {
                Protocol::Udp => "udp",
                Protocol::Tcp => "tcp",
            };
            let mode = match vip.mode {
                ForwardingMode::Dsr => "dsr",
                ForwardingMode::Nat => "nat",
            };
            writeln!(
                text,
                "VIP {} {}/{protocol} mode {mode}",
                vip.name,
                SocketAddr::new(vip.address, vip.port)
            )?;
            writeln!(
                text,
                "  {:<40} {:>6} {:<9} {:<5} {:>10} {:>14}",
                "BACKEND", "WEIGHT", "STATE", "UP", "LATENCY", "PACKETS"
            )?;
            for (state, slot) in states.iter().filter(|(state, _)| state.vip == vip.name) {
                let packets = match slot {
                    Some(slot) => self.dataplane.backend_counter(*slot)?.packets,
                    None => 0,
                };
                let latency = state.latency_seconds.map_or_else(
                    || "-".to_owned(),
                    |seconds| format!("{:.1} ms", seconds * 1_000.0),
                );
                writeln!(
                    text,
                    "  {:<40} {:>6} {:<9} {:<5} {:>10} {:>14}",
                    state.backend,
                    state.weight,
                    state.admin,
                    if state.up { "yes" } else { "no" },
                    latency,
                    packets
                )?;
            }
            if let Some(line) = self.slow_path_line(vip) {
                writeln!(text, "{line}")?;
            }
        }
        Ok(text)
    }

    /// The slow path's messages on `vip` for `status`: by outcome, then in all (the last
    /// number, which `top` turns into a rate). `None` for a TCP VIP or without a slow path.
    fn slow_path_line(&self, vip: &VipConfig) -> Option<String> {
        let slow_path = self.slow_path.as_ref()?;
        if vip.protocol != Protocol::Udp {
            return None;
        }
        let address = SocketAddr::new(vip.address, vip.port);
        let mut by_outcome = [0u64; 3];
        for ((counted, outcome, _), messages) in slow_path.counts().snapshot() {
            if counted == address {
                by_outcome[outcome as usize] += messages;
            }
        }
        let [forwarded, fallback, dropped] = by_outcome;
        let detail = format!("forwarded {forwarded}, fallback {fallback}, dropped {dropped}");
        Some(format!(
            "  {:<40} {:>38} {:>14}",
            "slow path",
            detail,
            forwarded + fallback + dropped
        ))
    }

    /// Each configured backend's state, and its slot if it has one.
    pub(super) fn backend_states(
        &self,
        health: &BTreeMap<u32, TargetStatus>,
    ) -> Vec<(BackendState, Option<u32>)> {
        let mut states = Vec::new();
        for vip in &self.config.vips {
            for backend in &vip.backends {
                let id = BackendId {
                    vip: vip.name.clone(),
                    address: backend.socket_address(),
                };
                let slot = self.slots.backend(&id);
                let status = slot.and_then(|slot| health.get(&slot));
                let state = BackendState {
                    vip: vip.name.clone(),
                    backend: id.address.to_string(),
                    weight: backend.weight,
                    admin: self.admin.get(&id).copied().unwrap_or(backend.state).name(),
                    up: self.health.get(&id).copied().unwrap_or(Health::Up) == Health::Up,
                    checked: status.is_some(),
                    latency_seconds: status
                        .and_then(|status| status.last_latency)
                        .map(|latency| latency.as_secs_f64()),
                    latencies: status
                        .map(|status| status.latencies.clone())
                        .unwrap_or_default(),
                    check_failures: status.map_or(0, |status| status.failures_total),
                };
                states.push((state, slot));
            }
        }
        states
    }
}
