//! From the configuration and what the daemon learnt at runtime (backend health, admin
//! overrides, where each backend is on the network) to the contents of the program's
//! maps. Pure and deterministic, so it is tested without a kernel; `dataplane` writes the
//! result.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
};

use sipxdp_common::{
    flood::{FloodConfig as FloodEntry, RateLimit, UserAgentPatterns},
    maglev::{MaglevBackend, MaglevError, build_table},
    maps::{
        Address, BACKEND_IN_SERVICE, Backend, MAGLEV_EMPTY, MAX_BACKENDS, MAX_VIPS, NatReturn,
        PROTOCOL_TCP, PROTOCOL_UDP, VIP_DROP_KEEP_ALIVE, VIP_DROP_NOT_SIP, VIP_DROP_USER_AGENTS,
        VIP_NAT, VIP_RATE_LIMIT, VipConfig as VipMapEntry, VipKey, ipv4_mapped, table_entry,
    },
};
use thiserror::Error;

use crate::config::{AdminState, Config, ForwardingMode, Policy, Protocol, VipConfig};

pub mod writes;

/// Errors of planning, each naming the VIP or backend concerned.
#[derive(Debug, Error)]
pub enum PlanError {
    #[error("more than {MAX_VIPS} VIPs")]
    TooManyVips,
    #[error("more than {MAX_BACKENDS} backends")]
    TooManyBackends,
    /// Validation keeps these within the kernel's bounds; reaching this is a bug.
    #[error("the flood protection of VIP {vip} is beyond what the kernel holds")]
    Flood { vip: String },
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
/// so counters, tables and remembered dialogs do not move. A slot freed by a plan may be
/// given to a new backend in the same plan; its incarnation then changes, so dialogs
/// remembered for the old holder are placed by the table again instead of following the
/// slot to the new one.
#[derive(Clone, Debug, Default)]
pub struct Slots {
    vips: BTreeMap<VipKey, u32>,
    backends: BTreeMap<BackendId, u32>,
    /// How many times each backend slot has been handed out, wrapping, over the base.
    incarnations: BTreeMap<u32, u16>,
    incarnation_base: u16,
}

impl Slots {
    /// Keeps the slots of the keys still wanted and gives the lowest free slots to the new
    /// ones; returns the slots given out, or `None` when more than `limit` are needed.
    fn assign<K: Ord + Clone>(
        current: &mut BTreeMap<K, u32>,
        wanted: &BTreeSet<K>,
        limit: u32,
    ) -> Option<Vec<u32>> {
        current.retain(|key, _| wanted.contains(key));
        let mut used: BTreeSet<u32> = current.values().copied().collect();
        let mut given = Vec::new();
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
            given.push(next_free);
        }
        Some(given)
    }

    /// The slots a previous daemon left in the maps (`pinned`, as
    /// `Dataplane::pinned_plan` reads them) for the VIPs and backends `config` still has:
    /// each keeps its slot, and each backend its incarnation, so the calls the kernel
    /// remembers keep their backends through a restart. Slots handed out from now on get
    /// incarnations above every pinned one, so no remembered call follows a slot to
    /// another backend.
    pub fn taking_over(pinned: &Plan, config: &Config) -> Self {
        let mut slots = Self {
            incarnation_base: pinned
                .backends
                .values()
                .map(|backend| backend.incarnation)
                .max()
                .unwrap_or(0),
            ..Self::default()
        };
        for vip in &config.vips {
            let key = vip_key(vip);
            let Some(held) = pinned.vips.iter().find(|held| held.key == key) else {
                continue;
            };
            let vip_slot = held.entry.slot;
            slots.vips.insert(key, vip_slot);
            for backend in &vip.backends {
                let address = address_bytes(backend.address);
                let found = pinned.backends.iter().find(|(_, entry)| {
                    u32::from(entry.vip_slot) == vip_slot
                        && entry.address == address
                        && entry.port == backend.port
                });
                if let Some((&slot, entry)) = found {
                    let id = BackendId {
                        vip: vip.name.clone(),
                        address: backend.socket_address(),
                    };
                    slots.backends.insert(id, slot);
                    slots.incarnations.insert(slot, entry.incarnation);
                }
            }
        }
        slots
    }

    /// The incarnation of a backend slot: changes each time the slot changes hands.
    pub fn incarnation(&self, slot: u32) -> u16 {
        self.incarnations
            .get(&slot)
            .copied()
            .unwrap_or(self.incarnation_base)
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
    /// Its `FLOOD` entry, in force where `entry.flags` says.
    pub flood: FloodEntry,
}

/// What the maps should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub vips: Vec<VipPlan>,
    /// Backend slots and their map entries.
    pub backends: BTreeMap<u32, Backend>,
    /// NAT backends' SIP addresses and the VIP that replaces them on the way back.
    pub nat_returns: BTreeMap<VipKey, NatReturn>,
}

/// The backend slot that `table`, a VIP's published Maglev table, gives `hash`, indexed
/// as the kernel indexes it (`table_entry` of the table's size); `None` for an empty table.
pub fn table_slot(table: &[u16], hash: u64) -> Option<u32> {
    let size = u32::try_from(table.len()).ok().filter(|size| *size > 0)?;
    table
        .get(table_entry(hash, size))
        .filter(|slot| **slot != MAGLEV_EMPTY)
        .map(|slot| u32::from(*slot))
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
    let given = Slots::assign(&mut slots.backends, &backend_ids, MAX_BACKENDS)
        .ok_or(PlanError::TooManyBackends)?;
    for slot in given {
        let base = slots.incarnation_base;
        let incarnation = slots.incarnations.entry(slot).or_insert(base);
        *incarnation = incarnation.wrapping_add(1);
    }

    let mut plan = Plan::default();
    for vip in &config.vips {
        let key = vip_key(vip);
        // VIP slots are below MAX_VIPS (16), so they fit.
        let vip_slot = slots.vips[&key] as u16;
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
                    incarnation: slots.incarnation(slot),
                    vip_slot,
                    padding: 0,
                },
                None => Backend {
                    address: address_bytes(backend.address),
                    port: backend.port,
                    incarnation: slots.incarnation(slot),
                    vip_slot,
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
        if vip.mode == ForwardingMode::Nat {
            flags |= VIP_NAT;
            for backend in &vip.backends {
                let backend_key = VipKey {
                    address: address_bytes(backend.address),
                    port: backend.port,
                    ..key
                };
                plan.nat_returns.insert(
                    backend_key,
                    NatReturn {
                        vip_address: key.address,
                        vip_port: key.port,
                        padding: 0,
                        vip_slot: slots.vips[&key],
                    },
                );
            }
        }
        if vip.keep_alive == Policy::Drop {
            flags |= VIP_DROP_KEEP_ALIVE;
        }
        if vip.non_sip == Policy::Drop {
            flags |= VIP_DROP_NOT_SIP;
        }
        let (flood_flags, flood) = flood(vip)?;
        flags |= flood_flags;
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
            flood,
        });
    }
    Ok(plan)
}

/// The VIP's flood protection flags and its `FLOOD` entry.
fn flood(vip: &VipConfig) -> Result<(u32, FloodEntry), PlanError> {
    let beyond = || PlanError::Flood {
        vip: vip.name.clone(),
    };
    let mut flags = 0;
    let mut entry = FloodEntry::default();
    if let Some(limit) = vip.flood.rate_limit {
        entry.rate_limit =
            RateLimit::new(u64::from(limit.rate), u64::from(limit.burst)).ok_or_else(beyond)?;
        flags |= VIP_RATE_LIMIT;
    }
    if !vip.flood.drop_user_agents.is_empty() {
        let patterns = vip.flood.drop_user_agents.iter().map(String::as_bytes);
        entry.user_agents = UserAgentPatterns::new(patterns).ok_or_else(beyond)?;
        flags |= VIP_DROP_USER_AGENTS;
    }
    Ok((flags, entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::parse,
        test_support::{self, Machine},
    };

    /// A VIP over backends .21, .22, … with the given `state` lines.
    fn config(states: &[&str]) -> Config {
        let mut text = String::from(
            "[[interfaces]]\nname = \"eth0\"\n[[vips]]\nname = \"v\"\n\
             address = \"198.51.100.100\"\ntable_size = 101\n",
        );
        for (index, state) in states.iter().enumerate() {
            text.push_str(&format!(
                "[[vips.backends]]\naddress = \"198.51.100.{}\"\nstate = \"{state}\"\n",
                21 + index
            ));
        }
        parse(&text, "test.toml", &Machine).expect("a valid configuration")
    }

    /// Every backend reachable, with `health`.
    fn reachable(health: Health) -> impl Fn(&BackendId) -> BackendRuntime {
        move |_| test_support::reachable(health)
    }

    fn members(plan: &Plan) -> BTreeSet<u16> {
        plan.vips[0].table.iter().copied().collect()
    }

    #[test]
    fn admin_states_decide_table_membership_and_service() {
        let config = config(&["active", "draining", "disabled"]);
        let plan = plan(&config, &mut Slots::default(), reachable(Health::Up)).expect("a plan");
        assert_eq!(members(&plan), BTreeSet::from([0]));
        let in_service = |slot: u32| plan.backends[&slot].flags & BACKEND_IN_SERVICE != 0;
        // A draining backend takes no new calls but keeps the ones it has.
        assert!(in_service(0) && in_service(1) && !in_service(2));
    }

    #[test]
    fn a_down_backend_leaves_service_and_the_table() {
        let config = config(&["active", "active"]);
        let plan = plan(&config, &mut Slots::default(), reachable(Health::Down)).expect("a plan");
        assert!(plan.vips[0].table.is_empty());
        assert!(
            plan.backends
                .values()
                .all(|b| b.flags & BACKEND_IN_SERVICE == 0)
        );
    }

    #[test]
    fn slots_stay_and_a_reused_slot_gets_a_new_incarnation() {
        let mut slots = Slots::default();
        let first = plan(
            &config(&["active", "active"]),
            &mut slots,
            reachable(Health::Up),
        )
        .expect("a plan");
        let again = plan(
            &config(&["active", "active"]),
            &mut slots,
            reachable(Health::Up),
        )
        .expect("a plan");
        assert_eq!(first, again);
        assert_eq!(first.backends[&0].incarnation, 1);

        // .21 goes and .23 comes in the same plan: .23 gets the freed slot 0, under a new
        // incarnation, while .22 keeps slot 1 and its incarnation.
        let mut text = config(&["active", "active", "active"]);
        text.vips[0].backends.remove(0);
        let replaced = plan(&text, &mut slots, reachable(Health::Up)).expect("a plan");
        let at = |slot: u32| slots.backend_at(slot).map(|id| id.address.to_string());
        assert_eq!(at(0).as_deref(), Some("198.51.100.23:5060"));
        assert_eq!(at(1).as_deref(), Some("198.51.100.22:5060"));
        assert_eq!(replaced.backends[&0].incarnation, 2);
        assert_eq!(replaced.backends[&1].incarnation, 1);
    }

    #[test]
    fn a_new_daemon_takes_over_the_pinned_slots_and_incarnations() {
        // A first daemon's history: .21 and .22, then .21 replaced by .23 in slot 0.
        let mut slots = Slots::default();
        plan(
            &config(&["active", "active"]),
            &mut slots,
            reachable(Health::Up),
        )
        .expect("a plan");
        let mut same = config(&["active", "active", "active"]);
        same.vips[0].backends.remove(0);
        let pinned = plan(&same, &mut slots, reachable(Health::Up)).expect("a plan");
        assert_eq!(pinned.backends[&0].incarnation, 2);

        // The same configuration: every slot and incarnation as the maps hold them, so
        // every remembered call still finds its backend.
        let mut taken = Slots::taking_over(&pinned, &same);
        assert_eq!(
            plan(&same, &mut taken, reachable(Health::Up)).expect("a plan"),
            pinned
        );

        // .22 is gone and .25 is new: .23 keeps slot 0 and incarnation 2; .25 gets the
        // freed slot 1 under an incarnation no pinned backend has.
        let mut changed = config(&["active"; 5]);
        for index in [3, 1, 0] {
            changed.vips[0].backends.remove(index);
        }
        let mut taken = Slots::taking_over(&pinned, &changed);
        let next = plan(&changed, &mut taken, reachable(Health::Up)).expect("a plan");
        let at = |slot: u32| taken.backend_at(slot).map(|id| id.address.to_string());
        assert_eq!(at(0).as_deref(), Some("198.51.100.23:5060"));
        assert_eq!(at(1).as_deref(), Some("198.51.100.25:5060"));
        assert_eq!(next.backends[&0].incarnation, 2);
        assert_eq!(next.backends[&1].incarnation, 3);

        // Another VIP at the same slot is not the same VIP: nothing is taken over.
        let mut other = same.clone();
        other.vips[0].address = "198.51.100.101".parse().expect("an address");
        let mut taken = Slots::taking_over(&pinned, &other);
        let next = plan(&other, &mut taken, reachable(Health::Up)).expect("a plan");
        assert!(
            next.backends
                .values()
                .all(|backend| backend.incarnation == 3)
        );
    }
}
