//! NAT mode in the XDP program (`BPF_PROG_TEST_RUN`), in a namespace whose routes and
//! permanent neighbours give the kernel's FIB an answer: a datagram for the VIP leaves
//! for its backend's address and port, a datagram from the backend leaves with the VIP as
//! its source, each one hop older, with the next hop's MACs. Every output is compared
//! byte for byte with a frame built from scratch, checksums computed in full: the
//! program's incremental updates must agree with them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sipxdp::dataplane::Dataplane;
use sipxdp_common::{
    maps::{
        BACKEND_IN_SERVICE, Backend, NatReturn, PROTOCOL_UDP, Settings, VIP_NAT, VipKey,
        table_entry,
    },
    outcome::{Action, NO_VIP, Reason},
    wire::{build::UdpFrame, ethernet},
};
use sipxdp_tests::{
    Netns,
    fixture::{self, VIP_SLOT, VIP_V6_SLOT, vip_key, vip_v6_key},
    frames::{BALANCER_MAC, CLIENT, CLIENT_MAC, CLIENT_V6, VIP, VIP_V6},
    require_privileges,
    sipgen::{Call, Rng},
};

const SEED: u64 = 0x0a7;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;
const BACKEND_PORT: u16 = 5080;
/// The MAC of the backends' next hop (the namespace's permanent neighbour entries).
const NEXT_HOP_MAC: [u8; 6] = [0x02, 0x53, 0x58, 0x02, 0x00, 0x21];

fn backend_address(slot: u32, v6: bool) -> IpAddr {
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

fn mapped(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn run(netns: &Netns, command: &str) {
    let words: Vec<&str> = command.split_whitespace().collect();
    netns
        .run(&words)
        .unwrap_or_else(|error| panic!("{command}: {error}"));
}

/// Two veth pairs: `back0` towards the backends' subnet (203.0.113.0/24,
/// 2001:db8:3::/64), `front0` towards the clients (198.51.100.0/24, 2001:db8:1::/64), with
/// permanent neighbours for the three backends and the client.
fn routed_namespace() -> Netns {
    let netns = Netns::new("nat").expect("a namespace");
    run(&netns, "sysctl -qw net.ipv4.ip_forward=1");
    run(&netns, "sysctl -qw net.ipv6.conf.all.forwarding=1");
    for (side, v4, v6) in [
        ("back", "203.0.113.1/24", "2001:db8:3::1/64"),
        ("front", "198.51.100.1/24", "2001:db8:1::1/64"),
    ] {
        run(
            &netns,
            &format!("ip link add {side}0 type veth peer name {side}1"),
        );
        run(
            &netns,
            &format!(
                "ip link set {side}0 address 02:53:58:00:00:0{}",
                if side == "back" { 2 } else { 3 }
            ),
        );
        run(&netns, &format!("ip link set {side}0 up"));
        run(&netns, &format!("ip link set {side}1 up"));
        run(&netns, &format!("ip address add {v4} dev {side}0"));
        run(&netns, &format!("ip address add {v6} dev {side}0 nodad"));
    }
    for slot in 0..3 {
        for v6 in [false, true] {
            run(
                &netns,
                &format!(
                    "ip neigh replace {} lladdr 02:53:58:02:00:21 nud permanent dev back0",
                    backend_address(slot, v6)
                ),
            );
        }
    }
    run(
        &netns,
        &format!("ip neigh replace {CLIENT} lladdr 02:53:58:01:00:0a nud permanent dev front0"),
    );
    run(
        &netns,
        &format!("ip neigh replace {CLIENT_V6} lladdr 02:53:58:01:00:0a nud permanent dev front0"),
    );
    netns
}

fn ifindex(name: &str) -> u32 {
    let name = std::ffi::CString::new(name).expect("a name");
    // SAFETY: a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(index, 0, "interface exists");
    index
}

/// A UDP frame; every checksum computed from scratch.
fn frame(
    macs: ([u8; 6], [u8; 6]),
    source: SocketAddr,
    destination: SocketAddr,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    UdpFrame {
        ethernet: ethernet::Repr {
            destination: macs.0,
            source: macs.1,
            vlans: [None, None],
            ethertype: 0,
        },
        source: source.ip(),
        destination: destination.ip(),
        source_port: source.port(),
        destination_port: destination.port(),
        payload,
        ttl,
        identification: 0x4242,
        ipv4_options: &[],
    }
    .to_bytes()
    .expect("one family")
}

/// The program with both VIPs in NAT mode over three backends, and the return entries.
fn nat_program() -> (Dataplane, Vec<u16>) {
    let mut dataplane = Dataplane::load(&fixture::load_options()).expect("loading");
    let settings = Settings {
        nat_returns: 1,
        ..fixture::stateless(SEED)
    };
    let table = fixture::configure(&mut dataplane, &settings, VIP_NAT, fixture::BACKENDS)
        .expect("the fixture");
    dataplane.add_tx_port(ifindex("back0")).expect("a port");
    dataplane.add_tx_port(ifindex("front0")).expect("a port");
    for slot in 0..fixture::BACKENDS {
        // Both families' backends share the slot; the VIP's family picks the address.
        for (v6, vip, vip_slot) in [
            (false, vip_key(5060), VIP_SLOT),
            (true, vip_v6_key(5060), VIP_V6_SLOT),
        ] {
            let address = mapped(backend_address(slot, v6));
            dataplane
                .set_nat_return(
                    &VipKey {
                        address,
                        port: BACKEND_PORT,
                        protocol: PROTOCOL_UDP,
                        padding: 0,
                    },
                    Some(&NatReturn {
                        vip_address: vip.address,
                        vip_port: 5060,
                        padding: 0,
                        vip_slot,
                    }),
                )
                .expect("a return entry");
        }
    }
    (dataplane, table)
}

fn set_backends(dataplane: &mut Dataplane, v6: bool) {
    for slot in 0..fixture::BACKENDS {
        dataplane
            .set_backend(
                slot,
                &Backend {
                    flags: BACKEND_IN_SERVICE,
                    address: mapped(backend_address(slot, v6)),
                    port: BACKEND_PORT,
                    ..Backend::default()
                },
            )
            .expect("a backend");
    }
}

#[test]
fn nat_rewrites_both_directions_with_correct_checksums() {
    if !require_privileges("nat_rewrites_both_directions_with_correct_checksums") {
        return;
    }
    let netns = routed_namespace();
    netns
        .enter_thread(|| {
            let (mut dataplane, table) = nat_program();
            let mut rng = Rng::new(5);
            for v6 in [false, true] {
                set_backends(&mut dataplane, v6);
                let (vip, client, slot) = if v6 {
                    (IpAddr::V6(VIP_V6), IpAddr::V6(CLIENT_V6), VIP_V6_SLOT)
                } else {
                    (IpAddr::V4(VIP), IpAddr::V4(CLIENT), VIP_SLOT)
                };
                let vip = SocketAddr::new(vip, 5060);
                let client = SocketAddr::new(client, 5062);
                for _ in 0..20 {
                    let call = Call::random(&mut rng, 20);
                    let hash = xxhash_rust::xxh64::xxh64(call.call_id.as_bytes(), SEED);
                    let owner = u32::from(table[table_entry(hash, table.len() as u32)]);
                    let backend = SocketAddr::new(backend_address(owner, v6), BACKEND_PORT);

                    // Client to VIP: leaves for the backend, towards the back interface.
                    let invite = call.invite(client, vip, 300);
                    let input = frame((BALANCER_MAC, CLIENT_MAC), client, vip, 64, &invite);
                    let output = dataplane.test_run(&input).expect("test run");
                    assert_eq!(output.action, XDP_REDIRECT, "v6 {v6}");
                    let back0 = [0x02, 0x53, 0x58, 0x00, 0x00, 0x02];
                    let expected = frame((NEXT_HOP_MAC, back0), client, backend, 63, &invite);
                    assert_eq!(output.frame, expected, "v6 {v6}: the forward rewrite");

                    // Backend to client: leaves with the VIP as its source.
                    let ok = call.ok(client, vip, 300);
                    let input = frame((back0, NEXT_HOP_MAC), backend, client, 64, &ok);
                    let output = dataplane.test_run(&input).expect("test run");
                    assert_eq!(output.action, XDP_REDIRECT, "v6 {v6}");
                    let front0 = [0x02, 0x53, 0x58, 0x00, 0x00, 0x03];
                    let expected = frame((CLIENT_MAC, front0), vip, client, 63, &ok);
                    assert_eq!(output.frame, expected, "v6 {v6}: the return rewrite");
                }
                let count = |action, reason| {
                    dataplane
                        .counter(slot, action, reason)
                        .expect("counter")
                        .packets
                };
                assert_eq!(count(Action::Forwarded, Reason::CallId), 20);
                assert_eq!(count(Action::Forwarded, Reason::NatReturn), 20);
            }

            // An IPv4 datagram without a UDP checksum keeps none.
            set_backends(&mut dataplane, false);
            let call = Call::random(&mut rng, 0);
            let client = SocketAddr::new(IpAddr::V4(CLIENT), 5062);
            let vip = SocketAddr::new(IpAddr::V4(VIP), 5060);
            let mut input = frame(
                (BALANCER_MAC, CLIENT_MAC),
                client,
                vip,
                64,
                &call.bye(client, vip),
            );
            input[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
            let output = dataplane.test_run(&input).expect("test run");
            assert_eq!(output.frame[14 + 20 + 6..14 + 20 + 8], [0, 0]);

            // A TTL that runs out here goes to the stack untouched.
            let expiring = frame(
                (BALANCER_MAC, CLIENT_MAC),
                client,
                vip,
                1,
                &call.bye(client, vip),
            );
            let output = dataplane.test_run(&expiring).expect("test run");
            assert_eq!(output.action, XDP_PASS);
            assert_eq!(output.frame, expiring);
            assert_eq!(
                dataplane
                    .counter(VIP_SLOT, Action::Passed, Reason::TtlExceeded)
                    .expect("counter")
                    .packets,
                1
            );

            // A datagram from an address that is no NAT backend is not rewritten.
            let stranger =
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 99)), BACKEND_PORT);
            let input = frame(
                ([2, 0, 0, 0, 0, 1], NEXT_HOP_MAC),
                stranger,
                client,
                64,
                b"hello",
            );
            let output = dataplane.test_run(&input).expect("test run");
            assert_eq!((output.action, &output.frame), (XDP_PASS, &input));
            assert_eq!(
                dataplane
                    .counter(NO_VIP, Action::Passed, Reason::NotVip)
                    .expect("counter")
                    .packets,
                1
            );
        })
        .expect("running in the namespace");
}

#[test]
fn without_a_neighbour_the_rewritten_datagram_goes_to_the_stack() {
    if !require_privileges("without_a_neighbour_the_rewritten_datagram_goes_to_the_stack") {
        return;
    }
    let netns = routed_namespace();
    run(&netns, "ip neigh flush dev back0 nud all");
    netns
        .enter_thread(|| {
            let (mut dataplane, table) = nat_program();
            set_backends(&mut dataplane, false);
            let call = Call::random(&mut Rng::new(6), 0);
            let hash = xxhash_rust::xxh64::xxh64(call.call_id.as_bytes(), SEED);
            let owner = u32::from(table[table_entry(hash, table.len() as u32)]);
            let client = SocketAddr::new(IpAddr::V4(CLIENT), 5062);
            let vip = SocketAddr::new(IpAddr::V4(VIP), 5060);
            let backend = SocketAddr::new(backend_address(owner, false), BACKEND_PORT);
            let bye = call.bye(client, vip);
            let input = frame((BALANCER_MAC, CLIENT_MAC), client, vip, 64, &bye);
            let output = dataplane.test_run(&input).expect("test run");
            assert_eq!(output.action, XDP_PASS);
            // Addressed to the backend, TTL untouched: the stack forwards it (one hop).
            let expected = frame((BALANCER_MAC, CLIENT_MAC), client, backend, 64, &bye);
            assert_eq!(output.frame, expected);
            assert_eq!(
                dataplane
                    .counter(VIP_SLOT, Action::Passed, Reason::NoNeighbour)
                    .expect("counter")
                    .packets,
                1
            );
        })
        .expect("running in the namespace");
}
