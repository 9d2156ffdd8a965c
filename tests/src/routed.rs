//! A namespace with routes, for NAT mode's FIB lookups in `BPF_PROG_TEST_RUN`, and the
//! program set up for NAT in it: the fixture's VIPs in NAT mode over three backends on
//! 203.0.113.0/24 and 2001:db8:3::/64, answering on port 5080.
//!
//! `BPF_PROG_TEST_RUN` runs a program in the network namespace of the calling thread, so
//! load and run inside [`Netns::enter_thread`] of [`routed_namespace`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, ensure};
use sipxdp::dataplane::Dataplane;
use sipxdp_common::maps::{
    BACKEND_IN_SERVICE, Backend, NatReturn, PROTOCOL_UDP, Settings, VIP_NAT, VipKey,
};

use crate::{
    Netns,
    fixture::{self, VIP_SLOT, VIP_V6_SLOT, vip_key, vip_v6_key},
    frames::{CLIENT, CLIENT_V6},
};

/// The port NAT backends listen on.
pub const BACKEND_PORT: u16 = 5080;
/// The MAC of the backends' next hop (the namespace's permanent neighbour entries).
pub const NEXT_HOP_MAC: [u8; 6] = [0x02, 0x53, 0x58, 0x02, 0x00, 0x21];
/// The MAC of `back0`, the interface towards the backends.
pub const BACK_MAC: [u8; 6] = [0x02, 0x53, 0x58, 0x00, 0x00, 0x02];
/// The MAC of `front0`, the interface towards the clients.
pub const FRONT_MAC: [u8; 6] = [0x02, 0x53, 0x58, 0x00, 0x00, 0x03];

/// The address of the NAT backend in `slot`, of one family.
pub fn backend_address(slot: u32, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            3,
            0,
            0,
            0,
            0,
            0x21 + slot as u16,
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 21 + slot as u8))
    }
}

pub fn mapped(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn run(netns: &Netns, command: &str) -> anyhow::Result<()> {
    let words: Vec<&str> = command.split_whitespace().collect();
    netns.run(&words).with_context(|| command.to_owned())?;
    Ok(())
}

/// A namespace with two veth pairs: `back0` towards the backends' subnet (203.0.113.0/24,
/// 2001:db8:3::/64), `front0` towards the clients (198.51.100.0/24, 2001:db8:1::/64), with
/// permanent neighbours for the three backends and the client.
pub fn routed_namespace() -> anyhow::Result<Netns> {
    let netns = Netns::new("nat")?;
    run(&netns, "sysctl -qw net.ipv4.ip_forward=1")?;
    run(&netns, "sysctl -qw net.ipv6.conf.all.forwarding=1")?;
    for (side, v4, v6) in [
        ("back", "203.0.113.1/24", "2001:db8:3::1/64"),
        ("front", "198.51.100.1/24", "2001:db8:1::1/64"),
    ] {
        run(
            &netns,
            &format!("ip link add {side}0 type veth peer name {side}1"),
        )?;
        run(
            &netns,
            &format!(
                "ip link set {side}0 address 02:53:58:00:00:0{}",
                if side == "back" { 2 } else { 3 }
            ),
        )?;
        run(&netns, &format!("ip link set {side}0 up"))?;
        run(&netns, &format!("ip link set {side}1 up"))?;
        run(&netns, &format!("ip address add {v4} dev {side}0"))?;
        run(&netns, &format!("ip address add {v6} dev {side}0 nodad"))?;
    }
    for slot in 0..3 {
        for v6 in [false, true] {
            run(
                &netns,
                &format!(
                    "ip neigh replace {} lladdr 02:53:58:02:00:21 nud permanent dev back0",
                    backend_address(slot, v6)
                ),
            )?;
        }
    }
    run(
        &netns,
        &format!("ip neigh replace {CLIENT} lladdr 02:53:58:01:00:0a nud permanent dev front0"),
    )?;
    run(
        &netns,
        &format!("ip neigh replace {CLIENT_V6} lladdr 02:53:58:01:00:0a nud permanent dev front0"),
    )?;
    Ok(netns)
}

/// The interface index of `name` in the calling thread's namespace.
pub fn ifindex(name: &str) -> anyhow::Result<u32> {
    let c_name = std::ffi::CString::new(name)?;
    // SAFETY: a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    ensure!(index != 0, "no interface {name} here");
    Ok(index)
}

/// The program with both VIPs in NAT mode over three backends of IPv4, and the return
/// entries of both families; stickiness off.
pub fn nat_program(seed: u64) -> anyhow::Result<(Dataplane, Vec<u16>)> {
    let mut dataplane = Dataplane::load(&fixture::load_options())?;
    let settings = Settings {
        nat_returns: 1,
        ..fixture::stateless(seed)
    };
    let table = fixture::configure(&mut dataplane, &settings, VIP_NAT, fixture::BACKENDS)?;
    prepare_nat(&mut dataplane, false)?;
    Ok((dataplane, table))
}

/// Makes a program configured by [`fixture::configure`] with `VIP_NAT` ready for the
/// routed namespace: its interfaces as redirect targets, the backend slots pointing at
/// the NAT backends of `v6`'s family, and the return entries of both families.
pub fn prepare_nat(dataplane: &mut Dataplane, v6: bool) -> anyhow::Result<()> {
    dataplane.add_tx_port(ifindex("back0")?)?;
    dataplane.add_tx_port(ifindex("front0")?)?;
    set_backends(dataplane, v6)?;
    for slot in 0..fixture::BACKENDS {
        // Both families' backends share the slot; the VIP's family picks the address.
        for (v6, vip, vip_slot) in [
            (false, vip_key(5060), VIP_SLOT),
            (true, vip_v6_key(5060), VIP_V6_SLOT),
        ] {
            let backend = VipKey {
                address: mapped(backend_address(slot, v6)),
                port: BACKEND_PORT,
                protocol: PROTOCOL_UDP,
                padding: 0,
            };
            let nat_return = NatReturn {
                vip_address: vip.address,
                vip_port: 5060,
                padding: 0,
                vip_slot,
            };
            dataplane.set_nat_return(&backend, Some(&nat_return))?;
        }
    }
    Ok(())
}

/// Points the backend slots at the NAT backends of one family.
pub fn set_backends(dataplane: &mut Dataplane, v6: bool) -> anyhow::Result<()> {
    for slot in 0..fixture::BACKENDS {
        let backend = Backend {
            flags: BACKEND_IN_SERVICE,
            address: mapped(backend_address(slot, v6)),
            port: BACKEND_PORT,
            ..Backend::default()
        };
        dataplane.set_backend(slot, &backend)?;
    }
    Ok(())
}
