//! The maps shared by the kernel program and the control plane: names, sizes and value
//! layouts. Every value type is `#[repr(C)]` with explicit padding so both sides agree
//! byte for byte; userspace reads and writes them through aya's `Pod`.

/// VIP slots. A VIP's slot indexes its Maglev tables and its counters.
pub const MAX_VIPS: u32 = 16;
/// Entries of the `VIPS` open-addressing table (a power of two, well above `MAX_VIPS`).
pub const VIP_TABLE_ENTRIES: u32 = 64;
/// A VIP lies at most this many entries past its home entry in `VIPS`.
pub const VIP_PROBES: u32 = 4;
/// Backend slots, shared by all VIPs.
pub const MAX_BACKENDS: u32 = 4096;
/// Egress interfaces the program can redirect to.
pub const MAX_TX_PORTS: u32 = 64;
/// Entries of a Maglev table; a VIP's table uses the first `table_size` of them.
pub const MAGLEV_TABLE_ENTRIES: usize = 65_537;
/// A Maglev table: backend slots, `MAGLEV_EMPTY` where none.
pub type MaglevTable = [u16; MAGLEV_TABLE_ENTRIES];
/// The backend slot of an empty table entry.
pub const MAGLEV_EMPTY: u16 = u16::MAX;

/// The Maglev table entry of a call whose hash is `hash`, in a table of `size` entries.
///
/// A multiply and a shift of the hash's top 32 bits ("fastrange", Lemire 2016) instead of
/// `hash % size`: just as uniform, and a 64-bit division costs tens of cycles in a
/// per-packet budget of a few hundred. The result is below `size`.
#[inline(always)]
pub const fn table_entry(hash: u64, size: u32) -> usize {
    (((hash >> 32) * size as u64) >> 32) as usize
}

/// Map names, as the control plane finds them in the object and under bpffs.
pub mod names {
    pub const VIPS: &str = "VIPS";
    pub const BACKENDS: &str = "BACKENDS";
    pub const MAGLEV: &str = "MAGLEV";
    pub const TX_PORTS: &str = "TX_PORTS";
    pub const SETTINGS: &str = "SETTINGS";
    pub const COUNTERS: &str = "COUNTERS";
    pub const BACKEND_COUNTERS: &str = "BACKEND_COUNTERS";
    pub const DIALOGS: &str = "DIALOGS";
    pub const FRAGMENTS: &str = "FRAGMENTS";
    pub const NAT_RETURNS: &str = "NAT_RETURNS";
    pub const CONNECTIONS: &str = "CONNECTIONS";
    pub const FLOOD: &str = "FLOOD";
    pub const FLOOD_SOURCES: &str = "FLOOD_SOURCES";
}

/// The `protocol` of a [`VipKey`]: IANA protocol numbers.
pub const PROTOCOL_UDP: u8 = 17;
pub const PROTOCOL_TCP: u8 = 6;

/// An IP address as 16 bytes: IPv6 as is, IPv4 mapped (`::ffff:a.b.c.d`, RFC 4291 2.5.5.2),
/// so one key type serves both families.
pub type Address = [u8; 16];

/// The address bytes of an IPv4-mapped IPv6 address with the given IPv4 octets.
#[inline(always)]
pub const fn ipv4_mapped(octets: [u8; 4]) -> Address {
    let [a, b, c, d] = octets;
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d]
}

/// Key of a VIP: destination address, port (host order) and protocol. An entry of `VIPS`
/// whose key has protocol 0 is empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(C)]
pub struct VipKey {
    pub address: Address,
    pub port: u16,
    pub protocol: u8,
    pub padding: u8,
}

impl VipKey {
    /// The `VIPS` entry where the search for this key starts. The table is a plain array
    /// so that the program finds a VIP without a helper call: lookups in an array are
    /// inlined by the verifier, hash map lookups are calls.
    #[inline(always)]
    pub fn home(&self) -> u32 {
        let [
            a0,
            a1,
            a2,
            a3,
            a4,
            a5,
            a6,
            a7,
            b0,
            b1,
            b2,
            b3,
            b4,
            b5,
            b6,
            b7,
        ] = self.address;
        let high = u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]);
        let low = u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]);
        // The splitmix64 finalizer: every input bit affects the top bits taken.
        let mut mixed =
            high ^ low.rotate_left(17) ^ ((self.port as u64) << 40) ^ self.protocol as u64;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^= mixed >> 31;
        (mixed >> 58) as u32 & (VIP_TABLE_ENTRIES - 1)
    }

    /// Field-wise equality, cheaper in BPF than comparing the bytes.
    #[inline(always)]
    pub fn matches(&self, other: &VipKey) -> bool {
        self.address == other.address && self.port == other.port && self.protocol == other.protocol
    }
}

/// The protocol of a removed VIP's entry: not empty, so searches go on past it, but
/// matching no packet.
pub const VIP_REMOVED_PROTOCOL: u8 = 255;

/// `VipConfig::flags`: drop keep-alive datagrams instead of passing them.
pub const VIP_DROP_KEEP_ALIVE: u32 = 1 << 0;
/// `VipConfig::flags`: drop datagrams that are not SIP instead of passing them.
pub const VIP_DROP_NOT_SIP: u32 = 1 << 1;
/// `VipConfig::flags`: NAT mode: rewrite the destination to the backend and route it,
/// instead of direct server return.
pub const VIP_NAT: u32 = 1 << 2;
/// `VipConfig::flags`: apply the VIP's per-source rate limit (`FLOOD`, `FLOOD_SOURCES`).
pub const VIP_RATE_LIMIT: u32 = 1 << 3;
/// `VipConfig::flags`: drop messages whose User-Agent is on the VIP's list (`FLOOD`).
pub const VIP_DROP_USER_AGENTS: u32 = 1 << 4;

/// What the program needs to know about a VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct VipConfig {
    /// Index of the VIP's counters and Maglev tables, below [`MAX_VIPS`].
    pub slot: u32,
    /// `VIP_*` flags.
    pub flags: u32,
    /// Entries of the Maglev table in use (a prime up to [`MAGLEV_TABLE_ENTRIES`]).
    pub table_size: u32,
    /// Which of the VIP's two Maglev tables is live (0 or 1): the control plane fills the
    /// other one, then flips this field, so a packet never sees a half-written table.
    pub generation: u32,
}

impl VipConfig {
    /// The `MAGLEV` element holding the live table.
    #[inline(always)]
    pub const fn table_index(&self) -> u32 {
        self.slot * 2 + (self.generation & 1)
    }
}

/// An entry of the `VIPS` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct VipEntry {
    pub key: VipKey,
    pub config: VipConfig,
}

/// `Backend::flags`: the backend may take packets (set for every backend in a table).
pub const BACKEND_IN_SERVICE: u32 = 1 << 0;

/// Value of the `BACKENDS` array: where and how to send a packet to one backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Backend {
    /// Ethernet destination: the backend's (or next hop's) MAC address.
    pub destination_mac: [u8; 6],
    /// Ethernet source: the MAC address of the interface that reaches it.
    pub source_mac: [u8; 6],
    /// The interface that reaches it: XDP_TX when it is the ingress interface, else a
    /// redirect through `TX_PORTS`.
    pub ifindex: u32,
    /// `BACKEND_*` flags.
    pub flags: u32,
    pub address: Address,
    pub port: u16,
    /// Changes whenever the slot is given to another backend, so that a dialog remembered
    /// for the slot's previous holder is not sent to the new one.
    pub incarnation: u16,
    /// The slot of the VIP the backend belongs to. Only userspace reads it: a daemon that
    /// takes over pinned maps gives each backend back its slot and incarnation, so that
    /// the calls the kernel remembers keep their backends.
    pub vip_slot: u16,
    pub padding: u16,
}

/// Value of the single-entry `SETTINGS` array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Settings {
    /// Seed of the Call-ID hash (XXH64).
    pub hash_seed: u64,
    /// A dialog not seen for this long follows the Maglev table again; 0 turns dialog
    /// stickiness off.
    pub dialog_idle_ns: u64,
    /// Non-zero when some VIP is in NAT mode: only then does the program look up the
    /// source of datagrams that are not for a VIP in `NAT_RETURNS`.
    pub nat_returns: u32,
    pub padding: u32,
    /// A TCP connection not seen for this long is placed by the Maglev table again.
    pub connection_idle_ns: u64,
}

/// Entries of the `FRAGMENTS` map unless the loader sets another size: one per datagram
/// whose later fragments are still to come.
pub const DEFAULT_FRAGMENT_ENTRIES: u32 = 1 << 16;

/// Key of the `FRAGMENTS` LRU map: one fragmented IP datagram (RFC 791 and RFC 8200 name
/// a datagram by its addresses, protocol and identification; only UDP is tracked).
///
/// Aligned to 8 bytes: the BPF verifier refuses a misaligned stack access, and a key of
/// byte arrays may otherwise be placed at any offset of the program's stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(C, align(8))]
pub struct FragmentKey {
    /// Source address, IPv4-mapped for IPv4.
    pub source: Address,
    pub destination: Address,
    /// The IPv4 identification (16 bits) or the IPv6 fragment header's (32 bits).
    pub identification: u32,
    pub padding: u32,
}

/// `FragmentTarget::backend_slot` of a datagram whose fragments go to the stack: a later
/// fragment arrived before the first one, so the first must follow it there for the
/// stack to reassemble the datagram whole (and hand it to the slow path).
pub const FRAGMENTS_TO_STACK: u32 = u32::MAX;

/// `FragmentTarget::backend_slot` of a datagram from a NAT backend to a client whose
/// first fragment left with the VIP as its source: each later fragment leaves with
/// `FragmentTarget::vip_address` as its source too, or the client could not reassemble
/// the datagram.
pub const FRAGMENTS_NAT_RETURN: u32 = u32::MAX - 1;

/// Value of the `FRAGMENTS` map: where the first fragment went, `FRAGMENTS_TO_STACK` or
/// `FRAGMENTS_NAT_RETURN`.
///
/// Aligned to 8 bytes, as `FragmentKey` is, and with the fields the program often sets
/// to constants side by side at the start: LLVM merges neighbouring constant stores into
/// one 8-byte store, which the verifier refuses unless it is aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C, align(8))]
pub struct FragmentTarget {
    pub backend_slot: u32,
    /// The VIP's flags (`VIP_NAT` decides how later fragments are sent).
    pub vip_flags: u32,
    pub vip_slot: u32,
    pub padding: u32,
    /// For `FRAGMENTS_NAT_RETURN`: the VIP's address (IPv4-mapped for IPv4), the later
    /// fragments' new source.
    pub vip_address: Address,
}

/// Value of the `NAT_RETURNS` map, keyed by a NAT backend's (address, port, protocol) as
/// a [`VipKey`]: the VIP whose address and port replace the backend's as the source of
/// what the backend sends, so that clients only ever see the VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct NatReturn {
    pub vip_address: Address,
    pub vip_port: u16,
    pub padding: u16,
    pub vip_slot: u32,
}

/// Entries of the `NAT_RETURNS` map: one per backend slot at most.
pub const MAX_NAT_RETURNS: u32 = MAX_BACKENDS;

/// Entries of the `DIALOGS` map unless the loader sets another size: one per call in
/// progress.
pub const DEFAULT_DIALOG_ENTRIES: u32 = 1 << 20;

/// Entries of the `CONNECTIONS` map unless the loader sets another size: one per TCP
/// connection in progress.
pub const DEFAULT_CONNECTION_ENTRIES: u32 = 1 << 18;

/// Key of the `DIALOGS` and `CONNECTIONS` LRU maps: one call (by its Call-ID hash) or one
/// TCP connection (by its [`crate::connection::Connection::hash`]) on one VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct PlacementKey {
    /// The hash the Maglev lookup uses.
    pub hash: u64,
    pub vip_slot: u32,
    pub padding: u32,
}

/// Value of the `DIALOGS` and `CONNECTIONS` maps: where a call or connection went, and
/// when it was last seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Placement {
    /// `bpf_ktime_get_coarse_ns` (CLOCK_MONOTONIC_COARSE) of its latest packet.
    pub last_seen_ns: u64,
    pub backend_slot: u32,
    /// The backend slot's `Backend::incarnation` when it was placed.
    pub backend_incarnation: u32,
}

/// A packet and byte count, the value of the per-CPU counter arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are `repr(C)`, `Copy`, made only of integers and byte arrays,
    // and have no implicit padding (every gap is an explicit `padding` field).
    unsafe impl aya::Pod for super::VipKey {}
    unsafe impl aya::Pod for super::VipConfig {}
    unsafe impl aya::Pod for super::VipEntry {}
    unsafe impl aya::Pod for super::Backend {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::PlacementKey {}
    unsafe impl aya::Pod for super::Placement {}
    unsafe impl aya::Pod for super::FragmentKey {}
    unsafe impl aya::Pod for super::FragmentTarget {}
    unsafe impl aya::Pod for super::NatReturn {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<VipKey>(), 16 + 2 + 1 + 1);
        assert_eq!(size_of::<VipConfig>(), 16);
        assert_eq!(size_of::<VipEntry>(), 36);
        assert_eq!(size_of::<Backend>(), 6 + 6 + 4 + 4 + 16 + 2 + 2 + 2 + 2);
        assert_eq!(size_of::<Settings>(), 32);
        assert_eq!(size_of::<NatReturn>(), 24);
        assert_eq!(size_of::<PlacementKey>(), 16);
        assert_eq!(size_of::<Placement>(), 16);
        assert_eq!(size_of::<FragmentKey>(), 40);
        assert_eq!(size_of::<FragmentTarget>(), 32);
        assert_eq!(size_of::<Counter>(), 16);
    }

    #[test]
    fn home_entries_spread() {
        let mut used = [0u32; VIP_TABLE_ENTRIES as usize];
        for last in 0..=255u8 {
            let key = VipKey {
                address: ipv4_mapped([198, 51, 100, last]),
                port: 5060,
                protocol: PROTOCOL_UDP,
                padding: 0,
            };
            used[key.home() as usize] += 1;
        }
        // 256 keys over 64 entries: about 4 each, never a pile-up.
        assert!(used.iter().all(|&count| count <= 12), "{used:?}");
        assert!(
            used.iter().filter(|&&count| count > 0).count() >= 56,
            "{used:?}"
        );
    }

    #[test]
    fn table_entries_are_in_range_and_uniform() {
        assert_eq!(table_entry(0, 7), 0);
        assert_eq!(table_entry(u64::MAX, 7), 6);
        assert_eq!(table_entry(u64::MAX, 65_537), 65_536);
        let mut hits = [0u32; 7];
        for i in 0..70_000u64 {
            hits[table_entry(crate::hash::xxh64_bytes(&i.to_le_bytes(), 1), 7)] += 1;
        }
        assert!(
            hits.iter().all(|&count| (9_700..10_300).contains(&count)),
            "{hits:?}"
        );
    }

    #[test]
    fn maps_ipv4() {
        assert_eq!(
            ipv4_mapped([198, 51, 100, 1])[10..],
            [0xff, 0xff, 198, 51, 100, 1]
        );
    }
}
