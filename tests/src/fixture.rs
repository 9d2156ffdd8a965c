//! The program set up as the test-run tests and the benchmark use it: one VIP per family
//! (the frames' [`VIP`] and [`VIP_V6`], UDP) over three backends behind the loopback
//! device, which is where `BPF_PROG_TEST_RUN` pretends frames arrive, so a steered frame
//! comes back as `XDP_TX`.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, Result};
use sipxdp::dataplane::{Dataplane, LoadOptions};
use sipxdp_common::{
    maglev::{MaglevBackend, build_table},
    maps::{
        BACKEND_IN_SERVICE, Backend, PROTOCOL_TCP, PROTOCOL_UDP, Settings, VipConfig, VipKey,
        ipv4_mapped, table_entry,
    },
    outcome::{Action, Reason},
};

use crate::frames::{BALANCER_MAC, VIP, VIP_V6};

/// XDP return codes (`enum xdp_action` in linux/bpf.h), as `BPF_PROG_TEST_RUN` reports
/// them.
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;
/// The ifindex `BPF_PROG_TEST_RUN` gives the frames it runs XDP programs on.
pub const LOOPBACK: u32 = 1;
/// Backends of the fixture's VIP in the tests, in slots 0, 1 and 2.
pub const BACKENDS: u32 = 3;
/// Size of the fixture's Maglev tables.
pub const MAGLEV_SIZE: u32 = 65_537;
/// The fixture VIP's slot.
pub const VIP_SLOT: u32 = 0;
/// The slot of the fixture's IPv6 VIP, which has the same backends and table.
pub const VIP_V6_SLOT: u32 = 1;
/// The slots [`add_tcp_vips`] gives the TCP VIPs on the IPv4 and IPv6 VIP addresses.
pub const TCP_VIP_SLOT: u32 = 2;
pub const TCP_VIP_V6_SLOT: u32 = 3;

/// The key of the fixture's VIP on `port`.
pub fn vip_key(port: u16) -> VipKey {
    VipKey {
        address: ipv4_mapped(VIP.octets()),
        port,
        protocol: PROTOCOL_UDP,
        padding: 0,
    }
}

/// The key of the fixture's IPv6 VIP on `port`.
pub fn vip_v6_key(port: u16) -> VipKey {
    VipKey {
        address: VIP_V6.octets(),
        ..vip_key(port)
    }
}

/// The key of the TCP VIP `address`:`port`.
pub fn tcp_vip_key(address: IpAddr, port: u16) -> VipKey {
    VipKey {
        address: sipxdp::plan::address_bytes(address),
        port,
        protocol: PROTOCOL_TCP,
        padding: 0,
    }
}

/// Adds TCP VIPs on `port` of the fixture's IPv4 and IPv6 VIP addresses, in slots
/// [`TCP_VIP_SLOT`] and [`TCP_VIP_V6_SLOT`], and publishes `table` for both.
pub fn add_tcp_vips(dataplane: &mut Dataplane, port: u16, table: &[u16]) -> Result<()> {
    for (address, slot) in [
        (IpAddr::V4(VIP), TCP_VIP_SLOT),
        (IpAddr::V6(VIP_V6), TCP_VIP_V6_SLOT),
    ] {
        let key = tcp_vip_key(address, port);
        let config = VipConfig {
            slot,
            ..VipConfig::default()
        };
        dataplane
            .set_vip(&key, &config)
            .context("configuring a TCP VIP")?;
        dataplane
            .publish_table(&key, table)
            .context("publishing the TCP VIP's table")?;
    }
    Ok(())
}

/// The MAC of the backend in `slot`.
pub fn backend_mac(slot: u32) -> [u8; 6] {
    [
        0x02,
        0x53,
        0x58,
        0x01,
        (slot >> 8) as u8,
        (slot as u8).wrapping_add(0x21),
    ]
}

/// The backend in `slot`, in service, behind [`LOOPBACK`] with [`backend_mac`].
pub fn loopback_backend(slot: u32) -> Backend {
    Backend {
        destination_mac: backend_mac(slot),
        source_mac: BALANCER_MAC,
        ifindex: LOOPBACK,
        flags: BACKEND_IN_SERVICE,
        ..Backend::default()
    }
}

/// A Maglev table of `size` entries over `(slot, weight)` members, each keyed by
/// `backend-SLOT`.
pub fn maglev_table(members: &[(u32, u32)], size: u32) -> Result<Vec<u16>> {
    let keys: Vec<String> = members
        .iter()
        .map(|(slot, _)| format!("backend-{slot}"))
        .collect();
    let backends: Vec<MaglevBackend> = members
        .iter()
        .zip(&keys)
        .map(|(&(slot, weight), key)| MaglevBackend {
            key: key.as_bytes(),
            weight,
            slot,
        })
        .collect();
    build_table(&backends, size)
        .context("building the Maglev table")?
        .into_iter()
        .map(|slot| u16::try_from(slot).context("a backend slot beyond u16"))
        .collect()
}

/// The backend slot entry `table_entry(XXH64(call_id, seed))` of `table` holds: where
/// the program must steer `call_id`. Hashed with the `xxhash-rust` crate, not with the
/// program's own code, so that a test checks the program against another implementation.
pub fn owner(table: &[u16], call_id: &[u8], seed: u64) -> u32 {
    let hash = xxhash_rust::xxh64::xxh64(call_id, seed);
    u32::from(table[table_entry(hash, table.len() as u32)])
}

/// The backend slot the entry of `table` for the TCP connection from `client` to `vip`
/// holds: XXH64 (of the `xxhash-rust` crate, as [`owner`]) of the documented 36 bytes,
/// source address, destination address (IPv4-mapped), source port, destination port.
pub fn connection_owner(table: &[u16], client: SocketAddr, vip: SocketAddr, seed: u64) -> u32 {
    let mapped = |address: IpAddr| match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    let mut bytes = Vec::with_capacity(36);
    bytes.extend_from_slice(&mapped(client.ip()));
    bytes.extend_from_slice(&mapped(vip.ip()));
    bytes.extend_from_slice(&client.port().to_be_bytes());
    bytes.extend_from_slice(&vip.port().to_be_bytes());
    let hash = xxhash_rust::xxh64::xxh64(&bytes, seed);
    u32::from(table[table_entry(hash, table.len() as u32)])
}

/// A program loaded with [`load_options`] and filled by [`configure`] with the fixture's
/// backends, and the table it published.
pub struct Loaded {
    pub dataplane: Dataplane,
    pub table: Vec<u16>,
    seed: u64,
}

impl Loaded {
    /// Loads and configures the program with `settings` and `vip_flags`.
    pub fn new(settings: &Settings, vip_flags: u32) -> Result<Self> {
        let mut dataplane = Dataplane::load(&load_options()).context("loading the program")?;
        let table = configure(&mut dataplane, settings, vip_flags, BACKENDS)?;
        Ok(Self {
            dataplane,
            table,
            seed: settings.hash_seed,
        })
    }

    /// The backend slot the published table gives `call_id`.
    pub fn owner(&self, call_id: &[u8]) -> u32 {
        owner(&self.table, call_id, self.seed)
    }

    /// The packets counted under (VIP slot, action, reason), summed over CPUs.
    ///
    /// # Panics
    ///
    /// When the counters cannot be read: a test cannot go on without them.
    pub fn packets(&self, slot: u32, action: Action, reason: Reason) -> u64 {
        self.dataplane
            .counter(slot, action, reason)
            .expect("reading the program's counters")
            .packets
    }
}

/// How the tests load the program: as the daemon does, with `DIALOGS` and `CONNECTIONS`
/// maps of 65,536 entries instead of their defaults, because the kernel allocates every
/// entry at load time and tests load many programs at once.
pub fn load_options() -> LoadOptions {
    LoadOptions {
        dialog_entries: Some(65_536),
        connection_entries: Some(65_536),
        ..LoadOptions::default()
    }
}

/// Settings with `hash_seed` and dialog stickiness off, so that every forwarded message
/// is placed by the table.
pub fn stateless(hash_seed: u64) -> Settings {
    Settings {
        hash_seed,
        dialog_idle_ns: 0,
        ..Settings::default()
    }
}

/// Fills `dataplane`: `settings`, `backends` backends of equal weight in slots
/// `0..backends` behind [`LOOPBACK`], and the IPv4 and IPv6 VIPs on port 5060 with
/// `vip_flags`, over the same table. Returns the published table.
pub fn configure(
    dataplane: &mut Dataplane,
    settings: &Settings,
    vip_flags: u32,
    backends: u32,
) -> Result<Vec<u16>> {
    dataplane
        .set_settings(settings)
        .context("writing the settings")?;
    for slot in 0..backends {
        dataplane
            .set_backend(slot, &loopback_backend(slot))
            .with_context(|| format!("writing backend slot {slot}"))?;
    }
    let members: Vec<(u32, u32)> = (0..backends).map(|slot| (slot, 1)).collect();
    let table = maglev_table(&members, MAGLEV_SIZE)?;
    for (key, slot) in [(vip_key(5060), VIP_SLOT), (vip_v6_key(5060), VIP_V6_SLOT)] {
        let config = VipConfig {
            slot,
            flags: vip_flags,
            ..VipConfig::default()
        };
        dataplane
            .set_vip(&key, &config)
            .context("configuring a VIP")?;
        dataplane
            .publish_table(&key, &table)
            .context("publishing the Maglev table")?;
    }
    Ok(table)
}
