//! NAT mode in the XDP program (`BPF_PROG_TEST_RUN`), in a namespace whose routes and
//! permanent neighbours give the kernel's FIB an answer: a datagram for the VIP leaves
//! for its backend's address and port, a datagram from the backend leaves with the VIP as
//! its source, each one hop older, with the next hop's MACs. Every output is compared
//! byte for byte with a frame built from scratch, checksums computed in full: the
//! program's incremental updates must agree with them. A fragmented answer leaves with
//! the VIP as the source of every fragment.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use sipxdp_common::{
    outcome::{Action, NO_VIP, Reason},
    wire::{build::UdpFrame, ethernet},
};
use sipxdp_tests::{
    fixture::{self, VIP_SLOT, VIP_V6_SLOT, XDP_PASS, XDP_REDIRECT},
    frames::{BALANCER_MAC, CLIENT, CLIENT_MAC, CLIENT_V6, VIP, VIP_V6},
    require_privileges,
    routed::{
        BACK_MAC, BACKEND_PORT, FRONT_MAC, NEXT_HOP_MAC, backend_address, nat_program,
        routed_namespace, set_backends,
    },
    sipgen::{Call, Rng},
};

const SEED: u64 = 0x0a7;

/// A UDP frame; every checksum computed from scratch.
fn frame(
    macs: ([u8; 6], [u8; 6]),
    source: SocketAddr,
    destination: SocketAddr,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    datagram(macs, source, destination, ttl, payload)
        .to_bytes()
        .expect("one family")
}

/// A UDP datagram to build as one frame or as IP fragments.
fn datagram<'a>(
    macs: ([u8; 6], [u8; 6]),
    source: SocketAddr,
    destination: SocketAddr,
    ttl: u8,
    payload: &'a [u8],
) -> UdpFrame<'a> {
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
}

/// The VIP, the client and the VIP's counter slot of one family.
fn ends(v6: bool) -> (SocketAddr, SocketAddr, u32) {
    let (vip, client, slot) = if v6 {
        (IpAddr::V6(VIP_V6), IpAddr::V6(CLIENT_V6), VIP_V6_SLOT)
    } else {
        (IpAddr::V4(VIP), IpAddr::V4(CLIENT), VIP_SLOT)
    };
    (
        SocketAddr::new(vip, 5060),
        SocketAddr::new(client, 5062),
        slot,
    )
}

#[test]
fn nat_rewrites_both_directions_with_correct_checksums() {
    if !require_privileges("nat_rewrites_both_directions_with_correct_checksums") {
        return;
    }
    let netns = routed_namespace().expect("a routed namespace");
    netns
        .enter_thread(|| {
            let (mut dataplane, table) = nat_program(SEED).expect("the program");
            let mut rng = Rng::new(5);
            for v6 in [false, true] {
                set_backends(&mut dataplane, v6).expect("backends");
                let (vip, client, slot) = ends(v6);
                for _ in 0..20 {
                    let call = Call::random(&mut rng, 20);
                    let owner = fixture::owner(&table, call.call_id.as_bytes(), SEED);
                    let backend = SocketAddr::new(backend_address(owner, v6), BACKEND_PORT);

                    // Client to VIP: leaves for the backend, towards the back interface.
                    let invite = call.invite(client, vip, 300);
                    let input = frame((BALANCER_MAC, CLIENT_MAC), client, vip, 64, &invite);
                    let output = dataplane.test_run(&input).expect("test run");
                    assert_eq!(output.action, XDP_REDIRECT, "v6 {v6}");
                    let expected = frame((NEXT_HOP_MAC, BACK_MAC), client, backend, 63, &invite);
                    assert_eq!(output.frame, expected, "v6 {v6}: the forward rewrite");

                    // Backend to client: leaves with the VIP as its source.
                    let ok = call.ok(client, vip, 300);
                    let input = frame((BACK_MAC, NEXT_HOP_MAC), backend, client, 64, &ok);
                    let output = dataplane.test_run(&input).expect("test run");
                    assert_eq!(output.action, XDP_REDIRECT, "v6 {v6}");
                    let expected = frame((CLIENT_MAC, FRONT_MAC), vip, client, 63, &ok);
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
            set_backends(&mut dataplane, false).expect("backends");
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
fn every_fragment_of_a_nat_answer_leaves_from_the_vip() {
    if !require_privileges("every_fragment_of_a_nat_answer_leaves_from_the_vip") {
        return;
    }
    let netns = routed_namespace().expect("a routed namespace");
    netns
        .enter_thread(|| {
            let (mut dataplane, table) = nat_program(SEED).expect("the program");
            let mut rng = Rng::new(7);
            for v6 in [false, true] {
                set_backends(&mut dataplane, v6).expect("backends");
                let (vip, client, slot) = ends(v6);
                let call = Call::random(&mut rng, 20);
                let owner = fixture::owner(&table, call.call_id.as_bytes(), SEED);
                let backend = SocketAddr::new(backend_address(owner, v6), BACKEND_PORT);
                let ok = call.ok(client, vip, 4000);
                let sent = datagram((BACK_MAC, NEXT_HOP_MAC), backend, client, 64, &ok)
                    .fragments(1500)
                    .expect("fragments");
                assert!(sent.len() >= 3, "v6 {v6}: {} fragments", sent.len());
                // Built from scratch: the UDP checksum in the first fragment covers the
                // whole datagram, the IPv4 header checksum each fragment.
                let expected = datagram((CLIENT_MAC, FRONT_MAC), vip, client, 63, &ok)
                    .fragments(1500)
                    .expect("fragments");
                for (number, (input, expected)) in sent.iter().zip(&expected).enumerate() {
                    let output = dataplane.test_run(input).expect("test run");
                    assert_eq!(output.action, XDP_REDIRECT, "v6 {v6}, fragment {number}");
                    assert_eq!(&output.frame, expected, "v6 {v6}, fragment {number}");
                }
                let count = |reason| {
                    dataplane
                        .counter(slot, Action::Forwarded, reason)
                        .expect("counter")
                        .packets
                };
                assert_eq!(count(Reason::NatReturn), 1, "v6 {v6}");
                assert_eq!(count(Reason::Fragment), sent.len() as u64 - 1, "v6 {v6}");

                // Later fragments that come before their first are the stack's, untouched.
                let mut late = datagram((BACK_MAC, NEXT_HOP_MAC), backend, client, 64, &ok);
                late.identification = 0x4343;
                let late = late.fragments(1500).expect("fragments");
                let output = dataplane.test_run(&late[1]).expect("test run");
                assert_eq!((output.action, &output.frame), (XDP_PASS, &late[1]));
            }
        })
        .expect("running in the namespace");
}

#[test]
fn without_a_neighbour_the_rewritten_datagram_goes_to_the_stack() {
    if !require_privileges("without_a_neighbour_the_rewritten_datagram_goes_to_the_stack") {
        return;
    }
    let netns = routed_namespace().expect("a routed namespace");
    for device in ["back0", "front0"] {
        netns
            .run(&["ip", "neigh", "flush", "dev", device, "nud", "all"])
            .expect("flushing the neighbours");
    }
    netns
        .enter_thread(|| {
            let (mut dataplane, table) = nat_program(SEED).expect("the program");
            set_backends(&mut dataplane, false).expect("backends");
            let call = Call::random(&mut Rng::new(6), 0);
            let owner = fixture::owner(&table, call.call_id.as_bytes(), SEED);
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

            // Every fragment of a datagram whose first fragment went to the stack
            // rewritten goes there rewritten too, either way, or it could not be
            // reassembled where the stack sends it.
            let invite = call.invite(client, vip, 4000);
            let ok = call.ok(client, vip, 4000);
            for (what, sent, expected) in [
                (
                    "forward",
                    datagram((BALANCER_MAC, CLIENT_MAC), client, vip, 64, &invite),
                    datagram((BALANCER_MAC, CLIENT_MAC), client, backend, 64, &invite),
                ),
                (
                    "return",
                    datagram((BACK_MAC, NEXT_HOP_MAC), backend, client, 64, &ok),
                    datagram((BACK_MAC, NEXT_HOP_MAC), vip, client, 64, &ok),
                ),
            ] {
                let sent = sent.fragments(1500).expect("fragments");
                let expected = expected.fragments(1500).expect("fragments");
                assert!(sent.len() >= 3, "{what}: {} fragments", sent.len());
                for (number, (input, expected)) in sent.iter().zip(&expected).enumerate() {
                    let output = dataplane.test_run(input).expect("test run");
                    assert_eq!(output.action, XDP_PASS, "{what}, fragment {number}");
                    assert_eq!(&output.frame, expected, "{what}, fragment {number}");
                }
            }
        })
        .expect("running in the namespace");
}
