//! The slow path with the real `sipxdp` binary: what the XDP program passes up on a VIP
//! (Call-IDs beyond its window, IPv6 extension headers, fragments sent last first)
//! reaches the backend `sipxdp hash` names, byte for byte, from the client's address and
//! port; messages without a usable Call-ID are dropped or sent to the client's fallback
//! backend as the VIP's policy says, and counted under their reason.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use sipxdp_common::{
    callid::{KernelLimits, Unplaceable, locate},
    payload::SlicePayload,
    wire::{build::UdpFrame, ethernet},
};
use sipxdp_tests::{
    daemon_lab::{DaemonLab, Mode, sample},
    delivery::Received,
    inject::send_frames,
    require_privileges,
    sipgen::{Call, Rng, with_extra_header_lines},
    wait::wait_until,
};

const CALLS: usize = 20;
/// The lab's link MTU.
const MTU: usize = 1500;
/// Header lines in front of the Call-ID: more than the kernel walks.
const EXTRA_HEADER_LINES: usize = 120;

/// `message` with its Call-ID beyond what the kernel searches.
fn beyond_window(message: &[u8]) -> Vec<u8> {
    let long = with_extra_header_lines(message, EXTRA_HEADER_LINES);
    assert_eq!(
        locate::<_, KernelLimits>(&SlicePayload(&long), 0).map(|found| found.hash),
        Err(Unplaceable::BeyondWindow),
        "the kernel cannot place the message"
    );
    long
}

/// A UDP datagram from `client` to `vip` as Ethernet frames from the lab client to the
/// balancer, in IP fragments of at most `MTU` bytes.
fn fragments(
    lab: &DaemonLab,
    client: SocketAddr,
    vip: SocketAddr,
    payload: &[u8],
    id: u16,
) -> Vec<Vec<u8>> {
    UdpFrame {
        ethernet: ethernet::Repr {
            destination: lab.lab().balancer().iface().mac().0,
            source: lab.lab().client().iface().mac().0,
            vlans: [None, None],
            ethertype: 0,
        },
        source: client.ip(),
        destination: vip.ip(),
        source_port: client.port(),
        destination_port: vip.port(),
        payload,
        ttl: 64,
        identification: id,
        ipv4_options: &[],
    }
    .fragments(MTU)
    .expect("a datagram that fits in IP")
}

/// An IPv6 frame with a Destination Options header (a PadN option) between the IPv6 and
/// UDP headers; the UDP checksum does not cover extension headers, so it stays valid.
fn with_destination_options(frame: &[u8]) -> Vec<u8> {
    const L3: usize = 14;
    const DESTINATION_OPTIONS: u8 = 60;
    const UDP: u8 = 17;
    let mut out = frame[..L3 + 40].to_vec();
    let payload_len = u16::from_be_bytes([out[L3 + 4], out[L3 + 5]]) + 8;
    out[L3 + 4..L3 + 6].copy_from_slice(&payload_len.to_be_bytes());
    assert_eq!(out[L3 + 6], UDP);
    out[L3 + 6] = DESTINATION_OPTIONS;
    out.extend_from_slice(&[UDP, 0, 1, 4, 0, 0, 0, 0]);
    out.extend_from_slice(&frame[L3 + 40..]);
    out
}

/// The backend number (from 1) that `sipxdp hash` names for `call_id` on VIP `name`.
fn hashed_backend(lab: &DaemonLab, name: &str, call_id: &str, v6: bool) -> usize {
    let (ok, answer) = lab
        .control(&["hash", name, call_id], None)
        .expect("sipxdp hash");
    assert!(ok, "{answer}");
    let address: SocketAddr = answer
        .split_whitespace()
        .next()
        .and_then(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("an address in {answer:?}"));
    lab.lab()
        .backends()
        .iter()
        .position(|backend| backend.iface().ip(v6) == address.ip())
        .map(|index| index + 1)
        .unwrap_or_else(|| panic!("{address} is a lab backend"))
}

/// What the backends of `vip`'s family receive until `expected` arrived or 10 s passed.
fn collect(lab: &DaemonLab, vip: SocketAddr, expected: usize) -> Vec<Received> {
    lab.collect(
        vip.is_ipv6(),
        expected,
        Instant::now() + Duration::from_secs(10),
    )
    .expect("the backends' receivers")
}

/// Each message arrived intact, once, from `client`, at the backend `sipxdp hash` names.
/// Adds each message to `per_backend`, the count its backend's series in
/// `sipxdp_slow_path_backend_messages_total` should have.
fn assert_placed_like_the_fast_path(
    lab: &DaemonLab,
    name: &str,
    client: SocketAddr,
    sent: &BTreeMap<String, Vec<u8>>,
    received: &[Received],
    per_backend: &mut BTreeMap<String, u64>,
) {
    assert_eq!(received.len(), sent.len(), "{name}: every message arrived");
    let v6 = client.is_ipv6();
    for message in received {
        let backend = lab.backend_address(message.backend, v6);
        *per_backend
            .entry(format!(
                "sipxdp_slow_path_backend_messages_total{{backend=\"{backend}\",vip=\"{name}\"}}"
            ))
            .or_default() += 1;
        assert_eq!(message.peer, client, "{name}: backends see the client");
        let expected = sent.get(&message.call_id).expect("a Call-ID that was sent");
        assert_eq!(
            &message.payload, expected,
            "{name}: {} arrived altered",
            message.call_id
        );
        assert_eq!(
            message.backend,
            hashed_backend(lab, name, &message.call_id, v6),
            "{name}: {} is where `sipxdp hash` says",
            message.call_id
        );
    }
}

/// BYEs whose Call-ID lies beyond the kernel's window, sent by the client's own socket
/// to VIP `name` at `vip`, each reach the backend `sipxdp hash` names.
fn send_beyond_window(
    lab: &DaemonLab,
    name: &str,
    client: SocketAddr,
    vip: SocketAddr,
    rng: &mut Rng,
    per_backend: &mut BTreeMap<String, u64>,
) {
    let calls: Vec<Call> = (0..CALLS).map(|_| Call::random(rng, 20)).collect();
    let sent: BTreeMap<String, Vec<u8>> = calls
        .iter()
        .map(|call| (call.call_id.clone(), beyond_window(&call.bye(client, vip))))
        .collect();
    let messages: Vec<Vec<u8>> = sent.values().cloned().collect();
    let received = lab.send(client, vip, &messages).expect("delivery");
    assert_placed_like_the_fast_path(lab, name, client, &sent, &received, per_backend);
}

#[test]
fn what_the_kernel_passes_up_reaches_the_backend_the_fast_path_would_choose() {
    if !require_privileges(
        "what_the_kernel_passes_up_reaches_the_backend_the_fast_path_would_choose",
    ) {
        return;
    }
    let lab = DaemonLab::start(&[1, 1, 1]).expect("the lab");
    let mut rng = Rng::new(0x510);
    let client_iface = lab.lab().client().iface().name().to_owned();
    let mut per_backend = BTreeMap::new();
    for (name, vip, port) in [("lab", lab.vip(), 5300), ("lab6", lab.vip_v6(), 5301)] {
        let client = SocketAddr::new(lab.lab().client().iface().ip(vip.is_ipv6()), port);

        send_beyond_window(&lab, name, client, vip, &mut rng, &mut per_backend);

        // Fragmented INVITEs sent last fragment first: the kernel reassembles them.
        let calls: Vec<Call> = (0..CALLS).map(|_| Call::random(&mut rng, 20)).collect();
        let mut sent = BTreeMap::new();
        let mut frames = Vec::new();
        for (index, call) in calls.iter().enumerate() {
            let invite = call.invite(client, vip, 4_000);
            let mut pieces = fragments(&lab, client, vip, &invite, 0x7000 + index as u16);
            assert!(pieces.len() >= 3, "the INVITE is fragmented");
            pieces.reverse();
            frames.extend(pieces);
            sent.insert(call.call_id.clone(), invite);
        }
        send_frames(lab.lab().client().netns(), &client_iface, &frames).expect("frames");
        let received = collect(&lab, vip, sent.len());
        assert_placed_like_the_fast_path(&lab, name, client, &sent, &received, &mut per_backend);
    }

    // IPv6 with a Destination Options header: the kernel path leaves it to the stack.
    let vip = lab.vip_v6();
    let client = SocketAddr::new(lab.lab().client().iface().ip(true), 5302);
    let calls: Vec<Call> = (0..CALLS).map(|_| Call::random(&mut rng, 20)).collect();
    let mut sent = BTreeMap::new();
    let mut frames = Vec::new();
    for (index, call) in calls.iter().enumerate() {
        let bye = call.bye(client, vip);
        let [frame] = &fragments(&lab, client, vip, &bye, index as u16)[..] else {
            panic!("a BYE fits in one frame");
        };
        frames.push(with_destination_options(frame));
        sent.insert(call.call_id.clone(), bye);
    }
    send_frames(lab.lab().client().netns(), &client_iface, &frames).expect("frames");
    let received = collect(&lab, vip, sent.len());
    assert_placed_like_the_fast_path(&lab, "lab6", client, &sent, &received, &mut per_backend);

    // Counted as forwarded by Call-ID: placed by the table, or by the dialog the kernel
    // remembered when it saw a first fragment before passing it up.
    let metrics = lab.scrape().expect("metrics");
    for (vip, messages) in [("lab", 2 * CALLS), ("lab6", 3 * CALLS)] {
        let forwarded: u64 = ["call_id", "dialog"]
            .iter()
            .map(|reason| {
                sample(
                    &metrics,
                    &format!(
                        "sipxdp_slow_path_messages_total{{outcome=\"forwarded\",reason=\"{reason}\",vip=\"{vip}\"}}"
                    ),
                )
            })
            .sum();
        assert_eq!(forwarded, messages as u64, "{vip}\n{metrics}");
    }
    assert!(
        !metrics.contains("outcome=\"dropped\""),
        "nothing dropped:\n{metrics}"
    );
    // And once more under the backend each went to.
    assert_eq!(per_backend.len(), 6, "every backend of both VIPs got some");
    for (series, messages) in &per_backend {
        assert_eq!(sample(&metrics, series), *messages, "{series}\n{metrics}");
    }
    for series in [
        "sipxdp_map_max_entries{map=\"DIALOGS\"} 1048576",
        "sipxdp_map_entries{map=\"FRAGMENTS\"}",
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }
    // `status` shows the slow path's messages per VIP.
    let (ok, status) = lab.control(&["status"], None).expect("sipxdp status");
    assert!(ok, "{status}");
    let slow = format!("forwarded {}, fallback 0, dropped 0", 3 * CALLS);
    assert!(status.contains(&slow), "{slow} in:\n{status}");
    // It names the mode the program runs in on each interface: the lab asks for generic.
    let interfaces: Vec<&str> = status
        .lines()
        .filter(|line| line.starts_with("interface "))
        .collect();
    assert_eq!(interfaces.len(), 1, "the lab's one interface: {status}");
    assert!(
        interfaces
            .iter()
            .all(|line| line.ends_with(": generic XDP, in the kernel stack")),
        "{status}"
    );
}

#[test]
fn unplaceable_messages_are_dropped_or_sent_to_the_fallback_and_counted() {
    if !require_privileges("unplaceable_messages_are_dropped_or_sent_to_the_fallback_and_counted") {
        return;
    }
    let mut lab = DaemonLab::start(&[1, 1, 1]).expect("the lab");
    let vip = lab.vip();
    let malformed: [(&str, &[u8]); 3] = [
        (
            "no_call_id",
            b"MESSAGE sip:bob@example.com SIP/2.0\r\nCSeq: 1 MESSAGE\r\n\r\n",
        ),
        (
            "conflicting_call_ids",
            b"MESSAGE sip:bob@example.com SIP/2.0\r\nCall-ID: one\r\ni: two\r\n\r\n",
        ),
        (
            "truncated",
            b"MESSAGE sip:bob@example.com SIP/2.0\r\nCall-ID: cut\r\nCSeq: 1 M",
        ),
    ];
    let junk: &[u8] = &[0x80, 0x60, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x00, 0xff];
    const ROUNDS: usize = 10;

    // Default policy: unplaceable messages are dropped; non-SIP junk passes to the
    // fallback (the VIP's `non_sip = "pass"`).
    let client = SocketAddr::new(lab.lab().client().iface().ip(false), 5310);
    let mut messages: Vec<Vec<u8>> = Vec::new();
    for _ in 0..ROUNDS {
        messages.extend(malformed.iter().map(|(_, message)| message.to_vec()));
    }
    messages.extend((0..ROUNDS).map(|_| junk.to_vec()));
    sipxdp_tests::traffic::send_udp_from(lab.lab().client().netns(), client, vip, &messages)
        .expect("sending");
    let junk_received = collect(&lab, vip, ROUNDS);
    assert_eq!(junk_received.len(), ROUNDS, "the junk reached a backend");
    let fallback = junk_received[0].backend;
    for message in &junk_received {
        assert_eq!(message.payload, junk);
        assert_eq!(message.peer, client);
        assert_eq!(message.backend, fallback, "one client, one fallback");
    }
    let counted = |metrics: &str, outcome: &str, reason: &str| {
        sample(
            metrics,
            &format!(
                "sipxdp_slow_path_messages_total{{outcome=\"{outcome}\",reason=\"{reason}\",vip=\"lab\"}}"
            ),
        )
    };
    let all_counted = wait_until(Instant::now() + Duration::from_secs(10), || {
        let metrics = lab.scrape().unwrap_or_default();
        malformed
            .iter()
            .all(|(reason, _)| counted(&metrics, "dropped", reason) == ROUNDS as u64)
            && counted(&metrics, "fallback", "not_sip") == ROUNDS as u64
    });
    assert!(all_counted, "{}", lab.scrape().unwrap_or_default());
    assert!(
        collect(&lab, vip, 1).is_empty(),
        "dropped messages reached no backend"
    );

    // `unplaceable = "fallback"`: the same messages reach the client's fallback backend.
    lab.set_vip_options("unplaceable = \"fallback\"\n");
    lab.write_config(&[1, 1, 1]).expect("a new config");
    lab.reload().expect("SIGHUP");
    let reloaded = wait_until(Instant::now() + Duration::from_secs(10), || {
        lab.daemon_log().contains("reloaded")
    });
    assert!(reloaded, "{}", lab.daemon_log());
    let messages: Vec<Vec<u8>> = malformed
        .iter()
        .map(|(_, message)| message.to_vec())
        .collect();
    let received = lab.send(client, vip, &messages).expect("delivery");
    for ((_, message), got) in malformed.iter().zip(&received) {
        assert_eq!(got.payload, *message);
        assert_eq!(got.backend, fallback, "the client's fallback backend");
        assert_eq!(got.peer, client);
    }
    let metrics = lab.scrape().expect("metrics");
    for (reason, _) in malformed {
        assert_eq!(
            counted(&metrics, "fallback", reason),
            1,
            "{reason}\n{metrics}"
        );
    }
}

#[test]
fn a_vip_that_is_not_local_is_refused_before_anything_is_attached() {
    if !require_privileges("a_vip_that_is_not_local_is_refused_before_anything_is_attached") {
        return;
    }
    let mut lab = DaemonLab::start(&[1]).expect("the lab");
    let vip = lab.vip();
    lab.stop_daemon().expect("stopping");
    lab.detach().expect("detaching");
    let balancer = lab.lab().balancer();
    balancer
        .netns()
        .ip(&[
            "address",
            "del",
            &format!("{}/32", vip.ip()),
            "dev",
            balancer.iface().name(),
        ])
        .expect("removing the VIP from the balancer");
    let refused = lab.refused_run(&[]).expect("sipxdp refuses to run");
    assert!(
        refused.contains(&format!("{} is not an address of this host", vip.ip())),
        "{refused}"
    );
    assert!(!lab.attached().expect("link state"), "nothing attached");
}

#[test]
fn in_nat_mode_the_slow_path_routes_to_the_backend_address() {
    if !require_privileges("in_nat_mode_the_slow_path_routes_to_the_backend_address") {
        return;
    }
    let lab = DaemonLab::start_in(Mode::Nat, &[1, 1, 1]).expect("the lab");
    let mut rng = Rng::new(0x5a7);
    let mut per_backend = BTreeMap::new();
    for (name, vip, port) in [("lab", lab.vip(), 5320), ("lab6", lab.vip_v6(), 5321)] {
        let client = SocketAddr::new(lab.lab().client().iface().ip(vip.is_ipv6()), port);
        send_beyond_window(&lab, name, client, vip, &mut rng, &mut per_backend);
    }
    // Counted under the backends' own addresses, which NAT sends to.
    let metrics = lab.scrape().expect("metrics");
    for (series, messages) in &per_backend {
        assert!(series.contains("203.0.113.") || series.contains("2001:db8:2::"));
        assert_eq!(sample(&metrics, series), *messages, "{series}\n{metrics}");
    }
}
