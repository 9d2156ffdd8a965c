//! The program's maps (BTF-defined). Layouts and names are in `sipxdp_common::maps`.

use crate::nat::FibLookup;
use aya_ebpf::{
    btf_maps::{Array, DevMapHash, HashMap, LruHashMap, PerCpuArray},
    macros::btf_map,
};
use sipxdp_common::{
    flood::{DEFAULT_FLOOD_SOURCES, FloodConfig, SourceKey, TokenBucket},
    maps::{
        Backend, Counter, DEFAULT_CONNECTION_ENTRIES, DEFAULT_DIALOG_ENTRIES,
        DEFAULT_FRAGMENT_ENTRIES, FragmentKey, FragmentTarget, MAX_BACKENDS, MAX_NAT_RETURNS,
        MAX_TX_PORTS, MAX_VIPS, MaglevTable, NatReturn, Placement, PlacementKey, Settings,
        VIP_TABLE_ENTRIES, VipEntry, VipKey,
    },
    outcome::OUTCOMES_PER_VIP,
};

const BACKENDS_MAX: usize = MAX_BACKENDS as usize;
const COUNTERS_MAX: usize = ((MAX_VIPS + 1) * OUTCOMES_PER_VIP) as usize;

/// The configured VIPs: an open-addressing table, see `VipKey::home`.
#[btf_map]
pub static VIPS: Array<VipEntry, { VIP_TABLE_ENTRIES as usize }> = Array::new();

/// Two Maglev tables per VIP slot (`VipConfig::table_index`): entry `hash % table_size`
/// of the live one is a backend slot. Plain arrays rather than a map of maps, because
/// the verifier inlines lookups in an array but turns a lookup in an inner map into an
/// indirect call.
#[btf_map]
pub static MAGLEV: Array<MaglevTable, { 2 * MAX_VIPS as usize }> = Array::new();

/// Backend slots.
#[btf_map]
pub static BACKENDS: Array<Backend, BACKENDS_MAX> = Array::new();

/// Interfaces the program redirects to, keyed by ifindex (kernel 5.4).
#[btf_map]
pub static TX_PORTS: DevMapHash<{ MAX_TX_PORTS as usize }> = DevMapHash::new();

/// Global settings, one entry.
#[btf_map]
pub static SETTINGS: Array<Settings, 1> = Array::new();

/// Packets and bytes per VIP, action and reason; see `sipxdp_common::outcome`.
#[btf_map]
pub static COUNTERS: PerCpuArray<Counter, COUNTERS_MAX> = PerCpuArray::new();

/// Packets and bytes forwarded per backend slot.
#[btf_map]
pub static BACKEND_COUNTERS: PerCpuArray<Counter, BACKENDS_MAX> = PerCpuArray::new();

/// Per-CPU room for the `FRAGMENTS` key of the current frame, off the program's stack.
#[btf_map]
pub static FRAGMENT_KEY: PerCpuArray<FragmentKey, 1> = PerCpuArray::new();

/// Per-CPU scratch memory of the payload scanner: one word to hide values from the
/// verifier, and a zero-padded copy of the payload's last 32 bytes.
#[btf_map]
pub static SCRATCH: PerCpuArray<[u64; 10], 1> = PerCpuArray::new();

/// Dialog stickiness: the backend each call in progress went to (kernel 4.10). The
/// daemon sizes it from the config; the least recently used call is forgotten when full.
#[btf_map]
pub static DIALOGS: LruHashMap<PlacementKey, Placement, { DEFAULT_DIALOG_ENTRIES as usize }> =
    LruHashMap::new();

/// TCP connections to TCP VIPs: the backend each went to, so that it stays there when the
/// backend set changes. The daemon sizes it from the config; the least recently used
/// connection is forgotten when full.
#[btf_map]
pub static CONNECTIONS: LruHashMap<
    PlacementKey,
    Placement,
    { DEFAULT_CONNECTION_ENTRIES as usize },
> = LruHashMap::new();

/// Fragmented datagrams whose first fragment was placed: where their later fragments go.
/// The daemon sizes it from the config.
#[btf_map]
pub static FRAGMENTS: LruHashMap<
    FragmentKey,
    FragmentTarget,
    { DEFAULT_FRAGMENT_ENTRIES as usize },
> = LruHashMap::new();

/// NAT backends' (address, port, protocol) → the VIP they answer for: the source that
/// replaces theirs on the way back to the client.
#[btf_map]
pub static NAT_RETURNS: HashMap<VipKey, NatReturn, { MAX_NAT_RETURNS as usize }> = HashMap::new();

/// Per-CPU room for the `bpf_fib_lookup` argument, off the program's stack.
#[btf_map]
pub static FIB_LOOKUP: PerCpuArray<FibLookup, 1> = PerCpuArray::new();

/// Flood protection per VIP slot: the rate limit and the User-Agent drop list, used when
/// the VIP's flags say so. Written by the daemon.
#[btf_map]
pub static FLOOD: Array<FloodConfig, { MAX_VIPS as usize }> = Array::new();

/// A token bucket per (source address, VIP) of the VIPs with a rate limit. The daemon
/// sizes it from the config; the least recently used source is forgotten when full (and
/// starts again with a full bucket).
#[btf_map]
pub static FLOOD_SOURCES: LruHashMap<SourceKey, TokenBucket, { DEFAULT_FLOOD_SOURCES as usize }> =
    LruHashMap::new();
