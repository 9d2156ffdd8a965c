//! Where the slow path sends a message: the kernel's choice (Call-ID hash, Maglev table,
//! dialog stickiness) made on the whole message without the kernel's scan window, and the
//! VIP's policies for messages without a usable Call-ID. Sans-IO: the dialogs live behind
//! [`DialogStore`] and the clock is an argument, so it is tested without a kernel.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use sipxdp_common::{
    callid::{MessageLimits, Unplaceable, locate},
    flood::UserAgentPatterns,
    hash::xxh64_bytes,
    maps::{BACKEND_IN_SERVICE, Backend, Placement, PlacementKey, Settings},
    outcome::Reason,
    payload::SlicePayload,
    scanner::is_scanner,
};

use super::outcome::{Cause, Outcome};
use crate::{
    config::{Config, ForwardingMode, Policy, Protocol, UnplaceablePolicy},
    plan::{Plan, Slots, address_bytes, table_slot},
};

/// What the slow path needs of the running configuration, published by the daemon after
/// every change of the maps.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub hash_seed: u64,
    /// As `Settings::dialog_idle_ns`: 0 turns stickiness off.
    pub dialog_idle_ns: u64,
    /// UDP VIPs by address.
    pub vips: BTreeMap<SocketAddr, VipView>,
    /// Backend slots, as written to `BACKENDS`.
    pub backends: BTreeMap<u32, Backend>,
}

/// One UDP VIP.
#[derive(Clone, Debug)]
pub struct VipView {
    pub name: String,
    pub slot: u32,
    pub address: SocketAddr,
    pub mode: ForwardingMode,
    pub keep_alive: Policy,
    pub non_sip: Policy,
    pub unplaceable: UnplaceablePolicy,
    /// The User-Agent drop list, as published to the kernel (`FLOOD`); empty for none.
    pub user_agents: UserAgentPatterns,
    /// The live Maglev table, as published to the kernel; empty without backends.
    pub table: Vec<u16>,
}

impl View {
    /// The view of `config` as `plan` put it into the maps, with the program's `settings`
    /// (the hash seed and the dialog idle time it runs with).
    pub fn new(config: &Config, settings: &Settings, plan: &Plan, slots: &Slots) -> Self {
        let vips = config
            .vips
            .iter()
            .filter(|vip| vip.protocol == Protocol::Udp)
            .filter_map(|vip| {
                let planned = plan.vips.iter().find(|planned| planned.name == vip.name)?;
                let slot = slots.vip(&planned.key)?;
                let address = SocketAddr::new(vip.address, vip.port);
                let view = VipView {
                    name: vip.name.clone(),
                    slot,
                    address,
                    mode: vip.mode,
                    keep_alive: vip.keep_alive,
                    non_sip: vip.non_sip,
                    unplaceable: vip.unplaceable,
                    user_agents: planned.flood.user_agents,
                    table: planned.table.clone(),
                };
                Some((address, view))
            })
            .collect();
        Self {
            hash_seed: settings.hash_seed,
            dialog_idle_ns: settings.dialog_idle_ns,
            vips,
            backends: plan.backends.clone(),
        }
    }
}

/// The dialogs the kernel remembers (`DIALOGS`), or a stand-in in tests.
pub trait DialogStore {
    fn get(&mut self, key: &PlacementKey) -> Option<Placement>;
    /// Remembers `dialog`; a failure only means the next message is placed by the table.
    fn put(&mut self, key: &PlacementKey, dialog: &Placement);
}

/// What to do with one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send it to the backend in this slot, counted as `outcome` (forwarded or fallback)
    /// for `cause`.
    Forward {
        backend: u32,
        outcome: Outcome,
        cause: Cause,
    },
    /// Drop it, counted for `cause`.
    Drop(Cause),
}

/// Decides where `message`, sent by `client` to the VIP `vip`, goes at `now_ns`
/// (`CLOCK_MONOTONIC_COARSE`, the kernel's dialog clock).
pub fn decide(
    view: &View,
    vip: SocketAddr,
    message: &[u8],
    client: SocketAddr,
    dialogs: &mut impl DialogStore,
    now_ns: u64,
) -> Decision {
    let Some(vip) = view.vips.get(&vip) else {
        return Decision::Drop(Cause::Kernel(Reason::NotVip));
    };
    // The kernel reads the first bytes of the first User-Agent line of a header section
    // within its window; a scanner that hides beyond them, or in fragments, lands here.
    let payload = SlicePayload(message);
    if is_scanner::<_, MessageLimits>(&payload, &vip.user_agents) {
        return Decision::Drop(Cause::Kernel(Reason::Scanner));
    }
    let unplaceable = match locate::<_, MessageLimits>(&payload, view.hash_seed) {
        Ok(call_id) => {
            return match place(view, vip, call_id.hash, dialogs, now_ns) {
                Some((backend, reason)) => Decision::Forward {
                    backend,
                    outcome: Outcome::Forwarded,
                    cause: Cause::Kernel(reason),
                },
                None => Decision::Drop(Cause::Kernel(Reason::NoBackend)),
            };
        }
        Err(reason) => reason,
    };
    let to_fallback = match unplaceable {
        Unplaceable::KeepAlive => vip.keep_alive == Policy::Pass,
        Unplaceable::NotSip => vip.non_sip == Policy::Pass,
        _ => vip.unplaceable == UnplaceablePolicy::Fallback,
    };
    let cause = Cause::Kernel(unplaceable.into());
    if !to_fallback {
        return Decision::Drop(cause);
    }
    match table_backend(view, vip, fallback_hash(client, view.hash_seed)) {
        Some(backend) => Decision::Forward {
            backend,
            outcome: Outcome::Fallback,
            cause,
        },
        None => Decision::Drop(Cause::Kernel(Reason::NoBackend)),
    }
}

/// The hash that picks the fallback backend of a client: XXH64 of its address (16 bytes,
/// IPv4-mapped for IPv4) and port (2 bytes, network order), with the Call-ID hash's seed.
/// One client's unplaceable messages all go to one backend.
pub fn fallback_hash(client: SocketAddr, seed: u64) -> u64 {
    let mut bytes = [0u8; 18];
    bytes[..16].copy_from_slice(&address_bytes(client.ip()));
    bytes[16..].copy_from_slice(&client.port().to_be_bytes());
    xxh64_bytes(&bytes, seed)
}

/// The backend slot of the table entry of `hash`, if it is in service.
fn table_backend(view: &View, vip: &VipView, hash: u64) -> Option<u32> {
    let slot = table_slot(&vip.table, hash)?;
    in_service(view.backends.get(&slot)?).then_some(slot)
}

fn in_service(backend: &Backend) -> bool {
    backend.flags & BACKEND_IN_SERVICE != 0
}

/// The backend slot a remembered dialog still goes to at `now_ns`: the dialog is fresh,
/// and its backend is in service and still the one it was placed on. The kernel's rule
/// (`steer.rs`, `sticky`).
pub fn dialog_backend(
    dialog: &Placement,
    backends: &BTreeMap<u32, Backend>,
    now_ns: u64,
    idle_ns: u64,
) -> Option<u32> {
    let backend = backends.get(&dialog.backend_slot)?;
    (now_ns.wrapping_sub(dialog.last_seen_ns) <= idle_ns
        && in_service(backend)
        && u32::from(backend.incarnation) == dialog.backend_incarnation)
        .then_some(dialog.backend_slot)
}

/// As the kernel places a Call-ID hash: its dialog's backend, else the table's choice,
/// remembered from now on.
fn place(
    view: &View,
    vip: &VipView,
    hash: u64,
    dialogs: &mut impl DialogStore,
    now_ns: u64,
) -> Option<(u32, Reason)> {
    if view.dialog_idle_ns == 0 {
        return table_backend(view, vip, hash).map(|slot| (slot, Reason::CallId));
    }
    let key = PlacementKey {
        hash,
        vip_slot: vip.slot,
        padding: 0,
    };
    let (slot, reason) = match dialogs
        .get(&key)
        .and_then(|dialog| dialog_backend(&dialog, &view.backends, now_ns, view.dialog_idle_ns))
    {
        Some(slot) => (slot, Reason::Dialog),
        None => (table_backend(view, vip, hash)?, Reason::CallId),
    };
    let incarnation = view
        .backends
        .get(&slot)
        .map_or(0, |backend| backend.incarnation);
    dialogs.put(
        &key,
        &Placement {
            last_seen_ns: now_ns,
            backend_slot: slot,
            backend_incarnation: u32::from(incarnation),
        },
    );
    Some((slot, reason))
}

/// An address as the program stores it, back as an `IpAddr`.
pub fn ip_address(bytes: [u8; 16]) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

#[cfg(test)]
mod tests;
