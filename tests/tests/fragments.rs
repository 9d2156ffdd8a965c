//! IPv6 and IP fragments in the XDP program (`BPF_PROG_TEST_RUN`): IPv6 datagrams are
//! steered like IPv4 ones; extension headers other than a fragment header are passed; the
//! first fragment of a datagram is steered by its Call-ID and its later fragments follow
//! it, for IPv4 and IPv6, in order or not.

use std::net::{IpAddr, SocketAddr};

use sipxdp::dataplane::TestRunOutput;
use sipxdp_common::outcome::{Action, NO_VIP, Reason};
use sipxdp_tests::{
    fixture::{self, Loaded, VIP_SLOT, VIP_V6_SLOT, XDP_PASS, XDP_TX, backend_mac},
    frames::{BALANCER_MAC, FrameSpec, VIP, VIP_V6, client_address, udp_fragments, udp_frame},
    require_privileges,
    sipgen::{Call, Rng},
};

const SEED: u64 = 0xf4a6;
/// An IP packet size that splits the test INVITEs into three to six fragments.
const MTU: usize = 1500;

/// The fixture program (both VIPs), stickiness off.
fn program() -> Loaded {
    Loaded::new(&fixture::stateless(SEED), 0).expect("the fixture")
}

fn run(program: &Loaded, frame: &[u8]) -> TestRunOutput {
    program.dataplane.test_run(frame).expect("test run")
}

/// Asserts that `output` is `frame` sent to `backend`: only the MACs changed.
fn assert_sent_to(output: &TestRunOutput, frame: &[u8], backend: u32, what: &str) {
    assert_eq!(output.action, XDP_TX, "{what}");
    let mut expected = frame.to_vec();
    expected[..6].copy_from_slice(&backend_mac(backend));
    expected[6..12].copy_from_slice(&BALANCER_MAC);
    assert_eq!(output.frame, expected, "{what}: only the MACs change");
}

fn assert_passed(output: &TestRunOutput, frame: &[u8], what: &str) {
    assert_eq!(output.action, XDP_PASS, "{what}");
    assert_eq!(output.frame, frame, "{what}: a passed frame is untouched");
}

/// A spec and an INVITE of about `body` bytes of SDP to the VIP of `v6`'s family.
/// Asserts that every fragment of a datagram to the VIP of counter slot `slot` is passed
/// to the stack untouched, and that the first one counts under that VIP as a fragment.
fn assert_datagram_passed(program: &Loaded, slot: u32, fragments: &[Vec<u8>], what: &str) {
    let first_before = program.packets(slot, Action::Passed, Reason::IpFragment);
    for frame in fragments {
        assert_passed(&run(program, frame), frame, what);
    }
    assert_eq!(
        program.packets(slot, Action::Passed, Reason::IpFragment),
        first_before + 1,
        "{what}"
    );
}

fn invite(v6: bool, identification: u16, body: usize, rng: &mut Rng) -> (FrameSpec, Call, Vec<u8>) {
    let vip = if v6 {
        IpAddr::V6(VIP_V6)
    } else {
        IpAddr::V4(VIP)
    };
    let spec = FrameSpec {
        destination: vip,
        identification,
        ..FrameSpec::default()
    };
    let call = Call::random(rng, 20);
    let message = call.invite(
        SocketAddr::new(client_address(vip), 5062),
        SocketAddr::new(vip, 5060),
        body,
    );
    (spec, call, message)
}

#[test]
fn ipv6_datagrams_are_steered_like_ipv4_ones() {
    if !require_privileges("ipv6_datagrams_are_steered_like_ipv4_ones") {
        return;
    }
    let program = program();
    let mut rng = Rng::new(1);
    for index in 0..50 {
        let (spec, call, message) = invite(true, index, 200, &mut rng);
        let frame = udp_frame(&spec, &message);
        assert_sent_to(
            &run(&program, &frame),
            &frame,
            program.owner(call.call_id.as_bytes()),
            "IPv6 INVITE",
        );
    }
    assert_eq!(
        program.packets(VIP_V6_SLOT, Action::Forwarded, Reason::CallId),
        50
    );
    assert_eq!(
        program.packets(VIP_SLOT, Action::Forwarded, Reason::CallId),
        0
    );
}

#[test]
fn ipv6_extension_headers_other_than_fragments_are_passed() {
    if !require_privileges("ipv6_extension_headers_other_than_fragments_are_passed") {
        return;
    }
    let program = program();
    let (spec, _, message) = invite(true, 1, 0, &mut Rng::new(2));
    let plain = udp_frame(&spec, &message);
    // Insert an 8-byte hop-by-hop header (PadN) between the fixed header and UDP.
    let l3 = 14;
    let mut frame = plain[..l3 + 40].to_vec();
    frame.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
    frame.extend_from_slice(&plain[l3 + 40..]);
    frame[l3 + 6] = 0;
    let payload_len = u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]) + 8;
    frame[l3 + 4..l3 + 6].copy_from_slice(&payload_len.to_be_bytes());
    assert_passed(&run(&program, &frame), &frame, "hop-by-hop header");
    assert_eq!(
        program.packets(NO_VIP, Action::Passed, Reason::Ipv6Extension),
        1
    );
}

#[test]
fn later_fragments_follow_their_first_fragment() {
    if !require_privileges("later_fragments_follow_their_first_fragment") {
        return;
    }
    let program = program();
    let mut rng = Rng::new(3);
    let mut later_count = 0;
    for v6 in [false, true] {
        let slot = if v6 { VIP_V6_SLOT } else { VIP_SLOT };
        for index in 0..20u16 {
            let (spec, call, message) =
                invite(v6, 0x100 + index, 3000 + 250 * index as usize, &mut rng);
            let fragments = udp_fragments(&spec, &message, MTU);
            assert!(fragments.len() >= 3, "{} fragments", fragments.len());
            let owner = program.owner(call.call_id.as_bytes());
            for (number, frame) in fragments.iter().enumerate() {
                let what = format!("v6 {v6}, datagram {index}, fragment {number}");
                assert_sent_to(&run(&program, frame), frame, owner, &what);
            }
            later_count += fragments.len() as u64 - 1;
        }
        assert_eq!(program.packets(slot, Action::Forwarded, Reason::CallId), 20);
    }
    let forwarded_later = program.packets(VIP_SLOT, Action::Forwarded, Reason::Fragment)
        + program.packets(VIP_V6_SLOT, Action::Forwarded, Reason::Fragment);
    assert_eq!(forwarded_later, later_count);
}

#[test]
fn fragments_before_their_first_and_unplaceable_firsts_go_to_the_stack() {
    if !require_privileges("fragments_before_their_first_and_unplaceable_firsts_go_to_the_stack") {
        return;
    }
    let program = program();
    let mut rng = Rng::new(4);
    for v6 in [false, true] {
        // Last fragment first: nothing is known about the datagram yet.
        let (spec, call, message) = invite(v6, 0x200, 4000, &mut rng);
        let fragments = udp_fragments(&spec, &message, MTU);
        let before = program.packets(NO_VIP, Action::Passed, Reason::IpFragment);
        for frame in fragments[1..].iter().rev() {
            assert_passed(&run(&program, frame), frame, "a fragment before its first");
        }
        let passed = fragments.len() as u64 - 1;
        assert_eq!(
            program.packets(NO_VIP, Action::Passed, Reason::IpFragment),
            before + passed
        );
        // The first fragment follows them to the stack, which reassembles the datagram
        // whole, and so do copies of the others sent again.
        let slot = if v6 { VIP_V6_SLOT } else { VIP_SLOT };
        assert_datagram_passed(
            &program,
            slot,
            &fragments,
            "a datagram already at the stack",
        );
        // The same call's next datagram, in order, is steered whole.
        let next = FrameSpec {
            identification: 0x201,
            ..spec
        };
        let fragments = udp_fragments(&next, &message, MTU);
        let owner = program.owner(call.call_id.as_bytes());
        for frame in &fragments {
            assert_sent_to(&run(&program, frame), frame, owner, "a datagram in order");
        }

        // A first fragment too small to hold the header section is passed, and so are
        // the fragments after it.
        let (spec, _, message) = invite(v6, 0x300, 4000, &mut rng);
        let fragments = udp_fragments(&spec, &message, 300);
        assert_datagram_passed(
            &program,
            slot,
            &fragments,
            "a header section split over fragments",
        );
    }
}
