//! The XDP program on crafted frames (`BPF_PROG_TEST_RUN`): the action it returns, the
//! frame it leaves and the counters it bumps, for every trap of Call-ID location, VLAN
//! tags, IPv4 options, non-SIP traffic and frames that are not for a VIP at all.
//!
//! The expected backend is computed independently: an XXH64 implementation from another
//! crate hashes the Call-ID the corpus states, and the entry is looked up in the very
//! table the test published.

use std::net::IpAddr;

use sipxdp_common::{
    corpus::{self, Expected},
    maps::{BACKEND_IN_SERVICE, Backend, VIP_DROP_KEEP_ALIVE, VIP_DROP_NOT_SIP},
    outcome::{Action, NO_VIP, Reason},
};
use sipxdp_tests::{
    Netns,
    fixture::{self, Loaded, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX, backend_mac, vip_key},
    frames::{BALANCER_MAC, FrameSpec, udp_frame},
    require_privileges,
};

const SEED: u64 = 0x005e_ed0f_ca11;
/// The fixture program, stickiness off.
fn program(vip_flags: u32) -> Loaded {
    Loaded::new(&fixture::stateless(SEED), vip_flags).expect("the fixture")
}

#[test]
fn verifier_accepts_the_program_with_room_to_spare() {
    if !require_privileges("verifier_accepts_the_program_with_room_to_spare") {
        return;
    }
    let fixture = program(0);
    let verified = fixture
        .dataplane
        .verified_instructions()
        .expect("program info")
        .expect("the kernel reports verified instructions");
    println!("verifier processed {verified} instructions (limit 1,000,000)");
    assert!(
        verified < 750_000,
        "{verified} instructions leave too little room"
    );
}

#[test]
fn corpus_messages_are_steered_or_passed_with_their_reason() {
    if !require_privileges("corpus_messages_are_steered_or_passed_with_their_reason") {
        return;
    }
    let fixture = program(0);
    for case in corpus::cases() {
        let frame = udp_frame(&FrameSpec::default(), &case.message);
        let passed_before = match &case.kernel {
            Expected::Unplaceable(reason) => {
                fixture.packets(0, Action::Passed, Reason::from(*reason))
            }
            Expected::CallId(_) => 0,
        };
        let output = fixture.dataplane.test_run(&frame).expect("test run");
        match &case.kernel {
            Expected::CallId(value) => {
                let slot = fixture.owner(value);
                let mut expected = frame.clone();
                expected[..6].copy_from_slice(&backend_mac(slot));
                expected[6..12].copy_from_slice(&BALANCER_MAC);
                assert_eq!(output.action, XDP_TX, "{}", case.name);
                assert_eq!(
                    output.frame, expected,
                    "{}: only the MACs change",
                    case.name
                );
            }
            Expected::Unplaceable(reason) => {
                let want = Reason::from(*reason);
                assert_eq!(output.action, XDP_PASS, "{}", case.name);
                assert_eq!(
                    output.frame, frame,
                    "{}: a passed frame is untouched",
                    case.name
                );
                assert_eq!(
                    fixture.packets(0, Action::Passed, want),
                    passed_before + 1,
                    "{}: counted once under {want:?}",
                    case.name
                );
            }
        }
    }
    let forwarded = corpus::cases()
        .iter()
        .filter(|case| matches!(case.kernel, Expected::CallId(_)))
        .count() as u64;
    assert_eq!(
        fixture.packets(0, Action::Forwarded, Reason::CallId),
        forwarded
    );
    let per_backend: u64 = (0..3)
        .map(|slot| {
            fixture
                .dataplane
                .backend_counter(slot)
                .expect("counter")
                .packets
        })
        .sum();
    assert_eq!(per_backend, forwarded);
}

#[test]
fn vlan_tags_and_ipv4_options_are_parsed_and_kept() {
    if !require_privileges("vlan_tags_and_ipv4_options_are_parsed_and_kept") {
        return;
    }
    let fixture = program(0);
    let invite = corpus::cases()
        .into_iter()
        .find(|case| case.name == "invite")
        .expect("the invite case");
    let Expected::CallId(call_id) = &invite.kernel else {
        panic!("the invite case has a Call-ID");
    };
    let slot = fixture.owner(call_id);
    let specs = [
        FrameSpec {
            vlans: [Some(100), None],
            ..FrameSpec::default()
        },
        FrameSpec {
            vlans: [Some(100), Some(200)],
            ..FrameSpec::default()
        },
        FrameSpec {
            // Record Route option (7 bytes) and an end-of-options byte: IHL 7.
            ipv4_options: vec![7, 7, 4, 0, 0, 0, 0, 0],
            ..FrameSpec::default()
        },
        FrameSpec {
            vlans: [Some(7), Some(4094)],
            ipv4_options: vec![1; 40],
            ..FrameSpec::default()
        },
    ];
    for spec in specs {
        let frame = udp_frame(&spec, &invite.message);
        let output = fixture.dataplane.test_run(&frame).expect("test run");
        assert_eq!(output.action, XDP_TX, "{spec:?}");
        assert_eq!(&output.frame[..6], &backend_mac(slot), "{spec:?}");
        assert_eq!(
            &output.frame[12..],
            &frame[12..],
            "{spec:?}: tags and IP untouched"
        );
    }
}

#[test]
fn keep_alive_and_non_sip_follow_the_vip_policy() {
    if !require_privileges("keep_alive_and_non_sip_follow_the_vip_policy") {
        return;
    }
    for (flags, action, xdp) in [
        (0, Action::Passed, XDP_PASS),
        (
            VIP_DROP_KEEP_ALIVE | VIP_DROP_NOT_SIP,
            Action::Dropped,
            XDP_DROP,
        ),
    ] {
        let fixture = program(flags);
        for (payload, reason) in [
            (&b"\r\n\r\n"[..], Reason::KeepAlive),
            (&b"\r\n"[..], Reason::KeepAlive),
            (&b"\x00\x01STUN-like binary"[..], Reason::NotSip),
        ] {
            let frame = udp_frame(&FrameSpec::default(), payload);
            let output = fixture.dataplane.test_run(&frame).expect("test run");
            assert_eq!(
                output.action, xdp,
                "{payload:?} ({reason:?}) with flags {flags}"
            );
        }
        assert_eq!(fixture.packets(0, action, Reason::KeepAlive), 2);
        assert_eq!(fixture.packets(0, action, Reason::NotSip), 1);
    }
}

#[test]
fn traffic_not_for_a_vip_passes_untouched_and_is_counted() {
    if !require_privileges("traffic_not_for_a_vip_passes_untouched_and_is_counted") {
        return;
    }
    let fixture = program(0);
    let invite = &corpus::cases()
        .into_iter()
        .find(|case| case.name == "invite")
        .expect("the invite case")
        .message;
    let other_port = udp_frame(
        &FrameSpec {
            destination_port: 5070,
            ..FrameSpec::default()
        },
        invite,
    );
    let other_address = udp_frame(
        &FrameSpec {
            destination: IpAddr::V4("198.51.100.101".parse().expect("an address")),
            ..FrameSpec::default()
        },
        invite,
    );
    let mut arp = vec![0u8; 42];
    arp[..12].copy_from_slice(&[0xff; 12]);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let full = udp_frame(&FrameSpec::default(), invite);
    let mut udp_longer_than_ip = full.clone();
    udp_longer_than_ip[38..40].copy_from_slice(&2000u16.to_be_bytes());
    // The kernel refuses to test-run a frame shorter than an Ethernet header, so the
    // shortest malformed frame is a header announcing a VLAN tag that is not there.
    let mut cut_vlan_tag = full[..14].to_vec();
    cut_vlan_tag[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
    let mut ip_longer_than_frame = full.clone();
    ip_longer_than_frame[16..18].copy_from_slice(&3000u16.to_be_bytes());
    let cases: [(&str, Vec<u8>, Reason); 7] = [
        ("other port", other_port, Reason::NotVip),
        ("other address", other_address, Reason::NotVip),
        ("ARP", arp, Reason::NotIp),
        ("cut inside a VLAN tag", cut_vlan_tag, Reason::Malformed),
        (
            "cut inside the IPv4 header",
            full[..30].to_vec(),
            Reason::Malformed,
        ),
        (
            "UDP length beyond the IP packet",
            udp_longer_than_ip,
            Reason::Malformed,
        ),
        (
            "IP length beyond the frame",
            ip_longer_than_frame,
            Reason::Malformed,
        ),
    ];
    for (name, frame, reason) in cases {
        let before = fixture.packets(NO_VIP, Action::Passed, reason);
        let output = fixture.dataplane.test_run(&frame).expect("test run");
        assert_eq!(output.action, XDP_PASS, "{name}");
        assert_eq!(output.frame, frame, "{name}: untouched");
        assert_eq!(
            fixture.packets(NO_VIP, Action::Passed, reason),
            before + 1,
            "{name}"
        );
    }
    assert_eq!(fixture.packets(0, Action::Forwarded, Reason::CallId), 0);
}

#[test]
fn a_vip_without_backends_passes_and_other_interfaces_need_a_port() {
    if !require_privileges("a_vip_without_backends_passes_and_other_interfaces_need_a_port") {
        return;
    }
    let netns = Netns::new("dataplane").expect("a namespace");
    netns
        .run(&[
            "ip", "link", "add", "egress0", "type", "veth", "peer", "name", "egress1",
        ])
        .expect("a veth pair");
    netns
        .run(&["ip", "link", "set", "egress0", "up"])
        .expect("up");
    netns
        .run(&["ip", "link", "set", "egress1", "up"])
        .expect("up");
    netns
        .enter_thread(|| {
            let mut fixture = program(0);
            let invite = corpus::cases()
                .into_iter()
                .find(|case| case.name == "invite")
                .expect("the invite case")
                .message;
            let frame = udp_frame(&FrameSpec::default(), &invite);
            let egress = nix_ifindex("egress0");
            for slot in 0..3 {
                fixture
                    .dataplane
                    .set_backend(
                        slot,
                        &Backend {
                            destination_mac: backend_mac(slot),
                            source_mac: BALANCER_MAC,
                            ifindex: egress,
                            flags: BACKEND_IN_SERVICE,
                            ..Backend::default()
                        },
                    )
                    .expect("backend");
            }
            let output = fixture.dataplane.test_run(&frame).expect("test run");
            assert_eq!(
                output.action, XDP_PASS,
                "no port for the egress interface yet"
            );
            assert_eq!(output.frame, frame);
            assert_eq!(fixture.packets(0, Action::Passed, Reason::NoRoute), 1);
            fixture.dataplane.add_tx_port(egress).expect("a port");
            let output = fixture.dataplane.test_run(&frame).expect("test run");
            assert_eq!(output.action, XDP_REDIRECT);
            assert_eq!(fixture.packets(0, Action::Forwarded, Reason::CallId), 1);

            fixture
                .dataplane
                .publish_table(&vip_key(5060), &[])
                .expect("an empty table");
            let output = fixture.dataplane.test_run(&frame).expect("test run");
            assert_eq!(output.action, XDP_PASS);
            assert_eq!(fixture.packets(0, Action::Passed, Reason::NoBackend), 1);
        })
        .expect("running in the namespace");
}

fn nix_ifindex(name: &str) -> u32 {
    let name = std::ffi::CString::new(name).expect("a name");
    // SAFETY: a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(index, 0, "interface exists");
    index
}
