//! From the configuration and what the daemon learnt at runtime (backend health, admin
//! overrides, where each backend is on the network) to the contents of the program's
//! maps. Pure and deterministic, so it is tested without a kernel; `dataplane` writes the
//! result.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
};

use sipxdp_common::{
    maglev::{MaglevBackend, MaglevError, build_table},
    maps::{
        Address, BACKEND_IN_SERVICE, Backend, MAX_BACKENDS, MAX_VIPS, PROTOCOL_TCP, PROTOCOL_UDP,
        VIP_DROP_KEEP_ALIVE, VIP_DROP_NOT_SIP, VipConfig as VipMapEntry, VipKey, ipv4_mapped,
    },
};
use thiserror::Error;

use crate::config::{AdminState, Config, Policy, Protocol, VipConfig};

/// Errors of planning, each naming the VIP or backend concerned.
#[derive(Debug, Error)]
pub enum PlanError {
    #[error("more than {MAX_VIPS} VIPs")]
    TooManyVips,
    #[error("more than {MAX_BACKENDS} backends")]
    TooManyBackends,
    #[error("building the Maglev table of VIP {vip}: {source}")]
    Table {
        vip: String,
        #[source]
        source: MaglevError,
    },
}

/// A backend as the control plane knows it: the VIP it serves and its address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendId {
    pub vip: String,
    pub address: SocketAddr,
}

/// Health as the checker reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Up,
    Down,
}

/// Where frames for a backend go: found in the kernel's tables, or given in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Path {
    pub ifindex: u32,
    pub source_mac: [u8; 6],
    pub destination_mac: [u8; 6],
}

/// What the daemon knows about a backend beyond the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendRuntime {
    pub health: Health,
    /// An operator's override of the configured admin state (`sipxdp backend …`).
    pub admin: Option<AdminState>,
    /// `None` while the backend cannot be reached (no route, neighbour unresolved).
    pub path: Option<Path>,
}

/// Slot numbers handed out so far. Slots stay with their VIP or backend across reloads,
/// so counters and tables do not move, and a freed slot is reused only by a later plan.
#[derive(Clone, Debug, Default)]
pub struct Slots {
    vips: BTreeMap<VipKey, u32>,
    backends: BTreeMap<BackendId, u32>,
}

impl Slots {
    fn assign<K: Ord + Clone>(
        current: &mut BTreeMap<K, u32>,
        wanted: &BTreeSet<K>,
        limit: u32,
    ) -> Option<()> {
        current.retain(|key, _| wanted.contains(key));
        let mut used: BTreeSet<u32> = current.values().copied().collect();
        let mut next_free = 0;
        for key in wanted {
            if current.contains_key(key) {
                continue;
            }
            while used.contains(&next_free) {
                next_free += 1;
            }
            if next_free >= limit {
                return None;
            }
            used.insert(next_free);
            current.insert(key.clone(), next_free);
        }
        Some(())
    }

    /// The backend holding `slot`, if the last plan gave it to one.
    pub fn backend_at(&self, slot: u32) -> Option<&BackendId> {
        self.backends
            .iter()
            .find_map(|(id, &held)| (held == slot).then_some(id))
    }

    /// The slot of a VIP, if the last plan gave it one.
    pub fn vip(&self, key: &VipKey) -> Option<u32> {
        self.vips.get(key).copied()
    }

    /// The slot of a backend, if the last plan gave it one.
    pub fn backend(&self, id: &BackendId) -> Option<u32> {
        self.backends.get(id).copied()
    }
}

/// What the maps should hold for one VIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipPlan {
    pub name: String,
    pub key: VipKey,
    /// The map entry (its generation is the data plane's business).
    pub entry: VipMapEntry,
    /// The Maglev table: backend slots; empty when no backend can take calls.
    pub table: Vec<u16>,
}

/// What the maps should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub vips: Vec<VipPlan>,
    /// Backend slots and their map entries.
    pub backends: BTreeMap<u32, Backend>,
}

/// The map key of a VIP.
pub fn vip_key(vip: &VipConfig) -> VipKey {
    VipKey {
        address: address_bytes(vip.address),
        port: vip.port,
        protocol: match vip.protocol {
            Protocol::Udp => PROTOCOL_UDP,
            Protocol::Tcp => PROTOCOL_TCP,
        },
        padding: 0,
    }
}

/// An address as the program stores it.
pub fn address_bytes(address: IpAddr) -> Address {
    match address {
        IpAddr::V4(v4) => ipv4_mapped(v4.octets()),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Computes the map contents for `config`, assigning slots in `slots`. `runtime` tells
/// what is known about each backend.
pub fn plan(
    config: &Config,
    slots: &mut Slots,
    runtime: impl Fn(&BackendId) -> BackendRuntime,
) -> Result<Plan, PlanError> {
    let vip_keys: BTreeSet<VipKey> = config.vips.iter().map(vip_key).collect();
    Slots::assign(&mut slots.vips, &vip_keys, MAX_VIPS).ok_or(PlanError::TooManyVips)?;
    let backend_ids: BTreeSet<BackendId> = config
        .vips
        .iter()
        .flat_map(|vip| {
            vip.backends.iter().map(|backend| BackendId {
                vip: vip.name.clone(),
                address: backend.socket_address(),
            })
        })
        .collect();
    Slots::assign(&mut slots.backends, &backend_ids, MAX_BACKENDS)
        .ok_or(PlanError::TooManyBackends)?;

    let mut plan = Plan::default();
    for vip in &config.vips {
        let key = vip_key(vip);
        let mut members = Vec::new();
        let mut member_keys = Vec::new();
        for backend in &vip.backends {
            let id = BackendId {
                vip: vip.name.clone(),
                address: backend.socket_address(),
            };
            let slot = slots.backends[&id];
            let known = runtime(&id);
            let admin = known.admin.unwrap_or(backend.state);
            let up = known.health == Health::Up;
            let entry = match known.path {
                Some(path) => Backend {
                    destination_mac: path.destination_mac,
                    source_mac: path.source_mac,
                    ifindex: path.ifindex,
                    // Draining backends stay in service for calls that stick to them.
                    flags: if up && admin != AdminState::Disabled {
                        BACKEND_IN_SERVICE
                    } else {
                        0
                    },
                    address: address_bytes(backend.address),
                    port: backend.port,
                    padding: [0; 2],
                },
                None => Backend {
                    address: address_bytes(backend.address),
                    port: backend.port,
                    ..Backend::default()
                },
            };
            if entry.flags & BACKEND_IN_SERVICE != 0
                && admin == AdminState::Active
                && backend.weight > 0
            {
                members.push((slot, backend.weight));
                member_keys.push(id.address.to_string());
            }
            plan.backends.insert(slot, entry);
        }
        let table = if members.is_empty() {
            Vec::new()
        } else {
            let backends: Vec<MaglevBackend> = members
                .iter()
                .zip(&member_keys)
                .map(|(&(slot, weight), key)| MaglevBackend {
                    key: key.as_bytes(),
                    weight,
                    slot,
                })
                .collect();
            build_table(&backends, vip.table_size)
                .map_err(|source| PlanError::Table {
                    vip: vip.name.clone(),
                    source,
                })?
                .into_iter()
                // Slots are below MAX_BACKENDS (4,096), so they fit.
                .map(|slot| slot as u16)
                .collect()
        };
        let mut flags = 0;
        if vip.keep_alive == Policy::Drop {
            flags |= VIP_DROP_KEEP_ALIVE;
        }
        if vip.non_sip == Policy::Drop {
            flags |= VIP_DROP_NOT_SIP;
        }
        plan.vips.push(VipPlan {
            name: vip.name.clone(),
            key,
            entry: VipMapEntry {
                slot: slots.vips[&key],
                flags,
                table_size: table.len() as u32,
                generation: 0,
            },
            table,
        });
    }
    Ok(plan)
}
